/** Shared scenery for the SDK tests: a kernel, a process, and page contents that name their page. */
import { expect } from "vitest";
import { Kernel, type Process } from "@uffd/kernel";
import type { Userfaultfd } from "@uffd/sdk";
import { MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, PAGE_SIZE, PROT_READ, PROT_WRITE } from "@uffd/kernel/uapi";

export const RW = PROT_READ | PROT_WRITE;
export { PAGE_SIZE };

export function setup(seed = 1): { k: Kernel; p: Process } {
  const k = new Kernel({ seed });
  return { k, p: k.spawn({ name: "app" }) };
}

export async function anon(p: Process, pages: number): Promise<number> {
  return p.mmap(0, pages * PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS);
}

export async function sharedAnon(p: Process, pages: number): Promise<number> {
  return p.mmap(0, pages * PAGE_SIZE, RW, MAP_SHARED | MAP_ANONYMOUS);
}

/** A page whose every byte is (tag + page index) & 0xff, so any mix-up shows. */
export function pageOf(index: number, tag = 0x40): Uint8Array {
  return new Uint8Array(PAGE_SIZE).fill((tag + index) & 0xff);
}

/** A source image of `pages` pages, page i filled with pageOf(i). */
export function image(pages: number, tag = 0x40): Uint8Array {
  const out = new Uint8Array(pages * PAGE_SIZE);
  for (let i = 0; i < pages; i++) out.fill((tag + i) & 0xff, i * PAGE_SIZE, (i + 1) * PAGE_SIZE);
  return out;
}

/** A gate a test opens when it wants a handler to go on. */
export function gate(): { wait: Promise<void>; open: () => void } {
  let open!: () => void;
  const wait = new Promise<void>((resolve) => (open = resolve));
  return { wait, open };
}

/** Whether the promise is still pending after the kernel went idle. */
export async function stillPending(k: Kernel, p: Promise<unknown>): Promise<boolean> {
  let done = false;
  void p.then(
    () => (done = true),
    () => (done = true),
  );
  await k.idle();
  return !done;
}

/**
 * One registered page whose fault the handler never resolves: the read must end in SIGBUS with
 * the SDK reporting "handler-timeout" (the deadline is whatever `uffd` was opened with).
 */
export async function expectPendingFaultTimesOut(p: Process, uffd: Userfaultfd): Promise<void> {
  const a = await anon(p, 1);
  await uffd.register(a, PAGE_SIZE, "missing");
  const reasons: string[] = [];
  uffd.on("error", (e) => reasons.push((e as { reason?: string }).reason ?? ""));
  uffd.on("fault", () => new Promise(() => {}));
  await expect(p.mainThread.read(a, 1)).rejects.toMatchObject({ signal: "SIGBUS" });
  expect(reasons).toEqual(["handler-timeout"]);
}
