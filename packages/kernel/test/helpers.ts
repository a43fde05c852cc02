/** Outcome helpers shared by the kernel's test suites: exact errnos, never "it threw something". */
import { ErrnoError } from "@uffd/kernel";
import { expect } from "vitest";

/** "OK" when the promise resolves, else the ErrnoError code. Anything else (KernelBug, TypeError) is rethrown. */
export async function errnoOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "OK";
  } catch (e) {
    if (e instanceof ErrnoError) return e.code;
    throw e;
  }
}

/** Asserts that a promise rejects with exactly this errno. */
export async function expectErrno(p: Promise<unknown>, code: string): Promise<void> {
  expect(await errnoOf(p), `expected ${code}`).toBe(code);
}
