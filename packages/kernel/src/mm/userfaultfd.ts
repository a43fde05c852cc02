/**
 * The memory side of userfaultfd. Mirrors mm/userfaultfd.c: mfill_atomic() and its per-pte
 * helpers (COPY, ZEROPAGE, CONTINUE, POISON), mfill_atomic_install_pte(), mwriteprotect_range()
 * and uffd_wp_range() (the MM_CP_UFFD_WP / MM_CP_UFFD_WP_RESOLVE half of
 * mm/mprotect.c:change_pte_range()), move_pages() for UFFDIO_MOVE, and the registration helpers
 * userfaultfd_register_range(), userfaultfd_clear_vma(), userfaultfd_release_all() and
 * userfaultfd_reset_ctx(); plus shmem_mfill_atomic_pte() of mm/shmem.c.
 *
 * Nothing here throws for a user error: operations return bytes done (> 0) or a negative errno,
 * as the kernel functions do, and fs/userfaultfd.ts turns that into the ioctl's result.
 *
 * Ordering rules kept from Linux:
 * - every operation re-checks `mmap_changing` once it has found its vma (the ioctl checked it
 *   before reading its arguments too);
 * - COPY reads its source before it looks at the destination pte, so a bad source wins over
 *   EEXIST; when the source is not resident the page is filled outside the "lock" (an await that
 *   may itself block on a userfault of the caller) and the whole lookup is redone;
 * - COPY and CONTINUE may replace any pte marker (pte_none_mostly()), ZEROPAGE and POISON need
 *   a strictly none pte (except shared shmem ZEROPAGE, which installs through the COPY path).
 */
import { pageOffset } from "../lib/addr.ts";
import { ERRNO } from "../uapi/errno.ts";
import * as mman from "../uapi/mman.ts";
import { UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES } from "../uapi/userfaultfd.ts";
import { PG, type Pfn, PhysMem } from "./folio.ts";
import { userfaultfdWpUseMarkers, vmaMm, vmaPageProtWritable, vmNormalPfn } from "./memory.ts";
import type { Mm } from "./mm.ts";
import {
  isPteMarker,
  isSwapPte,
  MARKER_GUARD,
  MARKER_POISONED,
  MARKER_UFFD_WP,
  mkMarker,
  type Pte,
  PTE_SPECIAL,
  PTE_UFFD_WP,
  pteDirty,
  pteMkuffdWp,
  pteMkwrite,
  pteNoneMostly,
  ptePfn,
  ptePresent,
  pteSpecial,
  SWP_UFFD_WP,
  swpExclusive,
} from "./page-table.ts";
import * as ptMod from "./page-table.ts";
import { folioAddFileRmapPte } from "./rmap.ts";
import * as rmap from "./rmap.ts";
import { shmemAddToPageCache, shmemDeleteEntry, shmemFindPage } from "./shmem.ts";
import {
  userfaultfdMissing,
  userfaultfdWp,
  type Vma,
  VM_ACCESS_FLAGS,
  VM_HUGETLB,
  VM_IO,
  VM_LOCKED,
  VM_PFNMAP,
  VM_UFFD_FLAGS,
  VM_UFFD_MINOR,
  VM_UFFD_WP,
  type VmaUffdCtx,
  vmaIsShmem,
} from "./vma.ts";
import * as vmaMod from "./vma.ts";

// Module-local copies of constants and helpers the hot path uses on every fault: V8 reads an
// imported binding through its module cell at each use, a module-local const is folded into the
// optimized code (see kernel/access.ts). Each comes from a module initialised before this one.
const PAGE_SIZE = mman.PAGE_SIZE;
const mkPte = ptMod.mkPte;
const PTE_DIRTY = ptMod.PTE_DIRTY;
const PTE_WRITE = ptMod.PTE_WRITE;
const PTE_YOUNG = ptMod.PTE_YOUNG;
const PTE_SPECIAL_BIT = ptMod.PTE_SPECIAL;
const PTRS_PER_PTE = ptMod.PTRS_PER_PTE;
const folioAddNewAnonRmap = rmap.folioAddNewAnonRmap;
const VM_SHARED = vmaMod.VM_SHARED;
const VM_WRITE = vmaMod.VM_WRITE;
const vmaIsAnonymous = vmaMod.vmaIsAnonymous;

/** What the mm side needs of a userfaultfd context (struct userfaultfd_ctx). */
export interface UffdCtxRef extends VmaUffdCtx {
  /** The mm the context was created for (ctx->mm). */
  readonly mm: Mm;
  /** Non-zero while a non-cooperative event is being delivered (ctx->mmap_changing). */
  readonly mmapChanging: number;
  /** A spare MfillOp for the next mfillAtomic() (owned by mfillAtomic()). */
  mfillScratch: MfillOp | null;
}

/** enum mfill_atomic_mode. */
export const MFILL_ATOMIC = { COPY: 0, ZEROPAGE: 1, CONTINUE: 2, POISON: 3 } as const;
export type MfillAtomicMode = (typeof MFILL_ATOMIC)[keyof typeof MFILL_ATOMIC];

/** Where UFFDIO_COPY reads its bytes: the caller's memory (copy_from_user) or a buffer given directly. */
export interface MfillSource {
  /** copy_from_user() with page faults disabled: true only if every byte of the page was copied. */
  copyAtomic(srcAddr: number, dst: Uint8Array, dstOff: number): boolean;
  /** copy_from_user() outside the locks: may fault and block. True only if every byte was copied. */
  copySlow(srcAddr: number, dst: Uint8Array, dstOff: number): Promise<boolean>;
  /**
   * copyAtomic() of `len` bytes (whole pages) into one contiguous destination range, as few
   * copies as the source allows; returns the bytes of the leading pages copied in full (a page
   * copyAtomic() would refuse stops it). Optional: without it every page is copied alone.
   */
  copyAtomicRun?(srcAddr: number, dst: Uint8Array, dstOff: number, len: number): number;
}

const E = ERRNO;
/**
 * mfill_atomic_pte() asks for the source to be copied outside the lock (the kernel's internal
 * -ENOENT); a value no errno takes.
 */
const MFILL_NEED_COPY = -4096;

/**
 * The state of one mfill_atomic() call, kept across the retry after a slow source copy. A call
 * that completes without a slow copy hands its record back to the context for the next call
 * (UffdCtxRef.mfillScratch), so the common ioctl allocates none.
 */
export class MfillOp {
  ctx: UffdCtxRef;
  mode: MfillAtomicMode = MFILL_ATOMIC.COPY;
  wp = false;
  dstStart = 0;
  srcStart = 0;
  len = 0;
  src: MfillSource | null = null;
  dstAddr = 0;
  srcAddr = 0;
  copied = 0;
  /** A frame already holding the source bytes (the kernel's *foliop), or -1. */
  folio: Pfn = -1;

  constructor(ctx: UffdCtxRef) {
    this.ctx = ctx;
  }

  reset(mode: MfillAtomicMode, wp: boolean, dstStart: number, srcStart: number, len: number, src: MfillSource | null): this {
    this.mode = mode;
    this.wp = wp;
    this.dstStart = dstStart;
    this.srcStart = srcStart;
    this.len = len;
    this.src = src;
    this.dstAddr = dstStart;
    this.srcAddr = srcStart;
    this.copied = 0;
    this.folio = -1;
    return this;
  }
}

/**
 * Mirrors mm/userfaultfd.c:mfill_atomic(). Returns the bytes done if any, else a negative errno.
 * The result is a plain number unless the source had to be copied with faults enabled; then it
 * is a Promise (the fast path of the fault -> COPY round trip takes no promise hop).
 */
export function mfillAtomic(
  ctx: UffdCtxRef,
  dstStart: number,
  srcStart: number,
  len: number,
  mode: MfillAtomicMode,
  wp: boolean,
  src: MfillSource | null,
): number | Promise<number> {
  const op = (ctx.mfillScratch ?? new MfillOp(ctx)).reset(mode, wp, dstStart, srcStart, len, src);
  ctx.mfillScratch = null;
  const err = mfillAtomicPass(op);
  if (err === MFILL_NEED_COPY) return mfillAtomicSlow(op);
  const ret = mfillFinish(op, err);
  op.src = null;
  ctx.mfillScratch = op;
  return ret;
}

/** The `out:` of mfill_atomic(): drop a prepared frame nobody took, report bytes done or the error. */
function mfillFinish(op: MfillOp, err: number): number {
  if (op.folio >= 0) {
    op.ctx.mm.core.mem.folioPut(op.folio);
    op.folio = -1;
  }
  return op.copied > 0 ? op.copied : err;
}

/** The retry loop of mfill_atomic() after a source that was not resident: copy, then redo the lookup. */
async function mfillAtomicSlow(op: MfillOp): Promise<number> {
  const mem = op.ctx.mm.core.mem;
  for (;;) {
    const pfn = op.folio;
    let ok = false;
    // The prepared frame is this COPY's reference while the source faults in: checkInvariants() counts it.
    const holder = { forEachRef: (fn: (pfn: number, refs: number, pins: number) => void): void => fn(pfn, 1, 0) };
    const holders = op.ctx.mm.core.refHolders;
    holders.add(holder);
    try {
      ok = await op.src!.copySlow(op.srcAddr, mem.writable(pfn, true), mem.offset(pfn));
      mem.written(pfn);
    } finally {
      holders.delete(holder);
      if (!ok) {
        mem.folioPut(pfn);
        op.folio = -1;
      }
    }
    if (!ok) return op.copied > 0 ? op.copied : -E.EFAULT;
    const err = mfillAtomicPass(op);
    if (err !== MFILL_NEED_COPY) return mfillFinish(op, err);
  }
}

/**
 * One locked pass of mfill_atomic(): find and validate the destination vma (uffd_mfill_lock()),
 * re-check mmap_changing, then fill page after page. Returns 0, a negative errno, or
 * MFILL_NEED_COPY with op.folio set.
 */
function mfillAtomicPass(op: MfillOp): number {
  const { ctx, mode } = op;
  const mm = ctx.mm;
  const vma = mm.vmaLookup(op.dstStart);
  const bad = mfillCheckDstVma(ctx, vma, op.dstStart, op.len, mode, op.wp);
  if (bad !== 0 || vma === null) return bad;
  if (mode === MFILL_ATOMIC.COPY && vmaIsAnonymous(vma)) return mfillCopyAnon(op, vma);
  const end = op.srcStart + op.len;
  while (op.srcAddr < end) {
    // mm_alloc_pmd() + __pte_alloc(): the page table exists from here on, whatever the outcome.
    mm.pt.table(op.dstAddr / PAGE_SIZE);
    const err = mfillAtomicPte(op, vma);
    if (err !== 0) return err;
    op.dstAddr += PAGE_SIZE;
    op.srcAddr += PAGE_SIZE;
    op.copied += PAGE_SIZE;
  }
  return 0;
}

/**
 * mfill_atomic()'s checks of the destination vma found for [dstStart, dstStart+len), in its
 * order (uffd_mfill_lock(), validate_dst_vma(), the mmap_changing re-check, the mode checks):
 * 0 or a negative errno. A private vma gets its anon_vma first (anon_vma_prepare()).
 */
function mfillCheckDstVma(ctx: UffdCtxRef, vma: Vma | null, dstStart: number, len: number, mode: MfillAtomicMode, wp: boolean): number {
  if (vma === null) return -E.ENOENT;
  if ((vma.flags & VM_SHARED) === 0) ctx.mm.anonVmaPrepare(vma);
  // validate_dst_vma(): the whole range inside one vma that some userfaultfd registered.
  if (dstStart + len > vma.end || vma.uffdCtx === null) return -E.ENOENT;
  if (ctx.mmapChanging !== 0) return -E.EAGAIN;
  if (vmaIsAnonymous(vma) && (vma.flags & VM_SHARED) !== 0) return -E.EINVAL;
  if (wp && (vma.flags & VM_UFFD_WP) === 0) return -E.EINVAL;
  if (!vmaIsAnonymous(vma) && !vmaIsShmem(vma)) return -E.EINVAL;
  if (!vmaIsShmem(vma) && mode === MFILL_ATOMIC.CONTINUE) return -E.EINVAL;
  return 0;
}

/**
 * mfillAtomic(ctx, dst, 0, PAGE_SIZE, CONTINUE, wp, null) without its record and page loop:
 * the same vma checks, the PTE table, then mfill_atomic_pte_continue() for the one page.
 * Returns PAGE_SIZE or a negative errno, as mfillAtomic() does for one page.
 */
export function mfillContinuePage(ctx: UffdCtxRef, dst: number, wp: boolean): number {
  const mm = ctx.mm;
  const vma = mm.vmaLookup(dst);
  const bad = mfillCheckDstVma(ctx, vma, dst, PAGE_SIZE, MFILL_ATOMIC.CONTINUE, wp);
  if (bad !== 0 || vma === null) return bad;
  // mm_alloc_pmd() + __pte_alloc(): the page table exists from here on, whatever the outcome.
  mm.pt.table(dst / PAGE_SIZE);
  const err = mfillAtomicPteContinue(vma, dst, wp);
  return err === 0 ? PAGE_SIZE : err;
}

/**
 * The page loop of mfill_atomic() for COPY into (private) anonymous memory, the common case:
 * mfill_atomic_pte_copy() and mfill_atomic_install_pte() folded into one loop over the PTE
 * table, in the same order (the source is read before the destination pte is looked at).
 */
function mfillCopyAnon(op: MfillOp, vma: Vma): number {
  const mm = op.ctx.mm;
  const mem = mm.core.mem;
  // A new anon page: dirty, young, writable iff VM_WRITE (uffd-wp, read-only, with MODE_WP).
  const bits = PTE_DIRTY | PTE_YOUNG | ((vma.flags & VM_WRITE) !== 0 ? PTE_WRITE : 0);
  const end = op.srcStart + op.len;
  while (op.srcAddr < end) {
    const vpn = op.dstAddr / PAGE_SIZE;
    // mm_alloc_pmd() + __pte_alloc(): the page table exists from here on, whatever the outcome.
    const table = mm.pt.table(vpn);
    const i = vpn & (PTRS_PER_PTE - 1);
    if (op.folio < 0 && end - op.srcAddr > PAGE_SIZE && op.src!.copyAtomicRun !== undefined) {
      const err = mfillCopyAnonBatch(op, vma, table, i, bits);
      if (err !== 0) return err;
      continue;
    }
    const pfn = mfillGetFolio(op, mm);
    if (pfn < 0) return pfn;
    if (!pteNoneMostly(table[i] as number)) {
      mem.folioPut(pfn);
      return -E.EEXIST;
    }
    // Only the pte is dirty (mfill_atomic_install_pte()); the folio's PG_dirty stays clear.
    folioAddNewAnonRmap(mm, vma, pfn, op.dstAddr, true);
    table[i] = op.wp ? pteMkuffdWp(mkPte(pfn, bits)) : mkPte(pfn, bits);
    op.dstAddr += PAGE_SIZE;
    op.srcAddr += PAGE_SIZE;
    op.copied += PAGE_SIZE;
  }
  return 0;
}

/** mfillCopyAnonPage() did nothing: the case is not the simple one, take mfillAtomic(). */
export const MFILL_NOT_SIMPLE = -4097;

/**
 * mfillAtomic()'s vma checks for one page at `dst`, in its order, for the one-page straight paths:
 * the private anonymous vma that holds the page, registered with a userfaultfd, while no mmap
 * change is pending; null for anything else. Like mfillAtomic(), it prepares the vma's anon_vma
 * before it looks at the range.
 */
function simpleAnonVma(ctx: UffdCtxRef, dst: number): Vma | null {
  const mm = ctx.mm;
  const vma = mm.vmaLookup(dst);
  if (vma === null || (vma.flags & VM_SHARED) !== 0 || !vmaIsAnonymous(vma)) return null;
  mm.anonVmaPrepare(vma);
  if (dst + PAGE_SIZE > vma.end || vma.uffdCtx === null || ctx.mmapChanging !== 0) return null;
  return vma;
}

/**
 * UFFDIO_COPY of one page from a buffer of at least a page (`src[0..PAGE_SIZE)`), mode 0, into
 * a none pte of a private anonymous vma some userfaultfd registered: the round trip's common case
 * in one straight function. Does exactly what mfillAtomic() does for it (the same vma checks,
 * frame, copy, rmap and pte) and returns PAGE_SIZE; anything else (no such vma, mmap_changing,
 * a populated pte or a marker, no free frame) returns MFILL_NOT_SIMPLE having changed nothing
 * but what mfillAtomic() would change first as well (the vma's anon_vma, the PTE table), so the
 * caller then runs mfillAtomic() for the outcome.
 */
export function mfillCopyAnonPage(ctx: UffdCtxRef, dst: number, src: Uint8Array): number {
  const vma = simpleAnonVma(ctx, dst);
  if (vma === null) return MFILL_NOT_SIMPLE;
  const mm = ctx.mm;
  const vpn = dst / PAGE_SIZE;
  const table = mm.pt.table(vpn);
  const i = vpn & (PTRS_PER_PTE - 1);
  if (table[i] !== 0) return MFILL_NOT_SIMPLE;
  // allocFrame(), the copy and folioAddNewAnonRmap(mm, vma, pfn, dst, true) (the vma's anon_vma
  // is prepared above) in one call; then the mm's rss, as folioAddNewAnonRmap() counts it.
  const pfn = mm.core.mem.allocAnonPage(src.length === PAGE_SIZE ? src : src.subarray(0, PAGE_SIZE), vpn);
  if (pfn < 0) return MFILL_NOT_SIMPLE;
  mm.rssAnon++;
  table[i] = mkPte(pfn, PTE_DIRTY | PTE_YOUNG | ((vma.flags & VM_WRITE) !== 0 ? PTE_WRITE : 0));
  return PAGE_SIZE;
}

/**
 * UFFDIO_ZEROPAGE of one page, mode 0, into a none pte of a private anonymous vma some
 * userfaultfd registered: mfillAtomic()'s checks and mfill_atomic_pte_zeropage()'s pte (the
 * shared zero page, special) in one straight function. Returns PAGE_SIZE when it installed the
 * pte; anything else (no such vma, mmap_changing, a pte that is not none) returns
 * MFILL_NOT_SIMPLE having changed only what mfillAtomic() changes first as well (the vma's
 * anon_vma, the PTE table), and the caller runs mfillAtomic() for the outcome.
 */
export function mfillZeropageAnonPage(ctx: UffdCtxRef, dst: number): number {
  const vma = simpleAnonVma(ctx, dst);
  if (vma === null) return MFILL_NOT_SIMPLE;
  const mm = ctx.mm;
  const vpn = dst / PAGE_SIZE;
  const table = mm.pt.table(vpn);
  const i = vpn & (PTRS_PER_PTE - 1);
  // ZEROPAGE needs a strictly none pte (a marker is EEXIST too: the general path says so).
  if (table[i] !== 0) return MFILL_NOT_SIMPLE;
  table[i] = mkPte(mm.core.mem.zeroPfn, PTE_SPECIAL_BIT);
  return PAGE_SIZE;
}

/** Frames for one batch of mfillCopyAnonBatch(): at most a PTE table's worth. */
const batchPfns = new Int32Array(PTRS_PER_PTE);

/**
 * The pages of mfillCopyAnon() up to the end of the PTE table `table` (from index `i`), in one
 * go: the frames are allocated together (contiguous where the allocator can, see
 * PhysMem.allocFrames()) and the source is copied into each contiguous run of them with one
 * copy, then the ptes are installed page by page exactly as the page loop does. The outcome is
 * the page loop's, page for page: every page's source is read before its destination pte is
 * looked at, so a source page that cannot be read without a fault stops the batch there
 * (MFILL_NEED_COPY with that page's frame kept in op.folio) after the pages before it were
 * installed, and a populated destination stops it with EEXIST; frames not installed are freed.
 * Returns 0 when the batch was installed, else what the page loop would return.
 */
function mfillCopyAnonBatch(op: MfillOp, vma: Vma, table: Uint32Array, i: number, bits: number): number {
  const mm = op.ctx.mm;
  const mem = mm.core.mem;
  const want = Math.min((op.srcStart + op.len - op.srcAddr) / PAGE_SIZE, PTRS_PER_PTE - i);
  const pfns = batchPfns;
  const n = mem.allocFrames(want, pfns);
  if (n === 0) return -E.ENOMEM;
  // The source, one copy per contiguous run of frames; `copied` pages came through whole.
  let copied = 0;
  while (copied < n) {
    const run = mem.runLength(pfns, copied, n);
    const first = pfns[copied] as number;
    const len = run * PAGE_SIZE;
    const got = op.src!.copyAtomicRun!(op.srcAddr + copied * PAGE_SIZE, mem.writable(first, true), mem.offset(first), len);
    // A compact store keeps no frame next to another (runs of one): each may compact again.
    if (mem.compact && got === len) mem.written(first);
    copied += Math.floor(got / PAGE_SIZE);
    if (got < len) break;
  }
  let k = 0;
  let err = 0;
  for (; k < copied; k++) {
    const pfn = pfns[k] as number;
    if (!pteNoneMostly(table[i + k] as number)) {
      err = -E.EEXIST;
      break;
    }
    // Only the pte is dirty, as in the page loop.
    folioAddNewAnonRmap(mm, vma, pfn, op.dstAddr, true);
    table[i + k] = op.wp ? pteMkuffdWp(mkPte(pfn, bits)) : mkPte(pfn, bits);
    op.dstAddr += PAGE_SIZE;
    op.srcAddr += PAGE_SIZE;
    op.copied += PAGE_SIZE;
  }
  if (err === 0 && copied < n) {
    // The page loop would keep this page's frame for the copy with faults enabled.
    op.folio = pfns[k++] as number;
    err = MFILL_NEED_COPY;
  }
  for (; k < n; k++) mem.folioPut(pfns[k] as number);
  return err;
}

/**
 * copyFromUserAtomic() of `len` bytes (whole pages, `addr` page-aligned) into dst[dstOff..]:
 * one copy per run of source pages that are contiguous in physical memory. Returns the bytes of
 * the leading pages copied (it stops at the first page copyFromUserAtomic() would refuse).
 */
export function copyFromUserAtomicRun(mm: Mm, addr: number, dst: Uint8Array, dstOff: number, len: number): number {
  if (pageOffset(addr) !== 0) {
    let done = 0;
    while (done < len && copyFromUserAtomic(mm, addr + done, dst, dstOff + done)) done += PAGE_SIZE;
    return done;
  }
  const mem = mm.core.mem;
  let done = 0;
  let runStart = 0;
  let runPfn = -1;
  let runPages = 0;
  const flush = (): void => {
    if (runPages === 0) return;
    const o = mem.offset(runPfn);
    dst.set(mem.bytes(runPfn).subarray(o, o + runPages * PAGE_SIZE), dstOff + runStart);
    runPages = 0;
  };
  while (done < len) {
    const a = addr + done;
    const vma = mm.vmaLookup(a);
    if (vma === null || (vma.flags & VM_ACCESS_FLAGS) === 0) break;
    const pte = mm.pt.get(a / PAGE_SIZE);
    if (!ptePresent(pte)) break;
    const pfn = ptePfn(pte);
    if (runPages > 0 && !mem.compact && pfn === runPfn + runPages && mem.bytes(pfn) === mem.bytes(runPfn)) runPages++;
    else {
      flush();
      runStart = done;
      runPfn = pfn;
      runPages = 1;
    }
    done += PAGE_SIZE;
  }
  flush();
  return done;
}

/** Mirrors mm/userfaultfd.c:mfill_atomic_pte(): private mappings get anon memory, shared shmem the page cache. */
function mfillAtomicPte(op: MfillOp, vma: Vma): number {
  if (op.mode === MFILL_ATOMIC.CONTINUE) return mfillAtomicPteContinue(vma, op.dstAddr, op.wp);
  if (op.mode === MFILL_ATOMIC.POISON) return mfillAtomicPtePoison(vma, op.dstAddr);
  // A hole in a MAP_PRIVATE shmem mapping is filled with anon memory directly (as a write
  // fault would COW it); the page cache is not touched.
  if ((vma.flags & VM_SHARED) === 0) {
    return op.mode === MFILL_ATOMIC.COPY ? mfillAtomicPteCopy(op, vma) : mfillAtomicPteZeropage(vma, op.dstAddr);
  }
  return shmemMfillAtomicPte(op, vma);
}

/**
 * Takes the frame prepared by a previous pass, or allocates one (zeroed unless it is for COPY)
 * and copies the source into it with faults disabled. Returns the frame, a negative errno, or
 * MFILL_NEED_COPY (the frame is then kept in op.folio).
 */
function mfillGetFolio(op: MfillOp, mm: Mm): number {
  if (op.folio >= 0) {
    const pfn = op.folio;
    op.folio = -1;
    return pfn;
  }
  const mem = mm.core.mem;
  const pfn = mem.allocFrame(op.mode !== MFILL_ATOMIC.COPY);
  if (pfn < 0) return -E.ENOMEM;
  if (op.mode === MFILL_ATOMIC.COPY) {
    const ok = op.src!.copyAtomic(op.srcAddr, mem.writable(pfn, true), mem.offset(pfn));
    if (!ok) {
      op.folio = pfn;
      return MFILL_NEED_COPY;
    }
    mem.written(pfn);
  }
  return pfn;
}

/** Mirrors mm/userfaultfd.c:mfill_atomic_pte_copy(): a new exclusive anon page with the source bytes. */
function mfillAtomicPteCopy(op: MfillOp, vma: Vma): number {
  const mm = vmaMm(vma);
  const pfn = mfillGetFolio(op, mm);
  if (pfn < 0) return pfn;
  const ret = mfillAtomicInstallPte(vma, op.dstAddr, pfn, op.wp);
  if (ret !== 0) mm.core.mem.folioPut(pfn);
  return ret;
}

/**
 * Mirrors mm/shmem.c:shmem_mfill_atomic_pte() for COPY and ZEROPAGE on shared shmem: a new page
 * goes into the page cache (visible through every mapping) and is mapped here.
 */
function shmemMfillAtomicPte(op: MfillOp, vma: Vma): number {
  const mm = vmaMm(vma);
  const mem = mm.core.mem;
  const pfn = mfillGetFolio(op, mm);
  if (pfn < 0) return pfn;
  const inode = vma.file!;
  const pgoff = vma.pgoffOf(op.dstAddr);
  let ret = 0;
  if (pgoff >= inode.sizePages) ret = -E.EFAULT;
  else if (inode.pages.has(pgoff)) ret = -E.EEXIST;
  else {
    // No folio_mark_dirty() here: only the new pte is dirty, and a zap passes that on
    // [host: kpageflags dirty 0 after COPY/ZEROPAGE into shmem, 1 after the munmap].
    shmemAddToPageCache(mem, inode, pgoff, pfn);
    ret = mfillAtomicInstallPte(vma, op.dstAddr, pfn, op.wp);
    if (ret !== 0) shmemDeleteEntry(mem, mm.core.swap, inode, pgoff);
  }
  mem.folioPut(pfn); // the allocation's reference: the cache and the pte hold their own
  return ret;
}

/** Mirrors mm/userfaultfd.c:mfill_file_over_size(): the page lies at or beyond i_size. */
function mfillFileOverSize(vma: Vma, addr: number): boolean {
  return vma.file !== null && vma.pgoffOf(addr) >= vma.file.sizePages;
}

/**
 * Mirrors mm/userfaultfd.c:mfill_atomic_install_pte(). The new pte is dirty and young, writable
 * iff VM_WRITE, except that a page-cache page in a private mapping is mapped read-only (a later
 * write COWs it like any private file page), and uffd-wp (read-only) with MFILL_ATOMIC_WP.
 * Any pte marker may be replaced. For a page-cache page the pte takes its own reference; a new
 * anon page's allocation reference becomes the pte's.
 */
export function mfillAtomicInstallPte(vma: Vma, dstAddr: number, pfn: Pfn, wp: boolean): number {
  const mm = vmaMm(vma);
  const mem = mm.core.mem;
  const pageInCache = mem.mapping[pfn] !== 0;
  const shared = (vma.flags & VM_SHARED) !== 0;
  let pte = mkPte(pfn, PTE_DIRTY | PTE_YOUNG);
  if ((vma.flags & VM_WRITE) !== 0 && !(pageInCache && !shared)) pte = pteMkwrite(pte);
  if (wp) pte = pteMkuffdWp(pte);
  if (mfillFileOverSize(vma, dstAddr)) return -E.EFAULT;
  const vpn = dstAddr / PAGE_SIZE;
  // A pte marker may be overwritten: with MISSING|WP a none pte may have been write-protected
  // (a marker) before anything backed it.
  if (!pteNoneMostly(mm.pt.get(vpn))) return -E.EEXIST;
  if (pageInCache) {
    folioAddFileRmapPte(mm, pfn);
  } else {
    folioAddNewAnonRmap(mm, vma, pfn, dstAddr, true);
  }
  mm.pt.set(vpn, pte);
  return 0;
}

/** Mirrors mm/userfaultfd.c:mfill_atomic_pte_zeropage(): the shared zero page, over a strictly none pte. */
function mfillAtomicPteZeropage(vma: Vma, dstAddr: number): number {
  const mm = vmaMm(vma);
  if (mfillFileOverSize(vma, dstAddr)) return -E.EFAULT;
  const vpn = dstAddr / PAGE_SIZE;
  if (mm.pt.get(vpn) !== 0) return -E.EEXIST;
  mm.pt.set(vpn, mkPte(mm.core.mem.zeroPfn, PTE_SPECIAL));
  return 0;
}

/**
 * Mirrors mm/userfaultfd.c:mfill_atomic_pte_continue(): maps the page already in the page cache
 * (shmem_get_folio(SGP_NOALLOC): beyond i_size is EINVAL, a hole is EFAULT).
 */
function mfillAtomicPteContinue(vma: Vma, dstAddr: number, wp: boolean): number {
  const mm = vmaMm(vma);
  const mem = mm.core.mem;
  const inode = vma.file!;
  const pgoff = vma.pgoffOf(dstAddr);
  if (pgoff >= inode.sizePages) return -E.EINVAL;
  const pfn = shmemFindPage(mem, mm.core.swap, inode, pgoff);
  if (pfn === -2) return -E.ENOMEM;
  if (pfn < 0) return -E.EFAULT;
  if (mem.testFlag(pfn, PG.hwpoison)) return -E.EIO;
  return mfillAtomicInstallPte(vma, dstAddr, pfn, wp);
}

/** Mirrors mm/userfaultfd.c:mfill_atomic_pte_poison(): a PTE_MARKER_POISONED over a strictly none pte. */
function mfillAtomicPtePoison(vma: Vma, dstAddr: number): number {
  const mm = vmaMm(vma);
  if (mfillFileOverSize(vma, dstAddr)) return -E.EFAULT;
  const vpn = dstAddr / PAGE_SIZE;
  // Refuse to overwrite any pte, even a uffd-wp marker.
  if (mm.pt.get(vpn) !== 0) return -E.EEXIST;
  mm.pt.set(vpn, mkMarker(MARKER_POISONED));
  return 0;
}

/**
 * copy_from_user() with page faults disabled: copies one page from `addr` in `mm` into
 * dst[dstOff..] only if every byte is resident and readable without a fault.
 */
export function copyFromUserAtomic(mm: Mm, addr: number, dst: Uint8Array, dstOff: number): boolean {
  const mem = mm.core.mem;
  let done = 0;
  while (done < PAGE_SIZE) {
    const a = addr + done;
    const pageOff = pageOffset(a);
    const chunk = Math.min(PAGE_SIZE - done, PAGE_SIZE - pageOff);
    const vma = mm.vmaLookup(a);
    if (vma === null || (vma.flags & VM_ACCESS_FLAGS) === 0) return false;
    const pte = mm.pt.get((a - pageOff) / PAGE_SIZE);
    if (!ptePresent(pte)) return false;
    const pfn = ptePfn(pte);
    const o = mem.offset(pfn) + pageOff;
    dst.set(mem.bytes(pfn).subarray(o, o + chunk), dstOff + done);
    done += chunk;
  }
  return true;
}

// --- write protection -----------------------------------------------------------------------

/**
 * Mirrors mm/mprotect.c:vma_wants_manual_pte_write_upgrade(): shared mappings with write-notify
 * (uffd-wp turns it on), and private writable ones.
 */
function vmaWantsManualPteWriteUpgrade(vma: Vma): boolean {
  if ((vma.flags & VM_SHARED) !== 0) return (vma.flags & (VM_WRITE | VM_UFFD_WP)) === (VM_WRITE | VM_UFFD_WP);
  return (vma.flags & VM_WRITE) !== 0;
}

/**
 * Mirrors mm/mprotect.c:can_change_pte_writable(): never for a uffd-wp pte; a private pte only
 * for an exclusive anon page; a shared pte only if already dirty (write-notify was done).
 */
function canChangePteWritable(vma: Vma, pte: Pte): boolean {
  if ((vma.flags & VM_WRITE) === 0) return false;
  if ((pte & PTE_UFFD_WP) !== 0 && userfaultfdWp(vma)) return false;
  const mem = vmaMm(vma).core.mem;
  if ((vma.flags & VM_SHARED) === 0) {
    const pfn = vmNormalPfn(pte);
    return pfn >= 0 && mem.folioTestAnon(pfn) && mem.pageAnonExclusive(pfn);
  }
  return pteDirty(pte);
}

/**
 * One pte of mm/mprotect.c:change_pte_range() with MM_CP_UFFD_WP (protect) or
 * MM_CP_UFFD_WP_RESOLVE (unprotect). Returns the new pte (0 = none).
 */
function changeUffdWpPte(vma: Vma, pte: Pte, protect: boolean, tryWritable: boolean, useMarkers: boolean): Pte {
  if (pte === 0) return protect && useMarkers ? mkMarker(MARKER_UFFD_WP) : 0;
  if (ptePresent(pte)) {
    // pte_modify(): the write bit comes from vm_page_prot.
    let ent = (pte & ~PTE_WRITE) >>> 0;
    if (vmaPageProtWritable(vma)) ent = pteMkwrite(ent);
    if (protect) return pteMkuffdWp(ent);
    ent = (ent & ~PTE_UFFD_WP) >>> 0;
    if (tryWritable && (ent & PTE_WRITE) === 0 && canChangePteWritable(vma, ent)) ent = pteMkwrite(ent);
    return ent;
  }
  if (isPteMarker(pte)) {
    // Poison and guard markers are left alone; a uffd-wp marker is dropped on unprotect.
    if ((pte & (MARKER_POISONED | MARKER_GUARD)) !== 0) return pte;
    return protect ? pte : 0;
  }
  return protect ? (pte | SWP_UFFD_WP) >>> 0 : (pte & ~SWP_UFFD_WP) >>> 0;
}

/**
 * Mirrors mm/userfaultfd.c:uffd_wp_range() -> change_protection(): sets or clears uffd-wp on
 * [start, start+len) of one vma. Protecting a none pte installs a PTE_MARKER_UFFD_WP where
 * userfaultfd_wp_use_markers() (file memory, or anon with WP_UNPOPULATED), allocating page
 * tables as needed; unprotect drops uffd-wp markers and may make ptes writable again.
 * Returns the number of ptes changed.
 */
export function uffdWpRange(vma: Vma, start: number, len: number, enableWp: boolean): number {
  const mm = vmaMm(vma);
  const tryWritable = !enableWp && vmaWantsManualPteWriteUpgrade(vma);
  const useMarkers = enableWp && userfaultfdWpUseMarkers(vma);
  let changed = 0;
  const endVpn = (start + len) / PAGE_SIZE;
  for (let vpn = start / PAGE_SIZE; vpn < endVpn; ) {
    const tableEnd = Math.min(endVpn, (Math.floor(vpn / PTRS_PER_PTE) + 1) * PTRS_PER_PTE);
    if (!useMarkers && !mm.pt.hasTable(vpn)) {
      vpn = tableEnd;
      continue;
    }
    const table = mm.pt.table(vpn);
    for (; vpn < tableEnd; vpn++) {
      const i = vpn & (PTRS_PER_PTE - 1);
      const pte = table[i] as number;
      if (pte === 0 && !useMarkers) continue;
      const next = changeUffdWpPte(vma, pte, enableWp, tryWritable, useMarkers);
      if (next !== pte) {
        table[i] = next;
        changed++;
      }
    }
  }
  return changed;
}

/**
 * Mirrors mm/userfaultfd.c:mwriteprotect_range(): every vma in the range must have VM_UFFD_WP
 * (else ENOENT, with earlier vmas already changed); holes are skipped.
 */
export function mwriteprotectRange(ctx: UffdCtxRef, start: number, len: number, enableWp: boolean): number {
  const mm = ctx.mm;
  const end = start + len;
  if (ctx.mmapChanging !== 0) return -E.EAGAIN;
  // Release policy (5.7 – 6.3, MmRules.wpAcrossVmas): until "mm/userfaultfd: support WP on
  // multiple VMAs" (6.4) mwriteprotect_range() took find_dst_vma(): the whole range inside one
  // vma that has a userfaultfd context, else ENOENT and nothing changed (6.1.192, 5.15.225 and
  // 5.10.262 alike).
  if (!mm.core.mmRules.wpAcrossVmas) {
    const vma = mm.findVma(start);
    if (vma === null || start < vma.start || end > vma.end || vma.uffdCtx === null || !userfaultfdWp(vma)) return -E.ENOENT;
    uffdWpRange(vma, start, len, enableWp);
    return 0;
  }
  let err = -E.ENOENT;
  for (const vma of mm.vmasIn(start, end)) {
    if (!userfaultfdWp(vma)) return -E.ENOENT;
    const from = Math.max(vma.start, start);
    const to = Math.min(vma.end, end);
    uffdWpRange(vma, from, to - from, enableWp);
    err = 0;
  }
  return err;
}

/**
 * mwriteprotectRange(ctx, start, PAGE_SIZE, false) for a page inside one vma with VM_UFFD_WP (the
 * resolve of a write-protect fault): uffd_wp_range()'s one pte, without the range walk. Returns
 * false, having changed nothing, for anything else (no such vma, a vma without VM_UFFD_WP,
 * mmap_changing): the caller then runs mwriteprotectRange() for the outcome.
 */
export function mwriteprotectUnprotectPage(ctx: UffdCtxRef, start: number): boolean {
  if (ctx.mmapChanging !== 0) return false;
  const mm = ctx.mm;
  const vma = mm.vmaLookup(start);
  // Inside one vma: mwriteprotect_range() finds it alone (both release rules) and goes on only
  // with VM_UFFD_WP (which a vma has only with a context).
  if (vma === null || start + PAGE_SIZE > vma.end || vma.uffdCtx === null || !userfaultfdWp(vma)) return false;
  const vpn = start / PAGE_SIZE;
  // A missing PTE table is skipped (no table is allocated to unprotect), as is a none pte.
  const table = mm.pt.lookupTable(vpn);
  if (table === undefined) return true;
  const i = vpn & (PTRS_PER_PTE - 1);
  const pte = table[i] as number;
  if (pte === 0) return true;
  const next = changeUffdWpPte(vma, pte, false, vmaWantsManualPteWriteUpgrade(vma), false);
  if (next !== pte) table[i] = next;
  return true;
}

// --- UFFDIO_MOVE -----------------------------------------------------------------------------

/** Flags that say a vma's content cannot be moved (vma_move_compatible()). */
const VM_MOVE_INCOMPATIBLE = VM_PFNMAP | VM_IO | VM_HUGETLB;

/** Mirrors mm/userfaultfd.c:validate_move_areas(). */
function validateMoveAreas(ctx: UffdCtxRef, src: Vma, dst: Vma): number {
  if ((src.flags & VM_ACCESS_FLAGS) !== (dst.flags & VM_ACCESS_FLAGS)) return -E.EINVAL;
  if ((src.flags & VM_LOCKED) !== (dst.flags & VM_LOCKED)) return -E.EINVAL;
  if ((src.flags & VM_WRITE) === 0) return -E.EINVAL;
  if ((src.flags & VM_MOVE_INCOMPATIBLE) !== 0 || (dst.flags & VM_MOVE_INCOMPATIBLE) !== 0) return -E.EINVAL;
  if (dst.uffdCtx === null || dst.uffdCtx !== ctx) return -E.EINVAL;
  if (!vmaIsAnonymous(src) || !vmaIsAnonymous(dst)) return -E.EINVAL;
  return 0;
}

/**
 * Mirrors mm/userfaultfd.c:move_pages(): moves anon pages from src to dst in one mm, page by
 * page in ascending order. Returns the bytes moved if any, else a negative errno.
 */
export function movePages(ctx: UffdCtxRef, dstStart: number, srcStart: number, len: number, mode: number): number {
  const mm = ctx.mm;
  // uffd_move_lock() -> find_vmas_mm_locked()
  const dstVma = mm.vmaLookup(dstStart);
  if (dstVma === null) return -E.ENOENT;
  if ((dstVma.flags & VM_SHARED) === 0) mm.anonVmaPrepare(dstVma);
  const srcVma = srcStart >= dstVma.start && srcStart < dstVma.end ? dstVma : mm.vmaLookup(srcStart);
  if (srcVma === null) return -E.ENOENT;
  if (ctx.mmapChanging !== 0) return -E.EAGAIN;
  if ((srcVma.flags & VM_SHARED) !== 0 || srcStart + len > srcVma.end) return -E.EINVAL;
  if ((dstVma.flags & VM_SHARED) !== 0 || dstStart + len > dstVma.end) return -E.EINVAL;
  const bad = validateMoveAreas(ctx, srcVma, dstVma);
  if (bad !== 0) return bad;
  const allowHoles = (mode & UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES) !== 0;
  let moved = 0;
  let err = 0;
  for (; moved < len; moved += PAGE_SIZE) {
    const srcVpn = (srcStart + moved) / PAGE_SIZE;
    const dstVpn = (dstStart + moved) / PAGE_SIZE;
    if (!mm.pt.hasTable(srcVpn)) {
      if (!allowHoles) {
        err = -E.ENOENT;
        break;
      }
      mm.pt.table(srcVpn);
    }
    mm.pt.table(dstVpn);
    err = movePagesPte(mm, dstVpn, srcVpn, allowHoles);
    if (err !== 0) break;
  }
  return moved > 0 ? moved : err;
}

/** Mirrors mm/userfaultfd.c:move_pages_pte() for one pte (no THP, no large folios, no migration). */
function movePagesPte(mm: Mm, dstVpn: number, srcVpn: number, allowHoles: boolean): number {
  const mem = mm.core.mem;
  if (mm.pt.get(dstVpn) !== 0) return -E.EEXIST;
  const src = mm.pt.get(srcVpn);
  if (src === 0) return allowHoles ? 0 : -E.ENOENT;
  if (ptePresent(src)) {
    if (pteSpecial(src)) {
      // move_zeropage_pte(): the zero page moves as a fresh special pte, uffd-wp dropped.
      mm.pt.set(srcVpn, 0);
      mm.pt.set(dstVpn, mkPte(mem.zeroPfn, PTE_SPECIAL));
      return 0;
    }
    const pfn = ptePfn(src);
    // A page that may be shared (not PageAnonExclusive: after fork, KSM) or pinned cannot move.
    if (!mem.folioTestAnon(pfn) || !mem.pageAnonExclusive(pfn)) return -E.EBUSY;
    if (mem.folioMaybeDmaPinned(pfn)) return -E.EBUSY;
    return movePresentPte(mm, dstVpn, srcVpn, src, pfn);
  }
  // Markers (uffd-wp, poison, guard) are non-swap entries other than migration: EFAULT.
  if (!isSwapPte(src)) return -E.EFAULT;
  if (!swpExclusive(src)) return -E.EBUSY;
  // move_swap_pte(): the swap pte moves as is (swp-exclusive and swp-uffd-wp included).
  mm.pt.set(srcVpn, 0);
  mm.pt.set(dstVpn, src);
  return 0;
}

/**
 * Mirrors mm/userfaultfd.c:move_present_pte() (6.18): the dst pte is built fresh from the dst
 * vma's protection, dirty if the src was, and always writable; uffd-wp is not carried over.
 * The folio follows the dst vma (folio_move_anon_rmap() and its index).
 */
function movePresentPte(mm: Mm, dstVpn: number, srcVpn: number, src: Pte, pfn: Pfn): number {
  const mem = mm.core.mem;
  mm.pt.set(srcVpn, 0);
  let pte = mkPte(pfn, PTE_YOUNG | PTE_WRITE);
  if (pteDirty(src)) pte |= PTE_DIRTY;
  if (!mem.testFlag(pfn, PG.swapcache)) mem.index[pfn] = dstVpn;
  mm.pt.set(dstVpn, pte >>> 0);
  return 0;
}

// --- registration ----------------------------------------------------------------------------

/** What vmaCanUserfault() asks of the release profile (kernel/release.ts). */
export interface UffdVmaPolicy {
  readonly minorShmem: boolean;
  readonly wpShmem: boolean;
}

/**
 * Mirrors include/linux/userfaultfd_k.h:vma_can_userfault(): MINOR needs shmem (the simulation
 * has no hugetlb); WP-only registration through a WP_ASYNC context accepts any memory; otherwise
 * anon and shmem vmas qualify (every vma the simulation can create).
 */
export function vmaCanUserfault(vma: Vma, vmFlags: number, wpAsync: boolean, policy?: UffdVmaPolicy): boolean {
  const modes = vmFlags & VM_UFFD_FLAGS;
  // Release policy (5.7, 5.10): MINOR registration on shmem came in 5.14 (before it, hugetlbfs only).
  if ((modes & VM_UFFD_MINOR) !== 0 && (!vmaIsShmem(vma) || policy?.minorShmem === false)) return false;
  if (wpAsync && modes === VM_UFFD_WP) return true;
  // Release policy (5.7-5.18): uffd-wp on shmem came in 5.19 with pte markers; before it
  // WP registration accepted anonymous memory only.
  if ((modes & VM_UFFD_WP) !== 0 && policy?.wpShmem === false && !vmaIsAnonymous(vma)) return false;
  return vmaIsAnonymous(vma) || vmaIsShmem(vma);
}

/**
 * Mirrors mm/userfaultfd.c:userfaultfd_set_ctx(). On a shared mapping a change of VM_UFFD_WP
 * recomputes vm_page_prot (write-notify); the simulation derives it from the flags
 * (vmaPageProtWritable()), and existing ptes are left as they are, as in Linux.
 */
function userfaultfdSetCtx(vma: Vma, ctx: VmaUffdCtx, vmFlags: number): void {
  vma.uffdCtx = ctx;
  vma.flags = ((vma.flags & ~VM_UFFD_FLAGS) | vmFlags) >>> 0;
}

/** Mirrors mm/userfaultfd.c:userfaultfd_reset_ctx(): unregisters a vma without touching its ptes. */
export function userfaultfdResetCtx(vma: Vma): void {
  vma.flags = (vma.flags & ~VM_UFFD_FLAGS) >>> 0;
  vma.uffdCtx = null;
}

/**
 * Mirrors mm/userfaultfd.c:userfaultfd_register_range(): every vma in [start, end) gets exactly
 * the requested modes and this context, unless it already has this context and a superset of
 * the modes (then it is left unchanged). Vmas are split at the range ends and merged back where
 * the result allows. The caller has validated every vma.
 */
export function userfaultfdRegisterRange(ctx: UffdCtxRef, vmFlags: number, start: number, end: number): void {
  const mm = ctx.mm;
  for (const vma of mm.isolateRange(start, end)) {
    if (vma.uffdCtx === ctx && (vma.flags & vmFlags) === vmFlags) continue;
    userfaultfdSetCtx(vma, ctx, vmFlags);
  }
  mm.mergeRange(start, end);
}

/**
 * Mirrors mm/userfaultfd.c:userfaultfd_clear_vma() for a vma already isolated to the range:
 * uffd-wp is cleared from every pte (markers dropped), then the registration.
 */
export function userfaultfdClearVma(vma: Vma): void {
  // Release policy (5.7 – 5.18, MmRules.unregisterClearsUffdWp): before f369b07c8614 (6.0; in
  // 5.19.y, not in 5.10.y or 5.15.y) UFFDIO_UNREGISTER and the last close only reset the vma's
  // flags and context, and the ptes keep their uffd-wp bits.
  if (userfaultfdWp(vma) && vmaMm(vma).core.mmRules.unregisterClearsUffdWp) uffdWpRange(vma, vma.start, vma.end - vma.start, false);
  userfaultfdResetCtx(vma);
}

/**
 * Mirrors mm/userfaultfd.c:userfaultfd_release_all(): at the last close, every vma of the
 * context is unregistered (uffd-wp cleared) and merged where possible. Nothing to do once the
 * mm is gone.
 */
export function userfaultfdReleaseAll(mm: Mm, ctx: VmaUffdCtx): void {
  if (!mm.alive) return;
  const cleared: Vma[] = [];
  for (const vma of mm.vmas) {
    if (vma.uffdCtx !== ctx) continue;
    userfaultfdClearVma(vma);
    cleared.push(vma);
  }
  for (const vma of cleared) if (mm.hasVma(vma)) mm.mergeAround(vma);
}

/**
 * Mirrors fs/userfaultfd.c:userfaultfd_release_new(): a FORK context whose event was never
 * delivered; the child's vmas forget it (their ptes keep whatever uffd-wp they had).
 */
export function userfaultfdReleaseNew(mm: Mm, ctx: VmaUffdCtx): void {
  for (const vma of mm.vmas) if (vma.uffdCtx === ctx) userfaultfdResetCtx(vma);
}

/** Whether UNREGISTER must wake blocked faults of this vma (only MISSING mode does, see docs/linux-rules.md §8.7). */
export const unregisterWakes = userfaultfdMissing;
