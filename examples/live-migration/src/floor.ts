/**
 * The demand-fault floor: the best round trip any design of two Node processes can give a demand
 * page on this host, measured the way the migration moves one. Two bare Node processes (the
 * migration's children's node flags and malloc settings, no simulated kernel): a "source" pushes
 * bulk bytes to a "destination" on one loopback connection as fast as TCP takes them (1 MiB
 * writes, waiting for "drain" when the socket is full), while on a second connection (the
 * postcopy-preempt channel's shape, TCP_NODELAY on both ends) the destination sends an 8-byte
 * request and the source answers with a 4 KiB page. The destination times each request from its
 * write to the last byte of the answer, first with the bulk connection running, then with it
 * stopped. The migration's demand-fault latency adds the simulated kernels' work (delivering the
 * fault, reading and installing the page) to the same two crossings.
 *
 *   tsx src/floor.ts [--samples 1000] [--gap-ms 1] [--bulk-mbps 0 (unpaced)]
 *
 * A measurement of the machine at the moment it runs; `measureFaultFloor()` is what the
 * migration bench (bench.ts) calls beside its loopback throughput.
 */
import { fork, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createRequire } from "node:module";
import { connect, createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { loadavg } from "node:os";
import { fileURLToPath, pathToFileURL } from "node:url";
import { LatencyRecorder } from "./metrics.ts";
import { CHILD_MALLOC_TUNABLES, CHILD_V8_FLAGS } from "./orchestrator.ts";

export const FLOOR_PAGE_BYTES = 4096;
/** A request: kind (u32 LE) and sequence number (u32 LE). */
export const FLOOR_REQUEST_BYTES = 8;
/** An answer: the request's sequence number (u32 LE), the page's length (u32 LE), the page. */
export const FLOOR_RESPONSE_BYTES = 8 + FLOOR_PAGE_BYTES;

/** What a request asks of the source. */
export const FLOOR_REQ = {
  /** Answer with page `seq`. */
  PAGE: 1,
  /** Stop the bulk push: finish the current write and end the bulk connection. */
  STOP_BULK: 2,
} as const;
export type FloorRequestKind = (typeof FLOOR_REQ)[keyof typeof FLOOR_REQ];

export function encodeFloorRequest(kind: FloorRequestKind, seq: number): Buffer {
  const b = Buffer.allocUnsafe(FLOOR_REQUEST_BYTES);
  b.writeUInt32LE(kind, 0);
  b.writeUInt32LE(seq >>> 0, 4);
  return b;
}

/** The byte every position of page `seq` holds (so the destination checks what it got). */
export function floorPageByte(seq: number): number {
  return (seq * 131 + 7) & 0xff;
}

/** Writes the answer to request `seq` into `into` (FLOOR_RESPONSE_BYTES long) and returns it. */
export function encodeFloorResponse(seq: number, into: Buffer = Buffer.allocUnsafe(FLOOR_RESPONSE_BYTES)): Buffer {
  if (into.byteLength !== FLOOR_RESPONSE_BYTES) throw new RangeError(`a floor answer is ${FLOOR_RESPONSE_BYTES} bytes, not ${into.byteLength}`);
  into.writeUInt32LE(seq >>> 0, 0);
  into.writeUInt32LE(FLOOR_PAGE_BYTES, 4);
  into.fill(floorPageByte(seq), 8);
  return into;
}

/**
 * Splits a byte stream into records of `size` bytes, whatever the chunks' boundaries: a record
 * inside one chunk is a view of it, one that spans chunks is copied together.
 */
export class FixedRecordReader {
  readonly size: number;
  #partial: Buffer;
  #have = 0;

  constructor(size: number) {
    if (!Number.isInteger(size) || size <= 0) throw new RangeError(`record size ${size}`);
    this.size = size;
    this.#partial = Buffer.allocUnsafe(size);
  }

  /** Bytes held of a record not yet complete. */
  get buffered(): number {
    return this.#have;
  }

  push(chunk: Uint8Array): Buffer[] {
    const out: Buffer[] = [];
    const c = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let at = 0;
    if (this.#have > 0) {
      const n = Math.min(this.size - this.#have, c.byteLength);
      c.copy(this.#partial, this.#have, 0, n);
      this.#have += n;
      at = n;
      if (this.#have < this.size) return out;
      out.push(this.#partial);
      this.#partial = Buffer.allocUnsafe(this.size);
      this.#have = 0;
    }
    for (; at + this.size <= c.byteLength; at += this.size) out.push(c.subarray(at, at + this.size));
    if (at < c.byteLength) {
      c.copy(this.#partial, 0, at);
      this.#have = c.byteLength - at;
    }
    return out;
  }
}

/** A request as the source reads it; throws on a kind it does not know. */
export function decodeFloorRequest(r: Uint8Array): { kind: FloorRequestKind; seq: number } {
  const b = Buffer.from(r.buffer, r.byteOffset, r.byteLength);
  const kind = b.readUInt32LE(0);
  if (kind !== FLOOR_REQ.PAGE && kind !== FLOOR_REQ.STOP_BULK) throw new Error(`floor: unknown request kind ${kind}`);
  return { kind, seq: b.readUInt32LE(4) };
}

/** An answer as the destination reads it: its sequence number, after checking every byte of the page. */
export function decodeFloorResponse(r: Uint8Array): number {
  const b = Buffer.from(r.buffer, r.byteOffset, r.byteLength);
  const seq = b.readUInt32LE(0);
  const len = b.readUInt32LE(4);
  if (len !== FLOOR_PAGE_BYTES) throw new Error(`floor: answer ${seq} says ${len} bytes, not ${FLOOR_PAGE_BYTES}`);
  const want = floorPageByte(seq);
  for (let i = 8; i < b.byteLength; i++) if (b[i] !== want) throw new Error(`floor: answer ${seq} has byte ${b[i]} at ${i - 8}, not ${want}`);
  return seq;
}

/**
 * The source's side of the preempt connection: answers each PAGE request at once, in order, and
 * calls `onStopBulk` for STOP_BULK. `write` gets each answer (a Buffer the caller may not keep).
 */
export class FloorResponder {
  readonly #reader = new FixedRecordReader(FLOOR_REQUEST_BYTES);
  readonly #write: (b: Buffer) => void;
  readonly #onStopBulk: () => void;
  answered = 0;

  constructor(write: (b: Buffer) => void, onStopBulk: () => void) {
    this.#write = write;
    this.#onStopBulk = onStopBulk;
  }

  push(chunk: Uint8Array): void {
    for (const r of this.#reader.push(chunk)) {
      const { kind, seq } = decodeFloorRequest(r);
      if (kind === FLOOR_REQ.STOP_BULK) {
        this.#onStopBulk();
        continue;
      }
      this.#write(encodeFloorResponse(seq));
      this.answered++;
    }
  }
}

export interface FloorPhase {
  /** Round trips timed (after the warm-up ones). */
  count: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
  maxUs: number;
}

export interface FaultFloor {
  /** With the bulk connection pushing. */
  loaded: FloorPhase;
  /** With the bulk connection stopped. */
  idle: FloorPhase;
  /** Bulk bytes per second the destination read while the loaded round trips were timed. */
  bulkBytesPerSec: number;
  /** os.loadavg()[0] when the probe started. */
  loadAverage: number;
}

export interface FloorOptions {
  /** Round trips timed in each phase (after `warmup` more that are not). */
  samples?: number;
  warmup?: number;
  /** Wait this long between an answer and the next request (a timer), in ms; 0: the next turn. */
  gapMs?: number;
  /** Bulk bytes the destination reads before the loaded phase starts. */
  bulkWarmupBytes?: number;
  /** Give up after this long, in ms. */
  timeoutMs?: number;
  /**
   * Pace the bulk push to this many bytes per second (a token bucket refilled by 1 ms timers,
   * writes of whole 64 KiB up to 1 MiB); 0: as fast as TCP takes them.
   */
  bulkBytesPerSec?: number;
}

const DEFAULTS: Required<FloorOptions> = { samples: 1000, warmup: 100, gapMs: 1, bulkWarmupBytes: 64 * 1024 * 1024, timeoutMs: 60_000, bulkBytesPerSec: 0 };

function phase(rec: LatencyRecorder, p90: number): FloorPhase {
  const s = rec.summary();
  return { count: s.count, p50Us: s.p50Us, p90Us: p90, p99Us: s.p99Us, maxUs: s.maxUs };
}

/**
 * The destination's side of the preempt connection: one request at a time; `onAnswer` gets each
 * answer's round trip in µs (from the request's write to the answer's last byte). Throws when an
 * answer is not for the request outstanding or its page is wrong.
 */
export class FloorRequester {
  readonly #reader = new FixedRecordReader(FLOOR_RESPONSE_BYTES);
  readonly #write: (b: Buffer) => void;
  readonly #now: () => number;
  #seq = 0;
  #sentAt = -1;

  constructor(write: (b: Buffer) => void, now: () => number = () => performance.now()) {
    this.#write = write;
    this.#now = now;
  }

  get outstanding(): boolean {
    return this.#sentAt >= 0;
  }

  request(): void {
    if (this.#sentAt >= 0) throw new Error("floor: a request is already outstanding");
    this.#seq++;
    this.#sentAt = this.#now();
    this.#write(encodeFloorRequest(FLOOR_REQ.PAGE, this.#seq));
  }

  /** The round trips (µs) of the answers completed by `chunk`. */
  push(chunk: Uint8Array): number[] {
    const out: number[] = [];
    for (const r of this.#reader.push(chunk)) {
      const seq = decodeFloorResponse(r);
      if (this.#sentAt < 0 || seq !== this.#seq) throw new Error(`floor: answer ${seq} while ${this.#sentAt < 0 ? "none" : this.#seq} was outstanding`);
      out.push((this.#now() - this.#sentAt) * 1000);
      this.#sentAt = -1;
    }
    return out;
  }
}

// --- the two processes ------------------------------------------------------------------------

type FloorMsg = { ev: "ports"; bulk: number; preempt: number } | { ev: "result"; floor: Omit<FaultFloor, "loadAverage"> } | { ev: "error"; message: string };

/** The source: connects both connections, pushes bulk bytes until told to stop, answers requests. */
async function runFloorSource(bulkPort: number, preemptPort: number, rate: number): Promise<void> {
  const bulk = connect({ host: "127.0.0.1", port: bulkPort });
  const pre = connect({ host: "127.0.0.1", port: preemptPort });
  await Promise.all([once(bulk, "connect"), once(pre, "connect")]);
  bulk.setNoDelay(true);
  pre.setNoDelay(true);
  let stopped = false;
  const chunk = Buffer.alloc(1 << 20, 7);
  let tokens = 0;
  let last = performance.now();
  const pump = (): void => {
    while (!stopped) {
      let part = chunk;
      if (rate > 0) {
        const now = performance.now();
        tokens = Math.min(tokens + ((now - last) * rate) / 1000, 4 * chunk.byteLength);
        last = now;
        const n = Math.min(chunk.byteLength, Math.floor(tokens / 65536) * 65536);
        if (n === 0) return void setTimeout(pump, 1);
        tokens -= n;
        part = chunk.subarray(0, n);
      }
      if (!bulk.write(part)) return void bulk.once("drain", pump);
    }
  };
  const responder = new FloorResponder(
    (b) => pre.write(b),
    () => {
      if (stopped) return;
      stopped = true;
      bulk.end();
    },
  );
  pre.on("data", (c: Buffer) => responder.push(c));
  pump();
  await once(pre, "end");
  pre.end();
}

/** The destination: reads the bulk bytes, times the round trips, reports them to the parent. */
async function runFloorDest(o: Required<FloorOptions>): Promise<void> {
  const listen = async (): Promise<Server> => {
    const s = createServer();
    s.listen(0, "127.0.0.1");
    await once(s, "listening");
    return s;
  };
  const [bulkServer, preServer] = await Promise.all([listen(), listen()]);
  process.send!({ ev: "ports", bulk: (bulkServer.address() as AddressInfo).port, preempt: (preServer.address() as AddressInfo).port } satisfies FloorMsg);
  const [[bulk], [pre]] = (await Promise.all([once(bulkServer, "connection"), once(preServer, "connection")])) as [[Socket], [Socket]];
  bulkServer.close();
  preServer.close();
  bulk.setNoDelay(true);
  pre.setNoDelay(true);
  let bulkBytes = 0;
  bulk.on("data", (c: Buffer) => {
    bulkBytes += c.byteLength;
  });
  const bulkEnded = once(bulk, "end");
  while (bulkBytes < o.bulkWarmupBytes) await new Promise((r) => setTimeout(r, 5));

  const requester = new FloorRequester((b) => pre.write(b));
  let onRtt: (us: number) => void = () => {};
  pre.on("data", (c: Buffer) => {
    for (const us of requester.push(c)) onRtt(us);
  });
  const timePhase = (n: number): Promise<{ rec: LatencyRecorder; p90: number }> =>
    new Promise((resolve) => {
      const rec = new LatencyRecorder();
      const all: number[] = [];
      let seen = 0;
      const next = (): void => {
        if (o.gapMs > 0) setTimeout(() => requester.request(), o.gapMs);
        else setImmediate(() => requester.request());
      };
      onRtt = (us) => {
        if (seen++ >= o.warmup) {
          rec.add(us);
          all.push(us);
        }
        if (rec.count < n) return next();
        all.sort((a, b) => a - b);
        resolve({ rec, p90: all[Math.min(all.length - 1, Math.ceil(0.9 * all.length) - 1)] ?? 0 });
      };
      requester.request();
    });

  const t0 = performance.now();
  const b0 = bulkBytes;
  const loaded = await timePhase(o.samples);
  const bulkBytesPerSec = ((bulkBytes - b0) * 1000) / (performance.now() - t0);
  pre.write(encodeFloorRequest(FLOOR_REQ.STOP_BULK, 0));
  await bulkEnded;
  const idle = await timePhase(o.samples);
  process.send!({ ev: "result", floor: { loaded: phase(loaded.rec, loaded.p90), idle: phase(idle.rec, idle.p90), bulkBytesPerSec } } satisfies FloorMsg);
  pre.end();
}

const SELF = fileURLToPath(import.meta.url);
const TSX_LOADER = pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href;

function forkSide(args: string[]): ChildProcess {
  return fork(SELF, args, {
    // LM_FLOOR_FLAGS: extra node flags for both (a diagnostic, e.g. --trace-gc).
    execArgv: ["--import", TSX_LOADER, ...CHILD_V8_FLAGS, ...(process.env["LM_FLOOR_FLAGS"] ?? "").split(/\s+/).filter((f) => f !== "")],
    env: { ...process.env, GLIBC_TUNABLES: process.env["GLIBC_TUNABLES"] ?? CHILD_MALLOC_TUNABLES },
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
}

/**
 * Runs the probe: forks the two processes (the destination first, which listens), waits for the
 * destination's result and kills both.
 */
export async function measureFaultFloor(options: FloorOptions = {}): Promise<FaultFloor> {
  const o = { ...DEFAULTS, ...options };
  const loadAverage = loadavg()[0]!;
  const children: ChildProcess[] = [];
  let timer: NodeJS.Timeout | undefined;
  try {
    const dest = forkSide(["floor-dest", JSON.stringify(o)]);
    children.push(dest);
    const result = new Promise<Omit<FaultFloor, "loadAverage">>((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`the floor probe took more than ${o.timeoutMs} ms`)), o.timeoutMs);
      dest.on("exit", (code, signal) => reject(new Error(`the floor probe's destination ${signal !== null ? `was killed by ${signal}` : `exited with code ${code}`}`)));
      dest.on("message", (m: FloorMsg) => {
        if (m.ev === "error") reject(new Error(`the floor probe's destination: ${m.message}`));
        else if (m.ev === "result") resolve(m.floor);
        else {
          const src = forkSide(["floor-source", String(m.bulk), String(m.preempt), String(o.bulkBytesPerSec)]);
          children.push(src);
          src.on("exit", (code, signal) => {
            if (code !== 0) reject(new Error(`the floor probe's source ${signal !== null ? `was killed by ${signal}` : `exited with code ${code}`}`));
          });
        }
      });
    });
    return { ...(await result), loadAverage };
  } finally {
    clearTimeout(timer);
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  }
}

/** One line for a report: the floor's p50 / p99 with and without the bulk push. */
export function formatFaultFloor(f: Pick<FaultFloor, "loaded" | "idle">): string {
  const ms = (us: number): string => (us / 1000).toFixed(2);
  return `4 KiB request/answer between two bare Node processes, p50 / p99 ${ms(f.loaded.p50Us)} / ${ms(f.loaded.p99Us)} ms beside a bulk push on a second connection, ${ms(f.idle.p50Us)} / ${ms(f.idle.p99Us)} ms without`;
}

async function childMain(role: string, args: string[]): Promise<void> {
  try {
    if (role === "floor-source") await runFloorSource(Number(args[0]), Number(args[1]), Number(args[2] ?? 0));
    else await runFloorDest({ ...DEFAULTS, ...(JSON.parse(args[0] ?? "{}") as FloorOptions) });
  } catch (e) {
    process.send?.({ ev: "error", message: e instanceof Error ? e.message : String(e) } satisfies FloorMsg);
    process.exitCode = 1;
  }
  process.disconnect?.();
}

async function cliMain(): Promise<void> {
  const arg = (name: string, def: string): string => {
    const i = process.argv.indexOf(name);
    return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : def;
  };
  const f = await measureFaultFloor({ samples: Number(arg("--samples", "1000")), gapMs: Number(arg("--gap-ms", "1")), bulkBytesPerSec: Number(arg("--bulk-mbps", "0")) * 1e6 });
  const ms = (us: number): string => (us / 1000).toFixed(2);
  console.log(`load average ${f.loadAverage.toFixed(2)}; bulk ${(f.bulkBytesPerSec / 1e6).toFixed(0)} MB/s while timed`);
  for (const [name, p] of [
    ["with bulk", f.loaded],
    ["without", f.idle],
  ] as const)
    console.log(`${name}: ${p.count} round trips, p50 / p90 / p99 / max ${ms(p.p50Us)} / ${ms(p.p90Us)} / ${ms(p.p99Us)} / ${ms(p.maxUs)} ms`);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const role = process.argv[2];
  const run = role === "floor-source" || role === "floor-dest" ? childMain(role, process.argv.slice(3)) : cliMain();
  run.catch((e: unknown) => {
    console.error(e);
    process.exitCode = 1;
  });
}

/** Several probes as one: the median of each figure (the load average is the first probe's). */
export function combineFloors(floors: readonly FaultFloor[]): FaultFloor {
  if (floors.length === 0) throw new RangeError("no floor measured");
  const med = (xs: number[]): number => {
    const s = [...xs].sort((a, b) => a - b);
    const m = s.length >>> 1;
    return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
  };
  const ph = (get: (f: FaultFloor) => FloorPhase): FloorPhase => ({
    count: floors.reduce((a, f) => a + get(f).count, 0),
    p50Us: med(floors.map((f) => get(f).p50Us)),
    p90Us: med(floors.map((f) => get(f).p90Us)),
    p99Us: med(floors.map((f) => get(f).p99Us)),
    maxUs: Math.max(...floors.map((f) => get(f).maxUs)),
  });
  return { loaded: ph((f) => f.loaded), idle: ph((f) => f.idle), bulkBytesPerSec: med(floors.map((f) => f.bulkBytesPerSec)), loadAverage: floors[0]!.loadAverage };
}
