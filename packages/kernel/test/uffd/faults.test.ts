/**
 * Blocking and waking: handle_userfault() messages, read(2) order, wake ranges, DONTWAKE,
 * release (docs/linux-rules.md §1.6, §1.7, §3.2, §3.3, §3.5).
 */
import { describe, expect, it } from "vitest";
import { type PollFd, SignalError } from "@uffd/kernel";
import {
  decodeUffdMsgs,
  O_NONBLOCK,
  POLLIN,
  UFFD_EVENT_PAGEFAULT,
  UFFD_FEATURE_EXACT_ADDRESS,
  UFFD_FEATURE_SIGBUS,
  UFFD_FEATURE_THREAD_ID,
  UFFD_USER_MODE_ONLY,
  UFFDIO_COPY,
  UFFDIO_COPY_MODE_DONTWAKE,
  UFFDIO_REGISTER_MODE_MISSING,
  UFFDIO_REGISTER_MODE_WP,
  UFFDIO_UNREGISTER,
  UFFDIO_WAKE,
  UFFDIO_WRITEPROTECT,
  UFFDIO_WRITEPROTECT_MODE_WP,
  UFFDIO_ZEROPAGE,
} from "@uffd/kernel/uapi";
import { errnoOf, fill, isBlocked, mapArea, PS, readMsgs, register, setup } from "./helpers.ts";

describe("missing faults block until resolved", () => {
  it("a read blocks, the message has flags 0 and the page address; COPY maps the bytes and wakes", async () => {
    const { k, p, uffd } = await setup();
    const { addr } = await mapArea(p, "anon", 4);
    await register(p, uffd, addr, 4 * PS, UFFDIO_REGISTER_MODE_MISSING);
    const r = p.mainThread.read(addr + PS + 100, 4);
    expect(await isBlocked(k, r)).toBe(true);
    const pfd: PollFd[] = [{ fd: uffd, events: POLLIN }];
    expect(await p.poll(pfd, 0)).toBe(1);
    const msgs = await readMsgs(p, uffd);
    expect(msgs).toEqual([{ event: UFFD_EVENT_PAGEFAULT, arg: { pagefault: { flags: 0, address: addr + PS, feat: { ptid: 0 } } } }]);
    expect(await p.poll(pfd, 0)).toBe(0);
    const copy = { dst: addr + PS, src: fill(7), len: PS, mode: 0, copy: 0 };
    await p.ioctl(uffd, UFFDIO_COPY, copy);
    expect(copy.copy).toBe(PS);
    expect(await r).toEqual(fill(7, 4));
    expect(p.pagemap(addr + PS, 1)[0]).toMatchObject({ present: true, exclusive: true, uffdWp: false });
    k.checkInvariants();
  });

  it("write faults carry FLAG_WRITE; THREAD_ID and EXACT_ADDRESS fill ptid and the exact address", async () => {
    const { k, p, uffd } = await setup(UFFD_FEATURE_THREAD_ID | UFFD_FEATURE_EXACT_ADDRESS);
    const { addr } = await mapArea(p, "anon", 2);
    await register(p, uffd, addr, 2 * PS, UFFDIO_REGISTER_MODE_MISSING);
    const t = p.spawnThread("worker");
    const w = t.write(addr + 0x123, new Uint8Array([9]));
    await k.idle();
    const [m] = await readMsgs(p, uffd);
    expect(m).toEqual({ event: UFFD_EVENT_PAGEFAULT, arg: { pagefault: { flags: 1, address: addr + 0x123, feat: { ptid: t.tid } } } });
    await p.ioctl(uffd, UFFDIO_ZEROPAGE, { range: { start: addr, len: PS }, mode: 0 });
    // The zero page is read-only: the write goes on through do_wp_page() without a new userfault.
    await w;
    expect(await p.mainThread.read(addr + 0x123, 1)).toEqual(new Uint8Array([9]));
    k.checkInvariants();
  });

  it("read(2) returns pending faults in FIFO order, as many as fit, two threads on one page give two messages", async () => {
    const { k, p, uffd } = await setup();
    const { addr } = await mapArea(p, "anon", 4);
    await register(p, uffd, addr, 4 * PS, UFFDIO_REGISTER_MODE_MISSING);
    const a = p.spawnThread().read(addr + 2 * PS, 1);
    await k.idle();
    const b = p.spawnThread().read(addr, 1);
    await k.idle();
    const c = p.spawnThread().read(addr, 1);
    await k.idle();
    const first = decodeUffdMsgs(await p.read(uffd, 80));
    expect(first.map((m) => (m.event === UFFD_EVENT_PAGEFAULT ? m.arg.pagefault.address : -1))).toEqual([addr + 2 * PS, addr]);
    const rest = await readMsgs(p, uffd);
    expect(rest).toHaveLength(1);
    expect(await errnoOf(p.read(uffd, 32))).toBe("EAGAIN");
    // A wake of [addr, addr + PS) releases the two waiters there (read ones included), not the third.
    await p.ioctl(uffd, UFFDIO_ZEROPAGE, { range: { start: addr, len: PS }, mode: 0 });
    await Promise.all([b, c]);
    expect(await isBlocked(k, a)).toBe(true);
    await p.ioctl(uffd, UFFDIO_ZEROPAGE, { range: { start: addr + 2 * PS, len: PS }, mode: 0 });
    await a;
    k.checkInvariants();
  });

  it("a blocking read sleeps until the first message, then returns what is queued", async () => {
    const { k, p, uffd: _ } = await setup();
    const uffd = await p.userfaultfd(0);
    await p.ioctl(uffd, 0xc018aa3f, { api: 0xaa, features: 0 });
    const { addr } = await mapArea(p, "anon", 1);
    await register(p, uffd, addr, PS, UFFDIO_REGISTER_MODE_MISSING);
    const rd = p.read(uffd, 64);
    expect(await isBlocked(k, rd)).toBe(true);
    const f = p.mainThread.write(addr, new Uint8Array([1]));
    const msgs = decodeUffdMsgs(await rd);
    expect(msgs).toHaveLength(1);
    await p.ioctl(uffd, UFFDIO_COPY, { dst: addr, src: fill(0), len: PS, mode: 0 });
    await f;
    k.checkInvariants();
  });

  it("COPY with DONTWAKE leaves the thread blocked; WAKE of another page does not wake it, WAKE of its page does (linux-rules §3.3)", async () => {
    const { k, p, uffd } = await setup();
    const { addr } = await mapArea(p, "anon", 2);
    await register(p, uffd, addr, 2 * PS, UFFDIO_REGISTER_MODE_MISSING);
    const r = p.mainThread.read(addr, 1);
    await k.idle();
    await readMsgs(p, uffd);
    await p.ioctl(uffd, UFFDIO_COPY, { dst: addr, src: fill(3), len: PS, mode: UFFDIO_COPY_MODE_DONTWAKE });
    expect(await isBlocked(k, r)).toBe(true);
    await p.ioctl(uffd, UFFDIO_WAKE, { start: addr + PS, len: PS });
    expect(await isBlocked(k, r)).toBe(true);
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_WAKE, { start: addr, len: 0 }))).toBe("EINVAL");
    await p.ioctl(uffd, UFFDIO_WAKE, { start: addr, len: PS });
    expect(await r).toEqual(new Uint8Array([3]));
    k.checkInvariants();
  });

  it("UFFD_FEATURE_SIGBUS: the access gets SIGBUS and no message is queued (linux-rules §3.2 step 3)", async () => {
    const { k, p, uffd } = await setup(UFFD_FEATURE_SIGBUS);
    const { addr } = await mapArea(p, "anon", 1);
    await register(p, uffd, addr, PS, UFFDIO_REGISTER_MODE_MISSING);
    const err = await p.mainThread.read(addr, 1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SignalError);
    expect(err).toMatchObject({ signal: "SIGBUS", address: addr });
    expect(await readMsgs(p, uffd)).toEqual([]);
    k.checkInvariants();
  });

  it("UFFD_USER_MODE_ONLY: a kernel-mode access is EFAULT, a user access raises a message (linux-rules §3.2 step 4)", async () => {
    const { k, p, uffd } = await setup(0, O_NONBLOCK | UFFD_USER_MODE_ONLY);
    const { addr } = await mapArea(p, "anon", 1);
    await register(p, uffd, addr, PS, UFFDIO_REGISTER_MODE_MISSING);
    const memfd = await p.memfdCreate("f");
    await p.ftruncate(memfd, PS);
    expect(await errnoOf(p.pread(memfd, { addr, length: 16 }, 0))).toBe("EFAULT");
    expect(await readMsgs(p, uffd)).toEqual([]);
    const r = p.mainThread.read(addr, 1);
    await k.idle();
    expect(await readMsgs(p, uffd)).toHaveLength(1);
    await p.ioctl(uffd, UFFDIO_ZEROPAGE, { range: { start: addr, len: PS }, mode: 0 });
    await r;
    k.checkInvariants();
  });

  it("a kernel-mode access through a normal uffd raises a write fault and the syscall completes after COPY", async () => {
    const { k, p, uffd } = await setup();
    const { addr } = await mapArea(p, "anon", 1);
    await register(p, uffd, addr, PS, UFFDIO_REGISTER_MODE_MISSING);
    const memfd = await p.memfdCreate("f");
    await p.pwrite(memfd, fill(5, 16), 0);
    const rd = p.pread(memfd, { addr, length: 16 }, 0);
    await k.idle();
    const [m] = await readMsgs(p, uffd);
    expect(m).toMatchObject({ arg: { pagefault: { flags: 1, address: addr } } });
    await p.ioctl(uffd, UFFDIO_COPY, { dst: addr, src: fill(0), len: PS, mode: 0 });
    expect(await rd).toBe(16);
    expect(await p.mainThread.read(addr, 16)).toEqual(fill(5, 16));
    k.checkInvariants();
  });

  it("closing the uffd wakes blocked faults, which then fault normally (zero page), and clears uffd-wp (linux-rules §3.5)", async () => {
    const { k, p, uffd } = await setup();
    const { addr } = await mapArea(p, "anon", 2);
    await register(p, uffd, addr, 2 * PS, UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP);
    await p.ioctl(uffd, UFFDIO_COPY, { dst: addr + PS, src: fill(1), len: PS, mode: 2 });
    expect(p.pagemap(addr + PS, 1)[0]!.uffdWp).toBe(true);
    const r = p.mainThread.read(addr, 1);
    await k.idle();
    await readMsgs(p, uffd);
    await p.close(uffd);
    expect(await r).toEqual(new Uint8Array([0]));
    expect(p.pagemap(addr, 2).map((e) => [e.present, e.pfn === k.zeroPfn, e.uffdWp])).toEqual([
      [true, true, false],
      [true, false, false],
    ]);
    expect(p.smaps().find((v) => v.start <= addr && v.end > addr)!.vmFlags).not.toContain("um");
    await p.mainThread.write(addr + PS, new Uint8Array([2]));
    k.checkInvariants();
  });

  it("a blocked read holds the file: close() of the fd does not release it (Linux fdget semantics)", async () => {
    const { k, p } = await setup();
    const uffd = await p.userfaultfd(0);
    await p.ioctl(uffd, 0xc018aa3f, { api: 0xaa, features: 0 });
    const { addr } = await mapArea(p, "anon", 1);
    await register(p, uffd, addr, PS, UFFDIO_REGISTER_MODE_MISSING);
    const rd = p.read(uffd, 32);
    await k.idle();
    await p.close(uffd);
    const f = p.mainThread.read(addr, 1);
    // The context is still alive: the fault is delivered to the blocked reader.
    expect(decodeUffdMsgs(await rd)).toHaveLength(1);
    // Now the last reference is gone: release woke the fault, which maps the zero page.
    expect(await f).toEqual(new Uint8Array([0]));
    k.checkInvariants();
  });

  it("UNREGISTER wakes MISSING waiters, not waiters of a WP-only vma (linux-rules §2.3, linux-rules §8.7)", async () => {
    const { k, p, uffd } = await setup();
    const { addr } = await mapArea(p, "anon", 2);
    await p.mainThread.write(addr + PS, new Uint8Array([1]));
    await register(p, uffd, addr, PS, UFFDIO_REGISTER_MODE_MISSING);
    await register(p, uffd, addr + PS, PS, UFFDIO_REGISTER_MODE_WP);
    await p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: addr + PS, len: PS }, mode: UFFDIO_WRITEPROTECT_MODE_WP });
    const miss = p.mainThread.read(addr, 1);
    const wp = p.spawnThread().write(addr + PS, new Uint8Array([2]));
    await k.idle();
    const msgs = await readMsgs(p, uffd);
    expect(msgs.map((m) => (m.event === UFFD_EVENT_PAGEFAULT ? m.arg.pagefault.flags : -1)).sort()).toEqual([0, 3]);
    await p.ioctl(uffd, UFFDIO_UNREGISTER, { start: addr, len: 2 * PS });
    expect(await miss).toEqual(new Uint8Array([0]));
    expect(await isBlocked(k, wp)).toBe(true);
    await p.ioctl(uffd, UFFDIO_WAKE, { start: addr + PS, len: PS });
    await wp;
    expect(await p.mainThread.read(addr + PS, 1)).toEqual(new Uint8Array([2]));
    k.checkInvariants();
  });

  it("the faulting process exiting removes its unread messages", async () => {
    const { k, p, uffd } = await setup();
    const { addr } = await mapArea(p, "anon", 1);
    await register(p, uffd, addr, PS, UFFDIO_REGISTER_MODE_MISSING);
    const monitor = k.spawn({ name: "monitor" });
    const mfd = await p.sendFd(uffd, monitor);
    const r = p.mainThread.read(addr, 1).catch((e: unknown) => e);
    await k.idle();
    await p.exit(0);
    await r;
    expect(await readMsgs(monitor, mfd)).toEqual([]);
    expect(await errnoOf(monitor.ioctl(mfd, UFFDIO_COPY, { dst: addr, src: fill(0), len: PS, mode: 0 }))).toBe("ESRCH");
    expect(await errnoOf(monitor.ioctl(mfd, 0xc020aa00, { range: { start: addr, len: PS }, mode: 1 }))).toBe("ENOMEM");
    await monitor.close(mfd);
    k.checkInvariants();
  });
});
