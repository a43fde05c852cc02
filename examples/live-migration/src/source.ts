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
import { guestPages, type MigrationConfig } from "./config.ts";
import { createDirtyTracker, type DirtyTracker, type TrackingMethod } from "./dirty-tracking.ts";
import { Endpoint } from "./endpoint.ts";
import { Guest, type WriteLog } from "./guest.ts";
import { nowEpochMs, type OpsSample, type RoundInfo } from "./metrics.ts";
import { isZeroPage } from "./pages.ts";
import { MAX_JSON_PAYLOAD, SourceProtocol, type DeviceState, type Hello } from "./protocol-state.ts";
import { DISCARD_AT_SWITCHOVER, encodeFrame, encodeJson, encodePageList, FRAME, PAGE_KIND, PAGE_ZERO, PROTOCOL_VERSION, type Frame, type PageKind } from "./protocol.ts";
import { initialWorkloadState, Workload } from "./workload.ts";
import { TimeSlice } from "./yield.ts";

export type { DeviceState, Hello } from "./protocol-state.ts";

export interface SourceHooks {
  progress(phase: string, done: number, total: number): void;
  /** The oracle: every page's version as the guest left it on the source (sent at switchover). */
  oracle(versions: Uint32Array): void;
}

export interface SourceMetrics {
  trackingMethod: TrackingMethod | "none";
  notes: string[];
  startEpochMs: number;
  pauseEpochMs: number;
  endEpochMs: number;
  virtualNs: { start: number; pause: number; deviceStateSent: number; end: number };
  sent: { precopy: number; stopCopy: number; demand: number; background: number; zero: number; duplicate: number };
  rounds: RoundInfo[];
  requests: { received: number; alreadySent: number };
  bytesSent: number;
  bytesReceived: number;
  guestOps: number;
  workloadError: string | null;
  mismatches: number;
  corruptReads: number;
  opsTimeline: OpsSample[];
}


export class MigrationSource {
  readonly #config: MigrationConfig;
  readonly #guest: Guest;
  readonly #log: WriteLog;
  readonly #workload: Workload;
  readonly #hooks: SourceHooks;
  #ep: Endpoint | null = null;
  readonly #sentCount: Uint16Array;
  /** Postcopy: pages the destination still lacks and that have not been queued yet. */
  #needed: Uint8Array | null = null;
  #remaining = 0;
  #pushCursor = 0;
  #pendingDemand = 0;
  #postcopySent = 0;
  #postcopyTotal = 0;
  readonly #m: SourceMetrics;
  readonly #proto: SourceProtocol;

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
    const guest = await Guest.create({ seed: config.seed, pages }, "source");
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
    m.virtualNs.start = this.#guest.virtualNs;
    const sampler = setInterval(() => this.#sampleOps(), 50);
    try {
      const ep = await this.#connect(target.host ?? "127.0.0.1", target.port);
      const hello: Hello = { version: PROTOCOL_VERSION, pages: this.#guest.pages, seed: this.#config.seed, strategy: this.#config.strategy, startEpochMs, token };
      ep.link.send(encodeJson(FRAME.HELLO, hello), "urgent");
      this.#proto.sentHello();
      await ep.waitFor(FRAME.HELLO_ACK, limits.handshakeTimeoutMs, "the destination's HELLO_ACK");
      if (this.#config.strategy === "postcopy") await this.#switchToPostcopy(null, new Uint32Array(0));
      else await this.#precopyPhase();
      await ep.waitFor(FRAME.DONE, limits.phaseTimeoutMs, "the destination's DONE");
      ep.finish();
      m.endEpochMs = nowEpochMs();
      m.virtualNs.end = this.#guest.virtualNs;
      await ep.end();
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
    this.#ep?.destroy("the source was disposed");
    await this.#workload.pause(1000);
  }

  /** Cuts the connection now (used by fault injection and on fatal errors). */
  abort(reason: string): void {
    this.#ep?.destroy(reason);
  }

  #connect(host: string, port: number): Promise<Endpoint> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host, port }, () => {
        socket.off("error", reject);
        const ep = new Endpoint(socket, this.#config.link, { maxPayload: MAX_JSON_PAYLOAD, state: () => this.#proto.state, stallTimeoutMs: this.#config.protocol.stallTimeoutMs });
        ep.onFrame = (f) => this.#onFrame(f);
        this.#ep = ep;
        resolve(ep);
      });
      socket.once("error", reject);
    });
  }

  /** Every frame from the destination, checked against the protocol state first. */
  #onFrame(f: Frame): void {
    const page = this.#proto.accept(f);
    if (f.type === FRAME.REQUEST) this.#onRequest(page);
    else this.#ep!.post(f);
  }

  #sampleOps(): void {
    if (this.#m.pauseEpochMs !== 0) return;
    this.#m.opsTimeline.push({ tMs: nowEpochMs() - this.#m.startEpochMs, ops: this.#workload.ops, side: "source" });
  }

  // --- precopy --------------------------------------------------------------------------

  async #precopyPhase(): Promise<void> {
    const cfg = this.#config;
    const tracker = await createDirtyTracker(this.#guest, cfg.tracking, this.#m.notes);
    this.#m.trackingMethod = tracker.method;
    await tracker.start();
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
    await this.#sendList(pages, PAGE_KIND.PRECOPY, (done) => this.#hooks.progress(phase, done, total));
    this.#ep!.link.send(encodeFrame(FRAME.ROUND_END, 0, round, total), "bulk");
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
    this.#ep!.link.send(encodeJson(FRAME.DEVICE_STATE, state), "bulk");
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
    const needed = new Uint8Array(this.#guest.pages);
    if (tracker !== null) {
      ep.link.send(encodeFrame(FRAME.DISCARD, 0, 0, pending.length, encodePageList(pending)), "bulk");
      this.#proto.sentDiscard(pending.length);
      for (const p of pending) needed[p] = 1;
      await ep.waitFor(FRAME.DISCARD_ACK, this.#config.protocol.phaseTimeoutMs, "the destination to discard stale pages");
    }
    const stale = await this.#stopGuest(tracker, pending);
    if (tracker === null) {
      needed.fill(1);
    } else {
      const late = stale.filter((p) => needed[p] === 0);
      for (const p of late) needed[p] = 1;
      ep.link.send(encodeFrame(FRAME.DISCARD, DISCARD_AT_SWITCHOVER, 0, late.length, encodePageList(late)), "bulk");
    }
    this.#remaining = tracker === null ? this.#guest.pages : stale.length;
    this.#postcopyTotal = this.#remaining;
    this.#needed = needed;
    this.#sendDeviceState("postcopy");
    await tracker?.stop();
    await this.#backgroundPush();
    while (this.#pendingDemand > 0) await new Promise<void>((resolve) => setImmediate(resolve));
    ep.link.send(encodeFrame(FRAME.COMPLETE, 0, 0, this.#guest.pages), "bulk");
    await ep.waitFor(FRAME.RESUMED, this.#config.protocol.phaseTimeoutMs, "the destination to resume the guest");
  }

  /** Streams every still-needed page, continuing after the most recently requested one. */
  async #backgroundPush(): Promise<void> {
    const needed = this.#needed!;
    const link = this.#ep!.link;
    const highWater = this.#highWater();
    const pages = this.#guest.pages;
    const slice = new TimeSlice();
    while (this.#remaining > 0) {
      await slice.tick();
      await link.waitForRoom(highWater);
      if (this.#remaining === 0) break;
      let p = this.#pushCursor % pages;
      while (needed[p] === 0) p = (p + 1) % pages;
      needed[p] = 0;
      this.#remaining--;
      this.#pushCursor = p + 1;
      await this.#sendPage(p, PAGE_KIND.BACKGROUND, "bulk");
      this.#countPostcopy();
    }
  }

  #onRequest(page: number): void {
    const m = this.#m;
    m.requests.received++;
    const needed = this.#needed;
    if (needed === null) return; // the protocol state admits REQUEST only in postcopy
    if (needed[page] === 0) {
      m.requests.alreadySent++;
      return;
    }
    needed[page] = 0;
    this.#remaining--;
    this.#pushCursor = page + 1;
    this.#pendingDemand++;
    this.#sendPage(page, PAGE_KIND.DEMAND, "urgent")
      .then(() => this.#countPostcopy())
      .catch((e: unknown) => this.abort(`sending page ${page}: ${String(e)}`))
      .finally(() => this.#pendingDemand--);
  }

  #countPostcopy(): void {
    this.#postcopySent++;
    if ((this.#postcopySent & 255) === 0 || this.#remaining === 0) this.#hooks.progress("postcopy", this.#postcopySent, this.#postcopyTotal);
    const drop = this.#config.faults.dropLinkAfterPostcopyPages;
    if (drop !== undefined && this.#postcopySent >= drop) this.abort(`fault injection: connection dropped after ${this.#postcopySent} postcopy pages`);
  }

  // --- sending pages --------------------------------------------------------------------

  #highWater(): number {
    const bw = this.#config.link.bandwidthBytesPerSec;
    return bw > 0 ? Math.max(64 * 1024, bw * 0.005) : 1024 * 1024;
  }

  /** Sends `list` (null = every page) in order, with backpressure from the link. */
  async #sendList(list: Uint32Array | null, kind: PageKind, progress: (done: number) => void): Promise<void> {
    const link = this.#ep!.link;
    const highWater = this.#highWater();
    const total = list?.length ?? this.#guest.pages;
    const BATCH = 256;
    const slice = new TimeSlice();
    for (let i = 0; i < total; i += BATCH) {
      const n = Math.min(BATCH, total - i);
      const present = list === null ? this.#guest.presentMap(i, n) : null;
      for (let j = 0; j < n; j++) {
        await slice.tick();
        await link.waitForRoom(highWater);
        await this.#sendPage(list === null ? i + j : list[i + j]!, kind, "bulk", present?.[j]);
      }
      progress(i + n);
    }
  }

  async #sendPage(page: number, kind: PageKind, priority: "urgent" | "bulk", present?: boolean): Promise<void> {
    const g = this.#guest;
    const has = present ?? g.presentMap(page, 1)[0]!;
    const data = has ? await g.readPage(page) : null;
    const zero = data === null || isZeroPage(data);
    this.#ep!.link.send(encodeFrame(FRAME.PAGE, kind | (zero ? PAGE_ZERO : 0), page, 0, zero ? undefined : data), priority);
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
    m.bytesSent = this.#ep?.link.bytesSent ?? 0;
    m.bytesReceived = this.#ep?.bytesReceived ?? 0;
    m.guestOps = this.#workload.ops;
    m.workloadError = this.#workload.error?.message ?? null;
    m.mismatches = this.#log.mismatches;
    m.corruptReads = this.#log.corruptReads;
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
    requests: { received: 0, alreadySent: 0 },
    bytesSent: 0,
    bytesReceived: 0,
    guestOps: 0,
    workloadError: null,
    mismatches: 0,
    corruptReads: 0,
    opsTimeline: [],
  };
}

