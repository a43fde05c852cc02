/**
 * Pipes (fs/pipe.c): pipe2 flags, capacity in buffers, F_SETPIPE_SZ/F_GETPIPE_SZ, blocking and
 * non-blocking read/write, EOF/EPIPE, poll bits, packet mode, and the frame references pipe
 * buffers hold (checked by checkInvariants()).
 *
 * Every errno and value asserted here was observed on the 6.18 reference host with a C probe
 * (pipe2/fcntl/read/write/poll on real pipes); the host's root lacks CAP_SYS_RESOURCE, so its
 * pipe-max-size EPERM is reproduced here with an unprivileged process.
 */
import { describe, expect, it } from "vitest";
import { ErrnoError, Kernel, type Process } from "@uffd/kernel";
import {
  F_GETFD,
  F_GETFL,
  F_GETPIPE_SZ,
  F_SETFL,
  F_SETPIPE_SZ,
  FD_CLOEXEC,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  O_CLOEXEC,
  O_NONBLOCK,
  PAGE_SIZE,
  POLLERR,
  POLLHUP,
  POLLIN,
  POLLOUT,
  PROT_READ,
  PROT_WRITE,
} from "@uffd/kernel/uapi";
import { errnoOf } from "../helpers.ts";

const PAGE = PAGE_SIZE;
const O_DIRECT = 0o40000;
const O_NOTIFICATION_PIPE = 0o200;
const O_APPEND = 0o2000;
const POLLRDNORM = 0x40;
const POLLWRNORM = 0x100;
const ALL_POLL = POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM;


function bytes(n: number, fill: number): Uint8Array {
  return new Uint8Array(n).fill(fill);
}

/** Whether a promise is still pending once the kernel has nothing left to run. */
async function pending(k: Kernel, p: Promise<unknown>): Promise<boolean> {
  let settled = false;
  p.then(
    () => (settled = true),
    () => (settled = true),
  );
  await k.idle();
  return !settled;
}

async function pollOnce(p: Process, fds: number[]): Promise<number[]> {
  const set = fds.map((fd) => ({ fd, events: ALL_POLL, revents: 0 }));
  await p.poll(set, 0);
  return set.map((s) => s.revents);
}

describe("pipe2()", () => {
  it("accepts O_CLOEXEC|O_NONBLOCK|O_DIRECT only: the read end is O_RDONLY, the write end O_WRONLY plus O_DIRECT", async () => {
    const k = new Kernel();
    const p = k.spawn();
    for (const bad of [0o2, 0o1, O_APPEND, 0x80000000]) expect(await errnoOf(p.pipe2(bad))).toBe("EINVAL");
    // CONFIG_WATCH_QUEUE is not set on the reference host: watch_queue_init() says ENOPKG.
    expect(await errnoOf(p.pipe2(O_NOTIFICATION_PIPE))).toBe("ENOPKG");
    const [r, w] = await p.pipe2(O_CLOEXEC | O_NONBLOCK | O_DIRECT);
    expect([r, w]).toEqual([0, 1]);
    expect(await p.fcntl(r, F_GETFL)).toBe(O_NONBLOCK);
    expect(await p.fcntl(w, F_GETFL)).toBe(O_NONBLOCK | O_DIRECT | 1);
    expect(await p.fcntl(r, F_GETFD)).toBe(FD_CLOEXEC);
    const [r2, w2] = await p.pipe();
    expect(await p.fcntl(r2, F_GETFL)).toBe(0);
    expect(await p.fcntl(w2, F_GETFL)).toBe(1);
    expect(await p.fcntl(w2, F_GETFD)).toBe(0);
    k.checkInvariants();
  });

  it("a failed pipe2 installs nothing", async () => {
    const k = new Kernel();
    const p = k.spawn();
    await expect(p.pipe2(0o2)).rejects.toMatchObject({ code: "EINVAL", syscall: "pipe2" });
    expect(await p.pipe()).toEqual([0, 1]);
  });
});

describe("F_SETPIPE_SZ / F_GETPIPE_SZ (fs/pipe.c:pipe_set_size, round_pipe_size)", () => {
  it("rounds up to a power-of-two number of pages, truncates the argument to unsigned int", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const [r, w] = await p.pipe();
    expect(await p.fcntl(r, F_GETPIPE_SZ)).toBe(65536);
    expect(await p.fcntl(w, F_GETPIPE_SZ)).toBe(65536);
    const table: Array<[number, number | string]> = [
      [0, 4096],
      [1, 4096],
      [4097, 8192],
      [12288, 16384],
      [1048576, 1048576],
      [-1, "EINVAL"],
      [0x80000001, "EINVAL"],
      [0x100001000, 4096],
    ];
    for (const [arg, want] of table) {
      const got = typeof want === "number" ? await p.fcntl(r, F_SETPIPE_SZ, arg) : await errnoOf(p.fcntl(r, F_SETPIPE_SZ, arg));
      expect(got, `F_SETPIPE_SZ ${arg}`).toBe(want);
    }
    expect(await p.fcntl(w, F_GETPIPE_SZ)).toBe(4096);
    k.checkInvariants();
  });

  it("growing past pipe-max-size (1 MiB) needs CAP_SYS_RESOURCE; shrinking never does", async () => {
    const k = new Kernel();
    const user = k.spawn({ uid: 65534 });
    const [r] = await user.pipe();
    await expect(user.fcntl(r, F_SETPIPE_SZ, 1048577)).rejects.toMatchObject({ code: "EPERM" });
    expect(await user.fcntl(r, F_GETPIPE_SZ)).toBe(65536);
    expect(await user.fcntl(r, F_SETPIPE_SZ, 1048576)).toBe(1048576);
    expect(await user.fcntl(r, F_SETPIPE_SZ, 4096)).toBe(4096);
    const admin = k.spawn({ uid: 65534, capabilities: ["CAP_SYS_RESOURCE"] });
    const [r2] = await admin.pipe();
    expect(await admin.fcntl(r2, F_SETPIPE_SZ, 1048577)).toBe(2097152);
    const root = k.spawn();
    const [r3] = await root.pipe();
    expect(await root.fcntl(r3, F_SETPIPE_SZ, 1048577)).toBe(2097152);
  });

  it("EBUSY below the buffers in use; small writes merge into one buffer", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const [r, w] = await p.pipe();
    expect(await p.write(w, bytes(3 * PAGE, 0x61))).toBe(3 * PAGE);
    await expect(p.fcntl(r, F_SETPIPE_SZ, 4096)).rejects.toMatchObject({ code: "EBUSY" });
    await expect(p.fcntl(r, F_SETPIPE_SZ, 8192)).rejects.toMatchObject({ code: "EBUSY" });
    expect(await p.fcntl(r, F_GETPIPE_SZ)).toBe(65536);
    expect(await p.fcntl(r, F_SETPIPE_SZ, 16384)).toBe(16384);
    const [r2, w2] = await p.pipe();
    for (let i = 0; i < 20; i++) await p.write(w2, new Uint8Array([0x78]));
    expect(await p.fcntl(r2, F_SETPIPE_SZ, 4096)).toBe(4096);
    k.checkInvariants();
  });

  it("is EBADF on anything but a pipe", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const fd = await p.memfdCreate("x");
    await expect(p.fcntl(fd, F_GETPIPE_SZ)).rejects.toMatchObject({ code: "EBADF" });
    await expect(p.fcntl(fd, F_SETPIPE_SZ, 4096)).rejects.toMatchObject({ code: "EBADF" });
  });
});

describe("read and write", () => {
  it("non-blocking: EAGAIN when empty or full, short writes, merging, 0-byte read", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const [r, w] = await p.pipe();
    for (let i = 0; i < 20; i++) await p.write(w, new Uint8Array([0x78]));
    expect(await p.fcntl(r, F_SETPIPE_SZ, 4096)).toBe(4096);
    await p.fcntl(w, F_SETFL, O_NONBLOCK);
    expect(await p.fcntl(w, F_GETFL)).toBe(O_NONBLOCK | 1);
    // The only slot is taken: a page-sized write has nowhere to go, a byte still merges.
    expect(await errnoOf(p.write(w, bytes(PAGE, 0x61)))).toBe("EAGAIN");
    expect(await p.write(w, bytes(1, 0x61))).toBe(1);
    expect((await p.read(r, 5)).length).toBe(5);
    expect((await p.read(r, 10000)).length).toBe(16);
    await p.fcntl(r, F_SETFL, O_NONBLOCK);
    expect(await errnoOf(p.read(r, 10000))).toBe("EAGAIN");
    expect(await p.write(w, bytes(2 * PAGE, 0x62))).toBe(PAGE);
    expect((await p.read(r, 0)).length).toBe(0);
    k.checkInvariants();
  });

  it("a 16-buffer pipe takes 64 KiB; reads return what is there, in order", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const [r, w] = await p.pipe2(O_NONBLOCK);
    const data = new Uint8Array(17 * PAGE);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
    expect(await p.write(w, data)).toBe(16 * PAGE);
    const got = await p.read(r, 100000);
    expect(got.length).toBe(16 * PAGE);
    expect(Buffer.from(got).equals(Buffer.from(data.subarray(0, 16 * PAGE)))).toBe(true);
    k.checkInvariants();
  });

  it("EOF once every writer is gone; EPIPE once every reader is gone; wrong end is EBADF", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const [r, w] = await p.pipe();
    expect(await errnoOf(p.write(r, bytes(1, 1)))).toBe("EBADF");
    expect(await errnoOf(p.read(w, 1))).toBe("EBADF");
    await p.write(w, new Uint8Array([1]));
    await p.close(w);
    expect(await p.read(r, 10)).toEqual(new Uint8Array([1]));
    expect((await p.read(r, 10)).length).toBe(0);
    const [r2, w2] = await p.pipe();
    await p.close(r2);
    await expect(p.write(w2, bytes(1, 1))).rejects.toMatchObject({ code: "EPIPE", syscall: "write" });
    k.checkInvariants();
  });

  it("write(2) from user memory copies the bytes at write time", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const a = await p.mmap(0, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
    await p.mainThread.write(a, new Uint8Array([1, 2, 3]));
    const [r, w] = await p.pipe();
    expect(await p.write(w, { addr: a, length: 3 })).toBe(3);
    await p.mainThread.write(a, new Uint8Array([9, 9, 9]));
    expect(await p.read(r, 3)).toEqual(new Uint8Array([1, 2, 3]));
    await expect(p.write(w, { addr: 0x10000, length: 3 })).rejects.toMatchObject({ code: "EFAULT" });
    k.checkInvariants();
  });

  it("a blocked reader wakes on a write, or with EOF when the last writer closes", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const [r, w] = await p.pipe();
    const rd = p.read(r, 100);
    expect(await pending(k, rd)).toBe(true);
    await p.write(w, new Uint8Array([5, 6]));
    expect(await rd).toEqual(new Uint8Array([5, 6]));
    const rd2 = p.read(r, 100);
    expect(await pending(k, rd2)).toBe(true);
    const child = await p.fork();
    await p.close(w);
    // The child still holds the write end (fork shares the open file): no EOF yet.
    expect(await pending(k, rd2)).toBe(true);
    await child.exit(0);
    expect((await rd2).length).toBe(0);
    k.checkInvariants();
  });

  it("a blocked writer wakes when a reader makes room, and finishes the whole write", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const [r, w] = await p.pipe();
    await p.fcntl(r, F_SETPIPE_SZ, PAGE);
    const wr = p.write(w, bytes(3 * PAGE, 0x33));
    expect(await pending(k, wr)).toBe(true);
    let got = 0;
    while (got < 3 * PAGE) got += (await p.read(r, 100000)).length;
    expect(await wr).toBe(3 * PAGE);
    k.checkInvariants();
  });

  it("a process killed while blocked in read leaves the pipe usable", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const [r, w] = await p.pipe();
    const child = await p.fork();
    const rd = child.read(r, 10);
    expect(await pending(k, rd)).toBe(true);
    await p.kill(child.pid, 9);
    await expect(rd).rejects.toThrow();
    await p.write(w, new Uint8Array([4]));
    expect(await p.read(r, 10)).toEqual(new Uint8Array([4]));
    k.checkInvariants();
  });
});

describe("poll (fs/pipe.c:pipe_poll)", () => {
  it("reports POLLIN|POLLRDNORM, POLLOUT|POLLWRNORM, POLLHUP and POLLERR as the host does", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const [r, w] = await p.pipe2(O_NONBLOCK);
    expect(await pollOnce(p, [r, w])).toEqual([0, 0x104]);
    await p.write(w, new Uint8Array([1]));
    expect(await pollOnce(p, [r, w])).toEqual([0x41, 0x104]);
    while ((await errnoOf(p.write(w, bytes(PAGE, 2)))) === "OK");
    expect(await pollOnce(p, [r, w])).toEqual([0x41, 0]);
    await p.close(r);
    expect(await pollOnce(p, [w])).toEqual([POLLERR]);
    await p.close(w);
    const [r2, w2] = await p.pipe();
    await p.write(w2, new Uint8Array([1]));
    await p.close(w2);
    expect(await pollOnce(p, [r2])).toEqual([0x41 | POLLHUP]);
    await p.read(r2, 10);
    expect(await pollOnce(p, [r2])).toEqual([POLLHUP]);
    k.checkInvariants();
  });

  it("poll(-1) sleeps until the pipe becomes readable", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const [r, w] = await p.pipe();
    const set = [{ fd: r, events: POLLIN, revents: 0 }];
    const pl = p.poll(set, -1);
    expect(await pending(k, pl)).toBe(true);
    await p.write(w, new Uint8Array([1]));
    expect(await pl).toBe(1);
    expect(set[0]!.revents).toBe(POLLIN);
  });
});

describe("packet mode (O_DIRECT)", () => {
  it("each write is a packet; a read takes at most one packet and drops its unread rest", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const [r, w] = await p.pipe2(O_DIRECT);
    await p.write(w, new TextEncoder().encode("hello"));
    await p.write(w, new TextEncoder().encode("world"));
    expect(new TextDecoder().decode(await p.read(r, 3))).toBe("hel");
    expect(new TextDecoder().decode(await p.read(r, 100))).toBe("world");
    expect(await p.write(w, bytes(2 * PAGE + 10, 1))).toBe(2 * PAGE + 10);
    expect((await p.read(r, 10000)).length).toBe(PAGE);
    expect((await p.read(r, 10000)).length).toBe(PAGE);
    expect((await p.read(r, 10000)).length).toBe(10);
    k.checkInvariants();
  });
});

describe("frame references", () => {
  it("buffered data holds frames until read or until both ends close", async () => {
    const k = new Kernel({ memoryPages: 64 });
    const p = k.spawn();
    const [r, w] = await p.pipe();
    await p.write(w, bytes(8 * PAGE, 7));
    k.checkInvariants();
    await p.read(r, 4 * PAGE);
    k.checkInvariants();
    await p.close(r);
    k.checkInvariants();
    await p.close(w);
    k.checkInvariants();
    // All frames came back: a pipe can again buffer (nearly) all of memory.
    const [r2, w2] = await p.pipe();
    await p.fcntl(r2, F_SETPIPE_SZ, 64 * PAGE);
    await p.fcntl(w2, F_SETFL, O_NONBLOCK);
    expect(await p.write(w2, bytes(60 * PAGE, 1))).toBe(60 * PAGE);
    k.checkInvariants();
  });

  it("write is ENOMEM when no frame is left and nothing was written", async () => {
    const k = new Kernel({ memoryPages: 8 });
    const p = k.spawn();
    const [r, w] = await p.pipe2(O_NONBLOCK);
    const n = await p.write(w, bytes(16 * PAGE, 1));
    expect(n).toBeLessThan(16 * PAGE);
    expect(n % PAGE).toBe(0);
    await expect(p.write(w, bytes(PAGE, 1))).rejects.toMatchObject({ code: "ENOMEM" });
    expect((await p.read(r, 100 * PAGE)).length).toBe(n);
    k.checkInvariants();
  });
});
