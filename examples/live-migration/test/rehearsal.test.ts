/**
 * The destination's rehearsal (MigrationDestination.rehearse): a scratch destination takes a
 * scripted postcopy migration over loopback before the real source connects, and the real
 * migration afterwards is unaffected (every page verified).
 */
import { afterEach, describe, expect, it } from "vitest";
import { MigrationDestination } from "../src/dest.ts";
import { runMigration } from "../src/orchestrator.ts";
import { smallConfig } from "./helpers.ts";

describe("the destination's rehearsal", () => {
  const saved = process.env["LM_REHEARSAL"];
  afterEach(() => {
    if (saved === undefined) delete process.env["LM_REHEARSAL"];
    else process.env["LM_REHEARSAL"] = saved;
  });

  it("migrates every page of each round's scratch guest through the real receive and install path", { timeout: 60_000 }, async () => {
    const s = await MigrationDestination.rehearse(smallConfig({ strategy: "postcopy" }), 1024, 2);
    expect(s.pages).toBe(2048);
    expect(Number.isInteger(s.faults) && s.faults >= 0).toBe(true);
    expect(s.ms).toBeGreaterThan(0);
  });

  it("a migration whose destination rehearsed first is verified byte for byte, and its notes say so", { timeout: 120_000 }, async () => {
    // Forced on (a 16 MiB guest is below the size that gets it by default); the children read it at their fork.
    process.env["LM_REHEARSAL"] = "1";
    const r = await runMigration(smallConfig({ strategy: "postcopy", faults: { holdPushUntilRequests: 4 } }));
    expect(r.verification).toMatchObject({ ok: true, scope: "full", mismatchedPages: 0, missingPages: 0 });
    expect(r.guest.corruptReads).toBe(0);
    expect(r.notes.join("\n")).toMatch(/rehearsed its install path on a scratch guest before the source connected \(40960 pages, \d+ ms\)/);
  });

  it("is off below the default size unless asked for: a small migration's notes do not mention it", { timeout: 120_000 }, async () => {
    delete process.env["LM_REHEARSAL"];
    const r = await runMigration(smallConfig({ strategy: "postcopy" }));
    expect(r.verification.ok).toBe(true);
    expect(r.notes.join("\n")).not.toMatch(/rehearsed/);
  });
});
