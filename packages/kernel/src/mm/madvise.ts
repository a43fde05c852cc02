/**
 * madvise(2). Mirrors mm/madvise.c (the 6.18 madvise_behavior version): do_madvise() validates
 * in Linux's order (advice, alignment, length overflow, empty range), then either
 * madvise_populate() runs over the whole range or madvise_walk_vmas() applies the advice to
 * each vma in turn, clipped to the range. Holes in the range do not stop the walk: the advice
 * is applied to every mapped part and ENOMEM is returned at the end. An error from a vma stops
 * the walk at once (vmas before it keep the advice).
 *
 * Advice that changes vm_flags splits the vma at the range ends and merges the result with its
 * neighbours (madvise_update_vma()), so smaps shows Linux's layout.
 *
 * Lock drops: DONTNEED, DONTNEED_LOCKED, FREE and REMOVE tell userfaultfd first
 * (userfaultfd_remove(), UFFD_EVENT_REMOVE) and may wait for the event to be read; the vma is
 * then looked up again because the layout may have changed meanwhile.
 */
import type { Process } from "../kernel/process.ts";
import { ErrnoError, type ErrnoCode } from "../uapi/errno.ts";
import {
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  MADV_COLD,
  MADV_COLLAPSE,
  MADV_DODUMP,
  MADV_DOFORK,
  MADV_DONTDUMP,
  MADV_DONTFORK,
  MADV_DONTNEED,
  MADV_DONTNEED_LOCKED,
  MADV_FREE,
  MADV_GUARD_INSTALL,
  MADV_GUARD_REMOVE,
  MADV_HUGEPAGE,
  MADV_KEEPONFORK,
  MADV_MERGEABLE,
  MADV_NOHUGEPAGE,
  MADV_NORMAL,
  MADV_PAGEOUT,
  MADV_POPULATE_READ,
  MADV_POPULATE_WRITE,
  MADV_RANDOM,
  MADV_REMOVE,
  MADV_SEQUENTIAL,
  MADV_UNMERGEABLE,
  MADV_WILLNEED,
  MADV_WIPEONFORK,
  PAGE_SIZE,
} from "../uapi/mman.ts";
import { inodeLock, shmemFallocate } from "../fs/memfd.ts";
import { DeadTaskError } from "../kernel/access.ts";
import { COST } from "../kernel/sched.ts";
import { BUG } from "../lib/assert.ts";
import { madviseCollapse } from "./khugepaged.ts";
import { PG } from "./folio.ts";
import {
  FAULT_FLAG_WRITE,
  handleMmFault,
  VM_FAULT_HWPOISON,
  VM_FAULT_OOM,
  VM_FAULT_RETRY,
  VM_FAULT_SIGBUS,
  VM_FAULT_SIGSEGV,
  VmFault,
  freeSwapAndCache,
  vmNormalPfn,
  ZAP_DEFAULT,
  zapPageRange,
} from "./memory.ts";
import type { Mm } from "./mm.ts";
import { PAGE_ALIGN } from "./mmap.ts";
import {
  isPteMarker,
  isSwapPte,
  MARKER_GUARD,
  mkMarker,
  PTE_DIRTY,
  PTE_YOUNG,
  PTRS_PER_PTE,
  ptePresent,
  pteWrite,
  swpOffset,
  pteDirty,
} from "./page-table.ts";
import { cacheEntryIsSwap, cacheEntrySlot } from "./shmem.ts";
import { reclaimPte } from "./vmscan.ts";
import {
  type Vma,
  VM_DONTCOPY,
  VM_DONTDUMP,
  VM_DONTEXPAND,
  VM_HUGEPAGE,
  VM_HUGETLB,
  VM_IO,
  VM_LOCKED,
  VM_MAYBE_GUARD,
  VM_MAYSHARE,
  VM_MAYWRITE,
  VM_MERGEABLE,
  VM_NOHUGEPAGE,
  VM_PFNMAP,
  VM_RAND_READ,
  VM_READ,
  VM_SEQ_READ,
  VM_SHARED,
  VM_WIPEONFORK,
  VM_WRITE,
  vmaIsAnonymous,
} from "./vma.ts";

/**
 * madvise_behavior_valid() with the reference host's configuration: CONFIG_KSM and
 * CONFIG_TRANSPARENT_HUGEPAGE set, CONFIG_MEMORY_FAILURE not (so MADV_HWPOISON and
 * MADV_SOFT_OFFLINE are EINVAL) [host].
 */
const VALID_ADVICE: ReadonlySet<number> = new Set([
  MADV_NORMAL,
  MADV_RANDOM,
  MADV_SEQUENTIAL,
  MADV_WILLNEED,
  MADV_DONTNEED,
  MADV_FREE,
  MADV_REMOVE,
  MADV_DONTFORK,
  MADV_DOFORK,
  MADV_MERGEABLE,
  MADV_UNMERGEABLE,
  MADV_HUGEPAGE,
  MADV_NOHUGEPAGE,
  MADV_DONTDUMP,
  MADV_DODUMP,
  MADV_WIPEONFORK,
  MADV_KEEPONFORK,
  MADV_COLD,
  MADV_PAGEOUT,
  MADV_POPULATE_READ,
  MADV_POPULATE_WRITE,
  MADV_DONTNEED_LOCKED,
  MADV_COLLAPSE,
  MADV_GUARD_INSTALL,
  MADV_GUARD_REMOVE,
]);

/** VM_SPECIAL (include/linux/mm.h), the parts the simulation has. */
const VM_SPECIAL = VM_IO | VM_DONTEXPAND | VM_PFNMAP;
/** 2^64: where a start + length wraps. */
const ADDR_WRAP = 2 ** 64;
/** MAX_MADVISE_GUARD_RETRIES. */
const MAX_MADVISE_GUARD_RETRIES = 3;

/** struct madvise_behavior_range: the part of the request the current vma covers. */
interface MadviseRange {
  start: number;
  end: number;
}

/**
 * What a per-vma behaviour returns: an errno stops the walk; a vma is where the walk carries on
 * from (the vma may have been merged); null means the mmap lock was dropped, so the walk looks
 * the next vma up again from the range end.
 */
type VisitResult = ErrnoCode | Vma | null;

/** Mirrors mm/madvise.c:do_madvise(). */
export async function sysMadvise(proc: Process, start: number, lenIn: number, advice: number): Promise<void> {
  if (!isValidMadvise(start, lenIn, advice)) throw new ErrnoError("EINVAL", "madvise");
  const len = PAGE_ALIGN(lenIn);
  if (len === 0) return;
  const range: MadviseRange = { start, end: start + len };
  const err =
    advice === MADV_POPULATE_READ || advice === MADV_POPULATE_WRITE
      ? await faultinPageRange(proc, range.start, range.end, advice === MADV_POPULATE_WRITE)
      : await madviseWalkVmas(proc, range, advice);
  if (err !== null) throw new ErrnoError(err, "madvise");
}

/** Mirrors mm/madvise.c:is_valid_madvise(); lengths are size_t, so a negative one is huge. */
function isValidMadvise(start: number, lenIn: number, advice: number): boolean {
  if (!VALID_ADVICE.has(advice)) return false;
  if (!Number.isInteger(start) || start < 0 || start % PAGE_SIZE !== 0) return false;
  if (!Number.isInteger(lenIn) || lenIn < 0) return false;
  // len_in rounded up to zero, or start + len wrapping: both are a sum reaching 2^64.
  return start + PAGE_ALIGN(lenIn) < ADDR_WRAP;
}

/** Mirrors mm/madvise.c:madvise_walk_vmas(). */
async function madviseWalkVmas(proc: Process, range: MadviseRange, advice: number): Promise<ErrnoCode | null> {
  const mm = proc.mm;
  const lastEnd = range.end;
  let unmappedError: ErrnoCode | null = null;
  let vma = mm.findVma(range.start);
  for (;;) {
    if (vma === null) return "ENOMEM";
    if (range.start < vma.start) {
      // A gap between vmas: carry on, but report ENOMEM at the end.
      unmappedError = "ENOMEM";
      range.start = vma.start;
      if (range.start >= lastEnd) break;
    }
    range.end = Math.min(vma.end, lastEnd);
    const r = await madviseVmaBehavior(proc, vma, range, advice);
    if (typeof r === "string") return r;
    if (r !== null && range.end < r.end) range.end = r.end;
    if (range.end >= lastEnd) break;
    vma = mm.findVma(r !== null ? r.end : range.end);
    range.start = range.end;
  }
  return unmappedError;
}

/** Mirrors mm/madvise.c:madvise_vma_behavior(): one vma, the range clipped to it. */
async function madviseVmaBehavior(proc: Process, vma: Vma, range: MadviseRange, advice: number): Promise<VisitResult> {
  const mm = proc.mm;
  switch (advice) {
    case MADV_REMOVE:
      return madviseRemove(proc, vma, range);
    case MADV_WILLNEED:
      return madviseWillneed(mm, vma, range);
    case MADV_COLD:
    case MADV_PAGEOUT:
      return madviseColdOrPageout(mm, vma, range, advice === MADV_PAGEOUT);
    case MADV_FREE:
    case MADV_DONTNEED:
    case MADV_DONTNEED_LOCKED:
      return madviseDontneedFree(mm, vma, range, advice);
    case MADV_COLLAPSE: {
      const err = madviseCollapse(mm, vma, range.start, range.end);
      return err ?? vma;
    }
    case MADV_GUARD_INSTALL:
      return madviseGuardInstall(mm, vma, range);
    case MADV_GUARD_REMOVE:
      return madviseGuardRemove(mm, vma, range);
    default: {
      const flags = newVmaFlags(vma, advice);
      return typeof flags === "string" ? flags : madviseUpdateVma(mm, vma, range, flags);
    }
  }
}

/** The vm_flags the flag-only advice asks for, or the errno madvise_vma_behavior() gives. */
function newVmaFlags(vma: Vma, advice: number): number | ErrnoCode {
  const f = vma.flags;
  switch (advice) {
    case MADV_NORMAL:
      return f & ~VM_RAND_READ & ~VM_SEQ_READ;
    case MADV_SEQUENTIAL:
      return (f & ~VM_RAND_READ) | VM_SEQ_READ;
    case MADV_RANDOM:
      return (f & ~VM_SEQ_READ) | VM_RAND_READ;
    case MADV_DONTFORK:
      return f | VM_DONTCOPY;
    case MADV_DOFORK:
      return (f & VM_IO) !== 0 ? "EINVAL" : f & ~VM_DONTCOPY;
    case MADV_WIPEONFORK:
      // Only private anonymous memory can be wiped in the child.
      return vma.file !== null || (f & VM_SHARED) !== 0 ? "EINVAL" : f | VM_WIPEONFORK;
    case MADV_KEEPONFORK:
      return f & ~VM_WIPEONFORK;
    case MADV_DONTDUMP:
      return f | VM_DONTDUMP;
    case MADV_DODUMP:
      return (f & VM_SPECIAL) !== 0 ? "EINVAL" : f & ~VM_DONTDUMP;
    case MADV_MERGEABLE:
      return ksmMadviseMergeable(f);
    case MADV_UNMERGEABLE:
      // unmerge_ksm_pages() has nothing to do: ksmd never runs in the simulation.
      return f & ~VM_MERGEABLE;
    case MADV_HUGEPAGE:
      return (f & ~VM_NOHUGEPAGE) | VM_HUGEPAGE;
    case MADV_NOHUGEPAGE:
      return (f & ~VM_HUGEPAGE) | VM_NOHUGEPAGE;
    default:
      return "EINVAL";
  }
}

/**
 * Mirrors mm/ksm.c:ksm_madvise(MADV_MERGEABLE) with vma_ksm_compatible(): shared and special
 * mappings are silently left alone [host: memfd MAP_SHARED shows no "mg"].
 *
 * Divergence from Linux: no ksmd, so VM_MERGEABLE never merges pages.
 */
function ksmMadviseMergeable(flags: number): number {
  const incompatible = VM_MERGEABLE | VM_SHARED | VM_MAYSHARE | VM_PFNMAP | VM_IO | VM_DONTEXPAND | VM_HUGETLB;
  return (flags & incompatible) !== 0 ? flags : flags | VM_MERGEABLE;
}

/**
 * Mirrors mm/madvise.c:madvise_update_vma(): the part of the vma in range gets the new flags;
 * the vma is split at the range ends as needed and merged with its neighbours where it can.
 */
function madviseUpdateVma(mm: Mm, vma: Vma, range: MadviseRange, newFlags: number): Vma | ErrnoCode {
  const flags = newFlags >>> 0;
  if (flags === vma.flags) return vma;
  // mm/vma.c:vma_modify() splits the head off, then the tail, each through split_vma(), which is
  // ENOMEM once the mm holds vm.max_map_count vmas: a head split already made stays when the
  // tail's is refused. Divergence from Linux: vma_modify() tries a merge with a neighbour before
  // splitting, so at the limit an advice whose result merges into the previous vma succeeds there
  // and is refused here.
  let part = vma;
  if (part.start < range.start) {
    if (!mm.mayAddVmas(1)) return "ENOMEM";
    part = mm.splitVma(part, range.start);
  }
  if (part.end > range.end) {
    if (!mm.mayAddVmas(1)) return "ENOMEM";
    mm.splitVma(part, range.end);
  }
  part.flags = flags;
  return mm.mergeAround(part);
}

/** madvise_dontneed_free_valid_vma() (no hugetlb in the simulation). */
function dontneedFreeValidVma(vma: Vma, advice: number): boolean {
  const forbidden = VM_PFNMAP | (advice !== MADV_DONTNEED_LOCKED ? VM_LOCKED : 0);
  return (vma.flags & forbidden) === 0;
}

/**
 * Mirrors mm/madvise.c:madvise_dontneed_free(): UFFD_EVENT_REMOVE first (before MADV_FREE's
 * anon-only check, so a registered shmem vma gets the event and then EINVAL), then the vma is
 * looked up again and the range zapped (DONTNEED) or made lazyfree (FREE).
 */
async function madviseDontneedFree(mm: Mm, vma: Vma, range: MadviseRange, advice: number): Promise<VisitResult> {
  if (!dontneedFreeValidVma(vma, advice)) return "EINVAL";
  await mm.core.uffd.remove(vma, range.start, range.end);
  // userfaultfd_remove() may have dropped the mmap lock while the event waited to be read.
  const cur = mm.vmaLookup(range.start);
  if (cur === null) return "ENOMEM";
  if (!dontneedFreeValidVma(cur, advice)) return "EINVAL";
  // The vma may have been split meanwhile; the rest of the range is walked next (and gets a
  // repeated REMOVE event, which a manager handles fine).
  if (range.end > cur.end) range.end = cur.end;
  if (advice === MADV_FREE) {
    if (!vmaIsAnonymous(cur)) return "EINVAL";
    madviseFreePteRange(mm, range.start, range.end);
  } else {
    zapPageRange(mm, cur, range.start, range.end, ZAP_DEFAULT);
    reclaimEmptyPageTables(mm, range.start, range.end);
  }
  return null;
}

/**
 * CONFIG_PT_RECLAIM (set on the host): MADV_DONTNEED frees a PTE table once a zap that covered
 * the whole PMD left every entry none (zap_pte_range() -> try_get_and_clear_pmd()).
 */
function reclaimEmptyPageTables(mm: Mm, start: number, end: number): void {
  const span = PTRS_PER_PTE * PAGE_SIZE;
  const first = Math.ceil(start / span);
  const last = Math.floor(end / span); // exclusive
  if (last <= first) return;
  // Walk whichever is smaller: the PMDs in range, or the tables that exist.
  const keys = last - first <= mm.pt.tables.size ? Array.from({ length: last - first }, (_, i) => first + i) : [...mm.pt.tables.keys()];
  for (const key of keys) {
    if (key < first || key >= last) continue;
    const t = mm.pt.tables.get(key);
    if (t !== undefined && t.every((pte) => pte === 0)) mm.pt.freeTable(key);
  }
}

/**
 * Mirrors mm/madvise.c:madvise_free_pte_range(): swap entries are dropped outright (cheaper than
 * a swap-in), poison markers cleared; a present page mapped only here (or clean) loses its
 * young and dirty bits and becomes lazyfree: MADV_PAGEOUT (or reclaim) may then discard it,
 * unless it is written again first.
 */
function madviseFreePteRange(mm: Mm, start: number, end: number): void {
  const mem = mm.core.mem;
  const swap = mm.core.swap;
  const entries: Array<[number, number]> = [];
  mm.pt.forEachPresentEntry(start / PAGE_SIZE, end / PAGE_SIZE, (vpn, pte) => entries.push([vpn, pte]));
  for (const [vpn, pte] of entries) {
    if (isSwapPte(pte)) {
      freeSwapAndCache(mm, swpOffset(pte));
      mm.pt.set(vpn, 0);
      mm.swapEnts--;
      continue;
    }
    if (isPteMarker(pte)) continue;
    const pfn = vmNormalPfn(pte);
    if (pfn < 0) continue;
    if (mem.testFlag(pfn, PG.swapcache) || mem.testFlag(pfn, PG.dirty)) {
      if (mem.mapcount[pfn] !== 1) continue;
      if (mem.testFlag(pfn, PG.swapcache) && !swap!.folioFreeSwap(pfn)) continue;
      mem.clearFlag(pfn, PG.dirty);
    }
    if ((pte & (PTE_YOUNG | PTE_DIRTY)) !== 0) mm.pt.set(vpn, (pte & ~(PTE_YOUNG | PTE_DIRTY)) >>> 0);
    // folio_mark_lazyfree(): only a swap-backed page not in the swap cache.
    if (mem.folioTestAnon(pfn) && mem.testFlag(pfn, PG.swapbacked) && !mem.testFlag(pfn, PG.swapcache)) {
      mem.clearFlag(pfn, PG.swapbacked);
      mem.setFlag(pfn, PG.lazyfree);
    }
  }
}

/**
 * Mirrors mm/madvise.c:madvise_remove(): punches a hole in the file like
 * fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE): shared mappings of the hole are zapped
 * (keeping uffd-wp markers, docs/linux-rules.md §8.13), private COW copies stay.
 */
async function madviseRemove(proc: Process, vma: Vma, range: MadviseRange): Promise<VisitResult> {
  if ((vma.flags & VM_LOCKED) !== 0) return "EINVAL";
  const inode = vma.file;
  if (inode === null) return "EINVAL";
  // vma_is_shared_maywrite(): PROT_READ is fine if the file was opened for writing [host].
  if ((vma.flags & (VM_SHARED | VM_MAYWRITE)) !== (VM_SHARED | VM_MAYWRITE)) return "EACCES";
  const offset = range.start - vma.start + vma.pgoff * PAGE_SIZE;
  const len = range.end - range.start;
  await proc.mm.core.uffd.remove(vma, range.start, range.end);
  // vfs_fallocate() -> shmem_fallocate(): under the inode lock.
  const unlock = await inodeLock(inode);
  try {
    shmemFallocate(proc, inode, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, len);
  } finally {
    unlock();
  }
  return null;
}

/**
 * Mirrors mm/madvise.c:madvise_willneed() with swapin_walk_pmd_entry() / shmem_swapin_range():
 * swapped-out pages are read into the swap cache (not mapped), so mincore() reports them.
 */
function madviseWillneed(mm: Mm, vma: Vma, range: MadviseRange): VisitResult {
  const swap = mm.core.swap;
  if (swap === null) return vma;
  const mem = mm.core.mem;
  const readIn = (slot: number): void => {
    const pfn = swap.swapIn(slot);
    if (pfn >= 0) mem.folioPut(pfn); // the swap cache keeps its own reference
  };
  if (vma.file === null) {
    mm.pt.forEachPresentEntry(range.start / PAGE_SIZE, range.end / PAGE_SIZE, (_vpn, pte) => {
      if (isSwapPte(pte)) readIn(swpOffset(pte));
    });
    return vma;
  }
  const last = vma.pgoffOf(range.end);
  for (let pgoff = vma.pgoffOf(range.start); pgoff < last; pgoff++) {
    const e = vma.file.pages.get(pgoff);
    if (e !== undefined && cacheEntryIsSwap(e)) readIn(cacheEntrySlot(e));
  }
  return vma;
}

/** can_madv_lru_vma(). */
const canMadvLruVma = (vma: Vma): boolean => (vma.flags & (VM_LOCKED | VM_PFNMAP | VM_HUGETLB)) === 0;

/**
 * Mirrors mm/madvise.c:madvise_cold() / madvise_pageout() and
 * madvise_cold_or_pageout_pte_range(): only pages mapped exactly once are touched (a COW-shared
 * page is never paged out [host]); COLD clears their young bit (the LRU is not modelled),
 * PAGEOUT reclaims them (vmscan.ts).
 */
function madviseColdOrPageout(mm: Mm, vma: Vma, range: MadviseRange, pageout: boolean): VisitResult {
  if (!canMadvLruVma(vma)) return "EINVAL";
  const mem = mm.core.mem;
  const candidates: Array<[number, number]> = [];
  mm.pt.forEachPresentEntry(range.start / PAGE_SIZE, range.end / PAGE_SIZE, (vpn, pte) => {
    if (!ptePresent(pte)) return;
    const pfn = vmNormalPfn(pte);
    if (pfn < 0 || mem.mapcount[pfn] !== 1) return;
    if (!pageout && (pte & PTE_YOUNG) !== 0) mm.pt.set(vpn, (pte & ~PTE_YOUNG) >>> 0);
    candidates.push([vpn, pte]);
  });
  if (pageout) for (const [vpn, pte] of candidates) reclaimPte(mm, vma, vpn, pte);
  return vma;
}

/**
 * is_valid_guard_vma(): any vma but special, hugetlb or (for install) mlocked ones; file-backed
 * and read-only mappings are fine on 6.18 [host: anon, PROT_NONE, shmem, read-only memfd].
 */
const isValidGuardVma = (vma: Vma, allowLocked: boolean): boolean =>
  (vma.flags & (VM_SPECIAL | VM_HUGETLB | (allowLocked ? 0 : VM_LOCKED))) === 0;

/**
 * Mirrors mm/madvise.c:madvise_guard_install(): marks the vma VM_MAYBE_GUARD ("gu" in smaps,
 * no split), then installs PTE_MARKER_GUARD in every none pte; anything else present is zapped
 * and the install retried.
 *
 * Divergence from Linux: where the retries run out (a uffd-wp marker on a file vma, which zap
 * keeps), Linux restarts the syscall forever [host: livelock]; we fail with EAGAIN instead.
 */
function madviseGuardInstall(mm: Mm, vma: Vma, range: MadviseRange): VisitResult {
  if (!isValidGuardVma(vma, false)) return "EINVAL";
  vma.flags = (vma.flags | VM_MAYBE_GUARD) >>> 0;
  if (vmaIsAnonymous(vma)) mm.anonVmaPrepare(vma);
  const guard = mkMarker(MARKER_GUARD);
  const first = range.start / PAGE_SIZE;
  const last = range.end / PAGE_SIZE;
  for (let attempt = 0; attempt < MAX_MADVISE_GUARD_RETRIES; attempt++) {
    let populated = false;
    for (let vpn = first; vpn < last; vpn++) {
      const pte = mm.pt.get(vpn);
      if (pte === 0) mm.pt.set(vpn, guard);
      else if (!isGuardMarker(pte)) {
        populated = true;
        break;
      }
    }
    if (!populated) return vma;
    // Some of the range is populated: zap it (existing guard markers stay) and try again.
    zapPageRange(mm, vma, range.start, range.end, ZAP_DEFAULT);
  }
  return "EAGAIN";
}

const isGuardMarker = (pte: number): boolean => isPteMarker(pte) && (pte & MARKER_GUARD) !== 0;

/** Mirrors mm/madvise.c:madvise_guard_remove(): clears guard markers only; VM_MAYBE_GUARD stays. */
function madviseGuardRemove(mm: Mm, vma: Vma, range: MadviseRange): VisitResult {
  if (!isValidGuardVma(vma, true)) return "EINVAL";
  const guards: number[] = [];
  mm.pt.forEachPresentEntry(range.start / PAGE_SIZE, range.end / PAGE_SIZE, (vpn, pte) => {
    if (isGuardMarker(pte)) guards.push(vpn);
  });
  for (const vpn of guards) mm.pt.set(vpn, 0);
  return vma;
}

// --- MADV_POPULATE_(READ|WRITE) --------------------------------------------------------------

/** How often one page may be faulted without progress before it is a kernel bug. */
const FAULT_SPINS_MAX = 16;

/**
 * Mirrors mm/gup.c:faultin_page_range() as madvise_populate() drives it: __get_user_pages()
 * with FOLL_MADV_POPULATE | FOLL_HWPOISON | FOLL_TOUCH and no page grabbed. Page by page: no
 * vma is ENOMEM, a vma without the access right (check_vma_flags()) is EINVAL; a pte that does
 * not allow the access is faulted in as GUP does (kernel mode: a userfault blocks here, a
 * UFFD_USER_MODE_ONLY or SIGBUS-feature context answers SIGBUS), and the fault's error is
 * EFAULT (SIGBUS/SIGSEGV: beyond EOF, guard markers), EHWPOISON (poison markers) or ENOMEM.
 * Pages before the failing one stay populated.
 */
async function faultinPageRange(proc: Process, start: number, end: number, write: boolean): Promise<ErrnoCode | null> {
  const mm = proc.mm;
  let spins = 0;
  for (let addr = start; addr < end; ) {
    const vma = mm.vmaLookup(addr);
    if (vma === null) return "ENOMEM";
    if ((vma.flags & (VM_IO | VM_PFNMAP)) !== 0 || (vma.flags & (write ? VM_WRITE : VM_READ)) === 0) return "EINVAL";
    const vpn = addr / PAGE_SIZE;
    const pte = mm.pt.get(vpn);
    if (ptePresent(pte) && (!write || pteWrite(pte))) {
      // follow_page_pte() with FOLL_TOUCH: a write through a clean pte marks the folio dirty
      // (the pte is left as it is) [host: MADV_FREE then MADV_POPULATE_WRITE: dirty 1; after a
      // write fault, whose pte is dirty: 0].
      const pfn = vmNormalPfn(pte);
      if (write && pfn >= 0 && !pteDirty(pte)) mm.core.mem.setFlag(pfn, PG.dirty);
      addr += PAGE_SIZE;
      spins = 0;
      continue;
    }
    if (++spins > FAULT_SPINS_MAX) BUG(`populate at 0x${addr.toString(16)} faulted ${spins} times without progress`);
    const r = await faultinPage(proc, vma, addr, write);
    if (r === "slept") spins = 0;
    else if (r !== "handled") return r;
  }
  return null;
}

/**
 * Mirrors mm/gup.c:faultin_page(): a kernel-mode fault (no FAULT_FLAG_USER). The caller looks
 * at the pte again after "handled" or "slept" (a userfault woke it up); otherwise this is the
 * errno of vm_fault_to_errno() with FOLL_HWPOISON.
 */
async function faultinPage(proc: Process, vma: Vma, addr: number, write: boolean): Promise<ErrnoCode | "handled" | "slept"> {
  const vmf = new VmFault(proc.mm, vma, addr, write ? FAULT_FLAG_WRITE : 0, proc.mainThread);
  proc.kernel.sched.charge(COST.fault);
  const ret = handleMmFault(vmf);
  if (ret === 0) return "handled";
  if ((ret & VM_FAULT_RETRY) !== 0) {
    const ctx = proc.accessContext(proc.mainThread);
    if (vmf.waiter !== null) await Promise.race([vmf.waiter, ctx.killed]);
    if (ctx.isDead()) throw new DeadTaskError();
    return "slept";
  }
  if ((ret & VM_FAULT_OOM) !== 0) return "ENOMEM";
  if ((ret & VM_FAULT_HWPOISON) !== 0) return "EHWPOISON";
  if ((ret & (VM_FAULT_SIGBUS | VM_FAULT_SIGSEGV)) !== 0) return "EFAULT";
  BUG(`unexpected fault result 0x${ret.toString(16)} in MADV_POPULATE`);
}
