/**
 * The resolving ioctls, made race-safe. Every operation follows the uAPI's result protocol
 * (fs/userfaultfd.c: the result field holds bytes done if > 0, else a negative errno) and turns
 * the races a handler meets into outcomes instead of errors:
 *
 * - partial progress (field > 0, EAGAIN): the remainder is issued again from where it stopped;
 * - EAGAIN with field -EAGAIN ("mmap changing": a non-cooperative event is queued but unread):
 *   the operation waits until the handler loop has processed an event, then retries (bounded);
 * - EEXIST: the page is already there (a racing resolve, a prefetch, a stale message): the page
 *   is woken, counted as present, and a multi-page operation goes on with the next page;
 * - ENOENT: the range is no longer registered (unmap, mremap, unregister): the rest is woken, so
 *   a blocked thread retries and meets whatever Linux gives it now, and counted as gone;
 * - ESRCH: the target process exited; EBADF after close(): the userfaultfd is gone.
 *
 * A REMOVE that arrives while an operation carrying bytes is in flight (after `sinceEpoch`)
 * makes that page's bytes stale: the page gets zeros instead (or is skipped, for fills), as the
 * kernel documentation asks of non-cooperative managers ("zeromap" removed areas).
 *
 * Every operation takes the context whose fd it uses and whose page states it updates; this
 * module sits below everything that dispatches faults and knows nothing of listeners.
 */
import { ErrnoError, UFFD_FEATURE_SINCE, type Process, type UffdioCopy, type UffdioMove, type UffdioZeropage } from "@uffd/kernel";
import {
  PAGE_SIZE,
  UFFD_FEATURE_MOVE,
  UFFD_FEATURE_POISON,
  SIGBUS,
  UFFDIO_CONTINUE,
  UFFDIO_CONTINUE_MODE_WP,
  UFFDIO_COPY,
  UFFDIO_COPY_MODE_DONTWAKE,
  UFFDIO_COPY_MODE_WP,
  UFFDIO_MOVE,
  UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES,
  UFFDIO_MOVE_MODE_DONTWAKE,
  UFFDIO_POISON,
  UFFDIO_UNREGISTER,
  UFFDIO_WAKE,
  UFFDIO_WRITEPROTECT,
  UFFDIO_WRITEPROTECT_MODE_DONTWAKE,
  UFFDIO_WRITEPROTECT_MODE_WP,
  UFFDIO_ZEROPAGE,
} from "@uffd/kernel/uapi";
import type { UffdContext } from "./context.ts";
import { PAGE_STATE } from "./ranges.ts";
import type { Fault, InstallKind, Resolution } from "./types.ts";

/** The mfill family. "zeros" is UFFDIO_COPY of zero bytes: a zero page that can carry MODE_WP or replace a marker. */
export type MfillOp = "copy" | "zeros" | "zeropage" | "continue" | "poison" | "move";

export interface MfillOptions {
  /** Map write-protected (COPY/CONTINUE MODE_WP; for move, a WRITEPROTECT after the move). */
  protect: boolean;
  /** Leave waiters asleep (the *_MODE_DONTWAKE bits); the caller wakes them later. */
  dontWake: boolean;
  /** REMOVEs processed after this event epoch make a page's bytes stale. */
  sinceEpoch: number;
  /** What to do with such a page: install zeros (a fault must be answered) or skip it (a fill). */
  onRemoved: "zero" | "skip";
  /** Bytes count as prefetch in the metrics. */
  prefetch: boolean;
  /** For move: allow holes in the source (UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES). */
  allowSrcHoles: boolean;
}

export class MfillResult {
  installed = 0;
  present = 0;
  zeroed = 0;
  skipped = 0;
  gone = 0;
  exited = false;
  closed = false;
  /** What happened to the first page. */
  first: "installed" | "present" | "zeroed" | "skipped" | "gone" | "exited" | "closed" | null = null;

  note(what: NonNullable<MfillResult["first"]>): void {
    if (this.first === null) this.first = what;
  }
}

const REQUEST: Record<MfillOp, number> = {
  copy: UFFDIO_COPY,
  zeros: UFFDIO_COPY,
  zeropage: UFFDIO_ZEROPAGE,
  continue: UFFDIO_CONTINUE,
  poison: UFFDIO_POISON,
  move: UFFDIO_MOVE,
};

const INSTALL_KIND: Record<MfillOp, InstallKind> = {
  copy: "copy",
  zeros: "zeropage",
  zeropage: "zeropage",
  continue: "continue",
  poison: "poison",
  move: "move",
};

function modeFor(op: MfillOp, protect: boolean, o: MfillOptions): number {
  const dontWake = o.dontWake ? UFFDIO_COPY_MODE_DONTWAKE : 0; // bit 0 is DONTWAKE for every mfill ioctl
  switch (op) {
    case "copy":
    case "zeros":
      return dontWake | (protect ? UFFDIO_COPY_MODE_WP : 0);
    case "continue":
      return dontWake | (protect ? UFFDIO_CONTINUE_MODE_WP : 0);
    case "move":
      return (o.dontWake || protect ? UFFDIO_MOVE_MODE_DONTWAKE : 0) | (o.allowSrcHoles ? UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES : 0);
    default:
      return dontWake;
  }
}

/** The ioctl argument of one mfill step (the kernel writes the bytes done back into it). */
type MfillArg = object & { copy?: number; zeropage?: number; mapped?: number; updated?: number; move?: number };

function mfillArg(ctx: UffdContext, op: MfillOp, dst: number, len: number, src: Uint8Array | number | null, mode: number): MfillArg {
  switch (op) {
    case "copy":
      return { dst, src: src!, len, mode } as UffdioCopy;
    case "zeros":
      return { dst, src: ctx.zeros(len), len, mode } as UffdioCopy;
    case "move":
      return { dst, src: src as number, len, mode } as UffdioMove;
    default:
      return { range: { start: dst, len }, mode } as UffdioZeropage;
  }
}

/** A failed mfill ioctl's result: the bytes done before the error if any (partial progress), else the error. */
function mfillFailure(e: unknown, arg: MfillArg): number | ErrnoError {
  if (!(e instanceof ErrnoError)) throw e;
  const field = arg.copy ?? arg.zeropage ?? arg.mapped ?? arg.updated ?? arg.move;
  if (field !== undefined && field > 0) return field;
  return e;
}

/**
 * One ioctl of the mfill family. Returns the kernel's own result: bytes done (len on success,
 * fewer on partial progress), or the error when nothing was done.
 */
async function mfillIoctl(ctx: UffdContext, op: MfillOp, dst: number, len: number, src: Uint8Array | number | null, mode: number): Promise<number | ErrnoError> {
  const arg = mfillArg(ctx, op, dst, len, src, mode);
  try {
    await ctx.proc.ioctl(ctx.fd, REQUEST[op], arg);
    return len;
  } catch (e) {
    return mfillFailure(e, arg);
  }
}

function srcAt(src: Uint8Array | number | null, off: number): Uint8Array | number | null {
  if (src === null || off === 0) return src;
  return typeof src === "number" ? src + off : src.subarray(off);
}

/** Where an mfill loop stands. */
interface Cursor {
  off: number;
  spins: number;
  /** The offset whose ZEROPAGE hit EEXIST and is retried as a zeroed UFFDIO_COPY. */
  zeroFallback: number;
}

/** What the next ioctl of an mfill loop does. */
interface Step {
  op: MfillOp;
  at: number;
  len: number;
  protect: boolean;
  /** The page's bytes were made stale by a REMOVE: zeros go in instead. */
  staleBytes: boolean;
}

/** A step whose ioctl was issued before the loop began, with what the loop needs to finish it. */
interface Issued {
  step: Step;
  epoch: number;
  arg: MfillArg;
  ioctl: Promise<number>;
}

/** The race-safe mfill loop (see the module comment). */
export function mfill(ctx: UffdContext, op: MfillOp, dst: number, len: number, src: Uint8Array | number | null, o: MfillOptions): Promise<MfillResult> {
  const r = mfillNow(ctx, op, dst, len, src, o);
  return r instanceof MfillResult ? Promise.resolve(r) : r;
}

/**
 * mfill(), with the result itself (no promise) when the first ioctl did the whole operation.
 * Not an async function: the first COPY or ZEROPAGE is issued here, and when the kernel did the
 * whole step at once (its result field says so, written before the ioctl returns as in Linux)
 * the step is accounted at once; an operation done in that one step never enters the loop's
 * async frame, so a per-page UFFDIO_COPY allocates no promise chain.
 */
export function mfillNow(ctx: UffdContext, op: MfillOp, dst: number, len: number, src: Uint8Array | number | null, o: MfillOptions): MfillResult | Promise<MfillResult> {
  const r = new MfillResult();
  const c: Cursor = { off: 0, spins: 0, zeroFallback: -1 };
  if ((op !== "copy" && op !== "zeropage") || len <= 0) return mfillLoop(ctx, op, dst, len, src, o, r, c, null);
  let issued: Issued | null = null;
  try {
    const step = planStep(ctx, op, dst, len, c, o, r);
    if (step !== null) {
      const epoch = ctx.eventEpoch;
      const arg = mfillArg(ctx, step.op, step.at, step.len, src, modeFor(step.op, step.protect, o));
      const ioctl = ctx.proc.ioctl(ctx.fd, REQUEST[step.op], arg);
      if ((arg.copy ?? arg.zeropage) === step.len) {
        accountInstall(ctx, r, step.op, step.at, step.len, step.protect, step.staleBytes, o);
        c.off += step.len;
        if (c.off >= len) return r;
      } else {
        issued = { step, epoch, arg, ioctl };
      }
    }
  } catch (e) {
    return Promise.reject(e);
  }
  return mfillLoop(ctx, op, dst, len, src, o, r, c, issued);
}

async function mfillLoop(ctx: UffdContext, op: MfillOp, dst: number, len: number, src: Uint8Array | number | null, o: MfillOptions, r: MfillResult, c: Cursor, issued: Issued | null): Promise<MfillResult> {
  while (c.off < len) {
    let step: Step;
    let epoch: number;
    let done: number | ErrnoError;
    if (issued !== null) {
      ({ step, epoch } = issued);
      try {
        await issued.ioctl;
        done = step.len;
      } catch (e) {
        done = mfillFailure(e, issued.arg);
      }
      issued = null;
    } else {
      const planned = planStep(ctx, op, dst, len, c, o, r);
      if (planned === null) continue;
      step = planned;
      epoch = ctx.eventEpoch;
      if (step.op === "move" && step.protect) {
        done = await moveProtected(ctx, step.at, step.len, srcAt(src, c.off), modeFor(step.op, step.protect, o), o);
      } else {
        // The ioctl awaited here rather than in a helper: one async frame per step.
        const arg = mfillArg(ctx, step.op, step.at, step.len, srcAt(src, c.off), modeFor(step.op, step.protect, o));
        try {
          await ctx.proc.ioctl(ctx.fd, REQUEST[step.op], arg);
          done = step.len;
        } catch (e) {
          done = mfillFailure(e, arg);
        }
      }
    }
    if (typeof done === "number") {
      accountInstall(ctx, r, step.op, step.at, done, step.protect, step.staleBytes, o);
      c.off += done;
      c.spins = 0;
      if (done < step.len) ctx.metrics.retries.partial++;
      continue;
    }
    await onError(ctx, done, step, epoch, c, len, src, r, o);
  }
  return r;
}

/** Chooses the next step; null when the page at the cursor was skipped (a REMOVE made it stale, for a fill). */
function planStep(ctx: UffdContext, op: MfillOp, dst: number, len: number, c: Cursor, o: MfillOptions, r: MfillResult): Step | null {
  const at = dst + c.off;
  const step: Step = { op, at, len: len - c.off, protect: o.protect, staleBytes: false };
  if ((op === "copy" || op === "move") && ctx.removedSince(o.sinceEpoch, at, dst + len)) {
    step.len = PAGE_SIZE;
    if (ctx.removedSince(o.sinceEpoch, at, at + PAGE_SIZE)) {
      if (o.onRemoved === "skip") {
        r.skipped += PAGE_SIZE;
        r.note("skipped");
        c.off += PAGE_SIZE;
        return null;
      }
      step.op = "zeros";
      step.staleBytes = true;
    }
  }
  if (step.op === "zeropage" && c.zeroFallback === c.off) {
    step.op = "zeros";
    step.len = PAGE_SIZE;
    step.protect ||= ctx.rangeHasWp(at);
  } else if (step.op === "zeropage" && step.protect) {
    step.op = "zeros";
  }
  if (step.op === "move" && ctx.moveMissing) ctx.noteFallback("UFFDIO_MOVE", "UFFDIO_COPY", UFFD_FEATURE_SINCE[UFFD_FEATURE_MOVE]!);
  if (step.op === "move" && (ctx.crossProcess || ctx.moveMissing)) step.op = "copy";
  return step;
}

/** Turns a failed step into an outcome and moves the cursor (see the module comment); throws what it cannot take. */
async function onError(ctx: UffdContext, err: ErrnoError, step: Step, epoch: number, c: Cursor, len: number, src: Uint8Array | number | null, r: MfillResult, o: MfillOptions): Promise<void> {
  const rest = len - c.off;
  switch (err.code) {
    case "EAGAIN":
      await ctx.afterEvents(epoch, ++c.spins);
      return;
    case "EEXIST":
      if (step.op === "zeropage") {
        // ZEROPAGE wants a strictly none pte: a uffd-wp marker (wp-unpopulated, shmem) makes it
        // EEXIST although the page is missing. UFFDIO_COPY accepts markers (pte_none_mostly).
        c.zeroFallback = c.off;
        return;
      }
      r.present += PAGE_SIZE;
      r.note("present");
      ctx.ranges.mark(step.at, step.at + PAGE_SIZE, PAGE_STATE.INSTALLED, PAGE_STATE.POISONED);
      if (!o.dontWake) await wake(ctx, step.at, PAGE_SIZE);
      c.off += PAGE_SIZE;
      return;
    case "EBUSY":
    case "EINVAL":
      if (step.op !== "move") throw err;
      // Linux refuses to move a page that is not exclusive (shared after fork, KSM), pinned, or
      // not anonymous; copying from the same source address gives the page the same bytes.
      mergeResult(r, await mfill(ctx, "copy", step.at, step.len, srcAt(src, c.off), o));
      c.off += step.len;
      return;
    case "ENOENT":
      r.gone += rest;
      r.note("gone");
      await wake(ctx, step.at, rest);
      c.off = len;
      return;
    case "ESRCH":
      r.exited = true;
      r.note("exited");
      c.off = len;
      return;
    case "EBADF":
      r.closed = true;
      r.note("closed");
      c.off = len;
      return;
    default:
      throw err;
  }
}

/** A protected move: UFFDIO_MOVE always maps writable in 6.18, so a WRITEPROTECT (and the wake it held back) follows. */
async function moveProtected(ctx: UffdContext, at: number, len: number, src: Uint8Array | number | null, mode: number, o: MfillOptions): Promise<number | ErrnoError> {
  const done = await mfillIoctl(ctx, "move", at, len, src, mode);
  if (typeof done === "number") {
    await writeProtect(ctx, at, done, true, false);
    if (!o.dontWake) await wake(ctx, at, done);
  }
  return done;
}

function accountInstall(ctx: UffdContext, r: MfillResult, op: MfillOp, at: number, done: number, protected_: boolean, staleBytes: boolean, o: MfillOptions): void {
  const m = ctx.metrics;
  m.bytes[INSTALL_KIND[op]] += done;
  if (o.prefetch) m.bytes.prefetch += done;
  if (staleBytes) {
    r.zeroed += done;
    r.note("zeroed");
  } else {
    r.installed += done;
    r.note("installed");
  }
  if (op === "poison") {
    ctx.ranges.mark(at, at + done, PAGE_STATE.POISONED, PAGE_STATE.INSTALLED);
  } else {
    const protect = op === "zeropage" ? 0 : protected_ ? PAGE_STATE.PROTECTED : 0;
    ctx.ranges.mark(at, at + done, PAGE_STATE.INSTALLED | protect, PAGE_STATE.REMOVED | PAGE_STATE.POISONED | (protect === 0 ? PAGE_STATE.PROTECTED : 0));
  }
  if (!o.dontWake) ctx.settleCovered(at, at + done, null);
}

function mergeResult(into: MfillResult, from: MfillResult): void {
  into.installed += from.installed;
  into.present += from.present;
  into.zeroed += from.zeroed;
  into.skipped += from.skipped;
  into.gone += from.gone;
  into.exited ||= from.exited;
  into.closed ||= from.closed;
  if (from.first !== null) into.note(from.first);
}

/**
 * UFFDIO_WRITEPROTECT, retried across EAGAIN. "gone" = some vma in range lacks WP registration (ENOENT).
 *
 * Before Linux 6.4 ("mm/userfaultfd: support WP on multiple VMAs") mwriteprotect_range() took
 * find_dst_vma(): a range reaching past the vma at its start is ENOENT with nothing changed, even
 * when every vma in it is WP-registered. When ENOENT meets such a range (more than one vma, each
 * "uw" in smaps), the range is protected one vma piece at a time and the fallback is listed in
 * Userfaultfd.fallbacks. On 6.4+ that ENOENT never happens, so nothing changes there.
 */
export async function writeProtect(ctx: UffdContext, start: number, len: number, protect: boolean, wake: boolean): Promise<"ok" | "gone" | "exited" | "closed"> {
  const r = await writeProtectOnce(ctx, start, len, protect, wake);
  if (r !== "gone") return r;
  const pieces = wpVmaPieces(ctx, start, start + len);
  if (pieces === null) return r;
  ctx.noteFallback("UFFDIO_WRITEPROTECT across vmas", "one UFFDIO_WRITEPROTECT per vma", "6.4");
  for (const [s, e] of pieces) {
    const p = await writeProtectOnce(ctx, s, e - s, protect, wake);
    if (p !== "ok") return p;
  }
  return "ok";
}

/**
 * The vma pieces of [start, end) when it spans more than one vma and every one of them is
 * WP-registered (smaps "uw"); null otherwise (a single vma, an unregistered vma, no target).
 */
function wpVmaPieces(ctx: UffdContext, start: number, end: number): Array<[number, number]> | null {
  const t = ctx.target;
  if (t === null || t.exited) return null;
  const pieces: Array<[number, number]> = [];
  for (const v of t.smaps()) {
    const s = Math.max(start, v.start);
    const e = Math.min(end, v.end);
    if (s >= e) continue;
    if (!v.vmFlags.includes("uw")) return null;
    pieces.push([s, e]);
  }
  return pieces.length > 1 ? pieces : null;
}

/** One UFFDIO_WRITEPROTECT of [start, start+len), retried across EAGAIN. */
async function writeProtectOnce(ctx: UffdContext, start: number, len: number, protect: boolean, wake: boolean): Promise<"ok" | "gone" | "exited" | "closed"> {
  const mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : wake ? 0 : UFFDIO_WRITEPROTECT_MODE_DONTWAKE;
  for (let spins = 0; ; ) {
    const epoch = ctx.eventEpoch;
    try {
      await ctx.proc.ioctl(ctx.fd, UFFDIO_WRITEPROTECT, { range: { start, len }, mode });
      ctx.ranges.mark(start, start + len, protect ? PAGE_STATE.PROTECTED : 0, protect ? 0 : PAGE_STATE.PROTECTED);
      if (!protect && wake) ctx.settleCovered(start, start + len, "wp");
      return "ok";
    } catch (e) {
      if (!(e instanceof ErrnoError)) throw e;
      if (e.code === "EAGAIN") {
        await ctx.afterEvents(epoch, ++spins);
        continue;
      }
      if (e.code === "ENOENT") return "gone";
      if (e.code === "ESRCH") return "exited";
      if (e.code === "EBADF") return "closed";
      throw e;
    }
  }
}

/** UFFDIO_WAKE (never EAGAIN: WAKE does not look at mmap_changing). Errors after close or exit are ignored. */
export async function wake(ctx: UffdContext, start: number, len: number): Promise<void> {
  if (len <= 0) return;
  try {
    await ctx.proc.ioctl(ctx.fd, UFFDIO_WAKE, { start, len });
  } catch (e) {
    if (!(e instanceof ErrnoError)) throw e;
    if (e.code !== "EBADF" && e.code !== "ESRCH") throw e;
  }
}

/** UFFDIO_WAKE whose failure is reported on "error" instead of rejecting: for wakes nobody awaits. */
export async function wakeReporting(ctx: UffdContext, start: number, len: number, f: Fault | null): Promise<void> {
  try {
    await wake(ctx, start, len);
  } catch (e) {
    ctx.report(e, f);
  }
}

/** Ends every in-flight fault in [start, end) as gone and wakes them (UNMAP, REMAP, UNREGISTER). */
export function abandon(ctx: UffdContext, start: number, end: number): void {
  const { lo, hi } = ctx.settleGone(start, end);
  if (lo >= hi) return;
  // Wake the span of the faults, not the event's: an UNMAP carries the munmap's own start,
  // which may lie below mmap_min_addr, where UFFDIO_WAKE is EINVAL (validate_unaligned_range()).
  // Nobody awaits this wake: a failure is reported, never left to reject unhandled.
  void wakeReporting(ctx, lo, hi - lo, null);
}

/**
 * UFFDIO_POISON of one page (the failure policy's SIGBUS), retried across EAGAIN. A uffd-wp
 * marker would make POISON fail with EEXIST, so a wp-registered page is unprotected first
 * (DONTWAKE). "present" when a page got installed meanwhile (the thread gets it).
 */
export async function poisonPage(ctx: UffdContext, page: number, wpRegistered: boolean, threadIds: readonly number[] = []): Promise<Resolution> {
  if (ctx.poisonMissing) return killWithSigbus(ctx, page, threadIds);
  for (let spins = 0; ; ) {
    const epoch = ctx.eventEpoch;
    if (wpRegistered) {
      try {
        await ctx.proc.ioctl(ctx.fd, UFFDIO_WRITEPROTECT, { range: { start: page, len: PAGE_SIZE }, mode: UFFDIO_WRITEPROTECT_MODE_DONTWAKE });
      } catch {
        // Best effort: a failure here shows up as EEXIST from POISON below.
      }
    }
    const arg = { range: { start: page, len: PAGE_SIZE }, mode: 0, updated: 0 };
    try {
      await ctx.proc.ioctl(ctx.fd, UFFDIO_POISON, arg);
      ctx.metrics.bytes.poison += PAGE_SIZE;
      ctx.ranges.mark(page, page + PAGE_SIZE, PAGE_STATE.POISONED, PAGE_STATE.INSTALLED);
      return "failed";
    } catch (e) {
      if (!(e instanceof ErrnoError)) throw e;
      if (e.code === "EAGAIN" && arg.updated <= 0) {
        await ctx.afterEvents(epoch, ++spins);
        continue;
      }
      await wake(ctx, page, PAGE_SIZE);
      if (e.code === "EEXIST") return "present";
      if (e.code === "ENOENT") return "gone";
      if (e.code === "ESRCH") return "exited";
      if (e.code === "EBADF") return "closed";
      throw e;
    }
  }
}

/**
 * The SIGBUS policy where the kernel lacks UFFDIO_POISON (before 6.6, fc71884a5f59): a handler
 * cannot make one access fail, so it does what an unhandled SIGBUS would, and ends the faulting
 * process with kill(SIGBUS): the process the userfaultfd serves (the handler's own, or the one a
 * monitor adopted it from), or for a fork child's userfaultfd the process of the faulting thread
 * (known with the "thread-id" feature). Listed in Userfaultfd.fallbacks. Never lets the thread
 * retry into the same fault, which would loop; when the process is unknown the thread stays
 * asleep and the failure is reported.
 */
async function killWithSigbus(ctx: UffdContext, page: number, threadIds: readonly number[]): Promise<Resolution> {
  ctx.noteFallback("UFFDIO_POISON", "kill(SIGBUS) of the faulting process", UFFD_FEATURE_SINCE[UFFD_FEATURE_POISON]!);
  const victim = ctx.target ?? processOfThreads(ctx, threadIds);
  if (victim === null) {
    // Not thrown: the policy's error path wakes the thread, which would fault here again.
    ctx.report(new Error(`cannot SIGBUS the thread faulting at 0x${page.toString(16)}: the kernel has no UFFDIO_POISON and the faulting process is unknown (enable the "thread-id" feature)`), null);
    return "failed";
  }
  try {
    await ctx.proc.kill(victim.pid, SIGBUS);
  } catch (e) {
    // The handler's own process ends with the signal: its syscall does not return.
    if (!(e instanceof ErrnoError) || e.code !== "ESRCH") throw e;
  }
  return "exited";
}

/** The process one of `threadIds` belongs to, among the kernel's live processes, or null. */
function processOfThreads(ctx: UffdContext, threadIds: readonly number[]): Process | null {
  for (const p of ctx.proc.kernel.processes.values()) {
    if (!p.exited && p.threads.some((t) => threadIds.includes(t.tid))) return p;
  }
  return null;
}

/**
 * close(): what the release of the file would do for the ranges this context knows, done first:
 * UNREGISTER them (which also clears their uffd-wp bits) and wake every fault in flight, so
 * blocked threads retry as ordinary faults now. The read loop's blocked read(2) holds the file,
 * as in Linux, so closing the fd alone would not release the context until the next message.
 */
export async function releaseKnown(ctx: UffdContext): Promise<void> {
  const pages = ctx.inflight.values().map((f) => f.pageAddress);
  for (const e of [...ctx.ranges.entries]) {
    try {
      await ctx.proc.ioctl(ctx.fd, UFFDIO_UNREGISTER, { start: e.start, len: e.end - e.start });
    } catch {
      // Unmapped meanwhile, or the process is gone: nothing left to unregister.
    }
  }
  for (const page of pages) await wakeReporting(ctx, page, PAGE_SIZE, null);
}
