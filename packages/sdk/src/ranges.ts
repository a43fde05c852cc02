/**
 * The SDK's view of what is registered, kept in step with the kernel's vmas by the SDK's own
 * register/unregister calls and by the non-cooperative events (UNMAP deletes, REMAP moves,
 * REMOVE marks pages as removed, FORK clones the view for the child).
 *
 * Each entry carries a source offset (where its first page comes from in the app's page source)
 * that survives mremap, so a fault at the new address still finds its bytes (CRIU keeps the
 * dump-time address for the same reason), and one state byte per page. Splitting an entry
 * shares the state bytes (subarray views), so a page's state never has two copies.
 */
import { PAGE_SIZE } from "@uffd/kernel/uapi";
import { modeNames, type RegisterMode } from "./features.ts";

/** Per-page state bits. */
export const PAGE_STATE = {
  /** The SDK saw a page installed here (by its resolvers, a fill, or an EEXIST). */
  INSTALLED: 1,
  /** A REMOVE event covered the page after its last install: its content is zero now. */
  REMOVED: 2,
  /** The app write-protected the page and has not unprotected it since. */
  PROTECTED: 4,
  /** A failure policy poisoned the page: accesses SIGBUS until a page is installed over it. */
  POISONED: 8,
  /** A background fill is installing the page right now. */
  FILLING: 16,
} as const;

/** A registered range as the app sees it: an immutable snapshot. */
export interface RegisteredRange {
  /** Start address. */
  readonly start: number;
  /** End address (exclusive). */
  readonly end: number;
  /** The modes it is registered with. */
  readonly modes: readonly RegisterMode[];
  /** Where `start` comes from in the page source (byte offset); survives mremap. */
  readonly offset: number;
}

/** A registered range and its page states. Its bounds never change: a split or a move makes new entries. */
export class RangeEntry {
  readonly start: number;
  readonly end: number;
  readonly modes: number;
  readonly offset: number;
  /** One byte per page of [start, end); may be a view into a larger array. */
  readonly state: Uint8Array;
  /** The snapshot handed to the app. */
  readonly view: RegisteredRange;

  constructor(start: number, end: number, modes: number, offset: number, state: Uint8Array) {
    this.start = start;
    this.end = end;
    this.modes = modes;
    this.offset = offset;
    this.state = state;
    this.view = makeView(start, end, modes, offset);
  }

  stateIndex(addr: number): number {
    return (addr - this.start) / PAGE_SIZE;
  }

  sourceOffset(addr: number): number {
    return this.offset + (addr - this.start);
  }
}

function makeView(start: number, end: number, modes: number, offset: number): RegisteredRange {
  return Object.freeze({ start, end, modes: Object.freeze(modeNames(modes)), offset });
}

/** Sorted, non-overlapping entries with a one-entry lookup cache for the fault path. */
export class RangeSet {
  #entries: RangeEntry[] = [];
  #last: RangeEntry | null = null;

  get entries(): readonly RangeEntry[] {
    return this.#entries;
  }

  views(): RegisteredRange[] {
    return this.#entries.map((e) => e.view);
  }

  /** The entry holding addr, or null. */
  find(addr: number): RangeEntry | null {
    const last = this.#last;
    if (last !== null && addr >= last.start && addr < last.end) return last;
    const list = this.#entries;
    let lo = 0;
    let hi = list.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const e = list[mid]!;
      if (addr < e.start) hi = mid - 1;
      else if (addr >= e.end) lo = mid + 1;
      else return (this.#last = e);
    }
    return null;
  }

  /** Entries intersecting [start, end), in order. */
  overlapping(start: number, end: number): RangeEntry[] {
    return this.#entries.filter((e) => e.start < end && e.end > start);
  }

  /** Splits the entry that strictly contains addr, so that addr becomes a boundary. */
  #splitAt(addr: number): void {
    const i = this.#entries.findIndex((e) => e.start < addr && e.end > addr);
    if (i < 0) return;
    const e = this.#entries[i]!;
    const cut = e.stateIndex(addr);
    const lo = new RangeEntry(e.start, addr, e.modes, e.offset, e.state.subarray(0, cut));
    const hi = new RangeEntry(addr, e.end, e.modes, e.sourceOffset(addr), e.state.subarray(cut));
    this.#entries.splice(i, 1, lo, hi);
    this.#last = null;
  }

  /**
   * Mirrors the effect of mm/userfaultfd.c:userfaultfd_register_range() on this view: parts
   * already registered keep their modes if those are a superset of `modes`, else take `modes`;
   * parts not yet registered become new entries. Page states survive re-registration.
   */
  register(start: number, end: number, modes: number, offset: number): void {
    this.#splitAt(start);
    this.#splitAt(end);
    const next: RangeEntry[] = [];
    let at = start;
    for (const e of this.#entries) {
      if (e.end <= start || e.start >= end) {
        next.push(e);
        continue;
      }
      if (e.start > at) next.push(this.#fresh(at, e.start, modes, offset + (at - start)));
      next.push((e.modes & modes) === modes ? e : new RangeEntry(e.start, e.end, modes, e.offset, e.state));
      at = e.end;
    }
    if (at < end) next.push(this.#fresh(at, end, modes, offset + (at - start)));
    next.sort((a, b) => a.start - b.start);
    this.#entries = next;
    this.#last = null;
  }

  #fresh(start: number, end: number, modes: number, offset: number): RangeEntry {
    return new RangeEntry(start, end, modes, offset, new Uint8Array((end - start) / PAGE_SIZE));
  }

  /** Forgets [start, end) (UNREGISTER, UNMAP); returns the entries that were cut out. */
  delete(start: number, end: number): RangeEntry[] {
    this.#splitAt(start);
    this.#splitAt(end);
    const gone = this.#entries.filter((e) => e.start >= start && e.end <= end);
    if (gone.length > 0) this.#entries = this.#entries.filter((e) => !(e.start >= start && e.end <= end));
    this.#last = null;
    return gone;
  }

  /** REMAP: [from, from+len) now lives at [to, to+len), with its offsets and page states. */
  move(from: number, to: number, len: number): void {
    const moving = this.delete(from, from + len);
    this.delete(to, to + len);
    for (const e of moving) {
      const s = e.start - from + to;
      this.#entries.push(new RangeEntry(s, s + (e.end - e.start), e.modes, e.offset, e.state));
    }
    this.#entries.sort((a, b) => a.start - b.start);
    this.#last = null;
  }

  /** Sets and clears state bits on every known page of [start, end). */
  mark(start: number, end: number, set: number, clear: number): void {
    if (end - start === PAGE_SIZE) {
      this.markPage(start, set, clear);
      return;
    }
    for (const e of this.#entries) {
      if (e.end <= start || e.start >= end) continue;
      const from = e.stateIndex(Math.max(start, e.start));
      const to = e.stateIndex(Math.min(end, e.end));
      const st = e.state;
      for (let i = from; i < to; i++) st[i] = (st[i]! & ~clear) | set;
    }
  }

  /** mark() for one page, by lookup. */
  markPage(addr: number, set: number, clear: number): void {
    const e = this.find(addr);
    if (e === null) return;
    const i = e.stateIndex(addr);
    e.state[i] = (e.state[i]! & ~clear) | set;
  }

  /** The state byte of the page at addr (0 for an unknown page). */
  stateOf(addr: number): number {
    const e = this.find(addr);
    return e === null ? 0 : e.state[e.stateIndex(addr)]!;
  }

  /** FORK: the child's view starts as a copy of the parent's, with its own page states. */
  clone(): RangeSet {
    const copy = new RangeSet();
    copy.#entries = this.#entries.map((e) => new RangeEntry(e.start, e.end, e.modes, e.offset, e.state.slice()));
    return copy;
  }

  /** Adds an entry learned from elsewhere (an adopted fd's description, /proc/pid/smaps). */
  adopt(start: number, end: number, modes: number, offset: number): RangeEntry {
    this.register(start, end, modes, offset);
    return this.find(start)!;
  }
}
