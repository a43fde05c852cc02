/**
 * Exploration speed: seeds per second for the small scenario of the brief (two threads, four
 * pages, one handler: the prefetching handler of test/handlers.ts, fixed, so every seed runs to
 * the end). Exported for `npm run bench`; `npx tsx packages/testing/bench/explore-bench.ts`
 * runs it alone.
 */
import "../src/setup.ts"; // the scenario checks memory with toHaveMemory
import { explore } from "../src/index.ts";
import { prefetchScenario } from "../test/handlers.ts";

export interface ExploreBenchResult {
  seeds: number;
  ms: number;
  seedsPerSec: number;
}

/** Explores `seeds` seeds of the two-thread, four-page scenario with the fixed handler. */
export async function exploreSeedsPerSecond(seeds = 1000): Promise<ExploreBenchResult> {
  await explore(prefetchScenario(true), { seeds: 20 }); // warm-up
  const t0 = performance.now();
  await explore(prefetchScenario(true), { seeds });
  const ms = performance.now() - t0;
  return { seeds, ms, seedsPerSec: (seeds * 1000) / ms };
}

/** The line `npm run bench` prints. */
export function formatExploreBench(r: ExploreBenchResult): string {
  return `  explore (2 threads, 4 pages, 1 handler)  ${Math.round(r.seedsPerSec).toLocaleString("en-US").padStart(8)} seeds/s  (${r.seeds} seeds in ${r.ms.toFixed(0)} ms)`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(formatExploreBench(await exploreSeedsPerSecond(Number(process.argv[2] ?? 1000))));
}
