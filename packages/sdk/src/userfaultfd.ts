/**
 * Userfaultfd: one userfaultfd and its handler, the object an app holds instead of an fd.
 *
 *   const uffd = await Userfaultfd.open(proc);
 *   await uffd.register(addr, len, "missing");
 *   uffd.on("fault", (fault) => fault.copy(pageFor(fault.offset)));
 *
 * Opening folds in the API handshake and feature probing (one UFFDIO_API when everything asked
 * for is available; otherwise a probe on the same fd, which a failed UFFDIO_API leaves
 * uninitialised, then a fresh fd with what the kernel and the caller's privileges allow) and
 * answers an unavailable feature or mode with an error that says what to do. The handler loop
 * starts at once and runs until close() or until the handling process exits.
 */
import { ErrnoError, type Process, UFFD_FEATURE_SINCE } from "@uffd/kernel";
import {
  _UFFDIO_CONTINUE,
  _UFFDIO_COPY,
  _UFFDIO_WRITEPROTECT,
  O_CLOEXEC,
  PAGE_SIZE,
  UFFD_API,
  UFFD_FEATURE_EVENT_FORK,
  UFFD_FEATURE_MINOR_SHMEM,
  UFFD_FEATURE_MOVE,
  UFFD_FEATURE_POISON,
  UFFD_FEATURE_WP_ASYNC,
  UFFD_FEATURE_WP_HUGETLBFS_SHMEM,
  UFFD_FEATURE_WP_UNPOPULATED,
  UFFD_USER_MODE_ONLY,
  UFFDIO_API,
  UFFDIO_REGISTER,
  UFFDIO_REGISTER_MODE_MINOR,
  UFFDIO_REGISTER_MODE_MISSING,
  UFFDIO_REGISTER_MODE_WP,
  UFFDIO_UNREGISTER,
} from "@uffd/kernel/uapi";
import { type ContextConfig, type FailurePolicy, type Fallback, UffdContext } from "./context.ts";
import { dispatchEvent, inheritableListeners, plugPolicy, pullQueue, shutdown, subscribe, unsubscribe, unsubscribeAll } from "./dispatch.ts";
import { FeatureUnavailableError, ModeUnavailableError, UffdError } from "./errors.ts";
import type { TypedEventEmitter } from "./emitter.ts";
import type { RangeEvent, RemapEvent } from "./events.ts";
import { DEFAULT_OPTIONAL_FEATURES, FEATURES, featureBits, featureNames, type FeatureName, modeBits, modeNames, type RegisterMode } from "./features.ts";
import { Metrics, TRACE_EVENTS_MAX } from "./metrics.ts";
import { abandon, type MfillOp, type MfillOptions, MfillResult, mfillNow, wake, writeProtect } from "./ops.ts";
import type { PageSource } from "./page-source.ts";
import { PAGE_STATE, RangeSet, type RegisteredRange } from "./ranges.ts";
import { startReader } from "./reader.ts";
import { BackgroundFill, serve, type FillOptions, type ServeOptions } from "./serve.ts";
import type { Fault } from "./types.ts";

/**
 * The typed event map, one entry per UFFD_EVENT_* plus the SDK's own "error" and "close".
 * Backed by eventemitter3 and typed with typed-emitter's interface (src/emitter.ts); the SDK exposes only the subscribe side
 * (on / once / off / removeAllListeners / listenerCount). eventemitter3 has no prependListener,
 * rawListeners or get/setMaxListeners, so the SDK does not promise them.
 *
 * A listener may return a promise: the SDK watches it, and a rejection goes to the failure
 * policy like a throw. Listeners never run inside the kernel: a throw is caught and reported.
 */
export type UffdEvents = {
  /** UFFD_EVENT_PAGEFAULT (duplicates for one page are coalesced into one fault). */
  fault: (fault: Fault) => void;
  /** UFFD_EVENT_FORK: the child's userfaultfd, already running with this handler's listeners. */
  fork: (child: Userfaultfd) => void;
  /** UFFD_EVENT_REMAP: the SDK's ranges already moved. */
  remap: (event: RemapEvent) => void;
  /** UFFD_EVENT_REMOVE: the pages are marked removed (their next fault should be zero-filled). */
  remove: (event: RangeEvent) => void;
  /** UFFD_EVENT_UNMAP: the SDK's ranges already dropped the span. */
  unmap: (event: RangeEvent) => void;
  /** A listener failed, a fault went to the failure policy, or the read loop hit an error. */
  error: (error: UffdError | Error, fault: Fault | null) => void;
  /** The userfaultfd was closed (by close(), or because the handler process exited). */
  close: () => void;
};

/** The name of an event of UffdEvents ("fault", "fork", "remap", "remove", "unmap", "error", "close"). */
export type UffdEventName = keyof UffdEvents;

/**
 * What the pull-style API (readEvent(), `for await (const event of uffd)`) returns: a fault,
 * resolved with the same race-safe resolvers as in a listener, or a non-cooperative event that
 * the SDK's view of the ranges already follows (as for the push events).
 */
export type UffdEvent =
  | {
      /** A userfault. */
      readonly type: "fault";
      /** The fault, with its resolvers. */
      readonly fault: Fault;
    }
  | {
      /** UFFD_EVENT_FORK. */
      readonly type: "fork";
      /** The child's handler (adopted with the parent's options). */
      readonly child: Userfaultfd;
    }
  | ({
      /** UFFD_EVENT_REMAP. */
      readonly type: "remap";
    } & RemapEvent)
  | ({
      /** UFFD_EVENT_REMOVE. */
      readonly type: "remove";
    } & RangeEvent)
  | ({
      /** UFFD_EVENT_UNMAP. */
      readonly type: "unmap";
    } & RangeEvent);

/** typed-emitter's interface over this map (eventemitter3 implements only part of it). */
export type UffdTypedEmitter = TypedEventEmitter<UffdEvents>;

/**
 * The subscribe side of UffdTypedEmitter: the same signatures, returning the subscriber itself
 * for chaining. test/types.test.ts proves UffdTypedEmitter is assignable to it (a strict subset).
 */
export interface UffdEventSubscriber {
  /** Adds a listener. */
  on<E extends UffdEventName>(event: E, listener: UffdEvents[E]): this;
  /** Adds a listener called at most once. */
  once<E extends UffdEventName>(event: E, listener: UffdEvents[E]): this;
  /** Removes a listener. */
  off<E extends UffdEventName>(event: E, listener: UffdEvents[E]): this;
  /** Removes every listener of an event, or of all events. */
  removeAllListeners<E extends UffdEventName>(event?: E): this;
  /** How many listeners an event has. */
  listenerCount<E extends UffdEventName>(event: E): number;
}

/** How the handler runs: read batch, failure policy, deadlines, tracing and metrics. Common to open() and adopt(). */
export interface HandlerOptions {
  /** Messages per read(2) (each 32 bytes). Default 64. */
  batch?: number;
  /** What happens to a fault whose handler throws, rejects, or misses its deadline. Default "sigbus". */
  onHandlerError?: FailurePolicy;
  /** How many times the "retry" policy dispatches a fault again before SIGBUS. Default 2. */
  retries?: number;
  /**
   * How long a fault may stay unresolved (no resolver called) before it goes to the policy.
   *
   * wallMs is measured on the host clock: time in which the handler could really have run.
   * Default DEFAULT_DEADLINE_WALL_MS (10,000 ms); null = never.
   *
   * virtualMs is measured on the kernel's virtual clock. Default null (never), because the
   * virtual clock jumps ahead whenever every simulated thread waits (kernel.idle(), or nothing
   * runnable for a macrotask turn): a test that awaits kernel.idle() while its handler waits for
   * the test would see the deadline pass at once. Set it for deterministic deadline tests (a
   * handler that must answer within so much virtual time); a handler waiting on real I/O then
   * looks like one that never answers.
   */
  deadline?: {
    /** Virtual milliseconds (the kernel's clock); null = never (the default). */
    virtualMs?: number | null;
    /** Host milliseconds; null = never. Default DEFAULT_DEADLINE_WALL_MS. */
    wallMs?: number | null;
  };
  /**
   * Record Chrome trace events from the start (see metrics.exportTrace()), into a ring that keeps
   * the most recent `eventsMax` events (default 100,000, TRACE_EVENTS_MAX; older ones are
   * overwritten and counted in the export's otherData.droppedEvents).
   */
  trace?:
    | boolean
    | {
        /** The size of the trace ring in events (default TRACE_EVENTS_MAX). */
        eventsMax?: number;
      };
  /** Share a Metrics object (fork children share their parent's by default). */
  metrics?: Metrics;
  /**
   * Record each fault's read-to-settle time on the host clock in metrics.latency.wallNs. Default
   * true. With false that histogram stays empty and the read loop reads the host clock only for
   * a wall-clock deadline: once per read(2) whose batch leaves a fault pending after its dispatch
   * (that fault's deadline then counts from that reading, taken when its dispatch returned,
   * rather than from the read). A handler that settles its faults as they are dispatched then
   * reads no clock at all, where two readings per read(2) are otherwise the largest single part
   * of what the SDK adds to a round trip (docs/benchmarks.md, "The SDK's share, fourth pass").
   */
  wallLatency?: boolean;
  /**
   * Host clock in ms, for wall-time latencies and deadlines: any monotonic clock, as only
   * differences of its readings are used. Default: Node's monotonic clock through
   * process.hrtime(), in ms (the clock performance.now() reads, from another origin);
   * performance.now() where there is no process.hrtime.
   */
  wallClock?: () => number;
}

/** Options of Userfaultfd.open(): the features to ask for and how to create the fd, plus the HandlerOptions. */
export interface OpenOptions extends HandlerOptions {
  /** Features the handler cannot work without: open fails with FeatureUnavailableError if any is missing. */
  features?: readonly FeatureName[];
  /** Features enabled when available, silently dropped otherwise. Default DEFAULT_OPTIONAL_FEATURES. */
  optionalFeatures?: readonly FeatureName[];
  /** UFFD_USER_MODE_ONLY: handle user-mode faults only (kernel accesses then fail with EFAULT). Default false. */
  userModeOnly?: boolean;
  /** How to create the fd: /dev/userfaultfd, the syscall, or the device with a fallback to the syscall (default). */
  via?: "auto" | "dev" | "syscall";
}

/** Options of Userfaultfd.adopt(): what the process that created the fd set up (features, ranges), plus the HandlerOptions. */
export interface AdoptOptions extends HandlerOptions {
  /** The features the sender enabled with UFFDIO_API (the fd cannot be asked). */
  features?: readonly FeatureName[];
  /** The ranges the sender registered, as { start, len, modes, offset? }. */
  ranges?: ReadonlyArray<{
    /** Start address. */
    start: number;
    /** Length in bytes. */
    len: number;
    /** The modes the range was registered with. */
    modes: RegisterMode | readonly RegisterMode[];
    /** The range's offset in the page source (default 0). */
    offset?: number;
  }>;
  /** The process whose memory the fd serves, for /proc/pid/smaps lookups of unknown ranges. */
  target?: Process;
}

/** Options of register(). */
export interface RegisterOptions {
  /** The byte offset of `start` in the app's page source (fault.offset is measured from it). Default 0. */
  offset?: number;
}

/** A registration as UFFDIO_REGISTER answered it. */
export interface Registration extends RegisteredRange {
  /** The ioctls mask the kernel returned (bit n = ioctl nr n may be used on the range). */
  readonly ioctls: bigint;
}

/** Whether a range operation wakes the threads waiting on its pages (the *_MODE_DONTWAKE bit). */
export interface WakeOptions {
  /** Wake the threads waiting on the range (default true). `{ wake: false }` is `{ dontWake: true }`. */
  wake?: boolean;
  /** Leave waiters asleep (the ioctl's *_MODE_DONTWAKE); wake them later with uffd.wake(). Same as `{ wake: false }`. */
  dontWake?: boolean;
}

/** Options of the range operations that map pages (copy, zeropage, continue, move). */
export interface RangeOpOptions extends WakeOptions {
  /** Map write-protected. Default: whether the page is currently write-protected by this handler. */
  wp?: boolean;
}

/** The default wall-clock deadline of a fault (HandlerOptions.deadline.wallMs), in ms. */
export const DEFAULT_DEADLINE_WALL_MS = 10_000;

function checkedDeadline(name: string, v: number | null | undefined, dflt: number | null): number | null {
  if (v === undefined) return dflt;
  if (v === null) return null;
  if (typeof v !== "number" || !(v >= 0) || v === Infinity) throw new RangeError(`deadline.${name} must be a finite number of ms >= 0 or null, got ${String(v)}`);
  return v;
}

/** HandlerOptions, checked and with their defaults. */
interface HandlerConfig {
  config: Pick<ContextConfig, "batch" | "policy" | "retries" | "deadlineVirtualMs" | "deadlineWallMs" | "wallClock" | "wallLatency">;
  /** The trace ring's size, or null when not tracing. */
  traceEventsMax: number | null;
}

function handlerConfig(o: HandlerOptions): HandlerConfig {
  const policy = o.onHandlerError ?? "sigbus";
  if (policy !== "sigbus" && policy !== "retry" && typeof policy !== "function") throw new TypeError(`onHandlerError must be "sigbus", "retry" or a function, got ${String(policy)}`);
  const trace = o.trace ?? false;
  let traceEventsMax: number | null = null;
  if (trace !== false) {
    traceEventsMax = trace === true ? TRACE_EVENTS_MAX : checkedCount("trace.eventsMax", trace.eventsMax, TRACE_EVENTS_MAX, 1);
  }
  return {
    config: {
      batch: checkedCount("batch", o.batch, 64, 1),
      policy,
      retries: checkedCount("retries", o.retries, 2, 0),
      deadlineVirtualMs: checkedDeadline("virtualMs", o.deadline?.virtualMs, null),
      deadlineWallMs: checkedDeadline("wallMs", o.deadline?.wallMs, DEFAULT_DEADLINE_WALL_MS),
      wallClock: o.wallClock ?? hostClock(),
      wallLatency: checkedFlag("wallLatency", o.wallLatency, true),
    },
    traceEventsMax,
  };
}

/**
 * The default host clock, in ms: process.hrtime() (uv_hrtime(): CLOCK_MONOTONIC, the clock
 * performance.now() reads). The read loop reads the clock up to twice per read(2), and Node 20's
 * performance.now() first checks its receiver's brand through a wrapper that forwards its
 * arguments: per one-by-one round trip its two readings counted ~410 instructions in callgrind
 * (the brand check ~240 of them) against ~130 for process.hrtime()'s, plus the [s, ns] array it
 * returns (docs/benchmarks.md, "The SDK's share, fourth pass"). Where process.hrtime is
 * missing: performance.now() of the `performance` object current when the handler is created
 * (Node defines the global with a getter, which costs about as much as now() itself).
 */
function hostClock(): () => number {
  const hrtime = (globalThis as { process?: { hrtime?: () => [number, number] } }).process?.hrtime;
  if (typeof hrtime === "function") {
    return () => {
      const t = hrtime();
      return t[0] * 1e3 + t[1] / 1e6;
    };
  }
  const perf = performance;
  return () => perf.now();
}

function checkedFlag(name: string, v: boolean | undefined, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (typeof v !== "boolean") throw new TypeError(`${name} must be a boolean, got ${String(v)}`);
  return v;
}

function checkedCount(name: string, v: number | undefined, dflt: number, min: number): number {
  if (v === undefined) return dflt;
  if (!Number.isSafeInteger(v) || v < min) throw new RangeError(`${name} must be an integer >= ${min}, got ${String(v)}`);
  return v;
}

/** The DONTWAKE bit a range operation's options ask for; a contradiction is refused. */
function dontWakeOf(o: WakeOptions, what: string): boolean {
  if (o.wake === true && o.dontWake === true) throw new TypeError(`${what}(): { wake: true } and { dontWake: true } contradict each other`);
  return o.wake === false || o.dontWake === true;
}

/** What a range operation did, in bytes. */
export interface RangeResult {
  /** Installed by this call (copied, zero-filled, continued, moved or poisoned). */
  readonly installedBytes: number;
  /** Already present (EEXIST): woken and skipped. */
  readonly presentBytes: number;
  /** No longer registered (ENOENT): woken and skipped. */
  readonly goneBytes: number;
}

/** The options of a range operation called without any (shared: a per-page copy allocates none). */
const NO_OPTIONS: RangeOpOptions = Object.freeze({});

function rangeResult(r: MfillResult): RangeResult {
  return { installedBytes: r.installed + r.zeroed, presentBytes: r.present, goneBytes: r.gone };
}

/** A userfaultfd with its read loop: registers ranges, delivers faults and non-cooperative events (as events, or pulled with readEvent() / for await), and resolves them race-safely. Create one with Userfaultfd.open(proc), or adopt() an fd another process made. */
export class Userfaultfd {
  readonly #e: UffdContext;
  readonly #supported: number;
  readonly #done: Promise<void>;

  private constructor(ctx: UffdContext, supported: number, onFork: (parent: UffdContext, ufd: number) => void) {
    this.#e = ctx;
    this.#supported = supported;
    plugPolicy(ctx);
    this.#done = startReader(ctx, onFork);
  }

  // --- creation ---------------------------------------------------------------------------

  /** Opens a userfaultfd for `proc`'s own memory, with the handshake and feature probing done. */
  static async open(proc: Process, options: OpenOptions = {}): Promise<Userfaultfd> {
    const h = handlerConfig(options); // before any syscall: a bad option costs no fd
    const fallbacks: Fallback[] = [];
    const { fd, enabled, supported } = await handshake(proc, options, fallbacks);
    return Userfaultfd.#create(proc, fd, enabled, supported, new RangeSet(), proc, false, options, h, fallbacks);
  }

  /**
   * The handshake and feature probing of open(), without a handler: for a userfaultfd that is
   * handed to a monitor process (sendFd, then Userfaultfd.adopt there). A handler in the sender
   * would compete with the monitor for the messages.
   */
  static async prepare(
    proc: Process,
    options: Omit<OpenOptions, keyof HandlerOptions> = {},
  ): Promise<{
    /** The userfaultfd, in `proc`'s fd table. */
    fd: number;
    /** The features enabled. */
    features: FeatureName[];
  }> {
    const { fd, enabled } = await handshake(proc, options);
    return { fd, features: featureNames(enabled) };
  }

  /**
   * Takes over a userfaultfd that another process set up and passed over (sendFd): the handshake
   * is done, so say which features and ranges it has, as Firecracker's handshake message does.
   */
  static adopt(proc: Process, fd: number, options: AdoptOptions = {}): Userfaultfd {
    const h = handlerConfig(options);
    const ranges = new RangeSet();
    for (const r of options.ranges ?? []) ranges.register(r.start, r.start + r.len, modeBits(r.modes), r.offset ?? 0);
    const target = options.target ?? null;
    return Userfaultfd.#create(proc, fd, featureBits(options.features ?? []), 0, ranges, target, target !== proc, options, h);
  }

  static #create(proc: Process, fd: number, features: number, supported: number, ranges: RangeSet, target: Process | null, crossProcess: boolean, o: HandlerOptions, h: HandlerConfig, fallbacks: Fallback[] = []): Userfaultfd {
    const metrics = o.metrics ?? new Metrics();
    if (h.traceEventsMax !== null && !metrics.tracing) metrics.startTrace(h.traceEventsMax);
    // supported is 0 when unknown (an adopted fd): then move() tries UFFDIO_MOVE as before.
    const moveMissing = supported !== 0 && (supported & UFFD_FEATURE_MOVE) === 0;
    const poisonMissing = supported !== 0 && (supported & UFFD_FEATURE_POISON) === 0;
    const ctx = new UffdContext({ proc, fd, features, ranges, metrics, ...h.config, target, crossProcess, moveMissing, poisonMissing, fallbacks });
    return new Userfaultfd(ctx, supported, (parent, ufd) => Userfaultfd.#forked(parent, ufd, o, h, supported));
  }

  /**
   * UFFD_EVENT_FORK: the child's fd gets its own handler and its own context, starting from a
   * copy of the parent's view (ranges and page states as they were at the fork) and the
   * parent's persistent listeners; it shares the parent's metrics.
   */
  static #forked(parent: UffdContext, ufd: number, o: HandlerOptions, h: HandlerConfig, supported: number): void {
    const child = Userfaultfd.#create(parent.proc, ufd, parent.features, supported, parent.ranges.clone(), null, true, { ...o, metrics: parent.metrics }, h, parent.fallbacks);
    for (const { event, fn, withContext } of inheritableListeners(parent)) subscribe(child.#e, event, fn, false, withContext);
    dispatchEvent(parent, "fork", child, Object.freeze({ type: "fork", child }));
  }

  // --- facts ------------------------------------------------------------------------------

  /** The fd in the handling process. */
  get fd(): number {
    return this.#e.fd;
  }

  /** The process that holds the fd and makes the ioctls. */
  get process(): Process {
    return this.#e.proc;
  }

  /** The features enabled on this fd. */
  get features(): ReadonlySet<FeatureName> {
    return new Set(featureNames(this.#e.features));
  }

  /**
   * The fallbacks taken because the kernel lacks something (an older release): the
   * userfaultfd(2) syscall where /dev/userfaultfd is missing (before 6.1), UFFDIO_COPY where
   * UFFDIO_MOVE is (before 6.8), kill(SIGBUS) of the faulting process where the SIGBUS failure
   * policy meets a kernel without UFFDIO_POISON (before 6.6), one UFFDIO_WRITEPROTECT per vma where
   * a write-protect or unprotect range spans several WP-registered vmas (before 6.4), and those a DirtyTracker takes (pre-populating where
   * wp-unpopulated is missing, sync tracking where wp-async is). Empty on a kernel that has
   * everything used.
   */
  get fallbacks(): readonly Fallback[] {
    return [...this.#e.fallbacks];
  }

  /** @internal The UFFD_FEATURE_* bits the kernel offers (0 when unknown: an adopted fd). */
  get kernelFeatureBits(): number {
    return this.#supported;
  }

  /** Everything the kernel offers (from UFFDIO_API; empty for an adopted fd). */
  get supportedFeatures(): ReadonlySet<FeatureName> {
    return new Set(featureNames(this.#supported));
  }

  /** Whether a feature was enabled by the handshake. */
  has(feature: FeatureName): boolean {
    return (this.#e.features & FEATURES[feature]) !== 0;
  }

  /** The registered ranges as the SDK currently knows them (events keep this up to date). */
  get ranges(): readonly RegisteredRange[] {
    return this.#e.ranges.views();
  }

  /** Counters, latency histograms and the trace of this handler (shared with fork children). */
  get metrics(): Metrics {
    return this.#e.metrics;
  }

  /** Whether the userfaultfd is closed. */
  get closed(): boolean {
    return this.#e.closed;
  }

  /** Faults read but not yet resolved. */
  get pendingFaults(): number {
    return this.#e.inflight.size;
  }

  /** Resolves once every fault read so far has been resolved (or sent to the failure policy and ended). */
  drain(): Promise<void> {
    return this.#e.drain();
  }

  /** Resolves when the handler loop has ended (close(), or the handling process exited). */
  get done(): Promise<void> {
    return this.#done;
  }

  // --- events (the subscribe side only) -----------------------------------------------------

  /** Adds a listener (see UffdEvents). */
  on<E extends UffdEventName>(event: E, listener: UffdEvents[E]): this {
    subscribe(this.#e, event, listener as never, false);
    return this;
  }

  /** Adds a listener called at most once. */
  once<E extends UffdEventName>(event: E, listener: UffdEvents[E]): this {
    subscribe(this.#e, event, listener as never, true);
    return this;
  }

  /** Removes a listener. */
  off<E extends UffdEventName>(event: E, listener: UffdEvents[E]): this {
    unsubscribe(this.#e, event, listener as never);
    return this;
  }

  /** Removes every listener of an event, or of all events. */
  removeAllListeners<E extends UffdEventName>(event?: E): this {
    unsubscribeAll(this.#e, event);
    return this;
  }

  /** How many listeners an event has. */
  listenerCount<E extends UffdEventName>(event: E): number {
    return this.#e.emitter.listenerCount(event);
  }

  // --- events (the pull side) ------------------------------------------------------------------

  /**
   * The next fault or event, in the order the read loop read them (faults of one read(2) after
   * its events, as the push side sees them); null once the userfaultfd is closed and everything
   * read was taken. For code ported from userfaultfd-rs (`read_event()`), Firecracker or e2b:
   *
   *   for (let ev; (ev = await uffd.readEvent()) !== null; ) {
   *     if (ev.type === "fault") await ev.fault.copy(pageFor(ev.fault.offset));
   *   }
   *
   * Pulling starts at the first call: faults read before it and still unresolved come first.
   * Pulled faults keep their deadline and failure policy; listeners, if any, see them too (the
   * first resolver wins). Concurrent calls take successive items.
   */
  readEvent(): Promise<UffdEvent | null> {
    return pullQueue(this.#e).next() as Promise<UffdEvent | null>;
  }

  /** `for await (const event of uffd)`: readEvent() until the userfaultfd is closed. Leaving the loop does not close it. */
  [Symbol.asyncIterator](): AsyncIterator<UffdEvent, undefined> {
    const q = pullQueue(this.#e);
    return {
      next: async (): Promise<IteratorResult<UffdEvent, undefined>> => {
        const e = (await q.next()) as UffdEvent | null;
        return e === null ? { done: true, value: undefined } : { done: false, value: e };
      },
      return: (): Promise<IteratorResult<UffdEvent, undefined>> => Promise.resolve({ done: true, value: undefined }),
    };
  }

  // --- registration -------------------------------------------------------------------------

  /** UFFDIO_REGISTER, with an error that names the cause when the kernel refuses. */
  async register(start: number, len: number, modes: RegisterMode | readonly RegisterMode[], options: RegisterOptions = {}): Promise<Registration> {
    const bits = modeBits(modes);
    if (bits === 0) throw new TypeError("register(): give at least one mode (\"missing\", \"wp\", \"minor\")");
    const arg = { range: { start, len }, mode: bits, ioctls: 0n };
    try {
      await this.#e.proc.ioctl(this.#e.fd, UFFDIO_REGISTER, arg);
    } catch (e) {
      throw this.#explainRegister(e, start, len, bits);
    }
    const needed = ((bits & UFFDIO_REGISTER_MODE_MISSING) !== 0 ? 1n << BigInt(_UFFDIO_COPY) : 0n)
      | ((bits & UFFDIO_REGISTER_MODE_WP) !== 0 ? 1n << BigInt(_UFFDIO_WRITEPROTECT) : 0n)
      | ((bits & UFFDIO_REGISTER_MODE_MINOR) !== 0 ? 1n << BigInt(_UFFDIO_CONTINUE) : 0n);
    if ((arg.ioctls & needed) !== needed) {
      throw new ModeUnavailableError(modeNames(bits), `register(): the kernel registered [0x${start.toString(16)}, +${len}) but does not offer the ioctls its modes need (ioctls 0x${arg.ioctls.toString(16)})`);
    }
    const offset = options.offset ?? 0;
    for (const [s, e] of this.#mappedSpans(start, start + len)) this.#e.ranges.register(s, e, bits, offset + (s - start));
    return Object.freeze({ start, end: start + len, modes: Object.freeze(modeNames(bits)), offset, ioctls: arg.ioctls });
  }

  /** Holes inside a registered span are not registered (Linux skips them): clip to the mappings. */
  #mappedSpans(start: number, end: number): Array<[number, number]> {
    const t = this.#e.target;
    if (t === null || t.exited) return [[start, end]];
    const spans: Array<[number, number]> = [];
    for (const v of t.smaps()) {
      const s = Math.max(start, v.start);
      const e = Math.min(end, v.end);
      if (s < e) spans.push([s, e]);
    }
    return spans;
  }

  #explainRegister(e: unknown, start: number, len: number, bits: number): unknown {
    if (!(e instanceof ErrnoError)) return e;
    const span = `[0x${start.toString(16)}, 0x${(start + len).toString(16)})`;
    const modes = modeNames(bits);
    const vmas = this.#e.target?.exited === false ? this.#e.target.smaps().filter((v) => v.start < start + len && v.end > start) : null;
    if (e.code === "EBUSY") return new ModeUnavailableError(modes, `register(): ${span} is already registered with another userfaultfd (EBUSY)`, { cause: e });
    if (e.code === "EPERM") return new ModeUnavailableError(modes, `register(): ${span} is a shared mapping that can never be writable (VM_MAYWRITE unset, e.g. a file opened O_RDONLY): EPERM`, { cause: e });
    if (e.code !== "EINVAL" || vmas === null) return e;
    if (vmas.length === 0) return new ModeUnavailableError(modes, `register(): nothing is mapped in ${span} (EINVAL)`, { cause: e });
    const private_ = vmas.find((v) => !v.vmFlags.includes("sh") && v.perms.endsWith("p"));
    const shared = vmas.find((v) => v.vmFlags.includes("sh"));
    // An older kernel: the mode exists but not on shmem (docs/releases.md).
    if (shared !== undefined && this.#supported !== 0) {
      const release = this.#e.proc.kernel.uname().release;
      if ((bits & UFFDIO_REGISTER_MODE_MINOR) !== 0 && (this.#supported & UFFD_FEATURE_MINOR_SHMEM) === 0) {
        return new ModeUnavailableError(modes, `register(): minor faults on shmem came in Linux 5.14; this kernel is ${release} (EINVAL)`, { cause: e });
      }
      if ((bits & UFFDIO_REGISTER_MODE_WP) !== 0 && (this.#supported & UFFD_FEATURE_WP_HUGETLBFS_SHMEM) === 0) {
        return new ModeUnavailableError(modes, `register(): write-protect on shmem came in Linux 5.19; this kernel is ${release} (EINVAL)`, { cause: e });
      }
    }
    if ((bits & UFFDIO_REGISTER_MODE_MINOR) !== 0 && private_ !== undefined) {
      return new ModeUnavailableError(
        modes,
        `register(): minor faults need shmem memory (a memfd, or MAP_SHARED|MAP_ANONYMOUS); [0x${private_.start.toString(16)}, 0x${private_.end.toString(16)}) is ${private_.perms} memory (EINVAL)`,
        { cause: e },
      );
    }
    return e;
  }

  /** UFFDIO_UNREGISTER. Faults in flight there are woken (Linux wakes only MISSING-registered vmas). */
  async unregister(start: number, len: number): Promise<void> {
    await this.#e.proc.ioctl(this.#e.fd, UFFDIO_UNREGISTER, { start, len });
    this.#e.ranges.delete(start, start + len);
    abandon(this.#e, start, start + len);
  }

  // --- range operations (race-safe, like the fault resolvers) --------------------------------

  /** UFFDIO_WRITEPROTECT: the pages' next writes become wp faults. */
  async writeProtect(start: number, len: number): Promise<void> {
    const r = await writeProtect(this.#e, start, len, true, false);
    if (r === "gone") throw new ModeUnavailableError(["wp"], `writeProtect(): [0x${start.toString(16)}, +${len}) is not registered with "wp" (ENOENT)`);
    if (r === "closed") throw new UffdError("closed", "writeProtect(): the userfaultfd is closed");
  }

  /** UFFDIO_WRITEPROTECT mode 0: unprotects, and wakes wp faults in the range unless `{ wake: false }` (dontWake). */
  async unprotect(start: number, len: number, options: WakeOptions = {}): Promise<void> {
    const r = await writeProtect(this.#e, start, len, false, !dontWakeOf(options, "unprotect"));
    if (r === "gone") throw new ModeUnavailableError(["wp"], `unprotect(): [0x${start.toString(16)}, +${len}) is not registered with "wp" (ENOENT)`);
  }

  /**
   * UFFDIO_COPY to [dst, dst+len), from bytes or from an address in the handling process.
   * Arguments in C's order (struct uffdio_copy): destination first, then source.
   *
   * @param dst where the pages go: a page-aligned address in the registered range.
   * @param src where they come from: bytes (a whole number of pages), or an address in the handling process.
   * @param len bytes; default the length of `src` (one page for an address).
   */
  copy(dst: number, src: Uint8Array | number, len?: number, options: RangeOpOptions = NO_OPTIONS): Promise<RangeResult> {
    const n = len ?? (typeof src === "number" ? PAGE_SIZE : src.length);
    return this.#range("copy", dst, n, src, options);
  }

  /** UFFDIO_ZEROPAGE of [start, start+len) (in a write-protected range: zeroed copies that stay protected). */
  zeropage(start: number, len: number, options: RangeOpOptions = NO_OPTIONS): Promise<RangeResult> {
    return this.#range("zeropage", start, len, null, options);
  }

  /** UFFDIO_CONTINUE of [start, start+len): maps the pages already in the shmem page cache. */
  continue(start: number, len: number, options: RangeOpOptions = {}): Promise<RangeResult> {
    return this.#range("continue", start, len, null, options);
  }

  /** UFFDIO_POISON of [start, start+len): accesses get SIGBUS until a page is installed over them. */
  poison(start: number, len: number, options: WakeOptions = {}): Promise<RangeResult> {
    return this.#range("poison", start, len, null, { ...options, wp: false });
  }

  /**
   * UFFDIO_MOVE of [src, src+len) to [dst, dst+len) in the faulting process. Arguments in C's
   * order (struct uffdio_move): destination first, then source. Falls back to UFFDIO_COPY where
   * Linux refuses the move (see Fault.move).
   *
   * @param dst where the pages go: a page-aligned address in the registered range.
   * @param src where they come from: a page-aligned address in the same process.
   */
  move(dst: number, src: number, len: number, options: RangeOpOptions & { allowSrcHoles?: boolean } = {}): Promise<RangeResult> {
    return this.#range("move", dst, len, src, options, options.allowSrcHoles === true);
  }

  /** UFFDIO_WAKE: wakes every thread waiting on [start, start+len). */
  async wake(start: number, len: number): Promise<void> {
    await wake(this.#e, start, len);
    this.#e.settleCovered(start, start + len, null);
    this.#e.settleCovered(start, start + len, "wp");
  }

  // Not an async function: an operation the first ioctl did whole resolves with no async frame.
  #range(op: MfillOp, dst: number, len: number, src: Uint8Array | number | null, o: RangeOpOptions, allowSrcHoles = false): Promise<RangeResult> {
    const e = this.#e;
    let options: MfillOptions;
    try {
      const dontWake = dontWakeOf(o, op);
      const protect = o.wp ?? (e.ranges.stateOf(dst) & PAGE_STATE.PROTECTED) !== 0;
      options = { protect, dontWake, sinceEpoch: e.eventEpoch, onRemoved: "zero", prefetch: false, allowSrcHoles };
    } catch (err) {
      return Promise.reject(err);
    }
    const r = mfillNow(e, op, dst, len, src, options);
    return r instanceof MfillResult ? Promise.resolve(rangeResult(r)) : r.then(rangeResult);
  }

  // --- page sources ---------------------------------------------------------------------------

  /**
   * Serves every fault from `source` (the default handler): missing faults get its bytes or the
   * zero page, minor faults UFFDIO_CONTINUE, wp faults an unprotect. Returns an uninstaller.
   */
  serve(source: PageSource, options: ServeOptions = {}): () => void {
    return serve(this.#e, source, options);
  }

  /** Fills the registered missing ranges from `source` in the background, alongside demand faults. */
  fill(source: PageSource, options: FillOptions = {}): BackgroundFill {
    return new BackgroundFill(this.#e, source, options);
  }

  // --- lifetime -------------------------------------------------------------------------------

  /**
   * Closes the userfaultfd. Linux then wakes every blocked thread and unregisters the ranges, so
   * pending faults are retried as ordinary faults (anonymous memory reads zeros).
   */
  async close(): Promise<void> {
    await shutdown(this.#e, true);
  }

  /** @internal The context behind a Userfaultfd, for the SDK's clients (trackers). */
  static contextOf(uffd: Userfaultfd): UffdContext {
    return uffd.#e;
  }
}

/**
 * UFFDIO_API with everything asked for; if the kernel or the caller's privileges refuse some of
 * it, probe on the same fd (a failed UFFDIO_API leaves it uninitialised), then start over on a
 * fresh fd with what is allowed, or fail if a required feature is missing.
 */
async function handshake(proc: Process, options: Omit<OpenOptions, keyof HandlerOptions>, fallbacks: Fallback[] = []): Promise<{ fd: number; enabled: number; supported: number }> {
  const required = featureBits(options.features ?? []);
  const optional = featureBits(options.optionalFeatures ?? DEFAULT_OPTIONAL_FEATURES) & ~required;
  const flags = O_CLOEXEC | (options.userModeOnly === true ? UFFD_USER_MODE_ONLY : 0);
  const via = options.via ?? "auto";
  let fd = await createFd(proc, flags, via, fallbacks);
  let enabled = required | optional;
  let supported: number;
  try {
    const api = { api: UFFD_API, features: enabled, ioctls: 0n };
    await proc.ioctl(fd, UFFDIO_API, api);
    supported = api.features; // UFFDIO_API writes back everything the kernel offers
  } catch (e) {
    if (!(e instanceof ErrnoError) || (e.code !== "EINVAL" && e.code !== "EPERM")) {
      await proc.close(fd).catch(() => {});
      throw e;
    }
    const probe = { api: UFFD_API, features: 0, ioctls: 0n };
    await proc.ioctl(fd, UFFDIO_API, probe);
    await proc.close(fd);
    supported = probe.features;
    const allowed = supported & ~(e.code === "EPERM" ? UFFD_FEATURE_EVENT_FORK : 0);
    const missing = required & ~allowed;
    if (missing !== 0) throw featureError(proc, missing, supported, e);
    fd = await createFd(proc, flags, via, []);
    enabled = required | (optional & allowed);
    await proc.ioctl(fd, UFFDIO_API, { api: UFFD_API, features: enabled, ioctls: 0n });
  }
  if ((enabled & UFFD_FEATURE_WP_ASYNC) !== 0) enabled |= UFFD_FEATURE_WP_UNPOPULATED; // userfaultfd_api(): WP_ASYNC implies it
  return { fd, enabled, supported };
}

async function createFd(proc: Process, flags: number, via: "auto" | "dev" | "syscall", fallbacks: Fallback[]): Promise<number> {
  if (via !== "syscall") {
    try {
      return await proc.openDevUserfaultfd(flags);
    } catch (e) {
      // /dev/userfaultfd is missing (before 6.1) or root-only (mode 0600): fall back to the syscall.
      if (via === "dev" || !(e instanceof ErrnoError) || !["ENOENT", "EACCES", "EPERM", "ENODEV", "ENOSYS"].includes(e.code)) {
        if (via === "dev" && e instanceof ErrnoError && e.code === "ENOENT") {
          throw new UffdError("feature-unavailable", `open /dev/userfaultfd: ENOENT: the device came in Linux 6.1; this kernel is ${proc.kernel.uname().release} (use via: "auto" or "syscall")`, { cause: e });
        }
        throw e;
      }
      if (e.code === "ENOENT" && !fallbacks.some((f) => f.wanted === "/dev/userfaultfd")) {
        fallbacks.push(Object.freeze({ wanted: "/dev/userfaultfd", used: "userfaultfd(2)", reason: `/dev/userfaultfd came in Linux 6.1; this kernel is ${proc.kernel.uname().release}` }));
      }
    }
  }
  try {
    return await proc.userfaultfd(flags);
  } catch (e) {
    if (e instanceof ErrnoError && e.code === "EPERM") {
      throw new UffdError(
        "permission",
        "userfaultfd(): EPERM: handling kernel-mode faults needs CAP_SYS_PTRACE or vm.unprivileged_userfaultfd=1; " +
          "open with { userModeOnly: true } to handle user-mode faults only (kernel accesses to registered memory then fail with EFAULT)",
        { cause: e },
      );
    }
    throw e;
  }
}

function featureError(proc: Process, missing: number, supported: number, cause: ErrnoError): FeatureUnavailableError {
  const names = featureNames(missing);
  const release = proc.kernel.uname().release;
  const why = names.map((n) =>
    FEATURES[n] === UFFD_FEATURE_EVENT_FORK && (supported & UFFD_FEATURE_EVENT_FORK) !== 0
      ? `${n} (needs CAP_SYS_PTRACE)`
      : `${n} (added in Linux ${UFFD_FEATURE_SINCE[FEATURES[n]] ?? "?"}; this kernel is ${release})`,
  );
  return new FeatureUnavailableError(names, `userfaultfd: required features unavailable: ${why.join(", ")}; the kernel offers ${featureNames(supported).join(", ") || "none"}`, { cause });
}
