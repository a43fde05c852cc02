import { Kernel, type Process } from "@uffd/kernel";
export { expectErrno } from "../helpers.ts";

/** A fresh kernel and a root process. */
export function boot(seed = 1, opts: { swapPages?: number; memoryPages?: number; swapDevice?: "zram" | "file" } = {}): { k: Kernel; p: Process } {
  const k = new Kernel({ seed, ...opts });
  return { k, p: k.spawn({ name: "test" }) };
}

export const page = (byte: number, len = 4096): Uint8Array => new Uint8Array(len).fill(byte);
