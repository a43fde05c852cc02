/**
 * fork(2)'s memory half. Mirrors mm/mmap.c:dup_mmap() and mm/memory.c:copy_page_range(),
 * copy_present_ptes(), copy_nonpresent_pte() and copy_pte_marker().
 *
 * Why a maybe-pinned exclusive anon page is copied at fork (copy_present_page()): a device
 * holding a long-term pin writes to that exact page; if parent and child shared it read-only,
 * the parent's next write would COW away from the page the device uses and the parent would
 * stop seeing the device's writes. So the child gets the copy and the parent keeps its page,
 * writable and exclusive.
 */
import { PG } from "../mm/folio.ts";
import { vmNormalPfn } from "../mm/memory.ts";
import type { Mm } from "../mm/mm.ts";
import {
  isPteMarker,
  isSwapPte,
  MARKER_UFFD_WP,
  mkPte,
  type Pte,
  PTE_DIRTY,
  PTE_UFFD_WP,
  PTE_YOUNG,
  pteMkclean,
  pteMkuffdWp,
  pteMkwrite,
  pteWrite,
  pteWrprotect,
  PTRS_PER_PTE,
  SWP_EXCLUSIVE,
  SWP_UFFD_WP,
  swpOffset,
} from "../mm/page-table.ts";
import { folioAddNewAnonRmap, folioTryDupAnonRmapPte } from "../mm/rmap.ts";
import { isCowMapping, userfaultfdWp, type Vma, VM_DONTCOPY, VM_MAYBE_GUARD, VM_PFNMAP, VM_SHARED, VM_WIPEONFORK, VM_WRITE } from "../mm/vma.ts";
import { PAGE_SIZE } from "../uapi/mman.ts";

/**
 * Mirrors mm/mmap.c:dup_mmap(): copies every vma but VM_DONTCOPY ones; VM_WIPEONFORK vmas come
 * over empty. `uffdList` collects what dup_userfaultfd() needs for the FORK events. Returns
 * "ENOMEM" when a frame for a maybe-pinned page's copy could not be allocated: the child's mm is
 * then half built, and the caller tears it down (and undoes dup_userfaultfd()) as fork does.
 */
export function dupMmap(parent: Mm, child: Mm, uffdList: unknown[]): "ENOMEM" | null {
  for (const src of parent.vmas) {
    if ((src.flags & VM_DONTCOPY) !== 0) continue;
    const dst = src.clone(src.start, src.end);
    dst.anonVma = src.anonVma === 0 ? 0 : parent.core.nextAnonVmaId();
    child.insertVma(dst);
    parent.core.uffd.dupVma(src, dst, uffdList);
    if ((dst.flags & VM_WIPEONFORK) !== 0) {
      dst.anonVma = 0;
      continue;
    }
    if (vmaNeedsCopy(dst, src) && !copyPageRange(parent, child, dst, src)) return "ENOMEM";
  }
  return null;
}

/** Mirrors mm/memory.c:vma_needs_copy(): otherwise the child faults pages in lazily. */
function vmaNeedsCopy(dst: Vma, src: Vma): boolean {
  if (userfaultfdWp(dst)) return true;
  if ((src.flags & VM_PFNMAP) !== 0) return true;
  // VM_COPY_ON_FORK: guard markers live only in the page tables.
  if ((src.flags & VM_MAYBE_GUARD) !== 0) return true;
  return src.anonVma !== 0;
}

/**
 * Mirrors mm/memory.c:copy_page_range() at the pte level: one PTE table (PMD) at a time, the
 * parent's table walked in place (fork of a large address space is a tight loop over typed
 * arrays, no per-pte callback or allocation). The child gets a table for every table the
 * parent has in the vma, even one whose entries there are all none (copy_pte_range() allocates
 * the destination table before its loop) [host: the child's PAGEMAP_SCAN reads them written].
 */
function copyPageRange(parent: Mm, child: Mm, dst: Vma, src: Vma): boolean {
  const endVpn = src.end / PAGE_SIZE;
  const sparse = parent.pt.tables.sparseKeys(Math.floor(src.start / PAGE_SIZE / PTRS_PER_PTE), Math.ceil(endVpn / PTRS_PER_PTE));
  if (sparse !== null) {
    // A huge, sparsely populated vma: only the tables that exist (copy_page_range() skips empty levels).
    for (const key of sparse) {
      const from = Math.max(src.start / PAGE_SIZE, key * PTRS_PER_PTE);
      const table = parent.pt.tables.lookup(key) as Uint32Array;
      if (!copyPteRange(parent, child, dst, src, table, from, Math.min(endVpn, (key + 1) * PTRS_PER_PTE))) return false;
    }
    return true;
  }
  for (let vpn = src.start / PAGE_SIZE; vpn < endVpn; ) {
    const key = Math.floor(vpn / PTRS_PER_PTE);
    const tableEnd = Math.min(endVpn, (key + 1) * PTRS_PER_PTE);
    const table = parent.pt.tables.lookup(key);
    if (table !== undefined && !copyPteRange(parent, child, dst, src, table, vpn, tableEnd)) return false;
    vpn = tableEnd;
  }
  return true;
}

/** Mirrors mm/memory.c:copy_pte_range(): [vpn, endVpn) within one parent PTE table; false on ENOMEM. */
function copyPteRange(parent: Mm, child: Mm, dst: Vma, src: Vma, table: Uint32Array, vpn: number, endVpn: number): boolean {
  const base = vpn - (vpn % PTRS_PER_PTE);
  child.pt.table(vpn);
  for (let i = vpn - base; i < endVpn - base; i++) {
    const pte = table[i] as number;
    if (pte === 0) continue;
    const v = base + i;
    if (isSwapPte(pte)) copyNonpresentPte(parent, child, dst, v, pte);
    else if (isPteMarker(pte)) copyPteMarker(child, dst, v, pte);
    else if (!copyPresentPte(parent, child, dst, src, v, pte)) return false;
  }
  return true;
}

/**
 * Mirrors mm/memory.c:copy_present_ptes(): share the page read-only (COW) or, for an exclusive
 * maybe-pinned anon page, give the child its own copy at once (copy_present_page()).
 */
function copyPresentPte(parent: Mm, child: Mm, dst: Vma, src: Vma, vpn: number, pte: Pte): boolean {
  const mem = parent.core.mem;
  const pfn = vmNormalPfn(pte);
  if (pfn >= 0 && mem.folioTestAnon(pfn)) {
    if (!folioTryDupAnonRmapPte(parent, child, pfn)) return copyPresentPage(child, dst, vpn, pte, pfn);
  } else if (pfn >= 0) {
    mem.folioGet(pfn);
    mem.mapcount[pfn]!++;
    child.rssShmem++;
  }
  let childPte = pte;
  if (isCowMapping(src.flags) && pteWrite(pte)) {
    parent.pt.set(vpn, pteWrprotect(pte));
    childPte = pteWrprotect(childPte);
  }
  if ((src.flags & VM_SHARED) !== 0) childPte = pteMkclean(childPte);
  childPte = (childPte & ~PTE_YOUNG) >>> 0;
  // Release policy (5.7 – 5.13): the parent's vma decides (copy_present_pte() tested
  // src_vma->vm_flags & VM_UFFD_WP until 8f34f1eac382, 5.14), so a child without EVENT_FORK
  // keeps the bit.
  const keepWp = parent.core.mmRules.forkUffdWp === "src" ? userfaultfdWp(src) : userfaultfdWp(dst);
  if (!keepWp) childPte = (childPte & ~PTE_UFFD_WP) >>> 0;
  child.pt.set(vpn, childPte);
  return true;
}

/**
 * Mirrors mm/memory.c:copy_present_page(): the child's private copy of a maybe-pinned page.
 * False when no frame is left (copy_pte_range() then fails the fork with ENOMEM).
 */
function copyPresentPage(child: Mm, dst: Vma, vpn: number, srcPte: Pte, srcPfn: number): boolean {
  const mem = child.core.mem;
  const pfn = mem.allocFrame(false);
  if (pfn < 0) return false;
  mem.copyPage(pfn, srcPfn);
  // Dirty pte, clean folio [host: kpageflags dirty 0 for the child's copy of a pinned page].
  let pte = mkPte(pfn, PTE_DIRTY);
  if ((dst.flags & VM_WRITE) !== 0) pte = pteMkwrite(pte);
  // Release policy (5.9 – 5.13): copy_present_page() maps the copy without uffd-wp (8f34f1eac382, 5.14).
  if (child.core.mmRules.forkUffdWp === "dst" && userfaultfdWp(dst) && (srcPte & PTE_UFFD_WP) !== 0) pte = pteMkuffdWp(pte);
  folioAddNewAnonRmap(child, dst, pfn, vpn * PAGE_SIZE, true);
  child.pt.set(vpn, pte);
  return true;
}

/**
 * Mirrors mm/memory.c:copy_nonpresent_pte() for swap entries: one more swap reference; an
 * exclusive entry stops being exclusive in the parent too; the child drops swp-uffd-wp unless
 * its vma keeps uffd-wp.
 */
function copyNonpresentPte(parent: Mm, child: Mm, dst: Vma, vpn: number, pte: Pte): void {
  parent.core.swap!.duplicate(swpOffset(pte));
  if ((pte & SWP_EXCLUSIVE) !== 0) {
    pte = (pte & ~SWP_EXCLUSIVE) >>> 0;
    parent.pt.set(vpn, pte);
  }
  // Release policy (5.7 – 5.13): the swap pte is copied with its uffd-wp bit as it is
  // (copy_nonpresent_pte() before 8f34f1eac382, 5.14).
  if (child.core.mmRules.forkUffdWp === "dst" && !userfaultfdWp(dst)) pte = (pte & ~SWP_UFFD_WP) >>> 0;
  child.swapEnts++;
  child.pt.set(vpn, pte);
}

/** Mirrors mm/memory.c:copy_pte_marker(): poison and guard always, uffd-wp only if the child keeps it. */
function copyPteMarker(child: Mm, dst: Vma, vpn: number, pte: Pte): void {
  let marker = pte;
  if (!userfaultfdWp(dst)) marker = (marker & ~MARKER_UFFD_WP) >>> 0;
  if ((marker & ~3) !== 0) child.pt.set(vpn, marker);
}
