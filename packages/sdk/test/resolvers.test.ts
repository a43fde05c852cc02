/**
 * Each resolver against the memory it is meant for, with the pte it leaves checked through
 * pagemap, and the combinations that cannot make progress refused. References:
 * docs/linux-rules.md §3.1 (where faults fire), §3.4 (what each ioctl maps), §2.10 (MOVE), §8.3
 * (ZEROPAGE vs markers); seed 003 (MOVE is EBUSY after fork: fall back to COPY).
 */
import { describe, expect, it } from "vitest";
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, MAP_SHARED } from "@uffd/kernel/uapi";
import { type Fault, HandlerError, type Resolution, Userfaultfd } from "@uffd/sdk";
import { anon, gate, PAGE_SIZE, pageOf, RW, setup } from "./helpers.ts";

describe("fault resolvers", () => {
  it("copy() from a source address in the handling process (UFFDIO_COPY src as a user address)", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p);
    const src = await anon(p, 1);
    await p.mainThread.write(src, pageOf(3));
    const a = await anon(p, 1);
    await uffd.register(a, PAGE_SIZE, "missing");
    uffd.on("fault", (f) => f.copy(src));
    expect(await p.mainThread.read(a, PAGE_SIZE)).toEqual(pageOf(3));
    await uffd.close();
    k.checkInvariants();
  });

  it("zeropage() maps the shared zero page (linux-rules §3.4: P1 X0, pfn = zero page)", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p);
    const a = await anon(p, 1);
    await uffd.register(a, PAGE_SIZE, "missing");
    uffd.on("fault", (f) => f.zeropage());
    expect(await p.mainThread.read(a, 8)).toEqual(new Uint8Array(8));
    expect(p.pagemap(a, 1)[0]).toMatchObject({ present: true, exclusive: false, pfn: k.zeroPfn });
    await uffd.drain();
    expect(uffd.metrics.snapshot().bytes.zeropage).toBe(PAGE_SIZE);
    await uffd.close();
    k.checkInvariants();
  });

  it("a write-protected page stays protected through its missing fault: copy keeps MODE_WP, the write then faults wp (wp-unpopulated markers, linux-rules §3.1)", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p);
    const a = await anon(p, 2);
    await uffd.register(a, 2 * PAGE_SIZE, ["missing", "wp"]);
    await uffd.writeProtect(a, 2 * PAGE_SIZE);
    expect(p.pagemap(a, 2).map((e) => [e.present, e.swapped, e.uffdWp])).toEqual([
      [false, true, true],
      [false, true, true],
    ]);
    const kinds: string[] = [];
    uffd.on("fault", (f) => {
      kinds.push(`${f.kind}${f.write ? "-w" : "-r"}`);
      return f.kind === "wp" ? f.unprotect() : f.offset === 0 ? f.copy(pageOf(0)) : f.zeropage();
    });
    expect(await p.mainThread.read(a, 1)).toEqual(Uint8Array.of(0x40));
    expect(p.pagemap(a, 1)[0]).toMatchObject({ present: true, uffdWp: true });
    // ZEROPAGE over a marker is EEXIST (§8.3); the SDK installs zeros by UFFDIO_COPY, still protected.
    expect(await p.mainThread.read(a + PAGE_SIZE, 1)).toEqual(Uint8Array.of(0));
    expect(p.pagemap(a + PAGE_SIZE, 1)[0]).toMatchObject({ present: true, uffdWp: true });
    await p.mainThread.write(a, Uint8Array.of(9));
    expect(p.pagemap(a, 1)[0]).toMatchObject({ present: true, uffdWp: false });
    expect(kinds).toEqual(["missing-r", "missing-r", "wp-w"]);
    await uffd.close();
    k.checkInvariants();
  });

  it("continue() maps the page cache page on a minor fault (linux-rules §3.4: shared shmem, file page)", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p);
    const fd = await p.memfdCreate("snapshot");
    await p.ftruncate(fd, 2 * PAGE_SIZE);
    await p.pwrite(fd, pageOf(1), PAGE_SIZE);
    const a = await p.mmap(0, 2 * PAGE_SIZE, RW, MAP_SHARED, fd, 0);
    await uffd.register(a, 2 * PAGE_SIZE, ["minor"]);
    uffd.on("fault", (f) => f.continue());
    expect(await p.mainThread.read(a + PAGE_SIZE, PAGE_SIZE)).toEqual(pageOf(1));
    expect(p.pagemap(a + PAGE_SIZE, 1)[0]).toMatchObject({ present: true, file: true });
    // Page 0 is a hole in the cache: MINOR only fires on cached pages, so no fault reaches the handler.
    expect(await p.mainThread.read(a, 2)).toEqual(new Uint8Array(2));
    await uffd.drain();
    expect(uffd.metrics.snapshot().faults).toMatchObject({ minor: 1, missing: 0 });
    await uffd.close();
    k.checkInvariants();
  });

  it("continue() of a minor fault answers a missing fault in flight on the same page too ('present', one ioctl)", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p, { batch: 1, deadline: { virtualMs: null } });
    const fd = await p.memfdCreate("both");
    await p.ftruncate(fd, PAGE_SIZE);
    const a = await p.mmap(0, PAGE_SIZE, RW, MAP_SHARED, fd, 0);
    await uffd.register(a, PAGE_SIZE, ["missing", "minor"]);
    const faults: Fault[] = [];
    uffd.on("fault", (f) => void faults.push(f));
    // A hole in the page cache: a missing fault. Once the page is in the cache: a minor fault
    // (mm/shmem.c:shmem_get_folio_gfp() raises VM_UFFD_MISSING on no folio, VM_UFFD_MINOR on one).
    const first = p.mainThread.read(a, 1);
    await k.idle();
    await p.pwrite(fd, pageOf(3), 0);
    const second = p.spawnThread("second").read(a, 1);
    await k.idle();
    expect(faults.map((f) => f.kind)).toEqual(["missing", "minor"]);
    expect(await faults[1]!.continue()).toBe("installed");
    expect(faults[0]!.resolution).toBe("present");
    expect((await first)[0]).toBe(pageOf(3)[0]);
    expect((await second)[0]).toBe(pageOf(3)[0]);
    await uffd.drain();
    expect(uffd.metrics.snapshot().outcomes).toMatchObject({ installed: 1, present: 1 });
    await uffd.close();
    k.checkInvariants();
  });

  it("a minor fault whose page was punched out before continue() is woken to meet the hole ('gone', not a failure)", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p, { deadline: { virtualMs: null } });
    const fd = await p.memfdCreate("snapshot");
    await p.ftruncate(fd, PAGE_SIZE);
    await p.pwrite(fd, pageOf(1), 0);
    const a = await p.mmap(0, PAGE_SIZE, RW, MAP_SHARED, fd, 0);
    await uffd.register(a, PAGE_SIZE, ["minor"]);
    const g = gate();
    const outcomes: Resolution[] = [];
    uffd.on("fault", async (f) => {
      await g.wait;
      outcomes.push(await f.continue());
    });
    const read = p.mainThread.read(a, 2);
    await k.idle();
    await p.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, PAGE_SIZE);
    g.open();
    expect(await read).toEqual(new Uint8Array(2));
    await k.idle();
    expect(outcomes).toEqual(["gone"]);
    await uffd.close();
    k.checkInvariants();
  });

  it("move() moves the source page here: the source becomes empty (linux-rules §2.10)", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p);
    const src = await anon(p, 1);
    await p.mainThread.write(src, pageOf(5));
    const a = await anon(p, 1);
    await uffd.register(a, PAGE_SIZE, "missing");
    uffd.on("fault", (f) => f.move(src));
    expect(await p.mainThread.read(a, PAGE_SIZE)).toEqual(pageOf(5));
    expect(p.pagemap(src, 1)[0]!.present).toBe(false);
    await uffd.drain();
    expect(uffd.metrics.snapshot().bytes).toMatchObject({ move: PAGE_SIZE, copy: 0 });
    await uffd.close();
    k.checkInvariants();
  });

  it("move() of a page shared after fork is EBUSY in Linux: the SDK copies from the same address instead (seed 003)", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p, { optionalFeatures: [] });
    const src = await anon(p, 1);
    await p.mainThread.write(src, pageOf(6));
    const child = await p.fork();
    const a = await anon(p, 1);
    await uffd.register(a, PAGE_SIZE, "missing");
    uffd.on("fault", (f) => f.move(src));
    expect(await p.mainThread.read(a, PAGE_SIZE)).toEqual(pageOf(6));
    expect(p.pagemap(src, 1)[0]!.present).toBe(true);
    await uffd.drain();
    expect(uffd.metrics.snapshot().bytes).toMatchObject({ move: 0, copy: PAGE_SIZE });
    await child.exit(0);
    await uffd.close();
    k.checkInvariants();
  });

  it("poison() makes the faulting access SIGBUS (linux-rules §2.9)", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p);
    const a = await anon(p, 1);
    await uffd.register(a, PAGE_SIZE, "missing");
    uffd.on("fault", (f) => f.poison());
    await expect(p.mainThread.read(a, 1)).rejects.toMatchObject({ signal: "SIGBUS" });
    expect(p.pagemap(a, 1)[0]).toMatchObject({ present: false, swapped: true });
    await uffd.close();
    k.checkInvariants();
  });

  it("wake() after the app installed the page with a dontWake range op", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p);
    const a = await anon(p, 2);
    await uffd.register(a, 2 * PAGE_SIZE, "missing");
    uffd.on("fault", async (f) => {
      await uffd.copy(f.pageAddress, pageOf(8), PAGE_SIZE, { dontWake: true });
      return f.wake();
    });
    expect(await p.mainThread.read(a, 1)).toEqual(Uint8Array.of(0x48));
    await uffd.drain();
    expect(uffd.metrics.snapshot().outcomes.woken).toBe(1);
    await uffd.close();
    k.checkInvariants();
  });

  it("a kernel-mode access (pread into registered memory) is a fault like any other (no user-mode-only by default, linux-rules §3.2)", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p);
    const fd = await p.memfdCreate("data");
    await p.pwrite(fd, pageOf(2), 0);
    const a = await anon(p, 1);
    await uffd.register(a, PAGE_SIZE, "missing");
    uffd.on("fault", (f) => f.zeropage());
    expect(await p.pread(fd, { addr: a, length: PAGE_SIZE }, 0)).toBe(PAGE_SIZE);
    expect(await p.mainThread.read(a, PAGE_SIZE)).toEqual(pageOf(2));
    await uffd.drain();
    expect(uffd.metrics.snapshot().faults.missing).toBe(1);
    await uffd.close();
    k.checkInvariants();
  });

  it("exact-address reports the faulting byte; pageAddress and offset stay page-granular", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p, { features: ["exact-address"] });
    const a = await anon(p, 2);
    await uffd.register(a, 2 * PAGE_SIZE, "missing", { offset: 0x10000 });
    const seen: Fault[] = [];
    uffd.on("fault", (f) => {
      seen.push(f);
      return f.zeropage();
    });
    await p.mainThread.read(a + PAGE_SIZE + 0x123, 1);
    expect(seen.map((f) => [f.address - a, f.pageAddress - a, f.offset, f.threadId])).toEqual([[PAGE_SIZE + 0x123, PAGE_SIZE, 0x10000 + PAGE_SIZE, p.mainThread.tid]]);
    expect(seen[0]!.range).toEqual({ start: a, end: a + 2 * PAGE_SIZE, modes: ["missing"], offset: 0x10000 });
    await uffd.close();
    k.checkInvariants();
  });
});

describe("resolvers refuse what cannot make progress", () => {
  it("copy() on a wp fault would EEXIST and fault forever: TypeError, reported; the policy lets the write through", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p);
    const a = await anon(p, 1);
    await p.mainThread.write(a, Uint8Array.of(1));
    await uffd.register(a, PAGE_SIZE, "wp");
    await uffd.writeProtect(a, PAGE_SIZE);
    const errors: Error[] = [];
    uffd.on("error", (e) => errors.push(e));
    uffd.on("fault", (f) => f.copy(pageOf(0)));
    await p.mainThread.write(a, Uint8Array.of(2));
    expect(await p.mainThread.read(a, 1)).toEqual(Uint8Array.of(2));
    expect(errors[0]).toBeInstanceOf(HandlerError);
    expect((errors[0] as HandlerError).cause).toBeInstanceOf(TypeError);
    expect(String((errors[0] as HandlerError).cause)).toContain("use unprotect()");
    await uffd.drain();
    expect(uffd.metrics.snapshot().outcomes.failed).toBe(1);
    await uffd.close();
    k.checkInvariants();
  });

  it("unprotect() on a missing fault, and a copy that is not whole pages, throw before any ioctl", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p);
    const a = await anon(p, 1);
    await uffd.register(a, PAGE_SIZE, "missing");
    const thrown: unknown[] = [];
    uffd.on("fault", (f) => {
      for (const bad of [() => f.unprotect(), () => f.copy(new Uint8Array(100)), () => f.move(a + 1)]) {
        try {
          void bad();
        } catch (e) {
          thrown.push(e);
        }
      }
      return f.zeropage();
    });
    await p.mainThread.read(a, 1);
    expect(thrown.map((e) => (e as Error).name)).toEqual(["TypeError", "RangeError", "RangeError"]);
    await uffd.close();
    k.checkInvariants();
  });
});
