/**
 * The demo on every release profile (docs/releases.md), the long-term ones and the two history
 * profiles (5.7, 5.18), both sides on the same release:
 * a small hybrid migration (precopy tracking on the source, postcopy fill on the destination)
 * verifies every page, and the result names what each side used and fell back to. What the
 * releases lack: /dev/userfaultfd before 6.1 (2d5de004e009), UFFD_FEATURE_WP_UNPOPULATED before
 * 6.4 (2bad466cc9d9), UFFD_FEATURE_WP_ASYNC and PAGEMAP_SCAN before 6.7 (d61ea1cb0095,
 * 52526ca7fdb9); UFFDIO_MOVE (6.8) the destination does not use: it installs with UFFDIO_COPY.
 */
import { describe, expect, it } from "vitest";
import { ALL_RELEASES, type AnyRelease } from "@uffd/kernel";
import { runMigration } from "../src/orchestrator.ts";
import { formatResultTable } from "../src/report-text.ts";
import { smallConfig } from "./helpers.ts";

const AT_LEAST: Record<AnyRelease, number> = { "5.7": 507, "5.10": 510, "5.18": 518, "5.15": 515, "6.1": 601, "6.6": 606, "6.12": 612, "6.18": 618 };
/** Whether `release` is `since` or later (since as "6.7"). */
function has(release: AnyRelease, since: string): boolean {
  const [maj, min] = since.split(".").map(Number) as [number, number];
  return AT_LEAST[release] >= maj * 100 + min;
}

const devUffd = (r: AnyRelease) => ({ wanted: "/dev/userfaultfd", used: "userfaultfd(2)", reason: `/dev/userfaultfd came in Linux 6.1; this kernel is ${r}-uffd` });

describe.each(ALL_RELEASES.map((r) => [r] as const))("the live-migration demo on release %s", (release) => {
  // Two OS processes per run: a few seconds on a loaded 2-CPU machine.
  it("every page verifies; the report shows each side's dirty tracking, fill and fallbacks", { timeout: 120_000 }, async () => {
    const r = await runMigration(smallConfig({ strategy: "hybrid", memoryBytes: 8 * 1024 * 1024, kernel: { source: release, destination: release }, faults: { holdFirstRoundUntilGuestWrites: 1 } }));
    expect(r.verification).toMatchObject({ ok: true, scope: "full", mismatchedPages: 0, staleReads: 0, missingPages: 0 });
    expect(r.verification.pagesChecked).toBe(r.guestPages);
    expect(r.guest.errors).toEqual([]);
    const async = has(release, "6.7");
    expect(r.trackingMethod).toBe(async ? "wp-async+pagemap-scan" : "wp-sync");
    const source = [
      ...(async ? [] : [{ wanted: "wp-async dirty tracking", used: "wp-sync dirty tracking", reason: `wp-async came in Linux 6.7; this kernel is ${release}-uffd` }]),
      ...(has(release, "6.1") ? [] : [devUffd(release)]),
      ...(has(release, "6.4") ? [] : [{ wanted: "wp-unpopulated", used: "pre-populating the range", reason: `wp-unpopulated came in Linux 6.4; this kernel is ${release}-uffd` }]),
    ];
    expect(r.kernels).toEqual({
      source: { release, uses: `${r.trackingMethod} dirty tracking`, fallbacks: source },
      destination: { release, uses: "UFFDIO_COPY / UFFDIO_ZEROPAGE", fallbacks: has(release, "6.1") ? [] : [devUffd(release)] },
    });
    const text = formatResultTable(r);
    expect(text).toMatch(new RegExp(`kernel: source / destination\\s+${release.replace(".", "\\.")} / ${release.replace(".", "\\.")}\\n`));
    expect(text).toMatch(/destination postcopy fill\s+UFFDIO_COPY \/ UFFDIO_ZEROPAGE\n/);
    const cellOf = (f: Array<{ wanted: string; used: string }>): string => (f.length === 0 ? "none" : `no ${f.map((x) => x.wanted.replace(" dirty tracking", "")).join(", ")}`);
    expect(text.split("\n").find((l) => l.startsWith("source fallbacks"))?.trimEnd().endsWith(cellOf(source))).toBe(true);
    expect(text.split("\n").find((l) => l.startsWith("destination fallbacks"))?.trimEnd().endsWith(cellOf(r.kernels!.destination.fallbacks))).toBe(true);
    for (const f of source) expect(text).toContain(`note: source kernel ${release}: ${f.used} instead of ${f.wanted} (${f.reason})`);
  });
});
