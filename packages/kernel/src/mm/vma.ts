/**
 * Virtual memory areas. Mirrors include/linux/mm_types.h:struct vm_area_struct, with the
 * flags of include/linux/mm.h. The bit values are ours except for their order, which follows
 * Linux's bit numbers so that smaps lists the VmFlags mnemonics in the kernel's order.
 */
import type { Mm } from "./mm.ts";
import type { ShmemInode } from "./shmem.ts";

export const VM_READ = 0x1;
export const VM_WRITE = 0x2;
export const VM_EXEC = 0x4;
export const VM_SHARED = 0x8;
export const VM_MAYREAD = 0x10;
export const VM_MAYWRITE = 0x20;
export const VM_MAYEXEC = 0x40;
export const VM_MAYSHARE = 0x80;
export const VM_GROWSDOWN = 0x100;
export const VM_UFFD_MISSING = 0x200;
export const VM_PFNMAP = 0x400;
/** Linux keeps VM_UFFD_MINOR in a high bit (41); ours sits in a free low bit. */
export const VM_UFFD_MINOR = 0x800;
export const VM_UFFD_WP = 0x1000;
export const VM_LOCKED = 0x2000;
export const VM_IO = 0x4000;
export const VM_SEQ_READ = 0x8000;
export const VM_RAND_READ = 0x10000;
export const VM_DONTCOPY = 0x20000;
export const VM_DONTEXPAND = 0x40000;
export const VM_LOCKONFAULT = 0x80000;
export const VM_ACCOUNT = 0x100000;
export const VM_NORESERVE = 0x200000;
export const VM_HUGETLB = 0x400000;
export const VM_WIPEONFORK = 0x2000000;
export const VM_DONTDUMP = 0x4000000;
/**
 * VM_MAYBE_GUARD (Linux bit 11): MADV_GUARD_INSTALL ran on the vma, so its page tables may hold
 * guard markers. Sticky across merges (VM_STICKY) and copy-on-fork (vma_needs_copy()).
 */
export const VM_MAYBE_GUARD = 0x800000;
export const VM_HUGEPAGE = 0x20000000;
export const VM_NOHUGEPAGE = 0x40000000;
export const VM_MERGEABLE = 0x80000000;

export const VM_UFFD_FLAGS = VM_UFFD_MISSING | VM_UFFD_WP | VM_UFFD_MINOR;
export const VM_ACCESS_FLAGS = VM_READ | VM_WRITE | VM_EXEC;
/** Flags a merge ignores when comparing and ORs into the result (mm.h VM_STICKY). */
export const VM_STICKY = VM_MAYBE_GUARD;

/** smaps VmFlags mnemonics, in Linux bit order (fs/proc/task_mmu.c:show_smap_vma_flags()). */
const MNEMONICS: ReadonlyArray<readonly [number, string]> = [
  [VM_READ, "rd"],
  [VM_WRITE, "wr"],
  [VM_EXEC, "ex"],
  [VM_SHARED, "sh"],
  [VM_MAYREAD, "mr"],
  [VM_MAYWRITE, "mw"],
  [VM_MAYEXEC, "me"],
  [VM_MAYSHARE, "ms"],
  [VM_GROWSDOWN, "gd"],
  [VM_UFFD_MISSING, "um"],
  [VM_PFNMAP, "pf"],
  [VM_MAYBE_GUARD, "gu"],
  [VM_UFFD_WP, "uw"],
  [VM_LOCKED, "lo"],
  [VM_IO, "io"],
  [VM_SEQ_READ, "sr"],
  [VM_RAND_READ, "rr"],
  [VM_DONTCOPY, "dc"],
  [VM_DONTEXPAND, "de"],
  [VM_LOCKONFAULT, "lf"],
  [VM_ACCOUNT, "ac"],
  [VM_NORESERVE, "nr"],
  [VM_HUGETLB, "ht"],
  [VM_WIPEONFORK, "wf"],
  [VM_DONTDUMP, "dd"],
  [VM_HUGEPAGE, "hg"],
  [VM_NOHUGEPAGE, "nh"],
  [VM_MERGEABLE, "mg"],
  [VM_UFFD_MINOR, "ui"],
];

export function vmFlagsMnemonics(flags: number): string[] {
  const out: string[] = [];
  for (const [bit, name] of MNEMONICS) if ((flags & bit) !== 0) out.push(name);
  return out;
}

/**
 * The userfaultfd context a vma points at (vm_userfaultfd_ctx). Implemented by
 * fs/userfaultfd.ts; mm code only raises faults through it and asks for its features.
 */
export interface VmaUffdCtx {
  readonly features: number;
}

export class Vma {
  // Every number field has an initializer: a field declared without one starts as undefined, and
  // V8 then keeps it as a tagged field, which boxes each address above 2^31 in a new heap number
  // per store; a field first holding 0 holds its doubles in place.
  start = 0;
  end = 0;
  flags = 0;
  /** vm_pgoff: the file page offset of `start` (for anon, the linear page index at creation). */
  pgoff = 0;
  /** The shmem inode backing the mapping (memfd or MAP_SHARED|MAP_ANONYMOUS), or null for anon. */
  readonly file: ShmemInode | null;
  /** anon_vma: 0 until the first anon page is added (anon_vma_prepare), then an id shared by splits. */
  anonVma = 0;
  /** vm_userfaultfd_ctx; non-null iff some VM_UFFD_* flag is set. */
  uffdCtx: VmaUffdCtx | null = null;
  /** vm_mm: set when the vma is inserted into an mm. */
  mm: Mm | null = null;

  constructor(start: number, end: number, flags: number, pgoff: number, file: ShmemInode | null, anonVma = 0) {
    this.start = start;
    this.end = end;
    this.flags = flags >>> 0;
    this.pgoff = pgoff;
    this.file = file;
    this.anonVma = anonVma;
  }

  /** The file page offset of a user address in this vma (linear_page_index()). */
  pgoffOf(addr: number): number {
    return this.pgoff + (addr - this.start) / 4096;
  }

  clone(start: number, end: number): Vma {
    const v = new Vma(start, end, this.flags, this.pgoffOf(start), this.file, this.anonVma);
    v.uffdCtx = this.uffdCtx;
    v.mm = this.mm;
    return v;
  }
}

/** vma_is_anonymous(): no file behind it (private anon). shmem (incl. MAP_SHARED|MAP_ANONYMOUS) is not. */
export const vmaIsAnonymous = (vma: Vma): boolean => vma.file === null;
export const vmaIsShmem = (vma: Vma): boolean => vma.file !== null;
export const vmaIsShared = (vma: Vma): boolean => (vma.flags & (VM_SHARED | VM_MAYSHARE)) !== 0;
/** is_cow_mapping(): private and may be written. */
export const isCowMapping = (flags: number): boolean => (flags & (VM_SHARED | VM_MAYWRITE)) === VM_MAYWRITE;

export const userfaultfdMissing = (vma: Vma): boolean => (vma.flags & VM_UFFD_MISSING) !== 0;
export const userfaultfdWp = (vma: Vma): boolean => (vma.flags & VM_UFFD_WP) !== 0;
export const userfaultfdMinor = (vma: Vma): boolean => (vma.flags & VM_UFFD_MINOR) !== 0;
export const userfaultfdArmed = (vma: Vma): boolean => (vma.flags & VM_UFFD_FLAGS) !== 0;

/** /proc/pid/maps permission string, e.g. "rw-p". */
export function vmaPerms(vma: Vma): string {
  return (
    ((vma.flags & VM_READ) !== 0 ? "r" : "-") +
    ((vma.flags & VM_WRITE) !== 0 ? "w" : "-") +
    ((vma.flags & VM_EXEC) !== 0 ? "x" : "-") +
    ((vma.flags & VM_MAYSHARE) !== 0 ? "s" : "p")
  );
}
