/**
 * `npm run bench`: measures the simulated kernel and prints a table; the same figures go to
 * bench-results/bench.json (gitignored) at the repository root.
 *
 *   simulated anon page faults per second   write faults on fresh anon memory, read faults
 *                                          mapping the zero page, and stores to present pages
 *                                          (no fault) as the access baseline
 *   userfaultfd round trips per second      missing+copy, missing+zeropage, wp+unprotect,
 *                                          minor+continue, with a handler coroutine and 4 threads
 *   host memory per resident page           heap + external bytes per simulated resident page
 *
 * Each rate is the median of several timed runs after warm-up runs. `--quick` shrinks every
 * size for a smoke run. Targets come later (about 1M faults/s); this only measures.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { fileURLToPath } from "node:url";
import { faultRate, type FaultKind } from "./faults.ts";
import { getGc, type Rate } from "./measure.ts";
import { memoryPerPage, type MemoryPerPage } from "./memory.ts";
import { ROUND_TRIPS, roundTripRate, userfaultfdUnavailable } from "./uffd.ts";

interface Row {
  name: string;
  unit: string;
  rate: Rate | null;
  note: string;
}

const quick = process.argv.includes("--quick");
const FAULT_PAGES = quick ? 2048 : 65536;
const UFFD_PAGES = quick ? 512 : 16384;
const MEMORY_MIB = quick ? 16 : 256;
const RUNS = quick ? 3 : 7;
const WARMUP = quick ? 1 : 2;

async function faultRows(): Promise<Row[]> {
  const kinds: Array<[FaultKind, string]> = [
    ["write", "anon write fault (new zeroed page)"],
    ["read", "anon read fault (zero page)"],
    ["write-present", "store to a present page (no fault)"],
  ];
  const rows: Row[] = [];
  for (const [kind, name] of kinds) rows.push({ name, unit: "faults/s", rate: await faultRate(kind, FAULT_PAGES, RUNS, WARMUP), note: "" });
  rows[2]!.unit = "accesses/s";
  return rows;
}

async function uffdRows(): Promise<Row[]> {
  const why = await userfaultfdUnavailable();
  const rows: Row[] = [];
  for (const kind of ROUND_TRIPS) {
    if (why !== null) {
      rows.push({ name: `uffd ${kind}`, unit: "round trips/s", rate: null, note: `skipped (${why})` });
      continue;
    }
    rows.push({ name: `uffd ${kind}`, unit: "round trips/s", rate: await roundTripRate(kind, UFFD_PAGES, RUNS, WARMUP), note: "" });
  }
  return rows;
}

function fmtRate(r: Rate | null): string {
  if (r === null) return "-";
  return Math.round(r.opsPerSec).toLocaleString("en-US");
}

function printTable(rows: Row[], mem: MemoryPerPage): void {
  const lines: string[][] = [["benchmark", "rate", "unit", "median ms", "ops/run", "note"]];
  for (const r of rows) {
    lines.push([r.name, fmtRate(r.rate), r.unit, r.rate === null ? "-" : r.rate.medianMs.toFixed(1), r.rate === null ? "-" : String(r.rate.opsPerRun), r.note]);
  }
  const widths = lines[0]!.map((_, c) => Math.max(...lines.map((l) => (l[c] as string).length)));
  const out = (l: string[]): string => l.map((cell, c) => (c === 1 || c === 3 || c === 4 ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join("  ").trimEnd();
  console.log(out(lines[0]!));
  console.log(out(widths.map((w) => "-".repeat(w))));
  for (const l of lines.slice(1)) console.log(out(l));
  console.log("");
  console.log(
    `memory: ${mem.pages} resident pages (${(mem.pages * 4096) / 2 ** 20} MiB): ${mem.bytesPerPage.toFixed(0)} bytes per page ` +
      `(heap ${mem.heapBytesPerPage.toFixed(1)} + external ${mem.externalBytesPerPage.toFixed(1)}), ` +
      `${mem.overheadBytesPerPage.toFixed(1)} bytes over the page's own 4096${mem.gc ? "" : " (no gc available: noisy)"}`,
  );
}

async function main(): Promise<void> {
  const gc = getGc();
  console.log(`uffd bench${quick ? " (--quick)" : ""}: node ${process.version}, ${cpus()[0]?.model ?? "unknown cpu"}, median of ${RUNS} runs after ${WARMUP} warm-up`);
  console.log("");
  const rows = [...(await faultRows()), ...(await uffdRows())];
  const mem = await memoryPerPage(MEMORY_MIB, gc);
  printTable(rows, mem);
  const dir = fileURLToPath(new URL("../../../bench-results/", import.meta.url));
  mkdirSync(dir, { recursive: true });
  const file = `${dir}bench.json`;
  const json = {
    date: new Date().toISOString(),
    node: process.version,
    cpu: cpus()[0]?.model ?? null,
    quick,
    runs: RUNS,
    warmup: WARMUP,
    benchmarks: rows.map((r) => ({ name: r.name, unit: r.unit, ...(r.rate ?? {}), note: r.note || undefined })),
    memory: mem,
  };
  writeFileSync(file, `${JSON.stringify(json, null, 2)}\n`);
  console.log(`\nwritten to ${file}`);
}

await main();
