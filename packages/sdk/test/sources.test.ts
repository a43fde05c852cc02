/**
 * Page sources and background fills. A fill streams a source into the ranges alongside demand
 * faults (CRIU lazy-pages: 64 KiB chunks growing while no fault arrives, reset by one); the
 * assertions count every byte fetched and installed, so a double fetch or a double install shows.
 */
import { describe, expect, it } from "vitest";
import { MAP_SHARED } from "@uffd/kernel/uapi";
import { BufferSource, MemfdSource, RemoteSource, Userfaultfd } from "@uffd/sdk";
import { anon, image, PAGE_SIZE, pageOf, RW, setup } from "./helpers.ts";

describe("page sources", () => {
  it("BufferSource answers synchronously, without copying; beyond its end reads as zeros", () => {
    const img = image(2);
    const src = new BufferSource(img);
    const page = src.read(PAGE_SIZE, PAGE_SIZE)!;
    expect(page.buffer).toBe(img.buffer);
    expect(page).toEqual(pageOf(1));
    expect(src.read(2 * PAGE_SIZE, PAGE_SIZE)).toBeNull();
  });

  it("MemfdSource serves missing faults on anon memory: data by copy, holes by the zero page (SEEK_DATA)", async () => {
    const { k, p } = setup();
    const fd = await p.memfdCreate("image");
    await p.ftruncate(fd, 3 * PAGE_SIZE);
    await p.pwrite(fd, pageOf(0), 0);
    await p.pwrite(fd, pageOf(2), 2 * PAGE_SIZE);
    const uffd = await Userfaultfd.open(p);
    const a = await anon(p, 3);
    await uffd.register(a, 3 * PAGE_SIZE, "missing");
    uffd.serve(new MemfdSource(p, fd));
    const bytes = await p.mainThread.read(a, 3 * PAGE_SIZE);
    expect(bytes.subarray(0, PAGE_SIZE)).toEqual(pageOf(0));
    expect(bytes.subarray(PAGE_SIZE, 2 * PAGE_SIZE)).toEqual(new Uint8Array(PAGE_SIZE));
    expect(bytes.subarray(2 * PAGE_SIZE)).toEqual(pageOf(2));
    expect(p.pagemap(a + PAGE_SIZE, 1)[0]!.pfn).toBe(k.zeroPfn);
    await uffd.drain();
    expect(uffd.metrics.snapshot().bytes).toMatchObject({ copy: 2 * PAGE_SIZE, zeropage: PAGE_SIZE });
    await uffd.close();
    k.checkInvariants();
  });

  it("minor faults over a memfd mapping are served by UFFDIO_CONTINUE, zero-copy from the page cache", async () => {
    const { k, p } = setup();
    const fd = await p.memfdCreate("guest");
    await p.ftruncate(fd, 4 * PAGE_SIZE);
    await p.pwrite(fd, image(4), 0);
    const a = await p.mmap(0, 4 * PAGE_SIZE, RW, MAP_SHARED, fd, 0);
    const uffd = await Userfaultfd.open(p);
    await uffd.register(a, 4 * PAGE_SIZE, "minor");
    uffd.serve(new MemfdSource(p, fd));
    expect(await p.mainThread.read(a, 4 * PAGE_SIZE)).toEqual(image(4));
    await uffd.drain();
    expect(uffd.metrics.snapshot()).toMatchObject({ faults: { minor: 4 }, bytes: { continue: 4 * PAGE_SIZE, copy: 0 } });
    await uffd.close();
    k.checkInvariants();
  });

  it("RemoteSource models latency on the virtual clock and shares concurrent requests for one span", async () => {
    const { k, p } = setup();
    const img = image(4);
    const calls: number[] = [];
    const remote = new RemoteSource(async (off, len) => {
      calls.push(off);
      return img.slice(off, off + len);
    }, { latencyMs: 2, proc: p });
    const t0 = k.now;
    const [x, y] = await Promise.all([remote.read(PAGE_SIZE, PAGE_SIZE), remote.read(PAGE_SIZE, PAGE_SIZE)]);
    expect(x).toBe(y);
    expect(x).toEqual(pageOf(1));
    expect(calls).toEqual([PAGE_SIZE]);
    expect(k.now - t0).toBeGreaterThanOrEqual(2e6);
    expect(remote.requests).toBe(1);
  });
});

describe("background fill alongside demand faults", () => {
  it("fills every page exactly once: no byte fetched twice, no page installed twice", async () => {
    const { k, p } = setup();
    const pages = 64;
    const img = image(pages);
    const fetched: Array<[number, number]> = [];
    const remote = new RemoteSource(async (off, len) => {
      fetched.push([off, len]);
      return img.slice(off, off + len);
    }, { latencyMs: 1, proc: p });
    const uffd = await Userfaultfd.open(p);
    const a = await anon(p, pages);
    await uffd.register(a, pages * PAGE_SIZE, "missing");
    uffd.serve(remote);
    const filling = uffd.fill(remote, { chunkPages: 4 });
    const threads = [p.mainThread, p.spawnThread("t1"), p.spawnThread("t2")];
    const touched = [50, 3, 33, 60, 17, 50, 9];
    const reads = touched.map((i, n) => threads[n % 3]!.read(a + i * PAGE_SIZE, PAGE_SIZE));
    const results = await Promise.all(reads);
    results.forEach((r, n) => expect(r).toEqual(pageOf(touched[n]!)));
    const stats = await filling.done;
    await uffd.drain();
    expect(await p.mainThread.read(a, pages * PAGE_SIZE)).toEqual(img);
    const fetchedBytes = fetched.reduce((s, [, len]) => s + len, 0);
    expect(fetchedBytes).toBe(pages * PAGE_SIZE);
    const m = uffd.metrics.snapshot();
    expect(m.bytes.copy).toBe(pages * PAGE_SIZE);
    expect(m.bytes.prefetch).toBe(stats.installedBytes);
    expect(stats.installedBytes + m.faults.missing * PAGE_SIZE).toBeGreaterThanOrEqual(pages * PAGE_SIZE);
    expect(p.pagemap(a, pages).every((e) => e.present)).toBe(true);
    await uffd.close();
    k.checkInvariants();
  });

  it("grows its chunks while no demand fault arrives (4, 8, 16, 32 pages, then the rest)", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p);
    const a = await anon(p, 64);
    await uffd.register(a, 64 * PAGE_SIZE, "missing");
    const sizes: number[] = [];
    const img = image(64);
    const stats = await uffd.fill({ read: (off, len) => (sizes.push(len / PAGE_SIZE), img.subarray(off, off + len)) }, { chunkPages: 4 }).done;
    expect(sizes).toEqual([4, 8, 16, 32, 4]);
    expect(stats).toEqual({ installedBytes: 64 * PAGE_SIZE, presentBytes: 0, skippedBytes: 0, requests: 5 });
    expect(await p.mainThread.read(a, 64 * PAGE_SIZE)).toEqual(img);
    await uffd.close();
    k.checkInvariants();
  });

  it("a working-set prefetch fills only the listed pages, in order, coalescing neighbours", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p);
    const a = await anon(p, 16);
    await uffd.register(a, 16 * PAGE_SIZE, "missing");
    const asked: Array<[number, number]> = [];
    const img = image(16);
    const ws = [9, 10, 11, 2, 5].map((i) => a + i * PAGE_SIZE);
    await uffd.fill({ read: (off, len) => (asked.push([off / PAGE_SIZE, len / PAGE_SIZE]), img.subarray(off, off + len)) }, { pages: ws }).done;
    expect(asked).toEqual([
      [9, 3],
      [2, 1],
      [5, 1],
    ]);
    expect(p.pagemap(a, 16).map((e, i) => (e.present ? i : -1)).filter((i) => i >= 0)).toEqual([2, 5, 9, 10, 11]);
    await uffd.close();
    k.checkInvariants();
  });

  it("pages the fill finds present (a demand fault got there first) are skipped, not overwritten", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p);
    const a = await anon(p, 4);
    await uffd.register(a, 4 * PAGE_SIZE, "missing");
    await uffd.copy(a + PAGE_SIZE, new Uint8Array(PAGE_SIZE).fill(0xaa));
    const stats = await uffd.fill(new BufferSource(image(4)), { chunkPages: 4 }).done;
    expect(stats).toMatchObject({ installedBytes: 3 * PAGE_SIZE, presentBytes: 0 });
    const bytes = await p.mainThread.read(a, 4 * PAGE_SIZE);
    expect(bytes[PAGE_SIZE]).toBe(0xaa);
    expect(bytes[0]).toBe(0x40);
    await uffd.close();
    k.checkInvariants();
  });
});
