/**
 * The scenario language: one step per line, `#` starts a comment.
 *
 *   [@proc] verb arg...
 *
 * Regions, files, userfaultfds, pipes and processes are named by the scenario; offsets and
 * lengths are in pages. `@c1` runs a step in process c1 (default: p0, the first process).
 * The full grammar is in docs/conformance.md; `VERBS` below is its machine-readable form: each
 * verb with the kinds of its positional arguments, validated by `parseScenario()`.
 *
 * A scenario is data. Any line may name something that does not exist (yet): the driver then
 * records the step as skipped on both sides without running it, which is what lets the random
 * generator shrink a scenario by deleting lines.
 */

export interface Step {
  /** 1-based line number in the source (0 for generated steps). */
  readonly line: number;
  /** The process that runs the step. */
  readonly proc: string;
  /** The primitive: a syscall or access name ("mmap", "register", "copy", "read", ...). */
  readonly verb: string;
  /** Its arguments as written: region names, numbers, flag names. */
  readonly args: readonly string[];
}

/** A parsed scenario: its name, header fields and steps. */
export interface Scenario {
  /** The scenario's name (its file name, or the generator's label). */
  readonly name: string;
  /** Header fields: `# key: value` lines before the first step. */
  readonly meta: Readonly<Record<string, string>>;
  /** The steps, in order. */
  readonly steps: readonly Step[];
}

/** Argument kinds: n = integer (decimal or 0x), name = an identifier, word = names or numbers joined by commas, rest = flags. */
type ArgKind = "n" | "name" | "loc" | "word" | "rest";

/**
 * verb → positional argument kinds. `loc` is a region name or an absolute address (0x...);
 * trailing `rest` words are verb flags (wp, dontwake, ...), checked by the driver.
 */
export const VERBS: Readonly<Record<string, readonly ArgKind[]>> = {
  map: ["name", "n", "name", "rest"],
  unmap: ["loc", "n", "n"],
  protect: ["loc", "n", "n", "name"],
  advise: ["loc", "n", "n", "word"],
  remap: ["name", "n", "rest"],
  memfd: ["name", "n", "rest"],
  reopen: ["name", "name", "rest"],
  lseek: ["name", "n", "word"],
  seal: ["name", "word"],
  seals: ["name"],
  fread: ["name", "n", "rest"],
  fwrite: ["name", "n", "rest"],
  truncate: ["name", "n"],
  punch: ["name", "n", "n"],
  fallocate: ["name", "n", "n"],
  pwrite: ["name", "n", "n", "rest"],
  pread: ["name", "n", "n", "rest"],
  pipe: ["name"],
  vmsplice: ["name", "loc", "n", "n"],
  drain: ["name", "n"],
  close: ["name"],
  uffd: ["name", "rest"],
  api: ["name", "rest"],
  register: ["name", "loc", "n", "n", "word"],
  unregister: ["name", "loc", "n", "n"],
  wake: ["name", "loc", "n", "n"],
  copy: ["name", "loc", "n", "n", "n", "rest"],
  zeropage: ["name", "loc", "n", "n", "rest"],
  wp: ["name", "loc", "n", "n", "name", "rest"],
  continue: ["name", "loc", "n", "n", "rest"],
  poison: ["name", "loc", "n", "n", "rest"],
  move: ["name", "loc", "n", "loc", "n", "n", "rest"],
  msgs: ["name"],
  read: ["loc", "n", "n"],
  write: ["loc", "n", "n", "n"],
  pagemap: ["loc", "n", "n"],
  smaps: ["name"],
  mincore: ["loc", "n", "n"],
  scan: ["loc", "n", "n", "rest"],
  pin: ["name", "loc", "n", "n"],
  unpin: ["name"],
  pinwrite: ["name", "n", "n", "n"],
  pinread: ["name", "n", "n"],
  fork: ["name"],
  exit: [],
};

/** The steps that need io_uring on the host. */
export const PIN_VERBS: ReadonlySet<string> = new Set(["pin", "unpin", "pinwrite", "pinread"]);

const NAME = /^[A-Za-z_][A-Za-z0-9_.]*$/;
const NUM = /^(0x[0-9a-fA-F]+|\d+)$/;

/** Malformed scenario text; the message names the line. */
export class ScenarioError extends Error {
  /** "ScenarioError". */
  override name = "ScenarioError";
}

/** Parses scenario text; throws ScenarioError naming the line for anything malformed. */
export function parseScenario(text: string, name = "scenario"): Scenario {
  const meta: Record<string, string> = {};
  const steps: Step[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i] as string;
    const hash = raw.indexOf("#");
    if (hash >= 0 && steps.length === 0) {
      const m = /^#\s*([a-z-]+):\s*(.*)$/.exec(raw.trim());
      if (m) meta[m[1] as string] = meta[m[1] as string] === undefined ? (m[2] as string) : `${meta[m[1] as string]} ${m[2] as string}`;
    }
    const body = (hash >= 0 ? raw.slice(0, hash) : raw).trim();
    if (body === "") continue;
    const words = body.split(/\s+/);
    let proc = "p0";
    if ((words[0] as string).startsWith("@")) {
      proc = (words.shift() as string).slice(1);
      if (!NAME.test(proc)) throw new ScenarioError(`line ${i + 1}: bad process name @${proc}`);
    }
    const verb = words.shift();
    if (verb === undefined) throw new ScenarioError(`line ${i + 1}: a process prefix without a step`);
    const kinds = VERBS[verb];
    if (kinds === undefined) throw new ScenarioError(`line ${i + 1}: unknown step "${verb}"`);
    const fixed = kinds.filter((k) => k !== "rest").length;
    if (words.length < fixed || (!kinds.includes("rest") && words.length > fixed)) {
      throw new ScenarioError(`line ${i + 1}: "${verb}" takes ${fixed} argument(s)${kinds.includes("rest") ? " and flags" : ""}, got ${words.length}`);
    }
    for (let a = 0; a < fixed; a++) {
      const w = words[a] as string;
      const k = kinds[a];
      const ok = k === "n" ? NUM.test(w) : k === "loc" ? NAME.test(w) || NUM.test(w) : k === "word" ? /^[A-Za-z0-9_,]+$/.test(w) : NAME.test(w);
      if (!ok) throw new ScenarioError(`line ${i + 1}: argument ${a + 1} of "${verb}" must be ${k === "n" ? "a number" : k === "loc" ? "a region or an address" : "a name"}, got "${w}"`);
    }
    steps.push({ line: i + 1, proc, verb, args: words });
  }
  return { name: meta["name"] ?? name, meta, steps };
}

/** One step as a line of the language (the inverse of parsing it). */
export function formatStep(step: Pick<Step, "proc" | "verb" | "args">): string {
  return `${step.proc === "p0" ? "" : `@${step.proc} `}${step.verb}${step.args.length > 0 ? ` ${step.args.join(" ")}` : ""}`;
}

/** Scenario text for steps, one per line (what parseScenario reads back). */
export function formatScenario(steps: readonly Pick<Step, "proc" | "verb" | "args">[]): string {
  return `${steps.map(formatStep).join("\n")}\n`;
}

/** A number argument: decimal or 0x-hex. */
export function num(word: string): number {
  return word.startsWith("0x") ? Number.parseInt(word.slice(2), 16) : Number.parseInt(word, 10);
}
