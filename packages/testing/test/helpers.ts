/** Scenery for the kit's own tests: a process with a raw userfaultfd over anonymous memory. */
import { decodeUffdMsgs, Kernel, type Process, type UffdMsg } from "@uffd/kernel";
import { explore, type RunResult } from "@uffd/testing";
import { prefetchScenario } from "./handlers.ts";
import { MAP_ANONYMOUS, MAP_PRIVATE, O_CLOEXEC, PAGE_SIZE, PROT_READ, PROT_WRITE, UFFD_API, UFFDIO_API, UFFDIO_REGISTER, UFFDIO_REGISTER_MODE_MISSING } from "@uffd/kernel/uapi";

export { PAGE_SIZE };
export const RW = PROT_READ | PROT_WRITE;

/** Page i of an image is filled with 0x40 + i. */
export function pageOf(i: number): Uint8Array {
  return new Uint8Array(PAGE_SIZE).fill(0x40 + i);
}

export function image(pages: number): Uint8Array {
  const out = new Uint8Array(pages * PAGE_SIZE);
  for (let i = 0; i < pages; i++) out.set(pageOf(i), i * PAGE_SIZE);
  return out;
}

export interface Raw {
  k: Kernel;
  p: Process;
  uffd: number;
  base: number;
}

/** A kernel, a process, `pages` anonymous pages registered MISSING on a raw userfaultfd with `features`. */
export async function rawSetup(pages: number, features = 0, seed = 1): Promise<Raw> {
  const k = new Kernel({ seed });
  const p = k.spawn({ name: "app" });
  const base = await p.mmap(0, pages * PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS);
  const uffd = await p.userfaultfd(O_CLOEXEC);
  await p.ioctl(uffd, UFFDIO_API, { api: UFFD_API, features });
  await p.ioctl(uffd, UFFDIO_REGISTER, { range: { start: base, len: pages * PAGE_SIZE }, mode: UFFDIO_REGISTER_MODE_MISSING });
  return { k, p, uffd, base };
}

/** Reads the queued messages (the fd is blocking: call it only when something is queued). */
export async function readMsgs(p: Process, uffd: number): Promise<UffdMsg[]> {
  return decodeUffdMsgs(await p.read(uffd, 16 * 32));
}

/** The first seed (of 1..100) on which the naive prefetching handler loses a thread. */
export async function naiveFailure(): Promise<RunResult> {
  const r = await explore(prefetchScenario(false), { seeds: 100, throwOnFailure: false });
  if (r.firstFailure === null) throw new Error("the naive handler passed 100 seeds");
  return r.firstFailure;
}
