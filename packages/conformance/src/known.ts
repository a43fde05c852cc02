/**
 * Divergences the engine has found and that are being fixed in the kernel. Each has a corpus
 * scenario marked `# expect: divergence <id>`; the corpus test asserts that scenario still
 * diverges (so the mark must go the moment the fix lands: the test then fails loudly), and,
 * where the divergence shows in a field almost every scenario observes, the comparer masks that
 * field in the other scenarios so they keep checking everything else meanwhile.
 */
import type { Divergence } from "./compare.ts";

export interface KnownDivergence {
  readonly id: string;
  /** What Linux does and the simulation does not (yet), with the kernel source. */
  readonly reason: string;
  /** A pagemap/kpageflags field the comparer ignores outside this divergence's own scenarios. */
  readonly mask?: "dirty";
  /**
   * Recognises this divergence's signature in a random scenario's first divergence, so a random
   * run can tell it from an unexplained one while the fix is pending.
   */
  readonly signature?: (d: Divergence) => boolean;
}

export const KNOWN_DIVERGENCES: readonly KnownDivergence[] = [
  {
    id: "kpf-dirty",
    reason:
      "kpageflags KPF_DIRTY is the folio's PG_dirty (fs/proc/page.c:stable_page_flags()); anonymous write faults, COW, UFFDIO_COPY and MOVE only dirty the pte, so the host reads dirty:0 where the simulation reads dirty:1",
    mask: "dirty",
  },
  {
    id: "mmap-min-addr",
    reason:
      "6.18.y carries upstream 161ce69c2c89: userfaultfd's validate_range() no longer rejects addresses below vm.mmap_min_addr (EINVAL); they fail later for want of a vma (ENOENT, -ENOENT in the out field; WAKE 0; REGISTER/UNREGISTER EINVAL)",
    signature: (d) => / 0x0 /.test(d.text),
  },
  {
    id: "fault-around",
    reason:
      "mm/memory.c:do_read_fault() calls do_fault_around() (fault_around_bytes = 64 KiB): a read fault on a shmem vma maps the cached neighbours of the aligned 16-page window, except in vmas registered for WP or MINOR (uffd_disable_fault_around())",
    // The host has a present page-cache page where the simulation has none.
    signature: (d) => /: page \d+$/.test(d.what) && /^P (WP )?F\b/.test(d.native) && (d.sim === "-" || d.sim === "S WP"),
  },
];

/** The known divergence whose signature a divergence carries, if any. */
export function explain(d: Divergence): KnownDivergence | undefined {
  return KNOWN_DIVERGENCES.find((k) => k.signature?.(d) === true);
}

export function knownDivergence(id: string): KnownDivergence | undefined {
  return KNOWN_DIVERGENCES.find((k) => k.id === id);
}
