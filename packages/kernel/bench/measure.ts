/**
 * Measurement helpers for the bench: a median of timed runs after warm-up runs, and a gc() that
 * works without `node --expose-gc` (the flag is set at run time and gc fetched from a fresh
 * context, a documented V8 idiom).
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

export interface Sample {
  /** Operations per run. */
  ops: number;
  /** Wall time per run, in ms. */
  runsMs: number[];
}

export interface Rate {
  /** Operations per second at the median run. */
  opsPerSec: number;
  medianMs: number;
  minMs: number;
  maxMs: number;
  runs: number;
  opsPerRun: number;
  /** CPU time (user + system, this process) over wall time, summed over the timed runs. */
  cpuShare: number;
}

/** One timed run: `body` is timed and returns its operation count; `teardown` is not timed. */
export interface Trial {
  body: () => Promise<number>;
  teardown?: () => Promise<void>;
}

/**
 * Runs warm-up trials (at least `warmup`, and for at least WARMUP_MS, so the JIT has settled
 * whatever the size of one run), then `runs` timed trials; `setup` prepares each (untimed) and
 * returns it. The rate is taken at the median run, which is robust to a single gc pause.
 */
export async function measure(runs: number, warmup: number, setup: () => Promise<Trial>): Promise<Rate> {
  const times: number[] = [];
  let ops = 0;
  let cpuUs = 0;
  const warmupEnd = performance.now() + (warmup > 0 ? WARMUP_MS : 0);
  for (let w = 0; w < warmup || performance.now() < warmupEnd; w++) await trial(await setup());
  for (let i = 0; i < runs; i++) {
    const t = await trial(await setup());
    cpuUs += t.cpuUs;
    ops = t.ops;
    times.push(t.ms);
  }
  const sorted = [...times].sort((a, b) => a - b);
  const medianMs = sorted[Math.floor(sorted.length / 2)] as number;
  return {
    opsPerSec: ops / (medianMs / 1000),
    medianMs,
    minMs: sorted[0] as number,
    maxMs: sorted[sorted.length - 1] as number,
    runs,
    opsPerRun: ops,
    cpuShare: cpuUs / 1000 / times.reduce((a, b) => a + b, 0),
  };
}

/** Minimum warm-up time per measurement, in ms. */
const WARMUP_MS = 300;

async function trial(t: Trial): Promise<{ ops: number; ms: number; cpuUs: number }> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const ops = await t.body();
  const ms = performance.now() - t0;
  const c = process.cpuUsage(c0);
  await t.teardown?.();
  return { ops, ms, cpuUs: c.user + c.system };
}

/** global.gc, or one obtained by enabling --expose-gc at run time; null if neither works. */
export function getGc(): (() => void) | null {
  const g = (globalThis as { gc?: () => void }).gc;
  if (typeof g === "function") return g;
  try {
    setFlagsFromString("--expose-gc");
    const fn = runInNewContext("gc") as unknown;
    return typeof fn === "function" ? (fn as () => void) : null;
  } catch {
    return null;
  }
}

/**
 * The simulator's physical limit: TypedArray.prototype.set() of `bytes` between two buffers
 * allocated (and touched) beforehand, `ops` copies per run; the counterpart of uffd-bench.c's
 * memcpy4k / memcpy2m (the 4 KiB copy is cache-warm there too).
 */
export async function memcpyRate(bytes: number, ops: number, runs: number, warmup: number): Promise<Rate> {
  const src = new Uint8Array(bytes).fill(0xa5);
  const dst = new Uint8Array(bytes).fill(1);
  return measure(runs, warmup, async () => ({
    body: async () => {
      for (let i = 0; i < ops; i++) {
        src[i & 1023] = i;
        dst.set(src);
      }
      if (dst[0] === 0x100) throw new Error("unreachable: keeps the copies observable");
      return ops;
    },
  }));
}

/**
 * The counterpart of uffd-bench.c's memcpyStream2m: Uint8Array.prototype.set() of a 2 MiB source
 * into successive 2 MiB windows of a resident 64 MiB destination (touched beforehand), `ops`
 * copies per run: a streaming copy into memory that is present but not cache-hot.
 */
export async function memcpyStreamRate(ops: number, runs: number, warmup: number): Promise<Rate> {
  const chunk = 2 << 20;
  const len = 64 << 20;
  const src = new Uint8Array(chunk).fill(0xa5);
  const dst = new Uint8Array(len).fill(1);
  return measure(runs, warmup, async () => ({
    body: async () => {
      for (let i = 0; i < ops; i++) {
        src[i & 1023] = i;
        dst.set(src, (i * chunk) % len);
      }
      if (dst[0] === 0x100) throw new Error("unreachable: keeps the copies observable");
      return ops;
    },
  }));
}

/**
 * The copy every missing+copy round trip makes, alone: Uint8Array.prototype.set() of a 4 KiB
 * page into each of `pages` frames of pooled 1 MiB chunks (touched beforehand), one copy per
 * frame and run, in the order the round-trip scene gets its frames back after MADV_DONTNEED (the
 * last freed first: descending). The scene's working set (5000 pages, ~20 MiB) outgrows the CPU
 * caches, so this is a copy into memory that is resident but not cache-hot.
 */
export async function memcpyFramesRate(pages: number, runs: number, warmup: number): Promise<Rate> {
  const perChunk = (1 << 20) / 4096;
  const chunks = Array.from({ length: Math.ceil(pages / perChunk) }, () => new Uint8Array(1 << 20).fill(1));
  const src = new Uint8Array(4096).fill(0xa5);
  return measure(runs, warmup, async () => ({
    body: async () => {
      for (let f = pages - 1; f >= 0; f--) {
        src[f & 1023] = f;
        (chunks[Math.floor(f / perChunk)] as Uint8Array).set(src, (f % perChunk) * 4096);
      }
      if (chunks[0]![0] === 0x100) throw new Error("unreachable: keeps the copies observable");
      return pages;
    },
  }));
}
