/**
 * The SDK on every release profile (docs/releases.md): feature probing picks what the release
 * offers, the fallbacks run where something is missing and are listed in `uffd.fallbacks`, and a
 * required feature or mode the release lacks fails with an error naming the release that added it.
 * The releases each piece came in: /dev/userfaultfd 6.1, WP_UNPOPULATED 6.4, UFFDIO_POISON 6.6
 * (fc71884a5f59), WP_ASYNC 6.7, UFFDIO_MOVE 6.8, minor faults on shmem 5.14, uffd-wp on shmem 5.19 (docs/releases.md sources).
 */
import { describe, expect, it } from "vitest";
import { Kernel, KERNEL_RELEASES, type KernelRelease } from "@uffd/kernel";
import { MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, PAGE_SIZE, PROT_READ, PROT_WRITE, SIGBUS } from "@uffd/kernel/uapi";
import { DEFAULT_OPTIONAL_FEATURES, DirtyTracker, FeatureUnavailableError, ModeUnavailableError, Userfaultfd } from "@uffd/sdk";

const RW = PROT_READ | PROT_WRITE;
const AT_LEAST: Record<KernelRelease, number> = { "5.10": 510, "5.15": 515, "6.1": 601, "6.6": 606, "6.12": 612, "6.18": 618 };
/** Whether `release` is `since` or later (since as "6.8"). */
function has(release: KernelRelease, since: string): boolean {
  const [maj, min] = since.split(".").map(Number) as [number, number];
  return AT_LEAST[release] >= maj * 100 + min;
}

describe.each(KERNEL_RELEASES.map((r) => [r] as const))("the SDK on release %s", (release) => {
  const uname = `${release}-uffd`;

  it("open(): the syscall where /dev/userfaultfd is missing; the optional features the release offers", async () => {
    const k = new Kernel({ release });
    const proc = k.spawn();
    const uffd = await Userfaultfd.open(proc);
    expect(uffd.fallbacks).toEqual(
      has(release, "6.1") ? [] : [{ wanted: "/dev/userfaultfd", used: "userfaultfd(2)", reason: `/dev/userfaultfd came in Linux 6.1; this kernel is ${uname}` }],
    );
    // The defaults minus what the release lacks (wp-unpopulated before 6.4).
    const expected = DEFAULT_OPTIONAL_FEATURES.filter((f) => f !== "wp-unpopulated" || has(release, "6.4"));
    expect([...uffd.features].sort()).toEqual([...expected].sort());
    expect(uffd.supportedFeatures.has("move")).toBe(has(release, "6.8"));
    await uffd.close();
    k.checkInvariants();
  });

  it("a missing-fault handler (sdk-guide §1) resolves with copy()", async () => {
    const k = new Kernel({ release });
    const proc = k.spawn();
    const addr = await proc.mmap(0, 4 * PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    const uffd = await Userfaultfd.open(proc);
    await uffd.register(addr, 4 * PAGE_SIZE, "missing");
    uffd.on("fault", (fault) => fault.copy(new Uint8Array(PAGE_SIZE).fill(fault.offset / PAGE_SIZE + 1)));
    expect(await proc.mainThread.read(addr + 2 * PAGE_SIZE, 2)).toEqual(Uint8Array.of(3, 3));
    await uffd.close();
    k.checkInvariants();
  });

  it("move(): UFFDIO_COPY where UFFDIO_MOVE is missing (before 6.8), the source left in place", async () => {
    const k = new Kernel({ release });
    const proc = k.spawn();
    const dst = await proc.mmap(0, PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    const src = await proc.mmap(0, PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    await proc.mainThread.write(src, new Uint8Array(PAGE_SIZE).fill(0x5a));
    const uffd = await Userfaultfd.open(proc);
    await uffd.register(dst, PAGE_SIZE, "missing");
    uffd.on("fault", (fault) => fault.move(src));
    expect(await proc.mainThread.read(dst, 2)).toEqual(Uint8Array.of(0x5a, 0x5a));
    const moved = has(release, "6.8");
    // UFFDIO_MOVE takes the page away from the source; UFFDIO_COPY copies it.
    expect(proc.pagemap(src, 1)[0]!.present).toBe(!moved);
    // The metrics name the ioctl that really installed the page (counted once the handler's
    // ioctl returns, which may be after the woken thread ran: wait for the handler to settle).
    await k.idle();
    expect(uffd.metrics.bytes.move).toBe(moved ? PAGE_SIZE : 0);
    expect(uffd.metrics.bytes.copy).toBe(moved ? 0 : PAGE_SIZE);
    const fell = uffd.fallbacks.filter((f) => f.wanted === "UFFDIO_MOVE");
    expect(fell).toEqual(moved ? [] : [{ wanted: "UFFDIO_MOVE", used: "UFFDIO_COPY", reason: `UFFDIO_MOVE came in Linux 6.8; this kernel is ${uname}` }]);
    await uffd.close();
    k.checkInvariants();
  });

  it("a required feature the release lacks fails naming the release that added it", async () => {
    const k = new Kernel({ release });
    const proc = k.spawn();
    const open = Userfaultfd.open(proc, { features: ["move", "wp-async"] });
    if (has(release, "6.8")) {
      await (await open).close();
    } else {
      const missing = [...(has(release, "6.7") ? [] : ["wp-async (added in Linux 6.7"]), "move (added in Linux 6.8"];
      const err = await open.then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(FeatureUnavailableError);
      expect((err as FeatureUnavailableError).features).toEqual(has(release, "6.7") ? ["move"] : ["wp-async", "move"]);
      for (const m of missing) expect((err as Error).message).toContain(`${m}; this kernel is ${uname})`);
    }
    k.checkInvariants();
  });

  it("DirtyTracker { mode: \"auto\" }: async from 6.7, sync before; never-touched pages are tracked on every release", async () => {
    const k = new Kernel({ release });
    const proc = k.spawn();
    const pages = 8;
    const addr = await proc.mmap(0, pages * PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    await proc.mainThread.write(addr, Uint8Array.of(1)); // page 0 populated, the rest never touched
    const uffd = await Userfaultfd.open(proc, { optionalFeatures: [...DEFAULT_OPTIONAL_FEATURES, "wp-async"] });
    await uffd.register(addr, pages * PAGE_SIZE, "wp");
    const tracker = new DirtyTracker(uffd, addr, pages * PAGE_SIZE, { mode: "auto" });
    expect(tracker.mode).toBe(has(release, "6.7") ? "async" : "sync");
    await tracker.begin();
    await proc.mainThread.write(addr + 1 * PAGE_SIZE, Uint8Array.of(7));
    await proc.mainThread.write(addr + 6 * PAGE_SIZE, Uint8Array.of(7));
    const round1 = await tracker.collect();
    expect(round1.map((a) => (a - addr) / PAGE_SIZE)).toEqual([1, 6]);
    await proc.mainThread.write(addr, Uint8Array.of(2));
    expect((await tracker.collect()).map((a) => (a - addr) / PAGE_SIZE)).toEqual([0]);
    tracker.stop();
    const expected = [
      ...(has(release, "6.1") ? [] : [{ wanted: "/dev/userfaultfd", used: "userfaultfd(2)", reason: `/dev/userfaultfd came in Linux 6.1; this kernel is ${uname}` }]),
      ...(has(release, "6.7") ? [] : [{ wanted: "wp-async", used: "sync (wp-fault) dirty tracking", reason: `wp-async came in Linux 6.7; this kernel is ${uname}` }]),
      ...(has(release, "6.4") ? [] : [{ wanted: "wp-unpopulated", used: "pre-populating the range", reason: `wp-unpopulated came in Linux 6.4; this kernel is ${uname}` }]),
    ];
    expect(uffd.fallbacks).toEqual(expected);
    await uffd.close();
    k.checkInvariants();
  });

  it("the sigbus failure policy: UFFDIO_POISON from 6.6; before it kill(SIGBUS) of the faulting process, a fork child's own", async () => {
    const k = new Kernel({ release });
    const proc = k.spawn();
    const addr = await proc.mmap(0, 2 * PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    const uffd = await Userfaultfd.open(proc, { onHandlerError: "sigbus" });
    await uffd.register(addr, 2 * PAGE_SIZE, "missing");
    const errors: string[] = [];
    uffd.on("error", (e) => void errors.push(e.message));
    uffd.on("fault", () => {
      throw new Error("no page");
    });
    // A fork child's fault goes to the child's userfaultfd (EVENT_FORK), with the same listeners.
    const child = await proc.fork();
    const childRead = await child.mainThread.read(addr + PAGE_SIZE, 1).then(() => "read", (e: Error) => e.name);
    const poison = has(release, "6.6");
    expect(childRead).toBe(poison ? "SignalError" : "DeadTaskError");
    expect(child.exitSignal).toBe(poison ? null : SIGBUS);
    expect(proc.exitSignal).toBeNull(); // the handler's process lives on
    const ownRead = await proc.mainThread.read(addr, 1).then(() => "read", (e: Error) => e.name);
    expect(ownRead).toBe(poison ? "SignalError" : "DeadTaskError");
    expect(proc.exitSignal).toBe(poison ? null : SIGBUS);
    expect(errors).toEqual([`missing fault at 0x${(addr + PAGE_SIZE).toString(16)}: the handler failed: no page`, `missing fault at 0x${addr.toString(16)}: the handler failed: no page`]);
    expect(uffd.fallbacks.filter((f) => f.wanted === "UFFDIO_POISON")).toEqual(
      poison ? [] : [{ wanted: "UFFDIO_POISON", used: "kill(SIGBUS) of the faulting process", reason: `UFFDIO_POISON came in Linux 6.6; this kernel is ${uname}` }],
    );
    if (poison) {
      await child.exit(0);
      await uffd.close();
    }
    k.checkInvariants();
  });

  it("a minor-fault handler on shmem (sdk-guide §4) from 5.14; before it register() names the release", async () => {
    const k = new Kernel({ release });
    const proc = k.spawn();
    const fd = await proc.memfdCreate("guest-ram");
    await proc.ftruncate(fd, 2 * PAGE_SIZE);
    await proc.pwrite(fd, new Uint8Array(2 * PAGE_SIZE).fill(3), 0);
    const guest = await proc.mmap(0, 2 * PAGE_SIZE, RW, MAP_SHARED, fd, 0);
    const uffd = await Userfaultfd.open(proc);
    if (!has(release, "5.14")) {
      const err = await uffd.register(guest, 2 * PAGE_SIZE, "minor").then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(ModeUnavailableError);
      expect((err as Error).message).toBe(`register(): minor faults on shmem came in Linux 5.14; this kernel is ${uname} (EINVAL)`);
    } else {
      await uffd.register(guest, 2 * PAGE_SIZE, "minor");
      uffd.on("fault", (fault) => fault.continue());
      expect(await proc.mainThread.read(guest + PAGE_SIZE, 2)).toEqual(Uint8Array.of(3, 3));
    }
    // uffd-wp on shmem: 5.19.
    const wpErr = await uffd.register(guest, 2 * PAGE_SIZE, "wp").then(() => null, (e: unknown) => e);
    if (has(release, "5.19")) expect(wpErr).toBeNull();
    else expect((wpErr as Error).message).toBe(`register(): write-protect on shmem came in Linux 5.19; this kernel is ${uname} (EINVAL)`);
    await uffd.close();
    k.checkInvariants();
  });
});
