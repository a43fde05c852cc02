/**
 * One end of the migration connection: the shaped sending link, the frame reader, and a mailbox
 * for the control frames a side waits for (HELLO_ACK, DISCARD_ACK, RESUMED, DONE).
 *
 * Every frame goes to the side's `onFrame`, which checks it against the side's protocol state
 * (protocol-state.ts) and either acts on it or posts it to the mailbox. A frame that breaks the
 * protocol (onFrame throws a ProtocolError, or the byte stream cannot be framed) closes the
 * connection after telling the peer why in an ERROR frame; a peer's ERROR frame, a lost connection
 * or an idle connection fails every pending wait with a message that says which phase was
 * interrupted.
 */
import type { Socket } from "node:net";
import { LinkClosedError, ShapedLink, type LinkShape, type Wire } from "./link.ts";
import { parseErrorFrame } from "./protocol-state.ts";
import { encodeFrame, FRAME, FrameReader, ProtocolError, type Frame, type FrameBufferPool, type FrameType } from "./protocol.ts";

export interface EndpointOptions {
  /** The largest frame payload accepted (checked from the header, before buffering). */
  maxPayload: number;
  /** The protocol state, for error messages. */
  state: () => string;
  /** The peer stopped reading what we send for this long: give up (0 = never). */
  stallTimeoutMs?: number;
  /** Share another connection's wire (the postcopy-preempt channel) ... */
  wire?: Wire;
  /** ... ahead of it. */
  priority?: boolean;
  /** Wake for the arrival of each frame sent here to the sub-millisecond (see LinkOptions.precise). */
  precise?: boolean;
  /** Reassemble frames that span socket reads into this pool's buffers (see FrameBufferPool). */
  pool?: FrameBufferPool;
  /**
   * Bytes read from the socket in one event-loop turn, after which it pauses until the next turn
   * (libuv reads a readable socket up to 32 times 64 KiB in one turn, 2 MiB of frames to handle
   * before anything else runs); 0 = no bound. Asked again after every read.
   */
  readPerTurn?: () => number;
}

/** The peer broke the protocol: we closed the connection. */
export class PeerProtocolError extends LinkClosedError {
  override name = "PeerProtocolError";
}

/** The peer sent a (well-formed) ERROR frame and closed: its side failed. */
export class PeerReportedError extends LinkClosedError {
  override name = "PeerReportedError";
}

export class Endpoint {
  readonly link: ShapedLink;
  readonly #socket: Socket;
  readonly #reader: FrameReader;
  readonly #state: () => string;
  readonly #mail = new Map<number, Frame[]>();
  readonly #waiters = new Map<number, Array<{ resolve: (f: Frame) => void; reject: (e: Error) => void }>>();
  readonly #closeListeners: Array<(e: Error) => void> = [];
  #error: Error | null = null;
  #finished = false;
  #paused = false;
  readonly #readPerTurn: (() => number) | null;
  /** Bytes read in this turn (0: none yet, no end-of-turn callback pending). */
  #turnBytes = 0;
  /** Paused for the rest of this turn by readPerTurn (not by backpressure). */
  #turnPaused = false;
  #idle: { ms: number; what: string; timer: NodeJS.Timeout; last: number } | null = null;
  bytesReceived = 0;
  framesReceived = 0;
  onFrame: (frame: Frame) => void = () => {};

  constructor(socket: Socket, shape: LinkShape, options: EndpointOptions) {
    this.#socket = socket;
    this.#reader = new FrameReader(options.maxPayload, options.pool ?? null);
    this.#state = options.state;
    this.#readPerTurn = options.readPerTurn ?? null;
    socket.setNoDelay(true);
    this.link = new ShapedLink(socket, shape, {
      stallTimeoutMs: options.stallTimeoutMs ?? 0,
      ...(options.wire !== undefined ? { wire: options.wire } : {}),
      priority: options.priority ?? false,
      ...(options.precise !== undefined ? { precise: options.precise } : {}),
    });
    socket.on("data", (chunk: Buffer) => this.#onData(chunk));
    socket.on("close", () => {
      if (!this.#finished) this.#fail(new LinkClosedError("the connection was closed by the peer"));
    });
    socket.on("error", (e) => this.#fail(new LinkClosedError(`the connection failed: ${e.message}`)));
    this.link.onStall = (e) => this.#fail(e);
  }

  get error(): Error | null {
    return this.#error;
  }

  /** The largest payload accepted from now on (it grows once the peer is authenticated). */
  set maxPayload(n: number) {
    this.#reader.maxPayload = n;
  }

  /** Bytes received and not yet framed. */
  get buffered(): number {
    return this.#reader.buffered;
  }

  /** Calls `fn` once if the connection is lost or fails (not on a clean end()). */
  onClose(fn: (e: Error) => void): void {
    if (this.#error !== null) fn(this.#error);
    else this.#closeListeners.push(fn);
  }

  /** Puts a frame where waitFor() finds it. */
  post(f: Frame): void {
    const w = this.#waiters.get(f.type)?.shift();
    if (w !== undefined) w.resolve(f);
    else this.#mail.set(f.type, [...(this.#mail.get(f.type) ?? []), f]);
  }

  /** The next control frame of `type` (possibly one that already arrived), within `timeoutMs`. */
  waitFor(type: FrameType, timeoutMs: number, what: string): Promise<Frame> {
    const queued = this.#mail.get(type);
    if (queued !== undefined && queued.length > 0) return Promise.resolve(queued.shift()!);
    if (this.#error !== null) return Promise.reject(this.#error);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const list = this.#waiters.get(type);
        const i = list?.indexOf(entry) ?? -1;
        if (i >= 0) list!.splice(i, 1);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const entry = {
        resolve: (f: Frame) => {
          clearTimeout(timer);
          resolve(f);
        },
        reject: (e: Error) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      const list = this.#waiters.get(type) ?? [];
      list.push(entry);
      this.#waiters.set(type, list);
    });
  }

  /**
   * Fails the connection when nothing arrives for `ms` while the socket is read (time spent
   * paused by our own backpressure does not count). 0 turns it off.
   */
  setIdleTimeout(ms: number, what: string): void {
    if (this.#idle !== null) clearTimeout(this.#idle.timer);
    this.#idle = null;
    if (ms <= 0 || this.#error !== null) return;
    const idle = { ms, what, last: performance.now(), timer: setTimeout(() => this.#checkIdle(), ms) };
    this.#idle = idle;
  }

  #checkIdle(): void {
    const idle = this.#idle;
    if (idle === null || this.#error !== null) return;
    const quiet = performance.now() - idle.last;
    if (this.#paused || quiet < idle.ms) {
      idle.timer = setTimeout(() => this.#checkIdle(), Math.max(1, idle.ms - (this.#paused ? 0 : quiet)));
      return;
    }
    this.destroy(`nothing received for ${idle.ms} ms ${idle.what}`);
  }

  /** Stops reading the socket (backpressure: the kernel's receive buffer fills, the peer's writes stall). */
  pause(): void {
    if (this.#paused) return;
    this.#paused = true;
    this.#socket.pause();
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    if (this.#idle !== null) this.#idle.last = performance.now();
    if (!this.#turnPaused) this.#socket.resume();
  }

  /** The turn in which readPerTurn bytes were read is over: read again (unless backpressure holds). */
  readonly #endTurn = (): void => {
    this.#turnBytes = 0;
    if (!this.#turnPaused) return;
    this.#turnPaused = false;
    if (!this.#paused && this.#error === null) this.#socket.resume();
  };

  /** The conversation is over: from now on the connection closing is not an error. */
  finish(): void {
    this.#finished = true;
    this.setIdleTimeout(0, "");
  }

  /** Cuts the connection (fault injection or a fatal local error). */
  destroy(reason: string): void {
    this.#fail(new LinkClosedError(reason));
    this.link.destroy(reason);
  }

  /**
   * The peer broke the protocol: tell it why (best effort, ahead of anything queued), then close.
   * Nothing the offending frame asked for has happened.
   */
  violation(e: Error): void {
    if (this.#error !== null) return;
    this.#fail(new PeerProtocolError(e.message));
    this.link.sendNow(encodeFrame(FRAME.ERROR, 0, 0, 0, new TextEncoder().encode(JSON.stringify({ message: e.message }))));
    this.link.destroy(e.message, true);
  }

  /** Flushes what is queued, then closes our sending side. */
  async end(): Promise<void> {
    await this.link.flush();
    this.#socket.end();
  }

  #onData(chunk: Buffer): void {
    if (this.#error !== null) return;
    this.bytesReceived += chunk.byteLength;
    if (this.#readPerTurn !== null) {
      if (this.#turnBytes === 0) setImmediate(this.#endTurn);
      this.#turnBytes += chunk.byteLength;
      const budget = this.#readPerTurn();
      if (budget > 0 && this.#turnBytes >= budget && !this.#turnPaused) {
        this.#turnPaused = true;
        this.#socket.pause();
      }
    }
    if (this.#idle !== null) this.#idle.last = performance.now();
    let frames: Frame[];
    try {
      frames = this.#reader.push(chunk);
    } catch (e) {
      this.violation(new ProtocolError(`protocol error in state "${this.#state()}": ${e instanceof Error ? e.message : String(e)}`));
      return;
    }
    for (const f of frames) {
      if (this.#error !== null) return;
      this.framesReceived++;
      try {
        this.#dispatch(f);
      } catch (e) {
        if (!(e instanceof ProtocolError)) throw e;
        this.violation(e);
        return;
      }
    }
  }

  #dispatch(f: Frame): void {
    if (f.type === FRAME.ERROR) {
      const message = parseErrorFrame(f, this.#state());
      this.#fail(new PeerReportedError(`the peer reported an error: ${message}`));
      this.link.destroy(`the peer reported an error: ${message}`);
      return;
    }
    this.onFrame(f);
  }

  #fail(e: Error): void {
    if (this.#error !== null) return;
    this.#error = e;
    if (this.#idle !== null) clearTimeout(this.#idle.timer);
    this.#idle = null;
    for (const list of this.#waiters.values()) for (const w of list.splice(0)) w.reject(e);
    this.#mail.clear();
    for (const fn of this.#closeListeners.splice(0)) fn(e);
  }
}
