/**
 * The metrics as a terminal table: one run, or several strategies side by side. Rows whose name
 * can mislead carry a footnote (printed under the table, and under the HTML report's table).
 */
import { formatBandwidth, formatBytes, guestPages } from "./config.ts";
import type { KernelSide, MigrationResult } from "./metrics.ts";
import type { FailedRun, RunRecord } from "./report.ts";

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

function isFailed(r: RunRecord): r is FailedRun {
  return "failure" in r && typeof r.failure === "string";
}

/** Footnotes for the rows whose name alone can mislead. */
export const FOOTNOTES = {
  downtime:
    "The protocol's downtime: wall-clock time from the guest stopping on the source to the destination resuming it. Postcopy and hybrid guests then still wait for each missing page they touch; that waiting is not in this figure (see the guest-experienced downtime and the fault latency).",
  guestDowntime:
    "Downtime as the guest saw it: wall-clock time from the guest stopping on the source to its first completed operation on the destination, so it includes waiting for the first missing pages after the resume.",
  faultBlocked:
    "Summed over faults, from each fault to its wake: several threads blocked at once count several times, so this can exceed the run's wall-clock time.",
  preempt:
    "Whether postcopy demand pages had a connection of their own (postcopy-preempt, as QEMU's) or queued behind the background push on the one stream.",
  queuedAhead:
    "Bytes already queued on a demand page's connection when the source sent it: what the page waited behind. In brackets, the time those bytes plus the page take on the modelled link (bandwidth and latency).",
  hostMemory:
    "Peak resident memory of each OS process: Node.js itself, the simulated kernel and the guest's RAM together, not the guest alone (its size is in the setup line).",
  receiverBlocked:
    "Time the bulk socket refused data although the modelled link had room: the destination, not the link, was the bottleneck (marked receiver-bound when it is at least a tenth of the run).",
  virtual:
    "Simulated kernel time: the virtual ns the kernels spent on syscalls, faults and copies. The network and Node's event loop cost no virtual time, so these are far below the wall-clock figures and not comparable with them.",
  virtualDowntime:
    "The virtual kernel time of the switchover on both kernels (source: stop to device state sent; destination: switchover to resume). Not the downtime the guest saw: that is the wall-clock downtime above.",
  total: "Every page sent, duplicates included, so it can exceed the guest's page count.",
  zero: "Pages that were all zeros, sent as a 16-byte header without payload; they are also counted in the rows above.",
  duplicate:
    "Pages sent more than once: precopy and hybrid resend the pages the guest wrote after they were sent. This is the price of migrating a running guest, not a retransmission.",
  throughput: "Bytes from source to destination divided by the total time, including time the link was idle.",
  raced: "Faults on a page already requested or already on its way: no request is sent and they have no latency sample.",
  latency:
    "Wall-clock time on the destination from the fault to the page install: the request's trip, queueing behind bulk pages, and timer granularity (about 1 ms per hop).",
} as const;

export interface Row {
  label: string;
  /** The cell; null when the run did not measure it (the row is left out if no run did). */
  value: (r: MigrationResult) => string | null;
  note?: keyof typeof FOOTNOTES;
}

/** The rows of the metrics table. */
export const ROWS: readonly Row[] = [
  { label: "total time", value: (r) => ms(r.totalTimeMs) },
  { label: "downtime", value: (r) => ms(r.downtimeMs), note: "downtime" },
  { label: "guest-experienced downtime", value: (r) => (r.guestDowntimeMs === undefined ? null : ms(r.guestDowntimeMs)), note: "guestDowntime" },
  { label: "switchover after", value: (r) => ms(r.switchoverAtMs) },
  { label: "virtual time: source kernel", value: (r) => ns(r.virtual.sourceNs), note: "virtual" },
  { label: "virtual time: destination kernel", value: (r) => ns(r.virtual.destinationNs), note: "virtual" },
  { label: "virtual downtime", value: (r) => ns(r.virtual.downtimeNs), note: "virtualDowntime" },
  { label: "precopy rounds", value: (r) => int(r.rounds.length) },
  { label: "pages sent: precopy", value: (r) => int(r.pages.precopy) },
  { label: "pages sent: stop-and-copy", value: (r) => int(r.pages.stopCopy) },
  { label: "pages sent: postcopy demand", value: (r) => int(r.pages.demand) },
  { label: "pages sent: background push", value: (r) => int(r.pages.background) },
  { label: "pages sent: total", value: (r) => int(r.pages.total), note: "total" },
  { label: "  of which zero pages", value: (r) => int(r.pages.zero), note: "zero" },
  { label: "  of which duplicates", value: (r) => int(r.pages.duplicate), note: "duplicate" },
  { label: "bytes on the wire", value: (r) => formatBytes(r.bytes.total) },
  { label: "  source -> destination", value: (r) => formatBytes(r.bytes.sourceToDestination) },
  { label: "  destination -> source", value: (r) => formatBytes(r.bytes.destinationToSource) },
  { label: "throughput", value: (r) => `${r.throughputMBps.toFixed(1)} MB/s`, note: "throughput" },
  { label: "destination faults", value: (r) => int(r.faults.count) },
  { label: "  resolved by a page in flight", value: (r) => int(r.faults.raced), note: "raced" },
  { label: "fault latency p50", value: (r) => (r.faults.p50Us > 0 ? us(r.faults.p50Us) : "-"), note: "latency" },
  { label: "fault latency p99", value: (r) => (r.faults.p99Us > 0 ? us(r.faults.p99Us) : "-"), note: "latency" },
  { label: "fault latency max", value: (r) => (r.faults.maxUs > 0 ? us(r.faults.maxUs) : "-"), note: "latency" },
  { label: "guest time blocked in faults", value: (r) => (r.faultBlockedMs === undefined ? null : ms(r.faultBlockedMs)), note: "faultBlocked" },
  { label: "demand pages' connection", value: (r) => (r.transport === undefined ? null : r.strategy === "precopy" ? "-" : r.transport.preempt ? "own (preempt)" : "shared with bulk"), note: "preempt" },
  {
    label: "queued ahead of a demand page p50 / p99",
    value: (r) => {
      const q = r.transport?.demandQueuedAhead;
      if (q === undefined) return null;
      if (q.count === 0) return "-";
      return `${formatBytes(q.p50Bytes)} / ${formatBytes(q.p99Bytes)}${q.p99LinkMs === null ? "" : ` (${ms(q.p99LinkMs)})`}`;
    },
    note: "queuedAhead",
  },
  {
    label: "receiver-blocked time",
    value: (r) => (r.transport === undefined ? null : `${ms(r.transport.receiverBlockedMs)}${r.transport.receiverBound ? " (receiver-bound)" : ""}`),
    note: "receiverBlocked",
  },
  {
    label: "peak memory: source / destination process",
    value: (r) => (r.hostMemory === undefined ? null : `${formatBytes(r.hostMemory.sourceMaxRssBytes)} / ${formatBytes(r.hostMemory.destinationMaxRssBytes)}`),
    note: "hostMemory",
  },
  { label: "guest ops on source / destination", value: (r) => `${int(r.guest.opsOnSource)} / ${int(r.guest.opsOnDestination)}` },
  { label: "kernel: source / destination", value: (r) => (r.kernels === undefined ? null : `${r.kernels.source.release} / ${r.kernels.destination.release}`) },
  { label: "dirty tracking", value: (r) => r.trackingMethod },
  { label: "source fallbacks", value: (r) => (r.kernels === undefined ? null : fallbackCell(r.kernels.source)) },
  { label: "destination postcopy fill", value: (r) => r.kernels?.destination.uses ?? null },
  { label: "destination fallbacks", value: (r) => (r.kernels === undefined ? null : fallbackCell(r.kernels.destination)) },
  { label: "verification", value: (r) => verdict(r) },
];

/**
 * A side's fallbacks as the missing pieces ("no wp-async, /dev/userfaultfd"), or "none": short
 * enough for a table cell; the notes under the table say what was used instead and why.
 */
export function fallbackCell(side: KernelSide): string {
  return side.fallbacks.length === 0 ? "none" : `no ${side.fallbacks.map((f) => f.wanted.replace(/ dirty tracking$/, "")).join(", ")}`;
}

/** One table cell: a failed run has only its verdict. */
export function cell(row: Row, r: RunRecord): string | null {
  if (!isFailed(r)) return row.value(r);
  return row.label === "verification" ? "FAILED (did not complete)" : "-";
}

/** The rows some run measured, each with its footnote number (1-based, in order of first use). */
export function tableRows(results: readonly RunRecord[]): Array<{ row: Row; cells: string[]; footnote: number | null }> {
  const numbers = new Map<string, number>();
  const out: Array<{ row: Row; cells: string[]; footnote: number | null }> = [];
  for (const row of ROWS) {
    const cells = results.map((r) => cell(row, r));
    if (results.length > 0 && cells.every((c) => c === null)) continue;
    let footnote: number | null = null;
    if (row.note !== undefined) {
      footnote = numbers.get(row.note) ?? numbers.size + 1;
      numbers.set(row.note, footnote);
    }
    out.push({ row, cells: cells.map((c) => c ?? "-"), footnote });
  }
  return out;
}

/** The footnotes the rows use, in number order. */
export function footnotes(rows: ReturnType<typeof tableRows>): Array<{ n: number; text: string }> {
  const seen = new Map<number, string>();
  for (const { row, footnote } of rows) if (footnote !== null && row.note !== undefined) seen.set(footnote, FOOTNOTES[row.note]);
  return [...seen].map(([n, text]) => ({ n, text }));
}

export function verdict(r: RunRecord): string {
  if (isFailed(r)) {
    const v = r.verification;
    if (v === null) return "FAILED (the migration did not complete)";
    return v.ok
      ? `FAILED (the migration did not complete; ${int(v.pagesChecked)} received pages are correct, ${int(v.missingPages)} never arrived)`
      : `FAILED (the migration did not complete; ${int(v.mismatchedPages)} wrong pages, ${int(v.filledMissingPages)} missing pages filled)`;
  }
  const v = r.verification;
  if (r.guest.errors.length > 0) return `FAILED (guest error: ${r.guest.errors[0]})`;
  if (v.ok) return `OK (${int(v.pagesChecked)} pages byte for byte)`;
  return `FAILED (${int(v.mismatchedPages)} wrong pages, ${int(v.staleReads)} stale reads)`;
}

export function describeSetup(r: RunRecord): string {
  const c = r.config;
  const threads = c.workload.map((t) => `${t.kind}:${t.rate}/s`).join(", ") || "idle";
  const kernels = c.kernel === undefined ? "" : `, kernel ${c.kernel.source === c.kernel.destination ? c.kernel.source : `${c.kernel.source} -> ${c.kernel.destination}`}`;
  return `${formatBytes(c.memoryBytes)} guest (${int(guestPages(c))} pages), link ${formatBandwidth(c.link.bandwidthBytesPerSec)} + ${c.link.latencyMs} ms, workload ${threads}, seed ${c.seed}${kernels}`;
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("   ");
  return [line(header), widths.map((w) => "-".repeat(w)).join("   "), ...rows.map(line)].join("\n");
}

function textTable(results: readonly RunRecord[]): string {
  const rows = tableRows(results);
  const body = table(
    ["metric", ...results.map((r) => (isFailed(r) ? `${r.strategy} (failed)` : r.strategy))],
    rows.map(({ row, cells, footnote }) => [`${row.label}${footnote === null ? "" : ` [${footnote}]`}`, ...cells]),
  );
  const notes = footnotes(rows).map(({ n, text }) => `[${n}] ${text}`);
  return `${body}\n\n${notes.join("\n")}\n`;
}

export function formatResultTable(r: RunRecord): string {
  return `Live migration (${r.strategy}): ${describeSetup(r)}\n\n${textTable([r])}${notes(r)}`;
}

export function formatComparisonTable(results: readonly RunRecord[]): string {
  const head = results[0] === undefined ? "" : `Strategies compared on the same workload: ${describeSetup(results[0])}\n\n`;
  return `${head}${textTable(results)}${results.map(notes).join("")}`;
}

function notes(r: RunRecord): string {
  const lines = isFailed(r) ? [] : [...r.notes.map((n) => `note: ${n}`), ...r.guest.errors.map((e) => `guest error: ${e}`)];
  return lines.map((n) => `  ${n} (${r.strategy})\n`).join("");
}

/** A run is good when it completed, the memory verified and no guest thread died. */
export function succeeded(r: RunRecord): boolean {
  if (isFailed(r)) return false;
  return r.verification.ok && r.guest.errors.length === 0 && r.guest.sourceMismatches === 0 && r.guest.corruptReads === 0;
}
