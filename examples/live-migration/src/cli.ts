/**
 * The live-migration demo's command line.
 *
 *   tsx src/cli.ts migrate [options]     one migration (default strategy: hybrid)
 *   tsx src/cli.ts compare [options]     precopy, postcopy and hybrid on the same workload
 *   tsx src/cli.ts report <run.json>     re-render the HTML report of a JSON result (as <run>.html)
 *
 * Prints the metrics table and the paths of the JSON and HTML reports. Options are checked, and
 * the report paths created and checked, before anything runs: a bad value is an error in a second,
 * with a pointer to --help. A run that fails still writes its report (with what each side could
 * still tell). Exits 1 when the migration failed or the destination's memory did not verify.
 */
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { Command, Option } from "commander";
import type { AnyRelease } from "@uffd/kernel";
import {
  DEFAULT_CONFIG,
  FRAME_STORES,
  formatBandwidth,
  formatBytes,
  makeConfig,
  parseBandwidth,
  parseDuration,
  parseSize,
  parseWorkload,
  KERNEL_CHOICES,
  STRATEGIES,
  TRACKING_METHODS,
  type FrameStoreChoice,
  type MigrationConfig,
  type Strategy,
  type TrackingChoice,
} from "./config.ts";
import { MigrationError, runMigration } from "./orchestrator.ts";
import { ProgressView, type ProgressMode } from "./progress.ts";
import {
  failedRun,
  htmlPathFor,
  isFailedRun,
  prepareOutput,
  readResults,
  ReportFormatError,
  reportName,
  ReportPathError,
  writeReport,
  type ReportOptions,
  type RunRecord,
} from "./report.ts";
import { formatComparisonTable, formatResultTable, succeeded } from "./report-text.ts";

/** This example's version (its package.json). */
export const VERSION: string = (JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }).version;

interface RunOptions {
  memory: string;
  populate: string;
  workload: string;
  /** Absent: the default hot set, at most the guest's size. */
  hotSet?: string;
  warmup: string;
  runAfter: string;
  latency: string;
  bandwidth: string;
  maxDowntime: string;
  maxRounds: string;
  hybridRounds: string;
  tracking: TrackingChoice;
  frameStore: FrameStoreChoice;
  kernel: AnyRelease;
  sourceKernel?: AnyRelease;
  destKernel?: AnyRelease;
  seed: string;
  timeout: string;
  out: string;
  json?: string;
  html: boolean;
  progress: boolean;
  dropLinkAfter?: string;
  killSourceAfter?: string;
}

function nonNegativeInt(text: string, what: string): number {
  const n = Number(text);
  if (text.trim() === "" || !Number.isSafeInteger(n) || n < 0) throw new RangeError(`${what} must be a non-negative integer, got "${text}"`);
  return n;
}

function fraction(text: string, what: string): number {
  const n = Number(text);
  if (text.trim() === "" || !Number.isFinite(n)) throw new RangeError(`${what} must be a number within [0, 1], got "${text}"`);
  return n;
}

/**
 * A bandwidth option: "0" (or "0mbit") is refused rather than read as "unlimited", which
 * `parseBandwidth` does for configs written in code: on a command line it reads as a dead link.
 */
export function bandwidthArg(text: string): number {
  const bytesPerSec = parseBandwidth(text);
  if (bytesPerSec === 0 && !/^\s*(unlimited|inf)\s*$/i.test(text)) {
    throw new RangeError(`--bandwidth ${text.trim()} would be a link that carries nothing; say --bandwidth unlimited for a link without a limit`);
  }
  return bytesPerSec;
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
    .option("--hot-set <size>", `size of the hot thread's working set (default: ${sizeArg(d.hotSetBytes)}, or the whole guest if it is smaller)`)
    .option("--warmup <duration>", "workload time on the source before migrating", `${d.warmupMs}ms`)
    .option("--run-after <duration>", "workload time on the destination after migrating", `${d.runAfterMs}ms`)
    .option("--latency <duration>", "one-way link latency", `${d.link.latencyMs}ms`)
    .option("--bandwidth <rate>", "link bandwidth: 1gbit, 100mbit, 50MB/s, ... or unlimited (no shaping); 0 is refused", formatRate(d.link.bandwidthBytesPerSec))
    .option("--max-downtime <duration>", "precopy: stop iterating once the rest fits in this downtime", `${d.maxDowntimeMs}ms`)
    .option("--max-rounds <n>", "precopy: rounds before a forced stop-and-copy", String(d.maxRounds))
    .option("--hybrid-rounds <n>", "hybrid: precopy rounds before switching to postcopy", String(d.hybridRounds))
    .addOption(new Option("--tracking <method>", "precopy dirty tracking").choices(TRACKING_METHODS).default(d.tracking))
    .addOption(new Option("--frame-store <store>", "how both simulated kernels hold guest pages: flat (4 KiB each), compact (generated pages cost no 4 KiB, about a third of flat's speed), auto (flat while both guests fit in half the host's RAM)").choices(FRAME_STORES).default(d.frameStore))
    .addOption(new Option("--kernel <release>", "the Linux release both simulated kernels answer as (docs/releases.md)").choices(KERNEL_CHOICES).default(d.kernel.source))
    .addOption(new Option("--source-kernel <release>", "the source's release (default: --kernel)").choices(KERNEL_CHOICES))
    .addOption(new Option("--dest-kernel <release>", "the destination's release (default: --kernel)").choices(KERNEL_CHOICES))
    .option("--seed <n>", "seed of the guest's contents and workload", String(d.seed))
    .option("--timeout <duration>", "give up after this long", `${d.timeoutMs / 1000}s`)
    .option("--out <dir>", "directory for the JSON and HTML reports (created if missing)", "reports")
    .option("--json <file>", "write the JSON result here (default: <out>/<name>.json)")
    .option("--no-html", "skip the HTML report")
    .option("--no-progress", "no progress bars or phase lines")
    .option("--drop-link-after <pages>", "fault injection: the source cuts the connection after this many postcopy pages")
    .option("--kill-source-after <pages>", "fault injection: SIGKILL the source after this many postcopy pages");
}

/** The default bandwidth as an option value ("1gbit"). */
function formatRate(bytesPerSec: number): string {
  const bits = bytesPerSec * 8;
  if (bytesPerSec === 0) return "unlimited";
  if (bits % 1e9 === 0) return `${bits / 1e9}gbit`;
  if (bits % 1e6 === 0) return `${bits / 1e6}mbit`;
  return `${bytesPerSec}B/s`;
}

/** The run's configuration from the options; throws RangeError on a bad value. */
export function configFromOptions(o: RunOptions, strategy: Strategy): MigrationConfig {
  const memoryBytes = parseSize(o.memory);
  return makeConfig({
    strategy,
    seed: nonNegativeInt(o.seed, "--seed"),
    memoryBytes,
    populate: fraction(o.populate, "--populate"),
    hotSetBytes: o.hotSet === undefined ? Math.min(DEFAULT_CONFIG.hotSetBytes, memoryBytes) : parseSize(o.hotSet),
    workload: parseWorkload(o.workload),
    warmupMs: parseDuration(o.warmup),
    runAfterMs: parseDuration(o.runAfter),
    link: { latencyMs: parseDuration(o.latency), bandwidthBytesPerSec: bandwidthArg(o.bandwidth) },
    maxDowntimeMs: parseDuration(o.maxDowntime),
    maxRounds: nonNegativeInt(o.maxRounds, "--max-rounds"),
    hybridRounds: nonNegativeInt(o.hybridRounds, "--hybrid-rounds"),
    tracking: o.tracking,
    frameStore: o.frameStore,
    kernel: { source: o.sourceKernel ?? o.kernel, destination: o.destKernel ?? o.kernel },
    timeoutMs: parseDuration(o.timeout),
    faults: {
      ...(o.dropLinkAfter !== undefined ? { dropLinkAfterPostcopyPages: nonNegativeInt(o.dropLinkAfter, "--drop-link-after") } : {}),
      ...(o.killSourceAfter !== undefined ? { killSourceAfterPostcopyPages: nonNegativeInt(o.killSourceAfter, "--kill-source-after") } : {}),
    },
  });
}

function progressMode(o: RunOptions): ProgressMode {
  if (!o.progress) return "off";
  return process.stderr.isTTY ? "bars" : "lines";
}

/** Runs one migration; a run that throws becomes a failed record (its error printed now). */
async function runOne(config: MigrationConfig, o: RunOptions, prefix: string): Promise<RunRecord> {
  const view = new ProgressView(progressMode(o), prefix);
  view.log(`${config.strategy}: ${formatBytes(config.memoryBytes)} guest, link ${formatBandwidth(config.link.bandwidthBytesPerSec)} + ${config.link.latencyMs} ms`);
  let record: RunRecord;
  let error: unknown = null;
  try {
    record = await runMigration(config, view.hooks());
  } catch (e) {
    record = failedRun(config, e);
    error = e;
  } finally {
    view.stop();
  }
  if (isFailedRun(record)) {
    console.error(`\n${prefix}error: ${record.failure}`);
    if (!(error instanceof MigrationError)) console.error(error); // not an outcome but a bug: keep its stack
  }
  return record;
}

/** Usage errors (a bad option value, an unusable output path): the message and a pointer to --help. */
function usage<T>(cmd: Command, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof RangeError || e instanceof ReportPathError) cmd.error(`error: ${e.message}`);
    throw e;
  }
}

async function prepare(cmd: Command, o: RunOptions, kind: string): Promise<ReportOptions> {
  const options: ReportOptions = { outDir: o.out, name: reportName(kind, new Date()), json: true, html: o.html, ...(o.json !== undefined ? { jsonPath: o.json } : {}) };
  try {
    await prepareOutput(options);
  } catch (e) {
    usage(cmd, () => {
      throw e;
    });
  }
  return options;
}

async function report(results: RunRecord[], options: ReportOptions): Promise<void> {
  const written = await writeReport(results, options);
  if (written.jsonPath !== null) console.log(`JSON report: ${written.jsonPath}`);
  if (written.htmlPath !== null) console.log(`HTML report: ${written.htmlPath}`);
  if (!results.every(succeeded)) process.exitCode = 1;
}

async function migrate(o: RunOptions & { strategy: Strategy }, cmd: Command): Promise<void> {
  const config = usage(cmd, () => configFromOptions(o, o.strategy));
  const out = await prepare(cmd, o, `migration-${o.strategy}`);
  const result = await runOne(config, o, "");
  if (!isFailedRun(result)) console.log(`\n${formatResultTable(result)}`);
  await report([result], out);
}

async function compare(o: RunOptions, cmd: Command): Promise<void> {
  const configs = STRATEGIES.map((strategy) => usage(cmd, () => configFromOptions(o, strategy)));
  const out = await prepare(cmd, o, "comparison");
  const results: RunRecord[] = [];
  for (const config of configs) results.push(await runOne(config, o, `[${config.strategy}] `));
  console.log(`\n${formatComparisonTable(results)}`);
  await report(results, out);
}

/** `report runs/x.json` writes runs/x.html (or <out>/x.html). */
async function renderReport(file: string, o: { out?: string }): Promise<void> {
  const results = await readResults(file);
  const htmlPath = htmlPathFor(file, o.out);
  const written = await writeReport(results, { outDir: ".", name: "", json: false, html: true, htmlPath });
  console.log(`HTML report: ${written.htmlPath}`);
}

function fail(e: unknown): void {
  if (e instanceof ReportFormatError || e instanceof ReportPathError || e instanceof RangeError) console.error(`error: ${e.message}`);
  else console.error(e);
  process.exitCode = 1;
}

export function buildProgram(): Command {
  const program = new Command()
    .name("live-migration")
    .description("Live-migrate a simulated guest between two processes over TCP using userfaultfd (precopy, postcopy, hybrid).")
    .version(VERSION, "-V, --version", "print the version")
    .showHelpAfterError("(see --help for the commands and options)");
  const migrateCmd = addRunOptions(program.command("migrate").description("run one live migration and report its metrics").showHelpAfterError("(see migrate --help for the options)"));
  migrateCmd
    .addOption(new Option("--strategy <name>", "migration strategy").choices(STRATEGIES).default(DEFAULT_CONFIG.strategy))
    .action((o: RunOptions & { strategy: Strategy }) => migrate(o, migrateCmd));
  const compareCmd = addRunOptions(program.command("compare").description("run precopy, postcopy and hybrid on the same workload, side by side").showHelpAfterError("(see compare --help for the options)"));
  compareCmd.action((o: RunOptions) => compare(o, compareCmd));
  program
    .command("report")
    .description("render the HTML report of a JSON result file: <run>.json -> <run>.html")
    .showHelpAfterError("(see report --help for the options)")
    .argument("<json>", "a JSON file written by migrate or compare")
    .option("--out <dir>", "write <run>.html into this directory instead of next to the JSON file")
    .action((file: string, o: { out?: string }) => renderReport(file, o));
  // `npm run demo -- --version` reaches the migrate command: every command answers --version
  for (const cmd of program.commands) cmd.version(VERSION, "-V, --version", "print the version");
  return program;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  buildProgram()
    .parseAsync(process.argv)
    .catch(fail);
}
