/**
 * The comparer: two executions' records, field by field, after the normalisations below. Each
 * one is listed in docs/conformance.md with its reason; nothing else is forgiven.
 *
 * 1. Frames are labels by identity. A pfn means nothing across kernels; what must agree is
 *    which pages share a frame and when a page keeps its frame (reuse) or gets a new one (copy).
 *    The comparer pairs each native pfn with the simulated pfn seen in the same place, and a
 *    pairing must hold wherever either frame appears again.
 * 2. A frame freed and reused is a new identity. The host may hand a freed frame out again at
 *    once; the pairing of a simulated frame ends at the step that freed it or allocated it anew
 *    (the simulation reports this churn), so a reused host frame carrying an old label is not
 *    a divergence.
 * 3. The zero page is its own label on both sides (kpageflags KPF_ZERO_PAGE, the simulation's
 *    zero pfn); its kpagecount is not compared (the shared zero page is never rmap-accounted, so
 *    what procfs reads there is not a map count of this scenario).
 * 4. pvm_no_zero_page=1 (a sandbox boot option, not upstream): where the simulation maps the
 *    zero page and such a host maps a private anonymous page, the entries are equal; anything
 *    that diverges later in that scenario is reported as depending on the quirk, not as a
 *    divergence. "Later" starts at the first step where the simulation mapped the zero page
 *    (its record says so), whether or not a pagemap read showed it: a fork, an rss count or a
 *    write that follows such a read fault differs on that host for that reason alone.
 */
import type { PmEntry } from "./backend.ts";
import type { Norm, StepRecord } from "./driver.ts";

/** Options of the comparison. */
export interface CompareOptions {
  /** The host's anonymous read faults map a private page instead of the zero page. */
  pvmNoZeroPage?: boolean;
  /** kpageflags fields not compared (a known divergence being fixed; see known.ts). */
  mask?: ReadonlySet<"dirty">;
}

/** Where the two sides first disagree. */
export interface Divergence {
  /** 0-based step index. */
  index: number;
  /** The step as scenario text. */
  text: string;
  /** What differs: "result", "result of step N", a pagemap field, "frame identity". */
  what: string;
  /** The real kernel's answer, as text. */
  native: string;
  /** The simulation's answer, as text. */
  sim: string;
}

/** The verdict on one scenario. */
export interface Comparison {
  /** agree, diverge, or quirk (a divergence explained by a documented host quirk). */
  status: "agree" | "diverge" | "quirk";
  /** The first divergence, when status is not agree. */
  divergence: Divergence | null;
  /** Normalisations that were needed to call something equal, by kind. */
  normalised: string[];
  /** Why a divergence was set down to a host quirk. */
  quirk: string | null;
}

function pmFlags(e: PmEntry, zeroQuirk: boolean, mask?: ReadonlySet<"dirty">): string {
  const f: string[] = [];
  if (e.present) f.push("P");
  if (e.swapped) f.push("S");
  if (e.file) f.push("F");
  if (e.exclusive && !zeroQuirk) f.push("X");
  if (e.uffdWp) f.push("WP");
  if (e.guard) f.push("G");
  if (e.present) {
    if (e.zero || zeroQuirk) f.push("zero");
    else {
      f.push(`count=${e.count}`);
      if (e.anon) f.push("anon");
      if (e.dirty && mask?.has("dirty") !== true) f.push("dirty");
      if (e.swapcache) f.push("swapcache");
    }
  }
  return f.join(" ") || "-";
}

class Frames {
  #n2s = new Map<number, number>();
  #s2n = new Map<number, number>();
  #label = new Map<number, number>();

  label(simPfn: number): string {
    return `#${this.#label.get(simPfn) ?? "?"}`;
  }

  /** null if the pairing holds (or is new), else why not. */
  pair(n: number, s: number): string | null {
    const s0 = this.#n2s.get(n);
    const n0 = this.#s2n.get(s);
    if (s0 === undefined && n0 === undefined) {
      this.#n2s.set(n, s);
      this.#s2n.set(s, n);
      this.#label.set(s, this.#label.size + 1);
      return null;
    }
    if (s0 === s && n0 === n) return null;
    if (s0 !== undefined && s0 !== s) return `the host shows the frame it showed as ${this.label(s0)}, the simulation a different frame (${this.label(s)})`;
    return `the simulation shows frame ${this.label(s)} again, the host a different frame`;
  }

  retire(simPfns: readonly number[]): void {
    for (const s of simPfns) {
      const n = this.#s2n.get(s);
      if (n === undefined) continue;
      this.#s2n.delete(s);
      this.#n2s.delete(n);
    }
  }
}

/** Compares the records of the same scenario run natively and simulated. */
export function compareRecords(native: readonly StepRecord[], sim: readonly StepRecord[], options: CompareOptions = {}): Comparison {
  const frames = new Frames();
  const normalised = new Set<string>();
  let quirkTouched: string | null = null;
  const result = (d: Divergence | null): Comparison => {
    if (d === null) return { status: "agree", divergence: null, normalised: [...normalised], quirk: null };
    if (quirkTouched !== null) return { status: "quirk", divergence: d, normalised: [...normalised], quirk: quirkTouched };
    return { status: "diverge", divergence: d, normalised: [...normalised], quirk: null };
  };
  const n = Math.max(native.length, sim.length);
  for (let i = 0; i < n; i++) {
    const a = native[i];
    const b = sim[i];
    if (a === undefined || b === undefined) return result({ index: i, text: (a ?? b)?.text ?? "", what: "step count", native: String(native.length), sim: String(sim.length) });
    const cmp = (x: Norm, y: Norm, what: string): Divergence | null => {
      if (x === "blocked" || y === "blocked") {
        return x === y ? null : { index: i, text: a.text, what, native: show(x), sim: show(y) };
      }
      const { pm: px, ...restX } = x as { pm?: PmEntry[] };
      const { pm: py, ...restY } = y as { pm?: PmEntry[] };
      if (JSON.stringify(restX) !== JSON.stringify(restY)) return { index: i, text: a.text, what, native: show(restX), sim: show(restY) };
      if (px === undefined || py === undefined) return px === py ? null : { index: i, text: a.text, what: `${what}: pagemap`, native: String(px), sim: String(py) };
      for (let k = 0; k < Math.max(px.length, py.length); k++) {
        const en = px[k] as PmEntry;
        const es = py[k] as PmEntry;
        const zeroQuirk = options.pvmNoZeroPage === true && es.present && es.zero && en.present && !en.zero && en.anon;
        if (zeroQuirk) {
          normalised.add("pvm_no_zero_page: a private anonymous page where upstream maps the zero page");
          quirkTouched = "pvm_no_zero_page=1: the host maps private pages on anonymous read faults; this scenario's later results depend on it";
        }
        const fn = pmFlags(en, zeroQuirk, options.mask);
        const fs = pmFlags(es, zeroQuirk, options.mask);
        if (fn !== fs) return { index: i, text: a.text, what: `${what}: page ${k}`, native: fn, sim: fs };
        if (en.present && es.present && !es.zero && !zeroQuirk && en.pfn !== null && es.pfn !== null) {
          const why = frames.pair(en.pfn, es.pfn);
          if (why !== null) return { index: i, text: a.text, what: `${what}: frame of page ${k}`, native: why, sim: `frame ${frames.label(es.pfn)}` };
        }
      }
      return null;
    };
    if (options.pvmNoZeroPage === true && b.zeroMapped === true && quirkTouched === null) {
      quirkTouched = `pvm_no_zero_page=1: the host maps a private page where the simulation mapped the zero page (step ${i + 1}, "${b.text}"); this scenario's later results depend on it`;
    }
    const d = cmp(a.r, b.r, "result");
    if (d !== null) return result(d);
    const keys = new Set([...Object.keys(a.done), ...Object.keys(b.done)]);
    for (const k of [...keys].sort((x, y) => Number(x) - Number(y))) {
      const x = a.done[Number(k)];
      const y = b.done[Number(k)];
      if (x === undefined || y === undefined) {
        return result({ index: i, text: a.text, what: `step ${Number(k) + 1} finishing here`, native: x === undefined ? "still blocked" : show(x), sim: y === undefined ? "still blocked" : show(y) });
      }
      const dd = cmp(x, y, `result of step ${Number(k) + 1}`);
      if (dd !== null) return result(dd);
    }
    if (b.churn !== null && b.churn.length > 0) {
      frames.retire(b.churn);
      normalised.add("frame labels end where the simulation freed or reallocated a frame");
    }
  }
  return result(null);
}

function show(x: unknown): string {
  return typeof x === "string" ? x : JSON.stringify(x);
}

/** A record's answer as one line of text, frames as labels (for reports). */
export function describe(r: Norm): string {
  if (r === "blocked") return "blocked";
  const { pm, ...rest } = r as { pm?: PmEntry[] };
  const head = JSON.stringify(rest);
  if (pm === undefined) return head;
  return `${head} pm=[${pm.map((e) => pmFlags(e, false)).join(" | ")}]`;
}
