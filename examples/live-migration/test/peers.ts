/**
 * Scripted peers for the hostile-peer suites: a raw TCP peer that writes whatever bytes a test
 * gives it and collects the frames it gets back, frame builders for a fake source, and a
 * destination or source running in this process with small, configurable timeouts.
 */
import { once } from "node:events";
import { connect, createServer, type Server, type Socket } from "node:net";
import { makeConfig, type ConfigOverrides, type MigrationConfig } from "../src/config.ts";
import { MigrationDestination } from "../src/dest.ts";
import { fillInitialPage, UNPOPULATED, WORDS_PER_PAGE } from "../src/pages.ts";
import type { DeviceState, Hello } from "../src/protocol-state.ts";
import { encodeFrame, encodeJson, encodePageList, FRAME, FrameReader, frameBytes, PAGE_KIND, PAGE_ZERO, PROTOCOL_VERSION, type EncodedFrame, type Frame, type PageKind } from "../src/protocol.ts";

export const TOKEN = "0123456789abcdef0123456789abcdef";
/** A 1 MiB guest: 256 pages. */
export const PAGES = 256;

/**
 * Timeouts are generous by default (a loaded machine must not turn a slow step into a timeout);
 * the tests about silent peers make the one they exercise small. Tests assert the error, never the time.
 */
export function hostileConfig(overrides: ConfigOverrides = {}): MigrationConfig {
  return makeConfig({
    memoryBytes: PAGES * 4096,
    hotSetBytes: 64 * 1024,
    workload: [],
    warmupMs: 0,
    runAfterMs: 0,
    link: { latencyMs: 0, bandwidthBytesPerSec: 0 },
    timeoutMs: 30_000,
    ...overrides,
    protocol: { helloTimeoutMs: 20_000, handshakeTimeoutMs: 20_000, phaseTimeoutMs: 20_000, idleTimeoutMs: 20_000, stallTimeoutMs: 20_000, ...overrides.protocol },
  });
}

/** Polls `cond` until it holds (bounded by the test's timeout budget, not by a wall-clock assertion). */
export async function until(cond: () => boolean, what: string, budgetMs = 20_000): Promise<void> {
  const t0 = performance.now();
  while (!cond()) {
    if (performance.now() - t0 > budgetMs) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** A raw TCP peer: writes bytes, reads frames (tolerating garbage), notices the close. */
export class RawPeer {
  readonly socket: Socket;
  readonly frames: Frame[] = [];
  closed = false;
  readonly #reader = new FrameReader();

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on("data", (c: Buffer) => {
      try {
        for (const f of this.#reader.push(c)) this.frames.push({ ...f, payload: f.payload.slice() });
      } catch {
        // a test peer only records what it can frame
      }
    });
    socket.on("close", () => {
      this.closed = true;
    });
    socket.on("error", () => {});
  }

  static async connect(port: number): Promise<RawPeer> {
    const s = connect({ host: "127.0.0.1", port });
    await once(s, "connect");
    return new RawPeer(s);
  }

  static adopt(socket: Socket): RawPeer {
    return new RawPeer(socket);
  }

  send(...frames: Array<EncodedFrame | Uint8Array>): void {
    for (const f of frames) this.socket.write(f instanceof Uint8Array ? f : frameBytes(f));
  }

  /** The ERROR messages this peer received. */
  errors(): string[] {
    return this.frames.filter((f) => f.type === FRAME.ERROR).map((f) => (JSON.parse(new TextDecoder().decode(f.payload)) as { message: string }).message);
  }

  async waitFrame(type: number): Promise<Frame> {
    await until(() => this.frames.some((f) => f.type === type) || this.closed, `a frame of type ${type}`);
    const f = this.frames.find((x) => x.type === type);
    if (f === undefined) throw new Error(`the connection closed before a frame of type ${type}`);
    return f;
  }

  async waitClosed(): Promise<void> {
    await until(() => this.closed, "the connection to close");
  }

  destroy(): void {
    this.socket.destroy();
  }
}

// --- a fake source's frames --------------------------------------------------------------

export function hello(overrides: Partial<Hello> = {}, seed = 1): EncodedFrame {
  const h: Hello = { version: PROTOCOL_VERSION, pages: PAGES, seed, strategy: "postcopy", startEpochMs: 0, token: TOKEN, channel: "main", preempt: false, ...overrides };
  return encodeJson(FRAME.HELLO, h);
}

/** The bytes of version 0 of `page` (what booting writes). */
export function pageV0(page: number, seed = 1): Uint8Array {
  const w = new Uint32Array(WORDS_PER_PAGE);
  fillInitialPage(w, seed, page);
  return new Uint8Array(w.buffer);
}

export function page(p: number, kind: PageKind, data: Uint8Array | null = pageV0(p)): EncodedFrame {
  return encodeFrame(FRAME.PAGE, kind | (data === null ? PAGE_ZERO : 0), p, 0, data ?? undefined);
}

export function deviceState(mode: DeviceState["mode"], overrides: Partial<DeviceState> = {}): EncodedFrame {
  const s: DeviceState = { mode, workload: { hotBase: 0, hotPages: 16, threads: [] }, pauseEpochMs: 0, ...overrides };
  return encodeJson(FRAME.DEVICE_STATE, s);
}

export function discard(pages: number[], flags = 0): EncodedFrame {
  return encodeFrame(FRAME.DISCARD, flags, 0, pages.length, encodePageList(Uint32Array.from(pages)));
}

export const complete = (): EncodedFrame => encodeFrame(FRAME.COMPLETE, 0, 0, PAGES);
export const PK = PAGE_KIND;

/** A frame with a raw length field (garbage, truncated or oversized frames). */
export function rawFrame(len: number, type: number, extra = 0): Uint8Array {
  const b = new Uint8Array(16 + extra);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, len, true);
  dv.setUint8(4, type);
  return b;
}

// --- a destination in this process -------------------------------------------------------

export interface DestHarness {
  dest: MigrationDestination;
  port: number;
  failures: string[];
  rejections: string[];
  resumed: () => boolean;
  completed: () => boolean;
  /** The first failure (waits for it). */
  failure(): Promise<string>;
  /** The n-th rejection (waits for it). */
  rejection(n?: number): Promise<string>;
  /** Versions of what the fake source sent, for dest.verify(). */
  oracle: Uint32Array;
  dispose(): Promise<void>;
}

export async function startDest(config: MigrationConfig = hostileConfig()): Promise<DestHarness> {
  const failures: string[] = [];
  const rejections: string[] = [];
  let resumed = false;
  let completed = false;
  const dest = await MigrationDestination.create(
    config,
    {
      progress: () => {},
      resumed: () => {
        resumed = true;
      },
      complete: () => {
        completed = true;
      },
      failed: (m) => failures.push(m),
      rejected: (r) => rejections.push(r),
    },
    TOKEN,
  );
  const port = await dest.listen();
  const oracle = new Uint32Array(PAGES).fill(UNPOPULATED);
  return {
    dest,
    port,
    failures,
    rejections,
    resumed: () => resumed,
    completed: () => completed,
    oracle,
    failure: async () => {
      await until(() => failures.length > 0, "the destination to fail");
      return failures[0]!;
    },
    rejection: async (n = 1) => {
      await until(() => rejections.length >= n, `rejection ${n}`);
      return rejections[n - 1]!;
    },
    dispose: () => dest.dispose(),
  };
}

/** A server a real source connects to, handing each connection to the test as a RawPeer. */
export async function scriptedServer(): Promise<{ port: number; next: () => Promise<RawPeer>; close: () => void }> {
  const server: Server = createServer();
  const peers: RawPeer[] = [];
  server.on("connection", (s) => peers.push(RawPeer.adopt(s)));
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as { port: number }).port;
  let taken = 0;
  return {
    port,
    next: async () => {
      await until(() => peers.length > taken, "the source to connect");
      return peers[taken++]!;
    },
    close: () => {
      for (const p of peers) p.destroy();
      server.close();
    },
  };
}
