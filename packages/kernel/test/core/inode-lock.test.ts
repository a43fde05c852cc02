/**
 * The shmem inode lock (i_rwsem). mm/shmem.c:shmem_file_write_iter() holds inode_lock() across
 * the whole write, generic_perform_write() included, so while its copy from user memory sleeps
 * on a userfault every other taker sleeps too: do_truncate() (ftruncate), shmem_fallocate()
 * (fallocate, and MADV_REMOVE through vfs_fallocate()), another write, mm/memfd.c:
 * memfd_add_seals() (F_ADD_SEALS) and shmem_file_llseek() for SEEK_DATA/SEEK_HOLE. read(2)
 * (shmem_file_read_iter()) and the other whences take no lock. up_write() wakes the first
 * waiter only (kernel/locking/rwsem.c:rwsem_mark_wake(), all of them writers), so they run in
 * arrival order. Host 6.18.44: the conformance engine's scenarios shmem-write-holds-inode-lock and
 * shmem-write-lock-remove (packages/conformance/corpus/known.scn) agree with this, and a C probe
 * (one CPU) saw F_ADD_SEALS, SEEK_DATA and SEEK_HOLE sleep until the write's userfault was
 * resolved while F_GET_SEALS answered at once.
 */
import { describe, expect, it } from "vitest";
import {
  F_ADD_SEALS,
  F_GET_SEALS,
  F_SEAL_GROW,
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  MADV_REMOVE,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  MAP_SHARED,
  MFD_ALLOW_SEALING,
  SEEK_DATA,
  SEEK_HOLE,
  UFFDIO_COPY,
  UFFDIO_REGISTER_MODE_MISSING,
} from "@uffd/kernel/uapi";
import { fill, isBlocked, PS, register, RW, setup } from "../uffd/helpers.ts";

describe("the shmem inode lock", () => {
  it("a write sleeping on a userfault holds it: truncate, fallocate, MADV_REMOVE, writes, F_ADD_SEALS and SEEK_DATA/HOLE wait, in order", async () => {
    const { k, p, uffd } = await setup();
    const fd = await p.memfdCreate("f", MFD_ALLOW_SEALING);
    await p.ftruncate(fd, 4 * PS);
    const m = await p.mmap(0, 4 * PS, RW, MAP_SHARED, fd, 0);
    const src = await p.mmap(0, PS, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    await register(p, uffd, src, PS, UFFDIO_REGISTER_MODE_MISSING);
    const order: string[] = [];
    const track = <T>(name: string, pr: Promise<T>): Promise<T> => pr.then((v) => (order.push(name), v));
    const holder = track("pwrite-user", p.pwrite(fd, { addr: src, length: PS }, 0));
    expect(await isBlocked(k, holder)).toBe(true);
    const waiters = [
      track("pwrite", p.pwrite(fd, fill(7, PS), PS)),
      track("write", p.write(fd, fill(8, PS))),
      track("ftruncate", p.ftruncate(fd, 3 * PS)),
      track("fallocate", p.fallocate(fd, 0, 0, 4 * PS)),
      track("punch", p.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 3 * PS, PS)),
      track("madv-remove", p.madvise(m + 2 * PS, PS, MADV_REMOVE)),
      track("add-seals", p.fcntl(fd, F_ADD_SEALS, F_SEAL_GROW)),
      track("seek-data", p.lseek(fd, 0, SEEK_DATA)),
      track("seek-hole", p.lseek(fd, 0, SEEK_HOLE)),
    ];
    for (const w of waiters) expect(await isBlocked(k, w)).toBe(true);
    // No inode lock for these: they answer at once.
    expect(Array.from(await p.pread(fd, 1, PS))).toEqual([0]);
    expect(await p.fcntl(fd, F_GET_SEALS)).toBe(0);
    expect(order).toEqual([]);
    await p.ioctl(uffd, UFFDIO_COPY, { dst: src, src: fill(9), len: PS, mode: 0, copy: 0 });
    expect(await holder).toBe(PS);
    await Promise.all(waiters);
    // Each finished in the order it queued for the lock (madvise() returns after its walk goes
    // on to the end of the range, so it resolves last; it punched page 2 in its turn).
    expect(order).toEqual(["pwrite-user", "pwrite", "write", "ftruncate", "fallocate", "punch", "add-seals", "seek-data", "seek-hole", "madv-remove"]);
    // write(2) at file offset 0 after pwrite-user: it overwrote page 0 with 8s.
    expect([...(await p.pread(fd, 4 * PS, 0))].filter((_, i) => i % PS === 0)).toEqual([8, 7, 0, 0]);
    expect(await p.fcntl(fd, F_GET_SEALS)).toBe(F_SEAL_GROW);
    k.checkInvariants();
  });
});
