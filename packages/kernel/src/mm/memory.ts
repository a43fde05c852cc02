/**
 * The page-fault path and zapping. Mirrors mm/memory.c: handle_mm_fault() -> handle_pte_fault()
 * -> do_anonymous_page() / do_fault() / do_swap_page() / do_wp_page() / handle_pte_marker(),
 * and zap_pte_range() with pte_install_uffd_wp_if_needed().
 *
 * Fault functions return a VmFault code, never an errno. VM_FAULT_RETRY means the faulting
 * thread was queued on a userfaultfd: `vmf.waiter` resolves when it is woken, and the caller
 * then retries the whole access, as the CPU re-executes the instruction in Linux. A return of 0
 * means "handled": the caller re-checks the pte and may fault again (a write that first mapped
 * a page read-only with uffd-wp takes a second, WP fault, exactly as on the host).
 */
import * as addrMod from "../lib/addr.ts";
import type { Waiter } from "../kernel/sched.ts";
import { UFFD_FEATURE_WP_ASYNC, UFFD_FEATURE_WP_UNPOPULATED } from "../uapi/userfaultfd.ts";
import * as assertMod from "../lib/assert.ts";
import * as mman from "../uapi/mman.ts";
import { PG, type Pfn } from "./folio.ts";
import type { Mm } from "./mm.ts";
import {
  isSwapPte,
  MARKER_GUARD,
  MARKER_POISONED,
  mkMarker,
  mkPte,
  type Pte,
  PTE_DIRTY,
  PTE_SOFT_DIRTY,
  PTE_SPECIAL,
  PTE_UFFD_WP,
  PTE_YOUNG,
  pteMkdirty,
  pteMkuffdWp,
  pteMkwrite,
  pteMkyoung,
  pteNone,
  ptePfn,
  ptePresent,
  pteSpecial,
  pteUffdWp,
  pteWrite,
  PTRS_PER_PTE,
  SWP_SOFT_DIRTY,
  SWP_UFFD_WP,
  swpExclusive,
  swpOffset,
} from "./page-table.ts";
import * as ptMod from "./page-table.ts";
import { folioAddFileRmapPte, folioAddNewAnonRmap, folioAddAnonRmapPte, folioRemoveRmapPte } from "./rmap.ts";
import { cacheEntryIsSwap, shmemAllocPage, shmemFindPage, type ShmemInode } from "./shmem.ts";
import {
  userfaultfdMinor,
  userfaultfdWp,
  type Vma,
  VM_SHARED,
  VM_UFFD_MINOR,
  VM_UFFD_WP,
  VM_WRITE,
  vmaIsShared,
} from "./vma.ts";
import * as vmaMod from "./vma.ts";

// Module-local copies of constants and helpers the hot path uses on every fault: V8 reads an
// imported binding through its module cell at each use, a module-local const is folded into the
// optimized code (see kernel/access.ts). Each comes from a module initialised before this one.
const pageDown = addrMod.pageDown;
const BUG_ON = assertMod.BUG_ON;
const PAGE_SIZE = mman.PAGE_SIZE;
const isPteMarker = ptMod.isPteMarker;
const MARKER_UFFD_WP = ptMod.MARKER_UFFD_WP;
const userfaultfdMissing = vmaMod.userfaultfdMissing;
const VM_UFFD_MISSING = vmaMod.VM_UFFD_MISSING;
const vmaIsAnonymous = vmaMod.vmaIsAnonymous;

/** enum fault_flag (include/linux/mm_types.h), the bits the simulation uses. */
export const FAULT_FLAG_WRITE = 1 << 0;
export const FAULT_FLAG_USER = 1 << 6;
export const FAULT_FLAG_REMOTE = 1 << 7;
export const FAULT_FLAG_UNSHARE = 1 << 10;

/** vm_fault_t results. 0 means handled (retry the access). */
export const VM_FAULT_OOM = 0x1;
export const VM_FAULT_SIGBUS = 0x2;
export const VM_FAULT_HWPOISON = 0x10;
export const VM_FAULT_SIGSEGV = 0x40;
export const VM_FAULT_RETRY = 0x400;

/** The thread a fault is raised for (its tid is uffd_msg.arg.pagefault.feat.ptid). */
export interface FaultingTask {
  readonly tid: number;
}

/**
 * struct vm_fault. One per faulting access; `waiter` is set by handleUserfault() when the
 * access must sleep until a userfaultfd wake.
 */
export class VmFault {
  mm: Mm;
  vma: Vma;
  // The number fields have initializers (see Vma): V8 then stores their doubles in place.
  /** Page-aligned fault address. */
  address = 0;
  /** The exact address accessed (UFFD_FEATURE_EXACT_ADDRESS reports it). */
  realAddress = 0;
  flags = 0;
  origPte: Pte = 0;
  task: FaultingTask;
  /**
   * Set by handleUserfault() with VM_FAULT_RETRY: the wait the access sleeps on (its exit can
   * wake it directly). `waiter` is its promise, made only if someone awaits it.
   */
  sleeper: Waiter | null = null;

  get waiter(): Promise<void> | null {
    return this.sleeper === null ? null : this.sleeper.promise;
  }

  constructor(mm: Mm, vma: Vma, realAddress: number, flags: number, task: FaultingTask) {
    this.mm = mm;
    this.vma = vma;
    this.realAddress = realAddress;
    this.address = pageDown(realAddress);
    this.flags = flags;
    this.task = task;
  }

  /**
   * Makes this record a fresh one for another fault of the same task and mm (the access path
   * keeps one per task: nothing holds a VmFault once the fault returned and `waiter` was taken).
   */
  reinit(vma: Vma, realAddress: number, flags: number): this {
    this.vma = vma;
    this.realAddress = realAddress;
    this.address = pageDown(realAddress);
    this.flags = flags;
    this.origPte = 0;
    this.sleeper = null;
    return this;
  }

  get vpn(): number {
    return this.address / PAGE_SIZE;
  }
}

/** The hook fs/userfaultfd.ts provides on a vma's context: fs/userfaultfd.c:handle_userfault(). */
export interface UserfaultHandler {
  readonly features: number;
  handleUserfault(vmf: VmFault, reason: number): number;
}

function uffdCtx(vma: Vma): UserfaultHandler {
  const ctx = vma.uffdCtx as UserfaultHandler | null;
  BUG_ON(ctx === null, "userfault on a vma without a userfaultfd context");
  return ctx!;
}

/** Raises a userfault; the result is never 0 (VM_FAULT_RETRY to sleep, or VM_FAULT_SIGBUS). */
function handleUserfault(vmf: VmFault, reason: number): number {
  const ret = uffdCtx(vmf.vma).handleUserfault(vmf, reason);
  BUG_ON(ret === 0, "handle_userfault returned 0");
  return ret;
}

/** userfaultfd_wp_async(). */
export function userfaultfdWpAsync(vma: Vma): boolean {
  const ctx = vma.uffdCtx as UserfaultHandler | null;
  return ctx !== null && (ctx.features & UFFD_FEATURE_WP_ASYNC) !== 0;
}

/** userfaultfd_wp_use_markers(): file memory always; anon only with WP_UNPOPULATED (implied by WP_ASYNC). */
export function userfaultfdWpUseMarkers(vma: Vma): boolean {
  if (!userfaultfdWp(vma)) return false;
  if (!vmaIsAnonymous(vma)) return true;
  const ctx = vma.uffdCtx as UserfaultHandler | null;
  return ctx !== null && (ctx.features & UFFD_FEATURE_WP_UNPOPULATED) !== 0;
}

/** vmf_orig_pte_uffd_wp(): the fault replaces a uffd-wp marker, so the new pte keeps uffd-wp. */
const vmfOrigPteUffdWp = (vmf: VmFault): boolean => isPteMarker(vmf.origPte) && (vmf.origPte & MARKER_UFFD_WP) !== 0;

/**
 * Whether ptes of this vma may be writable straight from vm_page_prot: shared writable mappings
 * without write-notify (uffd-wp registration turns write-notify on, vma_wants_writenotify()).
 */
export function vmaPageProtWritable(vma: Vma): boolean {
  return (vma.flags & (VM_SHARED | VM_WRITE)) === (VM_SHARED | VM_WRITE) && (vma.flags & VM_UFFD_WP) === 0;
}

/** maybe_mkwrite(). */
const maybeMkwrite = (pte: Pte, vma: Vma): Pte => ((vma.flags & VM_WRITE) !== 0 ? pteMkwrite(pte) : pte);

/** vm_normal_page(): the frame a present pte maps, or -1 for the zero page (special pte). */
export function vmNormalPfn(pte: Pte): number {
  return pteSpecial(pte) ? -1 : ptePfn(pte);
}

/** Mirrors mm/memory.c:handle_mm_fault() (the pte level; the simulation has no huge pmds). */
export function handleMmFault(vmf: VmFault): number {
  vmf.origPte = vmf.mm.pt.get(vmf.vpn);
  return handlePteFault(vmf);
}

/**
 * handleMmFault() for a user access that has just read the pte of vmf's page (`pte`; nothing
 * between that read and this call changes a page table): the pte is not read again, and a none
 * pte in an anonymous vma goes straight to do_anonymous_page(), as handle_pte_fault() and
 * do_pte_missing() would send it.
 */
export function handleMmFaultPte(vmf: VmFault, pte: Pte): number {
  vmf.origPte = pte;
  if (pte === 0 && vmf.vma.file === null) return doAnonymousPage(vmf);
  return handlePteFault(vmf);
}

/** Mirrors mm/memory.c:handle_pte_fault(). */
function handlePteFault(vmf: VmFault): number {
  const pte = vmf.origPte;
  if (pteNone(pte)) return doPteMissing(vmf);
  if (isPteMarker(pte)) return handlePteMarker(vmf);
  if (isSwapPte(pte)) return doSwapPage(vmf);
  if ((vmf.flags & (FAULT_FLAG_WRITE | FAULT_FLAG_UNSHARE)) !== 0 && !pteWrite(pte)) return doWpPage(vmf);
  let entry = pteMkyoung(pte);
  if ((vmf.flags & FAULT_FLAG_WRITE) !== 0) entry = pteMkdirty(entry);
  vmf.mm.pt.set(vmf.vpn, entry);
  return 0;
}

/** do_pte_missing(). */
function doPteMissing(vmf: VmFault): number {
  return vmaIsAnonymous(vmf.vma) ? doAnonymousPage(vmf) : doFault(vmf);
}

/** Mirrors mm/memory.c:handle_pte_marker(): poison beats uffd-wp; a stale uffd-wp marker is cleared. */
function handlePteMarker(vmf: VmFault): number {
  const marker = vmf.origPte;
  if ((marker & MARKER_POISONED) !== 0) return VM_FAULT_HWPOISON;
  if ((marker & MARKER_GUARD) !== 0) return VM_FAULT_SIGSEGV;
  if ((marker & MARKER_UFFD_WP) !== 0) {
    // pte_marker_handle_uffd_wp(): a marker whose vma lost VM_UFFD_WP is just cleared.
    if (!userfaultfdWp(vmf.vma)) {
      vmf.mm.pt.set(vmf.vpn, 0);
      return 0;
    }
    return doPteMissing(vmf);
  }
  return VM_FAULT_SIGBUS;
}

/**
 * Mirrors mm/memory.c:do_anonymous_page(). The PTE table comes first (pte_alloc()), before any
 * userfault: a MISSING fault handed to userspace leaves a populated table of none ptes, which
 * PAGEMAP_SCAN reports as written [host: PAGE_IS_WRITTEN after a blocked MISSING read]. A read
 * maps the shared zero page, unless MISSING is registered: then the userfault comes first and
 * the zero page is never mapped. A write allocates an exclusive zeroed page.
 */
function doAnonymousPage(vmf: VmFault): number {
  const { mm, vma } = vmf;
  mm.pt.table(vmf.vpn);
  const uffdWp = vmfOrigPteUffdWp(vmf);
  if ((vmf.flags & FAULT_FLAG_WRITE) === 0) {
    if (userfaultfdMissing(vma)) return handleUserfault(vmf, VM_UFFD_MISSING);
    let entry = mkPte(mm.core.mem.zeroPfn, PTE_SPECIAL);
    if (uffdWp) entry = pteMkuffdWp(entry);
    mm.pt.set(vmf.vpn, entry);
    return 0;
  }
  // Linux allocates (and zeroes) the folio first and frees it again when MISSING is registered:
  // only the OOM outcome of that allocation is observable, so only the check is kept.
  if (userfaultfdMissing(vma)) return mm.core.mem.freeFrames === 0 ? VM_FAULT_OOM : handleUserfault(vmf, VM_UFFD_MISSING);
  const pfn = mm.core.mem.allocFrame(true);
  if (pfn < 0) return VM_FAULT_OOM;
  let entry = maybeMkwrite(mkPte(pfn, PTE_DIRTY | PTE_YOUNG), vma);
  if (uffdWp) entry = pteMkuffdWp(entry);
  // Only the pte is dirty: an anon folio's PG_dirty is not set by faults (fs/proc/page.c
  // reports PG_dirty) [host: kpageflags dirty 0 after a write fault].
  folioAddNewAnonRmap(mm, vma, pfn, vmf.address, true);
  mm.pt.set(vmf.vpn, entry);
  return 0;
}

/**
 * Mirrors mm/shmem.c:shmem_get_folio_gfp() for the fault path (SGP_CACHE), with its userfault
 * order: SIGBUS for a page beyond i_size, MINOR when the cache has an entry (page or swapped-out),
 * MISSING on a hole before allocating. Returns a frame or a negative VmFault.
 */
function shmemFaultGetPage(vmf: VmFault, inode: ShmemInode, pgoff: number): number {
  const { mm, vma } = vmf;
  // Beyond i_size comes first: SIGBUS, before any userfault [host: MISSING-registered read past EOF].
  if (pgoff >= inode.sizePages) return -VM_FAULT_SIGBUS;
  if (inode.pages.has(pgoff) && userfaultfdMinor(vma)) return -handleUserfault(vmf, VM_UFFD_MINOR);
  const found = shmemFindPage(mm.core.mem, mm.core.swap, inode, pgoff);
  if (found === -2) return -VM_FAULT_OOM;
  if (found >= 0) return found;
  if (userfaultfdMissing(vma)) return -handleUserfault(vmf, VM_UFFD_MISSING);
  const pfn = shmemAllocPage(mm.core.mem, inode, pgoff);
  return pfn < 0 ? -VM_FAULT_OOM : pfn;
}

/** mm/memory.c:fault_around_pages: fault_around_bytes (64 KiB, the default) in pages. */
export const FAULT_AROUND_PAGES = 16;

/** Mirrors include/linux/userfaultfd_k.h:uffd_disable_fault_around(): WP or MINOR armed. */
const uffdDisableFaultAround = (vma: Vma): boolean => (vma.flags & (VM_UFFD_WP | VM_UFFD_MINOR)) !== 0;

/**
 * Mirrors mm/memory.c:do_fault_around() (called from do_read_fault() when should_fault_around():
 * shmem's vm_ops have ->map_pages, and the vma is not armed for WP or MINOR). The window is
 * FAULT_AROUND_PAGES ptes starting at the aligned pte index, or at the vma start if that is
 * later, and ends at the vma end; it never crosses a PTE table. Returns whether the faulting
 * pte itself was mapped (VM_FAULT_NOPAGE: ->fault is not called).
 */
function doFaultAround(vmf: VmFault, inode: ShmemInode, pgoff: number): boolean {
  const vma = vmf.vma;
  const pteOff = vmf.vpn & (PTRS_PER_PTE - 1);
  const vmaOff = pgoff - vma.pgoff;
  const vmaPages = (vma.end - vma.start) / PAGE_SIZE;
  const fromPte = Math.max(pteOff - (pteOff % FAULT_AROUND_PAGES), pteOff - Math.min(pteOff, vmaOff));
  const toPte = Math.min(fromPte + FAULT_AROUND_PAGES, PTRS_PER_PTE, pteOff + vmaPages - vmaOff) - 1;
  return filemapMapPages(vmf, inode, pgoff + fromPte - pteOff, pgoff + toPte - pteOff);
}

/**
 * Mirrors mm/filemap.c:filemap_map_pages() for shmem: maps every page-cache page of
 * [startPgoff, endPgoff] (clipped to i_size) that is uptodate and not poisoned, where the pte is
 * none; swapped-out entries, holes and ptes that are present, swap entries or markers (guard,
 * poison) are skipped. Each pte is built as set_pte_range() builds a read fault's.
 */
function filemapMapPages(vmf: VmFault, inode: ShmemInode, startPgoff: number, endPgoff: number): boolean {
  const { mm, vma } = vmf;
  const mem = mm.core.mem;
  const end = Math.min(endPgoff, inode.sizePages - 1);
  const faultPgoff = vma.pgoffOf(vmf.address);
  let mappedFault = false;
  for (let pgoff = startPgoff; pgoff <= end; pgoff++) {
    const e = inode.pages.get(pgoff);
    if (e === undefined || cacheEntryIsSwap(e)) continue;
    if (!mem.testFlag(e, PG.uptodate) || mem.testFlag(e, PG.hwpoison)) continue;
    const vpn = vmf.vpn + (pgoff - faultPgoff);
    if (mm.pt.get(vpn) !== 0) continue;
    mm.pt.set(vpn, readFaultFilePte(vma, mem.testFlag(e, PG.dirty), e));
    folioAddFileRmapPte(mm, e);
    if (vpn === vmf.vpn) mappedFault = true;
  }
  return mappedFault;
}

/**
 * set_pte_range() for a read fault on a page-cache page: young, writable where vm_page_prot is
 * (a shared writable mapping without write-notify), and then dirty if the folio is.
 */
function readFaultFilePte(vma: Vma, folioDirty: boolean, pfn: Pfn): Pte {
  let entry = mkPte(pfn, PTE_YOUNG);
  if (vmaPageProtWritable(vma)) {
    entry = pteMkwrite(entry);
    if (folioDirty) entry = pteMkdirty(entry);
  }
  return entry;
}

/**
 * Mirrors mm/memory.c:do_fault() for shmem: do_read_fault() (fault-around first), do_cow_fault()
 * (a write to a private mapping copies the cache page into a new anon page) and do_shared_fault().
 */
function doFault(vmf: VmFault): number {
  const { mm, vma } = vmf;
  const inode = vma.file as ShmemInode;
  const pgoff = vma.pgoffOf(vmf.address);
  // do_read_fault(): ->map_pages() before ->fault(), so the neighbours are mapped even when the
  // faulting page then raises a userfault or SIGBUS [host: a MISSING read of a hole].
  if ((vmf.flags & FAULT_FLAG_WRITE) === 0 && !uffdDisableFaultAround(vma) && doFaultAround(vmf, inode, pgoff)) return 0;
  const got = shmemFaultGetPage(vmf, inode, pgoff);
  if (got < 0) return -got;
  const page = got;
  const write = (vmf.flags & FAULT_FLAG_WRITE) !== 0;
  const uffdWp = vmfOrigPteUffdWp(vmf);
  if (write && (vma.flags & VM_SHARED) === 0) {
    // do_cow_fault()
    const pfn = mm.core.mem.allocFrame(false);
    if (pfn < 0) return VM_FAULT_OOM;
    mm.core.mem.copyPage(pfn, page);
    let entry = maybeMkwrite(mkPte(pfn, PTE_DIRTY | PTE_YOUNG), vma);
    if (uffdWp) entry = pteMkuffdWp(entry);
    folioAddNewAnonRmap(mm, vma, pfn, vmf.address, true);
    mm.pt.set(vmf.vpn, entry);
    return 0;
  }
  // finish_fault() -> set_pte_range() for the page-cache page.
  let entry = write ? maybeMkwrite(pteMkdirty(mkPte(page, PTE_YOUNG)), vma) : readFaultFilePte(vma, mm.core.mem.testFlag(page, PG.dirty), page);
  // do_shared_fault() -> fault_dirty_shared_page(); a private read fault dirties nothing.
  if (write) mm.core.mem.setFlag(page, PG.dirty);
  if (uffdWp) entry = pteMkuffdWp(entry);
  folioAddFileRmapPte(mm, page);
  mm.pt.set(vmf.vpn, entry);
  return 0;
}

/**
 * Mirrors mm/memory.c:do_wp_page(): a write (or FAULT_FLAG_UNSHARE) on a present pte that is
 * not writable. The parent decides: uffd-wp userfault, shared mapping (make writable), reuse of
 * an exclusive or reusable anon page, or copy.
 */
export function doWpPage(vmf: VmFault): number {
  const { mm, vma } = vmf;
  const mem = mm.core.mem;
  const unshare = (vmf.flags & FAULT_FLAG_UNSHARE) !== 0;
  let pte = vmf.origPte;
  if (!unshare && pteUffdWp(pte) && userfaultfdWp(vma)) {
    if (!userfaultfdWpAsync(vma)) return handleUserfault(vmf, VM_UFFD_WP);
    // Async mode: unprotect here and continue with the normal COW/reuse logic.
    pte = (pte & ~PTE_UFFD_WP) >>> 0;
    mm.pt.set(vmf.vpn, pte);
    vmf.origPte = pte;
  }
  const pfn = vmNormalPfn(pte);
  if (vmaIsShared(vma)) {
    // wp_page_shared(): write-notify done, the shared page becomes writable and
    // fault_dirty_shared_page() marks it dirty. Nothing to unshare.
    if (unshare) return 0;
    mm.pt.set(vmf.vpn, pteMkwrite(pteMkdirty(pteMkyoung(pte))));
    if (pfn >= 0) mem.setFlag(pfn, PG.dirty);
    return 0;
  }
  if (pfn >= 0 && mem.folioTestAnon(pfn) && wpCanReuse(mm, pfn)) {
    // Before 5.19 there is no flag to set; the simulation keeps PageAnonExclusive as its record
    // of "mapped by this mm alone" in every era (it decides nothing there, see wpCanReuse()).
    if (!mem.pageAnonExclusive(pfn)) mem.setFlag(pfn, PG.anonExclusive);
    if (unshare) return 0;
    // wp_page_reuse(): the pte becomes dirty, the folio's PG_dirty is left alone.
    mm.pt.set(vmf.vpn, maybeMkwrite(pteMkdirty(pteMkyoung(pte)), vma));
    return 0;
  }
  return wpPageCopy(vmf);
}

/**
 * do_wp_page()'s decision for an anonymous page: may the faulting mm reuse it (map it writable)
 * rather than copy it?
 *
 * Release policy (5.7 – 5.18): three eras (CowPolicy.era, docs/releases.md).
 * - 5.19 on (6.1 – 6.18): PageAnonExclusive, or wp_can_reuse_anon_folio() (no other reference).
 * - The page_count era (5.9 – 5.18, 09854ba94c6a; the profiles 5.10, 5.15, 5.18): no
 *   PageAnonExclusive; reuse only when nothing but this pte references the page, so a pinned
 *   page (io_uring fixed buffer, R/O long-term pin) mapped read-only is copied on the next write:
 *   the pin loses coherency (the wrong COW of the seeds). 5.10 and 5.15 test `page_count == 1`
 *   directly, so a page still in the swap cache is copied too; 5.18 first drops the swap cache's
 *   reference (wpFreesSwapCache, 53a05ad9f21d) and is wp_can_reuse_anon_folio() without PAE.
 * - The mapcount era (up to 5.8; the profile 5.7): reuse_swap_page(): reuse when the
 *   page is mapped once and no other swap entry refers to it, whatever other references it has.
 *   A vmsplice()d pipe buffer or a GUP pin does not prevent the reuse: the pipe then reads what
 *   the writer stores (CVE-2020-29374, fixed in GUP by 17839856fd58 in 5.8 and for good by the
 *   page_count rule in 5.9).
 */
function wpCanReuse(mm: Mm, pfn: Pfn): boolean {
  const cow = mm.core.cow;
  const mem = mm.core.mem;
  switch (cow.era) {
    case "anon_exclusive":
      return mem.pageAnonExclusive(pfn) || wpCanReuseAnonFolio(mm, pfn);
    case "page_count":
      return cow.wpFreesSwapCache ? wpCanReuseAnonFolio(mm, pfn) : mem.refcount[pfn] === 1;
    case "mapcount":
      return reuseSwapPage(mm, pfn);
  }
}

/**
 * Mirrors mm/swapfile.c:reuse_swap_page() of the mapcount era (removed in 5.18): the page may be
 * reused if its mapcount plus the swap count of its slot is 1; a page that is reused leaves the
 * swap cache (delete_from_swap_cache(), the simulation has no writeback in flight).
 */
function reuseSwapPage(mm: Mm, pfn: Pfn): boolean {
  const mem = mm.core.mem;
  const inCache = mem.testFlag(pfn, PG.swapcache);
  const swapCount = inCache ? mm.core.swap!.swapCount(mem.index[pfn] as number) : 0;
  const count = (mem.mapcount[pfn] as number) + swapCount;
  if (count === 1 && inCache) {
    mm.core.swap!.deleteFromSwapCache(pfn);
    mem.setFlag(pfn, PG.dirty);
  }
  return count <= 1;
}

/**
 * Mirrors mm/memory.c:wp_can_reuse_anon_folio() for a small folio: reuse only if we hold the
 * only reference, after dropping a swap-cache reference nobody else needs.
 */
function wpCanReuseAnonFolio(mm: Mm, pfn: Pfn): boolean {
  const mem = mm.core.mem;
  const refs = mem.refcount[pfn] as number;
  if (refs > 3) return false;
  const swapcache = mem.testFlag(pfn, PG.swapcache) ? 1 : 0;
  if (refs > 1 + swapcache) return false;
  if (swapcache === 1) mm.core.swap?.folioFreeSwap(pfn);
  return mem.refcount[pfn] === 1;
}

/**
 * Mirrors mm/memory.c:wp_page_copy(): a new exclusive anon page with the old contents (zeroed for
 * the zero page). For FAULT_FLAG_UNSHARE the new pte stays read-only and keeps uffd-wp and
 * soft-dirty; for a write it is writable and dirty.
 */
function wpPageCopy(vmf: VmFault): number {
  const { mm, vma } = vmf;
  const mem = mm.core.mem;
  const old = vmf.origPte;
  const oldPfn = vmNormalPfn(old);
  const pfn = mem.allocFrame(oldPfn < 0);
  if (pfn < 0) return VM_FAULT_OOM;
  if (oldPfn >= 0) mem.copyPage(pfn, oldPfn);
  let entry = mkPte(pfn, PTE_YOUNG);
  if ((vmf.flags & FAULT_FLAG_UNSHARE) !== 0) {
    entry |= old & (PTE_SOFT_DIRTY | PTE_UFFD_WP);
  } else {
    entry = maybeMkwrite(pteMkdirty(entry), vma);
  }
  folioAddNewAnonRmap(mm, vma, pfn, vmf.address, true);
  if (oldPfn >= 0) folioRemoveRmapPte(mm, oldPfn);
  mm.pt.set(vmf.vpn, entry >>> 0);
  return 0;
}

/**
 * Mirrors mm/memory.c:do_swap_page(). A folio already in the swap cache is used; otherwise, on a
 * SWP_SYNCHRONOUS_IO device (zram) an entry with swap count 1 is read straight into a new folio
 * that never enters the swap cache, and anything else is read in through the swap cache
 * (swapin_readahead() without the readahead). The page is exclusive (PageAnonExclusive, and
 * writable when allowed) if the swap pte had swp-exclusive or we hold the only reference once
 * the swap cache let go of it; otherwise it is mapped read-only and a write goes through
 * do_wp_page(). uffd-wp and soft-dirty come back from the swap pte.
 */
function doSwapPage(vmf: VmFault): number {
  const { mm, vma } = vmf;
  const mem = mm.core.mem;
  const swap = mm.core.swap;
  BUG_ON(swap === null, "swap pte without a swap device");
  const orig = vmf.origPte;
  const slot = swpOffset(orig);
  const skipSwapcache = swap!.synchronousIo && !swap!.cache.has(slot) && swap!.swapCount(slot) === 1;
  const pfn = skipSwapcache ? swap!.readIntoNewFolio(slot) : swap!.swapIn(slot);
  if (pfn < 0) return VM_FAULT_OOM;
  const write = (vmf.flags & FAULT_FLAG_WRITE) !== 0;
  let mapExclusive: boolean;
  switch (mm.core.cow.swapIn) {
    case "read_exclusive":
    case "swp_exclusive": {
      const exclusive = swpExclusive(orig);
      swap!.free(slot);
      mm.swapEnts--;
      if (shouldTryToFreeSwap(mm, pfn, vmf.flags)) swap!.folioFreeSwap(pfn);
      mapExclusive = exclusive || mem.refcount[pfn] === 1;
      break;
    }
    case "page_count":
      // Release policy (5.18, c145e0b47c77): swap ptes remember no exclusivity yet (1493a1913e34
      // is 5.19), so only a write fault on a page nobody else references maps it writable; a
      // read fault maps it read-only and the write that follows goes through do_wp_page().
      swap!.free(slot);
      mm.swapEnts--;
      if (shouldTryToFreeSwap(mm, pfn, vmf.flags)) swap!.folioFreeSwap(pfn);
      mapExclusive = write && mem.refcount[pfn] === 1;
      break;
    case "reuse_swap_page":
      // Release policy (up to 5.17): a write fault maps the page writable when
      // reuse_swap_page() says so (mapcount plus swap count, our own entry included, is 1),
      // which also takes it out of the swap cache; the swap cache is otherwise only trimmed
      // when swap is full (mem_cgroup_swap_full()).
      mapExclusive = write && reuseSwapPage(mm, pfn);
      swap!.free(slot);
      mm.swapEnts--;
      if (mem.testFlag(pfn, PG.swapcache) && swap!.full) swap!.folioFreeSwap(pfn);
      break;
  }
  let entry = mkPte(pfn, PTE_YOUNG);
  if ((orig & SWP_SOFT_DIRTY) !== 0) entry |= PTE_SOFT_DIRTY;
  const wp = (orig & SWP_UFFD_WP) !== 0;
  if (wp) entry = pteMkuffdWp(entry);
  // Release policy (5.7 – 6.10): only a write fault maps the page writable, and a uffd-wp swap pte
  // comes back write-protected even where the vma lost its registration (a stale bit: mremap()
  // before 0cef0bb836e3, fork() before 8f34f1eac382); c18160dba5ff (6.11) maps an exclusive page
  // writable on a read fault too, unless userfaultfd_pte_wp().
  const writable =
    mm.core.cow.swapIn === "read_exclusive" ? !(wp && userfaultfdWp(vma)) : write && !wp;
  if (mapExclusive && (vma.flags & VM_WRITE) !== 0 && writable) {
    entry = pteMkwrite(entry);
    if ((vmf.flags & FAULT_FLAG_WRITE) !== 0) entry = pteMkdirty(entry);
  }
  if (mem.folioTestAnon(pfn)) folioAddAnonRmapPte(mm, pfn, mapExclusive);
  else {
    mem.mapcount[pfn] = 0;
    folioAddNewAnonRmap(mm, vma, pfn, vmf.address, mapExclusive);
  }
  mm.pt.set(vmf.vpn, entry >>> 0);
  return 0;
}

/** Mirrors mm/memory.c:should_try_to_free_swap(). */
function shouldTryToFreeSwap(mm: Mm, pfn: Pfn, flags: number): boolean {
  const mem = mm.core.mem;
  if (!mem.testFlag(pfn, PG.swapcache)) return false;
  if (mm.core.swap!.full) return true;
  return (flags & FAULT_FLAG_WRITE) !== 0 && mem.refcount[pfn] === 2;
}

// --- zapping --------------------------------------------------------------------------------

/** struct zap_details. */
export interface ZapDetails {
  /** ZAP_FLAG_DROP_MARKER: do not leave uffd-wp markers behind (munmap, exit, truncate). */
  dropMarker: boolean;
  /** Also zap private COW copies and swap entries of a file mapping (truncate); false for hole punch. */
  evenCows: boolean;
  /** Remove guard markers too (munmap, exit, MADV_GUARD_REMOVE handles its own). */
  dropGuard: boolean;
}

export const ZAP_DEFAULT: ZapDetails = { dropMarker: false, evenCows: true, dropGuard: false };
export const ZAP_UNMAP: ZapDetails = { dropMarker: true, evenCows: true, dropGuard: true };

/**
 * Mirrors mm/memory.c:zap_pte_range() for one pte, then pte_install_uffd_wp_if_needed():
 * a file-backed vma with VM_UFFD_WP gets a uffd-wp marker where a write-protected pte was.
 */
export function zapPte(mm: Mm, vma: Vma, vpn: number, details: ZapDetails): void {
  const pte = mm.pt.get(vpn);
  if (pte === 0) return;
  const mem = mm.core.mem;
  if (ptePresent(pte)) {
    const pfn = vmNormalPfn(pte);
    if (pfn >= 0) {
      const anon = mem.folioTestAnon(pfn);
      if (!details.evenCows && anon) return;
      // zap_present_folio_ptes(): the pte's dirty bit goes to the folio for file folios only.
      if (!anon && pteDirtyOf(pte)) mem.setFlag(pfn, PG.dirty);
      folioRemoveRmapPte(mm, pfn);
      // free_pages_and_swap_cache(): the last unmap of a swap-cache folio drops it from the cache.
      if (mem.testFlag(pfn, PG.swapcache) && mem.mapcount[pfn] === 0) mm.core.swap!.folioFreeSwap(pfn);
    }
  } else if (isSwapPte(pte)) {
    if (!details.evenCows) return;
    freeSwapAndCache(mm, swpOffset(pte));
    mm.swapEnts--;
  } else if ((pte & MARKER_GUARD) !== 0 && !details.dropGuard) {
    return;
  }
  mm.pt.set(vpn, 0);
  if (!details.dropMarker && !vmaIsAnonymous(vma) && userfaultfdWp(vma) && pteUffdWp(pte)) {
    mm.pt.set(vpn, mkMarker(MARKER_UFFD_WP));
  }
}

const pteDirtyOf = (pte: Pte): boolean => (pte & PTE_DIRTY) !== 0;

/**
 * Mirrors mm/swapfile.c:free_swap_and_cache_nr() for one entry: drops the swap reference and,
 * once no entry refers to the slot, the unmapped folio that still sits in the swap cache.
 */
export function freeSwapAndCache(mm: Mm, slot: number): void {
  const swap = mm.core.swap!;
  swap.free(slot);
  const cached = swap.cache.get(slot);
  if (cached !== undefined && mm.core.mem.mapcount[cached] === 0) swap.folioFreeSwap(cached);
}

/**
 * zap_page_range_single() over [start, end) of one vma: each PTE table walked in place, every
 * non-none entry zapped (zapPte() only rewrites the entry it is given, so the walk is safe).
 */
export function zapPageRange(mm: Mm, vma: Vma, start: number, end: number, details: ZapDetails): void {
  const endVpn = end / PAGE_SIZE;
  // A huge, sparsely populated range: visit only the tables that exist.
  const sparse = mm.pt.tables.sparseKeys(Math.floor(start / PAGE_SIZE / PTRS_PER_PTE), Math.ceil(endVpn / PTRS_PER_PTE));
  if (sparse !== null) {
    for (const key of sparse) {
      zapPageRange(mm, vma, Math.max(start, key * PTRS_PER_PTE * PAGE_SIZE), Math.min(end, (key + 1) * PTRS_PER_PTE * PAGE_SIZE), details);
    }
    return;
  }
  for (let vpn = start / PAGE_SIZE; vpn < endVpn; ) {
    const key = Math.floor(vpn / PTRS_PER_PTE);
    const base = key * PTRS_PER_PTE;
    const tableEnd = Math.min(endVpn, base + PTRS_PER_PTE);
    const table = mm.pt.tables.lookup(key);
    if (table !== undefined) {
      for (let i = vpn - base; i < tableEnd - base; i++) if (table[i] !== 0) zapPte(mm, vma, base + i, details);
    }
    vpn = tableEnd;
  }
}

/**
 * Mirrors mm/memory.c:unmap_mapping_range(): zaps every mapping of file pages
 * [firstPgoff, lastPgoff] of an inode, in every vma that maps them.
 */
export function unmapMappingRange(inode: ShmemInode, firstPgoff: number, lastPgoff: number, details: ZapDetails): void {
  for (const vma of [...inode.mappings]) {
    const vmaLast = vma.pgoffOf(vma.end) - 1;
    const from = Math.max(firstPgoff, vma.pgoff);
    const to = Math.min(lastPgoff, vmaLast);
    if (from > to) continue;
    const mm = vmaMm(vma);
    const start = vma.start + (from - vma.pgoff) * PAGE_SIZE;
    const end = vma.start + (to + 1 - vma.pgoff) * PAGE_SIZE;
    zapPageRange(mm, vma, start, end, details);
  }
}

/** vma->vm_mm. */
export function vmaMm(vma: Vma): Mm {
  BUG_ON(vma.mm === null, "vma without an mm");
  return vma.mm as Mm;
}
