/**
 * Record and replay. A run's trace (RunResult.toJSON(), a RecordedRun) is plain JSON: the seed,
 * the preemption probability, every scheduling decision by actor, and the events with their
 * virtual timestamps. replay() runs a scenario (typically with a changed handler) under the same
 * seed, following the recorded decisions by actor and position, and falling back to the seed
 * where the new run reaches a point the recorded one never did. diffRuns() compares two runs
 * line by line, without times and (by default) without the scheduling events, and the guests'
 * ends.
 */
import { type RecordedRun, type RunOptions, type RunResult, runSeed, type Scenario } from "./explore.ts";
import { describe, type TraceEvent } from "./trace.ts";

/** Parses a recorded run (JSON text or the object), checking its format tag. */
export function parseRun(input: string | RecordedRun): RecordedRun {
  const r = (typeof input === "string" ? JSON.parse(input) : input) as RecordedRun;
  if (r?.format !== "uffd-testing/run@1") throw new TypeError(`not a recorded run (format ${String(r?.format)})`);
  return r;
}

/** Runs `scenario` along a recorded run's scheduling decisions. */
export function replay(scenario: Scenario, recorded: string | RecordedRun | RunResult, options: Omit<RunOptions, "preemption"> = {}): Promise<RunResult> {
  const r = typeof recorded === "object" && "world" in recorded ? recorded.toJSON() : parseRun(recorded as string | RecordedRun);
  return runSeed(scenario, r.seed, { ...options, preemption: r.probability }, r.decisions);
}

/** Options of diffRuns(). */
export interface DiffOptions {
  /** Include preempt/resume events. Default false. */
  scheduling?: boolean;
  /** Unchanged lines shown around each change. Default 2. */
  context?: number;
}

/** The difference of two runs, line by line. */
export interface RunDiff {
  /** Whether the runs match. */
  readonly equal: boolean;
  /** Lines only in the second run. */
  readonly added: number;
  /** Lines only in the first run. */
  readonly removed: number;
  /** Unified-style: "  " same, "- " only in the first run, "+ " only in the second; "..." skips. */
  readonly text: string;
  /** The diff text. */
  toString(): string;
}

function lines(run: RunResult | RecordedRun, scheduling: boolean): string[] {
  const events: readonly TraceEvent[] = run.events;
  const out = events.filter((e) => scheduling || (e.kind !== "preempt" && e.kind !== "resume")).map((e) => `${e.who}  ${describe(e)}`);
  const guests = "world" in run ? run.toJSON().guests : run.guests;
  for (const [label, end] of Object.entries(guests)) out.push(`end  ${label}: ${end}`);
  for (const p of run.problems) out.push(`problem  ${p}`);
  return out;
}

/** Line diff of two runs (the recorded one first). */
export function diffRuns(a: RunResult | RecordedRun, b: RunResult | RecordedRun, options: DiffOptions = {}): RunDiff {
  const scheduling = options.scheduling ?? false;
  const ops = lcsDiff(lines(a, scheduling), lines(b, scheduling));
  const added = ops.filter((o) => o[0] === "+").length;
  const removed = ops.filter((o) => o[0] === "-").length;
  const text = render(ops, options.context ?? 2);
  return { equal: added === 0 && removed === 0, added, removed, text, toString: () => text };
}

type Op = [" " | "-" | "+", string];

/** Longest-common-subsequence diff after trimming the common prefix and suffix. */
function lcsDiff(x: readonly string[], y: readonly string[]): Op[] {
  let pre = 0;
  while (pre < x.length && pre < y.length && x[pre] === y[pre]) pre++;
  let suf = 0;
  while (suf < x.length - pre && suf < y.length - pre && x[x.length - 1 - suf] === y[y.length - 1 - suf]) suf++;
  const xs = x.slice(pre, x.length - suf);
  const ys = y.slice(pre, y.length - suf);
  const n = xs.length;
  const m = ys.length;
  const table = new Uint32Array((n + 1) * (m + 1));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      table[i * (m + 1) + j] = xs[i] === ys[j] ? table[(i + 1) * (m + 1) + j + 1]! + 1 : Math.max(table[(i + 1) * (m + 1) + j]!, table[i * (m + 1) + j + 1]!);
    }
  }
  const ops: Op[] = x.slice(0, pre).map((l) => [" ", l]);
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && xs[i] === ys[j]) {
      ops.push([" ", xs[i++]!]);
      j++;
    } else if (j < m && (i === n || table[i * (m + 1) + j + 1]! >= table[(i + 1) * (m + 1) + j]!)) ops.push(["+", ys[j++]!]);
    else ops.push(["-", xs[i++]!]);
  }
  for (const l of x.slice(x.length - suf)) ops.push([" ", l]);
  return ops;
}

function render(ops: readonly Op[], context: number): string {
  const keep = ops.map(() => false);
  ops.forEach(([k], i) => {
    if (k === " ") return;
    for (let d = -context; d <= context; d++) if (i + d >= 0 && i + d < ops.length) keep[i + d] = true;
  });
  const out: string[] = [];
  let skipped = false;
  ops.forEach(([k, l], i) => {
    if (!keep[i]) {
      if (!skipped) out.push("  ...");
      skipped = true;
      return;
    }
    skipped = false;
    out.push(`${k} ${l}`);
  });
  return out.join("\n");
}
