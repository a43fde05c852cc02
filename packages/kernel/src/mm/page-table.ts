/**
 * Page tables: one 32-bit entry per virtual page, kept in 512-entry tables (one per 2 MiB, like
 * a PTE page under a PMD). A table that exists models a populated PMD; a missing one is a
 * "pte hole" (pagemap and PAGEMAP_SCAN tell the two apart).
 *
 * Entry layout (our encoding of x86 ptes, swap entries and pte markers):
 *   bits 0-1  kind: 0 none, 1 present, 2 swap entry, 3 pte marker
 *   present:  bit 2 write, bit 3 dirty, bit 4 young, bit 5 uffd-wp, bit 6 soft-dirty,
 *             bit 7 special (the zero page), bits 8-31 pfn
 *   swap:     bit 2 swp-exclusive, bit 5 swp-uffd-wp, bit 6 swp-soft-dirty, bits 8-31 swap slot
 *   marker:   bit 2 PTE_MARKER_UFFD_WP, bit 3 PTE_MARKER_POISONED, bit 4 PTE_MARKER_GUARD
 * A pte of 0 is pte_none().
 */

export type Pte = number;

// The module's own functions use the unexported copies: V8 reads an exported const through its
// module cell (a load and an initialisation check per use) and folds a module-local one.
const KIND_MASK = 3;
const KIND_PRESENT = 1;
const KIND_SWAP = 2;
const KIND_MARKER = 3;

export const PTE_KIND_MASK = KIND_MASK;
export const PTE_PRESENT = KIND_PRESENT;
export const PTE_SWAP = KIND_SWAP;
export const PTE_MARKER = KIND_MARKER;

export const PTE_WRITE = 1 << 2;
export const PTE_DIRTY = 1 << 3;
export const PTE_YOUNG = 1 << 4;
export const PTE_UFFD_WP = 1 << 5;
export const PTE_SOFT_DIRTY = 1 << 6;
export const PTE_SPECIAL = 1 << 7;

export const SWP_EXCLUSIVE = 1 << 2;
export const SWP_UFFD_WP = 1 << 5;
export const SWP_SOFT_DIRTY = 1 << 6;

export const MARKER_UFFD_WP = 1 << 2;
export const MARKER_POISONED = 1 << 3;
export const MARKER_GUARD = 1 << 4;

const PFN_SHIFT = 8;
const PFN_MULT = 1 << PFN_SHIFT;

export const pteNone = (pte: Pte): boolean => pte === 0;
export const ptePresent = (pte: Pte): boolean => (pte & KIND_MASK) === KIND_PRESENT;
export const isSwapPte = (pte: Pte): boolean => (pte & KIND_MASK) === KIND_SWAP;
export const isPteMarker = (pte: Pte): boolean => (pte & KIND_MASK) === KIND_MARKER;
/** include/linux/swapops.h:pte_none_mostly(): none or any marker. */
export const pteNoneMostly = (pte: Pte): boolean => pte === 0 || (pte & KIND_MASK) === KIND_MARKER;

export const pteWrite = (pte: Pte): boolean => (pte & PTE_WRITE) !== 0;
export const pteDirty = (pte: Pte): boolean => (pte & PTE_DIRTY) !== 0;
export const pteYoung = (pte: Pte): boolean => (pte & PTE_YOUNG) !== 0;
export const pteSpecial = (pte: Pte): boolean => (pte & PTE_SPECIAL) !== 0;
export const pteSoftDirty = (pte: Pte): boolean => (pte & PTE_SOFT_DIRTY) !== 0;
/** uffd-wp in any form: present bit, swp bit, or a PTE_MARKER_UFFD_WP (all share bit 5 or 2). */
export function pteUffdWp(pte: Pte): boolean {
  const kind = pte & PTE_KIND_MASK;
  if (kind === PTE_MARKER) return (pte & MARKER_UFFD_WP) !== 0;
  if (kind === 0) return false;
  return (pte & PTE_UFFD_WP) !== 0;
}

export const ptePfn = (pte: Pte): number => pte >>> PFN_SHIFT;
export const swpOffset = (pte: Pte): number => pte >>> PFN_SHIFT;
export const swpExclusive = (pte: Pte): boolean => (pte & SWP_EXCLUSIVE) !== 0;

/** mk_pte(): a present pte for a pfn with the given bits. */
export const mkPte = (pfn: number, bits: number): Pte => (pfn * PFN_MULT + (bits | PTE_PRESENT)) >>> 0;
/** swp_entry_to_pte(). */
export const mkSwapPte = (slot: number, bits: number): Pte => (slot * PFN_MULT + (bits | PTE_SWAP)) >>> 0;
/** make_pte_marker(). */
export const mkMarker = (bits: number): Pte => (bits | PTE_MARKER) >>> 0;

export const pteMkwrite = (pte: Pte): Pte => (pte | PTE_WRITE) >>> 0;
export const pteWrprotect = (pte: Pte): Pte => (pte & ~PTE_WRITE) >>> 0;
export const pteMkdirty = (pte: Pte): Pte => (pte | PTE_DIRTY) >>> 0;
export const pteMkclean = (pte: Pte): Pte => (pte & ~PTE_DIRTY) >>> 0;
export const pteMkyoung = (pte: Pte): Pte => (pte | PTE_YOUNG) >>> 0;
export const pteMkold = (pte: Pte): Pte => (pte & ~PTE_YOUNG) >>> 0;
/** x86 pte_mkuffd_wp() also write-protects. */
export const pteMkuffdWp = (pte: Pte): Pte => ((pte | PTE_UFFD_WP) & ~PTE_WRITE) >>> 0;
export const pteClearUffdWp = (pte: Pte): Pte => (pte & ~PTE_UFFD_WP) >>> 0;

/** Entries of a PTE table (the module's own code uses the unexported PTE_TABLE_ENTRIES). */
const PTE_TABLE_ENTRIES = 512;
export const PTRS_PER_PTE = PTE_TABLE_ENTRIES;
const PTE_TABLE_SHIFT = 9;
const PTE_INDEX_MASK = PTE_TABLE_ENTRIES - 1;

/**
 * The PTE tables of one mm by PMD key, with a small direct-mapped lookup cache (faults and
 * ioctls touch the same few tables over and over; threads working on their own regions
 * alternate between a handful). Every change of the key set goes through set/delete/clear,
 * which empty the cache, so code may use it as a plain Map.
 */
export class PteTables extends Map<number, Uint32Array> {
  /** Cache slot i holds the table of key #cacheKeys[i] (-1: empty); a key's slot is its low bits. */
  readonly #cacheKeys = new Float64Array(PTE_TABLE_CACHE).fill(-1);
  readonly #cacheTables: Array<Uint32Array | undefined> = new Array<Uint32Array | undefined>(PTE_TABLE_CACHE).fill(undefined);

  /** get(), through the cache. */
  lookup(key: number): Uint32Array | undefined {
    const slot = key & (PTE_TABLE_CACHE - 1);
    if (this.#cacheKeys[slot] === key) return this.#cacheTables[slot];
    const t = super.get(key);
    if (t !== undefined) {
      this.#cacheKeys[slot] = key;
      this.#cacheTables[slot] = t;
    }
    return t;
  }

  /**
   * The keys in [firstKey, endKey) in ascending order when the range is much wider than the
   * populated tables (a walk over a huge, mostly empty mapping then costs O(tables), like Linux's
   * walk skipping empty upper levels); null when a plain key-by-key loop is cheaper.
   */
  sparseKeys(firstKey: number, endKey: number): number[] | null {
    if (endKey - firstKey <= this.size * 8 + 64) return null;
    const keys: number[] = [];
    for (const k of this.keys()) if (k >= firstKey && k < endKey) keys.push(k);
    return keys.sort((a, b) => a - b);
  }

  #flush(): void {
    this.#cacheKeys.fill(-1);
    this.#cacheTables.fill(undefined);
  }

  override set(key: number, table: Uint32Array): this {
    this.#flush();
    return super.set(key, table);
  }

  override delete(key: number): boolean {
    this.#flush();
    return super.delete(key);
  }

  override clear(): void {
    this.#flush();
    super.clear();
  }
}

/** Entries of the PteTables lookup cache (a power of two). */
const PTE_TABLE_CACHE = 16;

/** One mm's page tables, indexed by virtual page number. */
export class PageTable {
  /** PTE tables by (vpn >> 9); a present key is a populated PMD. */
  readonly tables = new PteTables();

  get(vpn: number): Pte {
    const t = this.tables.lookup(Math.floor(vpn / PTE_TABLE_ENTRIES));
    return t === undefined ? 0 : (t[vpn & PTE_INDEX_MASK] as number);
  }

  /** set_pte_at(): allocates the PTE table on first use (pte_alloc). */
  set(vpn: number, pte: Pte): void {
    const key = Math.floor(vpn / PTE_TABLE_ENTRIES);
    let t = this.tables.lookup(key);
    if (t === undefined) {
      if (pte === 0) return;
      t = new Uint32Array(PTE_TABLE_ENTRIES);
      this.tables.set(key, t);
    }
    t[vpn & PTE_INDEX_MASK] = pte;
  }

  /** The PTE table for a vpn, allocating it (pte_alloc()). */
  table(vpn: number): Uint32Array {
    const key = Math.floor(vpn / PTE_TABLE_ENTRIES);
    let t = this.tables.lookup(key);
    if (t === undefined) {
      t = new Uint32Array(PTE_TABLE_ENTRIES);
      this.tables.set(key, t);
    }
    return t;
  }

  /** The PTE table for a vpn if the PMD has one, else undefined (nothing is allocated). */
  lookupTable(vpn: number): Uint32Array | undefined {
    return this.tables.lookup(Math.floor(vpn / PTE_TABLE_ENTRIES));
  }

  /** Whether the PMD covering vpn has a PTE table (false = a pte hole). */
  hasTable(vpn: number): boolean {
    return this.tables.lookup(Math.floor(vpn / PTE_TABLE_ENTRIES)) !== undefined;
  }

  static tableKey(vpn: number): number {
    return vpn >>> 0 === vpn ? vpn >>> PTE_TABLE_SHIFT : Math.floor(vpn / PTE_TABLE_ENTRIES);
  }

  /** Calls fn for every non-none pte in [startVpn, endVpn), in address order. */
  forEachPresentEntry(startVpn: number, endVpn: number, fn: (vpn: number, pte: Pte) => void): void {
    const sparse = this.tables.sparseKeys(Math.floor(startVpn / PTE_TABLE_ENTRIES), Math.ceil(endVpn / PTE_TABLE_ENTRIES));
    if (sparse !== null) {
      for (const key of sparse) this.forEachPresentEntry(Math.max(startVpn, key * PTE_TABLE_ENTRIES), Math.min(endVpn, (key + 1) * PTE_TABLE_ENTRIES), fn);
      return;
    }
    let vpn = startVpn;
    while (vpn < endVpn) {
      const key = Math.floor(vpn / PTE_TABLE_ENTRIES);
      const tableEnd = Math.min(endVpn, (key + 1) * PTE_TABLE_ENTRIES);
      const t = this.tables.lookup(key);
      if (t !== undefined) {
        for (let v = vpn; v < tableEnd; v++) {
          const pte = t[v & PTE_INDEX_MASK] as number;
          if (pte !== 0) fn(v, pte);
        }
      }
      vpn = tableEnd;
    }
  }

  /** free_pgtables() for one PMD: drops the PTE table (all entries must be none). */
  freeTable(key: number): void {
    this.tables.delete(key);
  }
}
