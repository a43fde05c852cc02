/**
 * Exploration speed: seeds per second for the small scenario of the brief (two threads, four
 * pages, one handler: the prefetching handler of test/handlers.ts, fixed, so every seed runs to
 * the end), in wall time and in CPU time (the process's user + system time, every thread: on a
 * machine other work shares, CPU time is what the exploration itself costs). Exported for
 * `npm run bench`;
 *
 *   npx tsx packages/testing/bench/explore-bench.ts [seeds] [workers]
 *
 * runs it alone (workers default 1: this thread; more go through scenarioRef()).
 */
import "../src/setup.ts"; // the kit's matchers, as a test file has them
import { explore, scenarioRef } from "../src/index.ts";
import { prefetchScenario } from "../test/handlers.ts";

export interface ExploreBenchResult {
  seeds: number;
  workers: number;
  ms: number;
  cpuMs: number;
  seedsPerSec: number;
  cpuSeedsPerSec: number;
}

/** Seeds explored, untimed, before the timed ones. */
export const EXPLORE_WARMUP_SEEDS = 3000;

/** Explores `seeds` seeds of the two-thread, four-page scenario with the fixed handler. */
export async function exploreSeedsPerSecond(seeds = 1000, workers = 1): Promise<ExploreBenchResult> {
  const scenario = workers > 1 ? scenarioRef(new URL("../test/handlers.ts", import.meta.url), "prefetchScenario", true) : prefetchScenario(true);
  // Warm-up: JIT tiers, the chunk pool and V8's heap growing to its working size. A fresh process
  // runs its first seeds slower for a few thousand seeds (on a host with 14 us first-touch faults,
  // 2026-12-08: 745 seeds/s for the first 500, 2,485 for the next 3,000, about 5,000 after), so
  // the rate measured is the sustained one that a long exploration sees.
  await explore(prefetchScenario(true), { seeds: EXPLORE_WARMUP_SEEDS, workers: 1 });
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const r = await explore(scenario, { seeds, workers });
  const ms = performance.now() - t0;
  const c = process.cpuUsage(c0);
  if (r.seedsRun !== seeds) throw new Error(`explore ran ${r.seedsRun} seeds of ${seeds}`);
  const cpuMs = (c.user + c.system) / 1000;
  return { seeds, workers, ms, cpuMs, seedsPerSec: (seeds * 1000) / ms, cpuSeedsPerSec: (seeds * 1000) / cpuMs };
}

/** One line: wall and CPU rates. */
export function formatExploreBench(r: ExploreBenchResult): string {
  const n = (v: number): string => Math.round(v).toLocaleString("en-US");
  return `explore (2 threads, 4 pages, 1 handler), ${r.workers} worker${r.workers > 1 ? "s" : ""}: ${n(r.seedsPerSec)} seeds/s wall, ${n(r.cpuSeedsPerSec)} seeds/s of CPU time (${r.seeds} seeds in ${r.ms.toFixed(0)} ms, ${r.cpuMs.toFixed(0)} ms CPU)`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(formatExploreBench(await exploreSeedsPerSecond(Number(process.argv[2] ?? 1000), Number(process.argv[3] ?? 1))));
}
