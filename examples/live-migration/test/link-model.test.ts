/**
 * The shaped link's model on a fake clock: when frames leave the modelled wire, when they reach
 * the socket, and how often the pump makes the event loop come round while it waits. Node's
 * timers and performance.now() are faked, so every time below is exact and the machine's speed
 * plays no part.
 */
import type { Socket } from "node:net";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { BULK_TICK_MS, SEGMENT_BYTES, ShapedLink } from "../src/link.ts";

/** What ShapedLink uses of a socket; records when each frame's first part was written. */
function fakeSocket(name: string, log: Array<{ name: string; size: number; at: number }>): Socket {
  let first = true;
  const s = {
    writableLength: 0,
    destroyed: false,
    on: () => s,
    cork: () => {},
    uncork: () => {},
    write: (chunk: Uint8Array, cb?: () => void) => {
      if (first) log.push({ name, size: chunk.byteLength, at: performance.now() });
      // Frames below are sent as [header, body]: the body (with the callback or without) ends one.
      first = chunk.byteLength !== 16;
      cb?.();
      return true;
    },
    end: () => {},
    destroy: () => {},
  };
  return s as unknown as Socket;
}

const HEADER = new Uint8Array(16);

let immediates = 0;

beforeEach(() => {
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setImmediate", "clearImmediate", "performance"] });
  const fake = globalThis.setImmediate;
  immediates = 0;
  vi.stubGlobal("setImmediate", ((...args: Parameters<typeof setImmediate>) => {
    immediates++;
    return fake(...args);
  }) as typeof setImmediate);
});

afterEach(() => {
  vi.unstubAllGlobals();
  vi.useRealTimers();
});

describe("the shaped link on a fake clock", () => {
  it("paces bulk frames with timers of BULK_TICK_MS: each reaches the socket at most that long after the model's arrival, in batches, and the event loop comes round once per send and per timer", () => {
    const log: Array<{ name: string; size: number; at: number }> = [];
    // 1 Gbit/s, 1 ms: a 64 KiB frame takes 0.524 ms on the wire.
    const bw = 125_000_000;
    const link = new ShapedLink(fakeSocket("bulk", log), { latencyMs: 1, bandwidthBytesPerSec: bw, sendBufferBytes: 64 * 1024 * 1024 });
    const body = new Uint8Array(64 * 1024 - 16);
    const t0 = performance.now();
    const frames = 160;
    for (let i = 0; i < frames; i++) link.send([HEADER, body]);
    vi.advanceTimersByTime(200);
    expect(log).toHaveLength(frames);
    const perFrameMs = (64 * 1024 * 1000) / bw;
    log.forEach((w, i) => {
      const arrival = t0 + (i + 1) * perFrameMs + 1;
      expect(w.at).toBeGreaterThanOrEqual(arrival);
      expect(w.at).toBeLessThan(arrival + BULK_TICK_MS);
    });
    // The wire runs 84 ms; the pump woke every BULK_TICK_MS or more, not for every frame.
    expect(BULK_TICK_MS).toBeGreaterThan(perFrameMs);
    expect(new Set(log.map((w) => w.at)).size).toBeLessThanOrEqual(Math.ceil((frames * perFrameMs + 1) / BULK_TICK_MS) + 1);
    // One turn for the queued frames (the first send's kick; the others find it pending), then
    // timers only: waiting for a deadline a turn at a time would have run the loop without bound
    // on this frozen clock (the fake setImmediate does not move it).
    expect(immediates).toBe(1);
    expect(link.bytesSent).toBe(frames * 64 * 1024);
  });

  it("a demand frame queued after a segment boundary that a late pump has not reached yet leaves after that segment, not at the boundary", () => {
    const log: Array<{ name: string; size: number; at: number }> = [];
    // 1 MiB/s: one 64 KiB segment takes 62.5 ms. No latency, so a frame's write time is its arrival.
    const shape = { latencyMs: 0, bandwidthBytesPerSec: 1024 * 1024, sendBufferBytes: 1024 * 1024 };
    const bulk = new ShapedLink(fakeSocket("bulk", log), shape);
    // Not precise: its arrival is waited for with the same millisecond timers as the bulk frames.
    const demand = new ShapedLink(fakeSocket("demand", log), shape, { wire: bulk.wire, priority: true, precise: false });
    const t0 = performance.now();
    bulk.send([HEADER, new Uint8Array(4 * SEGMENT_BYTES - 16)]);
    vi.advanceTimersByTime(0); // the kick's turn: the first segment leaves at t0
    // The wire frees at t0 + 62.5; the pump's timer is rounded up to 63 ms. A demand frame
    // queued in between must not take the boundary at 62.5, which passed before it existed.
    expect(BULK_TICK_MS).toBeLessThan(62.5);
    vi.advanceTimersByTime(62.75);
    demand.send([HEADER, new Uint8Array(4096 - 16)]);
    vi.advanceTimersByTime(1000);
    expect(log.map((w) => w.name)).toEqual(["demand", "bulk"]);
    const segMs = (SEGMENT_BYTES * 1000) / (1024 * 1024);
    const demandAt = log[0]!.at - t0;
    // The second bulk segment (62.5 to 125 ms) is on the wire first; then the demand frame's 4 KiB.
    expect(demandAt).toBeGreaterThanOrEqual(2 * segMs + (4096 * 1000) / (1024 * 1024));
    expect(demandAt).toBeLessThan(2 * segMs + (4096 * 1000) / (1024 * 1024) + BULK_TICK_MS);
    // It still cut in ahead of the two bulk segments not yet on the wire.
    expect(log[1]!.at - t0).toBeGreaterThanOrEqual(4 * segMs + (4096 * 1000) / (1024 * 1024));
  });

  it("an idle wire starts when a frame is queued, not when it last carried something", () => {
    const log: Array<{ name: string; size: number; at: number }> = [];
    const shape = { latencyMs: 5, bandwidthBytesPerSec: 1024 * 1024 };
    const link = new ShapedLink(fakeSocket("bulk", log), shape);
    link.send([HEADER, new Uint8Array(1024 - 16)]);
    vi.advanceTimersByTime(500);
    const t1 = performance.now();
    link.send([HEADER, new Uint8Array(SEGMENT_BYTES - 16)]);
    vi.advanceTimersByTime(500);
    expect(log).toHaveLength(2);
    // Its whole transmission and the latency come after it was queued: the idle 500 ms are not banked.
    const model = t1 + (SEGMENT_BYTES * 1000) / (1024 * 1024) + 5;
    expect(log[1]!.at).toBeGreaterThanOrEqual(model);
    expect(log[1]!.at).toBeLessThan(model + BULK_TICK_MS);
  });
});
