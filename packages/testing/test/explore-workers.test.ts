/**
 * explore() across worker threads and shards: the same seeds give the same result, failing seed,
 * report and reproduction line whatever the number of workers; shards split the seeds into
 * contiguous slices as `vitest --shard` does; bad arguments are refused with a clear error.
 */
import { afterEach, describe, expect, it } from "vitest";
import { explore, type ExploreResult, parseShard, scenarioRef, SEED_ENV, SHARD_ENV } from "../src/index.ts";
import { prefetchScenario } from "./handlers.ts";

/** The buggy prefetching handler (it loses a wake on some seeds), loadable in a worker. */
const naive = scenarioRef(new URL("./handlers.ts", import.meta.url), "prefetchScenario", false);
const fixed = scenarioRef(new URL("./handlers.ts", import.meta.url), "prefetchScenario", true);

afterEach(() => {
  delete process.env[SEED_ENV];
  delete process.env[SHARD_ENV];
});

/** What must not depend on the split: the outcome, every failing seed's run, and the report. */
function summary(r: ExploreResult): unknown {
  return {
    ok: r.ok,
    seedsRun: r.seedsRun,
    failures: r.failures.map((f) => JSON.stringify(f.toJSON())),
    report: r.report(),
  };
}

describe("explore across worker threads", () => {
  it("1, 2 and 3 workers give the same result, failing seed and report (stopping at the first failure, and collecting all)", { timeout: 120_000 }, async () => {
    for (const stopOnFailure of [true, false]) {
      const runs: unknown[] = [];
      for (const workers of [1, 2, 3]) {
        runs.push(summary(await explore(naive, { seeds: 120, workers, stopOnFailure, throwOnFailure: false, name: "same" })));
      }
      expect(runs[1]).toEqual(runs[0]);
      expect(runs[2]).toEqual(runs[0]);
      const r = runs[0] as { ok: boolean; failures: string[]; report: string };
      expect(r.ok).toBe(false);
      if (!stopOnFailure) expect(r.failures.length).toBeGreaterThan(1);
      expect(r.report).toContain("reproduce: UFFD_EXPLORE_SEED=");
    }
    // The closure and its portable twin fail on the same seed.
    const here = await explore(prefetchScenario(false), { seeds: 120, throwOnFailure: false, name: "same" });
    const there = await explore(naive, { seeds: 120, workers: 2, throwOnFailure: false, name: "same" });
    expect(there.firstFailure!.seed).toBe(here.firstFailure!.seed);
    expect(there.report()).toBe(here.report());
  });

  it("a passing exploration in workers runs every seed", { timeout: 120_000 }, async () => {
    const r = await explore(fixed, { seeds: 40, workers: 2 });
    expect(r.ok).toBe(true);
    expect(r.seedsRun).toBe(40);
    expect(r.report()).toBe("explore: 40 seeds passed (40 seeds 1..40)");
  });

  it("refuses workers for a closure, and a worker count that is not a positive integer", async () => {
    await expect(explore(prefetchScenario(true), { seeds: 4, workers: 2 })).rejects.toThrow(/scenarioRef/);
    await expect(explore(fixed, { seeds: 4, workers: 0 })).rejects.toThrow(RangeError);
    await expect(explore(fixed, { seeds: 4, workers: 1.5 })).rejects.toThrow(RangeError);
  });

  it("a scenarioRef to a missing export says which", async () => {
    const bad = scenarioRef(new URL("./handlers.ts", import.meta.url), "noSuchScenario");
    const r = await explore(bad, { seeds: 1, throwOnFailure: false });
    expect(r.firstFailure!.problems[0]).toMatch(/has no function export noSuchScenario/);
  });
});

describe("explore shards", () => {
  it('"k/n" takes the k-th of n contiguous slices; the shards cover every seed once', async () => {
    const seen: number[] = [];
    for (const shard of ["1/3", "2/3", "3/3"]) {
      const r = await explore(prefetchScenario(true), { seeds: 10, shard, stopOnFailure: false });
      seen.push(r.seedsRun);
    }
    // floor((k-1) * 10 / 3) .. floor(k * 10 / 3): seeds 1-3, 4-6, 7-10.
    expect(seen).toEqual([3, 3, 4]);
    const two = await explore(prefetchScenario(true), { seeds: 10, shard: "2/3" });
    expect(two.report()).toBe("explore: 3 seeds passed (3 seeds 4..6, shard 2/3)");
  });

  it("a failing seed fails the same way in whichever shard and with however many workers", { timeout: 120_000 }, async () => {
    const whole = await explore(naive, { seeds: 200, workers: 1, throwOnFailure: false, name: "shard" });
    const seed = whole.firstFailure!.seed;
    const n = 4;
    const k = Math.floor(((seed - 1) * n) / 200) + 1; // the shard holding that seed
    const part = await explore(naive, { seeds: 200, shard: `${k}/${n}`, workers: 2, throwOnFailure: false, name: "shard" });
    expect(part.firstFailure!.seed).toBe(seed);
    expect(JSON.stringify(part.firstFailure!.toJSON())).toBe(JSON.stringify(whole.firstFailure!.toJSON()));
    const line = (r: ExploreResult): string | undefined => r.report().split("\n").at(-1);
    expect(line(part)).toBe(line(whole));
    expect(line(part)).toBe(`reproduce: UFFD_EXPLORE_SEED=${seed} npx vitest run packages/testing/test/explore-workers.test.ts -t "shard"`);
  });

  it(`${SHARD_ENV} applies when no shard is given; ${SEED_ENV} overrides it`, async () => {
    process.env[SHARD_ENV] = "2/2";
    const r = await explore(prefetchScenario(true), { seeds: 10 });
    expect(r.report()).toBe("explore: 5 seeds passed (5 seeds 6..10, shard 2/2)");
    process.env[SEED_ENV] = "3";
    const one = await explore(prefetchScenario(true), { seeds: 10 });
    expect(one.seedsRun).toBe(1);
    expect(one.report()).toBe("explore: 1 seeds passed");
  });

  it("parseShard accepts k/n with 1 <= k <= n and refuses anything else", () => {
    expect(parseShard("3/8")).toEqual([3, 8]);
    expect(parseShard(" 1 / 1 ")).toEqual([1, 1]);
    for (const bad of ["0/2", "3/2", "1/0", "a/b", "1", "1/2/3", "-1/2", "1.5/2"]) expect(() => parseShard(bad), bad).toThrow(RangeError);
  });
});
