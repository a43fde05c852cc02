/**
 * Swap-out (MADV_PAGEOUT -> mm/vmscan.ts) and swap-in (do_swap_page), with the
 * PageAnonExclusive rules of docs/linux-rules.md §5.5 and §8.12 and seed 004 ("reuse
 * PG_mappedtodisk as PG_anon_exclusive": PAE is cleared on swap-out, exclusivity is remembered in
 * the swap pte, and restored on swap-in where Linux does). PAE is observed through UFFDIO_MOVE,
 * which refuses a non-PAE page or a non-exclusive swap pte with EBUSY, as on the host.
 */
import { describe, expect, it } from "vitest";
import { Kernel, type Process } from "@uffd/kernel";
import {
  MADV_PAGEOUT,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  MAP_SHARED,
  O_NONBLOCK,
  PAGE_SIZE,
  PROT_READ,
  PROT_WRITE,
  UFFD_API,
  UFFD_EVENT_PAGEFAULT,
  UFFD_FEATURE_WP_UNPOPULATED,
  UFFD_PAGEFAULT_FLAG_WP,
  UFFD_PAGEFAULT_FLAG_WRITE,
  UFFDIO_API,
  UFFDIO_MOVE,
  UFFDIO_REGISTER_MODE_MISSING,
  UFFDIO_REGISTER_MODE_WP,
  UFFDIO_WRITEPROTECT,
  UFFDIO_WRITEPROTECT_MODE_WP,
} from "@uffd/kernel/uapi";
import { boot } from "../core/helpers.ts";
import { errnoOf, fill, isBlocked, readMsgs, register } from "../uffd/helpers.ts";

const PS = PAGE_SIZE;
const RW = PROT_READ | PROT_WRITE;
const ANON = MAP_PRIVATE | MAP_ANONYMOUS;

interface Rig {
  k: Kernel;
  p: Process;
  uffd: number;
  /** One anon page to swap (src of the MOVE probe). */
  src: number;
  /** A registered, empty anon page: the MOVE destination. */
  dst: number;
}

/** A kernel with swap, a written anon page `src`, and a MOVE destination registered on a uffd. */
async function rig(features = 0, swapDevice: "zram" | "file" = "zram"): Promise<Rig> {
  const k = new Kernel({ seed: 1, swapPages: 256, swapDevice });
  const p = k.spawn();
  const uffd = await p.userfaultfd(O_NONBLOCK);
  await p.ioctl(uffd, UFFDIO_API, { api: UFFD_API, features });
  const src = await p.mmap(0, PS, RW, ANON);
  await p.mainThread.write(src, fill(0x5a));
  const dst = await p.mmap(0, PS, RW, ANON);
  await register(p, uffd, dst, PS, UFFDIO_REGISTER_MODE_MISSING);
  return { k, p, uffd, src, dst };
}

/** UFFDIO_MOVE of the src page: "OK" iff the page (or swap pte) is exclusive. */
function move(r: Rig): Promise<string> {
  return errnoOf(r.p.ioctl(r.uffd, UFFDIO_MOVE, { dst: r.dst, src: r.src, len: PS, mode: 0 }));
}

/** fork, then the child exits: the page is mapped once again but PAE stays clear (§5.1, §8.11). */
async function previouslyShared(r: Rig): Promise<void> {
  const c = await r.p.fork();
  await c.exit(0);
  await r.p.waitpid(c.pid);
  expect(r.p.pagemap(r.src, 1)[0]!.exclusive).toBe(true);
}

describe("MADV_PAGEOUT of anon pages", () => {
  it("swaps an exclusive page out: pagemap swapped, not present, no pfn; rss moves to Swap; the frame is freed", async () => {
    const { k, p } = boot(1, { swapPages: 64 });
    const a = await p.mmap(0, 2 * PS, RW, ANON);
    await p.mainThread.write(a, fill(7, 2 * PS));
    const pfn = p.pagemap(a, 1)[0]!.pfn!;
    await p.madvise(a, PS, MADV_PAGEOUT);
    expect(p.pagemap(a, 1)[0]).toMatchObject({ present: false, swapped: true, exclusive: false, file: false, pfn: null });
    expect(p.smaps()[0]).toMatchObject({ rssBytes: PS, anonBytes: PS, swapBytes: PS });
    expect(k.kpagecount(pfn)).toBe(0);
    expect(await p.mainThread.read(a, 2)).toEqual(new Uint8Array([7, 7]));
    expect(p.pagemap(a, 1)[0]).toMatchObject({ present: true, exclusive: true });
    expect(p.smaps()[0]).toMatchObject({ rssBytes: 2 * PS, swapBytes: 0 });
    k.checkInvariants();
  });

  it("without a swap device nothing changes (KernelOptions.swapPages 0)", async () => {
    const { k, p } = boot();
    const a = await p.mmap(0, PS, RW, ANON);
    await p.mainThread.write(a, fill(7));
    const before = p.pagemap(a, 1)[0];
    await p.madvise(a, PS, MADV_PAGEOUT);
    expect(p.pagemap(a, 1)[0]).toEqual(before);
    k.checkInvariants();
  });

  it("never a page mapped twice (COW-shared after fork) nor a maybe-pinned one [host]", async () => {
    const { k, p } = boot(1, { swapPages: 64 });
    const a = await p.mmap(0, 2 * PS, RW, ANON);
    await p.mainThread.write(a, fill(1, 2 * PS));
    const c = await p.fork();
    await p.madvise(a, PS, MADV_PAGEOUT);
    expect(p.pagemap(a, 1)[0]).toMatchObject({ present: true, swapped: false });
    await c.exit(0);
    await p.waitpid(c.pid);
    await p.mainThread.write(a + PS, fill(2, 1)); // exclusive again (COW or reuse)
    const pin = await p.gupTestPin(a + PS, PS, { write: true, longterm: true, fast: false });
    await p.madvise(a + PS, PS, MADV_PAGEOUT);
    expect(p.pagemap(a + PS, 1)[0]).toMatchObject({ present: true, swapped: false });
    await pin.unregister();
    await p.madvise(a + PS, PS, MADV_PAGEOUT);
    expect(p.pagemap(a + PS, 1)[0]!.swapped).toBe(true);
    k.checkInvariants();
  });

  it("a page a pipe still references is swapped out but stays in the swap cache; swap-in finds the same frame", async () => {
    const { k, p } = boot(1, { swapPages: 64 });
    const a = await p.mmap(0, PS, RW, ANON);
    await p.mainThread.write(a, fill(9));
    const pfn = p.pagemap(a, 1)[0]!.pfn!;
    const [rd, w] = await p.pipe();
    expect(await p.vmsplice(w, a, PS)).toBe(PS);
    await p.madvise(a, PS, MADV_PAGEOUT);
    expect(p.pagemap(a, 1)[0]).toMatchObject({ present: false, swapped: true });
    expect(k.kpageflags(pfn)).toMatchObject({ anon: true, swapcache: true });
    expect(k.kpagecount(pfn)).toBe(0);
    expect(await p.read(rd, PS)).toEqual(fill(9));
    expect(await p.mainThread.read(a, 1)).toEqual(new Uint8Array([9]));
    expect(p.pagemap(a, 1)[0]!.pfn).toBe(pfn);
    k.checkInvariants();
  });

  it("stops when the device is full: the pages that fit go, the rest stay mapped", async () => {
    const { k, p } = boot(1, { swapPages: 1 });
    const a = await p.mmap(0, 2 * PS, RW, ANON);
    await p.mainThread.write(a, fill(3, 2 * PS));
    await p.madvise(a, 2 * PS, MADV_PAGEOUT);
    expect(p.pagemap(a, 2).map((e) => e.swapped)).toEqual([true, false]);
    expect(await p.mainThread.read(a, 1)).toEqual(new Uint8Array([3]));
    k.checkInvariants();
  });
});

describe("PageAnonExclusive across swap (linux-rules §5.5, linux-rules §8.12, seed 004)", () => {
  it("an exclusive page: the swap pte is swp-exclusive (MOVE of the swap pte succeeds) [host]", async () => {
    const r = await rig();
    await r.p.madvise(r.src, PS, MADV_PAGEOUT);
    expect(await move(r)).toBe("OK");
    expect(r.p.pagemap(r.dst, 1)[0]).toMatchObject({ swapped: true });
    expect(await r.p.mainThread.read(r.dst, 1)).toEqual(new Uint8Array([0x5a]));
    r.k.checkInvariants();
  });

  it("an exclusive page swapped out and read back in is exclusive again (MOVE OK) [host]", async () => {
    const r = await rig();
    await r.p.madvise(r.src, PS, MADV_PAGEOUT);
    await r.p.mainThread.read(r.src, 1);
    expect(r.p.pagemap(r.src, 1)[0]).toMatchObject({ present: true, exclusive: true });
    expect(await move(r)).toBe("OK");
    r.k.checkInvariants();
  });

  it("a previously shared page swapped out to a swap file: not swp-exclusive; a read swap-in keeps it non-exclusive (MOVE EBUSY) [host]", async () => {
    const r = await rig(0, "file");
    await previouslyShared(r);
    expect(await move(r)).toBe("EBUSY");
    await r.p.madvise(r.src, PS, MADV_PAGEOUT);
    expect(r.p.pagemap(r.src, 1)[0]!.swapped).toBe(true);
    expect(await move(r)).toBe("EBUSY");
    expect(await r.p.mainThread.read(r.src, 1)).toEqual(new Uint8Array([0x5a]));
    expect(await move(r)).toBe("EBUSY");
    r.k.checkInvariants();
  });

  it("the same on zram: the read swap-in of a count-1 entry skips the swap cache, so the new folio is exclusive (MOVE OK) [host]", async () => {
    // mm/memory.c:do_swap_page(): SWP_SYNCHRONOUS_IO and __swap_count() == 1 read into a new
    // folio with refcount 1, which is mapped exclusive [host, zram: MOVE OK; swap file: EBUSY].
    const r = await rig();
    await previouslyShared(r);
    await r.p.madvise(r.src, PS, MADV_PAGEOUT);
    expect(await move(r)).toBe("EBUSY");
    expect(await r.p.mainThread.read(r.src, 1)).toEqual(new Uint8Array([0x5a]));
    expect(r.k.kpageflags(r.p.pagemap(r.src, 1)[0]!.pfn!)).toMatchObject({ swapcache: false, dirty: false });
    expect(await move(r)).toBe("OK");
    r.k.checkInvariants();
  });

  it("a previously shared page swapped out: a write swap-in makes it exclusive (MOVE OK) [host]", async () => {
    const r = await rig();
    await previouslyShared(r);
    await r.p.madvise(r.src, PS, MADV_PAGEOUT);
    await r.p.mainThread.write(r.src, fill(1, 1));
    expect(r.p.pagemap(r.src, 1)[0]).toMatchObject({ present: true, exclusive: true });
    expect(await move(r)).toBe("OK");
    r.k.checkInvariants();
  });

  it("fork of a swapped-out exclusive page: both see the swap entry and neither is exclusive any more [host]", async () => {
    const r = await rig();
    await r.p.madvise(r.src, PS, MADV_PAGEOUT);
    const c = await r.p.fork();
    expect(c.pagemap(r.src, 1)[0]).toMatchObject({ swapped: true });
    expect(r.p.pagemap(r.src, 1)[0]).toMatchObject({ swapped: true });
    expect(await move(r)).toBe("EBUSY");
    expect(await c.mainThread.read(r.src, 1)).toEqual(new Uint8Array([0x5a]));
    r.k.checkInvariants();
  });
});

describe("uffd-wp across swap (linux-rules §5.5, linux-rules §5.7)", () => {
  it("a write-protected page keeps uffd-wp in the swap pte and after swap-in; a write is a WP fault [host]", async () => {
    const k = new Kernel({ seed: 1, swapPages: 64 });
    const p = k.spawn();
    const uffd = await p.userfaultfd(O_NONBLOCK);
    await p.ioctl(uffd, UFFDIO_API, { api: UFFD_API, features: 0 });
    const a = await p.mmap(0, PS, RW, ANON);
    await p.mainThread.write(a, fill(2));
    await register(p, uffd, a, PS, UFFDIO_REGISTER_MODE_WP);
    await p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: a, len: PS }, mode: UFFDIO_WRITEPROTECT_MODE_WP });
    await p.madvise(a, PS, MADV_PAGEOUT);
    expect(p.pagemap(a, 1)[0]).toMatchObject({ present: false, swapped: true, uffdWp: true });
    expect(await p.mainThread.read(a, 1)).toEqual(new Uint8Array([2]));
    expect(p.pagemap(a, 1)[0]).toMatchObject({ present: true, uffdWp: true });
    const wr = p.mainThread.write(a, fill(3, 1));
    expect(await isBlocked(k, wr)).toBe(true);
    expect(await readMsgs(p, uffd)).toEqual([
      { event: UFFD_EVENT_PAGEFAULT, arg: { pagefault: { flags: UFFD_PAGEFAULT_FLAG_WP | UFFD_PAGEFAULT_FLAG_WRITE, address: a, feat: { ptid: 0 } } } },
    ]);
    await p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: a, len: PS }, mode: 0 });
    await wr;
    k.checkInvariants();
  });
});

describe("MADV_PAGEOUT of shmem (page-cache) pages", () => {
  it("a page mapped once goes to swap: pte none, Swap in smaps, data back on access and via pread", async () => {
    const { k, p } = boot(1, { swapPages: 64 });
    const fd = await p.memfdCreate("s");
    await p.ftruncate(fd, 2 * PS);
    const m1 = await p.mmap(0, 2 * PS, RW, MAP_SHARED, fd, 0);
    // One page only: a read fault in a two-page m2 would map page 1 too (fault-around).
    const m2 = await p.mmap(0, PS, RW, MAP_SHARED, fd, 0);
    await p.mainThread.write(m1, fill(1, 1));
    await p.mainThread.write(m1 + PS, fill(2, 1));
    await p.mainThread.read(m2, 1); // page 0 is mapped twice
    await p.madvise(m1, 2 * PS, MADV_PAGEOUT);
    expect(p.pagemap(m1, 2).map((e) => [e.present, e.swapped])).toEqual([
      [true, false],
      [false, false],
    ]);
    expect(p.smaps().find((v) => v.start === m1)).toMatchObject({ rssBytes: PS, swapBytes: PS });
    expect(Array.from(await p.pread(fd, 1, PS))).toEqual([2]);
    expect(await p.mainThread.read(m1 + PS, 1)).toEqual(new Uint8Array([2]));
    expect(p.pagemap(m1 + PS, 1)[0]).toMatchObject({ present: true, file: true });
    k.checkInvariants();
  });

  it("a uffd-wp'd shmem page leaves a uffd-wp marker behind (linux-rules §5.7: page-out on shmem keeps it)", async () => {
    const k = new Kernel({ seed: 1, swapPages: 64 });
    const p = k.spawn();
    const uffd = await p.userfaultfd(O_NONBLOCK);
    await p.ioctl(uffd, UFFDIO_API, { api: UFFD_API, features: UFFD_FEATURE_WP_UNPOPULATED });
    const s = await p.mmap(0, PS, RW, MAP_SHARED | MAP_ANONYMOUS);
    await p.mainThread.write(s, fill(4));
    await register(p, uffd, s, PS, UFFDIO_REGISTER_MODE_WP);
    await p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: s, len: PS }, mode: UFFDIO_WRITEPROTECT_MODE_WP });
    await p.madvise(s, PS, MADV_PAGEOUT);
    expect(p.pagemap(s, 1)[0]).toMatchObject({ present: false, swapped: true, uffdWp: true, guard: false });
    expect(await p.mainThread.read(s, 1)).toEqual(new Uint8Array([4]));
    expect(p.pagemap(s, 1)[0]).toMatchObject({ present: true, uffdWp: true });
    k.checkInvariants();
  });
});

/**
 * mm/vmscan.c:shrink_folio_list() on a shmem folio MADV_PAGEOUT isolated (mapped once): it is
 * unmapped first (try_to_unmap(): the pte's dirty bit moves to the folio, a uffd-wp pte leaves a
 * marker through pte_install_uffd_wp_if_needed()), whatever happens next. A dirty folio then goes
 * to pageout(): with references beyond the page cache's it is kept (is_page_cache_freeable());
 * otherwise mm/shmem.c:shmem_writeout() redirties it when there is no swap to write to
 * (!total_swap_pages, or no free slot), and it stays in the page cache. A clean folio (a hole
 * only read) skips pageout() and __remove_mapping() drops it from the page cache, unless
 * something else holds it. Host 6.18.44 without swap, the conformance engine's scenarios
 * shmem-pageout-unmaps, shmem-pageout-clean and shmem-pageout-pinned (corpus/known.scn of
 * packages/conformance): every expectation below but the last test's, which has swap.
 */
describe("MADV_PAGEOUT of shmem pages without swap", () => {
  it("unmaps every page; a dirty one stays in the page cache, a clean one leaves it", async () => {
    const { k, p } = boot();
    const fd = await p.memfdCreate("s");
    await p.ftruncate(fd, 4 * PS);
    const m = await p.mmap(0, 4 * PS, RW, MAP_SHARED, fd, 0);
    await p.mainThread.read(m, 2 * PS); // pages 0, 1: clean zero pages in the cache
    await p.mainThread.write(m + 2 * PS, fill(5, 1)); // page 2: dirty pte
    const dirtyPfn = p.pagemap(m + 2 * PS, 1)[0]!.pfn!;
    await p.madvise(m, 4 * PS, MADV_PAGEOUT);
    expect(p.pagemap(m, 4).map((e) => e.present || e.swapped)).toEqual([false, false, false, false]);
    expect(Array.from(await p.mincore(m, 4 * PS))).toEqual([0, 0, 1, 0]);
    expect(k.kpageflags(dirtyPfn).dirty).toBe(true); // shmem_writeout() redirtied it
    expect(p.smaps().find((v) => v.start === m)).toMatchObject({ rssBytes: 0, swapBytes: 0 });
    expect(Array.from(await p.pread(fd, 4 * PS, 0)).filter((_, i) => i % PS === 0)).toEqual([0, 0, 5, 0]);
    expect(await p.mainThread.read(m + 2 * PS, 1)).toEqual(new Uint8Array([5]));
    expect(p.pagemap(m + 2 * PS, 1)[0]).toMatchObject({ present: true, file: true, pfn: dirtyPfn });
    k.checkInvariants();
  });

  it("a uffd-wp pte becomes a uffd-wp marker; the page stays cached and a read maps it again", async () => {
    const { k, p } = boot();
    const uffd = await p.userfaultfd(O_NONBLOCK);
    await p.ioctl(uffd, UFFDIO_API, { api: UFFD_API, features: 0 });
    const fd = await p.memfdCreate("s");
    await p.ftruncate(fd, 4 * PS);
    await p.pwrite(fd, fill(1, 4 * PS), 0);
    const m = await p.mmap(0, 4 * PS, RW, MAP_SHARED, fd, 0);
    await register(p, uffd, m, 4 * PS, UFFDIO_REGISTER_MODE_WP);
    await p.mainThread.read(m, 4 * PS);
    await p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: m + PS, len: PS }, mode: UFFDIO_WRITEPROTECT_MODE_WP });
    await p.madvise(m, 4 * PS, MADV_PAGEOUT);
    expect(p.pagemap(m, 4).map((e) => [e.present, e.swapped, e.uffdWp])).toEqual([
      [false, false, false],
      [false, true, true],
      [false, false, false],
      [false, false, false],
    ]);
    expect(Array.from(await p.mincore(m, 4 * PS))).toEqual([1, 1, 1, 1]);
    expect(await p.mainThread.read(m, 1)).toEqual(new Uint8Array([1]));
    expect(p.pagemap(m, 1)[0]).toMatchObject({ present: true, file: true, uffdWp: false });
    k.checkInvariants();
  });

  it("pages a pipe still references are unmapped and kept in the cache, clean or dirty", async () => {
    const { k, p } = boot();
    const fd = await p.memfdCreate("s");
    await p.ftruncate(fd, 4 * PS);
    const m = await p.mmap(0, 4 * PS, RW, MAP_SHARED, fd, 0);
    await p.mainThread.read(m, 1);
    await p.mainThread.write(m + PS, fill(6, 1));
    const pfns = p.pagemap(m, 2).map((e) => e.pfn);
    const [rd, w] = await p.pipe();
    expect(await p.vmsplice(w, m, 2 * PS)).toBe(2 * PS);
    await p.madvise(m, 4 * PS, MADV_PAGEOUT);
    expect(p.pagemap(m, 4).map((e) => e.present || e.swapped)).toEqual([false, false, false, false]);
    expect(Array.from(await p.mincore(m, 4 * PS))).toEqual([1, 1, 0, 0]);
    expect(await p.mainThread.read(m, 2 * PS).then((b) => [b[0], b[PS]])).toEqual([0, 6]);
    expect(p.pagemap(m, 2).map((e) => e.pfn)).toEqual(pfns);
    expect(Array.from(await p.read(rd, 2 * PS)).filter((_, i) => i % PS === 0)).toEqual([0, 6]);
    k.checkInvariants();
  });

  it("with swap, a clean page is dropped rather than written (no swap entry, no slot used)", async () => {
    const { k, p } = boot(1, { swapPages: 64 });
    const fd = await p.memfdCreate("s");
    await p.ftruncate(fd, 2 * PS);
    const m = await p.mmap(0, 2 * PS, RW, MAP_SHARED, fd, 0);
    await p.mainThread.read(m, 1);
    await p.mainThread.write(m + PS, fill(3, 1));
    await p.madvise(m, 2 * PS, MADV_PAGEOUT);
    expect(p.pagemap(m, 2).map((e) => [e.present, e.swapped])).toEqual([
      [false, false],
      [false, false],
    ]);
    expect(p.smaps().find((v) => v.start === m)).toMatchObject({ rssBytes: 0, swapBytes: PS });
    expect(Array.from(await p.mincore(m, 2 * PS))).toEqual([0, 0]);
    expect(Array.from(await p.pread(fd, 2 * PS, 0)).filter((_, i) => i % PS === 0)).toEqual([0, 3]);
    k.checkInvariants();
  });
});

describe("swap slots are released with the last user (free_pages_and_swap_cache / free_swap_and_cache)", () => {
  it("unmapping a page swapped back in frees its swap-cache slot for the next page-out", async () => {
    // Two slots: not "full" (vm_swap_full()) with one in use, so a read swap-in keeps its slot.
    // A swap file: on zram the read swap-in of this count-1 entry would skip the swap cache.
    const { k, p } = boot(1, { swapPages: 2, swapDevice: "file" });
    const a = await p.mmap(0, PS, RW, ANON);
    const b = await p.mmap(0, 2 * PS, RW, ANON);
    await p.mainThread.write(a, fill(1));
    await p.mainThread.write(b, fill(2, 2 * PS));
    await p.madvise(a, PS, MADV_PAGEOUT);
    await p.mainThread.read(a, 1); // back in, still in the swap cache
    const pfn = p.pagemap(a, 1)[0]!.pfn!;
    expect(k.kpageflags(pfn).swapcache).toBe(true);
    await p.munmap(a, PS);
    expect(k.kpageflags(pfn).swapcache).toBe(false);
    await p.madvise(b, 2 * PS, MADV_PAGEOUT);
    expect(p.pagemap(b, 2).map((e) => e.swapped)).toEqual([true, true]);
    k.checkInvariants();
  });

  it("zapping a swap pte whose page a pipe keeps in the swap cache drops it from the cache", async () => {
    const { k, p } = boot(1, { swapPages: 1 });
    const a = await p.mmap(0, PS, RW, ANON);
    await p.mainThread.write(a, fill(1));
    const pfn = p.pagemap(a, 1)[0]!.pfn!;
    const [rd, w] = await p.pipe();
    await p.vmsplice(w, a, PS);
    await p.madvise(a, PS, MADV_PAGEOUT);
    expect(k.kpageflags(pfn).swapcache).toBe(true);
    await p.munmap(a, PS);
    expect(k.kpageflags(pfn).swapcache).toBe(false);
    expect(await p.read(rd, PS)).toEqual(fill(1));
    const b = await p.mmap(0, PS, RW, ANON);
    await p.mainThread.write(b, fill(2));
    await p.madvise(b, PS, MADV_PAGEOUT);
    expect(p.pagemap(b, 1)[0]!.swapped).toBe(true);
    k.checkInvariants();
  });
});
