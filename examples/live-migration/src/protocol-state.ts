/**
 * The migration protocol as two state machines, one per side. Every frame a side receives is
 * checked against the side's state before anything acts on it: a frame of the wrong type for the
 * state, a second HELLO or DEVICE_STATE, a DISCARD once the guest runs here, a PAGE outside the
 * guest or of the wrong size, a demand page nobody asked for, an ERROR whose payload is not the
 * expected JSON object. Each is a ProtocolViolation that names the frame and the state; the
 * endpoint then closes the connection, and nothing the frame asked for happens.
 *
 * The states follow what a side has received and sent (not how far it got processing queued
 * frames), so the check runs synchronously as a frame comes off the socket.
 */
import { timingSafeEqual } from "node:crypto";
import { STRATEGIES, THREAD_KINDS, type MigrationConfig } from "./config.ts";
import {
  DISCARD_AT_SWITCHOVER,
  FRAME,
  PAGE_KIND,
  PAGE_ZERO,
  pageKindOf,
  ProtocolError,
  PROTOCOL_VERSION,
  MAX_RUN_PAGES,
  zeroBitmapBytes,
  type Frame,
  type PageKind,
} from "./protocol.ts";
import type { WorkloadState } from "./workload.ts";

export const FRAME_NAMES: Readonly<Record<number, string>> = Object.fromEntries(Object.entries(FRAME).map(([name, type]) => [type, name]));

export function frameName(type: number): string {
  return FRAME_NAMES[type] ?? `unknown frame type ${type}`;
}

/** A frame that is not valid in the receiving side's state. */
export class ProtocolViolation extends ProtocolError {
  override name = "ProtocolViolation";
  readonly frame: string;
  readonly state: string;

  constructor(frame: string, state: string, detail: string) {
    super(`protocol error: ${frame} frame in state "${state}": ${detail}`);
    this.frame = frame;
    this.state = state;
  }
}

/** What travels in the DEVICE_STATE frame: the guest's CPU-side state. */
export interface DeviceState {
  mode: "resume" | "postcopy";
  workload: WorkloadState;
  pauseEpochMs: number;
}

export interface Hello {
  version: number;
  pages: number;
  seed: number;
  strategy: MigrationConfig["strategy"];
  startEpochMs: number;
  /** The shared secret the orchestrator (or the operator) handed both sides out of band. */
  token: string;
  /** "main" opens the migration; "preempt" is its postcopy-preempt connection. */
  channel: "main" | "preempt";
  /** Main HELLO: demand requests and pages will travel on a second (preempt) connection. */
  preempt: boolean;
}

/** Largest HELLO / ERROR / DEVICE_STATE payload accepted (a DEVICE_STATE with 64 threads is ~6 KiB). */
export const MAX_JSON_PAYLOAD = 64 * 1024;
/** Most workload threads a DEVICE_STATE may describe. */
export const MAX_THREADS = 64;
/** Longest ERROR message kept. */
export const MAX_ERROR_MESSAGE = 4096;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const isU32 = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= 0xffff_ffff;
/** A 32-bit word as JS bit operations leave it: signed or unsigned. */
const isWord32 = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v) && v >= -0x8000_0000 && v <= 0xffff_ffff;

function parseJsonObject(f: Frame, state: string): Record<string, unknown> {
  const name = frameName(f.type);
  if (f.payload.byteLength > MAX_JSON_PAYLOAD) throw new ProtocolViolation(name, state, `payload of ${f.payload.byteLength} bytes (at most ${MAX_JSON_PAYLOAD})`);
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(f.payload));
  } catch (e) {
    throw new ProtocolViolation(name, state, `payload is not UTF-8 JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  if (!isObject(v)) throw new ProtocolViolation(name, state, "payload is not a JSON object");
  return v;
}

/** An ERROR frame's reason: `{ "message": string }`, anything else is itself a violation. */
export function parseErrorFrame(f: Frame, state: string): string {
  const v = parseJsonObject(f, state);
  if (typeof v["message"] !== "string") throw new ProtocolViolation("ERROR", state, 'payload has no string "message"');
  const m = v["message"];
  return m.length > MAX_ERROR_MESSAGE ? `${m.slice(0, MAX_ERROR_MESSAGE)}...` : m;
}

export function parseHello(f: Frame, state: string): Hello {
  const v = parseJsonObject(f, state);
  const bad = (what: string): never => {
    throw new ProtocolViolation("HELLO", state, what);
  };
  if (v["version"] !== PROTOCOL_VERSION) bad(`protocol version ${JSON.stringify(v["version"])}, expected ${PROTOCOL_VERSION}`);
  if (!isU32(v["pages"]) || v["pages"] === 0) bad('"pages" is not a positive u32');
  if (!isU32(v["seed"])) bad('"seed" is not a u32');
  if (!(STRATEGIES as readonly unknown[]).includes(v["strategy"])) bad(`unknown strategy ${JSON.stringify(v["strategy"])}`);
  if (typeof v["startEpochMs"] !== "number" || !Number.isFinite(v["startEpochMs"])) bad('"startEpochMs" is not a finite number');
  if (typeof v["token"] !== "string" || v["token"].length > 256) bad('"token" is not a string of at most 256 characters');
  if (v["channel"] !== "main" && v["channel"] !== "preempt") bad(`unknown channel ${JSON.stringify(v["channel"])}`);
  if (typeof v["preempt"] !== "boolean") bad('"preempt" is not a boolean');
  return v as unknown as Hello;
}

export function parseDeviceState(f: Frame, state: string, pages: number): DeviceState {
  const v = parseJsonObject(f, state);
  const bad = (what: string): never => {
    throw new ProtocolViolation("DEVICE_STATE", state, what);
  };
  if (v["mode"] !== "resume" && v["mode"] !== "postcopy") bad(`unknown mode ${JSON.stringify(v["mode"])}`);
  if (typeof v["pauseEpochMs"] !== "number" || !Number.isFinite(v["pauseEpochMs"])) bad('"pauseEpochMs" is not a finite number');
  const w = v["workload"];
  if (!isObject(w)) return bad('"workload" is not an object');
  if (!isU32(w["hotPages"]) || w["hotPages"] < 1 || w["hotPages"] > pages) bad('"workload.hotPages" is outside the guest');
  if (!isU32(w["hotBase"]) || w["hotBase"] + (w["hotPages"] as number) > pages) bad('"workload.hotBase" puts the hot set outside the guest');
  const threads = w["threads"];
  if (!Array.isArray(threads) || threads.length > MAX_THREADS) return bad(`"workload.threads" is not an array of at most ${MAX_THREADS}`);
  for (const [i, t] of threads.entries()) {
    if (!isObject(t)) bad(`thread ${i} is not an object`);
    if (!(THREAD_KINDS as readonly unknown[]).includes(t["kind"])) bad(`thread ${i} has an unknown kind`);
    if (typeof t["rate"] !== "number" || !(t["rate"] >= 0 && t["rate"] <= 1e6)) bad(`thread ${i} has a rate outside [0, 1e6]`);
    const prng = t["prng"];
    if (!Array.isArray(prng) || prng.length !== 4 || !prng.every(isWord32)) bad(`thread ${i} has no PRNG state of four 32-bit words`);
    if (!isU32(t["cursor"]) || (t["cursor"] as number) >= pages + 1) bad(`thread ${i} has a cursor outside the guest`);
    if (typeof t["ops"] !== "number" || !Number.isSafeInteger(t["ops"]) || (t["ops"] as number) < 0) bad(`thread ${i} has a bad op count`);
  }
  return v as unknown as DeviceState;
}

/** Constant-time token comparison (a wrong token takes as long whatever its prefix). */
export function tokensEqual(a: string, b: string): boolean {
  const x = Buffer.from(a, "utf8");
  const y = Buffer.from(b, "utf8");
  return x.byteLength === y.byteLength && timingSafeEqual(x, y);
}

/** A validated PAGE frame. */
export interface PageFrame {
  page: number;
  kind: PageKind;
  /** null: a zero page (header only). */
  data: Uint8Array | null;
}

/** A validated PAGES frame: `n` pages from `first`; zero(i) says page first+i is zeros. */
export interface PagesFrame {
  first: number;
  n: number;
  kind: PageKind;
  /** The zero bitmap (bit i of word i >> 5). */
  zeroBits: Uint32Array;
  /** The non-zero pages' bytes, in order. */
  data: Uint8Array;
}

export function isZeroInRun(r: PagesFrame, i: number): boolean {
  return ((r.zeroBits[i >>> 5]! >>> (i & 31)) & 1) === 1;
}

// --- the destination's side -------------------------------------------------------------

/**
 * awaiting-hello: nothing but an authenticated HELLO.
 * precopy: PAGE (precopy, stop-copy), ROUND_END, DISCARD (hybrid: once ahead of switchover,
 *   once at it), DEVICE_STATE.
 * postcopy: the guest runs here with missing pages. PAGE (demand: only for a page requested
 *   and not yet answered; background), COMPLETE.
 * resumed (precopy's end) and complete: nothing more may arrive.
 */
export type DestProtocolState = "awaiting-hello" | "precopy" | "postcopy" | "resumed" | "complete";

export class DestProtocol {
  #state: DestProtocolState = "awaiting-hello";
  #pages = 0;
  #strategy: Hello["strategy"] | null = null;
  readonly #expectedToken: string;
  readonly #expectedPages: number;
  readonly #expectedSeed: number;
  #discards = 0;
  #switchoverDiscard = false;
  /** Demand requests sent and not yet answered by a DEMAND page, per page. */
  #requested: Uint8Array | null = null;
  #outstanding = 0;
  #preempt: "none" | "expected" | "attached" = "none";
  #demandReceived = 0;
  #demandExpected = -1;

  constructor(expected: { token: string; pages: number; seed: number }) {
    this.#expectedToken = expected.token;
    this.#expectedPages = expected.pages;
    this.#expectedSeed = expected.seed;
  }

  get state(): DestProtocolState {
    return this.#state;
  }

  /** Demand requests still waiting for their page. */
  get outstandingRequests(): number {
    return this.#outstanding;
  }

  /** We asked the source for `page`: a DEMAND page for it becomes valid (once). */
  requested(page: number): void {
    if (this.#requested === null || this.#requested[page] === 1) return;
    this.#requested[page] = 1;
    this.#outstanding++;
  }

  #violation(f: Frame, detail: string): ProtocolViolation {
    return new ProtocolViolation(frameName(f.type), this.#state, detail);
  }

  helloFrame(f: Frame): Hello {
    if (this.#state !== "awaiting-hello") throw this.#violation(f, "a second HELLO would reset the migration");
    const h = parseHello(f, this.#state);
    if (!tokensEqual(h.token, this.#expectedToken)) throw this.#violation(f, "wrong token (the peer is not the source this destination was given)");
    if (h.pages !== this.#expectedPages || h.seed !== this.#expectedSeed) {
      throw this.#violation(f, `guest mismatch: source has ${h.pages} pages (seed ${h.seed}), we have ${this.#expectedPages} (seed ${this.#expectedSeed})`);
    }
    if (h.channel !== "main") throw this.#violation(f, "a preempt channel before the main connection");
    this.#pages = h.pages;
    this.#strategy = h.strategy;
    this.#requested = new Uint8Array(h.pages);
    this.#preempt = h.preempt ? "expected" : "none";
    this.#state = "precopy";
    return h;
  }

  /** Whether the main HELLO announced a preempt connection that has not arrived yet. */
  get awaitingPreempt(): boolean {
    return this.#preempt === "expected";
  }

  /** The HELLO of a second connection: valid once, as the announced preempt channel, with the token. */
  preemptHelloFrame(f: Frame): Hello {
    const st = `${this.#state}, preempt ${this.#preempt}`;
    const bad = (what: string): ProtocolViolation => new ProtocolViolation("HELLO", st, what);
    const h = parseHello(f, st);
    if (!tokensEqual(h.token, this.#expectedToken)) throw bad("wrong token (the peer is not the source this destination was given)");
    if (h.channel !== "preempt") throw bad("a second main connection (a source is already connected)");
    if (this.#preempt !== "expected") throw bad(this.#preempt === "none" ? "no preempt channel was announced" : "a second preempt channel");
    if (h.pages !== this.#pages || h.seed !== this.#expectedSeed) throw bad("guest mismatch with the main connection");
    this.#preempt = "attached";
    return h;
  }

  /** Only demand pages travel on the preempt channel. */
  preemptFrame(f: Frame): PageFrame {
    if (f.type !== FRAME.PAGE || pageKindOf(f.flags) !== PAGE_KIND.DEMAND) throw new ProtocolViolation(frameName(f.type), `${this.#state}, preempt channel`, "only demand pages travel on the preempt channel");
    return this.pageFrame(f);
  }

  pageFrame(f: Frame): PageFrame {
    const st = this.#state;
    // After COMPLETE only the demand pages it counted may still arrive (on the preempt channel).
    const lateDemand = st === "complete" && pageKindOf(f.flags) === PAGE_KIND.DEMAND && this.#demandReceived < this.#demandExpected;
    if (st !== "precopy" && st !== "postcopy" && !lateDemand) throw this.#violation(f, "no page is expected");
    const kind = pageKindOf(f.flags);
    if ((f.flags & ~(PAGE_ZERO | 0x0f)) !== 0 || kind < PAGE_KIND.PRECOPY || kind > PAGE_KIND.BACKGROUND) throw this.#violation(f, `unknown flags 0x${f.flags.toString(16)}`);
    if (f.page >= this.#pages) throw this.#violation(f, `page ${f.page} is outside the guest (${this.#pages} pages)`);
    const zero = (f.flags & PAGE_ZERO) !== 0;
    if (zero && f.payload.byteLength !== 0) throw this.#violation(f, `zero page ${f.page} carries ${f.payload.byteLength} bytes`);
    if (!zero && f.payload.byteLength !== 4096) throw this.#violation(f, `page ${f.page} carries ${f.payload.byteLength} bytes, not 4096`);
    if (f.aux !== 0) throw this.#violation(f, `aux is ${f.aux}, not 0`);
    if (st === "precopy" && kind !== PAGE_KIND.PRECOPY && kind !== PAGE_KIND.STOP_COPY) throw this.#violation(f, `page ${f.page} of postcopy kind ${kind} before the switchover`);
    if (st !== "precopy") {
      if (kind !== PAGE_KIND.DEMAND && kind !== PAGE_KIND.BACKGROUND) throw this.#violation(f, `page ${f.page} of precopy kind ${kind} after the guest resumed here`);
      if (kind === PAGE_KIND.DEMAND) {
        if (this.#requested![f.page] !== 1) throw this.#violation(f, `demand page ${f.page} was not requested (or was already answered)`);
        this.#requested![f.page] = 2;
        this.#outstanding--;
        this.#demandReceived++;
      }
    }
    return { page: f.page, kind, data: zero ? null : f.payload };
  }

  pagesFrame(f: Frame): PagesFrame {
    const st = this.#state;
    if (st !== "precopy" && st !== "postcopy") throw this.#violation(f, "no page is expected");
    const kind = f.flags as PageKind;
    if (st === "precopy" && kind !== PAGE_KIND.PRECOPY && kind !== PAGE_KIND.STOP_COPY) throw this.#violation(f, `a run of kind ${f.flags} before the switchover`);
    if (st === "postcopy" && kind !== PAGE_KIND.BACKGROUND) throw this.#violation(f, `a run of kind ${f.flags} after the guest resumed here (only background runs)`);
    const n = f.aux;
    if (n < 1 || n > MAX_RUN_PAGES) throw this.#violation(f, `a run of ${n} pages (1 to ${MAX_RUN_PAGES})`);
    if (f.page >= this.#pages || f.page + n > this.#pages) throw this.#violation(f, `pages ${f.page}..${f.page + n - 1} are outside the guest (${this.#pages} pages)`);
    const bm = zeroBitmapBytes(n);
    if (f.payload.byteLength < bm) throw this.#violation(f, `payload of ${f.payload.byteLength} bytes has no room for the zero bitmap`);
    const zeroBits = new Uint32Array(bm / 4);
    const pl = f.payload;
    let zeros = 0;
    for (let w = 0; w < zeroBits.length; w++) {
      const at = w * 4;
      // As an int32 (bit 31 makes it negative): stored into the Uint32Array unchanged, and no
      // unsigned value past 2^31 for V8 to deoptimize on.
      const bits = pl[at]! | (pl[at + 1]! << 8) | (pl[at + 2]! << 16) | (pl[at + 3]! << 24);
      // The bits of pages in the run, as an int32 (for 31 pages (1 << 31) - 1 would overflow one).
      const rem = n - w * 32;
      const valid = rem >= 32 ? -1 : ~(-1 << rem);
      if ((bits & ~valid) !== 0) throw this.#violation(f, "zero bits set past the end of the run");
      zeroBits[w] = bits;
      // Bit 31 counted apart: b - 1 of the int32 -2^31 would overflow (and V8 deoptimize on it).
      if (bits < 0) zeros++;
      for (let b = bits & 0x7fff_ffff; b !== 0; b &= b - 1) zeros++;
    }
    const expect = bm + (n - zeros) * 4096;
    if (f.payload.byteLength !== expect) throw this.#violation(f, `payload of ${f.payload.byteLength} bytes for ${n - zeros} data pages (expected ${expect})`);
    return { first: f.page, n, kind, zeroBits, data: f.payload.subarray(bm) };
  }

  roundEndFrame(f: Frame): void {
    if (this.#state !== "precopy") throw this.#violation(f, "ROUND_END outside precopy");
    if (f.payload.byteLength !== 0) throw this.#violation(f, "ROUND_END carries a payload");
  }

  discardFrame(f: Frame): { pages: Uint32Array; atSwitchover: boolean } {
    if (this.#state !== "precopy") throw this.#violation(f, "DISCARD once the guest runs here would drop its memory");
    if (this.#strategy !== "hybrid") throw this.#violation(f, `DISCARD in a ${this.#strategy} migration`);
    const atSwitchover = (f.flags & DISCARD_AT_SWITCHOVER) !== 0;
    if ((f.flags & ~DISCARD_AT_SWITCHOVER) !== 0) throw this.#violation(f, `unknown flags 0x${f.flags.toString(16)}`);
    if (this.#switchoverDiscard) throw this.#violation(f, "a DISCARD after the switchover DISCARD");
    if (!atSwitchover && this.#discards > 0) throw this.#violation(f, "a second DISCARD ahead of the switchover");
    const n = f.payload.byteLength;
    if (n % 4 !== 0 || n / 4 !== f.aux) throw this.#violation(f, `payload of ${n} bytes for ${f.aux} pages`);
    const dv = new DataView(f.payload.buffer, f.payload.byteOffset, n);
    const pages = new Uint32Array(n / 4);
    for (let i = 0; i < pages.length; i++) {
      const p = dv.getUint32(i * 4, true);
      if (p >= this.#pages) throw this.#violation(f, `discard of page ${p} outside the guest`);
      pages[i] = p;
    }
    this.#discards++;
    if (atSwitchover) this.#switchoverDiscard = true;
    return { pages, atSwitchover };
  }

  deviceStateFrame(f: Frame): DeviceState {
    if (this.#state !== "precopy") throw this.#violation(f, "a second DEVICE_STATE (the guest already has its state)");
    const s = parseDeviceState(f, this.#state, this.#pages);
    if (s.mode === "postcopy" && this.#strategy === "precopy") throw this.#violation(f, "postcopy mode in a precopy migration");
    if (s.mode === "resume" && this.#strategy !== "precopy") throw this.#violation(f, `resume mode in a ${this.#strategy} migration`);
    this.#state = s.mode === "postcopy" ? "postcopy" : "resumed";
    return s;
  }

  /** COMPLETE: `page` counts the demand pages the source sent (some may still be on the preempt channel). */
  completeFrame(f: Frame): number {
    if (this.#state !== "postcopy") throw this.#violation(f, "COMPLETE outside postcopy");
    if (f.aux !== this.#pages || f.payload.byteLength !== 0) throw this.#violation(f, `COMPLETE for ${f.aux} pages, the guest has ${this.#pages}`);
    if (f.page > this.#demandReceived + this.#outstanding) throw this.#violation(f, `counts ${f.page} demand pages, more than the ${this.#demandReceived + this.#outstanding} requested`);
    this.#demandExpected = f.page;
    this.#state = "complete";
    return f.page;
  }

  /** Demand pages received so far. */
  get demandReceived(): number {
    return this.#demandReceived;
  }

  /** Any frame a source never sends. */
  unexpected(f: Frame): ProtocolViolation {
    return this.#violation(f, "the source never sends this frame");
  }
}

// --- the source's side -------------------------------------------------------------------

/**
 * awaiting-hello-ack: HELLO sent, only HELLO_ACK may come.
 * precopy: nothing but DISCARD_ACK for an outstanding DISCARD.
 * switched-over: DEVICE_STATE sent: RESUMED (once), REQUEST (postcopy: a page of the guest), DONE
 *   (after RESUMED).
 * done: DONE received, nothing more.
 */
export type SourceProtocolState = "connecting" | "awaiting-hello-ack" | "precopy" | "switched-over" | "done";

export class SourceProtocol {
  #state: SourceProtocolState = "connecting";
  readonly #pages: number;
  #discardOutstanding: number | null = null;
  #mode: DeviceState["mode"] | null = null;
  #resumed = false;
  #preempt: "none" | "hello-sent" | "open" = "none";

  constructor(pages: number) {
    this.#pages = pages;
  }

  get state(): SourceProtocolState {
    return this.#state;
  }

  sentHello(): void {
    this.#state = "awaiting-hello-ack";
  }

  sentPreemptHello(): void {
    this.#preempt = "hello-sent";
  }

  /** Checks a frame from the destination's preempt connection; returns the page of a valid REQUEST. */
  acceptPreempt(f: Frame): number {
    const st = `${this.#state}, preempt channel`;
    if (f.type === FRAME.HELLO_ACK) {
      if (this.#preempt !== "hello-sent") throw new ProtocolViolation("HELLO_ACK", st, "HELLO_ACK without a pending HELLO");
      this.#empty(f);
      this.#preempt = "open";
      return -1;
    }
    if (f.type !== FRAME.REQUEST) throw new ProtocolViolation(frameName(f.type), st, "only REQUEST travels on the preempt channel");
    return this.accept(f);
  }

  sentDiscard(count: number): void {
    this.#discardOutstanding = count;
  }

  sentDeviceState(mode: DeviceState["mode"]): void {
    this.#state = "switched-over";
    this.#mode = mode;
  }

  #violation(f: Frame, detail: string): ProtocolViolation {
    return new ProtocolViolation(frameName(f.type), this.#state, detail);
  }

  #empty(f: Frame): void {
    if (f.payload.byteLength !== 0) throw this.#violation(f, `carries a payload of ${f.payload.byteLength} bytes`);
  }

  /** Checks a frame from the destination; returns the page of a valid REQUEST, else -1. */
  accept(f: Frame): number {
    const st = this.#state;
    switch (f.type) {
      case FRAME.HELLO_ACK:
        if (st !== "awaiting-hello-ack") throw this.#violation(f, "HELLO_ACK without a pending HELLO");
        this.#empty(f);
        this.#state = "precopy";
        return -1;
      case FRAME.DISCARD_ACK:
        if (st !== "precopy" || this.#discardOutstanding === null) throw this.#violation(f, "no DISCARD is waiting for its acknowledgement");
        if (f.aux !== this.#discardOutstanding) throw this.#violation(f, `acknowledges ${f.aux} pages, the DISCARD had ${this.#discardOutstanding}`);
        this.#empty(f);
        this.#discardOutstanding = null;
        return -1;
      case FRAME.RESUMED:
        if (st !== "switched-over" || this.#resumed) throw this.#violation(f, this.#resumed ? "a second RESUMED" : "RESUMED before the device state was sent");
        this.#empty(f);
        this.#resumed = true;
        return -1;
      case FRAME.REQUEST:
        if (st !== "switched-over" || this.#mode !== "postcopy") throw this.#violation(f, "REQUEST outside postcopy");
        if (f.page >= this.#pages) throw this.#violation(f, `request for page ${f.page} outside the guest (${this.#pages} pages)`);
        if (f.aux !== 1) throw this.#violation(f, `request for ${f.aux} pages (one per frame)`);
        this.#empty(f);
        return f.page;
      case FRAME.DONE:
        if (st !== "switched-over" || !this.#resumed) throw this.#violation(f, "DONE before the guest resumed on the destination");
        this.#empty(f);
        this.#state = "done";
        return -1;
      default:
        throw this.#violation(f, "the destination never sends this frame");
    }
  }
}
