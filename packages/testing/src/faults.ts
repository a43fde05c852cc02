/**
 * "Every fault was resolved exactly once", read off a trace.
 *
 * - Resolved: every thread that slept on a userfault was woken (or its process died). A thread
 *   still asleep at the end of the run is a lost fault.
 * - Once: for each page, between two moments it goes missing, the handler's resolving ioctls
 *   reach it at most once. An ioctl reaches a page when it installs it (the bytes done cover it)
 *   or finds it present (EEXIST at that page). A page goes missing again when the handler reads
 *   a REMOVE or UNMAP covering it, or reads a new fault for it after it was reached (the fault
 *   was raised again: a DONTWAKE install it must now wake, a MADV_DONTNEED without REMOVE events).
 *   EAGAIN with nothing done and ENOENT reach nothing. The injector's own ioctls don't count.
 *   Two threads faulting one page and the handler copying it twice is a duplicate; so is a
 *   prefetcher and the demand path both resolving it, unless `allowPresent` (EEXIST outcomes
 *   then count as no-ops) says that race is by design.
 * WP faults are judged only on the first rule (unprotecting is not an install).
 */
import { PAGE_SIZE } from "@uffd/kernel/uapi";
import { describe, formatTime, hex, type TraceEvent } from "./trace.ts";

/** Options of analyzeFaults() and the resolvedOnce check. */
export interface FaultResolutionOptions {
  /** Count EEXIST outcomes as no-ops (a prefetcher racing the demand path by design). Default false. */
  allowPresent?: boolean;
}

/** A thread still asleep on a userfault at the end of a run. */
export interface LostFault {
  /** The sleeping thread. */
  readonly who: string;
  /** The faulting address. */
  readonly address: number;
  /** When it fell asleep (virtual ns). */
  readonly since: number;
  /** When a handler read the fault's message, if it did. */
  readonly readAt: number | null;
  /** The last handler ioctl that reached the page after the fault, if any. */
  readonly lastResolve: TraceEvent | null;
}

/** A page resolved more than once for one fault. */
export interface DuplicateResolve {
  /** The page address. */
  readonly page: number;
  /** The resolving ioctls on it, in order. */
  readonly attempts: readonly TraceEvent[];
}

/** Whether every userfault of a run was resolved, and resolved once. */
export interface FaultResolutionReport {
  /** No fault lost, no page resolved twice. */
  readonly ok: boolean;
  /** Userfaults taken (thread sleeps). */
  readonly faults: number;
  /** The faults nobody resolved or woke. */
  readonly lost: readonly LostFault[];
  /** The pages resolved twice. */
  readonly duplicates: readonly DuplicateResolve[];
  /** A readable account of what is wrong ("" when ok). */
  readonly message: string;
}

const INSTALLS = new Set(["COPY", "ZEROPAGE", "CONTINUE", "MOVE", "POISON"]);

/** The pages an install-type ioctl reached, or none. */
function pagesReached(e: Extract<TraceEvent, { kind: "ioctl" }>, allowPresent: boolean): number[] {
  const first = e.start - (e.start % PAGE_SIZE);
  const done = e.result === "ok" ? e.len : e.out !== null && e.out > 0 ? e.out : 0;
  const pages: number[] = [];
  for (let a = first; a < e.start + done; a += PAGE_SIZE) pages.push(a);
  // EEXIST (nothing done) found the first page present. Partial progress (EAGAIN) may stop at a
  // present page or at a source fault; only the pages done are counted.
  if (e.result === "EEXIST" && !allowPresent) pages.push(first);
  return pages;
}

/** Judges a trace: lost faults and duplicate resolutions. */
export function analyzeFaults(events: readonly TraceEvent[], options: FaultResolutionOptions = {}): FaultResolutionReport {
  const allowPresent = options.allowPresent ?? false;
  const asleep = new Map<string, { address: number; since: number }>();
  const epochs = new Map<number, TraceEvent[]>();
  const reported = new Set<TraceEvent[]>();
  const duplicates: DuplicateResolve[] = [];
  let faults = 0;
  for (const e of events) {
    if (e.kind === "fault") {
      faults++;
      asleep.set(e.who, { address: e.address, since: e.t });
    } else if (e.kind === "wake" || e.kind === "died" || e.kind === "signal") {
      asleep.delete(e.who);
    } else if (e.kind === "msg" && (e.event === "REMOVE" || e.event === "UNMAP")) {
      for (const page of [...epochs.keys()]) if (page >= (e.start ?? 0) && page < (e.end ?? 0)) epochs.delete(page);
    } else if (e.kind === "msg" && e.event === "PAGEFAULT") {
      const page = (e.address ?? 0) - ((e.address ?? 0) % PAGE_SIZE);
      if ((epochs.get(page)?.length ?? 0) > 0) epochs.delete(page);
    } else if (e.kind === "ioctl" && e.who !== "inject" && INSTALLS.has(e.op)) {
      for (const page of pagesReached(e, allowPresent)) {
        let list = epochs.get(page);
        if (list === undefined) epochs.set(page, (list = []));
        list.push(e);
        if (list.length === 2 && !reported.has(list)) {
          reported.add(list);
          duplicates.push({ page, attempts: list });
        }
      }
    }
  }
  const lost = [...asleep.entries()].map(([who, { address, since }]) => lostFault(events, who, address, since));
  const ok = lost.length === 0 && duplicates.length === 0;
  return { ok, faults, lost, duplicates, message: ok ? "" : explain(lost, duplicates) };
}

function lostFault(events: readonly TraceEvent[], who: string, address: number, since: number): LostFault {
  const page = address - (address % PAGE_SIZE);
  let readAt: number | null = null;
  let lastResolve: TraceEvent | null = null;
  for (const e of events) {
    if (e.t < since) continue;
    if (e.kind === "msg" && e.event === "PAGEFAULT" && readAt === null && (e.address ?? -1) - ((e.address ?? 0) % PAGE_SIZE) === page) readAt = e.t;
    if (e.kind === "ioctl" && e.op !== "API" && e.op !== "REGISTER" && page >= e.start - (e.start % PAGE_SIZE) && page < e.start + Math.max(e.len, 1)) lastResolve = e;
  }
  return { who, address, since, readAt, lastResolve };
}

/** "asleep on a userfault at 0x... since ...; the handler read its fault at ...; the last ioctl on that page: ...; nothing woke it" */
export function explainLost(l: LostFault): string {
  const read = l.readAt === null ? "no handler read its fault message" : `the handler read its fault at ${formatTime(l.readAt)}`;
  const last = l.lastResolve === null ? "nothing resolved or woke that page since" : `the last ioctl on that page: ${l.lastResolve.who} ${describe(l.lastResolve)}`;
  return `asleep on a userfault at ${hex(l.address)} since ${formatTime(l.since)}; ${read}; ${last}; nothing woke it`;
}

export function explainDuplicate(d: DuplicateResolve): string {
  const how = d.attempts.map((a) => `${a.who} ${describe(a)} at ${formatTime(a.t)}`).join("; then ");
  return `page ${hex(d.page)} resolved ${d.attempts.length} times for one fault: ${how}`;
}

function explain(lost: readonly LostFault[], duplicates: readonly DuplicateResolve[]): string {
  return [...lost.map((l) => `lost fault: ${l.who} ${explainLost(l)}`), ...duplicates.map(explainDuplicate)].join("\n");
}
