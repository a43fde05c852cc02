#!/usr/bin/env -S node --import tsx
/**
 * Where the time of a demand fault goes: runs one migration with hop tracing on (LM_TRACE_DIR, see
 * trace.ts) and prints the percentiles of each hop, the faults by time since the switchover, the
 * slowest faults with what overlapped them (a GC or a late event-loop turn in either process),
 * and the GC and event-loop delay of both processes.
 *
 *   tsx src/hop-trace.ts [--memory 1GiB] [--link unlimited|default] [--strategy postcopy]
 *                        [--frame-store auto] [--slow 20] [--keep dir]
 *
 * A diagnostic: every figure depends on the machine and its load, which it prints.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { DEFAULT_CONFIG, makeConfig, parseSize, type FrameStoreChoice, type Strategy } from "./config.ts";
import { runMigration } from "./orchestrator.ts";
import type { HopRecord, TraceFile } from "./trace.ts";

/** The `p`th percentile of `xs` (nearest rank); 0 for none. */
function pct(xs: readonly number[], p: number): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

const f1 = (x: number): string => x.toFixed(1);

/** The summary of one traced run, as text lines. */
export function summarizeTrace(dest: TraceFile, source: TraceFile, slowMs: number): string[] {
  const out: string[] = [];
  const src = new Map<number, HopRecord>(source.hops.map((h) => [h.page, h]));
  const faults = dest.hops.filter((h) => h.fault > 0 && h.installed > 0);
  const lat = (h: HopRecord): number => h.installed - h.fault;
  out.push(`faults traced: ${faults.length}; latency p50 / p90 / p99 / max: ${[50, 90, 99, 100].map((p) => f1(pct(faults.map(lat), p))).join(" / ")} ms`);
  const hops: Array<[string, (d: HopRecord, s: HopRecord | undefined) => number | null]> = [
    ["fault -> request written (dest)", (d) => (d.requestSent > 0 ? d.requestSent - d.fault : null)],
    ["request written -> read (dest -> source)", (d, s) => (s !== undefined && s.requestRead > 0 && d.requestSent > 0 ? s.requestRead - d.requestSent : null)],
    ["request read -> page written (source)", (_d, s) => (s !== undefined && s.pageSent > 0 && s.requestRead > 0 ? s.pageSent - s.requestRead : null)],
    ["page written -> read (source -> dest)", (d, s) => (s !== undefined && s.pageSent > 0 && d.pageRead > 0 ? d.pageRead - s.pageSent : null)],
    ["page read -> installed (dest)", (d) => (d.pageRead > 0 ? d.installed - d.pageRead : null)],
  ];
  out.push("", "| hop | n | p50 | p90 | p99 | max |", "|---|---|---|---|---|---|");
  for (const [name, fn] of hops) {
    const xs = faults.map((d) => fn(d, src.get(d.page))).filter((x): x is number => x !== null);
    out.push(`| ${name} | ${xs.length} | ${[50, 90, 99, 100].map((p) => f1(pct(xs, p))).join(" | ")} |`);
  }
  const served = faults.filter((d) => d.pageRead === 0).length;
  out.push(`faults settled by the bulk push before their demand page was read: ${served}`);
  // By time since the switchover.
  const edges = [0, 10, 50, 200, 1000, Infinity];
  out.push("", "| since switchover | faults | p50 | p99 | max |", "|---|---|---|---|---|");
  for (let i = 0; i + 1 < edges.length; i++) {
    const xs = faults.filter((h) => h.fault - dest.switchoverEpochMs >= edges[i]! && h.fault - dest.switchoverEpochMs < edges[i + 1]!).map(lat);
    if (xs.length > 0) out.push(`| ${edges[i]}-${edges[i + 1] === Infinity ? "end" : edges[i + 1]} ms | ${xs.length} | ${f1(pct(xs, 50))} | ${f1(pct(xs, 99))} | ${f1(pct(xs, 100))} |`);
  }
  // The slow faults and what overlapped them.
  const overlaps = (t: TraceFile, a: number, b: number): string[] => {
    const hits: string[] = [];
    for (const g of t.gc) if (g.atEpochMs < b && g.atEpochMs + g.durationMs > a) hits.push(`${t.role[0]}:gc${g.kind}:${f1(g.durationMs)}`);
    for (const [at, late, ran, waited] of t.lateTurns) if (at - late < b && at > a) hits.push(`${t.role[0]}:late:${f1(late)}${ran < 0 ? "" : `(ran ${f1(ran)}, waited ${f1(waited)})`}`);
    return hits;
  };
  const slow = faults.filter((h) => lat(h) >= slowMs).sort((a, b) => a.fault - b.fault);
  out.push("", `faults of ${slowMs} ms or more: ${slow.length}`);
  if (slow.length > 0) {
    out.push("| at (ms since switchover) | latency | hops (ms) | queue at fault | overlapping |", "|---|---|---|---|---|");
    let withOverlap = 0;
    for (const d of slow) {
      const s = src.get(d.page);
      const hs = hops.map(([, fn]) => fn(d, s)).map((x) => (x === null ? "-" : f1(x)));
      const ov = [...overlaps(dest, d.fault, d.installed), ...overlaps(source, d.fault, d.installed)];
      if (ov.length > 0) withOverlap++;
      if (slow.length <= 40 || d === slow[0] || lat(d) >= 2 * slowMs) out.push(`| ${f1(d.fault - dest.switchoverEpochMs)} | ${f1(lat(d))} | ${hs.join(" / ")} | ${d.queuedFrames} frames, ${(d.queuedBytes / 1e6).toFixed(1)} MB | ${ov.join(" ") || "-"} |`);
    }
    out.push(`slow faults overlapping a GC or a late turn in either process: ${withOverlap} of ${slow.length}`);
  }
  for (const t of [dest, source]) {
    const during = t.gc.filter((g) => g.atEpochMs >= dest.switchoverEpochMs);
    const byKind = new Map<number, number[]>();
    for (const g of during) byKind.set(g.kind, [...(byKind.get(g.kind) ?? []), g.durationMs]);
    const kinds = [...byKind].map(([k, xs]) => `kind ${k}: ${xs.length}, total ${f1(xs.reduce((a, b) => a + b, 0))} ms, max ${f1(Math.max(...xs))} ms`).join("; ");
    const lateTurns = t.lateTurns.filter(([at]) => at >= dest.switchoverEpochMs);
    const late = lateTurns.map(([, l]) => l);
    const lateMs = late.reduce((a, b) => a + b + 1, 0);
    const ran = lateTurns.reduce((a, [, , r]) => a + Math.max(0, r), 0);
    const waited = lateTurns.reduce((a, [, , , w]) => a + Math.max(0, w), 0);
    out.push(
      "",
      `${t.role}: GC after the switchover ${kinds || "none"}`,
      `${t.role}: event-loop delay p50 / p99 / max ${f1(t.loopDelay.p50)} / ${f1(t.loopDelay.p99)} / ${f1(t.loopDelay.max)} ms; 1 ms timers ${late.length} times 5 ms or more late after the switchover (p50 ${f1(pct(late, 50))}, max ${f1(pct(late, 100))} ms; ${f1(lateMs)} ms in all, of which the main thread ran ${f1(ran)} ms and waited for a CPU ${f1(waited)} ms)`,
    );
  }
  return out;
}

async function main(): Promise<void> {
  const arg = (name: string, def: string): string => {
    const i = process.argv.indexOf(name);
    return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : def;
  };
  const keep = arg("--keep", "");
  const dir = keep !== "" ? keep : mkdtempSync(join(tmpdir(), "lm-trace-"));
  process.env["LM_TRACE_DIR"] = dir; // the children inherit it
  const link = arg("--link", "unlimited");
  const config = makeConfig({
    strategy: arg("--strategy", "postcopy") as Strategy,
    memoryBytes: parseSize(arg("--memory", "1GiB")),
    link: link === "unlimited" ? { latencyMs: 0, bandwidthBytesPerSec: 0 } : DEFAULT_CONFIG.link,
    frameStore: arg("--frame-store", DEFAULT_CONFIG.frameStore) as FrameStoreChoice,
    timeoutMs: 30 * 60_000,
    runAfterMs: 100,
  });
  const load0 = loadavg()[0]!;
  const r = await runMigration(config);
  const load1 = loadavg()[0]!;
  const read = (role: string): TraceFile => JSON.parse(readFileSync(join(dir, `${role}.json`), "utf8")) as TraceFile;
  console.log(`${new Date().toISOString()}, load average ${load0.toFixed(1)} to ${load1.toFixed(1)}; ${config.strategy}, ${link} link, ${config.frameStore}: ${(r.totalTimeMs / 1000).toFixed(2)} s, ${r.throughputMBps.toFixed(0)} MB/s, fault p50 / p99 ${(r.faults.p50Us / 1000).toFixed(1)} / ${(r.faults.p99Us / 1000).toFixed(1)} ms, verified: ${r.verification.ok}`);
  console.log(summarizeTrace(read("destination"), read("source"), Number(arg("--slow", "20"))).join("\n"));
  if (keep === "") rmSync(dir, { recursive: true, force: true });
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((e: unknown) => {
    console.error(e);
    process.exitCode = 1;
  });
}
