/**
 * Writing a run's results: JSON (the MigrationResult objects as they are, or what a failed run
 * could still tell) and the HTML report, into an output directory (default ./reports, which git
 * ignores wherever it is created).
 *
 * Output paths are prepared before a run starts (`prepareOutput`), so a bad `--out` or `--json`
 * fails in a second instead of after the migration.
 */
import { randomBytes } from "node:crypto";
import { mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { basename, dirname, extname, join, resolve } from "node:path";
import type { MigrationConfig } from "./config.ts";
import type { DestMetrics } from "./dest.ts";
import type { MigrationResult, VerificationResult } from "./metrics.ts";
import { MigrationError } from "./orchestrator.ts";
import { renderHtml } from "./report-html.ts";
import type { SourceMetrics } from "./source.ts";

/**
 * A run that did not complete: the error, and whatever each side could still report (the
 * destination's memory check after a postcopy failure, its fault and page timelines).
 */
export interface FailedRun {
  strategy: MigrationConfig["strategy"];
  config: MigrationConfig;
  /** The orchestrator's account of what went wrong. */
  failure: string;
  verification: VerificationResult | null;
  destination: DestMetrics | null;
  source: SourceMetrics | null;
}

/** One entry of a report: a completed run or a failed one. */
export type RunRecord = MigrationResult | FailedRun;

export function isFailedRun(r: RunRecord): r is FailedRun {
  return "failure" in r && typeof r.failure === "string";
}

/** The record of a run that threw: a MigrationError keeps both sides' accounts, anything else only its message. */
export function failedRun(config: MigrationConfig, e: unknown): FailedRun {
  const m = e instanceof MigrationError ? e : null;
  return {
    strategy: config.strategy,
    config,
    failure: e instanceof Error ? e.message : String(e),
    verification: m?.verification ?? null,
    destination: m?.destination ?? null,
    source: m?.source ?? null,
  };
}

export interface WrittenReport {
  jsonPath: string | null;
  htmlPath: string | null;
}

export interface ReportOptions {
  outDir: string;
  /** File name without extension. */
  name: string;
  json: boolean;
  html: boolean;
  /** Overrides the JSON path. */
  jsonPath?: string;
  /** Overrides the HTML path. */
  htmlPath?: string;
}

export function reportName(kind: string, when: Date): string {
  return `${kind}-${when.toISOString().replace(/[:.]/g, "-")}`;
}

/** An output path that cannot be used; says which and why. */
export class ReportPathError extends Error {
  override name = "ReportPathError";
}

function code(e: unknown): string {
  return typeof e === "object" && e !== null && "code" in e ? String((e as { code: unknown }).code) : String(e);
}

/**
 * Creates `dir` and its missing parents, one level at a time. Node's own `mkdir(..., { recursive: true })`
 * never returns for a path under /proc (procfs answers ENOENT for a new child of an existing
 * directory, and the recursive walk takes that as "parent missing" and retries forever); this
 * walk tries each level once and reports the first refusal.
 */
export async function ensureDir(dir: string): Promise<void> {
  const missing: string[] = [];
  for (let p = resolve(dir); ; p = dirname(p)) {
    try {
      if (!(await stat(p)).isDirectory()) throw new ReportPathError(`${p} exists and is not a directory`);
      break;
    } catch (e) {
      if (e instanceof ReportPathError) throw e;
      if (code(e) === "ENOTDIR") throw new ReportPathError(`cannot use ${p}: a part of the path is a file, not a directory`);
      if (code(e) !== "ENOENT") throw new ReportPathError(`cannot use ${p}: ${code(e)}`);
      missing.push(p);
      if (dirname(p) === p) break;
    }
  }
  for (const p of missing.reverse()) {
    try {
      await mkdir(p);
    } catch (e) {
      if (code(e) !== "EEXIST") throw new ReportPathError(`cannot create the directory ${p}: ${code(e)}`);
      if (!(await stat(p).catch(() => null))?.isDirectory()) throw new ReportPathError(`cannot create the directory ${p}: it exists and is not a directory`);
    }
  }
}

/** Creates `dir` if needed and checks that a file can be created in it (then removes that file). */
async function ensureWritableDir(dir: string): Promise<void> {
  await ensureDir(dir);
  const probe = join(resolve(dir), `.write-test-${process.pid}-${randomBytes(4).toString("hex")}`);
  try {
    await writeFile(probe, "", { flag: "wx" });
  } catch (e) {
    throw new ReportPathError(`cannot write into ${resolve(dir)}: ${code(e)}`);
  }
  await rm(probe, { force: true });
}

/** Checks that `file` can be written: its directory is created and writable, and it is not a directory itself. */
async function ensureWritableFile(file: string): Promise<void> {
  const s = await stat(file).catch(() => null);
  if (s?.isDirectory() === true) throw new ReportPathError(`${resolve(file)} is a directory, not a file`);
  await ensureWritableDir(dirname(resolve(file)));
}

/** The paths a report will be written to, created and checked before the run (throws ReportPathError). */
export async function prepareOutput(options: ReportOptions): Promise<WrittenReport> {
  const paths = reportPaths(options);
  for (const [what, path] of [["JSON", paths.jsonPath], ["HTML", paths.htmlPath]] as const) {
    if (path === null) continue;
    try {
      await ensureWritableFile(path);
    } catch (e) {
      if (e instanceof ReportPathError) throw new ReportPathError(`cannot write the ${what} report ${path}: ${e.message}`);
      throw e;
    }
  }
  return paths;
}

function reportPaths(options: ReportOptions): WrittenReport {
  const dir = resolve(options.outDir);
  return {
    jsonPath: options.json ? resolve(options.jsonPath ?? join(dir, `${options.name}.json`)) : null,
    htmlPath: options.html ? resolve(options.htmlPath ?? join(dir, `${options.name}.html`)) : null,
  };
}

export async function writeReport(results: readonly RunRecord[], options: ReportOptions, generatedAt = new Date().toISOString()): Promise<WrittenReport> {
  const out = reportPaths(options);
  if (out.jsonPath !== null) {
    await ensureDir(dirname(out.jsonPath));
    await writeFile(out.jsonPath, JSON.stringify(results.length === 1 ? results[0] : results, null, 2) + "\n");
  }
  if (out.htmlPath !== null) {
    await ensureDir(dirname(out.htmlPath));
    await writeFile(out.htmlPath, renderHtml(results, generatedAt));
  }
  return out;
}

/** `runs/x.json` -> `runs/x.html` (or `<outDir>/x.html`). */
export function htmlPathFor(jsonPath: string, outDir?: string): string {
  const ext = extname(jsonPath);
  const base = basename(jsonPath, ext.toLowerCase() === ".json" ? ext : "");
  return resolve(outDir ?? dirname(resolve(jsonPath)), `${base}.html`);
}

/** A JSON file that is not a migration result this version can render. */
export class ReportFormatError extends Error {
  override name = "ReportFormatError";
}

const REQUIRED_KEYS = ["strategy", "config", "pages", "bytes", "faults", "guest", "timeline", "opsTimeline", "verification", "rounds"] as const;
const REQUIRED_FAILED_KEYS = ["strategy", "config", "failure"] as const;

/** Reads results back from a JSON report (one result or an array; completed or failed runs). */
export async function readResults(path: string): Promise<RunRecord[]> {
  let data: unknown;
  try {
    data = JSON.parse(await readFile(path, "utf8"));
  } catch (e) {
    throw new ReportFormatError(`${path}: ${e instanceof Error ? e.message : String(e)}`);
  }
  const list = (Array.isArray(data) ? data : [data]) as unknown[];
  if (list.length === 0) throw new ReportFormatError(`${path} holds no migration results`);
  for (const r of list) {
    const isObject = typeof r === "object" && r !== null;
    const keys: readonly string[] = isObject && "failure" in r ? REQUIRED_FAILED_KEYS : REQUIRED_KEYS;
    const missing = isObject ? keys.filter((k) => !(k in r)) : keys;
    if (missing.length > 0) throw new ReportFormatError(`${path} does not hold migration results from this version (missing: ${missing.join(", ")})`);
  }
  const results = list as RunRecord[];
  for (const r of results) if (!isFailedRun(r)) r.guest.errors ??= []; // written before guest errors were recorded
  return results;
}
