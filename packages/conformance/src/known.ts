/**
 * Divergences the engine has found and that are being fixed in the kernel. Each has a corpus
 * scenario marked `# expect: divergence <id>`; the corpus test asserts that scenario still
 * diverges (so the mark must go the moment the fix lands: the test then fails loudly), and,
 * where the divergence shows in a field almost every scenario observes, the comparer masks that
 * field in the other scenarios so they keep checking everything else meanwhile.
 */
import type { Divergence } from "./compare.ts";
import type { Scenario } from "./scenario.ts";

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
  readonly signature?: (d: Divergence, scenario: Scenario) => boolean;
}

/** Per-page categories of a PAGEMAP_SCAN answer's regions (from a record's JSON text). */
function scanPages(text: string): Map<string, number> | null {
  try {
    const r = JSON.parse(text) as { regions?: [string, string, string][] };
    if (r.regions === undefined) return null;
    const pages = new Map<string, number>();
    for (const [start, end, cat] of r.regions) {
      const [name, from] = start.split("+") as [string, string];
      const to = Number(end.split("+")[1]);
      for (let p = Number(from); p < to; p++) pages.set(`${name}+${p}`, Number(cat));
    }
    return pages;
  } catch {
    return null;
  }
}

/**
 * Found by this engine, not fixed yet (each is in docs/conformance.md with its scenario; the
 * kernel areas they touch are owned by other work). Earlier entries (kpf-dirty, mmap-min-addr,
 * fault-around, anon-uffd-pagetable, shmem-inode-lock) went when their fixes landed; their scenarios in
 * corpus/known.scn agree now.
 */
export const KNOWN_DIVERGENCES: readonly KnownDivergence[] = [
  {
    id: "shmem-pageout-unmap",
    reason:
      "MADV_PAGEOUT reclaims an exclusively mapped shmem folio even without swap: mm/vmscan.c:shrink_folio_list() unmaps it (try_to_unmap(); a uffd-wp pte becomes a marker through pte_install_uffd_wp_if_needed()) before shmem_writeout() fails for want of swap and the folio stays in the page cache. The simulation leaves the page mapped.",
    signature: (d, s) =>
      s.steps.slice(0, d.index).some((x) => x.verb === "advise" && x.args[3] === "pageout") && /: page \d+$/.test(d.what) && (d.native === "-" || d.native === "S WP") && /^P F\b/.test(d.sim),
  },
];

/** The known divergence whose signature a divergence carries, if any. */
export function explain(d: Divergence, scenario: Scenario): KnownDivergence | undefined {
  return KNOWN_DIVERGENCES.find((k) => k.signature?.(d, scenario) === true);
}

export function knownDivergence(id: string): KnownDivergence | undefined {
  return KNOWN_DIVERGENCES.find((k) => k.id === id);
}
