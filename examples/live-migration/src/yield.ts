/**
 * Cooperative scheduling inside one process: the guest threads, the migration loops and the
 * socket all share Node's event loop. A loop that only awaits already-settled promises never
 * lets timers or socket reads run, so a fault's page request would wait behind a whole batch of
 * background pages. Long loops call `tick()` and hand the loop over once their slice is used up.
 */
export class TimeSlice {
  readonly #sliceMs: number;
  #since = performance.now();

  constructor(sliceMs = 2) {
    this.#sliceMs = sliceMs;
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
