/**
 * The guest's workload: several simulated threads, each paced in wall-clock time.
 *
 * - hot:    read-modify-write of pages in a small hot set (the working set precopy keeps resending)
 * - scan:   sequential reads of page headers across all memory (postcopy's worst case)
 * - random: read-modify-write of pages anywhere (spreads dirty pages)
 *
 * Every access is a real Thread.read/write in the simulated kernel, so on the destination during
 * postcopy a thread that touches a missing page blocks in a userfault until the page arrives.
 * The whole state of a thread (kind, PRNG words, cursor) is small and serialisable: it is the
 * "vCPU state" the source ships at switchover, and the destination continues the same streams.
 */
import type { Thread } from "@uffd/kernel";
import { PAGE_SIZE } from "@uffd/kernel/uapi";
import type { ThreadKind, ThreadSpec } from "./config.ts";
import type { Guest, WriteLog } from "./guest.ts";
import { CORRUPT, fillHeader, fillInitialPage, fillRecord, HEADER_BYTES, parseHeader, recordSlot, SLOT_BYTES, UNPOPULATED, wordsOf } from "./pages.ts";
import { Prng, type PrngState } from "./prng.ts";
import { TimeSlice } from "./yield.ts";

export interface ThreadState {
  kind: ThreadKind;
  rate: number;
  prng: PrngState;
  cursor: number;
  ops: number;
}

export interface WorkloadState {
  hotBase: number;
  hotPages: number;
  threads: ThreadState[];
}

/** The initial workload state: the hot set sits at a seed-chosen, page-aligned offset. */
export function initialWorkloadState(seed: number, pages: number, hotPages: number, specs: readonly ThreadSpec[]): WorkloadState {
  const placement = Prng.fromSeed(seed, 0xbeef);
  const hotBase = placement.below(Math.max(1, pages - hotPages + 1));
  const threads = specs.map((s, i) => ({ kind: s.kind, rate: s.rate, prng: Prng.fromSeed(seed, i + 1).state, cursor: 0, ops: 0 }));
  return { hotBase, hotPages, threads };
}

/** At most this much missed time is caught up after a thread was blocked (a burst bound). */
const MAX_CATCH_UP_MS = 50;

interface Runner {
  state: ThreadState;
  prng: Prng;
  thread: Thread;
  done: Promise<void>;
  /** Set while the thread is inside one access (possibly blocked in a userfault). */
  busy: boolean;
}

export class Workload {
  readonly #guest: Guest;
  readonly #log: WriteLog;
  readonly #hotBase: number;
  readonly #hotPages: number;
  readonly #runners: Runner[] = [];
  #stopping = false;
  #started = false;
  readonly #napWaiters = new Set<() => void>();
  readonly #progressWaiters = new Set<() => void>();
  #writes = 0;
  /** When a thread first completed an operation here (epoch ms): the guest's first useful progress. */
  firstOpEpochMs: number | null = null;
  /** The first error a thread hit (a signal, the process dying); the thread stops. */
  error: Error | null = null;
  readonly #hdr = new Uint32Array(4);
  readonly #rec = new Uint32Array(SLOT_BYTES / 4);

  constructor(guest: Guest, state: WorkloadState, log: WriteLog) {
    this.#guest = guest;
    this.#log = log;
    this.#hotBase = state.hotBase;
    this.#hotPages = state.hotPages;
    for (const t of state.threads) {
      const runner: Runner = { state: { ...t }, prng: new Prng(t.prng), thread: guest.proc.spawnThread(`vcpu-${t.kind}`), done: Promise.resolve(), busy: false };
      this.#runners.push(runner);
    }
  }

  get ops(): number {
    return this.#runners.reduce((n, r) => n + r.state.ops, 0);
  }

  /** Page writes completed here (read-modify-writes and first writes of unpopulated pages). */
  get writes(): number {
    return this.#writes;
  }

  /**
   * Resolves true once `done()` holds, checked after every completed operation; false when a
   * thread failed, the workload was paused, or `timeoutMs` passed first. Waiting on the guest's
   * progress, not on a sleep, is what keeps a test scenario the same on a loaded host.
   */
  until(done: (w: Workload) => boolean, timeoutMs: number): Promise<boolean> {
    if (done(this)) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const finish = (ok: boolean): void => {
        clearTimeout(timer);
        this.#progressWaiters.delete(check);
        resolve(ok);
      };
      const check = (): void => {
        if (done(this)) finish(true);
        else if (this.error !== null || this.#stopping) finish(false);
      };
      const timer = setTimeout(() => finish(false), timeoutMs);
      this.#progressWaiters.add(check);
    });
  }

  #progress(): void {
    for (const check of [...this.#progressWaiters]) check();
  }

  /** Threads currently inside an access: after a pause times out, the ones blocked for good. */
  get busyThreads(): number {
    return this.#runners.filter((r) => r.busy).length;
  }

  start(): void {
    if (this.#started) throw new Error("workload already started");
    this.#started = true;
    for (const r of this.#runners) r.done = this.#run(r);
  }

  /**
   * Stops every thread after its current access. Resolves true when all stopped, false when
   * `timeoutMs` passed first (some thread is blocked, e.g. on a page that will never arrive).
   */
  async pause(timeoutMs = Infinity): Promise<boolean> {
    this.#stopping = true;
    for (const wake of [...this.#napWaiters]) wake();
    this.#progress();
    const all = Promise.all(this.#runners.map((r) => r.done)).then(() => true);
    if (!Number.isFinite(timeoutMs)) return all;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    const stopped = await Promise.race([all, timeout]);
    clearTimeout(timer);
    return stopped;
  }

  /** The state to ship at switchover (valid once paused). */
  state(): WorkloadState {
    return {
      hotBase: this.#hotBase,
      hotPages: this.#hotPages,
      threads: this.#runners.map((r) => ({ ...r.state, prng: r.prng.state })),
    };
  }

  async #run(r: Runner): Promise<void> {
    let last = performance.now();
    let credit = 0;
    // A thread that was blocked (a missing page, a busy host) catches up within the process's
    // SLICE_MS per event-loop turn (one access per turn when the other loops used it up):
    // accesses to present pages settle without a turn, and a burst of hundreds would hold up the
    // sockets (a demand page for another thread) meanwhile.
    const slice = new TimeSlice();
    try {
      while (!this.#stopping) {
        const now = performance.now();
        credit = Math.min(credit + ((now - last) * r.state.rate) / 1000, (r.state.rate * MAX_CATCH_UP_MS) / 1000 + 1);
        last = now;
        for (let n = Math.floor(credit); n > 0 && !this.#stopping; n--) {
          const turn = slice.tick();
          if (turn !== undefined) await turn;
          if (this.#stopping) break;
          credit--;
          r.busy = true;
          await this.#step(r);
          r.busy = false;
          r.state.ops++;
          this.firstOpEpochMs ??= performance.timeOrigin + performance.now();
          this.#progress();
        }
        await this.#nap();
        slice.restart();
      }
    } catch (e) {
      this.error ??= e instanceof Error ? e : new Error(String(e));
    }
    this.#progress();
  }

  /** Sleeps about 1 ms between batches; pause() cuts the nap short. */
  #nap(): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#napWaiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, 1);
      this.#napWaiters.add(done);
    });
  }

  #step(r: Runner): Promise<void> {
    const pages = this.#guest.pages;
    switch (r.state.kind) {
      case "hot":
        return this.#readModifyWrite(r.thread, this.#hotBase + r.prng.below(this.#hotPages));
      case "random":
        return this.#readModifyWrite(r.thread, r.prng.below(pages));
      case "scan": {
        const page = r.state.cursor;
        r.state.cursor = (page + 1) % pages;
        return this.#readHeader(r.thread, page).then(() => undefined);
      }
    }
  }

  async #readHeader(thread: Thread, page: number): Promise<number> {
    const g = this.#guest;
    const version = parseHeader(wordsOf(await thread.read(g.addr(page), HEADER_BYTES)), g.seed, page);
    if (version === CORRUPT) this.#log.corruptReads++;
    else this.#log.observe(page, version);
    return version;
  }

  /** One guest write: read the header, write the next record, then the new header. */
  async #readModifyWrite(thread: Thread, page: number): Promise<void> {
    const g = this.#guest;
    const version = await this.#readHeader(thread, page);
    if (version === CORRUPT) return;
    if (version === UNPOPULATED) {
      const bytes = new Uint8Array(PAGE_SIZE);
      fillInitialPage(wordsOf(bytes), g.seed, page);
      await thread.write(g.addr(page), bytes);
      this.#log.wrote(page, 0);
      this.#writes++;
      return;
    }
    const next = version + 1;
    fillRecord(this.#rec, g.seed, page, next);
    await thread.write(g.addr(page) + recordSlot(next) * SLOT_BYTES, new Uint8Array(this.#rec.buffer.slice(0)));
    fillHeader(this.#hdr, g.seed, page, next);
    await thread.write(g.addr(page), new Uint8Array(this.#hdr.buffer.slice(0)));
    this.#log.wrote(page, next);
    this.#writes++;
  }
}
