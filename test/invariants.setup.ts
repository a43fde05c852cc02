/**
 * Every test scenario ends with kernel.checkInvariants(): this setup file (listed in each vitest
 * project's setupFiles) tracks every Kernel a test creates, through "@uffd/kernel" or directly,
 * and recounts its refcounts, mapcounts, pins, rss and swap counts after the test. A test that
 * already called it pays a second recount; a test that forgot cannot skip it.
 */
import { afterEach, vi } from "vitest";

const created = vi.hoisted(() => new Set<{ checkInvariants(): void }>());

vi.mock("@uffd/kernel", async (importOriginal) => {
  const mod = await importOriginal<typeof import("@uffd/kernel")>();
  class Kernel extends mod.Kernel {
    constructor(...args: ConstructorParameters<typeof mod.Kernel>) {
      super(...args);
      created.add(this);
    }
  }
  return { ...mod, Kernel };
});

afterEach(() => {
  const kernels = [...created];
  created.clear();
  for (const k of kernels) k.checkInvariants();
});
