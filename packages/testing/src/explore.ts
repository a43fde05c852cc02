/**
 * explore(): run a scenario (guest threads plus the handler under test) under many seeds, the
 * seed deciding the kernel's free choices: where threads are preempted (before each page access,
 * after a userfault wake, before each of the handler's userfaultfd syscalls), which preempted
 * thread resumes first, and the order in which one wake releases several threads. The run of a
 * seed is reproducible: same seed, same scenario, same run, event for event.
 *
 * A seed fails when the scenario throws, a guest does not end as expected (a thread still asleep
 * on a userfault when nothing can run any more is a lost fault), a check throws, the kernel's
 * invariants break, or (opt-in) a fault was resolved twice. The failure report has the seed, the
 * interleaving as a readable trace, and a one-line reproduction.
 *
 * Seeds can run in worker threads (`workers`, for a scenario made with scenarioRef(): a closure
 * cannot cross threads) and a run can take one shard of the seeds (`shard: "k/n"`, as
 * `vitest --shard`): the result (seeds run, failures, the failing seed, the report and its
 * reproduction line) is the same whatever the number of workers, and a seed fails the same way
 * whichever shard runs it.
 */
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { Kernel, ALL_RELEASES, type KernelOptions, type AnyRelease, type Process, setErrnoStackTraces, type SpawnOptions, type Thread } from "@uffd/kernel";
import { expect } from "vitest";
import { analyzeFaults, explainDuplicate, explainLost, type FaultResolutionOptions } from "./faults.ts";
import { type GuestOptions, GuestThread } from "./guest.ts";
import { type InjectOptions, type InjectionRule, type Injector, injectFaults } from "./inject.ts";
import { instrument } from "./instrument.ts";
import { type Decisions, ExplorePolicy, probabilityFor } from "./policy.ts";
import { formatTrace, type Recorder, recorderOf, type TraceEvent } from "./trace.ts";

/** The world one seed runs in: build the guest and the handler here. */
export class World {
  /** The seed this world runs with. */
  readonly seed: number;
  /** The kernel of this seed. */
  readonly kernel: Kernel;
  /** The trace of this run. */
  readonly recorder: Recorder;
  /** The guests, in the order they were created. */
  readonly guests: GuestThread[] = [];
  /** The fault injectors installed with inject(). */
  readonly injectors: Injector[] = [];
  /** The end-of-run checks, in order. */
  readonly checks: Array<() => unknown> = [];

  constructor(seed: number, kernel: Kernel) {
    this.seed = seed;
    this.kernel = kernel;
    this.recorder = recorderOf(kernel);
  }

  /** kernel.spawn(), instrumented (its userfaultfd syscalls are traced and are scheduling points). */
  spawn(options: SpawnOptions = {}): Process {
    const p = this.kernel.spawn(options);
    instrument(p);
    return p;
  }

  /** A new thread of `proc`, named (names key the trace and the replay). */
  thread(proc: Process, name: string): Thread {
    instrument(proc);
    return proc.spawnThread(name);
  }

  /** Runs `body` on a thread (a process means its main thread) as a guest explore() judges at the end. */
  guest(on: Thread | Process, body: (t: Thread) => unknown, options: GuestOptions = {}): GuestThread {
    const thread = "mainThread" in on ? on.mainThread : on;
    const g = new GuestThread(thread, body, options);
    this.guests.push(g);
    return g;
  }

  /** Fault injection on the process that makes the resolving ioctls (see inject.ts). */
  inject(proc: Process, rules: readonly InjectionRule[], options: InjectOptions = {}): Injector {
    const inj = injectFaults(proc, rules, options);
    this.injectors.push(inj);
    return inj;
  }

  /** An assertion to run once nothing can run any more (inspect state; don't access memory through threads). */
  check(fn: () => unknown): void {
    this.checks.push(fn);
  }

  /** The trace so far. */
  get events(): readonly TraceEvent[] {
    return this.recorder.events;
  }
}

/** A scenario: builds one world (processes, the handler under test, guests, checks). explore() calls it once per seed, on a fresh kernel. */
export type Scenario = (w: World) => unknown;

/** How one seed runs (runSeed(), replay(), and each seed of explore()). */
export interface RunOptions {
  /** Probability of preemption at each scheduling point, or "varied" (chosen per seed among 0, 0.1, 0.25, 0.5). Default "varied". */
  preemption?: number | "varied";
  /** Other kernel options (memory, swap, sysctl). */
  kernel?: Omit<KernelOptions, "seed" | "preemption">;
  /** Check kernel.checkInvariants() at the end. Default true. */
  invariants?: boolean;
  /** Also require every fault to be resolved exactly once (faults.ts). Default false. */
  resolvedOnce?: boolean | FaultResolutionOptions;
}

/** explore()'s options: which seeds, where they run, and how failures are reported. */
export interface ExploreOptions extends RunOptions {
  /** How many seeds (1..n), or which. Default 100. The env var UFFD_EXPLORE_SEED runs just that seed. */
  seeds?: number | readonly number[];
  /**
   * Run only shard k of n of the seeds ("k/n", 1 <= k <= n: the k-th of n contiguous slices, as
   * `vitest --shard`), so a CI matrix splits the seeds between machines. Default: the env var
   * UFFD_EXPLORE_SHARD, else all seeds. Ignored when UFFD_EXPLORE_SEED names one seed.
   */
  shard?: string;
  /**
   * Worker threads that run seeds in parallel. Default: the core count
   * (os.availableParallelism()), at most one per 50 seeds, for a scenario made with
   * scenarioRef(); 1 for any other scenario (a closure cannot be sent to a thread). The result
   * is the same whatever the count: a failing seed found in a worker is run again here, so
   * `failures` hold full RunResults.
   */
  workers?: number;
  /**
   * Whether an ErrnoError raised in an explored run captures a stack trace. Default false:
   * handlers catch expected errnos (EEXIST, EAGAIN) by the thousand and a trace is most of an
   * error's cost. Reports never print them; turn them on to debug a seed.
   */
  errnoStacks?: boolean;
  /**
   * Run the whole exploration once per kernel release (KernelOptions.release), in this order:
   * failures and reproduction lines name the release (UFFD_EXPLORE_RELEASE=<release> runs just
   * that one). Default: one run on options.kernel's release (6.18 unless set).
   */
  releases?: readonly AnyRelease[];
  /** Stop at the first failing seed. Default true. */
  stopOnFailure?: boolean;
  /** Throw an ExploreError with the report when a seed fails. Default true. */
  throwOnFailure?: boolean;
  /** Trace lines in the report. Default 80. */
  traceLines?: number;
  /** The test's name for the reproduction line. Default: vitest's current test. */
  name?: string;
}

/** What one seed did. */
export interface RunResult {
  /** The seed. */
  readonly seed: number;
  /** The kernel release the seed ran on (KernelOptions.release). */
  readonly release: AnyRelease;
  /** The preemption probability the seed ran with. */
  readonly probability: number;
  /** Whether the run passed. */
  readonly ok: boolean;
  /** Why it failed, one line each (empty when ok). */
  readonly problems: readonly string[];
  /** The guests and how each ended. */
  readonly guests: readonly GuestThread[];
  /** The trace, in virtual-time order. */
  readonly events: readonly TraceEvent[];
  /** Every scheduling decision, by actor (what replay() follows). */
  readonly decisions: Decisions;
  /** The kernel and processes as the run left them. */
  readonly world: World;
  /** Problems, interleaving and the guests' ends as text. */
  format(options?: { limit?: number; times?: boolean }): string;
  /** The recorded run, for JSON.stringify and replay(). */
  toJSON(): RecordedRun;
}

/** A run as JSON: enough to read it, replay it and diff it. */
export interface RecordedRun {
  /** The format tag, "uffd-testing/run@1". */
  readonly format: "uffd-testing/run@1";
  /** The seed. */
  readonly seed: number;
  /** The preemption probability. */
  readonly probability: number;
  /** Whether the run passed. */
  readonly ok: boolean;
  /** Why it failed, one line each. */
  readonly problems: readonly string[];
  /** label -> how it ended */
  readonly guests: Readonly<Record<string, string>>;
  /** Every scheduling decision, by actor. */
  readonly decisions: Decisions;
  /** The trace. */
  readonly events: readonly TraceEvent[];
}

const errText = (e: unknown): string => (e instanceof Error ? `${e.name}: ${e.message}` : String(e));

/** Runs the scenario once under `seed` (following `replayOf` where it can). */
export async function runSeed(scenario: Scenario, seed: number, options: RunOptions = {}, replayOf: Decisions | null = null): Promise<RunResult> {
  const probability = probabilityFor(seed, options.preemption ?? "varied");
  const policy = new ExplorePolicy(seed, probability, replayOf);
  const kernel = new Kernel({ ...options.kernel, seed, preemption: policy });
  const world = new World(seed, kernel);
  policy.label = (tid) => world.recorder.label(tid);
  const problems: string[] = [];
  try {
    await scenario(world);
  } catch (e) {
    problems.push(`the scenario threw ${errText(e)}`);
  }
  try {
    await kernel.idle();
  } catch (e) {
    problems.push(`the run never settled: ${errText(e)}`);
  }
  await judge(world, options, problems);
  return makeResult(world, probability, policy.decisions, problems);
}

async function judge(world: World, options: RunOptions, problems: string[]): Promise<void> {
  const events = world.recorder.events;
  // Only a guest that did not end as expected, or resolvedOnce, needs the fault analysis.
  let analysis: ReturnType<typeof analyzeFaults> | null = null;
  for (const g of world.guests) {
    if (g.asExpected) continue;
    analysis ??= faultAnalysis(events, options);
    const lost = analysis.lost.find((l) => l.who === g.label);
    const want = g.expectation === "complete" ? "complete" : g.expectation === "any" ? "end" : `get ${g.expectation}`;
    problems.push(`${g.label} did not ${want}: ${lost !== undefined ? explainLost(lost) : g.describe()}`);
  }
  for (const check of world.checks) {
    try {
      await check();
    } catch (e) {
      problems.push(`check failed: ${errText(e)}`);
    }
  }
  if (options.invariants !== false) {
    try {
      world.kernel.checkInvariants();
    } catch (e) {
      problems.push(`kernel invariants: ${errText(e)}`);
    }
  }
  if (options.resolvedOnce !== undefined && options.resolvedOnce !== false) {
    const guestLabels = new Set(world.guests.map((g) => g.label));
    const faults = (analysis ??= faultAnalysis(events, options));
    for (const l of faults.lost) if (!guestLabels.has(l.who)) problems.push(`lost fault: ${l.who} ${explainLost(l)}`);
    for (const d of faults.duplicates) problems.push(explainDuplicate(d));
  }
}

function faultAnalysis(events: readonly TraceEvent[], options: RunOptions): ReturnType<typeof analyzeFaults> {
  return analyzeFaults(events, typeof options.resolvedOnce === "object" ? options.resolvedOnce : {});
}

function makeResult(world: World, probability: number, decisions: Decisions, problems: string[]): RunResult {
  const events = world.recorder.events;
  const seed = world.seed;
  const guests = world.guests;
  // format() and toJSON() as methods: a passing seed's result is built and dropped thousands of
  // times per exploration, and a method is the cheapest function to create.
  return {
    seed,
    release: world.kernel.release,
    probability,
    ok: problems.length === 0,
    problems,
    guests,
    events,
    decisions,
    world,
    format(o = {}) {
      return [
        ...problems.map((p) => `  ${p}`),
        `interleaving (seed ${seed}, preemption ${probability}, ${events.length} events):`,
        formatTrace(events, o),
        `end: ${guests.map((g) => g.describe()).join("; ") || "no guests"}`,
      ].join("\n");
    },
    toJSON() {
      return {
        format: "uffd-testing/run@1",
        seed,
        probability,
        ok: problems.length === 0,
        problems: [...problems],
        guests: Object.fromEntries(guests.map((g) => [g.label, g.describe().slice(g.label.length + 2)])),
        decisions,
        events: [...events],
      };
    },
  };
}

// --- explore ---------------------------------------------------------------------------------------

/** What explore() found: the seeds it ran and the runs that failed. */
export interface ExploreResult {
  /** Whether every seed passed. */
  readonly ok: boolean;
  /** How many seeds ran (fewer than asked when stopOnFailure stopped early). */
  readonly seedsRun: number;
  /** The failing runs, in seed order. */
  readonly failures: readonly RunResult[];
  /** The first failing run, or null. */
  readonly firstFailure: RunResult | null;
  /** The failure report (seed, problems, interleaving, reproduction), or a one-line summary. */
  report(): string;
}

/** Thrown by explore() when a seed fails (unless throwOnFailure is false); the message is the report. */
export class ExploreError extends Error {
  /** The exploration's result (failing runs included). */
  readonly result: ExploreResult;
  constructor(result: ExploreResult) {
    super(result.report());
    this.name = "ExploreError";
    this.result = result;
  }
}

/** The env var that makes explore() run just one seed. */
export const SEED_ENV = "UFFD_EXPLORE_SEED";

function seedList(options: ExploreOptions): { seeds: readonly number[]; shard: string | null } {
  const env = typeof process !== "undefined" ? process.env[SEED_ENV] : undefined;
  if (env !== undefined && env !== "") return { seeds: [Number(env)], shard: null };
  const s = options.seeds ?? 100;
  const all = typeof s !== "number" ? s : Array.from({ length: s }, (_, i) => i + 1);
  const shard = options.shard ?? (typeof process !== "undefined" ? process.env[SHARD_ENV] : undefined);
  if (shard === undefined || shard === "") return { seeds: all, shard: null };
  const [k, n] = parseShard(shard);
  return { seeds: all.slice(Math.floor(((k - 1) * all.length) / n), Math.floor((k * all.length) / n)), shard: `${k}/${n}` };
}

/** The env var that makes explore() run one shard of its seeds ("k/n"). */
export const SHARD_ENV = "UFFD_EXPLORE_SHARD";

/** "k/n" with integers 1 <= k <= n, as vitest's --shard takes it. */
export function parseShard(shard: string): [number, number] {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(shard);
  const k = m === null ? Number.NaN : Number(m[1]);
  const n = m === null ? Number.NaN : Number(m[2]);
  if (!(Number.isSafeInteger(k) && Number.isSafeInteger(n) && k >= 1 && n >= 1 && k <= n)) {
    throw new RangeError(`explore: shard must be "k/n" with 1 <= k <= n, got ${JSON.stringify(shard)}`);
  }
  return [k, n];
}

/** Seeds per worker below which another worker does not pay for its start-up. */
const SEEDS_PER_WORKER = 50;

/** Runs the scenario under each seed; by default stops and throws at the first failure. */
export async function explore(scenario: Scenario, options: ExploreOptions = {}): Promise<ExploreResult> {
  const releases = releaseList(options);
  if (releases === null) return exploreRelease(scenario, options, null);
  // One exploration per release, in the order given; the first failing release stops the rest
  // unless stopOnFailure is false. The report names the release of every failure.
  const stopOnFailure = options.stopOnFailure !== false;
  let seedsRun = 0;
  const failures: RunResult[] = [];
  const reports: string[] = [];
  for (const release of releases) {
    const r = await exploreRelease(scenario, { ...options, kernel: { ...options.kernel, release }, throwOnFailure: false }, release);
    seedsRun += r.seedsRun;
    failures.push(...r.failures);
    if (!r.ok) {
      reports.push(r.report());
      if (stopOnFailure) break;
    }
  }
  const result: ExploreResult = {
    ok: failures.length === 0,
    seedsRun,
    failures,
    firstFailure: failures[0] ?? null,
    report: () => (reports.length === 0 ? `explore: ${seedsRun} seeds passed on releases ${releases.join(", ")}` : reports.join("\n\n")),
  };
  if (!result.ok && options.throwOnFailure !== false) throw new ExploreError(result);
  return result;
}

/** The env var that makes explore({ releases }) run just that release, and describeReleases() declare just that one. */
export const RELEASE_ENV = "UFFD_EXPLORE_RELEASE";

function releaseList(options: ExploreOptions): readonly AnyRelease[] | null {
  const list = options.releases;
  if (list === undefined) return null;
  const env = typeof process !== "undefined" ? process.env[RELEASE_ENV] : undefined;
  const chosen = env !== undefined && env !== "" ? [env] : list;
  if (!Array.isArray(chosen) || chosen.length === 0) throw new TypeError("explore: releases must be a non-empty array of kernel releases");
  for (const r of chosen) {
    if (!(ALL_RELEASES as readonly unknown[]).includes(r)) {
      throw new RangeError(`explore: unknown kernel release ${JSON.stringify(r)}; the profiles are ${ALL_RELEASES.join(", ")}`);
    }
  }
  return chosen as readonly AnyRelease[];
}

async function exploreRelease(scenario: Scenario, options: ExploreOptions, release: AnyRelease | null): Promise<ExploreResult> {
  const { seeds, shard } = seedList(options);
  const ref = refOf(scenario);
  const wanted = options.workers ?? (ref === null ? 1 : Math.min(availableParallelism(), Math.ceil(seeds.length / SEEDS_PER_WORKER)));
  if (!(Number.isSafeInteger(wanted) && wanted >= 1)) throw new RangeError(`explore: workers must be an integer >= 1, got ${wanted}`);
  if (wanted > 1 && ref === null) throw new TypeError("explore: workers > 1 needs a scenario made with scenarioRef() (a closure cannot be sent to a worker thread)");
  const stopOnFailure = options.stopOnFailure !== false;
  const stacks = setErrnoStackTraces(options.errnoStacks === true);
  let outcome: { seedsRun: number; failures: RunResult[] };
  try {
    outcome = wanted > 1 && seeds.length > 1 ? await exploreInWorkers(ref!, scenario, seeds, options, Math.min(wanted, seeds.length), stopOnFailure) : await exploreHere(scenario, seeds, options, stopOnFailure);
  } finally {
    setErrnoStackTraces(stacks);
  }
  const { seedsRun, failures } = outcome;
  const repro = reproduction(options.name, release);
  const result: ExploreResult = {
    ok: failures.length === 0,
    seedsRun,
    failures,
    firstFailure: failures[0] ?? null,
    report: () => report(seeds, seedsRun, failures, options.traceLines ?? 80, repro, shard, release),
  };
  if (!result.ok && options.throwOnFailure !== false) throw new ExploreError(result);
  return result;
}

/** The seeds one after the other on this thread; a passing seed's host memory goes back to the pool at once. */
async function exploreHere(scenario: Scenario, seeds: readonly number[], options: ExploreOptions, stopOnFailure: boolean): Promise<{ seedsRun: number; failures: RunResult[] }> {
  const failures: RunResult[] = [];
  let seedsRun = 0;
  for (const seed of seeds) {
    const r = await runSeed(scenario, seed, options);
    seedsRun++;
    if (!r.ok) {
      failures.push(r);
      if (stopOnFailure) break;
    } else r.world.kernel.core.mem.releaseToPool();
  }
  return { seedsRun, failures };
}

// --- scenarios that cross threads ------------------------------------------------------------------

/** Where a portable scenario comes from: a module's export (a scenario, or a factory called with `args`). */
export interface ScenarioRef {
  /** The module's URL (import.meta.url, or new URL("./x.ts", import.meta.url).href). */
  readonly module: string;
  /** The export's name. */
  readonly export: string;
  /** Arguments (structured-cloneable) to call the export with; absent: the export is the scenario. */
  readonly args?: readonly unknown[];
}

const REF = Symbol("uffd-testing.scenarioRef");

type Portable = Scenario & { [REF]: ScenarioRef };

/**
 * A scenario that explore() can run in worker threads: the export `exportName` of the module at
 * `module` (a scenario, or with `args` a factory returning one). Each thread imports the module
 * itself, so it must have no side effects beyond defining things (keep scenarios in a module
 * of their own, not in a test file). On this thread the module is imported on first use.
 */
export function scenarioRef(module: string | URL, exportName: string, ...args: unknown[]): Scenario {
  const ref: ScenarioRef = { module: String(module), export: exportName, ...(args.length > 0 ? { args } : {}) };
  let loaded: Promise<Scenario> | null = null;
  const run = (w: World): Promise<unknown> => {
    loaded ??= loadScenario(ref);
    return loaded.then((s) => s(w));
  };
  return Object.assign(run, { [REF]: ref });
}

function refOf(s: Scenario): ScenarioRef | null {
  return (s as Partial<Portable>)[REF] ?? null;
}

/** Imports a ScenarioRef's module and makes its scenario. */
export async function loadScenario(ref: ScenarioRef): Promise<Scenario> {
  const mod = (await import(ref.module)) as Record<string, unknown>;
  const exp = mod[ref.export];
  if (typeof exp !== "function") throw new TypeError(`scenarioRef: ${ref.module} has no function export ${ref.export}`);
  const s = ref.args === undefined ? exp : (exp as (...a: unknown[]) => unknown)(...ref.args);
  if (typeof s !== "function") throw new TypeError(`scenarioRef: ${ref.export}(...) of ${ref.module} did not return a scenario`);
  return s as Scenario;
}

/** What a worker is told: the scenario, the options a run needs, and its seeds come in batches. */
export interface WorkerSetup {
  readonly ref: ScenarioRef;
  readonly options: RunOptions & { errnoStacks?: boolean };
}

/** Main -> worker: run these seeds (one batch), or stop. */
export type ToWorker = { readonly batch: number; readonly seeds: readonly number[] } | { readonly stop: true };
/** Worker -> main: which seeds of a batch failed (by index in the batch), or a crash. */
export type FromWorker = { readonly batch: number; readonly failed: readonly number[] } | { readonly error: string };

const WORKER_URL = new URL("./explore-worker.mjs", import.meta.url);

/** Seeds per batch: small enough to balance the load and stop early, large enough to be cheap. */
const BATCH = 16;

/**
 * The seeds across `count` worker threads in batches, each worker taking the next batch when it
 * is done. Batch results are put in seed order; the outcome is what exploreHere() would give:
 * with stopOnFailure, the first failing seed in order once every seed before it has passed.
 * Failing seeds run again on this thread for their full RunResult (a seed replays exactly).
 */
async function exploreInWorkers(ref: ScenarioRef, scenario: Scenario, seeds: readonly number[], options: ExploreOptions, count: number, stopOnFailure: boolean): Promise<{ seedsRun: number; failures: RunResult[] }> {
  const setup: WorkerSetup = {
    ref,
    options: Object.fromEntries(
      (["preemption", "kernel", "invariants", "resolvedOnce", "errnoStacks"] as const).filter((k) => options[k] !== undefined).map((k) => [k, options[k]]),
    ) as WorkerSetup["options"],
  };
  const batches = Math.ceil(seeds.length / BATCH);
  const done = new Uint8Array(batches); // 1 when its result is in
  const failedIdx: number[] = [];
  let next = 0;
  let firstFailed = Number.POSITIVE_INFINITY; // index into seeds
  const workers: Worker[] = [];
  /** Every batch up to the first failure (or all) has its result. */
  const complete = (): boolean => {
    const last = stopOnFailure && firstFailed !== Number.POSITIVE_INFINITY ? Math.floor(firstFailed / BATCH) : batches - 1;
    for (let b = 0; b <= last; b++) if (done[b] === 0) return false;
    return true;
  };
  try {
    await new Promise<void>((resolve, reject) => {
      const feed = (w: Worker): void => {
        const stopAt = stopOnFailure ? Math.floor(Math.min(firstFailed, seeds.length - 1) / BATCH) : batches - 1;
        if (next > stopAt) {
          w.postMessage({ stop: true } satisfies ToWorker);
          return;
        }
        const b = next++;
        w.postMessage({ batch: b, seeds: seeds.slice(b * BATCH, (b + 1) * BATCH) } satisfies ToWorker);
      };
      for (let i = 0; i < count; i++) {
        const w = new Worker(WORKER_URL, { workerData: setup });
        workers.push(w);
        w.on("message", (m: FromWorker) => {
          if ("error" in m) return reject(new Error(`explore: a worker failed: ${m.error}`));
          done[m.batch] = 1;
          for (const i of m.failed) {
            const idx = m.batch * BATCH + i;
            failedIdx.push(idx);
            firstFailed = Math.min(firstFailed, idx);
          }
          if (complete()) resolve();
          else feed(w);
        });
        w.on("error", reject);
        w.on("exit", (code) => {
          if (code !== 0) reject(new Error(`explore: a worker exited with code ${code}`));
        });
        feed(w);
      }
    });
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
  failedIdx.sort((a, b) => a - b);
  const keep = stopOnFailure ? failedIdx.slice(0, 1) : failedIdx;
  const failures: RunResult[] = [];
  for (const idx of keep) {
    const r = await runSeed(scenario, seeds[idx]!, options);
    if (r.ok) throw new Error(`explore: seed ${seeds[idx]} failed in a worker thread but passed here: the scenario does not replay from its seed (does it keep state between runs?)`);
    failures.push(r);
  }
  return { seedsRun: stopOnFailure && keep.length > 0 ? keep[0]! + 1 : seeds.length, failures };
}

function report(seeds: readonly number[], seedsRun: number, failures: readonly RunResult[], lines: number, repro: (seed: number) => string, shard: string | null, release: AnyRelease | null): string {
  const f = failures[0];
  const of = shard === null ? "" : `, shard ${shard}`;
  const range = seeds.length > 1 ? ` (${seeds.length} seeds ${seeds[0]}..${seeds[seeds.length - 1]}${of})` : shard === null ? "" : ` (shard ${shard})`;
  const on = release === null ? "" : ` on release ${release}`;
  if (f === undefined) return `explore: ${seedsRun} seeds passed${on}${range}`;
  const more = failures.length > 11 ? `, ... (${failures.length} failing in all)` : "";
  const others = failures.length > 1 ? `; also failing: seeds ${failures.slice(1, 11).map((x) => x.seed).join(", ")}${more}` : "";
  return [
    `explore: seed ${f.seed}${on} failed after ${seeds.indexOf(f.seed)} passing seeds${range}${others}`,
    f.format({ limit: lines }),
    `reproduce: ${repro(f.seed)}`,
  ].join("\n");
}

/** The one-line reproduction: the env var and the vitest command for the current test. */
function reproduction(name: string | undefined, release: AnyRelease | null = null): (seed: number) => string {
  const rel = release === null ? "" : `${RELEASE_ENV}=${release} `;
  let file: string | undefined;
  let test = name;
  try {
    const st = expect.getState();
    if (st.testPath !== undefined) file = st.testPath.startsWith(process.cwd() + "/") ? st.testPath.slice(process.cwd().length + 1) : st.testPath;
    test ??= st.currentTestName?.split(" > ").pop();
  } catch {
    // Not inside a vitest test.
  }
  return (seed) => {
    if (file === undefined) {
      return release === null
        ? `runSeed(scenario, ${seed})  (or ${SEED_ENV}=${seed} around the explore() call)`
        : `runSeed(scenario, ${seed}, { kernel: { release: "${release}" } })  (or ${rel}${SEED_ENV}=${seed} around the explore() call)`;
    }
    const t = test === undefined ? "" : ` -t "${test.replace(/[\\^$.*+?()[\]{}|"`]/g, "\\$&")}"`;
    return `${rel}${SEED_ENV}=${seed} npx vitest run ${file}${t}`;
  };
}
