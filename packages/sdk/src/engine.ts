/**
 * One userfaultfd's handler machinery: the read loop, the dispatch of faults and events, the
 * failure policy and its watchdog, and the bookkeeping the race-safe ioctls (ops.ts) rely on.
 *
 * Ordering rules (the why of this file):
 * - A read(2) returns pending faults first, then events (fs/userfaultfd.c), so a fault can be
 *   read together with the REMOVE or UNMAP that preceded it. Each batch applies its events to the
 *   range view first and dispatches its faults second: a fault in a just-removed page is then
 *   seen as removed (zero-filled), never served stale bytes.
 * - Faults for one page and kind that are in flight together are one Fault (duplicate messages
 *   are coalesced, their threads listed); the single resolve wakes them all.
 * - Every await is a dropped lock: after one, ops re-check the event epoch (EAGAIN, REMOVE).
 * - A fault ends exactly once (settle()); the first outcome wins, later ones are ignored. Faults
 *   that nobody resolves (a throw, a rejection, a missed deadline, no listener) go to the policy,
 *   which always ends them; nothing thrown by a listener reaches the kernel.
 */
import { ErrnoError, type Process } from "@uffd/kernel";
import {
  PAGE_SIZE,
  POLLIN,
  UFFD_EVENT_FORK,
  UFFD_EVENT_PAGEFAULT,
  UFFD_EVENT_REMAP,
  UFFD_EVENT_REMOVE,
  UFFD_EVENT_UNMAP,
  UFFD_MSG_SIZE,
  UFFD_PAGEFAULT_FLAG_MINOR,
  UFFD_PAGEFAULT_FLAG_WP,
  UFFDIO_CONTINUE,
  UFFDIO_CONTINUE_MODE_WP,
  UFFDIO_COPY,
  UFFDIO_COPY_MODE_WP,
  UFFDIO_POISON,
  UFFDIO_REGISTER_MODE_WP,
  UFFDIO_UNREGISTER,
  UFFDIO_WRITEPROTECT,
  UFFDIO_WRITEPROTECT_MODE_DONTWAKE,
  UFFDIO_ZEROPAGE,
} from "@uffd/kernel/uapi";
import { EventEmitter } from "eventemitter3";
import { HandlerError } from "./errors.ts";
import type { UffdEventName, UffdEvents } from "./events.ts";
import { FAULT_STATE, type Fault, FaultImpl, type FaultKind, NO_DEADLINE } from "./fault.ts";
import { FaultTable } from "./fault-table.ts";
import type { Metrics, Resolution } from "./metrics.ts";
import { u32, u64 } from "./msg.ts";
import { EAGAIN_SPINS_MAX, livelockError, mfill, type MfillOp, type MfillOptions, wake, writeProtect } from "./ops.ts";
import { PAGE_STATE, type RangeEntry, RangeSet } from "./ranges.ts";

/** What happens to a fault whose handler threw, rejected, missed its deadline or was never there. */
export type FailurePolicy =
  /** SIGBUS the faulting threads, as UFFD_FEATURE_SIGBUS would (by UFFDIO_POISON of the page). */
  | "sigbus"
  /** Dispatch the fault to the listeners again (up to `retries` times), then SIGBUS. */
  | "retry"
  /** Call back; the callback may resolve the fault (fault.copy ...). If it does not, SIGBUS. */
  | ((fault: Fault, error: HandlerError) => unknown);

export interface EngineConfig {
  proc: Process;
  fd: number;
  features: number;
  ranges: RangeSet;
  metrics: Metrics;
  batch: number;
  policy: FailurePolicy;
  retries: number;
  deadlineVirtualMs: number | null;
  deadlineWallMs: number | null;
  wallClock: () => number;
  target: Process | null;
  crossProcess: boolean;
  /** Builds the Userfaultfd for a FORK event's fd. */
  onFork: (engine: Engine, ufd: number) => unknown;
}

interface Subscription {
  event: UffdEventName;
  fn: (...args: never[]) => unknown;
  once: boolean;
  /** An SDK client's listener: called with the engine that read the event as an extra last argument. */
  withEngine: boolean;
  wrapped: (...args: never[]) => void;
}

const KIND_INDEX: Record<FaultKind, number> = { missing: 0, wp: 1, minor: 2 };
/** Key offsets of the faults an install answers (missing, minor) and an unprotect answers (wp). */
const INSTALL_KEYS = [KIND_INDEX.missing, KIND_INDEX.minor] as const;
const WP_KEYS = [KIND_INDEX.wp] as const;
/** How many REMOVE spans are remembered for in-flight resolves to check against. */
const REMOVE_LOG_MAX = 1024;

export class Engine {
  readonly proc: Process;
  readonly fd: number;
  readonly features: number;
  readonly ranges: RangeSet;
  readonly metrics: Metrics;
  readonly crossProcess: boolean;
  target: Process | null;
  readonly config: EngineConfig;
  readonly emitter = new EventEmitter<UffdEvents>();
  /** In-flight faults by page address + kind index. */
  readonly inflight = new FaultTable<FaultImpl>();
  /** Bumped once per event processed; ops compare it across an await. */
  eventEpoch = 0;
  closed = false;
  readonly #subs: Subscription[] = [];
  #epochWaiters: Array<() => void> = [];
  readonly #removeLog: Array<{ start: number; end: number; epoch: number }> = [];
  #removeLogHorizon = 0;
  #unheard: FaultImpl[] = [];
  #watchdog = false;
  #wallTimer: ReturnType<typeof setTimeout> | null = null;
  #zeros = new Uint8Array(PAGE_SIZE);
  /** Callers of drain(), told when no fault is in flight. */
  #drainWaiters: Array<() => void> = [];
  /** Demand faults waiting for a background fill to finish their page. */
  readonly #pageWaiters = new Map<number, Array<() => void>>();
  /** #handleBatch() is dispatching: settles defer their wall-clock reading to its end. */
  #inBatch = false;
  readonly #settledInBatch: FaultImpl[] = [];
  /** The fast path's UFFDIO_COPY struct, reused while every ioctl using it finished at once. */
  #copyArg: { dst: number; src: Uint8Array; len: number; mode: number; copy: number } | null = null;
  readonly done: Promise<void>;

  constructor(config: EngineConfig) {
    this.config = config;
    this.proc = config.proc;
    this.fd = config.fd;
    this.features = config.features;
    this.ranges = config.ranges;
    this.metrics = config.metrics;
    this.crossProcess = config.crossProcess;
    this.target = config.target;
    // Nobody has to await done: the loop reports what it cannot handle and always resolves.
    this.done = this.#loop().catch((e: unknown) => this.report(e, null));
  }

  // --- clocks -----------------------------------------------------------------------------

  nowNs(): number {
    return this.proc.kernel.now;
  }

  /** Zero bytes for UFFDIO_COPY of zeros; never written to. */
  zeros(len: number): Uint8Array {
    if (this.#zeros.length < len) this.#zeros = new Uint8Array(len);
    return this.#zeros.subarray(0, len);
  }

  // --- subscriptions ----------------------------------------------------------------------

  subscribe(event: UffdEventName, fn: (...args: never[]) => unknown, once: boolean, withEngine = false): void {
    const sub: Subscription = { event, fn, once, withEngine, wrapped: () => {} };
    sub.wrapped = event === "fault" ? this.#wrapFaultListener(sub) : this.#wrapListener(sub);
    this.#subs.push(sub);
    if (once) this.emitter.once(event, sub.wrapped as never);
    else this.emitter.on(event, sub.wrapped as never);
    if (event === "fault" && this.#unheard.length > 0) {
      const unheard = this.#unheard;
      this.#unheard = [];
      queueMicrotask(() => {
        for (const f of unheard) if (f.state === FAULT_STATE.PENDING) this.#dispatch(f);
      });
    }
  }

  unsubscribe(event: UffdEventName, fn?: (...args: never[]) => unknown): void {
    for (let i = this.#subs.length - 1; i >= 0; i--) {
      const s = this.#subs[i]!;
      if (s.event !== event || (fn !== undefined && s.fn !== fn)) continue;
      this.emitter.off(event, s.wrapped as never);
      this.#subs.splice(i, 1);
    }
  }

  unsubscribeAll(event?: UffdEventName): void {
    for (const s of [...this.#subs]) if (event === undefined || s.event === event) this.unsubscribe(s.event, s.fn);
  }

  listenerCount(event: UffdEventName): number {
    return this.emitter.listenerCount(event);
  }

  /** The app's persistent listeners, for a forked child to inherit. */
  inheritableListeners(): Array<{ event: UffdEventName; fn: (...args: never[]) => unknown; withEngine: boolean }> {
    return this.#subs.filter((s) => !s.once).map((s) => ({ event: s.event, fn: s.fn, withEngine: s.withEngine }));
  }

  #forget(sub: Subscription): void {
    const i = this.#subs.indexOf(sub);
    if (i >= 0) this.#subs.splice(i, 1);
  }

  #wrapFaultListener(sub: Subscription): (f: FaultImpl) => void {
    const fn = sub.fn as unknown as (f: Fault, e?: Engine) => unknown;
    return (f: FaultImpl) => {
      if (sub.once) this.#forget(sub);
      let r: unknown;
      try {
        r = sub.withEngine ? fn(f, this) : fn(f);
      } catch (e) {
        if (f.state === FAULT_STATE.PENDING) f.error ??= e;
        else this.report(e, f);
        return;
      }
      if (r !== undefined && r !== f.result && isThenable(r)) this.#watchListenerPromise(f, r);
    };
  }

  #wrapListener(sub: Subscription): (...args: unknown[]) => void {
    const fn = sub.fn as unknown as (...args: unknown[]) => unknown;
    return (...args: unknown[]) => {
      if (sub.once) this.#forget(sub);
      try {
        const r = sub.withEngine ? fn(...args, this) : fn(...args);
        if (isThenable(r)) r.then(undefined, (e: unknown) => this.report(e, null));
      } catch (e) {
        if (sub.event === "error") return; // an error listener that throws has nowhere left to report to
        this.report(e, null);
      }
    };
  }

  #watchListenerPromise(f: FaultImpl, p: PromiseLike<unknown>): void {
    p.then(
      () => {},
      (e: unknown) => {
        if (f.state === FAULT_STATE.PENDING) this.#fail(f, "handler-threw", e);
        else this.report(e, f);
      },
    );
  }

  /** Tells "error" listeners (never throws). */
  report(e: unknown, f: Fault | null): void {
    this.metrics.policy.errors++;
    const err = e instanceof Error ? e : new Error(String(e));
    this.emitter.emit("error", err, f);
  }

  // --- the read loop ----------------------------------------------------------------------

  async #loop(): Promise<void> {
    const len = this.config.batch * UFFD_MSG_SIZE;
    let failures = 0;
    while (!this.closed) {
      let bytes: Uint8Array;
      try {
        bytes = await this.proc.read(this.fd, len);
      } catch (e) {
        if (this.closed || this.proc.exited) break; // closed by us, or the handling process died in read(2)
        if (e instanceof ErrnoError && e.code === "EAGAIN") {
          await this.#pollIn();
          continue;
        }
        if (e instanceof ErrnoError && (e.code === "EBADF" || e.code === "ESRCH")) break;
        this.report(e, null);
        if (++failures > 16) break;
        await macrotask();
        continue;
      }
      failures = 0;
      if (this.closed) break;
      if (bytes.length === 0) break;
      this.#handleBatch(bytes);
    }
    if (!this.closed) await this.shutdown(false);
  }

  /** An O_NONBLOCK fd (one passed in, or a fork child's): wait for POLLIN instead of spinning. */
  async #pollIn(): Promise<void> {
    try {
      await this.proc.poll([{ fd: this.fd, events: POLLIN }], -1);
    } catch {
      await macrotask();
    }
  }

  #handleBatch(bytes: Uint8Array): void {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const n = bytes.length - (bytes.length % UFFD_MSG_SIZE);
    let faults = 0;
    let events = 0;
    for (let off = 0; off < n; off += UFFD_MSG_SIZE) {
      if (bytes[off] === UFFD_EVENT_PAGEFAULT) faults++;
      else {
        this.#handleEvent(view, off, bytes[off]!);
        events++;
      }
    }
    if (events > 0) this.#wakeEpochWaiters();
    if (faults === 0) return;
    // The faults of one read(2) were read at one moment: one wall-clock reading serves them
    // all, and those settled while the batch is dispatched share one settle-time reading too.
    const wallMs = this.config.wallClock();
    this.#inBatch = true;
    try {
      for (let off = 0; off < n; off += UFFD_MSG_SIZE) {
        if (bytes[off] === UFFD_EVENT_PAGEFAULT) this.#handleFault(u64(view, off + 8), u64(view, off + 16), u32(view, off + 24), wallMs);
      }
    } finally {
      this.#inBatch = false;
      this.#finishBatch();
    }
  }

  /**
   * The faults settled while their batch was being dispatched leave the in-flight set, and get
   * their wall latency from one clock reading for all.
   */
  #finishBatch(): void {
    const settled = this.#settledInBatch;
    if (settled.length === 0) return;
    const nowMs = this.config.wallClock();
    const h = this.metrics.latencyWallNs;
    for (let i = 0; i < settled.length; i++) {
      const f = settled[i]!;
      h.record((nowMs - f.readAtWallMs) * 1e6);
      if (this.inflight.get(f.key) === f) this.inflight.delete(f.key);
    }
    while (settled.length > 0) settled.pop();
    if (this.inflight.size === 0 && this.#drainWaiters.length > 0) for (const w of this.#drainWaiters.splice(0)) w();
  }

  // --- faults -----------------------------------------------------------------------------

  #handleFault(flags: number, address: number, ptid: number, wallMs: number): void {
    const page = address - (address % PAGE_SIZE);
    const kind: FaultKind = (flags & UFFD_PAGEFAULT_FLAG_MINOR) !== 0 ? "minor" : (flags & UFFD_PAGEFAULT_FLAG_WP) !== 0 ? "wp" : "missing";
    const key = page + KIND_INDEX[kind];
    const dup = this.inflight.get(key);
    if (dup !== undefined) {
      (dup.extraThreads ??= []).push(ptid);
      this.metrics.faults.duplicates++;
      return;
    }
    const entry = this.ranges.find(page) ?? this.#learnRange(page);
    const st = entry === null ? 0 : entry.state[entry.stateIndex(page)]!;
    const removed = kind === "missing" && (st & PAGE_STATE.REMOVED) !== 0;
    const now = this.nowNs();
    const f = new FaultImpl(this, kind, flags, address, page, ptid, entry, removed, this.eventEpoch, now, wallMs);
    this.inflight.set(key, f);
    this.metrics.faults[kind]++;
    this.#dispatch(f);
  }

  #dispatch(f: FaultImpl): void {
    f.error = undefined;
    const heard = this.emitter.emit("fault", f);
    if (f.state === FAULT_STATE.SETTLED) return;
    // Deadlines count from the read. Only a fault its dispatch did not settle can need one (most
    // settle in it), so they are set here, once: a renewed deadline stays.
    const { deadlineVirtualMs, deadlineWallMs } = this.config;
    if (deadlineVirtualMs !== null && f.deadlineNs === NO_DEADLINE) f.deadlineNs = f.readAtNs + deadlineVirtualMs * 1e6;
    if (deadlineWallMs !== null && f.deadlineWallMs === NO_DEADLINE) f.deadlineWallMs = f.readAtWallMs + deadlineWallMs;
    if (f.state !== FAULT_STATE.PENDING) return;
    if (f.error !== undefined) {
      this.#fail(f, "handler-threw", f.error);
      return;
    }
    if (!heard) this.#unheard.push(f);
    this.#armDeadlines();
  }

  /**
   * A fault outside every known range: an adopted fd, an mremap that grew a vma in place (no
   * event), a registration made behind the SDK's back. /proc/pid/smaps says which vma it is.
   */
  #learnRange(page: number): RangeEntry | null {
    if (this.target === null || this.target.exited) return null;
    const vma = this.target.smaps().find((v) => page >= v.start && page < v.end);
    if (vma === undefined) return null;
    const modes = (vma.vmFlags.includes("um") ? 1 : 0) | (vma.vmFlags.includes("uw") ? 2 : 0) | (vma.vmFlags.includes("ui") ? 4 : 0);
    if (modes === 0) return null;
    let start = vma.start;
    let offset = vma.start;
    for (const e of this.ranges.overlapping(vma.start, vma.end)) {
      if (e.end <= page) {
        start = e.end;
        offset = e.sourceOffset(e.end - PAGE_SIZE) + PAGE_SIZE;
      }
    }
    const next = this.ranges.overlapping(page, vma.end)[0];
    return this.ranges.adopt(start, next?.start ?? vma.end, modes, offset);
  }

  resolveFault(f: FaultImpl, op: MfillOp | "unprotect" | "wake", src: Uint8Array | number | null, wp: boolean | undefined): Promise<Resolution> {
    f.state = FAULT_STATE.RESOLVING;
    const p = this.#fastPath(f, op, src, wp) ?? this.#resolve(f, op, src, wp);
    f.result = p;
    return p;
  }

  /**
   * The hot path: one page by COPY of bytes, ZEROPAGE or CONTINUE, when no REMOVE raced the
   * fault. One ioctl and one continuation; EEXIST settles as "present" at once, any other error
   * falls back to the general path, which issues the ioctl again and handles every outcome
   * (EAGAIN, ENOENT, partial progress ...).
   */
  #fastPath(f: FaultImpl, op: MfillOp | "unprotect" | "wake", src: Uint8Array | number | null, wp: boolean | undefined): Promise<Resolution> | null {
    const page = f.pageAddress;
    let req: number;
    const protect = wp ?? (this.ranges.stateOf(page) & PAGE_STATE.PROTECTED) !== 0;
    let arg: FastArg;
    if (op === "copy" && src instanceof Uint8Array && src.length === PAGE_SIZE && !this.crossProcess) {
      const a = (this.#copyArg ??= { dst: 0, src, len: PAGE_SIZE, mode: 0, copy: 0 });
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
    if (op !== "continue" && this.removedSince(f.epoch, page, page + PAGE_SIZE)) return null;
    const p = this.proc.ioctl(this.fd, req, arg);
    // The result field is written before the ioctl returns (as in Linux): a whole page done
    // means it succeeded, and the fault settles now, without waiting for the promise. Only
    // the COPY struct is reused, and only once the kernel is done with it.
    if (fastArgDone(arg)) return this.#fastDone(f, op as "copy" | "zeropage" | "continue", protect) === "installed" ? INSTALLED : Promise.resolve(f.outcome!);
    if (arg === this.#copyArg) this.#copyArg = null;
    return p.then(
      () => this.#fastDone(f, op as "copy" | "zeropage" | "continue", protect),
      (e: unknown) => {
        if (e instanceof ErrnoError && e.code === "EAGAIN") this.metrics.retries.eagain++;
        // EEXIST from COPY or CONTINUE: a racing resolve won. Settle as the general path would,
        // without issuing the ioctl a second time. (ZEROPAGE's EEXIST may be a uffd-wp marker,
        // which the general path answers with a zeroed COPY.)
        if (e instanceof ErrnoError && e.code === "EEXIST" && op !== "zeropage") return this.#fastExists(f);
        return this.#resolve(f, op, src, wp);
      },
    );
  }

  async #fastExists(f: FaultImpl): Promise<Resolution> {
    const page = f.pageAddress;
    this.ranges.mark(page, page + PAGE_SIZE, PAGE_STATE.INSTALLED, PAGE_STATE.POISONED);
    await this.wake(page, PAGE_SIZE);
    this.settle(f, "present");
    return f.outcome!;
  }

  #fastDone(f: FaultImpl, op: "copy" | "zeropage" | "continue", protect: boolean): Resolution {
    const page = f.pageAddress;
    this.metrics.bytes[op] += PAGE_SIZE;
    const keep = protect && op !== "zeropage" ? PAGE_STATE.PROTECTED : 0;
    this.ranges.markPage(page, PAGE_STATE.INSTALLED | keep, PAGE_STATE.REMOVED | PAGE_STATE.POISONED | (keep === 0 ? PAGE_STATE.PROTECTED : 0));
    this.settleCovered(page, page + PAGE_SIZE, null);
    this.settle(f, "installed");
    return f.outcome!;
  }

  async #resolve(f: FaultImpl, op: MfillOp | "unprotect" | "wake", src: Uint8Array | number | null, wp: boolean | undefined): Promise<Resolution> {
    let outcome: Resolution;
    try {
      outcome = await this.#resolveOnce(f, op, src, wp);
    } catch (e) {
      if (f.state === FAULT_STATE.SETTLED) return f.outcome!;
      f.state = FAULT_STATE.PENDING;
      f.result = null;
      return this.#fail(f, "handler-threw", e);
    }
    this.settle(f, outcome);
    return f.outcome!;
  }

  async #resolveOnce(f: FaultImpl, op: MfillOp | "unprotect" | "wake", src: Uint8Array | number | null, wp: boolean | undefined): Promise<Resolution> {
    const page = f.pageAddress;
    if (op === "wake") {
      await this.wake(page, PAGE_SIZE);
      return "woken";
    }
    if (op === "unprotect") {
      const r = await this.writeProtect(page, PAGE_SIZE, false, true);
      if (r === "gone") await this.wake(page, PAGE_SIZE);
      return r === "ok" ? "installed" : r;
    }
    const len = typeof src === "object" && src !== null ? src.length : PAGE_SIZE;
    const protect = wp ?? (this.ranges.stateOf(page) & PAGE_STATE.PROTECTED) !== 0;
    const o: MfillOptions = { protect, dontWake: false, sinceEpoch: f.epoch, onRemoved: "zero", prefetch: false, allowSrcHoles: false };
    try {
      const r = await mfill(this, op, page, len, src, o);
      return r.first === "skipped" || r.first === null ? "installed" : r.first;
    } catch (e) {
      // CONTINUE finds a hole when the page cache lost the page after the minor fault (punch
      // hole, truncate): the retried access now meets the hole, which Linux handles itself.
      if (op === "continue" && f.kind === "minor" && e instanceof ErrnoError && e.code === "EFAULT") {
        await this.wake(page, PAGE_SIZE);
        return "gone";
      }
      throw e;
    }
  }

  /** Ends a fault (first outcome wins): metrics, trace, and it leaves the in-flight set. */
  settle(f: FaultImpl, outcome: Resolution): void {
    if (f.state === FAULT_STATE.SETTLED) return;
    f.state = FAULT_STATE.SETTLED;
    f.outcome = outcome;
    // Settled while its batch is dispatched: it leaves the in-flight set when the batch is done,
    // so that a duplicate message later in the same batch (another thread on the page, already
    // woken by this resolve) is still coalesced into it.
    if (this.#inBatch) this.#settledInBatch.push(f);
    else if (this.inflight.get(f.key) === f) this.inflight.delete(f.key);
    if (f.settleWaiters !== null) for (const w of f.settleWaiters.splice(0)) w(outcome);
    if (this.inflight.size === 0 && this.#drainWaiters.length > 0) for (const w of this.#drainWaiters.splice(0)) w();
    const m = this.metrics;
    m.outcomes[outcome]++;
    const now = this.nowNs();
    m.latencyVirtualNs.record(now - f.readAtNs);
    if (!this.#inBatch) m.latencyWallNs.record((this.config.wallClock() - f.readAtWallMs) * 1e6);
    if (m.tracing) {
      m.addTraceEvent({
        name: `${f.kind} fault`,
        cat: "uffd,fault",
        ph: "X",
        ts: f.readAtNs / 1000,
        dur: (now - f.readAtNs) / 1000,
        pid: this.proc.pid,
        tid: f.threadId,
        args: { address: `0x${f.pageAddress.toString(16)}`, write: f.write, outcome, threads: f.threadIds.length, fd: this.fd },
      });
    }
  }

  /**
   * A range op just installed or unprotected [start, end) and woke it: pending faults there are
   * answered. kind null = missing and minor faults (installs), "wp" = wp faults (unprotect).
   */
  settleCovered(start: number, end: number, kind: "wp" | null): void {
    const n = this.inflight.size;
    if (n === 0) return;
    if ((end - start) / PAGE_SIZE <= n) {
      // Few pages: look their faults up by key instead of scanning everything in flight.
      const keys = kind === "wp" ? WP_KEYS : INSTALL_KEYS;
      for (let a = start; a < end; a += PAGE_SIZE) {
        for (let k = 0; k < keys.length; k++) {
          const f = this.inflight.get(a + keys[k]!);
          if (f !== undefined && f.state === FAULT_STATE.PENDING) this.settle(f, kind === "wp" ? "woken" : "present");
        }
      }
      return;
    }
    for (const f of this.inflight.values()) {
      if (f.state !== FAULT_STATE.PENDING || f.pageAddress < start || f.pageAddress >= end) continue;
      if ((kind === "wp") !== (f.kind === "wp")) continue;
      this.settle(f, kind === "wp" ? "woken" : "present");
    }
  }

  /** Ends every in-flight fault in [start, end) as gone and wakes the span (UNMAP, REMAP, UNREGISTER). */
  abandon(start: number, end: number): void {
    let lo = Infinity;
    let hi = -Infinity;
    for (const f of [...this.inflight.values()]) {
      if (f.pageAddress < start || f.pageAddress >= end) continue;
      this.settle(f, "gone");
      lo = Math.min(lo, f.pageAddress);
      hi = Math.max(hi, f.pageAddress + PAGE_SIZE);
    }
    if (lo >= hi) return;
    // Wake the span of the faults, not the event's: an UNMAP carries the munmap's own start,
    // which may lie below mmap_min_addr, where UFFDIO_WAKE is EINVAL (validate_unaligned_range()).
    // Nobody awaits this wake: a failure is reported, never left to reject unhandled.
    void this.wakeReporting(lo, hi - lo, null);
  }

  /** UFFDIO_WAKE whose failure is reported on "error" instead of rejecting: for wakes nobody awaits. */
  async wakeReporting(start: number, len: number, f: Fault | null): Promise<void> {
    try {
      await this.wake(start, len);
    } catch (e) {
      this.report(e, f);
    }
  }

  // --- ops (delegates, so Fault and the facade share one implementation) -----------------

  wake(start: number, len: number): Promise<void> {
    return wake(this, start, len);
  }

  writeProtect(start: number, len: number, protect: boolean, wakeUp: boolean): Promise<"ok" | "gone" | "exited" | "closed"> {
    return writeProtect(this, start, len, protect, wakeUp);
  }

  rangeHasWp(addr: number): boolean {
    const e = this.ranges.find(addr);
    return e !== null && (e.modes & UFFDIO_REGISTER_MODE_WP) !== 0;
  }

  /** EAGAIN: wait until an event was processed after `epoch` (or one macrotask, if the event was read already). */
  async afterEvents(epoch: number, spins: number): Promise<void> {
    this.metrics.retries.eagain++;
    if (spins > EAGAIN_SPINS_MAX) throw livelockError(this, spins);
    if (this.closed || this.eventEpoch !== epoch) return;
    await new Promise<void>((resolve) => {
      this.#epochWaiters.push(resolve);
      setImmediate(resolve);
    });
  }

  #wakeEpochWaiters(): void {
    const w = this.#epochWaiters;
    if (w.length === 0) return;
    this.#epochWaiters = [];
    for (const resolve of w) resolve();
  }

  /** Whether a REMOVE processed after `epoch` touched [start, end). */
  removedSince(epoch: number, start: number, end: number): boolean {
    const log = this.#removeLog;
    if (log.length === 0 || log[log.length - 1]!.epoch <= epoch) return false;
    if (epoch < this.#removeLogHorizon) {
      // Older than what the log remembers: fall back to the page states.
      for (let a = start; a < end; a += PAGE_SIZE) if ((this.ranges.stateOf(a) & PAGE_STATE.REMOVED) !== 0) return true;
      return false;
    }
    for (let i = log.length - 1; i >= 0 && log[i]!.epoch > epoch; i--) {
      const e = log[i]!;
      if (e.start < end && e.end > start) return true;
    }
    return false;
  }

  /** Resolves once no fault is in flight. */
  drain(): Promise<void> {
    if (this.inflight.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  /** Resolves when a fill that marked the page FILLING is done with it. */
  waitPage(page: number): Promise<void> {
    return new Promise((resolve) => {
      const list = this.#pageWaiters.get(page);
      if (list === undefined) this.#pageWaiters.set(page, [resolve]);
      else list.push(resolve);
    });
  }

  notifyPages(start: number, end: number): void {
    if (this.#pageWaiters.size === 0) return;
    for (let a = start; a < end; a += PAGE_SIZE) {
      const list = this.#pageWaiters.get(a);
      if (list === undefined) continue;
      this.#pageWaiters.delete(a);
      for (const w of list) w();
    }
  }

  // --- events -----------------------------------------------------------------------------

  #handleEvent(view: DataView, off: number, event: number): void {
    this.eventEpoch++;
    const m = this.metrics;
    switch (event) {
      case UFFD_EVENT_FORK: {
        m.events.fork++;
        this.#traceEvent("fork", { ufd: u32(view, off + 8) });
        this.config.onFork(this, u32(view, off + 8));
        return;
      }
      case UFFD_EVENT_REMAP: {
        const from = u64(view, off + 8);
        const to = u64(view, off + 16);
        const len = u64(view, off + 24);
        m.events.remap++;
        this.ranges.move(from, to, len);
        this.abandon(from, from + len);
        this.#traceEvent("remap", { from: hex(from), to: hex(to), len });
        this.emitter.emit("remap", Object.freeze({ from, to, len }));
        return;
      }
      case UFFD_EVENT_REMOVE: {
        const start = u64(view, off + 8);
        const end = u64(view, off + 16);
        m.events.remove++;
        this.ranges.mark(start, end, PAGE_STATE.REMOVED, PAGE_STATE.INSTALLED | PAGE_STATE.POISONED);
        this.#removeLog.push({ start, end, epoch: this.eventEpoch });
        if (this.#removeLog.length > REMOVE_LOG_MAX) this.#removeLogHorizon = this.#removeLog.shift()!.epoch;
        this.#traceEvent("remove", { start: hex(start), end: hex(end) });
        this.emitter.emit("remove", Object.freeze({ start, end }));
        return;
      }
      case UFFD_EVENT_UNMAP: {
        const start = u64(view, off + 8);
        const end = u64(view, off + 16);
        m.events.unmap++;
        this.ranges.delete(start, end);
        this.abandon(start, end);
        this.#traceEvent("unmap", { start: hex(start), end: hex(end) });
        this.emitter.emit("unmap", Object.freeze({ start, end }));
        return;
      }
      default:
        this.report(new Error(`unknown uffd_msg event 0x${event.toString(16)}`), null);
    }
  }

  #traceEvent(name: string, args: Record<string, unknown>): void {
    if (!this.metrics.tracing) return;
    this.metrics.addTraceEvent({ name, cat: "uffd,event", ph: "i", s: "p", ts: this.nowNs() / 1000, pid: this.proc.pid, tid: 0, args: { ...args, fd: this.fd } });
  }

  // --- the failure policy -----------------------------------------------------------------

  /** A fault nobody resolved: report it, then apply the policy. Resolves with the fault's final outcome. */
  #fail(f: FaultImpl, reason: "handler-threw" | "handler-timeout" | "unhandled", cause: unknown): Promise<Resolution> {
    const what = reason === "handler-threw" ? "the handler failed" : reason === "handler-timeout" ? "no handler resolved it before its deadline" : "no 'fault' listener";
    const err = new HandlerError(reason, f.pageAddress, `${f.kind} fault at 0x${f.pageAddress.toString(16)}: ${what}`, { cause });
    this.report(err, f);
    if (reason === "handler-timeout") this.metrics.policy.timeouts++;
    const policy = this.config.policy;
    if (policy === "retry" && f.attempts < this.config.retries) {
      f.attempts++;
      this.metrics.policy.retry++;
      this.#renewDeadline(f);
      queueMicrotask(() => {
        if (f.state === FAULT_STATE.PENDING) this.#dispatch(f);
      });
      return this.#whenSettled(f);
    }
    if (typeof policy === "function" && f.attempts === 0) {
      f.attempts++;
      this.metrics.policy.callback++;
      return this.#callPolicy(f, policy, err);
    }
    return this.sigbus(f);
  }

  async #callPolicy(f: FaultImpl, policy: (fault: Fault, error: HandlerError) => unknown, err: HandlerError): Promise<Resolution> {
    try {
      await policy(f, err);
    } catch (e) {
      this.report(e, f);
    }
    if (f.state === FAULT_STATE.PENDING) return this.sigbus(f);
    return f.result ?? f.outcome!;
  }

  #whenSettled(f: FaultImpl): Promise<Resolution> {
    if (f.state === FAULT_STATE.SETTLED) return Promise.resolve(f.outcome!);
    return new Promise((resolve) => (f.settleWaiters ??= []).push(resolve));
  }

  /**
   * SIGBUS for the faulting threads with UFFD_FEATURE_SIGBUS's effect: the access fails and the
   * page stays unusable until a page is installed over it. Done with UFFDIO_POISON (a poison
   * marker is SIGBUS on access; UFFDIO_COPY may later replace it). A uffd-wp marker would make
   * POISON fail with EEXIST, so a write-protected range is unprotected first (DONTWAKE).
   * A wp fault has a present page, which cannot be poisoned without destroying its bytes: the
   * policy lets that write through (unprotect) and reports it.
   */
  async sigbus(f: FaultImpl): Promise<Resolution> {
    if (f.state === FAULT_STATE.SETTLED) return f.outcome!;
    f.state = FAULT_STATE.RESOLVING;
    this.metrics.policy.sigbus++;
    const page = f.pageAddress;
    let outcome: Resolution = "failed";
    try {
      if (f.kind === "wp") {
        const r = await this.writeProtect(page, PAGE_SIZE, false, true);
        if (r !== "ok") outcome = r;
      } else {
        outcome = await this.#poisonPage(page, (f.entry?.modes ?? 0) & UFFDIO_REGISTER_MODE_WP);
      }
    } catch (e) {
      this.report(e, f);
      await this.wakeReporting(page, PAGE_SIZE, f);
      outcome = "failed";
    }
    this.settle(f, outcome);
    return f.outcome!;
  }

  async #poisonPage(page: number, wpRegistered: number): Promise<Resolution> {
    for (let spins = 0; ; ) {
      const epoch = this.eventEpoch;
      if (wpRegistered !== 0) {
        try {
          await this.proc.ioctl(this.fd, UFFDIO_WRITEPROTECT, { range: { start: page, len: PAGE_SIZE }, mode: UFFDIO_WRITEPROTECT_MODE_DONTWAKE });
        } catch {
          // Best effort: a failure here shows up as EEXIST from POISON below.
        }
      }
      const arg = { range: { start: page, len: PAGE_SIZE }, mode: 0, updated: 0 };
      try {
        await this.proc.ioctl(this.fd, UFFDIO_POISON, arg);
        this.metrics.bytes.poison += PAGE_SIZE;
        this.ranges.mark(page, page + PAGE_SIZE, PAGE_STATE.POISONED, PAGE_STATE.INSTALLED);
        return "failed";
      } catch (e) {
        if (!(e instanceof ErrnoError)) throw e;
        if (e.code === "EAGAIN" && arg.updated <= 0) {
          await this.afterEvents(epoch, ++spins);
          continue;
        }
        if (e.code === "EEXIST") {
          await this.wake(page, PAGE_SIZE); // the page got installed meanwhile: the thread gets it
          return "present";
        }
        await this.wake(page, PAGE_SIZE);
        if (e.code === "ENOENT") return "gone";
        if (e.code === "ESRCH") return "exited";
        if (e.code === "EBADF") return "closed";
        throw e;
      }
    }
  }

  // --- deadlines ----------------------------------------------------------------------------

  #renewDeadline(f: FaultImpl): void {
    const { deadlineVirtualMs, deadlineWallMs } = this.config;
    if (deadlineVirtualMs !== null) f.deadlineNs = this.nowNs() + deadlineVirtualMs * 1e6;
    if (deadlineWallMs !== null) f.deadlineWallMs = this.config.wallClock() + deadlineWallMs;
  }

  #armDeadlines(): void {
    if (this.config.deadlineVirtualMs !== null && !this.#watchdog) {
      this.#watchdog = true;
      this.#virtualWatchdog()
        .catch((e: unknown) => this.report(e, null))
        .finally(() => (this.#watchdog = false));
    }
    if (this.config.deadlineWallMs !== null && this.#wallTimer === null) this.#armWallTimer();
  }

  /**
   * Sleeps on the kernel's virtual clock (poll with no fds) until the earliest pending deadline,
   * then sends overdue faults to the policy; ends when nothing is pending, so an idle kernel
   * stays idle.
   */
  async #virtualWatchdog(): Promise<void> {
    while (!this.closed) {
      let next = Infinity;
      for (const f of this.inflight.values()) if (f.state === FAULT_STATE.PENDING && f.deadlineNs !== NO_DEADLINE && f.deadlineNs < next) next = f.deadlineNs;
      if (next === Infinity) return;
      const waitNs = next - this.nowNs();
      if (waitNs > 0) {
        try {
          await this.proc.poll([], Math.max(1, Math.ceil(waitNs / 1e6)));
        } catch {
          return;
        }
      }
      const now = this.nowNs();
      for (const f of [...this.inflight.values()]) {
        if (f.state === FAULT_STATE.PENDING && f.deadlineNs !== NO_DEADLINE && f.deadlineNs <= now) void this.#fail(f, this.#unheard.includes(f) ? "unhandled" : "handler-timeout", undefined);
      }
    }
  }

  #armWallTimer(): void {
    let next = Infinity;
    for (const f of this.inflight.values()) if (f.state === FAULT_STATE.PENDING && f.deadlineWallMs !== NO_DEADLINE && f.deadlineWallMs < next) next = f.deadlineWallMs;
    if (next === Infinity || this.closed) return;
    this.#wallTimer = setTimeout(() => {
      this.#wallTimer = null;
      const now = this.config.wallClock();
      for (const f of [...this.inflight.values()]) {
        if (f.state === FAULT_STATE.PENDING && f.deadlineWallMs !== NO_DEADLINE && f.deadlineWallMs <= now) void this.#fail(f, "handler-timeout", undefined);
      }
      this.#armWallTimer();
    }, Math.max(0, next - this.config.wallClock()));
    this.#wallTimer.unref?.();
  }

  // --- shutdown -----------------------------------------------------------------------------

  async #releaseKnown(): Promise<void> {
    const pages = [...this.inflight.values()].map((f) => f.pageAddress);
    for (const e of [...this.ranges.entries]) {
      try {
        await this.proc.ioctl(this.fd, UFFDIO_UNREGISTER, { start: e.start, len: e.end - e.start });
      } catch {
        // Unmapped meanwhile, or the process is gone: nothing left to unregister.
      }
    }
    for (const page of pages) await this.wake(page, PAGE_SIZE);
  }

  /**
   * Closes the fd (if `closeFd`), ends every in-flight fault as closed, and says so.
   *
   * The loop's blocked read(2) holds the file, as in Linux, so closing the fd alone would not
   * release the context (no unregister, no wake) until the next message arrives. close()
   * therefore does what release would do for the ranges it knows first: UNREGISTER them (which
   * also clears their uffd-wp bits) and wake every in-flight fault, so blocked threads retry as
   * ordinary faults now. The next message, if any, ends the read and the release follows.
   */
  async shutdown(closeFd: boolean): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (closeFd) {
      await this.#releaseKnown();
      try {
        await this.proc.close(this.fd);
      } catch {
        // EBADF / ESRCH: already gone.
      }
    }
    if (this.#wallTimer !== null) clearTimeout(this.#wallTimer);
    for (const f of [...this.inflight.values()]) this.settle(f, "closed");
    this.#wakeEpochWaiters();
    for (const w of this.#drainWaiters.splice(0)) w();
    for (const list of this.#pageWaiters.values()) for (const w of list) w();
    this.#pageWaiters.clear();
    this.emitter.emit("close");
  }
}

/** The fast path's ioctl structs, with their result fields. */
type FastArg =
  | { dst: number; src: Uint8Array; len: number; mode: number; copy: number }
  | { range: { start: number; len: number }; mode: number; zeropage: number }
  | { range: { start: number; len: number }; mode: number; mapped: number };

/** The fast path's ioctl finished a whole page (its result field says so). */
function fastArgDone(arg: FastArg): boolean {
  if ("copy" in arg) return arg.copy === PAGE_SIZE;
  if ("zeropage" in arg) return arg.zeropage === PAGE_SIZE;
  return arg.mapped === PAGE_SIZE;
}

/** A settled "installed" (an already-settled promise carries no state, so every fast resolve shares it). */
const INSTALLED: Promise<Resolution> = Promise.resolve("installed");

function isThenable(x: unknown): x is PromiseLike<unknown> {
  return typeof x === "object" && x !== null && typeof (x as { then?: unknown }).then === "function";
}

function macrotask(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}
