/**
 * Shared helpers for the userfaultfd conformance suite. Everything here goes through the public
 * entries "@uffd/kernel" and "@uffd/kernel/uapi" only, exactly as a C program goes through the
 * syscall ABI: the suite must pass unchanged against any faithful implementation.
 *
 * The uffd-common.c port (uffdTestCtxInit, the poll thread, copy_page, move_page, wp_range,
 * release_pages) lives here so that the unit-test port, the stress test and the seeds share it.
 */
import { expect } from "vitest";
import { decodeUffdMsgs, ErrnoError, Kernel, type KernelOptions, SignalError, type PagemapEntry, type Process, type UffdMsg } from "@uffd/kernel";
import {
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  MADV_DONTNEED,
  MADV_REMOVE,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  MAP_SHARED,
  O_CLOEXEC,
  O_NONBLOCK,
  PAGE_SIZE,
  POLLIN,
  PROT_READ,
  PROT_WRITE,
  UFFD_API,
  UFFD_EVENT_FORK,
  UFFD_EVENT_PAGEFAULT,
  UFFD_EVENT_REMAP,
  UFFD_EVENT_REMOVE,
  UFFD_PAGEFAULT_FLAG_MINOR,
  UFFD_PAGEFAULT_FLAG_WP,
  UFFD_PAGEFAULT_FLAG_WRITE,
  UFFD_USER_MODE_ONLY,
  UFFDIO_API,
  UFFDIO_CONTINUE,
  UFFDIO_CONTINUE_MODE_WP,
  UFFDIO_COPY,
  UFFDIO_COPY_MODE_WP,
  UFFDIO_MOVE,
  UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES,
  UFFDIO_REGISTER,
  UFFDIO_REGISTER_MODE_MINOR,
  UFFDIO_REGISTER_MODE_MISSING,
  UFFDIO_REGISTER_MODE_WP,
  UFFDIO_UNREGISTER,
  UFFDIO_WAKE,
  UFFDIO_WRITEPROTECT,
  UFFDIO_WRITEPROTECT_MODE_WP,
  type UffdioApi,
  type UffdioContinue,
  type UffdioCopy,
  type UffdioMove,
  type UffdioRegister,
} from "@uffd/kernel/uapi";
import { errnoOf } from "../helpers.ts";
export { errnoOf };

export const PAGE = PAGE_SIZE;
export const RW = PROT_READ | PROT_WRITE;
export const ANON_PRIVATE = MAP_PRIVATE | MAP_ANONYMOUS;
export const ANON_SHARED = MAP_SHARED | MAP_ANONYMOUS;
/** uffd-common.h: #define UFFD_FLAGS (O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY) */
export const UFFD_FLAGS = O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY;

// ---------------------------------------------------------------------------------------------
// Outcome helpers: exact errnos and signals, never "it threw something".
// ---------------------------------------------------------------------------------------------


/** "OK" when the access completes, else the signal ("SIGBUS" / "SIGSEGV"). */
export async function signalOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "OK";
  } catch (e) {
    if (e instanceof SignalError) return e.signal;
    throw e;
  }
}

/** Makes a promise observable without awaiting it: `state.done` flips when it settles. */
export function track<T>(p: Promise<T>): { promise: Promise<T>; readonly done: boolean } {
  const s = { promise: p, done: false };
  p.then(
    () => {
      s.done = true;
    },
    () => {
      s.done = true;
    },
  );
  return s;
}

/**
 * Awaits `p`, failing fast with a clear message if the whole machine goes idle first (every
 * thread blocked: a lost wake or a missing message), instead of waiting for the test timeout.
 */
export async function settle<T>(k: Kernel, p: Promise<T>, what: string): Promise<T> {
  const t = track(p);
  for (;;) {
    const idle = k.idle().then(
      () => false,
      () => false,
    );
    const finished = await Promise.race([p.then(() => true, () => true), idle]);
    if (finished || t.done) return p;
    await Promise.resolve();
    if (t.done) return p;
    throw new Error(`${what}: deadlock, every simulated thread is blocked`);
  }
}

/** Whether a started operation is still blocked once the machine is idle. */
export async function isBlocked(k: Kernel, t: { done: boolean }): Promise<boolean> {
  await k.idle();
  return !t.done;
}

export const bytes = (n: number, fill: number): Uint8Array => new Uint8Array(n).fill(fill);

export function pm(p: Process, addr: number): PagemapEntry {
  return p.pagemap(addr, 1)[0]!;
}

/** The P/S/F/X/WP bits the host tools print, e.g. "P1 S0 F0 X1 WP0". */
export function pmBits(e: PagemapEntry): string {
  const b = (x: boolean): string => (x ? "1" : "0");
  return `P${b(e.present)} S${b(e.swapped)} F${b(e.file)} X${b(e.exclusive)} WP${b(e.uffdWp)}`;
}

/** Everything pagemap and smaps show for a range: the "observable state" of a rejected call. */
export function snapshot(p: Process, addr: number, pages: number): string {
  return JSON.stringify({ pm: p.pagemap(addr, pages), smaps: p.smaps() });
}

export function u64le(v: number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(v), true);
  return b;
}

export function readU64(b: Uint8Array, off = 0): number {
  return Number(new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(off, true));
}

// ---------------------------------------------------------------------------------------------
// uffd basics
// ---------------------------------------------------------------------------------------------

/** userfaultfd(flags) + UFFDIO_API(features). Returns the fd and the api struct as written back. */
export async function openUffd(p: Process, features = 0, flags = O_CLOEXEC | O_NONBLOCK): Promise<{ fd: number; api: UffdioApi }> {
  const fd = await p.userfaultfd(flags);
  const api: UffdioApi = { api: UFFD_API, features };
  await p.ioctl(fd, UFFDIO_API, api);
  return { fd, api };
}

export async function uffdOpen(p: Process, features = 0, flags = O_CLOEXEC | O_NONBLOCK): Promise<number> {
  return (await openUffd(p, features, flags)).fd;
}

export function modeOf(miss: boolean, wp: boolean, minor: boolean): number {
  return (miss ? UFFDIO_REGISTER_MODE_MISSING : 0) | (wp ? UFFDIO_REGISTER_MODE_WP : 0) | (minor ? UFFDIO_REGISTER_MODE_MINOR : 0);
}

/** UFFDIO_REGISTER; returns the ioctls mask. */
export async function register(p: Process, uffd: number, start: number, len: number, mode: number): Promise<bigint> {
  const reg: UffdioRegister = { range: { start, len }, mode };
  await p.ioctl(uffd, UFFDIO_REGISTER, reg);
  expect(typeof reg.ioctls).toBe("bigint");
  return reg.ioctls!;
}

export async function unregister(p: Process, uffd: number, start: number, len: number): Promise<void> {
  await p.ioctl(uffd, UFFDIO_UNREGISTER, { start, len });
}

/** uffd-common.c:wp_range(): mode WP or 0 (unprotect and wake). */
export async function wpRange(p: Process, uffd: number, start: number, len: number, wp: boolean): Promise<void> {
  await p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start, len }, mode: wp ? UFFDIO_WRITEPROTECT_MODE_WP : 0 });
}

export async function wake(p: Process, uffd: number, start: number, len: number): Promise<void> {
  await p.ioctl(uffd, UFFDIO_WAKE, { start, len });
}

/** A non-blocking read of every queued message ([] on EAGAIN). The fd must be O_NONBLOCK. */
export async function readMsgs(p: Process, uffd: number, max = 64): Promise<UffdMsg[]> {
  try {
    return decodeUffdMsgs(await p.read(uffd, 32 * max));
  } catch (e) {
    if (e instanceof ErrnoError && e.code === "EAGAIN") return [];
    throw e;
  }
}

/** Waits (poll) for one message and reads it, as the selftests' read loops do. */
export async function waitMsg(p: Process, uffd: number): Promise<UffdMsg> {
  for (;;) {
    await p.poll([{ fd: uffd, events: POLLIN }], -1);
    const msgs = await readMsgs(p, uffd, 1);
    if (msgs.length > 0) return msgs[0]!;
  }
}

export function pagefault(msg: UffdMsg): { flags: number; address: number; ptid: number } {
  if (msg.event !== UFFD_EVENT_PAGEFAULT) throw new Error(`expected a PAGEFAULT message, got event 0x${msg.event.toString(16)}`);
  const pf = msg.arg.pagefault;
  return { flags: pf.flags, address: pf.address, ptid: pf.feat.ptid };
}

// ---------------------------------------------------------------------------------------------
// uffd-common.c port
// ---------------------------------------------------------------------------------------------

export type MemType = "anon" | "shmem" | "shmem-private";
export const MEM_TYPES: readonly MemType[] = ["anon", "shmem", "shmem-private"];

/** uffd-common.c: #define BASE_PMD_ADDR ((void *)(1UL << 30)) */
const BASE_PMD_ADDR = 1 << 30;
/** read_pmd_pagesize() on the reference host. */
const HPAGE_SIZE = 2 << 20;

/** The globals of uffd-common.c, per test. */
export interface UffdTestCtx {
  k: Kernel;
  p: Process;
  mem: MemType;
  /** mem_type->shared: false for anon and for "shmem-private" (whose mapping is MAP_SHARED anyway, docs/linux-rules.md §8.18). */
  shared: boolean;
  pageSize: number;
  nrPages: number;
  areaSrc: number;
  areaDst: number;
  areaSrcAlias: number | null;
  areaDstAlias: number | null;
  /** Set by the poll thread on UFFD_EVENT_REMAP (the old area_dst, unmapped at clear). */
  areaRemap: number | null;
  uffd: number;
  features: number;
  countVerify: number[];
  pipe: [number, number];
}

export interface CtxOptions {
  mem: MemType;
  features: number;
  nrPages: number;
  seed?: number;
  swapPages?: number;
  /** KernelOptions.preemption: seeded preemption points for more interleavings. */
  preemption?: number;
  /** uffd_test_case_ops->post_alloc */
  postAlloc?: (ctx: UffdTestCtx) => Promise<void>;
}

/** uffd-common.h area_count(): the u64 right after the pthread_mutex_t (40 bytes on x86-64). */
export const COUNT_OFFSET = 40;
export const areaCount = (area: number, nr: number, pageSize = PAGE): number => area + nr * pageSize + COUNT_OFFSET;

/** uffd_mem_fd_create(): memfd, ftruncate, punch the whole file. */
async function uffdMemFdCreate(p: Process, size: number): Promise<number> {
  const fd = await p.memfdCreate("uffd-test", 0);
  await p.ftruncate(fd, size);
  await p.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, size);
  return fd;
}

/** shmem_allocate_area(): fixed addresses from 1 GiB, always MAP_SHARED (even "shmem-private"). */
async function shmemAllocateArea(ctx: UffdTestCtx, isSrc: boolean): Promise<void> {
  const bytes = ctx.nrPages * ctx.pageSize;
  const offset = isSrc ? 0 : bytes;
  const memFd = await uffdMemFdCreate(ctx.p, bytes * 2);
  let p = BASE_PMD_ADDR;
  if (!isSrc) p += 2 * (bytes + HPAGE_SIZE);
  const pAlias = p + bytes + HPAGE_SIZE;
  const area = await ctx.p.mmap(p, bytes, RW, MAP_SHARED, memFd, offset);
  expect(area, "mmap of memfd at its hint").toBe(p);
  const alias = await ctx.p.mmap(pAlias, bytes, RW, MAP_SHARED, memFd, offset);
  expect(alias, "alias mmap at its hint").toBe(pAlias);
  if (isSrc) {
    ctx.areaSrc = area;
    ctx.areaSrcAlias = alias;
  } else {
    ctx.areaDst = area;
    ctx.areaDstAlias = alias;
  }
  await ctx.p.close(memFd);
}

async function anonAllocateArea(ctx: UffdTestCtx, isSrc: boolean): Promise<void> {
  const area = await ctx.p.mmap(0, ctx.nrPages * ctx.pageSize, RW, ANON_PRIVATE);
  if (isSrc) ctx.areaSrc = area;
  else ctx.areaDst = area;
}

/** release_pages(): anon MADV_DONTNEED, shmem MADV_REMOVE, over nr_pages. */
export async function releasePages(ctx: UffdTestCtx, p: Process, area: number): Promise<void> {
  await p.madvise(area, ctx.nrPages * ctx.pageSize, ctx.mem === "anon" ? MADV_DONTNEED : MADV_REMOVE);
}

/** alias_mapping(): anon keeps the address; shmem redirects to area_dst_alias + offset. */
export function aliasMapping(ctx: UffdTestCtx, start: number, offset: number): number {
  return ctx.mem === "anon" ? start : ctx.areaDstAlias! + offset;
}

/**
 * uffd_test_ctx_init(): allocate area_src and area_dst, open the uffd with UFFD_FLAGS and the
 * required features, initialise every src page (mutex, counter = 1, placeholder = 1), release
 * area_dst, create the pipe.
 */
export async function uffdTestCtxInit(o: CtxOptions): Promise<UffdTestCtx> {
  const k = new Kernel({ seed: o.seed ?? 1, swapPages: o.swapPages ?? 0, ...(o.preemption !== undefined ? { preemption: o.preemption } : {}) });
  const p = k.spawn({ name: "uffd-unit-tests" });
  const ctx: UffdTestCtx = {
    k,
    p,
    mem: o.mem,
    shared: o.mem === "shmem",
    pageSize: PAGE,
    nrPages: o.nrPages,
    areaSrc: 0,
    areaDst: 0,
    areaSrcAlias: null,
    areaDstAlias: null,
    areaRemap: null,
    uffd: -1,
    features: 0,
    countVerify: [],
    pipe: [-1, -1],
  };
  const allocate = o.mem === "anon" ? anonAllocateArea : shmemAllocateArea;
  await allocate(ctx, true);
  await allocate(ctx, false);
  if (o.postAlloc !== undefined) await o.postAlloc(ctx);
  const { fd, api } = await openUffd(p, o.features, UFFD_FLAGS);
  expect(api.api).toBe(UFFD_API);
  ctx.uffd = fd;
  ctx.features = api.features;
  const init = new Uint8Array(COUNT_OFFSET + 16);
  init.set(u64le(1), COUNT_OFFSET);
  init.set(u64le(1), COUNT_OFFSET + 8);
  for (let nr = 0; nr < ctx.nrPages; nr++) {
    await p.mainThread.write(ctx.areaSrc + nr * ctx.pageSize, init);
    ctx.countVerify.push(1);
  }
  await releasePages(ctx, p, ctx.areaDst);
  // The C harness creates pipefd[] here; only the poll thread uses it, so PollThread.start()
  // creates it on first use (a test without a monitor then does not depend on pipes).
  return ctx;
}

/** uffd_test_ctx_clear(), then the invariant recount every scenario ends with. */
export async function uffdTestCtxClear(ctx: UffdTestCtx): Promise<void> {
  const { p } = ctx;
  for (const fd of ctx.pipe) if (fd >= 0) await p.close(fd).catch(() => {});
  if (ctx.uffd !== -1) await p.close(ctx.uffd);
  ctx.uffd = -1;
  const len = ctx.nrPages * ctx.pageSize;
  for (const a of [ctx.areaSrc, ctx.areaSrcAlias, ctx.areaDst, ctx.areaDstAlias, ctx.areaRemap]) {
    if (a !== null && a !== 0) await p.munmap(a, len);
  }
  ctx.k.checkInvariants();
}

/** Reads the counter of page nr of `area` (a user-mode load that may userfault). */
export async function readCount(ctx: UffdTestCtx, area: number, nr: number, p: Process = ctx.p): Promise<number> {
  return readU64(await p.mainThread.read(areaCount(area, nr, ctx.pageSize), 8));
}

export async function writeCount(ctx: UffdTestCtx, area: number, nr: number, value: number, p: Process = ctx.p): Promise<void> {
  await p.mainThread.write(areaCount(area, nr, ctx.pageSize), u64le(value));
}

/** uffd-common.c:wake_range() */
async function wakeRange(ctx: UffdTestCtx, addr: number, len: number): Promise<void> {
  await wake(ctx.p, ctx.uffd, addr, len);
}

/**
 * uffd-common.c:__copy_page(retry = false): UFFDIO_COPY one page from area_src; EEXIST means a
 * racing resolve won, so only wake; any other failure is a test error. Returns 1 if copied.
 */
export async function copyPage(ctx: UffdTestCtx, offset: number, wp: boolean): Promise<number> {
  if (offset >= ctx.nrPages * ctx.pageSize) throw new Error(`unexpected offset ${offset}`);
  const c: UffdioCopy = { dst: ctx.areaDst + offset, src: ctx.areaSrc + offset, len: ctx.pageSize, mode: wp ? UFFDIO_COPY_MODE_WP : 0, copy: 0 };
  const r = await errnoOf(ctx.p.ioctl(ctx.uffd, UFFDIO_COPY, c));
  if (r !== "OK") {
    if (c.copy !== -17) throw new Error(`UFFDIO_COPY error: ${r}, copy = ${c.copy}`);
    await wakeRange(ctx, c.dst, ctx.pageSize);
    return 0;
  }
  if (c.copy !== ctx.pageSize) throw new Error(`UFFDIO_COPY error: copy = ${c.copy}`);
  return 1;
}

/** uffd-common.c:move_page(): UFFDIO_MOVE with ALLOW_SRC_HOLES; EEXIST -> wake. */
export async function movePage(ctx: UffdTestCtx, offset: number, len: number): Promise<number> {
  if (offset + len > ctx.nrPages * ctx.pageSize) throw new Error(`unexpected offset ${offset} and length ${len}`);
  const m: UffdioMove = { dst: ctx.areaDst + offset, src: ctx.areaSrc + offset, len, mode: UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES, move: 0 };
  const r = await errnoOf(ctx.p.ioctl(ctx.uffd, UFFDIO_MOVE, m));
  if (r !== "OK") {
    if (m.move !== -17) throw new Error(`UFFDIO_MOVE error: ${r}, move = ${m.move}`);
    await wakeRange(ctx, m.dst, len);
    return 0;
  }
  if (m.move !== len) throw new Error(`UFFDIO_MOVE error: move = ${m.move}`);
  return 1;
}

/**
 * uffd-common.c:continue_range(): CONTINUE, then the same CONTINUE again, which must fail with
 * mapped == -EEXIST ("to verify doing so doesn't cause a BUG").
 */
export async function continueRange(ctx: UffdTestCtx, start: number, len: number, wp: boolean): Promise<void> {
  const req: UffdioContinue = { range: { start, len }, mode: wp ? UFFDIO_CONTINUE_MODE_WP : 0 };
  const r = await errnoOf(ctx.p.ioctl(ctx.uffd, UFFDIO_CONTINUE, req));
  if (r !== "OK") throw new Error(`UFFDIO_CONTINUE failed for address 0x${start.toString(16)}: ${r}`);
  req.mapped = 0;
  const r2 = await errnoOf(ctx.p.ioctl(ctx.uffd, UFFDIO_CONTINUE, req));
  if (r2 === "OK" || req.mapped !== -17) {
    throw new Error(`failed to exercise UFFDIO_CONTINUE error handling, ret=${r2}, mapped=${req.mapped}`);
  }
}

/** struct uffd_args */
export interface UffdArgs {
  applyWp: boolean;
  missingFaults: number;
  wpFaults: number;
  minorFaults: number;
  handleFault?: (ctx: UffdTestCtx, msg: UffdMsg, args: UffdArgs) => Promise<void>;
}

export const newArgs = (applyWp = false): UffdArgs => ({ applyWp, missingFaults: 0, wpFaults: 0, minorFaults: 0 });

/** uffd-common.c:uffd_handle_page_fault() */
export async function uffdHandlePageFault(ctx: UffdTestCtx, msg: UffdMsg, args: UffdArgs): Promise<void> {
  const pf = pagefault(msg);
  if ((pf.flags & UFFD_PAGEFAULT_FLAG_WP) !== 0) {
    await wpRange(ctx.p, ctx.uffd, pf.address, ctx.pageSize, false);
    args.wpFaults++;
  } else if ((pf.flags & UFFD_PAGEFAULT_FLAG_MINOR) !== 0) {
    // Bit-flip the page through the non-registered view (area_dst), then CONTINUE on the alias.
    const area = ctx.areaDst + (pf.address - ctx.areaDstAlias!);
    const data = await ctx.p.mainThread.read(area, ctx.pageSize);
    for (let b = 0; b < data.length; b++) data[b] = ~data[b]! & 0xff;
    await ctx.p.mainThread.write(area, data);
    await continueRange(ctx, pf.address, ctx.pageSize, args.applyWp);
    args.minorFaults++;
  } else {
    // Missing faults come from loads only ("we force a write check for each missing fault").
    if ((pf.flags & UFFD_PAGEFAULT_FLAG_WRITE) !== 0) throw new Error("unexpected write fault");
    let offset = pf.address - ctx.areaDst;
    offset -= offset % ctx.pageSize;
    if ((await copyPage(ctx, offset, args.applyWp)) !== 0) args.missingFaults++;
  }
}

/**
 * uffd-common.c:uffd_poll_thread(): poll {uffd, pipe}; handle PAGEFAULT / FORK / REMOVE / REMAP.
 *
 * Divergence from the C harness, in the stop signal only: the C test writes one byte to the
 * pipe; the public API has no write(2) for pipes, so stop() closes the write end and the thread
 * exits on the resulting POLLHUP (callers only stop after every child holding the pipe exited).
 */
export class PollThread {
  readonly args: UffdArgs;
  readonly #ctx: UffdTestCtx;
  readonly #done: Promise<void>;
  #error: unknown = null;
  /** Messages seen, for assertions ("only the FORK event"). */
  readonly events: number[] = [];

  private constructor(ctx: UffdTestCtx, args: UffdArgs) {
    this.#ctx = ctx;
    this.args = args;
    this.#done = this.#loop().catch((e: unknown) => {
      this.#error = e;
    });
  }

  /** pthread_create(uffd_poll_thread); creates pipefd[] (pipe2(O_CLOEXEC | O_NONBLOCK)) if needed. */
  static async start(ctx: UffdTestCtx, args: UffdArgs): Promise<PollThread> {
    if (ctx.pipe[0] < 0) ctx.pipe = await ctx.p.pipe2(O_CLOEXEC | O_NONBLOCK);
    return new PollThread(ctx, args);
  }

  async #loop(): Promise<void> {
    const ctx = this.#ctx;
    const { p } = ctx;
    const handle = this.args.handleFault ?? uffdHandlePageFault;
    for (;;) {
      const fds = [
        { fd: ctx.uffd, events: POLLIN, revents: 0 },
        { fd: ctx.pipe[0], events: POLLIN, revents: 0 },
      ];
      const ret = await p.poll(fds, -1);
      if (ret <= 0) throw new Error(`poll error: ${ret}`);
      if (fds[1]!.revents !== 0) break;
      if ((fds[0]!.revents & POLLIN) === 0) throw new Error(`pollfd[0].revents ${fds[0]!.revents}`);
      const msgs = await readMsgs(p, ctx.uffd, 1);
      if (msgs.length === 0) continue;
      const msg = msgs[0]!;
      this.events.push(msg.event);
      switch (msg.event) {
        case UFFD_EVENT_PAGEFAULT:
          await handle(ctx, msg, this.args);
          break;
        case UFFD_EVENT_FORK:
          await p.close(ctx.uffd);
          ctx.uffd = msg.arg.fork.ufd;
          break;
        case UFFD_EVENT_REMOVE:
          await unregister(p, ctx.uffd, msg.arg.remove.start, msg.arg.remove.end - msg.arg.remove.start);
          break;
        case UFFD_EVENT_REMAP:
          ctx.areaRemap = ctx.areaDst;
          ctx.areaDst = msg.arg.remap.to;
          break;
        default:
          throw new Error(`unexpected msg event ${msg.event}`);
      }
    }
  }

  /** Races `p` against the thread dying, so a handler error surfaces instead of a hang. */
  async guard<T>(p: Promise<T>, what = "faulting access"): Promise<T> {
    const died = this.#done.then(() => {
      if (this.#error !== null) throw this.#error;
      return new Promise<never>(() => {});
    });
    return settle(this.#ctx.k, Promise.race([p, died]), what);
  }

  /** write(pipefd[1]) + pthread_join(), see the class comment. */
  async stop(): Promise<UffdArgs> {
    const ctx = this.#ctx;
    if (ctx.pipe[1] >= 0) {
      await ctx.p.close(ctx.pipe[1]);
      ctx.pipe[1] = -1;
    }
    await settle(ctx.k, this.#done, "poll thread exit");
    if (this.#error !== null) throw this.#error;
    return this.args;
  }
}

// ---------------------------------------------------------------------------------------------
// Small fixtures for the scenario files
// ---------------------------------------------------------------------------------------------

/** A fresh machine and one root process. */
export function machine(opts: Omit<KernelOptions, "seed" | "swapPages"> & { seed?: number; swapPages?: number } = {}): { k: Kernel; p: Process } {
  const k = new Kernel({ ...opts, seed: opts.seed ?? 1, swapPages: opts.swapPages ?? 0 });
  return { k, p: k.spawn() };
}

/** memfd of `sizePages` pages (i_size), mapped `mapPages` pages with `flags` (MAP_SHARED by default). */
export async function memfdMap(p: Process, sizePages: number, flags = MAP_SHARED, mapPages = sizePages): Promise<{ fd: number; addr: number }> {
  const fd = await p.memfdCreate("conformance", 0);
  await p.ftruncate(fd, sizePages * PAGE);
  const addr = await p.mmap(0, mapPages * PAGE, RW, flags, fd, 0);
  return { fd, addr };
}

/** The smaps entry of the vma containing addr. */
export function vmaAt(p: Process, addr: number): { vmFlags: readonly string[]; perms: string; start: number; end: number } | undefined {
  return p.smaps().find((v) => v.start <= addr && addr < v.end);
}
