/**
 * The end-of-run check on the destination: its guest memory must equal, byte for byte, what the
 * guest wrote, on the source before switchover (the oracle) and on the destination after it.
 *
 * For each page the expected version is the destination's own last write, else the source's.
 * A page the destination guest read before writing must have shown the source's version (else
 * the guest ran on stale data, even if a later write hid it). After a failed postcopy the check
 * is "partial": received pages must be right, and pages that never arrived must not be mapped at
 * all (reading them would block on the userfault forever, and filling them would be wrong).
 */
import { PAGE_SIZE } from "@uffd/kernel/uapi";
import { NOT_KNOWN, type Guest, type WriteLog } from "./guest.ts";
import type { VerificationResult } from "./metrics.ts";
import { fillExpectedPage, parseHeader, UNPOPULATED, WORDS_PER_PAGE, wordsOf } from "./pages.ts";

const BATCH = 512;
const MAX_REPORTED = 10;

export async function verifyGuest(
  guest: Guest,
  log: WriteLog,
  oracle: Uint32Array,
  have: Uint8Array,
  scope: VerificationResult["scope"],
  onProgress: (done: number, total: number) => void,
): Promise<VerificationResult> {
  const r: VerificationResult = { ok: false, scope, pagesChecked: 0, mismatchedPages: 0, staleReads: 0, missingPages: 0, filledMissingPages: 0, firstMismatches: [] };
  if (oracle.length !== guest.pages) throw new Error(`the oracle has ${oracle.length} pages, the guest ${guest.pages}`);
  const expected = new Uint32Array(WORDS_PER_PAGE);
  for (let first = 0; first < guest.pages; first += BATCH) {
    const n = Math.min(BATCH, guest.pages - first);
    const present = guest.presentMap(first, n);
    for (let i = 0; i < n; i++) {
      const p = first + i;
      if (log.firstSeen[p] !== NOT_KNOWN && log.firstSeen[p] !== oracle[p]) r.staleReads++;
      const version = log.known[p] !== NOT_KNOWN ? log.known[p]! : oracle[p]!;
      if (scope === "partial" && have[p] === 0) {
        r.missingPages++;
        if (present[i]) r.filledMissingPages++;
        continue;
      }
      if (scope === "partial" && !present[i]) {
        // A zero page received during precopy and never written: nothing mapped, which reads as zeros.
        r.pagesChecked++;
        if (version !== UNPOPULATED) noteMismatch(r, p, version, "expected data, the page is not mapped");
        continue;
      }
      const actual = wordsOf(await guest.readPage(p));
      fillExpectedPage(expected, guest.seed, p, version);
      r.pagesChecked++;
      const at = firstDifference(actual, expected);
      if (at >= 0) noteMismatch(r, p, version, describe(actual, guest.seed, p, at));
    }
    onProgress(first + n, guest.pages);
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  r.ok = r.mismatchedPages === 0 && r.staleReads === 0 && r.filledMissingPages === 0 && (scope === "full" ? r.missingPages === 0 : true);
  return r;
}

function firstDifference(a: Uint32Array, b: Uint32Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

function noteMismatch(r: VerificationResult, page: number, expectedVersion: number, detail: string): void {
  r.mismatchedPages++;
  if (r.firstMismatches.length < MAX_REPORTED) r.firstMismatches.push({ page, expectedVersion, detail });
}

function describe(actual: Uint32Array, seed: number, page: number, word: number): string {
  const v = parseHeader(actual, seed, page);
  const held = v === UNPOPULATED ? "zeros" : v === 0xffff_fffd ? "a corrupt header" : `version ${v}`;
  return `first difference at byte ${word * 4} of ${PAGE_SIZE}; the page holds ${held}`;
}
