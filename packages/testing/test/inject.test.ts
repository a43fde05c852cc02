/**
 * Fault injection: each injection produces a state Linux can be in and lets the real ioctl
 * answer. Every test asserts the errno, the out field, the pages and the fate of the faulting
 * thread, then the kernel invariants.
 *
 * Rules cited: docs/linux-rules.md §2.0 (result-field protocol, mmap_changing, ESRCH), §2.3
 * (UNREGISTER wakes MISSING waiters), §2.5 (COPY: ENOENT without a registered vma, EEXIST on a
 * present pte, partial progress), §3.3 (wake), §4 (REMOVE / UNMAP events); docs/handler-survey.md §5.1-5.5.
 */
import { describe, expect, it } from "vitest";
import { type Process } from "@uffd/kernel";
import {
  MADV_DONTNEED,
  UFFD_EVENT_PAGEFAULT,
  UFFD_EVENT_REMOVE,
  UFFD_EVENT_UNMAP,
  UFFD_FEATURE_EVENT_REMOVE,
  UFFD_FEATURE_EVENT_UNMAP,
  UFFDIO_COPY,
  UFFDIO_WAKE,
  UFFDIO_ZEROPAGE,
} from "@uffd/kernel/uapi";
import { guest, inject, injectFaults, recorderOf } from "@uffd/testing";
import { image, PAGE_SIZE, pageOf, rawSetup, readMsgs } from "./helpers.ts";

/** A thread of `p` reading 4 bytes at `addr`, tracked as a guest. */
function reader(p: Process, addr: number, name = "t1") {
  return guest(p.spawnThread(name), (t) => t.read(addr, 4));
}

const copyArg = (dst: number, src: Uint8Array, len = src.length) => ({ dst, src, len, mode: 0, copy: 12345 });

describe("inject.eagainAfter: partial progress (linux-rules §2.0: COPY 3 pages, the 2nd mapped -> field 4096, EAGAIN)", () => {
  it("installs the first bytes for real, a racer's page stops the loop: out = bytes done, EAGAIN, only the done range woken", async () => {
    const { k, p, uffd, base } = await rawSetup(4);
    const inj = injectFaults(p, [{ op: "copy", inject: inject.eagainAfter(PAGE_SIZE) }]);
    const g0 = reader(p, base, "t0");
    const g1 = reader(p, base + PAGE_SIZE, "t1");
    await k.idle();
    expect((await readMsgs(p, uffd)).map((m) => m.event)).toEqual([UFFD_EVENT_PAGEFAULT, UFFD_EVENT_PAGEFAULT]);
    const arg = copyArg(base, image(3));
    await expect(p.ioctl(uffd, UFFDIO_COPY, arg)).rejects.toMatchObject({ code: "EAGAIN" });
    expect(arg.copy).toBe(PAGE_SIZE);
    expect(inj.records).toEqual([{ rule: 0, kind: "eagain", op: "copy", start: base, len: 3 * PAGE_SIZE, result: "EAGAIN" }]);
    // Page 0 by the ioctl, page 1 by the racer (same bytes), page 2 untouched.
    expect(p).toHavePagemap(base, [{ present: true }, { present: true }, { present: false }]);
    expect(p).toHaveMemory(base, image(2));
    await k.idle();
    expect(g0).toHaveCompleted(); // [dst, dst + 4096) was woken
    expect(g1).toBeBlocked(base + PAGE_SIZE); // the racer used DONTWAKE: the handler must wake it
    // Continuing from where the kernel stopped: the racer's page answers EEXIST.
    const rest = copyArg(base + PAGE_SIZE, image(3).subarray(PAGE_SIZE));
    await expect(p.ioctl(uffd, UFFDIO_COPY, rest)).rejects.toMatchObject({ code: "EEXIST" });
    expect(rest.copy).toBe(-17);
    await p.ioctl(uffd, UFFDIO_WAKE, { start: base + PAGE_SIZE, len: PAGE_SIZE });
    await k.idle();
    expect(g1).toHaveCompleted();
    expect(g1.result).toEqual(pageOf(1).subarray(0, 4));
    k.checkInvariants();
  });

  it("cannot make a single-page resolve partial: the rule stays armed for the next multi-page one", async () => {
    const { k, p, uffd, base } = await rawSetup(4);
    const inj = injectFaults(p, [{ inject: inject.eagainAfter(PAGE_SIZE) }]);
    await p.ioctl(uffd, UFFDIO_ZEROPAGE, { range: { start: base, len: PAGE_SIZE }, mode: 0, zeropage: 0 });
    expect(inj.fired()).toBe(0);
    const arg = { range: { start: base + PAGE_SIZE, len: 2 * PAGE_SIZE }, mode: 0, zeropage: 0 };
    await expect(p.ioctl(uffd, UFFDIO_ZEROPAGE, arg)).rejects.toMatchObject({ code: "EAGAIN" });
    expect(arg.zeropage).toBe(PAGE_SIZE);
    expect(p).toHavePagemap(base, { present: true, zeroPage: true }, 3);
    expect(inj.fired("eagain")).toBe(1);
    k.checkInvariants();
  });
});

describe("inject.eexist: a racing resolve won (linux-rules §2.5: pte not none -> -EEXIST; handler survey §5.1)", () => {
  it("the racer installs the page without waking: out -17, EEXIST, and the thread sleeps until the handler wakes it", async () => {
    const { k, p, uffd, base } = await rawSetup(2);
    injectFaults(p, [{ op: "copy", inject: inject.eexist() }]);
    const g = reader(p, base + 8);
    await k.idle();
    const [m] = await readMsgs(p, uffd);
    expect(m).toMatchObject({ event: UFFD_EVENT_PAGEFAULT, arg: { pagefault: { address: base } } });
    const arg = copyArg(base, pageOf(0));
    await expect(p.ioctl(uffd, UFFDIO_COPY, arg)).rejects.toMatchObject({ code: "EEXIST", syscall: "ioctl" });
    expect(arg.copy).toBe(-17);
    expect(p).toHaveMemory(base, pageOf(0)); // the racer's bytes: the same page
    await k.idle();
    expect(g).toBeBlocked(base);
    await p.ioctl(uffd, UFFDIO_WAKE, { start: base, len: PAGE_SIZE });
    await k.idle();
    expect(g).toHaveCompleted();
    k.checkInvariants();
  });

  it("with racerWakes the racer's own COPY wakes the thread, and the handler's EEXIST is harmless", async () => {
    const { k, p, uffd, base } = await rawSetup(1);
    injectFaults(p, [{ inject: inject.eexist({ racerWakes: true }) }]);
    const g = reader(p, base);
    await k.idle();
    await readMsgs(p, uffd);
    await expect(p.ioctl(uffd, UFFDIO_COPY, copyArg(base, pageOf(0)))).rejects.toMatchObject({ code: "EEXIST" });
    await k.idle();
    expect(g).toHaveCompleted();
    k.checkInvariants();
  });
});

describe("inject.enoent: the range went away (linux-rules §2.5: no vma or no uffd ctx -> -ENOENT)", () => {
  it("via unregister: UNREGISTER wakes the MISSING waiter (linux-rules §2.3), which maps the zero page; COPY answers out -2, ENOENT", async () => {
    const { k, p, uffd, base } = await rawSetup(2);
    injectFaults(p, [{ inject: inject.enoent() }]);
    const g = reader(p, base);
    await k.idle();
    await readMsgs(p, uffd);
    const arg = copyArg(base, pageOf(0));
    await expect(p.ioctl(uffd, UFFDIO_COPY, arg)).rejects.toMatchObject({ code: "ENOENT" });
    expect(arg.copy).toBe(-2);
    await k.idle();
    expect(g).toHaveCompleted();
    expect(g.result).toEqual(new Uint8Array(4));
    expect(p).toHavePagemap(base, { present: true, zeroPage: true });
    expect(p.smaps().find((v) => v.start <= base && base < v.end)!.vmFlags).not.toContain("um");
    k.checkInvariants();
  });

  it("via munmap without EVENT_UNMAP: out -2, ENOENT; the thread sleeps until woken, then gets SIGSEGV", async () => {
    const { k, p, uffd, base } = await rawSetup(2);
    const inj = injectFaults(p, [{ inject: inject.enoent({ via: "munmap" }) }]);
    const g = reader(p, base);
    await k.idle();
    await readMsgs(p, uffd);
    const arg = copyArg(base, pageOf(0));
    await expect(p.ioctl(uffd, UFFDIO_COPY, arg)).rejects.toMatchObject({ code: "ENOENT" });
    expect(arg.copy).toBe(-2);
    await Promise.all(inj.pending);
    await k.idle();
    expect(g).toBeBlocked(base);
    await p.ioctl(uffd, UFFDIO_WAKE, { start: base, len: PAGE_SIZE });
    await k.idle();
    expect(g).toHaveSignal("SIGSEGV");
    k.checkInvariants();
  });

  it("via munmap with EVENT_UNMAP: EAGAIN (out -11) while the UNMAP is unread (linux-rules §2.0 mmap_changing), ENOENT once it is read", async () => {
    const { k, p, uffd, base } = await rawSetup(2, UFFD_FEATURE_EVENT_UNMAP);
    const inj = injectFaults(p, [{ inject: inject.enoent({ via: "munmap" }) }]);
    reader(p, base);
    await k.idle();
    await readMsgs(p, uffd);
    const arg = copyArg(base, pageOf(0));
    await expect(p.ioctl(uffd, UFFDIO_COPY, arg)).rejects.toMatchObject({ code: "EAGAIN" });
    expect(arg.copy).toBe(-11);
    const [ev] = await readMsgs(p, uffd);
    expect(ev).toEqual({ event: UFFD_EVENT_UNMAP, arg: { remove: { start: base, end: base + PAGE_SIZE } } });
    await Promise.all(inj.pending); // munmap returns once its event was read
    await expect(p.ioctl(uffd, UFFDIO_COPY, arg)).rejects.toMatchObject({ code: "ENOENT" });
    expect(arg.copy).toBe(-2);
    k.checkInvariants();
  });
});

describe("inject.esrch: the process exited (linux-rules §2.0: mmget_not_zero fails -> ESRCH, field untouched)", () => {
  it("a monitor's COPY after the guest exits: ESRCH, out untouched; the guest's thread died with it", async () => {
    const { k, p: app, uffd, base } = await rawSetup(2);
    const monitor = k.spawn({ name: "monitor" });
    const mfd = await app.sendFd(uffd, monitor);
    injectFaults(monitor, [{ inject: inject.esrch() }], { guest: app });
    const g = reader(app, base);
    await k.idle();
    expect((await readMsgs(monitor, mfd)).length).toBe(1);
    const arg = copyArg(base, pageOf(0));
    await expect(monitor.ioctl(mfd, UFFDIO_COPY, arg)).rejects.toMatchObject({ code: "ESRCH" });
    expect(arg.copy).toBe(12345);
    expect(app.exited).toBe(true);
    await k.idle();
    expect(g.state).toBe("died");
    k.checkInvariants();
  });
});

describe("inject.delayWake: the wake comes later (DONTWAKE, then UFFDIO_WAKE; linux-rules §3.3)", () => {
  it("the page is installed at once, the thread stays asleep until the WAKE 5 ms (virtual) later", async () => {
    const { k, p, uffd, base } = await rawSetup(1);
    injectFaults(p, [{ inject: inject.delayWake(5) }]);
    const g = reader(p, base);
    await k.idle();
    await readMsgs(p, uffd);
    const arg = copyArg(base, pageOf(0));
    await p.ioctl(uffd, UFFDIO_COPY, arg);
    expect(arg).toMatchObject({ copy: PAGE_SIZE, mode: 0 }); // the caller's struct keeps its own mode
    expect(p).toHavePagemap(base, { present: true });
    const t0 = k.now;
    expect(g).toBeBlocked(base);
    await k.idle();
    expect(g).toHaveCompleted();
    expect(k.now - t0).toBeGreaterThanOrEqual(5e6);
    const wake = recorderOf(k).events.find((e) => e.kind === "ioctl" && e.op === "WAKE");
    expect(wake).toMatchObject({ who: "inject", start: base, len: PAGE_SIZE, result: "ok" });
    k.checkInvariants();
  });
});

describe("inject.removeBefore: a REMOVE between a fault and its resolve (linux-rules §4, handler survey §5.3-5.4)", () => {
  it("with EVENT_REMOVE: the guest's MADV_DONTNEED queues REMOVE, the resolve answers EAGAIN (out -11), the retry after reading it succeeds", async () => {
    const { k, p, uffd, base } = await rawSetup(2, UFFD_FEATURE_EVENT_REMOVE);
    const inj = injectFaults(p, [{ inject: inject.removeBefore() }]);
    const g = reader(p, base);
    await k.idle();
    await readMsgs(p, uffd);
    const arg = copyArg(base, pageOf(0));
    await expect(p.ioctl(uffd, UFFDIO_COPY, arg)).rejects.toMatchObject({ code: "EAGAIN" });
    expect(arg.copy).toBe(-11);
    const [ev] = await readMsgs(p, uffd);
    expect(ev).toEqual({ event: UFFD_EVENT_REMOVE, arg: { remove: { start: base, end: base + PAGE_SIZE } } });
    await Promise.all(inj.pending); // madvise returns once REMOVE was read
    await p.ioctl(uffd, UFFDIO_COPY, arg);
    expect(arg.copy).toBe(PAGE_SIZE);
    await k.idle();
    expect(g).toHaveCompleted();
    expect(g.result).toEqual(pageOf(0).subarray(0, 4));
    const madvise = recorderOf(k).events.filter((e) => e.kind === "syscall" && e.name === "madvise");
    expect(madvise.map((e) => e.kind === "syscall" && e.result)).toEqual(["...", "ok"]);
    k.checkInvariants();
  });

  it("without EVENT_REMOVE nobody is told: the DONTNEED of the empty page is a no-op and the resolve succeeds", async () => {
    const { k, p, uffd, base } = await rawSetup(1);
    const inj = injectFaults(p, [{ inject: inject.removeBefore() }]);
    reader(p, base);
    await k.idle();
    await readMsgs(p, uffd);
    const arg = copyArg(base, pageOf(0));
    await p.ioctl(uffd, UFFDIO_COPY, arg);
    expect(arg.copy).toBe(PAGE_SIZE);
    await Promise.all(inj.pending);
    expect(inj.fired("remove")).toBe(1);
    k.checkInvariants();
  });
});

describe("rule matching", () => {
  it("nth, times and address pick which resolves are hit", async () => {
    const { k, p, uffd, base } = await rawSetup(4);
    const inj = injectFaults(p, [{ op: "zeropage", nth: 2, times: 2, address: base + 3 * PAGE_SIZE, inject: inject.eexist({ racerWakes: true }) }]);
    const zp = (i: number) => p.ioctl(uffd, UFFDIO_ZEROPAGE, { range: { start: base + i * PAGE_SIZE, len: PAGE_SIZE }, mode: 0, zeropage: 0 });
    await zp(0); // address does not match
    await expect(p.ioctl(uffd, UFFDIO_COPY, copyArg(base + 3 * PAGE_SIZE, pageOf(3)))).resolves.toBe(0); // op does not match
    await madviseBack(p, base + 3 * PAGE_SIZE);
    await zp(3); // 1st match: not yet
    await madviseBack(p, base + 3 * PAGE_SIZE);
    await expect(zp(3)).rejects.toMatchObject({ code: "EEXIST" }); // 2nd: fires
    await madviseBack(p, base + 3 * PAGE_SIZE);
    await expect(zp(3)).rejects.toMatchObject({ code: "EEXIST" }); // 3rd: fires (times 2)
    await madviseBack(p, base + 3 * PAGE_SIZE);
    await zp(3); // exhausted
    expect(inj.fired()).toBe(2);
    inj.remove();
    k.checkInvariants();
  });
});

/** Empties a page again (no REMOVE feature: nobody is told). */
async function madviseBack(p: Process, addr: number): Promise<void> {
  await p.madvise(addr, PAGE_SIZE, MADV_DONTNEED);
}
