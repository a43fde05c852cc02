/** BUG_ON: a broken kernel invariant throws KernelBug, which nothing catches. */
import { KernelBug } from "../uapi/errno.ts";

export function BUG_ON(cond: boolean, msg: string): void {
  if (cond) throw new KernelBug(msg);
}

export function BUG(msg: string): never {
  throw new KernelBug(msg);
}
