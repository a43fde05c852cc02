/**
 * The simulated machine: physical memory, swap, the scheduler and the process table.
 * Everything nondeterministic draws from the seed given to the constructor, and two Kernel
 * instances share nothing.
 */
import { Prng } from "../lib/prng.ts";
import { ErrnoError } from "../uapi/errno.ts";
import { PhysMem, type FrameGenerator, type FrameStoreKind, type FrameStoreStats } from "../mm/folio.ts";
import { DEFAULT_MMAP_MIN_ADDR, Mm, type MmCore, TASK_SIZE, type UffdMmHooks } from "../mm/mm.ts";
import { PAGE_SIZE } from "../uapi/mman.ts";
import { ShmemInode, shmemDeleteEntry } from "../mm/shmem.ts";
import { SwapDevice } from "../mm/swap.ts";
import { FdTable } from "../fs/file.ts";
import { createUffdMmHooks } from "../fs/userfaultfd.ts";
import { kpagecount, kpageflags, type KPageFlags } from "../fs/procfs.ts";
import { checkInvariants, type RefHolder } from "./invariants.ts";
import { type Creds, Process } from "./process.ts";
import { type Preemption, Scheduler, seededPreemption } from "./sched.ts";
import { ALL_RELEASES, type AnyRelease, type CowPolicy, DEFAULT_RELEASE, type MmRules, type ReleaseProfile, releaseProfile, type Utsname, utsname } from "./release.ts";

/** Options of `new Kernel()`; every one has a default. */
export interface KernelOptions {
  /**
   * The Linux release the kernel answers as (default "6.18", the reference host's): the
   * userfaultfd uAPI a handler observes (features, ioctls, register modes, /dev/userfaultfd,
   * PAGEMAP_SCAN) and the copy-on-write rules (mapcount, page_count or PageAnonExclusive) follow
   * that release; docs/releases.md lists every difference. The long-term series are
   * KERNEL_RELEASES; HISTORY_RELEASES ("5.7", "5.18") replay the seeds' copy-on-write history.
   */
  release?: AnyRelease;
  /** Seeds every nondeterministic choice (wake order, scheduling, frame allocation order). */
  seed?: number;
  /** Physical memory in 4 KiB frames. Allocation beyond it fails as Linux does. */
  memoryPages?: number;
  /** Swap device size in pages. 0 (the default) means no swap: MADV_PAGEOUT keeps anon pages. */
  swapPages?: number;
  /**
   * What the swap device is (default "zram"). "zram" is a SWP_SYNCHRONOUS_IO device: writeback
   * completes within the reclaim pass, so a paged-out folio leaves the swap cache at once, and a
   * fault on an entry with swap count 1 reads it into a new folio that never enters the swap
   * cache (mm/memory.c:do_swap_page()). "file" is a swap file or disk: every swap-in goes through
   * the swap cache, and a paged-out folio stays there (clean, mincore() resident) until it is
   * faulted back or its entry is freed.
   */
  swapDevice?: "zram" | "file";
  /**
   * The vm.unprivileged_userfaultfd sysctl. Default: the release's boot default, false from 5.11
   * on (the reference host, 6.18, and every long-term profile but 5.10), true on "5.10" and
   * "5.7" (ReleaseProfile.unprivilegedUserfaultfdDefault).
   */
  unprivilegedUserfaultfd?: boolean;
  /**
   * vm.max_map_count: the most vmas a process may have (default 65530, as Linux). mmap() past it,
   * and a munmap() or mprotect() that would split past it, fail with ENOMEM.
   */
  maxMapCount?: number;
  /**
   * vm.overcommit_memory: 0 (the default) is Linux's heuristic, which refuses one private
   * writable mapping larger than memory plus swap (ENOMEM) unless MAP_NORESERVE; 1 never refuses.
   * 2 (strict accounting) is not simulated and is refused here.
   */
  overcommitMemory?: 0 | 1;
  /**
   * The vm.mmap_min_addr sysctl in bytes, a multiple of 4096 (default 4096, as on the reference
   * host): mmap and mremap below it need CAP_SYS_RAWIO, and address-space searches start there.
   */
  mmapMinAddr?: number;
  /**
   * Preemption at scheduling points (before each page access, after a userfault wake, at
   * Kernel.schedPoint()): a probability in [0, 1] drawn from the seed, or a policy (a test kit's
   * explorer). 0, the default, never preempts: a thread runs until it blocks.
   */
  preemption?: number | Preemption;
  /**
   * Host memory for this many frames (true: all of memoryPages) is taken and touched when the
   * kernel is created, so the host's first-touch page faults are paid up front rather than by
   * the first operations that allocate frames (for predictable timing). Default 0: frames get
   * host memory as they are first used (from a process-wide pool of chunks earlier kernels used,
   * when it has some). Changes timing and host memory only, never what the kernel does.
   */
  pretouch?: boolean | number;
  /**
   * How frame bytes are held in host memory (default "flat": 4 KiB of host memory per frame
   * ever written). "compact" keeps no bytes for a frame that is all zero or equal, byte for byte,
   * to the output of a generator registered with Kernel.registerFrameGenerator() (it keeps the
   * generator's arguments instead), and gives a frame a 4 KiB slot only while it holds other
   * bytes. Every read and write sees the same bytes either way: pagemap, kpageflags, rss and
   * every syscall result are unchanged; only host memory and time differ. `pretouch` does nothing
   * for a compact store.
   */
  frameStore?: FrameStoreKind;
}

/** Options of Kernel.spawn(). */
export interface SpawnOptions {
  /** A label for traces and reports (default "proc<pid>"). */
  name?: string;
  /** 0 is root. Root, or a process with CAP_SYS_PTRACE, may create kernel-mode userfaultfds. */
  uid?: number;
  /** Capabilities beyond what uid 0 implies, e.g. ["CAP_SYS_PTRACE"] for an unprivileged process. */
  capabilities?: readonly string[];
}

/** vm.max_map_count's default (include/linux/mm.h DEFAULT_MAX_MAP_COUNT: USHRT_MAX - 5). */
export const DEFAULT_MAX_MAP_COUNT = 65530;

/** Default physical memory: 8 GiB worth of frames (metadata grows only as frames are used). */
export const DEFAULT_MEMORY_PAGES = 1 << 21;

/** The machine-wide state every subsystem reaches. */
export class KernelCore implements MmCore {
  readonly mem: PhysMem;
  readonly swap: SwapDevice | null;
  uffd: UffdMmHooks;
  readonly sched: Scheduler;
  readonly prng: Prng;
  /** The release profile every release policy point asks. */
  readonly profile: ReleaseProfile;
  readonly cow: CowPolicy;
  readonly mmRules: MmRules;
  readonly unprivilegedUserfaultfd: boolean;
  readonly maxMapCount: number;
  readonly overcommitMemory: 0 | 1;
  readonly mmapMinAddr: number;
  /** Live shmem inodes (memfds and shared anonymous mappings). */
  readonly inodes = new Set<ShmemInode>();
  /** Whoever holds frame references outside page tables and caches (pipes, pins) reports them here. */
  readonly refHolders = new Set<RefHolder>();
  #anonVmaIds = 0;
  #inodeIds = 0;

  constructor(options: Required<KernelOptions>) {
    this.prng = new Prng(options.seed);
    this.profile = releaseProfile(options.release);
    this.cow = this.profile.cow;
    this.mmRules = this.profile.mm;
    const p = options.preemption;
    this.sched = new Scheduler(this.prng, typeof p !== "number" ? p : p > 0 ? seededPreemption(this.prng, p) : null);
    const t = options.pretouch;
    this.mem = new PhysMem(options.memoryPages, t === true ? options.memoryPages : t === false ? 0 : t, options.frameStore);
    this.swap = options.swapPages > 0 ? new SwapDevice(options.swapPages, this.mem, options.swapDevice === "zram") : null;
    this.unprivilegedUserfaultfd = options.unprivilegedUserfaultfd;
    this.maxMapCount = options.maxMapCount;
    this.overcommitMemory = options.overcommitMemory;
    this.mmapMinAddr = options.mmapMinAddr;
    this.uffd = createUffdMmHooks();
  }

  nextAnonVmaId(): number {
    return ++this.#anonVmaIds;
  }

  newInode(name: string): ShmemInode {
    const inode = new ShmemInode(++this.#inodeIds, name);
    this.inodes.add(inode);
    return inode;
  }

  /** iput() of the last reference: an inode with no open file and no mapping frees its pages. */
  inodeUnreferenced(inode: ShmemInode): void {
    if (inode.inUse || !this.inodes.has(inode)) return;
    for (const pgoff of [...inode.pages.keys()]) shmemDeleteEntry(this.mem, this.swap, inode, pgoff);
    this.inodes.delete(inode);
  }
}

/**
 * An invalid `new Kernel({...})` option: a plain error naming the option, the rule and the value
 * (RangeError for a number out of range, TypeError for a value of the wrong type), never a KernelBug.
 */
function badOption(name: string, rule: string, v: unknown): never {
  const shown = typeof v === "bigint" ? `${v}n` : typeof v === "string" ? JSON.stringify(v) : typeof v === "object" && v !== null ? "an object" : String(v);
  const E = typeof v === "number" ? RangeError : TypeError;
  throw new E(`new Kernel(): KernelOptions.${name} must be ${rule}, got ${shown}`);
}

function intOption(options: Record<string, unknown>, name: string, min: number, max: number, dflt: number): number {
  const v = options[name];
  if (v === undefined) return dflt;
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) badOption(name, `an integer in [${min}, ${max}]`, v);
  return v;
}

function frameStoreOption(o: Record<string, unknown>): FrameStoreKind {
  const v = o.frameStore;
  if (v === undefined) return "flat";
  if (v !== "flat" && v !== "compact") badOption("frameStore", '"flat" or "compact"', v);
  return v;
}

function swapDeviceOption(o: Record<string, unknown>): "zram" | "file" {
  const v = o.swapDevice;
  if (v === undefined) return "zram";
  if (v !== "zram" && v !== "file") badOption("swapDevice", '"zram" or "file"', v);
  return v;
}

/** vm.mmap_min_addr: a page-aligned byte count below TASK_SIZE. */
function mmapMinAddrOption(o: Record<string, unknown>): number {
  const v = o.mmapMinAddr;
  if (v === undefined) return DEFAULT_MMAP_MIN_ADDR;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0 || v % PAGE_SIZE !== 0 || v >= TASK_SIZE) {
    badOption("mmapMinAddr", `a multiple of ${PAGE_SIZE} in [0, TASK_SIZE)`, v);
  }
  return v;
}

/** Checks every option before anything is built (an invalid one is the caller's error, not a KernelBug). */
function validateOptions(options: KernelOptions): Required<KernelOptions> {
  if (typeof options !== "object" || options === null) badOption("(options)", "an object", options);
  const o = options as Record<string, unknown>;
  const upf = o.unprivilegedUserfaultfd;
  if (upf !== undefined && typeof upf !== "boolean") badOption("unprivilegedUserfaultfd", "a boolean", upf);
  const p = o.preemption;
  if (p !== undefined && !(typeof p === "number" && p >= 0 && p <= 1)) {
    const policy = p as Preemption | null;
    if (typeof policy !== "object" || policy === null || typeof policy.preempt !== "function" || typeof policy.pick !== "function") {
      badOption("preemption", "a probability in [0, 1] or a policy { preempt, pick }", p);
    }
  }
  const release = o.release ?? DEFAULT_RELEASE;
  if (!(ALL_RELEASES as readonly unknown[]).includes(release)) {
    badOption("release", `one of ${ALL_RELEASES.map((r) => JSON.stringify(r)).join(", ")}`, release);
  }
  return {
    release: release as AnyRelease,
    seed: intOption(o, "seed", -(2 ** 53 - 1), 2 ** 53 - 1, 1),
    memoryPages: intOption(o, "memoryPages", 2, 1 << 24, DEFAULT_MEMORY_PAGES),
    swapPages: intOption(o, "swapPages", 0, 1 << 24, 0),
    swapDevice: swapDeviceOption(o),
    unprivilegedUserfaultfd: (upf as boolean | undefined) ?? releaseProfile(release as AnyRelease).unprivilegedUserfaultfdDefault,
    preemption: (p as number | Preemption | undefined) ?? 0,
    maxMapCount: intOption(o, "maxMapCount", 1, 2 ** 31 - 1, DEFAULT_MAX_MAP_COUNT),
    overcommitMemory: intOption(o, "overcommitMemory", 0, 1, 0) as 0 | 1,
    mmapMinAddr: mmapMinAddrOption(o),
    pretouch: typeof o.pretouch === "boolean" ? o.pretouch : intOption(o, "pretouch", 0, 1 << 24, 0),
    frameStore: frameStoreOption(o),
  };
}

/**
 * A simulated Linux 6.18 kernel: physical memory, swap, a seeded scheduler with a virtual clock,
 * and the processes on it. Everything random comes from `options.seed`, so a run replays exactly.
 */
export class Kernel {
  /** @internal The memory manager's shared state (physical memory, swap, scheduler, PRNG). */
  readonly core: KernelCore;
  /** The options the kernel was created with, defaults filled in. */
  readonly options: Readonly<Required<KernelOptions>>;
  /** Every live process by pid. */
  readonly processes = new Map<number, Process>();
  #nextPid = 100;

  constructor(options: KernelOptions = {}) {
    this.options = Object.freeze(validateOptions(options));
    this.core = new KernelCore(this.options);
  }

  /** @internal The scheduler and its virtual clock. */
  get sched(): Scheduler {
    return this.core.sched;
  }

  /** The Linux release this kernel answers as (KernelOptions.release). */
  get release(): AnyRelease {
    return this.core.profile.release;
  }

  /** uname(2): `release` is `<series>-uffd`, e.g. "6.18-uffd". */
  uname(): Utsname {
    return utsname(this.core.profile);
  }

  /** Virtual time in nanoseconds. */
  get now(): number {
    return this.core.sched.now;
  }

  /** Creates a process with an empty address space and a main thread (uid 0 unless `options.uid` says otherwise). */
  spawn(options: SpawnOptions = {}): Process {
    const creds: Creds = { uid: options.uid ?? 0, capabilities: new Set(options.capabilities ?? []) };
    return this.createProcess(options.name ?? "init", creds, null, new Mm(this.core), new FdTable());
  }

  /** @internal Creates a process around an existing mm and fd table (fork's path). */
  createProcess(name: string, creds: Creds, parent: Process | null, mm: Mm, fds: FdTable): Process {
    const p = new Process(this, this.allocPid(), name, creds, parent, mm, fds);
    this.processes.set(p.pid, p);
    return p;
  }

  /** @internal The next pid or tid. */
  allocPid(): number {
    return this.#nextPid++;
  }

  /** @internal A new shmem inode (memfd_create's backing file). */
  newShmemInode(name: string): ShmemInode {
    return this.core.newInode(name);
  }

  /** Called by do_exit(): the process leaves the table once its parent is gone or never existed. */
  reap(p: Process): void {
    if (p.parent === null || p.parent.exited) this.processes.delete(p.pid);
  }

  /** Resolves once every simulated thread is blocked or finished and no kernel work is queued. */
  idle(): Promise<void> {
    return this.core.sched.idle();
  }

  /**
   * A scheduling point for code outside the kernel (a test kit's handler threads), named by a
   * task id of the caller's choosing: with KernelOptions.preemption the caller may be preempted
   * here like a thread before a page access. Null when it keeps running (always without preemption).
   */
  schedPoint(tid: number): Promise<void> | null {
    return this.core.sched.schedPoint(tid, "user");
  }

  /** /dev/mem: a copy of one frame's 4 KiB (introspection; no page is faulted or touched). */
  readFrame(pfn: number): Uint8Array {
    const mem = this.core.mem;
    // A read of /dev/mem beyond the end of memory.
    if (typeof pfn !== "number" || !Number.isInteger(pfn) || pfn < 0 || pfn >= mem.totalFrames) throw new ErrnoError("EINVAL", "readFrame", `(no frame ${String(pfn)})`);
    // A frame never handed out has no storage yet; it reads as zeros.
    return (mem.bytes(pfn) as Uint8Array | undefined) === undefined ? new Uint8Array(4096) : mem.readPage(pfn);
  }

  /**
   * Registers page contents a compact frame store (KernelOptions.frameStore "compact") may keep
   * as three 32-bit arguments instead of 4 KiB: from now on a frame written with exactly the bytes
   * `generator.fill()` produces for the arguments `generator.identify()` guesses is held that way.
   * Returns the generator's id. Both functions must be pure (the same arguments, the same
   * answer); one that throws only keeps the page it was asked about in 4 KiB. A flat store
   * accepts the generator and never calls it.
   */
  registerFrameGenerator(generator: FrameGenerator): number {
    if (typeof generator !== "object" || generator === null || typeof generator.fill !== "function" || typeof generator.identify !== "function") {
      throw new TypeError("registerFrameGenerator(): the generator must be an object with fill() and identify() functions");
    }
    return this.core.mem.registerGenerator(generator);
  }

  /** How the frame store holds frames right now (counts are zero for the flat store). */
  frameStoreStats(): FrameStoreStats {
    return this.core.mem.storeStats();
  }

  /** The pfn of the shared zero page. */
  get zeroPfn(): number {
    return this.core.mem.zeroPfn;
  }

  /** /proc/kpagecount: the map count of a frame. */
  kpagecount(pfn: number): number {
    return kpagecount(this.core.mem, pfn);
  }

  /** /proc/kpageflags, decoded. */
  kpageflags(pfn: number): KPageFlags {
    return kpageflags(this.core.mem, pfn);
  }

  /** Recounts refcounts, mapcounts, pin counts and rss from the page tables; throws KernelBug on any mismatch. */
  checkInvariants(): void {
    checkInvariants(this);
  }
}
