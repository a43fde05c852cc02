/**
 * The demand-fault floor probe's protocol (floor.ts): framing over any chunking, the answers'
 * bytes, the round trips on a fake clock, and one real run of the two processes (counts only:
 * what the machine measures is the bench's business, never a test's).
 */
import { describe, expect, it } from "vitest";
import {
  combineFloors,
  decodeFloorRequest,
  decodeFloorResponse,
  encodeFloorRequest,
  encodeFloorResponse,
  FixedRecordReader,
  FLOOR_PAGE_BYTES,
  FLOOR_REQ,
  FLOOR_RESPONSE_BYTES,
  FloorRequester,
  FloorResponder,
  floorPageByte,
  formatFaultFloor,
  measureFaultFloor,
  type FaultFloor,
} from "../src/floor.ts";

/** `bytes` cut at `cuts` (offsets, ascending). */
function split(bytes: Buffer, cuts: number[]): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  for (const c of [...cuts, bytes.byteLength]) {
    out.push(bytes.subarray(at, c));
    at = c;
  }
  return out;
}

describe("FixedRecordReader", () => {
  it("gives the same records whatever the chunks' boundaries", () => {
    const stream = Buffer.from(Array.from({ length: 40 }, (_, i) => i));
    for (let a = 0; a <= 40; a++)
      for (const b of [a, a + 3, a + 11, 40]) {
        if (b < a || b > 40) continue;
        const r = new FixedRecordReader(8);
        const recs = split(stream, [a, b]).flatMap((c) => r.push(c).map((x) => Buffer.from(x)));
        expect(recs).toHaveLength(5);
        expect(Buffer.concat(recs)).toEqual(stream);
        expect(r.buffered).toBe(0);
      }
  });

  it("holds a partial record until the rest arrives", () => {
    const r = new FixedRecordReader(4);
    expect(r.push(Buffer.from([1, 2, 3, 4, 5, 6]))).toEqual([Buffer.from([1, 2, 3, 4])]);
    expect(r.buffered).toBe(2);
    expect(r.push(Buffer.from([7]))).toEqual([]);
    expect(r.push(Buffer.from([8, 9]))).toEqual([Buffer.from([5, 6, 7, 8])]);
    expect(r.buffered).toBe(1);
    expect(() => new FixedRecordReader(0)).toThrow(RangeError);
  });
});

describe("the floor's frames", () => {
  it("a request carries its kind and sequence number; an unknown kind is refused", () => {
    expect(decodeFloorRequest(encodeFloorRequest(FLOOR_REQ.PAGE, 0xfffffffe))).toEqual({ kind: FLOOR_REQ.PAGE, seq: 0xfffffffe });
    expect(decodeFloorRequest(encodeFloorRequest(FLOOR_REQ.STOP_BULK, 0))).toEqual({ kind: FLOOR_REQ.STOP_BULK, seq: 0 });
    const bad = encodeFloorRequest(FLOOR_REQ.PAGE, 1);
    bad.writeUInt32LE(9, 0);
    expect(() => decodeFloorRequest(bad)).toThrow("unknown request kind 9");
  });

  it("an answer is its sequence number, the page's length and 4 KiB of the page's byte, each checked", () => {
    const a = encodeFloorResponse(77);
    expect(a.byteLength).toBe(FLOOR_RESPONSE_BYTES);
    expect(a.readUInt32LE(0)).toBe(77);
    expect(a.readUInt32LE(4)).toBe(FLOOR_PAGE_BYTES);
    expect(a.subarray(8).every((b) => b === floorPageByte(77))).toBe(true);
    expect(decodeFloorResponse(a)).toBe(77);
    a[8 + 4095] = floorPageByte(77) ^ 1;
    expect(() => decodeFloorResponse(a)).toThrow(`answer 77 has byte ${floorPageByte(77) ^ 1} at 4095`);
    const short = encodeFloorResponse(3);
    short.writeUInt32LE(4095, 4);
    expect(() => decodeFloorResponse(short)).toThrow("says 4095 bytes");
    expect(() => encodeFloorResponse(1, Buffer.alloc(8))).toThrow(RangeError);
  });
});

describe("FloorResponder and FloorRequester", () => {
  it("answer each request in turn and time it from the request's write to the answer's last byte", () => {
    let now = 100;
    const toSource: Buffer[] = [];
    const toDest: Buffer[] = [];
    let stops = 0;
    const requester = new FloorRequester((b) => toSource.push(Buffer.from(b)), () => now);
    const responder = new FloorResponder(
      (b) => toDest.push(Buffer.from(b)),
      () => stops++,
    );
    const rtts: number[] = [];
    for (let i = 0; i < 3; i++) {
      requester.request();
      expect(requester.outstanding).toBe(true);
      expect(() => requester.request()).toThrow("already outstanding");
      // The request crosses in two pieces, the answer in three.
      const req = Buffer.concat(toSource.splice(0));
      now += 0.25;
      responder.push(req.subarray(0, 3));
      expect(toDest).toHaveLength(0);
      responder.push(req.subarray(3));
      const answer = Buffer.concat(toDest.splice(0));
      expect(answer.byteLength).toBe(FLOOR_RESPONSE_BYTES);
      expect(requester.push(answer.subarray(0, 5))).toEqual([]);
      expect(requester.push(answer.subarray(5, 4000))).toEqual([]);
      now += 1.5 + i;
      rtts.push(...requester.push(answer.subarray(4000)));
      expect(requester.outstanding).toBe(false);
    }
    expect(rtts).toEqual([1750, 2750, 3750]);
    expect(responder.answered).toBe(3);
    responder.push(Buffer.concat([encodeFloorRequest(FLOOR_REQ.STOP_BULK, 0), encodeFloorRequest(FLOOR_REQ.STOP_BULK, 0)]));
    expect(stops).toBe(2);
    expect(toDest).toHaveLength(0);
  });

  it("refuses an answer nobody asked for, or for another request", () => {
    const requester = new FloorRequester(() => {}, () => 0);
    expect(() => requester.push(encodeFloorResponse(1))).toThrow("answer 1 while none was outstanding");
    requester.request();
    expect(() => requester.push(encodeFloorResponse(2))).toThrow("answer 2 while 1 was outstanding");
  });
});

const floor = (loadedP99: number, idleP99: number, bulk: number, load: number): FaultFloor => ({
  loaded: { count: 10, p50Us: loadedP99 / 4, p90Us: loadedP99 / 2, p99Us: loadedP99, maxUs: loadedP99 * 2 },
  idle: { count: 10, p50Us: idleP99 / 4, p90Us: idleP99 / 2, p99Us: idleP99, maxUs: idleP99 * 2 },
  bulkBytesPerSec: bulk,
  loadAverage: load,
});

describe("combineFloors and formatFaultFloor", () => {
  it("take each figure's median, the counts' sum, the largest max and the first load average", () => {
    const c = combineFloors([floor(4000, 800, 1e9, 1.5), floor(8000, 400, 3e9, 2.5), floor(6000, 1200, 2e9, 3.5)]);
    expect(c).toEqual({
      loaded: { count: 30, p50Us: 1500, p90Us: 3000, p99Us: 6000, maxUs: 16_000 },
      idle: { count: 30, p50Us: 200, p90Us: 400, p99Us: 800, maxUs: 2400 },
      bulkBytesPerSec: 2e9,
      loadAverage: 1.5,
    });
    expect(combineFloors([floor(4000, 800, 1e9, 1), floor(6000, 400, 3e9, 2)]).loaded.p99Us).toBe(5000);
    expect(() => combineFloors([])).toThrow(RangeError);
  });

  it("formats p50 / p99 with and without the push", () => {
    expect(formatFaultFloor(floor(6000, 800, 1e9, 1))).toBe(
      "4 KiB request/answer between two bare Node processes, p50 / p99 1.50 / 6.00 ms beside a bulk push on a second connection, 0.20 / 0.80 ms without",
    );
  });
});

describe("measureFaultFloor", () => {
  it("runs the two processes and times the asked number of round trips in each phase", async () => {
    const f = await measureFaultFloor({ samples: 20, warmup: 5, gapMs: 0, bulkWarmupBytes: 1 << 20 });
    for (const p of [f.loaded, f.idle]) {
      expect(p.count).toBe(20);
      expect(p.p50Us).toBeGreaterThan(0);
      expect(p.p50Us).toBeLessThanOrEqual(p.p90Us);
      expect(p.p90Us).toBeLessThanOrEqual(p.p99Us);
      expect(p.p99Us).toBeLessThanOrEqual(p.maxUs);
    }
    expect(f.bulkBytesPerSec).toBeGreaterThan(0);
  });
});
