/**
 * A wake with many faults blocked. fs/userfaultfd.c:wake_userfault() wakes, on both wait queues
 * (fault_pending_wqh and fault_wqh), exactly the waiters whose message address lies in the range
 * (userfaultfd_wake_function()); the simulation finds them through an index by page once a queue
 * has held a few waiters, with pages 256 apart sharing one of its chains. These tests block more
 * waiters than that on pages chosen to share chains, read some of the messages (so both queues
 * hold faults), and check that each wake releases exactly its range, whichever path looked the
 * waiters up, and that what is left stays blocked and queued.
 */
import { describe, expect, it } from "vitest";
import { Kernel } from "@uffd/kernel";
import {
  O_NONBLOCK,
  UFFD_API,
  UFFD_EVENT_PAGEFAULT,
  UFFDIO_API,
  UFFDIO_COPY,
  UFFDIO_COPY_MODE_DONTWAKE,
  UFFDIO_REGISTER_MODE_MISSING,
  UFFDIO_WAKE,
  UFFDIO_ZEROPAGE,
  type UffdMsg,
} from "@uffd/kernel/uapi";
import { fill, mapArea, PS, readMsgs, register } from "./helpers.ts";

/** The page index (from `addr`) of each page-fault message; -1 for any other event. */
function faultPages(msgs: UffdMsg[], addr: number): number[] {
  return msgs.map((m) => (m.event === UFFD_EVENT_PAGEFAULT ? (m.arg.pagefault.address - addr) / PS : -1));
}

/** Page of each blocked access: 0, 256 and 512 share a chain of the index, 1 and 257 another; 2 and 3 have two waiters each. */
const PAGES = [0, 1, 2, 3, 256, 257, 512, 2, 3, 300, 40, 41];

async function scene(seed: number, pages = PAGES): Promise<{ k: Kernel; p: Awaited<ReturnType<Kernel["spawn"]>>; uffd: number; addr: number; settled: boolean[]; accesses: Promise<unknown>[] }> {
  const k = new Kernel({ seed });
  const p = k.spawn();
  const uffd = await p.userfaultfd(O_NONBLOCK);
  await p.ioctl(uffd, UFFDIO_API, { api: UFFD_API, features: 0 });
  const { addr } = await mapArea(p, "anon", 600);
  await register(p, uffd, addr, 600 * PS, UFFDIO_REGISTER_MODE_MISSING);
  const settled = pages.map(() => false);
  const accesses = pages.map((page, i) => {
    const t = p.spawnThread(`t${i}`);
    const a = addr + page * PS + i;
    const r = i % 2 === 0 ? t.write(a, Uint8Array.of(i + 1)) : t.read(a, 1);
    return r.then(() => void (settled[i] = true));
  });
  await k.idle();
  return { k, p, uffd, addr, settled, accesses };
}

/** Indexes of PAGES whose access has completed. */
function done(settled: boolean[]): number[] {
  return settled.flatMap((s, i) => (s ? [i] : []));
}

describe("a wake with many blocked faults releases exactly its range", () => {
  it("pages sharing an index chain, two waiters on one page, read and unread messages; short and long ranges", async () => {
    const { k, p, uffd, addr, settled, accesses } = await scene(3);
    expect(done(settled)).toEqual([]);
    // Read five messages: those faults move to the read queue, the other seven stay pending.
    const first = await readMsgs(p, uffd, 5);
    expect(faultPages(first, addr)).toEqual(PAGES.slice(0, 5));
    // Populate every faulting page without waking anyone.
    for (const page of new Set(PAGES)) await p.ioctl(uffd, UFFDIO_COPY, { dst: addr + page * PS, src: fill(0x5a), len: PS, mode: UFFDIO_COPY_MODE_DONTWAKE });
    await k.idle();
    expect(done(settled)).toEqual([]);

    // Page 256 alone: not 0 or 512 in its chain.
    await p.ioctl(uffd, UFFDIO_WAKE, { start: addr + 256 * PS, len: PS });
    await k.idle();
    expect(done(settled)).toEqual([4]);
    // Page 2: both of its waiters, one read, one still pending.
    await p.ioctl(uffd, UFFDIO_WAKE, { start: addr + 2 * PS, len: PS });
    await k.idle();
    expect(done(settled)).toEqual([2, 4, 7]);
    // Pages [0, 4): 0, 1 and both waiters of 3; 257 (same chain as 1) and 512 (same as 0) stay.
    await p.ioctl(uffd, UFFDIO_WAKE, { start: addr, len: 4 * PS });
    await k.idle();
    expect(done(settled)).toEqual([0, 1, 2, 3, 4, 7, 8]);
    // A page nobody waits on, in a chain that holds waiters (296 = 40 + 256).
    await p.ioctl(uffd, UFFDIO_WAKE, { start: addr + 296 * PS, len: PS });
    await k.idle();
    expect(done(settled)).toEqual([0, 1, 2, 3, 4, 7, 8]);
    // More pages than chains: [41, 301) holds 41, 257 and 300 (the list is walked).
    await p.ioctl(uffd, UFFDIO_WAKE, { start: addr + 41 * PS, len: 260 * PS });
    await k.idle();
    expect(done(settled)).toEqual([0, 1, 2, 3, 4, 5, 7, 8, 9, 11]);
    // What is left is still queued: the two unread faults, in arrival order.
    expect(faultPages(await readMsgs(p, uffd), addr)).toEqual([512, 40]);
    await p.ioctl(uffd, UFFDIO_WAKE, { start: addr, len: 600 * PS });
    await Promise.all(accesses);
    expect(done(settled)).toEqual(PAGES.map((_, i) => i));
    expect(await readMsgs(p, uffd)).toEqual([]);
    k.checkInvariants();
  });

  it("threads woken together resume in the order the seed draws from the queue order, whichever way they were found", async () => {
    // Eight waiters on pages [0, 4), two per page, three messages read: a wake of those four
    // pages looks them up by page, one of 300 pages walks the queues; both must hand the same
    // list (queue order) to the seeded shuffle.
    const pages = [0, 1, 2, 3, 2, 3, 0, 1];
    const orders: number[][] = [];
    for (const [seed, wakePages] of [[5, 4], [5, 300], [6, 4], [6, 300]] as const) {
      const { k, p, uffd, addr, accesses } = await scene(seed, pages);
      const order: number[] = [];
      accesses.forEach((a, i) => void a.then(() => order.push(i)));
      await readMsgs(p, uffd, 3);
      for (let page = 0; page < 4; page++) await p.ioctl(uffd, UFFDIO_COPY, { dst: addr + page * PS, src: fill(0x5a), len: PS, mode: UFFDIO_COPY_MODE_DONTWAKE });
      await p.ioctl(uffd, UFFDIO_WAKE, { start: addr, len: wakePages * PS });
      await Promise.all(accesses);
      expect([...order].sort((a, b) => a - b)).toEqual(pages.map((_, i) => i));
      orders.push(order);
      k.checkInvariants();
    }
    expect(orders[1]).toEqual(orders[0]);
    expect(orders[3]).toEqual(orders[2]);
    // The seed does decide it.
    expect(orders[2]).not.toEqual(orders[0]);
  });

  it("a one-page COPY or ZEROPAGE (no DONTWAKE) with several faults blocked wakes exactly that page's waiters", async () => {
    const { k, p, uffd, addr, settled, accesses } = await scene(3);
    await readMsgs(p, uffd, 5);
    // Page 256 shares its index chain with 0 and 512: only its own waiter resumes.
    const copy = { dst: addr + 256 * PS, src: fill(0x5a), len: PS, mode: 0, copy: 0 };
    await p.ioctl(uffd, UFFDIO_COPY, copy);
    expect(copy.copy).toBe(PS);
    await k.idle();
    expect(done(settled)).toEqual([4]);
    // ZEROPAGE of page 257 (chain of page 1; its fault is still unread).
    const zero = { range: { start: addr + 257 * PS, len: PS }, mode: 0, zeropage: 0 };
    await p.ioctl(uffd, UFFDIO_ZEROPAGE, zero);
    expect(zero.zeropage).toBe(PS);
    await k.idle();
    expect(done(settled)).toEqual([4, 5]);
    // Page 2 has two waiters, one read and one pending: both resume.
    await p.ioctl(uffd, UFFDIO_COPY, { dst: addr + 2 * PS, src: fill(0x5b), len: PS, mode: 0 });
    await k.idle();
    expect(done(settled)).toEqual([2, 4, 5, 7]);
    // A page nobody waits on, in a chain that holds a waiter (296 = 40 + 256).
    await p.ioctl(uffd, UFFDIO_ZEROPAGE, { range: { start: addr + 296 * PS, len: PS }, mode: 0 });
    await k.idle();
    expect(done(settled)).toEqual([2, 4, 5, 7]);
    // The faults of the woken threads left the queues; the others are still there, in order.
    expect(faultPages(await readMsgs(p, uffd), addr)).toEqual([512, 3, 300, 40, 41]);
    expect(await p.mainThread.read(addr + 257 * PS, 1)).toEqual(Uint8Array.of(0));
    for (const page of [0, 1, 3, 512, 300, 40, 41]) await p.ioctl(uffd, UFFDIO_COPY, { dst: addr + page * PS, src: fill(0x5c), len: PS, mode: 0 });
    await Promise.all(accesses);
    expect(done(settled)).toEqual(PAGES.map((_, i) => i));
    k.checkInvariants();
  });

  it("four faults split between the queues (two read, two unread) on two pages of one chain: each wake takes its page's waiters from both", async () => {
    // Pages 0 and 256 share an index chain; the index covers both queues once they hold four
    // faults together, although neither holds four.
    for (const seed of [5, 6]) {
      const { k, p, uffd, addr, settled, accesses } = await scene(seed, [0, 256, 0, 256]);
      expect(faultPages(await readMsgs(p, uffd, 2), addr)).toEqual([0, 256]);
      // UFFDIO_WAKE of page 256 alone: its read fault (1) and its unread one (3).
      await p.ioctl(uffd, UFFDIO_COPY, { dst: addr + 256 * PS, src: fill(1), len: PS, mode: UFFDIO_COPY_MODE_DONTWAKE });
      await p.ioctl(uffd, UFFDIO_WAKE, { start: addr + 256 * PS, len: PS });
      await k.idle();
      expect(done(settled)).toEqual([1, 3]);
      // The unread fault of page 0 is still queued, and only it.
      expect(faultPages(await readMsgs(p, uffd), addr)).toEqual([0]);
      // A one-page COPY of page 0 wakes both of its waiters (both now read).
      await p.ioctl(uffd, UFFDIO_COPY, { dst: addr, src: fill(2), len: PS, mode: 0 });
      await Promise.all(accesses);
      expect(done(settled)).toEqual([0, 1, 2, 3]);
      expect(await readMsgs(p, uffd)).toEqual([]);
      k.checkInvariants();
    }
  });

  it("a one-page COPY waking a few faults (no index yet) wakes that page's only, in the order UFFDIO_WAKE would", async () => {
    // Three waiters, under the index's threshold: pages 0, 1 and 0 again.
    for (const seed of [5, 6, 7]) {
      const orders: number[][] = [];
      for (const wake of ["copy", "wake"] as const) {
        const { k, p, uffd, addr, settled, accesses } = await scene(seed, [0, 1, 0]);
        const order: number[] = [];
        accesses.forEach((a, i) => void a.then(() => order.push(i)));
        await readMsgs(p, uffd, 1);
        await p.ioctl(uffd, UFFDIO_COPY, { dst: addr + PS, src: fill(1), len: PS, mode: 0 });
        await k.idle();
        expect(done(settled)).toEqual([1]);
        if (wake === "copy") {
          await p.ioctl(uffd, UFFDIO_COPY, { dst: addr, src: fill(2), len: PS, mode: 0 });
        } else {
          await p.ioctl(uffd, UFFDIO_COPY, { dst: addr, src: fill(2), len: PS, mode: UFFDIO_COPY_MODE_DONTWAKE });
          await p.ioctl(uffd, UFFDIO_WAKE, { start: addr, len: PS });
        }
        await Promise.all(accesses);
        expect([...order].sort()).toEqual([0, 1, 2]);
        orders.push(order);
        k.checkInvariants();
      }
      expect(orders[0]).toEqual(orders[1]);
    }
  });
});
