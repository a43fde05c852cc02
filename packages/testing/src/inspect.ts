/**
 * Looking at a process without touching it: its memory read through /proc/pid/pagemap and the
 * frames (no page is faulted in, no accessed bit set, no userfault raised), and text renderings
 * of pagemap and smaps that read well in toMatchInlineSnapshot().
 */
import type { PagemapEntry, Process } from "@uffd/kernel";
import { PAGE_SIZE } from "@uffd/kernel/uapi";
import { hex } from "./trace.ts";

/** What peekMemory() read. */
export interface PeekResult {
  /** The bytes of the range; pages that are not present read as zeros here. */
  readonly bytes: Uint8Array;
  /** Pages (addresses) that are not present: their content cannot be read without a fault. */
  readonly notPresent: readonly number[];
}

/** Reads [addr, addr+len) of `proc` from its frames, like /proc/pid/mem without faulting. */
export function peekMemory(proc: Process, addr: number, len: number): PeekResult {
  // Every byte is written below (a present page's bytes, zeros for the rest), so the array
  // starts uninitialised; each frame is copied once, straight from the kernel's frame store.
  const bytes = len > 0 ? new Uint8Array(Buffer.allocUnsafeSlow(len).buffer, 0, len) : new Uint8Array(0);
  const notPresent: number[] = [];
  const first = addr - (addr % PAGE_SIZE);
  const pages = Math.ceil((addr + len - first) / PAGE_SIZE);
  const entries = proc.pagemap(first, pages);
  const mem = proc.kernel.core.mem;
  for (let i = 0; i < pages; i++) {
    const page = first + i * PAGE_SIZE;
    const e = entries[i]!;
    const from = Math.max(addr, page);
    const to = Math.min(addr + len, page + PAGE_SIZE);
    if (!e.present || e.pfn === null) {
      notPresent.push(page);
      bytes.fill(0, from - addr, to - addr);
      continue;
    }
    const src = mem.bytes(e.pfn);
    if ((src as Uint8Array | undefined) === undefined) {
      // A frame never handed out has no storage yet; it reads as zeros (as readFrame() says).
      bytes.fill(0, from - addr, to - addr);
      continue;
    }
    const o = mem.offset(e.pfn) - page;
    bytes.set(src.subarray(o + from, o + to), from - addr);
  }
  return { bytes, notPresent };
}

/** The flags of one pagemap entry as words: "present exclusive", "present zero-page", "swapped uffd-wp", "none". */
export function pagemapFlags(e: PagemapEntry, zeroPfn: number): string {
  const f: string[] = [];
  if (e.present) f.push("present");
  if (e.swapped) f.push("swapped");
  if (e.present && e.pfn === zeroPfn) f.push("zero-page");
  if (e.file) f.push("file");
  if (e.exclusive) f.push("exclusive");
  if (e.uffdWp) f.push("uffd-wp");
  if (e.guard) f.push("guard");
  if (e.softDirty) f.push("soft-dirty");
  return f.length === 0 ? "none" : f.join(" ");
}

/**
 * /proc/pid/pagemap of `pages` pages from `addr` as text, one line per run of pages with the same
 * flags, numbered from 0:
 *
 *     0    present exclusive
 *     1-2  none
 *     3    swapped uffd-wp
 */
export function pagemapText(proc: Process, addr: number, pages: number): string {
  const zero = proc.kernel.zeroPfn;
  const flags = proc.pagemap(addr, pages).map((e) => pagemapFlags(e, zero));
  const runs: Array<[number, number, string]> = [];
  for (const [i, f] of flags.entries()) {
    const last = runs[runs.length - 1];
    if (last !== undefined && last[2] === f) last[1] = i;
    else runs.push([i, i, f]);
  }
  const label = (a: number, b: number): string => (a === b ? String(a) : `${a}-${b}`);
  const width = Math.max(...runs.map(([a, b]) => label(a, b).length));
  return runs.map(([a, b, f]) => `${label(a, b).padEnd(width)}  ${f}`).join("\n");
}

const kib = (n: number): string => `${n / 1024}K`;

/**
 * /proc/pid/smaps as text, one line per vma: range, perms, rss / anon / swap, VmFlags. With
 * `base`, ranges are shown relative to it (stable across layouts); `start`/`end` select vmas.
 *
 *     0x7effffffc000-0x7f0000000000 rw-p  rss 8K anon 8K swap 0K  rd wr mr mw me um ac
 *     [+0x0, +0x4000) rw-p  rss 8K anon 8K swap 0K  rd wr mr mw me um ac
 */
export function smapsText(proc: Process, options: { base?: number; start?: number; end?: number } = {}): string {
  const { base, start = 0, end = Number.MAX_SAFE_INTEGER } = options;
  const at = (a: number): string => (a >= (base ?? 0) ? `+${hex(a - (base ?? 0))}` : `-${hex((base ?? 0) - a)}`);
  const range = (a: number, b: number): string => (base === undefined ? `${hex(a)}-${hex(b)}` : `[${at(a)}, ${at(b)})`);
  return proc
    .smaps()
    .filter((v) => v.end > start && v.start < end)
    .map((v) => `${range(v.start, v.end)} ${v.perms}  rss ${kib(v.rssBytes)} anon ${kib(v.anonBytes)} swap ${kib(v.swapBytes)}  ${v.vmFlags.join(" ")}`)
    .join("\n");
}
