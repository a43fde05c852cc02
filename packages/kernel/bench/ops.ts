/**
 * Single operations without a faulting thread, the simulated side of uffd-bench.c's ioctl and
 * fork metrics, with its sizes and its method (one warm scene per metric; resets untimed):
 *
 *   uffdCopy4k / uffdCopy2m  UFFDIO_COPY of 4 KiB (16384 per run) / 2 MiB (32 per run) into a
 *                            MISSING range nobody faults on; MADV_DONTNEED empties it after a run
 *   uffdMove4k               UFFDIO_MOVE of one present exclusive page, 16384 per run, between the
 *                            two halves of one registered mapping (runs alternate the direction)
 *   wpToggle4k / wpToggle2m  UFFDIO_WRITEPROTECT mode WP then mode 0 of one page (cycling over a
 *                            2 MiB region, 20000 pairs per run) / of all 512 pages (200 pairs)
 *   fork64m                  the parent's fork() with 16384 present, dirty, exclusive anon pages
 *   forkExitWait64m          fork(), the child's exit(0), the parent's waitpid()
 *
 * `OpScene` is the shape the SDK bench reuses: the same scene with the SDK's range operations.
 */
import { Kernel, type Process } from "@uffd/kernel";
import {
  MADV_DONTNEED,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  O_CLOEXEC,
  PAGE_SIZE,
  PROT_READ,
  PROT_WRITE,
  UFFD_API,
  UFFD_FEATURE_MOVE,
  UFFD_FEATURE_PAGEFAULT_FLAG_WP,
  UFFDIO_API,
  UFFDIO_COPY,
  UFFDIO_MOVE,
  UFFDIO_REGISTER,
  UFFDIO_REGISTER_MODE_MISSING,
  UFFDIO_REGISTER_MODE_WP,
  UFFDIO_WRITEPROTECT,
  UFFDIO_WRITEPROTECT_MODE_WP,
} from "@uffd/kernel/uapi";
import { measure, type Rate } from "./measure.ts";

export const OPS = ["uffdCopy4k", "uffdCopy2m", "uffdMove4k", "wpToggle4k", "wpToggle2m", "fork64m", "forkExitWait64m"] as const;
export type Op = (typeof OPS)[number];

export const RW = PROT_READ | PROT_WRITE;
const HUGE = 512; // pages per 2 MiB
const ONE = Uint8Array.of(1);

/** Operations per run of each op, as uffd-bench.c counts them (`quick` divides by 8, as its scaled() does). */
export function opCount(op: Op, quick: boolean): number {
  const full: Record<Op, number> = { uffdCopy4k: 16384, uffdCopy2m: 32, uffdMove4k: 16384, wpToggle4k: 20000, wpToggle2m: 200, fork64m: 1, forkExitWait64m: 1 };
  return op.startsWith("fork") || !quick ? full[op] : Math.max(4, full[op] / 8);
}

/** One metric's scene: a timed run returning its operation count, an untimed reset before each run. */
export interface OpScene {
  run(): Promise<number>;
  reset(): Promise<void>;
  /** Checked after every run. */
  k: Kernel;
  close(): Promise<void>;
}

/** Writes one byte to each page (untimed population: present, dirty, exclusive). */
export async function populate(p: Process, addr: number, pages: number): Promise<void> {
  for (let i = 0; i < pages; i++) await p.mainThread.write(addr + i * PAGE_SIZE, ONE);
}

/** The rate of a scene: the median run of `runs` after `warmup`, invariants checked after each. */
export async function sceneRate(scene: OpScene, runs: number, warmup: number): Promise<Rate> {
  const rate = await measure(runs, warmup, async () => {
    await scene.reset();
    return { body: () => scene.run(), teardown: async () => scene.k.checkInvariants() };
  });
  await scene.close();
  return rate;
}

async function uffdProcess(features: number): Promise<{ k: Kernel; p: Process; uffd: number }> {
  const k = new Kernel({ seed: 1 });
  const p = k.spawn({ name: "bench-ops" });
  const uffd = await p.userfaultfd(O_CLOEXEC);
  await p.ioctl(uffd, UFFDIO_API, { api: UFFD_API, features });
  return { k, p, uffd };
}

/** UFFDIO_COPY of `chunk` pages per ioctl, `ops` ioctls per run, into a MISSING range. */
async function copyScene(chunk: number, ops: number): Promise<OpScene> {
  const { k, p, uffd } = await uffdProcess(0);
  const len = chunk * ops * PAGE_SIZE;
  const dst = await p.mmap(0, len, RW, MAP_PRIVATE | MAP_ANONYMOUS);
  await p.ioctl(uffd, UFFDIO_REGISTER, { range: { start: dst, len }, mode: UFFDIO_REGISTER_MODE_MISSING });
  const arg = { dst: 0, src: new Uint8Array(chunk * PAGE_SIZE).fill(0xa5), len: chunk * PAGE_SIZE, mode: 0, copy: 0 };
  return {
    k,
    run: async () => {
      for (let i = 0; i < ops; i++) {
        arg.dst = dst + i * chunk * PAGE_SIZE;
        await p.ioctl(uffd, UFFDIO_COPY, arg);
      }
      return ops;
    },
    reset: () => p.madvise(dst, len, MADV_DONTNEED),
    close: () => p.exit(0),
  };
}

/** UFFDIO_MOVE of one page at a time between the halves of one MISSING-registered mapping. */
async function moveScene(pages: number): Promise<OpScene> {
  const { k, p, uffd } = await uffdProcess(UFFD_FEATURE_MOVE);
  const half = pages * PAGE_SIZE;
  const base = await p.mmap(0, 2 * half, RW, MAP_PRIVATE | MAP_ANONYMOUS);
  await populate(p, base, pages);
  await p.ioctl(uffd, UFFDIO_REGISTER, { range: { start: base, len: 2 * half }, mode: UFFDIO_REGISTER_MODE_MISSING });
  const arg = { dst: 0, src: 0, len: PAGE_SIZE, mode: 0, move: 0 };
  let from = 0;
  return {
    k,
    run: async () => {
      const src = base + from * half;
      const dst = base + (1 - from) * half;
      for (let i = 0; i < pages; i++) {
        arg.src = src + i * PAGE_SIZE;
        arg.dst = dst + i * PAGE_SIZE;
        await p.ioctl(uffd, UFFDIO_MOVE, arg);
      }
      from = 1 - from;
      return pages;
    },
    reset: async () => {},
    close: () => p.exit(0),
  };
}

/** UFFDIO_WRITEPROTECT on then off of `chunk` pages, `ops` pairs per run, in a 2 MiB WP region. */
async function wpScene(chunk: number, ops: number): Promise<OpScene> {
  const { k, p, uffd } = await uffdProcess(UFFD_FEATURE_PAGEFAULT_FLAG_WP);
  const len = HUGE * PAGE_SIZE;
  const base = await p.mmap(0, len, RW, MAP_PRIVATE | MAP_ANONYMOUS);
  await populate(p, base, HUGE);
  await p.ioctl(uffd, UFFDIO_REGISTER, { range: { start: base, len }, mode: UFFDIO_REGISTER_MODE_WP });
  const range = { start: base, len: chunk * PAGE_SIZE };
  const on = { range, mode: UFFDIO_WRITEPROTECT_MODE_WP };
  const off = { range, mode: 0 };
  return {
    k,
    run: async () => {
      for (let i = 0; i < ops; i++) {
        range.start = base + ((i * chunk) % HUGE) * PAGE_SIZE;
        await p.ioctl(uffd, UFFDIO_WRITEPROTECT, on);
        await p.ioctl(uffd, UFFDIO_WRITEPROTECT, off);
      }
      return ops;
    },
    reset: async () => {},
    close: () => p.exit(0),
  };
}

/** fork() of a process with 64 MiB of present exclusive pages (re-dirtied untimed before each run). */
async function forkScene(withExit: boolean): Promise<OpScene> {
  const k = new Kernel({ seed: 1 });
  const p = k.spawn({ name: "bench-fork" });
  const pages = 16384;
  const addr = await p.mmap(0, pages * PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS);
  let child: Process | null = null;
  return {
    k,
    run: async () => {
      child = await p.fork();
      if (withExit) {
        await child.exit(0);
        await p.waitpid(child.pid);
        child = null;
      }
      return 1;
    },
    reset: async () => {
      if (child !== null) {
        await child.exit(0);
        await p.waitpid(child.pid);
        child = null;
      }
      // After the last child exited its pages are shared no more; a write makes them exclusive again.
      await populate(p, addr, pages);
    },
    close: () => p.exit(0),
  };
}

/** The scene of one op through the raw uAPI. */
export function opScene(op: Op, quick: boolean): Promise<OpScene> {
  const n = opCount(op, quick);
  switch (op) {
    case "uffdCopy4k":
      return copyScene(1, n);
    case "uffdCopy2m":
      return copyScene(HUGE, n);
    case "uffdMove4k":
      return moveScene(n);
    case "wpToggle4k":
      return wpScene(1, n);
    case "wpToggle2m":
      return wpScene(HUGE, n);
    case "fork64m":
      return forkScene(false);
    case "forkExitWait64m":
      return forkScene(true);
  }
}

/** The rate of one op through the raw uAPI. */
export async function opRate(op: Op, quick: boolean, runs: number, warmup: number): Promise<Rate> {
  return sceneRate(await opScene(op, quick), runs, warmup);
}
