/**
 * The recording side of the seeds tour: each step notes what was done, why, and what
 * /proc/pid/pagemap and /proc/kpagecount say about the pages the step is about, plus any errno
 * or out field the step produced. Rendering is plain text tables.
 */
import type { Kernel, PagemapEntry, Process } from "@uffd/kernel";
import { PAGE_SIZE } from "@uffd/kernel/uapi";

/** A page to look at: which process, a label for the mapping, its address and the page index. */
export interface Watch {
  proc: Process;
  who: string;
  mapping: string;
  addr: number;
  page: number;
}

/** One page as procfs shows it. */
export interface PageRow {
  who: string;
  mapping: string;
  page: number;
  entry: PagemapEntry;
  zeroPage: boolean;
  /** /proc/kpagecount: how many ptes map the frame (not its page_count, which also counts pins and pipe references). */
  kpagecount: number;
  /** The page's first byte, when present (reading a present page faults nothing in). */
  firstByte: number | null;
}

export interface TourStep {
  title: string;
  explanation: string;
  rows: PageRow[];
  /** What the step returned: errnos, out fields, bytes read elsewhere. */
  facts: Record<string, string | number | boolean>;
}

export interface Chapter {
  /** The kernel the chapter ran on (for checkInvariants()). */
  kernel: Kernel;
  seed: string;
  title: string;
  summary: string;
  steps: TourStep[];
}

/** Records the steps of one chapter. */
export class ChapterRecorder {
  readonly #k: Kernel;
  readonly chapter: Chapter;

  constructor(k: Kernel, seed: string, title: string, summary: string) {
    this.#k = k;
    this.chapter = { kernel: k, seed, title, summary, steps: [] };
  }

  /** Takes the pagemap/kpagecount picture of `watch` after a step and records it. */
  async step(title: string, explanation: string, watch: Watch[], facts: TourStep["facts"] = {}): Promise<TourStep> {
    const rows: PageRow[] = [];
    for (const w of watch) {
      const a = w.addr + w.page * PAGE_SIZE;
      const entry = w.proc.pagemap(a, 1)[0]!;
      const firstByte = entry.present ? (await w.proc.mainThread.read(a, 1))[0]! : null;
      rows.push({
        who: w.who,
        mapping: w.mapping,
        page: w.page,
        entry,
        zeroPage: entry.pfn === this.#k.zeroPfn,
        kpagecount: entry.pfn === null ? 0 : this.#k.kpagecount(entry.pfn),
        firstByte,
      });
    }
    this.#k.checkInvariants();
    const s = { title, explanation, rows, facts };
    this.chapter.steps.push(s);
    return s;
  }
}

/** pagemap bits in the order of the kernel's documentation: present, swapped, file, exclusive, uffd-wp. */
export function pmBits(e: PagemapEntry): string {
  const b = (x: boolean): string => (x ? "1" : "0");
  return `P${b(e.present)} S${b(e.swapped)} F${b(e.file)} X${b(e.exclusive)} WP${b(e.uffdWp)}`;
}

/** Renders the chapters as text. */
export function formatChapters(chapters: Chapter[]): string[] {
  const lines: string[] = [];
  for (const c of chapters) {
    lines.push(`=== Seed ${c.seed}: ${c.title}`);
    lines.push(...wrap(c.summary, "    "));
    lines.push(...formatSteps(c.steps));
    lines.push("");
  }
  return lines;
}

/** Renders steps as numbered paragraphs, each with its pagemap table and facts. */
export function formatSteps(steps: readonly TourStep[]): string[] {
  const lines: string[] = [];
  {
    steps.forEach((s, i) => {
      lines.push("", `  ${i + 1}. ${s.title}`, ...wrap(s.explanation, "     "));
      const header = ["who", "mapping", "page", "pagemap", "pfn", "kpagecount", "byte 0"];
      const rows = s.rows.map((r) => [
        r.who,
        r.mapping,
        String(r.page),
        pmBits(r.entry),
        r.entry.pfn === null ? "-" : r.zeroPage ? `${r.entry.pfn} (zero)` : String(r.entry.pfn),
        r.entry.present ? String(r.kpagecount) : "-",
        r.firstByte === null ? "-" : `0x${r.firstByte.toString(16).padStart(2, "0")}`,
      ]);
      if (rows.length > 0) lines.push(...table(header, rows).map((l) => `     ${l}`));
      for (const [k, v] of Object.entries(s.facts)) lines.push(`     ${k}: ${String(v)}`);
    });
  }
  return lines;
}

/** A plain text table: header, dashes, rows; columns padded to their widest cell. */
export function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  const fmt = (cells: string[]): string => cells.map((cell, c) => cell.padEnd(widths[c]!)).join("  ").trimEnd();
  return [fmt(header), fmt(widths.map((w) => "-".repeat(w))), ...rows.map(fmt)];
}

/** `text` wrapped at `width` columns, each line starting with `indent`. */
export function wrap(text: string, indent: string, width = 110): string[] {
  const out: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/)) {
    if (line.length > 0 && indent.length + line.length + 1 + word.length > width) {
      out.push(indent + line);
      line = word;
    } else line = line.length === 0 ? word : `${line} ${word}`;
  }
  if (line.length > 0) out.push(indent + line);
  return out;
}
