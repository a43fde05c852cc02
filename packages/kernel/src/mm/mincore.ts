/** mincore(2). Mirrors mm/mincore.c. (Being written.) */
import type { Process } from "../kernel/process.ts";
import { ErrnoError } from "../uapi/errno.ts";

export function sysMincore(_proc: Process, _addr: number, _len: number): Uint8Array {
  throw new ErrnoError("ENOSYS", "mincore");
}
