/**
 * Every code snippet of docs/sdk-guide.md lives here, between `// #region <name>` and
 * `// #endregion`, and runs as a test, on every release profile (docs/releases.md): the guide's
 * `new Kernel()` builds the release under test, and each test asserts the fallbacks the SDK took
 * there (`uffd.fallbacks`). The last test checks that the guide quotes each region verbatim, so
 * the guide cannot drift from code that works.
 */
import { readFileSync } from "node:fs";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ErrnoError, Kernel as SimKernel, KERNEL_RELEASES, type KernelOptions, type KernelRelease } from "@uffd/kernel";
import {
  decodeUffdMsgs,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  MAP_SHARED,
  O_CLOEXEC,
  PAGE_SIZE,
  PROT_READ,
  PROT_WRITE,
  SIGBUS,
  UFFD_API,
  UFFD_EVENT_PAGEFAULT,
  UFFD_EVENT_UNMAP,
  UFFD_FEATURE_EVENT_UNMAP,
  UFFDIO_API,
  UFFDIO_COPY,
  UFFDIO_REGISTER,
  UFFDIO_REGISTER_MODE_MISSING,
  UFFDIO_WAKE,
} from "@uffd/kernel/uapi";
import { BufferSource, DirtyTracker, type Fallback, MemfdSource, ModeUnavailableError, RemoteSource, Userfaultfd } from "@uffd/sdk";

const RW = PROT_READ | PROT_WRITE;

/** The image the examples restore: page i is filled with byte i + 1. */
function makeImage(pages: number): Uint8Array {
  const img = new Uint8Array(pages * PAGE_SIZE);
  for (let i = 0; i < pages; i++) img.fill(i + 1, i * PAGE_SIZE, (i + 1) * PAGE_SIZE);
  return img;
}

const AT_LEAST: Record<KernelRelease, number> = { "5.10": 510, "5.15": 515, "6.1": 601, "6.6": 606, "6.12": 612, "6.18": 618 };
/** Whether `release` is `since` or later (since as "6.4"). */
function has(release: KernelRelease, since: string): boolean {
  const [maj, min] = since.split(".").map(Number) as [number, number];
  return AT_LEAST[release] >= maj * 100 + min;
}

/**
 * What the SDK falls back to, and the release that added what it wanted (docs/releases.md "The
 * SDK on every profile"; the releases: 2d5de004e009 6.1, 2bad466cc9d9 6.4).
 */
const FALLBACKS = {
  "/dev/userfaultfd": { used: "userfaultfd(2)", since: "6.1" },
  "wp-unpopulated": { used: "pre-populating the range", since: "6.4" },
} as const;

/** The fallbacks `release` makes the SDK take of those `wanted`, in order, as uffd.fallbacks lists them. */
function fallbacksOn(release: KernelRelease, ...wanted: Array<keyof typeof FALLBACKS>): Fallback[] {
  return wanted
    .filter((w) => !has(release, FALLBACKS[w].since))
    .map((w) => ({ wanted: w, used: FALLBACKS[w].used, reason: `${w} came in Linux ${FALLBACKS[w].since}; this kernel is ${release}-uffd` }));
}

describe.each(KERNEL_RELEASES.map((r) => [r] as const))("docs/sdk-guide.md on release %s", (profile) => {
  /** The guide's `new Kernel()`, answering as `profile`: the snippets run as the guide quotes them. */
  class Kernel extends SimKernel {
    constructor(options: KernelOptions = {}) {
      super({ release: profile, ...options });
    }
  }

  // The snippets print what the guide shows; the tests read it back instead of the terminal.
  let logged: unknown[][] = [];
  beforeEach(() => {
    logged = [];
    vi.spyOn(console, "log").mockImplementation((...args: unknown[]) => void logged.push(args));
  });
  afterEach(() => vi.restoreAllMocks());

  it("1. a ten-line missing-fault handler", async () => {
    const image = makeImage(16);
    // #region first-handler
    const kernel = new Kernel();
    const proc = kernel.spawn();
    const len = 16 * PAGE_SIZE;
    const addr = await proc.mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);

    const uffd = await Userfaultfd.open(proc);
    await uffd.register(addr, len, "missing");
    uffd.on("fault", (fault) => fault.copy(image.subarray(fault.offset, fault.offset + PAGE_SIZE)));

    const bytes = await proc.mainThread.read(addr + 5 * PAGE_SIZE, 4); // faults, is served, retries
    console.log(bytes); // Uint8Array(4) [ 6, 6, 6, 6 ]
    // #endregion
    expect(bytes).toEqual(new Uint8Array(4).fill(6));
    expect(logged).toEqual([[new Uint8Array(4).fill(6)]]);
    expect(uffd.fallbacks).toEqual(fallbacksOn(profile, "/dev/userfaultfd"));
    await uffd.close();
    kernel.checkInvariants();
  });

  it("2a. the same restore with the raw uAPI", async () => {
    const k = new Kernel();
    const proc = k.spawn();
    const image = makeImage(16);
    const len = 16 * PAGE_SIZE;
    const addr = await proc.mmap(0, len, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    // #region raw-restore
    const uffd = await proc.userfaultfd(O_CLOEXEC);
    await proc.ioctl(uffd, UFFDIO_API, { api: UFFD_API, features: UFFD_FEATURE_EVENT_UNMAP });
    await proc.ioctl(uffd, UFFDIO_REGISTER, { range: { start: addr, len }, mode: UFFDIO_REGISTER_MODE_MISSING });
    const unmapped: Array<[number, number]> = [];
    let deferred: number[] = []; // faults that met EAGAIN: an event is unread, read it first
    const serveForever = async (): Promise<void> => {
      for (;;) {
        const msgs = decodeUffdMsgs(await proc.read(uffd, 64 * 32));
        // read(2) returns faults before events: apply the events first.
        for (const m of msgs) if (m.event === UFFD_EVENT_UNMAP) unmapped.push([m.arg.remove.start, m.arg.remove.end]);
        const pages = deferred;
        deferred = [];
        for (const m of msgs) if (m.event === UFFD_EVENT_PAGEFAULT) pages.push(m.arg.pagefault.address - (m.arg.pagefault.address % PAGE_SIZE));
        for (const page of pages) {
          if (unmapped.some(([s, e]) => page >= s && page < e)) {
            await proc.ioctl(uffd, UFFDIO_WAKE, { start: page, len: PAGE_SIZE }); // let it meet SIGSEGV
            continue;
          }
          const src = image.subarray(page - addr, page - addr + PAGE_SIZE);
          try {
            await proc.ioctl(uffd, UFFDIO_COPY, { dst: page, src, len: PAGE_SIZE, mode: 0 });
          } catch (e) {
            if (!(e instanceof ErrnoError)) throw e;
            if (e.code === "EAGAIN") deferred.push(page);
            else if (e.code === "EEXIST") await proc.ioctl(uffd, UFFDIO_WAKE, { start: page, len: PAGE_SIZE });
            else if (e.code !== "ENOENT") throw e;
          }
        }
      }
    };
    void serveForever();
    // #endregion
    // The raw uAPI takes no fallback: userfaultfd(2) and these ioctls exist on every profile.
    expect(await proc.mainThread.read(addr + 5 * PAGE_SIZE, 4)).toEqual(new Uint8Array(4).fill(6));
    k.checkInvariants();
  });

  it("2b. the same restore with the SDK", async () => {
    const k = new Kernel();
    const proc = k.spawn();
    const image = makeImage(16);
    const len = 16 * PAGE_SIZE;
    const addr = await proc.mmap(0, len, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    // #region sdk-restore
    const uffd = await Userfaultfd.open(proc);
    await uffd.register(addr, len, "missing");
    uffd.serve(new BufferSource(image));
    // #endregion
    expect(await proc.mainThread.read(addr + 5 * PAGE_SIZE, 4)).toEqual(new Uint8Array(4).fill(6));
    expect(uffd.fallbacks).toEqual(fallbacksOn(profile, "/dev/userfaultfd"));
    await uffd.close();
    k.checkInvariants();
  });

  it("3. a wp-based dirty tracker, by hand and with DirtyTracker", async () => {
    const k = new Kernel();
    const proc = k.spawn();
    const len = 8 * PAGE_SIZE;
    const addr = await proc.mmap(0, len, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    const uffd = await Userfaultfd.open(proc);
    // #region dirty-by-hand
    await uffd.register(addr, len, "wp");
    await uffd.writeProtect(addr, len);
    const dirty = new Set<number>();
    uffd.on("fault", (fault) => {
      if (fault.kind !== "wp") return;
      dirty.add(fault.pageAddress); // remember the page, then let the write through
      return fault.unprotect();
    });
    await proc.mainThread.write(addr + 3 * PAGE_SIZE, Uint8Array.of(1));
    console.log([...dirty].map((a) => (a - addr) / PAGE_SIZE)); // [ 3 ]
    // #endregion
    // Before 6.4 (no wp-unpopulated, 2bad466cc9d9) write-protecting a never-touched page leaves
    // nothing to keep the protection: its first write is no fault. DirtyTracker pre-populates.
    const byHand = has(profile, "6.4") ? [3] : [];
    expect([...dirty]).toEqual(byHand.map((i) => addr + i * PAGE_SIZE));
    uffd.removeAllListeners("fault");
    // #region dirty-tracker
    const tracker = new DirtyTracker(uffd, addr, len);
    await tracker.begin(); // write-protects the range and starts listening
    await proc.mainThread.write(addr + 1 * PAGE_SIZE, Uint8Array.of(7));
    await proc.mainThread.write(addr + 6 * PAGE_SIZE, Uint8Array.of(7));
    const round1 = await tracker.collect(); // the pages written since begin(), protected again
    console.log(round1.map((a) => (a - addr) / PAGE_SIZE)); // [ 1, 6 ]
    // #endregion
    expect(round1).toEqual([addr + PAGE_SIZE, addr + 6 * PAGE_SIZE]);
    expect(logged).toEqual([[byHand], [[1, 6]]]);
    expect(uffd.fallbacks).toEqual(fallbacksOn(profile, "/dev/userfaultfd", "wp-unpopulated"));
    await uffd.close();
    k.checkInvariants();
  });

  it("4. a minor-fault handler over shmem (from 5.14; before it register() names the release)", async () => {
    const k = new Kernel();
    const proc = k.spawn();
    const minorShmem = async () => {
      // #region minor-shmem
      const len = 4 * PAGE_SIZE;
      const fd = await proc.memfdCreate("guest-ram");
      await proc.ftruncate(fd, len);
      await proc.pwrite(fd, makeImage(4), 0); // the page cache holds the snapshot
      const guest = await proc.mmap(0, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

      const uffd = await Userfaultfd.open(proc);
      await uffd.register(guest, len, "minor"); // a fault on every first touch of a cached page
      const touched: number[] = [];
      uffd.on("fault", (fault) => {
        touched.push(fault.offset / PAGE_SIZE); // e.g. verify or decrypt the page in place here
        return fault.continue(); // map the page-cache page: no copy
      });
      console.log(await proc.mainThread.read(guest + 2 * PAGE_SIZE, 2)); // Uint8Array(2) [ 3, 3 ]
      // #endregion
      return { len, fd, guest, uffd, touched };
    };
    if (!has(profile, "5.14")) {
      // c949b097ef2e (5.14): MINOR on shmem; before it vma_can_userfault() refuses the mode.
      const err = await minorShmem().then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(ModeUnavailableError);
      expect((err as Error).message).toBe(`register(): minor faults on shmem came in Linux 5.14; this kernel is ${profile}-uffd (EINVAL)`);
      k.checkInvariants();
      return;
    }
    const { len, fd, guest, uffd, touched } = await minorShmem();
    expect(touched).toEqual([2]);
    expect(logged).toEqual([[Uint8Array.of(3, 3)]]);
    expect(proc.pagemap(guest + 2 * PAGE_SIZE, 1)[0]).toMatchObject({ present: true, file: true });
    uffd.removeAllListeners("fault");
    // #region minor-serve
    uffd.serve(new MemfdSource(proc, fd)); // minor faults: UFFDIO_CONTINUE
    // #endregion
    expect(await proc.mainThread.read(guest, len)).toEqual(makeImage(4));
    expect(uffd.fallbacks).toEqual(fallbacksOn(profile, "/dev/userfaultfd"));
    await uffd.close();
    k.checkInvariants();
  });

  it("5. a remote source with a background fill", async () => {
    const k = new Kernel();
    const proc = k.spawn();
    const len = 64 * PAGE_SIZE;
    const addr = await proc.mmap(0, len, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    const image = makeImage(64);
    // #region remote-fill
    const uffd = await Userfaultfd.open(proc);
    await uffd.register(addr, len, "missing");
    const remote = new RemoteSource(
      async (offset, length) => image.slice(offset, offset + length), // a page server, object store ...
      { latencyMs: 1, proc }, // 1 ms per request on the kernel's virtual clock
    );
    uffd.serve(remote); // demand faults first
    const fill = uffd.fill(remote, { chunkPages: 16 }); // the rest in the background
    await proc.mainThread.read(addr + 40 * PAGE_SIZE, 1); // a demand fault while the fill runs
    const stats = await fill.done;
    console.log(stats.requests, remote.bytes === len); // every byte fetched exactly once
    // #endregion
    expect(remote.bytes).toBe(len);
    expect(logged[0]![1]).toBe(true);
    expect(await proc.mainThread.read(addr, len)).toEqual(image);
    expect(uffd.fallbacks).toEqual(fallbacksOn(profile, "/dev/userfaultfd"));
    await uffd.close();
    k.checkInvariants();
  });

  it("6. failure policy and deadlines", async () => {
    const k = new Kernel();
    const proc = k.spawn();
    const addr = await proc.mmap(0, PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    // #region policy
    const uffd = await Userfaultfd.open(proc, {
      onHandlerError: "sigbus", // or "retry", or (fault, error) => fault.zeropage()
      deadline: { virtualMs: 100 }, // a fault nobody resolves within 100 ms (virtual) fails too
    });
    await uffd.register(addr, PAGE_SIZE, "missing");
    uffd.on("error", (err) => console.log(err.message)); // missing fault at 0x...: the handler failed: page server unreachable
    uffd.on("fault", () => {
      throw new Error("page server unreachable");
    });
    const outcome = await proc.mainThread.read(addr, 1).catch((e: Error) => e.name);
    console.log(outcome); // SignalError (SIGBUS), as with UFFD_FEATURE_SIGBUS
    // #endregion
    // Before 6.6 (no UFFDIO_POISON, fc71884a5f59) a handler cannot fail one access: the policy
    // ends the process with SIGBUS, as an unhandled SIGBUS would, and says so in fallbacks.
    const poison = has(profile, "6.6");
    const died = poison ? [] : [{ wanted: "UFFDIO_POISON", used: "kill(SIGBUS) of the faulting process", reason: `UFFDIO_POISON came in Linux 6.6; this kernel is ${profile}-uffd` }];
    expect(outcome).toBe(poison ? "SignalError" : "DeadTaskError");
    expect(logged).toEqual([[`missing fault at 0x${addr.toString(16)}: the handler failed: page server unreachable`], [outcome]]);
    expect(uffd.fallbacks).toEqual([...fallbacksOn(profile, "/dev/userfaultfd"), ...died]);
    expect(proc.exitSignal).toBe(poison ? null : SIGBUS);
    if (poison) await uffd.close();
    k.checkInvariants();
  });

  it("7. metrics and a Chrome trace", async () => {
    const k = new Kernel();
    const proc = k.spawn();
    const addr = await proc.mmap(0, 4 * PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    // #region metrics
    const uffd = await Userfaultfd.open(proc, { trace: true });
    await uffd.register(addr, 4 * PAGE_SIZE, "missing");
    uffd.on("fault", (fault) => fault.zeropage());
    await proc.mainThread.read(addr, 4 * PAGE_SIZE);
    await uffd.drain();
    const m = uffd.metrics.snapshot();
    console.log(m.faults.missing, m.bytes.zeropage, m.latency.virtualNs.p99); // 4 16384 <ns>
    const trace = JSON.stringify(uffd.metrics.exportTrace()); // open in ui.perfetto.dev or chrome://tracing
    // #endregion
    expect(m.faults.missing).toBe(4);
    expect(logged[0]!.slice(0, 2)).toEqual([4, 16384]);
    expect(JSON.parse(trace).traceEvents.filter((e: { ph: string }) => e.ph === "X")).toHaveLength(4);
    expect(uffd.fallbacks).toEqual(fallbacksOn(profile, "/dev/userfaultfd"));
    await uffd.close();
    k.checkInvariants();
  });

  it("8. fork: the child's userfaultfd gets the same handlers", async () => {
    const k = new Kernel();
    const proc = k.spawn();
    const addr = await proc.mmap(0, 2 * PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    const image = makeImage(2);
    // #region fork
    const uffd = await Userfaultfd.open(proc); // event-fork is on when the caller may have it
    await uffd.register(addr, 2 * PAGE_SIZE, "missing");
    uffd.serve(new BufferSource(image));
    uffd.on("fork", (child) => console.log("child handler on fd", child.fd, child.ranges.length));
    const childProc = await proc.fork(); // returns once the handler has read the FORK event
    console.log(await childProc.mainThread.read(addr + PAGE_SIZE, 1)); // Uint8Array(1) [ 2 ]
    // #endregion
    expect(await childProc.mainThread.read(addr, 1)).toEqual(Uint8Array.of(1));
    expect(logged[1]).toEqual([Uint8Array.of(2)]);
    expect(logged[0]![2]).toBe(1);
    await childProc.exit(0);
    expect(uffd.fallbacks).toEqual(fallbacksOn(profile, "/dev/userfaultfd"));
    await uffd.close();
    k.checkInvariants();
  });

  it("10. a pull-style handler", async () => {
    const image = makeImage(8);
    const kernel = new Kernel();
    const proc = kernel.spawn();
    const len = 8 * PAGE_SIZE;
    const addr = await proc.mmap(0, len, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    const uffd = await Userfaultfd.open(proc);
    await uffd.register(addr, len, "missing");
    const reading = proc.mainThread.read(addr + 3 * PAGE_SIZE, 1);
    // #region pull
    for await (const event of uffd) {
      switch (event.type) {
        case "fault": // the same race-safe resolvers as in a listener
          await event.fault.copy(image.subarray(event.fault.offset, event.fault.offset + PAGE_SIZE));
          break;
        case "remove": // the SDK's view already marks the pages removed
        case "unmap":
          console.log(event.type, event.start, event.end);
          break;
      }
      if (uffd.pendingFaults === 0) break; // leaving the loop does not close the userfaultfd
    }
    // #endregion
    expect(await reading).toEqual(Uint8Array.of(4));
    expect(logged).toEqual([]);
    expect(uffd.fallbacks).toEqual(fallbacksOn(profile, "/dev/userfaultfd"));
    await uffd.close();
    kernel.checkInvariants();
  });

  it("11. testing a handler that waits for the test", async () => {
    const kernel = new Kernel();
    const proc = kernel.spawn();
    const addr = await proc.mmap(0, PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    // #region idle-pattern
    const uffd = await Userfaultfd.open(proc); // default deadline: 10 s of wall-clock time
    await uffd.register(addr, PAGE_SIZE, "missing");
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    uffd.on("fault", async (fault) => {
      await released; // the handler waits for the test
      return fault.zeropage();
    });
    const load = proc.mainThread.read(addr, 1);
    await kernel.idle(); // every simulated thread waits; the fault stays pending, no SIGBUS
    console.log(uffd.pendingFaults); // 1
    release();
    console.log(await load); // Uint8Array(1) [ 0 ]
    // #endregion
    expect(logged).toEqual([[1], [Uint8Array.of(0)]]);
    expect(uffd.fallbacks).toEqual(fallbacksOn(profile, "/dev/userfaultfd"));
    await uffd.close();
    kernel.checkInvariants();
  });

});

describe("docs/sdk-guide.md", () => {
  it("the guide quotes every snippet verbatim, and the SDK restore is shorter than the raw one", () => {
    const source = readFileSync(new URL(import.meta.url), "utf8");
    const guide = readFileSync(new URL("../../../docs/sdk-guide.md", import.meta.url), "utf8");
    const regions = [...source.matchAll(/^( *)\/\/ #region ([\w-]+)\n([\s\S]*?)^ *\/\/ #endregion/gm)];
    expect(regions.map((r) => r[2])).toEqual([
      "first-handler",
      "raw-restore",
      "sdk-restore",
      "dirty-by-hand",
      "dirty-tracker",
      "minor-shmem",
      "minor-serve",
      "remote-fill",
      "policy",
      "metrics",
      "fork",
      "pull",
      "idle-pattern",
    ]);
    const body = (r: RegExpMatchArray): string => r[3]!.split("\n").map((l) => l.slice(r[1]!.length)).join("\n").trimEnd();
    for (const r of regions) expect(guide, `region ${r[2]} is not quoted verbatim in docs/sdk-guide.md`).toContain(body(r));
    const lines = (name: string): number => body(regions.find((r) => r[2] === name)!).split("\n").length;
    expect(lines("sdk-restore")).toBeLessThan(lines("raw-restore") / 5);
  });
});
