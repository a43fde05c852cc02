/**
 * The corpus and a bounded random run against the kernel this test runs on. Needs Linux, root
 * (or the capabilities behind /dev/userfaultfd and /proc/kpageflags) and a C compiler; elsewhere
 * the suite skips with one line saying why. Scenarios with `# swap: zram` run with a zram device
 * the runner sets up and removes; with another swap device active the suite skips (saying so),
 * and after it /proc/swaps must list nothing.
 */
import { afterAll, describe, expect, it } from "vitest";
import { Conformance } from "../src/conform.ts";
import { loadCorpus } from "../src/corpus.ts";
import { randomRun } from "../src/random.ts";
import { knownDivergence } from "../src/known.ts";
import { ForeignSwapError, NoSwapError, probeHost } from "../src/native.ts";

const probe = probeHost();
let c: Conformance | null = null;
let reason: string | null = probe.ok ? null : probe.reason;
if (reason === null) {
  try {
    c = await Conformance.start();
  } catch (e) {
    if (!(e instanceof ForeignSwapError)) throw e;
    reason = `${e.message}; the harness refuses swap it did not set up`;
  }
}
if (reason !== null) console.log(`conformance against the host: skipped: ${reason}`);

describe.skipIf(reason !== null)("conformance against the host kernel", () => {
  const conf = c as Conformance;
  afterAll(async () => {
    await conf.close();
    // The runner turned its swap off and removed its zram device; nothing else may be active.
    expect(conf.swapsAtEnd).toEqual([]);
  });

  describe("corpus", () => {
    it.each(loadCorpus().map((s) => [s.name, s] as const))("%s", async (_name, s) => {
      const cannot = conf.cannot(s);
      if (cannot !== null) {
        console.log(`${s.name}: skipped: ${cannot}`);
        return;
      }
      let r;
      try {
        r = await conf.check(s);
      } catch (e) {
        if (!(e instanceof NoSwapError)) throw e;
        console.log(`${s.name}: skipped: swap: ${e.message}`);
        return;
      }
      const expectation = s.meta["expect"];
      if (expectation !== undefined) {
        const id = /^divergence (\S+)/.exec(expectation)?.[1] ?? "";
        expect(knownDivergence(id), `unknown divergence id in "# expect: ${expectation}"`).toBeDefined();
        // Still divergent: when this fails, the fix has landed; remove the mark (and the entry in known.ts).
        expect(r.comparison.status, `${s.name} now agrees: known divergence ${id} is fixed, remove its mark`).toBe("diverge");
        return;
      }
      if (r.comparison.status === "quirk") {
        console.log(`${s.name}: set down to a host quirk: ${r.comparison.quirk}`);
        return;
      }
      expect(r.comparison.divergence).toBeNull();
    });
  });

  it("500 random scenarios agree", { timeout: 240_000 }, async () => {
    const report = await randomRun(conf, 1, 500, 32);
    // Divergences with the signature of a known one whose fix is pending are counted apart
    // (report.known); everything else must agree.
    expect(report.classes.map((k) => `${k.key} (seed ${k.firstSeed}):\n${k.scenario}`)).toEqual([]);
    expect(report.agree + report.quirk + Object.values(report.known).reduce((a, b) => a + b, 0)).toBe(500);
  });
});
