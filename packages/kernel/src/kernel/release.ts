/**
 * Release profiles: which Linux release the simulated kernel answers as.
 *
 * A profile is data, not a copy of the kernel: the code keeps one implementation (Linux 6.18) and
 * asks the profile at a few named policy points, each marked `Release policy (<range>):` next to
 * the check it changes. docs/releases.md is the table of every difference with its source.
 *
 * Two kinds of profile:
 * - KERNEL_RELEASES, the long-term series handler authors deploy on, each its latest stable
 *   release (stable backports included where known);
 * - HISTORY_RELEASES, mainline releases just before the copy-on-write fixes the seeds discuss
 *   ("5.7": COW by mapcount, before the vmsplice fix; "5.18": COW by page_count, the last release
 *   before PageAnonExclusive). Each names the fixes it lacks (`lacks`).
 * The stable sublevel itself is not modelled (uname() reports `<series>-uffd`).
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

/** The long-term series handler authors deploy on (the SDK's and the uAPI conformance matrix). */
export const KERNEL_RELEASES = ["5.10", "5.15", "6.1", "6.6", "6.12", "6.18"] as const;
/** A long-term profile's name: "5.10" to "6.18". */
export type KernelRelease = (typeof KERNEL_RELEASES)[number];
/**
 * Mainline releases of the seeds' history, just before the copy-on-write fixes they argue about:
 * "5.7" (the last without the vmsplice fix, COW decided by mapcount) and "5.18" (the last before
 * PageAnonExclusive, COW decided by page_count). Not part of KERNEL_RELEASES.
 */
export const HISTORY_RELEASES = ["5.7", "5.18"] as const;
/** A history profile's name. */
export type HistoryRelease = (typeof HISTORY_RELEASES)[number];
/** Any profile's name. */
export type AnyRelease = KernelRelease | HistoryRelease;
/** Every profile, oldest first. */
export const ALL_RELEASES: readonly AnyRelease[] = ["5.7", "5.10", "5.15", "5.18", "6.1", "6.6", "6.12", "6.18"];
/** The default release, and the one the reference host runs. */
export const DEFAULT_RELEASE: KernelRelease = "6.18";

/**
 * How do_wp_page() decides that a write to a read-only anonymous page may reuse it instead of
 * copying it (docs/releases.md, "Copy-on-write, release by release"):
 * - "mapcount" (up to 5.8): reuse_swap_page(): the page is mapped once (mapcount plus swap count
 *   is 1). Extra references (a vmsplice()d pipe buffer, a GUP pin) do not count, which is the
 *   vmsplice leak (CVE-2020-29374).
 * - "page_count" (5.9 to 5.18, 09854ba94c6a "mm: do_wp_page() simplification"): reuse only if
 *   the page has no other reference at all; a pinned page is copied on the next write fault
 *   (the pin loses coherency: the wrong COW).
 * - "anon_exclusive" (5.19 on, 6c287605fd56): PageAnonExclusive decides; a page that may be
 *   shared is reused when it has no other reference; GUP pins only exclusive pages.
 */
export type CowEra = "mapcount" | "page_count" | "anon_exclusive";
/** The three eras, oldest first. */
export const COW_ERAS: readonly CowEra[] = ["mapcount", "page_count", "anon_exclusive"];

/** The copy-on-write rules of a release: the policy points in mm/ that changed between eras. */
export interface CowPolicy {
  /** do_wp_page()'s reuse decision (mm/memory.ts doWpPage). */
  readonly era: CowEra;
  /**
   * do_wp_page() first drops the swap cache's reference of a page no swap entry needs any more,
   * so a page read back from swap can be reused (5.18, 53a05ad9f21d "mm: optimize do_wp_page()
   * for exclusive pages in the swapcache"). Before, a page still in the swap cache is copied in
   * the page_count era.
   */
  readonly wpFreesSwapCache: boolean;
  /**
   * fork() gives the child a copy of a maybe-DMA-pinned anonymous page instead of sharing it
   * (copy_present_page(); 5.9, 70e806e4e645). Before, the pinned page is shared read-only and
   * the parent's next write copies away from the pin.
   */
  readonly forkCopiesPinned: boolean;
  /**
   * What a read-only FOLL_PIN unshares before pinning (gup_must_unshare()): "none" before 5.19
   * (the page mapped is pinned, shared or not), "anon" a non-exclusive anonymous page (5.19,
   * a7f226604170), "cow_mapping" also a page-cache or zero page in a COW mapping for a
   * FOLL_LONGTERM pin (6.2, 84209e87c696).
   */
  readonly pinUnshare: "none" | "anon" | "cow_mapping";
  /**
   * mprotect() maps the ptes of exclusive anonymous pages writable again instead of leaving them
   * to a write fault (can_change_pte_writable(); 6.0, 64fe24a3e05e).
   */
  readonly mprotectWriteUpgrade: boolean;
  /**
   * What a swap-in maps writable at once (do_swap_page()):
   * - "reuse_swap_page" (up to 5.17): a write fault, when mapcount plus swap count is 1;
   * - "page_count" (5.18, c145e0b47c77 "mm: streamline COW logic in do_swap_page()"): a write
   *   fault, when the page has no other reference once the swap cache let go of it;
   * - "swp_exclusive" (5.19 – 6.10, 1493a1913e34): a write fault, when the swap pte remembered
   *   the page was exclusive or nothing else references it; a read fault maps such a page
   *   read-only (exclusive in the rmap), and the first write reuses it in do_wp_page();
   * - "read_exclusive" (6.11 on, c18160dba5ff "mm: swap: reuse exclusive folio directly instead
   *   of wp page faults"): the same pages on a read fault too, in a writable vma, unless uffd-wp
   *   in a WP-registered vma needs the fault.
   * Before 6.11 a uffd-wp swap pte always comes back write-protected (pte_wrprotect() after
   * pte_mkuffd_wp()), whether or not the vma is still registered.
   */
  readonly swapIn: "reuse_swap_page" | "page_count" | "swp_exclusive" | "read_exclusive";
}

/**
 * The mm rules a userfaultfd handler can observe that changed outside copy-on-write
 * (docs/releases.md, "Other mm rules"): each a named policy point in the kernel, marked
 * `Release policy (<range>):` next to the check it changes.
 */
export interface MmRules {
  /**
   * /proc/pid/pagemap reports uffd-wp in bit 57 (PM_UFFD_WP; 5.14, fb8e37f35a2f "mm/pagemap:
   * export uffd-wp protection information"). Before, fs/proc/task_mmu.c documents and returns
   * bits 57-60 as zero, so bit 57 reads clear on every entry.
   */
  readonly pagemapUffdWp: boolean;
  /**
   * Which vma decides whether fork() keeps uffd-wp in the child's page table:
   * - "dst" (5.14 on, 8f34f1eac382 "mm/userfaultfd: fix uffd-wp special cases for fork()"):
   *   kept only where the child's vma is VM_UFFD_WP (the parent enabled UFFD_FEATURE_EVENT_FORK),
   *   for present ptes, swap ptes and copy_present_page()'s copy alike;
   * - "src" (5.7 to 5.13): copy_present_pte() keeps it when the parent's vma is VM_UFFD_WP,
   *   copy_nonpresent_pte() copies a swap pte with its uffd-wp bit as it is, and
   *   copy_present_page() maps the child's copy without it.
   */
  readonly forkUffdWp: "src" | "dst";
  /**
   * mremap() of a vma whose userfaultfd lacks UFFD_FEATURE_EVENT_REMAP clears uffd-wp from what
   * it moves (mm/mremap.c:move_ptes(): the bit leaves present and swap ptes, a uffd-wp marker is
   * dropped, and move_normal_pmd() no longer moves such a page table whole). 0cef0bb836e3 ("mm:
   * clear uffd-wp PTE/PMD state on mremap()", 6.13, Fixes the 5.7 uffd-wp API); 6.12.y has it
   * from 6.12.11 (310ac886d68d), 6.1.y from 6.1.191. Without it the moved ptes keep the bit
   * while mremap_userfaultfd_prep() unregisters the new vma, so a WP registration of the new
   * range later faults on pages nobody protected there (and pagemap reports PM_UFFD_WP on them
   * where it reports the bit).
   */
  readonly mremapClearsUffdWp: boolean;
  /**
   * UFFDIO_UNREGISTER, and the last close of the userfaultfd, clear uffd-wp from the ptes of a
   * WP-registered range (uffd_wp_range(), dropping uffd-wp markers) before they unregister it
   * (f369b07c8614 "mm/uffd: reset write protection when unregister with wp-mode", 6.0; in 5.19.y,
   * not in 5.10.y or 5.15.y). Without it the bits stay: a write to such a page resolves as an
   * ordinary write fault (the vma is no longer VM_UFFD_WP) and keeps the bit in the now
   * writable pte, while a page left alone faults again once the range is registered for WP
   * anew.
   */
  readonly unregisterClearsUffdWp: boolean;
  /**
   * UFFDIO_WRITEPROTECT may span several vmas ("mm/userfaultfd: support WP on multiple VMAs",
   * 6.4): each vma in the range must be registered for WP, holes are skipped. Before, and so in
   * 5.10.262, 5.15.225 and 6.1.192, mwriteprotect_range() asks find_dst_vma() for one vma that
   * holds the whole range and has a userfaultfd context, and answers ENOENT (changing nothing)
   * for a range that crosses a vma boundary, even when every vma in it is registered for WP.
   */
  readonly wpAcrossVmas: boolean;
}

/** An upstream copy-on-write fix a profile may lack. */
export interface CowFix {
  /** The upstream commit (12 hex digits). */
  readonly commit: string;
  /** Its subject line. */
  readonly subject: string;
  /** The mainline release it landed in. */
  readonly release: string;
  /** What a release without it shows (the cow.c test that fails, or the behaviour). */
  readonly consequence: string;
}

/** The copy-on-write fixes the profiles are told apart by (COW_FIXES), by the release they landed in. */
export interface CowFixes {
  /** 17839856fd58 (5.8): GUP breaks COW for reads, the CVE-2020-29374 fix. */
  readonly vmspliceCowBreak: CowFix;
  /** 09854ba94c6a (5.9): COW decided by page_count. */
  readonly pageCountCow: CowFix;
  /** c145e0b47c77 (5.18): swap-in decided by page_count too. */
  readonly swapinCow: CowFix;
  /** 70e806e4e645 (5.9): fork copies maybe-pinned pages. */
  readonly forkEarlyCow: CowFix;
  /** 6c287605fd56 (5.19): PageAnonExclusive. */
  readonly anonExclusive: CowFix;
  /** a7f226604170 (5.19): R/O pins unshare anonymous pages. */
  readonly pinUnshareAnon: CowFix;
  /** 84209e87c696 (6.2): R/O long-term pins unshare anything in a COW mapping. */
  readonly pinUnshareCowMapping: CowFix;
}

/** The copy-on-write fixes the profiles are told apart by (docs/releases.md). */
export const COW_FIXES: CowFixes = {
  vmspliceCowBreak: {
    commit: "17839856fd58",
    subject: 'gup: document and work around "COW can break either way" issue',
    release: "5.8",
    consequence: "vmsplice() of a COW-shared page leaks the other side's later writes (CVE-2020-29374)",
  },
  pageCountCow: {
    commit: "09854ba94c6a",
    subject: "mm: do_wp_page() simplification",
    release: "5.9",
    consequence: "do_wp_page() reuses a page that is mapped once whatever references it has",
  },
  swapinCow: {
    commit: "c145e0b47c77",
    subject: "mm: streamline COW logic in do_swap_page()",
    release: "5.18",
    consequence: "a write fault on a swapped-out page reuses it while a pipe still references it: the vmsplice leak again, through swap",
  },
  forkEarlyCow: {
    commit: "70e806e4e645",
    subject: "mm: Do early cow for pinned pages during fork() for ptes",
    release: "5.9",
    consequence: "fork() shares a pinned page; the parent's next write copies away from the pin",
  },
  anonExclusive: {
    commit: "6c287605fd56",
    subject: "mm: remember exclusively mapped anonymous pages with PG_anon_exclusive",
    release: "5.19",
    consequence: "a write fault copies a pinned page mapped read-only (mprotect, fork): the R/W pin loses coherency",
  },
  pinUnshareAnon: {
    commit: "a7f226604170",
    subject: "mm/gup: trigger FAULT_FLAG_UNSHARE when R/O-pinning a possibly shared anonymous page",
    release: "5.19",
    consequence: "a R/O pin takes a page that may be shared; the next write copies away from it",
  },
  pinUnshareCowMapping: {
    commit: "84209e87c696",
    subject: "mm/gup: reliable R/O long-term pinning in COW mappings",
    release: "6.2",
    consequence: "a R/O long-term pin of the zero page or a page-cache page in a private mapping loses coherency on the next write",
  },
};

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

/** What a release offers a userfaultfd handler, and its copy-on-write rules. */
export interface ReleaseProfile {
  /** The profile's name. */
  readonly release: AnyRelease;
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
   * The boot default of vm.unprivileged_userfaultfd (fs/userfaultfd.c:
   * sysctl_unprivileged_userfaultfd), which KernelOptions.unprivilegedUserfaultfd takes when it
   * is not given: 1 from the sysctl's introduction (5.2) to 5.10 (5.10.262's fs/userfaultfd.c
   * still initialises it to 1), 0 from 5.11 on, where "userfaultfd: add user-mode only option to
   * unprivileged_userfaultfd sysctl knob" changed it together with UFFD_USER_MODE_ONLY (0 in
   * 5.15.225 and 6.1.192).
   */
  readonly unprivilegedUserfaultfdDefault: boolean;
  /**
   * UFFDIO_API checks unknown feature bits together with the API number, before the EPERM of
   * EVENT_FORK (5.10.y: the 6.10 reordering, 1723f04caacb, is not in 5.10.262's userfaultfd_api();
   * 5.15.y has it, read in Ubuntu's 5.15.0-208.218, upstream 5.15.225).
   */
  readonly apiFeatureCheckFirst: boolean;
  /** The copy-on-write rules (docs/releases.md, "Copy-on-write, release by release"). */
  readonly cow: CowPolicy;
  /** The other mm rules a handler can observe (docs/releases.md, "Other mm rules"). */
  readonly mm: MmRules;
  /** The copy-on-write fixes this release does not have (empty from 6.2 on). */
  readonly lacks: readonly CowFix[];
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
const FEATURES_5_18 = FEATURES_5_15 | UFFD_FEATURE_EXACT_ADDRESS; // 0xfff
const FEATURES_6_1 = FEATURES_5_18 | UFFD_FEATURE_WP_HUGETLBFS_SHMEM; // 0x1fff
const FEATURES_6_6 = FEATURES_6_1 | UFFD_FEATURE_WP_UNPOPULATED | UFFD_FEATURE_POISON; // 0x7fff
const FEATURES_6_12 = FEATURES_6_6 | UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_MOVE; // 0x1ffff

// UFFD_API_RANGE_IOCTLS, release by release.
const RANGE_5_10 = bit(_UFFDIO_WAKE) | bit(_UFFDIO_COPY) | bit(_UFFDIO_ZEROPAGE) | bit(_UFFDIO_WRITEPROTECT);
const RANGE_5_15 = RANGE_5_10 | bit(_UFFDIO_CONTINUE);
const RANGE_6_6 = RANGE_5_15 | bit(_UFFDIO_POISON);
const RANGE_6_12 = RANGE_6_6 | bit(_UFFDIO_MOVE);

const MODES_5_10 = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP;
const MODES_5_13 = MODES_5_10 | UFFDIO_REGISTER_MODE_MINOR;

// Divergence from Linux: the history profiles and the old long-term ones are their COW rules as
// listed in docs/releases.md ("Not modelled, or not verified"), not the whole old mm: pinned
// pages never enter the swap cache (feb889fb40fa is later than 5.7), UFFDIO_WRITEPROTECT's
// un-protect and everything outside the CowPolicy and MmRules points behave as 6.18's.
//
// The copy-on-write eras (docs/releases.md). 5.10.y and 5.15.y stay in the page_count era: the
// PageAnonExclusive series was not backported (a 5.15-stable fix of 70e806e4e645's
// copy_present_page() in late 2022 says fb3d824d1a46, part of that series, is not in 5.15.y).
const COW_5_7: CowPolicy = { era: "mapcount", wpFreesSwapCache: false, forkCopiesPinned: false, pinUnshare: "none", mprotectWriteUpgrade: false, swapIn: "reuse_swap_page" };
const COW_5_10: CowPolicy = { era: "page_count", wpFreesSwapCache: false, forkCopiesPinned: true, pinUnshare: "none", mprotectWriteUpgrade: false, swapIn: "reuse_swap_page" };
const COW_5_18: CowPolicy = { era: "page_count", wpFreesSwapCache: true, forkCopiesPinned: true, pinUnshare: "none", mprotectWriteUpgrade: false, swapIn: "page_count" };
const COW_6_1: CowPolicy = { era: "anon_exclusive", wpFreesSwapCache: true, forkCopiesPinned: true, pinUnshare: "anon", mprotectWriteUpgrade: true, swapIn: "swp_exclusive" };
const COW_6_2: CowPolicy = { era: "anon_exclusive", wpFreesSwapCache: true, forkCopiesPinned: true, pinUnshare: "cow_mapping", mprotectWriteUpgrade: true, swapIn: "swp_exclusive" };
const COW_6_11: CowPolicy = { ...COW_6_2, swapIn: "read_exclusive" };

// The other mm rules (docs/releases.md, "Other mm rules"), each read in the stable source where
// one could be read: Debian's linux-source-5.10 5.10.262-1 and Ubuntu's linux-source-5.15.0
// 5.15.0-208.218 (upstream 5.15.225). pagemap bit 57 (fb8e37f35a2f, 5.14) is not in 5.10.y
// (fs/proc/task_mmu.c still says "Bits 57-60 zero"); 8f34f1eac382's fork() fix (5.14) is, in
// copy_present_pte(), copy_nonpresent_pte() and copy_present_page() of 5.10.262 mm/memory.c.
// The mremap() clearing (0cef0bb836e3, 6.13) reached 6.12.y in 6.12.11 and 6.1.y in 6.1.191, but
// neither 5.10.262's nor 5.15.225's move_ptes() has it. UFFDIO_UNREGISTER and the last close
// clear uffd-wp from the ptes only from f369b07c8614 (6.0, also taken by 5.19.y):
// 5.10.262's and 5.15.225's userfaultfd_unregister() and userfaultfd_release() reset the vma
// flags and nothing else. 6.6.y could not be read: modelled as 6.1.y. The history profiles are
// mainline tags.
// UFFDIO_WRITEPROTECT across vmas is 6.4: 6.1.192's mwriteprotect_range() still wants one vma.
const MM_5_7: MmRules = { pagemapUffdWp: false, forkUffdWp: "src", mremapClearsUffdWp: false, unregisterClearsUffdWp: false, wpAcrossVmas: false };
const MM_5_10: MmRules = { pagemapUffdWp: false, forkUffdWp: "dst", mremapClearsUffdWp: false, unregisterClearsUffdWp: false, wpAcrossVmas: false };
const MM_5_15: MmRules = { pagemapUffdWp: true, forkUffdWp: "dst", mremapClearsUffdWp: false, unregisterClearsUffdWp: false, wpAcrossVmas: false };
const MM_6_1: MmRules = { pagemapUffdWp: true, forkUffdWp: "dst", mremapClearsUffdWp: true, unregisterClearsUffdWp: true, wpAcrossVmas: false };
const MM_STABLE: MmRules = { ...MM_6_1, wpAcrossVmas: true };

const F = COW_FIXES;
const LACKS_5_7: readonly CowFix[] = [F.vmspliceCowBreak, F.pageCountCow, F.forkEarlyCow, F.swapinCow, F.anonExclusive, F.pinUnshareAnon, F.pinUnshareCowMapping];
const LACKS_5_10: readonly CowFix[] = [F.swapinCow, F.anonExclusive, F.pinUnshareAnon, F.pinUnshareCowMapping];
const LACKS_5_18: readonly CowFix[] = [F.anonExclusive, F.pinUnshareAnon, F.pinUnshareCowMapping];

const PROFILES: Readonly<Record<AnyRelease, ReleaseProfile>> = {
  "5.7": {
    // Mainline v5.7: uffd-wp for anonymous memory is new (5.7), everything later is missing.
    release: "5.7", apiFeatures: FEATURES_5_10, rangeIoctls: RANGE_5_10, registerModes: MODES_5_10,
    minorShmem: false, wpShmem: false, continueModeWp: false, userModeOnly: false, devUserfaultfd: false, pagemapScan: false, unprivilegedUserfaultfdDefault: true,
    apiFeatureCheckFirst: true, cow: COW_5_7, mm: MM_5_7, lacks: LACKS_5_7,
  },
  "5.10": {
    release: "5.10", apiFeatures: FEATURES_5_10, rangeIoctls: RANGE_5_10, registerModes: MODES_5_10,
    minorShmem: false, wpShmem: false, continueModeWp: false, userModeOnly: false, devUserfaultfd: false, pagemapScan: false, unprivilegedUserfaultfdDefault: true,
    apiFeatureCheckFirst: true, cow: COW_5_10, mm: MM_5_10, lacks: LACKS_5_10,
  },
  "5.15": {
    release: "5.15", apiFeatures: FEATURES_5_15, rangeIoctls: RANGE_5_15, registerModes: MODES_5_13,
    minorShmem: true, wpShmem: false, continueModeWp: false, userModeOnly: true, devUserfaultfd: false, pagemapScan: false, unprivilegedUserfaultfdDefault: false,
    apiFeatureCheckFirst: false, cow: COW_5_10, mm: MM_5_15, lacks: LACKS_5_10,
  },
  "5.18": {
    // Mainline v5.18: EXACT_ADDRESS is new; WP on shmem, /dev/userfaultfd and the rest come later.
    // Mainline before 6.10, so the old UFFDIO_API order (no stable tree to backport 1723f04caacb).
    release: "5.18", apiFeatures: FEATURES_5_18, rangeIoctls: RANGE_5_15, registerModes: MODES_5_13,
    minorShmem: true, wpShmem: false, continueModeWp: false, userModeOnly: true, devUserfaultfd: false, pagemapScan: false, unprivilegedUserfaultfdDefault: false,
    apiFeatureCheckFirst: true, cow: COW_5_18, mm: MM_5_15, lacks: LACKS_5_18,
  },
  "6.1": {
    release: "6.1", apiFeatures: FEATURES_6_1, rangeIoctls: RANGE_5_15, registerModes: MODES_5_13,
    minorShmem: true, wpShmem: true, continueModeWp: false, userModeOnly: true, devUserfaultfd: true, pagemapScan: false, unprivilegedUserfaultfdDefault: false,
    apiFeatureCheckFirst: false, cow: COW_6_1, mm: MM_6_1, lacks: [F.pinUnshareCowMapping],
  },
  "6.6": {
    release: "6.6", apiFeatures: FEATURES_6_6, rangeIoctls: RANGE_6_6, registerModes: MODES_5_13,
    minorShmem: true, wpShmem: true, continueModeWp: true, userModeOnly: true, devUserfaultfd: true, pagemapScan: false, unprivilegedUserfaultfdDefault: false,
    apiFeatureCheckFirst: false, cow: COW_6_2, mm: MM_STABLE, lacks: [],
  },
  "6.12": {
    release: "6.12", apiFeatures: FEATURES_6_12, rangeIoctls: RANGE_6_12, registerModes: MODES_5_13,
    minorShmem: true, wpShmem: true, continueModeWp: true, userModeOnly: true, devUserfaultfd: true, pagemapScan: true, unprivilegedUserfaultfdDefault: false,
    apiFeatureCheckFirst: false, cow: COW_6_11, mm: MM_STABLE, lacks: [],
  },
  "6.18": {
    release: "6.18", apiFeatures: FEATURES_6_12, rangeIoctls: RANGE_6_12, registerModes: MODES_5_13,
    minorShmem: true, wpShmem: true, continueModeWp: true, userModeOnly: true, devUserfaultfd: true, pagemapScan: true, unprivilegedUserfaultfdDefault: false,
    apiFeatureCheckFirst: false, cow: COW_6_11, mm: MM_STABLE, lacks: [],
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
  if (typeof release === "string" && Object.hasOwn(PROFILES, release)) return PROFILES[release as AnyRelease];
  const shown = typeof release === "string" ? JSON.stringify(release) : String(release);
  throw new RangeError(`unknown kernel release ${shown}: the profiles are ${ALL_RELEASES.map((r) => JSON.stringify(r)).join(", ")}`);
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
