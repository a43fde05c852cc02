/** mremap(2). Mirrors mm/mremap.c. (Being written.) */
import type { Process } from "../kernel/process.ts";
import { ErrnoError } from "../uapi/errno.ts";

export async function sysMremap(_proc: Process, _old: number, _oldSize: number, _newSize: number, _flags: number, _newAddr: number): Promise<number> {
  throw new ErrnoError("ENOSYS", "mremap");
}
