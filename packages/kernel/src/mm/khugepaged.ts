/**
 * MADV_COLLAPSE. Mirrors mm/khugepaged.c:madvise_collapse() with hpage_collapse_scan_pmd() and
 * madvise_collapse_errno(), as they answer on the reference host (THP "madvise", shmem THP
 * "never").
 *
 * Divergence from Linux: the simulation has no transparent huge pages. Where Linux would build a
 * THP, MADV_COLLAPSE succeeds and the range stays mapped by base pages; every refusal (vma not
 * THP-eligible, a PMD without a page table, uffd-wp or marker ptes, an armed userfaultfd with
 * empty ptes) gives the errno the host gives.
 */
import type { ErrnoCode } from "../uapi/errno.ts";
import { PAGE_SIZE } from "../uapi/mman.ts";
import { vmNormalPfn } from "./memory.ts";
import type { Mm } from "./mm.ts";
import { isPteMarker, isSwapPte, MARKER_UFFD_WP, PTRS_PER_PTE, ptePresent, pteUffdWp } from "./page-table.ts";
import { userfaultfdArmed, type Vma, VM_HUGETLB, VM_IO, VM_DONTEXPAND, VM_NOHUGEPAGE, VM_PFNMAP, vmaIsAnonymous } from "./vma.ts";

export const HPAGE_PMD_SIZE = PTRS_PER_PTE * PAGE_SIZE;

/** enum scan_result, the outcomes the simulation can reach. */
const SCAN = {
  SUCCEED: 0,
  /** No page table under the PMD (SCAN_PMD_NULL / SCAN_NO_PTE_TABLE). */
  PMD_NULL: 1,
  PTE_NON_PRESENT: 2,
  PTE_UFFD_WP: 3,
  /** An empty pte in a userfaultfd-armed vma (EBUSY). */
  EXCEED_NONE_PTE: 4,
} as const;
type ScanResult = (typeof SCAN)[keyof typeof SCAN];

/**
 * thp_vma_allowable_order(TVA_FORCED_COLLAPSE, PMD_ORDER): not VM_NOHUGEPAGE, not special, anon
 * (shmem THP is "never" on the host: EINVAL), and the vma holds at least one PMD-aligned 2 MiB
 * block [host: a 4-page vma gives EINVAL, an unaligned 8 MiB one does not].
 */
function thpVmaAllowable(vma: Vma): boolean {
  if ((vma.flags & (VM_NOHUGEPAGE | VM_HUGETLB | VM_IO | VM_PFNMAP | VM_DONTEXPAND)) !== 0) return false;
  if (!vmaIsAnonymous(vma)) return false;
  const haddr = Math.floor((vma.end - HPAGE_PMD_SIZE) / HPAGE_PMD_SIZE) * HPAGE_PMD_SIZE;
  return haddr >= vma.start && haddr + HPAGE_PMD_SIZE <= vma.end;
}

/** Mirrors mm/khugepaged.c:hpage_collapse_scan_pmd() for one PMD, as MADV_COLLAPSE scans it. */
function scanPmd(mm: Mm, vma: Vma, haddr: number): ScanResult {
  const first = haddr / PAGE_SIZE;
  if (!mm.pt.hasTable(first)) return SCAN.PMD_NULL;
  const armed = userfaultfdArmed(vma);
  for (let vpn = first; vpn < first + PTRS_PER_PTE; vpn++) {
    const pte = mm.pt.get(vpn);
    if (pte === 0 || (ptePresent(pte) && vmNormalPfn(pte) < 0)) {
      // pte_none or the zero page: fine (max_ptes_none is ignored) unless userfaultfd is armed.
      if (armed) return SCAN.EXCEED_NONE_PTE;
      continue;
    }
    if (isSwapPte(pte) || isPteMarker(pte)) {
      if (pteUffdWp(pte)) return SCAN.PTE_UFFD_WP;
      // Swapped pages would be read in by the collapse; other markers cannot be.
      if (isPteMarker(pte) && (pte & MARKER_UFFD_WP) === 0) return SCAN.PTE_NON_PRESENT;
      continue;
    }
    if (pteUffdWp(pte)) return SCAN.PTE_UFFD_WP;
  }
  return SCAN.SUCCEED;
}

/** Mirrors madvise_collapse_errno(). */
function madviseCollapseErrno(r: ScanResult): ErrnoCode {
  return r === SCAN.EXCEED_NONE_PTE ? "EBUSY" : "EINVAL";
}

/**
 * Mirrors mm/khugepaged.c:madvise_collapse() for [start, end) of one vma: every PMD-aligned
 * 2 MiB block fully inside the range is scanned; a whitelisted failure moves on to the next
 * block, EBUSY stops at once. Success only if every block could be collapsed.
 */
export function madviseCollapse(mm: Mm, vma: Vma, start: number, end: number): ErrnoCode | null {
  if (!thpVmaAllowable(vma)) return "EINVAL";
  const hstart = Math.ceil(start / HPAGE_PMD_SIZE) * HPAGE_PMD_SIZE;
  const hend = Math.floor(end / HPAGE_PMD_SIZE) * HPAGE_PMD_SIZE;
  // No whole aligned block in range: nothing to do [host: 4 pages of an 8 MiB vma -> 0].
  if (hend <= hstart) return null;
  let thps = 0;
  let lastFail: ScanResult = SCAN.SUCCEED;
  for (let addr = hstart; addr < hend; addr += HPAGE_PMD_SIZE) {
    const r = scanPmd(mm, vma, addr);
    if (r === SCAN.SUCCEED) {
      thps++;
      continue;
    }
    lastFail = r;
    if (r === SCAN.EXCEED_NONE_PTE) break;
  }
  return thps === (hend - hstart) / HPAGE_PMD_SIZE ? null : madviseCollapseErrno(lastFail);
}
