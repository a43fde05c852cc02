/**
 * The loopback limit's bare pair: its reports, what is computed from them, and one small real
 * transfer (counts only; the rate is measured by the bench, never asserted here).
 */
import { describe, expect, it } from "vitest";
import { loopbackMeasurement, measureBarePair, parseBareReport, type BareSideReport } from "../src/loopback.ts";

const sender: BareSideReport = { role: "sender", bytes: 2 ** 30, wallMs: 500, userUs: 50_000, systemUs: 125_000 };
const receiver: BareSideReport = { role: "receiver", bytes: 2 ** 30, wallMs: 512, userUs: 200_000, systemUs: 400_000 };

describe("parseBareReport", () => {
  it("reads a side's JSON line", () => {
    expect(parseBareReport(JSON.stringify(sender), "sender")).toEqual(sender);
    expect(parseBareReport(`{"role":"receiver","bytes":4096,"wallMs":1.5,"userUs":0,"systemUs":7,"extra":1}`, "receiver")).toEqual({
      role: "receiver",
      bytes: 4096,
      wallMs: 1.5,
      userUs: 0,
      systemUs: 7,
    });
  });

  it("refuses a line that is not JSON, the other side's report, or a missing or negative figure", () => {
    expect(() => parseBareReport("Error: listen EADDRINUSE", "receiver")).toThrow(/the bare receiver printed "Error: listen EADDRINUSE", not its JSON report/);
    expect(() => parseBareReport(JSON.stringify(sender), "receiver")).toThrow(/the bare receiver's report is malformed/);
    expect(() => parseBareReport(JSON.stringify({ ...sender, wallMs: undefined }), "sender")).toThrow(/malformed/);
    expect(() => parseBareReport(JSON.stringify({ ...sender, userUs: -1 }), "sender")).toThrow(/malformed/);
    expect(() => parseBareReport("null", "sender")).toThrow(/malformed/);
  });
});

describe("loopbackMeasurement", () => {
  it("takes the rate from the receiver and each side's CPU per GiB from its own bytes", () => {
    expect(loopbackMeasurement(sender, receiver)).toEqual({
      bytes: 2 ** 30,
      bytesPerSec: (2 ** 30 * 1000) / 512,
      senderCpuPerGiB: { user: 0.05, system: 0.125 },
      receiverCpuPerGiB: { user: 0.2, system: 0.4 },
    });
    const half = loopbackMeasurement({ ...sender, bytes: 2 ** 29 }, { ...receiver, bytes: 2 ** 29 });
    expect(half.receiverCpuPerGiB).toEqual({ user: 0.4, system: 0.8 });
  });

  it("throws when the two sides disagree on the bytes or nothing was measured", () => {
    expect(() => loopbackMeasurement(sender, { ...receiver, bytes: 2 ** 30 - 1 })).toThrow("the bare pair disagrees: 1073741824 bytes written, 1073741823 read");
    expect(() => loopbackMeasurement({ ...sender, bytes: 0 }, { ...receiver, bytes: 0 })).toThrow(/moved nothing/);
    expect(() => loopbackMeasurement(sender, { ...receiver, wallMs: 0 })).toThrow(/moved nothing/);
  });
});

describe("measureBarePair", () => {
  it("moves exactly the bytes asked for after the warm-up, a partial last write included, and reports both sides", async () => {
    const m = await measureBarePair(3 * 2 ** 20 + 4096, 2 ** 20);
    expect(m.bytes).toBe(3 * 2 ** 20 + 4096);
    expect(m.bytesPerSec).toBeGreaterThan(0);
    for (const c of [m.senderCpuPerGiB, m.receiverCpuPerGiB]) {
      expect(c.user).toBeGreaterThanOrEqual(0);
      expect(c.system).toBeGreaterThanOrEqual(0);
    }
  });
});
