/**
 * Limits and bounded work, as Linux has them: vm.max_map_count, the overcommit heuristic, and
 * walks over huge or unbounded ranges (pagemap, mincore, munmap, fork) that cost what the range
 * holds rather than its length. Expected errnos come from a host probe on the reference host
 * (Linux 6.18.44, vm.max_map_count 65530, vm.overcommit_memory 0, no swap): with the mm at its
 * limit, munmap and mprotect that split the middle of a vma are ENOMEM, an mprotect that changes
 * nothing is 0; a private writable or shared anonymous mapping larger than RAM + swap is ENOMEM,
 * unless MAP_NORESERVE; a read-only one is fine until mprotect makes it writable (ENOMEM).
 */
import { Kernel, type Process } from "@uffd/kernel";
import {
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_NORESERVE,
  MAP_PRIVATE,
  MAP_SHARED,
  MADV_DONTFORK,
  MREMAP_DONTUNMAP,
  MREMAP_MAYMOVE,
  O_NONBLOCK,
  PAGE_SIZE,
  PROT_READ,
  PROT_WRITE,
  SEEK_DATA,
  UFFD_API,
  UFFDIO_API,
  UFFDIO_REGISTER,
  UFFDIO_REGISTER_MODE_MISSING,
  UFFDIO_UNREGISTER,
} from "@uffd/kernel/uapi";
import { describe, expect, it } from "vitest";
import { expectErrno } from "../helpers.ts";

const PS = PAGE_SIZE;
const RW = PROT_READ | PROT_WRITE;
const ANON = MAP_PRIVATE | MAP_ANONYMOUS;
const TASK_SIZE = 0x7ffffffff000;

/** n single-page vmas that cannot merge (alternating protection), at increasing addresses from base. */
async function manyVmas(p: Process, base: number, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await p.mmap(base + i * PS, PS, i % 2 === 0 ? RW : PROT_READ, ANON | MAP_FIXED);
}

describe("vm.max_map_count", () => {
  it("defaults to 65530, as Linux (DEFAULT_MAX_MAP_COUNT)", () => {
    expect(new Kernel().options.maxMapCount).toBe(65530);
  });

  it("mmap may take the count one past the limit, then ENOMEM (do_mmap(): map_count > max)", async () => {
    const k = new Kernel({ seed: 1, maxMapCount: 8 });
    const p = k.spawn();
    for (let i = 0; i < 9; i++) await p.mmap(0, PS, i % 2 === 0 ? RW : PROT_READ, ANON);
    expect(p.smaps()).toHaveLength(9);
    await expectErrno(p.mmap(0, PS, RW, ANON), "ENOMEM");
    expect(p.smaps()).toHaveLength(9);
  });

  it("at the limit, a munmap or mprotect that splits the middle of a vma is ENOMEM; one that changes nothing, or removes whole vmas, is not", async () => {
    const k = new Kernel({ seed: 1, maxMapCount: 4 });
    const p = k.spawn();
    const big = await p.mmap(0, 16 * PS, RW, ANON);
    await manyVmas(p, 0x100000, 3);
    expect(p.smaps()).toHaveLength(4);
    const before = p.smaps();
    await expectErrno(p.munmap(big + 4 * PS, PS), "ENOMEM");
    await expectErrno(p.mprotect(big + 4 * PS, PS, PROT_READ), "ENOMEM");
    await expectErrno(p.mprotect(big, PS, PROT_READ), "ENOMEM");
    // MAP_FIXED over the middle unmaps (and so splits) first.
    await expectErrno(p.mmap(big + 4 * PS, PS, PROT_READ, ANON | MAP_FIXED), "ENOMEM");
    expect(p.smaps()).toEqual(before);
    // No change of protection: no split, so no error [host].
    await p.mprotect(big + 4 * PS, PS, RW);
    // Unmapping the tail of a vma splits it but leaves the count as it was (vms_gather_munmap_vmas()).
    await p.munmap(big + 15 * PS, PS);
    await p.munmap(0x100000, PS);
    expect(p.smaps()).toHaveLength(3);
    await p.munmap(big + 4 * PS, PS);
    expect(p.smaps()).toHaveLength(4);
  });
});

describe("vm.max_map_count and madvise", () => {
  // mm/vma.c:vma_modify(): the head is split off, then the tail, each by split_vma(), which is
  // ENOMEM once map_count has reached the limit; a head split already made stays.
  it("an advice that changes vm_flags splits one end at a time: at the limit ENOMEM, and a head split made with room for one stays", async () => {
    const k = new Kernel({ seed: 1, maxMapCount: 3 });
    const p = k.spawn();
    const big = await p.mmap(0, 8 * PS, RW, ANON);
    await p.mmap(0, PS, PROT_READ, ANON);
    expect(p.smaps()).toHaveLength(2);
    // The middle needs two splits, there is room for one: the head split happens, the tail's is refused.
    await expectErrno(p.madvise(big + 2 * PS, 2 * PS, MADV_DONTFORK), "ENOMEM");
    const after = p.smaps().filter((v) => v.start >= big && v.end <= big + 8 * PS);
    expect(after.map((v) => [v.start - big, v.end - big])).toEqual([
      [0, 2 * PS],
      [2 * PS, 8 * PS],
    ]);
    expect(after.every((v) => !v.vmFlags.includes("dc"))).toBe(true);
    // At the limit now: even the one split a head-only advice needs is refused.
    await expectErrno(p.madvise(big + 6 * PS, 2 * PS, MADV_DONTFORK), "ENOMEM");
    // The whole vma needs none.
    await p.madvise(big + 2 * PS, 6 * PS, MADV_DONTFORK);
    expect(p.smaps().find((v) => v.start === big + 2 * PS)!.vmFlags).toContain("dc");
  });
});

describe("vm.max_map_count and userfaultfd", () => {
  it("at the limit, UFFDIO_REGISTER and UNREGISTER that must split a vma are ENOMEM (vma_modify_flags_uffd() -> split_vma())", async () => {
    const k = new Kernel({ seed: 1, maxMapCount: 2 });
    const p = k.spawn();
    const big = await p.mmap(0, 8 * PS, RW, ANON);
    await p.mmap(0, PS, PROT_READ, ANON);
    const uffd = await p.userfaultfd(O_NONBLOCK);
    await p.ioctl(uffd, UFFDIO_API, { api: UFFD_API, features: 0 });
    await expectErrno(p.ioctl(uffd, UFFDIO_REGISTER, { range: { start: big + PS, len: PS }, mode: UFFDIO_REGISTER_MODE_MISSING }), "ENOMEM");
    // The whole vma needs no split.
    await p.ioctl(uffd, UFFDIO_REGISTER, { range: { start: big, len: 8 * PS }, mode: UFFDIO_REGISTER_MODE_MISSING });
    await expectErrno(p.ioctl(uffd, UFFDIO_UNREGISTER, { start: big, len: PS }), "ENOMEM");
    await p.ioctl(uffd, UFFDIO_UNREGISTER, { start: big, len: 8 * PS });
    expect(p.smaps()).toHaveLength(2);
  });
});

describe("overcommit (vm.overcommit_memory)", () => {
  it("heuristic by default: one private writable mapping larger than memory plus swap is ENOMEM, unless MAP_NORESERVE", async () => {
    const k = new Kernel({ seed: 1, memoryPages: 1024, swapPages: 256 });
    expect(k.options.overcommitMemory).toBe(0);
    const p = k.spawn();
    const total = (1024 + 256) * PS;
    await expectErrno(p.mmap(0, total + PS, RW, ANON), "ENOMEM");
    await expectErrno(p.mmap(0, total + PS, RW, MAP_SHARED | MAP_ANONYMOUS), "ENOMEM");
    // Each call is judged alone (the heuristic keeps no total): two of them fit.
    await p.mmap(0, total, RW, ANON);
    await p.mmap(0, total, RW, ANON);
    await p.mmap(0, 4 * total, RW, ANON | MAP_NORESERVE);
    const ro = await p.mmap(0, total + PS, PROT_READ, ANON);
    // mprotect_fixup(): becoming writable charges the vma now.
    await expectErrno(p.mprotect(ro, total + PS, RW), "ENOMEM");
    expect(p.smaps().find((v) => v.start === ro)!.perms).toBe("r--p");
  });

  // mm/mremap.c:vrm_calc_charge(): growing an accounted mapping charges the growth (its whole new
  // length with MREMAP_DONTUNMAP); a MAP_NORESERVE or read-only private mapping is not accounted.
  // Host: a 4 KiB private writable mapping grown to 1 TiB with MREMAP_MAYMOVE is ENOMEM; the same
  // from MAP_NORESERVE or PROT_READ succeeds.
  it("mremap growth is charged like mmap: ENOMEM past memory plus swap for an accounted mapping [host]", async () => {
    const k = new Kernel({ seed: 1, memoryPages: 1024, swapPages: 256 });
    const p = k.spawn();
    const total = (1024 + 256) * PS;
    const rw = await p.mmap(0, PS, RW, ANON);
    await p.mainThread.write(rw, Uint8Array.of(5));
    await expectErrno(p.mremap(rw, PS, total + 2 * PS, MREMAP_MAYMOVE), "ENOMEM");
    // Nothing moved or grew: the page is where it was, alone in its vma.
    expect(p.smaps().find((v) => v.start === rw)!.end).toBe(rw + PS);
    expect(await p.mainThread.read(rw, 1)).toEqual(Uint8Array.of(5));
    // Only the growth is charged: a mapping of the whole limit grows by a page. MREMAP_DONTUNMAP
    // keeps the old mapping, so it charges the whole new length: past the limit, ENOMEM.
    const whole = await p.mmap(0, total, RW, ANON);
    const grown = await p.mremap(whole, total, total + PS, MREMAP_MAYMOVE);
    await expectErrno(p.mremap(grown, total + PS, total + PS, MREMAP_MAYMOVE | MREMAP_DONTUNMAP), "ENOMEM");
    expect(p.smaps().find((v) => v.start === grown)!.end).toBe(grown + total + PS);
    await p.mremap(rw, PS, PS, MREMAP_MAYMOVE | MREMAP_DONTUNMAP); // one page: within the limit
    for (const [prot, flags] of [[RW, ANON | MAP_NORESERVE], [PROT_READ, ANON]] as const) {
      const a = await p.mmap(0, PS, prot, flags);
      const b = await p.mremap(a, PS, 4 * total, MREMAP_MAYMOVE);
      expect(p.smaps().find((v) => v.start === b)!.end).toBe(b + 4 * total);
    }
  });

  it("overcommitMemory: 1 never refuses; 2 is not simulated and refused with a clear error", async () => {
    const k = new Kernel({ seed: 1, memoryPages: 64, overcommitMemory: 1 });
    const p = k.spawn();
    await p.mmap(0, 1024 * PS, RW, ANON);
    expect(() => new Kernel({ overcommitMemory: 2 as 1 })).toThrow(/overcommitMemory/);
  });
});

describe("bounded work over huge ranges", () => {
  it("pagemap(addr, Infinity) returns a bounded, short read; it stops at the end of user space", () => {
    const k = new Kernel({ seed: 1 });
    const p = k.spawn();
    expect(p.pagemap(TASK_SIZE - PS, 10)).toHaveLength(1);
    expect(p.pagemap(TASK_SIZE, 10)).toHaveLength(0);
    expect(p.pagemap(0x10000, -1)).toHaveLength(1 << 22);
    expect(() => p.pagemap(0x10000, Infinity)).toThrow(expect.objectContaining({ code: "EINVAL" }));
  });

  it("mincore, munmap and fork over a 64 TiB sparse mapping cost what it holds", async () => {
    const k = new Kernel({ seed: 1 });
    const p = k.spawn();
    const len = 2 ** 46;
    const a = await p.mmap(0, len, RW, ANON | MAP_NORESERVE);
    await p.mainThread.write(a + len / 2, new Uint8Array([1]));
    await p.mainThread.write(a + len - PS, new Uint8Array([2]));
    // mincore's vector is allocated by the simulation: 1 TiB of it at most.
    await expectErrno(p.mincore(a, len), "ENOMEM");
    const vec = await p.mincore(a + len / 2 - 2 ** 39, 2 ** 40);
    expect(vec.length).toBe(2 ** 28);
    expect(vec.indexOf(1)).toBe(2 ** 39 / PS);
    expect(vec.indexOf(1, 2 ** 39 / PS + 1)).toBe(-1);
    const child = await p.fork();
    expect(await child.mainThread.read(a + len - PS, 1)).toEqual(new Uint8Array([2]));
    expect(p.smaps()[0]!.rssBytes).toBe(2 * PS);
    await p.munmap(a, len);
    await child.exit(0);
  }, 60_000);

  it("a memfd hole punched over 2^52 bytes, SEEK_DATA across it, and a fallocate beyond memory cost what the cache holds", async () => {
    const k = new Kernel({ seed: 1, memoryPages: 256 });
    const p = k.spawn();
    const fd = await p.memfdCreate("f");
    const huge = 2 ** 52;
    await p.ftruncate(fd, huge);
    await p.pwrite(fd, new Uint8Array([1]), huge - PS);
    // SEEK_DATA from 0 finds the one cached page at the far end (it used to walk 2^40 pages).
    expect(await p.lseek(fd, 0, SEEK_DATA)).toBe(huge - PS);
    await p.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, huge);
    await expectErrno(p.lseek(fd, 0, SEEK_DATA), "ENXIO");
    // More pages than memory: ENOSPC, and the pages this call allocated are given back.
    const free = k.core.mem.freeFrames;
    await expectErrno(p.fallocate(fd, 0, 0, 1024 * PS), "ENOSPC");
    expect(k.core.mem.freeFrames).toBe(free);
  });

  it("100,000 vmas build, register, unregister and unmap with O(log n) vma operations", async () => {
    // More vmas than the default vm.max_map_count allows.
    const k = new Kernel({ seed: 1, maxMapCount: 200_000 });
    const p = k.spawn();
    const n = 100_000;
    const t0 = performance.now();
    // Plain top-down mmaps, alternating protection so that none merge.
    let low = Infinity;
    for (let i = 0; i < n; i++) low = Math.min(low, await p.mmap(0, PS, i % 2 === 0 ? RW : PROT_READ, ANON));
    const t1 = performance.now();
    expect(p.smaps()).toHaveLength(n);
    const uffd = await p.userfaultfd(O_NONBLOCK);
    await p.ioctl(uffd, UFFDIO_API, { api: UFFD_API, features: 0 });
    await p.ioctl(uffd, UFFDIO_REGISTER, { range: { start: low, len: n * PS }, mode: UFFDIO_REGISTER_MODE_MISSING });
    expect(p.smaps().every((v) => v.vmFlags.includes("um"))).toBe(true);
    await p.ioctl(uffd, UFFDIO_UNREGISTER, { start: low, len: n * PS });
    const t2 = performance.now();
    await p.munmap(low, n * PS);
    const t3 = performance.now();
    expect(p.smaps()).toEqual([]);
    // Printed for docs/divergences.md, never asserted (the suite must pass on a loaded machine).
    console.log(`100,000 vmas: build ${(t1 - t0).toFixed(0)} ms, register+unregister ${(t2 - t1).toFixed(0)} ms, unmap ${(t3 - t2).toFixed(0)} ms`);
  }, 120_000);
});
