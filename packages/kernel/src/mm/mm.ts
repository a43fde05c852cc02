/**
 * The address space of a process. Mirrors include/linux/mm_types.h:struct mm_struct: the vma
 * tree (here a B+ tree keyed by start), the page tables, the rss counters and MMF_HAS_PINNED, plus the vma
 * operations of mm/vma.c (find, split, merge, insert, remove) and mm/mmap.c's top-down
 * get_unmapped_area().
 *
 * Invariants (checked by Kernel.checkInvariants()):
 * - vmas are sorted, page-aligned, non-empty and do not overlap;
 * - no pte outside a vma is anything but none;
 * - rss counters equal what the page tables hold.
 */
import type { CowPolicy, MmRules } from "../kernel/release.ts";
import btree from "sorted-btree";
import { BUG_ON } from "../lib/assert.ts";
import { PAGE_SIZE } from "../uapi/mman.ts";
import type { PhysMem } from "./folio.ts";
import { PageTable, PTRS_PER_PTE } from "./page-table.ts";
import type { ShmemInode } from "./shmem.ts";
import type { SwapDevice } from "./swap.ts";
import { type Vma, VM_STICKY, VM_UFFD_FLAGS } from "./vma.ts";

/** sorted-btree is CommonJS: Node's ESM loader gives its exports object, bundlers the class itself. */
type BTreeClass = typeof btree.default;
const BTree: BTreeClass = (btree as unknown as { default?: BTreeClass }).default ?? (btree as unknown as BTreeClass);

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

/** Something that holds frame references outside page tables and caches (pipe buffers, pins, a syscall mid-way). */
export interface RefHolder {
  /** Reports each frame it holds: plain references (get_page) and FOLL_PIN pins. */
  forEachRef(fn: (pfn: number, refs: number, pins: number) => void): void;
}

/** The machine-wide state mm code reaches: physical memory, swap, id allocation, uffd hooks. */
export interface MmCore {
  /**
   * Whoever holds frame references outside page tables and caches reports them here, including
   * a syscall that holds them across a sleep (a GUP waiting on a userfault, a COPY faulting its
   * source in), so that Kernel.checkInvariants() holds whenever it is called.
   */
  readonly refHolders: Set<RefHolder>;
  readonly mem: PhysMem;
  readonly swap: SwapDevice | null;
  readonly uffd: UffdMmHooks;
  /** vm.mmap_min_addr (mm/util.c:mmap_min_addr), page-aligned. */
  readonly mmapMinAddr: number;
  nextAnonVmaId(): number;
  /** vm.max_map_count (KernelOptions.maxMapCount). */
  readonly maxMapCount: number;
  /** vm.overcommit_memory (KernelOptions.overcommitMemory): 0 heuristic, 1 always. */
  readonly overcommitMemory: 0 | 1;
  /** The release's copy-on-write rules (KernelOptions.release; docs/releases.md). */
  readonly cow: CowPolicy;
  /** The release's other mm rules (pagemap bit 57, uffd-wp across fork; docs/releases.md). */
  readonly mmRules: MmRules;
  /** Called when a vma of a shmem inode goes away: frees the inode once nothing refers to it. */
  inodeUnreferenced(inode: ShmemInode): void;
}

export class Mm {
  readonly core: MmCore;
  /**
   * The vma tree (mm->mm_mt): vmas keyed by start, sorted, never overlapping; a B+ tree, so
   * lookup, insert, remove, split and merge cost O(log n). Change only through the methods below
   * (a vma's start never changes while it is in the tree; its end only through them, or grows).
   */
  readonly #tree = new BTree<number, Vma>();
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
  /** Scratch pair for the tree's neighbour queries (no allocation per lookup). */
  readonly #pair: [number, Vma] = [0, null as unknown as Vma];
  /**
   * The top-down search cache (the free_area_cache of old Linux, exact here): every gap in
   * [#searchTop, MMAP_BASE) is smaller than #gapMax, so a request for more than that starts its
   * search at #searchTop. Anything that opens a gap at or above it resets both.
   */
  #searchTop = MMAP_BASE;
  #gapMax = 0;

  constructor(core: MmCore) {
    this.core = core;
  }

  get alive(): boolean {
    return this.users > 0;
  }

  /** mm->map_count: how many vmas the mm has. */
  get mapCount(): number {
    return this.#tree.size;
  }

  /** Every vma in address order (a copy: O(n); for whole-mm walks such as fork, smaps, exit). */
  get vmas(): Vma[] {
    return this.#tree.valuesArray();
  }

  /** Whether this very vma is in the tree (it may have been merged away or unmapped). */
  hasVma(vma: Vma): boolean {
    return this.#tree.get(vma.start) === vma;
  }

  /** find_vma(): the first vma ending above addr (it may start above addr). */
  findVma(addr: number): Vma | null {
    const below = this.#tree.getPairOrNextLower(addr, this.#pair);
    if (below !== undefined && below[1].end > addr) return below[1];
    const above = this.#tree.nextHigherPair(addr, this.#pair);
    return above === undefined ? null : above[1];
  }

  /** vma_lookup(): the vma containing addr. */
  vmaLookup(addr: number): Vma | null {
    const last = this.#lastVma;
    if (last !== null && addr >= last.start && addr < last.end) return last;
    const below = this.#tree.getPairOrNextLower(addr, this.#pair);
    if (below === undefined || below[1].end <= addr) return null;
    this.#lastVma = below[1];
    return below[1];
  }

  /** The vma right after `vma` in address order, or null. */
  nextVma(vma: Vma): Vma | null {
    return this.#tree.nextHigherPair(vma.start, this.#pair)?.[1] ?? null;
  }

  /** The vma right before `vma` in address order, or null. */
  prevVma(vma: Vma): Vma | null {
    return this.#tree.nextLowerPair(vma.start, this.#pair)?.[1] ?? null;
  }

  /** The vmas intersecting [start, end), in address order. */
  vmasIn(start: number, end: number): Vma[] {
    const out: Vma[] = [];
    for (let v = this.findVma(start); v !== null && v.start < end; v = this.nextVma(v)) out.push(v);
    return out;
  }

  /** Whether [start, end) is fully covered by vmas with no gap. */
  rangeFullyMapped(start: number, end: number): boolean {
    let at = start;
    for (let v = this.findVma(start); v !== null && v.start < end; v = this.nextVma(v)) {
      if (v.start > at) return false;
      at = v.end;
      if (at >= end) return true;
    }
    return at >= end;
  }

  insertVma(vma: Vma): void {
    BUG_ON(vma.start >= vma.end || vma.start % PAGE_SIZE !== 0 || vma.end % PAGE_SIZE !== 0, `bad vma [${vma.start}, ${vma.end})`);
    const next = this.findVma(vma.start);
    BUG_ON(next !== null && next.start < vma.end, `vma [${vma.start.toString(16)}, ${vma.end.toString(16)}) overlaps`);
    this.#tree.set(vma.start, vma);
    vma.mm = this;
    vma.file?.mappings.add(vma);
  }

  removeVma(vma: Vma): void {
    this.#gapOpened(vma.end);
    this.#detach(vma);
  }

  /** Takes a vma out of the tree without opening a gap (a merge that covers it). */
  #detach(vma: Vma): void {
    BUG_ON(this.#tree.get(vma.start) !== vma, "removing a vma that is not in the mm");
    this.#tree.delete(vma.start);
    if (this.#lastVma === vma) this.#lastVma = null;
    if (vma.file !== null) {
      vma.file.mappings.delete(vma);
      this.core.inodeUnreferenced(vma.file);
    }
  }

  /** Address space up to `end` became free: the top-down search cache no longer holds above it. */
  #gapOpened(end: number): void {
    if (end > this.#searchTop) {
      this.#searchTop = MMAP_BASE;
      this.#gapMax = 0;
    }
  }

  /**
   * Mirrors mm/vma.c:__split_vma(): splits vma at addr; `vma` keeps [start, addr) and the new vma
   * [addr, end) is returned (already inserted). No map count check (callers that must, check
   * mayAddVmas() first, as split_vma() does).
   */
  splitVma(vma: Vma, addr: number): Vma {
    BUG_ON(addr <= vma.start || addr >= vma.end || addr % PAGE_SIZE !== 0, "split outside the vma");
    const tail = vma.clone(addr, vma.end);
    vma.end = addr;
    this.#tree.set(addr, tail);
    tail.file?.mappings.add(tail);
    return tail;
  }

  /** vm.max_map_count: whether `n` more vmas may be made (split_vma()'s map_count >= max check). */
  mayAddVmas(n: number): boolean {
    return n <= 0 || this.mapCount + n - 1 < this.core.maxMapCount;
  }

  /** How many splits isolateRange(start, end) would make (0, 1 or 2). */
  splitsFor(start: number, end: number): number {
    let n = 0;
    const first = this.vmaLookup(start);
    if (first !== null && first.start < start) n++;
    const last = this.vmaLookup(end - 1);
    if (last !== null && last.end > end) n++;
    return n;
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
    BUG_ON(!this.hasVma(vma), "merging a vma that is not in the mm");
    let cur = vma;
    const prev = this.prevVma(cur);
    if (prev !== null && Mm.canMerge(prev, cur)) {
      this.#detach(cur);
      prev.end = cur.end;
      prev.flags = (prev.flags | (cur.flags & VM_STICKY)) >>> 0;
      if (prev.anonVma === 0) prev.anonVma = cur.anonVma;
      cur = prev;
    }
    const next = this.nextVma(cur);
    if (next !== null && Mm.canMerge(cur, next)) {
      this.#detach(next);
      cur.end = next.end;
      cur.flags = (cur.flags | (next.flags & VM_STICKY)) >>> 0;
      if (cur.anonVma === 0) cur.anonVma = next.anonVma;
    }
    return cur;
  }

  /** Merges every vma intersecting [start, end] with its neighbours. */
  mergeRange(start: number, end: number): void {
    let v = this.findVma(Math.max(0, start - 1));
    while (v !== null && v.start <= end) {
      const merged = this.mergeAround(v);
      v = this.nextVma(merged);
    }
  }

  /** anon_vma_prepare(). */
  anonVmaPrepare(vma: Vma): void {
    if (vma.anonVma === 0) vma.anonVma = this.core.nextAnonVmaId();
  }

  /**
   * Mirrors mm/mmap.c:unmapped_area_topdown(): the highest free range of len bytes below
   * MMAP_BASE, or -1. A free, in-range hint is used as is (the non-MAP_FIXED hint rule).
   * The walk starts below the gaps a previous search already found too small (#searchTop).
   */
  getUnmappedArea(len: number, hint: number): number {
    const minAddr = this.core.mmapMinAddr;
    if (len > TASK_SIZE - minAddr) return -1;
    if (hint !== 0) {
      const addr = Math.ceil(hint / PAGE_SIZE) * PAGE_SIZE;
      if (addr >= minAddr && addr + len <= TASK_SIZE) {
        const next = this.findVma(addr);
        if (next === null || next.start >= addr + len) return addr;
      }
    }
    const fromCache = len > this.#gapMax;
    let high = fromCache ? this.#searchTop : MMAP_BASE;
    let gapMax = fromCache ? this.#gapMax : 0;
    // A vma straddling `high` (a MAP_FIXED mapping across MMAP_BASE) bounds the first gap too.
    let v = this.findVma(high - 1);
    if (v !== null && v.start < high) {
      high = v.start;
      v = this.prevVma(v);
    } else {
      v = v === null ? this.#lastBelow(high) : this.prevVma(v);
    }
    for (;;) {
      const low = v === null ? minAddr : v.end;
      if (high - low >= len) {
        // Every gap walked above `high` was too small; the found gap itself stays below the cache
        // (the mmap may yet fail and leave it free).
        this.#searchTop = high;
        this.#gapMax = gapMax;
        return high - len;
      }
      gapMax = Math.max(gapMax, high - low);
      if (v === null) return -1;
      high = v.start;
      v = this.prevVma(v);
    }
  }

  /** The last vma starting below addr, or null. */
  #lastBelow(addr: number): Vma | null {
    return this.#tree.nextLowerPair(addr, this.#pair)?.[1] ?? null;
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
