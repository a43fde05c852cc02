import { ErrnoError, Kernel, type Process } from "@uffd/kernel";
import { expect } from "vitest";

/** Asserts that a promise rejects with exactly this errno. */
export async function expectErrno(p: Promise<unknown>, code: string): Promise<void> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err, `expected ${code}`).toBeInstanceOf(ErrnoError);
  expect((err as ErrnoError).code).toBe(code);
}

/** A fresh kernel and a root process. */
export function boot(seed = 1, opts: { swapPages?: number; memoryPages?: number } = {}): { k: Kernel; p: Process } {
  const k = new Kernel({ seed, ...opts });
  return { k, p: k.spawn({ name: "test" }) };
}

export const page = (byte: number, len = 4096): Uint8Array => new Uint8Array(len).fill(byte);
