/**
 * The read loop of one context: read(2) batches of uffd_msg, apply each batch's events to the
 * context's view, then turn its faults into Fault objects and dispatch them.
 *
 * Ordering rules (the why of this file):
 * - A read(2) returns pending faults first, then events (fs/userfaultfd.c), so a fault can be
 *   read together with the REMOVE or UNMAP that preceded it. Each batch applies its events to the
 *   range view first and dispatches its faults second: a fault in a just-removed page is then
 *   seen as removed (zero-filled), never served stale bytes.
 * - Faults for one page and kind that are in flight together are one Fault (duplicate messages
 *   are coalesced, their threads listed); the single resolve wakes them all.
 * - The loop runs until close(), EOF, or the handling process dies; it never rejects.
 */
import { ErrnoError } from "@uffd/kernel";
import * as uapi from "@uffd/kernel/uapi";
import { POLLIN, UFFD_EVENT_FORK, UFFD_EVENT_REMAP, UFFD_EVENT_REMOVE, UFFD_EVENT_UNMAP } from "@uffd/kernel/uapi";
import type { UffdContext } from "./context.ts";
import * as dispatchMod from "./dispatch.ts";
import { dispatchEvent, shutdown } from "./dispatch.ts";
import * as faultMod from "./fault.ts";
import { HOST_LITTLE_ENDIAN, u32, u32v, u64, u64v } from "./msg.ts";
import { abandon } from "./ops.ts";
import * as rangesMod from "./ranges.ts";
import type { RangeEntry } from "./ranges.ts";
import type { FaultKind } from "./types.ts";

// Module-local copies of what the fault path uses per fault: V8 reads an imported binding
// through its module cell at each use (a load and an initialisation check), and folds a
// module-local const into the optimized code. Each comes from a module evaluated before this one.
const PAGE_SIZE = uapi.PAGE_SIZE;
const UFFD_EVENT_PAGEFAULT = uapi.UFFD_EVENT_PAGEFAULT;
const UFFD_MSG_SIZE = uapi.UFFD_MSG_SIZE;
const UFFD_PAGEFAULT_FLAG_MINOR = uapi.UFFD_PAGEFAULT_FLAG_MINOR;
const UFFD_PAGEFAULT_FLAG_WP = uapi.UFFD_PAGEFAULT_FLAG_WP;
const dispatchFault = dispatchMod.dispatchFault;
const FaultImpl = faultMod.FaultImpl;
const faultKey = faultMod.faultKey;
const PAGE_STATE = rangesMod.PAGE_STATE;

/** Builds the handler of a FORK event's new fd (the facade's job: it owns the public object). */
export type OnFork = (parent: UffdContext, ufd: number) => void;

/** Starts the read loop; the promise resolves when it has ended (it never rejects). */
export function startReader(ctx: UffdContext, onFork: OnFork): Promise<void> {
  return new Promise((resolve) => new ReadLoop(ctx, onFork, resolve).next());
}

/**
 * The read loop, as callbacks rather than an async function: an `await` allocates two closures
 * and an async-function resume per read (~0.3 KB, V8's sampling heap profiler), where
 * `then(onRead, onError)` with callbacks made once allocates only its reaction and derived
 * promise. The order of events is the same: either runs one microtask after the read's promise
 * settles.
 */
class ReadLoop {
  readonly #ctx: UffdContext;
  readonly #onFork: OnFork;
  readonly #end: () => void;
  // One buffer serves every read (the messages are handled before the next read overwrites
  // them). It is made over an ArrayBuffer of its own, so it is off V8's heap whatever its size
  // (V8 keeps a typed array of up to 64 bytes made by length on its heap, where a view over it
  // costs a backing store), and a fault's fields are read as 32-bit words through #words on a
  // little-endian host (uffd_msg is in the host's byte order, and the simulator writes it
  // little-endian), or through #view elsewhere.
  readonly #buf: Uint8Array;
  readonly #words: Uint32Array | null;
  readonly #view: DataView;
  #failures = 0;
  // The host clock's reading taken at the end of the batch just handled (its settle time), while
  // the loop is still in the same synchronous run; NaN once anything else may have run (a
  // promise, a microtask). A read that returns messages at once after that batch uses it as its
  // read time instead of reading the clock again: the two instants are the same to within the
  // loop's own work (the readNowait() in between).
  #carryWallMs = NaN;
  // What is queued already is read by readNowait(), without a promise; only an empty queue
  // sleeps, in readInto(). Right after a batch, the threads its resolves woke have not run yet
  // (each runs in a promise reaction queued by its wake), so the queue is usually empty then: the
  // loop tries readNowait() at once only while that finds something (a backlog), and otherwise
  // one microtask later (#tick), after those reactions, when a thread that faulted again has
  // queued its next message; only if that finds nothing too does it sleep in readInto(). A
  // handler that keeps up with its threads so reads each fault without sleeping and without
  // being woken (a sleeping read's wake, promise and reaction cost more than the microtask).
  // After NOWAIT_MISSES empty tries in a row of either kind, that try is skipped for the next
  // NOWAIT_RETRY reads (a read that filled a multi-message buffer ends the skipping at once).
  #misses = 0;
  #skip = 0;
  #tickMisses = 0;
  #tickSkip = 0;
  readonly #onRead = (n: number): void => this.#read(n);
  readonly #onTick = (): void => this.#tick();
  readonly #onError = (e: unknown): void => this.#failed(e);

  constructor(ctx: UffdContext, onFork: OnFork, end: () => void) {
    this.#ctx = ctx;
    this.#onFork = onFork;
    this.#end = end;
    const bytes = new ArrayBuffer(ctx.config.batch * UFFD_MSG_SIZE);
    this.#buf = new Uint8Array(bytes);
    this.#words = HOST_LITTLE_ENDIAN ? new Uint32Array(bytes) : null;
    this.#view = new DataView(bytes);
  }

  /**
   * Reads and handles what is queued; on an empty queue, tries again one microtask later
   * (#later()) and returns.
   */
  next(): void {
    const ctx = this.#ctx;
    const buf = this.#buf;
    try {
      while (!ctx.closed) {
        let n: number | null;
        if (this.#skip > 0) {
          this.#skip--;
          this.#later();
          return;
        }
        try {
          n = ctx.proc.readNowait(ctx.fd, buf);
        } catch (e) {
          this.#carryWallMs = NaN;
          this.#failed(e);
          return;
        }
        if (n === null) {
          if (++this.#misses >= NOWAIT_MISSES) this.#skip = NOWAIT_RETRY;
          this.#later();
          return;
        }
        this.#misses = 0;
        if (!this.#handle(n, this.#carryWallMs)) return;
      }
      this.#stop();
    } catch (e) {
      this.#crashed(e);
    }
  }

  /** Nothing is queued now: read one microtask later (#tick()), or sleep in readInto() at once while those tries keep finding nothing. */
  #later(): void {
    const ctx = this.#ctx;
    // Anything may run before the next read: the carried reading is no longer "now".
    this.#carryWallMs = NaN;
    if (this.#tickSkip > 0) {
      this.#tickSkip--;
      ctx.proc.readInto(ctx.fd, this.#buf).then(this.#onRead, this.#onError);
      return;
    }
    void RESOLVED.then(this.#onTick);
  }

  /** One microtask after the queue was found empty: read what the threads woken since have queued, else sleep in readInto(). */
  #tick(): void {
    const ctx = this.#ctx;
    try {
      if (ctx.closed) return this.#stop();
      let n: number | null;
      try {
        n = ctx.proc.readNowait(ctx.fd, this.#buf);
      } catch (e) {
        this.#failed(e);
        return;
      }
      if (n === null) {
        if (++this.#tickMisses >= NOWAIT_MISSES) this.#tickSkip = NOWAIT_RETRY;
        ctx.proc.readInto(ctx.fd, this.#buf).then(this.#onRead, this.#onError);
        return;
      }
      this.#tickMisses = 0;
      if (this.#handle(n, NaN)) this.next();
    } catch (e) {
      this.#crashed(e);
    }
  }

  /** readInto() returned `n` bytes. */
  #read(n: number): void {
    try {
      if (this.#handle(n, NaN)) this.next();
    } catch (e) {
      this.#crashed(e);
    }
  }

  /**
   * Handles one read's `n` bytes; false when the loop has ended (closed, or EOF). `wallMs`: the
   * read time to give its faults, or NaN to read the clock.
   */
  #handle(n: number, wallMs: number): boolean {
    const ctx = this.#ctx;
    this.#failures = 0;
    this.#carryWallMs = NaN;
    // A read that filled a multi-message buffer: more may be queued, so every kind of
    // readNowait() is worth trying again.
    if (n === this.#buf.length && n > UFFD_MSG_SIZE) this.#skip = this.#misses = this.#tickSkip = this.#tickMisses = 0;
    if (ctx.closed || n === 0) {
      this.#stop();
      return false;
    }
    this.#carryWallMs = handleBatch(ctx, this.#buf, n, this.#words, this.#view, this.#onFork, wallMs);
    return true;
  }

  /** A read failed: go on (after waiting for POLLIN, or a macrotask) or end the loop. */
  #failed(e: unknown): void {
    const ctx = this.#ctx;
    const again = (): void => this.next();
    if (ctx.closed || ctx.proc.exited) return this.#stop(); // closed by us, or the handling process died in read(2)
    if (e instanceof ErrnoError && e.code === "EAGAIN") {
      pollIn(ctx).then(again, again);
      return;
    }
    if (e instanceof ErrnoError && (e.code === "EBADF" || e.code === "ESRCH")) return this.#stop();
    ctx.report(e, null);
    if (++this.#failures > 16) return this.#stop();
    setImmediate(again);
  }

  /** The loop has ended: shut the context down unless close() did, then say so. */
  #stop(): void {
    const ctx = this.#ctx;
    if (ctx.closed) this.#end();
    else shutdown(ctx, false).then(this.#end, this.#end);
  }

  /** Something threw that never should (the listeners are wrapped): report it and end the loop. */
  #crashed(e: unknown): void {
    this.#ctx.report(e, null);
    this.#end();
  }
}

/** Empty readNowait()s in a row (at once after a batch, or a microtask later) after which the read loop skips that try. */
const NOWAIT_MISSES = 4;
/** Reads between two tries of a kind of readNowait() while it keeps finding the queue empty. */
const NOWAIT_RETRY = 32;
/** A settled promise: then() on it queues its reaction as one microtask. */
const RESOLVED: Promise<void> = Promise.resolve();

/** An O_NONBLOCK fd (one passed in, or a fork child's): wait for POLLIN instead of spinning. */
async function pollIn(ctx: UffdContext): Promise<void> {
  try {
    await ctx.proc.poll([{ fd: ctx.fd, events: POLLIN }], -1);
  } catch {
    await macrotask();
  }
}

/**
 * The `len` bytes read into `bytes` (`words`: the same bytes as 32-bit words on a little-endian
 * host, else null and `view` reads them). `wallMs` is the faults' read time on the host clock, or
 * NaN to read the clock now. Returns the clock's reading taken when the batch was done (the
 * settle time of the faults settled in it), or NaN if it took none.
 */
function handleBatch(ctx: UffdContext, bytes: Uint8Array, len: number, words: Uint32Array | null, view: DataView, onFork: OnFork, wallMs: number): number {
  const n = len - (len % UFFD_MSG_SIZE);
  let faults = 0;
  let events = 0;
  for (let off = 0; off < n; off += UFFD_MSG_SIZE) {
    if (bytes[off] === UFFD_EVENT_PAGEFAULT) faults++;
    else {
      handleEvent(ctx, bytes, off, bytes[off]!, onFork);
      events++;
    }
  }
  if (events > 0) {
    ctx.wakeEpochWaiters();
    // An event's listeners ran in between: the carried reading is no longer "now".
    wallMs = NaN;
  }
  if (faults === 0) return NaN;
  // The faults of one read(2) were read at one moment: one wall-clock reading serves them
  // all, and those settled while the batch is dispatched share one settle-time reading too.
  ctx.batchReadWallMs = wallMs === wallMs || !ctx.config.wallLatency ? wallMs : ctx.config.wallClock();
  ctx.inBatch = true;
  try {
    if (words === null) handleFaultsView(ctx, bytes, n, view);
    else {
      // uffd_msg as words: event in the low byte of word 0; flags words 2-3, address 4-5, ptid 6.
      for (let off = 0, w = 0; off < n; off += UFFD_MSG_SIZE, w += UFFD_MSG_SIZE / 4) {
        if (bytes[off] === UFFD_EVENT_PAGEFAULT) handleFault(ctx, words[w + 2]! + words[w + 3]! * 0x1_0000_0000, words[w + 4]! + words[w + 5]! * 0x1_0000_0000, words[w + 6]!);
      }
    }
  } finally {
    wallMs = ctx.finishBatch();
  }
  return wallMs;
}

/** handleBatch()'s fault loop through a DataView (a host that is not little-endian). */
function handleFaultsView(ctx: UffdContext, bytes: Uint8Array, n: number, view: DataView): void {
  for (let off = 0; off < n; off += UFFD_MSG_SIZE) {
    if (bytes[off] === UFFD_EVENT_PAGEFAULT) handleFault(ctx, u64v(view, off + 8), u64v(view, off + 16), u32v(view, off + 24));
  }
}

function handleFault(ctx: UffdContext, flags: number, address: number, ptid: number): void {
  // address - address % PAGE_SIZE, without the modulo: user addresses are above 2^31, where `%`
  // is a float modulo (a call into C in V8); dividing by a power of two and flooring is exact
  // for the integers below 2^53 that addresses are.
  const page = Math.floor(address / PAGE_SIZE) * PAGE_SIZE;
  const kind: FaultKind = (flags & UFFD_PAGEFAULT_FLAG_MINOR) !== 0 ? "minor" : (flags & UFFD_PAGEFAULT_FLAG_WP) !== 0 ? "wp" : "missing";
  if (kind === "minor") ctx.minorRead = true;
  const entry = ctx.ranges.find(page) ?? learnRange(ctx, page);
  const st = entry === null ? 0 : entry.state[entry.stateIndex(page)]!;
  const removed = kind === "missing" && (st & PAGE_STATE.REMOVED) !== 0;
  const f = new FaultImpl(ctx, kind, flags, page, address - page, ptid, entry, removed, ctx.eventEpoch, ctx.nowNs());
  // Into the in-flight table, unless a fault of the page and kind is in flight already: this
  // message is then a duplicate (another thread on the page), coalesced into that fault, and the
  // record just made is dropped.
  const dup = ctx.inflight.addIfAbsent(faultKey(page, kind), f);
  if (dup !== undefined) {
    (dup.extraThreads ??= []).push(ptid);
    ctx.metrics.faults.duplicates++;
    return;
  }
  ctx.metrics.faults[kind]++;
  dispatchFault(ctx, f);
}

/**
 * A fault outside every known range: an adopted fd, an mremap that grew a vma in place (no
 * event), a registration made behind the SDK's back. /proc/pid/smaps says which vma it is.
 */
function learnRange(ctx: UffdContext, page: number): RangeEntry | null {
  const target = ctx.target;
  if (target === null || target.exited) return null;
  const vma = target.smaps().find((v) => page >= v.start && page < v.end);
  if (vma === undefined) return null;
  const modes = (vma.vmFlags.includes("um") ? 1 : 0) | (vma.vmFlags.includes("uw") ? 2 : 0) | (vma.vmFlags.includes("ui") ? 4 : 0);
  if (modes === 0) return null;
  let start = vma.start;
  let offset = vma.start;
  for (const e of ctx.ranges.overlapping(vma.start, vma.end)) {
    if (e.end <= page) {
      start = e.end;
      offset = e.sourceOffset(e.end - PAGE_SIZE) + PAGE_SIZE;
    }
  }
  const next = ctx.ranges.overlapping(page, vma.end)[0];
  return ctx.ranges.adopt(start, next?.start ?? vma.end, modes, offset);
}

function handleEvent(ctx: UffdContext, bytes: Uint8Array, off: number, event: number, onFork: OnFork): void {
  ctx.eventProcessed();
  const m = ctx.metrics;
  switch (event) {
    case UFFD_EVENT_FORK: {
      m.events.fork++;
      traceEvent(ctx, "fork", { ufd: u32(bytes, off + 8) });
      onFork(ctx, u32(bytes, off + 8));
      return;
    }
    case UFFD_EVENT_REMAP: {
      const from = u64(bytes, off + 8);
      const to = u64(bytes, off + 16);
      const len = u64(bytes, off + 24);
      m.events.remap++;
      ctx.ranges.move(from, to, len);
      abandon(ctx, from, from + len);
      traceEvent(ctx, "remap", { from: hex(from), to: hex(to), len });
      dispatchEvent(ctx, "remap", Object.freeze({ from, to, len }), Object.freeze({ type: "remap", from, to, len }));
      return;
    }
    case UFFD_EVENT_REMOVE: {
      const start = u64(bytes, off + 8);
      const end = u64(bytes, off + 16);
      m.events.remove++;
      ctx.noteRemove(start, end);
      traceEvent(ctx, "remove", { start: hex(start), end: hex(end) });
      dispatchEvent(ctx, "remove", Object.freeze({ start, end }), Object.freeze({ type: "remove", start, end }));
      return;
    }
    case UFFD_EVENT_UNMAP: {
      const start = u64(bytes, off + 8);
      const end = u64(bytes, off + 16);
      m.events.unmap++;
      ctx.ranges.delete(start, end);
      abandon(ctx, start, end);
      traceEvent(ctx, "unmap", { start: hex(start), end: hex(end) });
      dispatchEvent(ctx, "unmap", Object.freeze({ start, end }), Object.freeze({ type: "unmap", start, end }));
      return;
    }
    default:
      ctx.report(new Error(`unknown uffd_msg event 0x${event.toString(16)}`), null);
  }
}

function traceEvent(ctx: UffdContext, name: string, args: Record<string, unknown>): void {
  if (!ctx.metrics.tracing) return;
  ctx.metrics.addTraceEvent({ name, cat: "uffd,event", ph: "i", s: "p", ts: ctx.nowNs() / 1000, pid: ctx.proc.pid, tid: 0, args: { ...args, fd: ctx.fd } });
}

function macrotask(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}
