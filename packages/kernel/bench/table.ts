/**
 * The bench's figures, table and target lines: pure functions of what a run measured.
 *
 * Every figure of a row is measured in several fresh processes (the simulator's and the real
 * kernel's alternating); a row keeps each process's figure and shows their median and spread.
 * Each target is checked on medians of the same run, and its line says how many processes
 * reached it; a missed target says what bounds it (the analysis is in docs/benchmarks.md).
 */
import type { ScaleResult } from "./faults.ts";
import type { HostMemory } from "./memory.ts";

/** One figure measured in `values.length` processes. */
export interface Agg {
  /** Each process's figure, in the order they ran. */
  values: number[];
  median: number;
  min: number;
  max: number;
  /** Share of the wall time the simulator's processes had a CPU while timed (mean), if measured. */
  cpuShare?: number;
}

/** Median, min and max of per-process figures (the median of an even count is the mean of the middle two). */
export function aggregate(values: readonly number[], cpuShares: readonly number[] = []): Agg | null {
  const v = values.filter((x) => Number.isFinite(x));
  if (v.length === 0) return null;
  const s = [...v].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  const agg: Agg = { values: [...v], median, min: s[0]!, max: s[s.length - 1]! };
  if (cpuShares.length > 0) agg.cpuShare = cpuShares.reduce((a, b) => a + b, 0) / cpuShares.length;
  return agg;
}

/** The spread of a figure across processes: (max - min) / median, as "±x%" of half of it. */
export function spread(a: Agg | null): string {
  if (a === null || a.values.length < 2 || a.median === 0) return "";
  return `±${Math.round((50 * (a.max - a.min)) / a.median)}%`;
}

export interface Row {
  id: string;
  operation: string;
  unit: string;
  /** The real kernel (uffd-bench.c), or a known constant (bytes per page). */
  real: Agg | null;
  /** The simulator through the raw uAPI (or its own primitive). */
  raw: Agg | null;
  /** The simulator through @uffd/sdk. */
  sdk: Agg | null;
  note: string;
  scale?: ScaleResult;
  memory?: HostMemory;
}

/** A constant as a one-value figure (the real kernel's bytes per page). */
export const constant = (v: number): Agg => ({ values: [v], median: v, min: v, max: v });

const num = (v: number | undefined, unit: string): string => {
  if (v === undefined) return "-";
  if (unit === "B/page") return v.toFixed(v < 100 ? 1 : 0);
  if (unit === "ns") return v < 100 ? v.toFixed(1) : Math.round(v).toLocaleString("en-US");
  return Math.round(v).toLocaleString("en-US");
};

const ratio = (a: Agg | null, b: Agg | null): string => (a === null || b === null || b.median === 0 ? "-" : `${(a.median / b.median).toFixed(2)}x`);

/** The table: medians, their spreads across processes, the ratios of medians, and the notes. */
export function formatTable(rows: readonly Row[]): string {
  const lines: string[][] = [["operation", "unit", "real kernel", "", "sim raw", "", "sim SDK", "", "raw/real", "SDK/real", "note"]];
  for (const r of rows) {
    lines.push([r.operation, r.unit, num(r.real?.median, r.unit), spread(r.real), num(r.raw?.median, r.unit), spread(r.raw), num(r.sdk?.median, r.unit), spread(r.sdk), ratio(r.raw, r.real), ratio(r.sdk, r.real), r.note]);
  }
  const widths = lines[0]!.map((_, c) => Math.max(...lines.map((l) => l[c]!.length)));
  const right = new Set([2, 3, 4, 5, 6, 7, 8, 9]);
  const fmt = (l: string[]): string => l.map((cell, c) => (right.has(c) ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join("  ").trimEnd();
  return [fmt(lines[0]!), fmt(widths.map((w) => "-".repeat(w))), ...lines.slice(1).map(fmt)].join("\n");
}

// --- host micro-costs -------------------------------------------------------------------------

/**
 * Rough bare-metal figures for a recent x86-64 server (no hypervisor), to say whether this host's
 * real-kernel column can be read as a bare-metal kernel's: a getppid() round trip into the
 * kernel, a one-byte pipe round trip between two threads on one CPU (two context switches), and
 * a first write to a fresh anonymous page (fault entry, page allocation, zeroing, pte).
 * Orders of magnitude, not measurements of this run.
 */
export const BARE_METAL_NS = { nullSyscall: 100, pipePingPong: 2500, anonFault: 500 } as const;
/** A host micro-cost this many times the bare-metal figure is "far" from it. */
export const FAR_FACTOR = 2;

export interface MicroCost {
  id: keyof typeof BARE_METAL_NS;
  label: string;
  /** ns per operation, per process. */
  ns: Agg | null;
}

export function formatMicroCosts(costs: readonly MicroCost[]): string[] {
  const out: string[] = [];
  let far = false;
  for (const c of costs) {
    const ref = BARE_METAL_NS[c.id];
    if (c.ns === null) {
      out.push(`  ${c.label.padEnd(38)} not measured`);
      continue;
    }
    const x = c.ns.median / ref;
    far ||= x >= FAR_FACTOR;
    const mark = x >= FAR_FACTOR ? `  FAR: ${x.toFixed(1)}x bare metal` : `  ${x.toFixed(1)}x bare metal`;
    out.push(`  ${c.label.padEnd(38)} ${num(c.ns.median, "ns").padStart(8)} ns ${spread(c.ns).padStart(5)}   (bare metal ~${num(ref, "ns").padStart(5)} ns)${mark}`);
  }
  out.push(
    far
      ? `  => this host is far from bare metal: real-kernel figures that take faults, syscalls or context switches are slowed by it, and the sim/real ratios flatter the simulator accordingly`
      : `  => this host's micro-costs are close to bare metal: the real-kernel column can be read as a bare-metal kernel's`,
  );
  return out;
}

// --- targets --------------------------------------------------------------------------------------

export interface Target {
  id: string;
  status: "PASS" | "MISS" | "N/A";
  line: string;
}

/** What bounds each target when a run misses it (see docs/benchmarks.md, "What bounds the numbers"). */
export const BOUNDS: Record<string, string> = {
  raw: "bounded by a JS round trip's promise hops (the faulting access, the handler's read and ioctl) plus the 4 KiB copy, on one core",
  rawOneByOne: "bounded by a JS round trip's promise hops (the faulting access, the handler's read and ioctl) plus the 4 KiB copy, on one core",
  sdkOneByOne: "bounded by the SDK's work per fault on top of the raw round trip (its Fault object, the in-flight table, metrics, one promise per blocking read)",
  sdkFast: "bounded by the work left per fault on one core: the fault and its retry, UFFDIO_COPY with its 4 KiB copy, the promise hops, and the SDK's bookkeeping",
  copy2m: "bounded by the copies into the destination frames (one per contiguous run of frames, 1 MiB at most) and the per-page pte, rmap and flag updates",
  memory: "bounded by the per-frame typed arrays (26 B per frame, grown by a quarter at a time), the 4-byte ptes in 2 KiB tables and the pooled 1 MiB chunks",
  fork: "bounded by the per-pte loop in JS (refcount, mapcount and flags per page, in separate typed arrays)",
  explore: "bounded by the work per seed (a kernel, two threads, the handler, the trace and the judging) and by the macrotask hops that find when a seed has settled",
};

const fmt = (v: number): string => Math.round(v).toLocaleString("en-US");

/** "3 of 5 processes" that reached `ok`, or "" for a single process. */
function howMany(a: Agg, ok: (v: number) => boolean): string {
  if (a.values.length < 2) return "";
  return `; ${a.values.filter(ok).length} of ${a.values.length} processes reached it`;
}

/** When the simulator's processes waited for a CPU, the line says so: the figure is bounded by the machine. */
function cpuNote(a: Agg | null): string {
  if (a?.cpuShare === undefined || a.cpuShare >= 0.9) return "";
  return `; the simulator's processes had a CPU ${Math.round(100 * a.cpuShare)}% of the timed wall time (other work on the machine)`;
}

/** A target's line; a MISS ends with what bounds it (`bound`, else the target's usual bound). */
function target(id: string, ok: boolean | null, line: string, extra = "", bound: string = BOUNDS[id] ?? ""): Target {
  if (ok === null) return { id, status: "N/A", line };
  return { id, status: ok ? "PASS" : "MISS", line: ok ? `${line}${extra}` : `${line}${extra}; ${bound}` };
}

export interface TargetInputs {
  rows: readonly Row[];
  memory: { resident: number; zero: number; untouched: number };
  /** explore() seeds per second (wall) and per CPU second, per process. */
  explore: { wall: Agg; cpu: Agg } | null;
}

/**
 * One line per target (the performance targets in docs/benchmarks.md and the hot-path targets), decided on medians across processes.
 * A comparison with the real kernel is N/A when this run has no real-kernel figure.
 */
export function checkTargets({ rows, memory, explore }: TargetInputs): Target[] {
  const byId = (id: string): Row | undefined => rows.find((r) => r.id === id);
  const out: Target[] = [];
  const rt = byId("rt-missing+copy");
  const raw = rt?.raw ?? null;
  const realRt = rt?.real ?? null;
  out.push(
    raw === null || realRt === null
      ? target("raw", null, "missing+copy round trip, raw uAPI >= 2x the real kernel's same-CPU round trip: no real-kernel figure in this run")
      : target(
          "raw",
          raw.median >= 2 * realRt.median,
          `missing+copy round trip, raw uAPI, 1 thread: ${fmt(raw.median)}/s = ${(raw.median / realRt.median).toFixed(2)}x the real kernel's same-CPU ${fmt(realRt.median)}/s (target >= 2x)`,
          howMany(raw, (v) => v >= 2 * realRt.median) + cpuNote(raw),
        ),
  );
  const perSec = (id: string, label: string, a: Agg | null, min: number, what: string, bound?: string): void => {
    out.push(a === null ? target(id, null, `${label} >= ${fmt(min)}/s: not measured`) : target(id, a.median >= min, `${label}: ${fmt(a.median)}/s ${what}(target >= ${fmt(min)}/s)`, howMany(a, (v) => v >= min) + cpuNote(a), bound));
  };
  // Where a round trip goes: its 4 KiB copy (measured alone, the memcpyFrames4k row) and the rest.
  const frames = byId("memcpyFrames4k")?.raw ?? null;
  const split = (a: Agg | null, rest: string): string | undefined => {
    if (a === null || frames === null) return undefined;
    const us = 1e6 / a.median;
    const copyUs = 1e6 / frames.median;
    return `bounded on one core by ${us.toFixed(2)} µs per round trip: the 4 KiB copy into the scene's frames alone takes ${copyUs.toFixed(2)} µs on this machine (the memcpy-into-frames row), the other ${Math.max(0, us - copyUs).toFixed(2)} µs are ${rest}`;
  };
  const fast = byId("rt-fast")?.sdk ?? null;
  perSec("rawOneByOne", "missing+copy round trip, raw uAPI, one by one", raw, 900_000, "on one core ", split(raw, "the fault and its retry, the read, the ioctl's page work and their promise hops"));
  perSec("sdkOneByOne", "missing+copy round trip, SDK, one by one", rt?.sdk ?? null, 600_000, "on one core ", split(rt?.sdk ?? null, "the raw round trip's work plus the SDK's per fault (its Fault object, the in-flight table, metrics)"));
  perSec("sdkFast", "missing+copy round trip, SDK fastest path (32 threads, <=64 msgs per read)", fast, 1_000_000, "on one core ", split(fast, "the fault and its retry, the ioctl's page work, the SDK's per-fault bookkeeping and the thread's promise hop (reads are shared by a batch)"));
  const copy = byId("uffdCopy2m")?.raw ?? null;
  const stream = byId("memcpyStream2m")?.real ?? null;
  const gib = (copiesPerSec: number): string => `${((copiesPerSec * 2) / 1024).toFixed(1)} GiB/s`;
  out.push(
    copy === null || stream === null
      ? target("copy2m", null, "UFFDIO_COPY 2 MiB >= half a streaming memcpy of 2 MiB: no real-kernel memcpy figure in this run")
      : target(
          "copy2m",
          copy.median >= stream.median / 2,
          `UFFDIO_COPY 2 MiB into fresh memory: ${gib(copy.median)} = ${(copy.median / stream.median).toFixed(2)}x a streaming memcpy of 2 MiB into resident memory (${gib(stream.median)}, real kernel) (target >= 0.5x)`,
          howMany(copy, (v) => v >= stream.median / 2) + cpuNote(copy),
        ),
  );
  // Zero-page-backed pages may cost their pte (Linux: 8 bytes), untouched ones nothing.
  const m = memory;
  out.push(
    target(
      "memory",
      m.resident <= 4096 + 128 && m.untouched < 1 && m.zero <= 8,
      `host memory: ${m.resident.toFixed(0)} B per resident page (target <= 4,224); untouched ${m.untouched.toFixed(1)} B per page (target < 1), zero-page-backed ${m.zero.toFixed(1)} B per page (target <= 8, the pte)`,
    ),
  );
  const fork = byId("fork64m");
  out.push(
    fork?.raw == null || fork.real === null
      ? target("fork", null, "fork of 64 MiB within 2x of the real kernel: no real-kernel figure in this run")
      : target(
          "fork",
          fork.raw.median >= fork.real.median / 2,
          `fork(), 64 MiB: ${fmt(fork.raw.median)}/s = ${(fork.raw.median / fork.real.median).toFixed(2)}x the real kernel's ${fmt(fork.real.median)}/s (target >= 0.5x)`,
          howMany(fork.raw, (v) => v >= fork.real!.median / 2) + cpuNote(fork.raw),
        ),
  );
  if (explore === null) out.push(target("explore", null, "explore(), 2 threads, 4 pages >= 2,000 seeds/s: not measured"));
  else {
    const { wall, cpu } = explore;
    const ok = wall.median >= 2000;
    const machine = cpu.median >= 2000 ? `bounded by other work on the machine: the exploration itself runs at ${fmt(cpu.median)} seeds per second of CPU time` : undefined;
    out.push(target("explore", ok, `explore(), 2 threads, 4 pages, 1 worker: ${fmt(wall.median)} seeds/s (target >= 2,000/s); ${fmt(cpu.median)} seeds per CPU second`, howMany(wall, (v) => v >= 2000), machine));
  }
  return out;
}
