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

/**
 * Found by this engine, not fixed yet (each is in docs/conformance.md with its scenario; the
 * kernel areas they touch are owned by other work). Earlier entries (kpf-dirty, mmap-min-addr,
 * fault-around, anon-uffd-pagetable, shmem-inode-lock, shmem-pageout-unmap) went when their fixes
 * landed; their scenarios in corpus/known.scn agree now.
 */
export const KNOWN_DIVERGENCES: readonly KnownDivergence[] = [];

/** The known divergence whose signature a divergence carries, if any. */
export function explain(d: Divergence, scenario: Scenario): KnownDivergence | undefined {
  return KNOWN_DIVERGENCES.find((k) => k.signature?.(d, scenario) === true);
}

export function knownDivergence(id: string): KnownDivergence | undefined {
  return KNOWN_DIVERGENCES.find((k) => k.id === id);
}
