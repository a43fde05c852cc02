/**
 * The matchers, each passing, failing with a message that says what is wrong, and negated.
 */
import { describe, expect, it } from "vitest";
import { Kernel } from "@uffd/kernel";
import { MAP_ANONYMOUS, MAP_PRIVATE, UFFD_API, UFFDIO_API, UFFDIO_COPY, UFFDIO_POISON, UFFDIO_REGISTER, UFFDIO_REGISTER_MODE_WP, UFFDIO_WRITEPROTECT, UFFDIO_WRITEPROTECT_MODE_WP } from "@uffd/kernel/uapi";
import { guest, peekMemory, runSeed } from "@uffd/testing";
import { prefetchScenario } from "./handlers.ts";
import { image, naiveFailure, PAGE_SIZE, pageOf, rawSetup, RW } from "./helpers.ts";

describe("toHaveMemory", () => {
  it("reads the frames without faulting: passes on equal bytes, names the first differing byte and its page otherwise", async () => {
    const { k, p, uffd, base } = await rawSetup(3);
    await p.ioctl(uffd, UFFDIO_COPY, { dst: base, src: image(2), len: 2 * PAGE_SIZE, mode: 0 });
    expect(p).toHaveMemory(base, image(2));
    expect(p).toHaveMemory(base + PAGE_SIZE + 10, [0x41, 0x41]);
    const want = image(2);
    want[PAGE_SIZE + 4] = 0x99;
    expect(() => expect(p).toHaveMemory(base, want)).toThrowError(
      `expected memory of pid ${p.pid} at 0x${base.toString(16)} +8192 to equal the given bytes, but\n` +
        `  byte 4100 (0x${(base + PAGE_SIZE + 4).toString(16)}: page 1, +0x4) is 0x41, expected 0x99; 1 of 8192 bytes differ; that page is present exclusive\n` +
        "  actual   [4096..4112) 41 41 41 41 41 41 41 41 41 41 41 41 41 41 41 41\n" +
        "  expected [4096..4112) 41 41 41 41 99 41 41 41 41 41 41 41 41 41 41 41",
    );
    expect(() => expect(p).not.toHaveMemory(base, image(2))).toThrowError(/not to equal the given bytes, but it does/);
    k.checkInvariants();
  });

  it("a page that is not present fails the match instead of faulting it in (a registered range would block)", async () => {
    const { k, p, base } = await rawSetup(2);
    expect(() => expect(p).toHaveMemory(base, new Uint8Array(2 * PAGE_SIZE))).toThrowError(
      new RegExp(`2 page\\(s\\) are not present \\(reading them would fault\\): 0x${base.toString(16)}, 0x${(base + PAGE_SIZE).toString(16)}`),
    );
    expect(peekMemory(p, base, 8).notPresent).toEqual([base]);
    expect(p.pagemap(base, 2).every((e) => !e.present)).toBe(true); // nothing was faulted in
    k.checkInvariants();
  });

  it("peekMemory() of an unaligned range: a present page's bytes, zeros where a page is not present", async () => {
    const { k, p, uffd, base } = await rawSetup(3);
    await p.ioctl(uffd, UFFDIO_COPY, { dst: base, src: pageOf(0), len: PAGE_SIZE, mode: 0 });
    await p.ioctl(uffd, UFFDIO_COPY, { dst: base + 2 * PAGE_SIZE, src: pageOf(2), len: PAGE_SIZE, mode: 0 });
    // Garbage in freed host memory: the result's array must not show any of it.
    for (let i = 0; i < 8; i++) new Uint8Array(3 * PAGE_SIZE).fill(0xee);
    const { bytes, notPresent } = peekMemory(p, base + 100, 2 * PAGE_SIZE + 50 - 100);
    const want = new Uint8Array(2 * PAGE_SIZE - 50);
    want.fill(0x40, 0, PAGE_SIZE - 100);
    want.fill(0x42, 2 * PAGE_SIZE - 100);
    expect(bytes).toEqual(want);
    expect(notPresent).toEqual([base + PAGE_SIZE]);
    expect(peekMemory(p, base + 7, 0)).toEqual({ bytes: new Uint8Array(0), notPresent: [] });
    k.checkInvariants();
  });
});

describe("toHaveCompleted, toBeBlocked, toHaveSignal", () => {
  it("follow a guest from asleep on its userfault to completed", async () => {
    const { k, p, uffd, base } = await rawSetup(2);
    const g = guest(p.spawnThread("t1"), (t) => t.read(base + PAGE_SIZE + 3, 1));
    await k.idle();
    expect(g).toBeBlocked();
    expect(g).toBeBlocked(base + PAGE_SIZE);
    expect(g).not.toHaveCompleted();
    expect(() => expect(g).toBeBlocked(base)).toThrowError(`expected t1 to be asleep on a userfault at 0x${base.toString(16)}, but t1: asleep on a userfault at 0x${(base + PAGE_SIZE + 3).toString(16)}`);
    expect(() => expect(g).toHaveCompleted()).toThrowError(`expected t1 to have completed, but t1: asleep on a userfault at 0x${(base + PAGE_SIZE + 3).toString(16)}`);
    await p.ioctl(uffd, UFFDIO_COPY, { dst: base + PAGE_SIZE, src: pageOf(1), len: PAGE_SIZE, mode: 0 });
    await k.idle();
    expect(g).toHaveCompleted();
    expect(g.result).toEqual(Uint8Array.of(0x41));
    expect(() => expect(g).toBeBlocked()).toThrowError("expected t1 to be asleep on a userfault, but t1: completed");
    expect(() => expect(g).not.toHaveCompleted()).toThrowError("expected t1 not to have completed, but it did");
    k.checkInvariants();
  });

  it("a poisoned page: SIGBUS (UFFDIO_POISON)", async () => {
    const { k, p, uffd, base } = await rawSetup(1);
    await p.ioctl(uffd, UFFDIO_POISON, { range: { start: base, len: PAGE_SIZE }, mode: 0 });
    const g = guest(p.spawnThread("t1"), (t) => t.read(base + 8, 1));
    await k.idle();
    expect(g).toHaveSignal();
    expect(g).toHaveSignal("SIGBUS");
    expect(() => expect(g).toHaveSignal("SIGSEGV")).toThrowError(`expected t1 to get SIGSEGV, but t1: SIGBUS at 0x${(base + 8).toString(16)}`);
    expect(() => expect(g).toHaveCompleted()).toThrowError(`expected t1 to have completed, but t1: SIGBUS at 0x${(base + 8).toString(16)}`);
    k.checkInvariants();
  });

  it("reject what is not a guest", () => {
    expect(() => expect(Promise.resolve()).toHaveCompleted()).toThrowError(/toHaveCompleted: expected a GuestThread/);
  });
});

describe("toHavePagemap", () => {
  it("matches present, uffd-wp, exclusive and the zero page, page by page, and lists every mismatch", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const a = await p.mmap(0, 3 * PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    await p.mainThread.write(a, Uint8Array.of(1));
    await p.mainThread.read(a + PAGE_SIZE, 1);
    const uffd = await p.userfaultfd(0);
    await p.ioctl(uffd, UFFDIO_API, { api: UFFD_API, features: 0 });
    await p.ioctl(uffd, UFFDIO_REGISTER, { range: { start: a, len: PAGE_SIZE }, mode: UFFDIO_REGISTER_MODE_WP });
    await p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: a, len: PAGE_SIZE }, mode: UFFDIO_WRITEPROTECT_MODE_WP });
    expect(p).toHavePagemap(a, [{ present: true, uffdWp: true, exclusive: true }, { present: true, zeroPage: true, uffdWp: false }, { present: false, swapped: false }]);
    expect(p).toHavePagemap(a, { present: true }, 2);
    expect(() => expect(p).toHavePagemap(a, { uffdWp: true, zeroPage: false }, 3)).toThrowError(
      `expected the pagemap of pid ${p.pid} at 0x${a.toString(16)} (3 pages) to match, but\n` +
        `  page 1 (0x${(a + PAGE_SIZE).toString(16)}): uffdWp is false, expected true, zeroPage is true, expected false (it is present zero-page)\n` +
        `  page 2 (0x${(a + 2 * PAGE_SIZE).toString(16)}): uffdWp is false, expected true (it is none)`,
    );
    k.checkInvariants();
  });
});

describe("toResolveEveryFaultOnce and toSatisfyInvariants", () => {
  it("pass on a clean run; a lost fault fails with what happened to it", async () => {
    const bad = await naiveFailure();
    const good = await runSeed(prefetchScenario(true), bad.seed);
    expect(good).toResolveEveryFaultOnce({ allowPresent: true });
    expect(good).toSatisfyInvariants();
    expect(() => expect(bad).toResolveEveryFaultOnce({ allowPresent: true })).toThrowError(
      /^expected every fault to be resolved exactly once \(\d+ faults\), but\nlost fault: t\d asleep on a userfault at 0x[0-9a-f]+ since [\d.]+µs; the handler read its fault at [\d.]+µs; the last ioctl on that page: app UFFDIO_COPY 0x[0-9a-f]+ \+4096 -> EEXIST \(out -17\); nothing woke it$/m,
    );
    expect(bad).not.toResolveEveryFaultOnce();
  });

  it("toSatisfyInvariants names the broken count", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const a = await p.mmap(0, PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    await p.mainThread.write(a, Uint8Array.of(1));
    expect(k).toSatisfyInvariants();
    const pfn = p.pagemap(a, 1)[0]!.pfn!;
    k.core.mem.mapcount[pfn]! += 1;
    expect(() => expect(k).toSatisfyInvariants()).toThrowError(/^expected the kernel invariants to hold, but .*mapcount/);
    expect(k).not.toSatisfyInvariants();
    k.core.mem.mapcount[pfn]! -= 1;
    expect(k).toSatisfyInvariants();
  });
});
