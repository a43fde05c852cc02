/**
 * What userspace sees, as in Linux's include/uapi, with x86-64 values: errno numbers, mmap,
 * madvise, fcntl and userfaultfd constants, the ioctl argument structs and the uffd_msg codec.
 *
 * @module @uffd/kernel/uapi
 */
export * from "./errno.ts";
export * from "./mman.ts";
export * from "./fcntl.ts";
export * from "./userfaultfd.ts";
export * from "./msg.ts";
