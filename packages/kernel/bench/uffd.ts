/**
 * Userfaultfd round trips through the raw uAPI, the way a C handler runs them: threads fault on
 * registered memory and sleep; a handler coroutine read(2)s the packed uffd_msg records, reads
 * each record's fields in place (as C reads its struct) and resolves each fault with one ioctl,
 * awaited, whose wake lets the thread retry its access.
 *
 *   missing+copy      write faults on anon memory (MODE_MISSING), resolved by UFFDIO_COPY
 *   missing+zeropage  read faults on anon memory (MODE_MISSING), resolved by UFFDIO_ZEROPAGE
 *   wp+unprotect      writes to write-protected anon pages (MODE_WP), UFFDIO_WRITEPROTECT mode 0
 *   minor+continue    reads of a memfd whose page cache is full (MODE_MINOR), UFFDIO_CONTINUE
 *
 * One round trip = one fault raised, read, resolved and the access retried. `threads` faulting
 * threads touch their own slices of the range; one read(2) returns up to `batch` messages. With
 * one thread and a batch of 1 the loop is the one uffd-bench.c times (rt*: a blocking read of one
 * uffd_msg, one ioctl, the access retried).
 *
 * As in uffd-bench.c, one scene (kernel, process, region, userfaultfd, threads) serves every run
 * of a measurement, so the simulated machine is warm like the real one; between runs the pages
 * are made to fault again, untimed: MADV_DONTNEED for MISSING and MINOR (the page cache stays),
 * UFFDIO_WRITEPROTECT for WP.
 */
import { ErrnoError, Kernel, type Process, type Thread } from "@uffd/kernel";
import {
  MADV_DONTNEED,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  MAP_SHARED,
  O_CLOEXEC,
  PAGE_SIZE,
  PROT_READ,
  PROT_WRITE,
  UFFD_API,
  UFFD_EVENT_PAGEFAULT,
  UFFD_FEATURE_MINOR_SHMEM,
  UFFD_FEATURE_PAGEFAULT_FLAG_WP,
  UFFD_MSG_SIZE,
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

/** null when userfaultfd works; otherwise why the round trips cannot run. */
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

/**
 * The page-aligned address of the uffd_msg at `off` (arg.pagefault.address, u64 @16), read in
 * place through a DataView of the messages' buffer: two 32-bit little-endian loads.
 */
export function msgAddress(v: DataView, off: number): number {
  const lo = v.getUint32(off + 16, true);
  // address & ~(PAGE_SIZE - 1): the page bits are in the low word (no float modulo on the whole).
  return v.getUint32(off + 20, true) * 0x1_0000_0000 + (lo - (lo & (PAGE_SIZE - 1)));
}

/** A kernel with one process, a region set up for `kind`, its userfaultfd and the faulting threads. */
export interface RoundTripScene {
  k: Kernel;
  p: Process;
  uffd: number;
  addr: number;
  len: number;
  threads: Thread[];
  /** What each thread does to one page. */
  access: (t: Thread, addr: number) => Promise<unknown>;
  /** Makes every page of the region fault again (untimed). */
  reset: () => Promise<void>;
}

const RW = PROT_READ | PROT_WRITE;
const ONE = Uint8Array.of(1);

/**
 * The scene of one round-trip kind: the region is registered through `register` (the raw ioctl
 * here, the SDK's register() in the SDK bench), after `features` were enabled by the caller.
 */
export async function roundTripScene(
  kind: RoundTrip,
  pages: number,
  threads: number,
  p: Process,
  register: (addr: number, len: number, mode: number) => Promise<unknown>,
  writeProtect: (addr: number, len: number) => Promise<unknown>,
): Promise<Omit<RoundTripScene, "uffd">> {
  const k = p.kernel;
  const len = pages * PAGE_SIZE;
  const ts = Array.from({ length: threads }, (_, i) => (i === 0 ? p.mainThread : p.spawnThread(`faulter-${i}`)));
  const write = (t: Thread, a: number): Promise<void> => t.write(a, ONE);
  const read = (t: Thread, a: number): Promise<Uint8Array> => t.read(a, 1);
  const dontneed = async (addr: number): Promise<void> => p.madvise(addr, len, MADV_DONTNEED);
  if (kind === "minor+continue") {
    const fd = await p.memfdCreate("bench");
    await p.fallocate(fd, 0, 0, len);
    const addr = await p.mmap(0, len, RW, MAP_SHARED, fd, 0);
    await register(addr, len, UFFDIO_REGISTER_MODE_MINOR);
    return { k, p, addr, len, threads: ts, access: read, reset: () => dontneed(addr) };
  }
  const addr = await p.mmap(0, len, RW, MAP_PRIVATE | MAP_ANONYMOUS);
  if (kind === "wp+unprotect") {
    for (let a = addr; a < addr + len; a += PAGE_SIZE) await p.mainThread.write(a, ONE);
    await register(addr, len, UFFDIO_REGISTER_MODE_WP);
    return { k, p, addr, len, threads: ts, access: write, reset: async () => void (await writeProtect(addr, len)) };
  }
  await register(addr, len, UFFDIO_REGISTER_MODE_MISSING);
  return { k, p, addr, len, threads: ts, access: kind === "missing+zeropage" ? read : write, reset: () => dontneed(addr) };
}

/** Every thread touches its slice of the scene's region, page by page; resolves when all are done. */
export async function touchAll(s: Pick<RoundTripScene, "addr" | "len" | "threads" | "access">): Promise<void> {
  const pages = s.len / PAGE_SIZE;
  const per = Math.ceil(pages / s.threads.length);
  await Promise.all(
    s.threads.map(async (t, i) => {
      const from = s.addr + i * per * PAGE_SIZE;
      const to = Math.min(s.addr + s.len, from + per * PAGE_SIZE);
      for (let a = from; a < to; a += PAGE_SIZE) await s.access(t, a);
    }),
  );
}

const FEATURES: Record<RoundTrip, number> = {
  "missing+copy": 0,
  "missing+zeropage": 0,
  "wp+unprotect": UFFD_FEATURE_PAGEFAULT_FLAG_WP,
  "minor+continue": UFFD_FEATURE_MINOR_SHMEM,
};

async function rawScene(kind: RoundTrip, pages: number, threads: number): Promise<RoundTripScene> {
  const k = new Kernel({ seed: 1 });
  const p = k.spawn({ name: "bench-uffd" });
  const uffd = await p.userfaultfd(O_CLOEXEC);
  await p.ioctl(uffd, UFFDIO_API, { api: UFFD_API, features: FEATURES[kind] });
  const register = (addr: number, len: number, mode: number): Promise<number> => p.ioctl(uffd, UFFDIO_REGISTER, { range: { start: addr, len }, mode });
  const protect = (addr: number, len: number): Promise<number> => p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: addr, len }, mode: UFFDIO_WRITEPROTECT_MODE_WP });
  const s = await roundTripScene(kind, pages, threads, p, register, protect);
  return { ...s, uffd };
}

/**
 * The raw handler: reads messages and resolves each until `expected` faults were served. The
 * ioctl structs are reused (a C handler keeps them on its stack); every ioctl is awaited.
 */
async function serve(kind: RoundTrip, p: Process, uffd: number, expected: number, batch: number): Promise<void> {
  const page = new Uint8Array(PAGE_SIZE).fill(0x5a);
  const copy = { dst: 0, src: page, len: PAGE_SIZE, mode: 0, copy: 0 };
  const range = { start: 0, len: PAGE_SIZE };
  const zeropage = { range, mode: 0, zeropage: 0 };
  const unprotect = { range, mode: 0 };
  const cont = { range, mode: 0, mapped: 0 };
  // The message buffer is reused by every read, as a C handler's is.
  const b = new Uint8Array(batch * UFFD_MSG_SIZE);
  // The address is read as two 32-bit loads, as C reads the u64 field in one.
  const view = new DataView(b.buffer);
  const isCopy = kind === "missing+copy";
  let served = 0;
  while (served < expected) {
    const n = await p.readInto(uffd, b);
    for (let off = 0; off < n; off += UFFD_MSG_SIZE) {
      if (b[off] !== UFFD_EVENT_PAGEFAULT) throw new Error(`unexpected uffd event 0x${b[off]!.toString(16)}`);
      const a = msgAddress(view, off);
      if (isCopy) {
        copy.dst = a;
        await p.ioctl(uffd, UFFDIO_COPY, copy);
      } else {
        range.start = a;
        if (kind === "missing+zeropage") await p.ioctl(uffd, UFFDIO_ZEROPAGE, zeropage);
        else if (kind === "wp+unprotect") await p.ioctl(uffd, UFFDIO_WRITEPROTECT, unprotect);
        else await p.ioctl(uffd, UFFDIO_CONTINUE, cont);
      }
      served++;
    }
  }
}

/** Round trips per second through the raw uAPI: the median run of `runs` after `warmup`. */
export async function roundTripRate(kind: RoundTrip, shape: RoundTripShape, pages: number, runs: number, warmup: number): Promise<Rate> {
  const s = await rawScene(kind, pages, shape.threads);
  const rate = await measure(runs, warmup, async () => {
    await s.reset();
    return {
      body: async () => {
        const handler = serve(kind, s.p, s.uffd, pages, shape.batch);
        await touchAll(s);
        await handler;
        return pages;
      },
      teardown: async () => s.k.checkInvariants(),
    };
  });
  await s.p.exit(0);
  return rate;
}
