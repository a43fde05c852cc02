/**
 * The kernel's compact frame store (KernelOptions.frameStore "compact") is invisible to every
 * Linux-defined result: the corpus and random scenarios give the same step records (errnos, out
 * fields, bytes read, pagemap and kpageflags words, messages) on a flat kernel and on a compact
 * one. The compact kernel has a generator for pages of one repeated byte, which is what the
 * scenarios write, so nearly every written frame there is held as a description and every path
 * a scenario takes (faults, fork, COW, UFFDIO_COPY and MOVE, swap, pins, pipes, pwrite) has to
 * produce or materialise its bytes.
 */
import type { FrameGenerator } from "@uffd/kernel";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Driver, type StepRecord } from "../src/driver.ts";
import { loadCorpus } from "../src/corpus.ts";
import { linesToScenario, scenarioArb } from "../src/generate.ts";
import type { Scenario } from "../src/scenario.ts";
import { SimBackend } from "../src/sim.ts";
import type { World } from "../src/backend.ts";

/** Pages of one repeated byte b: argument (b). */
const oneByte: FrameGenerator = {
  fill(out, b) {
    out.fill(Math.imul(b & 0xff, 0x0101_0101) >>> 0);
  },
  identify(page, args) {
    const w = page[0]!;
    if ((w & 0xff) * 0x0101_0101 !== w) return false;
    args[0] = w & 0xff;
    args[1] = 0;
    args[2] = 0;
    return true;
  },
};

/** The simulation with a compact frame store that knows oneByte. */
class CompactSim extends SimBackend {
  constructor() {
    super({ kernel: { frameStore: "compact" } });
  }

  override async reset(world?: World): Promise<void> {
    await super.reset(world);
    this.kernel.registerFrameGenerator(oneByte);
  }
}

async function run(sim: SimBackend, s: Scenario): Promise<StepRecord[]> {
  const records = await new Driver(sim).run(s);
  sim.kernel.checkInvariants();
  return records;
}

describe("the compact frame store answers every scenario as the flat one", () => {
  const corpus = loadCorpus();

  it.each(corpus.map((s) => [s.name, s] as const))("%s", async (_name, s) => {
    expect(await run(new CompactSim(), s)).toEqual(await run(new SimBackend(), s));
  });

  it("the corpus leaves frames held as descriptions (the generated paths are taken)", async () => {
    let generated = 0;
    for (const s of corpus) {
      const sim = new CompactSim();
      await run(sim, s);
      generated += sim.kernel.frameStoreStats().generatedFrames;
    }
    expect(generated).toBeGreaterThan(corpus.length);
  });

  it("100 random scenarios", { timeout: 60_000 }, async () => {
    await fc.assert(
      fc.asyncProperty(scenarioArb(), async (lines) => {
        const s = linesToScenario(lines);
        expect(await run(new CompactSim(), s)).toEqual(await run(new SimBackend(), s));
      }),
      { seed: 11, numRuns: 100 },
    );
  });
});
