/**
 * `npm run bench`: measures the simulated kernel, then the same operations on this machine's real
 * kernel (native/uffd-bench.c, compiled and run by native/native.ts), prints one table with both
 * columns, and writes everything to bench-results/bench.json (gitignored) at the repository root.
 *
 *   simulated anon page faults per second   write faults on fresh anon memory, read faults
 *                                          mapping the zero page, stores to present pages (the
 *                                          access baseline)
 *   userfaultfd round trips per second      missing+copy, missing+zeropage, wp+unprotect,
 *                                          minor+continue: one faulting thread and a handler
 *                                          coroutine reading one message at a time (the native
 *                                          loop), plus missing+copy with 4 threads and batched reads
 *   single operations                       UFFDIO_COPY 4 KiB / 2 MiB, UFFDIO_MOVE, WRITEPROTECT
 *                                          on+off, fork of 64 MiB, fork+exit+wait
 *   host memory per resident page           heap + external bytes per simulated resident page
 *
 * Each rate is the median of several timed runs after warm-up runs. `--quick` (or
 * UFFD_BENCH_QUICK=1) shrinks every size for a smoke run; `--no-native` skips the real-kernel
 * column. Targets come later (about 1M
 * faults/s); this only measures.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { fileURLToPath } from "node:url";
import { faultRate, type FaultKind } from "./faults.ts";
import { getGc, type Rate } from "./measure.ts";
import { memoryPerPage, type MemoryPerPage } from "./memory.ts";
import { describeUnavailable, NATIVE_METRICS, type NativeBenchResult, type NativeMetricId, runNativeBench } from "./native/native.ts";
import { type Op, opRate } from "./ops.ts";
import { type RoundTrip, type RoundTripShape, roundTripRate, userfaultfdUnavailable } from "./uffd.ts";

interface Row {
  name: string;
  unit: string;
  /** The simulated kernel's rate, or null when not measured. */
  sim: Rate | null;
  /** The native metric measuring the same operation, if any. */
  native: NativeMetricId | null;
  note: string;
}

/** `--quick`, or UFFD_BENCH_QUICK=1 (which also reaches this half through `npm run bench`, whose arguments go to the last command). */
const quickEnv = process.env["UFFD_BENCH_QUICK"];
const quick = process.argv.includes("--quick") || (quickEnv !== undefined && quickEnv !== "" && quickEnv !== "0");
const withNative = !process.argv.includes("--no-native");
const FAULT_PAGES = quick ? 2048 : 65536;
const UFFD_PAGES = quick ? 512 : 8192;
const MEMORY_MIB = quick ? 16 : 256;
const RUNS = quick ? 3 : 7;
const WARMUP = quick ? 1 : 2;

async function faultRows(): Promise<Row[]> {
  const kinds: Array<[FaultKind, string, string, NativeMetricId | null]> = [
    ["write", "anon write fault (new zeroed page)", "faults/s", "anonFault"],
    ["read", "anon read fault (zero page)", "faults/s", null],
    ["write-present", "store to a present page (no fault)", "accesses/s", null],
  ];
  const rows: Row[] = [];
  for (const [kind, name, unit, native] of kinds) rows.push({ name, unit, sim: await faultRate(kind, FAULT_PAGES, RUNS, WARMUP), native, note: "" });
  return rows;
}

const ROUND_TRIP_ROWS: Array<[RoundTrip, RoundTripShape, NativeMetricId | null]> = [
  ["missing+copy", { threads: 1, batch: 1 }, "rtMissingCopyPinned"],
  ["missing+zeropage", { threads: 1, batch: 1 }, "rtMissingZeropagePinned"],
  ["wp+unprotect", { threads: 1, batch: 1 }, "rtWpUnprotectPinned"],
  ["minor+continue", { threads: 1, batch: 1 }, "rtMinorContinuePinned"],
  ["missing+copy", { threads: 4, batch: 64 }, null],
];

const OP_ROWS: Array<[Op, string, string]> = [
  ["uffdCopy4k", "UFFDIO_COPY 4 KiB, no waiter", "ioctls/s"],
  ["uffdCopy2m", "UFFDIO_COPY 2 MiB, no waiter", "ioctls/s"],
  ["uffdMove4k", "UFFDIO_MOVE 4 KiB", "ioctls/s"],
  ["wpToggle4k", "WRITEPROTECT on+off 4 KiB", "pairs/s"],
  ["wpToggle2m", "WRITEPROTECT on+off 2 MiB", "pairs/s"],
  ["fork64m", "fork(), 64 MiB present anon", "forks/s"],
  ["forkExitWait64m", "fork+exit+waitpid, 64 MiB", "forks/s"],
];

async function uffdRows(): Promise<Row[]> {
  const why = await userfaultfdUnavailable();
  const rows: Row[] = [];
  for (const [kind, shape, native] of ROUND_TRIP_ROWS) {
    const name = `uffd ${kind} round trip${shape.threads > 1 ? `, ${shape.threads} threads, batched reads` : ""}`;
    const sim = why === null ? await roundTripRate(kind, shape, UFFD_PAGES, RUNS, WARMUP) : null;
    rows.push({ name, unit: "round trips/s", sim, native, note: why === null ? "" : `skipped (${why})` });
  }
  for (const [op, name, unit] of OP_ROWS) {
    const sim = why === null ? await opRate(op, quick, RUNS, WARMUP) : null;
    rows.push({ name, unit, sim, native: op, note: why === null ? "" : `skipped (${why})` });
  }
  return rows;
}

/** Native metrics no simulated row measures, listed for reference. */
function nativeOnlyRows(rows: Row[]): Row[] {
  const shown = new Set(rows.map((r) => r.native));
  return NATIVE_METRICS.filter((m) => !shown.has(m.id)).map((m) => ({ name: m.label, unit: "ops/s", sim: null, native: m.id, note: "real kernel only" }));
}

const fmtRate = (opsPerSec: number | undefined): string => (opsPerSec === undefined ? "-" : Math.round(opsPerSec).toLocaleString("en-US"));

function printTable(rows: Row[], native: NativeBenchResult | null, mem: MemoryPerPage): void {
  const real = (r: Row): number | undefined => (native?.available === true && r.native !== null ? native.results[r.native]?.opsPerSec : undefined);
  const lines: string[][] = [["benchmark", "simulated", "real kernel", "sim/real", "unit", "note"]];
  for (const r of rows) {
    const nat = real(r);
    const ratio = r.sim !== null && nat !== undefined ? `${(r.sim.opsPerSec / nat).toFixed(2)}x` : "-";
    const skipped = native?.available === true && r.native !== null ? native.skipped[r.native] : undefined;
    lines.push([r.name, fmtRate(r.sim?.opsPerSec), fmtRate(nat), ratio, r.unit, r.note || (skipped === undefined ? "" : `real: ${skipped}`)]);
  }
  const widths = lines[0]!.map((_, c) => Math.max(...lines.map((l) => (l[c] as string).length)));
  const right = new Set([1, 2, 3]);
  const out = (l: string[]): string => l.map((cell, c) => (right.has(c) ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join("  ").trimEnd();
  console.log(out(lines[0]!));
  console.log(out(widths.map((w) => "-".repeat(w))));
  for (const l of lines.slice(1)) console.log(out(l));
  console.log("");
  if (native !== null && !native.available) console.log(describeUnavailable(native));
  else if (native !== null) console.log(`real kernel: Linux ${native.host.kernelRelease}, ${native.host.cpuModel}, pinned round trips (same CPU), median of ${native.runs} runs`);
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
  // The real kernel runs last, alone, so the simulation's gc and JIT do not disturb it.
  const native = withNative ? await runNativeBench({ quick }) : null;
  const all = native?.available === true ? [...rows, ...nativeOnlyRows(rows)] : rows;
  printTable(all, native, mem);
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
    benchmarks: all.map((r) => ({ name: r.name, unit: r.unit, simulated: r.sim, native: r.native, note: r.note || undefined })),
    memory: mem,
    native,
  };
  writeFileSync(file, `${JSON.stringify(json, null, 2)}\n`);
  console.log(`\nwritten to ${file}`);
}

await main();
