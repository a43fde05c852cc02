/** include/uapi/asm-generic/mman-common.h, mman.h and linux/falloc.h, x86-64 values. */

/** log2 of PAGE_SIZE. */
export const PAGE_SHIFT = 12;
/** The base page size in bytes (x86-64: 4 KiB). Every userfaultfd range is a multiple of it. */
export const PAGE_SIZE = 4096;

/** mmap(2) / mprotect(2): no access. */
export const PROT_NONE = 0x0;
/** mmap(2) / mprotect(2): pages may be read. */
export const PROT_READ = 0x1;
/** mmap(2) / mprotect(2): pages may be written. */
export const PROT_WRITE = 0x2;
/** mmap(2) / mprotect(2): pages may be executed. */
export const PROT_EXEC = 0x4;
/** mprotect(2): pages may be used for atomic operations (accepted, no effect here). */
export const PROT_SEM = 0x8;
/** mprotect(2): extend the change down to the start of a grows-down mapping. */
export const PROT_GROWSDOWN = 0x01000000;
/** mprotect(2): extend the change up to the end of a grows-up mapping. */
export const PROT_GROWSUP = 0x02000000;

/** mmap(2): writes are shared with every other mapping of the same object. */
export const MAP_SHARED = 0x01;
/** mmap(2): a private copy-on-write mapping. */
export const MAP_PRIVATE = 0x02;
/** mmap(2): MAP_SHARED that fails with EOPNOTSUPP on unknown flags. */
export const MAP_SHARED_VALIDATE = 0x03;
/** mmap(2): the mask of the mapping type bits (SHARED, PRIVATE, SHARED_VALIDATE). */
export const MAP_TYPE = 0x0f;
/** mmap(2): map exactly at addr, replacing what is there. */
export const MAP_FIXED = 0x10;
/** mmap(2): memory not backed by a file, zero-filled on first touch (fd is ignored). */
export const MAP_ANONYMOUS = 0x20;
/** mmap(2): a stack-like mapping that grows down. */
export const MAP_GROWSDOWN = 0x0100;
/** mmap(2): ignored by Linux (historical). */
export const MAP_DENYWRITE = 0x0800;
/** mmap(2): ignored by Linux (historical). */
export const MAP_EXECUTABLE = 0x1000;
/** mmap(2): lock the pages like mlock(2). */
export const MAP_LOCKED = 0x2000;
/** mmap(2): do not reserve swap space. */
export const MAP_NORESERVE = 0x4000;
/** mmap(2): prefault the mapping (read-ahead for files, allocation for anonymous memory). */
export const MAP_POPULATE = 0x8000;
/** mmap(2): with MAP_POPULATE, do not block on I/O. */
export const MAP_NONBLOCK = 0x10000;
/** mmap(2): the mapping is a thread stack (a hint). */
export const MAP_STACK = 0x20000;
/** mmap(2): use huge pages (hugetlbfs). */
export const MAP_HUGETLB = 0x40000;
/** mmap(2): synchronous page faults for DAX files (with MAP_SHARED_VALIDATE). */
export const MAP_SYNC = 0x80000;
/** mmap(2): map exactly at addr, but fail with EEXIST rather than replace a mapping. */
export const MAP_FIXED_NOREPLACE = 0x100000;
/** mmap(2): do not clear anonymous pages (only with CONFIG_MMAP_ALLOW_UNINITIALIZED). */
export const MAP_UNINITIALIZED = 0x4000000;

/** madvise(2): no special treatment (the default). */
export const MADV_NORMAL = 0;
/** madvise(2): expect random access (no read-ahead). */
export const MADV_RANDOM = 1;
/** madvise(2): expect sequential access. */
export const MADV_SEQUENTIAL = 2;
/** madvise(2): expect access soon (read ahead). */
export const MADV_WILLNEED = 3;
/** madvise(2): drop the pages; private anonymous memory reads zeros afterwards (a UFFD_EVENT_REMOVE for registered ranges). */
export const MADV_DONTNEED = 4;
/** madvise(2): the pages may be freed lazily unless written again. */
export const MADV_FREE = 8;
/** madvise(2): free the pages and the backing store (shmem hole punch; a UFFD_EVENT_REMOVE). */
export const MADV_REMOVE = 9;
/** madvise(2): do not map this range into a fork() child. */
export const MADV_DONTFORK = 10;
/** madvise(2): undo MADV_DONTFORK. */
export const MADV_DOFORK = 11;
/** madvise(2): allow KSM to merge identical pages. */
export const MADV_MERGEABLE = 12;
/** madvise(2): undo MADV_MERGEABLE. */
export const MADV_UNMERGEABLE = 13;
/** madvise(2): enable transparent huge pages for the range. */
export const MADV_HUGEPAGE = 14;
/** madvise(2): disable transparent huge pages for the range. */
export const MADV_NOHUGEPAGE = 15;
/** madvise(2): exclude the range from core dumps. */
export const MADV_DONTDUMP = 16;
/** madvise(2): undo MADV_DONTDUMP. */
export const MADV_DODUMP = 17;
/** madvise(2): a fork() child sees the range zero-filled. */
export const MADV_WIPEONFORK = 18;
/** madvise(2): undo MADV_WIPEONFORK. */
export const MADV_KEEPONFORK = 19;
/** madvise(2): deactivate the pages (reclaim them first). */
export const MADV_COLD = 20;
/** madvise(2): reclaim the pages now (anonymous pages go to swap). */
export const MADV_PAGEOUT = 21;
/** madvise(2): prefault the pages readable, as a read would. */
export const MADV_POPULATE_READ = 22;
/** madvise(2): prefault the pages writable, as a write would. */
export const MADV_POPULATE_WRITE = 23;
/** madvise(2): MADV_DONTNEED that also applies to locked pages. */
export const MADV_DONTNEED_LOCKED = 24;
/** madvise(2): collapse the range into transparent huge pages synchronously. */
export const MADV_COLLAPSE = 25;
/** madvise(2): install guard regions: any access raises SIGSEGV (Linux 6.13+). */
export const MADV_GUARD_INSTALL = 102;
/** madvise(2): remove guard regions. */
export const MADV_GUARD_REMOVE = 103;

/** mremap(2): the mapping may move to a new address. */
export const MREMAP_MAYMOVE = 1;
/** mremap(2): move to exactly new_address (needs MREMAP_MAYMOVE). */
export const MREMAP_FIXED = 2;
/** mremap(2): move the pages but leave the old range mapped and empty (a UFFD_EVENT_REMAP for registered ranges). */
export const MREMAP_DONTUNMAP = 4;

/** fallocate(2): do not change the file size. */
export const FALLOC_FL_KEEP_SIZE = 0x01;
/** fallocate(2): deallocate the range (with FALLOC_FL_KEEP_SIZE); shmem pages there are freed. */
export const FALLOC_FL_PUNCH_HOLE = 0x02;
/** fallocate(2): remove the range and shift the rest of the file down. */
export const FALLOC_FL_COLLAPSE_RANGE = 0x08;
/** fallocate(2): zero the range. */
export const FALLOC_FL_ZERO_RANGE = 0x10;
/** fallocate(2): insert a hole, shifting the rest of the file up. */
export const FALLOC_FL_INSERT_RANGE = 0x20;
/** fallocate(2): unshare shared extents of the range. */
export const FALLOC_FL_UNSHARE_RANGE = 0x40;
