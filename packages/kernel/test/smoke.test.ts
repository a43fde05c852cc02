import { describe, expect, it } from "vitest";
import { Kernel, SignalError } from "@uffd/kernel";
import { MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE } from "@uffd/kernel/uapi";

const RW = PROT_READ | PROT_WRITE;

describe("anonymous memory basics", () => {
  it("a read fault maps the zero page; a write allocates an exclusive page", async () => {
    const k = new Kernel({ seed: 1 });
    const p = k.spawn();
    const a = await p.mmap(0, 2 * 4096, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    expect(await p.mainThread.read(a, 4)).toEqual(new Uint8Array(4));
    const [z] = p.pagemap(a, 1);
    expect(z).toMatchObject({ present: true, exclusive: false, file: false, pfn: k.zeroPfn });
    await p.mainThread.write(a + 4096, new Uint8Array([1, 2, 3]));
    const [, w] = p.pagemap(a, 2);
    expect(w).toMatchObject({ present: true, exclusive: true, file: false });
    expect(k.kpagecount(w!.pfn!)).toBe(1);
    k.checkInvariants();
  });

  it("fork shares pages read-only and a write copies them (COW)", async () => {
    const k = new Kernel({ seed: 1 });
    const p = k.spawn();
    const a = await p.mmap(0, 4096, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    await p.mainThread.write(a, new Uint8Array([7]));
    const c = await p.fork();
    expect(p.pagemap(a, 1)[0]).toMatchObject({ present: true, exclusive: false });
    expect(p.pagemap(a, 1)[0]!.pfn).toBe(c.pagemap(a, 1)[0]!.pfn);
    await p.mainThread.write(a, new Uint8Array([9]));
    expect(await c.mainThread.read(a, 1)).toEqual(new Uint8Array([7]));
    expect(await p.mainThread.read(a, 1)).toEqual(new Uint8Array([9]));
    expect(p.pagemap(a, 1)[0]!.pfn).not.toBe(c.pagemap(a, 1)[0]!.pfn);
    k.checkInvariants();
    await c.exit(0);
    k.checkInvariants();
  });

  it("an access outside any vma is SIGSEGV", async () => {
    const k = new Kernel();
    const p = k.spawn();
    await expect(p.mainThread.read(0x10000, 1)).rejects.toBeInstanceOf(SignalError);
  });

  it("a shared anonymous mapping is shmem and stays shared across fork", async () => {
    const k = new Kernel();
    const p = k.spawn();
    const a = await p.mmap(0, 4096, RW, MAP_SHARED | MAP_ANONYMOUS);
    const c = await p.fork();
    await c.mainThread.write(a, new Uint8Array([5]));
    expect(await p.mainThread.read(a, 1)).toEqual(new Uint8Array([5]));
    expect(p.pagemap(a, 1)[0]).toMatchObject({ present: true, file: true, exclusive: false });
    k.checkInvariants();
  });
});
