/**
 * mincore(2) conformance (mm/mincore.c). Vectors and errnos observed on the 6.18.44 host,
 * except where the simulation's synchronous swap writeback differs (noted per test).
 */
import { describe, expect, it } from "vitest";
import {
  MADV_GUARD_INSTALL,
  MADV_PAGEOUT,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  MAP_SHARED,
  PAGE_SIZE,
  PROT_NONE,
  PROT_READ,
  PROT_WRITE,
  UFFDIO_POISON,
  UFFDIO_REGISTER_MODE_MISSING,
  UFFDIO_REGISTER_MODE_WP,
  UFFDIO_WRITEPROTECT,
  UFFDIO_WRITEPROTECT_MODE_WP,
} from "@uffd/kernel/uapi";
import { boot, expectErrno } from "../core/helpers.ts";
import { fill, register, setup } from "../uffd/helpers.ts";

const PS = PAGE_SIZE;
const RW = PROT_READ | PROT_WRITE;
const ANON = MAP_PRIVATE | MAP_ANONYMOUS;

describe("mincore argument checks", () => {
  it("unaligned start EINVAL; a range beyond user space or not fully mapped ENOMEM; len 0 gives nothing [host]", async () => {
    const { k, p } = boot();
    const a = await p.mmap(0, 8 * PS, RW, ANON);
    await expectErrno(p.mincore(a + 1, PS), "EINVAL");
    expect(await p.mincore(a, 0)).toEqual(new Uint8Array(0));
    await expectErrno(p.mincore(0x10000, PS), "ENOMEM");
    await p.munmap(a + 4 * PS, PS);
    await expectErrno(p.mincore(a + 3 * PS, 3 * PS), "ENOMEM");
    await expectErrno(p.mincore(a, 2 ** 64 - PS), "ENOMEM");
    await expectErrno(p.mincore(0x800000000000, PS), "ENOMEM");
    k.checkInvariants();
  });

  it("a partial last page counts as a whole page", async () => {
    const { k, p } = boot();
    const a = await p.mmap(0, 2 * PS, RW, ANON);
    await p.mainThread.write(a + PS, fill(1, 1));
    expect(Array.from(await p.mincore(a, PS + 1))).toEqual([0, 1]);
    k.checkInvariants();
  });
});

describe("mincore vectors (mincore_pte_range)", () => {
  it("anon: written pages and the zero page are resident, untouched ones and PROT_NONE are not [host]", async () => {
    const { k, p } = boot();
    const a = await p.mmap(0, 4 * PS, RW, ANON);
    await p.mainThread.write(a, fill(1, 2 * PS));
    await p.mainThread.read(a + 2 * PS, 1);
    expect(Array.from(await p.mincore(a, 4 * PS))).toEqual([1, 1, 1, 0]);
    const none = await p.mmap(0, PS, PROT_NONE, ANON);
    expect(Array.from(await p.mincore(none, PS))).toEqual([0]);
    k.checkInvariants();
  });

  it("file vmas report the page cache, mapped or not, up to EOF; markers defer to the cache too [host]", async () => {
    const { k, p } = boot();
    const fd = await p.memfdCreate("w");
    await p.ftruncate(fd, 4 * PS);
    await p.pwrite(fd, fill(1, 1), PS);
    const w = await p.mmap(0, 4 * PS, PROT_READ, MAP_SHARED, fd, 0);
    expect(Array.from(await p.mincore(w, 4 * PS))).toEqual([0, 1, 0, 0]);
    const wp = await p.mmap(0, 4 * PS, RW, MAP_PRIVATE, fd, 0);
    expect(Array.from(await p.mincore(wp, 4 * PS))).toEqual([0, 1, 0, 0]);
    await p.madvise(w + 2 * PS, PS, MADV_GUARD_INSTALL);
    expect(Array.from(await p.mincore(w, 4 * PS))).toEqual([0, 1, 0, 0]);
    await p.pwrite(fd, fill(1, 1), 2 * PS);
    expect(Array.from(await p.mincore(w, 4 * PS))).toEqual([0, 1, 1, 0]);
    const big = await p.mmap(0, 8 * PS, PROT_READ, MAP_SHARED, fd, 0);
    expect(Array.from(await p.mincore(big, 8 * PS))).toEqual([0, 1, 1, 0, 0, 0, 0, 0]);
    k.checkInvariants();
  });

  it("anon guard and poison markers read as not resident; a shmem uffd-wp marker over a cached page as resident [host]", async () => {
    const { k, p, uffd } = await setup();
    const a = await p.mmap(0, 2 * PS, RW, ANON);
    await p.madvise(a, PS, MADV_GUARD_INSTALL);
    await register(p, uffd, a + PS, PS, UFFDIO_REGISTER_MODE_MISSING);
    await p.ioctl(uffd, UFFDIO_POISON, { range: { start: a + PS, len: PS }, mode: 0 });
    expect(Array.from(await p.mincore(a, 2 * PS))).toEqual([0, 0]);
    const s = await p.mmap(0, PS, RW, MAP_SHARED | MAP_ANONYMOUS);
    await p.mainThread.write(s, fill(1, 1));
    await register(p, uffd, s, PS, UFFDIO_REGISTER_MODE_WP);
    await p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: s, len: PS }, mode: UFFDIO_WRITEPROTECT_MODE_WP });
    await p.madvise(s, PS, 4 /* MADV_DONTNEED */);
    expect(p.pagemap(s, 1)[0]).toMatchObject({ present: false, swapped: true, uffdWp: true });
    expect(Array.from(await p.mincore(s, PS))).toEqual([1]);
    k.checkInvariants();
  });

  it("swapped out: not resident once the page left the swap cache (sync writeback; the host's async swap file still shows 1)", async () => {
    const { k, p } = boot(1, { swapPages: 64 });
    const a = await p.mmap(0, 2 * PS, RW, ANON);
    await p.mainThread.write(a, fill(1, 2 * PS));
    await p.madvise(a, PS, MADV_PAGEOUT);
    expect(Array.from(await p.mincore(a, 2 * PS))).toEqual([0, 1]);
    // A pipe's reference keeps the swapped-out page in the swap cache: resident.
    const [, w] = await p.pipe();
    await p.vmsplice(w, a + PS, PS);
    await p.madvise(a + PS, PS, MADV_PAGEOUT);
    expect(p.pagemap(a + PS, 1)[0]!.swapped).toBe(true);
    expect(Array.from(await p.mincore(a, 2 * PS))).toEqual([0, 1]);
    k.checkInvariants();
  });
});
