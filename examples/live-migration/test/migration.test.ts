/**
 * Small migrations of each strategy between two real processes over TCP; the destination's
 * memory must equal what the guest wrote, byte for byte (verify.ts), and the page accounting
 * must add up.
 */
import { describe, expect, it } from "vitest";
import { guestPages } from "../src/config.ts";
import type { MigrationResult } from "../src/metrics.ts";
import { runMigration } from "../src/orchestrator.ts";
import { smallConfig } from "./helpers.ts";

function expectVerified(r: MigrationResult): void {
  expect(r.verification).toMatchObject({ ok: true, scope: "full", mismatchedPages: 0, staleReads: 0, missingPages: 0 });
  expect(r.verification.pagesChecked).toBe(r.guestPages);
  expect(r.guest.sourceMismatches).toBe(0);
  expect(r.guest.corruptReads).toBe(0);
  expect(r.guest.errors).toEqual([]);
  expect(r.guest.opsOnSource).toBeGreaterThan(0);
  expect(r.guest.opsOnDestination).toBeGreaterThan(0);
  expect(r.downtimeMs).toBeGreaterThan(0);
  expect(r.totalTimeMs).toBeGreaterThanOrEqual(r.switchoverAtMs);
  expect(r.bytes.sourceToDestination).toBeGreaterThan((r.pages.total - r.pages.zero) * 4096);
  // Each process measured its own CPU time over its part of the migration (both did work in it).
  for (const cpu of [r.hostCpu!.source, r.hostCpu!.destination]) {
    expect(cpu.userMs + cpu.systemMs).toBeGreaterThan(0);
    expect(cpu.wallMs).toBeGreaterThan(0);
    for (const n of [cpu.minorFaults, cpu.voluntarySwitches, cpu.involuntarySwitches]) expect(Number.isInteger(n) && n >= 0).toBe(true);
  }
}

describe("live migration between two processes", () => {
  it("precopy: rounds tracked with uffd-wp (WP_ASYNC), then stop-and-copy; no faults on the destination", async () => {
    const r = await runMigration(smallConfig({ strategy: "precopy" }));
    expectVerified(r);
    expect(r.trackingMethod).toMatch(/^wp-async/);
    expect(r.pages.precopy).toBeGreaterThanOrEqual(r.guestPages);
    expect(r.pages.demand + r.pages.background).toBe(0);
    expect(r.faults.count).toBe(0);
    expect(r.rounds[0]!.pages).toBe(r.guestPages);
    expect(r.pages.duplicate).toBe(r.pages.total - r.guestPages);
  });

  it("postcopy: every page travels by demand or by background push; only demand answers repeat a pushed page", async () => {
    // The push waits for the guest's first HOLD requests: those pages were provably not yet
    // transferred when the guest touched them, whatever the load (without the hold, whether the
    // guest faults at all is a race between the push and the guest threads).
    const HOLD = 8;
    const reports: Array<[number, number]> = [];
    const r = await runMigration(smallConfig({ strategy: "postcopy", faults: { holdPushUntilRequests: HOLD } }), {
      progress: (side, phase, done, total) => {
        if (side === "source" && phase === "postcopy") reports.push([done, total]);
      },
    });
    expectVerified(r);
    // The source's postcopy progress (at most one report per PROGRESS_INTERVAL_MS) only grows, and
    // its last report, sent when nothing is left to push, counts every page of the phase.
    expect(reports.length).toBeGreaterThan(0);
    for (let i = 1; i < reports.length; i++) expect(reports[i]![0]).toBeGreaterThan(reports[i - 1]![0]);
    const [lastDone, total] = reports[reports.length - 1]!;
    expect(lastDone).toBeGreaterThanOrEqual(total);
    expect(r.trackingMethod).toBe("none");
    expect(r.pages.precopy + r.pages.stopCopy).toBe(0);
    // A page requested while its pushed copy was still on the bulk connection is answered on
    // the demand path as well: that is the only way a page travels twice.
    expect(r.pages.demand + r.pages.background - r.pages.duplicate).toBe(r.guestPages);
    expect(r.pages.duplicate).toBeLessThanOrEqual(r.pages.demand);
    // Each REQUEST is one missing fault on a page not yet asked for; each is answered by one demand page.
    expect(r.faults.requests).toBeGreaterThanOrEqual(HOLD);
    expect(r.faults.count).toBeGreaterThanOrEqual(r.faults.requests);
    expect(r.pages.demand).toBeGreaterThanOrEqual(HOLD);
    expect(r.notes.join(" ")).toMatch(/userfaultfd MISSING/);
  });

  it("hybrid: one precopy round, then postcopy for the pages dirtied since", async () => {
    // Round 1 ends only after the guest wrote a page during it, so the dirty set is never empty
    // (without the hook that holds only if the guest threads get the CPU while the round runs).
    const r = await runMigration(smallConfig({ strategy: "hybrid", faults: { holdFirstRoundUntilGuestWrites: 1 } }));
    expectVerified(r);
    expect(r.rounds).toHaveLength(1);
    expect(r.pages.precopy).toBe(r.guestPages);
    expect(r.pages.stopCopy).toBe(0);
    // Every page after the round is a resend of a round-1 page: the dirty set, moved by postcopy.
    expect(r.pages.demand + r.pages.background).toBe(r.pages.duplicate);
    expect(r.rounds[0]!.dirtyAfter).toBeGreaterThan(0);
    expect(r.pages.duplicate).toBeGreaterThanOrEqual(r.rounds[0]!.dirtyAfter);
  });

  it.each(["flat", "compact"] as const)("postcopy with the %s frame store: verified the same", async (frameStore) => {
    const r = await runMigration(smallConfig({ strategy: "postcopy", frameStore, faults: { holdPushUntilRequests: 4 } }));
    expectVerified(r);
    expect(r.config.frameStore).toBe(frameStore);
    expect(r.notes).toContain(`frame store: ${frameStore} on both sides (${frameStore === "compact" ? "pages the content model generates cost no 4 KiB of host memory" : "4 KiB of host memory per written page"})`);
    expect(r.pages.demand + r.pages.background - r.pages.duplicate).toBe(r.guestPages);
    expect(r.pages.demand).toBeGreaterThanOrEqual(4);
  });

  it.each(["wp-sync", "content-hash"] as const)("precopy with %s dirty tracking", async (tracking) => {
    const r = await runMigration(smallConfig({ strategy: "precopy", tracking, memoryBytes: 8 * 1024 * 1024, maxDowntimeMs: 5 }));
    expectVerified(r);
    expect(r.trackingMethod).toBe(tracking);
    expect(r.guestPages).toBe(guestPages(r.config));
  });
});

describe("the test hooks", () => {
  it("are refused when the workload could never satisfy them (the run would only wait for its timeout)", () => {
    expect(() => smallConfig({ workload: [{ kind: "scan", rate: 2000 }], faults: { holdFirstRoundUntilGuestWrites: 1 } })).toThrow(/needs a workload thread that writes/);
    expect(() => smallConfig({ workload: [], faults: { holdPushUntilRequests: 1 } })).toThrow(/needs a running workload/);
    expect(() => smallConfig({ faults: { holdPushUntilRequests: 1.5 } })).toThrow(/must be a non-negative integer/);
    expect(() => smallConfig({ frameStore: "sparse" as never })).toThrow(/unknown frame store "sparse" \(one of auto, compact, flat\)/);
  });
});
