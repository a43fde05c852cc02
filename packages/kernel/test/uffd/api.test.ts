/**
 * userfaultfd creation and the UFFDIO_API handshake (docs/linux-rules.md §1.1, §1.3, §2.1, §8.1).
 */
import { describe, expect, it } from "vitest";
import { ErrnoError, Kernel, type PollFd } from "@uffd/kernel";
import {
  F_GETFD,
  F_GETFL,
  O_CLOEXEC,
  O_NONBLOCK,
  POLLERR,
  POLLIN,
  UFFD_API,
  UFFD_FEATURE_EVENT_FORK,
  UFFD_FEATURE_WP_ASYNC,
  UFFD_USER_MODE_ONLY,
  UFFDIO_API,
  UFFDIO_REGISTER,
  UFFDIO_WAKE,
} from "@uffd/kernel/uapi";
import { errnoOf, PS } from "./helpers.ts";

describe("userfaultfd(2) and /dev/userfaultfd", () => {
  it("without UFFD_USER_MODE_ONLY an unprivileged caller gets EPERM, checked before the flags (linux-rules §1.1)", async () => {
    const k = new Kernel();
    const nobody = k.spawn({ uid: 65534 });
    expect(await errnoOf(nobody.userfaultfd(0))).toBe("EPERM");
    expect(await errnoOf(nobody.userfaultfd(0x4000_0000))).toBe("EPERM");
    expect(await errnoOf(nobody.userfaultfd(UFFD_USER_MODE_ONLY | 0x4000_0000))).toBe("EINVAL");
    expect(await nobody.userfaultfd(UFFD_USER_MODE_ONLY)).toBeGreaterThanOrEqual(0);
    const ptracer = k.spawn({ uid: 1000, capabilities: ["CAP_SYS_PTRACE"] });
    expect(await ptracer.userfaultfd(0)).toBeGreaterThanOrEqual(0);
    const sysctl = new Kernel({ unprivilegedUserfaultfd: true }).spawn({ uid: 65534 });
    expect(await sysctl.userfaultfd(0)).toBeGreaterThanOrEqual(0);
    k.checkInvariants();
  });

  it("root: bad flags are EINVAL; the fd is O_RDONLY plus O_NONBLOCK, with O_CLOEXEC on the fd", async () => {
    const k = new Kernel();
    const p = k.spawn();
    expect(await errnoOf(p.userfaultfd(2))).toBe("EINVAL");
    const fd = await p.userfaultfd(O_CLOEXEC | O_NONBLOCK);
    expect(await p.fcntl(fd, F_GETFL)).toBe(O_NONBLOCK);
    expect(await p.fcntl(fd, F_GETFD)).toBe(1);
    const fd2 = await p.userfaultfd(0);
    expect(await p.fcntl(fd2, F_GETFL)).toBe(0);
    expect(await p.fcntl(fd2, F_GETFD)).toBe(0);
  });

  it("/dev/userfaultfd is root only (EACCES), then takes the same flags (EINVAL) without capability checks", async () => {
    const k = new Kernel();
    expect(await errnoOf(k.spawn({ uid: 1000 }).openDevUserfaultfd(0))).toBe("EACCES");
    const p = k.spawn();
    expect(await errnoOf(p.openDevUserfaultfd(4))).toBe("EINVAL");
    const fd = await p.openDevUserfaultfd(O_NONBLOCK);
    const api = { api: UFFD_API, features: 0, ioctls: 0n };
    await p.ioctl(fd, UFFDIO_API, api);
    expect(api).toEqual({ api: UFFD_API, features: 0x1ffff, ioctls: 0x8000000000000003n });
  });
});

describe("UFFDIO_API (linux-rules §2.1)", () => {
  it("reports every feature and the API ioctls; a second API fails even with features 0 (linux-rules §8.1)", async () => {
    const p = new Kernel().spawn();
    const fd = await p.userfaultfd(O_NONBLOCK);
    const api = { api: UFFD_API, features: 0, ioctls: 0n };
    await p.ioctl(fd, UFFDIO_API, api);
    expect(api.features).toBe(0x1ffff);
    expect(api.ioctls).toBe(0x8000000000000003n);
    const again = { api: UFFD_API, features: 0, ioctls: 5n };
    const err = await p.ioctl(fd, UFFDIO_API, again).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ErrnoError);
    expect(err).toMatchObject({ code: "EINVAL", errno: 22, syscall: "ioctl" });
    expect(again).toEqual({ api: 0, features: 0, ioctls: 0n });
  });

  it("failed calls zero the struct and leave the context uninitialized (uffd-unit-tests.c: test_uffd_api)", async () => {
    const p = new Kernel().spawn();
    const fd = await p.userfaultfd(O_NONBLOCK);
    const bad = { api: 0xab, features: 0, ioctls: 7n };
    expect(await errnoOf(p.ioctl(fd, UFFDIO_API, bad))).toBe("EINVAL");
    expect(bad).toEqual({ api: 0, features: 0, ioctls: 0n });
    const high = { api: UFFD_API, features: 2 ** 63 };
    expect(await errnoOf(p.ioctl(fd, UFFDIO_API, high))).toBe("EINVAL");
    expect(await errnoOf(p.ioctl(fd, UFFDIO_API, { api: UFFD_API, features: 1 << 17 }))).toBe("EINVAL");
    await p.ioctl(fd, UFFDIO_API, { api: UFFD_API, features: 0 });
    expect(await errnoOf(p.ioctl(fd, UFFDIO_API, { api: UFFD_API, features: 1 }))).toBe("EINVAL");
  });

  it("EVENT_FORK needs CAP_SYS_PTRACE (EPERM, retry allowed); missing fields are EFAULT", async () => {
    const p = new Kernel().spawn({ uid: 1000 });
    const fd = await p.userfaultfd(UFFD_USER_MODE_ONLY);
    expect(await errnoOf(p.ioctl(fd, UFFDIO_API, { api: UFFD_API, features: UFFD_FEATURE_EVENT_FORK }))).toBe("EPERM");
    expect(await errnoOf(p.ioctl(fd, UFFDIO_API, { api: UFFD_API }))).toBe("EFAULT");
    await p.ioctl(fd, UFFDIO_API, { api: UFFD_API, features: UFFD_FEATURE_WP_ASYNC });
  });

  it("before API: other ioctls and read are EINVAL, poll is POLLERR; after it a blocking fd still polls POLLERR", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const fd = await p.userfaultfd(O_NONBLOCK);
    expect(await errnoOf(p.ioctl(fd, UFFDIO_WAKE, { start: 0x100000, len: PS }))).toBe("EINVAL");
    expect(await errnoOf(p.ioctl(fd, UFFDIO_REGISTER, { range: { start: 0, len: 0 }, mode: 1 }))).toBe("EINVAL");
    expect(await errnoOf(p.read(fd, 32))).toBe("EINVAL");
    const pfd: PollFd[] = [{ fd, events: POLLIN }];
    expect(await p.poll(pfd, 0)).toBe(1);
    expect(pfd[0]!.revents).toBe(POLLERR);
    await p.ioctl(fd, UFFDIO_API, { api: UFFD_API, features: 0 });
    expect(await p.poll(pfd, 0)).toBe(0);
    expect(await errnoOf(p.read(fd, 31))).toBe("EINVAL");
    expect(await errnoOf(p.read(fd, 32))).toBe("EAGAIN");
    expect(await errnoOf(p.ioctl(fd, 0xc018aa09, {}))).toBe("EINVAL");
    const blocking = await p.userfaultfd(0);
    await p.ioctl(blocking, UFFDIO_API, { api: UFFD_API, features: 0 });
    const bfd: PollFd[] = [{ fd: blocking, events: POLLIN }];
    expect(await p.poll(bfd, 0)).toBe(1);
    expect(bfd[0]!.revents).toBe(POLLERR);
  });
});
