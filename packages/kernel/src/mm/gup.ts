/** get_user_pages / pin_user_pages, vmsplice and io_uring fixed buffers. Mirrors mm/gup.c. (Being written.) */
import type { Process } from "../kernel/process.ts";
import { ErrnoError } from "../uapi/errno.ts";

export interface PinnedBuffer {
  read(offset: number, length: number): Uint8Array;
  write(offset: number, data: Uint8Array): void;
  unregister(): Promise<void>;
}

export async function sysIoUringRegisterBuffers(_proc: Process, _addr: number, _len: number): Promise<PinnedBuffer> {
  throw new ErrnoError("ENOSYS", "io_uring_register");
}

export async function sysVmsplice(_proc: Process, _fd: number, _addr: number, _len: number, _flags: number): Promise<number> {
  throw new ErrnoError("ENOSYS", "vmsplice");
}
