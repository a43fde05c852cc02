/**
 * The seeds tour: each chapter's key facts, as pagemap bits, pfns, kpagecount and errnos.
 * References (docs/linux-rules.md): §5.2 do_wp_page (copy unless the page is exclusive or
 * reusable by refcount), §5.3 fork (early COW of maybe-pinned pages; uffd-wp dropped without
 * EVENT_FORK), §5.5/§5.7 uffd-wp kept across swap-out, §3.4 CONTINUE on MAP_PRIVATE maps the cache
 * page read-only, §2.8 CONTINUE over a present pte = EEXIST with mapped = -EEXIST (the selftest's
 * continue_range()), §2.10/§8.11 MOVE of a non-PAE page = EBUSY, also after the child exits and
 * after a read, until a write fault reuses the page.
 */
import { describe, expect, it } from "vitest";
import { chapterContinue, chapterContinuePrivate, chapterCow, chapterMove, chapterMoveAfterFork, chapterPinnedCow, chapterPins, chapterVmspliceLeak, runSeedsTour, type Chapter, type ReleaseChapter } from "../src/main.ts";
import { pmBits, type PageRow, type TourStep } from "../src/tour.ts";

function step(c: Chapter, n: number): TourStep {
  const s = c.steps[n - 1];
  if (s === undefined) throw new Error(`chapter ${c.seed} has no step ${n}`);
  return s;
}

function row(s: TourStep, who: string, mapping: string, page: number): PageRow {
  const r = s.rows.find((x) => x.who === who && x.mapping === mapping && x.page === page);
  if (r === undefined) throw new Error(`no row ${who}/${mapping}/${page} in "${s.title}"`);
  return r;
}

const view = (r: PageRow): string => `${pmBits(r.entry)} kpc${r.kpagecount} ${r.firstByte === null ? "-" : r.firstByte.toString(16)}`;

describe("seeds tour", () => {
  it("seed 000: COW follows page_count (a pipe reference forces a copy), and uffd-wp survives swap-out but not fork without EVENT_FORK", async () => {
    const c = await chapterCow();
    expect(view(row(step(c, 2), "child", "anon", 0))).toBe("P1 S0 F0 X0 WP0 kpc2 11");
    expect(view(row(step(c, 3), "parent", "anon", 0))).toBe("P1 S0 F0 X1 WP0 kpc1 11");
    expect(view(row(step(c, 4), "parent", "anon", 0))).toBe("P1 S0 F0 X1 WP0 kpc1 11"); // the pipe reference is invisible here
    const s5 = step(c, 5);
    expect(s5.facts).toEqual({ "page 0 copied": true, "page 1 reused": true, "pipe reads": "0x11" });
    expect(row(s5, "parent", "anon", 0).entry.pfn).not.toBe(row(step(c, 4), "parent", "anon", 0).entry.pfn);
    expect(row(s5, "parent", "anon", 1).entry.pfn).toBe(row(step(c, 3), "parent", "anon", 1).entry.pfn);
    expect(view(row(step(c, 6), "parent", "anon", 1))).toBe("P1 S0 F0 X1 WP1 kpc1 44");
    expect(view(row(step(c, 7), "parent", "anon", 1))).toBe("P0 S1 F0 X0 WP1 kpc0 -");
    const s8 = step(c, 8);
    expect(view(row(s8, "parent", "anon", 1))).toBe("P0 S1 F0 X0 WP1 kpc0 -");
    expect(view(row(s8, "child", "anon", 1))).toBe("P0 S1 F0 X0 WP0 kpc0 -");
    const s9 = step(c, 9);
    expect(s9.facts["uffd message"]).toBe("flags 0x3 at page 1"); // UFFD_PAGEFAULT_FLAG_WRITE | UFFD_PAGEFAULT_FLAG_WP
    expect(view(row(s9, "parent", "anon", 0))).toBe("P1 S0 F0 X1 WP0 kpc1 55");
    expect(view(row(s9, "parent", "anon", 1))).toBe("P1 S0 F0 X1 WP0 kpc1 66");
    expect(view(row(s9, "child", "anon", 0))).toBe("P1 S0 F0 X1 WP0 kpc1 33");
    c.kernel.checkInvariants();
  });

  it("seed 001: a pinned page is copied for the child at fork, and the parent's pin stays coherent", async () => {
    const c = await chapterPins();
    expect(view(row(step(c, 2), "parent", "anon", 0))).toBe("P1 S0 F0 X1 WP0 kpc1 51");
    expect(step(c, 2).facts).toEqual({ "device reads": "0x51" });
    const s3 = step(c, 3);
    const parent0 = row(s3, "parent", "anon", 0);
    const child0 = row(s3, "child", "anon", 0);
    expect(view(parent0)).toBe("P1 S0 F0 X1 WP0 kpc1 51");
    expect(view(child0)).toBe("P1 S0 F0 X1 WP0 kpc1 51");
    expect(child0.entry.pfn).not.toBe(parent0.entry.pfn);
    expect(parent0.entry.pfn).toBe(row(step(c, 2), "parent", "anon", 0).entry.pfn);
    expect(view(row(s3, "parent", "anon", 1))).toBe("P1 S0 F0 X0 WP0 kpc2 52");
    expect(row(s3, "child", "anon", 1).entry.pfn).toBe(row(s3, "parent", "anon", 1).entry.pfn);
    expect(view(row(step(c, 4), "parent", "anon", 0))).toBe("P1 S0 F0 X1 WP0 kpc1 99");
    expect(view(row(step(c, 4), "child", "anon", 0))).toBe("P1 S0 F0 X1 WP0 kpc1 51");
    expect(step(c, 5).facts).toEqual({ "same pfn": true, "device reads": "0x77" });
    c.kernel.checkInvariants();
  });

  it("seed 002: CONTINUE on MAP_PRIVATE maps the cache page read-only, a second CONTINUE is EEXIST (mapped -17), a write COWs without a userfault", async () => {
    const c = await chapterContinue();
    const s2 = step(c, 2);
    expect(s2.facts).toEqual({ "uffd message": "flags 0x4 at page 0", "CONTINUE mapped": 4096, "reader got": "0xaa" });
    expect(view(row(s2, "app", "private", 0))).toBe("P1 S0 F1 X0 WP0 kpc2 aa");
    expect(row(s2, "app", "private", 0).entry.pfn).toBe(row(s2, "app", "shared", 0).entry.pfn);
    expect(step(c, 3).facts).toEqual({ errno: "EEXIST", mapped: -17 });
    const s4 = step(c, 4);
    expect(s4.facts).toEqual({ "read(uffd) with O_NONBLOCK": "EAGAIN", "file byte 0": "0xaa" });
    expect(view(row(s4, "app", "private", 0))).toBe("P1 S0 F0 X1 WP0 kpc1 55");
    expect(view(row(s4, "app", "shared", 0))).toBe("P1 S0 F1 X1 WP0 kpc1 aa");
    expect(row(s4, "app", "private", 0).entry.pfn).not.toBe(row(s2, "app", "private", 0).entry.pfn);
    c.kernel.checkInvariants();
  });

  it("seeds 003/004: MOVE after fork is EBUSY (move -16) with COPY as the fallback; PAE returns only with a write fault", async () => {
    const c = await chapterMove();
    expect(view(row(step(c, 2), "app", "src", 0))).toBe("P1 S0 F0 X0 WP0 kpc2 1");
    const s3 = step(c, 3);
    expect(s3.facts).toEqual({ "MOVE errno": "EBUSY", "MOVE move": -16, "COPY copy": 4096 });
    expect(view(row(s3, "app", "dst", 0))).toBe("P1 S0 F0 X1 WP0 kpc1 1");
    expect(view(row(s3, "app", "src", 0))).toBe("P1 S0 F0 X0 WP0 kpc2 1");
    const s4 = step(c, 4);
    expect(view(row(s4, "app", "src", 1))).toBe("P1 S0 F0 X1 WP0 kpc1 2"); // exclusive by pagemap ...
    expect(s4.facts).toEqual({ "MOVE errno": "EBUSY" }); // ... but not PAE
    expect(step(c, 5).facts).toEqual({ "MOVE errno": "EBUSY" });
    const s6 = step(c, 6);
    expect(s6.facts).toMatchObject({ "write reused the page": true, "MOVE errno": "OK" });
    expect(view(row(s6, "app", "src", 1))).toBe("P0 S0 F0 X0 WP0 kpc0 -");
    expect(view(row(s6, "app", "dst", 1))).toBe("P1 S0 F0 X1 WP0 kpc1 3");
    expect(String(row(s6, "app", "dst", 1).entry.pfn)).toBe(s6.facts["moved pfn"]);
    c.kernel.checkInvariants();
  });

  it("prints every chapter, deterministically", async () => {
    const a = await runSeedsTour();
    expect(a.chapters.map((c) => c.seed)).toEqual(["000", "001", "002", "003 + 004"]);
    expect(a.releases.map((c) => `${c.seed}: ${c.sides[0].release} / ${c.sides[1].release}`)).toEqual(["000: 5.7 / 5.10", "001 + 004: 5.18 / 6.1", "002: 5.10 / 5.15", "003 + 004: 6.6 / 6.12"]);
    expect((await runSeedsTour()).lines).toEqual(a.lines);
    expect(a.lines.filter((l) => l.startsWith("=== Seed "))).toHaveLength(8);
    expect(a.lines).toContain("     MOVE errno: EBUSY");
    expect(a.lines).toContain("  --- on 5.7 (the bug)");
    expect(a.lines.filter((l) => l === "  side by side:")).toHaveLength(4);
  });
});

/** Side `i` of a release chapter, checked to run on `release` (its kernel says so too). */
function side(c: ReleaseChapter, i: 0 | 1, release: string): ReleaseChapter["sides"][0] {
  const s = c.sides[i];
  expect(s.release).toBe(release);
  expect(s.chapter.kernel.release).toBe(release);
  s.chapter.kernel.checkInvariants();
  return s;
}

/**
 * The release chapters (docs/releases.md "Copy-on-write, release by release" and the uAPI table):
 * cow.c's "vmsplice() + unmap in child" leaks on 5.7 (mapcount) and not on 5.10 (page_count,
 * 09854ba94c6a); "R/O-mapping a page registered as iouring fixed buffer" loses the R/W pin on 5.18
 * and keeps it on 6.1 (PageAnonExclusive, 6c287605fd56); MINOR on shmem is EINVAL on 5.10 and
 * CONTINUE on MAP_PRIVATE maps the cache page read-only from 5.14 (mm/userfaultfd.c
 * mfill_atomic_install_pte(): no write bit for a page-cache page without VM_SHARED); UFFDIO_MOVE is EINVAL before
 * 6.8 and EBUSY for a page shared by fork after (mm/userfaultfd.c move_pages_pte()).
 */
describe("seeds tour across releases", () => {
  it("seed 000: the vmsplice leak on 5.7, none on 5.10", async () => {
    const c = await chapterVmspliceLeak();
    const bug = side(c, 0, "5.7");
    const fix = side(c, 1, "5.10");
    expect(bug.outcome).toEqual({ "the parent's write": "reuses the page", "the child reads from the pipe": "0xff", verdict: "leak from parent into child" });
    expect(fix.outcome).toEqual({ "the parent's write": "copies the page", "the child reads from the pipe": "0x11", verdict: "no leak" });
    for (const s of [bug, fix]) {
      expect(view(row(step(s.chapter, 1), "child", "anon", 0))).toBe("P1 S0 F0 X0 WP0 kpc2 11");
      expect(view(row(step(s.chapter, 2), "parent", "anon", 0))).toBe("P1 S0 F0 X1 WP0 kpc1 11");
      expect(view(row(step(s.chapter, 3), "parent", "anon", 0))).toBe("P1 S0 F0 X1 WP0 kpc1 ff");
    }
    expect(step(bug.chapter, 3).facts).toEqual({ "the write reused the page": true, "the child reads": "0xff" });
    expect(step(fix.chapter, 3).facts).toEqual({ "the write reused the page": false, "the child reads": "0x11" });
  });

  it("seeds 001 + 004: a R/W-pinned page mapped R/O for a moment is copied on 5.18 (the device keeps the old page), kept on 6.1", async () => {
    const c = await chapterPinnedCow();
    const bug = side(c, 0, "5.18");
    const fix = side(c, 1, "6.1");
    expect(bug.outcome).toEqual({ "the app's write": "copies the pinned page", "the device reads": "0x51", verdict: "the R/W pin lost coherency" });
    expect(fix.outcome).toEqual({ "the app's write": "keeps the pinned page", "the device reads": "0xff", verdict: "the pin is reliable" });
    expect(step(bug.chapter, 2).facts).toEqual({ "same pfn": false, "device reads": "0x51" });
    expect(step(fix.chapter, 2).facts).toEqual({ "same pfn": true, "device reads": "0xff" });
    expect(row(step(bug.chapter, 2), "app", "anon", 0).entry.pfn).not.toBe(row(step(bug.chapter, 1), "app", "anon", 0).entry.pfn);
  });

  it("seed 002: MINOR on shmem is EINVAL on 5.10; on 5.15 CONTINUE maps the cache page read-only and a private write copies it", async () => {
    const c = await chapterContinuePrivate();
    const before = side(c, 0, "5.10");
    const after = side(c, 1, "5.15");
    expect(before.outcome).toEqual({ "UFFDIO_REGISTER MINOR": "EINVAL", "UFFDIO_CONTINUE maps": "-", "the file after a private write": "-" });
    expect(before.chapter.steps).toHaveLength(1);
    expect(after.outcome).toEqual({ "UFFDIO_REGISTER MINOR": "OK", "UFFDIO_CONTINUE maps": "the cache page, read-only", "the file after a private write": "0xaa" });
    expect(step(after.chapter, 2).facts).toEqual({ "CONTINUE mapped": 4096 });
    expect(view(row(step(after.chapter, 2), "app", "private", 0))).toBe("P1 S0 F1 X1 WP0 kpc1 aa");
    expect(step(after.chapter, 3).facts).toEqual({ "the write copied the page": true, "file byte 0": "0xaa" });
    expect(view(row(step(after.chapter, 3), "app", "private", 0))).toBe("P1 S0 F0 X1 WP0 kpc1 55");
  });

  it("seeds 003 + 004: MOVE is EINVAL on 6.6 (nothing written back); on 6.12 EBUSY (move -16) after fork, OK once a write fault made the page exclusive", async () => {
    const c = await chapterMoveAfterFork();
    const before = side(c, 0, "6.6");
    const after = side(c, 1, "6.12");
    expect(before.outcome).toEqual({ "MOVE of a page shared by fork": "EINVAL", "COPY as the fallback": "4096", "MOVE of an exclusive page": "EINVAL" });
    expect(after.outcome).toEqual({ "MOVE of a page shared by fork": "EBUSY", "COPY as the fallback": "4096", "MOVE of an exclusive page": "OK" });
    expect(step(before.chapter, 2).facts).toEqual({ "MOVE errno": "EINVAL", "MOVE move": "-", "COPY copy": 4096 });
    expect(step(after.chapter, 2).facts).toEqual({ "MOVE errno": "EBUSY", "MOVE move": -16, "COPY copy": 4096 });
    expect(view(row(step(after.chapter, 3), "app", "src", 1))).toBe("P0 S0 F0 X0 WP0 kpc0 -");
    expect(view(row(step(after.chapter, 3), "app", "dst", 1))).toBe("P1 S0 F0 X1 WP0 kpc1 3");
    expect(view(row(step(before.chapter, 3), "app", "src", 1))).toBe("P1 S0 F0 X1 WP0 kpc1 3");
  });
});
