/**
 * The scenarios of the linux-mm threads this project grew from (docs/linux-rules.md §10), as
 * conformance tests against the 6.18 behaviour recorded in docs/linux-rules.md.
 *
 * - 002 "userfaultfd/shmem: fix MCOPY_ATOMIC_CONTINUE behavior": CONTINUE twice -> EEXIST with
 *   mapped = -EEXIST (the selftest's continue_range()); CONTINUE on MAP_PRIVATE maps the page-cache
 *   page read-only, and a later write COWs with no userfault, leaving the file untouched (§3.4).
 * - 003 "userfaultfd: UFFDIO_REMAP uABI": MOVE needs PageAnonExclusive; after fork without
 *   MADV_DONTFORK it fails with EBUSY and UFFDIO_COPY is the fallback; PAE only comes back with a
 *   write fault, not when the child exits nor on a read (§2.10, §8.11).
 * - 000 "mm/userfaultfd: fix memory corruption due to writeprotect": the uffd-wp bit must survive
 *   fork, which 6.18 does only when the child keeps the registration (EVENT_FORK) (§5.3, §5.7).
 */
import { describe, expect, it } from "vitest";
import {
  ERRNO,
  MAP_PRIVATE,
  MAP_SHARED,
  UFFD_EVENT_FORK,
  UFFD_EVENT_PAGEFAULT,
  UFFD_FEATURE_EVENT_FORK,
  UFFD_FEATURE_PAGEFAULT_FLAG_WP,
  UFFD_PAGEFAULT_FLAG_MINOR,
  UFFD_PAGEFAULT_FLAG_WP,
  UFFD_PAGEFAULT_FLAG_WRITE,
  UFFDIO_CONTINUE,
  UFFDIO_COPY,
  UFFDIO_MOVE,
  type UffdioContinue,
  type UffdioCopy,
  type UffdioMove,
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
  pmBits,
  readMsgs,
  register,
  RW,
  settle,
  track,
  uffdOpen,
  vmaAt,
  waitMsg,
  wpRange,
} from "./harness.ts";

describe("seed 002: UFFDIO_CONTINUE on shmem", () => {
  it("CONTINUE twice: the second gives EEXIST with mapped = -EEXIST (uffd-common.c: continue_range)", async () => {
    const { k, p } = machine();
    const uffd = await uffdOpen(p, 0);
    const { fd, addr } = await memfdMap(p, 2);
    await p.pwrite(fd, bytes(2 * PAGE, 0x11), 0);
    await register(p, uffd, addr, 2 * PAGE, modeOf(false, false, true));
    const t = p.spawnThread("reader");
    const reader = track(t.read(addr + PAGE + 8, 4));
    expect(await isBlocked(k, reader)).toBe(true);
    const msgs = await readMsgs(p, uffd);
    expect(msgs).toEqual([{ event: UFFD_EVENT_PAGEFAULT, arg: { pagefault: { flags: UFFD_PAGEFAULT_FLAG_MINOR, address: addr + PAGE, feat: { ptid: 0 } } } }]);
    const req: UffdioContinue = { range: { start: addr + PAGE, len: PAGE }, mode: 0 };
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_CONTINUE, req))).toBe("OK");
    expect(req.mapped).toBe(PAGE);
    req.mapped = 0;
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_CONTINUE, req))).toBe("EEXIST");
    expect(req.mapped).toBe(-ERRNO.EEXIST);
    expect(await settle(k, reader.promise, "reader")).toEqual(bytes(4, 0x11));
    expect(pmBits(pm(p, addr + PAGE))).toBe("P1 S0 F1 X1 WP0");
    k.checkInvariants();
  });

  it("CONTINUE on MAP_PRIVATE maps the cache page read-only; a write COWs without a userfault and the file and its shared alias stay untouched", async () => {
    const { k, p } = machine();
    const uffd = await uffdOpen(p, 0);
    const { fd, addr: alias } = await memfdMap(p, 1, MAP_SHARED);
    await p.pwrite(fd, bytes(PAGE, 0xaa), 0);
    const priv = await p.mmap(0, PAGE, RW, MAP_PRIVATE, fd, 0);
    await register(p, uffd, priv, PAGE, modeOf(false, false, true));
    const reader = track(p.mainThread.read(priv, 1));
    expect(await isBlocked(k, reader)).toBe(true);
    const [m] = await readMsgs(p, uffd);
    expect(m).toEqual({ event: UFFD_EVENT_PAGEFAULT, arg: { pagefault: { flags: UFFD_PAGEFAULT_FLAG_MINOR, address: priv, feat: { ptid: 0 } } } });
    const req: UffdioContinue = { range: { start: priv, len: PAGE }, mode: 0 };
    await p.ioctl(uffd, UFFDIO_CONTINUE, req);
    expect(req.mapped).toBe(PAGE);
    expect(await settle(k, reader.promise, "reader")).toEqual(bytes(1, 0xaa));
    const mapped = pm(p, priv);
    expect(mapped).toMatchObject({ present: true, file: true });
    // The write: an ordinary COW into a private anon page, no userfault.
    await settle(k, p.mainThread.write(priv, bytes(1, 0x55)), "write to the CONTINUEd private page");
    expect(await readMsgs(p, uffd)).toEqual([]);
    const after = pm(p, priv);
    expect(pmBits(after)).toBe("P1 S0 F0 X1 WP0");
    expect(after.pfn).not.toBe(mapped.pfn);
    expect(await p.mainThread.read(priv, 2)).toEqual(new Uint8Array([0x55, 0xaa]));
    expect(await p.mainThread.read(alias, 1), "the shared alias is unchanged").toEqual(bytes(1, 0xaa));
    expect(pm(p, alias).pfn).toBe(mapped.pfn);
    expect(await p.pread(fd, PAGE, 0), "the file is unchanged").toEqual(bytes(PAGE, 0xaa));
    k.checkInvariants();
  });
});

describe("seed 003: UFFDIO_MOVE needs PageAnonExclusive", () => {
  it("MOVE after fork without MADV_DONTFORK is EBUSY and UFFDIO_COPY works as the fallback; MOVE stays EBUSY after the child exits and after a read, and works after a write (linux-rules §8.11)", async () => {
    const { k, p } = machine();
    const uffd = await uffdOpen(p, 0);
    const src = await p.mmap(0, 2 * PAGE, RW, ANON_PRIVATE);
    await p.mainThread.write(src, bytes(PAGE, 1));
    await p.mainThread.write(src + PAGE, bytes(PAGE, 2));
    const dst = await p.mmap(0, 2 * PAGE, RW, ANON_PRIVATE);
    await register(p, uffd, dst, 2 * PAGE, modeOf(true, false, false));
    const child = await p.fork(); // no MADV_DONTFORK on src: its pages are now shared
    // A faulting thread; the handler tries MOVE, gets EBUSY, falls back to COPY.
    const reader = track(p.spawnThread("faulter").read(dst, PAGE));
    expect(await isBlocked(k, reader)).toBe(true);
    const [m] = await readMsgs(p, uffd);
    expect(m?.event).toBe(UFFD_EVENT_PAGEFAULT);
    const mv: UffdioMove = { dst, src, len: PAGE, mode: 0 };
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_MOVE, mv))).toBe("EBUSY");
    expect(mv.move).toBe(-ERRNO.EBUSY);
    expect(await isBlocked(k, reader), "a failed MOVE wakes nobody").toBe(true);
    const cp: UffdioCopy = { dst, src, len: PAGE, mode: 0 };
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_COPY, cp))).toBe("OK");
    expect(cp.copy).toBe(PAGE);
    expect(await settle(k, reader.promise, "reader")).toEqual(bytes(PAGE, 1));
    expect(await child.mainThread.read(src, 1), "the child still sees its copy").toEqual(bytes(1, 1));
    // The child exits: pagemap says exclusive again, but the page is still not PAE.
    await child.exit(0);
    await p.waitpid(child.pid);
    expect(pm(p, src + PAGE).exclusive).toBe(true);
    const again = (): Promise<string> => errnoOf(p.ioctl(uffd, UFFDIO_MOVE, { dst: dst + PAGE, src: src + PAGE, len: PAGE, mode: 0 }));
    expect(await again(), "after the child exited").toBe("EBUSY");
    await p.mainThread.read(src + PAGE, 1);
    expect(await again(), "after a read").toBe("EBUSY");
    await p.mainThread.write(src + PAGE, bytes(1, 3));
    expect(await again(), "after a write (do_wp_page reuse sets PAE)").toBe("OK");
    expect(await p.mainThread.read(dst + PAGE, 2)).toEqual(new Uint8Array([3, 2]));
    expect(pm(p, src + PAGE).present).toBe(false);
    k.checkInvariants();
  });
});

describe("seed 000: uffd-wp across fork", () => {
  for (const mem of ["anon", "shmem"] as const) {
    for (const withEvent of [false, true]) {
      it(`uffd-wp survives fork only with EVENT_FORK (${mem}, ${withEvent ? "with" : "without"} EVENT_FORK)`, async () => {
        const { k, p } = machine();
        const uffd = await uffdOpen(p, UFFD_FEATURE_PAGEFAULT_FLAG_WP | (withEvent ? UFFD_FEATURE_EVENT_FORK : 0));
        const a = mem === "anon" ? await p.mmap(0, PAGE, RW, ANON_PRIVATE) : (await memfdMap(p, 1)).addr;
        await p.mainThread.write(a, bytes(PAGE, 7));
        await register(p, uffd, a, PAGE, modeOf(false, true, false));
        await wpRange(p, uffd, a, PAGE, true);
        const forkEvent = withEvent ? waitMsg(p, uffd) : null;
        const child = await settle(k, p.fork(), "fork");
        expect(pm(p, a).uffdWp, "the parent keeps uffd-wp").toBe(true);
        expect(pm(child, a).uffdWp, "the child's uffd-wp").toBe(withEvent);
        expect(vmaAt(child, a)!.vmFlags.includes("uw"), "the child's registration").toBe(withEvent);
        if (forkEvent === null) {
          // Unregistered in the child: its write needs no userfault.
          await settle(k, child.mainThread.write(a, bytes(1, 8)), "child write");
        } else {
          const ev = await forkEvent;
          if (ev.event !== UFFD_EVENT_FORK) throw new Error(`expected FORK, got ${ev.event}`);
          const childUffd = ev.arg.fork.ufd;
          const w = track(child.mainThread.write(a, bytes(1, 8)));
          expect(await isBlocked(k, w), "the child's write is write-protected").toBe(true);
          expect(await readMsgs(p, uffd), "the parent's uffd sees nothing").toEqual([]);
          const msgs = await readMsgs(p, childUffd);
          expect(msgs).toEqual([{ event: UFFD_EVENT_PAGEFAULT, arg: { pagefault: { flags: UFFD_PAGEFAULT_FLAG_WRITE | UFFD_PAGEFAULT_FLAG_WP, address: a, feat: { ptid: 0 } } } }]);
          await wpRange(p, childUffd, a, PAGE, false);
          await settle(k, w.promise, "child write after unprotect");
          await p.close(childUffd);
        }
        const expectParent = mem === "anon" ? 7 : 8; // shmem is shared with the child
        expect(await child.mainThread.read(a, 1)).toEqual(bytes(1, 8));
        expect(await p.mainThread.read(a, 1)).toEqual(bytes(1, expectParent));
        expect(pm(p, a).uffdWp).toBe(true);
        await child.exit(0);
        await p.waitpid(child.pid);
        k.checkInvariants();
      });
    }
  }
});
