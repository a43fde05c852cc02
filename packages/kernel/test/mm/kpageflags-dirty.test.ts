/**
 * kpageflags KPF_DIRTY is the folio's PG_dirty (fs/proc/page.c:stable_page_flags()), not the
 * pte's dirty bit. Anonymous folios are dirtied only by follow_page_pte()'s FOLL_TOUCH step
 * (a slow-path GUP write through a clean pte, as MADV_POPULATE_WRITE after MADV_FREE) and by
 * folio_free_swap(); write faults, COW copies, UFFDIO_COPY/MOVE, fork-time copies and GUP-fast
 * pins only set the pte's bit. Shmem folios are dirtied by write(2) and fallocate(2), by a
 * write fault on a none pte of a shared mapping (fault_dirty_shared_page()), by FOLL_TOUCH, and
 * by a zap that finds a dirty pte (zap_present_folio_ptes(), file folios only).
 *
 * Each expectation is what a C probe read from /proc/kpageflags on the 6.18.44 host after the
 * same steps (the probe's label is quoted in the test).
 */
import { describe, expect, it } from "vitest";
import type { Kernel, Process } from "@uffd/kernel";
import {
  MADV_DONTNEED,
  MADV_FREE,
  MADV_POPULATE_READ,
  MADV_POPULATE_WRITE,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  MAP_SHARED,
  O_NONBLOCK,
  PROT_READ,
  PROT_WRITE,
  UFFD_API,
  UFFD_FEATURE_MOVE,
  UFFD_FEATURE_PAGEFAULT_FLAG_WP,
  UFFDIO_API,
  UFFDIO_COPY,
  UFFDIO_MOVE,
  UFFDIO_REGISTER,
  UFFDIO_REGISTER_MODE_MISSING,
  UFFDIO_REGISTER_MODE_WP,
  UFFDIO_ZEROPAGE,
} from "@uffd/kernel/uapi";
import { boot, page } from "../core/helpers.ts";

const PS = 4096;
const RW = PROT_READ | PROT_WRITE;
const ANON = MAP_PRIVATE | MAP_ANONYMOUS;

/** KPF_DIRTY of the frame mapped at addr (the test fails if nothing is mapped there). */
function dirtyAt(k: Kernel, p: Process, addr: number): boolean {
  const pfn = p.pagemap(addr, 1)[0]!.pfn;
  expect(pfn, `a page is mapped at 0x${addr.toString(16)}`).not.toBeNull();
  return k.kpageflags(pfn!).dirty;
}

async function uffdMissing(p: Process, addr: number, len: number, features = 0): Promise<number> {
  const uffd = await p.userfaultfd(O_NONBLOCK);
  await p.ioctl(uffd, UFFDIO_API, { api: UFFD_API, features });
  await p.ioctl(uffd, UFFDIO_REGISTER, { range: { start: addr, len }, mode: UFFDIO_REGISTER_MODE_MISSING });
  return uffd;
}

describe("kpageflags dirty of anonymous folios", () => {
  it("write faults, zero-page COW and fork COW (copy and reuse) leave PG_dirty clear", async () => {
    const { k, p } = boot();
    const a = await p.mmap(0, 4 * PS, RW, ANON);
    await p.mainThread.write(a, page(1, 1));
    expect(dirtyAt(k, p, a), "anon write fault").toBe(false);
    await p.mainThread.read(a + PS, 1);
    await p.mainThread.write(a + PS, page(1, 1));
    expect(dirtyAt(k, p, a + PS), "anon read then write").toBe(false);
    const child = await p.fork();
    await child.mainThread.write(a, page(2, 1));
    expect(dirtyAt(k, child, a), "child COW copy").toBe(false);
    await p.mainThread.write(a, page(4, 1));
    expect(dirtyAt(k, p, a), "parent COW while child alive").toBe(false);
    await child.exit();
    await p.mainThread.write(a + PS, page(3, 1));
    expect(dirtyAt(k, p, a + PS), "parent after child COW, reuse").toBe(false);
    k.checkInvariants();
  });

  it("UFFDIO_COPY and UFFDIO_MOVE leave PG_dirty clear", async () => {
    const { k, p } = boot();
    const b = await p.mmap(0, 4 * PS, RW, ANON);
    const uffd = await uffdMissing(p, b, 4 * PS, UFFD_FEATURE_MOVE);
    await p.ioctl(uffd, UFFDIO_COPY, { dst: b, src: page(1), len: PS, mode: 0, copy: 0 });
    expect(dirtyAt(k, p, b), "anon UFFDIO_COPY").toBe(false);
    const s2 = await p.mmap(0, PS, RW, ANON);
    await p.mainThread.write(s2, page(1, 1));
    await p.ioctl(uffd, UFFDIO_MOVE, { dst: b + PS, src: s2, len: PS, mode: 0, move: 0 });
    expect(dirtyAt(k, p, b + PS), "anon UFFDIO_MOVE dst").toBe(false);
    k.checkInvariants();
  });

  it("MADV_POPULATE_WRITE dirties only a folio whose pte is clean (FOLL_TOUCH)", async () => {
    const { k, p } = boot();
    const d = await p.mmap(0, 8 * PS, RW, ANON);
    await p.madvise(d, PS, MADV_POPULATE_WRITE);
    expect(dirtyAt(k, p, d), "anon POPULATE_WRITE on none").toBe(false);
    await p.mainThread.write(d + PS, page(1, 1));
    await p.madvise(d + PS, PS, MADV_POPULATE_WRITE);
    expect(dirtyAt(k, p, d + PS), "anon POPULATE_WRITE on dirty pte").toBe(false);
    await p.mainThread.write(d + 2 * PS, page(1, 1));
    await p.madvise(d + 2 * PS, PS, MADV_FREE);
    expect(dirtyAt(k, p, d + 2 * PS), "anon after MADV_FREE").toBe(false);
    await p.madvise(d + 2 * PS, PS, MADV_POPULATE_WRITE);
    expect(dirtyAt(k, p, d + 2 * PS), "anon MADV_FREE then POPULATE_WRITE").toBe(true);
    await p.mainThread.write(d + 3 * PS, page(1, 1));
    await p.madvise(d + 3 * PS, PS, MADV_FREE);
    await p.madvise(d + 3 * PS, PS, MADV_POPULATE_READ);
    expect(dirtyAt(k, p, d + 3 * PS), "anon MADV_FREE then POPULATE_READ").toBe(false);
    await p.mainThread.write(d + 3 * PS, page(2, 1));
    expect(dirtyAt(k, p, d + 3 * PS), "anon MADV_FREE then write").toBe(false);
    k.checkInvariants();
  });

  it("GUP-fast pins (io_uring buffers) and references (vmsplice) leave it clear, and so do fork-time copies of pinned pages", async () => {
    const { k, p } = boot();
    const d = await p.mmap(0, 8 * PS, RW, ANON);
    await p.mainThread.write(d + 4 * PS, page(1, 1));
    await p.madvise(d + 4 * PS, PS, MADV_FREE);
    let buf = await p.ioUringRegisterBuffers(d + 4 * PS, PS);
    expect(dirtyAt(k, p, d + 4 * PS), "anon MADV_FREE then io_uring pin (fast)").toBe(false);
    await buf.unregister();
    buf = await p.ioUringRegisterBuffers(d + 5 * PS, PS);
    expect(dirtyAt(k, p, d + 5 * PS), "anon io_uring pin on none (slow)").toBe(false);
    await buf.unregister();
    await p.mainThread.write(d + 6 * PS, page(1, 1));
    buf = await p.ioUringRegisterBuffers(d + 6 * PS, PS);
    expect(dirtyAt(k, p, d + 6 * PS), "anon io_uring pin on dirty").toBe(false);
    const child = await p.fork();
    expect(dirtyAt(k, p, d + 6 * PS), "pinned after fork: parent").toBe(false);
    expect(dirtyAt(k, child, d + 6 * PS), "pinned after fork: child copy").toBe(false);
    expect(p.pagemap(d + 6 * PS, 1)[0]!.pfn).not.toBe(child.pagemap(d + 6 * PS, 1)[0]!.pfn);
    await child.exit();
    await buf.unregister();
    await p.mainThread.write(d + 7 * PS, page(1, 1));
    const [, w] = await p.pipe();
    await p.vmsplice(w, d + 7 * PS, PS);
    expect(dirtyAt(k, p, d + 7 * PS), "anon vmsplice").toBe(false);
    k.checkInvariants();
  });

  it("a zap never passes an anon pte's dirty bit to the folio (a vmsplice reference keeps it alive)", async () => {
    const { k, p } = boot();
    const a = await p.mmap(0, PS, RW, ANON);
    await p.mainThread.write(a, page(1, 1));
    const pfn = p.pagemap(a, 1)[0]!.pfn!;
    const [, w] = await p.pipe();
    await p.vmsplice(w, a, PS);
    await p.madvise(a, PS, MADV_DONTNEED);
    expect(k.kpageflags(pfn)).toMatchObject({ anon: true, dirty: false });
    k.checkInvariants();
  });
});

describe("kpageflags dirty of shmem folios", () => {
  async function memfd(p: Process, pages: number): Promise<number> {
    const fd = await p.memfdCreate("s");
    await p.ftruncate(fd, pages * PS);
    return fd;
  }

  it("write(2) and a shared write fault on a none pte dirty; a read fault does not, nor a CPU write through its writable pte until the zap", async () => {
    const { k, p } = boot();
    const fd = await memfd(p, 16);
    await p.pwrite(fd, page(1), 0);
    const s = await p.mmap(0, PS, RW, MAP_SHARED, fd, 0);
    await p.mainThread.read(s, 1);
    expect(dirtyAt(k, p, s), "shmem pwrite").toBe(true);
    let s1 = await p.mmap(0, PS, RW, MAP_SHARED, fd, PS);
    await p.mainThread.read(s1, 1);
    expect(dirtyAt(k, p, s1), "shmem read fault hole").toBe(false);
    await p.mainThread.write(s1, page(1, 1));
    expect(dirtyAt(k, p, s1), "shmem read fault then write").toBe(false);
    await p.munmap(s1, PS);
    s1 = await p.mmap(0, PS, RW, MAP_SHARED, fd, PS);
    await p.mainThread.read(s1, 1);
    expect(dirtyAt(k, p, s1), "shmem after munmap of dirty pte").toBe(true);
    await p.munmap(s1, PS);
    s1 = await p.mmap(0, PS, RW, MAP_SHARED, fd, 2 * PS);
    await p.mainThread.write(s1, page(1, 1));
    expect(dirtyAt(k, p, s1), "shmem write fault on none").toBe(true);
    await p.munmap(s1, PS);
    s1 = await p.mmap(0, PS, RW, MAP_SHARED, fd, 3 * PS);
    await p.mainThread.read(s1, 1);
    await p.mainThread.write(s1, page(1, 1));
    await p.madvise(s1, PS, MADV_DONTNEED);
    await p.mainThread.read(s1, 1);
    expect(dirtyAt(k, p, s1), "shmem write then DONTNEED").toBe(true);
    k.checkInvariants();
  });

  it("fallocate dirties every folio of its range; MADV_POPULATE_WRITE through a clean pte dirties; mprotect RO/RW then a write does not", async () => {
    const { k, p } = boot();
    const fd = await memfd(p, 16);
    let s1 = await p.mmap(0, PS, RW, MAP_SHARED, fd, 4 * PS);
    await p.mainThread.read(s1, 1);
    await p.fallocate(fd, 0, 4 * PS, PS);
    expect(dirtyAt(k, p, s1), "shmem clean then fallocate").toBe(true);
    await p.munmap(s1, PS);
    await p.fallocate(fd, 0, 5 * PS, PS);
    s1 = await p.mmap(0, PS, RW, MAP_SHARED, fd, 5 * PS);
    await p.mainThread.read(s1, 1);
    expect(dirtyAt(k, p, s1), "shmem fallocate new then read").toBe(true);
    await p.munmap(s1, PS);
    s1 = await p.mmap(0, PS, RW, MAP_SHARED, fd, 6 * PS);
    await p.mainThread.read(s1, 1);
    await p.madvise(s1, PS, MADV_POPULATE_WRITE);
    expect(dirtyAt(k, p, s1), "shmem clean then POPULATE_WRITE").toBe(true);
    await p.munmap(s1, PS);
    s1 = await p.mmap(0, PS, RW, MAP_SHARED, fd, 8 * PS);
    await p.mainThread.read(s1, 1);
    await p.mprotect(s1, PS, PROT_READ);
    await p.mprotect(s1, PS, RW);
    await p.mainThread.write(s1, page(1, 1));
    expect(dirtyAt(k, p, s1), "shmem clean, mprotect RO/RW, write").toBe(false);
    await p.munmap(s1, PS);
    s1 = await p.mmap(0, PS, RW, MAP_SHARED, fd, 9 * PS);
    await p.mainThread.read(s1, 1);
    const buf = await p.ioUringRegisterBuffers(s1, PS);
    expect(dirtyAt(k, p, s1), "shmem clean, io_uring pin").toBe(false);
    await buf.unregister();
    k.checkInvariants();
  });

  it("a write through a write-notify pte (a WP-registered vma) dirties it: wp_page_shared()", async () => {
    const { k, p } = boot();
    const fd = await memfd(p, 4);
    const s = await p.mmap(0, 4 * PS, RW, MAP_SHARED, fd, 0);
    const uffd = await p.userfaultfd(O_NONBLOCK);
    await p.ioctl(uffd, UFFDIO_API, { api: UFFD_API, features: UFFD_FEATURE_PAGEFAULT_FLAG_WP });
    await p.ioctl(uffd, UFFDIO_REGISTER, { range: { start: s, len: 4 * PS }, mode: UFFDIO_REGISTER_MODE_WP });
    await p.mainThread.read(s, 1);
    expect(dirtyAt(k, p, s), "shmem WP-registered read fault").toBe(false);
    await p.mainThread.write(s, page(1, 1));
    expect(dirtyAt(k, p, s), "  then write (wp_page_shared)").toBe(true);
    k.checkInvariants();
  });

  it("a private mapping's write copies into a clean anon folio and leaves the cache page clean", async () => {
    const { k, p } = boot();
    const fd = await memfd(p, 16);
    let s1 = await p.mmap(0, PS, RW, MAP_PRIVATE, fd, 7 * PS);
    await p.mainThread.write(s1, page(1, 1));
    expect(dirtyAt(k, p, s1), "shmem private write (anon copy)").toBe(false);
    await p.munmap(s1, PS);
    s1 = await p.mmap(0, PS, RW, MAP_SHARED, fd, 7 * PS);
    await p.mainThread.read(s1, 1);
    expect(dirtyAt(k, p, s1), "its cache page").toBe(false);
    k.checkInvariants();
  });

  it("UFFDIO_COPY and UFFDIO_ZEROPAGE leave it clean; the munmap of the COPY's dirty pte dirties it", async () => {
    const { k, p } = boot();
    const fd = await memfd(p, 16);
    let t = await p.mmap(0, 4 * PS, RW, MAP_SHARED, fd, 12 * PS);
    const uffd = await uffdMissing(p, t, 4 * PS);
    await p.ioctl(uffd, UFFDIO_COPY, { dst: t, src: page(1), len: PS, mode: 0, copy: 0 });
    expect(dirtyAt(k, p, t), "shmem UFFDIO_COPY").toBe(false);
    await p.ioctl(uffd, UFFDIO_ZEROPAGE, { range: { start: t + PS, len: PS }, mode: 0, zeropage: 0 });
    expect(dirtyAt(k, p, t + PS), "shmem UFFDIO_ZEROPAGE").toBe(false);
    await p.munmap(t, 4 * PS);
    t = await p.mmap(0, 4 * PS, RW, MAP_SHARED, fd, 12 * PS);
    await p.mainThread.read(t, 1);
    expect(dirtyAt(k, p, t), "shmem COPY after munmap (pte dirty)").toBe(true);
    k.checkInvariants();
  });
});
