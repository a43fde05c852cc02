/** Pipes. Mirrors fs/pipe.c. (Being written.) */
import type { Process } from "../kernel/process.ts";
import { ErrnoError } from "../uapi/errno.ts";

export function sysPipe2(_proc: Process, _flags: number): [number, number] {
  throw new ErrnoError("ENOSYS", "pipe2");
}
