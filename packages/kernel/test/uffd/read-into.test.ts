/**
 * Process.readInto() and Process.readNowait(): read(2) of a userfaultfd into the caller's
 * reusable buffer, and the no-wait read (preadv2(RWF_NOWAIT)). Linux: fs/userfaultfd.c
 * userfaultfd_read_iter() (no_wait = O_NONBLOCK || IOCB_NOWAIT; EINVAL before UFFDIO_API and for
 * a buffer shorter than one uffd_msg) and userfaultfd_ctx_read(); on the 6.18 host a probe's
 * preadv2(RWF_NOWAIT) of an empty, blocking userfaultfd failed with EAGAIN, one before
 * UFFDIO_API and one of 16 bytes with EINVAL. The no-wait read reports EAGAIN as null.
 */
import { describe, expect, it } from "vitest";
import { DeadTaskError, ErrnoError, Kernel } from "@uffd/kernel";
import {
  decodeUffdMsgs,
  O_CLOEXEC,
  O_NONBLOCK,
  UFFD_API,
  UFFD_EVENT_PAGEFAULT,
  UFFD_FEATURE_EXACT_ADDRESS,
  UFFD_FEATURE_THREAD_ID,
  UFFD_PAGEFAULT_FLAG_WRITE,
  UFFDIO_API,
  UFFDIO_COPY,
  UFFDIO_COPY_MODE_DONTWAKE,
  UFFDIO_REGISTER_MODE_MISSING,
  UFFDIO_WAKE,
} from "@uffd/kernel/uapi";
import { errnoOf, fill, isBlocked, mapArea, PS, register, setup } from "./helpers.ts";

/** The errno code of a synchronous call that throws. */
function errnoOfSync(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof ErrnoError) return e.code;
    throw e;
  }
  throw new Error("expected an ErrnoError");
}

describe("readNowait(): preadv2(RWF_NOWAIT) of a userfaultfd", () => {
  it("EINVAL before UFFDIO_API and for a buffer shorter than one message; null on an empty queue of a blocking fd", async () => {
    const k = new Kernel({ seed: 1 });
    const p = k.spawn();
    const uffd = await p.userfaultfd(O_CLOEXEC);
    expect(errnoOfSync(() => p.readNowait(uffd, new Uint8Array(32)))).toBe("EINVAL");
    await p.ioctl(uffd, UFFDIO_API, { api: UFFD_API, features: 0 });
    expect(errnoOfSync(() => p.readNowait(uffd, new Uint8Array(16)))).toBe("EINVAL");
    expect(p.readNowait(uffd, new Uint8Array(32))).toBeNull();
    expect(errnoOfSync(() => p.readNowait(uffd + 1, new Uint8Array(32)))).toBe("EBADF");
    expect(errnoOfSync(() => p.readNowait(uffd, [0] as unknown as Uint8Array))).toBe("EFAULT");
  });

  it("returns the queued messages whole, as read() encodes them, over every byte of a reused buffer", async () => {
    const { k, p, uffd } = await setup(0, 0);
    const { addr } = await mapArea(p, "anon", 3);
    await register(p, uffd, addr, 3 * PS, UFFDIO_REGISTER_MODE_MISSING);
    const writers = [0, 1, 2].map((i) => p.spawnThread(`w${i}`).write(addr + i * PS + 7, Uint8Array.of(i)));
    await k.idle();
    // 80 bytes: two whole messages fit; the third stays queued.
    const buf = new Uint8Array(80).fill(0xff);
    expect(p.readNowait(uffd, buf)).toBe(64);
    const msgs = decodeUffdMsgs(buf.subarray(0, 64));
    expect(msgs.map((m) => m.event)).toEqual([UFFD_EVENT_PAGEFAULT, UFFD_EVENT_PAGEFAULT]);
    expect(msgs.map((m) => (m.event === UFFD_EVENT_PAGEFAULT ? m.arg.pagefault : null))).toEqual([
      { flags: UFFD_PAGEFAULT_FLAG_WRITE, address: addr, feat: { ptid: 0 } },
      { flags: UFFD_PAGEFAULT_FLAG_WRITE, address: addr + PS, feat: { ptid: 0 } },
    ]);
    // msg_init(): the reserved bytes and the upper halves are zero, not the 0xff left there.
    expect([...buf.subarray(1, 8)]).toEqual([0, 0, 0, 0, 0, 0, 0]);
    expect([...buf.subarray(28, 32)]).toEqual([0, 0, 0, 0]);
    expect([...buf.subarray(64)]).toEqual(new Array(16).fill(0xff));
    buf.fill(0xee);
    expect(p.readNowait(uffd, buf)).toBe(32);
    expect(decodeUffdMsgs(buf.subarray(0, 32))).toEqual([{ event: UFFD_EVENT_PAGEFAULT, arg: { pagefault: { flags: UFFD_PAGEFAULT_FLAG_WRITE, address: addr + 2 * PS, feat: { ptid: 0 } } } }]);
    expect(p.readNowait(uffd, buf)).toBeNull();
    for (let i = 0; i < 3; i++) await p.ioctl(uffd, UFFDIO_COPY, { dst: addr + i * PS, src: fill(0x40 + i), len: PS, mode: 0 });
    await Promise.all(writers);
    expect(await p.mainThread.read(addr + PS + 7, 1)).toEqual(Uint8Array.of(1));
    k.checkInvariants();
  });

  it("writes the same 32 bytes into a word-aligned buffer, an unaligned one and one over a resizable ArrayBuffer", async () => {
    // The kernel writes a message 4 bytes at a time into a word-aligned, fixed-length buffer
    // and byte by byte into any other; every field (the write flag, the exact address above
    // 2^32 with its low bits, the thread id) must come out the same either way.
    const { k, p, uffd } = await setup(UFFD_FEATURE_THREAD_ID | UFFD_FEATURE_EXACT_ADDRESS, O_NONBLOCK);
    const { addr } = await mapArea(p, "anon", 3);
    expect(addr).toBeGreaterThan(2 ** 32);
    await register(p, uffd, addr, 3 * PS, UFFDIO_REGISTER_MODE_MISSING);
    const threads = [0, 1, 2].map((i) => p.spawnThread(`w${i}`));
    const writers = threads.map((t, i) => t.write(addr + i * PS + 0x123 + i, Uint8Array.of(i)));
    await k.idle();
    const aligned = new Uint8Array(32).fill(0xff);
    const unaligned = new Uint8Array(33).fill(0xff).subarray(1);
    // ArrayBuffer(length, { maxByteLength }) (ES2024) is newer than the TypeScript lib in use.
    const Resizable = ArrayBuffer as unknown as new (length: number, options: { maxByteLength: number }) => ArrayBuffer;
    const resizable = new Uint8Array(new Resizable(32, { maxByteLength: 64 })).fill(0xff);
    const got: number[][] = [];
    for (const buf of [aligned, unaligned, resizable]) {
      expect(p.readNowait(uffd, buf)).toBe(32);
      got.push([...buf]);
    }
    const expected = threads.map((t, i) => {
      const a = addr + i * PS + 0x123 + i;
      const lo = a % 2 ** 32;
      const hi = Math.floor(a / 2 ** 32);
      const le = (v: number): number[] => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
      return [UFFD_EVENT_PAGEFAULT, 0, 0, 0, 0, 0, 0, 0, ...le(UFFD_PAGEFAULT_FLAG_WRITE), 0, 0, 0, 0, ...le(lo), ...le(hi), ...le(t.tid), 0, 0, 0, 0];
    });
    expect(got).toEqual(expected);
    for (let i = 0; i < 3; i++) await p.ioctl(uffd, UFFDIO_COPY, { dst: addr + i * PS, src: fill(0x40 + i), len: PS, mode: 0 });
    await Promise.all(writers);
    k.checkInvariants();
  });

  it("is EOPNOTSUPP on a file that does not implement it (a pipe)", async () => {
    const k = new Kernel({ seed: 1 });
    const p = k.spawn();
    const [r] = await p.pipe2(0);
    expect(errnoOfSync(() => p.readNowait(r!, new Uint8Array(32)))).toBe("EOPNOTSUPP");
  });
});

describe("readInto(): read(2) into the caller's buffer", () => {
  it("sleeps until a fault is queued, then resolves to the bytes written into the buffer", async () => {
    const { k, p, uffd } = await setup(0, 0);
    const { addr } = await mapArea(p, "anon", 1);
    await register(p, uffd, addr, PS, UFFDIO_REGISTER_MODE_MISSING);
    const buf = new Uint8Array(64);
    const read = p.readInto(uffd, buf);
    expect(await isBlocked(k, read)).toBe(true);
    const t = p.spawnThread("t");
    const access = t.read(addr, 1);
    expect(await read).toBe(32);
    expect(decodeUffdMsgs(buf.subarray(0, 32))).toEqual([{ event: UFFD_EVENT_PAGEFAULT, arg: { pagefault: { flags: 0, address: addr, feat: { ptid: 0 } } } }]);
    await p.ioctl(uffd, UFFDIO_COPY, { dst: addr, src: fill(9), len: PS, mode: 0 });
    expect(await access).toEqual(Uint8Array.of(9));
    k.checkInvariants();
  });

  it("EAGAIN on an empty O_NONBLOCK fd; EINVAL for a short buffer; a pipe is read through read()", async () => {
    const { p, uffd } = await setup(0, O_NONBLOCK);
    expect(await errnoOf(p.readInto(uffd, new Uint8Array(64)))).toBe("EAGAIN");
    expect(await errnoOf(p.readInto(uffd, new Uint8Array(31)))).toBe("EINVAL");
    const [r, w] = await p.pipe2(0);
    await p.write(w!, Uint8Array.of(1, 2, 3));
    const buf = new Uint8Array(8).fill(0xff);
    expect(await p.readInto(r!, buf)).toBe(3);
    expect([...buf.subarray(0, 4)]).toEqual([1, 2, 3, 0xff]);
  });

  it("a blocked read holds the file across close() and ends with the reader's process", async () => {
    const { k, p, uffd } = await setup(0, 0);
    const read = p.readInto(uffd, new Uint8Array(32)).catch((e: unknown) => e);
    expect(await isBlocked(k, read)).toBe(true);
    await p.close(uffd);
    expect(await isBlocked(k, read)).toBe(true);
    await p.exit(0);
    expect(await read).toBeInstanceOf(DeadTaskError);
    k.checkInvariants();
  });

  it("blocked reads one after another (the context reuses a settled read's record): each fills its own buffer, a dead reader's end leaves the next alone", async () => {
    const { k, p, uffd } = await setup(0, 0);
    const { addr } = await mapArea(p, "anon", 3);
    await register(p, uffd, addr, 3 * PS, UFFDIO_REGISTER_MODE_MISSING);
    const msgPage = (b: Uint8Array): number => {
      const m = decodeUffdMsgs(b.subarray(0, 32))[0]!;
      return m.event === UFFD_EVENT_PAGEFAULT ? (m.arg.pagefault.address - addr) / PS : -1;
    };
    const b1 = new Uint8Array(64);
    const r1 = p.readInto(uffd, b1);
    expect(await isBlocked(k, r1)).toBe(true);
    const w0 = p.spawnThread("w0").write(addr, Uint8Array.of(1));
    expect(await r1).toBe(32);
    const b2 = new Uint8Array(32);
    const r2 = p.readInto(uffd, b2);
    expect(await isBlocked(k, r2)).toBe(true);
    const w1 = p.spawnThread("w1").write(addr + PS, Uint8Array.of(2));
    expect(await r2).toBe(32);
    expect([msgPage(b1), msgPage(b2)]).toEqual([0, 1]);
    // A reader in a child (the fd is shared) dies asleep; the parent's next read is unaffected.
    const child = await p.fork();
    const r3 = child.readInto(uffd, new Uint8Array(32)).catch((e: unknown) => e);
    expect(await isBlocked(k, r3)).toBe(true);
    await child.exit(0);
    expect(await r3).toBeInstanceOf(DeadTaskError);
    const b4 = new Uint8Array(96);
    const r4 = p.readInto(uffd, b4);
    expect(await isBlocked(k, r4)).toBe(true);
    const w2 = p.spawnThread("w2").read(addr + 2 * PS, 1);
    expect(await r4).toBe(32);
    expect([msgPage(b1), msgPage(b2), msgPage(b4)]).toEqual([0, 1, 2]);
    await p.ioctl(uffd, UFFDIO_COPY, { dst: addr, src: fill(7, 3 * PS), len: 3 * PS, mode: 0 });
    await Promise.all([w0, w1, w2]);
    k.checkInvariants();
  });

  it("two blocked readers: the first woken takes the message, the other sleeps on", async () => {
    const { k, p, uffd } = await setup(0, 0);
    const { addr } = await mapArea(p, "anon", 2);
    await register(p, uffd, addr, 2 * PS, UFFDIO_REGISTER_MODE_MISSING);
    const a = new Uint8Array(32);
    const b = new Uint8Array(32);
    const ra = p.readInto(uffd, a);
    const rb = p.readInto(uffd, b);
    const done: string[] = [];
    void ra.then(() => done.push("a"));
    void rb.then(() => done.push("b"));
    await k.idle();
    const w0 = p.spawnThread("w0").write(addr, Uint8Array.of(1));
    await k.idle();
    expect(done.length).toBe(1);
    const other = done[0] === "a" ? rb : ra;
    const w1 = p.spawnThread("w1").write(addr + PS, Uint8Array.of(2));
    expect(await other).toBe(32);
    const addrs = [a, b].map((x) => decodeUffdMsgs(x)[0]!).map((m) => (m.event === UFFD_EVENT_PAGEFAULT ? m.arg.pagefault.address : -1));
    expect(addrs.sort((x, y) => x - y)).toEqual([addr, addr + PS]);
    await p.ioctl(uffd, UFFDIO_COPY, { dst: addr, src: fill(0, 2 * PS), len: 2 * PS, mode: 0 });
    await Promise.all([w0, w1]);
    k.checkInvariants();
  });
});

describe("the wait queues of many blocked faults", () => {
  it("waking one page of 100 queued faults wakes exactly the faults on it, read or not", { timeout: 30_000 }, async () => {
    const { k, p, uffd } = await setup(0, O_NONBLOCK);
    const pages = 96;
    const { addr } = await mapArea(p, "anon", pages);
    await register(p, uffd, addr, pages * PS, UFFDIO_REGISTER_MODE_MISSING);
    const access = Array.from({ length: pages }, (_, i) => p.spawnThread(`t${i}`).read(addr + i * PS, 1));
    // Four more on page 40: 100 blocked faults, 5 of them on one page.
    const dups = Array.from({ length: 4 }, (_, i) => p.spawnThread(`d${i}`).read(addr + 40 * PS + 8 * i, 1));
    await k.idle();
    // Read half of the messages, so the page's faults sit in both queues; fill the page without
    // waking, then wake it alone.
    expect(p.readNowait(uffd, new Uint8Array(50 * 32))).toBe(50 * 32);
    await p.ioctl(uffd, UFFDIO_COPY, { dst: addr + 40 * PS, src: fill(7), len: PS, mode: UFFDIO_COPY_MODE_DONTWAKE });
    expect(await isBlocked(k, access[40]!)).toBe(true);
    await p.ioctl(uffd, UFFDIO_WAKE, { start: addr + 40 * PS, len: PS });
    expect(await Promise.all([access[40]!, ...dups])).toEqual(new Array(5).fill(Uint8Array.of(7)));
    const others = access.filter((_, i) => i !== 40);
    expect(await isBlocked(k, Promise.race(others))).toBe(true);
    await p.ioctl(uffd, UFFDIO_COPY, { dst: addr, src: fill(3, 40 * PS), len: 40 * PS, mode: 0 });
    await p.ioctl(uffd, UFFDIO_COPY, { dst: addr + 41 * PS, src: fill(3, (pages - 41) * PS), len: (pages - 41) * PS, mode: 0 });
    expect(await Promise.all(others)).toEqual(new Array(pages - 1).fill(Uint8Array.of(3)));
    k.checkInvariants();
  });
});
