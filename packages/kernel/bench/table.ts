/**
 * The bench's one table and its target lines (issue 7, "Benchmarks against the real kernel").
 *
 * Each target is checked against figures measured in the same run; a missed one says what bounds
 * it (the analysis behind each bound is in docs/benchmarks.md).
 */
import type { ScaleResult } from "./faults.ts";
import type { Rate } from "./measure.ts";
import type { NativeBenchResult, NativeMetricId } from "./native/native.ts";

export interface Row {
  id: string;
  operation: string;
  unit: string;
  /** The real-kernel metric measuring the same operation, if any. */
  native: NativeMetricId | null;
  /** A real-kernel figure that is a known constant rather than a measurement (bytes per page). */
  realValue?: number;
  /** The simulator through the raw uAPI (or its own primitive), in `unit`. */
  raw: number | null;
  /** The simulator through @uffd/sdk, in `unit`. */
  sdk: number | null;
  rawRate: Rate | null;
  sdkRate: Rate | null;
  note: string;
  scale?: ScaleResult;
}

export interface Target {
  id: string;
  status: "PASS" | "MISS" | "N/A";
  line: string;
}

/** The real-kernel figure of a row, if this run has one. */
export function realOf(row: Row, native: NativeBenchResult | null): number | null {
  if (row.realValue !== undefined) return row.realValue;
  if (row.native === null || native === null || !native.available) return null;
  return native.results[row.native]?.opsPerSec ?? null;
}

const num = (v: number | null, unit: string): string => {
  if (v === null) return "-";
  if (unit === "B/page") return v.toFixed(v < 100 ? 1 : 0);
  return Math.round(v).toLocaleString("en-US");
};

const ratio = (a: number | null, b: number | null): string => (a === null || b === null || b === 0 ? "-" : `${(a / b).toFixed(2)}x`);

export function formatTable(rows: Row[], native: NativeBenchResult | null): string {
  const lines: string[][] = [["operation", "unit", "real kernel", "sim raw", "sim SDK", "raw/real", "SDK/real", "note"]];
  for (const r of rows) {
    const real = realOf(r, native);
    const skipped = native?.available === true && r.native !== null ? native.skipped[r.native] : undefined;
    const note = [r.note, skipped === undefined ? "" : `real: ${skipped}`].filter((s) => s !== "").join("; ");
    lines.push([r.operation, r.unit, num(real, r.unit), num(r.raw, r.unit), num(r.sdk, r.unit), ratio(r.raw, real), ratio(r.sdk, real), note]);
  }
  const widths = lines[0]!.map((_, c) => Math.max(...lines.map((l) => l[c]!.length)));
  const right = new Set([2, 3, 4, 5, 6]);
  const fmt = (l: string[]): string => l.map((cell, c) => (right.has(c) ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join("  ").trimEnd();
  return [fmt(lines[0]!), fmt(widths.map((w) => "-".repeat(w))), ...lines.slice(1).map(fmt)].join("\n");
}

/** What bounds each target when a run misses it (see docs/benchmarks.md, "What bounds the numbers"). */
const BOUNDS: Record<string, string> = {
  raw: "bounded by a JS round trip's promise hops (the faulting access, the handler's read and ioctl) plus the 4 KiB copy, on one core",
  sdk: "bounded by the work left per fault on one core: the fault and its retry, UFFDIO_COPY with its 4 KiB copy, two promise hops, and the SDK's bookkeeping (the Fault object, metrics)",
  copy2m: "bounded by one Uint8Array.set() per 4 KiB frame: frames are not contiguous, so 2 MiB is 512 copies",
  memory: "bounded by the per-frame typed arrays (26 B per frame, grown by a quarter at a time), the 4-byte ptes in 2 KiB tables and the pooled 1 MiB chunks",
  fork: "bounded by the per-pte loop in JS (refcount, mapcount and flags per page, in separate typed arrays)",
};

const fmt = (v: number): string => Math.round(v).toLocaleString("en-US");

function target(id: string, ok: boolean | null, line: string): Target {
  if (ok === null) return { id, status: "N/A", line };
  return { id, status: ok ? "PASS" : "MISS", line: ok ? line : `${line}; ${BOUNDS[id]}` };
}

export function checkTargets(rows: Row[], native: NativeBenchResult | null, mem: { resident: number; zero: number; untouched: number }): Target[] {
  const byId = (id: string): Row | undefined => rows.find((r) => r.id === id);
  const realRt = native?.available === true ? (native.results.rtMissingCopyPinned?.opsPerSec ?? null) : null;
  const raw = byId("rt-missing+copy")?.raw ?? null;
  const out: Target[] = [];
  out.push(
    raw === null || realRt === null
      ? target("raw", null, "missing+copy round trip, raw uAPI >= 2x the real kernel's same-CPU round trip: no real-kernel figure in this run")
      : target("raw", raw >= 2 * realRt, `missing+copy round trip, raw uAPI: ${fmt(raw)}/s = ${(raw / realRt).toFixed(2)}x the real kernel's same-CPU ${fmt(realRt)}/s (target >= 2x)`),
  );
  const fast = byId("rt-fast")?.sdk ?? null;
  out.push(
    fast === null
      ? target("sdk", null, "missing+copy round trip through the SDK >= 1,000,000/s: the SDK was not measured")
      : target("sdk", fast >= 1_000_000, `missing+copy round trip, SDK fastest path: ${fmt(fast)}/s on one core (target >= 1,000,000/s)`),
  );
  const copy2m = byId("uffdCopy2m")?.raw ?? null;
  const memcpy2m = native?.available === true ? (native.results.memcpy2m?.opsPerSec ?? null) : null;
  const gib = (perSec: number): string => `${((perSec * 2) / 1024).toFixed(1)} GiB/s`;
  out.push(
    copy2m === null || memcpy2m === null
      ? target("copy2m", null, "UFFDIO_COPY 2 MiB >= half of memcpy bandwidth: no real-kernel memcpy figure in this run")
      : target("copy2m", copy2m >= memcpy2m / 2, `UFFDIO_COPY 2 MiB: ${gib(copy2m)} = ${(copy2m / memcpy2m).toFixed(2)}x memcpy's ${gib(memcpy2m)} (target >= 0.5x)`),
  );
  // Zero-page-backed pages may cost their pte (Linux: 8 bytes), untouched ones nothing.
  const memOk = mem.resident <= 4096 + 128 && mem.untouched < 1 && mem.zero <= 8;
  out.push(
    target(
      "memory",
      memOk,
      `host memory: ${mem.resident.toFixed(0)} B per resident page (target <= 4,224); untouched ${mem.untouched.toFixed(1)} B, zero-page-backed ${mem.zero.toFixed(1)} B per page (target: no per-page cost beyond the pte)`,
    ),
  );
  const fork = byId("fork64m")?.raw ?? null;
  const realFork = native?.available === true ? (native.results.fork64m?.opsPerSec ?? null) : null;
  out.push(
    fork === null || realFork === null
      ? target("fork", null, "fork of 64 MiB within 2x of the real kernel: no real-kernel figure in this run")
      : target("fork", fork >= realFork / 2, `fork(), 64 MiB: ${fmt(fork)}/s = ${(fork / realFork).toFixed(2)}x the real kernel's ${fmt(realFork)}/s (target: within 2x, >= 0.5x)`),
  );
  return out;
}
