/**
 * The mm rules outside copy-on-write that a userfaultfd handler can observe, on every release
 * profile (docs/releases.md, "Other mm rules"). Every expectation is written out by hand from the
 * source named next to it, not derived from the profile data:
 * - pagemap bit 57 (PM_UFFD_WP): fb8e37f35a2f "mm/pagemap: export uffd-wp protection
 *   information", merged for 5.14. Before it fs/proc/task_mmu.c:pte_to_pagemap_entry() sets no
 *   such bit (its comment lists "Bits 57-60 zero"; read at v5.10.13). Bit 56 (PM_MMAP_EXCLUSIVE,
 *   "since 4.2" in Documentation/admin-guide/mm/pagemap.rst) is the same on every profile.
 * - uffd-wp across fork(): 8f34f1eac382 "mm/userfaultfd: fix uffd-wp special cases for fork()",
 *   merged for 5.14. Before it mm/memory.c:copy_present_pte() cleared the child's uffd-wp bit only
 *   when the parent's vma (`vm_flags = src_vma->vm_flags`) lacked VM_UFFD_WP, and
 *   copy_nonpresent_pte() copied a swap pte with its bit (read at v5.10.13); so a child forked
 *   without UFFD_FEATURE_EVENT_FORK keeps stale uffd-wp bits, and a uffd it registers for WP
 *   later gets write-protect faults for pages it never protected. The wp-fork tests of
 *   tools/testing/selftests/mm/uffd-unit-tests.c check the fixed behaviour. 5.10.y has the fix
 *   (copy_present_pte(), copy_nonpresent_pte() and copy_present_page() of Debian's 5.10.262
 *   ask userfaultfd_wp(dst_vma)), so only mainline v5.7 keeps the bits.
 * - fault-around on shmem read faults: no release differs in what a handler sees. 5.14's
 *   c949b097ef2e ("userfaultfd/shmem: support minor fault registration for shmem") made
 *   mm/memory.c:do_read_fault() skip do_fault_around() in MINOR-registered vmas, the same release
 *   that made MINOR on shmem possible; uffd_disable_fault_around() (WP or MINOR) came with WP on
 *   shmem (5.19), before which WP cannot be registered on a vma that has ->map_pages. MISSING
 *   never disabled it.
 * - a zap (MADV_DONTNEED) of a protected anonymous page: the same on every profile. v5.10.13's
 *   mm/memory.c:zap_pte_range() clears a present pte with nothing left behind, and 6.18's
 *   zap_install_uffd_wp_if_needed() installs no marker in an anonymous vma ("Zap on anonymous
 *   always means dropping everything"); the next write allocates a new page without a fault.
 * - uffd-wp across swap and on the zero page: the same on every profile. f45ec5ff16a7
 *   ("userfaultfd: wp: support swap and page migration", in the 5.7 uffd-wp series) keeps the bit
 *   in the swap pte and do_swap_page() maps the page back write-protected with it; a shmem page
 *   has uffd-wp only from 5.19 (b1f9e876862d), the series that added pte markers, so a paged-out
 *   protected shmem page leaves a marker wherever it can be protected at all. change_pte_range()
 *   (mm/mprotect.c) write-protects any present pte, the zero page's too, and do_wp_page() asks
 *   userfaultfd_pte_wp() before it looks at the page (read at v5.10.13 and 6.18).
 * - uffd-wp across mremap() without UFFD_FEATURE_EVENT_REMAP: 0cef0bb836e3 "mm: clear uffd-wp
 *   PTE/PMD state on mremap()" (6.13; in 6.12.y as 310ac886d68d from 6.12.11, in 6.1.y from
 *   6.1.191) made mm/mremap.c:move_ptes() clear the bit from present and swap ptes and drop a
 *   uffd-wp marker when vma_has_uffd_without_event_remap(). Before it move_ptes() moved every
 *   pte as it was while mremap_userfaultfd_prep() unregistered the new vma, so the moved pages
 *   keep stale uffd-wp bits (its commit message: vma flags cleared, pte flags not): the history
 *   profiles, mainline v5.7 and v5.18, show it, and so do 5.10.y and 5.15.y (move_ptes() of
 *   Debian's 5.10.262 and Ubuntu's 5.15.0-208.218, upstream 5.15.225, has no such clearing). With EVENT_REMAP the
 *   registration and the bits move on every release (mremap_userfaultfd_prep() keeps the ctx).
 *   The 6.18 side of both is checked against the host by remap-wp-* and swap-remap-wp-*
 *   (packages/conformance/corpus). A stale swap pte read back in before the range is registered
 *   again stays write-protected with its bit (do_swap_page() before c18160dba5ff, 6.11: a read
 *   fault maps read-only, pte_mkuffd_wp() then pte_wrprotect()); a stale shmem marker is cleared
 *   by the read (pte_marker_handle_uffd_wp() in a vma without VM_UFFD_WP).
 * - uffd-wp after UFFDIO_UNREGISTER or the last close: f369b07c8614 "mm/uffd: reset write
 *   protection when unregister with wp-mode" (6.0, in 5.19.y) made userfaultfd_unregister() and
 *   userfaultfd_release() clear the bits (uffd_wp_range()) of a WP-registered vma. Before it, and
 *   in 5.10.262 and 5.15.225 (both functions reset vm_flags and the context only), the ptes keep
 *   the bit: an unregistered write is an ordinary write fault (do_wp_page()'s
 *   userfaultfd_pte_wp() needs VM_UFFD_WP; wp_page_reuse() keeps the bit in the writable pte),
 *   and a page left alone faults once the range is registered for WP again.
 */
import { describe, expect, it } from "vitest";
import { ALL_RELEASES, type AnyRelease, Kernel, type Process, SignalError } from "@uffd/kernel";
import {
  MADV_DONTNEED,
  MREMAP_FIXED,
  MREMAP_MAYMOVE,
  PROT_NONE,
  UFFD_EVENT_REMAP,
  UFFD_FEATURE_EVENT_REMAP,
  UFFD_FEATURE_WP_HUGETLBFS_SHMEM,
  MADV_PAGEOUT,
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_PRIVATE,
  MAP_SHARED,
  UFFD_FEATURE_MINOR_SHMEM,
  UFFD_FEATURE_PAGEFAULT_FLAG_WP,
  UFFD_FEATURE_SIGBUS,
  UFFD_PAGEFAULT_FLAG_WP,
  UFFD_PAGEFAULT_FLAG_WRITE,
  UFFDIO_REGISTER_MODE_MINOR,
  UFFDIO_REGISTER_MODE_MISSING,
  UFFDIO_REGISTER_MODE_WP,
  UFFDIO_WRITEPROTECT,
  UFFDIO_WRITEPROTECT_MODE_WP,
} from "@uffd/kernel/uapi";
import { bytes, errnoOf, isBlocked, modeOf, PAGE, pagefault, pm, pmBits, readMsgs, register, RW, settle, track, uffdOpen, unregister, wpRange } from "./harness.ts";

/**
 * Whether pagemap reports uffd-wp in bit 57 (fb8e37f35a2f, 5.14): not in 5.10.y, whose
 * fs/proc/task_mmu.c (Debian's 5.10.262) still lists "Bits 57-60 zero". Written out per profile.
 */
const PAGEMAP_UFFD_WP: Readonly<Record<AnyRelease, boolean>> = {
  "5.7": false,
  "5.10": false,
  "5.15": true,
  "5.18": true,
  "6.1": true,
  "6.6": true,
  "6.12": true,
  "6.18": true,
};

/**
 * Whether fork() asks the child's vma about uffd-wp (8f34f1eac382, 5.14): 5.10.y has it too
 * (copy_present_pte(), copy_nonpresent_pte() and copy_present_page() of Debian's 5.10.262
 * mm/memory.c test userfaultfd_wp(dst_vma)); mainline v5.7 does not. Written out per profile.
 */
const FORK_ASKS_CHILD_VMA: Readonly<Record<AnyRelease, boolean>> = {
  "5.7": false,
  "5.10": true,
  "5.15": true,
  "5.18": true,
  "6.1": true,
  "6.6": true,
  "6.12": true,
  "6.18": true,
};

/**
 * Whether UFFDIO_UNREGISTER and the last close clear uffd-wp from the ptes (f369b07c8614, 6.0;
 * also taken by 5.19.y): userfaultfd_unregister() and userfaultfd_release() of Debian's
 * 5.10.262 and Ubuntu's 5.15.0-208.218 (upstream 5.15.225) reset the vma flags and nothing else;
 * 6.1.192's call uffd_wp_range() as 6.18's do. Written out per profile.
 */
const UNREGISTER_CLEARS_UFFD_WP: Readonly<Record<AnyRelease, boolean>> = {
  "5.7": false,
  "5.10": false,
  "5.15": false,
  "5.18": false,
  "6.1": true,
  "6.6": true,
  "6.12": true,
  "6.18": true,
};

/** MINOR on shmem (5.14, c949b097ef2e) and WP on shmem (5.19, b1f9e876862d), per profile. */
const SHMEM_MODES: Readonly<Record<AnyRelease, { minor: boolean; wp: boolean }>> = {
  "5.7": { minor: false, wp: false },
  "5.10": { minor: false, wp: false },
  "5.15": { minor: true, wp: false },
  "5.18": { minor: true, wp: false },
  "6.1": { minor: true, wp: true },
  "6.6": { minor: true, wp: true },
  "6.12": { minor: true, wp: true },
  "6.18": { minor: true, wp: true },
};

/**
 * Whether move_ptes() clears uffd-wp in a vma whose uffd lacks EVENT_REMAP: 0cef0bb836e3 (6.13),
 * in 6.12.y from 6.12.11 (310ac886d68d) and in 6.1.y from 6.1.191 (mm/mremap.c of 6.1.192), but
 * not in 5.10.y or 5.15.y (move_ptes() of Debian's 5.10.262 and Ubuntu's 5.15.0-208.218, upstream
 * 5.15.225, moves every pte as it is). 6.6.y is taken to have it as 6.1.y does (not verified).
 * The history profiles are mainline v5.7 and v5.18, before it. Written out per profile.
 */
const MREMAP_CLEARS_UFFD_WP: Readonly<Record<AnyRelease, boolean>> = {
  "5.7": false,
  "5.10": false,
  "5.15": false,
  "5.18": false,
  "6.1": true,
  "6.6": true,
  "6.12": true,
  "6.18": true,
};

/**
 * Whether UFFDIO_WRITEPROTECT may cross a vma boundary ("mm/userfaultfd: support WP on multiple
 * VMAs", 6.4). mwriteprotect_range() of 6.1.192, 5.15.225 and 5.10.262 (mm/userfaultfd.c) takes
 * find_dst_vma(), one vma holding the whole range, else ENOENT. Written out per profile.
 */
const WP_ACROSS_VMAS: Readonly<Record<AnyRelease, boolean>> = {
  "5.7": false,
  "5.10": false,
  "5.15": false,
  "5.18": false,
  "6.1": false,
  "6.6": true,
  "6.12": true,
  "6.18": true,
};

const PM_UFFD_WP = 1n << 57n;
const PM_MMAP_EXCLUSIVE = 1n << 56n;


/**
 * A write that must be a WP fault: it blocks, `uffd` reads exactly one WP|WRITE message for
 * `addr`, and the write completes once the page is un-protected.
 */
async function expectWpFault(k: Kernel, p: Process, uffd: number, addr: number, write: { promise: Promise<unknown>; readonly done: boolean }, what?: string): Promise<void> {
  expect(await isBlocked(k, write), what).toBe(true);
  expect((await readMsgs(p, uffd)).map((msg) => pagefault(msg))).toMatchObject([{ flags: UFFD_PAGEFAULT_FLAG_WP | UFFD_PAGEFAULT_FLAG_WRITE, address: addr }]);
  await wpRange(p, uffd, addr, PAGE, false);
  await settle(k, write.promise, "write after un-protect");
}
/** A process with one private anonymous page, written, registered for WP (features 0) and write-protected. */
async function protectedPage(release: AnyRelease, swapout: boolean): Promise<{ k: Kernel; p: Process; uffd: number; addr: number }> {
  const k = new Kernel({ release, seed: 11, swapPages: 16 });
  const p = k.spawn();
  const addr = await p.mmap(0, PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS);
  await p.mainThread.write(addr, bytes(PAGE, 7));
  const uffd = await uffdOpen(p, 0);
  await register(p, uffd, addr, PAGE, modeOf(false, true, false));
  await wpRange(p, uffd, addr, PAGE, true);
  if (swapout) {
    await errnoOf(p.madvise(addr, PAGE, MADV_PAGEOUT));
    expect(pm(p, addr), "MADV_PAGEOUT swapped the exclusive page out").toMatchObject({ present: false, swapped: true });
  }
  return { k, p, uffd, addr };
}

describe.each(ALL_RELEASES.map((r) => [r] as const))("release %s: mm rules a handler observes", (release) => {
  const fixed = PAGEMAP_UFFD_WP[release];
  const forkFixed = FORK_ASKS_CHILD_VMA[release];

  it(`pagemap bit 57 (PM_UFFD_WP) ${fixed ? "reports" : "does not report"} uffd-wp; bit 56 is reported either way`, async () => {
    const { k, p, uffd, addr } = await protectedPage(release, false);
    expect(pmBits(pm(p, addr))).toBe(fixed ? "P1 S0 F0 X1 WP1" : "P1 S0 F0 X1 WP0");
    const raw = p.pagemap(addr, 1, { format: "raw" })[0]!;
    expect(raw & PM_UFFD_WP).toBe(fixed ? PM_UFFD_WP : 0n);
    expect(raw & PM_MMAP_EXCLUSIVE).toBe(PM_MMAP_EXCLUSIVE);
    // The protection itself exists on every release (uffd-wp for anonymous memory is 5.7): a
    // write is a WP fault.
    const write = track(p.mainThread.write(addr, bytes(1, 9)));
    await expectWpFault(k, p, uffd, addr, write);
    expect(pmBits(pm(p, addr))).toBe("P1 S0 F0 X1 WP0");
    // A swapped-out protected page: the swap pte carries the bit (pte_swp_uffd_wp, 5.7).
    await wpRange(p, uffd, addr, PAGE, true);
    await errnoOf(p.madvise(addr, PAGE, MADV_PAGEOUT));
    expect(pmBits(pm(p, addr))).toBe(fixed ? "P0 S1 F0 X0 WP1" : "P0 S1 F0 X0 WP0");
    await p.close(uffd);
    k.checkInvariants();
  });

  for (const swapout of [false, true]) {
    const where = swapout ? "a swapped-out page (swap pte)" : "a present page";
    it(`fork() without EVENT_FORK, ${where}: the child ${forkFixed ? "drops" : "keeps"} uffd-wp; its own WP registration then ${forkFixed ? "sees no fault" : "faults"}`, async () => {
      const { k, p, uffd, addr } = await protectedPage(release, swapout);
      const child = await settle(k, p.fork(), "fork");
      const cu = await uffdOpen(child, 0);
      await register(child, cu, addr, PAGE, modeOf(false, true, false));
      // 8f34f1eac382 and later: nothing protected in the child until it protects something.
      if (forkFixed) expect(pm(child, addr).uffdWp).toBe(false);
      const write = track(child.mainThread.write(addr, bytes(1, 3)));
      if (forkFixed) {
        await settle(k, write.promise, "child write");
        expect(await readMsgs(child, cu)).toEqual([]);
      } else {
        // The stale bit: a WP fault on a page the child never write-protected.
        await expectWpFault(k, child, cu, addr, write);
      }
      expect(await child.mainThread.read(addr, 2)).toEqual(new Uint8Array([3, 7]));
      // The parent's page is still protected and unchanged.
      expect(await p.mainThread.read(addr, 2)).toEqual(new Uint8Array([7, 7]));
      expect(await readMsgs(p, uffd)).toEqual([]);
      await child.close(cu);
      await child.exit(0);
      await p.waitpid(child.pid);
      await p.close(uffd);
      k.checkInvariants();
    });
  }

  for (const how of ["UFFDIO_UNREGISTER", "close"] as const) {
    for (const swapout of [false, true]) {
      const where = swapout ? "a swapped-out page (swap pte)" : "a present page";
      const clears = UNREGISTER_CLEARS_UFFD_WP[release];
      it(`${how} of a WP range, ${where}: the bit ${clears ? "is cleared" : "stays"}; a new WP registration then ${clears ? "sees no fault" : "faults"}`, async () => {
        const { k, p, uffd, addr } = await protectedPage(release, swapout);
        if (how === "close") await p.close(uffd);
        else await unregister(p, uffd, addr, PAGE);
        // pagemap shows the stale bit only where it reports bit 57 at all.
        expect(pm(p, addr).uffdWp).toBe(fixed && !clears);
        const u2 = await uffdOpen(p, 0);
        await register(p, u2, addr, PAGE, modeOf(false, true, false));
        const write = track(p.mainThread.write(addr, bytes(1, 5)));
        if (clears) {
          await settle(k, write.promise, "write after the new registration");
          expect(await readMsgs(p, u2)).toEqual([]);
        } else {
          // The stale bit: a WP fault on a page nobody protected through this uffd.
          await expectWpFault(k, p, u2, addr, write);
        }
        expect(await p.mainThread.read(addr, 2)).toEqual(new Uint8Array([5, 7]));
        expect(pmBits(pm(p, addr))).toBe("P1 S0 F0 X1 WP0");
        if (how === "UFFDIO_UNREGISTER") await p.close(uffd);
        await p.close(u2);
        k.checkInvariants();
      });
    }
  }

  it(`UFFDIO_WRITEPROTECT across two WP-registered vmas: ${WP_ACROSS_VMAS[release] ? "both protected" : "ENOENT, nothing changed; one vma at a time works"}`, async () => {
    const across = WP_ACROSS_VMAS[release];
    const k = new Kernel({ release, seed: 19 });
    const p = k.spawn();
    const a = await p.mmap(0, 2 * PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    await p.mainThread.write(a, bytes(2 * PAGE, 3));
    const uffd = await uffdOpen(p, 0);
    // Two registrations with different modes: two vmas, both VM_UFFD_WP.
    await register(p, uffd, a, PAGE, modeOf(true, true, false));
    await register(p, uffd, a + PAGE, PAGE, modeOf(false, true, false));
    expect(p.smaps().filter((m) => m.start >= a && m.end <= a + 2 * PAGE).map((m) => m.vmFlags.filter((f) => f === "um" || f === "uw"))).toEqual([["um", "uw"], ["uw"]]);
    const both = { range: { start: a, len: 2 * PAGE }, mode: UFFDIO_WRITEPROTECT_MODE_WP };
    expect(await errnoOf(p.ioctl(uffd, UFFDIO_WRITEPROTECT, both))).toBe(across ? "OK" : "ENOENT");
    if (!across) {
      // Nothing was protected: both writes go through without a fault.
      await settle(k, p.mainThread.write(a, bytes(1, 4)), "write to page 0");
      await settle(k, p.mainThread.write(a + PAGE, bytes(1, 4)), "write to page 1");
      expect(await readMsgs(p, uffd)).toEqual([]);
      for (const page of [a, a + PAGE]) await wpRange(p, uffd, page, PAGE, true);
    }
    for (const page of [a, a + PAGE]) {
      const write = track(p.mainThread.write(page, bytes(1, 5)));
      await expectWpFault(k, p, uffd, page, write);
    }
    await p.close(uffd);
    k.checkInvariants();
  });

  it(`UFFDIO_UNREGISTER of a WP range, then a write with no uffd: no fault; the pte ${UNREGISTER_CLEARS_UFFD_WP[release] ? "has no uffd-wp" : "keeps the stale bit"}`, async () => {
    const clears = UNREGISTER_CLEARS_UFFD_WP[release];
    const { k, p, uffd, addr } = await protectedPage(release, false);
    await unregister(p, uffd, addr, PAGE);
    // do_wp_page(): userfaultfd_pte_wp() needs a VM_UFFD_WP vma, so the write reuses the page;
    // wp_page_reuse() makes the pte writable and leaves its other bits alone.
    await settle(k, p.mainThread.write(addr, bytes(1, 4)), "write to the unregistered range");
    expect(await p.mainThread.read(addr, 2)).toEqual(new Uint8Array([4, 7]));
    expect(pm(p, addr).uffdWp).toBe(fixed && !clears);
    // A later WP registration does not fault on a writable pte, stale bit or not.
    const u2 = await uffdOpen(p, 0);
    await register(p, u2, addr, PAGE, modeOf(false, true, false));
    await settle(k, p.mainThread.write(addr, bytes(1, 6)), "write after the new registration");
    expect(await readMsgs(p, u2)).toEqual([]);
    expect(await p.mainThread.read(addr, 2)).toEqual(new Uint8Array([6, 7]));
    await p.close(uffd);
    await p.close(u2);
    k.checkInvariants();
  });

  it("fault-around on a shmem read fault: kept with MISSING, off with MINOR and WP wherever the mode exists", async () => {
    const k = new Kernel({ release, seed: 5 });
    const p = k.spawn();
    const fd = await p.memfdCreate("fa");
    await p.ftruncate(fd, 16 * PAGE);
    // Pages 0-15 in the page cache, page 5 a hole.
    for (let i = 0; i < 16; i++) if (i !== 5) await p.pwrite(fd, bytes(PAGE, i + 1), i * PAGE);
    const presence = (a: number): string => p.pagemap(a, 16).map((e) => (e.present ? "P" : ".")).join("");
    // 64 KiB-aligned placement, so the 16-pte window is the whole mapping.
    const placed = async (): Promise<number> => {
      const raw = await p.mmap(0, 32 * PAGE, RW, MAP_SHARED, fd);
      const a = Math.ceil(raw / (16 * PAGE)) * 16 * PAGE;
      await p.munmap(raw, 32 * PAGE);
      return p.mmap(a, 16 * PAGE, RW, MAP_SHARED | MAP_FIXED, fd);
    };
    const modes: Array<[string, number, number, string]> = [["MISSING", UFFDIO_REGISTER_MODE_MISSING, UFFD_FEATURE_SIGBUS, "PPPPP.PPPPPPPPPP"]];
    if (SHMEM_MODES[release].minor) modes.push(["MINOR", UFFDIO_REGISTER_MODE_MINOR, UFFD_FEATURE_SIGBUS | UFFD_FEATURE_MINOR_SHMEM, "................"]);
    if (SHMEM_MODES[release].wp) modes.push(["WP", UFFDIO_REGISTER_MODE_WP, UFFD_FEATURE_SIGBUS | UFFD_FEATURE_PAGEFAULT_FLAG_WP, "...P............"]);
    for (const [name, mode, features, expected] of modes) {
      const a = await placed();
      const uffd = await uffdOpen(p, features);
      await register(p, uffd, a, 16 * PAGE, mode);
      // A read of cached page 3: MINOR raises its fault (SIGBUS here) before mapping anything.
      const read = await p.mainThread.read(a + 3 * PAGE, 1).then(
        () => "ok",
        (e: unknown) => (e instanceof SignalError ? "SIGBUS" : Promise.reject(e)),
      );
      expect(read, `${name}: the read of cached page 3`).toBe(name === "MINOR" ? "SIGBUS" : "ok");
      expect(presence(a), name).toBe(expected);
      await p.close(uffd);
      await p.munmap(a, 16 * PAGE);
    }
    k.checkInvariants();
  });

  it("MADV_DONTNEED of a write-protected anonymous page drops the protection: the next write needs no fault", async () => {
    const { k, p, uffd, addr } = await protectedPage(release, false);
    await p.madvise(addr, PAGE, MADV_DONTNEED);
    expect(pmBits(pm(p, addr))).toBe("P0 S0 F0 X0 WP0");
    await settle(k, p.mainThread.write(addr, bytes(1, 2)), "write after the zap");
    expect(await p.mainThread.read(addr, 2)).toEqual(new Uint8Array([2, 0]));
    expect(await readMsgs(p, uffd)).toEqual([]);
    expect(pmBits(pm(p, addr))).toBe("P1 S0 F0 X1 WP0");
    await p.close(uffd);
    k.checkInvariants();
  });

  it("uffd-wp survives swap-out and swap-in (a shmem page: as a marker, where WP on shmem exists) and protects the zero page: each write is a WP fault", async () => {
    const shmemWp = SHMEM_MODES[release].wp;
    const k = new Kernel({ release, seed: 17, swapPages: 16 });
    const p = k.spawn();
    const uffd = await uffdOpen(p, shmemWp ? UFFD_FEATURE_WP_HUGETLBFS_SHMEM : 0);
    // Page 0 written then swapped out; page 1 never written: a read maps the zero page.
    const a = await p.mmap(0, 2 * PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    await p.mainThread.write(a, bytes(PAGE, 0x61));
    expect(await p.mainThread.read(a + PAGE, 1)).toEqual(new Uint8Array([0]));
    expect(pm(p, a + PAGE).pfn).toBe(k.zeroPfn);
    await register(p, uffd, a, 2 * PAGE, modeOf(false, true, false));
    await wpRange(p, uffd, a, 2 * PAGE, true);
    await errnoOf(p.madvise(a, PAGE, MADV_PAGEOUT));
    expect(pm(p, a)).toMatchObject({ present: false, swapped: true, uffdWp: fixed });
    // The read swaps the page in, still write-protected.
    expect(await p.mainThread.read(a, 1)).toEqual(new Uint8Array([0x61]));
    expect(pm(p, a)).toMatchObject({ present: true, uffdWp: fixed });
    const targets = [a, a + PAGE];
    if (shmemWp) {
      const fd = await p.memfdCreate("swap");
      await p.ftruncate(fd, PAGE);
      const m = await p.mmap(0, PAGE, RW, MAP_SHARED, fd);
      await p.mainThread.write(m, bytes(PAGE, 0x62));
      await register(p, uffd, m, PAGE, modeOf(false, true, false));
      await wpRange(p, uffd, m, PAGE, true);
      await errnoOf(p.madvise(m, PAGE, MADV_PAGEOUT));
      expect(pmBits(pm(p, m)), "the uffd-wp marker try_to_unmap_one() leaves").toBe("P0 S1 F0 X0 WP1");
      expect(await p.mainThread.read(m, 1)).toEqual(new Uint8Array([0x62]));
      expect(pmBits(pm(p, m))).toBe("P1 S0 F1 X1 WP1");
      targets.push(m);
    }
    for (const addr of targets) {
      const write = track(p.mainThread.write(addr, bytes(1, 0x71)));
      await expectWpFault(k, p, uffd, addr, write);
    }
    expect(await p.mainThread.read(a, 2)).toEqual(new Uint8Array([0x71, 0x61]));
    // The write to the zero page copied it to a new anonymous page.
    expect(await p.mainThread.read(a + PAGE, 2)).toEqual(new Uint8Array([0x71, 0]));
    expect(pm(p, a + PAGE).pfn).not.toBe(k.zeroPfn);
    await p.close(uffd);
    k.checkInvariants();
  });

  describe("uffd-wp across mremap()", () => {
    const clears = MREMAP_CLEARS_UFFD_WP[release];
    const shmemWp = SHMEM_MODES[release].wp;
    const WP = fixed ? "WP1" : "WP0";

    /**
     * Two private anonymous pages (page 1 swapped out) and, where WP on shmem exists, one memfd
     * page paged out behind a uffd-wp marker: all registered for WP and write-protected, then
     * moved with mremap(MAYMOVE|FIXED).
     */
    async function protectAndMove(features: number): Promise<{ k: Kernel; p: Process; uffd: number; a: number; m: number; moves: Promise<number[]> }> {
      const k = new Kernel({ release, seed: 13, swapPages: 16 });
      const p = k.spawn();
      const uffd = await uffdOpen(p, features | (shmemWp ? UFFD_FEATURE_WP_HUGETLBFS_SHMEM : 0));
      const a0 = await p.mmap(0, 2 * PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS);
      await p.mainThread.write(a0, bytes(2 * PAGE, 0x21));
      await register(p, uffd, a0, 2 * PAGE, modeOf(false, true, false));
      await wpRange(p, uffd, a0, 2 * PAGE, true);
      await errnoOf(p.madvise(a0 + PAGE, PAGE, MADV_PAGEOUT));
      expect(pmBits(pm(p, a0))).toBe(`P1 S0 F0 X1 ${WP}`);
      expect(pmBits(pm(p, a0 + PAGE))).toBe(`P0 S1 F0 X0 ${WP}`);
      let m0 = -1;
      if (shmemWp) {
        const fd = await p.memfdCreate("wp");
        await p.ftruncate(fd, PAGE);
        m0 = await p.mmap(0, PAGE, RW, MAP_SHARED, fd);
        await p.mainThread.write(m0, bytes(PAGE, 0x31));
        await register(p, uffd, m0, PAGE, modeOf(false, true, false));
        await wpRange(p, uffd, m0, PAGE, true);
        await errnoOf(p.madvise(m0, PAGE, MADV_PAGEOUT));
        // try_to_unmap_one() left a uffd-wp pte marker (a swap-type pte to pagemap).
        expect(pmBits(pm(p, m0))).toBe(`P0 S1 F0 X0 ${WP}`);
      }
      // The targets: PROT_NONE reservations the moves replace (uffd-wp-mremap.c's mmap_aligned()).
      const a = await p.mmap(0, 2 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS);
      const m = shmemWp ? await p.mmap(0, PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS) : -1;
      const moves = Promise.all([
        p.mremap(a0, 2 * PAGE, 2 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, a),
        ...(shmemWp ? [p.mremap(m0, PAGE, PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, m)] : []),
      ]);
      return { k, p, uffd, a, m, moves };
    }

    it(`without EVENT_REMAP the moved ptes ${clears ? "lose" : "keep"} uffd-wp: a new WP registration there ${clears ? "sees no fault" : "faults on every page"}`, async () => {
      const { k, p, uffd, a, m, moves } = await protectAndMove(0);
      expect(await settle(k, moves, "mremap")).toEqual(shmemWp ? [a, m] : [a]);
      // No REMAP event, and the new vmas are not registered: writes need no handler.
      expect(await readMsgs(p, uffd)).toEqual([]);
      const stale = clears ? "WP0" : WP;
      expect(pmBits(pm(p, a))).toBe(`P1 S0 F0 X1 ${stale}`);
      expect(pmBits(pm(p, a + PAGE))).toBe(`P0 S1 F0 X0 ${stale}`);
      // 0cef0bb836e3 drops the marker (pte_clear()); before it the marker moves.
      if (shmemWp) expect(pmBits(pm(p, m))).toBe(clears ? "P0 S0 F0 X0 WP0" : `P0 S1 F0 X0 ${stale}`);
      // A handler registers the moved range for WP again without protecting anything.
      await register(p, uffd, a, 2 * PAGE, modeOf(false, true, false));
      if (shmemWp) await register(p, uffd, m, PAGE, modeOf(false, true, false));
      const targets: Array<[number, number]> = [[a, 0x41], [a + PAGE, 0x42]];
      if (shmemWp) targets.push([m, 0x43]);
      for (const [addr, value] of targets) {
        const write = track(p.mainThread.write(addr, bytes(1, value)));
        if (clears) {
          await settle(k, write.promise, "write to the moved page");
          expect(await readMsgs(p, uffd)).toEqual([]);
        } else {
          // The stale bit: a WP fault on a page nobody write-protected at this address.
          await expectWpFault(k, p, uffd, addr, write, `write at +${addr === m ? "shmem" : (addr - a) / PAGE}`);
        }
      }
      expect(await p.mainThread.read(a, 2)).toEqual(new Uint8Array([0x41, 0x21]));
      expect(await p.mainThread.read(a + PAGE, 2)).toEqual(new Uint8Array([0x42, 0x21]));
      if (shmemWp) expect(await p.mainThread.read(m, 2)).toEqual(new Uint8Array([0x43, 0x31]));
      await p.close(uffd);
      k.checkInvariants();
    });

    it(`without EVENT_REMAP, pages read back in before a new WP registration: ${clears ? "nothing is protected" : "the anonymous pages still fault"}`, async () => {
      const { k, p, uffd, a, m, moves } = await protectAndMove(0);
      await settle(k, moves, "mremap");
      // Reads in the unregistered vmas: the swap pte comes back in (before 6.11 do_swap_page()
      // maps it write-protected with its uffd-wp bit, pte_mkuffd_wp() + pte_wrprotect(), whatever
      // the vma), and pte_marker_handle_uffd_wp() clears a marker the vma no longer wants.
      expect(await p.mainThread.read(a + PAGE, 1)).toEqual(new Uint8Array([0x21]));
      expect(pmBits(pm(p, a + PAGE))).toBe(`P1 S0 F0 X1 ${clears ? "WP0" : WP}`);
      if (shmemWp) {
        expect(await p.mainThread.read(m, 1)).toEqual(new Uint8Array([0x31]));
        expect(pmBits(pm(p, m))).toBe("P1 S0 F1 X1 WP0");
      }
      await register(p, uffd, a, 2 * PAGE, modeOf(false, true, false));
      if (shmemWp) await register(p, uffd, m, PAGE, modeOf(false, true, false));
      for (const addr of [a, a + PAGE]) {
        const write = track(p.mainThread.write(addr, bytes(1, 0x44)));
        if (clears) {
          await settle(k, write.promise, "write to the moved page");
        } else {
          await expectWpFault(k, p, uffd, addr, write);
        }
      }
      if (shmemWp) await settle(k, p.mainThread.write(m, bytes(1, 0x45)), "write to the shmem page");
      expect(await readMsgs(p, uffd)).toEqual([]);
      expect(await p.mainThread.read(a + PAGE, 2)).toEqual(new Uint8Array([0x44, 0x21]));
      await p.close(uffd);
      k.checkInvariants();
    });

    it("with EVENT_REMAP the bits and the registration move on every release: a write at the new address is a WP fault", async () => {
      const { k, p, uffd, a, m, moves } = await protectAndMove(UFFD_FEATURE_EVENT_REMAP);
      const moved = track(moves);
      // Each move waits until its REMAP message is read (userfaultfd_event_wait_completion()).
      expect(await isBlocked(k, moved)).toBe(true);
      const events = await readMsgs(p, uffd);
      expect(events.map((e) => e.event)).toEqual(shmemWp ? [UFFD_EVENT_REMAP, UFFD_EVENT_REMAP] : [UFFD_EVENT_REMAP]);
      expect(await settle(k, moved.promise, "mremap")).toEqual(shmemWp ? [a, m] : [a]);
      expect(pmBits(pm(p, a))).toBe(`P1 S0 F0 X1 ${WP}`);
      expect(pmBits(pm(p, a + PAGE))).toBe(`P0 S1 F0 X0 ${WP}`);
      if (shmemWp) expect(pmBits(pm(p, m))).toBe(`P0 S1 F0 X0 ${WP}`);
      const targets = shmemWp ? [a, a + PAGE, m] : [a, a + PAGE];
      for (const addr of targets) {
        const write = track(p.mainThread.write(addr, bytes(1, 0x51)));
        await expectWpFault(k, p, uffd, addr, write);
      }
      expect(await p.mainThread.read(a + PAGE, 2)).toEqual(new Uint8Array([0x51, 0x21]));
      await p.close(uffd);
      k.checkInvariants();
    });
  });
});
