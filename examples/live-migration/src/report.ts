/**
 * Writing a run's results: JSON (the MigrationResult objects as they are) and the HTML report,
 * into an output directory (default ./reports, which git ignores).
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { MigrationResult } from "./metrics.ts";
import { renderHtml } from "./report-html.ts";

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
}

export function reportName(kind: string, when: Date): string {
  return `${kind}-${when.toISOString().replace(/[:.]/g, "-")}`;
}

export async function writeReport(results: readonly MigrationResult[], options: ReportOptions): Promise<WrittenReport> {
  const dir = resolve(options.outDir);
  await mkdir(dir, { recursive: true });
  const out: WrittenReport = { jsonPath: null, htmlPath: null };
  if (options.json) {
    out.jsonPath = resolve(options.jsonPath ?? join(dir, `${options.name}.json`));
    await writeFile(out.jsonPath, JSON.stringify(results.length === 1 ? results[0] : results, null, 2) + "\n");
  }
  if (options.html) {
    out.htmlPath = join(dir, `${options.name}.html`);
    await writeFile(out.htmlPath, renderHtml(results, new Date().toISOString()));
  }
  return out;
}

/** A JSON file that is not a migration result this version can render. */
export class ReportFormatError extends Error {
  override name = "ReportFormatError";
}

const REQUIRED_KEYS = ["strategy", "config", "pages", "bytes", "faults", "guest", "timeline", "opsTimeline", "verification", "rounds"] as const;

/** Reads results back from a JSON report (one result or an array). */
export async function readResults(path: string): Promise<MigrationResult[]> {
  let data: unknown;
  try {
    data = JSON.parse(await readFile(path, "utf8"));
  } catch (e) {
    throw new ReportFormatError(`${path}: ${e instanceof Error ? e.message : String(e)}`);
  }
  const list = (Array.isArray(data) ? data : [data]) as unknown[];
  for (const r of list) {
    const missing = typeof r === "object" && r !== null ? REQUIRED_KEYS.filter((k) => !(k in r)) : REQUIRED_KEYS;
    if (missing.length > 0) throw new ReportFormatError(`${path} does not hold migration results from this version (missing: ${missing.join(", ")})`);
  }
  const results = list as MigrationResult[];
  for (const r of results) r.guest.errors ??= []; // written before guest errors were recorded
  return results;
}
