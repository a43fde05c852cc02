/**
 * get_user_pages and its users (mm/gup.c, fs/splice.c, io_uring/rsrc.c, mm/gup_test.c):
 * vmsplice takes page references (FOLL_GET), io_uring fixed buffers and gup_test take long-term
 * pins (FOLL_PIN), and a read-only pin unshares what the page table might later COW away from.
 *
 * The vmsplice and io_uring errnos and capacities were probed on the 6.18 reference host (raw
 * io_uring_setup/io_uring_register syscalls; liburing is not needed). The host has no
 * CONFIG_GUP_TEST, so gupTestPin's semantics come from mm/gup_test.c and mm/internal.h.
 */
import { describe, expect, it } from "vitest";
import { decodeUffdMsgs, ErrnoError, Kernel, type Process } from "@uffd/kernel";
import {
  F_SETFL,
  F_SETPIPE_SZ,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  MAP_SHARED,
  O_NONBLOCK,
  PAGE_SIZE,
  PROT_NONE,
  PROT_READ,
  PROT_WRITE,
  SPLICE_F_GIFT,
  SPLICE_F_NONBLOCK,
  UFFD_API,
  UFFD_PAGEFAULT_FLAG_WP,
  UFFD_PAGEFAULT_FLAG_WRITE,
  UFFD_USER_MODE_ONLY,
  UFFDIO_API,
  UFFDIO_COPY,
  UFFDIO_REGISTER,
  UFFDIO_REGISTER_MODE_MISSING,
  UFFDIO_REGISTER_MODE_WP,
  UFFDIO_WRITEPROTECT,
  UFFDIO_WRITEPROTECT_MODE_WP,
  MAP_NORESERVE,
} from "@uffd/kernel/uapi";
import { errnoOf } from "../helpers.ts";

const PAGE = PAGE_SIZE;
const RW = PROT_READ | PROT_WRITE;
const ANON = MAP_PRIVATE | MAP_ANONYMOUS;
const TASK_SIZE = 0x7ffffffff000;
const MAX_RW_COUNT = 0x7ffff000;


const bytes = (n: number, fill: number): Uint8Array => new Uint8Array(n).fill(fill);

async function pending(k: Kernel, p: Promise<unknown>): Promise<boolean> {
  let settled = false;
  p.then(
    () => (settled = true),
    () => (settled = true),
  );
  await k.idle();
  return !settled;
}

/** An anon private mapping of `pages` pages, each written with its index + 1. */
async function populated(p: Process, pages: number, prot = RW): Promise<number> {
  const a = await p.mmap(0, pages * PAGE, RW, ANON);
  for (let i = 0; i < pages; i++) await p.mainThread.write(a + i * PAGE, bytes(PAGE, i + 1));
  if (prot !== RW) await p.mprotect(a, pages * PAGE, prot);
  return a;
}

const pfnOf = (p: Process, addr: number): number | null => p.pagemap(addr, 1)[0]!.pfn;

async function drain(p: Process, r: number, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const chunk = await p.read(r, n - got);
    if (chunk.length === 0) break;
    out.set(chunk, got);
    got += chunk.length;
  }
  return out.subarray(0, got);
}

describe("vmsplice(2) to a pipe: page references", () => {
  it("checks flags, then the fd, then the iovec, then 'is it a pipe' (host order)", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const m = await populated(p, 1);
    const memfd = await p.memfdCreate("x");
    const [, w] = await p.pipe();
    expect(await errnoOf(p.vmsplice(w, m, PAGE, 0x10))).toBe("EINVAL");
    expect(await errnoOf(p.vmsplice(99, m, PAGE, 0x10))).toBe("EINVAL");
    expect(await errnoOf(p.vmsplice(99, m, -1))).toBe("EBADF");
    expect(await errnoOf(p.vmsplice(memfd, m, -1))).toBe("EINVAL");
    expect(await errnoOf(p.vmsplice(memfd, 0x800000000000, PAGE))).toBe("EFAULT");
    expect(await p.vmsplice(memfd, m, 0)).toBe(0);
    expect(await errnoOf(p.vmsplice(memfd, m, PAGE))).toBe("EBADF");
    expect(await p.vmsplice(w, 0x1000, 0)).toBe(0);
    expect(await p.vmsplice(w, TASK_SIZE, 0)).toBe(0);
    expect(await errnoOf(p.vmsplice(w, TASK_SIZE - PAGE, 2 * PAGE))).toBe("EFAULT");
    expect(await errnoOf(p.vmsplice(w, 0x1000, PAGE))).toBe("EFAULT");
    // All SPLICE_F_* flags are accepted (0xf), SPLICE_F_GIFT included.
    expect(await p.vmsplice(w, m, PAGE, 0xf)).toBe(PAGE);
    k.checkInvariants();
  });

  it("GUP read access: PROT_NONE and write-only vmas are EFAULT, a hole stops it short", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const [r, w] = await p.pipe2(O_NONBLOCK);
    const h = await populated(p, 3);
    await p.munmap(h + PAGE, PAGE);
    expect(await p.vmsplice(w, h, 3 * PAGE)).toBe(PAGE);
    expect((await p.read(r, 100000)).length).toBe(PAGE);
    await p.mprotect(h, PAGE, PROT_NONE);
    expect(await errnoOf(p.vmsplice(w, h, PAGE))).toBe("EFAULT");
    await p.mprotect(h, PAGE, PROT_WRITE);
    expect(await errnoOf(p.vmsplice(w, h, PAGE))).toBe("EFAULT");
    const ro = await p.mmap(0, PAGE, PROT_READ, ANON);
    expect(await p.vmsplice(w, ro, PAGE)).toBe(PAGE);
    expect(await p.read(r, PAGE)).toEqual(bytes(PAGE, 0));
    k.checkInvariants();
  });

  it("fills at most max_usage buffers; SPLICE_F_NONBLOCK is EAGAIN, O_NONBLOCK is ignored (it blocks)", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const m = await populated(p, 20);
    const [r, w] = await p.pipe();
    expect(await p.vmsplice(w, m, 20 * PAGE)).toBe(16 * PAGE);
    expect(await errnoOf(p.vmsplice(w, m, PAGE, SPLICE_F_NONBLOCK))).toBe("EAGAIN");
    await p.fcntl(w, F_SETFL, O_NONBLOCK);
    expect(await errnoOf(p.write(w, bytes(1, 1)))).toBe("EAGAIN");
    const blocked = p.vmsplice(w, m + 16 * PAGE, PAGE);
    expect(await pending(k, blocked)).toBe(true);
    const got = await drain(p, r, 16 * PAGE);
    for (let i = 0; i < 16; i++) expect(got[i * PAGE]).toBe(i + 1);
    expect(await blocked).toBe(PAGE);
    expect((await p.read(r, PAGE))[0]).toBe(17);
    k.checkInvariants();
  });

  it("an unaligned range takes one buffer per page touched; a full pipe takes only what fits", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const m = await populated(p, 5);
    const [r, w] = await p.pipe();
    expect(await p.vmsplice(w, m + 100, 2 * PAGE)).toBe(2 * PAGE);
    await expect(p.fcntl(r, F_SETPIPE_SZ, 2 * PAGE)).rejects.toMatchObject({ code: "EBUSY" });
    const got = await p.read(r, 3 * PAGE);
    expect(got.length).toBe(2 * PAGE);
    expect(got[0]).toBe(1);
    expect(got[PAGE - 100]).toBe(2);
    expect(got[2 * PAGE - 1]).toBe(3);
    expect(await p.fcntl(r, F_SETPIPE_SZ, 2 * PAGE)).toBe(2 * PAGE);
    await p.write(w, bytes(1, 0x71));
    expect(await p.vmsplice(w, m, 5 * PAGE)).toBe(PAGE);
    k.checkInvariants();
  });

  it("faults pages in 16 at a time (iov_iter_get_pages2 batches), even when only one fits", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const z = await p.mmap(0, 20 * PAGE, RW, ANON);
    const [r, w] = await p.pipe();
    await p.fcntl(r, F_SETPIPE_SZ, PAGE);
    expect(await p.vmsplice(w, z, 20 * PAGE)).toBe(PAGE);
    const pm = p.pagemap(z, 20);
    for (let i = 0; i < 16; i++) expect(pm[i], `page ${i}`).toMatchObject({ present: true, pfn: k.zeroPfn, exclusive: false });
    for (let i = 16; i < 20; i++) expect(pm[i]!.present, `page ${i}`).toBe(false);
    expect(await p.read(r, PAGE)).toEqual(bytes(PAGE, 0));
    k.checkInvariants();
  });

  it("holds a reference, not a copy: a later store to an exclusive page is what the reader gets", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const m = await populated(p, 1);
    const [r, w] = await p.pipe();
    expect(await p.vmsplice(w, m, 10, SPLICE_F_GIFT)).toBe(10);
    // The write does not merge into the user page's buffer: it takes a new one.
    expect(await p.write(w, new TextEncoder().encode("abc"))).toBe(3);
    await p.mainThread.write(m, bytes(10, 0x7a));
    expect(new TextDecoder().decode(await p.read(r, 100))).toBe("zzzzzzzzzzabc");
    k.checkInvariants();
  });

  it("a reference (FOLL_GET) is not a pin: no unshare, no mapcount, the page outlives its mapping", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const m = await populated(p, 1);
    const pfn = pfnOf(p, m)!;
    const [r, w] = await p.pipe();
    await p.vmsplice(w, m, PAGE);
    expect(pfnOf(p, m)).toBe(pfn);
    expect(k.kpagecount(pfn)).toBe(1);
    k.checkInvariants();
    // fork still shares the page: a plain reference does not make it "maybe pinned".
    const c = await p.fork();
    expect(pfnOf(c, m)).toBe(pfn);
    expect(k.kpagecount(pfn)).toBe(2);
    await c.exit(0);
    await p.munmap(m, PAGE);
    expect(k.kpagecount(pfn)).toBe(0);
    k.checkInvariants();
    expect(await p.read(r, PAGE)).toEqual(bytes(PAGE, 1));
    k.checkInvariants();
  });

  it("EPIPE without readers, with or without SPLICE_F_NONBLOCK", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const m = await populated(p, 1);
    const [r, w] = await p.pipe();
    await p.close(r);
    expect(await errnoOf(p.vmsplice(w, m, PAGE))).toBe("EPIPE");
    expect(await errnoOf(p.vmsplice(w, m, PAGE, SPLICE_F_NONBLOCK))).toBe("EPIPE");
    k.checkInvariants();
  });

  it("a userfault while faulting the page in blocks vmsplice until resolved (a kernel-mode read fault)", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const uffd = await p.userfaultfd(O_NONBLOCK);
    await p.ioctl(uffd, UFFDIO_API, { api: UFFD_API, features: 0 });
    const m = await p.mmap(0, PAGE, RW, ANON);
    await p.ioctl(uffd, UFFDIO_REGISTER, { range: { start: m, len: PAGE }, mode: UFFDIO_REGISTER_MODE_MISSING });
    const [r, w] = await p.pipe();
    const vs = p.vmsplice(w, m, PAGE);
    expect(await pending(k, vs)).toBe(true);
    const [msg] = decodeUffdMsgs(await p.read(uffd, 32));
    expect(msg).toMatchObject({ event: 0x12, arg: { pagefault: { flags: 0, address: m } } });
    await p.ioctl(uffd, UFFDIO_COPY, { dst: m, src: bytes(PAGE, 0x42), len: PAGE, mode: 0 });
    expect(await vs).toBe(PAGE);
    expect(await p.read(r, PAGE)).toEqual(bytes(PAGE, 0x42));
    k.checkInvariants();
  });

  it("with UFFD_USER_MODE_ONLY the kernel-mode fault is SIGBUS: vmsplice fails with EFAULT", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const uffd = await p.userfaultfd(O_NONBLOCK | UFFD_USER_MODE_ONLY);
    await p.ioctl(uffd, UFFDIO_API, { api: UFFD_API, features: 0 });
    const m = await p.mmap(0, PAGE, RW, ANON);
    await p.ioctl(uffd, UFFDIO_REGISTER, { range: { start: m, len: PAGE }, mode: UFFDIO_REGISTER_MODE_MISSING });
    const [, w] = await p.pipe();
    expect(await errnoOf(p.vmsplice(w, m, PAGE))).toBe("EFAULT");
    k.checkInvariants();
  });
});

describe("vmsplice(2) from a pipe's read end: copy to user memory (vmsplice_to_user)", () => {
  it("copies and consumes; SPLICE_F_NONBLOCK EAGAIN; a faulting copy consumes nothing; EOF is 0", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const m = await p.mmap(0, PAGE, RW, ANON);
    const [r, w] = await p.pipe();
    await p.write(w, new TextEncoder().encode("hello"));
    expect(await p.vmsplice(r, m, 100)).toBe(5);
    expect(new TextDecoder().decode(await p.mainThread.read(m, 5))).toBe("hello");
    expect(await errnoOf(p.vmsplice(r, m, 100, SPLICE_F_NONBLOCK))).toBe("EAGAIN");
    await p.fcntl(r, F_SETFL, O_NONBLOCK);
    const blocked = p.vmsplice(r, m, 100);
    expect(await pending(k, blocked)).toBe(true);
    await p.write(w, new TextEncoder().encode("hello"));
    expect(await blocked).toBe(5);
    await p.write(w, new TextEncoder().encode("hello"));
    expect(await errnoOf(p.vmsplice(r, 0x1000, 100))).toBe("EFAULT");
    expect(await p.vmsplice(r, m, 2)).toBe(2);
    expect(await p.vmsplice(r, m, 2)).toBe(2);
    expect(await p.vmsplice(r, m, 2)).toBe(1);
    await p.close(w);
    expect(await p.vmsplice(r, m, 100)).toBe(0);
    k.checkInvariants();
  });
});

describe("pin_user_pages: gup_test PIN_LONGTERM_TEST (mm/gup_test.c)", () => {
  it("EINVAL for unaligned or empty ranges; EFAULT where GUP cannot go; a failure leaves nothing pinned", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const m = await populated(p, 2);
    const opts = { write: false, longterm: true, fast: false };
    expect(await errnoOf(p.gupTestPin(m + 1, PAGE, opts))).toBe("EINVAL");
    expect(await errnoOf(p.gupTestPin(m, PAGE + 1, opts))).toBe("EINVAL");
    expect(await errnoOf(p.gupTestPin(m, 0, opts))).toBe("EINVAL");
    expect(await errnoOf(p.gupTestPin(0x10000, PAGE, opts))).toBe("EFAULT");
    const ro = await populated(p, 1, PROT_READ);
    expect(await errnoOf(p.gupTestPin(ro, PAGE, { ...opts, write: true }))).toBe("EFAULT");
    await p.mprotect(ro, PAGE, PROT_NONE);
    expect(await errnoOf(p.gupTestPin(ro, PAGE, opts))).toBe("EFAULT");
    await p.munmap(m + PAGE, PAGE);
    expect(await errnoOf(p.gupTestPin(m, 2 * PAGE, opts))).toBe("EFAULT");
    k.checkInvariants();
    // The first page was unpinned again: although the mm is now MMF_HAS_PINNED, fork shares it.
    const c = await p.fork();
    expect(pfnOf(c, m)).toBe(pfnOf(p, m));
    k.checkInvariants();
  });

  it("a pin is counted as a pin (GUP_PIN_COUNTING_BIAS), released by STOP and at exit", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const c = await p.fork();
    const m = await populated(c, 4);
    const pin = await c.gupTestPin(m, 4 * PAGE, { write: true, longterm: true, fast: true });
    k.checkInvariants();
    expect(pin.read(0, 1)[0]).toBe(1);
    await pin.unregister();
    await pin.unregister(); // PIN_LONGTERM_TEST_STOP without START is 0
    expect(() => pin.read(0, 1)).toThrow(expect.objectContaining({ code: "EINVAL" }));
    const pin2 = await c.gupTestPin(m, 4 * PAGE, { write: false, longterm: true, fast: false });
    k.checkInvariants();
    await c.exit(0);
    k.checkInvariants();
    expect(() => pin2.read(0, 1)).toThrow(expect.objectContaining({ code: "EINVAL" }));
  });

  it("a R/O pin of an exclusive anon page needs no unshare: the pin follows later stores", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const m = await populated(p, 1);
    const pfn = pfnOf(p, m);
    const pin = await p.gupTestPin(m, PAGE, { write: false, longterm: true, fast: false });
    expect(pfnOf(p, m)).toBe(pfn);
    await p.mainThread.write(m, bytes(PAGE, 0xff));
    expect(pin.read(0, PAGE)).toEqual(bytes(PAGE, 0xff));
    expect(() => pin.write(0, bytes(1, 1))).toThrow(expect.objectContaining({ code: "EFAULT" }));
    await pin.unregister();
    k.checkInvariants();
  });

  it("a R/O pin of a COW-shared anon page unshares it first (FAULT_FLAG_UNSHARE copies)", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const m = await populated(p, 1);
    const shared = pfnOf(p, m);
    const c = await p.fork();
    const pin = await p.gupTestPin(m, PAGE, { write: false, longterm: true, fast: false });
    const mine = pfnOf(p, m);
    expect(mine).not.toBe(shared);
    expect(pfnOf(c, m)).toBe(shared);
    expect(p.pagemap(m, 1)[0]).toMatchObject({ present: true, exclusive: true });
    await p.mainThread.write(m, bytes(PAGE, 0xff));
    expect(pfnOf(p, m)).toBe(mine);
    expect(pin.read(0, PAGE)).toEqual(bytes(PAGE, 0xff));
    expect(await c.mainThread.read(m, PAGE)).toEqual(bytes(PAGE, 1));
    k.checkInvariants();
  });

  it("a short-term R/O pin of a private file page does not unshare (the pin keeps the page cache page)", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const fd = await p.memfdCreate("f");
    await p.pwrite(fd, bytes(PAGE, 3), 0);
    const mem = await p.mmap(0, PAGE, RW, MAP_PRIVATE, fd, 0);
    const smem = await p.mmap(0, PAGE, RW, MAP_SHARED, fd, 0);
    await p.mainThread.read(mem, 1);
    const cachePfn = pfnOf(p, mem);
    const pin = await p.gupTestPin(mem, PAGE, { write: false, longterm: false, fast: false });
    expect(p.pagemap(mem, 1)[0]).toMatchObject({ present: true, file: true, pfn: cachePfn });
    await p.mainThread.write(mem, bytes(PAGE, 0xff)); // COW: mem now has an anon copy
    expect(p.pagemap(mem, 1)[0]).toMatchObject({ file: false, exclusive: true });
    await p.mainThread.write(smem, bytes(PAGE, 0x55));
    expect(pin.read(0, PAGE)).toEqual(bytes(PAGE, 0x55));
    k.checkInvariants();
  });

  it("a long-term R/O pin in a COW mapping unshares file and zero pages into exclusive anon pages", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const fd = await p.memfdCreate("f");
    await p.pwrite(fd, bytes(PAGE, 3), 0);
    const mem = await p.mmap(0, PAGE, RW, MAP_PRIVATE, fd, 0);
    await p.mainThread.read(mem, 1);
    const pin = await p.gupTestPin(mem, PAGE, { write: false, longterm: true, fast: true });
    const e = p.pagemap(mem, 1)[0]!;
    expect(e).toMatchObject({ present: true, file: false, exclusive: true });
    expect(k.kpageflags(e.pfn!).anon).toBe(true);
    expect(pin.read(0, PAGE)).toEqual(bytes(PAGE, 3));
    await p.mainThread.write(mem, bytes(PAGE, 0xff));
    expect(pfnOf(p, mem)).toBe(e.pfn);
    expect(pin.read(0, PAGE)).toEqual(bytes(PAGE, 0xff));

    const z = await p.mmap(0, PAGE, RW, ANON);
    await p.mainThread.read(z, 1);
    expect(pfnOf(p, z)).toBe(k.zeroPfn);
    const short = await p.gupTestPin(z, PAGE, { write: false, longterm: false, fast: false });
    expect(pfnOf(p, z)).toBe(k.zeroPfn); // a short-term pin takes the zero page as is
    const long = await p.gupTestPin(z, PAGE, { write: false, longterm: true, fast: false });
    expect(p.pagemap(z, 1)[0]).toMatchObject({ present: true, exclusive: true, file: false });
    expect(pfnOf(p, z)).not.toBe(k.zeroPfn);
    await p.mainThread.write(z, bytes(PAGE, 0x11));
    expect(long.read(0, PAGE)).toEqual(bytes(PAGE, 0x11));
    expect(short.read(0, PAGE)).toEqual(bytes(PAGE, 0));
    k.checkInvariants();
  });

  it("a write pin needs a writable pte: it takes the WP userfault of a uffd-wp'd page", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const uffd = await p.userfaultfd(O_NONBLOCK);
    await p.ioctl(uffd, UFFDIO_API, { api: UFFD_API, features: 0 });
    const m = await populated(p, 1);
    await p.ioctl(uffd, UFFDIO_REGISTER, { range: { start: m, len: PAGE }, mode: UFFDIO_REGISTER_MODE_WP });
    await p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: m, len: PAGE }, mode: UFFDIO_WRITEPROTECT_MODE_WP });
    const ro = await p.gupTestPin(m, PAGE, { write: false, longterm: true, fast: false });
    const pinning = p.gupTestPin(m, PAGE, { write: true, longterm: true, fast: false });
    expect(await pending(k, pinning)).toBe(true);
    const [msg] = decodeUffdMsgs(await p.read(uffd, 32));
    expect(msg).toMatchObject({ arg: { pagefault: { flags: UFFD_PAGEFAULT_FLAG_WRITE | UFFD_PAGEFAULT_FLAG_WP, address: m } } });
    await p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: m, len: PAGE }, mode: 0 });
    const rw = await pinning;
    rw.write(0, bytes(4, 0x99));
    expect(await p.mainThread.read(m, 4)).toEqual(bytes(4, 0x99));
    expect(ro.read(0, 4)).toEqual(bytes(4, 0x99));
    k.checkInvariants();
  });
});

describe("io_uring fixed buffers (io_uring/rsrc.c: FOLL_WRITE | FOLL_PIN | FOLL_LONGTERM)", () => {
  it("validates and pins as the host does", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const m = await p.mmap(0, 17 * PAGE, RW, ANON);
    const ok = async (addr: number, len: number): Promise<string> => {
      try {
        const b = await p.ioUringRegisterBuffers(addr, len);
        await b.unregister();
        return "OK";
      } catch (e) {
        if (e instanceof ErrnoError) return e.code;
        throw e;
      }
    };
    expect(await ok(m, PAGE)).toBe("OK");
    expect(await ok(m + 100, PAGE)).toBe("OK");
    expect(await ok(m, 0)).toBe("EFAULT");
    expect(await ok(0, 0)).toBe("OK"); // a sparse slot
    expect(await ok(0, PAGE)).toBe("EFAULT");
    expect(await ok(0x1000, PAGE)).toBe("EFAULT");
    expect(await ok(m, 1 << 30)).toBe("EFAULT");
    expect(await ok(m, (1 << 30) + 1)).toBe("EFAULT");
    expect(await ok(m, 17 * PAGE)).toBe("OK");
    const ro = await p.mmap(0, PAGE, PROT_READ, ANON);
    expect(await ok(ro, PAGE)).toBe("EFAULT");
    const none = await p.mmap(0, PAGE, PROT_NONE, ANON);
    expect(await ok(none, PAGE)).toBe("EFAULT");
    const fd = await p.memfdCreate("x");
    await p.ftruncate(fd, 4 * PAGE);
    expect(await ok(await p.mmap(0, 4 * PAGE, RW, MAP_SHARED, fd, 0), 4 * PAGE)).toBe("OK");
    const priv = await p.mmap(0, 4 * PAGE, RW, MAP_PRIVATE, fd, 0);
    expect(await ok(priv, 4 * PAGE)).toBe("OK");
    expect(p.pagemap(priv, 1)[0]).toMatchObject({ present: true, file: false, exclusive: true });
    expect(await ok(await p.mmap(0, 4 * PAGE, PROT_READ, MAP_SHARED, fd, 0), PAGE)).toBe("EFAULT");
    expect(await ok(await p.mmap(0, 4 * PAGE, RW, MAP_SHARED | MAP_ANONYMOUS), PAGE)).toBe("OK");
    k.checkInvariants();
  });

  it("populates writable exclusive pages; the device reads and writes the pinned frames", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const m = await p.mmap(0, 2 * PAGE, RW, ANON);
    const buf = await p.ioUringRegisterBuffers(m + 10, PAGE);
    const [a, b] = p.pagemap(m, 2);
    expect(a).toMatchObject({ present: true, exclusive: true });
    expect(b).toMatchObject({ present: true, exclusive: true });
    expect(a!.pfn).not.toBe(k.zeroPfn);
    buf.write(PAGE - 20, bytes(20, 0xab)); // crosses into the second page
    expect(await p.mainThread.read(m + PAGE - 10, 20)).toEqual(bytes(20, 0xab));
    await p.mainThread.write(m + 10, bytes(5, 0xcd));
    expect(buf.read(0, 5)).toEqual(bytes(5, 0xcd));
    for (const [off, len] of [[PAGE - 1, 2], [-1, 1], [Number.NaN, 1], [0, Infinity]] as const) {
      expect(() => buf.read(off, len)).toThrow(expect.objectContaining({ code: "EFAULT" }));
    }
    await p.munmap(m, 2 * PAGE);
    k.checkInvariants();
    expect(buf.read(0, 5)).toEqual(bytes(5, 0xcd)); // the pins keep the frames alive
    await buf.unregister();
    await expect(buf.unregister()).rejects.toMatchObject({ code: "ENXIO" });
    expect(() => buf.read(0, 1)).toThrow(expect.objectContaining({ code: "EFAULT" }));
    k.checkInvariants();
  });

  it("the registering process's exit unpins; ENOMEM when a page cannot be allocated", async () => {
    const k = new Kernel({ memoryPages: 16 });
    const p = k.spawn();
    const c = await p.fork();
    const m = await c.mmap(0, 8 * PAGE, RW, ANON);
    const buf = await c.ioUringRegisterBuffers(m, 8 * PAGE);
    k.checkInvariants();
    await c.exit(0);
    k.checkInvariants();
    expect(() => buf.read(0, 1)).toThrow(expect.objectContaining({ code: "EFAULT" }));
    // More than memory: MAP_NORESERVE, or the overcommit heuristic refuses it (mm/util.c:__vm_enough_memory()).
    const big = await p.mmap(0, 32 * PAGE, RW, ANON | MAP_NORESERVE);
    expect(await errnoOf(p.ioUringRegisterBuffers(big + 20 * PAGE, PAGE))).toBe("OK");
    // Partway through, memory runs out: the pages pinned so far are released and it is EFAULT.
    expect(await errnoOf(p.ioUringRegisterBuffers(big, 32 * PAGE))).toBe("EFAULT");
    k.checkInvariants();
    // Memory is full now (the faulted-in pages stay mapped): the very first page fails, ENOMEM.
    const more = await p.mmap(0, PAGE, RW, ANON);
    expect(await errnoOf(p.ioUringRegisterBuffers(more, PAGE))).toBe("ENOMEM");
    k.checkInvariants();
  });
});
