#!/usr/bin/env -S node --import tsx
/**
 * The migration benchmark: end-to-end migrations next to the physical limits measured in the same
 * run on the same machine — memcpy into fresh (never touched) memory, and loopback TCP between two
 * Node processes — so the numbers are ratios to what the machine can do, not absolute claims.
 *
 *   tsx src/bench.ts [--memory 1GiB,4GiB] [--strategy postcopy,hybrid] [--link default,unlimited]
 *                    [--frame-store compact,flat] [--repeat 3] [--child-flags A;B] [--loopback-pairs 3]
 *                    [--json file] [--no-floor]
 *
 * The limits are measured before every migration and once after the last, interleaved with the
 * rows, and every ratio is against their median (loopback TCP between two processes swings by a
 * factor of 1.5 and more from one measurement to the next on a shared machine; a single
 * measurement made the ratio a coin toss). Each loopback measurement is a fresh pair of bare Node
 * processes with the node flags of the migration children, 1 GiB timed after a discarded warm-up
 * (see measureBarePair in loopback.ts), `--loopback-pairs n` pairs (3 unless told) each time. It
 * also gives the CPU seconds per GiB of that pair, and each row sets the CPU per GiB of its source
 * and destination beside them (CPU vs the bare pair): a ratio of work done, not of the CPUs the
 * scheduler happened to give each side in that minute (though the bare pair, too, spends more CPU
 * per GiB in some placements than in others).
 * `--repeat n` runs the whole list of migrations n times, round robin, and adds a table of the
 * median and range of each configuration.
 * `--child-flags --single-threaded-gc;` (quoted for the shell) runs every migration once with
 * each set of extra node flags for both children (sets separated by semicolons, an empty set for
 * none, passed as LM_CHILD_FLAGS, which it replaces), one after the other: an A/B of the flags
 * under the same conditions.
 *
 * With the limits it measures the demand-fault floor (floor.ts, unless `--no-floor`): a 4 KiB
 * request/answer between two bare Node processes on a second connection beside a bulk push, the
 * best round trip a demand page can have on the machine at that moment; the table gives the fault
 * p99 of each row as a multiple of the floor p99 beside the push. After each migration on the
 * unlimited link it measures the floor again with the push paced to the throughput of that
 * migration, and sets that floor beside the fault p99 of the row. (No apostrophes in this
 * comment: the import analysis of Vite misreads them after the shebang line.)
 *
 * `benchMigration()` is the function a bench table (packages/kernel/bench) can call for one row.
 */
import { writeFile } from "node:fs/promises";
import { loadavg } from "node:os";
import { pathToFileURL } from "node:url";
import { DEFAULT_CONFIG, formatBytes, FRAME_STORES, makeConfig, parseSize, STRATEGIES, type FrameStoreChoice, type Strategy } from "./config.ts";
import type { LinkShape } from "./link.ts";
import { combineFloors, formatFaultFloor, measureFaultFloor, type FaultFloor } from "./floor.ts";
import type { CpuTime } from "./metrics.ts";
import { measureBarePair } from "./loopback.ts";
import { runMigration } from "./orchestrator.ts";

export interface Limits {
  /** Bytes per second copied into freshly allocated (untouched) memory (the median of `samples`, if any). */
  memcpyFreshBytesPerSec: number;
  /** Bytes per second from one Node process to another over loopback TCP (the median of `samples`, if any). */
  loopbackTcpBytesPerSec: number;
  /**
   * CPU seconds per GiB the loopback measurement's two bare processes used (the medians of
   * `samples`, user and system each, if any): what moving a GiB over loopback TCP costs a Node
   * sender and receiver with nothing else to do, beside which the migration's CPU per GiB is set.
   */
  bareCpuPerGiB?: { sender: CpuPerGiB; receiver: CpuPerGiB };
  /** The host's 1-minute load average when the limits were (first) measured (os.loadavg()). */
  loadAverage?: number;
  /** Each measurement of the run, in the order taken, when there were several. */
  samples?: { memcpyFreshBytesPerSec: number[]; loopbackTcpBytesPerSec: number[]; bareCpuPerGiB?: Array<{ sender: CpuPerGiB; receiver: CpuPerGiB }>; faultFloor?: FaultFloor[] };
  /**
   * The demand-fault floor (floor.ts): a 4 KiB request/answer between two bare Node processes
   * beside a bulk push, the best round trip a demand page can have here (the median of `samples`).
   */
  faultFloor?: FaultFloor;
}

export interface MigrationBenchRow {
  memoryBytes: number;
  strategy: Strategy;
  link: "default" | "unlimited";
  /** How both kernels held page bytes. */
  frameStore: FrameStoreChoice;
  /** Extra node flags both children ran with (LM_CHILD_FLAGS), when the bench varied them. */
  childFlags?: string;
  ok: boolean;
  totalTimeMs: number;
  /** Guest bytes moved per second of total time (source -> destination wire bytes). */
  bytesPerSec: number;
  vsLoopbackTcp: number;
  vsMemcpy: number;
  downtimeMs: number;
  guestDowntimeMs: number | null;
  faultP50Us: number;
  faultP99Us: number;
  receiverBound: boolean;
  sourceMaxRssBytes: number | null;
  destMaxRssBytes: number | null;
  /**
   * CPU seconds each process used per GiB of guest migrated (all of its threads; the source from
   * the start of the migration to DONE, the destination from HELLO to DONE), user and system
   * separately; null when a side did not report it. Less moved by other load than wall time.
   */
  sourceCpuPerGiB: CpuPerGiB | null;
  destCpuPerGiB: CpuPerGiB | null;
  /**
   * The source's CPU per GiB (user + system) as a multiple of the bare loopback sender's, the
   * destination's as a multiple of the bare receiver's (`Limits.bareCpuPerGiB`); null when either
   * is unknown. Unlike the rate's ratio, this hardly depends on where the scheduler put the
   * processes.
   */
  sourceCpuVsBare?: number | null;
  destCpuVsBare?: number | null;
  error: string | null;
  /**
   * The demand-fault floor measured right after this migration with the bulk push paced to the
   * migration's own throughput (floor.ts, `bulkBytesPerSec`): two bare Node processes moving the
   * same bytes per second.
   */
  faultFloorAtRate?: FaultFloor;
}

/** CPU seconds per GiB of guest: user and system (kernel) time. */
export interface CpuPerGiB {
  user: number;
  system: number;
}

function cpuPerGiB(cpu: CpuTime | undefined, memoryBytes: number): CpuPerGiB | null {
  if (cpu === undefined) return null;
  const gib = memoryBytes / 2 ** 30;
  return { user: cpu.userMs / 1000 / gib, system: cpu.systemMs / 1000 / gib };
}

/** memcpy into fresh memory: `bytes` (in 1 MiB copies) into a buffer nobody has touched. */
export function measureMemcpyFresh(bytes = 256 * 1024 * 1024): number {
  const src = Buffer.alloc(1024 * 1024, 0x5a);
  const t0 = performance.now();
  const dst = Buffer.allocUnsafeSlow(bytes);
  for (let at = 0; at < bytes; at += src.byteLength) src.copy(dst, at);
  const ms = performance.now() - t0;
  if (dst[bytes - 1] !== 0x5a) throw new Error("memcpy check failed");
  return (bytes * 1000) / ms;
}

/**
 * Loopback TCP between two Node processes, in bytes per second: one measurement of the bare pair
 * (`measureBarePair()` in loopback.ts: the children's node flags, a discarded warm-up, 1 GiB timed).
 */
export async function measureLoopbackTcp(bytes = 2 ** 30): Promise<number> {
  return (await measureBarePair(bytes)).bytesPerSec;
}

export async function measureLimits(): Promise<Limits> {
  const loadAverage = loadavg()[0]!;
  const memcpyFreshBytesPerSec = measureMemcpyFresh();
  const bare = await measureBarePair();
  return { memcpyFreshBytesPerSec, loopbackTcpBytesPerSec: bare.bytesPerSec, bareCpuPerGiB: { sender: bare.senderCpuPerGiB, receiver: bare.receiverCpuPerGiB }, loadAverage };
}

/** The median of `xs` (the mean of the middle two for an even count); NaN for none. */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >>> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * Several measurements of the limits as one: each figure is the median of the measurements, and
 * `samples` keeps them all; the load average is the first measurement's.
 */
export function combineLimits(measured: readonly Limits[]): Limits {
  if (measured.length === 0) throw new RangeError("no limits measured");
  const memcpy = measured.map((l) => l.memcpyFreshBytesPerSec);
  const tcp = measured.map((l) => l.loopbackTcpBytesPerSec);
  const bare = measured.flatMap((l) => (l.bareCpuPerGiB === undefined ? [] : [l.bareCpuPerGiB]));
  const first = measured[0]!;
  const mid = (cs: readonly CpuPerGiB[]): CpuPerGiB => ({ user: median(cs.map((c) => c.user)), system: median(cs.map((c) => c.system)) });
  const floors = measured.flatMap((l) => (l.faultFloor !== undefined ? [l.faultFloor] : []));
  return {
    memcpyFreshBytesPerSec: median(memcpy),
    loopbackTcpBytesPerSec: median(tcp),
    ...(bare.length > 0 ? { bareCpuPerGiB: { sender: mid(bare.map((b) => b.sender)), receiver: mid(bare.map((b) => b.receiver)) } } : {}),
    ...(first.loadAverage !== undefined ? { loadAverage: first.loadAverage } : {}),
    samples: { memcpyFreshBytesPerSec: memcpy, loopbackTcpBytesPerSec: tcp, ...(bare.length > 0 ? { bareCpuPerGiB: bare } : {}), ...(floors.length > 0 ? { faultFloor: floors } : {}) },
    ...(floors.length > 0 ? { faultFloor: combineFloors(floors) } : {}),
  };
}

/**
 * A side's CPU per GiB (user + system) as a multiple of the bare pair's: the migration's source
 * against the bare sender, its destination against the bare receiver; null when either is missing.
 */
export function cpuVsBare(side: CpuPerGiB | null, bare: CpuPerGiB | undefined): number | null {
  if (side === null || bare === undefined) return null;
  const b = bare.user + bare.system;
  return b > 0 ? (side.user + side.system) / b : null;
}

/** `row` with its ratios taken against `limits` (the run's median, once every measurement is in). */
export function withLimits(row: MigrationBenchRow, limits: Limits): MigrationBenchRow {
  if (row.error !== null) return row;
  return {
    ...row,
    vsLoopbackTcp: row.bytesPerSec / limits.loopbackTcpBytesPerSec,
    vsMemcpy: row.bytesPerSec / limits.memcpyFreshBytesPerSec,
    sourceCpuVsBare: cpuVsBare(row.sourceCpuPerGiB, limits.bareCpuPerGiB?.sender),
    destCpuVsBare: cpuVsBare(row.destCpuPerGiB, limits.bareCpuPerGiB?.receiver),
  };
}

const LINKS: Record<MigrationBenchRow["link"], LinkShape> = {
  default: DEFAULT_CONFIG.link,
  unlimited: { latencyMs: 0, bandwidthBytesPerSec: 0 },
};

/** One migration row: the demo's default workload, `memoryBytes` of guest, against `limits`. */
export async function benchMigration(memoryBytes: number, strategy: Strategy, link: MigrationBenchRow["link"], limits: Limits, frameStore: FrameStoreChoice = DEFAULT_CONFIG.frameStore): Promise<MigrationBenchRow> {
  const config = makeConfig({ strategy, memoryBytes, link: LINKS[link], frameStore, timeoutMs: 30 * 60_000, runAfterMs: 100 });
  const row: MigrationBenchRow = {
    memoryBytes,
    strategy,
    link,
    frameStore: config.frameStore,
    ok: false,
    totalTimeMs: 0,
    bytesPerSec: 0,
    vsLoopbackTcp: 0,
    vsMemcpy: 0,
    downtimeMs: 0,
    guestDowntimeMs: null,
    faultP50Us: 0,
    faultP99Us: 0,
    receiverBound: false,
    sourceMaxRssBytes: null,
    destMaxRssBytes: null,
    sourceCpuPerGiB: null,
    destCpuPerGiB: null,
    error: null,
  };
  try {
    const r = await runMigration(config);
    row.ok = r.verification.ok;
    row.totalTimeMs = r.totalTimeMs;
    row.bytesPerSec = (r.bytes.sourceToDestination * 1000) / r.totalTimeMs;
    row.vsLoopbackTcp = row.bytesPerSec / limits.loopbackTcpBytesPerSec;
    row.vsMemcpy = row.bytesPerSec / limits.memcpyFreshBytesPerSec;
    row.downtimeMs = r.downtimeMs;
    row.guestDowntimeMs = r.guestDowntimeMs ?? null;
    row.faultP50Us = r.faults.p50Us;
    row.faultP99Us = r.faults.p99Us;
    row.receiverBound = r.transport?.receiverBound ?? false;
    row.sourceMaxRssBytes = r.hostMemory?.sourceMaxRssBytes ?? null;
    row.destMaxRssBytes = r.hostMemory?.destinationMaxRssBytes ?? null;
    row.sourceCpuPerGiB = cpuPerGiB(r.hostCpu?.source, memoryBytes);
    row.destCpuPerGiB = cpuPerGiB(r.hostCpu?.destination, memoryBytes);
    row.sourceCpuVsBare = cpuVsBare(row.sourceCpuPerGiB, limits.bareCpuPerGiB?.sender);
    row.destCpuVsBare = cpuVsBare(row.destCpuPerGiB, limits.bareCpuPerGiB?.receiver);
  } catch (e) {
    row.error = e instanceof Error ? e.message.split("\n")[0]! : String(e);
  }
  return row;
}

/** A row's floor at its own throughput: its p50 / p99 and the row's fault p99 as a multiple of that p99. */
function atRate(faultP99Us: number, f: FaultFloor | undefined): string {
  if (f === undefined) return "-";
  return `${(f.loaded.p50Us / 1000).toFixed(2)} / ${(f.loaded.p99Us / 1000).toFixed(2)} ms, ${(faultP99Us / f.loaded.p99Us).toFixed(1)}x`;
}

/** A ratio as "2.15x", or "-" when unknown. */
function times(x: number | null | undefined): string {
  return x === null || x === undefined ? "-" : `${x.toFixed(2)}x`;
}

export function formatBenchTable(limits: Limits, rows: readonly MigrationBenchRow[], loadAtEnd?: number): string {
  const mb = (b: number): string => `${(b / 1e6).toFixed(0)} MB/s`;
  const load = limits.loadAverage === undefined ? "" : `; load average ${limits.loadAverage.toFixed(1)} at the start${loadAtEnd === undefined ? "" : `, ${loadAtEnd.toFixed(1)} at the end`}`;
  const n = limits.samples?.loopbackTcpBytesPerSec.length ?? 1;
  const range = (xs: readonly number[] | undefined): string => (xs === undefined || xs.length < 2 ? "" : ` (${(Math.min(...xs) / 1e6).toFixed(0)}-${(Math.max(...xs) / 1e6).toFixed(0)})`);
  const flags = rows.some((r) => r.childFlags !== undefined);
  const cpu = (c: CpuPerGiB | null): string => (c === null ? "-" : `${c.user.toFixed(2)} + ${c.system.toFixed(2)}`);
  const bare = limits.bareCpuPerGiB === undefined ? "" : `; the bare pair's CPU s per GiB, user + sys${n > 1 ? " (medians)" : ""}: sender ${cpu(limits.bareCpuPerGiB.sender)}, receiver ${cpu(limits.bareCpuPerGiB.receiver)}`;
  const floor = limits.faultFloor;
  const floors = limits.samples?.faultFloor ?? [];
  const paced = rows.some((r) => r.faultFloorAtRate !== undefined);
  const lines = [
    `limits measured in the same run${n > 1 ? `, median of ${n} measurements interleaved with the migrations (range)` : ""}: memcpy into fresh memory ${mb(limits.memcpyFreshBytesPerSec)}${range(limits.samples?.memcpyFreshBytesPerSec)}, loopback TCP between two Node processes ${mb(limits.loopbackTcpBytesPerSec)}${range(limits.samples?.loopbackTcpBytesPerSec)}${bare}${load}`,
    ...(floor === undefined
      ? []
      : [
          `demand-fault floor${floors.length > 1 ? ` (median of ${floors.length}; p99 beside the push ${floors.map((f) => (f.loaded.p99Us / 1000).toFixed(2)).join(", ")} ms)` : ""}: ${formatFaultFloor(floor)}`,
        ]),
    "",
    `| guest | strategy | link | frame store |${flags ? " child flags |" : ""} total | throughput | vs loopback TCP | downtime (protocol / guest) | fault p50 / p99 | receiver-bound | max RSS source / dest | CPU s per GiB, user + sys: source / dest | CPU vs the bare pair: source / dest |${floor !== undefined ? " fault p99 / floor p99 |" : ""}${paced ? " floor at the row's throughput: p50 / p99, fault p99 / its p99 |" : ""}`,
    `|---|---|---|---|${flags ? "---|" : ""}---|---|---|---|---|---|---|---|---|${floor !== undefined ? "---|" : ""}${paced ? "---|" : ""}`,
  ];
  for (const r of rows) {
    const head = `| ${formatBytes(r.memoryBytes)} | ${r.strategy} | ${r.link} | ${r.frameStore} |${flags ? ` ${r.childFlags || "(none)"} |` : ""}`;
    if (r.error !== null) {
      lines.push(`${head} failed: ${r.error} | | | | | | | | |${floor !== undefined ? " |" : ""}${paced ? " |" : ""}`);
      continue;
    }
    const rss = (b: number | null): string => (b === null ? "-" : formatBytes(b));
    lines.push(
      `${head} ${(r.totalTimeMs / 1000).toFixed(2)} s | ${mb(r.bytesPerSec)} | ${(100 * r.vsLoopbackTcp).toFixed(0)}% | ${r.downtimeMs.toFixed(0)} / ${r.guestDowntimeMs?.toFixed(0) ?? "-"} ms | ${(r.faultP50Us / 1000).toFixed(1)} / ${(r.faultP99Us / 1000).toFixed(1)} ms | ${r.receiverBound ? "yes" : "no"} | ${rss(r.sourceMaxRssBytes)} / ${rss(r.destMaxRssBytes)} | ${cpu(r.sourceCpuPerGiB)} / ${cpu(r.destCpuPerGiB)} | ${times(r.sourceCpuVsBare)} / ${times(r.destCpuVsBare)} |${floor !== undefined ? ` ${(r.faultP99Us / floor.loaded.p99Us).toFixed(1)}x |` : ""}${paced ? ` ${atRate(r.faultP99Us, r.faultFloorAtRate)} |` : ""}`,
    );
  }
  return lines.join("\n");
}

/**
 * One line per configuration (guest, strategy, link, frame store) of rows run several times: how
 * many completed, and the median and range of throughput, its ratio to loopback TCP, and fault
 * p50 and p99. Empty when no configuration ran more than once.
 */
export function formatRepeatSummary(rows: readonly MigrationBenchRow[]): string {
  const groups = new Map<string, MigrationBenchRow[]>();
  for (const r of rows) {
    const key = `${formatBytes(r.memoryBytes)} | ${r.strategy} | ${r.link} | ${r.frameStore}${r.childFlags === undefined ? "" : ` | ${r.childFlags || "(none)"}`}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  if (![...groups.values()].some((g) => g.length > 1)) return "";
  const total = (cs: Array<CpuPerGiB | null>): number[] => cs.filter((c) => c !== null).map((c) => c.user + c.system);
  const ratios = (xs: Array<number | null | undefined>): number[] => xs.filter((x): x is number => typeof x === "number");
  const fmt = (xs: number[], f: (x: number) => string): string => (xs.length === 0 ? "-" : `${f(median(xs))} (${f(Math.min(...xs))}-${f(Math.max(...xs))})`);
  const flags = rows.some((r) => r.childFlags !== undefined);
  const paced = rows.some((r) => r.faultFloorAtRate !== undefined);
  const lines = [
    `| guest | strategy | link | frame store |${flags ? " child flags |" : ""} runs ok | throughput, median (range) | vs loopback TCP | fault p50 | fault p99 | CPU s per GiB, source | CPU s per GiB, dest | source CPU vs the bare sender | dest CPU vs the bare receiver |${paced ? " floor p99 at the row's throughput | fault p99 / that floor p99 |" : ""}`,
    `|---|---|---|---|${flags ? "---|" : ""}---|---|---|---|---|---|---|---|---|${paced ? "---|---|" : ""}`,
  ];
  for (const [key, g] of groups) {
    const ok = g.filter((r) => r.error === null);
    lines.push(
      `| ${key} | ${ok.length} of ${g.length} | ${fmt(
        ok.map((r) => r.bytesPerSec),
        (x) => `${(x / 1e6).toFixed(0)}`,
      )} MB/s | ${fmt(
        ok.map((r) => r.vsLoopbackTcp),
        (x) => `${(100 * x).toFixed(0)}`,
      )} % | ${fmt(
        ok.map((r) => r.faultP50Us),
        (x) => (x / 1000).toFixed(1),
      )} ms | ${fmt(
        ok.map((r) => r.faultP99Us),
        (x) => (x / 1000).toFixed(1),
      )} ms | ${fmt(total(ok.map((r) => r.sourceCpuPerGiB)), (x) => x.toFixed(2))} | ${fmt(total(ok.map((r) => r.destCpuPerGiB)), (x) => x.toFixed(2))} | ${fmt(ratios(ok.map((r) => r.sourceCpuVsBare)), (x) => x.toFixed(2))} | ${fmt(ratios(ok.map((r) => r.destCpuVsBare)), (x) => x.toFixed(2))} |${
        paced
          ? ` ${fmt(
              ok.flatMap((r) => (r.faultFloorAtRate !== undefined ? [r.faultFloorAtRate.loaded.p99Us] : [])),
              (x) => (x / 1000).toFixed(2),
            )} ms | ${fmt(
              ok.flatMap((r) => (r.faultFloorAtRate !== undefined ? [r.faultP99Us / r.faultFloorAtRate.loaded.p99Us] : [])),
              (x) => x.toFixed(1),
            )}x |`
          : ""
      }`,
    );
  }
  return lines.join("\n");
}

async function main(): Promise<void> {
  const arg = (name: string, def: string): string => {
    const i = process.argv.indexOf(name);
    return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : def;
  };
  const sizes = arg("--memory", "256MiB,1GiB").split(",").map(parseSize);
  const strategies = arg("--strategy", STRATEGIES.join(",")).split(",") as Strategy[];
  const links = arg("--link", "default,unlimited").split(",") as Array<MigrationBenchRow["link"]>;
  const stores = arg("--frame-store", DEFAULT_CONFIG.frameStore).split(",") as FrameStoreChoice[];
  const flagSets = process.argv.includes("--child-flags") ? arg("--child-flags", "").split(";").map((f) => f.trim()) : null;
  for (const f of stores) if (!FRAME_STORES.includes(f)) throw new RangeError(`unknown frame store "${f}" (one of ${FRAME_STORES.join(", ")})`);
  const repeat = Number(arg("--repeat", "1"));
  if (!Number.isInteger(repeat) || repeat < 1) throw new RangeError(`--repeat takes a positive whole number, not "${arg("--repeat", "")}"`);
  const withFloor = !process.argv.includes("--no-floor");
  const measured: Limits[] = [];
  const cpuSum = (c: CpuPerGiB | undefined): string => (c === undefined ? "-" : (c.user + c.system).toFixed(2));
  const pairs = Number(arg("--loopback-pairs", "3"));
  if (!Number.isInteger(pairs) || pairs < 1) throw new RangeError(`--loopback-pairs takes a positive whole number, not "${arg("--loopback-pairs", "")}"`);
  const sample = async (): Promise<Limits> => {
    const now: Limits[] = [];
    for (let i = 0; i < pairs; i++) {
      const l = await measureLimits();
      // The demand-fault floor once per sample, with its first loopback pair.
      if (withFloor && i === 0) l.faultFloor = await measureFaultFloor();
      measured.push(l);
      now.push(l);
      console.error(`limits: memcpy ${(l.memcpyFreshBytesPerSec / 1e6).toFixed(0)} MB/s, loopback TCP ${(l.loopbackTcpBytesPerSec / 1e6).toFixed(0)} MB/s (bare pair CPU s per GiB: sender ${cpuSum(l.bareCpuPerGiB?.sender)}, receiver ${cpuSum(l.bareCpuPerGiB?.receiver)}), load average ${l.loadAverage?.toFixed(1)}`);
      if (l.faultFloor !== undefined) console.error(`demand-fault floor: ${formatFaultFloor(l.faultFloor)}`);
    }
    return combineLimits(now);
  };
  let rows: MigrationBenchRow[] = [];
  for (let rep = 0; rep < repeat; rep++)
    for (const size of sizes)
      for (const link of links)
        for (const strategy of strategies)
          for (const store of stores)
            for (const childFlags of flagSets ?? [null]) {
              const before = await sample();
              if (childFlags !== null) process.env["LM_CHILD_FLAGS"] = childFlags;
              const row = await benchMigration(size, strategy, link, before, store);
              if (childFlags !== null) row.childFlags = childFlags;
              // The floor is the unlimited link's: on a shaped link the link's own latency is the bound.
              if (withFloor && row.error === null && link === "unlimited") row.faultFloorAtRate = await measureFaultFloor({ bulkBytesPerSec: row.bytesPerSec });
              rows.push(row);
              console.error(`${formatBytes(size)} ${strategy} ${link} ${store}${childFlags !== null ? ` [${childFlags}]` : ""}: ${row.error ?? `${(row.bytesPerSec / 1e6).toFixed(0)} MB/s, fault p50 / p99 ${(row.faultP50Us / 1000).toFixed(1)} / ${(row.faultP99Us / 1000).toFixed(1)} ms`}${row.faultFloorAtRate !== undefined ? `; floor at that throughput p50 / p99 ${(row.faultFloorAtRate.loaded.p50Us / 1000).toFixed(2)} / ${(row.faultFloorAtRate.loaded.p99Us / 1000).toFixed(2)} ms` : ""}`);
          }
  const loadAtEnd = loadavg()[0]!;
  await sample();
  const limits = combineLimits(measured);
  rows = rows.map((r) => withLimits(r, limits));
  console.log(formatBenchTable(limits, rows, loadAtEnd));
  const summary = formatRepeatSummary(rows);
  if (summary !== "") console.log(`\n${summary}`);
  const json = process.argv.indexOf("--json");
  if (json >= 0) await writeFile(process.argv[json + 1]!, JSON.stringify({ limits, loadAtEnd, rows }, null, 2) + "\n");
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((e: unknown) => {
    console.error(e);
    process.exitCode = 1;
  });
}
