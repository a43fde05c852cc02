/**
 * The corpus and a batch of random scenarios on the simulation alone (any host): every step is
 * answered (no harness trouble, no KernelBug) and the kernel's invariants hold at the end.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Conformance } from "../src/conform.ts";
import { loadCorpus } from "../src/corpus.ts";
import { linesToScenario, scenarioArb } from "../src/generate.ts";
import { parseScenario } from "../src/scenario.ts";

const bad = (records: Awaited<ReturnType<typeof Conformance.simulate>>): string[] =>
  records.flatMap((r) => [r.r, ...Object.values(r.done)]).filter((n) => typeof n === "object" && "bad" in n).map((n) => JSON.stringify(n));

describe("scenarios on the simulation", () => {
  it.each(loadCorpus().map((s) => [s.name, s] as const))("%s", async (_name, s) => {
    const records = await Conformance.simulate(s);
    expect(bad(records)).toEqual([]);
    expect(records.filter((r) => typeof r.r === "object" && "skip" in r.r).map((r) => `${r.text}: ${JSON.stringify(r.r)}`)).toEqual([]);
  });

  it("records which steps mapped the shared zero page (the comparer's pvm_no_zero_page rule needs it)", async () => {
    // mm/memory.c:do_anonymous_page(): a read fault maps the zero page, a second read finds it
    // mapped, a write allocates. Fork copies the zero-page pte of a vma with an anon_vma (the
    // write gave A one; copy_present_pte()), so the child's own read maps nothing new.
    const s = parseScenario(["map A 2 anon", "write A 1 1 7", "read A 0 1", "read A 0 1", "fork c1", "@c1 read A 0 1", "@c1 write A 0 1 1"].join("\n"));
    const records = await Conformance.simulate(s);
    expect(records.map((r) => r.zeroMapped)).toEqual([false, false, true, false, true, false, false]);
    // Without an anon_vma (no write first) fork copies no ptes (vma_needs_copy()); the child's read maps it.
    const t = parseScenario(["map A 1 anon", "read A 0 1", "fork c1", "@c1 read A 0 1"].join("\n"));
    expect((await Conformance.simulate(t)).map((r) => r.zeroMapped)).toEqual([false, true, false, true]);
  });

  it("reports as churned every frame a step allocated, by each of PhysMem's ways (one page, a run, a fault)", async () => {
    // UFFDIO_COPY of one page (PhysMem.allocAnonPage), of two pages (allocFrames), a write fault (allocFrame).
    const s = parseScenario(["map A 4 anon", "uffd U", "api U 0", "register U A 0 3 missing", "copy U A 0 1 0x10", "copy U A 1 2 0x11", "write A 3 1 5"].join("\n"));
    const records = await Conformance.simulate(s);
    expect(records.slice(4).map((r) => r.churn?.length)).toEqual([1, 2, 1]);
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
