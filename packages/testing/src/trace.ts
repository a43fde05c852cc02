/**
 * The trace of a run: what the guest threads did (accesses, userfaults, wakes, signals), what
 * the handler did at the uAPI boundary (messages read, resolving ioctls and their results,
 * non-cooperative events), what fault injection did, and every scheduling decision, each stamped
 * with the kernel's virtual time. Events are plain JSON; `formatTrace` renders them one per line.
 *
 * The kernel side (userfault sleeps and wakes, preemption) comes from the scheduler's observer;
 * the uAPI side from the instrumented processes (instrument.ts).
 */
import type { Kernel, SchedEvent } from "@uffd/kernel";

/** Virtual time in ns, and who did it: a thread's label, a process's syscalls, or "inject". */
interface At {
  t: number;
  who: string;
}

/** One event of a run's trace, at virtual time `t` (ns), by `who`: guest loads and stores, userfaults and wakes, scheduling decisions, uffd messages read, ioctls with their results, other syscalls, injections and notes. */
export type TraceEvent = At &
  (
    | {
        /** A guest's load or store starts. */
        kind: "access";
        /** Load or store. */
        op: "load" | "store";
        /** Start address. */
        addr: number;
        /** Length in bytes. */
        len: number;
      }
    | {
        /** A guest's load or store completed. */
        kind: "done";
        /** Load or store. */
        op: "load" | "store";
        /** Start address. */
        addr: number;
        /** Length in bytes. */
        len: number;
      }
    | {
        /** A signal stopped the guest. */
        kind: "signal";
        /** "SIGBUS" or "SIGSEGV". */
        signal: string;
        /** The faulting address. */
        address: number;
      }
    | {
        /** The guest died of something other than a signal. */
        kind: "died";
        /** Why. */
        reason: string;
      }
    | {
        /** A thread fell asleep on a userfault. */
        kind: "fault";
        /** The faulting address. */
        address: number;
        /** Whether the access was a write. */
        write: boolean;
        /** Whether it came from user mode. */
        user: boolean;
      }
    | {
        /** A thread was woken from a userfault. */
        kind: "wake";
        /** The address it slept on. */
        address: number;
      }
    | {
        /** A thread yielded at a scheduling point. */
        kind: "preempt";
        /** Which point. */
        point: string;
      }
    | {
        /** A thread got the CPU back. */
        kind: "resume";
      }
    | {
        /** A uffd_msg read from a userfaultfd. */
        kind: "msg";
        /** The userfaultfd. */
        fd: number;
        /** The event. */
        event: MsgName;
        /** PAGEFAULT: the address. */
        address?: number;
        /** PAGEFAULT: UFFD_PAGEFAULT_FLAG_* bits. */
        flags?: number;
        /** PAGEFAULT: the faulting thread's id. */
        ptid?: number;
        /** REMOVE / UNMAP: start address. */
        start?: number;
        /** REMOVE / UNMAP: end address (exclusive). */
        end?: number;
        /** REMAP: old start. */
        from?: number;
        /** REMAP: new start. */
        to?: number;
        /** REMAP: length. */
        len?: number;
        /** FORK: the child's userfaultfd. */
        ufd?: number;
      }
    | {
        /** A userfaultfd ioctl and its result. */
        kind: "ioctl";
        /** The userfaultfd. */
        fd: number;
        /** The ioctl, e.g. "UFFDIO_COPY". */
        op: string;
        /** Start of its range. */
        start: number;
        /** Length of its range. */
        len: number;
        /** Its mode bits. */
        mode: number;
        /** UFFDIO_COPY / MOVE: the source address, when it is one. */
        src?: number;
        /** "ok" or the errno name. */
        result: string;
        /** The out field (copy, zeropage, mapped, updated, move), or null. */
        out: number | null;
      }
    | {
        /** Another traced syscall (madvise, munmap, mremap, fork, exit). */
        kind: "syscall";
        /** The syscall. */
        name: string;
        /** Its arguments, formatted. */
        args: string;
        /** "ok", its return value, or the errno name. */
        result: string;
      }
    | {
        /** An injected failure. */
        kind: "inject";
        /** What was injected. */
        what: string;
      }
    | {
        /** A free-text note. */
        kind: "note";
        /** The note. */
        text: string;
      }
  );

/** The name of a uffd_msg event, as the trace prints it. */
export type MsgName = "PAGEFAULT" | "FORK" | "REMAP" | "REMOVE" | "UNMAP" | "UNKNOWN";

/** Collects a kernel's trace. One per kernel (recorderOf); the kit installs it as the scheduler's observer. */
export class Recorder {
  /** The kernel being traced. */
  readonly kernel: Kernel;
  /** The events, in order. */
  readonly events: TraceEvent[] = [];
  /** Threads asleep on a userfault: tid -> the faulting address. */
  readonly blocked = new Map<number, number>();
  readonly #labels = new Map<number, string>();

  constructor(kernel: Kernel) {
    this.kernel = kernel;
    kernel.sched.observer = (e) => this.#onSched(e);
  }

  /** The kernel's virtual time in ns. */
  get now(): number {
    return this.kernel.now;
  }

  /** Names a task in the trace (a guest thread's label, or a process's syscall pseudo-task). */
  setLabel(tid: number, label: string): void {
    this.#labels.set(tid, label);
  }

  /** The label of a thread (its name), or "tid<n>". */
  label(tid: number): string {
    const known = this.#labels.get(tid);
    if (known !== undefined) return known;
    for (const p of this.kernel.processes.values()) {
      const th = p.threads.find((x) => x.tid === tid);
      if (th !== undefined) return th.name;
    }
    return `tid${tid}`;
  }

  /** Appends an event. */
  add(e: TraceEvent): void {
    this.events.push(e);
  }

  /** Appends a free-text note by `who`. */
  note(who: string, text: string): void {
    this.add({ t: this.now, who, kind: "note", text });
  }

  #onSched(e: SchedEvent): void {
    const who = this.label(e.tid);
    switch (e.kind) {
      case "preempt":
        this.add({ t: e.now, who, kind: "preempt", point: e.point });
        return;
      case "resume":
        this.add({ t: e.now, who, kind: "resume" });
        return;
      case "block":
        this.blocked.set(e.tid, e.address);
        this.add({ t: e.now, who, kind: "fault", address: e.address, write: e.write, user: e.user });
        return;
      case "wake":
        this.blocked.delete(e.tid);
        this.add({ t: e.now, who, kind: "wake", address: e.address });
        return;
    }
  }
}

/**
 * Where a kernel keeps its recorder: a property under a symbol of this module (a WeakMap entry per
 * kernel cost more, created and collected once per explored seed).
 */
const RECORDER = Symbol("uffd-testing.recorder");

/** The kernel's recorder, created (and installed as its scheduler observer) on first use. */
export function recorderOf(kernel: Kernel): Recorder {
  const k = kernel as Kernel & { [RECORDER]?: Recorder };
  return (k[RECORDER] ??= new Recorder(kernel));
}

// --- rendering ---------------------------------------------------------------------------------

export const hex = (n: number): string => `0x${n.toString(16)}`;

/** Virtual ns as a short readable time. */
export function formatTime(ns: number): string {
  if (ns < 1_000_000) return `${(ns / 1000).toFixed(2)}µs`;
  return `${(ns / 1_000_000).toFixed(3)}ms`;
}

const POINTS: Record<string, string> = { access: "before a page access", wake: "after its wake", user: "at a syscall" };

/** One event as text, without its time and actor. */
export function describe(e: TraceEvent): string {
  switch (e.kind) {
    case "access":
      return `${e.op} ${hex(e.addr)} +${e.len}`;
    case "done":
      return `${e.op} ${hex(e.addr)} +${e.len} completes`;
    case "signal":
      return `${e.signal} at ${hex(e.address)}`;
    case "died":
      return `dies: ${e.reason}`;
    case "fault":
      return `userfault at ${hex(e.address)} (${e.write ? "write" : "read"}${e.user ? "" : ", kernel-mode"}): sleeps`;
    case "wake":
      return `woken (${hex(e.address)})`;
    case "preempt":
      return `preempted ${POINTS[e.point] ?? e.point}`;
    case "resume":
      return "resumes";
    case "msg":
      return `reads ${describeMsg(e)}`;
    case "ioctl":
      return describeIoctl(e);
    case "syscall":
      return `${e.name}(${e.args}) -> ${e.result}`;
    case "inject":
      return `INJECT ${e.what}`;
    case "note":
      return e.text;
  }
}

function describeMsg(e: Extract<TraceEvent, { kind: "msg" }>): string {
  switch (e.event) {
    case "PAGEFAULT": {
      const f = e.flags ?? 0;
      const kind = (f & 4) !== 0 ? "minor" : (f & 2) !== 0 ? "wp" : "missing";
      return `PAGEFAULT ${hex(e.address ?? 0)} ${kind} ${(f & 1) !== 0 ? "write" : "read"}${e.ptid ? ` ptid ${e.ptid}` : ""}`;
    }
    case "REMOVE":
    case "UNMAP":
      return `${e.event} [${hex(e.start ?? 0)}, ${hex(e.end ?? 0)})`;
    case "REMAP":
      return `REMAP ${hex(e.from ?? 0)} -> ${hex(e.to ?? 0)} +${e.len ?? 0}`;
    case "FORK":
      return `FORK ufd ${e.ufd ?? -1}`;
    default:
      return "an unknown message";
  }
}

function describeIoctl(e: Extract<TraceEvent, { kind: "ioctl" }>): string {
  const src = e.src === undefined ? "" : ` src ${hex(e.src)}`;
  const mode = e.mode !== 0 ? ` mode ${e.mode}` : "";
  const out = e.out === null ? "" : ` (out ${e.out})`;
  return `UFFDIO_${e.op} ${hex(e.start)} +${e.len}${src}${mode} -> ${e.result}${out}`;
}

/** The trace as text, one event per line: time, actor, what happened. `limit` keeps the last lines. */
export function formatTrace(events: readonly TraceEvent[], options: { limit?: number; times?: boolean } = {}): string {
  const limit = options.limit ?? Infinity;
  const from = Math.max(0, events.length - limit);
  const width = Math.min(14, Math.max(6, ...events.slice(from).map((e) => e.who.length)));
  const lines: string[] = [];
  if (from > 0) lines.push(`  ... ${from} earlier events`);
  for (let i = from; i < events.length; i++) {
    const e = events[i]!;
    const time = options.times === false ? "" : `${formatTime(e.t).padStart(11)}  `;
    lines.push(`${time}${e.who.padEnd(width)}  ${describe(e)}`);
  }
  return lines.join("\n");
}
