/**
 * The hand-written corpus: corpus/*.scn, several scenarios per file separated by `---` lines.
 * Each scenario's header names it (`# name:`), cites the rule it checks (`# rule:`) and, while
 * a known divergence is being fixed, says so (`# expect: divergence <id>`; see known.ts).
 */
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseScenario, type Scenario } from "./scenario.ts";

export const CORPUS_DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "corpus");

/** What each corpus file covers, as `uffd-conform`'s agreement table names its rows. */
export const CORPUS_AREAS: Readonly<Record<string, string>> = {
  "uffd-errors.scn": "userfaultfd ioctls: checks, errnos, out fields",
  "faults.scn": "userfaults: where raised, wakes, what resolving maps",
  "events.scn": "non-cooperative events (fork, remap, remove, unmap)",
  "cow-fork.scn": "COW, fork, PageAnonExclusive",
  "pae.scn": "PageAnonExclusive by its consequences (reuse, MOVE EBUSY, pins)",
  "pagemap.scn": "pagemap, kpageflags, PAGEMAP_SCAN",
  "mm.scn": "madvise, mremap, mincore, memfd, pipes",
  "files.scn": "file offsets, seals, f_pos_lock (lseek, read, write, fcntl)",
  "swap.scn": "swap on zram: pageout, swap-in, swap cache, markers",
  "known.scn": "divergences found and fixed (and any still being fixed)",
  "seeds.scn": "the seed threads' mechanisms (COW by refcount, wp across fork, CONTINUE, MOVE)",
  "surprises.scn": "where man pages and the 6.18 kernel disagree",
  "pins.scn": "io_uring fixed-buffer pins vs fork, COW, zap, MOVE, reclaim",
};

export interface CorpusScenario extends Scenario {
  readonly file: string;
}

/** Splits one corpus file into its scenarios. */
export function parseCorpusFile(text: string, file: string): CorpusScenario[] {
  const out: CorpusScenario[] = [];
  const chunks = text.split(/^---\s*$/m);
  chunks.forEach((chunk, i) => {
    if (i === 0 && !/^\s*[^#\s]/m.test(chunk)) return; // the file's own header
    const s = parseScenario(chunk, `${file}#${i}`);
    if (s.steps.length === 0) return;
    if (s.meta["name"] === undefined) throw new Error(`${file}: scenario ${i} has no "# name:"`);
    if (s.meta["rule"] === undefined) throw new Error(`${file}: scenario ${s.name} cites no "# rule:"`);
    out.push({ ...s, file });
  });
  return out;
}

export function loadCorpus(dir = CORPUS_DIR): CorpusScenario[] {
  const all: CorpusScenario[] = [];
  for (const f of readdirSync(dir).filter((n) => n.endsWith(".scn")).sort()) all.push(...parseCorpusFile(readFileSync(join(dir, f), "utf8"), f));
  const names = new Set<string>();
  for (const s of all) {
    if (names.has(s.name)) throw new Error(`corpus: two scenarios named ${s.name}`);
    names.add(s.name);
  }
  return all;
}
