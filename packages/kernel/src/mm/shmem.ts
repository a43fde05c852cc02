/**
 * shmem inodes: the backing of memfds and of MAP_SHARED|MAP_ANONYMOUS mappings. Mirrors the
 * page-cache side of mm/shmem.c: an xarray of pages (here a Map from page offset to frame, or to
 * a swap slot for a swapped-out page), i_size, and the list of vmas mapping the file (i_mmap).
 *
 * Each page-cache page holds one reference on its frame; mapping ptes add their own.
 */
import { BUG_ON } from "../lib/assert.ts";
import { PAGE_SIZE } from "../uapi/mman.ts";
import { PG, type PhysMem, type Pfn } from "./folio.ts";
import type { SwapDevice } from "./swap.ts";
import type { Vma } from "./vma.ts";

/** A page-cache entry: a frame (>= 0) or a swapped-out page (-(slot + 1)). */
export type CacheEntry = number;
export const cacheEntryIsSwap = (e: CacheEntry): boolean => e < 0;
export const cacheEntrySlot = (e: CacheEntry): number => -e - 1;
export const swapCacheEntry = (slot: number): CacheEntry => -(slot + 1);

export class ShmemInode {
  readonly id: number;
  readonly name: string;
  /** i_size in bytes. */
  size = 0;
  readonly pages = new Map<number, CacheEntry>();
  /** i_mmap: the vmas that map this file. */
  readonly mappings = new Set<Vma>();
  /** Open file descriptions referring to the inode (struct file count summed). */
  openFiles = 0;
  /** memfd seals (F_SEAL_*). Only memfd_create(MFD_ALLOW_SEALING) starts without F_SEAL_SEAL. */
  seals = 1;
  /** i_mode has execute bits (0777): a memfd unless memfd_create(MFD_NOEXEC_SEAL) cleared them (0666). */
  executable = true;

  constructor(id: number, name: string) {
    this.id = id;
    this.name = name;
  }

  get sizePages(): number {
    return Math.ceil(this.size / PAGE_SIZE);
  }

  /** F_SEAL_WRITE or F_SEAL_FUTURE_WRITE: the contents may not change through fds or new shared writable mappings. */
  get writeSealed(): boolean {
    return (this.seals & (0x8 | 0x10)) !== 0;
  }

  /** Whether some vma maps the inode, or some fd still refers to it. */
  get inUse(): boolean {
    return this.openFiles > 0 || this.mappings.size > 0;
  }
}

/** shmem_add_to_page_cache(): inserts a frame at pgoff; the cache takes its own reference. */
export function shmemAddToPageCache(mem: PhysMem, inode: ShmemInode, pgoff: number, pfn: Pfn): void {
  BUG_ON(inode.pages.has(pgoff), `page cache slot ${pgoff} of inode ${inode.id} is occupied`);
  mem.folioGet(pfn);
  mem.setFlag(pfn, PG.swapbacked | PG.uptodate | PG.lru);
  mem.mapping[pfn] = inode.id;
  mem.index[pfn] = pgoff;
  inode.pages.set(pgoff, pfn);
}

/**
 * Allocates a zeroed page into the cache at pgoff and returns it with the cache's reference only,
 * or -1 when memory is exhausted.
 */
export function shmemAllocPage(mem: PhysMem, inode: ShmemInode, pgoff: number): Pfn {
  const pfn = mem.allocFrame(true);
  if (pfn < 0) return -1;
  shmemAddToPageCache(mem, inode, pgoff, pfn);
  mem.folioPut(pfn); // only the cache's reference remains
  return pfn;
}

/**
 * Looks up the page at pgoff, swapping it in if it was swapped out (shmem_swapin_folio()).
 * Returns the frame (no extra reference), -1 for a hole, -2 when memory is exhausted.
 *
 * `sgpRead` is shmem_get_folio_gfp()'s SGP_READ (read(2), a partial truncate): a folio that
 * fallocate() left !uptodate stays so. Every other caller (faults, UFFDIO_CONTINUE, write(2))
 * takes the `clear:` step, which zeroes such a folio and marks it uptodate; its bytes are
 * zero already here, so only the flag changes.
 */
export function shmemFindPage(mem: PhysMem, swap: SwapDevice | null, inode: ShmemInode, pgoff: number, sgpRead = false): number {
  const e = inode.pages.get(pgoff);
  if (e === undefined) return -1;
  if (!cacheEntryIsSwap(e)) {
    if (!sgpRead) mem.setFlag(e, PG.uptodate);
    return e;
  }
  BUG_ON(swap === null, "swapped shmem entry without a swap device");
  const slot = cacheEntrySlot(e);
  const pfn = swap!.swapIn(slot); // caller ref + swap cache ref
  if (pfn < 0) return -2;
  // shmem takes the folio out of the swap cache and back into the page cache.
  swap!.deleteFromSwapCache(pfn); // drops the swap cache's ref
  swap!.free(slot);
  inode.pages.delete(pgoff);
  mem.clearFlag(pfn, PG.swapcache);
  shmemAddToPageCache(mem, inode, pgoff, pfn);
  mem.folioPut(pfn); // the caller's lookup ref: the cache keeps one
  mem.setFlag(pfn, PG.dirty);
  return pfn;
}

/** Removes one cache entry (truncation / hole punch): drops the cache's reference or the swap slot. */
export function shmemDeleteEntry(mem: PhysMem, swap: SwapDevice | null, inode: ShmemInode, pgoff: number): void {
  const e = inode.pages.get(pgoff);
  if (e === undefined) return;
  inode.pages.delete(pgoff);
  if (cacheEntryIsSwap(e)) {
    // free_swap_and_cache_nr(): a folio still in the swap cache goes once nothing refers to it.
    const slot = cacheEntrySlot(e);
    swap!.free(slot);
    const cached = swap!.cache.get(slot);
    if (cached !== undefined && mem.mapcount[cached] === 0) swap!.folioFreeSwap(cached);
    return;
  }
  mem.mapping[e] = 0;
  mem.folioPut(e);
}
