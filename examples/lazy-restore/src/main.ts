/**
 * `npx tsx examples/lazy-restore/src/main.ts`: a snapshot is taken, restored lazily through a
 * userfaultfd handler process, ballooned and filled, once per kind of guest RAM; then the same
 * run with a handler that ignores REMOVE events, to show what it gets wrong.
 */
import { pathToFileURL } from "node:url";
import { runLazyRestore, type LazyRestoreOptions, type LazyRestoreResult } from "./restore.ts";

export { runLazyRestore };
export type { LazyRestoreOptions, LazyRestoreResult };

/** The narrative printed by main: three runs. */
export async function lazyRestoreNarrative(seed = 1): Promise<string[]> {
  const out: string[] = [];
  const runs: Array<[string, LazyRestoreOptions]> = [
    ["anonymous guest RAM, balloon with MADV_DONTNEED, SDK handler", { seed, memory: "anon" }],
    ["memfd guest RAM (MAP_SHARED), balloon with MADV_REMOVE, SDK handler", { seed, memory: "memfd" }],
    ["anonymous guest RAM, a handler that ignores REMOVE", { seed, memory: "anon", handler: "naive" }],
  ];
  for (const [title, options] of runs) {
    const r = await runLazyRestore(options);
    out.push(`=== ${title}`, ...r.lines, "");
  }
  return out;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const line of await lazyRestoreNarrative()) console.log(line);
}
