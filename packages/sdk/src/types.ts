/**
 * The SDK's vocabulary: what a fault is to the app (the read-only `Fault` with its resolvers),
 * how a fault ends (`Resolution`), and the fault lifecycle constants. Types only, plus two
 * constants and the in-flight table's key; every other module builds on these.
 */
import type { RegisteredRange } from "./ranges.ts";

/** What kind of userfault: a missing page, a write to a write-protected page, or a minor fault (page in the page cache, not in the page table). */
export type FaultKind = "missing" | "wp" | "minor";

/** How a fault ended. */
export type Resolution =
  /** This resolver installed the page (or unprotected it, or poisoned it on purpose). */
  | "installed"
  /** EEXIST: the page was already there (a racing resolve, a prefetch); the waiter was woken. */
  | "present"
  /** The app only woke the waiter (it resolved the page some other way). */
  | "woken"
  /** A REMOVE (MADV_DONTNEED ...) hit the page while the fault was in flight: zeros were installed. */
  | "zeroed"
  /** The page is no longer registered (unmap, mremap, unregister): the waiter was woken to retry. */
  | "gone"
  /** The faulting process exited (ESRCH). */
  | "exited"
  /** The userfaultfd was closed; the kernel woke every waiter. */
  | "closed"
  /** The handler failed and the failure policy ran (SIGBUS by poisoning the page, ...). */
  | "failed";

/** The resolvers that install pages, as Metrics.bytes counts them. */
export type InstallKind = "copy" | "zeropage" | "continue" | "move" | "poison";

/**
 * @internal A deadline not set yet. The watchdogs look only at faults left pending after their
 * dispatch, which always have one; a small integer (not Infinity) keeps the field unboxed.
 */
export const NO_DEADLINE = -1;

/** @internal The in-flight table's key of a page's fault of one kind: the page address plus a kind index (missing 0, wp 1, minor 2). */
export function faultKey(page: number, kind: FaultKind): number {
  return page + (kind === "missing" ? 0 : kind === "wp" ? 1 : 2);
}

/** @internal Fault lifecycle. pending: nobody has started to resolve it; resolving: an ioctl is under way. */
export const FAULT_STATE = { PENDING: 0, RESOLVING: 1, SETTLED: 2 } as const;

/** Options of fault.copy(), fault.continue() and fault.move(). */
export interface CopyOptions {
  /**
   * Map the page write-protected (UFFDIO_COPY_MODE_WP). Default: true iff the app write-protected
   * this page (uffd.writeProtect) and has not unprotected it since, so a page fetched into a
   * tracked range stays tracked.
   */
  wp?: boolean;
}

/** A fault as listeners see it: read-only facts and the resolvers. */
export interface Fault {
  /** "missing", "wp" or "minor". */
  readonly kind: FaultKind;
  /** The faulting access was a write (UFFD_PAGEFAULT_FLAG_WRITE). */
  readonly write: boolean;
  /** The fault address: page-aligned, or exact with the "exact-address" feature. */
  readonly address: number;
  /** The faulting page's start address. */
  readonly pageAddress: number;
  /** The faulting thread (needs the "thread-id" feature, else 0). */
  readonly threadId: number;
  /** Every thread waiting on this page: duplicate messages for the page are coalesced into one fault. */
  readonly threadIds: readonly number[];
  /** The registered range holding the page, or null if the SDK does not know it. */
  readonly range: RegisteredRange | null;
  /** The page's byte offset in the app's page source (the range's offset plus the page's place in it). */
  readonly offset: number;
  /** The raw uffd_msg.arg.pagefault.flags. */
  readonly flags: number;
  /**
   * A REMOVE (MADV_DONTNEED, MADV_FREE, MADV_REMOVE) covered this page after it was last
   * installed: the app expects zeros here, not the source's bytes.
   */
  readonly removed: boolean;
  /** Whether some resolver or the failure policy already took charge of this fault. */
  readonly settled: boolean;
  /** How the fault ended, once it has. */
  readonly resolution: Resolution | null;
  /**
   * UFFDIO_COPY: installs `src` (bytes, a whole number of pages starting at this page, or a
   * source address in the handler's own process) at the fault page.
   */
  copy(src: Uint8Array | number, options?: CopyOptions): Promise<Resolution>;
  /** UFFDIO_ZEROPAGE: the page reads as zeros (in a write-protected page: a zeroed copy that stays protected). */
  zeropage(): Promise<Resolution>;
  /** UFFDIO_CONTINUE: maps the page already in the shmem page cache (minor faults). */
  continue(options?: CopyOptions): Promise<Resolution>;
  /**
   * UFFDIO_MOVE: moves the page at `src` (page-aligned, in the faulting process) here. Falls back
   * to UFFDIO_COPY from `src` where Linux refuses the move (EBUSY: a shared or pinned page;
   * EINVAL: shmem, or a handler in another process), leaving the source in place.
   */
  move(src: number, options?: CopyOptions): Promise<Resolution>;
  /** UFFDIO_WRITEPROTECT mode 0 on the page: lets the faulting write through (wp faults). */
  unprotect(): Promise<Resolution>;
  /** UFFDIO_POISON: the faulting thread and every later access get SIGBUS, until a page is installed over it. */
  poison(): Promise<Resolution>;
  /** UFFDIO_WAKE on the page: for a page the app resolved another way (pwrite into a memfd, a range op with dontWake). */
  wake(): Promise<Resolution>;
}
