/**
 * Serving faults from a page source, and filling pages before they are faulted.
 *
 * serve() is the default handler: missing faults get the source's bytes (UFFDIO_COPY) or the
 * zero page (a hole, or a page the app MADV_DONTNEED'ed since), minor faults get UFFDIO_CONTINUE,
 * wp faults are unprotected.
 *
 * BackgroundFill streams a source into the registered ranges while demand faults are served, as
 * CRIU's lazy-pages daemon does: chunks start small, double while no demand fault arrives and
 * shrink back when one does (demand first). The two never install a page twice nor fetch it
 * twice: the fill skips pages that are installed, removed or being filled, marks its chunk
 * FILLING while it fetches, and a demand fault on a FILLING page waits for that chunk instead of
 * fetching on its own. The kernel is the last line (EEXIST), and the race-safe ops take it.
 */
import { PAGE_SIZE, UFFDIO_REGISTER_MODE_MISSING } from "@uffd/kernel/uapi";
import type { UffdContext } from "./context.ts";
import { subscribe, unsubscribe } from "./dispatch.ts";
import { mfill } from "./ops.ts";
import type { PageSource } from "./page-source.ts";
import { PAGE_STATE, type RangeEntry } from "./ranges.ts";
import type { Fault, Resolution } from "./types.ts";

/** Options of uffd.serve(). */
export interface ServeOptions {
  /** What a wp fault gets. Default "unprotect"; "ignore" leaves wp faults to other listeners. */
  wp?: "unprotect" | "ignore";
}

/**
 * Installs the default fault handler; returns a function that removes it. The listener is
 * inherited by fork children's handlers, so it serves each fault against the page states of the
 * userfaultfd that read it (the context passed with the fault), never those of the one it was
 * installed on.
 */
export function serve(ctx: UffdContext, source: PageSource, options: ServeOptions = {}): () => void {
  const wp = options.wp ?? "unprotect";
  const listener = (f: Fault, reader: UffdContext): Promise<Resolution> | undefined => serveFault(reader, source, f, wp);
  subscribe(ctx, "fault", listener as never, false, true);
  return () => unsubscribe(ctx, "fault", listener as never);
}

function serveFault(ctx: UffdContext, source: PageSource, f: Fault, wp: "unprotect" | "ignore"): Promise<Resolution> | undefined {
  if (f.kind === "minor") return f.continue();
  if (f.kind === "wp") return wp === "unprotect" ? f.unprotect() : undefined;
  if (f.removed) return f.zeropage();
  const st = ctx.ranges.stateOf(f.pageAddress);
  if ((st & PAGE_STATE.FILLING) !== 0) return ctx.waitPage(f.pageAddress).then(() => (f.settled ? f.resolution ?? "present" : serveFault(ctx, source, f, wp) ?? "present"));
  // A missing fault on a page this handler already installed: a stale duplicate (the copy gets
  // EEXIST and wakes), or the page was zapped without a REMOVE event, which makes it zero.
  if ((st & PAGE_STATE.INSTALLED) !== 0) return f.zeropage();
  const bytes = source.read(f.offset, PAGE_SIZE);
  if (!(bytes instanceof Promise)) return bytes === null ? f.zeropage() : f.copy(bytes);
  // While the bytes are on their way the page is FILLING, so a background fill leaves it alone.
  const page = f.pageAddress;
  ctx.ranges.mark(page, page + PAGE_SIZE, PAGE_STATE.FILLING, 0);
  return bytes
    .then((b) => (f.settled ? f.resolution ?? "present" : b === null ? f.zeropage() : f.copy(b)))
    .finally(() => {
      ctx.ranges.mark(page, page + PAGE_SIZE, 0, PAGE_STATE.FILLING);
      ctx.notifyPages(page, page + PAGE_SIZE);
    });
}

/** Options of uffd.fill() (a background fill). */
export interface FillOptions {
  /** Pages per request at first (CRIU starts at 64 KiB). Default 16. */
  chunkPages?: number;
  /** The most pages per request (CRIU grows to 4 MiB). Default 1024. */
  maxChunkPages?: number;
  /** Fill only these pages, in this order (a recorded working set); default every page of every missing range. */
  pages?: readonly number[];
}

/** What a background fill did so far. */
export interface FillStats {
  /** Bytes this fill installed. */
  installedBytes: number;
  /** Bytes found present (a demand fault or another fill got there first). */
  presentBytes: number;
  /** Bytes skipped because a REMOVE made them zero while they were being fetched. */
  skippedBytes: number;
  /** Requests made to the source. */
  requests: number;
}

/** A background fill; start it with fill(). */
export class BackgroundFill {
  readonly #ctx: UffdContext;
  readonly #source: PageSource;
  readonly #chunkMin: number;
  readonly #chunkMax: number;
  readonly #pages: readonly number[] | null;
  #stopped = false;
  /** Counts so far (updated as the fill goes). */
  readonly stats: FillStats = { installedBytes: 0, presentBytes: 0, skippedBytes: 0, requests: 0 };
  /** Resolves when every page was tried, or after stop(). */
  readonly done: Promise<FillStats>;

  /** @internal Fills the ranges of `ctx` (a fill belongs to the userfaultfd it was started on). */
  constructor(ctx: UffdContext, source: PageSource, options: FillOptions) {
    this.#ctx = ctx;
    this.#source = source;
    this.#chunkMin = Math.max(1, options.chunkPages ?? 16);
    this.#chunkMax = Math.max(this.#chunkMin, options.maxChunkPages ?? 1024);
    this.#pages = options.pages ?? null;
    // Nobody has to await done: a failure is reported on "error" and the stats so far returned.
    this.done = this.#run().catch((e: unknown) => {
      ctx.report(e, null);
      return this.stats;
    });
  }

  /** Stops after the chunk in flight. */
  stop(): void {
    this.#stopped = true;
  }

  async #run(): Promise<FillStats> {
    let chunk = this.#chunkMin;
    let cursor = 0;
    let sweeps = 0;
    for (;;) {
      if (this.#stopped || this.#ctx.closed) break;
      const faultsBefore = this.#demandFaults();
      const run = this.#pages === null ? this.#nextRun(cursor, chunk) : this.#nextListedRun(chunk);
      if (run === null) {
        // One more sweep from the bottom catches ranges an mremap moved below the cursor.
        if (this.#pages !== null || cursor === 0 || ++sweeps > 1) break;
        cursor = 0;
        continue;
      }
      cursor = run.end;
      await this.#fillRun(run.entry, run.start, run.end);
      chunk = this.#demandFaults() !== faultsBefore ? this.#chunkMin : Math.min(this.#chunkMax, chunk * 2);
    }
    return this.stats;
  }

  #demandFaults(): number {
    const f = this.#ctx.metrics.faults;
    return f.missing + f.minor + f.wp;
  }

  /** The first run of fillable pages at or after `from` (address order), at most `chunk` pages. */
  #nextRun(from: number, chunk: number): { entry: RangeEntry; start: number; end: number } | null {
    for (const e of this.#ctx.ranges.entries) {
      if (e.end <= from || (e.modes & UFFDIO_REGISTER_MODE_MISSING) === 0) continue;
      for (let a = Math.max(from, e.start); a < e.end; a += PAGE_SIZE) {
        if (!fillable(e.state[e.stateIndex(a)]!)) continue;
        return { entry: e, start: a, end: runEnd(e, a, chunk) };
      }
    }
    return null;
  }

  #listIndex = 0;

  #nextListedRun(chunk: number): { entry: RangeEntry; start: number; end: number } | null {
    const pages = this.#pages!;
    while (this.#listIndex < pages.length) {
      const a = pages[this.#listIndex++]!;
      const e = this.#ctx.ranges.find(a);
      if (e === null || (e.modes & UFFDIO_REGISTER_MODE_MISSING) === 0 || !fillable(e.state[e.stateIndex(a)]!)) continue;
      let end = a + PAGE_SIZE;
      while (this.#listIndex < pages.length && pages[this.#listIndex] === end && end < e.end && (end - a) / PAGE_SIZE < chunk && sameRun(e, a, end)) {
        end += PAGE_SIZE;
        this.#listIndex++;
      }
      return { entry: e, start: a, end };
    }
    return null;
  }

  async #fillRun(entry: RangeEntry, start: number, end: number): Promise<void> {
    const ctx = this.#ctx;
    const protect = (entry.state[entry.stateIndex(start)]! & PAGE_STATE.PROTECTED) !== 0;
    ctx.ranges.mark(start, end, PAGE_STATE.FILLING, 0);
    const epoch = ctx.eventEpoch;
    try {
      this.stats.requests++;
      const bytes = await this.#source.read(entry.sourceOffset(start), end - start);
      const r = await mfill(ctx, bytes === null ? "zeropage" : "copy", start, end - start, bytes, {
        protect,
        dontWake: false,
        sinceEpoch: epoch,
        onRemoved: "skip",
        prefetch: true,
        allowSrcHoles: false,
      });
      this.stats.installedBytes += r.installed + r.zeroed;
      this.stats.presentBytes += r.present;
      this.stats.skippedBytes += r.skipped;
    } catch (e) {
      ctx.report(e, null);
    } finally {
      ctx.ranges.mark(start, end, 0, PAGE_STATE.FILLING);
      ctx.notifyPages(start, end);
    }
  }
}


function fillable(st: number): boolean {
  return (st & (PAGE_STATE.INSTALLED | PAGE_STATE.REMOVED | PAGE_STATE.FILLING)) === 0;
}

/** Pages of one run share fillability and write protection (a copy's MODE_WP covers the whole run). */
function sameRun(e: RangeEntry, first: number, a: number): boolean {
  const st = e.state[e.stateIndex(a)]!;
  return fillable(st) && (st & PAGE_STATE.PROTECTED) === (e.state[e.stateIndex(first)]! & PAGE_STATE.PROTECTED);
}

function runEnd(e: RangeEntry, start: number, chunk: number): number {
  let end = start + PAGE_SIZE;
  while (end < e.end && (end - start) / PAGE_SIZE < chunk && sameRun(e, start, end)) end += PAGE_SIZE;
  return end;
}
