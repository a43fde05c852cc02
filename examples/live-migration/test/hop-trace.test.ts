/**
 * The hop trace's summary (src/hop-trace.ts) over hand-made traces: which hop each interval is,
 * which faults count as slow, what overlapped them. Tracing itself is off in the tests
 * (LM_TRACE_DIR unset), which the HopTracer tests check, with a child process for the variable set.
 */
import { execFileSync } from "node:child_process";
import { tmpdir } from "node:os";
import { describe, expect, it } from "vitest";
import { summarizeTrace } from "../src/hop-trace.ts";
import { HopTracer, TRACE_DIR, type HopRecord, type TraceFile } from "../src/trace.ts";

const T0 = 1_000_000;

function hop(page: number, at: number, d: Partial<HopRecord>): HopRecord {
  return { page, fault: 0, requestSent: 0, pageRead: 0, installed: 0, requestRead: 0, pageSent: 0, queuedFrames: 0, queuedBytes: 0, ...d, ...(d.fault === undefined && at > 0 ? { fault: at } : {}) };
}

function file(role: string, hops: HopRecord[], extra: Partial<TraceFile> = {}): TraceFile {
  return {
    role,
    pid: 1,
    switchoverEpochMs: T0,
    endEpochMs: T0 + 5000,
    clock: { epochMs: T0, monotonicMs: 5000 },
    hops,
    gc: [],
    loopDelay: { min: 1, p50: 1.1, p90: 2, p99: 5, max: 9, mean: 1.3, count: 100 },
    lateTurns: [],
    ...extra,
  };
}

describe("summarizeTrace", () => {
  // Page 7: a 2 ms fault; page 9: 30 ms, of which 25 ms on the way to the source, during a
  // source GC; page 11: settled by the bulk push (no demand page read) after 40 ms.
  const dest = file(
    "destination",
    [
      hop(7, 0, { fault: T0 + 5, requestSent: T0 + 5.1, pageRead: T0 + 6.5, installed: T0 + 7 }),
      hop(9, 0, { fault: T0 + 100, requestSent: T0 + 100.2, pageRead: T0 + 129, installed: T0 + 130, queuedFrames: 3, queuedBytes: 786_480 }),
      hop(11, 0, { fault: T0 + 300, requestSent: T0 + 300.1, installed: T0 + 340 }),
    ],
    { lateTurns: [[T0 + 4000, 6, 5.5, 1.25]] },
  );
  const source = file("source", [hop(7, 0, { requestRead: T0 + 5.6, pageSent: T0 + 5.8 }), hop(9, 0, { requestRead: T0 + 125.2, pageSent: T0 + 125.5 }), hop(11, 0, { requestRead: T0 + 301 })], {
    gc: [{ atEpochMs: T0 + 110, durationMs: 12, kind: 1 }],
  });
  const lines = summarizeTrace(dest, source, 20);

  it("times each hop from the two processes' records", () => {
    expect(lines[0]).toBe("faults traced: 3; latency p50 / p90 / p99 / max: 30.0 / 40.0 / 40.0 / 40.0 ms");
    expect(lines).toContain("| fault -> request written (dest) | 3 | 0.1 | 0.2 | 0.2 | 0.2 |");
    expect(lines).toContain("| request written -> read (dest -> source) | 3 | 0.9 | 25.0 | 25.0 | 25.0 |");
    expect(lines).toContain("| request read -> page written (source) | 2 | 0.2 | 0.3 | 0.3 | 0.3 |");
    expect(lines).toContain("| page written -> read (source -> dest) | 2 | 0.7 | 3.5 | 3.5 | 3.5 |");
    expect(lines).toContain("| page read -> installed (dest) | 2 | 0.5 | 1.0 | 1.0 | 1.0 |");
    expect(lines).toContain("faults settled by the bulk push before their demand page was read: 1");
  });

  it("groups the faults by time since the switchover", () => {
    expect(lines).toContain("| 0-10 ms | 1 | 2.0 | 2.0 | 2.0 |");
    expect(lines).toContain("| 50-200 ms | 1 | 30.0 | 30.0 | 30.0 |");
    expect(lines).toContain("| 200-1000 ms | 1 | 40.0 | 40.0 | 40.0 |");
  });

  it("lists the slow faults with the GCs and late turns that overlapped them", () => {
    expect(lines).toContain("faults of 20 ms or more: 2");
    expect(lines).toContain("| 100.0 | 30.0 | 0.2 / 25.0 / 0.3 / 3.5 / 1.0 | 3 frames, 0.8 MB | s:gc1:12.0 |");
    expect(lines).toContain("| 300.0 | 40.0 | 0.1 / 0.9 / - / - / - | 0 frames, 0.0 MB | - |");
    expect(lines).toContain("slow faults overlapping a GC or a late turn in either process: 1 of 2");
  });

  it("sums each process's GC after the switchover and its late turns with their CPU time", () => {
    expect(lines).toContain("source: GC after the switchover kind 1: 1, total 12.0 ms, max 12.0 ms");
    expect(lines).toContain("destination: GC after the switchover none");
    expect(lines).toContain(
      "destination: event-loop delay p50 / p99 / max 1.1 / 5.0 / 9.0 ms; 1 ms timers 1 times 5 ms or more late after the switchover (p50 6.0, max 6.0 ms; 7.0 ms in all, of which the main thread ran 5.5 ms and waited for a CPU 1.3 ms)",
    );
  });
});

describe("HopTracer", () => {
  it("records nothing without LM_TRACE_DIR", () => {
    expect(TRACE_DIR).toBeNull();
    const t = new HopTracer("destination");
    expect(t.on).toBe(false);
    t.start();
    t.mark(1, "fault");
    t.write(); // no directory: nothing written, nothing thrown
  });

  it("with LM_TRACE_DIR set records, unless its owner turned it off (a rehearsal's scratch destination)", { timeout: 60_000 }, () => {
    // TRACE_DIR is read when the module loads: ask a process that has the variable.
    const code = `import { HopTracer } from ${JSON.stringify(new URL("../src/trace.ts", import.meta.url).href)}; console.log(JSON.stringify([new HopTracer("destination").on, new HopTracer("destination", false).on]));`;
    const out = execFileSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", code], { env: { ...process.env, LM_TRACE_DIR: tmpdir() }, encoding: "utf8" });
    expect(JSON.parse(out.trim())).toEqual([true, false]);
  });
});
