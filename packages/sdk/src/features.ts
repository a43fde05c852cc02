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
  "pagefault-flag-wp": UFFD_FEATURE_PAGEFAULT_FLAG_WP,
  "event-fork": UFFD_FEATURE_EVENT_FORK,
  "event-remap": UFFD_FEATURE_EVENT_REMAP,
  "event-remove": UFFD_FEATURE_EVENT_REMOVE,
  "missing-hugetlbfs": UFFD_FEATURE_MISSING_HUGETLBFS,
  "missing-shmem": UFFD_FEATURE_MISSING_SHMEM,
  "event-unmap": UFFD_FEATURE_EVENT_UNMAP,
  sigbus: UFFD_FEATURE_SIGBUS,
  "thread-id": UFFD_FEATURE_THREAD_ID,
  "minor-hugetlbfs": UFFD_FEATURE_MINOR_HUGETLBFS,
  "minor-shmem": UFFD_FEATURE_MINOR_SHMEM,
  "exact-address": UFFD_FEATURE_EXACT_ADDRESS,
  "wp-hugetlbfs-shmem": UFFD_FEATURE_WP_HUGETLBFS_SHMEM,
  "wp-unpopulated": UFFD_FEATURE_WP_UNPOPULATED,
  poison: UFFD_FEATURE_POISON,
  "wp-async": UFFD_FEATURE_WP_ASYNC,
  move: UFFD_FEATURE_MOVE,
} as const;

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
  missing: UFFDIO_REGISTER_MODE_MISSING,
  wp: UFFDIO_REGISTER_MODE_WP,
  minor: UFFDIO_REGISTER_MODE_MINOR,
} as const;

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
