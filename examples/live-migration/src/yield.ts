/**
 * Cooperative scheduling inside one process: the guest threads, the migration loops and the
 * socket all share Node's event loop. A loop that only awaits already-settled promises never
 * lets timers or socket reads run, so a fault's page request (or the page answering it) would
 * wait behind a whole batch of background pages. Long loops call `tick()` and hand the loop over
 * once their slice is used up.
 */

/**
 * The longest synchronous stretch a migration loop (the source's push, the destination's
 * install queue, a guest thread catching up) runs before it lets socket reads and timers in, in
 * ms. A demand request or page that arrives meanwhile waits for at most about this long, plus
 * one unit of the loop's work (one run of pages).
 */
export const SLICE_MS = 0.5;

export class TimeSlice {
  readonly #sliceMs: number;
  #since = performance.now();

  constructor(sliceMs = SLICE_MS) {
    this.#sliceMs = sliceMs;
  }

  /** A new slice starts now (the loop just got its turn back from a wait of its own). */
  restart(): void {
    this.#since = performance.now();
  }

  /** Resolves at once while the slice lasts, else after one macrotask turn. */
  tick(): Promise<void> | undefined {
    const now = performance.now();
    if (now - this.#since < this.#sliceMs) return undefined;
    return new Promise<void>((resolve) =>
      setImmediate(() => {
        this.#since = performance.now();
        resolve();
      }),
    );
  }
}
