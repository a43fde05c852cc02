/**
 * The SDK column of the bench: the same scenes as the raw uAPI rows (uffd.ts and ops.ts: same
 * kernel, region, threads, resets and counts), served through @uffd/sdk.
 *
 *   round trips   Userfaultfd.open + register + on("fault", f => f.copy(page) / f.zeropage() /
 *                 f.unprotect() / f.continue()); the SDK's read loop takes up to `batch`
 *                 messages per read(2)
 *   ioctls        uffd.copy(dst, bytes), uffd.move(dst, src, len), uffd.writeProtect() +
 *                 uffd.unprotect(): the race-safe range operations
 *
 * The SDK's fastest configuration is used: no optional features (no events to read), batch 64
 * (the default); a fault resolved with a whole page of bytes takes the engine's fast path (one
 * ioctl, settled as it returns).
 *
 * The kernel package does not depend on the SDK (the SDK depends on it), so the SDK is loaded at
 * run time from its source entry and used through the few members declared below.
 */
import { Kernel, type Process } from "@uffd/kernel";
import { MADV_DONTNEED, MAP_ANONYMOUS, MAP_PRIVATE, PAGE_SIZE } from "@uffd/kernel/uapi";
import { measure, type Rate } from "./measure.ts";
import { type Op, opCount, type OpScene, populate, RW, sceneRate } from "./ops.ts";
import { type RoundTrip, roundTripScene, type RoundTripShape, touchAll } from "./uffd.ts";

type Mode = "missing" | "wp" | "minor";

/** The part of @uffd/sdk's Fault the bench uses. */
interface SdkFault {
  copy(src: Uint8Array): Promise<unknown>;
  zeropage(): Promise<unknown>;
  unprotect(): Promise<unknown>;
  continue(): Promise<unknown>;
}

/** The part of @uffd/sdk's Userfaultfd the bench uses. */
interface SdkUserfaultfd {
  readonly process: Process;
  register(start: number, len: number, modes: Mode): Promise<unknown>;
  writeProtect(start: number, len: number): Promise<void>;
  unprotect(start: number, len: number): Promise<void>;
  copy(dst: number, src: Uint8Array): Promise<unknown>;
  move(dst: number, src: number, len: number): Promise<unknown>;
  on(event: "fault", listener: (f: SdkFault) => unknown): unknown;
  drain(): Promise<void>;
  close(): Promise<void>;
  readonly metrics: { snapshot(): { outcomes: { installed: number } } };
}

export interface SdkModule {
  Userfaultfd: { open(p: Process, options: { optionalFeatures: string[]; features: string[]; batch?: number }): Promise<SdkUserfaultfd> };
}

/** @uffd/sdk's source entry, or null (with why) if it cannot be loaded. */
export async function loadSdk(): Promise<SdkModule | string> {
  const entry = new URL("../../sdk/src/index.ts", import.meta.url).href;
  try {
    return (await import(entry)) as SdkModule;
  } catch (e) {
    return `cannot load @uffd/sdk (${e instanceof Error ? e.message : String(e)})`;
  }
}

const FEATURES: Record<RoundTrip, string[]> = {
  "missing+copy": [],
  "missing+zeropage": [],
  "wp+unprotect": ["pagefault-flag-wp"],
  "minor+continue": ["minor-shmem"],
};

const modeOf = (mode: number): Mode => (mode === 1 ? "missing" : mode === 2 ? "wp" : "minor");

/** Round trips per second through the SDK: the median run of `runs` after `warmup`. */
export async function sdkRoundTripRate(sdk: SdkModule, kind: RoundTrip, shape: RoundTripShape, pages: number, runs: number, warmup: number): Promise<Rate> {
  const k = new Kernel({ seed: 1 });
  const p = k.spawn({ name: "bench-sdk" });
  const uffd = await sdk.Userfaultfd.open(p, { optionalFeatures: [], features: FEATURES[kind], batch: shape.batch });
  const register = (addr: number, len: number, mode: number): Promise<unknown> => uffd.register(addr, len, modeOf(mode));
  const s = await roundTripScene(kind, pages, shape.threads, p, register, (addr, len) => uffd.writeProtect(addr, len));
  const page = new Uint8Array(PAGE_SIZE).fill(0x5a);
  if (kind === "missing+copy") uffd.on("fault", (f) => f.copy(page));
  else if (kind === "missing+zeropage") uffd.on("fault", (f) => f.zeropage());
  else if (kind === "wp+unprotect") uffd.on("fault", (f) => f.unprotect());
  else uffd.on("fault", (f) => f.continue());
  let trials = 0;
  const rate = await measure(runs, warmup, async () => {
    trials++;
    await s.reset();
    return {
      body: async () => {
        await touchAll(s);
        return pages;
      },
      teardown: async () => {
        await uffd.drain();
        k.checkInvariants();
      },
    };
  });
  const installed = uffd.metrics.snapshot().outcomes.installed;
  if (installed !== pages * trials) throw new Error(`sdk bench ${kind}: ${installed} of ${pages * trials} faults installed`);
  await uffd.close();
  await p.exit(0);
  return rate;
}

export const SDK_OPS = ["uffdCopy4k", "uffdCopy2m", "uffdMove4k", "wpToggle4k", "wpToggle2m"] as const satisfies readonly Op[];
export type SdkOp = (typeof SDK_OPS)[number];

export function isSdkOp(op: Op): op is SdkOp {
  return (SDK_OPS as readonly Op[]).includes(op);
}

async function sdkProcess(sdk: SdkModule, features: string[]): Promise<{ k: Kernel; uffd: SdkUserfaultfd; p: Process }> {
  const k = new Kernel({ seed: 1 });
  const p = k.spawn({ name: "bench-sdk-ops" });
  const uffd = await sdk.Userfaultfd.open(p, { optionalFeatures: [], features });
  return { k, uffd, p };
}

function closer(uffd: SdkUserfaultfd, p: Process): () => Promise<void> {
  return async () => {
    await uffd.close();
    await p.exit(0);
  };
}

/** uffd.copy() of `chunk` pages, `ops` calls per run, into a MISSING range. */
async function copyScene(sdk: SdkModule, chunk: number, ops: number): Promise<OpScene> {
  const { k, uffd, p } = await sdkProcess(sdk, []);
  const len = chunk * ops * PAGE_SIZE;
  const dst = await p.mmap(0, len, RW, MAP_PRIVATE | MAP_ANONYMOUS);
  await uffd.register(dst, len, "missing");
  const src = new Uint8Array(chunk * PAGE_SIZE).fill(0xa5);
  const run = async (): Promise<number> => {
    for (let i = 0; i < ops; i++) await uffd.copy(dst + i * chunk * PAGE_SIZE, src);
    return ops;
  };
  return { k, run, reset: () => p.madvise(dst, len, MADV_DONTNEED), close: closer(uffd, p) };
}

/** uffd.move() of one page at a time between the halves of one MISSING-registered mapping. */
async function moveScene(sdk: SdkModule, pages: number): Promise<OpScene> {
  const { k, uffd, p } = await sdkProcess(sdk, ["move"]);
  const half = pages * PAGE_SIZE;
  const base = await p.mmap(0, 2 * half, RW, MAP_PRIVATE | MAP_ANONYMOUS);
  await populate(p, base, pages);
  await uffd.register(base, 2 * half, "missing");
  let from = 0;
  const run = async (): Promise<number> => {
    const src = base + from * half;
    const dst = base + (1 - from) * half;
    for (let i = 0; i < pages; i++) await uffd.move(dst + i * PAGE_SIZE, src + i * PAGE_SIZE, PAGE_SIZE);
    from = 1 - from;
    return pages;
  };
  return { k, run, reset: async () => {}, close: closer(uffd, p) };
}

/** uffd.writeProtect() then uffd.unprotect() of `chunk` pages, `ops` pairs per run, in a 2 MiB WP region. */
async function wpScene(sdk: SdkModule, chunk: number, ops: number): Promise<OpScene> {
  const { k, uffd, p } = await sdkProcess(sdk, ["pagefault-flag-wp"]);
  const huge = 512;
  const base = await p.mmap(0, huge * PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS);
  await populate(p, base, huge);
  await uffd.register(base, huge * PAGE_SIZE, "wp");
  const run = async (): Promise<number> => {
    for (let i = 0; i < ops; i++) {
      const at = base + ((i * chunk) % huge) * PAGE_SIZE;
      await uffd.writeProtect(at, chunk * PAGE_SIZE);
      await uffd.unprotect(at, chunk * PAGE_SIZE);
    }
    return ops;
  };
  return { k, run, reset: async () => {}, close: closer(uffd, p) };
}

/** The rate of one ioctl-level op through the SDK's range operations. */
export async function sdkOpRate(sdk: SdkModule, op: SdkOp, quick: boolean, runs: number, warmup: number): Promise<Rate> {
  const n = opCount(op, quick);
  let scene: Promise<OpScene>;
  if (op === "uffdCopy4k" || op === "uffdCopy2m") scene = copyScene(sdk, op === "uffdCopy4k" ? 1 : 512, n);
  else if (op === "uffdMove4k") scene = moveScene(sdk, n);
  else scene = wpScene(sdk, op === "wpToggle4k" ? 1 : 512, n);
  return sceneRate(await scene, runs, warmup);
}
