/**
 * get_user_pages / pin_user_pages, and their users: vmsplice(2) (page references), io_uring
 * fixed buffers and the gup_test pin (long-term FOLL_PIN). Mirrors mm/gup.c
 * (__get_user_pages(), follow_page_pte(), faultin_page(), check_vma_flags()),
 * mm/internal.h:gup_must_unshare(), fs/splice.c (vmsplice_to_pipe(), iter_to_pipe(),
 * vmsplice_to_user()), io_uring/rsrc.c (io_buffer_validate(), io_pin_pages()) and
 * mm/gup_test.c (PIN_LONGTERM_TEST_START/READ/STOP).
 *
 * The walk, per page: look the pte up (follow_page_pte); if it does not allow the access, fault
 * it in through handle_mm_fault() and look again. The access a pte must allow:
 * - present (a swap entry, marker or hole is faulted in for read, or for write with FOLL_WRITE);
 * - writable for FOLL_WRITE (a write fault breaks COW first, or raises a WP userfault);
 * - for a read-only FOLL_PIN, "not shared": gup_must_unshare() sends a non-exclusive anon page
 *   (and, for FOLL_LONGTERM in a COW mapping, a file or zero page) through FAULT_FLAG_UNSHARE,
 *   so the pinned page is the one the page table keeps mapping (PageAnonExclusive).
 * A userfault sleeps (VM_FAULT_RETRY: await vmf.waiter) and the walk resumes at that page.
 *
 * References vs pins (struct page refcount): FOLL_GET adds 1; FOLL_PIN adds
 * GUP_PIN_COUNTING_BIAS (folioPin) and sets MMF_HAS_PINNED, which makes fork copy a
 * maybe-pinned exclusive page instead of sharing it. Neither touches the zero page's count: a
 * pin on it is not taken at all (try_grab_folio()), and the simulation never counts get_page()
 * on it either.
 *
 * GUP-fast (pin_user_pages_fast) has the same outcome as the slow path here: whenever the
 * lockless walk would need a fault, an unshare, or a vma for a long-term pin of a non-anon page,
 * Linux falls back to the slow path, and the simulation has no concurrent unmapping for the fast
 * path to race with.
 */
import { DeadTaskError } from "../kernel/access.ts";

import type { Process } from "../kernel/process.ts";
import { COST } from "../kernel/sched.ts";
import { BUG, BUG_ON } from "../lib/assert.ts";
import { getPipeInfo, PIPE_BUF_FLAG, type PipeInodeInfo, MAX_RW_COUNT } from "../fs/pipe.ts";
import { ErrnoError, type ErrnoCode } from "../uapi/errno.ts";
import { SPLICE_F_GIFT, SPLICE_F_MORE, SPLICE_F_MOVE, SPLICE_F_NONBLOCK } from "../uapi/fcntl.ts";
import { PAGE_SIZE } from "../uapi/mman.ts";
import { PG, type PhysMem, type Pfn } from "./folio.ts";
import {
  FAULT_FLAG_UNSHARE,
  FAULT_FLAG_WRITE,
  handleMmFault,
  VM_FAULT_HWPOISON,
  VM_FAULT_OOM,
  VM_FAULT_RETRY,
  VM_FAULT_SIGBUS,
  VM_FAULT_SIGSEGV,
  VmFault,
  vmNormalPfn,
} from "./memory.ts";
import { type Mm, type RefHolder, TASK_SIZE } from "./mm.ts";
import type { CowPolicy } from "../kernel/release.ts";
import { type Pte, pteDirty, ptePresent, pteWrite } from "./page-table.ts";
import { isCowMapping, type Vma, VM_IO, VM_PFNMAP, VM_READ, VM_WRITE } from "./vma.ts";

/** enum foll_flags (include/linux/mm_types.h) and the internal ones of mm/internal.h we use. */
export const FOLL = {
  WRITE: 1 << 0,
  GET: 1 << 1,
  LONGTERM: 1 << 8,
  /** Internal: pin_user_pages*() (mutually exclusive with GET). */
  PIN: 1 << 17,
  /** Internal: mark the page accessed, and dirty for a write through a clean pte (follow_page_pte()). */
  TOUCH: 1 << 18,
} as const;

/** What a GUP walk got: the frames (each with a reference or pin taken), and why it stopped early. */
export interface GupResult {
  pfns: Pfn[];
  /** null when all pages were taken; otherwise the errno of the page it stopped at. */
  err: ErrnoCode | null;
}

/** How often one page may be faulted without progress before it is a kernel bug. */
const FAULT_SPINS_MAX = 16;
/** follow_page_pte() results besides a pfn. */
const FOLLOW_FAULT = -1;
const FOLLOW_UNSHARE = -2;

/** Mirrors mm/gup.c:check_vma_flags() for the vmas the simulation has (no FOLL_FORCE). */
function checkVmaFlags(vma: Vma, gupFlags: number): ErrnoCode | null {
  if ((vma.flags & (VM_IO | VM_PFNMAP)) !== 0) return "EFAULT";
  // writable_file_mapping_allowed() holds for shmem, the only file memory simulated.
  if ((gupFlags & FOLL.WRITE) !== 0) return (vma.flags & VM_WRITE) === 0 ? "EFAULT" : null;
  return (vma.flags & VM_READ) === 0 ? "EFAULT" : null;
}

/**
 * Mirrors mm/internal.h:gup_must_unshare(), asked for a pte that is not writable: only a
 * read-only FOLL_PIN cares. An anon page must be PageAnonExclusive; a file or zero page must be
 * COWed first only for a long-term pin in a COW mapping (a short-term R/O pin has no semantics
 * of observing later changes through the page table).
 */
export function gupMustUnshare(mem: PhysMem, vma: Vma, gupFlags: number, pfn: Pfn, cow: CowPolicy): boolean {
  if ((gupFlags & (FOLL.WRITE | FOLL.PIN)) !== FOLL.PIN) return false;
  // Release policy (5.7 – 6.1), CowPolicy.pinUnshare:
  // - before 5.19 ("none"; 5.7 – 5.18): a R/O pin takes whatever page is mapped,
  //   shared or not; the next write fault may replace it (a7f226604170 added unsharing);
  // - 5.19 – 6.1 ("anon"): only anonymous pages are unshared; a R/O long-term pin of the zero
  //   page or a page-cache page in a COW mapping is taken as is (84209e87c696 is 6.2).
  if (cow.pinUnshare === "none") return false;
  if (!mem.folioTestAnon(pfn)) {
    if ((gupFlags & FOLL.LONGTERM) === 0 || cow.pinUnshare !== "cow_mapping") return false;
    return isCowMapping(vma.flags);
  }
  return !mem.pageAnonExclusive(pfn);
}

/**
 * Mirrors mm/gup.c:follow_page_pte(): the page the pte maps if it allows this access, else
 * FOLLOW_FAULT (not present, or not writable for FOLL_WRITE) or FOLLOW_UNSHARE (-EMLINK).
 */
function followPagePte(mm: Mm, vma: Vma, vpn: number, gupFlags: number): number {
  const pte = mm.pt.get(vpn);
  if (!ptePresent(pte)) return FOLLOW_FAULT;
  if ((gupFlags & FOLL.WRITE) !== 0 && !pteWrite(pte)) return FOLLOW_FAULT;
  const normal = vmNormalPfn(pte);
  const pfn = normal >= 0 ? normal : mm.core.mem.zeroPfn;
  if (!pteWrite(pte) && gupMustUnshare(mm.core.mem, vma, gupFlags, pfn, mm.core.cow)) return FOLLOW_UNSHARE;
  return pfn;
}

/**
 * Mirrors mm/gup.c:try_grab_folio() plus follow_page_pte()'s FOLL_TOUCH step: a write through a
 * pte that is not dirty marks a folio that is not dirty either (folio_mark_dirty(), anon or not).
 * GUP-fast (gup_fast_pte_range()) takes no FOLL_TOUCH and leaves the folio alone [host:
 * kpageflags after an io_uring buffer registration of a clean MADV_FREE page: dirty 0, after
 * MADV_POPULATE_WRITE of the same: dirty 1].
 */
function tryGrabFolio(mm: Mm, pfn: Pfn, pte: Pte, gupFlags: number): void {
  const mem = mm.core.mem;
  if (pfn === mem.zeroPfn) return;
  if ((gupFlags & FOLL.PIN) !== 0) {
    // sanity_check_pinned_pages() (5.19 on): only exclusive anon pages are pinned. Before 5.19
    // a R/O pin takes a shared page as it is (gupMustUnshare()).
    BUG_ON(mm.core.cow.era === "anon_exclusive" && mem.folioTestAnon(pfn) && !mem.pageAnonExclusive(pfn), `pinning non-exclusive anon pfn ${pfn}`);
    mem.folioPin(pfn);
  } else {
    mem.folioGet(pfn);
  }
  if ((gupFlags & (FOLL.TOUCH | FOLL.WRITE)) === (FOLL.TOUCH | FOLL.WRITE) && !pteDirty(pte)) mem.setFlag(pfn, PG.dirty);
}

/** Mirrors include/linux/mm.h:vm_fault_to_errno() (no FOLL_HWPOISON). */
function vmFaultToErrno(ret: number): ErrnoCode | null {
  if ((ret & VM_FAULT_OOM) !== 0) return "ENOMEM";
  if ((ret & (VM_FAULT_HWPOISON | VM_FAULT_SIGBUS | VM_FAULT_SIGSEGV)) !== 0) return "EFAULT";
  return null;
}

/**
 * Mirrors mm/gup.c:faultin_page(): a kernel-mode fault (no FAULT_FLAG_USER) for write, or with
 * FAULT_FLAG_UNSHARE (sanitize_fault_flags() drops it outside COW mappings). Returns null when
 * the fault was handled (look again), or an errno. A userfault sleeps here until woken.
 */
async function faultinPage(proc: Process, vma: Vma, addr: number, gupFlags: number, unshare: boolean): Promise<ErrnoCode | null> {
  let flags = 0;
  if ((gupFlags & FOLL.WRITE) !== 0) flags |= FAULT_FLAG_WRITE;
  if (unshare && isCowMapping(vma.flags)) flags |= FAULT_FLAG_UNSHARE;
  const vmf = new VmFault(proc.mm, vma, addr, flags, proc.mainThread);
  proc.kernel.sched.charge(COST.fault);
  const ret = handleMmFault(vmf);
  if (ret === 0) return null;
  if ((ret & VM_FAULT_RETRY) !== 0) {
    const ctx = proc.accessContext(proc.mainThread);
    if (vmf.waiter !== null) await Promise.race([vmf.waiter, ctx.killed]);
    return proc.exited ? "EINTR" : null;
  }
  const err = vmFaultToErrno(ret);
  if (err === null) BUG(`unexpected fault result 0x${ret.toString(16)} in GUP`);
  return err;
}

/**
 * Mirrors mm/gup.c:__get_user_pages() (as get_user_pages() / pin_user_pages() drive it):
 * takes a reference (FOLL_GET) or a pin (FOLL_PIN) on each of `nrPages` pages from the page
 * containing `start`, faulting them in as needed. Stops at the first page it cannot get (no vma,
 * vma flags, fault error, or the process died while a userfault slept: EINTR) and reports what
 * it got, as Linux returns the count or, for the first page, the error.
 */
export async function getUserPages(proc: Process, start: number, nrPages: number, gupFlags: number, fast = false): Promise<GupResult> {
  BUG_ON(((gupFlags & FOLL.PIN) !== 0) === ((gupFlags & FOLL.GET) !== 0), "GUP needs exactly one of FOLL_GET and FOLL_PIN");
  const mm = proc.mm;
  if ((gupFlags & FOLL.PIN) !== 0) mm.hasPinned = true; // mm_set_has_pinned_flag()
  // get_user_pages() adds FOLL_TOUCH; pin_user_pages() does not; the fast variants add it only
  // for their slow-path fallback.
  let touch = (gupFlags & FOLL.GET) !== 0 && !fast ? FOLL.TOUCH : 0;
  const pfns: Pfn[] = [];
  let addr = start - (start % PAGE_SIZE);
  let spins = 0;
  // The pages taken so far, reported to checkInvariants() while a fault in this call sleeps.
  let holder: RefHolder | null = null;
  try {
    while (pfns.length < nrPages) {
      if (proc.exited) return { pfns, err: "EINTR" };
      const vma = mm.vmaLookup(addr);
      if (vma === null) return { pfns, err: "EFAULT" };
      const bad = checkVmaFlags(vma, gupFlags);
      if (bad !== null) return { pfns, err: bad };
      const got = followPagePte(mm, vma, addr / PAGE_SIZE, gupFlags);
      if (got >= 0) {
        // GUP-fast takes every page it can without a fault; from the first one it cannot, the
        // rest goes through the slow path with FOLL_TOUCH (gup_fast_fallback()).
        tryGrabFolio(mm, got, mm.pt.get(addr / PAGE_SIZE), fast ? gupFlags : gupFlags | touch);
        pfns.push(got);
        addr += PAGE_SIZE;
        spins = 0;
        continue;
      }
      if (++spins > FAULT_SPINS_MAX) BUG(`GUP at 0x${addr.toString(16)} faulted ${spins} times without progress`);
      if (fast) {
        fast = false;
        touch = FOLL.TOUCH;
      }
      if (holder === null && pfns.length > 0) holder = gupHolder(mm, pfns, gupFlags);
      const err = await faultinPage(proc, vma, addr, gupFlags, got === FOLLOW_UNSHARE);
      if (err !== null) return { pfns, err };
    }
    return { pfns, err: null };
  } finally {
    if (holder !== null) mm.core.refHolders.delete(holder);
  }
}

/** Registers the references or pins a GUP call holds so far (the zero page is never counted). */
function gupHolder(mm: Mm, pfns: readonly Pfn[], gupFlags: number): RefHolder {
  const pin = (gupFlags & FOLL.PIN) !== 0;
  const zero = mm.core.mem.zeroPfn;
  const holder: RefHolder = {
    forEachRef(fn) {
      for (const pfn of pfns) if (pfn !== zero) fn(pfn, pin ? 0 : 1, pin ? 1 : 0);
    },
  };
  mm.core.refHolders.add(holder);
  return holder;
}

/** pin_user_pages() (or pin_user_pages_fast() with `fast`): getUserPages() with FOLL_PIN. */
export function pinUserPages(proc: Process, start: number, nrPages: number, gupFlags: number, fast = false): Promise<GupResult> {
  return getUserPages(proc, start, nrPages, (gupFlags & ~FOLL.GET) | FOLL.PIN, fast);
}

/** Mirrors mm/gup.c:unpin_user_pages(): the zero page was never pinned. */
export function unpinUserPages(mem: PhysMem, pfns: readonly Pfn[]): void {
  for (const pfn of pfns) if (pfn !== mem.zeroPfn) mem.folioUnpin(pfn);
}

/** put_page() on every page of a FOLL_GET walk. */
export function putPages(mem: PhysMem, pfns: readonly Pfn[]): void {
  for (const pfn of pfns) mem.folioPut(pfn);
}

/** The errno a failed GUP-based syscall reports; a process that died meanwhile just unwinds. */
function gupError(proc: Process, err: ErrnoCode, syscall: string): Error {
  return proc.exited ? new DeadTaskError() : new ErrnoError(err, syscall);
}

// --- pinned buffers: io_uring fixed buffers and gup_test -------------------------------------

/** The device's view of long-term pinned pages: reads and writes go to the pinned frames, not through page tables. */
export interface PinnedBuffer {
  /** Reads through the pin, as the device would (no fault, no userfault). */
  read(offset: number, length: number): Uint8Array;
  /** Writes through the pin, as the device would. */
  write(offset: number, data: Uint8Array): void;
  /** Releases the pin (io_uring_unregister_buffers). */
  unregister(): Promise<void>;
}

/** How one kind of pin owner answers once released. */
interface PinOwner {
  /** For error messages: "io_uring_enter", "ioctl". */
  readonly syscall: string;
  /** Using the pages after release: io_uring EFAULT, gup_test READ without START EINVAL. */
  readonly deadErrno: ErrnoCode;
  /** A second unregister: io_uring ENXIO; gup_test STOP is always 0 (null). */
  readonly twiceErrno: ErrnoCode | null;
  readonly unregisterSyscall: string;
}

const IO_URING: PinOwner = { syscall: "io_uring_enter", deadErrno: "EFAULT", twiceErrno: "ENXIO", unregisterSyscall: "io_uring_register" };
const GUP_TEST: PinOwner = { syscall: "ioctl", deadErrno: "EINVAL", twiceErrno: null, unregisterSyscall: "ioctl" };

/**
 * Pinned frames of [addr, addr + length) of one process. Registered with the kernel as a
 * RefHolder (pins) while live; released by unregister() or when the owning process exits.
 */
export class PinnedPages implements PinnedBuffer, RefHolder {
  readonly length: number;
  readonly writable: boolean;
  readonly #proc: Process;
  readonly #pfns: readonly Pfn[];
  readonly #firstOffset: number;
  readonly #owner: PinOwner;
  readonly #exitHook = (): void => this.release();
  #live = true;

  constructor(proc: Process, addr: number, length: number, pfns: readonly Pfn[], writable: boolean, owner: PinOwner) {
    this.#proc = proc;
    this.length = length;
    this.#pfns = pfns;
    this.#firstOffset = addr % PAGE_SIZE;
    this.writable = writable;
    this.#owner = owner;
    proc.kernel.core.refHolders.add(this);
    proc.exitHooks.push(this.#exitHook);
  }

  /** The pinned frames, first page first (the zero page may appear for a short-term R/O pin). */
  get pfns(): readonly Pfn[] {
    return this.#pfns;
  }

  read(offset: number, length: number): Uint8Array {
    this.#check(offset, length);
    const out = new Uint8Array(length);
    this.#copy(offset, length, false, (bytes, at, done, n) => out.set(bytes.subarray(at, at + n), done));
    return out;
  }

  write(offset: number, data: Uint8Array): void {
    // A read-only pin gives the device no write access: refused as a bad address, like a range
    // outside the buffer (io_uring's io_import_fixed() answers EFAULT), never a JS exception.
    if (!this.writable) throw new ErrnoError("EFAULT", this.#owner.syscall, "(a read-only pin cannot be written through)");
    this.#check(offset, data.length);
    this.#copy(offset, data.length, true, (bytes, at, done, n) => bytes.set(data.subarray(done, done + n), at));
  }

  async unregister(): Promise<void> {
    this.#proc.kernel.sched.charge(COST.syscall);
    if (!this.#live) {
      if (this.#owner.twiceErrno !== null) throw new ErrnoError(this.#owner.twiceErrno, this.#owner.unregisterSyscall);
      return;
    }
    this.release();
  }

  /** Unpins every page (unpin_user_pages()); idempotent. */
  release(): void {
    if (!this.#live) return;
    this.#live = false;
    const core = this.#proc.kernel.core;
    unpinUserPages(core.mem, this.#pfns);
    core.refHolders.delete(this);
    const i = this.#proc.exitHooks.indexOf(this.#exitHook);
    if (i >= 0) this.#proc.exitHooks.splice(i, 1);
  }

  forEachRef(fn: (pfn: number, refs: number, pins: number) => void): void {
    const zero = this.#proc.kernel.core.mem.zeroPfn;
    for (const pfn of this.#pfns) if (pfn !== zero) fn(pfn, 0, 1);
  }

  #check(offset: number, length: number): void {
    if (!this.#live) throw new ErrnoError(this.#owner.deadErrno, this.#owner.syscall);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.length) {
      // io_uring/rsrc.c:io_import_fixed(): a range outside the registered buffer is EFAULT.
      throw new ErrnoError("EFAULT", this.#owner.syscall, `([${offset}, ${offset + length}) is outside the pinned buffer of ${this.length} bytes)`);
    }
  }

  #copy(offset: number, length: number, write: boolean, fn: (bytes: Uint8Array, at: number, done: number, n: number) => void): void {
    const mem = this.#proc.kernel.core.mem;
    let done = 0;
    while (done < length) {
      const pos = this.#firstOffset + offset + done;
      const pfn = this.#pfns[Math.floor(pos / PAGE_SIZE)] as Pfn;
      const inPage = pos % PAGE_SIZE;
      const n = Math.min(length - done, PAGE_SIZE - inPage);
      const bytes = write ? mem.writable(pfn, n === PAGE_SIZE) : mem.bytes(pfn);
      fn(bytes, mem.offset(pfn) + inPage, done, n);
      if (write) mem.written(pfn);
      done += n;
    }
  }
}

/** io_uring/rsrc.c: the arbitrary per-buffer limit (SZ_1G). */
const IORING_MAX_BUF_SIZE = 1 << 30;

/**
 * Mirrors io_uring/rsrc.c:io_sqe_buffer_register() for one iovec: io_buffer_validate() (EFAULT
 * for a NULL base with a length, a zero length, or more than 1 GiB; NULL base with length 0 is
 * a sparse slot), then io_pin_pages(): pin_user_pages_fast(FOLL_WRITE | FOLL_LONGTERM) on every
 * page; a partial pin is undone and reported as EFAULT, a failure on the first page as its errno.
 * Divergence from Linux: there is no ring fd. Each call is its own registration (no EBUSY for a
 * second one), released by unregister() or the exit of the registering process; RLIMIT_MEMLOCK
 * accounting for unprivileged users is not modelled.
 */
export async function sysIoUringRegisterBuffers(proc: Process, addr: number, len: number): Promise<PinnedBuffer> {
  if (!Number.isSafeInteger(addr) || !Number.isSafeInteger(len) || addr < 0 || len < 0) throw new ErrnoError("EFAULT", "io_uring_register");
  if (addr === 0) {
    if (len !== 0) throw new ErrnoError("EFAULT", "io_uring_register");
    return new PinnedPages(proc, 0, 0, [], true, IO_URING);
  }
  if (len === 0 || len > IORING_MAX_BUF_SIZE) throw new ErrnoError("EFAULT", "io_uring_register");
  const nrPages = Math.ceil((addr + len) / PAGE_SIZE) - Math.floor(addr / PAGE_SIZE);
  // io_uring/rsrc.c:io_pin_pages() -> pin_user_pages_fast().
  const got = await pinUserPages(proc, addr, nrPages, FOLL.WRITE | FOLL.LONGTERM, true);
  if (got.pfns.length === nrPages) return new PinnedPages(proc, addr, len, got.pfns, true, IO_URING);
  unpinUserPages(proc.kernel.core.mem, got.pfns);
  throw gupError(proc, got.pfns.length === 0 && got.err !== null ? got.err : "EFAULT", "io_uring_register");
}

export interface GupTestPinOptions {
  /** PIN_LONGTERM_TEST_FLAG_USE_WRITE: FOLL_WRITE. */
  write: boolean;
  /** FOLL_LONGTERM (gup_test's PIN_LONGTERM_TEST always sets it; false gives a PIN_BASIC_TEST-style pin). */
  longterm: boolean;
  /** PIN_LONGTERM_TEST_FLAG_USE_FAST: pin_user_pages_fast() (no FOLL_TOUCH unless it falls back), else pin_user_pages(). */
  fast: boolean;
}

/**
 * The simulation's stand-in for /sys/kernel/debug/gup_test's PIN_LONGTERM_TEST_START (mm/gup_test.c:
 * pin_longterm_test_start()): EINVAL unless addr and len are page-aligned and len > 0; pins
 * every page or, at the first failure, unpins what it got and fails with that errno. The
 * returned buffer's read() is PIN_LONGTERM_TEST_READ and unregister() PIN_LONGTERM_TEST_STOP.
 * Divergence from Linux: gup_test keeps one global pin set (a second START is EINVAL); here each
 * call returns its own, released at STOP or at the exit of the process.
 */
export async function sysGupTestPin(proc: Process, addr: number, len: number, opts: GupTestPinOptions): Promise<PinnedBuffer> {
  if (!Number.isSafeInteger(addr) || !Number.isSafeInteger(len) || addr < 0 || len < 0) throw new ErrnoError("EINVAL", "ioctl");
  if (addr % PAGE_SIZE !== 0 || len % PAGE_SIZE !== 0 || len === 0) throw new ErrnoError("EINVAL", "ioctl");
  let flags = 0;
  if (opts.longterm) flags |= FOLL.LONGTERM;
  if (opts.write) flags |= FOLL.WRITE;
  const nrPages = len / PAGE_SIZE;
  const got = await pinUserPages(proc, addr, nrPages, flags, opts.fast);
  if (got.err !== null) {
    unpinUserPages(proc.kernel.core.mem, got.pfns);
    throw gupError(proc, got.err, "ioctl");
  }
  return new PinnedPages(proc, addr, len, got.pfns, opts.write, GUP_TEST);
}

// --- vmsplice(2) ----------------------------------------------------------------------------

/** include/linux/splice.h SPLICE_F_ALL. */
const SPLICE_F_ALL = SPLICE_F_MOVE | SPLICE_F_NONBLOCK | SPLICE_F_MORE | SPLICE_F_GIFT;
/** iter_to_pipe() takes at most this many pages per iov_iter_get_pages2() call. */
const VMSPLICE_BATCH_PAGES = 16;

/**
 * Mirrors fs/splice.c:SYSCALL_DEFINE4(vmsplice) for one iovec, in its check order: flags
 * (EINVAL), the fd (EBADF; neither readable nor writable is EBADF too), the iovec (a negative
 * length EINVAL, a range past the user address space EFAULT, clamped to MAX_RW_COUNT), a zero
 * length returns 0, and only then "is it a pipe" (EBADF). A writable end takes user pages by
 * reference (vmsplice_to_pipe); a read end copies pipe data out to user memory
 * (vmsplice_to_user). O_NONBLOCK on the file is ignored: only SPLICE_F_NONBLOCK avoids blocking.
 */
export async function sysVmsplice(proc: Process, fd: number, addr: number, len: number, flags: number): Promise<number> {
  if (!Number.isInteger(flags) || (flags >>> 0 & ~SPLICE_F_ALL) !== 0) throw new ErrnoError("EINVAL", "vmsplice");
  // fdget(): the file stays referenced until the call returns, however long it sleeps.
  const file = proc.fds.lookup(fd, "vmsplice").get();
  try {
    const toPipe = file.writable;
    if (!toPipe && !file.readable) throw new ErrnoError("EBADF", "vmsplice");
    if (!Number.isSafeInteger(len) || len < 0) throw new ErrnoError("EINVAL", "vmsplice");
    if (!Number.isSafeInteger(addr) || addr < 0 || addr + len > TASK_SIZE) throw new ErrnoError("EFAULT", "vmsplice");
    const count = Math.min(len, MAX_RW_COUNT);
    if (count === 0) return 0;
    const pipe = getPipeInfo(file);
    if (pipe === null) throw new ErrnoError("EBADF", "vmsplice");
    return await (toPipe ? vmspliceToPipe(proc, pipe, addr, count, flags) : vmspliceToUser(proc, pipe, addr, count, flags));
  } finally {
    file.put();
  }
}

/** Mirrors fs/splice.c:wait_for_space(): EPIPE without readers, then wait for a free slot. */
async function waitForSpace(proc: Process, pipe: PipeInodeInfo, flags: number): Promise<void> {
  for (;;) {
    if (pipe.readers === 0) throw new ErrnoError("EPIPE", "vmsplice");
    if (!pipe.full) return;
    if ((flags & SPLICE_F_NONBLOCK) !== 0) throw new ErrnoError("EAGAIN", "vmsplice");
    await pipe.waitWritable(proc);
  }
}

/**
 * Mirrors fs/splice.c:vmsplice_to_pipe() and iter_to_pipe(): under the pipe mutex, wait once for
 * room, then take the user pages 16 at a time with get_user_pages_fast() (FOLL_GET, read-only:
 * no unsharing) and add one buffer per page until the pipe is full. Pages taken but not added
 * are put back. Returns the bytes added, or the error if none were.
 */
async function vmspliceToPipe(proc: Process, pipe: PipeInodeInfo, addr: number, len: number, flags: number): Promise<number> {
  const bufFlags = (flags & SPLICE_F_GIFT) !== 0 ? PIPE_BUF_FLAG.GIFT : 0;
  const mem = proc.kernel.core.mem;
  await pipe.lock();
  let total = 0;
  let err: ErrnoCode | null = null;
  try {
    await waitForSpace(proc, pipe, flags);
    while (total < len && err === null) {
      const a = addr + total;
      let start = a % PAGE_SIZE;
      const nrPages = Math.min(VMSPLICE_BATCH_PAGES, Math.ceil((len - total + start) / PAGE_SIZE));
      // iov_iter_get_pages2() -> get_user_pages_fast().
      const got = await getUserPages(proc, a - start, nrPages, FOLL.GET, true);
      if (got.pfns.length === 0) {
        err = got.err ?? "EFAULT";
        break;
      }
      let left = Math.min(len - total, got.pfns.length * PAGE_SIZE - start);
      for (let i = 0; i < got.pfns.length; i++) {
        const size = Math.min(left, PAGE_SIZE - start);
        err = pipe.addToPipe({ pfn: got.pfns[i] as Pfn, offset: start, len: size, flags: bufFlags });
        if (err !== null) {
          putPages(mem, got.pfns.slice(i));
          break;
        }
        total += size;
        left -= size;
        start = 0;
      }
    }
  } finally {
    if (total > 0) pipe.wakeReaders();
    pipe.unlock();
  }
  if (total > 0) return total;
  throw gupError(proc, err ?? "EFAULT", "vmsplice");
}

/**
 * Mirrors fs/splice.c:vmsplice_to_user() -> __splice_from_pipe() with pipe_to_user(): waits for
 * data (EOF without writers; SPLICE_F_NONBLOCK gives EAGAIN), then copies buffer by buffer to
 * user memory. A buffer whose copy faults is not consumed: EFAULT if nothing was copied yet,
 * else the count so far.
 */
async function vmspliceToUser(proc: Process, pipe: PipeInodeInfo, addr: number, len: number, flags: number): Promise<number> {
  const mem = proc.kernel.core.mem;
  let spliced = 0;
  await pipe.lock();
  try {
    for (;;) {
      while (pipe.empty) {
        if (pipe.writers === 0 || spliced > 0) return spliced;
        if ((flags & SPLICE_F_NONBLOCK) !== 0) throw new ErrnoError("EAGAIN", "vmsplice");
        await pipe.waitReadable(proc);
      }
      while (!pipe.empty) {
        const buf = pipe.bufs[0]!;
        const n = Math.min(buf.len, len - spliced);
        const bytes = mem.readPage(buf.pfn, buf.offset, n);
        const copied = await proc.copyUser(addr + spliced, bytes, true);
        if (copied !== n) {
          if (spliced > 0) return spliced;
          throw new ErrnoError("EFAULT", "vmsplice");
        }
        buf.offset += n;
        buf.len -= n;
        spliced += n;
        if (buf.len === 0 && pipe.bufs[0] === buf) pipe.consumeTail();
        if (spliced === len) return spliced;
      }
    }
  } finally {
    if (spliced > 0) pipe.wakeWriters();
    pipe.unlock();
  }
}
