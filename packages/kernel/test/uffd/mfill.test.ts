/**
 * UFFDIO_COPY, ZEROPAGE, CONTINUE and POISON: check order, result fields, what gets mapped
 * (docs/linux-rules.md §2.0, §2.5, §2.6, §2.8, §2.9, §3.4, §8.2, §8.3, §8.10).
 */
import { describe, expect, it } from "vitest";
import { Kernel, SignalError } from "@uffd/kernel";
import { PG } from "../../src/mm/folio.ts";
import {
  MADV_DONTNEED,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  MAP_SHARED,
  O_NONBLOCK,
  PROT_READ,
  UFFD_API,
  UFFD_FEATURE_WP_UNPOPULATED,
  UFFDIO_API,
  UFFDIO_CONTINUE,
  UFFDIO_CONTINUE_MODE_WP,
  UFFDIO_COPY,
  UFFDIO_COPY_MODE_DONTWAKE,
  UFFDIO_COPY_MODE_WP,
  UFFDIO_POISON,
  UFFDIO_REGISTER_MODE_MINOR,
  UFFDIO_REGISTER_MODE_MISSING,
  UFFDIO_REGISTER_MODE_WP,
  UFFDIO_UNREGISTER,
  UFFDIO_WRITEPROTECT,
  UFFDIO_WRITEPROTECT_MODE_WP,
  UFFDIO_ZEROPAGE,
} from "@uffd/kernel/uapi";
import { errnoOf, fill, mapArea, type MemKind, PS, register, RW, setup } from "./helpers.ts";

const KINDS: MemKind[] = ["anon", "shmem", "shmem-private"];

describe("UFFDIO_COPY", () => {
  it("early errors leave the field untouched, in Linux's order (src range, dst range, mode) (linux-rules §2.5)", async () => {
    const { k, p, uffd } = await setup();
    const { addr } = await mapArea(p, "anon", 2);
    await register(p, uffd, addr, 2 * PS, UFFDIO_REGISTER_MODE_MISSING);
    const cases: Array<[object, string]> = [
      [{ dst: addr + 1, src: addr + PS, len: PS, mode: 0 }, "EINVAL"],
      [{ dst: addr, src: addr + PS, len: 0, mode: 0 }, "EINVAL"],
      [{ dst: addr, src: addr + PS, len: PS, mode: 4 }, "EINVAL"],
      [{ dst: 2 ** 47, src: addr + PS, len: PS, mode: 0 }, "EINVAL"],
      [{ dst: addr, len: PS, mode: 0 }, "EFAULT"],
    ];
    for (const [arg, code] of cases) {
      const a = { ...arg, copy: 12345 };
      expect(await errnoOf(p.ioctl(uffd, UFFDIO_COPY, a)), JSON.stringify(arg)).toBe(code);
      expect(a.copy).toBe(12345);
    }
    // A src below vm.mmap_min_addr is no early EINVAL in 6.18.y (validate_unaligned_range() lost
    // that check): the copy from user memory fails, and the field says so [host: EFAULT, -14].
    const low = { dst: addr, src: 0, len: PS, mode: 0, copy: 12345 };
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_COPY, low))).toBe("EFAULT");
    expect(low.copy).toBe(-14);
    k.checkInvariants();
  });

  it("a partly populated range: the field holds the bytes done and the ioctl is EAGAIN (linux-rules §2.0)", async () => {
    const { k, p, uffd } = await setup();
    const { addr } = await mapArea(p, "anon", 3);
    await register(p, uffd, addr, 3 * PS, UFFDIO_REGISTER_MODE_MISSING);
    await p.ioctl(uffd, UFFDIO_ZEROPAGE, { range: { start: addr + PS, len: PS }, mode: 0 });
    const a = { dst: addr, src: fill(4, 3 * PS), len: 3 * PS, mode: 0, copy: 0 };
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_COPY, a))).toBe("EAGAIN");
    expect(a.copy).toBe(PS);
    const b = { dst: addr + PS, src: fill(4), len: PS, mode: 0, copy: 0 };
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_COPY, b))).toBe("EEXIST");
    expect(b.copy).toBe(-17);
    k.checkInvariants();
  });

  it("ENOENT outside one registered vma: unregistered, crossing the vma end, after UNREGISTER (linux-rules §2.5)", async () => {
    const { k, p, uffd } = await setup();
    const { addr } = await mapArea(p, "anon", 4);
    await register(p, uffd, addr, 2 * PS, UFFDIO_REGISTER_MODE_MISSING);
    for (const [dst, len] of [
      [addr + 2 * PS, PS],
      [addr + PS, 2 * PS],
    ] as const) {
      const a = { dst, src: fill(0, len), len, mode: 0, copy: 0 };
      expect(await errnoOf(p.ioctl(uffd, UFFDIO_COPY, a))).toBe("ENOENT");
      expect(a.copy).toBe(-2);
    }
    await p.ioctl(uffd, UFFDIO_UNREGISTER, { start: addr, len: 2 * PS });
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_COPY, { dst: addr, src: fill(0), len: PS, mode: 0 }))).toBe("ENOENT");
    k.checkInvariants();
  });

  it("reads the source from the caller's memory, unaligned; a source that faults is EFAULT after the pages done", async () => {
    const { k, p, uffd } = await setup();
    const { addr } = await mapArea(p, "anon", 2);
    await register(p, uffd, addr, 2 * PS, UFFDIO_REGISTER_MODE_MISSING);
    const src = await p.mmap(0, 3 * PS, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    await p.mainThread.write(src, fill(8, PS + 1));
    await p.munmap(src + 2 * PS, PS);
    const a = { dst: addr, src: src + 1, len: 2 * PS, mode: 0, copy: 0 };
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_COPY, a))).toBe("EAGAIN");
    expect(a.copy).toBe(PS);
    expect(await p.mainThread.read(addr, PS)).toEqual(fill(8));
    const b = { dst: addr + PS, src: src + 2 * PS, len: PS, mode: 0, copy: 0 };
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_COPY, b))).toBe("EFAULT");
    expect(b.copy).toBe(-14);
    // A source page that is not resident yet is faulted in (the zero page of an untouched mapping).
    const c = { dst: addr + PS, src: src + PS, len: PS, mode: 0, copy: 0 };
    await p.ioctl(uffd, UFFDIO_COPY, c);
    expect(await p.mainThread.read(addr + PS, 2)).toEqual(new Uint8Array([8, 0]));
    k.checkInvariants();
  });

  it("the source is read before the destination pte is checked: bad source over a present page is EFAULT (host probe)", async () => {
    const { k, p, uffd } = await setup();
    const { addr } = await mapArea(p, "anon", 1);
    await p.mainThread.write(addr, fill(1, 1));
    await register(p, uffd, addr, PS, UFFDIO_REGISTER_MODE_MISSING);
    const gone = await p.mmap(0, PS, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    await p.munmap(gone, PS);
    const a = { dst: addr, src: gone, len: PS, mode: 0, copy: 0 };
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_COPY, a))).toBe("EFAULT");
    expect(a.copy).toBe(-14);
    k.checkInvariants();
  });

  it("a source on a registered range of the monitor itself blocks the COPY until that fault is resolved", async () => {
    const { k, p, uffd } = await setup();
    const { addr } = await mapArea(p, "anon", 2);
    await register(p, uffd, addr, 2 * PS, UFFDIO_REGISTER_MODE_MISSING);
    const a = { dst: addr, src: addr + PS, len: PS, mode: 0, copy: 0 };
    const cp = p.ioctl(uffd, UFFDIO_COPY, a);
    await k.idle();
    const msgs = await p.read(uffd, 64);
    expect(msgs.length).toBe(32);
    await p.ioctl(uffd, UFFDIO_COPY, { dst: addr + PS, src: fill(6), len: PS, mode: 0 });
    await cp;
    expect(a.copy).toBe(PS);
    expect(await p.mainThread.read(addr, 1)).toEqual(new Uint8Array([6]));
    k.checkInvariants();
  });

  it("MODE_WP needs VM_UFFD_WP (field -EINVAL); with it the page is mapped read-only with uffd-wp (linux-rules §3.4)", async () => {
    const { k, p, uffd } = await setup();
    const { addr } = await mapArea(p, "anon", 2);
    await register(p, uffd, addr, PS, UFFDIO_REGISTER_MODE_MISSING);
    await register(p, uffd, addr + PS, PS, UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP);
    const a = { dst: addr, src: fill(1), len: PS, mode: UFFDIO_COPY_MODE_WP, copy: 0 };
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_COPY, a))).toBe("EINVAL");
    expect(a.copy).toBe(-22);
    await p.ioctl(uffd, UFFDIO_COPY, { dst: addr + PS, src: fill(1), len: PS, mode: UFFDIO_COPY_MODE_WP });
    expect(p.pagemap(addr + PS, 1)[0]).toMatchObject({ present: true, exclusive: true, uffdWp: true });
    k.checkInvariants();
  });

  it("shared shmem: the page goes into the page cache (visible through another mapping); a cached slot is EEXIST", async () => {
    const { k, p, uffd } = await setup();
    const { addr, memfd } = await mapArea(p, "shmem", 2);
    const alias = await p.mmap(0, 2 * PS, RW, MAP_SHARED, memfd, 0);
    await register(p, uffd, addr, 2 * PS, UFFDIO_REGISTER_MODE_MISSING);
    await p.ioctl(uffd, UFFDIO_COPY, { dst: addr, src: fill(3), len: PS, mode: 0 });
    expect(await p.mainThread.read(alias, 1)).toEqual(new Uint8Array([3]));
    expect(p.pagemap(addr, 1)[0]).toMatchObject({ present: true, file: true });
    await p.pwrite(memfd, fill(9, 1), PS);
    const a = { dst: addr + PS, src: fill(3), len: PS, mode: 0, copy: 0 };
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_COPY, a))).toBe("EEXIST");
    expect(a.copy).toBe(-17);
    k.checkInvariants();
  });

  it("private shmem: COPY makes an anon page and leaves the page cache alone (linux-rules §3.4)", async () => {
    const { k, p, uffd } = await setup();
    const { addr, memfd } = await mapArea(p, "shmem-private", 1);
    await register(p, uffd, addr, PS, UFFDIO_REGISTER_MODE_MISSING);
    await p.ioctl(uffd, UFFDIO_COPY, { dst: addr, src: fill(3), len: PS, mode: 0 });
    expect(p.pagemap(addr, 1)[0]).toMatchObject({ present: true, file: false, exclusive: true });
    expect(await p.pread(memfd, 1, 0)).toEqual(new Uint8Array([0]));
    k.checkInvariants();
  });

  it.each(KINDS)("%s: beyond i_size is EFAULT for COPY, ZEROPAGE and POISON (anon has no i_size)", async (kind) => {
    const { k, p, uffd } = await setup();
    const { addr, memfd } = await mapArea(p, kind, 2);
    await register(p, uffd, addr, 2 * PS, UFFDIO_REGISTER_MODE_MISSING);
    if (memfd >= 0) await p.ftruncate(memfd, PS);
    const want = kind === "anon" ? "OK" : "EFAULT";
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_COPY, { dst: addr + PS, src: fill(0), len: PS, mode: 0 }))).toBe(want);
    if (kind === "anon") return k.checkInvariants();
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_ZEROPAGE, { range: { start: addr + PS, len: PS }, mode: 0 }))).toBe("EFAULT");
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_POISON, { range: { start: addr + PS, len: PS }, mode: 0 }))).toBe("EFAULT");
    k.checkInvariants();
  });

  it("COPY replaces any marker, poison included, and drops uffd-wp without MODE_WP (linux-rules §8.3)", async () => {
    const { k, p, uffd } = await setup(UFFD_FEATURE_WP_UNPOPULATED);
    const { addr } = await mapArea(p, "anon", 2);
    await register(p, uffd, addr, 2 * PS, UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP);
    await p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: addr, len: PS }, mode: UFFDIO_WRITEPROTECT_MODE_WP });
    await p.ioctl(uffd, UFFDIO_POISON, { range: { start: addr + PS, len: PS }, mode: 0 });
    expect(p.pagemap(addr, 2).map((e) => [e.swapped, e.uffdWp])).toEqual([
      [true, true],
      [true, false],
    ]);
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_ZEROPAGE, { range: { start: addr, len: PS }, mode: 0 }))).toBe("EEXIST");
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_POISON, { range: { start: addr, len: PS }, mode: 0 }))).toBe("EEXIST");
    await p.ioctl(uffd, UFFDIO_COPY, { dst: addr, src: fill(1, 2 * PS), len: 2 * PS, mode: 0 });
    expect(p.pagemap(addr, 2).map((e) => [e.present, e.uffdWp])).toEqual([
      [true, false],
      [true, false],
    ]);
    k.checkInvariants();
  });

  it.each(["flat", "compact"] as const)(
    "%s store: a one-page COPY from a buffer (the straight path) leaves its frame as the page loop does, also in a reused frame",
    async (frameStore) => {
      const k = new Kernel({ seed: 1, frameStore });
      const p = k.spawn();
      const uffd = await p.userfaultfd(O_NONBLOCK);
      await p.ioctl(uffd, UFFDIO_API, { api: UFFD_API, features: 0 });
      const { addr } = await mapArea(p, "anon", 2);
      await register(p, uffd, addr, 2 * PS, UFFDIO_REGISTER_MODE_MISSING);
      const mem = k.core.mem;
      const frame = (a: number): number[] => {
        const pfn = p.pagemap(a, 1)[0]!.pfn!;
        return [mem.refcount[pfn]!, mem.mapcount[pfn]!, mem.pincount[pfn]!, mem.flags[pfn]!, mem.mapping[pfn]!, mem.index[pfn]!];
      };
      for (let round = 0; round < 2; round++) {
        // The second round's frames come back from the free list (MADV_DONTNEED freed them).
        const straight = { dst: addr, src: fill(7 + round, PS), len: PS, mode: 0, copy: 0 };
        await p.ioctl(uffd, UFFDIO_COPY, straight);
        // DONTWAKE keeps the one-page COPY off the straight path: mfill_atomic()'s page loop.
        const loop = { dst: addr + PS, src: fill(9 + round, PS), len: PS, mode: UFFDIO_COPY_MODE_DONTWAKE, copy: 0 };
        await p.ioctl(uffd, UFFDIO_COPY, loop);
        expect([straight.copy, loop.copy]).toEqual([PS, PS]);
        const [a, b] = [frame(addr), frame(addr + PS)];
        // refcount, mapcount, pincount, flags (uptodate, anon, swapbacked, lru, anon-exclusive), mapping, index (the page's vpn).
        expect(a).toEqual([1, 1, 0, PG.uptodate | PG.anon | PG.swapbacked | PG.lru | PG.anonExclusive, 0, addr / PS]);
        expect(b).toEqual([...a.slice(0, 5), addr / PS + 1]);
        const [fa, fb] = p.pagemap(addr, 2).map((e) => k.kpageflags(e.pfn!));
        expect(fa).toEqual(fb);
        expect(Array.from(await p.mainThread.read(addr, 2 * PS))).toEqual([...fill(7 + round, PS), ...fill(9 + round, PS)]);
        expect(p.smaps().find((v) => v.start === addr)!.anonBytes).toBe(2 * PS);
        k.checkInvariants();
        await p.madvise(addr, 2 * PS, MADV_DONTNEED);
      }
    },
  );
});

describe("UFFDIO_ZEROPAGE and UFFDIO_POISON", () => {
  it("anon ZEROPAGE maps the zero page; a later write COWs without a userfault (uffd-unit-tests.c: zeropage)", async () => {
    const { k, p, uffd } = await setup();
    const { addr } = await mapArea(p, "anon", 1);
    expect((await register(p, uffd, addr, PS, UFFDIO_REGISTER_MODE_MISSING)) & (1n << 4n)).toBe(1n << 4n);
    const a = { range: { start: addr, len: PS }, mode: 0, zeropage: 0 };
    await p.ioctl(uffd, UFFDIO_ZEROPAGE, a);
    expect(a.zeropage).toBe(PS);
    expect(p.pagemap(addr, 1)[0]).toMatchObject({ present: true, exclusive: false, pfn: k.zeroPfn });
    const b = { range: { start: addr, len: PS }, mode: 0, zeropage: 0 };
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_ZEROPAGE, b))).toBe("EEXIST");
    expect(b.zeropage).toBe(-17);
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_ZEROPAGE, { range: { start: addr, len: PS }, mode: 2, zeropage: 0 }))).toBe("EINVAL");
    await p.mainThread.write(addr, new Uint8Array([1]));
    expect(p.pagemap(addr, 1)[0]).toMatchObject({ present: true, exclusive: true });
    k.checkInvariants();
  });

  it("shared shmem ZEROPAGE allocates a zeroed page-cache page, mapped writable; the alias sees it (linux-rules §2.6)", async () => {
    const { k, p, uffd } = await setup();
    const { addr, memfd } = await mapArea(p, "shmem", 1);
    const alias = await p.mmap(0, PS, RW, MAP_SHARED, memfd, 0);
    await register(p, uffd, addr, PS, UFFDIO_REGISTER_MODE_MISSING);
    await p.ioctl(uffd, UFFDIO_ZEROPAGE, { range: { start: addr, len: PS }, mode: 0 });
    expect(p.pagemap(addr, 1)[0]).toMatchObject({ present: true, file: true, exclusive: true });
    await p.mainThread.write(addr, new Uint8Array([4]));
    expect(await p.mainThread.read(alias, 1)).toEqual(new Uint8Array([4]));
    k.checkInvariants();
  });

  it("POISON installs a poison marker; access is SIGBUS; the field reports the pages (uffd-unit-tests.c: poison)", async () => {
    const { k, p, uffd } = await setup();
    const { addr } = await mapArea(p, "anon", 2);
    await register(p, uffd, addr, 2 * PS, UFFDIO_REGISTER_MODE_MISSING);
    const a = { range: { start: addr, len: 2 * PS }, mode: 0, updated: 0 };
    await p.ioctl(uffd, UFFDIO_POISON, a);
    expect(a.updated).toBe(2 * PS);
    expect(p.pagemap(addr, 1)[0]).toMatchObject({ present: false, swapped: true, uffdWp: false });
    await expect(p.mainThread.read(addr, 1)).rejects.toBeInstanceOf(SignalError);
    await expect(p.mainThread.write(addr + PS, new Uint8Array([1]))).rejects.toMatchObject({ signal: "SIGBUS" });
    k.checkInvariants();
  });
});

describe("UFFDIO_CONTINUE", () => {
  it("maps the cached page of a MINOR fault; a second CONTINUE is EEXIST (uffd-unit-tests.c: minor)", async () => {
    const { k, p, uffd } = await setup();
    const { addr, memfd } = await mapArea(p, "shmem", 2);
    await p.pwrite(memfd, fill(0x5a, PS), 0);
    const ioctls = await register(p, uffd, addr, 2 * PS, UFFDIO_REGISTER_MODE_MINOR);
    expect(ioctls).toBe(0x1bcn);
    const r = p.mainThread.read(addr, 1);
    await k.idle();
    const buf = await p.read(uffd, 32);
    expect(buf[8]).toBe(4);
    const a = { range: { start: addr, len: PS }, mode: 0, mapped: 0 };
    await p.ioctl(uffd, UFFDIO_CONTINUE, a);
    expect(a.mapped).toBe(PS);
    expect(await r).toEqual(new Uint8Array([0x5a]));
    const again = { range: { start: addr, len: PS }, mode: 0, mapped: 0 };
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_CONTINUE, again))).toBe("EEXIST");
    expect(again.mapped).toBe(-17);
    // A hole inside i_size is EFAULT; beyond i_size EINVAL (§8.2).
    const hole = { range: { start: addr + PS, len: PS }, mode: 0, mapped: 0 };
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_CONTINUE, hole))).toBe("EFAULT");
    await p.ftruncate(memfd, PS);
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_CONTINUE, hole))).toBe("EINVAL");
    expect(hole.mapped).toBe(-22);
    k.checkInvariants();
  });

  it("on anon memory CONTINUE is EINVAL; MODE_WP needs WP registration", async () => {
    const { k, p, uffd } = await setup();
    const { addr } = await mapArea(p, "anon", 1);
    await register(p, uffd, addr, PS, UFFDIO_REGISTER_MODE_MISSING);
    const a = { range: { start: addr, len: PS }, mode: 0, mapped: 0 };
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_CONTINUE, a))).toBe("EINVAL");
    expect(a.mapped).toBe(-22);
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_CONTINUE, { range: { start: addr, len: PS }, mode: 4 }))).toBe("EINVAL");
    k.checkInvariants();
  });

  it("on MAP_PRIVATE the cache page is mapped read-only; a write COWs with no userfault (linux-rules §3.4)", async () => {
    const { k, p, uffd } = await setup();
    const { addr, memfd } = await mapArea(p, "shmem-private", 1);
    await p.pwrite(memfd, fill(1, PS), 0);
    await register(p, uffd, addr, PS, UFFDIO_REGISTER_MODE_MINOR | UFFDIO_REGISTER_MODE_WP);
    await p.ioctl(uffd, UFFDIO_CONTINUE, { range: { start: addr, len: PS }, mode: 0 });
    expect(p.pagemap(addr, 1)[0]).toMatchObject({ present: true, file: true });
    await p.mainThread.write(addr, new Uint8Array([2]));
    expect(p.pagemap(addr, 1)[0]).toMatchObject({ present: true, file: false, exclusive: true });
    expect(await p.pread(memfd, 1, 0)).toEqual(new Uint8Array([1]));
    k.checkInvariants();
  });

  it("MODE_WP maps with uffd-wp; the write then takes a WP fault", async () => {
    const { k, p, uffd } = await setup();
    const { addr, memfd } = await mapArea(p, "shmem", 1);
    await p.pwrite(memfd, fill(1, PS), 0);
    await register(p, uffd, addr, PS, UFFDIO_REGISTER_MODE_MINOR | UFFDIO_REGISTER_MODE_WP);
    await p.ioctl(uffd, UFFDIO_CONTINUE, { range: { start: addr, len: PS }, mode: UFFDIO_CONTINUE_MODE_WP });
    expect(p.pagemap(addr, 1)[0]).toMatchObject({ present: true, uffdWp: true });
    const w = p.mainThread.write(addr, new Uint8Array([2]));
    await k.idle();
    const buf = await p.read(uffd, 32);
    expect(buf[8]).toBe(3);
    await p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: addr, len: PS }, mode: 0 });
    await w;
    expect(await p.pread(memfd, 1, 0)).toEqual(new Uint8Array([2]));
    k.checkInvariants();
  });
});

describe("registration is all the mfill ioctls need (linux-rules §8.6, linux-rules §8.10)", () => {
  it("COPY and ZEROPAGE succeed on a WP-only range and through another context of the same mm", async () => {
    const { k, p, uffd } = await setup();
    const other = await p.userfaultfd(0);
    await p.ioctl(other, 0xc018aa3f, { api: 0xaa, features: 0 });
    const { addr } = await mapArea(p, "anon", 2);
    await register(p, uffd, addr, 2 * PS, UFFDIO_REGISTER_MODE_WP);
    await p.ioctl(uffd, UFFDIO_COPY, { dst: addr, src: fill(1), len: PS, mode: 0 });
    await p.ioctl(other, UFFDIO_ZEROPAGE, { range: { start: addr + PS, len: PS }, mode: 0 });
    expect(await errnoOf(p.ioctl(other, UFFDIO_UNREGISTER, { start: addr, len: PS }))).toBe("EINVAL");
    expect(await errnoOf(p.ioctl(other, 0xc020aa00, { range: { start: addr, len: PS }, mode: 1 }))).toBe("EBUSY");
    await p.ioctl(other, UFFDIO_WRITEPROTECT, { range: { start: addr, len: PS }, mode: UFFDIO_WRITEPROTECT_MODE_WP });
    expect(p.pagemap(addr, 1)[0]!.uffdWp).toBe(true);
    k.checkInvariants();
  });

  it("COPY into a PROT_READ registered vma maps the page read-only", async () => {
    const { k, p, uffd } = await setup();
    const addr = await p.mmap(0, PS, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS);
    await register(p, uffd, addr, PS, UFFDIO_REGISTER_MODE_MISSING);
    await p.ioctl(uffd, UFFDIO_COPY, { dst: addr, src: fill(2), len: PS, mode: 0 });
    expect(await p.mainThread.read(addr, 1)).toEqual(new Uint8Array([2]));
    await expect(p.mainThread.write(addr, new Uint8Array([1]))).rejects.toMatchObject({ signal: "SIGSEGV" });
    k.checkInvariants();
  });
});
