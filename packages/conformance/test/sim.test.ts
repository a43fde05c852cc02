/**
 * The corpus and a batch of random scenarios on the simulation alone (any host): every step is
 * answered (no harness trouble, no KernelBug) and the kernel's invariants hold at the end.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Conformance } from "../src/conform.ts";
import { loadCorpus } from "../src/corpus.ts";
import { linesToScenario, scenarioArb } from "../src/generate.ts";

const bad = (records: Awaited<ReturnType<typeof Conformance.simulate>>): string[] =>
  records.flatMap((r) => [r.r, ...Object.values(r.done)]).filter((n) => typeof n === "object" && "bad" in n).map((n) => JSON.stringify(n));

describe("scenarios on the simulation", () => {
  it.each(loadCorpus().map((s) => [s.name, s] as const))("%s", async (_name, s) => {
    const records = await Conformance.simulate(s);
    expect(bad(records)).toEqual([]);
    expect(records.filter((r) => typeof r.r === "object" && "skip" in r.r).map((r) => `${r.text}: ${JSON.stringify(r.r)}`)).toEqual([]);
  });

  it("200 random scenarios run to the end with the invariants intact", { timeout: 60_000 }, async () => {
    await fc.assert(
      fc.asyncProperty(scenarioArb(), async (lines) => {
        expect(bad(await Conformance.simulate(linesToScenario(lines)))).toEqual([]);
      }),
      { seed: 7, numRuns: 200 },
    );
  });
});
