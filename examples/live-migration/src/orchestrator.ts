/**
 * Runs one migration: forks the source and destination as real OS processes (each with its own
 * simulated kernel), connects them over TCP on loopback, watches progress, and gathers both sides'
 * metrics and the destination's verification into one MigrationResult.
 *
 * Bounded on every path: an overall timeout, a bounded wait for the other side's account after
 * a failure, and both children are killed in `finally` (and on this process's exit).
 */
import { fork, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createRequire } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";
import { guestPages, type MigrationConfig } from "./config.ts";
import { sendBufferBytes } from "./link.ts";
import type { DestMetrics } from "./dest.ts";
import type { FromChild, Role, ToChild } from "./ipc.ts";
import { nowEpochMs, type MigrationResult, type VerificationResult } from "./metrics.ts";
import type { SourceMetrics } from "./source.ts";

export interface RunHooks {
  progress?(side: Role, phase: string, done: number, total: number): void;
  event?(side: Role, what: string): void;
}

/** A migration that did not complete; carries what each side could still report. */
export class MigrationError extends Error {
  override name = "MigrationError";
  readonly verification: VerificationResult | null;
  readonly source: SourceMetrics | null;
  readonly destination: DestMetrics | null;

  constructor(message: string, details: { verification?: VerificationResult | null; source?: SourceMetrics | null; destination?: DestMetrics | null } = {}) {
    super(message);
    this.verification = details.verification ?? null;
    this.source = details.source ?? null;
    this.destination = details.destination ?? null;
  }
}

const CHILD_PATH = fileURLToPath(new URL("./child.ts", import.meta.url));
const TSX_LOADER = pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href;
const SIDE_REPORT_GRACE_MS = 5_000;
/** How long a child may take to exit when told to, before SIGKILL. */
const EXIT_GRACE_MS = 2_000;
/**
 * V8 flags for both children. Their JavaScript heap stays small (about 8 MB live) while they move
 * gigabytes through socket and frame buffers, and for so small a heap V8's first old-generation
 * limits sit barely above the young generation's capacity: without this it ran a full
 * mark-compact every 40 to 70 ms that freed nothing (50 to 85 per 1 GiB postcopy on the
 * destination, each a pause of up to 10 ms on an idle machine, the demand faults' tail). A
 * 128 MiB starting old space leaves the major collections to external memory, 15 to 17 per GiB,
 * almost all of them while each side allocates its guest RAM before the transfer (`--trace-gc`);
 * the heap still grows only with what it holds.
 *
 * `--v8-pool-size=1`: one V8 worker thread per child instead of Node's default four. The two children's
 * main threads keep both CPUs of a small host busy during the transfer; every extra runnable
 * worker thread (parallel scavenges, concurrent marking and compilation) takes a CPU from one of
 * them, and a demand request or page then waits for its process to get one back. With a single
 * worker the unlimited link's fault p99 was lower in 6 of 8 alternating pairs, throughput the same
 * (docs/benchmarks.md, "The unlimited link's fault tail").
 *
 * `--expose-gc`: the destination collects the scratch guests of its rehearsal (see
 * MigrationDestination.rehearse) before it reports ready, not during the transfer.
 */
export const CHILD_V8_FLAGS = ["--initial-old-space-size=128", "--v8-pool-size=1", "--expose-gc"];
/**
 * glibc's malloc settings for both children (GLIBC_TUNABLES, unless the environment already has
 * some): keep up to 256 MiB of freed heap instead of returning it to the kernel (the default
 * trims past 128 KiB), and grow the heap 64 MiB at a time. Node allocates a new 64 KiB buffer
 * for every socket read and frees it when V8 collects it; trimmed, the heap took each buffer's
 * pages back with a host page fault per 4 KiB (12,000 to 30,000 per GiB on the destination, the
 * socket's copy into fresh memory). Lower destination CPU in four of four alternating pairs
 * (docs/benchmarks.md, "Where the time goes").
 */
export const CHILD_MALLOC_TUNABLES = "glibc.malloc.trim_threshold=268435456:glibc.malloc.top_pad=67108864";
/**
 * Extra node flags for both children (after CHILD_V8_FLAGS), e.g.
 * LM_CHILD_FLAGS="--cpu-prof --cpu-prof-dir=/tmp/prof"; read at each fork, so a bench can try
 * several sets in one run.
 */
function extraChildFlags(): string[] {
  return (process.env["LM_CHILD_FLAGS"] ?? "").split(/\s+/).filter((f) => f !== "");
}

/** One child process and the messages it sent, with waits on them. */
class Child {
  readonly role: Role;
  readonly proc: ChildProcess;
  readonly #inbox: FromChild[] = [];
  readonly #waiters: Array<{ match: (m: FromChild) => boolean; resolve: (m: FromChild) => void }> = [];
  exited: string | null = null;
  /** Resolves when the process has exited. */
  readonly exitedPromise: Promise<void>;
  /** The first failure this side reported, or its death: whichever comes first. */
  readonly failure: Promise<string>;
  #reportFailure!: (why: string) => void;

  constructor(role: Role, onMessage: (m: FromChild) => void) {
    this.role = role;
    this.failure = new Promise((resolve) => {
      this.#reportFailure = resolve;
    });
    this.proc = fork(CHILD_PATH, [role], {
      execArgv: ["--import", TSX_LOADER, ...CHILD_V8_FLAGS, ...extraChildFlags()],
      env: { ...process.env, GLIBC_TUNABLES: process.env["GLIBC_TUNABLES"] ?? CHILD_MALLOC_TUNABLES },
      serialization: "advanced",
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    this.proc.on("message", (m: FromChild) => {
      onMessage(m);
      if (m.ev === "error" || m.ev === "failed") this.#reportFailure(m.message);
      const i = this.#waiters.findIndex((w) => w.match(m));
      if (i >= 0) this.#waiters.splice(i, 1)[0]!.resolve(m);
      else if (m.ev !== "progress") this.#inbox.push(m);
    });
    this.exitedPromise = new Promise((resolve) => this.proc.once("exit", () => resolve()));
    this.proc.on("exit", (code, signal) => {
      this.exited = signal !== null ? `killed by ${signal}` : `exited with code ${code}`;
      this.#reportFailure(`the ${role} process ${this.exited}`);
    });
    this.proc.on("error", (e) => {
      this.exited ??= `failed: ${e.message}`;
      this.#reportFailure(`the ${role} process ${this.exited}`);
    });
  }

  send(msg: ToChild): void {
    if (this.exited === null && this.proc.connected) this.proc.send(msg);
  }

  /** The first message (already received or future) that matches. */
  next<T extends FromChild>(match: (m: FromChild) => m is T): Promise<T> {
    const i = this.#inbox.findIndex(match);
    if (i >= 0) return Promise.resolve(this.#inbox.splice(i, 1)[0] as T);
    return new Promise((resolve) => this.#waiters.push({ match, resolve: (m) => resolve(m as T) }));
  }

  kill(): void {
    if (this.exited === null) this.proc.kill("SIGKILL");
  }
}

const is =
  <E extends FromChild["ev"]>(...evs: E[]) =>
  (m: FromChild): m is Extract<FromChild, { ev: E }> =>
    (evs as string[]).includes(m.ev);

/** `p`, or null once `ms` have passed; the timer is cleared when `p` settles first, so it keeps no process alive. */
function within<T>(p: Promise<T>, ms: number): Promise<T | null> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<null>((resolve) => {
    timer = setTimeout(() => resolve(null), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new MigrationError(`timed out after ${Math.round(ms)} ms ${what}`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** Runs one migration end to end. Rejects with MigrationError when it did not complete. */
export async function runMigration(config: MigrationConfig, hooks: RunHooks = {}): Promise<MigrationResult> {
  let resumed = false;
  const onMessage = (role: Role) => (m: FromChild) => {
    if (m.ev === "progress") {
      hooks.progress?.(role, m.phase, m.done, m.total);
      const kill = config.faults.killSourceAfterPostcopyPages;
      if (role === "source" && m.phase === "postcopy" && kill !== undefined && m.done >= kill) source.kill();
    } else if (m.ev === "resumed" || m.ev === "complete" || m.ev === "failed") {
      if (m.ev === "resumed" && role === "destination") resumed = true;
      hooks.event?.(role, m.ev === "failed" ? `failed: ${m.message}` : m.ev);
    }
  };
  const source = new Child("source", onMessage("source"));
  const dest = new Child("destination", onMessage("destination"));
  const killBoth = (): void => {
    source.kill();
    dest.kill();
  };
  process.once("exit", killBoth);
  try {
    const run: Run = { config, source, dest, resumed: () => resumed, oracle: source.next(is("oracle")).then((m) => m.versions) };
    return await withTimeout(drive(run), config.timeoutMs, `running the ${config.strategy} migration (--timeout)`);
  } finally {
    source.send({ cmd: "exit" });
    dest.send({ cmd: "exit" });
    await within(Promise.all([source.exitedPromise, dest.exitedPromise]), EXIT_GRACE_MS);
    killBoth();
    process.off("exit", killBoth);
  }
}

/** One run's moving parts. The oracle (the source's page versions) arrives after switchover. */
interface Run {
  config: MigrationConfig;
  source: Child;
  dest: Child;
  resumed: () => boolean;
  oracle: Promise<Uint32Array>;
}

async function drive(run: Run): Promise<MigrationResult> {
  const { config, source, dest } = run;
  // The HELLO token: a fresh secret per run, handed to both sides over IPC, so the destination
  // accepts only this source, not the first process on the host to connect to its port.
  const token = randomBytes(16).toString("hex");
  for (const c of [source, dest]) c.send({ cmd: "init", role: c.role, config, token });
  const failed = Promise.race([source.failure.then((m) => ({ side: source, m })), dest.failure.then((m) => ({ side: dest, m }))]);
  const ready = Promise.all([source.next(is("ready")), dest.next(is("ready"))]);
  const first = await Promise.race([ready, failed]);
  if (!Array.isArray(first)) throw new MigrationError(`start-up failed: ${first.m}`);
  const startEpochMs = nowEpochMs();
  source.send({ cmd: "migrate", port: first[1].port!, startEpochMs });
  const outcome = await Promise.race([dest.next(is("complete")).then(() => null), failed]);
  if (outcome !== null) return fail(run, outcome.side, outcome.m);
  await sleep(config.runAfterMs);
  const o = await Promise.race([run.oracle, failed.then((f) => Promise.reject(new MigrationError(f.m)))]);
  dest.send({ cmd: "verify", oracle: o });
  const [d, s] = await Promise.all([
    Promise.race([dest.next(is("dest-result")), failed.then((f) => Promise.reject(new MigrationError(f.m)))]),
    Promise.race([source.next(is("source-result")), failed.then((f) => Promise.reject(new MigrationError(f.m)))]),
  ]);
  return buildResult(config, startEpochMs, s.metrics, d.metrics, d.verification);
}

/**
 * A side failed. If the guest was already running on the destination (postcopy), ask it to check
 * what it has, so the error can say whether memory stayed correct. The message leads with the
 * destination's account (it knows what the guest lost), then each side's own words.
 */
async function fail(run: Run, side: Child, message: string): Promise<never> {
  const { source, dest } = run;
  const other = side === source ? dest : source;
  const otherView = await within(other.failure, SIDE_REPORT_GRACE_MS);
  const views = new Map<Role, string>([[side.role, message]]);
  if (otherView !== null) views.set(other.role, otherView);
  const leadRole: Role = views.has("destination") ? "destination" : side.role;
  const lead = views.get(leadRole)!;
  const details = [...views]
    .filter(([role]) => role !== leadRole)
    .map(([role, text]) => `\n  ${role} reported: ${stripRole(text)}`)
    .join("");
  if (!run.resumed()) throw new MigrationError(`migration failed before the destination ran the guest (its memory on the source is intact): ${stripRole(lead)}${details}`);
  const o = await within(run.oracle, SIDE_REPORT_GRACE_MS);
  if (o === null) throw new MigrationError(`migration failed after the guest moved: ${stripRole(lead)}${details}\n  the source died before handing over its page versions: the destination's memory cannot be checked`);
  if (dest.exited !== null) throw new MigrationError(`migration failed after the guest moved: ${stripRole(lead)}${details}\n  the destination process ${dest.exited}`);
  dest.send({ cmd: "verify", oracle: o });
  const result = await within(dest.next(is("dest-result")), SIDE_REPORT_GRACE_MS * 4);
  if (result === null) throw new MigrationError(`migration failed after the guest moved: ${stripRole(lead)}${details}\n  the destination could not check its memory`);
  const v = result.verification;
  const memory = v.ok
    ? `\n  destination memory check: ${v.pagesChecked} received pages are correct; the ${v.missingPages} missing pages are unmapped (none was filled with zeros or other data); ${result.metrics.blockedThreads} guest threads are blocked waiting for missing pages`
    : `\n  destination memory check FAILED: ${v.mismatchedPages} wrong pages, ${v.filledMissingPages} missing pages were filled, ${v.staleReads} stale reads`;
  throw new MigrationError(`migration failed: ${stripRole(lead)}${details}${memory}`, { verification: v, destination: result.metrics });
}

function stripRole(text: string): string {
  return text.replace(/^(source|destination): /, "");
}

function buildResult(config: MigrationConfig, startEpochMs: number, s: SourceMetrics, d: DestMetrics, verification: VerificationResult): MigrationResult {
  const totalTimeMs = d.completeEpochMs - startEpochMs;
  const downtimeMs = d.resumeEpochMs - d.sourcePauseEpochMs;
  const receiverBound = s.linkBlockedMs >= 0.1 * totalTimeMs;
  const sent = s.sent;
  const bytesS2D = s.bytesSent;
  return {
    strategy: config.strategy,
    config,
    trackingMethod: s.trackingMethod,
    kernels: {
      source: { release: config.kernel.source, uses: s.trackingMethod === "none" ? "none" : `${s.trackingMethod} dirty tracking`, fallbacks: s.fallbacks ?? [] },
      destination: { release: config.kernel.destination, uses: d.postcopyMethod === null ? "none" : "UFFDIO_COPY / UFFDIO_ZEROPAGE", fallbacks: d.fallbacks ?? [] },
    },
    notes: [
      ...[...(s.fallbacks ?? []).map((f) => ["source", f] as const), ...(d.fallbacks ?? []).map((f) => ["destination", f] as const)].map(
        ([side, f]) => `${side} kernel ${config.kernel[side]}: ${f.used} instead of ${f.wanted} (${f.reason})`,
      ),
      ...s.notes,
      ...(d.postcopyMethod !== null ? [`postcopy faults: ${d.postcopyMethod}`] : []),
      ...(d.rehearsal ? [`the destination rehearsed its install path on a scratch guest before the source connected (${d.rehearsal.pages} pages, ${Math.round(d.rehearsal.ms)} ms)`] : []),
      `frame store: ${config.frameStore} on both sides (${config.frameStore === "compact" ? "pages the content model generates cost no 4 KiB of host memory" : "4 KiB of host memory per written page"})`,
      ...(config.strategy !== "precopy" ? [s.preempt ? "postcopy-preempt: demand requests and pages on their own connection" : "single stream: demand pages queue behind the bulk connection's send buffer"] : []),
      ...(receiverBound ? [`the destination, not the link, bounded throughput (the bulk socket refused data for ${Math.round(s.linkBlockedMs)} ms)`] : []),
    ],
    guestPages: guestPages(config),
    totalTimeMs,
    downtimeMs,
    switchoverAtMs: s.pauseEpochMs - startEpochMs,
    virtual: {
      sourceNs: s.virtualNs.end - s.virtualNs.start,
      destinationNs: d.virtualNs.complete - d.virtualNs.hello,
      downtimeNs: s.virtualNs.deviceStateSent - s.virtualNs.pause + (d.virtualNs.resume - d.virtualNs.switchover),
    },
    pages: {
      precopy: sent.precopy,
      stopCopy: sent.stopCopy,
      demand: sent.demand,
      background: sent.background,
      zero: sent.zero,
      duplicate: sent.duplicate,
      total: sent.precopy + sent.stopCopy + sent.demand + sent.background,
    },
    rounds: s.rounds,
    bytes: { sourceToDestination: bytesS2D, destinationToSource: d.bytesSent, total: bytesS2D + d.bytesSent },
    throughputMBps: totalTimeMs > 0 ? bytesS2D / 1e6 / (totalTimeMs / 1000) : 0,
    faults: d.faults,
    guest: {
      opsOnSource: s.guestOps,
      opsOnDestination: d.guestOps,
      sourceMismatches: s.mismatches,
      corruptReads: s.corruptReads + d.corruptReads,
      errors: [...(s.workloadError !== null ? [`source: ${s.workloadError}`] : []), ...(d.workloadError !== null ? [`destination: ${d.workloadError}`] : [])],
    },
    timeline: d.timeline,
    opsTimeline: [...s.opsTimeline, ...d.opsTimeline],
    verification,
    guestDowntimeMs: d.firstProgressEpochMs > 0 ? d.firstProgressEpochMs - d.sourcePauseEpochMs : downtimeMs,
    faultBlockedMs: (d.faults.meanUs * d.faults.count) / 1000,
    hostMemory: { sourceMaxRssBytes: s.maxRssBytes ?? 0, destinationMaxRssBytes: d.maxRssBytes ?? 0, guestBytes: config.memoryBytes },
    ...(s.cpu !== undefined && d.cpu !== undefined ? { hostCpu: { source: s.cpu, destination: d.cpu } } : {}),
    transport: {
      preempt: s.preempt,
      sendBufferBytes: sendBufferBytes(config.link),
      receiverBlockedMs: s.linkBlockedMs,
      receiverBound,
      demandQueuedAhead: s.demandQueuedAhead,
    },
  };
}
