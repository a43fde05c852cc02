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
 * A compact store (KernelOptions.frameStore "compact", see FrameStoreKind) keeps the same
 * metadata but not a 4 KiB slot per frame: a frame's bytes are nothing (all zero), a generated
 * descriptor (a registered FrameGenerator and three arguments, its bytes produced on demand), or
 * a slot in a pool that only frames written with other bytes hold. What any path reads or writes
 * is byte for byte what the flat store holds; only the host memory differs.
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
import * as mman from "../uapi/mman.ts";

// Module-local copies (V8 folds a module-local const; an imported binding is read through its
// module cell at every use).
const PAGE_SHIFT = mman.PAGE_SHIFT;
const PAGE_SIZE = mman.PAGE_SIZE;

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

/** A new exclusive anon page's flags: PG_uptodate (allocFrame()) and folio_add_new_anon_rmap()'s. */
const NEW_ANON_PAGE_FLAGS = PG.uptodate | PG.anon | PG.swapbacked | PG.lru | PG.anonExclusive;

/** include/linux/mm.h:GUP_PIN_COUNTING_BIAS. */
export const GUP_PIN_COUNTING_BIAS = 1024;

const CHUNK_SHIFT = 8; // 256 frames = 1 MiB per chunk: a new kernel costs 1 MiB up front, not 16 (explore() builds thousands)
const CHUNK_FRAMES = 1 << CHUNK_SHIFT;
const CHUNK_MASK = CHUNK_FRAMES - 1;
const CHUNK_BYTES = CHUNK_FRAMES * PAGE_SIZE;

/**
 * %TypedArray%.prototype.set, called on a chunk by writePage(): in the optimized fault path V8
 * looked `set` up through a generic LoadIC at every call (about 80 instructions); a call of the
 * function itself skips the lookup.
 */
const typedArraySet = Uint8Array.prototype.set;

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

/**
 * Where frame bytes live. "flat" (the default): every frame has its own 4 KiB in a pooled chunk.
 * "compact": frames hold no bytes while they are all zero or equal to a registered generator's
 * output (PhysMem.registerGenerator()); a write with other bytes gives the frame a slot from a
 * pool, and a frame whose bytes become all zero or a generator's output again gives it back.
 */
export type FrameStoreKind = "flat" | "compact";

/**
 * Page contents that are a pure function of three 32-bit arguments, registered with a compact
 * frame store (Kernel.registerFrameGenerator()). A frame written with exactly the bytes fill()
 * produces for some arguments is kept as those arguments instead of 4 KiB.
 */
export interface FrameGenerator {
  /** Writes the page for (a, b, c) into out (1024 words, little-endian bytes). Must be pure. */
  fill(out: Uint32Array, a: number, b: number, c: number): void;
  /**
   * Guesses which arguments produce `page` (1024 words): writes them to args[0..3) and returns
   * true, or returns false. Only a guess: the store keeps the frame compact only when fill()
   * for the guessed arguments yields every byte of the page.
   */
  identify(page: Uint32Array, args: Uint32Array): boolean;
}

/** A compact frame's store kind: no bytes (all zero). */
const STORE_ZERO = 0;
/** A compact frame's store kind: its bytes are in slot args[3 * pfn]. */
const STORE_SLOT = 1;
/** Store kinds from here on are generator ids (kind - STORE_GEN0 indexes the generators). */
const STORE_GEN0 = 2;
const MAX_GENERATORS = 255 - STORE_GEN0;

/** Counts of a compact store's frames by how their bytes are held (PhysMem.storeStats()). */
export interface FrameStoreStats {
  /** Allocated frames (the zero page excluded) with no bytes: all zero. */
  zeroFrames: number;
  /** Allocated frames held as a generator's arguments. */
  generatedFrames: number;
  /** Allocated frames with a slot of their own bytes. */
  slotFrames: number;
  /** Host bytes of slot chunks allocated so far (slots are reused, chunks are kept). */
  slotPoolBytes: number;
}

/** Whether a[at..at + 1024) equals b[0..1024). */
function sameWords(a: Uint32Array, at: number, b: Uint32Array): boolean {
  for (let k = 0; k < 1024; k++) if (a[at + k] !== b[k]) return false;
  return true;
}

/** How many of pfns[from..to) follow pfns[from] contiguously in one flat chunk. */
function runLength(pfns: Int32Array, from: number, to: number): number {
  const first = pfns[from] as number;
  let k = from + 1;
  while (k < to && pfns[k] === first + (k - from) && (pfns[k] as number) >>> CHUNK_SHIFT === first >>> CHUNK_SHIFT) k++;
  return k - from;
}

export class PhysMem {
  /** Frames the machine has (KernelOptions.memoryPages). */
  readonly totalFrames: number = 0;
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
  readonly zeroPfn: Pfn = 0;
  /** True for the compact store (KernelOptions.frameStore "compact"): see FrameStoreKind. */
  readonly compact: boolean;
  /** Compact store: each frame's store kind (STORE_ZERO, STORE_SLOT or a generator id). */
  #kind: Uint8Array = new Uint8Array(0);
  /** Compact store: three words per frame, a generator's arguments or [slot, 0, 0]. */
  #args: Uint32Array = new Uint32Array(0);
  readonly #generators: FrameGenerator[] = [];
  readonly #slotChunks: Uint8Array[] = [];
  /** The same chunks as words (for comparisons a word at a time). */
  readonly #slotWords: Uint32Array[] = [];
  #slotFree: Int32Array = new Int32Array(0);
  #slotFreeCount = 0;
  #slotNext = 0;
  #slotFrames = 0;
  #generatedFrames = 0;
  /** What bytes() returns for a compact frame with no slot; its contents are the cache key below. */
  readonly #scratch = new Uint8Array(PAGE_SIZE);
  readonly #scratchWords = new Uint32Array(this.#scratch.buffer);
  /** The store kind and arguments the scratch page holds (-1: nothing valid). */
  #scratchKind = -1;
  #scratchA = 0;
  #scratchB = 0;
  #scratchC = 0;
  /** A page of zeros bytes() returns for compact frames without bytes; nothing may write it. */
  readonly #zeros = new Uint8Array(PAGE_SIZE);
  readonly #guess = new Uint32Array(3);

  /**
   * `pretouch` frames (0 by default) get their chunks now, touched, so the host's first-touch
   * faults do not land in the first operations that allocate them.
   */
  constructor(totalFrames: number, pretouch = 0, store: FrameStoreKind = "flat") {
    BUG_ON(totalFrames < 2 || totalFrames > 1 << 24, `memoryPages must be within [2, 2^24], got ${totalFrames}`);
    this.totalFrames = totalFrames;
    this.compact = store === "compact";
    this.#chunks = [];
    this.#set = { chunks: this.#chunks, used: 0 };
    const touched = this.compact ? 0 : Math.min(totalFrames, Math.max(0, Math.floor(pretouch)));
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
    if (this.compact) {
      this.#kind = new Uint8Array(initial);
      this.#args = new Uint32Array(initial * 3);
      this.#slotFree = new Int32Array(256);
    }
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
    if (this.compact) {
      const kind = new Uint8Array(cap);
      kind.set(this.#kind);
      this.#kind = kind;
      const args = new Uint32Array(cap * 3);
      args.set(this.#args);
      this.#args = args;
    }
  }

  /**
   * Allocates a frame with refcount 1 and no flags, or returns -1 when physical memory is
   * exhausted. `zero` asks for zeroed bytes (__GFP_ZERO); otherwise the caller overwrites them.
   */
  allocFrame(zero: boolean): Pfn {
    if (this.#freeCount === 0) zero = false; // a never-used frame is zero already
    const pfn = this.#takeFrame();
    if (pfn < 0) return -1;
    this.refcount[pfn] = 1;
    this.mapcount[pfn] = 0;
    this.pincount[pfn] = 0;
    this.flags[pfn] = PG.uptodate;
    this.mapping[pfn] = 0;
    this.index[pfn] = 0;
    this.inUse++;
    if (this.compact) return pfn; // a free compact frame holds no bytes: it reads as zeros
    if (zero) this.bytes(pfn).fill(0, this.offset(pfn), this.offset(pfn) + PAGE_SIZE);
    return pfn;
  }

  /**
   * allocFrame(false), writePage(pfn, page) and what folio_add_new_anon_rmap() with
   * RMAP_EXCLUSIVE does to the new frame (PG_anon, PG_swapbacked, PG_lru, PageAnonExclusive,
   * mapcount 1, index `index`), in one call that writes each metadata word once, in its final
   * state: the one-page UFFDIO_COPY (mfillCopyAnonPage()). The caller counts the mm's rss. Returns
   * -1, changing nothing, when physical memory is exhausted.
   */
  allocAnonPage(page: Uint8Array, index: number): Pfn {
    const pfn = this.#takeFrame();
    if (pfn < 0) return -1;
    this.refcount[pfn] = 1;
    this.mapcount[pfn] = 1;
    this.pincount[pfn] = 0;
    this.flags[pfn] = NEW_ANON_PAGE_FLAGS;
    this.mapping[pfn] = 0;
    this.index[pfn] = index;
    this.inUse++;
    if (!this.compact) typedArraySet.call(this.#chunks[pfn >>> CHUNK_SHIFT] as Uint8Array, page, (pfn & CHUNK_MASK) << PAGE_SHIFT);
    else this.writePage(pfn, page);
    return pfn;
  }

  /** The most recently freed frame, else the next never-used one; -1 when there is neither. */
  #takeFrame(): Pfn {
    if (this.#freeCount > 0) return this.#freeList[--this.#freeCount] as number;
    return this.#nextPfn < this.totalFrames ? this.#bumpFrame() : -1;
  }

  /** The next never-used frame (the caller checked there is one): metadata room and its chunk. */
  #bumpFrame(): Pfn {
    const pfn = this.#nextPfn++;
    this.#set.used = this.#nextPfn;
    if (pfn >= this.capacity) this.#grow();
    if (!this.compact && this.#chunks.length <= pfn >>> CHUNK_SHIFT) this.#chunks.push(takeChunk());
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
    return runLength(pfns, from, to);
  }

  /**
   * runLength() for this store: a compact store keeps no frame's bytes next to another's, so
   * every run is one frame long.
   */
  runLength(pfns: Int32Array, from: number, to: number): number {
    return this.compact ? 1 : runLength(pfns, from, to);
  }

  #freeFrame(pfn: Pfn): void {
    // `if ... BUG()` rather than BUG_ON(): the message is built only when the check fails (a hot path).
    if (this.mapcount[pfn] !== 0) BUG(`freeing pfn ${pfn} with mapcount ${this.mapcount[pfn]}`);
    if (pfn === this.zeroPfn) BUG("freeing the zero page");
    this.flags[pfn] = 0;
    this.mapping[pfn] = 0;
    if (this.compact) this.#setZero(pfn);
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

  /**
   * A frame's bytes for reading: the array holding them, the frame starting at offset(pfn). For
   * a compact frame without a slot it is a page shared by all such frames (zeros, or the
   * generator's output produced now), valid until the next bytes() call: copy out of it and never
   * write it (writers use writable()).
   */
  bytes(pfn: Pfn): Uint8Array {
    if (!this.compact) return this.#chunks[pfn >>> CHUNK_SHIFT] as Uint8Array;
    const kind = this.#kind[pfn] ?? STORE_ZERO;
    if (kind === STORE_SLOT) return this.#slotChunks[(this.#args[pfn * 3] as number) >>> CHUNK_SHIFT] as Uint8Array;
    if (kind === STORE_ZERO) return this.#zeros;
    return this.#generate(kind, this.#args[pfn * 3] as number, this.#args[pfn * 3 + 1] as number, this.#args[pfn * 3 + 2] as number);
  }

  /** Where the frame starts in the array bytes(pfn) or writable(pfn) returned. */
  offset(pfn: Pfn): number {
    if (!this.compact) return (pfn & CHUNK_MASK) << PAGE_SHIFT;
    return this.#kind[pfn] === STORE_SLOT ? ((this.#args[pfn * 3] as number) & CHUNK_MASK) << PAGE_SHIFT : 0;
  }

  /**
   * A frame's bytes for writing: the array to write, the frame starting at offset(pfn) (ask for
   * the offset after this call). A compact frame without a slot gets one now, holding its current
   * bytes unless `overwrite` says the caller replaces all 4096 of them. Call written() after the
   * write, so a compact frame can give the slot back.
   */
  writable(pfn: Pfn, overwrite = false): Uint8Array {
    if (!this.compact) return this.#chunks[pfn >>> CHUNK_SHIFT] as Uint8Array;
    if (this.#kind[pfn] !== STORE_SLOT) this.#materialise(pfn, overwrite);
    return this.#slotChunks[(this.#args[pfn * 3] as number) >>> CHUNK_SHIFT] as Uint8Array;
  }

  /**
   * Replaces all 4096 bytes of frame `pfn` by `page` (exactly PAGE_SIZE bytes): writable(pfn,
   * true), the copy and written(pfn) in one call.
   */
  writePage(pfn: Pfn, page: Uint8Array): void {
    if (!this.compact) {
      typedArraySet.call(this.#chunks[pfn >>> CHUNK_SHIFT] as Uint8Array, page, (pfn & CHUNK_MASK) << PAGE_SHIFT);
      return;
    }
    this.writable(pfn, true).set(page, this.offset(pfn));
    this.written(pfn);
  }

  /**
   * A few bytes stored into frame `pfn` at `pageOff` (a user store of at most a few words that
   * fits in the page): src[from, from + n), as writable(pfn), the stores and written(pfn) would
   * write them, in one call.
   */
  storeBytes(pfn: Pfn, pageOff: number, src: Uint8Array, from: number, n: number): void {
    if (!this.compact) {
      const chunk = this.#chunks[pfn >>> CHUNK_SHIFT] as Uint8Array;
      const off = ((pfn & CHUNK_MASK) << PAGE_SHIFT) + pageOff;
      for (let i = 0; i < n; i++) chunk[off + i] = src[from + i]!;
      return;
    }
    // writable() before offset(): a compact frame may get its slot there.
    const bytes = this.writable(pfn, false);
    const off = this.offset(pfn) + pageOff;
    for (let i = 0; i < n; i++) bytes[off + i] = src[from + i]!;
    this.written(pfn);
  }

  /**
   * After a write through writable(): a compact frame whose bytes are now all zero, or exactly a
   * registered generator's output, drops its slot and keeps only that description.
   */
  written(pfn: Pfn): void {
    if (this.compact && this.#kind[pfn] === STORE_SLOT) this.#recompact(pfn);
  }

  /** A copy of a frame's bytes. */
  readPage(pfn: Pfn, off = 0, len = PAGE_SIZE): Uint8Array {
    const o = this.offset(pfn) + off;
    return this.bytes(pfn).slice(o, o + len);
  }

  /** copy_highpage(). A compact store shares the source's description instead of copying bytes. */
  copyPage(dst: Pfn, src: Pfn): void {
    if (this.compact && this.#kind[src] !== STORE_SLOT) {
      this.#setZero(dst);
      const kind = this.#kind[src] as number;
      if (kind >= STORE_GEN0) this.#setGenerated(dst, kind, this.#args[src * 3] as number, this.#args[src * 3 + 1] as number, this.#args[src * 3 + 2] as number);
      return;
    }
    const d = this.writable(dst, true);
    const s = this.bytes(src);
    const so = this.offset(src);
    d.set(s.subarray(so, so + PAGE_SIZE), this.offset(dst));
  }

  /** Bytes of pooled chunks allocated so far (external memory the simulation holds). */
  get poolBytes(): number {
    if (this.compact) return this.#slotChunks.length * CHUNK_BYTES;
    return this.#chunks.length * CHUNK_FRAMES * PAGE_SIZE;
  }

  // --- the compact store ------------------------------------------------------------------

  /**
   * Registers page contents a compact store may keep as arguments instead of bytes, and returns
   * the generator's id. A flat store takes it too and never uses it.
   */
  registerGenerator(generator: FrameGenerator): number {
    if (this.#generators.length >= MAX_GENERATORS) throw new RangeError(`at most ${MAX_GENERATORS} frame generators`);
    this.#generators.push(generator);
    return this.#generators.length - 1;
  }

  /** How a compact store holds its frames right now (all zero for a flat store but slotPoolBytes). */
  storeStats(): FrameStoreStats {
    const slotPoolBytes = this.#slotChunks.length * CHUNK_BYTES;
    if (!this.compact) return { zeroFrames: 0, generatedFrames: 0, slotFrames: 0, slotPoolBytes };
    return { zeroFrames: this.inUse - 1 - this.#generatedFrames - this.#slotFrames, generatedFrames: this.#generatedFrames, slotFrames: this.#slotFrames, slotPoolBytes };
  }

  /**
   * For swap-out from a compact store: false when the frame's bytes are in a slot (the caller
   * copies bytes() as usual); else true with the frame's description in out[0..4) for restore().
   */
  describe(pfn: Pfn, out: Uint32Array): boolean {
    if (!this.compact || this.#kind[pfn] === STORE_SLOT) return false;
    out[0] = this.#kind[pfn] as number;
    out[1] = this.#args[pfn * 3] as number;
    out[2] = this.#args[pfn * 3 + 1] as number;
    out[3] = this.#args[pfn * 3 + 2] as number;
    return true;
  }

  /** For swap-in to a compact store: gives the frame the description describe() returned. */
  restore(pfn: Pfn, desc: Uint32Array): void {
    BUG_ON(!this.compact, "restoring a frame description into a flat store");
    this.#setZero(pfn);
    const kind = desc[0] as number;
    if (kind >= STORE_GEN0) this.#setGenerated(pfn, kind, desc[1] as number, desc[2] as number, desc[3] as number);
  }

  /** The generator's page for (a, b, c) in the scratch page (kept while the arguments repeat). */
  #generate(kind: number, a: number, b: number, c: number): Uint8Array {
    if (this.#scratchKind !== kind || this.#scratchA !== a || this.#scratchB !== b || this.#scratchC !== c) {
      this.#scratchKind = -1;
      this.#scratchWords.fill(0);
      (this.#generators[kind - STORE_GEN0] as FrameGenerator).fill(this.#scratchWords, a, b, c);
      this.#scratchKind = kind;
      this.#scratchA = a;
      this.#scratchB = b;
      this.#scratchC = c;
    }
    return this.#scratch;
  }

  /** Gives a compact frame without a slot one, with its bytes unless `overwrite`. */
  #materialise(pfn: Pfn, overwrite: boolean): void {
    let slot: number;
    let fresh = false;
    if (this.#slotFreeCount > 0) slot = this.#slotFree[--this.#slotFreeCount] as number;
    else {
      slot = this.#slotNext++;
      fresh = true;
      if (this.#slotChunks.length <= slot >>> CHUNK_SHIFT) {
        const chunk = new Uint8Array(CHUNK_BYTES);
        this.#slotChunks.push(chunk);
        this.#slotWords.push(new Uint32Array(chunk.buffer));
      }
    }
    const chunk = this.#slotChunks[slot >>> CHUNK_SHIFT] as Uint8Array;
    const off = (slot & CHUNK_MASK) << PAGE_SHIFT;
    const kind = this.#kind[pfn] as number;
    if (!overwrite) {
      if (kind >= STORE_GEN0) chunk.set(this.bytes(pfn), off);
      else if (!fresh) chunk.fill(0, off, off + PAGE_SIZE);
    }
    if (kind >= STORE_GEN0) this.#generatedFrames--;
    this.#kind[pfn] = STORE_SLOT;
    this.#args[pfn * 3] = slot;
    this.#args[pfn * 3 + 1] = 0;
    this.#args[pfn * 3 + 2] = 0;
    this.#slotFrames++;
  }

  /** A compact frame holds no bytes (all zero) from now on. */
  #setZero(pfn: Pfn): void {
    const kind = this.#kind[pfn] as number;
    if (kind === STORE_SLOT) {
      if (this.#slotFreeCount === this.#slotFree.length) {
        const bigger = new Int32Array(this.#slotFree.length * 2);
        bigger.set(this.#slotFree);
        this.#slotFree = bigger;
      }
      this.#slotFree[this.#slotFreeCount++] = this.#args[pfn * 3] as number;
      this.#slotFrames--;
    } else if (kind >= STORE_GEN0) this.#generatedFrames--;
    this.#kind[pfn] = STORE_ZERO;
    this.#args[pfn * 3] = 0;
    this.#args[pfn * 3 + 1] = 0;
    this.#args[pfn * 3 + 2] = 0;
  }

  /** A compact frame with no slot (STORE_ZERO) becomes the generator's page for (a, b, c). */
  #setGenerated(pfn: Pfn, kind: number, a: number, b: number, c: number): void {
    this.#kind[pfn] = kind;
    this.#args[pfn * 3] = a;
    this.#args[pfn * 3 + 1] = b;
    this.#args[pfn * 3 + 2] = c;
    this.#generatedFrames++;
  }

  /** written() for a frame with a slot: drop the slot if the bytes are all zero or generated. */
  #recompact(pfn: Pfn): void {
    const slot = this.#args[pfn * 3] as number;
    const all = this.#slotWords[slot >>> CHUNK_SHIFT] as Uint32Array;
    const w0 = (slot & CHUNK_MASK) << (PAGE_SHIFT - 2);
    const wEnd = w0 + PAGE_SIZE / 4;
    let i = w0;
    while (i < wEnd && all[i] === 0) i++;
    if (i === wEnd) {
      this.#setZero(pfn);
      return;
    }
    if (this.#generators.length === 0) return;
    const words = all.subarray(w0, wEnd);
    const guess = this.#guess;
    for (let g = 0; g < this.#generators.length; g++) {
      const kind = g + STORE_GEN0;
      let a: number;
      let b: number;
      let c: number;
      try {
        // A generator that throws is a guess that failed: the frame keeps its bytes. One whose
        // fill() worked for (a, b, c) now works for them whenever bytes() asks (fill() is pure).
        if (!(this.#generators[g] as FrameGenerator).identify(words, guess)) continue;
        a = guess[0] as number;
        b = guess[1] as number;
        c = guess[2] as number;
        this.#generate(kind, a, b, c);
      } catch {
        this.#scratchKind = -1;
        continue;
      }
      if (!sameWords(all, w0, this.#scratchWords)) continue;
      this.#setZero(pfn);
      this.#setGenerated(pfn, kind, a, b, c);
      return;
    }
  }

  /**
   * checkInvariants() for a compact store: free frames hold nothing, every slot belongs to one
   * frame or the free list, every description names a registered generator, the counters match,
   * and the pages bytes() shares (zeros, the last generated page) still hold what they should.
   */
  checkStore(): void {
    if (!this.compact) return;
    const owner = new Int32Array(this.#slotNext).fill(-1);
    let slots = 0;
    let generated = 0;
    for (let pfn = 0; pfn < this.#nextPfn; pfn++) {
      const kind = this.#kind[pfn] as number;
      if ((this.isFree(pfn) || pfn === this.zeroPfn) && kind !== STORE_ZERO) BUG(`${pfn === this.zeroPfn ? "the zero page" : `free pfn ${pfn}`} holds bytes (store kind ${kind})`);
      if (kind === STORE_SLOT) {
        const slot = this.#args[pfn * 3] as number;
        if (slot >= this.#slotNext || owner[slot] !== -1) BUG(`pfn ${pfn}: slot ${slot} out of range or also held by pfn ${owner[slot]}`);
        owner[slot] = pfn;
        slots++;
      } else if (kind >= STORE_GEN0) {
        if (kind - STORE_GEN0 >= this.#generators.length) BUG(`pfn ${pfn}: generator ${kind - STORE_GEN0} is not registered`);
        generated++;
      } else if (this.#args[pfn * 3] !== 0 || this.#args[pfn * 3 + 1] !== 0 || this.#args[pfn * 3 + 2] !== 0) BUG(`pfn ${pfn}: a zero frame with arguments`);
    }
    for (let i = 0; i < this.#slotFreeCount; i++) {
      const slot = this.#slotFree[i] as number;
      if (slot >= this.#slotNext || owner[slot] !== -1) BUG(`free slot ${slot} out of range, listed twice or held by pfn ${owner[slot]}`);
      owner[slot] = -2;
    }
    if (slots !== this.#slotFrames || generated !== this.#generatedFrames) BUG(`store counters: ${this.#slotFrames} slot / ${this.#generatedFrames} generated frames, recounted ${slots} / ${generated}`);
    if (slots + this.#slotFreeCount !== this.#slotNext) BUG(`${this.#slotNext} slots, ${slots} held and ${this.#slotFreeCount} free`);
    for (let i = 0; i < PAGE_SIZE; i++) if (this.#zeros[i] !== 0) BUG(`the shared zero bytes were written at byte ${i}`);
    if (this.#scratchKind >= STORE_GEN0) {
      // The scratch page still holds exactly what its generator produces: nobody wrote through bytes().
      const want = new Uint32Array(PAGE_SIZE / 4);
      (this.#generators[this.#scratchKind - STORE_GEN0] as FrameGenerator).fill(want, this.#scratchA, this.#scratchB, this.#scratchC);
      if (!sameWords(this.#scratchWords, 0, want)) BUG(`the generated page (generator ${this.#scratchKind - STORE_GEN0}: ${this.#scratchA}, ${this.#scratchB}, ${this.#scratchC}) was written through bytes()`);
    }
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
