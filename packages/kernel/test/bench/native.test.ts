// The real-kernel half of `npm run bench` (issue "Benchmarks against the real kernel"): the C
// program is compiled and run in quick mode on this machine's kernel, and its report is checked.
import { execFile } from "node:child_process";
import { accessSync, chmodSync, constants, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, release, tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  NATIVE_METRICS,
  type NativeBenchReport,
  type NativeMetricId,
  compileNativeBench,
  describeUnavailable,
  parseNativeReport,
  runNativeBench,
} from "../../bench/native/native.ts";

const COPY_BYTES: Partial<Record<NativeMetricId, number>> = {
  memcpy4k: 4096,
  memcpy2m: 2 * 1024 * 1024,
  memcpyStream2m: 2 * 1024 * 1024,
  uffdCopy4k: 4096,
  uffdCopy2m: 2 * 1024 * 1024,
  uffdMove4k: 4096,
};

// include/uapi/linux/userfaultfd.h feature bits the C program checks before measuring.
const UFFD_FEATURE_PAGEFAULT_FLAG_WP = 1 << 0;
const UFFD_FEATURE_MINOR_SHMEM = 1 << 10;
const UFFD_FEATURE_MOVE = 1 << 16;

/** Makes syscall() fail with ENOSYS and open() with ENOENT, like a seccomp'd container. */
const NO_UFFD_SHIM = `#include <errno.h>
long syscall(long n, ...) { (void)n; errno = ENOSYS; return -1; }
int open(const char *p, int f, ...) { (void)p; (void)f; errno = ENOENT; return -1; }
int open64(const char *p, int f, ...) { (void)p; (void)f; errno = ENOENT; return -1; }
`;

function execCapture(file: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { env: { ...process.env, ...env }, timeout: 60_000 }, (err, stdout, stderr) => {
      if (err && typeof err.code !== "number") reject(new Error(`${file}: ${err.message} ${stderr}`));
      else resolve({ code: err ? Number(err.code) : 0, stdout });
    });
  });
}

/** True when this process can certainly create a userfaultfd: /dev/userfaultfd is open to it. */
function devUserfaultfdUsable(): boolean {
  try {
    accessSync("/dev/userfaultfd", constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

function checkReport(report: NativeBenchReport): void {
  expect(report.quick).toBe(true);
  expect(report.warmupRuns).toBe(1);
  expect(report.runs).toBe(5);
  expect(report.host.kernelRelease).toBe(release());
  expect(report.host.nproc).toBe(cpus().length);
  expect(report.host.cpuModel.length).toBeGreaterThan(0);
  if (process.arch === "x64") expect(report.host.pageSize).toBe(4096);
  const f = report.host.uffdFeatures;
  const everything = UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_MINOR_SHMEM | UFFD_FEATURE_MOVE;
  // A Linux >= 6.8 x86_64 host with two CPUs (this machine, CI) measures every metric.
  if ((f & everything) === everything && report.host.allowedCpus >= 2) expect(report.skipped).toEqual({});
  for (const { id } of NATIVE_METRICS) {
    const m = report.results[id];
    if (m === undefined) {
      expect(report.skipped[id], id).toMatch(/\S/);
      continue;
    }
    expect(Number.isFinite(m.nsPerOp) && m.nsPerOp > 0, id).toBe(true);
    expect(Number.isFinite(m.opsPerSec) && m.opsPerSec > 0, id).toBe(true);
    // opsPerSec = 1e9 / nsPerOp, up to the printed decimals (3 for ns, 1 for ops/s): the bound is
    // the rounding of both printed values, whatever their magnitude on this host.
    const roundingBound = 0.05 + (1e9 * 0.0005) / (m.nsPerOp * m.nsPerOp) + 1e-9 * m.opsPerSec;
    expect(Math.abs(m.opsPerSec - 1e9 / m.nsPerOp), id).toBeLessThanOrEqual(roundingBound);
    expect(m.minNsPerOp, id).toBeLessThanOrEqual(m.nsPerOp);
    expect(m.maxNsPerOp, id).toBeGreaterThanOrEqual(m.nsPerOp);
    expect(m.minNsPerOp, id).toBeGreaterThan(0);
    expect(m.runs, id).toBe(5);
    expect(Number.isInteger(m.opsPerRun) && m.opsPerRun >= 1, id).toBe(true);
    expect(m.bytesPerOp, id).toBe(COPY_BYTES[id]);
    if (!id.startsWith("rt")) expect(m.crossCpuRatio, id).toBeUndefined();
  }
  // Pinning is real: both threads on one CPU never cross, threads on two CPUs always do.
  for (const id of ["rtMissingCopyPinned", "rtMissingZeropagePinned", "rtWpUnprotectPinned", "rtMinorContinuePinned", "rtMissingCopyBatched"] as const) {
    if (report.results[id]) expect(report.results[id].crossCpuRatio, id).toBe(0);
  }
  if (report.results.rtMissingCopySplit) expect(report.results.rtMissingCopySplit.crossCpuRatio).toBe(1);
  for (const id of ["rtMissingCopyUnpinned", "rtMissingZeropageUnpinned", "rtWpUnprotectUnpinned", "rtMinorContinueUnpinned"] as const) {
    const ratio = report.results[id]?.crossCpuRatio;
    if (ratio !== undefined) expect(ratio >= 0 && ratio <= 1, id).toBe(true);
  }
}

describe("native companion benchmark (real kernel)", () => {
  it("quick mode measures every operation as a positive finite rate", { timeout: 120_000 }, async (ctx) => {
    const result = await runNativeBench({ quick: true });
    if (!result.available) {
      // Skip only when the host truly cannot: no compiler, or no userfaultfd that we could open.
      const hostCannot = result.kind !== "failed" && !(result.kind === "no-userfaultfd" && devUserfaultfdUsable());
      if (hostCannot) ctx.skip(describeUnavailable(result));
      expect.fail(describeUnavailable(result));
    }
    checkReport(result);
  });

  // fs/userfaultfd.c:userfaultfd_syscall_allowed(): without CAP_SYS_PTRACE (and with
  // vm.unprivileged_userfaultfd = 0) only UFFD_USER_MODE_ONLY is allowed, and /dev/userfaultfd is
  // root-only: the program must fall back to the UMO flag and still measure everything.
  it("as an unprivileged user it falls back to UFFD_USER_MODE_ONLY", { timeout: 120_000 }, async (ctx) => {
    if (process.getuid?.() !== 0 || !existsSync("/usr/bin/setpriv")) ctx.skip("needs root and setpriv to drop privileges");
    const dir = mkdtempSync(join(tmpdir(), "uffd-bench-"));
    chmodSync(dir, 0o755); // the unprivileged user must reach the binary
    try {
      const built = await compileNativeBench({ outDir: dir });
      if (!("binary" in built)) return ctx.skip(describeUnavailable(built));
      const args = ["--reuid=65534", "--regid=65534", "--clear-groups", built.binary];
      const { code, stdout } = await execCapture("/usr/bin/setpriv", args, { UFFD_BENCH_QUICK: "1" });
      expect(code).toBe(0);
      const result = parseNativeReport(stdout);
      if (!result.available) return expect.fail(describeUnavailable(result));
      const sysctl = "/proc/sys/vm/unprivileged_userfaultfd";
      // With the sysctl at 1 the plain syscall is allowed, so "syscall" is the right answer then.
      const strict = existsSync(sysctl) && readFileSync(sysctl, "utf8").trim() === "0";
      expect(result.host.uffdSource).toBe(strict ? "syscall-umo" : "syscall");
      checkReport(result);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  // A host where every way to a userfaultfd fails (seccomp-filtered syscall, no /dev/userfaultfd),
  // simulated with an LD_PRELOAD shim: the program prints one clear reason and exits with 3.
  it("without any userfaultfd the program reports no-userfaultfd instead of crashing", { timeout: 120_000 }, async (ctx) => {
    const dir = mkdtempSync(join(tmpdir(), "uffd-bench-"));
    try {
      const built = await compileNativeBench({ outDir: dir });
      if (!("binary" in built)) return ctx.skip(describeUnavailable(built));
      const shim = join(dir, "no-uffd.so");
      writeFileSync(join(dir, "no-uffd.c"), NO_UFFD_SHIM);
      await execCapture("cc", ["-shared", "-fPIC", "-o", shim, join(dir, "no-uffd.c")], {});
      const { code, stdout } = await execCapture(built.binary, [], { LD_PRELOAD: shim, UFFD_BENCH_QUICK: "1" });
      expect(code).toBe(3);
      expect(parseNativeReport(stdout)).toEqual({
        available: false,
        kind: "no-userfaultfd",
        reason:
          "userfaultfd unavailable: userfaultfd(2) failed with ENOSYS, /dev/userfaultfd (USERFAULTFD_IOC_NEW) " +
          "failed with ENOENT, userfaultfd(UFFD_USER_MODE_ONLY) failed with ENOSYS",
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  // The bench driver runs one metric per process, bound to one CPU, alternating with the
  // simulator's processes: the program measures just the metrics named on its command line.
  it("measures only the metrics asked for, bound to a CPU with taskset", { timeout: 120_000 }, async (ctx) => {
    if (!existsSync("/usr/bin/taskset")) ctx.skip("needs taskset (util-linux)");
    const metrics = ["nullSyscall", "rtMissingCopyBatched"] as const;
    const result = await runNativeBench({ quick: true, metrics, cpu: 0 });
    if (!result.available) {
      if (result.kind !== "failed") ctx.skip(describeUnavailable(result));
      return expect.fail(describeUnavailable(result));
    }
    expect(result.partial).toBe(true);
    expect(result.host.allowedCpus).toBe(1);
    expect(result.host.pinCpu).toBe(0);
    expect(Object.keys(result.results).sort()).toEqual([...metrics].sort());
    expect(result.results.rtMissingCopyBatched?.crossCpuRatio).toBe(0);
    // A metric the program was asked for must be accounted for.
    expect(parseNativeReport(JSON.stringify({ ...result, results: {} }), metrics)).toMatchObject({ available: false, kind: "failed" });
  });

  it("a missing compiler is reported, not thrown", async () => {
    const dir = mkdtempSync(join(tmpdir(), "uffd-bench-"));
    try {
      const result = await runNativeBench({ quick: true, cc: "/nonexistent/cc", outDir: dir });
      expect(result).toEqual({
        available: false,
        kind: "no-compiler",
        reason: "no C compiler found (tried /nonexistent/cc); set CC to build the native benchmark",
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("parses the program's unavailable and broken outputs", () => {
    const reason = "userfaultfd unavailable: userfaultfd(2) failed with EPERM";
    expect(parseNativeReport(`{"available":false,"kind":"no-userfaultfd","reason":"${reason}"}\n`)).toEqual({
      available: false,
      kind: "no-userfaultfd",
      reason,
    });
    expect(parseNativeReport('{"available":false,"kind":"failed","reason":"UFFDIO_COPY: EEXIST"}')).toEqual({
      available: false,
      kind: "failed",
      reason: "UFFDIO_COPY: EEXIST",
    });
    expect(parseNativeReport("Segmentation fault")).toMatchObject({ available: false, kind: "failed" });
    const partial = { available: true, schema: 1, results: {}, skipped: { nullSyscall: "x", pipePingPong: "x", memcpy4k: "x" } };
    expect(parseNativeReport(JSON.stringify(partial))).toEqual({
      available: false,
      kind: "failed",
      reason: "uffd-bench reported neither a result nor a skip reason for memcpy2m",
    });
  });
});
