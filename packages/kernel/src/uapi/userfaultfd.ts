/**
 * include/uapi/linux/userfaultfd.h (Linux 6.18) and the ioctl request encoding of
 * include/uapi/asm-generic/ioctl.h, with the struct shapes the ioctls take.
 */

export const UFFD_API = 0xaa;
export const UFFDIO = 0xaa;
export const UFFD_USER_MODE_ONLY = 1;

// ioctl request numbers: _IOC(dir, type, nr, size) = dir << 30 | size << 16 | type << 8 | nr.
const IOC_WRITE = 1;
const IOC_READ = 2;
function ioc(dir: number, type: number, nr: number, size: number): number {
  return ((dir << 30) >>> 0) + size * 0x10000 + type * 0x100 + nr;
}
const iowr = (nr: number, size: number): number => ioc(IOC_READ | IOC_WRITE, UFFDIO, nr, size);
const ior = (nr: number, size: number): number => ioc(IOC_READ, UFFDIO, nr, size);

export const _UFFDIO_REGISTER = 0x00;
export const _UFFDIO_UNREGISTER = 0x01;
export const _UFFDIO_WAKE = 0x02;
export const _UFFDIO_COPY = 0x03;
export const _UFFDIO_ZEROPAGE = 0x04;
export const _UFFDIO_MOVE = 0x05;
export const _UFFDIO_WRITEPROTECT = 0x06;
export const _UFFDIO_CONTINUE = 0x07;
export const _UFFDIO_POISON = 0x08;
export const _UFFDIO_API = 0x3f;

export const UFFDIO_API = iowr(_UFFDIO_API, 24); // 0xC018AA3F
export const UFFDIO_REGISTER = iowr(_UFFDIO_REGISTER, 32); // 0xC020AA00
export const UFFDIO_UNREGISTER = ior(_UFFDIO_UNREGISTER, 16); // 0x8010AA01
export const UFFDIO_WAKE = ior(_UFFDIO_WAKE, 16); // 0x8010AA02
export const UFFDIO_COPY = iowr(_UFFDIO_COPY, 40); // 0xC028AA03
export const UFFDIO_ZEROPAGE = iowr(_UFFDIO_ZEROPAGE, 32); // 0xC020AA04
export const UFFDIO_MOVE = iowr(_UFFDIO_MOVE, 40); // 0xC028AA05
export const UFFDIO_WRITEPROTECT = iowr(_UFFDIO_WRITEPROTECT, 24); // 0xC018AA06
export const UFFDIO_CONTINUE = iowr(_UFFDIO_CONTINUE, 32); // 0xC020AA07
export const UFFDIO_POISON = iowr(_UFFDIO_POISON, 32); // 0xC020AA08
/** _IO(0xAA, 0), issued on an open /dev/userfaultfd. */
export const USERFAULTFD_IOC_NEW = ioc(0, UFFDIO, 0x00, 0); // 0xAA00
/** _IOWR('f', 16, struct pm_scan_arg), issued on an open /proc/pid/pagemap. */
export const PAGEMAP_SCAN = ioc(IOC_READ | IOC_WRITE, 0x66, 16, 96); // 0xC0606610

export const UFFD_FEATURE_PAGEFAULT_FLAG_WP = 1 << 0;
export const UFFD_FEATURE_EVENT_FORK = 1 << 1;
export const UFFD_FEATURE_EVENT_REMAP = 1 << 2;
export const UFFD_FEATURE_EVENT_REMOVE = 1 << 3;
export const UFFD_FEATURE_MISSING_HUGETLBFS = 1 << 4;
export const UFFD_FEATURE_MISSING_SHMEM = 1 << 5;
export const UFFD_FEATURE_EVENT_UNMAP = 1 << 6;
export const UFFD_FEATURE_SIGBUS = 1 << 7;
export const UFFD_FEATURE_THREAD_ID = 1 << 8;
export const UFFD_FEATURE_MINOR_HUGETLBFS = 1 << 9;
export const UFFD_FEATURE_MINOR_SHMEM = 1 << 10;
export const UFFD_FEATURE_EXACT_ADDRESS = 1 << 11;
export const UFFD_FEATURE_WP_HUGETLBFS_SHMEM = 1 << 12;
export const UFFD_FEATURE_WP_UNPOPULATED = 1 << 13;
export const UFFD_FEATURE_POISON = 1 << 14;
export const UFFD_FEATURE_WP_ASYNC = 1 << 15;
export const UFFD_FEATURE_MOVE = 1 << 16;
/** Every feature 6.18 knows: what UFFDIO_API reports (0x1ffff on the reference host). */
export const UFFD_API_FEATURES = 0x1ffff;

/** ioctls masks are 64-bit (_UFFDIO_API is bit 63), hence bigint. */
export const UFFD_API_IOCTLS = (1n << BigInt(_UFFDIO_REGISTER)) | (1n << BigInt(_UFFDIO_UNREGISTER)) | (1n << BigInt(_UFFDIO_API));
export const UFFD_API_RANGE_IOCTLS =
  (1n << BigInt(_UFFDIO_WAKE)) |
  (1n << BigInt(_UFFDIO_COPY)) |
  (1n << BigInt(_UFFDIO_ZEROPAGE)) |
  (1n << BigInt(_UFFDIO_MOVE)) |
  (1n << BigInt(_UFFDIO_WRITEPROTECT)) |
  (1n << BigInt(_UFFDIO_CONTINUE)) |
  (1n << BigInt(_UFFDIO_POISON));
export const UFFD_API_RANGE_IOCTLS_BASIC =
  (1n << BigInt(_UFFDIO_WAKE)) |
  (1n << BigInt(_UFFDIO_COPY)) |
  (1n << BigInt(_UFFDIO_WRITEPROTECT)) |
  (1n << BigInt(_UFFDIO_CONTINUE)) |
  (1n << BigInt(_UFFDIO_POISON));

export const UFFDIO_REGISTER_MODE_MISSING = 1 << 0;
export const UFFDIO_REGISTER_MODE_WP = 1 << 1;
export const UFFDIO_REGISTER_MODE_MINOR = 1 << 2;
export const UFFD_API_REGISTER_MODES = 7;

export const UFFDIO_COPY_MODE_DONTWAKE = 1 << 0;
export const UFFDIO_COPY_MODE_WP = 1 << 1;
export const UFFDIO_ZEROPAGE_MODE_DONTWAKE = 1 << 0;
export const UFFDIO_WRITEPROTECT_MODE_WP = 1 << 0;
export const UFFDIO_WRITEPROTECT_MODE_DONTWAKE = 1 << 1;
export const UFFDIO_CONTINUE_MODE_DONTWAKE = 1 << 0;
export const UFFDIO_CONTINUE_MODE_WP = 1 << 1;
export const UFFDIO_POISON_MODE_DONTWAKE = 1 << 0;
export const UFFDIO_MOVE_MODE_DONTWAKE = 1 << 0;
export const UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES = 1 << 1;

export const UFFD_EVENT_PAGEFAULT = 0x12;
export const UFFD_EVENT_FORK = 0x13;
export const UFFD_EVENT_REMAP = 0x14;
export const UFFD_EVENT_REMOVE = 0x15;
export const UFFD_EVENT_UNMAP = 0x16;

export const UFFD_PAGEFAULT_FLAG_WRITE = 1 << 0;
export const UFFD_PAGEFAULT_FLAG_WP = 1 << 1;
export const UFFD_PAGEFAULT_FLAG_MINOR = 1 << 2;

/** PAGEMAP_SCAN flags and categories (include/uapi/linux/fs.h). */
export const PM_SCAN_WP_MATCHING = 1 << 0;
export const PM_SCAN_CHECK_WPASYNC = 1 << 1;
export const PAGE_IS_WPALLOWED = 1 << 0;
export const PAGE_IS_WRITTEN = 1 << 1;
export const PAGE_IS_FILE = 1 << 2;
export const PAGE_IS_PRESENT = 1 << 3;
export const PAGE_IS_SWAPPED = 1 << 4;
export const PAGE_IS_PFNZERO = 1 << 5;
export const PAGE_IS_HUGE = 1 << 6;
export const PAGE_IS_SOFT_DIRTY = 1 << 7;
export const PAGE_IS_GUARD = 1 << 8;

export interface UffdioRange { start: number; len: number }
export interface UffdioApi { api: number; features: number; ioctls?: bigint }
export interface UffdioRegister { range: UffdioRange; mode: number; ioctls?: bigint }
/** src: a user address in the calling process, or bytes the caller supplies directly. */
export interface UffdioCopy { dst: number; src: number | Uint8Array; len: number; mode: number; copy?: number }
export interface UffdioZeropage { range: UffdioRange; mode: number; zeropage?: number }
export interface UffdioWriteprotect { range: UffdioRange; mode: number }
export interface UffdioContinue { range: UffdioRange; mode: number; mapped?: number }
export interface UffdioPoison { range: UffdioRange; mode: number; updated?: number }
export interface UffdioMove { dst: number; src: number; len: number; mode: number; move?: number }

/** struct page_region (24 bytes). */
export interface PageRegion { start: number; end: number; categories: number }
/**
 * struct pm_scan_arg (96 bytes). `vec` names the output: an array the kernel fills with at most
 * `vecLen` regions, or null for no output. walkEnd is written by the kernel.
 */
export interface PmScanArg {
  size: number;
  flags: number;
  start: number;
  end: number;
  walkEnd?: number;
  vec: PageRegion[] | null;
  vecLen: number;
  maxPages: number;
  categoryInverted: number;
  categoryMask: number;
  categoryAnyofMask: number;
  returnMask: number;
}
