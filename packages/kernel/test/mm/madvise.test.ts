/**
 * madvise(2) conformance (mm/madvise.c). Every errno, layout and pagemap expectation below was
 * observed on the 6.18.44 reference host with small C probes (docs/linux-rules.md §0: THP
 * "madvise", CONFIG_KSM, no CONFIG_MEMORY_FAILURE, CONFIG_PT_RECLAIM).
 */
import { describe, expect, it } from "vitest";
import { type Kernel, type Process, SignalError } from "@uffd/kernel";
import {
  MADV_COLD,
  MADV_COLLAPSE,
  MADV_DODUMP,
  MADV_DOFORK,
  MADV_DONTDUMP,
  MADV_DONTFORK,
  MADV_DONTNEED,
  MADV_DONTNEED_LOCKED,
  MADV_FREE,
  MADV_GUARD_INSTALL,
  MADV_GUARD_REMOVE,
  MADV_HUGEPAGE,
  MADV_KEEPONFORK,
  MADV_MERGEABLE,
  MADV_NOHUGEPAGE,
  MADV_NORMAL,
  MADV_PAGEOUT,
  MADV_POPULATE_READ,
  MADV_POPULATE_WRITE,
  MADV_RANDOM,
  MADV_REMOVE,
  MADV_SEQUENTIAL,
  MADV_UNMERGEABLE,
  MADV_WILLNEED,
  MADV_WIPEONFORK,
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_PRIVATE,
  MAP_SHARED,
  O_RDONLY,
  PAGE_SIZE,
  PROT_NONE,
  PROT_READ,
  PROT_WRITE,
  UFFD_EVENT_PAGEFAULT,
  UFFD_EVENT_REMOVE,
  UFFD_FEATURE_EVENT_REMOVE,
  UFFD_FEATURE_SIGBUS,
  UFFD_PAGEFAULT_FLAG_WRITE,
  UFFD_USER_MODE_ONLY,
  UFFD_API,
  UFFDIO_API,
  UFFDIO_COPY,
  UFFDIO_POISON,
  UFFDIO_REGISTER_MODE_MISSING,
  UFFDIO_REGISTER_MODE_WP,
  UFFDIO_WRITEPROTECT,
  UFFDIO_WRITEPROTECT_MODE_WP,
  O_NONBLOCK,
} from "@uffd/kernel/uapi";
import { boot, expectErrno } from "../core/helpers.ts";
import { errnoOf, fill, isBlocked, readMsgs, register, setup } from "../uffd/helpers.ts";

const PS = PAGE_SIZE;
const RW = PROT_READ | PROT_WRITE;
const ANON = MAP_PRIVATE | MAP_ANONYMOUS;

/** The smaps entry of the vma containing addr. */
function vmaAt(p: Process, addr: number): { start: number; end: number; vmFlags: readonly string[]; rssBytes: number } {
  const v = p.smaps().find((e) => e.start <= addr && addr < e.end);
  if (v === undefined) throw new Error(`no vma at 0x${addr.toString(16)}`);
  return v;
}

const ANON_FLAGS = ["rd", "wr", "mr", "mw", "me", "ac"];
const MEMFD_SHARED_FLAGS = ["rd", "wr", "sh", "mr", "mw", "me", "ms"];

/** Every advice madvise_behavior_valid() accepts on the host, with its name. */
const ADVICES: ReadonlyArray<readonly [string, number]> = [
  ["NORMAL", MADV_NORMAL],
  ["RANDOM", MADV_RANDOM],
  ["SEQUENTIAL", MADV_SEQUENTIAL],
  ["WILLNEED", MADV_WILLNEED],
  ["DONTNEED", MADV_DONTNEED],
  ["FREE", MADV_FREE],
  ["REMOVE", MADV_REMOVE],
  ["DONTFORK", MADV_DONTFORK],
  ["DOFORK", MADV_DOFORK],
  ["MERGEABLE", MADV_MERGEABLE],
  ["UNMERGEABLE", MADV_UNMERGEABLE],
  ["HUGEPAGE", MADV_HUGEPAGE],
  ["NOHUGEPAGE", MADV_NOHUGEPAGE],
  ["DONTDUMP", MADV_DONTDUMP],
  ["DODUMP", MADV_DODUMP],
  ["WIPEONFORK", MADV_WIPEONFORK],
  ["KEEPONFORK", MADV_KEEPONFORK],
  ["COLD", MADV_COLD],
  ["PAGEOUT", MADV_PAGEOUT],
  ["POPULATE_READ", MADV_POPULATE_READ],
  ["POPULATE_WRITE", MADV_POPULATE_WRITE],
  ["DONTNEED_LOCKED", MADV_DONTNEED_LOCKED],
  ["COLLAPSE", MADV_COLLAPSE],
  ["GUARD_INSTALL", MADV_GUARD_INSTALL],
  ["GUARD_REMOVE", MADV_GUARD_REMOVE],
];

const KINDS = ["anon", "anon-none", "anon-ro", "shm-anon", "memfd-sh", "memfd-priv", "memfd-sh-ro", "memfd-sh-rofd", "memfd-priv-ro"] as const;
type Kind = (typeof KINDS)[number];

/**
 * Host result of madvise(first page of a fresh 4-page mapping, advice) per memory kind, in
 * KINDS order. "memfd-sh-rofd" maps a read-only reopened memfd (no VM_MAYWRITE).
 */
const HOST_MATRIX: Record<string, readonly string[]> = {
  FREE: ["OK", "OK", "OK", "EINVAL", "EINVAL", "EINVAL", "EINVAL", "EINVAL", "EINVAL"],
  REMOVE: ["EINVAL", "EINVAL", "EINVAL", "OK", "OK", "EACCES", "OK", "EACCES", "EACCES"],
  WIPEONFORK: ["OK", "OK", "OK", "EINVAL", "EINVAL", "EINVAL", "EINVAL", "EINVAL", "EINVAL"],
  POPULATE_READ: ["OK", "EINVAL", "OK", "OK", "OK", "OK", "OK", "OK", "OK"],
  POPULATE_WRITE: ["OK", "EINVAL", "EINVAL", "OK", "OK", "OK", "EINVAL", "EINVAL", "EINVAL"],
  COLLAPSE: ["EINVAL", "EINVAL", "EINVAL", "EINVAL", "EINVAL", "EINVAL", "EINVAL", "EINVAL", "EINVAL"],
};

async function mapKind(p: Process, kind: Kind, fds: { rw: number; ro: number }): Promise<number> {
  const len = 4 * PS;
  switch (kind) {
    case "anon":
      return p.mmap(0, len, RW, ANON);
    case "anon-none":
      return p.mmap(0, len, PROT_NONE, ANON);
    case "anon-ro":
      return p.mmap(0, len, PROT_READ, ANON);
    case "shm-anon":
      return p.mmap(0, len, RW, MAP_SHARED | MAP_ANONYMOUS);
    case "memfd-sh":
      return p.mmap(0, len, RW, MAP_SHARED, fds.rw, 0);
    case "memfd-priv":
      return p.mmap(0, len, RW, MAP_PRIVATE, fds.rw, 0);
    case "memfd-sh-ro":
      return p.mmap(0, len, PROT_READ, MAP_SHARED, fds.rw, 0);
    case "memfd-sh-rofd":
      return p.mmap(0, len, PROT_READ, MAP_SHARED, fds.ro, 0);
    case "memfd-priv-ro":
      return p.mmap(0, len, PROT_READ, MAP_PRIVATE, fds.rw, 0);
  }
}

describe("madvise argument checks (mm/madvise.c:madvise_should_skip(), in Linux's order)", () => {
  it("an unknown advice is EINVAL before anything else, even with len 0 or an unaligned start", async () => {
    const { k, p } = boot();
    const a = await p.mmap(0, 4 * PS, RW, ANON);
    // 100/101 are MADV_HWPOISON/MADV_SOFT_OFFLINE: EINVAL without CONFIG_MEMORY_FAILURE [host].
    for (const bad of [5, 6, 7, 26, 100, 101, 104, -1]) await expectErrno(p.madvise(a, PS, bad), "EINVAL");
    await expectErrno(p.madvise(a + 1, PS, 5), "EINVAL");
    await expectErrno(p.madvise(a, 0, 5), "EINVAL");
    k.checkInvariants();
  });

  it("unaligned start and a wrapping length are EINVAL; len 0 is a no-op even where nothing is mapped", async () => {
    const { k, p } = boot();
    const a = await p.mmap(0, 4 * PS, RW, ANON);
    await expectErrno(p.madvise(a + 1, PS, MADV_DONTNEED), "EINVAL");
    await expectErrno(p.madvise(a, 2 ** 64 - PS, MADV_DONTNEED), "EINVAL");
    await expectErrno(p.madvise(a + 1, 0, MADV_DONTNEED), "EINVAL");
    await p.madvise(0, 0, MADV_DONTNEED);
    await p.madvise(a, 0, MADV_DONTNEED);
    k.checkInvariants();
  });

  it("a range with nothing mapped is ENOMEM, also above TASK_SIZE", async () => {
    const { k, p } = boot();
    await expectErrno(p.madvise(0x10000, PS, MADV_DONTNEED), "ENOMEM");
    await expectErrno(p.madvise(0x7ff000000000, PS, MADV_NORMAL), "ENOMEM");
    await expectErrno(p.madvise(0x800000000000, PS, MADV_NORMAL), "ENOMEM");
    k.checkInvariants();
  });

  it("a hole in the range: the advice still applies to every mapped part, then ENOMEM", async () => {
    const { k, p } = boot();
    const a = await p.mmap(0, 4 * PS, RW, ANON);
    await p.munmap(a + PS, PS);
    await p.mainThread.write(a, fill(1, 1));
    await p.mainThread.write(a + 2 * PS, fill(2, 1));
    await expectErrno(p.madvise(a, 4 * PS, MADV_DONTNEED), "ENOMEM");
    expect(p.pagemap(a, 1)[0]!.present).toBe(false);
    expect(p.pagemap(a + 2 * PS, 1)[0]!.present).toBe(false);
    await expectErrno(p.madvise(a, 4 * PS, MADV_DONTFORK), "ENOMEM");
    expect(vmaAt(p, a).vmFlags).toContain("dc");
    expect(vmaAt(p, a + 2 * PS).vmFlags).toContain("dc");
    // Starting in the hole is the same: ENOMEM after advising what follows.
    await expectErrno(p.madvise(a + PS, 3 * PS, MADV_DOFORK), "ENOMEM");
    expect(vmaAt(p, a).vmFlags).toContain("dc");
    expect(vmaAt(p, a + 2 * PS).vmFlags).not.toContain("dc");
    await expectErrno(p.madvise(a + PS, PS, MADV_DOFORK), "ENOMEM");
    k.checkInvariants();
  });

  it("an error in a later vma stops the walk after the earlier vmas were advised (FREE: anon then shmem)", async () => {
    const { k, p } = boot();
    const a = await p.mmap(0, 4 * PS, RW, ANON);
    await p.mmap(a + 2 * PS, 2 * PS, RW, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED);
    await p.mainThread.write(a, fill(1, 1));
    await expectErrno(p.madvise(a, 4 * PS, MADV_FREE), "EINVAL");
    await expectErrno(p.madvise(a, 4 * PS, MADV_WIPEONFORK), "EINVAL");
    expect(vmaAt(p, a).vmFlags).toContain("wf");
    expect(vmaAt(p, a + 2 * PS).vmFlags).not.toContain("wf");
    k.checkInvariants();
  });
});

describe("madvise per-vma errnos: the host matrix over nine memory kinds", () => {
  it("matches the host for every advice on anon, shmem and memfd mappings (shared, private, read-only)", async () => {
    const { k, p } = boot(1, { swapPages: 64 });
    const rw = await p.memfdCreate("m");
    await p.ftruncate(rw, 4 * PS);
    const ro = await p.reopen(rw, O_RDONLY);
    const got: Record<string, string[]> = {};
    for (const [name, advice] of ADVICES) {
      got[name] = [];
      for (const kind of KINDS) {
        const a = await mapKind(p, kind, { rw, ro });
        got[name]!.push(await errnoOf(p.madvise(a, PS, advice)));
        await p.munmap(a, 4 * PS);
      }
    }
    for (const [name] of ADVICES) {
      const want = HOST_MATRIX[name] ?? KINDS.map(() => "OK");
      expect(got[name], name).toEqual(want);
    }
    k.checkInvariants();
  });
});

describe("advice that only changes vm_flags splits the vma and shows in smaps VmFlags", () => {
  const cases: ReadonlyArray<readonly [string, number, string | null]> = [
    ["RANDOM", MADV_RANDOM, "rr"],
    ["SEQUENTIAL", MADV_SEQUENTIAL, "sr"],
    ["DONTFORK", MADV_DONTFORK, "dc"],
    ["WIPEONFORK", MADV_WIPEONFORK, "wf"],
    ["DONTDUMP", MADV_DONTDUMP, "dd"],
    ["HUGEPAGE", MADV_HUGEPAGE, "hg"],
    ["NOHUGEPAGE", MADV_NOHUGEPAGE, "nh"],
    ["MERGEABLE", MADV_MERGEABLE, "mg"],
    ["NORMAL", MADV_NORMAL, null],
    ["DOFORK", MADV_DOFORK, null],
    ["KEEPONFORK", MADV_KEEPONFORK, null],
    ["UNMERGEABLE", MADV_UNMERGEABLE, null],
    ["DODUMP", MADV_DODUMP, null],
  ];
  for (const [name, advice, mnemonic] of cases) {
    it(`anon ${name} on the middle page: ${mnemonic === null ? "no split" : `[a+1, a+2) gets "${mnemonic}"`}`, async () => {
      const { k, p } = boot();
      const a = await p.mmap(0, 4 * PS, RW, ANON);
      await p.madvise(a + PS, PS, advice);
      if (mnemonic === null) {
        expect(p.smaps().map((v) => [v.start - a, v.end - a, v.vmFlags])).toEqual([[0, 4 * PS, ANON_FLAGS]]);
      } else {
        const flags = ANON_FLAGS.slice();
        const order = ["rd", "wr", "mr", "mw", "me", "sr", "rr", "dc", "ac", "wf", "dd", "hg", "nh", "mg"];
        flags.push(mnemonic);
        flags.sort((x, y) => order.indexOf(x) - order.indexOf(y));
        expect(p.smaps().map((v) => [v.start - a, v.end - a, v.vmFlags])).toEqual([
          [0, PS, ANON_FLAGS],
          [PS, 2 * PS, flags],
          [2 * PS, 4 * PS, ANON_FLAGS],
        ]);
      }
      k.checkInvariants();
    });
  }

  it("on a shared memfd MERGEABLE changes nothing (vma_ksm_compatible()), HUGEPAGE shows hg [host]", async () => {
    const { k, p } = boot();
    const fd = await p.memfdCreate("m");
    await p.ftruncate(fd, 4 * PS);
    const a = await p.mmap(0, 4 * PS, RW, MAP_SHARED, fd, 0);
    await p.madvise(a + PS, PS, MADV_MERGEABLE);
    expect(p.smaps().map((v) => v.vmFlags)).toEqual([MEMFD_SHARED_FLAGS]);
    await p.madvise(a + PS, PS, MADV_HUGEPAGE);
    expect(vmaAt(p, a + PS).vmFlags).toEqual([...MEMFD_SHARED_FLAGS, "hg"]);
    await p.madvise(a + PS, PS, MADV_NOHUGEPAGE);
    expect(vmaAt(p, a + PS).vmFlags).toEqual([...MEMFD_SHARED_FLAGS, "nh"]);
    k.checkInvariants();
  });

  it("HUGEPAGE and NOHUGEPAGE replace each other; MERGEABLE then UNMERGEABLE merges back", async () => {
    const { k, p } = boot();
    const a = await p.mmap(0, 4 * PS, RW, ANON);
    await p.madvise(a, 4 * PS, MADV_HUGEPAGE);
    await p.madvise(a, 4 * PS, MADV_NOHUGEPAGE);
    expect(p.smaps().map((v) => v.vmFlags)).toEqual([[...ANON_FLAGS, "nh"]]);
    await p.madvise(a + PS, PS, MADV_MERGEABLE);
    expect(p.smaps()).toHaveLength(3);
    await p.madvise(a + PS, PS, MADV_UNMERGEABLE);
    expect(p.smaps().map((v) => [v.start - a, v.end - a])).toEqual([[0, 4 * PS]]);
    k.checkInvariants();
  });
});

describe("MADV_DONTNEED / MADV_DONTNEED_LOCKED (zap_page_range_single)", () => {
  it("anon: frees pages and swap entries; the next read is a fresh zero page", async () => {
    const { k, p } = boot(1, { swapPages: 64 });
    const a = await p.mmap(0, 3 * PS, RW, ANON);
    await p.mainThread.write(a, fill(7, 3 * PS));
    const pfn = p.pagemap(a, 1)[0]!.pfn!;
    await p.madvise(a + 2 * PS, PS, MADV_PAGEOUT);
    expect(p.pagemap(a + 2 * PS, 1)[0]!.swapped).toBe(true);
    await p.madvise(a, 3 * PS, MADV_DONTNEED);
    expect(p.pagemap(a, 3).map((e) => e.present || e.swapped)).toEqual([false, false, false]);
    expect(k.kpagecount(pfn)).toBe(0);
    expect(vmaAt(p, a).rssBytes).toBe(0);
    expect(p.smaps()[0]!.swapBytes).toBe(0);
    expect(await p.mainThread.read(a + 2 * PS, 4)).toEqual(new Uint8Array(4));
    expect(p.pagemap(a + 2 * PS, 1)[0]!.pfn).toBe(k.zeroPfn);
    k.checkInvariants();
  });

  it("a private file mapping drops its COW copy and sees the file again; DONTNEED_LOCKED is the same", async () => {
    const { k, p } = boot();
    const fd = await p.memfdCreate("m");
    await p.pwrite(fd, fill(3), 0);
    const a = await p.mmap(0, PS, RW, MAP_PRIVATE, fd, 0);
    await p.mainThread.write(a, fill(9, 1));
    expect(p.pagemap(a, 1)[0]).toMatchObject({ present: true, file: false, exclusive: true });
    await p.madvise(a, PS, MADV_DONTNEED_LOCKED);
    expect(p.pagemap(a, 1)[0]!.present).toBe(false);
    expect(await p.mainThread.read(a, 1)).toEqual(new Uint8Array([3]));
    expect(p.pagemap(a, 1)[0]).toMatchObject({ present: true, file: true });
    k.checkInvariants();
  });

  it("shmem: only the mapping goes, the page cache keeps the data", async () => {
    const { k, p } = boot();
    const a = await p.mmap(0, PS, RW, MAP_SHARED | MAP_ANONYMOUS);
    await p.mainThread.write(a, fill(5, 1));
    await p.madvise(a, PS, MADV_DONTNEED);
    expect(p.pagemap(a, 1)[0]!.present).toBe(false);
    expect(await p.mainThread.read(a, 1)).toEqual(new Uint8Array([5]));
    k.checkInvariants();
  });

  it("poison markers are dropped: the page reads zero again (uffd-unit-tests poison, linux-rules §2.9)", async () => {
    const { k, p, uffd } = await setup();
    const a = await p.mmap(0, PS, RW, ANON);
    await register(p, uffd, a, PS, UFFDIO_REGISTER_MODE_MISSING);
    await p.ioctl(uffd, UFFDIO_POISON, { range: { start: a, len: PS }, mode: 0 });
    await expect(p.mainThread.read(a, 1)).rejects.toMatchObject({ signal: "SIGBUS" });
    await p.madvise(a, PS, MADV_DONTNEED);
    expect(p.pagemap(a, 1)[0]!.swapped).toBe(false);
    k.checkInvariants();
  });

  it("a zap covering a whole PMD frees the emptied page table (CONFIG_PT_RECLAIM); a partial one keeps it", async () => {
    const { k, p } = boot();
    const pmd = 512 * PS;
    const raw = await p.mmap(0, 3 * pmd, RW, ANON);
    const a = Math.ceil(raw / pmd) * pmd;
    await p.mainThread.write(a, fill(1, 1));
    await p.mainThread.write(a + pmd, fill(1, 1));
    // PTE tables present (a pte hole vs none ptes is what PAGEMAP_SCAN tells apart).
    const tables = (): number => p.mm.pt.tables.size;
    expect(tables()).toBe(2);
    await p.madvise(a, pmd, MADV_DONTNEED);
    expect(tables()).toBe(1);
    await p.madvise(a + pmd, PS, MADV_DONTNEED);
    expect(tables()).toBe(1);
    k.checkInvariants();
  });
});

describe("MADV_FREE (madvise_free_pte_range)", () => {
  it("anon only: shmem and private file mappings are EINVAL", async () => {
    const { p } = boot();
    const s = await p.mmap(0, PS, RW, MAP_SHARED | MAP_ANONYMOUS);
    await expectErrno(p.madvise(s, PS, MADV_FREE), "EINVAL");
    const fd = await p.memfdCreate("m");
    await p.ftruncate(fd, PS);
    const f = await p.mmap(0, PS, RW, MAP_PRIVATE, fd, 0);
    await expectErrno(p.madvise(f, PS, MADV_FREE), "EINVAL");
  });

  it("the data stays until reclaim: PAGEOUT discards a clean lazyfree page, a rewritten one stays [host]; no swap needed (shrink_folio_list)", async () => {
    const { k, p } = boot();
    const a = await p.mmap(0, 3 * PS, RW, ANON);
    await p.mainThread.write(a, fill(1, 1));
    await p.mainThread.write(a + PS, fill(2, 1));
    await p.mainThread.write(a + 2 * PS, fill(3, 1));
    await p.madvise(a, 3 * PS, MADV_FREE);
    expect(await p.mainThread.read(a, 1)).toEqual(new Uint8Array([1]));
    expect(p.pagemap(a, 1)[0]).toMatchObject({ present: true, exclusive: true });
    // Written again after MADV_FREE: no longer discardable.
    await p.mainThread.write(a + PS, fill(5, 1));
    await p.madvise(a, 3 * PS, MADV_PAGEOUT);
    expect(p.pagemap(a, 3).map((e) => e.present)).toEqual([false, true, false]);
    expect([...(await p.mainThread.read(a, 1)), ...(await p.mainThread.read(a + PS, 1)), ...(await p.mainThread.read(a + 2 * PS, 1))]).toEqual([0, 5, 0]);
    k.checkInvariants();
  });

  it("swapped-out pages are dropped outright: the next read is zero [host]", async () => {
    const { k, p } = boot(1, { swapPages: 64 });
    const a = await p.mmap(0, PS, RW, ANON);
    await p.mainThread.write(a, fill(7, 1));
    await p.madvise(a, PS, MADV_PAGEOUT);
    expect(p.pagemap(a, 1)[0]!.swapped).toBe(true);
    await p.madvise(a, PS, MADV_FREE);
    expect(p.pagemap(a, 1)[0]).toMatchObject({ present: false, swapped: false });
    expect(p.smaps()[0]!.swapBytes).toBe(0);
    expect(await p.mainThread.read(a, 1)).toEqual(new Uint8Array([0]));
    k.checkInvariants();
  });
});

describe("MADV_REMOVE (madvise_remove -> fallocate PUNCH_HOLE|KEEP_SIZE)", () => {
  it("punches the hole in the file: shared mappings see zeros, a private COW copy stays [host]", async () => {
    const { k, p } = boot();
    const fd = await p.memfdCreate("r");
    await p.ftruncate(fd, 2 * PS);
    const s1 = await p.mmap(0, 2 * PS, RW, MAP_SHARED, fd, 0);
    const s2 = await p.mmap(0, 2 * PS, RW, MAP_SHARED, fd, 0);
    const pv = await p.mmap(0, 2 * PS, RW, MAP_PRIVATE, fd, 0);
    await p.mainThread.write(s1, fill(7, 1));
    await p.mainThread.write(s1 + PS, fill(4, 1));
    await p.mainThread.read(s2, 1);
    await p.mainThread.write(pv, fill(9, 1));
    await p.mainThread.read(pv + PS, 1);
    await p.madvise(s1, 2 * PS, MADV_REMOVE);
    expect(p.pagemap(s1, 1)[0]!.present).toBe(false);
    expect(p.pagemap(s2, 1)[0]!.present).toBe(false);
    expect(p.pagemap(pv, 2).map((e) => e.present)).toEqual([true, false]);
    expect(await p.pread(fd, 2 * PS, 0)).toEqual(new Uint8Array(2 * PS));
    expect(await p.mainThread.read(pv, 1)).toEqual(new Uint8Array([9]));
    k.checkInvariants();
  });

  it("needs VM_SHARED|VM_MAYWRITE (EACCES): a private or read-only-fd mapping; anon is EINVAL", async () => {
    const { p } = boot();
    const fd = await p.memfdCreate("r");
    await p.ftruncate(fd, PS);
    const ro = await p.reopen(fd, O_RDONLY);
    await expectErrno(p.madvise(await p.mmap(0, PS, RW, MAP_PRIVATE, fd, 0), PS, MADV_REMOVE), "EACCES");
    await expectErrno(p.madvise(await p.mmap(0, PS, PROT_READ, MAP_SHARED, ro, 0), PS, MADV_REMOVE), "EACCES");
    await p.madvise(await p.mmap(0, PS, PROT_READ, MAP_SHARED, fd, 0), PS, MADV_REMOVE);
    await expectErrno(p.madvise(await p.mmap(0, PS, RW, ANON), PS, MADV_REMOVE), "EINVAL");
  });
});

describe("fork-time advice", () => {
  it("DONTFORK: the child has no such vma; WIPEONFORK: the child sees zeros; KEEPONFORK undoes it", async () => {
    const { k, p } = boot();
    const a = await p.mmap(0, 3 * PS, RW, ANON);
    await p.mainThread.write(a, fill(1, 3 * PS));
    await p.madvise(a, PS, MADV_DONTFORK);
    await p.madvise(a + PS, PS, MADV_WIPEONFORK);
    const c = await p.fork();
    await expect(c.mainThread.read(a, 1)).rejects.toBeInstanceOf(SignalError);
    expect(await c.mainThread.read(a + PS, 1)).toEqual(new Uint8Array([0]));
    expect(await c.mainThread.read(a + 2 * PS, 1)).toEqual(new Uint8Array([1]));
    expect(await p.mainThread.read(a + PS, 1)).toEqual(new Uint8Array([1]));
    await p.madvise(a + PS, PS, MADV_KEEPONFORK);
    const c2 = await p.fork();
    expect(await c2.mainThread.read(a + PS, 1)).toEqual(new Uint8Array([1]));
    k.checkInvariants();
  });
});

describe("guard regions (MADV_GUARD_INSTALL / MADV_GUARD_REMOVE)", () => {
  it("install zaps what is there and leaves guard markers (S1 G1); access is SIGSEGV; the vma gets sticky 'gu' [host]", async () => {
    const { k, p } = boot();
    const a = await p.mmap(0, 4 * PS, RW, ANON);
    await p.mainThread.write(a, fill(1, 1));
    const pfn = p.pagemap(a, 1)[0]!.pfn!;
    await p.madvise(a, 2 * PS, MADV_GUARD_INSTALL);
    expect(p.pagemap(a, 2).map((e) => [e.present, e.swapped, e.guard])).toEqual([
      [false, true, true],
      [false, true, true],
    ]);
    expect(k.kpagecount(pfn)).toBe(0);
    expect(p.smaps().map((v) => v.vmFlags)).toEqual([["rd", "wr", "mr", "mw", "me", "gu", "ac"]]);
    await expect(p.mainThread.read(a + PS, 1)).rejects.toMatchObject({ signal: "SIGSEGV" });
    await expect(p.mainThread.write(a, fill(2, 1))).rejects.toMatchObject({ signal: "SIGSEGV" });
    // DONTNEED keeps guards; GUARD_REMOVE drops only them and 'gu' stays.
    await p.madvise(a, 4 * PS, MADV_DONTNEED);
    expect(p.pagemap(a, 1)[0]!.guard).toBe(true);
    await p.mainThread.write(a + 2 * PS, fill(3, 1));
    await p.madvise(a, 4 * PS, MADV_GUARD_REMOVE);
    expect(p.pagemap(a, 3).map((e) => e.present || e.swapped)).toEqual([false, false, true]);
    expect(p.smaps()[0]!.vmFlags).toContain("gu");
    expect(await p.mainThread.read(a, 1)).toEqual(new Uint8Array([0]));
    k.checkInvariants();
  });

  it("works on shmem and read-only mappings; markers survive MADV_REMOVE and fork copies them [host]", async () => {
    const { k, p } = boot();
    const fd = await p.memfdCreate("g");
    await p.ftruncate(fd, 2 * PS);
    const d = await p.mmap(0, 2 * PS, RW, MAP_SHARED, fd, 0);
    await p.mainThread.write(d + PS, fill(5, 1));
    await p.madvise(d + PS, PS, MADV_GUARD_INSTALL);
    await p.madvise(d, 2 * PS, MADV_REMOVE);
    expect(p.pagemap(d + PS, 1)[0]!.guard).toBe(true);
    const ro = await p.mmap(0, PS, PROT_READ, MAP_SHARED, await p.reopen(fd, O_RDONLY), 0);
    await p.madvise(ro, PS, MADV_GUARD_INSTALL);
    const b = await p.mmap(0, PS, RW, ANON);
    await p.madvise(b, PS, MADV_GUARD_INSTALL);
    const c = await p.fork();
    expect(c.pagemap(d + PS, 1)[0]!.guard).toBe(true);
    expect(c.pagemap(b, 1)[0]!.guard).toBe(true);
    expect(c.smaps().find((v) => v.start === d)!.vmFlags).toEqual([...MEMFD_SHARED_FLAGS.slice(0, 7), "gu"]);
    k.checkInvariants();
  });

  it("'gu' is sticky: a new mapping next to a guarded vma merges with it [host]", async () => {
    const { k, p } = boot();
    const a = await p.mmap(0x20000000, 4 * PS, RW, ANON | MAP_FIXED);
    await p.madvise(a + PS, PS, MADV_GUARD_INSTALL);
    await p.mmap(a - 4 * PS, 4 * PS, RW, ANON | MAP_FIXED);
    expect(p.smaps().map((v) => [v.start - a, v.end - a, v.vmFlags.includes("gu")])).toEqual([[-4 * PS, 4 * PS, true]]);
    k.checkInvariants();
  });

  it("over a uffd-wp marker of a file vma, which zap keeps: EAGAIN (Linux livelocks restarting the syscall)", async () => {
    const { k, p, uffd } = await setup();
    const s = await p.mmap(0, 2 * PS, RW, MAP_SHARED | MAP_ANONYMOUS);
    await register(p, uffd, s, 2 * PS, UFFDIO_REGISTER_MODE_WP | UFFDIO_REGISTER_MODE_MISSING);
    await p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: s, len: 2 * PS }, mode: UFFDIO_WRITEPROTECT_MODE_WP });
    expect(p.pagemap(s, 1)[0]).toMatchObject({ swapped: true, uffdWp: true });
    await expectErrno(p.madvise(s, PS, MADV_GUARD_INSTALL), "EAGAIN");
    expect(p.pagemap(s, 1)[0]).toMatchObject({ uffdWp: true, guard: false });
    k.checkInvariants();
  });
});

describe("MADV_POPULATE_READ / MADV_POPULATE_WRITE (faultin_page_range)", () => {
  it("a hole: pages before it are populated, then ENOMEM; starting in a hole is ENOMEM [host]", async () => {
    const { k, p } = boot();
    const a = await p.mmap(0, 8 * PS, RW, ANON);
    await p.munmap(a + 2 * PS, PS);
    await expectErrno(p.madvise(a, 4 * PS, MADV_POPULATE_WRITE), "ENOMEM");
    expect(p.pagemap(a, 4).map((e) => [e.present, e.exclusive])).toEqual([
      [true, true],
      [true, true],
      [false, false],
      [false, false],
    ]);
    await expectErrno(p.madvise(a + 2 * PS, 2 * PS, MADV_POPULATE_READ), "ENOMEM");
    expect(p.pagemap(a + 3 * PS, 1)[0]!.present).toBe(false);
    k.checkInvariants();
  });

  it("READ maps the zero page, WRITE then breaks COW into an exclusive page [host]", async () => {
    const { k, p } = boot();
    const a = await p.mmap(0, PS, RW, ANON);
    await p.madvise(a, PS, MADV_POPULATE_READ);
    expect(p.pagemap(a, 1)[0]).toMatchObject({ present: true, exclusive: false, pfn: k.zeroPfn });
    await p.madvise(a, PS, MADV_POPULATE_WRITE);
    expect(p.pagemap(a, 1)[0]).toMatchObject({ present: true, exclusive: true, file: false });
    expect(await p.mainThread.read(a, 1)).toEqual(new Uint8Array([0]));
    k.checkInvariants();
  });

  it("SIGSEGV/SIGBUS become EFAULT (guard, beyond EOF), poison EHWPOISON; a private file write COWs [host]", async () => {
    const { k, p, uffd } = await setup();
    const a = await p.mmap(0, 4 * PS, RW, ANON);
    await p.madvise(a + PS, PS, MADV_GUARD_INSTALL);
    await expectErrno(p.madvise(a + PS, PS, MADV_POPULATE_READ), "EFAULT");
    await expectErrno(p.madvise(a, 3 * PS, MADV_POPULATE_WRITE), "EFAULT");
    expect(p.pagemap(a + 2 * PS, 1)[0]!.present).toBe(false);
    const fd = await p.memfdCreate("p");
    await p.ftruncate(fd, 2 * PS);
    const m = await p.mmap(0, 4 * PS, RW, MAP_SHARED, fd, 0);
    await expectErrno(p.madvise(m, 4 * PS, MADV_POPULATE_READ), "EFAULT");
    expect(p.pagemap(m, 3).map((e) => [e.present, e.file])).toEqual([
      [true, true],
      [true, true],
      [false, false],
    ]);
    const mp = await p.mmap(0, 2 * PS, RW, MAP_PRIVATE, fd, 0);
    await p.madvise(mp, 2 * PS, MADV_POPULATE_WRITE);
    expect(p.pagemap(mp, 1)[0]).toMatchObject({ present: true, file: false, exclusive: true });
    const q = await p.mmap(0, PS, RW, ANON);
    await register(p, uffd, q, PS, UFFDIO_REGISTER_MODE_MISSING);
    await p.ioctl(uffd, UFFDIO_POISON, { range: { start: q, len: PS }, mode: 0 });
    await expectErrno(p.madvise(q, PS, MADV_POPULATE_READ), "EHWPOISON");
    await expectErrno(p.madvise(q, PS, MADV_POPULATE_WRITE), "EHWPOISON");
    k.checkInvariants();
  });

  it("a MISSING userfault blocks POPULATE_WRITE with a write fault message until resolved (GUP, not user mode)", async () => {
    const { k, p, uffd } = await setup();
    const a = await p.mmap(0, 2 * PS, RW, ANON);
    await register(p, uffd, a, 2 * PS, UFFDIO_REGISTER_MODE_MISSING);
    const pop = p.madvise(a, 2 * PS, MADV_POPULATE_WRITE);
    expect(await isBlocked(k, pop)).toBe(true);
    const [m] = await readMsgs(p, uffd);
    expect(m).toMatchObject({ event: UFFD_EVENT_PAGEFAULT, arg: { pagefault: { flags: UFFD_PAGEFAULT_FLAG_WRITE, address: a } } });
    await p.ioctl(uffd, UFFDIO_COPY, { dst: a, src: fill(4, 2 * PS), len: 2 * PS, mode: 0 });
    await pop;
    expect(await p.mainThread.read(a + PS, 1)).toEqual(new Uint8Array([4]));
    k.checkInvariants();
  });

  it("a UFFD_USER_MODE_ONLY or SIGBUS-feature context turns the populate into EFAULT [host]", async () => {
    const { k, p } = boot();
    for (const [flags, features] of [
      [O_NONBLOCK | UFFD_USER_MODE_ONLY, 0],
      [O_NONBLOCK, UFFD_FEATURE_SIGBUS],
    ] as const) {
      const u = await p.userfaultfd(flags);
      await p.ioctl(u, UFFDIO_API, { api: UFFD_API, features });
      const a = await p.mmap(0, PS, RW, ANON);
      await register(p, u, a, PS, UFFDIO_REGISTER_MODE_MISSING);
      await expectErrno(p.madvise(a, PS, MADV_POPULATE_READ), "EFAULT");
    }
    k.checkInvariants();
  });
});

describe("MADV_COLLAPSE without THP (khugepaged.c:madvise_collapse)", () => {
  const HP = 512 * PS;
  async function aligned(p: Process, prot = RW, flags = ANON): Promise<number> {
    const raw = await p.mmap(0, 3 * HP, prot, flags);
    const a = Math.ceil(raw / HP) * HP;
    if (a > raw) await p.munmap(raw, a - raw);
    await p.munmap(a + HP, raw + 3 * HP - (a + HP));
    return a;
  }

  it("answers as the host: EINVAL, EBUSY or success leaving base pages", async () => {
    const { k, p, uffd } = await setup();
    let a = await aligned(p);
    expect(await errnoOf(p.madvise(a, HP, MADV_COLLAPSE)), "no page table").toBe("EINVAL");
    await p.mainThread.write(a, fill(1, 1));
    expect(await errnoOf(p.madvise(a, PS, MADV_COLLAPSE)), "no whole PMD in range").toBe("OK");
    expect(await errnoOf(p.madvise(a, HP, MADV_COLLAPSE)), "anon with a page").toBe("OK");
    expect(p.pagemap(a, 2).map((e) => e.present)).toEqual([true, false]);
    await p.madvise(a, HP, MADV_NOHUGEPAGE);
    expect(await errnoOf(p.madvise(a, HP, MADV_COLLAPSE)), "VM_NOHUGEPAGE").toBe("EINVAL");
    a = await aligned(p, RW, MAP_SHARED | MAP_ANONYMOUS);
    await p.mainThread.write(a, fill(1, 1));
    expect(await errnoOf(p.madvise(a, HP, MADV_COLLAPSE)), "shmem").toBe("EINVAL");
    a = await aligned(p);
    await p.mainThread.write(a, fill(1, 1));
    await p.madvise(a + PS, PS, MADV_GUARD_INSTALL);
    expect(await errnoOf(p.madvise(a, HP, MADV_COLLAPSE)), "guard marker").toBe("EINVAL");
    const big = await p.mmap(0, 4 * HP, RW, ANON);
    expect(await errnoOf(p.madvise(big + (big % HP === 0 ? PS : 0), 4 * PS, MADV_COLLAPSE)), "4 pages").toBe("OK");
    a = await aligned(p);
    await p.mainThread.write(a, fill(1, 1));
    await register(p, uffd, a, HP, UFFDIO_REGISTER_MODE_MISSING);
    expect(await errnoOf(p.madvise(a, HP, MADV_COLLAPSE)), "armed with empty ptes").toBe("EBUSY");
    const small = await p.mmap(0, 4 * PS, RW, ANON);
    expect(await errnoOf(p.madvise(small, PS, MADV_COLLAPSE)), "vma too small").toBe("EINVAL");
    k.checkInvariants();
  });
});

describe("MADV_WILLNEED and MADV_COLD", () => {
  it("WILLNEED reads swapped-out pages into the swap cache without mapping them", async () => {
    const { k, p } = boot(1, { swapPages: 64 });
    const a = await p.mmap(0, 2 * PS, RW, ANON);
    await p.mainThread.write(a, fill(6, 2 * PS));
    await p.madvise(a, 2 * PS, MADV_PAGEOUT);
    expect(Array.from(await p.mincore(a, 2 * PS))).toEqual([0, 0]);
    await p.madvise(a, 2 * PS, MADV_WILLNEED);
    expect(Array.from(await p.mincore(a, 2 * PS))).toEqual([1, 1]);
    expect(p.pagemap(a, 1)[0]).toMatchObject({ present: false, swapped: true });
    expect(await p.mainThread.read(a + PS, 1)).toEqual(new Uint8Array([6]));
    k.checkInvariants();
  });

  it("WILLNEED on shmem reads swapped cache entries in; COLD changes no data", async () => {
    const { k, p } = boot(1, { swapPages: 64 });
    const s = await p.mmap(0, PS, RW, MAP_SHARED | MAP_ANONYMOUS);
    await p.mainThread.write(s, fill(8, 1));
    await p.madvise(s, PS, MADV_PAGEOUT);
    expect(Array.from(await p.mincore(s, PS))).toEqual([0]);
    await p.madvise(s, PS, MADV_WILLNEED);
    expect(Array.from(await p.mincore(s, PS))).toEqual([1]);
    await p.madvise(s, PS, MADV_COLD);
    expect(await p.mainThread.read(s, 1)).toEqual(new Uint8Array([8]));
    k.checkInvariants();
  });
});

describe("userfaultfd: UFFD_EVENT_REMOVE before zapping (linux-rules §4)", () => {
  async function removeEvent(k: Kernel, p: Process, uffd: number, madv: Promise<void>): Promise<unknown> {
    expect(await isBlocked(k, madv), "madvise waits for the REMOVE event to be read").toBe(true);
    const msgs = await readMsgs(p, uffd);
    return msgs;
  }

  it("DONTNEED, FREE and REMOVE send REMOVE with the range clipped to the vma; the vma stays registered", async () => {
    const { k, p, uffd } = await setup(UFFD_FEATURE_EVENT_REMOVE);
    const a = await p.mmap(0, 4 * PS, RW, ANON);
    await register(p, uffd, a + PS, 2 * PS, UFFDIO_REGISTER_MODE_MISSING);
    await p.ioctl(uffd, UFFDIO_COPY, { dst: a + PS, src: fill(2, 2 * PS), len: 2 * PS, mode: 0 });
    const d = p.madvise(a, 4 * PS, MADV_DONTNEED);
    expect(await removeEvent(k, p, uffd, d)).toEqual([{ event: UFFD_EVENT_REMOVE, arg: { remove: { start: a + PS, end: a + 3 * PS } } }]);
    await d;
    expect(p.pagemap(a + PS, 1)[0]!.present).toBe(false);
    expect(vmaAt(p, a + PS).vmFlags).toContain("um");
    const f = p.madvise(a + PS, PS, MADV_FREE);
    expect(await removeEvent(k, p, uffd, f)).toEqual([{ event: UFFD_EVENT_REMOVE, arg: { remove: { start: a + PS, end: a + 2 * PS } } }]);
    await f;
    k.checkInvariants();
  });

  it("FREE on a registered shmem vma: the event comes first, then EINVAL (madvise_dontneed_free order)", async () => {
    const { k, p, uffd } = await setup(UFFD_FEATURE_EVENT_REMOVE);
    const s = await p.mmap(0, PS, RW, MAP_SHARED | MAP_ANONYMOUS);
    await register(p, uffd, s, PS, UFFDIO_REGISTER_MODE_MISSING);
    const f = p.madvise(s, PS, MADV_FREE);
    expect(await removeEvent(k, p, uffd, f)).toHaveLength(1);
    await expectErrno(f, "EINVAL");
    const r = p.madvise(s, PS, MADV_REMOVE);
    expect(await removeEvent(k, p, uffd, r)).toEqual([{ event: UFFD_EVENT_REMOVE, arg: { remove: { start: s, end: s + PS } } }]);
    await r;
    // MADV_REMOVE on private anon fails before any event [host].
    const a = await p.mmap(0, PS, RW, ANON);
    await register(p, uffd, a, PS, UFFDIO_REGISTER_MODE_MISSING);
    await expectErrno(p.madvise(a, PS, MADV_REMOVE), "EINVAL");
    expect(await readMsgs(p, uffd)).toEqual([]);
    k.checkInvariants();
  });

  it("shmem DONTNEED and REMOVE keep the uffd-wp marker; anon DONTNEED drops it (linux-rules §8.13, linux-rules §5.7)", async () => {
    const { k, p, uffd } = await setup(0x2000 /* UFFD_FEATURE_WP_UNPOPULATED */);
    const s = await p.mmap(0, 2 * PS, RW, MAP_SHARED | MAP_ANONYMOUS);
    const a = await p.mmap(0, PS, RW, ANON);
    await p.mainThread.write(s, fill(1, 2 * PS));
    await p.mainThread.write(a, fill(1, 1));
    for (const [addr, len] of [
      [s, 2 * PS],
      [a, PS],
    ] as const) {
      await register(p, uffd, addr, len, UFFDIO_REGISTER_MODE_WP);
      await p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: addr, len }, mode: UFFDIO_WRITEPROTECT_MODE_WP });
    }
    await p.madvise(s, PS, MADV_DONTNEED);
    await p.madvise(s + PS, PS, MADV_REMOVE);
    await p.madvise(a, PS, MADV_DONTNEED);
    expect(p.pagemap(s, 2).map((e) => [e.present, e.swapped, e.uffdWp])).toEqual([
      [false, true, true],
      [false, true, true],
    ]);
    expect(p.pagemap(a, 1)[0]).toMatchObject({ present: false, swapped: false, uffdWp: false });
    k.checkInvariants();
  });
});
