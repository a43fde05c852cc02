/**
 * Host memory per simulated page: heap + external bytes (process.memoryUsage()) before and after,
 * each after a full gc. A frame's 4096 data bytes live in pooled ArrayBuffers (external memory);
 * the rest is metadata (struct page fields as typed arrays, page tables, vmas).
 *
 * Three states of a 256 MiB private anonymous mapping, each on a fresh kernel:
 *   resident    every page written (a frame each)
 *   zero page   every page read (the shared zero page: a pte each, no frame)
 *   untouched   mapped, never accessed (nothing but the vma)
 * The scale rows (faults.ts) give the resident figure at 1 and 4 GiB.
 *
 * A touched state's figure is what each page adds: the growth over the last three quarters of
 * the mapping, sampled after the first quarter. The first quarter also pays one-off costs of a
 * fresh process (V8 compiling the fault path and its feedback vectors, about 0.2-0.9 MiB of heap
 * here), which would otherwise be spread over the pages and move the figure by a few bytes from
 * one process to the next; that one-off part is reported on its own (`oneOffBytes`). The untouched
 * state has no pages to split, so it maps and unmaps a mapping of the same size first and reports
 * what that first mmap() left behind as its one-off part.
 */
import { Kernel } from "@uffd/kernel";
import { MAP_ANONYMOUS, MAP_PRIVATE, PAGE_SIZE, PROT_READ, PROT_WRITE } from "@uffd/kernel/uapi";

export interface HostMemory {
  /** (heapUsed + external) growth divided by the pages. */
  bytesPerPage: number;
  heapBytesPerPage: number;
  externalBytesPerPage: number;
  /** Whether a full gc preceded each sample (else the figure is noisy). */
  gc: boolean;
  /**
   * Bytes the first quarter of a touched mapping grew by beyond its pages' share at the per-page
   * rate, or the untouched state's first mmap() and munmap(): one-off costs of the first use.
   */
  oneOffBytes: number;
}

interface Sample {
  heapUsed: number;
  external: number;
  gc: boolean;
}

export const hostMemory = {
  sample(gc: (() => void) | null): Sample {
    gc?.();
    gc?.();
    const m = process.memoryUsage();
    return { heapUsed: m.heapUsed, external: m.external, gc: gc !== null };
  },
  perPage(before: Sample, after: Sample, pages: number): HostMemory {
    const heap = (after.heapUsed - before.heapUsed) / pages;
    const external = (after.external - before.external) / pages;
    return { bytesPerPage: heap + external, heapBytesPerPage: heap, externalBytesPerPage: external, gc: before.gc && after.gc, oneOffBytes: 0 };
  },
};

export type MemoryState = "resident" | "zero page" | "untouched";

/** Host bytes each page of a `mib` MiB mapping adds in `state` (see the top of this file). */
export async function memoryPerPage(state: MemoryState, mib: number, gc: (() => void) | null): Promise<HostMemory> {
  const pages = (mib * 1024 * 1024) / PAGE_SIZE;
  // The kernel and its fixed costs (the zero page's chunk, the first metadata arrays) come
  // before the first sample: the figure is what each page adds.
  const k = new Kernel({ seed: 1 });
  const p = k.spawn({ name: "bench-mem" });
  const len = pages * PAGE_SIZE;
  const prot = PROT_READ | PROT_WRITE;
  const start = hostMemory.sample(gc);
  if (state === "untouched") await p.munmap(await p.mmap(0, len, prot, MAP_PRIVATE | MAP_ANONYMOUS), len);
  const before = state === "untouched" ? hostMemory.sample(gc) : start;
  const addr = await p.mmap(0, len, prot, MAP_PRIVATE | MAP_ANONYMOUS);
  const one = Uint8Array.of(1);
  const touch = async (from: number, to: number): Promise<void> => {
    for (let i = from; i < to; i++) {
      if (state === "resident") await p.mainThread.write(addr + i * PAGE_SIZE, one);
      else await p.mainThread.read(addr + i * PAGE_SIZE, 1);
    }
  };
  const quarter = state === "untouched" ? 0 : pages / 4;
  await touch(0, quarter);
  const warm = quarter === 0 ? before : hostMemory.sample(gc);
  if (state !== "untouched") await touch(quarter, pages);
  const after = hostMemory.sample(gc);
  const rss = p.smaps().reduce((sum, v) => sum + v.rssBytes, 0) / PAGE_SIZE;
  if (rss !== (state === "resident" ? pages : 0)) throw new Error(`${state}: smaps says ${rss} resident pages of ${pages}`);
  k.checkInvariants();
  const m = hostMemory.perPage(warm, after, pages - quarter);
  const first = warm.heapUsed + warm.external - (start.heapUsed + start.external);
  m.oneOffBytes = Math.max(0, first - m.bytesPerPage * quarter);
  await p.exit(0);
  return m;
}
