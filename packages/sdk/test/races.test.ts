/**
 * The races a userfaultfd handler meets, each forced deterministically, with the SDK's default
 * behaviour asserted: every faulting thread completes with the right bytes (or the signal Linux
 * gives it), and no fault is lost (every fault read ends with exactly one outcome).
 *
 * References: docs/linux-rules.md §1.7 (two threads, two messages), §2.0 (result field,
 * mmap_changing), §2.5 (EEXIST, partial progress), §3.3 (wake), §4 (events); docs/handler-survey.md §5.
 */
import { describe, expect, it } from "vitest";
import { SignalError } from "@uffd/kernel";
import { ErrnoError } from "@uffd/kernel";
import { MADV_DONTNEED, MREMAP_FIXED, MREMAP_MAYMOVE } from "@uffd/kernel/uapi";
import { type Fault, HandlerError, type Resolution, Userfaultfd } from "@uffd/sdk";
import { anon, gate, PAGE_SIZE, pageOf, setup, stillPending } from "./helpers.ts";

/** madvise and mremap land in the kernel separately; until then their scenarios cannot run. */
async function syscallWorks(call: "madvise" | "mremap"): Promise<boolean> {
  const { p } = setup();
  const a = await anon(p, 2);
  try {
    if (call === "madvise") await p.madvise(a, PAGE_SIZE, MADV_DONTNEED);
    else await p.mremap(a, PAGE_SIZE, PAGE_SIZE, MREMAP_MAYMOVE | MREMAP_FIXED, a + PAGE_SIZE);
    return true;
  } catch (e) {
    return !(e instanceof ErrnoError && e.code === "ENOSYS");
  }
}
const hasMadvise = await syscallWorks("madvise");
const hasMremap = await syscallWorks("mremap");

describe("races, forced deterministically", () => {
  it("two threads on one page: one fault, one copy, both threads get the bytes (linux-rules §1.7: two messages, no dedup in the kernel)", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p);
    const a = await anon(p, 2);
    await uffd.register(a, 2 * PAGE_SIZE, "missing");
    const seen: Fault[] = [];
    uffd.on("fault", (f) => {
      seen.push(f);
      return f.copy(pageOf(7));
    });
    const t2 = p.spawnThread("t2");
    const [r1, r2] = await Promise.all([p.mainThread.read(a, 4), t2.read(a + 100, 4)]);
    expect(r1).toEqual(pageOf(7).subarray(0, 4));
    expect(r2).toEqual(pageOf(7).subarray(0, 4));
    await uffd.drain();
    expect(seen).toHaveLength(1);
    expect(seen[0]!.threadIds).toEqual([p.mainThread.tid, t2.tid]);
    const m = uffd.metrics.snapshot();
    expect(m.faults).toMatchObject({ missing: 1, duplicates: 1 });
    expect(m.outcomes.installed).toBe(1);
    expect(m.bytes.copy).toBe(PAGE_SIZE);
    await uffd.close();
    k.checkInvariants();
  });

  it("EEXIST from a racing resolve wakes the waiter, counts as resolved, and keeps the first page (handler survey §5.1)", async () => {
    const { k, p } = setup();
    // The handler waits at a gate while the kernel idles, which a virtual deadline would call stuck.
    const uffd = await Userfaultfd.open(p, { deadline: { virtualMs: null } });
    const a = await anon(p, 1);
    await uffd.register(a, PAGE_SIZE, "missing");
    const g = gate();
    const outcomes: Resolution[] = [];
    uffd.on("fault", async (f) => {
      await g.wait;
      outcomes.push(await f.copy(pageOf(1)));
    });
    const read = p.mainThread.read(a, 4);
    expect(await stillPending(k, read)).toBe(true);
    // Someone else installs the page first and leaves the thread asleep (DONTWAKE).
    expect(await uffd.copy(a, pageOf(9), PAGE_SIZE, { dontWake: true })).toEqual({ installedBytes: PAGE_SIZE, presentBytes: 0, goneBytes: 0 });
    expect(await stillPending(k, read)).toBe(true);
    g.open();
    expect(await read).toEqual(pageOf(9).subarray(0, 4));
    await uffd.drain();
    await k.idle();
    expect(outcomes).toEqual(["present"]);
    expect(uffd.metrics.snapshot().outcomes).toMatchObject({ present: 1, installed: 0, failed: 0 });
    await uffd.close();
    k.checkInvariants();
  });

  it("EAGAIN while an event is unread is retried once the event is processed (linux-rules §2.0 mmap_changing, linux-rules §4)", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p);
    const a = await anon(p, 1);
    const b = await anon(p, 1);
    await uffd.register(a, PAGE_SIZE, "missing");
    await uffd.register(b, PAGE_SIZE, "missing");
    const unmapped: number[] = [];
    uffd.on("unmap", (e) => unmapped.push(e.start));
    let munmap: Promise<void> | null = null;
    uffd.on("fault", (f) => {
      // The UNMAP event is queued (mmap_changing raised) before the copy is issued.
      munmap = p.munmap(b, PAGE_SIZE);
      return f.copy(pageOf(3));
    });
    expect(await p.mainThread.read(a, 4)).toEqual(pageOf(3).subarray(0, 4));
    await munmap;
    await uffd.drain();
    const m = uffd.metrics.snapshot();
    expect(m.retries.eagain).toBeGreaterThanOrEqual(1);
    expect(m.outcomes.installed).toBe(1);
    expect(m.events.unmap).toBe(1);
    expect(unmapped).toEqual([b]);
    expect(uffd.ranges.map((r) => r.start)).toEqual([a]);
    await uffd.close();
    k.checkInvariants();
  });

  it("partial progress is continued and the present page is skipped, not overwritten (linux-rules §2.0: field 4096 + EAGAIN)", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p);
    const a = await anon(p, 4);
    await uffd.register(a, 4 * PAGE_SIZE, "missing");
    await uffd.copy(a + 2 * PAGE_SIZE, new Uint8Array(PAGE_SIZE).fill(0xee));
    const src = new Uint8Array(4 * PAGE_SIZE);
    for (let i = 0; i < 4; i++) src.set(pageOf(i), i * PAGE_SIZE);
    const r = await uffd.copy(a, src);
    expect(r).toEqual({ installedBytes: 3 * PAGE_SIZE, presentBytes: PAGE_SIZE, goneBytes: 0 });
    expect(uffd.metrics.snapshot().retries.partial).toBe(1);
    const bytes = await p.mainThread.read(a, 4 * PAGE_SIZE);
    for (const [i, fill] of [0x40, 0x41, 0xee, 0x43].entries()) expect(bytes[i * PAGE_SIZE + 17]).toBe(fill);
    await uffd.close();
    k.checkInvariants();
  });

  it("a range copy or zeropage whose first page is present: EEXIST on the first ioctl, that page skipped, the rest installed (mm/userfaultfd.c: mfill_atomic() stops at -EEXIST with nothing done)", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p);
    const a = await anon(p, 8);
    await uffd.register(a, 8 * PAGE_SIZE, "missing");
    await uffd.copy(a, new Uint8Array(PAGE_SIZE).fill(0xee));
    await uffd.copy(a + 4 * PAGE_SIZE, new Uint8Array(PAGE_SIZE).fill(0xdd));
    const src = new Uint8Array(4 * PAGE_SIZE);
    for (let i = 0; i < 4; i++) src.set(pageOf(i), i * PAGE_SIZE);
    expect(await uffd.copy(a, src)).toEqual({ installedBytes: 3 * PAGE_SIZE, presentBytes: PAGE_SIZE, goneBytes: 0 });
    expect(await uffd.zeropage(a + 4 * PAGE_SIZE, 4 * PAGE_SIZE)).toEqual({ installedBytes: 3 * PAGE_SIZE, presentBytes: PAGE_SIZE, goneBytes: 0 });
    expect(uffd.metrics.snapshot().retries.partial).toBe(0);
    const bytes = await p.mainThread.read(a, 8 * PAGE_SIZE);
    for (const [i, fill] of [0xee, 0x41, 0x42, 0x43, 0xdd, 0, 0, 0].entries()) expect(bytes[i * PAGE_SIZE + 17]).toBe(fill);
    expect(p.pagemap(a, 8).every((e) => e.present)).toBe(true);
    await uffd.close();
    k.checkInvariants();
  });

  it("a handler exception SIGBUSes the faulting thread (policy sigbus, UFFD_FEATURE_SIGBUS semantics) and never reaches the kernel", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p);
    const a = await anon(p, 2);
    await uffd.register(a, 2 * PAGE_SIZE, "missing");
    const errors: unknown[] = [];
    uffd.on("error", (e) => errors.push(e));
    uffd.on("fault", (f) => {
      if (f.pageAddress === a) throw new Error("source offline");
      return f.copy(pageOf(1));
    });
    await expect(p.mainThread.read(a + 8, 1)).rejects.toMatchObject({ name: "SignalError", signal: "SIGBUS", address: a + 8 });
    // The other page is unaffected; the failed one stays SIGBUS until a page is installed over it.
    expect(await p.mainThread.read(a + PAGE_SIZE, 1)).toEqual(Uint8Array.of(0x41));
    await expect(p.mainThread.read(a, 1)).rejects.toBeInstanceOf(SignalError);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(HandlerError);
    expect(errors[0]).toMatchObject({ reason: "handler-threw", address: a, cause: { message: "source offline" } });
    await uffd.drain();
    expect(uffd.metrics.snapshot().outcomes).toMatchObject({ failed: 1, installed: 1 });
    expect(uffd.metrics.snapshot().policy.sigbus).toBe(1);
    await uffd.copy(a, pageOf(5));
    expect(await p.mainThread.read(a, 1)).toEqual(Uint8Array.of(0x45));
    await uffd.close();
    k.checkInvariants();
  });

  it("policy retry dispatches the fault again: a transient failure costs nothing", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p, { onHandlerError: "retry", retries: 2 });
    const a = await anon(p, 1);
    await uffd.register(a, PAGE_SIZE, "missing");
    let attempts = 0;
    uffd.on("fault", async (f) => {
      if (++attempts === 1) throw new Error("flaky");
      await f.copy(pageOf(2));
    });
    expect(await p.mainThread.read(a, 2)).toEqual(pageOf(2).subarray(0, 2));
    await uffd.drain();
    expect(attempts).toBe(2);
    expect(uffd.metrics.snapshot().policy).toMatchObject({ retry: 1, sigbus: 0 });
    await uffd.close();
    k.checkInvariants();
  });

  it("policy retry gives up after `retries` and SIGBUSes", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p, { onHandlerError: "retry", retries: 2 });
    const a = await anon(p, 1);
    await uffd.register(a, PAGE_SIZE, "missing");
    let attempts = 0;
    uffd.on("fault", () => {
      attempts++;
      throw new Error("down");
    });
    await expect(p.mainThread.read(a, 1)).rejects.toMatchObject({ signal: "SIGBUS" });
    expect(attempts).toBe(3);
    await uffd.close();
    k.checkInvariants();
  });

  it("a policy callback may resolve the fault itself", async () => {
    const { k, p } = setup();
    const calls: string[] = [];
    const uffd = await Userfaultfd.open(p, {
      onHandlerError: (f, err) => {
        calls.push(err.reason);
        return f.zeropage();
      },
    });
    const a = await anon(p, 1);
    await uffd.register(a, PAGE_SIZE, "missing");
    uffd.on("fault", () => Promise.reject(new Error("no")));
    expect(await p.mainThread.read(a, 3)).toEqual(new Uint8Array(3));
    expect(calls).toEqual(["handler-threw"]);
    expect(p.pagemap(a, 1)[0]!.pfn).toBe(k.zeroPfn);
    await uffd.close();
    k.checkInvariants();
  });

  it("a handler that never resolves goes to the policy at its deadline, on the kernel's virtual clock", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p, { deadline: { virtualMs: 250 } });
    const a = await anon(p, 1);
    await uffd.register(a, PAGE_SIZE, "missing");
    const errors: HandlerError[] = [];
    uffd.on("error", (e) => errors.push(e as HandlerError));
    uffd.on("fault", () => new Promise(() => {}));
    const t0 = k.now;
    await expect(p.mainThread.read(a, 1)).rejects.toMatchObject({ signal: "SIGBUS", address: a });
    expect(k.now - t0).toBeGreaterThanOrEqual(250e6);
    expect(errors.map((e) => e.reason)).toEqual(["handler-timeout"]);
    expect(uffd.metrics.snapshot().policy.timeouts).toBe(1);
    await uffd.close();
    k.checkInvariants();
  });

  it("a fault read before any listener exists waits for the first one instead of being lost", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p, { deadline: { virtualMs: null } });
    const a = await anon(p, 1);
    await uffd.register(a, PAGE_SIZE, "missing");
    const read = p.mainThread.read(a, 1);
    expect(await stillPending(k, read)).toBe(true);
    expect(uffd.pendingFaults).toBe(1);
    uffd.on("fault", (f) => f.copy(pageOf(4)));
    expect(await read).toEqual(Uint8Array.of(0x44));
    await uffd.close();
    k.checkInvariants();
  });

  it("fork mid-handling: the resolve waits out the FORK event, and the child's userfaultfd gets the same handlers (linux-rules §4 FORK)", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p);
    expect(uffd.has("event-fork")).toBe(true);
    const a = await anon(p, 2);
    await uffd.register(a, 2 * PAGE_SIZE, "missing");
    const children: Userfaultfd[] = [];
    uffd.on("fork", (child) => children.push(child));
    let forking: ReturnType<typeof p.fork> | null = null;
    uffd.on("fault", (f) => {
      forking ??= p.fork();
      return f.copy(pageOf(f.offset / PAGE_SIZE));
    });
    expect(await p.mainThread.read(a, 1)).toEqual(Uint8Array.of(0x40));
    const child = await forking!;
    expect(children).toHaveLength(1);
    const cu = children[0]!;
    expect(cu.ranges).toEqual(uffd.ranges);
    expect(cu.listenerCount("fault")).toBe(1);
    // Page 1 was never fetched: in the child it is still registered, and served by the child's handler.
    expect(await child.mainThread.read(a + PAGE_SIZE, 1)).toEqual(Uint8Array.of(0x41));
    expect(await child.mainThread.read(a, 1)).toEqual(Uint8Array.of(0x40));
    await uffd.drain();
    await cu.drain();
    expect(uffd.metrics.snapshot().retries.eagain).toBeGreaterThanOrEqual(1);
    expect(uffd.metrics.snapshot().faults.missing).toBeGreaterThanOrEqual(2);
    await child.exit(0);
    await cu.close();
    await uffd.close();
    k.checkInvariants();
  });

  it("unmap mid-handling: the waiter is woken and retries (SIGSEGV), the late resolve is 'gone', nothing is lost", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p, { deadline: { virtualMs: null } });
    const a = await anon(p, 2);
    await uffd.register(a, 2 * PAGE_SIZE, "missing");
    const g = gate();
    const outcomes: Resolution[] = [];
    uffd.on("fault", async (f) => {
      await g.wait;
      outcomes.push(await f.copy(pageOf(0)));
    });
    const read = p.mainThread.read(a, 1);
    expect(await stillPending(k, read)).toBe(true);
    await p.munmap(a, 2 * PAGE_SIZE);
    await expect(read).rejects.toMatchObject({ signal: "SIGSEGV", address: a });
    g.open();
    await uffd.drain();
    await k.idle();
    expect(outcomes).toEqual(["gone"]);
    expect(uffd.ranges).toEqual([]);
    expect(uffd.metrics.snapshot().outcomes).toMatchObject({ gone: 1, installed: 0 });
    await uffd.close();
    k.checkInvariants();
  });

  it.skipIf(!hasMadvise)("a REMOVE between fault and resolve: the fetched bytes are stale, zeros are installed (kernel doc: zeromap removed areas)", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p, { deadline: { virtualMs: null } });
    const a = await anon(p, 2);
    await uffd.register(a, 2 * PAGE_SIZE, "missing");
    const g = gate();
    const outcomes: Resolution[] = [];
    uffd.on("fault", async (f) => {
      await g.wait;
      outcomes.push(await f.copy(pageOf(6)));
    });
    const read = p.mainThread.read(a, 4);
    expect(await stillPending(k, read)).toBe(true);
    await p.madvise(a, 2 * PAGE_SIZE, MADV_DONTNEED);
    g.open();
    expect(await read).toEqual(new Uint8Array(4));
    await uffd.drain();
    await k.idle();
    expect(outcomes).toEqual(["zeroed"]);
    expect(uffd.metrics.snapshot().events.remove).toBe(1);
    await uffd.close();
    k.checkInvariants();
  });

  it.skipIf(!hasMremap)("a REMAP mid-handling moves the range with its source offsets; the old address is gone", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p);
    const a = await anon(p, 2);
    const dst = await anon(p, 2);
    await uffd.register(a, 2 * PAGE_SIZE, "missing", { offset: 0 });
    uffd.serve({ read: (off) => pageOf(off / PAGE_SIZE) });
    await p.mremap(a, 2 * PAGE_SIZE, 2 * PAGE_SIZE, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
    expect(uffd.ranges.map((r) => [r.start, r.offset])).toEqual([[dst, 0]]);
    expect(await p.mainThread.read(dst + PAGE_SIZE, 1)).toEqual(Uint8Array.of(0x41));
    await uffd.close();
    k.checkInvariants();
  });

  it("close() mid-handling: blocked threads retry as ordinary faults (zero page), in-flight faults end as 'closed' (linux-rules §3.5)", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p, { deadline: { virtualMs: null } });
    const a = await anon(p, 1);
    await uffd.register(a, PAGE_SIZE, "missing");
    uffd.on("fault", () => new Promise(() => {}));
    const read = p.mainThread.read(a, 2);
    expect(await stillPending(k, read)).toBe(true);
    await uffd.close();
    expect(await read).toEqual(new Uint8Array(2));
    expect(uffd.metrics.snapshot().outcomes.closed).toBe(1);
    expect(p.smaps().find((v) => v.start === a)!.vmFlags).not.toContain("um");
    k.checkInvariants();
  });
});
