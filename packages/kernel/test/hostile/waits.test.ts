/**
 * What holds while syscalls sleep: checkInvariants() counts the references and pins a blocked
 * syscall holds (a GUP pin, a COPY whose source faults in), and kernel.idle() tells a long run of
 * legitimate work from a livelock.
 */
import { DeadTaskError, Kernel, type Process } from "@uffd/kernel";
import {
  MAP_ANONYMOUS,
  MAP_POPULATE,
  MAP_PRIVATE,
  O_NONBLOCK,
  PAGE_SIZE,
  PROT_READ,
  PROT_WRITE,
  UFFD_API,
  UFFDIO_API,
  UFFDIO_COPY,
  UFFDIO_REGISTER,
  UFFDIO_REGISTER_MODE_MISSING,
  UFFDIO_WAKE,
  UFFDIO_ZEROPAGE,
} from "@uffd/kernel/uapi";
import { describe, expect, it } from "vitest";

const PS = PAGE_SIZE;
const RW = PROT_READ | PROT_WRITE;
const ANON = MAP_PRIVATE | MAP_ANONYMOUS;

async function registered(p: Process, addr: number, len: number, flags = O_NONBLOCK): Promise<number> {
  const uffd = await p.userfaultfd(flags);
  await p.ioctl(uffd, UFFDIO_API, { api: UFFD_API, features: 0 });
  await p.ioctl(uffd, UFFDIO_REGISTER, { range: { start: addr, len }, mode: UFFDIO_REGISTER_MODE_MISSING });
  return uffd;
}

describe("checkInvariants() while a syscall sleeps", () => {
  it("counts the pins of a long-term pin that waits on a userfault for its second page", async () => {
    const k = new Kernel({ seed: 1 });
    const p = k.spawn();
    const a = await p.mmap(0, 2 * PS, RW, ANON);
    await p.mainThread.write(a, new Uint8Array([1]));
    const uffd = await registered(p, a + PS, PS);
    const pinning = p.gupTestPin(a, 2 * PS, { write: true, longterm: true, fast: false });
    await k.idle();
    // The first page is pinned and the call sleeps: the recount includes the pin (a false KernelBug before).
    k.checkInvariants();
    await p.ioctl(uffd, UFFDIO_COPY, { dst: a + PS, src: new Uint8Array(PS), len: PS, mode: 0 });
    const pin = await pinning;
    k.checkInvariants();
    await pin.unregister();
  });

  it("counts the frame a COPY prepared while its source page faults in", async () => {
    const k = new Kernel({ seed: 1 });
    const p = k.spawn();
    const dst = await p.mmap(0, PS, RW, ANON);
    const src = await p.mmap(0, PS, RW, ANON);
    const dstUffd = await registered(p, dst, PS);
    const srcUffd = await registered(p, src, PS);
    const copying = p.ioctl(dstUffd, UFFDIO_COPY, { dst, src, len: PS, mode: 0 });
    await k.idle();
    k.checkInvariants();
    await p.ioctl(srcUffd, UFFDIO_COPY, { dst: src, src: new Uint8Array(PS).fill(3), len: PS, mode: 0 });
    await copying;
    expect(await p.mainThread.read(dst, 1)).toEqual(new Uint8Array([3]));
  });
});

describe("userfaultfd queues", () => {
  it("50,000 blocked faults read and resolved one page at a time: each wake costs its page, not the queue", async () => {
    const k = new Kernel({ seed: 1 });
    const p = k.spawn();
    const n = 50_000;
    const a = await p.mmap(0, n * PS, PROT_READ, ANON);
    const uffd = await registered(p, a, n * PS);
    const t0 = performance.now();
    const loads = Array.from({ length: n }, (_, i) => p.spawnThread().read(a + i * PS, 1));
    let msgs = 0;
    for (;;) {
      const got = await p.read(uffd, 1024 * 32).catch(() => null);
      if (got === null) break;
      msgs += got.length / 32;
    }
    expect(msgs).toBe(n);
    // Resolved in reverse order: every wake looks for one page among the queued faults.
    for (let i = n - 1; i >= 0; i--) await p.ioctl(uffd, UFFDIO_ZEROPAGE, { range: { start: a + i * PS, len: PS }, mode: 0 });
    const got = await Promise.all(loads);
    expect(got.every((b) => b[0] === 0)).toBe(true);
    // Printed, never asserted (the suite must pass on a loaded machine).
    console.log(`50,000 faults queued, read and woken one by one: ${(performance.now() - t0).toFixed(0)} ms`);
  }, 120_000);
});

describe("kernel.idle() and livelocks", () => {
  it("a long read under preemption is work, not a livelock: only turns without progress count", async () => {
    const k = new Kernel({ seed: 1, preemption: 1 });
    const p = k.spawn();
    const a = await p.mmap(0, 1024 * PS, PROT_READ, ANON);
    const reading = p.mainThread.read(a, 1024 * PS);
    // Every page access yields (preemption 1): over a thousand busy turns, each with progress.
    await k.sched.idle(100);
    expect((await reading).length).toBe(1024 * PS);
  });

  it("a 2 GiB populate under preemption finishes under the default idle()", async () => {
    const k = new Kernel({ seed: 1, preemption: 0.25 });
    const p = k.spawn();
    // Read-only: the populate maps the zero page, so no memory is spent on it.
    const mapping = p.mmap(0, 2 ** 31, PROT_READ, ANON | MAP_POPULATE);
    await k.idle();
    const a = await mapping;
    expect(p.pagemap(a + 2 ** 31 - PS, 1)[0]!.present).toBe(true);
  }, 120_000);

  it("threads that fault, sleep and are woken forever without a page arriving are reported", async () => {
    const k = new Kernel({ seed: 1 });
    const p = k.spawn();
    const a = await p.mmap(0, PS, RW, ANON);
    const uffd = await registered(p, a, PS, 0);
    const handler = k.spawn({ name: "handler" });
    const hfd = await p.sendFd(uffd, handler);
    // A buggy handler: it wakes the faulting thread without ever resolving the fault, then yields
    // a macrotask as an event-loop handler does (idle() observes macrotask turns).
    const loop = (async () => {
      for (;;) {
        await handler.read(hfd, 32);
        await handler.ioctl(hfd, UFFDIO_WAKE, { start: a, len: PS });
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();
    const access = p.mainThread.read(a, 1);
    await expect(k.sched.idle(1000)).rejects.toThrow(/livelock/);
    await handler.kill(p.pid, 9);
    await expect(access).rejects.toBeInstanceOf(DeadTaskError);
    // The handler, blocked in read(2) now that no fault comes, dies too.
    await k.spawn().kill(handler.pid, 9);
    await expect(loop).rejects.toThrow(/ESRCH|exited/);
  });
});
