/**
 * Page-fault throughput through the public API: a thread touching fresh private anonymous
 * memory one byte per page. Each access is one Thread.read/write call, so the figure includes
 * the promise round trip a user-mode access costs in the simulation, as a real fault includes
 * the trap.
 */
import { Kernel } from "@uffd/kernel";
import { MAP_ANONYMOUS, MAP_PRIVATE, PAGE_SIZE, PROT_READ, PROT_WRITE } from "@uffd/kernel/uapi";
import { measure, type Rate } from "./measure.ts";

export type FaultKind = "write" | "read" | "write-present";

/**
 * Fault rate for `pages` pages: "write" allocates a zeroed anon page per access
 * (do_anonymous_page), "read" maps the shared zero page, "write-present" stores to pages that are
 * already mapped writable (no fault: the access baseline).
 */
export async function faultRate(kind: FaultKind, pages: number, runs: number, warmup: number): Promise<Rate> {
  const k = new Kernel({ seed: 1 });
  const p = k.spawn({ name: "bench" });
  const t = p.mainThread;
  const one = Uint8Array.of(1);
  return measure(runs, warmup, async () => {
    const len = pages * PAGE_SIZE;
    const addr = await p.mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
    if (kind === "write-present") for (let a = addr; a < addr + len; a += PAGE_SIZE) await t.write(a, one);
    return {
      body: async () => {
        if (kind === "read") for (let a = addr; a < addr + len; a += PAGE_SIZE) await t.read(a, 1);
        else for (let a = addr; a < addr + len; a += PAGE_SIZE) await t.write(a, one);
        return pages;
      },
      teardown: async () => {
        k.checkInvariants();
        await p.munmap(addr, len);
      },
    };
  });
}
