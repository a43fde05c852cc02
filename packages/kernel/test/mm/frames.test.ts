/**
 * Frame allocation for multi-page fills, the host-memory options (pretouch, the chunk pool), and
 * the raw form of Process.pagemap().
 *
 * The contiguity checks are the simulator's own allocation policy (PhysMem.allocFrames(): a
 * multi-page UFFDIO_COPY into fresh memory gets neighbouring frames, so it is one copy per
 * contiguous run); what a fill returns and maps follows mm/userfaultfd.c:mfill_atomic() page for
 * page, whatever frames it got.
 */
import { ErrnoError, framePoolBytes, Kernel, type PagemapEntry, type Process, setErrnoStackTraces, setFramePoolLimit } from "@uffd/kernel";
import {
  MADV_DONTNEED,
  MADV_GUARD_INSTALL,
  MADV_PAGEOUT,
  MAP_ANONYMOUS,
  MAP_NORESERVE,
  MAP_PRIVATE,
  MAP_SHARED,
  O_NONBLOCK,
  PAGE_SIZE,
  PROT_READ,
  PROT_WRITE,
  UFFD_API,
  UFFD_FEATURE_WP_UNPOPULATED,
  UFFD_FEATURE_PAGEFAULT_FLAG_WP,
  UFFDIO_API,
  UFFDIO_COPY,
  UFFDIO_COPY_MODE_WP,
  UFFDIO_REGISTER,
  UFFDIO_REGISTER_MODE_MISSING,
  UFFDIO_REGISTER_MODE_WP,
  UFFDIO_WRITEPROTECT,
  UFFDIO_WRITEPROTECT_MODE_WP,
} from "@uffd/kernel/uapi";
import { describe, expect, it } from "vitest";
import { errnoOf } from "../helpers.ts";

const PS = PAGE_SIZE;
const RW = PROT_READ | PROT_WRITE;

async function uffdOn(p: Process, addr: number, len: number, mode: number, features = 0): Promise<number> {
  const uffd = await p.userfaultfd(O_NONBLOCK);
  await p.ioctl(uffd, UFFDIO_API, { api: UFFD_API, features });
  await p.ioctl(uffd, UFFDIO_REGISTER, { range: { start: addr, len }, mode });
  return uffd;
}

/** Page i of `pages` filled with (seed + i) & 0xff. */
function pattern(pages: number, seed: number): Uint8Array {
  const b = new Uint8Array(pages * PS);
  for (let i = 0; i < pages; i++) b.fill((seed + i) & 0xff, i * PS, (i + 1) * PS);
  return b;
}

const pfns = (p: Process, addr: number, pages: number): Array<number | null> => p.pagemap(addr, pages).map((e) => e.pfn);

/** Whether the frames are consecutive pfns. */
function consecutive(list: Array<number | null>): boolean {
  return list.every((pfn, i) => i === 0 || (pfn !== null && pfn === (list[i - 1] as number) + 1));
}

/** Whether the frames are consecutive within each PTE table's part of [addr, addr + pages). */
function consecutivePerTable(p: Process, addr: number, pages: number): boolean {
  const first = addr / PS;
  for (let v = first; v < first + pages; ) {
    const end = Math.min(first + pages, (Math.floor(v / 512) + 1) * 512);
    if (!consecutive(pfns(p, v * PS, end - v))) return false;
    v = end;
  }
  return true;
}

/** Byte equality without a per-element diff (vitest's toEqual is slow on megabytes). */
const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));

describe("multi-page UFFDIO_COPY: contiguous frames, the page loop's outcome", () => {
  it("a fill into fresh memory gets consecutive frames and every page its bytes", async () => {
    const k = new Kernel({ seed: 1 });
    const p = k.spawn();
    const pages = 600; // more than a chunk (256 frames) and more than a PTE table (512 pages)
    const addr = await p.mmap(0, pages * PS, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    const uffd = await uffdOn(p, addr, pages * PS, UFFDIO_REGISTER_MODE_MISSING);
    const src = pattern(pages, 7);
    const arg = { dst: addr, src, len: pages * PS, mode: 0, copy: 0 };
    await p.ioctl(uffd, UFFDIO_COPY, arg);
    expect(arg.copy).toBe(pages * PS);
    expect(consecutive(pfns(p, addr, pages))).toBe(true);
    expect(same(await p.mainThread.read(addr, pages * PS), src)).toBe(true);
    // MADV_DONTNEED frees them in address order; a refill gets them back in runs again (each
    // PTE table's part of the fill is one batch: the most recently freed frames, in order).
    await p.madvise(addr, pages * PS, MADV_DONTNEED);
    const again = pattern(pages, 100);
    await p.ioctl(uffd, UFFDIO_COPY, { dst: addr, src: again, len: pages * PS, mode: 0 });
    expect(consecutivePerTable(p, addr, pages)).toBe(true);
    expect(same(await p.mainThread.read(addr, pages * PS), again)).toBe(true);
    k.checkInvariants();
  });

  it("a source in user memory: resident runs copied together, a non-resident page copied with faults (the retry of mfill_atomic())", async () => {
    const k = new Kernel({ seed: 1 });
    const p = k.spawn();
    const pages = 8;
    const src = await p.mmap(0, pages * PS, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    const image = pattern(pages, 0x30);
    // Every page but page 5 resident: page 5 reads as zeros through the zero page once faulted.
    for (let i = 0; i < pages; i++) if (i !== 5) await p.mainThread.write(src + i * PS, image.subarray(i * PS, (i + 1) * PS));
    const want = image.slice();
    want.fill(0, 5 * PS, 6 * PS);
    const dst = await p.mmap(0, pages * PS, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    const uffd = await uffdOn(p, dst, pages * PS, UFFDIO_REGISTER_MODE_MISSING);
    const arg = { dst, src, len: pages * PS, mode: 0, copy: 0 };
    await p.ioctl(uffd, UFFDIO_COPY, arg);
    expect(arg.copy).toBe(pages * PS);
    expect(same(await p.mainThread.read(dst, pages * PS), want)).toBe(true);
    expect(p.pagemap(dst, pages).every((e) => e.present && e.exclusive && !e.file)).toBe(true);
    k.checkInvariants();
  });

  it("a populated page in the middle: the pages before it are filled, copy says so, the ioctl is EAGAIN (mm/userfaultfd.c:mfill_atomic(), fs/userfaultfd.c:userfaultfd_copy())", async () => {
    const k = new Kernel({ seed: 1 });
    const p = k.spawn();
    const addr = await p.mmap(0, 6 * PS, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    const uffd = await uffdOn(p, addr, 6 * PS, UFFDIO_REGISTER_MODE_MISSING);
    await p.ioctl(uffd, UFFDIO_COPY, { dst: addr + 3 * PS, src: pattern(1, 0xee), len: PS, mode: 0 });
    const before = k.core.mem.inUse;
    const arg = { dst: addr, src: pattern(6, 1), len: 6 * PS, mode: 0, copy: 0 };
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_COPY, arg))).toBe("EAGAIN");
    expect(arg.copy).toBe(3 * PS);
    // Three new frames: the frames prepared for pages 3..5 went back.
    expect(k.core.mem.inUse - before).toBe(3);
    expect(p.pagemap(addr, 6).map((e) => e.present)).toEqual([true, true, true, true, false, false]);
    expect(await p.mainThread.read(addr + 3 * PS, 1)).toEqual(Uint8Array.of(0xee));
    k.checkInvariants();
  });

  it("physical memory running out part way: the frames there are filled, then ENOMEM", async () => {
    const k = new Kernel({ seed: 1, memoryPages: 16 });
    const p = k.spawn();
    // More than memory: MAP_NORESERVE, or the overcommit heuristic refuses it (mm/util.c:__vm_enough_memory()).
    const addr = await p.mmap(0, 32 * PS, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE);
    const uffd = await uffdOn(p, addr, 32 * PS, UFFDIO_REGISTER_MODE_MISSING);
    const free = k.core.mem.freeFrames;
    const arg = { dst: addr, src: pattern(32, 9), len: 32 * PS, mode: 0, copy: 0 };
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_COPY, arg))).toBe("EAGAIN");
    expect(arg.copy).toBe(free * PS);
    const rest = { dst: addr + free * PS, src: pattern(1, 0), len: PS, mode: 0, copy: 0 };
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_COPY, rest))).toBe("ENOMEM");
    expect(rest.copy).toBe(-12);
    expect(same(await p.mainThread.read(addr, free * PS), pattern(free, 9))).toBe(true);
    k.checkInvariants();
  });

  it("UFFDIO_COPY_MODE_WP maps every page of the batch uffd-wp and read-only", async () => {
    const k = new Kernel({ seed: 1 });
    const p = k.spawn();
    const addr = await p.mmap(0, 4 * PS, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    const uffd = await uffdOn(p, addr, 4 * PS, UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP, UFFD_FEATURE_PAGEFAULT_FLAG_WP);
    await p.ioctl(uffd, UFFDIO_COPY, { dst: addr, src: pattern(4, 3), len: 4 * PS, mode: UFFDIO_COPY_MODE_WP });
    expect(p.pagemap(addr, 4).map((e) => e.uffdWp)).toEqual([true, true, true, true]);
    k.checkInvariants();
  });
});

describe("host memory options", () => {
  it("pretouch takes the chunks for that many frames up front; the kernel behaves the same", async () => {
    const plain = new Kernel({ seed: 3 });
    const touched = new Kernel({ seed: 3, pretouch: 600, memoryPages: 4096 });
    expect(touched.core.mem.poolBytes).toBe(3 * 256 * PS); // 600 frames: three 1 MiB chunks
    const all = new Kernel({ seed: 3, pretouch: true, memoryPages: 300 });
    expect(all.core.mem.poolBytes).toBe(2 * 256 * PS);
    const results: Array<Array<number | null>> = [];
    for (const k of [plain, touched]) {
      const p = k.spawn();
      const a = await p.mmap(0, 4 * PS, RW, MAP_PRIVATE | MAP_ANONYMOUS);
      for (let i = 0; i < 4; i++) await p.mainThread.write(a + i * PS, Uint8Array.of(i + 1));
      expect(await p.mainThread.read(a + 2 * PS, 2)).toEqual(Uint8Array.of(3, 0));
      results.push(pfns(p, a, 4));
      k.checkInvariants();
    }
    expect(results[1]).toEqual(results[0]);
    all.checkInvariants();
    expect(() => new Kernel({ pretouch: -1 })).toThrow(RangeError);
    expect(() => new Kernel({ pretouch: 1.5 })).toThrow(RangeError);
    expect(() => new Kernel({ pretouch: "all" as unknown as number })).toThrow(TypeError);
  });

  it("a released kernel's chunks are reused by the next kernel, zeroed where they held bytes", async () => {
    const k1 = new Kernel({ seed: 1 });
    const p1 = k1.spawn();
    const a1 = await p1.mmap(0, 300 * PS, RW, MAP_PRIVATE | MAP_ANONYMOUS); // two chunks' worth
    for (let i = 0; i < 300; i++) await p1.mainThread.write(a1 + i * PS, new Uint8Array(PS).fill(0xff));
    k1.checkInvariants();
    const pool = framePoolBytes();
    k1.core.mem.releaseToPool();
    expect(framePoolBytes()).toBe(pool + 2 * 256 * PS);
    await expect(p1.mainThread.read(a1, 1)).rejects.toThrow(TypeError); // no bytes any more
    const before = framePoolBytes(); // (a collected kernel may have added chunks meanwhile)
    const k2 = new Kernel({ seed: 1 });
    expect(framePoolBytes()).toBe(before - 256 * PS); // the zero page's chunk came from the pool
    const p2 = k2.spawn();
    const a2 = await p2.mmap(0, 300 * PS, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    for (let i = 0; i < 300; i++) await p2.mainThread.write(a2 + i * PS, Uint8Array.of(1));
    const want = new Uint8Array(PS);
    want[0] = 1;
    for (let i = 0; i < 300; i++) expect(same(await p2.mainThread.read(a2 + i * PS, PS), want), `page ${i}`).toBe(true);
    k2.checkInvariants();
  });

  it("setFramePoolLimit() returns the previous limit and rejects nonsense", () => {
    const before = setFramePoolLimit(8 << 20);
    try {
      expect(setFramePoolLimit(0)).toBe(8 << 20);
      expect(framePoolBytes()).toBe(0);
      expect(() => setFramePoolLimit(-1)).toThrow(RangeError);
      expect(() => setFramePoolLimit(Number.NaN)).toThrow(RangeError);
    } finally {
      setFramePoolLimit(before);
    }
  });
});

describe("setErrnoStackTraces()", () => {
  it("turns the stack trace of new ErrnoErrors off and on; nothing else about them changes", async () => {
    const p = new Kernel({ seed: 1 }).spawn();
    const fail = (): Promise<unknown> => p.munmap(1, PS).catch((e: unknown) => e);
    const before = setErrnoStackTraces(false);
    try {
      const quiet = (await fail()) as ErrnoError;
      expect(quiet).toBeInstanceOf(ErrnoError);
      expect([quiet.code, quiet.errno, quiet.syscall]).toEqual(["EINVAL", 22, "munmap"]);
      expect(quiet.stack).toBe(`ErrnoError: ${quiet.message}`); // no frames
      expect(setErrnoStackTraces(true)).toBe(false);
      const loud = (await fail()) as ErrnoError;
      expect(loud.stack).toMatch(/\n\s+at /);
      expect(loud.message).toBe(quiet.message);
    } finally {
      setErrnoStackTraces(before);
    }
  });
});

/** The 64-bit pagemap word of a decoded entry (fs/proc/task_mmu.c: PM_* bits). */
function word(e: PagemapEntry, swapOffset: bigint): bigint {
  let w = 0n;
  if (e.present) w |= 1n << 63n;
  if (e.swapped) w |= 1n << 62n;
  if (e.file) w |= 1n << 61n;
  if (e.guard) w |= 1n << 58n;
  if (e.uffdWp) w |= 1n << 57n;
  if (e.exclusive) w |= 1n << 56n;
  if (e.pfn !== null) w |= BigInt(e.pfn);
  return w | (swapOffset << 5n);
}

describe("Process.pagemap(addr, pages, { format: 'raw' })", () => {
  it("gives the same bits as the object form for every kind of pte, holes and gaps", async () => {
    const k = new Kernel({ seed: 1, swapPages: 64 });
    const p = k.spawn();
    const n = 12;
    // [anon: present, zero page, swapped, wp marker, guard, none] [gap] [shmem shared]
    const anon = await p.mmap(0, n * PS, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    for (const i of [0, 1, 2, 3]) await p.mainThread.write(anon + i * PS, Uint8Array.of(i + 1));
    await p.mainThread.read(anon + 4 * PS, 1);
    await p.madvise(anon + 2 * PS, PS, MADV_PAGEOUT);
    const uffd = await uffdOn(p, anon, n * PS, UFFDIO_REGISTER_MODE_WP, UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_WP_UNPOPULATED);
    await p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: anon + 3 * PS, len: 4 * PS }, mode: UFFDIO_WRITEPROTECT_MODE_WP });
    await p.madvise(anon + 8 * PS, PS, MADV_GUARD_INSTALL);
    const fd = await p.memfdCreate("raw");
    await p.ftruncate(fd, 4 * PS);
    const shared = await p.mmap(anon + (n + 2) * PS, 4 * PS, RW, MAP_SHARED, fd, 0);
    await p.mainThread.write(shared + PS, Uint8Array.of(9));
    const start = anon;
    const pages = (shared - anon) / PS + 4 + 2; // past the last vma too
    const objects = p.pagemap(start, pages);
    const raw = p.pagemap(start, pages, { format: "raw" });
    expect(raw).toBeInstanceOf(BigUint64Array);
    expect(raw.length).toBe(pages);
    const swapped = objects[2]!;
    expect(swapped.swapped && !swapped.present).toBe(true);
    for (let i = 0; i < pages; i++) {
      // Only a swap entry carries an offset; read it back from the word and check the rest.
      const off = objects[i]!.swapped && objects[i]!.pfn === null ? (raw[i]! >> 5n) & ((1n << 50n) - 1n) : 0n;
      expect(raw[i], `page ${i}`).toBe(word(objects[i]!, off));
    }
    expect(raw.some((w) => ((w >> 58n) & 1n) === 1n)).toBe(true); // the guard marker is there
    // A reused array: words beyond `pages` are left alone, the range is overwritten.
    const into = new BigUint64Array(pages + 1).fill(7n);
    const view = p.pagemap(start, pages, { format: "raw", into });
    expect(view.buffer).toBe(into.buffer);
    expect([...view]).toEqual([...raw]);
    expect(into[pages]).toBe(7n);
    // A shorter buffer is a short read, as read(2) of the pagemap file into it would be; a
    // buffer that is no BigUint64Array is a bad pointer (EFAULT), never a JS exception.
    const short = new BigUint64Array(2);
    expect([...p.pagemap(start, pages, { format: "raw", into: short })]).toEqual([...raw.subarray(0, 2)]);
    expect(p.pagemap(start, pages, { format: "raw", into: new BigUint64Array(0) }).length).toBe(0);
    for (const bad of [new Uint32Array(8), [] as unknown, null, "x"]) {
      expect(() => p.pagemap(start, pages, { format: "raw", into: bad as BigUint64Array })).toThrow(expect.objectContaining({ code: "EFAULT" }));
    }
    k.checkInvariants();
  });
});
