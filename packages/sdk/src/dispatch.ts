/**
 * Dispatch: running the app's listeners (and the SDK clients') for one context's faults and
 * events, and ending every fault nobody resolved through the failure policy.
 *
 * Rules (the why of this file):
 * - Listener calls are wrapped: nothing a listener throws or rejects reaches the kernel or the
 *   read loop. A fault whose listener threw or rejected, that missed its deadline, or that no
 *   listener heard goes to the policy, which always ends it (SIGBUS by default).
 * - A fault ends exactly once (UffdContext.settle()); the first outcome wins.
 * - A fault read before any listener (or pull reader) exists waits for the first one, within its
 *   deadline.
 * - Deadlines count from the read (a wall deadline of a handler opened with wallLatency: false,
 *   from the end of the fault's dispatch). The virtual-clock watchdog sleeps on the kernel's clock only
 *   while some fault has a virtual deadline, so an idle kernel stays idle.
 */
import { PAGE_SIZE, UFFDIO_REGISTER_MODE_WP } from "@uffd/kernel/uapi";
import { type FailurePolicy, type FaultState, type PulledEvent, PullQueue, type Subscription, type UffdContext, type UnresolvedReason, type Watch } from "./context.ts";
import { HandlerError } from "./errors.ts";
import { poisonPage, releaseKnown, wakeReporting, writeProtect } from "./ops.ts";
import * as typesMod from "./types.ts";
import type { Fault, Resolution } from "./types.ts";

// Module-local copies of what the fault path uses per fault: V8 reads an imported binding
// through its module cell at each use (a load and an initialisation check), and folds a
// module-local const into the optimized code. Each comes from a module evaluated before this one.
const FAULT_STATE = typesMod.FAULT_STATE;
const NO_DEADLINE = typesMod.NO_DEADLINE;

/** Plugs the failure policy into a new context (resolvers send unresolved faults to it). */
export function plugPolicy(ctx: UffdContext): void {
  ctx.onUnresolved = (f, reason, cause) => fail(ctx, f, reason, cause);
}

// --- subscriptions ----------------------------------------------------------------------------

export function subscribe(ctx: UffdContext, event: string, fn: (...args: never[]) => unknown, once: boolean, withContext = false): void {
  const sub: Subscription = { event, fn, once, withContext, wrapped: () => {} };
  sub.wrapped = event === "fault" ? wrapFaultListener(ctx, sub) : wrapListener(ctx, sub);
  ctx.subs.push(sub);
  if (once) ctx.emitter.once(event, sub.wrapped as never);
  else ctx.emitter.on(event, sub.wrapped as never);
  if (event === "fault") {
    soleFaultListener(ctx);
    deliverUnheard(ctx);
  }
}

/**
 * Keeps ctx.soleFaultListener: the wrapper of the one "fault" listener, when there is exactly
 * one and it is persistent, which dispatchFault() then calls without the emitter (what the
 * emitter would do for it: one call, with the fault).
 */
function soleFaultListener(ctx: UffdContext): void {
  let sole: Subscription | null = null;
  for (const s of ctx.subs) {
    if (s.event !== "fault") continue;
    if (sole !== null || s.once) {
      ctx.soleFaultListener = null;
      return;
    }
    sole = s;
  }
  ctx.soleFaultListener = sole === null ? null : (sole.wrapped as (f: FaultState) => void);
}

export function unsubscribe(ctx: UffdContext, event: string, fn?: (...args: never[]) => unknown): void {
  for (let i = ctx.subs.length - 1; i >= 0; i--) {
    const s = ctx.subs[i]!;
    if (s.event !== event || (fn !== undefined && s.fn !== fn)) continue;
    ctx.emitter.off(event, s.wrapped as never);
    ctx.subs.splice(i, 1);
  }
  if (event === "fault") soleFaultListener(ctx);
}

export function unsubscribeAll(ctx: UffdContext, event?: string): void {
  for (const s of [...ctx.subs]) if (event === undefined || s.event === event) unsubscribe(ctx, s.event, s.fn);
}

/** The persistent listeners, for a forked child's context to inherit. */
export function inheritableListeners(ctx: UffdContext): Array<Pick<Subscription, "event" | "fn" | "withContext">> {
  return ctx.subs.filter((s) => !s.once).map((s) => ({ event: s.event, fn: s.fn, withContext: s.withContext }));
}

function forget(ctx: UffdContext, sub: Subscription): void {
  const i = ctx.subs.indexOf(sub);
  if (i >= 0) ctx.subs.splice(i, 1);
  if (sub.event === "fault") soleFaultListener(ctx);
}

function wrapFaultListener(ctx: UffdContext, sub: Subscription): (f: FaultState) => void {
  const fn = sub.fn as unknown as (f: Fault, c?: UffdContext) => unknown;
  return (f: FaultState) => {
    if (sub.once) forget(ctx, sub);
    let r: unknown;
    try {
      r = sub.withContext ? fn(f, ctx) : fn(f);
    } catch (e) {
      if (f.state === FAULT_STATE.PENDING) f.error ??= e;
      else ctx.report(e, f);
      return;
    }
    if (r !== undefined && r !== f.result && isThenable(r)) watchListenerPromise(ctx, f, r);
  };
}

function wrapListener(ctx: UffdContext, sub: Subscription): (...args: unknown[]) => void {
  const fn = sub.fn as unknown as (...args: unknown[]) => unknown;
  return (...args: unknown[]) => {
    if (sub.once) forget(ctx, sub);
    try {
      const r = sub.withContext ? fn(...args, ctx) : fn(...args);
      if (isThenable(r)) r.then(undefined, (e: unknown) => ctx.report(e, null));
    } catch (e) {
      if (sub.event === "error") return; // an error listener that throws has nowhere left to report to
      ctx.report(e, null);
    }
  };
}

function watchListenerPromise(ctx: UffdContext, f: FaultState, p: PromiseLike<unknown>): void {
  p.then(
    () => {},
    (e: unknown) => {
      if (f.state === FAULT_STATE.PENDING) void fail(ctx, f, "handler-threw", e);
      else ctx.report(e, f);
    },
  );
}

// --- dispatching --------------------------------------------------------------------------------

/** Hands a fault to the listeners and the pull reader; what they leave pending gets its deadlines. */
export function dispatchFault(ctx: UffdContext, f: FaultState): void {
  f.error = undefined;
  const sole = ctx.soleFaultListener;
  let heard = true;
  if (sole !== null) sole(f);
  else heard = ctx.emitter.emit("fault", f);
  if (ctx.pull !== null && f.attempts === 0) {
    ctx.pull.push({ type: "fault", fault: f });
    heard = true;
  }
  if (f.state === FAULT_STATE.SETTLED) return;
  // It outlives its batch's dispatch: it keeps its read time itself (see FaultImpl.readAtWallMs).
  if (f.readAtWallMs === null) f.readAtWallMs = ctx.pendingReadWallMs();
  // Deadlines count from the read (a wall deadline without the wall-latency histogram: from the
  // reading pendingReadWallMs() took when the first fault of the batch was left pending). Only a
  // fault its dispatch did not settle can need one (most settle in it), so they are set here,
  // once: a renewed deadline stays.
  const { deadlineVirtualMs, deadlineWallMs } = ctx.config;
  if (deadlineVirtualMs !== null && f.deadlineNs === NO_DEADLINE) f.deadlineNs = f.readAtNs + deadlineVirtualMs * 1e6;
  if (deadlineWallMs !== null && f.deadlineWallMs === NO_DEADLINE) f.deadlineWallMs = f.readAtWallMs + deadlineWallMs;
  if (f.state !== FAULT_STATE.PENDING) return;
  if (f.error !== undefined) {
    void fail(ctx, f, "handler-threw", f.error);
    return;
  }
  if (!heard) ctx.unheard.push(f);
  armDeadlines(ctx);
}

/** Faults read while nobody listened go to the first listener or pull reader. */
function deliverUnheard(ctx: UffdContext): void {
  if (ctx.unheard.length === 0) return;
  const unheard = ctx.unheard;
  ctx.unheard = [];
  queueMicrotask(() => {
    for (const f of unheard) if (f.state === FAULT_STATE.PENDING) dispatchFault(ctx, f);
  });
}

/** A non-cooperative event: listeners first, then the pull reader's queue. */
export function dispatchEvent(ctx: UffdContext, name: "remap" | "remove" | "unmap" | "fork", payload: unknown, pulled: PulledEvent): void {
  ctx.emitter.emit(name, payload);
  ctx.pull?.push(pulled);
}

/** The pull-style reader's queue (created by the first pull; faults nobody heard go to it). */
export function pullQueue(ctx: UffdContext): PullQueue {
  if (ctx.pull === null) {
    ctx.pull = new PullQueue();
    if (ctx.closed) ctx.pull.end();
    deliverUnheard(ctx);
  }
  return ctx.pull;
}

// --- the failure policy -------------------------------------------------------------------------

/** A fault nobody resolved: report it, then apply the policy. Resolves with the fault's final outcome; never rejects. */
function fail(ctx: UffdContext, f: FaultState, reason: UnresolvedReason, cause: unknown): Promise<Resolution> {
  const what = reason === "handler-threw" ? "the handler failed" : reason === "handler-timeout" ? "no handler resolved it before its deadline" : "no 'fault' listener";
  const why = cause instanceof Error ? `: ${cause.message}` : cause === undefined ? "" : `: ${String(cause)}`;
  const err = new HandlerError(reason, f.pageAddress, `${f.kind} fault at 0x${f.pageAddress.toString(16)}: ${what}${why}`, { cause });
  ctx.report(err, f);
  if (reason === "handler-timeout") ctx.metrics.policy.timeouts++;
  const policy = ctx.config.policy;
  if (policy === "retry" && f.attempts < ctx.config.retries) {
    f.attempts++;
    ctx.metrics.policy.retry++;
    renewDeadline(ctx, f);
    queueMicrotask(() => {
      if (f.state === FAULT_STATE.PENDING) dispatchFault(ctx, f);
    });
    return ctx.whenSettled(f);
  }
  if (typeof policy === "function" && f.attempts === 0) {
    f.attempts++;
    ctx.metrics.policy.callback++;
    return callPolicy(ctx, f, policy, err);
  }
  return sigbus(ctx, f);
}

async function callPolicy(ctx: UffdContext, f: FaultState, policy: Exclude<FailurePolicy, string>, err: HandlerError): Promise<Resolution> {
  try {
    await policy(f, err);
  } catch (e) {
    ctx.report(e, f);
  }
  if (f.state === FAULT_STATE.PENDING) return sigbus(ctx, f);
  return f.result ?? f.outcome!;
}

/**
 * SIGBUS for the faulting threads with UFFD_FEATURE_SIGBUS's effect: the access fails and the
 * page stays unusable until a page is installed over it. Done with UFFDIO_POISON (a poison
 * marker is SIGBUS on access; UFFDIO_COPY may later replace it). A wp fault has a present page,
 * which cannot be poisoned without destroying its bytes: the policy lets that write through
 * (unprotect) and reports it. Never rejects.
 */
async function sigbus(ctx: UffdContext, f: FaultState): Promise<Resolution> {
  if (f.state === FAULT_STATE.SETTLED) return f.outcome!;
  f.state = FAULT_STATE.RESOLVING;
  ctx.metrics.policy.sigbus++;
  const page = f.pageAddress;
  let outcome: Resolution = "failed";
  try {
    if (f.kind === "wp") {
      const r = await writeProtect(ctx, page, PAGE_SIZE, false, true);
      if (r !== "ok") outcome = r;
    } else {
      outcome = await poisonPage(ctx, page, ((f.entry?.modes ?? 0) & UFFDIO_REGISTER_MODE_WP) !== 0, f.threadIds);
    }
  } catch (e) {
    ctx.report(e, f);
    await wakeReporting(ctx, page, PAGE_SIZE, f);
    outcome = "failed";
  }
  ctx.settle(f, outcome);
  return f.outcome!;
}

// --- deadlines ------------------------------------------------------------------------------------

function renewDeadline(ctx: UffdContext, f: FaultState): void {
  const { deadlineVirtualMs, deadlineWallMs } = ctx.config;
  if (deadlineVirtualMs !== null) f.deadlineNs = ctx.nowNs() + deadlineVirtualMs * 1e6;
  if (deadlineWallMs !== null) f.deadlineWallMs = ctx.config.wallClock() + deadlineWallMs;
}

function armDeadlines(ctx: UffdContext): void {
  const w = ctx.watch;
  if (ctx.config.deadlineVirtualMs !== null && !w.virtualRunning) {
    w.virtualRunning = true;
    virtualWatchdog(ctx)
      .catch((e: unknown) => ctx.report(e, null))
      .finally(() => (w.virtualRunning = false));
  }
  if (ctx.config.deadlineWallMs !== null && w.wallTimer === null) armWallTimer(ctx, w);
}

/**
 * Sleeps on the kernel's virtual clock (poll with no fds) until the earliest pending deadline,
 * then sends overdue faults to the policy; ends when nothing is pending, so an idle kernel
 * stays idle.
 */
async function virtualWatchdog(ctx: UffdContext): Promise<void> {
  while (!ctx.closed) {
    let next = Infinity;
    for (const f of ctx.inflight.values()) if (f.state === FAULT_STATE.PENDING && f.deadlineNs !== NO_DEADLINE && f.deadlineNs < next) next = f.deadlineNs;
    if (next === Infinity) return;
    const waitNs = next - ctx.nowNs();
    if (waitNs > 0) {
      try {
        await ctx.proc.poll([], Math.max(1, Math.ceil(waitNs / 1e6)));
      } catch {
        return;
      }
    }
    const now = ctx.nowNs();
    for (const f of ctx.inflight.values()) {
      if (f.state === FAULT_STATE.PENDING && f.deadlineNs !== NO_DEADLINE && f.deadlineNs <= now) void fail(ctx, f, ctx.unheard.includes(f) ? "unhandled" : "handler-timeout", undefined);
    }
  }
}

function armWallTimer(ctx: UffdContext, w: Watch): void {
  let next = Infinity;
  for (const f of ctx.inflight.values()) if (f.state === FAULT_STATE.PENDING && f.deadlineWallMs !== NO_DEADLINE && f.deadlineWallMs < next) next = f.deadlineWallMs;
  if (next === Infinity || ctx.closed) return;
  w.wallTimer = setTimeout(() => {
    w.wallTimer = null;
    const now = ctx.config.wallClock();
    for (const f of ctx.inflight.values()) {
      if (f.state === FAULT_STATE.PENDING && f.deadlineWallMs !== NO_DEADLINE && f.deadlineWallMs <= now) void fail(ctx, f, ctx.unheard.includes(f) ? "unhandled" : "handler-timeout", undefined);
    }
    armWallTimer(ctx, w);
  }, Math.max(0, next - ctx.config.wallClock()));
  w.wallTimer.unref?.();
}

// --- shutdown -------------------------------------------------------------------------------------

/**
 * Closes the fd (if `closeFd`, after releasing what the context knows: see ops.ts releaseKnown),
 * ends every in-flight fault as closed, and says so. Never rejects.
 */
export async function shutdown(ctx: UffdContext, closeFd: boolean): Promise<void> {
  if (ctx.closed) return;
  ctx.closed = true;
  if (closeFd) {
    await releaseKnown(ctx);
    try {
      await ctx.proc.close(ctx.fd);
    } catch {
      // EBADF / ESRCH: already gone.
    }
  }
  if (ctx.watch.wallTimer !== null) clearTimeout(ctx.watch.wallTimer);
  ctx.markClosed();
  ctx.emitter.emit("close");
}

function isThenable(x: unknown): x is PromiseLike<unknown> {
  return typeof x === "object" && x !== null && typeof (x as { then?: unknown }).then === "function";
}
