/**
 * A context's in-flight faults by key (page address + kind index): a Map without the Map's
 * cost on the fault path. Every fault is added, looked up a few times and deleted within
 * microseconds; a JS Map allocates as it does that (its table is rebuilt as deleted entries pile
 * up and shrunk as it empties), which showed as a tenth of the SDK's time per fault.
 *
 * Open addressing with linear probing and backward-shift deletion (no tombstones), so set, get
 * and delete touch a few slots and allocate nothing once the table has grown to the working set.
 * values() is rare (shutdown, deadlines, range ops over many pages) and returns a snapshot in
 * insertion order, as Map iteration would.
 *
 * A lone entry is kept apart, in #soloKey / #soloVal, while the hashed slots are empty: a handler
 * that keeps up with one faulting thread has one fault in flight at a time, and adds it, finds it
 * and deletes it with a compare and a few stores, without hashing or probing. A second key moves
 * it into the hashed slots (with its place in the insertion order).
 */

/** Keys are non-negative integers below 2^53 (page addresses plus a small kind index). */
export class FaultTable<V> {
  #keys: Float64Array;
  #vals: Array<V | undefined>;
  /** Insertion order of each slot's entry, for values(). */
  #seqs: Float64Array;
  #mask: number;
  /** 32 - log2(capacity): the hash keeps the product's top bits, the well-mixed ones. */
  #shift: number;
  #size = 0;
  #seq = 0;
  /** The lone entry's key while the hashed slots are empty, else -1. */
  #soloKey = -1;
  #soloVal: V | undefined = undefined;
  #soloSeq = 0;

  constructor(capacity = 64) {
    let cap = 16;
    while (cap < capacity) cap *= 2;
    this.#keys = new Float64Array(cap).fill(-1);
    this.#vals = new Array<V | undefined>(cap).fill(undefined);
    this.#seqs = new Float64Array(cap);
    this.#mask = cap - 1;
    this.#shift = 32 - Math.log2(cap);
  }

  get size(): number {
    return this.#size;
  }

  /**
   * The home slot of a key: a multiplicative hash of its page number (the low 32 bits of
   * key / 4096, by ToInt32) and its low 12 bits (the kind index; `key & 4095` also goes through
   * ToInt32, which keeps them).
   */
  #home(key: number): number {
    return Math.imul(((key / 4096) | 0) ^ ((key & 4095) << 20), 0x9e3779b1) >>> this.#shift;
  }

  #slotOf(key: number): number {
    const keys = this.#keys;
    const mask = this.#mask;
    for (let i = this.#home(key); ; i = (i + 1) & mask) {
      const k = keys[i]!;
      if (k === key) return i;
      if (k === -1) return -1;
    }
  }

  get(key: number): V | undefined {
    if (this.#soloKey !== -1) return key === this.#soloKey ? this.#soloVal : undefined;
    const i = this.#slotOf(key);
    return i < 0 ? undefined : this.#vals[i];
  }

  has(key: number): boolean {
    if (this.#soloKey !== -1) return key === this.#soloKey;
    return this.#slotOf(key) >= 0;
  }

  /** Adds or replaces (a replaced entry keeps its place in the insertion order, as in a Map). */
  set(key: number, value: V): this {
    if (this.#size === 0) {
      this.#soloKey = key;
      this.#soloVal = value;
      this.#soloSeq = this.#seq++;
      this.#size = 1;
      return this;
    }
    if (this.#soloKey !== -1) {
      if (key === this.#soloKey) {
        this.#soloVal = value;
        return this;
      }
      this.#unsolo();
    }
    return this.#setHashed(key, value);
  }

  /**
   * Adds `value` under `key` unless the key is present: returns the value already there (and
   * changes nothing), or undefined once `value` was added. One probe where get() then set() take
   * two.
   */
  addIfAbsent(key: number, value: V): V | undefined {
    if (this.#size === 0) {
      this.set(key, value);
      return undefined;
    }
    if (this.#soloKey !== -1) {
      if (key === this.#soloKey) return this.#soloVal;
      this.#unsolo();
    }
    if ((this.#size + 1) * 2 > this.#keys.length) this.#grow();
    const keys = this.#keys;
    const mask = this.#mask;
    for (let i = this.#home(key); ; i = (i + 1) & mask) {
      const k = keys[i]!;
      if (k === key) return this.#vals[i];
      if (k === -1) {
        keys[i] = key;
        this.#vals[i] = value;
        this.#seqs[i] = this.#seq++;
        this.#size++;
        return undefined;
      }
    }
  }

  /** The lone entry moves into the hashed slots (the table is about to hold two). */
  #unsolo(): void {
    const key = this.#soloKey;
    const keys = this.#keys;
    const mask = this.#mask;
    let i = this.#home(key);
    while (keys[i] !== -1) i = (i + 1) & mask;
    keys[i] = key;
    this.#vals[i] = this.#soloVal;
    this.#seqs[i] = this.#soloSeq;
    this.#soloKey = -1;
    this.#soloVal = undefined;
  }

  #setHashed(key: number, value: V): this {
    if ((this.#size + 1) * 2 > this.#keys.length) this.#grow();
    const keys = this.#keys;
    const mask = this.#mask;
    for (let i = this.#home(key); ; i = (i + 1) & mask) {
      const k = keys[i]!;
      if (k === key) {
        this.#vals[i] = value;
        return this;
      }
      if (k === -1) {
        keys[i] = key;
        this.#vals[i] = value;
        this.#seqs[i] = this.#seq++;
        this.#size++;
        return this;
      }
    }
  }

  delete(key: number): boolean {
    if (this.#soloKey !== -1) {
      if (key !== this.#soloKey) return false;
      this.#clearSolo();
      return true;
    }
    const i = this.#slotOf(key);
    if (i < 0) return false;
    this.#deleteAt(i);
    return true;
  }

  /** Deletes the entry of `key` if its value is `value` (one probe where get() then delete() take two). */
  deleteValue(key: number, value: V): boolean {
    if (this.#soloKey !== -1) {
      if (key !== this.#soloKey || this.#soloVal !== value) return false;
      this.#clearSolo();
      return true;
    }
    const i = this.#slotOf(key);
    if (i < 0 || this.#vals[i] !== value) return false;
    this.#deleteAt(i);
    return true;
  }

  /** Deletes every entry (a sweep of the slots: cheaper than deleting them one by one once they are many). */
  clear(): void {
    if (this.#soloKey !== -1) {
      this.#clearSolo();
      return;
    }
    if (this.#size === 0) return;
    this.#keys.fill(-1);
    this.#vals.fill(undefined);
    this.#size = 0;
  }

  #clearSolo(): void {
    this.#soloKey = -1;
    this.#soloVal = undefined;
    this.#size = 0;
  }

  #deleteAt(i: number): void {
    const keys = this.#keys;
    const vals = this.#vals;
    const seqs = this.#seqs;
    const mask = this.#mask;
    // Backward-shift deletion: move later members of the probe run into the hole.
    for (let j = (i + 1) & mask; keys[j] !== -1; j = (j + 1) & mask) {
      const home = this.#home(keys[j]!);
      // Entry j may fill hole i if its home is not in the cyclic range (i, j].
      const inRange = i <= j ? home > i && home <= j : home > i || home <= j;
      if (inRange) continue;
      keys[i] = keys[j]!;
      vals[i] = vals[j];
      seqs[i] = seqs[j]!;
      i = j;
    }
    keys[i] = -1;
    vals[i] = undefined;
    this.#size--;
  }

  /** A snapshot of the values in insertion order. */
  values(): V[] {
    if (this.#soloKey !== -1) return [this.#soloVal as V];
    const out: Array<{ seq: number; v: V }> = [];
    const keys = this.#keys;
    for (let i = 0; i < keys.length; i++) if (keys[i] !== -1) out.push({ seq: this.#seqs[i]!, v: this.#vals[i] as V });
    out.sort((a, b) => a.seq - b.seq);
    return out.map((e) => e.v);
  }

  #grow(): void {
    const keys = this.#keys;
    const vals = this.#vals;
    const seqs = this.#seqs;
    const cap = keys.length * 2;
    this.#keys = new Float64Array(cap).fill(-1);
    this.#vals = new Array<V | undefined>(cap).fill(undefined);
    this.#seqs = new Float64Array(cap);
    this.#mask = cap - 1;
    this.#shift = 32 - Math.log2(cap);
    const mask = this.#mask;
    for (let s = 0; s < keys.length; s++) {
      const key = keys[s]!;
      if (key === -1) continue;
      let i = this.#home(key);
      while (this.#keys[i] !== -1) i = (i + 1) & mask;
      this.#keys[i] = key;
      this.#vals[i] = vals[s];
      this.#seqs[i] = seqs[s]!;
    }
  }
}
