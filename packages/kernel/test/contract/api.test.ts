/**
 * The package satisfies its fixed public contract (kernel-api.d.ts beside this file, fixed
 * once and never edited: names and shapes may be added to, never renamed or removed). Two layers:
 *
 * - Type level, checked by `tsc -b` (the kernel tsconfig includes test/) and by vitest's
 *   expectTypeOf: every class instance shape, constructor, function and interface the contract
 *   names is exported with a compatible type. Outputs (what the kernel hands back) must be
 *   assignable to the contract's type; inputs (what users pass in) must accept the contract's
 *   type; in/out ioctl structs must match both ways. A rename or a missing export breaks the build.
 * - Runtime: every uAPI constant named in the contract's comment block exists in
 *   "@uffd/kernel/uapi" with its Linux x86-64 value. The values were printed on the reference
 *   host (Linux 6.18, x86-64) from the system headers by a C probe; the few names those libc
 *   headers predate come from the 6.18 uapi headers, with the ioctl numbers confirmed on the
 *   host (docs/linux-rules.md §1.2) and MADV_GUARD_* by madvise() on the host (102/103 accepted,
 *   104 EINVAL).
 */
import { readFileSync } from "node:fs";
import { describe, expect, expectTypeOf, it } from "vitest";
import * as Api from "@uffd/kernel";
import * as Uapi from "@uffd/kernel/uapi";
import type * as C from "./kernel-api.d.ts";

// --- type level: entry "@uffd/kernel" ---------------------------------------------------------

/** Compile-time assertion helpers: `Extends<A, B>` is true when every A is a B. */
type Extends<A, B> = [A] extends [B] ? true : false;
type Assert<T extends true> = T;

export type KernelShape = Assert<Extends<Api.Kernel, C.Kernel>>;
export type KernelCtor = Assert<Extends<typeof Api.Kernel, typeof C.Kernel>>;
export type ProcessShape = Assert<Extends<Api.Process, C.Process>>;
export type ThreadShape = Assert<Extends<Api.Thread, C.Thread>>;
export type ErrnoErrorShape = Assert<Extends<Api.ErrnoError, C.ErrnoError>>;
export type SignalErrorShape = Assert<Extends<Api.SignalError, C.SignalError>>;
export type KernelBugShape = Assert<Extends<Api.KernelBug, C.KernelBug>>;
// Inputs: whatever the contract lets a user pass must be accepted.
export type KernelOptionsIn = Assert<Extends<C.KernelOptions, Api.KernelOptions>>;
export type SpawnOptionsIn = Assert<Extends<C.SpawnOptions, Api.SpawnOptions>>;
export type UserBufferIn = Assert<Extends<C.UserBuffer, Api.UserBuffer>>;
// Outputs: whatever the kernel returns must read as the contract says.
export type KPageFlagsOut = Assert<Extends<Api.KPageFlags, C.KPageFlags>>;
export type PagemapEntryOut = Assert<Extends<Api.PagemapEntry, C.PagemapEntry>>;
export type VmaInfoOut = Assert<Extends<Api.VmaInfo, C.VmaInfo>>;
export type WaitStatusOut = Assert<Extends<Api.WaitStatus, C.WaitStatus>>;
export type PinnedBufferOut = Assert<Extends<Api.PinnedBuffer, C.PinnedBuffer>>;
// poll() reads `events` and writes `revents` into the caller's array: both ways.
export type PollFdBoth = Assert<Extends<C.PollFd, Api.PollFd> & Extends<Api.PollFd, C.PollFd>>;

// --- type level: entry "@uffd/kernel/uapi" ----------------------------------------------------

// ioctl structs are read and written by the kernel: both ways.
type Both<A, B> = Extends<A, B> & Extends<B, A>;
export type UffdioRangeBoth = Assert<Both<Uapi.UffdioRange, C.UffdioRange>>;
export type UffdioApiBoth = Assert<Both<Uapi.UffdioApi, C.UffdioApi>>;
export type UffdioRegisterBoth = Assert<Both<Uapi.UffdioRegister, C.UffdioRegister>>;
export type UffdioCopyBoth = Assert<Both<Uapi.UffdioCopy, C.UffdioCopy>>;
export type UffdioZeropageBoth = Assert<Both<Uapi.UffdioZeropage, C.UffdioZeropage>>;
export type UffdioWriteprotectBoth = Assert<Both<Uapi.UffdioWriteprotect, C.UffdioWriteprotect>>;
export type UffdioContinueBoth = Assert<Both<Uapi.UffdioContinue, C.UffdioContinue>>;
export type UffdioPoisonBoth = Assert<Both<Uapi.UffdioPoison, C.UffdioPoison>>;
export type UffdioMoveBoth = Assert<Both<Uapi.UffdioMove, C.UffdioMove>>;
export type UffdMsgOut = Assert<Extends<Uapi.UffdMsg, C.UffdMsg>>;
export type DecodeFn = Assert<Extends<typeof Uapi.decodeUffdMsgs, typeof C.decodeUffdMsgs>>;

/**
 * Every constant the contract's comment block names, with its Linux x86-64 value. Keep the keys
 * identical to the comment block: a test below parses kernel-api.d.ts and compares.
 */
const LINUX_X86_64 = {
  PAGE_SIZE: 0x1000,
  PROT_NONE: 0,
  PROT_READ: 1,
  PROT_WRITE: 2,
  PROT_EXEC: 4,
  MAP_SHARED: 1,
  MAP_PRIVATE: 2,
  MAP_FIXED: 0x10,
  MAP_FIXED_NOREPLACE: 0x100000,
  MAP_ANONYMOUS: 0x20,
  MAP_POPULATE: 0x8000,
  MAP_NORESERVE: 0x4000,
  MADV_NORMAL: 0,
  MADV_WILLNEED: 3,
  MADV_DONTNEED: 4,
  MADV_FREE: 8,
  MADV_REMOVE: 9,
  MADV_DONTFORK: 10,
  MADV_DOFORK: 11,
  MADV_WIPEONFORK: 0x12,
  MADV_KEEPONFORK: 0x13,
  MADV_PAGEOUT: 0x15,
  MADV_COLD: 0x14,
  MADV_POPULATE_READ: 0x16,
  MADV_POPULATE_WRITE: 0x17,
  MADV_HUGEPAGE: 14,
  MADV_NOHUGEPAGE: 15,
  MADV_GUARD_INSTALL: 0x66,  // not in the host libc headers: 6.18 uapi header / host ioctl probe
  MADV_GUARD_REMOVE: 0x67,  // not in the host libc headers: 6.18 uapi header / host ioctl probe
  MREMAP_MAYMOVE: 1,
  MREMAP_FIXED: 2,
  MREMAP_DONTUNMAP: 4,
  FALLOC_FL_KEEP_SIZE: 1,
  FALLOC_FL_PUNCH_HOLE: 2,
  MADV_MERGEABLE: 12,
  MADV_UNMERGEABLE: 13,
  MADV_DONTNEED_LOCKED: 0x18,
  MADV_COLLAPSE: 0x19,
  O_CLOEXEC: 0o2000000,
  O_NONBLOCK: 0o4000,
  MFD_CLOEXEC: 1,
  SEEK_SET: 0,
  SEEK_CUR: 1,
  SEEK_END: 2,
  SEEK_DATA: 3,
  SEEK_HOLE: 4,
  F_GETFL: 3,
  F_SETFL: 4,
  F_SETPIPE_SZ: 0x407,
  F_GETPIPE_SZ: 0x408,
  SPLICE_F_NONBLOCK: 2,
  SPLICE_F_GIFT: 8,
  POLLIN: 1,
  POLLOUT: 4,
  POLLERR: 8,
  POLLHUP: 0x10,
  SIGKILL: 9,
  SIGTERM: 15,
  SIGSEGV: 11,
  SIGBUS: 7,
  UFFD_API: 0xaa,
  UFFD_USER_MODE_ONLY: 1,
  USERFAULTFD_IOC_NEW: 0xaa00,
  UFFD_FEATURE_PAGEFAULT_FLAG_WP: 1,
  UFFD_FEATURE_EVENT_FORK: 2,
  UFFD_FEATURE_EVENT_REMAP: 4,
  UFFD_FEATURE_EVENT_REMOVE: 8,
  UFFD_FEATURE_MISSING_HUGETLBFS: 0x10,
  UFFD_FEATURE_MISSING_SHMEM: 0x20,
  UFFD_FEATURE_EVENT_UNMAP: 0x40,
  UFFD_FEATURE_SIGBUS: 0x80,
  UFFD_FEATURE_THREAD_ID: 0x100,
  UFFD_FEATURE_MINOR_HUGETLBFS: 0x200,
  UFFD_FEATURE_MINOR_SHMEM: 0x400,
  UFFD_FEATURE_EXACT_ADDRESS: 0x800,
  UFFD_FEATURE_WP_HUGETLBFS_SHMEM: 0x1000,
  UFFD_FEATURE_WP_UNPOPULATED: 0x2000,  // not in the host libc headers: 6.18 uapi header / host ioctl probe
  UFFD_FEATURE_POISON: 0x4000,  // not in the host libc headers: 6.18 uapi header / host ioctl probe
  UFFD_FEATURE_WP_ASYNC: 0x8000,  // not in the host libc headers: 6.18 uapi header / host ioctl probe
  UFFD_FEATURE_MOVE: 0x10000,  // not in the host libc headers: 6.18 uapi header / host ioctl probe
  UFFDIO_API: 0xC018AA3F,
  UFFDIO_REGISTER: 0xC020AA00,
  UFFDIO_UNREGISTER: 0x8010AA01,
  UFFDIO_WAKE: 0x8010AA02,
  UFFDIO_COPY: 0xC028AA03,
  UFFDIO_ZEROPAGE: 0xC020AA04,
  UFFDIO_WRITEPROTECT: 0xC018AA06,
  UFFDIO_CONTINUE: 0xC020AA07,
  UFFDIO_POISON: 0xC020AA08,  // not in the host libc headers: 6.18 uapi header / host ioctl probe
  UFFDIO_MOVE: 0xC028AA05,  // not in the host libc headers: 6.18 uapi header / host ioctl probe
  _UFFDIO_REGISTER: 0,
  _UFFDIO_UNREGISTER: 1,
  _UFFDIO_WAKE: 2,
  _UFFDIO_COPY: 3,
  _UFFDIO_ZEROPAGE: 4,
  _UFFDIO_MOVE: 5,  // not in the host libc headers: 6.18 uapi header / host ioctl probe
  _UFFDIO_WRITEPROTECT: 6,
  _UFFDIO_CONTINUE: 7,
  _UFFDIO_POISON: 8,  // not in the host libc headers: 6.18 uapi header / host ioctl probe
  _UFFDIO_API: 0x3f,
  UFFDIO_REGISTER_MODE_MISSING: 1,
  UFFDIO_REGISTER_MODE_WP: 2,
  UFFDIO_REGISTER_MODE_MINOR: 4,
  UFFDIO_COPY_MODE_DONTWAKE: 1,
  UFFDIO_COPY_MODE_WP: 2,
  UFFDIO_ZEROPAGE_MODE_DONTWAKE: 1,
  UFFDIO_WRITEPROTECT_MODE_WP: 1,
  UFFDIO_WRITEPROTECT_MODE_DONTWAKE: 2,
  UFFDIO_CONTINUE_MODE_DONTWAKE: 1,
  UFFDIO_CONTINUE_MODE_WP: 2,  // not in the host libc headers: 6.18 uapi header / host ioctl probe
  UFFDIO_POISON_MODE_DONTWAKE: 1,  // not in the host libc headers: 6.18 uapi header / host ioctl probe
  UFFDIO_MOVE_MODE_DONTWAKE: 1,  // not in the host libc headers: 6.18 uapi header / host ioctl probe
  UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES: 2,  // not in the host libc headers: 6.18 uapi header / host ioctl probe
  UFFD_EVENT_PAGEFAULT: 0x12,
  UFFD_EVENT_FORK: 0x13,
  UFFD_EVENT_REMAP: 0x14,
  UFFD_EVENT_REMOVE: 0x15,
  UFFD_EVENT_UNMAP: 0x16,
  UFFD_PAGEFAULT_FLAG_WRITE: 1,
  UFFD_PAGEFAULT_FLAG_WP: 2,
  UFFD_PAGEFAULT_FLAG_MINOR: 4,
} as const;

/** include/uapi/asm-generic/errno-base.h and errno.h, printed on the host. */
const LINUX_ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  ENOEXEC: 8,
  EBADF: 9,
  ECHILD: 10,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  EXDEV: 18,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  ENFILE: 23,
  EMFILE: 24,
  ENOTTY: 25,
  EFBIG: 27,
  ENOSPC: 28,
  ESPIPE: 29,
  EROFS: 30,
  EPIPE: 32,
  ERANGE: 34,
  ENAMETOOLONG: 36,
  ENOSYS: 38,
  EOVERFLOW: 75,
  EOPNOTSUPP: 95,
  EHWPOISON: 133,
} as const;

type ConstName = keyof typeof LINUX_X86_64;
// Each named constant is exported from "@uffd/kernel/uapi" as a number.
export type ConstantsExported = Assert<Extends<Pick<typeof Uapi, ConstName>, Record<ConstName, number>>>;
export type ErrnoExported = Assert<Extends<typeof Uapi.ERRNO, Record<keyof typeof LINUX_ERRNO, number>>>;

describe("contract: entry @uffd/kernel (kernel-api.d.ts)", () => {
  it("exports the classes and their instance shapes", () => {
    expectTypeOf<Api.Kernel>().toExtend<C.Kernel>();
    expectTypeOf<typeof Api.Kernel>().toExtend<typeof C.Kernel>();
    expectTypeOf<Api.Process>().toExtend<C.Process>();
    expectTypeOf<Api.Thread>().toExtend<C.Thread>();
    expectTypeOf<Api.ErrnoError>().toExtend<C.ErrnoError>();
    expectTypeOf<Api.SignalError>().toExtend<C.SignalError>();
    expectTypeOf<Api.KernelBug>().toExtend<C.KernelBug>();
    for (const cls of [Api.Kernel, Api.Process, Api.Thread, Api.ErrnoError, Api.SignalError, Api.KernelBug]) expect(typeof cls).toBe("function");
    for (const err of [Api.ErrnoError, Api.SignalError, Api.KernelBug]) expect(err.prototype).toBeInstanceOf(Error);
  });

  it("a live kernel, process and thread carry the contract's members", () => {
    const k = new Api.Kernel({ seed: 1, memoryPages: 64, swapPages: 0, unprivilegedUserfaultfd: false });
    const p = k.spawn({ name: "contract", uid: 0, capabilities: [] });
    const kernelMembers: Array<keyof C.Kernel> = ["spawn", "idle", "zeroPfn", "kpagecount", "kpageflags", "checkInvariants"];
    for (const m of kernelMembers) expect(m in k, `Kernel.${m}`).toBe(true);
    const processMembers: Array<keyof C.Process> = [
      "pid", "kernel", "mainThread", "spawnThread", "mmap", "munmap", "mprotect", "madvise", "mremap", "mincore",
      "memfdCreate", "ftruncate", "fallocate", "pwrite", "pread", "lseek", "pipe", "pipe2", "fcntl", "poll",
      "vmsplice", "read", "close", "sendFd", "userfaultfd", "openDevUserfaultfd", "ioctl", "ioUringRegisterBuffers",
      "fork", "exit", "kill", "waitpid", "pagemap", "smaps",
    ];
    for (const m of processMembers) expect(m in p, `Process.${m}`).toBe(true);
    expect(p.kernel).toBe(k);
    expect(p.mainThread.process).toBe(p);
    expect(typeof p.mainThread.tid).toBe("number");
    const t = p.spawnThread("t");
    expect(t.process).toBe(p);
    expect(typeof t.read).toBe("function");
    expect(typeof t.write).toBe("function");
    k.checkInvariants();
  });

  it("errors carry code, errno, syscall / signal, address", () => {
    const e = new Api.ErrnoError("EEXIST", "ioctl", "UFFDIO_COPY");
    expect(e).toMatchObject({ code: "EEXIST", errno: 17, syscall: "ioctl", message: "EEXIST: file exists, ioctl UFFDIO_COPY" });
    const s = new Api.SignalError("SIGBUS", 0x1000);
    expect(s).toMatchObject({ signal: "SIGBUS", address: 0x1000 });
    expect(new Api.KernelBug("x")).toBeInstanceOf(Error);
  });
});

describe("contract: entry @uffd/kernel/uapi", () => {
  it("decodeUffdMsgs decodes packed 32-byte records", () => {
    expectTypeOf(Uapi.decodeUffdMsgs).toExtend<typeof C.decodeUffdMsgs>();
    const buf = new Uint8Array(32);
    buf[0] = 0x12;
    buf[8] = 1; // flags: UFFD_PAGEFAULT_FLAG_WRITE
    new DataView(buf.buffer).setUint32(16, 0x7f00_0000, true);
    new DataView(buf.buffer).setUint32(20, 0x7f, true); // address high word
    new DataView(buf.buffer).setUint32(24, 4242, true);
    expect(Uapi.decodeUffdMsgs(buf)).toEqual([{ event: 0x12, arg: { pagefault: { flags: 1, address: 0x7f_7f00_0000, feat: { ptid: 4242 } } } }]);
  });

  it("every constant named in the contract has its Linux x86-64 value", () => {
    const uapi = Uapi as unknown as Record<string, unknown>;
    const wrong: string[] = [];
    for (const [name, value] of Object.entries(LINUX_X86_64)) {
      if (uapi[name] !== value) wrong.push(`${name}: got ${String(uapi[name])}, Linux has ${value}`);
    }
    expect(wrong).toEqual([]);
    // Spot checks the brief calls out, spelled out.
    expect(Uapi.UFFDIO_COPY).toBe(0xc028aa03);
    expect(Uapi.UFFDIO_API).toBe(0xc018aa3f);
    expect(Uapi.ERRNO.EEXIST).toBe(17);
  });

  it("ERRNO maps each errno name to its Linux number", () => {
    for (const [name, value] of Object.entries(LINUX_ERRNO)) expect(Uapi.ERRNO[name as keyof typeof Uapi.ERRNO], name).toBe(value);
    const byNumber = new Map<number, string>();
    for (const [name, value] of Object.entries(Uapi.ERRNO)) {
      expect(byNumber.has(value), `${name} and ${byNumber.get(value)} share ${value}`).toBe(false);
      byNumber.set(value, name);
    }
  });

  it("the table above lists exactly the constants the contract's comment block names", () => {
    const text = readFileSync(new URL("./kernel-api.d.ts", import.meta.url), "utf8");
    const block = text.slice(text.indexOf("Required names"), text.indexOf("ERRNO: an object"));
    const named = new Set(block.split("\n").filter((l) => l.startsWith("//   ")).flatMap((l) => l.slice(2).replace(/\(.*\)/, "").trim().split(/\s+/)));
    named.delete("");
    expect([...named].sort()).toEqual(Object.keys(LINUX_X86_64).sort());
    expect(block).not.toBe("");
  });
});
