/**
 * The hostile-input driver: a bounded, seeded run that calls every syscall and ioctl of the
 * kernel with hostile values (NaN, infinities, fractions, negative and huge numbers, bigints,
 * strings, null, objects) mixed with valid ones, while fork trees grow and die, threads fault on
 * userfaultfd-registered memory that other calls unmap, remap and close, and a handler resolves
 * (or mishandles) the faults.
 *
 * What it counts (Report):
 * - calls: every syscall, ioctl, load/store and introspection call issued;
 * - escaped: rejections or throws other than ErrnoError, SignalError and DeadTaskError;
 * - invariantBreaks: Kernel.checkInvariants() failures (run every `checkEvery` steps and at the end);
 * - hangs: calls still unsettled after every process was killed and the kernel went idle;
 * - mismatches: shadow-model disagreements. One process group (the "shadow" process and its
 *   forks) only ever sees modelled operations (stores, loads, MADV_DONTNEED, fork) and calls
 *   that carry at least one value no register can hold; every such call must be refused and
 *   every page must read exactly what the model says.
 *
 * Everything random comes from one Prng seeded by the caller; the run replays from its seed.
 */
import { DeadTaskError, ErrnoError, Kernel, Prng, type Process, SignalError, type Thread } from "@uffd/kernel";
import {
  F_ADD_SEALS,
  F_GETFL,
  F_GETPIPE_SZ,
  F_SETFL,
  F_SETPIPE_SZ,
  MADV_DONTNEED,
  MADV_FREE,
  MADV_GUARD_INSTALL,
  MADV_PAGEOUT,
  MADV_POPULATE_WRITE,
  MADV_REMOVE,
  MADV_WIPEONFORK,
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_POPULATE,
  MAP_PRIVATE,
  MAP_SHARED,
  MREMAP_DONTUNMAP,
  MREMAP_FIXED,
  MREMAP_MAYMOVE,
  O_NONBLOCK,
  PAGE_SIZE,
  PAGEMAP_SCAN,
  PROT_READ,
  PROT_WRITE,
  SEEK_DATA,
  SEEK_END,
  UFFD_API,
  UFFD_FEATURE_EVENT_FORK,
  UFFD_FEATURE_EVENT_REMAP,
  UFFD_FEATURE_EVENT_REMOVE,
  UFFD_FEATURE_EVENT_UNMAP,
  UFFD_FEATURE_PAGEFAULT_FLAG_WP,
  UFFD_FEATURE_THREAD_ID,
  UFFDIO_API,
  UFFDIO_CONTINUE,
  UFFDIO_COPY,
  UFFDIO_MOVE,
  UFFDIO_POISON,
  UFFDIO_REGISTER,
  UFFDIO_UNREGISTER,
  UFFDIO_WAKE,
  UFFDIO_WRITEPROTECT,
  UFFDIO_ZEROPAGE,
  decodeUffdMsgs,
} from "@uffd/kernel/uapi";

const PS = PAGE_SIZE;
const RW = PROT_READ | PROT_WRITE;
const ANON = MAP_PRIVATE | MAP_ANONYMOUS;
const TASK_SIZE = 0x7ffffffff000;

export interface Options {
  seed: number;
  /** Stop after this many calls (rounded up to the end of a step). */
  calls: number;
  /** Kernel.checkInvariants() every this many steps. */
  checkEvery?: number;
}

export interface Report {
  seed: number;
  calls: number;
  outcomes: { ok: number; errno: number; signal: number; dead: number };
  escaped: number;
  invariantBreaks: number;
  hangs: number;
  mismatches: number;
  shadowPagesChecked: number;
  forks: number;
  faultsServed: number;
  /** The first few problems, for a failure message. */
  problems: string[];
}

/** Values no 64-bit register holds, and C values that are legal but nonsense. */
const JUNK: readonly unknown[] = [NaN, Infinity, -Infinity, 0.5, -0.5, 4096.5, 2 ** 64, 2 ** 70, -(2 ** 64), "0", "4096", "", "abc", null, undefined, {}, [], true, false, 2n ** 64n, -(2n ** 64n)];
const NONSENSE: readonly unknown[] = [-1, -4096, 0, 1, 4095, 2 ** 31, 2 ** 31 - 1, 2 ** 32, 2 ** 32 + 1, 0x1_0000_0001, 2 ** 47, 2 ** 53, 2 ** 53 + 2, 2 ** 63, -(2 ** 63), TASK_SIZE, TASK_SIZE - PS, -1n, 2n ** 63n, 2n ** 64n - 1n, 0x10000, 0xffffffff];

class Run {
  readonly rng: Prng;
  readonly k: Kernel;
  readonly report: Report;
  readonly opts: Required<Options>;
  /** Hostile group: processes any call may target. */
  readonly procs: Process[] = [];
  /** Per process: scratch areas [addr, len] it mapped, fds it opened, uffds, pins. */
  readonly areas = new Map<Process, Array<[number, number]>>();
  readonly fds = new Map<Process, number[]>();
  readonly uffds = new Map<Process, number[]>();
  readonly pins: Array<{ unregister(): Promise<void> }> = [];
  /** Shadow group: modelled memory, per process. */
  readonly shadow = new Map<Process, Map<number, Uint8Array>>();
  readonly shadowAreas: Array<[number, number]> = [];
  unsettled = 0;
  #stopped = false;

  constructor(opts: Options) {
    this.opts = { checkEvery: 256, ...opts };
    this.rng = new Prng(opts.seed);
    this.k = new Kernel({ seed: opts.seed, memoryPages: 1 << 14, swapPages: 1024, preemption: 0.05, maxMapCount: 4096 });
    this.report = {
      seed: opts.seed,
      calls: 0,
      outcomes: { ok: 0, errno: 0, signal: 0, dead: 0 },
      escaped: 0,
      invariantBreaks: 0,
      hangs: 0,
      mismatches: 0,
      shadowPagesChecked: 0,
      forks: 0,
      faultsServed: 0,
      problems: [],
    };
  }

  problem(msg: string): void {
    if (this.report.problems.length < 10) this.report.problems.push(msg);
  }

  // --- random values -------------------------------------------------------------------------

  pick<T>(xs: readonly T[]): T {
    return xs[this.rng.below(xs.length)] as T;
  }

  junk(): unknown {
    return this.pick(JUNK);
  }

  /** Mostly plausible, sometimes nonsense, sometimes junk. */
  num(plausible: () => number): unknown {
    const r = this.rng.below(100);
    if (r < 70) return plausible();
    if (r < 88) return this.pick(NONSENSE);
    return this.junk();
  }

  pages(max = 8): number {
    return (1 + this.rng.below(max)) * PS;
  }

  area(p: Process): [number, number] | null {
    const a = this.areas.get(p) ?? [];
    return a.length === 0 ? null : this.pick(a);
  }

  /** An address in or near one of p's areas (page-aligned mostly). */
  addr(p: Process): number {
    const a = this.area(p);
    if (a === null) return 0x10000 * (1 + this.rng.below(16));
    const off = this.rng.below(a[1] / PS + 2) * PS - (this.rng.chance(0.1) ? PS : 0);
    return a[0] + off + (this.rng.chance(0.05) ? this.rng.below(PS) : 0);
  }

  fd(p: Process): number {
    const list = [...(this.fds.get(p) ?? []), ...(this.uffds.get(p) ?? [])];
    if (list.length === 0 || this.rng.chance(0.1)) return this.rng.below(8) - 1;
    return this.pick(list);
  }

  proc(): Process | null {
    const live = this.procs.filter((q) => !q.exited);
    return live.length === 0 ? null : this.pick(live);
  }

  thread(p: Process): Thread {
    if (p.threads.length < 3 && this.rng.chance(0.05)) return p.spawnThread();
    return this.pick(p.threads);
  }

  // --- issuing calls ----------------------------------------------------------------------------

  /** Issues one call: classifies how it settles, never awaits it (it may block until teardown). */
  issue(what: string, call: () => unknown): Promise<unknown> {
    this.report.calls++;
    if (process.env.HOSTILE_DEBUG) process.stderr.write(`${this.report.calls} ${what}\n`);
    let p: Promise<unknown>;
    try {
      const r = call();
      p = r instanceof Promise ? r : Promise.resolve(r);
    } catch (e) {
      p = Promise.reject(e);
    }
    this.unsettled++;
    return p.then(
      (v) => {
        this.unsettled--;
        this.report.outcomes.ok++;
        return v;
      },
      (e: unknown) => {
        this.unsettled--;
        if (e instanceof ErrnoError) this.report.outcomes.errno++;
        else if (e instanceof SignalError) this.report.outcomes.signal++;
        else if (e instanceof DeadTaskError) this.report.outcomes.dead++;
        else {
          this.report.escaped++;
          this.problem(`${what}: escaped ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
        }
        return undefined;
      },
    );
  }

  /** issue(), resolving to whether the call succeeded. */
  issueOk(what: string, call: () => unknown): Promise<boolean> {
    let ok = false;
    return this.issue(what, () => {
      const r = call();
      return (r instanceof Promise ? r : Promise.resolve(r)).then((v) => {
        ok = true;
        return v;
      });
    }).then(() => ok);
  }

  // --- the hostile group ----------------------------------------------------------------------

  async hostileStep(): Promise<void> {
    const p = this.proc();
    if (p === null) {
      this.procs.push(this.k.spawn({ name: "h" }));
      return;
    }
    const r = this.rng.below(46);
    const any = p as unknown as Record<string, (...a: unknown[]) => unknown>;
    const call = (name: string, ...args: unknown[]): Promise<unknown> => this.issue(name, () => any[name]!.apply(p, args));
    switch (r) {
      case 0:
      case 1: {
        const len = this.num(() => this.pages());
        const flags = this.rng.chance(0.8) ? ANON | (this.rng.chance(0.1) && typeof len === "number" && len < 2 ** 20 ? MAP_POPULATE : 0) : this.rng.chance(0.5) ? MAP_SHARED : this.num(() => ANON | MAP_FIXED);
        const fixed = typeof flags === "number" && (flags & MAP_FIXED) !== 0;
        const fd = typeof flags === "number" && (flags & MAP_ANONYMOUS) !== 0 ? -1 : this.fd(p);
        void call("mmap", fixed ? this.addr(p) : this.num(() => 0), len, this.num(() => RW), flags, this.rng.chance(0.9) ? fd : this.junk(), this.num(() => 0)).then((v) => {
          if (typeof v === "number" && typeof len === "number" && len > 0 && len < 2 ** 30) this.addArea(p, v, Math.ceil(len / PS) * PS);
        });
        return;
      }
      case 2:
      case 3:
        void call("munmap", this.addr(p), this.num(() => this.pages()));
        return;
      case 4:
        void call("mprotect", this.addr(p), this.num(() => this.pages()), this.num(() => this.pick([PROT_READ, RW, 0])));
        return;
      case 5:
        void call("madvise", this.addr(p), this.num(() => this.pages()), this.num(() => this.pick([MADV_DONTNEED, MADV_FREE, MADV_PAGEOUT, MADV_REMOVE, MADV_POPULATE_WRITE, MADV_WIPEONFORK, MADV_GUARD_INSTALL])));
        return;
      case 6: {
        const flags = this.num(() => this.pick([0, MREMAP_MAYMOVE, MREMAP_MAYMOVE | MREMAP_FIXED, MREMAP_MAYMOVE | MREMAP_DONTUNMAP]));
        void call("mremap", this.addr(p), this.num(() => this.pages()), this.num(() => this.pages()), flags, this.addr(p)).then((v) => {
          if (typeof v === "number") this.addArea(p, v, PS);
        });
        return;
      }
      case 7:
        void call("mincore", this.addr(p), this.num(() => this.pages(64)));
        return;
      case 8: {
        void call("memfdCreate", this.rng.chance(0.9) ? "m" : this.junk(), this.num(() => this.pick([0, 2]))).then((v) => {
          if (typeof v === "number") this.addFd(p, v);
        });
        return;
      }
      case 9:
        void call("ftruncate", this.fd(p), this.num(() => this.pages(16)));
        return;
      case 10:
        void call("fallocate", this.fd(p), this.num(() => this.pick([0, 1, 3])), this.num(() => this.pages()), this.num(() => this.pages()));
        return;
      case 11:
        void call("pwrite", this.fd(p), this.userBuf(p, true), this.num(() => this.pages(4)));
        return;
      case 12:
        void call("pread", this.fd(p), this.rng.chance(0.5) ? this.num(() => this.pages(2)) : this.userBuf(p, false), this.num(() => this.pages(4)));
        return;
      case 13:
        void call("lseek", this.fd(p), this.num(() => this.pages()), this.num(() => this.pick([0, 1, SEEK_END, SEEK_DATA, 4])));
        return;
      case 14:
        void call("read", this.fd(p), this.num(() => this.pick([32, 64, PS])));
        return;
      case 15:
        void call("write", this.fd(p), this.userBuf(p, true));
        return;
      case 16:
        if (this.rng.chance(0.3)) void call("close", this.fd(p));
        return;
      case 17:
        void call("fcntl", this.fd(p), this.num(() => this.pick([F_GETFL, F_SETFL, F_SETPIPE_SZ, F_GETPIPE_SZ, F_ADD_SEALS])), this.num(() => this.pick([O_NONBLOCK, PS, 1, 0])));
        return;
      case 18: {
        void call("pipe2", this.num(() => O_NONBLOCK)).then((v) => {
          if (Array.isArray(v)) for (const fd of v) this.addFd(p, fd as number);
        });
        return;
      }
      case 19:
        void call("poll", this.rng.chance(0.9) ? [{ fd: this.fd(p), events: this.num(() => 1) }] : this.junk(), this.num(() => this.pick([0, 1])));
        return;
      case 20:
        void call("vmsplice", this.fd(p), this.addr(p), this.num(() => this.pages(2)), this.num(() => this.pick([0, 2])));
        return;
      case 21: {
        void call("userfaultfd", this.num(() => O_NONBLOCK | this.pick([0, 1]))).then((v) => {
          if (typeof v === "number") this.initUffd(p, v);
        });
        return;
      }
      case 22:
      case 23:
      case 24:
      case 25:
        this.hostileIoctl(p);
        return;
      case 26: {
        void call("openPagemap", this.num(() => p.pid)).then((v) => {
          if (typeof v !== "number") return;
          void call("ioctl", v, PAGEMAP_SCAN, this.scanArg(p));
          void call("close", v);
        });
        return;
      }
      case 27:
      case 28:
      case 29: {
        const t = this.thread(p);
        const write = this.rng.chance(0.5);
        const a = this.rng.chance(0.9) ? this.addr(p) : this.junk();
        this.issue(write ? "store" : "load", () => (write ? t.write(a as number, new Uint8Array(this.rng.below(64) + 1)) : t.read(a as number, this.num(() => 1 + this.rng.below(64)) as number)));
        return;
      }
      case 30:
        if (this.procs.length < 12 && this.rng.chance(0.5)) {
          void call("fork").then((c) => {
            if (c !== undefined) this.adopt(p, c as Process);
          });
        }
        return;
      case 31:
        if (this.rng.chance(0.2)) void call("exit", this.num(() => 0));
        return;
      case 32: {
        const target = this.proc();
        void call("kill", this.num(() => target?.pid ?? 0), this.num(() => this.pick([0, 9, 15])));
        return;
      }
      case 33: {
        const kids = [...p.children];
        void call("waitpid", this.num(() => (kids.length > 0 ? this.pick(kids).pid : 1)));
        return;
      }
      case 34:
        // (NONSENSE counts such as 2^53 are legal and make pagemap return its 2^22-entry maximum: too slow to draw often.)
        this.issue("pagemap", () => p.pagemap(this.addr(p) as never, (this.rng.chance(0.9) ? this.rng.below(64) : this.rng.chance(0.99) ? this.junk() : -1) as number));
        this.issue("smaps", () => p.smaps());
        return;
      case 35:
        this.issue("kpageflags", () => this.k.kpageflags(this.num(() => this.rng.below(1 << 14)) as number));
        this.issue("kpagecount", () => this.k.kpagecount(this.num(() => this.rng.below(1 << 14)) as number));
        this.issue("readFrame", () => this.k.readFrame(this.num(() => this.rng.below(1 << 14)) as number));
        return;
      case 36:
        if (this.pins.length < 8) {
          void call(this.rng.chance(0.5) ? "ioUringRegisterBuffers" : "gupTestPin", this.addr(p), this.num(() => this.pages(2)), { write: this.rng.chance(0.5), longterm: true, fast: false }).then((v) => {
            if (v !== undefined) this.pins.push(v as { unregister(): Promise<void> });
          });
        } else {
          const pin = this.pins.splice(this.rng.below(this.pins.length), 1)[0]!;
          void this.issue("unregister", () => pin.unregister());
        }
        return;
      case 37: {
        const to = this.proc();
        if (to !== null) {
          void call("sendFd", this.fd(p), this.rng.chance(0.95) ? to : this.junk()).then((v) => {
            if (typeof v === "number") this.addFd(to, v);
          });
        }
        return;
      }
      case 38: {
        void call("openDevUserfaultfd", this.num(() => O_NONBLOCK)).then((v) => {
          if (typeof v === "number") this.initUffd(p, v);
        });
        return;
      }
      case 39:
        void call("reopen", this.fd(p), this.num(() => this.pick([0, 2, O_NONBLOCK])));
        return;
      case 40:
      case 41: {
        // A valid registration of a whole area, so that threads fault on it.
        const fds = this.uffds.get(p) ?? [];
        const a = this.area(p);
        if (fds.length === 0 || a === null) {
          void call("userfaultfd", O_NONBLOCK).then((v) => {
            if (typeof v === "number") this.initUffd(p, v);
          });
        } else {
          const fd = this.pick(fds);
          void call("ioctl", fd, UFFDIO_API, { api: UFFD_API, features: 0 });
          void call("ioctl", fd, UFFDIO_REGISTER, { range: { start: a[0], len: a[1] }, mode: this.pick([1, 1, 3]) });
          const t = this.thread(p);
          for (let i = 0; i < 3; i++) {
            const at = a[0] + this.rng.below(a[1] / PS) * PS;
            void this.issue("store", () => t.write(at, new Uint8Array([1])));
          }
        }
        return;
      }
      default:
        this.serve(p);
    }
  }

  userBuf(p: Process, source: boolean): unknown {
    const r = this.rng.below(10);
    if (r < 4 && source) return new Uint8Array(this.rng.below(2 * PS) + 1);
    if (r < 9) return { addr: this.addr(p), length: this.num(() => this.rng.below(2 * PS) + 1) };
    return this.junk();
  }

  addArea(p: Process, addr: number, len: number): void {
    const list = this.areas.get(p) ?? [];
    list.push([addr, len]);
    if (list.length > 24) list.shift();
    this.areas.set(p, list);
  }

  addFd(p: Process, fd: number): void {
    const list = this.fds.get(p) ?? [];
    if (!list.includes(fd)) list.push(fd);
    this.fds.set(p, list);
  }

  adopt(parent: Process, child: Process): void {
    this.report.forks++;
    this.procs.push(child);
    this.areas.set(child, [...(this.areas.get(parent) ?? [])]);
    this.fds.set(child, [...(this.fds.get(parent) ?? [])]);
    this.uffds.set(child, [...(this.uffds.get(parent) ?? [])]);
  }

  initUffd(p: Process, fd: number): void {
    const features = this.pick([0, UFFD_FEATURE_THREAD_ID, UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_EVENT_REMOVE, UFFD_FEATURE_EVENT_REMAP, UFFD_FEATURE_EVENT_FORK, UFFD_FEATURE_PAGEFAULT_FLAG_WP]);
    const list = this.uffds.get(p) ?? [];
    list.push(fd);
    this.uffds.set(p, list);
    const a = this.area(p);
    void this.issue("ioctl", () => p.ioctl(fd, UFFDIO_API, { api: this.num(() => UFFD_API), features: this.num(() => features) })).then(() => {
      if (a !== null) void this.issue("ioctl", () => p.ioctl(fd, UFFDIO_REGISTER, { range: { start: a[0], len: a[1] }, mode: this.pick([1, 2, 3]) }));
    });
  }

  rangeArg(p: Process): unknown {
    if (this.rng.chance(0.1)) return this.junk();
    return { start: this.num(() => this.addr(p)), len: this.num(() => this.pages()) };
  }

  hostileIoctl(p: Process): void {
    const fd = this.fd(p);
    const req = this.rng.chance(0.95)
      ? this.pick([UFFDIO_API, UFFDIO_REGISTER, UFFDIO_UNREGISTER, UFFDIO_WAKE, UFFDIO_COPY, UFFDIO_ZEROPAGE, UFFDIO_WRITEPROTECT, UFFDIO_CONTINUE, UFFDIO_POISON, UFFDIO_MOVE, PAGEMAP_SCAN])
      : this.num(() => this.rng.nextU32());
    let arg: unknown;
    switch (req) {
      case UFFDIO_API:
        arg = { api: this.num(() => UFFD_API), features: this.num(() => 0) };
        break;
      case UFFDIO_REGISTER:
        arg = { range: this.rangeArg(p), mode: this.num(() => this.pick([1, 2, 3, 4])) };
        break;
      case UFFDIO_UNREGISTER:
      case UFFDIO_WAKE:
        arg = this.rangeArg(p);
        break;
      case UFFDIO_COPY:
        arg = { dst: this.num(() => this.addr(p)), src: this.rng.chance(0.5) ? new Uint8Array(this.pages(2)) : this.num(() => this.addr(p)), len: this.num(() => this.pages(2)), mode: this.num(() => this.pick([0, 1, 2])) };
        break;
      case UFFDIO_MOVE:
        arg = { dst: this.num(() => this.addr(p)), src: this.num(() => this.addr(p)), len: this.num(() => this.pages(2)), mode: this.num(() => this.pick([0, 1, 2])) };
        break;
      case PAGEMAP_SCAN:
        arg = this.scanArg(p);
        break;
      default:
        arg = { range: this.rangeArg(p), mode: this.num(() => this.pick([0, 1, 2])) };
    }
    if (this.rng.chance(0.05)) arg = this.rng.chance(0.5) ? Object.freeze(arg as object) : this.junk();
    void this.issue("ioctl", () => p.ioctl(fd, req as number, arg as object));
  }

  scanArg(p: Process): unknown {
    const start = this.num(() => this.addr(p));
    return {
      size: this.num(() => 96),
      flags: this.num(() => 0),
      start,
      end: this.num(() => (typeof start === "number" ? start + this.pages(32) : 0)),
      vec: this.rng.chance(0.8) ? [] : this.junk(),
      vecLen: this.num(() => 8),
      maxPages: this.num(() => 0),
      categoryInverted: this.num(() => 0),
      categoryMask: this.num(() => 0),
      categoryAnyofMask: this.num(() => 0xff),
      returnMask: this.num(() => 0xff),
    };
  }

  /** The handler: reads what each uffd of p has queued and resolves (or mishandles) it. */
  serve(p: Process): void {
    for (const fd of this.uffds.get(p) ?? []) {
      void this.issue("read", () => p.read(fd, 16 * 32)).then((bytes) => {
        if (!(bytes instanceof Uint8Array)) return;
        let msgs;
        try {
          msgs = decodeUffdMsgs(bytes);
        } catch {
          // The fd number was closed and reused by a memfd or pipe: these bytes are no uffd_msg.
          return;
        }
        for (const m of msgs) {
          if (m.event !== 0x12) continue;
          this.report.faultsServed++;
          const dst = m.arg.pagefault.address - (m.arg.pagefault.address % PS);
          const r = this.rng.below(10);
          if (r < 6) void this.issue("ioctl", () => p.ioctl(fd, UFFDIO_COPY, { dst, src: new Uint8Array(PS).fill(this.rng.below(256)), len: PS, mode: 0 }));
          else if (r < 8) void this.issue("ioctl", () => p.ioctl(fd, UFFDIO_ZEROPAGE, { range: { start: dst, len: PS }, mode: 0 }));
          else if (r < 9) void this.issue("ioctl", () => p.ioctl(fd, UFFDIO_WRITEPROTECT, { range: { start: dst, len: PS }, mode: 0 }));
          else void this.issue("ioctl", () => p.ioctl(fd, UFFDIO_WAKE, { start: dst, len: PS }));
        }
      });
    }
  }

  // --- the shadow group -----------------------------------------------------------------------

  async shadowSetup(): Promise<void> {
    const s = this.k.spawn({ name: "shadow" });
    this.shadow.set(s, new Map());
    for (let i = 0; i < 4; i++) {
      const addr = 0x1_0000_0000 + i * 64 * PS;
      await s.mmap(addr, 16 * PS, RW, ANON | MAP_FIXED);
      this.shadowAreas.push([addr, 16 * PS]);
    }
  }

  shadowPage(addr: number): [number, number] {
    const [base, len] = this.pick(this.shadowAreas);
    return [base + this.rng.below(len / PS) * PS, addr];
  }

  async shadowStep(): Promise<void> {
    const procs = [...this.shadow.keys()].filter((q) => !q.exited);
    const s = this.pick(procs);
    const model = this.shadow.get(s)!;
    const [page] = this.shadowPage(0);
    const r = this.rng.below(20);
    if (r < 8) {
      // A store somewhere in one page.
      const off = this.rng.below(PS - 16);
      const data = new Uint8Array(1 + this.rng.below(16)).map(() => this.rng.below(256));
      // A store that faults (no memory left: SIGBUS) writes nothing.
      if (await this.issueOk("store", () => this.pick(s.threads).write(page + off, data))) {
        const cur = model.get(page) ?? new Uint8Array(PS);
        cur.set(data, off);
        model.set(page, cur);
      }
    } else if (r < 13) {
      await this.checkShadowPage(s, page);
    } else if (r < 14) {
      if (await this.issueOk("madvise", () => s.madvise(page, PS, MADV_DONTNEED))) model.delete(page);
    } else if (r < 15 && this.shadow.size < 4) {
      const c = (await this.issue("fork", () => s.fork())) as Process | undefined;
      if (c !== undefined) {
        this.report.forks++;
        this.shadow.set(c, new Map([...model].map(([a, b]) => [a, b.slice()])));
      }
    } else if (r < 16 && procs.length > 1 && s !== procs[0]) {
      await this.issue("exit", () => s.exit(0));
      this.shadow.delete(s);
    } else {
      await this.invalidShadowCall(s, page);
    }
  }

  /** A call at the shadow memory with one argument no register holds: it must be refused. */
  async invalidShadowCall(s: Process, page: number): Promise<void> {
    // Not undefined: an omitted optional argument takes its default (mremap's new_address is 0).
    let bad = this.junk();
    while (bad === undefined) bad = this.junk();
    const calls: Array<[string, () => unknown]> = [
      ["munmap", () => s.munmap(page, bad as number)],
      ["munmap", () => s.munmap(bad as number, PS)],
      ["mprotect", () => s.mprotect(page, bad as number, PROT_READ)],
      ["mprotect", () => s.mprotect(page, PS, bad as number)],
      ["madvise", () => s.madvise(page, bad as number, MADV_DONTNEED)],
      ["madvise", () => s.madvise(page, PS, bad as number)],
      ["mmap", () => s.mmap(page, bad as number, PROT_READ, ANON | MAP_FIXED)],
      ["mmap", () => s.mmap(page, PS, PROT_READ, ANON | MAP_FIXED, -1, bad as number)],
      ["mremap", () => s.mremap(page, PS, bad as number, MREMAP_MAYMOVE)],
      ["mremap", () => s.mremap(page, PS, PS, MREMAP_MAYMOVE | MREMAP_FIXED, bad as number)],
      ["store", () => this.pick(s.threads).write(bad as number, new Uint8Array([0xee]))],
    ];
    const [name, call] = this.pick(calls);
    if (await this.issueOk(name, call)) {
      this.report.mismatches++;
      this.problem(`shadow: ${name} with ${String(bad)} was accepted`);
    }
  }

  async checkShadowPage(s: Process, page: number): Promise<void> {
    const model = this.shadow.get(s)!;
    const want = model.get(page) ?? new Uint8Array(PS);
    const got = await this.issue("load", () => this.pick(s.threads).read(page, PS));
    // A load that cannot fault its page in (no memory for a page table... SIGBUS) checks nothing.
    if (!(got instanceof Uint8Array)) return;
    this.report.shadowPagesChecked++;
    if (got.length !== PS || got.some((b, i) => b !== want[i])) {
      this.report.mismatches++;
      this.problem(`shadow: pid ${s.pid} page 0x${page.toString(16)} differs from the model`);
    }
  }

  // --- the run --------------------------------------------------------------------------------

  checkInvariants(where: string): void {
    try {
      this.k.checkInvariants();
    } catch (e) {
      this.report.invariantBreaks++;
      this.problem(`invariants ${where}: ${String(e)}`);
    }
  }

  async run(): Promise<Report> {
    await this.shadowSetup();
    for (let i = 0; i < 3; i++) this.procs.push(this.k.spawn({ name: `h${i}` }));
    let step = 0;
    while (this.report.calls < this.opts.calls && !this.#stopped) {
      step++;
      if (this.rng.chance(0.15)) await this.shadowStep();
      else await this.hostileStep();
      if (step % 16 === 0) for (const p of this.procs) if (!p.exited) this.serve(p);
      if (step % 64 === 0) await this.settle();
      if (step % this.opts.checkEvery === 0) this.checkInvariants(`at step ${step}`);
      // Keep the population bounded: reap exited processes from the lists.
      if (step % 128 === 0) this.prune();
    }
    await this.teardown();
    return this.report;
  }

  /** Lets blocked work progress (bounded: a livelock report is a problem, not a hang). */
  async settle(): Promise<void> {
    try {
      await this.k.idle();
    } catch (e) {
      this.report.escaped++;
      this.problem(`idle: ${String(e)}`);
      this.#stopped = true;
    }
  }

  prune(): void {
    for (let i = this.procs.length - 1; i >= 0; i--) {
      const p = this.procs[i]!;
      if (p.exited) {
        this.procs.splice(i, 1);
        this.areas.delete(p);
        this.fds.delete(p);
        this.uffds.delete(p);
      }
    }
  }

  async teardown(): Promise<void> {
    // Every shadow page, once more.
    for (const s of [...this.shadow.keys()]) {
      for (const [base, len] of this.shadowAreas) for (let a = base; a < base + len; a += PS) await this.checkShadowPage(s, a);
    }
    for (const pin of this.pins.splice(0)) await this.issue("unregister", () => pin.unregister());
    const killer = this.k.spawn({ name: "reaper" });
    for (const p of [...this.k.processes.values()]) if (p !== killer && !p.exited) await killer.kill(p.pid, 9).catch(() => undefined);
    await this.settle();
    await this.settle();
    this.checkInvariants("after teardown");
    this.report.hangs = this.unsettled;
    if (this.unsettled > 0) this.problem(`${this.unsettled} calls never settled`);
  }
}

/** Runs one seeded hostile session. */
export function runHostile(opts: Options): Promise<Report> {
  return new Run(opts).run();
}

/** One line per report, for logs and docs. */
export function formatReport(r: Report, ms: number): string {
  const o = r.outcomes;
  return (
    `seed ${r.seed}: ${r.calls} calls (ok ${o.ok}, errno ${o.errno}, signal ${o.signal}, dead ${o.dead}), ` +
    `${r.forks} forks, ${r.faultsServed} faults served, ${r.shadowPagesChecked} shadow pages checked; ` +
    `escaped ${r.escaped}, invariant breaks ${r.invariantBreaks}, hangs ${r.hangs}, mismatches ${r.mismatches} [${ms.toFixed(0)} ms]`
  );
}
