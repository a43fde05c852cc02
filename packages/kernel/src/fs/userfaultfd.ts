/**
 * The userfaultfd file: context, read, poll, ioctl dispatch and the non-cooperative events.
 * Mirrors fs/userfaultfd.c (Linux 6.18).
 *
 * The context (struct userfaultfd_ctx) and its state machine:
 * - created by userfaultfd(2) or USERFAULTFD_IOC_NEW with `features` 0: every ioctl but
 *   UFFDIO_API is EINVAL, read(2) is EINVAL, poll(2) is POLLERR;
 * - UFFDIO_API succeeds once: `features` = requested | UFFD_FEATURE_INITIALIZED (bit 31);
 * - REGISTER points vmas of `mm` at the context; their faults queue messages here;
 * - release (the last close of the file) unregisters every vma (uffd-wp cleared), wakes every
 *   blocked fault and every event waiter; `released` stays true for good.
 *
 * Queues (all FIFO, all ordered by arrival):
 * - `#pending`: faults not yet read (fault_pending_wqh); read(2) moves one to `#read`;
 * - `#read`: faults read but not yet woken (fault_wqh). A wake of [start, start+len) releases
 *   the matching waiters of both queues, in an order drawn from the kernel's seed;
 * - `#events`: non-cooperative events (event_wqh). read(2) returns faults first, then events;
 *   reading an event completes it and lets the syscall that raised it return.
 * While an event is being delivered, `mmapChanging` is non-zero and COPY / ZEROPAGE /
 * CONTINUE / POISON / MOVE / WRITEPROTECT answer EAGAIN.
 *
 * Fault path: handleUserfault() queues the message, sets vmf.waiter and returns
 * VM_FAULT_RETRY; the access sleeps on the waiter and retries the whole fault once woken, so a
 * fault that is still unresolved raises a new message (as in Linux).
 */
import * as addrMod from "../lib/addr.ts";
import { DeadTaskError } from "../kernel/access.ts";
import { u64Value } from "../uapi/abi.ts";
import type { Kernel } from "../kernel/kernel.ts";
import type { Process } from "../kernel/process.ts";
import { pendingPromise, type Resumable, type Scheduler, settlers, Waiter } from "../kernel/sched.ts";
import * as sched from "../kernel/sched.ts";
import { type UserfaultHandler, type VmFault } from "../mm/memory.ts";
import * as memory from "../mm/memory.ts";
import { type Mm, type UffdMmHooks } from "../mm/mm.ts";
import * as mmConsts from "../mm/mm.ts";
import {
  copyFromUserAtomic,
  copyFromUserAtomicRun,
  MFILL_ATOMIC,
  type MfillAtomicMode,
  type MfillOp,
  type MfillSource,
  mfillAtomic,
  movePages,
  mwriteprotectRange,
  userfaultfdClearVma,
  userfaultfdRegisterRange,
  userfaultfdReleaseAll,
  userfaultfdReleaseNew,
  userfaultfdResetCtx,
  vmaCanUserfault,
} from "../mm/userfaultfd.ts";
import * as mmUffd from "../mm/userfaultfd.ts";
import { type Vma, VM_MAYWRITE, VM_UFFD_MISSING, userfaultfdMissing } from "../mm/vma.ts";
import * as vmaConsts from "../mm/vma.ts";
import { type ErrnoCode, ErrnoError, errnoCode } from "../uapi/errno.ts";
import { O_CLOEXEC, O_NONBLOCK, O_RDONLY, POLLERR, POLLHUP, POLLIN } from "../uapi/fcntl.ts";
import * as mman from "../uapi/mman.ts";
import { encodeUffdMsg, type UffdMsg } from "../uapi/msg.ts";
import * as msgMod from "../uapi/msg.ts";
import {
  _UFFDIO_CONTINUE,
  _UFFDIO_WRITEPROTECT,
  UFFD_API,
  UFFD_API_IOCTLS,
  UFFD_EVENT_FORK,
  UFFD_EVENT_REMAP,
  UFFD_EVENT_REMOVE,
  UFFD_EVENT_UNMAP,
  UFFD_FEATURE_EVENT_FORK,
  UFFD_FEATURE_EVENT_REMAP,
  UFFD_FEATURE_EVENT_REMOVE,
  UFFD_FEATURE_EVENT_UNMAP,
  UFFD_FEATURE_WP_ASYNC,
  UFFD_FEATURE_WP_UNPOPULATED,
  UFFDIO_CONTINUE_MODE_DONTWAKE,
  UFFDIO_CONTINUE_MODE_WP,
  UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES,
  UFFDIO_MOVE_MODE_DONTWAKE,
  UFFDIO_POISON_MODE_DONTWAKE,
  UFFDIO_REGISTER,
  UFFDIO_REGISTER_MODE_MINOR,
  UFFDIO_REGISTER_MODE_MISSING,
  UFFDIO_REGISTER_MODE_WP,
  UFFDIO_UNREGISTER,
  UFFDIO_WAKE,
  UFFDIO_WRITEPROTECT,
  UFFDIO_WRITEPROTECT_MODE_DONTWAKE,
  UFFDIO_WRITEPROTECT_MODE_WP,
  UFFD_API_REGISTER_MODES,
} from "../uapi/userfaultfd.ts";
import * as uapiUffd from "../uapi/userfaultfd.ts";
import { type FileOps, OpenFile } from "./file.ts";

// Module-local copies of constants and helpers the hot path uses on every fault: V8 reads an
// imported binding through its module cell at each use, a module-local const is folded into the
// optimized code (see kernel/access.ts). Each comes from a module initialised before this one.
const UFFD_EVENT_PAGEFAULT = uapiUffd.UFFD_EVENT_PAGEFAULT;
const UFFD_FEATURE_EXACT_ADDRESS = uapiUffd.UFFD_FEATURE_EXACT_ADDRESS;
const UFFD_FEATURE_SIGBUS = uapiUffd.UFFD_FEATURE_SIGBUS;
const UFFD_FEATURE_THREAD_ID = uapiUffd.UFFD_FEATURE_THREAD_ID;
const UFFD_PAGEFAULT_FLAG_MINOR = uapiUffd.UFFD_PAGEFAULT_FLAG_MINOR;
const UFFD_PAGEFAULT_FLAG_WP = uapiUffd.UFFD_PAGEFAULT_FLAG_WP;
const UFFD_PAGEFAULT_FLAG_WRITE = uapiUffd.UFFD_PAGEFAULT_FLAG_WRITE;
const UFFD_USER_MODE_ONLY = uapiUffd.UFFD_USER_MODE_ONLY;
const UFFDIO_API = uapiUffd.UFFDIO_API;
const UFFDIO_CONTINUE = uapiUffd.UFFDIO_CONTINUE;
const UFFDIO_COPY = uapiUffd.UFFDIO_COPY;
const UFFDIO_COPY_MODE_DONTWAKE = uapiUffd.UFFDIO_COPY_MODE_DONTWAKE;
const UFFDIO_COPY_MODE_WP = uapiUffd.UFFDIO_COPY_MODE_WP;
const UFFDIO_MOVE = uapiUffd.UFFDIO_MOVE;
const UFFDIO_POISON = uapiUffd.UFFDIO_POISON;
const UFFDIO_ZEROPAGE = uapiUffd.UFFDIO_ZEROPAGE;
const UFFDIO_ZEROPAGE_MODE_DONTWAKE = uapiUffd.UFFDIO_ZEROPAGE_MODE_DONTWAKE;
const MFILL_NOT_SIMPLE = mmUffd.MFILL_NOT_SIMPLE;
const mfillCopyAnonPage = mmUffd.mfillCopyAnonPage;
const mfillZeropageAnonPage = mmUffd.mfillZeropageAnonPage;
const mwriteprotectUnprotectPage = mmUffd.mwriteprotectUnprotectPage;
const mfillContinuePage = mmUffd.mfillContinuePage;

const pageDown = addrMod.pageDown;
const pageOffset = addrMod.pageOffset;
const FAULT_FLAG_USER = memory.FAULT_FLAG_USER;
const FAULT_FLAG_WRITE = memory.FAULT_FLAG_WRITE;
const VM_FAULT_RETRY = memory.VM_FAULT_RETRY;
const VM_FAULT_SIGBUS = memory.VM_FAULT_SIGBUS;
const TASK_SIZE = mmConsts.TASK_SIZE;
const PAGE_SHIFT = mman.PAGE_SHIFT;
const COST = sched.COST;
const PAGE_SIZE = mman.PAGE_SIZE;
const UFFD_MSG_SIZE = msgMod.UFFD_MSG_SIZE;
const VM_UFFD_MINOR = vmaConsts.VM_UFFD_MINOR;
const VM_UFFD_WP = vmaConsts.VM_UFFD_WP;

const NO_BYTES = new Uint8Array(0);

/** What a successful ioctl returns (an already-settled promise carries no state, so all share it). */
const RESOLVED_ZERO: Promise<number> = Promise.resolve(0);

/** UFFD_FEATURE_INITIALIZED for this module's own code (V8 folds an unexported const, not an exported one). */
const FEATURE_INITIALIZED = 0x80000000;
/** Internal: set in ctx->features by a successful UFFDIO_API. Not uapi. */
export const UFFD_FEATURE_INITIALIZED = FEATURE_INITIALIZED;
/** The userfaultfd(2) flags that are also file flags. */
const UFFD_SHARED_FCNTL_FLAGS = O_CLOEXEC | O_NONBLOCK;

/**
 * A thread blocked in handle_userfault() (struct userfaultfd_wait_queue for a fault): its message
 * and its wait. A blocked user access hands it back when it resumed (done()), and the context's
 * next fault reuses it.
 */
class FaultWaiter extends Waiter {
  /** FaultQueue links and arrival order (owned by the queue holding the waiter). */
  qPrev: FaultWaiter | null = null;
  qNext: FaultWaiter | null = null;
  qSeq = 0;
  /** The links of its chain in the context's index by page (FaultIndex; null while unindexed). */
  bPrev: FaultWaiter | null = null;
  bNext: FaultWaiter | null = null;
  /** The queue holding the waiter (null while in none). */
  queue: FaultQueue | null = null;
  // The number fields have initializers (see Vma in mm/vma.ts): V8 then stores their doubles in place.
  /** msg.arg.pagefault.address: page-aligned, or exact with UFFD_FEATURE_EXACT_ADDRESS. Wakes match it. */
  address = 0;
  flags = 0;
  ptid = 0;
  /** The context's spare waiters, where done() puts this one. */
  readonly #spares: FaultWaiter[];

  constructor(address: number, flags: number, ptid: number, spares: FaultWaiter[]) {
    super();
    this.address = address;
    this.flags = flags;
    this.ptid = ptid;
    this.#spares = spares;
  }

  /** This waiter for a new fault (it was done(): woken, in no queue, no sleeper holds it). */
  renew(address: number, flags: number, ptid: number): this {
    this.reset();
    this.address = address;
    this.flags = flags;
    this.ptid = ptid;
    return this;
  }

  override done(): void {
    if (this.#spares.length < FAULT_WAITER_SPARES) this.#spares.push(this);
  }
}

/** Spare FaultWaiters a context keeps for its next faults. */
const FAULT_WAITER_SPARES = 64;

/** The Waiter of a BlockedRead, made new again when its read is reused. */
class ReadWaiter extends Waiter {
  renew(): this {
    this.reset();
    return this;
  }
}

/**
 * A read(2) into a caller's buffer asleep on fd_wqh (UserfaultfdCtx.readInto()). Its Waiter
 * takes no promise: a wake puts it in the scheduler's resume batch (Waiter.resumable), or, for a
 * one-message read woken by a fault, runs it at once (#notifyFd()); it reads what is queued and
 * settles `result`. Once settled it goes back to its context, whose next blocked read reuses it
 * (a handler that keeps up with one thread sleeps in every read), so a blocked read costs one
 * promise.
 */
class BlockedRead implements Resumable {
  /** The bytes read, or the error (DeadTaskError if the reader's process died). */
  result: Promise<number>;
  resolve!: (n: number) => void;
  reject!: (e: unknown) => void;
  /** On fd_wqh and in the reader's sleepers while asleep; reset for another sleep. */
  readonly waiter = new ReadWaiter();
  readonly ctx: UserfaultfdCtx;
  file: OpenFile;
  proc: Process;
  into: Uint8Array;
  /** Messages that fit in `into`. */
  max = 0;

  constructor(ctx: UserfaultfdCtx, file: OpenFile, proc: Process, into: Uint8Array, max: number) {
    this.ctx = ctx;
    this.file = file;
    this.proc = proc;
    this.into = into;
    this.max = max;
    this.waiter.resumable = this;
    this.result = pendingPromise<number>();
    this.resolve = settlers.resolve as (n: number) => void;
    this.reject = settlers.reject;
  }

  /** This settled read for another blocked read (it is on no list and nothing else holds it). */
  renew(file: OpenFile, proc: Process, into: Uint8Array, max: number): this {
    this.file = file;
    this.proc = proc;
    this.into = into;
    this.max = max;
    this.waiter.renew().resumable = this;
    this.result = pendingPromise<number>();
    this.resolve = settlers.resolve as (n: number) => void;
    this.reject = settlers.reject;
    return this;
  }

  woken(): void {
    this.ctx.sched.resumeLater(this);
  }

  resume(): void {
    this.ctx.resumeRead(this);
  }
}

/** A syscall blocked until its event is read (struct userfaultfd_wait_queue for an event). */
interface EventWaiter {
  readonly msg: UffdMsg;
  /** For UFFD_EVENT_FORK: the child's new context, whose fd is created when the event is read. */
  readonly forkCtx: UserfaultfdCtx | null;
  readonly waiter: Waiter;
  finished: boolean;
  /** In the context's EventQueue (false for one finished before it was queued). */
  queued: boolean;
}

function fail(code: ErrnoCode, what: string): never {
  throw new ErrnoError(code, "ioctl", what);
}

// --- ioctl argument access (copy_from_user / put_user) ----------------------------------------

type Arg = Record<string, unknown>;

/** copy_from_user() of the struct: anything but an object is an unreadable address. */
function argObject(arg: unknown, what: string): Arg {
  if (typeof arg !== "object" || arg === null) fail("EFAULT", what);
  return arg as Arg;
}

/**
 * A __u64 field's value: a non-negative integer number or bigint; negative values wrap as in C.
 * Callers read the field by name (a.dst), which keeps the property load monomorphic.
 * Divergence from Linux: fields are JS numbers, so values above 2^53 lose precision; a missing or
 * mistyped field is EFAULT, as an unreadable struct would be.
 */
function u64(v: unknown, what: string): number {
  // The hot ioctls pass small non-negative integers: skip the general conversion for those.
  if (typeof v === "number" && v >= 0 && v <= Number.MAX_SAFE_INTEGER && Number.isInteger(v)) return v;
  const r = u64Value(v);
  return Number.isNaN(r) ? fail("EFAULT", what) : r;
}

/** put_user(): false if the field cannot be written (a frozen struct is a read-only page). */
function putUser(o: Arg, key: string, value: unknown): boolean {
  try {
    o[key] = value;
    return true;
  } catch {
    return false;
  }
}

/** The result field of an mfill-style ioctl.*/
type ResultField = "copy" | "zeropage" | "mapped" | "updated" | "move";

/** putUser() of a result field, by name (named stores stay monomorphic on the hot ioctls). */
function putResult(o: Arg, field: ResultField, value: number): boolean {
  try {
    switch (field) {
      case "copy":
        o.copy = value;
        break;
      case "zeropage":
        o.zeropage = value;
        break;
      case "mapped":
        o.mapped = value;
        break;
      case "updated":
        o.updated = value;
        break;
      case "move":
        o.move = value;
        break;
    }
    return true;
  } catch {
    return false;
  }
}

/** A __u64 mode word has bits outside `allowed`. */
function hasBitsOutside(v: number, allowed: number): boolean {
  return v >= 0x1_0000_0000 || ((v >>> 0) & ~allowed) !== 0;
}

/**
 * Mirrors fs/userfaultfd.c:validate_unaligned_range() as 6.18.y has it: there is no
 * `start < mmap_min_addr` check any more (upstream commit 161ce69c2c89, backported to the
 * stable series), so a range below vm.mmap_min_addr passes here and fails later like any
 * unmapped range (ENOENT from the fill and move paths, EINVAL from REGISTER for want of a vma).
 */
function validateUnalignedRange(start: number, len: number): boolean {
  if (pageOffset(len) !== 0 || len === 0) return false;
  if (start >= TASK_SIZE) return false;
  return len <= TASK_SIZE - start;
}

/** Mirrors fs/userfaultfd.c:validate_range(). */
function validateRange(start: number, len: number): boolean {
  return pageOffset(start) === 0 && validateUnalignedRange(start, len);
}

function readRange(arg: Arg, what: string): { start: number; len: number } {
  const range = argObject(arg.range, what);
  return { start: u64(range.start, what), len: u64(range.len, what) };
}

// --- the context ---------------------------------------------------------------------------

export class UserfaultfdCtx implements UserfaultHandler, FileOps {
  readonly name = "anon_inode:[userfaultfd]";
  /** ctx->features: 0 until UFFDIO_API; then the requested features | UFFD_FEATURE_INITIALIZED. */
  features = 0;
  /** The userfaultfd(2) flags (O_CLOEXEC, O_NONBLOCK, UFFD_USER_MODE_ONLY). */
  readonly flags: number = 0;
  /** The mm whose vmas this context may register (ctx->mm); `mm.alive` false once it exited. */
  readonly mm: Mm;
  /** Set by release; faults then retry as if the vma were not registered. */
  released = false;
  /** ctx->mmap_changing: events being delivered. Changed only by the event machinery below. */
  mmapChanging = 0;
  /** mfillAtomic()'s spare record (see MfillOp). */
  mfillScratch: MfillOp | null = null;
  /** #copy()'s spare source for bytes given directly, free while no COPY is using it. */
  #bytesSource: BytesSource | null = null;
  readonly #kernel: Kernel;
  readonly #sched: Scheduler;
  /** The low 32 bits of the release's range ioctls (a release never changes), for #dispatch()'s checks without BigInt arithmetic. */
  readonly #rangeIoctlsLow: number;
  /** The kernel's scheduler (a BlockedRead's wake goes to its resume batch). */
  get sched(): Scheduler {
    return this.#sched;
  }
  /** The index by page that both fault queues share (a read moves a fault without re-indexing it). */
  readonly #faultIndex = new FaultIndex();
  readonly #pending = new FaultQueue(this.#faultIndex);
  readonly #read = new FaultQueue(this.#faultIndex);
  readonly #events = new EventQueue();
  /** fd_wqh: readers (their Waiter) and pollers (a callback) to tell about a new message or the release. */
  readonly #fdWaiters: Array<Waiter | (() => void)> = [];
  /** wakeRange()'s scratch list, empty between calls. */
  readonly #woken: Waiter[] = [];
  /** A BlockedRead that settled, for the next blocked read (resumeRead()). */
  #spareRead: BlockedRead | null = null;
  /** FaultWaiters whose access resumed, for the next faults (FaultWaiter.done()). */
  readonly #spareWaiters: FaultWaiter[] = [];
  /** The process owning `mm`, whose death aborts the faults and events queued here. */
  #owner: Process | null = null;
  readonly #ownerExit = (): void => this.#ownerExited();

  constructor(kernel: Kernel, mm: Mm, flags: number, features: number) {
    this.#kernel = kernel;
    this.#sched = kernel.core.sched;
    this.#rangeIoctlsLow = Number(kernel.core.profile.rangeIoctls & 0xffff_ffffn);
    this.mm = mm;
    this.flags = flags;
    this.features = features;
    this.#hookOwner();
  }

  get initialized(): boolean {
    return (this.features & FEATURE_INITIALIZED) !== 0;
  }

  /** Faults not yet read, faults read but not woken (fdinfo's "pending" and "total"). */
  get faultCounts(): { pending: number; total: number } {
    return { pending: this.#pending.length, total: this.#pending.length + this.#read.length };
  }

  /** /proc/pid/fdinfo of the file (fs/userfaultfd.c:userfaultfd_show_fdinfo()). */
  fdinfo(): string {
    const ioctls = (UFFD_API_IOCTLS | this.#kernel.core.profile.rangeIoctls).toString(16);
    const { pending, total } = this.faultCounts;
    return `pending:\t${pending}\ntotal:\t${total}\nAPI:\t${UFFD_API.toString(16)}:${(this.features >>> 0).toString(16)}:${ioctls}\n`;
  }

  /** The owner's exit aborts what it waits for here (fatal signals in Linux's killable waits). */
  #hookOwner(): void {
    for (const p of this.#kernel.processes.values()) {
      if (p.mm === this.mm && !p.exited) {
        this.#owner = p;
        p.exitHooks.push(this.#ownerExit);
        return;
      }
    }
  }

  #unhookOwner(): void {
    const hooks = this.#owner?.exitHooks;
    const i = hooks?.indexOf(this.#ownerExit) ?? -1;
    if (i >= 0) hooks!.splice(i, 1);
    this.#owner = null;
  }

  /**
   * The owner died: its faulting threads leave the queues (unread messages vanish, as the
   * dying thread removes its own wait entry in Linux) and its events are abandoned.
   */
  #ownerExited(): void {
    this.#owner = null;
    const faults: Waiter[] = this.#pending.takeAll().concat(this.#read.takeAll());
    this.#sched.wakeAll(faults);
    for (const ev of this.#events.live()) this.#finishEvent(ev, false);
  }

  // --- faults ------------------------------------------------------------------------------

  /**
   * Mirrors fs/userfaultfd.c:handle_userfault(). Returns VM_FAULT_SIGBUS (UFFD_FEATURE_SIGBUS,
   * or a kernel-mode access through a UFFD_USER_MODE_ONLY context, which the syscall reports as
   * EFAULT) or VM_FAULT_RETRY with vmf.waiter set. A released context makes the access retry:
   * it will find the vma unregistered.
   */
  handleUserfault(vmf: VmFault, reason: number): number {
    const features = this.features;
    if ((features & UFFD_FEATURE_SIGBUS) !== 0) return VM_FAULT_SIGBUS;
    if ((vmf.flags & FAULT_FLAG_USER) === 0 && (this.flags & UFFD_USER_MODE_ONLY) !== 0) return VM_FAULT_SIGBUS;
    if (this.released) return VM_FAULT_RETRY;
    let flags = 0;
    if ((vmf.flags & FAULT_FLAG_WRITE) !== 0) flags |= UFFD_PAGEFAULT_FLAG_WRITE;
    if ((reason & VM_UFFD_WP) !== 0) flags |= UFFD_PAGEFAULT_FLAG_WP;
    if ((reason & VM_UFFD_MINOR) !== 0) flags |= UFFD_PAGEFAULT_FLAG_MINOR;
    const address = (features & UFFD_FEATURE_EXACT_ADDRESS) !== 0 ? vmf.realAddress : vmf.address;
    const ptid = (features & UFFD_FEATURE_THREAD_ID) !== 0 ? vmf.task.tid : 0;
    const spare = this.#spareWaiters.pop();
    const waiter = spare === undefined ? new FaultWaiter(address, flags, ptid, this.#spareWaiters) : spare.renew(address, flags, ptid);
    this.#pending.push(waiter);
    vmf.sleeper = waiter;
    this.#sched.charge(COST.userfaultRoundTrip);
    this.#notifyFd(true);
    return VM_FAULT_RETRY;
  }

  /**
   * Mirrors fs/userfaultfd.c:wake_userfault(): wakes every blocked fault, read or not, whose
   * message address lies in [start, start+len); len 0 wakes all (release only).
   */
  /**
   * wakeRange(page, PAGE_SIZE, true) for a resolving ioctl of one page (`page` page-aligned):
   * with one fault blocked, that fault if its message lies in the page, without a call per queue.
   */
  #wakePage(page: number): void {
    const pending = this.#pending.length;
    const queued = pending + this.#read.length;
    if (queued === 0) return;
    if (queued !== 1) {
      // Several blocked (threads faulting side by side): this page's only fault, read or not,
      // found through the queues' shared index, is what wakeRange() would wake; with more than
      // one it shuffles them.
      const f = this.#faultIndex.soleInPage(page, this.#pending, this.#read);
      if (f === undefined) return this.wakeRange(page, PAGE_SIZE, true);
      if (f === null) return;
      (f.queue as FaultQueue).unlink(f);
      f.wakeNow(this.#sched);
      return;
    }
    const q = pending === 1 ? this.#pending : this.#read;
    const f = q.head as FaultWaiter;
    // pageDown() of the message address equals `page`: the address lies in [page, page + PAGE_SIZE).
    if (f.address < page || f.address - page >= PAGE_SIZE) return;
    q.unlink(f);
    f.wakeNow(this.#sched);
  }

  wakeRange(start: number, len: number, now = false): void {
    const queued = this.#pending.length + this.#read.length;
    if (queued === 0) return;
    if (queued === 1 && len !== 0) {
      // One blocked fault (a handler resolving faults one by one): no list to build.
      const f = (this.#pending.length === 1 ? this.#pending : this.#read).takeOnly(start, len);
      if (f === null) return;
      if (now) f.wakeNow(this.#sched);
      else f.wake();
      return;
    }
    const woken = this.#woken;
    this.#pending.take(start, len, woken);
    this.#read.take(start, len, woken);
    if (woken.length === 1) {
      const w = woken.pop() as Waiter;
      if (now) w.wakeNow(this.#sched);
      else w.wake();
    } else if (woken.length > 1) {
      // Those resuming now may fault again (never wake here), but the list is not theirs to see.
      if (now) this.#sched.wakeAllNow(woken.splice(0));
      else this.#sched.wakeAll(woken);
      // Emptied by pops, not `length = 0`, which would give the backing store back.
      while (woken.length > 0) woken.pop();
    }
  }

  /**
   * wake_up_poll(&ctx->fd_wqh): every reader and poller, in the order they started waiting.
   * `fault`: a fault was just queued, and a blocked read of one message reads it at once
   * (Scheduler.resumeNow()), as a reader on another CPU may before the faulting thread has gone
   * to sleep: with room for one message, what it reads cannot depend on what is queued later.
   */
  #notifyFd(fault = false): void {
    const n = this.#fdWaiters.length;
    if (n === 0) return;
    if (n === 1) {
      notifyFdWaiter(this.#fdWaiters[0]!, fault ? this.#sched : null);
      return;
    }
    for (const w of this.#fdWaiters.slice()) notifyFdWaiter(w, fault ? this.#sched : null);
  }

  // --- events ------------------------------------------------------------------------------

  /**
   * Mirrors fs/userfaultfd.c:userfaultfd_event_wait_completion(): queues the event and waits
   * until it is read, the context is released, or the owner dies. The caller has already
   * incremented mmapChanging; it is decremented when the event finishes.
   */
  eventWaitCompletion(msg: UffdMsg, forkCtx: UserfaultfdCtx | null): Promise<void> {
    const ev: EventWaiter = { msg, forkCtx, waiter: new Waiter(), finished: false, queued: false };
    // A released context, or a raiser already dead (events come from the owner of `mm`; a
    // fatal signal ends the killable wait at once): nothing is queued.
    if (this.released || !this.mm.alive) {
      this.#finishEvent(ev, false);
      return Promise.resolve();
    }
    this.#events.push(ev);
    this.#notifyFd();
    return ev.waiter.promise;
  }

  /**
   * An event leaves the queue: read (delivered), or abandoned by release or the owner's death.
   * An abandoned FORK event releases the child's context (userfaultfd_release_new()).
   */
  #finishEvent(ev: EventWaiter, delivered: boolean): void {
    if (ev.finished) return;
    ev.finished = true;
    this.#events.finished(ev);
    if (!delivered && ev.forkCtx !== null) {
      userfaultfdReleaseNew(ev.forkCtx.mm, ev.forkCtx);
      ev.forkCtx.#unhookOwner();
    }
    // Divergence from Linux: mmap_changing drops here, when the event is read (or abandoned);
    // Linux drops it when the woken syscall runs again, so a resolve issued right after reading
    // an event may still see EAGAIN there. Here it never does.
    this.mmapChanging--;
    this.#sched.wakeAll([ev.waiter]);
  }

  /** A fork's context that will never be delivered (userfaultfd_release_new()): its vmas are unregistered. */
  abandonFork(): void {
    userfaultfdReleaseNew(this.mm, this);
    this.#unhookOwner();
  }

  /** A context for the child of a fork (dup_userfaultfd()): same flags and features, the child's mm. */
  forkClone(childMm: Mm): UserfaultfdCtx {
    return new UserfaultfdCtx(this.#kernel, childMm, this.flags, this.features);
  }

  // --- read and poll -----------------------------------------------------------------------

  /**
   * Mirrors fs/userfaultfd.c:userfaultfd_read_iter(): as many 32-byte messages as fit, faults
   * first, then events; blocks only for the first one, and not at all with O_NONBLOCK.
   */
  read(file: OpenFile, proc: Process, length: number): Promise<Uint8Array> {
    let max: number;
    try {
      max = this.#readMax(length);
      const out = this.#readMsgs(proc, max);
      if (out !== null) return Promise.resolve(out);
      if ((file.flags & O_NONBLOCK) !== 0) throw new ErrnoError("EAGAIN", "read");
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#readBlocking(file, proc, max);
  }

  /**
   * userfaultfd_read_iter() into the caller's buffer (Process.readInto / readNowait): the
   * messages read() would return, written into `into` from its first byte. Returns the bytes
   * read; with `nowait`, null where a read would sleep (preadv2(RWF_NOWAIT): IOCB_NOWAIT, which
   * Linux treats like O_NONBLOCK here); else, where it must sleep, a promise of them. Errors are
   * thrown.
   */
  readInto(file: OpenFile, proc: Process, into: Uint8Array, nowait: boolean): number | null | Promise<number> {
    const max = this.#readMax(into.length);
    const avail = this.#pending.length + this.#events.length;
    if (avail > 0) return this.#fillMsgs(proc, into, Math.min(max, avail)) * UFFD_MSG_SIZE;
    if (nowait) return null;
    if ((file.flags & O_NONBLOCK) !== 0) throw new ErrnoError("EAGAIN", "read");
    // The blocked read holds the file, so closing the fd meanwhile does not release it.
    file.get();
    const spare = this.#spareRead;
    this.#spareRead = null;
    const r = spare === null ? new BlockedRead(this, file, proc, into, max) : spare.renew(file, proc, into, max);
    this.#sleepRead(r);
    return r.result;
  }

  /** The message count of a read of `length` bytes; EINVAL before UFFDIO_API or below one message. */
  #readMax(length: number): number {
    if (!this.initialized) throw new ErrnoError("EINVAL", "read");
    if (length < UFFD_MSG_SIZE) throw new ErrnoError("EINVAL", "read");
    return Math.floor(length / UFFD_MSG_SIZE);
  }

  /** A BlockedRead goes to sleep on fd_wqh (again, after a wake that found nothing). */
  #sleepRead(r: BlockedRead): void {
    r.waiter.woken = false;
    this.#fdWaiters.push(r.waiter);
    r.proc.sleepers.add(r.waiter);
  }

  /**
   * A BlockedRead was woken (a message, the release, or its process's death) and runs again:
   * it reads what is queued, or sleeps again if another reader took it.
   */
  resumeRead(r: BlockedRead): void {
    removeItem(this.#fdWaiters, r.waiter);
    r.proc.sleepers.delete(r.waiter);
    let n = 0;
    try {
      if (r.proc.exited) throw new DeadTaskError();
      const avail = this.#pending.length + this.#events.length;
      if (avail === 0) {
        this.#sleepRead(r);
        return;
      }
      n = this.#fillMsgs(r.proc, r.into, Math.min(r.max, avail));
    } catch (e) {
      r.file.put();
      r.reject(e);
      this.#spareRead ??= r;
      return;
    }
    r.file.put();
    r.resolve(n * UFFD_MSG_SIZE);
    // Settled and off every list: the next blocked read may reuse it.
    this.#spareRead ??= r;
  }

  /**
   * A read(2) that found nothing queued: sleeps on fd_wqh until a message arrives, or throws
   * DeadTaskError if the reader dies meanwhile (its exit wakes the waiter).
   */
  async #readBlocking(file: OpenFile, proc: Process, max: number): Promise<Uint8Array> {
    // The blocked read holds the file, so closing the fd meanwhile does not release it.
    file.get();
    try {
      for (;;) {
        const w = new Waiter();
        this.#fdWaiters.push(w);
        proc.sleepers.add(w);
        await w.promise;
        removeItem(this.#fdWaiters, w);
        proc.sleepers.delete(w);
        if (proc.exited) throw new DeadTaskError();
        const out = this.#readMsgs(proc, max);
        if (out !== null) return out;
      }
    } finally {
      file.put();
    }
  }

  /** Mirrors fs/userfaultfd.c:userfaultfd_ctx_read() in a loop; null when nothing is queued. */
  #readMsgs(proc: Process, max: number): Uint8Array | null {
    const avail = this.#pending.length + this.#events.length;
    if (avail === 0) return null;
    const n = Math.min(max, avail);
    const out = new Uint8Array(n * UFFD_MSG_SIZE);
    const count = this.#fillMsgs(proc, out, n);
    return count === n ? out : out.slice(0, count * UFFD_MSG_SIZE);
  }

  /**
   * `out` as 32-bit words, for a buffer of messages that allows it (word-aligned, not resizable,
   * on a little-endian host): the last such buffer's view is kept, so a handler that reads into
   * the same buffer each time gets its messages written 4 bytes a store with no new view.
   */
  #msgWords(out: Uint8Array): Int32Array | null {
    if (out === this.#wordsOf) return this.#words;
    const buf = out.buffer as ArrayBuffer & { resizable?: boolean; growable?: boolean };
    const words = LITTLE_ENDIAN && (out.byteOffset & 3) === 0 && buf.resizable !== true && buf.growable !== true ? new Int32Array(buf, out.byteOffset, out.length >>> 2) : null;
    this.#wordsOf = out;
    this.#words = words;
    return words;
  }

  /** #msgWords()' last buffer and its view (null: bytes one by one). */
  #wordsOf: Uint8Array | null = null;
  #words: Int32Array | null = null;

  /**
   * userfaultfd_ctx_read() up to `n` times (n <= the messages queued): writes each message over
   * its 32 bytes of `out` and returns how many were written, at least one (or it throws).
   */
  #fillMsgs(proc: Process, out: Uint8Array, n: number): number {
    let count = 0;
    const words = this.#pending.length > 0 ? this.#msgWords(out) : null;
    while (count < n) {
      const off = count * UFFD_MSG_SIZE;
      const f = this.#pending.moveHeadTo(this.#read);
      if (f !== null) {
        if (words !== null) encodeFaultMsgWords(words, off >>> 2, f);
        else encodeFaultMsg(out, off, f);
        count++;
        continue;
      }
      const ev = this.#events.first()!;
      if (ev.forkCtx !== null) {
        let ufd: number;
        try {
          ufd = resolveUserfaultFork(ev.forkCtx, proc);
        } catch (e) {
          // The event stays queued; the error is reported only if nothing was read yet.
          if (count === 0) throw e;
          break;
        }
        encodeUffdMsg({ event: UFFD_EVENT_FORK, arg: { fork: { ufd } } }, out, off);
      } else {
        encodeUffdMsg(ev.msg, out, off);
      }
      this.#finishEvent(ev, true);
      count++;
    }
    return count;
  }

  /**
   * Mirrors fs/userfaultfd.c:userfaultfd_poll(): POLLERR before UFFDIO_API and on a blocking fd
   * (poll never promises that read won't block); POLLIN while a fault is unread or an event is
   * queued.
   */
  poll(file: OpenFile): number {
    // Linux signals the release only as the EPOLLHUP wake key: a file still referenced cannot
    // be released, so this branch serves stale references only.
    if (this.released) return POLLHUP;
    if (!this.initialized) return POLLERR;
    if ((file.flags & O_NONBLOCK) === 0) return POLLERR;
    return this.#pending.length > 0 || this.#events.length > 0 ? POLLIN : 0;
  }

  pollWait(_file: OpenFile, notify: () => void): () => void {
    if (!this.#fdWaiters.includes(notify)) this.#fdWaiters.push(notify);
    return () => removeItem(this.#fdWaiters, notify);
  }

  /**
   * Mirrors fs/userfaultfd.c:userfaultfd_release(): unregister everything (uffd-wp cleared),
   * wake every blocked fault (they retry unregistered) and every event waiter, EPOLLHUP.
   */
  release(): void {
    this.released = true;
    userfaultfdReleaseAll(this.mm, this);
    this.wakeRange(0, 0);
    for (const ev of this.#events.live()) this.#finishEvent(ev, false);
    this.#notifyFd();
    this.#unhookOwner();
  }

  // --- ioctl -------------------------------------------------------------------------------

  /**
   * Mirrors fs/userfaultfd.c:userfaultfd_ioctl(). Synchronous ioctls settle without extra
   * promise hops; only a COPY whose source must be faulted in awaits.
   */
  ioctl(file: OpenFile, proc: Process, request: number, arg: object): Promise<number> {
    let r: number | Promise<number>;
    try {
      r = this.#dispatch(proc, request >>> 0, arg);
    } catch (e) {
      return Promise.reject(e);
    }
    if (typeof r === "number") return r === 0 ? RESOLVED_ZERO : Promise.resolve(r);
    // fdget() for an ioctl that sleeps (a COPY faulting its source in): closing the fd meanwhile
    // does not release the context under it.
    file.get();
    const put = (): void => file.put();
    r.then(put, put);
    return r;
  }

  #dispatch(proc: Process, cmd: number, arg: object): number | Promise<number> {
    // The resolving ioctl of every fault first (none of the checks below applies to it).
    if (cmd === UFFDIO_COPY && this.initialized) return this.#copy(proc, arg);
    if (cmd === UFFDIO_ZEROPAGE && this.initialized) return this.#zeropage(arg);
    if (cmd === UFFDIO_WRITEPROTECT && this.initialized) return this.#writeprotect(arg);
    if (cmd !== UFFDIO_API && !this.initialized) fail("EINVAL", ioctlName(cmd));
    // Release policy (5.7-6.7): CONTINUE (5.13), POISON (6.6) and MOVE (6.8) exist only from the
    // release that added them; before it the request falls to the switch's default, EINVAL.
    // (Their _IOC_NR()s, 0x05, 0x07 and 0x08, are all in the low word of the release's mask.)
    if ((cmd === UFFDIO_CONTINUE || cmd === UFFDIO_POISON || cmd === UFFDIO_MOVE) && ((this.#rangeIoctlsLow >>> (cmd & 0xff)) & 1) === 0) {
      return fail("EINVAL", `0x${cmd.toString(16)}`);
    }
    switch (cmd) {
      case UFFDIO_API:
        return this.#api(proc, arg);
      case UFFDIO_REGISTER:
        return this.#register(arg);
      case UFFDIO_UNREGISTER:
        return this.#unregister(arg);
      case UFFDIO_WAKE:
        return this.#wake(arg);
      case UFFDIO_COPY:
        return this.#copy(proc, arg);
      case UFFDIO_ZEROPAGE:
        return this.#zeropage(arg);
      case UFFDIO_CONTINUE:
        // Release policy (5.13-6.4): UFFDIO_CONTINUE_MODE_WP came in 6.5; before it the bit is EINVAL.
        return this.#mfillRange(arg, "UFFDIO_CONTINUE", "mapped", UFFDIO_CONTINUE_MODE_DONTWAKE, this.#kernel.core.profile.continueModeWp ? UFFDIO_CONTINUE_MODE_WP : 0, MFILL_ATOMIC.CONTINUE);
      case UFFDIO_POISON:
        return this.#mfillRange(arg, "UFFDIO_POISON", "updated", UFFDIO_POISON_MODE_DONTWAKE, 0, MFILL_ATOMIC.POISON);
      case UFFDIO_WRITEPROTECT:
        return this.#writeprotect(arg);
      case UFFDIO_MOVE:
        return this.#move(proc, arg);
      default:
        return fail("EINVAL", `0x${cmd.toString(16)}`);
    }
  }

  /** Mirrors fs/userfaultfd.c:userfaultfd_api(). Every failure writes the struct back zeroed. */
  #api(proc: Process, arg: object): number {
    const what = "UFFDIO_API";
    const a = argObject(arg, what);
    const api = u64(a.api, what);
    let features = BigInt(u64(a.features, what));
    const reject = (code: ErrnoCode): never => {
      if (!putUser(a, "api", 0) || !putUser(a, "features", 0) || !putUser(a, "ioctls", 0n)) fail("EFAULT", what);
      return fail(code, what);
    };
    const offered = this.#kernel.core.profile.apiFeatures;
    if (api !== UFFD_API) reject("EINVAL");
    // Release policy (5.7, 5.10, 5.18): unknown feature bits are EINVAL before the EPERM of EVENT_FORK; from
    // 6.10 (1723f04caacb) they are checked after it, against the features the kernel offers.
    if (this.#kernel.core.profile.apiFeatureCheckFirst && (features & ~BigInt(offered)) !== 0n) reject("EINVAL");
    if ((features & BigInt(UFFD_FEATURE_EVENT_FORK)) !== 0n && !proc.capable("CAP_SYS_PTRACE")) reject("EPERM");
    // WP_ASYNC relies on WP_UNPOPULATED: it is chosen unconditionally.
    if ((features & BigInt(UFFD_FEATURE_WP_ASYNC)) !== 0n) features |= BigInt(UFFD_FEATURE_WP_UNPOPULATED);
    // Release policy (5.7-6.18): the features offered, and accepted, are the release's
    // UFFD_API_FEATURES; a bit the release does not know is EINVAL on every profile.
    if ((features & ~BigInt(offered)) !== 0n) reject("EINVAL");
    if (!putUser(a, "api", UFFD_API) || !putUser(a, "features", offered) || !putUser(a, "ioctls", UFFD_API_IOCTLS)) {
      fail("EFAULT", what);
    }
    if (this.features !== 0) reject("EINVAL");
    this.features = (Number(features) | FEATURE_INITIALIZED) >>> 0;
    return 0;
  }

  /** Mirrors fs/userfaultfd.c:userfaultfd_register(). */
  #register(arg: object): number {
    const what = "UFFDIO_REGISTER";
    const a = argObject(arg, what);
    const { start, len } = readRange(a, what);
    const mode = u64(a.mode, what);
    const profile = this.#kernel.core.profile;
    // Release policy (5.7, 5.10): UFFD_API_REGISTER_MODES lacks MINOR (added in 5.13).
    if (mode === 0 || hasBitsOutside(mode, UFFD_API_REGISTER_MODES & profile.registerModes)) fail("EINVAL", what);
    let vmFlags = 0;
    if ((mode & UFFDIO_REGISTER_MODE_MISSING) !== 0) vmFlags |= VM_UFFD_MISSING;
    if ((mode & UFFDIO_REGISTER_MODE_WP) !== 0) vmFlags |= VM_UFFD_WP;
    if ((mode & UFFDIO_REGISTER_MODE_MINOR) !== 0) vmFlags |= VM_UFFD_MINOR;
    if (!validateRange(start, len)) fail("EINVAL", what);
    if (!this.mm.alive) fail("ENOMEM", what);
    const end = start + len;
    const vmas = this.mm.vmasIn(start, end);
    if (vmas.length === 0) fail("EINVAL", what);
    const wpAsync = (this.features & UFFD_FEATURE_WP_ASYNC) !== 0;
    for (const cur of vmas) {
      if (!vmaCanUserfault(cur, vmFlags, wpAsync, profile)) fail("EINVAL", what);
      // UFFDIO_COPY fills file holes even without PROT_WRITE: a shared mapping needs write
      // permission on the file.
      if ((cur.flags & VM_MAYWRITE) === 0) fail("EPERM", what);
      if (cur.uffdCtx !== null && cur.uffdCtx !== this) fail("EBUSY", what);
    }
    // split_vma() at the range ends, for a vma whose registration changes: not past
    // vm.max_map_count (ENOMEM), as vma_modify_flags_uffd() fails.
    const changes = (v: Vma): boolean => !(v.uffdCtx === this && (v.flags & vmFlags) === vmFlags);
    if (!this.mm.mayAddVmas(endSplits(vmas, start, end, changes))) fail("ENOMEM", what);
    userfaultfdRegisterRange(this, vmFlags, start, end);
    // The ioctls guaranteed to work on the range (hugetlb would get the BASIC set).
    let ioctls = profile.rangeIoctls;
    if ((mode & UFFDIO_REGISTER_MODE_WP) === 0) ioctls &= ~(1n << BigInt(_UFFDIO_WRITEPROTECT));
    if ((mode & UFFDIO_REGISTER_MODE_MINOR) === 0) ioctls &= ~(1n << BigInt(_UFFDIO_CONTINUE));
    if (!putUser(a, "ioctls", ioctls)) fail("EFAULT", what);
    return 0;
  }

  /**
   * Mirrors fs/userfaultfd.c:userfaultfd_unregister(). Faults blocked in a vma that had
   * MISSING mode are woken (only those: a WP-only vma's waiters stay blocked).
   */
  #unregister(arg: object): number {
    const what = "UFFDIO_UNREGISTER";
    const a = argObject(arg, what);
    const start = u64(a.start, what);
    const len = u64(a.len, what);
    if (!validateRange(start, len)) fail("EINVAL", what);
    if (!this.mm.alive) fail("ENOMEM", what);
    const end = start + len;
    const vmas = this.mm.vmasIn(start, end);
    if (vmas.length === 0) fail("EINVAL", what);
    const wpAsync = (this.features & UFFD_FEATURE_WP_ASYNC) !== 0;
    for (const cur of vmas) {
      // Unregistering through another userfaultfd than the one that registered is refused.
      if (cur.uffdCtx !== null && cur.uffdCtx !== this) fail("EINVAL", what);
      if (!vmaCanUserfault(cur, cur.flags, wpAsync, this.#kernel.core.profile)) fail("EINVAL", what);
    }
    if (!vmas.some((v) => v.uffdCtx !== null)) return 0;
    if (!this.mm.mayAddVmas(endSplits(vmas, start, end, (v) => v.uffdCtx !== null))) fail("ENOMEM", what);
    for (const vma of this.mm.isolateRange(start, end)) {
      if (vma.uffdCtx === null) continue;
      if (userfaultfdMissing(vma)) (vma.uffdCtx as UserfaultfdCtx).wakeRange(vma.start, vma.end - vma.start);
      userfaultfdClearVma(vma);
    }
    this.mm.mergeRange(start, end);
    return 0;
  }

  /** Mirrors fs/userfaultfd.c:userfaultfd_wake(): no vma is looked at. */
  #wake(arg: object): number {
    const what = "UFFDIO_WAKE";
    const a = argObject(arg, what);
    const start = u64(a.start, what);
    const len = u64(a.len, what);
    if (!validateRange(start, len)) fail("EINVAL", what);
    this.wakeRange(start, len, true);
    return 0;
  }

  /**
   * The result-field protocol of COPY / ZEROPAGE / CONTINUE / POISON / MOVE: the field gets
   * the bytes done or -errno; [start, start+done) is woken unless DONTWAKE; a short result is
   * EAGAIN.
   */
  #finishResult(a: Arg, field: ResultField, what: string, ret: number, start: number, len: number, dontwake: boolean): number {
    if (!putResult(a, field, ret)) fail("EFAULT", what);
    if (ret < 0) fail(errnoCode(-ret), what);
    if (ret > 0) this.#sched.progress++;
    // `start` is page-aligned (every caller validated it): a page done wakes through #wakePage().
    if (!dontwake) {
      if (ret === PAGE_SIZE) this.#wakePage(start);
      else this.wakeRange(start, ret, true);
    }
    if (ret !== len) fail("EAGAIN", what);
    return 0;
  }

  /** While an event is being delivered: field = -EAGAIN before the arguments are even read. */
  #checkMmapChanging(arg: object, field: ResultField, what: string): void {
    if (this.mmapChanging === 0) return;
    if (typeof arg !== "object" || arg === null || !putResult(arg as Arg, field, -11)) fail("EFAULT", what);
    fail("EAGAIN", what);
  }

  /** Mirrors fs/userfaultfd.c:userfaultfd_copy(). */
  #copy(proc: Process, arg: object): number | Promise<number> {
    const what = "UFFDIO_COPY";
    if (this.mmapChanging !== 0) this.#checkMmapChanging(arg, "copy", what);
    const a = argObject(arg, what);
    const dst = u64(a.dst, what);
    const len = u64(a.len, what);
    const mode = u64(a.mode, what);
    const srcArg = a.src;
    const bytes = srcArg instanceof Uint8Array ? srcArg : null;
    let srcAddr = 0;
    if (bytes === null) {
      srcAddr = u64(a.src, what);
      if (!validateUnalignedRange(srcAddr, len)) fail("EINVAL", what);
    }
    // validateRange(dst, len); for one page, its checks come down to these two.
    if (len === PAGE_SIZE ? pageOffset(dst) !== 0 || dst > TASK_SIZE - PAGE_SIZE : !validateRange(dst, len)) fail("EINVAL", what);
    if (hasBitsOutside(mode, UFFDIO_COPY_MODE_DONTWAKE | UFFDIO_COPY_MODE_WP)) fail("EINVAL", what);
    if (!this.mm.alive) fail("ESRCH", what);
    if (bytes !== null && len === PAGE_SIZE && mode === 0 && bytes.length >= PAGE_SIZE && mfillCopyAnonPage(this, dst, bytes) === PAGE_SIZE) {
      // One page from a buffer into a missing anon page (the straight path installed it): what
      // #copyDone() does for a whole page, without its general cases.
      this.#sched.charge(COST.pageCopy);
      if (!putResult(a, "copy", PAGE_SIZE)) fail("EFAULT", what);
      this.#sched.progress++;
      this.#wakePage(dst);
      return 0;
    }
    return this.#copyGeneral(proc, a, dst, srcAddr, bytes, len, mode);
  }

  /**
   * #copy() past its checks when the straight path did not take it: mfill_atomic() from the
   * buffer or the caller's memory. Kept out of #copy() so that V8 inlines the straight path's
   * callees into it instead.
   */
  #copyGeneral(proc: Process, a: Arg, dst: number, srcAddr: number, bytes: Uint8Array | null, len: number, mode: number): number | Promise<number> {
    let src: MfillSource;
    if (bytes !== null) {
      src = (this.#bytesSource ?? new BytesSource()).use(bytes);
      this.#bytesSource = null;
    } else {
      src = userSource(proc);
    }
    const ret = mfillAtomic(this, dst, srcAddr, len, MFILL_ATOMIC.COPY, (mode & UFFDIO_COPY_MODE_WP) !== 0, src);
    const dontwake = (mode & UFFDIO_COPY_MODE_DONTWAKE) !== 0;
    if (typeof ret === "number") {
      // Done with the source: it may serve the next COPY (a slow copy keeps its own).
      if (src instanceof BytesSource) this.#bytesSource = src.use(NO_BYTES);
      return this.#copyDone(a, ret, dst, len, dontwake);
    }
    return ret.then((done) => this.#copyDone(a, done, dst, len, dontwake));
  }

  #copyDone(a: Arg, ret: number, dst: number, len: number, dontwake: boolean): number {
    if (ret > 0) this.#sched.charge((COST.pageCopy * ret) / PAGE_SIZE);
    return this.#finishResult(a, "copy", "UFFDIO_COPY", ret, dst, len, dontwake);
  }

  /**
   * Mirrors fs/userfaultfd.c:userfaultfd_zeropage(): #mfillRange() for ZEROPAGE, with the range
   * read in place, and one page, mode 0, into a none pte of a private anon vma taking the
   * straight path (mfillZeropageAnonPage(): the same checks and pte as mfillAtomic()).
   */
  #zeropage(arg: object): number {
    const what = "UFFDIO_ZEROPAGE";
    this.#checkMmapChanging(arg, "zeropage", what);
    const a = argObject(arg, what);
    // readRange(), in its order (range, start, len), with loads of this ioctl's struct only.
    const range = argObject(a.range, what);
    const start = u64(range.start, what);
    const len = u64(range.len, what);
    const mode = u64(a.mode, what);
    if (!validateRange(start, len)) fail("EINVAL", what);
    if (hasBitsOutside(mode, UFFDIO_ZEROPAGE_MODE_DONTWAKE)) fail("EINVAL", what);
    if (!this.mm.alive) fail("ESRCH", what);
    if (len === PAGE_SIZE && mode === 0 && mfillZeropageAnonPage(this, start) === PAGE_SIZE) {
      // #finishResult() for a whole page done and woken.
      if (!putResult(a, "zeropage", PAGE_SIZE)) fail("EFAULT", what);
      this.#sched.progress++;
      this.#wakePage(start);
      return 0;
    }
    const ret = mfillAtomic(this, start, 0, len, MFILL_ATOMIC.ZEROPAGE, false, null) as number;
    return this.#finishResult(a, "zeropage", what, ret, start, len, (mode & UFFDIO_ZEROPAGE_MODE_DONTWAKE) !== 0);
  }

  /** ZEROPAGE, CONTINUE and POISON: fs/userfaultfd.c:userfaultfd_zeropage() / _continue() / _poison(). */
  #mfillRange(arg: object, what: string, field: ResultField, dontwakeBit: number, wpBit: number, kind: MfillAtomicMode): number {
    this.#checkMmapChanging(arg, field, what);
    const a = argObject(arg, what);
    // readRange(), in its order (range, start, len), without its object.
    const range = argObject(a.range, what);
    const start = u64(range.start, what);
    const len = u64(range.len, what);
    const mode = u64(a.mode, what);
    if (!validateRange(start, len)) fail("EINVAL", what);
    if (hasBitsOutside(mode, dontwakeBit | wpBit)) fail("EINVAL", what);
    if (!this.mm.alive) fail("ESRCH", what);
    const wp = (mode & wpBit) !== 0;
    // One page of CONTINUE (a minor fault's resolve) skips mfillAtomic()'s record and loop.
    const ret = kind === MFILL_ATOMIC.CONTINUE && len === PAGE_SIZE ? mfillContinuePage(this, start, wp) : (mfillAtomic(this, start, 0, len, kind, wp, null) as number);
    return this.#finishResult(a, field, what, ret, start, len, (mode & dontwakeBit) !== 0);
  }

  /** Mirrors fs/userfaultfd.c:userfaultfd_writeprotect(). */
  #writeprotect(arg: object): number {
    const what = "UFFDIO_WRITEPROTECT";
    if (this.mmapChanging !== 0) fail("EAGAIN", what);
    const a = argObject(arg, what);
    // readRange(), in its order (range, start, len), with loads of this ioctl's struct only.
    const range = argObject(a.range, what);
    const start = u64(range.start, what);
    const len = u64(range.len, what);
    const mode = u64(a.mode, what);
    if (!validateRange(start, len)) fail("EINVAL", what);
    if (hasBitsOutside(mode, UFFDIO_WRITEPROTECT_MODE_WP | UFFDIO_WRITEPROTECT_MODE_DONTWAKE)) fail("EINVAL", what);
    const modeWp = (mode & UFFDIO_WRITEPROTECT_MODE_WP) !== 0;
    const dontwake = (mode & UFFDIO_WRITEPROTECT_MODE_DONTWAKE) !== 0;
    if (modeWp && dontwake) fail("EINVAL", what);
    if (!this.mm.alive) fail("ESRCH", what);
    if (mode === 0 && len === PAGE_SIZE && mwriteprotectUnprotectPage(this, start)) {
      // The resolve of one write-protect fault: the page's pte, then the wake of the page.
      this.#wakePage(start);
      return 0;
    }
    const ret = mwriteprotectRange(this, start, len, modeWp);
    if (ret < 0) fail(errnoCode(-ret), what);
    if (!modeWp && !dontwake) this.wakeRange(start, len, true);
    return 0;
  }

  /** Mirrors fs/userfaultfd.c:userfaultfd_move(). */
  #move(proc: Process, arg: object): number {
    const what = "UFFDIO_MOVE";
    this.#checkMmapChanging(arg, "move", what);
    const a = argObject(arg, what);
    const dst = u64(a.dst, what);
    const src = u64(a.src, what);
    const len = u64(a.len, what);
    const mode = u64(a.mode, what);
    // No cross-mm moves.
    if (this.mm !== proc.mm) fail("EINVAL", what);
    if (!validateRange(dst, len) || !validateRange(src, len)) fail("EINVAL", what);
    if (hasBitsOutside(mode, UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES | UFFDIO_MOVE_MODE_DONTWAKE)) fail("EINVAL", what);
    if (!this.mm.alive) fail("ESRCH", what);
    const ret = movePages(this, dst, src, len, mode);
    return this.#finishResult(a, "move", what, ret, dst, len, (mode & UFFDIO_MOVE_MODE_DONTWAKE) !== 0);
  }
}

/**
 * The index by page of a context's blocked faults, read or not, that its two FaultQueues share.
 * Once the queues have held INDEX_MIN waiters together, every waiter is hashed by page into
 * INDEX_BUCKETS chains, linked through the waiters themselves (a few stores per fault, no
 * allocation), and a wake of a range of at most INDEX_BUCKETS pages looks up only the chains of
 * its pages instead of walking every waiter: with 32 threads blocked, resolving one fault does
 * not scan the other 31 (and the 32 faults they raised again meanwhile). A read moves a fault
 * from one queue to the other (FaultQueue.moveHeadTo()) without taking it out of its chain, and
 * a one-page resolve finds the page's waiter in one chain whichever queue holds it. A context
 * that never held more than one fault (a handler resolving faults one by one) keeps no index.
 */
class FaultIndex {
  /** Chain heads by page hash; null until built. */
  buckets: Array<FaultWaiter | null> | null = null;
  /** Waiters in the queues sharing this index. */
  live = 0;
  /** The queues sharing this index (for its build). */
  readonly queues: FaultQueue[] = [];

  /** Indexes every waiter of the queues. */
  build(): void {
    const buckets = new Array<FaultWaiter | null>(INDEX_BUCKETS).fill(null);
    for (const q of this.queues) for (let f = q.head; f !== null; f = f.qNext) bucketAdd(buckets, f);
    this.buckets = buckets;
  }

  /**
   * The waiter of either queue whose address lies in [page, page + PAGE_SIZE) (`page`
   * page-aligned) if it is the only one: null if there is none, undefined if there are several.
   * Looks up the page's chain when the index is built, else walks both queues (then fewer than
   * INDEX_MIN waiters in all).
   */
  soleInPage(page: number, a: FaultQueue, b: FaultQueue): FaultWaiter | null | undefined {
    const end = page + PAGE_SIZE;
    let hit: FaultWaiter | null = null;
    const buckets = this.buckets;
    if (buckets !== null) {
      for (let f: FaultWaiter | null = buckets[bucketOf(page)]!; f !== null; f = f.bNext) {
        if (f.address >= page && f.address < end) {
          if (hit !== null) return undefined;
          hit = f;
        }
      }
      return hit;
    }
    for (let f = a.head; f !== null; f = f.qNext) {
      if (f.address >= page && f.address < end) {
        if (hit !== null) return undefined;
        hit = f;
      }
    }
    for (let f = b.head; f !== null; f = f.qNext) {
      if (f.address >= page && f.address < end) {
        if (hit !== null) return undefined;
        hit = f;
      }
    }
    return hit;
  }
}

/**
 * A FIFO of blocked faults (a wait queue of handle_userfault()): O(1) push at the tail, shift at
 * the head and removal anywhere (the links live on the waiters, each in at most one queue).
 * take() hands entries out in queue order, as a walk of the wait queue would. Its entries are
 * indexed by page in the FaultIndex it shares with the context's other queue.
 */
class FaultQueue {
  #head: FaultWaiter | null = null;
  #tail: FaultWaiter | null = null;
  #live = 0;
  #seq = 0;
  readonly #index: FaultIndex;
  /** take()'s scratch list, empty between calls. */
  readonly #found: FaultWaiter[] = [];

  constructor(index: FaultIndex) {
    this.#index = index;
    index.queues.push(this);
  }

  get length(): number {
    return this.#live;
  }

  push(f: FaultWaiter): void {
    this.#append(f);
    const index = this.#index;
    index.live++;
    const buckets = index.buckets;
    if (buckets !== null) bucketAdd(buckets, f);
    else if (index.live >= INDEX_MIN) index.build();
  }

  /** Links `f` at the tail (its index entry, if any, is the caller's business). */
  #append(f: FaultWaiter): void {
    f.qSeq = ++this.#seq;
    f.qPrev = this.#tail;
    f.qNext = null;
    f.queue = this;
    if (this.#tail === null) this.#head = f;
    else this.#tail.qNext = f;
    this.#tail = f;
    this.#live++;
  }

  /** The oldest entry, or null. */
  get head(): FaultWaiter | null {
    return this.#head;
  }

  /**
   * Moves the oldest entry to the tail of `to` (a queue sharing this one's index), as unlink()
   * then to.push() would, without taking it out of the index and back: returns it, or null.
   */
  moveHeadTo(to: FaultQueue): FaultWaiter | null {
    const f = this.#head;
    if (f === null) return null;
    this.#detach(f);
    to.#append(f);
    return f;
  }

  /** Removes `f`, an entry of this queue. */
  unlink(f: FaultWaiter): void {
    this.#detach(f);
    f.queue = null;
    const index = this.#index;
    index.live--;
    if (index.buckets !== null) bucketDelete(index.buckets, f);
  }

  /** Unlinks `f` from this queue's list (not from the index). */
  #detach(f: FaultWaiter): void {
    if (f.qPrev === null) this.#head = f.qNext;
    else f.qPrev.qNext = f.qNext;
    if (f.qNext === null) this.#tail = f.qPrev;
    else f.qNext.qPrev = f.qPrev;
    f.qPrev = null;
    f.qNext = null;
    this.#live--;
  }

  /** The queue's only entry, unlinked, if its address is in [start, start+len); else null (and the queue stays). */
  takeOnly(start: number, len: number): FaultWaiter | null {
    const f = this.#head;
    if (f === null || f.address < start || f.address >= start + len) return null;
    this.unlink(f);
    return f;
  }

  /** Moves every entry whose address is in [start, start+len) (all, for len 0) to `out`, in queue order. */
  take(start: number, len: number, out: Waiter[]): void {
    if (this.#live === 0) return;
    const end = start + len;
    const found = this.#found;
    const buckets = this.#index.buckets;
    const first = pageDown(start);
    const pages = Math.ceil((end - first) / PAGE_SIZE);
    if (len !== 0 && buckets !== null && pages <= INDEX_BUCKETS && pages < this.#live) {
      // Each page of the range has its own chain (fewer pages than chains): look them up, for
      // this queue's entries.
      for (let page = first; page < end; page += PAGE_SIZE) {
        for (let f: FaultWaiter | null = buckets[bucketOf(page)]!; f !== null; f = f.bNext) if (f.queue === this && f.address >= start && f.address < end) found.push(f);
      }
      if (found.length > 1) found.sort(bySeq);
    } else {
      for (let f = this.#head; f !== null; f = f.qNext) if (len === 0 || (f.address >= start && f.address < end)) found.push(f);
    }
    for (let i = 0; i < found.length; i++) {
      const f = found[i]!;
      this.unlink(f);
      out.push(f);
    }
    // Emptied by pops, not `length = 0`, which would give the backing store back.
    while (found.length > 0) found.pop();
  }

  /** Empties the queue; returns its entries in order. */
  takeAll(): FaultWaiter[] {
    const out: FaultWaiter[] = [];
    this.take(0, 0, out);
    return out;
  }
}

/** The number of waiters (both queues together) from which a context keeps its FaultIndex (for good). */
const INDEX_MIN = 4;
/** Chains of a FaultIndex (a power of two): a wake of up to this many pages uses it. */
const INDEX_BUCKETS = 256;

/** The chain of the page holding `address`: the low bits of its page number. */
function bucketOf(address: number): number {
  return (address >>> PAGE_SHIFT) & (INDEX_BUCKETS - 1);
}

function bySeq(a: FaultWaiter, b: FaultWaiter): number {
  return a.qSeq - b.qSeq;
}

function bucketAdd(buckets: Array<FaultWaiter | null>, f: FaultWaiter): void {
  const b = bucketOf(f.address);
  const head = buckets[b]!;
  f.bPrev = null;
  f.bNext = head;
  if (head !== null) head.bPrev = f;
  buckets[b] = f;
}

function bucketDelete(buckets: Array<FaultWaiter | null>, f: FaultWaiter): void {
  if (f.bPrev === null) buckets[bucketOf(f.address)] = f.bNext;
  else f.bPrev.bNext = f.bNext;
  if (f.bNext !== null) f.bNext.bPrev = f.bPrev;
  f.bPrev = null;
  f.bNext = null;
}

/**
 * The queue of non-cooperative events (event_wqh): FIFO, O(1) per message. An event that leaves
 * out of order (abandoned by its raiser's death or the release) is only marked finished and
 * skipped when it reaches the head.
 */
class EventQueue {
  readonly #items: EventWaiter[] = [];
  #head = 0;
  #live = 0;

  get length(): number {
    return this.#live;
  }

  push(ev: EventWaiter): void {
    ev.queued = true;
    this.#items.push(ev);
    this.#live++;
  }

  /** The oldest unfinished event, or undefined. */
  first(): EventWaiter | undefined {
    const items = this.#items;
    while (this.#head < items.length && items[this.#head]!.finished) this.#head++;
    if (this.#head === items.length) {
      // Emptied by pops, not `length = 0`, which would give the backing store back.
      while (items.length > 0) items.pop();
      this.#head = 0;
      return undefined;
    }
    if (this.#head > 64 && this.#head * 2 > items.length) {
      items.splice(0, this.#head);
      this.#head = 0;
    }
    return items[this.#head];
  }

  /** The caller set ev.finished: one fewer live event (if it was queued here). */
  finished(ev: EventWaiter): void {
    if (ev.queued) this.#live--;
  }

  /** The unfinished events, oldest first. */
  live(): EventWaiter[] {
    return this.#items.slice(this.#head).filter((e) => !e.finished);
  }
}

/** How many vmas of a range (its first and last) must be split at its ends for a change. */
function endSplits(vmas: readonly Vma[], start: number, end: number, changes: (v: Vma) => boolean): number {
  const first = vmas[0]!;
  const last = vmas[vmas.length - 1]!;
  let n = first.start < start && changes(first) ? 1 : 0;
  if (last.end > end && changes(last)) n++;
  return n;
}

/** Removes the first `x` from `list`, keeping the order; nothing if absent. */
function removeItem<T>(list: T[], x: T): void {
  const i = list.indexOf(x);
  if (i < 0) return;
  for (let j = i + 1; j < list.length; j++) list[j - 1] = list[j]!;
  list.pop();
}

/** Tells one fd_wqh entry; with `now` (a fault was queued), a blocked one-message read reads it at once. */
function notifyFdWaiter(w: Waiter | (() => void), now: Scheduler | null): void {
  if (typeof w === "function") w();
  else if (now !== null && w.resumable instanceof BlockedRead && w.resumable.max === 1) w.wakeNow(now);
  else w.wake();
}

/**
 * Writes one UFFD_EVENT_PAGEFAULT record over all of its 32 bytes (msg_init() zeroes the
 * record: a reused buffer must not keep the previous message's bytes).
 */
function encodeFaultMsg(out: Uint8Array, off: number, f: FaultWaiter): void {
  // Byte by byte, little-endian: event, reserved, then arg.pagefault { flags, address, ptid }.
  const flags = f.flags;
  // The low and high halves of the u64 (an address is an integer below 2^53: `>>> 0` is mod 2^32).
  const lo = f.address >>> 0;
  const hi = Math.floor(f.address / 0x1_0000_0000);
  const ptid = f.ptid;
  out[off] = UFFD_EVENT_PAGEFAULT;
  out[off + 1] = 0;
  out[off + 2] = 0;
  out[off + 3] = 0;
  out[off + 4] = 0;
  out[off + 5] = 0;
  out[off + 6] = 0;
  out[off + 7] = 0;
  out[off + 8] = flags & 0xff;
  out[off + 9] = (flags >>> 8) & 0xff;
  out[off + 10] = (flags >>> 16) & 0xff;
  out[off + 11] = (flags >>> 24) & 0xff;
  out[off + 12] = 0;
  out[off + 13] = 0;
  out[off + 14] = 0;
  out[off + 15] = 0;
  out[off + 16] = lo & 0xff;
  out[off + 17] = (lo >>> 8) & 0xff;
  out[off + 18] = (lo >>> 16) & 0xff;
  out[off + 19] = (lo >>> 24) & 0xff;
  out[off + 20] = hi & 0xff;
  out[off + 21] = (hi >>> 8) & 0xff;
  out[off + 22] = (hi >>> 16) & 0xff;
  out[off + 23] = (hi >>> 24) & 0xff;
  out[off + 24] = ptid & 0xff;
  out[off + 25] = (ptid >>> 8) & 0xff;
  out[off + 26] = (ptid >>> 16) & 0xff;
  out[off + 27] = (ptid >>> 24) & 0xff;
  out[off + 28] = 0;
  out[off + 29] = 0;
  out[off + 30] = 0;
  out[off + 31] = 0;
}

/** The host stores the low byte of a word first (as x86-64 and arm64 Linux do). */
const LITTLE_ENDIAN = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

/**
 * encodeFaultMsg() into a little-endian word view of the buffer, the message at word `w`: the
 * same 32 bytes in 8 stores.
 */
function encodeFaultMsgWords(words: Int32Array, w: number, f: FaultWaiter): void {
  const address = f.address;
  words[w] = UFFD_EVENT_PAGEFAULT;
  words[w + 1] = 0;
  words[w + 2] = f.flags;
  words[w + 3] = 0;
  // The low and high halves of the u64 (an address is an integer below 2^53: `| 0` is mod 2^32).
  words[w + 4] = address | 0;
  words[w + 5] = Math.floor(address / 0x1_0000_0000);
  words[w + 6] = f.ptid;
  words[w + 7] = 0;
}

/** UFFDIO_COPY's source in the caller's memory: first with faults disabled, then with faults. */
function userSource(proc: Process): MfillSource {
  return {
    copyAtomic: (addr, dst, off) => copyFromUserAtomic(proc.mm, addr, dst, off),
    copySlow: async (addr, dst, off) => (await proc.copyUser(addr, dst.subarray(off, off + PAGE_SIZE), false)) === PAGE_SIZE,
    copyAtomicRun: (addr, dst, off, len) => copyFromUserAtomicRun(proc.mm, addr, dst, off, len),
  };
}

/**
 * UFFDIO_COPY's source given as bytes (`src` is a Uint8Array): offset 0 is the first byte; a
 * page reaching past the end of the buffer faults like an unmapped source (EFAULT).
 */
class BytesSource implements MfillSource {
  #bytes: Uint8Array = NO_BYTES;

  /** Points the source at `bytes` (the ioctl's src). */
  use(bytes: Uint8Array): this {
    this.#bytes = bytes;
    return this;
  }

  copyAtomic(addr: number, dst: Uint8Array, off: number): boolean {
    const bytes = this.#bytes;
    if (addr + PAGE_SIZE > bytes.length) return false;
    dst.set(addr === 0 && bytes.length === PAGE_SIZE ? bytes : bytes.subarray(addr, addr + PAGE_SIZE), off);
    return true;
  }

  copySlow(addr: number, dst: Uint8Array, off: number): Promise<boolean> {
    return Promise.resolve(this.copyAtomic(addr, dst, off));
  }

  copyAtomicRun(addr: number, dst: Uint8Array, off: number, len: number): number {
    const bytes = this.#bytes;
    const whole = Math.max(0, Math.min(len, Math.floor((bytes.length - addr) / PAGE_SIZE) * PAGE_SIZE));
    if (whole > 0) dst.set(bytes.subarray(addr, addr + whole), off);
    return whole;
  }
}

function ioctlName(cmd: number): string {
  const names: Record<number, string> = {
    [UFFDIO_API]: "UFFDIO_API",
    [UFFDIO_REGISTER]: "UFFDIO_REGISTER",
    [UFFDIO_UNREGISTER]: "UFFDIO_UNREGISTER",
    [UFFDIO_WAKE]: "UFFDIO_WAKE",
    [UFFDIO_COPY]: "UFFDIO_COPY",
    [UFFDIO_ZEROPAGE]: "UFFDIO_ZEROPAGE",
    [UFFDIO_WRITEPROTECT]: "UFFDIO_WRITEPROTECT",
    [UFFDIO_CONTINUE]: "UFFDIO_CONTINUE",
    [UFFDIO_POISON]: "UFFDIO_POISON",
    [UFFDIO_MOVE]: "UFFDIO_MOVE",
  };
  return names[cmd] ?? `0x${cmd.toString(16)}`;
}

/**
 * Mirrors fs/userfaultfd.c:resolve_userfault_fork(): the child's context gets its file now, in
 * the reader's fd table, O_RDONLY plus the context's O_CLOEXEC / O_NONBLOCK.
 */
function resolveUserfaultFork(ctx: UserfaultfdCtx, reader: Process): number {
  const file = new OpenFile(ctx, O_RDONLY | (ctx.flags & O_NONBLOCK));
  return reader.fds.install(file, ctx.flags & O_CLOEXEC, "read");
}

// --- creation --------------------------------------------------------------------------------

/** Mirrors fs/userfaultfd.c:new_userfaultfd(). */
function newUserfaultfd(proc: Process, flags: number, syscall: string): number {
  if (!Number.isInteger(flags) || hasBitsOutside(flags, UFFD_SHARED_FCNTL_FLAGS | UFFD_USER_MODE_ONLY)) {
    throw new ErrnoError("EINVAL", syscall);
  }
  const ctx = new UserfaultfdCtx(proc.kernel, proc.mm, flags, 0);
  const file = new OpenFile(ctx, O_RDONLY | (flags & O_NONBLOCK));
  try {
    return proc.fds.install(file, flags & O_CLOEXEC, syscall);
  } catch (e) {
    file.put();
    throw e;
  }
}

/**
 * Mirrors fs/userfaultfd.c:userfaultfd() and userfaultfd_syscall_allowed(): without
 * UFFD_USER_MODE_ONLY the caller needs CAP_SYS_PTRACE or vm.unprivileged_userfaultfd (checked
 * before the flags).
 */
export async function sysUserfaultfd(proc: Process, flags: number): Promise<number> {
  // Release policy (5.7, 5.10): no UFFD_USER_MODE_ONLY (5.11). Without CAP_SYS_PTRACE and with
  // vm.unprivileged_userfaultfd = 0 every call is EPERM, and the flag is an unknown bit (EINVAL).
  if (!proc.kernel.core.profile.userModeOnly) {
    if (!proc.capable("CAP_SYS_PTRACE") && !proc.kernel.options.unprivilegedUserfaultfd) throw new ErrnoError("EPERM", "userfaultfd");
    if (!Number.isInteger(flags) || hasBitsOutside(flags, UFFD_SHARED_FCNTL_FLAGS)) throw new ErrnoError("EINVAL", "userfaultfd");
  }
  const umo = Number.isInteger(flags) && (flags & UFFD_USER_MODE_ONLY) !== 0;
  if (!umo && !proc.capable("CAP_SYS_PTRACE") && !proc.kernel.options.unprivilegedUserfaultfd) {
    throw new ErrnoError("EPERM", "userfaultfd");
  }
  return newUserfaultfd(proc, flags, "userfaultfd");
}

/**
 * open("/dev/userfaultfd") then USERFAULTFD_IOC_NEW (fs/userfaultfd.c:userfaultfd_dev_ioctl()):
 * the device is mode 0600 root, so file permissions are the only gate (no capability or sysctl
 * check).
 *
 * Divergence from Linux: the /dev/userfaultfd descriptor itself is never installed, so the new
 * userfaultfd gets the lowest free fd (open + ioctl + close would leave it one higher).
 */
export async function sysOpenDevUserfaultfd(proc: Process, flags: number): Promise<number> {
  // Release policy (5.7-5.19): /dev/userfaultfd came in 6.1; before it the path does not exist.
  if (!proc.kernel.core.profile.devUserfaultfd) throw new ErrnoError("ENOENT", "open", "/dev/userfaultfd");
  if (!proc.capable("CAP_DAC_OVERRIDE")) throw new ErrnoError("EACCES", "open");
  return newUserfaultfd(proc, flags, "ioctl");
}

// --- the non-cooperative event hooks the mm syscalls call -------------------------------------

interface ForkEntry {
  readonly orig: UserfaultfdCtx;
  readonly child: UserfaultfdCtx;
}

interface UnmapEntry {
  readonly ctx: UserfaultfdCtx;
  readonly start: number;
  readonly end: number;
}

const ctxOf = (vma: Vma): UserfaultfdCtx | null => vma.uffdCtx as UserfaultfdCtx | null;

/** Mirrors fs/userfaultfd.c:dup_userfaultfd(): called for each child vma before its ptes are copied. */
function dupUserfaultfd(parentVma: Vma, childVma: Vma, list: ForkEntry[]): void {
  const octx = ctxOf(parentVma);
  if (octx === null) return;
  if ((octx.features & UFFD_FEATURE_EVENT_FORK) === 0) {
    userfaultfdResetCtx(childVma);
    return;
  }
  let entry = list.find((e) => e.orig === octx);
  if (entry === undefined) {
    entry = { orig: octx, child: octx.forkClone(childVma.mm!) };
    octx.mmapChanging++;
    list.push(entry);
  }
  childVma.uffdCtx = entry.child;
}

/** Mirrors fs/userfaultfd.c:dup_userfaultfd_complete(): one FORK event per parent context, in order. */
async function dupUserfaultfdComplete(list: ForkEntry[]): Promise<void> {
  for (const { orig, child } of list) {
    await orig.eventWaitCompletion({ event: UFFD_EVENT_FORK, arg: { fork: { ufd: 0 } } }, child);
  }
}

/**
 * Mirrors fs/userfaultfd.c:dup_userfaultfd_fail(): dup_mmap() failed after some child vmas were
 * pointed at new contexts. Each new context is released (its vmas lose their registration, as
 * userfaultfd_release_new() does) and the parent's mmap_changing comes back down, so the parent's
 * resolves stop answering EAGAIN.
 */
function dupUserfaultfdFail(list: ForkEntry[]): void {
  for (const { orig, child } of list.splice(0)) {
    child.abandonFork();
    orig.mmapChanging--;
  }
}

/** Mirrors fs/userfaultfd.c:userfaultfd_unmap_prep(): one entry per (ctx, start, end), deduplicated. */
function userfaultfdUnmapPrep(mm: Mm, start: number, end: number, list: UnmapEntry[]): void {
  for (const vma of mm.vmasIn(start, end)) {
    const ctx = ctxOf(vma);
    if (ctx === null || (ctx.features & UFFD_FEATURE_EVENT_UNMAP) === 0) continue;
    if (list.some((e) => e.ctx === ctx && e.start === start && e.end === end)) continue;
    ctx.mmapChanging++;
    list.push({ ctx, start, end });
  }
}

async function userfaultfdUnmapComplete(list: UnmapEntry[]): Promise<void> {
  for (const { ctx, start, end } of list) {
    await ctx.eventWaitCompletion({ event: UFFD_EVENT_UNMAP, arg: { remove: { start, end } } }, null);
  }
}

/** Mirrors fs/userfaultfd.c:userfaultfd_remove(): MADV_DONTNEED/FREE/REMOVE on a registered vma. */
async function userfaultfdRemove(vma: Vma, start: number, end: number): Promise<void> {
  const ctx = ctxOf(vma);
  if (ctx === null || (ctx.features & UFFD_FEATURE_EVENT_REMOVE) === 0) return;
  ctx.mmapChanging++;
  await ctx.eventWaitCompletion({ event: UFFD_EVENT_REMOVE, arg: { remove: { start, end } } }, null);
}

/**
 * Mirrors fs/userfaultfd.c:mremap_userfaultfd_prep(): with EVENT_REMAP the registration moves
 * with the vma and an event will follow; without it the vma is unregistered here.
 */
function mremapUserfaultfdPrep(vma: Vma): UserfaultfdCtx | null {
  const ctx = ctxOf(vma);
  if (ctx === null) return null;
  if ((ctx.features & UFFD_FEATURE_EVENT_REMAP) !== 0) {
    ctx.mmapChanging++;
    return ctx;
  }
  userfaultfdResetCtx(vma);
  return null;
}

/**
 * Mirrors fs/userfaultfd.c:mremap_userfaultfd_complete(). `to` not page-aligned means mremap
 * failed (an errno in Linux's return value): no event.
 *
 * Divergence from Linux: that failure path also undoes the prep's mmap_changing increment,
 * which 6.18 leaves raised.
 */
async function mremapUserfaultfdComplete(ctx: UserfaultfdCtx | null, from: number, to: number, len: number): Promise<void> {
  if (ctx === null) return;
  if (!Number.isInteger(to) || to < 0 || to % PAGE_SIZE !== 0) {
    ctx.mmapChanging--;
    return;
  }
  await ctx.eventWaitCompletion({ event: UFFD_EVENT_REMAP, arg: { remap: { from, to, len } } }, null);
}

/** The hooks mm syscalls call for userfaultfd (KernelCore.uffd). */
export function createUffdMmHooks(): UffdMmHooks {
  return {
    unmapPrep: (mm, start, end, list) => userfaultfdUnmapPrep(mm, start, end, list as UnmapEntry[]),
    unmapComplete: (_mm, list) => userfaultfdUnmapComplete(list as UnmapEntry[]),
    remove: userfaultfdRemove,
    mremapPrep: mremapUserfaultfdPrep,
    mremapComplete: (handle, from, to, len) => mremapUserfaultfdComplete(handle as UserfaultfdCtx | null, from, to, len),
    dupVma: (parent, child, list) => dupUserfaultfd(parent, child, list as ForkEntry[]),
    dupComplete: (list) => dupUserfaultfdComplete(list as ForkEntry[]),
    dupFail: (list) => dupUserfaultfdFail(list as ForkEntry[]),
  };
}
