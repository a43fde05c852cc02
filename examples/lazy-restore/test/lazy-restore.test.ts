/**
 * The lazy-restore example end to end. The facts it relies on:
 * - UFFDIO_REGISTER MISSING on anon and on shmem returns WAKE|COPY|ZEROPAGE|MOVE|POISON
 *   (docs/linux-rules.md §1.4, §8.5);
 * - MADV_DONTNEED (anon) and MADV_REMOVE (shared shmem) on a registered range send
 *   UFFD_EVENT_REMOVE with the range, and the madvise waits until it is read (§4);
 * - UFFDIO_ZEROPAGE maps the shared zero page on anon, and a new zeroed page-cache page on
 *   shared shmem (§3.4);
 * - docs/handler-survey.md §1.4 (Firecracker's handler must zero-fill removed ranges) and the admin guide's
 *   "zeromap" advice for REMOVE (§4).
 */
import { describe, expect, it } from "vitest";
import { _UFFDIO_COPY, _UFFDIO_MOVE, _UFFDIO_POISON, _UFFDIO_WAKE, _UFFDIO_ZEROPAGE, PAGE_SIZE } from "@uffd/kernel/uapi";
import { lazyRestoreNarrative, runLazyRestore } from "../src/main.ts";
import { guestPage } from "../src/snapshot.ts";

const MISSING_IOCTLS = [_UFFDIO_WAKE, _UFFDIO_COPY, _UFFDIO_ZEROPAGE, _UFFDIO_MOVE, _UFFDIO_POISON].reduce((m, b) => m | (1n << BigInt(b)), 0n);

describe("lazy restore (Firecracker-style), served by the SDK", () => {
  it("anonymous RAM: faults are served from the snapshot, MADV_DONTNEED'd balloon pages come back as the zero page", async () => {
    const r = await runLazyRestore({ seed: 1, memory: "anon" });
    expect(r.registerIoctls).toBe(MISSING_IOCTLS);
    expect(r.mappings).toEqual([{ baseHostVirtAddr: r.mappings[0]!.baseHostVirtAddr, size: 64 * PAGE_SIZE, offset: 0, pageSize: PAGE_SIZE }]);
    expect(r.dataPages.length).toBeGreaterThan(20);
    expect(r.dataPages.length).toBeLessThan(64);
    expect(r.workingSetMatches).toBe(true);
    // The exact bytes of the first page read: what the guest wrote before the snapshot (or zeros for a hole).
    const expected = r.dataPages.includes(r.firstRead.page) ? guestPage(r.firstRead.page, 1) : new Uint8Array(PAGE_SIZE);
    expect(r.firstRead.bytes).toEqual(expected);

    // One REMOVE event per discarded run, with its exact range.
    const base = r.mappings[0]!.baseHostVirtAddr;
    expect(r.balloonAdvice).toBe("MADV_DONTNEED");
    expect(r.balloon).toHaveLength(8);
    expect(r.removeEvents).toEqual(runs(r.balloon).map(([s, e]) => ({ start: base + s * PAGE_SIZE, end: base + e * PAGE_SIZE })));
    expect(r.metrics.events.remove).toBe(2);

    // Reclaimed balloon pages: zeros, mapped to the shared zero page (UFFDIO_ZEROPAGE), not in kpagecount.
    expect(r.reclaimed.length).toBe(4);
    expect(r.reclaimed.some((v) => v.inSnapshot)).toBe(true);
    for (const v of r.reclaimed) expect(v).toMatchObject({ zero: true, present: true, pfn: r.zeroPfn, zeroPage: true, file: false, kpagecount: 0 });

    // The fill never re-serves a removed page; at the end every byte is what the guest should see.
    expect(r.untouchedAfterFill).toEqual(r.balloon.filter((p) => !r.reclaimed.some((v) => v.page === p)));
    expect(r.fill.installedBytes).toBeGreaterThan(0);
    expect(r.staleBalloonPages).toEqual([]);
    expect(r.mismatches).toEqual([]);
    expect(r.metrics.policy.errors).toBe(0);
    r.kernel.checkInvariants();
  });

  it("memfd RAM: MADV_REMOVE punches the balloon out of the page cache and the pages come back as fresh zeroed cache pages", async () => {
    const r = await runLazyRestore({ seed: 2, memory: "memfd" });
    expect(r.registerIoctls).toBe(MISSING_IOCTLS);
    expect(r.workingSetMatches).toBe(true);
    expect(r.balloonAdvice).toBe("MADV_REMOVE");
    const base = r.mappings[0]!.baseHostVirtAddr;
    expect(r.removeEvents).toEqual(runs(r.balloon).map(([s, e]) => ({ start: base + s * PAGE_SIZE, end: base + e * PAGE_SIZE })));
    for (const v of r.reclaimed) {
      expect(v).toMatchObject({ zero: true, present: true, zeroPage: false, file: true, kpagecount: 1 });
      expect(v.pfn).not.toBe(r.zeroPfn);
    }
    expect(r.untouchedAfterFill).toHaveLength(r.balloon.length - r.reclaimed.length);
    expect(r.staleBalloonPages).toEqual([]);
    expect(r.mismatches).toEqual([]);
    r.kernel.checkInvariants();
  });
});

describe("lazy restore with a handler that ignores REMOVE", () => {
  it("serves stale snapshot bytes in ballooned pages (what the SDK's REMOVE handling prevents)", async () => {
    const r = await runLazyRestore({ seed: 1, memory: "anon", handler: "naive" });
    expect(r.metrics.events.remove).toBe(2); // the events were read, just not honoured
    const staleExpected = r.balloon.filter((p) => r.dataPages.includes(p));
    expect(staleExpected.length).toBeGreaterThan(0);
    expect(r.staleBalloonPages).toEqual(staleExpected);
    expect(r.mismatches).toEqual(staleExpected);
    for (const v of r.reclaimed) {
      if (v.inSnapshot) expect(v).toMatchObject({ zero: false, present: true, zeroPage: false, kpagecount: 1 });
      else expect(v).toMatchObject({ zero: true, pfn: r.zeroPfn });
    }
    r.kernel.checkInvariants();
  });
});

describe("the narrative", () => {
  it("is deterministic", async () => {
    const a = await lazyRestoreNarrative(5);
    expect(await lazyRestoreNarrative(5)).toEqual(a);
    expect(a.filter((l) => l.startsWith("=== "))).toHaveLength(3);
    expect(a.some((l) => l.includes("Stale balloon pages (snapshot bytes where zeros belong): none."))).toBe(true);
  });
});

function runs(pages: number[]): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const p of pages) {
    const last = out[out.length - 1];
    if (last !== undefined && last[1] === p) last[1] = p + 1;
    else out.push([p, p + 1]);
  }
  return out;
}
