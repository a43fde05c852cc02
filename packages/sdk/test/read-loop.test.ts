/**
 * The read loop's choice between readNowait() (preadv2 with RWF_NOWAIT: what is queued, no
 * promise) and readInto() (read(2), asleep on an empty queue): right after a batch it tries
 * readNowait() at once only while that finds a backlog, else one microtask later (once the
 * threads the batch woke have run), and sleeps only when that finds nothing too. Either way every
 * message is read, in batches of up to `batch`.
 */
import type { Process } from "@uffd/kernel";
import { describe, expect, it } from "vitest";
import { Userfaultfd } from "@uffd/sdk";
import { anon, PAGE_SIZE, pageOf, setup } from "./helpers.ts";

/** Counts the process's reads of the userfaultfd: each call, and how many bytes each returned. */
function countReads(p: Process): { nowait: Array<number | null>; blocking: number[] } {
  const log = { nowait: [] as Array<number | null>, blocking: [] as number[] };
  const readNowait = p.readNowait.bind(p);
  const readInto = p.readInto.bind(p);
  p.readNowait = (fd, into) => {
    const n = readNowait(fd, into);
    log.nowait.push(n);
    return n;
  };
  p.readInto = async (fd, into) => {
    const n = await readInto(fd, into);
    log.blocking.push(n);
    return n;
  };
  return log;
}

describe("the read loop", () => {
  it("reads each fault of a thread it keeps up with a microtask after the batch before it, without sleeping, and stops trying at once", async () => {
    const { k, p } = setup();
    const reads = countReads(p);
    const uffd = await Userfaultfd.open(p, { batch: 1 });
    const pages = 200;
    const a = await anon(p, pages);
    await uffd.register(a, pages * PAGE_SIZE, "missing");
    uffd.on("fault", (f) => f.copy(pageOf(f.offset / PAGE_SIZE)));
    // One thread, one page at a time: each fault is raised only after the previous one was served.
    for (let i = 0; i < pages; i++) expect((await p.mainThread.read(a + i * PAGE_SIZE, 1))[0]).toBe(pageOf(i)[0]);
    await uffd.drain();
    expect(uffd.metrics.snapshot().outcomes.installed).toBe(pages);
    // Only the first fault was read by a readInto() that slept (the loop started on an empty
    // queue); each later one by a readNowait() a microtask after the batch before it, once the
    // thread that batch woke had faulted again.
    expect(reads.blocking).toEqual([32]);
    expect(reads.nowait.filter((n) => n !== null)).toEqual(Array.from({ length: pages - 1 }, () => 32));
    // The tries at once, right after a batch, found nothing: 4 in a row, then one every 32 reads
    // (plus the tries on the empty queue at the start and the end).
    expect(reads.nowait.filter((n) => n === null).length).toBeLessThanOrEqual(4 + 2 + Math.ceil(pages / 33));
    await uffd.close();
    k.checkInvariants();
  });

  it("goes back to readNowait() after a read that filled the buffer, and reads a backlog in full batches", async () => {
    const { k, p } = setup();
    const reads = countReads(p);
    const uffd = await Userfaultfd.open(p, { batch: 4 });
    const a = await anon(p, 40);
    await uffd.register(a, 40 * PAGE_SIZE, "missing");
    uffd.on("fault", (f) => f.copy(pageOf(f.offset / PAGE_SIZE)));
    // 24 faults one at a time: the loop stops trying readNowait() at once after a batch, and
    // reads each fault but the first a microtask later; then it sleeps on the empty queue.
    for (let i = 0; i < 24; i++) await p.mainThread.read(a + i * PAGE_SIZE, 1);
    await uffd.drain();
    const nowaitBefore = reads.nowait.length;
    expect(reads.blocking).toEqual([32]);
    expect(reads.nowait.filter((n) => n !== null)).toHaveLength(23);
    // 16 threads fault at once: one read wakes on the first message and finds 16 queued.
    const threads = Array.from({ length: 16 }, (_, i) => p.spawnThread(`t${i}`));
    const blockingBefore = reads.blocking.length;
    await Promise.all(threads.map((t, i) => t.read(a + (24 + i) * PAGE_SIZE, 1)));
    await uffd.drain();
    // A full read of 4 messages, then readNowait() takes the other 12, 4 at a time, without sleeping.
    expect(reads.blocking.slice(blockingBefore)).toEqual([4 * 32]);
    expect(reads.nowait.slice(nowaitBefore, nowaitBefore + 3)).toEqual([4 * 32, 4 * 32, 4 * 32]);
    expect(uffd.metrics.snapshot().outcomes.installed).toBe(40);
    for (let i = 0; i < 40; i++) expect((await p.mainThread.read(a + i * PAGE_SIZE, 1))[0]).toBe(pageOf(i)[0]);
    await uffd.close();
    k.checkInvariants();
  });

  it("a batch read at once after the one before it takes that batch's settle-time clock reading as its read time", async () => {
    const { k, p } = setup();
    const reads = countReads(p);
    // A fake host clock one millisecond further at each reading, so the readings are counted.
    let clock = 0;
    const uffd = await Userfaultfd.open(p, { batch: 4, wallClock: () => ++clock });
    const a = await anon(p, 16);
    await uffd.register(a, 16 * PAGE_SIZE, "missing");
    uffd.on("fault", (f) => f.copy(pageOf(f.offset / PAGE_SIZE)));
    // 16 threads fault at once: one read sleeps, wakes on the first message and finds 16 queued;
    // readNowait() then takes the other 12, 4 at a time, each right after the batch before it.
    const threads = Array.from({ length: 16 }, (_, i) => p.spawnThread(`t${i}`));
    await Promise.all(threads.map((t, i) => t.read(a + i * PAGE_SIZE, 1)));
    await uffd.drain();
    expect(reads.blocking).toEqual([4 * 32]);
    expect(reads.nowait.filter((n) => n !== null)).toEqual([4 * 32, 4 * 32, 4 * 32]);
    // Readings: the slept read's read time, then one settle time per batch (4), which serves as
    // the read time of the batch read right after it: 5, where a reading per read and per settle
    // would be 8. Every fault's wall latency is its batch's: one tick of the fake clock.
    expect(clock).toBe(5);
    expect(uffd.metrics.snapshot().latency.wallNs).toMatchObject({ count: 16, min: 1e6, max: 1e6 });
    expect(uffd.metrics.snapshot().outcomes.installed).toBe(16);
    await uffd.close();
    k.checkInvariants();
  });

  it("a batch read after a sleep, or after a batch whose faults all stayed pending, reads the clock for itself", async () => {
    const { k, p } = setup();
    const reads = countReads(p);
    let clock = 0;
    // No wall deadline: arming its timer would read the clock too.
    const uffd = await Userfaultfd.open(p, { batch: 4, wallClock: () => ++clock, deadline: { wallMs: null } });
    const a = await anon(p, 8);
    await uffd.register(a, 8 * PAGE_SIZE, "missing");
    // Resolved a microtask after dispatch: nothing settles in its batch, so no settle-time reading
    // is taken there, and each settle reads the clock itself.
    uffd.on("fault", (f) => void Promise.resolve().then(() => f.copy(pageOf(f.offset / PAGE_SIZE))));
    const threads = Array.from({ length: 8 }, (_, i) => p.spawnThread(`t${i}`));
    await Promise.all(threads.map((t, i) => t.read(a + i * PAGE_SIZE, 1)));
    await uffd.drain();
    const m = uffd.metrics.snapshot();
    expect(m.outcomes.installed).toBe(8);
    // A read-time reading per read that returned faults (one at least slept; those read at once
    // follow a batch that settled nothing), and 8 settle-time readings.
    const batches = reads.blocking.filter((n) => n > 0).length + reads.nowait.filter((n) => n !== null && n > 0).length;
    expect(batches).toBeGreaterThanOrEqual(2);
    expect(m.latency.wallNs.count).toBe(8);
    expect(clock).toBe(batches + 8);
    await uffd.close();
    k.checkInvariants();
  });
});
