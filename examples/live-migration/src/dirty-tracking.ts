/**
 * Precopy's dirty page tracking on the source: which guest pages changed since the last look.
 *
 * Three methods, best first (the run reports which one it used):
 * - "wp-async": uffd-wp with UFFD_FEATURE_WP_ASYNC; the kernel resolves write faults itself and
 *   PAGEMAP_SCAN with PM_SCAN_WP_MATCHING returns the written pages and re-protects them in one
 *   call (what CRIU and e2b use, Linux 6.7+).
 * - "wp-sync": uffd-wp in the classic mode; every first write to a protected page is a fault the
 *   handler records and then unprotects (QEMU's background snapshot does this).
 * - "content-hash": no kernel help; hash every page each round and compare (the fallback when
 *   userfaultfd is unavailable; costs a full memory read per round).
 * The uffd-backed methods live in uffd-tracking.ts, the one module besides dest-faults.ts that
 * talks to userfaultfd.
 */
import { UFFD_FEATURE_SINCE } from "@uffd/kernel";
import { FEATURES, FeatureUnavailableError, type Fallback } from "@uffd/sdk";
import type { TrackingChoice } from "./config.ts";
import type { Guest } from "./guest.ts";
import { createUffdTracker } from "./uffd-tracking.ts";

export type TrackingMethod = "wp-async+pagemap-scan" | "wp-async+pagemap" | "wp-sync" | "content-hash";

export interface DirtyTracker {
  readonly method: TrackingMethod;
  /**
   * What the SDK fell back to because this kernel release lacks something (uffd.fallbacks: the
   * userfaultfd(2) syscall without /dev/userfaultfd, pre-populating without wp-unpopulated).
   * Complete once start() returned.
   */
  readonly fallbacks: readonly Fallback[];
  /** Starts tracking: every later write is reported by the next collect(). */
  start(): Promise<void>;
  /** Pages written since start() or the previous collect(), ascending; tracking continues. */
  collect(): Promise<Uint32Array>;
  /** Stops tracking and releases what start() set up. */
  stop(): Promise<void>;
}

/**
 * Picks the best method available (or the one asked for), saying why others were skipped: a line
 * in `notes`, and in `skipped` (when given) a fallback naming the method used instead.
 */
export async function createDirtyTracker(guest: Guest, choice: TrackingChoice, notes: string[], skipped: Fallback[] = []): Promise<DirtyTracker> {
  if (choice !== "content-hash") {
    const modes = choice === "auto" ? (["wp-async", "wp-sync"] as const) : ([choice] as const);
    const unavailable: Array<{ wanted: string; reason: string }> = [];
    let tracker: DirtyTracker | null = null;
    for (const mode of modes) {
      try {
        tracker = await createUffdTracker(guest, mode);
        break;
      } catch (e) {
        const message = e instanceof Error ? e.message : String(e);
        const why = `${mode} dirty tracking unavailable: ${message}`;
        if (choice !== "auto") throw new Error(why, { cause: e });
        notes.push(why);
        unavailable.push({ wanted: `${mode} dirty tracking`, reason: missingWhy(guest, e) ?? message });
      }
    }
    tracker ??= new ContentHashTracker(guest);
    for (const u of unavailable) skipped.push({ ...u, used: `${tracker.method} dirty tracking` });
    return tracker;
  }
  return new ContentHashTracker(guest);
}

/** "wp-async came in Linux 6.7; this kernel is 6.1-uffd" for a feature the release lacks (the SDK's fallback wording). */
function missingWhy(guest: Guest, e: unknown): string | null {
  if (!(e instanceof FeatureUnavailableError)) return null;
  const release = guest.kernel.uname().release;
  return e.features.map((f) => `${f} came in Linux ${UFFD_FEATURE_SINCE[FEATURES[f]] ?? "?"}; this kernel is ${release}`).join("; ");
}

const YIELD_EVERY_PAGES = 1024;

/** Two 32-bit hashes per page; (0, 0) marks a page with nothing behind it. */
export class ContentHashTracker implements DirtyTracker {
  readonly method = "content-hash";
  readonly fallbacks: readonly Fallback[] = [];
  readonly #guest: Guest;
  readonly #hashes: Uint32Array;

  constructor(guest: Guest) {
    this.#guest = guest;
    this.#hashes = new Uint32Array(guest.pages * 2);
  }

  async start(): Promise<void> {
    await this.#scan(null);
  }

  async collect(): Promise<Uint32Array> {
    const dirty: number[] = [];
    await this.#scan(dirty);
    return Uint32Array.from(dirty);
  }

  async stop(): Promise<void> {}

  async #scan(dirty: number[] | null): Promise<void> {
    const g = this.#guest;
    for (let first = 0; first < g.pages; first += YIELD_EVERY_PAGES) {
      const count = Math.min(YIELD_EVERY_PAGES, g.pages - first);
      const present = g.presentMap(first, count);
      for (let i = 0; i < count; i++) {
        const p = first + i;
        let h1 = 0;
        let h2 = 0;
        if (present[i]) [h1, h2] = hashPage(await g.readPage(p));
        if (dirty !== null && (this.#hashes[2 * p] !== h1 || this.#hashes[2 * p + 1] !== h2)) dirty.push(p);
        this.#hashes[2 * p] = h1;
        this.#hashes[2 * p + 1] = h2;
      }
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }
}

/** Two independent multiplicative hashes of a page, never (0, 0). */
function hashPage(bytes: Uint8Array): [number, number] {
  const w = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 2);
  let a = 0x811c9dc5;
  let b = 0x01000193;
  for (let i = 0; i < w.length; i++) {
    const x = w[i]!;
    a = Math.imul(a ^ x, 0x01000193);
    b = Math.imul(b + x, 0x5bd1e995) ^ (b >>> 13);
  }
  return [a >>> 0 || 1, b >>> 0];
}
