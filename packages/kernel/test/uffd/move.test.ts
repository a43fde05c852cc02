/**
 * UFFDIO_MOVE (docs/linux-rules.md §2.10, §8.11, §5.3): same-mm anon moves, PAE and swap rules,
 * uffd-wp dropped, dst made writable.
 */
import { describe, expect, it } from "vitest";
import { Kernel } from "@uffd/kernel";
import {
  MADV_PAGEOUT,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  O_NONBLOCK,
  PROT_READ,
  UFFD_API,
  UFFD_FEATURE_WP_UNPOPULATED,
  UFFDIO_API,
  UFFDIO_COPY,
  UFFDIO_MOVE,
  UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES,
  UFFDIO_MOVE_MODE_DONTWAKE,
  UFFDIO_POISON,
  UFFDIO_REGISTER_MODE_MISSING,
  UFFDIO_REGISTER_MODE_WP,
  UFFDIO_WRITEPROTECT,
  UFFDIO_WRITEPROTECT_MODE_WP,
} from "@uffd/kernel/uapi";
import { errnoOf, fill, isBlocked, mapArea, PS, readMsgs, register, RW, setup } from "./helpers.ts";

async function moveSetup(features = 0) {
  const s = await setup(features);
  const { addr: src } = await mapArea(s.p, "anon", 4);
  const { addr: dst } = await mapArea(s.p, "anon", 4);
  await register(s.p, s.uffd, dst, 4 * PS, UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP);
  return { ...s, src, dst };
}

describe("UFFDIO_MOVE", () => {
  it("moves the page itself (same pfn), src becomes none, and wakes the faulting reader (uffd-unit-tests.c: move)", async () => {
    const { k, p, uffd, src, dst } = await moveSetup();
    await p.mainThread.write(src, fill(0x11));
    const pfn = p.pagemap(src, 1)[0]!.pfn;
    const r = p.mainThread.read(dst, 1);
    await k.idle();
    await readMsgs(p, uffd);
    const a = { dst, src, len: PS, mode: 0, move: 0 };
    await p.ioctl(uffd, UFFDIO_MOVE, a);
    expect(a.move).toBe(PS);
    expect(await r).toEqual(new Uint8Array([0x11]));
    expect(p.pagemap(dst, 1)[0]).toMatchObject({ present: true, exclusive: true, pfn });
    expect(p.pagemap(src, 1)[0]).toMatchObject({ present: false, swapped: false });
    k.checkInvariants();
  });

  it("early checks leave the field untouched: src must be page-aligned, bad mode, cross-mm (linux-rules §2.10, linux-rules §8.21)", async () => {
    const { k, p, uffd, src, dst } = await moveSetup();
    const cases: Array<[object, string]> = [
      [{ dst, src: src + 1, len: PS, mode: 0 }, "EINVAL"],
      [{ dst: dst + 1, src, len: PS, mode: 0 }, "EINVAL"],
      [{ dst, src, len: PS, mode: 4 }, "EINVAL"],
    ];
    for (const [arg, code] of cases) {
      const a = { ...arg, move: 99 };
      expect(await errnoOf(p.ioctl(uffd, UFFDIO_MOVE, a))).toBe(code);
      expect(a.move).toBe(99);
    }
    const other = k.spawn({ name: "monitor" });
    const ofd = await p.sendFd(uffd, other);
    const a = { dst, src, len: PS, mode: 0, move: 99 };
    expect(await errnoOf(other.ioctl(ofd, UFFDIO_MOVE, a))).toBe("EINVAL");
    expect(a.move).toBe(99);
    k.checkInvariants();
  });

  it("src holes: ENOENT, or with ALLOW_SRC_HOLES counted as moved; a populated dst is EEXIST after progress", async () => {
    const { k, p, uffd, src, dst } = await moveSetup();
    const a = { dst, src, len: PS, mode: 0, move: 0 };
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_MOVE, a))).toBe("ENOENT");
    expect(a.move).toBe(-2);
    const b = { dst, src, len: PS, mode: UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES, move: 0 };
    await p.ioctl(uffd, UFFDIO_MOVE, b);
    expect(b.move).toBe(PS);
    expect(p.pagemap(dst, 1)[0]!.present).toBe(false);
    await p.mainThread.write(src, fill(1, 2 * PS));
    await p.ioctl(uffd, UFFDIO_COPY, { dst: dst + PS, src: fill(2), len: PS, mode: 0 });
    const c = { dst, src, len: 2 * PS, mode: 0, move: 0 };
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_MOVE, c))).toBe("EAGAIN");
    expect(c.move).toBe(PS);
    k.checkInvariants();
  });

  it("the dst pte is writable and loses uffd-wp; a zero page moves as the zero page (linux-rules §2.10, linux-rules §8.11)", async () => {
    const { k, p, uffd, src, dst } = await moveSetup();
    const { addr: wpsrc } = await mapArea(p, "anon", 1);
    await register(p, uffd, wpsrc, PS, UFFDIO_REGISTER_MODE_WP);
    await p.mainThread.write(wpsrc, fill(3));
    await p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: wpsrc, len: PS }, mode: UFFDIO_WRITEPROTECT_MODE_WP });
    expect(p.pagemap(wpsrc, 1)[0]!.uffdWp).toBe(true);
    await p.ioctl(uffd, UFFDIO_MOVE, { dst, src: wpsrc, len: PS, mode: 0 });
    expect(p.pagemap(dst, 1)[0]).toMatchObject({ present: true, uffdWp: false });
    await p.mainThread.write(dst, fill(4, 1));
    expect(await readMsgs(p, uffd)).toEqual([]);
    expect(await p.mainThread.read(src, 1)).toEqual(new Uint8Array([0]));
    await p.ioctl(uffd, UFFDIO_MOVE, { dst: dst + PS, src, len: PS, mode: 0 });
    expect(p.pagemap(dst + PS, 1)[0]).toMatchObject({ present: true, pfn: k.zeroPfn });
    expect(p.pagemap(src, 1)[0]!.present).toBe(false);
    k.checkInvariants();
  });

  it("a page shared with a fork child is EBUSY, even after the child exits, until a write makes it exclusive (linux-rules §8.11)", async () => {
    const { k, p, uffd, src, dst } = await moveSetup();
    await p.mainThread.write(src, fill(5));
    const child = await p.fork();
    const a = { dst, src, len: PS, mode: 0, move: 0 };
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_MOVE, a))).toBe("EBUSY");
    expect(a.move).toBe(-16);
    await child.exit(0);
    expect(p.pagemap(src, 1)[0]!.exclusive).toBe(true);
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_MOVE, { dst, src, len: PS, mode: 0 }))).toBe("EBUSY");
    await p.mainThread.write(src, fill(6, 1));
    await p.ioctl(uffd, UFFDIO_MOVE, { dst, src, len: PS, mode: 0 });
    k.checkInvariants();
  });

  it("a dst uffd-wp marker counts as populated: EEXIST (host probe)", async () => {
    const { k, p, uffd, src, dst } = await moveSetup(UFFD_FEATURE_WP_UNPOPULATED);
    await p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: dst, len: PS }, mode: UFFDIO_WRITEPROTECT_MODE_WP });
    await p.mainThread.write(src, fill(5, 1));
    const a = { dst, src, len: PS, mode: 0, move: 0 };
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_MOVE, a))).toBe("EEXIST");
    expect(a.move).toBe(-17);
    k.checkInvariants();
  });

  it("a src marker is EFAULT; a MISSING-only dst through this ctx works, another vma kind is EINVAL (linux-rules §2.10)", async () => {
    const { k, p, uffd, src, dst } = await moveSetup(UFFD_FEATURE_WP_UNPOPULATED);
    await register(p, uffd, src, PS, UFFDIO_REGISTER_MODE_MISSING);
    await p.ioctl(uffd, UFFDIO_POISON, { range: { start: src, len: PS }, mode: 0 });
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_MOVE, { dst, src, len: PS, mode: 0 }))).toBe("EFAULT");
    const ro = await p.mmap(0, PS, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS);
    const a = { dst, src: ro, len: PS, mode: 0, move: 0 };
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_MOVE, a))).toBe("EINVAL");
    expect(a.move).toBe(-22);
    const { addr: shm } = await mapArea(p, "shmem", 1);
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_MOVE, { dst, src: shm, len: PS, mode: 0 }))).toBe("EINVAL");
    const unreg = await p.mmap(0, PS, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_MOVE, { dst: unreg, src: dst, len: PS, mode: 0 }))).toBe("EINVAL");
    k.checkInvariants();
  });

  it("through another context of the same mm: EINVAL (linux-rules §8.6); DONTWAKE leaves the reader blocked", async () => {
    const { k, p, uffd, src, dst } = await moveSetup();
    const other = await p.userfaultfd(O_NONBLOCK);
    await p.ioctl(other, UFFDIO_API, { api: UFFD_API, features: 0 });
    await p.mainThread.write(src, fill(1, 2 * PS));
    const a = { dst, src, len: PS, mode: 0, move: 0 };
    expect(await errnoOf(p.ioctl(other, UFFDIO_MOVE, a))).toBe("EINVAL");
    expect(a.move).toBe(-22);
    const r = p.mainThread.read(dst, 1);
    await k.idle();
    await p.ioctl(uffd, UFFDIO_MOVE, { dst, src, len: PS, mode: UFFDIO_MOVE_MODE_DONTWAKE });
    expect(await isBlocked(k, r)).toBe(true);
    await p.close(uffd);
    expect(await r).toEqual(new Uint8Array([1]));
    k.checkInvariants();
  });

  it("an exclusive swap pte moves as is; one made non-exclusive by fork is EBUSY (linux-rules §2.10)", async () => {
    const k = new Kernel({ swapPages: 16 });
    const p = k.spawn();
    const uffd = await p.userfaultfd(O_NONBLOCK);
    await p.ioctl(uffd, UFFDIO_API, { api: UFFD_API, features: 0 });
    const src = await p.mmap(0, 2 * PS, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    const dst = await p.mmap(0, 2 * PS, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    await register(p, uffd, dst, 2 * PS, UFFDIO_REGISTER_MODE_MISSING);
    await p.mainThread.write(src, fill(7, 2 * PS));
    await p.madvise(src, 2 * PS, MADV_PAGEOUT);
    expect(p.pagemap(src, 2).map((e) => [e.swapped, e.exclusive])).toEqual([
      [true, false],
      [true, false],
    ]);
    await p.ioctl(uffd, UFFDIO_MOVE, { dst, src, len: PS, mode: 0 });
    expect(p.pagemap(dst, 1)[0]).toMatchObject({ swapped: true });
    expect(await p.mainThread.read(dst, 1)).toEqual(new Uint8Array([7]));
    await p.fork();
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_MOVE, { dst: dst + PS, src: src + PS, len: PS, mode: 0 }))).toBe("EBUSY");
    k.checkInvariants();
  });
});
