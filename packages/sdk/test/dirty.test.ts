/**
 * A wp-based dirty tracker, sync (wp faults) and async (UFFD_FEATURE_WP_ASYNC + pagemap).
 * References: docs/linux-rules.md §2.7 (WRITEPROTECT, markers only with wp-unpopulated on anon),
 * §3.1 (a write to a marker in a WP-only range: zero page, then a WP fault; WP_ASYNC resolves
 * silently), §7.1 (pagemap bit 57); docs/handler-survey.md §3.H (e2b dirty tracking, QEMU background snapshot).
 */
import { describe, expect, it } from "vitest";
import { MADV_DONTNEED } from "@uffd/kernel/uapi";
import { DirtyTracker, Userfaultfd } from "@uffd/sdk";
import { anon, PAGE_SIZE, setup } from "./helpers.ts";

const one = Uint8Array.of(1);

describe("DirtyTracker", () => {
  it("sync: collects the pages written since the last collect, and protects them again", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p);
    const a = await anon(p, 6);
    for (let i = 0; i < 4; i++) await p.mainThread.write(a + i * PAGE_SIZE, one);
    await uffd.register(a, 6 * PAGE_SIZE, "wp");
    const tracker = new DirtyTracker(uffd, a, 6 * PAGE_SIZE);
    await tracker.begin();
    await p.mainThread.write(a + PAGE_SIZE, Uint8Array.of(2));
    await p.mainThread.write(a + 3 * PAGE_SIZE + 7, Uint8Array.of(3));
    // Page 5 was never populated: wp-unpopulated left a marker, so its first write is a wp fault too.
    await p.mainThread.write(a + 5 * PAGE_SIZE, Uint8Array.of(4));
    expect((await tracker.collect()).map((x) => (x - a) / PAGE_SIZE)).toEqual([1, 3, 5]);
    expect(p.pagemap(a, 6).map((e) => e.uffdWp)).toEqual([true, true, true, true, true, true]);
    await p.mainThread.write(a + PAGE_SIZE, Uint8Array.of(5));
    expect((await tracker.collect()).map((x) => (x - a) / PAGE_SIZE)).toEqual([1]);
    expect(await tracker.collect()).toEqual([]);
    expect(await p.mainThread.read(a + PAGE_SIZE, 1)).toEqual(Uint8Array.of(5));
    tracker.stop();
    await uffd.close();
    k.checkInvariants();
  });

  it("sync, across fork: the child's writes and removes are the child's, not the parent's dirty pages; the child's writes still go through", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p);
    expect(uffd.has("event-fork")).toBe(true);
    const a = await anon(p, 4);
    for (let i = 0; i < 4; i++) await p.mainThread.write(a + i * PAGE_SIZE, one);
    await uffd.register(a, 4 * PAGE_SIZE, "wp");
    const tracker = new DirtyTracker(uffd, a, 4 * PAGE_SIZE);
    await tracker.begin();
    const kids: Userfaultfd[] = [];
    uffd.on("fork", (c) => kids.push(c));
    const c = await p.fork();
    expect(kids).toHaveLength(1);
    // With EVENT_FORK the child keeps the uffd-wp bits (kernel/fork.c:copy_present_pte() keeps
    // them when the child vma stays registered), so its writes are wp faults on its own fd.
    await c.mainThread.write(a + 2 * PAGE_SIZE, Uint8Array.of(9));
    await c.madvise(a + 3 * PAGE_SIZE, PAGE_SIZE, MADV_DONTNEED);
    await p.mainThread.write(a, Uint8Array.of(8));
    expect((await tracker.collect()).map((x) => (x - a) / PAGE_SIZE)).toEqual([0]);
    expect(await c.mainThread.read(a + 2 * PAGE_SIZE, 1)).toEqual(Uint8Array.of(9));
    expect(await p.mainThread.read(a + 2 * PAGE_SIZE, 1)).toEqual(one);
    await kids[0]!.drain();
    expect(uffd.metrics.snapshot().policy.errors).toBe(0);
    tracker.stop();
    await c.exit(0);
    await kids[0]!.close();
    await uffd.close();
    k.checkInvariants();
  });

  it("async: no fault is delivered; written pages are found by their cleared uffd-wp bit in pagemap", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p, { features: ["wp-async"] });
    expect(uffd.has("wp-unpopulated")).toBe(true);
    const a = await anon(p, 4);
    await p.mainThread.write(a, one);
    await uffd.register(a, 4 * PAGE_SIZE, "wp");
    const tracker = new DirtyTracker(uffd, a, 4 * PAGE_SIZE, { mode: "async" });
    await tracker.begin();
    await p.mainThread.write(a + 2 * PAGE_SIZE, one);
    await p.mainThread.write(a, Uint8Array.of(9));
    expect((await tracker.collect()).map((x) => (x - a) / PAGE_SIZE)).toEqual([0, 2]);
    expect((await tracker.collect()).map((x) => (x - a) / PAGE_SIZE)).toEqual([]);
    await uffd.drain();
    expect(uffd.metrics.snapshot().faults.wp).toBe(0);
    await uffd.close();
    k.checkInvariants();
  });

  it("async mode without the wp-async feature is refused up front", async () => {
    const { p } = setup();
    const uffd = await Userfaultfd.open(p);
    expect(() => new DirtyTracker(uffd, 0x10000, PAGE_SIZE, { mode: "async" })).toThrow(/wp-async/);
    await uffd.close();
  });
});
