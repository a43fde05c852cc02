/**
 * Single operations without a faulting thread, the simulated side of the native benchmark's
 * ioctl and fork metrics (uffd-bench.c): UFFDIO_COPY of 4 KiB and 2 MiB into a MISSING range
 * nobody faults on, UFFDIO_MOVE of one present exclusive page, UFFDIO_WRITEPROTECT on+off of one
 * page and of 512 pages, fork() of a process with 64 MiB of present exclusive anon pages, and
 * fork + exit + waitpid. Resetting state between runs is not timed.
 */
import { Kernel, type Process } from "@uffd/kernel";
import {
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  O_CLOEXEC,
  PAGE_SIZE,
  PROT_READ,
  PROT_WRITE,
  UFFD_API,
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

const RW = PROT_READ | PROT_WRITE;
const HUGE = 512; // pages per 2 MiB
const FORK_PAGES = 16384; // 64 MiB

interface Env {
  k: Kernel;
  p: Process;
  uffd: number;
}

async function env(): Promise<Env> {
  const k = new Kernel({ seed: 1 });
  const p = k.spawn({ name: "bench-ops" });
  const uffd = await p.userfaultfd(O_CLOEXEC);
  await p.ioctl(uffd, UFFDIO_API, { api: UFFD_API, features: 0 });
  return { k, p, uffd };
}

async function populated(p: Process, pages: number): Promise<number> {
  const addr = await p.mmap(0, pages * PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS);
  const one = Uint8Array.of(1);
  for (let i = 0; i < pages; i++) await p.mainThread.write(addr + i * PAGE_SIZE, one);
  return addr;
}

/** UFFDIO_COPY of `chunk` pages per ioctl into a fresh MISSING-registered range; ops = ioctls. */
async function copyRate(chunk: number, pages: number, runs: number, warmup: number): Promise<Rate> {
  const { k, p, uffd } = await env();
  const src = new Uint8Array(chunk * PAGE_SIZE).fill(0x5a);
  return measure(runs, warmup, async () => {
    const addr = await p.mmap(0, pages * PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    await p.ioctl(uffd, UFFDIO_REGISTER, { range: { start: addr, len: pages * PAGE_SIZE }, mode: UFFDIO_REGISTER_MODE_MISSING });
    return {
      body: async () => {
        for (let a = addr; a < addr + pages * PAGE_SIZE; a += chunk * PAGE_SIZE) {
          await p.ioctl(uffd, UFFDIO_COPY, { dst: a, src, len: chunk * PAGE_SIZE, mode: 0 });
        }
        return pages / chunk;
      },
      teardown: async () => {
        k.checkInvariants();
        await p.munmap(addr, pages * PAGE_SIZE);
      },
    };
  });
}

/** UFFDIO_MOVE of one page at a time from a populated half to the registered other half. */
async function moveRate(pages: number, runs: number, warmup: number): Promise<Rate> {
  const { k, p, uffd } = await env();
  return measure(runs, warmup, async () => {
    const src = await populated(p, pages);
    const dst = await p.mmap(0, pages * PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    await p.ioctl(uffd, UFFDIO_REGISTER, { range: { start: dst, len: pages * PAGE_SIZE }, mode: UFFDIO_REGISTER_MODE_MISSING });
    return {
      body: async () => {
        for (let i = 0; i < pages; i++) await p.ioctl(uffd, UFFDIO_MOVE, { dst: dst + i * PAGE_SIZE, src: src + i * PAGE_SIZE, len: PAGE_SIZE, mode: 0 });
        return pages;
      },
      teardown: async () => {
        k.checkInvariants();
        await p.munmap(src, pages * PAGE_SIZE);
        await p.munmap(dst, pages * PAGE_SIZE);
      },
    };
  });
}

/** UFFDIO_WRITEPROTECT on then off, `chunk` pages at a time; one op = the pair. */
async function wpToggleRate(chunk: number, pages: number, runs: number, warmup: number): Promise<Rate> {
  const { k, p, uffd } = await env();
  const addr = await populated(p, pages);
  await p.ioctl(uffd, UFFDIO_REGISTER, { range: { start: addr, len: pages * PAGE_SIZE }, mode: UFFDIO_REGISTER_MODE_WP });
  return measure(runs, warmup, async () => ({
    body: async () => {
      for (let a = addr; a < addr + pages * PAGE_SIZE; a += chunk * PAGE_SIZE) {
        const range = { start: a, len: chunk * PAGE_SIZE };
        await p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range, mode: UFFDIO_WRITEPROTECT_MODE_WP });
        await p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range, mode: 0 });
      }
      return pages / chunk;
    },
    teardown: async () => k.checkInvariants(),
  }));
}

/** fork() of a process with 64 MiB of present exclusive pages (re-dirtied untimed before each run). */
async function forkRate(withExit: boolean, runs: number, warmup: number): Promise<Rate> {
  const k = new Kernel({ seed: 1 });
  const p = k.spawn({ name: "bench-fork" });
  const addr = await populated(p, FORK_PAGES);
  const one = Uint8Array.of(2);
  return measure(runs, warmup, async () => {
    // After the last child exited its pages are shared no more; a write makes them exclusive again.
    for (let i = 0; i < FORK_PAGES; i++) await p.mainThread.write(addr + i * PAGE_SIZE, one);
    let child: Process | null = null;
    return {
      body: async () => {
        child = await p.fork();
        if (withExit) {
          await child.exit(0);
          await p.waitpid(child.pid);
        }
        return 1;
      },
      teardown: async () => {
        k.checkInvariants();
        if (!withExit && child !== null) {
          await child.exit(0);
          await p.waitpid(child.pid);
        }
      },
    };
  });
}

/** The rate of one operation: 8192 pages per run (1024 with --quick), 64 MiB for the forks. */
export function opRate(op: Op, quick: boolean, runs: number, warmup: number): Promise<Rate> {
  const pages = quick ? 1024 : 8192;
  switch (op) {
    case "uffdCopy4k":
      return copyRate(1, pages, runs, warmup);
    case "uffdCopy2m":
      return copyRate(HUGE, pages, runs, warmup);
    case "uffdMove4k":
      return moveRate(pages, runs, warmup);
    case "wpToggle4k":
      return wpToggleRate(1, pages, runs, warmup);
    case "wpToggle2m":
      return wpToggleRate(HUGE, pages, runs, warmup);
    case "fork64m":
      return forkRate(false, runs, warmup);
    case "forkExitWait64m":
      return forkRate(true, runs, warmup);
  }
}
