/**
 * When a woken sleeper runs. Linux only makes a woken task runnable; when it runs is the
 * scheduler's business (on another CPU it may run before the waker returns). The simulation
 * picks, without preemption: a thread woken by a resolving ioctl (fs/userfaultfd.c:
 * wake_userfault() from userfaultfd_copy() and the others) retries its access before the ioctl
 * returns, and a read(2) blocked in userfaultfd_read_iter() with room for one uffd_msg takes a
 * fault as handle_userfault() queues it (with room for more, it reads in the resume batch, so
 * faults queued in the same stretch come in one read). With preemption both go through the
 * resume batch and the policy decides. These tests pin that down, and that the messages, the
 * frames and the wake order are those of the deferred path.
 */
import { describe, expect, it } from "vitest";
import { Kernel } from "@uffd/kernel";
import {
  decodeUffdMsgs,
  O_CLOEXEC,
  UFFD_API,
  UFFD_EVENT_PAGEFAULT,
  UFFD_PAGEFAULT_FLAG_WRITE,
  UFFDIO_API,
  UFFDIO_COPY,
  UFFDIO_COPY_MODE_DONTWAKE,
  UFFDIO_REGISTER_MODE_MISSING,
  UFFDIO_WAKE,
  UFFDIO_ZEROPAGE,
} from "@uffd/kernel/uapi";
import { pageDown, pageOffset } from "../../src/lib/addr.ts";
import { fill, isBlocked, mapArea, PS, register, setup } from "./helpers.ts";

/** A flag that turns true when `p` settles (read after an await of something settled later). */
function settledFlag(p: Promise<unknown>): { settled: boolean } {
  const f = { settled: false };
  const mark = (): void => {
    f.settled = true;
  };
  p.then(mark, mark);
  return f;
}

describe("a thread woken by a resolving ioctl retries its access before the ioctl returns", () => {
  it("UFFDIO_COPY, UFFDIO_ZEROPAGE and UFFDIO_WAKE: the access has completed when the ioctl's promise settles", async () => {
    const { k, p, uffd } = await setup(0, 0);
    const { addr } = await mapArea(p, "anon", 3);
    await register(p, uffd, addr, 3 * PS, UFFDIO_REGISTER_MODE_MISSING);
    const t = p.spawnThread("t");

    const w = t.write(addr + 5, Uint8Array.of(0x77));
    const wDone = settledFlag(w);
    expect(await isBlocked(k, w)).toBe(true);
    await p.ioctl(uffd, UFFDIO_COPY, { dst: addr, src: fill(0x11), len: PS, mode: 0 });
    expect(wDone.settled).toBe(true);

    const r = t.read(addr + PS, 2);
    const rDone = settledFlag(r);
    expect(await isBlocked(k, r)).toBe(true);
    await p.ioctl(uffd, UFFDIO_ZEROPAGE, { range: { start: addr + PS, len: PS }, mode: 0 });
    expect(rDone.settled).toBe(true);
    expect(await r).toEqual(Uint8Array.of(0, 0));

    // DONTWAKE leaves it asleep; UFFDIO_WAKE runs it.
    const w2 = t.write(addr + 2 * PS, Uint8Array.of(0x99));
    const w2Done = settledFlag(w2);
    expect(await isBlocked(k, w2)).toBe(true);
    await p.ioctl(uffd, UFFDIO_COPY, { dst: addr + 2 * PS, src: fill(0x22), len: PS, mode: UFFDIO_COPY_MODE_DONTWAKE });
    expect(await isBlocked(k, w2)).toBe(true);
    await p.ioctl(uffd, UFFDIO_WAKE, { start: addr + 2 * PS, len: PS });
    expect(w2Done.settled).toBe(true);

    const page = await p.mainThread.read(addr, 3 * PS);
    expect([page[0], page[5], page[6], page[PS], page[2 * PS], page[2 * PS + 1]]).toEqual([0x11, 0x77, 0x11, 0, 0x99, 0x22]);
    k.checkInvariants();
  });

  it("several threads woken by one COPY all complete before it returns, in the order the seed draws, as with the deferred wake", async () => {
    const orders: string[][] = [];
    // A policy that never preempts: the wakes take the resume batch, with the same seeded order.
    const never = { preempt: (): boolean => false, pick: (): number => 0 };
    for (const preemption of [undefined, never]) {
      const k = new Kernel({ seed: 7, ...(preemption === undefined ? {} : { preemption }) });
      const p = k.spawn();
      const uffd = await p.userfaultfd(O_CLOEXEC);
      await p.ioctl(uffd, UFFDIO_API, { api: UFFD_API, features: 0 });
      const { addr } = await mapArea(p, "anon", 1);
      await register(p, uffd, addr, PS, UFFDIO_REGISTER_MODE_MISSING);
      const order: string[] = [];
      const ws = ["a", "b", "c", "d"].map((n, i) => p.spawnThread(n).write(addr + i, Uint8Array.of(i + 1)).then(() => void order.push(n)));
      await k.idle();
      await p.ioctl(uffd, UFFDIO_COPY, { dst: addr, src: fill(0), len: PS, mode: 0 });
      // At once without a policy; in the resume batch, after the ioctl, with one.
      expect(order.length).toBe(preemption === undefined ? 4 : 0);
      await Promise.all(ws);
      expect([...(await p.mainThread.read(addr, 4))]).toEqual([1, 2, 3, 4]);
      orders.push(order);
      k.checkInvariants();
    }
    // The same seed wakes them in the same order whether they run at once or in the resume batch.
    expect(orders[0]).toEqual(orders[1]);
  });
});

describe("a blocked one-message read takes a fault as it is queued", () => {
  it("the message is in the buffer when the faulting store returns; the bytes are read()'s", async () => {
    const { k, p, uffd } = await setup(0, 0);
    const { addr } = await mapArea(p, "anon", 2);
    await register(p, uffd, addr, 2 * PS, UFFDIO_REGISTER_MODE_MISSING);
    const buf = new Uint8Array(32).fill(0xff);
    const read = p.readInto(uffd, buf);
    expect(await isBlocked(k, read)).toBe(true);
    const w = p.spawnThread("t").write(addr + PS + 9, Uint8Array.of(1));
    // No await since the store: the read already took the fault.
    expect(decodeUffdMsgs(buf)).toEqual([{ event: UFFD_EVENT_PAGEFAULT, arg: { pagefault: { flags: UFFD_PAGEFAULT_FLAG_WRITE, address: addr + PS, feat: { ptid: 0 } } } }]);
    expect(await read).toBe(32);
    await p.ioctl(uffd, UFFDIO_COPY, { dst: addr + PS, src: fill(3), len: PS, mode: 0 });
    await w;
    k.checkInvariants();
  });

  it("a read with room for two still takes the faults of one stretch together", async () => {
    const { k, p, uffd } = await setup(0, 0);
    const { addr } = await mapArea(p, "anon", 2);
    await register(p, uffd, addr, 2 * PS, UFFDIO_REGISTER_MODE_MISSING);
    const buf = new Uint8Array(64);
    const read = p.readInto(uffd, buf);
    expect(await isBlocked(k, read)).toBe(true);
    const w0 = p.spawnThread("t0").write(addr, Uint8Array.of(1));
    const w1 = p.spawnThread("t1").write(addr + PS, Uint8Array.of(2));
    expect(await read).toBe(64);
    const addrs = decodeUffdMsgs(buf).map((m) => (m.event === UFFD_EVENT_PAGEFAULT ? m.arg.pagefault.address : -1));
    expect(addrs).toEqual([addr, addr + PS]);
    await p.ioctl(uffd, UFFDIO_COPY, { dst: addr, src: fill(0, 2 * PS), len: 2 * PS, mode: 0 });
    await Promise.all([w0, w1]);
    k.checkInvariants();
  });
});

describe("lib/addr.ts", () => {
  it("pageOffset() and pageDown() agree with % and its complement on integers up to 2^53", () => {
    const xs = [0, 1, 4095, 4096, 4097, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 4095, 0x7fff_ffff_f000, 0x7fff_ffff_ffff, 2 ** 53 - 1];
    for (let i = 0; i < 2000; i++) xs.push(Math.floor(((i * 2654435761) % 2 ** 32) * 2 ** 21 + i));
    for (const x of xs) {
      expect(pageOffset(x)).toBe(x % PS);
      expect(pageDown(x)).toBe(x - (x % PS));
    }
  });
});
