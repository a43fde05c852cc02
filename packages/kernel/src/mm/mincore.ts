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

/**
 * The largest range one mincore() answers: 2^28 pages (1 TiB; a 256 MiB vector).
 * Divergence from Linux: the vector is the caller's buffer in Linux; here the simulation allocates
 * it, so a longer range is ENOMEM (as if the vector could not be allocated) instead of an
 * allocation that could exhaust the process.
 */
export const MINCORE_MAX_PAGES = 2 ** 28;

/**
 * Mirrors the mincore syscall: argument checks, then do_mincore() vma by vma. The walk visits
 * only populated page tables and page-cache entries, so a huge, sparse range costs what it holds.
 */
export function sysMincore(proc: Process, start: number, len: number): Uint8Array {
  if (!Number.isInteger(start) || start < 0 || start % PAGE_SIZE !== 0) throw new ErrnoError("EINVAL", "mincore");
  // access_ok(start, len): the range must lie in user space.
  if (!Number.isInteger(len) || len < 0 || len > TASK_SIZE || start > TASK_SIZE - len) throw new ErrnoError("ENOMEM", "mincore");
  const pages = Math.ceil(len / PAGE_SIZE);
  const mm = proc.mm;
  const end = start + pages * PAGE_SIZE;
  // Every page must be mapped: the first hole is ENOMEM (before anything is allocated).
  if (pages > 0 && !mm.rangeFullyMapped(start, end)) throw new ErrnoError("ENOMEM", "mincore");
  if (pages > MINCORE_MAX_PAGES) throw new ErrnoError("ENOMEM", "mincore", "(range too long for the simulated vector)");
  const vec = new Uint8Array(pages);
  for (let vma = mm.findVma(start); vma !== null && vma.start < end; vma = mm.nextVma(vma)) {
    mincoreVma(mm, vma, Math.max(start, vma.start), Math.min(end, vma.end), vec, start);
  }
  return vec;
}

/** do_mincore() for [from, to) of one vma: vec[(addr - base) / 4096] for each page. */
function mincoreVma(mm: Mm, vma: Vma, from: number, to: number, vec: Uint8Array, base: number): void {
  const firstVpn = from / PAGE_SIZE;
  const endVpn = to / PAGE_SIZE;
  const at = (vpn: number): number => vpn - base / PAGE_SIZE;
  // Shmem: the page cache answers for every page whose pte is none or a marker (set first,
  // then the page tables override where they hold something).
  if (vma.file !== null) {
    const inode = vma.file;
    const firstPgoff = vma.pgoffOf(from);
    const n = endVpn - firstVpn;
    if (n <= inode.pages.size) {
      for (let i = 0; i < n; i++) vec[at(firstVpn) + i] = mincorePageCache(mm, inode, firstPgoff + i);
    } else {
      for (const pgoff of inode.pages.keys()) {
        if (pgoff >= firstPgoff && pgoff < firstPgoff + n) vec[at(firstVpn) + (pgoff - firstPgoff)] = mincorePageCache(mm, inode, pgoff);
      }
    }
  }
  mm.pt.forEachPresentEntry(firstVpn, endVpn, (vpn, pte) => {
    if (ptePresent(pte)) vec[at(vpn)] = 1;
    else if (isSwapPte(pte)) vec[at(vpn)] = mincoreSwap(mm, swpOffset(pte));
  });
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
