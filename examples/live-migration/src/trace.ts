/**
 * Opt-in diagnostics of the demand path, for finding where a slow fault's time went. Off unless
 * the environment names a directory: `LM_TRACE_DIR=/tmp/trace` (the children inherit it). Then
 * each child records
 *
 * - per demand page, the epoch time (ms, `performance.timeOrigin + performance.now()`, one clock
 *   for both processes on one host) of each hop: on the destination the fault reaching the
 *   handler, the REQUEST handed to the socket, the page read off the preempt socket and the
 *   install (UFFDIO_COPY, which wakes the thread) done; on the source the REQUEST read and the
 *   page handed to the socket;
 * - every garbage collection (start, duration, kind) from a PerformanceObserver;
 * - the event loop's delay histogram (`perf_hooks.monitorEventLoopDelay`, 1 ms resolution) and
 *   each 1 ms interval timer that fired 5 ms or more late: when, by how much, and what the main
 *   thread did meanwhile, from the scheduler's own account (`/proc/self/task/<pid>/schedstat`:
 *   ns on a CPU, ns runnable but waiting for one; the rest it slept);
 * - the receive queue's frames and bytes when each fault arrived (destination);
 *
 * and writes them as `<role>.json` into that directory when its metrics are taken.
 * `src/hop-trace.ts` runs a migration with tracing on and summarises both files.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { monitorEventLoopDelay, PerformanceObserver, type IntervalHistogram } from "node:perf_hooks";

/** The directory traces go to, or null: tracing off. */
export const TRACE_DIR: string | null = process.env["LM_TRACE_DIR"] || null;

/** Hops of one demand page, epoch ms (0 = not seen in this process). */
export interface HopRecord {
  page: number;
  /** Destination: fault delivered to the handler, REQUEST handed to the socket, page read, install done. */
  fault: number;
  requestSent: number;
  pageRead: number;
  installed: number;
  /** Source: REQUEST read, page handed to the socket. */
  requestRead: number;
  pageSent: number;
  /** Destination: the receive queue when the fault arrived. */
  queuedFrames: number;
  queuedBytes: number;
}

export interface GcRecord {
  atEpochMs: number;
  durationMs: number;
  kind: number;
}

export interface TraceFile {
  role: string;
  pid: number;
  /** Epoch ms of the switchover (destination: the guest resumed here; source: the guest stopped). */
  switchoverEpochMs: number;
  endEpochMs: number;
  /** One reading of both clocks (epoch ms, CLOCK_MONOTONIC ms as V8's CPU profiles count it), to place profile samples. */
  clock: { epochMs: number; monotonicMs: number };
  hops: HopRecord[];
  gc: GcRecord[];
  /** Event-loop delay in ms (monitorEventLoopDelay, from when tracing started). */
  loopDelay: { min: number; p50: number; p90: number; p99: number; max: number; mean: number; count: number };
  /**
   * 1 ms interval timers that fired at least LATE_MS late: [epoch ms when it fired, ms late, ms
   * the main thread ran on a CPU since the previous one, ms it waited for a CPU] (the last two
   * from schedstat; -1 where the kernel gives none).
   */
  lateTurns: Array<[number, number, number, number]>;
}

const LATE_MS = 5;

/** The main thread's [ns on a CPU, ns waiting for one] (Linux schedstat), or null. */
function mainThreadSchedstat(): [number, number] | null {
  try {
    const f = readFileSync(`/proc/self/task/${process.pid}/schedstat`, "latin1").split(" ");
    return [Number(f[0]), Number(f[1])];
  } catch {
    return null;
  }
}

function epochNow(): number {
  return performance.timeOrigin + performance.now();
}

/** One process's recorder; every method is a no-op when tracing is off. */
export class HopTracer {
  /** Recording: LM_TRACE_DIR is set and the owner asked for it. */
  readonly on: boolean;
  readonly #role: string;
  readonly #hops = new Map<number, HopRecord>();
  readonly #gc: GcRecord[] = [];
  readonly #late: Array<[number, number, number, number]> = [];
  #histogram: IntervalHistogram | null = null;
  #observer: PerformanceObserver | null = null;
  #ticker: NodeJS.Timeout | null = null;
  #clock = { epochMs: 0, monotonicMs: 0 };
  switchoverEpochMs = 0;

  /** `enabled` false: never records (a rehearsal's scratch destination, whatever LM_TRACE_DIR says). */
  constructor(role: string, enabled = true) {
    this.#role = role;
    this.on = enabled && TRACE_DIR !== null;
  }

  /** Starts the GC observer, the loop-delay histogram and the late-turn timer. */
  start(): void {
    if (!this.on || this.#histogram !== null) return;
    this.#clock = { epochMs: epochNow(), monotonicMs: Number(process.hrtime.bigint()) / 1e6 };
    this.#histogram = monitorEventLoopDelay({ resolution: 1 });
    this.#histogram.enable();
    this.#observer = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        const detail = (e as unknown as { detail?: { kind?: number } }).detail;
        this.#gc.push({ atEpochMs: performance.timeOrigin + e.startTime, durationMs: e.duration, kind: detail?.kind ?? 0 });
      }
    });
    this.#observer.observe({ entryTypes: ["gc"] });
    let last = performance.now();
    let sched = mainThreadSchedstat();
    this.#ticker = setInterval(() => {
      const now = performance.now();
      const st = mainThreadSchedstat();
      if (now - last - 1 >= LATE_MS) {
        const ran = st !== null && sched !== null ? (st[0] - sched[0]) / 1e6 : -1;
        const waited = st !== null && sched !== null ? (st[1] - sched[1]) / 1e6 : -1;
        this.#late.push([performance.timeOrigin + now, now - last - 1, ran, waited]);
      }
      last = now;
      sched = st;
    }, 1);
  }

  #rec(page: number): HopRecord {
    let r = this.#hops.get(page);
    if (r === undefined) {
      r = { page, fault: 0, requestSent: 0, pageRead: 0, installed: 0, requestRead: 0, pageSent: 0, queuedFrames: 0, queuedBytes: 0 };
      this.#hops.set(page, r);
    }
    return r;
  }

  /** Records hop `hop` of `page` now (the first time only). */
  mark(page: number, hop: "fault" | "requestSent" | "pageRead" | "installed" | "requestRead" | "pageSent"): void {
    if (!this.on) return;
    const r = this.#rec(page);
    if (r[hop] === 0) r[hop] = epochNow();
  }

  /** The receive queue's depth when `page` faulted. */
  queueAtFault(page: number, frames: number, bytes: number): void {
    if (!this.on) return;
    const r = this.#rec(page);
    if (r.queuedFrames === 0 && r.queuedBytes === 0) {
      r.queuedFrames = frames;
      r.queuedBytes = bytes;
    }
  }

  /** Stops recording and writes `<role>.json` into TRACE_DIR. */
  write(): void {
    if (!this.on || TRACE_DIR === null) return;
    const h = this.#histogram;
    h?.disable();
    this.#observer?.disconnect();
    if (this.#ticker !== null) clearInterval(this.#ticker);
    const ms = (ns: number): number => ns / 1e6;
    const file: TraceFile = {
      role: this.#role,
      pid: process.pid,
      switchoverEpochMs: this.switchoverEpochMs,
      endEpochMs: epochNow(),
      clock: this.#clock,
      hops: [...this.#hops.values()],
      gc: this.#gc,
      loopDelay:
        h === null
          ? { min: 0, p50: 0, p90: 0, p99: 0, max: 0, mean: 0, count: 0 }
          : { min: ms(h.min), p50: ms(h.percentile(50)), p90: ms(h.percentile(90)), p99: ms(h.percentile(99)), max: ms(h.max), mean: ms(h.mean), count: h.count },
      lateTurns: this.#late,
    };
    try {
      mkdirSync(TRACE_DIR, { recursive: true });
      writeFileSync(join(TRACE_DIR, `${this.#role}.json`), JSON.stringify(file));
    } catch (e) {
      console.error(`${this.#role}: could not write the trace: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
}
