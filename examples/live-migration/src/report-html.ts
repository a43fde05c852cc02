/**
 * The self-contained HTML report: inline CSS and inline SVG charts, no script, no external URL,
 * so a browser opens it offline. Every tag is closed and every attribute quoted (XHTML-style) so
 * a test can check well-formedness with a plain tag matcher.
 *
 * Charts, per run:
 * - pages received over time: bulk pages (precopy rounds, stop-and-copy, background push) as
 *   stacked bars, and postcopy demand pages in a panel of their own with their own axis (a few
 *   demand pages next to thousands of background pages would not show on one axis);
 * - the destination's fault latency: the power-of-two µs buckets (as QEMU's
 *   postcopy-latency-dist) on a logarithmic time axis, every bucket between the fastest and the
 *   slowest drawn (empty ones too), with the cumulative share on a second axis and p50/p99;
 * - guest throughput on each side.
 * Both time charts share one time axis and show the phases (switchover, resumed, complete, and
 * the span the guest was stopped). Marker labels are laid out in rows so that none overlap, from
 * a conservative estimate of their width (the report has no script to measure text).
 */
import { KIND_NAMES, type KindName, type LatencySummary, type MigrationResult, type OpsSample, type TimelineData } from "./metrics.ts";
import type { DestMetrics } from "./dest.ts";
import type { FailedRun, RunRecord } from "./report.ts";
import { describeSetup, footnotes, ms, tableRows, us, verdict } from "./report-text.ts";

export const KIND_COLORS: Readonly<Record<KindName, string>> = {
  precopy: "#4e79a7",
  "stop-copy": "#f28e2b",
  demand: "#e15759",
  background: "#59a14f",
};

const SIDE_COLORS = { source: "#4e79a7", destination: "#e15759" } as const;
const LATENCY_COLOR = "#e15759";
const CDF_COLOR = "#333333";

export function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

const W = 760;
const LEFT = 64;
const RIGHT = 56;
const PLOT_W = W - LEFT - RIGHT;
const X0 = LEFT;
const X1 = W - RIGHT;
const MAX_BARS = 160;
/** Font sizes in px (also in the CSS below). */
const TICK_FONT = 10;
const LABEL_FONT = 11;
const ROW_H = 13;

const fmt = (n: number): string => (Number.isInteger(n) ? String(n) : n.toFixed(1));

/**
 * A generous estimate of a text's rendered width (px) in a sans-serif font, per character class:
 * the report has no script, so labels are placed from this and a browser test checks the result.
 */
export function textWidth(s: string, fontPx: number): number {
  let em = 0;
  for (const ch of s) {
    if ("mwMWµ%@".includes(ch)) em += 1.0;
    else if (/[A-Z]/.test(ch)) em += 0.78;
    else if ("iljtfrI.,:;'|!() ".includes(ch)) em += 0.42;
    else em += 0.64;
  }
  return em * fontPx + 2;
}

/** A round axis maximum whose quarters are round too; counts below 100 get a multiple of 4 so the quarter ticks are integers. */
function niceMax(v: number, counts = false): number {
  if (counts && v < 100) return Math.max(4, 4 * Math.ceil(v / 4));
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 4, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** A round step (1, 2 or 5 times a power of ten) of at least `v`. */
function niceStep(v: number): number {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function compact(n: number): string {
  if (n >= 1e6) return `${+(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${+(n / 1e3).toFixed(1)}k`;
  return String(+n.toFixed(1));
}

/** Short latency labels: "500µs", "1ms", "20ms", "1s". */
export function shortUs(n: number): string {
  if (n < 1000) return `${+n.toPrecision(3)}µs`;
  if (n < 1e6) return `${+(n / 1000).toPrecision(3)}ms`;
  return `${+(n / 1e6).toPrecision(3)}s`;
}

interface Box {
  left: number;
  right: number;
}

interface PlacedLabel {
  text: string;
  /** The point the label belongs to (a marker line). */
  x: number;
  left: number;
  width: number;
  /** 0 = the row nearest the plot. */
  row: number;
}

/**
 * Places labels for vertical markers in rows above a plot so that no two overlap: each label goes
 * right of its marker (left of it near the right edge), in the lowest row where it fits and covers
 * no higher label's leader line; failing that on the other side; failing that in any free row
 * (one above every placed label always is), so it terminates.
 */
export function layoutLabels(items: ReadonlyArray<{ x: number; text: string }>, fontPx: number, minX = 0, maxX = W): PlacedLabel[] {
  const placed: PlacedLabel[] = [];
  const GAP = 4;
  const overlaps = (a: Box, b: Box): boolean => a.left < b.right + GAP && b.left < a.right + GAP;
  const clamp = (left: number, width: number): number => Math.max(minX, Math.min(left, maxX - width));
  for (const item of [...items].sort((a, b) => a.x - b.x)) {
    const width = textWidth(item.text, fontPx);
    const right = item.x + 3;
    const left = item.x - 3 - width;
    const candidates = right + width <= maxX ? [right, clamp(left, width)] : [clamp(left, width), clamp(right, width)];
    const fits = (left: number, row: number, strict: boolean): boolean => {
      const box = { left, right: left + width };
      return !placed.some(
        (p) =>
          (p.row === row && overlaps(box, { left: p.left, right: p.left + p.width })) ||
          // a label in a higher row has its leader line through this row
          (strict && p.row > row && p.x >= box.left - GAP && p.x <= box.right + GAP),
      );
    };
    // first choice: its preferred side in any of the first rows, keeping leader lines clear;
    // then either side; last, any row (one above all others is always free)
    const passes = [
      { strict: true, sides: candidates.slice(0, 1), rows: 4 },
      { strict: true, sides: candidates, rows: 4 },
      { strict: false, sides: candidates.slice(0, 1), rows: placed.length + 1 },
    ];
    search: for (const pass of passes) {
      for (let row = 0; row < pass.rows; row++) {
        for (const left of pass.sides) {
          if (fits(left, row, pass.strict)) {
            placed.push({ text: item.text, x: item.x, left, width, row });
            break search;
          }
        }
      }
    }
  }
  return placed;
}

function rowsOf(labels: readonly PlacedLabel[]): number {
  return labels.reduce((m, l) => Math.max(m, l.row + 1), 0);
}

type Swatch = (x: number, y: number) => string;

const rectSwatch =
  (color: string, cls = ""): Swatch =>
  (x, y) =>
    `<rect x="${fmt(x)}" y="${fmt(y)}" width="10" height="10" fill="${color}"${cls === "" ? "" : ` class="${cls}"`} />`;
const lineSwatch =
  (color: string): Swatch =>
  (x, y) =>
    `<line x1="${fmt(x)}" y1="${fmt(y + 5)}" x2="${fmt(x + 10)}" y2="${fmt(y + 5)}" stroke="${color}" stroke-width="2" />`;

/** Legend entries laid out left to right from `y` (a text baseline), wrapping; returns the markup and its height. */
function legendRow(entries: ReadonlyArray<{ label: string; swatch: Swatch }>, y: number): { svg: string; height: number } {
  const parts: string[] = [];
  let x = X0;
  let row = 0;
  for (const e of entries) {
    const w = 14 + textWidth(e.label, TICK_FONT);
    if (x + w > X1 && x > X0) {
      x = X0;
      row++;
    }
    const yy = y + row * 16;
    parts.push(`<g class="legend-item">${e.swatch(x, yy - 9)}<text x="${fmt(x + 14)}" y="${fmt(yy)}" class="legend-label">${esc(e.label)}</text></g>`);
    x += w + 14;
  }
  return { svg: `<g class="legend">${parts.join("")}</g>`, height: (row + 1) * 16 };
}

function svg(title: string, body: string, cls: string, height: number): string {
  return `<svg class="chart ${cls}" viewBox="0 0 ${W} ${fmt(height)}" width="${W}" height="${fmt(height)}" role="img" aria-label="${esc(title)}"><title>${esc(title)}</title>${body}</svg>`;
}

/** Horizontal grid and y ticks of one panel (linear), on the left or the right. */
function yAxis(top: number, bottom: number, yMax: number, label: string, side: "left" | "right" = "left", tickText: (v: number) => string = compact): string {
  const parts: string[] = [];
  for (let i = 0; i <= 4; i++) {
    const y = bottom - ((bottom - top) * i) / 4;
    if (side === "left") parts.push(`<line x1="${X0}" y1="${fmt(y)}" x2="${X1}" y2="${fmt(y)}" class="grid" />`);
    const x = side === "left" ? X0 - 6 : X1 + 6;
    parts.push(`<text x="${x}" y="${fmt(y + 3.5)}" text-anchor="${side === "left" ? "end" : "start"}" class="tick y-tick">${esc(tickText((yMax * i) / 4))}</text>`);
  }
  const cx = side === "left" ? 14 : W - 8;
  const cy = (top + bottom) / 2;
  parts.push(`<text x="${cx}" y="${fmt(cy)}" text-anchor="middle" class="axis-label y-label" transform="rotate(-90 ${cx} ${fmt(cy)})">${esc(label)}</text>`);
  parts.push(`<line x1="${X0}" y1="${fmt(bottom)}" x2="${X1}" y2="${fmt(bottom)}" class="axis" />`);
  return parts.join("");
}

// --- time charts ---------------------------------------------------------------------------

/** What the two time charts draw for one run (completed or failed). */
interface TimeView {
  strategy: string;
  timeline: TimelineData;
  opsTimeline: readonly OpsSample[];
  /** ms since the migration start; null when unknown (a failed run). */
  switchoverAtMs: number | null;
  resumedAtMs: number | null;
  completeAtMs: number | null;
  /** The guest's first completed operation on the destination (ms since start); null when unknown. */
  firstOpAtMs: number | null;
  spanMs: number;
}

function timelineSpanMs(t: TimelineData): number {
  return Math.max(0, ...KIND_NAMES.map((k) => t.series[k].length)) * t.bucketMs;
}

function timeView(r: RunRecord): TimeView | null {
  if ("failure" in r) {
    const d = (r as FailedRun).destination;
    if (d === null) return null;
    const last = Math.max(0, ...d.opsTimeline.map((o) => o.tMs));
    return { strategy: r.strategy, timeline: d.timeline, opsTimeline: d.opsTimeline, switchoverAtMs: null, resumedAtMs: null, completeAtMs: null, firstOpAtMs: null, spanMs: Math.max(1, timelineSpanMs(d.timeline), last) };
  }
  const last = Math.max(0, ...r.opsTimeline.map((o) => o.tMs));
  return {
    strategy: r.strategy,
    timeline: r.timeline,
    opsTimeline: r.opsTimeline,
    switchoverAtMs: r.switchoverAtMs,
    resumedAtMs: r.switchoverAtMs + r.downtimeMs,
    completeAtMs: r.totalTimeMs,
    firstOpAtMs: r.guestDowntimeMs === undefined ? null : r.switchoverAtMs + r.guestDowntimeMs,
    spanMs: Math.max(1, r.totalTimeMs, timelineSpanMs(r.timeline), last),
  };
}

function timeX(v: TimeView, t: number): number {
  return X0 + (Math.min(Math.max(0, t), v.spanMs) / v.spanMs) * PLOT_W;
}

function timeTicks(v: TimeView, y: number): string {
  const step = niceStep(v.spanMs / 6);
  const parts: string[] = [];
  for (let t = 0; t <= v.spanMs + 1e-9; t += step) {
    parts.push(`<line x1="${fmt(timeX(v, t))}" y1="${fmt(y)}" x2="${fmt(timeX(v, t))}" y2="${fmt(y + 4)}" class="axis" />`);
    parts.push(`<text x="${fmt(timeX(v, t))}" y="${fmt(y + 15)}" text-anchor="middle" class="tick x-tick">${t === 0 ? "0" : esc(ms(t))}</text>`);
  }
  return parts.join("");
}

/** The phase markers of a run: their labels (in rows above `plotTop`) and lines down to `bottom`. */
function phaseMarkers(v: TimeView): Array<{ x: number; text: string; cls: string }> {
  const out: Array<{ x: number; text: string; cls: string }> = [];
  if (v.switchoverAtMs !== null) out.push({ x: timeX(v, v.switchoverAtMs), text: `switchover ${ms(v.switchoverAtMs)}`, cls: "switchover" });
  if (v.resumedAtMs !== null) out.push({ x: timeX(v, v.resumedAtMs), text: `resumed ${ms(v.resumedAtMs)}`, cls: "resumed" });
  // the guest's first operation after the move, when it is not simply the resume
  if (v.firstOpAtMs !== null && v.resumedAtMs !== null && v.firstOpAtMs - v.resumedAtMs >= 1) {
    out.push({ x: timeX(v, v.firstOpAtMs), text: `guest ran ${ms(v.firstOpAtMs)}`, cls: "first-op" });
  }
  if (v.completeAtMs !== null) out.push({ x: timeX(v, v.completeAtMs), text: `complete ${ms(v.completeAtMs)}`, cls: "complete" });
  return out;
}

/**
 * Marker labels in their rows (row 0 just above `plotTop`) and dashed lines from each label down
 * to `bottom`; every line is drawn before any label, and labels have a white halo, so a label
 * stays legible where another marker's line passes behind it.
 */
function drawMarkers(markers: ReadonlyArray<{ x: number; text: string; cls: string }>, plotTop: number, bottom: number): string {
  const placed = layoutLabels(markers, TICK_FONT, X0, X1).map((p) => ({ ...p, cls: markers.find((q) => q.x === p.x && q.text === p.text)!.cls, baseline: plotTop - 4 - p.row * ROW_H }));
  const lines = placed.map((p) => `<line x1="${fmt(p.x)}" y1="${fmt(p.baseline - 8)}" x2="${fmt(p.x)}" y2="${fmt(bottom)}" class="marker-line ${p.cls}" />`);
  const labels = placed.map((p) => `<text x="${fmt(p.left)}" y="${fmt(p.baseline)}" class="marker-label ${p.cls}">${esc(p.text)}</text>`);
  return `<g class="markers">${lines.join("")}${labels.join("")}</g>`;
}

function markerRows(markers: ReadonlyArray<{ x: number; text: string }>): number {
  return rowsOf(layoutLabels(markers, TICK_FONT, X0, X1));
}

/** The span in which the guest ran nowhere (switchover to resume), shaded. */
function stoppedShade(v: TimeView, top: number, bottom: number): string {
  if (v.switchoverAtMs === null || v.resumedAtMs === null) return "";
  const a = timeX(v, v.switchoverAtMs);
  const b = timeX(v, v.resumedAtMs);
  return `<rect x="${fmt(a)}" y="${fmt(top)}" width="${fmt(Math.max(1, b - a))}" height="${fmt(bottom - top)}" class="stopped"><title>guest stopped: ${esc(ms(v.resumedAtMs - v.switchoverAtMs))}</title></rect>`;
}

const STOPPED_SWATCH = rectSwatch("#000000", "stopped");

/** Per-bar sums of the timeline, grouped so that at most MAX_BARS bars are drawn. */
function bars(v: TimeView): { group: number; count: number; sums: Record<KindName, number[]> } {
  const { series } = v.timeline;
  const n = Math.max(1, ...KIND_NAMES.map((k) => series[k].length));
  const group = Math.ceil(n / MAX_BARS);
  const count = Math.ceil(n / group);
  const sums = Object.fromEntries(
    KIND_NAMES.map((k) => [k, Array.from({ length: count }, (_, b) => series[k].slice(b * group, (b + 1) * group).reduce((a, x) => a + x, 0))]),
  ) as Record<KindName, number[]>;
  return { group, count, sums };
}

const BULK_KINDS = ["precopy", "stop-copy", "background"] as const satisfies readonly KindName[];

/**
 * Pages received per time bucket: bulk pages stacked in the upper panel, demand pages in the
 * lower panel on their own axis, phase markers across both.
 */
export function pagesChart(r: RunRecord): string {
  const v = timeView(r);
  if (v === null) return `<p class="empty">The destination's page timeline was lost with the run.</p>`;
  const { group, count, sums } = bars(v);
  const demandTotal = sums.demand.reduce((a, x) => a + x, 0);
  const markers = phaseMarkers(v);
  const top = 8 + markerRows(markers) * ROW_H + 6;
  const BULK_H = 150;
  const DEMAND_H = 84;
  const bulkBottom = top + BULK_H;
  const demandTop = bulkBottom + 18;
  const demandBottom = demandTotal > 0 ? demandTop + DEMAND_H : bulkBottom;
  const bucket = group * v.timeline.bucketMs;
  const bw = (PLOT_W * bucket) / v.spanMs;
  const parts: string[] = [];

  const bulkMax = niceMax(Math.max(1, ...Array.from({ length: count }, (_, b) => BULK_KINDS.reduce((a, k) => a + sums[k][b]!, 0))), true);
  parts.push(`<g class="panel bulk">`, yAxis(top, bulkBottom, bulkMax, "bulk pages"), stoppedShade(v, top, bulkBottom));
  for (let b = 0; b < count; b++) {
    let y = bulkBottom;
    for (const k of BULK_KINDS) {
      const n = sums[k][b]!;
      if (n === 0) continue;
      const h = (n / bulkMax) * BULK_H;
      y -= h;
      parts.push(`<rect x="${fmt(X0 + b * bw)}" y="${fmt(y)}" width="${fmt(Math.max(bw - 0.5, 0.5))}" height="${fmt(h)}" fill="${KIND_COLORS[k]}" class="bar ${k}"><title>${k}: ${n} pages at ${esc(ms(b * bucket))}</title></rect>`);
    }
  }
  parts.push(`</g>`);

  if (demandTotal > 0) {
    const demandMax = niceMax(Math.max(1, ...sums.demand), true);
    parts.push(`<g class="panel demand">`, yAxis(demandTop, demandBottom, demandMax, "demand pages"), stoppedShade(v, demandTop, demandBottom));
    sums.demand.forEach((n, b) => {
      if (n === 0) return;
      const h = (n / demandMax) * DEMAND_H;
      parts.push(`<rect x="${fmt(X0 + b * bw)}" y="${fmt(demandBottom - h)}" width="${fmt(Math.max(bw - 0.5, 0.5))}" height="${fmt(h)}" fill="${KIND_COLORS.demand}" class="bar demand"><title>demand: ${n} pages at ${esc(ms(b * bucket))}</title></rect>`);
    });
    parts.push(`</g>`);
  }

  parts.push(drawMarkers(markers, top, demandBottom));
  parts.push(timeTicks(v, demandBottom));
  const xLabelY = demandBottom + 32;
  parts.push(`<text x="${X0 + PLOT_W / 2}" y="${xLabelY}" text-anchor="middle" class="axis-label x-label">${esc(`time since migration start (bars of ${ms(bucket)})`)}</text>`);
  const entries = [
    ...BULK_KINDS.map((k) => ({ label: k === "background" ? "background push" : k === "stop-copy" ? "stop-and-copy" : "precopy", swatch: rectSwatch(KIND_COLORS[k]) })),
    { label: demandTotal > 0 ? "postcopy demand (lower panel)" : "postcopy demand: none", swatch: rectSwatch(KIND_COLORS.demand) },
    ...(v.switchoverAtMs !== null ? [{ label: "guest stopped", swatch: STOPPED_SWATCH }] : []),
  ];
  const legend = legendRow(entries, xLabelY + 22);
  parts.push(legend.svg);
  return svg(`Pages received over time by kind (${v.strategy})`, parts.join(""), "pages-over-time", xLabelY + 22 + legend.height);
}

/** Guest operations per second on each side, from the sampled counters, with the phases. */
export function opsChart(r: RunRecord): string {
  const v = timeView(r);
  if (v === null) return `<p class="empty">No guest activity was sampled.</p>`;
  const perSide = (["source", "destination"] as const).map((side) => {
    const s = v.opsTimeline.filter((o) => o.side === side);
    return { side, points: s.slice(1).map((o, i) => ({ t: o.tMs, rate: ((o.ops - s[i]!.ops) * 1000) / Math.max(1, o.tMs - s[i]!.tMs) })) };
  });
  const all = perSide.flatMap((p) => p.points);
  if (all.length === 0) return `<p class="empty">No guest activity was sampled.</p>`;
  const markers = phaseMarkers(v);
  const top = 8 + markerRows(markers) * ROW_H + 6;
  const H = 160;
  const bottom = top + H;
  const yMax = niceMax(Math.max(1, ...all.map((p) => p.rate)));
  const parts = [yAxis(top, bottom, yMax, "guest ops/s"), stoppedShade(v, top, bottom)];
  for (const p of perSide) {
    if (p.points.length === 0) continue;
    const pts = p.points.map((q) => `${fmt(timeX(v, q.t))},${fmt(bottom - (q.rate / yMax) * H)}`).join(" ");
    parts.push(`<polyline points="${pts}" fill="none" stroke="${SIDE_COLORS[p.side]}" stroke-width="1.5" class="ops ${p.side}"><title>guest ops/s on the ${p.side}</title></polyline>`);
  }
  parts.push(drawMarkers(markers, top, bottom));
  parts.push(timeTicks(v, bottom));
  const xLabelY = bottom + 32;
  parts.push(`<text x="${X0 + PLOT_W / 2}" y="${xLabelY}" text-anchor="middle" class="axis-label x-label">time since migration start</text>`);
  const legend = legendRow(
    [
      { label: "on the source", swatch: lineSwatch(SIDE_COLORS.source) },
      { label: "on the destination", swatch: lineSwatch(SIDE_COLORS.destination) },
      ...(v.switchoverAtMs !== null ? [{ label: "guest stopped", swatch: STOPPED_SWATCH }] : []),
    ],
    xLabelY + 22,
  );
  parts.push(legend.svg);
  return svg(`Guest throughput (${v.strategy})`, parts.join(""), "guest-throughput", xLabelY + 22 + legend.height);
}

// --- latency -------------------------------------------------------------------------------

export interface LatencyBin {
  /** Lower and upper edge in µs: the bin holds samples in (loUs, leUs]. */
  loUs: number;
  leUs: number;
  count: number;
}

/**
 * Every power-of-two bin from the fastest sample's to the slowest's, empty ones included (the
 * recorder stores only non-empty bins).
 */
export function latencyBins(h: LatencySummary["histogram"]): LatencyBin[] {
  if (h.length === 0) return [];
  const sorted = [...h].sort((a, b) => a.leUs - b.leUs);
  const pow2 = sorted.every((b) => b.leUs >= 1 && Number.isInteger(Math.log2(b.leUs)));
  if (!pow2) return sorted.map((b, i) => ({ loUs: i === 0 ? b.leUs / 2 : sorted[i - 1]!.leUs, leUs: b.leUs, count: b.count }));
  const counts = new Map(sorted.map((b) => [b.leUs, b.count]));
  const bins: LatencyBin[] = [];
  for (let le = sorted[0]!.leUs; le <= sorted[sorted.length - 1]!.leUs; le *= 2) bins.push({ loUs: le / 2, leUs: le, count: counts.get(le) ?? 0 });
  return bins;
}

/** Tick values on a log axis over [lo, hi]: decades, and 2 and 5 times them when a decade is wide. */
export function logTicks(lo: number, hi: number, pxPerDecade: number): { major: number[]; minor: number[] } {
  const major: number[] = [];
  const minor: number[] = [];
  const steps = pxPerDecade >= 220 ? [1, 2, 5] : pxPerDecade >= 120 ? [1, 3] : [1];
  for (let e = Math.floor(Math.log10(lo)) - 1; e <= Math.ceil(Math.log10(hi)); e++) {
    for (let m = 1; m <= 9; m++) {
      const v = m * 10 ** e;
      if (v < lo * (1 - 1e-9) || v > hi * (1 + 1e-9)) continue;
      (steps.includes(m) ? major : minor).push(v);
    }
  }
  return { major, minor };
}

/** The fault latency histogram on a log axis, with the cumulative share and p50 / p99. */
export function latencyChart(r: RunRecord): string {
  const faults: (LatencySummary & { raced: number }) | null = "failure" in r ? ((r as FailedRun).destination?.faults ?? null) : r.faults;
  if (faults === null) return `<p class="empty">The destination's fault latencies were lost with the run.</p>`;
  const bins = latencyBins(faults.histogram);
  if (bins.length === 0) {
    return `<p class="empty">No missing-page faults waited for a page on the destination${faults.raced > 0 ? ` (${faults.raced} faults were resolved by a page already in flight)` : ": the guest resumed with all of its memory"}.</p>`;
  }
  const lo = bins[0]!.loUs;
  const hi = bins[bins.length - 1]!.leUs;
  const decades = Math.log10(hi / lo);
  const x = (v: number): number => X0 + (Math.log10(v / lo) / decades) * PLOT_W;
  const total = bins.reduce((a, b) => a + b.count, 0);
  const percentiles = [
    { x: x(Math.min(hi, Math.max(lo, faults.p50Us))), text: `p50 ${us(faults.p50Us)}`, cls: "p50" },
    { x: x(Math.min(hi, Math.max(lo, faults.p99Us))), text: `p99 ${us(faults.p99Us)}`, cls: "p99" },
  ].filter((p) => faults.p50Us > 0);
  const top = 8 + markerRows(percentiles) * ROW_H + 6;
  const H = 170;
  const bottom = top + H;
  const yMax = niceMax(Math.max(...bins.map((b) => b.count)), true);
  const parts = [yAxis(top, bottom, yMax, "faults per bucket"), yAxis(top, bottom, 100, "cumulative share", "right", (p) => `${p}%`)];

  const { major, minor } = logTicks(lo, hi, PLOT_W / decades);
  for (const t of major) parts.push(`<line x1="${fmt(x(t))}" y1="${fmt(top)}" x2="${fmt(x(t))}" y2="${fmt(bottom)}" class="grid" />`);
  parts.push(`<g class="bins">`);
  for (const b of bins) {
    const h = (b.count / yMax) * H;
    const left = x(b.loUs);
    const width = x(b.leUs) - left;
    parts.push(
      `<rect x="${fmt(left + 1)}" y="${fmt(bottom - h)}" width="${fmt(Math.max(width - 2, 1))}" height="${fmt(h)}" fill="${LATENCY_COLOR}" class="bin" data-lo-us="${b.loUs}" data-le-us="${b.leUs}" data-count="${b.count}"><title>${b.count} faults in (${esc(shortUs(b.loUs))}, ${esc(shortUs(b.leUs))}]</title></rect>`,
    );
  }
  parts.push(`</g>`);

  let cum = 0;
  const cdf = [`${fmt(x(lo))},${fmt(bottom)}`];
  for (const b of bins) {
    cum += b.count;
    cdf.push(`${fmt(x(b.leUs))},${fmt(bottom - (cum / total) * H)}`);
  }
  parts.push(`<polyline points="${cdf.join(" ")}" fill="none" stroke="${CDF_COLOR}" stroke-width="1.5" class="cdf"><title>share of faults resolved within a latency</title></polyline>`);

  for (const t of minor) parts.push(`<line x1="${fmt(x(t))}" y1="${fmt(bottom)}" x2="${fmt(x(t))}" y2="${fmt(bottom + 3)}" class="axis minor-tick" data-us="${t}" />`);
  for (const t of major) {
    parts.push(`<line x1="${fmt(x(t))}" y1="${fmt(bottom)}" x2="${fmt(x(t))}" y2="${fmt(bottom + 5)}" class="axis" />`);
    parts.push(`<text x="${fmt(x(t))}" y="${fmt(bottom + 16)}" text-anchor="middle" class="tick x-tick log-tick" data-us="${t}">${esc(shortUs(t))}</text>`);
  }
  parts.push(drawMarkers(percentiles, top, bottom));
  const xLabelY = bottom + 32;
  parts.push(`<text x="${X0 + PLOT_W / 2}" y="${xLabelY}" text-anchor="middle" class="axis-label x-label">fault latency, from the fault to the page install (log scale; buckets double)</text>`);
  const legend = legendRow(
    [
      { label: "faults per bucket", swatch: rectSwatch(LATENCY_COLOR) },
      { label: "cumulative share (right axis)", swatch: lineSwatch(CDF_COLOR) },
    ],
    xLabelY + 22,
  );
  parts.push(legend.svg);
  const caption =
    faults.raced > 0 ? `<p class="caption">${faults.raced} further faults were resolved by a page already in flight and have no latency sample.</p>` : "";
  return svg(`Fault latency histogram (${r.strategy})`, parts.join(""), "latency-histogram", xLabelY + 22 + legend.height) + caption;
}

// --- page ----------------------------------------------------------------------------------

function metricsTable(results: readonly RunRecord[]): string {
  const rows = tableRows(results);
  const head = `<tr><th>metric</th>${results.map((r) => `<th>${esc("failure" in r ? `${r.strategy} (failed)` : r.strategy)}</th>`).join("")}</tr>`;
  const body = rows.map(
    ({ row, cells, footnote }) =>
      `<tr><td>${esc(row.label.trim())}${footnote === null ? "" : `<sup class="fn-ref">${footnote}</sup>`}</td>${cells.map((c) => `<td class="num">${esc(c)}</td>`).join("")}</tr>`,
  );
  const notes = footnotes(rows).map(({ n, text }) => `<li value="${n}">${esc(text)}</li>`);
  return `<table class="metrics"><thead>${head}</thead><tbody>${body.join("")}</tbody></table><ol class="footnotes">${notes.join("")}</ol>`;
}

function roundsTable(r: MigrationResult): string {
  if (r.rounds.length === 0) return "";
  const rows = r.rounds.map((x) => `<tr><td class="num">${x.round}</td><td class="num">${x.pages}</td><td class="num">${x.zeroPages}</td><td class="num">${esc(ms(x.durationMs))}</td><td class="num">${x.dirtyAfter}</td></tr>`);
  return `<table class="rounds"><thead><tr><th>round</th><th>pages</th><th>zero</th><th>duration</th><th>dirty after</th></tr></thead><tbody>${rows.join("")}</tbody></table>`;
}

function charts(r: RunRecord): string[] {
  return [`<h3>Pages received over time</h3>`, pagesChart(r), `<h3>Fault latency</h3>`, latencyChart(r), `<h3>Guest throughput</h3>`, opsChart(r)];
}

/** What the destination of a failed run recorded, as a table. */
function destinationTable(d: DestMetrics): string {
  const n = (x: number): string => Math.round(x).toLocaleString("en-US");
  const rows: Array<[string, string]> = [
    ["pages received: precopy", n(d.received.precopy)],
    ["pages received: stop-and-copy", n(d.received["stop-copy"])],
    ["pages received: postcopy demand", n(d.received.demand)],
    ["pages received: background push", n(d.received.background)],
    ["pages never received", n(d.missingPages)],
    ["destination faults", n(d.faults.count)],
    ["fault latency p50 / p99 / max", d.faults.count > 0 ? `${us(d.faults.p50Us)} / ${us(d.faults.p99Us)} / ${us(d.faults.maxUs)}` : "-"],
    ["guest ops on the destination", n(d.guestOps)],
    ["guest threads blocked on missing pages", n(d.blockedThreads)],
    ["demand pages' connection", d.preempt ? "own (preempt)" : "shared with bulk"],
  ];
  const body = rows.map(([k, v]) => `<tr><td>${esc(k)}</td><td class="num">${esc(v)}</td></tr>`).join("");
  return `<table class="destination"><thead><tr><th>the destination recorded</th><th>value</th></tr></thead><tbody>${body}</tbody></table>`;
}

function section(r: RunRecord): string {
  if ("failure" in r) {
    const f = r as FailedRun;
    return [
      `<section class="run failed" id="run-${esc(f.strategy)}">`,
      `<h2>${esc(f.strategy)}: ${esc(verdict(f))}</h2>`,
      `<pre class="failure">${esc(f.failure)}</pre>`,
      f.destination === null ? `<p class="empty">The destination's metrics were lost with the run.</p>` : `<p>What the destination recorded before the run failed (phase times are unknown: the run did not finish).</p>${destinationTable(f.destination)}`,
      ...(f.destination === null ? [] : charts(f)),
      `</section>`,
    ].join("\n");
  }
  const notes = r.notes.map((n) => `<li>${esc(n)}</li>`).join("");
  const rounds = roundsTable(r);
  return [
    `<section class="run" id="run-${esc(r.strategy)}">`,
    `<h2>${esc(r.strategy)}: ${esc(verdict(r))}</h2>`,
    `<p>Total ${esc(ms(r.totalTimeMs))}, downtime ${esc(ms(r.downtimeMs))}, dirty tracking ${esc(r.trackingMethod)}.</p>`,
    notes === "" ? "" : `<ul class="notes">${notes}</ul>`,
    ...charts(r),
    rounds === "" ? "" : `<h3>Precopy rounds</h3>${rounds}`,
    `</section>`,
  ].join("\n");
}

const CSS = `body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:980px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{border-top:1px solid #ddd;padding-top:1em}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px}th{background:#f3f3f3}
td.num{text-align:right;font-variant-numeric:tabular-nums}
sup.fn-ref{color:#666;margin-left:2px}ol.footnotes{font-size:12px;color:#444;max-width:760px;padding-left:1.6em}
pre.failure{white-space:pre-wrap;background:#fff4f4;border:1px solid #e8b4b4;padding:0.6em}
svg.chart{display:block;margin:0.5em 0;background:#fff;border:1px solid #eee;font-family:system-ui,sans-serif}
svg text{font-size:${TICK_FONT}px;fill:#444}svg .axis-label{font-size:${LABEL_FONT}px;fill:#222}
svg .grid{stroke:#eee}svg .axis{stroke:#999}svg .marker-line{stroke:#555;stroke-dasharray:4 3}svg .marker-label{fill:#333;paint-order:stroke;stroke:#fff;stroke-width:3px;stroke-linejoin:round}
svg .stopped{fill:#000;fill-opacity:0.09}svg .legend .stopped{stroke:#999;stroke-opacity:1}
.caption,.empty{color:#666;font-size:12px}.empty{font-style:italic}`;

/** The whole report: one run or a comparison of several. */
export function renderHtml(results: readonly RunRecord[], generatedAt: string): string {
  const title = results.length === 1 ? `Live migration report: ${results[0]!.strategy}` : `Live migration report: ${results.map((r) => r.strategy).join(" vs ")}`;
  const setup = results[0] === undefined ? "" : `<p class="setup">${esc(describeSetup(results[0]))}. Generated ${esc(generatedAt)}.</p>`;
  return [
    `<!DOCTYPE html>`,
    `<html lang="en">`,
    `<head><meta charset="utf-8" /><meta name="viewport" content="width=device-width, initial-scale=1" /><title>${esc(title)}</title><style>${CSS}</style></head>`,
    `<body>`,
    `<h1>${esc(title)}</h1>`,
    setup,
    results.some((r) => !("failure" in r)) ? metricsTable(results) : "",
    ...results.map(section),
    `</body>`,
    `</html>`,
    ``,
  ].join("\n");
}
