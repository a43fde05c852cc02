/**
 * The HTML report: well-formed (every tag closed, properly nested), charts present, and
 * self-contained (no external URL of any kind), so a browser opens it offline.
 */
import { mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import type { MigrationResult } from "../src/metrics.ts";
import { runMigration } from "../src/orchestrator.ts";
import { readResults, writeReport } from "../src/report.ts";
import { renderHtml } from "../src/report-html.ts";
import { formatComparisonTable, formatResultTable } from "../src/report-text.ts";
import { smallConfig } from "./helpers.ts";

const VOID = new Set(["meta", "br", "hr", "img", "link", "input"]);

/** A strict tag matcher: returns the problems found (empty = well-formed), and the tag counts. */
function checkWellFormed(html: string): { problems: string[]; tags: Map<string, number> } {
  const problems: string[] = [];
  const tags = new Map<string, number>();
  const stack: string[] = [];
  const body = html.replace(/^<!DOCTYPE html>\s*/, "");
  if (body.length === html.length) problems.push("no <!DOCTYPE html>");
  const re = /<(\/?)([a-zA-Z][a-zA-Z0-9-]*)((?:\s+[a-zA-Z_:][-a-zA-Z0-9_:.]*="[^"<>]*")*)\s*(\/?)>|<|>/g;
  for (const m of body.matchAll(re)) {
    if (m[2] === undefined) {
      problems.push(`stray "${m[0]}" at ${m.index}`);
      continue;
    }
    const [, closing, name, , selfClosing] = m;
    const tag = name!.toLowerCase();
    if (closing === "/") {
      const open = stack.pop();
      if (open !== tag) problems.push(`</${tag}> closes <${open ?? "nothing"}> at ${m.index}`);
    } else {
      tags.set(tag, (tags.get(tag) ?? 0) + 1);
      if (selfClosing !== "/" && !VOID.has(tag)) stack.push(tag);
      else if (selfClosing !== "/" && VOID.has(tag)) problems.push(`void <${tag}> not self-closed at ${m.index}`);
    }
  }
  if (stack.length > 0) problems.push(`unclosed: ${stack.join(", ")}`);
  return { problems, tags };
}

describe("the report", () => {
  let results: MigrationResult[] = [];
  beforeAll(async () => {
    results = [await runMigration(smallConfig({ strategy: "hybrid", memoryBytes: 8 * 1024 * 1024 }))];
  }, 60_000);

  it("the tag checker itself catches broken markup", () => {
    expect(checkWellFormed("<!DOCTYPE html><p><b>x</p></b>").problems.length).toBeGreaterThan(0);
    expect(checkWellFormed("<!DOCTYPE html><div>a < b</div>").problems).toEqual([`stray "<" at 7`]);
    expect(checkWellFormed('<!DOCTYPE html><svg><rect x="1" /></svg>').problems).toEqual([]);
  });

  it("is well-formed HTML with the three charts as inline SVG", () => {
    const html = renderHtml(results, "2026-01-01T00:00:00Z");
    const { problems, tags } = checkWellFormed(html);
    expect(problems).toEqual([]);
    expect(tags.get("svg")).toBe(3);
    expect(html).toContain('class="chart pages-over-time"');
    expect(html).toContain('class="chart latency-histogram"');
    expect(html).toContain('class="chart guest-throughput"');
    expect(html).toMatch(/<rect [^>]*class="bar precopy"/);
    expect(html).toMatch(/<rect [^>]*class="bar (demand|background)"/);
    expect(tags.get("table")).toBeGreaterThanOrEqual(2);
    expect(html).toContain("byte for byte");
  });

  it("has no external URL: no http(s), no protocol-relative or remote src/href, no script", () => {
    const html = renderHtml(results, "2026-01-01T00:00:00Z");
    expect(html).not.toMatch(/https?:/i);
    expect(html).not.toMatch(/\b(src|href)\s*=/i);
    expect(html).not.toMatch(/url\(/i);
    expect(html).not.toMatch(/@import/i);
    expect(html).not.toMatch(/<script/i);
  });

  it("a comparison puts every strategy in one table and one section each", () => {
    const three = ["precopy", "postcopy", "hybrid"].map((strategy) => ({ ...results[0]!, strategy }) as MigrationResult);
    const html = renderHtml(three, "now");
    expect(checkWellFormed(html).problems).toEqual([]);
    expect(checkWellFormed(html).tags.get("svg")).toBe(9);
    expect(formatComparisonTable(three)).toMatch(/metric\s+precopy\s+postcopy\s+hybrid/);
    expect(formatResultTable(results[0]!)).toMatch(/downtime/);
  });

  it("is written next to a JSON file that reads back into the same results", async () => {
    const dir = await mkdtemp(join(tmpdir(), "lm-report-"));
    const written = await writeReport(results, { outDir: dir, name: "r", json: true, html: true });
    expect(written.htmlPath).toBe(join(dir, "r.html"));
    expect(await readFile(written.htmlPath!, "utf8")).toMatch(/^<!DOCTYPE html>/);
    const back = await readResults(written.jsonPath!);
    expect(back[0]!.verification).toEqual(results[0]!.verification);
    expect(back[0]!.pages).toEqual(results[0]!.pages);
  });
});
