/**
 * A write-protect based dirty tracker (the QEMU background-snapshot / e2b pattern): protect a
 * range, note every page whose write faults, unprotect it so the write goes on, and collect the
 * dirty set, which protects those pages again for the next round.
 *
 * Two modes:
 * - "sync" (default): wp faults are delivered; the tracker's listener records and unprotects.
 * - "async" (UFFD_FEATURE_WP_ASYNC): the kernel unprotects on its own and no fault is delivered;
 *   collect() reads /proc/pid/pagemap, where a page whose uffd-wp bit is gone was written.
 *
 * - "auto": "async" when the userfaultfd has wp-async, else "sync"; on a kernel without
 *   WP_ASYNC (before Linux 6.7) the fallback is listed in Userfaultfd.fallbacks.
 *
 * On a kernel without wp-unpopulated (before Linux 6.4), write-protecting a page that was
 * never touched leaves nothing behind, and its first write would not be seen: begin() then
 * pre-populates the range's pages that are not registered for missing faults by reading them
 * (mapping the zero page), so the protection sticks, and lists the fallback.
 *
 * A REMOVE (MADV_DONTNEED ...) over tracked pages changes them (they read as zeros now), so the
 * tracker counts them as dirty too.
 */
import { type Process, UFFD_FEATURE_SINCE } from "@uffd/kernel";
import { PAGE_SIZE, UFFD_FEATURE_WP_ASYNC, UFFD_FEATURE_WP_UNPOPULATED as FEATURES_WP_UNPOPULATED, UFFDIO_REGISTER_MODE_MISSING } from "@uffd/kernel/uapi";
import type { UffdContext } from "./context.ts";
import { subscribe, unsubscribe } from "./dispatch.ts";
import type { RangeEvent } from "./events.ts";
import type { Fault } from "./types.ts";
import { Userfaultfd } from "./userfaultfd.ts";
import { UffdError } from "./errors.ts";

/** Options of new DirtyTracker(). */
export interface DirtyTrackerOptions {
  /** "sync" (default), "async" (needs the wp-async feature) or "auto" (async if the userfaultfd has wp-async). */
  mode?: "sync" | "async" | "auto";
  /** The tracked process, for the pagemap reads of async mode. Default: the handling process. */
  target?: Process;
}

/** Tracks which pages of a range are written, with uffd-wp: begin() protects the range, collect() returns the pages written since and protects them again. */
export class DirtyTracker {
  /** The handler whose userfaultfd protects the range. */
  readonly uffd: Userfaultfd;
  /** Start of the tracked range. */
  readonly start: number;
  /** End of the tracked range (exclusive). */
  readonly end: number;
  /** "sync" (wp faults recorded by a listener) or "async" (UFFD_FEATURE_WP_ASYNC and pagemap). */
  readonly mode: "sync" | "async";
  readonly #target: Process;
  readonly #dirty = new Set<number>();
  readonly #ctx: UffdContext;
  /**
   * A fork child's handler inherits these listeners. A child's write is in the child's memory,
   * not in the tracked one: it is let through (unprotected) but not recorded; a child's REMOVE
   * is ignored.
   */
  readonly #onFault = (f: Fault, reader: UffdContext): Promise<unknown> | undefined => {
    if (f.kind !== "wp" || f.pageAddress < this.start || f.pageAddress >= this.end) return undefined;
    if (reader === this.#ctx) this.#dirty.add(f.pageAddress);
    return f.unprotect();
  };
  readonly #onRemove = (e: RangeEvent, reader: UffdContext): void => {
    if (reader !== this.#ctx) return;
    for (let a = Math.max(e.start, this.start); a < Math.min(e.end, this.end); a += PAGE_SIZE) this.#dirty.add(a);
  };

  constructor(uffd: Userfaultfd, start: number, len: number, options: DirtyTrackerOptions = {}) {
    this.uffd = uffd;
    this.#ctx = Userfaultfd.contextOf(uffd);
    this.start = start;
    this.end = start + len;
    const mode = options.mode ?? "sync";
    if (mode === "auto" && !uffd.has("wp-async") && (uffd.kernelFeatureBits & UFFD_FEATURE_WP_ASYNC) === 0) {
      this.#ctx.noteFallback("wp-async", "sync (wp-fault) dirty tracking", UFFD_FEATURE_SINCE[UFFD_FEATURE_WP_ASYNC]!);
    }
    this.mode = mode === "auto" ? (uffd.has("wp-async") ? "async" : "sync") : mode;
    this.#target = options.target ?? uffd.process;
    if (this.mode === "async" && !uffd.has("wp-async")) {
      throw new UffdError("feature-unavailable", "DirtyTracker: async mode needs a userfaultfd opened with the \"wp-async\" feature");
    }
  }

  /** Write-protects the whole range and starts recording. */
  async begin(): Promise<void> {
    if (this.mode === "sync") subscribe(this.#ctx, "fault", this.#onFault as never, false, true);
    subscribe(this.#ctx, "remove", this.#onRemove as never, false, true);
    const offered = this.uffd.kernelFeatureBits;
    if (offered !== 0 && (offered & FEATURES_WP_UNPOPULATED) === 0) await this.#prepopulate();
    await this.uffd.writeProtect(this.start, this.end - this.start);
  }

  /**
   * Reads one byte of every page not registered for missing faults (a read there would fetch the
   * page), so each has a pte the write protection can stay on.
   */
  async #prepopulate(): Promise<void> {
    this.#ctx.noteFallback("wp-unpopulated", "pre-populating the range", UFFD_FEATURE_SINCE[FEATURES_WP_UNPOPULATED]!);
    const t = this.#target;
    for (let a = this.start; a < this.end; a += PAGE_SIZE) {
      const entry = this.#ctx.ranges.find(a);
      if (entry !== null && (entry.modes & UFFDIO_REGISTER_MODE_MISSING) !== 0) continue;
      await t.mainThread.read(a, 1);
    }
  }

  /** Pages written (or removed) since the last collect, in address order; they are protected again. */
  async collect(): Promise<number[]> {
    if (this.mode === "async") this.#scanPagemap();
    const pages = [...this.#dirty].sort((a, b) => a - b);
    this.#dirty.clear();
    for (const [s, e] of runs(pages)) await this.uffd.writeProtect(s, e - s);
    return pages;
  }

  /** Stops recording (the pages stay as they are). */
  stop(): void {
    unsubscribe(this.#ctx, "fault", this.#onFault as never);
    unsubscribe(this.#ctx, "remove", this.#onRemove as never);
  }

  #scanPagemap(): void {
    const n = (this.end - this.start) / PAGE_SIZE;
    const entries = this.#target.pagemap(this.start, n);
    for (let i = 0; i < n; i++) {
      const e = entries[i]!;
      // Present or swapped without uffd-wp: written since it was protected. A none pte (no
      // marker left, e.g. an anon zap) is reported through the REMOVE event instead.
      if ((e.present || e.swapped) && !e.uffdWp) this.#dirty.add(this.start + i * PAGE_SIZE);
    }
  }
}

function runs(pages: readonly number[]): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const p of pages) {
    const last = out[out.length - 1];
    if (last !== undefined && last[1] === p) last[1] = p + PAGE_SIZE;
    else out.push([p, p + PAGE_SIZE]);
  }
  return out;
}
