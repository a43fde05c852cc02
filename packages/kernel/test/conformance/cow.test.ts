/**
 * Port of tools/testing/selftests/mm/cow.c (docs/linux-rules.md §6.2): COW must be broken so
 * that neither a fork()ed process nor a GUP user (vmsplice's R/O references, io_uring's R/W
 * long-term pins, gup_test's R/O long-term pins) ever observes the other side's later stores.
 * Each test is named exactly like cow.c's "[RUN] <description> ... <runner>" log line and
 * asserts what cow.c asserts, then checkInvariants().
 *
 * The runners:
 * - anonymous: "with base page" and "with swapped out base page" (MADV_PAGEOUT; as in cow.c the
 *   test is skipped, with cow.c's reason, when the page did not get swapped out).
 *   The THP runners ("with THP", "with PTE-mapped THP", "with single PTE of THP", "with
 *   partially mremap()'ed THP", "with partially shared THP", their swapped-out variants), the
 *   anonymous THP collapse cases T1-T4 and the hugetlb runners are not ported: the simulation
 *   has no THP and no hugetlb (docs/divergences.md), so cow.c itself would not plan them.
 * - non-anonymous: "with shared zeropage" and "with memfd". "with tmpfile" is not ported: the
 *   simulation has no regular filesystem (tmpfile() has nothing to create); "with huge zeropage"
 *   and "with memfd hugetlb" need THP/hugetlb.
 *
 * How the C program maps here: cow.c's child runs concurrently and the two sides hand over with
 * the comm pipes (child_ready / parent_ready); here the test drives parent and child Processes
 * in exactly that hand-over order. The child's verdict is its exit status, read with waitpid.
 * io_uring's write_fixed of the buffer into a tmpfile followed by pread() is replaced by reading
 * the registered buffer directly (PinnedBuffer.read reads the pinned frames, as the device
 * does). gup_test's PIN_LONGTERM_TEST_START/READ/STOP are Process.gupTestPin(), its read() and
 * unregister(). clear_softdirty() is a no-op: like the reference host, the simulation has no
 * CONFIG_MEM_SOFT_DIRTY.
 *
 * Every test runs on every release profile (ALL_RELEASES: the long-term series and the history
 * profiles "5.7" and "5.18"). cow.c expects a PASS everywhere; on the releases that lack a fix it
 * fails, and the table FAILS below says which test fails where, with cow.c's own failure message,
 * each written out by hand from the fix's commit (docs/releases.md, "Copy-on-write, release by
 * release"). A test not in the table must pass.
 */
import { describe, expect, it } from "vitest";
import { ALL_RELEASES, type AnyRelease, Kernel, type Process } from "@uffd/kernel";
import { MADV_NOHUGEPAGE, MADV_PAGEOUT, MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, PAGE_SIZE, PROT_READ, PROT_WRITE } from "@uffd/kernel/uapi";

const PAGE = PAGE_SIZE;
const RW = PROT_READ | PROT_WRITE;
const ANON = MAP_PRIVATE | MAP_ANONYMOUS;

const fill = (n: number, byte: number): Uint8Array => new Uint8Array(n).fill(byte);
const equal = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && a.every((x, i) => x === b[i]);

interface AnonEnv {
  k: Kernel;
  p: Process;
  mem: number;
  size: number;
}

/** read() from a pipe until `n` bytes came (the loop of child_vmsplice_memcmp_fn). */
async function readAll(p: Process, fd: number, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  for (let total = 0; total < n; ) {
    const cur = await p.read(fd, n - total);
    expect(cur.length, "read() on the pipe").toBeGreaterThan(0);
    out.set(cur, total);
    total += cur.length;
  }
  return out;
}

// --- building blocks --------------------------------------------------------------------------

/** child_memcmp_fn(): the child backs up mem, lets the parent modify it, then compares. */
const childMemcmp = {
  async before(c: Process, mem: number, size: number): Promise<Uint8Array> {
    return c.mainThread.read(mem, size);
  },
  async after(c: Process, mem: number, size: number, old: Uint8Array): Promise<number> {
    return equal(old, await c.mainThread.read(mem, size)) ? 0 : 1;
  },
};

/** child_vmsplice_memcmp_fn(): R/O GUP via vmsplice, munmap, then the pipe must give the old bytes. */
const childVmspliceMemcmp = {
  async before(c: Process, mem: number, size: number): Promise<{ old: Uint8Array; fd: number; transferred: number }> {
    const old = await c.mainThread.read(mem, size);
    const [r, w] = await c.pipe();
    const transferred = await c.vmsplice(w, mem, size, 0);
    expect(transferred).toBeGreaterThan(0);
    await c.munmap(mem, size);
    return { old, fd: r, transferred };
  },
  async after(c: Process, st: { old: Uint8Array; fd: number; transferred: number }): Promise<number> {
    const got = await readAll(c, st.fd, st.transferred);
    return equal(st.old.subarray(0, st.transferred), got) ? 0 : 1;
  },
};

/** The parent's half of do_test_cow_in_parent(): optional mprotect dance, then memset(0xff). */
async function parentModifies(p: Process, mem: number, size: number, doMprotect: boolean): Promise<void> {
  if (doMprotect) {
    // mprotect() optimizations might try avoiding write-faults by directly mapping pages writable.
    await p.mprotect(mem, size, PROT_READ);
    await p.mprotect(mem, size, RW);
  }
  await p.mainThread.write(mem, fill(size, 0xff));
}

/** do_test_cow_in_parent(): PASS ("No leak from parent into child") iff the child exits 0. */
async function doTestCowInParent(e: AnonEnv, doMprotect: boolean, vmsplice: boolean): Promise<void> {
  const { p, mem, size } = e;
  const c = await p.fork();
  let verdict: number;
  if (vmsplice) {
    const st = await childVmspliceMemcmp.before(c, mem, size);
    await parentModifies(p, mem, size, doMprotect);
    verdict = await childVmspliceMemcmp.after(c, st);
  } else {
    const old = await childMemcmp.before(c, mem, size);
    await parentModifies(p, mem, size, doMprotect);
    verdict = await childMemcmp.after(c, mem, size, old);
  }
  await c.exit(verdict);
  const st = await p.waitpid(c.pid);
  expect(st.exitStatus, "Leak from parent into child").toBe(0);
}

/** do_test_vmsplice_in_parent(): PASS ("No leak from child into parent") iff the pipe gives the old bytes. */
async function doTestVmspliceInParent(e: AnonEnv, beforeFork: boolean): Promise<void> {
  const { p, mem, size } = e;
  const old = await p.mainThread.read(mem, size);
  const [r, w] = await p.pipe();
  let transferred = 0;
  if (beforeFork) transferred = await p.vmsplice(w, mem, size, 0);
  const c = await p.fork();
  if (!beforeFork) transferred = await p.vmsplice(w, mem, size, 0);
  expect(transferred).toBeGreaterThan(0);
  await p.munmap(mem, size);
  // The child modifies the page content, then exits.
  await c.mainThread.write(mem, fill(size, 0xff));
  await c.exit(0);
  expect((await p.waitpid(c.pid)).exitStatus).toBe(0);
  const got = await readAll(p, r, transferred);
  expect(equal(old.subarray(0, transferred), got), "Leak from child into parent").toBe(true);
  await p.close(r);
  await p.close(w);
}

/** do_test_iouring(): PASS ("Longterm R/W pin is reliable") iff the fixed buffer shows mem's bytes. */
async function doTestIouring(e: AnonEnv, useFork: boolean): Promise<void> {
  const { p, mem, size } = e;
  // Registers the range as a fixed buffer: FOLL_WRITE | FOLL_PIN | FOLL_LONGTERM.
  const buf = await p.ioUringRegisterBuffers(mem, size);
  let child: Process | null = null;
  if (useFork) {
    // fork() and keep the child alive until we're done: the pinned page must not get shared.
    child = await p.fork();
  } else {
    // Map the page R/O into the page table (clear_softdirty() is a no-op without soft-dirty).
    await p.mprotect(mem, size, PROT_READ);
    await p.mprotect(mem, size, RW);
  }
  await p.mainThread.write(mem, fill(size, 0xff));
  // io_uring_prep_write_fixed() + pread() back: what the device sees through the pin.
  const tmp = buf.read(0, size);
  expect(equal(await p.mainThread.read(mem, size), tmp), "Longterm R/W pin is not reliable").toBe(true);
  if (child !== null) {
    await child.exit(0);
    await p.waitpid(child.pid);
  }
  await buf.unregister();
}

const RO_PIN = { TEST: 0, SHARED: 1, PREVIOUSLY_SHARED: 2, RO_EXCLUSIVE: 3 } as const;
type RoPinTest = (typeof RO_PIN)[keyof typeof RO_PIN];

/** do_test_ro_pin(): PASS ("Longterm R/O pin is reliable") iff the pin observes the later memset. */
async function doTestRoPin(p: Process, mem: number, size: number, test: RoPinTest, fast: boolean): Promise<void> {
  let child: Process | null = null;
  if (test === RO_PIN.SHARED || test === RO_PIN.PREVIOUSLY_SHARED) {
    // Share the pages with our child. As the pages are not pinned, this should just work.
    child = await p.fork();
    if (test === RO_PIN.PREVIOUSLY_SHARED) {
      // The pages stay mapped R/O into our page tables, but are no longer shared.
      await child.exit(0);
      await p.waitpid(child.pid);
      child = null;
    }
  } else if (test === RO_PIN.RO_EXCLUSIVE) {
    await p.mprotect(mem, size, PROT_READ);
    await p.mprotect(mem, size, RW);
  }
  // Take a R/O pin. This should trigger unsharing.
  const pin = await p.gupTestPin(mem, size, { write: false, longterm: true, fast });
  await p.mainThread.write(mem, fill(size, 0xff));
  const tmp = pin.read(0, size); // PIN_LONGTERM_TEST_READ
  expect(equal(await p.mainThread.read(mem, size), tmp), "Longterm R/O pin is not reliable").toBe(true);
  await pin.unregister(); // PIN_LONGTERM_TEST_STOP
  if (child !== null) {
    await child.exit(0);
    await p.waitpid(child.pid);
  }
}

// --- anonymous test cases and runners ---------------------------------------------------------

const anonTestCases: ReadonlyArray<readonly [string, (e: AnonEnv) => Promise<void>]> = [
  ["Basic COW after fork()", (e) => doTestCowInParent(e, false, false)],
  ["Basic COW after fork() with mprotect() optimization", (e) => doTestCowInParent(e, true, false)],
  // CVE-2020-29374 reported by Jann Horn.
  ["vmsplice() + unmap in child", (e) => doTestCowInParent(e, false, true)],
  ["vmsplice() + unmap in child with mprotect() optimization", (e) => doTestCowInParent(e, true, true)],
  ["vmsplice() before fork(), unmap in parent after fork()", (e) => doTestVmspliceInParent(e, true)],
  ["vmsplice() + unmap in parent after fork()", (e) => doTestVmspliceInParent(e, false)],
  ["R/O-mapping a page registered as iouring fixed buffer", (e) => doTestIouring(e, false)],
  ["fork() with an iouring fixed buffer", (e) => doTestIouring(e, true)],
  ["R/O GUP pin on R/O-mapped shared page", (e) => doTestRoPin(e.p, e.mem, e.size, RO_PIN.SHARED, false)],
  ["R/O GUP-fast pin on R/O-mapped shared page", (e) => doTestRoPin(e.p, e.mem, e.size, RO_PIN.SHARED, true)],
  ["R/O GUP pin on R/O-mapped previously-shared page", (e) => doTestRoPin(e.p, e.mem, e.size, RO_PIN.PREVIOUSLY_SHARED, false)],
  ["R/O GUP-fast pin on R/O-mapped previously-shared page", (e) => doTestRoPin(e.p, e.mem, e.size, RO_PIN.PREVIOUSLY_SHARED, true)],
  ["R/O GUP pin on R/O-mapped exclusive page", (e) => doTestRoPin(e.p, e.mem, e.size, RO_PIN.RO_EXCLUSIVE, false)],
  ["R/O GUP-fast pin on R/O-mapped exclusive page", (e) => doTestRoPin(e.p, e.mem, e.size, RO_PIN.RO_EXCLUSIVE, true)],
];

const anonRunners: ReadonlyArray<readonly [string, boolean]> = [
  ["with base page", false],
  ["with swapped out base page", true],
];

// --- which test fails on which release ----------------------------------------------------------

const LEAK_CHILD = "Leak from parent into child"; // do_test_cow_in_parent()
const LEAK_PARENT = "Leak from child into parent"; // do_test_vmsplice_in_parent()
const RW_PIN = "Longterm R/W pin is not reliable"; // do_test_iouring()
const RO_PIN_LOST = "Longterm R/O pin is not reliable"; // do_test_ro_pin()

type Failures = Readonly<Record<string, string>>;
const both = (desc: string, msg: string): Failures => ({ [`${desc} ... with base page`]: msg, [`${desc} ... with swapped out base page`]: msg });
const swapped = (desc: string, msg: string): Failures => ({ [`${desc} ... with swapped out base page`]: msg });

/**
 * The mapcount era (5.7): do_wp_page() reuses a page mapped once whatever references it has.
 * - The vmsplice leak, CVE-2020-29374 (cow.c: "CVE-2020-29374 reported by Jann Horn"): the pipe's
 *   reference does not stop the reuse, in both directions. Fixed in GUP by 17839856fd58 (5.8),
 *   then by the page_count rule of 09854ba94c6a (5.9).
 * - No early COW at fork (70e806e4e645 is 5.9): the pinned page is shared, the parent's write
 *   copies away from the io_uring buffer.
 * - No unsharing for R/O pins (a7f226604170 is 5.19): a R/O pin of a page the child still maps is
 *   replaced by the parent's write; once the child is gone (previously shared, or exclusive) the
 *   page is mapped once and reused, so those pass.
 */
const MAPCOUNT_ERA: Failures = {
  ...both("vmsplice() + unmap in child", LEAK_CHILD),
  ...both("vmsplice() + unmap in child with mprotect() optimization", LEAK_CHILD),
  ...both("vmsplice() before fork(), unmap in parent after fork()", LEAK_PARENT),
  ...both("vmsplice() + unmap in parent after fork()", LEAK_PARENT),
  ...both("fork() with an iouring fixed buffer", RW_PIN),
  ...both("R/O GUP pin on R/O-mapped shared page", RO_PIN_LOST),
  ...both("R/O GUP-fast pin on R/O-mapped shared page", RO_PIN_LOST),
};

/**
 * The page_count era (5.9 - 5.18; the profiles 5.10, 5.15, 5.18): a page with any other
 * reference is copied, so the vmsplice tests pass, but so is a pinned page mapped read-only: the
 * wrong COW that PageAnonExclusive (6c287605fd56, 5.19) and R/O-pin unsharing (a7f226604170, 5.19)
 * fixed. The io_uring buffer R/O-mapped by mprotect() is copied on the next write (mprotect() does
 * not map it writable again before 64fe24a3e05e, 6.0), and every R/O pin loses the later write.
 */
const PAGE_COUNT_ERA: Failures = {
  ...both("R/O-mapping a page registered as iouring fixed buffer", RW_PIN),
  ...both("R/O GUP pin on R/O-mapped shared page", RO_PIN_LOST),
  ...both("R/O GUP-fast pin on R/O-mapped shared page", RO_PIN_LOST),
  ...both("R/O GUP pin on R/O-mapped previously-shared page", RO_PIN_LOST),
  ...both("R/O GUP-fast pin on R/O-mapped previously-shared page", RO_PIN_LOST),
  ...both("R/O GUP pin on R/O-mapped exclusive page", RO_PIN_LOST),
  ...both("R/O GUP-fast pin on R/O-mapped exclusive page", RO_PIN_LOST),
};

/**
 * Before 5.18, do_swap_page() still decided by reuse_swap_page() (mapcount plus swap count): a
 * write fault on a swapped-out page reuses it although a pipe holds it. The cover letter of "mm:
 * COW fixes part 1" (c145e0b47c77 "mm: streamline COW logic in do_swap_page()", 5.18) says the
 * CVE-2020-29374 issue "currently affects anonymous pages during swapin", re-introduced by
 * 09854ba94c6a. Only the child-side vmsplice tests reach that path: the page is still swapped
 * out at fork, the child reads it back (through the swap cache, two entries refer to it),
 * vmsplice()s and unmaps it, and the parent's write fault finds its own entry the only one left.
 * The parent-side tests read the page (memcpy of the old contents) before fork, so it is mapped
 * again when fork shares it and the child's write goes through do_wp_page(), which copies.
 */
const SWAPIN_REUSE: Failures = {
  ...swapped("vmsplice() + unmap in child", LEAK_CHILD),
  ...swapped("vmsplice() + unmap in child with mprotect() optimization", LEAK_CHILD),
};

/**
 * Before 6.2 (84209e87c696 "mm/gup: reliable R/O long-term pinning in COW mappings"), a R/O
 * long-term pin in a private mapping takes the shared zero page or the page-cache page as it is;
 * the next write replaces it with an anonymous copy.
 */
const NON_ANON_PIN: Failures = {
  "R/O longterm GUP pin ... with shared zeropage": RO_PIN_LOST,
  "R/O longterm GUP-fast pin ... with shared zeropage": RO_PIN_LOST,
  "R/O longterm GUP pin ... with memfd": RO_PIN_LOST,
  "R/O longterm GUP-fast pin ... with memfd": RO_PIN_LOST,
};

/** Which test fails on which release (a test not listed passes). */
const FAILS: Readonly<Record<AnyRelease, Failures>> = {
  "5.7": { ...MAPCOUNT_ERA, ...NON_ANON_PIN },
  "5.10": { ...PAGE_COUNT_ERA, ...SWAPIN_REUSE, ...NON_ANON_PIN },
  "5.15": { ...PAGE_COUNT_ERA, ...SWAPIN_REUSE, ...NON_ANON_PIN },
  "5.18": { ...PAGE_COUNT_ERA, ...NON_ANON_PIN },
  "6.1": NON_ANON_PIN,
  "6.6": {},
  "6.12": {},
  "6.18": {},
};

/** Runs one cow.c test: it passes, or fails with exactly the message FAILS names for the release. */
async function expectVerdict(release: AnyRelease, name: string, k: Kernel, run: () => Promise<void>): Promise<void> {
  const failure = FAILS[release][name];
  if (failure === undefined) await run();
  else await expect(run(), `cow.c fails "${name}" on ${release}`).rejects.toThrow(failure);
  k.checkInvariants();
}

describe("cow.c expectations", () => {
  it("name only tests that exist", () => {
    const names = new Set<string>();
    for (const [desc] of anonTestCases) for (const [runner] of anonRunners) names.add(`${desc} ... ${runner}`);
    for (const [desc] of nonAnonTestCases) for (const [runner] of nonAnonRunners) names.add(`${desc} ... ${runner}`);
    for (const release of ALL_RELEASES) for (const name of Object.keys(FAILS[release])) expect(names, `${release}: ${name}`).toContain(name);
  });
});

describe.each(ALL_RELEASES.map((r) => [r] as const))("release %s: cow.c: anonymous memory tests in private mappings", (release) => {
  for (const [desc, fn] of anonTestCases) {
    for (const [runner, swapout] of anonRunners) {
      // do_run_with_base_page()
      const name = `${desc} ... ${runner}`;
      it(name, async (ctx) => {
        const k = new Kernel({ release, seed: 1, swapPages: 64 });
        const p = k.spawn();
        const mem = await p.mmap(0, PAGE, RW, ANON);
        // Ignored if not around: the simulation has no THP, so there is nothing to opt out of.
        await p.madvise(mem, PAGE, MADV_NOHUGEPAGE).catch(() => undefined);
        await p.mainThread.write(mem, fill(PAGE, 1)); // populate a base page
        if (swapout) {
          await p.madvise(mem, PAGE, MADV_PAGEOUT).catch(() => undefined);
          ctx.skip(!p.pagemap(mem, 1)[0]!.swapped, "MADV_PAGEOUT did not work, is swap enabled?");
        }
        await expectVerdict(release, name, k, async () => {
          await fn({ k, p, mem, size: PAGE });
          await p.munmap(mem, PAGE);
          k.checkInvariants();
          await p.exit(0);
        });
      });
    }
  }
});

// --- non-anonymous test cases and runners -----------------------------------------------------

/** test_cow(): PASS ("Other mapping not modified") iff smem still shows the old bytes. */
async function testCow(p: Process, mem: number, smem: number, size: number): Promise<void> {
  const old = await p.mainThread.read(smem, size);
  await p.mainThread.write(mem, fill(size, 0xff));
  expect(equal(await p.mainThread.read(smem, size), old), "Other mapping modified").toBe(true);
}

const nonAnonTestCases: ReadonlyArray<readonly [string, (p: Process, mem: number, smem: number, size: number) => Promise<void>]> = [
  ["Basic COW", testCow],
  ["R/O longterm GUP pin", (p, mem, _smem, size) => doTestRoPin(p, mem, size, RO_PIN.TEST, false)],
  ["R/O longterm GUP-fast pin", (p, mem, _smem, size) => doTestRoPin(p, mem, size, RO_PIN.TEST, true)],
];

/** run_with_zeropage(): two private anon pages (RW and RO), read-faulted to the shared zero page. */
async function withZeropage(p: Process): Promise<{ mem: number; smem: number }> {
  const mem = await p.mmap(0, PAGE, RW, ANON);
  const smem = await p.mmap(0, PAGE, PROT_READ, ANON);
  await p.mainThread.read(mem, 1);
  await p.mainThread.read(smem, 1);
  return { mem, smem };
}

/** run_with_memfd(): a fallocated one-page memfd, mapped MAP_PRIVATE RW and MAP_SHARED RO, both read-faulted. */
async function withMemfd(p: Process): Promise<{ mem: number; smem: number }> {
  const fd = await p.memfdCreate("test", 0);
  await p.fallocate(fd, 0, 0, PAGE); // a single page filled with zeroes
  const mem = await p.mmap(0, PAGE, RW, MAP_PRIVATE, fd, 0);
  const smem = await p.mmap(0, PAGE, PROT_READ, MAP_SHARED, fd, 0);
  await p.mainThread.read(mem, 1);
  await p.mainThread.read(smem, 1);
  await p.close(fd);
  return { mem, smem };
}

const nonAnonRunners: ReadonlyArray<readonly [string, (p: Process) => Promise<{ mem: number; smem: number }>]> = [
  ["with shared zeropage", withZeropage],
  ["with memfd", withMemfd],
];

describe.each(ALL_RELEASES.map((r) => [r] as const))("release %s: cow.c: non-anonymous memory tests in private mappings", (release) => {
  for (const [desc, fn] of nonAnonTestCases) {
    for (const [runner, setup] of nonAnonRunners) {
      const name = `${desc} ... ${runner}`;
      it(name, async () => {
        const k = new Kernel({ release, seed: 1 });
        const p = k.spawn();
        const { mem, smem } = await setup(p);
        await expectVerdict(release, name, k, async () => {
          await fn(p, mem, smem, PAGE);
          await p.munmap(mem, PAGE);
          await p.munmap(smem, PAGE);
          k.checkInvariants();
          await p.exit(0);
        });
      });
    }
  }
});
