/**
 * Runs the pagemap tour end to end and checks the facts it demonstrates. Each fact was checked
 * on the Linux 6.18 reference host with a C probe (pagemap, /proc/kpagecount, /proc/kpageflags
 * after the same mmap / read / write / fork / write sequence).
 */
import { describe, expect, it } from "vitest";
import { runPagemapTour, type PageView, type TourResult } from "../src/tour.ts";

function page(r: TourResult, step: number, pid: number, n: number): PageView {
  const v = r.steps[step]!.pages.find((p) => p.pid === pid && p.page === n);
  if (v === undefined) throw new Error(`no page ${n} of pid ${pid} in step ${step + 1}`);
  return v;
}

describe("pagemap tour", () => {
  it("shows the zero page, exclusive pages, fork sharing, COW and reuse", async () => {
    const r = await runPagemapTour(1);
    expect(r.steps.map((s) => s.title)).toEqual([
      "mmap 3 pages, MAP_PRIVATE|MAP_ANONYMOUS",
      "parent reads page 0",
      "parent writes 0x11 to page 1",
      "fork",
      "parent writes 0x22 to page 1",
      "child writes 0x33 to page 1",
      "child writes 0x44 to page 2",
    ]);
    const [parent, child] = [r.steps[3]!.pages[0]!.pid, r.steps[3]!.pages[3]!.pid];

    // Step 1: nothing mapped.
    expect(r.steps[0]!.pages.every((p) => !p.present && p.pfn === null)).toBe(true);
    expect(r.steps[0]!.smaps).toEqual([{ pid: parent, rssBytes: 0, anonBytes: 0, perms: "rw-p" }]);

    // Step 2: a read maps the zero page (not exclusive, kpagecount 0, not anon, not in Rss).
    expect(page(r, 1, parent, 0)).toMatchObject({ present: true, pfn: r.zeroPfn, zeroPage: true, exclusive: false, kpagecount: 0, anon: false, firstByte: 0 });
    expect(r.steps[1]!.smaps[0]).toMatchObject({ rssBytes: 0, anonBytes: 0 });

    // Step 3: a write allocates an exclusive anon page.
    const first = page(r, 2, parent, 1);
    expect(first).toMatchObject({ present: true, zeroPage: false, exclusive: true, kpagecount: 1, anon: true, firstByte: 0x11 });
    expect(r.steps[2]!.smaps[0]).toMatchObject({ rssBytes: 4096, anonBytes: 4096 });

    // Step 4: after fork both map the same frame, twice-mapped, bit 56 clear; the zero page is copied too.
    for (const pid of [parent, child]) {
      expect(page(r, 3, pid, 1)).toMatchObject({ present: true, pfn: first.pfn, exclusive: false, kpagecount: 2, firstByte: 0x11 });
      expect(page(r, 3, pid, 0)).toMatchObject({ present: true, pfn: r.zeroPfn });
    }

    // Step 5: the parent's write copies: a new frame for the parent, the child keeps the old one.
    const copied = page(r, 4, parent, 1);
    expect(copied.pfn).not.toBe(first.pfn);
    expect(copied).toMatchObject({ exclusive: true, kpagecount: 1, anon: true, firstByte: 0x22 });
    expect(page(r, 4, child, 1)).toMatchObject({ pfn: first.pfn, exclusive: true, kpagecount: 1, firstByte: 0x11 });

    // Step 6: the child's write reuses its page (the only reference): same pfn, no copy.
    expect(page(r, 5, child, 1)).toMatchObject({ pfn: first.pfn, exclusive: true, kpagecount: 1, firstByte: 0x33 });
    expect(page(r, 5, parent, 1)).toMatchObject({ pfn: copied.pfn, firstByte: 0x22 });

    // Step 7: a page only the child has.
    expect(page(r, 6, child, 2)).toMatchObject({ present: true, exclusive: true, kpagecount: 1, firstByte: 0x44 });
    expect(page(r, 6, parent, 2)).toMatchObject({ present: false, pfn: null });
    expect(r.steps[6]!.smaps).toEqual([
      { pid: parent, rssBytes: 4096, anonBytes: 4096, perms: "rw-p" },
      { pid: child, rssBytes: 8192, anonBytes: 8192, perms: "rw-p" },
    ]);
  });

  it("prints one table per step and is deterministic", async () => {
    const a = await runPagemapTour(7);
    const b = await runPagemapTour(7);
    expect(a.lines).toEqual(b.lines);
    expect(a.lines.filter((l) => l.startsWith("Step "))).toHaveLength(7);
    expect(a.lines).toContain("  smaps pid 101: rw-p Rss 8 kB, Anonymous 8 kB");
    expect(a.lines.some((l) => /^ {2}100 +0 +yes +0 \(zero\) +0 +0 +ZERO_PAGE +0x00$/.test(l))).toBe(true);
  });

});
