/**
 * The destination's postcopy page installer: with uffd-tracking.ts, the only code that talks to
 * userfaultfd, and it does so through @uffd/sdk.
 *
 * It registers the guest RAM for MISSING faults and reports each faulting page once (the SDK
 * coalesces the duplicate messages of several threads into one Fault). Pages are installed
 * atomically, UFFDIO_COPY for data and UFFDIO_ZEROPAGE for zero pages, which also wakes the
 * threads blocked on them: through the pending Fault when the page was asked for (fault.copy),
 * else as a range operation (uffd.copy) for background pages. EEXIST ("present") is harmless: a
 * demand page and a background page crossed, and COPY never overwrites a page the guest may have
 * written since.
 *
 * Faults have no deadline: a page on its way over a slow link is not a failed handler. When the
 * connection dies mid-postcopy nothing here is closed: blocked threads stay blocked (QEMU's
 * "postcopy paused"), because closing the userfaultfd would let the kernel fill every missing
 * page with zeros, silently.
 */
import { PAGE_SIZE } from "@uffd/kernel/uapi";
import { Userfaultfd, type Fallback, type Fault } from "@uffd/sdk";
import type { Guest } from "./guest.ts";

export interface PostcopyBackend {
  /** How faults are caught and pages installed, for the report. */
  readonly method: string;
  /** What the SDK fell back to on this kernel release (uffd.fallbacks: the userfaultfd(2) syscall before 6.1). */
  readonly fallbacks: readonly Fallback[];
  /**
   * Registers the guest RAM. From then on a touch of a missing page blocks its thread and calls
   * onFault once per page; `raced` says the page was already being installed (no request needed).
   */
  start(onFault: (page: number, raced: boolean) => void): Promise<void>;
  /** Installs a page (null = zeros) and wakes its waiters; "exists" if it was already present. */
  install(page: number, data: Uint8Array | null): Promise<"installed" | "exists">;
  /**
   * Installs pages [first, first+n) (data: n pages of bytes, or null = zeros) with one range
   * UFFDIO_COPY / UFFDIO_ZEROPAGE, except pages a fault waits on (settled one by one). Pages
   * already present meet EEXIST and are skipped, never overwritten. Returns how many were present.
   */
  installRun(first: number, n: number, data: Uint8Array | null): Promise<number>;
  /** The page was dropped (hybrid DISCARD): it is missing again and will fault. */
  forget(page: number): void;
  /** Every page arrived: unregisters the range and closes the userfaultfd. */
  stop(): Promise<void>;
}

export async function createPostcopyBackend(guest: Guest): Promise<PostcopyBackend> {
  const uffd = await Userfaultfd.open(guest.proc, {
    optionalFeatures: ["thread-id"],
    deadline: { virtualMs: null, wallMs: null },
  });
  return new UffdPostcopyBackend(guest, uffd);
}

class UffdPostcopyBackend implements PostcopyBackend {
  readonly method = "userfaultfd MISSING faults, UFFDIO_COPY / UFFDIO_ZEROPAGE (@uffd/sdk)";
  readonly #guest: Guest;
  readonly #uffd: Userfaultfd;
  /** 1 once an install of the page has started. */
  readonly #installing: Uint8Array;
  /** 1 once the page is in place. */
  readonly #installed: Uint8Array;
  readonly #pending = new Map<number, Fault>();
  /** The first error the SDK reported (a listener failure, a read loop error). */
  error: Error | null = null;

  constructor(guest: Guest, uffd: Userfaultfd) {
    this.#guest = guest;
    this.#uffd = uffd;
    this.#installing = new Uint8Array(guest.pages);
    this.#installed = new Uint8Array(guest.pages);
  }

  get fallbacks(): readonly Fallback[] {
    return this.#uffd.fallbacks;
  }

  async start(onFault: (page: number, raced: boolean) => void): Promise<void> {
    const g = this.#guest;
    this.#uffd.on("error", (e) => {
      this.error ??= e;
    });
    this.#uffd.on("fault", (f) => {
      const page = (f.pageAddress - g.base) / PAGE_SIZE;
      if (f.kind !== "missing" || page < 0 || page >= g.pages) return undefined;
      if (this.#installed[page] === 1) return f.wake(); // a stale message: the page is in place
      if (this.#installing[page] === 1) {
        onFault(page, true); // the install under way settles it
        return undefined;
      }
      this.#pending.set(page, f);
      onFault(page, false);
      return undefined;
    });
    await this.#uffd.register(g.base, g.pages * PAGE_SIZE, "missing");
  }

  async install(page: number, data: Uint8Array | null): Promise<"installed" | "exists"> {
    this.#installing[page] = 1;
    const fault = this.#pending.get(page);
    this.#pending.delete(page);
    let present: boolean;
    if (fault !== undefined && !fault.settled) {
      const r = data === null ? await fault.zeropage() : await fault.copy(data);
      if (r !== "installed" && r !== "present") throw new Error(`installing page ${page} for a fault ended "${r}"`);
      present = r === "present";
    } else {
      const addr = this.#guest.addr(page);
      const r = data === null ? await this.#uffd.zeropage(addr, PAGE_SIZE) : await this.#uffd.copy(addr, data);
      if (r.goneBytes > 0) throw new Error(`page ${page} is no longer registered (ENOENT)`);
      present = r.presentBytes > 0;
    }
    this.#installed[page] = 1;
    return present ? "exists" : "installed";
  }

  async installRun(first: number, n: number, data: Uint8Array | null): Promise<number> {
    let present = 0;
    // With no fault pending (nearly every background run) the run is one stretch.
    const anyPending = this.#pending.size > 0;
    for (let i = 0; i < n; ) {
      if (anyPending && this.#pending.has(first + i)) {
        const d = data === null ? null : data.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE);
        if ((await this.install(first + i, d)) === "exists") present++;
        i++;
        continue;
      }
      let j = anyPending ? i + 1 : n;
      while (j < n && !this.#pending.has(first + j)) j++;
      this.#installing.fill(1, first + i, first + j);
      const addr = this.#guest.addr(first + i);
      const len = (j - i) * PAGE_SIZE;
      const r = data === null ? await this.#uffd.zeropage(addr, len) : await this.#uffd.copy(addr, data.subarray(i * PAGE_SIZE, j * PAGE_SIZE));
      if (r.goneBytes > 0) throw new Error(`pages ${first + i}..${first + j - 1} are no longer registered (ENOENT)`);
      present += r.presentBytes / PAGE_SIZE;
      this.#installed.fill(1, first + i, first + j);
      i = j;
    }
    return present;
  }

  forget(page: number): void {
    this.#installing[page] = 0;
    this.#installed[page] = 0;
  }

  async stop(): Promise<void> {
    const g = this.#guest;
    if (this.#pending.size > 0) throw new Error(`${this.#pending.size} faults still wait for pages at the end of postcopy`);
    await this.#uffd.unregister(g.base, g.pages * PAGE_SIZE);
    await this.#uffd.close();
  }
}
