/**
 * mremap(2). Mirrors mm/mremap.c (the 6.18 vma_remap_struct version, with the stable
 * "correctly account old mapping after MREMAP_DONTUNMAP" fix the host carries).
 *
 * do_mremap(): check_mremap_params() (no vma needed), then under the mmap write lock either
 * - a move-only request (MREMAP_FIXED, old_len == new_len): remap_move(), which may move several
 *   vmas at once, keeping the gaps between them; or
 * - one vma (the one containing addr): check_prep_vma(), then mremap_to() (FIXED or DONTUNMAP:
 *   unmap the target first, shrink if asked, move) or mremap_at() (no-op, shrink in place, grow
 *   in place, or move when MREMAP_MAYMOVE allows).
 *
 * A move (move_vma()) creates the new vma (copy_vma(), which may merge it with its new
 * neighbours), moves every pte as it is (present, swap, markers: rss, mapcount and refcount are
 * unchanged), tells userfaultfd (mremap_userfaultfd_prep() on the new vma: without
 * UFFD_FEATURE_EVENT_REMAP it is unregistered and move_ptes() has already cleared uffd-wp from
 * what it moved, on the releases that have 0cef0bb836e3: `mm.mremapClearsUffdWp`) and unmaps
 * the old range, unless MREMAP_DONTUNMAP keeps the old vma, empty.
 *
 * Userfaultfd events are sent after the lock is dropped, in this order (notify_uffd()): UNMAP of
 * the FIXED target, REMAP, then UNMAP of the shrunk tail or the old range (docs/linux-rules.md §8.15).
 */
import type { Process } from "../kernel/process.ts";
import { ErrnoError, type ErrnoCode } from "../uapi/errno.ts";
import { MREMAP_DONTUNMAP, MREMAP_FIXED, MREMAP_MAYMOVE, PAGE_SIZE } from "../uapi/mman.ts";
import { UFFD_FEATURE_EVENT_REMAP } from "../uapi/userfaultfd.ts";
import { type Mm, TASK_SIZE } from "./mm.ts";
import { PAGE_ALIGN, unmapRange, vmEnoughMemory } from "./mmap.ts";
import { isPteMarker, isSwapPte, MARKER_UFFD_WP, type Pte, PTE_UFFD_WP, PTRS_PER_PTE, ptePresent, SWP_UFFD_WP } from "./page-table.ts";
import { userfaultfdArmed, type Vma, VM_ACCOUNT, VM_DONTEXPAND, VM_MAYSHARE, VM_PFNMAP, VM_SHARED, vmaIsAnonymous } from "./vma.ts";

/** enum mremap_type. */
const REMAP = {
  NO_RESIZE: 1,
  SHRINK: 2,
  EXPAND: 3,
} as const;
type RemapType = (typeof REMAP)[keyof typeof REMAP];

/** Bytes a PTE table covers (PMD_SIZE). */
const PMD_SIZE = PTRS_PER_PTE * PAGE_SIZE;

/** struct vma_remap_struct: the request, rewritten as the operation proceeds. */
interface VmaRemap {
  addr: number;
  oldLen: number;
  newLen: number;
  readonly flags: number;
  newAddr: number;
  /** vm_userfaultfd_ctx filled by mremap_userfaultfd_prep(): the REMAP event to send, or null. */
  uf: unknown;
  readonly ufUnmapEarly: unknown[];
  readonly ufUnmap: unknown[];
  vma: Vma | null;
  delta: number;
  remapType: RemapType;
  /** CAP_SYS_RAWIO: may map below mmap_min_addr. */
  readonly rawio: boolean;
}

/** What the steps return: an address, or the errno that ends the call. */
type RemapResult = number | ErrnoCode;
const failed = (r: RemapResult): r is ErrnoCode => typeof r === "string";

/** Mirrors mm/mremap.c:do_mremap(). */
export async function sysMremap(proc: Process, addr: number, oldSize: number, newSize: number, flags: number, newAddr: number): Promise<number> {
  const mm = proc.mm;
  const vrm: VmaRemap = {
    addr,
    oldLen: sizeAlign(oldSize),
    newLen: sizeAlign(newSize),
    flags,
    newAddr,
    uf: null,
    ufUnmapEarly: [],
    ufUnmap: [],
    vma: null,
    delta: 0,
    remapType: REMAP.NO_RESIZE,
    rawio: proc.capable("CAP_SYS_RAWIO"),
  };
  const bad = checkMremapParams(vrm);
  if (bad !== null) throw new ErrnoError(bad, "mremap");
  let res: RemapResult;
  if (vrmMoveOnly(vrm)) {
    res = remapMove(mm, vrm);
  } else {
    vrm.vma = mm.vmaLookup(vrm.addr);
    const err = checkPrepVma(vrm);
    res = err ?? (vrmImpliesNewAddr(vrm) ? mremapTo(mm, vrm) : mremapAt(mm, vrm));
  }
  await notifyUffd(mm, vrm, res);
  if (failed(res)) throw new ErrnoError(res, "mremap");
  return res;
}

/** PAGE_ALIGN() of a size_t: a negative or fractional size is treated as past TASK_SIZE. */
function sizeAlign(size: number): number {
  return Number.isInteger(size) && size >= 0 ? PAGE_ALIGN(size) : 2 ** 64;
}

/** MREMAP_FIXED or MREMAP_DONTUNMAP: the caller picks (or hints) the target. */
const vrmImpliesNewAddr = (vrm: VmaRemap): boolean => (vrm.flags & (MREMAP_FIXED | MREMAP_DONTUNMAP)) !== 0;

/** vrm_move_only(): MREMAP_FIXED without a size change may span several vmas. */
const vrmMoveOnly = (vrm: VmaRemap): boolean => (vrm.flags & MREMAP_FIXED) !== 0 && vrm.oldLen === vrm.newLen;

/** Mirrors mm/mremap.c:check_mremap_params(): the checks that need no vma, in Linux's order. */
function checkMremapParams(vrm: VmaRemap): ErrnoCode | null {
  if ((vrm.flags & ~(MREMAP_FIXED | MREMAP_MAYMOVE | MREMAP_DONTUNMAP)) !== 0) return "EINVAL";
  if (!Number.isInteger(vrm.addr) || vrm.addr < 0 || vrm.addr % PAGE_SIZE !== 0) return "EINVAL";
  // A zero old_len is the "duplicate a shared mapping" special case; a zero new_len is nonsense.
  if (vrm.newLen === 0) return "EINVAL";
  if (vrm.newLen > TASK_SIZE) return "EINVAL";
  if (!vrmImpliesNewAddr(vrm)) return null;
  if (!Number.isInteger(vrm.newAddr) || vrm.newAddr < 0 || vrm.newAddr > TASK_SIZE - vrm.newLen) return "EINVAL";
  if (vrm.newAddr % PAGE_SIZE !== 0) return "EINVAL";
  if ((vrm.flags & MREMAP_MAYMOVE) === 0) return "EINVAL";
  if ((vrm.flags & MREMAP_DONTUNMAP) !== 0 && vrm.oldLen !== vrm.newLen) return "EINVAL";
  // vrm_overlaps(): the target must not overlap the source.
  if (vrm.addr + vrm.oldLen > vrm.newAddr && vrm.newAddr + vrm.newLen > vrm.addr) return "EINVAL";
  return null;
}

/**
 * Mirrors mm/mremap.c:check_prep_vma(): classifies the request and, when it maps new address
 * space (grow or move), checks the vma allows it.
 */
function checkPrepVma(vrm: VmaRemap): ErrnoCode | null {
  const vma = vrm.vma;
  if (vma === null) return "EFAULT";
  vrm.delta = Math.abs(vrm.oldLen - vrm.newLen);
  vrm.remapType = vrm.delta === 0 ? REMAP.NO_RESIZE : vrm.oldLen > vrm.newLen ? REMAP.SHRINK : REMAP.EXPAND;
  if (!vrmImpliesNewAddr(vrm)) vrm.newAddr = vrm.addr;
  if (vrm.remapType !== REMAP.EXPAND && !vrmImpliesNewAddr(vrm)) return null;
  // Duplicating a private mapping makes no sense (it would not share anything): refused.
  if (vrm.oldLen === 0 && (vma.flags & (VM_SHARED | VM_MAYSHARE)) === 0) return "EINVAL";
  if ((vrm.flags & MREMAP_DONTUNMAP) !== 0 && (vma.flags & (VM_DONTEXPAND | VM_PFNMAP)) !== 0) return "EINVAL";
  // A shrink may unmap across vma boundaries; what stays must lie in this vma.
  const oldLen = vrm.remapType === REMAP.SHRINK ? vrm.newLen : vrm.oldLen;
  if (oldLen > vma.end - vrm.addr) return "EFAULT";
  if (vrm.newLen === oldLen) return null;
  if ((vma.flags & (VM_DONTEXPAND | VM_PFNMAP)) !== 0) return "EFAULT";
  return null;
}

/** Mirrors mm/mremap.c:mremap_at(): resize where it is, moving only if it must and may. */
function mremapAt(mm: Mm, vrm: VmaRemap): RemapResult {
  switch (vrm.remapType) {
    case REMAP.NO_RESIZE:
      return vrm.addr;
    case REMAP.SHRINK: {
      const err = shrinkVma(mm, vrm, true);
      return err ?? vrm.addr;
    }
    case REMAP.EXPAND:
      return expandVma(mm, vrm);
  }
}

/**
 * Mirrors mm/mremap.c:shrink_vma(): unmaps [addr + new_len, addr + old_len) (any vmas there,
 * with UNMAP events). Without dropLock the vma at addr is looked up again.
 */
function shrinkVma(mm: Mm, vrm: VmaRemap, dropLock: boolean): ErrnoCode | null {
  const start = vrm.addr + vrm.newLen;
  const end = start + vrm.delta;
  mm.core.uffd.unmapPrep(mm, start, end, vrm.ufUnmap);
  unmapRange(mm, start, end);
  vrm.vma = dropLock ? null : mm.vmaLookup(vrm.addr);
  return dropLock || vrm.vma !== null ? null : "EFAULT";
}

/**
 * Mirrors mm/mremap.c:vrm_calc_charge(): an accounted (VM_ACCOUNT) mapping is charged the growth,
 * or its whole new length when MREMAP_DONTUNMAP keeps the old one, against the overcommit policy
 * (__vm_enough_memory()). Nothing is tracked between calls, as for mmap (see vmEnoughMemory()).
 */
function vrmCalcCharge(mm: Mm, vrm: VmaRemap): boolean {
  if (((vrm.vma as Vma).flags & VM_ACCOUNT) === 0) return true;
  const charged = (vrm.flags & MREMAP_DONTUNMAP) !== 0 ? vrm.newLen : vrm.newLen > vrm.oldLen ? vrm.delta : 0;
  return vmEnoughMemory(mm.core, charged / PAGE_SIZE);
}

/**
 * Mirrors mm/mremap.c:expand_vma(): grow in place when [addr, addr + old_len) ends the vma and
 * the space after it is free (vma_merge_extend() may then merge with the next vma); else move
 * with MREMAP_MAYMOVE, or ENOMEM.
 */
function expandVma(mm: Mm, vrm: VmaRemap): RemapResult {
  const vma = vrm.vma as Vma;
  if (vma.end - vrm.addr === vrm.oldLen) {
    const end = vma.end + vrm.delta;
    if (end <= TASK_SIZE && mm.vmasIn(vma.end, end).length === 0) {
      // expand_vma_in_place(): the growth is charged first.
      if (!vrmCalcCharge(mm, vrm)) return "ENOMEM";
      vma.end = end;
      vrm.vma = mm.mergeAround(vma);
      return vrm.addr;
    }
  }
  if ((vrm.flags & MREMAP_MAYMOVE) === 0) return "ENOMEM";
  const err = vrmSetNewAddr(mm, vrm);
  return err ?? moveVma(mm, vrm);
}

/**
 * Mirrors mm/mremap.c:mremap_to(): MREMAP_FIXED unmaps the target first (UNMAP events are sent
 * even if the call then fails), a shrink is applied before the move, then the vma moves.
 */
function mremapTo(mm: Mm, vrm: VmaRemap): RemapResult {
  if ((vrm.flags & MREMAP_FIXED) !== 0) {
    mm.core.uffd.unmapPrep(mm, vrm.newAddr, vrm.newAddr + vrm.newLen, vrm.ufUnmapEarly);
    unmapRange(mm, vrm.newAddr, vrm.newAddr + vrm.newLen);
    // The target may have been part of the source vma: look it up again.
    vrm.vma = mm.vmaLookup(vrm.addr);
    if (vrm.vma === null) return "EFAULT";
  }
  if (vrm.remapType === REMAP.SHRINK) {
    const err = shrinkVma(mm, vrm, false);
    if (err !== null) return err;
    vrm.oldLen = vrm.newLen;
  }
  const err = vrmSetNewAddr(mm, vrm);
  return err ?? moveVma(mm, vrm);
}

/**
 * Mirrors mm/mremap.c:vrm_set_new_addr(): get_unmapped_area() with MAP_FIXED for
 * MREMAP_FIXED (security_mmap_addr(): below mmap_min_addr needs CAP_SYS_RAWIO), with the
 * target as a hint for MREMAP_DONTUNMAP alone, and anywhere otherwise.
 */
function vrmSetNewAddr(mm: Mm, vrm: VmaRemap): ErrnoCode | null {
  if ((vrm.flags & MREMAP_FIXED) !== 0) return vrm.newAddr < mm.core.mmapMinAddr && !vrm.rawio ? "EPERM" : null;
  const hint = vrmImpliesNewAddr(vrm) ? vrm.newAddr : 0;
  const addr = mm.getUnmappedArea(vrm.newLen, hint);
  if (addr < 0) return "ENOMEM";
  vrm.newAddr = addr;
  return null;
}

/**
 * Mirrors mm/mremap.c:move_vma() and copy_vma_and_data(): new vma, ptes moved, userfaultfd
 * prep on the new vma, then the old range unmapped (or, with MREMAP_DONTUNMAP, kept empty).
 */
function moveVma(mm: Mm, vrm: VmaRemap): RemapResult {
  const vma = vrm.vma as Vma;
  if (!vrmCalcCharge(mm, vrm)) return "ENOMEM";
  const newVma = copyVma(mm, vma, vrm.newAddr, vrm.newLen, vma.pgoffOf(vrm.addr));
  // Release policy (5.7, 5.18): move_ptes() moves uffd-wp as it is until 0cef0bb836e3 (6.13, in
  // the stable series since), though the new vma loses its registration.
  const clearUffdWp = mm.core.mmRules.mremapClearsUffdWp && vmaHasUffdWithoutEventRemap(vma);
  movePageTables(mm, vrm.addr, vrm.newAddr, vrm.oldLen, clearUffdWp);
  vrm.uf = mm.core.uffd.mremapPrep(newVma);
  if ((vrm.flags & MREMAP_DONTUNMAP) !== 0) {
    dontunmapComplete(vrm, vma, newVma);
  } else if (vrm.oldLen > 0) {
    mm.core.uffd.unmapPrep(mm, vrm.addr, vrm.addr + vrm.oldLen, vrm.ufUnmap);
    unmapRange(mm, vrm.addr, vrm.addr + vrm.oldLen);
  }
  vrm.vma = null;
  return vrm.newAddr;
}

/**
 * Mirrors mm/vma.c:copy_vma(): a vma like the old one at the new place, merged with its new
 * neighbours where possible. An anonymous vma that never faulted takes the linear pgoff of its
 * new address (so it may merge there).
 */
function copyVma(mm: Mm, vma: Vma, addr: number, len: number, pgoff: number): Vma {
  const anonUnfaulted = vmaIsAnonymous(vma) && vma.anonVma === 0;
  const copy = vma.clone(addr, addr + len);
  copy.pgoff = anonUnfaulted ? addr / PAGE_SIZE : pgoff;
  mm.insertVma(copy);
  return mm.mergeAround(copy);
}

/** vma_has_uffd_without_event_remap() (include/linux/userfaultfd_k.h, 6.13): its uffd-wp state must not survive the move. */
function vmaHasUffdWithoutEventRemap(vma: Vma): boolean {
  const ctx = vma.uffdCtx;
  return ctx !== null && (ctx.features & UFFD_FEATURE_EVENT_REMAP) === 0;
}

/**
 * Mirrors mm/mremap.c:dontunmap_complete(): the old vma stays (keeping VM_ACCOUNT, per the
 * stable fix on the host) and, if it moved whole, drops its anon_vma (unlink_anon_vmas()).
 */
function dontunmapComplete(vrm: VmaRemap, old: Vma, newVma: Vma): void {
  if (newVma !== old && vrm.addr === old.start && vrm.addr + vrm.oldLen === old.end) old.anonVma = 0;
}

/**
 * Mirrors mm/mremap.c:move_page_tables() and move_ptes(): moves every pte of
 * [oldAddr, oldAddr + len) to the same offset at newAddr, extent by extent (an extent never
 * crosses a PMD boundary on either side). An extent whose PMD has no table is skipped; a whole
 * aligned table moves as one (move_normal_pmd(), x86 CONFIG_HAVE_MOVE_PMD) unless uffd-wp must
 * be cleared; otherwise each pte moves, and with clearUffdWp a uffd-wp marker is dropped and the
 * bit cleared from present and swap ptes.
 */
function movePageTables(mm: Mm, oldAddr: number, newAddr: number, len: number, clearUffdWp: boolean): void {
  const pt = mm.pt;
  for (let done = 0; done < len; ) {
    const o = oldAddr + done;
    const n = newAddr + done;
    const extent = Math.min(len - done, PMD_SIZE - (o % PMD_SIZE), PMD_SIZE - (n % PMD_SIZE));
    done += extent;
    const oVpn = o / PAGE_SIZE;
    const nVpn = n / PAGE_SIZE;
    if (!pt.hasTable(oVpn)) continue;
    if (extent === PMD_SIZE && !clearUffdWp && !pt.hasTable(nVpn)) {
      const table = pt.tables.get(oVpn / PTRS_PER_PTE) as Uint32Array;
      pt.tables.delete(oVpn / PTRS_PER_PTE);
      pt.tables.set(nVpn / PTRS_PER_PTE, table);
      continue;
    }
    const src = pt.table(oVpn);
    const dst = pt.table(nVpn);
    const so = oVpn % PTRS_PER_PTE;
    const dOff = nVpn % PTRS_PER_PTE;
    for (let i = 0; i < extent / PAGE_SIZE; i++) {
      const pte = src[so + i] as Pte;
      if (pte === 0) continue;
      src[so + i] = 0;
      dst[dOff + i] = clearUffdWp ? pteClearUffdWpAny(pte) : pte;
    }
  }
}

/** move_ptes()'s uffd-wp clearing: a uffd-wp marker becomes none; the bit leaves present and swap ptes. */
function pteClearUffdWpAny(pte: Pte): Pte {
  if (isPteMarker(pte)) return (pte & MARKER_UFFD_WP) !== 0 ? 0 : pte;
  if (ptePresent(pte)) return (pte & ~PTE_UFFD_WP) >>> 0;
  if (isSwapPte(pte)) return (pte & ~SWP_UFFD_WP) >>> 0;
  return pte;
}

/**
 * Mirrors mm/mremap.c:remap_move(): a move-only request may cover several vmas; each part moves
 * on its own, the gaps between source vmas are kept in the target, and the result is where the
 * first part went. A gap at the start is EFAULT; a userfaultfd-armed vma may only be moved
 * alone (notifying it needs the lock dropped), else EFAULT, possibly after earlier parts moved.
 */
function remapMove(mm: Mm, vrm: VmaRemap): RemapResult {
  const start = vrm.addr;
  const end = start + vrm.oldLen;
  let targetAddr = vrm.newAddr;
  let res: RemapResult = "EFAULT";
  let lastEnd = 0;
  let seen = false;
  for (let cursor = start; cursor < end; ) {
    const vma = mm.findVma(cursor);
    if (vma === null || vma.start >= end) break;
    if (!seen && start < vma.start) return "EFAULT";
    const addr = Math.max(vma.start, start);
    const len = Math.min(end, vma.end) - addr;
    const offset = seen ? vma.start - lastEnd : 0;
    lastEnd = vma.end;
    Object.assign(vrm, { vma, addr, newAddr: targetAddr + offset, oldLen: len, newLen: len });
    if (userfaultfdArmed(vma) && (seen || vma.end < end)) return "EFAULT";
    const r = checkPrepVma(vrm) ?? mremapTo(mm, vrm);
    if (failed(r)) return r;
    if (!seen) res = r;
    seen = true;
    targetAddr = r + vrm.newLen;
    cursor = addr + len;
  }
  return res;
}

/**
 * Mirrors mm/mremap.c:notify_uffd(): UNMAP events of the FIXED target, then REMAP (or, on
 * failure, the prep is undone), then UNMAP of the tail or the old range. Each waits until read.
 */
async function notifyUffd(mm: Mm, vrm: VmaRemap, res: RemapResult): Promise<void> {
  const hooks = mm.core.uffd;
  await hooks.unmapComplete(mm, vrm.ufUnmapEarly);
  // A `to` that is not page-aligned tells mremapComplete the call failed (Linux passes -errno).
  if (vrm.uf !== null) await hooks.mremapComplete(vrm.uf, vrm.addr, failed(res) ? -1 : vrm.newAddr, vrm.oldLen);
  await hooks.unmapComplete(mm, vrm.ufUnmap);
}
