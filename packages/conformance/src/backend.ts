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
  out?: number;
  features?: number;
  ioctls?: string;
  data?: number[];
  vec?: number[];
  fds?: [number, number];
  msgs?: RawMsg[];
  pm?: PmEntry[];
  vmas?: RawVma[];
  walkEnd?: number;
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
  present: boolean;
  swapped: boolean;
  file: boolean;
  exclusive: boolean;
  uffdWp: boolean;
  guard: boolean;
  /** The frame when present, else null. */
  pfn: number | null;
  count: number;
  anon: boolean;
  dirty: boolean;
  swapcache: boolean;
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

export interface ExecReply {
  r: RawResult;
  /** Earlier primitives (by id) that finished during this one. */
  done: { id: number; r: RawResult }[];
}

export interface Backend {
  readonly kind: "native" | "sim";
  /** Starts a fresh world: one process (index 0) with nothing mapped. */
  reset(): Promise<void>;
  /** Runs primitive `op` in process `proc`; `id` names it in later `done` lists. */
  exec(proc: number, id: number, op: string, args: readonly number[]): Promise<ExecReply>;
  /** Process `proc` (created by a fork primitive that has now finished) takes primitives. */
  live(proc: number): Promise<void>;
  /**
   * Frames whose identity ended during the last primitive (freed, or allocated anew), for the
   * comparer's frame labels. Only the simulation can say; the native side returns null.
   */
  churn(): readonly number[] | null;
  close(): Promise<void>;
}

/** mmap flag for the arena placement (both sides map regions at the same fixed addresses). */
export const MAP_FIXED_NOREPLACE = 0x100000;
/** Where region slots start: far below the mmap base, so no library or thread stack lands there. */
export const ARENA_BASE = 0x100000000000;
/** One region slot: room to grow a region in place (mremap) without meeting the next. */
export const SLOT_BYTES = 0x40000000;
