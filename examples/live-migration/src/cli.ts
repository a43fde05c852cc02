#!/usr/bin/env -S node --import tsx
/**
 * The live-migration demo's command line.
 *
 *   tsx src/cli.ts migrate [options]     one migration (default strategy: hybrid)
 *   tsx src/cli.ts compare [options]     precopy, postcopy and hybrid on the same workload
 *   tsx src/cli.ts report <file.json>    re-render the HTML report from a JSON result
 *
 * Prints the metrics table and the paths of the JSON and HTML reports. Exits 1 when the
 * migration failed or the destination's memory did not verify.
 */
import { pathToFileURL } from "node:url";
import { Command, Option } from "commander";
import {
  DEFAULT_CONFIG,
  formatBandwidth,
  formatBytes,
  makeConfig,
  parseBandwidth,
  parseDuration,
  parseSize,
  parseWorkload,
  STRATEGIES,
  TRACKING_METHODS,
  type MigrationConfig,
  type Strategy,
  type TrackingChoice,
} from "./config.ts";
import type { MigrationResult } from "./metrics.ts";
import { MigrationError, runMigration } from "./orchestrator.ts";
import { ProgressView, type ProgressMode } from "./progress.ts";
import { readResults, ReportFormatError, reportName, writeReport } from "./report.ts";
import { formatComparisonTable, formatResultTable, succeeded } from "./report-text.ts";

interface RunOptions {
  memory: string;
  populate: string;
  workload: string;
  hotSet: string;
  warmup: string;
  runAfter: string;
  latency: string;
  bandwidth: string;
  maxDowntime: string;
  maxRounds: string;
  hybridRounds: string;
  tracking: TrackingChoice;
  seed: string;
  timeout: string;
  out: string;
  json?: string;
  html: boolean;
  progress: boolean;
  dropLinkAfter?: string;
  killSourceAfter?: string;
}

function positiveInt(text: string, what: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`${what} must be a non-negative integer, got "${text}"`);
  return n;
}

/** A size as an option value: "256MiB", "16MiB", "4096". */
function sizeArg(bytes: number): string {
  if (bytes % 1024 ** 3 === 0) return `${bytes / 1024 ** 3}GiB`;
  if (bytes % 1024 ** 2 === 0) return `${bytes / 1024 ** 2}MiB`;
  return String(bytes);
}

function addRunOptions(cmd: Command): Command {
  const d = DEFAULT_CONFIG;
  return cmd
    .option("--memory <size>", "guest memory (e.g. 256MiB, 1GiB)", sizeArg(d.memoryBytes))
    .option("--populate <fraction>", "fraction of guest pages the guest writes at boot; the rest stay zero", String(d.populate))
    .option("--workload <threads>", "guest threads as kind:ops-per-second (kinds: hot, scan, random; or none)", d.workload.map((t) => `${t.kind}:${t.rate}`).join(","))
    .option("--hot-set <size>", "size of the hot thread's working set", sizeArg(d.hotSetBytes))
    .option("--warmup <duration>", "workload time on the source before migrating", `${d.warmupMs}ms`)
    .option("--run-after <duration>", "workload time on the destination after migrating", `${d.runAfterMs}ms`)
    .option("--latency <duration>", "one-way link latency", `${d.link.latencyMs}ms`)
    .option("--bandwidth <rate>", "link bandwidth (e.g. 1gbit, 100mbit, 50MB/s, unlimited)", "1gbit")
    .option("--max-downtime <duration>", "precopy: stop iterating once the rest fits in this downtime", `${d.maxDowntimeMs}ms`)
    .option("--max-rounds <n>", "precopy: rounds before a forced stop-and-copy", String(d.maxRounds))
    .option("--hybrid-rounds <n>", "hybrid: precopy rounds before switching to postcopy", String(d.hybridRounds))
    .addOption(new Option("--tracking <method>", "precopy dirty tracking").choices(TRACKING_METHODS).default(d.tracking))
    .option("--seed <n>", "seed of the guest's contents and workload", String(d.seed))
    .option("--timeout <duration>", "give up after this long", `${d.timeoutMs / 1000}s`)
    .option("--out <dir>", "directory for the JSON and HTML reports", "reports")
    .option("--json <file>", "write the JSON result here (default: <out>/<name>.json)")
    .option("--no-html", "skip the HTML report")
    .option("--no-progress", "no progress bars or phase lines")
    .option("--drop-link-after <pages>", "fault injection: the source cuts the connection after this many postcopy pages")
    .option("--kill-source-after <pages>", "fault injection: SIGKILL the source after this many postcopy pages");
}

export function configFromOptions(o: RunOptions, strategy: Strategy): MigrationConfig {
  return makeConfig({
    strategy,
    seed: positiveInt(o.seed, "--seed"),
    memoryBytes: parseSize(o.memory),
    populate: Number(o.populate),
    hotSetBytes: parseSize(o.hotSet),
    workload: parseWorkload(o.workload),
    warmupMs: parseDuration(o.warmup),
    runAfterMs: parseDuration(o.runAfter),
    link: { latencyMs: parseDuration(o.latency), bandwidthBytesPerSec: parseBandwidth(o.bandwidth) },
    maxDowntimeMs: parseDuration(o.maxDowntime),
    maxRounds: positiveInt(o.maxRounds, "--max-rounds"),
    hybridRounds: positiveInt(o.hybridRounds, "--hybrid-rounds"),
    tracking: o.tracking,
    timeoutMs: parseDuration(o.timeout),
    faults: {
      ...(o.dropLinkAfter !== undefined ? { dropLinkAfterPostcopyPages: positiveInt(o.dropLinkAfter, "--drop-link-after") } : {}),
      ...(o.killSourceAfter !== undefined ? { killSourceAfterPostcopyPages: positiveInt(o.killSourceAfter, "--kill-source-after") } : {}),
    },
  });
}

function progressMode(o: RunOptions): ProgressMode {
  if (!o.progress) return "off";
  return process.stderr.isTTY ? "bars" : "lines";
}

async function runOne(config: MigrationConfig, o: RunOptions, prefix: string): Promise<MigrationResult> {
  const view = new ProgressView(progressMode(o), prefix);
  view.log(`${config.strategy}: ${formatBytes(config.memoryBytes)} guest, link ${formatBandwidth(config.link.bandwidthBytesPerSec)} + ${config.link.latencyMs} ms`);
  try {
    return await runMigration(config, view.hooks());
  } finally {
    view.stop();
  }
}

async function report(results: MigrationResult[], o: RunOptions, kind: string): Promise<void> {
  const written = await writeReport(results, { outDir: o.out, name: reportName(kind, new Date()), json: true, html: o.html, ...(o.json !== undefined ? { jsonPath: o.json } : {}) });
  if (written.jsonPath !== null) console.log(`JSON report: ${written.jsonPath}`);
  if (written.htmlPath !== null) console.log(`HTML report: ${written.htmlPath}`);
  if (!results.every(succeeded)) process.exitCode = 1;
}

async function migrate(o: RunOptions & { strategy: Strategy }): Promise<void> {
  const result = await runOne(configFromOptions(o, o.strategy), o, "");
  console.log(`\n${formatResultTable(result)}`);
  await report([result], o, `migration-${o.strategy}`);
}

async function compare(o: RunOptions): Promise<void> {
  const results: MigrationResult[] = [];
  for (const strategy of STRATEGIES) results.push(await runOne(configFromOptions(o, strategy), o, `[${strategy}] `));
  console.log(`\n${formatComparisonTable(results)}`);
  await report(results, o, "comparison");
}

async function renderReport(file: string, outDir: string): Promise<void> {
  const results = await readResults(file);
  const written = await writeReport(results, { outDir, name: reportName("report", new Date()), json: false, html: true });
  console.log(`HTML report: ${written.htmlPath}`);
}

function fail(e: unknown): void {
  if (e instanceof MigrationError || e instanceof RangeError || e instanceof ReportFormatError) console.error(`\nerror: ${e.message}`);
  else console.error(e);
  process.exitCode = 1;
}

export function buildProgram(): Command {
  const program = new Command()
    .name("live-migration")
    .description("Live-migrate a simulated guest between two processes over TCP using userfaultfd (precopy, postcopy, hybrid).")
    .showHelpAfterError();
  addRunOptions(program.command("migrate").description("run one live migration and report its metrics"))
    .addOption(new Option("--strategy <name>", "migration strategy").choices(STRATEGIES).default(DEFAULT_CONFIG.strategy))
    .action((o: RunOptions & { strategy: Strategy }) => migrate(o).catch(fail));
  addRunOptions(program.command("compare").description("run precopy, postcopy and hybrid on the same workload, side by side")).action((o: RunOptions) => compare(o).catch(fail));
  program
    .command("report")
    .description("render the HTML report of a JSON result file")
    .argument("<json>", "a JSON file written by migrate or compare")
    .option("--out <dir>", "output directory", "reports")
    .action((file: string, o: { out: string }) => renderReport(file, o.out).catch(fail));
  return program;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  buildProgram()
    .parseAsync(process.argv)
    .catch(fail);
}
