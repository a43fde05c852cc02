/**
 * Non-cooperative events: FORK (fd delivered to the reader), UNMAP (munmap, MAP_FIXED), the
 * blocking of the syscall until the read, mmap_changing, release and death while an event is
 * pending (docs/linux-rules.md §4, §3.5, §5.7).
 */
import { describe, expect, it } from "vitest";
import {
  decodeUffdMsgs,
  F_GETFD,
  F_GETFL,
  MADV_DONTNEED,
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_PRIVATE,
  MREMAP_FIXED,
  MREMAP_MAYMOVE,
  O_CLOEXEC,
  O_NONBLOCK,
  UFFD_API,
  UFFD_EVENT_FORK,
  UFFD_EVENT_PAGEFAULT,
  UFFD_EVENT_REMAP,
  UFFD_EVENT_REMOVE,
  UFFD_EVENT_UNMAP,
  UFFD_FEATURE_EVENT_FORK,
  UFFD_FEATURE_EVENT_REMAP,
  UFFD_FEATURE_EVENT_REMOVE,
  UFFD_FEATURE_EVENT_UNMAP,
  UFFDIO_API,
  UFFDIO_CONTINUE,
  UFFDIO_COPY,
  UFFDIO_MOVE,
  UFFDIO_POISON,
  UFFDIO_REGISTER_MODE_MISSING,
  UFFDIO_REGISTER_MODE_WP,
  UFFDIO_UNREGISTER,
  UFFDIO_WAKE,
  UFFDIO_WRITEPROTECT,
  UFFDIO_WRITEPROTECT_MODE_WP,
  UFFDIO_ZEROPAGE,
  type UffdMsg,
} from "@uffd/kernel/uapi";
import { errnoOf, fill, isBlocked, mapArea, PS, readMsgs, register, RW, setup } from "./helpers.ts";
import { DeadTaskError } from "@uffd/kernel";

function forkFd(m: UffdMsg | undefined): number {
  if (m?.event !== UFFD_EVENT_FORK) throw new Error(`not a FORK message: ${JSON.stringify(m)}`);
  return m.arg.fork.ufd;
}

describe("UFFD_EVENT_FORK", () => {
  it("fork blocks until the event is read; the reader gets a new fd for the child's context (uffd-unit-tests.c: events)", async () => {
    const { k, p, uffd } = await setup(UFFD_FEATURE_EVENT_FORK, O_NONBLOCK | O_CLOEXEC);
    const { addr } = await mapArea(p, "anon", 2);
    await register(p, uffd, addr, 2 * PS, UFFDIO_REGISTER_MODE_MISSING);
    const monitor = k.spawn({ name: "monitor" });
    const mfd = await p.sendFd(uffd, monitor);
    const forked = p.fork();
    expect(await isBlocked(k, forked)).toBe(true);
    const [m] = await readMsgs(monitor, mfd);
    const cfd = forkFd(m);
    const child = await forked;
    expect(await monitor.fcntl(cfd, F_GETFL)).toBe(O_NONBLOCK);
    expect(await monitor.fcntl(cfd, F_GETFD)).toBe(1);
    // The child's faults go to the new context, the parent's to the old one.
    const r = child.mainThread.read(addr, 1);
    await k.idle();
    expect(await readMsgs(monitor, mfd)).toEqual([]);
    expect(await readMsgs(monitor, cfd)).toMatchObject([{ event: UFFD_EVENT_PAGEFAULT, arg: { pagefault: { address: addr } } }]);
    await monitor.ioctl(cfd, UFFDIO_COPY, { dst: addr, src: fill(9), len: PS, mode: 0 });
    expect(await r).toEqual(new Uint8Array([9]));
    expect(p.pagemap(addr, 1)[0]!.present).toBe(false);
    // The new context is initialized already: API on it is EINVAL.
    expect(await errnoOf(monitor.ioctl(cfd, UFFDIO_API, { api: UFFD_API, features: 0 }))).toBe("EINVAL");
    k.checkInvariants();
  });

  it("while the FORK event is unread, the parent's context answers EAGAIN (mmap_changing) (linux-rules §4)", async () => {
    const { k, p, uffd } = await setup(UFFD_FEATURE_EVENT_FORK);
    const { addr } = await mapArea(p, "anon", 1);
    await register(p, uffd, addr, PS, UFFDIO_REGISTER_MODE_MISSING);
    const forked = p.fork();
    await k.idle();
    const a = { dst: addr, src: fill(1), len: PS, mode: 0, copy: 0 };
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_COPY, a))).toBe("EAGAIN");
    expect(a.copy).toBe(-11);
    forkFd((await readMsgs(p, uffd))[0]);
    await forked;
    await p.ioctl(uffd, UFFDIO_COPY, a);
    expect(a.copy).toBe(PS);
    k.checkInvariants();
  });

  it("without EVENT_FORK the child's vmas are unregistered and lose uffd-wp; the parent keeps it (linux-rules §4, linux-rules §5.7)", async () => {
    const { k, p, uffd } = await setup();
    const { addr } = await mapArea(p, "anon", 1);
    await register(p, uffd, addr, PS, UFFDIO_REGISTER_MODE_WP);
    await p.mainThread.write(addr, fill(1, 1));
    await p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: addr, len: PS }, mode: UFFDIO_WRITEPROTECT_MODE_WP });
    const child = await p.fork();
    expect(child.pagemap(addr, 1)[0]!.uffdWp).toBe(false);
    expect(p.pagemap(addr, 1)[0]!.uffdWp).toBe(true);
    expect(child.smaps().find((v) => v.start === addr)!.vmFlags).not.toContain("uw");
    await child.mainThread.write(addr, fill(2, 1));
    expect(await readMsgs(p, uffd)).toEqual([]);
    k.checkInvariants();
  });

  it("with EVENT_FORK the child keeps uffd-wp (uffd-unit-tests.c: wp-fork-with-event)", async () => {
    const { k, p, uffd } = await setup(UFFD_FEATURE_EVENT_FORK);
    const { addr } = await mapArea(p, "anon", 1);
    await register(p, uffd, addr, PS, UFFDIO_REGISTER_MODE_WP);
    await p.mainThread.write(addr, fill(1, 1));
    await p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: addr, len: PS }, mode: UFFDIO_WRITEPROTECT_MODE_WP });
    const forked = p.fork();
    await k.idle();
    const cfd = forkFd((await readMsgs(p, uffd))[0]);
    const child = await forked;
    expect(child.pagemap(addr, 1)[0]!.uffdWp).toBe(true);
    const w = child.mainThread.write(addr, fill(2, 1));
    await k.idle();
    expect(await readMsgs(p, cfd)).toMatchObject([{ arg: { pagefault: { flags: 3 } } }]);
    await p.ioctl(cfd, UFFDIO_WRITEPROTECT, { range: { start: addr, len: PS }, mode: 0 });
    await w;
    k.checkInvariants();
  });

  it("the monitor closing the only uffd while the FORK event is pending lets fork return, the child unregistered (linux-rules §3.5)", async () => {
    const { k, p, uffd } = await setup(UFFD_FEATURE_EVENT_FORK);
    const { addr } = await mapArea(p, "anon", 1);
    await register(p, uffd, addr, PS, UFFDIO_REGISTER_MODE_MISSING);
    // The fd table is copied before the mm at fork: only a monitor-held fd can be the last one.
    const monitor = k.spawn({ name: "monitor" });
    const mfd = await p.sendFd(uffd, monitor);
    await p.close(uffd);
    const forked = p.fork();
    expect(await isBlocked(k, forked)).toBe(true);
    await monitor.close(mfd);
    const child = await forked;
    expect(child.smaps().find((v) => v.start === addr)!.vmFlags).not.toContain("um");
    expect(await child.mainThread.read(addr, 1)).toEqual(new Uint8Array([0]));
    expect(p.smaps().find((v) => v.start === addr)!.vmFlags).not.toContain("um");
    k.checkInvariants();
  });

  it("the parent dying while its FORK event is unread abandons the event", async () => {
    const { k, p, uffd } = await setup(UFFD_FEATURE_EVENT_FORK);
    const { addr } = await mapArea(p, "anon", 1);
    await register(p, uffd, addr, PS, UFFDIO_REGISTER_MODE_MISSING);
    const monitor = k.spawn({ name: "monitor" });
    const mfd = await p.sendFd(uffd, monitor);
    const forked = p.fork();
    await k.idle();
    await monitor.kill(p.pid, 9);
    // The parent died inside fork(): the call never returns (a killable wait), but the child exists.
    await expect(forked).rejects.toBeInstanceOf(DeadTaskError);
    const child = [...k.processes.values()].find((q) => q.parent === p)!;
    expect(await readMsgs(monitor, mfd)).toEqual([]);
    expect(child.smaps().find((v) => v.start === addr)!.vmFlags).not.toContain("um");
    k.checkInvariants();
  });
});

describe("UFFD_EVENT_UNMAP", () => {
  it("munmap blocks until the event is read; the range loses its registration; duplicates merge (linux-rules §4)", async () => {
    const { k, p, uffd } = await setup(UFFD_FEATURE_EVENT_UNMAP);
    const { addr } = await mapArea(p, "anon", 4);
    await register(p, uffd, addr, PS, UFFDIO_REGISTER_MODE_MISSING);
    await register(p, uffd, addr + 2 * PS, PS, UFFDIO_REGISTER_MODE_WP);
    const un = p.munmap(addr, 4 * PS);
    expect(await isBlocked(k, un)).toBe(true);
    // mmap_changing: every resolving ioctl is EAGAIN, REGISTER/UNREGISTER/WAKE are not.
    for (const [req, field, arg] of [
      [UFFDIO_COPY, "copy", { dst: 0, src: 0, len: 0, mode: 0 }],
      [UFFDIO_ZEROPAGE, "zeropage", { range: { start: 0, len: 0 }, mode: 0 }],
      [UFFDIO_CONTINUE, "mapped", { range: { start: 0, len: 0 }, mode: 0 }],
      [UFFDIO_POISON, "updated", { range: { start: 0, len: 0 }, mode: 0 }],
      [UFFDIO_MOVE, "move", { dst: 0, src: 0, len: 0, mode: 0 }],
    ] as const) {
      const a: Record<string, unknown> = { ...arg, [field]: 1 };
      expect(await errnoOf(p.ioctl(uffd, req, a))).toBe("EAGAIN");
      expect(a[field]).toBe(-11);
    }
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: 0, len: 0 }, mode: 0 }))).toBe("EAGAIN");
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_WAKE, { start: addr, len: PS }))).toBe("OK");
    const msgs = await readMsgs(p, uffd);
    expect(msgs).toEqual([{ event: UFFD_EVENT_UNMAP, arg: { remove: { start: addr, end: addr + 4 * PS } } }]);
    await un;
    expect(p.smaps().some((v) => v.start < addr + 4 * PS && v.end > addr)).toBe(false);
    k.checkInvariants();
  });

  it("mmap(MAP_FIXED) over a registered range raises UNMAP; the new mapping is not registered", async () => {
    const { k, p, uffd } = await setup(UFFD_FEATURE_EVENT_UNMAP);
    const { addr } = await mapArea(p, "anon", 2);
    await register(p, uffd, addr, 2 * PS, UFFDIO_REGISTER_MODE_MISSING);
    const mm = p.mmap(addr + PS, PS, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED);
    expect(await isBlocked(k, mm)).toBe(true);
    expect(decodeUffdMsgs(await p.read(uffd, 32))).toEqual([{ event: UFFD_EVENT_UNMAP, arg: { remove: { start: addr + PS, end: addr + 2 * PS } } }]);
    expect(await mm).toBe(addr + PS);
    expect(await p.mainThread.read(addr + PS, 1)).toEqual(new Uint8Array([0]));
    k.checkInvariants();
  });

  it("faults are read before events; closing the uffd releases a pending UNMAP waiter", async () => {
    const { k, p, uffd } = await setup(UFFD_FEATURE_EVENT_UNMAP);
    const { addr } = await mapArea(p, "anon", 2);
    await register(p, uffd, addr, 2 * PS, UFFDIO_REGISTER_MODE_MISSING);
    const un = p.munmap(addr + PS, PS);
    await k.idle();
    const r = p.mainThread.read(addr, 1);
    await k.idle();
    const msgs = await readMsgs(p, uffd, 1);
    expect(msgs.map((m) => m.event)).toEqual([UFFD_EVENT_PAGEFAULT]);
    await p.close(uffd);
    await un;
    expect(await r).toEqual(new Uint8Array([0]));
    k.checkInvariants();
  });

  it("killing the process blocked on its UNMAP event abandons it: no stale message, mmap_changing back to 0", async () => {
    const { k, p, uffd } = await setup(UFFD_FEATURE_EVENT_UNMAP);
    const { addr } = await mapArea(p, "anon", 2);
    await register(p, uffd, addr, 2 * PS, UFFDIO_REGISTER_MODE_MISSING);
    const monitor = k.spawn({ name: "monitor" });
    const mfd = await p.sendFd(uffd, monitor);
    const un = p.munmap(addr, PS);
    await k.idle();
    await monitor.kill(p.pid, 9);
    await expect(un).rejects.toBeInstanceOf(DeadTaskError);
    expect(await readMsgs(monitor, mfd)).toEqual([]);
    expect(await errnoOf(monitor.ioctl(mfd, UFFDIO_COPY, { dst: addr + PS, src: fill(0), len: PS, mode: 0 }))).toBe("ESRCH");
    k.checkInvariants();
  });

  it("UNREGISTER and REGISTER work while an event is pending; unregistering a range without vmas registered is 0", async () => {
    const { k, p, uffd } = await setup(UFFD_FEATURE_EVENT_UNMAP);
    const { addr } = await mapArea(p, "anon", 2);
    await register(p, uffd, addr, PS, UFFDIO_REGISTER_MODE_MISSING);
    const un = p.munmap(addr, PS);
    await k.idle();
    await p.ioctl(uffd, UFFDIO_UNREGISTER, { start: addr + PS, len: PS });
    await register(p, uffd, addr + PS, PS, UFFDIO_REGISTER_MODE_WP);
    await readMsgs(p, uffd);
    await un;
    k.checkInvariants();
  });
});

describe("UFFD_EVENT_REMOVE and UFFD_EVENT_REMAP", () => {
  it("MADV_DONTNEED on a registered vma raises REMOVE and waits; the vma stays registered (linux-rules §4)", async () => {
    const { k, p, uffd } = await setup(UFFD_FEATURE_EVENT_REMOVE);
    const { addr } = await mapArea(p, "anon", 2);
    await register(p, uffd, addr, 2 * PS, UFFDIO_REGISTER_MODE_MISSING);
    await p.ioctl(uffd, UFFDIO_COPY, { dst: addr, src: fill(1, 2 * PS), len: 2 * PS, mode: 0 });
    const md = p.madvise(addr, 2 * PS, MADV_DONTNEED);
    expect(await isBlocked(k, md)).toBe(true);
    const a = { dst: addr, src: fill(1), len: PS, mode: 0, copy: 0 };
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_COPY, a))).toBe("EAGAIN");
    expect(a.copy).toBe(-11);
    expect(await readMsgs(p, uffd)).toEqual([{ event: UFFD_EVENT_REMOVE, arg: { remove: { start: addr, end: addr + 2 * PS } } }]);
    await md;
    expect(p.pagemap(addr, 2).map((e) => e.present)).toEqual([false, false]);
    // Still registered: the next access is a MISSING fault again.
    const r = p.mainThread.read(addr, 1);
    await k.idle();
    expect(await readMsgs(p, uffd)).toMatchObject([{ event: UFFD_EVENT_PAGEFAULT }]);
    await p.ioctl(uffd, UFFDIO_COPY, a);
    expect(await r).toEqual(new Uint8Array([1]));
    k.checkInvariants();
  });

  it("mremap move with EVENT_REMAP|EVENT_UNMAP: REMAP (old len) then UNMAP of the old range; the registration moves (linux-rules §4, linux-rules §8.15)", async () => {
    const { k, p, uffd } = await setup(UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_UNMAP);
    const { addr } = await mapArea(p, "anon", 2);
    await register(p, uffd, addr, 2 * PS, UFFDIO_REGISTER_MODE_MISSING);
    const target = await p.mmap(0, 2 * PS, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    const mr = p.mremap(addr, 2 * PS, 2 * PS, MREMAP_MAYMOVE | MREMAP_FIXED, target);
    expect(await isBlocked(k, mr)).toBe(true);
    expect(await readMsgs(p, uffd, 1)).toEqual([{ event: UFFD_EVENT_REMAP, arg: { remap: { from: addr, to: target, len: 2 * PS } } }]);
    // The old range's UNMAP is queued once the REMAP has been read.
    expect(await isBlocked(k, mr)).toBe(true);
    const rest = await readMsgs(p, uffd);
    expect(rest.map((m) => m.event)).toEqual([UFFD_EVENT_UNMAP]);
    expect(await mr).toBe(target);
    expect(p.smaps().find((v) => v.start === target)!.vmFlags).toContain("um");
    const r = p.mainThread.read(target, 1);
    await k.idle();
    expect(await readMsgs(p, uffd)).toMatchObject([{ event: UFFD_EVENT_PAGEFAULT, arg: { pagefault: { address: target } } }]);
    await p.ioctl(uffd, UFFDIO_ZEROPAGE, { range: { start: target, len: PS }, mode: 0 });
    await r;
    k.checkInvariants();
  });

  it("mremap without EVENT_REMAP silently unregisters the moved vma and clears its uffd-wp (uffd-wp-mremap.c)", async () => {
    const { k, p, uffd } = await setup();
    const { addr } = await mapArea(p, "anon", 1);
    await register(p, uffd, addr, PS, UFFDIO_REGISTER_MODE_WP);
    await p.mainThread.write(addr, fill(1, 1));
    await p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: addr, len: PS }, mode: UFFDIO_WRITEPROTECT_MODE_WP });
    const target = await p.mmap(0, PS, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    expect(await p.mremap(addr, PS, PS, MREMAP_MAYMOVE | MREMAP_FIXED, target)).toBe(target);
    expect(p.pagemap(target, 1)[0]).toMatchObject({ present: true, uffdWp: false });
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: target, len: PS }, mode: UFFDIO_WRITEPROTECT_MODE_WP }))).toBe("ENOENT");
    k.checkInvariants();
  });
});
