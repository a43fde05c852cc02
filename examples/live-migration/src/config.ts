/**
 * Everything a migration run can be told, with the defaults `npm run demo` uses, and the parsers
 * for the CLI's human units ("256MiB", "1gbit", "5ms").
 */
import { totalmem } from "node:os";
import { ALL_RELEASES, DEFAULT_RELEASE, type AnyRelease } from "@uffd/kernel";
import type { LinkShape } from "./link.ts";

/**
 * The kernel release profile each side's simulated kernel answers as (`new Kernel({ release })`,
 * docs/releases.md): what its userfaultfd offers decides the dirty tracking and the fallbacks the
 * run reports.
 */
export interface KernelReleases {
  source: AnyRelease;
  destination: AnyRelease;
}

/** The release profiles a side may run (the long-term series and the history profiles). */
export const KERNEL_CHOICES: readonly AnyRelease[] = ALL_RELEASES;

export const STRATEGIES = ["precopy", "postcopy", "hybrid"] as const;
export type Strategy = (typeof STRATEGIES)[number];

export const THREAD_KINDS = ["hot", "scan", "random"] as const;
/** hot: read-modify-writes in a small hot set; scan: sequential reads; random: writes anywhere. */
export type ThreadKind = (typeof THREAD_KINDS)[number];

export const TRACKING_METHODS = ["auto", "wp-async", "wp-sync", "content-hash"] as const;

/**
 * How each side's simulated kernel holds page bytes (KernelOptions.frameStore): "flat", "compact",
 * or "auto", which makeConfig() resolves to one of them on the host it runs on (frameStoreFor()).
 */
export const FRAME_STORES = ["auto", "compact", "flat"] as const;
/** One of FRAME_STORES. */
export type FrameStoreChoice = (typeof FRAME_STORES)[number];
export type TrackingChoice = (typeof TRACKING_METHODS)[number];

export interface ThreadSpec {
  kind: ThreadKind;
  /** Operations per second (each touches one page). */
  rate: number;
}

export interface FaultInjection {
  /** The source cuts the TCP connection after sending this many postcopy pages. */
  dropLinkAfterPostcopyPages?: number;
  /**
   * The orchestrator SIGKILLs the source process once this many postcopy pages were sent; the
   * source sends nothing more from that count on, so the kill's delay changes nothing.
   */
  killSourceAfterPostcopyPages?: number;
  /**
   * Test hook (no CLI option): the postcopy background push starts only once the source has
   * received this many demand requests. Until then a page reaches the destination only because
   * the guest faulted on it, so "the guest faulted" is certain, not a race between the push and
   * the guest threads on a loaded host.
   */
  holdPushUntilRequests?: number;
  /**
   * Test hook (no CLI option): precopy round 1 ends only once the guest has completed this many
   * page writes since the round began, so "pages were dirtied during the round" is certain, not
   * a matter of the guest threads getting the CPU while the round is on the wire.
   */
  holdFirstRoundUntilGuestWrites?: number;
}

/**
 * The protocol's own bounds: how long a peer may stay silent, and how much received work may
 * wait before the socket is paused. Tests make the timeouts small; nothing here is a speed.
 */
export interface ProtocolLimits {
  /** A connection must deliver an authenticated HELLO within this. */
  helloTimeoutMs: number;
  /** The source's HELLO_ACK, DISCARD_ACK and the destination's RESUMED must come within this. */
  handshakeTimeoutMs: number;
  /** The end of a phase (DONE) must come within this. */
  phaseTimeoutMs: number;
  /** The destination fails when nothing arrives for this long before the guest has all its memory. */
  idleTimeoutMs: number;
  /** A side fails when its peer stops reading for this long. */
  stallTimeoutMs: number;
  /** Received frames waiting to be handled, in bytes, before the socket is paused. */
  maxQueuedBytes: number;
  /** ... and in frames (a flood of small frames costs memory per frame, not per byte). */
  maxQueuedFrames: number;
  /** Connections that have not yet authenticated, at most (more are refused at once). */
  maxPendingConnections: number;
}

export const DEFAULT_PROTOCOL_LIMITS: Readonly<ProtocolLimits> = Object.freeze({
  helloTimeoutMs: 10_000,
  handshakeTimeoutMs: 10_000,
  phaseTimeoutMs: 60_000,
  idleTimeoutMs: 30_000,
  stallTimeoutMs: 30_000,
  maxQueuedBytes: 8 * 1024 * 1024,
  maxQueuedFrames: 4096,
  maxPendingConnections: 4,
});

export interface MigrationConfig {
  strategy: Strategy;
  seed: number;
  memoryBytes: number;
  /** Fraction of guest pages the guest writes while booting; the rest stay zero. */
  populate: number;
  hotSetBytes: number;
  workload: ThreadSpec[];
  /** How long the workload runs on the source before migration starts. */
  warmupMs: number;
  /** How long the workload keeps running on the destination after migration completes. */
  runAfterMs: number;
  link: LinkShape;
  /** Precopy stops iterating once the remaining dirty pages fit in this downtime. */
  maxDowntimeMs: number;
  /** Precopy rounds before a forced stop-and-copy (QEMU has no limit; we bound everything). */
  maxRounds: number;
  /** Hybrid: precopy rounds before switching to postcopy. */
  hybridRounds: number;
  tracking: TrackingChoice;
  /**
   * Postcopy and hybrid: demand requests and their pages travel on a second TCP connection
   * (QEMU's postcopy-preempt channel), so they never queue behind bulk bytes. false: one stream.
   */
  postcopyPreempt: boolean;
  /**
   * How both guests' kernels hold page bytes: "compact" (pages the content model generates cost
   * no 4 KiB of host memory, but each read generates them and each install compares them) or
   * "flat" (4 KiB per page; the destination preallocates it before the transfer), or "auto"
   * (the default): flat while both guests fit in half of this host's RAM, compact past that
   * (frameStoreFor()). makeConfig() resolves "auto", so a made config holds the store used.
   */
  frameStore: FrameStoreChoice;
  /** Hard bound on a whole run, including process start-up. */
  timeoutMs: number;
  /** Each side's kernel release profile (default: 6.18 on both). */
  kernel: KernelReleases;
  faults: FaultInjection;
  protocol: ProtocolLimits;
}

const DEFAULTS: MigrationConfig = {
  strategy: "hybrid",
  seed: 1,
  memoryBytes: 256 * 1024 * 1024,
  populate: 0.85,
  hotSetBytes: 16 * 1024 * 1024,
  workload: [
    { kind: "hot", rate: 8000 },
    { kind: "scan", rate: 4000 },
    { kind: "random", rate: 1000 },
  ],
  warmupMs: 500,
  runAfterMs: 300,
  link: { latencyMs: 1, bandwidthBytesPerSec: 1e9 / 8 },
  maxDowntimeMs: 50,
  maxRounds: 30,
  hybridRounds: 1,
  tracking: "auto",
  postcopyPreempt: true,
  frameStore: "auto",
  timeoutMs: 120_000,
  kernel: { source: DEFAULT_RELEASE, destination: DEFAULT_RELEASE },
  faults: {},
  protocol: { ...DEFAULT_PROTOCOL_LIMITS },
};
export const DEFAULT_CONFIG: Readonly<MigrationConfig> = Object.freeze(DEFAULTS);

/** What makeConfig accepts: any field, and any subset of the link and protocol limits. */
export type ConfigOverrides = Partial<Omit<MigrationConfig, "link" | "protocol" | "kernel">> & { link?: Partial<LinkShape>; protocol?: Partial<ProtocolLimits>; kernel?: Partial<KernelReleases> };

export function makeConfig(overrides: ConfigOverrides = {}): MigrationConfig {
  const c: MigrationConfig = {
    ...DEFAULT_CONFIG,
    ...overrides,
    link: { ...DEFAULT_CONFIG.link, ...overrides.link },
    kernel: { ...DEFAULT_CONFIG.kernel, ...overrides.kernel },
    faults: { ...overrides.faults },
    protocol: { ...DEFAULT_PROTOCOL_LIMITS, ...overrides.protocol },
  };
  validateConfig(c);
  c.frameStore = frameStoreOf(c);
  return c;
}

/** The store a side's kernel uses for config `c`: its frameStore, with "auto" resolved here. */
export function frameStoreOf(c: MigrationConfig): "compact" | "flat" {
  return c.frameStore === "auto" ? frameStoreFor(c.memoryBytes) : c.frameStore;
}

/**
 * The frame store "auto" picks for a guest of `memoryBytes` on a host with `hostBytes` of RAM:
 * "flat" while the two guests' RAM (source and destination, 4 KiB per page each) fits in half of
 * it, so a run never trades speed for memory it does not need (the compact store generates a
 * page's bytes on every read and compares them on every install: about a third of the flat
 * store's throughput, docs/benchmarks.md); "compact" past that, so a 16 GiB guest migrates on a
 * 24 GiB host. The choice changes host memory and speed only, never what the guest reads.
 */
export function frameStoreFor(memoryBytes: number, hostBytes: number = totalmem()): "compact" | "flat" {
  return 2 * memoryBytes <= hostBytes / 2 ? "flat" : "compact";
}

export function guestPages(c: MigrationConfig): number {
  return Math.floor(c.memoryBytes / 4096);
}

export function validateConfig(c: MigrationConfig): void {
  const fail = (msg: string): never => {
    throw new RangeError(msg);
  };
  if (!STRATEGIES.includes(c.strategy)) fail(`unknown strategy "${c.strategy}" (one of ${STRATEGIES.join(", ")})`);
  if (c.memoryBytes < 1024 * 1024 || c.memoryBytes % 4096 !== 0) fail("guest memory must be at least 1 MiB and a multiple of 4 KiB");
  if (c.memoryBytes > 16 * 1024 ** 3) fail("guest memory is limited to 16 GiB");
  if (!(c.populate >= 0 && c.populate <= 1)) fail("populate must be within [0, 1]");
  if (c.hotSetBytes < 4096 || c.hotSetBytes > c.memoryBytes) fail("the hot set must be between one page and the guest size");
  for (const t of c.workload) {
    if (!THREAD_KINDS.includes(t.kind)) fail(`unknown workload thread kind "${t.kind}" (one of ${THREAD_KINDS.join(", ")})`);
    if (!(t.rate >= 0 && t.rate <= 1e6)) fail(`workload rate must be within [0, 1e6] ops/s, got ${t.rate}`);
  }
  if (c.link.latencyMs < 0 || c.link.latencyMs > 10_000) fail("latency must be within [0, 10s]");
  if (c.link.bandwidthBytesPerSec < 0) fail("bandwidth must be positive (0 = unlimited)");
  if (c.link.bandwidthBytesPerSec > 0 && c.link.bandwidthBytesPerSec < 64 * 1024) fail("bandwidth must be at least 64 KiB/s");
  if (!Number.isInteger(c.maxRounds) || c.maxRounds < 1 || c.maxRounds > 1000) fail("max rounds must be within [1, 1000]");
  if (!Number.isInteger(c.hybridRounds) || c.hybridRounds < 1 || c.hybridRounds > c.maxRounds) fail("hybrid rounds must be within [1, max rounds]");
  if (!TRACKING_METHODS.includes(c.tracking)) fail(`unknown tracking method "${c.tracking}" (one of ${TRACKING_METHODS.join(", ")})`);
  if (c.timeoutMs < 1000) fail("the timeout must be at least 1s");
  for (const side of ["source", "destination"] as const) {
    const r = c.kernel?.[side];
    if (!KERNEL_CHOICES.includes(r)) fail(`unknown ${side} kernel release "${String(r)}" (one of ${KERNEL_CHOICES.join(", ")})`);
  }
  if (typeof c.postcopyPreempt !== "boolean") fail("postcopyPreempt must be true or false");
  if (!FRAME_STORES.includes(c.frameStore)) fail(`unknown frame store "${c.frameStore}" (one of ${FRAME_STORES.join(", ")})`);
  const sb = c.link.sendBufferBytes;
  if (sb !== undefined && !(Number.isInteger(sb) && sb >= 4096 && sb <= 1 << 30)) fail("the send buffer must be between 4 KiB and 1 GiB");
  for (const [k, v] of Object.entries(c.faults)) if (v !== undefined && !(Number.isInteger(v) && v >= 0)) fail(`fault injection ${k} must be a non-negative integer, got ${v}`);
  if ((c.faults.holdFirstRoundUntilGuestWrites ?? 0) > 0 && !c.workload.some((t) => t.kind !== "scan" && t.rate > 0)) fail("holdFirstRoundUntilGuestWrites needs a workload thread that writes (hot or random, rate > 0)");
  if ((c.faults.holdPushUntilRequests ?? 0) > 0 && !c.workload.some((t) => t.rate > 0)) fail("holdPushUntilRequests needs a running workload: only the guest's faults send requests");
  for (const [k, v] of Object.entries(c.protocol)) if (!(Number.isInteger(v) && v >= 1)) fail(`protocol limit ${k} must be a positive integer, got ${v}`);
}

// --- parsers for the CLI -------------------------------------------------------------------

const SIZE_UNITS: Record<string, number> = { "": 1, b: 1, k: 1024, kb: 1000, kib: 1024, m: 1024 ** 2, mb: 1e6, mib: 1024 ** 2, g: 1024 ** 3, gb: 1e9, gib: 1024 ** 3 };

/** "256MiB", "1g", "4096" -> bytes. */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = m === null ? undefined : SIZE_UNITS[m[2]!.toLowerCase()];
  if (m === null || unit === undefined) throw new RangeError(`not a size: "${text}" (try 256MiB, 1GiB, 4096)`);
  return Math.round(Number(m[1]) * unit);
}

const DURATION_UNITS: Record<string, number> = { "": 1, ms: 1, s: 1000, us: 0.001, m: 60_000 };

/** "5ms", "1.5s", "200" (ms) -> milliseconds. */
export function parseDuration(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = m === null ? undefined : DURATION_UNITS[m[2]!.toLowerCase()];
  if (m === null || unit === undefined) throw new RangeError(`not a duration: "${text}" (try 5ms, 1.5s)`);
  return Number(m[1]) * unit;
}

const RATE_UNITS: Record<string, number> = {
  bit: 1 / 8, kbit: 1e3 / 8, mbit: 1e6 / 8, gbit: 1e9 / 8,
  "b/s": 1, "kb/s": 1e3, "mb/s": 1e6, "gb/s": 1e9, "kib/s": 1024, "mib/s": 1024 ** 2, "gib/s": 1024 ** 3,
};

/** "1gbit", "100mbit", "50MB/s", "0"/"unlimited" -> bytes per second (0 = unlimited). */
export function parseBandwidth(text: string): number {
  if (/^\s*(0|unlimited|inf)\s*$/i.test(text)) return 0;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z/]+)\s*$/i.exec(text);
  const unit = m === null ? undefined : RATE_UNITS[m[2]!.toLowerCase()];
  if (m === null || unit === undefined) throw new RangeError(`not a bandwidth: "${text}" (try 1gbit, 100mbit, 50MB/s, unlimited)`);
  return Number(m[1]) * unit;
}

/** "hot:8000,scan:4000,random:1000" -> thread specs; "none" -> no threads. */
export function parseWorkload(text: string): ThreadSpec[] {
  if (/^\s*none\s*$/i.test(text)) return [];
  return text.split(",").map((part) => {
    const m = /^\s*([a-z]+)\s*(?::\s*(\d+(?:\.\d+)?))?\s*$/i.exec(part);
    const kind = m?.[1]?.toLowerCase() as ThreadKind | undefined;
    if (m === null || kind === undefined || !THREAD_KINDS.includes(kind)) {
      throw new RangeError(`not a workload thread: "${part}" (kinds: ${THREAD_KINDS.join(", ")}; e.g. hot:8000)`);
    }
    return { kind, rate: m[2] === undefined ? 1000 : Number(m[2]) };
  });
}

export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB"];
  let u = 0;
  while (n >= 1024 && u < units.length - 1) {
    n /= 1024;
    u++;
  }
  return `${n >= 100 || u === 0 ? n.toFixed(0) : n.toFixed(1)} ${units[u]}`;
}

export function formatBandwidth(bytesPerSec: number): string {
  if (bytesPerSec === 0) return "unlimited";
  const bits = bytesPerSec * 8;
  return bits >= 1e9 ? `${+(bits / 1e9).toFixed(2)} Gbit/s` : `${+(bits / 1e6).toFixed(2)} Mbit/s`;
}
