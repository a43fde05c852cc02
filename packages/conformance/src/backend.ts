/**
 * What the driver needs from an execution: run one primitive (one syscall or one user-mode
 * access) in a process and report it, plus every earlier primitive that finished meanwhile.
 * The primitives and their argument order are shared by the C runner (native/uffd-conform.c)
 * and the simulation (src/sim.ts).
 */

/** A primitive's result as a backend reports it (errno as a number, addresses absolute). */
export interface RawResult {
  /** Return value (0 for success without a value). */
  ret?: number;
  /** The errno, when the call failed. */
  err?: number;
  /** The primitive's thread sleeps on a userfault or a userfaultfd event. */
  blocked?: 1;
  /** A user-mode access ended with this signal. */
  sig?: "SIGSEGV" | "SIGBUS";
  /** The backend could not run the primitive (a harness problem, never a kernel answer). */
  bad?: string;
  /** The ioctl's out field (copy, zeropage, mapped, updated, move). */
  out?: number;
  /** UFFDIO_API: the features field. */
  features?: number;
  /** UFFDIO_API / REGISTER: the ioctls mask, in hex. */
  ioctls?: string;
  /** Bytes read. */
  data?: number[];
  /** mincore vector. */
  vec?: number[];
  /** pipe: [readFd, writeFd]. */
  fds?: [number, number];
  /** uffd_msg records read. */
  msgs?: RawMsg[];
  /** pagemap entries. */
  pm?: PmEntry[];
  /** smaps entries. */
  vmas?: RawVma[];
  /** PAGEMAP_SCAN: walk_end. */
  walkEnd?: number;
  /** PAGEMAP_SCAN: [start, end, categories] regions. */
  regions?: [number, number, number][];
}

export interface RawMsg {
  event: number;
  flags?: number;
  address?: number;
  ptid?: number;
  ufd?: number;
  from?: number;
  to?: number;
  len?: number;
  start?: number;
  end?: number;
}

/** One page of /proc/pid/pagemap with /proc/kpagecount and /proc/kpageflags of its frame. */
export interface PmEntry {
  /** Bit 63: present. */
  present: boolean;
  /** Bit 62: swapped. */
  swapped: boolean;
  /** Bit 61: file-page or shared-anon. */
  file: boolean;
  /** Bit 56: exclusively mapped. */
  exclusive: boolean;
  /** Bit 57: uffd-wp write-protected. */
  uffdWp: boolean;
  /** Bit 58: guard region. */
  guard: boolean;
  /** The frame when present, else null. */
  pfn: number | null;
  /** kpagecount of the frame. */
  count: number;
  /** kpageflags ANON. */
  anon: boolean;
  /** kpageflags DIRTY. */
  dirty: boolean;
  /** kpageflags SWAPCACHE. */
  swapcache: boolean;
  /** kpageflags ZERO_PAGE. */
  zero: boolean;
}

export interface RawVma {
  start: number;
  end: number;
  perms: string;
  flags: string;
  rss: number;
  anon: number;
  swap: number;
}

/** What a fresh world has besides its first process (a scenario's `# swap:` header). */
export interface World {
  /** A zram swap device: the native runner's own, the simulation's `swapDevice: "zram"`. */
  swap?: boolean;
}

/** A backend's answer to one primitive. */
export interface ExecReply {
  /** This primitive's result. */
  r: RawResult;
  /** Earlier primitives (by id) that finished during this one. */
  done: {
    /** The primitive's id. */
    id: number;
    /** Its result. */
    r: RawResult;
  }[];
}

/** An execution of primitives, on the real kernel or on the simulation. */
export interface Backend {
  /** Which side. */
  readonly kind: "native" | "sim";
  /**
   * Starts a fresh world: one process (index 0) with nothing mapped; with `swap`, a zram-like
   * swap device (SWP_SYNCHRONOUS_IO), else none.
   */
  reset(world?: World): Promise<void>;
  /** Runs primitive `op` in process `proc`; `id` names it in later `done` lists. */
  exec(proc: number, id: number, op: string, args: readonly number[]): Promise<ExecReply>;
  /** Process `proc` (created by a fork primitive that has now finished) takes primitives. */
  live(proc: number): Promise<void>;
  /**
   * Frames whose identity ended during the last primitive (freed, or allocated anew), for the
   * comparer's frame labels. Only the simulation can say; the native side returns null.
   */
  churn(): readonly number[] | null;
  /**
   * Whether the last primitive mapped the shared zero page somewhere (more zero-page ptes in
   * the live processes than before it), for the comparer's pvm_no_zero_page rule. Only the
   * simulation can say; the native side returns null.
   */
  zeroMapped(): boolean | null;
  /** Releases the backend. */
  close(): Promise<void>;
}

/** mmap flag for the arena placement (both sides map regions at the same fixed addresses). */
export const MAP_FIXED_NOREPLACE = 0x100000;
/** Where region slots start: far below the mmap base, so no library or thread stack lands there. */
export const ARENA_BASE = 0x100000000000;
/** One region slot: room to grow a region in place (mremap) without meeting the next. */
export const SLOT_BYTES = 0x40000000;
