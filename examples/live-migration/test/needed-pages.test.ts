/**
 * NeededPages: the postcopy push's set of pages still to send, against a plain page-by-page scan.
 */
import { describe, expect, it } from "vitest";
import { NeededPages } from "../src/source.ts";

/** The next needed page at or after `from`, wrapping: what the push did before, page by page. */
function naiveNext(bits: Uint8Array, from: number): number {
  for (let k = 0; k < bits.length; k++) {
    const p = (from + k) % bits.length;
    if (bits[p] === 1) return p;
  }
  return -1;
}

describe("NeededPages", () => {
  it("finds the next needed page, wrapping past the end, and -1 once none is left", () => {
    const s = new NeededPages(200);
    expect(s.next(0)).toBe(-1);
    s.add(5);
    s.add(5);
    s.add(130);
    s.add(199);
    expect(s.remaining).toBe(3);
    expect(s.next(0)).toBe(5);
    expect(s.next(6)).toBe(130);
    expect(s.next(131)).toBe(199);
    expect(s.next(200)).toBe(5); // past the end: from the start
    expect(s.take(130)).toBe(true);
    expect(s.take(130)).toBe(false);
    expect(s.has(130)).toBe(false);
    expect(s.next(6)).toBe(199);
    s.take(199);
    expect(s.next(6)).toBe(5); // wraps
    s.take(5);
    expect(s.remaining).toBe(0);
    expect(s.next(0)).toBe(-1);
  });

  it("agrees with a page-by-page scan through a long sequence of takes (requests and push runs)", () => {
    const pages = 5000; // not a multiple of the 64-page block
    const s = new NeededPages(pages);
    const bits = new Uint8Array(pages);
    s.addAll();
    bits.fill(1);
    expect(s.remaining).toBe(pages);
    let x = 12345;
    const rnd = (n: number): number => {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      return x % n;
    };
    let cursor = 0;
    while (s.remaining > 0) {
      if (rnd(4) === 0) {
        // A request: take one page anywhere and continue after it.
        const q = rnd(pages);
        expect(s.take(q)).toBe(bits[q] === 1);
        bits[q] = 0;
        cursor = q + 1;
      } else {
        const p = s.next(cursor % pages);
        expect(p).toBe(naiveNext(bits, cursor % pages));
        let n = 0;
        while (n < 64 && p + n < pages && bits[p + n] === 1) {
          expect(s.take(p + n)).toBe(true);
          bits[p + n] = 0;
          n++;
        }
        cursor = p + n;
      }
      expect(s.remaining).toBe(bits.reduce((a, b) => a + b, 0));
    }
    expect(s.next(0)).toBe(-1);
  });
});
