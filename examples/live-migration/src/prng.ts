/**
 * A small seeded PRNG (sfc32) whose whole state is four 32-bit words, so a workload thread's
 * random stream can be serialised with the rest of its state at switchover and continue on the
 * destination exactly where it stopped on the source.
 */

export type PrngState = readonly [number, number, number, number];

export class Prng {
  #a: number;
  #b: number;
  #c: number;
  #d: number;

  constructor(state: PrngState) {
    [this.#a, this.#b, this.#c, this.#d] = state;
  }

  /** A generator seeded from one number and a stream id (each thread gets its own stream). */
  static fromSeed(seed: number, stream = 0): Prng {
    const p = new Prng([0x9e3779b9, seed >>> 0, stream >>> 0, (seed ^ 0x7f4a7c15) >>> 0]);
    for (let i = 0; i < 12; i++) p.nextU32();
    return p;
  }

  get state(): PrngState {
    return [this.#a, this.#b, this.#c, this.#d];
  }

  nextU32(): number {
    const t = (((this.#a + this.#b) | 0) + this.#d) | 0;
    this.#d = (this.#d + 1) | 0;
    this.#a = this.#b ^ (this.#b >>> 9);
    this.#b = (this.#c + (this.#c << 3)) | 0;
    this.#c = (this.#c << 21) | (this.#c >>> 11);
    this.#c = (this.#c + t) | 0;
    return t >>> 0;
  }

  /** A uniform integer in [0, n). */
  below(n: number): number {
    return Math.floor((this.nextU32() / 0x1_0000_0000) * n);
  }
}

/** A 32-bit integer hash (lowbias32): the building block of the page patterns. */
export function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}
