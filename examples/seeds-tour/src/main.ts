/**
 * `npx tsx examples/seeds-tour/src/main.ts`: a guided tour of the linux-mm threads this project
 * grew from (docs/linux-rules.md §10), each replayed step by step with pagemap bits, pfns and
 * kpagecount printed after every step.
 */
import { pathToFileURL } from "node:url";
import { chapterContinue, chapterCow, chapterMove, chapterPins } from "./chapters.ts";
import { formatChapters, type Chapter } from "./tour.ts";

export { chapterContinue, chapterCow, chapterMove, chapterPins, formatChapters };
export type { Chapter };

/** Runs the four chapters (each on its own kernel) and returns them with the printable lines. */
export async function runSeedsTour(): Promise<{ chapters: Chapter[]; lines: string[] }> {
  const chapters = [await chapterCow(), await chapterPins(), await chapterContinue(), await chapterMove()];
  const lines = [
    "A tour of the seeds: what each linux-mm thread is about, replayed on the simulated Linux 6.18 kernel.",
    "pagemap bits: P present, S swapped (or a pte marker), F file/shared page, X mapped exactly once, WP uffd-wp.",
    "kpagecount is the number of ptes mapping the frame; pins and pipe references are not in it.",
    "",
    ...formatChapters(chapters),
  ];
  return { chapters, lines };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const line of (await runSeedsTour()).lines) console.log(line);
}
