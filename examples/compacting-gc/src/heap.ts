/**
 * The managed heap of the compacting-gc example: fixed-size object slots in anonymous memory,
 * a marking result (which objects are live), and the sliding-compaction layout the collector
 * computes from it (each live object's new slot, in address order, so object order is kept).
 */
import { PAGE_SIZE } from "@uffd/kernel/uapi";

export const OBJECT_SIZE = 256;
export const OBJECTS_PER_PAGE = PAGE_SIZE / OBJECT_SIZE;

/** The bytes of object `id`: a header naming it, then a fill derived from the id. */
export function objectBytes(id: number): Uint8Array {
  const b = new Uint8Array(OBJECT_SIZE).fill((id * 13 + 5) & 0xff);
  b.set(new TextEncoder().encode(`object #${id};`));
  return b;
}

/** A small deterministic PRNG (mulberry32). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** What marking found, and where compaction puts every live object. */
export class CompactionPlan {
  readonly heapPages: number;
  /** Live object ids in address order; live[i] moves to slot i. */
  readonly live: number[];
  /** to-space pages that hold live objects after compaction. */
  readonly toPages: number;

  constructor(heapPages: number, live: number[]) {
    this.heapPages = heapPages;
    this.live = live;
    this.toPages = Math.ceil(live.length / OBJECTS_PER_PAGE);
  }

  /**
   * Marks the heap: the first `densePages` pages are entirely live (long-lived objects
   * allocated first, ART's "dense prefix"), later objects survive with probability `survival`.
   */
  static mark(heapPages: number, densePages: number, survival: number, rnd: () => number): CompactionPlan {
    const live: number[] = [];
    for (let id = 0; id < heapPages * OBJECTS_PER_PAGE; id++) {
      if (id < densePages * OBJECTS_PER_PAGE || rnd() < survival) live.push(id);
    }
    return new CompactionPlan(heapPages, live);
  }

  /** The new slot of object `id`, or -1 if it is garbage. */
  forward(id: number): number {
    let lo = 0;
    let hi = this.live.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const v = this.live[mid]!;
      if (v === id) return mid;
      if (v < id) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  /** Object ids of to-space page `page`, slot by slot (-1 = empty slot). */
  pageObjects(page: number): number[] {
    const out: number[] = [];
    for (let s = 0; s < OBJECTS_PER_PAGE; s++) out.push(this.live[page * OBJECTS_PER_PAGE + s] ?? -1);
    return out;
  }

  /** Nothing in the page moves: it can be mapped as it is, without building a copy. */
  unchanged(page: number): boolean {
    return this.pageObjects(page).every((id, s) => id === page * OBJECTS_PER_PAGE + s);
  }
}
