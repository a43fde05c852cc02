/**
 * Port of tools/testing/selftests/mm/uffd-stress.c (Linux 6.18): the bounce test, on anon, shmem
 * and shmem-private (hugetlb and hugetlb-private need hugetlbfs, which the simulation does not
 * have). Per "CPU" three threads run, as upstream:
 *   1. locking_thread(): takes the pthread mutex of a page of area_dst (sequential from
 *      -bounces, per-CPU or racing on the same pages, or random), checks the page's counter
 *      against count_verify[] ("memory corruption") and increments both;
 *   2. a userfault thread: uffd_read_thread() (blocking read(2)) or uffd_poll_thread() (poll(2)
 *      on the uffd and a per-CPU pipe), resolving MISSING faults with UFFDIO_COPY (EEXIST ->
 *      wake) and WP faults by unprotecting;
 *   3. background_thread(): copies its half of the CPU's pages, write-protects its range
 *      (test_uffdio_wp), and copies the rest with UFFDIO_COPY_MODE_WP, racing the faults.
 * When the background threads are done, area_src is released, the locking threads stop, the
 * userfault threads are stopped, the range is unprotected and unregistered, and (BOUNCE_VERIFY)
 * every counter is checked; then area_src and area_dst swap and the next bounce runs in the other
 * direction. The bounce number's bits pick the mode (BOUNCE_RANDOM, BOUNCE_RACINGFAULTS,
 * BOUNCE_VERIFY, BOUNCE_POLL), so 16 bounces run every combination, blocking-read and poll.
 *
 * The counters are checked across bounces as upstream does, and the port also checks what
 * uffd_stats_report() only prints: every page was installed exactly once per bounce, by the
 * background thread or by a fault (the other UFFDIO_COPY got EEXIST and woke the range).
 *
 * Bounded for CI: 2 "CPUs" of 8 pages (upstream sizes the area from the command line and runs
 * one thread triple per online CPU), 16 bounces per memory type; once without preemption and, on
 * anon and shmem, for three seeds with the kernel's seeded preemption points on (120 such seeds
 * passed when the port was written; the suite keeps three to stay within its time budget).
 *
 * What the port does differently, and why:
 * - The threads are simulated threads; they interleave where Linux would sleep (userfaults,
 *   blocking reads, poll) and at the kernel's seeded preemption points, not on parallel CPUs.
 * - SIGALRM sets test_uffdio_copy_eexist every 10 s upstream (wall-clock time, which the
 *   simulation does not have); here it is set at the start of every bounce, so each bounce
 *   exercises retry_copy_page()'s EEXIST path once.
 * - pthread_mutex_lock() is modelled by its memory accesses (the load of the mutex type at
 *   offset 16 that takes the MISSING fault, as uffd_handle_page_fault() relies on, then stores to
 *   the lock word) plus a test-side lock per page, since a simulated read-then-write is not one
 *   atomic instruction across a userfault.
 * - pthread_cancel() of a blocked uffd_read_thread() is modelled by a cancellation fault: the
 *   main thread touches a separate one-page MISSING-registered area, and the reader that reads
 *   that fault resolves it with UFFDIO_ZEROPAGE and exits (one fault per reader).
 * - getrandom() draws from a seeded Prng.
 */
import { describe, expect, it } from "vitest";
import { Prng, type Process, type Thread, type UffdMsg } from "@uffd/kernel";
import {
  decodeUffdMsgs,
  MADV_DONTNEED,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  O_NONBLOCK,
  POLLIN,
  PROT_READ,
  PROT_WRITE,
  UFFD_EVENT_PAGEFAULT,
  UFFD_FEATURE_WP_UNPOPULATED,
  UFFD_PAGEFAULT_FLAG_WP,
  UFFD_PAGEFAULT_FLAG_WRITE,
  UFFDIO_COPY,
  UFFDIO_COPY_MODE_WP,
  UFFDIO_REGISTER,
  UFFDIO_REGISTER_MODE_MISSING,
  UFFDIO_REGISTER_MODE_WP,
  UFFDIO_ZEROPAGE,
  type UffdioCopy,
  F_SETFL,
} from "@uffd/kernel/uapi";
import { areaCount, errnoOf, type MemType, readU64, register, releasePages, u64le, uffdTestCtxClear, uffdTestCtxInit, type UffdTestCtx, unregister, wake, wpRange } from "./harness.ts";

const BOUNCE_RANDOM = 1 << 0;
const BOUNCE_RACINGFAULTS = 1 << 1;
const BOUNCE_VERIFY = 1 << 2;
const BOUNCE_POLL = 1 << 3;

const NR_CPUS = 2;
const NR_PAGES_PER_CPU = 8;
const NR_PAGES = NR_CPUS * NR_PAGES_PER_CPU;
const BOUNCES = 16;
/** pthread_mutex_t.__data.__type: glibc reads it first in pthread_mutex_lock(). */
const MUTEX_TYPE_OFFSET = 16;

/** struct uffd_args, per CPU. */
interface UffdArgs {
  cpu: number;
  applyWp: boolean;
  missingFaults: number;
  wpFaults: number;
  minorFaults: number;
}

/** The globals of uffd-stress.c and uffd-common.c that a bounce uses. */
interface Stress {
  ctx: UffdTestCtx;
  p: Process;
  bounces: number;
  testUffdioWp: boolean;
  testUffdioCopyEexist: boolean;
  finished: boolean;
  rand: Prng;
  /** Pages the background threads installed this bounce (__copy_page() returned 1). */
  backgroundCopies: number;
  /** retry_copy_page() runs that got the expected EEXIST. */
  retriedEexist: number;
  /** The test-side half of each page's pthread mutex (see the header). */
  pageLocks: Array<Promise<void>>;
  cancel: { area: number; readersLeft: number };
}

/** uffd-common.c:__copy_page(), with retry_copy_page() when test_uffdio_copy_eexist is set. */
async function copyPageRetry(s: Stress, offset: number, retry: boolean, wp: boolean): Promise<number> {
  const { ctx, p } = s;
  if (offset >= NR_PAGES * ctx.pageSize) throw new Error(`unexpected offset ${offset}`);
  const c: UffdioCopy = { dst: ctx.areaDst + offset, src: ctx.areaSrc + offset, len: ctx.pageSize, mode: wp ? UFFDIO_COPY_MODE_WP : 0, copy: 0 };
  const r = await errnoOf(p.ioctl(ctx.uffd, UFFDIO_COPY, c));
  if (r !== "OK") {
    if (c.copy !== -17) throw new Error(`UFFDIO_COPY error: ${c.copy}`);
    await wake(p, ctx.uffd, c.dst, ctx.pageSize);
    return 0;
  }
  if (c.copy !== ctx.pageSize) throw new Error(`UFFDIO_COPY error: ${c.copy}`);
  if (s.testUffdioCopyEexist && retry) {
    s.testUffdioCopyEexist = false;
    // retry_copy_page(): the same copy again (through the alias for shmem) must be EEXIST.
    const again: UffdioCopy = { ...c, dst: ctx.mem === "anon" ? c.dst : ctx.areaDstAlias! + offset, copy: 0 };
    const r2 = await errnoOf(p.ioctl(ctx.uffd, UFFDIO_COPY, again));
    if (r2 === "OK") throw new Error(`UFFDIO_COPY retry unexpected: ${again.copy}`);
    if (again.copy !== -17) throw new Error(`UFFDIO_COPY retry error: ${again.copy}`);
    s.retriedEexist++;
  }
  return 1;
}

/** uffd-common.c:uffd_handle_page_fault() for the fault kinds uffd-stress raises. */
async function handlePageFault(s: Stress, msg: UffdMsg, args: UffdArgs): Promise<void> {
  const { ctx, p } = s;
  if (msg.event !== UFFD_EVENT_PAGEFAULT) throw new Error(`unexpected msg event ${msg.event}`);
  const { flags, address } = msg.arg.pagefault;
  if ((flags & UFFD_PAGEFAULT_FLAG_WP) !== 0) {
    await wpRange(p, ctx.uffd, address, ctx.pageSize, false);
    args.wpFaults++;
    return;
  }
  // The locking threads' first touch of a missing page is the load of the mutex type.
  if ((flags & UFFD_PAGEFAULT_FLAG_WRITE) !== 0) throw new Error("unexpected write fault");
  let offset = address - ctx.areaDst;
  offset -= offset % ctx.pageSize;
  if ((await copyPageRetry(s, offset, false, args.applyWp)) !== 0) args.missingFaults++;
}

/** locking_thread() */
async function lockingThread(s: Stress, th: Thread, cpu: number): Promise<void> {
  const { ctx } = s;
  const M = 1n << 64n;
  let pageNr = 0n;
  if ((s.bounces & BOUNCE_RANDOM) === 0) {
    pageNr = (M - BigInt(s.bounces)) % M;
    if ((s.bounces & BOUNCE_RACINGFAULTS) === 0) pageNr = (pageNr + BigInt(cpu * NR_PAGES_PER_CPU)) % M;
  }
  while (!s.finished) {
    if ((s.bounces & BOUNCE_RANDOM) !== 0) pageNr = (BigInt(s.rand.nextU32()) << 32n) | BigInt(s.rand.nextU32());
    else pageNr = (pageNr + 1n) % M;
    const nr = Number(pageNr % BigInt(NR_PAGES));
    const page = ctx.areaDst + nr * ctx.pageSize;
    // pthread_mutex_lock(area_mutex(area_dst, page_nr))
    await th.read(page + MUTEX_TYPE_OFFSET, 4);
    const held = s.pageLocks[nr]!;
    let release!: () => void;
    s.pageLocks[nr] = held.then(() => new Promise<void>((r) => (release = r)));
    await held;
    await th.write(page, u64le(1).subarray(0, 4));
    const count = readU64(await th.read(areaCount(ctx.areaDst, nr, ctx.pageSize), 8));
    if (count !== ctx.countVerify[nr]) throw new Error(`page_nr ${nr} memory corruption ${count} ${ctx.countVerify[nr]}`);
    await th.write(areaCount(ctx.areaDst, nr, ctx.pageSize), u64le(count + 1));
    ctx.countVerify[nr] = count + 1;
    // pthread_mutex_unlock()
    await th.write(page, new Uint8Array(4));
    release();
  }
}

/** A message for this reader: a pagefault in the areas, or the cancellation fault. */
function isCancel(s: Stress, msg: UffdMsg): boolean {
  return msg.event === UFFD_EVENT_PAGEFAULT && msg.arg.pagefault.address === s.cancel.area;
}

/** uffd_read_thread(): blocking reads until cancelled (see the header). */
async function uffdReadThread(s: Stress, args: UffdArgs): Promise<void> {
  const { ctx, p } = s;
  for (;;) {
    const msg = decodeUffdMsgs(await p.read(ctx.uffd, 32))[0];
    if (msg === undefined) continue;
    if (isCancel(s, msg)) {
      await p.ioctl(ctx.uffd, UFFDIO_ZEROPAGE, { range: { start: s.cancel.area, len: ctx.pageSize }, mode: 0, zeropage: 0 });
      return;
    }
    await handlePageFault(s, msg, args);
  }
}

/** uffd-common.c:uffd_poll_thread(), with its own pipe; a byte on the pipe ends it. */
async function uffdPollThread(s: Stress, args: UffdArgs, pipeRead: number): Promise<void> {
  const { ctx, p } = s;
  for (;;) {
    const fds = [
      { fd: ctx.uffd, events: POLLIN, revents: 0 },
      { fd: pipeRead, events: POLLIN, revents: 0 },
    ];
    const ret = await p.poll(fds, -1);
    if (ret <= 0) throw new Error(`poll error: ${ret}`);
    if (fds[1]!.revents !== 0) return;
    if ((fds[0]!.revents & POLLIN) === 0) throw new Error(`pollfd[0].revents ${fds[0]!.revents}`);
    const r = await p.read(ctx.uffd, 32).catch((e: { code?: string }) => {
      if (e.code === "EAGAIN") return null;
      throw e;
    });
    if (r === null) continue;
    for (const msg of decodeUffdMsgs(r)) await handlePageFault(s, msg, args);
  }
}

/** background_thread() */
async function backgroundThread(s: Stress, cpu: number): Promise<void> {
  const { ctx, p } = s;
  const startNr = cpu * NR_PAGES_PER_CPU;
  const endNr = (cpu + 1) * NR_PAGES_PER_CPU;
  const midNr = (startNr + endNr) / 2;
  // (`x += await f()` would read x before the await and lose the other CPU's updates.)
  for (let nr = startNr; nr < midNr; nr++) {
    const copied = await copyPageRetry(s, nr * ctx.pageSize, true, s.testUffdioWp);
    s.backgroundCopies += copied;
  }
  if (s.testUffdioWp) await wpRange(p, ctx.uffd, ctx.areaDst + startNr * ctx.pageSize, NR_PAGES_PER_CPU * ctx.pageSize, true);
  for (let nr = midNr; nr < endNr; nr++) {
    const copied = await copyPageRetry(s, nr * ctx.pageSize, true, s.testUffdioWp);
    s.backgroundCopies += copied;
  }
}

/** stress(): one bounce pass. */
async function stress(s: Stress, args: UffdArgs[]): Promise<void> {
  const { ctx, p } = s;
  s.finished = false;
  const poll = (s.bounces & BOUNCE_POLL) !== 0;
  const locking: Array<Promise<void>> = [];
  const uffdThreads: Array<Promise<void>> = [];
  const background: Array<Promise<void>> = [];
  const pipes: Array<[number, number]> = [];
  for (let cpu = 0; cpu < NR_CPUS; cpu++) {
    locking.push(lockingThread(s, p.spawnThread(`locking-${cpu}`), cpu));
    if (poll) {
      const pipe = await p.pipe2(O_NONBLOCK);
      pipes.push(pipe);
      uffdThreads.push(uffdPollThread(s, args[cpu]!, pipe[0]));
    } else {
      uffdThreads.push(uffdReadThread(s, args[cpu]!));
    }
    background.push(backgroundThread(s, cpu));
  }
  const all = Promise.all([...locking, ...uffdThreads, ...background]);
  // A thread that throws fails the bounce at once rather than leaving the others waiting.
  const failed = all.then(() => new Promise<never>(() => {}));
  await Promise.race([Promise.all(background), failed]);
  // "Be strict and immediately zap area_src": the background threads copied every page.
  await releasePages(ctx, p, ctx.areaSrc);
  s.finished = true;
  await Promise.race([Promise.all(locking), failed]);
  if (poll) {
    for (const [r, w] of pipes) {
      expect(await p.write(w, new Uint8Array([0]))).toBe(1);
      void r;
    }
  } else {
    // pthread_cancel() of each blocked reader: one cancellation fault per reader.
    for (let i = 0; i < NR_CPUS; i++) {
      await p.madvise(s.cancel.area, ctx.pageSize, MADV_DONTNEED);
      await Promise.race([p.mainThread.read(s.cancel.area, 1), failed]);
    }
  }
  await Promise.race([all, failed]);
  for (const [r, w] of pipes) {
    await p.close(r);
    await p.close(w);
  }
}

async function userfaultfdStress(mem: MemType, seed: number, preemption = 0): Promise<{ retried: number; wpFaults: number; missingFaults: number }> {
  // userfaultfd_stress(): WP_UNPOPULATED for anon; test_uffdio_wp stays on (PAGEFAULT_FLAG_WP
  // and WP_HUGETLBFS_SHMEM are reported).
  const ctx = await uffdTestCtxInit({ mem, features: mem === "anon" ? UFFD_FEATURE_WP_UNPOPULATED : 0, nrPages: NR_PAGES, seed, preemption });
  const { p } = ctx;
  const memSize = NR_PAGES * ctx.pageSize;
  const cancelArea = await p.mmap(0, ctx.pageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
  await p.ioctl(ctx.uffd, UFFDIO_REGISTER, { range: { start: cancelArea, len: ctx.pageSize }, mode: UFFDIO_REGISTER_MODE_MISSING });
  const s: Stress = {
    ctx,
    p,
    bounces: BOUNCES,
    testUffdioWp: true,
    testUffdioCopyEexist: true,
    finished: false,
    rand: new Prng(seed),
    backgroundCopies: 0,
    retriedEexist: 0,
    pageLocks: Array.from({ length: NR_PAGES }, () => Promise.resolve()),
    cancel: { area: cancelArea, readersLeft: 0 },
  };
  const totals = { retried: 0, wpFaults: 0, missingFaults: 0 };
  while (s.bounces-- > 0) {
    // fcntl(F_SETFL): O_NONBLOCK for poll mode, blocking reads otherwise.
    await p.fcntl(ctx.uffd, F_SETFL, (s.bounces & BOUNCE_POLL) !== 0 ? O_NONBLOCK : 0);
    const mode = UFFDIO_REGISTER_MODE_MISSING | (s.testUffdioWp ? UFFDIO_REGISTER_MODE_WP : 0);
    await register(p, ctx.uffd, ctx.areaDst, memSize, mode);
    if (ctx.areaDstAlias !== null) await register(p, ctx.uffd, ctx.areaDstAlias, memSize, mode);
    await releasePages(ctx, p, ctx.areaDst);
    const args: UffdArgs[] = Array.from({ length: NR_CPUS }, (_, cpu) => ({ cpu, applyWp: s.testUffdioWp, missingFaults: 0, wpFaults: 0, minorFaults: 0 }));
    s.backgroundCopies = 0;
    s.testUffdioCopyEexist = true; // the SIGALRM stand-in, once per bounce
    await stress(s, args);
    if (s.testUffdioWp) await wpRange(p, ctx.uffd, ctx.areaDst, memSize, false);
    await unregister(p, ctx.uffd, ctx.areaDst, memSize);
    if (ctx.areaDstAlias !== null) await unregister(p, ctx.uffd, ctx.areaDstAlias, memSize);
    const where = `${mem} bounce ${s.bounces}`;
    if ((s.bounces & BOUNCE_VERIFY) !== 0) {
      for (let nr = 0; nr < NR_PAGES; nr++) {
        const got = readU64(await p.mainThread.read(areaCount(ctx.areaDst, nr, ctx.pageSize), 8));
        expect(got, `${where}: error area_count page ${nr}`).toBe(ctx.countVerify[nr]);
      }
    }
    // uffd_stats_report(), checked: each page installed once, by the copier or by a fault.
    const missing = args.reduce((n, a) => n + a.missingFaults, 0);
    expect(s.backgroundCopies + missing, `${where}: pages installed`).toBe(NR_PAGES);
    expect(args.every((a) => a.minorFaults === 0), `${where}: no MINOR faults`).toBe(true);
    totals.missingFaults += missing;
    totals.wpFaults += args.reduce((n, a) => n + a.wpFaults, 0);
    // prepare next bounce
    [ctx.areaSrc, ctx.areaDst] = [ctx.areaDst, ctx.areaSrc];
    [ctx.areaSrcAlias, ctx.areaDstAlias] = [ctx.areaDstAlias, ctx.areaSrcAlias];
  }
  totals.retried = s.retriedEexist;
  await p.munmap(cancelArea, ctx.pageSize);
  await uffdTestCtxClear(ctx);
  return totals;
}

describe("uffd-stress.c: bounces", () => {
  for (const mem of ["anon", "shmem", "shmem-private"] as const) {
    it(`${mem}: ${BOUNCES} bounces (every mode: rnd, racing, ver, poll/read) over ${NR_PAGES} pages and ${NR_CPUS} CPUs`, async () => {
      const t = await userfaultfdStress(mem, 1);
      // The run raced for real: faults were resolved by the userfault threads, WP faults were
      // taken on the pages copied write-protected, and every bounce retried one copy into EEXIST.
      expect(t.missingFaults).toBeGreaterThan(0);
      expect(t.wpFaults).toBeGreaterThan(0);
      expect(t.retried).toBe(BOUNCES);
    }, 120_000);
  }
  // With the kernel's seeded preemption points on, the threads also switch before page accesses
  // and after wakes, not only where they sleep: more interleavings of copier, faults and lockers.
  for (const mem of ["anon", "shmem"] as const) {
    for (const seed of [2, 3, 4]) {
      it(`${mem}, preemption 0.5, seed ${seed}: ${BOUNCES} bounces`, async () => {
        const t = await userfaultfdStress(mem, seed, 0.5);
        expect(t.missingFaults).toBeGreaterThan(0);
        expect(t.wpFaults).toBeGreaterThan(0);
      }, 120_000);
    }
  }
});
