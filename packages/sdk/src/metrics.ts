/**
 * Handler metrics: fault counts per kind, outcomes, bytes installed per resolver, resolve latency
 * histograms in the kernel's virtual time and in wall time, and a Chrome trace-event recorder
 * (the JSON opens in Perfetto or chrome://tracing).
 *
 * Recording is O(1) and allocation-free except for trace events, which are off by default and
 * kept in a ring of at most TRACE_EVENTS_MAX (100,000) events by default: a long run keeps its
 * most recent events and counts the older ones it overwrote as dropped.
 */
import type { FaultKind, InstallKind, Resolution } from "./types.ts";

export type { InstallKind, Resolution } from "./types.ts";

// Histogram.SUB_BITS, as a module-local const: V8 folds it into record()'s optimized code, where
// the static field is a property load from the class at each use.
const SUB_BITS = 4;

/**
 * A log-linear histogram (HdrHistogram-style): 16 sub-buckets per power of two, so any recorded
 * value is reported within 1/16 (6.25 %) of its true value. Values are non-negative numbers.
 */
export class Histogram {
  /** log2 of the sub-buckets per power of two (16: values within 1/16). */
  static readonly SUB_BITS = SUB_BITS;
  readonly #counts = new Float64Array(64 << SUB_BITS);
  #count = 0;
  #sum = 0;
  #min = Infinity;
  #max = 0;

  /** Records a value (negative values count as 0). */
  record(value: number): void {
    const v = value > 0 ? value : 0;
    this.#counts[Histogram.#index(v)]!++;
    this.#count++;
    this.#sum += v;
    if (v < this.#min) this.#min = v;
    if (v > this.#max) this.#max = v;
  }

  static #index(v: number): number {
    if (v < 16) return Math.floor(v);
    if (v < 0x1_0000_0000) {
      // The same bucket, from the integer part with bit operations (floor(v / 2^k) is
      // floor(floor(v) / 2^k) for k >= 0): no log2, no division on the fault path.
      const n = v >>> 0;
      const exp = 31 - Math.clz32(n);
      return ((exp - SUB_BITS + 1) << SUB_BITS) + ((n >>> (exp - SUB_BITS)) - 16);
    }
    const exp = Math.floor(Math.log2(v));
    const sub = Math.floor(v / 2 ** (exp - SUB_BITS)) - 16;
    return ((exp - SUB_BITS + 1) << SUB_BITS) + sub;
  }

  /** The value at the low edge of bucket i. */
  static #lowEdge(i: number): number {
    if (i < 16) return i;
    const exp = (i >> SUB_BITS) + SUB_BITS - 1;
    const sub = i & 15;
    return (16 + sub) * 2 ** (exp - SUB_BITS);
  }

  /** How many values were recorded. */
  get count(): number {
    return this.#count;
  }

  /** The value below which a fraction q (0..1) of recorded values fall (bucket midpoint, clamped to min/max). */
  percentile(q: number): number {
    if (this.#count === 0) return 0;
    const rank = Math.max(1, Math.ceil(q * this.#count));
    let seen = 0;
    for (let i = 0; i < this.#counts.length; i++) {
      seen += this.#counts[i]!;
      if (seen >= rank) {
        const lo = Histogram.#lowEdge(i);
        const hi = Histogram.#lowEdge(i + 1);
        return Math.min(this.#max, Math.max(this.#min, i < 16 ? lo : (lo + hi) / 2));
      }
    }
    return this.#max;
  }

  /** count, min, max, mean, p50 and p99. */
  snapshot(): HistogramSnapshot {
    return {
      count: this.#count,
      min: this.#count === 0 ? 0 : this.#min,
      max: this.#max,
      mean: this.#count === 0 ? 0 : this.#sum / this.#count,
      p50: this.percentile(0.5),
      p99: this.percentile(0.99),
    };
  }
}

/** A histogram's summary (values within 1/16 of the truth). */
export interface HistogramSnapshot {
  /** Values recorded. */
  count: number;
  /** Smallest value (0 when empty). */
  min: number;
  /** Largest value. */
  max: number;
  /** Mean. */
  mean: number;
  /** Median. */
  p50: number;
  /** 99th percentile. */
  p99: number;
}

/** A copy of a handler's Metrics at one instant (uffd.metrics.snapshot()). */
export interface MetricsSnapshot {
  /** Faults delivered, by kind; `duplicates`: messages coalesced into a fault already in flight. */
  faults: Record<FaultKind, number> & {
    /** Messages for a page and kind already in flight. */
    duplicates: number;
  };
  /** Non-cooperative events processed. */
  events: {
    /** UFFD_EVENT_FORK. */
    fork: number;
    /** UFFD_EVENT_REMAP. */
    remap: number;
    /** UFFD_EVENT_REMOVE. */
    remove: number;
    /** UFFD_EVENT_UNMAP. */
    unmap: number;
  };
  /** Faults settled, by resolution. */
  outcomes: Record<Resolution, number>;
  /** EAGAIN retries after events were processed, and partial-progress continuations. */
  retries: {
    /** EAGAIN retries. */
    eagain: number;
    /** Continuations after partial progress. */
    partial: number;
  };
  /** Bytes installed by each resolver; `prefetch` counts the part of them installed by background fills. */
  bytes: Record<InstallKind, number> & {
    /** Bytes installed by background fills. */
    prefetch: number;
  };
  /** Fault read to resolve, in ns: virtual = the kernel's clock, wall = the host clock. */
  latency: {
    /**
     * On the kernel's virtual clock: from when the read loop took the fault from its read(2)'s
     * buffer (after the faults before it in the same read were dispatched) to its settle.
     */
    virtualNs: HistogramSnapshot;
    /**
     * On the host clock (HandlerOptions.wallClock): from the return of the read(2) that read the
     * fault to its settle. The read time is one reading per read(2) for all its faults; a read
     * that returned at once after the batch before it, in the same synchronous run (a backlog),
     * takes that batch's settle-time reading instead (it precedes the read by the read itself).
     * The settle time of the faults settled while their batch is dispatched is one reading
     * taken when the whole batch has been dispatched; of the others, a reading at their settle.
     */
    wallNs: HistogramSnapshot;
  };
  /** What the failure policy did. */
  policy: {
    /** Faults answered with SIGBUS. */
    sigbus: number;
    /** Faults dispatched again ("retry" policy). */
    retry: number;
    /** Faults handed to the policy callback. */
    callback: number;
    /** Deadlines missed. */
    timeouts: number;
    /** Listener errors (throws and rejections). */
    errors: number;
  };
}

/** One Chrome trace event (the JSON Object Format's traceEvents entries). */
export interface TraceEvent {
  /** The event's name ("fault", "copy", "remove", ...). */
  name: string;
  /** Its category. */
  cat: string;
  /** Phase: "X" a complete event with a duration, "i" an instant, "M" metadata. */
  ph: "X" | "i" | "M";
  /** Microseconds. */
  ts: number;
  /** Duration in microseconds ("X" events). */
  dur?: number;
  /** Process id. */
  pid: number;
  /** Thread id. */
  tid: number;
  /** Scope of an instant event: global, process or thread. */
  s?: "g" | "p" | "t";
  /** Event details. */
  args?: Record<string, unknown>;
}

/** A trace in Chrome's JSON Object Format (load it in Perfetto or chrome://tracing). */
export interface ChromeTrace {
  /** The events. */
  traceEvents: TraceEvent[];
  /** How viewers display times. */
  displayTimeUnit: "ns" | "ms";
  /** Metadata (droppedEvents when the ring overflowed). */
  otherData: Record<string, unknown>;
}

/** The default size of the trace ring, in events (about 25 MB of trace objects at most). */
export const TRACE_EVENTS_MAX = 100_000;

/** A handler's live counters, latency histograms and trace ring; snapshot() copies them. */
export class Metrics {
  /** Faults delivered, by kind, and duplicates coalesced. */
  readonly faults = {
    /** MISSING faults. */
    missing: 0,
    /** WP faults. */
    wp: 0,
    /** MINOR faults. */
    minor: 0,
    /** Messages for a page and kind already in flight. */
    duplicates: 0,
  };
  /** Non-cooperative events processed. */
  readonly events = {
    /** UFFD_EVENT_FORK. */
    fork: 0,
    /** UFFD_EVENT_REMAP. */
    remap: 0,
    /** UFFD_EVENT_REMOVE. */
    remove: 0,
    /** UFFD_EVENT_UNMAP. */
    unmap: 0,
  };
  /** Faults settled, by resolution. */
  readonly outcomes: Record<Resolution, number> = { installed: 0, present: 0, woken: 0, zeroed: 0, gone: 0, exited: 0, closed: 0, failed: 0 };
  /** EAGAIN retries and partial-progress continuations. */
  readonly retries = {
    /** EAGAIN retries. */
    eagain: 0,
    /** Continuations after partial progress. */
    partial: 0,
  };
  /** Bytes installed, by resolver; prefetch: the part installed by background fills. */
  readonly bytes = {
    /** By UFFDIO_COPY. */
    copy: 0,
    /** By UFFDIO_ZEROPAGE. */
    zeropage: 0,
    /** By UFFDIO_CONTINUE. */
    continue: 0,
    /** By UFFDIO_MOVE. */
    move: 0,
    /** By UFFDIO_POISON. */
    poison: 0,
    /** By background fills. */
    prefetch: 0,
  };
  /** What the failure policy did. */
  readonly policy = {
    /** Faults answered with SIGBUS. */
    sigbus: 0,
    /** Faults dispatched again. */
    retry: 0,
    /** Faults handed to the policy callback. */
    callback: 0,
    /** Deadlines missed. */
    timeouts: 0,
    /** Listener errors. */
    errors: 0,
  };
  /** Fault read to resolve, on the kernel's virtual clock (ns); see MetricsSnapshot.latency.virtualNs. */
  readonly latencyVirtualNs = new Histogram();
  /** Fault read to resolve, on the host clock (ns); what the two instants are: MetricsSnapshot.latency.wallNs. */
  readonly latencyWallNs = new Histogram();
  /** The trace ring: the newest event is at #traceHead - 1 (mod the ring's length, once full). */
  #trace: TraceEvent[] | null = null;
  #traceEventsMax = 0;
  #traceHead = 0;
  #traceDropped = 0;

  /**
   * Starts recording trace events into a ring of `eventsMax` events (default TRACE_EVENTS_MAX):
   * once full, each new event overwrites the oldest, which is counted as dropped.
   */
  startTrace(eventsMax = TRACE_EVENTS_MAX): void {
    if (!Number.isSafeInteger(eventsMax) || eventsMax < 1) throw new RangeError(`startTrace(): eventsMax must be a positive integer, got ${String(eventsMax)}`);
    this.#trace = [];
    this.#traceEventsMax = eventsMax;
    this.#traceHead = 0;
    this.#traceDropped = 0;
  }

  /** Whether trace events are being recorded. */
  get tracing(): boolean {
    return this.#trace !== null;
  }

  /** The ring's size (0 when not tracing). */
  get traceEventsMax(): number {
    return this.#trace === null ? 0 : this.#traceEventsMax;
  }

  /** Adds an event to the trace ring (when tracing). */
  addTraceEvent(e: TraceEvent): void {
    const t = this.#trace;
    if (t === null) return;
    if (t.length < this.#traceEventsMax) {
      t.push(e);
      return;
    }
    t[this.#traceHead] = e;
    this.#traceHead = (this.#traceHead + 1) % this.#traceEventsMax;
    this.#traceDropped++;
  }

  /**
   * The recorded trace in Chrome's JSON Object Format, oldest event first. Timestamps are the
   * kernel's virtual time; otherData.droppedEvents counts the events the ring overwrote.
   */
  exportTrace(): ChromeTrace {
    const ring = this.#trace ?? [];
    const events = this.#traceHead === 0 ? ring : [...ring.slice(this.#traceHead), ...ring.slice(0, this.#traceHead)];
    const pids = [...new Set(events.map((e) => e.pid))];
    const meta: TraceEvent[] = pids.map((pid) => ({ name: "process_name", cat: "__metadata", ph: "M", ts: 0, pid, tid: 0, args: { name: `uffd handler (pid ${pid})` } }));
    return {
      traceEvents: [...meta, ...events],
      displayTimeUnit: "ns",
      otherData: { clock: "simulated kernel virtual time", droppedEvents: this.#traceDropped },
    };
  }

  /** A copy of every counter and histogram summary. */
  snapshot(): MetricsSnapshot {
    return {
      faults: { ...this.faults },
      events: { ...this.events },
      outcomes: { ...this.outcomes },
      retries: { ...this.retries },
      bytes: { ...this.bytes },
      latency: { virtualNs: this.latencyVirtualNs.snapshot(), wallNs: this.latencyWallNs.snapshot() },
      policy: { ...this.policy },
    };
  }
}
