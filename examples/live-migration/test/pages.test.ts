/**
 * The page content model: the expected bytes of a page at version v are what v successive
 * read-modify-writes of the workload leave behind, so the final check can be byte for byte.
 */
import { describe, expect, it } from "vitest";
import { CORRUPT, fillExpectedPage, fillHeader, fillInitialPage, fillRecord, isZeroPage, parseHeader, recordSlot, SLOT_BYTES, UNPOPULATED, WORDS_PER_PAGE } from "../src/pages.ts";
import { Prng } from "../src/prng.ts";
import { parseBandwidth, parseDuration, parseSize, parseWorkload } from "../src/config.ts";

describe("page contents", () => {
  it("the expected page at version v equals v applied writes, for every v up to 200", () => {
    const seed = 42;
    const page = 1234;
    const mem = new Uint32Array(WORDS_PER_PAGE);
    const expected = new Uint32Array(WORDS_PER_PAGE);
    fillInitialPage(mem, seed, page);
    const rec = new Uint32Array(SLOT_BYTES / 4);
    const hdr = new Uint32Array(4);
    for (let v = 0; v <= 200; v++) {
      if (v > 0) {
        expect(parseHeader(mem, seed, page)).toBe(v - 1);
        fillRecord(rec, seed, page, v);
        mem.set(rec, (recordSlot(v) * SLOT_BYTES) / 4);
        fillHeader(hdr, seed, page, v);
        mem.set(hdr, 0);
      }
      fillExpectedPage(expected, seed, page, v);
      expect(expected).toEqual(mem);
    }
  });

  it("pages differ by page number, version and seed", () => {
    const a = new Uint32Array(WORDS_PER_PAGE);
    const b = new Uint32Array(WORDS_PER_PAGE);
    fillExpectedPage(a, 1, 10, 5);
    fillExpectedPage(b, 1, 11, 5);
    expect(a).not.toEqual(b);
    fillExpectedPage(b, 1, 10, 4);
    expect(a).not.toEqual(b);
    fillExpectedPage(b, 2, 10, 5);
    expect(a).not.toEqual(b);
  });

  it("headers: zeros are UNPOPULATED, another page's header is CORRUPT", () => {
    const w = new Uint32Array(WORDS_PER_PAGE);
    expect(parseHeader(w, 1, 3)).toBe(UNPOPULATED);
    fillExpectedPage(w, 1, 3, 7);
    expect(parseHeader(w, 1, 3)).toBe(7);
    expect(parseHeader(w, 1, 4)).toBe(CORRUPT);
    expect(parseHeader(w, 2, 3)).toBe(CORRUPT);
    fillExpectedPage(w, 1, 3, UNPOPULATED);
    expect(isZeroPage(new Uint8Array(w.buffer))).toBe(true);
    w[1023] = 0x80000000;
    expect(isZeroPage(new Uint8Array(w.buffer))).toBe(false);
  });

  it("the PRNG state round-trips (a thread continues its stream on the destination)", () => {
    const a = Prng.fromSeed(7, 3);
    for (let i = 0; i < 10; i++) a.nextU32();
    const b = new Prng(a.state);
    expect(Array.from({ length: 5 }, () => b.nextU32())).toEqual(Array.from({ length: 5 }, () => a.nextU32()));
  });
});

describe("CLI units", () => {
  it("parses sizes, durations, bandwidths and workloads", () => {
    expect(parseSize("256MiB")).toBe(256 * 1024 * 1024);
    expect(parseSize("1g")).toBe(1024 ** 3);
    expect(parseSize("4096")).toBe(4096);
    expect(parseDuration("1.5s")).toBe(1500);
    expect(parseDuration("250us")).toBe(0.25);
    expect(parseBandwidth("1gbit")).toBe(125_000_000);
    expect(parseBandwidth("50MB/s")).toBe(50_000_000);
    expect(parseBandwidth("unlimited")).toBe(0);
    expect(parseWorkload("hot:100, scan:5,random")).toEqual([
      { kind: "hot", rate: 100 },
      { kind: "scan", rate: 5 },
      { kind: "random", rate: 1000 },
    ]);
    expect(parseWorkload("none")).toEqual([]);
    expect(() => parseSize("lots")).toThrow(/not a size/);
    expect(() => parseWorkload("idle:4")).toThrow(/not a workload thread/);
  });
});
