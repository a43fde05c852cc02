/** The userfaultfd file: context, read, ioctl dispatch. Mirrors fs/userfaultfd.c. (Being written.) */
import type { Process } from "../kernel/process.ts";
import type { UffdMmHooks } from "../mm/mm.ts";
import { ErrnoError } from "../uapi/errno.ts";

export async function sysUserfaultfd(_proc: Process, _flags: number): Promise<number> {
  throw new ErrnoError("ENOSYS", "userfaultfd");
}

export async function sysOpenDevUserfaultfd(_proc: Process, _flags: number): Promise<number> {
  throw new ErrnoError("ENOSYS", "open");
}

/** Until userfaultfd exists, no context ever asks for an event. */
export function createUffdMmHooks(): UffdMmHooks {
  return {
    unmapPrep: () => {},
    unmapComplete: async () => {},
    remove: async () => {},
    mremapPrep: () => null,
    mremapComplete: async () => {},
    dupVma: (_parent, child) => {
      child.flags &= ~0x1a00;
      child.uffdCtx = null;
    },
    dupComplete: async () => {},
  };
}
