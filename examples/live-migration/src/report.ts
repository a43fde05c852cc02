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

/** Reads results back from a JSON report (one result or an array). */
export async function readResults(path: string): Promise<MigrationResult[]> {
  const data = JSON.parse(await readFile(path, "utf8")) as MigrationResult | MigrationResult[];
  const list = Array.isArray(data) ? data : [data];
  for (const r of list) {
    if (typeof r !== "object" || r === null || typeof r.strategy !== "string" || typeof r.timeline !== "object") {
      throw new Error(`${path} does not hold migration results`);
    }
  }
  return list;
}
