/**
 * One end of the migration connection: the shaped sending link, the frame reader, and a mailbox
 * for the control frames a side waits for (HELLO_ACK, DISCARD_ACK, RESUMED, DONE). Everything else goes to the
 * side's frame handler in arrival order. A peer's ERROR frame or a lost connection fails every
 * pending wait with a message that says which phase was interrupted.
 */
import type { Socket } from "node:net";
import { LinkClosedError, ShapedLink, type LinkShape } from "./link.ts";
import { decodeJson, FRAME, FrameReader, ProtocolError, type Frame, type FrameType } from "./protocol.ts";

const MAILBOX_TYPES: ReadonlySet<number> = new Set([FRAME.HELLO_ACK, FRAME.RESUMED, FRAME.DONE, FRAME.DISCARD_ACK]);

export class Endpoint {
  readonly link: ShapedLink;
  readonly #socket: Socket;
  readonly #reader = new FrameReader();
  readonly #mail = new Map<number, Frame[]>();
  readonly #waiters = new Map<number, Array<{ resolve: (f: Frame) => void; reject: (e: Error) => void }>>();
  readonly #closeListeners: Array<(e: Error) => void> = [];
  #error: Error | null = null;
  #finished = false;
  bytesReceived = 0;
  onFrame: (frame: Frame) => void = () => {};

  constructor(socket: Socket, shape: LinkShape) {
    this.#socket = socket;
    socket.setNoDelay(true);
    this.link = new ShapedLink(socket, shape);
    socket.on("data", (chunk: Buffer) => this.#onData(chunk));
    socket.on("close", () => {
      if (!this.#finished) this.#fail(new LinkClosedError("the connection was closed by the peer"));
    });
    socket.on("error", (e) => this.#fail(new LinkClosedError(`the connection failed: ${e.message}`)));
  }

  get error(): Error | null {
    return this.#error;
  }

  /** Calls `fn` once if the connection is lost or fails (not on a clean end()). */
  onClose(fn: (e: Error) => void): void {
    if (this.#error !== null) fn(this.#error);
    else this.#closeListeners.push(fn);
  }

  /** The next control frame of `type` (possibly one that already arrived), within `timeoutMs`. */
  waitFor(type: FrameType, timeoutMs: number, what: string): Promise<Frame> {
    const queued = this.#mail.get(type);
    if (queued !== undefined && queued.length > 0) return Promise.resolve(queued.shift()!);
    if (this.#error !== null) return Promise.reject(this.#error);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
      const list = this.#waiters.get(type) ?? [];
      list.push({
        resolve: (f) => {
          clearTimeout(timer);
          resolve(f);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.#waiters.set(type, list);
    });
  }

  /** The conversation is over: from now on the connection closing is not an error. */
  finish(): void {
    this.#finished = true;
  }

  /** Cuts the connection (fault injection or a fatal local error). */
  destroy(reason: string): void {
    this.#fail(new LinkClosedError(reason));
    this.link.destroy(reason);
  }

  /** Flushes what is queued, then closes our sending side. */
  async end(): Promise<void> {
    await this.link.flush();
    this.#socket.end();
  }

  #onData(chunk: Buffer): void {
    this.bytesReceived += chunk.byteLength;
    let frames: Frame[];
    try {
      frames = this.#reader.push(chunk);
    } catch (e) {
      this.destroy(e instanceof ProtocolError ? `protocol error: ${e.message}` : String(e));
      return;
    }
    for (const f of frames) this.#dispatch(f);
  }

  #dispatch(f: Frame): void {
    if (f.type === FRAME.ERROR) {
      const { message } = decodeJson<{ message: string }>(f);
      this.destroy(`the peer reported an error: ${message}`);
      return;
    }
    if (!MAILBOX_TYPES.has(f.type)) {
      this.onFrame(f);
      return;
    }
    const w = this.#waiters.get(f.type)?.shift();
    if (w !== undefined) w.resolve(f);
    else this.#mail.set(f.type, [...(this.#mail.get(f.type) ?? []), f]);
  }

  #fail(e: Error): void {
    if (this.#error !== null) return;
    this.#error = e;
    for (const list of this.#waiters.values()) for (const w of list.splice(0)) w.reject(e);
    for (const fn of this.#closeListeners.splice(0)) fn(e);
  }
}
