/**
 * mremap(2) conformance (mm/mremap.c, 6.18). Errnos, layouts and pagemap bits were observed on
 * the 6.18.44 reference host; the userfaultfd cases follow docs/linux-rules.md §4, §5.7 and
 * §8.15 and the uffd-wp-mremap selftest.
 */
import { describe, expect, it } from "vitest";
import { Kernel, type Process } from "@uffd/kernel";
import {
  MADV_GUARD_INSTALL,
  MADV_PAGEOUT,
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_PRIVATE,
  MAP_SHARED,
  MREMAP_DONTUNMAP,
  MREMAP_FIXED,
  MREMAP_MAYMOVE,
  O_NONBLOCK,
  PAGE_SIZE,
  PROT_NONE,
  PROT_READ,
  PROT_WRITE,
  UFFD_EVENT_REMAP,
  UFFD_EVENT_UNMAP,
  UFFD_FEATURE_EVENT_REMAP,
  UFFD_FEATURE_EVENT_UNMAP,
  UFFD_FEATURE_WP_UNPOPULATED,
  UFFD_API,
  UFFDIO_API,
  UFFDIO_REGISTER_MODE_MISSING,
  UFFDIO_REGISTER_MODE_WP,
  UFFDIO_WRITEPROTECT,
  UFFDIO_WRITEPROTECT_MODE_WP,
} from "@uffd/kernel/uapi";
import { boot, expectErrno } from "../core/helpers.ts";
import { errnoOf, fill, isBlocked, readMsgs, register, setup } from "../uffd/helpers.ts";

const PS = PAGE_SIZE;
const RW = PROT_READ | PROT_WRITE;
const ANON = MAP_PRIVATE | MAP_ANONYMOUS;

/** The vmas meeting [lo, hi), clipped to it, as [start - base, end - base, perms] in pages. */
function layout(p: Process, base: number, lo: number, hi: number): Array<[number, number, string]> {
  return p
    .smaps()
    .filter((v) => v.end > lo && v.start < hi)
    .map((v) => [(Math.max(v.start, lo) - base) / PS, (Math.min(v.end, hi) - base) / PS, v.perms]);
}

/** Like setup() of the uffd tests, on a kernel with a swap device. */
async function setupSwap(features: number): Promise<{ k: Kernel; p: Process; uffd: number }> {
  const k = new Kernel({ seed: 1, swapPages: 64 });
  const p = k.spawn();
  const uffd = await p.userfaultfd(O_NONBLOCK);
  await p.ioctl(uffd, UFFDIO_API, { api: UFFD_API, features });
  return { k, p, uffd };
}

/** A 4-page anon mapping fenced by PROT_NONE pages, so nothing merges with it by accident. */
async function fenced(p: Process, pages: number): Promise<number> {
  const g = await p.mmap(0, (pages + 2) * PS, PROT_NONE, ANON);
  return p.mmap(g + PS, pages * PS, RW, ANON | MAP_FIXED);
}

describe("mremap argument checks (check_mremap_params / check_prep_vma, in Linux's order)", () => {
  it("gives the host's errnos for bad flags, alignment, lengths, FIXED/DONTUNMAP rules and overlap", async () => {
    const { k, p } = boot();
    const a = await p.mmap(0, 16 * PS, RW, ANON);
    await p.munmap(a + 8 * PS, 8 * PS);
    const cases: Array<[string, Promise<number>, string]> = [
      ["bad flags", p.mremap(a, PS, PS, 8), "EINVAL"],
      ["bad flags + unaligned", p.mremap(a + 1, PS, PS, 8), "EINVAL"],
      ["unaligned", p.mremap(a + 1, PS, PS, 0), "EINVAL"],
      ["new_len 0", p.mremap(a, PS, 0, 0), "EINVAL"],
      ["new_len > TASK_SIZE", p.mremap(a, PS, 2 ** 47, 0), "EINVAL"],
      ["FIXED without MAYMOVE", p.mremap(a, PS, PS, MREMAP_FIXED, a + 10 * PS), "EINVAL"],
      ["DONTUNMAP without MAYMOVE", p.mremap(a, PS, PS, MREMAP_DONTUNMAP, a + 10 * PS), "EINVAL"],
      ["FIXED unaligned target", p.mremap(a, PS, PS, MREMAP_FIXED | MREMAP_MAYMOVE, a + 10 * PS + 1), "EINVAL"],
      ["FIXED target past TASK_SIZE", p.mremap(a, PS, PS, MREMAP_FIXED | MREMAP_MAYMOVE, 0x7ffffffff000), "EINVAL"],
      ["FIXED overlap", p.mremap(a, 2 * PS, 2 * PS, MREMAP_FIXED | MREMAP_MAYMOVE, a + PS), "EINVAL"],
      ["DONTUNMAP resize", p.mremap(a, PS, 2 * PS, MREMAP_DONTUNMAP | MREMAP_MAYMOVE), "EINVAL"],
      ["old range unmapped", p.mremap(a + 9 * PS, PS, PS, 0), "EFAULT"],
      ["old range unmapped, grow", p.mremap(a + 9 * PS, PS, 2 * PS, 0), "EFAULT"],
      ["old range unmapped, shrink", p.mremap(a + 9 * PS, 2 * PS, PS, 0), "EFAULT"],
      ["old_len 0 of a private mapping", p.mremap(a, 0, PS, MREMAP_MAYMOVE), "EINVAL"],
      ["grow across the vma end", p.mremap(a + 7 * PS, 2 * PS, 3 * PS, 0), "EFAULT"],
    ];
    for (const [what, pr, code] of cases) expect(await errnoOf(pr), what).toBe(code);
    // Without FIXED/DONTUNMAP new_addr is ignored, garbage or not [host].
    expect(await p.mremap(a, PS, PS, 0, 0xffff_ffff_f000)).toBe(a);
    // A same-size or shrinking request is not checked against the vma end [host].
    expect(await p.mremap(a + 7 * PS, 2 * PS, 2 * PS, 0)).toBe(a + 7 * PS);
    k.checkInvariants();
  });
});

describe("resizing in place", () => {
  it("shrink unmaps the tail, across vma ends and holes; grow extends when the space is free [host]", async () => {
    const { k, p } = boot();
    const a = await fenced(p, 8);
    await p.munmap(a + 7 * PS, PS);
    expect(await p.mremap(a + 6 * PS, 4 * PS, PS, 0)).toBe(a + 6 * PS);
    expect(layout(p, a, a, a + 8 * PS)).toEqual([[0, 7, "rw-p"]]);
    await p.munmap(a + 8 * PS, PS); // the fence page after it
    expect(await p.mremap(a, 7 * PS, 10 * PS, 0)).toBe(a);
    expect(layout(p, a, a, a + 10 * PS)).toEqual([[0, 10, "rw-p"]]);
    expect(await p.mremap(a, 10 * PS, 8 * PS, 0)).toBe(a);
    expect(layout(p, a, a, a + 10 * PS)).toEqual([[0, 8, "rw-p"]]);
    k.checkInvariants();
  });

  it("a blocked grow is ENOMEM without MAYMOVE, also for a range not ending the vma [host]", async () => {
    const { k, p } = boot();
    const a = await fenced(p, 8);
    await expectErrno(p.mremap(a, 8 * PS, 10 * PS, 0), "ENOMEM");
    await expectErrno(p.mremap(a, 4 * PS, 5 * PS, 0), "ENOMEM");
    k.checkInvariants();
  });
});

describe("moving (move_vma / move_page_tables)", () => {
  it("MAYMOVE grow moves the pages as they are: same pfns, data, mapcount, rss; the old range is gone", async () => {
    const { k, p } = boot();
    const a = await fenced(p, 8);
    await p.mainThread.write(a, fill(7, 1));
    await p.mainThread.write(a + PS, fill(8, 1));
    await p.mainThread.read(a + 2 * PS, 1); // the zero page
    const before = p.pagemap(a, 3);
    const n = await p.mremap(a, 8 * PS, 10 * PS, MREMAP_MAYMOVE);
    expect(n).not.toBe(a);
    const after = p.pagemap(n, 3);
    expect(after.map((e) => e.pfn)).toEqual(before.map((e) => e.pfn));
    expect(after.map((e) => e.exclusive)).toEqual([true, true, false]);
    expect(k.kpagecount(after[0]!.pfn!)).toBe(1);
    expect([...(await p.mainThread.read(n, 1)), ...(await p.mainThread.read(n + PS, 1))]).toEqual([7, 8]);
    expect(p.pagemap(a, 1)[0]!.present).toBe(false);
    await expect(p.mainThread.read(a, 1)).rejects.toMatchObject({ signal: "SIGSEGV" });
    expect(p.smaps().find((v) => v.start === n)).toMatchObject({ end: n + 10 * PS, rssBytes: 2 * PS, anonBytes: 2 * PS });
    k.checkInvariants();
  });

  it("swap ptes, guard markers and shmem pages move too", async () => {
    const { k, p } = boot(1, { swapPages: 64 });
    const a = await fenced(p, 3);
    await p.mainThread.write(a, fill(1, 3 * PS));
    await p.madvise(a, PS, MADV_PAGEOUT);
    await p.madvise(a + PS, PS, MADV_GUARD_INSTALL);
    const t = await p.mmap(0, 8 * PS, PROT_NONE, ANON);
    await p.mremap(a, 3 * PS, 3 * PS, MREMAP_MAYMOVE | MREMAP_FIXED, t + 2 * PS);
    expect(p.pagemap(t + 2 * PS, 3).map((e) => [e.present, e.swapped, e.guard])).toEqual([
      [false, true, false],
      [false, true, true],
      [true, false, false],
    ]);
    expect(await p.mainThread.read(t + 2 * PS, 1)).toEqual(new Uint8Array([1]));
    const s = await p.mmap(0, 2 * PS, RW, MAP_SHARED | MAP_ANONYMOUS);
    await p.mainThread.write(s, fill(4, 1));
    const sn = await p.mremap(s, 2 * PS, 4 * PS, MREMAP_MAYMOVE);
    expect(p.pagemap(sn, 1)[0]).toMatchObject({ present: true, file: true });
    expect(await p.mainThread.read(sn, 1)).toEqual(new Uint8Array([4]));
    k.checkInvariants();
  });

  it("a faulted anon region moved away and back merges with its old neighbours again [host]", async () => {
    const { k, p } = boot();
    const a = await fenced(p, 6);
    for (let i = 0; i < 6; i++) await p.mainThread.write(a + i * PS, fill(i + 1, 1));
    const t = await p.mmap(0, 4 * PS, PROT_NONE, ANON);
    await p.mremap(a + 2 * PS, 2 * PS, 2 * PS, MREMAP_MAYMOVE | MREMAP_FIXED, t);
    expect(layout(p, a, a, a + 6 * PS)).toEqual([
      [0, 2, "rw-p"],
      [4, 6, "rw-p"],
    ]);
    await p.mremap(t, 2 * PS, 2 * PS, MREMAP_MAYMOVE | MREMAP_FIXED, a + 2 * PS);
    expect(layout(p, a, a, a + 6 * PS)).toEqual([[0, 6, "rw-p"]]);
    expect([...(await p.mainThread.read(a + 2 * PS, 1)), ...(await p.mainThread.read(a + 3 * PS, 1))]).toEqual([3, 4]);
    k.checkInvariants();
  });

  it("an unfaulted anon vma takes its new address's pgoff and merges with an unfaulted neighbour [host]", async () => {
    const { k, p } = boot();
    const g = await p.mmap(0, 12 * PS, PROT_NONE, ANON);
    const b = await p.mmap(g + 2 * PS, 2 * PS, RW, ANON | MAP_FIXED);
    const c = await p.mmap(g + 6 * PS, 2 * PS, RW, ANON | MAP_FIXED);
    await p.mremap(c, 2 * PS, 2 * PS, MREMAP_MAYMOVE | MREMAP_FIXED, b + 2 * PS);
    expect(layout(p, b, b, b + 4 * PS)).toEqual([[0, 4, "rw-p"]]);
    k.checkInvariants();
  });

  it("old_len 0 on a shared mapping maps the same object a second time [host]", async () => {
    const { k, p } = boot();
    const s = await p.mmap(0, 4 * PS, RW, MAP_SHARED | MAP_ANONYMOUS);
    await p.mainThread.write(s, fill(3, 1));
    const dup = await p.mremap(s, 0, 4 * PS, MREMAP_MAYMOVE);
    expect(dup).not.toBe(s);
    expect(await p.mainThread.read(dup, 1)).toEqual(new Uint8Array([3]));
    await p.mainThread.write(dup + PS, fill(9, 1));
    expect(await p.mainThread.read(s + PS, 1)).toEqual(new Uint8Array([9]));
    await expectErrno(p.mremap(s, 0, 4 * PS, 0), "ENOMEM");
    k.checkInvariants();
  });

  it("FIXED unmaps what was at the target first", async () => {
    const { k, p } = boot();
    const a = await fenced(p, 2);
    const t = await p.mmap(0, 2 * PS, RW, ANON);
    await p.mainThread.write(t, fill(5, 1));
    const tp = p.pagemap(t, 1)[0]!.pfn!;
    await p.mainThread.write(a, fill(6, 1));
    expect(await p.mremap(a, 2 * PS, 2 * PS, MREMAP_MAYMOVE | MREMAP_FIXED, t)).toBe(t);
    expect(await p.mainThread.read(t, 1)).toEqual(new Uint8Array([6]));
    expect(k.kpagecount(tp)).toBe(0);
    k.checkInvariants();
  });

  it("FIXED shrink: the tail is unmapped, then the rest moves", async () => {
    const { k, p } = boot();
    const a = await fenced(p, 4);
    await p.mainThread.write(a, fill(1, 4 * PS));
    const t = await p.mmap(0, 8 * PS, PROT_NONE, ANON);
    expect(await p.mremap(a, 4 * PS, 2 * PS, MREMAP_MAYMOVE | MREMAP_FIXED, t)).toBe(t);
    expect(layout(p, t, t, t + 8 * PS)).toEqual([
      [0, 2, "rw-p"],
      [2, 8, "---p"],
    ]);
    expect(p.smaps().find((v) => v.start === t)!.rssBytes).toBe(2 * PS);
    k.checkInvariants();
  });
});

describe("MREMAP_DONTUNMAP", () => {
  it("the old vma stays (keeping 'ac', per the stable accounting fix), empty: it refaults zero pages [host]", async () => {
    const { k, p } = boot();
    const a = await fenced(p, 4);
    await p.mainThread.write(a, fill(1, 1));
    await p.mainThread.write(a + PS, fill(2, 1));
    const t = await p.mmap(0, 4 * PS, PROT_NONE, ANON);
    expect(await p.mremap(a, 4 * PS, 4 * PS, MREMAP_MAYMOVE | MREMAP_DONTUNMAP | MREMAP_FIXED, t)).toBe(t);
    expect(p.smaps().find((v) => v.start === a)).toMatchObject({ end: a + 4 * PS, rssBytes: 0, vmFlags: ["rd", "wr", "mr", "mw", "me", "ac"] });
    expect(p.smaps().find((v) => v.start === t)).toMatchObject({ end: t + 4 * PS, rssBytes: 2 * PS });
    expect(p.pagemap(a, 1)[0]!.present).toBe(false);
    expect(await p.mainThread.read(a, 1)).toEqual(new Uint8Array([0]));
    expect(p.pagemap(a, 1)[0]!.pfn).toBe(k.zeroPfn);
    expect([...(await p.mainThread.read(t, 1)), ...(await p.mainThread.read(t + PS, 1))]).toEqual([1, 2]);
    k.checkInvariants();
  });

  it("without FIXED the target is a hint; over several vmas it is EFAULT (single-vma path) [host]", async () => {
    const { k, p } = boot();
    const c = await fenced(p, 8);
    await p.mprotect(c + 2 * PS, 2 * PS, PROT_READ);
    await expectErrno(p.mremap(c, 8 * PS, 8 * PS, MREMAP_MAYMOVE | MREMAP_DONTUNMAP), "EFAULT");
    const n = await p.mremap(c, 2 * PS, 2 * PS, MREMAP_MAYMOVE | MREMAP_DONTUNMAP);
    expect(n).not.toBe(c);
    expect(layout(p, c, c, c + 8 * PS).map((e) => e[0])).toEqual([0, 2, 4]);
    k.checkInvariants();
  });
});

describe("move-only MREMAP_FIXED over several vmas (remap_move, 6.17+)", () => {
  it("moves every vma, keeping the gaps between them; a gap at the start is EFAULT [host]", async () => {
    const { k, p } = boot();
    const t = await p.mmap(0, 32 * PS, PROT_NONE, ANON);
    const b = await fenced(p, 8);
    await p.mprotect(b + 2 * PS, 2 * PS, PROT_READ);
    await p.mainThread.write(b, fill(1, 1));
    expect(await p.mremap(b, 8 * PS, 8 * PS, MREMAP_MAYMOVE | MREMAP_FIXED, t + 4 * PS)).toBe(t + 4 * PS);
    expect(layout(p, t, t, t + 12 * PS)).toEqual([
      [0, 4, "---p"],
      [4, 6, "rw-p"],
      [6, 8, "r--p"],
      [8, 12, "rw-p"],
    ]);
    expect(await p.mainThread.read(t + 4 * PS, 1)).toEqual(new Uint8Array([1]));
    const c = await fenced(p, 8);
    await p.munmap(c + 3 * PS, 2 * PS);
    expect(await p.mremap(c, 8 * PS, 8 * PS, MREMAP_MAYMOVE | MREMAP_FIXED, t + 20 * PS)).toBe(t + 20 * PS);
    expect(layout(p, t, t + 20 * PS, t + 28 * PS)).toEqual([
      [20, 23, "rw-p"],
      [23, 25, "---p"],
      [25, 28, "rw-p"],
    ]);
    const d = await fenced(p, 8);
    await p.munmap(d, 2 * PS);
    await expectErrno(p.mremap(d, 8 * PS, 8 * PS, MREMAP_MAYMOVE | MREMAP_FIXED, t + 12 * PS), "EFAULT");
    k.checkInvariants();
  });

  it("a gap at the end is allowed: only the mapped part moves [host]", async () => {
    const { k, p } = boot();
    const t = await p.mmap(0, 16 * PS, PROT_NONE, ANON);
    const c = await fenced(p, 8);
    await p.munmap(c + 6 * PS, 2 * PS);
    expect(await p.mremap(c, 8 * PS, 8 * PS, MREMAP_MAYMOVE | MREMAP_FIXED, t + 4 * PS)).toBe(t + 4 * PS);
    expect(layout(p, t, t + 4 * PS, t + 12 * PS)).toEqual([
      [4, 10, "rw-p"],
      [10, 12, "---p"],
    ]);
    k.checkInvariants();
  });

  it("a userfaultfd-armed vma cannot be part of a multi-vma move; the parts before it may already have moved [host]", async () => {
    const { k, p, uffd } = await setup();
    const t = await p.mmap(0, 16 * PS, PROT_NONE, ANON);
    const f = await fenced(p, 4);
    await p.mprotect(f + 2 * PS, 2 * PS, PROT_READ);
    await register(p, uffd, f, 2 * PS, UFFDIO_REGISTER_MODE_MISSING);
    await expectErrno(p.mremap(f, 4 * PS, 4 * PS, MREMAP_MAYMOVE | MREMAP_FIXED, t), "EFAULT");
    expect(layout(p, f, f, f + 4 * PS)).toEqual([
      [0, 2, "rw-p"],
      [2, 4, "r--p"],
    ]);
    const g = await fenced(p, 4);
    await p.mprotect(g + 2 * PS, 2 * PS, PROT_READ);
    await register(p, uffd, g + 2 * PS, 2 * PS, UFFDIO_REGISTER_MODE_MISSING);
    await expectErrno(p.mremap(g, 4 * PS, 4 * PS, MREMAP_MAYMOVE | MREMAP_FIXED, t + 8 * PS), "EFAULT");
    expect(layout(p, t, t + 8 * PS, t + 10 * PS)).toEqual([[8, 10, "rw-p"]]);
    expect(layout(p, g, g, g + 4 * PS)).toEqual([[2, 4, "r--p"]]);
    k.checkInvariants();
  });
});

describe("userfaultfd and mremap (linux-rules §4, linux-rules §5.7, linux-rules §8.15)", () => {
  it("without EVENT_REMAP the moved vma is unregistered and loses uffd-wp on ptes, swap ptes and markers (uffd-wp-mremap.c)", async () => {
    const { k, p, uffd } = await setupSwap(UFFD_FEATURE_WP_UNPOPULATED);
    const b = await fenced(p, 4);
    await p.mainThread.write(b, fill(1, 2 * PS));
    await register(p, uffd, b, 4 * PS, UFFDIO_REGISTER_MODE_WP | UFFDIO_REGISTER_MODE_MISSING);
    await p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: b, len: 4 * PS }, mode: UFFDIO_WRITEPROTECT_MODE_WP });
    await p.madvise(b + PS, PS, MADV_PAGEOUT);
    expect(p.pagemap(b, 3).map((e) => e.uffdWp)).toEqual([true, true, true]);
    const t = await p.mmap(0, 4 * PS, PROT_NONE, ANON);
    expect(await p.mremap(b, 4 * PS, 4 * PS, MREMAP_MAYMOVE | MREMAP_FIXED, t)).toBe(t);
    expect(p.pagemap(t, 3).map((e) => [e.present, e.swapped, e.uffdWp])).toEqual([
      [true, false, false],
      [false, true, false],
      [false, false, false],
    ]);
    expect(p.smaps().find((v) => v.start === t)!.vmFlags).not.toContain("uw");
    await expectErrno(p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: t, len: 4 * PS }, mode: UFFDIO_WRITEPROTECT_MODE_WP }), "ENOENT");
    expect(await readMsgs(p, uffd)).toEqual([]);
    k.checkInvariants();
  });

  it("with EVENT_REMAP and EVENT_UNMAP: REMAP(from, to, old_len) then UNMAP of the old range; uffd-wp kept [host]", async () => {
    const { k, p, uffd } = await setupSwap(UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_WP_UNPOPULATED);
    const c = await fenced(p, 4);
    await p.mainThread.write(c, fill(1, 1));
    await register(p, uffd, c, 4 * PS, UFFDIO_REGISTER_MODE_WP);
    await p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: c, len: 4 * PS }, mode: UFFDIO_WRITEPROTECT_MODE_WP });
    const t = await p.mmap(0, 4 * PS, PROT_NONE, ANON);
    const mv = p.mremap(c, 4 * PS, 4 * PS, MREMAP_MAYMOVE | MREMAP_FIXED, t);
    expect(await isBlocked(k, mv)).toBe(true);
    expect(await readMsgs(p, uffd)).toEqual([{ event: UFFD_EVENT_REMAP, arg: { remap: { from: c, to: t, len: 4 * PS } } }]);
    expect(await isBlocked(k, mv)).toBe(true);
    expect(await readMsgs(p, uffd)).toEqual([{ event: UFFD_EVENT_UNMAP, arg: { remove: { start: c, end: c + 4 * PS } } }]);
    expect(await mv).toBe(t);
    expect(p.pagemap(t, 2).map((e) => [e.present, e.swapped, e.uffdWp])).toEqual([
      [true, false, true],
      [false, true, true],
    ]);
    expect(p.smaps().find((v) => v.start === t)!.vmFlags).toContain("uw");
    // Shrinking sends UNMAP for the tail only.
    const sh = p.mremap(t, 4 * PS, 2 * PS, 0);
    expect(await isBlocked(k, sh)).toBe(true);
    expect(await readMsgs(p, uffd)).toEqual([{ event: UFFD_EVENT_UNMAP, arg: { remove: { start: t + 2 * PS, end: t + 4 * PS } } }]);
    expect(await sh).toBe(t);
    k.checkInvariants();
  });

  it("DONTUNMAP: REMAP only; the old vma keeps its registration, the new one keeps it only with EVENT_REMAP [host]", async () => {
    const { k, p, uffd } = await setup(UFFD_FEATURE_EVENT_REMAP);
    const d = await fenced(p, 4);
    await p.mainThread.write(d, fill(1, 1));
    await register(p, uffd, d, 4 * PS, UFFDIO_REGISTER_MODE_MISSING);
    const t = await p.mmap(0, 4 * PS, PROT_NONE, ANON);
    const mv = p.mremap(d, 4 * PS, 4 * PS, MREMAP_MAYMOVE | MREMAP_DONTUNMAP | MREMAP_FIXED, t);
    expect(await isBlocked(k, mv)).toBe(true);
    expect(await readMsgs(p, uffd)).toEqual([{ event: UFFD_EVENT_REMAP, arg: { remap: { from: d, to: t, len: 4 * PS } } }]);
    expect(await mv).toBe(t);
    expect(p.smaps().find((v) => v.start === d)!.vmFlags).toContain("um");
    expect(p.smaps().find((v) => v.start === t)!.vmFlags).toContain("um");
    const other = await setup(0);
    const e = await fenced(other.p, 4);
    await other.p.mainThread.write(e, fill(1, 1));
    await register(other.p, other.uffd, e, 4 * PS, UFFDIO_REGISTER_MODE_MISSING);
    const ne = await other.p.mremap(e, 4 * PS, 4 * PS, MREMAP_MAYMOVE | MREMAP_DONTUNMAP);
    expect(other.p.smaps().find((v) => v.start === e)!.vmFlags).toContain("um");
    expect(other.p.smaps().find((v) => v.start === ne)!.vmFlags).not.toContain("um");
    k.checkInvariants();
    other.k.checkInvariants();
  });

  it("growing a registered vma: in place the registration extends; a move without EVENT_REMAP drops it [host]", async () => {
    const { k, p, uffd } = await setup();
    const d = await fenced(p, 8);
    await p.munmap(d + 4 * PS, 5 * PS);
    await register(p, uffd, d, 4 * PS, UFFDIO_REGISTER_MODE_MISSING);
    expect(await p.mremap(d, 4 * PS, 6 * PS, 0)).toBe(d);
    expect(p.smaps().find((v) => v.start === d)).toMatchObject({ end: d + 6 * PS });
    expect(p.smaps().find((v) => v.start === d)!.vmFlags).toContain("um");
    const e = await fenced(p, 4);
    await register(p, uffd, e, 4 * PS, UFFDIO_REGISTER_MODE_MISSING);
    const ne = await p.mremap(e, 4 * PS, 6 * PS, MREMAP_MAYMOVE);
    expect(ne).not.toBe(e);
    expect(p.smaps().find((v) => v.start === ne)!.vmFlags).not.toContain("um");
    k.checkInvariants();
  });
});
