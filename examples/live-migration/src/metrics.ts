/**
 * What a run measures, following what QEMU's query-migrate and its postcopy latency histogram
 * report: total time, downtime, pages by how they travelled (precopy rounds, stop-and-copy,
 * postcopy demand, background push), zero pages, duplicates (pages sent more than once), bytes on
 * the wire, and the destination's fault latency (from the fault to the page install) as p50/p99
 * and a power-of-two microsecond histogram. Time is measured twice: wall-clock ms, and the
 * simulated kernels' virtual ns (kernel work only; the network costs no virtual time).
 */
import type { MigrationConfig } from "./config.ts";
import type { TrackingMethod } from "./dirty-tracking.ts";

export const KIND_NAMES = ["precopy", "stop-copy", "demand", "background"] as const;
export type KindName = (typeof KIND_NAMES)[number];

export function nowEpochMs(): number {
  return performance.timeOrigin + performance.now();
}

/** Latencies in µs: exact percentiles from the samples, and a log2 histogram for the chart. */
export class LatencyRecorder {
  #samples = new Float64Array(1024);
  #n = 0;

  get count(): number {
    return this.#n;
  }

  add(us: number): void {
    if (this.#n === this.#samples.length) {
      const grown = new Float64Array(this.#n * 2);
      grown.set(this.#samples);
      this.#samples = grown;
    }
    this.#samples[this.#n++] = us;
  }

  summary(): LatencySummary {
    const s = this.#samples.slice(0, this.#n).sort();
    const pct = (p: number): number => (s.length === 0 ? 0 : s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!);
    const buckets: Array<{ leUs: number; count: number }> = [];
    for (const v of s) {
      const le = 2 ** Math.max(0, Math.ceil(Math.log2(Math.max(1, v))));
      const last = buckets[buckets.length - 1];
      if (last !== undefined && last.leUs === le) last.count++;
      else buckets.push({ leUs: le, count: 1 });
    }
    return {
      count: s.length,
      p50Us: pct(50),
      p99Us: pct(99),
      maxUs: s.length === 0 ? 0 : s[s.length - 1]!,
      meanUs: s.length === 0 ? 0 : s.reduce((a, b) => a + b, 0) / s.length,
      histogram: buckets,
    };
  }
}

export interface LatencySummary {
  count: number;
  p50Us: number;
  p99Us: number;
  maxUs: number;
  meanUs: number;
  /** Power-of-two buckets: `count` samples with latency <= leUs (and > leUs / 2). */
  histogram: Array<{ leUs: number; count: number }>;
}

/** Page arrivals per kind in fixed wall-clock buckets from the migration start. */
export class Timeline {
  readonly bucketMs: number;
  readonly startEpochMs: number;
  readonly series: Record<KindName, number[]> = { precopy: [], "stop-copy": [], demand: [], background: [] };

  constructor(startEpochMs: number, bucketMs = 10) {
    this.startEpochMs = startEpochMs;
    this.bucketMs = bucketMs;
  }

  /** Most buckets kept per series (a day at 10 ms would be 8.6 million: arrivals past this are dropped). */
  static readonly MAX_BUCKETS = 1 << 20;

  add(kind: KindName, atEpochMs: number, n = 1): void {
    const i = Math.max(0, Math.floor((atEpochMs - this.startEpochMs) / this.bucketMs));
    if (!(i < Timeline.MAX_BUCKETS)) return;
    const s = this.series[kind];
    while (s.length <= i) s.push(0);
    s[i]! += n;
  }

  toJSON(): TimelineData {
    return { bucketMs: this.bucketMs, series: this.series };
  }
}

export interface TimelineData {
  bucketMs: number;
  series: Record<KindName, number[]>;
}

/** Guest operations completed, sampled over time (ms since the migration start). */
export interface OpsSample {
  tMs: number;
  ops: number;
  side: "source" | "destination";
}

export interface RoundInfo {
  round: number;
  pages: number;
  zeroPages: number;
  durationMs: number;
  /** Dirty pages found at the end of this round (what the next round must send). */
  dirtyAfter: number;
}

export interface VerificationResult {
  ok: boolean;
  /** "full" after a completed migration; "partial" after a failed postcopy (received pages only). */
  scope: "full" | "partial";
  pagesChecked: number;
  mismatchedPages: number;
  /** Pages the destination guest read before writing them whose version was not the source's. */
  staleReads: number;
  /** Pages never received (partial scope): they must not be mapped at all. */
  missingPages: number;
  /** Missing pages that were nevertheless mapped (filled with something): must be 0. */
  filledMissingPages: number;
  firstMismatches: Array<{ page: number; expectedVersion: number; detail: string }>;
}

/** One side's kernel release and what its userfaultfd use fell back to there. */
export interface KernelSide {
  /** The release profile (MigrationConfig.kernel). */
  release: string;
  /**
   * How this side used userfaultfd: the source's dirty tracking, the destination's postcopy
   * fill ("UFFDIO_COPY / UFFDIO_ZEROPAGE"), "none" when the strategy needed none.
   */
  uses: string;
  /** Each fallback taken because the release lacks something (wanted, used, and the release that added it). */
  fallbacks: Array<{ wanted: string; used: string; reason: string }>;
}

export interface MigrationResult {
  strategy: MigrationConfig["strategy"];
  config: MigrationConfig;
  trackingMethod: TrackingMethod | "none";
  /** Each side's kernel release and its fallbacks (absent in older reports). */
  kernels?: { source: KernelSide; destination: KernelSide };
  notes: string[];
  guestPages: number;
  totalTimeMs: number;
  downtimeMs: number;
  /** Wall-clock ms from start to switchover (the guest stopping on the source). */
  switchoverAtMs: number;
  virtual: { sourceNs: number; destinationNs: number; downtimeNs: number };
  pages: {
    precopy: number;
    stopCopy: number;
    demand: number;
    background: number;
    zero: number;
    duplicate: number;
    total: number;
  };
  rounds: RoundInfo[];
  bytes: { sourceToDestination: number; destinationToSource: number; total: number };
  throughputMBps: number;
  /** raced: faults on pages already being installed (no request sent, no latency sample). */
  faults: LatencySummary & { raced: number; requests: number };
  /** errors: a guest thread that stopped on a signal or error (the guest "crashed"). */
  guest: { opsOnSource: number; opsOnDestination: number; sourceMismatches: number; corruptReads: number; errors: string[] };
  timeline: TimelineData;
  opsTimeline: OpsSample[];
  verification: VerificationResult;
  /**
   * Downtime as the guest saw it: from the guest stopping on the source to its first completed
   * operation on the destination (downtimeMs is the protocol's: stop to resume). Absent in older reports.
   */
  guestDowntimeMs?: number;
  /** Total time guest threads spent blocked in missing faults (sum over faults, fault to wake). */
  faultBlockedMs?: number;
  transport?: TransportSummary;
  /** Peak resident memory of each process (its simulated kernel and guest included). */
  hostMemory?: { sourceMaxRssBytes: number; destinationMaxRssBytes: number; guestBytes: number };
  /** CPU time of each process during the migration (see CpuTime; absent in older reports). */
  hostCpu?: { source: CpuTime; destination: CpuTime };
}

/**
 * CPU time one process used in a stretch of the migration, from process.cpuUsage() and
 * process.resourceUsage(): every thread of the process (V8's helper threads too), user and kernel
 * time separately. The source counts from the start of migrate() to the destination's DONE, the
 * destination from the source's HELLO to sending DONE.
 */
export interface CpuTime {
  userMs: number;
  systemMs: number;
  /** Wall-clock ms of the same stretch. */
  wallMs: number;
  /** Host page faults that needed no I/O (first touches of memory) in the stretch. */
  minorFaults: number;
  /** Context switches: the process waited (voluntary), or was preempted (involuntary). */
  voluntarySwitches: number;
  involuntarySwitches: number;
}

/** Starts measuring this process's CPU time; the returned function gives the time used since. */
export function cpuMeter(): () => CpuTime {
  const cpu0 = process.cpuUsage();
  const r0 = process.resourceUsage();
  const t0 = performance.now();
  return () => {
    const d = process.cpuUsage(cpu0);
    const r = process.resourceUsage();
    return {
      userMs: d.user / 1000,
      systemMs: d.system / 1000,
      wallMs: performance.now() - t0,
      minorFaults: r.minorPageFault - r0.minorPageFault,
      voluntarySwitches: r.voluntaryContextSwitches - r0.voluntaryContextSwitches,
      involuntarySwitches: r.involuntaryContextSwitches - r0.involuntaryContextSwitches,
    };
  };
}

/** How the bytes travelled, and what bounded them. */
export interface TransportSummary {
  /** Demand pages had their own (postcopy-preempt) connection. */
  preempt: boolean;
  /** The modelled socket send buffer per connection. */
  sendBufferBytes: number;
  /** Ms the bulk socket refused data although the modelled link had room: the receiver was the bottleneck. */
  receiverBlockedMs: number;
  /** receiverBlockedMs is at least a tenth of the run: the destination, not the link, bounded throughput. */
  receiverBound: boolean;
  /** Bytes queued ahead of each demand page on its connection when the source sent it. */
  demandQueuedAhead: {
    count: number;
    p50Bytes: number;
    p99Bytes: number;
    maxBytes: number;
    p99LinkMs: number | null;
    maxLinkMs: number | null;
  };
}
