/**
 * Physical memory: 4 KiB frames with the struct page fields the simulation needs, kept as
 * parallel typed arrays (one slot per pfn) so a resident page costs a few dozen bytes of
 * metadata, and the bytes carved out of pooled ArrayBuffers (chunks of 256 frames, 1 MiB).
 * Untouched memory costs nothing: a chunk exists only once a frame in it has been handed out.
 *
 * Chunks can outlive their kernel: a tool that creates a kernel per run and knows when a run is
 * over (explore() of @uffd/testing) hands the kernel's chunks to a process-wide pool with
 * releaseToPool() (zeroed where they were used), and the next kernel takes them from there, so a
 * kernel per explored seed does not pay the host's first-touch page faults (one per 4 KiB of a
 * fresh ArrayBuffer) and a 1 MiB allocation over and over. `setFramePoolLimit()` bounds the pool;
 * `KernelOptions.pretouch` takes and touches a kernel's chunks up front. (Returning chunks from
 * a FinalizationRegistry instead made every kernel 2-3x dearer to create and collect: measured,
 * see docs/benchmarks.md.)
 *
 * Mirrors include/linux/mm_types.h:struct page / struct folio (order-0 folios only: the
 * simulation has no THP or hugetlb, see docs/divergences.md).
 *
 * Field rules:
 * - `refcount` is folio_ref_count(): one per mapping pte, one for the page cache or swap cache,
 *   one per get_user_pages reference (a pipe buffer from vmsplice), GUP_PIN_COUNTING_BIAS per
 *   FOLL_PIN. Change it only through folioGet()/folioPut()/folioPin()/folioUnpin().
 * - `mapcount` is the number of ptes mapping the frame (folio_mapcount, counting from 0, not
 *   Linux's -1 bias). The zero page is never counted (vm_normal_page() is NULL for it).
 * - `pincount` is our own record of FOLL_PIN references, so checkInvariants() can recount them;
 *   kernel logic reads pins only through folioMaybeDmaPinned(), as Linux does.
 */
import { BUG, BUG_ON } from "../lib/assert.ts";
import { PAGE_SHIFT, PAGE_SIZE } from "../uapi/mman.ts";

export type Pfn = number;

/** Page flags (include/linux/page-flags.h), our bit layout. */
export const PG = {
  anon: 1 << 0,
  anonExclusive: 1 << 1,
  dirty: 1 << 2,
  uptodate: 1 << 3,
  swapbacked: 1 << 4,
  swapcache: 1 << 5,
  lru: 1 << 6,
  reserved: 1 << 7,
  lazyfree: 1 << 8,
  hwpoison: 1 << 9,
} as const;

/** include/linux/mm.h:GUP_PIN_COUNTING_BIAS. */
export const GUP_PIN_COUNTING_BIAS = 1024;

const CHUNK_SHIFT = 8; // 256 frames = 1 MiB per chunk: a new kernel costs 1 MiB up front, not 16 (explore() builds thousands)
const CHUNK_FRAMES = 1 << CHUNK_SHIFT;
const CHUNK_MASK = CHUNK_FRAMES - 1;
const CHUNK_BYTES = CHUNK_FRAMES * PAGE_SIZE;

/** A kernel's chunks and how far its bump allocator got (what releaseToPool() hands over). */
interface ChunkSet {
  readonly chunks: Uint8Array[];
  /** The PhysMem's next never-used pfn: frames below it may hold bytes. */
  used: number;
}

/** Already-touched chunks, zeroed, free for the next kernel of this process (LIFO). */
const chunkPool: Uint8Array[] = [];
/** How many chunks the pool keeps (the rest are left to the GC). */
let poolLimitChunks = 256;

function returnChunks(set: ChunkSet): void {
  const { chunks } = set;
  for (let i = 0; i < chunks.length; i++) {
    if (chunkPool.length >= poolLimitChunks) break;
    const c = chunks[i] as Uint8Array;
    // Only the frames the kernel handed out can hold bytes; the rest of a chunk is still zero.
    const usedBytes = Math.min(CHUNK_BYTES, Math.max(0, set.used - i * CHUNK_FRAMES) * PAGE_SIZE);
    if (usedBytes > 0) c.fill(0, 0, usedBytes);
    chunkPool.push(c);
  }
  chunks.length = 0;
}

/** A zeroed chunk: from the pool if it has one (touched already), else a new ArrayBuffer. */
function takeChunk(): Uint8Array {
  return chunkPool.pop() ?? new Uint8Array(CHUNK_BYTES);
}

/** Writes one byte per host page, so the host maps the chunk now rather than on first use. */
function touchChunk(c: Uint8Array): void {
  for (let o = 0; o < c.length; o += 4096) c[o] = 0;
}

/**
 * Bounds the process-wide pool of frame chunks kept for the next kernels (default 256 MiB);
 * 0 disables it. Returns the previous limit. The pool changes timing and host memory only,
 * never what a simulated kernel does.
 */
export function setFramePoolLimit(bytes: number): number {
  const before = poolLimitChunks * CHUNK_BYTES;
  if (!(bytes >= 0)) throw new RangeError(`frame pool limit must be a byte count >= 0, got ${bytes}`);
  poolLimitChunks = Math.floor(bytes / CHUNK_BYTES);
  chunkPool.length = Math.min(chunkPool.length, poolLimitChunks);
  return before;
}

/** Bytes of chunks the pool holds right now. */
export function framePoolBytes(): number {
  return chunkPool.length * CHUNK_BYTES;
}

export class PhysMem {
  /** Frames the machine has (KernelOptions.memoryPages). */
  readonly totalFrames: number;
  refcount: Int32Array;
  mapcount: Int32Array;
  pincount: Int32Array;
  flags: Uint16Array;
  /** For page-cache pages: the owning inode's id; 0 otherwise. */
  mapping: Int32Array;
  /** For page-cache pages: the page offset in the file; for swap-cache pages: the swap slot. */
  index: Float64Array;
  readonly #chunks: Uint8Array[];
  readonly #set: ChunkSet;
  #freeList: Int32Array;
  #freeCount = 0;
  /** The next never-used pfn. */
  #nextPfn = 0;
  /** Frames currently allocated (including the zero page). */
  inUse = 0;
  readonly zeroPfn: Pfn;

  /**
   * `pretouch` frames (0 by default) get their chunks now, touched, so the host's first-touch
   * faults do not land in the first operations that allocate them.
   */
  constructor(totalFrames: number, pretouch = 0) {
    BUG_ON(totalFrames < 2 || totalFrames > 1 << 24, `memoryPages must be within [2, 2^24], got ${totalFrames}`);
    this.totalFrames = totalFrames;
    this.#chunks = [];
    this.#set = { chunks: this.#chunks, used: 0 };
    const touched = Math.min(totalFrames, Math.max(0, Math.floor(pretouch)));
    while (this.#chunks.length * CHUNK_FRAMES < touched) {
      const c = takeChunk();
      touchChunk(c);
      this.#chunks.push(c);
    }
    const initial = Math.min(totalFrames, 256); // a kernel per explored seed uses a handful
    this.refcount = new Int32Array(initial);
    this.mapcount = new Int32Array(initial);
    this.pincount = new Int32Array(initial);
    this.flags = new Uint16Array(initial);
    this.mapping = new Int32Array(initial);
    this.index = new Float64Array(initial);
    this.#freeList = new Int32Array(256);
    const zero = this.allocFrame(true);
    BUG_ON(zero < 0, "no frame for the zero page");
    this.zeroPfn = zero;
    this.flags[zero] = PG.reserved | PG.uptodate;
  }

  /** Capacity of the metadata arrays; grows by a quarter up to totalFrames. */
  get capacity(): number {
    return this.refcount.length;
  }

  /**
   * Grows the metadata arrays by a quarter (at least 1024 frames): at most a quarter of the
   * 26 bytes per frame is spare, and the copies stay amortized O(1) per frame.
   */
  #grow(): void {
    const cap = Math.min(this.totalFrames, Math.ceil((this.capacity * 1.25) / 1024) * 1024);
    const grow = <T extends Int32Array | Uint16Array | Float64Array>(a: T, make: (n: number) => T): T => {
      const b = make(cap);
      b.set(a);
      return b;
    };
    this.refcount = grow(this.refcount, (n) => new Int32Array(n));
    this.mapcount = grow(this.mapcount, (n) => new Int32Array(n));
    this.pincount = grow(this.pincount, (n) => new Int32Array(n));
    this.flags = grow(this.flags, (n) => new Uint16Array(n));
    this.mapping = grow(this.mapping, (n) => new Int32Array(n));
    this.index = grow(this.index, (n) => new Float64Array(n));
  }

  /**
   * Allocates a frame with refcount 1 and no flags, or returns -1 when physical memory is
   * exhausted. `zero` asks for zeroed bytes (__GFP_ZERO); otherwise the caller overwrites them.
   */
  allocFrame(zero: boolean): Pfn {
    let pfn: number;
    if (this.#freeCount > 0) {
      pfn = this.#freeList[--this.#freeCount] as number;
    } else {
      if (this.#nextPfn >= this.totalFrames) return -1;
      pfn = this.#bumpFrame();
      zero = false; // a never-used frame is zero already
    }
    this.refcount[pfn] = 1;
    this.mapcount[pfn] = 0;
    this.pincount[pfn] = 0;
    this.flags[pfn] = PG.uptodate;
    this.mapping[pfn] = 0;
    this.index[pfn] = 0;
    this.inUse++;
    if (zero) this.bytes(pfn).fill(0, this.offset(pfn), this.offset(pfn) + PAGE_SIZE);
    return pfn;
  }

  /** The next never-used frame (the caller checked there is one): metadata room and its chunk. */
  #bumpFrame(): Pfn {
    const pfn = this.#nextPfn++;
    this.#set.used = this.#nextPfn;
    if (pfn >= this.capacity) this.#grow();
    if (this.#chunks.length <= pfn >>> CHUNK_SHIFT) this.#chunks.push(takeChunk());
    return pfn;
  }

  /**
   * Allocates up to `n` frames for one multi-page fill, refcount 1 and no flags like
   * allocFrame(false) (the caller overwrites every byte), into out[0..count), and returns the
   * count (less than n only when physical memory runs out). The frames come in an order that
   * makes neighbours in `out` neighbours in memory where it can: the most recently freed frames
   * in the order they were freed (a range zapped in address order comes back in address order),
   * then never-used frames in pfn order, so a fill into fresh memory copies each contiguous run
   * of frames with one copy (see runLength()).
   */
  allocFrames(n: number, out: Int32Array): number {
    const fromFree = Math.min(n, this.#freeCount);
    const base = this.#freeCount - fromFree;
    for (let k = 0; k < fromFree; k++) out[k] = this.#freeList[base + k] as number;
    this.#freeCount = base;
    let count = fromFree;
    while (count < n && this.#nextPfn < this.totalFrames) out[count++] = this.#bumpFrame();
    for (let k = 0; k < count; k++) {
      const pfn = out[k] as number;
      this.refcount[pfn] = 1;
      this.mapcount[pfn] = 0;
      this.pincount[pfn] = 0;
      this.flags[pfn] = PG.uptodate;
      this.mapping[pfn] = 0;
      this.index[pfn] = 0;
    }
    this.inUse += count;
    return count;
  }

  /**
   * How many of pfns[from..to) follow pfns[from] contiguously in one chunk (so their bytes are
   * one range of bytes(pfns[from])).
   */
  static runLength(pfns: Int32Array, from: number, to: number): number {
    const first = pfns[from] as number;
    let k = from + 1;
    while (k < to && pfns[k] === first + (k - from) && (pfns[k] as number) >>> CHUNK_SHIFT === first >>> CHUNK_SHIFT) k++;
    return k - from;
  }

  #freeFrame(pfn: Pfn): void {
    // `if ... BUG()` rather than BUG_ON(): the message is built only when the check fails (a hot path).
    if (this.mapcount[pfn] !== 0) BUG(`freeing pfn ${pfn} with mapcount ${this.mapcount[pfn]}`);
    if (pfn === this.zeroPfn) BUG("freeing the zero page");
    this.flags[pfn] = 0;
    this.mapping[pfn] = 0;
    if (this.#freeCount === this.#freeList.length) {
      const bigger = new Int32Array(this.#freeList.length * 2);
      bigger.set(this.#freeList);
      this.#freeList = bigger;
    }
    this.#freeList[this.#freeCount++] = pfn;
    this.inUse--;
  }

  /**
   * Hands this machine's chunks to the process-wide pool (for tools that create a kernel per run
   * and know when a run is over, like @uffd/testing's explore()). The kernel must not be used
   * afterwards: its frames have no bytes any more (an access throws a TypeError).
   */
  releaseToPool(): void {
    returnChunks(this.#set);
  }

  /** Frames available to allocate. */
  get freeFrames(): number {
    return this.totalFrames - this.inUse;
  }

  /** The chunk holding a frame's bytes; the frame starts at offset(pfn). */
  bytes(pfn: Pfn): Uint8Array {
    return this.#chunks[pfn >>> CHUNK_SHIFT] as Uint8Array;
  }

  offset(pfn: Pfn): number {
    return (pfn & CHUNK_MASK) << PAGE_SHIFT;
  }

  /** A copy of a frame's bytes. */
  readPage(pfn: Pfn, off = 0, len = PAGE_SIZE): Uint8Array {
    const o = this.offset(pfn) + off;
    return this.bytes(pfn).slice(o, o + len);
  }

  /** copy_highpage(). */
  copyPage(dst: Pfn, src: Pfn): void {
    const s = this.bytes(src);
    const so = this.offset(src);
    this.bytes(dst).set(s.subarray(so, so + PAGE_SIZE), this.offset(dst));
  }

  /** Bytes of pooled chunks allocated so far (external memory the simulation holds). */
  get poolBytes(): number {
    return this.#chunks.length * CHUNK_FRAMES * PAGE_SIZE;
  }

  /** Pfns ever handed out, for walks over all frames (checkInvariants). */
  get highestPfn(): number {
    return this.#nextPfn;
  }

  isFree(pfn: Pfn): boolean {
    return pfn !== this.zeroPfn && this.refcount[pfn] === 0;
  }

  // --- reference counting: folio_get / folio_put / pins ----------------------------------

  /** Mirrors include/linux/mm.h:folio_get(). */
  folioGet(pfn: Pfn): void {
    if (pfn === this.zeroPfn) return;
    this.refcount[pfn]!++;
  }

  /** Mirrors include/linux/mm.h:folio_put(): the last reference frees the frame. */
  folioPut(pfn: Pfn): void {
    if (pfn === this.zeroPfn) return;
    const r = --this.refcount[pfn]!;
    if (r < 0) BUG(`refcount underflow on pfn ${pfn}`);
    if (r === 0) this.#freeFrame(pfn);
  }

  /** One FOLL_PIN on a small folio: GUP_PIN_COUNTING_BIAS references (mm/gup.c:try_grab_folio()). */
  folioPin(pfn: Pfn): void {
    BUG_ON(pfn === this.zeroPfn, "pinning the zero page is not modelled");
    this.refcount[pfn]! += GUP_PIN_COUNTING_BIAS;
    this.pincount[pfn]!++;
  }

  /** Mirrors mm/gup.c:unpin_user_page(). */
  folioUnpin(pfn: Pfn): void {
    BUG_ON(this.pincount[pfn]! <= 0, `unpinning unpinned pfn ${pfn}`);
    this.pincount[pfn]!--;
    this.refcount[pfn]! -= GUP_PIN_COUNTING_BIAS - 1;
    this.folioPut(pfn);
  }

  /**
   * Mirrors include/linux/mm.h:folio_maybe_dma_pinned() for small folios: the refcount is at
   * least the pin bias. False positives (1024 plain references) are allowed, as in Linux.
   */
  folioMaybeDmaPinned(pfn: Pfn): boolean {
    return (this.refcount[pfn] as number) >= GUP_PIN_COUNTING_BIAS;
  }

  testFlag(pfn: Pfn, flag: number): boolean {
    return ((this.flags[pfn] as number) & flag) !== 0;
  }

  setFlag(pfn: Pfn, flag: number): void {
    this.flags[pfn] = (this.flags[pfn] as number) | flag;
  }

  clearFlag(pfn: Pfn, flag: number): void {
    this.flags[pfn] = (this.flags[pfn] as number) & ~flag;
  }

  folioTestAnon(pfn: Pfn): boolean {
    return this.testFlag(pfn, PG.anon);
  }

  pageAnonExclusive(pfn: Pfn): boolean {
    return this.testFlag(pfn, PG.anonExclusive);
  }
}
