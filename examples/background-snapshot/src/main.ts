/**
 * `npx tsx examples/background-snapshot/src/main.ts`: a QEMU-style background snapshot with
 * uffd-wp, then the same saver without write protection for comparison.
 */
import { pathToFileURL } from "node:url";
import { runBackgroundSnapshot, type BackgroundSnapshotOptions, type BackgroundSnapshotResult } from "./snapshot.ts";

export { runBackgroundSnapshot };
export type { BackgroundSnapshotOptions, BackgroundSnapshotResult };

/** The narrative printed by main. */
export async function backgroundSnapshotNarrative(seed = 1): Promise<string[]> {
  const withWp = await runBackgroundSnapshot({ seed });
  const without = await runBackgroundSnapshot({ seed, protect: false });
  return [...withWp.lines, "", ...without.lines];
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const line of await backgroundSnapshotNarrative()) console.log(line);
}
