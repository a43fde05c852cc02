/**
 * The compacting-gc example end to end. The kernel facts it relies on:
 * - mremap(MREMAP_MAYMOVE | MREMAP_DONTUNMAP) moves the pages and leaves the old range mapped
 *   and empty (mm/mremap.c; docs/linux-rules.md §4 for the registration side);
 * - UFFDIO_MOVE of a PageAnonExclusive page moves the frame (dst pfn = src pfn, src pte cleared);
 *   of a page shared with a fork child it fails with EBUSY and `move` = -EBUSY, and UFFDIO_COPY is
 *   the fallback (§2.10, §8.11; seed 003 "userfaultfd: UFFDIO_REMAP uABI");
 * - MADV_DONTFORK keeps the vma out of the child, so the pages stay exclusive (§5.3).
 */
import { describe, expect, it } from "vitest";
import { ERRNO } from "@uffd/kernel/uapi";
import { compactingGcNarrative, runCompactingGc, type CompactingGcResult } from "../src/main.ts";
import { OBJECTS_PER_PAGE } from "../src/heap.ts";

function byPage(r: CompactingGcResult) {
  return [...r.installs].sort((a, b) => a.page - b.page);
}

function commonChecks(r: CompactingGcResult): void {
  // Every to-space page installed exactly once; the heap tail stays empty.
  expect(byPage(r).map((i) => i.page)).toEqual([...Array(r.plan.toPages).keys()]);
  expect(r.heapPresent).toEqual([...Array(r.plan.heapPages).keys()].map((p) => p < r.plan.toPages));
  // The mutators saw every object they read at its new address, byte for byte.
  expect(r.objectsRead).toBeGreaterThan(20);
  expect(r.objectErrors).toBe(0);
  expect(r.metrics.policy.errors).toBe(0);
  expect(r.plan.live.length).toBeGreaterThan(3 * OBJECTS_PER_PAGE);
  r.kernel.checkInvariants();
}

describe("compacting GC with UFFDIO_MOVE (ART CMC style)", () => {
  it("without fork every page is moved, not copied: the heap page is the very frame that was in from-space or scratch", async () => {
    const r = await runCompactingGc({ seed: 1 });
    commonChecks(r);
    for (const i of byPage(r)) {
      expect(i.method).toBe(i.page < 3 ? "move-from-space" : "move-compacted");
      expect(i.dstPfn).toBe(i.srcPfn);
      expect(i.srcKpagecount).toBe(1);
      expect(i.moveError).toBeNull();
    }
    expect(r.installs.some((i) => i.by === "fault") && r.installs.some((i) => i.by === "collector")).toBe(true);
    expect(r.metrics.bytes.copy).toBe(0);
    expect(r.metrics.bytes.move).toBe(r.installs.filter((i) => i.by === "fault").length * 4096);
  });

  it("after fork without MADV_DONTFORK the shared dense pages give EBUSY (move = -EBUSY) and are copied; built pages still move (seed 003)", async () => {
    const r = await runCompactingGc({ seed: 1, forkBeforeGc: "fork" });
    commonChecks(r);
    for (const i of byPage(r)) {
      if (i.page < 3) {
        expect(i.method).toBe("copy-after-ebusy");
        expect(i.srcKpagecount).toBe(2); // still mapped by the child
        expect(i.dstPfn).not.toBe(i.srcPfn);
        if (i.by === "collector") expect(i.moveError).toEqual({ code: "EBUSY", move: -ERRNO.EBUSY });
      } else {
        expect(i.method).toBe("move-compacted");
        expect(i.dstPfn).toBe(i.srcPfn);
      }
    }
    // Both the raw collector path and the SDK's fault.move() fallback were exercised.
    expect(r.installs.some((i) => i.page < 3 && i.by === "collector" && i.moveError?.code === "EBUSY")).toBe(true);
    expect(r.installs.some((i) => i.page < 3 && i.by === "fault")).toBe(true);
    expect(r.metrics.bytes.copy).toBeGreaterThan(0);
    expect(r.childHasHeap).toBe(true);
    expect(r.childHeapHeader).toBe("object #0;");
  });

  it("after fork with MADV_DONTFORK on the heap the child has no heap and every page moves again", async () => {
    const r = await runCompactingGc({ seed: 1, forkBeforeGc: "fork-dontfork" });
    commonChecks(r);
    expect(r.childHasHeap).toBe(false);
    expect(r.installs.every((i) => i.method !== "copy-after-ebusy" && i.dstPfn === i.srcPfn)).toBe(true);
  });

  it("holds for other seeds and heap sizes", async () => {
    for (const [seed, heapPages, survival] of [[2, 24, 0.5], [3, 12, 0.25]] as const) {
      for (const forkBeforeGc of ["none", "fork"] as const) {
        const r = await runCompactingGc({ seed, heapPages, survival, forkBeforeGc });
        commonChecks(r);
        expect(r.installs.filter((i) => i.method === "copy-after-ebusy").length, `${seed} ${forkBeforeGc}`).toBe(forkBeforeGc === "fork" ? 3 : 0);
      }
    }
  });

  it("prints a deterministic narrative", async () => {
    const a = await compactingGcNarrative(4);
    expect(await compactingGcNarrative(4)).toEqual(a);
    expect(a.some((l) => /EBUSY \(move = -16\)$/.test(l))).toBe(true);
  });
});
