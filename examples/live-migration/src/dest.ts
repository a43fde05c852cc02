/**
 * The destination side: an empty guest of the same size waits for the source, fills its memory
 * from the stream, resumes the guest's workload from the device state, and in postcopy serves
 * the guest's missing faults by asking the source for the pages (dest-faults.ts installs them).
 *
 * Frames are handled strictly in arrival order (one async chain), so DISCARD happens before the
 * postcopy registration and every page of a precopy stream is in place before DEVICE_STATE.
 */
import { createServer, type Server, type Socket } from "node:net";
import { guestPages, type MigrationConfig } from "./config.ts";
import { createPostcopyBackend, type PostcopyBackend } from "./dest-faults.ts";
import { Endpoint } from "./endpoint.ts";
import { Guest, NOT_KNOWN, WriteLog } from "./guest.ts";
import { KIND_NAMES, LatencyRecorder, nowEpochMs, Timeline, type LatencySummary, type OpsSample, type TimelineData, type VerificationResult } from "./metrics.ts";
import { decodeJson, decodePageList, DISCARD_AT_SWITCHOVER, encodeFrame, FRAME, PAGE_KIND, PAGE_ZERO, pageKindOf, PROTOCOL_VERSION, type Frame } from "./protocol.ts";
import type { DeviceState, Hello } from "./source.ts";
import { verifyGuest } from "./verify.ts";
import { Workload } from "./workload.ts";
import { TimeSlice } from "./yield.ts";

export type DestPhase = "waiting" | "precopy" | "postcopy" | "running" | "failed";

export interface DestHooks {
  progress(phase: string, done: number, total: number): void;
  /** The guest runs on the destination (end of downtime). */
  resumed(): void;
  /** Every page is present: the migration is complete. */
  complete(): void;
  /** The migration failed on this side (details in the metrics). */
  failed(message: string): void;
}

export interface DestMetrics {
  phaseAtEnd: DestPhase;
  postcopyMethod: string | null;
  helloEpochMs: number;
  resumeEpochMs: number;
  completeEpochMs: number;
  sourcePauseEpochMs: number;
  virtualNs: { hello: number; switchover: number; deviceState: number; resume: number; complete: number };
  received: Record<(typeof KIND_NAMES)[number], number> & { zero: number; discarded: number; alreadyPresent: number };
  missingPages: number;
  faults: LatencySummary & { raced: number; requests: number };
  bytesSent: number;
  bytesReceived: number;
  timeline: TimelineData;
  opsTimeline: OpsSample[];
  guestOps: number;
  workloadError: string | null;
  corruptReads: number;
  blockedThreads: number;
  failure: string | null;
}

export class MigrationDestination {
  readonly #config: MigrationConfig;
  readonly #guest: Guest;
  readonly #hooks: DestHooks;
  readonly #log: WriteLog;
  readonly #have: Uint8Array;
  readonly #requested: Uint8Array;
  readonly #pendingFaults = new Map<number, number[]>();
  readonly #latency = new LatencyRecorder();
  #server: Server | null = null;
  #ep: Endpoint | null = null;
  #chain: Promise<void> = Promise.resolve();
  #phase: DestPhase = "waiting";
  #backend: PostcopyBackend | null = null;
  #workload: Workload | null = null;
  #timeline = new Timeline(0);
  #opsSampler: NodeJS.Timeout | null = null;
  readonly #m: DestMetrics;
  #faultCount = 0;
  #raced = 0;
  #requests = 0;
  #urgentInFlight = 0;
  readonly #slice = new TimeSlice();

  private constructor(config: MigrationConfig, guest: Guest, hooks: DestHooks) {
    this.#config = config;
    this.#guest = guest;
    this.#hooks = hooks;
    this.#log = new WriteLog(guest.pages, NOT_KNOWN);
    this.#have = new Uint8Array(guest.pages);
    this.#requested = new Uint8Array(guest.pages);
    this.#m = emptyDestMetrics();
  }

  static async create(config: MigrationConfig, hooks: DestHooks): Promise<MigrationDestination> {
    const guest = await Guest.create({ seed: config.seed, pages: guestPages(config) }, "destination");
    return new MigrationDestination(config, guest, hooks);
  }

  get phase(): DestPhase {
    return this.#phase;
  }

  /** Listens on an ephemeral loopback port for the source's one connection; returns the port. */
  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      const server = createServer((socket) => this.#accept(socket));
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => {
        const addr = server.address();
        if (addr === null || typeof addr === "string") reject(new Error("no TCP address"));
        else resolve(addr.port);
      });
      this.#server = server;
    });
  }

  #accept(socket: Socket): void {
    if (this.#ep !== null) {
      socket.destroy();
      return;
    }
    this.#server?.close();
    const ep = new Endpoint(socket, this.#config.link);
    this.#ep = ep;
    ep.onFrame = (f) => this.#enqueue(f);
    ep.onClose((e) => {
      this.#chain = this.#chain.then(() => this.#linkLost(e.message));
    });
  }

  /**
   * Frames run in arrival order on one chain, which hands the event loop over every couple of ms
   * (so fault requests leave promptly). Demand pages skip the queue: they are independent of
   * everything but COMPLETE, which waits for them.
   */
  #enqueue(f: Frame): void {
    if (f.type === FRAME.PAGE && pageKindOf(f.flags) === PAGE_KIND.DEMAND) {
      this.#urgentInFlight++;
      this.#onPage(f)
        .catch((e: unknown) => this.#fatal(e))
        .finally(() => this.#urgentInFlight--);
      return;
    }
    this.#chain = this.#chain
      .then(() => this.#slice.tick())
      .then(() => this.#handle(f))
      .catch((e: unknown) => this.#fatal(e));
  }

  async #handle(f: Frame): Promise<void> {
    if (this.#phase === "failed") return;
    switch (f.type) {
      case FRAME.HELLO:
        return this.#onHello(decodeJson<Hello>(f));
      case FRAME.PAGE:
        return this.#onPage(f);
      case FRAME.ROUND_END:
        return; // the source reports round progress; nothing to do here
      case FRAME.DISCARD:
        return this.#onDiscard(decodePageList(f.payload), (f.flags & DISCARD_AT_SWITCHOVER) !== 0);
      case FRAME.DEVICE_STATE:
        return this.#onDeviceState(decodeJson<DeviceState>(f));
      case FRAME.COMPLETE:
        return this.#onComplete();
      default:
        throw new Error(`unexpected frame type ${f.type} from the source`);
    }
  }

  async #onHello(h: Hello): Promise<void> {
    if (h.version !== PROTOCOL_VERSION) throw new Error(`protocol version ${h.version}, expected ${PROTOCOL_VERSION}`);
    if (h.pages !== this.#guest.pages || h.seed !== this.#config.seed) throw new Error(`guest mismatch: source has ${h.pages} pages (seed ${h.seed}), we have ${this.#guest.pages} (seed ${this.#config.seed})`);
    this.#m.helloEpochMs = nowEpochMs();
    this.#m.virtualNs.hello = this.#guest.virtualNs;
    this.#timeline = new Timeline(h.startEpochMs);
    this.#phase = "precopy";
    // Register for MISSING faults now, while the guest does not run here, so the registration
    // costs no downtime. Precopy pages then arrive through UFFDIO_COPY, which cannot fault.
    if (h.strategy !== "precopy") await this.#registerMissing();
    this.#ep!.link.send(encodeFrame(FRAME.HELLO_ACK, 0, 0, 0), "urgent");
  }

  async #registerMissing(): Promise<void> {
    const backend = await createPostcopyBackend(this.#guest);
    await backend.start((page, raced) => this.#onFault(page, raced));
    this.#backend = backend;
    this.#m.postcopyMethod = backend.method;
  }

  async #onPage(f: Frame): Promise<void> {
    const page = f.page;
    if (page >= this.#guest.pages) throw new Error(`page ${page} is outside the guest`);
    const zero = (f.flags & PAGE_ZERO) !== 0;
    const kind = KIND_NAMES[pageKindOf(f.flags) - 1];
    if (kind === undefined) throw new Error(`page ${page} has an unknown kind ${f.flags}`);
    if (!zero && f.payload.byteLength !== 4096) throw new Error(`page ${page} carries ${f.payload.byteLength} bytes`);
    const at = nowEpochMs();
    if (kind === "stop-copy" && this.#m.virtualNs.switchover === 0) this.#m.virtualNs.switchover = this.#guest.virtualNs;
    this.#timeline.add(kind, at);
    this.#m.received[kind]++;
    if (zero) this.#m.received.zero++;
    const data = zero ? null : f.payload;
    if (this.#backend !== null && (this.#have[page] === 0 || this.#phase === "postcopy")) {
      // A missing page: install it atomically, waking whoever waits for it. Once the guest runs
      // here a page is never written over: a second copy meets EEXIST and changes nothing.
      this.#have[page] = 1;
      if ((await this.#backend.install(page, data)) === "exists") this.#m.received.alreadyPresent++;
      this.#resolveFaults(page);
    } else if (this.#have[page] === 1 || data !== null) {
      // Precopy: a resent page (it is mapped) or a first copy with no userfaultfd registered.
      await this.#guest.writePage(page, data ?? new Uint8Array(4096));
      this.#have[page] = 1;
    } else {
      this.#have[page] = 1; // a zero page nobody mapped yet: it already reads as zeros
    }
  }

  #onFault(page: number, raced: boolean): void {
    this.#faultCount++;
    if (raced) {
      this.#raced++;
      return;
    }
    const list = this.#pendingFaults.get(page);
    if (list === undefined) this.#pendingFaults.set(page, [performance.now()]);
    else list.push(performance.now());
    if (this.#requested[page] === 1 || this.#ep === null || this.#ep.error !== null) return;
    this.#requested[page] = 1;
    this.#requests++;
    this.#ep.link.send(encodeFrame(FRAME.REQUEST, 0, page, 1), "urgent");
  }

  #resolveFaults(page: number): void {
    const list = this.#pendingFaults.get(page);
    if (list === undefined) return;
    const now = performance.now();
    for (const t0 of list) this.#latency.add((now - t0) * 1000);
    this.#pendingFaults.delete(page);
  }

  /** Hybrid: drop our stale copies of pages dirtied on the source, so touching them faults. */
  async #onDiscard(pages: Uint32Array, atSwitchover: boolean): Promise<void> {
    if (atSwitchover) this.#m.virtualNs.switchover = this.#guest.virtualNs;
    if (this.#backend === null) throw new Error("DISCARD without a userfaultfd registration (precopy?)");
    for (const p of pages) {
      if (p >= this.#guest.pages) throw new Error(`discard of page ${p} outside the guest`);
      this.#have[p] = 0;
      this.#backend.forget(p);
    }
    await this.#guest.discard(pages);
    this.#m.received.discarded += pages.length;
    if (!atSwitchover) this.#ep!.link.send(encodeFrame(FRAME.DISCARD_ACK, 0, 0, pages.length), "urgent");
  }

  async #onDeviceState(state: DeviceState): Promise<void> {
    this.#m.virtualNs.deviceState = this.#guest.virtualNs;
    if (this.#m.virtualNs.switchover === 0) this.#m.virtualNs.switchover = this.#guest.virtualNs;
    this.#m.sourcePauseEpochMs = state.pauseEpochMs;
    if (state.mode === "postcopy" && this.#backend === null) throw new Error("postcopy without a userfaultfd registration");
    if (state.mode === "resume") this.#checkAllPresent("DEVICE_STATE");
    this.#phase = state.mode === "postcopy" ? "postcopy" : "precopy";
    const workload = new Workload(this.#guest, state.workload, this.#log);
    this.#workload = workload;
    workload.start();
    this.#m.resumeEpochMs = nowEpochMs();
    this.#m.virtualNs.resume = this.#guest.virtualNs;
    this.#opsSampler = setInterval(() => this.#sampleOps(), 50);
    this.#ep!.link.send(encodeFrame(FRAME.RESUMED, 0, 0, 0), "urgent");
    this.#hooks.resumed();
    if (state.mode === "resume") await this.#finish(); // precopy: every page is already here
  }

  #checkAllPresent(when: string): void {
    let missing = 0;
    for (let p = 0; p < this.#have.length; p++) if (this.#have[p] === 0) missing++;
    if (missing > 0) throw new Error(`${missing} pages never arrived before ${when}`);
  }

  /** Postcopy's end: every page has been sent; wait for the demand pages still being installed. */
  async #onComplete(): Promise<void> {
    while (this.#urgentInFlight > 0) await new Promise<void>((resolve) => setImmediate(resolve));
    this.#checkAllPresent("COMPLETE");
    await this.#finish();
  }

  /** The guest has all of its memory here: release the userfaultfd and tell the source. */
  async #finish(): Promise<void> {
    if (this.#backend !== null) await this.#backend.stop();
    this.#backend = null;
    this.#phase = "running";
    this.#m.completeEpochMs = nowEpochMs();
    this.#m.virtualNs.complete = this.#guest.virtualNs;
    const ep = this.#ep!;
    ep.link.send(encodeFrame(FRAME.DONE, 0, 0, 0), "urgent");
    ep.finish();
    await ep.end().catch(() => {});
    this.#hooks.complete();
  }

  #sampleOps(): void {
    const w = this.#workload;
    if (w !== null) this.#m.opsTimeline.push({ tMs: nowEpochMs() - this.#timeline.startEpochMs, ops: w.ops, side: "destination" });
  }

  /** The connection died before COMPLETE. */
  #linkLost(reason: string): void {
    if (this.#phase === "running" || this.#phase === "failed") return;
    const was = this.#phase;
    this.#phase = "failed";
    const missing = this.#have.reduce((n, h) => n + (h === 0 ? 1 : 0), 0);
    this.#m.missingPages = missing;
    const msg =
      was === "postcopy" && this.#workload !== null
        ? `connection to the source lost during postcopy (${reason}); ${missing} of ${this.#guest.pages} pages never arrived. ` +
          `The destination guest is paused: threads that touch a missing page stay blocked, and no missing page is filled with zeros`
        : `connection to the source lost during ${was === "postcopy" ? "postcopy setup" : "precopy"} (${reason}); the guest never left the source`;
    this.#m.failure = msg;
    this.#hooks.failed(msg);
  }

  #fatal(e: unknown): void {
    const msg = e instanceof Error ? e.message : String(e);
    if (this.#phase === "failed") return;
    this.#ep?.link.send(encodeFrame(FRAME.ERROR, 0, 0, 0, new TextEncoder().encode(JSON.stringify({ message: msg }))), "urgent");
    this.#ep?.destroy(`destination error: ${msg}`);
    this.#linkLost(`destination error: ${msg}`);
  }

  /** Stops the guest (bounded wait: a thread blocked on a missing page never stops) and checks its memory. */
  async verify(oracle: Uint32Array, onProgress: (done: number, total: number) => void): Promise<VerificationResult> {
    const stopped = this.#workload === null ? true : await this.#workload.pause(this.#phase === "running" ? 10_000 : 300);
    if (this.#opsSampler !== null) clearInterval(this.#opsSampler);
    this.#sampleOps();
    this.#m.blockedThreads = stopped ? 0 : (this.#workload?.busyThreads ?? 0);
    const scope = this.#phase === "running" ? "full" : "partial";
    return verifyGuest(this.#guest, this.#log, oracle, this.#have, scope, onProgress);
  }

  metrics(): DestMetrics {
    const m = this.#m;
    m.phaseAtEnd = this.#phase;
    m.faults = { ...this.#latency.summary(), raced: this.#raced, requests: this.#requests };
    m.faults.count = this.#faultCount;
    m.bytesSent = this.#ep?.link.bytesSent ?? 0;
    m.bytesReceived = this.#ep?.bytesReceived ?? 0;
    m.timeline = this.#timeline.toJSON();
    m.guestOps = this.#workload?.ops ?? 0;
    m.workloadError = this.#workload?.error?.message ?? null;
    m.corruptReads = this.#log.corruptReads;
    return m;
  }
}

function emptyDestMetrics(): DestMetrics {
  return {
    phaseAtEnd: "waiting",
    postcopyMethod: null,
    helloEpochMs: 0,
    resumeEpochMs: 0,
    completeEpochMs: 0,
    sourcePauseEpochMs: 0,
    virtualNs: { hello: 0, switchover: 0, deviceState: 0, resume: 0, complete: 0 },
    received: { precopy: 0, "stop-copy": 0, demand: 0, background: 0, zero: 0, discarded: 0, alreadyPresent: 0 },
    missingPages: 0,
    faults: { count: 0, p50Us: 0, p99Us: 0, maxUs: 0, meanUs: 0, histogram: [], raced: 0, requests: 0 },
    bytesSent: 0,
    bytesReceived: 0,
    timeline: { bucketMs: 10, series: { precopy: [], "stop-copy": [], demand: [], background: [] } },
    opsTimeline: [],
    guestOps: 0,
    workloadError: null,
    corruptReads: 0,
    blockedThreads: 0,
    failure: null,
  };
}
