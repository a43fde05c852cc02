/**
 * The native execution: compiles native/uffd-conform.c with the system C compiler (at test
 * time; no binary is committed) and drives it over a pipe, one primitive per line.
 *
 * `probeHost()` says whether this machine can answer at all (Linux, root or the capabilities
 * behind /dev/userfaultfd and /proc/kpageflags, a C compiler) and, if not, why, in one line.
 */
import { type ChildProcessWithoutNullStreams, execFile, spawn } from "node:child_process";
import { accessSync, constants, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import { release, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface, type Interface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { Backend, ExecReply, PmEntry, RawResult, World } from "./backend.ts";

const HERE = dirname(fileURLToPath(import.meta.url));
const SOURCE = join(HERE, "..", "native", "uffd-conform.c");
const CFLAGS = ["-O2", "-Wall", "-pthread"];

/** What the runner found out about the host kernel when it started. */
export interface HostInfo {
  /** uname -r. */
  release: string;
  /** An anonymous read fault mapped the shared zero page (false on a pvm_no_zero_page host). */
  readFaultMapsZeroPage: boolean;
  /** /proc/cmdline carries pvm_no_zero_page=1. */
  pvmNoZeroPage: boolean;
  /** The CPU the runner pinned itself to. */
  cpu: number;
  /** Active swap devices (from /proc/swaps) other than ones the harness made, when the runner started. */
  swaps: string[];
  /** /sys/class/zram-control exists: the runner can make its own zram swap device. */
  zram: boolean;
  /** Why io_uring_setup(2) failed when the runner started (pin steps cannot run), or null. */
  ioUringUnavailable: string | null;
}

/** A swap device the harness did not set up is active (/proc/swaps): the run is refused. */
export class ForeignSwapError extends Error {
  /** "ForeignSwapError". */
  override name = "ForeignSwapError";
  /** The devices, as /proc/swaps names them. */
  readonly devices: readonly string[];
  constructor(devices: readonly string[]) {
    super(`a swap device the harness did not set up is active (${devices.join(", ")}): MADV_PAGEOUT would write to it, so the results would depend on it; swapoff it first`);
    this.devices = devices;
  }
}

/** The runner could not set up its zram swap device for a scenario that needs swap. */
export class NoSwapError extends Error {
  /** "NoSwapError". */
  override name = "NoSwapError";
}

/** Whether this host can run the native side, and why not. */
export type HostProbe =
  | {
      /** The native side can run. */
      ok: true;
    }
  | {
      /** The native side cannot run. */
      ok: false;
      /** Why (no compiler, no /dev/userfaultfd, not root, ...). */
      reason: string;
    };

function canRead(path: string): boolean {
  try {
    accessSync(path, constants.R_OK);
    return true;
  } catch {
    return false;
  }
}

/** Whether the host can run the native side; the reason is one line. */
export function probeHost(): HostProbe {
  if (process.platform !== "linux") return { ok: false, reason: `userfaultfd is Linux-only (this is ${process.platform})` };
  if (!existsSync("/dev/userfaultfd") && !existsSync("/proc/sys/vm/unprivileged_userfaultfd")) {
    return { ok: false, reason: "this kernel has no userfaultfd (no /dev/userfaultfd, no vm.unprivileged_userfaultfd)" };
  }
  if (!canRead("/proc/kpageflags") || !canRead("/proc/kpagecount")) {
    return { ok: false, reason: "/proc/kpageflags is not readable (needs root or CAP_SYS_ADMIN)" };
  }
  if (process.getuid?.() !== 0) return { ok: false, reason: "not root: userfaultfd(2) for kernel faults and pagemap PFNs need root or CAP_SYS_PTRACE/CAP_SYS_ADMIN" };
  return { ok: true };
}

/** Host facts the report names: the release and the quirks the comparer must account for. */
export function hostFacts(): Pick<HostInfo, "release" | "pvmNoZeroPage" | "swaps"> {
  // swaps here is read without the runners' turn-taking lock (see native/uffd-conform.c), so it
  // may show another runner's device; the runner's own reading (HostInfo.swaps) does not.
  let cmdline = "";
  let swaps: string[] = [];
  try {
    cmdline = readFileSync("/proc/cmdline", "utf8");
  } catch {}
  try {
    swaps = readFileSync("/proc/swaps", "utf8").trim().split("\n").slice(1).map((l) => l.split(/\s+/)[0] as string);
  } catch {}
  return { release: release(), pvmNoZeroPage: /(^|\s)pvm_no_zero_page=1(\s|$)/.test(cmdline), swaps };
}

function run(file: string, args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { encoding: "utf8", timeout: 120_000 }, (error, _stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === "number" ? error.code : -1) : 0, stderr: error && !stderr ? error.message : stderr });
    });
  });
}

/** Compiles the runner unless an up-to-date binary exists; returns its path. */
export async function compileRunner(outDir?: string): Promise<string> {
  let dir = outDir ?? join(HERE, "..", "native");
  try {
    accessSync(dir, constants.W_OK);
  } catch {
    dir = join(tmpdir(), "uffd-conform");
  }
  mkdirSync(dir, { recursive: true });
  const binary = join(dir, "uffd-conform");
  const srcTime = statSync(SOURCE).mtimeMs;
  if (existsSync(binary) && statSync(binary).mtimeMs >= srcTime) return binary;
  const tmp = `${binary}.${process.pid}.tmp`;
  const cc = process.env["CC"] ?? "cc";
  const { code, stderr } = await run(cc, [...CFLAGS, "-o", tmp, SOURCE]);
  if (code !== 0) {
    rmSync(tmp, { force: true });
    throw new Error(`${cc} could not build ${SOURCE}: ${stderr.trim().split("\n").slice(-5).join(" | ")}`);
  }
  renameSync(tmp, binary);
  return binary;
}

function decodePm(raw: [string, number, string]): PmEntry {
  const e = BigInt(`0x${raw[0]}`);
  const flags = BigInt(`0x${raw[2]}`);
  const bit = (v: bigint, n: number): boolean => ((v >> BigInt(n)) & 1n) === 1n;
  const present = bit(e, 63);
  return {
    present,
    swapped: bit(e, 62),
    file: bit(e, 61),
    exclusive: bit(e, 56),
    uffdWp: bit(e, 57),
    guard: bit(e, 58),
    pfn: present ? Number(e & ((1n << 55n) - 1n)) : null,
    count: raw[1],
    // include/uapi/linux/kernel-page-flags.h
    anon: bit(flags, 12),
    dirty: bit(flags, 4),
    swapcache: bit(flags, 13), // KPF_SWAPCACHE (15 is KPF_COMPOUND_HEAD)
    zero: bit(flags, 24),
  };
}

/** The real-kernel side: the C runner (native/uffd-conform.c), compiled on first use and driven over a pipe. */
export class NativeBackend implements Backend {
  /** "native". */
  readonly kind = "native" as const;
  #child: ChildProcessWithoutNullStreams | null = null;
  #lines: Interface | null = null;
  #queue: string[] = [];
  #waiters: Array<(line: string | null) => void> = [];
  #stderr = "";
  /** What the runner reported about the host, once started. */
  host: HostInfo | null = null;

  /** Starts the runner (compiling it if needed) and reads its host line. */
  async start(): Promise<HostInfo> {
    const binary = await compileRunner();
    const child = spawn(binary, [], { stdio: ["pipe", "pipe", "pipe"] });
    this.#child = child;
    child.stderr.on("data", (d: Buffer) => {
      this.#stderr = (this.#stderr + d.toString()).slice(-2000);
    });
    this.#lines = createInterface({ input: child.stdout });
    this.#lines.on("line", (line) => {
      const w = this.#waiters.shift();
      if (w) w(line);
      else this.#queue.push(line);
    });
    this.#lines.on("close", () => {
      for (const w of this.#waiters.splice(0)) w(null);
    });
    const first = JSON.parse(await this.#next()) as { readFaultMapsZeroPage: number; cpu: number; ioUringErrno: number; swaps: string[]; zram: number };
    const facts = hostFacts();
    let ioUringUnavailable: string | null = null;
    if (first.ioUringErrno !== 0) {
      let sysctl = "";
      try {
        sysctl = ` (kernel.io_uring_disabled = ${readFileSync("/proc/sys/kernel/io_uring_disabled", "utf8").trim()})`;
      } catch {}
      ioUringUnavailable = `io_uring_setup(2) fails with errno ${first.ioUringErrno}${sysctl}`;
    }
    this.host = { ...facts, swaps: first.swaps, zram: first.zram === 1, readFaultMapsZeroPage: first.readFaultMapsZeroPage === 1, cpu: first.cpu, ioUringUnavailable };
    return this.host;
  }

  #next(): Promise<string> {
    const q = this.#queue.shift();
    if (q !== undefined) return Promise.resolve(q);
    return new Promise((resolve, reject) => {
      this.#waiters.push((line) => (line === null ? reject(new Error(`uffd-conform exited: ${this.#stderr.trim()}`)) : resolve(line)));
    });
  }

  #send(line: string): void {
    if (this.#child === null) throw new Error("the native runner is not started");
    this.#child.stdin.write(`${line}\n`);
  }

  /**
   * A fresh world. With `world.swap` the runner turns its own zram device on for this scenario
   * (making it the first time); throws NoSwapError when it cannot. Throws ForeignSwapError when
   * a swap device the harness did not set up is active: MADV_PAGEOUT would write to it.
   */
  async reset(world: World = {}): Promise<void> {
    if (this.#child === null) await this.start();
    this.#wedged = null;
    this.#send(world.swap === true ? "RESET swap" : "RESET");
    const r = JSON.parse(await this.#next()) as { swap: number; foreign: string[]; noswap?: string };
    if (r.foreign.length > 0) throw new ForeignSwapError(r.foreign);
    if (r.noswap !== undefined) throw new NoSwapError(r.noswap);
  }

  async live(proc: number): Promise<void> {
    this.#send(`LIVE ${proc}`);
    await this.#next();
  }

  churn(): null {
    return null;
  }

  zeroMapped(): null {
    return null;
  }

  /** Why a step of this scenario never settled: later steps are not run (see exec()). */
  #wedged: string | null = null;

  async exec(proc: number, id: number, op: string, args: readonly number[]): Promise<ExecReply> {
    // After a step that never settled (a thread busy in the kernel: Linux's MADV_GUARD_INSTALL
    // livelock) every later step would wait its 10 s too; they are reported as not run instead.
    if (this.#wedged !== null) return { r: { bad: `not run: ${this.#wedged}` }, done: [] };
    this.#send(`${id} ${proc} ${op} ${args.map((a) => (a < 0 ? String(a) : `0x${a.toString(16)}`)).join(" ")}`);
    const reply = JSON.parse(await this.#next()) as Record<string, unknown>;
    const fix = (r: RawResult & { pm?: unknown }): RawResult => {
      if (Array.isArray(r.pm)) r.pm = (r.pm as unknown as [string, number, string][]).map(decodePm);
      return r;
    };
    const done: { id: number; r: RawResult }[] = [];
    const collect = (list: unknown): void => {
      for (const d of (list as { id: number; r: RawResult }[] | undefined) ?? []) done.push({ id: d.id, r: fix(d.r) });
    };
    collect(reply["done"]);
    for (const [k, v] of Object.entries(reply)) if (/^p\d+$/.test(k)) collect((v as { done: unknown }).done);
    let r = fix(reply["r"] as RawResult);
    const unsettled = reply["settled"] === 0 || Object.entries(reply).some(([k, v]) => /^p\d+$/.test(k) && (v as { settled: number }).settled === 0);
    if (unsettled) {
      r = { ...r, bad: `a step thread neither finished nor slept on a userfaultfd within 10 s (wchan ${String(reply["wchan"] ?? "?")})` };
      this.#wedged = `step ${id} never settled`;
    }
    done.sort((a, b) => a.id - b.id);
    return { r, done };
  }

  /**
   * What /proc/swaps listed after the runner turned its swap off and removed its zram device,
   * read in the runners' shared turn (no runner has swap on then): empty unless a swap device
   * the harness did not make is active. Null until close().
   */
  swapsAtEnd: string[] | null = null;

  /** Stops the runner: its scenario processes, its swap and its zram device go first. */
  async close(): Promise<void> {
    const child = this.#child;
    if (child === null) return;
    try {
      this.#send("END");
      const end = JSON.parse(await this.#next()) as { zram: number; swaps: string[] };
      this.swapsAtEnd = end.zram >= 0 ? [...end.swaps, `zram${end.zram} (not removed)`] : end.swaps;
    } catch {}
    this.#child = null;
    child.stdin.end();
    await new Promise<void>((resolve) => {
      if (child.exitCode !== null) resolve();
      else child.once("exit", () => resolve());
    });
  }
}
