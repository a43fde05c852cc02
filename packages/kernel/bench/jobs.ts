/**
 * Every measurement of the bench as a job, and the child process that runs one.
 *
 * Each job runs in a fresh Node process (forked with the parent's loader flags, so it works
 * under tsx): a JIT keeps type feedback, and a row measured after other rows inherits their
 * polymorphic call sites (a missing+copy round trip after the zeropage, wp and minor ones runs
 * about 10% slower, the SDK's more). A fresh process per job gives each row its steady state,
 * independent of the order, as uffd-bench.c's rows are on the real kernel.
 */
import { fork, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { faultRate, type FaultKind, pagemapRate, scaleRun, type ScaleResult } from "./faults.ts";
import { getGc, memcpyFramesRate, memcpyRate, memcpyStreamRate, type Rate } from "./measure.ts";
import { type HostMemory, memoryPerPage, type MemoryState } from "./memory.ts";
import { type Op, opRate } from "./ops.ts";
import { isSdkOp, loadSdk, sdkOpRate, sdkRoundTripRate } from "./sdk.ts";
import { type RoundTrip, roundTripRate, type RoundTripShape } from "./uffd.ts";

export type Job =
  | { kind: "memcpy"; bytes: number; ops: number }
  | { kind: "memcpyStream"; ops: number }
  | { kind: "memcpyFrames"; pages: number }
  | { kind: "pagemap"; format: "objects" | "raw"; pages: number }
  | { kind: "explore"; seeds: number; workers: number }
  | { kind: "fault"; fault: FaultKind; pages: number }
  | { kind: "roundTrip"; via: "raw" | "sdk"; trip: RoundTrip; shape: RoundTripShape; pages: number }
  | { kind: "op"; via: "raw" | "sdk"; op: Op }
  | { kind: "memory"; state: MemoryState; mib: number }
  | { kind: "scale"; mib: number };

export interface JobSettings {
  quick: boolean;
  runs: number;
  warmup: number;
}

/** explore() of the testing kit's two-thread, four-page scenario: wall and CPU time. */
export interface ExploreFigures {
  seeds: number;
  workers: number;
  ms: number;
  /** CPU time of the whole process (every thread), user + system. */
  cpuMs: number;
  seedsPerSec: number;
  cpuSeedsPerSec: number;
}

export type JobResult = { rate: Rate } | { memory: HostMemory } | { scale: ScaleResult } | { explore: ExploreFigures } | { error: string };

/** Runs one job in this process. */
export async function runJob(job: Job, s: JobSettings): Promise<JobResult> {
  switch (job.kind) {
    case "memcpy":
      return { rate: await memcpyRate(job.bytes, job.ops, s.runs, s.warmup) };
    case "memcpyStream":
      return { rate: await memcpyStreamRate(job.ops, s.runs, s.warmup) };
    case "memcpyFrames":
      return { rate: await memcpyFramesRate(job.pages, s.runs, s.warmup) };
    case "pagemap":
      return { rate: await pagemapRate(job.format, job.pages, s.runs, s.warmup) };
    case "explore":
      return { explore: await exploreFigures(job.seeds, job.workers) };
    case "fault":
      return { rate: await faultRate(job.fault, job.pages, s.runs, s.warmup) };
    case "roundTrip": {
      if (job.via === "raw") return { rate: await roundTripRate(job.trip, job.shape, job.pages, s.runs, s.warmup) };
      const sdk = await loadSdk();
      if (typeof sdk === "string") return { error: sdk };
      return { rate: await sdkRoundTripRate(sdk, job.trip, job.shape, job.pages, s.runs, s.warmup) };
    }
    case "op": {
      // Forks are few and cheap per run: take more runs, as uffd-bench.c does.
      const runs = job.op.startsWith("fork") && !s.quick ? 2 * s.runs - 1 : s.runs;
      if (job.via === "raw") return { rate: await opRate(job.op, s.quick, runs, s.warmup) };
      const sdk = await loadSdk();
      if (typeof sdk === "string") return { error: sdk };
      if (!isSdkOp(job.op)) return { error: `${job.op} has no SDK operation` };
      return { rate: await sdkOpRate(sdk, job.op, s.quick, runs, s.warmup) };
    }
    case "memory":
      return { memory: await memoryPerPage(job.state, job.mib, getGc()) };
    case "scale":
      return { scale: await scaleRun(job.mib, getGc()) };
  }
}

/** The testing kit's exploration bench (packages/testing/bench), loaded when there is one. */
async function exploreFigures(seeds: number, workers: number): Promise<ExploreFigures> {
  interface ExploreBench {
    exploreSeedsPerSecond(seeds: number, workers?: number): Promise<{ seeds: number; workers: number; ms: number; cpuMs: number }>;
  }
  const m = (await import(new URL("../../testing/bench/explore-bench.ts", import.meta.url).href)) as ExploreBench;
  const r = await m.exploreSeedsPerSecond(seeds, workers);
  return { ...r, seedsPerSec: (r.seeds * 1000) / r.ms, cpuSeedsPerSec: (r.seeds * 1000) / r.cpuMs };
}

const SELF = fileURLToPath(import.meta.url);

/**
 * Runs one job in a fresh child process; a crash or a throw comes back as { error }. With `cpu`
 * the child is bound to that CPU (taskset), as uffd-bench.c's processes are.
 */
export function runJobInChild(job: Job, s: JobSettings, cpu?: number): Promise<JobResult> {
  return new Promise((resolve) => {
    const args = [...process.execArgv, SELF, "--job", JSON.stringify({ job, settings: s })];
    const stdio: ["ignore", "inherit", "inherit", "ipc"] = ["ignore", "inherit", "inherit", "ipc"];
    const child =
      cpu === undefined
        ? fork(SELF, ["--job", JSON.stringify({ job, settings: s })], { execArgv: process.execArgv, stdio })
        : spawn("taskset", ["-c", String(cpu), process.execPath, ...args], { stdio });
    let result: JobResult | null = null;
    child.on("message", (m) => {
      result = m as JobResult;
    });
    child.on("error", (e) => resolve({ error: e.message }));
    child.on("exit", (code, signal) => resolve(result ?? { error: `bench child exited with ${signal ?? code}` }));
  });
}

if (process.argv[2] === "--job" && process.send !== undefined) {
  const { job, settings } = JSON.parse(process.argv[3] as string) as { job: Job; settings: JobSettings };
  let out: JobResult;
  try {
    out = await runJob(job, settings);
  } catch (e) {
    out = { error: e instanceof Error ? (e.stack ?? e.message) : String(e) };
  }
  process.send(out, () => process.disconnect());
}
