/**
 * The self-contained HTML report: inline CSS and inline SVG charts, no script, no external URL,
 * so a browser opens it offline. Every tag is closed and every attribute quoted (XHTML-style) so
 * a test can check well-formedness with a plain tag matcher.
 *
 * Charts: pages received over time by kind (stacked bars, with switchover / resume / complete
 * markers), the destination's fault latency histogram (power-of-two µs buckets, as QEMU's
 * postcopy-latency-dist), and guest throughput over time on each side.
 */
import { KIND_NAMES, type KindName, type MigrationResult } from "./metrics.ts";
import { describeSetup, ms, ROWS, us, verdict } from "./report-text.ts";

export const KIND_COLORS: Readonly<Record<KindName, string>> = {
  precopy: "#4e79a7",
  "stop-copy": "#f28e2b",
  demand: "#e15759",
  background: "#59a14f",
};

export function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

const W = 720;
const H = 240;
const PAD = { left: 56, right: 16, top: 16, bottom: 40 };
const PLOT_W = W - PAD.left - PAD.right;
const PLOT_H = H - PAD.top - PAD.bottom;
const MAX_BARS = 160;

const fmt = (n: number): string => (Number.isInteger(n) ? String(n) : n.toFixed(1));

/** A round axis maximum; counts below 100 get a multiple of 4 so the quarter ticks are integers. */
function niceMax(v: number, counts = false): number {
  if (counts && v < 100) return Math.max(4, 4 * Math.ceil(v / 4));
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of counts ? [1, 2, 4, 5, 8, 10] : [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function axes(xLabel: string, yLabel: string, yMax: number, xTicks: Array<[number, string]>): string {
  const parts: string[] = [];
  for (let i = 0; i <= 4; i++) {
    const y = PAD.top + PLOT_H - (PLOT_H * i) / 4;
    parts.push(`<line x1="${PAD.left}" y1="${fmt(y)}" x2="${W - PAD.right}" y2="${fmt(y)}" class="grid" />`);
    parts.push(`<text x="${PAD.left - 6}" y="${fmt(y + 4)}" text-anchor="end">${esc(compact((yMax * i) / 4))}</text>`);
  }
  for (const [x, label] of xTicks) parts.push(`<text x="${fmt(x)}" y="${H - PAD.bottom + 16}" text-anchor="middle">${esc(label)}</text>`);
  parts.push(`<text x="${PAD.left + PLOT_W / 2}" y="${H - 4}" text-anchor="middle" class="axis-label">${esc(xLabel)}</text>`);
  parts.push(`<text x="12" y="${PAD.top + PLOT_H / 2}" text-anchor="middle" class="axis-label" transform="rotate(-90 12 ${PAD.top + PLOT_H / 2})">${esc(yLabel)}</text>`);
  return parts.join("");
}

/** Short latency labels for histogram buckets: "512µs", "1.0ms", "16ms". */
function shortUs(n: number): string {
  return n < 1000 ? `${n}µs` : `${+(n / 1000).toPrecision(2)}ms`;
}

function compact(n: number): string {
  if (n >= 1e6) return `${+(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${+(n / 1e3).toFixed(1)}k`;
  return String(+n.toFixed(1));
}

function svg(title: string, body: string, cls: string): string {
  return `<svg class="chart ${cls}" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(title)}"><title>${esc(title)}</title>${body}</svg>`;
}

function timeTicks(totalMs: number): Array<[number, string]> {
  const step = niceMax(totalMs / 5);
  const ticks: Array<[number, string]> = [];
  for (let t = 0; t <= totalMs + 1e-9; t += step) ticks.push([PAD.left + (t / totalMs) * PLOT_W, ms(t)]);
  return ticks;
}

/** Stacked bars of pages received per time bucket, by kind, with phase markers. */
export function pagesChart(r: MigrationResult): string {
  const { bucketMs, series } = r.timeline;
  const n = Math.max(1, ...KIND_NAMES.map((k) => series[k].length));
  const group = Math.ceil(n / MAX_BARS);
  const bars = Math.ceil(n / group);
  const sums = KIND_NAMES.map((k) => Array.from({ length: bars }, (_, b) => series[k].slice(b * group, (b + 1) * group).reduce((a, v) => a + v, 0)));
  const yMax = niceMax(Math.max(1, ...Array.from({ length: bars }, (_, b) => sums.reduce((a, s) => a + s[b]!, 0))), true);
  const spanMs = Math.max(bars * group * bucketMs, r.totalTimeMs);
  const bw = (PLOT_W * group * bucketMs) / spanMs;
  const rects: string[] = [];
  for (let b = 0; b < bars; b++) {
    let y = PAD.top + PLOT_H;
    KIND_NAMES.forEach((k, i) => {
      const v = sums[i]![b]!;
      if (v === 0) return;
      const h = (v / yMax) * PLOT_H;
      y -= h;
      rects.push(`<rect x="${fmt(PAD.left + b * bw)}" y="${fmt(y)}" width="${fmt(Math.max(bw - 0.5, 0.5))}" height="${fmt(h)}" fill="${KIND_COLORS[k]}" class="bar ${k}"><title>${k}: ${v} pages at ${ms(b * group * bucketMs)}</title></rect>`);
    });
  }
  const x = (t: number): number => PAD.left + (Math.max(0, t) / spanMs) * PLOT_W;
  const markers = [
    ["switchover", r.switchoverAtMs],
    ["resumed", r.switchoverAtMs + r.downtimeMs],
    ["complete", r.totalTimeMs],
  ] as const;
  const lines = markers.map(([label, t], i) => {
    const right = x(t) > PAD.left + PLOT_W * 0.8;
    const lx = right ? x(t) - 3 : x(t) + 3;
    return `<line x1="${fmt(x(t))}" y1="${PAD.top}" x2="${fmt(x(t))}" y2="${PAD.top + PLOT_H}" class="marker" /><text x="${fmt(lx)}" y="${PAD.top + 10 + i * 12}" text-anchor="${right ? "end" : "start"}" class="marker-label">${label} ${esc(ms(t))}</text>`;
  });
  const body = axes(`time since migration start (bucket ${ms(group * bucketMs)})`, "pages received", yMax, timeTicks(spanMs)) + rects.join("") + lines.join("");
  return svg(`Pages received over time by kind (${r.strategy})`, body, "pages-over-time");
}

/** The destination's fault latency histogram. */
export function latencyChart(r: MigrationResult): string {
  const h = r.faults.histogram;
  if (h.length === 0) return `<p class="empty">No missing-page faults on the destination: the guest resumed with all of its memory.</p>`;
  const yMax = niceMax(Math.max(...h.map((b) => b.count)), true);
  const bw = PLOT_W / h.length;
  const parts = h.map((b, i) => {
    const hh = (b.count / yMax) * PLOT_H;
    return `<rect x="${fmt(PAD.left + i * bw + 2)}" y="${fmt(PAD.top + PLOT_H - hh)}" width="${fmt(Math.max(bw - 4, 1))}" height="${fmt(hh)}" fill="#e15759" class="bar latency"><title>${b.count} faults took at most ${us(b.leUs)}</title></rect>`;
  });
  const ticks = h.map((b, i): [number, string] => [PAD.left + i * bw + bw / 2, `≤${shortUs(b.leUs)}`]);
  const body = axes("fault latency (from the fault to the page install)", "faults", yMax, ticks) + parts.join("");
  return svg(`Fault latency histogram (${r.strategy})`, body, "latency-histogram");
}

/** Guest operations per second on each side, from the sampled counters. */
export function opsChart(r: MigrationResult): string {
  const perSide = (["source", "destination"] as const).map((side) => {
    const s = r.opsTimeline.filter((o) => o.side === side);
    return { side, points: s.slice(1).map((o, i) => ({ t: o.tMs, rate: ((o.ops - s[i]!.ops) * 1000) / Math.max(1, o.tMs - s[i]!.tMs) })) };
  });
  const all = perSide.flatMap((p) => p.points);
  if (all.length === 0) return `<p class="empty">No guest activity was sampled.</p>`;
  const spanMs = Math.max(r.totalTimeMs, ...all.map((p) => p.t), 1);
  const yMax = niceMax(Math.max(1, ...all.map((p) => p.rate)));
  const colors = { source: "#4e79a7", destination: "#e15759" };
  const lines = perSide
    .filter((p) => p.points.length > 0)
    .map((p) => {
      const pts = p.points.map((q) => `${fmt(PAD.left + (q.t / spanMs) * PLOT_W)},${fmt(PAD.top + PLOT_H - (q.rate / yMax) * PLOT_H)}`).join(" ");
      return `<polyline points="${pts}" fill="none" stroke="${colors[p.side]}" stroke-width="1.5" class="ops ${p.side}"><title>guest ops/s on the ${p.side}</title></polyline>`;
    });
  const body = axes("time since migration start", "guest ops/s", yMax, timeTicks(spanMs)) + lines.join("");
  return svg(`Guest throughput (${r.strategy})`, body, "guest-throughput");
}

function legend(): string {
  const items = KIND_NAMES.map((k) => `<span class="legend-item"><span class="swatch" style="background:${KIND_COLORS[k]}"></span>${k}</span>`);
  return `<p class="legend">${items.join(" ")}</p>`;
}

function metricsTable(results: readonly MigrationResult[]): string {
  const head = `<tr><th>metric</th>${results.map((r) => `<th>${esc(r.strategy)}</th>`).join("")}</tr>`;
  const rows = ROWS.map(([label, f]) => `<tr><td>${esc(label.trim())}</td>${results.map((r) => `<td class="num">${esc(f(r))}</td>`).join("")}</tr>`);
  return `<table class="metrics"><thead>${head}</thead><tbody>${rows.join("")}</tbody></table>`;
}

function roundsTable(r: MigrationResult): string {
  if (r.rounds.length === 0) return "";
  const rows = r.rounds.map((x) => `<tr><td class="num">${x.round}</td><td class="num">${x.pages}</td><td class="num">${x.zeroPages}</td><td class="num">${esc(ms(x.durationMs))}</td><td class="num">${x.dirtyAfter}</td></tr>`);
  return `<table class="rounds"><thead><tr><th>round</th><th>pages</th><th>zero</th><th>duration</th><th>dirty after</th></tr></thead><tbody>${rows.join("")}</tbody></table>`;
}

function section(r: MigrationResult): string {
  const notes = r.notes.map((n) => `<li>${esc(n)}</li>`).join("");
  return [
    `<section class="run" id="run-${esc(r.strategy)}">`,
    `<h2>${esc(r.strategy)}: ${esc(verdict(r))}</h2>`,
    `<p>Total ${esc(ms(r.totalTimeMs))}, downtime ${esc(ms(r.downtimeMs))}, dirty tracking ${esc(r.trackingMethod)}.</p>`,
    notes === "" ? "" : `<ul class="notes">${notes}</ul>`,
    `<h3>Pages over time by kind</h3>`,
    legend(),
    pagesChart(r),
    `<h3>Fault latency</h3>`,
    latencyChart(r),
    `<h3>Guest throughput</h3>`,
    opsChart(r),
    roundsTable(r) === "" ? "" : `<h3>Precopy rounds</h3>${roundsTable(r)}`,
    `</section>`,
  ].join("\n");
}

const CSS = `body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:980px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{border-top:1px solid #ddd;padding-top:1em}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px}th{background:#f3f3f3}
td.num{text-align:right;font-variant-numeric:tabular-nums}
svg.chart{display:block;margin:0.5em 0;background:#fff;border:1px solid #eee}
svg text{font-size:10px;fill:#444}svg .axis-label{font-size:11px;fill:#222}
svg .grid{stroke:#eee}svg .marker{stroke:#555;stroke-dasharray:4 3}svg .marker-label{font-size:10px;fill:#555}
.legend-item{margin-right:1em}.swatch{display:inline-block;width:10px;height:10px;margin-right:4px}
.empty{color:#666;font-style:italic}`;

/** The whole report: one run or a comparison of several. */
export function renderHtml(results: readonly MigrationResult[], generatedAt: string): string {
  const title = results.length === 1 ? `Live migration report: ${results[0]!.strategy}` : `Live migration report: ${results.map((r) => r.strategy).join(" vs ")}`;
  const setup = results[0] === undefined ? "" : `<p class="setup">${esc(describeSetup(results[0]))}. Generated ${esc(generatedAt)}.</p>`;
  return [
    `<!DOCTYPE html>`,
    `<html lang="en">`,
    `<head><meta charset="utf-8" /><meta name="viewport" content="width=device-width, initial-scale=1" /><title>${esc(title)}</title><style>${CSS}</style></head>`,
    `<body>`,
    `<h1>${esc(title)}</h1>`,
    setup,
    metricsTable(results),
    ...results.map(section),
    `</body>`,
    `</html>`,
    ``,
  ].join("\n");
}
