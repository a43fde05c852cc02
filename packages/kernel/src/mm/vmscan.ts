/**
 * Page reclaim of single pages, as MADV_PAGEOUT drives it. Mirrors mm/vmscan.c:reclaim_pages()
 * -> shrink_folio_list() for one isolated folio, with mm/rmap.c:try_to_unmap_one() for its one
 * mapping, mm/swap_state.c:add_to_swap() and mm/shmem.c:shmem_writeout().
 *
 * The caller (madvise_cold_or_pageout_pte_range()) only offers pages mapped exactly once, so
 * the one pte it names is the folio's only mapping. What happens to the page:
 * - a lazyfree anon page (MADV_FREE) that nobody redirtied is discarded: the pte becomes none
 *   and the frame is freed, swap device or not; a redirtied one is made swap-backed again and
 *   stays mapped;
 * - any other anon page goes to swap, if there is a device with a free slot and the page may
 *   not be DMA-pinned: PageAnonExclusive moves into the swap pte's swp-exclusive bit
 *   (folio_try_share_anon_rmap_pte()), uffd-wp and soft-dirty move into the swap pte, and the
 *   frame leaves the swap cache once nothing else holds it (a vmsplice pipe buffer keeps it
 *   there, still readable through the swap cache);
 * - a page-cache (shmem) page is unmapped (leaving a uffd-wp marker where the pte had uffd-wp,
 *   pte_install_uffd_wp_if_needed()), swap device or not; then a clean one leaves the page
 *   cache, and a dirty one's cache entry becomes a swap entry if there is a free slot (else it
 *   stays cached, dirty), unless something else still holds it.
 *
 * The device kind decides what happens after writeback (KernelOptions.swapDevice):
 * - zram (SWP_SYNCHRONOUS_IO, the default): writeback completes inside the reclaim pass, so
 *   __remove_mapping() drops the folio from the swap cache at once, as on Linux;
 * - a swap file: writeback is asynchronous, so the folio goes back to the LRU still in the swap
 *   cache (clean, mincore() resident) and a fault finds it there.
 *   Divergence from Linux: it stays there until faulted or its entry is freed; Linux frees it
 *   on a later reclaim pass under memory pressure, which the simulation does not have, and while
 *   the write is in flight (or the folio sits in a per-CPU LRU batch) Linux's swap-in sees extra
 *   references that the simulation never has (it may copy where the simulation reuses).
 */
import { PAGE_SIZE } from "../uapi/mman.ts";
import { PG, type Pfn } from "./folio.ts";
import { vmNormalPfn, ZAP_DEFAULT, zapPte } from "./memory.ts";
import type { Mm } from "./mm.ts";
import {
  mkSwapPte,
  type Pte,
  PTE_SOFT_DIRTY,
  PTE_UFFD_WP,
  pteDirty,
  SWP_EXCLUSIVE,
  SWP_SOFT_DIRTY,
  SWP_UFFD_WP,
} from "./page-table.ts";
import { folioTryShareAnonRmapPte } from "./rmap.ts";
import { shmemDeleteEntry, swapCacheEntry, type ShmemInode } from "./shmem.ts";
import type { SwapDevice } from "./swap.ts";
import type { Vma } from "./vma.ts";

/**
 * Reclaims the page one present pte maps, if it can. Returns whether the pte changed (the page
 * was discarded, swapped out or unmapped).
 */
export function reclaimPte(mm: Mm, vma: Vma, vpn: number, pte: Pte): boolean {
  const pfn = vmNormalPfn(pte);
  if (pfn < 0) return false;
  const mem = mm.core.mem;
  if (mem.folioTestAnon(pfn)) {
    if (mem.testFlag(pfn, PG.lazyfree)) return discardLazyfree(mm, vpn, pte, pfn);
    return swapOutAnon(mm, vpn, pte, pfn);
  }
  return vma.file !== null && shrinkShmemFolio(mm, vma, vpn, pfn);
}

/**
 * Mirrors the lazyfree branch of mm/rmap.c:try_to_unmap_one(): a clean MADV_FREE page whose
 * only reference is its mapping is dropped; a redirtied one becomes swap-backed again.
 */
function discardLazyfree(mm: Mm, vpn: number, pte: Pte, pfn: Pfn): boolean {
  const mem = mm.core.mem;
  if (pteDirty(pte)) mem.setFlag(pfn, PG.dirty);
  if (mem.testFlag(pfn, PG.dirty) || mem.refcount[pfn] !== mem.mapcount[pfn]) {
    mem.clearFlag(pfn, PG.lazyfree);
    mem.setFlag(pfn, PG.swapbacked);
    return false;
  }
  mm.pt.set(vpn, 0);
  mem.mapcount[pfn] = 0;
  mm.rssAnon--;
  mem.folioPut(pfn);
  return true;
}

/**
 * Mirrors shrink_folio_list() for a swap-backed anon folio: add_to_swap() (reusing the slot of a
 * folio already in the swap cache), try_to_unmap_one() turning the pte into a swap pte, then
 * swap_writepage() and __remove_mapping() dropping the swap cache's hold if it is the last one.
 */
function swapOutAnon(mm: Mm, vpn: number, pte: Pte, pfn: Pfn): boolean {
  const mem = mm.core.mem;
  const swap = mm.core.swap;
  // A maybe-pinned page is never put in the swap cache (shrink_folio_list()).
  if (swap === null || mem.folioMaybeDmaPinned(pfn)) return false;
  const inCache = mem.testFlag(pfn, PG.swapcache);
  const slot = inCache ? (mem.index[pfn] as number) : swap.allocSlot();
  if (slot < 0) return false;
  if (inCache) swap.duplicate(slot);
  else addToSwapCache(mm, swap, slot, pfn);
  const exclusive = mem.pageAnonExclusive(pfn);
  // folio_try_share_anon_rmap_pte() cannot fail: pinned pages were skipped above.
  folioTryShareAnonRmapPte(mm, pfn);
  let bits = exclusive ? SWP_EXCLUSIVE : 0;
  if ((pte & PTE_SOFT_DIRTY) !== 0) bits |= SWP_SOFT_DIRTY;
  if ((pte & PTE_UFFD_WP) !== 0) bits |= SWP_UFFD_WP;
  mm.pt.set(vpn, mkSwapPte(slot, bits));
  mem.mapcount[pfn]!--;
  mm.rssAnon--;
  mm.swapEnts++;
  mem.folioPut(pfn); // the pte's reference; the swap cache still holds one
  // add_to_swap() dirties a folio it adds; try_to_unmap_one() moves a dirty pte's bit to it.
  if (!inCache || pteDirty(pte)) mem.setFlag(pfn, PG.dirty);
  swap.writeSlot(slot, pfn);
  // pageout() writes only a folio the swap cache alone still references (is_page_cache_freeable());
  // anything else (a vmsplice'd pipe buffer) keeps it PAGE_KEEP: in the swap cache, still dirty
  // [host: zram, after the swap-in through the swap cache kpageflags read DIRTY|SWAPCACHE].
  if (mem.refcount[pfn] !== 1) return true;
  mem.clearFlag(pfn, PG.dirty);
  if (swap.synchronousIo) swap.deleteFromSwapCache(pfn);
  return true;
}

/** Mirrors mm/swap_state.c:add_to_swap_cache(): the cache takes a reference on the folio. */
function addToSwapCache(mm: Mm, swap: SwapDevice, slot: number, pfn: Pfn): void {
  const mem = mm.core.mem;
  mem.folioGet(pfn);
  mem.setFlag(pfn, PG.swapcache);
  mem.index[pfn] = slot;
  swap.cache.set(slot, pfn);
}

/**
 * Mirrors shrink_folio_list() for a shmem (page-cache) folio mapped once:
 * - try_to_unmap_one() zaps the pte first, whatever follows: its dirty bit moves to the folio
 *   and a uffd-wp pte leaves a marker (pte_install_uffd_wp_if_needed());
 * - a clean folio (a hole that was only read) skips pageout(): __remove_mapping() drops it from
 *   the page cache and frees it, unless something else (a pipe buffer, a pin) still holds it;
 * - a dirty one goes to pageout(), which keeps it when it has references beyond the page
 *   cache's (is_page_cache_freeable()); mm/shmem.c:shmem_writeout() then redirties it and it
 *   stays in the page cache when there is no swap to write to (!total_swap_pages, or no free
 *   slot) [host: no swap, MADV_PAGEOUT unmaps the page and mincore() still finds it]; otherwise
 *   the page-cache entry becomes a swap entry.
 */
function shrinkShmemFolio(mm: Mm, vma: Vma, vpn: number, pfn: Pfn): boolean {
  const mem = mm.core.mem;
  const swap = mm.core.swap;
  const inode = vma.file as ShmemInode;
  const pgoff = vma.pgoffOf(vpn * PAGE_SIZE);
  if (inode.pages.get(pgoff) !== pfn) return false;
  zapPte(mm, vma, vpn, ZAP_DEFAULT);
  // Now only the page cache's reference is expected; anything more keeps the folio where it is.
  if (mem.refcount[pfn] !== 1) return true;
  if (!mem.testFlag(pfn, PG.dirty)) {
    shmemDeleteEntry(mem, swap, inode, pgoff);
    return true;
  }
  const slot = swap === null ? -1 : swap.allocSlot();
  if (swap === null || slot < 0) return true;
  swap.writeSlot(slot, pfn);
  inode.pages.set(pgoff, swapCacheEntry(slot));
  mem.mapping[pfn] = 0;
  mem.clearFlag(pfn, PG.dirty);
  if (swap.synchronousIo) {
    mem.folioPut(pfn); // the page cache's reference: the frame is free
  } else {
    // shmem_writeout() moved the folio to the swap cache, which keeps the page cache's
    // reference while the asynchronous write completes (see the module comment).
    mem.setFlag(pfn, PG.swapcache);
    mem.index[pfn] = slot;
    swap.cache.set(slot, pfn);
  }
  return true;
}
