/**
 * The guest's memory in a compact frame store: pages the guest (or the destination's installs)
 * write with the content model's bytes are held as (page, version), every byte still readable,
 * and a page with any other bytes keeps them. Structure and bytes only: host memory is measured
 * by the benchmark (docs/benchmarks.md), never here.
 */
import { PAGE_SIZE, O_NONBLOCK, UFFD_API, UFFDIO_API, UFFDIO_COPY, UFFDIO_REGISTER, UFFDIO_REGISTER_MODE_MISSING } from "@uffd/kernel/uapi";
import { describe, expect, it } from "vitest";
import { initialWorkloadState, Workload } from "../src/workload.ts";
import { Guest } from "../src/guest.ts";
import { fillExpectedPage, fillHeader, fillRecord, pageGenerator, recordSlot, SLOT_BYTES, UNPOPULATED, WORDS_PER_PAGE, wordsOf } from "../src/pages.ts";

const SEED = 5;
const PAGES = 512;

/** Every page of the guest equals the content model at the version `known` says. */
async function expectModelBytes(guest: Guest, known: Uint32Array): Promise<void> {
  const expected = new Uint32Array(WORDS_PER_PAGE);
  const bad: number[] = [];
  for (let p = 0; p < guest.pages; p++) {
    fillExpectedPage(expected, guest.seed, p, known[p]!);
    const actual = wordsOf(await guest.readPage(p));
    if (!actual.every((w, i) => w === expected[i])) bad.push(p);
  }
  expect(bad).toEqual([]);
}

describe("pageGenerator", () => {
  it("identify() names the (page, version) whose bytes fill() produces, for versions across two record cycles", () => {
    const g = pageGenerator(SEED);
    const page = new Uint32Array(WORDS_PER_PAGE);
    const again = new Uint32Array(WORDS_PER_PAGE);
    const args = new Uint32Array(3);
    for (const v of [0, 1, 2, 62, 63, 64, 126, 127, 300]) {
      g.fill(page, 77, v, 0);
      expect(g.identify(page, args)).toBe(true);
      expect([...args]).toEqual([77, v, 0]);
      g.fill(again, args[0]!, args[1]!, args[2]!);
      expect(again).toEqual(page);
    }
  });

  it("zeros and a corrupt header are not identified; between the record and the header write the guess does not match", () => {
    const g = pageGenerator(SEED);
    const args = new Uint32Array(3);
    expect(g.identify(new Uint32Array(WORDS_PER_PAGE), args)).toBe(false);
    const page = new Uint32Array(WORDS_PER_PAGE);
    g.fill(page, 3, 4, 0);
    page[3] = page[3]! ^ 1;
    expect(g.identify(page, args)).toBe(false);
    // The workload's read-modify-write, half done: version 5's record, version 4's header.
    g.fill(page, 3, 4, 0);
    const rec = new Uint32Array(SLOT_BYTES / 4);
    fillRecord(rec, SEED, 3, 5);
    page.set(rec, (recordSlot(5) * SLOT_BYTES) / 4);
    expect(g.identify(page, args)).toBe(true);
    const guessed = new Uint32Array(WORDS_PER_PAGE);
    g.fill(guessed, args[0]!, args[1]!, 0);
    expect(guessed).not.toEqual(page);
    const hdr = new Uint32Array(4);
    fillHeader(hdr, SEED, 3, 5);
    page.set(hdr, 0);
    expect(g.identify(page, args)).toBe(true);
    g.fill(guessed, args[0]!, args[1]!, 0);
    expect(guessed).toEqual(page);
  });
});

describe("the guest in a compact frame store", () => {
  it("boot and the workload's read-modify-writes leave every written page held as (page, version), every byte as the model says", async () => {
    const guest = await Guest.create({ seed: SEED, pages: PAGES }, "test");
    const log = await guest.boot(0.6, () => {});
    const booted = log.known.filter((v) => v !== UNPOPULATED).length;
    expect(guest.kernel.frameStoreStats()).toMatchObject({ generatedFrames: booted, slotFrames: 0, zeroFrames: 0 });
    const state = initialWorkloadState(SEED, PAGES, 64, [
      { kind: "hot", rate: 20_000 },
      { kind: "random", rate: 20_000 },
      { kind: "scan", rate: 20_000 },
    ]);
    const w = new Workload(guest, state, log);
    w.start();
    expect(await w.until((x) => x.writes >= 400, 30_000)).toBe(true);
    expect(await w.pause()).toBe(true);
    expect(w.error).toBeNull();
    expect(log.mismatches + log.corruptReads).toBe(0);
    const written = log.known.filter((v) => v !== UNPOPULATED).length;
    expect(written).toBeGreaterThanOrEqual(booted);
    // Paused between operations: no page is half written, so none keeps a slot.
    expect(guest.kernel.frameStoreStats()).toMatchObject({ generatedFrames: written, slotFrames: 0, zeroFrames: 0 });
    await expectModelBytes(guest, log.known);
    guest.kernel.checkInvariants();
  }, 60_000);

  it("the destination's installs: UFFDIO_COPY and plain writes of model pages are held compact, a page with one wrong byte keeps its bytes", async () => {
    const src = await Guest.create({ seed: SEED, pages: 64 }, "source");
    const log = await src.boot(1, () => {});
    const dst = await Guest.create({ seed: SEED, pages: 64 }, "destination");
    const p = dst.proc;
    const uffd = await p.userfaultfd(O_NONBLOCK);
    await p.ioctl(uffd, UFFDIO_API, { api: UFFD_API, features: 0 });
    await p.ioctl(uffd, UFFDIO_REGISTER, { range: { start: dst.base, len: 32 * PAGE_SIZE }, mode: UFFDIO_REGISTER_MODE_MISSING });
    // Pages 0..31 as postcopy installs them (one batch of 16, then one at a time), 32..63 as precopy writes them.
    await p.ioctl(uffd, UFFDIO_COPY, { dst: dst.addr(0), src: await src.readPages(0, 16), len: 16 * PAGE_SIZE, mode: 0 });
    for (let i = 16; i < 32; i++) {
      const bytes = await src.readPage(i);
      if (i === 20) bytes[PAGE_SIZE - 1] = bytes[PAGE_SIZE - 1]! ^ 0x80;
      await p.ioctl(uffd, UFFDIO_COPY, { dst: dst.addr(i), src: bytes, len: PAGE_SIZE, mode: 0 });
    }
    await dst.writePages(32, await src.readPages(32, 32));
    expect(dst.kernel.frameStoreStats()).toMatchObject({ generatedFrames: 63, slotFrames: 1, zeroFrames: 0 });
    const want = await src.readPage(20);
    want[PAGE_SIZE - 1] = want[PAGE_SIZE - 1]! ^ 0x80;
    expect(Buffer.from(await dst.readPage(20)).equals(Buffer.from(want))).toBe(true);
    const known = log.known.slice();
    const expected = new Uint32Array(WORDS_PER_PAGE);
    for (const pg of [0, 15, 16, 31, 32, 63]) {
      fillExpectedPage(expected, SEED, pg, known[pg]!);
      expect(wordsOf(await dst.readPage(pg))).toEqual(expected);
    }
    dst.kernel.checkInvariants();
  });

  it("a flat guest (GuestOptions.frameStore) reads the same bytes and holds nothing compact", async () => {
    const guest = await Guest.create({ seed: SEED, pages: 64, frameStore: "flat" }, "test");
    const log = await guest.boot(0.5, () => {});
    expect(guest.kernel.frameStoreStats()).toMatchObject({ generatedFrames: 0, slotFrames: 0 });
    await expectModelBytes(guest, log.known);
  });
});
