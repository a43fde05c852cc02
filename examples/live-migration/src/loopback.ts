/**
 * The loopback-TCP limit the migration bench compares with: two bare Node processes, one writing
 * and one reading, with the same node flags and malloc settings as the migration's two children
 * (CHILD_V8_FLAGS, CHILD_MALLOC_TUNABLES), neither pinned, as the children are not.
 *
 * One measurement: the receiver listens; the sender connects and writes a warm-up of
 * `warmupBytes` (not measured: the first transfer between a fresh pair is the slowest, its
 * socket buffers and heaps still growing); the receiver answers with one byte once it has all of
 * it, and from then on both time and count: the sender writes `bytes` more in 1 MiB writes and
 * ends, the receiver reads until the end. Each side reports its wall time and CPU time
 * (`process.cpuUsage()`, all of its threads, as the migration's `hostCpu`) over the measured
 * part as one JSON line on stdout, so the bench can set the migration's CPU per GiB beside the
 * bare pair's: a figure that moves much less with where the scheduler puts the two processes
 * than the rate does.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { CHILD_MALLOC_TUNABLES, CHILD_V8_FLAGS } from "./orchestrator.ts";

/** What one side of the bare pair reports over the measured part. */
export interface BareSideReport {
  role: "sender" | "receiver";
  /** Bytes written (sender) or read (receiver) in the measured part. */
  bytes: number;
  wallMs: number;
  userUs: number;
  systemUs: number;
}

/** One measurement of loopback TCP between two bare Node processes. */
export interface LoopbackMeasurement {
  /** Bytes moved in the measured part (both sides agreed). */
  bytes: number;
  /** The receiver's bytes over its wall time, from its acknowledgement of the warm-up to the end. */
  bytesPerSec: number;
  /** CPU seconds per GiB moved, user and system, of each process over the measured part. */
  senderCpuPerGiB: { user: number; system: number };
  receiverCpuPerGiB: { user: number; system: number };
}

const RECEIVER = `
const net = require("node:net");
const warmup = Number(process.argv[1]);
const server = net.createServer((s) => {
  let got = 0, t0 = 0, cpu0 = null;
  s.on("data", (c) => {
    if (cpu0 === null) {
      got += c.byteLength;
      if (got < warmup) return;
      if (got > warmup) throw new Error("the sender wrote past the warm-up before the answer");
      got = 0; cpu0 = process.cpuUsage(); t0 = performance.now(); s.write(Buffer.of(1));
    } else got += c.byteLength;
  });
  s.on("end", () => {
    const wallMs = performance.now() - t0, cpu = process.cpuUsage(cpu0);
    process.stdout.write(JSON.stringify({ role: "receiver", bytes: got, wallMs, userUs: cpu.user, systemUs: cpu.system }) + "\\n");
    s.end(); server.close();
  });
});
server.listen(0, "127.0.0.1", () => process.stdout.write(JSON.stringify({ port: server.address().port }) + "\\n"));
`;

const SENDER = `
const net = require("node:net");
const [port, warmup, total] = process.argv.slice(1).map(Number);
const chunk = Buffer.alloc(1 << 20, 7);
const s = net.connect({ host: "127.0.0.1", port }, () => {
  s.write(Buffer.alloc(warmup, 7));
  s.once("data", () => {
    const cpu0 = process.cpuUsage(), t0 = performance.now();
    let sent = 0;
    const pump = () => {
      while (sent < total) {
        const n = Math.min(chunk.length, total - sent);
        sent += n;
        if (!s.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return s.once("drain", pump);
      }
      s.end();
    };
    s.on("close", () => {
      const wallMs = performance.now() - t0, cpu = process.cpuUsage(cpu0);
      process.stdout.write(JSON.stringify({ role: "sender", bytes: sent, wallMs, userUs: cpu.user, systemUs: cpu.system }) + "\\n");
    });
    s.resume();
    pump();
  });
});
`;

/** One side's JSON line, checked: throws on anything else (a crashed child must not pass as a rate). */
export function parseBareReport(line: string, role: BareSideReport["role"]): BareSideReport {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    throw new Error(`the bare ${role} printed ${JSON.stringify(line.slice(0, 200))}, not its JSON report`);
  }
  const r = v as Partial<BareSideReport>;
  const num = (x: unknown): x is number => typeof x === "number" && Number.isFinite(x) && x >= 0;
  if (typeof v !== "object" || v === null || r.role !== role || !num(r.bytes) || !num(r.wallMs) || !num(r.userUs) || !num(r.systemUs)) {
    throw new Error(`the bare ${role}'s report is malformed: ${line.slice(0, 200)}`);
  }
  return {
    role,
    bytes: r.bytes,
    wallMs: r.wallMs,
    userUs: r.userUs,
    systemUs: r.systemUs,
  };
}

/**
 * The measurement from both sides' reports: the rate is the receiver's (what arrived, over the
 * receiver's time); CPU per GiB divides each side's CPU by the bytes it moved. Throws when the
 * two disagree on the byte count or moved nothing.
 */
export function loopbackMeasurement(sender: BareSideReport, receiver: BareSideReport): LoopbackMeasurement {
  if (sender.bytes !== receiver.bytes) throw new Error(`the bare pair disagrees: ${sender.bytes} bytes written, ${receiver.bytes} read`);
  if (receiver.bytes === 0 || receiver.wallMs <= 0) throw new Error("the bare pair moved nothing in its measured part");
  const perGiB = (r: BareSideReport): { user: number; system: number } => {
    const gib = r.bytes / 2 ** 30;
    return { user: r.userUs / 1e6 / gib, system: r.systemUs / 1e6 / gib };
  };
  return {
    bytes: receiver.bytes,
    bytesPerSec: (receiver.bytes * 1000) / receiver.wallMs,
    senderCpuPerGiB: perGiB(sender),
    receiverCpuPerGiB: perGiB(receiver),
  };
}

/** The first line a child prints on stdout (rejects if it exits first). */
function firstLine(child: ChildProcess, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = "";
    const onData = (c: Buffer): void => {
      buf += c.toString("utf8");
      const nl = buf.indexOf("\n");
      if (nl < 0) return;
      child.stdout!.off("data", onData);
      child.off("exit", onExit);
      const rest = buf.slice(nl + 1);
      if (rest !== "") child.stdout!.unshift(Buffer.from(rest));
      resolve(buf.slice(0, nl));
    };
    const onExit = (code: number | null, signal: string | null): void => reject(new Error(`the bare ${what} exited (${signal ?? `code ${code}`}) before reporting`));
    child.stdout!.on("data", onData);
    child.once("exit", onExit);
  });
}

function spawnBare(script: string, args: readonly string[]): ChildProcess {
  return spawn(process.execPath, [...CHILD_V8_FLAGS, "-e", script, ...args], {
    env: {
      ...process.env,
      GLIBC_TUNABLES: process.env["GLIBC_TUNABLES"] ?? CHILD_MALLOC_TUNABLES,
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
}

/**
 * Measures loopback TCP once between two fresh bare Node processes: `bytes` timed after a warm-up
 * of `warmupBytes` (see the module's comment).
 */
export async function measureBarePair(bytes = 2 ** 30, warmupBytes = 128 * 2 ** 20): Promise<LoopbackMeasurement> {
  const receiver = spawnBare(RECEIVER, [String(warmupBytes)]);
  let sender: ChildProcess | null = null;
  try {
    const hello = JSON.parse(await firstLine(receiver, "receiver")) as {
      port: number;
    };
    const receiverReport = firstLine(receiver, "receiver");
    sender = spawnBare(SENDER, [String(hello.port), String(warmupBytes), String(bytes)]);
    const senderReport = firstLine(sender, "sender");
    const [s, r] = await Promise.all([senderReport, receiverReport]);
    await Promise.all([receiver.exitCode === null ? once(receiver, "exit") : null, sender.exitCode === null ? once(sender, "exit") : null]);
    const m = loopbackMeasurement(parseBareReport(s, "sender"), parseBareReport(r, "receiver"));
    if (m.bytes !== bytes) throw new Error(`the bare pair moved ${m.bytes} bytes, not the ${bytes} asked for`);
    return m;
  } finally {
    receiver.kill();
    sender?.kill();
  }
}
