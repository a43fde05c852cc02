/**
 * Losing the connection in the middle of postcopy: the guest already runs on the destination
 * with part of its memory. The run must fail with a clear error, and the destination must not
 * paper over the missing pages: no page is filled with zeros or stale data, and the threads that
 * touched a missing page stay blocked (QEMU's "postcopy paused"), as closing the userfaultfd
 * would instead let the kernel map zero pages silently (docs/handler-survey.md, ejc3/fcvm#739).
 */
import { describe, expect, it } from "vitest";
import { MigrationError, runMigration } from "../src/orchestrator.ts";
import { smallConfig } from "./helpers.ts";

async function failure(p: Promise<unknown>): Promise<MigrationError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof MigrationError) return e;
    throw e;
  }
  throw new Error("the migration unexpectedly succeeded");
}

const SLOW_LINK = { latencyMs: 2, bandwidthBytesPerSec: 50e6 / 8 };
/** The push waits for this many demand requests (smallConfig's guest runs 3 threads). */
const HOLD = 16;

describe("connection lost mid-postcopy", () => {
  it("the source cuts the connection: a clear error, received pages correct, missing pages never filled", async () => {
    const e = await failure(runMigration(smallConfig({ strategy: "postcopy", link: SLOW_LINK, faults: { dropLinkAfterPostcopyPages: 1500, holdPushUntilRequests: HOLD } })));
    expect(e.message).toMatch(/connection to the source lost during postcopy/);
    expect(e.message).toMatch(/no missing page is filled with zeros/);
    const v = e.verification!;
    expect(v).toMatchObject({ ok: true, scope: "partial", mismatchedPages: 0, staleReads: 0, filledMissingPages: 0 });
    expect(v.missingPages).toBeGreaterThan(0);
    expect(v.pagesChecked + v.missingPages).toBe(4096);
    // How many pushed pages the destination installed before the cut depends on its speed (frames
    // still queued are dropped). The demand pages do not: each guest thread asks for its next page
    // only once its previous one is mapped, so when the source had HOLD requests, at least
    // HOLD - (threads) of them were installed, and the check covers at least those.
    expect(v.pagesChecked).toBeGreaterThanOrEqual(HOLD - 3);
    expect(e.destination!.phaseAtEnd).toBe("failed");
    expect(e.destination!.missingPages).toBe(v.missingPages);
  });

  it("the source process is SIGKILLed: same guarantees", async () => {
    const e = await failure(runMigration(smallConfig({ strategy: "postcopy", link: SLOW_LINK, faults: { killSourceAfterPostcopyPages: 1024 } })));
    expect(e.message).toMatch(/connection to the source lost during postcopy/);
    expect(e.message).toMatch(/source process killed by SIGKILL/);
    expect(e.verification).toMatchObject({ ok: true, scope: "partial", mismatchedPages: 0, filledMissingPages: 0 });
    // The source sends nothing past 1024 postcopy pages (then the kill lands), so at most those
    // pages and one run of them still in the modelled send buffer reached the destination.
    expect(e.verification!.missingPages).toBeGreaterThan(0);
    expect(e.verification!.pagesChecked).toBeLessThan(1024 + 64 + 64);
  });
});
