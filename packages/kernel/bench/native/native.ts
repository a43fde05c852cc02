/**
 * The real-kernel half of `npm run bench`: compiles `uffd-bench.c` with the system C compiler,
 * runs it on this machine's kernel and returns its measurements, parsed and typed.
 *
 * What each metric measures, and how (warm-up runs, medians, pinning), is documented at the top
 * of uffd-bench.c; `NATIVE_METRICS` below is the same list with short labels for tables.
 *
 * Never throws for an environment problem: no C compiler, no userfaultfd (seccomp, permissions,
 * CONFIG_USERFAULTFD=n), a non-Linux host, a crash or a timeout all come back as
 * `{ available: false, kind, reason }` so the bench can print one line and go on.
 *
 *   runNativeBench({ quick: true })  // UFFD_BENCH_QUICK=1: under 1 s instead of ~5 s
 *   tsx packages/kernel/bench/native/native.ts [--quick]   // prints the JSON result
 */
import { type ExecFileException, execFile } from "node:child_process";
import { accessSync, constants, mkdirSync, renameSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

/** Every metric the C program reports, in its output order; `id` is the key in `results`. */
export const NATIVE_METRICS = [
  { id: "nullSyscall", label: "null syscall", what: "syscall(SYS_getppid)" },
  { id: "pipePingPong", label: "pipe ping-pong, same CPU", what: "1 byte there and back between two threads on one CPU" },
  { id: "memcpy4k", label: "memcpy 4 KiB", what: "memcpy() of a cache-warm 4 KiB buffer" },
  { id: "memcpy2m", label: "memcpy 2 MiB", what: "memcpy() of a cache-warm 2 MiB buffer" },
  { id: "memcpyStream2m", label: "memcpy 2 MiB, streaming", what: "memcpy() of 2 MiB into successive windows of a resident 64 MiB buffer" },
  { id: "anonFault", label: "anon write fault", what: "first write to a page of a fresh private anon mapping" },
  { id: "anonFaultWarm", label: "anon write fault, warm", what: "write to a page dropped by MADV_DONTNEED" },
  { id: "pagemapRead", label: "pagemap read, 256 MiB", what: "one pread() of /proc/self/pagemap over 65536 present pages, per entry" },
  { id: "fork64m", label: "fork(), 64 MiB anon", what: "the parent's fork() with 16384 present exclusive pages" },
  { id: "forkExitWait64m", label: "fork+exit+wait, 64 MiB", what: "fork(), child _exit(0), parent waitpid()" },
  { id: "uffdCopy4k", label: "UFFDIO_COPY 4 KiB", what: "fill one missing page, no faulting thread" },
  { id: "uffdCopy2m", label: "UFFDIO_COPY 2 MiB", what: "fill 512 missing pages in one ioctl" },
  { id: "uffdMove4k", label: "UFFDIO_MOVE 4 KiB", what: "move one present exclusive anon page" },
  { id: "wpToggle4k", label: "WRITEPROTECT on+off 4 KiB", what: "protect then unprotect one present page" },
  { id: "wpToggle2m", label: "WRITEPROTECT on+off 2 MiB", what: "protect then unprotect 512 present pages" },
  { id: "rtMissingCopyPinned", label: "missing+COPY round trip, same CPU", what: "write fault resolved by UFFDIO_COPY" },
  { id: "rtMissingCopyUnpinned", label: "missing+COPY round trip, unpinned", what: "write fault resolved by UFFDIO_COPY" },
  { id: "rtMissingZeropagePinned", label: "missing+ZEROPAGE round trip, same CPU", what: "read fault resolved by UFFDIO_ZEROPAGE" },
  { id: "rtMissingZeropageUnpinned", label: "missing+ZEROPAGE round trip, unpinned", what: "read fault resolved by UFFDIO_ZEROPAGE" },
  { id: "rtWpUnprotectPinned", label: "wp+unprotect round trip, same CPU", what: "write fault resolved by UFFDIO_WRITEPROTECT mode 0" },
  { id: "rtWpUnprotectUnpinned", label: "wp+unprotect round trip, unpinned", what: "write fault resolved by UFFDIO_WRITEPROTECT mode 0" },
  { id: "rtMinorContinuePinned", label: "minor+CONTINUE round trip, same CPU", what: "shmem read fault resolved by UFFDIO_CONTINUE" },
  { id: "rtMinorContinueUnpinned", label: "minor+CONTINUE round trip, unpinned", what: "shmem read fault resolved by UFFDIO_CONTINUE" },
  { id: "rtMissingCopySplit", label: "missing+COPY round trip, two CPUs", what: "handler pinned to another CPU than the faulting thread" },
  { id: "rtMissingCopyBatched", label: "missing+COPY round trip, 32 threads, <=64 msgs per read", what: "32 faulting threads and one handler reading up to 64 messages, all on one CPU" },
] as const;

export type NativeMetricId = (typeof NATIVE_METRICS)[number]["id"];

/** One measured operation; every time is the per-op cost of a run of `opsPerRun` operations. */
export interface NativeMetric {
  /** Median over `runs` of the runs' ns/op. */
  readonly nsPerOp: number;
  /** 1e9 / nsPerOp. */
  readonly opsPerSec: number;
  readonly minNsPerOp: number;
  readonly maxNsPerOp: number;
  readonly runs: number;
  readonly opsPerRun: number;
  /** Bytes moved per op, for the copies (memcpy, UFFDIO_COPY, UFFDIO_MOVE). */
  readonly bytesPerOp?: number;
  /** Round trips only: share of faults the handler read on another CPU than the faulting thread's. */
  readonly crossCpuRatio?: number;
}

export interface NativeHost {
  readonly cpuModel: string;
  readonly kernelRelease: string;
  readonly nproc: number;
  readonly allowedCpus: number;
  /** The CPU both threads are pinned to in the *Pinned round trips. */
  readonly pinCpu: number;
  /** The handler's CPU in rtMissingCopySplit, -1 when only one CPU is allowed. */
  readonly splitCpu: number;
  readonly pageSize: number;
  /** How the userfaultfd was obtained: userfaultfd(2), /dev/userfaultfd, or UFFD_USER_MODE_ONLY. */
  readonly uffdSource: "syscall" | "dev" | "syscall-umo";
  /** The features UFFDIO_API offered (requested features = 0). */
  readonly uffdFeatures: number;
}

export interface NativeBenchReport {
  readonly available: true;
  /** Bumped when the JSON shape changes. */
  readonly schema: typeof NATIVE_SCHEMA;
  readonly quick: boolean;
  /** Only the metrics asked for were measured (NativeBenchOptions.metrics). */
  readonly partial?: boolean;
  readonly warmupRuns: number;
  readonly runs: number;
  readonly elapsedMs: number;
  readonly host: NativeHost;
  /** Every id of NATIVE_METRICS is either here or in `skipped`. */
  readonly results: Partial<Record<NativeMetricId, NativeMetric>>;
  /** Metrics the kernel cannot run (missing feature), with the reason. */
  readonly skipped: Partial<Record<NativeMetricId, string>>;
}

export type NativeUnavailableKind = "unsupported-platform" | "no-compiler" | "no-userfaultfd" | "failed";

export interface NativeBenchUnavailable {
  readonly available: false;
  /** no-compiler / no-userfaultfd / unsupported-platform: the host cannot run it; failed: a bug. */
  readonly kind: NativeUnavailableKind;
  readonly reason: string;
}

export type NativeBenchResult = NativeBenchReport | NativeBenchUnavailable;

export interface NativeBenchOptions {
  /** UFFD_BENCH_QUICK=1 (~1 s). Default: the UFFD_BENCH_QUICK environment variable. */
  readonly quick?: boolean;
  /** The C compiler. Default: $CC, then cc, then gcc. */
  readonly cc?: string;
  /** Where the binary goes. Default: next to the source (gitignored), or the OS temp dir. */
  readonly outDir?: string;
  /** Kill the run after this long. Default 120 s. */
  readonly timeoutMs?: number;
  /** Measure only these metrics (default: all). */
  readonly metrics?: readonly NativeMetricId[];
  /** Run the program bound to this CPU (taskset), as the simulator's processes are. Default: unbound. */
  readonly cpu?: number;
}

/** The JSON shape version this module understands. */
export const NATIVE_SCHEMA = 1;

const HERE = dirname(fileURLToPath(import.meta.url));
const SOURCE = join(HERE, "uffd-bench.c");
const BINARY_NAME = "uffd-bench";
const CFLAGS = ["-O2", "-Wall", "-pthread"] as const;
const DEFAULT_TIMEOUT_MS = 120_000;
const OUTPUT_LIMIT = 4 * 1024 * 1024;

interface ExecOutcome {
  readonly error: ExecFileException | null;
  readonly stdout: string;
  readonly stderr: string;
}

function run(file: string, args: readonly string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<ExecOutcome> {
  return new Promise((resolve) => {
    execFile(file, args, { env, timeout: timeoutMs, maxBuffer: OUTPUT_LIMIT, encoding: "utf8" }, (error, stdout, stderr) =>
      resolve({ error, stdout, stderr }),
    );
  });
}

function unavailable(kind: NativeUnavailableKind, reason: string): NativeBenchUnavailable {
  return { available: false, kind, reason };
}

function mtimeMs(path: string): number {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return -1;
  }
}

/** The binary's directory: next to the source unless that is not writable. */
function outputDir(options: NativeBenchOptions): string {
  if (options.outDir !== undefined) {
    mkdirSync(options.outDir, { recursive: true });
    return options.outDir;
  }
  try {
    accessSync(HERE, constants.W_OK);
    return HERE;
  } catch {
    return tmpdir();
  }
}

function compilerCandidates(options: NativeBenchOptions): string[] {
  if (options.cc !== undefined) return [options.cc];
  const fromEnv = process.env["CC"];
  return fromEnv ? [fromEnv] : ["cc", "gcc"];
}

/**
 * Compiles uffd-bench.c unless an up-to-date binary exists. The compiler writes a temp file that
 * is renamed into place, so concurrent runs (a test and a bench) never see a half-written binary.
 */
export async function compileNativeBench(
  options: NativeBenchOptions = {},
): Promise<{ readonly binary: string } | NativeBenchUnavailable> {
  const binary = join(outputDir(options), BINARY_NAME);
  const sourceMtime = mtimeMs(SOURCE);
  if (sourceMtime < 0) return unavailable("failed", `${SOURCE} is missing`);
  if (mtimeMs(binary) >= sourceMtime) return { binary };
  const tmp = `${binary}.${process.pid}.tmp`;
  const tried: string[] = [];
  for (const cc of compilerCandidates(options)) {
    const { error, stderr } = await run(cc, [...CFLAGS, "-o", tmp, SOURCE], process.env, DEFAULT_TIMEOUT_MS);
    if (error?.code === "ENOENT") {
      tried.push(cc);
      continue;
    }
    if (error) {
      rmSync(tmp, { force: true });
      return unavailable("failed", `${cc} could not compile ${SOURCE}: ${tail(stderr || error.message)}`);
    }
    renameSync(tmp, binary);
    return { binary };
  }
  return unavailable("no-compiler", `no C compiler found (tried ${tried.join(", ")}); set CC to build the native benchmark`);
}

function tail(text: string): string {
  const lines = text.trim().split("\n");
  return lines.slice(-5).join(" | ");
}

function isMetric(value: unknown): value is NativeMetric {
  if (typeof value !== "object" || value === null) return false;
  const m = value as Record<string, unknown>;
  return ["nsPerOp", "opsPerSec", "minNsPerOp", "maxNsPerOp", "runs", "opsPerRun"].every(
    (key) => typeof m[key] === "number",
  );
}

/**
 * Parses the one JSON object uffd-bench prints. Checks the shape the consumers rely on: an
 * available report must account for every id of NATIVE_METRICS in `results` or `skipped`.
 */
export function parseNativeReport(stdout: string, asked: readonly NativeMetricId[] | null = null): NativeBenchResult {
  const line = stdout.trim().split("\n").pop() ?? "";
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    return unavailable("failed", `uffd-bench printed no JSON: ${JSON.stringify(line.slice(0, 200))}`);
  }
  const obj = parsed as Record<string, unknown> | null;
  if (obj?.["available"] === false && typeof obj["reason"] === "string") {
    const kind = obj["kind"] === "no-userfaultfd" ? "no-userfaultfd" : "failed";
    return unavailable(kind, obj["reason"]);
  }
  if (obj?.["available"] !== true || obj["schema"] !== NATIVE_SCHEMA) {
    return unavailable("failed", `uffd-bench printed an unexpected JSON object (schema ${String(obj?.["schema"])})`);
  }
  const report = obj as unknown as NativeBenchReport;
  const results = report.results as Record<string, unknown>;
  const skipped = report.skipped as Record<string, unknown>;
  for (const id of asked ?? NATIVE_METRICS.map((m) => m.id)) {
    if (!isMetric(results[id]) && typeof skipped[id] !== "string") {
      return unavailable("failed", `uffd-bench reported neither a result nor a skip reason for ${id}`);
    }
  }
  return report;
}

function isQuick(options: NativeBenchOptions): boolean {
  if (options.quick !== undefined) return options.quick;
  const env = process.env["UFFD_BENCH_QUICK"];
  return env !== undefined && env !== "" && env !== "0";
}

/** Compiles (if needed) and runs the native benchmark; resolves, never rejects for host problems. */
export async function runNativeBench(options: NativeBenchOptions = {}): Promise<NativeBenchResult> {
  if (process.platform !== "linux") {
    return unavailable("unsupported-platform", `userfaultfd is Linux-only (this is ${process.platform})`);
  }
  const built = await compileNativeBench(options);
  if (!("binary" in built)) return built;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const env = { ...process.env, UFFD_BENCH_QUICK: isQuick(options) ? "1" : "0" };
  const ids = options.metrics ?? [];
  const [file, args] = options.cpu === undefined ? [built.binary, [...ids]] : ["taskset", ["-c", String(options.cpu), built.binary, ...ids]];
  const { error, stdout, stderr } = await run(file, args, env, timeoutMs);
  if (error?.killed || error?.signal) {
    const why = error.killed ? `timed out after ${timeoutMs} ms` : `was killed by ${error.signal}`;
    return unavailable("failed", `uffd-bench ${why}: ${tail(stderr)}`);
  }
  const result = parseNativeReport(stdout, options.metrics ?? null);
  if (result.available && error) return unavailable("failed", `uffd-bench exited with ${error.code}: ${tail(stderr)}`);
  return result;
}

/** The one line the bench prints when the real-kernel column cannot be measured. */
export function describeUnavailable(result: NativeBenchUnavailable): string {
  return `real kernel: not measured (${result.kind}): ${result.reason}`;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const result = await runNativeBench(process.argv.includes("--quick") ? { quick: true } : {});
  console.log(JSON.stringify(result, null, 2));
  if (!result.available) process.exitCode = 1;
}
