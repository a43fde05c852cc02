/**
 * The hostile-input suite (see driver.ts): seeded runs that together make HOSTILE_CALLS calls
 * (default 1,000,000; set the environment variable to change it) and must show zero escaped
 * exceptions, zero invariant breaks, zero hangs and zero shadow-model mismatches. The counts are
 * printed; docs/divergences.md records a measured run.
 */
import { describe, expect, it } from "vitest";
import { formatReport, runHostile } from "./driver.ts";

const TOTAL = Number(process.env.HOSTILE_CALLS ?? 1_000_000);
const SEEDS = Array.from({ length: 16 }, (_, i) => i + 1);

describe("hostile input", () => {
  for (const seed of SEEDS) {
    it(`seed ${seed}: ${Math.ceil(TOTAL / SEEDS.length)} calls, nothing escapes, breaks, hangs or differs from the model`, async () => {
      const t0 = performance.now();
      const r = await runHostile({ seed, calls: Math.ceil(TOTAL / SEEDS.length) });
      console.log(formatReport(r, performance.now() - t0));
      if (r.problems.length > 0) console.log(r.problems.join("\n"));
      expect(r.problems).toEqual([]);
      expect(r.escaped).toBe(0);
      expect(r.invariantBreaks).toBe(0);
      expect(r.hangs).toBe(0);
      expect(r.mismatches).toBe(0);
      expect(r.calls).toBeGreaterThanOrEqual(Math.ceil(TOTAL / SEEDS.length));
      expect(r.shadowPagesChecked).toBeGreaterThan(0);
    }, 600_000);
  }
});
