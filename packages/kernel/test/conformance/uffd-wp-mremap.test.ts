/**
 * Port of tools/testing/selftests/mm/uffd-wp-mremap.c (docs/linux-rules.md §6.3) for base pages:
 * the 4 base-page testcases (shared/private x swapped-out or not). The THP and hugetlb testcases
 * are left out: the simulation has neither.
 *
 * A uffd opened with features = 0 (no UFFD_FEATURE_EVENT_REMAP) registers WP on one folio and
 * write-protects it; mremap(MAYMOVE|FIXED) then moves it. Without EVENT_REMAP the moved vma loses
 * its registration and move_ptes() clears uffd-wp on every moved entry: present pte, swap pte,
 * and a shmem uffd-wp marker (which simply disappears). Host-verified on 6.18.44 with a swap file:
 *   shared, in memory:  P1 F1 WP1 -> P1 F1 WP0
 *   private, in memory: P1 X1 WP1 -> P1 X1 WP0
 *   shared, paged out:  P0 S1 WP1 (marker) -> P0 S0 WP0 (pte none; the page stays in the shmem swap)
 *   private, paged out: P0 S1 WP1 (swap pte) -> P0 S1 WP0
 */
import { describe, expect, it } from "vitest";
import { Kernel } from "@uffd/kernel";
import { MADV_PAGEOUT, MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, MREMAP_FIXED, MREMAP_MAYMOVE, PROT_NONE, UFFDIO_WRITEPROTECT, UFFDIO_WRITEPROTECT_MODE_WP } from "@uffd/kernel/uapi";
import { bytes, errnoOf, modeOf, PAGE, pm, pmBits, register, RW, UFFD_FLAGS, uffdOpen } from "./harness.ts";

interface TestCase {
  private: boolean;
  swapout: boolean;
}

/** testcases[] "base pages" */
const testcases: TestCase[] = [
  { private: false, swapout: false },
  { private: true, swapout: false },
  { private: false, swapout: true },
  { private: true, swapout: true },
];

async function testOneFolio(tc: TestCase): Promise<void> {
  const k = new Kernel({ seed: 7, swapPages: 64 });
  const p = k.spawn();
  const size = PAGE;
  // alloc_one_folio(): populate by writing the first byte, check populated, memset non-zero.
  const mem = await p.mmap(0, size, RW, MAP_ANONYMOUS | (tc.private ? MAP_PRIVATE : MAP_SHARED));
  await p.mainThread.write(mem, bytes(1, 1));
  expect(pm(p, mem).present, "pagemap_is_populated").toBe(true);
  await p.mainThread.write(mem, bytes(size, 1));
  // Register range for uffd-wp: features = 0, so no UFFD_FEATURE_EVENT_REMAP.
  const uffd = await uffdOpen(p, 0, UFFD_FLAGS);
  await register(p, uffd, mem, size, modeOf(false, true, false));
  await p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: mem, len: size }, mode: UFFDIO_WRITEPROTECT_MODE_WP });
  if (tc.swapout) {
    await errnoOf(p.madvise(mem, size, MADV_PAGEOUT));
    expect(pm(p, mem).swapped, "range_is_swapped (the kernel has a swap device)").toBe(true);
  }
  // Check that uffd-wp is set for all PTEs in range.
  const before = pm(p, mem);
  expect(before.uffdWp).toBe(true);
  expect(pmBits(before)).toBe(tc.swapout ? "P0 S1 F0 X0 WP1" : tc.private ? "P1 S0 F0 X1 WP1" : "P1 S0 F1 X1 WP1");
  // mmap_aligned(size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS)
  const raw = await p.mmap(0, 2 * size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS);
  const addr = raw;
  await p.munmap(addr + size, size);
  expect(await p.mremap(mem, size, size, MREMAP_FIXED | MREMAP_MAYMOVE, addr)).toBe(addr);
  // Check that uffd-wp is cleared for all PTEs in range.
  const after = pm(p, addr);
  expect(after.uffdWp).toBe(false);
  expect(pmBits(after)).toBe(tc.swapout ? (tc.private ? "P0 S1 F0 X0 WP0" : "P0 S0 F0 X0 WP0") : tc.private ? "P1 S0 F0 X1 WP0" : "P1 S0 F1 X1 WP0");
  // The moved vma is no longer registered: WRITEPROTECT there is ENOENT (§4, no EVENT_REMAP).
  expect(await errnoOf(p.ioctl(uffd, UFFDIO_WRITEPROTECT, { range: { start: addr, len: size }, mode: UFFDIO_WRITEPROTECT_MODE_WP }))).toBe("ENOENT");
  // The data survived, and a write needs no userfault.
  expect(await p.mainThread.read(addr, size)).toEqual(bytes(size, 1));
  await p.mainThread.write(addr, bytes(1, 2));
  expect(pm(p, addr).uffdWp).toBe(false);
  await p.munmap(addr, size);
  await p.close(uffd);
  k.checkInvariants();
}

describe("uffd-wp-mremap.c", () => {
  for (const tc of testcases) {
    // uffd-wp-mremap.c: test_one_folio(size, private, swapout, hugetlb = false)
    it(`test_one_folio(size=4096, private=${tc.private}, swapout=${tc.swapout}, hugetlb=false)`, () => testOneFolio(tc));
  }
});
