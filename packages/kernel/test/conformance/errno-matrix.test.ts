/**
 * docs/linux-rules.md §2.11 "Quick errno matrix": one test per errno cause that applies to anon or
 * shmem memory, each named after the rule and citing the section that states it. Every test
 * asserts the exact errno, the exact result field (written or left alone, §2.0), and that the
 * machine's invariants hold afterwards.
 *
 * Not covered (cannot be produced through the public API):
 * - hugetlb misalignment / ZEROPAGE on hugetlb / MOVE of a THP (no hugetlbfs or THP);
 * - EIO from CONTINUE on a HWPoison page-cache page (no memory-failure injection);
 * - EINTR from a fatal signal in the middle of a multi-page ioctl (ioctls do not yield mid-loop);
 * - EFAULT from a bad struct pointer (the struct is a JS object).
 */
import { describe, expect, it } from "vitest";
import type { Kernel, Process } from "@uffd/kernel";
import {
  ERRNO,
  MADV_PAGEOUT,
  MADV_REMOVE,
  MAP_SHARED,
  MFD_ALLOW_SEALING,
  O_NONBLOCK,
  POLLERR,
  POLLIN,
  PROT_READ,
  UFFD_API,
  UFFD_FEATURE_EVENT_FORK,
  UFFD_FEATURE_EVENT_REMOVE,
  UFFD_FEATURE_PAGEFAULT_FLAG_WP,
  UFFD_FEATURE_WP_UNPOPULATED,
  UFFD_USER_MODE_ONLY,
  UFFDIO_API,
  UFFDIO_CONTINUE,
  UFFDIO_COPY,
  UFFDIO_COPY_MODE_WP,
  UFFDIO_MOVE,
  UFFDIO_POISON,
  UFFDIO_REGISTER,
  UFFDIO_UNREGISTER,
  UFFDIO_WAKE,
  UFFDIO_WRITEPROTECT,
  UFFDIO_WRITEPROTECT_MODE_DONTWAKE,
  UFFDIO_WRITEPROTECT_MODE_WP,
  UFFDIO_ZEROPAGE,
  type UffdioApi,
  type UffdioContinue,
  type UffdioCopy,
  type UffdioMove,
  type UffdioPoison,
  type UffdioRegister,
  type UffdioZeropage,
  MAP_NORESERVE,
} from "@uffd/kernel/uapi";
import {
  ANON_PRIVATE,
  bytes,
  errnoOf,
  isBlocked,
  machine,
  memfdMap,
  modeOf,
  PAGE,
  pm,
  readMsgs,
  register,
  RW,
  settle,
  signalOf,
  snapshot,
  track,
  uffdOpen,
  unregister,
  wpRange,
} from "./harness.ts";

const MISSING = modeOf(true, false, false);
const WP = modeOf(false, true, false);
const MINOR = modeOf(false, false, true);
const WPF = UFFD_FEATURE_PAGEFAULT_FLAG_WP;
/** x86-64 TASK_SIZE (1 << 47) - PAGE. */
const TASK_SIZE = 0x7ffffffff000;
/** include/uapi/linux/fcntl.h: F_ADD_SEALS, F_SEAL_WRITE. */
const F_ADD_SEALS = 1033;
const F_SEAL_WRITE = 0x0008;

interface Anon {
  k: Kernel;
  p: Process;
  uffd: number;
  a: number;
}

/** A registered private anonymous range of `pages` pages. */
async function anon(pages = 4, mode = MISSING, features = WPF): Promise<Anon> {
  const { k, p } = machine();
  const uffd = await uffdOpen(p, features);
  const a = await p.mmap(0, pages * PAGE, RW, ANON_PRIVATE);
  await register(p, uffd, a, pages * PAGE, mode);
  return { k, p, uffd, a };
}

const copy = (dst: number, src: number | Uint8Array, len = PAGE, mode = 0): UffdioCopy => ({ dst, src, len, mode, copy: 999 });
const zeropage = (start: number, len = PAGE, mode = 0): UffdioZeropage => ({ range: { start, len }, mode, zeropage: 999 });
const poison = (start: number, len = PAGE, mode = 0): UffdioPoison => ({ range: { start, len }, mode, updated: 999 });
const cont = (start: number, len = PAGE, mode = 0): UffdioContinue => ({ range: { start, len }, mode, mapped: 999 });
const move = (dst: number, src: number, len = PAGE, mode = 0): UffdioMove => ({ dst, src, len, mode, move: 999 });

/** An ioctl that must fail with `code` and change nothing that pagemap/smaps show. */
async function rejects(p: Process, fd: number, req: number, arg: object, code: string, addr: number, pages = 4): Promise<void> {
  const before = snapshot(p, addr, pages);
  expect(await errnoOf(p.ioctl(fd, req, arg))).toBe(code);
  expect(snapshot(p, addr, pages), "a rejected call changes nothing").toBe(before);
}

describe("linux-rules §2.11 errno matrix: EINVAL", () => {
  it("EINVAL: every ioctl but UFFDIO_API, and read(), before UFFDIO_API; poll says POLLERR (linux-rules §1.1)", async () => {
    const { k, p } = machine();
    const fd = await p.userfaultfd(O_NONBLOCK);
    const a = await p.mmap(0, PAGE, RW, ANON_PRIVATE);
    const reg: UffdioRegister = { range: { start: a, len: PAGE }, mode: MISSING };
    expect(await errnoOf(p.ioctl(fd, UFFDIO_REGISTER, reg))).toBe("EINVAL");
    expect(reg.ioctls).toBeUndefined();
    const c = copy(a, bytes(PAGE, 1));
    expect(await errnoOf(p.ioctl(fd, UFFDIO_COPY, c))).toBe("EINVAL");
    expect(c.copy, "dispatch rejects before the result protocol").toBe(999);
    expect(await errnoOf(p.read(fd, 32))).toBe("EINVAL");
    const fds = [{ fd, events: POLLIN, revents: 0 }];
    expect(await p.poll(fds, 0)).toBe(1);
    expect(fds[0]!.revents).toBe(POLLERR);
    k.checkInvariants();
  });

  it("EINVAL: UFFDIO_API with api != 0xAA writes the struct back zeroed (linux-rules §2.1 #2)", async () => {
    const { k, p } = machine();
    const fd = await p.userfaultfd(O_NONBLOCK);
    const api: UffdioApi = { api: 0xab, features: 0 };
    expect(await errnoOf(p.ioctl(fd, UFFDIO_API, api))).toBe("EINVAL");
    expect(api).toEqual({ api: 0, features: 0, ioctls: 0n });
    k.checkInvariants();
  });

  it("EINVAL: UFFDIO_API with a feature 6.18 lacks (bit 17, MINOR_ANON of later trees) (linux-rules §2.1 #5, linux-rules §9)", async () => {
    const { k, p } = machine();
    const fd = await p.userfaultfd(O_NONBLOCK);
    const api: UffdioApi = { api: UFFD_API, features: 1 << 17 };
    expect(await errnoOf(p.ioctl(fd, UFFDIO_API, api))).toBe("EINVAL");
    expect(api).toEqual({ api: 0, features: 0, ioctls: 0n });
    expect(await errnoOf(p.ioctl(fd, UFFDIO_API, { api: UFFD_API, features: 0 })), "the failure left it uninitialised").toBe("OK");
    k.checkInvariants();
  });

  it("EINVAL: a second UFFDIO_API after a successful one (linux-rules §2.1 #7)", async () => {
    const { k, p } = machine();
    const fd = await uffdOpen(p, 0);
    const api: UffdioApi = { api: UFFD_API, features: 0 };
    expect(await errnoOf(p.ioctl(fd, UFFDIO_API, api))).toBe("EINVAL");
    expect(api).toEqual({ api: 0, features: 0, ioctls: 0n });
    k.checkInvariants();
  });

  it("EINVAL: an unknown ioctl request on a userfaultfd (linux-rules §2.0 dispatch)", async () => {
    const { k, p } = machine();
    const fd = await uffdOpen(p, 0);
    expect(await errnoOf(p.ioctl(fd, 0xc018aa3e, { start: 0, len: 0 }))).toBe("EINVAL");
    k.checkInvariants();
  });

  it("EINVAL: read() with a buffer shorter than one uffd_msg (linux-rules §1.7)", async () => {
    const { k, p } = machine();
    const fd = await uffdOpen(p, 0);
    expect(await errnoOf(p.read(fd, 31))).toBe("EINVAL");
    k.checkInvariants();
  });

  it("EINVAL: REGISTER with mode 0 (linux-rules §2.2 #2)", async () => {
    const { k, p } = machine();
    const uffd = await uffdOpen(p, WPF);
    const a = await p.mmap(0, PAGE, RW, ANON_PRIVATE);
    await rejects(p, uffd, UFFDIO_REGISTER, { range: { start: a, len: PAGE }, mode: 0 }, "EINVAL", a, 1);
    k.checkInvariants();
  });

  it("EINVAL: REGISTER with a mode bit beyond MISSING|WP|MINOR (linux-rules §2.2 #3)", async () => {
    const { k, p } = machine();
    const uffd = await uffdOpen(p, WPF);
    const a = await p.mmap(0, PAGE, RW, ANON_PRIVATE);
    const reg: UffdioRegister = { range: { start: a, len: PAGE }, mode: 8 | MISSING, ioctls: 5n };
    await rejects(p, uffd, UFFDIO_REGISTER, reg, "EINVAL", a, 1);
    expect(reg.ioctls).toBe(5n);
    k.checkInvariants();
  });

  it("EINVAL: validate_range: unaligned start, unaligned len, len 0, start >= TASK_SIZE, len past TASK_SIZE (linux-rules §2.0)", async () => {
    const { k, p, uffd, a } = await anon();
    const bad: Array<[number, number]> = [
      [a + 1, PAGE],
      [a, PAGE + 1],
      [a, 0],
      [TASK_SIZE + PAGE, PAGE],
      [a, TASK_SIZE - a + PAGE],
    ];
    for (const [start, len] of bad) {
      await rejects(p, uffd, UFFDIO_REGISTER, { range: { start, len }, mode: MISSING }, "EINVAL", a);
      await rejects(p, uffd, UFFDIO_UNREGISTER, { start, len }, "EINVAL", a);
      await rejects(p, uffd, UFFDIO_WAKE, { start, len }, "EINVAL", a);
      const c = copy(start, bytes(PAGE, 1), len);
      await rejects(p, uffd, UFFDIO_COPY, c, "EINVAL", a);
      expect(c.copy, "validate_range failures leave the field alone").toBe(999);
      const z = zeropage(start, len);
      await rejects(p, uffd, UFFDIO_ZEROPAGE, z, "EINVAL", a);
      expect(z.zeropage).toBe(999);
      await rejects(p, uffd, UFFDIO_WRITEPROTECT, { range: { start, len }, mode: 0 }, "EINVAL", a);
    }
    k.checkInvariants();
  });

  // 6.18.y validates ranges without mmap_min_addr (fs/userfaultfd.c:validate_unaligned_range()
  // after upstream 161ce69c2c89, backported to stable; the 6.18.44 host answers exactly this for
  // starts 0, 0x1000, 0x2000 and 0xf000 with vm.mmap_min_addr = 4096): a range below it is
  // validated like any other and fails where an unmapped range fails.
  for (const [start, mmapMinAddr] of [[0, 4096], [0, 0x10000], [0x1000, 0x10000], [0xf000, 0x10000]] as const) {
    it(`below mmap_min_addr (start ${start.toString(16)}, mmap_min_addr ${mmapMinAddr.toString(16)}): ENOENT in the field for COPY/ZEROPAGE/CONTINUE/POISON/MOVE, WRITEPROTECT ENOENT, WAKE 0, REGISTER/UNREGISTER EINVAL`, async () => {
      const { k, p } = machine({ mmapMinAddr });
      const uffd = await uffdOpen(p, WPF);
      const a = await p.mmap(0, PAGE, RW, ANON_PRIVATE);
      await p.mainThread.write(a, bytes(PAGE, 5));
      const range = { start, len: PAGE };
      // REGISTER/UNREGISTER: no vma in the range (userfaultfd_register(): vma_find() is NULL -> -EINVAL).
      await rejects(p, uffd, UFFDIO_REGISTER, { range, mode: MISSING }, "EINVAL", a, 1);
      await rejects(p, uffd, UFFDIO_UNREGISTER, range, "EINVAL", a, 1);
      expect(await p.ioctl(uffd, UFFDIO_WAKE, range), "WAKE checks no vma").toBe(0);
      // mfill_atomic(): find_vma_and_prepare_range() finds no dst vma -> -ENOENT, written to the field.
      const c = copy(start, bytes(PAGE, 1));
      await rejects(p, uffd, UFFDIO_COPY, c, "ENOENT", a, 1);
      expect(c.copy).toBe(-ERRNO.ENOENT);
      const z = zeropage(start);
      await rejects(p, uffd, UFFDIO_ZEROPAGE, z, "ENOENT", a, 1);
      expect(z.zeropage).toBe(-ERRNO.ENOENT);
      const co = cont(start);
      await rejects(p, uffd, UFFDIO_CONTINUE, co, "ENOENT", a, 1);
      expect(co.mapped).toBe(-ERRNO.ENOENT);
      const po = poison(start);
      await rejects(p, uffd, UFFDIO_POISON, po, "ENOENT", a, 1);
      expect(po.updated).toBe(-ERRNO.ENOENT);
      // move_pages(): either side below mmap_min_addr has no vma -> -ENOENT.
      const mvDst = move(start, a);
      await rejects(p, uffd, UFFDIO_MOVE, mvDst, "ENOENT", a, 1);
      expect(mvDst.move).toBe(-ERRNO.ENOENT);
      const mvSrc = move(a, start);
      await rejects(p, uffd, UFFDIO_MOVE, mvSrc, "ENOENT", a, 1);
      expect(mvSrc.move).toBe(-ERRNO.ENOENT);
      // mwriteprotect_range(): no vma -> -ENOENT, in both directions.
      await rejects(p, uffd, UFFDIO_WRITEPROTECT, { range, mode: UFFDIO_WRITEPROTECT_MODE_WP }, "ENOENT", a, 1);
      await rejects(p, uffd, UFFDIO_WRITEPROTECT, { range, mode: 0 }, "ENOENT", a, 1);
      k.checkInvariants();
    });
  }

  it("EINVAL: bad mode bits on COPY / ZEROPAGE / POISON / CONTINUE / MOVE / WRITEPROTECT, field untouched (linux-rules §2.5-§2.10)", async () => {
    const { k, p, uffd, a } = await anon(4, modeOf(true, true, false));
    const c = copy(a, bytes(PAGE, 1), PAGE, 4);
    await rejects(p, uffd, UFFDIO_COPY, c, "EINVAL", a);
    expect(c.copy).toBe(999);
    const z = zeropage(a, PAGE, 2);
    await rejects(p, uffd, UFFDIO_ZEROPAGE, z, "EINVAL", a);
    expect(z.zeropage).toBe(999);
    const po = poison(a, PAGE, 2);
    await rejects(p, uffd, UFFDIO_POISON, po, "EINVAL", a);
    expect(po.updated).toBe(999);
    const co = cont(a, PAGE, 4);
    await rejects(p, uffd, UFFDIO_CONTINUE, co, "EINVAL", a);
    expect(co.mapped).toBe(999);
    const mv = move(a, a + PAGE, PAGE, 4);
    await rejects(p, uffd, UFFDIO_MOVE, mv, "EINVAL", a);
    expect(mv.move).toBe(999);
    await rejects(p, uffd, UFFDIO_WRITEPROTECT, { range: { start: a, len: PAGE }, mode: 4 }, "EINVAL", a);
    await rejects(p, uffd, UFFDIO_WRITEPROTECT, { range: { start: a, len: PAGE }, mode: UFFDIO_WRITEPROTECT_MODE_WP | UFFDIO_WRITEPROTECT_MODE_DONTWAKE }, "EINVAL", a);
    k.checkInvariants();
  });

  it("EINVAL: REGISTER MINOR on private anon (linux-rules §2.2 #9a vma_can_userfault)", async () => {
    const { k, p } = machine();
    const uffd = await uffdOpen(p, 0);
    const a = await p.mmap(0, PAGE, RW, ANON_PRIVATE);
    await rejects(p, uffd, UFFDIO_REGISTER, { range: { start: a, len: PAGE }, mode: MINOR }, "EINVAL", a, 1);
    await rejects(p, uffd, UFFDIO_REGISTER, { range: { start: a, len: PAGE }, mode: MINOR | MISSING }, "EINVAL", a, 1);
    k.checkInvariants();
  });

  it("EINVAL: REGISTER and UNREGISTER of a range entirely in a hole (linux-rules §2.2 #7, linux-rules §2.3 #4)", async () => {
    const { k, p } = machine();
    const uffd = await uffdOpen(p, 0);
    const a = await p.mmap(0, 2 * PAGE, RW, ANON_PRIVATE);
    await p.munmap(a, PAGE);
    await rejects(p, uffd, UFFDIO_REGISTER, { range: { start: a, len: PAGE }, mode: MISSING }, "EINVAL", a, 2);
    await rejects(p, uffd, UFFDIO_UNREGISTER, { start: a, len: PAGE }, "EINVAL", a, 2);
    k.checkInvariants();
  });

  it("EINVAL: UNREGISTER through a ctx that does not own the vma (linux-rules §2.3 #6, not EBUSY)", async () => {
    const { k, p, a } = await anon();
    const other = await uffdOpen(p, 0);
    await rejects(p, other, UFFDIO_UNREGISTER, { start: a, len: PAGE }, "EINVAL", a);
    k.checkInvariants();
  });

  it("EINVAL: COPY with MODE_WP into a vma registered without WP, field -EINVAL (linux-rules §2.5)", async () => {
    const { k, p, uffd, a } = await anon(4, MISSING);
    const c = copy(a, bytes(PAGE, 1), PAGE, UFFDIO_COPY_MODE_WP);
    await rejects(p, uffd, UFFDIO_COPY, c, "EINVAL", a);
    expect(c.copy).toBe(-ERRNO.EINVAL);
    k.checkInvariants();
  });

  it("EINVAL: CONTINUE on anonymous memory, field -EINVAL (linux-rules §2.8)", async () => {
    const { k, p, uffd, a } = await anon(4, MISSING);
    const co = cont(a);
    await rejects(p, uffd, UFFDIO_CONTINUE, co, "EINVAL", a);
    expect(co.mapped).toBe(-ERRNO.EINVAL);
    k.checkInvariants();
  });

  it("EINVAL: CONTINUE beyond i_size, field -EINVAL (linux-rules §2.8, linux-rules §8.2)", async () => {
    const { k, p } = machine();
    const uffd = await uffdOpen(p, 0);
    const { addr } = await memfdMap(p, 1, MAP_SHARED, 2);
    await register(p, uffd, addr, 2 * PAGE, MINOR);
    const co = cont(addr + PAGE);
    await rejects(p, uffd, UFFDIO_CONTINUE, co, "EINVAL", addr, 2);
    expect(co.mapped).toBe(-ERRNO.EINVAL);
    k.checkInvariants();
  });

  it("EINVAL: UFFDIO_MOVE through a uffd of another process (cross-mm), field untouched (linux-rules §2.10 #3)", async () => {
    const { k, p, uffd, a } = await anon();
    const other = k.spawn({ name: "other" });
    const theirs = await p.sendFd(uffd, other);
    const mv = move(a, a + PAGE);
    expect(await errnoOf(other.ioctl(theirs, UFFDIO_MOVE, mv))).toBe("EINVAL");
    expect(mv.move).toBe(999);
    k.checkInvariants();
  });

  it("EINVAL: UFFDIO_MOVE vma incompatibilities: shmem src, prot mismatch, dst not registered with this ctx, src range past its vma; field -EINVAL (linux-rules §2.10)", async () => {
    const { k, p, uffd, a } = await anon(4, MISSING);
    const src = await p.mmap(0, PAGE, RW, ANON_PRIVATE);
    await p.mainThread.write(src, bytes(PAGE, 1));
    const { addr: shm } = await memfdMap(p, 1);
    await p.mainThread.write(shm, bytes(1, 1));
    const ro = await p.mmap(0, PAGE, PROT_READ, ANON_PRIVATE);
    await p.mainThread.read(ro, 1);
    const unreg = await p.mmap(0, PAGE, RW, ANON_PRIVATE);
    const cases: Array<[string, UffdioMove]> = [
      ["shmem src", move(a, shm)],
      ["PROT_READ src", move(a, ro)],
      ["dst not registered", move(unreg, src)],
      ["src + len past the src vma", move(a, src, 2 * PAGE)],
    ];
    for (const [what, mv] of cases) {
      const before = snapshot(p, a, 4);
      expect(await errnoOf(p.ioctl(uffd, UFFDIO_MOVE, mv)), what).toBe("EINVAL");
      expect(mv.move, what).toBe(-ERRNO.EINVAL);
      expect(snapshot(p, a, 4)).toBe(before);
    }
    k.checkInvariants();
  });
});

describe("linux-rules §2.11 errno matrix: ENOENT", () => {
  it("ENOENT: COPY / ZEROPAGE / POISON dst outside one registered vma: unregistered page, range crossing the vma end, hole; field -ENOENT (linux-rules §2.5)", async () => {
    const { k, p, uffd, a } = await anon(2, MISSING);
    const plain = await p.mmap(0, PAGE, RW, ANON_PRIVATE);
    for (const [dst, len] of [
      [plain, PAGE],
      [a + PAGE, 2 * PAGE],
    ] as const) {
      const c = copy(dst, bytes(len, 1), len);
      await rejects(p, uffd, UFFDIO_COPY, c, "ENOENT", a, 2);
      expect(c.copy).toBe(-ERRNO.ENOENT);
      const z = zeropage(dst, len);
      await rejects(p, uffd, UFFDIO_ZEROPAGE, z, "ENOENT", a, 2);
      expect(z.zeropage).toBe(-ERRNO.ENOENT);
      const po = poison(dst, len);
      await rejects(p, uffd, UFFDIO_POISON, po, "ENOENT", a, 2);
      expect(po.updated).toBe(-ERRNO.ENOENT);
    }
    await p.munmap(plain, PAGE);
    const hole = copy(plain, bytes(PAGE, 1));
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_COPY, hole))).toBe("ENOENT");
    expect(hole.copy).toBe(-ERRNO.ENOENT);
    k.checkInvariants();
  });

  it("ENOENT: CONTINUE after UNREGISTER (no ctx on the vma), field -ENOENT (linux-rules §2.8)", async () => {
    const { k, p } = machine();
    const uffd = await uffdOpen(p, 0);
    const { fd, addr } = await memfdMap(p, 1);
    await p.pwrite(fd, bytes(PAGE, 1), 0);
    await register(p, uffd, addr, PAGE, MINOR);
    await unregister(p, uffd, addr, PAGE);
    const co = cont(addr);
    await rejects(p, uffd, UFFDIO_CONTINUE, co, "ENOENT", addr, 1);
    expect(co.mapped).toBe(-ERRNO.ENOENT);
    k.checkInvariants();
  });

  it("ENOENT: WRITEPROTECT on a vma without WP mode, or an unregistered one (linux-rules §2.7 #8)", async () => {
    const { k, p, uffd, a } = await anon(2, MISSING);
    await rejects(p, uffd, UFFDIO_WRITEPROTECT, { range: { start: a, len: PAGE }, mode: UFFDIO_WRITEPROTECT_MODE_WP }, "ENOENT", a, 2);
    const plain = await p.mmap(0, PAGE, RW, ANON_PRIVATE);
    await rejects(p, uffd, UFFDIO_WRITEPROTECT, { range: { start: plain, len: PAGE }, mode: 0 }, "ENOENT", plain, 1);
    k.checkInvariants();
  });

  it("ENOENT: MOVE from a src hole without ALLOW_SRC_HOLES, and with no src vma; field -ENOENT (linux-rules §2.10)", async () => {
    const { k, p, uffd, a } = await anon(2, MISSING);
    const src = await p.mmap(0, 2 * PAGE, RW, ANON_PRIVATE);
    const mv = move(a, src);
    await rejects(p, uffd, UFFDIO_MOVE, mv, "ENOENT", a, 2);
    expect(mv.move).toBe(-ERRNO.ENOENT);
    await p.munmap(src, 2 * PAGE);
    const gone = move(a, src);
    await rejects(p, uffd, UFFDIO_MOVE, gone, "ENOENT", a, 2);
    expect(gone.move).toBe(-ERRNO.ENOENT);
    k.checkInvariants();
  });
});

describe("linux-rules §2.11 errno matrix: EEXIST", () => {
  it("EEXIST: COPY onto a present pte, field -EEXIST (linux-rules §2.5)", async () => {
    const { k, p, uffd, a } = await anon(2, MISSING);
    await p.ioctl(uffd, UFFDIO_COPY, copy(a, bytes(PAGE, 1)));
    const c = copy(a, bytes(PAGE, 2));
    await rejects(p, uffd, UFFDIO_COPY, c, "EEXIST", a, 2);
    expect(c.copy).toBe(-ERRNO.EEXIST);
    expect(await p.mainThread.read(a, 1)).toEqual(bytes(1, 1));
    k.checkInvariants();
  });

  it("EEXIST: ZEROPAGE and POISON over a uffd-wp marker (strictly none required) (linux-rules §2.6, linux-rules §2.9)", async () => {
    const { k, p, uffd, a } = await anon(2, modeOf(true, true, false), WPF | UFFD_FEATURE_WP_UNPOPULATED);
    await wpRange(p, uffd, a, PAGE, true);
    const z = zeropage(a);
    await rejects(p, uffd, UFFDIO_ZEROPAGE, z, "EEXIST", a, 2);
    expect(z.zeropage).toBe(-ERRNO.EEXIST);
    const po = poison(a);
    await rejects(p, uffd, UFFDIO_POISON, po, "EEXIST", a, 2);
    expect(po.updated).toBe(-ERRNO.EEXIST);
    k.checkInvariants();
  });

  it("EEXIST: shared shmem COPY where the pte is none but the page cache is populated (linux-rules §2.5)", async () => {
    const { k, p } = machine();
    const uffd = await uffdOpen(p, 0);
    const { fd, addr } = await memfdMap(p, 1);
    await p.pwrite(fd, bytes(PAGE, 9), 0);
    await register(p, uffd, addr, PAGE, MISSING);
    expect(pm(p, addr).present).toBe(false);
    const c = copy(addr, bytes(PAGE, 1));
    await rejects(p, uffd, UFFDIO_COPY, c, "EEXIST", addr, 1);
    expect(c.copy).toBe(-ERRNO.EEXIST);
    expect(await p.pread(fd, 1, 0)).toEqual(bytes(1, 9));
    k.checkInvariants();
  });

  it("EEXIST: MOVE onto a populated dst pte, field -EEXIST (linux-rules §2.10)", async () => {
    const { k, p, uffd, a } = await anon(2, MISSING);
    await p.ioctl(uffd, UFFDIO_COPY, copy(a, bytes(PAGE, 1)));
    const src = await p.mmap(0, PAGE, RW, ANON_PRIVATE);
    await p.mainThread.write(src, bytes(PAGE, 2));
    const mv = move(a, src);
    await rejects(p, uffd, UFFDIO_MOVE, mv, "EEXIST", a, 2);
    expect(mv.move).toBe(-ERRNO.EEXIST);
    k.checkInvariants();
  });
});

describe("linux-rules §2.11 errno matrix: EAGAIN", () => {
  it("EAGAIN: mmap_changing while a REMOVE event is unread: mfill ioctls and MOVE set the field to -EAGAIN, WRITEPROTECT fails; REGISTER/UNREGISTER/WAKE are unaffected (linux-rules §2.0, linux-rules §4)", async () => {
    const { k, p } = machine();
    const uffd = await uffdOpen(p, UFFD_FEATURE_EVENT_REMOVE | WPF);
    const { addr } = await memfdMap(p, 4);
    await register(p, uffd, addr, 4 * PAGE, modeOf(true, true, true));
    const madv = track(p.madvise(addr, PAGE, MADV_REMOVE));
    expect(await isBlocked(k, madv)).toBe(true);
    const c = copy(addr + PAGE, bytes(PAGE, 1));
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_COPY, c))).toBe("EAGAIN");
    expect(c.copy).toBe(-ERRNO.EAGAIN);
    const z = zeropage(addr + PAGE);
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_ZEROPAGE, z))).toBe("EAGAIN");
    expect(z.zeropage).toBe(-ERRNO.EAGAIN);
    const po = poison(addr + PAGE);
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_POISON, po))).toBe("EAGAIN");
    expect(po.updated).toBe(-ERRNO.EAGAIN);
    const co = cont(addr + PAGE);
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_CONTINUE, co))).toBe("EAGAIN");
    expect(co.mapped).toBe(-ERRNO.EAGAIN);
    const mv = move(addr + PAGE, addr + 2 * PAGE);
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_MOVE, mv))).toBe("EAGAIN");
    expect(mv.move).toBe(-ERRNO.EAGAIN);
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: addr, len: PAGE }, mode: UFFDIO_WRITEPROTECT_MODE_WP }))).toBe("EAGAIN");
    expect(pm(p, addr + PAGE).present).toBe(false);
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_WAKE, { start: addr, len: PAGE }))).toBe("OK");
    expect(await errnoOf(register(p, uffd, addr + 3 * PAGE, PAGE, MISSING))).toBe("OK");
    expect(await errnoOf(unregister(p, uffd, addr + 3 * PAGE, PAGE))).toBe("OK");
    await readMsgs(p, uffd);
    await settle(k, madv.promise, "madvise");
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_COPY, copy(addr + PAGE, bytes(PAGE, 1)))), "OK once the event was read").toBe("OK");
    k.checkInvariants();
  });

  it("EAGAIN: partial progress, COPY of 3 pages whose 2nd is mapped: field 4096 (linux-rules §2.0 result protocol)", async () => {
    const { k, p, uffd, a } = await anon(3, MISSING);
    await p.ioctl(uffd, UFFDIO_COPY, copy(a + PAGE, bytes(PAGE, 1)));
    const c = copy(a, bytes(3 * PAGE, 2), 3 * PAGE);
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_COPY, c))).toBe("EAGAIN");
    expect(c.copy).toBe(PAGE);
    expect(await p.mainThread.read(a, 1)).toEqual(bytes(1, 2));
    expect(await p.mainThread.read(a + PAGE, 1)).toEqual(bytes(1, 1));
    expect(pm(p, a + 2 * PAGE).present).toBe(false);
    k.checkInvariants();
  });
});

describe("linux-rules §2.11 errno matrix: EFAULT", () => {
  it("EFAULT: COPY whose src is not mapped, field -EFAULT; a src whose 2nd page is unmapped gives partial progress (linux-rules §2.5)", async () => {
    const { k, p, uffd, a } = await anon(2, MISSING);
    const src = await p.mmap(0, 2 * PAGE, RW, ANON_PRIVATE);
    await p.mainThread.write(src, bytes(PAGE, 4));
    await p.munmap(src + PAGE, PAGE);
    const c = copy(a, src + PAGE);
    await rejects(p, uffd, UFFDIO_COPY, c, "EFAULT", a, 2);
    expect(c.copy).toBe(-ERRNO.EFAULT);
    const c2 = copy(a, src, 2 * PAGE);
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_COPY, c2))).toBe("EAGAIN");
    expect(c2.copy).toBe(PAGE);
    k.checkInvariants();
  });

  it("EFAULT: shmem COPY / ZEROPAGE / POISON at an index beyond i_size, field -EFAULT (linux-rules §2.5, linux-rules §2.6, linux-rules §2.9)", async () => {
    const { k, p } = machine();
    const uffd = await uffdOpen(p, 0);
    const { addr } = await memfdMap(p, 1, MAP_SHARED, 2);
    await register(p, uffd, addr, 2 * PAGE, MISSING);
    const c = copy(addr + PAGE, bytes(PAGE, 1));
    await rejects(p, uffd, UFFDIO_COPY, c, "EFAULT", addr, 2);
    expect(c.copy).toBe(-ERRNO.EFAULT);
    const z = zeropage(addr + PAGE);
    await rejects(p, uffd, UFFDIO_ZEROPAGE, z, "EFAULT", addr, 2);
    expect(z.zeropage).toBe(-ERRNO.EFAULT);
    const po = poison(addr + PAGE);
    await rejects(p, uffd, UFFDIO_POISON, po, "EFAULT", addr, 2);
    expect(po.updated).toBe(-ERRNO.EFAULT);
    k.checkInvariants();
  });

  it("EFAULT: CONTINUE on a page-cache hole inside i_size, field -EFAULT (linux-rules §2.8)", async () => {
    const { k, p } = machine();
    const uffd = await uffdOpen(p, 0);
    const { addr } = await memfdMap(p, 2);
    await register(p, uffd, addr, 2 * PAGE, MINOR);
    const co = cont(addr);
    await rejects(p, uffd, UFFDIO_CONTINUE, co, "EFAULT", addr, 2);
    expect(co.mapped).toBe(-ERRNO.EFAULT);
    k.checkInvariants();
  });

  it("EFAULT: MOVE whose src pte is a marker (poison, uffd-wp), field -EFAULT (linux-rules §2.10)", async () => {
    const { k, p } = machine();
    const uffd = await uffdOpen(p, WPF | UFFD_FEATURE_WP_UNPOPULATED);
    const src = await p.mmap(0, 2 * PAGE, RW, ANON_PRIVATE);
    const dst = await p.mmap(0, 2 * PAGE, RW, ANON_PRIVATE);
    await register(p, uffd, src, 2 * PAGE, modeOf(true, true, false));
    await register(p, uffd, dst, 2 * PAGE, MISSING);
    await p.ioctl(uffd, UFFDIO_POISON, poison(src));
    await wpRange(p, uffd, src + PAGE, PAGE, true);
    for (const off of [0, PAGE]) {
      const mv = move(dst + off, src + off);
      await rejects(p, uffd, UFFDIO_MOVE, mv, "EFAULT", src, 2);
      expect(mv.move).toBe(-ERRNO.EFAULT);
    }
    k.checkInvariants();
  });
});

describe("linux-rules §2.11 errno matrix: EBUSY", () => {
  it("EBUSY: REGISTER over a vma registered with another ctx (linux-rules §2.2 #9d)", async () => {
    const { k, p, a } = await anon();
    const other = await uffdOpen(p, 0);
    await rejects(p, other, UFFDIO_REGISTER, { range: { start: a, len: PAGE }, mode: MISSING }, "EBUSY", a);
    k.checkInvariants();
  });

  it("EBUSY: MOVE of a page COW-shared with a child (not PageAnonExclusive), field -EBUSY (linux-rules §2.10, linux-rules §5.1)", async () => {
    const { k, p, uffd, a } = await anon(1, MISSING);
    const src = await p.mmap(0, PAGE, RW, ANON_PRIVATE);
    await p.mainThread.write(src, bytes(PAGE, 1));
    const child = await p.fork();
    const mv = move(a, src);
    await rejects(p, uffd, UFFDIO_MOVE, mv, "EBUSY", src, 1);
    expect(mv.move).toBe(-ERRNO.EBUSY);
    await child.exit(0);
    await p.waitpid(child.pid);
    k.checkInvariants();
  });

  it("EBUSY: MOVE of a long-term pinned page (folio_maybe_dma_pinned) (linux-rules §2.10, linux-rules §5.4)", async () => {
    const { k, p, uffd, a } = await anon(1, MISSING);
    const src = await p.mmap(0, PAGE, RW, ANON_PRIVATE);
    await p.mainThread.write(src, bytes(PAGE, 1));
    const pin = await p.ioUringRegisterBuffers(src, PAGE);
    const mv = move(a, src);
    await rejects(p, uffd, UFFDIO_MOVE, mv, "EBUSY", src, 1);
    expect(mv.move).toBe(-ERRNO.EBUSY);
    await pin.unregister();
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_MOVE, move(a, src))), "unpinned, it moves").toBe("OK");
    k.checkInvariants();
  });

  it("EBUSY: MOVE of a swap pte that lost its exclusive bit at fork (linux-rules §2.10, linux-rules §5.3)", async () => {
    const { k, p } = machine({ swapPages: 8 });
    const uffd = await uffdOpen(p, 0);
    const src = await p.mmap(0, PAGE, RW, ANON_PRIVATE);
    const dst = await p.mmap(0, PAGE, RW, ANON_PRIVATE);
    await register(p, uffd, dst, PAGE, MISSING);
    await p.mainThread.write(src, bytes(PAGE, 1));
    await p.madvise(src, PAGE, MADV_PAGEOUT);
    expect(pm(p, src).swapped).toBe(true);
    const child = await p.fork();
    expect(pm(child, src).swapped).toBe(true);
    const mv = move(dst, src);
    await rejects(p, uffd, UFFDIO_MOVE, mv, "EBUSY", src, 1);
    expect(mv.move).toBe(-ERRNO.EBUSY);
    await child.exit(0);
    await p.waitpid(child.pid);
    k.checkInvariants();
  });
});

describe("linux-rules §2.11 errno matrix: EPERM", () => {
  it("EPERM: userfaultfd() without UFFD_USER_MODE_ONLY and without CAP_SYS_PTRACE; the permission check comes before the flags check (linux-rules §1.1)", async () => {
    const { k } = machine();
    const u = k.spawn({ uid: 1000, capabilities: [] });
    expect(await errnoOf(u.userfaultfd(O_NONBLOCK))).toBe("EPERM");
    expect(await errnoOf(u.userfaultfd(0x40))).toBe("EPERM");
    expect(await errnoOf(u.userfaultfd(UFFD_USER_MODE_ONLY | 0x40))).toBe("EINVAL");
    expect(await errnoOf(u.userfaultfd(UFFD_USER_MODE_ONLY | O_NONBLOCK))).toBe("OK");
    const ptracer = k.spawn({ uid: 1000, capabilities: ["CAP_SYS_PTRACE"] });
    expect(await errnoOf(ptracer.userfaultfd(O_NONBLOCK))).toBe("OK");
    k.checkInvariants();
  });

  it("EPERM: UFFDIO_API with EVENT_FORK without CAP_SYS_PTRACE, struct zeroed (linux-rules §2.1 #3)", async () => {
    const { k } = machine();
    const u = k.spawn({ uid: 1000, capabilities: [] });
    const fd = await u.userfaultfd(UFFD_USER_MODE_ONLY);
    const api: UffdioApi = { api: UFFD_API, features: UFFD_FEATURE_EVENT_FORK };
    expect(await errnoOf(u.ioctl(fd, UFFDIO_API, api))).toBe("EPERM");
    expect(api).toEqual({ api: 0, features: 0, ioctls: 0n });
    k.checkInvariants();
  });

  it("EPERM: REGISTER on a vma without VM_MAYWRITE (read-only shared mapping of a write-sealed memfd) (linux-rules §2.2 #9b)", async () => {
    const { k, p } = machine();
    const uffd = await uffdOpen(p, 0);
    const fd = await p.memfdCreate("sealed", MFD_ALLOW_SEALING);
    await p.ftruncate(fd, PAGE);
    await p.fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE);
    const addr = await p.mmap(0, PAGE, PROT_READ, MAP_SHARED, fd, 0);
    const reg: UffdioRegister = { range: { start: addr, len: PAGE }, mode: MISSING };
    await rejects(p, uffd, UFFDIO_REGISTER, reg, "EPERM", addr, 1);
    expect(reg.ioctls).toBeUndefined();
    k.checkInvariants();
  });
});

describe("linux-rules §2.11 errno matrix: ESRCH and ENOMEM (the target mm is gone)", () => {
  async function orphaned(): Promise<{ k: Kernel; p: Process; fd: number; a: number; shm: number }> {
    const { k, p } = machine();
    const owner = await p.fork();
    const uffd = await uffdOpen(owner, WPF);
    const a = await owner.mmap(0, 2 * PAGE, RW, ANON_PRIVATE);
    await register(owner, uffd, a, 2 * PAGE, modeOf(true, true, false));
    const { fd: memfd, addr: shm } = await memfdMap(owner, 1);
    await owner.pwrite(memfd, bytes(PAGE, 1), 0);
    await register(owner, uffd, shm, PAGE, MINOR);
    const fd = await owner.sendFd(uffd, p);
    await owner.exit(0);
    await p.waitpid(owner.pid);
    return { k, p, fd, a, shm };
  }

  it("ESRCH: COPY / ZEROPAGE / POISON / CONTINUE / WRITEPROTECT after the target process exited, fields untouched (linux-rules §2.0)", async () => {
    const { k, p, fd, a, shm } = await orphaned();
    const c = copy(a, bytes(PAGE, 1));
    expect(await errnoOf(p.ioctl(fd, UFFDIO_COPY, c))).toBe("ESRCH");
    expect(c.copy).toBe(999);
    const z = zeropage(a);
    expect(await errnoOf(p.ioctl(fd, UFFDIO_ZEROPAGE, z))).toBe("ESRCH");
    expect(z.zeropage).toBe(999);
    const po = poison(a);
    expect(await errnoOf(p.ioctl(fd, UFFDIO_POISON, po))).toBe("ESRCH");
    expect(po.updated).toBe(999);
    const co = cont(shm);
    expect(await errnoOf(p.ioctl(fd, UFFDIO_CONTINUE, co))).toBe("ESRCH");
    expect(co.mapped).toBe(999);
    expect(await errnoOf(p.ioctl(fd, UFFDIO_WRITEPROTECT, { range: { start: a, len: PAGE }, mode: UFFDIO_WRITEPROTECT_MODE_WP }))).toBe("ESRCH");
    k.checkInvariants();
  });

  it("ENOMEM: REGISTER and UNREGISTER after the target process exited (linux-rules §2.2 #6, linux-rules §2.3 #3)", async () => {
    const { k, p, fd, a } = await orphaned();
    const reg: UffdioRegister = { range: { start: a, len: PAGE }, mode: MISSING };
    expect(await errnoOf(p.ioctl(fd, UFFDIO_REGISTER, reg))).toBe("ENOMEM");
    expect(reg.ioctls).toBeUndefined();
    expect(await errnoOf(p.ioctl(fd, UFFDIO_UNREGISTER, { start: a, len: PAGE }))).toBe("ENOMEM");
    expect(await errnoOf(p.ioctl(fd, UFFDIO_WAKE, { start: a, len: PAGE })), "WAKE needs no mm").toBe("OK");
    k.checkInvariants();
  });

  it("ENOMEM: COPY when no page can be allocated, field -ENOMEM (linux-rules §2.5 allocation failure)", async () => {
    const { k, p } = machine({ memoryPages: 64 });
    const uffd = await uffdOpen(p, 0);
    const dst = await p.mmap(0, PAGE, RW, ANON_PRIVATE);
    await register(p, uffd, dst, PAGE, MISSING);
    // More than memory: MAP_NORESERVE, or the overcommit heuristic refuses it (mm/util.c:__vm_enough_memory()).
    const hog = await p.mmap(0, 128 * PAGE, RW, ANON_PRIVATE | MAP_NORESERVE);
    for (let i = 0; i < 128; i++) {
      if ((await signalOf(p.mainThread.write(hog + i * PAGE, bytes(1, 1)))) !== "OK") break;
    }
    const c = copy(dst, bytes(PAGE, 1));
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_COPY, c))).toBe("ENOMEM");
    expect(c.copy).toBe(-ERRNO.ENOMEM);
    expect(pm(p, dst).present).toBe(false);
    await p.munmap(hog, 128 * PAGE);
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_COPY, copy(dst, bytes(PAGE, 1)))), "memory is back").toBe("OK");
    k.checkInvariants();
  });
});
