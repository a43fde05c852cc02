/**
 * Bounded, seeded fuzzing of the userfaultfd ioctl surface with fast-check (numRuns 200, fixed
 * seed): random requests (every UFFDIO_* number plus unknown ones), random modes, aligned,
 * unaligned, empty and overflowing ranges, issued on the right uffd, on a uffd of another process
 * passed with sendFd, on a not-yet-initialised uffd, on an fd of another kind (a memfd) and on a
 * closed fd. Properties, from docs/linux-rules.md §2.0 and the API contract:
 * - nothing but ErrnoError ever escapes an ioctl (no KernelBug, no TypeError), and none blocks;
 * - a rejected call changes nothing observable (pagemap and smaps of both processes), except the
 *   two documented partial effects: EAGAIN with partial progress, and a WRITEPROTECT that stops
 *   with ENOENT after earlier vmas were already changed (§2.7: no rollback);
 * - the result field follows §2.0 (len on success, 0 < field < len on EAGAIN, untouched or
 *   -errno on other errors, untouched when the fd is no initialised uffd);
 * - checkInvariants() holds after every sequence.
 * Both uffds are UFFD_USER_MODE_ONLY, so a COPY whose source is itself a userfault region fails
 * with EFAULT instead of blocking (§3.2 step 4).
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { ErrnoError, Kernel, type Process } from "@uffd/kernel";
import {
  ERRNO,
  MAP_SHARED,
  UFFD_API,
  UFFD_FEATURE_MINOR_SHMEM,
  UFFD_FEATURE_PAGEFAULT_FLAG_WP,
  UFFD_FEATURE_WP_UNPOPULATED,
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
} from "@uffd/kernel/uapi";
import { ANON_PRIVATE, bytes, modeOf, PAGE, register, RW, settle, UFFD_FLAGS, uffdOpen, wpRange } from "./harness.ts";

const AREA_PAGES = 8;

interface World {
  k: Kernel;
  p: Process;
  q: Process;
  /** [anon registered, shmem registered, plain anon, q's registered area] */
  areas: number[];
  fds: Record<FdKind, number>;
  /** Set once a random UFFDIO_API succeeded on the "uninit" fd. */
  uninitReady: boolean;
}

type FdKind = "uffd" | "foreign" | "uninit" | "memfd" | "closed";
const FD_KINDS: readonly FdKind[] = ["uffd", "uffd", "uffd", "foreign", "uninit", "memfd", "closed"];

async function buildWorld(): Promise<World> {
  const k = new Kernel({ seed: 11, swapPages: 32 });
  const p = k.spawn({ name: "fuzzer" });
  const q = k.spawn({ name: "other" });
  const features = UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_WP_UNPOPULATED | UFFD_FEATURE_MINOR_SHMEM;
  const uffd = await uffdOpen(p, features, UFFD_FLAGS);
  // Registered private anon: pages 0-3 populated, page 5 a uffd-wp marker, page 1 write-protected.
  const anon = await p.mmap(0, AREA_PAGES * PAGE, RW, ANON_PRIVATE);
  for (let i = 0; i < 4; i++) await p.mainThread.write(anon + i * PAGE, bytes(PAGE, 0x10 + i));
  await register(p, uffd, anon, AREA_PAGES * PAGE, modeOf(true, true, false));
  await wpRange(p, uffd, anon + PAGE, PAGE, true);
  await wpRange(p, uffd, anon + 5 * PAGE, PAGE, true);
  // Registered shmem: i_size 6 pages of an 8-page mapping, pages 0-2 in the page cache.
  const memfd = await p.memfdCreate("fuzz", 0);
  await p.ftruncate(memfd, 6 * PAGE);
  const shm = await p.mmap(0, AREA_PAGES * PAGE, RW, MAP_SHARED, memfd, 0);
  await p.pwrite(memfd, bytes(3 * PAGE, 0x20), 0);
  await p.mainThread.read(shm, 1);
  await register(p, uffd, shm, AREA_PAGES * PAGE, modeOf(true, true, true));
  // Plain anon source pages.
  const plain = await p.mmap(0, AREA_PAGES * PAGE, RW, ANON_PRIVATE);
  for (let i = 0; i < AREA_PAGES; i++) await p.mainThread.write(plain + i * PAGE, bytes(PAGE, 0x30 + i));
  // Another process with its own uffd, passed to p.
  const quffd = await uffdOpen(q, UFFD_FEATURE_PAGEFAULT_FLAG_WP, UFFD_FLAGS);
  const qarea = await q.mmap(0, AREA_PAGES * PAGE, RW, ANON_PRIVATE);
  await q.mainThread.write(qarea, bytes(PAGE, 0x40));
  await register(q, quffd, qarea, AREA_PAGES * PAGE, modeOf(true, true, false));
  const foreign = await q.sendFd(quffd, p);
  const uninit = await p.openDevUserfaultfd(UFFD_FLAGS);
  const closed = await p.memfdCreate("closed", 0);
  await p.close(closed);
  return { k, p, q, areas: [anon, shm, plain, qarea], fds: { uffd, foreign, uninit, memfd, closed }, uninitReady: false };
}

/** A symbolic address, resolved against the world's areas at run time. */
interface Addr {
  area: number;
  page: number;
  off: number;
  wild: number | null;
}

const WILD = [0, PAGE, 2 ** 47 - PAGE, 2 ** 47, 2 ** 52];
const addrArb: fc.Arbitrary<Addr> = fc.oneof(
  { weight: 9, arbitrary: fc.record({ area: fc.integer({ min: 0, max: 3 }), page: fc.integer({ min: -2, max: 10 }), off: fc.constantFrom(0, 0, 0, 0, 0, 0, 0, 0, 1, 2048), wild: fc.constant(null) }) },
  { weight: 1, arbitrary: fc.record({ area: fc.constant(0), page: fc.constant(0), off: fc.constant(0), wild: fc.constantFrom(...WILD) }) },
);
/** Sources lean towards the plain populated area, so that MOVE and COPY also succeed. */
const srcArb: fc.Arbitrary<Addr> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ area: fc.constant(2), page: fc.integer({ min: 0, max: 7 }), off: fc.constant(0), wild: fc.constant(null) }) },
  { weight: 2, arbitrary: addrArb },
);
const lenArb = fc.oneof(
  { weight: 9, arbitrary: fc.integer({ min: 1, max: 6 }).map((n) => n * PAGE) },
  { weight: 1, arbitrary: fc.constantFrom(0, 1, PAGE + 1, 2 ** 47, 2 ** 52) },
);
const modeArb = fc.oneof(
  { weight: 10, arbitrary: fc.constantFrom(0, 0, 1, 2, 3) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 7 }) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0x7fffffff }) },
);

const REQUESTS = [UFFDIO_API, UFFDIO_REGISTER, UFFDIO_UNREGISTER, UFFDIO_WAKE, UFFDIO_COPY, UFFDIO_ZEROPAGE, UFFDIO_MOVE, UFFDIO_WRITEPROTECT, UFFDIO_CONTINUE, UFFDIO_POISON];
const requestArb = fc.oneof({ weight: 12, arbitrary: fc.constantFrom(...REQUESTS) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffffffff }) });

interface Cmd {
  fd: FdKind;
  req: number;
  a: Addr;
  b: Addr;
  len: number;
  mode: number;
  features: number;
  api: number;
}

const cmdArb: fc.Arbitrary<Cmd> = fc.record({
  fd: fc.constantFrom(...FD_KINDS),
  req: requestArb,
  a: addrArb,
  b: srcArb,
  len: lenArb,
  mode: modeArb,
  features: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0x3ffff }), fc.constant(2 ** 63)),
  api: fc.constantFrom(UFFD_API, UFFD_API, 0xab, 0),
});

const resolve = (w: World, x: Addr): number => x.wild ?? w.areas[x.area]! + x.page * PAGE + x.off;

/** The struct the request takes, filled from the command. */
function argFor(w: World, c: Cmd): object {
  const start = resolve(w, c.a);
  const range = { start, len: c.len };
  switch (c.req) {
    case UFFDIO_API:
      return { api: c.api, features: c.features };
    case UFFDIO_REGISTER:
      return { range, mode: c.mode };
    case UFFDIO_UNREGISTER:
    case UFFDIO_WAKE:
      return range;
    case UFFDIO_COPY:
      return { dst: start, src: resolve(w, c.b), len: c.len, mode: c.mode, copy: 777 };
    case UFFDIO_MOVE:
      return { dst: start, src: resolve(w, c.b), len: c.len, mode: c.mode, move: 777 };
    case UFFDIO_ZEROPAGE:
      return { range, mode: c.mode, zeropage: 777 };
    case UFFDIO_CONTINUE:
      return { range, mode: c.mode, mapped: 777 };
    case UFFDIO_POISON:
      return { range, mode: c.mode, updated: 777 };
    default:
      return { range, mode: c.mode };
  }
}

/**
 * pagemap around every area plus smaps, of both processes. `srcRange` masks the source of a COPY:
 * mfill_atomic_pte_copy() reads the source with copy_from_user() before it looks at the dst pte,
 * so even a rejected COPY may legitimately read-fault its source in (zero page, shmem page).
 */
function observe(w: World, srcRange: { start: number; end: number } | null = null): string {
  const masked = (a: number): boolean => srcRange !== null && a >= srcRange.start && a < srcRange.end;
  const maps = [0, 1, 2].map((i) => {
    const base = w.areas[i]! - 2 * PAGE;
    return w.p.pagemap(base, AREA_PAGES + 4).map((e, j) => (masked(base + j * PAGE) ? null : e));
  });
  const smaps = w.p.smaps().map((v) => (srcRange === null ? v : { ...v, rssBytes: 0, anonBytes: 0 }));
  return JSON.stringify([maps, smaps, w.q.pagemap(w.areas[3]!, AREA_PAGES), w.q.smaps()]);
}

/** The out field of the requests that have one (§2.0 result-field protocol). */
const RESULT_FIELD = new Map<number, string>([
  [UFFDIO_COPY, "copy"],
  [UFFDIO_ZEROPAGE, "zeropage"],
  [UFFDIO_MOVE, "move"],
  [UFFDIO_CONTINUE, "mapped"],
  [UFFDIO_POISON, "updated"],
]);

/**
 * §2.0: success means field == len; EAGAIN here (no events are ever pending) means partial
 * progress 0 < field < len; any other error leaves the field alone (found before the operation
 * started) or sets it to -errno; an fd that is no uffd, or one not initialised, never touches it.
 */
function checkResultField(c: Cmd, arg: object, code: string, preDispatch: boolean): void {
  const key = RESULT_FIELD.get(c.req);
  if (key === undefined) return;
  const field = (arg as Record<string, unknown>)[key];
  if (preDispatch) expect(field, `${key} untouched`).toBe(777);
  else if (code === "OK") expect(field).toBe(c.len);
  else if (code === "EAGAIN") expect(typeof field === "number" && field > 0 && field < c.len, `${key} = ${String(field)}`).toBe(true);
  else expect([777, -ERRNO[code as keyof typeof ERRNO]]).toContain(field);
}

async function runCommands(cmds: Cmd[]): Promise<void> {
  const w = await buildWorld();
  for (const c of cmds) {
    const src = c.req === UFFDIO_COPY ? resolve(w, c.b) : 0;
    const srcRange = c.req === UFFDIO_COPY ? { start: src - (src % PAGE), end: src + c.len } : null;
    const before = observe(w, srcRange);
    let code = "OK";
    const arg = argFor(w, c);
    const uninit = c.fd === "uninit" && !w.uninitReady;
    try {
      await settle(w.k, w.p.ioctl(w.fds[c.fd], c.req, arg), `ioctl 0x${c.req.toString(16)}`);
    } catch (e) {
      if (!(e instanceof ErrnoError)) throw e;
      code = e.code;
    }
    if (c.fd === "closed") expect(code).toBe("EBADF");
    if (c.fd === "memfd") expect(code).toBe("ENOTTY");
    if (uninit && c.req !== UFFDIO_API) expect(code).toBe("EINVAL");
    checkResultField(c, arg, code, c.fd === "closed" || c.fd === "memfd" || uninit);
    if (c.fd === "uninit" && c.req === UFFDIO_API && code === "OK") w.uninitReady = true;
    const partialEffect = code === "EAGAIN" || (code === "ENOENT" && c.req === UFFDIO_WRITEPROTECT);
    if (code !== "OK" && !partialEffect) expect(observe(w, srcRange), `rejected ${code} changed state: ${JSON.stringify(c)}`).toBe(before);
  }
  w.k.checkInvariants();
}

describe("fuzz: random userfaultfd ioctls (fast-check, numRuns 200, seed 20260)", () => {
  it("only ErrnoError escapes, a rejected call changes nothing, invariants hold", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(cmdArb, { minLength: 1, maxLength: 6 }), (cmds) => runCommands(cmds)),
      { numRuns: 200, seed: 20260, endOnFailure: true },
    );
  }, 30_000);
});
