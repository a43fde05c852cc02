/**
 * memfd files: an open file on a shmem inode. Mirrors mm/memfd.c:memfd_create() and the shmem
 * file operations of mm/shmem.c: read/write through the page cache (holes read as zeros without
 * allocating), ftruncate (truncate_pagecache(): mappings beyond the new end are zapped, private
 * COW copies included), fallocate (allocation, or FALLOC_FL_PUNCH_HOLE, which zaps shared
 * mappings of the hole but leaves private COW copies), and lseek with SEEK_DATA / SEEK_HOLE.
 */
import type { Process } from "../kernel/process.ts";
import { ZAP_DEFAULT, unmapMappingRange } from "../mm/memory.ts";
import { PG } from "../mm/folio.ts";
import { shmemAllocPage, shmemDeleteEntry, shmemFindPage, ShmemInode } from "../mm/shmem.ts";
import { ErrnoError } from "../uapi/errno.ts";
import {
  F_ADD_SEALS,
  F_GET_SEALS,
  F_SEAL_EXEC,
  F_SEAL_FUTURE_WRITE,
  F_SEAL_GROW,
  F_SEAL_SEAL,
  F_SEAL_SHRINK,
  F_SEAL_WRITE,
  MFD_ALLOW_SEALING,
  MFD_CLOEXEC,
  MFD_EXEC,
  MFD_HUGETLB,
  MFD_NOEXEC_SEAL,
  O_CLOEXEC,
  O_RDWR,
  SEEK_CUR,
  SEEK_DATA,
  SEEK_END,
  SEEK_HOLE,
  SEEK_SET,
} from "../uapi/fcntl.ts";
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, PAGE_SIZE } from "../uapi/mman.ts";
import { VM_SHARED, VM_WRITE } from "../mm/vma.ts";
import { type FileOps, OpenFile } from "./file.ts";

/** MAX_LFS_FILESIZE on 64-bit. */
export const MAX_LFS_FILESIZE = Number.MAX_SAFE_INTEGER;
const MFD_NAME_MAX_LEN = 249;

/** A shmem-backed file (memfd, or the inode behind MAP_SHARED|MAP_ANONYMOUS). */
export class ShmemFileOps implements FileOps {
  readonly inode: ShmemInode;
  readonly name: string;
  readonly #release: (inode: ShmemInode) => void;

  constructor(inode: ShmemInode, release: (inode: ShmemInode) => void) {
    this.inode = inode;
    this.name = `/memfd:${inode.name} (deleted)`;
    this.#release = release;
    inode.openFiles++;
  }

  async read(file: OpenFile, proc: Process, length: number): Promise<Uint8Array> {
    const data = shmemRead(proc, this.inode, file.pos, length);
    file.pos += data.length;
    return data;
  }

  /**
   * write(2): fs/read_write.c:ksys_write() reads f_pos into a local before vfs_write() and stores
   * the local back after, so a write that waited for the inode lock writes at the offset the file
   * had when the call began, not the one it has when it gets the lock [host: two write(2)s of one
   * page on one memfd, the first asleep on a userfault: both write at 0, f_pos ends at 4096].
   */
  async write(file: OpenFile, proc: Process, data: Uint8Array): Promise<number> {
    const pos = file.pos;
    const unlock = await inodeLock(this.inode);
    try {
      const n = shmemWrite(proc, this.inode, pos, data);
      file.pos = pos + n;
      return n;
    } finally {
      unlock();
    }
  }

  /** write(2) from user memory (see shmemWriteUser()), under the inode lock; f_pos as write(). */
  async writeUser(file: OpenFile, proc: Process, addr: number, length: number): Promise<number> {
    const pos = file.pos;
    const unlock = await inodeLock(this.inode);
    try {
      const n = await shmemWriteUser(proc, this.inode, pos, addr, length, "write");
      file.pos = pos + n;
      return n;
    } finally {
      unlock();
    }
  }

  /** F_ADD_SEALS (the caller checked FMODE_WRITE): memfd_add_seals() takes the inode lock after checking the seal bits. */
  async addSeals(file: OpenFile, seals: number): Promise<number> {
    if ((seals & ~F_ALL_SEALS) !== 0) throw new ErrnoError("EINVAL", "fcntl");
    const unlock = await inodeLock(this.inode);
    try {
      memfdAddSeals(file, this.inode, seals);
      return 0;
    } finally {
      unlock();
    }
  }

  fcntl(file: OpenFile, cmd: number, arg: number): number | undefined {
    if (cmd === F_GET_SEALS) return this.inode.seals;
    if (cmd === F_ADD_SEALS) {
      memfdAddSeals(file, this.inode, arg);
      return 0;
    }
    return undefined;
  }

  release(): void {
    this.inode.openFiles--;
    this.#release(this.inode);
  }
}

const F_ALL_SEALS = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_FUTURE_WRITE | F_SEAL_EXEC;

/**
 * Mirrors mm/memfd.c:memfd_add_seals(): the fd must be writable (EPERM), the seals known (EINVAL),
 * F_SEAL_SEAL not set yet (EPERM), and F_SEAL_WRITE needs no writable shared mapping (EBUSY).
 */
function memfdAddSeals(file: OpenFile, inode: ShmemInode, seals: number): void {
  if (!file.writable) throw new ErrnoError("EPERM", "fcntl");
  if ((seals & ~F_ALL_SEALS) !== 0) throw new ErrnoError("EINVAL", "fcntl");
  if ((inode.seals & F_SEAL_SEAL) !== 0) throw new ErrnoError("EPERM", "fcntl");
  // F_SEAL_EXEC on an executable memfd implies the write seals (W^X), before the F_SEAL_WRITE
  // check below [host: F_SEAL_EXEC with a shared writable mapping is EBUSY; without one, a later
  // write is EPERM].
  if ((seals & F_SEAL_EXEC) !== 0 && inode.executable) seals |= F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_FUTURE_WRITE;
  if ((seals & F_SEAL_WRITE) !== 0 && (inode.seals & F_SEAL_WRITE) === 0) {
    for (const vma of inode.mappings) {
      if ((vma.flags & (VM_SHARED | VM_WRITE)) === (VM_SHARED | VM_WRITE)) throw new ErrnoError("EBUSY", "fcntl");
    }
  }
  inode.seals |= seals;
}

/** The initial seals of a new memfd (mm/memfd.c:memfd_create()). */
export function memfdInitialSeals(flags: number): number {
  if ((flags & MFD_NOEXEC_SEAL) !== 0) return F_SEAL_EXEC;
  return (flags & MFD_ALLOW_SEALING) !== 0 ? 0 : F_SEAL_SEAL;
}

/** memfd_create() argument checks; returns the O_ flags of the new fd. */
export function checkMemfdCreate(name: string, flags: number): number {
  if ((flags & ~(MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_HUGETLB | MFD_NOEXEC_SEAL | MFD_EXEC)) !== 0) throw new ErrnoError("EINVAL", "memfd_create");
  if ((flags & MFD_NOEXEC_SEAL) !== 0 && (flags & MFD_EXEC) !== 0) throw new ErrnoError("EINVAL", "memfd_create");
  if (new TextEncoder().encode(name).length > MFD_NAME_MAX_LEN) throw new ErrnoError("EINVAL", "memfd_create");
  // Divergence from Linux: no hugetlbfs in the simulation, so MFD_HUGETLB is refused.
  if ((flags & MFD_HUGETLB) !== 0) throw new ErrnoError("EINVAL", "memfd_create");
  return O_RDWR | ((flags & MFD_CLOEXEC) !== 0 ? O_CLOEXEC : 0);
}

/** Reads [pos, pos+length) clipped to i_size; holes read as zeros. */
export function shmemRead(proc: Process, inode: ShmemInode, pos: number, length: number): Uint8Array {
  const end = Math.min(inode.size, pos + length);
  if (end <= pos) return new Uint8Array(0);
  const out = new Uint8Array(end - pos);
  const mem = proc.kernel.core.mem;
  for (let at = pos; at < end; ) {
    const pgoff = Math.floor(at / PAGE_SIZE);
    const off = at % PAGE_SIZE;
    const n = Math.min(PAGE_SIZE - off, end - at);
    const pfn = shmemFindPage(mem, proc.kernel.core.swap, inode, pgoff, true);
    if (pfn >= 0) out.set(mem.bytes(pfn).subarray(mem.offset(pfn) + off, mem.offset(pfn) + off + n), at - pos);
    at += n;
  }
  return out;
}

/**
 * read(2)/pread(2) of a shmem file into user memory, as mm/shmem.c:shmem_file_read_iter() runs
 * it: page by page, the folio is looked up (and referenced) first, then copied out with
 * copy_page_to_iter(); a fault of the destination (a userfault) sleeps in the middle of that
 * copy, which then goes on from the same folio, so the bytes are the folio's when the copy
 * resumes, not when the read began [host: a write(2) to the page while the read slept on a
 * userfault is what the read returns]. An uncopyable destination stops the read: the bytes done
 * so far, or EFAULT for none.
 */
export async function shmemReadUser(proc: Process, inode: ShmemInode, pos: number, addr: number, length: number, syscall: string): Promise<number> {
  const core = proc.kernel.core;
  const mem = core.mem;
  const end = Math.min(inode.size, pos + length);
  let done = 0;
  while (pos + done < end) {
    const at = pos + done;
    const pgoff = Math.floor(at / PAGE_SIZE);
    const off = at % PAGE_SIZE;
    const n = Math.min(PAGE_SIZE - off, end - at);
    const pfn = shmemFindPage(mem, core.swap, inode, pgoff, true);
    const bytes = (): Uint8Array => (pfn >= 0 ? mem.bytes(pfn).slice(mem.offset(pfn) + off, mem.offset(pfn) + off + n) : new Uint8Array(n));
    const before = bytes();
    const got = await proc.copyUser(addr + done, before, true);
    // The copy resumed after sleeping: it read the folio as it was then. The destination is
    // mapped now, so copying the folio's present bytes again completes at once.
    // Divergence from Linux: Linux holds a reference on the folio meanwhile; the simulation takes
    // none, so a folio that left the page cache meanwhile gives the bytes it had when the read began.
    if (got > 0 && pfn >= 0 && inode.pages.get(pgoff) === pfn) {
      const now = bytes().subarray(0, got);
      if (now.some((b, i) => b !== before[i])) await proc.copyUser(addr + done, now, true);
    }
    done += got;
    if (got < n) break;
  }
  if (done === 0 && end > pos) throw new ErrnoError("EFAULT", syscall);
  return done;
}

/** Writes data at pos, allocating pages and growing i_size. Returns bytes written. */
export function shmemWrite(proc: Process, inode: ShmemInode, pos: number, data: Uint8Array): number {
  const mem = proc.kernel.core.mem;
  // shmem_write_begin() checks the seals page by page: sealed contents refuse the first page, a
  // sealed size the first page that would grow i_size, so a write running past the end of a
  // F_SEAL_GROW file is short [host: write(2) of 3 pages at 0 to a 2-page file returns 8192].
  if (inode.writeSealed) throw new ErrnoError("EPERM", "pwrite64");
  let done = 0;
  while (done < data.length) {
    const at = pos + done;
    const pgoff = Math.floor(at / PAGE_SIZE);
    const off = at % PAGE_SIZE;
    const n = Math.min(PAGE_SIZE - off, data.length - done);
    if ((inode.seals & F_SEAL_GROW) !== 0 && at + n > inode.size) {
      if (done === 0) throw new ErrnoError("EPERM", "pwrite64");
      break;
    }
    let pfn = shmemFindPage(mem, proc.kernel.core.swap, inode, pgoff);
    if (pfn === -1) pfn = shmemAllocPage(mem, inode, pgoff);
    if (pfn < 0) {
      if (done === 0) throw new ErrnoError("ENOSPC", "pwrite");
      break;
    }
    mem.writable(pfn, n === PAGE_SIZE).set(data.subarray(done, done + n), mem.offset(pfn) + off);
    mem.written(pfn);
    mem.setFlag(pfn, PG.dirty);
    done += n;
    if (at + n > inode.size) inode.size = at + n;
  }
  return done;
}

/**
 * The inode lock (inode->i_rwsem taken for writing) of a shmem file: shmem_file_write_iter()
 * holds it for the whole write, also while its copy from user memory sleeps on a userfault, and
 * truncation (do_truncate()), shmem_fallocate() (fallocate(2), MADV_REMOVE), memfd_add_seals()
 * (F_ADD_SEALS) and shmem_file_llseek() (SEEK_DATA, SEEK_HOLE) take it too, so they wait behind
 * such a write [host: each sleeps until the write's userfault is resolved]. Waiters get it in
 * arrival order (up_write() wakes the first waiter, a writer, only:
 * kernel/locking/rwsem.c:rwsem_mark_wake()).
 */
const inodeLocks = new WeakMap<ShmemInode, { held: boolean; waiters: Array<() => void> }>();

export async function inodeLock(inode: ShmemInode): Promise<() => void> {
  let l = inodeLocks.get(inode);
  if (l === undefined) {
    l = { held: false, waiters: [] };
    inodeLocks.set(inode, l);
  }
  const lock = l;
  if (lock.held) await new Promise<void>((resolve) => lock.waiters.push(resolve));
  lock.held = true;
  return () => {
    const next = lock.waiters.shift();
    if (next !== undefined) next(); // handed over: stays held
    else lock.held = false;
  };
}

/**
 * write(2)/pwrite(2) of user memory into a shmem file, as mm/filemap.c:generic_perform_write()
 * runs it for shmem_file_write_iter(): page by page, shmem_write_begin() finds or allocates the
 * page-cache folio *before* the bytes are copied from user memory, so a source that is a mapping
 * of the same file finds that page in the cache when its fault is taken (no MISSING userfault for
 * it). An unfaultable source stops the write: the bytes done so far, or EFAULT for none.
 */
export async function shmemWriteUser(proc: Process, inode: ShmemInode, pos: number, addr: number, length: number, syscall: string): Promise<number> {
  const core = proc.kernel.core;
  let done = 0;
  while (done < length) {
    const at = pos + done;
    const pgoff = Math.floor(at / PAGE_SIZE);
    const n = Math.min(PAGE_SIZE - (at % PAGE_SIZE), length - done);
    // shmem_write_begin(): the seals, then shmem_get_folio(SGP_WRITE) finds or allocates the folio.
    if (inode.writeSealed || ((inode.seals & F_SEAL_GROW) !== 0 && at + n > inode.size)) {
      if (done === 0) throw new ErrnoError("EPERM", syscall);
      break;
    }
    let pfn = shmemFindPage(core.mem, core.swap, inode, pgoff);
    if (pfn === -1) pfn = shmemAllocPage(core.mem, inode, pgoff);
    if (pfn < 0) {
      if (done === 0) throw new ErrnoError("ENOSPC", syscall);
      break;
    }
    const chunk = new Uint8Array(n);
    const got = await proc.copyUser(addr + done, chunk, false);
    // shmem_write_end(): the copied bytes (the folio may have been punched meanwhile: write again
    // through the cache), and even when nothing was copied the folio dirty and i_size grown to
    // pos + copied [host: a pwrite at 4096 that copied nothing leaves i_size 4096].
    if (got > 0) shmemWrite(proc, inode, at, chunk.subarray(0, got));
    else {
      const e = shmemFindPage(core.mem, core.swap, inode, pgoff);
      if (e >= 0) core.mem.setFlag(e, PG.dirty);
      if (at > inode.size) inode.size = at;
    }
    done += got;
    if (got < n) break;
  }
  if (done === 0 && length > 0) throw new ErrnoError("EFAULT", syscall);
  return done;
}

/** Mirrors mm/shmem.c:shmem_setattr() size change: truncate_setsize() + truncate_pagecache(). */
export function shmemTruncate(proc: Process, inode: ShmemInode, length: number): void {
  const core = proc.kernel.core;
  // shmem_setattr(): F_SEAL_SHRINK / F_SEAL_GROW.
  if ((length < inode.size && (inode.seals & F_SEAL_SHRINK) !== 0) || (length > inode.size && (inode.seals & F_SEAL_GROW) !== 0)) {
    throw new ErrnoError("EPERM", "ftruncate");
  }
  if (length < inode.size) {
    const firstGone = Math.ceil(length / PAGE_SIZE);
    let lastPage = inode.sizePages - 1;
    for (const k of inode.pages.keys()) if (k > lastPage) lastPage = k;
    if (firstGone <= lastPage) {
      unmapMappingRange(inode, firstGone, lastPage, { dropMarker: false, evenCows: true, dropGuard: false });
      for (const pgoff of [...inode.pages.keys()]) if (pgoff >= firstGone) shmemDeleteEntry(core.mem, core.swap, inode, pgoff);
    }
    zeroPartialPage(proc, inode, length);
  }
  inode.size = length;
}

/** Zeroes the tail of the page holding `from` (the part beyond the new end of a truncate or punch). */
function zeroPartialPage(proc: Process, inode: ShmemInode, from: number, to = (Math.floor(from / PAGE_SIZE) + 1) * PAGE_SIZE): void {
  const off = from % PAGE_SIZE;
  if (off === 0 && to - from === PAGE_SIZE) return;
  const mem = proc.kernel.core.mem;
  const e = inode.pages.get(Math.floor(from / PAGE_SIZE));
  if (e === undefined) return;
  const pfn = shmemFindPage(mem, proc.kernel.core.swap, inode, Math.floor(from / PAGE_SIZE), true);
  if (pfn < 0) return;
  const bytes = mem.writable(pfn);
  bytes.fill(0, mem.offset(pfn) + off, mem.offset(pfn) + off + (to - from));
  mem.written(pfn);
}

/** Mirrors mm/shmem.c:shmem_fallocate(). The caller has done vfs_fallocate()'s checks. */
export function shmemFallocate(proc: Process, inode: ShmemInode, mode: number, offset: number, len: number): void {
  const core = proc.kernel.core;
  if ((mode & FALLOC_FL_PUNCH_HOLE) !== 0) {
    if (inode.writeSealed) throw new ErrnoError("EPERM", "fallocate");
    const first = Math.ceil(offset / PAGE_SIZE);
    const end = offset + len;
    const lastFull = Math.floor(end / PAGE_SIZE) - 1;
    if (first <= lastFull) {
      unmapMappingRange(inode, first, lastFull, { ...ZAP_DEFAULT, evenCows: false });
      // Only the entries the cache holds (a hole punched over 2^40 pages costs what is cached).
      for (const pgoff of [...inode.pages.keys()]) if (pgoff >= first && pgoff <= lastFull) shmemDeleteEntry(core.mem, core.swap, inode, pgoff);
    }
    // Partial pages at either end are zeroed, not removed.
    if (offset % PAGE_SIZE !== 0) zeroPartialPage(proc, inode, offset, Math.min(end, Math.ceil(offset / PAGE_SIZE) * PAGE_SIZE));
    if (end % PAGE_SIZE !== 0 && Math.floor(end / PAGE_SIZE) * PAGE_SIZE >= offset) {
      const startOfLast = Math.max(offset, Math.floor(end / PAGE_SIZE) * PAGE_SIZE);
      if (startOfLast % PAGE_SIZE === 0) zeroPartialPage(proc, inode, startOfLast, end);
    }
    return;
  }
  if ((inode.seals & F_SEAL_GROW) !== 0 && (mode & FALLOC_FL_KEEP_SIZE) === 0 && offset + len > inode.size) throw new ErrnoError("EPERM", "fallocate");
  const first = Math.floor(offset / PAGE_SIZE);
  const last = Math.ceil((offset + len) / PAGE_SIZE) - 1;
  // shmem_fallocate() allocates page by page and, when memory runs out, undoes what this call
  // allocated (ENOSPC). A range needing more pages than are free fails the same way at once.
  let cached = 0;
  for (const k of inode.pages.keys()) if (k >= first && k <= last) cached++;
  if (last - first + 1 - cached > core.mem.freeFrames) throw new ErrnoError("ENOSPC", "fallocate");
  const added: number[] = [];
  for (let pgoff = first; pgoff <= last; pgoff++) {
    // shmem_get_folio(SGP_FALLOC): an existing folio is swapped in if needed (and uptodate from
    // then on); a new one stays !uptodate until something other than read(2) looks it up (it
    // is zeroed then), so fault-around skips it (mm/filemap.c:next_uptodate_folio()).
    let pfn = shmemFindPage(core.mem, core.swap, inode, pgoff);
    if (pfn === -1) {
      pfn = shmemAllocPage(core.mem, inode, pgoff);
      if (pfn >= 0) {
        core.mem.clearFlag(pfn, PG.uptodate);
        added.push(pgoff);
      }
    }
    if (pfn < 0) {
      // The undo of shmem_fallocate(): the pages this call allocated go again.
      for (const k of added) shmemDeleteEntry(core.mem, core.swap, inode, k);
      throw new ErrnoError("ENOSPC", "fallocate");
    }
    // Every folio of the range is marked dirty [host: kpageflags dirty 1 for a clean page
    // fallocated over, and for a new one].
    core.mem.setFlag(pfn, PG.dirty);
  }
  if ((mode & FALLOC_FL_KEEP_SIZE) === 0 && offset + len > inode.size) inode.size = offset + len;
}

/** Mirrors mm/shmem.c:shmem_file_llseek() and generic_file_llseek(). */
export function shmemLlseek(file: OpenFile, inode: ShmemInode, offset: number, whence: number): number {
  let pos: number;
  switch (whence) {
    case SEEK_SET:
      pos = offset;
      break;
    case SEEK_CUR:
      pos = file.pos + offset;
      break;
    case SEEK_END:
      pos = inode.size + offset;
      break;
    case SEEK_DATA:
    case SEEK_HOLE: {
      if (offset < 0 || offset >= inode.size) throw new ErrnoError("ENXIO", "lseek");
      const wantData = whence === SEEK_DATA;
      let pgoff = Math.floor(offset / PAGE_SIZE);
      if (wantData) {
        // The first cached page at or after pgoff (a walk of the cache, not of the size).
        let next = Infinity;
        for (const k of inode.pages.keys()) if (k >= pgoff && k < next) next = k;
        pgoff = Number.isFinite(next) ? next : Math.ceil(inode.size / PAGE_SIZE);
      } else {
        while (pgoff * PAGE_SIZE < inode.size && inode.pages.has(pgoff)) pgoff++;
      }
      if (pgoff * PAGE_SIZE >= inode.size) {
        if (wantData) throw new ErrnoError("ENXIO", "lseek");
        pos = inode.size;
      } else {
        pos = Math.max(offset, pgoff * PAGE_SIZE);
      }
      break;
    }
    default:
      throw new ErrnoError("EINVAL", "lseek");
  }
  if (pos < 0 || pos > MAX_LFS_FILESIZE) throw new ErrnoError("EINVAL", "lseek");
  file.pos = pos;
  return pos;
}
