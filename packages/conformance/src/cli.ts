/**
 * `npm run conform -- [options]`: the long random run and scenario replay, for humans.
 *
 *   --seeds N          random scenarios, one per seed (default 1000)
 *   --seed-start S     first seed (default 1); scenario k uses seed S + k
 *   --steps N          at most N random steps after the setup (default 32)
 *   --replay FILE      run one scenario file (or - for stdin) on both sides, print both records
 *   --corpus           run the hand-written corpus instead
 *   --json FILE        also write the run's report as JSON
 *   --help             print this and exit
 *
 * Divergences are shrunk to a minimal scenario by fast-check and printed as text with the
 * command that replays them; the summary is a table of divergence classes.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { describe as describeRecord } from "./compare.ts";
import { Conformance, type CheckResult } from "./conform.ts";
import { loadCorpus } from "./corpus.ts";
import { ForeignSwapError, probeHost } from "./native.ts";
import { printTable, randomRun } from "./random.ts";
import { parseScenario } from "./scenario.ts";

function printRecords(r: CheckResult): void {
  r.native.forEach((n, i) => {
    const s = r.sim[i];
    console.log(`${String(i + 1).padStart(3)}  ${n.text}`);
    const dn = `${describeRecord(n.r)}${Object.keys(n.done).length ? `  done ${JSON.stringify(n.done)}` : ""}`;
    const ds = s === undefined ? "(none)" : `${describeRecord(s.r)}${Object.keys(s.done).length ? `  done ${JSON.stringify(s.done)}` : ""}`;
    if (dn === ds) console.log(`       both   ${dn}`);
    else {
      console.log(`       native ${dn}`);
      console.log(`       sim    ${ds}`);
    }
  });
  const c = r.comparison;
  console.log(c.status === "agree" ? "agree" : `${c.status} at step ${(c.divergence?.index ?? 0) + 1} (${c.divergence?.what}): native ${c.divergence?.native} / sim ${c.divergence?.sim}${c.quirk ? ` [${c.quirk}]` : ""}`);
}

const USAGE = `usage: npm run conform -- [options]
  --seeds N          random scenarios, one per seed (default 1000)
  --seed-start S     first seed (default 1); scenario k uses seed S + k
  --steps N          at most N random steps after the setup (default 32)
  --replay FILE      run one scenario file (or - for stdin) on both sides, print both records
  --corpus           run the hand-written corpus instead
  --json FILE        also write the run's report as JSON
  --help             print this and exit`;

function positiveInt(name: string, text: string, min: number): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min}, not ${JSON.stringify(text)}`);
  return n;
}

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        seeds: { type: "string", default: "1000" },
        "seed-start": { type: "string", default: "1" },
        steps: { type: "string", default: "32" },
        replay: { type: "string" },
        corpus: { type: "boolean", default: false },
        json: { type: "string" },
        help: { type: "boolean", default: false },
      },
    }));
    for (const [name, min] of [["seeds", 1], ["seed-start", 0], ["steps", 1]] as const) positiveInt(name, values[name], min);
  } catch (e) {
    console.error(`error: ${(e as Error).message}\n(see npm run conform -- --help)`);
    process.exitCode = 2;
    return;
  }
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const probe = probeHost();
  if (!probe.ok) {
    console.log(`conformance: cannot run against this host: ${probe.reason}`);
    process.exitCode = 2;
    return;
  }
  let c: Conformance;
  try {
    c = await Conformance.start();
  } catch (e) {
    if (!(e instanceof ForeignSwapError)) throw e;
    console.log(`conformance: refusing to run: ${e.message}`);
    process.exitCode = 2;
    return;
  }
  try {
    if (values.replay !== undefined) {
      const text = readFileSync(values.replay === "-" ? 0 : values.replay, "utf8");
      const r = await c.check(parseScenario(text, values.replay));
      printRecords(r);
      if (r.comparison.status === "diverge") process.exitCode = 1;
      return;
    }
    if (values.corpus) {
      let bad = 0;
      for (const s of loadCorpus()) {
        const cannot = c.cannot(s);
        if (cannot !== null) {
          console.log(`skip         ${s.file} ${s.name}: ${cannot}`);
          continue;
        }
        const r = await c.check(s);
        const expect = s.meta["expect"];
        const okay = expect === undefined ? r.comparison.status !== "diverge" : r.comparison.status === "diverge";
        if (!okay) bad++;
        console.log(`${okay ? "ok  " : "FAIL"} ${r.comparison.status.padEnd(7)} ${s.file} ${s.name}${expect ? ` (${expect})` : ""}`);
        const d = r.comparison.divergence;
        if (!okay && d !== null) console.log(`     step ${d.index + 1} ${d.text} (${d.what}): native ${d.native} / sim ${d.sim}`);
      }
      if (bad > 0) process.exitCode = 1;
      return;
    }
    const seeds = Number(values.seeds);
    const seedStart = Number(values["seed-start"]);
    const steps = Number(values.steps);
    const report = await randomRun(c, seedStart, seeds, steps, (n) => {
      if (n % 500 === 0) process.stderr.write(`  ${n}/${seeds}\n`);
    });
    printTable(report);
    if (values.json !== undefined) writeFileSync(values.json, `${JSON.stringify({ command: `npm run conform -- ${process.argv.slice(2).join(" ")}`, ...report }, null, 2)}\n`);
    if (report.diverge > 0) process.exitCode = 1;
  } finally {
    await c.close();
  }
}

await main();
