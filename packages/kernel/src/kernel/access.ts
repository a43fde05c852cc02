/**
 * Accesses to user memory: a thread's loads and stores (user mode) and the kernel's
 * copy_to_user()/copy_from_user() for syscalls (kernel mode). Each page is checked against the
 * vma and the pte; anything the hardware would refuse goes through handle_mm_fault(), and a
 * fault that must wait for a userfaultfd sleeps until woken and then retries the access, as the
 * CPU re-executes the instruction (fs/userfaultfd.c:handle_userfault() returns VM_FAULT_RETRY).
 */
import { BUG } from "../lib/assert.ts";
import {
  FAULT_FLAG_USER,
  FAULT_FLAG_WRITE,
  type FaultingTask,
  handleMmFault,
  VM_FAULT_HWPOISON,
  VM_FAULT_OOM,
  VM_FAULT_RETRY,
  VM_FAULT_SIGBUS,
  VM_FAULT_SIGSEGV,
  VmFault,
} from "../mm/memory.ts";
import type { Mm } from "../mm/mm.ts";
import { PTE_DIRTY, PTE_KIND_MASK, PTE_PRESENT, PTE_WRITE, PTE_YOUNG, ptePfn } from "../mm/page-table.ts";
import { VM_READ, VM_WRITE, VM_EXEC } from "../mm/vma.ts";
import { PAGE_SIZE } from "../uapi/mman.ts";
import { COST, type SchedPoint, type Scheduler } from "./sched.ts";

/** Why an access stopped short. */
export type AccessFault = "SIGSEGV" | "SIGBUS";

export interface AccessResult {
  /** Bytes copied before the access stopped. */
  done: number;
  /** null when all bytes were copied. */
  fault: AccessFault | null;
  /** The address that faulted. */
  address: number;
}

/** How many times one page may be faulted without blocking before we call it a kernel bug. */
const FAULT_SPINS_MAX = 16;

export interface AccessContext {
  readonly mm: Mm;
  readonly sched: Scheduler;
  readonly task: FaultingTask;
  /** Resolves when the process dies; a blocked access then stops. */
  readonly killed: Promise<void>;
  readonly isDead: () => boolean;
}

/**
 * Copies between user memory [addr, addr+len) and `buf`: a store when `write`, else a load.
 * Returns how far it got; never throws for an access fault (the caller turns it into a signal
 * or EFAULT). Throws DeadTaskError if the process died while the access slept.
 */
export async function accessUser(ctx: AccessContext, addr: number, buf: Uint8Array, write: boolean, user: boolean): Promise<AccessResult> {
  return walkUser(ctx, addr, buf.length, buf, write, user);
}

/**
 * Faults [addr, addr+len) in without copying anything, as GUP does for MAP_POPULATE and
 * MADV_POPULATE_*: a write fault (FOLL_WRITE) breaks COW and allocates, a read fault maps.
 */
export async function faultInUser(ctx: AccessContext, addr: number, len: number, write: boolean, user: boolean): Promise<AccessResult> {
  return walkUser(ctx, addr, len, null, write, user);
}

async function walkUser(ctx: AccessContext, addr: number, len: number, buf: Uint8Array | null, write: boolean, user: boolean): Promise<AccessResult> {
  const { mm } = ctx;
  const mem = mm.core.mem;
  let done = 0;
  let spins = 0;
  while (done < len) {
    const a = addr + done;
    const preempted = ctx.sched.preemption === null ? null : preemptPoint(ctx, "access");
    if (preempted !== null) await preempted;
    const pageOff = a % PAGE_SIZE;
    const chunk = Math.min(len - done, PAGE_SIZE - pageOff);
    const vma = mm.vmaLookup(a);
    if (vma === null) return { done, fault: "SIGSEGV", address: a };
    if (write ? (vma.flags & VM_WRITE) === 0 : (vma.flags & (VM_READ | VM_WRITE | VM_EXEC)) === 0) {
      return { done, fault: "SIGSEGV", address: a };
    }
    const vpn = (a - pageOff) / PAGE_SIZE;
    const pte = mm.pt.get(vpn);
    if ((pte & PTE_KIND_MASK) === PTE_PRESENT && (!write || (pte & PTE_WRITE) !== 0)) {
      const want = write ? PTE_YOUNG | PTE_DIRTY : PTE_YOUNG;
      if ((pte & want) !== want) mm.pt.set(vpn, (pte | want) >>> 0);
      if (buf !== null) {
        const pfn = ptePfn(pte);
        const bytes = mem.bytes(pfn);
        const off = mem.offset(pfn) + pageOff;
        if (write) bytes.set(buf.subarray(done, done + chunk), off);
        else buf.set(bytes.subarray(off, off + chunk), done);
      }
      done += chunk;
      spins = 0;
      continue;
    }
    const vmf = new VmFault(mm, vma, a, (write ? FAULT_FLAG_WRITE : 0) | (user ? FAULT_FLAG_USER : 0), ctx.task);
    ctx.sched.charge(COST.fault);
    const ret = handleMmFault(vmf);
    if (ret === 0) {
      if (++spins > FAULT_SPINS_MAX) BUG(`fault at 0x${a.toString(16)} handled ${spins} times without progress`);
      continue;
    }
    if ((ret & VM_FAULT_RETRY) !== 0) {
      if (vmf.waiter !== null) {
        ctx.sched.observer?.({ kind: "block", tid: ctx.task.tid, address: a, write, user, now: ctx.sched.now });
        await Promise.race([vmf.waiter, ctx.killed]);
        if (!ctx.isDead()) ctx.sched.observer?.({ kind: "wake", tid: ctx.task.tid, address: a, now: ctx.sched.now });
      }
      if (ctx.isDead()) throw new DeadTaskError();
      const rescheduled = vmf.waiter === null || ctx.sched.preemption === null ? null : preemptPoint(ctx, "wake");
      if (rescheduled !== null) await rescheduled;
      spins = 0;
      continue;
    }
    if ((ret & VM_FAULT_SIGSEGV) !== 0) return { done, fault: "SIGSEGV", address: a };
    if ((ret & (VM_FAULT_SIGBUS | VM_FAULT_HWPOISON | VM_FAULT_OOM)) !== 0) return { done, fault: "SIGBUS", address: a };
    BUG(`unexpected fault result 0x${ret.toString(16)}`);
  }
  return { done, fault: null, address: addr + done };
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
