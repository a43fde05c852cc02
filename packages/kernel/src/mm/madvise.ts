/** madvise(2). Mirrors mm/madvise.c. (Being written: see the issue notes.) */
import type { Process } from "../kernel/process.ts";
import { ErrnoError } from "../uapi/errno.ts";

export async function sysMadvise(_proc: Process, _addr: number, _len: number, _advice: number): Promise<void> {
  throw new ErrnoError("ENOSYS", "madvise");
}
