/**
 * Instrumenting a process at the uAPI boundary: its userfaultfd syscalls (read, ioctl), its mm
 * syscalls that raise non-cooperative events (madvise, munmap, mremap, fork, exit) and its
 * threads' loads and stores are recorded in the kernel's trace; each of those syscalls becomes
 * a scheduling point (Kernel.schedPoint), so under an explorer the seed decides how the
 * handler's calls and the events interleave with the guest threads; and an interceptor (fault
 * injection) may take over a resolving ioctl.
 *
 * The wrappers are own properties on the Process and Thread objects; the real methods stay on
 * the prototype and are what the wrappers (and the interceptor's own calls) invoke. Without
 * preemption a wrapper calls through synchronously, so the call's synchronous effects (an event
 * queued by madvise, say) happen exactly when they would without the kit.
 */
import { decodeUffdMsgs, ErrnoError, type Process, type Thread, type UffdMsg } from "@uffd/kernel";
import {
  UFFD_EVENT_FORK,
  UFFD_EVENT_PAGEFAULT,
  UFFD_EVENT_REMAP,
  UFFD_EVENT_REMOVE,
  UFFDIO_API,
  UFFDIO_CONTINUE,
  UFFDIO_COPY,
  UFFDIO_MOVE,
  UFFDIO_POISON,
  UFFDIO_REGISTER,
  UFFDIO_UNREGISTER,
  UFFDIO_WAKE,
  UFFDIO_WRITEPROTECT,
  UFFDIO_ZEROPAGE,
} from "@uffd/kernel/uapi";
import { hex, type Recorder, recorderOf } from "./trace.ts";

/** The userfaultfd ioctls by request number, with where their range and out field are. */
export const UFFD_IOCTLS: ReadonlyMap<number, { op: string; out: string | null; range: "range" | "dst" | "flat" | "none" }> = new Map([
  [UFFDIO_API, { op: "API", out: null, range: "none" }],
  [UFFDIO_REGISTER, { op: "REGISTER", out: null, range: "range" }],
  [UFFDIO_UNREGISTER, { op: "UNREGISTER", out: null, range: "flat" }],
  [UFFDIO_WAKE, { op: "WAKE", out: null, range: "flat" }],
  [UFFDIO_COPY, { op: "COPY", out: "copy", range: "dst" }],
  [UFFDIO_ZEROPAGE, { op: "ZEROPAGE", out: "zeropage", range: "range" }],
  [UFFDIO_WRITEPROTECT, { op: "WRITEPROTECT", out: null, range: "range" }],
  [UFFDIO_CONTINUE, { op: "CONTINUE", out: "mapped", range: "range" }],
  [UFFDIO_POISON, { op: "POISON", out: "updated", range: "range" }],
  [UFFDIO_MOVE, { op: "MOVE", out: "move", range: "dst" }],
]);

/** A userfaultfd ioctl as the instrumentation sees it, before it runs. */
export interface IoctlCall {
  /** The calling process. */
  readonly proc: Process;
  /** The fd. */
  readonly fd: number;
  /** The ioctl request number. */
  readonly request: number;
  /** The argument struct. */
  readonly arg: Record<string, unknown>;
  /** "COPY", "ZEROPAGE", ... */
  readonly op: string;
  /** Start of the range the call names. */
  readonly start: number;
  /** Length of that range. */
  readonly len: number;
  /** The mode bits. */
  readonly mode: number;
  /** The real ioctl (traced as `who`), for an interceptor's own calls. */
  real(fd: number, request: number, arg: object, who?: string): Promise<number>;
}

/** Takes over an ioctl (fault injection): returns the ioctl's promise, or null to let it run normally. */
export type IoctlInterceptor = (call: IoctlCall) => Promise<number> | null;

/** A process as the kit instruments it: its trace, its userfaultfds, and the hook fault injection uses. */
export interface Instrumented {
  /** The instrumented process. */
  readonly proc: Process;
  /** Where its events go. */
  readonly recorder: Recorder;
  /** The trace label of the process's syscalls. */
  readonly label: string;
  /** The pseudo task id of the process's syscalls at scheduling points (negative: never a tid). */
  readonly sysTid: number;
  /** The fds known to be userfaultfds (created here, received in a FORK message, or passed in). */
  readonly uffds: Set<number>;
  /** The ioctl interceptor (fault injection), or null. */
  interceptor: IoctlInterceptor | null;
  /**
   * A no-wait read (readNowait) that was preempted at its scheduling point read nothing; the
   * process's next read waits for this turn instead of taking a scheduling point of its own.
   * Null when no such turn is pending.
   */
  readYield: Promise<void> | null;
  /** The event-raising syscalls without their scheduling point (traced): fault injection produces its state at once. */
  direct: {
    /** madvise(2), untraced. */
    madvise(addr: number, length: number, advice: number): Promise<void>;
    /** munmap(2), untraced. */
    munmap(addr: number, length: number): Promise<void>;
    /** exit(2), untraced. */
    exit(status: number): Promise<void>;
  };
}

/** Where a process keeps its instrumentation (a symbol-keyed property: cheaper than a WeakMap entry per process). */
const INSTRUMENTED = Symbol("uffd-testing.instrumented");

type WithInstrumentation = Process & { [INSTRUMENTED]?: Instrumented };

function notYet(): Promise<void> {
  return Promise.reject(new Error("not instrumented yet"));
}
/** Instrumented.direct until wrapMmSyscalls() sets it. */
const UNSET_DIRECT: Instrumented["direct"] = { madvise: notYet, munmap: notYet, exit: notYet };

const num = (v: unknown): number => (typeof v === "number" ? v : typeof v === "bigint" ? Number(v) : 0);
const field = (o: unknown, k: string): unknown => (typeof o === "object" && o !== null ? (o as Record<string, unknown>)[k] : undefined);
const errName = (e: unknown): string => (e instanceof ErrnoError ? e.code : e instanceof Error ? e.name : "threw");

/** The instrumentation of `proc`, installed on first use (idempotent). */
export function instrument(proc: Process, options: { label?: string } = {}): Instrumented {
  const known = (proc as WithInstrumentation)[INSTRUMENTED];
  if (known !== undefined) return known;
  const recorder = recorderOf(proc.kernel);
  const ins: Instrumented = { proc, recorder, label: options.label ?? proc.name, sysTid: -proc.pid, uffds: new Set(), interceptor: null, readYield: null, direct: UNSET_DIRECT };
  recorder.setLabel(ins.sysTid, ins.label);
  (proc as WithInstrumentation)[INSTRUMENTED] = ins;
  wrapUffdSyscalls(ins);
  wrapMmSyscalls(ins);
  for (const t of proc.threads) instrumentThread(t);
  const spawnThread = proc.spawnThread.bind(proc);
  proc.spawnThread = (name?: string): Thread => instrumentThread(spawnThread(name));
  return ins;
}

/** Tells the instrumentation that `fd` in `proc` is a userfaultfd (one passed in with sendFd, say). */
export function markUserfaultfd(proc: Process, fd: number): void {
  instrument(proc).uffds.add(fd);
}

function schedPoint(ins: Instrumented): Promise<void> | null {
  return ins.proc.kernel.schedPoint(ins.sysTid);
}

/** Creates a userfaultfd with the real `create` (userfaultfd(2) or /dev/userfaultfd) and traces it. */
async function createFd(ins: Instrumented, create: (this: Process, flags: number) => Promise<number>, flags: number): Promise<number> {
  const fd = await create.call(ins.proc, flags);
  ins.uffds.add(fd);
  return fd;
}

function wrapUffdSyscalls(ins: Instrumented): void {
  const proc = ins.proc;
  const proto = Object.getPrototypeOf(proc) as Process;
  proc.userfaultfd = (flags: number): Promise<number> => createFd(ins, proto.userfaultfd, flags);
  proc.openDevUserfaultfd = (flags: number): Promise<number> => createFd(ins, proto.openDevUserfaultfd, flags);
  proc.close = (fd: number): Promise<void> => {
    ins.uffds.delete(fd);
    return proto.close.call(proc, fd);
  };
  proc.sendFd = async (fd: number, to: Process): Promise<number> => {
    const got = await proto.sendFd.call(proc, fd, to);
    if (ins.uffds.has(fd)) markUserfaultfd(to, got);
    return got;
  };
  // The per-call paths below allocate no function of their own when the call is not
  // preempted (explore() makes tens of these calls per seed).
  proc.read = (fd: number, length: number): Promise<Uint8Array> => {
    if (!ins.uffds.has(fd)) return proto.read.call(proc, fd, length);
    const yielded = schedPoint(ins);
    return yielded === null ? tracedRead(ins, proto, fd, length) : yielded.then(() => tracedRead(ins, proto, fd, length));
  };
  proc.readInto = (fd: number, into: Uint8Array): Promise<number> => {
    if (!ins.uffds.has(fd)) return proto.readInto.call(proc, fd, into);
    const yielded = ins.readYield ?? schedPoint(ins);
    return yielded === null ? tracedReadInto(ins, proto, fd, into) : yielded.then(() => tracedReadInto(ins, proto, fd, into));
  };
  proc.readNowait = (fd: number, into: Uint8Array): number | null => {
    if (!ins.uffds.has(fd)) return proto.readNowait.call(proc, fd, into);
    // A read is a scheduling point, and this one cannot wait for its turn: preempted, it reads
    // nothing (as if it came before the messages), and the next read waits for the turn.
    if (ins.readYield !== null) return null;
    const yielded = schedPoint(ins);
    if (yielded !== null) {
      ins.readYield = yielded;
      void yielded.then(() => {
        if (ins.readYield === yielded) ins.readYield = null;
      });
      return null;
    }
    const n = proto.readNowait.call(proc, fd, into);
    return n === null ? null : recordRead(ins, fd, into, n);
  };
  proc.ioctl = (fd: number, request: number, arg: object): Promise<number> => {
    const info = UFFD_IOCTLS.get(request >>> 0);
    if (info === undefined) return proto.ioctl.call(proc, fd, request, arg);
    const yielded = schedPoint(ins);
    return yielded === null ? runIoctl(ins, proto, fd, request, arg, info.op) : yielded.then(() => runIoctl(ins, proto, fd, request, arg, info.op));
  };
}

function tracedRead(ins: Instrumented, proto: Process, fd: number, length: number): Promise<Uint8Array> {
  return proto.read.call(ins.proc, fd, length).then((bytes) => recordMsgs(ins, fd, bytes));
}

function tracedReadInto(ins: Instrumented, proto: Process, fd: number, into: Uint8Array): Promise<number> {
  return proto.readInto.call(ins.proc, fd, into).then((n) => recordRead(ins, fd, into, n));
}

function runIoctl(ins: Instrumented, proto: Process, fd: number, request: number, arg: object, op: string): Promise<number> {
  const icpt = ins.interceptor;
  if (icpt !== null && typeof arg === "object" && arg !== null) {
    const real = (f: number, r: number, a: object, who = ins.label): Promise<number> => traced(ins, proto, f, r, a, who);
    const { start, len, mode } = ioctlRange(request, arg);
    const p = icpt({ proc: ins.proc, fd, request, arg: arg as Record<string, unknown>, op, start, len, mode, real });
    if (p !== null) return p;
  }
  return traced(ins, proto, fd, request, arg, ins.label);
}

/** The range an ioctl acts on, read defensively (a malformed struct is the kernel's to reject). */
export function ioctlRange(request: number, arg: unknown): { start: number; len: number; mode: number; src?: number } {
  const info = UFFD_IOCTLS.get(request >>> 0);
  const mode = num(field(arg, "mode"));
  switch (info?.range) {
    case "range": {
      const r = field(arg, "range");
      return { start: num(field(r, "start")), len: num(field(r, "len")), mode };
    }
    case "dst": {
      const src = field(arg, "src");
      const start = num(field(arg, "dst"));
      const len = num(field(arg, "len"));
      return typeof src === "number" ? { start, len, mode, src } : { start, len, mode };
    }
    case "flat":
      return { start: num(field(arg, "start")), len: num(field(arg, "len")), mode: 0 };
    default:
      return { start: 0, len: 0, mode: 0 };
  }
}

function traced(ins: Instrumented, proto: Process, fd: number, request: number, arg: object, who: string): Promise<number> {
  const info = UFFD_IOCTLS.get(request >>> 0)!;
  const { start, len, mode, src } = ioctlRange(request, arg);
  const key = info.out;
  const before = key === null ? undefined : field(arg, key);
  const p = proto.ioctl.call(ins.proc, fd, request, arg);
  // A synchronous ioctl has written its out field by now, and the caller may reuse the struct
  // as soon as the call returns (the SDK does): read it now when it changed, else at the end.
  const after = key === null ? undefined : field(arg, key);
  return p.then(
    (r) => {
      recordIoctl(ins.recorder, who, fd, info.op, start, len, mode, src, "ok", key === null ? null : num(after !== before ? after : field(arg, key)));
      return r;
    },
    (e: unknown) => {
      recordIoctl(ins.recorder, who, fd, info.op, start, len, mode, src, errName(e), key === null ? null : num(after !== before ? after : field(arg, key)));
      throw e;
    },
  );
}

/** The ioctl's trace event (`src` only when the call had one, after `mode` as the event type lists it). */
function recordIoctl(rec: Recorder, who: string, fd: number, op: string, start: number, len: number, mode: number, src: number | undefined, result: string, out: number | null): void {
  const t = rec.now;
  if (src === undefined) rec.add({ t, who, kind: "ioctl", fd, op, start, len, mode, result, out });
  else rec.add({ t, who, kind: "ioctl", fd, op, start, len, mode, src, result, out });
}

/** recordMsgs() of the `n` bytes a readInto() / readNowait() wrote into `into`; returns n. */
function recordRead(ins: Instrumented, fd: number, into: Uint8Array, n: number): number {
  recordMsgs(ins, fd, into.subarray(0, n));
  return n;
}

function recordMsgs(ins: Instrumented, fd: number, bytes: Uint8Array): Uint8Array {
  let msgs: UffdMsg[];
  try {
    msgs = decodeUffdMsgs(bytes);
  } catch {
    return bytes;
  }
  const rec = ins.recorder;
  const who = ins.label;
  // Events as literals (no spread): t, who, kind, fd, event, then the message's fields.
  for (const m of msgs) {
    const t = rec.now;
    if (m.event === UFFD_EVENT_PAGEFAULT) {
      const pf = m.arg.pagefault;
      rec.add({ t, who, kind: "msg", fd, event: "PAGEFAULT", address: pf.address, flags: pf.flags, ptid: pf.feat.ptid });
    } else if (m.event === UFFD_EVENT_FORK) {
      // The child's userfaultfd is installed in the reader's fd table.
      ins.uffds.add(m.arg.fork.ufd);
      rec.add({ t, who, kind: "msg", fd, event: "FORK", ufd: m.arg.fork.ufd });
    } else if (m.event === UFFD_EVENT_REMAP) {
      const r = m.arg.remap;
      rec.add({ t, who, kind: "msg", fd, event: "REMAP", from: r.from, to: r.to, len: r.len });
    } else {
      const r = m.arg.remove;
      rec.add({ t, who, kind: "msg", fd, event: m.event === UFFD_EVENT_REMOVE ? "REMOVE" : "UNMAP", start: r.start, end: r.end });
    }
  }
  return bytes;
}

// --- mm syscalls that raise events, and exit ------------------------------------------------------

const MADVICE: Record<number, string> = { 4: "MADV_DONTNEED", 8: "MADV_FREE", 9: "MADV_REMOVE", 21: "MADV_PAGEOUT" };

function madviseArgs(addr: number, length: number, advice: number): string {
  return `${hex(addr)}, ${length}, ${MADVICE[advice] ?? advice}`;
}

function showOk(): string {
  return "ok";
}

/** Records the call when it is made and its result when it returns (it may wait for an event to be read). */
function around<T>(ins: Instrumented, name: string, args: string, run: () => Promise<T>, show: (v: T) => string = showOk): Promise<T> {
  const rec = ins.recorder;
  rec.add({ t: rec.now, who: ins.label, kind: "syscall", name, args, result: "..." });
  return run().then(
    (v) => {
      rec.add({ t: rec.now, who: ins.label, kind: "syscall", name, args, result: show(v) });
      return v;
    },
    (e: unknown) => {
      rec.add({ t: rec.now, who: ins.label, kind: "syscall", name, args, result: errName(e) });
      throw e;
    },
  );
}

/** The same call after a scheduling point: the seed decides when an event-raising syscall lands. */
function scheduled<T>(ins: Instrumented, name: string, args: string, run: () => Promise<T>, show?: (v: T) => string): Promise<T> {
  const yielded = schedPoint(ins);
  return yielded === null ? around(ins, name, args, run, show) : yielded.then(() => around(ins, name, args, run, show));
}

function wrapMmSyscalls(ins: Instrumented): void {
  const proc = ins.proc;
  const proto = Object.getPrototypeOf(proc) as Process;
  ins.direct = {
    madvise(addr, length, advice) {
      return around(ins, "madvise", madviseArgs(addr, length, advice), () => proto.madvise.call(proc, addr, length, advice));
    },
    munmap(addr, length) {
      return around(ins, "munmap", `${hex(addr)}, ${length}`, () => proto.munmap.call(proc, addr, length));
    },
    exit(status) {
      return around(ins, "exit", String(status), () => proto.exit.call(proc, status));
    },
  };
  proc.madvise = (addr, length, advice) => scheduled(ins, "madvise", madviseArgs(addr, length, advice), () => proto.madvise.call(proc, addr, length, advice));
  proc.munmap = (addr, length) => scheduled(ins, "munmap", `${hex(addr)}, ${length}`, () => proto.munmap.call(proc, addr, length));
  proc.mremap = (oldAddress, oldSize, newSize, flags, newAddress = 0) =>
    scheduled(ins, "mremap", `${hex(oldAddress)}, ${oldSize}, ${newSize}, ${flags}, ${hex(newAddress)}`, () => proto.mremap.call(proc, oldAddress, oldSize, newSize, flags, newAddress), hex);
  proc.fork = () => scheduled(ins, "fork", "", () => proto.fork.call(proc), (child) => `pid ${child.pid}`);
  proc.exit = (status = 0) => scheduled(ins, "exit", String(status), () => proto.exit.call(proc, status));
}

// --- threads --------------------------------------------------------------------------------------

/** Marks a thread whose accesses are traced. */
const TRACED = Symbol("uffd-testing.traced");

/** Records a thread's loads and stores (start, completion, signal). Idempotent. */
export function instrumentThread(thread: Thread): Thread {
  const marked = thread as Thread & { [TRACED]?: true };
  if (marked[TRACED] === true) return thread;
  marked[TRACED] = true;
  const rec = recorderOf(thread.process.kernel);
  const proto = Object.getPrototypeOf(thread) as Thread;
  thread.read = (addr: number, length: number): Promise<Uint8Array> => {
    rec.add({ t: rec.now, who: rec.label(thread.tid), kind: "access", op: "load", addr, len: length });
    return settleAccess(rec, thread, "load", addr, length, proto.read.call(thread, addr, length));
  };
  thread.write = (addr: number, data: Uint8Array): Promise<void> => {
    rec.add({ t: rec.now, who: rec.label(thread.tid), kind: "access", op: "store", addr, len: data.length });
    return settleAccess(rec, thread, "store", addr, data.length, proto.write.call(thread, addr, data));
  };
  return thread;
}

/** Traces how a thread's access ends: done, a signal, or a death. */
function settleAccess<T>(rec: Recorder, thread: Thread, op: "load" | "store", addr: number, len: number, p: Promise<T>): Promise<T> {
  return p.then(
    (v) => {
      rec.add({ t: rec.now, who: rec.label(thread.tid), kind: "done", op, addr, len });
      return v;
    },
    (e: unknown) => {
      const sig = field(e, "signal");
      if (typeof sig === "string") rec.add({ t: rec.now, who: rec.label(thread.tid), kind: "signal", signal: sig, address: num(field(e, "address")) });
      else rec.add({ t: rec.now, who: rec.label(thread.tid), kind: "died", reason: e instanceof Error ? `${e.name}: ${e.message}` : String(e) });
      throw e;
    },
  );
}
