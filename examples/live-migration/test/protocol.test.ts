/**
 * The wire format and the shaped link, without the rest of the migration.
 */
import { once } from "node:events";
import { createServer, connect, type Socket } from "node:net";
import { describe, expect, it } from "vitest";
import { BURST_MS, SEGMENT_BYTES, ShapedLink } from "../src/link.ts";
import {
  decodeJson,
  decodePageList,
  encodeFrame,
  encodeJson,
  encodePageList,
  FRAME,
  frameBytes,
  FrameBufferPool,
  FrameReader,
  HEADER_SIZE,
  PAGE_KIND,
  PAGE_ZERO,
  pageKindOf,
  ProtocolError,
} from "../src/protocol.ts";

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Byte equality of two (large) buffers, without a per-element diff. */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

describe("frames", () => {
  const page = new Uint8Array(4096).map((_, i) => (i * 7) & 0xff);
  const stream = concat([
    frameBytes(encodeJson(FRAME.HELLO, { version: 1, pages: 3 })),
    frameBytes(encodeFrame(FRAME.PAGE, PAGE_KIND.DEMAND, 2, 0, page)),
    frameBytes(encodeFrame(FRAME.PAGE, PAGE_KIND.BACKGROUND | PAGE_ZERO, 0xfffffffe, 0)),
    frameBytes(encodeFrame(FRAME.DISCARD, 0, 0, 3, encodePageList(Uint32Array.of(1, 5, 9)))),
  ]);

  it("a header is 16 bytes: length, type, flags, reserved, page, aux (little-endian)", () => {
    const b = frameBytes(encodeFrame(FRAME.REQUEST, 0x12, 0x01020304, 7));
    expect(b.length).toBe(HEADER_SIZE);
    expect([...b]).toEqual([12, 0, 0, 0, FRAME.REQUEST, 0x12, 0, 0, 4, 3, 2, 1, 7, 0, 0, 0]);
  });

  it("reassembles the same frames whatever the chunking (every split point)", () => {
    for (let cut = 1; cut < stream.length; cut += 97) {
      const r = new FrameReader();
      const frames = [...r.push(stream.subarray(0, cut)), ...r.push(stream.subarray(cut))];
      expect(frames.map((f) => f.type)).toEqual([FRAME.HELLO, FRAME.PAGE, FRAME.PAGE, FRAME.DISCARD]);
      expect(decodeJson(frames[0]!)).toEqual({ version: 1, pages: 3 });
      expect(frames[1]!.page).toBe(2);
      expect(pageKindOf(frames[1]!.flags)).toBe(PAGE_KIND.DEMAND);
      expect(frames[1]!.payload).toEqual(page);
      expect(frames[2]!.page).toBe(0xfffffffe);
      expect(frames[2]!.flags & PAGE_ZERO).toBe(PAGE_ZERO);
      expect(frames[2]!.payload.length).toBe(0);
      expect([...decodePageList(frames[3]!.payload)]).toEqual([1, 5, 9]);
      expect(r.buffered).toBe(0);
    }
  });

  it("byte by byte", () => {
    const r = new FrameReader();
    const types: number[] = [];
    for (let i = 0; i < stream.length; i++) for (const f of r.push(stream.subarray(i, i + 1))) types.push(f.type);
    expect(types).toEqual([FRAME.HELLO, FRAME.PAGE, FRAME.PAGE, FRAME.DISCARD]);
  });

  it("reassembles a frame that spans reads into a pooled buffer, reused once given back", () => {
    const pool = new FrameBufferPool(HEADER_SIZE + 64 * 4096);
    const r = new FrameReader(undefined, pool);
    const big = (seed: number): Uint8Array => frameBytes(encodeFrame(FRAME.PAGES, PAGE_KIND.BACKGROUND, seed, 64, new Uint8Array(64 * 4096).map((_, i) => (i * 13 + seed) & 0xff)));
    const chunked = (b: Uint8Array): Uint8Array[] => Array.from({ length: Math.ceil(b.length / 65536) }, (_, i) => b.subarray(i * 65536, (i + 1) * 65536));
    const pushAll = (b: Uint8Array) => chunked(b).flatMap((c) => r.push(c));
    const a = big(1);
    const [fa] = pushAll(a);
    expect(fa!.pooled).toBe(true);
    expect(fa!.page).toBe(1);
    expect(sameBytes(fa!.payload, a.subarray(HEADER_SIZE))).toBe(true);
    // Not given back: the next frame gets a buffer of its own, and the first one's bytes stay.
    const [fb] = pushAll(big(2));
    expect(pool.allocated).toBe(2);
    expect(sameBytes(fa!.payload, a.subarray(HEADER_SIZE))).toBe(true);
    pool.give(fa!.payload);
    pool.give(fb!.payload);
    pool.give(fb!.payload); // a second give of the same buffer keeps one copy
    expect(pool.free).toBe(2);
    const c = big(3);
    const [fc] = pushAll(c);
    expect(pool.allocated).toBe(2);
    expect(pool.free).toBe(1);
    expect(sameBytes(fc!.payload, c.subarray(HEADER_SIZE))).toBe(true);
    // A frame inside one read stays a view of it; a small frame that spans reads is not pooled.
    const whole = big(4);
    const [fd] = r.push(whole);
    expect(fd!.pooled).toBeUndefined();
    expect(fd!.payload.buffer).toBe(whole.buffer);
    const small = frameBytes(encodeFrame(FRAME.PAGE, PAGE_KIND.DEMAND, 9, 0, page));
    const [fe] = [...r.push(small.subarray(0, 100)), ...r.push(small.subarray(100))];
    expect(fe!.pooled).toBeUndefined();
    expect(fe!.payload).toEqual(page);
    expect(r.buffered).toBe(0);
  });

  it("rejects a length that cannot be a frame", () => {
    const bad = new Uint8Array(16);
    new DataView(bad.buffer).setUint32(0, 3, true);
    expect(() => new FrameReader().push(bad)).toThrow(ProtocolError);
    new DataView(bad.buffer).setUint32(0, 0xffffffff, true);
    expect(() => new FrameReader().push(bad)).toThrow(/bad frame length/);
  });
});

/** A connected loopback pair: the sender's socket and the receiver's collected frames. */
async function loopback(): Promise<{ sender: Socket; frames: Array<{ page: number; at: number }>; close: () => void }> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as { port: number }).port;
  const frames: Array<{ page: number; at: number }> = [];
  server.on("connection", (s) => {
    const r = new FrameReader();
    s.on("data", (c: Buffer) => {
      for (const f of r.push(c)) frames.push({ page: f.page, at: performance.now() });
    });
  });
  const sender = connect({ host: "127.0.0.1", port });
  await once(sender, "connect");
  return {
    sender,
    frames,
    close: () => {
      sender.destroy();
      server.close();
    },
  };
}

describe("the shaped link", () => {
  it("paces bulk frames at the bandwidth and adds the latency", async () => {
    const { sender, frames, close } = await loopback();
    try {
      const link = new ShapedLink(sender, { latencyMs: 20, bandwidthBytesPerSec: 2 * 1024 * 1024 });
      const page = new Uint8Array(4096);
      const t0 = performance.now();
      for (let i = 0; i < 128; i++) link.send(encodeFrame(FRAME.PAGE, PAGE_KIND.BACKGROUND, i, 0, page));
      await link.flush();
      while (frames.length < 128) await new Promise((r) => setTimeout(r, 5));
      // 128 x 4112 bytes at 2 MiB/s is ~251 ms, minus the 64 KiB initial burst (~31 ms), plus 20 ms latency.
      const elapsed = frames[127]!.at - t0;
      // Pacing gives a lower bound only: a loaded host may deliver later, never sooner.
      expect(elapsed).toBeGreaterThan(200);
      expect(frames[0]!.at - t0).toBeGreaterThanOrEqual(19);
      expect(frames.map((f) => f.page)).toEqual([...Array(128).keys()]);
      expect(link.bytesSent).toBe(128 * (4096 + HEADER_SIZE));
    } finally {
      close();
    }
  });

  it("one stream: a frame queued behind the send buffer arrives after all of it, and send() says how much was ahead", async () => {
    const { sender, frames, close } = await loopback();
    try {
      const link = new ShapedLink(sender, { latencyMs: 1, bandwidthBytesPerSec: 1024 * 1024 });
      const page = new Uint8Array(4096);
      for (let i = 0; i < 64; i++) link.send(encodeFrame(FRAME.PAGE, PAGE_KIND.BACKGROUND, i, 0, page));
      // Nothing has left yet (the pump runs after this turn): all 64 frames are ahead.
      expect(link.send(encodeFrame(FRAME.PAGE, PAGE_KIND.DEMAND, 1000, 0, page))).toBe(64 * (4096 + HEADER_SIZE));
      await link.flush();
      while (frames.length < 65) await new Promise((r) => setTimeout(r, 5));
      expect(frames.map((f) => f.page)).toEqual([...Array(64).keys(), 1000]);
    } finally {
      close();
    }
  });

  it("the preempt channel shares the wire and cuts in at the next segment: at most one segment ahead of a demand page", async () => {
    const bulk = await loopback();
    const pre = await loopback();
    try {
      // The order in which frames reach the two sockets (writes happen in the model's delivery order).
      const order: string[] = [];
      for (const [name, sock] of [["bulk", bulk.sender], ["preempt", pre.sender]] as const) {
        const write = sock.write.bind(sock) as (chunk: Uint8Array) => boolean;
        sock.write = ((chunk: Uint8Array) => {
          if (chunk.byteLength === HEADER_SIZE) order.push(name);
          return write(chunk);
        }) as typeof sock.write;
      }
      const link = new ShapedLink(bulk.sender, { latencyMs: 1, bandwidthBytesPerSec: 1024 * 1024 });
      const preempt = new ShapedLink(pre.sender, link.wire.shape, { wire: link.wire, priority: true });
      const page = new Uint8Array(4096);
      for (let i = 0; i < 64; i++) link.send(encodeFrame(FRAME.PAGE, PAGE_KIND.BACKGROUND, i, 0, page));
      // One pump (the wire's first turn) puts the first bulk frames on the wire: idle time is
      // caught up for at most BURST_MS, whatever the load.
      await new Promise((r) => setImmediate(r));
      const ahead = preempt.send(encodeFrame(FRAME.PAGE, PAGE_KIND.DEMAND, 1000, 0, page));
      expect(ahead).toBeLessThanOrEqual(SEGMENT_BYTES);
      await Promise.all([link.flush(), preempt.flush()]);
      while (bulk.frames.length < 64 || pre.frames.length < 1) await new Promise((r) => setTimeout(r, 5));
      // The demand page left the wire ahead of every bulk frame still queued: only those the
      // first pump put on the wire (BURST_MS of bandwidth, plus the frame that ends past it) precede it.
      const first = Math.ceil((BURST_MS * 1024 * 1024) / 1000 / (4096 + HEADER_SIZE)) + 1;
      // (A late pump may write both sockets in one turn, preempt first: no lower bound.)
      expect(order.indexOf("preempt")).toBeLessThanOrEqual(first);
      expect(order.filter((o) => o === "bulk")).toHaveLength(64);
      expect(link.bytesSent + preempt.bytesSent).toBe(65 * (4096 + HEADER_SIZE));
    } finally {
      bulk.close();
      pre.close();
    }
  });

  it("unlimited link: the preempt channel writes a frame to its socket at once, the bulk channel at the next pump", async () => {
    const bulk = await loopback();
    const pre = await loopback();
    try {
      const shape = { latencyMs: 0, bandwidthBytesPerSec: 0 };
      const link = new ShapedLink(bulk.sender, shape);
      const preempt = new ShapedLink(pre.sender, shape, { wire: link.wire, priority: true });
      const page = new Uint8Array(4096);
      link.send(encodeFrame(FRAME.PAGE, PAGE_KIND.BACKGROUND, 1, 0, page));
      expect(preempt.send(encodeFrame(FRAME.PAGE, PAGE_KIND.DEMAND, 2, 0, page))).toBe(0);
      // Same turn: the demand page is already the socket's, the bulk frame still queued here.
      expect(preempt.bytesSent).toBe(4096 + HEADER_SIZE);
      expect(link.bytesSent).toBe(0);
      await Promise.all([link.flush(), preempt.flush()]);
      expect(link.bytesSent).toBe(4096 + HEADER_SIZE);
      while (bulk.frames.length < 1 || pre.frames.length < 1) await new Promise((r) => setTimeout(r, 5));
      expect(pre.frames.map((f) => f.page)).toEqual([2]);
    } finally {
      bulk.close();
      pre.close();
    }
  });

  it("calls a frame's onWritten once the socket has written it, on both the queued and the direct path", async () => {
    const bulk = await loopback();
    const pre = await loopback();
    try {
      const shape = { latencyMs: 0, bandwidthBytesPerSec: 0 };
      const link = new ShapedLink(bulk.sender, shape);
      const preempt = new ShapedLink(pre.sender, shape, { wire: link.wire, priority: true });
      const written: string[] = [];
      link.send(encodeFrame(FRAME.PAGE, PAGE_KIND.BACKGROUND, 1, 0, new Uint8Array(4096)), () => written.push("bulk"));
      preempt.send(encodeFrame(FRAME.PAGE, PAGE_KIND.DEMAND, 2, 0, new Uint8Array(4096)), () => written.push("preempt"));
      link.send(encodeFrame(FRAME.ROUND_END, 0, 1, 1)); // no callback asked for
      expect(written).toEqual([]); // never before the socket has the bytes
      await Promise.all([link.flush(), preempt.flush()]);
      while (written.length < 2) await new Promise((r) => setTimeout(r, 5));
      expect(written.sort()).toEqual(["bulk", "preempt"]);
      while (bulk.frames.length < 2 || pre.frames.length < 1) await new Promise((r) => setTimeout(r, 5));
      expect(bulk.frames.map((f) => f.page)).toEqual([1, 1]);
    } finally {
      bulk.close();
      pre.close();
    }
  });

  it("fails waiters when the connection is cut", async () => {
    const { sender, close } = await loopback();
    try {
      const link = new ShapedLink(sender, { latencyMs: 0, bandwidthBytesPerSec: 64 * 1024 });
      for (let i = 0; i < 64; i++) link.send(encodeFrame(FRAME.PAGE, PAGE_KIND.BACKGROUND, i, 0, new Uint8Array(4096)));
      const room = link.waitForRoom(0);
      link.destroy("test cut");
      await expect(room).rejects.toThrow(/test cut/);
      expect(() => link.send(encodeFrame(FRAME.DONE, 0, 0, 0))).toThrow(/test cut/);
    } finally {
      close();
    }
  });
});
