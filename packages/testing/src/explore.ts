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
 */
import { Kernel, type KernelOptions, type Process, type SpawnOptions, type Thread } from "@uffd/kernel";
import { expect } from "vitest";
import { analyzeFaults, explainDuplicate, explainLost, type FaultResolutionOptions } from "./faults.ts";
import { type GuestOptions, GuestThread } from "./guest.ts";
import { type InjectOptions, type InjectionRule, type Injector, injectFaults } from "./inject.ts";
import { instrument } from "./instrument.ts";
import { type Decisions, ExplorePolicy, probabilityFor } from "./policy.ts";
import { formatTrace, type Recorder, recorderOf, type TraceEvent } from "./trace.ts";

/** The world one seed runs in: build the guest and the handler here. */
export class World {
  readonly seed: number;
  readonly kernel: Kernel;
  readonly recorder: Recorder;
  readonly guests: GuestThread[] = [];
  readonly injectors: Injector[] = [];
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

  get events(): readonly TraceEvent[] {
    return this.recorder.events;
  }
}

export type Scenario = (w: World) => unknown;

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

export interface ExploreOptions extends RunOptions {
  /** How many seeds (1..n), or which. Default 100. The env var UFFD_EXPLORE_SEED runs just that seed. */
  seeds?: number | readonly number[];
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
  readonly seed: number;
  readonly probability: number;
  readonly ok: boolean;
  readonly problems: readonly string[];
  readonly guests: readonly GuestThread[];
  readonly events: readonly TraceEvent[];
  readonly decisions: Decisions;
  readonly world: World;
  /** Problems, interleaving and the guests' ends as text. */
  format(options?: { limit?: number; times?: boolean }): string;
  /** The recorded run, for JSON.stringify and replay(). */
  toJSON(): RecordedRun;
}

/** A run as JSON: enough to read it, replay it and diff it. */
export interface RecordedRun {
  readonly format: "uffd-testing/run@1";
  readonly seed: number;
  readonly probability: number;
  readonly ok: boolean;
  readonly problems: readonly string[];
  /** label -> how it ended */
  readonly guests: Readonly<Record<string, string>>;
  readonly decisions: Decisions;
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
  const faults = analyzeFaults(events, typeof options.resolvedOnce === "object" ? options.resolvedOnce : {});
  for (const g of world.guests) {
    if (g.asExpected) continue;
    const lost = faults.lost.find((l) => l.who === g.label);
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
    for (const l of faults.lost) if (!guestLabels.has(l.who)) problems.push(`lost fault: ${l.who} ${explainLost(l)}`);
    for (const d of faults.duplicates) problems.push(explainDuplicate(d));
  }
}

function makeResult(world: World, probability: number, decisions: Decisions, problems: string[]): RunResult {
  const events = world.recorder.events;
  const seed = world.seed;
  const guests = world.guests;
  const ends = (): string => guests.map((g) => g.describe()).join("; ");
  return {
    seed,
    probability,
    ok: problems.length === 0,
    problems,
    guests,
    events,
    decisions,
    world,
    format: (o = {}) =>
      [
        ...problems.map((p) => `  ${p}`),
        `interleaving (seed ${seed}, preemption ${probability}, ${events.length} events):`,
        formatTrace(events, o),
        `end: ${ends() || "no guests"}`,
      ].join("\n"),
    toJSON: () => ({
      format: "uffd-testing/run@1",
      seed,
      probability,
      ok: problems.length === 0,
      problems: [...problems],
      guests: Object.fromEntries(guests.map((g) => [g.label, g.describe().slice(g.label.length + 2)])),
      decisions,
      events: [...events],
    }),
  };
}

// --- explore ---------------------------------------------------------------------------------------

export interface ExploreResult {
  readonly ok: boolean;
  readonly seedsRun: number;
  readonly failures: readonly RunResult[];
  readonly firstFailure: RunResult | null;
  /** The failure report (seed, problems, interleaving, reproduction), or a one-line summary. */
  report(): string;
}

export class ExploreError extends Error {
  readonly result: ExploreResult;
  constructor(result: ExploreResult) {
    super(result.report());
    this.name = "ExploreError";
    this.result = result;
  }
}

/** The env var that makes explore() run just one seed. */
export const SEED_ENV = "UFFD_EXPLORE_SEED";

function seedList(options: ExploreOptions): readonly number[] {
  const env = typeof process !== "undefined" ? process.env[SEED_ENV] : undefined;
  if (env !== undefined && env !== "") return [Number(env)];
  const s = options.seeds ?? 100;
  if (typeof s !== "number") return s;
  return Array.from({ length: s }, (_, i) => i + 1);
}

/** Runs the scenario under each seed; by default stops and throws at the first failure. */
export async function explore(scenario: Scenario, options: ExploreOptions = {}): Promise<ExploreResult> {
  const seeds = seedList(options);
  const failures: RunResult[] = [];
  let seedsRun = 0;
  for (const seed of seeds) {
    const r = await runSeed(scenario, seed, options);
    seedsRun++;
    if (!r.ok) {
      failures.push(r);
      if (options.stopOnFailure !== false) break;
    }
  }
  const repro = reproduction(options.name);
  const result: ExploreResult = {
    ok: failures.length === 0,
    seedsRun,
    failures,
    firstFailure: failures[0] ?? null,
    report: () => report(seeds, seedsRun, failures, options.traceLines ?? 80, repro),
  };
  if (!result.ok && options.throwOnFailure !== false) throw new ExploreError(result);
  return result;
}

function report(seeds: readonly number[], seedsRun: number, failures: readonly RunResult[], lines: number, repro: (seed: number) => string): string {
  const f = failures[0];
  const range = seeds.length > 1 ? ` (${seeds.length} seeds ${seeds[0]}..${seeds[seeds.length - 1]})` : "";
  if (f === undefined) return `explore: ${seedsRun} seeds passed${range}`;
  const more = failures.length > 11 ? `, ... (${failures.length} failing in all)` : "";
  const others = failures.length > 1 ? `; also failing: seeds ${failures.slice(1, 11).map((x) => x.seed).join(", ")}${more}` : "";
  return [
    `explore: seed ${f.seed} failed after ${seeds.indexOf(f.seed)} passing seeds${range}${others}`,
    f.format({ limit: lines }),
    `reproduce: ${repro(f.seed)}`,
  ].join("\n");
}

/** The one-line reproduction: the env var and the vitest command for the current test. */
function reproduction(name: string | undefined): (seed: number) => string {
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
    if (file === undefined) return `runSeed(scenario, ${seed})  (or ${SEED_ENV}=${seed} around the explore() call)`;
    const t = test === undefined ? "" : ` -t "${test.replace(/[\\^$.*+?()[\]{}|"`]/g, "\\$&")}"`;
    return `${SEED_ENV}=${seed} npx vitest run ${file}${t}`;
  };
}
