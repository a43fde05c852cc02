/**
 * The metrics as a terminal table: one run, or several strategies side by side.
 */
import { formatBandwidth, formatBytes } from "./config.ts";
import type { MigrationResult } from "./metrics.ts";

const int = (n: number): string => Math.round(n).toLocaleString("en-US");

export function ms(n: number): string {
  if (n >= 10_000) return `${(n / 1000).toFixed(2)} s`;
  if (n >= 100) return `${n.toFixed(0)} ms`;
  return `${n.toFixed(n >= 10 ? 1 : 2)} ms`;
}

export function us(n: number): string {
  return n >= 1000 ? ms(n / 1000) : `${n.toFixed(0)} µs`;
}

export function ns(n: number): string {
  return n >= 1e6 ? ms(n / 1e6) : `${(n / 1000).toFixed(1)} µs`;
}

/** The rows of the metrics table: label and a value formatter. */
export const ROWS: ReadonlyArray<readonly [string, (r: MigrationResult) => string]> = [
  ["total time", (r) => ms(r.totalTimeMs)],
  ["downtime", (r) => ms(r.downtimeMs)],
  ["switchover after", (r) => ms(r.switchoverAtMs)],
  ["virtual time: source kernel", (r) => ns(r.virtual.sourceNs)],
  ["virtual time: destination kernel", (r) => ns(r.virtual.destinationNs)],
  ["virtual downtime", (r) => ns(r.virtual.downtimeNs)],
  ["precopy rounds", (r) => int(r.rounds.length)],
  ["pages sent: precopy", (r) => int(r.pages.precopy)],
  ["pages sent: stop-and-copy", (r) => int(r.pages.stopCopy)],
  ["pages sent: postcopy demand", (r) => int(r.pages.demand)],
  ["pages sent: background push", (r) => int(r.pages.background)],
  ["pages sent: total", (r) => int(r.pages.total)],
  ["  of which zero pages", (r) => int(r.pages.zero)],
  ["  of which duplicates", (r) => int(r.pages.duplicate)],
  ["bytes on the wire", (r) => formatBytes(r.bytes.total)],
  ["  source -> destination", (r) => formatBytes(r.bytes.sourceToDestination)],
  ["  destination -> source", (r) => formatBytes(r.bytes.destinationToSource)],
  ["throughput", (r) => `${r.throughputMBps.toFixed(1)} MB/s`],
  ["destination faults", (r) => int(r.faults.count)],
  ["  resolved by a page in flight", (r) => int(r.faults.raced)],
  ["fault latency p50", (r) => (r.faults.p50Us > 0 ? us(r.faults.p50Us) : "-")],
  ["fault latency p99", (r) => (r.faults.p99Us > 0 ? us(r.faults.p99Us) : "-")],
  ["fault latency max", (r) => (r.faults.maxUs > 0 ? us(r.faults.maxUs) : "-")],
  ["guest ops on source / destination", (r) => `${int(r.guest.opsOnSource)} / ${int(r.guest.opsOnDestination)}`],
  ["dirty tracking", (r) => r.trackingMethod],
  ["verification", (r) => verdict(r)],
];

export function verdict(r: MigrationResult): string {
  const v = r.verification;
  if (r.guest.errors.length > 0) return `FAILED (guest error: ${r.guest.errors[0]})`;
  if (v.ok) return `OK (${int(v.pagesChecked)} pages byte for byte)`;
  return `FAILED (${int(v.mismatchedPages)} wrong pages, ${int(v.staleReads)} stale reads)`;
}

export function describeSetup(r: MigrationResult): string {
  const c = r.config;
  const threads = c.workload.map((t) => `${t.kind}:${t.rate}/s`).join(", ") || "idle";
  return `${formatBytes(c.memoryBytes)} guest (${int(r.guestPages)} pages), link ${formatBandwidth(c.link.bandwidthBytesPerSec)} + ${c.link.latencyMs} ms, workload ${threads}, seed ${c.seed}`;
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("   ");
  return [line(header), widths.map((w) => "-".repeat(w)).join("   "), ...rows.map(line)].join("\n");
}

export function formatResultTable(r: MigrationResult): string {
  const rows = ROWS.map(([label, f]) => [label, f(r)]);
  return `Live migration (${r.strategy}): ${describeSetup(r)}\n\n${table(["metric", r.strategy], rows)}\n${notes(r)}`;
}

export function formatComparisonTable(results: readonly MigrationResult[]): string {
  const rows = ROWS.map(([label, f]) => [label, ...results.map(f)]);
  const head = results[0] === undefined ? "" : `Strategies compared on the same workload: ${describeSetup(results[0])}\n\n`;
  return `${head}${table(["metric", ...results.map((r) => r.strategy)], rows)}\n${results.map(notes).join("")}`;
}

function notes(r: MigrationResult): string {
  const lines = [...r.notes.map((n) => `note: ${n}`), ...r.guest.errors.map((e) => `guest error: ${e}`)];
  return lines.map((n) => `  ${n} (${r.strategy})\n`).join("");
}

/** A run is good when the memory verified and no guest thread died. */
export function succeeded(r: MigrationResult): boolean {
  return r.verification.ok && r.guest.errors.length === 0 && r.guest.sourceMismatches === 0 && r.guest.corruptReads === 0;
}
