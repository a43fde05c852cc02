/**
 * Postcopy with a saturating background push: the bulk connection's send buffer stays full while
 * the guest faults on the destination. With the postcopy-preempt channel a demand page waits
 * behind at most one wire segment and the other demand pages on their way, whatever the buffer holds;
 * on a single stream it waits behind the buffer. Measured in bytes queued ahead of each demand
 * page when the source sent it (the shaper's model), never in ms.
 */
import { describe, expect, it } from "vitest";
import { SEGMENT_BYTES, sendBufferBytes } from "../src/link.ts";
import { runMigration } from "../src/orchestrator.ts";
import { smallConfig } from "./helpers.ts";

const FRAME_BYTES = 4096 + 16;
const LINK = { latencyMs: 1, bandwidthBytesPerSec: 8e6, sendBufferBytes: 1024 * 1024 };
const WORKLOAD = [
  { kind: "scan" as const, rate: 2000 },
  { kind: "random" as const, rate: 500 },
];

describe("postcopy under a saturating background push", () => {
  it("with the preempt channel, no demand page waits behind more than one segment and the other demand pages", { timeout: 120_000 }, async () => {
    // The push waits for the guest's first request, so at least one demand page exists whatever the load.
    const r = await runMigration(smallConfig({ strategy: "postcopy", link: LINK, workload: WORKLOAD, postcopyPreempt: true, faults: { holdPushUntilRequests: 1 } }));
    expect(r.verification).toMatchObject({ ok: true, scope: "full", mismatchedPages: 0 });
    expect(r.transport!.preempt).toBe(true);
    const ahead = r.transport!.demandQueuedAhead;
    expect(ahead.count).toBe(r.pages.demand);
    expect(ahead.count).toBeGreaterThan(0);
    // Ahead of a demand page on the preempt connection: the bulk segment the wire is finishing
    // (at most one: the wire commits segment by segment, however late its timer fires) and the
    // other demand frames not yet delivered. Those are the other threads' faults (each thread
    // waits on one fault at a time) and the resends: a page requested while its pushed copy was
    // still in flight is answered on demand too (the only postcopy duplicates), and that copy may
    // still sit on the preempt connection when the same thread's next page is sent. How many
    // resends happen depends on timing; the bound counts them instead of assuming none.
    const others = WORKLOAD.length - 1 + r.pages.duplicate;
    expect(r.pages.duplicate).toBeLessThanOrEqual(r.pages.demand);
    expect(ahead.maxBytes).toBeLessThanOrEqual(SEGMENT_BYTES + others * FRAME_BYTES);
    // In link time: bounded by the link's own numbers, not by the bulk backlog.
    expect(ahead.maxLinkMs!).toBeLessThanOrEqual(((SEGMENT_BYTES + (others + 1) * FRAME_BYTES) * 1000) / LINK.bandwidthBytesPerSec + LINK.latencyMs);
    expect(r.notes.join(" ")).toMatch(/postcopy-preempt/);
  });

  it("on a single stream (preempt off), demand pages queue behind the bulk connection's full send buffer", { timeout: 120_000 }, async () => {
    const r = await runMigration(smallConfig({ strategy: "postcopy", link: LINK, workload: WORKLOAD, postcopyPreempt: false }));
    expect(r.verification).toMatchObject({ ok: true, scope: "full", mismatchedPages: 0 });
    expect(r.transport!.preempt).toBe(false);
    const ahead = r.transport!.demandQueuedAhead;
    expect(ahead.count).toBeGreaterThan(0);
    const buffer = sendBufferBytes(LINK);
    // The push keeps the buffer full while it runs, so the typical demand page waits behind about
    // the whole of it: many times the preempt bound.
    expect(ahead.p50Bytes).toBeGreaterThanOrEqual(buffer / 2);
    expect(ahead.p50Bytes).toBeGreaterThan(4 * (SEGMENT_BYTES + WORKLOAD.length * FRAME_BYTES));
    expect(r.notes.join(" ")).toMatch(/single stream/);
  });
});
