#!/usr/bin/env -S node --import tsx
/**
 * The two-command form, one command per host (in the spirit of QEMU's `-incoming`):
 *
 *   LM_TOKEN=<secret> tsx src/two-host.ts migrate-dest   --listen 0.0.0.0:4444 [options]
 *   LM_TOKEN=<secret> tsx src/two-host.ts migrate-source --connect desthost:4444 [options]
 *
 * Both sides must be given the same guest options (--memory, --seed; the HELLO checks them) and
 * the same token (`--token`, or LM_TOKEN to keep it off the process list): the destination
 * refuses any connection whose HELLO does not carry it. Each command prints one JSON line with
 * its side's metrics and exits 0 on success. The destination checks its memory byte for byte:
 * against the source's page versions when `--oracle <file>` names a file the source writes
 * (`--oracle <file>` on the source too: a shared directory, or a copy), else every page must be
 * exactly the bytes of the version its own header names (a self-consistency check: wrong,
 * mixed or torn pages fail it, a page that missed its last update does not).
 */
import { readFile, writeFile } from "node:fs/promises";
import { pathToFileURL } from "node:url";
import { Command, Option } from "commander";
import { DEFAULT_RELEASE, type AnyRelease } from "@uffd/kernel";
import { guestPages, KERNEL_CHOICES, makeConfig, parseBandwidth, parseDuration, parseSize, parseWorkload, STRATEGIES, type MigrationConfig, type Strategy } from "./config.ts";
import { MigrationDestination, type DestMetrics } from "./dest.ts";
import { nowEpochMs, type VerificationResult } from "./metrics.ts";
import { MigrationSource, type SourceMetrics } from "./source.ts";

export interface TwoHostOptions {
  strategy: Strategy;
  memory: string;
  seed: string;
  workload: string;
  latency: string;
  bandwidth: string;
  preempt: boolean;
  warmup: string;
  runAfter: string;
  timeout: string;
  token?: string;
  oracle?: string;
  /** This host's kernel release profile (each side has its own; default 6.18). */
  kernel?: AnyRelease;
}

export function twoHostConfig(o: TwoHostOptions): MigrationConfig {
  return makeConfig({
    strategy: o.strategy,
    memoryBytes: parseSize(o.memory),
    seed: Number(o.seed),
    workload: parseWorkload(o.workload),
    link: { latencyMs: parseDuration(o.latency), bandwidthBytesPerSec: parseBandwidth(o.bandwidth) },
    postcopyPreempt: o.preempt,
    warmupMs: parseDuration(o.warmup),
    runAfterMs: parseDuration(o.runAfter),
    timeoutMs: parseDuration(o.timeout),
    // Each command runs one side, on this host's release: the other side's entry is unused.
    kernel: { source: o.kernel ?? DEFAULT_RELEASE, destination: o.kernel ?? DEFAULT_RELEASE },
  });
}

function tokenOf(o: TwoHostOptions): string {
  const t = o.token ?? process.env["LM_TOKEN"];
  if (t === undefined || t.length < 16) throw new RangeError("a token of at least 16 characters is required (--token or LM_TOKEN), the same on both sides");
  return t;
}

/** "host:port" -> parts (IPv6 as [::1]:4444). */
export function parseHostPort(text: string): { host: string; port: number } {
  const m = /^\[?([^\]]*?)\]?:(\d+)$/.exec(text.trim());
  const port = m === null ? NaN : Number(m[2]);
  if (m === null || m[1] === "" || !(Number.isInteger(port) && port >= 0 && port <= 65535)) throw new RangeError(`not host:port: "${text}"`);
  return { host: m[1]!, port };
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms ${what}`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

export interface DestOutcome {
  role: "destination";
  ok: boolean;
  error: string | null;
  oracle: "source" | "self";
  verification: VerificationResult | null;
  metrics: DestMetrics;
}

/** Runs the destination side: listen, receive, resume, verify. `onListening` gets the bound port. */
export async function runDestCommand(o: TwoHostOptions & { listen: string }, onListening: (host: string, port: number) => void): Promise<DestOutcome> {
  const config = twoHostConfig(o);
  const { host, port } = parseHostPort(o.listen);
  let settle!: (err: string | null) => void;
  const done = new Promise<string | null>((resolve) => {
    settle = resolve;
  });
  const dest = await MigrationDestination.create(
    config,
    { progress: () => {}, resumed: () => {}, complete: () => settle(null), failed: (m) => settle(m), rejected: (r) => process.stderr.write(`migrate-dest: ${r}\n`) },
    tokenOf(o),
  );
  onListening(host, await dest.listen(host, port));
  try {
    const error = await withTimeout(done, config.timeoutMs, "waiting for the migration");
    await new Promise((r) => setTimeout(r, config.runAfterMs));
    let oracle: Uint32Array;
    let kind: DestOutcome["oracle"] = "self";
    if (o.oracle !== undefined && error === null) {
      oracle = await readOracle(o.oracle, guestPages(config), config.timeoutMs);
      kind = "source";
    } else {
      oracle = await dest.selfOracle();
    }
    const verification = await dest.verify(oracle, () => {});
    return { role: "destination", ok: error === null && verification.ok, error, oracle: kind, verification, metrics: dest.metrics() };
  } catch (e) {
    return { role: "destination", ok: false, error: e instanceof Error ? e.message : String(e), oracle: "self", verification: null, metrics: dest.metrics() };
  } finally {
    await dest.dispose();
  }
}

/** The oracle file: u32 little-endian page versions, written by the source at switchover. */
async function readOracle(path: string, pages: number, timeoutMs: number): Promise<Uint32Array> {
  const t0 = performance.now();
  for (;;) {
    try {
      const b = await readFile(path);
      if (b.byteLength === pages * 4) return new Uint32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
    } catch {
      // not written yet
    }
    if (performance.now() - t0 > timeoutMs) throw new Error(`no oracle of ${pages} pages in ${path}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface SourceOutcome {
  role: "source";
  ok: boolean;
  error: string | null;
  metrics: SourceMetrics;
}

/** Runs the source side: boot, warm up, connect, migrate. */
export async function runSourceCommand(o: TwoHostOptions & { connect: string }): Promise<SourceOutcome> {
  const config = twoHostConfig(o);
  const target = parseHostPort(o.connect);
  let oracleWritten: Promise<void> = Promise.resolve();
  const source = await MigrationSource.boot(config, {
    progress: () => {},
    oracle: (versions) => {
      if (o.oracle !== undefined) oracleWritten = writeFile(o.oracle, new Uint8Array(versions.buffer, versions.byteOffset, versions.byteLength));
    },
  });
  try {
    await new Promise((r) => setTimeout(r, config.warmupMs));
    const metrics = await withTimeout(source.migrate(target, nowEpochMs(), tokenOf(o)), config.timeoutMs, "migrating");
    await oracleWritten;
    return { role: "source", ok: true, error: null, metrics };
  } catch (e) {
    return { role: "source", ok: false, error: e instanceof Error ? e.message : String(e), metrics: source.partialMetrics() };
  } finally {
    await source.dispose();
  }
}

function addOptions(cmd: Command): Command {
  return cmd
    .option("--strategy <name>", `migration strategy (${STRATEGIES.join(", ")})`, "hybrid")
    .option("--memory <size>", "guest memory (the same on both sides)", "256MiB")
    .option("--seed <n>", "seed of the guest (the same on both sides)", "1")
    .option("--workload <threads>", "guest threads as kind:ops-per-second", "hot:8000,scan:4000,random:1000")
    .option("--latency <duration>", "one-way latency added by the shaper", "0ms")
    .option("--bandwidth <rate>", "shaped bandwidth (unlimited: the real network's)", "unlimited")
    .option("--no-preempt", "postcopy on a single stream (no preempt connection)")
    .option("--warmup <duration>", "source: workload time before migrating", "500ms")
    .option("--run-after <duration>", "destination: workload time after migrating", "300ms")
    .option("--timeout <duration>", "give up after this long", "120s")
    .option("--token <secret>", "the shared HELLO token (or LM_TOKEN)")
    .option("--oracle <file>", "source: write the page versions here; destination: verify against them")
    .addOption(new Option("--kernel <release>", "the Linux release this host's simulated kernel answers as (each side its own)").choices(KERNEL_CHOICES).default(DEFAULT_RELEASE));
}

export function buildTwoHostProgram(): Command {
  const program = new Command().name("two-host").description("Run one side of a live migration: migrate-dest on the receiving host, migrate-source on the sending one.");
  addOptions(program.command("migrate-dest").description("wait for a source and receive its guest").requiredOption("--listen <host:port>", "address to listen on (port 0: any; the bound port is printed)")).action(
    async (o: TwoHostOptions & { listen: string }) => {
      const out = await runDestCommand(o, (host, port) => console.log(`listening on ${host}:${port}`));
      console.log(JSON.stringify({ role: out.role, ok: out.ok, error: out.error, oracle: out.oracle, verification: out.verification, faults: out.metrics.faults, received: out.metrics.received, preempt: out.metrics.preempt, kernel: o.kernel ?? DEFAULT_RELEASE, fallbacks: out.metrics.fallbacks ?? [] }));
      process.exitCode = out.ok ? 0 : 1;
    },
  );
  addOptions(program.command("migrate-source").description("boot a guest and migrate it to a waiting destination").requiredOption("--connect <host:port>", "the destination's address")).action(
    async (o: TwoHostOptions & { connect: string }) => {
      const out = await runSourceCommand(o);
      console.log(JSON.stringify({ role: out.role, ok: out.ok, error: out.error, sent: out.metrics.sent, preempt: out.metrics.preempt, demandQueuedAhead: out.metrics.demandQueuedAhead, kernel: o.kernel ?? DEFAULT_RELEASE, trackingMethod: out.metrics.trackingMethod, fallbacks: out.metrics.fallbacks ?? [] }));
      process.exitCode = out.ok ? 0 : 1;
    },
  );
  return program;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  buildTwoHostProgram()
    .parseAsync(process.argv)
    .then(
      () => setTimeout(() => process.exit(), 50),
      (e: unknown) => {
        console.error(`error: ${e instanceof Error ? e.message : String(e)}`);
        process.exit(1);
      },
    );
}
