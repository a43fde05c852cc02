// memfd / shmem: faults through the page cache (mm/shmem.c:shmem_fault()), MAP_PRIVATE COW
// (mm/memory.c:do_cow_fault()), i_size (SIGBUS beyond it), truncate and hole punch, and the file
// syscalls. Errnos as observed on the 6.18 reference host.
import { describe, expect, it } from "vitest";
import { SignalError } from "@uffd/kernel";
import {
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  FALLOC_FL_ZERO_RANGE,
  MAP_PRIVATE,
  MAP_SHARED,
  MFD_CLOEXEC,
  MFD_HUGETLB,
  O_RDONLY,
  PROT_READ,
  PROT_WRITE,
  SEEK_DATA,
  SEEK_HOLE,
  SEEK_SET,
} from "@uffd/kernel/uapi";
import { boot, expectErrno, page } from "./helpers.ts";

const RW = PROT_READ | PROT_WRITE;

describe("shmem faults", () => {
  it("a shared mapping maps page-cache pages: writes show through the fd and through a second mapping", async () => {
    const { k, p } = boot();
    const fd = await p.memfdCreate("m");
    await p.ftruncate(fd, 2 * 4096);
    const a = await p.mmap(0, 2 * 4096, RW, MAP_SHARED, fd);
    const b = await p.mmap(0, 2 * 4096, RW, MAP_SHARED, fd);
    await p.mainThread.write(a + 4096 + 10, page(7, 3));
    expect(await p.pread(fd, 3, 4096 + 10)).toEqual(page(7, 3));
    expect(await p.mainThread.read(b + 4096 + 10, 3)).toEqual(page(7, 3));
    const [ea] = p.pagemap(a + 4096, 1);
    const [eb] = p.pagemap(b + 4096, 1);
    // Mapped twice: file page, not "exclusively mapped" (bit 56 = mapcount 1) [host: F1 X0].
    expect(ea).toMatchObject({ present: true, file: true, exclusive: false });
    expect(eb!.pfn).toBe(ea!.pfn);
    expect(k.kpagecount(ea!.pfn!)).toBe(2);
    k.checkInvariants();
  });

  it("a write to a MAP_PRIVATE mapping copies the page into anon memory and leaves the file untouched", async () => {
    const { k, p } = boot();
    const fd = await p.memfdCreate("m");
    await p.pwrite(fd, page(1), 0);
    const priv = await p.mmap(0, 4096, RW, MAP_PRIVATE, fd);
    expect(await p.mainThread.read(priv, 1)).toEqual(new Uint8Array([1]));
    expect(p.pagemap(priv, 1)[0]).toMatchObject({ present: true, file: true });
    await p.mainThread.write(priv, page(2, 1));
    expect(p.pagemap(priv, 1)[0]).toMatchObject({ present: true, file: false, exclusive: true });
    expect(await p.pread(fd, 1, 0)).toEqual(new Uint8Array([1]));
    k.checkInvariants();
  });

  it("an access beyond i_size is SIGBUS", async () => {
    const { k, p } = boot();
    const fd = await p.memfdCreate("m");
    await p.ftruncate(fd, 4096);
    const a = await p.mmap(0, 2 * 4096, RW, MAP_SHARED, fd);
    await expect(p.mainThread.read(a + 4096, 1)).rejects.toMatchObject({ signal: "SIGBUS", address: a + 4096 });
    await expect(p.mainThread.read(a + 4096, 1)).rejects.toBeInstanceOf(SignalError);
    k.checkInvariants();
  });

  it("ftruncate zaps mappings beyond the new size, private COW copies included", async () => {
    const { k, p } = boot();
    const fd = await p.memfdCreate("m");
    await p.ftruncate(fd, 2 * 4096);
    const shared = await p.mmap(0, 2 * 4096, RW, MAP_SHARED, fd);
    const priv = await p.mmap(0, 2 * 4096, RW, MAP_PRIVATE, fd);
    await p.mainThread.write(shared + 4096, page(5, 1));
    await p.mainThread.write(priv + 4096, page(6, 1));
    await p.ftruncate(fd, 4096);
    // [host] the private COW page beyond EOF reads 0 in pagemap after truncate.
    expect(p.pagemap(priv + 4096, 1)[0]!.present).toBe(false);
    expect(p.pagemap(shared + 4096, 1)[0]!.present).toBe(false);
    await expect(p.mainThread.read(shared + 4096, 1)).rejects.toMatchObject({ signal: "SIGBUS" });
    await p.ftruncate(fd, 2 * 4096);
    expect(await p.mainThread.read(shared + 4096, 1)).toEqual(new Uint8Array([0]));
    k.checkInvariants();
  });

  it("FALLOC_FL_PUNCH_HOLE zaps shared mappings of the hole but keeps private COW copies", async () => {
    const { k, p } = boot();
    const fd = await p.memfdCreate("m");
    await p.pwrite(fd, page(1, 3 * 4096), 0);
    const shared = await p.mmap(0, 3 * 4096, RW, MAP_SHARED, fd);
    const priv = await p.mmap(0, 3 * 4096, RW, MAP_PRIVATE, fd);
    await p.mainThread.read(shared + 4096, 1);
    await p.mainThread.write(priv + 4096, page(9, 1));
    await p.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4096, 4096);
    expect(p.pagemap(shared + 4096, 1)[0]!.present).toBe(false);
    expect(await p.lseek(fd, 0, SEEK_HOLE)).toBe(4096);
    expect(await p.mainThread.read(priv + 4096, 1)).toEqual(new Uint8Array([9]));
    // Reading the hole through the shared mapping allocates a fresh zero page in the cache.
    expect(await p.mainThread.read(shared + 4096, 4096)).toEqual(page(0));
    expect(await p.lseek(fd, 0, SEEK_HOLE)).toBe(3 * 4096);
    k.checkInvariants();
  });

  it("a partial-page punch zeroes the bytes without removing the page", async () => {
    const { k, p } = boot();
    const fd = await p.memfdCreate("m");
    await p.pwrite(fd, page(1, 4096), 0);
    await p.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 100, 50);
    const got = await p.pread(fd, 4096, 0);
    expect(got.subarray(0, 100)).toEqual(page(1, 100));
    expect(got.subarray(100, 150)).toEqual(page(0, 50));
    expect(got.subarray(150)).toEqual(page(1, 4096 - 150));
    expect(await p.lseek(fd, 0, SEEK_DATA)).toBe(0);
    k.checkInvariants();
  });

  it("shared anonymous memory is freed once the last mapping goes away", async () => {
    const { k, p } = boot();
    const a = await p.mmap(0, 4096, RW, MAP_SHARED | 0x20);
    await p.mainThread.write(a, page(1));
    const pfn = p.pagemap(a, 1)[0]!.pfn!;
    expect(k.kpageflags(pfn)).toMatchObject({ anon: false, lru: true });
    await p.munmap(a, 4096);
    expect(k.kpagecount(pfn)).toBe(0);
    k.checkInvariants();
  });
});

describe("memfd syscalls [errnos as on the 6.18 host]", () => {
  it("memfd_create rejects unknown flags and (in the simulation) MFD_HUGETLB with EINVAL", async () => {
    const { p } = boot();
    await expectErrno(p.memfdCreate("z", 0x100), "EINVAL");
    await expectErrno(p.memfdCreate("z", MFD_HUGETLB), "EINVAL");
    await expectErrno(p.memfdCreate("a".repeat(250)), "EINVAL");
    expect(await p.memfdCreate("a".repeat(249), MFD_CLOEXEC)).toBe(0);
  });

  it("lseek SEEK_DATA / SEEK_HOLE follow page-cache presence", async () => {
    const { p } = boot();
    const fd = await p.memfdCreate("x");
    await p.ftruncate(fd, 5 * 4096);
    await p.pwrite(fd, page(1), 4096);
    await p.pwrite(fd, page(1, 10), 3 * 4096 + 5);
    expect(await p.lseek(fd, 0, SEEK_DATA)).toBe(4096);
    expect(await p.lseek(fd, 4096, SEEK_HOLE)).toBe(8192);
    expect(await p.lseek(fd, 8192, SEEK_DATA)).toBe(12288);
    await expectErrno(p.lseek(fd, 16384, SEEK_DATA), "ENXIO");
    await expectErrno(p.lseek(fd, 20480, SEEK_HOLE), "ENXIO");
    expect(await p.lseek(fd, 16384, SEEK_HOLE)).toBe(16384);
    await expectErrno(p.lseek(fd, -1, SEEK_SET), "EINVAL");
    await expectErrno(p.lseek(fd, 0, 9), "EINVAL");
  });

  it("fallocate and ftruncate reject bad modes, lengths and fds", async () => {
    const { p } = boot();
    const fd = await p.memfdCreate("x");
    await expectErrno(p.fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, 4096), "EOPNOTSUPP");
    await expectErrno(p.fallocate(fd, 0, 0, 0), "EINVAL");
    await expectErrno(p.fallocate(fd, FALLOC_FL_ZERO_RANGE, 0, 4096), "EOPNOTSUPP");
    await expectErrno(p.fallocate(fd, 0x100, 0, 4096), "EOPNOTSUPP");
    await expectErrno(p.ftruncate(fd, -1), "EINVAL");
    await expectErrno(p.ftruncate(99, 1), "EBADF");
    const ro = await p.reopen(fd, O_RDONLY);
    await expectErrno(p.pwrite(ro, page(1, 1), 0), "EBADF");
    await expectErrno(p.ftruncate(ro, 1), "EINVAL");
    await expectErrno(p.fallocate(ro, 0, 0, 1), "EBADF");
    await expectErrno(p.pread(fd, 1, -1), "EINVAL");
  });

  it("fallocate allocates pages and grows i_size unless FALLOC_FL_KEEP_SIZE", async () => {
    const { p } = boot();
    const fd = await p.memfdCreate("x");
    await p.fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 4096);
    expect(await p.lseek(fd, 0, 2)).toBe(0);
    await p.fallocate(fd, 0, 0, 8192);
    expect(await p.lseek(fd, 0, 2)).toBe(8192);
    expect(await p.lseek(fd, 0, SEEK_DATA)).toBe(0);
  });

  it("pread and pwrite move bytes to and from user memory (kernel-mode copies)", async () => {
    const { k, p } = boot();
    const fd = await p.memfdCreate("x");
    const buf = await p.mmap(0, 2 * 4096, RW, MAP_PRIVATE | 0x20);
    await p.mainThread.write(buf, page(0x41, 6000));
    expect(await p.pwrite(fd, { addr: buf, length: 6000 }, 100)).toBe(6000);
    // i_size is 6100: a read at 4096 returns the 2004 bytes up to it.
    await p.mainThread.write(buf + 4096, page(0x55));
    expect(await p.pread(fd, { addr: buf + 4096, length: 4096 }, 4096)).toBe(2004);
    const back = await p.mainThread.read(buf + 4096, 4096);
    expect(back.subarray(0, 2004)).toEqual(page(0x41, 2004));
    expect(back.subarray(2004)).toEqual(page(0x55, 4096 - 2004));
    await expectErrno(p.pread(fd, { addr: 0x10000, length: 10 }, 0), "EFAULT");
    k.checkInvariants();
  });
});
