/**
 * The migration bench's table (the measuring itself is `npm run bench -w`, never a test).
 */
import { describe, expect, it } from "vitest";
import { formatBenchTable, type MigrationBenchRow } from "../src/bench.ts";

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
  error: null,
};

describe("formatBenchTable", () => {
  it("prints the run's limits and load average, then one row per migration with its frame store", () => {
    const failed: MigrationBenchRow = { ...row, frameStore: "compact", ok: false, error: "timed out" };
    const text = formatBenchTable({ memcpyFreshBytesPerSec: 1.8e9, loopbackTcpBytesPerSec: 5e8, loadAverage: 3.21 }, [row, failed], 4.46);
    const lines = text.split("\n");
    expect(lines[0]).toBe("limits measured in the same run: memcpy into fresh memory 1800 MB/s, loopback TCP between two Node processes 500 MB/s; load average 3.2 at the start, 4.5 at the end");
    expect(lines[2]).toMatch(/^\| guest \| strategy \| link \| frame store \| total \|/);
    expect(lines[4]).toBe("| 1.0 GiB | postcopy | unlimited | flat | 2.00 s | 300 MB/s | 60% | 8 / 44 ms | 8.4 / 39.2 ms | yes | 993 MiB / 1.2 GiB |");
    expect(lines[5]).toBe("| 1.0 GiB | postcopy | unlimited | compact | failed: timed out | | | | | | |");
    expect(lines[4]!.split("|")).toHaveLength(lines[2]!.split("|").length);
  });

  it("leaves the load average out when the limits do not carry one", () => {
    const text = formatBenchTable({ memcpyFreshBytesPerSec: 1e9, loopbackTcpBytesPerSec: 1e9 }, []);
    expect(text.split("\n")[0]).toBe("limits measured in the same run: memcpy into fresh memory 1000 MB/s, loopback TCP between two Node processes 1000 MB/s");
  });
});
