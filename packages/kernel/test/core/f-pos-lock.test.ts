/**
 * f_pos_lock (fs/file.c:fdget_pos()): read(2), write(2) and lseek(2) of a file with
 * FMODE_ATOMIC_POS hold file->f_pos_lock for the whole call, so a write(2) whose copy from user
 * memory sleeps on a userfault keeps the others waiting. open(2) of a regular file sets the mode
 * (fs/open.c:do_dentry_open()); memfd_create() does not (alloc_file_pseudo()), so a memfd's own
 * file takes no f_pos_lock, and its write(2) reads f_pos before it waits for the inode lock
 * (fs/read_write.c:ksys_write() works on a local copy). Host 6.18.44: a C probe (one CPU) saw
 * lseek/read/write of a memfd reopened through /proc/self/fd sleep in fdget_pos behind such a
 * write while pread and F_GET_SEALS answered, and lseek/read of the memfd itself answer at once;
 * the conformance scenarios reopen-fpos-lock, reopen-fpos-lock-fork and memfd-write-no-fpos-lock
 * (packages/conformance/corpus/files.scn) agree with this.
 */
import { describe, expect, it } from "vitest";
import { F_GET_SEALS, MAP_ANONYMOUS, MAP_PRIVATE, O_RDWR, SEEK_CUR, SEEK_SET, UFFDIO_COPY, UFFDIO_REGISTER_MODE_MISSING } from "@uffd/kernel/uapi";
import { fill, isBlocked, PS, register, RW, setup } from "../uffd/helpers.ts";

async function sleepingWrite(reopen: boolean) {
  const env = await setup();
  const { k, p, uffd } = env;
  const memfd = await p.memfdCreate("f");
  await p.ftruncate(memfd, 2 * PS);
  const fd = reopen ? await p.reopen(memfd, O_RDWR) : memfd;
  const src = await p.mmap(0, PS, RW, MAP_PRIVATE | MAP_ANONYMOUS);
  await register(p, uffd, src, PS, UFFDIO_REGISTER_MODE_MISSING);
  const holder = p.write(fd, { addr: src, length: PS });
  expect(await isBlocked(k, holder)).toBe(true);
  const resolve = (): Promise<number> => p.ioctl(uffd, UFFDIO_COPY, { dst: src, src: fill(0x42, PS), len: PS, mode: 0 });
  return { k, p, memfd, fd, holder, resolve };
}

describe("f_pos_lock", () => {
  it("a read(2) into user memory sleeping on a userfault holds the reopened file's f_pos_lock, not the inode lock, and returns the bytes a write put there meanwhile", async () => {
    const { k, p, uffd } = await setup();
    const memfd = await p.memfdCreate("f");
    await p.pwrite(memfd, fill(0x31, 2 * PS), 0);
    const fd = await p.reopen(memfd, O_RDWR);
    const dst = await p.mmap(0, PS, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    await register(p, uffd, dst, PS, UFFDIO_REGISTER_MODE_MISSING);
    const reader = p.readUser(fd, { addr: dst, length: PS });
    expect(await isBlocked(k, reader)).toBe(true);
    const seek = p.lseek(fd, 0, SEEK_CUR);
    expect(await isBlocked(k, seek)).toBe(true);
    // shmem_file_read_iter() takes no inode lock: a write of the memfd's own file goes through.
    expect(await p.write(memfd, fill(0x32, PS))).toBe(PS);
    await p.ioctl(uffd, UFFDIO_COPY, { dst, src: fill(0x33, PS), len: PS, mode: 0 });
    expect(await reader).toBe(PS);
    expect(await seek).toBe(PS);
    // The read copied the page as the write left it [host: the conformance scenario
    // reopen-read-holds-fpos-lock reads 0x32 there].
    expect(Array.from(await p.spawnThread().read(dst, 1))).toEqual([0x32]);
  });

  it("a reopened memfd: lseek, read and write wait behind a write sleeping on a userfault; pread, fcntl and the memfd's own file do not", async () => {
    const { k, p, memfd, fd, holder, resolve } = await sleepingWrite(true);
    const seek = p.lseek(fd, 0, SEEK_CUR);
    const read = p.read(fd, PS);
    const write = p.write(fd, fill(7, PS));
    for (const w of [seek, read, write]) expect(await isBlocked(k, w)).toBe(true);
    expect(Array.from(await p.pread(fd, 1, 0))).toEqual([0]);
    expect(await p.fcntl(fd, F_GET_SEALS)).toBe(1);
    expect(await p.lseek(memfd, PS, SEEK_SET)).toBe(PS);
    await resolve();
    expect(await holder).toBe(PS);
    // In the order they queued: lseek sees 4096, read takes the second page, write goes after it.
    expect(await seek).toBe(PS);
    expect(Array.from(await read).filter((_, i) => i % PS === 0)).toEqual([0]);
    expect(await write).toBe(PS);
    expect(await p.lseek(fd, 0, SEEK_CUR)).toBe(3 * PS);
    expect(Array.from(await p.pread(fd, 3 * PS, 0)).filter((_, i) => i % PS === 0)).toEqual([0x42, 0, 7]);
  });

  it("a memfd's own file: lseek answers at once, and a second write(2) writes at the offset it read before waiting for the inode lock", async () => {
    const { k, p, fd, holder, resolve } = await sleepingWrite(false);
    expect(await p.lseek(fd, 0, SEEK_CUR)).toBe(0);
    const second = p.write(fd, fill(0x71, PS));
    expect(await isBlocked(k, second)).toBe(true);
    await resolve();
    expect(await holder).toBe(PS);
    expect(await second).toBe(PS);
    // Both wrote at offset 0; f_pos ends one page on [host].
    expect(await p.lseek(fd, 0, SEEK_CUR)).toBe(PS);
    expect(Array.from(await p.pread(fd, 2 * PS, 0)).filter((_, i) => i % PS === 0)).toEqual([0x71, 0]);
  });
});
