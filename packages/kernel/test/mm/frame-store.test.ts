/**
 * The compact frame store (KernelOptions.frameStore "compact"): frames that are all zero or equal
 * to a registered generator's output hold no bytes, and every path that writes a frame gives it
 * its bytes first. Each scenario runs on a flat and a compact kernel: the bytes every read
 * returns, pagemap and kpageflags must be identical (the store is invisible to Linux-defined
 * behaviour), and the compact kernel's storeStats() must show how each frame is held. Every
 * scenario ends with checkInvariants(), which checks the store's slots and counters too.
 */
import { Kernel, type FrameGenerator, type FrameStoreStats, type Process } from "@uffd/kernel";
import {
  MADV_DONTNEED,
  MADV_PAGEOUT,
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_PRIVATE,
  MAP_SHARED,
  O_NONBLOCK,
  PAGE_SIZE,
  PROT_READ,
  PROT_WRITE,
  UFFD_API,
  UFFDIO_API,
  UFFDIO_COPY,
  UFFDIO_MOVE,
  UFFDIO_REGISTER,
  UFFDIO_REGISTER_MODE_MISSING,
} from "@uffd/kernel/uapi";
import { describe, expect, it } from "vitest";

const PS = PAGE_SIZE;
const RW = PROT_READ | PROT_WRITE;
const ANON = MAP_PRIVATE | MAP_ANONYMOUS;
const MAGIC = 0x6765_6e21;

/** The test's page contents: a header [MAGIC, a, b] and a pattern of (a, b) over the rest. */
const testGenerator: FrameGenerator = {
  fill(out, a, b) {
    out[0] = MAGIC;
    out[1] = a;
    out[2] = b;
    for (let i = 3; i < out.length; i++) out[i] = (Math.imul(a + i, 0x9e37_79b1) ^ Math.imul(b, 0x85eb_ca77)) >>> 0;
  },
  identify(page, args) {
    if (page[0] !== MAGIC) return false;
    args[0] = page[1]!;
    args[1] = page[2]!;
    args[2] = 0;
    return true;
  },
};

/** The generator's page for (a, b), as bytes. */
function gen(a: number, b: number): Uint8Array {
  const words = new Uint32Array(PS / 4);
  testGenerator.fill(words, a, b, 0);
  return new Uint8Array(words.buffer);
}

/** Random-looking bytes no generator produces. */
function noise(seed: number): Uint8Array {
  const b = new Uint8Array(PS);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < PS; i++) {
    x = (Math.imul(x, 1_103_515_245) + 12_345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

function kernel(store: "flat" | "compact", swap = false): Kernel {
  const k = new Kernel({ seed: 7, frameStore: store, ...(swap ? { swapPages: 64 } : {}) });
  k.registerFrameGenerator(testGenerator);
  return k;
}

/** What a scenario observed: bytes read, pagemap entries, kpageflags of mapped frames. */
interface Seen {
  log: unknown[];
  stats: FrameStoreStats;
}

/**
 * Runs `scenario` on a flat and a compact kernel, checks the invariants after it on both, and
 * checks that both observed the same; returns the compact kernel's observations and stats.
 */
async function twin(scenario: (k: Kernel, p: Process, see: (what: unknown) => void) => Promise<void>, swap = false): Promise<Seen> {
  const out: Seen[] = [];
  for (const store of ["flat", "compact"] as const) {
    const k = kernel(store, swap);
    const p = k.spawn({ name: "t" });
    const log: unknown[] = [];
    await scenario(k, p, (what) => log.push(what instanceof Uint8Array ? Buffer.from(what).toString("hex") : what));
    k.checkInvariants();
    out.push({ log, stats: k.frameStoreStats() });
  }
  expect(out[1]!.log).toEqual(out[0]!.log);
  expect(out[0]!.stats).toMatchObject({ zeroFrames: 0, generatedFrames: 0, slotFrames: 0 });
  return out[1]!;
}

/** pagemap and kpageflags of the page at addr (the flags that tell how Linux holds it). */
function frameState(k: Kernel, p: Process, addr: number): unknown {
  const e = p.pagemap(addr, 1)[0]!;
  if (e.pfn === null) return { present: e.present, swapped: e.swapped };
  const f = k.kpageflags(e.pfn);
  return { present: e.present, swapped: e.swapped, exclusive: e.exclusive, flags: f };
}

const read = (p: Process, addr: number, len = PS): Promise<Uint8Array> => p.spawnThread().read(addr, len);
const write = (p: Process, addr: number, data: Uint8Array): Promise<void> => p.spawnThread().write(addr, data);

describe("compact frame store: user writes", () => {
  it("a page written with zeros holds no bytes; pagemap and kpageflags are the flat store's", async () => {
    const s = await twin(async (k, p, see) => {
      const a = await p.mmap(0, 2 * PS, RW, ANON);
      await write(p, a, new Uint8Array(PS));
      await write(p, a + PS + 100, new Uint8Array(8));
      see(await read(p, a, 2 * PS));
      see(frameState(k, p, a));
      see(frameState(k, p, a + PS));
    });
    expect(s.stats).toMatchObject({ zeroFrames: 2, generatedFrames: 0, slotFrames: 0 });
  });

  it("a page written with a generator's bytes is held as its arguments; reads return every byte", async () => {
    const s = await twin(async (k, p, see) => {
      const a = await p.mmap(0, 3 * PS, RW, ANON);
      await write(p, a, gen(1, 2));
      await write(p, a + PS, gen(3, 4));
      await write(p, a + 2 * PS, noise(5));
      see(await read(p, a, 3 * PS));
      see(await read(p, a + PS + 4000, 96)); // a partial read of a generated frame
      see(frameState(k, p, a));
    });
    expect(s.stats).toMatchObject({ zeroFrames: 0, generatedFrames: 2, slotFrames: 1 });
  });

  it("a partial write gives a generated frame its bytes; writing the original bytes back compacts it again", async () => {
    const s = await twin(async (_k, p, see) => {
      const a = await p.mmap(0, PS, RW, ANON);
      await write(p, a, gen(9, 9));
      await write(p, a + 1000, Uint8Array.of(0xab, 0xcd));
      see(await read(p, a));
    });
    expect(s.stats).toMatchObject({ generatedFrames: 0, slotFrames: 1 });
    const back = await twin(async (_k, p, see) => {
      const a = await p.mmap(0, PS, RW, ANON);
      await write(p, a, gen(9, 9));
      await write(p, a + 1000, Uint8Array.of(0xab, 0xcd));
      await write(p, a + 1000, gen(9, 9).subarray(1000, 1002));
      see(await read(p, a));
    });
    expect(back.stats).toMatchObject({ generatedFrames: 1, slotFrames: 0 });
  });

  it("rewriting a header to another version changes which arguments the frame holds", async () => {
    const s = await twin(async (_k, p, see) => {
      const a = await p.mmap(0, PS, RW, ANON);
      await write(p, a, gen(1, 1));
      // (1, 2) differs from (1, 1) everywhere the pattern depends on b: write it in two steps.
      await write(p, a + 12, gen(1, 2).subarray(12));
      see(await read(p, a));
      await write(p, a + 8, gen(1, 2).subarray(8, 12));
      see(await read(p, a));
    });
    expect(s.log[1]).toBe(Buffer.from(gen(1, 2)).toString("hex"));
    expect(s.stats).toMatchObject({ generatedFrames: 1, slotFrames: 0 });
  });

  it("a slot handed back and reused by another frame's partial write holds none of its old bytes", async () => {
    const s = await twin(async (_k, p, see) => {
      const a = await p.mmap(0, 3 * PS, RW, ANON);
      await write(p, a, noise(1));
      await write(p, a + PS, gen(1, 1));
      await write(p, a + PS + 50, Uint8Array.of(7)); // page 1 takes a slot with its generated bytes
      await p.madvise(a, 2 * PS, MADV_DONTNEED); // both slots go back to the pool
      await write(p, a + 2 * PS + 10, Uint8Array.of(1, 2, 3)); // a zero frame's partial write
      await write(p, a + 20, Uint8Array.of(4)); // and another, on a new frame
      see(await read(p, a, 3 * PS));
    });
    expect(s.stats).toMatchObject({ slotFrames: 2, zeroFrames: 0 });
  });

  it("a frame written to zeros after holding bytes gives its slot back", async () => {
    const s = await twin(async (_k, p, see) => {
      const a = await p.mmap(0, PS, RW, ANON);
      await write(p, a, noise(1));
      await write(p, a, new Uint8Array(PS));
      see(await read(p, a));
    });
    expect(s.stats).toMatchObject({ zeroFrames: 1, slotFrames: 0 });
  });
});

describe("compact frame store: userfaultfd", () => {
  async function uffdOn(p: Process, addr: number, len: number): Promise<number> {
    const uffd = await p.userfaultfd(O_NONBLOCK);
    await p.ioctl(uffd, UFFDIO_API, { api: UFFD_API, features: 0 });
    await p.ioctl(uffd, UFFDIO_REGISTER, { range: { start: addr, len }, mode: UFFDIO_REGISTER_MODE_MISSING });
    return uffd;
  }

  it("UFFDIO_COPY from bytes: generated pages are held as arguments, others get slots (one page and a batch)", async () => {
    const s = await twin(async (k, p, see) => {
      const a = await p.mmap(0, 8 * PS, RW, ANON);
      const uffd = await uffdOn(p, a, 8 * PS);
      const src = new Uint8Array(5 * PS);
      for (let i = 0; i < 5; i++) src.set(i === 2 ? noise(i) : gen(i, 100), i * PS);
      const arg = { dst: a, src, len: 5 * PS, mode: 0, copy: 0 };
      await p.ioctl(uffd, UFFDIO_COPY, arg);
      const one = { dst: a + 6 * PS, src: gen(6, 100), len: PS, mode: 0, copy: 0 };
      await p.ioctl(uffd, UFFDIO_COPY, one);
      see([arg.copy, one.copy]);
      see(await read(p, a, 5 * PS));
      see(await read(p, a + 6 * PS));
      see(frameState(k, p, a));
      see(frameState(k, p, a + 5 * PS));
    });
    expect(s.stats).toMatchObject({ generatedFrames: 5, slotFrames: 1, zeroFrames: 0 });
  });

  it("UFFDIO_COPY from the caller's memory, including generated source frames", async () => {
    const s = await twin(async (_k, p, see) => {
      const a = await p.mmap(0, 4 * PS, RW, ANON);
      const srcAddr = await p.mmap(0, 3 * PS, RW, ANON);
      await write(p, srcAddr, gen(1, 1));
      await write(p, srcAddr + PS, noise(2));
      await write(p, srcAddr + 2 * PS, gen(3, 3));
      const uffd = await uffdOn(p, a, 4 * PS);
      const arg = { dst: a, src: srcAddr, len: 3 * PS, mode: 0, copy: 0 };
      await p.ioctl(uffd, UFFDIO_COPY, arg);
      see(arg.copy);
      see(await read(p, a, 3 * PS));
    });
    // Source: two generated, one slot; destination: the same again.
    expect(s.stats).toMatchObject({ generatedFrames: 4, slotFrames: 2 });
  });

  it("UFFDIO_COPY whose source must be faulted in first (the slow copy) still compacts the destination", async () => {
    const s = await twin(async (_k, p, see) => {
      const a = await p.mmap(0, 2 * PS, RW, ANON);
      const srcAddr = await p.mmap(0, 2 * PS, RW, ANON);
      const fd = await p.memfdCreate("src");
      await p.ftruncate(fd, 2 * PS);
      await p.pwrite(fd, gen(11, 1), 0);
      await p.pwrite(fd, noise(11), PS);
      // A private file mapping nobody touched yet: copyFromUserAtomic() finds no pte, the retry faults it in.
      const src = await p.mmap(srcAddr, 2 * PS, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0);
      const uffd = await uffdOn(p, a, 2 * PS);
      const arg = { dst: a, src, len: 2 * PS, mode: 0, copy: 0 };
      await p.ioctl(uffd, UFFDIO_COPY, arg);
      see(arg.copy);
      see(await read(p, a, 2 * PS));
    });
    // The memfd's two pages (generated, slot) and the two copies (generated, slot).
    expect(s.stats).toMatchObject({ generatedFrames: 2, slotFrames: 2 });
  });

  it("UFFDIO_MOVE moves a generated frame: same bytes at the destination, nothing materialised", async () => {
    const s = await twin(async (k, p, see) => {
      const src = await p.mmap(0, PS, RW, ANON);
      const dst = await p.mmap(0, PS, RW, ANON);
      await write(p, src, gen(4, 2));
      const uffd = await uffdOn(p, dst, PS);
      const arg = { dst, src, len: PS, mode: 0, move: 0 };
      await p.ioctl(uffd, UFFDIO_MOVE, arg);
      see(arg.move);
      see(await read(p, dst));
      see(frameState(k, p, dst));
      see(frameState(k, p, src));
    });
    expect(s.stats).toMatchObject({ generatedFrames: 1, slotFrames: 0 });
  });
});

describe("compact frame store: fork, swap, shmem, pipes", () => {
  it("fork COW: the child's copy of a generated page shares its description; a write gives only the writer bytes", async () => {
    const s = await twin(async (k, p, see) => {
      const a = await p.mmap(0, 2 * PS, RW, ANON);
      await write(p, a, gen(7, 7));
      await write(p, a + PS, noise(7));
      const child = await p.fork();
      await write(child, a + 10, Uint8Array.of(1, 2, 3));
      await write(child, a + PS + 10, Uint8Array.of(4));
      await write(p, a + PS + 20, Uint8Array.of(5));
      see(await read(p, a, 2 * PS));
      see(await read(child, a, 2 * PS));
      see(frameState(k, p, a));
      see(frameState(k, child, a));
    });
    // parent: generated + slot; child: slot (written) + slot (copy of a slot page, then written).
    expect(s.stats).toMatchObject({ generatedFrames: 1, slotFrames: 3 });
  });

  it("a COW copy that is not written stays compact (fork, then a write fault elsewhere)", async () => {
    const s = await twin(async (_k, p, see) => {
      const a = await p.mmap(0, 2 * PS, RW, ANON);
      await write(p, a, gen(8, 1));
      const child = await p.fork();
      // The child writes the same bytes over its copy: COW happens, the result is still generated.
      await write(child, a, gen(8, 1));
      see(await read(child, a));
      see(await read(p, a));
    });
    expect(s.stats).toMatchObject({ generatedFrames: 2, slotFrames: 0 });
  });

  it("swap-out and swap-in keep every byte; a generated or zero page comes back as its description", async () => {
    const s = await twin(async (k, p, see) => {
      const a = await p.mmap(0, 3 * PS, RW, ANON);
      await write(p, a, gen(2, 5));
      await write(p, a + PS, noise(3));
      await write(p, a + 2 * PS, new Uint8Array(PS));
      await p.madvise(a, 3 * PS, MADV_PAGEOUT);
      see(frameState(k, p, a));
      see(await read(p, a, 3 * PS));
      see(frameState(k, p, a));
      see(frameState(k, p, a + PS));
    }, true);
    expect(s.stats).toMatchObject({ generatedFrames: 1, slotFrames: 1, zeroFrames: 1 });
  });

  it("pwrite to shmem: whole generated pages compact, a partial pwrite materialises; pread and a shared mapping agree", async () => {
    const s = await twin(async (k, p, see) => {
      const fd = await p.memfdCreate("m");
      await p.ftruncate(fd, 3 * PS);
      const data = new Uint8Array(3 * PS);
      data.set(gen(1, 9), 0);
      data.set(gen(2, 9), PS);
      data.set(noise(9), 2 * PS);
      see(await p.pwrite(fd, data, 0));
      see(await p.pwrite(fd, Uint8Array.of(0xee), PS + 5));
      see(await p.pread(fd, 3 * PS, 0));
      const m = await p.mmap(0, 3 * PS, RW, MAP_SHARED, fd, 0);
      see(await read(p, m, 3 * PS));
      see(frameState(k, p, m));
      await p.fallocate(fd, 0x02 | 0x01, 10, 100); // FALLOC_FL_PUNCH_HOLE | KEEP_SIZE: zeroes part of page 0
      see(await read(p, m, PS));
    });
    expect(s.stats).toMatchObject({ generatedFrames: 0, slotFrames: 3 });
  });

  it("a write through a long-term pin (io_uring fixed buffer) gives the frame its bytes; the mapping sees them", async () => {
    const s = await twin(async (_k, p, see) => {
      const a = await p.mmap(0, 2 * PS, RW, ANON);
      await write(p, a, gen(6, 6));
      await write(p, a + PS, gen(6, 7));
      const pin = await p.ioUringRegisterBuffers(a, 2 * PS);
      pin.write(100, Uint8Array.of(9, 9, 9));
      pin.write(PS, gen(6, 8));
      see(pin.read(0, 2 * PS));
      see(await read(p, a, 2 * PS));
      await pin.unregister();
    });
    expect(s.stats).toMatchObject({ generatedFrames: 1, slotFrames: 1 });
  });

  it("pipe buffers: a page written through a pipe reads back whole", async () => {
    const s = await twin(async (_k, p, see) => {
      const [r, w] = await p.pipe();
      see(await p.write(w, gen(5, 5)));
      see(await p.write(w, Uint8Array.of(1, 2)));
      see(await p.read(r, PS + 2));
    });
    expect(s.stats).toMatchObject({ slotFrames: 0 });
  });
});

describe("compact frame store: options", () => {
  it("KernelOptions.frameStore takes only \"flat\" or \"compact\"", () => {
    expect(() => new Kernel({ frameStore: "dedup" as never })).toThrow(TypeError);
    expect(new Kernel({ frameStore: "compact" }).options.frameStore).toBe("compact");
    expect(new Kernel().options.frameStore).toBe("flat");
  });

  it("registerFrameGenerator() refuses what is not a generator", () => {
    const k = new Kernel({ frameStore: "compact" });
    expect(() => k.registerFrameGenerator({ fill: () => {} } as never)).toThrow(TypeError);
    expect(k.registerFrameGenerator(testGenerator)).toBe(0);
    expect(k.registerFrameGenerator(testGenerator)).toBe(1);
  });

  it("a generator's wrong guess is never trusted: bytes that only look generated keep a slot", async () => {
    const k = new Kernel({ seed: 1, frameStore: "compact" });
    k.registerFrameGenerator(testGenerator);
    const p = k.spawn();
    const a = await p.mmap(0, PS, RW, ANON);
    const fake = gen(3, 3);
    fake[PS - 1] = fake[PS - 1]! ^ 1;
    await write(p, a, fake);
    expect(Buffer.from(await read(p, a)).equals(Buffer.from(fake))).toBe(true);
    expect(k.frameStoreStats()).toMatchObject({ generatedFrames: 0, slotFrames: 1 });
    k.checkInvariants();
  });

  it("checkInvariants() catches a write that bypassed writable(): into the shared zeros, or into a generated page", async () => {
    const k = new Kernel({ seed: 1, frameStore: "compact" });
    k.registerFrameGenerator(testGenerator);
    const p = k.spawn();
    const a = await p.mmap(0, 2 * PS, RW, ANON);
    await write(p, a, new Uint8Array(PS));
    await write(p, a + PS, gen(2, 2));
    const mem = k.core.mem;
    const zeroFrame = p.pagemap(a, 1)[0]!.pfn!;
    const genFrame = p.pagemap(a + PS, 1)[0]!.pfn!;
    mem.bytes(zeroFrame)[mem.offset(zeroFrame) + 5] = 1; // what a path that forgot writable() would do
    expect(() => k.checkInvariants()).toThrow(/shared zero bytes were written at byte 5/);
    mem.bytes(zeroFrame)[mem.offset(zeroFrame) + 5] = 0;
    k.checkInvariants();
    const bytes = mem.bytes(genFrame);
    bytes[mem.offset(genFrame) + 100] = bytes[mem.offset(genFrame) + 100]! ^ 1;
    expect(() => k.checkInvariants()).toThrow(/generator 0: 2, 2, 0\) was written through bytes/);
    bytes[mem.offset(genFrame) + 100] = bytes[mem.offset(genFrame) + 100]! ^ 1;
    k.checkInvariants();
  });

  it("a generator that throws never breaks a write: the page keeps its bytes", async () => {
    const k = new Kernel({ seed: 1, frameStore: "compact" });
    let calls = 0;
    k.registerFrameGenerator({
      fill() {
        throw new Error("fill refuses");
      },
      identify(page, args) {
        calls++;
        if (page[0] === 1) throw new Error("identify refuses");
        args[0] = 1;
        return true;
      },
    });
    k.registerFrameGenerator(testGenerator);
    const p = k.spawn();
    const a = await p.mmap(0, 3 * PS, RW, ANON);
    const ones = new Uint8Array(PS).fill(1);
    await write(p, a, ones);
    await write(p, a + PS, noise(3));
    await write(p, a + 2 * PS, gen(5, 5)); // the first generator's fill() throws, the second's matches
    expect(calls).toBe(3);
    expect(Buffer.from(await read(p, a, PS)).equals(Buffer.from(ones))).toBe(true);
    expect(Buffer.from(await read(p, a + PS)).equals(Buffer.from(noise(3)))).toBe(true);
    expect(Buffer.from(await read(p, a + 2 * PS)).equals(Buffer.from(gen(5, 5)))).toBe(true);
    expect(k.frameStoreStats()).toMatchObject({ slotFrames: 2, generatedFrames: 1 });
  });
});
