/**
 * The sending half of a shaped network link: frames wait in two queues (urgent ahead of bulk,
 * like QEMU's postcopy-preempt channel), leave at the configured bandwidth (a token bucket) and
 * reach the socket after the configured one-way latency. A frame that has left can no longer be
 * overtaken, as on a real wire. Unlimited bandwidth and zero latency still batch writes per tick.
 *
 * Real timers drive it: this is the one place where wall-clock time shapes the demo.
 */
import type { Socket } from "node:net";

export interface LinkShape {
  /** One-way delay added to every frame, in ms. */
  latencyMs: number;
  /** Bytes per second; 0 means unlimited. */
  bandwidthBytesPerSec: number;
}

export type Priority = "urgent" | "bulk";

/** The link is gone: the peer closed it, it failed, or we destroyed it. */
export class LinkClosedError extends Error {
  override name = "LinkClosedError";
}

interface InFlight {
  arrivalMs: number;
  item: Item;
}

/** A frame on its way: its parts (header, payload) and total size. */
interface Item {
  parts: readonly Uint8Array[];
  size: number;
}

/** A FIFO of frames with O(1) push/shift and a running byte count. */
class FrameQueue {
  #items: Item[] = [];
  #head = 0;
  bytes = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(item: Item): void {
    this.#items.push(item);
    this.bytes += item.size;
  }

  peek(): Item | undefined {
    return this.#items[this.#head];
  }

  shift(): Item {
    const item = this.#items[this.#head++]!;
    this.bytes -= item.size;
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }
}

export class ShapedLink {
  readonly #socket: Socket;
  readonly #shape: LinkShape;
  readonly #urgent = new FrameQueue();
  readonly #bulk = new FrameQueue();
  readonly #inflight: InFlight[] = [];
  #inflightHead = 0;
  #tokens: number;
  readonly #burst: number;
  #lastRefill = performance.now();
  #timer: NodeJS.Timeout | NodeJS.Immediate | null = null;
  #blocked = false;
  #closedError: Error | null = null;
  readonly #roomWaiters: Array<{ limit: number; resolve: () => void; reject: (e: Error) => void }> = [];
  readonly #flushWaiters: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  /** Bytes handed to the socket (frames and their headers). */
  bytesSent = 0;
  framesSent = 0;
  readonly #stallTimeoutMs: number;
  #stallTimer: NodeJS.Timeout | null = null;
  /** Called when the socket stayed unwritable (the peer stopped reading) for the stall timeout. */
  onStall: (e: LinkClosedError) => void = () => {};

  constructor(socket: Socket, shape: LinkShape, stallTimeoutMs = 0) {
    this.#socket = socket;
    this.#shape = shape;
    this.#stallTimeoutMs = stallTimeoutMs;
    this.#burst = Math.max(64 * 1024, shape.bandwidthBytesPerSec * 0.01);
    this.#tokens = this.#burst;
    socket.on("drain", () => {
      this.#blocked = false;
      if (this.#stallTimer !== null) clearTimeout(this.#stallTimer);
      this.#stallTimer = null;
      this.#schedule(0);
    });
    socket.on("close", () => this.#fail(new LinkClosedError("the connection was closed by the peer")));
    socket.on("error", (e) => this.#fail(new LinkClosedError(`the connection failed: ${e.message}`)));
  }

  get closed(): boolean {
    return this.#closedError !== null;
  }

  /** Bytes waiting in the bulk queue (not yet on the wire). */
  get queuedBulkBytes(): number {
    return this.#bulk.bytes;
  }

  /** Queues a frame given as its parts (written back to back, never copied before the wire). */
  send(parts: readonly Uint8Array[], priority: Priority): void {
    if (this.#closedError !== null) throw this.#closedError;
    let size = 0;
    for (const p of parts) size += p.byteLength;
    (priority === "urgent" ? this.#urgent : this.#bulk).push({ parts, size });
    this.#schedule(0);
  }

  /** Resolves once the bulk queue holds at most `limit` bytes: the sender's backpressure. */
  waitForRoom(limit: number): Promise<void> {
    if (this.#closedError !== null) return Promise.reject(this.#closedError);
    if (this.#bulk.bytes <= limit) return Promise.resolve();
    return new Promise((resolve, reject) => this.#roomWaiters.push({ limit, resolve, reject }));
  }

  /** Resolves once every queued frame has been written to the socket. */
  flush(): Promise<void> {
    if (this.#closedError !== null) return Promise.reject(this.#closedError);
    if (this.#idle()) return Promise.resolve();
    return new Promise((resolve, reject) => this.#flushWaiters.push({ resolve, reject }));
  }

  /** Writes a frame to the socket at once, ahead of everything queued (an ERROR before closing). */
  sendNow(parts: readonly Uint8Array[]): void {
    if (this.#closedError !== null || this.#socket.destroyed) return;
    for (const p of parts) this.#socket.write(p);
  }

  /**
   * Cuts the connection (fault injection, fatal errors). `graceful`: what was already written
   * (an ERROR frame) still goes out, for a short while, if the peer reads it.
   */
  destroy(reason: string, graceful = false): void {
    this.#fail(new LinkClosedError(reason));
    if (!graceful) {
      this.#socket.destroy();
      return;
    }
    this.#socket.end();
    setTimeout(() => this.#socket.destroy(), 200).unref();
  }

  #idle(): boolean {
    return this.#urgent.length === 0 && this.#bulk.length === 0 && this.#inflight.length === this.#inflightHead && !this.#blocked;
  }

  #fail(e: Error): void {
    if (this.#closedError !== null) return;
    this.#closedError = e;
    this.#clearTimer();
    if (this.#stallTimer !== null) clearTimeout(this.#stallTimer);
    this.#stallTimer = null;
    for (const w of this.#roomWaiters.splice(0)) w.reject(e);
    for (const w of this.#flushWaiters.splice(0)) w.reject(e);
  }

  #clearTimer(): void {
    const t = this.#timer;
    if (t === null) return;
    if ("refresh" in t) clearTimeout(t);
    else clearImmediate(t);
    this.#timer = null;
  }

  #schedule(delayMs: number): void {
    if (this.#timer !== null || this.#closedError !== null || this.#blocked) return;
    const run = (): void => {
      this.#timer = null;
      this.#pump();
    };
    this.#timer = delayMs <= 0 ? setImmediate(run) : setTimeout(run, Math.max(1, Math.ceil(delayMs)));
  }

  #pump(): void {
    if (this.#closedError !== null) return;
    const now = performance.now();
    this.#depart(now);
    this.#deliver(now);
    this.#notify();
    const next = this.#nextWakeMs(performance.now());
    if (next !== null) this.#schedule(next);
  }

  /** Moves frames from the queues onto the wire as far as the token bucket allows. */
  #depart(now: number): void {
    const bw = this.#shape.bandwidthBytesPerSec;
    if (bw > 0) {
      this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#lastRefill) * bw) / 1000);
      this.#lastRefill = now;
    }
    for (;;) {
      const q = this.#urgent.length > 0 ? this.#urgent : this.#bulk;
      const head = q.peek();
      if (head === undefined) return;
      if (bw > 0 && this.#tokens < Math.min(head.size, this.#burst)) return;
      q.shift();
      if (bw > 0) this.#tokens -= head.size;
      this.#inflight.push({ arrivalMs: now + this.#shape.latencyMs, item: head });
    }
  }

  /** Writes every frame whose latency has elapsed, in one corked batch. */
  #deliver(now: number): void {
    if (this.#blocked) return;
    let end = this.#inflightHead;
    while (end < this.#inflight.length && this.#inflight[end]!.arrivalMs <= now) end++;
    if (end === this.#inflightHead) return;
    const batch = this.#inflight.slice(this.#inflightHead, end);
    this.#inflightHead = end;
    if (this.#inflightHead > 1024 && this.#inflightHead * 2 > this.#inflight.length) {
      this.#inflight.splice(0, this.#inflightHead);
      this.#inflightHead = 0;
    }
    const size = batch.reduce((n, f) => n + f.item.size, 0);
    const buf = Buffer.allocUnsafe(size);
    let at = 0;
    for (const f of batch) {
      for (const part of f.item.parts) {
        buf.set(part, at);
        at += part.byteLength;
      }
    }
    this.bytesSent += size;
    this.framesSent += batch.length;
    if (!this.#socket.write(buf)) this.#block();
  }

  #block(): void {
    this.#blocked = true;
    if (this.#stallTimeoutMs <= 0 || this.#stallTimer !== null) return;
    this.#stallTimer = setTimeout(() => {
      this.#stallTimer = null;
      if (!this.#blocked || this.#closedError !== null) return;
      const e = new LinkClosedError(`the peer stopped reading: nothing could be written for ${this.#stallTimeoutMs} ms`);
      this.onStall(e);
      this.destroy(e.message);
    }, this.#stallTimeoutMs);
  }

  #notify(): void {
    for (let i = 0; i < this.#roomWaiters.length; ) {
      const w = this.#roomWaiters[i]!;
      if (this.#bulk.bytes <= w.limit) {
        this.#roomWaiters.splice(i, 1);
        w.resolve();
      } else {
        i++;
      }
    }
    if (this.#idle()) for (const w of this.#flushWaiters.splice(0)) w.resolve();
  }

  /** When the pump must run again, or null when there is nothing to do. */
  #nextWakeMs(now: number): number | null {
    let next: number | null = null;
    if (this.#inflightHead < this.#inflight.length) next = this.#inflight[this.#inflightHead]!.arrivalMs - now;
    const head = this.#urgent.peek() ?? this.#bulk.peek();
    if (head !== undefined) {
      const bw = this.#shape.bandwidthBytesPerSec;
      const wait = bw > 0 ? ((Math.min(head.size, this.#burst) - this.#tokens) * 1000) / bw : 0;
      next = next === null ? wait : Math.min(next, wait);
    }
    return next;
  }
}
