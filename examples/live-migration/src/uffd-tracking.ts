/**
 * uffd-wp dirty tracking on the source, through @uffd/sdk (see dirty-tracking.ts for the
 * methods and why each exists).
 *
 * - wp-async: UFFD_FEATURE_WP_ASYNC; writes unprotect pages by themselves, no fault is delivered.
 *   collect() uses PAGEMAP_SCAN with PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC (find the
 *   written pages and protect them again in one call, Linux 6.7); where /proc/pid/pagemap cannot
 *   be opened, the SDK's DirtyTracker reads pagemap entries (a written page has lost its uffd-wp
 *   bit) and re-protects them with UFFDIO_WRITEPROTECT.
 * - wp-sync: every first write to a protected page is a wp fault; the SDK's DirtyTracker records
 *   the page and unprotects it, and the write goes on.
 * Both need write-protect on never-touched pages: WP_ASYNC implies UFFD_FEATURE_WP_UNPOPULATED
 * (markers on empty ptes, Linux 6.4); where the release lacks it (wp-sync before 6.4) the SDK's
 * DirtyTracker reads every such page in first so the protection has a pte to stay on, and lists
 * that fallback in uffd.fallbacks (with the userfaultfd(2) syscall where /dev/userfaultfd is
 * missing, before 6.1): the tracker's `fallbacks`.
 */
import { ErrnoError, type Process } from "@uffd/kernel";
import { PAGE_IS_WRITTEN, PAGE_SIZE, PAGEMAP_SCAN, PM_SCAN_CHECK_WPASYNC, PM_SCAN_WP_MATCHING, type PageRegion, type PmScanArg } from "@uffd/kernel/uapi";
import { DirtyTracker as SdkDirtyTracker, type Fallback, Userfaultfd } from "@uffd/sdk";
import type { DirtyTracker, TrackingMethod } from "./dirty-tracking.ts";
import type { Guest } from "./guest.ts";

export async function createUffdTracker(guest: Guest, mode: "wp-async" | "wp-sync"): Promise<DirtyTracker> {
  const uffd = await Userfaultfd.open(guest.proc, {
    features: mode === "wp-async" ? ["wp-async"] : [],
    optionalFeatures: mode === "wp-async" ? ["thread-id"] : ["thread-id", "wp-unpopulated"],
    deadline: { virtualMs: null, wallMs: null },
  });
  try {
    await uffd.register(guest.base, guest.pages * PAGE_SIZE, "wp");
  } catch (e) {
    await uffd.close();
    throw e;
  }
  if (mode === "wp-async") {
    const fd = await openPagemap(guest.proc);
    if (fd !== null) return new PagemapScanTracker(guest, uffd, fd);
  }
  const method: TrackingMethod = mode === "wp-async" ? "wp-async+pagemap" : "wp-sync";
  return new SdkTracker(guest, uffd, mode === "wp-async" ? "async" : "sync", method);
}

/** The SDK's DirtyTracker over the whole guest RAM. */
class SdkTracker implements DirtyTracker {
  readonly method: TrackingMethod;
  readonly #guest: Guest;
  readonly #uffd: Userfaultfd;
  readonly #tracker: SdkDirtyTracker;

  constructor(guest: Guest, uffd: Userfaultfd, mode: "sync" | "async", method: TrackingMethod) {
    this.method = method;
    this.#guest = guest;
    this.#uffd = uffd;
    this.#tracker = new SdkDirtyTracker(uffd, guest.base, guest.pages * PAGE_SIZE, { mode });
  }

  get fallbacks(): readonly Fallback[] {
    return this.#uffd.fallbacks;
  }

  start(): Promise<void> {
    return this.#tracker.begin();
  }

  async collect(): Promise<Uint32Array> {
    const addrs = await this.#tracker.collect();
    const base = this.#guest.base;
    return Uint32Array.from(addrs, (a) => (a - base) / PAGE_SIZE);
  }

  async stop(): Promise<void> {
    this.#tracker.stop();
    await this.#uffd.unregister(this.#guest.base, this.#guest.pages * PAGE_SIZE);
    await this.#uffd.close();
  }
}

const SCAN_VEC_LEN = 1024;

/** open("/proc/self/pagemap"), or null where the kernel does not offer it. */
async function openPagemap(proc: Process): Promise<number | null> {
  try {
    return await proc.openPagemap();
  } catch (e) {
    if (e instanceof ErrnoError && (e.code === "ENOSYS" || e.code === "ENOENT")) return null;
    throw e;
  }
}

/** WP_ASYNC + PAGEMAP_SCAN: one ioctl finds the written pages and protects them again. */
class PagemapScanTracker implements DirtyTracker {
  readonly method: TrackingMethod = "wp-async+pagemap-scan";
  readonly #guest: Guest;
  readonly #uffd: Userfaultfd;
  readonly #fd: number;

  constructor(guest: Guest, uffd: Userfaultfd, pagemapFd: number) {
    this.#guest = guest;
    this.#uffd = uffd;
    this.#fd = pagemapFd;
  }

  get fallbacks(): readonly Fallback[] {
    return this.#uffd.fallbacks;
  }

  async start(): Promise<void> {
    await this.#uffd.writeProtect(this.#guest.base, this.#guest.pages * PAGE_SIZE);
  }

  async collect(): Promise<Uint32Array> {
    const g = this.#guest;
    const end = g.base + g.pages * PAGE_SIZE;
    const pages: number[] = [];
    for (let start = g.base; start < end; ) {
      const vec: PageRegion[] = [];
      const arg: PmScanArg = {
        size: 96,
        flags: PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
        start,
        end,
        vec,
        vecLen: SCAN_VEC_LEN,
        maxPages: 0,
        categoryInverted: 0,
        categoryMask: PAGE_IS_WRITTEN,
        categoryAnyofMask: 0,
        returnMask: PAGE_IS_WRITTEN,
      };
      await g.proc.ioctl(this.#fd, PAGEMAP_SCAN, arg);
      for (const r of vec) for (let a = r.start; a < r.end; a += PAGE_SIZE) pages.push((a - g.base) / PAGE_SIZE);
      if (arg.walkEnd === undefined || arg.walkEnd <= start) break;
      start = arg.walkEnd;
    }
    return Uint32Array.from(pages);
  }

  async stop(): Promise<void> {
    const g = this.#guest;
    await g.proc.close(this.#fd);
    await this.#uffd.unregister(g.base, g.pages * PAGE_SIZE);
    await this.#uffd.close();
  }
}
