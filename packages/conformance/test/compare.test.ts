/**
 * The comparer on hand-made records: what it forgives (and why, see compare.ts) and what it
 * must not.
 */
import { describe, expect, it } from "vitest";
import type { PmEntry } from "../src/backend.ts";
import { compareRecords } from "../src/compare.ts";
import type { Norm, StepRecord } from "../src/driver.ts";

const NONE: PmEntry = { present: false, swapped: false, file: false, exclusive: false, uffdWp: false, guard: false, pfn: null, count: 0, anon: false, dirty: false, swapcache: false, zero: false };
const anon = (pfn: number, extra: Partial<PmEntry> = {}): PmEntry => ({ ...NONE, present: true, exclusive: true, anon: true, count: 1, pfn, ...extra });
const zero = (pfn: number): PmEntry => ({ ...NONE, present: true, zero: true, pfn });

function rec(index: number, r: Norm, churn: number[] | null = null): StepRecord {
  return { index, text: `step ${index}`, r, done: {}, churn };
}
const pm = (...entries: PmEntry[]): Norm => ({ ret: 0, pm: entries });

describe("compareRecords", () => {
  it("agrees when frames differ in number but pair up the same way", () => {
    const native = [rec(0, pm(anon(900), anon(901))), rec(1, pm(anon(900), anon(901)))];
    const sim = [rec(0, pm(anon(5), anon(6)), []), rec(1, pm(anon(5), anon(6)), [])];
    expect(compareRecords(native, sim).status).toBe("agree");
  });

  it("finds a copy where the host reused the frame", () => {
    const native = [rec(0, pm(anon(900))), rec(1, pm(anon(900)))];
    const sim = [rec(0, pm(anon(5)), []), rec(1, pm(anon(6)), [6])];
    // The simulation allocated 6 in step 1 but 5 was never freed: the host kept one frame, the simulation two.
    const c = compareRecords(native, sim);
    expect(c.status).toBe("diverge");
    expect(c.divergence?.what).toBe("result: frame of page 0");
  });

  it("finds two pages sharing a frame on one side only", () => {
    const native = [rec(0, pm(anon(900, { exclusive: false, count: 2 }), anon(900, { exclusive: false, count: 2 })))];
    const sim = [rec(0, pm(anon(5, { exclusive: false, count: 2 }), anon(6, { exclusive: false, count: 2 })), [])];
    expect(compareRecords(native, sim).status).toBe("diverge");
  });

  it("forgives a host frame reused after the simulation freed its partner", () => {
    // Step 1 frees the page on both sides (the simulation reports frame 5 churned); step 2 maps a
    // new page, which the host serves from the same frame 900.
    const native = [rec(0, pm(anon(900))), rec(1, { ret: 0 }), rec(2, pm(anon(900)))];
    const sim = [rec(0, pm(anon(5)), []), rec(1, { ret: 0 }, [5]), rec(2, pm(anon(7)), [7])];
    const c = compareRecords(native, sim);
    expect(c.status).toBe("agree");
    expect(c.normalised).toContain("frame labels end where the simulation freed or reallocated a frame");
  });

  it("compares every pagemap and kpageflags field", () => {
    for (const field of ["exclusive", "uffdWp", "swapped", "file", "anon", "dirty", "swapcache"] as const) {
      const native = [rec(0, pm(anon(900)))];
      const sim = [rec(0, pm(anon(5, { [field]: !anon(5)[field] })), [])];
      expect(compareRecords(native, sim).status, field).toBe("diverge");
    }
  });

  it("masks only the field a known divergence names", () => {
    const native = [rec(0, pm(anon(900)))];
    const sim = [rec(0, pm(anon(5, { dirty: true })), [])];
    expect(compareRecords(native, sim, { mask: new Set(["dirty"]) }).status).toBe("agree");
    expect(compareRecords(native, sim).status).toBe("diverge");
  });

  it("maps the zero page to one label and ignores its map count", () => {
    const native = [rec(0, pm({ ...zero(0x3928), count: 7 }))];
    const sim = [rec(0, pm(zero(1)), [])];
    expect(compareRecords(native, sim).status).toBe("agree");
  });

  it("on a pvm_no_zero_page host, a private page for the zero page is equal, and later divergences are the quirk's", () => {
    const native = [rec(0, pm(anon(900))), rec(1, { err: "EBUSY" })];
    const sim = [rec(0, pm(zero(1)), []), rec(1, { ret: 0 }, [])];
    const quirky = compareRecords(native, sim, { pvmNoZeroPage: true });
    expect(quirky.status).toBe("quirk");
    expect(quirky.quirk).toMatch(/pvm_no_zero_page/);
    expect(compareRecords(native, sim).status).toBe("diverge");
  });

  it("on a pvm_no_zero_page host, a divergence after a step that mapped the zero page in the simulation is the quirk's, even unseen by pagemap", () => {
    // fork-zero-page's shape: a read fault, a fork, the child's rss; no pagemap read before it.
    const smaps = (rss: number): Norm => ({ ret: 0, vmas: [{ rss }] }) as unknown as Norm;
    const native = [rec(0, { ret: 0 }), rec(1, { ret: 0 }), rec(2, smaps(4096))];
    const sim = [{ ...rec(0, { ret: 0 }, []), zeroMapped: true }, { ...rec(1, { ret: 0 }, []), zeroMapped: false }, rec(2, smaps(0), [])];
    const quirky = compareRecords(native, sim, { pvmNoZeroPage: true });
    expect(quirky.status).toBe("quirk");
    expect(quirky.quirk).toBe('pvm_no_zero_page=1: the host maps a private page where the simulation mapped the zero page (step 1, "step 0"); this scenario\'s later results depend on it');
    expect(quirky.divergence?.index).toBe(2);
    // On a host with the zero page, the same records are a divergence.
    expect(compareRecords(native, sim).status).toBe("diverge");
    // Without a step that mapped the zero page, the quirk forgives nothing.
    const plain = sim.map((r) => ({ ...r, zeroMapped: false }));
    expect(compareRecords(native, plain, { pvmNoZeroPage: true }).status).toBe("diverge");
  });

  it("reports a blocked step on one side only, and a different completion", () => {
    expect(compareRecords([rec(0, "blocked")], [rec(0, { ret: 0 }, [])]).status).toBe("diverge");
    const a = [rec(0, "blocked"), { ...rec(1, { ret: 0 }), done: { 0: { ret: 0, data: [1] } } }];
    const b = [rec(0, "blocked", []), { ...rec(1, { ret: 0 }, []), done: { 0: { ret: 0, data: [2] } } }];
    const c = compareRecords(a, b);
    expect(c.status).toBe("diverge");
    expect(c.divergence?.what).toBe("result of step 1");
  });
});
