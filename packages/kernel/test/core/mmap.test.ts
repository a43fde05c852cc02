// mmap/munmap/mprotect argument checks, in Linux's order (mm/mmap.c:do_mmap(), mm/vma.c:do_vmi_munmap(),
// mm/mprotect.c:do_mprotect_pkey()). Every errno below was observed on the 6.18 reference host.
import { describe, expect, it } from "vitest";
import { Kernel, SignalError } from "@uffd/kernel";
import {
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_FIXED_NOREPLACE,
  MAP_GROWSDOWN,
  MAP_HUGETLB,
  MAP_POPULATE,
  MAP_PRIVATE,
  MAP_SHARED,
  O_RDONLY,
  PROT_NONE,
  PROT_READ,
  PROT_WRITE,
} from "@uffd/kernel/uapi";
import { boot, expectErrno, page } from "./helpers.ts";

const RW = PROT_READ | PROT_WRITE;
const ANON = MAP_PRIVATE | MAP_ANONYMOUS;

describe("mmap argument checks", () => {
  it("rejects len 0, a missing map type, an unaligned offset or MAP_FIXED address with EINVAL", async () => {
    const { k, p } = boot();
    await expectErrno(p.mmap(0, 0, RW, ANON), "EINVAL");
    await expectErrno(p.mmap(0, 4096, RW, MAP_ANONYMOUS), "EINVAL");
    await expectErrno(p.mmap(0, 4096, RW, ANON, -1, 1), "EINVAL");
    await expectErrno(p.mmap(0x10001000 + 1, 4096, RW, ANON | MAP_FIXED), "EINVAL");
    await expectErrno(p.mmap(0, 4096, RW, MAP_SHARED | MAP_ANONYMOUS | MAP_GROWSDOWN), "EINVAL");
    expect(p.smaps()).toEqual([]);
    k.checkInvariants();
  });

  it("MAP_HUGETLB: anonymous is ENOMEM (no huge pages reserved, as on the host), on a shmem file EINVAL", async () => {
    const { p } = boot();
    await expectErrno(p.mmap(0, 2 << 20, RW, ANON | MAP_HUGETLB), "ENOMEM");
    await expectErrno(p.mmap(0, 2 << 20, RW, MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB), "ENOMEM");
    const fd = await p.memfdCreate("m");
    await p.ftruncate(fd, 4096);
    await expectErrno(p.mmap(0, 4096, RW, MAP_SHARED | MAP_HUGETLB, fd), "EINVAL");
    expect(p.smaps()).toEqual([]);
  });

  it("rejects a file mapping of a bad fd with EBADF", async () => {
    const { p } = boot();
    await expectErrno(p.mmap(0, 4096, RW, MAP_PRIVATE, 99), "EBADF");
  });

  it("below mmap_min_addr (4096 by default): root (CAP_SYS_RAWIO) may map, others get EPERM", async () => {
    // security/commoncap.c:cap_mmap_addr() [host, vm.mmap_min_addr = 4096: root maps 0, uid 1000
    // gets EPERM at 0 and maps 0x1000].
    const { k, p } = boot();
    expect(await p.mmap(0, 4096, RW, ANON | MAP_FIXED)).toBe(0);
    const user = k.spawn({ uid: 1000 });
    await expectErrno(user.mmap(0, 4096, RW, ANON | MAP_FIXED), "EPERM");
    expect(await user.mmap(0x1000, 4096, RW, ANON | MAP_FIXED)).toBe(0x1000);
    k.checkInvariants();
  });

  it("KernelOptions.mmapMinAddr moves the bound; a bad value is refused", async () => {
    const k = new Kernel({ mmapMinAddr: 0x10000 });
    const user = k.spawn({ uid: 1000 });
    await expectErrno(user.mmap(0xf000, 4096, RW, ANON | MAP_FIXED), "EPERM");
    expect(await user.mmap(0x10000, 4096, RW, ANON | MAP_FIXED)).toBe(0x10000);
    expect(await user.mmap(0x1000, 4096, RW, ANON), "a hint below the bound is raised to it").toBeGreaterThanOrEqual(0x10000);
    for (const bad of [-4096, 100, 0x7ffffffff000, Number.NaN]) expect(() => new Kernel({ mmapMinAddr: bad })).toThrow(RangeError);
    k.checkInvariants();
  });

  it("MAP_FIXED_NOREPLACE over an existing mapping is EEXIST and changes nothing", async () => {
    const { k, p } = boot();
    const a = await p.mmap(0, 2 * 4096, RW, ANON);
    await p.mainThread.write(a, page(3, 1));
    await expectErrno(p.mmap(a + 4096, 4096, RW, ANON | MAP_FIXED_NOREPLACE), "EEXIST");
    expect(await p.mainThread.read(a, 1)).toEqual(new Uint8Array([3]));
    k.checkInvariants();
  });

  it("MAP_FIXED replaces what was there; the old pages are freed", async () => {
    const { k, p } = boot();
    const a = await p.mmap(0, 4096, RW, ANON);
    await p.mainThread.write(a, page(9));
    const pfn = p.pagemap(a, 1)[0]!.pfn!;
    expect(await p.mmap(a, 4096, RW, ANON | MAP_FIXED)).toBe(a);
    expect(p.pagemap(a, 1)[0]!.present).toBe(false);
    expect(k.kpagecount(pfn)).toBe(0);
    expect(await p.mainThread.read(a, 4)).toEqual(new Uint8Array(4));
    k.checkInvariants();
  });

  it("MAP_POPULATE on private writable memory write-faults every page (exclusive, not the zero page)", async () => {
    const { k, p } = boot();
    const a = await p.mmap(0, 3 * 4096, RW, ANON | MAP_POPULATE);
    for (const e of p.pagemap(a, 3)) expect(e).toMatchObject({ present: true, exclusive: true });
    const ro = await p.mmap(0, 4096, PROT_READ, ANON | MAP_POPULATE);
    expect(p.pagemap(ro, 1)[0]!.pfn).toBe(k.zeroPfn);
    k.checkInvariants();
  });

  it("adjacent anonymous mappings with equal flags merge into one vma (smaps)", async () => {
    const { p } = boot();
    const a = await p.mmap(0, 4096, RW, ANON);
    const b = await p.mmap(0, 4096, RW, ANON);
    expect(b).toBe(a - 4096);
    const vmas = p.smaps();
    expect(vmas).toHaveLength(1);
    expect(vmas[0]).toMatchObject({ start: b, end: a + 4096, perms: "rw-p", vmFlags: ["rd", "wr", "mr", "mw", "me", "ac"] });
  });

  it("a shared anonymous mapping shows rw-s with sh/ms and no ac [host smaps]", async () => {
    const { p } = boot();
    await p.mmap(0, 4096, RW, MAP_SHARED | MAP_ANONYMOUS);
    expect(p.smaps()[0]).toMatchObject({ perms: "rw-s", vmFlags: ["rd", "wr", "sh", "mr", "mw", "me", "ms"] });
  });
});

describe("munmap", () => {
  it("rejects unaligned starts and zero length with EINVAL", async () => {
    const { p } = boot();
    await expectErrno(p.munmap(0x1001, 10), "EINVAL");
    await expectErrno(p.munmap(0, 0), "EINVAL");
  });

  it("unmapping the middle splits the vma and frees its pages", async () => {
    const { k, p } = boot();
    const a = await p.mmap(0, 3 * 4096, RW, ANON);
    await p.mainThread.write(a, page(1, 3 * 4096));
    const mid = p.pagemap(a + 4096, 1)[0]!.pfn!;
    await p.munmap(a + 4096, 4096);
    expect(p.smaps().map((v) => [v.start, v.end])).toEqual([
      [a, a + 4096],
      [a + 2 * 4096, a + 3 * 4096],
    ]);
    expect(k.kpagecount(mid)).toBe(0);
    await expect(p.mainThread.read(a + 4096, 1)).rejects.toMatchObject({ signal: "SIGSEGV", address: a + 4096 });
    k.checkInvariants();
  });

  it("unmapping a hole succeeds", async () => {
    const { p } = boot();
    await p.munmap(0x200000000, 4096);
  });
});

describe("mprotect", () => {
  it("checks alignment, prot bits and holes (EINVAL, EINVAL, ENOMEM)", async () => {
    const { k, p } = boot();
    const a = await p.mmap(0, 4096, RW, ANON);
    await expectErrno(p.mprotect(a + 1, 4096, PROT_READ), "EINVAL");
    await expectErrno(p.mprotect(a, 4096, 0x10), "EINVAL");
    await expectErrno(p.mprotect(0x200000000, 4096, PROT_READ), "ENOMEM");
    expect(p.smaps()[0]!.perms).toBe("rw-p");
    k.checkInvariants();
  });

  it("applies vma by vma: the part before a hole or an EACCES vma keeps its new protection [host]", async () => {
    const { k, p } = boot();
    const a = await p.mmap(0x7e0000000000, 3 * 4096, PROT_READ, ANON | MAP_FIXED);
    await p.munmap(a + 4096, 4096);
    await expectErrno(p.mprotect(a, 3 * 4096, RW), "ENOMEM");
    expect(p.smaps().map((v) => v.perms)).toEqual(["rw-p", "r--p"]);
    const fd = await p.memfdCreate("m");
    await p.ftruncate(fd, 4096);
    const ro = await p.reopen(fd, O_RDONLY);
    const b = await p.mmap(0x7e0000010000, 4096, PROT_READ, ANON | MAP_FIXED);
    await p.mmap(b + 4096, 4096, PROT_READ, MAP_SHARED | MAP_FIXED, ro);
    await expectErrno(p.mprotect(b, 2 * 4096, RW), "EACCES");
    expect(p.smaps().filter((v) => v.start >= b).map((v) => v.perms)).toEqual(["rw-p", "r--s"]);
    k.checkInvariants();
  });

  it("PROT_WRITE on a shared mapping of an O_RDONLY file is EACCES (no VM_MAYWRITE) [host]", async () => {
    const { k, p } = boot();
    const fd = await p.memfdCreate("ro");
    await p.ftruncate(fd, 4096);
    const rofd = await p.reopen(fd, O_RDONLY);
    await expectErrno(p.mmap(0, 4096, RW, MAP_SHARED, rofd), "EACCES");
    const a = await p.mmap(0, 4096, PROT_READ, MAP_SHARED, rofd);
    expect(p.smaps()[0]).toMatchObject({ perms: "r--s", vmFlags: ["rd", "mr", "me", "ms"] });
    await expectErrno(p.mprotect(a, 4096, RW), "EACCES");
    expect(p.smaps()[0]!.perms).toBe("r--s");
    const b = await p.mmap(0, 4096, PROT_READ, MAP_SHARED, fd);
    await p.mprotect(b, 4096, RW); // the writable description allows it
    k.checkInvariants();
  });

  it("PROT_NONE makes reads SIGSEGV; restoring makes them work again", async () => {
    const { k, p } = boot();
    const a = await p.mmap(0, 4096, RW, ANON);
    await p.mainThread.write(a, page(4, 1));
    await p.mprotect(a, 4096, PROT_NONE);
    await expect(p.mainThread.read(a, 1)).rejects.toBeInstanceOf(SignalError);
    await p.mprotect(a, 4096, RW);
    expect(await p.mainThread.read(a, 1)).toEqual(new Uint8Array([4]));
    k.checkInvariants();
  });

  it("RO then RW on an exclusive anon page makes the pte writable again without a copy (mprotect optimization)", async () => {
    const { k, p } = boot();
    const a = await p.mmap(0, 4096, RW, ANON);
    await p.mainThread.write(a, page(1));
    const pfn = p.pagemap(a, 1)[0]!.pfn;
    await p.mprotect(a, 4096, PROT_READ);
    await expect(p.mainThread.write(a, page(2, 1))).rejects.toMatchObject({ signal: "SIGSEGV" });
    await p.mprotect(a, 4096, RW);
    await p.mainThread.write(a, page(2, 1));
    expect(p.pagemap(a, 1)[0]!.pfn).toBe(pfn);
    k.checkInvariants();
  });

  it("after fork, RO then RW does not make the shared page writable: the parent's write copies it (cow.c mprotect case)", async () => {
    const { k, p } = boot();
    const a = await p.mmap(0, 4096, RW, ANON);
    await p.mainThread.write(a, page(1));
    const child = await p.fork();
    await p.mprotect(a, 4096, PROT_READ);
    await p.mprotect(a, 4096, RW);
    await p.mainThread.write(a, page(0xff));
    expect(await child.mainThread.read(a, 4096)).toEqual(page(1));
    expect(p.pagemap(a, 1)[0]!.pfn).not.toBe(child.pagemap(a, 1)[0]!.pfn);
    k.checkInvariants();
  });

  it("splits vmas and merges them back", async () => {
    const { p } = boot();
    const a = await p.mmap(0, 3 * 4096, RW, ANON);
    await p.mprotect(a + 4096, 4096, PROT_READ);
    expect(p.smaps().map((v) => v.perms)).toEqual(["rw-p", "r--p", "rw-p"]);
    await p.mprotect(a + 4096, 4096, RW);
    expect(p.smaps()).toHaveLength(1);
  });
});
