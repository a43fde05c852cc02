/**
 * Host memory per simulated resident page: heap + external bytes (process.memoryUsage()) before
 * and after populating a mapping with write faults, each after a full gc. A frame's 4096 data
 * bytes live in pooled ArrayBuffers (external memory); the rest is metadata (struct page arrays,
 * page tables, vmas).
 */
import { Kernel } from "@uffd/kernel";
import { MAP_ANONYMOUS, MAP_PRIVATE, PAGE_SIZE, PROT_READ, PROT_WRITE } from "@uffd/kernel/uapi";

export interface MemoryPerPage {
  pages: number;
  /** (heapUsed + external) growth divided by resident pages. */
  bytesPerPage: number;
  /** bytesPerPage - PAGE_SIZE: what the simulation adds to the page's own bytes. */
  overheadBytesPerPage: number;
  heapBytesPerPage: number;
  externalBytesPerPage: number;
  gc: boolean;
}

export async function memoryPerPage(mib: number, gc: (() => void) | null): Promise<MemoryPerPage> {
  const pages = (mib * 1024 * 1024) / PAGE_SIZE;
  const settle = (): NodeJS.MemoryUsage => {
    gc?.();
    gc?.();
    return process.memoryUsage();
  };
  const before = settle();
  const k = new Kernel({ seed: 1 });
  const p = k.spawn({ name: "bench-mem" });
  const addr = await p.mmap(0, pages * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
  const one = Uint8Array.of(1);
  for (let i = 0; i < pages; i++) await p.mainThread.write(addr + i * PAGE_SIZE, one);
  const after = settle();
  const resident = p.smaps().reduce((sum, v) => sum + v.rssBytes, 0) / PAGE_SIZE;
  if (resident !== pages) throw new Error(`expected ${pages} resident pages, smaps says ${resident}`);
  k.checkInvariants();
  const heap = (after.heapUsed - before.heapUsed) / pages;
  const external = (after.external - before.external) / pages;
  return {
    pages,
    bytesPerPage: heap + external,
    overheadBytesPerPage: heap + external - PAGE_SIZE,
    heapBytesPerPage: heap,
    externalBytesPerPage: external,
    gc: gc !== null,
  };
}
