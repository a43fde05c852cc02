/**
 * mmap(2) and munmap(2). Mirrors mm/mmap.c:do_mmap() (argument checks in Linux's order),
 * mm/vma.c:__mmap_region() and do_vmi_munmap(), and mm/gup.c:__mm_populate() for MAP_POPULATE.
 */
import { ErrnoError } from "../uapi/errno.ts";
import {
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_FIXED_NOREPLACE,
  MAP_NORESERVE,
  MAP_POPULATE,
  MAP_NONBLOCK,
  MAP_PRIVATE,
  MAP_SHARED,
  MAP_SHARED_VALIDATE,
  MAP_TYPE,
  MAP_GROWSDOWN,
  MAP_HUGETLB,
  MAP_LOCKED,
  PAGE_SIZE,
  PROT_EXEC,
  PROT_READ,
  PROT_WRITE,
} from "../uapi/mman.ts";
import { ZAP_UNMAP, zapPageRange } from "./memory.ts";
import { type Mm, type MmCore, TASK_SIZE } from "./mm.ts";
import type { ShmemInode } from "./shmem.ts";
import {
  Vma,
  VM_ACCOUNT,
  VM_EXEC,
  VM_GROWSDOWN,
  VM_MAYEXEC,
  VM_MAYREAD,
  VM_MAYSHARE,
  VM_MAYWRITE,
  VM_NORESERVE,
  VM_READ,
  VM_SHARED,
  VM_WRITE,
} from "./vma.ts";

export const PAGE_ALIGN = (len: number): number => Math.ceil(len / PAGE_SIZE) * PAGE_SIZE;
export const offsetInPage = (addr: number): number => addr % PAGE_SIZE;

/** calc_vm_prot_bits(). */
export function calcVmProtBits(prot: number): number {
  return ((prot & PROT_READ) !== 0 ? VM_READ : 0) | ((prot & PROT_WRITE) !== 0 ? VM_WRITE : 0) | ((prot & PROT_EXEC) !== 0 ? VM_EXEC : 0);
}

/** The file side of an mmap: the shmem inode and the open file's access mode. */
export interface MmapFile {
  inode: ShmemInode;
  readable: boolean;
  writable: boolean;
}

/** What do_mmap() decided: where to map, and whether to populate. */
export interface MmapPlan {
  addr: number;
  len: number;
  flags: number;
  pgoff: number;
  populate: boolean;
}

/**
 * Mirrors mm/mmap.c:do_mmap() up to mmap_region(): every check, in Linux's order, before
 * anything changes. `file` is null for MAP_ANONYMOUS; `newShmem` creates the inode that
 * shmem_zero_setup() gives a MAP_SHARED|MAP_ANONYMOUS mapping.
 */
export function planMmap(
  mm: Mm,
  addr: number,
  length: number,
  prot: number,
  flags: number,
  file: MmapFile | null,
  offset: number,
  capSysRawio: boolean,
): MmapPlan {
  const fail = (code: "EINVAL" | "ENOMEM" | "EEXIST" | "EACCES" | "EPERM" | "EOVERFLOW" | "EOPNOTSUPP"): never => {
    throw new ErrnoError(code, "mmap");
  };
  if (length === 0) fail("EINVAL");
  let fixed = (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) !== 0;
  if (!fixed && addr !== 0) addr = Math.max(PAGE_ALIGN(addr), mm.core.mmapMinAddr);
  const len = PAGE_ALIGN(length);
  if (len === 0 || len > TASK_SIZE) fail("ENOMEM");
  const pgoff = offset / PAGE_SIZE;
  if (pgoff + len / PAGE_SIZE > Number.MAX_SAFE_INTEGER) fail("EOVERFLOW");
  // Too many mappings? (a merge may still keep the count; Linux lets it go one past the limit)
  if (mm.mapCount > mm.core.maxMapCount) fail("ENOMEM");
  // __get_unmapped_area()
  if (fixed) {
    if (offsetInPage(addr) !== 0) fail("EINVAL");
    if (addr + len > TASK_SIZE) fail("ENOMEM");
    // security_mmap_addr() -> cap_mmap_addr(): below mmap_min_addr needs CAP_SYS_RAWIO (root may) [host].
    if (addr < mm.core.mmapMinAddr && !capSysRawio) fail("EPERM");
  } else {
    const found = mm.getUnmappedArea(len, addr);
    if (found < 0) fail("ENOMEM");
    addr = found;
  }
  if ((flags & MAP_FIXED_NOREPLACE) !== 0 && mm.vmasIn(addr, addr + len).length > 0) fail("EEXIST");
  if (file !== null && !fileMmapOk(pgoff, len)) fail("EOVERFLOW");
  let vmFlags = calcVmProtBits(prot) | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC;
  if ((flags & MAP_GROWSDOWN) !== 0) vmFlags |= VM_GROWSDOWN;
  const type = flags & MAP_TYPE;
  let mapPgoff = pgoff;
  if (file !== null) {
    if (type === MAP_SHARED || type === MAP_SHARED_VALIDATE) {
      if ((prot & PROT_WRITE) !== 0 && !file.writable) fail("EACCES");
      vmFlags |= VM_SHARED | VM_MAYSHARE;
      if (!file.writable) vmFlags &= ~(VM_MAYWRITE | VM_SHARED);
      if (!file.readable) fail("EACCES");
    } else if (type === MAP_PRIVATE) {
      if (!file.readable) fail("EACCES");
    } else {
      fail("EINVAL");
    }
  } else {
    if (type === MAP_SHARED || type === MAP_SHARED_VALIDATE) {
      if ((vmFlags & VM_GROWSDOWN) !== 0) fail("EINVAL");
      mapPgoff = 0;
      vmFlags |= VM_SHARED | VM_MAYSHARE;
    } else if (type === MAP_PRIVATE) {
      mapPgoff = addr / PAGE_SIZE;
    } else {
      fail("EINVAL");
    }
  }
  // mm/memfd.c:memfd_check_seals_mmap(): no shared writable mapping of write-sealed contents, and a
  // read-only shared one may never become writable.
  if (file !== null && file.inode.writeSealed && (vmFlags & VM_SHARED) !== 0) {
    if ((vmFlags & VM_WRITE) !== 0) fail("EPERM");
    vmFlags &= ~VM_MAYWRITE;
  }
  if ((flags & MAP_NORESERVE) !== 0) vmFlags |= VM_NORESERVE;
  // accountable_mapping(): private writable memory is charged (VM_ACCOUNT).
  if ((vmFlags & (VM_NORESERVE | VM_SHARED | VM_WRITE)) === VM_WRITE) vmFlags |= VM_ACCOUNT;
  fixed = fixed && (flags & MAP_FIXED_NOREPLACE) === 0;
  // __mmap_region(): unmapping the middle of a vma would add one (vms_gather_munmap_vmas()).
  if (!munmapSplitOk(mm, addr, addr + len)) fail("ENOMEM");
  // accountable_mapping(): the commit charge, less what the replaced mappings had charged.
  if ((vmFlags & VM_ACCOUNT) !== 0 && !vmEnoughMemory(mm.core, len / PAGE_SIZE - accountedPages(mm, addr, addr + len))) fail("ENOMEM");
  // shmem_zero_setup() -> shmem_acct_size(): a shared anonymous mapping charges its size too [host].
  if (file === null && (vmFlags & VM_SHARED) !== 0 && (vmFlags & VM_NORESERVE) === 0 && !vmEnoughMemory(mm.core, len / PAGE_SIZE)) fail("ENOMEM");
  const populate = (flags & MAP_LOCKED) !== 0 || (flags & (MAP_POPULATE | MAP_NONBLOCK)) === MAP_POPULATE;
  return { addr, len, flags: vmFlags, pgoff: mapPgoff, populate };
}

/**
 * Mirrors mm/mmap.c:file_mmap_ok() for a shmem file, whose file_mmap_size_max() is
 * MAX_LFS_FILESIZE (2^63 - 1): the mapping must end within it. pgoff <= (2^63 - 1 - len) >> 12 is
 * pgoff <= 2^51 - len / 4096 - 1 for a page-aligned len, exact in doubles.
 */
function fileMmapOk(pgoff: number, len: number): boolean {
  return pgoff <= 2 ** 51 - len / PAGE_SIZE - 1;
}

/** Flags that only matter for the rejections Linux gives them, kept for callers. */
export const MMAP_UNSUPPORTED = MAP_HUGETLB;
export const MMAP_ANON = MAP_ANONYMOUS;

/**
 * Mirrors mm/vma.c:__mmap_region(): replaces whatever was mapped in [addr, addr+len) (the
 * caller has run the unmap prep for userfaultfd) with a new vma, merged with its neighbours.
 */
export function mmapRegion(mm: Mm, plan: MmapPlan, inode: ShmemInode | null): Vma {
  unmapRange(mm, plan.addr, plan.addr + plan.len);
  const vma = new Vma(plan.addr, plan.addr + plan.len, plan.flags, plan.pgoff, inode);
  mm.insertVma(vma);
  return mm.mergeAround(vma);
}

/**
 * The unmapping half of do_vmi_munmap(): splits at the boundaries, zaps every pte, removes the
 * vmas and frees page tables nobody covers. Userfaultfd prep/complete are the caller's.
 */
export function unmapRange(mm: Mm, start: number, end: number): void {
  const vmas = mm.isolateRange(start, end);
  for (const vma of vmas) {
    zapPageRange(mm, vma, vma.start, vma.end, ZAP_UNMAP);
    mm.removeVma(vma);
  }
  if (vmas.length > 0) mm.freePgtables(start, end);
}

/**
 * vms_gather_munmap_vmas()'s map count check: unmapping strictly inside one vma splits it in
 * three and leaves one more vma, refused (ENOMEM) when the mm is at vm.max_map_count. Other
 * splits of an unmap leave the count unchanged or lower and are always allowed.
 */
export function munmapSplitOk(mm: Mm, start: number, end: number): boolean {
  const vma = mm.vmaLookup(start);
  return vma === null || vma.start >= start || vma.end <= end || mm.mapCount < mm.core.maxMapCount;
}

/** The pages of [start, end) in VM_ACCOUNT vmas (vms->nr_accounted: already charged). */
function accountedPages(mm: Mm, start: number, end: number): number {
  let pages = 0;
  for (let v = mm.findVma(start); v !== null && v.start < end; v = mm.nextVma(v)) {
    if ((v.flags & VM_ACCOUNT) !== 0) pages += (Math.min(end, v.end) - Math.max(start, v.start)) / PAGE_SIZE;
  }
  return pages;
}

/**
 * Mirrors mm/util.c:__vm_enough_memory() (security_vm_enough_memory_mm()) for the modes simulated:
 * OVERCOMMIT_GUESS (0) refuses a single charge larger than all RAM plus swap;
 * OVERCOMMIT_ALWAYS (1) never refuses. Nothing is tracked between calls (the heuristic needs none).
 */
export function vmEnoughMemory(core: MmCore, pages: number): boolean {
  if (pages <= 0 || core.overcommitMemory === 1) return true;
  return pages <= core.mem.totalFrames + (core.swap?.nrSlots ?? 0);
}

/** The checks of do_vmi_munmap(); returns the page-aligned end. */
export function checkMunmap(start: number, length: number): number {
  if (offsetInPage(start) !== 0 || start > TASK_SIZE || length > TASK_SIZE - start) throw new ErrnoError("EINVAL", "munmap");
  const end = start + PAGE_ALIGN(length);
  if (end === start) throw new ErrnoError("EINVAL", "munmap");
  return end;
}
