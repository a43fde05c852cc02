/**
 * Page-fault throughput through the public API: a thread touching private anonymous memory one
 * byte per page. Each access is one Thread.read/write call, so the figure includes the promise a
 * user-mode access costs in the simulation, as a real fault includes the trap.
 *
 * faultRate() runs on a warm kernel (one kernel, a fresh mapping per run, unmapped untimed), as
 * uffd-bench.c's anonFault does on the real one. scaleRun() populates 1 or 4 GiB on a fresh
 * kernel instead: what filling a large guest costs, host memory included.
 */
import { Kernel, setFramePoolLimit } from "@uffd/kernel";
import { MADV_DONTNEED, MADV_POPULATE_WRITE, MAP_ANONYMOUS, MAP_PRIVATE, PAGE_SIZE, PROT_READ, PROT_WRITE } from "@uffd/kernel/uapi";
import { measure, type Rate } from "./measure.ts";
import { hostMemory, type HostMemory } from "./memory.ts";

export type FaultKind = "write" | "write-cold" | "read" | "write-present";

/**
 * Fault rate for `pages` pages: "write" allocates a zeroed anon page per access
 * (do_anonymous_page) on a warm kernel: the mapping's pages were dropped with MADV_DONTNEED
 * (untimed), as uffd-bench.c's anonFaultWarm does; "write-cold" does the same on a fresh kernel
 * and a fresh mapping per run with the chunk pool off, so every frame is new host memory (the
 * first-touch faults of the host included), as anonFault maps fresh memory per run; "read" maps
 * the shared zero page; "write-present" stores to pages that are already mapped writable (no
 * fault: the access baseline).
 */
export async function faultRate(kind: FaultKind, pages: number, runs: number, warmup: number): Promise<Rate> {
  if (kind === "write-cold") return coldFaultRate(pages, runs, warmup);
  if (kind === "write") return warmFaultRate(pages, runs, warmup);
  const k = new Kernel({ seed: 1 });
  const p = k.spawn({ name: "bench" });
  const t = p.mainThread;
  const one = Uint8Array.of(1);
  const len = pages * PAGE_SIZE;
  return measure(runs, warmup, async () => {
    const addr = await p.mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
    if (kind === "write-present") for (let a = addr; a < addr + len; a += PAGE_SIZE) await t.write(a, one);
    return {
      body: async () => {
        if (kind === "read") for (let a = addr; a < addr + len; a += PAGE_SIZE) await t.read(a, 1);
        else for (let a = addr; a < addr + len; a += PAGE_SIZE) await t.write(a, one);
        return pages;
      },
      teardown: async () => {
        k.checkInvariants();
        await p.munmap(addr, len);
      },
    };
  });
}

/** "write-cold": a fresh kernel per run, no pooled chunks: frames are new host memory. */
async function coldFaultRate(pages: number, runs: number, warmup: number): Promise<Rate> {
  const limit = setFramePoolLimit(0);
  try {
    return await coldRuns(pages, runs, warmup);
  } finally {
    setFramePoolLimit(limit);
  }
}

async function coldRuns(pages: number, runs: number, warmup: number): Promise<Rate> {
  const one = Uint8Array.of(1);
  const len = pages * PAGE_SIZE;
  return measure(runs, warmup, async () => {
    const k = new Kernel({ seed: 1 });
    const p = k.spawn({ name: "bench" });
    const t = p.mainThread;
    const addr = await p.mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
    return {
      body: async () => {
        for (let a = addr; a < addr + len; a += PAGE_SIZE) await t.write(a, one);
        return pages;
      },
      teardown: async () => {
        k.checkInvariants();
        await p.exit(0);
      },
    };
  });
}

/** "write": one mapping on one kernel, its pages dropped (untimed) before each run. */
async function warmFaultRate(pages: number, runs: number, warmup: number): Promise<Rate> {
  const k = new Kernel({ seed: 1 });
  const p = k.spawn({ name: "bench" });
  const t = p.mainThread;
  const one = Uint8Array.of(1);
  const len = pages * PAGE_SIZE;
  const addr = await p.mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
  for (let a = addr; a < addr + len; a += PAGE_SIZE) await t.write(a, one);
  return measure(runs, warmup, async () => {
    await p.madvise(addr, len, MADV_DONTNEED);
    return {
      body: async () => {
        for (let a = addr; a < addr + len; a += PAGE_SIZE) await t.write(a, one);
        return pages;
      },
      teardown: async () => k.checkInvariants(),
    };
  });
}

export interface ScaleResult {
  /** Resident guest memory populated, in MiB. */
  mib: number;
  pages: number;
  /** Write faults per second while populating (fresh kernel: host memory is touched for the first time). */
  faultsPerSec: number;
  /**
   * The share of the populating time this process spent in the host kernel (system CPU time):
   * the first touch of fresh host memory for the frames' bytes, which a warm kernel does not pay.
   */
  hostKernelShare: number;
  /** Write faults per second over the same pages once the kernel is warm (MADV_DONTNEED, then faulted again). */
  warmFaultsPerSec: number;
  memory: HostMemory;
}

/**
 * Populates `mib` MiB of private anonymous memory with write faults on a fresh kernel, timed,
 * measures host memory per resident page, then drops the pages (MADV_DONTNEED) and faults them
 * in again, timed: the cost of a fault once the simulator's frames are warm.
 */
export async function scaleRun(mib: number, gc: (() => void) | null): Promise<ScaleResult> {
  const pages = (mib * 1024 * 1024) / PAGE_SIZE;
  const k = new Kernel({ seed: 1, memoryPages: pages + 1024 });
  const p = k.spawn({ name: "bench-scale" });
  const before = hostMemory.sample(gc);
  const len = pages * PAGE_SIZE;
  const addr = await p.mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
  const one = Uint8Array.of(1);
  const t = p.mainThread;
  let t0 = performance.now();
  const cpu0 = process.cpuUsage();
  for (let a = addr; a < addr + len; a += PAGE_SIZE) await t.write(a, one);
  const coldMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const memory = hostMemory.perPage(before, hostMemory.sample(gc), pages);
  const resident = p.smaps().reduce((sum, v) => sum + v.rssBytes, 0) / PAGE_SIZE;
  if (resident !== pages) throw new Error(`expected ${pages} resident pages, smaps says ${resident}`);
  await p.madvise(addr, len, MADV_DONTNEED);
  t0 = performance.now();
  for (let a = addr; a < addr + len; a += PAGE_SIZE) await t.write(a, one);
  const warmMs = performance.now() - t0;
  k.checkInvariants();
  await p.exit(0);
  const hostKernelShare = cpu.system / 1000 / coldMs;
  return { mib, pages, faultsPerSec: pages / (coldMs / 1000), hostKernelShare, warmFaultsPerSec: pages / (warmMs / 1000), memory };
}

/**
 * Process.pagemap() over `pages` present pages (a populated private anon mapping), per page: the
 * object form (one object per page) or the raw form (a BigUint64Array, reused), the counterparts
 * of uffd-bench.c's pagemapRead (one pread() of /proc/self/pagemap).
 */
export async function pagemapRate(format: "objects" | "raw", pages: number, runs: number, warmup: number): Promise<Rate> {
  const k = new Kernel({ seed: 1, memoryPages: pages + 1024 });
  const p = k.spawn({ name: "bench-pagemap" });
  const len = pages * PAGE_SIZE;
  const addr = await p.mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
  await p.madvise(addr, len, MADV_POPULATE_WRITE);
  const into = new BigUint64Array(pages);
  let seen = 0;
  const rate = await measure(runs, warmup, async () => ({
    body: async () => {
      seen = format === "raw" ? p.pagemap(addr, pages, { format: "raw", into }).length : p.pagemap(addr, pages).length;
      return pages;
    },
  }));
  if (seen !== pages) throw new Error(`pagemap returned ${seen} entries for ${pages} pages`);
  const rss = p.smaps().reduce((sum, v) => sum + v.rssBytes, 0) / PAGE_SIZE;
  if (rss !== pages) throw new Error(`MADV_POPULATE_WRITE left ${rss} of ${pages} pages resident`);
  k.checkInvariants();
  return rate;
}
