// memfd seals (mm/memfd.c:memfd_add_seals(), memfd_check_seals_mmap(), shmem_setattr(),
// shmem_fallocate(), shmem_file_write_iter()). Every errno below was observed on the 6.18 host.
import { describe, expect, it } from "vitest";
import {
  F_ADD_SEALS,
  F_GET_SEALS,
  F_SEAL_EXEC,
  F_SEAL_FUTURE_WRITE,
  F_SEAL_GROW,
  F_SEAL_SEAL,
  F_SEAL_SHRINK,
  F_SEAL_WRITE,
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  MAP_PRIVATE,
  MAP_SHARED,
  MFD_ALLOW_SEALING,
  MFD_NOEXEC_SEAL,
  O_RDONLY,
  PROT_READ,
  PROT_WRITE,
} from "@uffd/kernel/uapi";
import { boot, expectErrno, page } from "./helpers.ts";

const RW = PROT_READ | PROT_WRITE;

describe("memfd seals", () => {
  it("F_SEAL_EXEC on an executable memfd implies the write seals, checked like F_SEAL_WRITE (EBUSY with a shared writable mapping); not on a MFD_NOEXEC_SEAL one", async () => {
    const { p } = boot();
    const fd = await p.memfdCreate("x", MFD_ALLOW_SEALING);
    await p.ftruncate(fd, 4096);
    const m = await p.mmap(0, 4096, RW, MAP_SHARED, fd, 0);
    // [host: EBUSY, then the four write seals with it; the conformance scenario memfd-seal-exec-implies-write]
    await expectErrno(p.fcntl(fd, F_ADD_SEALS, F_SEAL_EXEC), "EBUSY");
    await p.munmap(m, 4096);
    expect(await p.fcntl(fd, F_ADD_SEALS, F_SEAL_EXEC)).toBe(0);
    expect(await p.fcntl(fd, F_GET_SEALS)).toBe(F_SEAL_EXEC | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_FUTURE_WRITE);
    await expectErrno(p.pwrite(fd, new Uint8Array(1), 0), "EPERM");
    // mm/memfd.c: the implication needs i_mode & 0111, which MFD_NOEXEC_SEAL cleared.
    const nx = await p.memfdCreate("nx", MFD_NOEXEC_SEAL);
    expect(await p.fcntl(nx, F_ADD_SEALS, F_SEAL_EXEC)).toBe(0);
    expect(await p.fcntl(nx, F_GET_SEALS)).toBe(F_SEAL_EXEC);
  });

  it("F_SEAL_GROW is checked page by page (shmem_write_begin()): a write running past i_size is short, one starting there EPERM", async () => {
    const { p } = boot();
    const fd = await p.memfdCreate("g", MFD_ALLOW_SEALING);
    await p.ftruncate(fd, 2 * 4096);
    await p.fcntl(fd, F_ADD_SEALS, F_SEAL_GROW);
    // [host: write(2) of 3 pages at 0 returns 8192; the conformance scenario memfd-seals agrees]
    expect(await p.write(fd, new Uint8Array(3 * 4096).fill(1))).toBe(2 * 4096);
    expect(await p.pwrite(fd, new Uint8Array(4096).fill(2), 4096 + 100)).toBe(4096 - 100);
    await expectErrno(p.pwrite(fd, new Uint8Array(1), 2 * 4096), "EPERM");
  });

  it("without MFD_ALLOW_SEALING a memfd starts with F_SEAL_SEAL and refuses seals (EPERM)", async () => {
    const { p } = boot();
    const fd = await p.memfdCreate("a");
    expect(await p.fcntl(fd, F_GET_SEALS)).toBe(F_SEAL_SEAL);
    await expectErrno(p.fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE), "EPERM");
    const nx = await p.memfdCreate("d", MFD_NOEXEC_SEAL);
    expect(await p.fcntl(nx, F_GET_SEALS)).toBe(F_SEAL_EXEC);
  });

  it("checks: read-only fd EPERM, unknown seal EINVAL, F_SEAL_WRITE with a writable shared mapping EBUSY", async () => {
    const { k, p } = boot();
    const fd = await p.memfdCreate("b", MFD_ALLOW_SEALING);
    expect(await p.fcntl(fd, F_GET_SEALS)).toBe(0);
    await p.ftruncate(fd, 2 * 4096);
    const ro = await p.reopen(fd, O_RDONLY);
    await expectErrno(p.fcntl(ro, F_ADD_SEALS, F_SEAL_WRITE), "EPERM");
    await expectErrno(p.fcntl(fd, F_ADD_SEALS, 0x40), "EINVAL");
    const m = await p.mmap(0, 4096, RW, MAP_SHARED, fd);
    await expectErrno(p.fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE), "EBUSY");
    expect(await p.fcntl(fd, F_GET_SEALS)).toBe(0);
    await p.munmap(m, 4096);
    expect(await p.fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SHRINK)).toBe(0);
    expect(await p.fcntl(fd, F_GET_SEALS)).toBe(F_SEAL_WRITE | F_SEAL_SHRINK);
    k.checkInvariants();
  });

  it("write and shrink seals: no shared writable mapping, no pwrite, no shrink, no hole punch; grow and private COW still work", async () => {
    const { k, p } = boot();
    const fd = await p.memfdCreate("b", MFD_ALLOW_SEALING);
    await p.pwrite(fd, page(1, 8192), 0);
    await p.fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SHRINK);
    await expectErrno(p.mmap(0, 4096, RW, MAP_SHARED, fd), "EPERM");
    await expectErrno(p.pwrite(fd, page(2, 1), 0), "EPERM");
    await expectErrno(p.ftruncate(fd, 4096), "EPERM");
    await p.ftruncate(fd, 16384);
    await expectErrno(p.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096), "EPERM");
    await p.fallocate(fd, 0, 0, 4096);
    // A read-only shared mapping loses VM_MAYWRITE, so it can never become writable.
    const r = await p.mmap(0, 4096, PROT_READ, MAP_SHARED, fd);
    expect(p.smaps().find((v) => v.start === r)!.vmFlags).not.toContain("mw");
    await expectErrno(p.mprotect(r, 4096, RW), "EACCES");
    const priv = await p.mmap(0, 4096, RW, MAP_PRIVATE, fd);
    await p.mainThread.write(priv, page(9, 1));
    expect(await p.pread(fd, 1, 0)).toEqual(new Uint8Array([1]));
    expect(await p.fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL)).toBe(0);
    await expectErrno(p.fcntl(fd, F_ADD_SEALS, F_SEAL_GROW), "EPERM");
    expect(await p.fcntl(fd, F_GET_SEALS)).toBe(F_SEAL_SEAL | F_SEAL_WRITE | F_SEAL_SHRINK);
    k.checkInvariants();
  });

  it("F_SEAL_GROW refuses writes and allocation past i_size, but not within it", async () => {
    const { p } = boot();
    const fd = await p.memfdCreate("c", MFD_ALLOW_SEALING);
    await p.ftruncate(fd, 4096);
    await p.fcntl(fd, F_ADD_SEALS, F_SEAL_GROW);
    await expectErrno(p.pwrite(fd, page(1, 1), 4096), "EPERM");
    expect(await p.pwrite(fd, page(1, 1), 10)).toBe(1);
    await expectErrno(p.fallocate(fd, 0, 0, 8192), "EPERM");
  });

  it("F_SEAL_FUTURE_WRITE is allowed with existing writable mappings but refuses new shared writable ones", async () => {
    const { k, p } = boot();
    const fd = await p.memfdCreate("e", MFD_ALLOW_SEALING);
    await p.ftruncate(fd, 4096);
    await p.mmap(0, 4096, RW, MAP_SHARED, fd);
    expect(await p.fcntl(fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE)).toBe(0);
    await expectErrno(p.mmap(0, 4096, RW, MAP_SHARED, fd), "EPERM");
    k.checkInvariants();
  });

  it("seal fcntls on a pipe: the read end is EPERM (not writable), the write end EINVAL (not a memfd)", async () => {
    const { p } = boot();
    const [r, w] = await p.pipe();
    await expectErrno(p.fcntl(r, F_ADD_SEALS, 1), "EPERM");
    await expectErrno(p.fcntl(w, F_ADD_SEALS, 1), "EINVAL");
    await expectErrno(p.fcntl(r, F_GET_SEALS), "EINVAL");
  });
});
