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
import { chapterContinue, chapterCow, chapterMove, chapterPins, runSeedsTour, type Chapter } from "../src/main.ts";
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
    expect((await runSeedsTour()).lines).toEqual(a.lines);
    expect(a.lines.filter((l) => l.startsWith("=== Seed "))).toHaveLength(4);
    expect(a.lines).toContain("     MOVE errno: EBUSY");
  });
});
