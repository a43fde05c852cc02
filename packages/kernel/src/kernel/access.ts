/**
 * Accesses to user memory: a thread's loads and stores (user mode) and the kernel's
 * copy_to_user()/copy_from_user() for syscalls (kernel mode). Each page is checked against the
 * vma and the pte; anything the hardware would refuse goes through handle_mm_fault(), and a
 * fault that must wait for a userfaultfd sleeps until woken and then retries the access, as the
 * CPU re-executes the instruction (fs/userfaultfd.c:handle_userfault() returns VM_FAULT_RETRY).
 */
import { pageOffset as addrPageOffset } from "../lib/addr.ts";
import { BUG } from "../lib/assert.ts";
import {
  FAULT_FLAG_USER as MM_FAULT_FLAG_USER,
  FAULT_FLAG_WRITE as MM_FAULT_FLAG_WRITE,
  type FaultingTask,
  handleMmFaultPte as mmHandleMmFaultPte,
  VM_FAULT_HWPOISON as MM_VM_FAULT_HWPOISON,
  VM_FAULT_OOM as MM_VM_FAULT_OOM,
  VM_FAULT_RETRY as MM_VM_FAULT_RETRY,
  VM_FAULT_SIGBUS as MM_VM_FAULT_SIGBUS,
  VM_FAULT_SIGSEGV as MM_VM_FAULT_SIGSEGV,
  VmFault,
} from "../mm/memory.ts";
import type { Mm } from "../mm/mm.ts";
import type { Vma } from "../mm/vma.ts";
import * as pt from "../mm/page-table.ts";
import * as vm from "../mm/vma.ts";
import { PAGE_SIZE as UAPI_PAGE_SIZE } from "../uapi/mman.ts";
import { SignalError } from "../uapi/errno.ts";
import { COST as SCHED_COST, type Resumable, type SchedPoint, type Scheduler, type Sleepers, type Waiter } from "./sched.ts";

/** Why an access stopped short. */
export type AccessFault = "SIGSEGV" | "SIGBUS";

// V8 reads an imported binding through its module cell at each use (a load and a check that it
// is initialised); a module-local const is folded into the optimized code. The access path uses
// these constants and helpers on every page, so it takes module-local copies of them (all from
// modules that import nothing at run time, so they are initialised before this one).
const PAGE_SIZE = UAPI_PAGE_SIZE;
const pageOffset = addrPageOffset;
const PTE_DIRTY = pt.PTE_DIRTY;
const PTE_KIND_MASK = pt.PTE_KIND_MASK;
const PTE_PRESENT = pt.PTE_PRESENT;
const PTE_WRITE = pt.PTE_WRITE;
const PTE_YOUNG = pt.PTE_YOUNG;
const ptePfn = pt.ptePfn;
const VM_READ = vm.VM_READ;
const VM_WRITE = vm.VM_WRITE;
const VM_EXEC = vm.VM_EXEC;
const COST = SCHED_COST;
// mm/memory.ts is initialised before this module too (it does not import it, directly or not).
const FAULT_FLAG_USER = MM_FAULT_FLAG_USER;
const FAULT_FLAG_WRITE = MM_FAULT_FLAG_WRITE;
const VM_FAULT_HWPOISON = MM_VM_FAULT_HWPOISON;
const VM_FAULT_OOM = MM_VM_FAULT_OOM;
const VM_FAULT_RETRY = MM_VM_FAULT_RETRY;
const VM_FAULT_SIGBUS = MM_VM_FAULT_SIGBUS;
const VM_FAULT_SIGSEGV = MM_VM_FAULT_SIGSEGV;
const handleMmFaultPte = mmHandleMmFaultPte;

export interface AccessResult {
  /** Bytes copied before the access stopped. */
  done: number;
  /** null when all bytes were copied. */
  fault: AccessFault | null;
  /** The address that faulted. */
  address: number;
}

const NOOP = (): void => {};
const NO_BYTES = new Uint8Array(0);

/** Up to this many bytes, an access copies byte by byte. */
const SMALL_COPY = 16;

/** How many times one page may be faulted without blocking before we call it a kernel bug. */
const FAULT_SPINS_MAX = 16;

/**
 * A task's view of its process for user-memory accesses. One per thread, reused by every access
 * of that thread; the step* fields are walkStep()'s scratch, read right after it returns (before
 * any await), so concurrent accesses of one task never see each other's.
 */
export class AccessContext {
  readonly mm: Mm;
  readonly sched: Scheduler;
  readonly task: FaultingTask;
  /** Resolves when the process dies; a blocked access then stops. */
  readonly killed: Promise<void>;
  readonly isDead: () => boolean;
  /** The process's sleeping accesses: its exit wakes them all (they then see isDead()). */
  readonly sleepers: Sleepers;
  /** walkStep(): bytes done when it returned. */
  stepDone = 0;
  /** walkStep() returned STEP.SLEEP: the wait to sleep on. */
  stepSleeper: Waiter | null = null;
  /** walkStep() returned STEP.YIELD: resolves when the task is picked to run again. */
  stepYield: Promise<void> | null = null;
  /** The fault record walkStep() reuses (nothing holds it once handleMmFault() returned). */
  vmf: VmFault | null = null;
  /** A BlockedAccess of this task that completed, for its next blocked access (take it: set null). */
  spareBlocked: BlockedAccess | null = null;

  constructor(mm: Mm, sched: Scheduler, task: FaultingTask, killed: Promise<void>, isDead: () => boolean, sleepers: Sleepers) {
    this.mm = mm;
    this.sched = sched;
    this.task = task;
    this.killed = killed;
    this.isDead = isDead;
    this.sleepers = sleepers;
  }
}

/** walkStep()'s codes, for this module's own code: V8 folds an unexported const, not an exported one. */
const STEP_CODES = { DONE: 0, SIGSEGV: 1, SIGBUS: 2, SLEEP: 3, YIELD: 4 } as const;
/** What walkStep() stopped at. */
export const STEP = STEP_CODES;

/**
 * Copies between user memory [addr, addr+len) and `buf`: a store when `write`, else a load.
 * Returns how far it got; never throws for an access fault (the caller turns it into a signal
 * or EFAULT). Throws DeadTaskError if the process died while the access slept.
 */
export function accessUser(ctx: AccessContext, addr: number, buf: Uint8Array, write: boolean, user: boolean): Promise<AccessResult> {
  return walkUser(ctx, addr, buf.length, buf, write, user);
}

/**
 * Faults [addr, addr+len) in without copying anything, as GUP does for MAP_POPULATE and
 * MADV_POPULATE_*: a write fault (FOLL_WRITE) breaks COW and allocates, a read fault maps.
 */
export function faultInUser(ctx: AccessContext, addr: number, len: number, write: boolean, user: boolean): Promise<AccessResult> {
  return walkUser(ctx, addr, len, null, write, user);
}

function walkUser(ctx: AccessContext, addr: number, len: number, buf: Uint8Array | null, write: boolean, user: boolean): Promise<AccessResult> {
  let code: number;
  try {
    code = walkStep(ctx, addr, len, buf, write, user, 0, false);
  } catch (e) {
    return Promise.reject(e);
  }
  if (code === STEP_CODES.SLEEP || code === STEP_CODES.YIELD) return walkUserSlow(ctx, addr, len, buf, write, user, code);
  return Promise.resolve(stepResult(ctx, addr, code));
}

/** The AccessResult of a walkStep() that finished (DONE, SIGSEGV or SIGBUS). */
function stepResult(ctx: AccessContext, addr: number, code: number): AccessResult {
  const done = ctx.stepDone;
  return { done, fault: code === STEP_CODES.DONE ? null : code === STEP_CODES.SIGSEGV ? "SIGSEGV" : "SIGBUS", address: addr + done };
}

/**
 * The part of an access that sleeps: on a userfault until woken (then the access is retried, as
 * the CPU re-executes the instruction), or at a scheduling point until picked again.
 */
async function walkUserSlow(ctx: AccessContext, addr: number, len: number, buf: Uint8Array | null, write: boolean, user: boolean, code: number): Promise<AccessResult> {
  for (;;) {
    // Read the step's results before awaiting: another access of this task may reuse them.
    const done = ctx.stepDone;
    let resumed = false;
    if (code === STEP_CODES.YIELD) {
      await (ctx.stepYield as Promise<void>);
      resumed = true;
    } else if (code === STEP_CODES.SLEEP) {
      const sleeper = ctx.stepSleeper;
      await sleepBegin(ctx, addr + done, write, user);
      const rescheduled = sleepEnd(ctx, sleeper, addr + done);
      if (rescheduled !== null) await rescheduled;
    } else {
      return stepResult(ctx, addr, code);
    }
    code = walkStep(ctx, addr, len, buf, write, user, done, resumed);
  }
}

/**
 * Goes to sleep on the userfault walkStep() stopped at (ctx.stepSleeper): returns what to await.
 * The process's exit wakes the sleeper.
 */
function sleepBegin(ctx: AccessContext, a: number, write: boolean, user: boolean): Promise<unknown> {
  const sleeper = sleepRegister(ctx, a, write, user);
  return sleeper.promise;
}

/** sleepBegin() for a sleeper that is told by its Waiter's `resumable` instead of a promise: returns the Waiter. */
function sleepRegister(ctx: AccessContext, a: number, write: boolean, user: boolean): Waiter {
  const sched = ctx.sched;
  sched.observer?.({ kind: "block", tid: ctx.task.tid, address: a, write, user, now: sched.now });
  const sleeper = ctx.stepSleeper as Waiter;
  ctx.sleepers.add(sleeper);
  return sleeper;
}

/**
 * Divergence from Linux: there are no signals, so a sleep never ends in EINTR/ERESTARTSYS; a
 * sleeper whose process dies gets DeadTaskError instead (the effect of a killable wait).
 * Back from sleepBegin()'s wait: throws DeadTaskError if the process died meanwhile; else passes
 * the "wake" scheduling point (a promise to await when preempted there, else null).
 */
function sleepEnd(ctx: AccessContext, sleeper: Waiter | null, a: number): Promise<void> | null {
  if (sleeper !== null) ctx.sleepers.delete(sleeper);
  if (ctx.isDead()) throw new DeadTaskError();
  const sched = ctx.sched;
  sched.observer?.({ kind: "wake", tid: ctx.task.tid, address: a, now: sched.now });
  return sched.preemption === null ? null : preemptPoint(ctx, "wake");
}

/**
 * A user-mode access (Thread.read / Thread.write) that could not complete at once: asleep on a
 * userfault, preempted, or failed. `promise` resolves with `result` once the access is done and
 * rejects with the SignalError (or DeadTaskError, KernelBug). A userfault sleep takes no promise
 * of its own: the wake retries the access (Waiter.resumable), at once when a resolving ioctl
 * woke it (Waiter.wakeNow()), else in the scheduler's resume batch, and that settles `promise`:
 * a woken access costs no promise hop before the one its caller awaits. One that completed goes
 * back to its context (AccessContext.spareBlocked) for the task's next blocked access.
 */
export class BlockedAccess implements Resumable {
  #resolve: (value: unknown) => void = NOOP;
  #reject: (error: unknown) => void = NOOP;
  readonly #ctx: AccessContext;
  #addr = 0;
  #buf: Uint8Array = NO_BYTES;
  #write = false;
  #result: unknown = undefined;
  #done = 0;
  #sleeper: Waiter | null = null;

  /** The executor of this record's promises: it keeps their resolving functions here, made once per record. */
  readonly #settle: (resolve: (value: unknown) => void, reject: (error: unknown) => void) => void;

  constructor(ctx: AccessContext) {
    this.#ctx = ctx;
    this.#settle = (resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    };
  }

  /** A blocked access of `buf` at `addr` starts on this (new or spare) record: returns its promise. */
  begin(addr: number, buf: Uint8Array, write: boolean, result: unknown): Promise<unknown> {
    this.#addr = addr;
    this.#buf = buf;
    this.#write = write;
    this.#result = result;
    this.#done = 0;
    this.#sleeper = null;
    return new Promise(this.#settle);
  }

  /** Goes on after a walkStep() of this access returned `code` (its results are still in the context). */
  continueAfter(code: number): void {
    const ctx = this.#ctx;
    this.#done = ctx.stepDone;
    if (code === STEP_CODES.DONE) {
      const resolve = this.#resolve;
      const result = this.#result;
      // Done with this record: nothing refers to it any more (its waits are over).
      this.#resolve = NOOP;
      this.#reject = NOOP;
      this.#buf = NO_BYTES;
      this.#result = undefined;
      ctx.spareBlocked ??= this;
      resolve(result);
    } else if (code === STEP_CODES.SLEEP) {
      // sleepRegister(), with the address computed only for an observer.
      const sched = ctx.sched;
      sched.observer?.({ kind: "block", tid: ctx.task.tid, address: this.#addr + this.#done, write: this.#write, user: true, now: sched.now });
      const sleeper = ctx.stepSleeper as Waiter;
      ctx.sleepers.add(sleeper);
      this.#sleeper = sleeper;
      sleeper.resumable = this;
    } else if (code === STEP_CODES.YIELD) {
      (ctx.stepYield as Promise<void>).then(() => this.#retry(true), this.#reject);
    } else {
      this.#reject(new SignalError(code === STEP_CODES.SIGSEGV ? "SIGSEGV" : "SIGBUS", this.#addr + this.#done, this.#write ? "write" : "read"));
    }
  }

  /** The userfault wake (or the process's death): resume in the next batch. */
  woken(): void {
    this.#ctx.sched.resumeLater(this);
  }

  resume(): void {
    // sleepEnd(), with the address computed only for an observer (no number boxed per wake).
    const ctx = this.#ctx;
    const sleeper = this.#sleeper;
    let rescheduled: Promise<void> | null = null;
    try {
      if (sleeper !== null) ctx.sleepers.delete(sleeper);
      if (ctx.isDead()) throw new DeadTaskError();
      const sched = ctx.sched;
      sched.observer?.({ kind: "wake", tid: ctx.task.tid, address: this.#addr + this.#done, now: sched.now });
      if (sched.preemption !== null) rescheduled = preemptPoint(ctx, "wake");
    } catch (e) {
      this.#reject(e);
      return;
    }
    sleeper?.done();
    this.#sleeper = null;
    if (rescheduled !== null) rescheduled.then(() => this.#retry(false), this.#reject);
    else this.#retry(false);
  }

  /** The access again from where it stopped (the CPU re-executing the instruction). */
  #retry(resumed: boolean): void {
    let code: number;
    try {
      code = walkStep(this.#ctx, this.#addr, this.#buf.length, this.#buf, this.#write, true, this.#done, resumed);
    } catch (e) {
      this.#reject(e);
      return;
    }
    this.continueAfter(code);
  }
}

/**
 * One synchronous stretch of an access from `done`: copies page by page, handling faults,
 * until it is complete (STEP.DONE), stops at an access fault (SIGSEGV / SIGBUS), must sleep on
 * a userfault (SLEEP: ctx.stepSleeper) or was preempted (YIELD: ctx.stepYield). ctx.stepDone says
 * how far it got. `resumed`: the first page's scheduling point was already passed.
 */
export function walkStep(ctx: AccessContext, addr: number, len: number, buf: Uint8Array | null, write: boolean, user: boolean, done: number, resumed: boolean): number {
  const mm = ctx.mm;
  const mem = mm.core.mem;
  const pt = mm.pt;
  const preemptible = ctx.sched.preemption !== null;
  let spins = 0;
  let skipPoint = resumed;
  const from = done;
  while (done < len) {
    const a = addr + done;
    if (preemptible && !skipPoint) {
      const preempted = preemptPoint(ctx, "access");
      if (preempted !== null) {
        if (done > from) ctx.sched.progress++;
        ctx.stepDone = done;
        ctx.stepYield = preempted;
        return STEP_CODES.YIELD;
      }
    }
    skipPoint = false;
    const pageOff = pageOffset(a);
    const chunk = Math.min(len - done, PAGE_SIZE - pageOff);
    const vma = mm.vmaLookup(a);
    if (vma === null || (write ? (vma.flags & VM_WRITE) === 0 : (vma.flags & (VM_READ | VM_WRITE | VM_EXEC)) === 0)) {
      ctx.stepDone = done;
      return STEP_CODES.SIGSEGV;
    }
    const vpn = (a - pageOff) / PAGE_SIZE;
    const pte = pt.get(vpn);
    if ((pte & PTE_KIND_MASK) === PTE_PRESENT && (!write || (pte & PTE_WRITE) !== 0)) {
      const want = write ? PTE_YOUNG | PTE_DIRTY : PTE_YOUNG;
      if ((pte & want) !== want) pt.set(vpn, (pte | want) >>> 0);
      if (buf !== null) {
        const pfn = ptePfn(pte);
        if (write && chunk <= SMALL_COPY) {
          // A typical store: a few bytes, copied by hand (faster than set() and subarray()), in one call.
          mem.storeBytes(pfn, pageOff, buf, done, chunk);
        } else {
          // writable() before offset(): a compact frame may get its slot there.
          const bytes = write ? mem.writable(pfn, chunk === PAGE_SIZE) : mem.bytes(pfn);
          const off = mem.offset(pfn) + pageOff;
          if (chunk <= SMALL_COPY) for (let i = 0; i < chunk; i++) buf[done + i] = bytes[off + i]!;
          else if (write) bytes.set(chunk === buf.length ? buf : buf.subarray(done, done + chunk), off);
          else buf.set(bytes.subarray(off, off + chunk), done);
          if (write) mem.written(pfn);
        }
      }
      done += chunk;
      spins = 0;
      continue;
    }
    const flags = (write ? FAULT_FLAG_WRITE : 0) | (user ? FAULT_FLAG_USER : 0);
    const vmf = ctx.vmf === null ? newVmf(ctx, vma, a, flags) : ctx.vmf.reinit(vma, a, flags);
    ctx.sched.charge(COST.fault);
    // charge() may fire a poll timeout, which settles the poll and changes no page table: the
    // pte read above is still the fault's.
    const ret = handleMmFaultPte(vmf, pte);
    if (ret === 0) {
      if (++spins > FAULT_SPINS_MAX) BUG(`fault at 0x${a.toString(16)} handled ${spins} times without progress`);
      continue;
    }
    if ((ret & VM_FAULT_RETRY) !== 0) {
      if (vmf.sleeper !== null) {
        if (done > from) ctx.sched.progress++;
        ctx.stepDone = done;
        ctx.stepSleeper = vmf.sleeper;
        return STEP_CODES.SLEEP;
      }
      if (ctx.isDead()) throw new DeadTaskError();
      spins = 0;
      continue;
    }
    ctx.stepDone = done;
    if ((ret & VM_FAULT_SIGSEGV) !== 0) return STEP_CODES.SIGSEGV;
    if ((ret & (VM_FAULT_SIGBUS | VM_FAULT_HWPOISON | VM_FAULT_OOM)) !== 0) return STEP_CODES.SIGBUS;
    BUG(`unexpected fault result 0x${ret.toString(16)}`);
  }
  ctx.sched.progress++;
  ctx.stepDone = done;
  return STEP_CODES.DONE;
}

/** The context's reusable fault record, made on its first fault. */
function newVmf(ctx: AccessContext, vma: Vma, a: number, flags: number): VmFault {
  const vmf = new VmFault(ctx.mm, vma, a, flags, ctx.task);
  ctx.vmf = vmf;
  return vmf;
}

/**
 * A scheduling point (KernelOptions.preemption): the policy may preempt the task here; it then
 * resumes when picked, and stops if its process died meanwhile.
 */
function preemptPoint(ctx: AccessContext, point: SchedPoint): Promise<void> | null {
  const yielded = ctx.sched.schedPoint(ctx.task.tid, point);
  if (yielded === null) return null;
  return yielded.then(() => {
    if (ctx.isDead()) throw new DeadTaskError();
  });
}

/** The process died while one of its threads slept in the kernel. */
export class DeadTaskError extends Error {
  constructor() {
    super("the process exited while this access was blocked");
    this.name = "DeadTaskError";
  }
}
