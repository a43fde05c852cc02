/**
 * In the spirit of tools/testing/selftests/mm/uffd-stress.c: several threads fault on the same and
 * on different pages of anon and shmem areas (MISSING, and WP on shmem pages copied with
 * UFFDIO_COPY_MODE_WP) while one monitor resolves them; duplicate faults for one page make the
 * second UFFDIO_COPY fail with EEXIST, which the handler answers with UFFDIO_WAKE, as
 * uffd-common.c:copy_page() does. A second "bounce" pass unregisters, releases the old source,
 * re-registers it and copies back from the area just filled (uffd-stress swaps area_src and
 * area_dst after every bounce). Every byte is verified after each pass, the counters must match
 * the pages touched, and the machine's invariants must hold. Five seeds.
 */
import { describe, expect, it } from "vitest";
import type { Process, Thread, UffdMsg } from "@uffd/kernel";
import {
  MADV_DONTNEED,
  MADV_REMOVE,
  MAP_SHARED,
  POLLIN,
  UFFD_EVENT_PAGEFAULT,
  UFFD_FEATURE_PAGEFAULT_FLAG_WP,
  UFFD_FEATURE_THREAD_ID,
  UFFD_PAGEFAULT_FLAG_MINOR,
  UFFD_PAGEFAULT_FLAG_WP,
  UFFDIO_COPY,
  UFFDIO_COPY_MODE_WP,
  type UffdioCopy,
} from "@uffd/kernel/uapi";
import { ANON_PRIVATE, errnoOf, machine, modeOf, PAGE, readMsgs, register, RW, settle, uffdOpen, unregister, wake, wpRange } from "./harness.ts";

const NR_PAGES = 24;
const NR_THREADS = 6;
const OPS_PER_THREAD = 24;
const SEEDS = [1, 2, 3, 4, 5];

/** mulberry32: a tiny deterministic generator for the access plan (tests stay seeded, like the kernel). */
function lcg(seed: number): () => number {
  let s = (seed * 2654435761) >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

interface Region {
  name: string;
  src: number;
  dst: number;
  shmem: boolean;
  /** Pages copied with MODE_WP (odd pages of shmem regions). */
  wp: (page: number) => boolean;
}

const pattern = (region: number, page: number, pass: number): Uint8Array => {
  const b = new Uint8Array(PAGE);
  for (let j = 0; j < PAGE; j++) b[j] = (region * 31 + page * 7 + j + pass) & 0xff;
  return b;
};

interface Stats {
  copied: number;
  eexist: number;
  wp: number;
  faults: number;
  threadIds: Set<number>;
}

/** The monitor: poll, read a batch of messages, resolve each. Stops on `stop()`. */
function monitor(p: Process, uffd: number, regions: Region[], stats: Stats): { stop: () => void; done: Promise<void> } {
  let stopping = false;
  const done = (async () => {
    for (;;) {
      await p.poll([{ fd: uffd, events: POLLIN }], -1);
      for (const msg of await readMsgs(p, uffd, 16)) await resolve(p, uffd, regions, stats, msg);
      if (stopping) break;
    }
  })();
  return {
    done,
    stop: () => {
      stopping = true;
    },
  };
}

async function resolve(p: Process, uffd: number, regions: Region[], stats: Stats, msg: UffdMsg): Promise<void> {
  if (msg.event !== UFFD_EVENT_PAGEFAULT) throw new Error(`unexpected event ${msg.event}`);
  const { flags, address, feat } = msg.arg.pagefault;
  stats.faults++;
  stats.threadIds.add(feat.ptid);
  if ((flags & UFFD_PAGEFAULT_FLAG_MINOR) !== 0) throw new Error("unexpected MINOR fault");
  if ((flags & UFFD_PAGEFAULT_FLAG_WP) !== 0) {
    stats.wp++;
    await wpRange(p, uffd, address, PAGE, false);
    return;
  }
  const r = regions.find((x) => address >= x.dst && address < x.dst + NR_PAGES * PAGE);
  if (r === undefined) throw new Error(`fault outside the areas: 0x${address.toString(16)}`);
  const page = (address - r.dst) / PAGE;
  const c: UffdioCopy = { dst: address, src: r.src + page * PAGE, len: PAGE, mode: r.wp(page) ? UFFDIO_COPY_MODE_WP : 0 };
  const ret = await errnoOf(p.ioctl(uffd, UFFDIO_COPY, c));
  if (ret === "OK") {
    expect(c.copy).toBe(PAGE);
    stats.copied++;
  } else {
    // A racing duplicate fault: the page is already there, just wake (copy_page()).
    expect([ret, c.copy]).toEqual(["EEXIST", -17]);
    stats.eexist++;
    await wake(p, uffd, address, PAGE);
  }
}

/** One thread's accesses: reads that verify a whole page, and write-backs of the same bytes. */
async function worker(t: Thread, regions: Region[], rand: () => number, pass: number, touched: Set<string>): Promise<void> {
  for (let op = 0; op < OPS_PER_THREAD; op++) {
    const ri = rand() % regions.length;
    const r = regions[ri]!;
    // Half the accesses go to 4 hot pages shared by every thread.
    const page = rand() % 2 === 0 ? rand() % 4 : rand() % NR_PAGES;
    const addr = r.dst + page * PAGE;
    touched.add(`${ri}:${page}`);
    const want = pattern(ri, page, pass);
    const off = rand() % (PAGE - 8);
    const got = await t.read(addr + off, 8);
    expect(got, `${r.name} page ${page} +${off}, pass ${pass}`).toEqual(want.subarray(off, off + 8));
    if (rand() % 3 === 0) await t.write(addr + off, got);
  }
}

/** Reads every page of every region back; returns the pages whose bytes differ from the pattern. */
async function verifyAll(p: Process, regions: Region[]): Promise<string[]> {
  const bad: string[] = [];
  for (const [ri, r] of regions.entries()) {
    for (let pg = 0; pg < NR_PAGES; pg++) {
      const got = await p.mainThread.read(r.dst + pg * PAGE, PAGE);
      if (Buffer.compare(got, pattern(ri, pg, 0)) !== 0) bad.push(`${r.name}:${pg}`);
    }
  }
  return bad;
}

async function stressOnce(seed: number): Promise<void> {
  const { k, p } = machine({ seed });
  const uffd = await uffdOpen(p, UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_THREAD_ID);
  const size = NR_PAGES * PAGE;
  const memfd = await p.memfdCreate("stress", 0);
  await p.ftruncate(memfd, 2 * size);
  const regions: Region[] = [
    { name: "anon", src: await p.mmap(0, size, RW, ANON_PRIVATE), dst: await p.mmap(0, size, RW, ANON_PRIVATE), shmem: false, wp: () => false },
    {
      name: "shmem",
      src: await p.mmap(0, size, RW, MAP_SHARED, memfd, 0),
      dst: await p.mmap(0, size, RW, MAP_SHARED, memfd, size),
      shmem: true,
      wp: (page) => page % 2 === 1,
    },
  ];
  for (const [ri, r] of regions.entries()) {
    for (let pg = 0; pg < NR_PAGES; pg++) await p.mainThread.write(r.src + pg * PAGE, pattern(ri, pg, 0));
  }
  const threads = Array.from({ length: NR_THREADS }, (_, i) => p.spawnThread(`locking-${i}`));
  for (let pass = 0; pass < 2; pass++) {
    for (const r of regions) await register(p, uffd, r.dst, size, r.shmem ? modeOf(true, true, false) : modeOf(true, false, false));
    const stats: Stats = { copied: 0, eexist: 0, wp: 0, faults: 0, threadIds: new Set() };
    const mon = monitor(p, uffd, regions, stats);
    const touched = new Set<string>();
    const rand = lcg(seed * 100 + pass);
    await settle(k, Promise.all(threads.map((t) => worker(t, regions, rand, 0, touched))), `seed ${seed} pass ${pass} workers`);
    // Each touched page was copied exactly once; duplicates ended in EEXIST + WAKE.
    expect(stats.copied).toBe(touched.size);
    expect(stats.faults).toBe(stats.copied + stats.eexist + stats.wp);
    totals.eexist += stats.eexist;
    totals.wp += stats.wp;
    expect([...stats.threadIds].every((tid) => threads.some((t) => t.tid === tid)), "THREAD_ID reports the faulting threads").toBe(true);
    // Verify every byte of every page (untouched pages fault now and are resolved too).
    const mismatches = await settle(k, verifyAll(p, regions), "verify");
    expect(mismatches, `pages with wrong bytes after pass ${pass}`).toEqual([]);
    mon.stop();
    // Wake the monitor out of poll() with a fault it will resolve, then let it exit.
    const last = regions[0]!;
    await p.madvise(last.dst, PAGE, MADV_DONTNEED);
    await settle(k, Promise.all([p.mainThread.read(last.dst, 1), mon.done]), "monitor exit");
    k.checkInvariants();
    // Bounce: the filled area becomes the source, the old source is released and re-registered.
    for (const r of regions) {
      await unregister(p, uffd, r.dst, size);
      await p.madvise(r.src, size, r.shmem ? MADV_REMOVE : MADV_DONTNEED);
      [r.src, r.dst] = [r.dst, r.src];
    }
  }
  await p.close(uffd);
  k.checkInvariants();
}

/** Across all seeds the races must actually have happened (duplicate faults, WP faults). */
const totals = { eexist: 0, wp: 0 };

describe("uffd-stress style: concurrent faults, EEXIST races, bounce and verify", () => {
  for (const seed of SEEDS) {
    it(`seed ${seed}: ${NR_THREADS} threads x ${OPS_PER_THREAD} accesses on anon (MISSING) and shmem (MISSING|WP), two bounces`, () => stressOnce(seed), 10_000);
  }
  it("the seeds exercised duplicate faults (EEXIST -> WAKE) and WP faults", () => {
    expect(totals.eexist).toBeGreaterThan(0);
    expect(totals.wp).toBeGreaterThan(0);
  });
});
