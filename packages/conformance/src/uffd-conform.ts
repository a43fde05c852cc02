/**
 * `npx uffd-conform`: compares the simulation with the kernel this machine runs, area by area,
 * on the hand-written corpus (and, with --seeds N, N random scenarios), and prints the table a
 * user reads to decide how far to trust a test written against the simulation.
 */
import { parseArgs } from "node:util";
import { Conformance } from "./conform.ts";
import { loadCorpus } from "./corpus.ts";
import { KNOWN_DIVERGENCES } from "./known.ts";
import { CORPUS_AREAS } from "./corpus.ts";
import { probeHost } from "./native.ts";
import { hostQuirks, printTable, randomRun } from "./random.ts";


async function main(): Promise<void> {
  const { values } = parseArgs({ options: { seeds: { type: "string", default: "0" }, help: { type: "boolean", default: false } } });
  if (values.help) {
    console.log("usage: uffd-conform [--seeds N]   compare @uffd/kernel with this machine's kernel");
    return;
  }
  const probe = probeHost();
  if (!probe.ok) {
    console.log(`uffd-conform: cannot compare with this machine's kernel: ${probe.reason}`);
    process.exitCode = 2;
    return;
  }
  const c = await Conformance.start();
  try {
    console.log(`kernel: Linux ${c.host.release}`);
    console.log(`host quirks accounted for: ${hostQuirks(c).join("; ")}`);
    console.log("");
    const byArea = new Map<string, { agree: number; total: number; expected: number; skipped: number; failures: string[] }>();
    const skips = new Set<string>();
    for (const s of loadCorpus()) {
      const area = byArea.get(s.file) ?? { agree: 0, total: 0, expected: 0, skipped: 0, failures: [] };
      byArea.set(s.file, area);
      area.total++;
      const cannot = c.cannot(s);
      if (cannot !== null) {
        area.skipped++;
        skips.add(cannot);
        continue;
      }
      const r = await c.check(s);
      if (s.meta["expect"] !== undefined) {
        if (r.comparison.status === "diverge") area.expected++;
        else area.agree++;
        continue;
      }
      if (r.comparison.status === "diverge") area.failures.push(`${s.name}: step ${(r.comparison.divergence?.index ?? 0) + 1} ${r.comparison.divergence?.text} (${r.comparison.divergence?.what}): kernel ${r.comparison.divergence?.native}, simulation ${r.comparison.divergence?.sim}`);
      else area.agree++;
    }
    console.log("| area | scenarios | agree | known divergences | disagree | skipped |");
    console.log("|---|---:|---:|---:|---:|---:|");
    for (const [file, a] of byArea) {
      console.log(`| ${CORPUS_AREAS[file] ?? file} | ${a.total} | ${a.agree} | ${a.expected} | ${a.failures.length} | ${a.skipped} |`);
    }
    for (const why of skips) console.log(`skipped: ${why}`);
    const failures = [...byArea.values()].flatMap((a) => a.failures);
    for (const f of failures) console.log(`disagree: ${f}`);
    const pending = KNOWN_DIVERGENCES.map((k) => `${k.id}: ${k.reason}`);
    if (pending.length > 0) console.log(`\nknown divergences (being fixed):\n${pending.map((p) => `  - ${p}`).join("\n")}`);
    const seeds = Number(values.seeds);
    if (seeds > 0) {
      console.log("");
      printTable(await randomRun(c, 1, seeds, 32));
    }
    if (failures.length > 0) process.exitCode = 1;
  } finally {
    await c.close();
  }
}

await main();
