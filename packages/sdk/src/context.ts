/**
 * One userfaultfd's state, and its only owner: the per-fd context (as fs/userfaultfd.c has its
 * struct userfaultfd_ctx). A fork child's userfaultfd gets a context of its own; nothing is
 * shared between contexts except a Metrics object the app chose to share.
 *
 * The context owns:
 * - the registered ranges and their per-page states (ranges.ts);
 * - the faults in flight, by page and kind, and the ordering state the race-safe resolvers rely
 *   on: the event epoch (bumped once per non-cooperative event processed), the log of recent
 *   REMOVEs, and the waiters for an event, for a page a fill is installing, or for no fault in
 *   flight (drain);
 * - the listeners (the app's and the SDK clients'), and the queue of the pull-style reader;
 * - the metrics it records into.
 *
 * Who changes what: the read loop (reader.ts) applies events and creates faults; the resolvers
 * (resolve.ts, ops.ts) install pages and settle faults through settle()/settleCovered(); the
 * dispatcher (dispatch.ts) runs listeners and the failure policy, which it plugs in as
 * `onUnresolved`. Every module reaches the context it works on as an argument (a fault carries
 * its own): no module holds one in a closure that could outlive a fork.
 */
import type { Process } from "@uffd/kernel";
import * as uapi from "@uffd/kernel/uapi";
import { UFFDIO_REGISTER_MODE_WP } from "@uffd/kernel/uapi";
import { EventEmitter } from "eventemitter3";
import { HandlerError, UffdError } from "./errors.ts";
import type { RangeEvent, RemapEvent } from "./events.ts";
import { FaultTable } from "./fault-table.ts";
import type { Metrics } from "./metrics.ts";
import * as rangesMod from "./ranges.ts";
import type { RangeEntry, RangeSet } from "./ranges.ts";
import * as typesMod from "./types.ts";
import type { Fault, Resolution } from "./types.ts";

// Module-local copies of what the fault path uses per fault: V8 reads an imported binding
// through its module cell at each use (a load and an initialisation check), and folds a
// module-local const into the optimized code. Each comes from a module evaluated before this one.
const PAGE_SIZE = uapi.PAGE_SIZE;
const PAGE_STATE = rangesMod.PAGE_STATE;
const FAULT_STATE = typesMod.FAULT_STATE;

/** What happens to a fault whose handler threw, rejected, missed its deadline or was never there. */
export type FailurePolicy =
  /** SIGBUS the faulting threads, as UFFD_FEATURE_SIGBUS would (by UFFDIO_POISON of the page). */
  | "sigbus"
  /** Dispatch the fault to the listeners again (up to `retries` times), then SIGBUS. */
  | "retry"
  /** Call back; the callback may resolve the fault (fault.copy ...). If it does not, SIGBUS. */
  | ((fault: Fault, error: HandlerError) => unknown);

export type UnresolvedReason = "handler-threw" | "handler-timeout" | "unhandled";

export interface ContextConfig {
  proc: Process;
  fd: number;
  features: number;
  ranges: RangeSet;
  metrics: Metrics;
  /** Messages per read(2). */
  batch: number;
  policy: FailurePolicy;
  retries: number;
  deadlineVirtualMs: number | null;
  deadlineWallMs: number | null;
  wallClock: () => number;
  /** Record the wall-clock latency histogram (HandlerOptions.wallLatency); false: the host clock is read only for wall deadlines. */
  wallLatency: boolean;
  /** The process whose memory the fd serves, when known (for /proc/pid/smaps lookups). */
  target: Process | null;
  /** The handler is not in the faulting process (an adopted fd, a fork child's): no UFFDIO_MOVE from its memory. */
  crossProcess: boolean;
  /** The kernel does not offer UFFDIO_MOVE (before Linux 6.8): move() resolves with UFFDIO_COPY. */
  moveMissing?: boolean;
  /** The kernel lacks UFFDIO_POISON (before 6.6). */
  poisonMissing?: boolean;
  /** The fallbacks taken so far, shared by a handler and its fork children. */
  fallbacks?: Fallback[];
}

/**
 * A fallback the SDK took because the kernel lacks something: what was wanted, what was used
 * instead, and why (naming the Linux release that added the missing piece).
 */
export interface Fallback {
  /** What the SDK would have used: "/dev/userfaultfd", "UFFDIO_MOVE", "UFFDIO_POISON", "UFFDIO_WRITEPROTECT across vmas", "wp-unpopulated", "wp-async". */
  readonly wanted: string;
  /** What it used instead. */
  readonly used: string;
  /** Why, e.g. "UFFDIO_MOVE came in Linux 6.8; this kernel is 6.6-uffd". */
  readonly reason: string;
}

/** @internal The record behind a Fault: the facts plus the lifecycle fields its context changes. */
export interface FaultState extends Fault {
  /** The context that read the fault: its resolvers act on this fd and these page states. */
  readonly ctx: UffdContext;
  readonly entry: RangeEntry | null;
  state: number;
  /** The in-flight table's key: page address + kind index. */
  readonly key: number;
  extraThreads: number[] | null;
  /** The event epoch when the fault was read; REMOVEs after it race with the resolve. */
  readonly epoch: number;
  readonly readAtNs: number;
  /** The host clock when the fault was read; null while the fault is in the dispatch of the batch it was read in (UffdContext.batchReadWallMs is its read time then). */
  readAtWallMs: number | null;
  deadlineNs: number;
  deadlineWallMs: number;
  attempts: number;
  outcome: Resolution | null;
  result: Promise<Resolution> | null;
  error: unknown;
  /** Callbacks for whoever waits for the final outcome (the failure policy). */
  settleWaiters: Array<(r: Resolution) => void> | null;
}

/** A listener as the context keeps it. */
export interface Subscription {
  event: string;
  fn: (...args: never[]) => unknown;
  once: boolean;
  /** An SDK client's listener: called with the context that read the event as an extra last argument. */
  withContext: boolean;
  /** What the emitter calls (the dispatcher's wrapper around fn). */
  wrapped: (...args: never[]) => void;
}

/** What a pull-style reader receives (the facade narrows "fork" to its own type). */
export type PulledEvent =
  | { readonly type: "fault"; readonly fault: Fault }
  | ({ readonly type: "remap" } & RemapEvent)
  | ({ readonly type: "remove" } & RangeEvent)
  | ({ readonly type: "unmap" } & RangeEvent)
  | { readonly type: "fork"; readonly child: unknown };

/** The dispatcher's deadline watchdogs for one context. */
export interface Watch {
  virtualRunning: boolean;
  wallTimer: ReturnType<typeof setTimeout> | null;
}

const KIND_INSTALL_KEYS = [0, 2] as const; // missing, minor: what an install answers
const KIND_WP_KEYS = [1] as const; // wp: what an unprotect answers
/** How many REMOVE spans are remembered for in-flight resolves to check against. */
const REMOVE_LOG_MAX = 1024;
/** After this many EAGAINs in a row without progress the handler is declared stuck. */
export const EAGAIN_SPINS_MAX = 10_000;

export class UffdContext {
  readonly proc: Process;
  readonly fd: number;
  readonly features: number;
  readonly ranges: RangeSet;
  readonly metrics: Metrics;
  readonly crossProcess: boolean;
  /** The kernel lacks UFFDIO_MOVE (before 6.8). */
  readonly moveMissing: boolean;
  /** The kernel lacks UFFDIO_POISON (before 6.6): the SIGBUS policy kills the process instead. */
  readonly poisonMissing: boolean;
  /** The fallbacks taken (Userfaultfd.fallbacks). */
  readonly fallbacks: Fallback[];
  readonly target: Process | null;
  readonly config: ContextConfig;
  readonly emitter = new EventEmitter();
  readonly subs: Subscription[] = [];
  /** The wrapper of the only "fault" listener, if there is exactly one and it is not a once listener (see dispatch.ts). */
  soleFaultListener: ((f: FaultState) => void) | null = null;
  /** In-flight faults by page address + kind index. */
  readonly inflight = new FaultTable<FaultState>();
  /** Faults dispatched while nobody listened: the first listener (or pull reader) gets them. */
  unheard: FaultState[] = [];
  /** A minor fault was read on this fd (until then no install can answer a second fault of its page). */
  minorRead = false;
  /** Bumped once per event processed; resolvers compare it across an await. */
  eventEpoch = 0;
  closed = false;
  /** The pull-style reader's queue, once the app has pulled (readEvent / for await). */
  pull: PullQueue | null = null;
  /** The dispatcher's failure policy: ends a fault nobody resolved. Plugged in by dispatch.ts. */
  onUnresolved: (f: FaultState, reason: UnresolvedReason, cause: unknown) => Promise<Resolution> = () => Promise.resolve("failed");
  /** The dispatcher's deadline watchdogs. */
  readonly watch: Watch = { virtualRunning: false, wallTimer: null };
  /** The read loop is dispatching a batch: settles defer their wall-clock reading to its end. */
  inBatch = false;
  /**
   * The host clock's reading when the batch being dispatched (or the last one) was read: the
   * read time of its faults. Without the wall-latency histogram: NaN until a fault of the batch
   * needs a time for its wall deadline, then the reading taken for it.
   */
  batchReadWallMs = NaN;
  readonly settledInBatch: FaultState[] = [];
  /** The fast path's UFFDIO_COPY struct, reused while every ioctl using it finished at once. */
  copyArg: { dst: number; src: Uint8Array; len: number; mode: number; copy: number } | null = null;
  #epochWaiters: Array<() => void> = [];
  readonly #removeLog: Array<{ start: number; end: number; epoch: number }> = [];
  /** The event epoch of the newest REMOVE processed (0: none yet): removedSince(epoch, ...) is false for any epoch at or after it. */
  lastRemoveEpoch = 0;
  #removeLogHorizon = 0;
  #zeros = new Uint8Array(PAGE_SIZE);
  #drainWaiters: Array<() => void> = [];
  /** Demand faults waiting for a background fill to finish their page. */
  readonly #pageWaiters = new Map<number, Array<() => void>>();

  constructor(config: ContextConfig) {
    this.config = config;
    this.proc = config.proc;
    this.fd = config.fd;
    this.features = config.features;
    this.ranges = config.ranges;
    this.metrics = config.metrics;
    this.crossProcess = config.crossProcess;
    this.target = config.target;
    this.moveMissing = config.moveMissing ?? false;
    this.poisonMissing = config.poisonMissing ?? false;
    this.fallbacks = config.fallbacks ?? [];
  }

  /** Records a fallback once per `wanted`. */
  noteFallback(wanted: string, used: string, since: string): void {
    if (this.fallbacks.some((f) => f.wanted === wanted)) return;
    this.fallbacks.push(Object.freeze({ wanted, used, reason: `${wanted} came in Linux ${since}; this kernel is ${this.proc.kernel.uname().release}` }));
  }

  nowNs(): number {
    return this.proc.kernel.now;
  }

  /** Zero bytes for UFFDIO_COPY of zeros; never written to. */
  zeros(len: number): Uint8Array {
    if (this.#zeros.length < len) this.#zeros = new Uint8Array(len);
    return this.#zeros.subarray(0, len);
  }

  /** Whether the app write-protected the page (and has not unprotected it since). */
  isProtected(page: number): boolean {
    return (this.ranges.stateOf(page) & PAGE_STATE.PROTECTED) !== 0;
  }

  rangeHasWp(addr: number): boolean {
    const e = this.ranges.find(addr);
    return e !== null && (e.modes & UFFDIO_REGISTER_MODE_WP) !== 0;
  }

  // --- reporting ------------------------------------------------------------------------------

  /**
   * Tells "error" listeners (never throws). With none attached, a handler failure is not left
   * silent: it is printed once, as a process warning naming the fault and its cause.
   */
  report(e: unknown, f: Fault | null): void {
    this.metrics.policy.errors++;
    const err = e instanceof Error ? e : new Error(String(e));
    if (this.emitter.listenerCount("error") > 0) {
      this.emitter.emit("error", err, f);
      return;
    }
    // A HandlerError's message names its fault and cause already.
    const text = f === null || err instanceof HandlerError ? err.message : `${err.message} (${f.kind} fault at 0x${f.pageAddress.toString(16)})`;
    const warn = (globalThis as { process?: { emitWarning?: (w: string, o: { type: string; code: string }) => void } }).process?.emitWarning;
    if (typeof warn === "function") warn(`userfaultfd ${this.fd}: ${text}; add an 'error' listener to handle it`, { type: "UffdWarning", code: "UFFD_HANDLER_ERROR" });
    else console.warn(`UffdWarning: userfaultfd ${this.fd}: ${text}`);
  }

  // --- settling ---------------------------------------------------------------------------------

  /** Ends a fault (first outcome wins): metrics, trace, and it leaves the in-flight set. */
  settle(f: FaultState, outcome: Resolution): void {
    if (f.state === FAULT_STATE.SETTLED) return;
    f.state = FAULT_STATE.SETTLED;
    f.outcome = outcome;
    // Settled while its batch is dispatched: it leaves the in-flight set when the batch is done,
    // so that a duplicate message later in the same batch (another thread on the page, already
    // woken by this resolve) is still coalesced into it.
    if (this.inBatch) this.settledInBatch.push(f);
    else this.inflight.deleteValue(f.key, f);
    if (f.settleWaiters !== null) for (const w of f.settleWaiters.splice(0)) w(outcome);
    if (this.inflight.size === 0 && this.#drainWaiters.length > 0) this.#wakeDrainers();
    const m = this.metrics;
    m.outcomes[outcome]++;
    const now = this.nowNs();
    m.latencyVirtualNs.record(now - f.readAtNs);
    if (!this.inBatch && this.config.wallLatency) m.latencyWallNs.record((this.config.wallClock() - (f.readAtWallMs ?? this.batchReadWallMs)) * 1e6);
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
   * The faults settled while their batch was being dispatched leave the in-flight set, and get
   * their wall latency from one clock reading for all, which is returned (NaN: none settled, no
   * reading taken).
   */
  finishBatch(): number {
    this.inBatch = false;
    const settled = this.settledInBatch;
    if (settled.length === 0) return NaN;
    if (!this.config.wallLatency) {
      this.#forgetSettled(settled);
      while (settled.length > 0) settled.pop();
      if (this.inflight.size === 0 && this.#drainWaiters.length > 0) this.#wakeDrainers();
      return NaN;
    }
    const nowMs = this.config.wallClock();
    const readMs = this.batchReadWallMs;
    const h = this.metrics.latencyWallNs;
    for (let i = 0; i < settled.length; i++) {
      const f = settled[i]!;
      // Read in this batch (null), or in an earlier one and settled by this batch's listeners.
      h.record((nowMs - (f.readAtWallMs ?? readMs)) * 1e6);
    }
    this.#forgetSettled(settled);
    // Emptied by pops, not `length = 0`, which would give the backing store back (and the next
    // batch would allocate it again).
    while (settled.length > 0) settled.pop();
    if (this.inflight.size === 0 && this.#drainWaiters.length > 0) this.#wakeDrainers();
    return nowMs;
  }

  /**
   * The faults settled in a batch leave the in-flight table. Each is still in it (a settle in a
   * batch defers its removal, and a key is never given a second fault while one is in), so when
   * they are as many as the table holds they are all it holds, and it is emptied at once: the
   * fastest path's batch of 32 then costs one sweep instead of 32 deletions.
   */
  #forgetSettled(settled: FaultState[]): void {
    const table = this.inflight;
    if (settled.length === table.size) {
      table.clear();
      return;
    }
    for (let i = 0; i < settled.length; i++) table.deleteValue(settled[i]!.key, settled[i]!);
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
      const keys = kind === "wp" ? KIND_WP_KEYS : KIND_INSTALL_KEYS;
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

  /** Ends every in-flight fault in [start, end) as gone; returns the span of their pages (lo >= hi: none). */
  settleGone(start: number, end: number): { lo: number; hi: number } {
    let lo = Infinity;
    let hi = -Infinity;
    for (const f of this.inflight.values()) {
      if (f.pageAddress < start || f.pageAddress >= end) continue;
      this.settle(f, "gone");
      lo = Math.min(lo, f.pageAddress);
      hi = Math.max(hi, f.pageAddress + PAGE_SIZE);
    }
    return { lo, hi };
  }

  /** Resolves with the fault's final outcome. */
  whenSettled(f: FaultState): Promise<Resolution> {
    if (f.state === FAULT_STATE.SETTLED) return Promise.resolve(f.outcome!);
    return new Promise((resolve) => (f.settleWaiters ??= []).push(resolve));
  }

  /** Resolves once no fault is in flight. */
  drain(): Promise<void> {
    if (this.inflight.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  #wakeDrainers(): void {
    for (const w of this.#drainWaiters.splice(0)) w();
  }

  // --- events and the resolvers' ordering state -----------------------------------------------

  /**
   * The read time to give a fault that outlives its batch's dispatch: the batch's reading; without
   * the wall-latency histogram, a reading taken now (once per batch) if a wall deadline needs one,
   * else NaN.
   */
  pendingReadWallMs(): number {
    const t = this.batchReadWallMs;
    if (t === t || this.config.deadlineWallMs === null) return t;
    return (this.batchReadWallMs = this.config.wallClock());
  }

  /** The read loop processed one non-cooperative event. */
  eventProcessed(): void {
    this.eventEpoch++;
  }

  /** A REMOVE over [start, end) was processed (after eventProcessed()). */
  noteRemove(start: number, end: number): void {
    this.ranges.mark(start, end, PAGE_STATE.REMOVED, PAGE_STATE.INSTALLED | PAGE_STATE.POISONED);
    this.#removeLog.push({ start, end, epoch: this.eventEpoch });
    this.lastRemoveEpoch = this.eventEpoch;
    if (this.#removeLog.length > REMOVE_LOG_MAX) this.#removeLogHorizon = this.#removeLog.shift()!.epoch;
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

  /** EAGAIN: wait until an event was processed after `epoch` (or one macrotask, if the event was read already). */
  async afterEvents(epoch: number, spins: number): Promise<void> {
    this.metrics.retries.eagain++;
    if (spins > EAGAIN_SPINS_MAX) {
      throw new UffdError(
        "livelock",
        `userfaultfd ${this.fd}: ${spins} EAGAINs in a row: a non-cooperative event stays unread. ` +
          `Is this handler's read loop running (was the fd handed to another reader)?`,
      );
    }
    if (this.closed || this.eventEpoch !== epoch) return;
    await new Promise<void>((resolve) => {
      this.#epochWaiters.push(resolve);
      setImmediate(resolve);
    });
  }

  /** Lets resolvers waiting out an EAGAIN retry (events were processed, or the fd is closing). */
  wakeEpochWaiters(): void {
    const w = this.#epochWaiters;
    if (w.length === 0) return;
    this.#epochWaiters = [];
    for (const resolve of w) resolve();
  }

  /** Resolves when a fill that marked the page FILLING is done with it. */
  waitPage(page: number): Promise<void> {
    if (this.closed) return Promise.resolve();
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

  /** The fd is closed: every fault in flight ends as closed and every waiter is let go. */
  markClosed(): void {
    this.closed = true;
    for (const f of this.inflight.values()) this.settle(f, "closed");
    this.wakeEpochWaiters();
    this.#wakeDrainers();
    for (const list of this.#pageWaiters.values()) for (const w of list) w();
    this.#pageWaiters.clear();
    this.pull?.end();
  }
}

/**
 * The pull-style reader's queue: what the read loop read, in its order, until the app takes it.
 * It holds what was read and not yet pulled (faults are bounded by the threads waiting on them;
 * events by the processes causing them, each of which Linux blocks until its event is read).
 */
export class PullQueue {
  readonly #items: PulledEvent[] = [];
  #head = 0;
  #waiters: Array<(e: PulledEvent | null) => void> = [];
  #ended = false;

  push(e: PulledEvent): void {
    if (this.#ended) return;
    const w = this.#waiters.shift();
    if (w !== undefined) w(e);
    else this.#items.push(e);
  }

  /** The next item; null once the userfaultfd is closed and everything read was taken. */
  next(): Promise<PulledEvent | null> {
    if (this.#head < this.#items.length) {
      const e = this.#items[this.#head++]!;
      if (this.#head > 64 && this.#head * 2 > this.#items.length) {
        this.#items.splice(0, this.#head);
        this.#head = 0;
      }
      return Promise.resolve(e);
    }
    if (this.#ended) return Promise.resolve(null);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  get size(): number {
    return this.#items.length - this.#head;
  }

  end(): void {
    this.#ended = true;
    for (const w of this.#waiters.splice(0)) w(null);
  }
}
