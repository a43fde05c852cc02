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

/**
 * Empty while every divergence the engine found is fixed. Earlier entries (kpf-dirty,
 * mmap-min-addr, fault-around) went when their fixes landed; their scenarios in
 * corpus/known.scn now must agree.
 */
export const KNOWN_DIVERGENCES: readonly KnownDivergence[] = [];

/** The known divergence whose signature a divergence carries, if any. */
export function explain(d: Divergence): KnownDivergence | undefined {
  return KNOWN_DIVERGENCES.find((k) => k.signature?.(d) === true);
}

export function knownDivergence(id: string): KnownDivergence | undefined {
  return KNOWN_DIVERGENCES.find((k) => k.id === id);
}
