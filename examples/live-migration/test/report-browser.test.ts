/**
 * The HTML report as a browser lays it out: Debian's Chromium, headless, driven by
 * playwright-core. Checks what an HTML string cannot show: no two texts of a chart overlap
 * (marker labels, ticks, legends, axis titles), everything stays inside its chart, the latency
 * axis is logarithmic (tick positions linear in log10 of their values; every power-of-two bucket
 * the same width), demand pages get a panel tall enough to see, and the guest-throughput chart has
 * a legend and phase markers. A full-page screenshot is written for a person to look at (its path
 * is printed).
 */
import { writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeConfig } from "../src/config.ts";
import type { MigrationResult } from "../src/metrics.ts";
import { runMigration } from "../src/orchestrator.ts";
import { failedRun, type RunRecord } from "../src/report.ts";
import { renderHtml, textWidth } from "../src/report-html.ts";
import { MigrationError } from "../src/orchestrator.ts";
import { CHROMIUM, haveChromium, openBrowser, type Browser } from "./browser.ts";
import { fixtureFailedDestination, fixtureResult } from "./fixtures.ts";
import { smallConfig } from "./helpers.ts";

interface TextBox {
  cls: string;
  text: string;
  left: number;
  right: number;
  top: number;
  bottom: number;
}

interface ChartLayout {
  cls: string;
  box: TextBox;
  texts: TextBox[];
  bins: Array<{ x: number; width: number; le: number; count: number; height: number }>;
  logTicks: Array<{ center: number; us: number }>;
  panels: Array<{ cls: string; top: number; bottom: number }>;
  demandBars: Array<{ height: number }>;
  markerLines: number;
  legendItems: string[];
}

/** Runs in the page (a string, so no transpiler helper leaks into it). */
const COLLECT = `(() => {
  const box = (e) => { const r = e.getBoundingClientRect(); return { cls: e.getAttribute("class") || "", text: e.textContent || "", left: r.left, right: r.right, top: r.top, bottom: r.bottom }; };
  return [...document.querySelectorAll("svg.chart")].map((svg) => {
    const panelBox = (g) => { const r = g.querySelector(".axis").getBoundingClientRect(); const grid = [...g.querySelectorAll(".grid")].map((l) => l.getBoundingClientRect().top); return { cls: g.getAttribute("class"), top: Math.min(...grid), bottom: r.top }; };
    return {
      cls: svg.getAttribute("class"),
      box: box(svg),
      texts: [...svg.querySelectorAll("text")].map(box),
      bins: [...svg.querySelectorAll("rect.bin")].map((r) => ({ x: Number(r.getAttribute("x")), width: Number(r.getAttribute("width")), le: Number(r.dataset.leUs), count: Number(r.dataset.count), height: r.getBoundingClientRect().height })),
      logTicks: [...svg.querySelectorAll("text.log-tick")].map((t) => { const r = t.getBoundingClientRect(); return { center: (r.left + r.right) / 2, us: Number(t.dataset.us) }; }),
      panels: [...svg.querySelectorAll("g.panel")].map(panelBox),
      demandBars: [...svg.querySelectorAll("rect.bar.demand")].map((r) => ({ height: r.getBoundingClientRect().height })),
      markerLines: svg.querySelectorAll(".marker-line").length,
      legendItems: [...svg.querySelectorAll(".legend-label")].map((t) => t.textContent),
    };
  });
})()`;

const overlap = (a: TextBox, b: TextBox): boolean => a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5;

/** Layout checks every chart must pass, whatever its data. */
function checkLayout(charts: ChartLayout[]): void {
  expect(charts.length).toBeGreaterThan(0);
  for (const c of charts) {
    const where = `${c.cls}`;
    for (const t of c.texts) {
      expect({ where, text: t.text, inside: t.left >= c.box.left - 0.5 && t.right <= c.box.right + 0.5 && t.top >= c.box.top - 0.5 && t.bottom <= c.box.bottom + 0.5 }).toEqual({ where, text: t.text, inside: true });
    }
    const clashes: string[] = [];
    for (let i = 0; i < c.texts.length; i++) {
      for (let j = i + 1; j < c.texts.length; j++) if (overlap(c.texts[i]!, c.texts[j]!)) clashes.push(`"${c.texts[i]!.text}" / "${c.texts[j]!.text}"`);
    }
    expect({ where, clashes }).toEqual({ where, clashes: [] });
    // marker labels are placed from an estimate of their width: it must not be short of the real one
    for (const t of c.texts.filter((x) => x.cls.startsWith("marker-label"))) expect(t.right - t.left).toBeLessThanOrEqual(textWidth(t.text, 10));
  }
}

async function layoutOf(browser: Browser, html: string, screenshot?: string): Promise<ChartLayout[]> {
  await browser.page.setContent(html, { waitUntil: "load" });
  if (screenshot !== undefined) {
    await browser.page.screenshot({ path: screenshot, fullPage: true });
    console.log(`report screenshot: ${screenshot}`);
  }
  return (await browser.page.evaluate(COLLECT)) as ChartLayout[];
}

const reason = haveChromium() ? "" : ` (skipped: no Chromium at ${CHROMIUM}; .ci/run installs Debian's chromium, or set CHROMIUM)`;

describe.skipIf(!haveChromium())(`the report in a headless Chromium${reason}`, () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await openBrowser();
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
  }, 60_000);

  it("a hand-made run: labels apart, a true log axis with all 13 buckets, a demand panel, markers and legend on throughput", async () => {
    const shot = join(tmpdir(), `lm-report-fixture-${process.pid}.png`);
    const charts = await layoutOf(browser, renderHtml([fixtureResult()], "2026-01-01T00:00:00Z"), shot);
    checkLayout(charts);
    expect(charts.map((c) => c.cls)).toEqual(["chart pages-over-time", "chart latency-histogram", "chart guest-throughput"]);
    const [pages, latency, ops] = charts as [ChartLayout, ChartLayout, ChartLayout];

    // switchover (600 ms), resumed (603 ms) and the guest's first operation (612 ms) are close: their labels are all there, apart
    const markerTexts = pages.texts.filter((t) => t.cls.startsWith("marker-label")).map((t) => t.text);
    expect(markerTexts).toEqual(["switchover 600 ms", "resumed 603 ms", "guest ran 612 ms", "complete 900 ms"]);

    // demand pages: their own panel below the bulk panel; the tallest demand bar (2 pages on a 4-page axis) is half the panel
    expect(pages.panels.map((p) => p.cls)).toEqual(["panel bulk", "panel demand"]);
    const demand = pages.panels[1]!;
    expect(demand.top).toBeGreaterThan(pages.panels[0]!.bottom);
    expect(Math.max(...pages.demandBars.map((b) => b.height))).toBeCloseTo((demand.bottom - demand.top) / 2, 0);
    expect(pages.legendItems).toContain("postcopy demand (lower panel)");

    // latency: every power-of-two bucket from 16 µs to 65536 µs, equally wide, side by side
    expect(latency.bins.map((b) => b.le)).toEqual([16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536]);
    expect(latency.bins.map((b) => b.count)).toEqual([3, 0, 10, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1]);
    const step = latency.bins[1]!.x - latency.bins[0]!.x;
    for (const [i, b] of latency.bins.entries()) {
      expect(b.x - latency.bins[0]!.x).toBeCloseTo(i * step, 0);
      expect(b.width).toBeCloseTo(latency.bins[0]!.width, 0);
    }
    // the axis is log10: tick centres lie on one line against log10(value); decades 10 µs .. 10 ms are here
    expect(latency.logTicks.map((t) => t.us)).toEqual(expect.arrayContaining([100, 1000, 10000]));
    const [a, z] = [latency.logTicks[0]!, latency.logTicks[latency.logTicks.length - 1]!];
    const pxPerDecade = (z.center - a.center) / Math.log10(z.us / a.us);
    expect(pxPerDecade).toBeCloseTo(step / Math.log10(2), 0);
    for (const t of latency.logTicks) expect(Math.abs(t.center - (a.center + pxPerDecade * Math.log10(t.us / a.us)))).toBeLessThan(1);
    expect(latency.texts.filter((t) => t.cls.startsWith("marker-label")).map((t) => t.text)).toEqual(["p50 60 µs", "p99 60.0 ms"]);

    // guest throughput: a legend for both sides and the stopped span, and the four phase markers
    expect(ops.legendItems).toEqual(["on the source", "on the destination", "guest stopped"]);
    expect(ops.markerLines).toBe(4);
  });

  it("a comparison with a failed run, and a real migration, lay out as cleanly", async () => {
    const failed = failedRun(makeConfig({ strategy: "postcopy", memoryBytes: 16 * 1024 * 1024, hotSetBytes: 1024 * 1024 }), new MigrationError("migration failed: connection lost", { destination: fixtureFailedDestination() }));
    // markers near the right edge; p99 in the last bucket but with room to its right, where the right axis' "100%" is
    const base = fixtureResult();
    const precopy: MigrationResult = { ...base, strategy: "precopy", switchoverAtMs: 880, downtimeMs: 15, totalTimeMs: 895, faults: { ...base.faults, p99Us: 35_000 } };
    const records: RunRecord[] = [precopy, failed, fixtureResult()];
    checkLayout(await layoutOf(browser, renderHtml(records, "now")));

    const real = await runMigration(smallConfig({ strategy: "hybrid", memoryBytes: 8 * 1024 * 1024 }));
    const shot = join(tmpdir(), `lm-report-real-${process.pid}.png`);
    const html = renderHtml([real], "now");
    await writeFile(shot.replace(/\.png$/, ".html"), html);
    const charts = await layoutOf(browser, html, shot);
    checkLayout(charts);
    expect(charts.length).toBe(real.faults.histogram.length > 0 ? 3 : 2);
  }, 120_000);

  it("the metrics table's footnote markers each have their note", async () => {
    await browser.page.setContent(renderHtml([fixtureResult()], "now"));
    const { refs, notes } = (await browser.page.evaluate(`({
      refs: [...new Set([...document.querySelectorAll("sup.fn-ref")].map((s) => Number(s.textContent)))],
      notes: [...document.querySelectorAll("ol.footnotes li")].map((li) => ({ n: li.value, visible: li.getBoundingClientRect().height > 0 })),
    })`)) as { refs: number[]; notes: Array<{ n: number; visible: boolean }> };
    expect(refs).toEqual(Array.from({ length: 15 }, (_, i) => i + 1));
    expect(notes).toEqual(refs.map((n) => ({ n, visible: true })));
  });
});
