/**
 * The seeds tour across releases: each chapter runs one scenario twice, on the release profile
 * where a seed's behaviour happened and on the one that fixed it (docs/releases.md), and records
 * both runs and their outcomes side by side. The kernel is the same code on both sides; the
 * release profile (`new Kernel({ release })`) decides the rule the seed is about.
 */
import { decodeUffdMsgs, ErrnoError, Kernel, type AnyRelease, type Process, type UffdioContinue, type UffdioCopy, type UffdioMove } from "@uffd/kernel";
import {
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  O_CLOEXEC,
  PAGE_SIZE,
  PROT_READ,
  PROT_WRITE,
  UFFD_API,
  UFFD_EVENT_PAGEFAULT,
  UFFDIO_API,
  UFFDIO_CONTINUE,
  UFFDIO_COPY,
  UFFDIO_MOVE,
  UFFDIO_REGISTER,
  UFFDIO_REGISTER_MODE_MINOR,
  UFFDIO_REGISTER_MODE_MISSING,
} from "@uffd/kernel/uapi";
import { ChapterRecorder, formatSteps, table, wrap, type Chapter, type Watch } from "./tour.ts";

const RW = PROT_READ | PROT_WRITE;
const fill = (n: number, byte: number): Uint8Array => new Uint8Array(n).fill(byte);
const hex = (b: number): string => `0x${b.toString(16).padStart(2, "0")}`;

/** One run of a release chapter: the release, its part in the story, the steps and the outcome. */
export interface ReleaseSide {
  release: AnyRelease;
  /** "the bug", "the fix", ... */
  role: string;
  chapter: Chapter;
  /** The facts compared side by side (the same keys on both sides). */
  outcome: Record<string, string>;
}

/** A chapter run on two releases. */
export interface ReleaseChapter {
  seed: string;
  title: string;
  summary: string;
  sides: [ReleaseSide, ReleaseSide];
}

type Scenario = (release: AnyRelease) => Promise<{ chapter: Chapter; outcome: Record<string, string> }>;

async function onBoth(seed: string, title: string, summary: string, scenario: Scenario, [r1, role1]: [AnyRelease, string], [r2, role2]: [AnyRelease, string]): Promise<ReleaseChapter> {
  const a = await scenario(r1);
  const b = await scenario(r2);
  return { seed, title, summary, sides: [{ release: r1, role: role1, ...a }, { release: r2, role: role2, ...b }] };
}

async function errnoOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "OK";
  } catch (e) {
    if (e instanceof ErrnoError) return e.code;
    throw e;
  }
}

async function uffdOpen(p: Process): Promise<number> {
  const fd = await p.userfaultfd(O_CLOEXEC);
  await p.ioctl(fd, UFFDIO_API, { api: UFFD_API, features: 0 });
  return fd;
}

/** read() from a pipe until `n` bytes came. */
async function readAll(p: Process, fd: number, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  for (let total = 0; total < n; ) {
    const cur = await p.read(fd, n - total);
    if (cur.length === 0) throw new Error("the pipe ended early");
    out.set(cur, total);
    total += cur.length;
  }
  return out;
}

// --- seed 000: the vmsplice leak -------------------------------------------------------------------

/**
 * Seed 000's argument (COW by mapcount vs by page_count), as cow.c's "vmsplice() + unmap in
 * child": the child vmsplice()s a shared page into a pipe and unmaps it; the parent, now the only
 * mapper, writes. With COW decided by mapcount (5.7) the write reuses the page and the pipe hands
 * the child the parent's new bytes (CVE-2020-29374); with page_count (5.9 on) the pipe's reference
 * forces a copy and the pipe keeps the old bytes.
 */
async function vmspliceLeak(release: AnyRelease): Promise<{ chapter: Chapter; outcome: Record<string, string> }> {
  const k = new Kernel({ release, seed: 5 });
  const rec = new ChapterRecorder(k, "000", `on ${release}`, "");
  const p = k.spawn({ name: "parent" });
  const a = await p.mmap(0, PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS);
  const w = (proc: Process, who: string): Watch => ({ proc, who, mapping: "anon", addr: a, page: 0 });
  await p.mainThread.write(a, fill(PAGE_SIZE, 0x11));
  const child = await p.fork();
  await rec.step("the parent writes 0x11, then fork()s", "The page is shared read-only (kpagecount 2).", [w(p, "parent"), w(child, "child")]);
  const [rfd, wfd] = await child.pipe();
  const spliced = await child.vmsplice(wfd, a, PAGE_SIZE);
  await child.munmap(a, PAGE_SIZE);
  await rec.step("the child vmsplice()s the page into a pipe, then munmap()s it", "The parent maps the page once (kpagecount 1); the pipe still holds a reference to it.", [w(p, "parent")], { "bytes spliced": spliced });
  const pfn = p.pagemap(a, 1)[0]!.pfn;
  await p.mainThread.write(a, fill(PAGE_SIZE, 0xff));
  const reused = p.pagemap(a, 1)[0]!.pfn === pfn;
  const piped = await readAll(child, rfd, spliced);
  await rec.step(
    "the parent writes 0xff; the child reads the pipe",
    reused
      ? "COW by mapcount: the page is mapped once, so the write reuses it in place, and the pipe gives the child what the parent wrote after the child unmapped the page: the leak."
      : "COW by page_count: the pipe's reference counts, so the write copies the page (new pfn) and the pipe gives the child the bytes it spliced.",
    [w(p, "parent")],
    { "the write reused the page": reused, "the child reads": hex(piped[0]!) },
  );
  await child.exit(0);
  await p.waitpid(child.pid);
  k.checkInvariants();
  return { chapter: rec.chapter, outcome: { "the parent's write": reused ? "reuses the page" : "copies the page", "the child reads from the pipe": hex(piped[0]!), verdict: piped[0] === 0x11 ? "no leak" : "leak from parent into child" } };
}

/** Seed 000 on 5.7 (COW by mapcount) and 5.10 (COW by page_count). */
export function chapterVmspliceLeak(): Promise<ReleaseChapter> {
  return onBoth(
    "000",
    "the vmsplice leak (CVE-2020-29374): COW by mapcount, then by page_count",
    "A pipe's reference to a vmsplice()d page is not a mapping. While do_wp_page() reused any page mapped once (5.7), a child could splice a shared page, unmap it and read through the pipe what the parent wrote afterwards. 17839856fd58 (5.8) made GUP break COW for reads; 09854ba94c6a (5.9) decides reuse by page_count, which the pipe's reference raises, so the parent copies.",
    vmspliceLeak,
    ["5.7", "the bug"],
    ["5.10", "fixed by 17839856fd58 and 09854ba94c6a"],
  );
}

// --- seeds 001 + 004: the wrong COW of a pinned page -------------------------------------------------

/**
 * Seed 001's complaint, as cow.c's "R/O-mapping a page registered as iouring fixed buffer": a page
 * pinned R/W by io_uring is mapped read-only for a moment (mprotect() down and up), and the next
 * write faults. By page_count (5.9 - 5.18) the pin is "someone else": the write copies the page
 * and the device keeps the old one. PageAnonExclusive (5.19, seed 004) says the page is this
 * process's alone, so it is reused; since 6.0 mprotect() even maps it writable again at once.
 */
async function pinnedCow(release: AnyRelease): Promise<{ chapter: Chapter; outcome: Record<string, string> }> {
  const k = new Kernel({ release, seed: 6 });
  const rec = new ChapterRecorder(k, "001 + 004", `on ${release}`, "");
  const p = k.spawn({ name: "app" });
  const a = await p.mmap(0, PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS);
  const w: Watch[] = [{ proc: p, who: "app", mapping: "anon", addr: a, page: 0 }];
  await p.mainThread.write(a, fill(PAGE_SIZE, 0x51));
  const buf = await p.ioUringRegisterBuffers(a, PAGE_SIZE);
  await rec.step("write 0x51; io_uring registers the page as a fixed buffer (FOLL_PIN | FOLL_LONGTERM | FOLL_WRITE)", "An exclusive page, pinned for the device.", w, { "device reads": hex(buf.read(0, 1)[0]!) });
  const pfn = p.pagemap(a, 1)[0]!.pfn;
  await p.mprotect(a, PAGE_SIZE, PROT_READ);
  await p.mprotect(a, PAGE_SIZE, RW);
  await p.mainThread.write(a, fill(PAGE_SIZE, 0xff));
  const same = p.pagemap(a, 1)[0]!.pfn === pfn;
  const device = buf.read(0, 1)[0]!;
  await rec.step(
    "mprotect(PROT_READ), mprotect(PROT_READ | PROT_WRITE), then the app writes 0xff",
    same
      ? "The page is PageAnonExclusive: the write keeps it (same pfn), so the app and the device still share one page."
      : "COW by page_count: the pin raises the count, so the write fault copies the page (new pfn). The device keeps writing and reading the old page: the pin lost coherency.",
    w,
    { "same pfn": same, "device reads": hex(device) },
  );
  await buf.unregister();
  k.checkInvariants();
  return { chapter: rec.chapter, outcome: { "the app's write": same ? "keeps the pinned page" : "copies the pinned page", "the device reads": hex(device), verdict: device === 0xff ? "the pin is reliable" : "the R/W pin lost coherency" } };
}

/** Seeds 001 + 004 on 5.18 (page_count) and 6.1 (PageAnonExclusive). */
export function chapterPinnedCow(): Promise<ReleaseChapter> {
  return onBoth(
    "001 + 004",
    "the wrong COW of a pinned page: page_count, then PG_anon_exclusive",
    "Deciding COW by page_count copies any page somebody else references, a GUP pin included, so a pinned page that is mapped read-only for a moment is replaced under the device on the next write. 6c287605fd56 (5.19) remembers which anonymous pages are exclusive to one process (PG_anon_exclusive) and reuses those whatever their count; 64fe24a3e05e (6.0) lets mprotect() map them writable again.",
    pinnedCow,
    ["5.18", "the bug"],
    ["6.1", "fixed by 6c287605fd56 and a7f226604170"],
  );
}

// --- seed 002: CONTINUE on a MAP_PRIVATE shmem mapping -------------------------------------------------

/**
 * Seed 002: UFFDIO_CONTINUE on a MAP_PRIVATE shmem mapping must map the cache page read-only, so a
 * write copies it privately and the file does not change. The patch under review fixed the
 * shmem CONTINUE code while it was still in linux-next (its "Fixes:" tag names a linux-next
 * commit), so no release shipped the bug: the chapter contrasts the last profile without minor
 * faults on shmem (5.10: the registration itself is EINVAL) with the first that has them (5.15).
 */
async function continuePrivate(release: AnyRelease): Promise<{ chapter: Chapter; outcome: Record<string, string> }> {
  const k = new Kernel({ release, seed: 7 });
  const rec = new ChapterRecorder(k, "002", `on ${release}`, "");
  const p = k.spawn({ name: "app" });
  const fd = await p.memfdCreate("cache");
  await p.ftruncate(fd, PAGE_SIZE);
  await p.pwrite(fd, fill(PAGE_SIZE, 0xaa), 0);
  const priv = await p.mmap(0, PAGE_SIZE, RW, MAP_PRIVATE, fd, 0);
  const w: Watch[] = [{ proc: p, who: "app", mapping: "private", addr: priv, page: 0 }];
  const uffd = await uffdOpen(p);
  const register = await errnoOf(p.ioctl(uffd, UFFDIO_REGISTER, { range: { start: priv, len: PAGE_SIZE }, mode: UFFDIO_REGISTER_MODE_MINOR }));
  await rec.step("a memfd page holding 0xaa, mapped MAP_PRIVATE; UFFDIO_REGISTER it for minor faults", register === "OK" ? "Registered: the first access to the cached page will be a minor fault." : "EINVAL: this release has no minor faults on shmem (vma_can_userfault() refuses the mode).", w, { "UFFDIO_REGISTER MINOR": register });
  if (register !== "OK") {
    await p.close(uffd);
    k.checkInvariants();
    return { chapter: rec.chapter, outcome: { "UFFDIO_REGISTER MINOR": register, "UFFDIO_CONTINUE maps": "-", "the file after a private write": "-" } };
  }
  const reader = p.spawnThread("reader").read(priv, 1);
  const [m] = decodeUffdMsgs(await p.read(uffd, 32));
  if (m === undefined || m.event !== UFFD_EVENT_PAGEFAULT) throw new Error("expected a page fault message");
  const req: UffdioContinue = { range: { start: priv, len: PAGE_SIZE }, mode: 0 };
  await p.ioctl(uffd, UFFDIO_CONTINUE, req);
  await reader;
  const mappedPfn = p.pagemap(priv, 1)[0]!.pfn;
  await rec.step("a thread reads: a minor fault, resolved with UFFDIO_CONTINUE", "The private pte maps the cache page itself (F1), read-only: the page belongs to the file.", w, { "CONTINUE mapped": req.mapped ?? "-" });
  await p.mainThread.write(priv, fill(1, 0x55));
  const file = (await p.pread(fd, 1, 0))[0]!;
  const copied = p.pagemap(priv, 1)[0]!.pfn !== mappedPfn;
  await rec.step("write 0x55 through the private mapping", "The read-only pte makes the write an ordinary COW into a private anonymous page (F0, new pfn), with no userfault; the file keeps 0xaa.", w, { "the write copied the page": copied, "file byte 0": hex(file) });
  await p.close(uffd);
  k.checkInvariants();
  return { chapter: rec.chapter, outcome: { "UFFDIO_REGISTER MINOR": register, "UFFDIO_CONTINUE maps": "the cache page, read-only", "the file after a private write": hex(file) } };
}

/** Seed 002 on 5.10 (no minor faults on shmem) and 5.15 (CONTINUE as fixed before it shipped). */
export function chapterContinuePrivate(): Promise<ReleaseChapter> {
  return onBoth(
    "002",
    "UFFDIO_CONTINUE on a MAP_PRIVATE shmem mapping",
    "Minor faults on shmem came in 5.14 (c949b097ef2e, 964ab0040ff9). The thread fixed CONTINUE before that release: look the page up in the page cache and install it with the common pte helper, without pte_mkwrite() on a private mapping. The bug never reached a release, so this chapter shows the release before the feature and the first profile with it.",
    continuePrivate,
    ["5.10", "before minor faults on shmem"],
    ["5.15", "CONTINUE as merged in 5.14"],
  );
}

// --- seeds 003 + 004: MOVE and a page that lost PageAnonExclusive -------------------------------------

/**
 * Seed 003: UFFDIO_MOVE moves only pages exclusive to the process (PageAnonExclusive); after a
 * fork() it answers EBUSY and the caller copies. Before 6.8 there is no MOVE at all (EINVAL,
 * nothing written back), and COPY is the only way.
 */
async function moveAfterFork(release: AnyRelease): Promise<{ chapter: Chapter; outcome: Record<string, string> }> {
  const k = new Kernel({ release, seed: 8 });
  const rec = new ChapterRecorder(k, "003 + 004", `on ${release}`, "");
  const p = k.spawn({ name: "app" });
  const src = await p.mmap(0, 2 * PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS);
  const dst = await p.mmap(0, 2 * PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS);
  await p.mainThread.write(src, fill(1, 0x01));
  await p.mainThread.write(src + PAGE_SIZE, fill(1, 0x02));
  const uffd = await uffdOpen(p);
  await p.ioctl(uffd, UFFDIO_REGISTER, { range: { start: dst, len: 2 * PAGE_SIZE }, mode: UFFDIO_REGISTER_MODE_MISSING });
  const child = await p.fork();
  const w: Watch[] = [0, 1].flatMap((page) => [{ proc: p, who: "app", mapping: "src", addr: src, page }, { proc: p, who: "app", mapping: "dst", addr: dst, page }]);
  await rec.step("two source pages (0x01, 0x02), a destination registered MISSING, then fork()", "The source pages are shared with the child and are no longer exclusive to the app.", w);
  const mv: UffdioMove = { dst, src, len: PAGE_SIZE, mode: 0 };
  const moveErrno = await errnoOf(p.ioctl(uffd, UFFDIO_MOVE, mv));
  const cp: UffdioCopy = { dst, src, len: PAGE_SIZE, mode: 0 };
  await p.ioctl(uffd, UFFDIO_COPY, cp);
  await rec.step(
    "UFFDIO_MOVE page 0, then UFFDIO_COPY as the fallback",
    mv.move === undefined
      ? "EINVAL and no `move` written back: this release has no UFFDIO_MOVE (the ioctl is unknown). COPY installs a copy."
      : "EBUSY (`move` = -16): the page lost PageAnonExclusive at fork, so MOVE refuses it. COPY installs a copy and leaves the source in place.",
    w,
    { "MOVE errno": moveErrno, "MOVE move": mv.move ?? "-", "COPY copy": cp.copy ?? "-" },
  );
  await child.exit(0);
  await p.waitpid(child.pid);
  await p.mainThread.write(src + PAGE_SIZE, fill(1, 0x03));
  const pfn = p.pagemap(src + PAGE_SIZE, 1)[0]!.pfn;
  const again = await errnoOf(p.ioctl(uffd, UFFDIO_MOVE, { dst: dst + PAGE_SIZE, src: src + PAGE_SIZE, len: PAGE_SIZE, mode: 0 }));
  const moved = p.pagemap(dst + PAGE_SIZE, 1)[0]!.pfn === pfn;
  await rec.step("the child exits; write 0x03 to page 1 (the write fault reuses it); MOVE page 1", again === "OK" ? "The reused page is exclusive again: MOVE maps the same pfn at the destination and empties the source." : "Still EINVAL: no MOVE on this release, whatever the page.", w, { "MOVE errno": again, "the destination got the same pfn": moved });
  await p.close(uffd);
  k.checkInvariants();
  return { chapter: rec.chapter, outcome: { "MOVE of a page shared by fork": moveErrno, "COPY as the fallback": String(cp.copy ?? "-"), "MOVE of an exclusive page": again } };
}

/** Seeds 003 + 004 on 6.6 (no UFFDIO_MOVE) and 6.12 (MOVE, EBUSY after fork). */
export function chapterMoveAfterFork(): Promise<ReleaseChapter> {
  return onBoth(
    "003 + 004",
    "UFFDIO_MOVE refuses a page that lost PageAnonExclusive at fork",
    "UFFDIO_MOVE (adef440691ba, 6.8) takes a page from one address and maps it at another, which is only safe for a page nobody else maps: it requires PageAnonExclusive and answers EBUSY otherwise. Before 6.8 the ioctl does not exist; on either release UFFDIO_COPY is the way out.",
    moveAfterFork,
    ["6.6", "before UFFDIO_MOVE"],
    ["6.12", "UFFDIO_MOVE, since 6.8"],
  );
}

/** The release chapters, in seed order. */
export async function releaseChapters(): Promise<ReleaseChapter[]> {
  return [await chapterVmspliceLeak(), await chapterPinnedCow(), await chapterContinuePrivate(), await chapterMoveAfterFork()];
}

/** Renders release chapters: each side's steps, then the outcomes side by side. */
export function formatReleaseChapters(chapters: readonly ReleaseChapter[]): string[] {
  const lines: string[] = [];
  for (const c of chapters) {
    const [a, b] = c.sides;
    lines.push(`=== Seed ${c.seed} on ${a.release} and ${b.release}: ${c.title}`);
    lines.push(...wrap(c.summary, "    "));
    for (const side of c.sides) {
      lines.push("", `  --- on ${side.release} (${side.role})`);
      lines.push(...formatSteps(side.chapter.steps));
    }
    lines.push("", "  side by side:");
    const rows = Object.keys(a.outcome).map((key) => [key, a.outcome[key] ?? "-", b.outcome[key] ?? "-"]);
    lines.push(...table(["", `on ${a.release}`, `on ${b.release}`], rows).map((l) => `     ${l}`));
    lines.push("");
  }
  return lines;
}
