/**
 * A tour of private anonymous memory as procfs shows it: what /proc/pid/pagemap, /proc/kpagecount,
 * /proc/kpageflags and /proc/pid/smaps report after each step of
 *
 *   mmap -> read (zero page) -> write (a new exclusive page) -> fork (shared, read-only)
 *   -> parent writes (copy-on-write) -> child writes (reuse, no copy)
 *
 * Everything goes through the public API of @uffd/kernel, exactly as a program would use the
 * real syscalls and procfs files. runPagemapTour() returns the observations (for the test) and
 * the printable lines (for `npm run demo`).
 */
import { Kernel, type Process } from "@uffd/kernel";
import { MAP_ANONYMOUS, MAP_PRIVATE, PAGE_SIZE, PROT_READ, PROT_WRITE } from "@uffd/kernel/uapi";

/** What procfs says about one virtual page of one process. */
export interface PageView {
  pid: number;
  page: number;
  addr: number;
  present: boolean;
  pfn: number | null;
  /** The pfn is the shared zero page. */
  zeroPage: boolean;
  /** pagemap bit 56: mapped exactly once. */
  exclusive: boolean;
  /** /proc/kpagecount of the pfn (0 when not present). */
  kpagecount: number;
  /** /proc/kpageflags KPF_ANON. */
  anon: boolean;
  /** The first byte of the page, read by the process (a read fault may map the zero page). */
  firstByte: number | null;
}

/** One step of the tour: what was done and what procfs showed afterwards. */
export interface TourStep {
  title: string;
  explanation: string;
  pages: PageView[];
  /** smaps of the tour's mapping, per process: Rss and Anonymous in bytes. */
  smaps: Array<{ pid: number; rssBytes: number; anonBytes: number; perms: string }>;
}

export interface TourResult {
  zeroPfn: number;
  addr: number;
  steps: TourStep[];
  lines: string[];
}

const PAGES = 3;

/** Runs the tour on a fresh kernel (deterministic for a seed) and returns what it saw. */
export async function runPagemapTour(seed = 1): Promise<TourResult> {
  const k = new Kernel({ seed });
  const parent = k.spawn({ name: "tour" });
  const steps: TourStep[] = [];
  const addr = await parent.mmap(0, PAGES * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
  const procs: Process[] = [parent];
  const snap = async (title: string, explanation: string): Promise<void> => {
    k.checkInvariants();
    steps.push(await snapshot(k, procs, addr, title, explanation));
  };

  await snap("mmap 3 pages, MAP_PRIVATE|MAP_ANONYMOUS", "Nothing is mapped yet: the vma exists, the page table is empty, Rss is 0.");

  await parent.mainThread.read(addr, 1);
  await snap("parent reads page 0", "A read fault maps the shared zero page read-only; it is not counted in Rss or kpagecount.");

  await parent.mainThread.write(addr + PAGE_SIZE, Uint8Array.of(0x11));
  await snap("parent writes 0x11 to page 1", "A write fault allocates a zeroed page: anon, mapped once (pagemap bit 56), kpagecount 1.");

  const child = await parent.fork();
  procs.push(child);
  await snap("fork", "The child shares every page read-only: same pfn in both, kpagecount 2, bit 56 cleared.");

  await parent.mainThread.write(addr + PAGE_SIZE, Uint8Array.of(0x22));
  await snap(
    "parent writes 0x22 to page 1",
    "Copy-on-write: the parent gets a new pfn with its own copy; the child keeps the old page, now mapped once.",
  );

  await child.mainThread.write(addr + PAGE_SIZE, Uint8Array.of(0x33));
  await snap("child writes 0x33 to page 1", "The child holds the only reference, so do_wp_page() reuses the page: same pfn, no copy.");

  await child.mainThread.write(addr + 2 * PAGE_SIZE, Uint8Array.of(0x44));
  await snap("child writes 0x44 to page 2", "A fresh page in the child only; the parent's page 2 stays unmapped.");

  await child.exit(0);
  k.checkInvariants();
  return { zeroPfn: k.zeroPfn, addr, steps, lines: formatTour(k.zeroPfn, addr, steps) };
}

async function snapshot(k: Kernel, procs: Process[], addr: number, title: string, explanation: string): Promise<TourStep> {
  const pages: PageView[] = [];
  for (const p of procs) {
    p.pagemap(addr, PAGES).forEach((e, page) => {
      const pfn = e.present ? e.pfn : null;
      pages.push({
        pid: p.pid,
        page,
        addr: addr + page * PAGE_SIZE,
        present: e.present,
        pfn,
        zeroPage: pfn !== null && pfn === k.zeroPfn,
        exclusive: e.exclusive,
        kpagecount: pfn === null ? 0 : k.kpagecount(pfn),
        anon: pfn !== null && k.kpageflags(pfn).anon,
        firstByte: null,
      });
    });
  }
  for (const v of pages) {
    // A load from a present page faults nothing in, so looking does not change what we look at.
    if (v.present) v.firstByte = (await procs.find((p) => p.pid === v.pid)!.mainThread.read(v.addr, 1))[0]!;
  }
  const smaps = procs.map((p) => {
    const vma = p.smaps().find((s) => s.start <= addr && addr < s.end)!;
    return { pid: p.pid, rssBytes: vma.rssBytes, anonBytes: vma.anonBytes, perms: vma.perms };
  });
  return { title, explanation, pages, smaps };
}

/** Renders the steps as readable tables. */
export function formatTour(zeroPfn: number, addr: number, steps: TourStep[]): string[] {
  const lines: string[] = [];
  lines.push(`pagemap tour: one private anonymous mapping at 0x${addr.toString(16)}, ${PAGES} pages; the zero page is pfn ${zeroPfn}`);
  steps.forEach((step, i) => {
    lines.push("");
    lines.push(`Step ${i + 1}: ${step.title}`);
    lines.push(`  ${step.explanation}`);
    const header = ["pid", "page", "present", "pfn", "excl(b56)", "kpagecount", "kpageflags", "byte 0"];
    const rows = step.pages.map((v) => [
      String(v.pid),
      String(v.page),
      v.present ? "yes" : "no",
      v.pfn === null ? "-" : v.zeroPage ? `${v.pfn} (zero)` : String(v.pfn),
      v.present ? (v.exclusive ? "1" : "0") : "-",
      v.present ? String(v.kpagecount) : "-",
      v.present ? (v.anon ? "ANON" : v.zeroPage ? "ZERO_PAGE" : "") : "-",
      v.firstByte === null ? "-" : `0x${v.firstByte.toString(16).padStart(2, "0")}`,
    ]);
    lines.push(...table(header, rows).map((l) => `  ${l}`));
    for (const s of step.smaps) {
      lines.push(`  smaps pid ${s.pid}: ${s.perms} Rss ${s.rssBytes / 1024} kB, Anonymous ${s.anonBytes / 1024} kB`);
    }
  });
  return lines;
}

function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] as string).length)));
  const fmt = (cells: string[]): string => cells.map((cell, c) => cell.padEnd(widths[c] as number)).join("  ").trimEnd();
  return [fmt(header), fmt(widths.map((w) => "-".repeat(w))), ...rows.map(fmt)];
}
