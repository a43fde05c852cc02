/**
 * The destination side: an empty guest of the same size waits for the source, fills its memory
 * from the stream, resumes the guest's workload from the device state, and in postcopy serves
 * the guest's missing faults by asking the source for the pages (dest-faults.ts installs them).
 *
 * Only a connection whose HELLO carries the token handed to both sides out of band becomes the
 * migration's; every frame after it is checked against the protocol state (protocol-state.ts)
 * as it comes off the socket, so a frame the state does not allow closes the connection before
 * anything acts on it. Valid frames are handled strictly in arrival order from one bounded queue
 * (past its limit the socket is paused), so DISCARD happens before the postcopy registration and
 * every page of a precopy stream is in place before DEVICE_STATE.
 */
import { once } from "node:events";
import { connect, createServer, type Server, type Socket } from "node:net";
import type { Fallback } from "@uffd/sdk";
import { frameStoreOf, guestPages, type MigrationConfig, type ProtocolLimits } from "./config.ts";
import { createPostcopyBackend, type PostcopyBackend } from "./dest-faults.ts";
import { Endpoint, PeerProtocolError, PeerReportedError } from "./endpoint.ts";
import { Guest, NOT_KNOWN, WriteLog } from "./guest.ts";
import { cpuMeter, KIND_NAMES, LatencyRecorder, nowEpochMs, type CpuTime, Timeline, type LatencySummary, type OpsSample, type TimelineData, type VerificationResult } from "./metrics.ts";
import { DestProtocol, frameName, isZeroInRun, MAX_JSON_PAYLOAD, ProtocolViolation, type DeviceState, type Hello, type PageFrame, type PagesFrame } from "./protocol-state.ts";
import { encodeFrame, encodeJson, encodePagesFrame, FRAME, FrameBufferPool, FrameReader, HEADER_SIZE, MAX_RUN_PAGES, PAGE_KIND, PAGE_ZERO, PROTOCOL_VERSION, ProtocolError, zeroBitmapBytes, type Frame } from "./protocol.ts";
import { fillInitialPage, parseHeader, UNPOPULATED, wordsOf } from "./pages.ts";
import { verifyGuest } from "./verify.ts";
import { initialWorkloadState, Workload } from "./workload.ts";
import { PAGE_SIZE } from "@uffd/kernel/uapi";
import { HopTracer } from "./trace.ts";
import { TimeSlice } from "./yield.ts";

/**
 * While the receive queue holds at least this much (the install queue has a turn's work and
 * more), each connection reads at most READ_PER_TURN_FED bytes per event-loop turn; below it,
 * reads are not bounded, so the installs never wait for data the socket already has. Unbounded,
 * libuv reads up to 2 MiB per turn, and a demand page that arrived meanwhile waited for all of
 * it to be read and reassembled (docs/benchmarks.md, "The unlimited link's fault tail").
 */
const FED_QUEUE_BYTES = 256 * 1024;
const READ_PER_TURN_FED = 256 * 1024;

/**
 * The scratch guest the destination rehearses a migration into before the source connects (see
 * MigrationDestination.rehearse): 16 MiB, REHEARSAL_ROUNDS times. Ten rounds (160 MiB through
 * the sockets) left about 1,100 host page faults in the transfer that followed where four left
 * 12,000 to 30,000, and less CPU (docs/benchmarks.md, "Where the time goes").
 */
const REHEARSAL_PAGES = 4096;
const REHEARSAL_ROUNDS = 10;
/**
 * Guests from this size on get the rehearsal (256 MiB): a smaller guest's transfer is short next
 * to the rehearsal itself. LM_REHEARSAL=0 turns it off, LM_REHEARSAL=1 forces it (A/B runs, tests).
 */
const REHEARSAL_MIN_GUEST_PAGES = 65536;

/** What MigrationDestination.rehearse() did. */
export interface RehearsalSummary {
  /** Pages migrated (the scratch guest's pages times the rounds). */
  pages: number;
  /** Missing faults of the scratch guests' workload. */
  faults: number;
  /** Wall-clock ms it took. */
  ms: number;
}

function rehearsalWanted(pages: number): boolean {
  const env = process.env["LM_REHEARSAL"];
  if (env === "0") return false;
  if (env === "1") return true;
  return pages >= REHEARSAL_MIN_GUEST_PAGES;
}

export type DestPhase = "waiting" | "precopy" | "postcopy" | "running" | "failed";

export interface DestHooks {
  progress(phase: string, done: number, total: number): void;
  /** The guest runs on the destination (end of downtime). */
  resumed(): void;
  /** Every page is present: the migration is complete. */
  complete(): void;
  /** The migration failed on this side (details in the metrics). */
  failed(message: string): void;
  /** A connection was refused before it authenticated (the destination keeps listening). */
  rejected?(reason: string): void;
}

/** Received work, validated, in arrival order. `bytes`: its size on the wire (for the queue bound). */
type Work =
  | { t: "hello"; hello: Hello; bytes: number }
  | { t: "page"; p: PageFrame; bytes: number }
  | { t: "run"; r: PagesFrame; bytes: number; pooled: Uint8Array | null }
  | { t: "round-end"; bytes: number }
  | { t: "discard"; pages: Uint32Array; atSwitchover: boolean; bytes: number }
  | { t: "device-state"; state: DeviceState; bytes: number }
  | { t: "complete"; demandPages: number; bytes: number };

export interface DestMetrics {
  phaseAtEnd: DestPhase;
  postcopyMethod: string | null;
  /** What the postcopy handler fell back to on this side's kernel release (empty: nothing, or no postcopy). */
  fallbacks?: Fallback[];
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
  /** Connections closed before they authenticated (wrong token, no HELLO in time, garbage). */
  rejectedConnections: number;
  /** The first few of their reasons. */
  rejections: string[];
  /** Times the receive queue reached its bound and the socket was paused. */
  backpressurePauses: number;
  /** The most frames and bytes the receive queue ever held. */
  queuePeak: { frames: number; bytes: number };
  /** When the guest first completed an operation here (epoch ms; 0 = never). */
  firstProgressEpochMs: number;
  /** Demand pages arrived on a postcopy-preempt connection. */
  preempt: boolean;
  /** Peak resident memory of this process. */
  maxRssBytes?: number;
  /** This process's CPU time from the source's HELLO to sending DONE. */
  cpu?: CpuTime;
  /** The rehearsal on a scratch guest before the source connected (null: none, the guest is small). */
  rehearsal?: RehearsalSummary | null;
}

/**
 * The source side of MigrationDestination.rehearse(): a postcopy migration of `pages` pages of
 * the content model's initial bytes (every fourth page zero), sent as the real source sends it,
 * with every REQUEST answered on the preempt connection until COMPLETE. Resolves at DONE.
 */
async function scriptedPostcopySource(port: number, token: string, seed: number, pages: number, workload: MigrationConfig["workload"]): Promise<void> {
  const open = async (): Promise<{ socket: Socket; next: () => Promise<Frame | null> }> => {
    const socket = connect({ host: "127.0.0.1", port });
    socket.setNoDelay(true);
    await once(socket, "connect");
    const reader = new FrameReader(MAX_JSON_PAYLOAD);
    const frames: Frame[] = [];
    let waiter: ((f: Frame | null) => void) | null = null;
    let closed = false;
    const wake = (): void => {
      const w = waiter;
      if (w === null || (frames.length === 0 && !closed)) return;
      waiter = null;
      w(frames.shift() ?? null);
    };
    socket.on("data", (chunk: Buffer) => {
      for (const f of reader.push(chunk)) frames.push(f.payload.byteLength > 0 ? { ...f, payload: f.payload.slice() } : f);
      wake();
    });
    socket.on("close", () => {
      closed = true;
      wake();
    });
    socket.on("error", () => {});
    // The next frame the destination sent, or null once the connection is closed.
    const next = (): Promise<Frame | null> =>
      new Promise((resolve) => {
        waiter = resolve;
        wake();
      });
    return { socket, next };
  };
  const expect = async (c: { next: () => Promise<Frame | null> }, type: number): Promise<void> => {
    for (;;) {
      const f = await c.next();
      if (f === null) throw new Error(`the rehearsal's destination closed the connection before ${frameName(type)}`);
      if (f.type === type) return;
    }
  };
  const write = (socket: Socket, parts: readonly Uint8Array[]): boolean => {
    let ok = true;
    for (const part of parts) ok = socket.write(part);
    return ok;
  };
  // Runs in the shapes a real guest sends, so that the rehearsal takes every path the transfer
  // will (a path first taken during the transfer makes V8 deoptimize and compile again there):
  // all data (a full 256 KiB frame, one range copy), all zeros (a header and bitmap alone), three
  // data pages (a frame under the reassembly pool's minimum that can still span two socket
  // reads), and every fourth page zero (stretches of each kind in one run).
  const page = (p: number): Uint8Array | null => {
    const shape = (p >>> 6) % 4;
    if (shape === 1 || (shape === 2 && p % 64 >= 3) || (shape === 3 && p % 4 === 3)) return null;
    const bytes = new Uint8Array(PAGE_SIZE);
    fillInitialPage(wordsOf(bytes), seed, p);
    return bytes;
  };
  const hello: Hello = { version: PROTOCOL_VERSION, pages, seed, strategy: "postcopy", startEpochMs: nowEpochMs(), token, channel: "main", preempt: true };
  const main = await open();
  write(main.socket, encodeJson(FRAME.HELLO, hello));
  await expect(main, FRAME.HELLO_ACK);
  const pre = await open();
  write(pre.socket, encodeJson(FRAME.HELLO, { ...hello, channel: "preempt", preempt: false }));
  await expect(pre, FRAME.HELLO_ACK);
  let completeSent = false;
  let demand = 0;
  const answered = new Uint8Array(pages);
  // Requests: each answered once with its page on the preempt connection, until COMPLETE.
  const serve = (async () => {
    for (;;) {
      const f = await pre.next();
      if (f === null) return;
      if (f.type !== FRAME.REQUEST || completeSent || answered[f.page] === 1) continue;
      answered[f.page] = 1;
      const data = page(f.page);
      write(pre.socket, encodeFrame(FRAME.PAGE, PAGE_KIND.DEMAND | (data === null ? PAGE_ZERO : 0), f.page, 0, data ?? undefined));
      demand++;
    }
  })();
  const state: DeviceState = { mode: "postcopy", workload: initialWorkloadState(seed, pages, Math.max(1, pages >>> 4), workload), pauseEpochMs: nowEpochMs() };
  write(main.socket, encodeJson(FRAME.DEVICE_STATE, state));
  for (let first = 0; first < pages; first += MAX_RUN_PAGES) {
    const n = Math.min(MAX_RUN_PAGES, pages - first);
    const zeroBits = new Uint32Array((n + 31) >>> 5);
    const data: Uint8Array[] = [];
    for (let i = 0; i < n; i++) {
      const bytes = page(first + i);
      if (bytes === null) zeroBits[i >>> 5]! |= 1 << (i & 31);
      else data.push(bytes);
    }
    if (!write(main.socket, encodePagesFrame(PAGE_KIND.BACKGROUND, first, n, zeroBits, data))) await once(main.socket, "drain");
  }
  completeSent = true;
  write(main.socket, encodeFrame(FRAME.COMPLETE, 0, demand, pages));
  await expect(main, FRAME.DONE);
  main.socket.end();
  pre.socket.end();
  await serve;
}

export class MigrationDestination {
  readonly #config: MigrationConfig;
  readonly #limits: ProtocolLimits;
  readonly #token: string;
  readonly #guest: Guest;
  readonly #hooks: DestHooks;
  readonly #log: WriteLog;
  readonly #have: Uint8Array;
  readonly #requested: Uint8Array;
  readonly #pendingFaults = new Map<number, number[]>();
  readonly #latency = new LatencyRecorder();
  /** Opt-in hop timestamps, GC and event-loop delays (LM_TRACE_DIR; see trace.ts). */
  readonly #trace: HopTracer;
  #server: Server | null = null;
  /** Connections that have not authenticated yet. */
  readonly #candidates = new Set<Endpoint>();
  #ep: Endpoint | null = null;
  /** The postcopy-preempt connection: demand pages in, requests out. */
  #preemptEp: Endpoint | null = null;
  #proto: DestProtocol;
  /** Validated frames waiting for the handler, in arrival order (bounded: the socket pauses). */
  readonly #queue: Work[] = [];
  #queueHead = 0;
  #queuedBytes = 0;
  #draining = false;
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
  /** Buffers that runs spanning socket reads are reassembled into, reused once installed. */
  readonly #framePool = new FrameBufferPool(HEADER_SIZE + zeroBitmapBytes(MAX_RUN_PAGES) + MAX_RUN_PAGES * 4096);
  /** Our own failure (not the peer's), when that is what ended the migration. */
  #localError: string | null = null;
  /** CPU time since the source's HELLO (set when it arrives). */
  #cpu: (() => CpuTime) | null = null;

  /** `traced` false: a rehearsal's scratch destination, which never starts hop tracing (its timers would run on through the real transfer). */
  private constructor(config: MigrationConfig, guest: Guest, hooks: DestHooks, token: string, traced = true) {
    this.#trace = new HopTracer("destination", traced);
    this.#config = config;
    this.#limits = config.protocol;
    this.#token = token;
    this.#guest = guest;
    this.#hooks = hooks;
    this.#log = new WriteLog(guest.pages, NOT_KNOWN);
    this.#have = new Uint8Array(guest.pages);
    this.#requested = new Uint8Array(guest.pages);
    this.#m = emptyDestMetrics();
    this.#proto = this.#newProtocol();
  }

  /** `token`: the secret the source's HELLO must carry (handed to both sides out of band). */
  static async create(config: MigrationConfig, hooks: DestHooks, token: string): Promise<MigrationDestination> {
    // With a flat frame store, host memory for the whole guest is taken and touched now, while the
    // source boots, not by the first UFFDIO_COPY into each page during the transfer (QEMU's
    // destination preallocates too). The compact store (the default) keeps no bytes to touch.
    const guest = await Guest.create({ seed: config.seed, pages: guestPages(config), frameStore: frameStoreOf(config), prealloc: true, release: config.kernel.destination }, "destination");
    const rehearsal = rehearsalWanted(guest.pages) ? await MigrationDestination.rehearse(config) : null;
    // The scratch guests are garbage now: collect them here, not in the middle of the transfer
    // (the children run with --expose-gc; elsewhere V8 collects them when it sees fit).
    if (rehearsal !== null) (globalThis as { gc?: () => void }).gc?.();
    const dest = new MigrationDestination(config, guest, hooks, token);
    dest.#m.rehearsal = rehearsal;
    return dest;
  }

  /**
   * Rehearses a postcopy migration before the source connects, so that V8 has compiled the
   * receive and install path (socket reads, frame reassembly, the protocol checks, the install
   * queue, range UFFDIO_COPY / ZEROPAGE through the SDK and the kernel's mfill path, the fault
   * path with its REQUEST and demand page, the guest's workload) before the migration's first
   * byte arrives instead of during the transfer. A scratch destination, with a guest and a
   * simulated kernel of its own (`pages` pages), takes a postcopy migration over loopback TCP
   * from a scripted source in this process: HELLO on both connections, DEVICE_STATE, every page
   * in the source's 64-page PAGES runs (all data, all zeros, nearly all zeros, mixed), each REQUEST answered on
   * the preempt connection, COMPLETE; then it is disposed. `rounds` times (ten by default). The real guest and its
   * kernel are not touched. Like preallocation, it runs while the source boots.
   */
  static async rehearse(config: MigrationConfig, pages = REHEARSAL_PAGES, rounds = REHEARSAL_ROUNDS): Promise<RehearsalSummary> {
    const t0 = performance.now();
    const summary: RehearsalSummary = { pages: 0, faults: 0, ms: 0 };
    for (let round = 0; round < rounds; round++) {
      const token = `rehearsal-${round}`;
      const guest = await Guest.create({ seed: config.seed, pages, frameStore: frameStoreOf(config), prealloc: true, release: config.kernel.destination }, "rehearsal");
      let done!: () => void;
      let failed!: (e: Error) => void;
      const finished = new Promise<void>((resolve, reject) => {
        done = resolve;
        failed = reject;
      });
      const hooks: DestHooks = { progress: () => {}, resumed: () => {}, complete: () => done(), failed: (m) => failed(new Error(`the rehearsal failed: ${m}`)) };
      const d = new MigrationDestination(config, guest, hooks, token, false);
      try {
        const port = await d.listen();
        await Promise.all([scriptedPostcopySource(port, token, config.seed, pages, config.workload), finished]);
        summary.pages += pages;
        summary.faults += d.#faultCount;
      } finally {
        await d.dispose();
      }
    }
    summary.ms = performance.now() - t0;
    return summary;
  }

  get phase(): DestPhase {
    return this.#phase;
  }

  /** The protocol state of the authenticated connection ("awaiting-hello" before one). */
  get protocolState(): string {
    return this.#proto.state;
  }

  /** The guest (tests inspect its memory after hostile sessions). */
  get guest(): Guest {
    return this.#guest;
  }

  /** Frames received and not yet handled (bounded by the protocol limits plus one socket read). */
  get queuedFrames(): number {
    return this.#queue.length - this.#queueHead;
  }

  #newProtocol(): DestProtocol {
    return new DestProtocol({ token: this.#token, pages: this.#guest.pages, seed: this.#config.seed });
  }

  /** Listens for the source (default: an ephemeral loopback port); returns the port. */
  listen(host = "127.0.0.1", port = 0): Promise<number> {
    return new Promise((resolve, reject) => {
      const server = createServer((socket) => this.#accept(socket));
      server.once("error", reject);
      server.listen(port, host, () => {
        const addr = server.address();
        if (addr === null || typeof addr === "string") reject(new Error("no TCP address"));
        else resolve(addr.port);
      });
      this.#server = server;
    });
  }

  /** Stops listening and drops connections that never authenticated. */
  close(): void {
    this.#server?.close();
    this.#server = null;
    for (const c of this.#candidates) c.destroy("the destination stopped listening");
    this.#candidates.clear();
  }

  /**
   * A new connection: it must send a HELLO with the token within the HELLO timeout, else it is
   * closed and recorded as rejected, and the destination keeps waiting for its source. Only the
   * first authenticated connection becomes the migration's.
   */
  #accept(socket: Socket): void {
    const full = this.#ep !== null && !this.#proto.awaitingPreempt;
    if (full || this.#candidates.size >= this.#limits.maxPendingConnections) {
      this.#reject(`connection from ${socket.remoteAddress}:${socket.remotePort} refused: ${full ? "a source is already connected" : "too many unauthenticated connections"}`);
      socket.destroy();
      return;
    }
    const proto = this.#newProtocol();
    const ep = new Endpoint(socket, this.#config.link, {
      maxPayload: MAX_JSON_PAYLOAD,
      state: () => proto.state,
      stallTimeoutMs: this.#limits.stallTimeoutMs,
      pool: this.#framePool,
      // What a destination sends is waited for: fault requests, acknowledgements.
      precise: true,
      readPerTurn: () => (this.#queuedBytes >= FED_QUEUE_BYTES ? READ_PER_TURN_FED : 0),
    });
    const who = `${socket.remoteAddress}:${socket.remotePort}`;
    this.#candidates.add(ep);
    const timer = setTimeout(() => ep.violation(new ProtocolError(`no HELLO within ${this.#limits.helloTimeoutMs} ms`)), this.#limits.helloTimeoutMs);
    ep.onClose((e) => {
      clearTimeout(timer);
      if (this.#candidates.delete(ep)) this.#reject(`connection from ${who} rejected: ${e.message}`);
    });
    ep.onFrame = (f) => {
      if (f.type !== FRAME.HELLO) throw new ProtocolViolation(frameName(f.type), proto.state, "the first frame must be HELLO");
      if (this.#ep !== null) {
        // The migration's second connection: its postcopy-preempt channel.
        this.#proto.preemptHelloFrame(f);
        clearTimeout(timer);
        this.#candidates.delete(ep);
        this.#attachPreempt(ep);
        return;
      }
      const hello = proto.helloFrame(f);
      clearTimeout(timer);
      this.#candidates.delete(ep);
      this.#adopt(ep, proto, hello);
    };
  }

  #reject(reason: string): void {
    this.#m.rejectedConnections++;
    if (this.#m.rejections.length < 16) this.#m.rejections.push(reason);
    this.#hooks.rejected?.(reason);
  }

  #stopListening(why: string): void {
    this.#server?.close();
    this.#server = null;
    for (const c of this.#candidates) c.destroy(why);
    this.#candidates.clear();
  }

  /** The connection authenticated: it is the migration's from now on. */
  #adopt(ep: Endpoint, proto: DestProtocol, hello: Hello): void {
    // With a preempt channel announced, keep listening for it (and only for it).
    if (!hello.preempt) this.#stopListening("another connection authenticated as the source");
    this.#ep = ep;
    this.#proto = proto;
    ep.maxPayload = Math.max(MAX_JSON_PAYLOAD, zeroBitmapBytes(MAX_RUN_PAGES) + MAX_RUN_PAGES * 4096, this.#guest.pages * 4);
    ep.setIdleTimeout(this.#limits.idleTimeoutMs, "from the source");
    ep.onFrame = (f) => this.#onFrame(f);
    ep.onClose((e) => this.#linkLost(e));
    this.#push({ t: "hello", hello, bytes: 0 });
  }

  /** The preempt connection authenticated: demand pages arrive here, requests leave here. */
  #attachPreempt(ep: Endpoint): void {
    this.#stopListening("the source has both its connections");
    this.#preemptEp = ep;
    ep.maxPayload = 4096;
    ep.onFrame = (f) => this.#onDemand(this.#proto.preemptFrame(f));
    // Losing either connection loses the migration.
    ep.onClose((e) => this.#ep?.destroy(`the preempt channel failed: ${e.message}`));
    this.#ep?.onClose((e) => ep.destroy(e.message));
    ep.link.send(encodeFrame(FRAME.HELLO_ACK, 0, 0, 0));
  }

  /**
   * Demand pages skip the queue: they depend on nothing but the registration (done before
   * HELLO_ACK), and COMPLETE waits for them. Their number is bounded by our requests.
   */
  #onDemand(p: PageFrame): void {
    this.#trace.mark(p.page, "pageRead");
    this.#urgentInFlight++;
    this.#onPage(p)
      .catch((e: unknown) => this.#fatal(e))
      .finally(() => this.#urgentInFlight--);
  }

  /** Checks a frame against the protocol state (throwing a violation), then queues its work. */
  #onFrame(f: Frame): void {
    const proto = this.#proto;
    const bytes = HEADER_SIZE + f.payload.byteLength;
    switch (f.type) {
      case FRAME.PAGE: {
        const p = proto.pageFrame(f);
        if (p.kind === PAGE_KIND.DEMAND) {
          if (this.#preemptEp !== null) throw new ProtocolViolation("PAGE", proto.state, "demand pages travel on the preempt channel");
          return this.#onDemand(p);
        }
        return this.#push({ t: "page", p, bytes });
      }
      case FRAME.PAGES:
        return this.#push({ t: "run", r: proto.pagesFrame(f), bytes, pooled: f.pooled === true ? f.payload : null });
      case FRAME.ROUND_END:
        proto.roundEndFrame(f);
        return this.#push({ t: "round-end", bytes });
      case FRAME.DISCARD: {
        const d = proto.discardFrame(f);
        return this.#push({ t: "discard", pages: d.pages, atSwitchover: d.atSwitchover, bytes });
      }
      case FRAME.DEVICE_STATE:
        return this.#push({ t: "device-state", state: proto.deviceStateFrame(f), bytes });
      case FRAME.COMPLETE: {
        const demandPages = proto.completeFrame(f);
        this.#ep?.setIdleTimeout(0, "");
        return this.#push({ t: "complete", demandPages, bytes });
      }
      case FRAME.HELLO:
        throw new ProtocolViolation("HELLO", proto.state, "a second HELLO would reset the migration");
      default:
        throw proto.unexpected(f);
    }
  }

  /** Queues validated work; past the limits the socket is paused until the handler catches up. */
  #push(w: Work): void {
    this.#queue.push(w);
    this.#queuedBytes += w.bytes;
    if (this.queuedFrames > this.#m.queuePeak.frames) this.#m.queuePeak.frames = this.queuedFrames;
    if (this.#queuedBytes > this.#m.queuePeak.bytes) this.#m.queuePeak.bytes = this.#queuedBytes;
    if (this.queuedFrames >= this.#limits.maxQueuedFrames || this.#queuedBytes >= this.#limits.maxQueuedBytes) {
      this.#m.backpressurePauses++;
      this.#ep?.pause();
    }
    if (!this.#draining) void this.#drain();
  }

  /**
   * Handles queued work strictly in arrival order, handing the event loop over once the turn's
   * SLICE_MS is used up (so fault requests leave and demand pages come in promptly).
   */
  async #drain(): Promise<void> {
    this.#draining = true;
    try {
      while (this.#queueHead < this.#queue.length) {
        if (this.#phase === "failed") {
          this.#queue.length = 0;
          this.#queueHead = 0;
          this.#queuedBytes = 0;
          return;
        }
        const w = this.#queue[this.#queueHead]!;
        this.#queue[this.#queueHead++] = undefined as unknown as Work;
        this.#queuedBytes -= w.bytes;
        if (this.#queueHead > 1024 && this.#queueHead * 2 > this.#queue.length) {
          this.#queue.splice(0, this.#queueHead);
          this.#queueHead = 0;
        }
        if (this.queuedFrames <= this.#limits.maxQueuedFrames / 2 && this.#queuedBytes <= this.#limits.maxQueuedBytes / 2) this.#ep?.resume();
        const tick = this.#slice.tick();
        if (tick !== undefined) await tick;
        try {
          const handled = this.#handle(w);
          if (handled !== undefined) await handled;
        } catch (e) {
          this.#fatal(e);
        }
        // The run's bytes are installed (copied into the guest): its buffer can take the next run.
        if (w.t === "run" && w.pooled !== null) this.#framePool.give(w.pooled);
      }
    } finally {
      this.#draining = false;
    }
  }

  #handle(w: Work): Promise<void> | undefined {
    if (this.#phase === "failed") return undefined;
    switch (w.t) {
      case "hello":
        return this.#onHello(w.hello);
      case "page":
        return this.#onPage(w.p);
      case "run":
        return this.#onRun(w.r);
      case "round-end":
        return undefined; // the source reports round progress; nothing to do here
      case "discard":
        return this.#onDiscard(w.pages, w.atSwitchover);
      case "device-state":
        return this.#onDeviceState(w.state);
      case "complete":
        return this.#onComplete(w.demandPages);
    }
  }

  async #onHello(h: Hello): Promise<void> {
    this.#trace.start();
    this.#cpu = cpuMeter();
    this.#m.helloEpochMs = nowEpochMs();
    this.#m.virtualNs.hello = this.#guest.virtualNs;
    // The source's start time aligns both sides' charts; a clock that is off by more than the run
    // could last (another host's, or a hostile one) is not trusted.
    const now = nowEpochMs();
    const start = Math.abs(now - h.startEpochMs) < this.#config.timeoutMs ? h.startEpochMs : now;
    this.#timeline = new Timeline(start);
    this.#phase = "precopy";
    // Register for MISSING faults now, while the guest does not run here, so the registration
    // costs no downtime. Precopy pages then arrive through UFFDIO_COPY, which cannot fault.
    if (h.strategy !== "precopy") await this.#registerMissing();
    this.#ep!.link.send(encodeFrame(FRAME.HELLO_ACK, 0, 0, 0));
  }

  async #registerMissing(): Promise<void> {
    const backend = await createPostcopyBackend(this.#guest);
    await backend.start((page, raced) => this.#onFault(page, raced));
    this.#backend = backend;
    this.#m.postcopyMethod = backend.method;
    this.#m.fallbacks = [...backend.fallbacks];
  }

  async #onPage(f: PageFrame): Promise<void> {
    if (this.#phase === "failed") return;
    const page = f.page;
    const kind = KIND_NAMES[f.kind - 1]!;
    const at = nowEpochMs();
    if (kind === "stop-copy" && this.#m.virtualNs.switchover === 0) this.#m.virtualNs.switchover = this.#guest.virtualNs;
    this.#timeline.add(kind, at);
    this.#m.received[kind]++;
    if (f.data === null) this.#m.received.zero++;
    const postcopyKind = f.kind === PAGE_KIND.DEMAND || f.kind === PAGE_KIND.BACKGROUND;
    if (postcopyKind || (this.#backend !== null && this.#have[page] === 0)) {
      // A missing page: install it atomically (UFFDIO_COPY / UFFDIO_ZEROPAGE), waking whoever
      // waits for it. Once the guest runs here this is the only way a page goes in: a page the
      // guest already has meets EEXIST and nothing is written over it.
      if (this.#backend === null) throw new Error(`page ${page} of a postcopy kind without a userfaultfd registration`);
      this.#have[page] = 1;
      if ((await this.#backend.install(page, f.data)) === "exists") this.#m.received.alreadyPresent++;
      this.#resolveFaults(page);
    } else if (this.#have[page] === 1 || f.data !== null) {
      // Precopy, the guest not running here: a resent page (it is mapped) or a first copy with no
      // userfaultfd registered.
      await this.#guest.writePage(page, f.data ?? new Uint8Array(4096));
      this.#have[page] = 1;
    } else {
      this.#have[page] = 1; // a zero page nobody mapped yet: it already reads as zeros
    }
  }

  /** A run of contiguous pages: one range operation per stretch of pages handled alike. */
  async #onRun(r: PagesFrame): Promise<void> {
    if (this.#phase === "failed") return;
    const kind = KIND_NAMES[r.kind - 1]!;
    const at = nowEpochMs();
    if (kind === "stop-copy" && this.#m.virtualNs.switchover === 0) this.#m.virtualNs.switchover = this.#guest.virtualNs;
    this.#timeline.add(kind, at, r.n);
    this.#m.received[kind] += r.n;
    const postcopyKind = r.kind === PAGE_KIND.BACKGROUND;
    const backend = this.#backend;
    if (postcopyKind && backend === null) throw new Error(`pages ${r.first}.. of a postcopy kind without a userfaultfd registration`);
    const first = r.first;
    const have = this.#have;
    let dataAt = 0;
    for (let i = 0; i < r.n; ) {
      const zero = isZeroInRun(r, i);
      const h = this.#howToInstall(postcopyKind, first + i, zero);
      let j = i + 1;
      while (j < r.n && isZeroInRun(r, j) === zero && this.#howToInstall(postcopyKind, first + j, zero) === h) j++;
      const k = j - i;
      if (zero) this.#m.received.zero += k;
      const data = zero ? null : r.data.subarray(dataAt, dataAt + k * 4096);
      if (!zero) dataAt += k * 4096;
      have.fill(1, first + i, first + j);
      if (h === 0) {
        this.#m.received.alreadyPresent += await backend!.installRun(first + i, k, data);
        if (this.#pendingFaults.size > 0) for (let q = first + i; q < first + j; q++) this.#resolveFaults(q);
      } else if (h === 1) {
        await this.#guest.writePages(first + i, data ?? new Uint8Array(k * 4096));
      }
      i = j;
    }
  }

  /**
   * How page `p` of a run goes in: 0 install (UFFDIO_COPY / ZEROPAGE: a missing page, or any page
   * once the guest runs here), 1 write (precopy resend over our own earlier copy), 2 nothing (a
   * zero page never mapped, no userfaultfd: it already reads as zeros). A method, not a closure
   * made per run: the install path runs it for every page.
   */
  #howToInstall(postcopyKind: boolean, p: number, zero: boolean): number {
    if (postcopyKind || (this.#backend !== null && this.#have[p] === 0)) return 0;
    return this.#have[p] === 1 || !zero ? 1 : 2;
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
    this.#trace.mark(page, "fault");
    this.#trace.queueAtFault(page, this.queuedFrames, this.#queuedBytes);
    this.#requested[page] = 1;
    this.#requests++;
    this.#proto.requested(page);
    (this.#preemptEp ?? this.#ep).link.send(encodeFrame(FRAME.REQUEST, 0, page, 1));
    this.#trace.mark(page, "requestSent");
  }

  #resolveFaults(page: number): void {
    const list = this.#pendingFaults.get(page);
    if (list === undefined) return;
    const now = performance.now();
    this.#trace.mark(page, "installed");
    for (const t0 of list) this.#latency.add((now - t0) * 1000);
    this.#pendingFaults.delete(page);
  }

  /** Hybrid: drop our stale copies of pages dirtied on the source, so touching them faults. */
  async #onDiscard(pages: Uint32Array, atSwitchover: boolean): Promise<void> {
    if (atSwitchover) this.#m.virtualNs.switchover = this.#guest.virtualNs;
    if (this.#backend === null) throw new Error("DISCARD without a userfaultfd registration");
    if (this.#workload !== null) throw new Error("DISCARD while the guest runs here"); // the protocol state already refuses it
    for (const p of pages) {
      this.#have[p] = 0;
      this.#backend.forget(p);
    }
    await this.#guest.discard(pages);
    this.#m.received.discarded += pages.length;
    if (!atSwitchover) this.#ep!.link.send(encodeFrame(FRAME.DISCARD_ACK, 0, 0, pages.length));
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
    this.#trace.switchoverEpochMs = this.#m.resumeEpochMs;
    this.#m.virtualNs.resume = this.#guest.virtualNs;
    this.#opsSampler = setInterval(() => this.#sampleOps(), 50);
    this.#ep!.link.send(encodeFrame(FRAME.RESUMED, 0, 0, 0));
    this.#hooks.resumed();
    if (state.mode === "resume") await this.#finish(); // precopy: every page is already here
  }

  #checkAllPresent(when: string): void {
    let missing = 0;
    for (let p = 0; p < this.#have.length; p++) if (this.#have[p] === 0) missing++;
    if (missing > 0) throw new Error(`${missing} pages never arrived before ${when}`);
  }

  /**
   * Postcopy's end: every page has been sent. Wait for the demand pages COMPLETE counted (some
   * may still be on the preempt connection) and those still being installed.
   */
  async #onComplete(demandPages: number): Promise<void> {
    const t0 = performance.now();
    while (this.#proto.demandReceived < demandPages || this.#urgentInFlight > 0) {
      if (this.#phase === "failed") return;
      if (performance.now() - t0 > this.#limits.phaseTimeoutMs) throw new Error(`${demandPages - this.#proto.demandReceived} demand pages counted by COMPLETE never arrived`);
      await new Promise<void>((resolve) => setTimeout(resolve, 1));
    }
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
    if (this.#cpu !== null) this.#m.cpu = this.#cpu();
    const ep = this.#ep!;
    ep.link.send(encodeFrame(FRAME.DONE, 0, 0, 0));
    ep.finish();
    // The preempt connection stays open for the source to close once it has DONE (on the main
    // connection, which may be read after the preempt connection's close would be).
    this.#preemptEp?.finish();
    await ep.end().catch(() => {});
    this.#hooks.complete();
  }

  #sampleOps(): void {
    const w = this.#workload;
    if (w !== null) this.#m.opsTimeline.push({ tMs: nowEpochMs() - this.#timeline.startEpochMs, ops: w.ops, side: "destination" });
  }

  /** The connection died, or was closed for a protocol violation, before COMPLETE. */
  #linkLost(e: Error): void {
    if (this.#phase === "running" || this.#phase === "failed") return;
    const was = this.#phase;
    this.#phase = "failed";
    let missing = 0;
    for (let p = 0; p < this.#have.length; p++) if (this.#have[p] === 0) missing++;
    this.#m.missingPages = missing;
    const during = was === "postcopy" && this.#workload !== null ? "postcopy" : was === "postcopy" ? "postcopy setup" : "precopy";
    const what =
      this.#localError !== null
        ? `migration stopped by a destination error during ${during} (${this.#localError})`
        : e instanceof PeerProtocolError
          ? `migration stopped: the source broke the protocol during ${during} (${e.message})`
          : e instanceof PeerReportedError
            ? `migration stopped by the source during ${during} (${e.message})`
            : `connection to the source lost during ${during} (${e.message})`;
    const msg =
      during === "postcopy"
        ? `${what}; ${missing} of ${this.#guest.pages} pages never arrived. ` +
          `The destination guest is paused: threads that touch a missing page stay blocked, and no missing page is filled with zeros`
        : `${what}; the guest never left the source`;
    this.#m.failure = msg;
    this.#hooks.failed(msg);
  }

  #fatal(e: unknown): void {
    const msg = e instanceof Error ? e.message : String(e);
    if (this.#phase === "failed") return;
    this.#localError ??= msg;
    if (this.#ep === null) return this.#linkLost(new Error(msg));
    this.#ep.violation(new Error(`destination error: ${msg}`)); // tells the source, closes, and lands in #linkLost
  }

  /** Stops listening, closes the connection and the guest's workload (tests; the CLI exits instead). */
  async dispose(): Promise<void> {
    this.close();
    if (this.#opsSampler !== null) clearInterval(this.#opsSampler);
    this.#opsSampler = null;
    this.#ep?.destroy("the destination was disposed");
    this.#preemptEp?.destroy("the destination was disposed");
    await this.#workload?.pause(0);
  }

  /** Stops the guest (bounded wait: a thread blocked on a missing page never stops) and checks its memory. */
  async verify(oracle: Uint32Array, onProgress: (done: number, total: number) => void): Promise<VerificationResult> {
    // The guest ran here before it is stopped: the orchestrator's run-after sleep is wall-clock
    // time, and a loaded host may not schedule this process at all meanwhile.
    if (this.#phase === "running" && this.#workload !== null && this.#config.workload.some((t) => t.rate > 0)) await this.#workload.until((w) => w.ops > 0, 10_000);
    const stopped = this.#workload === null ? true : await this.#workload.pause(this.#phase === "running" ? 10_000 : 300);
    if (this.#opsSampler !== null) clearInterval(this.#opsSampler);
    this.#sampleOps();
    this.#m.blockedThreads = stopped ? 0 : (this.#workload?.busyThreads ?? 0);
    const scope = this.#phase === "running" ? "full" : "partial";
    return verifyGuest(this.#guest, this.#log, oracle, this.#have, scope, onProgress);
  }

  /**
   * An oracle without the source's help (two hosts, no shared file): each page's version is the
   * one the guest first read here (the source's, as far as this side can know), else the one
   * the page's own header names. Verifying against it checks that every page is exactly the bytes
   * of a version of itself: wrong, mixed or torn pages fail; a page that missed its last update
   * on the source does not.
   */
  async selfOracle(): Promise<Uint32Array> {
    const g = this.#guest;
    const out = new Uint32Array(g.pages).fill(UNPOPULATED);
    for (let first = 0; first < g.pages; first += 512) {
      const n = Math.min(512, g.pages - first);
      const present = g.presentMap(first, n);
      for (let i = 0; i < n; i++) {
        const p = first + i;
        if (this.#log.firstSeen[p] !== NOT_KNOWN) out[p] = this.#log.firstSeen[p]!;
        else if (present[i]) out[p] = parseHeader(wordsOf(await g.readPage(p)), g.seed, p);
      }
    }
    return out;
  }

  metrics(): DestMetrics {
    const m = this.#m;
    m.phaseAtEnd = this.#phase;
    m.faults = { ...this.#latency.summary(), raced: this.#raced, requests: this.#requests };
    m.faults.count = this.#faultCount;
    m.bytesSent = (this.#ep?.link.bytesSent ?? 0) + (this.#preemptEp?.link.bytesSent ?? 0);
    m.bytesReceived = (this.#ep?.bytesReceived ?? 0) + (this.#preemptEp?.bytesReceived ?? 0);
    m.firstProgressEpochMs = this.#workload?.firstOpEpochMs ?? 0;
    m.preempt = this.#preemptEp !== null;
    m.maxRssBytes = process.resourceUsage().maxRSS * 1024;
    m.timeline = this.#timeline.toJSON();
    m.guestOps = this.#workload?.ops ?? 0;
    m.workloadError = this.#workload?.error?.message ?? null;
    m.corruptReads = this.#log.corruptReads;
    this.#trace.write();
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
    rejectedConnections: 0,
    rejections: [],
    backpressurePauses: 0,
    queuePeak: { frames: 0, bytes: 0 },
    firstProgressEpochMs: 0,
    preempt: false,
    maxRssBytes: 0,
  };
}
