/**
 * How the event loop is shared: the process-wide turn budget of src/yield.ts (on a clock the test
 * moves by hand, so the order of units is exact), and the endpoint's bound on the bytes read per
 * turn (counted per turn, whatever the machine's speed).
 */
import { once } from "node:events";
import { createServer, connect, type AddressInfo, type Socket } from "node:net";
import { afterEach, describe, expect, it, vi } from "vitest";
import { Endpoint } from "../src/endpoint.ts";
import { encodeFrame, FRAME } from "../src/protocol.ts";
import { SLICE_MS, TimeSlice } from "../src/yield.ts";

afterEach(() => {
  vi.restoreAllMocks();
});

describe("TimeSlice: one budget per turn for every loop of the process", () => {
  it("the loops share SLICE_MS per turn, each does one unit after a resume, and the one that had none of the budget goes first next turn", async () => {
    let now = 1_000_000;
    vi.spyOn(performance, "now").mockImplementation(() => now);
    const unit = SLICE_MS / 2 + 0.01; // two units use a turn's budget up
    const log: string[] = [];
    const loop = async (name: string, units: number): Promise<void> => {
      const slice = new TimeSlice();
      for (let i = 0; i < units; i++) {
        const t = slice.tick();
        if (t !== undefined) {
          log.push("|");
          await t;
        }
        log.push(name);
        now += unit;
      }
    };
    await Promise.all([loop("a", 5), loop("b", 5)]);
    // Before the first turn both do their free unit. In each turn the first loop to resume runs
    // until the budget is gone (its free unit and one more), the other does its free unit only,
    // and goes first in the next turn.
    expect(log.join(" ")).toBe("a | b | a a | b | b b | a | a b");
  });
});

describe("Endpoint readPerTurn", () => {
  async function pair(): Promise<{ server: ReturnType<typeof createServer>; writer: Socket; reader: Socket }> {
    const server = createServer();
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const writer = connect({ host: "127.0.0.1", port: (server.address() as AddressInfo).port });
    const [reader] = (await once(server, "connection")) as [Socket];
    return { server, writer, reader };
  }

  it("reads at most the budget (plus the read that crossed it and one buffered read) per turn, and every byte arrives", { timeout: 30_000 }, async () => {
    const { server, writer, reader } = await pair();
    const budget = 128 * 1024;
    const ep = new Endpoint(reader, { latencyMs: 0, bandwidthBytesPerSec: 0 }, { maxPayload: 1 << 20, state: () => "test", readPerTurn: () => budget });
    const frames: number[] = [];
    ep.onFrame = (f) => frames.push(f.payload.byteLength);
    const payload = new Uint8Array(60 * 1024);
    const n = 64; // 64 frames of 60 KiB: 3.75 MiB, far more than one turn may read
    // Sample what arrived at every turn's check phase until everything has.
    const perTurn: number[] = [];
    let last = 0;
    const done = new Promise<void>((resolve) => {
      const sample = (): void => {
        perTurn.push(ep.bytesReceived - last);
        last = ep.bytesReceived;
        if (frames.length === n) resolve();
        else setImmediate(sample);
      };
      setImmediate(sample);
    });
    for (let i = 0; i < n; i++) for (const part of encodeFrame(FRAME.PAGE, 0, i, 0, payload)) writer.write(part);
    await done;
    expect(frames).toEqual(Array.from({ length: n }, () => payload.byteLength));
    expect(Math.max(...perTurn)).toBeLessThanOrEqual(budget + 2 * 64 * 1024);
    expect(perTurn.filter((b) => b > 0).length).toBeGreaterThanOrEqual(Math.ceil((n * (payload.byteLength + 16)) / (budget + 2 * 64 * 1024)));
    writer.destroy();
    ep.destroy("done");
    server.close();
  });

  it("a budget of 0 leaves reads unbounded", { timeout: 30_000 }, async () => {
    const { server, writer, reader } = await pair();
    const ep = new Endpoint(reader, { latencyMs: 0, bandwidthBytesPerSec: 0 }, { maxPayload: 1 << 20, state: () => "test", readPerTurn: () => 0 });
    let frames = 0;
    const all = new Promise<void>((resolve) => {
      ep.onFrame = () => {
        if (++frames === 16) resolve();
      };
    });
    for (let i = 0; i < 16; i++) for (const part of encodeFrame(FRAME.PAGE, 0, i, 0, new Uint8Array(60 * 1024))) writer.write(part);
    await all;
    expect(frames).toBe(16);
    writer.destroy();
    ep.destroy("done");
    server.close();
  });
});
