/**
 * Regressions: values a buggy or hostile caller passes that once corrupted the simulation. Each
 * case failed before the argument layer (src/uapi/abi.ts) and the fixes next to it; the expected
 * errnos are the host's for the nearest C value (probed on the reference host, Linux 6.18.44,
 * with raw syscall(2) calls), or the refusal the argument layer documents for values no register
 * can hold.
 */
import { DeadTaskError, ErrnoError, Kernel, type Process, SignalError } from "@uffd/kernel";
import {
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_PRIVATE,
  MAP_SHARED,
  O_NONBLOCK,
  PAGE_SIZE,
  PROT_READ,
  PROT_WRITE,
  SEEK_END,
  UFFD_API,
  UFFD_FEATURE_EVENT_FORK,
  UFFD_FEATURE_EVENT_UNMAP,
  UFFD_USER_MODE_ONLY,
  UFFDIO_API,
  UFFDIO_COPY,
  UFFDIO_REGISTER,
  UFFDIO_REGISTER_MODE_MISSING,
  MAP_NORESERVE,
  POLLIN,
  POLLNVAL,
} from "@uffd/kernel/uapi";
import { describe, expect, it } from "vitest";
import { errnoOf, expectErrno } from "../helpers.ts";

const PS = PAGE_SIZE;
const RW = PROT_READ | PROT_WRITE;
const ANON = MAP_PRIVATE | MAP_ANONYMOUS;

async function uffdFor(p: Process, features: number, addr: number, len: number): Promise<number> {
  const uffd = await p.userfaultfd(O_NONBLOCK);
  await p.ioctl(uffd, UFFDIO_API, { api: UFFD_API, features });
  await p.ioctl(uffd, UFFDIO_REGISTER, { range: { start: addr, len }, mode: UFFDIO_REGISTER_MODE_MISSING });
  return uffd;
}

function vmaStarts(p: Process): number[] {
  return p.smaps().map((v) => v.start);
}

describe("lengths and addresses that are not numbers change nothing", () => {
  it("munmap(addr, NaN) is EINVAL and unmaps nothing (it used to unmap everything above addr)", async () => {
    const k = new Kernel({ seed: 1 });
    const p = k.spawn();
    const a = await p.mmap(0, 4 * PS, RW, ANON);
    const b = await p.mmap(0, PS, PROT_READ, ANON);
    const before = p.smaps();
    for (const bad of [NaN, Infinity, -Infinity, 1.5, "4096", null, undefined, {}]) {
      await expectErrno(p.munmap(Math.min(a, b), bad as number), "EINVAL");
      await expectErrno(p.munmap(bad as number, PS), "EINVAL");
    }
    expect(p.smaps()).toEqual(before);
  });

  it("mprotect(addr, NaN, prot) is EINVAL and changes no protection", async () => {
    const k = new Kernel({ seed: 1 });
    const p = k.spawn();
    const a = await p.mmap(0, 4 * PS, RW, ANON);
    const before = p.smaps();
    await expectErrno(p.mprotect(a, NaN, PROT_READ), "EINVAL");
    await expectErrno(p.mprotect(a, PS, NaN), "EINVAL");
    await expectErrno(p.mprotect(a, 0.5, PROT_READ), "EINVAL");
    expect(p.smaps()).toEqual(before);
    await p.mainThread.write(a, new Uint8Array([1]));
  });

  it("mmap(addr, NaN, ..., MAP_FIXED) over a registered range is EINVAL, unmaps nothing and leaves no event pending", async () => {
    const k = new Kernel({ seed: 1 });
    const p = k.spawn();
    const a = await p.mmap(0, 4 * PS, RW, ANON);
    const uffd = await uffdFor(p, UFFD_FEATURE_EVENT_UNMAP, a, 4 * PS);
    const before = p.smaps();
    await expectErrno(p.mmap(a, NaN, RW, ANON | MAP_FIXED), "EINVAL");
    await expectErrno(p.mmap(NaN, PS, RW, ANON | MAP_FIXED), "EINVAL");
    expect(p.smaps()).toEqual(before);
    // No UNMAP event was raised, so mmap_changing is 0 and resolving works.
    const arg = { dst: a, src: new Uint8Array(PS).fill(7), len: PS, mode: 0, copy: 0 };
    await p.ioctl(uffd, UFFDIO_COPY, arg);
    expect(arg.copy).toBe(PS);
  });

  it("a store or load at a NaN or fractional address is SIGSEGV and touches no page", async () => {
    const k = new Kernel({ seed: 1 });
    const p = k.spawn();
    const a = await p.mmap(0, PS, RW, ANON);
    for (const bad of [NaN, a + 0.5, "0", null, -Infinity]) {
      const e = await p.mainThread.write(bad as number, new Uint8Array([9])).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(SignalError);
      expect((e as SignalError).signal).toBe("SIGSEGV");
      const r = await p.mainThread.read(bad as number, 1).catch((x: unknown) => x);
      expect(r).toBeInstanceOf(SignalError);
    }
    expect(p.pagemap(a, 1)[0]!.present).toBe(false);
    expect(await p.mainThread.read(a, 1)).toEqual(new Uint8Array([0]));
  });

  it("NaN, fractional and non-number file offsets are EINVAL and never reach the page cache", async () => {
    const k = new Kernel({ seed: 1 });
    const p = k.spawn();
    const fd = await p.memfdCreate("f");
    await p.ftruncate(fd, 2 * PS);
    for (const bad of [NaN, 0.5, 4096.5, Infinity, "0", null]) {
      await expectErrno(p.pwrite(fd, new Uint8Array([1]), bad as number), "EINVAL");
      await expectErrno(p.pread(fd, 1, bad as number), "EINVAL");
      await expectErrno(p.mmap(0, PS, RW, MAP_SHARED, fd, bad as number), "EINVAL");
      await expectErrno(p.fallocate(fd, 0, bad as number, PS), "EINVAL");
      await expectErrno(p.ftruncate(fd, bad as number), "EINVAL");
    }
    // i_size is still 2 pages and the cache holds nothing.
    expect(await p.lseek(fd, 0, SEEK_END)).toBe(2 * PS);
    expect(await p.pread(fd, 3 * PS, 0)).toEqual(new Uint8Array(2 * PS));
  });
});

describe("negative lengths and addresses are what C makes of them (host-probed)", () => {
  it("mmap with a negative length is ENOMEM; at a negative MAP_FIXED address ENOMEM even for root", async () => {
    const k = new Kernel({ seed: 1 });
    const p = k.spawn();
    // mm/mmap.c:do_mmap(): PAGE_ALIGN(2^64 - 1) is 0 and 2^64 - 4096 exceeds TASK_SIZE: ENOMEM [host].
    await expectErrno(p.mmap(0, -1, RW, ANON), "ENOMEM");
    await expectErrno(p.mmap(0, -PS, RW, ANON), "ENOMEM");
    await expectErrno(p.mmap(0, -1n as unknown as number, RW, ANON), "ENOMEM");
    // __get_unmapped_area(): a MAP_FIXED address past TASK_SIZE - len is ENOMEM [host].
    await expectErrno(p.mmap(-PS, PS, RW, ANON | MAP_FIXED), "ENOMEM");
    expect(p.smaps()).toEqual([]);
    // A negative hint without MAP_FIXED is only a hint: ignored [host].
    const a = await p.mmap(-PS, PS, RW, ANON);
    expect(a).toBeGreaterThan(0);
  });

  it("munmap with a negative length or address is EINVAL; mprotect with a negative length ENOMEM; madvise EINVAL", async () => {
    const k = new Kernel({ seed: 1 });
    const p = k.spawn();
    const a = await p.mmap(0, 2 * PS, RW, ANON);
    const before = p.smaps();
    // mm/vma.c:do_vmi_munmap(): len > TASK_SIZE - start [host].
    await expectErrno(p.munmap(a, -1), "EINVAL");
    await expectErrno(p.munmap(-PS, PS), "EINVAL");
    // mm/mprotect.c:do_mprotect_pkey(): start + PAGE_ALIGN(len) wraps to <= start [host].
    await expectErrno(p.mprotect(a, -1, PROT_READ), "ENOMEM");
    await expectErrno(p.mprotect(a, -PS, PROT_READ), "ENOMEM");
    // mm/madvise.c: the end wraps [host].
    await expectErrno(p.madvise(a, -1, 4), "EINVAL");
    // mincore: access_ok() fails [host].
    await expectErrno(p.mincore(a, -1), "ENOMEM");
    expect(p.smaps()).toEqual(before);
  });

  it("a file offset of -4096 is EOVERFLOW for a file mapping and ignored for an anonymous one [host]", async () => {
    const k = new Kernel({ seed: 1 });
    const p = k.spawn();
    const fd = await p.memfdCreate("f");
    await p.ftruncate(fd, PS);
    // mm/mmap.c:file_mmap_ok(): pgoff past (MAX_LFS_FILESIZE - len) >> PAGE_SHIFT.
    await expectErrno(p.mmap(0, PS, RW, MAP_SHARED, fd, -PS), "EOVERFLOW");
    await expectErrno(p.mmap(0, PS, RW, MAP_PRIVATE, fd, -PS), "EOVERFLOW");
    expect(await p.mmap(0, PS, RW, ANON, -1, -PS)).toBeGreaterThan(0);
    // Misaligned is still EINVAL, for both.
    await expectErrno(p.mmap(0, PS, RW, ANON, -1, 1), "EINVAL");
  });
});

describe("the C integer types", () => {
  it("userfaultfd(0x100000001) is userfaultfd(1), UFFD_USER_MODE_ONLY: allowed unprivileged; 0x100000000 is 0: EPERM", async () => {
    const k = new Kernel({ seed: 1 });
    const user = k.spawn({ uid: 1000 });
    expect(UFFD_USER_MODE_ONLY).toBe(1);
    // SYSCALL_DEFINE1(userfaultfd, int, flags) [host: returns an fd].
    expect(await user.userfaultfd(0x1_0000_0001)).toBeGreaterThanOrEqual(0);
    await expectErrno(user.userfaultfd(0x1_0000_0000), "EPERM");
    expect(await user.userfaultfd(0x1_0000_0001n as unknown as number)).toBeGreaterThanOrEqual(0);
  });

  it("an fd with bits above 31 is the fd of its low 32 bits (ftruncate, close take an unsigned int) [host]", async () => {
    const k = new Kernel({ seed: 1 });
    const p = k.spawn();
    const fd = await p.memfdCreate("f");
    await p.ftruncate(fd + 2 ** 32, PS);
    expect(await p.lseek(fd, 0, SEEK_END)).toBe(PS);
    await p.close(fd + 2 ** 32);
    await expectErrno(p.close(fd), "EBADF");
  });

  it("values no register can hold: EINVAL for scalars, EBADF for fds, EFAULT for pointers", async () => {
    const k = new Kernel({ seed: 1 });
    const p = k.spawn();
    await expectErrno(p.close(NaN), "EBADF");
    await expectErrno(p.close("0" as unknown as number), "EBADF");
    await expectErrno(p.read(0.5, 1), "EBADF");
    await expectErrno(p.userfaultfd(2 ** 64), "EINVAL");
    await expectErrno(p.userfaultfd(2n ** 64n as unknown as number), "EINVAL");
    await expectErrno(p.kill(p.pid, NaN), "EINVAL");
    await expectErrno(p.memfdCreate(7 as unknown as string), "EFAULT");
    const fd = await p.memfdCreate("f");
    await expectErrno(p.pwrite(fd, { addr: NaN, length: 1 }, 0), "EFAULT");
    await expectErrno(p.pwrite(fd, "bytes" as unknown as Uint8Array, 0), "EFAULT");
    await expectErrno(p.pwrite(fd, { addr: 0x10000, length: NaN }, 0), "EINVAL");
  });

  it("poll with a timeout that is not a number is EINVAL; fds that are not pollfds are EFAULT", async () => {
    const k = new Kernel({ seed: 1 });
    const p = k.spawn();
    const [r] = await p.pipe();
    for (const bad of [NaN, Infinity, "10", null, {}]) await expectErrno(p.poll([{ fd: r, events: 1 }], bad as number), "EINVAL");
    // A fractional timeout is a sub-millisecond wait on the virtual clock (docs/divergences.md).
    expect(await p.poll([{ fd: r, events: 1 }], 0.5)).toBe(0);
    await expectErrno(p.poll(null as unknown as [], 0), "EFAULT");
    await expectErrno(p.poll([{ fd: "x", events: 1 } as unknown as { fd: number; events: number }], 0), "EFAULT");
    // int timeout: 2^32 is 0, a check that returns at once [host].
    expect(await p.poll([{ fd: r, events: 1 }], 2 ** 32)).toBe(0);
  });
});

describe("fork and files under pressure", () => {
  it("fork() out of memory copying a maybe-pinned page is ENOMEM: no child is left and the FORK context is undone", async () => {
    const k = new Kernel({ seed: 1, memoryPages: 32 });
    const p = k.spawn();
    const a = await p.mmap(0, 64 * PS, RW, ANON | MAP_NORESERVE);
    // A registered page, with EVENT_FORK: dup_userfaultfd() makes a child context and raises mmap_changing.
    const uffd = await uffdFor(p, UFFD_FEATURE_EVENT_FORK, a + 63 * PS, PS);
    // A long-term pinned page must be copied at fork (copy_present_page()).
    const pin = await p.gupTestPin(a, PS, { write: true, longterm: true, fast: false });
    // Use up every free frame.
    for (let i = 1; i < 63; i++) {
      const r = await p.mainThread.write(a + i * PS, new Uint8Array([i])).catch((e: unknown) => e);
      if (r instanceof SignalError) break;
    }
    const pids = [...k.processes.keys()];
    await expectErrno(p.fork(), "ENOMEM");
    expect([...k.processes.keys()]).toEqual(pids);
    expect(p.children.size).toBe(0);
    // dup_userfaultfd_fail(): the parent context answers again (EAGAIN forever before the fix).
    const arg = { dst: a + 63 * PS, src: new Uint8Array(PS), len: PS, mode: 0, copy: 0 };
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_COPY, arg))).not.toBe("EAGAIN");
    await pin.unregister();
    k.checkInvariants();
  });

  it("pwrite from user memory that sleeps on a userfault holds its file: a close() meanwhile frees nothing under it", async () => {
    const k = new Kernel({ seed: 1 });
    const p = k.spawn();
    const src = await p.mmap(0, PS, RW, ANON);
    const uffd = await uffdFor(p, 0, src, PS);
    const fd = await p.memfdCreate("f");
    const framesBefore = k.core.mem.inUse;
    const w = p.pwrite(fd, { addr: src, length: PS }, 0);
    await k.idle();
    await p.close(fd);
    await p.ioctl(uffd, UFFDIO_COPY, { dst: src, src: new Uint8Array(PS).fill(5), len: PS, mode: 0 });
    expect(await w).toBe(PS);
    // The write went to the inode, which the last reference (the pwrite's) then released with its pages.
    k.checkInvariants();
    await p.munmap(src, PS);
    expect(k.core.mem.inUse).toBe(framesBefore);
  });

  it("write(2) holds its file while it sleeps too", async () => {
    const k = new Kernel({ seed: 1 });
    const p = k.spawn();
    const src = await p.mmap(0, PS, RW, ANON);
    const uffd = await uffdFor(p, 0, src, PS);
    const fd = await p.memfdCreate("f");
    const w = p.write(fd, { addr: src, length: PS });
    await k.idle();
    await p.close(fd);
    await p.ioctl(uffd, UFFDIO_COPY, { dst: src, src: new Uint8Array(PS).fill(5), len: PS, mode: 0 });
    expect(await w).toBe(PS);
    k.checkInvariants();
  });

  it("read(2) holds its file while it sleeps: closing the fd meanwhile leaves the pipe a reader", async () => {
    const k = new Kernel({ seed: 1 });
    const p = k.spawn();
    const [r, w] = await p.pipe();
    const reading = p.read(r, 16);
    await k.idle();
    await p.close(r);
    // The blocked read still holds the read end (fdget), so this is no EPIPE.
    expect(await p.write(w, new Uint8Array([7, 8]))).toBe(2);
    expect(await reading).toEqual(new Uint8Array([7, 8]));
  });

  // fs/select.c:__pollwait() holds a reference on each file a poll sleeps on until it returns;
  // close() wakes nobody, and the rescan after the next wake finds the fd gone (POLLNVAL).
  it("poll(2) holds the files it sleeps on: closing the fd meanwhile leaves the pipe a reader [host]", async () => {
    const k = new Kernel({ seed: 1 });
    const p = k.spawn();
    const [r, w] = await p.pipe();
    const fds = [{ fd: r, events: POLLIN, revents: 0 }];
    const polling = p.poll(fds, -1);
    await k.idle();
    await p.close(r);
    await k.idle();
    // Still a reader (the poll's reference), so no EPIPE; the write wakes the poll.
    expect(await p.write(w, new Uint8Array([1]))).toBe(1);
    expect(await polling).toBe(1);
    expect(fds[0]!.revents).toBe(POLLNVAL);
    // Once poll returned, its reference is gone: the pipe has no reader left.
    await expectErrno(p.write(w, new Uint8Array([2])), "EPIPE");
  });

  it("a waitpid() whose caller is killed rejects with DeadTaskError", async () => {
    const k = new Kernel({ seed: 1 });
    const p = k.spawn();
    const child = await p.fork();
    const killer = k.spawn();
    const waiting = p.waitpid(child.pid);
    await k.idle();
    await killer.kill(p.pid, 9);
    await expect(waiting).rejects.toBeInstanceOf(DeadTaskError);
    await child.exit(0);
  });

  it("DeadTaskError is exported and is neither an ErrnoError nor a SignalError", () => {
    const e = new DeadTaskError();
    expect(e).toBeInstanceOf(Error);
    expect(e).not.toBeInstanceOf(ErrnoError);
    expect(e).not.toBeInstanceOf(SignalError);
  });
});

describe("a preemption policy is the caller's code", () => {
  // The scheduler asks the policy from a macrotask, where a throw would end the process: a bad pick
  // is kept, the first ready thread runs instead, and idle() rejects with it once.
  for (const [what, bad, msg] of [
    ["picks no ready thread", () => 99, /the policy picked 99 of 2 ready tasks/],
    ["throws", () => {
      throw new Error("boom");
    }, /the policy threw: boom/],
  ] as const) {
    it(`a policy that ${what} makes idle() reject with a plain Error; the threads still complete`, async () => {
      let calls = 0;
      const pick = (): number => (calls++ === 0 ? bad() : 0); // wrong once, then sane
      const k = new Kernel({ seed: 1, preemption: { preempt: () => true, pick } });
      const p = k.spawn();
      const a = await p.mmap(0, 2 * PS, RW, ANON);
      const t2 = p.spawnThread();
      const writes = [p.mainThread.write(a, Uint8Array.of(1)), t2.write(a + PS, Uint8Array.of(2))];
      const err = await k.idle().then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).name).not.toBe("KernelBug");
      expect((err as Error).message).toMatch(msg);
      await k.idle(); // reported once
      await Promise.all(writes);
      expect(await p.mainThread.read(a, 1)).toEqual(Uint8Array.of(1));
      expect(await p.mainThread.read(a + PS, 1)).toEqual(Uint8Array.of(2));
    });
  }
});

describe("kernel options", () => {
  it("an invalid option is a plain error naming it, never a KernelBug", () => {
    const cases: Array<[object, RegExp]> = [
      [{ memoryPages: 1 }, /memoryPages must be an integer in \[2, 16777216\], got 1/],
      [{ memoryPages: NaN }, /memoryPages/],
      [{ memoryPages: "8" }, /memoryPages/],
      [{ swapPages: -1 }, /swapPages/],
      [{ seed: 0.5 }, /seed/],
      [{ unprivilegedUserfaultfd: 1 }, /unprivilegedUserfaultfd must be a boolean/],
      [{ preemption: 2 }, /preemption/],
      [{ preemption: {} }, /preemption/],
    ];
    for (const [opts, msg] of cases) {
      let thrown: unknown = null;
      try {
        new Kernel(opts as never);
      } catch (e) {
        thrown = e;
      }
      expect(thrown, JSON.stringify(opts)).toBeInstanceOf(Error);
      expect((thrown as Error).name).not.toBe("KernelBug");
      expect((thrown as Error).message).toMatch(msg);
    }
  });

  it("readFrame of a frame that does not exist is EINVAL", () => {
    const k = new Kernel({ seed: 1, memoryPages: 16 });
    for (const bad of [16, -1, 0.5, NaN]) {
      expect(() => k.readFrame(bad)).toThrow(ErrnoError);
    }
  });
});
