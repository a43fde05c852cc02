/**
 * The swap device kind (KernelOptions.swapDevice). mm/memory.c:do_swap_page() reads an entry with
 * swap count 1 on a SWP_SYNCHRONOUS_IO device (zram, the default) straight into a new folio that
 * never enters the swap cache; shared entries, and every entry on a swap file, go through the
 * swap cache. zram's writeback also completes inside the reclaim pass, so nothing lingers in the
 * swap cache after MADV_PAGEOUT; on a swap file the clean folio stays there (mincore() resident).
 *
 * Every expectation was first observed on the 6.18.44 host by a C probe pinned to one CPU, with
 * a zram device (and then a 64 MiB swap file) it set up and tore down itself, reading
 * /proc/self/pagemap, /proc/kpageflags, /proc/kpagecount and mincore(); the probe's labels are
 * quoted. What the host shows on a swap file after a *write* fault depends on whether writeback
 * and the per-CPU LRU batches still hold references, which the simulation does not model
 * (docs/divergences.md), so only read faults are checked there.
 */
import { describe, expect, it } from "vitest";
import { Kernel, type Process } from "@uffd/kernel";
import { MADV_PAGEOUT, MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE } from "@uffd/kernel/uapi";

const PS = 4096;
const RW = PROT_READ | PROT_WRITE;

function boot(swapDevice?: "zram" | "file"): { k: Kernel; p: Process } {
  const k = new Kernel({ seed: 1, swapPages: 256, ...(swapDevice !== undefined ? { swapDevice } : {}) });
  return { k, p: k.spawn() };
}

/** `pages` anonymous pages, page i holding i + 1, paged out. */
async function pagedOut(p: Process, pages: number): Promise<number> {
  const a = await p.mmap(0, pages * PS, RW, MAP_PRIVATE | MAP_ANONYMOUS);
  for (let i = 0; i < pages; i++) await p.mainThread.write(a + i * PS, new Uint8Array([i + 1]));
  await p.madvise(a, pages * PS, MADV_PAGEOUT);
  expect(p.pagemap(a, pages).every((e) => e.swapped)).toBe(true);
  return a;
}

function flagsAt(k: Kernel, p: Process, addr: number): { swapcache: boolean; dirty: boolean; count: number; exclusive: boolean } {
  const e = p.pagemap(addr, 1)[0]!;
  expect(e.present, `present at 0x${addr.toString(16)}`).toBe(true);
  const f = k.kpageflags(e.pfn!);
  return { swapcache: f.swapcache, dirty: f.dirty, count: k.kpagecount(e.pfn!), exclusive: e.exclusive };
}

describe("swap-in on zram (the default): count-1 entries skip the swap cache", () => {
  it("the default device is zram", () => {
    expect(new Kernel().options.swapDevice).toBe("zram");
    expect(() => new Kernel({ swapDevice: "nvme" as "zram" })).toThrow(TypeError);
  });

  it("a paged-out page is not resident; read and write faults map a new folio outside the swap cache, clean", async () => {
    const { k, p } = boot();
    const a = await pagedOut(p, 2);
    expect(Array.from(await p.mincore(a, 2 * PS)), "mincore p0 resident=0").toEqual([0, 0]);
    expect(await p.mainThread.read(a, 1)).toEqual(new Uint8Array([1]));
    expect(flagsAt(k, p, a), "read fault p0").toEqual({ swapcache: false, dirty: false, count: 1, exclusive: true });
    await p.mainThread.write(a, new Uint8Array([9]));
    expect(flagsAt(k, p, a), "  then write (the pte was writable: no fault)").toMatchObject({ swapcache: false, dirty: false });
    await p.mainThread.write(a + PS, new Uint8Array([9]));
    expect(flagsAt(k, p, a + PS), "write fault p1").toMatchObject({ swapcache: false, dirty: false });
    k.checkInvariants();
  });

  it("a shared entry (after fork) goes through the swap cache; folio_free_swap() on the later write dirties the folio", async () => {
    const { k, p } = boot();
    const a = await pagedOut(p, 2);
    const c = await p.fork();
    expect(await c.mainThread.read(a, 1)).toEqual(new Uint8Array([1]));
    expect(flagsAt(k, c, a), "child read p2 (shared entry)").toMatchObject({ swapcache: true, dirty: false });
    expect(p.pagemap(a, 1)[0], "parent p2 after child read").toMatchObject({ present: false, swapped: true });
    await c.exit(0);
    await p.mainThread.read(a, 1);
    expect(flagsAt(k, p, a), "parent read p2").toEqual({ swapcache: true, dirty: false, count: 1, exclusive: true });
    await p.mainThread.write(a, new Uint8Array([3]));
    expect(flagsAt(k, p, a), "parent write p2").toMatchObject({ swapcache: false, dirty: true });
    k.checkInvariants();
  });

  it("both processes reading a shared entry map the one swap-cache folio", async () => {
    const { k, p } = boot();
    const a = await pagedOut(p, 1);
    const c = await p.fork();
    await p.mainThread.read(a, 1);
    expect(flagsAt(k, p, a), "parent read p3 (shared, child alive)").toMatchObject({ swapcache: true, dirty: false });
    expect(c.pagemap(a, 1)[0], "child p3 after parent read").toMatchObject({ present: false, swapped: true });
    await c.mainThread.read(a, 1);
    expect(flagsAt(k, c, a), "child read p3").toMatchObject({ swapcache: true, dirty: false, count: 2 });
    expect(c.pagemap(a, 1)[0]!.pfn).toBe(p.pagemap(a, 1)[0]!.pfn);
    await c.exit(0);
    expect(flagsAt(k, p, a), "parent p3 after child exit").toMatchObject({ swapcache: true, count: 1 });
    k.checkInvariants();
  });

  it("an entry shared once and back to count 1 (the child exited) skips the swap cache again", async () => {
    const { k, p } = boot();
    const b = await pagedOut(p, 2);
    const c = await p.fork();
    await c.exit(0);
    await p.mainThread.read(b, 1);
    expect(flagsAt(k, p, b), "count-1 again after child exit, read").toMatchObject({ swapcache: false, dirty: false, count: 1 });
    k.checkInvariants();
  });

  it("shmem: a paged-out page is not resident; swap-in puts a dirty folio back in the page cache", async () => {
    const { k, p } = boot();
    const fd = await p.memfdCreate("s");
    await p.ftruncate(fd, 4 * PS);
    const s = await p.mmap(0, 4 * PS, RW, MAP_SHARED, fd, 0);
    await p.mainThread.write(s, new Uint8Array([1]));
    await p.mainThread.write(s + PS, new Uint8Array([2]));
    await p.madvise(s, 4 * PS, MADV_PAGEOUT);
    expect(p.pagemap(s, 1)[0], "shmem after pageout").toMatchObject({ present: false, swapped: false });
    expect((await p.mincore(s, PS))[0], "mincore shmem resident=0").toBe(0);
    await p.mainThread.read(s, 1);
    expect(flagsAt(k, p, s), "shmem read after pageout").toMatchObject({ swapcache: false, dirty: true });
    await p.mainThread.write(s + PS, new Uint8Array([5]));
    expect(flagsAt(k, p, s + PS), "shmem write after pageout").toMatchObject({ swapcache: false, dirty: true });
    k.checkInvariants();
  });
});

describe("swap-in from a swap file: everything goes through the swap cache", () => {
  it("a paged-out folio lingers in the swap cache (resident); a read fault maps it from there, clean", async () => {
    const { k, p } = boot("file");
    const a = await pagedOut(p, 1);
    expect((await p.mincore(a, PS))[0], "mincore p0 resident=1").toBe(1);
    expect(await p.mainThread.read(a, 1)).toEqual(new Uint8Array([1]));
    expect(flagsAt(k, p, a), "read fault p0").toEqual({ swapcache: true, dirty: false, count: 1, exclusive: true });
    await p.mainThread.write(a, new Uint8Array([9]));
    expect(flagsAt(k, p, a), "  then write (the pte was writable: no fault)").toMatchObject({ swapcache: true, dirty: false });
    k.checkInvariants();
  });

  it("an entry shared once and back to count 1 is still read through the swap cache", async () => {
    const { k, p } = boot("file");
    const b = await pagedOut(p, 1);
    const c = await p.fork();
    await c.exit(0);
    await p.mainThread.read(b, 1);
    expect(flagsAt(k, p, b), "count-1 again after child exit, read").toMatchObject({ swapcache: true, dirty: false });
    k.checkInvariants();
  });

  it("shmem: the paged-out folio stays resident in the swap cache; swap-in moves it back to the page cache, dirty", async () => {
    const { k, p } = boot("file");
    const fd = await p.memfdCreate("s");
    await p.ftruncate(fd, PS);
    const s = await p.mmap(0, PS, RW, MAP_SHARED, fd, 0);
    await p.mainThread.write(s, new Uint8Array([1]));
    await p.madvise(s, PS, MADV_PAGEOUT);
    expect(p.pagemap(s, 1)[0], "shmem after pageout").toMatchObject({ present: false, swapped: false });
    expect((await p.mincore(s, PS))[0], "mincore shmem resident=1").toBe(1);
    expect(await p.mainThread.read(s, 1)).toEqual(new Uint8Array([1]));
    expect(flagsAt(k, p, s), "shmem read after pageout").toMatchObject({ swapcache: false, dirty: true });
    k.checkInvariants();
  });

  it("a lingering swap-cache folio is freed with its last entry (munmap, truncate)", async () => {
    const { k, p } = boot("file");
    const a = await pagedOut(p, 1);
    const inUse = k.core.mem.inUse;
    await p.munmap(a, PS);
    expect(k.core.mem.inUse, "free_swap_and_cache() frees the unmapped swap-cache folio").toBe(inUse - 1);
    const fd = await p.memfdCreate("s");
    await p.ftruncate(fd, PS);
    const s = await p.mmap(0, PS, RW, MAP_SHARED, fd, 0);
    await p.mainThread.write(s, new Uint8Array([1]));
    await p.madvise(s, PS, MADV_PAGEOUT);
    const before = k.core.mem.inUse;
    await p.ftruncate(fd, 0);
    expect(k.core.mem.inUse).toBe(before - 1);
    expect(k.core.swap!.inUse).toBe(0);
    k.checkInvariants();
  });
});
