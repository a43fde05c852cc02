/**
 * Userfaultfd round trips through the raw uAPI, the way a C handler runs them: threads fault on
 * registered memory and sleep; a handler coroutine read(2)s the uffd_msg records and resolves
 * each fault with an ioctl, whose wake lets the thread retry its access.
 *
 *   missing+copy      write faults on anon memory (MODE_MISSING), resolved by UFFDIO_COPY
 *   missing+zeropage  read faults on anon memory (MODE_MISSING), resolved by UFFDIO_ZEROPAGE
 *   wp+unprotect      writes to write-protected anon pages (MODE_WP), UFFDIO_WRITEPROTECT mode 0
 *   minor+continue    reads of a memfd whose page cache is full (MODE_MINOR), UFFDIO_CONTINUE
 *
 * One round trip = one fault raised, read, resolved and the access retried. `threads` faulting
 * threads touch their own slices of the range; one read(2) returns up to `batch` messages. With
 * one thread and a batch of 1 the loop is the one the native benchmark times (uffd-bench.c's rt*
 * metrics: a blocking read of one uffd_msg, one ioctl, the access retried).
 */
import { ErrnoError, Kernel, type Process, type Thread } from "@uffd/kernel";
import {
  decodeUffdMsgs,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  MAP_SHARED,
  O_CLOEXEC,
  PAGE_SIZE,
  PROT_READ,
  PROT_WRITE,
  UFFD_API,
  UFFD_EVENT_PAGEFAULT,
  UFFDIO_API,
  UFFDIO_CONTINUE,
  UFFDIO_COPY,
  UFFDIO_REGISTER,
  UFFDIO_REGISTER_MODE_MINOR,
  UFFDIO_REGISTER_MODE_MISSING,
  UFFDIO_REGISTER_MODE_WP,
  UFFDIO_WRITEPROTECT,
  UFFDIO_WRITEPROTECT_MODE_WP,
  UFFDIO_ZEROPAGE,
  UFFD_MSG_SIZE,
} from "@uffd/kernel/uapi";
import { measure, type Rate } from "./measure.ts";

export const ROUND_TRIPS = ["missing+copy", "missing+zeropage", "wp+unprotect", "minor+continue"] as const;
export type RoundTrip = (typeof ROUND_TRIPS)[number];

/** How the round trips are driven. */
export interface RoundTripShape {
  /** Faulting threads; each touches its own slice of the range in order. */
  threads: number;
  /** Messages one read(2) may return. */
  batch: number;
}

/** null when userfaultfd works; otherwise why the round trips cannot run yet. */
export async function userfaultfdUnavailable(): Promise<string | null> {
  const p = new Kernel({ seed: 1 }).spawn();
  try {
    const fd = await p.userfaultfd(O_CLOEXEC);
    await p.ioctl(fd, UFFDIO_API, { api: UFFD_API, features: 0 });
    await p.close(fd);
    return null;
  } catch (e) {
    if (e instanceof ErrnoError) return `userfaultfd: ${e.code}`;
    throw e;
  }
}

interface Setup {
  p: Process;
  k: Kernel;
  uffd: number;
  addr: number;
  len: number;
  /** What each thread does to one page. */
  access: (t: Thread, addr: number) => Promise<unknown>;
  /** The ioctl that resolves the fault at a page. */
  resolve: (pageAddr: number) => Promise<unknown>;
}

const RW = PROT_READ | PROT_WRITE;

async function setUp(kind: RoundTrip, pages: number): Promise<Setup> {
  const k = new Kernel({ seed: 1 });
  const p = k.spawn({ name: "bench-uffd" });
  const len = pages * PAGE_SIZE;
  const uffd = await p.userfaultfd(O_CLOEXEC);
  await p.ioctl(uffd, UFFDIO_API, { api: UFFD_API, features: 0 });
  const one = Uint8Array.of(1);
  const page = new Uint8Array(PAGE_SIZE).fill(0x5a);
  const register = (addr: number, mode: number): Promise<number> => p.ioctl(uffd, UFFDIO_REGISTER, { range: { start: addr, len }, mode });
  const write = (t: Thread, a: number): Promise<void> => t.write(a, one);
  const read = (t: Thread, a: number): Promise<Uint8Array> => t.read(a, 1);
  if (kind === "minor+continue") {
    const fd = await p.memfdCreate("bench");
    await p.fallocate(fd, 0, 0, len);
    const addr = await p.mmap(0, len, RW, MAP_SHARED, fd, 0);
    await register(addr, UFFDIO_REGISTER_MODE_MINOR);
    return { p, k, uffd, addr, len, access: read, resolve: (a) => p.ioctl(uffd, UFFDIO_CONTINUE, { range: { start: a, len: PAGE_SIZE }, mode: 0 }) };
  }
  const addr = await p.mmap(0, len, RW, MAP_PRIVATE | MAP_ANONYMOUS);
  if (kind === "wp+unprotect") {
    for (let a = addr; a < addr + len; a += PAGE_SIZE) await p.mainThread.write(a, one);
    await register(addr, UFFDIO_REGISTER_MODE_WP);
    await p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: addr, len }, mode: UFFDIO_WRITEPROTECT_MODE_WP });
    return { p, k, uffd, addr, len, access: write, resolve: (a) => p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: a, len: PAGE_SIZE }, mode: 0 }) };
  }
  await register(addr, UFFDIO_REGISTER_MODE_MISSING);
  if (kind === "missing+zeropage") {
    return { p, k, uffd, addr, len, access: read, resolve: (a) => p.ioctl(uffd, UFFDIO_ZEROPAGE, { range: { start: a, len: PAGE_SIZE }, mode: 0 }) };
  }
  return { p, k, uffd, addr, len, access: write, resolve: (a) => p.ioctl(uffd, UFFDIO_COPY, { dst: a, src: page, len: PAGE_SIZE, mode: 0 }) };
}

/** The handler: reads fault messages and resolves each until `expected` faults were served. */
async function serve(s: Setup, expected: number, batch: number): Promise<void> {
  let served = 0;
  while (served < expected) {
    const msgs = decodeUffdMsgs(await s.p.read(s.uffd, batch * UFFD_MSG_SIZE));
    for (const m of msgs) {
      if (m.event !== UFFD_EVENT_PAGEFAULT) throw new Error(`unexpected uffd event 0x${m.event.toString(16)}`);
      const a = m.arg.pagefault.address;
      await s.resolve(a - (a % PAGE_SIZE));
      served++;
    }
  }
}

export async function roundTripRate(kind: RoundTrip, shape: RoundTripShape, pages: number, runs: number, warmup: number): Promise<Rate> {
  return measure(runs, warmup, async () => {
    const s = await setUp(kind, pages);
    const threads = Array.from({ length: shape.threads }, (_, i) => (i === 0 ? s.p.mainThread : s.p.spawnThread(`faulter-${i}`)));
    const perThread = Math.ceil(pages / shape.threads);
    return {
      body: async () => {
        const handler = serve(s, pages, shape.batch);
        await Promise.all(
          threads.map(async (t, i) => {
            const from = s.addr + i * perThread * PAGE_SIZE;
            const to = Math.min(s.addr + s.len, from + perThread * PAGE_SIZE);
            for (let a = from; a < to; a += PAGE_SIZE) await s.access(t, a);
          }),
        );
        await handler;
        return pages;
      },
      teardown: async () => {
        s.k.checkInvariants();
        await s.p.exit(0);
      },
    };
  });
}
