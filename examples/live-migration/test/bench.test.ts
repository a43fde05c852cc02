/**
 * The migration bench's table (the measuring itself is `npm run bench -w`, never a test).
 */
import { describe, expect, it } from "vitest";
import { combineLimits, cpuVsBare, formatBenchTable, formatRepeatSummary, median, withLimits, type MigrationBenchRow } from "../src/bench.ts";
import type { FaultFloor } from "../src/floor.ts";

const row: MigrationBenchRow = {
  memoryBytes: 1024 ** 3,
  strategy: "postcopy",
  link: "unlimited",
  frameStore: "flat",
  ok: true,
  totalTimeMs: 2000,
  bytesPerSec: 300e6,
  vsLoopbackTcp: 0.6,
  vsMemcpy: 0.3,
  downtimeMs: 8.4,
  guestDowntimeMs: 44.2,
  faultP50Us: 8400,
  faultP99Us: 39_200,
  receiverBound: true,
  sourceMaxRssBytes: 993 * 1024 ** 2,
  destMaxRssBytes: 1.2 * 1024 ** 3,
  sourceCpuPerGiB: { user: 1.5, system: 0.75 },
  destCpuPerGiB: { user: 2.125, system: 1.25 },
  error: null,
};

describe("formatBenchTable", () => {
  it("prints the run's limits and load average, then one row per migration with its frame store", () => {
    const failed: MigrationBenchRow = { ...row, frameStore: "compact", ok: false, error: "timed out" };
    const text = formatBenchTable({ memcpyFreshBytesPerSec: 1.8e9, loopbackTcpBytesPerSec: 5e8, loadAverage: 3.21 }, [row, failed], 4.46);
    const lines = text.split("\n");
    expect(lines[0]).toBe("limits measured in the same run: memcpy into fresh memory 1800 MB/s, loopback TCP between two Node processes 500 MB/s; load average 3.2 at the start, 4.5 at the end");
    expect(lines[2]).toMatch(/^\| guest \| strategy \| link \| frame store \| total \|/);
    expect(lines[4]).toBe("| 1.0 GiB | postcopy | unlimited | flat | 2.00 s | 300 MB/s | 60% | 8 / 44 ms | 8.4 / 39.2 ms | yes | 993 MiB / 1.2 GiB | 1.50 + 0.75 / 2.13 + 1.25 | - / - |");
    expect(lines[5]).toBe("| 1.0 GiB | postcopy | unlimited | compact | failed: timed out | | | | | | | | |");
    expect(lines[4]!.split("|")).toHaveLength(lines[2]!.split("|").length);
    expect(lines[5]!.split("|")).toHaveLength(lines[2]!.split("|").length);
  });

  it("prints a dash for a side that reported no CPU time", () => {
    const text = formatBenchTable({ memcpyFreshBytesPerSec: 1e9, loopbackTcpBytesPerSec: 1e9 }, [{ ...row, destCpuPerGiB: null }]);
    expect(text.split("\n")[4]).toMatch(/\| 1\.50 \+ 0\.75 \/ - \| - \/ - \|$/);
  });

  it("leaves the load average out when the limits do not carry one", () => {
    const text = formatBenchTable({ memcpyFreshBytesPerSec: 1e9, loopbackTcpBytesPerSec: 1e9 }, []);
    expect(text.split("\n")[0]).toBe("limits measured in the same run: memcpy into fresh memory 1000 MB/s, loopback TCP between two Node processes 1000 MB/s");
  });
});

describe("limits measured several times", () => {
  it("median: the middle value, or the mean of the middle two", () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([7])).toBe(7);
    expect(median([])).toBeNaN();
  });

  it("combineLimits keeps every measurement in order and reports their medians and the first load average", () => {
    const l = combineLimits([
      { memcpyFreshBytesPerSec: 1.5e9, loopbackTcpBytesPerSec: 0.89e9, loadAverage: 1.1 },
      { memcpyFreshBytesPerSec: 1.9e9, loopbackTcpBytesPerSec: 1.418e9, loadAverage: 1.3 },
      { memcpyFreshBytesPerSec: 1.7e9, loopbackTcpBytesPerSec: 1.2e9, loadAverage: 1.2 },
    ]);
    expect(l).toEqual({
      memcpyFreshBytesPerSec: 1.7e9,
      loopbackTcpBytesPerSec: 1.2e9,
      loadAverage: 1.1,
      samples: { memcpyFreshBytesPerSec: [1.5e9, 1.9e9, 1.7e9], loopbackTcpBytesPerSec: [0.89e9, 1.418e9, 1.2e9] },
    });
    expect(() => combineLimits([])).toThrow(RangeError);
  });

  it("the table's first line gives the median, the number of measurements and their range", () => {
    const l = combineLimits([
      { memcpyFreshBytesPerSec: 1.5e9, loopbackTcpBytesPerSec: 0.89e9, loadAverage: 1.1 },
      { memcpyFreshBytesPerSec: 1.9e9, loopbackTcpBytesPerSec: 1.418e9 },
      { memcpyFreshBytesPerSec: 1.7e9, loopbackTcpBytesPerSec: 1.2e9 },
    ]);
    const first = formatBenchTable(l, [withLimits(row, l)], 1.4).split("\n");
    expect(first[0]).toBe(
      "limits measured in the same run, median of 3 measurements interleaved with the migrations (range): memcpy into fresh memory 1700 MB/s (1500-1900), loopback TCP between two Node processes 1200 MB/s (890-1418); load average 1.1 at the start, 1.4 at the end",
    );
    expect(first[4]).toContain("| 300 MB/s | 25% |");
  });

  it("withLimits recomputes a row's ratios and leaves a failed row alone", () => {
    const r = withLimits(row, { memcpyFreshBytesPerSec: 1.2e9, loopbackTcpBytesPerSec: 6e8 });
    expect(r.vsLoopbackTcp).toBe(0.5);
    expect(r.vsMemcpy).toBe(0.25);
    const failed: MigrationBenchRow = { ...row, error: "timed out" };
    expect(withLimits(failed, { memcpyFreshBytesPerSec: 1, loopbackTcpBytesPerSec: 1 })).toBe(failed);
  });
});

describe("the demand-fault floor beside the limits", () => {
  const floor = (loadedP99Us: number): FaultFloor => ({
    loaded: { count: 1000, p50Us: 1500, p90Us: 2600, p99Us: loadedP99Us, maxUs: 9000 },
    idle: { count: 1000, p50Us: 250, p90Us: 500, p99Us: 1200, maxUs: 4000 },
    bulkBytesPerSec: 1.1e9,
    loadAverage: 1.9,
  });

  it("combineLimits keeps every floor and their median; the table gives it a line and each row a p99 ratio", () => {
    const l = combineLimits([
      { memcpyFreshBytesPerSec: 1.5e9, loopbackTcpBytesPerSec: 0.9e9, loadAverage: 1.1, faultFloor: floor(5600) },
      { memcpyFreshBytesPerSec: 1.9e9, loopbackTcpBytesPerSec: 1.4e9, faultFloor: floor(9800) },
      { memcpyFreshBytesPerSec: 1.7e9, loopbackTcpBytesPerSec: 1.2e9, faultFloor: floor(4900) },
    ]);
    expect(l.samples?.faultFloor?.map((f) => f.loaded.p99Us)).toEqual([5600, 9800, 4900]);
    expect(l.faultFloor?.loaded.p99Us).toBe(5600);
    const lines = formatBenchTable(l, [withLimits(row, l), { ...row, error: "timed out" }]).split("\n");
    expect(lines[1]).toBe(
      "demand-fault floor (median of 3; p99 beside the push 5.60, 9.80, 4.90 ms): 4 KiB request/answer between two bare Node processes, p50 / p99 1.50 / 5.60 ms beside a bulk push on a second connection, 0.25 / 1.20 ms without",
    );
    expect(lines[3]).toMatch(/ \| fault p99 \/ floor p99 \|$/);
    expect(lines[5]).toMatch(/\| 8\.4 \/ 39\.2 ms \|.* \| 7\.0x \|$/);
    for (const line of lines.slice(4)) expect(line.split("|")).toHaveLength(lines[3]!.split("|").length);
  });

  it("a row measured with a floor at its own throughput gives that floor and the ratio, in both tables", () => {
    const l = combineLimits([{ memcpyFreshBytesPerSec: 1e9, loopbackTcpBytesPerSec: 1e9, faultFloor: floor(20_000) }]);
    const a: MigrationBenchRow = { ...row, faultFloorAtRate: floor(4900) };
    const b: MigrationBenchRow = { ...row, faultP99Us: 12_000, faultFloorAtRate: floor(6000) };
    const lines = formatBenchTable(l, [a, { ...row }, { ...row, error: "timed out" }]).split("\n");
    expect(lines[3]).toMatch(/ \| fault p99 \/ floor p99 \| floor at the row's throughput: p50 \/ p99, fault p99 \/ its p99 \|$/);
    expect(lines[5]).toMatch(/ \| 2\.0x \| 1\.50 \/ 4\.90 ms, 8\.0x \|$/);
    expect(lines[6]).toMatch(/ \| 2\.0x \| - \|$/);
    for (const line of lines.slice(4)) expect(line.split("|")).toHaveLength(lines[3]!.split("|").length);
    const summary = formatRepeatSummary([a, b]).split("\n");
    expect(summary[0]).toMatch(/ \| floor p99 at the row's throughput \| fault p99 \/ that floor p99 \|$/);
    expect(summary[2]).toMatch(/ \| 5\.45 \(4\.90-6\.00\) ms \| 5\.0 \(2\.0-8\.0\)x \|$/);
    expect(summary[2]!.split("|")).toHaveLength(summary[0]!.split("|").length);
  });

  it("a single measurement's floor line has no median", () => {
    const l = combineLimits([{ memcpyFreshBytesPerSec: 1e9, loopbackTcpBytesPerSec: 1e9, faultFloor: floor(4000) }]);
    expect(formatBenchTable(l, []).split("\n")[1]).toMatch(/^demand-fault floor: 4 KiB request\/answer/);
    expect(combineLimits([{ memcpyFreshBytesPerSec: 1e9, loopbackTcpBytesPerSec: 1e9 }])).not.toHaveProperty("faultFloor");
  });
});

describe("formatRepeatSummary", () => {
  it("is empty when no configuration ran twice", () => {
    expect(formatRepeatSummary([row, { ...row, link: "default" }])).toBe("");
  });

  it("gives each repeated configuration's completed runs, median and range", () => {
    const rows: MigrationBenchRow[] = [
      row,
      { ...row, bytesPerSec: 500e6, vsLoopbackTcp: 1.0, faultP50Us: 4000, faultP99Us: 20_000, destCpuPerGiB: { user: 3, system: 1 } },
      { ...row, bytesPerSec: 400e6, vsLoopbackTcp: 0.8, faultP50Us: 5000, faultP99Us: 30_000, destCpuPerGiB: null },
      { ...row, ok: false, error: "timed out" },
      { ...row, link: "default" },
    ];
    const lines = formatRepeatSummary(rows).split("\n");
    expect(lines).toHaveLength(4);
    expect(lines[2]).toBe("| 1.0 GiB | postcopy | unlimited | flat | 3 of 4 | 400 (300-500) MB/s | 80 (60-100) % | 5.0 (4.0-8.4) ms | 30.0 (20.0-39.2) ms | 2.25 (2.25-2.25) | 3.69 (3.38-4.00) | - | - |");
    expect(lines[3]).toBe("| 1.0 GiB | postcopy | default | flat | 1 of 1 | 300 (300-300) MB/s | 60 (60-60) % | 8.4 (8.4-8.4) ms | 39.2 (39.2-39.2) ms | 2.25 (2.25-2.25) | 3.38 (3.38-3.38) | - | - |");
    expect(lines[2]!.split("|")).toHaveLength(lines[0]!.split("|").length);
  });
});

describe("child flags A/B", () => {
  it("adds a child flags column to both tables when the bench varied them", () => {
    const a: MigrationBenchRow = { ...row, childFlags: "" };
    const b: MigrationBenchRow = { ...row, childFlags: "--single-threaded-gc", bytesPerSec: 400e6, vsLoopbackTcp: 0.8 };
    const lines = formatBenchTable({ memcpyFreshBytesPerSec: 1e9, loopbackTcpBytesPerSec: 5e8 }, [a, b, { ...b, error: "timed out" }]).split("\n");
    expect(lines[2]).toMatch(/^\| guest \| strategy \| link \| frame store \| child flags \| total \|/);
    expect(lines[4]).toBe("| 1.0 GiB | postcopy | unlimited | flat | (none) | 2.00 s | 300 MB/s | 60% | 8 / 44 ms | 8.4 / 39.2 ms | yes | 993 MiB / 1.2 GiB | 1.50 + 0.75 / 2.13 + 1.25 | - / - |");
    expect(lines[5]).toMatch(/^\| 1\.0 GiB \| postcopy \| unlimited \| flat \| --single-threaded-gc \| 2\.00 s \| 400 MB\/s \| 80% \|/);
    expect(lines[6]).toBe("| 1.0 GiB | postcopy | unlimited | flat | --single-threaded-gc | failed: timed out | | | | | | | | |");
    for (const l of lines.slice(3)) expect(l.split("|")).toHaveLength(lines[2]!.split("|").length);
    const summary = formatRepeatSummary([a, a, b, b]).split("\n");
    expect(summary[0]).toContain("| frame store | child flags | runs ok |");
    expect(summary[2]).toBe("| 1.0 GiB | postcopy | unlimited | flat | (none) | 2 of 2 | 300 (300-300) MB/s | 60 (60-60) % | 8.4 (8.4-8.4) ms | 39.2 (39.2-39.2) ms | 2.25 (2.25-2.25) | 3.38 (3.38-3.38) | - | - |");
    expect(summary[3]).toMatch(/^\| 1\.0 GiB \| postcopy \| unlimited \| flat \| --single-threaded-gc \| 2 of 2 \| 400 \(400-400\) MB\/s/);
  });
});

describe("the bare pair's CPU per GiB", () => {
  const bare = (s: number, r: number) => ({ sender: { user: s / 4, system: (3 * s) / 4 }, receiver: { user: r / 2, system: r / 2 } });

  it("combineLimits takes the median of each figure and keeps every measurement", () => {
    const l = combineLimits([
      { memcpyFreshBytesPerSec: 1e9, loopbackTcpBytesPerSec: 1e9, bareCpuPerGiB: bare(0.2, 0.6) },
      { memcpyFreshBytesPerSec: 1e9, loopbackTcpBytesPerSec: 2e9, bareCpuPerGiB: bare(0.4, 1.0) },
      { memcpyFreshBytesPerSec: 1e9, loopbackTcpBytesPerSec: 3e9, bareCpuPerGiB: bare(0.28, 0.8) },
    ]);
    expect(l.bareCpuPerGiB).toEqual(bare(0.28, 0.8));
    expect(l.samples?.bareCpuPerGiB).toEqual([bare(0.2, 0.6), bare(0.4, 1.0), bare(0.28, 0.8)]);
    expect(combineLimits([{ memcpyFreshBytesPerSec: 1, loopbackTcpBytesPerSec: 1 }])).not.toHaveProperty("bareCpuPerGiB");
  });

  it("cpuVsBare: user + system over the bare side's, null when either is missing or the bare side used none", () => {
    expect(cpuVsBare({ user: 1.5, system: 0.75 }, { user: 0.5, system: 0.25 })).toBe(3);
    expect(cpuVsBare(null, { user: 0.5, system: 0.25 })).toBeNull();
    expect(cpuVsBare({ user: 1, system: 1 }, undefined)).toBeNull();
    expect(cpuVsBare({ user: 1, system: 1 }, { user: 0, system: 0 })).toBeNull();
  });

  it("withLimits sets each side against its bare counterpart, and both tables print it", () => {
    const l = { memcpyFreshBytesPerSec: 1e9, loopbackTcpBytesPerSec: 5e8, bareCpuPerGiB: { sender: { user: 0.5, system: 0.25 }, receiver: { user: 0.75, system: 0.375 } } };
    const r = withLimits(row, l);
    expect(r.sourceCpuVsBare).toBe(3);
    expect(r.destCpuVsBare).toBe(3);
    const lines = formatBenchTable(l, [r]).split("\n");
    expect(lines[0]).toBe("limits measured in the same run: memcpy into fresh memory 1000 MB/s, loopback TCP between two Node processes 500 MB/s; the bare pair's CPU s per GiB, user + sys: sender 0.50 + 0.25, receiver 0.75 + 0.38");
    expect(lines[2]).toMatch(/\| CPU vs the bare pair: source \/ dest \|$/);
    expect(lines[4]).toMatch(/\| 1\.50 \+ 0\.75 \/ 2\.13 \+ 1\.25 \| 3\.00x \/ 3\.00x \|$/);
    const summary = formatRepeatSummary([r, { ...r, sourceCpuVsBare: 2, destCpuVsBare: null }]).split("\n");
    expect(summary[0]).toMatch(/\| source CPU vs the bare sender \| dest CPU vs the bare receiver \|$/);
    expect(summary[2]).toMatch(/\| 2\.50 \(2\.00-3\.00\) \| 3\.00 \(3\.00-3\.00\) \|$/);
  });
});
