/**
 * PageAnonExclusive (PAE) and the mechanisms around it that live in mm (docs/linux-rules.md
 * §5.1-§5.5, seed 004 "reuse PG_mappedtodisk as PG_anon_exclusive", seed 001 on GUP pins):
 * set on the first write fault, cleared by fork, restored by a write fault (do_wp_page reuse)
 * but not by a read, kept by a pinned page across fork (the child gets a copy), the zero page
 * on read faults, and pagemap's own bits, among them bit 56 which is "mapped once", not PAE.
 *
 * PAE is not visible in procfs. Each test observes it through behaviour with observePae():
 * take an extra page reference (vmsplice the page into a pipe, a FOLL_GET reference, not a pin),
 * then store to the page through the page table.
 * - PAE set: the store needs no copy (the pte is writable, which implies PAE, or do_wp_page
 *   reuses an exclusive page whatever its refcount): the pfn stays and the pipe, which reads
 *   the same frame, sees the store.
 * - PAE clear: do_wp_page may reuse only a page it holds the only reference to
 *   (wp_can_reuse_anon_folio); the pipe's reference forbids it, so the store COWs: a new pfn,
 *   and the pipe still reads the old bytes.
 * The observation changes the page (it ends up exclusive either way), so each scenario observes
 * once, at its end.
 */
import { describe, expect, it } from "vitest";
import { Kernel, type Process } from "@uffd/kernel";
import {
  F_SETPIPE_SZ,
  MADV_PAGEOUT,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  MAP_SHARED,
  O_NONBLOCK,
  PAGE_SIZE,
  PROT_READ,
  PROT_WRITE,
  UFFD_API,
  UFFDIO_API,
  UFFDIO_POISON,
  UFFDIO_REGISTER,
  UFFDIO_REGISTER_MODE_MISSING,
  UFFDIO_REGISTER_MODE_WP,
  UFFDIO_WRITEPROTECT,
  UFFDIO_WRITEPROTECT_MODE_WP,
} from "@uffd/kernel/uapi";

const PAGE = PAGE_SIZE;
const RW = PROT_READ | PROT_WRITE;
const ANON = MAP_PRIVATE | MAP_ANONYMOUS;
const bytes = (n: number, fill: number): Uint8Array => new Uint8Array(n).fill(fill);
const pfnOf = (p: Process, addr: number): number | null => p.pagemap(addr, 1)[0]!.pfn;

/** Stores `marker` to the page at `addr` while a pipe holds a reference to it (see the header). */
async function observePae(p: Process, addr: number, marker = 0xee): Promise<boolean> {
  const [r, w] = await p.pipe();
  const before = pfnOf(p, addr);
  expect(await p.vmsplice(w, addr, PAGE)).toBe(PAGE);
  await p.mainThread.write(addr, new Uint8Array([marker]));
  const reused = pfnOf(p, addr) === before;
  const piped = await p.read(r, PAGE);
  expect(piped[0] === marker, "the pipe sees the store iff the frame was reused").toBe(reused);
  await p.close(r);
  await p.close(w);
  return reused;
}

async function anonPages(p: Process, pages: number, fill = 1): Promise<number> {
  const a = await p.mmap(0, pages * PAGE, RW, ANON);
  for (let i = 0; i < pages; i++) await p.mainThread.write(a + i * PAGE, bytes(PAGE, fill));
  return a;
}

describe("PageAnonExclusive: set, cleared, restored", () => {
  it("is set on the first write fault (do_anonymous_page: RMAP_EXCLUSIVE)", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const a = await anonPages(p, 1);
    expect(p.pagemap(a, 1)[0]).toMatchObject({ present: true, exclusive: true, file: false });
    expect(await observePae(p, a)).toBe(true);
    k.checkInvariants();
  });

  it("survives mprotect(RO) + mprotect(RW), which maps an exclusive page writable again at once", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const a = await anonPages(p, 1);
    const pfn = pfnOf(p, a);
    await p.mprotect(a, PAGE, PROT_READ);
    await p.mprotect(a, PAGE, RW);
    expect(await observePae(p, a)).toBe(true);
    expect(pfnOf(p, a)).toBe(pfn);
    k.checkInvariants();
  });

  it("is cleared by fork in the parent (folio_try_dup_anon_rmap_pte): its store copies", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const a = await anonPages(p, 1, 7);
    const c = await p.fork();
    expect(p.pagemap(a, 1)[0]!.exclusive).toBe(false);
    expect(c.pagemap(a, 1)[0]!.exclusive).toBe(false);
    expect(await observePae(p, a)).toBe(false);
    expect(await c.mainThread.read(a, 1)).toEqual(new Uint8Array([7]));
    k.checkInvariants();
  });

  it("stays clear after the child exits although pagemap bit 56 says 'exclusive' again (bit 56 is the mapcount)", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const a = await anonPages(p, 1);
    const c = await p.fork();
    await c.exit(0);
    await p.waitpid(c.pid);
    expect(p.pagemap(a, 1)[0]).toMatchObject({ present: true, exclusive: true });
    expect(k.kpagecount(pfnOf(p, a)!)).toBe(1);
    expect(await observePae(p, a)).toBe(false);
    k.checkInvariants();
  });

  it("is not restored by a read fault", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const a = await anonPages(p, 1);
    const c = await p.fork();
    await c.exit(0);
    expect(await p.mainThread.read(a, PAGE)).toEqual(bytes(PAGE, 1));
    expect(await observePae(p, a)).toBe(false);
    k.checkInvariants();
  });

  it("is restored by a write fault that reuses the page (do_wp_page: only reference left)", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const a = await anonPages(p, 1);
    const pfn = pfnOf(p, a);
    const c = await p.fork();
    await c.exit(0);
    await p.mainThread.write(a, new Uint8Array([2]));
    expect(pfnOf(p, a)).toBe(pfn); // reused, not copied
    expect(await observePae(p, a)).toBe(true);
    k.checkInvariants();
  });

  it("is restored in the child by its own COW copy, and in the parent once the child's copy took its share", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const a = await anonPages(p, 1);
    const shared = pfnOf(p, a);
    const c = await p.fork();
    await c.mainThread.write(a, new Uint8Array([3])); // wp_page_copy: a new PAE page for the child
    expect(pfnOf(c, a)).not.toBe(shared);
    expect(await observePae(c, a)).toBe(true);
    // The parent's page is not PAE, but its refcount is 1 again: its next store reuses it.
    await p.mainThread.write(a, new Uint8Array([4]));
    expect(pfnOf(p, a)).toBe(shared);
    expect(await observePae(p, a)).toBe(true);
    k.checkInvariants();
  });

  it("a R/O FOLL_PIN unshares a non-exclusive page and leaves it PAE (FAULT_FLAG_UNSHARE reuse)", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const a = await anonPages(p, 1);
    const pfn = pfnOf(p, a);
    const c = await p.fork();
    await c.exit(0);
    const pin = await p.gupTestPin(a, PAGE, { write: false, longterm: true, fast: false });
    expect(pfnOf(p, a)).toBe(pfn); // refcount 1: unshare reuses instead of copying
    await pin.unregister();
    expect(await observePae(p, a)).toBe(true);
    k.checkInvariants();
  });
});

describe("fork and maybe-pinned pages (copy_present_page, folio_needs_cow_for_dma)", () => {
  it("fork gives the child a copy of a pinned page; the parent keeps the pinned frame, writable and PAE", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const a = await anonPages(p, 2, 5);
    const pin = await p.gupTestPin(a, PAGE, { write: false, longterm: true, fast: false });
    const pinned = pfnOf(p, a);
    const unpinned = pfnOf(p, a + PAGE);
    const c = await p.fork();
    expect(pfnOf(p, a)).toBe(pinned);
    expect(pfnOf(c, a)).not.toBe(pinned);
    expect(c.pagemap(a, 1)[0]).toMatchObject({ present: true, exclusive: true });
    expect(p.pagemap(a, 1)[0]).toMatchObject({ present: true, exclusive: true });
    // The page next to it was not pinned: shared as usual.
    expect(pfnOf(c, a + PAGE)).toBe(unpinned);
    expect(p.pagemap(a + PAGE, 1)[0]!.exclusive).toBe(false);
    await p.mainThread.write(a, bytes(PAGE, 0xff));
    expect(pfnOf(p, a)).toBe(pinned);
    expect(pin.read(0, PAGE)).toEqual(bytes(PAGE, 0xff));
    expect(await c.mainThread.read(a, PAGE)).toEqual(bytes(PAGE, 5));
    expect(await observePae(p, a)).toBe(true);
    k.checkInvariants();
  });

  it("an io_uring fixed buffer is not shared with a child either", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const a = await anonPages(p, 1, 5);
    const buf = await p.ioUringRegisterBuffers(a, PAGE);
    const pfn = pfnOf(p, a);
    const c = await p.fork();
    expect(pfnOf(c, a)).not.toBe(pfn);
    buf.write(0, bytes(4, 0x44));
    expect(await p.mainThread.read(a, 4)).toEqual(bytes(4, 0x44));
    expect(await c.mainThread.read(a, 4)).toEqual(bytes(4, 5));
    k.checkInvariants();
  });

  it("seed 001/000: write-protecting a pinned page (uffd-wp) never makes a later store COW away from the pin", async () => {
    // The 2021 thread: a write-protect (clear_refs, uffd-wp) followed by a write fault used to
    // copy a page a device had pinned (page_count > 1), so the process and the device diverged.
    // With PAE, do_wp_page reuses the exclusive pinned page whatever its refcount.
    const k = new Kernel();
    const p = k.spawn();
    const uffd = await p.userfaultfd(O_NONBLOCK);
    await p.ioctl(uffd, UFFDIO_API, { api: UFFD_API, features: 0 });
    const a = await anonPages(p, 1, 5);
    const buf = await p.ioUringRegisterBuffers(a, PAGE);
    const pfn = pfnOf(p, a);
    await p.ioctl(uffd, UFFDIO_REGISTER, { range: { start: a, len: PAGE }, mode: UFFDIO_REGISTER_MODE_WP });
    await p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: a, len: PAGE }, mode: UFFDIO_WRITEPROTECT_MODE_WP });
    const store = p.mainThread.write(a, bytes(8, 0x77));
    await k.idle();
    expect(p.pagemap(a, 1)[0]).toMatchObject({ uffdWp: true, pfn });
    await p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: a, len: PAGE }, mode: 0 });
    await store;
    expect(pfnOf(p, a)).toBe(pfn);
    expect(buf.read(0, 8)).toEqual(bytes(8, 0x77));
    buf.write(0, bytes(8, 0x78));
    expect(await p.mainThread.read(a, 8)).toEqual(bytes(8, 0x78));
    k.checkInvariants();
  });

  it("folio_maybe_dma_pinned() false positive: 1024 plain references count as a pin, but only in an MMF_HAS_PINNED mm", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const a = await anonPages(p, 1);
    const pfn = pfnOf(p, a);
    /** 1023 vmsplice references (each pipe buffer holds one): refcount 1024 with the mapping. */
    const reference1023 = async (): Promise<[number, number]> => {
      const [r, w] = await p.pipe2(O_NONBLOCK);
      await p.fcntl(r, F_SETPIPE_SZ, 1024 * PAGE);
      for (let j = 0; j < 1023; j++) expect(await p.vmsplice(w, a, PAGE)).toBe(PAGE);
      return [r, w];
    };
    const [r1, w1] = await reference1023();
    k.checkInvariants();
    // Never pinned: MMF_HAS_PINNED is clear, so fork shares the page whatever its refcount.
    const c1 = await p.fork();
    expect(pfnOf(c1, a)).toBe(pfn);
    await c1.exit(0);
    await p.close(r1);
    await p.close(w1);
    // A pin on another page (released at once) sets MMF_HAS_PINNED for good.
    const other = await anonPages(p, 1);
    await (await p.gupTestPin(other, PAGE, { write: true, longterm: true, fast: false })).unregister();
    await p.mainThread.write(a, new Uint8Array([9])); // the only reference again: reuse, PAE
    expect(pfnOf(p, a)).toBe(pfn);
    const [r2, w2] = await reference1023();
    const c2 = await p.fork();
    expect(pfnOf(p, a)).toBe(pfn);
    expect(pfnOf(c2, a)).not.toBe(pfn);
    expect(await c2.mainThread.read(a, 1)).toEqual(new Uint8Array([9]));
    k.checkInvariants();
    await p.close(r2);
    await p.close(w2);
    k.checkInvariants();
  });
});

describe("the shared zero page", () => {
  it("maps on a read fault of private anon memory: present, not exclusive, not file, not counted", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const a = await p.mmap(0, 2 * PAGE, RW, ANON);
    expect(await p.mainThread.read(a, 8)).toEqual(bytes(8, 0));
    expect(p.pagemap(a, 1)[0]).toEqual({ present: true, swapped: false, file: false, exclusive: false, uffdWp: false, softDirty: false, guard: false, pfn: k.zeroPfn });
    expect(k.kpageflags(k.zeroPfn).zeroPage).toBe(true);
    expect(k.kpagecount(k.zeroPfn)).toBe(0);
    // The read fault did no anon_vma_prepare(), so fork copies no page table (vma_needs_copy):
    // the child faults the zero page in by itself.
    const c = await p.fork();
    expect(c.pagemap(a, 1)[0]!.present).toBe(false);
    await c.mainThread.read(a, 1);
    expect(pfnOf(c, a)).toBe(k.zeroPfn);
    await p.mainThread.write(a + 3, new Uint8Array([1]));
    const e = p.pagemap(a, 1)[0]!;
    expect(e).toMatchObject({ present: true, exclusive: true, file: false });
    expect(e.pfn).not.toBe(k.zeroPfn);
    expect(await p.mainThread.read(a, 5)).toEqual(new Uint8Array([0, 0, 0, 1, 0]));
    expect(await c.mainThread.read(a, 5)).toEqual(bytes(5, 0));
    k.checkInvariants();
  });

  it("is not mapped when MISSING is registered: the read raises the userfault first", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const uffd = await p.userfaultfd(O_NONBLOCK);
    await p.ioctl(uffd, UFFDIO_API, { api: UFFD_API, features: 0 });
    const a = await p.mmap(0, PAGE, RW, ANON);
    await p.ioctl(uffd, UFFDIO_REGISTER, { range: { start: a, len: PAGE }, mode: UFFDIO_REGISTER_MODE_MISSING });
    const rd = p.mainThread.read(a, 1);
    await k.idle();
    expect(p.pagemap(a, 1)[0]!.present).toBe(false);
    await p.close(uffd); // release wakes the fault; unregistered, the retry maps the zero page
    expect(await rd).toEqual(new Uint8Array([0]));
    expect(pfnOf(p, a)).toBe(k.zeroPfn);
    k.checkInvariants();
  });
});

describe("pagemap bits 56/57/61/62/63 and what they mean (fs/proc/task_mmu.c:pte_to_pagemap_entry)", () => {
  it("file (61) is the page's kind, exclusive (56) its mapcount", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const fd = await p.memfdCreate("m");
    await p.ftruncate(fd, PAGE);
    const sh1 = await p.mmap(0, PAGE, RW, MAP_SHARED, fd, 0);
    await p.mainThread.write(sh1, new Uint8Array([1]));
    expect(p.pagemap(sh1, 1)[0]).toMatchObject({ present: true, file: true, exclusive: true });
    const sh2 = await p.mmap(0, PAGE, PROT_READ, MAP_SHARED, fd, 0);
    await p.mainThread.read(sh2, 1);
    expect(p.pagemap(sh1, 1)[0]).toMatchObject({ present: true, file: true, exclusive: false });
    expect(pfnOf(p, sh2)).toBe(pfnOf(p, sh1));
    const priv = await p.mmap(0, PAGE, RW, MAP_PRIVATE, fd, 0);
    await p.mainThread.read(priv, 1);
    expect(p.pagemap(priv, 1)[0]).toMatchObject({ present: true, file: true, exclusive: false });
    await p.mainThread.write(priv, new Uint8Array([2]));
    expect(p.pagemap(priv, 1)[0]).toMatchObject({ present: true, file: false, exclusive: true });
    k.checkInvariants();
  });

  it("uffd-wp (57) on a present pte; a poison marker is 'swapped' (62) and not present (63)", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const uffd = await p.userfaultfd(O_NONBLOCK);
    await p.ioctl(uffd, UFFDIO_API, { api: UFFD_API, features: 0 });
    const a = await anonPages(p, 2);
    await p.ioctl(uffd, UFFDIO_REGISTER, { range: { start: a, len: 2 * PAGE }, mode: UFFDIO_REGISTER_MODE_WP | UFFDIO_REGISTER_MODE_MISSING });
    await p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: a, len: PAGE }, mode: UFFDIO_WRITEPROTECT_MODE_WP });
    expect(p.pagemap(a, 1)[0]).toMatchObject({ present: true, swapped: false, uffdWp: true, exclusive: true });
    const b = await p.mmap(0, PAGE, RW, ANON);
    await p.ioctl(uffd, UFFDIO_REGISTER, { range: { start: b, len: PAGE }, mode: UFFDIO_REGISTER_MODE_MISSING });
    const arg = { range: { start: b, len: PAGE }, mode: 0, updated: 0 };
    await p.ioctl(uffd, UFFDIO_POISON, arg);
    expect(arg.updated).toBe(PAGE);
    expect(p.pagemap(b, 1)[0]).toMatchObject({ present: false, swapped: true, uffdWp: false, file: false, exclusive: false, pfn: null });
    k.checkInvariants();
  });
});

describe("swap and PAE (linux-rules §5.5; linux-rules §8.12: a read swap-in does not restore PAE)", () => {
  /** MADV_PAGEOUT, as cow.c uses it: returns whether the page is now swapped out. */
  async function pageout(p: Process, addr: number): Promise<boolean> {
    await p.madvise(addr, PAGE, MADV_PAGEOUT).catch(() => undefined);
    return p.pagemap(addr, 1)[0]!.swapped;
  }

  it("an exclusive page swapped out and read back in is PAE again (swp-exclusive)", async (ctx) => {
    const k = new Kernel({ swapPages: 16 });
    const p = k.spawn();
    const a = await anonPages(p, 1, 6);
    ctx.skip(!(await pageout(p, a)), "MADV_PAGEOUT did not swap the page out (as cow.c: is swap enabled?)");
    expect(p.pagemap(a, 1)[0]).toMatchObject({ present: false, swapped: true, exclusive: false });
    expect(await p.mainThread.read(a, 1)).toEqual(new Uint8Array([6]));
    expect(await observePae(p, a)).toBe(true);
    k.checkInvariants();
  });

  it("a previously shared page swapped out to a swap file and read back in stays not PAE; a write swap-in makes it PAE", async (ctx) => {
    const k = new Kernel({ swapPages: 16, swapDevice: "file" });
    const p = k.spawn();
    const a = await anonPages(p, 2, 6);
    const c = await p.fork();
    await c.exit(0);
    ctx.skip(!(await pageout(p, a)) || !(await pageout(p, a + PAGE)), "MADV_PAGEOUT did not swap the pages out");
    expect(await p.mainThread.read(a, 1)).toEqual(new Uint8Array([6]));
    await p.mainThread.write(a + PAGE, new Uint8Array([7]));
    expect(await observePae(p, a + PAGE)).toBe(true);
    expect(await observePae(p, a)).toBe(false);
    k.checkInvariants();
  });

  it("on zram (SWP_SYNCHRONOUS_IO) the read swap-in of a count-1 entry gets a fresh exclusive folio: PAE", async (ctx) => {
    const k = new Kernel({ swapPages: 16 });
    const p = k.spawn();
    const a = await anonPages(p, 1, 6);
    const c = await p.fork();
    await c.exit(0);
    ctx.skip(!(await pageout(p, a)), "MADV_PAGEOUT did not swap the page out");
    expect(await p.mainThread.read(a, 1)).toEqual(new Uint8Array([6]));
    expect(await observePae(p, a)).toBe(true);
    k.checkInvariants();
  });
});
