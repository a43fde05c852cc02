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
 * Method: each simulated rate is the median of RUNS timed runs after WARMUP warm-up runs, on one
 * warm scene per row (as uffd-bench.c does on the real kernel); setup and resets are not timed.
 * The real kernel runs last, alone, so the simulator's gc and JIT do not disturb it.
 *
 *   tsx packages/kernel/bench/run.ts            about a minute
 *   ... --quick (or UFFD_BENCH_QUICK=1)         smaller sizes, fewer runs: a smoke run
 *   ... --no-native                             simulator columns only
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { fileURLToPath } from "node:url";
import { faultRate, scaleRun, type FaultKind } from "./faults.ts";
import { getGc, memcpyRate, type Rate } from "./measure.ts";
import { memoryPerPage } from "./memory.ts";
import { describeUnavailable, NATIVE_METRICS, type NativeBenchResult, type NativeMetricId, runNativeBench } from "./native/native.ts";
import { type Op, OPS, opRate } from "./ops.ts";
import { isSdkOp, loadSdk, type SdkModule, sdkOpRate, sdkRoundTripRate } from "./sdk.ts";
import { formatTable, type Row, type Target, checkTargets } from "./table.ts";
import { type RoundTrip, roundTripRate, type RoundTripShape, userfaultfdUnavailable } from "./uffd.ts";

const quickEnv = process.env["UFFD_BENCH_QUICK"];
const quick = process.argv.includes("--quick") || (quickEnv !== undefined && quickEnv !== "" && quickEnv !== "0");
const withNative = !process.argv.includes("--no-native");
const RUNS = quick ? 3 : 7;
const WARMUP = quick ? 1 : 2;
/** uffd-bench.c's sizes (divided by 8 with --quick, as its scaled() does). */
const FAULT_PAGES = quick ? 2048 : 16384;
const RT_PAGES = quick ? 625 : 5000;
const FAST_PAGES = quick ? 2048 : 8192;
/** The SDK's fastest path: many faulting threads, so one read(2) returns a batch. */
const FAST_SHAPE: RoundTripShape = { threads: 16, batch: 64 };
const ONE_BY_ONE: RoundTripShape = { threads: 1, batch: 1 };
const MEMORY_MIB = quick ? 64 : 256;
const SCALE_MIB = quick ? [128, 256] : [1024, 4096];

const rate = (r: Rate | null): number | null => (r === null ? null : r.opsPerSec);

async function physicalRows(): Promise<Row[]> {
  const m4k = await memcpyRate(4096, quick ? 25_000 : 200_000, RUNS, WARMUP);
  const m2m = await memcpyRate(2 << 20, quick ? 25 : 200, RUNS, WARMUP);
  return [
    { id: "memcpy4k", operation: "memcpy 4 KiB (the physical limit)", unit: "copies/s", native: "memcpy4k", raw: rate(m4k), sdk: null, rawRate: m4k, sdkRate: null, note: "sim: Uint8Array.set() in V8" },
    { id: "memcpy2m", operation: "memcpy 2 MiB", unit: "copies/s", native: "memcpy2m", raw: rate(m2m), sdk: null, rawRate: m2m, sdkRate: null, note: "sim: Uint8Array.set() in V8" },
  ];
}

async function faultRows(): Promise<Row[]> {
  const kinds: Array<[FaultKind, string, string, NativeMetricId | null]> = [
    ["write", "anon write fault (new zeroed page)", "faults/s", "anonFault"],
    ["read", "anon read fault (zero page)", "faults/s", null],
    ["write-present", "store to a present page (no fault)", "accesses/s", null],
  ];
  const rows: Row[] = [];
  for (const [kind, operation, unit, native] of kinds) {
    const r = await faultRate(kind, FAULT_PAGES, RUNS, WARMUP);
    rows.push({ id: `fault-${kind}`, operation, unit, native, raw: r.opsPerSec, sdk: null, rawRate: r, sdkRate: null, note: "" });
  }
  return rows;
}

const ROUND_TRIPS: Array<[RoundTrip, NativeMetricId]> = [
  ["missing+copy", "rtMissingCopyPinned"],
  ["missing+zeropage", "rtMissingZeropagePinned"],
  ["wp+unprotect", "rtWpUnprotectPinned"],
  ["minor+continue", "rtMinorContinuePinned"],
];

async function roundTripRows(sdk: SdkModule | string): Promise<Row[]> {
  const rows: Row[] = [];
  const sdkNote = typeof sdk === "string" ? sdk : "";
  for (const [kind, native] of ROUND_TRIPS) {
    const raw = await roundTripRate(kind, ONE_BY_ONE, RT_PAGES, RUNS, WARMUP);
    const viaSdk = typeof sdk === "string" ? null : await sdkRoundTripRate(sdk, kind, ONE_BY_ONE, RT_PAGES, RUNS, WARMUP);
    const operation = `${kind} round trip, same CPU`;
    rows.push({ id: `rt-${kind}`, operation, unit: "round trips/s", native, raw: rate(raw), sdk: rate(viaSdk), rawRate: raw, sdkRate: viaSdk, note: sdkNote || "1 thread, 1 msg per read" });
  }
  const raw = await roundTripRate("missing+copy", FAST_SHAPE, FAST_PAGES, RUNS, WARMUP);
  const viaSdk = typeof sdk === "string" ? null : await sdkRoundTripRate(sdk, "missing+copy", FAST_SHAPE, FAST_PAGES, RUNS, WARMUP);
  rows.push({
    id: "rt-fast",
    operation: "missing+copy round trip, SDK fastest path",
    unit: "round trips/s",
    native: "rtMissingCopyPinned",
    raw: rate(raw),
    sdk: rate(viaSdk),
    rawRate: raw,
    sdkRate: viaSdk,
    note: sdkNote || `${FAST_SHAPE.threads} threads, <=${FAST_SHAPE.batch} msgs per read; real: same CPU, 1 thread`,
  });
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

async function opRows(sdk: SdkModule | string): Promise<Row[]> {
  const rows: Row[] = [];
  for (const op of OPS) {
    // Forks are few and cheap per run: take more runs, as uffd-bench.c does.
    const runs = op.startsWith("fork") && !quick ? 2 * RUNS - 1 : RUNS;
    const raw = await opRate(op, quick, runs, WARMUP);
    const viaSdk = typeof sdk !== "string" && isSdkOp(op) ? await sdkOpRate(sdk, op, quick, RUNS, WARMUP) : null;
    const [operation, unit] = OP_LABELS[op];
    const note = isSdkOp(op) ? (typeof sdk === "string" ? sdk : "sdk: race-safe range op") : "";
    rows.push({ id: op, operation, unit, native: op, raw: rate(raw), sdk: rate(viaSdk), rawRate: raw, sdkRate: viaSdk, note });
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

async function memoryRows(gc: (() => void) | null): Promise<{ rows: Row[]; resident: number; zero: number; untouched: number }> {
  const resident = await memoryPerPage("resident", MEMORY_MIB, gc);
  const zero = await memoryPerPage("zero page", MEMORY_MIB, gc);
  const untouched = await memoryPerPage("untouched", MEMORY_MIB, gc);
  const split = (m: typeof resident): string => `heap ${m.heapBytesPerPage.toFixed(1)} + external ${m.externalBytesPerPage.toFixed(1)}${m.gc ? "" : " (no gc: noisy)"}`;
  const row = (id: string, operation: string, value: number, real: number, note: string): Row => ({ id, operation, unit: "B/page", native: null, realValue: real, raw: value, sdk: null, rawRate: null, sdkRate: null, note });
  const rows = [
    row("mem-resident", `host memory per resident page (${MEMORY_MIB} MiB)`, resident.bytesPerPage, 4168, `${split(resident)}; real: 4096 + 64 (struct page) + 8 (pte)`),
    row("mem-zero", `per zero-page-backed page (${MEMORY_MIB} MiB read)`, zero.bytesPerPage, 8, `${split(zero)}; real: the 8-byte pte`),
    row("mem-untouched", `per untouched page (${MEMORY_MIB} MiB mapped)`, untouched.bytesPerPage, 0, split(untouched)),
  ];
  return { rows, resident: resident.bytesPerPage, zero: zero.bytesPerPage, untouched: untouched.bytesPerPage };
}

async function scaleRows(gc: (() => void) | null): Promise<Row[]> {
  const rows: Row[] = [];
  for (const mib of SCALE_MIB) {
    const r = await scaleRun(mib, gc);
    const size = mib >= 1024 ? `${mib / 1024} GiB` : `${mib} MiB`;
    rows.push({
      id: `scale-${mib}`,
      operation: `anon write faults populating ${size}`,
      unit: "faults/s",
      native: "anonFault",
      raw: r.faultsPerSec,
      sdk: null,
      rawRate: null,
      sdkRate: null,
      note: `fresh kernel; warm again ${Math.round(r.warmFaultsPerSec).toLocaleString("en-US")}/s; ${r.memory.bytesPerPage.toFixed(0)} B/page`,
      scale: r,
    });
  }
  return rows;
}

async function main(): Promise<void> {
  const gc = getGc();
  const t0 = performance.now();
  console.log(`uffd bench${quick ? " (--quick)" : ""}: node ${process.version}, ${cpus()[0]?.model ?? "unknown cpu"} x${cpus().length}, median of ${RUNS} runs after ${WARMUP} warm-up`);
  const why = await userfaultfdUnavailable();
  if (why !== null) throw new Error(`the simulated userfaultfd does not work (${why}): nothing to measure`);
  const sdk = await loadSdk();
  const rows = [...(await physicalRows()), ...(await faultRows()), ...(await roundTripRows(sdk)), ...(await opRows(sdk))];
  const mem = await memoryRows(gc);
  const scale = await scaleRows(gc);
  const native: NativeBenchResult | null = withNative ? await runNativeBench({ quick }) : null;
  const all = [...rows, ...(native?.available === true ? realOnlyRows() : []), ...mem.rows, ...scale];
  const targets = checkTargets(all, native, mem);
  console.log("");
  console.log(formatTable(all, native));
  console.log("");
  if (native === null) console.log("real kernel: not measured (--no-native)");
  else if (!native.available) console.log(describeUnavailable(native));
  else console.log(`real kernel: Linux ${native.host.kernelRelease}, ${native.host.cpuModel}, ${native.host.nproc} CPUs; median of ${native.runs} runs after ${native.warmupRuns} warm-up (uffd-bench.c)`);
  console.log("");
  console.log("targets (issue 7):");
  for (const t of targets) console.log(`  ${t.status.padEnd(4)}  ${t.line}`);
  writeJson(all, targets, native, mem, (performance.now() - t0) / 1000);
}

function writeJson(rows: Row[], targets: Target[], native: NativeBenchResult | null, mem: { resident: number; zero: number; untouched: number }, seconds: number): void {
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
