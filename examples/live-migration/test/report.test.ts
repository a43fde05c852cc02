/**
 * The HTML report: well-formed (every tag closed, properly nested), charts present, and
 * self-contained (no external URL of any kind), so a browser opens it offline; the chart
 * geometry helpers (log-axis bins and ticks, marker label rows); failed runs; footnotes; and the
 * output paths (created before a run, never a hang). What a browser makes of the report is in
 * report-browser.test.ts.
 */
import { mkdir, mkdtemp, readFile, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import type { MigrationResult } from "../src/metrics.ts";
import { MigrationError, runMigration } from "../src/orchestrator.ts";
import { ensureDir, failedRun, htmlPathFor, isFailedRun, prepareOutput, readResults, ReportPathError, writeReport } from "../src/report.ts";
import { latencyBins, layoutLabels, logTicks, renderHtml, textWidth } from "../src/report-html.ts";
import { FOOTNOTES, formatComparisonTable, formatResultTable, succeeded, verdict } from "../src/report-text.ts";
import { FIXTURE_HISTOGRAM, fixtureFailedDestination, fixtureResult } from "./fixtures.ts";
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
    expect((back[0] as MigrationResult).pages).toEqual(results[0]!.pages);
  });
});

describe("chart geometry", () => {
  it("the latency histogram keeps every power-of-two bucket between the fastest and the slowest, empty ones included", () => {
    const bins = latencyBins(FIXTURE_HISTOGRAM);
    // 16, 32, ..., 65536 µs: log2(65536 / 16) + 1 = 13 buckets, each (le/2, le]
    expect(bins.map((b) => b.leUs)).toEqual([16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536]);
    expect(bins.map((b) => b.count)).toEqual([3, 0, 10, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1]);
    expect(bins.every((b) => b.loUs === b.leUs / 2)).toBe(true);
    expect(latencyBins([])).toEqual([]);
  });

  it("log-axis ticks are decades, with 2x and 5x (or 3x) only where a decade is wide enough to label them", () => {
    expect(logTicks(8, 65536, 100).major).toEqual([10, 100, 1000, 10000]);
    expect(logTicks(8, 65536, 100).minor).toContain(20);
    expect(logTicks(8, 1000, 300).major).toEqual([10, 20, 50, 100, 200, 500, 1000]);
    expect(logTicks(8, 1000, 150).major).toEqual([10, 30, 100, 300, 1000]);
  });

  it("marker labels 3 ms apart go to different rows and never overlap, by their own width estimate", () => {
    const items = [
      { x: 400, text: "switchover 600 ms" },
      { x: 402, text: "resumed 603 ms" },
      { x: 404, text: "complete 605 ms" },
      { x: 750, text: "near the right edge" },
    ];
    const placed = layoutLabels(items, 10, 0, 760);
    expect(placed).toHaveLength(4);
    // three labels wider than the 4 px between their markers: they cannot all share one row
    expect(new Set(placed.slice(0, 3).map((p) => p.row)).size).toBeGreaterThan(1);
    for (const a of placed) {
      expect(a.left).toBeGreaterThanOrEqual(0);
      expect(a.left + a.width).toBeLessThanOrEqual(760);
      for (const b of placed) if (a !== b && a.row === b.row) expect(a.left + a.width <= b.left || b.left + b.width <= a.left).toBe(true);
    }
    // the label near the right edge is placed left of its marker
    expect(placed[3]!.left + placed[3]!.width).toBeLessThanOrEqual(750);
  });

  it("the width estimate grows with the text and with the font", () => {
    expect(textWidth("switchover 600 ms", 10)).toBeGreaterThan(textWidth("p50 60 µs", 10));
    expect(textWidth("abc", 11)).toBeGreaterThan(textWidth("abc", 10));
  });
});

describe("the report of a hand-made run", () => {
  const r = fixtureResult();
  const html = renderHtml([r], "2026-01-01T00:00:00Z");

  it("draws demand pages in their own panel, on their own axis, beside the bulk pages", () => {
    expect(html).toMatch(/<g class="panel bulk">/);
    expect(html).toMatch(/<g class="panel demand">/);
    expect((html.match(/class="bar demand"/g) ?? []).length).toBe(3);
    // the demand panel's axis tops out at 4 pages (the largest bar holds 2), not at the bulk panel's
    expect(html).toMatch(/class="tick y-tick">4<\/text>/);
  });

  it("draws every latency bin, the cumulative share and p50 / p99", () => {
    expect((html.match(/class="bin"/g) ?? []).length).toBe(13);
    expect(html).toContain('class="cdf"');
    expect(html).toMatch(/class="marker-label p50">p50 60 µs</);
    expect(html).toMatch(/class="marker-label p99">p99 60\.0 ms</);
    expect(html).toContain("2 further faults were resolved by a page already in flight");
  });

  it("puts phase markers and a legend on both time charts", () => {
    for (const cls of ["pages-over-time", "guest-throughput"]) {
      const chart = new RegExp(`<svg class="chart ${cls}"[^]*?</svg>`).exec(html)![0];
      for (const m of ["switchover", "resumed", "complete"]) expect(chart).toMatch(new RegExp(`class="marker-label ${m}">${m} `));
      expect(chart).toContain('class="marker-label first-op">guest ran 612 ms<');
      expect(chart).toContain('<g class="legend">');
      expect(chart).toContain('class="stopped"');
    }
    const ops = /<svg class="chart guest-throughput"[^]*?<\/svg>/.exec(html)![0];
    expect(ops).toContain(">on the source<");
    expect(ops).toContain(">on the destination<");
  });

  it("footnotes the two downtimes, the virtual times and the duplicates, in the HTML and in the terminal table", () => {
    const text = formatResultTable(r);
    for (const key of ["downtime", "guestDowntime", "virtualDowntime", "virtual", "duplicate", "total", "faultBlocked", "queuedAhead"] as const) {
      expect(html).toContain(FOOTNOTES[key]);
      expect(text).toContain(FOOTNOTES[key]);
    }
    expect(text).toMatch(/^downtime \[1\] /m);
    expect(text).toMatch(/^guest-experienced downtime \[2\] +12\.0 ms$/m);
    expect(text).toMatch(/^virtual downtime \[4\] /m);
    expect(text).toMatch(/^ {2}of which duplicates \[7\] /m);
    expect(text).toMatch(/^demand pages' connection \[12\] +own \(preempt\)$/m);
    expect(text).toMatch(/^queued ahead of a demand page p50 \/ p99 \[13\] +0 B \/ 8\.0 KiB \(1\.20 ms\)$/m);
    expect(html).toMatch(/<td>downtime<sup class="fn-ref">1<\/sup><\/td>/);
    expect(text).toMatch(/^peak memory: source \/ destination process \[15\] +180 MiB \/ 170 MiB$/m);
    expect((html.match(/<li value="/g) ?? []).length).toBe(15);
  });

  it("leaves out the rows a result from before those metrics does not have", () => {
    const old = fixtureResult();
    delete old.guestDowntimeMs;
    delete old.faultBlockedMs;
    delete old.transport;
    delete old.hostMemory;
    const text = formatResultTable(old);
    expect(text).not.toMatch(/^(guest-experienced downtime|guest time blocked in faults|demand pages' connection|queued ahead|receiver-blocked|peak memory)/m);
    expect(text).toMatch(/^virtual downtime \[3\] /m);
    expect(renderHtml([old], "now")).not.toContain("guest ran");
  });
});

describe("a failed run", () => {
  const error = new MigrationError("migration failed: connection to the source lost during postcopy", {
    verification: { ok: true, scope: "partial", pagesChecked: 906, mismatchedPages: 0, staleReads: 0, missingPages: 3190, filledMissingPages: 0, firstMismatches: [] },
    destination: fixtureFailedDestination(),
  });
  const record = failedRun(makeFixtureConfig(), error);

  it("keeps the error and both sides' accounts", () => {
    expect(isFailedRun(record)).toBe(true);
    expect(record.failure).toBe(error.message);
    expect(record.verification?.missingPages).toBe(3190);
    expect(record.destination?.received.background).toBe(900);
    expect(succeeded(record)).toBe(false);
    expect(verdict(record)).toBe("FAILED (the migration did not complete; 906 received pages are correct, 3,190 never arrived)");
    expect(failedRun(makeFixtureConfig(), new TypeError("bug")).failure).toBe("bug");
  });

  it("renders a well-formed report with the error, what the destination recorded, and its charts", () => {
    const html = renderHtml([record], "now");
    expect(checkWellFormed(html).problems).toEqual([]);
    expect(html).toContain('<pre class="failure">migration failed: connection to the source lost during postcopy</pre>');
    expect(html).toMatch(/<td>pages never received<\/td><td class="num">3,190<\/td>/);
    expect(checkWellFormed(html).tags.get("svg")).toBe(3);
    expect(html).not.toContain('class="metrics"'); // no table of dashes when no run completed
  });

  it("sits beside completed runs in a comparison, and its JSON reads back", async () => {
    const both = [fixtureResult(), record];
    expect(formatComparisonTable(both)).toMatch(/metric\s+hybrid\s+postcopy \(failed\)\n/);
    const dir = await mkdtemp(join(tmpdir(), "lm-report-"));
    const written = await writeReport(both, { outDir: dir, name: "cmp", json: true, html: true }, "now");
    const back = await readResults(written.jsonPath!);
    expect(back.map(isFailedRun)).toEqual([false, true]);
    expect(renderHtml(back, "now")).toBe(renderHtml(both, "now"));
  });
});

function makeFixtureConfig(): MigrationResult["config"] {
  return { ...fixtureResult().config, strategy: "postcopy" };
}

describe("output paths", () => {
  it("creates missing directories level by level", async () => {
    const dir = await mkdtemp(join(tmpdir(), "lm-paths-"));
    await ensureDir(join(dir, "a", "b", "c"));
    const paths = await prepareOutput({ outDir: join(dir, "x", "y"), name: "run", json: true, html: true });
    expect(paths).toEqual({ jsonPath: join(dir, "x", "y", "run.json"), htmlPath: join(dir, "x", "y", "run.html") });
  });

  it("refuses a directory under /proc at once (Node's recursive mkdir never returns there)", async () => {
    // procfs answers ENOENT to mkdir of a new entry in an existing directory (fs/proc/root.c has no mkdir)
    await expect(ensureDir("/proc/nope/deeper")).rejects.toThrow(new ReportPathError("cannot create the directory /proc/nope: ENOENT"));
  }, 10_000);

  it("refuses a path through a file, a dangling symlink, and a JSON path that is a directory", async () => {
    const dir = await mkdtemp(join(tmpdir(), "lm-paths-"));
    await writeFile(join(dir, "file"), "");
    await expect(ensureDir(join(dir, "file", "sub"))).rejects.toThrow(`cannot use ${join(dir, "file", "sub")}: a part of the path is a file, not a directory`);
    await symlink(join(dir, "gone"), join(dir, "dangling"));
    await expect(ensureDir(join(dir, "dangling", "sub"))).rejects.toThrow(/cannot create the directory .*dangling: it exists and is not a directory/);
    await mkdir(join(dir, "d.json"));
    await expect(prepareOutput({ outDir: dir, name: "r", json: true, html: false, jsonPath: join(dir, "d.json") })).rejects.toThrow(/d\.json is a directory, not a file/);
  });

  it("report <run>.json renders <run>.html beside it, or in --out", () => {
    expect(htmlPathFor("/x/runs/a.json")).toBe("/x/runs/a.html");
    expect(htmlPathFor("/x/runs/a.JSON")).toBe("/x/runs/a.html");
    expect(htmlPathFor("/x/runs/a.txt")).toBe("/x/runs/a.txt.html");
    expect(htmlPathFor("/x/runs/a.json", "/y")).toBe("/y/a.html");
  });
});
