/**
 * Messages between the orchestrator and its two child processes (Node's IPC channel with the
 * "advanced" serialisation, so typed arrays travel as they are). The migration data itself never
 * goes this way: it crosses the TCP connection between the children. Only the test oracle (the
 * source guest's page versions, for the final verification) and metrics use this channel.
 */
import type { MigrationConfig } from "./config.ts";
import type { DestMetrics } from "./dest.ts";
import type { VerificationResult } from "./metrics.ts";
import type { SourceMetrics } from "./source.ts";

export type Role = "source" | "destination";

export type ToChild =
  /** token: the HELLO secret, handed to both sides here (out of band), never over the TCP link. */
  | { cmd: "init"; role: Role; config: MigrationConfig; token: string }
  | { cmd: "migrate"; port: number; startEpochMs: number }
  | { cmd: "verify"; oracle: Uint32Array }
  | { cmd: "exit" };

export type FromChild =
  | { ev: "ready"; port: number | null }
  | { ev: "progress"; phase: string; done: number; total: number }
  | { ev: "oracle"; versions: Uint32Array }
  | { ev: "resumed" }
  | { ev: "complete" }
  | { ev: "failed"; message: string }
  | { ev: "source-result"; metrics: SourceMetrics }
  | { ev: "dest-result"; metrics: DestMetrics; verification: VerificationResult }
  | { ev: "error"; message: string; source?: SourceMetrics; destination?: DestMetrics };

/**
 * The most often a child reports the progress of its postcopy push, in ms. Every report is an IPC
 * message that wakes the orchestrator, and the woken orchestrator took the sending child's CPU:
 * one report per 256 pages (about 1,000 a second on the unlimited link) went with 650 to 1,070
 * involuntary context switches of the source per 1 GiB postcopy, one per 50 ms with 220 to 270
 * (docs/benchmarks.md, "The unlimited link's fault tail").
 */
export const PROGRESS_INTERVAL_MS = 50;

/** Lets a periodic report through at most once per `intervalMs` of `now()`; the first one always. */
export class ReportGate {
  readonly intervalMs: number;
  readonly #now: () => number;
  #last = -Infinity;

  constructor(intervalMs: number, now: () => number = () => performance.now()) {
    this.intervalMs = intervalMs;
    this.#now = now;
  }

  due(): boolean {
    const t = this.#now();
    if (t - this.#last < this.intervalMs) return false;
    this.#last = t;
    return true;
  }
}
