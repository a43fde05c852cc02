/**
 * The swap device and the swap cache. Mirrors the parts of mm/swapfile.c (swap_map counts,
 * swap_duplicate, swap_free) and mm/swap_state.c (the swap cache) the simulation needs.
 *
 * A slot is in use while its count (references from swap ptes and shmem page-cache entries)
 * is non-zero or a frame holding its data sits in the swap cache (SWAP_HAS_CACHE).
 * Slot data is stored in pooled 1 MiB blocks, like frames.
 */
import { BUG_ON } from "../lib/assert.ts";
import { PAGE_SIZE } from "../uapi/mman.ts";
import { PG, type PhysMem, type Pfn } from "./folio.ts";

const BLOCK_SLOTS = 256;
/** A slot description meaning "the bytes are in the block" (never a compact store kind). */
const DESC_BYTES = 0xff;

export class SwapDevice {
  readonly nrSlots: number;
  /** swap_map: references per slot (without the SWAP_HAS_CACHE bit, which `cache` records). */
  readonly swapMap: Uint16Array;
  /** The swap cache: slot -> frame holding its data. */
  readonly cache = new Map<number, Pfn>();
  readonly #blocks: Uint8Array[] = [];
  #cursor = 0;
  inUse = 0;
  /**
   * SWP_SYNCHRONOUS_IO (zram): writeback completes within the reclaim pass, and do_swap_page()
   * may bypass the swap cache. False for a swap file (KernelOptions.swapDevice "file").
   */
  readonly synchronousIo: boolean;
  readonly #mem: PhysMem;
  /**
   * With a compact frame store: four words per slot, the description PhysMem.describe() gave of
   * the frame written there, or DESC_BYTES when the slot's bytes are in its block.
   */
  readonly #descs: Uint32Array | null;

  constructor(nrSlots: number, mem: PhysMem, synchronousIo = true) {
    this.nrSlots = nrSlots;
    this.swapMap = new Uint16Array(nrSlots);
    this.#mem = mem;
    this.#descs = mem.compact ? new Uint32Array(nrSlots * 4) : null;
    this.synchronousIo = synchronousIo;
  }

  /** __swap_count(): references from swap ptes and shmem entries (SWAP_HAS_CACHE not counted). */
  swapCount(slot: number): number {
    return this.swapMap[slot] as number;
  }

  #slotInUse(slot: number): boolean {
    return this.swapMap[slot] !== 0 || this.cache.has(slot);
  }

  /** get_swap_page(): a free slot with count 1, or -1 when the device is full. */
  allocSlot(): number {
    for (let i = 0; i < this.nrSlots; i++) {
      const slot = (this.#cursor + i) % this.nrSlots;
      if (!this.#slotInUse(slot)) {
        this.#cursor = slot + 1;
        this.swapMap[slot] = 1;
        this.inUse++;
        return slot;
      }
    }
    return -1;
  }

  /** swap_duplicate(): one more reference (fork copying a swap pte). */
  duplicate(slot: number): void {
    BUG_ON(this.swapMap[slot] === 0 && !this.cache.has(slot), `swap_duplicate on free slot ${slot}`);
    this.swapMap[slot]!++;
  }

  /** swap_free(): drops one reference; the slot is freed when nothing references it. */
  free(slot: number): void {
    BUG_ON(this.swapMap[slot] === 0, `swap_free on slot ${slot} with count 0`);
    this.swapMap[slot]!--;
    if (!this.#slotInUse(slot)) this.inUse--;
  }

  /** folio_swapped(): some swap pte or shmem entry still references the slot. */
  swapped(slot: number): boolean {
    return this.swapMap[slot] !== 0;
  }

  /** vm_swap_full(): more than half of the device in use. */
  get full(): boolean {
    return this.inUse * 2 > this.nrSlots;
  }

  #block(slot: number): Uint8Array {
    const b = Math.floor(slot / BLOCK_SLOTS);
    while (this.#blocks.length <= b) this.#blocks.push(new Uint8Array(0));
    let block = this.#blocks[b] as Uint8Array;
    if (block.length === 0) {
      block = new Uint8Array(BLOCK_SLOTS * PAGE_SIZE);
      this.#blocks[b] = block;
    }
    return block;
  }

  /** swap_writepage(): stores a frame's bytes in the slot (a compact frame's description, if it has one). */
  writeSlot(slot: number, pfn: Pfn): void {
    if (this.#descs !== null) {
      const d = this.#descs.subarray(slot * 4, slot * 4 + 4);
      if (this.#mem.describe(pfn, d)) return;
      d.fill(0);
      d[0] = DESC_BYTES;
    }
    const src = this.#mem.bytes(pfn);
    const o = this.#mem.offset(pfn);
    this.#block(slot).set(src.subarray(o, o + PAGE_SIZE), (slot % BLOCK_SLOTS) * PAGE_SIZE);
  }

  /** swap_read_folio(): fills a frame from the slot. */
  readSlot(slot: number, pfn: Pfn): void {
    if (this.#descs !== null && this.#descs[slot * 4] !== DESC_BYTES) {
      this.#mem.restore(pfn, this.#descs.subarray(slot * 4, slot * 4 + 4));
      return;
    }
    const block = this.#block(slot);
    const o = (slot % BLOCK_SLOTS) * PAGE_SIZE;
    this.#mem.writable(pfn, true).set(block.subarray(o, o + PAGE_SIZE), this.#mem.offset(pfn));
  }

  /**
   * The skip-swapcache read of do_swap_page() on a SWP_SYNCHRONOUS_IO device: a new folio with
   * the slot's data and one reference (the caller's), never added to the swap cache. Returns -1
   * when physical memory is exhausted.
   */
  readIntoNewFolio(slot: number): Pfn {
    const pfn = this.#mem.allocFrame(false);
    if (pfn < 0) return -1;
    this.readSlot(slot, pfn);
    this.#mem.setFlag(pfn, PG.swapbacked | PG.uptodate);
    return pfn;
  }

  /**
   * The swap-cache folio for a slot, reading it in if needed (swapin_readahead() without the
   * readahead). The returned frame carries one reference for the caller and one for the cache.
   * Returns -1 when physical memory is exhausted.
   */
  swapIn(slot: number): Pfn {
    const cached = this.cache.get(slot);
    if (cached !== undefined) {
      this.#mem.folioGet(cached);
      return cached;
    }
    const pfn = this.#mem.allocFrame(false);
    if (pfn < 0) return -1;
    this.readSlot(slot, pfn);
    this.#mem.setFlag(pfn, PG.swapcache | PG.swapbacked | PG.uptodate);
    this.#mem.index[pfn] = slot;
    this.#mem.folioGet(pfn); // the swap cache's reference
    this.cache.set(slot, pfn);
    return pfn;
  }

  /**
   * Mirrors mm/swapfile.c:folio_free_swap(): drops a folio from the swap cache if no swap
   * entry references its slot any more, and marks it dirty (its only copy is now in memory).
   * Returns whether it did.
   */
  folioFreeSwap(pfn: Pfn): boolean {
    if (!this.#mem.testFlag(pfn, PG.swapcache)) return false;
    const slot = this.#mem.index[pfn] as number;
    if (this.swapped(slot)) return false;
    this.deleteFromSwapCache(pfn);
    this.#mem.setFlag(pfn, PG.dirty);
    return true;
  }

  /** delete_from_swap_cache(): the folio leaves the cache and drops the cache's reference. */
  deleteFromSwapCache(pfn: Pfn): void {
    const slot = this.#mem.index[pfn] as number;
    BUG_ON(this.cache.get(slot) !== pfn, `pfn ${pfn} is not the swap cache folio of slot ${slot}`);
    this.cache.delete(slot);
    this.#mem.clearFlag(pfn, PG.swapcache);
    this.#mem.index[pfn] = 0;
    if (!this.#slotInUse(slot)) this.inUse--;
    this.#mem.folioPut(pfn);
  }
}
