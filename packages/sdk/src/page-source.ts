/**
 * Page sources: where a page's bytes come from. A source answers "the bytes of
 * [offset, offset+length)" in the app's source space (fault.offset is in that space), or null
 * for "zeros" (a hole), which lets the handler map the zero page instead of copying zeros.
 */
import { ErrnoError, type Process } from "@uffd/kernel";
import { SEEK_DATA } from "@uffd/kernel/uapi";

/** Where a handler's pages come from: bytes at an offset of the registered range's source (null: no data there, zero-fill). */
export interface PageSource {
  /** `length` is a whole number of pages. May answer synchronously (the fast path) or with a promise. */
  read(offset: number, length: number): Uint8Array | null | Promise<Uint8Array | null>;
}

/** A local buffer: offset 0 is its first byte; beyond its end reads as zeros. Answers synchronously, without copying. */
export class BufferSource implements PageSource {
  /** The image. */
  readonly bytes: Uint8Array;

  constructor(bytes: Uint8Array) {
    this.bytes = bytes;
  }

  read(offset: number, length: number): Uint8Array | null {
    const b = this.bytes;
    if (offset >= b.length) return null;
    if (offset + length <= b.length) return b.subarray(offset, offset + length);
    const out = new Uint8Array(length);
    out.set(b.subarray(offset));
    return out;
  }
}

/**
 * A memfd (shmem) in the handling process: bytes come from its page cache via pread, holes
 * (SEEK_DATA) read as null. For minor faults on a mapping of the same memfd, the bytes are
 * already in the page cache and serve() resolves them with UFFDIO_CONTINUE, without reading.
 */
export class MemfdSource implements PageSource {
  /** The process owning the memfd. */
  readonly proc: Process;
  /** The memfd. */
  readonly fd: number;
  /** The source offset of the memfd's byte 0. */
  readonly base: number;

  constructor(proc: Process, fd: number, base = 0) {
    this.proc = proc;
    this.fd = fd;
    this.base = base;
  }

  async read(offset: number, length: number): Promise<Uint8Array | null> {
    const at = offset - this.base;
    if (at < 0) return null;
    let data: number;
    try {
      data = await this.proc.lseek(this.fd, at, SEEK_DATA);
    } catch (e) {
      if (e instanceof ErrnoError && e.code === "ENXIO") return null; // nothing but holes from here to i_size
      throw e;
    }
    if (data >= at + length) return null;
    const bytes = await this.proc.pread(this.fd, length, at);
    if (bytes.length === length) return bytes;
    const out = new Uint8Array(length);
    out.set(bytes);
    return out;
  }
}

/** Options of RemoteSource. */
export interface RemoteSourceOptions {
  /**
   * Simulated latency of one request on the kernel's virtual clock (a poll with no fds in
   * `proc`), so a "remote" run stays deterministic and its latency shows in virtual-time metrics.
   */
  latencyMs?: number;
  /** Where to sleep for latencyMs (required with it). */
  proc?: Process;
}

/**
 * An async remote function (an object store, a page server). Concurrent requests for the same
 * span share one call, so a demand fault and a prefetch never fetch a page twice.
 */
export class RemoteSource implements PageSource {
  readonly #fetch: (offset: number, length: number) => Promise<Uint8Array | null>;
  readonly #latencyMs: number;
  readonly #proc: Process | null;
  readonly #inflight = new Map<string, Promise<Uint8Array | null>>();
  /** Calls made to the remote function. */
  requests = 0;
  /** Bytes the remote function returned. */
  bytes = 0;

  constructor(fetch: (offset: number, length: number) => Promise<Uint8Array | null>, options: RemoteSourceOptions = {}) {
    this.#fetch = fetch;
    this.#latencyMs = options.latencyMs ?? 0;
    this.#proc = options.proc ?? null;
    if (this.#latencyMs > 0 && this.#proc === null) throw new TypeError("RemoteSource: latencyMs needs `proc` to sleep on the kernel's virtual clock");
  }

  read(offset: number, length: number): Promise<Uint8Array | null> {
    const key = `${offset}:${length}`;
    const pending = this.#inflight.get(key);
    if (pending !== undefined) return pending;
    const p = this.#request(offset, length).finally(() => this.#inflight.delete(key));
    this.#inflight.set(key, p);
    return p;
  }

  async #request(offset: number, length: number): Promise<Uint8Array | null> {
    this.requests++;
    if (this.#latencyMs > 0) await this.#proc!.poll([], this.#latencyMs);
    const bytes = await this.#fetch(offset, length);
    if (bytes !== null && bytes.length !== length) {
      throw new RangeError(`RemoteSource: asked for ${length} bytes at offset ${offset}, got ${bytes.length}`);
    }
    this.bytes += bytes?.length ?? 0;
    return bytes;
  }
}
