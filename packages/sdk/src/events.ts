/**
 * The payloads of the non-cooperative events (UFFD_EVENT_REMAP, REMOVE, UNMAP) as the SDK hands
 * them to listeners and pull readers. The typed event map itself is declared next to
 * Userfaultfd, whose "fork" event carries one.
 */

/** UFFD_EVENT_REMAP: [from, from+len) moved to [to, to+len) (len is the old length). */
export interface RemapEvent {
  /** Old start address. */
  readonly from: number;
  /** New start address. */
  readonly to: number;
  /** Length in bytes. */
  readonly len: number;
}

/** UFFD_EVENT_REMOVE (MADV_DONTNEED, MADV_FREE, MADV_REMOVE) and UFFD_EVENT_UNMAP (munmap, mremap, MAP_FIXED). */
export interface RangeEvent {
  /** Start address. */
  readonly start: number;
  /** End address (exclusive). */
  readonly end: number;
}
