/**
 * The gate that spaces a child's periodic progress reports (ipc.ts), on a fake clock.
 */
import { describe, expect, it } from "vitest";
import { ReportGate } from "../src/ipc.ts";

describe("ReportGate", () => {
  it("lets the first report through, then one per interval of its clock", () => {
    let now = 1000;
    const gate = new ReportGate(50, () => now);
    expect(gate.due()).toBe(true);
    expect(gate.due()).toBe(false);
    now += 49.9;
    expect(gate.due()).toBe(false);
    now += 0.1;
    expect(gate.due()).toBe(true);
    // The interval counts from the report that went through, not from the refused ones.
    now += 30;
    expect(gate.due()).toBe(false);
    now += 20;
    expect(gate.due()).toBe(true);
    now += 500;
    expect(gate.due()).toBe(true);
    expect(gate.due()).toBe(false);
  });
});
