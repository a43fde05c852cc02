/** Shared set-up for the userfaultfd behaviour tests. */
import { ErrnoError, Kernel, type Process } from "@uffd/kernel";
import {
  decodeUffdMsgs,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  MAP_SHARED,
  O_NONBLOCK,
  PAGE_SIZE,
  PROT_READ,
  PROT_WRITE,
  UFFD_API,
  UFFDIO_API,
  UFFDIO_REGISTER,
  type UffdMsg,
} from "@uffd/kernel/uapi";
import { errnoOf } from "../helpers.ts";
export { errnoOf };

export const RW = PROT_READ | PROT_WRITE;
export const PS = PAGE_SIZE;

export interface Setup {
  k: Kernel;
  p: Process;
  uffd: number;
}

/** A kernel, a root process and an initialized O_NONBLOCK userfaultfd with `features`. */
export async function setup(features = 0, flags = O_NONBLOCK, seed = 1): Promise<Setup> {
  const k = new Kernel({ seed });
  const p = k.spawn();
  const uffd = await p.userfaultfd(flags);
  await p.ioctl(uffd, UFFDIO_API, { api: UFFD_API, features });
  return { k, p, uffd };
}

export type MemKind = "anon" | "shmem" | "shmem-private";

/** Maps `pages` pages of the given kind; shmem kinds come from a memfd of that size. */
export async function mapArea(p: Process, kind: MemKind, pages: number): Promise<{ addr: number; memfd: number }> {
  if (kind === "anon") return { addr: await p.mmap(0, pages * PS, RW, MAP_PRIVATE | MAP_ANONYMOUS), memfd: -1 };
  const memfd = await p.memfdCreate("area");
  await p.ftruncate(memfd, pages * PS);
  const addr = await p.mmap(0, pages * PS, RW, kind === "shmem" ? MAP_SHARED : MAP_PRIVATE, memfd, 0);
  return { addr, memfd };
}

export async function register(p: Process, uffd: number, start: number, len: number, mode: number): Promise<bigint> {
  const arg: { range: { start: number; len: number }; mode: number; ioctls?: bigint } = { range: { start, len }, mode };
  await p.ioctl(uffd, UFFDIO_REGISTER, arg);
  return arg.ioctls!;
}


/** Reads every queued message without blocking (the fd must be O_NONBLOCK). */
export async function readMsgs(p: Process, uffd: number, max = 64): Promise<UffdMsg[]> {
  try {
    return decodeUffdMsgs(await p.read(uffd, max * 32));
  } catch (e) {
    if (e instanceof ErrnoError && e.code === "EAGAIN") return [];
    throw e;
  }
}

/** Whether a promise is still pending once the kernel is idle. */
export async function isBlocked(k: Kernel, pr: Promise<unknown>): Promise<boolean> {
  let settled = false;
  pr.then(
    () => (settled = true),
    () => (settled = true),
  );
  await k.idle();
  return !settled;
}

export function fill(byte: number, len = PS): Uint8Array {
  return new Uint8Array(len).fill(byte);
}
