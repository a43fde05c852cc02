/**
 * Feature and mode names: the SDK speaks in words, the uAPI in bits. Each name maps to the
 * UFFD_FEATURE_* / UFFDIO_REGISTER_MODE_* bit of include/uapi/linux/userfaultfd.h (Linux 6.18).
 */
import {
  UFFD_FEATURE_EVENT_FORK,
  UFFD_FEATURE_EVENT_REMAP,
  UFFD_FEATURE_EVENT_REMOVE,
  UFFD_FEATURE_EVENT_UNMAP,
  UFFD_FEATURE_EXACT_ADDRESS,
  UFFD_FEATURE_MINOR_HUGETLBFS,
  UFFD_FEATURE_MINOR_SHMEM,
  UFFD_FEATURE_MISSING_HUGETLBFS,
  UFFD_FEATURE_MISSING_SHMEM,
  UFFD_FEATURE_MOVE,
  UFFD_FEATURE_PAGEFAULT_FLAG_WP,
  UFFD_FEATURE_POISON,
  UFFD_FEATURE_SIGBUS,
  UFFD_FEATURE_THREAD_ID,
  UFFD_FEATURE_WP_ASYNC,
  UFFD_FEATURE_WP_HUGETLBFS_SHMEM,
  UFFD_FEATURE_WP_UNPOPULATED,
  UFFDIO_REGISTER_MODE_MINOR,
  UFFDIO_REGISTER_MODE_MISSING,
  UFFDIO_REGISTER_MODE_WP,
} from "@uffd/kernel/uapi";

/** UFFD_FEATURE_* by name. */
export const FEATURES = {
  /** Write-protect faults. */
  "pagefault-flag-wp": UFFD_FEATURE_PAGEFAULT_FLAG_WP,
  /** UFFD_EVENT_FORK (needs CAP_SYS_PTRACE). */
  "event-fork": UFFD_FEATURE_EVENT_FORK,
  /** UFFD_EVENT_REMAP on mremap(2). */
  "event-remap": UFFD_FEATURE_EVENT_REMAP,
  /** UFFD_EVENT_REMOVE on MADV_DONTNEED / MADV_REMOVE. */
  "event-remove": UFFD_FEATURE_EVENT_REMOVE,
  /** MISSING faults on hugetlbfs. */
  "missing-hugetlbfs": UFFD_FEATURE_MISSING_HUGETLBFS,
  /** MISSING faults on shmem. */
  "missing-shmem": UFFD_FEATURE_MISSING_SHMEM,
  /** UFFD_EVENT_UNMAP on munmap(2). */
  "event-unmap": UFFD_FEATURE_EVENT_UNMAP,
  /** Faults raise SIGBUS instead of waiting for a handler. */
  sigbus: UFFD_FEATURE_SIGBUS,
  /** The faulting thread's id in each fault. */
  "thread-id": UFFD_FEATURE_THREAD_ID,
  /** MINOR faults on hugetlbfs. */
  "minor-hugetlbfs": UFFD_FEATURE_MINOR_HUGETLBFS,
  /** MINOR faults on shmem. */
  "minor-shmem": UFFD_FEATURE_MINOR_SHMEM,
  /** The exact faulting address, not the page start. */
  "exact-address": UFFD_FEATURE_EXACT_ADDRESS,
  /** Write-protect on hugetlbfs and shmem. */
  "wp-hugetlbfs-shmem": UFFD_FEATURE_WP_HUGETLBFS_SHMEM,
  /** Write-protecting anonymous memory also protects unpopulated pages. */
  "wp-unpopulated": UFFD_FEATURE_WP_UNPOPULATED,
  /** UFFDIO_POISON. */
  poison: UFFD_FEATURE_POISON,
  /** The kernel resolves write-protect faults itself (dirty tracking with PAGEMAP_SCAN). */
  "wp-async": UFFD_FEATURE_WP_ASYNC,
  /** UFFDIO_MOVE. */
  move: UFFD_FEATURE_MOVE,
} as const;

/** A feature's name: a key of FEATURES ("thread-id", "event-fork", "wp-async", ...). */
export type FeatureName = keyof typeof FEATURES;

/**
 * Features the SDK asks for unless told otherwise, each only if the kernel and the caller's
 * privileges allow it (they are optional, never required):
 * - the four non-cooperative events, so the SDK's view of the ranges follows fork, mremap,
 *   madvise and munmap (without EVENT_REMOVE a handler cannot know that MADV_DONTNEED made a
 *   page zero, and serves stale bytes; without EVENT_FORK a child's unfetched pages read as zero);
 * - thread-id, so every fault names its thread;
 * - wp-unpopulated, so write-protecting an unpopulated anon page is remembered (a marker) and its
 *   first write is reported, as a dirty tracker needs.
 */
export const DEFAULT_OPTIONAL_FEATURES: readonly FeatureName[] = [
  "thread-id",
  "event-fork",
  "event-remap",
  "event-remove",
  "event-unmap",
  "wp-unpopulated",
];

export function featureBits(names: readonly FeatureName[]): number {
  let bits = 0;
  for (const n of names) {
    const bit = FEATURES[n];
    if (bit === undefined) throw new TypeError(`unknown userfaultfd feature "${String(n)}"; known: ${Object.keys(FEATURES).join(", ")}`);
    bits |= bit;
  }
  return bits;
}

export function featureNames(bits: number): FeatureName[] {
  return (Object.keys(FEATURES) as FeatureName[]).filter((n) => (bits & FEATURES[n]) !== 0);
}

/** The three kinds of registration, as UFFDIO_REGISTER_MODE_* bits. */
export const MODES = {
  /** A fault on a page that is not there. */
  missing: UFFDIO_REGISTER_MODE_MISSING,
  /** A write to a write-protected page. */
  wp: UFFDIO_REGISTER_MODE_WP,
  /** A fault on a page in the page cache but not in the page table (shmem, hugetlbfs). */
  minor: UFFDIO_REGISTER_MODE_MINOR,
} as const;

/** A registration mode's name: "missing", "wp" or "minor". */
export type RegisterMode = keyof typeof MODES;

export function modeBits(modes: RegisterMode | readonly RegisterMode[]): number {
  const list = typeof modes === "string" ? [modes] : modes;
  let bits = 0;
  for (const m of list) {
    const bit = MODES[m];
    if (bit === undefined) throw new TypeError(`unknown register mode "${String(m)}"; use "missing", "wp" or "minor"`);
    bits |= bit;
  }
  return bits;
}

export function modeNames(bits: number): RegisterMode[] {
  return (Object.keys(MODES) as RegisterMode[]).filter((m) => (bits & MODES[m]) !== 0);
}
