/** Metrics (counts, bytes, latency in virtual and wall time) and the Chrome trace export. */
import { describe, expect, it } from "vitest";
import { Histogram, TRACE_EVENTS_MAX, type TraceEvent, Userfaultfd } from "@uffd/sdk";
import { anon, expectPendingFaultTimesOut, PAGE_SIZE, pageOf, setup } from "./helpers.ts";

describe("Histogram", () => {
  it("reports percentiles within 1/16 of the true value, and exact min/max/mean", () => {
    const h = new Histogram();
    for (let v = 1; v <= 1000; v++) h.record(v * 1000);
    const s = h.snapshot();
    expect(s.count).toBe(1000);
    expect(s.min).toBe(1000);
    expect(s.max).toBe(1_000_000);
    expect(s.mean).toBe(500_500);
    expect(Math.abs(s.p50 - 500_000) / 500_000).toBeLessThan(1 / 16);
    expect(Math.abs(s.p99 - 990_000) / 990_000).toBeLessThan(1 / 16);
    expect(new Histogram().snapshot()).toEqual({ count: 0, min: 0, max: 0, mean: 0, p50: 0, p99: 0 });
  });

  it("small values (< 16) are exact", () => {
    const h = new Histogram();
    for (const v of [3, 3, 3, 7]) h.record(v);
    expect(h.percentile(0.5)).toBe(3);
    expect(h.percentile(1)).toBe(7);
  });
});

describe("handler metrics and trace", () => {
  it("counts faults per kind, bytes per resolver, and resolve latency on both clocks", async () => {
    const { k, p } = setup();
    let wall = 0;
    const uffd = await Userfaultfd.open(p, { wallClock: () => (wall += 0.25) });
    const a = await anon(p, 3);
    await uffd.register(a, 3 * PAGE_SIZE, "missing");
    uffd.on("fault", (f) => (f.offset === 0 ? f.zeropage() : f.copy(pageOf(1))));
    for (let i = 0; i < 3; i++) await p.mainThread.read(a + i * PAGE_SIZE, 1);
    await uffd.drain();
    const m = uffd.metrics.snapshot();
    expect(m.faults).toEqual({ missing: 3, wp: 0, minor: 0, duplicates: 0 });
    expect(m.bytes).toMatchObject({ copy: 2 * PAGE_SIZE, zeropage: PAGE_SIZE, move: 0, continue: 0 });
    expect(m.outcomes.installed).toBe(3);
    expect(m.latency.virtualNs.count).toBe(3);
    expect(m.latency.virtualNs.p50).toBeGreaterThan(0);
    // Each fault spans one tick of the fake wall clock (read, then settle): 0.25 ms.
    expect(m.latency.wallNs).toMatchObject({ count: 3, min: 250_000, max: 250_000 });
    await uffd.close();
    k.checkInvariants();
  });

  it("the default host clock gives every fault a finite wall latency (process.hrtime() in ms)", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p);
    const a = await anon(p, 3);
    await uffd.register(a, 3 * PAGE_SIZE, "missing");
    uffd.on("fault", (f) => f.copy(pageOf(f.offset / PAGE_SIZE)));
    for (let i = 0; i < 3; i++) await p.mainThread.read(a + i * PAGE_SIZE, 1);
    await uffd.drain();
    const w = uffd.metrics.snapshot().latency.wallNs;
    expect(w.count).toBe(3);
    for (const v of [w.min, w.max, w.mean]) expect(Number.isFinite(v) && v >= 0).toBe(true);
    await uffd.close();
    k.checkInvariants();
  });

  it("wallLatency: false reads no host clock for faults settled in their dispatch, and leaves the wall histogram empty", async () => {
    const { k, p } = setup();
    let readings = 0;
    const uffd = await Userfaultfd.open(p, { wallLatency: false, wallClock: () => ++readings });
    const a = await anon(p, 3);
    await uffd.register(a, 3 * PAGE_SIZE, "missing");
    uffd.on("fault", (f) => f.copy(pageOf(f.offset / PAGE_SIZE)));
    for (let i = 0; i < 3; i++) expect((await p.mainThread.read(a + i * PAGE_SIZE, 1))[0]).toBe(pageOf(i)[0]);
    await uffd.drain();
    const m = uffd.metrics.snapshot();
    expect(m.outcomes.installed).toBe(3);
    expect(m.latency.virtualNs.count).toBe(3);
    expect(m.latency.wallNs.count).toBe(0);
    expect(readings).toBe(0);
    await uffd.close();
    k.checkInvariants();
  });

  it("wallLatency: false still keeps wall deadlines: a fault left pending times out (its deadline counting from the end of its dispatch)", async () => {
    const { k, p } = setup();
    let readings = 0;
    const clock = (): number => (readings++, performance.now());
    const uffd = await Userfaultfd.open(p, { wallLatency: false, wallClock: clock, deadline: { virtualMs: null, wallMs: 5 } });
    await expectPendingFaultTimesOut(p, uffd);
    expect(readings).toBeGreaterThan(0);
    expect(uffd.metrics.snapshot().latency.wallNs.count).toBe(0);
    await expect(Userfaultfd.open(p, { wallLatency: "no" as unknown as boolean })).rejects.toThrow(TypeError);
    await uffd.close();
    k.checkInvariants();
  });

  it("exports a Chrome trace (JSON Object Format): a complete event per fault, an instant per event, virtual-time µs", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p, { trace: true });
    const a = await anon(p, 2);
    await uffd.register(a, 2 * PAGE_SIZE, "missing");
    uffd.on("fault", (f) => f.zeropage());
    await p.mainThread.read(a, 1);
    await uffd.drain();
    await p.munmap(a, 2 * PAGE_SIZE);
    const trace = JSON.parse(JSON.stringify(uffd.metrics.exportTrace())) as { traceEvents: TraceEvent[]; displayTimeUnit: string };
    expect(trace.displayTimeUnit).toBe("ns");
    const [meta, fault, unmap] = trace.traceEvents;
    expect(meta).toMatchObject({ ph: "M", name: "process_name", pid: p.pid });
    expect(fault).toMatchObject({ ph: "X", name: "missing fault", cat: "uffd,fault", pid: p.pid, tid: p.mainThread.tid, args: { address: `0x${a.toString(16)}`, outcome: "installed" } });
    expect(fault!.dur).toBeGreaterThan(0);
    expect(unmap).toMatchObject({ ph: "i", s: "p", name: "unmap", args: { start: `0x${a.toString(16)}` } });
    expect(unmap!.ts).toBeGreaterThanOrEqual(fault!.ts + fault!.dur!);
    await uffd.close();
    k.checkInvariants();
  });

  it("the trace is a bounded ring: the default keeps 100,000 events; a small ring keeps the newest, in order, and counts what it overwrote", async () => {
    expect(TRACE_EVENTS_MAX).toBe(100_000);
    const { k, p } = setup();
    const dflt = await Userfaultfd.open(p, { trace: true });
    expect(dflt.metrics.traceEventsMax).toBe(TRACE_EVENTS_MAX);
    await dflt.close();
    const uffd = await Userfaultfd.open(p, { trace: { eventsMax: 3 } });
    expect(uffd.metrics.traceEventsMax).toBe(3);
    const n = 8;
    const a = await anon(p, n);
    await uffd.register(a, n * PAGE_SIZE, "missing");
    uffd.on("fault", (f) => f.zeropage());
    for (let i = 0; i < n; i++) await p.mainThread.read(a + i * PAGE_SIZE, 1);
    await uffd.drain();
    const trace = uffd.metrics.exportTrace();
    const faults = trace.traceEvents.filter((e) => e.ph === "X");
    // The three newest faults, oldest first; the five before them were overwritten.
    expect(faults.map((e) => e.args!["address"])).toEqual([5, 6, 7].map((i) => `0x${(a + i * PAGE_SIZE).toString(16)}`));
    expect(trace.otherData["droppedEvents"]).toBe(n - 3);
    expect(() => uffd.metrics.startTrace(0)).toThrow(RangeError);
    await uffd.close();
    k.checkInvariants();
  });

  it("a fork child shares its parent's metrics, so one trace covers the whole run", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p);
    const a = await anon(p, 1);
    await uffd.register(a, PAGE_SIZE, "missing");
    uffd.on("fault", (f) => f.zeropage());
    const kids: Userfaultfd[] = [];
    uffd.on("fork", (c) => kids.push(c));
    const child = await p.fork();
    await child.mainThread.read(a, 1);
    await kids[0]!.drain();
    expect(kids[0]!.metrics).toBe(uffd.metrics);
    expect(uffd.metrics.snapshot().faults.missing).toBe(1);
    await child.exit(0);
    await kids[0]!.close();
    await uffd.close();
    k.checkInvariants();
  });
});
