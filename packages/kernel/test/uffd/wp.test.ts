/**
 * REGISTER / UNREGISTER and write protection: ioctls masks, vma split and merge, re-register
 * rules, WRITEPROTECT, markers, WP_ASYNC (docs/linux-rules.md §1.4, §2.2, §2.3, §2.7, §3.1, §8.8, §8.9, §8.22).
 */
import { describe, expect, it } from "vitest";
import { Kernel } from "@uffd/kernel";
import {
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  MAP_SHARED,
  PROT_NONE,
  PROT_READ,
  UFFD_FEATURE_WP_ASYNC,
  UFFD_FEATURE_WP_UNPOPULATED,
  UFFDIO_COPY,
  UFFDIO_REGISTER,
  UFFDIO_REGISTER_MODE_MINOR,
  UFFDIO_REGISTER_MODE_MISSING,
  UFFDIO_REGISTER_MODE_WP,
  UFFDIO_UNREGISTER,
  UFFDIO_WRITEPROTECT,
  UFFDIO_WRITEPROTECT_MODE_DONTWAKE,
  UFFDIO_WRITEPROTECT_MODE_WP,
  UFFD_API,
  UFFDIO_API,
  O_NONBLOCK,
} from "@uffd/kernel/uapi";
import { errnoOf, fill, isBlocked, mapArea, type MemKind, PS, readMsgs, register, RW, setup } from "./helpers.ts";

const MISSING = UFFDIO_REGISTER_MODE_MISSING;
const WP = UFFDIO_REGISTER_MODE_WP;
const MINOR = UFFDIO_REGISTER_MODE_MINOR;

describe("UFFDIO_REGISTER", () => {
  it.each<[MemKind, number, bigint | string]>([
    ["anon", MISSING, 0x13cn],
    ["anon", WP, 0x17cn],
    ["anon", MISSING | WP, 0x17cn],
    ["anon", MINOR, "EINVAL"],
    ["shmem", MISSING, 0x13cn],
    ["shmem", MINOR, 0x1bcn],
    ["shmem", MISSING | WP | MINOR, 0x1fcn],
    ["shmem-private", MINOR, 0x1bcn],
  ])("%s mode %i returns ioctls %s (linux-rules §1.4)", async (kind, mode, want) => {
    const { k, p, uffd } = await setup();
    const { addr } = await mapArea(p, kind, 1);
    if (typeof want === "string") expect(await errnoOf(register(p, uffd, addr, PS, mode))).toBe(want);
    else expect(await register(p, uffd, addr, PS, mode)).toBe(want);
    k.checkInvariants();
  });

  it("checks mode, range, vmas in Linux's order; holes are fine, no vma at all is EINVAL (linux-rules §2.2, linux-rules §8.9)", async () => {
    const { k, p, uffd } = await setup();
    const { addr } = await mapArea(p, "anon", 3);
    await p.munmap(addr + PS, PS);
    expect(await errnoOf(register(p, uffd, addr, PS, 0))).toBe("EINVAL");
    expect(await errnoOf(register(p, uffd, addr, PS, 8))).toBe("EINVAL");
    expect(await errnoOf(register(p, uffd, addr + 1, PS, MISSING))).toBe("EINVAL");
    expect(await errnoOf(register(p, uffd, addr, PS + 1, MISSING))).toBe("EINVAL");
    expect(await errnoOf(register(p, uffd, addr + PS, PS, MISSING))).toBe("EINVAL");
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_REGISTER, { range: { start: addr }, mode: 1 }))).toBe("EFAULT");
    await register(p, uffd, addr, 3 * PS, MISSING);
    expect(p.smaps().filter((v) => v.vmFlags.includes("um")).map((v) => v.start)).toEqual([addr, addr + 2 * PS]);
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_UNREGISTER, { start: addr + PS, len: PS }))).toBe("EINVAL");
    await p.ioctl(uffd, UFFDIO_UNREGISTER, { start: addr, len: 3 * PS });
    k.checkInvariants();
  });

  it("a PROT_READ shared mapping of a writable memfd keeps VM_MAYWRITE, so it registers (linux-rules §2.2 #9b)", async () => {
    const { k, p, uffd } = await setup();
    const memfd = await p.memfdCreate("ro");
    await p.ftruncate(memfd, PS);
    const rw = await p.mmap(0, PS, PROT_READ, MAP_SHARED, memfd, 0);
    expect(await register(p, uffd, rw, PS, MISSING)).toBe(0x13cn);
    k.checkInvariants();
  });

  it("splits at the range ends, merges back on UNREGISTER; PROT_NONE vmas register (linux-rules §2.2)", async () => {
    const { k, p, uffd } = await setup();
    const { addr } = await mapArea(p, "anon", 4);
    await register(p, uffd, addr + PS, 2 * PS, MISSING);
    expect(p.smaps().map((v) => [v.start - addr, v.end - addr, v.vmFlags.includes("um")])).toEqual([
      [0, PS, false],
      [PS, 3 * PS, true],
      [3 * PS, 4 * PS, false],
    ]);
    await p.ioctl(uffd, UFFDIO_UNREGISTER, { start: addr, len: 4 * PS });
    expect(p.smaps().map((v) => [v.start - addr, v.end - addr])).toEqual([[0, 4 * PS]]);
    const none = await p.mmap(0, PS, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS);
    await register(p, uffd, none, PS, MISSING);
    k.checkInvariants();
  });

  it("re-register keeps a superset of modes, replaces otherwise (linux-rules §8.8)", async () => {
    const { k, p, uffd } = await setup();
    const { addr } = await mapArea(p, "anon", 2);
    await register(p, uffd, addr, PS, MISSING | WP);
    expect(await register(p, uffd, addr, PS, MISSING)).toBe(0x13cn);
    await p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: addr, len: PS }, mode: UFFDIO_WRITEPROTECT_MODE_WP });
    await register(p, uffd, addr + PS, PS, MISSING);
    await register(p, uffd, addr + PS, PS, WP);
    const flags = p.smaps().find((v) => v.start <= addr + PS && v.end > addr + PS)!.vmFlags;
    expect(flags).toContain("uw");
    expect(flags).not.toContain("um");
    k.checkInvariants();
  });
});

describe("UFFDIO_WRITEPROTECT", () => {
  it("checks: EINVAL for bad modes and WP|DONTWAKE; ENOENT without WP mode; holes skipped (linux-rules §2.7)", async () => {
    const { k, p, uffd } = await setup();
    const { addr } = await mapArea(p, "anon", 3);
    await p.munmap(addr + PS, PS);
    await register(p, uffd, addr, 3 * PS, WP);
    const wp = (start: number, len: number, mode: number): Promise<string> => errnoOf(p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start, len }, mode }));
    expect(await wp(addr, PS, 4)).toBe("EINVAL");
    expect(await wp(addr, PS, UFFDIO_WRITEPROTECT_MODE_WP | UFFDIO_WRITEPROTECT_MODE_DONTWAKE)).toBe("EINVAL");
    expect(await wp(addr, 3 * PS, UFFDIO_WRITEPROTECT_MODE_WP)).toBe("OK");
    expect(await wp(addr + PS, PS, UFFDIO_WRITEPROTECT_MODE_WP)).toBe("ENOENT");
    const { addr: plain } = await mapArea(p, "anon", 1);
    await register(p, uffd, plain, PS, MISSING);
    expect(await wp(plain, PS, UFFDIO_WRITEPROTECT_MODE_WP)).toBe("ENOENT");
    k.checkInvariants();
  });

  it.each(["6.18", "6.1"] as const)("%s: unprotect of one page (mode 0, a WP fault's resolve): ENOENT outside a WP vma, nothing to do on an untouched page, wakes the page's writer only", async (release) => {
    // 6.1 finds the one vma with find_dst_vma(), 6.4 on walks the vmas of the range
    // (mm/userfaultfd.c:mwriteprotect_range()); inside one vma both give the same outcome.
    const k = new Kernel({ release });
    const p = k.spawn();
    const uffd = await p.userfaultfd(O_NONBLOCK);
    await p.ioctl(uffd, UFFDIO_API, { api: UFFD_API, features: 0 });
    const { addr } = await mapArea(p, "anon", 4);
    await p.munmap(addr + 3 * PS, PS);
    await register(p, uffd, addr, 2 * PS, WP);
    await register(p, uffd, addr + 2 * PS, PS, MISSING);
    const unprotect = (start: number): Promise<string> => errnoOf(p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start, len: PS }, mode: 0 }));
    // MISSING-only vma, then no vma at all: ENOENT, as for the whole-range path.
    expect(await unprotect(addr + 2 * PS)).toBe("ENOENT");
    expect(await unprotect(addr + 3 * PS)).toBe("ENOENT");
    // A page never touched (no pte): nothing to change.
    expect(await unprotect(addr + PS)).toBe("OK");
    expect(p.pagemap(addr + PS, 1)[0]).toMatchObject({ present: false, swapped: false, uffdWp: false });
    // Two protected written pages, a writer blocked on each: unprotecting one wakes its writer only.
    await p.mainThread.write(addr, Uint8Array.of(1));
    await p.mainThread.write(addr + PS, Uint8Array.of(1));
    await p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: addr, len: 2 * PS }, mode: UFFDIO_WRITEPROTECT_MODE_WP });
    const w0 = p.spawnThread("w0").write(addr, Uint8Array.of(2));
    const w1 = p.spawnThread("w1").write(addr + PS, Uint8Array.of(3));
    await k.idle();
    expect(await unprotect(addr + PS)).toBe("OK");
    await w1;
    expect(await isBlocked(k, w0)).toBe(true);
    expect(p.pagemap(addr, 2).map((e) => e.uffdWp)).toEqual([true, false]);
    expect(await p.mainThread.read(addr + PS, 1)).toEqual(Uint8Array.of(3));
    expect(await unprotect(addr)).toBe("OK");
    await w0;
    expect(await p.mainThread.read(addr, 1)).toEqual(Uint8Array.of(2));
    k.checkInvariants();
  });

  it("anon without WP_UNPOPULATED leaves none ptes alone; a write then needs no userfault (linux-rules §2.7, linux-rules §3.1)", async () => {
    const { k, p, uffd } = await setup();
    const { addr } = await mapArea(p, "anon", 2);
    await register(p, uffd, addr, 2 * PS, WP);
    await p.mainThread.write(addr, new Uint8Array([1]));
    await p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: addr, len: 2 * PS }, mode: UFFDIO_WRITEPROTECT_MODE_WP });
    expect(p.pagemap(addr, 2).map((e) => e.uffdWp)).toEqual([true, false]);
    await p.mainThread.write(addr + PS, new Uint8Array([1]));
    const w = p.mainThread.write(addr, new Uint8Array([2]));
    expect(await isBlocked(k, w)).toBe(true);
    const [m] = await readMsgs(p, uffd);
    expect(m).toMatchObject({ arg: { pagefault: { flags: 3, address: addr } } });
    // Unprotect wakes the range (no DONTWAKE); the retried write finds the page writable.
    await p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: addr, len: PS }, mode: 0 });
    await w;
    expect(p.pagemap(addr, 1)[0]).toMatchObject({ uffdWp: false, exclusive: true });
    k.checkInvariants();
  });

  it("WP_UNPOPULATED: none ptes get markers; unprotect removes them; a read maps the zero page with uffd-wp (uffd-unit-tests.c: wp-unpopulated)", async () => {
    const { k, p, uffd } = await setup(UFFD_FEATURE_WP_UNPOPULATED);
    const { addr } = await mapArea(p, "anon", 1);
    await register(p, uffd, addr, PS, WP);
    const protect = (mode: number): Promise<number> => p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: addr, len: PS }, mode });
    await protect(UFFDIO_WRITEPROTECT_MODE_WP);
    expect(p.pagemap(addr, 1)[0]).toMatchObject({ present: false, swapped: true, uffdWp: true });
    await protect(0);
    expect(p.pagemap(addr, 1)[0]).toMatchObject({ present: false, swapped: false, uffdWp: false });
    await protect(UFFDIO_WRITEPROTECT_MODE_WP);
    expect(await p.mainThread.read(addr, 1)).toEqual(new Uint8Array([0]));
    expect(p.pagemap(addr, 1)[0]).toMatchObject({ present: true, uffdWp: true, pfn: k.zeroPfn });
    const w = p.mainThread.write(addr, new Uint8Array([5]));
    await k.idle();
    expect(await readMsgs(p, uffd)).toMatchObject([{ arg: { pagefault: { flags: 3, address: addr } } }]);
    await protect(0);
    await w;
    k.checkInvariants();
  });

  it("MISSING|WP over a marker: a read is a MISSING fault; ZEROPAGE cannot resolve it, COPY can (linux-rules §8.3, linux-rules §8.22)", async () => {
    const { k, p, uffd } = await setup(UFFD_FEATURE_WP_UNPOPULATED);
    const { addr } = await mapArea(p, "anon", 1);
    await register(p, uffd, addr, PS, MISSING | WP);
    await p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: addr, len: PS }, mode: UFFDIO_WRITEPROTECT_MODE_WP });
    const r = p.mainThread.read(addr, 1);
    await k.idle();
    expect(await readMsgs(p, uffd)).toMatchObject([{ arg: { pagefault: { flags: 0 } } }]);
    expect(await errnoOf(p.ioctl(uffd, 0xc020aa04, { range: { start: addr, len: PS }, mode: 0 }))).toBe("EEXIST");
    await p.ioctl(uffd, UFFDIO_COPY, { dst: addr, src: fill(1), len: PS, mode: 2 });
    expect(await r).toEqual(new Uint8Array([1]));
    expect(p.pagemap(addr, 1)[0]!.uffdWp).toBe(true);
    k.checkInvariants();
  });

  it("WP_ASYNC: a write to a protected page clears uffd-wp silently; any memory may register WP-only (linux-rules §8.19)", async () => {
    const { k, p, uffd } = await setup(UFFD_FEATURE_WP_ASYNC);
    const { addr } = await mapArea(p, "anon", 2);
    await register(p, uffd, addr, 2 * PS, WP);
    await p.mainThread.write(addr, new Uint8Array([1]));
    await p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: addr, len: 2 * PS }, mode: UFFDIO_WRITEPROTECT_MODE_WP });
    expect(p.pagemap(addr, 2).map((e) => e.uffdWp)).toEqual([true, true]);
    await p.mainThread.write(addr, new Uint8Array([2]));
    await p.mainThread.write(addr + PS, new Uint8Array([2]));
    expect(p.pagemap(addr, 2).map((e) => e.uffdWp)).toEqual([false, false]);
    expect(await readMsgs(p, uffd)).toEqual([]);
    k.checkInvariants();
  });

  it("shmem: WP on a none pte installs a marker; a write there is a WP fault even over a cache hole", async () => {
    const { k, p, uffd } = await setup();
    const { addr, memfd } = await mapArea(p, "shmem", 1);
    await register(p, uffd, addr, PS, WP);
    await p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: addr, len: PS }, mode: UFFDIO_WRITEPROTECT_MODE_WP });
    expect(p.pagemap(addr, 1)[0]).toMatchObject({ swapped: true, uffdWp: true });
    const w = p.mainThread.write(addr, new Uint8Array([7]));
    await k.idle();
    expect(await readMsgs(p, uffd)).toMatchObject([{ arg: { pagefault: { flags: 3, address: addr } } }]);
    await p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: addr, len: PS }, mode: 0 });
    await w;
    expect(await p.pread(memfd, 1, 0)).toEqual(new Uint8Array([7]));
    k.checkInvariants();
  });

  it("UNREGISTER clears uffd-wp from ptes and markers", async () => {
    const { k, p, uffd } = await setup(UFFD_FEATURE_WP_UNPOPULATED);
    const { addr } = await mapArea(p, "anon", 2);
    await p.mainThread.write(addr, new Uint8Array([1]));
    await register(p, uffd, addr, 2 * PS, WP);
    await p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: addr, len: 2 * PS }, mode: UFFDIO_WRITEPROTECT_MODE_WP });
    await p.ioctl(uffd, UFFDIO_UNREGISTER, { start: addr, len: 2 * PS });
    expect(p.pagemap(addr, 2).map((e) => [e.present, e.swapped, e.uffdWp])).toEqual([
      [true, false, false],
      [false, false, false],
    ]);
    await p.mainThread.write(addr, new Uint8Array([2]));
    k.checkInvariants();
  });
});

describe("shared mappings keep existing writable ptes on WP registration (write-notify only)", () => {
  it("a written shared page stays writable until WRITEPROTECT", async () => {
    const { k, p, uffd } = await setup();
    const memfd = await p.memfdCreate("s");
    await p.ftruncate(memfd, PS);
    const addr = await p.mmap(0, PS, RW, MAP_SHARED, memfd, 0);
    await p.mainThread.write(addr, new Uint8Array([1]));
    await register(p, uffd, addr, PS, WP);
    await p.mainThread.write(addr, new Uint8Array([2]));
    expect(await readMsgs(p, uffd)).toEqual([]);
    await p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: addr, len: PS }, mode: UFFDIO_WRITEPROTECT_MODE_WP });
    const w = p.mainThread.write(addr, new Uint8Array([3]));
    expect(await isBlocked(k, w)).toBe(true);
    await p.close(uffd);
    await w;
    expect(await p.pread(memfd, 1, 0)).toEqual(new Uint8Array([3]));
    k.checkInvariants();
  });
});
