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
