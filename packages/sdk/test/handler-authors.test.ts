/**
 * What a handler author coming from C, userfaultfd-rs, Firecracker or e2b expects: a pull-style
 * read loop with the same race-safe resolvers, a loud report when a listener throws, a default
 * deadline that does not fire while a test waits on kernel.idle(), and range operations in C's
 * argument order with a `wake` option.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { DEFAULT_DEADLINE_WALL_MS, type Fault, type UffdEvent, Userfaultfd } from "@uffd/sdk";
import { anon, gate, PAGE_SIZE, pageOf, setup, stillPending } from "./helpers.ts";

afterEach(() => {
  vi.restoreAllMocks();
});

describe("the pull-style API", () => {
  it("readEvent() returns faults to resolve with the usual resolvers, and events already applied to the view; null after close", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p);
    const a = await anon(p, 4);
    await uffd.register(a, 4 * PAGE_SIZE, "missing");
    const load = p.mainThread.read(a + PAGE_SIZE, 4);
    const ev = await uffd.readEvent();
    expect(ev?.type).toBe("fault");
    const fault = (ev as { fault: Fault }).fault;
    expect(fault).toMatchObject({ kind: "missing", pageAddress: a + PAGE_SIZE, offset: PAGE_SIZE, threadId: p.mainThread.tid });
    expect(await fault.copy(pageOf(1))).toBe("installed");
    expect(await load).toEqual(pageOf(1).subarray(0, 4));
    // An UNMAP: the view already dropped the span when the event is pulled.
    await p.munmap(a + 3 * PAGE_SIZE, PAGE_SIZE);
    expect(await uffd.readEvent()).toEqual({ type: "unmap", start: a + 3 * PAGE_SIZE, end: a + 4 * PAGE_SIZE });
    expect(uffd.ranges.map((r) => [r.start, r.end])).toEqual([[a, a + 3 * PAGE_SIZE]]);
    const last = uffd.readEvent();
    await uffd.close();
    expect(await last).toBeNull();
    expect(await uffd.readEvent()).toBeNull();
    k.checkInvariants();
  });

  it("for await serves every fault; a fault read before the first pull is not lost; the resolvers stay race-safe (EEXIST is present)", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p);
    const a = await anon(p, 3);
    await uffd.register(a, 3 * PAGE_SIZE, "missing");
    // Read by the SDK before anybody pulls: it waits for the first pull.
    const first = p.mainThread.read(a, 1);
    await k.idle();
    expect(uffd.pendingFaults).toBe(1);
    const t2 = p.spawnThread("t2");
    const outcomes: string[] = [];
    const served = (async () => {
      for await (const ev of uffd) {
        if (ev.type !== "fault") continue;
        // Someone else installs page 2 first (and leaves the thread asleep): the pulled fault's copy meets EEXIST.
        if (ev.fault.pageAddress === a + 2 * PAGE_SIZE) await uffd.copy(ev.fault.pageAddress, pageOf(9), PAGE_SIZE, { wake: false });
        outcomes.push(await ev.fault.copy(pageOf((ev.fault.pageAddress - a) / PAGE_SIZE)));
        if (outcomes.length === 3) break;
      }
    })();
    expect(await first).toEqual(Uint8Array.of(pageOf(0)[0]!));
    expect(await t2.read(a + PAGE_SIZE, 1)).toEqual(Uint8Array.of(pageOf(1)[0]!));
    expect(await p.mainThread.read(a + 2 * PAGE_SIZE, 1)).toEqual(Uint8Array.of(pageOf(9)[0]!));
    await served;
    expect(outcomes).toEqual(["installed", "installed", "present"]);
    // Leaving the loop did not close the userfaultfd.
    expect(uffd.closed).toBe(false);
    await uffd.close();
    k.checkInvariants();
  });

  it("a FORK arrives as an event carrying the child's userfaultfd, which can be pulled from too", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p);
    const a = await anon(p, 1);
    await uffd.register(a, PAGE_SIZE, "missing");
    const forking = p.fork();
    const ev = (await uffd.readEvent()) as UffdEvent;
    expect(ev.type).toBe("fork");
    const child = (ev as { child: Userfaultfd }).child;
    const c = await forking;
    const load = c.mainThread.read(a, 1);
    const cev = await child.readEvent();
    expect(cev?.type).toBe("fault");
    expect(await (cev as { fault: Fault }).fault.copy(pageOf(5))).toBe("installed");
    expect(await load).toEqual(Uint8Array.of(pageOf(5)[0]!));
    await c.exit(0);
    await child.close();
    await uffd.close();
    k.checkInvariants();
  });
});

describe("a handler bug is loud", () => {
  it("a listener that throws with no 'error' listener prints one warning naming the fault and the cause", async () => {
    const { k, p } = setup();
    const warn = vi.spyOn(process, "emitWarning").mockImplementation(() => {});
    const uffd = await Userfaultfd.open(p);
    const a = await anon(p, 1);
    await uffd.register(a, PAGE_SIZE, "missing");
    uffd.on("fault", () => {
      throw new Error("page server unreachable");
    });
    await expect(p.mainThread.read(a, 1)).rejects.toMatchObject({ signal: "SIGBUS" });
    expect(warn).toHaveBeenCalledTimes(1);
    const [message, options] = warn.mock.calls[0]! as [string, { type: string; code: string }];
    expect(message).toContain(`missing fault at 0x${a.toString(16)}`);
    expect(message).toContain("the handler failed: page server unreachable");
    expect(options).toMatchObject({ type: "UffdWarning", code: "UFFD_HANDLER_ERROR" });
    await uffd.close();
    k.checkInvariants();
  });

  it("with an 'error' listener the error goes there and nothing is printed; the error's message carries the cause too", async () => {
    const { k, p } = setup();
    const warn = vi.spyOn(process, "emitWarning").mockImplementation(() => {});
    const uffd = await Userfaultfd.open(p);
    const a = await anon(p, 1);
    await uffd.register(a, PAGE_SIZE, "missing");
    const errors: Error[] = [];
    uffd.on("error", (e) => errors.push(e));
    uffd.on("fault", () => Promise.reject(new Error("decrypt failed")));
    await expect(p.mainThread.read(a, 1)).rejects.toMatchObject({ signal: "SIGBUS" });
    expect(errors.map((e) => e.message)).toEqual([`missing fault at 0x${a.toString(16)}: the handler failed: decrypt failed`]);
    expect(errors[0]!.cause).toMatchObject({ message: "decrypt failed" });
    expect(warn).not.toHaveBeenCalled();
    await uffd.close();
    k.checkInvariants();
  });
});

describe("the default deadline", () => {
  it("is wall-clock time, so awaiting kernel.idle() while the handler waits for the test does not SIGBUS the fault", async () => {
    expect(DEFAULT_DEADLINE_WALL_MS).toBe(10_000);
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p); // the defaults
    const a = await anon(p, 1);
    await uffd.register(a, PAGE_SIZE, "missing");
    const g = gate();
    uffd.on("fault", async (f) => {
      await g.wait;
      return f.copy(pageOf(3));
    });
    const load = p.mainThread.read(a, 1);
    // idle() jumps the virtual clock over every pending timer: a virtual deadline would pass here.
    expect(await stillPending(k, load)).toBe(true);
    expect(await stillPending(k, load)).toBe(true);
    expect(uffd.metrics.snapshot().policy).toMatchObject({ sigbus: 0, timeouts: 0 });
    g.open();
    expect(await load).toEqual(Uint8Array.of(pageOf(3)[0]!));
    await uffd.close();
    k.checkInvariants();
  });

  it("a virtual deadline, when asked for, still fires on the kernel's clock", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p, { deadline: { virtualMs: 50 } });
    const a = await anon(p, 1);
    await uffd.register(a, PAGE_SIZE, "missing");
    const reasons: string[] = [];
    uffd.on("error", (e) => reasons.push((e as { reason?: string }).reason ?? ""));
    uffd.on("fault", () => new Promise(() => {}));
    const before = k.now;
    await expect(p.mainThread.read(a, 1)).rejects.toMatchObject({ signal: "SIGBUS" });
    expect(k.now - before).toBeGreaterThanOrEqual(50e6);
    expect(reasons).toEqual(["handler-timeout"]);
    expect(() => Userfaultfd.open(p, { deadline: { virtualMs: Number.NaN } })).rejects.toThrow(RangeError);
    await uffd.close();
    k.checkInvariants();
  });
});

describe("range operations", () => {
  it("take C's order (dst, src) and accept { wake: false } as dontWake; a contradiction is refused", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p);
    const a = await anon(p, 2);
    await uffd.register(a, 2 * PAGE_SIZE, "missing");
    const load = p.mainThread.read(a, 1);
    await k.idle();
    // dst first, then src, as struct uffdio_copy.
    expect(await uffd.copy(a, pageOf(4), PAGE_SIZE, { wake: false })).toEqual({ installedBytes: PAGE_SIZE, presentBytes: 0, goneBytes: 0 });
    expect(await stillPending(k, load)).toBe(true);
    await uffd.wake(a, PAGE_SIZE);
    expect(await load).toEqual(Uint8Array.of(pageOf(4)[0]!));
    await expect(uffd.copy(a + PAGE_SIZE, pageOf(5), PAGE_SIZE, { wake: true, dontWake: true })).rejects.toThrow(TypeError);
    await expect(uffd.zeropage(a + PAGE_SIZE, PAGE_SIZE, { wake: true })).resolves.toEqual({ installedBytes: PAGE_SIZE, presentBytes: 0, goneBytes: 0 });
    await uffd.close();
    k.checkInvariants();
  });
});
