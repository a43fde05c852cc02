/**
 * Resolving one fault: the fault's resolvers (fault.ts) come here, with the fault, which carries
 * the context that read it. Two paths:
 *
 * - the fast path: one page by COPY of bytes, ZEROPAGE or CONTINUE, when no REMOVE raced the
 *   fault. One ioctl; its result field is written before the ioctl returns (as in Linux), so a
 *   whole page done settles the fault at once. EEXIST settles as "present" without issuing the
 *   ioctl twice; any other error falls back to the general path. An unprotect is one
 *   WRITEPROTECT (which has no result field) settled when it returns; an error falls back to the
 *   general path, which issues it again (unprotecting twice is harmless);
 * - the general path: the race-safe loops of ops.ts, which handle every outcome (EAGAIN, ENOENT,
 *   partial progress, a REMOVE racing the resolve ...). A resolver that throws sends the fault to
 *   the context's failure policy (plugged in by the dispatcher), so it always ends.
 */
import { ErrnoError } from "@uffd/kernel";
import * as uapi from "@uffd/kernel/uapi";
import type { FaultState, UffdContext } from "./context.ts";
import { mfill, type MfillOp, type MfillOptions, wake, writeProtect } from "./ops.ts";
import * as rangesMod from "./ranges.ts";
import type { RangeEntry } from "./ranges.ts";
import * as typesMod from "./types.ts";
import type { Resolution } from "./types.ts";

// Module-local copies of what the fault path uses per fault: V8 reads an imported binding
// through its module cell at each use (a load and an initialisation check), and folds a
// module-local const into the optimized code. Each comes from a module evaluated before this one.
const PAGE_SIZE = uapi.PAGE_SIZE;
const UFFDIO_CONTINUE = uapi.UFFDIO_CONTINUE;
const UFFDIO_CONTINUE_MODE_WP = uapi.UFFDIO_CONTINUE_MODE_WP;
const UFFDIO_COPY = uapi.UFFDIO_COPY;
const UFFDIO_COPY_MODE_WP = uapi.UFFDIO_COPY_MODE_WP;
const UFFDIO_WRITEPROTECT = uapi.UFFDIO_WRITEPROTECT;
const UFFDIO_ZEROPAGE = uapi.UFFDIO_ZEROPAGE;
const PAGE_STATE = rangesMod.PAGE_STATE;
const FAULT_STATE = typesMod.FAULT_STATE;
const faultKey = typesMod.faultKey;

export type ResolveOp = MfillOp | "unprotect" | "wake";

/** The fast path's ioctl structs, with their result fields. */
type FastArg =
  | { dst: number; src: Uint8Array; len: number; mode: number; copy: number }
  | { range: { start: number; len: number }; mode: number; zeropage: number }
  | { range: { start: number; len: number }; mode: number; mapped: number };

/** A settled "installed" (an already-settled promise carries no state, so every fast resolve shares it). */
const INSTALLED: Promise<Resolution> = Promise.resolve("installed");

/** Starts resolving `f` with `op`; the promise is the fault's result (a second resolver gets it too). */
export function resolveFault(f: FaultState, op: ResolveOp, src: Uint8Array | number | null, wp: boolean | undefined): Promise<Resolution> {
  f.state = FAULT_STATE.RESOLVING;
  const p = op === "unprotect" ? fastUnprotect(f) : (fastPath(f, op, src, wp) ?? resolveGeneral(f, op, src, wp));
  f.result = p;
  return p;
}

function fastPath(f: FaultState, op: ResolveOp, src: Uint8Array | number | null, wp: boolean | undefined): Promise<Resolution> | null {
  const ctx = f.ctx;
  const page = f.pageAddress;
  let req: number;
  // The page's range entry, looked up once: it serves the protection check here and, when the
  // ioctl finishes the page before returning, the state update in fastDone() (nothing runs in
  // between that could change the SDK's ranges: they change only in SDK code, on this thread).
  const e = ctx.ranges.find(page);
  const protect = wp ?? (e !== null && (e.state[e.stateIndex(page)]! & PAGE_STATE.PROTECTED) !== 0);
  let arg: FastArg;
  if (op === "copy" && src instanceof Uint8Array && src.length === PAGE_SIZE && !ctx.crossProcess) {
    const a = (ctx.copyArg ??= { dst: 0, src, len: PAGE_SIZE, mode: 0, copy: 0 });
    a.dst = page;
    a.src = src;
    a.mode = protect ? UFFDIO_COPY_MODE_WP : 0;
    a.copy = 0;
    arg = a;
    req = UFFDIO_COPY;
  } else if (op === "zeropage" && !protect) {
    arg = { range: { start: page, len: PAGE_SIZE }, mode: 0, zeropage: 0 };
    req = UFFDIO_ZEROPAGE;
  } else if (op === "continue") {
    arg = { range: { start: page, len: PAGE_SIZE }, mode: protect ? UFFDIO_CONTINUE_MODE_WP : 0, mapped: 0 };
    req = UFFDIO_CONTINUE;
  } else {
    return null;
  }
  // removedSince()'s first test, inline: no REMOVE was processed since the fault was read.
  if (op !== "continue" && ctx.lastRemoveEpoch > f.epoch && ctx.removedSince(f.epoch, page, page + PAGE_SIZE)) return null;
  const p = ctx.proc.ioctl(ctx.fd, req, arg);
  // The result field is written before the ioctl returns (as in Linux): a whole page done
  // means it succeeded, and the fault settles now, without waiting for the promise. Only
  // the COPY struct is reused, and only once the kernel is done with it.
  if (fastArgDone(op, arg)) return fastDone(f, op as "copy" | "zeropage" | "continue", protect, e) === "installed" ? INSTALLED : Promise.resolve(f.outcome!);
  if (arg === ctx.copyArg) ctx.copyArg = null;
  return p.then(
    () => fastDone(f, op as "copy" | "zeropage" | "continue", protect, ctx.ranges.find(page)),
    (e: unknown) => {
      if (e instanceof ErrnoError && e.code === "EAGAIN") ctx.metrics.retries.eagain++;
      // EEXIST from COPY or CONTINUE: a racing resolve won. Settle as the general path would,
      // without issuing the ioctl a second time. (ZEROPAGE's EEXIST may be a uffd-wp marker,
      // which the general path answers with a zeroed COPY.)
      if (e instanceof ErrnoError && e.code === "EEXIST" && op !== "zeropage") return fastExists(f);
      return resolveGeneral(f, op, src, wp);
    },
  );
}

function fastUnprotect(f: FaultState): Promise<Resolution> {
  const ctx = f.ctx;
  const page = f.pageAddress;
  return ctx.proc.ioctl(ctx.fd, UFFDIO_WRITEPROTECT, { range: { start: page, len: PAGE_SIZE }, mode: 0 }).then(
    () => {
      ctx.ranges.markPage(page, 0, PAGE_STATE.PROTECTED);
      if (ctx.inflight.size > 1) ctx.settleCovered(page, page + PAGE_SIZE, "wp");
      ctx.settle(f, "installed");
      return f.outcome!;
    },
    (e: unknown) => {
      if (e instanceof ErrnoError && e.code === "EAGAIN") ctx.metrics.retries.eagain++;
      return resolveGeneral(f, "unprotect", null, undefined);
    },
  );
}

/** The fast path's ioctl finished a whole page (its result field says so). */
function fastArgDone(op: ResolveOp, arg: FastArg): boolean {
  if (op === "copy") return (arg as { copy: number }).copy === PAGE_SIZE;
  if (op === "zeropage") return (arg as { zeropage: number }).zeropage === PAGE_SIZE;
  return (arg as { mapped: number }).mapped === PAGE_SIZE;
}

async function fastExists(f: FaultState): Promise<Resolution> {
  const ctx = f.ctx;
  const page = f.pageAddress;
  ctx.ranges.mark(page, page + PAGE_SIZE, PAGE_STATE.INSTALLED, PAGE_STATE.POISONED);
  await wake(ctx, page, PAGE_SIZE);
  ctx.settle(f, "present");
  return f.outcome!;
}

/** The fast path's ioctl installed the page; `e`: the page's range entry now (ranges.find()). */
function fastDone(f: FaultState, op: "copy" | "zeropage" | "continue", protect: boolean, e: RangeEntry | null): Resolution {
  const ctx = f.ctx;
  const page = f.pageAddress;
  ctx.metrics.bytes[op] += PAGE_SIZE;
  const keep = protect && op !== "zeropage" ? PAGE_STATE.PROTECTED : 0;
  if (e !== null) {
    // ranges.markPage() of the page, with the entry already found.
    const i = e.stateIndex(page);
    e.state[i] = (e.state[i]! & ~(PAGE_STATE.REMOVED | PAGE_STATE.POISONED | (keep === 0 ? PAGE_STATE.PROTECTED : 0))) | PAGE_STATE.INSTALLED | keep;
  }
  // The other install kind's fault on the page (a missing and a minor one at once) is answered
  // too: settleCovered() of the page, with one lookup instead of two (this fault is not pending).
  // There is none to look for with this fault alone in flight, or before this context has read
  // a minor fault (every such pair has one).
  if (ctx.inflight.size > 1 && ctx.minorRead) {
    const other = ctx.inflight.get(faultKey(page, f.kind === "minor" ? "missing" : "minor"));
    if (other !== undefined && other.state === FAULT_STATE.PENDING) ctx.settle(other, "present");
  }
  ctx.settle(f, "installed");
  return f.outcome!;
}

async function resolveGeneral(f: FaultState, op: ResolveOp, src: Uint8Array | number | null, wp: boolean | undefined): Promise<Resolution> {
  const ctx = f.ctx;
  let outcome: Resolution;
  try {
    outcome = await resolveOnce(ctx, f, op, src, wp);
  } catch (e) {
    if (f.state === FAULT_STATE.SETTLED) return f.outcome!;
    f.state = FAULT_STATE.PENDING;
    f.result = null;
    return ctx.onUnresolved(f, "handler-threw", e);
  }
  ctx.settle(f, outcome);
  return f.outcome!;
}

async function resolveOnce(ctx: UffdContext, f: FaultState, op: ResolveOp, src: Uint8Array | number | null, wp: boolean | undefined): Promise<Resolution> {
  const page = f.pageAddress;
  if (op === "wake") {
    await wake(ctx, page, PAGE_SIZE);
    return "woken";
  }
  if (op === "unprotect") {
    const r = await writeProtect(ctx, page, PAGE_SIZE, false, true);
    if (r === "gone") await wake(ctx, page, PAGE_SIZE);
    return r === "ok" ? "installed" : r;
  }
  const len = typeof src === "object" && src !== null ? src.length : PAGE_SIZE;
  const protect = wp ?? ctx.isProtected(page);
  const o: MfillOptions = { protect, dontWake: false, sinceEpoch: f.epoch, onRemoved: "zero", prefetch: false, allowSrcHoles: false };
  try {
    const r = await mfill(ctx, op, page, len, src, o);
    return r.first === "skipped" || r.first === null ? "installed" : r.first;
  } catch (e) {
    // CONTINUE finds a hole when the page cache lost the page after the minor fault (punch
    // hole, truncate): the retried access now meets the hole, which Linux handles itself.
    if (op === "continue" && f.kind === "minor" && e instanceof ErrnoError && e.code === "EFAULT") {
      await wake(ctx, page, PAGE_SIZE);
      return "gone";
    }
    throw e;
  }
}
