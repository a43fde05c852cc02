/**
 * Vma splits and merges driven by madvise and mremap (mm/vma.c:vma_modify_flags(),
 * vma_merge_new_range(), copy_vma()), as smaps shows them on the 6.18 host.
 */
import { describe, expect, it } from "vitest";
import type { Process } from "@uffd/kernel";
import {
  MADV_DOFORK,
  MADV_DONTFORK,
  MADV_GUARD_INSTALL,
  MADV_NORMAL,
  MADV_RANDOM,
  MADV_SEQUENTIAL,
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_PRIVATE,
  MAP_SHARED,
  MREMAP_FIXED,
  MREMAP_MAYMOVE,
  PAGE_SIZE,
  PROT_NONE,
  PROT_READ,
  PROT_WRITE,
} from "@uffd/kernel/uapi";
import { boot } from "../core/helpers.ts";
import { fill } from "../uffd/helpers.ts";

const PS = PAGE_SIZE;
const RW = PROT_READ | PROT_WRITE;
const ANON = MAP_PRIVATE | MAP_ANONYMOUS;

/** [start, end) in pages from base, with the VmFlags that differ from the plain anon set. */
function vmas(p: Process, base: number, pages: number): Array<[number, number, string]> {
  const plain = new Set(["rd", "wr", "mr", "mw", "me", "ac", "sh", "ms"]);
  return p
    .smaps()
    .filter((v) => v.end > base && v.start < base + pages * PS)
    .map((v) => [(v.start - base) / PS, (v.end - base) / PS, v.vmFlags.filter((f) => !plain.has(f)).join(" ")]);
}

describe("madvise splits and merges", () => {
  it("advice on the middle splits in three; undoing it merges back into one vma", async () => {
    const { k, p } = boot();
    const a = await p.mmap(0x30000000, 6 * PS, RW, ANON | MAP_FIXED);
    await p.mainThread.write(a, fill(1, 6 * PS));
    await p.madvise(a + 2 * PS, 2 * PS, MADV_DONTFORK);
    expect(vmas(p, a, 6)).toEqual([
      [0, 2, ""],
      [2, 4, "dc"],
      [4, 6, ""],
    ]);
    await p.madvise(a + 2 * PS, 2 * PS, MADV_DOFORK);
    expect(vmas(p, a, 6)).toEqual([[0, 6, ""]]);
    k.checkInvariants();
  });

  it("advice making a vma equal to its neighbour merges them; one that changes nothing does not split", async () => {
    const { k, p } = boot();
    const a = await p.mmap(0x30000000, 6 * PS, RW, ANON | MAP_FIXED);
    await p.madvise(a, 2 * PS, MADV_RANDOM);
    await p.madvise(a + 4 * PS, 2 * PS, MADV_SEQUENTIAL);
    expect(vmas(p, a, 6)).toEqual([
      [0, 2, "rr"],
      [2, 4, ""],
      [4, 6, "sr"],
    ]);
    await p.madvise(a + 2 * PS, 2 * PS, MADV_RANDOM);
    expect(vmas(p, a, 6)).toEqual([
      [0, 4, "rr"],
      [4, 6, "sr"],
    ]);
    // RANDOM over [0, 6): the SEQUENTIAL part switches and everything is one vma.
    await p.madvise(a + PS, 5 * PS, MADV_RANDOM);
    expect(vmas(p, a, 6)).toEqual([[0, 6, "rr"]]);
    await p.madvise(a + PS, PS, MADV_RANDOM);
    expect(vmas(p, a, 6)).toEqual([[0, 6, "rr"]]);
    await p.madvise(a, 6 * PS, MADV_NORMAL);
    expect(vmas(p, a, 6)).toEqual([[0, 6, ""]]);
    k.checkInvariants();
  });

  it("an anon vma and a shmem vma next to each other never merge", async () => {
    const { k, p } = boot();
    const a = await p.mmap(0x30000000, 4 * PS, RW, ANON | MAP_FIXED);
    await p.mmap(a + 2 * PS, 2 * PS, RW, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED);
    await p.madvise(a, 4 * PS, MADV_DONTFORK);
    await p.madvise(a, 4 * PS, MADV_DOFORK);
    expect(vmas(p, a, 4)).toEqual([
      [0, 2, ""],
      [2, 4, ""],
    ]);
    k.checkInvariants();
  });

  it("VM_MAYBE_GUARD is sticky: guarded and unguarded neighbours still merge, and the result is 'gu' [host]", async () => {
    const { k, p } = boot();
    const a = await p.mmap(0x30000000, 6 * PS, RW, ANON | MAP_FIXED);
    await p.madvise(a + 2 * PS, 2 * PS, MADV_DONTFORK);
    await p.madvise(a + 4 * PS, PS, MADV_GUARD_INSTALL);
    expect(vmas(p, a, 6)).toEqual([
      [0, 2, ""],
      [2, 4, "dc"],
      [4, 6, "gu"],
    ]);
    await p.madvise(a + 2 * PS, 2 * PS, MADV_DOFORK);
    expect(vmas(p, a, 6)).toEqual([[0, 6, "gu"]]);
    k.checkInvariants();
  });
});

describe("mremap splits and merges", () => {
  it("moving the middle of a vma out splits it; moving it back merges all three again [host]", async () => {
    const { k, p } = boot();
    const a = await p.mmap(0x30000000, 6 * PS, RW, ANON | MAP_FIXED);
    await p.mainThread.write(a, fill(1, 6 * PS));
    const t = await p.mmap(0x40000000, 2 * PS, PROT_NONE, ANON | MAP_FIXED);
    await p.mremap(a + 2 * PS, 2 * PS, 2 * PS, MREMAP_MAYMOVE | MREMAP_FIXED, t);
    expect(vmas(p, a, 6)).toEqual([
      [0, 2, ""],
      [4, 6, ""],
    ]);
    await p.mremap(t, 2 * PS, 2 * PS, MREMAP_MAYMOVE | MREMAP_FIXED, a + 2 * PS);
    expect(vmas(p, a, 6)).toEqual([[0, 6, ""]]);
    k.checkInvariants();
  });

  it("a faulted region moved next to an unrelated vma does not merge with it (pgoff and anon_vma differ)", async () => {
    const { k, p } = boot();
    const a = await p.mmap(0x30000000, 2 * PS, RW, ANON | MAP_FIXED);
    const b = await p.mmap(0x40000000, 2 * PS, RW, ANON | MAP_FIXED);
    await p.mainThread.write(a, fill(1, 2 * PS));
    await p.mainThread.write(b, fill(2, 2 * PS));
    await p.mremap(b, 2 * PS, 2 * PS, MREMAP_MAYMOVE | MREMAP_FIXED, a + 2 * PS);
    expect(vmas(p, a, 4)).toEqual([
      [0, 2, ""],
      [2, 4, ""],
    ]);
    expect(await p.mainThread.read(a + 2 * PS, 1)).toEqual(new Uint8Array([2]));
    k.checkInvariants();
  });
});
