/**
 * `npx tsx examples/compacting-gc/src/main.ts`: an ART-style concurrent compaction with
 * UFFDIO_MOVE, three times: without fork, after a fork that shares the heap (MOVE fails with
 * EBUSY on the shared pages and UFFDIO_COPY takes over), and after a fork with MADV_DONTFORK.
 */
import { pathToFileURL } from "node:url";
import { runCompactingGc, type CompactingGcOptions, type CompactingGcResult, type ForkMode, type PageInstall } from "./gc.ts";

export { runCompactingGc };
export type { CompactingGcOptions, CompactingGcResult, ForkMode, PageInstall };

/** The narrative printed by main. */
export async function compactingGcNarrative(seed = 1): Promise<string[]> {
  const out: string[] = [];
  const titles: Record<ForkMode, string> = {
    none: "no fork before the collection",
    fork: "after fork() without MADV_DONTFORK (seed 003: MOVE -> EBUSY -> COPY)",
    "fork-dontfork": "after fork() with MADV_DONTFORK on the heap",
  };
  for (const mode of ["none", "fork", "fork-dontfork"] as const) {
    const r = await runCompactingGc({ seed, forkBeforeGc: mode });
    out.push(`=== ${titles[mode]}`, ...r.lines, "");
  }
  return out;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const line of await compactingGcNarrative()) console.log(line);
}
