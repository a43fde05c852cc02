/**
 * The migration stream: length-prefixed binary frames over one TCP connection.
 *
 *   offset 0  u32  length of everything after this field (12 + payload bytes)
 *          4  u8   type (FRAME)
 *          5  u8   flags (for PAGE: the kind in the low nibble, PAGE_ZERO for a zero page)
 *          6  u16  reserved, 0
 *          8  u32  page number (PAGE, REQUEST) or round number (ROUND_END)
 *         12  u32  aux: a count (ROUND_END, COMPLETE) or 0
 *         16  ...  payload: 4096 page bytes, a JSON document, or a list of u32 page numbers
 *
 * All integers are little-endian. A zero page travels as a header alone (QEMU and CRIU do the
 * same), so a page of zeros costs 16 bytes on the wire.
 *
 * Conversation: source HELLO -> destination HELLO_ACK; precopy rounds of PAGE frames, each
 * closed by ROUND_END; at switchover an optional DISCARD (hybrid) and DEVICE_STATE; the
 * destination answers RESUMED once its guest runs. A DISCARD sent ahead of switchover is
 * acknowledged with DISCARD_ACK, so its cost stays out of the downtime. In postcopy the destination sends REQUEST
 * for faulting pages and the source answers with PAGE (kind DEMAND) ahead of its background
 * push; COMPLETE ends the stream and DONE acknowledges it. ERROR carries a UTF-8 reason.
 */

export const FRAME = {
  HELLO: 1,
  HELLO_ACK: 2,
  PAGE: 3,
  ROUND_END: 4,
  DISCARD: 5,
  DEVICE_STATE: 6,
  RESUMED: 7,
  REQUEST: 8,
  COMPLETE: 9,
  DONE: 10,
  ERROR: 11,
  DISCARD_ACK: 12,
  PAGES: 13,
} as const;
export type FrameType = (typeof FRAME)[keyof typeof FRAME];

/** Why a page was sent: the kinds the metrics count separately. */
export const PAGE_KIND = {
  PRECOPY: 1,
  STOP_COPY: 2,
  DEMAND: 3,
  BACKGROUND: 4,
} as const;
export type PageKind = (typeof PAGE_KIND)[keyof typeof PAGE_KIND];
export const PAGE_KIND_NAMES: Readonly<Record<PageKind, string>> = {
  1: "precopy",
  2: "stop-copy",
  3: "demand",
  4: "background",
};

/** DISCARD flag: sent at switchover (in the downtime), not ahead of it. */
export const DISCARD_AT_SWITCHOVER = 0x01;

/** Most pages one PAGES frame may carry (a 256 KiB run). */
export const MAX_RUN_PAGES = 64;

/** Bytes of a PAGES frame's zero bitmap for a run of `n` pages (whole u32 words). */
export function zeroBitmapBytes(n: number): number {
  return ((n + 31) >>> 5) * 4;
}

/**
 * A PAGES frame: a run of `n` contiguous pages from `first`. Payload: a bitmap (bit i set = page
 * first+i is all zeros and carries no bytes), then the bytes of the other pages in order. The
 * parts are referenced, not copied (a contiguous read of the run is one part).
 */
export function encodePagesFrame(kind: PageKind, first: number, n: number, zeroBits: Uint32Array, data: readonly Uint8Array[]): Uint8Array[] {
  const bitmap = new Uint8Array(zeroBits.buffer, zeroBits.byteOffset, zeroBitmapBytes(n));
  let len = bitmap.byteLength;
  for (const d of data) len += d.byteLength;
  return [encodeHeader(FRAME.PAGES, kind, first, n, len), bitmap, ...data];
}

/** PAGE flag: the page is all zeros and no payload follows. */
export const PAGE_ZERO = 0x80;
const PAGE_KIND_MASK = 0x0f;

export const HEADER_SIZE = 16;
/** Refuse frames larger than this: a corrupt length must not make us buffer gigabytes. */
export const MAX_FRAME_PAYLOAD = 64 * 1024 * 1024;
export const PROTOCOL_VERSION = 1;

export interface Frame {
  type: number;
  flags: number;
  page: number;
  aux: number;
  /** A view into the receive buffer; copy it if it must outlive the next chunk. */
  payload: Uint8Array;
  /**
   * The payload was reassembled into a buffer of the reader's pool: hand it back with
   * `FrameBufferPool.give(payload)` once nothing reads it any more (or drop it: the GC takes it).
   */
  pooled?: boolean;
}

/**
 * Reusable buffers for frames that span socket reads (a 256 KiB run arrives as several 64 KiB
 * chunks and must be made contiguous before it is installed). Allocating one ArrayBuffer per such
 * frame made the receiver's garbage collector run a full collection every few dozen megabytes
 * (V8 collects when external memory grows), so the receiver takes them from here and gives them
 * back once the frame is handled. Bounded: past `keep` free buffers, given ones are dropped.
 */
export class FrameBufferPool {
  /** Bytes of every pooled buffer: frames up to this size are reassembled into one. */
  readonly size: number;
  readonly #keep: number;
  readonly #free: ArrayBuffer[] = [];
  /** Buffers allocated because none was free (for tests and metrics). */
  allocated = 0;

  constructor(size: number, keep = 64) {
    this.size = size;
    this.#keep = keep;
  }

  /** A buffer of `n` bytes (n <= size) whose contents are undefined. */
  take(n: number): Uint8Array {
    const b = this.#free.pop();
    if (b !== undefined) return new Uint8Array(b, 0, n);
    this.allocated++;
    return new Uint8Array(new ArrayBuffer(this.size), 0, n);
  }

  /** Returns a buffer (any view of it) from take(); the caller must not touch it afterwards. */
  give(view: Uint8Array): void {
    const b = view.buffer;
    if (b instanceof ArrayBuffer && b.byteLength === this.size && this.#free.length < this.#keep && !this.#free.includes(b)) this.#free.push(b);
  }

  /** Free buffers held right now. */
  get free(): number {
    return this.#free.length;
  }
}

export function pageKindOf(flags: number): PageKind {
  return (flags & PAGE_KIND_MASK) as PageKind;
}

/** The 16-byte header of a frame whose payload has `payloadLen` bytes. */
export function encodeHeader(type: FrameType, flags: number, page: number, aux: number, payloadLen: number): Uint8Array {
  const out = new Uint8Array(HEADER_SIZE);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, HEADER_SIZE - 4 + payloadLen, true);
  dv.setUint8(4, type);
  dv.setUint8(5, flags);
  dv.setUint32(8, page >>> 0, true);
  dv.setUint32(12, aux >>> 0, true);
  return out;
}

/** A frame as the parts the link writes back to back: the header, then the payload if any. */
export type EncodedFrame = readonly [Uint8Array] | readonly [Uint8Array, Uint8Array];

/** Encodes one frame; the payload is referenced, not copied. */
export function encodeFrame(type: FrameType, flags: number, page: number, aux: number, payload?: Uint8Array): EncodedFrame {
  const head = encodeHeader(type, flags, page, aux, payload?.byteLength ?? 0);
  return payload === undefined || payload.byteLength === 0 ? [head] : [head, payload];
}

/** The frame as one contiguous buffer (tests, and anything that wants a single write). */
export function frameBytes(frame: EncodedFrame): Uint8Array {
  if (frame.length === 1) return frame[0];
  const out = new Uint8Array(frame[0].byteLength + frame[1].byteLength);
  out.set(frame[0]);
  out.set(frame[1], frame[0].byteLength);
  return out;
}

export function encodeJson(type: FrameType, value: unknown): EncodedFrame {
  return encodeFrame(type, 0, 0, 0, new TextEncoder().encode(JSON.stringify(value)));
}

export function decodeJson<T>(frame: Frame): T {
  return JSON.parse(new TextDecoder().decode(frame.payload)) as T;
}

/** A list of page numbers as a payload (DISCARD). */
export function encodePageList(pages: Uint32Array): Uint8Array {
  const out = new Uint8Array(pages.length * 4);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < pages.length; i++) dv.setUint32(i * 4, pages[i]!, true);
  return out;
}

export function decodePageList(payload: Uint8Array): Uint32Array {
  const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const out = new Uint32Array(payload.byteLength >>> 2);
  for (let i = 0; i < out.length; i++) out[i] = dv.getUint32(i * 4, true);
  return out;
}

/** The little-endian u32 at `at` in `b`. */
function u32le(b: Uint8Array, at: number): number {
  return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
}

/** Frames smaller than this are reassembled into a fresh buffer (cheap), not a pooled one. */
const POOL_MIN_FRAME = 16 * 1024;

/** Thrown when the byte stream cannot be a valid frame sequence. */
export class ProtocolError extends Error {
  override name = "ProtocolError";
}

/**
 * Reassembles frames from the chunks a socket delivers, however they are split. Frames that
 * sit wholly inside one chunk are returned as views (no copy).
 */
export class FrameReader {
  #chunks: Uint8Array[] = [];
  #buffered = 0;
  /** The largest payload accepted; a longer frame is refused from its header, before buffering it. */
  maxPayload: number;
  /** Where frames that span chunks are reassembled (null: a new buffer each time). */
  pool: FrameBufferPool | null;

  constructor(maxPayload = MAX_FRAME_PAYLOAD, pool: FrameBufferPool | null = null) {
    this.maxPayload = maxPayload;
    this.pool = pool;
  }

  get buffered(): number {
    return this.#buffered;
  }

  push(chunk: Uint8Array): Frame[] {
    this.#chunks.push(chunk);
    this.#buffered += chunk.byteLength;
    const frames: Frame[] = [];
    for (;;) {
      const frame = this.#next();
      if (frame === null) return frames;
      frames.push(frame);
    }
  }

  #next(): Frame | null {
    if (this.#buffered < HEADER_SIZE) return null;
    let head = this.#chunks[0]!;
    if (head.byteLength < HEADER_SIZE) head = this.#coalesce(HEADER_SIZE);
    // The header's fields read byte by byte: no DataView per frame on the receive path.
    const len = u32le(head, 0);
    if (len < HEADER_SIZE - 4) throw new ProtocolError(`bad frame length ${len} (a header alone is ${HEADER_SIZE - 4})`);
    if (len - (HEADER_SIZE - 4) > this.maxPayload) throw new ProtocolError(`bad frame length ${len}: a payload of ${len - (HEADER_SIZE - 4)} bytes exceeds the limit of ${this.maxPayload}`);
    const total = len + 4;
    if (this.#buffered < total) return null;
    let pooled = false;
    if (head.byteLength < total) {
      pooled = this.pool !== null && total >= POOL_MIN_FRAME && total <= this.pool.size;
      head = this.#coalesce(total, pooled);
    }
    const frame: Frame = {
      type: head[4]!,
      flags: head[5]!,
      page: u32le(head, 8),
      aux: u32le(head, 12),
      payload: head.subarray(HEADER_SIZE, total),
    };
    if (pooled) frame.pooled = true;
    this.#consume(total);
    return frame;
  }

  /**
   * Copies the first `n` buffered bytes into one chunk (the rest of the last chunk stays a view),
   * a buffer of the pool if `pooled`.
   */
  #coalesce(n: number, pooled = false): Uint8Array {
    const merged = pooled ? this.pool!.take(n) : new Uint8Array(n);
    let at = 0;
    while (at < n) {
      const c = this.#chunks[0]!;
      const take = Math.min(c.byteLength, n - at);
      merged.set(take === c.byteLength ? c : c.subarray(0, take), at);
      at += take;
      if (take === c.byteLength) this.#chunks.shift();
      else this.#chunks[0] = c.subarray(take);
    }
    this.#chunks.unshift(merged);
    return merged;
  }

  #consume(n: number): void {
    const head = this.#chunks[0]!;
    this.#buffered -= n;
    if (head.byteLength === n) this.#chunks.shift();
    else this.#chunks[0] = head.subarray(n);
  }
}
