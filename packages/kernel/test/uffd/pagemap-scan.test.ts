/**
 * PAGEMAP_SCAN (docs/linux-rules.md §7.2, §8.20, §8.23). Every expectation below is the output
 * of the same sequence run as a C probe on the 6.18.44 reference host.
 */
import { describe, expect, it } from "vitest";
import { type Process } from "@uffd/kernel";
import {
  MADV_DONTNEED,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  PAGEMAP_SCAN,
  UFFDIO_REGISTER_MODE_MISSING,
  type PageRegion,
  UFFD_FEATURE_WP_ASYNC,
  UFFDIO_POISON,
  UFFDIO_REGISTER_MODE_WP,
  UFFDIO_WRITEPROTECT,
  UFFDIO_WRITEPROTECT_MODE_WP,
} from "@uffd/kernel/uapi";
import { errnoOf, isBlocked, PS, register, RW, setup } from "./helpers.ts";

const MB2 = 2 << 20;

interface ScanResult {
  rc: number | string;
  walkEnd: number;
  regions: Array<[number, number, number]>;
}

async function scan(p: Process, fd: number, base: number, flags: number, start: number, end: number, vecLen: number, maxPages: number, inverted: number, mask: number, anyof: number, ret: number): Promise<ScanResult> {
  const vec: PageRegion[] | null = vecLen > 0 ? [] : null;
  const arg = { size: 96, flags, start, end, walkEnd: 0, vec, vecLen, maxPages, categoryInverted: inverted, categoryMask: mask, categoryAnyofMask: anyof, returnMask: ret };
  let rc: number | string;
  try {
    rc = await p.ioctl(fd, PAGEMAP_SCAN, arg);
  } catch (e) {
    rc = (e as { code: string }).code;
  }
  const regions = typeof rc === "number" ? (vec ?? []).slice(0, rc).map((r): [number, number, number] => [r.start - base, r.end - base, r.categories]) : [];
  return { rc, walkEnd: arg.walkEnd - base, regions };
}

describe("PAGEMAP_SCAN", () => {
  it("categories, truncation, masks, WP_MATCHING and holes match the host probe", async () => {
    const { k, p, uffd } = await setup(UFFD_FEATURE_WP_ASYNC);
    const pm = await p.openPagemap();
    const raw = await p.mmap(0, 8 << 20, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    const A = Math.ceil(raw / MB2) * MB2;
    const plain = await p.mmap(0, 4 * PS, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    await register(p, uffd, A, 4 << 20, UFFDIO_REGISTER_MODE_WP);
    await p.mainThread.write(A, new Uint8Array([1]));
    await p.mainThread.write(A + 2 * PS, new Uint8Array([1]));
    const wp = (at: number): Promise<number> => p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: at, len: PS }, mode: UFFDIO_WRITEPROTECT_MODE_WP });
    await wp(A + 2 * PS);
    await wp(A + 3 * PS);
    await p.mainThread.read(A + 4 * PS, 1);
    await p.ioctl(uffd, UFFDIO_POISON, { range: { start: A + 5 * PS, len: PS }, mode: 0 });
    const s = (flags: number, start: number, end: number, vecLen: number, maxPages: number, inv: number, mask: number, anyof: number, ret: number): Promise<ScanResult> =>
      scan(p, pm, A, flags, start, end, vecLen, maxPages, inv, mask, anyof, ret);

    expect(await s(0, A, A + 8 * PS, 64, 0, 0, 0, 0, 0x1ff)).toEqual({
      rc: 7,
      walkEnd: 0x8000,
      regions: [
        [0, 0x1000, 0xb],
        [0x1000, 0x2000, 0x3],
        [0x2000, 0x3000, 0x9],
        [0x3000, 0x4000, 0x11],
        [0x4000, 0x5000, 0x2b],
        [0x5000, 0x6000, 0x13],
        [0x6000, 0x8000, 0x3],
      ],
    });
    expect(await s(0, A + MB2 - PS, A + MB2 + 2 * PS, 64, 0, 0, 0, 0, 0x1ff)).toEqual({ rc: 1, walkEnd: 0x202000, regions: [[0x1ff000, 0x202000, 3]] });
    expect(await s(0, A, A + 8 * PS, 2, 0, 0, 0, 0, 0x1ff)).toEqual({ rc: 2, walkEnd: 0x2000, regions: [[0, 0x1000, 0xb], [0x1000, 0x2000, 3]] });
    expect((await s(0, A, A + 8 * PS, 64, 3, 0, 0, 0, 0x1ff)).walkEnd).toBe(0x3000);
    expect((await s(0, A, A + 8 * PS, 64, 0, 0, 0x8, 0, 0x8)).regions).toEqual([
      [0, 0x1000, 8],
      [0x2000, 0x3000, 8],
      [0x4000, 0x5000, 8],
    ]);
    expect((await s(0, A, A + 8 * PS, 64, 0, 0x2, 0x2, 0, 0x1ff)).regions).toEqual([
      [0x2000, 0x3000, 0x9],
      [0x3000, 0x4000, 0x11],
    ]);
    expect((await s(0, A, A + 8 * PS, 64, 0, 0, 0, 0x30, 0x30)).regions).toEqual([
      [0x3000, 0x4000, 0x10],
      [0x4000, 0x5000, 0x20],
      [0x5000, 0x6000, 0x10],
    ]);
    expect((await s(0, A, A + 8 * PS, 64, 0, 0, 0x1, 0, 0x1)).regions).toEqual([[0, 0x8000, 1]]);
    expect(await s(0, plain, plain + 4 * PS, 64, 0, 0, 0x1, 0, 0x1)).toEqual({ rc: 0, walkEnd: plain + 4 * PS - A, regions: [] });
    expect(await s(2, plain, plain + 4 * PS, 64, 0, 0, 0, 0, 0x1ff)).toEqual({ rc: "EPERM", walkEnd: plain + 4 * PS - A, regions: [] });
    expect((await s(2, A, A + 2 * PS, 64, 0, 0, 0, 0, 0x1ff)).rc).toBe(2);
    expect((await s(1, plain, plain + 4 * PS, 64, 0, 0, 0, 0, 0x1ff)).rc).toBe(0);
    expect((await s(1, A, A + 8 * PS, 64, 0, 0, 2, 0, 2)).regions).toEqual([
      [0, 0x2000, 2],
      [0x4000, 0x8000, 2],
    ]);
    expect((await s(0, A, A + 8 * PS, 64, 0, 0, 0, 0, 0x1ff)).regions).toEqual([
      [0, 0x1000, 0x9],
      [0x1000, 0x2000, 0x11],
      [0x2000, 0x3000, 0x9],
      [0x3000, 0x4000, 0x11],
      [0x4000, 0x5000, 0x29],
      [0x5000, 0x8000, 0x11],
    ]);
    // The WP-async dirty-tracking loop: a write clears uffd-wp silently, the next scan finds it.
    await p.mainThread.write(A, new Uint8Array([2]));
    expect((await s(1, A, A + 8 * PS, 64, 0, 0, 2, 0, 2)).regions).toEqual([[0, 0x1000, 2]]);
    expect((await s(1, A, A + 8 * PS, 64, 0, 0, 2, 0, 2)).rc).toBe(0);
    // Without a vector: a hole is protected only if its category matches; none ptes always are.
    const H = A + MB2;
    expect((await s(1, H, H + 2 * PS, 0, 0, 0, 0x8, 0, 0)).walkEnd).toBe(0x202000);
    expect((await s(0, H, H + 4 * PS, 64, 0, 0, 0, 0, 0x1ff)).regions).toEqual([[0x200000, 0x204000, 3]]);
    await s(1, H, H + 2 * PS, 0, 0, 0, 0, 0, 0);
    expect((await s(0, H, H + 4 * PS, 64, 0, 0, 0, 0, 0x1ff)).regions).toEqual([
      [0x200000, 0x202000, 0x11],
      [0x202000, 0x204000, 3],
    ]);
    await s(1, H + 4 * PS, H + 6 * PS, 0, 0, 0, 0x8, 0, 0);
    expect((await s(0, H, H + 8 * PS, 64, 0, 0, 0, 0, 0x1ff)).regions).toEqual([
      [0x200000, 0x202000, 0x11],
      [0x202000, 0x204000, 3],
      [0x204000, 0x206000, 0x11],
      [0x206000, 0x208000, 3],
    ]);
    expect(await s(0, A, A, 64, 0, 0, 0, 0, 0x1ff)).toEqual({ rc: 0, walkEnd: 0, regions: [] });
    expect((await s(0, A, A + PS + 1, 64, 0, 0, 0, 0, 0x1ff)).walkEnd).toBe(0x2000);
    expect((await s(0, A, A - PS, 64, 0, 0, 0, 0, 0x1ff)).rc).toBe("EFAULT");
    k.checkInvariants();
  });

  // mm/memory.c:do_anonymous_page() calls pte_alloc() before it hands a MISSING fault to
  // handle_userfault(), so the fault leaves a populated PTE table of none ptes, and
  // fs/proc/task_mmu.c:pagemap_scan_pmd_entry() reports a none pte as PAGE_IS_WRITTEN (only a
  // pte hole in a vma without VM_UFFD_WP is not written). Host 6.18.44: 0x0, then 0x2 for all 4.
  it("a MISSING fault on anon memory allocates the PTE table: none ptes then scan as WRITTEN", async () => {
    for (const write of [false, true]) {
      const { k, p, uffd } = await setup();
      const pm = await p.openPagemap();
      const a = await p.mmap(0, 4 * PS, RW, MAP_PRIVATE | MAP_ANONYMOUS);
      await register(p, uffd, a, 4 * PS, UFFDIO_REGISTER_MODE_MISSING);
      expect(await scan(p, pm, a, 0, a, a + 4 * PS, 64, 0, 0, 0, 0, 0x1ff)).toEqual({ rc: 1, walkEnd: 4 * PS, regions: [[0, 4 * PS, 0]] });
      const fault = write ? p.spawnThread().write(a + PS, new Uint8Array([1])) : p.spawnThread().read(a + PS, 1);
      expect(await isBlocked(k, fault)).toBe(true);
      expect(await scan(p, pm, a, 0, a, a + 4 * PS, 64, 0, 0, 0, 0, 0x1ff)).toEqual({ rc: 1, walkEnd: 4 * PS, regions: [[0, 4 * PS, 2]] });
      // The table holds nothing: pagemap and mincore read the none ptes as they read a hole.
      expect([...p.pagemap(a, 4, { format: "raw" })]).toEqual([0n, 0n, 0n, 0n]);
      expect([...(await p.mincore(a, 4 * PS))]).toEqual([0, 0, 0, 0]);
      // Releasing the userfaultfd wakes the fault, which retries and then maps the page.
      await p.close(uffd);
      await fault;
      k.checkInvariants();
    }
  });

  // mm/memory.c:copy_page_range() -> copy_pte_range() allocates the child's PTE table for every
  // populated parent PMD the vma covers (pte_alloc_map_lock() before the loop), even one whose
  // ptes in the vma are all none. Host 6.18.44: the child's scan reads 0x2, like the parent's.
  it("fork copies a populated PTE table of none ptes: the child scans WRITTEN too", async () => {
    const { k, p } = await setup();
    const a = await p.mmap(0, 4 * PS, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    await p.mainThread.write(a, new Uint8Array([1]));
    await p.madvise(a, PS, MADV_DONTNEED);
    const pm = await p.openPagemap();
    expect(await scan(p, pm, a, 0, a, a + 4 * PS, 64, 0, 0, 0, 0, 0x1ff)).toEqual({ rc: 1, walkEnd: 4 * PS, regions: [[0, 4 * PS, 2]] });
    const c = await p.fork();
    const cpm = await c.openPagemap();
    expect(await scan(c, cpm, a, 0, a, a + 4 * PS, 64, 0, 0, 0, 0, 0x1ff)).toEqual({ rc: 1, walkEnd: 4 * PS, regions: [[0, 4 * PS, 2]] });
    k.checkInvariants();
  });

  it("argument checks in order; a non-PAGEMAP_SCAN ioctl is EINVAL (linux-rules §7.2)", async () => {
    const { k, p } = await setup();
    const pm = await p.openPagemap();
    const base = { size: 96, flags: 0, start: 0x100000, end: 0x200000, vec: [] as PageRegion[], vecLen: 4, maxPages: 0, categoryInverted: 0, categoryMask: 0, categoryAnyofMask: 0, returnMask: 0 };
    expect(await errnoOf(p.ioctl(pm, PAGEMAP_SCAN, { ...base, size: 8 }))).toBe("EINVAL");
    expect(await errnoOf(p.ioctl(pm, PAGEMAP_SCAN, { ...base, flags: 4 }))).toBe("EINVAL");
    expect(await errnoOf(p.ioctl(pm, PAGEMAP_SCAN, { ...base, returnMask: 1 << 9 }))).toBe("EINVAL");
    expect(await errnoOf(p.ioctl(pm, PAGEMAP_SCAN, { ...base, start: 0x100001 }))).toBe("EINVAL");
    expect(await errnoOf(p.ioctl(pm, PAGEMAP_SCAN, { ...base, end: 0x7ffffffff000 + PS }))).toBe("EFAULT");
    expect(await errnoOf(p.ioctl(pm, PAGEMAP_SCAN, { ...base, vec: null }))).toBe("EINVAL");
    expect(await errnoOf(p.ioctl(pm, PAGEMAP_SCAN, { ...base, vec: null, vecLen: 0 }))).toBe("OK");
    expect(await errnoOf(p.ioctl(pm, 0xc0606611, base))).toBe("EINVAL");
    expect(await errnoOf(p.openPagemap(99999))).toBe("ENOENT");
    const other = k.spawn({ uid: 1000 });
    expect(await errnoOf(other.openPagemap(p.pid))).toBe("EACCES");
    const fd = await p.openPagemap(other.pid);
    expect(await p.ioctl(fd, PAGEMAP_SCAN, base)).toBe(0);
    k.checkInvariants();
  });

  it("more than 512 regions go through the bounce buffer: walk_end keeps the restart point (host 6.18.44)", async () => {
    const { k, p } = await setup();
    const n = 1200;
    const a = await p.mmap(0, n * PS, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    for (let i = 0; i < n; i += 2) await p.mainThread.write(a + i * PS, new Uint8Array([1]));
    const pm = await p.openPagemap();
    const run = async (vecLen: number, maxPages: number): Promise<[number, number]> => {
      const vec: PageRegion[] = [];
      const arg = { size: 96, flags: 0, start: a, end: a + n * PS, walkEnd: 0, vec, vecLen, maxPages, categoryInverted: 0, categoryMask: 8, categoryAnyofMask: 0, returnMask: 8 };
      const rc = await p.ioctl(pm, PAGEMAP_SCAN, arg);
      expect(vec).toHaveLength(rc);
      return [rc, arg.walkEnd - a];
    };
    expect(await run(1000, 0)).toEqual([600, 4194304]);
    expect(await run(520, 0)).toEqual([520, 4259840]);
    expect(await run(1000, 550)).toEqual([550, 4505600]);
    k.checkInvariants();
  });
});
