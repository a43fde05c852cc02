/**
 * `npm run bench`: the simulator against this machine's real kernel, in one table.
 *
 * For each operation: the real kernel (packages/kernel/bench/native: uffd-bench.c, compiled and
 * run by native.ts), the simulator through the raw uAPI, the simulator through @uffd/sdk, and
 * the ratios. Then the memory rows (host bytes per simulated page: resident, zero-page-backed,
 * untouched), the scale rows (populating 1 GiB and 4 GiB), and one line per target of issue 7
 * saying whether this run reached it and, where not, what bounds it. Everything also goes to
 * bench-results/bench.json (gitignored).
 *
 * Method: each simulated rate is the median of RUNS timed runs after warm-up runs (WARMUP, and
 * at least 300 ms), on one warm scene per row (as uffd-bench.c does on the real kernel), each
 * row in its own process (jobs.ts); setup and resets are not timed. The real kernel runs last,
 * alone, so the simulator's processes do not disturb it.
 *
 *   tsx packages/kernel/bench/run.ts            about a minute
 *   ... --quick (or UFFD_BENCH_QUICK=1)         smaller sizes, fewer runs: a smoke run
 *   ... --no-native                             simulator columns only
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { fileURLToPath } from "node:url";
import type { FaultKind } from "./faults.ts";
import { type Job, type JobResult, type JobSettings, runJobInChild } from "./jobs.ts";
import type { Rate } from "./measure.ts";
import type { HostMemory, MemoryState } from "./memory.ts";
import { describeUnavailable, NATIVE_METRICS, type NativeBenchResult, type NativeMetricId, runNativeBench } from "./native/native.ts";
import { type Op, OPS } from "./ops.ts";
import { isSdkOp } from "./sdk.ts";
import { checkTargets, formatTable, type Row, type Target } from "./table.ts";
import { type RoundTrip, type RoundTripShape, userfaultfdUnavailable } from "./uffd.ts";

const quickEnv = process.env["UFFD_BENCH_QUICK"];
const quick = process.argv.includes("--quick") || (quickEnv !== undefined && quickEnv !== "" && quickEnv !== "0");
const withNative = !process.argv.includes("--no-native");
const RUNS = quick ? 3 : 11;
const WARMUP = quick ? 1 : 2;
/** uffd-bench.c's sizes (divided by 8 with --quick, as its scaled() does). */
const FAULT_PAGES = quick ? 2048 : 16384;
const RT_PAGES = quick ? 625 : 5000;
/** As many pages as uffd-bench.c's round trips: the working set decides how warm the frames are. */
const FAST_PAGES = RT_PAGES;
/** The SDK's fastest path: many faulting threads, so one read(2) returns a batch. */
const FAST_SHAPE: RoundTripShape = { threads: 32, batch: 64 };
const ONE_BY_ONE: RoundTripShape = { threads: 1, batch: 1 };
/** Memory rows use 256 MiB even with --quick: smaller mappings drown in heap noise. */
const MEMORY_MIB = 256;
const SCALE_MIB = quick ? [128, 256] : [1024, 4096];

const SETTINGS: JobSettings = { quick, runs: RUNS, warmup: WARMUP };

/** One job in its own process (see jobs.ts); its error, if any, goes to the row's note. */
async function job(j: Job): Promise<{ rate: Rate | null; error: string | null; result: JobResult }> {
  const result = await runJobInChild(j, SETTINGS);
  if ("error" in result) {
    const line = result.error.split("\n")[0] ?? result.error;
    console.error(`bench: ${JSON.stringify(j)} failed: ${result.error}`);
    return { rate: null, error: line, result };
  }
  return { rate: "rate" in result ? result.rate : null, error: null, result };
}

const notes = (...parts: Array<string | null>): string => parts.filter((p) => p !== null && p !== "").join("; ");

async function physicalRows(): Promise<Row[]> {
  const rows: Row[] = [];
  for (const [id, bytes, ops, operation] of [
    ["memcpy4k", 4096, quick ? 25_000 : 200_000, "memcpy 4 KiB (the physical limit)"],
    ["memcpy2m", 2 << 20, quick ? 25 : 200, "memcpy 2 MiB"],
  ] as const) {
    const m = await job({ kind: "memcpy", bytes, ops });
    rows.push({ id, operation, unit: "copies/s", native: id, raw: m.rate?.opsPerSec ?? null, sdk: null, rawRate: m.rate, sdkRate: null, note: notes("sim: Uint8Array.set() in V8", m.error) });
  }
  return rows;
}

async function faultRows(): Promise<Row[]> {
  const kinds: Array<[FaultKind, string, string, NativeMetricId | null]> = [
    ["write", "anon write fault (new zeroed page)", "faults/s", "anonFault"],
    ["read", "anon read fault (zero page)", "faults/s", null],
    ["write-present", "store to a present page (no fault)", "accesses/s", null],
  ];
  const rows: Row[] = [];
  for (const [fault, operation, unit, native] of kinds) {
    const r = await job({ kind: "fault", fault, pages: FAULT_PAGES });
    rows.push({ id: `fault-${fault}`, operation, unit, native, raw: r.rate?.opsPerSec ?? null, sdk: null, rawRate: r.rate, sdkRate: null, note: notes(r.error) });
  }
  return rows;
}

const ROUND_TRIPS: Array<[RoundTrip, NativeMetricId]> = [
  ["missing+copy", "rtMissingCopyPinned"],
  ["missing+zeropage", "rtMissingZeropagePinned"],
  ["wp+unprotect", "rtWpUnprotectPinned"],
  ["minor+continue", "rtMinorContinuePinned"],
];

async function roundTripRow(id: string, operation: string, trip: RoundTrip, shape: RoundTripShape, native: NativeMetricId, note: string): Promise<Row> {
  const raw = await job({ kind: "roundTrip", via: "raw", trip, shape, pages: RT_PAGES });
  const sdk = await job({ kind: "roundTrip", via: "sdk", trip, shape, pages: RT_PAGES });
  const err = notes(raw.error === null ? null : `raw: ${raw.error}`, sdk.error === null ? null : `sdk: ${sdk.error}`);
  return { id, operation, unit: "round trips/s", native, raw: raw.rate?.opsPerSec ?? null, sdk: sdk.rate?.opsPerSec ?? null, rawRate: raw.rate, sdkRate: sdk.rate, note: notes(note, err) };
}

async function roundTripRows(): Promise<Row[]> {
  const rows: Row[] = [];
  for (const [trip, native] of ROUND_TRIPS) rows.push(await roundTripRow(`rt-${trip}`, `${trip} round trip, same CPU`, trip, ONE_BY_ONE, native, "1 thread, 1 msg per read"));
  const fastNote = `${FAST_SHAPE.threads} threads, <=${FAST_SHAPE.batch} msgs per read; real: same CPU, 1 thread`;
  rows.push(await roundTripRow("rt-fast", "missing+copy round trip, SDK fastest path", "missing+copy", FAST_SHAPE, "rtMissingCopyPinned", fastNote));
  return rows;
}

const OP_LABELS: Record<Op, [string, string]> = {
  uffdCopy4k: ["UFFDIO_COPY 4 KiB, no waiter", "ioctls/s"],
  uffdCopy2m: ["UFFDIO_COPY 2 MiB, no waiter", "ioctls/s"],
  uffdMove4k: ["UFFDIO_MOVE 4 KiB", "ioctls/s"],
  wpToggle4k: ["WRITEPROTECT on+off 4 KiB", "pairs/s"],
  wpToggle2m: ["WRITEPROTECT on+off 2 MiB", "pairs/s"],
  fork64m: ["fork(), 64 MiB present anon", "forks/s"],
  forkExitWait64m: ["fork+exit+waitpid, 64 MiB", "forks/s"],
};

async function opRows(): Promise<Row[]> {
  const rows: Row[] = [];
  for (const op of OPS) {
    const raw = await job({ kind: "op", via: "raw", op });
    const sdk = isSdkOp(op) ? await job({ kind: "op", via: "sdk", op }) : null;
    const [operation, unit] = OP_LABELS[op];
    const err = notes(raw.error === null ? null : `raw: ${raw.error}`, sdk?.error == null ? null : `sdk: ${sdk.error}`);
    const note = notes(sdk === null ? null : "sdk: race-safe range op", err);
    rows.push({ id: op, operation, unit, native: op, raw: raw.rate?.opsPerSec ?? null, sdk: sdk?.rate?.opsPerSec ?? null, rawRate: raw.rate, sdkRate: sdk?.rate ?? null, note });
  }
  return rows;
}

/** Real-kernel metrics with no simulated counterpart (the simulator runs on one thread). */
function realOnlyRows(): Row[] {
  const ids: NativeMetricId[] = ["rtMissingCopyUnpinned", "rtMissingZeropageUnpinned", "rtWpUnprotectUnpinned", "rtMinorContinueUnpinned", "rtMissingCopySplit"];
  return ids.map((id) => {
    const label = NATIVE_METRICS.find((m) => m.id === id)?.label ?? id;
    return { id, operation: label, unit: "round trips/s", native: id, raw: null, sdk: null, rawRate: null, sdkRate: null, note: "real only: the simulator runs on one core" };
  });
}

interface MemoryFigures {
  resident: number;
  zero: number;
  untouched: number;
}

async function memoryRows(): Promise<{ rows: Row[]; figures: MemoryFigures }> {
  const get = async (state: MemoryState): Promise<HostMemory | null> => {
    const r = (await job({ kind: "memory", state, mib: MEMORY_MIB })).result;
    return "memory" in r ? r.memory : null;
  };
  const resident = await get("resident");
  const zero = await get("zero page");
  const untouched = await get("untouched");
  const split = (m: HostMemory | null): string => (m === null ? "not measured" : `heap ${m.heapBytesPerPage.toFixed(1)} + external ${m.externalBytesPerPage.toFixed(1)}${m.gc ? "" : " (no gc: noisy)"}`);
  const row = (id: string, operation: string, m: HostMemory | null, real: number, note: string): Row => ({
    id,
    operation,
    unit: "B/page",
    native: null,
    realValue: real,
    raw: m?.bytesPerPage ?? null,
    sdk: null,
    rawRate: null,
    sdkRate: null,
    note,
  });
  const rows = [
    row("mem-resident", `host memory per resident page (${MEMORY_MIB} MiB)`, resident, 4168, `${split(resident)}; real: 4096 + 64 (struct page) + 8 (pte)`),
    row("mem-zero", `per zero-page-backed page (${MEMORY_MIB} MiB read)`, zero, 8, `${split(zero)}; real: the 8-byte pte`),
    row("mem-untouched", `per untouched page (${MEMORY_MIB} MiB mapped)`, untouched, 0, split(untouched)),
  ];
  const fig = (m: HostMemory | null): number => m?.bytesPerPage ?? Number.NaN;
  return { rows, figures: { resident: fig(resident), zero: fig(zero), untouched: fig(untouched) } };
}

async function scaleRows(): Promise<Row[]> {
  const rows: Row[] = [];
  for (const mib of SCALE_MIB) {
    const res = await job({ kind: "scale", mib });
    const r = "scale" in res.result ? res.result.scale : null;
    const size = mib >= 1024 ? `${mib / 1024} GiB` : `${mib} MiB`;
    const note =
      r === null
        ? (res.error ?? "not measured")
        : `fresh kernel, ${Math.round(100 * r.hostKernelShare)}% host-kernel time (first touch of host memory); warm again ${Math.round(r.warmFaultsPerSec).toLocaleString("en-US")}/s; ${r.memory.bytesPerPage.toFixed(0)} B/page`;
    const row: Row = { id: `scale-${mib}`, operation: `anon write faults populating ${size}`, unit: "faults/s", native: "anonFault", raw: r?.faultsPerSec ?? null, sdk: null, rawRate: null, sdkRate: null, note };
    if (r !== null) row.scale = r;
    rows.push(row);
  }
  return rows;
}

async function main(): Promise<void> {
  const t0 = performance.now();
  console.log(`uffd bench${quick ? " (--quick)" : ""}: node ${process.version}, ${cpus()[0]?.model ?? "unknown cpu"} x${cpus().length}, median of ${RUNS} runs after ${WARMUP}+ warm-up, each row in its own process`);
  const why = await userfaultfdUnavailable();
  if (why !== null) throw new Error(`the simulated userfaultfd does not work (${why}): nothing to measure`);
  const rows = [...(await physicalRows()), ...(await faultRows()), ...(await roundTripRows()), ...(await opRows())];
  const mem = await memoryRows();
  const scale = await scaleRows();
  // The real kernel runs last, alone, so the simulator's processes do not disturb it.
  const native: NativeBenchResult | null = withNative ? await runNativeBench({ quick }) : null;
  const all = [...rows, ...(native?.available === true ? realOnlyRows() : []), ...mem.rows, ...scale];
  const targets = checkTargets(all, native, mem.figures);
  console.log("");
  console.log(formatTable(all, native));
  console.log("");
  if (native === null) console.log("real kernel: not measured (--no-native)");
  else if (!native.available) console.log(describeUnavailable(native));
  else console.log(`real kernel: Linux ${native.host.kernelRelease}, ${native.host.cpuModel}, ${native.host.nproc} CPUs; median of ${native.runs} runs after ${native.warmupRuns} warm-up (uffd-bench.c)`);
  console.log("");
  console.log("targets (issue 7):");
  for (const t of targets) console.log(`  ${t.status.padEnd(4)}  ${t.line}`);
  const explore = await exploreLine();
  if (explore !== null) console.log(`\n@uffd/testing:\n${explore}`);
  writeJson(all, targets, native, mem.figures, (performance.now() - t0) / 1000);
}

/** The testing kit's exploration speed (packages/testing/bench), when that package is there. */
async function exploreLine(): Promise<string | null> {
  interface ExploreBench {
    exploreSeedsPerSecond(seeds?: number): Promise<unknown>;
    formatExploreBench(r: unknown): string;
  }
  try {
    const m = (await import(new URL("../../testing/bench/explore-bench.ts", import.meta.url).href)) as ExploreBench;
    return m.formatExploreBench(await m.exploreSeedsPerSecond(quick ? 200 : 1000));
  } catch (e) {
    return `  explore: not measured (${e instanceof Error ? e.message : String(e)})`;
  }
}

function writeJson(rows: Row[], targets: Target[], native: NativeBenchResult | null, mem: MemoryFigures, seconds: number): void {
  const dir = fileURLToPath(new URL("../../../bench-results/", import.meta.url));
  mkdirSync(dir, { recursive: true });
  const file = `${dir}bench.json`;
  const json = {
    date: new Date().toISOString(),
    node: process.version,
    cpu: cpus()[0]?.model ?? null,
    cpus: cpus().length,
    quick,
    runs: RUNS,
    warmup: WARMUP,
    seconds,
    rows: rows.map(({ rawRate, sdkRate, ...r }) => ({ ...r, rawRate: rawRate ?? undefined, sdkRate: sdkRate ?? undefined })),
    memoryBytesPerPage: mem,
    targets,
    native,
  };
  writeFileSync(file, `${JSON.stringify(json, null, 2)}\n`);
  console.log(`\n${Math.round(seconds)} s; written to ${file}`);
}

await main();
