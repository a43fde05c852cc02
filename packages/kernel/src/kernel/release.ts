/**
 * Release profiles: which Linux release the simulated kernel answers as.
 *
 * A profile is data, not a copy of the kernel: the code keeps one implementation (Linux 6.18) and
 * asks the profile at a few named policy points, each marked `Release policy (<range>):` next to
 * the check it changes. docs/releases.md is the table of every difference with its source.
 *
 * Each profile is the latest stable release of a long-term series as far as the userfaultfd uAPI
 * goes; the stable sublevel itself is not modelled (uname() reports `<series>-uffd`).
 */
import {
  _UFFDIO_CONTINUE,
  _UFFDIO_COPY,
  _UFFDIO_MOVE,
  _UFFDIO_POISON,
  _UFFDIO_WAKE,
  _UFFDIO_WRITEPROTECT,
  _UFFDIO_ZEROPAGE,
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
} from "../uapi/userfaultfd.ts";

/** The releases a Kernel can be: the long-term series handler authors deploy on. */
export const KERNEL_RELEASES = ["5.10", "5.15", "6.1", "6.6", "6.12", "6.18"] as const;
/** A release profile's name: the long-term series, "5.10" to "6.18". */
export type KernelRelease = (typeof KERNEL_RELEASES)[number];
/** The default release, and the one the reference host runs. */
export const DEFAULT_RELEASE: KernelRelease = "6.18";

/** The uname(2) fields (struct new_utsname) a process sees. */
export interface Utsname {
  /** Always "Linux". */
  readonly sysname: string;
  /** The host name: "uffd". */
  readonly nodename: string;
  /** `<series>-uffd`, e.g. "6.18-uffd" (the stable sublevel is not modelled). */
  readonly release: string;
  /** The build string, naming the simulated release. */
  readonly version: string;
  /** Always "x86_64" (the simulated machine's page size and ABI). */
  readonly machine: string;
}

/** What a release offers a userfaultfd handler. */
export interface ReleaseProfile {
  /** The profile's name. */
  readonly release: KernelRelease;
  /** UFFD_API_FEATURES of the release: what UFFDIO_API reports, and the bits it accepts. */
  readonly apiFeatures: number;
  /** UFFD_API_RANGE_IOCTLS: also which range ioctls exist at all (an absent one is EINVAL). */
  readonly rangeIoctls: bigint;
  /** UFFD_API_REGISTER_MODES (MINOR since 5.13). */
  readonly registerModes: number;
  /** UFFDIO_REGISTER_MODE_MINOR on shmem (5.14). */
  readonly minorShmem: boolean;
  /** UFFDIO_REGISTER_MODE_WP on shmem (5.19, with pte markers). */
  readonly wpShmem: boolean;
  /** UFFDIO_CONTINUE_MODE_WP (6.5). */
  readonly continueModeWp: boolean;
  /** The UFFD_USER_MODE_ONLY flag of userfaultfd(2) (5.11). */
  readonly userModeOnly: boolean;
  /** The /dev/userfaultfd device (6.1). */
  readonly devUserfaultfd: boolean;
  /** The PAGEMAP_SCAN ioctl of /proc/pid/pagemap (6.7). */
  readonly pagemapScan: boolean;
  /**
   * UFFDIO_API checks unknown feature bits together with the API number, before the EPERM of
   * EVENT_FORK (5.10.y: the 6.10 reordering, 1723f04caacb, failed to apply there).
   */
  readonly apiFeatureCheckFirst: boolean;
}

const bit = (nr: number): bigint => 1n << BigInt(nr);

// UFFD_API_FEATURES, release by release (include/uapi/linux/userfaultfd.h; docs/releases.md).
const FEATURES_5_10 =
  UFFD_FEATURE_PAGEFAULT_FLAG_WP |
  UFFD_FEATURE_EVENT_FORK |
  UFFD_FEATURE_EVENT_REMAP |
  UFFD_FEATURE_EVENT_REMOVE |
  UFFD_FEATURE_MISSING_HUGETLBFS |
  UFFD_FEATURE_MISSING_SHMEM |
  UFFD_FEATURE_EVENT_UNMAP |
  UFFD_FEATURE_SIGBUS |
  UFFD_FEATURE_THREAD_ID; // 0x1ff
const FEATURES_5_15 = FEATURES_5_10 | UFFD_FEATURE_MINOR_HUGETLBFS | UFFD_FEATURE_MINOR_SHMEM; // 0x7ff
const FEATURES_6_1 = FEATURES_5_15 | UFFD_FEATURE_EXACT_ADDRESS | UFFD_FEATURE_WP_HUGETLBFS_SHMEM; // 0x1fff
const FEATURES_6_6 = FEATURES_6_1 | UFFD_FEATURE_WP_UNPOPULATED | UFFD_FEATURE_POISON; // 0x7fff
const FEATURES_6_12 = FEATURES_6_6 | UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_MOVE; // 0x1ffff

// UFFD_API_RANGE_IOCTLS, release by release.
const RANGE_5_10 = bit(_UFFDIO_WAKE) | bit(_UFFDIO_COPY) | bit(_UFFDIO_ZEROPAGE) | bit(_UFFDIO_WRITEPROTECT);
const RANGE_5_15 = RANGE_5_10 | bit(_UFFDIO_CONTINUE);
const RANGE_6_6 = RANGE_5_15 | bit(_UFFDIO_POISON);
const RANGE_6_12 = RANGE_6_6 | bit(_UFFDIO_MOVE);

const MODES_5_10 = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP;
const MODES_5_13 = MODES_5_10 | UFFDIO_REGISTER_MODE_MINOR;

const PROFILES: Readonly<Record<KernelRelease, ReleaseProfile>> = {
  "5.10": {
    release: "5.10", apiFeatures: FEATURES_5_10, rangeIoctls: RANGE_5_10, registerModes: MODES_5_10,
    minorShmem: false, wpShmem: false, continueModeWp: false, userModeOnly: false, devUserfaultfd: false, pagemapScan: false,
    apiFeatureCheckFirst: true,
  },
  "5.15": {
    release: "5.15", apiFeatures: FEATURES_5_15, rangeIoctls: RANGE_5_15, registerModes: MODES_5_13,
    minorShmem: true, wpShmem: false, continueModeWp: false, userModeOnly: true, devUserfaultfd: false, pagemapScan: false,
    apiFeatureCheckFirst: false,
  },
  "6.1": {
    release: "6.1", apiFeatures: FEATURES_6_1, rangeIoctls: RANGE_5_15, registerModes: MODES_5_13,
    minorShmem: true, wpShmem: true, continueModeWp: false, userModeOnly: true, devUserfaultfd: true, pagemapScan: false,
    apiFeatureCheckFirst: false,
  },
  "6.6": {
    release: "6.6", apiFeatures: FEATURES_6_6, rangeIoctls: RANGE_6_6, registerModes: MODES_5_13,
    minorShmem: true, wpShmem: true, continueModeWp: true, userModeOnly: true, devUserfaultfd: true, pagemapScan: false,
    apiFeatureCheckFirst: false,
  },
  "6.12": {
    release: "6.12", apiFeatures: FEATURES_6_12, rangeIoctls: RANGE_6_12, registerModes: MODES_5_13,
    minorShmem: true, wpShmem: true, continueModeWp: true, userModeOnly: true, devUserfaultfd: true, pagemapScan: true,
    apiFeatureCheckFirst: false,
  },
  "6.18": {
    release: "6.18", apiFeatures: FEATURES_6_12, rangeIoctls: RANGE_6_12, registerModes: MODES_5_13,
    minorShmem: true, wpShmem: true, continueModeWp: true, userModeOnly: true, devUserfaultfd: true, pagemapScan: true,
    apiFeatureCheckFirst: false,
  },
};

/**
 * The mainline release that added each userfaultfd feature bit (the man page's "since Linux X"):
 * what a handler needs to know when a profile lacks one.
 */
export const UFFD_FEATURE_SINCE: Readonly<Record<number, string>> = {
  [UFFD_FEATURE_PAGEFAULT_FLAG_WP]: "5.7",
  [UFFD_FEATURE_EVENT_FORK]: "4.11",
  [UFFD_FEATURE_EVENT_REMAP]: "4.11",
  [UFFD_FEATURE_EVENT_REMOVE]: "4.11",
  [UFFD_FEATURE_MISSING_HUGETLBFS]: "4.11",
  [UFFD_FEATURE_MISSING_SHMEM]: "4.11",
  [UFFD_FEATURE_EVENT_UNMAP]: "4.11",
  [UFFD_FEATURE_SIGBUS]: "4.14",
  [UFFD_FEATURE_THREAD_ID]: "4.14",
  [UFFD_FEATURE_MINOR_HUGETLBFS]: "5.13",
  [UFFD_FEATURE_MINOR_SHMEM]: "5.14",
  [UFFD_FEATURE_EXACT_ADDRESS]: "5.18",
  [UFFD_FEATURE_WP_HUGETLBFS_SHMEM]: "5.19",
  [UFFD_FEATURE_WP_UNPOPULATED]: "6.4",
  [UFFD_FEATURE_POISON]: "6.6",
  [UFFD_FEATURE_WP_ASYNC]: "6.7",
  [UFFD_FEATURE_MOVE]: "6.8",
};

/** The profile of a release; throws a plain error naming the known releases for anything else. */
export function releaseProfile(release: unknown): ReleaseProfile {
  if (typeof release === "string" && Object.hasOwn(PROFILES, release)) return PROFILES[release as KernelRelease];
  const shown = typeof release === "string" ? JSON.stringify(release) : String(release);
  throw new RangeError(`unknown kernel release ${shown}: the profiles are ${KERNEL_RELEASES.map((r) => JSON.stringify(r)).join(", ")}`);
}

/** uname(2) of a kernel running this release. */
export function utsname(profile: ReleaseProfile): Utsname {
  return Object.freeze({
    sysname: "Linux",
    nodename: "uffd",
    release: `${profile.release}-uffd`,
    version: `#1 SMP uffd simulated Linux ${profile.release}`,
    machine: "x86_64",
  });
}
