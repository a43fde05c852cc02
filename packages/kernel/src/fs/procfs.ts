/**
 * procfs views. Mirrors fs/proc/task_mmu.c:pte_to_pagemap_entry() and show_smap(), and
 * fs/proc/page.c (kpagecount, kpageflags), with procfs's own meanings: pagemap bit 56 is
 * "mapped exactly once" (the precise per-page mapcount, CONFIG_PAGE_MAPCOUNT), not
 * PageAnonExclusive; every pte marker reads as "swapped". The reference host has no
 * CONFIG_MEM_SOFT_DIRTY, so soft-dirty always reads 0.
 */
import type { PhysMem } from "../mm/folio.ts";
import { PG } from "../mm/folio.ts";
import { vmNormalPfn } from "../mm/memory.ts";
import type { Mm } from "../mm/mm.ts";
import { isPteMarker, isSwapPte, MARKER_GUARD, ptePresent, pteUffdWp, swpOffset } from "../mm/page-table.ts";
import { cacheEntryIsSwap } from "../mm/shmem.ts";
import { type Vma, vmaPerms, vmFlagsMnemonics, VM_SHARED } from "../mm/vma.ts";
import { PAGE_SIZE } from "../uapi/mman.ts";

/** One /proc/pid/pagemap entry, decoded. */
export interface PagemapEntry {
  /** bit 63 */ present: boolean;
  /** bit 62: a swap entry or a pte marker (uffd-wp, poison). */ swapped: boolean;
  /** bit 61: a file page or shared-anon (shmem) page. */ file: boolean;
  /** bit 56: the page is mapped exactly once (not PageAnonExclusive). */ exclusive: boolean;
  /** bit 57: uffd-wp set in the pte, swap entry or marker. */ uffdWp: boolean;
  /** bit 55 */ softDirty: boolean;
  /** bit 58: a MADV_GUARD_INSTALL marker. */ guard: boolean;
  /** The frame, when present. */ pfn: number | null;
}

const EMPTY: PagemapEntry = Object.freeze({
  present: false,
  swapped: false,
  file: false,
  exclusive: false,
  uffdWp: false,
  softDirty: false,
  guard: false,
  pfn: null,
});

/** Mirrors fs/proc/task_mmu.c:pte_to_pagemap_entry() for one virtual page. */
export function pagemapEntry(mm: Mm, vpn: number): PagemapEntry {
  const addr = vpn * PAGE_SIZE;
  if (mm.vmaLookup(addr) === null) return EMPTY;
  const pte = mm.pt.get(vpn);
  if (pte === 0) return EMPTY;
  const mem = mm.core.mem;
  // Release policy (5.7 – 5.13): no PM_UFFD_WP; bit 57 reads clear (fb8e37f35a2f, 5.14).
  const showWp = mm.core.mmRules.pagemapUffdWp;
  if (ptePresent(pte)) {
    const pfn = vmNormalPfn(pte);
    const normal = pfn >= 0;
    return {
      present: true,
      swapped: false,
      file: normal && !mem.folioTestAnon(pfn),
      exclusive: normal && mem.mapcount[pfn] === 1,
      uffdWp: showWp && pteUffdWp(pte),
      softDirty: false,
      guard: false,
      pfn: normal ? pfn : mem.zeroPfn,
    };
  }
  return {
    present: false,
    swapped: isSwapPte(pte) || isPteMarker(pte),
    file: false,
    exclusive: false,
    uffdWp: showWp && pteUffdWp(pte),
    softDirty: false,
    guard: isPteMarker(pte) && (pte & MARKER_GUARD) !== 0,
    pfn: null,
  };
}

/** The raw 64-bit pagemap word (as /proc/pid/pagemap holds it), for privileged readers. */
export function pagemapWord(mm: Mm, vpn: number): bigint {
  const e = pagemapEntry(mm, vpn);
  let w = 0n;
  if (e.present) w |= 1n << 63n;
  if (e.swapped) w |= 1n << 62n;
  if (e.file) w |= 1n << 61n;
  if (e.guard) w |= 1n << 58n;
  if (e.uffdWp) w |= 1n << 57n;
  if (e.exclusive) w |= 1n << 56n;
  if (e.pfn !== null) w |= BigInt(e.pfn);
  else if (e.swapped) {
    const pte = mm.pt.get(vpn);
    if (isSwapPte(pte)) w |= BigInt(swpOffset(pte)) << 5n;
  }
  return w;
}

/** Pagemap bits in the high 32-bit half of a 64-bit entry (bit 63 is 1 << 31 here). */
const HI_PRESENT = 2 ** 31;
const HI_SWAPPED = 1 << 30;
const HI_FILE = 1 << 29;
const HI_GUARD = 1 << 26;
const HI_UFFD_WP = 1 << 25;
const HI_EXCLUSIVE = 1 << 24;

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * The raw 64-bit entries of `pages` pages from vpn `first` (what pagemapWord() gives one at a
 * time, as a privileged pread() of /proc/pid/pagemap returns them), written into `out` (whose
 * length must be at least `pages`): one pass over the vmas and PTE tables of the range, no
 * object per page.
 */
export function pagemapWords(mm: Mm, first: number, pages: number, out: BigUint64Array): BigUint64Array {
  out.fill(0n, 0, pages);
  if (!LITTLE_ENDIAN) {
    for (let i = 0; i < pages; i++) out[i] = pagemapWord(mm, first + i);
    return out;
  }
  const w = new Uint32Array(out.buffer, out.byteOffset, pages * 2);
  const mem = mm.core.mem;
  // Release policy (5.7 – 5.13): no PM_UFFD_WP (see pagemapEntry()).
  const wpBit = mm.core.mmRules.pagemapUffdWp ? HI_UFFD_WP : 0;
  const end = first + pages;
  for (const vma of mm.vmasIn(first * PAGE_SIZE, end * PAGE_SIZE)) {
    const from = Math.max(first, vma.start / PAGE_SIZE);
    const to = Math.min(end, vma.end / PAGE_SIZE);
    mm.pt.forEachPresentEntry(from, to, (vpn, pte) => {
      const i = 2 * (vpn - first);
      let hi = 0;
      let lo = 0;
      if (ptePresent(pte)) {
        const pfn = vmNormalPfn(pte);
        hi = HI_PRESENT;
        if (pfn >= 0) {
          if (!mem.folioTestAnon(pfn)) hi += HI_FILE;
          if (mem.mapcount[pfn] === 1) hi += HI_EXCLUSIVE;
          lo = pfn;
        } else lo = mem.zeroPfn;
        if (pteUffdWp(pte)) hi += wpBit;
      } else {
        const swap = isSwapPte(pte);
        if (swap || isPteMarker(pte)) hi += HI_SWAPPED;
        if (pteUffdWp(pte)) hi += wpBit;
        if (isPteMarker(pte) && (pte & MARKER_GUARD) !== 0) hi += HI_GUARD;
        if (swap) lo = swpOffset(pte) * 32;
      }
      w[i] = lo;
      w[i + 1] = hi;
    });
  }
  return out;
}

/** One /proc/pid/smaps entry. */
export interface VmaInfo {
  /** First address of the vma. */
  start: number;
  /** End address (exclusive). */
  end: number;
  /** Permissions as /proc/pid/maps prints them, e.g. "rw-p". */
  perms: string;
  /** The VmFlags line of smaps, e.g. ["rd", "wr", "mr", "mw", "me", "ac", "um"] (um: registered for MISSING faults, uw: for WP, ui: for MINOR). */
  vmFlags: readonly string[];
  /** Rss: resident bytes. */
  rssBytes: number;
  /** Anonymous: bytes of anonymous pages. */
  anonBytes: number;
  /** Swap: bytes swapped out. */
  swapBytes: number;
}

/** Mirrors fs/proc/task_mmu.c:show_smap() (Rss, Anonymous, Swap and VmFlags). */
export function smapsEntry(mm: Mm, vma: Vma): VmaInfo {
  const mem = mm.core.mem;
  let rss = 0;
  let anon = 0;
  let swap = 0;
  mm.pt.forEachPresentEntry(vma.start / PAGE_SIZE, vma.end / PAGE_SIZE, (_vpn, pte) => {
    if (ptePresent(pte)) {
      const pfn = vmNormalPfn(pte);
      if (pfn < 0) return;
      rss++;
      if (mem.folioTestAnon(pfn)) anon++;
    } else if (isSwapPte(pte)) {
      swap++;
    }
  });
  if (vma.file !== null && (vma.flags & VM_SHARED) !== 0) {
    for (const [pgoff, e] of vma.file.pages) {
      if (cacheEntryIsSwap(e) && pgoff >= vma.pgoff && pgoff < vma.pgoffOf(vma.end)) swap++;
    }
  }
  return {
    start: vma.start,
    end: vma.end,
    perms: vmaPerms(vma),
    vmFlags: vmFlagsMnemonics(vma.flags),
    rssBytes: rss * PAGE_SIZE,
    anonBytes: anon * PAGE_SIZE,
    swapBytes: swap * PAGE_SIZE,
  };
}

/** The /proc/kpageflags bits of one frame that the simulation tracks (fs/proc/page.c:stable_page_flags()). */
export interface KPageFlags {
  /** KPF_ANON: an anonymous page. */
  anon: boolean;
  /** KPF_KSM: a KSM-merged page. */
  ksm: boolean;
  /** KPF_THP: part of a transparent huge page. */
  thp: boolean;
  /** KPF_SWAPCACHE: in the swap cache. */
  swapcache: boolean;
  /** KPF_DIRTY: dirty. */
  dirty: boolean;
  /** KPF_LRU: on an LRU list. */
  lru: boolean;
  /** KPF_ZERO_PAGE: the shared zero page. */
  zeroPage: boolean;
}

/** Mirrors fs/proc/page.c:stable_page_flags() for the flags the contract decodes. */
export function kpageflags(mem: PhysMem, pfn: number): KPageFlags {
  const live = Number.isInteger(pfn) && pfn >= 0 && pfn < mem.highestPfn && !mem.isFree(pfn);
  const has = (f: number): boolean => live && mem.testFlag(pfn, f);
  return {
    anon: has(PG.anon),
    ksm: false,
    thp: false,
    swapcache: has(PG.swapcache),
    dirty: has(PG.dirty),
    lru: has(PG.lru),
    zeroPage: live && pfn === mem.zeroPfn,
  };
}

/** /proc/kpagecount: the frame's mapcount (0 for free frames and the zero page). */
export function kpagecount(mem: PhysMem, pfn: number): number {
  if (!Number.isInteger(pfn) || pfn < 0 || pfn >= mem.highestPfn || mem.isFree(pfn)) return 0;
  return mem.mapcount[pfn] as number;
}
