/**
 * `npx tsx examples/seeds-tour/src/main.ts`: a guided tour of the linux-mm threads this project
 * grew from (docs/linux-rules.md §10), each replayed step by step with pagemap bits, pfns and
 * kpagecount printed after every step.
 */
import { pathToFileURL } from "node:url";
import { chapterContinue, chapterCow, chapterMove, chapterPins } from "./chapters.ts";
import { chapterContinuePrivate, chapterMoveAfterFork, chapterPinnedCow, chapterVmspliceLeak, formatReleaseChapters, releaseChapters, type ReleaseChapter, type ReleaseSide } from "./releases.ts";
import { formatChapters, type Chapter } from "./tour.ts";

export { chapterContinue, chapterCow, chapterMove, chapterPins, formatChapters };
export { chapterContinuePrivate, chapterMoveAfterFork, chapterPinnedCow, chapterVmspliceLeak, formatReleaseChapters, releaseChapters };
export type { Chapter, ReleaseChapter, ReleaseSide };

/**
 * Runs the four chapters on 6.18 and the four release chapters (each run on the release where the
 * seed's behaviour happened and on the one that changed it), each on its own kernel, and returns
 * them with the printable lines.
 */
export async function runSeedsTour(): Promise<{ chapters: Chapter[]; releases: ReleaseChapter[]; lines: string[] }> {
  const chapters = [await chapterCow(), await chapterPins(), await chapterContinue(), await chapterMove()];
  const releases = await releaseChapters();
  const lines = [
    "A tour of the seeds: what each linux-mm thread is about, replayed on the simulated Linux 6.18 kernel.",
    "pagemap bits: P present, S swapped (or a pte marker), F file/shared page, X mapped exactly once, WP uffd-wp.",
    "kpagecount is the number of ptes mapping the frame; pins and pipe references are not in it.",
    "",
    ...formatChapters(chapters),
    "The seeds across releases: each scenario on the release where the seed's behaviour happened, then on the",
    "release that changed it (new Kernel({ release }), docs/releases.md), and the outcomes side by side.",
    "",
    ...formatReleaseChapters(releases),
  ];
  return { chapters, releases, lines };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const line of (await runSeedsTour()).lines) console.log(line);
}
