/**
 * The "snapshot" half of the example: a guest runs for a while in a VMM process, then its memory
 * is written to a snapshot file. The file is a memfd, written with pwrite(2) straight from guest
 * memory (a kernel-mode read of user pages, as a VMM writing its RAM to a file does), and it is
 * sparse: a page the guest never wrote (not present in /proc/pid/pagemap, or the shared zero
 * page) is left as a hole, which a reader finds with lseek(SEEK_DATA).
 */
import type { Kernel, Process } from "@uffd/kernel";
import { MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, PAGE_SIZE, PROT_READ, PROT_WRITE } from "@uffd/kernel/uapi";

/** How guest RAM is backed: private anonymous memory, or a memfd mapped MAP_SHARED. */
export type GuestMemory = "anon" | "memfd";

/** A small deterministic PRNG (mulberry32): the examples never use Math.random. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The bytes the guest keeps in page `index` at generation `gen`: a header naming both, then a fill. */
export function guestPage(index: number, gen: number): Uint8Array {
  const page = new Uint8Array(PAGE_SIZE).fill((index * 37 + gen * 101 + 11) & 0xff);
  const header = new TextEncoder().encode(`page ${index} gen ${gen};`);
  page.set(header);
  return page;
}

/** Maps guest RAM in `vmm`: anonymous, or a memfd of `pages` pages mapped shared. */
export async function mapGuestRam(vmm: Process, pages: number, memory: GuestMemory): Promise<number> {
  const len = pages * PAGE_SIZE;
  if (memory === "anon") return vmm.mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
  const fd = await vmm.memfdCreate("guest-ram");
  await vmm.ftruncate(fd, len);
  const addr = await vmm.mmap(0, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  await vmm.close(fd); // the mapping keeps the file
  return addr;
}

export interface Snapshot {
  /** The snapshot memfd, as an fd of the handler process. */
  fd: number;
  /** What the guest's memory held at snapshot time (the test's model), pages * PAGE_SIZE bytes. */
  image: Uint8Array;
  /** Pages written to the file; the others are holes. */
  dataPages: number[];
  pages: number;
}

/**
 * Boots a guest in a fresh VMM process, lets it write most of its pages, writes the snapshot
 * file and hands it to `handler` (SCM_RIGHTS). The VMM then exits, as a snapshotted microVM does.
 */
export async function takeSnapshot(k: Kernel, handler: Process, pages: number, memory: GuestMemory, seed: number): Promise<Snapshot> {
  const vmm = k.spawn({ name: "vmm-before-snapshot" });
  const ram = await mapGuestRam(vmm, pages, memory);
  const image = new Uint8Array(pages * PAGE_SIZE);
  const rnd = prng(seed);
  const vcpu = vmm.spawnThread("vcpu0");
  for (let i = 0; i < pages; i++) {
    const roll = rnd();
    if (roll < 0.2) continue; // never touched: stays a hole
    if (roll < 0.3) {
      await vcpu.read(ram + i * PAGE_SIZE, 8); // read only: the zero page (anon) or a zeroed cache page (memfd)
      continue;
    }
    const bytes = guestPage(i, 1);
    await vcpu.write(ram + i * PAGE_SIZE, bytes);
    image.set(bytes, i * PAGE_SIZE);
  }
  const snap = await vmm.memfdCreate("snapshot");
  await vmm.ftruncate(snap, pages * PAGE_SIZE);
  const dataPages: number[] = [];
  const entries = vmm.pagemap(ram, pages);
  for (let i = 0; i < pages; i++) {
    const e = entries[i]!;
    if (!e.present || e.pfn === k.zeroPfn || isZero(image, i)) continue;
    await vmm.pwrite(snap, { addr: ram + i * PAGE_SIZE, length: PAGE_SIZE }, i * PAGE_SIZE);
    dataPages.push(i);
  }
  const fd = await vmm.sendFd(snap, handler);
  await vmm.exit(0);
  return { fd, image, dataPages, pages };
}

function isZero(image: Uint8Array, page: number): boolean {
  const p = image.subarray(page * PAGE_SIZE, (page + 1) * PAGE_SIZE);
  for (let j = 0; j < p.length; j++) if (p[j] !== 0) return false;
  return true;
}
