/**
 * Processes and threads: the syscall facade. Each method validates its arguments in Linux's
 * order, converts the mm core's results into ErrnoError once, and leaves everything unchanged
 * on a rejected call. Syscalls on a Process run as if each on its own thread of that process,
 * so one that blocks (fork waiting for its FORK event to be read) does not stop the next.
 */
import { AccessContext, BlockedAccess, DeadTaskError, accessUser, faultInUser } from "./access.ts";
import * as accessMod from "./access.ts";
import type { Kernel } from "./kernel.ts";
import type { Utsname } from "./release.ts";
import { dupMmap } from "./fork.ts";
import { Sleepers } from "./sched.ts";
import * as schedMod from "./sched.ts";
import { FdTable, filePosLock, NR_OPEN_DEFAULT, OpenFile } from "../fs/file.ts";
import { checkMemfdCreate, MAX_LFS_FILESIZE, memfdInitialSeals, shmemFallocate, ShmemFileOps, shmemLlseek, shmemRead, shmemReadUser, shmemTruncate, shmemWrite, shmemWriteUser, inodeLock } from "../fs/memfd.ts";
import { pipeFcntl, sysPipe2 } from "../fs/pipe.ts";
import { pagemapEntry, pagemapWords, smapsEntry, type PagemapEntry, type VmaInfo } from "../fs/procfs.ts";
import { sysOpenDevUserfaultfd, sysUserfaultfd } from "../fs/userfaultfd.ts";
import { sysOpenPagemap } from "../fs/pagemap-scan.ts";
import { sysGupTestPin, sysIoUringRegisterBuffers, sysVmsplice, type GupTestPinOptions, type PinnedBuffer } from "../mm/gup.ts";
import { sysMadvise } from "../mm/madvise.ts";
import type { FaultingTask } from "../mm/memory.ts";
import { sysMincore } from "../mm/mincore.ts";
import { Mm, TASK_SIZE } from "../mm/mm.ts";
import { checkMunmap, mmapRegion, munmapSplitOk, planMmap, unmapRange, type MmapFile } from "../mm/mmap.ts";
import { doMprotect } from "../mm/mprotect.ts";
import { sysMremap } from "../mm/mremap.ts";
import { ShmemInode } from "../mm/shmem.ts";
import { argFd, argFlags, argInt, argLong, argUint, argULong, argUserPtr, describe, low32 } from "../uapi/abi.ts";
import * as abiMod from "../uapi/abi.ts";
import { ErrnoError, SignalError } from "../uapi/errno.ts";
import { F_ADD_SEALS, F_GETFD, F_GETFL, F_GETPIPE_SZ, F_SETFD, F_SETFL, F_SETPIPE_SZ, FD_CLOEXEC, MFD_NOEXEC_SEAL, O_ACCMODE, O_CLOEXEC, O_NONBLOCK, POLLERR, POLLHUP, POLLNVAL, SEEK_DATA, SEEK_HOLE, SIGKILL } from "../uapi/fcntl.ts";
import { MAP_ANONYMOUS, MAP_HUGETLB, MAP_PRIVATE, MAP_TYPE, PAGE_SIZE } from "../uapi/mman.ts";

// Module-local copies of constants and helpers the hot path uses on every fault: V8 reads an
// imported binding through its module cell at each use, a module-local const is folded into the
// optimized code (see kernel/access.ts). Each comes from a module initialised before this one.
const STEP = accessMod.STEP;
const walkStep = accessMod.walkStep;
const MAX_RW_COUNT = abiMod.MAX_RW_COUNT;
const COST = schedMod.COST;

/** A user-memory buffer named by address, for syscalls that copy to or from user memory. */
export interface UserBuffer {
  /** Start address in the process's memory. */
  addr: number;
  /** Length in bytes. */
  length: number;
}

/** One entry of poll(2)'s array (struct pollfd). */
export interface PollFd {
  /** The fd to watch. */
  fd: number;
  /** POLL* bits wanted. */
  events: number;
  /** Out: POLL* bits that happened. */
  revents?: number;
}

/** What waitpid(2) reports about a child that ended. */
export interface WaitStatus {
  /** The child that ended. */
  pid: number;
  /** Its exit status, or null when a signal ended it. */
  exitStatus: number | null;
  /** The signal that ended it, or null. */
  signal: number | null;
}

function isUserBuffer(x: unknown): x is UserBuffer {
  return typeof x === "object" && x !== null && !(x instanceof Uint8Array) && "addr" in x && "length" in x;
}

/** A thread of a simulated process: its loads and stores go through the fault path and may block on a userfault. */
export class Thread implements FaultingTask {
  /** Thread id (the main thread's equals the pid). */
  readonly tid: number = 0;
  /** The process the thread belongs to. */
  readonly process: Process;
  /** A label for traces and reports. */
  readonly name: string;

  constructor(process: Process, tid: number, name: string) {
    this.process = process;
    this.tid = tid;
    this.name = name;
  }

  /** This thread's access context (made on first use; see AccessContext). */
  get accessCtx(): AccessContext {
    return (this.#ctx ??= this.process.newAccessContext(this));
  }

  #ctx: AccessContext | null = null;

  /** A user-mode load. Blocks on userfaults; rejects with SignalError for SIGSEGV / SIGBUS. */
  read(addr: number, length: number): Promise<Uint8Array> {
    let buf: Uint8Array;
    try {
      addr = userAddress(addr);
      buf = new Uint8Array(accessLength(length, "load"));
    } catch (e) {
      return Promise.reject(e);
    }
    const code = this.#access(addr, buf, false);
    return code === STEP.DONE ? Promise.resolve(buf) : (this.#accessSlow(addr, buf, false, code, buf) as Promise<Uint8Array>);
  }

  /** A user-mode store. */
  write(addr: number, data: Uint8Array): Promise<void> {
    // The common store (an address that is a plain integer, a short byte buffer) has nothing to
    // convert; anything else takes the checks in their order.
    if (!(typeof addr === "number" && addr >= 0 && addr <= Number.MAX_SAFE_INTEGER && Number.isInteger(addr) && data instanceof Uint8Array && data.length <= MAX_RW_COUNT)) {
      try {
        addr = userAddress(addr);
        if (!(data instanceof Uint8Array)) throw new ErrnoError("EINVAL", "store", `(data: ${describe(data)})`);
        accessLength(data.length, "store");
      } catch (e) {
        return Promise.reject(e);
      }
    }
    const code = this.#access(addr, data, true);
    return code === STEP.DONE ? RESOLVED : (this.#accessSlow(addr, data, true, code, undefined) as Promise<void>);
  }

  /**
   * The synchronous part of an access (every access that does not sleep): a STEP code, or -1
   * when the process is gone or the walk threw (this.#error says what).
   */
  #access(addr: number, buf: Uint8Array, write: boolean): number {
    if (this.process.exited) {
      this.#error = new ErrnoError("ESRCH", write ? "store" : "load");
      return -1;
    }
    try {
      return walkStep(this.accessCtx, addr, buf.length, buf, write, true, 0, false);
    } catch (e) {
      this.#error = e;
      return -1;
    }
  }

  #error: unknown = null;

  /** The rest of an access that slept, was preempted or failed: settles with `result` or rejects. */
  #accessSlow(addr: number, buf: Uint8Array, write: boolean, code: number, result: unknown): Promise<unknown> {
    if (code < 0) {
      const e = this.#error;
      this.#error = null;
      return Promise.reject(e);
    }
    const ctx = this.accessCtx;
    const blocked = ctx.spareBlocked ?? new BlockedAccess(ctx);
    ctx.spareBlocked = null;
    const promise = blocked.begin(addr, buf, write, result);
    blocked.continueAfter(code);
    return promise;
  }
}

/**
 * The most entries one pagemap() call returns: 2^22, 16 GiB of address space (a 32 MiB read() of
 * /proc/pid/pagemap; Linux clamps one read() to MAX_RW_COUNT, 2^28 entries).
 * Divergence from Linux: a read() is bounded by the caller's buffer; pagemap() allocates its
 * result, so it bounds the buffer itself and returns short, like a read() that stopped early.
 * Entries of unmapped or empty pages share one frozen object, so the memory a call takes is
 * 8 bytes per entry plus one object per present or swapped page.
 */
export const PAGEMAP_MAX_ENTRIES = 1 << 22;

/** What a store that never slept returns (an already-settled promise carries no state). */
const RESOLVED: Promise<void> = Promise.resolve();

function failEinval(syscall: string): never {
  throw new ErrnoError("EINVAL", syscall);
}

/** SIGCHLD, SIGCONT, SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU, SIGURG, SIGWINCH: default action is not to terminate. */
const NON_TERMINATING_SIGNALS: ReadonlySet<number> = new Set([17, 18, 19, 20, 21, 22, 23, 28]);

/**
 * The address of a user-mode load or store, as the CPU would take it from a 64-bit register: a
 * value no register holds (NaN, a fraction, a string...) is an access to no address, SIGSEGV.
 */
function userAddress(addr: unknown): number {
  try {
    return argULong(addr, "access", "address");
  } catch {
    return failSegv(addr);
  }
}

function failSegv(addr: unknown): never {
  throw new SignalError("SIGSEGV", typeof addr === "number" ? addr : NaN, `not an address: ${describe(addr)}`);
}

/**
 * The length of a user-mode access. Divergence from Linux: one simulated load or store moves at
 * most MAX_RW_COUNT bytes (a CPU has no such instruction at all); a longer or non-integer length
 * is EINVAL, named after the access ("load" / "store").
 */
function accessLength(length: unknown, what: string): number {
  if (typeof length !== "number" || !Number.isInteger(length) || length < 0 || length > MAX_RW_COUNT) {
    throw new ErrnoError("EINVAL", what, `(length: ${describe(length)})`);
  }
  return length;
}

/**
 * A user buffer argument { addr, length }: the address as a user pointer (EFAULT when no register
 * holds it) and the length as size_t (EINVAL when no register holds it), clamped to MAX_RW_COUNT
 * as rw_verify_area() does; a buffer that cannot lie in user space is EFAULT (access_ok()).
 */
function userBuffer(buf: UserBuffer, syscall: string): { addr: number; length: number } {
  const addr = argUserPtr(buf.addr, syscall, "buf");
  const length = argULong(buf.length, syscall, "count");
  if (length > TASK_SIZE || addr > TASK_SIZE - length) throw new ErrnoError("EFAULT", syscall);
  return { addr, length: Math.min(length, MAX_RW_COUNT) };
}

/** A write(2)-like source: bytes given directly, or a user buffer converted by userBuffer(). */
function sourceBuffer(source: unknown, syscall: string): Uint8Array | { addr: number; length: number } {
  if (source instanceof Uint8Array) return source;
  if (isUserBuffer(source)) return userBuffer(source, syscall);
  throw new ErrnoError("EFAULT", syscall, `(buf: ${describe(source)})`);
}

/**
 * poll(2)'s int timeout. Divergence from Linux: the clock is virtual, so a finite fractional
 * timeout is a sub-millisecond wait; integers take C's int truncation (2^32 is 0); NaN, the
 * infinities and non-numbers are EINVAL.
 */
function pollTimeout(v: unknown): number {
  if (typeof v === "number" && Number.isFinite(v) && !Number.isInteger(v) && Math.abs(v) < 2 ** 31) return v;
  return argInt(v, "poll", "timeout");
}

/** poll(2)'s array: nfds above RLIMIT_NOFILE is EINVAL; a struct pollfd that cannot be read is EFAULT. */
function checkPollFds(fds: unknown): asserts fds is PollFd[] {
  if (!Array.isArray(fds)) throw new ErrnoError("EFAULT", "poll", `(fds: ${describe(fds)})`);
  if (fds.length > NR_OPEN_DEFAULT) throw new ErrnoError("EINVAL", "poll");
  for (const p of fds as unknown[]) {
    if (typeof p !== "object" || p === null) throw new ErrnoError("EFAULT", "poll");
    const q = p as PollFd;
    q.fd = argInt(q.fd, "poll", "fd", "EFAULT");
    // short events: the low 16 bits.
    q.events = argInt(q.events, "poll", "events", "EFAULT") & 0xffff;
  }
}

/** A count whose buffer the simulation allocates (read(2)): size_t; one no user buffer could hold is EFAULT. */
function readCount(v: unknown, syscall: string): number {
  const n = argULong(v, syscall, "count");
  if (n > TASK_SIZE) throw new ErrnoError("EFAULT", syscall);
  return Math.min(n, MAX_RW_COUNT);
}

/** Settled promises of the byte counts of reads of up to 64 uffd_msgs, made on first use. */
const RESOLVED_COUNTS: Array<Promise<number> | undefined> = [];

/**
 * A settled promise of `n`: shared for multiples of 32 up to 2048 (an already-settled promise
 * carries no state, so a read that did not sleep allocates none), else a new one.
 */
function resolvedCount(n: number): Promise<number> {
  if ((n & 31) !== 0 || n > 2048 || n < 0) return Promise.resolve(n);
  return (RESOLVED_COUNTS[n >>> 5] ??= Promise.resolve(n));
}

/** readInto()'s fallback for a file read through read(): the bytes go to the caller's buffer. */
function copyRead(bytes: Uint8Array, into: Uint8Array): number {
  if (!(into instanceof Uint8Array)) throw new ErrnoError("EFAULT", "read", `(buf: ${describe(into)})`);
  into.set(bytes);
  return bytes.length;
}

/** Credentials as the permission checks see them. */
export interface Creds {
  uid: number;
  capabilities: ReadonlySet<string>;
}

/** A simulated process: its memory (mm), its file descriptors and threads, and the syscall facade (every syscall returns a promise; failures reject with ErrnoError, signals with SignalError). */
export class Process {
  /** Process id. */
  readonly pid: number = 0;
  /** The kernel the process runs on. */
  readonly kernel: Kernel;
  /** A label for traces and reports (comm). */
  readonly name: string;
  /** @internal The memory map (struct mm_struct). */
  readonly mm: Mm;
  /** @internal The file descriptor table. */
  fds: FdTable;
  /** Credentials: uid and capabilities, as the permission checks see them. */
  readonly creds: Creds;
  /** Every thread, the main thread first. */
  readonly threads: Thread[] = [];
  /** The thread the process started with (tid = pid). */
  readonly mainThread: Thread;
  /** The process that forked this one, or null. */
  readonly parent: Process | null;
  /** Children not yet reaped. */
  readonly children = new Set<Process>();
  /** Whether the process has exited (a dead process makes no more syscalls: ESRCH). */
  exited = false;
  /** The exit status once exited normally, else null. */
  exitStatus: number | null = null;
  /** The signal that killed the process, else null. */
  exitSignal: number | null = null;
  /** Work to undo at exit (io_uring buffers registered by this process, ...). */
  readonly exitHooks: Array<() => void> = [];
  readonly #killed: Promise<void>;
  #resolveKilled!: () => void;
  readonly #exitWaiters: Array<() => void> = [];

  constructor(kernel: Kernel, pid: number, name: string, creds: Creds, parent: Process | null, mm: Mm, fds: FdTable) {
    this.kernel = kernel;
    this.pid = pid;
    this.name = name;
    this.creds = creds;
    this.parent = parent;
    this.mm = mm;
    this.fds = fds;
    this.mainThread = new Thread(this, pid, name);
    this.threads.push(this.mainThread);
    this.#killed = new Promise<void>((resolve) => {
      this.#resolveKilled = resolve;
    });
  }

  /** uname(2): the kernel's release (KernelOptions.release), e.g. { release: "6.18-uffd", ... }. */
  uname(): Utsname {
    this.enter("uname");
    return this.kernel.uname();
  }

  /** capable(): root has every capability. */
  capable(cap: string): boolean {
    return this.creds.uid === 0 || this.creds.capabilities.has(cap);
  }

  /** Creates a thread in this process (clone(CLONE_VM | CLONE_THREAD)). */
  spawnThread(name?: string): Thread {
    const t = new Thread(this, this.kernel.allocPid(), name ?? `${this.name}-${this.threads.length}`);
    this.threads.push(t);
    return t;
  }

  /** The access context of a task of this process (a thread's own, reused across its accesses). */
  accessContext(task: FaultingTask): AccessContext {
    return task instanceof Thread && task.process === this ? task.accessCtx : this.newAccessContext(task);
  }

  /** @internal A fresh access context for a task of this process. */
  newAccessContext(task: FaultingTask): AccessContext {
    return new AccessContext(this.mm, this.kernel.sched, task, this.#killed, this.#isDead, this.sleepers);
  }

  readonly #isDead = (): boolean => this.exited;
  /** Waits of this process that its death must end (userfaults, uffd reads); do_exit() wakes them, they then see `exited`. */
  readonly sleepers = new Sleepers();

  /** Syscall entry: a dead process makes no calls; each call costs virtual time. */
  enter(syscall: string): void {
    if (this.exited) throw new ErrnoError("ESRCH", syscall);
    this.kernel.sched.charge(COST.syscall);
  }

  /**
   * A kernel-mode copy to or from user memory (copy_to_user / copy_from_user) on behalf of a
   * syscall: userfaults are raised without FAULT_FLAG_USER and may block; an unfixable fault
   * stops the copy (the caller returns a short count or EFAULT).
   */
  async copyUser(addr: number, buf: Uint8Array, write: boolean): Promise<number> {
    const r = await accessUser(this.accessContext(this.mainThread), addr, buf, write, false);
    return r.fault === null ? buf.length : r.done;
  }

  // --- memory mappings --------------------------------------------------------------------

  /** mmap(2): maps `length` bytes; resolves to the address. `fd` -1 with MAP_ANONYMOUS, or a memfd. */
  async mmap(addr: number, length: number, prot: number, flags: number, fd = -1, offset = 0): Promise<number> {
    this.enter("mmap");
    // arch/x86/kernel/sys_x86_64.c: every argument is an unsigned long; fget() takes the fd as an int.
    addr = argULong(addr, "mmap", "addr");
    length = argULong(length, "mmap", "length");
    prot = argFlags(prot, "mmap", "prot");
    flags = low32(argULong(flags, "mmap", "flags"));
    fd = argFd(fd, "mmap");
    offset = argULong(offset, "mmap", "offset");
    if (offset % PAGE_SIZE !== 0) throw new ErrnoError("EINVAL", "mmap");
    let file: MmapFile | null = null;
    if ((flags & MAP_ANONYMOUS) === 0) {
      const of = this.fds.lookup(fd, "mmap");
      // ksys_mmap_pgoff(): MAP_HUGETLB on a file that is not on hugetlbfs.
      if ((flags & MAP_HUGETLB) !== 0) throw new ErrnoError("EINVAL", "mmap");
      if (!(of.ops instanceof ShmemFileOps)) throw new ErrnoError("ENODEV", "mmap");
      file = { inode: of.ops.inode, readable: of.readable, writable: of.writable };
    } else if ((flags & MAP_HUGETLB) !== 0) {
      // Divergence from Linux: no hugetlbfs. Anonymous MAP_HUGETLB answers as the reference host
      // does with vm.nr_hugepages = 0: hugetlb_file_setup() cannot reserve pages (ENOMEM).
      throw new ErrnoError("ENOMEM", "mmap");
    }
    const plan = planMmap(this.mm, addr, length, prot, flags, file, offset, this.capable("CAP_SYS_RAWIO"));
    let inode = file?.inode ?? null;
    if (inode === null && (flags & MAP_TYPE) !== MAP_PRIVATE) {
      inode = this.kernel.newShmemInode("dev/zero");
      inode.size = plan.len;
    }
    const list: unknown[] = [];
    this.kernel.core.uffd.unmapPrep(this.mm, plan.addr, plan.addr + plan.len, list);
    try {
      mmapRegion(this.mm, plan, inode);
    } finally {
      if (inode !== null && file === null) this.kernel.core.inodeUnreferenced(inode);
      // The events the prep raised complete whatever happened, or mmap_changing would stay raised.
      await this.kernel.core.uffd.unmapComplete(this.mm, list);
    }
    this.#checkAlive();
    if (plan.populate) await this.populate(plan.addr, plan.addr + plan.len, (plan.flags & 0xa) === 0x2);
    return plan.addr;
  }

  /** After a wait: a process killed meanwhile does not return from the syscall (a fatal signal ends it). */
  #checkAlive(): void {
    if (this.exited) throw new DeadTaskError();
  }

  /**
   * Mirrors mm/gup.c:populate_vma_page_range(): faults every page in (a write fault for private
   * writable mappings, a read fault otherwise). Errors are ignored, as mmap's populate does.
   */
  async populate(start: number, end: number, write: boolean): Promise<void> {
    for (const vma of this.mm.vmasIn(start, end)) {
      const from = Math.max(start, vma.start);
      await faultInUser(this.accessContext(this.mainThread), from, Math.min(end, vma.end) - from, write, false);
    }
  }

  /** munmap(2): unmaps a range (a UFFD_EVENT_UNMAP for registered ranges with that feature). */
  async munmap(addr: number, length: number): Promise<void> {
    this.enter("munmap");
    addr = argULong(addr, "munmap", "addr");
    length = argULong(length, "munmap", "length");
    const end = checkMunmap(addr, length);
    if (!munmapSplitOk(this.mm, addr, end)) throw new ErrnoError("ENOMEM", "munmap");
    const list: unknown[] = [];
    this.kernel.core.uffd.unmapPrep(this.mm, addr, end, list);
    try {
      unmapRange(this.mm, addr, end);
    } finally {
      await this.kernel.core.uffd.unmapComplete(this.mm, list);
    }
    this.#checkAlive();
  }

  /** mprotect(2): changes the protection of a range. */
  async mprotect(addr: number, length: number, prot: number): Promise<void> {
    this.enter("mprotect");
    addr = argULong(addr, "mprotect", "addr");
    length = argULong(length, "mprotect", "length");
    prot = argFlags(prot, "mprotect", "prot");
    doMprotect(this.mm, addr, length, prot);
  }

  /** madvise(2): gives advice about a range (MADV_* from `@uffd/kernel/uapi`). */
  async madvise(addr: number, length: number, advice: number): Promise<void> {
    this.enter("madvise");
    addr = argULong(addr, "madvise", "addr");
    length = argULong(length, "madvise", "length");
    advice = argInt(advice, "madvise", "advice");
    await sysMadvise(this, addr, length, advice);
    this.#checkAlive();
  }

  /** mremap(2): resizes or moves a mapping; resolves to the new address. */
  async mremap(oldAddress: number, oldSize: number, newSize: number, flags: number, newAddress = 0): Promise<number> {
    this.enter("mremap");
    oldAddress = argULong(oldAddress, "mremap", "old_address");
    oldSize = argULong(oldSize, "mremap", "old_size");
    newSize = argULong(newSize, "mremap", "new_size");
    flags = argFlags(flags, "mremap", "flags");
    newAddress = argULong(newAddress, "mremap", "new_address");
    const r = await sysMremap(this, oldAddress, oldSize, newSize, flags, newAddress);
    this.#checkAlive();
    return r;
  }

  /** mincore(2): one byte per page, bit 0 set when the page is resident. */
  async mincore(addr: number, length: number): Promise<Uint8Array> {
    this.enter("mincore");
    addr = argULong(addr, "mincore", "start");
    length = argULong(length, "mincore", "length");
    return sysMincore(this, addr, length);
  }

  // --- files ------------------------------------------------------------------------------

  /** memfd_create(2): an anonymous shmem file; resolves to its fd. */
  async memfdCreate(name: string, flags = 0): Promise<number> {
    this.enter("memfd_create");
    // The name is a user string: anything else is an unreadable pointer.
    if (typeof name !== "string") throw new ErrnoError("EFAULT", "memfd_create", `(name: ${describe(name)})`);
    flags = argUint(flags, "memfd_create", "flags");
    const oflags = checkMemfdCreate(name, flags);
    const inode = this.kernel.newShmemInode(name);
    inode.seals = memfdInitialSeals(flags);
    // memfd_create(): MFD_NOEXEC_SEAL clears the execute bits of the inode's mode.
    inode.executable = (flags & MFD_NOEXEC_SEAL) === 0;
    const file = new OpenFile(new ShmemFileOps(inode, (i) => this.kernel.core.inodeUnreferenced(i)), oflags & ~0o2000000);
    return this.fds.install(file, oflags, "memfd_create");
  }

  /**
   * open("/proc/self/fd/<fd>", flags): a new open file description of the same memfd with its own
   * access mode (how a read-only view of a memfd is made), its own f_pos and, as a file open(2)
   * opened, FMODE_ATOMIC_POS: its read(2), write(2) and lseek(2) take f_pos_lock (filePosLock()).
   * Only shmem files can be reopened here.
   * Divergence from Linux: reopening a pipe through /proc is not simulated (ENXIO, as for anon inodes).
   */
  async reopen(fd: number, flags: number): Promise<number> {
    this.enter("open");
    fd = argFd(fd, "open");
    flags = argInt(flags, "open", "flags");
    const file = this.fds.lookup(fd, "open");
    if (!(file.ops instanceof ShmemFileOps)) throw new ErrnoError("ENXIO", "open");
    if ((flags & ~(O_ACCMODE | O_CLOEXEC | O_NONBLOCK)) !== 0 || (flags & O_ACCMODE) === O_ACCMODE) throw new ErrnoError("EINVAL", "open");
    const ops = new ShmemFileOps(file.ops.inode, (i) => this.kernel.core.inodeUnreferenced(i));
    const reopened = new OpenFile(ops, flags & ~O_CLOEXEC);
    // do_dentry_open() of a regular file: FMODE_ATOMIC_POS (a memfd_create() file has none).
    reopened.atomicPos = true;
    return this.fds.install(reopened, flags, "open");
  }

  #shmemFile(fd: number, syscall: string): { file: OpenFile; inode: ShmemInode } {
    const file = this.fds.lookup(fd, syscall);
    if (!(file.ops instanceof ShmemFileOps)) {
      throw new ErrnoError(syscall === "ftruncate" ? "EINVAL" : syscall === "fallocate" || syscall === "lseek" ? "ESPIPE" : "ESPIPE", syscall);
    }
    return { file, inode: file.ops.inode };
  }

  /** ftruncate(2): sets a memfd's size. */
  async ftruncate(fd: number, length: number): Promise<void> {
    this.enter("ftruncate");
    fd = argFd(fd, "ftruncate");
    length = argLong(length, "ftruncate", "length");
    if (length < 0) throw new ErrnoError("EINVAL", "ftruncate");
    const { file, inode } = this.#shmemFile(fd, "ftruncate");
    if (!file.writable) throw new ErrnoError("EINVAL", "ftruncate");
    // inode_newsize_ok(): beyond s_maxbytes is EFBIG.
    if (length > MAX_LFS_FILESIZE) throw new ErrnoError("EFBIG", "ftruncate");
    // do_truncate() under the inode lock (a write sleeping on a userfault holds it).
    const unlock = await inodeLock(inode);
    try {
      shmemTruncate(this, inode, length);
    } finally {
      unlock();
    }
  }

  /** fallocate(2): allocates or punches holes in a memfd (FALLOC_FL_*). */
  async fallocate(fd: number, mode: number, offset: number, length: number): Promise<void> {
    this.enter("fallocate");
    fd = argFd(fd, "fallocate");
    mode = argInt(mode, "fallocate", "mode");
    offset = argLong(offset, "fallocate", "offset");
    length = argLong(length, "fallocate", "len");
    const file = this.fds.lookup(fd, "fallocate");
    if (offset < 0 || length <= 0) throw new ErrnoError("EINVAL", "fallocate");
    if ((mode & ~0x7f) !== 0) throw new ErrnoError("EOPNOTSUPP", "fallocate");
    if ((mode & 0x02) !== 0 && (mode & 0x01) === 0) throw new ErrnoError("EOPNOTSUPP", "fallocate");
    if (!file.writable) throw new ErrnoError("EBADF", "fallocate");
    if (!(file.ops instanceof ShmemFileOps)) throw new ErrnoError(file.ops.name.startsWith("pipe") ? "ESPIPE" : "ENODEV", "fallocate");
    if (offset + length > MAX_LFS_FILESIZE) throw new ErrnoError("EFBIG", "fallocate");
    if ((mode & ~0x03) !== 0) throw new ErrnoError("EOPNOTSUPP", "fallocate");
    // shmem_fallocate() takes the inode lock (a write sleeping on a userfault holds it).
    const unlock = await inodeLock(file.ops.inode);
    try {
      shmemFallocate(this, file.ops.inode, mode, offset, length);
    } finally {
      unlock();
    }
  }

  /** pwrite(2): writes bytes (or user memory) at an offset of a memfd; resolves to the bytes written. */
  async pwrite(fd: number, source: Uint8Array | UserBuffer, offset: number): Promise<number> {
    this.enter("pwrite64");
    fd = argFd(fd, "pwrite64");
    const buf = sourceBuffer(source, "pwrite64");
    offset = argLong(offset, "pwrite64", "pos");
    // fdget(): the file stays referenced for the whole call, so a close() while the copy from user
    // memory sleeps on a userfault cannot release the inode under the write.
    const file = this.fds.lookup(fd, "pwrite64").get();
    try {
      if (offset < 0) throw new ErrnoError("EINVAL", "pwrite64");
      if (!file.writable) throw new ErrnoError("EBADF", "pwrite64");
      if (!(file.ops instanceof ShmemFileOps)) throw new ErrnoError("ESPIPE", "pwrite64");
      const inode = file.ops.inode;
      // generic_write_check_limits(): nothing may be written at or beyond s_maxbytes.
      if (buf.length > 0 && offset >= MAX_LFS_FILESIZE) throw new ErrnoError("EFBIG", "pwrite64");
      const len = Math.min(buf.length, MAX_LFS_FILESIZE - offset);
      const unlock = await inodeLock(inode);
      try {
        if (!(buf instanceof Uint8Array)) return await shmemWriteUser(this, inode, offset, buf.addr, len, "pwrite64");
        return shmemWrite(this, inode, offset, buf.subarray(0, len));
      } finally {
        unlock();
      }
    } finally {
      file.put();
    }
  }

  /** copy_from_user() of a user buffer for write(2)-like calls: the bytes copied, or EFAULT if none could be. */
  async #copyIn(buf: { addr: number; length: number }, syscall: string): Promise<Uint8Array> {
    const data = new Uint8Array(buf.length);
    const got = await this.copyUser(buf.addr, data, false);
    if (got === 0 && data.length > 0) throw new ErrnoError("EFAULT", syscall);
    return data.subarray(0, got);
  }

  /** pread(2) into a new buffer: resolves to the bytes read (short at end of file). */
  pread(fd: number, length: number, offset: number): Promise<Uint8Array>;
  /** pread(2) into user memory: resolves to the number of bytes read. */
  pread(fd: number, destination: UserBuffer, offset: number): Promise<number>;
  async pread(fd: number, what: number | UserBuffer, offset: number): Promise<Uint8Array | number> {
    this.enter("pread64");
    fd = argFd(fd, "pread64");
    const dest = isUserBuffer(what) ? userBuffer(what, "pread64") : null;
    const count = dest === null ? readCount(what, "pread64") : dest.length;
    offset = argLong(offset, "pread64", "pos");
    const file = this.fds.lookup(fd, "pread64").get();
    try {
      if (offset < 0) throw new ErrnoError("EINVAL", "pread64");
      if (!file.readable) throw new ErrnoError("EBADF", "pread64");
      if (!(file.ops instanceof ShmemFileOps)) throw new ErrnoError("ESPIPE", "pread64");
      if (dest === null) return shmemRead(this, file.ops.inode, offset, count);
      const done = await shmemReadUser(this, file.ops.inode, offset, dest.addr, dest.length, "pread64");
      this.#checkAlive();
      return done;
    } finally {
      file.put();
    }
  }

  /** lseek(2): moves the file offset (SEEK_*); resolves to the new offset. */
  async lseek(fd: number, offset: number, whence: number): Promise<number> {
    this.enter("lseek");
    fd = argFd(fd, "lseek");
    offset = argLong(offset, "lseek", "offset");
    whence = argUint(whence, "lseek", "whence");
    const file = this.fds.lookup(fd, "lseek").get();
    // fdget_pos(): f_pos_lock of an FMODE_ATOMIC_POS file first (filePosLock()).
    const unlockPos = file.atomicPos ? await filePosLock(file) : null;
    try {
      if (!(file.ops instanceof ShmemFileOps)) throw new ErrnoError("ESPIPE", "lseek");
      const inode = file.ops.inode;
      // shmem_file_llseek(): SEEK_DATA and SEEK_HOLE run under the inode lock (a negative offset
      // is ENXIO before it); the other whences take none.
      if ((whence !== SEEK_DATA && whence !== SEEK_HOLE) || offset < 0) return shmemLlseek(file, inode, offset, whence);
      const unlock = await inodeLock(inode);
      try {
        return shmemLlseek(file, inode, offset, whence);
      } finally {
        unlock();
      }
    } finally {
      unlockPos?.();
      file.put();
    }
  }

  /** pipe(2): resolves to [readFd, writeFd]. */
  async pipe(): Promise<[readFd: number, writeFd: number]> {
    return this.pipe2(0);
  }

  /** pipe2(2): pipe(2) with O_CLOEXEC / O_NONBLOCK / O_DIRECT flags. */
  async pipe2(flags: number): Promise<[readFd: number, writeFd: number]> {
    this.enter("pipe2");
    flags = argInt(flags, "pipe2", "flags");
    return sysPipe2(this, flags);
  }

  /** fcntl(2): F_GETFD, F_SETFD, F_GETFL, F_SETFL, pipe sizes and memfd seals. */
  async fcntl(fd: number, cmd: number, arg = 0): Promise<number> {
    this.enter("fcntl");
    fd = argFd(fd, "fcntl");
    cmd = argUint(cmd, "fcntl", "cmd");
    // An unsigned long; every command simulated reads it as an int (F_SETPIPE_SZ, F_ADD_SEALS: unsigned int).
    arg = argUint(arg, "fcntl", "arg");
    const file = this.fds.lookup(fd, "fcntl");
    switch (cmd) {
      case F_GETFD:
        return this.fds.cloexec(fd) ? FD_CLOEXEC : 0;
      case F_SETFD:
        this.fds.setCloexec(fd, (arg & FD_CLOEXEC) !== 0);
        return 0;
      case F_GETFL:
        return file.flags;
      case F_SETFL:
        file.flags = (file.flags & ~O_NONBLOCK) | (arg & O_NONBLOCK);
        return 0;
      case F_SETPIPE_SZ:
      case F_GETPIPE_SZ:
        return pipeFcntl(this, file, cmd, arg);
      case F_ADD_SEALS:
        // memfd_add_seals() checks FMODE_WRITE before it checks that the file is a memfd.
        if (!file.writable) throw new ErrnoError("EPERM", "fcntl");
        if (file.ops instanceof ShmemFileOps) return await file.ops.addSeals(file, arg);
        return file.ops.fcntl?.(file, cmd, arg) ?? failEinval("fcntl");
      default: {
        const r = file.ops.fcntl?.(file, cmd, arg);
        if (r === undefined) throw new ErrnoError("EINVAL", "fcntl");
        return r;
      }
    }
  }

  /**
   * poll(2): 0 checks once; -1 waits; a positive timeout runs on the kernel's virtual clock.
   */
  async poll(fds: PollFd[], timeoutMs: number): Promise<number> {
    this.enter("poll");
    timeoutMs = pollTimeout(timeoutMs);
    checkPollFds(fds);
    const scan = (): number => {
      let ready = 0;
      for (const p of fds) {
        const file = p.fd < 0 ? undefined : this.fds.get(p.fd);
        let revents = 0;
        if (p.fd >= 0) {
          if (file === undefined) revents = POLLNVAL;
          else revents = (file.ops.poll?.(file, this) ?? 0x5) & (p.events | POLLERR | POLLHUP | POLLNVAL);
        }
        p.revents = revents;
        if (revents !== 0) ready++;
      }
      return ready;
    };
    let ready = scan();
    if (ready > 0 || timeoutMs === 0) return ready;
    let timedOut = false;
    for (;;) {
      await new Promise<void>((resolve) => {
        const unregs: Array<() => void> = [];
        const done = (): void => {
          for (const u of unregs) u();
          resolve();
        };
        for (const p of fds) {
          const file = p.fd < 0 ? undefined : this.fds.get(p.fd);
          if (file?.ops.pollWait === undefined) continue;
          // fs/select.c:__pollwait() takes a reference on each file it waits on (dropped by
          // free_poll_entry() when poll returns): a close() meanwhile neither releases the file
          // nor wakes the poller.
          file.get();
          const unwait = file.ops.pollWait(file, done);
          unregs.push(() => {
            unwait();
            file.put();
          });
        }
        // Divergence from Linux: a timeout is virtual time, so it is a nanosecond count in a double.
        if (timeoutMs > 0) {
          unregs.push(
            this.kernel.sched.addTimer(timeoutMs * 1e6, () => {
              timedOut = true;
              done();
            }),
          );
        }
        unregs.push(this.#onKilled(done));
      });
      if (this.exited) throw new DeadTaskError();
      ready = scan();
      if (ready > 0 || timedOut) return ready;
    }
  }

  #onKilled(fn: () => void): () => void {
    let live = true;
    void this.#killed.then(() => {
      if (live) fn();
    });
    return () => {
      live = false;
    };
  }

  /** vmsplice(2): splices user pages into a pipe (pinning them like GUP); resolves to the bytes spliced. */
  async vmsplice(fd: number, addr: number, length: number, flags = 0): Promise<number> {
    this.enter("vmsplice");
    fd = argFd(fd, "vmsplice");
    addr = argUserPtr(addr, "vmsplice", "iov_base");
    // iov_len is a size_t that import_iovec() checks as ssize_t (negative: EINVAL).
    length = argLong(length, "vmsplice", "iov_len");
    flags = argUint(flags, "vmsplice", "flags");
    const r = await sysVmsplice(this, fd, addr, length, flags);
    this.#checkAlive();
    return r;
  }

  /** read(2). Not an async function: a read that has its data settles without extra promise hops. */
  read(fd: number, length: number): Promise<Uint8Array> {
    try {
      this.enter("read");
      fd = argFd(fd, "read");
      const count = readCount(length, "read");
      const file = this.fds.lookup(fd, "read");
      if (file.atomicPos) return this.#readPosLocked(file, count);
      if (!file.readable) throw new ErrnoError("EBADF", "read");
      if (file.ops.read === undefined) throw new ErrnoError("EINVAL", "read");
      const r = file.ops.read(file, this, count);
      // fdget(): a read that sleeps (an empty pipe, a uffd with nothing queued) keeps its file,
      // so a close() meanwhile neither releases it nor drops the pipe's reader count under it.
      file.get();
      const put = (): void => file.put();
      r.then(put, put);
      return r;
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * read(2) into `into`, a buffer the caller keeps and reuses (its length is the count): resolves
   * to the bytes read, written from its first byte. The same call as read() without a new buffer
   * per call; on a userfaultfd a read that has its messages settles without sleeping, and one
   * that must sleep costs one promise.
   */
  readInto(fd: number, into: Uint8Array): Promise<number> {
    try {
      // Files without readInto() (pipes, memfds) are read through read(), checks and all.
      const found = this.fds.get(fd);
      const ops = found?.ops;
      if (ops?.readInto === undefined) return this.read(fd, into instanceof Uint8Array ? into.length : 0).then((b) => copyRead(b, into));
      let file: OpenFile;
      if (typeof fd === "number" && (fd | 0) === fd) {
        // An int fd that found its file: #readFile() without converting and looking it up again.
        this.enter("read");
        file = this.#readChecks(found!, into, "read");
      } else {
        file = this.#readFile(fd, into, "read");
      }
      const r = ops.readInto(file, this, into, false);
      return typeof r === "number" ? resolvedCount(r) : (r as Promise<number>);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * A read that never sleeps, synchronously: preadv2(fd, into, -1, RWF_NOWAIT). Returns the
   * bytes read into `into` (from its first byte), or null where a read would sleep (where
   * preadv2() fails with EAGAIN: null costs no exception). Other errors are thrown, as
   * ErrnoError: EINVAL before UFFDIO_API or for a buffer shorter than one message, EBADF ...
   * Divergence from Linux: only a userfaultfd implements it here; other files answer
   * EOPNOTSUPP, as Linux does for a file without FMODE_NOWAIT.
   */
  readNowait(fd: number, into: Uint8Array): number | null {
    let file: OpenFile;
    const found = typeof fd === "number" && (fd | 0) === fd ? this.fds.get(fd) : undefined;
    if (found !== undefined) {
      // An int fd that found its file: #readFile() without converting and looking it up again.
      this.enter("preadv2");
      file = this.#readChecks(found, into, "preadv2");
    } else {
      file = this.#readFile(fd, into, "preadv2");
    }
    const op = file.ops.readInto;
    if (op === undefined) throw new ErrnoError("EOPNOTSUPP", "preadv2");
    return op.call(file.ops, file, this, into, true) as number | null;
  }

  /** The checks readInto() and readNowait() share, in read(2)'s order: the readable file. */
  #readFile(fd: number, into: Uint8Array, syscall: string): OpenFile {
    this.enter(syscall);
    fd = argFd(fd, syscall);
    return this.#readChecks(this.fds.lookup(fd, syscall), into, syscall);
  }

  /** #readFile()'s checks of the file its fd found, and of the buffer. */
  #readChecks(file: OpenFile, into: Uint8Array, syscall: string): OpenFile {
    if (!file.readable) throw new ErrnoError("EBADF", syscall);
    if (file.ops.read === undefined && file.ops.readInto === undefined) throw new ErrnoError("EINVAL", syscall);
    // access_ok() of the buffer comes after the file checks (fs/read_write.c:vfs_read()).
    if (!(into instanceof Uint8Array)) throw new ErrnoError("EFAULT", syscall, `(buf: ${describe(into)})`);
    return file;
  }

  /** read(2) of an FMODE_ATOMIC_POS file: fdget_pos() takes f_pos_lock before anything else (filePosLock()). */
  async #readPosLocked(file: OpenFile, count: number): Promise<Uint8Array> {
    file.get();
    const unlock = await filePosLock(file);
    try {
      if (!file.readable) throw new ErrnoError("EBADF", "read");
      if (file.ops.read === undefined) throw new ErrnoError("EINVAL", "read");
      return await file.ops.read(file, this, count);
    } finally {
      unlock?.();
      file.put();
    }
  }

  /**
   * read(2) into user memory { addr, length } (a kernel-mode access that may userfault: the
   * thread sleeps there, holding f_pos_lock of an FMODE_ATOMIC_POS file); resolves to the bytes
   * copied, EFAULT when none could be. The offset is read before and stored after
   * (fs/read_write.c:ksys_read()). Divergence from Linux: a file other than shmem is read
   * before the copy, so bytes a failed copy does not take are lost (Linux leaves them in a pipe).
   */
  async readUser(fd: number, dest: UserBuffer): Promise<number> {
    this.enter("read");
    fd = argFd(fd, "read");
    const buf = userBuffer(dest, "read");
    const file = this.fds.lookup(fd, "read").get();
    const unlock = file.atomicPos ? await filePosLock(file) : null;
    try {
      if (!file.readable) throw new ErrnoError("EBADF", "read");
      if (file.ops.read === undefined) throw new ErrnoError("EINVAL", "read");
      if (file.ops instanceof ShmemFileOps) {
        const pos = file.pos;
        const done = await shmemReadUser(this, file.ops.inode, pos, buf.addr, buf.length, "read");
        this.#checkAlive();
        file.pos = pos + done;
        return done;
      }
      const data = await file.ops.read(file, this, buf.length);
      const done = await this.copyUser(buf.addr, data, true);
      this.#checkAlive();
      if (done === 0 && data.length > 0) throw new ErrnoError("EFAULT", "read");
      return done;
    } finally {
      unlock?.();
      file.put();
    }
  }

  /** write(2): bytes given directly, or read from user memory { addr, length } (a kernel-mode access that may userfault). */
  async write(fd: number, source: Uint8Array | UserBuffer): Promise<number> {
    this.enter("write");
    fd = argFd(fd, "write");
    const buf = sourceBuffer(source, "write");
    // fdget() for the whole call (see pwrite()); fdget_pos(): f_pos_lock of an FMODE_ATOMIC_POS
    // file is held until the write returns, also while its copy from user memory sleeps.
    const file = this.fds.lookup(fd, "write").get();
    // (No await for a file without FMODE_ATOMIC_POS: the write queues for the inode lock at once.)
    const unlock = file.atomicPos ? await filePosLock(file) : null;
    try {
      if (!file.writable) throw new ErrnoError("EBADF", "write");
      const write = file.ops.write;
      if (write === undefined) throw new ErrnoError("EINVAL", "write");
      // A shmem file copies from user memory page by page after finding its page (shmemWriteUser()).
      if (!(buf instanceof Uint8Array) && file.ops instanceof ShmemFileOps) return await file.ops.writeUser(file, this, buf.addr, buf.length);
      const data = buf instanceof Uint8Array ? buf : await this.#copyIn(buf, "write");
      this.#checkAlive();
      return await write.call(file.ops, file, this, data);
    } finally {
      unlock?.();
      file.put();
    }
  }

  /** close(2). Closing a userfaultfd wakes its waiters and ends its registrations. */
  async close(fd: number): Promise<void> {
    this.enter("close");
    this.fds.close(argFd(fd, "close"));
  }

  /** Passes an fd to another process (SCM_RIGHTS); returns the new fd number there. */
  async sendFd(fd: number, to: Process): Promise<number> {
    this.enter("sendmsg");
    fd = argFd(fd, "sendmsg");
    if (!(to instanceof Process) || to.kernel !== this.kernel) throw new ErrnoError("EINVAL", "sendmsg", "(not a process of this kernel)");
    const file = this.fds.lookup(fd, "sendmsg");
    if (to.exited) throw new ErrnoError("EPIPE", "sendmsg");
    return to.fds.install(file.get(), 0, "recvmsg");
  }

  // --- userfaultfd ------------------------------------------------------------------------

  /** userfaultfd(2): a new userfaultfd (flags: O_CLOEXEC, O_NONBLOCK, UFFD_USER_MODE_ONLY); resolves to its fd. */
  async userfaultfd(flags: number): Promise<number> {
    this.enter("userfaultfd");
    // SYSCALL_DEFINE1(userfaultfd, int, flags): the low 32 bits.
    return sysUserfaultfd(this, argInt(flags, "userfaultfd", "flags"));
  }

  /** open("/dev/userfaultfd") then ioctl(USERFAULTFD_IOC_NEW): the device path to a userfaultfd (root only by default). */
  async openDevUserfaultfd(flags: number): Promise<number> {
    this.enter("open");
    // USERFAULTFD_IOC_NEW's argument is an unsigned long that new_userfaultfd() takes as an int.
    return sysOpenDevUserfaultfd(this, argInt(flags, "ioctl", "flags"));
  }

  /** open("/proc/<pid>/pagemap", O_RDONLY) (default: self); the fd takes the PAGEMAP_SCAN ioctl. */
  async openPagemap(pid: number = this.pid): Promise<number> {
    this.enter("openat");
    // A pid that is no integer names no /proc directory.
    if (typeof pid !== "number" || !Number.isInteger(pid)) throw new ErrnoError("ENOENT", "openat", `(pid: ${describe(pid)})`);
    return sysOpenPagemap(this, pid);
  }

  /** ioctl(2). Not an async function: an ioctl that completes at once settles without extra promise hops. */
  ioctl(fd: number, request: number, arg: object): Promise<number> {
    try {
      this.enter("ioctl");
      // An int fd and an unsigned int request as numbers need no conversion.
      if (typeof fd !== "number" || (fd | 0) !== fd) fd = argFd(fd, "ioctl");
      if (typeof request !== "number" || request >>> 0 !== request) request = argUint(request, "ioctl", "request");
      const file = this.fds.lookup(fd, "ioctl");
      if (file.ops.ioctl === undefined) throw new ErrnoError("ENOTTY", "ioctl");
      return file.ops.ioctl(file, this, request, arg);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** io_uring_register(IORING_REGISTER_BUFFERS): a long-term pin (FOLL_LONGTERM) of a user buffer. */
  async ioUringRegisterBuffers(addr: number, length: number): Promise<PinnedBuffer> {
    this.enter("io_uring_register");
    // One struct iovec: both fields are read with copy_from_user(), EFAULT if they are no numbers.
    addr = argUserPtr(addr, "io_uring_register", "iov_base");
    length = argUserPtr(length, "io_uring_register", "iov_len");
    const r = await sysIoUringRegisterBuffers(this, addr, length);
    if (this.exited) {
      await r.unregister();
      throw new DeadTaskError();
    }
    return r;
  }

  /**
   * The simulation's stand-in for /sys/kernel/debug/gup_test (CONFIG_GUP_TEST, absent on the
   * reference host): PIN_LONGTERM_TEST_START as pin_user_pages(_fast) with FOLL_LONGTERM (unless
   * `longterm` is false) and FOLL_WRITE if `write`; the buffer's read() is
   * PIN_LONGTERM_TEST_READ, unregister() PIN_LONGTERM_TEST_STOP. See mm/gup.ts:sysGupTestPin().
   */
  async gupTestPin(addr: number, length: number, options: GupTestPinOptions): Promise<PinnedBuffer> {
    this.enter("ioctl");
    // struct pin_longterm_test: __u64 addr, __u64 size, __u32 flags.
    addr = argULong(addr, "ioctl", "addr", "EFAULT");
    length = argULong(length, "ioctl", "size", "EFAULT");
    if (typeof options !== "object" || options === null) throw new ErrnoError("EFAULT", "ioctl", "(options)");
    const opts: GupTestPinOptions = { write: options.write === true, longterm: options.longterm !== false, fast: options.fast === true };
    const r = await sysGupTestPin(this, addr, length, opts);
    if (this.exited) {
      await r.unregister();
      throw new DeadTaskError();
    }
    return r;
  }

  // --- processes --------------------------------------------------------------------------

  /** fork(2): a child with a copy-on-write copy of the memory; resolves to the child. */
  async fork(): Promise<Process> {
    this.enter("fork");
    const child = this.kernel.createProcess(this.name, this.creds, this, new Mm(this.kernel.core), this.fds.clone());
    const list: unknown[] = [];
    if (dupMmap(this.mm, child.mm, list) !== null) {
      // copy_process()'s bad_fork_* path: dup_userfaultfd_fail(), then the half-built child's mm
      // (exit_mmap) and files go; the child never existed for anyone to wait for.
      this.kernel.core.uffd.dupFail(list);
      child.#discard();
      throw new ErrnoError("ENOMEM", "fork");
    }
    this.children.add(child);
    await this.kernel.core.uffd.dupComplete(list);
    this.#checkAlive();
    return child;
  }

  /** Undoes a fork that failed before the child ran: its mm and fds go, and it leaves the process table. */
  #discard(): void {
    this.exited = true;
    this.#resolveKilled();
    this.mm.users = 0;
    unmapRange(this.mm, 0, TASK_SIZE);
    for (const hook of this.exitHooks.splice(0)) hook();
    this.fds.closeAll();
    this.kernel.processes.delete(this.pid);
  }

  /** exit(2): ends the process (its memory, fds and waiters go). */
  async exit(status = 0): Promise<void> {
    if (this.exited) throw new ErrnoError("ESRCH", "exit");
    // exit(int): a status no register holds is refused (EINVAL) and the process keeps running.
    this.doExit(argInt(status, "exit", "status") & 0xff, null);
  }

  /** do_exit(): the mm goes first (exit_mmap), then the files, then the parent is told. */
  doExit(status: number | null, signal: number | null): void {
    if (this.exited) return;
    this.exited = true;
    this.exitStatus = status;
    this.exitSignal = signal;
    this.#resolveKilled();
    this.mm.users = 0;
    unmapRange(this.mm, 0, TASK_SIZE);
    this.sleepers.wakeAll();
    for (const hook of this.exitHooks.splice(0)) hook();
    this.fds.closeAll();
    this.kernel.reap(this);
    for (const w of this.#exitWaiters.splice(0)) w();
  }

  /** kill(2): sends a signal (SIGKILL ends the target at once). */
  async kill(pid: number, signal: number): Promise<void> {
    this.enter("kill");
    pid = argInt(pid, "kill", "pid");
    signal = argInt(signal, "kill", "sig");
    if (signal < 0 || signal > 64) throw new ErrnoError("EINVAL", "kill");
    const target = this.kernel.processes.get(pid);
    if (target === undefined || target.exited) throw new ErrnoError("ESRCH", "kill");
    if (signal === 0) return;
    // Divergence from Linux: no signal handlers or job control. A signal whose default action
    // terminates ends the process; ignore-by-default and stop/continue signals do nothing.
    if (NON_TERMINATING_SIGNALS.has(signal)) return;
    target.doExit(null, signal === SIGKILL ? SIGKILL : signal);
  }

  /** waitpid(2): resolves when the child has ended, and reaps it. */
  async waitpid(pid: number): Promise<WaitStatus> {
    this.enter("wait4");
    pid = argInt(pid, "wait4", "pid");
    const child = [...this.children].find((c) => c.pid === pid);
    if (child === undefined) throw new ErrnoError("ECHILD", "wait4");
    if (!child.exited) {
      // A killable wait: the waiter's own death ends it (the child stays to be reaped by no one).
      await new Promise<void>((resolve) => {
        const unreg = this.#onKilled(resolve);
        child.#exitWaiters.push(() => {
          unreg();
          resolve();
        });
      });
      this.#checkAlive();
    }
    this.children.delete(child);
    this.kernel.processes.delete(child.pid);
    return { pid: child.pid, exitStatus: child.exitStatus, signal: child.exitSignal };
  }

  // --- introspection ----------------------------------------------------------------------

  /**
   * /proc/pid/pagemap entries for `pages` pages from `addr`, as a read() of that many 8-byte
   * entries at offset addr / 4096 * 8: the read stops at the end of the user address space, and
   * one call returns at most PAGEMAP_MAX_ENTRIES entries (a read into a finite buffer: ask again
   * from where it stopped). Arguments no register holds are EINVAL.
   *
   * With `{ format: "raw" }` the entries are the raw 64-bit words in a BigUint64Array (one per
   * page, bits as the kernel's file gives them to a privileged reader: PM_PRESENT 63, PM_SWAP 62,
   * PM_FILE 61, PM_GUARD_REGION 58, PM_UFFD_WP 57, PM_MMAP_EXCLUSIVE 56, the pfn or the swap
   * entry in bits 0-54), with no object per page: the form for large ranges. `into` is reused as
   * read(2) reuses a buffer: the result is a view of its first words, and an `into` shorter than
   * the range makes a short read of `into.length` entries. An `into` that is not a BigUint64Array
   * is a bad buffer: EFAULT.
   */
  pagemap(addr: number, pages: number): PagemapEntry[];
  pagemap(addr: number, pages: number, options: { format: "raw"; into?: BigUint64Array }): BigUint64Array;
  pagemap(addr: number, pages: number, options?: { format: "raw"; into?: BigUint64Array }): PagemapEntry[] | BigUint64Array {
    addr = argULong(addr, "pagemap", "addr");
    pages = argULong(pages, "pagemap", "pages");
    const first = Math.floor(addr / PAGE_SIZE);
    const last = Math.min(first + Math.min(pages, PAGEMAP_MAX_ENTRIES), TASK_SIZE / PAGE_SIZE);
    if (options?.format === "raw") {
      const into = options.into;
      if (into !== undefined && !(into instanceof BigUint64Array)) throw new ErrnoError("EFAULT", "pagemap", `(into: ${describe(into)})`);
      const n = Math.min(Math.max(0, last - first), into === undefined ? Infinity : into.length);
      return pagemapWords(this.mm, first, n, into === undefined ? new BigUint64Array(n) : into.subarray(0, n));
    }
    const out: PagemapEntry[] = [];
    for (let vpn = first; vpn < last; vpn++) out.push(pagemapEntry(this.mm, vpn));
    return out;
  }

  /** /proc/pid/smaps: one entry per vma with its rss, anonymous and swap sizes. */
  smaps(): VmaInfo[] {
    return this.mm.vmas.map((v) => smapsEntry(this.mm, v));
  }
}
