/**
 * The sending half of a shaped network link.
 *
 * A `Wire` is the physical link: one bandwidth and one one-way latency, shared by every TCP
 * connection of a migration. Each connection's sending side is a `ShapedLink` (a channel): a FIFO
 * that models the connection's socket send buffer. Bytes leave the FIFOs onto the wire in
 * segments of at most 64 KiB (a TSO segment); a channel with priority (the postcopy-preempt
 * connection) gets the wire at the next segment boundary, so a demand page waits for at most one
 * bulk segment, never for the bulk connection's buffer. Within one channel nothing overtakes: a
 * frame queued behind a full send buffer (single-stream postcopy) arrives after all of it, as on
 * a real TCP stream. A frame reaches the real socket once its last byte has crossed the wire plus
 * the latency.
 *
 * Departure times are computed from the wire's model (bytes / bandwidth from the moment the wire
 * frees), not from timers: one timer per wire wakes the pump when the next frame is due, and
 * every frame due by then is written in one corked write (writev). Unlimited bandwidth and zero
 * latency still batch writes per event-loop turn.
 *
 * This is the one place where wall-clock time shapes the demo.
 */
import type { Socket } from "node:net";

export interface LinkShape {
  /** One-way delay added to every frame, in ms. */
  latencyMs: number;
  /** Bytes per second; 0 means unlimited. */
  bandwidthBytesPerSec: number;
  /**
   * The modelled socket send buffer of each connection, in bytes: how much a sender may queue
   * before it must wait. Default: max(256 KiB, 10 ms of bandwidth); 1 MiB when unlimited.
   */
  sendBufferBytes?: number;
}

/** The modelled send buffer for a shape. */
export function sendBufferBytes(shape: LinkShape): number {
  if (shape.sendBufferBytes !== undefined) return shape.sendBufferBytes;
  return shape.bandwidthBytesPerSec > 0 ? Math.max(256 * 1024, Math.round(shape.bandwidthBytesPerSec * 0.01)) : 1024 * 1024;
}

/** The link is gone: the peer closed it, it failed, or we destroyed it. */
export class LinkClosedError extends Error {
  override name = "LinkClosedError";
}

/** Bytes a frame may occupy the wire before a higher-priority channel can cut in. */
export const SEGMENT_BYTES = 64 * 1024;
/**
 * Wire time that may be caught up in one pump, in ms (a token bucket's depth): timers fire late
 * on a busy event loop, and the bytes the wire could have carried meanwhile leave at once.
 */
export const BURST_MS = 10;
/**
 * The shortest wait of the pump for bulk work, in ms: while the wire is busy it wakes about this
 * often, puts the segments due on the wire and writes the bulk frames that have arrived in one
 * corked write. Each wakeup costs the sending process a turn of its event loop and a write, and
 * the receiving process a read: at 1 ms the source of a 1 GiB migration on the default link used
 * 1.79 to 2.18 CPU seconds, at 2 ms 1.58 to 1.90, lower in four alternating pairs of four
 * (docs/benchmarks.md, "Where the time goes"). A bulk frame reaches its socket up to about this
 * long after the model's arrival; the link's pace does not change (see #depart).
 */
export const BULK_TICK_MS = 2;
/**
 * How late a bulk wakeup may be (BULK_TICK_MS, and the event loop's clock read once per turn), in
 * ms: a precise deadline within this of a bulk one is waited for instead.
 */
const PRECISE_MARGIN_MS = BULK_TICK_MS + 1;

interface Item {
  parts: readonly Uint8Array[];
  /** Called once the socket has written the frame's bytes (or failed): its buffers are free. */
  onWritten: (() => void) | undefined;
  size: number;
  /** When it was queued (performance.now() ms): none of it leaves the wire model earlier. */
  queuedAt: number;
  /** Bytes of this frame already on the wire. */
  departed: number;
  /** When its last byte arrives (valid once departed === size). */
  arrivalMs: number;
}

/** A FIFO with O(1) push/shift. */
class Fifo<T> {
  #items: T[] = [];
  #head = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(item: T): void {
    this.#items.push(item);
  }

  peek(): T | undefined {
    return this.#items[this.#head];
  }

  at(i: number): T | undefined {
    return this.#items[this.#head + i];
  }

  shift(): T {
    const item = this.#items[this.#head]!;
    this.#items[this.#head++] = undefined as unknown as T;
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }
}

/** The shared physical link: bandwidth, latency and the pump that drives every channel. */
export class Wire {
  readonly shape: LinkShape;
  /** Channels in priority order (a preempt channel first). */
  readonly #channels: ShapedLink[] = [];
  /** When the wire finishes the bytes already scheduled on it (performance.now() ms). */
  #busyUntil = 0;
  #timer: NodeJS.Timeout | NodeJS.Immediate | null = null;
  #timerAt = Infinity;

  constructor(shape: LinkShape) {
    this.shape = shape;
  }

  attach(ch: ShapedLink, priority: boolean): void {
    if (priority) this.#channels.unshift(ch);
    else this.#channels.push(ch);
  }

  detach(ch: ShapedLink): void {
    const i = this.#channels.indexOf(ch);
    if (i >= 0) this.#channels.splice(i, 1);
    if (this.#channels.length === 0) this.#clearTimer();
  }

  /** Wire time (ms) still owed to bytes already scheduled, as seen now. */
  backlogMs(now = performance.now()): number {
    return Math.max(0, this.#busyUntil - now);
  }

  /** A frame was queued: run the pump in this turn's check phase. */
  kick(): void {
    this.#schedule(performance.now());
  }

  #clearTimer(): void {
    const t = this.#timer;
    if (t === null) return;
    if ("refresh" in t) clearTimeout(t);
    else clearImmediate(t);
    this.#timer = null;
    this.#timerAt = Infinity;
  }

  /**
   * Runs the pump at `atMs`. Node's timers count whole milliseconds of the event loop's clock,
   * which is read once per turn: a timer fires up to about a millisecond before or after the
   * time asked for. Bulk work (`precise` false) waits with a timer of at least BULK_TICK_MS,
   * rounded up, and a timer that fired early waits with another one: the pump is then up to
   * about BULK_TICK_MS late, which costs the link no bandwidth (departures are computed from the
   * model, and up to BURST_MS of wire time is caught up), only that much delay on a bulk frame. A
   * turn of the event loop at a time (setImmediate) is only for work already due: waiting
   * for a bulk deadline that way ran the source's event loop about 150,000 times a second
   * through the whole transfer (docs/benchmarks.md, "Where the time goes").
   * A frame of a priority channel next (`precise`, a demand hop) must not be a millisecond late
   * on top of the link's own latency (rounded up, a frame due in 1.03 ms waited 2.15): its timer
   * rounds to the nearest millisecond, and less than half a millisecond left is waited for a
   * turn at a time.
   */
  #schedule(atMs: number, precise = false): void {
    if (atMs >= this.#timerAt) return;
    this.#clearTimer();
    const delay = atMs - performance.now();
    const run = (): void => {
      this.#timer = null;
      this.#timerAt = Infinity;
      this.#pump();
    };
    this.#timerAt = atMs;
    this.#timer =
      delay <= 0 || (precise && delay < 0.5)
        ? setImmediate(run)
        : setTimeout(run, precise ? Math.max(1, Math.round(delay)) : Math.max(BULK_TICK_MS, Math.ceil(delay)));
  }

  /**
   * Delivers what has arrived, then waits for the next thing due: a frame's arrival, or the wire
   * freeing for bytes that wait for it. The deadlines of precise channels (their frames'
   * arrivals, and the moment the wire frees for one of their frames) are kept apart from the
   * others: a bulk timer may fire up to about PRECISE_MARGIN_MS late, so a precise deadline
   * before that is the one waited for, and the bulk work due a little earlier is done with it.
   */
  #pump(): void {
    const now = performance.now();
    this.#depart(now);
    let bulkAt = Infinity;
    let preciseAt = Infinity;
    for (const ch of [...this.#channels]) {
      const t = ch.deliver(now);
      if (ch.precise) preciseAt = Math.min(preciseAt, t);
      else bulkAt = Math.min(bulkAt, t);
    }
    for (const ch of this.#channels) {
      if (!ch.hasUndeparted()) continue;
      // #depart stopped at the first segment boundary after now: the wire frees then.
      if (ch.precise) preciseAt = Math.min(preciseAt, this.#busyUntil);
      else bulkAt = Math.min(bulkAt, Math.max(this.#busyUntil, now + 0.5));
    }
    if (preciseAt <= bulkAt + PRECISE_MARGIN_MS) this.#schedule(preciseAt, true);
    else if (bulkAt < Infinity) this.#schedule(bulkAt, false);
  }

  /**
   * Puts bytes on the wire, segment by segment, up to the present; at each segment boundary the
   * highest-priority channel whose next frame had been queued by then. The pump may run late (a
   * busy event loop, a bulk timer): the segments it catches up leave at the times the model
   * gives them, and a frame never leaves before it was queued (idle time is not banked), so a
   * late pump does not let a demand page overtake bulk segments that were already due.
   */
  #depart(now: number): void {
    const bw = this.shape.bandwidthBytesPerSec;
    const lat = this.shape.latencyMs;
    if (bw <= 0) {
      for (const ch of this.#channels) ch.departAll(now + lat);
      return;
    }
    let t = Math.max(this.#busyUntil, now - BURST_MS);
    while (t <= now) {
      let ch: ShapedLink | undefined;
      let soonest = Infinity;
      for (const c of this.#channels) {
        const q = c.nextQueuedAt();
        if (q <= t) {
          ch = c;
          break;
        }
        if (q < soonest) soonest = q;
      }
      if (ch !== undefined) t = ch.departSegment(t, bw, lat);
      else if (soonest <= now) t = soonest;
      else break;
    }
    this.#busyUntil = Math.max(t, this.#busyUntil);
  }
}

export interface LinkOptions {
  /** Share this wire (the preempt channel shares the bulk connection's link). Default: a new one. */
  wire?: Wire;
  /** This channel gets the wire ahead of the others (postcopy preempt). */
  priority?: boolean;
  /**
   * Someone waits for each of this channel's frames (demand pages, fault requests): the pump
   * wakes for their arrival to within a fraction of a millisecond, not with a bulk frame's
   * millisecond timer. Default: `priority`.
   */
  precise?: boolean;
  /** Fail when the socket stays unwritable (the peer stopped reading) this long; 0 = never. */
  stallTimeoutMs?: number;
}

/** One connection's sending side over a (possibly shared) wire. */
export class ShapedLink {
  readonly #socket: Socket;
  readonly wire: Wire;
  readonly #queue = new Fifo<Item>();
  /** Index (in #queue) of the first frame not fully departed. */
  #departIdx = 0;
  /** Bytes queued and not yet written to the socket. */
  #undelivered = 0;
  /** Bytes queued and not yet on the wire. */
  #undeparted = 0;
  readonly sendBuffer: number;
  #closedError: Error | null = null;
  readonly #roomWaiters: Array<{ limit: number; resolve: () => void; reject: (e: Error) => void }> = [];
  readonly #flushWaiters: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  readonly #stallTimeoutMs: number;
  readonly #priority: boolean;
  /** See LinkOptions.precise. */
  readonly precise: boolean;
  #stallTimer: NodeJS.Timeout | null = null;
  #blockedSince: number | null = null;
  /** Bytes handed to the socket (frames and their headers). */
  bytesSent = 0;
  framesSent = 0;
  /** Total ms the socket refused more data (the receiver, not the link, was the bottleneck). */
  blockedMs = 0;
  /** Called when the socket stayed unwritable (the peer stopped reading) for the stall timeout. */
  onStall: (e: LinkClosedError) => void = () => {};

  constructor(socket: Socket, shape: LinkShape, options: LinkOptions | number = {}) {
    const o: LinkOptions = typeof options === "number" ? { stallTimeoutMs: options } : options;
    this.#socket = socket;
    this.wire = o.wire ?? new Wire(shape);
    this.sendBuffer = sendBufferBytes(this.wire.shape);
    this.#stallTimeoutMs = o.stallTimeoutMs ?? 0;
    this.#priority = o.priority ?? false;
    this.precise = o.precise ?? this.#priority;
    this.wire.attach(this, this.#priority);
    socket.on("drain", () => this.#drained());
    socket.on("close", () => this.#fail(new LinkClosedError("the connection was closed by the peer")));
    socket.on("error", (e) => this.#fail(new LinkClosedError(`the connection failed: ${e.message}`)));
  }

  get closed(): boolean {
    return this.#closedError !== null;
  }

  /** This channel gets the wire ahead of the others (the postcopy-preempt connection). */
  get priority(): boolean {
    return this.#priority;
  }

  /** Bytes queued here (modelled send buffer) plus what Node still holds for the kernel. */
  get occupancy(): number {
    return this.#undelivered + this.#socket.writableLength;
  }

  /** Whether a sender may queue more without waiting (occupancy below `limit`). */
  hasRoom(limit = this.sendBuffer): boolean {
    return this.occupancy < limit;
  }

  /**
   * Queues a frame given as its parts (written back to back, never copied before the wire).
   * Returns the bytes queued ahead of it on this connection: what it must wait behind.
   * `onWritten` is called once the socket no longer needs the parts (written to the kernel, or
   * the connection failed), so their buffer can be reused; never if the connection is cut first.
   */
  send(parts: readonly Uint8Array[], onWritten?: () => void): number {
    if (this.#closedError !== null) throw this.#closedError;
    let size = 0;
    for (const p of parts) size += p.byteLength;
    // Ahead of it: this connection's queued bytes, and on a priority channel the other channels'
    // bytes the wire has already committed to (at most about one segment).
    const bw = this.wire.shape.bandwidthBytesPerSec;
    const ahead = this.occupancy + (this.#priority && bw > 0 ? Math.round((this.wire.backlogMs() * bw) / 1000) : 0);
    if (this.#priority && bw <= 0 && this.wire.shape.latencyMs <= 0 && this.#queue.length === 0) {
      // Nothing to model and nothing queued ahead on this connection: a demand request or page
      // goes to the socket now, not one event-loop turn later with the next batch.
      this.#write(parts, size, onWritten);
      return ahead;
    }
    this.#queue.push({ parts, size, onWritten, queuedAt: performance.now(), departed: 0, arrivalMs: 0 });
    this.#undelivered += size;
    this.#undeparted += size;
    this.wire.kick();
    return ahead;
  }

  /** Resolves once occupancy is below `limit` (default: the send buffer): the sender's backpressure. */
  waitForRoom(limit = this.sendBuffer): Promise<void> {
    if (this.#closedError !== null) return Promise.reject(this.#closedError);
    if (this.occupancy < limit) return Promise.resolve();
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

  // --- driven by the wire ------------------------------------------------------------------

  hasUndeparted(): boolean {
    return this.#undeparted > 0 && this.#closedError === null;
  }

  /** When the first frame not yet fully on the wire was queued (Infinity: none). */
  nextQueuedAt(): number {
    if (this.#undeparted === 0 || this.#closedError !== null) return Infinity;
    return this.#queue.at(this.#departIdx)!.queuedAt;
  }

  /** Unlimited bandwidth: everything queued departs now and arrives at `arrivalMs`. */
  departAll(arrivalMs: number): void {
    if (this.#closedError !== null) return;
    for (let it = this.#queue.at(this.#departIdx); it !== undefined; it = this.#queue.at(++this.#departIdx)) {
      it.departed = it.size;
      it.arrivalMs = arrivalMs;
    }
    this.#undeparted = 0;
  }

  /** One segment of the first frame not yet on the wire leaves at `t`; returns when the wire frees. */
  departSegment(t: number, bw: number, latencyMs: number): number {
    const it = this.#queue.at(this.#departIdx)!;
    const seg = Math.min(SEGMENT_BYTES, it.size - it.departed);
    it.departed += seg;
    this.#undeparted -= seg;
    const end = t + (seg * 1000) / bw;
    if (it.departed === it.size) {
      it.arrivalMs = end + latencyMs;
      this.#departIdx++;
    }
    return end;
  }

  /** Writes every frame that has arrived by `now` in one corked batch; returns the next arrival. */
  deliver(now: number): number {
    if (this.#closedError !== null) return Infinity;
    let n = 0;
    while (n < this.#departIdx && this.#queue.at(n)!.arrivalMs <= now) n++;
    if (n > 0) {
      const s = this.#socket;
      s.cork();
      let ok = true;
      for (let i = 0; i < n; i++) {
        const it = this.#queue.shift();
        const last = it.parts.length - 1;
        for (let k = 0; k <= last; k++) ok = k === last && it.onWritten !== undefined ? s.write(it.parts[k]!, it.onWritten) : s.write(it.parts[k]!);
        this.#undelivered -= it.size;
        this.bytesSent += it.size;
        this.framesSent++;
      }
      this.#departIdx -= n;
      s.uncork();
      if (!ok) this.#block();
    }
    this.#notify();
    const head = this.#queue.peek();
    return head !== undefined && this.#departIdx > 0 ? head.arrivalMs : Infinity;
  }

  // --- internals --------------------------------------------------------------------------

  /** Writes one frame straight to the socket (nothing of this connection is queued ahead of it). */
  #write(parts: readonly Uint8Array[], size: number, onWritten: (() => void) | undefined): void {
    const s = this.#socket;
    let ok = true;
    if (parts.length > 1) s.cork();
    const last = parts.length - 1;
    for (let k = 0; k <= last; k++) ok = k === last && onWritten !== undefined ? s.write(parts[k]!, onWritten) : s.write(parts[k]!);
    if (parts.length > 1) s.uncork();
    this.bytesSent += size;
    this.framesSent++;
    if (!ok) this.#block();
  }

  #idle(): boolean {
    return this.#queue.length === 0 && this.#blockedSince === null;
  }

  #block(): void {
    if (this.#blockedSince === null) this.#blockedSince = performance.now();
    if (this.#stallTimeoutMs <= 0 || this.#stallTimer !== null) return;
    this.#stallTimer = setTimeout(() => {
      this.#stallTimer = null;
      if (this.#blockedSince === null || this.#closedError !== null) return;
      const e = new LinkClosedError(`the peer stopped reading: nothing could be written for ${this.#stallTimeoutMs} ms`);
      this.onStall(e);
      this.destroy(e.message);
    }, this.#stallTimeoutMs);
  }

  #drained(): void {
    if (this.#blockedSince !== null) this.blockedMs += performance.now() - this.#blockedSince;
    this.#blockedSince = null;
    if (this.#stallTimer !== null) clearTimeout(this.#stallTimer);
    this.#stallTimer = null;
    this.#notify();
  }

  #notify(): void {
    if (this.#roomWaiters.length > 0) {
      const occ = this.occupancy;
      for (let i = 0; i < this.#roomWaiters.length; ) {
        const w = this.#roomWaiters[i]!;
        if (occ < w.limit) {
          this.#roomWaiters.splice(i, 1);
          w.resolve();
        } else {
          i++;
        }
      }
    }
    if (this.#flushWaiters.length > 0 && this.#idle()) for (const w of this.#flushWaiters.splice(0)) w.resolve();
  }

  #fail(e: Error): void {
    if (this.#closedError !== null) return;
    this.#closedError = e;
    this.wire.detach(this);
    if (this.#stallTimer !== null) clearTimeout(this.#stallTimer);
    this.#stallTimer = null;
    for (const w of this.#roomWaiters.splice(0)) w.reject(e);
    for (const w of this.#flushWaiters.splice(0)) w.reject(e);
  }
}
