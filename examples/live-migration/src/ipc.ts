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
