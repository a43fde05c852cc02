/**
 * Fault-around: mm/memory.c:do_read_fault() calls do_fault_around() before ->fault(), and shmem's
 * ->map_pages (mm/filemap.c:filemap_map_pages()) maps the uptodate page-cache pages of a window
 * of fault_around_bytes (64 KiB = 16 ptes). The window starts at the 16-aligned pte index or at
 * the vma start if that is later, runs 16 ptes and stops at the vma end and at i_size; holes,
 * swapped-out entries, !uptodate (fallocated) folios and ptes that are not none are skipped.
 * Not on write faults, and not in vmas armed for WP or MINOR (uffd_disable_fault_around()).
 *
 * Every expectation here was first observed on the 6.18.44 host with a C probe that read
 * /proc/self/pagemap after the same steps (a 40-page memfd with holes at pages 5 and 20, mappings
 * placed at 64 KiB-aligned addresses); the strings are the probe's own presence maps.
 */
import { describe, expect, it } from "vitest";
import { SignalError, type Process } from "@uffd/kernel";
import {
  MADV_DONTNEED,
  MADV_GUARD_INSTALL,
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_PRIVATE,
  MAP_SHARED,
  O_NONBLOCK,
  PROT_NONE,
  PROT_READ,
  PROT_WRITE,
  UFFD_API,
  UFFD_FEATURE_MINOR_SHMEM,
  UFFD_FEATURE_PAGEFAULT_FLAG_WP,
  UFFD_FEATURE_SIGBUS,
  UFFDIO_API,
  UFFDIO_CONTINUE,
  UFFDIO_COPY,
  UFFDIO_REGISTER,
  UFFDIO_REGISTER_MODE_MINOR,
  UFFDIO_REGISTER_MODE_MISSING,
  UFFDIO_REGISTER_MODE_WP,
} from "@uffd/kernel/uapi";
import { boot, page } from "../core/helpers.ts";

const PS = 4096;
const RW = PROT_READ | PROT_WRITE;
const WINDOW = 16 * PS;

/** A memfd of `pages` pages, every page written with its index + 1 except the holes. */
async function memfdPages(p: Process, pages: number, holes: readonly number[] = []): Promise<number> {
  const fd = await p.memfdCreate("fa");
  await p.ftruncate(fd, pages * PS);
  for (let i = 0; i < pages; i++) if (!holes.includes(i)) await p.pwrite(fd, page(i + 1), i * PS);
  return fd;
}

/** A free range of `pages` pages starting at a 64 KiB-aligned address. */
async function alignedFree(p: Process, pages: number): Promise<number> {
  const r = await p.mmap(0, pages * PS + WINDOW, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS);
  await p.munmap(r, pages * PS + WINDOW);
  return Math.ceil(r / WINDOW) * WINDOW;
}

async function amap(p: Process, pages: number, prot: number, flags: number, fd = -1, offset = 0): Promise<number> {
  return p.mmap(await alignedFree(p, pages), pages * PS, prot, flags | MAP_FIXED, fd, offset);
}

/** The probe's presence map: P for a present pte, . otherwise. */
const presence = (p: Process, addr: number, pages: number): string =>
  p
    .pagemap(addr, pages)
    .map((e) => (e.present ? "P" : "."))
    .join("");

const HOLES = [5, 20] as const;

async function uffdWith(p: Process, features: number, addr: number, len: number, mode: number): Promise<number> {
  const uffd = await p.userfaultfd(O_NONBLOCK);
  await p.ioctl(uffd, UFFDIO_API, { api: UFFD_API, features });
  await p.ioctl(uffd, UFFDIO_REGISTER, { range: { start: addr, len }, mode });
  return uffd;
}

describe("fault-around on shmem read faults (mm/memory.c:do_fault_around)", () => {
  it("a read fault maps the cached pages of the aligned 16-page window, skipping holes", async () => {
    const { k, p } = boot();
    const fd = await memfdPages(p, 40, HOLES);
    const a = await amap(p, 40, RW, MAP_SHARED, fd);
    await p.mainThread.read(a + 3 * PS, 1);
    expect(presence(p, a, 40)).toBe("PPPPP.PPPPPPPPPP........................");
    await p.munmap(a, 40 * PS);
    const b = await amap(p, 40, RW, MAP_SHARED, fd);
    await p.mainThread.read(b + 17 * PS, 1);
    expect(presence(p, b, 40)).toBe("................PPPP.PPPPPPPPPPP........");
    expect(p.pagemap(b + 16 * PS, 1)[0]).toMatchObject({ present: true, file: true });
    k.checkInvariants();
  });

  it("never on write faults, shared or private", async () => {
    const { k, p } = boot();
    const fd = await memfdPages(p, 40, HOLES);
    const a = await amap(p, 40, RW, MAP_SHARED, fd);
    await p.mainThread.write(a + 3 * PS, page(9, 1));
    expect(presence(p, a, 40)).toBe("...P....................................");
    const b = await amap(p, 40, RW, MAP_PRIVATE, fd);
    await p.mainThread.write(b + 3 * PS, page(9, 1));
    expect(presence(p, b, 40)).toBe("...P....................................");
    k.checkInvariants();
  });

  it("a private mapping's read fault maps the page-cache pages read-only; a COWed neighbour is kept", async () => {
    const { k, p } = boot();
    const fd = await memfdPages(p, 40, HOLES);
    const a = await amap(p, 40, RW, MAP_PRIVATE, fd);
    await p.mainThread.read(a + 3 * PS, 1);
    expect(presence(p, a, 40)).toBe("PPPPP.PPPPPPPPPP........................");
    expect(p.pagemap(a + 4 * PS, 1)[0]).toMatchObject({ present: true, file: true });
    // A write to a faulted-around page of a private mapping copies it (the pte was read-only).
    await p.mainThread.write(a + 4 * PS, page(7, 1));
    expect(p.pagemap(a + 4 * PS, 1)[0]).toMatchObject({ present: true, file: false });
    expect(Array.from(await p.pread(fd, 1, 4 * PS))).toEqual([5]);
    const b = await amap(p, 40, RW, MAP_PRIVATE, fd);
    await p.mainThread.write(b + 4 * PS, page(9, 1)); // COW first
    await p.mainThread.read(b + 3 * PS, 1);
    expect(presence(p, b, 40)).toBe("PPPPP.PPPPPPPPPP........................");
    expect(p.pagemap(b + 4 * PS, 1)[0]).toMatchObject({ file: false });
    k.checkInvariants();
  });

  it("the window starts at the vma start when that is later than the aligned index, and stops at the vma end", async () => {
    const { k, p } = boot();
    const fd = await memfdPages(p, 40, HOLES);
    const base = await alignedFree(p, 32);
    // vma at base+4 pages, 8 pages of the file from page 2: file page 5 (vma page 3) is a hole.
    let v = await p.mmap(base + 4 * PS, 8 * PS, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 2 * PS);
    await p.mainThread.read(v + PS, 1);
    expect(presence(p, base, 16)).toBe("....PPP.PPPP....");
    await p.munmap(v, 8 * PS);
    // vma at base+14: the window runs from the vma start for 16 ptes, past the aligned boundary.
    v = await p.mmap(base + 14 * PS, 8 * PS, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 2 * PS);
    await p.mainThread.read(v, 1);
    expect(presence(p, base, 32)).toBe("..............PPP.PPPP..........");
    await p.munmap(v, 8 * PS);
    // A fault at base+17 (the hole, allocated by ->fault) uses the aligned window 16..31, clipped.
    v = await p.mmap(base + 14 * PS, 8 * PS, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 2 * PS);
    await p.mainThread.read(v + 3 * PS, 1);
    expect(presence(p, base, 32)).toBe("................PPPPPP..........");
    k.checkInvariants();
  });

  it("stops at i_size", async () => {
    const { k, p } = boot();
    const fd = await memfdPages(p, 16);
    const a = await amap(p, 16, PROT_READ, MAP_SHARED, fd);
    await p.ftruncate(fd, 10 * PS);
    await p.mainThread.read(a + 3 * PS, 1);
    expect(presence(p, a, 16)).toBe("PPPPPPPPPP......");
    k.checkInvariants();
  });

  it("MISSING-only registration keeps it: the neighbours are mapped before the hole raises its userfault", async () => {
    for (const flags of [MAP_SHARED, MAP_PRIVATE]) {
      const { k, p } = boot();
      const fd = await memfdPages(p, 40, HOLES);
      const a = await amap(p, 40, RW, flags, fd);
      await uffdWith(p, UFFD_FEATURE_SIGBUS, a, 40 * PS, UFFDIO_REGISTER_MODE_MISSING);
      await expect(p.mainThread.read(a + 5 * PS, 1)).rejects.toBeInstanceOf(SignalError);
      expect(presence(p, a, 40)).toBe("PPPPP.PPPPPPPPPP........................");
      if (flags === MAP_SHARED) {
        await expect(p.mainThread.read(a + 20 * PS, 1)).rejects.toBeInstanceOf(SignalError);
        expect(presence(p, a, 40)).toBe("PPPPP.PPPPPPPPPPPPPP.PPPPPPPPPPP........");
      }
      k.checkInvariants();
    }
  });

  it("what a handler sees: a private mapping's faulted-around neighbour answers UFFDIO_COPY with EEXIST", async () => {
    // [host: page 1 cached, a MISSING read of hole page 0 maps page 1 read-only; COPY to page 1
    // is EEXIST (-17), COPY to page 0 succeeds]
    const { k, p } = boot();
    const fd = await p.memfdCreate("e");
    await p.ftruncate(fd, 16 * PS);
    await p.pwrite(fd, page(7), PS);
    const a = await amap(p, 16, RW, MAP_PRIVATE, fd);
    const uffd = await uffdWith(p, UFFD_FEATURE_SIGBUS, a, 16 * PS, UFFDIO_REGISTER_MODE_MISSING);
    await expect(p.mainThread.read(a, 1)).rejects.toBeInstanceOf(SignalError);
    expect(presence(p, a, 16)).toBe(".P..............");
    const c1 = { dst: a + PS, src: page(9), len: PS, mode: 0, copy: 0 };
    await expect(p.ioctl(uffd, UFFDIO_COPY, c1)).rejects.toMatchObject({ code: "EEXIST" });
    expect(c1.copy).toBe(-17);
    const c0 = { dst: a, src: page(9), len: PS, mode: 0, copy: 0 };
    await p.ioctl(uffd, UFFDIO_COPY, c0);
    expect(c0.copy).toBe(PS);
    k.checkInvariants();
  });

  it("not in vmas registered for WP (alone or with MISSING) or MINOR (uffd_disable_fault_around)", async () => {
    const { k, p } = boot();
    const fd = await memfdPages(p, 40, HOLES);
    for (const mode of [UFFDIO_REGISTER_MODE_WP, UFFDIO_REGISTER_MODE_WP | UFFDIO_REGISTER_MODE_MISSING]) {
      const a = await amap(p, 40, RW, MAP_SHARED, fd);
      const uffd = await uffdWith(p, UFFD_FEATURE_SIGBUS | UFFD_FEATURE_PAGEFAULT_FLAG_WP, a, 40 * PS, mode);
      await p.mainThread.read(a + 3 * PS, 1);
      expect(presence(p, a, 40)).toBe("...P....................................");
      await p.close(uffd);
      // Unregistered (the context is gone): fault-around is back.
      await p.mainThread.read(a + 9 * PS, 1);
      expect(presence(p, a, 40)).toBe("PPPPP.PPPPPPPPPP........................");
      await p.munmap(a, 40 * PS);
    }
    const a = await amap(p, 40, RW, MAP_SHARED, fd);
    const uffd = await uffdWith(p, UFFD_FEATURE_SIGBUS | UFFD_FEATURE_MINOR_SHMEM, a, 40 * PS, UFFDIO_REGISTER_MODE_MINOR);
    await expect(p.mainThread.read(a + 3 * PS, 1)).rejects.toBeInstanceOf(SignalError);
    expect(presence(p, a, 40)).toBe("........................................");
    await p.ioctl(uffd, UFFDIO_CONTINUE, { range: { start: a + 3 * PS, len: PS }, mode: 0, mapped: 0 });
    expect(presence(p, a, 40)).toBe("...P....................................");
    k.checkInvariants();
  });

  it("fallocated pages are !uptodate and skipped until written or faulted; read(2) leaves them so", async () => {
    const { k, p } = boot();
    const fd = await p.memfdCreate("falloc");
    await p.ftruncate(fd, 16 * PS);
    await p.fallocate(fd, 0, 0, 16 * PS);
    await p.pwrite(fd, page(7), 2 * PS);
    await p.pread(fd, PS, 4 * PS);
    let a = await amap(p, 16, PROT_READ, MAP_SHARED, fd);
    await p.mainThread.read(a + 3 * PS, 1);
    expect(presence(p, a, 16)).toBe("..PP............");
    await p.mainThread.read(a + 9 * PS, 1);
    expect(presence(p, a, 16)).toBe("..PP.....P......");
    await p.munmap(a, 16 * PS);
    a = await amap(p, 16, PROT_READ, MAP_SHARED, fd);
    await p.mainThread.read(a + 10 * PS, 1);
    expect(presence(p, a, 16)).toBe("..PP.....PP.....");
    expect(Array.from(await p.mainThread.read(a + 2 * PS, 2))).toEqual([7, 7]);
    k.checkInvariants();
  });

  it("skips ptes that are not none (a guard marker)", async () => {
    const { k, p } = boot();
    const fd = await memfdPages(p, 40, HOLES);
    const a = await amap(p, 40, RW, MAP_SHARED, fd);
    await p.madvise(a + 6 * PS, PS, MADV_GUARD_INSTALL);
    await p.mainThread.read(a + 3 * PS, 1);
    expect(presence(p, a, 40)).toBe("PPPPP..PPPPPPPPP........................");
    expect(p.pagemap(a + 6 * PS, 1)[0]).toMatchObject({ guard: true });
    k.checkInvariants();
  });

  it("shared anonymous memory (shmem) faults around too", async () => {
    const { k, p } = boot();
    const a = await amap(p, 32, RW, MAP_SHARED | MAP_ANONYMOUS);
    for (let i = 0; i < 32; i++) if (i !== 7) await p.mainThread.write(a + i * PS, page(1, 1));
    await p.madvise(a, 32 * PS, MADV_DONTNEED);
    expect(presence(p, a, 32)).toBe("................................");
    await p.mainThread.read(a + 3 * PS, 1);
    expect(presence(p, a, 32)).toBe("PPPPPPP.PPPPPPPP................");
    k.checkInvariants();
  });
});
