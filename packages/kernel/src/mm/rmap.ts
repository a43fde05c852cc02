/**
 * Adding and removing mappings of a frame. Mirrors mm/rmap.c: folio_add_new_anon_rmap(),
 * folio_add_anon_rmap_pte(), folio_add_file_rmap_pte(), folio_remove_rmap_pte(), and
 * folio_try_dup_anon_rmap_pte() / folio_try_share_anon_rmap_pte() for PageAnonExclusive.
 *
 * Every present pte to a normal page (not the zero page) owns one mapcount and one reference,
 * and one unit of the mm's rss counter for its kind (anon, or shmem for page-cache pages).
 */
import { BUG } from "../lib/assert.ts";
import * as mman from "../uapi/mman.ts";
import { PG as FOLIO_PG, type Pfn } from "./folio.ts";

// Module-local copies (V8 folds a module-local const; an imported binding is read through its
// module cell at every use). folio.ts is initialised before this module.
const PAGE_SIZE = mman.PAGE_SIZE;
const PG = FOLIO_PG;
import type { Mm } from "./mm.ts";
import type { Vma } from "./vma.ts";

/**
 * folio_add_new_anon_rmap(): a frame the caller allocated (its one reference becomes the
 * mapping's) is mapped for the first time as an anon page. RMAP_EXCLUSIVE sets PageAnonExclusive.
 */
export function folioAddNewAnonRmap(mm: Mm, vma: Vma, pfn: Pfn, addr: number, exclusive: boolean): void {
  const mem = mm.core.mem;
  if (mem.mapcount[pfn] !== 0) BUG(`new anon rmap on mapped pfn ${pfn}`);
  mm.anonVmaPrepare(vma);
  mem.setFlag(pfn, PG.anon | PG.swapbacked | PG.lru);
  if (exclusive) mem.setFlag(pfn, PG.anonExclusive);
  else mem.clearFlag(pfn, PG.anonExclusive);
  mem.mapcount[pfn] = 1;
  if (!mem.testFlag(pfn, PG.swapcache)) mem.index[pfn] = addr / PAGE_SIZE;
  mm.rssAnon++;
}

/** folio_add_anon_rmap_pte(): one more pte maps an anon page; the caller holds the reference for it. */
export function folioAddAnonRmapPte(mm: Mm, pfn: Pfn, exclusive: boolean): void {
  const mem = mm.core.mem;
  mem.mapcount[pfn]!++;
  if (exclusive) mem.setFlag(pfn, PG.anonExclusive);
  mm.rssAnon++;
}

/** folio_add_file_rmap_pte() plus the reference the pte owns. */
export function folioAddFileRmapPte(mm: Mm, pfn: Pfn): void {
  const mem = mm.core.mem;
  mem.folioGet(pfn);
  mem.mapcount[pfn]!++;
  mm.rssShmem++;
}

/** folio_remove_rmap_pte() plus folio_put() of the pte's reference. */
export function folioRemoveRmapPte(mm: Mm, pfn: Pfn): void {
  const mem = mm.core.mem;
  if (pfn === mem.zeroPfn) return;
  const mc = --mem.mapcount[pfn]!;
  if (mc < 0) BUG(`mapcount underflow on pfn ${pfn}`);
  if (mem.folioTestAnon(pfn)) {
    mm.rssAnon--;
  } else {
    mm.rssShmem--;
  }
  mem.folioPut(pfn);
}

/**
 * Mirrors include/linux/rmap.h:folio_try_dup_anon_rmap_pte() for fork: fails (returns false)
 * when the page is exclusive and maybe DMA-pinned, so the caller copies it instead; otherwise
 * the child's pte shares the page, which is no longer exclusive.
 *
 * Release policy (5.7 – 5.18):
 * - 5.9 – 5.18 (70e806e4e645, copy_present_page() with page_needs_cow_for_dma()): there is no
 *   PageAnonExclusive to ask; any maybe-pinned anon page of an mm that ever pinned is copied.
 * - Up to 5.8 (the profile 5.7; no early COW, CowPolicy.forkCopiesPinned false): a
 *   pinned page is shared like any other, and the parent's next write copies away from the pin.
 */
export function folioTryDupAnonRmapPte(parent: Mm, child: Mm, pfn: Pfn): boolean {
  const mem = parent.core.mem;
  const cow = parent.core.cow;
  if (cow.forkCopiesPinned && parent.hasPinned && mem.folioMaybeDmaPinned(pfn)) {
    if (cow.era !== "anon_exclusive" || mem.pageAnonExclusive(pfn)) return false;
  }
  mem.clearFlag(pfn, PG.anonExclusive);
  mem.folioGet(pfn);
  mem.mapcount[pfn]!++;
  child.rssAnon++;
  return true;
}

/**
 * Mirrors include/linux/rmap.h:folio_try_share_anon_rmap_pte() for swap-out and migration:
 * fails when the page may be pinned; otherwise clears PageAnonExclusive.
 */
export function folioTryShareAnonRmapPte(mm: Mm, pfn: Pfn): boolean {
  const mem = mm.core.mem;
  if (!mem.pageAnonExclusive(pfn)) return true;
  if (mem.folioMaybeDmaPinned(pfn)) return false;
  mem.clearFlag(pfn, PG.anonExclusive);
  return true;
}
