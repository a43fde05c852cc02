/**
 * mprotect(2). Mirrors mm/mprotect.c:do_mprotect_pkey(), mprotect_fixup() and
 * change_pte_range(): write permission is removed from every pte when VM_WRITE goes away, and
 * granted at once only where can_change_pte_writable() allows it (an exclusive anon page, or a
 * dirty shared page, never a uffd-wp one); uffd-wp and soft-dirty survive (pte_modify()).
 */
import { pageAlignU64 } from "../uapi/abi.ts";
import { ErrnoError } from "../uapi/errno.ts";
import { PAGE_SIZE, PROT_EXEC, PROT_GROWSDOWN, PROT_GROWSUP, PROT_READ, PROT_SEM, PROT_WRITE } from "../uapi/mman.ts";
import { vmaPageProtWritable, vmNormalPfn } from "./memory.ts";
import type { Mm } from "./mm.ts";
import { offsetInPage, calcVmProtBits, vmEnoughMemory } from "./mmap.ts";
import { pteDirty, ptePresent, pteUffdWp, pteWrite, pteWrprotect, pteMkwrite } from "./page-table.ts";
import { type Vma, VM_ACCESS_FLAGS, VM_ACCOUNT, VM_SHARED, VM_WRITE, VM_NORESERVE } from "./vma.ts";

/** Mirrors mm/mprotect.c:do_mprotect_pkey(): argument checks, then the per-vma loop. */
export function doMprotect(mm: Mm, start: number, length: number, prot: number): void {
  if (offsetInPage(start) !== 0) throw new ErrnoError("EINVAL", "mprotect");
  if (length === 0) return;
  // end = start + PAGE_ALIGN(len) in unsigned long arithmetic: a wrap makes end <= start.
  const len = pageAlignU64(length);
  const end = start + len;
  if (len === 0 || end >= 2 ** 64) throw new ErrnoError("ENOMEM", "mprotect");
  if ((prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC | PROT_SEM | PROT_GROWSDOWN | PROT_GROWSUP)) !== 0) throw new ErrnoError("EINVAL", "mprotect");
  if ((prot & (PROT_GROWSDOWN | PROT_GROWSUP)) === (PROT_GROWSDOWN | PROT_GROWSUP)) throw new ErrnoError("EINVAL", "mprotect");
  const first = mm.findVma(start);
  if (first === null || first.start > start) throw new ErrnoError("ENOMEM", "mprotect");
  // split_vma(): no split may take the mm past vm.max_map_count (a vma whose protection does not
  // change is not split: mprotect_fixup() returns early) [host].
  const newProtBits = calcVmProtBits(prot);
  const last = end < 2 ** 53 ? mm.vmaLookup(end - 1) : null;
  let splits = 0;
  if (first.start < start && (first.flags & VM_ACCESS_FLAGS) !== newProtBits) splits++;
  if (last !== null && last.end > end && (last.flags & VM_ACCESS_FLAGS) !== newProtBits) splits++;
  if (!mm.mayAddVmas(splits)) throw new ErrnoError("ENOMEM", "mprotect");
  const newProt = calcVmProtBits(prot);
  // Linux applies the change vma by vma: a hole (ENOMEM) or a vma lacking VM_MAYx (EACCES) stops
  // the loop, and the vmas before it keep their new protection [host].
  let at = start;
  let error: "ENOMEM" | "EACCES" | null = null;
  // With a length up to 2^64 the loop stops at the first hole, as Linux's does.
  for (const vma of mm.isolateRange(start, end)) {
    if (vma.start > at) {
      error = "ENOMEM";
      break;
    }
    const newflags = newProt | (vma.flags & ~VM_ACCESS_FLAGS);
    // Each VM_x needs its VM_MAYx (VM_MAYREAD = VM_READ << 4).
    if ((newflags & ~(newflags >>> 4) & VM_ACCESS_FLAGS) !== 0) {
      error = "EACCES";
      break;
    }
    if (!mprotectFixup(mm, vma, newProt)) {
      error = "ENOMEM";
      break;
    }
    at = vma.end;
  }
  if (error === null && at < end) error = "ENOMEM";
  mm.mergeRange(start, end);
  if (error !== null) throw new ErrnoError(error, "mprotect");
}

/** Mirrors mm/mprotect.c:mprotect_fixup() for one whole vma; false when the commit charge is refused (ENOMEM). */
function mprotectFixup(mm: Mm, vma: Vma, newProt: number): boolean {
  const old = vma.flags;
  let flags = ((old & ~VM_ACCESS_FLAGS) | newProt) >>> 0;
  if ((flags & VM_WRITE) !== 0) {
    if ((old & (VM_ACCOUNT | VM_WRITE | VM_SHARED | VM_NORESERVE)) === 0) {
      // A private mapping becoming writable is charged now (security_vm_enough_memory_mm()).
      if (vma.file === null || (vma.flags & VM_SHARED) === 0) {
        if (!vmEnoughMemory(mm.core, (vma.end - vma.start) / PAGE_SIZE)) return false;
      }
      flags |= VM_ACCOUNT;
    }
  } else if ((old & VM_ACCOUNT) !== 0 && vma.file === null && vma.anonVma === 0) {
    flags &= ~VM_ACCOUNT;
  }
  vma.flags = flags >>> 0;
  changeProtection(mm, vma);
  return true;
}

/**
 * Mirrors mm/mprotect.c:change_pte_range() for a protection change of the whole vma: pte_modify()
 * to the new vm_page_prot (writable only for shared mappings without write-notify), then
 * MM_CP_TRY_CHANGE_WRITABLE where the vma wants manual write upgrades.
 */
function changeProtection(mm: Mm, vma: Vma): void {
  const writable = (vma.flags & VM_WRITE) !== 0;
  const protWritable = vmaPageProtWritable(vma);
  mm.pt.forEachPresentEntry(vma.start / PAGE_SIZE, vma.end / PAGE_SIZE, (vpn, pte) => {
    if (!ptePresent(pte)) return;
    if (!writable) {
      if (pteWrite(pte)) mm.pt.set(vpn, pteWrprotect(pte));
      return;
    }
    if (pteWrite(pte)) return;
    if (protWritable || canChangePteWritable(mm, vma, pte)) mm.pt.set(vpn, pteMkwrite(pte));
  });
}

/** Mirrors mm/mprotect.c:can_change_pte_writable(). */
function canChangePteWritable(mm: Mm, vma: Vma, pte: number): boolean {
  // Do we need write faults for uffd-wp tracking?
  if (pteUffdWp(pte)) return false;
  if ((vma.flags & VM_SHARED) === 0) {
    // Private: only an exclusive anon page may become writable without a fault.
    // Release policy (5.7 – 5.18): before 6.0 (64fe24a3e05e) mprotect() never maps a private
    // pte writable; the next write faults and do_wp_page() decides (CowPolicy.mprotectWriteUpgrade).
    if (!mm.core.cow.mprotectWriteUpgrade) return false;
    const pfn = vmNormalPfn(pte);
    return pfn >= 0 && mm.core.mem.folioTestAnon(pfn) && mm.core.mem.pageAnonExclusive(pfn);
  }
  // Shared with write-notify: only if already dirty.
  return pteDirty(pte);
}
