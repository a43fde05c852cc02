/**
 * mincore(2). Mirrors mm/mincore.c: one byte per page of [start, start + len), 1 if the page is
 * resident in memory, whether or not this process maps it:
 * - a present pte: 1 (the zero page too);
 * - a swap pte: 1 only while the page sits in the swap cache (mincore_swap());
 * - a none pte or any pte marker (pte_none_mostly()), or no page table at all: for a file (shmem)
 *   vma the page cache decides (a swapped-out cache entry counts if its page is in the swap
 *   cache); for anonymous memory 0.
 * can_do_mincore() always holds: shmem files are writable by their owner and memfds are 0777.
 */
import type { Process } from "../kernel/process.ts";
import { ErrnoError } from "../uapi/errno.ts";
import { PAGE_SIZE } from "../uapi/mman.ts";
import { type Mm, TASK_SIZE } from "./mm.ts";
import { isSwapPte, ptePresent, swpOffset } from "./page-table.ts";
import { cacheEntryIsSwap, cacheEntrySlot, type ShmemInode } from "./shmem.ts";
import type { Vma } from "./vma.ts";

/** Mirrors the mincore syscall: argument checks, then do_mincore() vma by vma. */
export function sysMincore(proc: Process, start: number, len: number): Uint8Array {
  if (!Number.isInteger(start) || start < 0 || start % PAGE_SIZE !== 0) throw new ErrnoError("EINVAL", "mincore");
  // access_ok(start, len): the range must lie in user space.
  if (!Number.isInteger(len) || len < 0 || start + len > TASK_SIZE) throw new ErrnoError("ENOMEM", "mincore");
  const pages = Math.ceil(len / PAGE_SIZE);
  const vec = new Uint8Array(pages);
  const mm = proc.mm;
  let addr = start;
  for (let i = 0; i < pages; ) {
    const vma = mm.vmaLookup(addr);
    if (vma === null) throw new ErrnoError("ENOMEM", "mincore");
    const end = Math.min(vma.end, start + pages * PAGE_SIZE);
    for (; addr < end; addr += PAGE_SIZE) vec[i++] = mincorePage(mm, vma, addr);
  }
  return vec;
}

/** mincore_pte_range() for one page. */
function mincorePage(mm: Mm, vma: Vma, addr: number): number {
  const pte = mm.pt.get(addr / PAGE_SIZE);
  if (ptePresent(pte)) return 1;
  if (isSwapPte(pte)) return mincoreSwap(mm, swpOffset(pte));
  // pte_none_mostly(): none, or a uffd-wp / poison / guard marker.
  return vma.file === null ? 0 : mincorePageCache(mm, vma.file, vma.pgoffOf(addr));
}

/** mincore_swap(): resident iff the slot's page is in the swap cache. */
function mincoreSwap(mm: Mm, slot: number): number {
  return mm.core.swap?.cache.has(slot) === true ? 1 : 0;
}

/** mincore_page(): the page cache at pgoff (for shmem, a swap entry defers to the swap cache). */
function mincorePageCache(mm: Mm, inode: ShmemInode, pgoff: number): number {
  const e = inode.pages.get(pgoff);
  if (e === undefined) return 0;
  return cacheEntryIsSwap(e) ? mincoreSwap(mm, cacheEntrySlot(e)) : 1;
}
