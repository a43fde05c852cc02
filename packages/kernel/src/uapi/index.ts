/** Entry "@uffd/kernel/uapi": what userspace sees, with Linux x86-64 values. */
export * from "./errno.ts";
export * from "./mman.ts";
export * from "./fcntl.ts";
export * from "./userfaultfd.ts";
export * from "./msg.ts";
