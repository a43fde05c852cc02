/**
 * Missing+copy round trips through the raw uAPI and through the SDK, on the same scenery as the
 * kernel bench (packages/kernel/bench/uffd.ts): THREADS threads write one byte to each page of
 * their slice of a registered anonymous range; a handler reads up to READ_BATCH messages per
 * read(2) and resolves each fault with UFFDIO_COPY of a 4 KiB page.
 *
 * raw: decodeUffdMsgs + ioctl(UFFDIO_COPY), awaited one by one, as a C handler would run.
 * sdk: Userfaultfd.open + register + on("fault", f => f.copy(page)).
 */
import { Kernel, type Process } from "@uffd/kernel";
import {
  decodeUffdMsgs,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  O_CLOEXEC,
  PAGE_SIZE,
  PROT_READ,
  PROT_WRITE,
  UFFD_API,
  UFFD_EVENT_PAGEFAULT,
  UFFD_MSG_SIZE,
  UFFDIO_API,
  UFFDIO_COPY,
  UFFDIO_REGISTER,
  UFFDIO_REGISTER_MODE_MISSING,
} from "@uffd/kernel/uapi";
import { Userfaultfd } from "../src/index.ts";

export const THREADS = 4;
export const READ_BATCH = 64;

export interface Rate {
  opsPerSec: number;
  medianMs: number;
  runs: number;
  opsPerRun: number;
}

interface Scene {
  k: Kernel;
  p: Process;
  addr: number;
  len: number;
  /** Starts the handler; resolves when `pages` faults were served (raw) or immediately (sdk). */
  serve: (pages: number) => Promise<void>;
  teardown: () => Promise<void>;
}

const page = new Uint8Array(PAGE_SIZE).fill(0x5a);
const one = Uint8Array.of(1);

async function rawScene(pages: number): Promise<Scene> {
  const k = new Kernel({ seed: 1 });
  const p = k.spawn({ name: "bench-raw" });
  const len = pages * PAGE_SIZE;
  const uffd = await p.userfaultfd(O_CLOEXEC);
  await p.ioctl(uffd, UFFDIO_API, { api: UFFD_API, features: 0 });
  const addr = await p.mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
  await p.ioctl(uffd, UFFDIO_REGISTER, { range: { start: addr, len }, mode: UFFDIO_REGISTER_MODE_MISSING });
  const serve = async (expected: number): Promise<void> => {
    let served = 0;
    while (served < expected) {
      for (const m of decodeUffdMsgs(await p.read(uffd, READ_BATCH * UFFD_MSG_SIZE))) {
        if (m.event !== UFFD_EVENT_PAGEFAULT) throw new Error(`unexpected uffd event 0x${m.event.toString(16)}`);
        const a = m.arg.pagefault.address;
        await p.ioctl(uffd, UFFDIO_COPY, { dst: a - (a % PAGE_SIZE), src: page, len: PAGE_SIZE, mode: 0 });
        served++;
      }
    }
  };
  return { k, p, addr, len, serve, teardown: () => p.exit(0) };
}

async function sdkScene(pages: number): Promise<Scene> {
  const k = new Kernel({ seed: 1 });
  const p = k.spawn({ name: "bench-sdk" });
  const len = pages * PAGE_SIZE;
  const uffd = await Userfaultfd.open(p, { optionalFeatures: [], batch: READ_BATCH });
  const addr = await p.mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
  await uffd.register(addr, len, "missing");
  uffd.on("fault", (f) => f.copy(page));
  return {
    k,
    p,
    addr,
    len,
    serve: () => Promise.resolve(),
    teardown: async () => {
      await uffd.drain();
      const m = uffd.metrics.snapshot();
      if (m.outcomes.installed !== pages) throw new Error(`sdk bench: ${m.outcomes.installed} of ${pages} faults installed`);
      await uffd.close();
      await p.exit(0);
    },
  };
}

async function runOnce(kind: "raw" | "sdk", pages: number): Promise<number> {
  const s = await (kind === "raw" ? rawScene(pages) : sdkScene(pages));
  const threads = Array.from({ length: THREADS }, (_, i) => (i === 0 ? s.p.mainThread : s.p.spawnThread(`faulter-${i}`)));
  const perThread = Math.ceil(pages / THREADS);
  const t0 = performance.now();
  const handler = s.serve(pages);
  await Promise.all(
    threads.map(async (t, i) => {
      const from = s.addr + i * perThread * PAGE_SIZE;
      const to = Math.min(s.addr + s.len, from + perThread * PAGE_SIZE);
      for (let a = from; a < to; a += PAGE_SIZE) await t.write(a, one);
    }),
  );
  await handler;
  const ms = performance.now() - t0;
  s.k.checkInvariants();
  await s.teardown();
  return ms;
}

/**
 * Both paths, their runs interleaved (raw, sdk, raw, sdk ...) so that machine noise and garbage
 * left by earlier runs hit both alike; each rate is taken at its median run.
 */
export async function roundTripRates(pages: number, runs: number, warmup: number): Promise<{ raw: Rate; sdk: Rate }> {
  const times = { raw: [] as number[], sdk: [] as number[] };
  for (let i = 0; i < warmup + runs; i++) {
    for (const kind of ["raw", "sdk"] as const) {
      const ms = await runOnce(kind, pages);
      if (i >= warmup) times[kind].push(ms);
    }
  }
  const rate = (t: number[]): Rate => {
    t.sort((a, b) => a - b);
    const medianMs = t[Math.floor(t.length / 2)]!;
    return { opsPerSec: (pages / medianMs) * 1000, medianMs, runs, opsPerRun: pages };
  };
  return { raw: rate(times.raw), sdk: rate(times.sdk) };
}
