/**
 * The corpus and a bounded random run against the kernel this test runs on. Needs Linux, root
 * (or the capabilities behind /dev/userfaultfd and /proc/kpageflags) and a C compiler; elsewhere
 * the suite skips with one line saying why.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Conformance } from "../src/conform.ts";
import { loadCorpus } from "../src/corpus.ts";
import { randomRun } from "../src/random.ts";
import { knownDivergence } from "../src/known.ts";
import { probeHost, hostFacts } from "../src/native.ts";

const probe = probeHost();
const swaps = probe.ok ? hostFacts().swaps : [];
const reason = !probe.ok ? probe.reason : swaps.length > 0 ? `a swap device is active (${swaps.join(", ")}); the harness refuses swap it did not set up` : null;
if (reason !== null) console.log(`conformance against the host: skipped: ${reason}`);

describe.skipIf(reason !== null)("conformance against the host kernel", () => {
  let c: Conformance;
  beforeAll(async () => {
    c = await Conformance.start();
  }, 120_000);
  afterAll(async () => {
    await c?.close();
  });

  describe("corpus", () => {
    it.each(loadCorpus().map((s) => [s.name, s] as const))("%s", async (_name, s) => {
      const cannot = c.cannot(s);
      if (cannot !== null) {
        console.log(`${s.name}: skipped: ${cannot}`);
        return;
      }
      const r = await c.check(s);
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

  it("500 random scenarios agree", { timeout: 180_000 }, async () => {
    const report = await randomRun(c, 1, 500, 32);
    // Divergences with the signature of a known one whose fix is pending are counted apart
    // (report.known); everything else must agree.
    expect(report.classes.map((k) => `${k.key} (seed ${k.firstSeed}):\n${k.scenario}`)).toEqual([]);
    expect(report.agree + report.quirk + Object.values(report.known).reduce((a, b) => a + b, 0)).toBe(500);
  });
});
