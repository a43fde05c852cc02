// The simulated half of `npm run bench` (issue 7, "Benchmarks against the real kernel"): the
// target lines are decided from figures of the same run, a missed target says what bounds it,
// and the jobs the bench runs in child processes work (here in-process, tiny sizes).
import { describe, expect, it } from "vitest";
import { runJob } from "../../bench/jobs.ts";
import type { NativeBenchReport, NativeMetric } from "../../bench/native/native.ts";
import { checkTargets, formatTable, type Row } from "../../bench/table.ts";

function metric(opsPerSec: number): NativeMetric {
  return { nsPerOp: 1e9 / opsPerSec, opsPerSec, minNsPerOp: 1, maxNsPerOp: 1, runs: 1, opsPerRun: 1 };
}

function native(results: NativeBenchReport["results"]): NativeBenchReport {
  const host = { cpuModel: "cpu", kernelRelease: "6.18", nproc: 2, allowedCpus: 2, pinCpu: 0, splitCpu: 1, pageSize: 4096, uffdSource: "syscall", uffdFeatures: 0 } as const;
  return { available: true, schema: 1, quick: true, warmupRuns: 1, runs: 1, elapsedMs: 1, host, results, skipped: {} };
}

function row(id: string, raw: number | null, sdk: number | null = null): Row {
  return { id, operation: id, unit: "ops/s", native: null, raw, sdk, rawRate: null, sdkRate: null, note: "" };
}

const REAL = native({ rtMissingCopyPinned: metric(300_000), memcpy2m: metric(7000), fork64m: metric(1800) });
const MEM_OK = { resident: 4130, zero: 4.2, untouched: 0.1 };

describe("bench targets", () => {
  it("pass when every figure of the run meets its target", () => {
    const rows = [row("rt-missing+copy", 650_000), row("rt-fast", 900_000, 1_000_001), row("uffdCopy2m", 3600), row("fork64m", 900)];
    const t = checkTargets(rows, REAL, MEM_OK);
    expect(t.map((x) => [x.id, x.status])).toEqual([
      ["raw", "PASS"],
      ["sdk", "PASS"],
      ["copy2m", "PASS"],
      ["memory", "PASS"],
      ["fork", "PASS"],
    ]);
    expect(t[0]!.line).toContain("2.17x the real kernel's same-CPU 300,000/s");
  });

  it("a missed target says so on its line and what bounds it", () => {
    const rows = [row("rt-missing+copy", 590_000), row("rt-fast", 900_000, 999_999), row("uffdCopy2m", 3400), row("fork64m", 899)];
    const t = checkTargets(rows, REAL, { resident: 4225, zero: 4.2, untouched: 0.1 });
    expect(t.every((x) => x.status === "MISS")).toBe(true);
    for (const x of t) expect(x.line).toMatch(/; bounded by /);
  });

  it("without a real-kernel figure the comparisons are N/A, not passes", () => {
    const rows = [row("rt-missing+copy", 1e9), row("rt-fast", 1e9, 2e6), row("uffdCopy2m", 1e9), row("fork64m", 1e9)];
    const t = checkTargets(rows, null, MEM_OK);
    expect(Object.fromEntries(t.map((x) => [x.id, x.status]))).toEqual({ raw: "N/A", sdk: "PASS", copy2m: "N/A", memory: "PASS", fork: "N/A" });
    // untouched memory must cost nothing, zero-page-backed memory no more than its pte
    expect(checkTargets(rows, null, { ...MEM_OK, zero: 9 }).find((x) => x.id === "memory")!.status).toBe("MISS");
  });

  it("the table has the real, raw and SDK columns and their ratios", () => {
    const text = formatTable([{ ...row("rt-missing+copy", 600_000, 450_000), native: "rtMissingCopyPinned" }], REAL);
    const [header, , line] = text.split("\n");
    expect(header).toMatch(/operation\s+unit\s+real kernel\s+sim raw\s+sim SDK\s+raw\/real\s+SDK\/real\s+note/);
    expect(line).toMatch(/300,000\s+600,000\s+450,000\s+2\.00x\s+1\.50x/);
  });
});

describe("bench jobs (tiny sizes, in-process)", () => {
  const settings = { quick: true, runs: 1, warmup: 0 };

  it("a round trip through the raw uAPI and through the SDK, batched, serves every fault", async () => {
    for (const via of ["raw", "sdk"] as const) {
      const r = await runJob({ kind: "roundTrip", via, trip: "missing+copy", shape: { threads: 4, batch: 64 }, pages: 64 }, settings);
      expect("rate" in r && r.rate.opsPerRun === 64 && r.rate.opsPerSec > 0).toBe(true);
    }
  });

  it("every round-trip kind and every SDK op runs", async () => {
    for (const trip of ["missing+zeropage", "wp+unprotect", "minor+continue"] as const) {
      const r = await runJob({ kind: "roundTrip", via: "sdk", trip, shape: { threads: 1, batch: 1 }, pages: 16 }, settings);
      expect(r).toHaveProperty("rate");
    }
    for (const op of ["uffdMove4k", "wpToggle2m"] as const) {
      expect(await runJob({ kind: "op", via: "sdk", op }, settings)).toHaveProperty("rate");
    }
  });

  // The job itself checks the deterministic part (smaps counts every page of a resident mapping
  // and none of an untouched one, and the invariants hold); the host-memory figures are measured
  // values whose magnitude depends on the gc and the host, so only their form is checked here.
  it("memory per page: the job populates the mapping as smaps counts it and reports finite figures", async () => {
    for (const state of ["resident", "zero page", "untouched"] as const) {
      const r = await runJob({ kind: "memory", state, mib: 16 }, settings);
      if (!("memory" in r)) throw new Error(`${state}: no memory figure`);
      expect(Number.isFinite(r.memory.bytesPerPage), state).toBe(true);
      expect(r.memory.bytesPerPage, state).toBeCloseTo(r.memory.heapBytesPerPage + r.memory.externalBytesPerPage, 6);
    }
  });
});
