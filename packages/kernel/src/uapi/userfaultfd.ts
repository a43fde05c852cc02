/**
 * include/uapi/linux/userfaultfd.h (Linux 6.18) and the ioctl request encoding of
 * include/uapi/asm-generic/ioctl.h, with the struct shapes the ioctls take.
 */

/** The uAPI version UFFDIO_API expects in `api`. */
export const UFFD_API = 0xaa;
/** The ioctl type byte of every userfaultfd ioctl (0xAA). */
export const UFFDIO = 0xaa;
/** userfaultfd(2) flag: handle only faults from user mode; the only way an unprivileged process may create one (with vm.unprivileged_userfaultfd = 0). */
export const UFFD_USER_MODE_ONLY = 1;

// ioctl request numbers: _IOC(dir, type, nr, size) = dir << 30 | size << 16 | type << 8 | nr.
const IOC_WRITE = 1;
const IOC_READ = 2;
function ioc(dir: number, type: number, nr: number, size: number): number {
  return ((dir << 30) >>> 0) + size * 0x10000 + type * 0x100 + nr;
}
const iowr = (nr: number, size: number): number => ioc(IOC_READ | IOC_WRITE, UFFDIO, nr, size);
const ior = (nr: number, size: number): number => ioc(IOC_READ, UFFDIO, nr, size);

/** ioctl number of UFFDIO_REGISTER; bit `1n << BigInt(n)` of an `ioctls` mask. */
export const _UFFDIO_REGISTER = 0x00;
/** ioctl number of UFFDIO_UNREGISTER (bit in `ioctls` masks). */
export const _UFFDIO_UNREGISTER = 0x01;
/** ioctl number of UFFDIO_WAKE (bit in `ioctls` masks). */
export const _UFFDIO_WAKE = 0x02;
/** ioctl number of UFFDIO_COPY (bit in `ioctls` masks). */
export const _UFFDIO_COPY = 0x03;
/** ioctl number of UFFDIO_ZEROPAGE (bit in `ioctls` masks). */
export const _UFFDIO_ZEROPAGE = 0x04;
/** ioctl number of UFFDIO_MOVE (bit in `ioctls` masks). */
export const _UFFDIO_MOVE = 0x05;
/** ioctl number of UFFDIO_WRITEPROTECT (bit in `ioctls` masks). */
export const _UFFDIO_WRITEPROTECT = 0x06;
/** ioctl number of UFFDIO_CONTINUE (bit in `ioctls` masks). */
export const _UFFDIO_CONTINUE = 0x07;
/** ioctl number of UFFDIO_POISON (bit in `ioctls` masks). */
export const _UFFDIO_POISON = 0x08;
/** ioctl number of UFFDIO_API (bit 63 of `ioctls` masks). */
export const _UFFDIO_API = 0x3f;

/** ioctl(2) request UFFDIO_API on a userfaultfd: the handshake: agree on the API version and enable features ({@link UffdioApi}); must come first. */
export const UFFDIO_API = iowr(_UFFDIO_API, 24); // 0xC018AA3F
/** ioctl(2) request UFFDIO_REGISTER on a userfaultfd: register a range for MISSING, WP and/or MINOR faults ({@link UffdioRegister}); returns the allowed `ioctls`. */
export const UFFDIO_REGISTER = iowr(_UFFDIO_REGISTER, 32); // 0xC020AA00
/** ioctl(2) request UFFDIO_UNREGISTER on a userfaultfd: unregister a range ({@link UffdioRange}). */
export const UFFDIO_UNREGISTER = ior(_UFFDIO_UNREGISTER, 16); // 0x8010AA01
/** ioctl(2) request UFFDIO_WAKE on a userfaultfd: wake the threads blocked on faults in a range ({@link UffdioRange}). */
export const UFFDIO_WAKE = ior(_UFFDIO_WAKE, 16); // 0x8010AA02
/** ioctl(2) request UFFDIO_COPY on a userfaultfd: fill missing pages with bytes and wake the waiters ({@link UffdioCopy}). */
export const UFFDIO_COPY = iowr(_UFFDIO_COPY, 40); // 0xC028AA03
/** ioctl(2) request UFFDIO_ZEROPAGE on a userfaultfd: map the zero page into missing pages ({@link UffdioZeropage}). */
export const UFFDIO_ZEROPAGE = iowr(_UFFDIO_ZEROPAGE, 32); // 0xC020AA04
/** ioctl(2) request UFFDIO_MOVE on a userfaultfd: move exclusive anonymous pages from `src` to `dst` ({@link UffdioMove}). */
export const UFFDIO_MOVE = iowr(_UFFDIO_MOVE, 40); // 0xC028AA05
/** ioctl(2) request UFFDIO_WRITEPROTECT on a userfaultfd: write-protect or unprotect a range registered for WP ({@link UffdioWriteprotect}). */
export const UFFDIO_WRITEPROTECT = iowr(_UFFDIO_WRITEPROTECT, 24); // 0xC018AA06
/** ioctl(2) request UFFDIO_CONTINUE on a userfaultfd: map the page already in the page cache after a MINOR fault ({@link UffdioContinue}). */
export const UFFDIO_CONTINUE = iowr(_UFFDIO_CONTINUE, 32); // 0xC020AA07
/** ioctl(2) request UFFDIO_POISON on a userfaultfd: install poison markers: an access raises SIGBUS ({@link UffdioPoison}). */
export const UFFDIO_POISON = iowr(_UFFDIO_POISON, 32); // 0xC020AA08
/** _IO(0xAA, 0), issued on an open /dev/userfaultfd. */
export const USERFAULTFD_IOC_NEW = ioc(0, UFFDIO, 0x00, 0); // 0xAA00
/** _IOWR('f', 16, struct pm_scan_arg), issued on an open /proc/pid/pagemap. */
export const PAGEMAP_SCAN = ioc(IOC_READ | IOC_WRITE, 0x66, 16, 96); // 0xC0606610

/** Feature: write-protect faults (always available with WP registration). */
export const UFFD_FEATURE_PAGEFAULT_FLAG_WP = 1 << 0;
/** Feature: UFFD_EVENT_FORK, a new userfaultfd for a fork() child (needs CAP_SYS_PTRACE). */
export const UFFD_FEATURE_EVENT_FORK = 1 << 1;
/** Feature: UFFD_EVENT_REMAP on mremap(2) of a registered range. */
export const UFFD_FEATURE_EVENT_REMAP = 1 << 2;
/** Feature: UFFD_EVENT_REMOVE on MADV_DONTNEED / MADV_REMOVE of a registered range. */
export const UFFD_FEATURE_EVENT_REMOVE = 1 << 3;
/** Feature: MISSING faults on hugetlbfs. */
export const UFFD_FEATURE_MISSING_HUGETLBFS = 1 << 4;
/** Feature: MISSING faults on shmem. */
export const UFFD_FEATURE_MISSING_SHMEM = 1 << 5;
/** Feature: UFFD_EVENT_UNMAP on munmap(2) (and mremap shrinking) of a registered range. */
export const UFFD_FEATURE_EVENT_UNMAP = 1 << 6;
/** Feature: faults raise SIGBUS instead of waiting for a handler. */
export const UFFD_FEATURE_SIGBUS = 1 << 7;
/** Feature: pagefault messages carry the faulting thread id (`feat.ptid`). */
export const UFFD_FEATURE_THREAD_ID = 1 << 8;
/** Feature: MINOR faults on hugetlbfs. */
export const UFFD_FEATURE_MINOR_HUGETLBFS = 1 << 9;
/** Feature: MINOR faults on shmem. */
export const UFFD_FEATURE_MINOR_SHMEM = 1 << 10;
/** Feature: pagefault messages carry the exact faulting address, not the page start. */
export const UFFD_FEATURE_EXACT_ADDRESS = 1 << 11;
/** Feature: write-protect on hugetlbfs and shmem. */
export const UFFD_FEATURE_WP_HUGETLBFS_SHMEM = 1 << 12;
/** Feature: write-protecting anonymous memory also protects unpopulated pages (markers). */
export const UFFD_FEATURE_WP_UNPOPULATED = 1 << 13;
/** Feature: UFFDIO_POISON. */
export const UFFD_FEATURE_POISON = 1 << 14;
/** Feature: write faults on WP ranges are resolved by the kernel (unprotect and continue), for dirty tracking with PAGEMAP_SCAN. */
export const UFFD_FEATURE_WP_ASYNC = 1 << 15;
/** Feature: UFFDIO_MOVE. */
export const UFFD_FEATURE_MOVE = 1 << 16;
/** Every feature 6.18 knows: what UFFDIO_API reports (0x1ffff on the reference host). */
export const UFFD_API_FEATURES = 0x1ffff;

/** ioctls masks are 64-bit (_UFFDIO_API is bit 63), hence bigint. */
export const UFFD_API_IOCTLS = (1n << BigInt(_UFFDIO_REGISTER)) | (1n << BigInt(_UFFDIO_UNREGISTER)) | (1n << BigInt(_UFFDIO_API));
/** The `ioctls` mask UFFDIO_REGISTER returns for anonymous and shmem ranges: WAKE, COPY, ZEROPAGE, MOVE, WRITEPROTECT, CONTINUE, POISON (bits of _UFFDIO_*). */
export const UFFD_API_RANGE_IOCTLS =
  (1n << BigInt(_UFFDIO_WAKE)) |
  (1n << BigInt(_UFFDIO_COPY)) |
  (1n << BigInt(_UFFDIO_ZEROPAGE)) |
  (1n << BigInt(_UFFDIO_MOVE)) |
  (1n << BigInt(_UFFDIO_WRITEPROTECT)) |
  (1n << BigInt(_UFFDIO_CONTINUE)) |
  (1n << BigInt(_UFFDIO_POISON));
/** The `ioctls` mask for hugetlbfs ranges: no ZEROPAGE, no MOVE. */
export const UFFD_API_RANGE_IOCTLS_BASIC =
  (1n << BigInt(_UFFDIO_WAKE)) |
  (1n << BigInt(_UFFDIO_COPY)) |
  (1n << BigInt(_UFFDIO_WRITEPROTECT)) |
  (1n << BigInt(_UFFDIO_CONTINUE)) |
  (1n << BigInt(_UFFDIO_POISON));

/** Register mode: a fault on a page that is not there is a userfault. */
export const UFFDIO_REGISTER_MODE_MISSING = 1 << 0;
/** Register mode: a write to a write-protected page is a userfault. */
export const UFFDIO_REGISTER_MODE_WP = 1 << 1;
/** Register mode: a fault on a page in the page cache but not in the page table is a userfault (shmem, hugetlbfs). */
export const UFFDIO_REGISTER_MODE_MINOR = 1 << 2;
/** Every register mode bit (MISSING | WP | MINOR). */
export const UFFD_API_REGISTER_MODES = 7;

/** UFFDIO_COPY mode: do not wake the waiters (wake later with UFFDIO_WAKE). */
export const UFFDIO_COPY_MODE_DONTWAKE = 1 << 0;
/** UFFDIO_COPY mode: map the page write-protected (the range must be registered for WP). */
export const UFFDIO_COPY_MODE_WP = 1 << 1;
/** UFFDIO_ZEROPAGE mode: do not wake the waiters. */
export const UFFDIO_ZEROPAGE_MODE_DONTWAKE = 1 << 0;
/** UFFDIO_WRITEPROTECT mode: protect; without it the range is unprotected (and woken unless DONTWAKE). */
export const UFFDIO_WRITEPROTECT_MODE_WP = 1 << 0;
/** UFFDIO_WRITEPROTECT mode: do not wake the waiters when unprotecting. */
export const UFFDIO_WRITEPROTECT_MODE_DONTWAKE = 1 << 1;
/** UFFDIO_CONTINUE mode: do not wake the waiters. */
export const UFFDIO_CONTINUE_MODE_DONTWAKE = 1 << 0;
/** UFFDIO_CONTINUE mode: map the page write-protected. */
export const UFFDIO_CONTINUE_MODE_WP = 1 << 1;
/** UFFDIO_POISON mode: do not wake the waiters. */
export const UFFDIO_POISON_MODE_DONTWAKE = 1 << 0;
/** UFFDIO_MOVE mode: do not wake the waiters. */
export const UFFDIO_MOVE_MODE_DONTWAKE = 1 << 0;
/** UFFDIO_MOVE mode: skip holes in the source instead of failing with ENOENT. */
export const UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES = 1 << 1;

/** uffd_msg event: a userfault (`arg.pagefault`). */
export const UFFD_EVENT_PAGEFAULT = 0x12;
/** uffd_msg event: the process forked; `arg.fork.ufd` is the child's userfaultfd. */
export const UFFD_EVENT_FORK = 0x13;
/** uffd_msg event: a registered range moved (`arg.remap`). */
export const UFFD_EVENT_REMAP = 0x14;
/** uffd_msg event: pages of a registered range were dropped (`arg.remove`); they read zeros or fault again. */
export const UFFD_EVENT_REMOVE = 0x15;
/** uffd_msg event: a registered range was unmapped (`arg.remove`). */
export const UFFD_EVENT_UNMAP = 0x16;

/** pagefault flag: the access was a write. */
export const UFFD_PAGEFAULT_FLAG_WRITE = 1 << 0;
/** pagefault flag: a write-protect fault. */
export const UFFD_PAGEFAULT_FLAG_WP = 1 << 1;
/** pagefault flag: a minor fault. */
export const UFFD_PAGEFAULT_FLAG_MINOR = 1 << 2;

/** PAGEMAP_SCAN flags and categories (include/uapi/linux/fs.h). */
export const PM_SCAN_WP_MATCHING = 1 << 0;
/** PAGEMAP_SCAN flag: fail with EPERM unless the range is registered with UFFD_FEATURE_WP_ASYNC. */
export const PM_SCAN_CHECK_WPASYNC = 1 << 1;
/** PAGEMAP_SCAN category: the page is in a range registered for async write-protect. */
export const PAGE_IS_WPALLOWED = 1 << 0;
/** PAGEMAP_SCAN category: written since it was last write-protected. */
export const PAGE_IS_WRITTEN = 1 << 1;
/** PAGEMAP_SCAN category: file-backed (including shmem). */
export const PAGE_IS_FILE = 1 << 2;
/** PAGEMAP_SCAN category: present in memory. */
export const PAGE_IS_PRESENT = 1 << 3;
/** PAGEMAP_SCAN category: swapped out. */
export const PAGE_IS_SWAPPED = 1 << 4;
/** PAGEMAP_SCAN category: the shared zero page. */
export const PAGE_IS_PFNZERO = 1 << 5;
/** PAGEMAP_SCAN category: part of a huge page. */
export const PAGE_IS_HUGE = 1 << 6;
/** PAGEMAP_SCAN category: soft-dirty (never set here: no CONFIG_MEM_SOFT_DIRTY). */
export const PAGE_IS_SOFT_DIRTY = 1 << 7;
/** PAGEMAP_SCAN category: a guard region (MADV_GUARD_INSTALL). */
export const PAGE_IS_GUARD = 1 << 8;

/** struct uffdio_range: a page-aligned range of user addresses. */
export interface UffdioRange {
  /** Start address (page-aligned). */
  start: number;
  /** Length in bytes (a multiple of PAGE_SIZE). */
  len: number;
}
/** struct uffdio_api: the UFFDIO_API handshake. */
export interface UffdioApi {
  /** Must be UFFD_API. */
  api: number;
  /** In: the UFFD_FEATURE_* bits wanted. Out: every feature the kernel offers. */
  features: number;
  /** Out: the ioctls the fd accepts (bits `1n << BigInt(_UFFDIO_*)`). */
  ioctls?: bigint;
}
/** struct uffdio_register: the UFFDIO_REGISTER argument. */
export interface UffdioRegister {
  /** The range to register (it must be covered by compatible vmas). */
  range: UffdioRange;
  /** UFFDIO_REGISTER_MODE_* bits. */
  mode: number;
  /** Out: the range ioctls allowed on the range (UFFD_API_RANGE_IOCTLS or a subset). */
  ioctls?: bigint;
}
/** struct uffdio_copy: the UFFDIO_COPY argument. src: a user address in the calling process, or bytes the caller supplies directly. */
export interface UffdioCopy {
  /** Destination address (page-aligned, in the registered range). */
  dst: number;
  /** Source: an address in the calling process, or the bytes themselves. */
  src: number | Uint8Array;
  /** Length in bytes (a multiple of PAGE_SIZE). */
  len: number;
  /** UFFDIO_COPY_MODE_* bits. */
  mode: number;
  /** Out: bytes copied, or a negative errno (-EEXIST, -EAGAIN after partial progress: see the bytes done). */
  copy?: number;
}
/** struct uffdio_zeropage: the UFFDIO_ZEROPAGE argument. */
export interface UffdioZeropage {
  /** The missing pages to map the zero page into. */
  range: UffdioRange;
  /** UFFDIO_ZEROPAGE_MODE_* bits. */
  mode: number;
  /** Out: bytes mapped, or a negative errno. */
  zeropage?: number;
}
/** struct uffdio_writeprotect: the UFFDIO_WRITEPROTECT argument. */
export interface UffdioWriteprotect {
  /** The range to protect or unprotect (registered for WP). */
  range: UffdioRange;
  /** UFFDIO_WRITEPROTECT_MODE_* bits: MODE_WP protects, no MODE_WP unprotects. */
  mode: number;
}
/** struct uffdio_continue: the UFFDIO_CONTINUE argument. */
export interface UffdioContinue {
  /** The range whose page-cache pages to map (registered for MINOR). */
  range: UffdioRange;
  /** UFFDIO_CONTINUE_MODE_* bits. */
  mode: number;
  /** Out: bytes mapped, or a negative errno. */
  mapped?: number;
}
/** struct uffdio_poison: the UFFDIO_POISON argument. */
export interface UffdioPoison {
  /** The range to poison (missing pages only). */
  range: UffdioRange;
  /** UFFDIO_POISON_MODE_* bits. */
  mode: number;
  /** Out: bytes poisoned, or a negative errno. */
  updated?: number;
}
/** struct uffdio_move: the UFFDIO_MOVE argument. In C's order: `dst` first, then `src`. */
export interface UffdioMove {
  /** Destination address (page-aligned, registered with this userfaultfd). */
  dst: number;
  /** Source address (page-aligned; exclusive anonymous pages of the same process). */
  src: number;
  /** Length in bytes (a multiple of PAGE_SIZE). */
  len: number;
  /** UFFDIO_MOVE_MODE_* bits. */
  mode: number;
  /** Out: bytes moved, or a negative errno. */
  move?: number;
}

/** struct page_region (24 bytes). */
export interface PageRegion {
  /** First address of the region. */
  start: number;
  /** End address (exclusive). */
  end: number;
  /** PAGE_IS_* bits the pages of the region share (masked by returnMask). */
  categories: number;
}
/**
 * struct pm_scan_arg (96 bytes). `vec` names the output: an array the kernel fills with at most
 * `vecLen` regions, or null for no output. walkEnd is written by the kernel.
 */
export interface PmScanArg {
  /** sizeof(struct pm_scan_arg): 96. */
  size: number;
  /** PM_SCAN_* flags. */
  flags: number;
  /** Start of the scanned range. */
  start: number;
  /** End of the scanned range (exclusive). */
  end: number;
  /** Out: where the walk stopped (end, or earlier when vec or maxPages filled up). */
  walkEnd?: number;
  /** Output regions, or null for none. */
  vec: PageRegion[] | null;
  /** Capacity of vec in regions. */
  vecLen: number;
  /** Stop after this many matching pages (0: no limit). */
  maxPages: number;
  /** PAGE_IS_* bits to invert before matching. */
  categoryInverted: number;
  /** PAGE_IS_* bits that must all be set (after inversion). */
  categoryMask: number;
  /** PAGE_IS_* bits of which at least one must be set. */
  categoryAnyofMask: number;
  /** PAGE_IS_* bits reported in each region's categories. */
  returnMask: number;
}
