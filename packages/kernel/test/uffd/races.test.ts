/**
 * Races around the blocking points: poll(2) wakeups, a COPY whose source must be faulted in
 * while the destination changes (mfill_atomic()'s retry after copy_from_user outside the lock),
 * put_user() failures (docs/linux-rules.md §1.7, §2.0, §2.5).
 */
import { describe, expect, it } from "vitest";
import type { PollFd } from "@uffd/kernel";
import { POLLIN, UFFDIO_COPY, UFFDIO_REGISTER, UFFDIO_REGISTER_MODE_MISSING, UFFDIO_UNREGISTER, UFFDIO_ZEROPAGE } from "@uffd/kernel/uapi";
import { errnoOf, fill, isBlocked, mapArea, PS, readMsgs, register, setup } from "./helpers.ts";

describe("blocking points", () => {
  it("poll(-1) sleeps until a fault is queued, then reports POLLIN", async () => {
    const { k, p, uffd } = await setup();
    const { addr } = await mapArea(p, "anon", 1);
    await register(p, uffd, addr, PS, UFFDIO_REGISTER_MODE_MISSING);
    const fds: PollFd[] = [{ fd: uffd, events: POLLIN }];
    const pl = p.poll(fds, -1);
    expect(await isBlocked(k, pl)).toBe(true);
    const r = p.mainThread.read(addr, 1);
    expect(await pl).toBe(1);
    expect(fds[0]!.revents).toBe(POLLIN);
    await readMsgs(p, uffd);
    await p.ioctl(uffd, UFFDIO_ZEROPAGE, { range: { start: addr, len: PS }, mode: 0 });
    await r;
    k.checkInvariants();
  });

  it("a frozen struct fails put_user with EFAULT; REGISTER's registration stays in place (linux-rules §2.2 #11)", async () => {
    const { k, p, uffd } = await setup();
    const { addr } = await mapArea(p, "anon", 1);
    const arg = Object.freeze({ range: { start: addr, len: PS }, mode: UFFDIO_REGISTER_MODE_MISSING });
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_REGISTER, arg))).toBe("EFAULT");
    expect(p.smaps().find((v) => v.start === addr)!.vmFlags).toContain("um");
    const copy = Object.freeze({ dst: addr, src: fill(1), len: PS, mode: 0, copy: 0 });
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_COPY, copy))).toBe("EFAULT");
    // The copy happened before the result could not be reported.
    expect(await p.mainThread.read(addr, 1)).toEqual(new Uint8Array([1]));
    k.checkInvariants();
  });

  it("a COPY waiting for its source sees the destination unmapped meanwhile: ENOENT, the page is freed", async () => {
    const { k, p, uffd } = await setup();
    const { addr: src } = await mapArea(p, "anon", 1);
    const { addr: dst } = await mapArea(p, "anon", 1);
    await register(p, uffd, src, PS, UFFDIO_REGISTER_MODE_MISSING);
    await register(p, uffd, dst, PS, UFFDIO_REGISTER_MODE_MISSING);
    const a = { dst, src, len: PS, mode: 0, copy: 0 };
    const cp = p.ioctl(uffd, UFFDIO_COPY, a);
    expect(await isBlocked(k, cp)).toBe(true);
    await p.ioctl(uffd, UFFDIO_UNREGISTER, { start: dst, len: PS });
    await readMsgs(p, uffd);
    await p.ioctl(uffd, UFFDIO_COPY, { dst: src, src: fill(2), len: PS, mode: 0 });
    expect(await errnoOf(cp)).toBe("ENOENT");
    expect(a.copy).toBe(-2);
    k.checkInvariants();
  });

  it("... or filled by another COPY meanwhile: EEXIST, and the reader was woken by the winner", async () => {
    const { k, p, uffd } = await setup();
    const { addr: src } = await mapArea(p, "anon", 1);
    const { addr: dst } = await mapArea(p, "anon", 1);
    await register(p, uffd, src, PS, UFFDIO_REGISTER_MODE_MISSING);
    await register(p, uffd, dst, PS, UFFDIO_REGISTER_MODE_MISSING);
    const reader = p.spawnThread().read(dst, 1);
    await k.idle();
    const slow = { dst, src, len: PS, mode: 0, copy: 0 };
    const cp = p.ioctl(uffd, UFFDIO_COPY, slow);
    await k.idle();
    await p.ioctl(uffd, UFFDIO_COPY, { dst, src: fill(3), len: PS, mode: 0 });
    expect(await reader).toEqual(new Uint8Array([3]));
    await p.ioctl(uffd, UFFDIO_COPY, { dst: src, src: fill(4), len: PS, mode: 0 });
    expect(await errnoOf(cp)).toBe("EEXIST");
    expect(slow.copy).toBe(-17);
    k.checkInvariants();
  });
});
