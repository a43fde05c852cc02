/**
 * The background-snapshot example end to end. The kernel facts it relies on:
 * - UFFDIO_WRITEPROTECT sets uffd-wp on present ptes (read-only, pagemap bit 57) and, with
 *   WP_UNPOPULATED, leaves a uffd-wp marker in empty anon ptes, which pagemap reports as swapped
 *   (docs/linux-rules.md §2.7, §3.6, §8.16); the zero page is protected like any present pte;
 * - a write to a protected pte is a wp userfault that blocks until UFFDIO_WRITEPROTECT mode 0
 *   wakes it (§5.2 step 1, §2.7 row 12); reads are not affected;
 * - docs/handler-survey.md §1.7: QEMU's background snapshot saves the old page on a write fault, then unprotects.
 */
import { describe, expect, it } from "vitest";
import { PAGE_SIZE } from "@uffd/kernel/uapi";
import { backgroundSnapshotNarrative, runBackgroundSnapshot } from "../src/main.ts";

describe("background snapshot with uffd-wp (QEMU-style)", () => {
  it("writes an image equal, byte for byte, to memory at the instant of protection while the guest keeps writing", async () => {
    const r = await runBackgroundSnapshot({ seed: 1 });
    // Everything was protected: present pages with the pte bit, empty ones with a marker.
    expect(r.protectedAtStart.present + r.protectedAtStart.markers).toBe(r.pages);
    expect(r.protectedAtStart.markers).toBeGreaterThan(0);
    expect(r.samplesAtStart.written.entry).toMatchObject({ present: true, swapped: false, exclusive: true, uffdWp: true });
    expect(r.samplesAtStart.written.kpagecount).toBe(1);
    expect(r.samplesAtStart.zeroPage.entry).toMatchObject({ present: true, exclusive: false, uffdWp: true, pfn: r.kernel.zeroPfn });
    expect(r.samplesAtStart.zeroPage.kpagecount).toBe(0);
    expect(r.samplesAtStart.untouched.entry).toMatchObject({ present: false, swapped: true, uffdWp: true, pfn: null });

    // The guest really ran: many pages changed while the saver worked.
    expect(r.writes).toBe(80);
    expect(r.changedDuringSnapshot.length).toBeGreaterThan(10);
    // ... and yet the image is the memory at snapshot start, exactly.
    expect(r.imageMismatches).toEqual([]);
    expect(r.image).toEqual(r.memoryAtStart);
    expect(new TextDecoder().decode(r.image.subarray(0, 12))).toBe("boot page 0;");
    // The memory itself holds the guest's writes.
    expect(r.memoryAtEnd).toEqual(r.modelAtEnd);

    // Each page saved exactly once; writes that got ahead of the saver made it save out of order.
    expect(r.savedInOrder + r.savedOnFault).toBe(r.pages);
    expect(r.savedOnFault).toBeGreaterThan(0);
    expect(r.wpFaults.length).toBeGreaterThanOrEqual(r.savedOnFault);
    expect(r.metrics!.faults.wp).toBe(r.wpFaults.length);
    expect(r.metrics!.faults.missing).toBe(0);
    expect(r.stillProtected).toBe(0);
    expect(r.metrics!.policy.errors).toBe(0);
    r.kernel.checkInvariants();
  });

  it("without write protection the same saver writes torn pages: each one a page the guest changed before the saver got there", async () => {
    const r = await runBackgroundSnapshot({ seed: 1, protect: false });
    expect(r.metrics).toBeNull();
    expect(r.wpFaults).toEqual([]);
    expect(r.imageMismatches.length).toBeGreaterThan(0);
    for (const p of r.imageMismatches) expect(r.changedDuringSnapshot).toContain(p);
    const p = r.imageMismatches[0]!;
    expect(r.image.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE)).not.toEqual(r.memoryAtStart.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE));
    expect(r.memoryAtEnd).toEqual(r.modelAtEnd);
    r.kernel.checkInvariants();
  });

  it("holds for other seeds, sizes and saver speeds", async () => {
    for (const [seed, pages, ms] of [[2, 32, 1], [3, 64, 3], [4, 16, 5]] as const) {
      const r = await runBackgroundSnapshot({ seed, pages, saveMsPerPage: ms });
      expect(r.imageMismatches, `seed ${seed}`).toEqual([]);
      expect(r.memoryAtEnd).toEqual(r.modelAtEnd);
      expect(r.savedInOrder + r.savedOnFault).toBe(pages);
      r.kernel.checkInvariants();
    }
  });

  it("prints a deterministic narrative", async () => {
    const a = await backgroundSnapshotNarrative(7);
    expect(await backgroundSnapshotNarrative(7)).toEqual(a);
    expect(a).toContain("4. Image vs memory at snapshot start: identical.");
    expect(a.some((l) => /^4\. Image vs memory at snapshot start: \d+ torn pages/.test(l))).toBe(true);
  });
});
