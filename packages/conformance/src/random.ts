/**
 * The random differential run: one generated scenario per seed, each divergence shrunk by
 * fast-check to a minimal scenario, divergences grouped by class, known ones counted apart.
 */
import fc from "fast-check";
import type { Divergence } from "./compare.ts";
import type { CheckResult, Conformance } from "./conform.ts";
import { linesToScenario, scenarioArb, SWAP_LINE } from "./generate.ts";
import { NoSwapError } from "./native.ts";
import { explain } from "./known.ts";
import { formatScenario, PIN_VERBS, type Scenario } from "./scenario.ts";

export interface RandomRunReport {
  command: string;
  host: { release: string; quirks: string[]; cpu: number };
  seedStart: number;
  seeds: number;
  steps: number;
  agree: number;
  quirk: number;
  diverge: number;
  elapsedMs: number;
  /** Divergences carrying the signature of a known divergence whose fix is pending (known.ts), by id. */
  known: Record<string, number>;
  classes: Array<{ key: string; count: number; firstSeed: number; scenario: string; divergence: Divergence }>;
}

/** A divergence's class: the verb of the step and what differed, without operands. */
export function divergenceClass(d: Divergence): string {
  const verb = d.text.replace(/^@\S+\s+/, "").split(" ")[0];
  const what = d.what.replace(/step \d+/g, "step N").replace(/page \d+/g, "page");
  return `${verb}: ${what}`;
}

/** The scenario up to and including the diverging step (later lines cannot matter). */
export function minimalText(s: Scenario, d: Divergence): string {
  return formatScenario(s.steps.slice(0, d.index + 1));
}

export function hostQuirks(c: Conformance): string[] {
  const q: string[] = [];
  if (c.host.pvmNoZeroPage || !c.host.readFaultMapsZeroPage) q.push("pvm_no_zero_page=1 (anonymous read faults map private pages)");
  q.push(`runner pinned to CPU ${c.host.cpu} (MADV_PAGEOUT and LRU-add batches)`);
  if (c.host.ioUringUnavailable !== null) q.push(`no io_uring (${c.host.ioUringUnavailable}): pin steps left out`);
  if (c.swapAvailable) q.push("scenarios with `# swap: zram` (a third of them) run with the runner's own 64 MiB zram device, the others with no swap");
  else q.push("no zram: scenarios run without swap (MADV_PAGEOUT cannot swap anonymous or shmem pages)");
  return q;
}

/** Runs `seeds` random scenarios from `seedStart`; each divergence is shrunk by fast-check. */
export async function randomRun(c: Conformance, seedStart: number, seeds: number, steps: number, onProgress?: (done: number) => void): Promise<Omit<RandomRunReport, "command">> {
  const t0 = performance.now();
  const classes = new Map<string, RandomRunReport["classes"][number]>();
  let agree = 0;
  let quirk = 0;
  let diverge = 0;
  const known: Record<string, number> = {};
  for (let k0 = 0; k0 < seeds; k0++) {
    const seed = seedStart + k0;
    let last: { result: CheckResult; lines: string[] } | null = null;
    let firstStatus: string | null = null;
    const run = await fc.check(
      fc.asyncProperty(scenarioArb(steps), async (lines) => {
        // Without io_uring on the host, pin steps are left out; without zram, swap (hostQuirks() says so).
        const kept = (): string[] =>
          lines.filter((l) => (c.host.ioUringUnavailable === null || !PIN_VERBS.has(l.replace(/^@\S+\s+/, "").split(" ")[0] as string)) && (c.swapAvailable || l !== SWAP_LINE));
        let result: CheckResult;
        try {
          result = await c.check(linesToScenario(kept()));
        } catch (e) {
          if (!(e instanceof NoSwapError)) throw e;
          result = await c.check(linesToScenario(kept()));
        }
        firstStatus ??= result.comparison.status;
        if (result.comparison.status === "diverge") {
          last = { result, lines };
          return false;
        }
        return true;
      }),
      { seed, numRuns: 1, endOnFailure: false },
    );
    if (!run.failed) {
      if (firstStatus === "quirk") quirk++;
      else agree++;
    } else if (last === null) {
      // The property threw (a harness or simulation error, not a comparison): never silently dropped.
      diverge++;
      const err = run.errorInstance;
      const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
      const key = `error: ${message.split("\n")[0]}`;
      const prev = classes.get(key);
      const text = run.counterexample === null ? "" : formatScenario(linesToScenario(run.counterexample[0] as string[]).steps);
      const d: Divergence = { index: 0, text: "", what: "error", native: message, sim: "" };
      if (prev === undefined) classes.set(key, { key, count: 1, firstSeed: seed, scenario: text, divergence: d });
      else prev.count++;
    } else {
      const { result } = last as { result: CheckResult };
      const d = result.comparison.divergence as Divergence;
      const k = explain(d, result.scenario);
      if (k !== undefined) {
        known[k.id] = (known[k.id] ?? 0) + 1;
        onProgress?.(k0 + 1);
        continue;
      }
      diverge++;
      const key = divergenceClass(d);
      const prev = classes.get(key);
      if (prev === undefined) classes.set(key, { key, count: 1, firstSeed: seed, scenario: minimalText(result.scenario, d), divergence: d });
      else prev.count++;
    }
    onProgress?.(k0 + 1);
  }
  return {
    host: { release: c.host.release, quirks: hostQuirks(c), cpu: c.host.cpu },
    seedStart,
    seeds,
    steps,
    agree,
    quirk,
    diverge,
    known,
    elapsedMs: Math.round(performance.now() - t0),
    classes: [...classes.values()].sort((a, b) => b.count - a.count),
  };
}

export function printTable(report: Omit<RandomRunReport, "command">): void {
  console.log(`host ${report.host.release}; quirks: ${report.host.quirks.join("; ")}`);
  console.log(`seeds ${report.seedStart}..${report.seedStart + report.seeds - 1} (${report.seeds} scenarios, at most ${report.steps} random steps): agree ${report.agree}, quirk ${report.quirk}, known ${Object.values(report.known).reduce((a, b) => a + b, 0)}${Object.keys(report.known).length ? ` (${Object.entries(report.known).map(([k, v]) => `${k} ${v}`).join(", ")})` : ""}, unexplained divergences ${report.diverge}, ${(report.elapsedMs / 1000).toFixed(1)} s`);
  if (report.classes.length === 0) return;
  console.log("");
  console.log("| count | first seed | class | native | simulation |");
  console.log("|---:|---:|---|---|---|");
  for (const c of report.classes) console.log(`| ${c.count} | ${c.firstSeed} | ${c.key} | ${c.divergence.native} | ${c.divergence.sim} |`);
  for (const c of report.classes) {
    console.log(`\n## ${c.key} (seed ${c.firstSeed}; replay: npm run conform -- --replay <file with the lines below>)\n${c.scenario}`);
  }
}

