/**
 * `npm run bench`: the simulator against this machine's real kernel, in one table.
 *
 * First the host's micro-costs (null syscall, same-CPU pipe ping-pong, first-touch fault), so a
 * reader knows what the real-kernel column means on this host. Then, for each operation, the
 * real kernel (native/uffd-bench.c), the simulator through the raw uAPI and through @uffd/sdk,
 * and the ratios; the memory and scale rows; the testing kit's exploration rate; and one line
 * per target saying whether this run reached it and, where not, what bounds it.
 *
 * Method: every figure of a row is measured in PROCS fresh processes, the two sides alternating
 * (sim raw, real, sim SDK, sim raw, real, ...), each process bound to the same CPU (taskset)
 * where the real kernel's figure is a same-CPU one; a process's figure is the median of its timed
 * runs after warm-up; the table shows the median across processes and their spread. The memory
 * and scale rows take one process each. Everything goes to bench-results/bench.json
 * (gitignored), and a full run rewrites the generated section of docs/benchmarks.md.
 *
 *   tsx packages/kernel/bench/run.ts            a few minutes
 *   ... --quick (or UFFD_BENCH_QUICK=1)         smaller sizes, 2 processes per side: a smoke run
 *   ... --no-native                             simulator columns only
 *   ... --no-doc                                leave docs/benchmarks.md alone
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import type { FaultKind } from "./faults.ts";
import { type ExploreFigures, type Job, type JobResult, type JobSettings, runJobInChild } from "./jobs.ts";
import type { HostMemory, MemoryState } from "./memory.ts";
import { describeUnavailable, NATIVE_METRICS, type NativeBenchReport, type NativeMetricId, runNativeBench } from "./native/native.ts";
import { type Op, OPS } from "./ops.ts";
import { isSdkOp } from "./sdk.ts";
import { type Agg, aggregate, checkTargets, constant, formatMicroCosts, formatTable, type MicroCost, type Row, spread } from "./table.ts";
import { type RoundTrip, type RoundTripShape, userfaultfdUnavailable } from "./uffd.ts";

const quickEnv = process.env["UFFD_BENCH_QUICK"];
const quick = process.argv.includes("--quick") || (quickEnv !== undefined && quickEnv !== "" && quickEnv !== "0");
const withNative = !process.argv.includes("--no-native");
const writeDoc = !quick && !process.argv.includes("--no-doc");
/** Fresh processes per side per row. */
const PROCS = quick ? 2 : 3;
const RUNS = quick ? 3 : 7;
const WARMUP = quick ? 1 : 2;
/** uffd-bench.c's sizes (divided by 8 with --quick, as its scaled() does). */
const FAULT_PAGES = quick ? 2048 : 16384;
const RT_PAGES = quick ? 625 : 5000;
/** The SDK's fastest path: many faulting threads, so one read(2) returns a batch (uffd-bench.c: 32 x 156 pages). */
const FAST_SHAPE: RoundTripShape = { threads: 32, batch: 64 };
const FAST_PAGES = quick ? 32 * 19 : 32 * 156;
const ONE_BY_ONE: RoundTripShape = { threads: 1, batch: 1 };
/** Memory rows use 256 MiB even with --quick: smaller mappings drown in heap noise. */
const MEMORY_MIB = 256;
/**
 * The untouched row maps 4 GiB: it adds nothing per page, so the few hundred KiB by which the heap
 * moves between two gc'd samples (measured at 256 MiB: -2.9 to +2.8 B per page) must be spread
 * over enough pages to read below a byte.
 */
const UNTOUCHED_MIB = 4096;
const SCALE_MIB = quick ? [128, 256] : [1024, 4096];
const EXPLORE_SEEDS = quick ? 200 : 3000;

const SETTINGS: JobSettings = { quick, runs: RUNS, warmup: WARMUP };

/** The CPU every same-CPU process is bound to (the real kernel's round trips pin there too), if taskset exists. */
const PIN_CPU: number | undefined = (() => {
  try {
    execFileSync("taskset", ["-c", "0", "true"], { stdio: "ignore" });
    return 0;
  } catch {
    return undefined;
  }
})();

const errors: string[] = [];

/** One job in a fresh process; its figure per process, null on failure (the error is kept for the note). */
async function simOnce(j: Job, pinned: boolean): Promise<JobResult | null> {
  const r = await runJobInChild(j, SETTINGS, pinned ? PIN_CPU : undefined);
  if ("error" in r) {
    errors.push(`${JSON.stringify(j)}: ${r.error.split("\n")[0]}`);
    console.error(`bench: ${JSON.stringify(j)} failed: ${r.error}`);
    return null;
  }
  return r;
}

/** The real kernel's per-process results, by metric (a metric measured once serves every row that shows it). */
const nativeRuns = new Map<NativeMetricId, NativeBenchReport[]>();
let nativeHost: NativeBenchReport | null = null;
let nativeWhy: string | null = withNative ? null : "not measured (--no-native)";

async function nativeOnce(id: NativeMetricId, pinned: boolean): Promise<void> {
  if (!withNative || nativeWhy !== null) return;
  const r = await runNativeBench({ quick, metrics: [id], ...(pinned && PIN_CPU !== undefined ? { cpu: PIN_CPU } : {}) });
  if (!r.available) {
    nativeWhy = describeUnavailable(r);
    return;
  }
  nativeHost ??= r;
  const list = nativeRuns.get(id) ?? [];
  list.push(r);
  nativeRuns.set(id, list);
}

function nativeAgg(id: NativeMetricId | null, as: "opsPerSec" | "nsPerOp" = "opsPerSec"): Agg | null {
  if (id === null) return null;
  const runs = nativeRuns.get(id) ?? [];
  return aggregate(runs.map((r) => r.results[id]?.[as] ?? Number.NaN));
}

function nativeSkip(id: NativeMetricId | null): string | null {
  if (id === null) return null;
  return nativeRuns.get(id)?.[0]?.skipped[id] ?? null;
}

const rateAgg = (rs: Array<JobResult | null>): Agg | null => {
  const rates = rs.flatMap((r) => (r !== null && "rate" in r ? [r.rate] : []));
  return aggregate(
    rates.map((r) => r.opsPerSec),
    rates.map((r) => r.cpuShare),
  );
};

const notes = (...parts: Array<string | null | undefined>): string => parts.filter((p) => p !== null && p !== undefined && p !== "").join("; ");

interface Spec {
  id: string;
  operation: string;
  unit: string;
  raw?: Job;
  sdk?: Job;
  native?: NativeMetricId;
  /** Real kernel and simulator bound to one CPU (default true). */
  pinned?: boolean;
  note?: string;
}

/** A row: PROCS rounds of (sim raw, real, sim SDK), each in a fresh process. */
async function measureRow(s: Spec): Promise<Row> {
  const pinned = s.pinned ?? true;
  const raw: Array<JobResult | null> = [];
  const sdk: Array<JobResult | null> = [];
  const known = s.native === undefined ? 0 : (nativeRuns.get(s.native)?.length ?? 0);
  for (let i = 0; i < PROCS; i++) {
    if (s.raw !== undefined) raw.push(await simOnce(s.raw, pinned));
    if (s.native !== undefined && i >= known) await nativeOnce(s.native, pinned);
    if (s.sdk !== undefined) sdk.push(await simOnce(s.sdk, pinned));
  }
  const skipped = nativeSkip(s.native ?? null);
  return {
    id: s.id,
    operation: s.operation,
    unit: s.unit,
    real: nativeAgg(s.native ?? null),
    raw: rateAgg(raw),
    sdk: rateAgg(sdk),
    note: notes(s.note, skipped === null ? null : `real: ${skipped}`, raw.length > 0 && raw.every((r) => r === null) ? "sim raw failed" : null, sdk.length > 0 && sdk.every((r) => r === null) ? "sim SDK failed" : null),
  };
}

const ROUND_TRIPS: Array<[RoundTrip, NativeMetricId]> = [
  ["missing+copy", "rtMissingCopyPinned"],
  ["missing+zeropage", "rtMissingZeropagePinned"],
  ["wp+unprotect", "rtWpUnprotectPinned"],
  ["minor+continue", "rtMinorContinuePinned"],
];

const OP_LABELS: Record<Op, [string, string]> = {
  uffdCopy4k: ["UFFDIO_COPY 4 KiB, no waiter", "ioctls/s"],
  uffdCopy2m: ["UFFDIO_COPY 2 MiB, no waiter", "ioctls/s"],
  uffdMove4k: ["UFFDIO_MOVE 4 KiB", "ioctls/s"],
  wpToggle4k: ["WRITEPROTECT on+off 4 KiB", "pairs/s"],
  wpToggle2m: ["WRITEPROTECT on+off 2 MiB", "pairs/s"],
  fork64m: ["fork(), 64 MiB present anon", "forks/s"],
  forkExitWait64m: ["fork+exit+waitpid, 64 MiB", "forks/s"],
};

function specs(): Spec[] {
  const out: Spec[] = [
    { id: "memcpy4k", operation: "memcpy 4 KiB (cache-warm)", unit: "copies/s", raw: { kind: "memcpy", bytes: 4096, ops: quick ? 25_000 : 200_000 }, native: "memcpy4k", note: "sim: Uint8Array.set() in V8" },
    { id: "memcpy2m", operation: "memcpy 2 MiB (cache-warm)", unit: "copies/s", raw: { kind: "memcpy", bytes: 2 << 20, ops: quick ? 25 : 200 }, native: "memcpy2m", note: "the same 2 MiB each time" },
    { id: "memcpyStream2m", operation: "memcpy 2 MiB, streaming", unit: "copies/s", raw: { kind: "memcpyStream", ops: quick ? 4 : 32 }, native: "memcpyStream2m", note: "into successive 2 MiB of a resident 64 MiB" },
    {
      id: "memcpyFrames4k",
      operation: `memcpy 4 KiB into ${RT_PAGES} frames`,
      unit: "copies/s",
      raw: { kind: "memcpyFrames", pages: RT_PAGES },
      note: "sim: the copy of each missing+copy round trip alone, into the round-trip scene's frames in its order",
    },
  ];
  const faults: Array<[FaultKind, string, string, NativeMetricId | undefined, string]> = [
    ["write-cold", "anon write fault, cold", "faults/s", "anonFault", "fresh memory each run (sim: a new kernel, no pooled chunks; the host allocator may reuse memory it had)"],
    ["write", "anon write fault, warm", "faults/s", "anonFaultWarm", "the same pages again after MADV_DONTNEED"],
    ["read", "anon read fault (zero page)", "faults/s", undefined, ""],
    ["write-present", "store to a present page (no fault)", "accesses/s", undefined, ""],
  ];
  for (const [fault, operation, unit, native, note] of faults) out.push({ id: `fault-${fault}`, operation, unit, raw: { kind: "fault", fault, pages: FAULT_PAGES }, ...(native ? { native } : {}), note });
  const pm = quick ? 8192 : 65536;
  for (const format of ["objects", "raw"] as const) {
    out.push({
      id: `pagemap-${format}`,
      operation: `pagemap of ${(pm * 4) / 1024} MiB, ${format === "raw" ? "raw words" : "objects"}`,
      unit: "entries/s",
      raw: { kind: "pagemap", format, pages: pm },
      native: "pagemapRead",
      note: format === "raw" ? "sim: pagemap(addr, n, { format: \"raw\", into }); real: one pread() of /proc/self/pagemap" : "sim: pagemap(addr, n), one object per page",
    });
  }
  for (const [trip, native] of ROUND_TRIPS) {
    out.push({ id: `rt-${trip}`, operation: `${trip} round trip, same CPU`, unit: "round trips/s", raw: { kind: "roundTrip", via: "raw", trip, shape: ONE_BY_ONE, pages: RT_PAGES }, sdk: { kind: "roundTrip", via: "sdk", trip, shape: ONE_BY_ONE, pages: RT_PAGES }, native, note: "1 thread, 1 msg per read" });
  }
  out.push({
    id: "rt-fast",
    operation: "missing+copy round trip, SDK fastest path",
    unit: "round trips/s",
    raw: { kind: "roundTrip", via: "raw", trip: "missing+copy", shape: FAST_SHAPE, pages: FAST_PAGES },
    sdk: { kind: "roundTrip", via: "sdk", trip: "missing+copy", shape: FAST_SHAPE, pages: FAST_PAGES },
    native: "rtMissingCopyBatched",
    note: `${FAST_SHAPE.threads} threads, <=${FAST_SHAPE.batch} msgs per read, ${FAST_PAGES} pages (real: the same, all on one CPU)`,
  });
  for (const op of OPS) {
    const [operation, unit] = OP_LABELS[op];
    out.push({ id: op, operation, unit, raw: { kind: "op", via: "raw", op }, ...(isSdkOp(op) ? { sdk: { kind: "op", via: "sdk", op } as Job, note: "sdk: race-safe range op" } : {}), native: op });
  }
  return out;
}

/** Real-kernel metrics with no simulated counterpart (the simulator runs on one thread), unbound. */
async function realOnlyRows(): Promise<Row[]> {
  const ids: NativeMetricId[] = ["rtMissingCopyUnpinned", "rtMissingZeropageUnpinned", "rtWpUnprotectUnpinned", "rtMinorContinueUnpinned", "rtMissingCopySplit"];
  const rows: Row[] = [];
  for (const id of ids) {
    const label = NATIVE_METRICS.find((m) => m.id === id)?.label ?? id;
    rows.push(await measureRow({ id, operation: label, unit: "round trips/s", native: id, pinned: false, note: "real only: the simulator runs on one core" }));
  }
  return rows;
}

interface MemoryFigures {
  resident: number;
  zero: number;
  untouched: number;
}

async function memoryRows(): Promise<{ rows: Row[]; figures: MemoryFigures }> {
  const get = async (state: MemoryState, mib = MEMORY_MIB): Promise<HostMemory | null> => {
    const r = await simOnce({ kind: "memory", state, mib }, false);
    return r !== null && "memory" in r ? r.memory : null;
  };
  const resident = await get("resident");
  const zero = await get("zero page");
  const untouched = await get("untouched", UNTOUCHED_MIB);
  const split = (m: HostMemory | null, touched = true): string =>
    m === null
      ? "not measured"
      : `heap ${m.heapBytesPerPage.toFixed(1)} + external ${m.externalBytesPerPage.toFixed(1)}${m.gc ? "" : " (no gc: noisy)"}${
          !touched
            ? `; after a first mmap() and munmap() of the same size (${Math.round(m.oneOffBytes / 1024)} KiB of one-off first-use heap)`
            : m.oneOffBytes > 0
              ? `; over the last 3/4 of the pages, after ${Math.round(m.oneOffBytes / 1024)} KiB of one-off first-use heap`
              : ""
        }`;
  const row = (id: string, operation: string, m: HostMemory | null, real: number, note: string): Row => ({
    id,
    operation,
    unit: "B/page",
    real: constant(real),
    raw: m === null ? null : constant(m.bytesPerPage),
    sdk: null,
    note: notes(note, "1 process"),
  });
  const rows = [
    row("mem-resident", `host memory per resident page (${MEMORY_MIB} MiB)`, resident, 4168, `${split(resident)}; real: 4096 + 64 (struct page) + 8 (pte)`),
    row("mem-zero", `per zero-page-backed page (${MEMORY_MIB} MiB read)`, zero, 8, `${split(zero)}; real: the 8-byte pte`),
    row("mem-untouched", `per untouched page (${UNTOUCHED_MIB / 1024} GiB mapped)`, untouched, 0, split(untouched, false)),
  ];
  const fig = (m: HostMemory | null): number => m?.bytesPerPage ?? Number.NaN;
  return { rows, figures: { resident: fig(resident), zero: fig(zero), untouched: fig(untouched) } };
}

async function scaleRows(): Promise<Row[]> {
  const rows: Row[] = [];
  for (const mib of SCALE_MIB) {
    const res = await simOnce({ kind: "scale", mib }, false);
    const r = res !== null && "scale" in res ? res.scale : null;
    const size = mib >= 1024 ? `${mib / 1024} GiB` : `${mib} MiB`;
    const note =
      r === null
        ? "not measured"
        : `fresh kernel, ${Math.round(100 * r.hostKernelShare)}% host-kernel time (first touch of host memory); warm again ${Math.round(r.warmFaultsPerSec).toLocaleString("en-US")}/s; ${r.memory.bytesPerPage.toFixed(0)} B/page; 1 process; real: cold faults`;
    const row: Row = { id: `scale-${mib}`, operation: `anon write faults populating ${size}`, unit: "faults/s", real: nativeAgg("anonFault"), raw: r === null ? null : constant(r.faultsPerSec), sdk: null, note };
    if (r !== null) row.scale = r;
    rows.push(row);
  }
  return rows;
}

async function exploreFigures(): Promise<{ one: ExploreFigures[]; many: ExploreFigures | null }> {
  const one: ExploreFigures[] = [];
  for (let i = 0; i < PROCS; i++) {
    const r = await simOnce({ kind: "explore", seeds: EXPLORE_SEEDS, workers: 1 }, true);
    if (r !== null && "explore" in r) one.push(r.explore);
  }
  const workers = cpus().length;
  const m = workers > 1 ? await simOnce({ kind: "explore", seeds: 4 * EXPLORE_SEEDS, workers }, false) : null;
  return { one, many: m !== null && "explore" in m ? m.explore : null };
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const load0 = loadavg()[0]!;
  const started = new Date();
  const header = `uffd bench${quick ? " (--quick)" : ""}: node ${process.version}, ${cpus()[0]?.model ?? "unknown cpu"} x${cpus().length}; every figure in ${PROCS} fresh processes per side (sim raw, real, sim SDK alternating), each the median of ${RUNS} timed runs after ${WARMUP}+ warm-up; ${PIN_CPU === undefined ? "no taskset: processes unbound" : `same-CPU rows bound to CPU ${PIN_CPU} on both sides`}`;
  console.log(header);
  const why = await userfaultfdUnavailable();
  if (why !== null) throw new Error(`the simulated userfaultfd does not work (${why}): nothing to measure`);

  // The host's micro-costs first: they say what the real-kernel column means on this host.
  for (let i = 0; i < PROCS; i++) {
    await nativeOnce("nullSyscall", true);
    await nativeOnce("pipePingPong", true);
  }
  const rows: Row[] = [];
  for (const s of specs()) {
    const r = await measureRow(s);
    rows.push(r);
    console.error(`  ${r.operation}: real ${r.real === null ? "-" : Math.round(r.real.median)} ${spread(r.real)}, raw ${r.raw === null ? "-" : Math.round(r.raw.median)} ${spread(r.raw)}, sdk ${r.sdk === null ? "-" : Math.round(r.sdk.median)} ${spread(r.sdk)}`);
  }
  const realOnly = nativeWhy === null ? await realOnlyRows() : [];
  const mem = await memoryRows();
  const scale = await scaleRows();
  const explore = await exploreFigures();
  const all = [...rows, ...realOnly, ...mem.rows, ...scale];
  const wall = aggregate(explore.one.map((e) => e.seedsPerSec));
  const cpu = aggregate(explore.one.map((e) => e.cpuSeedsPerSec));
  const targets = checkTargets({ rows: all, memory: mem.figures, explore: wall !== null && cpu !== null ? { wall, cpu } : null });
  const micro: MicroCost[] = [
    { id: "nullSyscall", label: "null syscall (getppid)", ns: nativeAgg("nullSyscall", "nsPerOp") },
    { id: "pipePingPong", label: "pipe ping-pong, same CPU (round trip)", ns: nativeAgg("pipePingPong", "nsPerOp") },
    { id: "anonFault", label: "first-touch anon write fault", ns: nativeAgg("anonFault", "nsPerOp") },
  ];
  const seconds = (performance.now() - t0) / 1000;
  const load1 = loadavg()[0]!;
  const out: string[] = [];
  out.push(header, "");
  if (nativeWhy !== null) out.push(`real kernel: ${nativeWhy}`);
  else {
    const h = nativeHost!.host;
    out.push(`real kernel: Linux ${h.kernelRelease}, ${h.cpuModel}, ${h.nproc} CPUs (uffd-bench.c, ${nativeHost!.runs} timed runs after ${nativeHost!.warmupRuns} warm-up per process)`);
    out.push("host micro-costs (real kernel, median of the processes):", ...formatMicroCosts(micro));
  }
  out.push("", formatTable(all), "");
  out.push("@uffd/testing explore() (2 threads, 4 pages, the fixed prefetching handler):");
  if (wall !== null && cpu !== null) out.push(`  1 worker:  ${Math.round(wall.median).toLocaleString("en-US")} seeds/s ${spread(wall)} wall, ${Math.round(cpu.median).toLocaleString("en-US")} seeds per CPU second ${spread(cpu)} (${EXPLORE_SEEDS} seeds per process, after 3000 untimed: explore-bench.ts EXPLORE_WARMUP_SEEDS)`);
  else out.push("  1 worker: not measured");
  if (explore.many !== null) out.push(`  ${explore.many.workers} workers: ${Math.round(explore.many.seedsPerSec).toLocaleString("en-US")} seeds/s wall, ${Math.round(explore.many.cpuSeedsPerSec).toLocaleString("en-US")} seeds per CPU second (${explore.many.seeds} seeds, 1 process, worker start-up included)`);
  out.push("", "targets:");
  for (const t of targets) out.push(`  ${t.status.padEnd(4)}  ${t.line}`);
  out.push("", `load average (1 min): ${load0.toFixed(1)} at the start, ${load1.toFixed(1)} at the end, on ${cpus().length} CPUs; ${Math.round(seconds)} s`);
  if (errors.length > 0) out.push("", "failed jobs:", ...errors.map((e) => `  ${e}`));
  console.log("");
  console.log(out.slice(2).join("\n"));
  writeJson({ started, seconds, load: [load0, load1], rows: all, targets, micro, explore, native: { why: nativeWhy, host: nativeHost?.host ?? null, runs: Object.fromEntries(nativeRuns) } });
  if (writeDoc) writeDocSection(started, out.join("\n"));
}

function writeJson(json: object): void {
  const dir = fileURLToPath(new URL("../../../bench-results/", import.meta.url));
  mkdirSync(dir, { recursive: true });
  const file = `${dir}bench.json`;
  writeFileSync(file, `${JSON.stringify({ quick, procs: PROCS, runs: RUNS, warmup: WARMUP, node: process.version, cpu: cpus()[0]?.model ?? null, cpus: cpus().length, ...json }, null, 2)}\n`);
  console.log(`\nwritten to ${file}`);
}

const BEGIN = "<!-- bench:begin: generated by `npm run bench` from its run; edit the text around it, not inside -->";
const END = "<!-- bench:end -->";

/** Replaces the generated section of docs/benchmarks.md with this run's output. */
function writeDocSection(started: Date, text: string): void {
  const file = fileURLToPath(new URL("../../../docs/benchmarks.md", import.meta.url));
  if (!existsSync(file)) return;
  const doc = readFileSync(file, "utf8");
  const a = doc.indexOf(BEGIN);
  const b = doc.indexOf(END);
  if (a < 0 || b < a) {
    console.log(`docs/benchmarks.md has no generated section (${BEGIN} ... ${END}): left alone`);
    return;
  }
  const section = `${BEGIN}\n\nRun of ${started.toISOString().slice(0, 16).replace("T", " ")} UTC (\`npm run bench\`):\n\n\`\`\`\n${text}\n\`\`\`\n\n${END}`;
  writeFileSync(file, doc.slice(0, a) + section + doc.slice(b + END.length));
  console.log(`docs/benchmarks.md: generated section rewritten`);
}

await main();
