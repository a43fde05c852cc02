/**
 * The chapters of the seeds tour: each replays, on the simulated kernel, the behaviour one of the
 * linux-mm threads of docs/linux-rules.md §10 argues about, with the kernel's own view (pagemap bits,
 * pfns, kpagecount) after every step. The uAPI is used raw here: the point is the mechanism.
 */
import { decodeUffdMsgs, ErrnoError, Kernel, type Process, type UffdioContinue, type UffdioCopy, type UffdioMove } from "@uffd/kernel";
import {
  F_SETFL,
  MADV_PAGEOUT,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  MAP_SHARED,
  O_CLOEXEC,
  O_NONBLOCK,
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
  UFFDIO_REGISTER_MODE_WP,
  UFFDIO_WRITEPROTECT,
  UFFDIO_WRITEPROTECT_MODE_WP,
} from "@uffd/kernel/uapi";
import { ChapterRecorder, type Chapter, type Watch } from "./tour.ts";

const RW = PROT_READ | PROT_WRITE;
const fill = (n: number, byte: number): Uint8Array => new Uint8Array(n).fill(byte);

async function anon(p: Process, pages: number): Promise<number> {
  return p.mmap(0, pages * PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS);
}

/** A userfaultfd after the API handshake (no optional features: the defaults of a plain program). */
async function uffdOpen(p: Process): Promise<number> {
  const fd = await p.userfaultfd(O_CLOEXEC);
  await p.ioctl(fd, UFFDIO_API, { api: UFFD_API, features: 0 });
  return fd;
}

/** Runs an ioctl and returns "OK" or the errno name. */
async function errnoOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "OK";
  } catch (e) {
    if (e instanceof ErrnoError) return e.code;
    throw e;
  }
}

/** Reads one uffd_msg (blocking read(2)) and returns it as "flags 0x.. at page n". */
async function readFault(p: Process, uffd: number, base: number): Promise<string> {
  const [m] = decodeUffdMsgs(await p.read(uffd, 32));
  if (m === undefined || m.event !== UFFD_EVENT_PAGEFAULT) throw new Error("expected a page fault message");
  const pf = m.arg.pagefault;
  return `flags 0x${pf.flags.toString(16)} at page ${(pf.address - base) / PAGE_SIZE}`;
}

/**
 * Seed 000 "mm/userfaultfd: fix memory corruption due to writeprotect": copy-on-write is decided
 * by the page's reference count (anyone else holding the page, a pipe included), not by how many
 * ptes map it; and uffd-wp is a pte bit of its own, so a write-protect fault can be told apart
 * from a COW fault, and the bit survives swap-out (and fork, only with EVENT_FORK).
 */
export async function chapterCow(): Promise<Chapter> {
  const k = new Kernel({ seed: 1, swapPages: 64 });
  const rec = new ChapterRecorder(k, "000", "COW by page count, and the uffd-wp pte bit",
    "Since 5.8 Linux copies on a write fault whenever someone else may hold the page (page_count), where it used to look at the number of mappings (mapcount). A pipe holding a vmsplice()d page is such a holder. uffd-wp lives in the pte, so a write-protected pte can be told apart from one made read-only by fork, even after swap-out.");
  const p = k.spawn({ name: "parent" });
  const a = await anon(p, 2);
  const w = (proc: Process, who: string, ...pages: number[]): Watch[] => pages.map((page) => ({ proc, who, mapping: "anon", addr: a, page }));
  await p.mainThread.write(a, fill(1, 0x11));
  await p.mainThread.write(a + PAGE_SIZE, fill(1, 0x22));
  await rec.step("write 0x11 to page 0 and 0x22 to page 1", "Two fresh anonymous pages, each mapped once and exclusive.", w(p, "parent", 0, 1));
  const child = await p.fork();
  await rec.step("fork()", "Both processes map the same frames read-only: kpagecount 2, exclusive bit clear.", [...w(p, "parent", 0, 1), ...w(child, "child", 0, 1)]);
  await child.exit(0);
  await p.waitpid(child.pid);
  await rec.step("the child exits", "Mapped once again (kpagecount 1, pagemap exclusive), but the ptes stay read-only until a write fault decides.", w(p, "parent", 0, 1));
  const [rfd, wfd] = await p.pipe();
  await p.vmsplice(wfd, a, PAGE_SIZE);
  await rec.step("vmsplice() page 0 into a pipe", "The pipe takes a reference on the frame: page_count is now 2 while kpagecount (the mapcount) stays 1.", w(p, "parent", 0));
  const before = p.pagemap(a, 2).map((e) => e.pfn);
  await p.mainThread.write(a, fill(1, 0x33));
  await p.mainThread.write(a + PAGE_SIZE, fill(1, 0x44));
  const piped = (await p.read(rfd, PAGE_SIZE))[0]!;
  const after = p.pagemap(a, 2).map((e) => e.pfn);
  await rec.step("write 0x33 to page 0 and 0x44 to page 1",
    "Page 0 has another user (the pipe), so the write copies it: new pfn, and the pipe keeps the old bytes. Page 1 has none, so it is reused in place. With the old mapcount rule page 0 would have been reused and the pipe would read 0x33.",
    w(p, "parent", 0, 1),
    { "page 0 copied": before[0] !== after[0], "page 1 reused": before[1] === after[1], "pipe reads": `0x${piped.toString(16)}` });
  return chapterCowWp(rec, k, p, a);
}

/** Seed 000, second half: uffd-wp survives swap-out, and marks which read-only pte is a uffd one. */
async function chapterCowWp(rec: ChapterRecorder, k: Kernel, p: Process, a: number): Promise<Chapter> {
  const w = (proc: Process, who: string, ...pages: number[]): Watch[] => pages.map((page) => ({ proc, who, mapping: "anon", addr: a, page }));
  const uffd = await uffdOpen(p);
  await p.ioctl(uffd, UFFDIO_REGISTER, { range: { start: a, len: 2 * PAGE_SIZE }, mode: UFFDIO_REGISTER_MODE_WP });
  await p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: a + PAGE_SIZE, len: PAGE_SIZE }, mode: UFFDIO_WRITEPROTECT_MODE_WP });
  await rec.step("register both pages for WP and write-protect page 1", "Page 1 is read-only with the uffd-wp bit (pagemap bit 57); page 0 is untouched.", w(p, "parent", 0, 1));
  await p.madvise(a + PAGE_SIZE, PAGE_SIZE, MADV_PAGEOUT);
  await rec.step("MADV_PAGEOUT page 1", "Swapped out: the pte is now a swap entry, and the uffd-wp bit went with it (S1 WP1).", w(p, "parent", 1));
  const child = await p.fork();
  await rec.step("fork() again (the uffd has no EVENT_FORK)", "The child is not registered, so its copy of the swap entry drops uffd-wp; the parent keeps it. Page 0 is shared as usual.", [...w(p, "parent", 0, 1), ...w(child, "child", 0, 1)]);
  await p.mainThread.write(a, fill(1, 0x55));
  const writer = p.mainThread.write(a + PAGE_SIZE, fill(1, 0x66));
  const msg = await readFault(p, uffd, a);
  await p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: a + PAGE_SIZE, len: PAGE_SIZE }, mode: 0 });
  await writer;
  await rec.step("the parent writes page 0, then page 1",
    "Both ptes were read-only. Page 0 has no uffd-wp: an ordinary COW, no message. Page 1 has the bit: the write blocks in a wp userfault (flags WRITE|WP) until the handler unprotects it, and then copies (the child shares the frame).",
    [...w(p, "parent", 0, 1), ...w(child, "child", 0, 1)],
    { "uffd message": msg });
  await child.exit(0);
  await p.close(uffd);
  k.checkInvariants();
  return rec.chapter;
}

/**
 * Seed 001 "page_count can't be used to decide when wp_page_copy": a long-term GUP pin (as
 * io_uring takes for registered buffers) must keep the device and the process looking at the
 * same page. fork() therefore copies a maybe-pinned page for the child up front instead of
 * sharing it, and the parent keeps the pinned page writable.
 */
export async function chapterPins(): Promise<Chapter> {
  const k = new Kernel({ seed: 2 });
  const rec = new ChapterRecorder(k, "001", "GUP pins and fork",
    "A FOLL_PIN adds 1024 to the page's reference count (GUP_PIN_COUNTING_BIAS) and is not a mapping, so kpagecount does not move. Because a pinned page could be written by a device at any time, fork() gives the child its own copy right away, and never write-protects the parent's pinned page.");
  const p = k.spawn({ name: "parent" });
  const a = await anon(p, 2);
  const w = (proc: Process, who: string, ...pages: number[]): Watch[] => pages.map((page) => ({ proc, who, mapping: "anon", addr: a, page }));
  await p.mainThread.write(a, fill(1, 0x51));
  await p.mainThread.write(a + PAGE_SIZE, fill(1, 0x52));
  await rec.step("write 0x51 to page 0 and 0x52 to page 1", "Two exclusive anonymous pages.", w(p, "parent", 0, 1));
  const buf = await p.ioUringRegisterBuffers(a, PAGE_SIZE);
  await rec.step("io_uring registers page 0 as a fixed buffer (FOLL_PIN | FOLL_LONGTERM | FOLL_WRITE)", "Pinned: same pfn, kpagecount still 1 (a pin is not a mapping).", w(p, "parent", 0), { "device reads": `0x${buf.read(0, 1)[0]!.toString(16)}` });
  const child = await p.fork();
  await rec.step("fork()", "Page 0 may be pinned, so the child got a copy at fork time (another pfn) and the parent keeps its page, still exclusive and writable. Page 1 is shared copy-on-write as usual (kpagecount 2).", [...w(p, "parent", 0, 1), ...w(child, "child", 0, 1)]);
  buf.write(0, fill(1, 0x99));
  await rec.step("the device writes 0x99 into the buffer", "The write lands in the parent's page; the child's copy is independent.", [...w(p, "parent", 0), ...w(child, "child", 0)]);
  const pfnBefore = p.pagemap(a, 1)[0]!.pfn;
  await p.mainThread.write(a, fill(1, 0x77));
  await rec.step("the parent writes 0x77 to page 0", "No fault, no copy: the pte stayed writable, so the device and the process still share the page.", w(p, "parent", 0), { "same pfn": p.pagemap(a, 1)[0]!.pfn === pfnBefore, "device reads": `0x${buf.read(0, 1)[0]!.toString(16)}` });
  await buf.unregister();
  await child.exit(0);
  k.checkInvariants();
  return rec.chapter;
}

/**
 * Seed 002 "userfaultfd/shmem: fix MCOPY_ATOMIC_CONTINUE behavior": UFFDIO_CONTINUE on a
 * MAP_PRIVATE shmem mapping maps the page-cache page read-only, so a later write copies it
 * privately (no userfault) and the file never changes; CONTINUE over a present pte is EEXIST with
 * `mapped` = -EEXIST, the error path the patch made the selftest exercise.
 */
export async function chapterContinue(): Promise<Chapter> {
  const k = new Kernel({ seed: 3 });
  const rec = new ChapterRecorder(k, "002", "UFFDIO_CONTINUE on a MAP_PRIVATE shmem mapping",
    "Minor faults report a first access to a page that is already in the page cache. On a private mapping, CONTINUE must map that page read-only: the page belongs to the file, and a write has to copy it into private memory.");
  const p = k.spawn({ name: "app" });
  const fd = await p.memfdCreate("cache");
  await p.ftruncate(fd, PAGE_SIZE);
  await p.pwrite(fd, fill(PAGE_SIZE, 0xaa), 0);
  const alias = await p.mmap(0, PAGE_SIZE, RW, MAP_SHARED, fd, 0);
  await p.mainThread.read(alias, 1);
  const priv = await p.mmap(0, PAGE_SIZE, RW, MAP_PRIVATE, fd, 0);
  const uffd = await uffdOpen(p);
  await p.ioctl(uffd, UFFDIO_REGISTER, { range: { start: priv, len: PAGE_SIZE }, mode: UFFDIO_REGISTER_MODE_MINOR });
  const both: Watch[] = [{ proc: p, who: "app", mapping: "shared", addr: alias, page: 0 }, { proc: p, who: "app", mapping: "private", addr: priv, page: 0 }];
  await rec.step("a memfd page holding 0xaa, mapped MAP_SHARED (read) and MAP_PRIVATE (registered MINOR)", "The shared mapping maps the cache page (a file page: F1); the private one has nothing yet.", both);
  const reader = p.spawnThread("reader").read(priv, 1);
  const msg = await readFault(p, uffd, priv);
  const req: UffdioContinue = { range: { start: priv, len: PAGE_SIZE }, mode: 0 };
  await p.ioctl(uffd, UFFDIO_CONTINUE, req);
  const got = (await reader)[0]!;
  await rec.step("a thread reads the private mapping: a minor fault, resolved with UFFDIO_CONTINUE", "Both mappings now map the same cache page (kpagecount 2); the private pte is read-only.", both, { "uffd message": msg, "CONTINUE mapped": req.mapped ?? "-", "reader got": `0x${got.toString(16)}` });
  const again: UffdioContinue = { range: { start: priv, len: PAGE_SIZE }, mode: 0 };
  const errno = await errnoOf(p.ioctl(uffd, UFFDIO_CONTINUE, again));
  await rec.step("UFFDIO_CONTINUE once more", "The pte is present: EEXIST, reported in `mapped` as -EEXIST too.", [], { errno, mapped: again.mapped ?? "-" });
  await p.mainThread.write(priv, fill(1, 0x55));
  await p.fcntl(uffd, F_SETFL, O_NONBLOCK);
  const readErrno = await errnoOf(p.read(uffd, 32)); // EAGAIN: no message is waiting
  const file = (await p.pread(fd, 1, 0))[0]!;
  await rec.step("write 0x55 through the private mapping", "An ordinary COW into a private anonymous page (F0, new pfn), without any userfault. The cache page is mapped once again and the file is unchanged.", both, { "read(uffd) with O_NONBLOCK": readErrno, "file byte 0": `0x${file.toString(16)}` });
  await p.close(uffd);
  k.checkInvariants();
  return rec.chapter;
}

/**
 * Seed 003 "userfaultfd: UFFDIO_REMAP uABI" (with 004 "PG_anon_exclusive"): UFFDIO_MOVE only
 * moves pages marked exclusive to this process (PageAnonExclusive). fork() without MADV_DONTFORK
 * clears that mark; MOVE answers EBUSY and UFFDIO_COPY is the way out. The mark is not the pagemap
 * "exclusive" bit: it stays clear after the child exits and after a read, and only a write fault
 * that reuses the page sets it again.
 */
export async function chapterMove(): Promise<Chapter> {
  const k = new Kernel({ seed: 4 });
  const rec = new ChapterRecorder(k, "003 + 004", "UFFDIO_MOVE after fork, and PageAnonExclusive",
    "MOVE takes a page out of one place and maps it in another, so it must be sure nobody else maps the page: it insists on PageAnonExclusive (PAE). fork() shares the pages and clears PAE; the move then fails with EBUSY and the caller copies instead.");
  const p = k.spawn({ name: "app" });
  const src = await anon(p, 2);
  const dst = await anon(p, 2);
  await p.mainThread.write(src, fill(1, 0x01));
  await p.mainThread.write(src + PAGE_SIZE, fill(1, 0x02));
  const uffd = await uffdOpen(p);
  await p.ioctl(uffd, UFFDIO_REGISTER, { range: { start: dst, len: 2 * PAGE_SIZE }, mode: UFFDIO_REGISTER_MODE_MISSING });
  const w = (proc: Process, who: string): Watch[] => [0, 1].flatMap((page) => [{ proc, who, mapping: "src", addr: src, page }, { proc, who, mapping: "dst", addr: dst, page }]);
  await rec.step("two source pages written (0x01, 0x02); a destination registered MISSING", "The source pages are exclusive (PAE) and could be moved.", w(p, "app"));
  const child = await p.fork();
  await rec.step("fork() without MADV_DONTFORK on the source", "The source pages are shared with the child (kpagecount 2) and lose PAE.", w(p, "app"));
  const mv: UffdioMove = { dst, src, len: PAGE_SIZE, mode: 0 };
  const moveErrno = await errnoOf(p.ioctl(uffd, UFFDIO_MOVE, mv));
  const cp: UffdioCopy = { dst, src, len: PAGE_SIZE, mode: 0 };
  await p.ioctl(uffd, UFFDIO_COPY, cp);
  await rec.step("UFFDIO_MOVE page 0, then UFFDIO_COPY as the fallback", "MOVE refuses the shared page; COPY allocates a new page for the destination and leaves the source in place.", w(p, "app"), { "MOVE errno": moveErrno, "MOVE move": mv.move ?? "-", "COPY copy": cp.copy ?? "-" });
  await child.exit(0);
  await p.waitpid(child.pid);
  const move1 = (): Promise<string> => errnoOf(p.ioctl(uffd, UFFDIO_MOVE, { dst: dst + PAGE_SIZE, src: src + PAGE_SIZE, len: PAGE_SIZE, mode: 0 }));
  await rec.step("the child exits; MOVE page 1", "pagemap says exclusive again (it counts mappings), but PAE is still clear: MOVE is still EBUSY.", w(p, "app"), { "MOVE errno": await move1() });
  await p.mainThread.read(src + PAGE_SIZE, 1);
  await rec.step("read page 1; MOVE again", "Reading the page (it is present: nothing faults) leaves PAE clear: still EBUSY.", [], { "MOVE errno": await move1() });
  const pfn = p.pagemap(src + PAGE_SIZE, 1)[0]!.pfn;
  await p.mainThread.write(src + PAGE_SIZE, fill(1, 0x03));
  const reused = p.pagemap(src + PAGE_SIZE, 1)[0]!.pfn === pfn;
  const errno = await move1();
  await rec.step("write 0x03 to page 1; MOVE again", "The write fault finds the page mapped once and unreferenced elsewhere: it reuses it and sets PAE. MOVE now works: the destination maps the same pfn and the source pte is empty.", w(p, "app"), { "write reused the page": reused, "MOVE errno": errno, "moved pfn": String(pfn) });
  await p.close(uffd);
  k.checkInvariants();
  return rec.chapter;
}
