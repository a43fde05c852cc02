/**
 * /proc/pid/pagemap as an open file and its PAGEMAP_SCAN ioctl. Mirrors fs/proc/task_mmu.c:
 * do_pagemap_scan(), pagemap_scan_get_args(), pagemap_scan_test_walk(),
 * pagemap_page_category(), pagemap_scan_pmd_entry(), pagemap_scan_pte_hole(),
 * pagemap_scan_output() / pagemap_scan_push_range() and pagemap_scan_flush_buffer(), as the
 * 6.18.44 reference host runs them: with the stable fixes that report a none pte in a populated
 * page table as WRITTEN (in any vma) and a page-table hole as WRITTEN in a uffd-wp vma.
 *
 * Output goes through a bounce buffer of at most 512 regions, flushed to the user's vector each
 * time it fills, after which the walk restarts at `walk_end`. That is visible in one place, as
 * on the host: once the buffer has filled, `walk_end` keeps the restart address even if the
 * scan then runs to `end`.
 */
import { u64Value } from "../uapi/abi.ts";
import type { Process } from "../kernel/process.ts";
import { userfaultfdWpAsync, userfaultfdWpUseMarkers, vmNormalPfn } from "../mm/memory.ts";
import type { Mm } from "../mm/mm.ts";
import { TASK_SIZE } from "../mm/mm.ts";
import {
  isPteMarker,
  isSwapPte,
  MARKER_GUARD,
  MARKER_UFFD_WP,
  mkMarker,
  type Pte,
  pteMkuffdWp,
  ptePresent,
  pteSpecial,
  pteUffdWp,
  PTRS_PER_PTE,
  SWP_UFFD_WP,
} from "../mm/page-table.ts";
import { uffdWpRange } from "../mm/userfaultfd.ts";
import { userfaultfdWp, type Vma, VM_PFNMAP } from "../mm/vma.ts";
import { type ErrnoCode, ErrnoError } from "../uapi/errno.ts";
import { O_RDONLY } from "../uapi/fcntl.ts";
import { PAGE_SIZE } from "../uapi/mman.ts";
import {
  PAGE_IS_FILE,
  PAGE_IS_GUARD,
  PAGE_IS_PFNZERO,
  PAGE_IS_PRESENT,
  PAGE_IS_SWAPPED,
  PAGE_IS_WPALLOWED,
  PAGE_IS_WRITTEN,
  PAGEMAP_SCAN,
  type PageRegion,
  PM_SCAN_CHECK_WPASYNC,
  PM_SCAN_WP_MATCHING,
} from "../uapi/userfaultfd.ts";
import { type FileOps, OpenFile } from "./file.ts";

/** sizeof(struct pm_scan_arg). */
const PM_SCAN_ARG_SIZE = 96;
const PM_SCAN_FLAGS = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC;
/** Every category 6.18 knows (PAGE_IS_WPALLOWED .. PAGE_IS_GUARD). */
const PM_SCAN_CATEGORIES = 0x1ff;
/** PAGEMAP_WALK_SIZE >> PAGE_SHIFT: regions the bounce buffer holds. */
const BOUNCE_REGIONS = 512;
/** Internal: the walk stopped because the output is full (-ENOSPC in Linux). */
const ENOSPC = -28;
const EPERM = -1;

function fail(code: ErrnoCode): never {
  throw new ErrnoError(code, "ioctl", "PAGEMAP_SCAN");
}

/** struct pagemap_scan_private. */
interface ScanState {
  readonly mm: Mm;
  readonly flags: number;
  readonly start: number;
  readonly end: number;
  readonly maxPages: number;
  readonly inverted: number;
  readonly mask: number;
  readonly anyof: number;
  readonly returnMask: number;
  readonly masksOfInterest: number;
  walkEnd: number;
  /** vec_len: regions the user vector can still take. */
  vecLen: number;
  /** The user vector, or null (vec == 0). */
  readonly out: PageRegion[] | null;
  /** A bounce buffer exists (vec_len != 0 at the start): otherwise nothing is output or limited. */
  readonly hasBuf: boolean;
  outIndex: number;
  /** The bounce buffer (vec_buf); its last entry is the region being extended. */
  buf: PageRegion[];
  bufLen: number;
  foundPages: number;
  curVmaCategory: number;
}

/** A __u64 field of the struct (copy_from_user: anything else is EFAULT). */
function u64(o: Record<string, unknown>, key: string): number {
  const v = u64Value(o[key]);
  return Number.isNaN(v) ? fail("EFAULT") : v;
}

const outside = (v: number, allowed: number): boolean => v >= 0x1_0000_0000 || ((v >>> 0) & ~allowed) !== 0;

/** Mirrors fs/proc/task_mmu.c:pagemap_scan_get_args(), in its order. */
function pagemapScanGetArgs(mm: Mm, arg: object): ScanState {
  if (typeof arg !== "object" || arg === null) fail("EFAULT");
  const a = arg as Record<string, unknown>;
  const size = u64(a, "size");
  const flags = u64(a, "flags");
  const start = u64(a, "start");
  const end = u64(a, "end");
  const vecLen = u64(a, "vecLen");
  const maxPages = u64(a, "maxPages");
  const inverted = u64(a, "categoryInverted");
  const mask = u64(a, "categoryMask");
  const anyof = u64(a, "categoryAnyofMask");
  const returnMask = u64(a, "returnMask");
  const vec = a.vec;
  if (vec !== null && !Array.isArray(vec)) fail("EFAULT");
  if (size !== PM_SCAN_ARG_SIZE) fail("EINVAL");
  if (outside(flags, PM_SCAN_FLAGS)) fail("EINVAL");
  if ([inverted, mask, anyof, returnMask].some((m) => outside(m, PM_SCAN_CATEGORIES))) fail("EINVAL");
  if (start % PAGE_SIZE !== 0) fail("EINVAL");
  // access_ok(start, end - start): the u64 length wraps when end < start.
  if (end < start || end > TASK_SIZE) fail("EFAULT");
  if (vec === null && vecLen !== 0) fail("EINVAL");
  return {
    mm,
    flags,
    start,
    end: Math.ceil(end / PAGE_SIZE) * PAGE_SIZE,
    maxPages: maxPages === 0 ? Number.POSITIVE_INFINITY : maxPages,
    inverted,
    mask,
    anyof,
    returnMask,
    masksOfInterest: mask | anyof | returnMask,
    walkEnd: 0,
    vecLen: vec === null ? 0 : vecLen,
    out: vec as PageRegion[] | null,
    hasBuf: vec !== null && vecLen !== 0,
    outIndex: 0,
    buf: [{ start: 0, end: 0, categories: 0 }],
    bufLen: vec === null ? 0 : Math.min(BOUNCE_REGIONS, vecLen),
    foundPages: 0,
    curVmaCategory: 0,
  };
}

/**
 * Mirrors fs/proc/task_mmu.c:do_pagemap_scan(). Returns the number of regions written to
 * `vec`; writes `walkEnd`. Errors after the walk started (EPERM) still flush the regions found
 * and write walkEnd.
 */
export function doPagemapScan(mm: Mm, arg: object): number {
  const p = pagemapScanGetArgs(mm, arg);
  let ret = 0;
  let nOut = 0;
  for (let walkStart = p.start; walkStart < p.end; walkStart = p.walkEnd) {
    ret = walkPageRange(p, walkStart, p.end);
    nOut += pagemapScanFlushBuffer(p);
    if (ret !== ENOSPC) break;
    if (p.vecLen === 0 || p.foundPages === p.maxPages) break;
  }
  if (p.walkEnd === 0) p.walkEnd = p.end;
  try {
    (arg as { walkEnd?: number }).walkEnd = p.walkEnd;
  } catch {
    fail("EFAULT");
  }
  if (ret === EPERM) fail("EPERM");
  return nOut;
}

/** walk_page_range() with pagemap_scan_ops: per vma test_walk, then pmd entries and pte holes. */
function walkPageRange(p: ScanState, start: number, end: number): number {
  const span = PTRS_PER_PTE * PAGE_SIZE;
  for (const vma of p.mm.vmasIn(start, end)) {
    const t = pagemapScanTestWalk(p, vma);
    if (t < 0) return t;
    if (t > 0) continue;
    const to = Math.min(end, vma.end);
    for (let addr = Math.max(start, vma.start); addr < to; ) {
      const next = Math.min(to, (Math.floor(addr / span) + 1) * span);
      const err = p.mm.pt.hasTable(addr / PAGE_SIZE) ? pagemapScanPmdEntry(p, addr, next) : pagemapScanPteHole(p, vma, addr, next);
      if (err !== 0) return err;
      addr = next;
    }
  }
  return 0;
}

/** Mirrors fs/proc/task_mmu.c:pagemap_scan_test_walk(): 0 walk, 1 skip, <0 fail. */
function pagemapScanTestWalk(p: ScanState, vma: Vma): number {
  const wpAllowed = userfaultfdWpAsync(vma) && userfaultfdWpUseMarkers(vma);
  if (!wpAllowed) {
    // An explicit request to fail over a vma without async write protection.
    if ((p.flags & PM_SCAN_CHECK_WPASYNC) !== 0) return EPERM;
    // Write protection requested: such vmas are skipped silently.
    if ((p.flags & PM_SCAN_WP_MATCHING) !== 0) return 1;
  }
  if ((vma.flags & VM_PFNMAP) !== 0) return 1;
  const vmaCategory = wpAllowed ? PAGE_IS_WPALLOWED : 0;
  const required = p.mask & PAGE_IS_WPALLOWED;
  if (((vmaCategory ^ p.inverted) & required) !== required) return 1;
  p.curVmaCategory = vmaCategory;
  return 0;
}

/** Mirrors fs/proc/task_mmu.c:pagemap_scan_is_interesting_page(). */
function isInterestingPage(p: ScanState, categories: number): boolean {
  const c = categories ^ p.inverted;
  if ((c & p.mask) !== p.mask) return false;
  return p.anyof === 0 || (c & p.anyof) !== 0;
}

/**
 * Mirrors fs/proc/task_mmu.c:pagemap_page_category(). A none pte reads as WRITTEN (the host's
 * stable fix "fix PAGEMAP_SCAN written state for unpopulated ptes"). The host has no
 * CONFIG_MEM_SOFT_DIRTY, so PAGE_IS_SOFT_DIRTY is never set.
 */
function pagemapPageCategory(p: ScanState, pte: Pte): number {
  if (pte === 0) return PAGE_IS_WRITTEN;
  if (ptePresent(pte)) {
    let c = PAGE_IS_PRESENT;
    if (!pteUffdWp(pte)) c |= PAGE_IS_WRITTEN;
    if ((p.masksOfInterest & PAGE_IS_FILE) !== 0) {
      const pfn = vmNormalPfn(pte);
      if (pfn >= 0 && !p.mm.core.mem.folioTestAnon(pfn)) c |= PAGE_IS_FILE;
    }
    if (pteSpecial(pte)) c |= PAGE_IS_PFNZERO;
    return c;
  }
  // Swap entries and every pte marker are swap-type entries.
  let c = PAGE_IS_SWAPPED;
  if (!pteUffdWp(pte)) c |= PAGE_IS_WRITTEN;
  if (isPteMarker(pte) && (pte & MARKER_GUARD) !== 0) c |= PAGE_IS_GUARD;
  return c;
}

/** Mirrors fs/proc/task_mmu.c:make_uffd_wp_pte(): present, swap (markers included) or none. */
function makeUffdWpPte(pte: Pte): Pte {
  if (ptePresent(pte)) return pteMkuffdWp(pte);
  if (isPteMarker(pte)) return (pte | MARKER_UFFD_WP) >>> 0;
  if (isSwapPte(pte)) return (pte | SWP_UFFD_WP) >>> 0;
  return mkMarker(MARKER_UFFD_WP);
}

/** Mirrors fs/proc/task_mmu.c:pagemap_scan_pmd_entry() for a populated page table. */
function pagemapScanPmdEntry(p: ScanState, start: number, end: number): number {
  const pt = p.mm.pt;
  const wp = (p.flags & PM_SCAN_WP_MATCHING) !== 0;
  if (wp && !p.hasBuf) {
    // Fast path of exclusive write protection: every pte not yet protected, masks unconsulted.
    for (let addr = start; addr < end; addr += PAGE_SIZE) {
      const pte = pt.get(addr / PAGE_SIZE);
      if (!pteUffdWp(pte)) pt.set(addr / PAGE_SIZE, makeUffdWpPte(pte));
    }
    return 0;
  }
  let ret = 0;
  for (let addr = start; addr < end; addr += PAGE_SIZE) {
    const pte = pt.get(addr / PAGE_SIZE);
    const categories = p.curVmaCategory | pagemapPageCategory(p, pte);
    if (!isInterestingPage(p, categories)) continue;
    const out = pagemapScanOutput(p, categories, addr, addr + PAGE_SIZE);
    ret = out.ret;
    if (out.end === addr) break;
    if (!wp || (categories & PAGE_IS_WRITTEN) === 0) continue;
    pt.set(addr / PAGE_SIZE, makeUffdWpPte(pte));
  }
  return ret;
}

/**
 * Mirrors fs/proc/task_mmu.c:pagemap_scan_pte_hole() with the host's PMD-hole fix: a range
 * without a page table is the vma category, plus WRITTEN in a uffd-wp vma. Write protecting
 * it allocates page tables and installs markers (uffd_wp_range()).
 */
function pagemapScanPteHole(p: ScanState, vma: Vma, addr: number, end: number): number {
  const categories = p.curVmaCategory | (userfaultfdWp(vma) ? PAGE_IS_WRITTEN : 0);
  if (!isInterestingPage(p, categories)) return 0;
  const out = pagemapScanOutput(p, categories, addr, end);
  if (out.end === addr || (p.flags & PM_SCAN_WP_MATCHING) === 0) return out.ret;
  uffdWpRange(vma, addr, out.end - addr, true);
  return out.ret;
}

/**
 * Mirrors fs/proc/task_mmu.c:pagemap_scan_output(): records [addr, end) with the categories
 * masked by return_mask, truncated to max_pages; ENOSPC (and walk_end set) when the output is
 * full. Without a vector nothing is recorded and nothing limits the walk.
 */
function pagemapScanOutput(p: ScanState, categories: number, addr: number, end: number): { ret: number; end: number } {
  if (!p.hasBuf) return { ret: 0, end };
  const masked = categories & p.returnMask;
  let nPages = (end - addr) / PAGE_SIZE;
  let ret = 0;
  if (p.foundPages + nPages > p.maxPages) {
    const tooMuch = p.foundPages + nPages - p.maxPages;
    end -= tooMuch * PAGE_SIZE;
    nPages -= tooMuch;
    ret = ENOSPC;
  }
  if (!pagemapScanPushRange(p, masked, addr, end)) {
    end = addr;
    nPages = 0;
    ret = ENOSPC;
  }
  p.foundPages += nPages;
  if (ret !== 0) p.walkEnd = end;
  return { ret, end };
}

/** Mirrors fs/proc/task_mmu.c:pagemap_scan_push_range(): extend the current region or open one. */
function pagemapScanPushRange(p: ScanState, categories: number, addr: number, end: number): boolean {
  let cur = p.buf[p.buf.length - 1]!;
  if (addr === cur.end && categories === cur.categories) {
    cur.end = end;
    return true;
  }
  if (cur.end !== 0) {
    if (p.buf.length >= p.bufLen) return false;
    cur = { start: 0, end: 0, categories: 0 };
    p.buf.push(cur);
  }
  cur.start = addr;
  cur.end = end;
  cur.categories = categories;
  return true;
}

/** Mirrors fs/proc/task_mmu.c:pagemap_scan_flush_buffer(): copies the finished regions out. */
function pagemapScanFlushBuffer(p: ScanState): number {
  if (!p.hasBuf) return 0;
  let n = p.buf.length - 1;
  const last = p.buf[n]!;
  if (last.end !== last.start) n++;
  if (n === 0) return 0;
  for (let i = 0; i < n; i++) {
    const r = p.buf[i]!;
    p.out![p.outIndex++] = { start: r.start, end: r.end, categories: r.categories };
  }
  p.vecLen -= n;
  p.bufLen = Math.min(p.bufLen, p.vecLen);
  p.buf = [{ start: 0, end: 0, categories: last.categories }];
  return n;
}

/** An open /proc/<pid>/pagemap: the target's mm (taken at open, as proc_mem_open() does). */
export class PagemapFileOps implements FileOps {
  readonly name: string;
  readonly mm: Mm;

  constructor(pid: number, mm: Mm) {
    this.name = `/proc/${pid}/pagemap`;
    this.mm = mm;
  }

  /** Mirrors fs/proc/task_mmu.c:do_pagemap_cmd(): PAGEMAP_SCAN, anything else EINVAL. */
  async ioctl(_file: OpenFile, proc: Process, request: number, arg: object): Promise<number> {
    // Release policy (5.7-6.6): PAGEMAP_SCAN came in 6.7; before it pagemap's file_operations
    // have no unlocked_ioctl and vfs_ioctl() answers ENOTTY.
    if (!proc.kernel.core.profile.pagemapScan) throw new ErrnoError("ENOTTY", "ioctl");
    if (request >>> 0 !== PAGEMAP_SCAN) throw new ErrnoError("EINVAL", "ioctl");
    return doPagemapScan(this.mm, arg);
  }
}

/**
 * open("/proc/<pid>/pagemap", O_RDONLY). The target must exist (ENOENT); another user's process
 * needs CAP_SYS_PTRACE (a simplified PTRACE_MODE_READ check: EACCES).
 */
export function sysOpenPagemap(proc: Process, pid: number): number {
  const target = pid === proc.pid ? proc : proc.kernel.processes.get(pid);
  if (target === undefined) throw new ErrnoError("ENOENT", "openat");
  if (target.creds.uid !== proc.creds.uid && !proc.capable("CAP_SYS_PTRACE")) throw new ErrnoError("EACCES", "openat");
  return proc.fds.install(new OpenFile(new PagemapFileOps(target.pid, target.mm), O_RDONLY), 0, "openat");
}
