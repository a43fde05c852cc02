/**
 * A hostile or broken source against a real destination: garbage, truncated and oversized frames,
 * frames out of order, floods, silent connections, wrong tokens and a source dying at every phase.
 * Each case must end with a clear error naming the frame and the protocol state, bounded memory,
 * and a destination guest either untouched (no workload ever ran there, nothing mapped that was
 * not sent) or verified byte for byte.
 */
import { afterEach, describe, expect, it } from "vitest";
import { DISCARD_AT_SWITCHOVER, encodeFrame, FRAME, frameBytes } from "../src/protocol.ts";
import { complete, deviceState, discard, hello, hostileConfig, page, pageV0, PAGES, PK, RawPeer, rawFrame, startDest, TOKEN, until, type DestHarness } from "./peers.ts";

let h: DestHarness | null = null;
const peers: RawPeer[] = [];
afterEach(async () => {
  for (const p of peers.splice(0)) p.destroy();
  await h?.dispose();
  h = null;
});

async function dest(overrides: Parameters<typeof hostileConfig>[0] = {}): Promise<DestHarness> {
  h = await startDest(hostileConfig(overrides));
  return h;
}

async function peer(port: number): Promise<RawPeer> {
  const p = await RawPeer.connect(port);
  peers.push(p);
  return p;
}

/** Nothing of the guest is mapped and no workload ever ran: the destination guest is untouched. */
function expectUntouched(d: DestHarness): void {
  expect(d.resumed()).toBe(false);
  expect(d.dest.guest.presentMap(0, PAGES).filter(Boolean)).toHaveLength(0);
}

describe("before the HELLO: the first connection from anyone no longer wins", () => {
  it("garbage bytes: refused with a framing error; the destination keeps waiting and accepts the real source", async () => {
    const d = await dest();
    const bad = await peer(d.port);
    bad.send(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    expect(await d.rejection()).toMatch(/rejected: protocol error in state "awaiting-hello": bad frame length .* exceeds the limit of 65536/);
    await bad.waitClosed();
    expect(d.dest.phase).toBe("waiting");
    const good = await peer(d.port);
    good.send(hello());
    await good.waitFrame(FRAME.HELLO_ACK);
    expect(d.dest.protocolState).toBe("precopy");
    expect(d.failures).toEqual([]);
    expectUntouched(d);
  });

  it("a wrong token: refused, the peer is told why, the guest untouched", async () => {
    const d = await dest();
    const bad = await peer(d.port);
    bad.send(hello({ token: TOKEN.replace("0", "1") }));
    expect(await d.rejection()).toMatch(/HELLO frame in state "awaiting-hello": wrong token/);
    await bad.waitClosed();
    expect(bad.errors().join()).toMatch(/wrong token/);
    expect(bad.frames.some((f) => f.type === FRAME.HELLO_ACK)).toBe(false);
    expectUntouched(d);
  });

  it("a HELLO that is not the expected JSON object, or for another guest", async () => {
    const d = await dest();
    const cases: Array<[Uint8Array | ReturnType<typeof hello>, RegExp]> = [
      [encodeFrame(FRAME.HELLO, 0, 0, 0, new TextEncoder().encode("[1,2]")), /payload is not a JSON object/],
      [encodeFrame(FRAME.HELLO, 0, 0, 0, Uint8Array.of(0xff, 0xfe)), /payload is not UTF-8 JSON/],
      [hello({ version: 99 }), /protocol version 99/],
      [hello({ pages: PAGES * 2 }), /guest mismatch/],
      [hello({ strategy: "teleport" as never }), /unknown strategy/],
      [encodeFrame(FRAME.PAGE, PK.PRECOPY, 0, 0, pageV0(0)), /PAGE frame in state "awaiting-hello": the first frame must be HELLO/],
    ];
    for (const [i, [frame, why]] of cases.entries()) {
      const p = await peer(d.port);
      p.send(frame);
      expect(await d.rejection(i + 1)).toMatch(why);
      await p.waitClosed();
    }
    expectUntouched(d);
  });

  it("a silent connection is closed after the HELLO timeout; a truncated HELLO the same", async () => {
    const d = await dest({ protocol: { helloTimeoutMs: 150 } });
    const silent = await peer(d.port);
    expect(await d.rejection()).toMatch(/no HELLO within 150 ms/);
    await silent.waitClosed();
    const truncated = await peer(d.port);
    const full = frameBytes(hello());
    truncated.send(full.subarray(0, full.length - 10));
    expect(await d.rejection(2)).toMatch(/no HELLO within 150 ms/);
    expectUntouched(d);
  });

  it("an oversized frame is refused from its header, before its payload is buffered", async () => {
    const d = await dest();
    const p = await peer(d.port);
    p.send(rawFrame(12 + 512 * 1024 * 1024, FRAME.HELLO));
    expect(await d.rejection()).toMatch(/a payload of 536870912 bytes exceeds the limit of 65536/);
    expect(d.dest.metrics().queuePeak.bytes).toBe(0);
  });

  it("unauthenticated connections are bounded: past the limit they are refused at once", async () => {
    const d = await dest({ protocol: { maxPendingConnections: 2, helloTimeoutMs: 60_000 } });
    await peer(d.port);
    await peer(d.port);
    const third = await peer(d.port);
    expect(await d.rejection()).toMatch(/refused: too many unauthenticated connections/);
    await third.waitClosed();
  });
});

describe("after the HELLO: every frame is checked against the protocol state", () => {
  /** An authenticated fake source, HELLO_ACK received. */
  async function session(strategy: "precopy" | "postcopy" | "hybrid" = "postcopy", overrides: Parameters<typeof hostileConfig>[0] = {}): Promise<{ d: DestHarness; src: RawPeer }> {
    const d = await dest(overrides);
    const src = await peer(d.port);
    src.send(hello({ strategy }));
    await src.waitFrame(FRAME.HELLO_ACK);
    return { d, src };
  }

  /** The violation closes the connection, is reported to the source, and fails the migration. */
  async function expectViolation(d: DestHarness, src: RawPeer, why: RegExp): Promise<string> {
    const msg = await d.failure();
    expect(msg).toMatch(why);
    await src.waitClosed();
    expect(src.errors().join("\n")).toMatch(why);
    expect(d.dest.phase).toBe("failed");
    return msg;
  }

  it.each([
    ["a second HELLO", () => hello(), /HELLO frame in state "precopy": a second HELLO would reset the migration/],
    ["a PAGE outside the guest", () => page(PAGES, PK.PRECOPY), /PAGE frame in state "precopy": page 256 is outside the guest \(256 pages\)/],
    ["a PAGE of the wrong size", () => encodeFrame(FRAME.PAGE, PK.PRECOPY, 3, 0, new Uint8Array(100)), /PAGE frame in state "precopy": page 3 carries 100 bytes, not 4096/],
    ["a zero PAGE with a payload", () => encodeFrame(FRAME.PAGE, PK.PRECOPY | 0x80, 3, 0, new Uint8Array(4096)), /zero page 3 carries 4096 bytes/],
    ["a PAGE of an unknown kind", () => encodeFrame(FRAME.PAGE, 9, 3, 0, new Uint8Array(4096)), /unknown flags 0x9/],
    ["a demand PAGE before the switchover", () => page(3, PK.DEMAND), /PAGE frame in state "precopy": page 3 of postcopy kind 3 before the switchover/],
    ["COMPLETE before the switchover", () => complete(), /COMPLETE frame in state "precopy": COMPLETE outside postcopy/],
    ["a REQUEST (destinations send those)", () => encodeFrame(FRAME.REQUEST, 0, 1, 1), /REQUEST frame in state "precopy": the source never sends this frame/],
    ["an unknown frame type", () => encodeFrame(99 as never, 0, 0, 0), /unknown frame type 99 frame in state "precopy"/],
    ["an ERROR whose payload is not JSON", () => encodeFrame(FRAME.ERROR, 0, 0, 0, new TextEncoder().encode("boom")), /ERROR frame in state "precopy": payload is not UTF-8 JSON/],
    ["an ERROR without a message", () => encodeFrame(FRAME.ERROR, 0, 0, 0, new TextEncoder().encode('{"msg":1}')), /ERROR frame in state "precopy": payload has no string "message"/],
    ["a DEVICE_STATE whose hot set is outside the guest", () => deviceState("postcopy", { workload: { hotBase: PAGES, hotPages: 16, threads: [] } }), /DEVICE_STATE frame in state "precopy": "workload.hotBase" puts the hot set outside the guest/],
    ["a DEVICE_STATE resuming a postcopy migration with no pages", () => deviceState("resume"), /DEVICE_STATE frame in state "precopy": resume mode in a postcopy migration/],
    ["a DISCARD in a postcopy migration", () => discard([1]), /DISCARD frame in state "precopy": DISCARD in a postcopy migration/],
    // The largest frame after the HELLO is a 64-page run (8 bytes of bitmap + 256 KiB).
    ["an oversized frame after the HELLO", () => rawFrame(12 + 50 * 1024 * 1024, FRAME.PAGES), /protocol error in state "precopy": bad frame length .*exceeds the limit of 262152/],
    ["a run of 65 pages", () => encodeFrame(FRAME.PAGES, PK.PRECOPY, 0, 65, new Uint8Array(12)), /PAGES frame in state "precopy": a run of 65 pages \(1 to 64\)/],
    ["a run past the end of the guest", () => encodeFrame(FRAME.PAGES, PK.PRECOPY, PAGES - 2, 4, Uint8Array.of(15, 0, 0, 0)), /pages 254..257 are outside the guest/],
    ["a run whose payload disagrees with its zero bitmap", () => encodeFrame(FRAME.PAGES, PK.PRECOPY, 0, 2, Uint8Array.of(1, 0, 0, 0)), /payload of 4 bytes for 1 data pages \(expected 4100\)/],
    ["a run with zero bits past its end", () => encodeFrame(FRAME.PAGES, PK.PRECOPY, 0, 2, Uint8Array.of(7, 0, 0, 0)), /zero bits set past the end of the run/],
  ])("%s", async (_name, frame, why) => {
    const { d, src } = await session();
    src.send(frame());
    const msg = await expectViolation(d, src, why);
    expect(msg).toMatch(/the source broke the protocol during precopy/);
    expectUntouched(d);
    expect(d.dest.metrics().queuePeak.frames).toBeLessThanOrEqual(1); // only the HELLO was ever queued
  });

  it("a truncated frame, then the source dies: a clear error, nothing installed", async () => {
    const { d, src } = await session("hybrid");
    src.send(frameBytes(page(0, PK.PRECOPY)).subarray(0, 2000));
    src.socket.end();
    expect(await d.failure()).toMatch(/connection to the source lost during precopy \(the connection was closed by the peer\); the guest never left the source/);
    expectUntouched(d);
  });

  it("a DISCARD whose count disagrees with its payload, or names a page outside the guest", async () => {
    const { d, src } = await session("hybrid");
    src.send(encodeFrame(FRAME.DISCARD, 0, 0, 5, new Uint8Array(8)));
    await expectViolation(d, src, /DISCARD frame in state "precopy": payload of 8 bytes for 5 pages/);
    await d.dispose();
    const s2 = await session("hybrid");
    s2.src.send(discard([1, PAGES + 7]));
    await expectViolation(s2.d, s2.src, /discard of page 263 outside the guest/);
  });

  describe("once the guest runs here", () => {
    /** Hybrid: pages 0..7 by precopy, DEVICE_STATE (postcopy): the guest runs with the rest missing. */
    async function resumed(): Promise<{ d: DestHarness; src: RawPeer }> {
      const s = await session("hybrid");
      for (let p = 0; p < 8; p++) {
        s.src.send(page(p, PK.PRECOPY));
        s.d.oracle[p] = 0;
      }
      s.src.send(discard([]), discard([], DISCARD_AT_SWITCHOVER));
      await s.src.waitFrame(FRAME.DISCARD_ACK);
      s.src.send(deviceState("postcopy"));
      await s.src.waitFrame(FRAME.RESUMED);
      return s;
    }

    /** The guest's memory: the pages it has are byte for byte the source's, the others unmapped. */
    async function expectGuestVerified(d: DestHarness): Promise<void> {
      const v = await d.dest.verify(d.oracle, () => {});
      expect(v).toMatchObject({ ok: true, scope: "partial", mismatchedPages: 0, filledMissingPages: 0, staleReads: 0 });
      expect(v.pagesChecked + v.missingPages).toBe(PAGES);
    }

    it.each([
      ["a DISCARD would drop the running guest's memory", () => discard([0, 1]), /DISCARD frame in state "postcopy": DISCARD once the guest runs here would drop its memory/],
      ["a second DEVICE_STATE", () => deviceState("postcopy"), /DEVICE_STATE frame in state "postcopy": a second DEVICE_STATE/],
      ["a HELLO would reset the phase", () => hello({ strategy: "hybrid" }), /HELLO frame in state "postcopy": a second HELLO would reset the migration/],
      ["a precopy PAGE over the running guest", () => page(0, PK.PRECOPY, new Uint8Array(4096).fill(7)), /PAGE frame in state "postcopy": page 0 of precopy kind 1 after the guest resumed here/],
      ["a demand PAGE nobody asked for", () => page(100, PK.DEMAND), /PAGE frame in state "postcopy": demand page 100 was not requested/],
    ])("%s: refused, the connection closed, the guest's memory intact", async (_name, frame, why) => {
      const { d, src } = await resumed();
      src.send(frame());
      const msg = await expectViolation(d, src, why);
      expect(msg).toMatch(/during postcopy .*248 of 256 pages never arrived.*no missing page is filled with zeros/);
      await expectGuestVerified(d);
    });

    it("a background PAGE for a page the guest already has is not written over it (UFFDIO_COPY meets EEXIST)", async () => {
      const { d, src } = await resumed();
      // The guest writes page 3 here (a header of version 1); then a stale copy arrives.
      const mine = new Uint8Array(4096).fill(0x5a);
      await d.dest.guest.writePage(3, mine);
      src.send(page(3, PK.BACKGROUND, new Uint8Array(4096).fill(0x11)), page(9, PK.BACKGROUND));
      d.oracle[9] = 0;
      await until(() => d.dest.metrics().received.background === 2, "both background pages handled");
      expect(d.dest.metrics().received.alreadyPresent).toBe(1);
      expect(await d.dest.guest.readPage(3)).toEqual(mine);
      expect(await d.dest.guest.readPage(9)).toEqual(pageV0(9));
      expect(d.failures).toEqual([]);
    });

    it("COMPLETE with pages still missing: a clear error, the guest keeps what it has", async () => {
      const { d, src } = await resumed();
      src.send(complete());
      expect(await d.failure()).toMatch(/migration stopped by a destination error during postcopy \(248 pages never arrived before COMPLETE\)/);
      await src.waitClosed();
      await expectGuestVerified(d);
    });
  });

  it("a flood of small valid frames: the receive queue stays bounded (the socket is paused), then the migration goes on", async () => {
    const { d, src } = await session("precopy", { protocol: { maxQueuedFrames: 64, maxQueuedBytes: 64 * 1024 } });
    const zero = frameBytes(page(5, PK.PRECOPY, null));
    const flood = new Uint8Array(zero.length * 20_000);
    for (let i = 0; i < 20_000; i++) flood.set(zero, i * zero.length);
    src.send(flood);
    for (let p = 0; p < PAGES; p++) src.send(page(p, PK.STOP_COPY));
    src.send(deviceState("resume"));
    await until(() => d.completed() || d.failures.length > 0, "the destination to finish");
    expect(d.failures).toEqual([]);
    const m = d.dest.metrics();
    expect(m.received.precopy).toBe(20_000);
    expect(m.backpressurePauses).toBeGreaterThan(0);
    // At most the limit plus what one socket read can hold (64 KiB of 16-byte frames).
    expect(m.queuePeak.frames).toBeLessThanOrEqual(64 + 65536 / 16);
    for (let p = 0; p < PAGES; p++) d.oracle[p] = 0;
    const v = await d.dest.verify(d.oracle, () => {});
    expect(v).toMatchObject({ ok: true, scope: "full", pagesChecked: PAGES });
  });

  it("a silent source after the HELLO: the idle timeout ends the migration with a clear error", async () => {
    const { d } = await session("precopy", { protocol: { idleTimeoutMs: 300 } });
    expect(await d.failure()).toMatch(/connection to the source lost during precopy \(nothing received for 300 ms from the source\)/);
    expectUntouched(d);
  });
});

describe("the postcopy-preempt connection", () => {
  async function announced(): Promise<{ d: DestHarness; src: RawPeer }> {
    const d = await dest();
    const src = await peer(d.port);
    src.send(hello({ strategy: "postcopy", preempt: true }));
    await src.waitFrame(FRAME.HELLO_ACK);
    return { d, src };
  }

  it("is accepted once, with the token, as announced; a second one, a main HELLO or a wrong token is refused", async () => {
    const { d } = await announced();
    const wrong = await peer(d.port);
    wrong.send(hello({ channel: "preempt", token: "x".repeat(32) }));
    expect(await d.rejection()).toMatch(/HELLO frame in state "precopy, preempt expected": wrong token/);
    const main2 = await peer(d.port);
    main2.send(hello({ channel: "main" }));
    expect(await d.rejection(2)).toMatch(/a second main connection/);
    const pre = await peer(d.port);
    pre.send(hello({ channel: "preempt" }));
    await pre.waitFrame(FRAME.HELLO_ACK);
    expect(d.failures).toEqual([]);
    expectUntouched(d);
  });

  it("carries demand pages only: anything else closes the migration", async () => {
    const { d, src } = await announced();
    const pre = await peer(d.port);
    pre.send(hello({ channel: "preempt" }));
    await pre.waitFrame(FRAME.HELLO_ACK);
    src.send(deviceState("postcopy"));
    await src.waitFrame(FRAME.RESUMED);
    pre.send(page(3, PK.BACKGROUND));
    expect(await d.failure()).toMatch(/PAGE frame in state "postcopy, preempt channel": only demand pages travel on the preempt channel/);
    await src.waitClosed();
    await pre.waitClosed();
    const v = await d.dest.verify(d.oracle, () => {});
    expect(v).toMatchObject({ ok: true, scope: "partial", pagesChecked: 0, missingPages: PAGES, filledMissingPages: 0 });
  });

  it("before the main connection, a preempt HELLO is refused", async () => {
    const d = await dest();
    const pre = await peer(d.port);
    pre.send(hello({ channel: "preempt" }));
    expect(await d.rejection()).toMatch(/a preempt channel before the main connection/);
    expectUntouched(d);
  });
});

describe("the source dies at every phase", () => {
  const phases: Array<[string, (src: RawPeer, d: DestHarness) => Promise<void>, RegExp, "untouched" | "verified"]> = [
    ["after connecting", async () => {}, /rejected: the connection was closed by the peer/, "untouched"],
    ["after HELLO", async (src) => void (await src.waitFrame(FRAME.HELLO_ACK)), /lost during precopy/, "untouched"],
    [
      "mid-precopy",
      async (src) => {
        await src.waitFrame(FRAME.HELLO_ACK);
        for (let p = 0; p < 100; p++) src.send(page(p, PK.PRECOPY));
      },
      /lost during precopy/,
      "untouched",
    ],
    [
      "after the first DISCARD",
      async (src) => {
        await src.waitFrame(FRAME.HELLO_ACK);
        for (let p = 0; p < PAGES; p++) src.send(page(p, PK.PRECOPY));
        src.send(discard([1, 2]));
        await src.waitFrame(FRAME.DISCARD_ACK);
      },
      /lost during precopy/,
      "untouched",
    ],
    [
      "after DEVICE_STATE",
      async (src, d) => {
        await src.waitFrame(FRAME.HELLO_ACK);
        for (let p = 0; p < 20; p++) {
          src.send(page(p, PK.PRECOPY));
          d.oracle[p] = 0;
        }
        src.send(discard([]), discard([5], DISCARD_AT_SWITCHOVER), deviceState("postcopy"));
        await src.waitFrame(FRAME.RESUMED);
      },
      /lost during postcopy .*237 of 256 pages never arrived/,
      "verified",
    ],
    [
      "mid-postcopy",
      async (src, d) => {
        await src.waitFrame(FRAME.HELLO_ACK);
        src.send(discard([]), discard([], DISCARD_AT_SWITCHOVER), deviceState("postcopy"));
        await src.waitFrame(FRAME.RESUMED);
        for (let p = 0; p < 128; p++) {
          src.send(page(p, PK.BACKGROUND, p % 2 === 0 ? pageV0(p) : null));
          d.oracle[p] = p % 2 === 0 ? 0 : d.oracle[p]!;
        }
        await until(() => d.dest.metrics().received.background === 128, "128 pages installed");
      },
      /lost during postcopy .*128 of 256 pages never arrived/,
      "verified",
    ],
  ];

  it.each(phases)("%s", async (_name, script, why, outcome) => {
    h = await startDest(hostileConfig());
    const d = h;
    const src = await peer(d.port);
    if (_name === "after connecting") {
      src.socket.destroy();
      expect(await d.rejection()).toMatch(why);
    } else {
      src.send(hello({ strategy: "hybrid" }));
      await script(src, d);
      src.destroy();
      expect(await d.failure()).toMatch(why);
    }
    if (outcome === "untouched") {
      expect(d.resumed()).toBe(false);
    } else {
      const v = await d.dest.verify(d.oracle, () => {});
      expect(v).toMatchObject({ ok: true, scope: "partial", mismatchedPages: 0, filledMissingPages: 0 });
      expect(v.missingPages).toBeGreaterThan(0);
    }
  });
});
