/**
 * The guest: one simulated process whose anonymous private mapping is the guest RAM, in its own
 * simulated kernel. The source boots it (writes version 0 of most pages); the destination
 * creates the same layout empty and fills it from the migration stream.
 *
 * Page contents and the write bookkeeping (WriteLog) are what the end-of-run verification uses:
 * the destination's memory must equal, byte for byte, what the guest wrote.
 */
import { DEFAULT_RELEASE, Kernel, type AnyRelease, type FrameStoreKind, type Process, type Thread } from "@uffd/kernel";
import { MADV_DONTNEED, MAP_ANONYMOUS, MAP_NORESERVE, MAP_PRIVATE, PAGE_SIZE, PROT_READ, PROT_WRITE } from "@uffd/kernel/uapi";
import { fillInitialPage, pageGenerator, UNPOPULATED, WORDS_PER_PAGE } from "./pages.ts";
import { mix32 } from "./prng.ts";

/** "This side has not seen the page": the destination's starting point for every page. */
export const NOT_KNOWN = 0xffff_fffe;

/**
 * What one side knows about page versions. `known[p]` is the version this side last read or
 * wrote; `firstSeen[p]` the version it read before writing anything (the destination's proof
 * that it ran on the source's data, not on stale or missing bytes).
 */
export class WriteLog {
  readonly known: Uint32Array;
  readonly firstSeen: Uint32Array;
  /** Reads that disagreed with what this side itself wrote: always a bug. */
  mismatches = 0;
  corruptReads = 0;

  constructor(pages: number, initial: number) {
    this.known = new Uint32Array(pages).fill(initial);
    this.firstSeen = new Uint32Array(pages).fill(NOT_KNOWN);
  }

  observe(page: number, version: number): void {
    const k = this.known[page]!;
    if (k === NOT_KNOWN) {
      this.firstSeen[page] = version;
      this.known[page] = version;
    } else if (k !== version) {
      this.mismatches++;
    }
  }

  wrote(page: number, version: number): void {
    this.known[page] = version;
  }
}

export interface GuestOptions {
  seed: number;
  pages: number;
  /**
   * How the guest's kernel holds page bytes (default "compact": a page whose bytes are the
   * content model's output for some (page, version) costs no 4 KiB of host memory, see
   * pageGenerator()). "flat" gives every written page its own 4 KiB, for comparison.
   */
  frameStore?: FrameStoreKind;
  /**
   * Flat store only: take and touch host memory for every guest page when the kernel is created
   * (the kernel's `pretouch`), as a destination preallocates its RAM before an incoming migration.
   */
  prealloc?: boolean;
  /** The release profile this side's kernel answers as (default 6.18). */
  release?: AnyRelease;
}

export class Guest {
  readonly kernel: Kernel;
  readonly proc: Process;
  readonly base: number;
  readonly pages: number;
  readonly seed: number;
  /** The VMM's own thread: reads pages to send (source), writes received pages (destination). */
  readonly vmmThread: Thread;

  private constructor(kernel: Kernel, proc: Process, base: number, options: GuestOptions) {
    this.kernel = kernel;
    this.proc = proc;
    this.base = base;
    this.pages = options.pages;
    this.seed = options.seed;
    this.vmmThread = proc.spawnThread("vmm");
  }

  static async create(options: GuestOptions, role: string): Promise<Guest> {
    const kernel = new Kernel({
      seed: options.seed,
      memoryPages: Math.max(1 << 16, options.pages * 2 + 1024),
      frameStore: options.frameStore ?? "compact",
      pretouch: options.prealloc === true ? options.pages + 1 : 0,
      release: options.release ?? DEFAULT_RELEASE,
    });
    // Whatever writes a page (the guest's workload, the destination's UFFDIO_COPY of a received
    // page), the kernel keeps it as (page, version) only after generating that version and
    // finding every byte equal: a page with any other bytes keeps them.
    kernel.registerFrameGenerator(pageGenerator(options.seed));
    const proc = kernel.spawn({ name: `guest-${role}` });
    const base = await proc.mmap(0, options.pages * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE);
    return new Guest(kernel, proc, base, options);
  }

  /** Virtual time of this guest's kernel, in ns. */
  get virtualNs(): number {
    return this.kernel.now;
  }

  addr(page: number): number {
    return this.base + page * PAGE_SIZE;
  }

  /** Whether page `p` is booted with data (a fixed, seed-chosen subset). */
  static populated(seed: number, page: number, fraction: number): boolean {
    return mix32((seed ^ Math.imul(page + 1, 0x2545_f491)) >>> 0) / 0x1_0000_0000 < fraction;
  }

  /** Writes version 0 into the populated pages; returns the source's write log. */
  async boot(fraction: number, onProgress: (done: number) => void): Promise<WriteLog> {
    const log = new WriteLog(this.pages, UNPOPULATED);
    const bytes = new Uint8Array(PAGE_SIZE);
    const words = new Uint32Array(bytes.buffer, 0, WORDS_PER_PAGE);
    for (let p = 0; p < this.pages; p++) {
      if (Guest.populated(this.seed, p, fraction)) {
        fillInitialPage(words, this.seed, p);
        await this.vmmThread.write(this.addr(p), bytes);
        log.wrote(p, 0);
      }
      if ((p & 4095) === 4095) {
        onProgress(p + 1);
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    }
    onProgress(this.pages);
    return log;
  }

  /** Which of pages [first, first+count) have a page (or swap entry) behind them. */
  presentMap(first: number, count: number): boolean[] {
    return this.proc.pagemap(this.addr(first), count).map((e) => e.present || e.swapped);
  }

  readPage(page: number): Promise<Uint8Array> {
    return this.vmmThread.read(this.addr(page), PAGE_SIZE);
  }

  /** Pages [first, first+n) in one read (one syscall, one promise). */
  readPages(first: number, n: number): Promise<Uint8Array> {
    return this.vmmThread.read(this.addr(first), n * PAGE_SIZE);
  }

  /** Writes pages [first, first + data.length / 4096) in one write. */
  writePages(first: number, data: Uint8Array): Promise<void> {
    return this.vmmThread.write(this.addr(first), data);
  }

  writePage(page: number, data: Uint8Array): Promise<void> {
    return this.vmmThread.write(this.addr(page), data);
  }

  /** Drops pages with MADV_DONTNEED, coalescing runs: the destination's postcopy DISCARD (as QEMU). */
  async discard(pages: Uint32Array): Promise<void> {
    for (let i = 0; i < pages.length; ) {
      let j = i + 1;
      while (j < pages.length && pages[j] === pages[j - 1]! + 1) j++;
      await this.proc.madvise(this.addr(pages[i]!), (j - i) * PAGE_SIZE, MADV_DONTNEED);
      i = j;
    }
  }
}
