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
  /**
   * A deliberate divergence of the simulation (docs/divergences.md), kept rather than fixed:
   * where Linux does not answer at all (a livelock), the simulation answers.
   */
  readonly deliberate?: boolean;
  /** A pagemap/kpageflags field the comparer ignores outside this divergence's own scenarios. */
  readonly mask?: "dirty";
  /**
   * Recognises this divergence's signature in a random scenario's first divergence, so a random
   * run can tell it from an unexplained one while the fix is pending.
   */
  readonly signature?: (d: Divergence, scenario: Scenario) => boolean;
}

/**
 * Found by this engine and not fixed (each is in docs/conformance.md with its scenario): pending
 * fixes, and deliberate divergences where Linux gives no answer to compare. Earlier entries (kpf-dirty, mmap-min-addr,
 * fault-around, anon-uffd-pagetable, shmem-inode-lock, shmem-pageout-unmap) went when their fixes
 * landed; their scenarios in corpus/known.scn agree now.
 */
export const KNOWN_DIVERGENCES: readonly KnownDivergence[] = [
  {
    id: "guard-install-restart",
    deliberate: true,
    reason:
      "mm/madvise.c:madvise_guard_install(): a uffd-wp pte of a shmem vma that zap turns into a marker is never none, so Linux restarts the madvise forever (a livelock: the runner's step never answers); the simulation bounds the retries and answers EAGAIN (docs/divergences.md)",
    signature: (d) => /\badvise \S+ \d+ \d+ (guard_install|102)$/.test(d.text.replace(/^@\S+\s+/, "")) && d.sim.includes("EAGAIN") && (d.native === "blocked" || d.native.includes("bad")),
  },
];

/** The known divergence whose signature a divergence carries, if any. */
export function explain(d: Divergence, scenario: Scenario): KnownDivergence | undefined {
  return KNOWN_DIVERGENCES.find((k) => k.signature?.(d, scenario) === true);
}

export function knownDivergence(id: string): KnownDivergence | undefined {
  return KNOWN_DIVERGENCES.find((k) => k.id === id);
}
