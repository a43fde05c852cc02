/**
 * Non-cooperative events as typed events, and the SDK's view of the ranges following them.
 * References: docs/linux-rules.md §4 (FORK, REMAP, REMOVE, UNMAP; mmap(MAP_FIXED) over a range is
 * an UNMAP); uffd-unit-tests.c: test "events" (fork, mremap, MADV_DONTNEED on a registered range).
 */
import { describe, expect, it } from "vitest";
import { ErrnoError } from "@uffd/kernel";
import { MADV_DONTNEED, MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MREMAP_FIXED, MREMAP_MAYMOVE } from "@uffd/kernel/uapi";
import { type RangeEvent, type RemapEvent, Userfaultfd } from "@uffd/sdk";
import { anon, image, PAGE_SIZE, pageOf, RW, setup } from "./helpers.ts";

async function works(call: (p: ReturnType<typeof setup>["p"], a: number) => Promise<unknown>): Promise<boolean> {
  const { p } = setup();
  const a = await anon(p, 2);
  try {
    await call(p, a);
    return true;
  } catch (e) {
    return !(e instanceof ErrnoError && e.code === "ENOSYS");
  }
}
// madvise and mremap land in the kernel separately; their scenarios run once they exist.
const hasMadvise = await works((p, a) => p.madvise(a, PAGE_SIZE, MADV_DONTNEED));
const hasMremap = await works((p, a) => p.mremap(a, PAGE_SIZE, PAGE_SIZE, MREMAP_MAYMOVE | MREMAP_FIXED, a + PAGE_SIZE));

describe("the range view follows the events", () => {
  it("munmap in the middle splits the range and keeps each part's source offsets (UNMAP)", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p);
    const a = await anon(p, 4);
    await uffd.register(a, 4 * PAGE_SIZE, "missing", { offset: 0x100000 });
    const events: RangeEvent[] = [];
    uffd.on("unmap", (e) => events.push(e));
    await p.munmap(a + PAGE_SIZE, 2 * PAGE_SIZE);
    expect(events).toEqual([{ start: a + PAGE_SIZE, end: a + 3 * PAGE_SIZE }]);
    expect(uffd.ranges).toEqual([
      { start: a, end: a + PAGE_SIZE, modes: ["missing"], offset: 0x100000 },
      { start: a + 3 * PAGE_SIZE, end: a + 4 * PAGE_SIZE, modes: ["missing"], offset: 0x100000 + 3 * PAGE_SIZE },
    ]);
    uffd.serve({ read: (off) => pageOf((off - 0x100000) / PAGE_SIZE) });
    expect(await p.mainThread.read(a + 3 * PAGE_SIZE, 1)).toEqual(Uint8Array.of(0x43));
    await uffd.close();
    k.checkInvariants();
  });

  it("an UNMAP that starts below the lowest mappable address still wakes the fault in flight, and nothing rejects unhandled", async () => {
    const { k, p } = setup();
    // The handler never answers; the fault stays in flight until the UNMAP ends it.
    const uffd = await Userfaultfd.open(p, { deadline: { virtualMs: null } });
    const a = await anon(p, 1);
    await uffd.register(a, PAGE_SIZE, "missing");
    uffd.on("fault", () => new Promise(() => {}));
    const unmaps: RangeEvent[] = [];
    uffd.on("unmap", (e) => unmaps.push(e));
    const errors: Error[] = [];
    uffd.on("error", (e) => errors.push(e));
    const load = p.mainThread.read(a, 1).then(
      () => "read",
      (e: Error) => e.name,
    );
    await k.idle();
    expect(uffd.pendingFaults).toBe(1);
    // munmap(0, ...) is valid (mm/vma.c:do_vmi_munmap() checks only alignment and TASK_SIZE),
    // and UFFD_EVENT_UNMAP carries the munmap's own start (mm/userfaultfd.c:userfaultfd_unmap_prep()),
    // but UFFDIO_WAKE refuses a range that starts below mmap_min_addr (fs/userfaultfd.c:
    // validate_unaligned_range(): EINVAL). The wake must cover only what can be woken.
    await p.munmap(0, a + PAGE_SIZE);
    expect(unmaps).toEqual([{ start: 0, end: a + PAGE_SIZE }]);
    // Woken, the thread retries the access and finds nothing mapped: SIGSEGV.
    expect(await load).toBe("SignalError");
    expect(uffd.pendingFaults).toBe(0);
    expect(uffd.metrics.snapshot().outcomes.gone).toBe(1);
    expect(errors).toEqual([]);
    await uffd.close();
    k.checkInvariants();
  });

  it("mmap(MAP_FIXED) over a registered range is an UNMAP: the replacement is not registered", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p);
    const a = await anon(p, 2);
    await uffd.register(a, 2 * PAGE_SIZE, "missing");
    let unmaps = 0;
    uffd.on("unmap", () => unmaps++);
    await p.mmap(a, PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED);
    expect(unmaps).toBe(1);
    expect(uffd.ranges.map((r) => r.start)).toEqual([a + PAGE_SIZE]);
    expect(await p.mainThread.read(a, 1)).toEqual(Uint8Array.of(0));
    await uffd.close();
    k.checkInvariants();
  });

  it("unregister() forgets the range and wakes what waits there, even in a wp-only range (Linux wakes MISSING only, linux-rules §2.3)", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p, { deadline: { virtualMs: null } });
    const a = await anon(p, 1);
    await p.mainThread.write(a, Uint8Array.of(1));
    await uffd.register(a, PAGE_SIZE, "wp");
    await uffd.writeProtect(a, PAGE_SIZE);
    uffd.on("fault", () => new Promise(() => {}));
    const write = p.mainThread.write(a, Uint8Array.of(2));
    await k.idle();
    expect(uffd.pendingFaults).toBe(1);
    await uffd.unregister(a, PAGE_SIZE);
    await write;
    expect(await p.mainThread.read(a, 1)).toEqual(Uint8Array.of(2));
    expect(uffd.ranges).toEqual([]);
    expect(uffd.metrics.snapshot().outcomes.gone).toBe(1);
    await uffd.close();
    k.checkInvariants();
  });

  it("fork hands the child's userfaultfd to 'fork' listeners with a copy of the view; pages fetched before the fork are not fetched again", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p);
    const a = await anon(p, 4);
    await uffd.register(a, 4 * PAGE_SIZE, "missing");
    const fetched: number[] = [];
    const img = image(4);
    uffd.serve({ read: (off, len) => (fetched.push(off / PAGE_SIZE), img.subarray(off, off + len)) });
    expect(await p.mainThread.read(a, 1)).toEqual(Uint8Array.of(0x40));
    const kids: Userfaultfd[] = [];
    uffd.on("fork", (c) => kids.push(c));
    const child = await p.fork();
    expect(kids).toHaveLength(1);
    expect(kids[0]!.ranges).toEqual(uffd.ranges);
    expect(await child.mainThread.read(a, 4 * PAGE_SIZE)).toEqual(img);
    expect(fetched).toEqual([0, 1, 2, 3]);
    await kids[0]!.drain();
    expect(uffd.metrics.snapshot().events.fork).toBe(1);
    await child.exit(0);
    await kids[0]!.close();
    await uffd.close();
    k.checkInvariants();
  });

  it("without event-fork the child's copy of the range is unregistered: no child handler (linux-rules §4 without EVENT_FORK)", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p, { optionalFeatures: ["thread-id"] });
    const a = await anon(p, 1);
    await uffd.register(a, PAGE_SIZE, "missing");
    let forks = 0;
    uffd.on("fork", () => forks++);
    const child = await p.fork();
    expect(await child.mainThread.read(a, 1)).toEqual(Uint8Array.of(0));
    expect(forks).toBe(0);
    await child.exit(0);
    await uffd.close();
    k.checkInvariants();
  });

  it.skipIf(!hasMadvise)("MADV_DONTNEED (REMOVE) marks pages removed: their next fault is zero-filled by serve(), not served stale", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p);
    const a = await anon(p, 2);
    await uffd.register(a, 2 * PAGE_SIZE, "missing");
    const removes: RangeEvent[] = [];
    uffd.on("remove", (e) => removes.push(e));
    uffd.serve(new (await import("@uffd/sdk")).BufferSource(image(2)));
    expect(await p.mainThread.read(a, 1)).toEqual(Uint8Array.of(0x40));
    await p.madvise(a, 2 * PAGE_SIZE, MADV_DONTNEED);
    expect(removes).toEqual([{ start: a, end: a + 2 * PAGE_SIZE }]);
    expect(await p.mainThread.read(a, 2 * PAGE_SIZE)).toEqual(new Uint8Array(2 * PAGE_SIZE));
    expect(uffd.ranges).toHaveLength(1);
    await uffd.close();
    k.checkInvariants();
  });

  it.skipIf(!hasMremap)("mremap (REMAP) moves the range with its offsets: faults at the new address get the old bytes", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p);
    const a = await anon(p, 2);
    const b = await anon(p, 2);
    await uffd.register(a, 2 * PAGE_SIZE, "missing");
    const remaps: RemapEvent[] = [];
    uffd.on("remap", (e) => remaps.push(e));
    uffd.serve(new (await import("@uffd/sdk")).BufferSource(image(2)));
    await p.mremap(a, 2 * PAGE_SIZE, 2 * PAGE_SIZE, MREMAP_MAYMOVE | MREMAP_FIXED, b);
    expect(remaps).toEqual([{ from: a, to: b, len: 2 * PAGE_SIZE }]);
    expect(uffd.ranges).toEqual([{ start: b, end: b + 2 * PAGE_SIZE, modes: ["missing"], offset: 0 }]);
    expect(await p.mainThread.read(b + PAGE_SIZE, 1)).toEqual(Uint8Array.of(0x41));
    await uffd.close();
    k.checkInvariants();
  });
});
