/**
 * The address space of a process. Mirrors include/linux/mm_types.h:struct mm_struct: the vma
 * tree (here a sorted array), the page tables, the rss counters and MMF_HAS_PINNED, plus the vma
 * operations of mm/vma.c (find, split, merge, insert, remove) and mm/mmap.c's top-down
 * get_unmapped_area().
 *
 * Invariants (checked by Kernel.checkInvariants()):
 * - vmas are sorted, page-aligned, non-empty and do not overlap;
 * - no pte outside a vma is anything but none;
 * - rss counters equal what the page tables hold.
 */
import { BUG_ON } from "../lib/assert.ts";
import { PAGE_SIZE } from "../uapi/mman.ts";
import type { PhysMem } from "./folio.ts";
import { PageTable, PTRS_PER_PTE } from "./page-table.ts";
import type { ShmemInode } from "./shmem.ts";
import type { SwapDevice } from "./swap.ts";
import { type Vma, VM_STICKY, VM_UFFD_FLAGS } from "./vma.ts";

/** x86-64 TASK_SIZE_MAX with 4-level paging. */
export const TASK_SIZE = 0x7ffffffff000;
/** The default of /proc/sys/vm/mmap_min_addr (KernelOptions.mmapMinAddr): the reference host's 4096. */
export const DEFAULT_MMAP_MIN_ADDR = 0x1000;
/** Where top-down mmap allocation starts (mm->mmap_base); fixed rather than randomised. */
export const MMAP_BASE = 0x7f0000000000;

/**
 * Where mm syscalls tell userfaultfd about layout changes (the non-cooperative events of
 * fs/userfaultfd.c). Each *Complete / remove call returns once the event has been read (or
 * at once when no context asked for it); the syscall stays blocked until then.
 * `list` is an opaque collection the prep calls fill and the complete calls consume.
 */
export interface UffdMmHooks {
  /** userfaultfd_unmap_prep() for [start, end), before the vmas go away. */
  unmapPrep(mm: Mm, start: number, end: number, list: unknown[]): void;
  /** userfaultfd_unmap_complete(). */
  unmapComplete(mm: Mm, list: unknown[]): Promise<void>;
  /** userfaultfd_remove(): MADV_DONTNEED/FREE/REMOVE on a registered vma, before zapping. */
  remove(vma: Vma, start: number, end: number): Promise<void>;
  /** mremap_userfaultfd_prep(): returns a handle for complete, or null; resets the vma if no EVENT_REMAP. */
  mremapPrep(vma: Vma): unknown;
  /** mremap_userfaultfd_complete(). */
  mremapComplete(handle: unknown, from: number, to: number, len: number): Promise<void>;
  /** dup_userfaultfd(): decides the child vma's registration at fork. */
  dupVma(parentVma: Vma, childVma: Vma, list: unknown[]): void;
  /** dup_userfaultfd_complete(): queues the FORK events and waits for them to be read. */
  dupComplete(list: unknown[]): Promise<void>;
  /** dup_userfaultfd_fail(): the fork failed; releases the child contexts and lowers mmap_changing again. */
  dupFail(list: unknown[]): void;
}

/** The machine-wide state mm code reaches: physical memory, swap, id allocation, uffd hooks. */
export interface MmCore {
  readonly mem: PhysMem;
  readonly swap: SwapDevice | null;
  readonly uffd: UffdMmHooks;
  /** vm.mmap_min_addr (mm/util.c:mmap_min_addr), page-aligned. */
  readonly mmapMinAddr: number;
  nextAnonVmaId(): number;
  /** Called when a vma of a shmem inode goes away: frees the inode once nothing refers to it. */
  inodeUnreferenced(inode: ShmemInode): void;
}

export class Mm {
  readonly core: MmCore;
  /** Sorted by start; never overlapping. Change only through the methods below. */
  vmas: Vma[] = [];
  readonly pt = new PageTable();
  /** MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES, MM_SWAPENTS. */
  rssAnon = 0;
  rssFile = 0;
  rssShmem = 0;
  swapEnts = 0;
  /** MMF_HAS_PINNED: set by the first FOLL_PIN, never cleared. */
  hasPinned = false;
  /** mm_users: 0 once the owner exited (ioctls then see "mm gone"). */
  users = 1;
  #lastVma: Vma | null = null;

  constructor(core: MmCore) {
    this.core = core;
  }

  get alive(): boolean {
    return this.users > 0;
  }

  /** Index of the first vma with end > addr (find_vma()), or vmas.length. */
  #indexAfter(addr: number): number {
    let lo = 0;
    let hi = this.vmas.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.vmas[mid] as Vma).end <= addr) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** find_vma(): the first vma ending above addr (it may start above addr). */
  findVma(addr: number): Vma | null {
    return this.vmas[this.#indexAfter(addr)] ?? null;
  }

  /** vma_lookup(): the vma containing addr. */
  vmaLookup(addr: number): Vma | null {
    const last = this.#lastVma;
    if (last !== null && addr >= last.start && addr < last.end) return last;
    const vma = this.findVma(addr);
    if (vma === null || vma.start > addr) return null;
    this.#lastVma = vma;
    return vma;
  }

  /** The vmas intersecting [start, end), in address order. */
  vmasIn(start: number, end: number): Vma[] {
    const out: Vma[] = [];
    for (let i = this.#indexAfter(start); i < this.vmas.length; i++) {
      const v = this.vmas[i] as Vma;
      if (v.start >= end) break;
      out.push(v);
    }
    return out;
  }

  /** Whether [start, end) is fully covered by vmas with no gap. */
  rangeFullyMapped(start: number, end: number): boolean {
    let at = start;
    for (const v of this.vmasIn(start, end)) {
      if (v.start > at) return false;
      at = v.end;
      if (at >= end) return true;
    }
    return at >= end;
  }

  insertVma(vma: Vma): void {
    BUG_ON(vma.start >= vma.end || vma.start % PAGE_SIZE !== 0 || vma.end % PAGE_SIZE !== 0, `bad vma [${vma.start}, ${vma.end})`);
    const i = this.#indexAfter(vma.start);
    const next = this.vmas[i];
    BUG_ON(next !== undefined && next.start < vma.end, `vma [${vma.start.toString(16)}, ${vma.end.toString(16)}) overlaps`);
    this.vmas.splice(i, 0, vma);
    vma.mm = this;
    vma.file?.mappings.add(vma);
  }

  removeVma(vma: Vma): void {
    const i = this.vmas.indexOf(vma);
    BUG_ON(i < 0, "removing a vma that is not in the mm");
    this.vmas.splice(i, 1);
    if (this.#lastVma === vma) this.#lastVma = null;
    if (vma.file !== null) {
      vma.file.mappings.delete(vma);
      this.core.inodeUnreferenced(vma.file);
    }
  }

  /**
   * Mirrors mm/vma.c:split_vma(): splits vma at addr; `vma` keeps [start, addr) and the new vma
   * [addr, end) is returned (already inserted).
   */
  splitVma(vma: Vma, addr: number): Vma {
    BUG_ON(addr <= vma.start || addr >= vma.end || addr % PAGE_SIZE !== 0, "split outside the vma");
    const tail = vma.clone(addr, vma.end);
    vma.end = addr;
    const i = this.vmas.indexOf(vma);
    this.vmas.splice(i + 1, 0, tail);
    tail.file?.mappings.add(tail);
    return tail;
  }

  /**
   * Splits vmas so that start and end fall on vma boundaries, and returns the vmas inside
   * [start, end) (holes skipped).
   */
  isolateRange(start: number, end: number): Vma[] {
    const first = this.vmaLookup(start);
    if (first !== null && first.start < start) this.splitVma(first, start);
    const last = this.vmaLookup(end - 1);
    if (last !== null && last.end > end) this.splitVma(last, end);
    return this.vmasIn(start, end);
  }

  /** Whether two adjacent vmas may become one (mm/vma.c:is_mergeable_vma() and anon_vma compatibility). */
  static canMerge(prev: Vma, next: Vma): boolean {
    if (prev.end !== next.start) return false;
    if (((prev.flags ^ next.flags) & ~VM_STICKY) !== 0 || prev.file !== next.file || prev.uffdCtx !== next.uffdCtx) return false;
    if (prev.pgoffOf(prev.end) !== next.pgoff) return false;
    return prev.anonVma === 0 || next.anonVma === 0 || prev.anonVma === next.anonVma;
  }

  /** vma_merge(): merges vma with its neighbours where Linux would; returns the surviving vma. */
  mergeAround(vma: Vma): Vma {
    let i = this.vmas.indexOf(vma);
    BUG_ON(i < 0, "merging a vma that is not in the mm");
    let cur = vma;
    const prev = this.vmas[i - 1];
    if (prev !== undefined && Mm.canMerge(prev, cur)) {
      prev.end = cur.end;
      prev.flags = (prev.flags | (cur.flags & VM_STICKY)) >>> 0;
      if (prev.anonVma === 0) prev.anonVma = cur.anonVma;
      this.removeVma(cur);
      cur = prev;
      i--;
    }
    const next = this.vmas[i + 1];
    if (next !== undefined && Mm.canMerge(cur, next)) {
      cur.end = next.end;
      cur.flags = (cur.flags | (next.flags & VM_STICKY)) >>> 0;
      if (cur.anonVma === 0) cur.anonVma = next.anonVma;
      this.removeVma(next);
    }
    return cur;
  }

  /** Merges every vma intersecting [start, end] with its neighbours. */
  mergeRange(start: number, end: number): void {
    for (const v of this.vmasIn(Math.max(0, start - 1), end + 1)) {
      if (this.vmas.includes(v)) this.mergeAround(v);
    }
  }

  /** anon_vma_prepare(). */
  anonVmaPrepare(vma: Vma): void {
    if (vma.anonVma === 0) vma.anonVma = this.core.nextAnonVmaId();
  }

  /**
   * Mirrors mm/mmap.c:unmapped_area_topdown(): the highest free range of len bytes below
   * MMAP_BASE, or -1. A free, in-range hint is used as is (the non-MAP_FIXED hint rule).
   */
  getUnmappedArea(len: number, hint: number): number {
    const minAddr = this.core.mmapMinAddr;
    if (len > TASK_SIZE - minAddr) return -1;
    if (hint !== 0) {
      const addr = Math.ceil(hint / PAGE_SIZE) * PAGE_SIZE;
      if (addr >= minAddr && addr + len <= TASK_SIZE && this.vmasIn(addr, addr + len).length === 0) return addr;
    }
    let high = MMAP_BASE;
    // A vma straddling MMAP_BASE (a MAP_FIXED mapping) bounds the first gap too.
    const above = this.#indexAfter(MMAP_BASE);
    const straddling = this.vmas[above];
    if (straddling !== undefined && straddling.start < high) high = straddling.start;
    for (let i = above - 1; i >= -1; i--) {
      const v = this.vmas[i];
      const low = v === undefined ? minAddr : v.end;
      if (v !== undefined && v.end > high) {
        high = Math.min(high, v.start);
        continue;
      }
      if (high - low >= len) return high - len;
      if (v === undefined) break;
      high = v.start;
    }
    return -1;
  }

  /** free_pgtables(): drops PTE tables in [start, end) that no vma covers any more. */
  freePgtables(start: number, end: number): void {
    const span = PTRS_PER_PTE * PAGE_SIZE;
    const firstKey = Math.floor(start / span);
    const lastKey = Math.floor((end - 1) / span);
    for (const key of [...this.pt.tables.keys()]) {
      if (key < firstKey || key > lastKey) continue;
      if (this.vmasIn(key * span, (key + 1) * span).length === 0) this.pt.freeTable(key);
    }
  }

  /** Whether a vma is registered with some userfaultfd. */
  static armed(vma: Vma): boolean {
    return (vma.flags & VM_UFFD_FLAGS) !== 0;
  }
}
