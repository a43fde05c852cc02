/**
 * A migration result made by hand, for report tests that need exact, repeatable figures (no run,
 * no clock): a postcopy-like run whose switchover and resume are 3 ms apart (their marker labels
 * would collide if drawn naively; the guest's first operation follows 9 ms later), a few demand pages beside hundreds of background pages, and a
 * fault latency histogram with empty buckets between its filled ones.
 */
import { makeConfig } from "../src/config.ts";
import type { DestMetrics } from "../src/dest.ts";
import type { MigrationResult, OpsSample } from "../src/metrics.ts";

/** The histogram's filled buckets (µs upper bounds): 16, 64, 4096, 65536; 13 buckets from 16 to 65536. */
export const FIXTURE_HISTOGRAM = [
  { leUs: 16, count: 3 },
  { leUs: 64, count: 10 },
  { leUs: 4096, count: 2 },
  { leUs: 65536, count: 1 },
];

export function fixtureResult(overrides: Partial<MigrationResult> = {}): MigrationResult {
  const buckets = 100;
  const series = {
    precopy: Array.from({ length: buckets }, (_, i) => (i < 40 ? 50 : 0)),
    "stop-copy": Array.from({ length: buckets }, (_, i) => (i === 60 ? 20 : 0)),
    demand: Array.from({ length: buckets }, (_, i) => (i === 61 ? 1 : i === 62 ? 2 : i === 70 ? 1 : 0)),
    background: Array.from({ length: buckets }, (_, i) => (i > 60 && i < 90 ? 60 : 0)),
  };
  const opsTimeline: OpsSample[] = [];
  for (let t = 0; t <= 600; t += 50) opsTimeline.push({ tMs: t, ops: t * 4, side: "source" });
  for (let t = 650; t <= 1000; t += 50) opsTimeline.push({ tMs: t, ops: (t - 603) * 3, side: "destination" });
  const config = makeConfig({ strategy: "hybrid", memoryBytes: 16 * 1024 * 1024, hotSetBytes: 1024 * 1024, seed: 7 });
  return {
    strategy: "hybrid",
    config,
    trackingMethod: "wp-async+pagemap-scan",
    notes: ["a hand-made result for the report tests"],
    guestPages: 4096,
    totalTimeMs: 900,
    downtimeMs: 3,
    switchoverAtMs: 600,
    virtual: { sourceNs: 400_000, destinationNs: 900_000, downtimeNs: 30_000 },
    pages: { precopy: 2000, stopCopy: 20, demand: 4, background: 1740, zero: 100, duplicate: 120, total: 3764 },
    rounds: [{ round: 1, pages: 2000, zeroPages: 100, durationMs: 400, dirtyAfter: 120 }],
    bytes: { sourceToDestination: 15_000_000, destinationToSource: 200, total: 15_000_200 },
    throughputMBps: 16.7,
    faults: { count: 18, p50Us: 60, p99Us: 60_000, maxUs: 60_000, meanUs: 4000, histogram: FIXTURE_HISTOGRAM, raced: 2, requests: 16 },
    guest: { opsOnSource: 2400, opsOnDestination: 1200, sourceMismatches: 0, corruptReads: 0, errors: [] },
    timeline: { bucketMs: 10, series },
    opsTimeline,
    verification: { ok: true, scope: "full", pagesChecked: 4096, mismatchedPages: 0, staleReads: 0, missingPages: 0, filledMissingPages: 0, firstMismatches: [] },
    // the guest's first operation on the destination 9 ms after the resume: a fourth marker near the other two
    guestDowntimeMs: 12,
    faultBlockedMs: 72,
    transport: {
      preempt: true,
      sendBufferBytes: 262_144,
      receiverBlockedMs: 0,
      receiverBound: false,
      demandQueuedAhead: { count: 4, p50Bytes: 0, p99Bytes: 8224, maxBytes: 8224, p99LinkMs: 1.2, maxLinkMs: 1.2 },
    },
    hostMemory: { sourceMaxRssBytes: 180 * 1024 * 1024, destinationMaxRssBytes: 170 * 1024 * 1024, guestBytes: 16 * 1024 * 1024 },
    ...overrides,
  };
}

/** What a destination reports after postcopy lost its source: 906 pages in, 3190 never arrived. */
export function fixtureFailedDestination(): DestMetrics {
  const r = fixtureResult();
  return {
    phaseAtEnd: "failed",
    postcopyMethod: "userfaultfd MISSING faults",
    helloEpochMs: 1000,
    resumeEpochMs: 1050,
    completeEpochMs: 0,
    sourcePauseEpochMs: 1045,
    virtualNs: { hello: 0, switchover: 10, deviceState: 20, resume: 30, complete: 0 },
    received: { precopy: 0, "stop-copy": 0, demand: 6, background: 900, zero: 40, discarded: 0, alreadyPresent: 0 },
    missingPages: 3190,
    faults: r.faults,
    bytesSent: 300,
    bytesReceived: 3_000_000,
    timeline: r.timeline,
    opsTimeline: r.opsTimeline.filter((o) => o.side === "destination"),
    guestOps: 1200,
    workloadError: null,
    corruptReads: 0,
    blockedThreads: 2,
    failure: "connection to the source lost during postcopy",
    rejectedConnections: 0,
    rejections: [],
    backpressurePauses: 0,
    queuePeak: { frames: 0, bytes: 0 },
    firstProgressEpochMs: 1060,
    preempt: true,
  };
}
