/**
 * The simulated execution: the driver's primitives on a fresh @uffd/kernel Kernel.
 *
 * Each primitive starts as its own promise (a syscall on the process, or an access by a new
 * thread), then the machine is run until nothing can progress (`kernel.idle()`): a primitive
 * still pending then is blocked, exactly as the native runner's settle rule reports it.
 */
import { decodeUffdMsgs, ErrnoError, Kernel, SignalError, type PinnedBuffer, type Process } from "@uffd/kernel";
import {
  O_NONBLOCK,
  PAGE_SIZE,
  PAGEMAP_SCAN,
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
  type PageRegion,
  type PmScanArg,
  type UffdioApi,
  type UffdioContinue,
  type UffdioCopy,
  type UffdioMove,
  type UffdioPoison,
  type UffdioRegister,
  type UffdioZeropage,
} from "@uffd/kernel/uapi";
import type { Backend, ExecReply, PmEntry, RawMsg, RawResult, World } from "./backend.ts";

/** A pagemap entry's PFN field, bits 0-54 (fs/proc/task_mmu.c: PM_PFRAME_BITS). */
const PM_PFN_MASK = (1n << 55n) - 1n;

/** The field value both runners put in an out field before the ioctl, to see whether it was written. */
export const OUT_SENTINEL = 0x7eadbeef;

/** Swap slots of a scenario with `# swap: zram`: the native runner's 64 MiB zram device less its header page. */
export const SIM_SWAP_PAGES = (64 << 20) / 4096 - 1;

/** Options of the simulation backend. */
export interface SimOptions {
  /** KernelOptions.seed of each fresh world. */
  seed?: number;
  /** Extra KernelOptions (swapPages, ...). */
  kernel?: ConstructorParameters<typeof Kernel>[0];
}

interface Pending {
  id: number;
  settled: boolean;
  result: RawResult | null;
}

/** The simulation side: each reset() is a fresh @uffd/kernel Kernel. */
export class SimBackend implements Backend {
  /** "sim". */
  readonly kind = "sim" as const;
  #options: SimOptions;
  /** The current world's kernel. */
  kernel!: Kernel;
  #procs = new Map<number, Process>();
  #pending: Pending[] = [];
  #allocated: number[] = [];
  /** Frames that have appeared in a pagemap answer: watched for being freed. */
  #seen = new Set<number>();
  #churn: number[] = [];
  /** Zero-page ptes after the last primitive, and whether that primitive added any. */
  #zeroPtes = 0;
  #zeroMapped = false;
  /** io_uring fixed buffers by the driver's ring id: the pin and the address it was registered at. */
  #rings = new Map<number, { buf: PinnedBuffer; base: number }>();

  constructor(options: SimOptions = {}) {
    this.#options = options;
  }

  async reset(world: World = {}): Promise<void> {
    // The native runner's zram device holds SIM_SWAP_PAGES slots; zram is SWP_SYNCHRONOUS_IO,
    // which is the simulation's default swap device kind ("zram").
    const swap = world.swap === true ? { swapPages: SIM_SWAP_PAGES, swapDevice: "zram" as const } : {};
    this.kernel = new Kernel({ ...this.#options.kernel, ...swap, seed: this.#options.seed ?? 1 });
    const mem = this.kernel.core.mem;
    const alloc = mem.allocFrame.bind(mem);
    const allocAnon = mem.allocAnonPage.bind(mem);
    const allocMany = mem.allocFrames.bind(mem);
    // Harness instrumentation, not a change of behaviour: note every frame handed out, by each of
    // PhysMem's three ways to hand one out, so the comparer knows where a frame's identity starts
    // anew (see compare.ts, "frame labels").
    mem.allocFrame = (zero: boolean): number => {
      const pfn = alloc(zero);
      if (pfn >= 0) this.#allocated.push(pfn);
      return pfn;
    };
    mem.allocAnonPage = (page: Uint8Array, index: number): number => {
      const pfn = allocAnon(page, index);
      if (pfn >= 0) this.#allocated.push(pfn);
      return pfn;
    };
    mem.allocFrames = (n: number, out: Int32Array): number => {
      const got = allocMany(n, out);
      for (let i = 0; i < got; i++) this.#allocated.push(out[i] as number);
      return got;
    };
    this.#procs = new Map([[0, this.kernel.spawn({ name: "p0" })]]);
    this.#pending = [];
    this.#seen.clear();
    this.#rings = new Map();
    this.#zeroPtes = 0;
    this.#zeroMapped = false;
  }

  churn(): readonly number[] {
    return this.#churn;
  }

  zeroMapped(): boolean {
    return this.#zeroMapped;
  }

  /** Present ptes mapping the shared zero page, over every vma of every live process. */
  #countZeroPtes(): number {
    const zero = BigInt(this.kernel.zeroPfn);
    let n = 0;
    for (const p of this.#procs.values()) {
      if (p.exited) continue;
      for (const v of p.smaps()) {
        const raw = p.pagemap(v.start, (v.end - v.start) / PAGE_SIZE, { format: "raw" });
        for (const e of raw) if (e >> 63n === 1n && (e & PM_PFN_MASK) === zero) n++;
      }
    }
    return n;
  }

  async live(): Promise<void> {}

  /** Nothing to release. */
  async close(): Promise<void> {}

  async #settle(): Promise<void> {
    for (let i = 0; i < 3; i++) {
      await this.kernel.idle();
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  async exec(proc: number, id: number, op: string, args: readonly number[]): Promise<ExecReply> {
    this.#allocated = [];
    const p = this.#procs.get(proc);
    if (p === undefined || p.exited) return { r: { bad: `no process ${proc}` }, done: [] };
    const entry: Pending = { id, settled: false, result: null };
    this.#pending.push(entry);
    const settle = (r: RawResult): void => {
      entry.settled = true;
      entry.result = r;
    };
    this.#run(p, op, args).then(settle, (e: unknown) => settle(errorResult(e)));
    await this.#settle();
    const done: { id: number; r: RawResult }[] = [];
    let r: RawResult = { blocked: 1 };
    for (const q of this.#pending) {
      if (!q.settled) continue;
      if (q === entry) r = q.result as RawResult;
      else done.push({ id: q.id, r: q.result as RawResult });
    }
    this.#pending = this.#pending.filter((q) => !q.settled);
    const mem = this.kernel.core.mem;
    this.#churn = [...this.#allocated, ...[...this.#seen].filter((pfn) => mem.isFree(pfn))];
    for (const pfn of this.#churn) this.#seen.delete(pfn);
    const zeroPtes = this.#countZeroPtes();
    this.#zeroMapped = zeroPtes > this.#zeroPtes;
    this.#zeroPtes = zeroPtes;
    return { r, done };
  }

  async #run(p: Process, op: string, a: readonly number[]): Promise<RawResult> {
    const n = (i: number): number => a[i] as number;
    switch (op) {
      case "mmap":
        return { ret: await p.mmap(n(0), n(1), n(2), n(3), n(4), n(5)) };
      case "munmap":
        return ok(await p.munmap(n(0), n(1)));
      case "mprotect":
        return ok(await p.mprotect(n(0), n(1), n(2)));
      case "madvise":
        return ok(await p.madvise(n(0), n(1), n(2)));
      case "mremap":
        return { ret: await p.mremap(n(0), n(1), n(2), n(3), n(4)) };
      case "mincore":
        return { ret: 0, vec: [...(await p.mincore(n(0), n(1)))] };
      case "memfd":
        return { ret: await p.memfdCreate("conform", n(0)) };
      case "ftruncate":
        return ok(await p.ftruncate(n(0), n(1)));
      case "fallocate":
        return ok(await p.fallocate(n(0), n(1), n(2), n(3)));
      case "pwrite":
        return { ret: await p.pwrite(n(0), new Uint8Array(n(2)).fill(n(3)), n(1)) };
      case "pwriteu":
        return { ret: await p.pwrite(n(0), { addr: n(3), length: n(2) }, n(1)) };
      case "pread": {
        const got = await p.pread(n(0), n(2), n(1));
        return { ret: got.length, data: firstBytes(got) };
      }
      case "readf": {
        const got = await p.read(n(0), n(1));
        return { ret: got.length, data: firstBytes(got) };
      }
      case "readfu":
        return { ret: await p.readUser(n(0), { addr: n(2), length: n(1) }) };
      case "writef":
        return { ret: await p.write(n(0), new Uint8Array(n(1)).fill(n(2))) };
      case "writefu":
        return { ret: await p.write(n(0), { addr: n(2), length: n(1) }) };
      case "lseek":
        return { ret: await p.lseek(n(0), n(1), n(2)) };
      case "fcntl":
        return { ret: await p.fcntl(n(0), n(1), n(2)) };
      case "reopen":
        return { ret: await p.reopen(n(0), n(1)) };
      case "preadu":
        return { ret: await p.pread(n(0), { addr: n(3), length: n(2) }, n(1)) };
      case "close":
        return ok(await p.close(n(0)));
      case "pipe":
        return { ret: 0, fds: await p.pipe2(O_NONBLOCK) };
      case "vmsplice":
        return { ret: await p.vmsplice(n(0), n(1), n(2), n(3)) };
      case "readpipe": {
        const got = await p.read(n(0), n(1));
        return { ret: got.length, data: firstBytes(got) };
      }
      case "uffd":
        return { ret: await p.userfaultfd(n(0)) };
      case "api": {
        const arg: UffdioApi = { api: n(1), features: n(2) };
        return withFields(() => p.ioctl(n(0), UFFDIO_API, arg), () => ({ features: arg.features, ioctls: (arg.ioctls ?? 0n).toString(16) }));
      }
      case "register": {
        const arg: UffdioRegister = { range: { start: n(1), len: n(2) }, mode: n(3), ioctls: 0xdeadn };
        return withFields(() => p.ioctl(n(0), UFFDIO_REGISTER, arg), () => ({ ioctls: (arg.ioctls ?? 0n).toString(16) }));
      }
      case "unregister":
        return { ret: await p.ioctl(n(0), UFFDIO_UNREGISTER, { start: n(1), len: n(2) }) };
      case "wake":
        return { ret: await p.ioctl(n(0), UFFDIO_WAKE, { start: n(1), len: n(2) }) };
      case "copy": {
        const arg: UffdioCopy = { dst: n(1), src: new Uint8Array(n(2)).fill(n(3)), len: n(2), mode: n(4), copy: OUT_SENTINEL };
        return withFields(() => p.ioctl(n(0), UFFDIO_COPY, arg), () => ({ out: arg.copy as number }));
      }
      case "zeropage": {
        const arg: UffdioZeropage = { range: { start: n(1), len: n(2) }, mode: n(3), zeropage: OUT_SENTINEL };
        return withFields(() => p.ioctl(n(0), UFFDIO_ZEROPAGE, arg), () => ({ out: arg.zeropage as number }));
      }
      case "wp":
        return { ret: await p.ioctl(n(0), UFFDIO_WRITEPROTECT, { range: { start: n(1), len: n(2) }, mode: n(3) }) };
      case "continue": {
        const arg: UffdioContinue = { range: { start: n(1), len: n(2) }, mode: n(3), mapped: OUT_SENTINEL };
        return withFields(() => p.ioctl(n(0), UFFDIO_CONTINUE, arg), () => ({ out: arg.mapped as number }));
      }
      case "poison": {
        const arg: UffdioPoison = { range: { start: n(1), len: n(2) }, mode: n(3), updated: OUT_SENTINEL };
        return withFields(() => p.ioctl(n(0), UFFDIO_POISON, arg), () => ({ out: arg.updated as number }));
      }
      case "move": {
        const arg: UffdioMove = { dst: n(1), src: n(2), len: n(3), mode: n(4), move: OUT_SENTINEL };
        return withFields(() => p.ioctl(n(0), UFFDIO_MOVE, arg), () => ({ out: arg.move as number }));
      }
      case "readmsg": {
        const bytes = await p.read(n(0), 16 * 32);
        const msgs = decodeUffdMsgs(bytes).map((m): RawMsg => {
          const arg = m.arg as Record<string, Record<string, unknown>>;
          if ("pagefault" in arg) {
            const pf = m.arg as { pagefault: { flags: number; address: number; feat: { ptid: number } } };
            return { event: m.event, flags: pf.pagefault.flags, address: pf.pagefault.address, ptid: pf.pagefault.feat.ptid };
          }
          if ("fork" in arg) return { event: m.event, ufd: (m.arg as { fork: { ufd: number } }).fork.ufd };
          if ("remap" in arg) return { event: m.event, ...(m.arg as { remap: { from: number; to: number; len: number } }).remap };
          return { event: m.event, ...(m.arg as { remove: { start: number; end: number } }).remove };
        });
        return { ret: msgs.length, msgs };
      }
      case "read": {
        const t = p.spawnThread();
        const got = await t.read(n(0), n(1) * PAGE_SIZE);
        return { ret: 0, data: firstBytes(got) };
      }
      case "write": {
        const t = p.spawnThread();
        await t.write(n(0), new Uint8Array(n(1) * PAGE_SIZE).fill(n(2)));
        return { ret: 0 };
      }
      case "pagemap":
        return { ret: 0, pm: this.#pagemap(p, n(0), n(1)) };
      case "smaps": {
        const lo = n(0);
        const hi = lo + n(1);
        const vmas = p
          .smaps()
          .filter((v) => v.start < hi && v.end > lo)
          .map((v) => ({ start: v.start, end: v.end, perms: v.perms, flags: v.vmFlags.join(" "), rss: v.rssBytes, anon: v.anonBytes, swap: v.swapBytes }));
        return { ret: 0, vmas };
      }
      case "scan": {
        const fd = await p.openPagemap();
        const vec: PageRegion[] = [];
        const arg: PmScanArg = {
          size: 96,
          flags: n(2),
          start: n(0),
          end: n(1),
          walkEnd: 0,
          vec: n(7) > 0 ? vec : null,
          vecLen: Math.min(n(7), 64),
          maxPages: n(8),
          categoryInverted: n(5),
          categoryMask: n(3),
          categoryAnyofMask: n(4),
          returnMask: n(6),
        };
        try {
          const ret = await p.ioctl(fd, PAGEMAP_SCAN, arg);
          return { ret, walkEnd: arg.walkEnd ?? 0, regions: vec.slice(0, ret).map((r) => [r.start, r.end, r.categories]) };
        } catch (e) {
          if (e instanceof ErrnoError) return { err: e.errno, walkEnd: arg.walkEnd ?? 0 };
          throw e;
        } finally {
          await p.close(fd);
        }
      }
      case "pin": {
        // Process.ioUringRegisterBuffers(): IORING_REGISTER_BUFFERS of one iovec on a new ring.
        const buf = await p.ioUringRegisterBuffers(n(1), n(2));
        this.#rings.set(n(0), { buf, base: n(1) });
        return { ret: 0 };
      }
      case "unpin": {
        const ring = this.#rings.get(n(0));
        if (ring === undefined) return { bad: `no ring ${n(0)}` };
        await ring.buf.unregister();
        return { ret: 0 };
      }
      case "pinio": {
        // ring write addr len byte: the device's access through the pin (io_uring READ_FIXED / WRITE_FIXED).
        const ring = this.#rings.get(n(0));
        if (ring === undefined) return { bad: `no ring ${n(0)}` };
        const offset = n(2) - ring.base;
        if (n(1) === 1) {
          ring.buf.write(offset, new Uint8Array(n(3)).fill(n(4)));
          return { ret: n(3) };
        }
        const got = ring.buf.read(offset, n(3));
        return { ret: got.length, data: firstBytes(got) };
      }
      case "fork": {
        const child = await p.fork();
        this.#procs.set(n(0), child);
        return { ret: 0 };
      }
      case "exit":
        await p.exit(0);
        return { ret: 0 };
      default:
        return { bad: `unknown primitive ${op}` };
    }
  }

  #pagemap(p: Process, addr: number, pages: number): PmEntry[] {
    const k = this.kernel;
    return p.pagemap(addr, pages).map((e): PmEntry => {
      const pfn = e.present ? e.pfn : null;
      const kf = pfn === null ? null : k.kpageflags(pfn);
      if (pfn !== null && pfn !== k.zeroPfn) this.#seen.add(pfn);
      return {
        present: e.present,
        swapped: e.swapped,
        file: e.file,
        exclusive: e.exclusive,
        uffdWp: e.uffdWp,
        guard: e.guard,
        pfn,
        count: pfn === null ? 0 : k.kpagecount(pfn),
        anon: kf?.anon ?? false,
        dirty: kf?.dirty ?? false,
        swapcache: kf?.swapcache ?? false,
        zero: kf?.zeroPage ?? false,
      };
    });
  }
}

function ok(_: unknown): RawResult {
  return { ret: 0 };
}

/** The byte at the start of each page of a buffer (what the runners report of page contents). */
export function firstBytes(bytes: Uint8Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < bytes.length; i += PAGE_SIZE) out.push(bytes[i] as number);
  return out;
}

/** An ioctl whose struct fields are reported on success and failure alike. */
async function withFields(call: () => Promise<number>, fields: () => Partial<RawResult>): Promise<RawResult> {
  try {
    const ret = await call();
    return { ret, ...fields() };
  } catch (e) {
    if (e instanceof ErrnoError) return { err: e.errno, ...fields() };
    throw e;
  }
}

function errorResult(e: unknown): RawResult {
  if (e instanceof ErrnoError) return { err: e.errno };
  if (e instanceof SignalError) return { sig: e.signal };
  return { bad: e instanceof Error ? `${e.name}: ${e.message}` : String(e) };
}
