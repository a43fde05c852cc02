/**
 * A page fault as the app sees it: read-only facts from the uffd_msg plus the range it belongs
 * to, and resolvers named after the ioctls that resolve it. Every resolver is race-safe by
 * default (see resolve.ts and ops.ts) and settles the fault exactly once; calling a second resolver returns
 * the first one's result without another ioctl.
 *
 * Resolvers refuse combinations that cannot make progress: a wp fault is only resolved by
 * unprotect() (or wake() after the app unprotected the page itself); copying onto a present,
 * write-protected page would fail with EEXIST, wake the thread, and fault again forever.
 */
import * as uapi from "@uffd/kernel/uapi";
import type { FaultState, UffdContext } from "./context.ts";
import type { RangeEntry, RegisteredRange } from "./ranges.ts";
import * as resolveMod from "./resolve.ts";
import * as typesMod from "./types.ts";
import type { CopyOptions, Fault, FaultKind, Resolution } from "./types.ts";

// Module-local copies of what the fault path uses per fault: V8 reads an imported binding
// through its module cell at each use (a load and an initialisation check), and folds a
// module-local const into the optimized code. Each comes from a module evaluated before this one.
const PAGE_SIZE = uapi.PAGE_SIZE;
const UFFD_PAGEFAULT_FLAG_WRITE = uapi.UFFD_PAGEFAULT_FLAG_WRITE;
const resolveFault = resolveMod.resolveFault;
const FAULT_STATE = typesMod.FAULT_STATE;
const faultKey = typesMod.faultKey;
const NO_DEADLINE = typesMod.NO_DEADLINE;

export type { CopyOptions, Fault, FaultKind } from "./types.ts";

export { faultKey } from "./types.ts";

/**
 * @internal The record behind a Fault; its mutable fields belong to its context. One is made per
 * fault read, so it holds only what the read loop knows at once or the lifecycle needs, each set
 * once in the constructor (its fields are `declare`d: a class field, with ES2022 [[Define]]
 * semantics, would be defined first by an initializer, then stored to again). What follows from
 * those fields (write, range, offset, the table key) is computed when asked for: most handlers
 * read one or two of them, and the fast path none.
 */
export class FaultImpl implements FaultState {
  declare readonly kind: FaultKind;
  declare readonly pageAddress: number;
  /** @internal The fault address's offset in its page (0 unless the "exact-address" feature is on). */
  declare readonly addressOffset: number;
  /** The faulting thread (needs the "thread-id" feature, else 0). */
  declare readonly threadId: number;
  /** The raw uffd_msg.arg.pagefault.flags. */
  declare readonly flags: number;
  /**
   * A REMOVE (MADV_DONTNEED, MADV_FREE, MADV_REMOVE) covered this page after it was last
   * installed: the app expects zeros here, not the source's bytes.
   */
  declare readonly removed: boolean;

  /** @internal */ declare readonly ctx: UffdContext;
  /** @internal The range entry holding the page when the fault was read (entries are replaced, never resized). */
  declare readonly entry: RangeEntry | null;
  /** @internal */ declare state: number;
  /** @internal */ declare extraThreads: number[] | null;
  /** @internal The event epoch when the fault was read; REMOVEs after it race with the resolve. */
  declare readonly epoch: number;
  /** @internal */ declare readonly readAtNs: number;
  /**
   * @internal The host clock's reading when the fault was read, set once the fault outlives the
   * dispatch of the batch it was read in; until then null, and that batch's reading
   * (UffdContext.batchReadWallMs) is its read time. A fault settled in its batch's dispatch (the
   * common case) so carries no number of its own for it (a double field is a heap box per fault).
   */
  declare readAtWallMs: number | null;
  /** @internal Virtual-time deadline, or NO_DEADLINE until the dispatcher arms one (pending after dispatch). */
  declare deadlineNs: number;
  /** @internal Wall-clock deadline, or NO_DEADLINE. */
  declare deadlineWallMs: number;
  /** @internal */ declare attempts: number;
  /** @internal */ declare outcome: Resolution | null;
  /** @internal */ declare result: Promise<Resolution> | null;
  /** @internal */ declare error: unknown;
  /** @internal Callbacks for whoever waits for the final outcome (the failure policy). */
  declare settleWaiters: Array<(r: Resolution) => void> | null;

  /** @internal */
  constructor(ctx: UffdContext, kind: FaultKind, flags: number, page: number, addressOffset: number, threadId: number, entry: RangeEntry | null, removed: boolean, epoch: number, nowNs: number) {
    this.ctx = ctx;
    this.kind = kind;
    this.flags = flags;
    this.pageAddress = page;
    this.addressOffset = addressOffset;
    this.threadId = threadId;
    this.entry = entry;
    this.removed = removed;
    this.epoch = epoch;
    this.readAtNs = nowNs;
    this.readAtWallMs = null;
    this.state = FAULT_STATE.PENDING;
    this.extraThreads = null;
    this.deadlineNs = NO_DEADLINE;
    this.deadlineWallMs = NO_DEADLINE;
    this.attempts = 0;
    this.outcome = null;
    this.result = null;
    this.error = undefined;
    this.settleWaiters = null;
  }

  /** The fault address: page-aligned, or exact with the "exact-address" feature. */
  get address(): number {
    return this.pageAddress + this.addressOffset;
  }

  /** The faulting access was a write (UFFD_PAGEFAULT_FLAG_WRITE). */
  get write(): boolean {
    return (this.flags & UFFD_PAGEFAULT_FLAG_WRITE) !== 0;
  }

  /** The registered range holding the page, or null if the SDK does not know it. */
  get range(): RegisteredRange | null {
    return this.entry === null ? null : this.entry.view;
  }

  /** The page's byte offset in the app's page source (the range's offset plus the page's place in it). */
  get offset(): number {
    return this.entry === null ? this.pageAddress : this.entry.sourceOffset(this.pageAddress);
  }

  /** @internal The in-flight table's key: page address + kind index. */
  get key(): number {
    return faultKey(this.pageAddress, this.kind);
  }

  get threadIds(): readonly number[] {
    return this.extraThreads === null ? [this.threadId] : [this.threadId, ...this.extraThreads];
  }

  get settled(): boolean {
    return this.state !== FAULT_STATE.PENDING;
  }

  get resolution(): Resolution | null {
    return this.outcome;
  }

  /**
   * UFFDIO_COPY: installs `src` (bytes, a multiple of the page size starting at this page, or a
   * source address in the handler's own process) at the fault page.
   */
  copy(src: Uint8Array | number, options?: CopyOptions): Promise<Resolution> {
    this.#refuseOnWp("copy");
    if (this.state !== FAULT_STATE.PENDING) return this.#again();
    if (typeof src !== "number" && (src.length === 0 || src.length % PAGE_SIZE !== 0)) {
      throw new RangeError(`copy(): ${src.length} bytes is not a whole number of ${PAGE_SIZE}-byte pages`);
    }
    return resolveFault(this, "copy", src, options?.wp);
  }

  /** UFFDIO_ZEROPAGE: the page reads as zeros (in a write-protected page: a zeroed copy that stays protected). */
  zeropage(): Promise<Resolution> {
    this.#refuseOnWp("zeropage");
    if (this.state !== FAULT_STATE.PENDING) return this.#again();
    return resolveFault(this, "zeropage", null, undefined);
  }

  /** UFFDIO_CONTINUE: maps the page already in the shmem page cache (minor faults). */
  continue(options?: CopyOptions): Promise<Resolution> {
    this.#refuseOnWp("continue");
    if (this.state !== FAULT_STATE.PENDING) return this.#again();
    return resolveFault(this, "continue", null, options?.wp);
  }

  /**
   * UFFDIO_MOVE: moves the page at `src` (page-aligned, in the faulting process) here. Falls back
   * to UFFDIO_COPY from `src` where Linux refuses the move (EBUSY: a shared or pinned page; or a
   * handler in another process), leaving the source in place.
   */
  move(src: number, options?: CopyOptions): Promise<Resolution> {
    this.#refuseOnWp("move");
    if (this.state !== FAULT_STATE.PENDING) return this.#again();
    if (src % PAGE_SIZE !== 0) throw new RangeError(`move(): source 0x${src.toString(16)} is not page-aligned (UFFDIO_MOVE needs an aligned source)`);
    return resolveFault(this, "move", src, options?.wp);
  }

  /** UFFDIO_WRITEPROTECT mode 0 on the page: lets the faulting write through. */
  unprotect(): Promise<Resolution> {
    if (this.kind !== "wp") {
      throw new TypeError(`unprotect() resolves wp faults; this is a ${this.kind} fault (use copy, zeropage${this.kind === "minor" ? ", continue" : ""} or poison)`);
    }
    if (this.state !== FAULT_STATE.PENDING) return this.#again();
    return resolveFault(this, "unprotect", null, undefined);
  }

  /** UFFDIO_POISON: the faulting thread and every later access get SIGBUS, until a page is installed over it. */
  poison(): Promise<Resolution> {
    this.#refuseOnWp("poison");
    if (this.state !== FAULT_STATE.PENDING) return this.#again();
    return resolveFault(this, "poison", null, undefined);
  }

  /** UFFDIO_WAKE on the page: for a page the app resolved another way (pwrite into a memfd, a range op with dontWake). */
  wake(): Promise<Resolution> {
    if (this.state !== FAULT_STATE.PENDING) return this.#again();
    return resolveFault(this, "wake", null, undefined);
  }

  #again(): Promise<Resolution> {
    return this.result ?? Promise.resolve(this.outcome ?? "failed");
  }

  #refuseOnWp(what: string): void {
    if (this.kind === "wp") {
      throw new TypeError(`${what}() cannot resolve a wp fault: the page is present, so the ioctl fails with EEXIST and the write faults again; use unprotect()`);
    }
  }
}
