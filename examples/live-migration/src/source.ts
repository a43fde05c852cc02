/**
 * The source side: boots the guest, runs its workload, and moves its memory to the destination.
 *
 * precopy:  round 1 sends every page while the guest runs; each later round sends the pages the
 *           dirty tracker saw written meanwhile, until the rest fits in the downtime budget (or
 *           max rounds); then the guest stops, the last dirty pages go (stop-and-copy) with the
 *           device state, and the destination resumes a complete guest.
 * postcopy: the guest stops at once and resumes on the destination with no memory; the
 *           destination's missing faults become REQUEST frames answered ahead of everything
 *           (urgent queue) while a background push streams the rest, restarting right after the
 *           last requested page (QEMU's spatial-locality trick).
 * hybrid:   precopy rounds, then postcopy for what is still dirty; the destination first discards
 *           its stale copies of those pages so they fault (QEMU's DISCARD step).
 */
import { connect } from "node:net";
import type { Fallback } from "@uffd/sdk";
import { frameStoreOf, guestPages, type MigrationConfig } from "./config.ts";
import { createDirtyTracker, type DirtyTracker, type TrackingMethod } from "./dirty-tracking.ts";
import { Endpoint } from "./endpoint.ts";
import { Guest, type WriteLog } from "./guest.ts";
import { cpuMeter, nowEpochMs, type CpuTime, type OpsSample, type RoundInfo } from "./metrics.ts";
import { PROGRESS_INTERVAL_MS, ReportGate } from "./ipc.ts";
import { isZeroPage } from "./pages.ts";
import { MAX_JSON_PAYLOAD, ProtocolViolation, SourceProtocol, type DeviceState, type Hello } from "./protocol-state.ts";
import { DISCARD_AT_SWITCHOVER, encodeFrame, encodeJson, encodePageList, encodePagesFrame, FRAME, FrameBufferPool, MAX_RUN_PAGES, PAGE_KIND, PAGE_ZERO, PROTOCOL_VERSION, type Frame, type PageKind } from "./protocol.ts";
import { initialWorkloadState, Workload } from "./workload.ts";
import { HopTracer } from "./trace.ts";
import { TimeSlice } from "./yield.ts";

export type { DeviceState, Hello } from "./protocol-state.ts";

export interface SourceHooks {
  progress(phase: string, done: number, total: number): void;
  /** The oracle: every page's version as the guest left it on the source (sent at switchover). */
  oracle(versions: Uint32Array): void;
}

export interface SourceMetrics {
  trackingMethod: TrackingMethod | "none";
  /** What the dirty tracking fell back to on this side's kernel release (empty: nothing, or no tracking). */
  fallbacks?: Fallback[];
  notes: string[];
  startEpochMs: number;
  pauseEpochMs: number;
  endEpochMs: number;
  virtualNs: { start: number; pause: number; deviceStateSent: number; end: number };
  sent: { precopy: number; stopCopy: number; demand: number; background: number; zero: number; duplicate: number };
  rounds: RoundInfo[];
  /** alreadySent: already answered on demand; resentFromBulk: pushed on the bulk connection, sent again on demand. */
  requests: { received: number; alreadySent: number; resentFromBulk: number };
  bytesSent: number;
  bytesReceived: number;
  guestOps: number;
  workloadError: string | null;
  mismatches: number;
  corruptReads: number;
  opsTimeline: OpsSample[];
  /** Demand pages travelled on their own (postcopy-preempt) connection. */
  preempt: boolean;
  /** Ms the bulk socket refused data: the receiver, not the modelled link, was the bottleneck. */
  linkBlockedMs: number;
  /** Bytes queued ahead of each demand page on its connection when it was sent. */
  demandQueuedAhead: QueuedAhead;
  /** Peak resident memory of this process. */
  maxRssBytes?: number;
  /** This process's CPU time from the start of migrate() to the destination's DONE. */
  cpu?: CpuTime;
}

/** What demand pages waited behind, in bytes and in link time (the shaper's model). */
export interface QueuedAhead {
  count: number;
  p50Bytes: number;
  p99Bytes: number;
  maxBytes: number;
  /** (bytes ahead + the page) / bandwidth + latency, in ms; null on an unlimited link. */
  p99LinkMs: number | null;
  maxLinkMs: number | null;
}

function summarizeAhead(samples: readonly number[], shape: MigrationConfig["link"]): QueuedAhead {
  const s = Float64Array.from(samples).sort();
  const pct = (p: number): number => (s.length === 0 ? 0 : s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!);
  const bw = shape.bandwidthBytesPerSec;
  const linkMs = (bytes: number): number | null => (bw > 0 ? ((bytes + PAGE_BYTES + 16) * 1000) / bw + shape.latencyMs : null);
  const max = s.length === 0 ? 0 : s[s.length - 1]!;
  return { count: s.length, p50Bytes: pct(50), p99Bytes: pct(99), maxBytes: max, p99LinkMs: linkMs(pct(99)), maxLinkMs: linkMs(max) };
}

const PAGE_BYTES = 4096;
/** Index of the high 32-bit half of a 64-bit word in a Uint32Array view (1 on little-endian hosts). */
const HIGH_WORD = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1 ? 1 : 0;
if (MAX_RUN_PAGES > 64) throw new Error("a run's present bits are kept in two 32-bit masks: at most 64 pages per run");

/** Pages per block of NeededPages' counts. */
const NEEDED_BLOCK_SHIFT = 6;

/**
 * The pages postcopy still has to send: a byte per page and a count per block of 64 pages, so
 * finding the next needed page skips a sent block at once. (The push restarts after every
 * requested page; scanning page by page over what was already sent made each restart cost up to
 * the whole guest, which grew with the guest's size times the number of requests.)
 */
export class NeededPages {
  readonly pages: number;
  readonly #bits: Uint8Array;
  readonly #perBlock: Uint8Array;
  /** Pages still needed. */
  remaining = 0;

  constructor(pages: number) {
    this.pages = pages;
    this.#bits = new Uint8Array(pages);
    this.#perBlock = new Uint8Array((pages + (1 << NEEDED_BLOCK_SHIFT) - 1) >>> NEEDED_BLOCK_SHIFT);
  }

  has(p: number): boolean {
    return this.#bits[p] === 1;
  }

  add(p: number): void {
    if (this.#bits[p] === 1) return;
    this.#bits[p] = 1;
    this.#perBlock[p >>> NEEDED_BLOCK_SHIFT]!++;
    this.remaining++;
  }

  /** Every page of the guest. */
  addAll(): void {
    for (let p = 0; p < this.pages; p++) this.add(p);
  }

  /** Marks `p` sent; false if it was not needed. */
  take(p: number): boolean {
    if (this.#bits[p] !== 1) return false;
    this.#bits[p] = 0;
    this.#perBlock[p >>> NEEDED_BLOCK_SHIFT]!--;
    this.remaining--;
    return true;
  }

  /** The first needed page at or after `from`, wrapping past the end; -1 when none is left. */
  next(from: number): number {
    if (this.remaining === 0) return -1;
    const bits = this.#bits;
    const perBlock = this.#perBlock;
    let p = from >= 0 && from < this.pages ? from : 0;
    for (;;) {
      const b = p >>> NEEDED_BLOCK_SHIFT;
      const end = Math.min(this.pages, (b + 1) << NEEDED_BLOCK_SHIFT);
      if (perBlock[b] !== 0) for (; p < end; p++) if (bits[p] === 1) return p;
      p = end >= this.pages ? 0 : end;
    }
  }
}

export class MigrationSource {
  readonly #config: MigrationConfig;
  readonly #guest: Guest;
  readonly #log: WriteLog;
  readonly #workload: Workload;
  readonly #hooks: SourceHooks;
  #ep: Endpoint | null = null;
  /** The postcopy-preempt connection (null: single stream). */
  #preemptEp: Endpoint | null = null;
  readonly #demandAhead: number[] = [];
  /** Postcopy: 1 = pushed on the bulk connection, 2 = then also answered on demand. */
  #pushed: Uint8Array = new Uint8Array(0);
  #completeSent = false;
  readonly #sentCount: Uint16Array;
  /** Postcopy: pages the destination still lacks and that have not been queued yet. */
  #needed: NeededPages | null = null;
  #pushCursor = 0;
  #pendingDemand = 0;
  #postcopySent = 0;
  #requestWaiter: { n: number; resolve: () => void } | null = null;
  /** Fault injection: past killSourceAfterPostcopyPages this process only waits for its SIGKILL. */
  #frozen = false;
  #postcopyTotal = 0;
  readonly #m: SourceMetrics;
  readonly #proto: SourceProtocol;
  /** Opt-in hop timestamps, GC and event-loop delays (LM_TRACE_DIR; see trace.ts). */
  readonly #trace = new HopTracer("source");

  private constructor(config: MigrationConfig, guest: Guest, log: WriteLog, workload: Workload, hooks: SourceHooks) {
    this.#config = config;
    this.#guest = guest;
    this.#log = log;
    this.#workload = workload;
    this.#hooks = hooks;
    this.#sentCount = new Uint16Array(guest.pages);
    this.#m = emptySourceMetrics();
    this.#proto = new SourceProtocol(guest.pages);
  }

  /** Creates and boots the guest and starts its workload. */
  static async boot(config: MigrationConfig, hooks: SourceHooks): Promise<MigrationSource> {
    const pages = guestPages(config);
    const guest = await Guest.create({ seed: config.seed, pages, frameStore: frameStoreOf(config), release: config.kernel.source }, "source");
    const log = await guest.boot(config.populate, (done) => hooks.progress("boot", done, pages));
    const hotPages = Math.max(1, Math.floor(config.hotSetBytes / 4096));
    const workload = new Workload(guest, initialWorkloadState(config.seed, pages, hotPages, config.workload), log);
    workload.start();
    return new MigrationSource(config, guest, log, workload, hooks);
  }

  get workload(): Workload {
    return this.#workload;
  }

  /** The protocol state (for tests and error reports). */
  get protocolState(): string {
    return this.#proto.state;
  }

  /**
   * Connects to the destination and migrates; resolves with the source's metrics. `token` is the
   * secret both sides were handed out of band; the destination refuses a HELLO without it.
   */
  async migrate(target: { host?: string; port: number }, startEpochMs: number, token: string): Promise<SourceMetrics> {
    const m = this.#m;
    const limits = this.#config.protocol;
    m.startEpochMs = startEpochMs;
    const cpu = cpuMeter();
    this.#trace.start();
    m.virtualNs.start = this.#guest.virtualNs;
    const sampler = setInterval(() => this.#sampleOps(), 50);
    try {
      const host = target.host ?? "127.0.0.1";
      const ep = await this.#connect(host, target.port, null);
      this.#ep = ep;
      const preempt = this.#config.strategy !== "precopy" && this.#config.postcopyPreempt;
      const hello: Hello = { version: PROTOCOL_VERSION, pages: this.#guest.pages, seed: this.#config.seed, strategy: this.#config.strategy, startEpochMs, token, channel: "main", preempt };
      ep.link.send(encodeJson(FRAME.HELLO, hello));
      this.#proto.sentHello();
      await ep.waitFor(FRAME.HELLO_ACK, limits.handshakeTimeoutMs, "the destination's HELLO_ACK");
      if (preempt) {
        // The postcopy-preempt connection (QEMU's): demand requests and their pages only, on the
        // same wire, ahead of the bulk connection at every segment boundary.
        const pe = await this.#connect(host, target.port, ep);
        this.#preemptEp = pe;
        pe.link.send(encodeJson(FRAME.HELLO, { ...hello, channel: "preempt", preempt: false }));
        this.#proto.sentPreemptHello();
        await pe.waitFor(FRAME.HELLO_ACK, limits.handshakeTimeoutMs, "the destination's HELLO_ACK on the preempt channel");
      }
      if (this.#config.strategy === "postcopy") await this.#switchToPostcopy(null, new Uint32Array(0));
      else await this.#precopyPhase();
      await ep.waitFor(FRAME.DONE, limits.phaseTimeoutMs, "the destination's DONE");
      m.cpu = cpu();
      ep.finish();
      this.#preemptEp?.finish();
      m.endEpochMs = nowEpochMs();
      m.virtualNs.end = this.#guest.virtualNs;
      await Promise.all([ep.end(), this.#preemptEp?.end()]);
      return this.#finalMetrics();
    } catch (e) {
      // Say where the conversation broke; the guest still runs here unless it had switched over.
      const where = this.#m.pauseEpochMs === 0 ? "the guest still runs on the source" : "the guest was stopped on the source for the switchover";
      throw new Error(`migration failed in protocol state "${this.#proto.state}" (${where}): ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    } finally {
      clearInterval(sampler);
    }
  }

  /** Cuts the connection and stops the guest's workload (tests; the CLI exits instead). */
  async dispose(): Promise<void> {
    this.abort("the source was disposed");
    await this.#workload.pause(1000);
  }

  /** Cuts the connections now (used by fault injection and on fatal errors). */
  abort(reason: string): void {
    this.#ep?.destroy(reason);
    this.#preemptEp?.destroy(reason);
  }

  /** Opens the main connection (main = null) or the preempt connection sharing main's wire. */
  #connect(host: string, port: number, main: Endpoint | null): Promise<Endpoint> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host, port }, () => {
        socket.off("error", reject);
        const ep = new Endpoint(socket, this.#config.link, {
          maxPayload: MAX_JSON_PAYLOAD,
          state: () => (main === null ? this.#proto.state : `${this.#proto.state}, preempt channel`),
          stallTimeoutMs: this.#config.protocol.stallTimeoutMs,
          ...(main !== null ? { wire: main.link.wire, priority: true } : {}),
        });
        ep.onFrame = main === null ? (f) => this.#onFrame(f) : (f) => this.#onPreemptFrame(f);
        if (main !== null) {
          // Losing either connection loses the migration.
          ep.onClose((e) => main.destroy(`the preempt channel failed: ${e.message}`));
          main.onClose((e) => ep.destroy(e.message));
        }
        resolve(ep);
      });
      socket.once("error", reject);
    });
  }

  /** Every frame from the destination, checked against the protocol state first. */
  #onFrame(f: Frame): void {
    const page = this.#proto.accept(f);
    if (f.type === FRAME.REQUEST) {
      if (this.#preemptEp !== null) throw new ProtocolViolation("REQUEST", this.#proto.state, "requests travel on the preempt channel");
      this.#onRequest(page);
    } else {
      this.#ep!.post(f);
    }
  }

  #onPreemptFrame(f: Frame): void {
    const page = this.#proto.acceptPreempt(f);
    if (f.type === FRAME.REQUEST) this.#onRequest(page);
    else this.#preemptEp!.post(f);
  }

  #sampleOps(): void {
    if (this.#m.pauseEpochMs !== 0) return;
    this.#m.opsTimeline.push({ tMs: nowEpochMs() - this.#m.startEpochMs, ops: this.#workload.ops, side: "source" });
  }

  // --- precopy --------------------------------------------------------------------------

  async #precopyPhase(): Promise<void> {
    const cfg = this.#config;
    const skipped: Fallback[] = [];
    const tracker = await createDirtyTracker(this.#guest, cfg.tracking, this.#m.notes, skipped);
    this.#m.trackingMethod = tracker.method;
    await tracker.start();
    this.#m.fallbacks = [...skipped, ...tracker.fallbacks];
    let dirty = await this.#round(1, null, tracker);
    for (let round = 2; ; round++) {
      const estimateMs = this.#estimateMs(dirty.length);
      if (cfg.strategy === "hybrid" && round > cfg.hybridRounds) break;
      if (cfg.strategy === "precopy" && (estimateMs <= cfg.maxDowntimeMs || round > cfg.maxRounds)) break;
      dirty = await this.#round(round, dirty, tracker);
    }
    if (cfg.strategy === "hybrid") await this.#switchToPostcopy(tracker, dirty);
    else await this.#stopAndCopy(tracker, dirty);
  }

  /** Sends one precopy round (null = every page); returns the pages dirtied meanwhile. */
  async #round(round: number, pages: Uint32Array | null, tracker: DirtyTracker): Promise<Uint32Array> {
    const t0 = performance.now();
    const zero0 = this.#m.sent.zero;
    const total = pages?.length ?? this.#guest.pages;
    const phase = `precopy round ${round}`;
    const writes0 = this.#workload.writes;
    await this.#sendList(pages, PAGE_KIND.PRECOPY, (done) => this.#hooks.progress(phase, done, total));
    const hold = round === 1 ? (this.#config.faults.holdFirstRoundUntilGuestWrites ?? 0) : 0;
    if (hold > 0 && !(await this.#workload.until((w) => w.writes - writes0 >= hold, this.#config.protocol.phaseTimeoutMs))) {
      throw new Error(`test hook: the guest did not write ${hold} pages during round 1 (${this.#workload.writes - writes0} written${this.#workload.error !== null ? `; ${this.#workload.error.message}` : ""})`);
    }
    this.#ep!.link.send(encodeFrame(FRAME.ROUND_END, 0, round, total));
    await this.#ep!.link.flush();
    const dirty = await tracker.collect();
    this.#m.rounds.push({ round, pages: total, zeroPages: this.#m.sent.zero - zero0, durationMs: performance.now() - t0, dirtyAfter: dirty.length });
    return dirty;
  }

  /** Expected stop-and-copy time for `pages` at the throughput the last round achieved. */
  #estimateMs(pages: number): number {
    const last = this.#m.rounds[this.#m.rounds.length - 1];
    const configured = this.#config.link.bandwidthBytesPerSec;
    const measured = last === undefined || last.durationMs === 0 ? configured : ((last.pages - last.zeroPages) * 4112) / (last.durationMs / 1000);
    const rate = configured > 0 ? Math.min(configured, measured) : measured;
    return (pages * 4112 * 1000) / Math.max(rate, 1) + this.#config.link.latencyMs;
  }

  /** Stops the guest and returns every page dirtied since the last round. */
  async #stopGuest(tracker: DirtyTracker | null, pending: Uint32Array): Promise<Uint32Array> {
    this.#m.pauseEpochMs = nowEpochMs();
    this.#m.virtualNs.pause = this.#guest.virtualNs;
    await this.#workload.pause();
    if (tracker === null) return pending;
    const last = await tracker.collect();
    const set = new Set<number>(pending);
    for (const p of last) set.add(p);
    return Uint32Array.from(set).sort();
  }

  async #stopAndCopy(tracker: DirtyTracker, pending: Uint32Array): Promise<void> {
    const final = await this.#stopGuest(tracker, pending);
    await this.#sendList(final, PAGE_KIND.STOP_COPY, (done) => this.#hooks.progress("stop-and-copy", done, final.length));
    this.#sendDeviceState("resume");
    await tracker.stop(); // after the device state left: releasing the userfaultfd is not downtime
    await this.#ep!.waitFor(FRAME.RESUMED, this.#config.protocol.phaseTimeoutMs, "the destination to resume the guest");
  }

  #sendDeviceState(mode: DeviceState["mode"]): void {
    const state: DeviceState = { mode, workload: this.#workload.state(), pauseEpochMs: this.#m.pauseEpochMs };
    this.#ep!.link.send(encodeJson(FRAME.DEVICE_STATE, state));
    this.#proto.sentDeviceState(mode);
    this.#m.virtualNs.deviceStateSent = this.#guest.virtualNs;
    // The test oracle goes to the orchestrator out of band, once the device state is on its way.
    setImmediate(() => this.#hooks.oracle(this.#log.known.slice()));
  }

  // --- postcopy -------------------------------------------------------------------------

  /**
   * Stops the guest and lets it run on the destination with missing pages. Hybrid: the pages
   * dirtied since their precopy copy are discarded on the destination first, most of them while
   * the guest still runs here (the destination is not running it yet), the rest at switchover.
   */
  async #switchToPostcopy(tracker: DirtyTracker | null, pending: Uint32Array): Promise<void> {
    const ep = this.#ep!;
    const needed = new NeededPages(this.#guest.pages);
    if (tracker !== null) {
      ep.link.send(encodeFrame(FRAME.DISCARD, 0, 0, pending.length, encodePageList(pending)));
      this.#proto.sentDiscard(pending.length);
      for (const p of pending) needed.add(p);
      await ep.waitFor(FRAME.DISCARD_ACK, this.#config.protocol.phaseTimeoutMs, "the destination to discard stale pages");
    }
    const stale = await this.#stopGuest(tracker, pending);
    if (tracker === null) {
      needed.addAll();
    } else {
      const late = stale.filter((p) => !needed.has(p));
      for (const p of late) needed.add(p);
      ep.link.send(encodeFrame(FRAME.DISCARD, DISCARD_AT_SWITCHOVER, 0, late.length, encodePageList(late)));
    }
    this.#postcopyTotal = needed.remaining;
    this.#needed = needed;
    this.#pushed = new Uint8Array(this.#guest.pages);
    this.#sendDeviceState("postcopy");
    await tracker?.stop();
    const hold = this.#config.faults.holdPushUntilRequests ?? 0;
    if (hold > 0) await this.#requestsReceived(hold);
    await this.#backgroundPush();
    while (this.#pendingDemand > 0) await new Promise<void>((resolve) => setImmediate(resolve));
    // COMPLETE counts the demand pages: the destination waits for those still on the preempt channel.
    ep.link.send(encodeFrame(FRAME.COMPLETE, 0, this.#m.sent.demand, this.#guest.pages));
    this.#completeSent = true; // from now on a request is for a page already on its way
    await ep.waitFor(FRAME.RESUMED, this.#config.protocol.phaseTimeoutMs, "the destination to resume the guest");
  }

  /**
   * Streams every still-needed page, continuing after the most recently requested one, as runs of
   * contiguous needed pages (one read, one PAGES frame each). It queues while the bulk
   * connection's send buffer has room and yields when it is full, so requests are answered
   * between runs; in single-stream mode their pages queue behind that buffer.
   */
  async #backgroundPush(): Promise<void> {
    const needed = this.#needed!;
    const link = this.#ep!.link;
    const pages = this.#guest.pages;
    const slice = new TimeSlice();
    while (needed.remaining > 0) {
      if (this.#frozen) await new Promise<never>(() => {}); // fault injection: waiting for SIGKILL
      if (!link.hasRoom()) {
        await link.waitForRoom();
        slice.restart();
      } else {
        const t = slice.tick();
        if (t !== undefined) await t;
      }
      if (needed.remaining === 0) break;
      const p = needed.next(this.#pushCursor % pages);
      let n = 1;
      while (n < MAX_RUN_PAGES && p + n < pages && needed.has(p + n)) n++;
      for (let i = 0; i < n; i++) {
        needed.take(p + i);
        this.#pushed[p + i] = 1;
      }
      this.#pushCursor = p + n;
      await this.#sendRun(p, n, PAGE_KIND.BACKGROUND);
      for (let i = 0; i < n; i++) this.#countPostcopy();
    }
  }

  /** Test hook: resolves once `n` demand requests arrived (the destination's idle timeout bounds the wait). */
  #requestsReceived(n: number): Promise<void> {
    if (this.#m.requests.received >= n) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.#requestWaiter = { n, resolve };
      this.#ep!.onClose((e) => reject(e));
    });
  }

  #onRequest(page: number): void {
    const m = this.#m;
    this.#trace.mark(page, "requestRead");
    m.requests.received++;
    if (this.#requestWaiter !== null && m.requests.received >= this.#requestWaiter.n) {
      this.#requestWaiter.resolve();
      this.#requestWaiter = null;
    }
    const needed = this.#needed;
    if (needed === null) return; // the protocol state admits REQUEST only in postcopy
    if (this.#frozen) return; // fault injection: about to be SIGKILLed, answers nothing
    if (!needed.has(page)) {
      if (this.#pushed[page] !== 1 || this.#completeSent) {
        m.requests.alreadySent++;
        return;
      }
      // Already pushed on the bulk connection, where it may sit behind a full send buffer (or
      // the destination's receive queue): answer on the demand path too. The later copy meets
      // EEXIST on the destination and changes nothing.
      this.#pushed[page] = 2;
      m.requests.resentFromBulk++;
    } else {
      needed.take(page);
      this.#pushCursor = page + 1;
    }
    this.#pendingDemand++;
    this.#sendDemand(page)
      .then(() => this.#countPostcopy())
      .catch((e: unknown) => this.abort(`sending page ${page}: ${String(e)}`))
      .finally(() => this.#pendingDemand--);
  }

  /** Postcopy progress goes to the orchestrator at most every PROGRESS_INTERVAL_MS (see ipc.ts). */
  readonly #progressGate = new ReportGate(PROGRESS_INTERVAL_MS);

  #countPostcopy(): void {
    this.#postcopySent++;
    const kill = this.#config.faults.killSourceAfterPostcopyPages;
    if (kill !== undefined && this.#postcopySent >= kill && !this.#frozen) {
      // From here on this process behaves as the dead process it is about to be: it sends
      // nothing more. Tell the orchestrator now (it does the SIGKILL), so what the destination
      // lacks is decided by the page count, not by how fast the kill lands on a loaded host.
      this.#frozen = true;
      this.#hooks.progress("postcopy", this.#postcopySent, this.#postcopyTotal);
      return;
    }
    if (((this.#postcopySent & 255) === 0 && this.#progressGate.due()) || this.#needed?.remaining === 0) this.#hooks.progress("postcopy", this.#postcopySent, this.#postcopyTotal);
    const drop = this.#config.faults.dropLinkAfterPostcopyPages;
    if (drop !== undefined && this.#postcopySent >= drop) this.abort(`fault injection: connection dropped after ${this.#postcopySent} postcopy pages`);
  }

  // --- sending pages --------------------------------------------------------------------

  /** Sends `list` (null = every page) in order as runs of contiguous pages, with backpressure from the link. */
  async #sendList(list: Uint32Array | null, kind: PageKind, progress: (done: number) => void): Promise<void> {
    const link = this.#ep!.link;
    const total = list?.length ?? this.#guest.pages;
    const slice = new TimeSlice();
    let reported = 0;
    for (let i = 0; i < total; ) {
      if (!link.hasRoom()) {
        await link.waitForRoom();
        slice.restart();
      } else {
        const t = slice.tick();
        if (t !== undefined) await t;
      }
      const first = list === null ? i : list[i]!;
      let n = 1;
      while (n < MAX_RUN_PAGES && i + n < total && (list === null || list[i + n] === first + n)) n++;
      await this.#sendRun(first, n, kind);
      i += n;
      if (i - reported >= 4096 || i === total) {
        progress(i);
        reported = i;
      }
    }
  }

  /**
   * Which of pages [first, first+n) have a page or a swap entry behind them, from the raw pagemap
   * words (PM_PRESENT, bit 63, or PM_SWAP, bit 62) read into a reused buffer: no object per page.
   * At most 64 pages (MAX_RUN_PAGES).
   */
  #presentRun(first: number, n: number): (i: number) => boolean {
    const g = this.#guest;
    const got = g.proc.pagemap(g.addr(first), n, { format: "raw", into: this.#pagemapWords });
    if (got.length !== n) throw new Error(`pagemap of pages ${first}..${first + n - 1} returned ${got.length} entries`);
    const high = this.#pagemapHigh;
    // Copied out as two 32-bit masks: the shared buffer may be reused before the caller is done.
    let lo = 0;
    let hi = 0;
    for (let i = 0; i < n; i++) {
      if ((high[2 * i + HIGH_WORD]! & 0xc000_0000) === 0) continue;
      if (i < 32) lo |= 1 << i;
      else hi |= 1 << (i - 32);
    }
    return (i) => ((i < 32 ? lo >>> i : hi >>> (i - 32)) & 1) === 1;
  }

  readonly #pagemapWords = new BigUint64Array(MAX_RUN_PAGES);
  /** The same words as 32-bit halves (the high half holds PM_PRESENT and PM_SWAP). */
  readonly #pagemapHigh = new Uint32Array(this.#pagemapWords.buffer);

  /**
   * Buffers runs are read into, handed back once the socket has written them: a fresh 256 KiB
   * buffer per run made the garbage collector run a full collection every few dozen megabytes.
   */
  readonly #runBuffers = new FrameBufferPool(MAX_RUN_PAGES * PAGE_BYTES, 32);

  /**
   * Reads pages [first, first+n) (present sub-runs in one copy each, into a reused buffer) and
   * queues one PAGES frame. The data pages are packed back to back in the buffer as they are read
   * (each present stretch lands right after the previous one, a zero page inside a stretch is
   * closed up), so the frame's data is one part: the socket gets three iovecs per run instead of
   * one per stretch of data pages, and the host's TCP send path pays per piece.
   */
  async #sendRun(first: number, n: number, kind: PageKind): Promise<void> {
    const g = this.#guest;
    const present = this.#presentRun(first, n);
    const zeroBits = new Uint32Array((n + 31) >>> 5);
    const buf = this.#runBuffers.take(n * PAGE_BYTES);
    /** Bytes of data pages packed into buf so far. */
    let packed = 0;
    for (let i = 0; i < n; ) {
      if (!present(i)) {
        zeroBits[i >>> 5]! |= 1 << (i & 31);
        i++;
        continue;
      }
      let j = i + 1;
      while (j < n && present(j)) j++;
      // The copy a socket write of guest RAM makes (copy_from_user): the VMM hands its memory to
      // the kernel rather than loading it into a buffer of its own first.
      const bytes = buf.subarray(packed, packed + (j - i) * PAGE_BYTES);
      const got = await g.proc.copyUser(g.addr(first + i), bytes, false);
      if (got !== bytes.byteLength) throw new Error(`reading pages ${first + i}..${j - 1} copied ${got} of ${bytes.byteLength} bytes`);
      // Zero pages become bits; the data pages after one move down over it.
      let to = packed;
      for (let k = 0; k < j - i; k++) {
        const at = packed + k * PAGE_BYTES;
        if (isZeroPage(buf.subarray(at, at + PAGE_BYTES))) {
          zeroBits[(i + k) >>> 5]! |= 1 << ((i + k) & 31);
          continue;
        }
        if (to !== at) buf.copyWithin(to, at, at + PAGE_BYTES);
        to += PAGE_BYTES;
      }
      packed = to;
      i = j;
    }
    const pool = this.#runBuffers;
    if (packed === 0) pool.give(buf);
    this.#ep!.link.send(encodePagesFrame(kind, first, n, zeroBits, packed === 0 ? [] : [buf.subarray(0, packed)]), packed === 0 ? undefined : () => pool.give(buf));
    for (let i = 0; i < n; i++) this.#countSent(first + i, kind, ((zeroBits[i >>> 5]! >>> (i & 31)) & 1) === 1);
  }

  /** One demand page, on the preempt connection when there is one; records what it queued behind. */
  async #sendDemand(page: number): Promise<void> {
    const g = this.#guest;
    const data = g.presentMap(page, 1)[0]! ? await g.readPage(page) : null;
    const zero = data === null || isZeroPage(data);
    const link = (this.#preemptEp ?? this.#ep!).link;
    const ahead = link.send(encodeFrame(FRAME.PAGE, PAGE_KIND.DEMAND | (zero ? PAGE_ZERO : 0), page, 0, zero ? undefined : data));
    this.#trace.mark(page, "pageSent");
    this.#demandAhead.push(ahead);
    this.#countSent(page, PAGE_KIND.DEMAND, zero);
  }

  #countSent(page: number, kind: PageKind, zero: boolean): void {
    const s = this.#m.sent;
    if (zero) s.zero++;
    const times = this.#sentCount[page]!;
    if (times > 0) s.duplicate++;
    if (times < 0xffff) this.#sentCount[page] = times + 1;
    if (kind === PAGE_KIND.PRECOPY) s.precopy++;
    else if (kind === PAGE_KIND.STOP_COPY) s.stopCopy++;
    else if (kind === PAGE_KIND.DEMAND) s.demand++;
    else s.background++;
  }

  #finalMetrics(): SourceMetrics {
    const m = this.#m;
    m.bytesSent = (this.#ep?.link.bytesSent ?? 0) + (this.#preemptEp?.link.bytesSent ?? 0);
    m.bytesReceived = (this.#ep?.bytesReceived ?? 0) + (this.#preemptEp?.bytesReceived ?? 0);
    m.preempt = this.#preemptEp !== null;
    m.maxRssBytes = process.resourceUsage().maxRSS * 1024;
    m.linkBlockedMs = this.#ep?.link.blockedMs ?? 0;
    m.demandQueuedAhead = summarizeAhead(this.#demandAhead, this.#config.link);
    m.guestOps = this.#workload.ops;
    m.workloadError = this.#workload.error?.message ?? null;
    m.mismatches = this.#log.mismatches;
    m.corruptReads = this.#log.corruptReads;
    this.#trace.switchoverEpochMs = m.pauseEpochMs;
    this.#trace.write();
    return m;
  }

  /** Metrics so far (for error reports). */
  partialMetrics(): SourceMetrics {
    return this.#finalMetrics();
  }
}

function emptySourceMetrics(): SourceMetrics {
  return {
    trackingMethod: "none",
    notes: [],
    startEpochMs: 0,
    pauseEpochMs: 0,
    endEpochMs: 0,
    virtualNs: { start: 0, pause: 0, deviceStateSent: 0, end: 0 },
    sent: { precopy: 0, stopCopy: 0, demand: 0, background: 0, zero: 0, duplicate: 0 },
    rounds: [],
    requests: { received: 0, alreadySent: 0, resentFromBulk: 0 },
    bytesSent: 0,
    bytesReceived: 0,
    guestOps: 0,
    workloadError: null,
    mismatches: 0,
    corruptReads: 0,
    opsTimeline: [],
    preempt: false,
    maxRssBytes: 0,
    linkBlockedMs: 0,
    demandQueuedAhead: { count: 0, p50Bytes: 0, p99Bytes: 0, maxBytes: 0, p99LinkMs: null, maxLinkMs: null },
  };
}

