/**
 * docs/linux-rules.md §8 "Surprises and discrepancies": one test per item that applies to anon
 * or shmem memory, named after the item. Every item is host-verified on Linux 6.18.44 unless the
 * reference marks it otherwise; the expectations here are the host's, not the man page's.
 *
 * Items 20 and 23 (PAGEMAP_SCAN) use Process.openPagemap(), which the kernel package offers
 * beyond the public contract (test/contract/kernel-api.d.ts, which allows additions): open("/proc/self/pagemap").
 */
import { describe, expect, it } from "vitest";
import {
  ERRNO,
  MADV_DONTNEED,
  MADV_GUARD_INSTALL,
  MADV_PAGEOUT,
  MADV_REMOVE,
  MAP_SHARED,
  MREMAP_FIXED,
  MREMAP_MAYMOVE,
  O_NONBLOCK,
  PAGE_IS_PRESENT,
  PAGE_IS_WPALLOWED,
  PAGE_IS_WRITTEN,
  PAGEMAP_SCAN,
  PM_SCAN_CHECK_WPASYNC,
  PM_SCAN_WP_MATCHING,
  PROT_NONE,
  UFFD_API,
  UFFD_EVENT_PAGEFAULT,
  UFFD_EVENT_REMAP,
  UFFD_EVENT_UNMAP,
  UFFD_FEATURE_EVENT_FORK,
  UFFD_FEATURE_EVENT_REMAP,
  UFFD_FEATURE_EVENT_UNMAP,
  UFFD_FEATURE_PAGEFAULT_FLAG_WP,
  UFFD_FEATURE_SIGBUS,
  UFFD_FEATURE_WP_ASYNC,
  UFFD_FEATURE_WP_UNPOPULATED,
  UFFD_PAGEFAULT_FLAG_WP,
  UFFD_PAGEFAULT_FLAG_WRITE,
  UFFD_USER_MODE_ONLY,
  UFFDIO_API,
  UFFDIO_CONTINUE,
  UFFDIO_COPY,
  UFFDIO_MOVE,
  UFFDIO_POISON,
  UFFDIO_REGISTER,
  UFFDIO_UNREGISTER,
  UFFDIO_WRITEPROTECT,
  UFFDIO_WRITEPROTECT_MODE_WP,
  UFFDIO_ZEROPAGE,
  type UffdioApi,
  type UffdioContinue,
  type UffdioCopy,
  type UffdioMove,
  type UffdioPoison,
  type UffdioZeropage,
  type PageRegion,
  type PmScanArg,
} from "@uffd/kernel/uapi";
import type { Process } from "@uffd/kernel";
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
  pmBits,
  readMsgs,
  register,
  RW,
  settle,
  signalOf,
  track,
  uffdOpen,
  uffdTestCtxClear,
  uffdTestCtxInit,
  unregister,
  vmaAt,
  wake,
  wpRange,
} from "./harness.ts";

const MISSING = modeOf(true, false, false);
const WP = modeOf(false, true, false);
const MINOR = modeOf(false, false, true);
const WPF = UFFD_FEATURE_PAGEFAULT_FLAG_WP;

/** struct pm_scan_arg with a fresh output vector of `vecLen` regions (or none). */
function pmScanArg(start: number, end: number, flags: number, vec: PageRegion[] | null, vecLen: number, categoryMask: number, returnMask: number): PmScanArg {
  return { size: 96, flags, start, end, vec, vecLen, maxPages: 0, categoryInverted: 0, categoryMask, categoryAnyofMask: 0, returnMask };
}

/** PAGEMAP_SCAN on an open /proc/self/pagemap; returns the regions written. */
async function scan(p: Process, fd: number, start: number, end: number, returnMask: number, categoryMask = 0): Promise<PageRegion[]> {
  const vec: PageRegion[] = [];
  const n = await p.ioctl(fd, PAGEMAP_SCAN, pmScanArg(start, end, 0, vec, 16, categoryMask, returnMask));
  return vec.slice(0, n).map((r) => ({ start: r.start, end: r.end, categories: r.categories }));
}

const copyArg = (dst: number, src: number | Uint8Array, len = PAGE, mode = 0): UffdioCopy => ({ dst, src, len, mode });

describe("linux-rules §8 surprises (host 6.18.44 wins over the man page)", () => {
  it("1. UFFDIO_API twice: any second API after a success is EINVAL, even with features 0; failed calls do not initialise", async () => {
    const { k, p } = machine();
    const fd = await p.userfaultfd(O_NONBLOCK);
    const first: UffdioApi = { api: UFFD_API, features: 0 };
    await p.ioctl(fd, UFFDIO_API, first);
    const again: UffdioApi = { api: UFFD_API, features: 0 };
    expect(await errnoOf(p.ioctl(fd, UFFDIO_API, again))).toBe("EINVAL");
    expect(again).toMatchObject({ api: 0, features: 0, ioctls: 0n });
    // A failed attempt (EPERM: EVENT_FORK without CAP_SYS_PTRACE) leaves the ctx uninitialised.
    const u = k.spawn({ uid: 1000, capabilities: [] });
    const ufd = await u.userfaultfd(UFFD_USER_MODE_ONLY);
    expect(await errnoOf(u.ioctl(ufd, UFFDIO_API, { api: UFFD_API, features: UFFD_FEATURE_EVENT_FORK }))).toBe("EPERM");
    expect(await errnoOf(u.ioctl(ufd, UFFDIO_API, { api: UFFD_API, features: 0 }))).toBe("OK");
    k.checkInvariants();
  });

  it("2. CONTINUE beyond i_size is EINVAL (not EFAULT); a hole inside i_size is EFAULT", async () => {
    const { k, p } = machine();
    const uffd = await uffdOpen(p);
    const { fd, addr } = await memfdMap(p, 2, MAP_SHARED, 4);
    await p.pwrite(fd, bytes(PAGE, 3), 0);
    await register(p, uffd, addr, 4 * PAGE, MINOR);
    const hole: UffdioContinue = { range: { start: addr + PAGE, len: PAGE }, mode: 0 };
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_CONTINUE, hole))).toBe("EFAULT");
    expect(hole.mapped).toBe(-ERRNO.EFAULT);
    const beyond: UffdioContinue = { range: { start: addr + 2 * PAGE, len: PAGE }, mode: 0 };
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_CONTINUE, beyond))).toBe("EINVAL");
    expect(beyond.mapped).toBe(-ERRNO.EINVAL);
    const ok: UffdioContinue = { range: { start: addr, len: PAGE }, mode: 0 };
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_CONTINUE, ok))).toBe("OK");
    expect(ok.mapped).toBe(PAGE);
    expect(await p.mainThread.read(addr, 4)).toEqual(bytes(4, 3));
    k.checkInvariants();
  });

  it("3. COPY and CONTINUE overwrite any pte marker (poison included) and drop uffd-wp; ZEROPAGE and POISON need a strictly none pte", async () => {
    const { k, p } = machine();
    const uffd = await uffdOpen(p, WPF | UFFD_FEATURE_WP_UNPOPULATED);
    const a = await p.mmap(0, 4 * PAGE, RW, ANON_PRIVATE);
    await register(p, uffd, a, 4 * PAGE, modeOf(true, true, false));
    // Poison marker: ZEROPAGE and POISON say EEXIST, COPY replaces it.
    const po: UffdioPoison = { range: { start: a, len: PAGE }, mode: 0 };
    await p.ioctl(uffd, UFFDIO_POISON, po);
    expect(pmBits(pm(p, a))).toBe("P0 S1 F0 X0 WP0");
    const zp: UffdioZeropage = { range: { start: a, len: PAGE }, mode: 0 };
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_ZEROPAGE, zp))).toBe("EEXIST");
    expect(zp.zeropage).toBe(-ERRNO.EEXIST);
    const po2: UffdioPoison = { range: { start: a, len: PAGE }, mode: 0 };
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_POISON, po2))).toBe("EEXIST");
    expect(po2.updated).toBe(-ERRNO.EEXIST);
    const c = copyArg(a, bytes(PAGE, 7));
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_COPY, c))).toBe("OK");
    expect(c.copy).toBe(PAGE);
    expect(pmBits(pm(p, a))).toBe("P1 S0 F0 X1 WP0");
    expect(await p.mainThread.read(a, 1)).toEqual(bytes(1, 7));
    // A uffd-wp marker (WP_UNPOPULATED): ZEROPAGE EEXIST, COPY without MODE_WP loses the protection.
    await wpRange(p, uffd, a + PAGE, PAGE, true);
    expect(pmBits(pm(p, a + PAGE))).toBe("P0 S1 F0 X0 WP1");
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_ZEROPAGE, { range: { start: a + PAGE, len: PAGE }, mode: 0 }))).toBe("EEXIST");
    await p.ioctl(uffd, UFFDIO_COPY, copyArg(a + PAGE, bytes(PAGE, 8)));
    expect(pmBits(pm(p, a + PAGE))).toBe("P1 S0 F0 X1 WP0");
    // Consequence: a MISSING read fault on a marker cannot be resolved with ZEROPAGE; COPY does it.
    await wpRange(p, uffd, a + 2 * PAGE, PAGE, true);
    const reader = track(p.mainThread.read(a + 2 * PAGE, 1));
    expect(await isBlocked(k, reader)).toBe(true);
    const [m] = await readMsgs(p, uffd);
    expect(m).toEqual({ event: UFFD_EVENT_PAGEFAULT, arg: { pagefault: { flags: 0, address: a + 2 * PAGE, feat: { ptid: 0 } } } });
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_ZEROPAGE, { range: { start: a + 2 * PAGE, len: PAGE }, mode: 0 }))).toBe("EEXIST");
    expect(await isBlocked(k, reader), "the reader stays blocked after the failed ZEROPAGE").toBe(true);
    await p.ioctl(uffd, UFFDIO_COPY, copyArg(a + 2 * PAGE, bytes(PAGE, 9)));
    expect(await settle(k, reader.promise, "reader")).toEqual(bytes(1, 9));
    // CONTINUE over a shmem uffd-wp marker, without MODE_WP, drops the protection too.
    const { fd, addr } = await memfdMap(p, 1);
    await p.pwrite(fd, bytes(PAGE, 4), 0);
    await register(p, uffd, addr, PAGE, modeOf(false, true, true));
    await wpRange(p, uffd, addr, PAGE, true);
    expect(pmBits(pm(p, addr))).toBe("P0 S1 F0 X0 WP1");
    const co: UffdioContinue = { range: { start: addr, len: PAGE }, mode: 0 };
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_CONTINUE, co))).toBe("OK");
    expect(co.mapped).toBe(PAGE);
    expect(pm(p, addr)).toMatchObject({ present: true, file: true, uffdWp: false });
    k.checkInvariants();
  });

  it("4. POISON and MOVE work without their feature bits having been requested", async () => {
    const { k, p } = machine();
    const uffd = await uffdOpen(p, 0);
    const src = await p.mmap(0, PAGE, RW, ANON_PRIVATE);
    await p.mainThread.write(src, bytes(PAGE, 5));
    const dst = await p.mmap(0, 2 * PAGE, RW, ANON_PRIVATE);
    await register(p, uffd, dst, 2 * PAGE, MISSING);
    const po: UffdioPoison = { range: { start: dst, len: PAGE }, mode: 0 };
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_POISON, po))).toBe("OK");
    expect(po.updated).toBe(PAGE);
    const mv: UffdioMove = { dst: dst + PAGE, src, len: PAGE, mode: 0 };
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_MOVE, mv))).toBe("OK");
    expect(mv.move).toBe(PAGE);
    expect(await p.mainThread.read(dst + PAGE, 2)).toEqual(bytes(2, 5));
    expect(await signalOf(p.mainThread.read(dst, 1))).toBe("SIGBUS");
    k.checkInvariants();
  });

  it("5. REGISTER on shmem advertises ZEROPAGE and MOVE, yet MOVE on shmem is EINVAL; ZEROPAGE there allocates a page-cache page", async () => {
    const { k, p } = machine();
    const uffd = await uffdOpen(p);
    const { fd, addr } = await memfdMap(p, 2);
    expect(await register(p, uffd, addr, 2 * PAGE, MISSING)).toBe(0x13cn);
    const src = await p.mmap(0, PAGE, RW, ANON_PRIVATE);
    await p.mainThread.write(src, bytes(PAGE, 1));
    const mv: UffdioMove = { dst: addr, src, len: PAGE, mode: 0 };
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_MOVE, mv))).toBe("EINVAL");
    expect(mv.move).toBe(-ERRNO.EINVAL);
    const zp: UffdioZeropage = { range: { start: addr, len: PAGE }, mode: 0 };
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_ZEROPAGE, zp))).toBe("OK");
    expect(zp.zeropage).toBe(PAGE);
    const e = pm(p, addr);
    expect(pmBits(e)).toBe("P1 S0 F1 X1 WP0");
    expect(e.pfn).not.toBe(k.zeroPfn);
    // Writable at once (no COW of a zero page) and visible through the file.
    await p.mainThread.write(addr, bytes(1, 0x42));
    expect(pm(p, addr).pfn).toBe(e.pfn);
    expect(await p.pread(fd, 1, 0)).toEqual(bytes(1, 0x42));
    k.checkInvariants();
  });

  it("6. wrong-ctx asymmetry: REGISTER EBUSY, UNREGISTER EINVAL, MOVE EINVAL; COPY, ZEROPAGE, POISON, WRITEPROTECT, WAKE succeed; faults go to the owner", async () => {
    const { k, p } = machine();
    const a = await uffdOpen(p, WPF);
    const b = await uffdOpen(p, WPF);
    const area = await p.mmap(0, 8 * PAGE, RW, ANON_PRIVATE);
    await register(p, a, area, 8 * PAGE, modeOf(true, true, false));
    expect(await errnoOf(p.ioctl(b, UFFDIO_REGISTER, { range: { start: area, len: PAGE }, mode: MISSING }))).toBe("EBUSY");
    expect(await errnoOf(p.ioctl(b, UFFDIO_UNREGISTER, { start: area, len: PAGE }))).toBe("EINVAL");
    const src = await p.mmap(0, PAGE, RW, ANON_PRIVATE);
    await p.mainThread.write(src, bytes(PAGE, 1));
    const mv: UffdioMove = { dst: area, src, len: PAGE, mode: 0 };
    expect(await errnoOf(p.ioctl(b, UFFDIO_MOVE, mv))).toBe("EINVAL");
    expect(mv.move).toBe(-ERRNO.EINVAL);
    const c = copyArg(area, bytes(PAGE, 2));
    expect(await errnoOf(p.ioctl(b, UFFDIO_COPY, c))).toBe("OK");
    expect(c.copy).toBe(PAGE);
    const zp: UffdioZeropage = { range: { start: area + PAGE, len: PAGE }, mode: 0 };
    expect(await errnoOf(p.ioctl(b, UFFDIO_ZEROPAGE, zp))).toBe("OK");
    expect(zp.zeropage).toBe(PAGE);
    const po: UffdioPoison = { range: { start: area + 2 * PAGE, len: PAGE }, mode: 0 };
    expect(await errnoOf(p.ioctl(b, UFFDIO_POISON, po))).toBe("OK");
    expect(po.updated).toBe(PAGE);
    expect(await errnoOf(p.ioctl(b, UFFDIO_WRITEPROTECT, { range: { start: area, len: PAGE }, mode: UFFDIO_WRITEPROTECT_MODE_WP }))).toBe("OK");
    expect(pm(p, area).uffdWp).toBe(true);
    expect(await errnoOf(wake(p, b, area, PAGE))).toBe("OK");
    // A fault in the vma is still reported to ctx A.
    const reader = track(p.mainThread.read(area + 3 * PAGE, 1));
    expect(await isBlocked(k, reader)).toBe(true);
    expect(await readMsgs(p, b)).toEqual([]);
    const msgs = await readMsgs(p, a);
    expect(msgs.map((m) => m.event)).toEqual([UFFD_EVENT_PAGEFAULT]);
    await p.ioctl(a, UFFDIO_COPY, copyArg(area + 3 * PAGE, bytes(PAGE, 3)));
    expect(await settle(k, reader.promise, "reader")).toEqual(bytes(1, 3));
    k.checkInvariants();
  });

  it("7. UNREGISTER wakes only vmas that had MISSING mode: a WP-blocked thread stays blocked until UFFDIO_WAKE", async () => {
    const { k, p } = machine();
    const uffd = await uffdOpen(p, WPF);
    const wpArea = await p.mmap(0, PAGE, RW, ANON_PRIVATE);
    await p.mainThread.write(wpArea, bytes(1, 1));
    await register(p, uffd, wpArea, PAGE, WP);
    await wpRange(p, uffd, wpArea, PAGE, true);
    const writer = track(p.mainThread.write(wpArea, bytes(1, 2)));
    expect(await isBlocked(k, writer)).toBe(true);
    expect((await readMsgs(p, uffd)).map((m) => (m.event === UFFD_EVENT_PAGEFAULT ? m.arg.pagefault.flags : -1))).toEqual([
      UFFD_PAGEFAULT_FLAG_WRITE | UFFD_PAGEFAULT_FLAG_WP,
    ]);
    await unregister(p, uffd, wpArea, PAGE);
    expect(await isBlocked(k, writer), "UNREGISTER of a WP-only vma wakes nobody").toBe(true);
    await wake(p, uffd, wpArea, PAGE);
    await settle(k, writer.promise, "writer after WAKE");
    expect(await p.mainThread.read(wpArea, 1)).toEqual(bytes(1, 2));
    // A MISSING-blocked reader is woken by UNREGISTER and maps the zero page.
    const missArea = await p.mmap(0, PAGE, RW, ANON_PRIVATE);
    await register(p, uffd, missArea, PAGE, MISSING);
    const reader = track(p.mainThread.read(missArea, 1));
    expect(await isBlocked(k, reader)).toBe(true);
    await unregister(p, uffd, missArea, PAGE);
    expect(await settle(k, reader.promise, "reader after UNREGISTER")).toEqual(bytes(1, 0));
    expect(pm(p, missArea)).toMatchObject({ present: true, pfn: k.zeroPfn });
    k.checkInvariants();
  });

  it("8. re-register replaces the modes unless the current ones are a superset: MISSING over MISSING|WP keeps WP, WP over MISSING drops MISSING", async () => {
    const { k, p } = machine();
    const uffd = await uffdOpen(p, WPF);
    const a = await p.mmap(0, 2 * PAGE, RW, ANON_PRIVATE);
    await register(p, uffd, a, PAGE, modeOf(true, true, false));
    expect(await register(p, uffd, a, PAGE, MISSING), "the ioctls describe the requested mode").toBe(0x13cn);
    expect(vmaAt(p, a)!.vmFlags).toEqual(expect.arrayContaining(["um", "uw"]));
    await p.mainThread.write(a + PAGE, bytes(1, 1)); // outside the registration
    expect(await errnoOf(wpRange(p, uffd, a, PAGE, true)), "WP is still registered").toBe("OK");
    // WP over a MISSING-only vma: MISSING is gone, a read maps the zero page without a userfault.
    const b = await p.mmap(0, PAGE, RW, ANON_PRIVATE);
    await register(p, uffd, b, PAGE, MISSING);
    expect(await register(p, uffd, b, PAGE, WP)).toBe(0x17cn);
    expect(vmaAt(p, b)!.vmFlags).toContain("uw");
    expect(vmaAt(p, b)!.vmFlags).not.toContain("um");
    expect(await settle(k, p.mainThread.read(b, 1), "read")).toEqual(bytes(1, 0));
    expect(await readMsgs(p, uffd)).toEqual([]);
    k.checkInvariants();
  });

  it("9. holes are ignored by REGISTER, UNREGISTER and WRITEPROTECT; WAKE never looks at vmas; only 'no vma at all' is an error", async () => {
    const { k, p } = machine();
    const uffd = await uffdOpen(p, WPF);
    const a = await p.mmap(0, 4 * PAGE, RW, ANON_PRIVATE);
    await p.munmap(a + PAGE, PAGE); // vma - hole - vma
    await p.munmap(a + 3 * PAGE, PAGE);
    expect(await errnoOf(register(p, uffd, a, 3 * PAGE, modeOf(true, true, false)))).toBe("OK");
    expect(vmaAt(p, a)!.vmFlags).toContain("um");
    expect(vmaAt(p, a + 2 * PAGE)!.vmFlags).toContain("um");
    expect(await errnoOf(wpRange(p, uffd, a, 3 * PAGE, true))).toBe("OK");
    expect(await errnoOf(unregister(p, uffd, a, 3 * PAGE))).toBe("OK");
    expect(vmaAt(p, a)!.vmFlags).not.toContain("um");
    // A range starting in a hole but reaching a vma registers that vma.
    expect(await errnoOf(register(p, uffd, a + PAGE, 2 * PAGE, MISSING))).toBe("OK");
    expect(vmaAt(p, a + 2 * PAGE)!.vmFlags).toContain("um");
    // Entirely in a hole: REGISTER and UNREGISTER are EINVAL, WAKE is fine.
    expect(await errnoOf(register(p, uffd, a + 3 * PAGE, PAGE, MISSING))).toBe("EINVAL");
    expect(await errnoOf(unregister(p, uffd, a + 3 * PAGE, PAGE))).toBe("EINVAL");
    expect(await errnoOf(wake(p, uffd, a + 3 * PAGE, PAGE))).toBe("OK");
    k.checkInvariants();
  });

  it("10. mfill ioctls need neither MISSING/MINOR mode nor the caller's ctx: COPY into a WP-only registered range works", async () => {
    const { k, p } = machine();
    const uffd = await uffdOpen(p, WPF);
    const a = await p.mmap(0, PAGE, RW, ANON_PRIVATE);
    await register(p, uffd, a, PAGE, WP);
    const c = copyArg(a, bytes(PAGE, 6));
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_COPY, c))).toBe("OK");
    expect(c.copy).toBe(PAGE);
    expect(pmBits(pm(p, a))).toBe("P1 S0 F0 X1 WP0");
    // But COPY into a vma with no uffd at all is ENOENT.
    const plain = await p.mmap(0, PAGE, RW, ANON_PRIVATE);
    const c2 = copyArg(plain, bytes(PAGE, 6));
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_COPY, c2))).toBe("ENOENT");
    expect(c2.copy).toBe(-ERRNO.ENOENT);
    k.checkInvariants();
  });

  it("11. UFFDIO_MOVE makes dst writable and drops uffd-wp; it refuses non-PAE pages (EBUSY) even while pagemap says exclusive", async () => {
    const { k, p } = machine();
    const uffd = await uffdOpen(p, WPF);
    const src = await p.mmap(0, 2 * PAGE, RW, ANON_PRIVATE);
    const dst = await p.mmap(0, 2 * PAGE, RW, ANON_PRIVATE);
    await register(p, uffd, src, 2 * PAGE, WP);
    await register(p, uffd, dst, 2 * PAGE, modeOf(true, true, false));
    await p.mainThread.write(src, bytes(PAGE, 1));
    await wpRange(p, uffd, src, PAGE, true);
    expect(pm(p, src).uffdWp).toBe(true);
    const mv: UffdioMove = { dst, src, len: PAGE, mode: 0 };
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_MOVE, mv))).toBe("OK");
    expect(pmBits(pm(p, dst))).toBe("P1 S0 F0 X1 WP0");
    expect(pm(p, src).present).toBe(false);
    await settle(k, p.mainThread.write(dst, bytes(1, 2)), "write to the moved page");
    expect(await readMsgs(p, uffd), "no WP fault: the moved pte is writable").toEqual([]);
    // After a fork the page is not PAE: EBUSY, still after the child exits (X1) and after a read.
    await p.mainThread.write(src + PAGE, bytes(PAGE, 3));
    const child = await p.fork();
    await child.exit(0);
    await p.waitpid(child.pid);
    expect(pm(p, src + PAGE).exclusive).toBe(true);
    const busy: UffdioMove = { dst: dst + PAGE, src: src + PAGE, len: PAGE, mode: 0 };
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_MOVE, busy))).toBe("EBUSY");
    expect(busy.move).toBe(-ERRNO.EBUSY);
    await p.mainThread.read(src + PAGE, 1);
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_MOVE, { dst: dst + PAGE, src: src + PAGE, len: PAGE, mode: 0 }))).toBe("EBUSY");
    await p.mainThread.write(src + PAGE, bytes(1, 4));
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_MOVE, { dst: dst + PAGE, src: src + PAGE, len: PAGE, mode: 0 }))).toBe("OK");
    expect(await p.mainThread.read(dst + PAGE, 2)).toEqual(new Uint8Array([4, 3]));
    k.checkInvariants();
  });

  it("12. a read swap-in does not restore PAE for a page shared before swap-out; a write swap-in does (a swap file)", async () => {
    // On zram a count-1 entry skips the swap cache and comes back exclusive (test/mm/swap.test.ts).
    const { k, p } = machine({ swapPages: 16, swapDevice: "file" });
    const uffd = await uffdOpen(p);
    const src = await p.mmap(0, 3 * PAGE, RW, ANON_PRIVATE);
    const dst = await p.mmap(0, 3 * PAGE, RW, ANON_PRIVATE);
    await register(p, uffd, dst, 3 * PAGE, MISSING);
    for (let i = 0; i < 3; i++) await p.mainThread.write(src + i * PAGE, bytes(PAGE, 10 + i));
    // Pages 1 and 2 were shared with a child that has exited (PAE clear). Page 0 stays exclusive.
    const child = await p.fork();
    await child.exit(0);
    await p.waitpid(child.pid);
    await p.mainThread.write(src, bytes(1, 10)); // write fault: reuse, PAE again
    await p.madvise(src, 3 * PAGE, MADV_PAGEOUT);
    for (let i = 0; i < 3; i++) expect(pm(p, src + i * PAGE).swapped, `page ${i} swapped out`).toBe(true);
    await p.mainThread.read(src, 1); // exclusive page, read in: PAE
    await p.mainThread.read(src + PAGE, 1); // previously shared, read in: not PAE
    await p.mainThread.write(src + 2 * PAGE, bytes(1, 12)); // previously shared, written in: PAE
    const move = (i: number): Promise<string> => errnoOf(p.ioctl(uffd, UFFDIO_MOVE, { dst: dst + i * PAGE, src: src + i * PAGE, len: PAGE, mode: 0 }));
    expect(await move(0)).toBe("OK");
    expect(await move(1)).toBe("EBUSY");
    expect(await move(2)).toBe("OK");
    k.checkInvariants();
  });

  it("13. shmem MADV_DONTNEED and MADV_REMOVE keep the uffd-wp marker (anon DONTNEED drops it)", async () => {
    const { k, p } = machine();
    const uffd = await uffdOpen(p, WPF | UFFD_FEATURE_WP_UNPOPULATED);
    const { addr } = await memfdMap(p, 2);
    await p.mainThread.write(addr, bytes(2 * PAGE, 1));
    await register(p, uffd, addr, 2 * PAGE, WP);
    await wpRange(p, uffd, addr, 2 * PAGE, true);
    await p.madvise(addr, PAGE, MADV_DONTNEED);
    expect(pmBits(pm(p, addr))).toBe("P0 S1 F0 X0 WP1");
    await p.madvise(addr + PAGE, PAGE, MADV_REMOVE);
    expect(pmBits(pm(p, addr + PAGE))).toBe("P0 S1 F0 X0 WP1");
    const anon = await p.mmap(0, 2 * PAGE, RW, ANON_PRIVATE);
    await p.mainThread.write(anon, bytes(1, 1));
    await register(p, uffd, anon, 2 * PAGE, WP);
    await wpRange(p, uffd, anon, 2 * PAGE, true);
    expect(pmBits(pm(p, anon + PAGE))).toBe("P0 S1 F0 X0 WP1");
    await p.madvise(anon, 2 * PAGE, MADV_DONTNEED);
    expect(pmBits(pm(p, anon))).toBe("P0 S0 F0 X0 WP0");
    expect(pmBits(pm(p, anon + PAGE))).toBe("P0 S0 F0 X0 WP0");
    k.checkInvariants();
  });

  it("14. the target process exited: COPY is ESRCH (not the 4.11-era ENOSPC) and the result field is untouched", async () => {
    const { k, p } = machine();
    const owner = await p.fork();
    const uffd = await uffdOpen(owner);
    const a = await owner.mmap(0, PAGE, RW, ANON_PRIVATE);
    await register(owner, uffd, a, PAGE, MISSING);
    const mine = await owner.sendFd(uffd, p);
    await owner.exit(0);
    await p.waitpid(owner.pid);
    const c: UffdioCopy = { dst: a, src: bytes(PAGE, 1), len: PAGE, mode: 0, copy: 12345 };
    expect(await errnoOf(p.ioctl(mine, UFFDIO_COPY, c))).toBe("ESRCH");
    expect(c.copy).toBe(12345);
    await p.close(mine);
    k.checkInvariants();
  });

  it("15. mremap with EVENT_REMAP and EVENT_UNMAP emits REMAP then UNMAP of the old range; without EVENT_REMAP the vma is silently unregistered", async () => {
    const { k, p } = machine();
    const uffd = await uffdOpen(p, UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_UNMAP);
    const a = await p.mmap(0, 2 * PAGE, RW, ANON_PRIVATE);
    await register(p, uffd, a, 2 * PAGE, MISSING);
    const target = await p.mmap(0, 2 * PAGE, PROT_NONE, ANON_PRIVATE);
    const mr = track(p.mremap(a, 2 * PAGE, 2 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, target));
    expect(await isBlocked(k, mr), "mremap waits for its events to be read").toBe(true);
    const first = await readMsgs(p, uffd, 1);
    expect(first).toEqual([{ event: UFFD_EVENT_REMAP, arg: { remap: { from: a, to: target, len: 2 * PAGE } } }]);
    await k.idle();
    const second = await readMsgs(p, uffd, 1);
    expect(second).toEqual([{ event: UFFD_EVENT_UNMAP, arg: { remove: { start: a, end: a + 2 * PAGE } } }]);
    expect(await settle(k, mr.promise, "mremap")).toBe(target);
    expect(vmaAt(p, target)!.vmFlags, "the registration moved with the vma").toContain("um");
    // Without EVENT_REMAP: unregistered, and a read just maps the zero page.
    const plain = await uffdOpen(p, 0);
    const b = await p.mmap(0, PAGE, RW, ANON_PRIVATE);
    await register(p, plain, b, PAGE, MISSING);
    const t2 = await p.mmap(0, PAGE, PROT_NONE, ANON_PRIVATE);
    expect(await settle(k, p.mremap(b, PAGE, PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, t2), "mremap")).toBe(t2);
    expect(vmaAt(p, t2)!.vmFlags).not.toContain("um");
    expect(await settle(k, p.mainThread.read(t2, 1), "read")).toEqual(bytes(1, 0));
    expect(await readMsgs(p, plain)).toEqual([]);
    k.checkInvariants();
  });

  it("16. pagemap reports every pte marker as swapped: uffd-wp (S WP), poison (S), guard (S G)", async () => {
    const { k, p } = machine();
    const uffd = await uffdOpen(p, WPF | UFFD_FEATURE_WP_UNPOPULATED);
    const a = await p.mmap(0, 3 * PAGE, RW, ANON_PRIVATE);
    await register(p, uffd, a, 2 * PAGE, modeOf(true, true, false));
    await wpRange(p, uffd, a, PAGE, true);
    await p.ioctl(uffd, UFFDIO_POISON, { range: { start: a + PAGE, len: PAGE }, mode: 0 });
    await p.madvise(a + 2 * PAGE, PAGE, MADV_GUARD_INSTALL);
    const [wp, poison, guard] = p.pagemap(a, 3);
    expect(wp).toMatchObject({ present: false, swapped: true, uffdWp: true, guard: false });
    expect(poison).toMatchObject({ present: false, swapped: true, uffdWp: false, guard: false });
    expect(guard).toMatchObject({ present: false, swapped: true, uffdWp: false, guard: true });
    expect(await signalOf(p.mainThread.read(a + 2 * PAGE, 1))).toBe("SIGSEGV");
    k.checkInvariants();
  });

  it("17. a poisoned pte and a UFFD_FEATURE_SIGBUS fault both deliver SIGBUS at the address (si_code is not in the API)", async () => {
    const { k, p } = machine();
    const uffd = await uffdOpen(p, UFFD_FEATURE_SIGBUS);
    const a = await p.mmap(0, 2 * PAGE, RW, ANON_PRIVATE);
    await register(p, uffd, a, 2 * PAGE, MISSING);
    await p.ioctl(uffd, UFFDIO_POISON, { range: { start: a, len: PAGE }, mode: 0 });
    await expect(p.mainThread.read(a + 5, 1)).rejects.toMatchObject({ signal: "SIGBUS" });
    await expect(p.mainThread.write(a + PAGE, bytes(1, 1))).rejects.toMatchObject({ signal: "SIGBUS", address: a + PAGE });
    expect(await readMsgs(p, uffd), "SIGBUS mode queues no message").toEqual([]);
    k.checkInvariants();
  });

  it("18. the selftests' 'shmem-private' memory type is a MAP_SHARED memfd mapping", async () => {
    const ctx = await uffdTestCtxInit({ mem: "shmem-private", features: 0, nrPages: 4 });
    const { p } = ctx;
    expect(vmaAt(p, ctx.areaDst)!.perms).toBe("rw-s");
    await register(p, ctx.uffd, ctx.areaDst, 4 * PAGE, MISSING);
    await p.ioctl(ctx.uffd, UFFDIO_COPY, copyArg(ctx.areaDst, bytes(PAGE, 0x5a)));
    expect(await p.mainThread.read(ctx.areaDstAlias!, 1), "COPY filled the shared page cache").toEqual(bytes(1, 0x5a));
    await uffdTestCtxClear(ctx);
  });

  it("19. WP_ASYNC silently implies WP_UNPOPULATED: WRITEPROTECT of a none anon pte installs a marker", async () => {
    const { k, p } = machine();
    const async = await uffdOpen(p, UFFD_FEATURE_WP_ASYNC);
    const sync = await uffdOpen(p, WPF);
    const a = await p.mmap(0, PAGE, RW, ANON_PRIVATE);
    const b = await p.mmap(0, PAGE, RW, ANON_PRIVATE);
    await register(p, async, a, PAGE, WP);
    await register(p, sync, b, PAGE, WP);
    await wpRange(p, async, a, PAGE, true);
    await wpRange(p, sync, b, PAGE, true);
    expect(pmBits(pm(p, a))).toBe("P0 S1 F0 X0 WP1");
    expect(pmBits(pm(p, b)), "without WP_UNPOPULATED anon none ptes are left alone").toBe("P0 S0 F0 X0 WP0");
    // WP_ASYNC resolves the write fault silently: writable, WP0, no message.
    await settle(k, p.mainThread.write(a, bytes(1, 1)), "async write");
    expect(pmBits(pm(p, a))).toBe("P1 S0 F0 X1 WP0");
    expect(await readMsgs(p, async)).toEqual([]);
    k.checkInvariants();
  });

  it("20. PAGEMAP_SCAN follows the 6.18.44 host: a none pte in a populated table is WRITTEN in any vma; a page-table hole is WRITTEN only in a uffd-wp vma", async () => {
    const { k, p } = machine();
    const fd = await p.openPagemap();
    const asyncFd = await uffdOpen(p, UFFD_FEATURE_WP_ASYNC);
    // A plain vma: page 0 present, page 1 none in the same (populated) page table.
    const plain = await p.mmap(0, 2 * PAGE, RW, ANON_PRIVATE);
    await p.mainThread.write(plain, bytes(1, 1));
    expect(await scan(p, fd, plain, plain + 2 * PAGE, PAGE_IS_PRESENT | PAGE_IS_WRITTEN)).toEqual([
      { start: plain, end: plain + PAGE, categories: PAGE_IS_PRESENT | PAGE_IS_WRITTEN },
      { start: plain + PAGE, end: plain + 2 * PAGE, categories: PAGE_IS_WRITTEN },
    ]);
    // A WP_ASYNC vma: the none pte is WPALLOWED|WRITTEN, a write-protected present page WPALLOWED only.
    const wpa = await p.mmap(0, 2 * PAGE, RW, ANON_PRIVATE);
    await p.mainThread.write(wpa + PAGE, bytes(1, 1));
    await register(p, asyncFd, wpa, 2 * PAGE, WP);
    await wpRange(p, asyncFd, wpa + PAGE, PAGE, true);
    expect(await scan(p, fd, wpa, wpa + 2 * PAGE, PAGE_IS_WPALLOWED | PAGE_IS_WRITTEN)).toEqual([
      { start: wpa, end: wpa + PAGE, categories: PAGE_IS_WPALLOWED | PAGE_IS_WRITTEN },
      { start: wpa + PAGE, end: wpa + 2 * PAGE, categories: PAGE_IS_WPALLOWED },
    ]);
    // Page-table holes: a 2 MiB-aligned chunk of a fresh 4 MiB vma has no page table at all.
    const MB2 = 2 << 20;
    const holeIn = async (registered: boolean): Promise<unknown[]> => {
      const big = await p.mmap(0, 2 * MB2, RW, ANON_PRIVATE);
      if (registered) await register(p, asyncFd, big, 2 * MB2, WP);
      const hole = Math.ceil(big / MB2) * MB2;
      return scan(p, fd, hole, hole + PAGE, PAGE_IS_WPALLOWED | PAGE_IS_WRITTEN, PAGE_IS_WRITTEN);
    };
    expect(await holeIn(false)).toEqual([]);
    const inWp = await holeIn(true);
    expect(inWp).toHaveLength(1);
    expect(inWp[0]).toMatchObject({ categories: PAGE_IS_WPALLOWED | PAGE_IS_WRITTEN });
    k.checkInvariants();
  });

  it("21. UFFDIO_COPY's src need not be page-aligned, but UFFDIO_MOVE's src must be", async () => {
    const { k, p } = machine();
    const uffd = await uffdOpen(p);
    const src = await p.mmap(0, 2 * PAGE, RW, ANON_PRIVATE);
    const pattern = new Uint8Array(2 * PAGE).map((_, i) => i & 0xff);
    await p.mainThread.write(src, pattern);
    const dst = await p.mmap(0, 2 * PAGE, RW, ANON_PRIVATE);
    await register(p, uffd, dst, 2 * PAGE, MISSING);
    const c = copyArg(dst, src + 1);
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_COPY, c))).toBe("OK");
    expect(c.copy).toBe(PAGE);
    expect(await p.mainThread.read(dst, PAGE)).toEqual(pattern.subarray(1, PAGE + 1));
    const mv: UffdioMove = { dst: dst + PAGE, src: src + 1, len: PAGE, mode: 0, move: 777 };
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_MOVE, mv))).toBe("EINVAL");
    expect(mv.move, "a pre-operation EINVAL leaves the field alone").toBe(777);
    k.checkInvariants();
  });

  it("22. a read of a wp marker: MISSING fault in a MISSING|WP anon range; the zero page with uffd-wp in a WP-only range", async () => {
    const { k, p } = machine();
    const uffd = await uffdOpen(p, WPF | UFFD_FEATURE_WP_UNPOPULATED);
    const a = await p.mmap(0, PAGE, RW, ANON_PRIVATE);
    const b = await p.mmap(0, PAGE, RW, ANON_PRIVATE);
    await register(p, uffd, a, PAGE, modeOf(true, true, false));
    await register(p, uffd, b, PAGE, WP);
    await wpRange(p, uffd, a, PAGE, true);
    await wpRange(p, uffd, b, PAGE, true);
    const reader = track(p.mainThread.read(a, 1));
    expect(await isBlocked(k, reader)).toBe(true);
    const msgs = await readMsgs(p, uffd);
    expect(msgs).toEqual([{ event: UFFD_EVENT_PAGEFAULT, arg: { pagefault: { flags: 0, address: a, feat: { ptid: 0 } } } }]);
    expect(await settle(k, p.mainThread.read(b, 1), "WP-only read")).toEqual(bytes(1, 0));
    expect(pm(p, b)).toMatchObject({ present: true, uffdWp: true, pfn: k.zeroPfn });
    await p.ioctl(uffd, UFFDIO_COPY, copyArg(a, bytes(PAGE, 1)));
    await settle(k, reader.promise, "reader");
    // The WP-only page: a write now raises a WP fault (flags WRITE|WP).
    const writer = track(p.mainThread.write(b, bytes(1, 1)));
    expect(await isBlocked(k, writer)).toBe(true);
    const wmsgs = await readMsgs(p, uffd);
    expect(wmsgs.map((m) => (m.event === UFFD_EVENT_PAGEFAULT ? m.arg.pagefault.flags : -1))).toEqual([UFFD_PAGEFAULT_FLAG_WRITE | UFFD_PAGEFAULT_FLAG_WP]);
    await wpRange(p, uffd, b, PAGE, false);
    await settle(k, writer.promise, "writer");
    k.checkInvariants();
  });

  it("23. PAGEMAP_SCAN WP_MATCHING without a vector ignores the category masks in WP-async vmas, skips other vmas, and CHECK_WPASYNC makes those EPERM", async () => {
    const { k, p } = machine();
    const fd = await p.openPagemap();
    const asyncFd = await uffdOpen(p, UFFD_FEATURE_WP_ASYNC);
    const a = await p.mmap(0, 4 * PAGE, RW, ANON_PRIVATE);
    await p.mainThread.write(a, bytes(1, 1));
    await p.mainThread.write(a + 3 * PAGE, bytes(1, 1));
    await register(p, asyncFd, a, 4 * PAGE, WP);
    const arg = pmScanArg(a, a + 4 * PAGE, PM_SCAN_WP_MATCHING, null, 0, PAGE_IS_PRESENT, 0);
    expect(await p.ioctl(fd, PAGEMAP_SCAN, arg)).toBe(0);
    expect(arg.walkEnd).toBe(a + 4 * PAGE);
    expect(p.pagemap(a, 4).map(pmBits)).toEqual(["P1 S0 F0 X1 WP1", "P0 S1 F0 X0 WP1", "P0 S1 F0 X0 WP1", "P1 S0 F0 X1 WP1"]);
    // A plain vma is skipped silently, or refused with CHECK_WPASYNC.
    const plain = await p.mmap(0, PAGE, RW, ANON_PRIVATE);
    await p.mainThread.write(plain, bytes(1, 1));
    const skip = pmScanArg(plain, plain + PAGE, PM_SCAN_WP_MATCHING, null, 0, 0, 0);
    expect(await p.ioctl(fd, PAGEMAP_SCAN, skip)).toBe(0);
    expect(pmBits(pm(p, plain))).toBe("P1 S0 F0 X1 WP0");
    const check = pmScanArg(plain, plain + PAGE, PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC, null, 0, 0, 0);
    expect(await errnoOf(p.ioctl(fd, PAGEMAP_SCAN, check))).toBe("EPERM");
    // The async write resolves silently and the page reads as WRITTEN again.
    await settle(k, p.mainThread.write(a + PAGE, bytes(1, 2)), "async write");
    expect(await scan(p, fd, a, a + 4 * PAGE, PAGE_IS_WRITTEN, PAGE_IS_WRITTEN)).toEqual([{ start: a + PAGE, end: a + 2 * PAGE, categories: PAGE_IS_WRITTEN }]);
    k.checkInvariants();
  });
});
