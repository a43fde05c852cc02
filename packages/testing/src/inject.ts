/**
 * Fault injection at the uAPI boundary. A rule takes over one of the handler's resolving ioctls
 * (COPY, ZEROPAGE, CONTINUE, MOVE, POISON) and makes it fail the way Linux makes it fail, by
 * producing the state first and then running the real ioctl, whose answer is the kernel's own:
 *
 * | injection        | state produced before the real ioctl                                  | what Linux answers        |
 * |------------------|------------------------------------------------------------------------|---------------------------|
 * | eagainAfter(n)   | a racing resolver installs the page at dst+n (same bytes, DONTWAKE)    | out = n, EAGAIN           |
 * | eexist()         | a racing resolver installs the first page (DONTWAKE unless racerWakes) | out = -EEXIST, EEXIST     |
 * | enoent()         | the range is unregistered (or unmapped from the guest: via "munmap")   | out = -ENOENT, ENOENT     |
 * | esrch()          | the guest process exits                                                | ESRCH, out untouched      |
 * | delayWake(ms)    | the resolve runs with DONTWAKE; UFFDIO_WAKE follows ms (virtual) later | the thread sleeps longer  |
 * | removeBefore()   | another guest thread madvise(MADV_DONTNEED)s the range (REMOVE event)  | out = -EAGAIN, EAGAIN     |
 *
 * If the state cannot be produced (the page is already there, the range is a single page for
 * eagainAfter, the mode already has DONTWAKE ...), the rule stays armed and the ioctl runs as is.
 * With munmap (EVENT_UNMAP) or MADV_DONTNEED (EVENT_REMOVE) the guest's syscall waits until the
 * handler reads the event, as in Linux; meanwhile every resolve answers EAGAIN.
 */
import type { Process } from "@uffd/kernel";
import { MADV_DONTNEED, PAGE_SIZE, UFFDIO_CONTINUE, UFFDIO_COPY, UFFDIO_MOVE, UFFDIO_POISON, UFFDIO_UNREGISTER, UFFDIO_WAKE, UFFDIO_ZEROPAGE } from "@uffd/kernel/uapi";
import { instrument, type IoctlCall } from "./instrument.ts";
import { hex } from "./trace.ts";

/** The resolving ioctls an injection can apply to: UFFDIO_COPY, ZEROPAGE, CONTINUE, MOVE, POISON. */
export type ResolveOp = "copy" | "zeropage" | "continue" | "move" | "poison";

/** A failure to inject into a resolve; make one with the `inject` helpers (eagainAfter, eexist, enoent, esrch, delayWake, removeBefore). */
export type Injection =
  | {
      /** EAGAIN with partial progress. */
      readonly kind: "eagain";
      /** Bytes really installed before the racer's page stops the loop. */
      readonly afterBytes: number;
    }
  | {
      /** EEXIST: a racing resolve won. */
      readonly kind: "eexist";
      /** Whether the racer woke the waiters. */
      readonly racerWakes: boolean;
    }
  | {
      /** ENOENT: the range went away. */
      readonly kind: "enoent";
      /** How: unregistered, or unmapped by the guest. */
      readonly via: "unregister" | "munmap";
    }
  | {
      /** ESRCH: the guest process exited. */
      readonly kind: "esrch";
    }
  | {
      /** The resolve does not wake; a UFFDIO_WAKE follows later. */
      readonly kind: "delay-wake";
      /** Virtual milliseconds until the wake. */
      readonly ms: number;
    }
  | {
      /** A REMOVE (MADV_DONTNEED by the guest) lands between the fault and its resolve. */
      readonly kind: "remove";
    };

/** The injections, as values for InjectionRule.inject. */
export const inject = {
  /** EAGAIN with partial progress: the first `bytes` are really installed, then a racer's page stops the loop. */
  eagainAfter: (bytes: number): Injection => {
    if (!Number.isInteger(bytes) || bytes <= 0 || bytes % PAGE_SIZE !== 0) throw new RangeError(`eagainAfter(${bytes}): a positive multiple of PAGE_SIZE`);
    return { kind: "eagain", afterBytes: bytes };
  },
  /** EEXIST because a racing resolve won. By default the racer does not wake (a batching or prefetching resolver). */
  eexist: (options: { racerWakes?: boolean } = {}): Injection => ({ kind: "eexist", racerWakes: options.racerWakes ?? false }),
  /** ENOENT because the range went away: unregistered (default) or unmapped by the guest. */
  enoent: (options: { via?: "unregister" | "munmap" } = {}): Injection => ({ kind: "enoent", via: options.via ?? "unregister" }),
  /** ESRCH because the guest process exited. */
  esrch: (): Injection => ({ kind: "esrch" }),
  /** The resolve does not wake; a UFFDIO_WAKE follows `ms` milliseconds of virtual time later. */
  delayWake: (ms: number): Injection => ({ kind: "delay-wake", ms }),
  /** A REMOVE between the fault and its resolve: the guest MADV_DONTNEEDs the range first. */
  removeBefore: (): Injection => ({ kind: "remove" }),
} as const;

/** Which resolves an injection applies to, and how often. */
export interface InjectionRule {
  /** The failure to inject. */
  readonly inject: Injection;
  /** Which resolves it applies to. Default: all five. */
  readonly op?: ResolveOp | readonly ResolveOp[];
  /** Only resolves whose range contains this address. */
  readonly address?: number;
  /** The rule arms at the nth matching resolve (1-based). Default 1. */
  readonly nth?: number;
  /** How many times it fires once armed. Default 1; Infinity for every matching resolve. */
  readonly times?: number;
}

/** Options of injectFaults() and World.inject(). */
export interface InjectOptions {
  /** The process whose memory the userfaultfd serves (a monitor's target). Default: the handler's process. */
  readonly guest?: Process;
}

/** One injection that fired. */
export interface InjectionRecord {
  /** Index of the rule that fired. */
  readonly rule: number;
  /** The injection's kind. */
  readonly kind: Injection["kind"];
  /** The resolve it hit. */
  readonly op: ResolveOp;
  /** Start of the resolve's range. */
  readonly start: number;
  /** Length of the resolve's range. */
  readonly len: number;
  /** The result of the real ioctl: "ok" or the errno name. */
  result: string;
}

const OPS: ReadonlyMap<number, ResolveOp> = new Map([
  [UFFDIO_COPY, "copy"],
  [UFFDIO_ZEROPAGE, "zeropage"],
  [UFFDIO_CONTINUE, "continue"],
  [UFFDIO_MOVE, "move"],
  [UFFDIO_POISON, "poison"],
]);

const DONTWAKE = 1; // bit 0 is DONTWAKE for every mfill ioctl and for MOVE
const MODE_WP = 2; // UFFDIO_COPY_MODE_WP / UFFDIO_CONTINUE_MODE_WP

interface RuleState {
  readonly rule: InjectionRule;
  readonly ops: ReadonlySet<ResolveOp>;
  seen: number;
  fired: number;
}

/** The injections installed on one process. */
export class Injector {
  /** The process whose resolves are intercepted (the handler's). */
  readonly proc: Process;
  /** The process whose memory the userfaultfd serves. */
  readonly guest: Process;
  /** Every injection that fired, in order. */
  readonly records: InjectionRecord[] = [];
  readonly #rules: RuleState[];
  /** Syscalls the injector started and did not wait for (a munmap or madvise waiting for its event). */
  readonly pending: Array<Promise<unknown>> = [];

  constructor(proc: Process, rules: readonly InjectionRule[], options: InjectOptions) {
    this.proc = proc;
    this.guest = options.guest ?? proc;
    this.#rules = rules.map((rule) => {
      const ops = rule.op === undefined ? [...OPS.values()] : typeof rule.op === "string" ? [rule.op] : rule.op;
      return { rule, ops: new Set(ops), seen: 0, fired: 0 };
    });
    instrument(proc).interceptor = (call) => this.#intercept(call);
    instrument(this.guest);
  }

  /** How many injections fired (of one kind). */
  fired(kind?: Injection["kind"]): number {
    return this.records.filter((r) => kind === undefined || r.kind === kind).length;
  }

  /** Uninstalls the rules. */
  remove(): void {
    instrument(this.proc).interceptor = null;
  }

  #intercept(call: IoctlCall): Promise<number> | null {
    const op = OPS.get(call.request >>> 0);
    if (op === undefined) return null;
    for (const [i, st] of this.#rules.entries()) {
      const { rule } = st;
      if (!st.ops.has(op)) continue;
      if (rule.address !== undefined && !(rule.address >= call.start && rule.address < call.start + call.len)) continue;
      if (++st.seen < (rule.nth ?? 1) || st.fired >= (rule.times ?? 1)) continue;
      const p = this.#apply(rule.inject, op, call);
      if (p === null) continue; // the state cannot be produced here: stays armed
      st.fired++;
      const rec: InjectionRecord = { rule: i, kind: rule.inject.kind, op, start: call.start, len: call.len, result: "..." };
      this.records.push(rec);
      return p.then(
        (r) => ((rec.result = "ok"), r),
        (e: unknown) => {
          rec.result = (e as { code?: string }).code ?? "threw";
          throw e;
        },
      );
    }
    return null;
  }

  #note(what: string): void {
    const rec = instrument(this.proc).recorder;
    rec.add({ t: rec.now, who: "inject", kind: "inject", what });
  }

  /** Whether the guest's page at `addr` is empty (no pte, no swap entry or marker). */
  #missing(addr: number): boolean {
    if (this.guest.exited) return false;
    const e = this.guest.pagemap(addr, 1)[0];
    return e !== undefined && !e.present && !e.swapped;
  }

  #apply(inj: Injection, op: ResolveOp, call: IoctlCall): Promise<number> | null {
    switch (inj.kind) {
      case "eagain":
        return this.#racer(op, call, inj.afterBytes, false, `EAGAIN after ${inj.afterBytes} bytes`);
      case "eexist":
        return this.#racer(op, call, 0, inj.racerWakes, "EEXIST");
      case "enoent":
        return this.#rangeGone(call, inj.via);
      case "esrch":
        return this.#exitGuest(call);
      case "delay-wake":
        return this.#delayWake(op, call, inj.ms);
      case "remove":
        return this.#removeBefore(call);
    }
  }

  /**
   * A racing resolver installs the page at dst+offset first (same op, same bytes), then the
   * real ioctl meets it: EEXIST at offset 0, or EAGAIN with `offset` bytes done.
   */
  #racer(op: ResolveOp, call: IoctlCall, offset: number, wakes: boolean, what: string): Promise<number> | null {
    const page = call.start + offset;
    if (offset >= call.len || !this.#missing(page)) return null;
    const a = call.arg;
    const mode = (wakes ? 0 : DONTWAKE) | (op === "copy" || op === "continue" ? call.mode & MODE_WP : 0);
    let racer: [number, object];
    if (op === "copy" || op === "move") {
      const src = a.src;
      if (src instanceof Uint8Array) {
        if (src.length < offset + PAGE_SIZE) return null;
        racer = [UFFDIO_COPY, { dst: page, src: src.subarray(offset), len: PAGE_SIZE, mode, copy: 0 }];
      } else if (typeof src === "number") {
        racer = [UFFDIO_COPY, { dst: page, src: src + offset, len: PAGE_SIZE, mode, copy: 0 }];
      } else {
        return null;
      }
    } else {
      const req = op === "zeropage" ? UFFDIO_ZEROPAGE : op === "continue" ? UFFDIO_CONTINUE : UFFDIO_POISON;
      racer = [req, { range: { start: page, len: PAGE_SIZE }, mode: op === "continue" ? mode : mode & DONTWAKE }];
    }
    this.#note(`${what}: a racing resolver installs ${hex(page)} first${wakes ? "" : " (DONTWAKE)"}`);
    return call.real(call.fd, racer[0], racer[1], "inject").then(
      () => call.real(call.fd, call.request, call.arg),
      () => call.real(call.fd, call.request, call.arg),
    );
  }

  /** ENOENT: the range loses its registration (UNREGISTER through the same fd) or its mapping (the guest munmaps it). */
  #rangeGone(call: IoctlCall, via: "unregister" | "munmap"): Promise<number> | null {
    const start = call.start - (call.start % PAGE_SIZE);
    const len = Math.ceil((call.start + call.len) / PAGE_SIZE) * PAGE_SIZE - start;
    if (len <= 0) return null;
    if (via === "munmap") {
      if (this.guest.exited) return null;
      this.#note(`ENOENT: the guest unmaps [${hex(start)}, ${hex(start + len)})`);
      this.pending.push(instrument(this.guest).direct.munmap(start, len).catch(() => {}));
      return call.real(call.fd, call.request, call.arg);
    }
    this.#note(`ENOENT: [${hex(start)}, ${hex(start + len)}) is unregistered`);
    return call.real(call.fd, UFFDIO_UNREGISTER, { start, len }, "inject").then(
      () => call.real(call.fd, call.request, call.arg),
      () => call.real(call.fd, call.request, call.arg),
    );
  }

  /** ESRCH: the guest exits (its mm goes), then the resolve runs. */
  #exitGuest(call: IoctlCall): Promise<number> | null {
    if (this.guest.exited) return null;
    this.#note(`ESRCH: the guest (pid ${this.guest.pid}) exits`);
    return instrument(this.guest).direct.exit(0).then(
      () => call.real(call.fd, call.request, call.arg),
      () => call.real(call.fd, call.request, call.arg),
    );
  }

  /** The resolve runs with DONTWAKE; UFFDIO_WAKE of what it installed follows `ms` of virtual time later. */
  #delayWake(op: ResolveOp, call: IoctlCall, ms: number): Promise<number> | null {
    if ((call.mode & DONTWAKE) !== 0) return null;
    const a = call.arg;
    const out = op === "copy" ? "copy" : op === "zeropage" ? "zeropage" : op === "continue" ? "mapped" : op === "move" ? "move" : "updated";
    this.#note(`the wake of [${hex(call.start)}, +${call.len}) is delayed by ${ms} ms`);
    const before = a[out];
    a.mode = call.mode | DONTWAKE;
    const p = call.real(call.fd, call.request, a);
    // The caller may reuse its struct once a synchronous ioctl returned: read the result now if it is there.
    const after = a[out];
    if (a.mode === (call.mode | DONTWAKE)) a.mode = call.mode;
    const wakeLater = (): void => {
      const field = after !== before ? after : a[out];
      const done = typeof field === "number" && field > 0 ? field : 0;
      if (done === 0) return;
      const wake = this.proc
        .poll([], ms)
        .then(() => call.real(call.fd, UFFDIO_WAKE, { start: call.start, len: done }, "inject"))
        .catch(() => {});
      this.pending.push(wake);
    };
    return p.then(
      (r) => (wakeLater(), r),
      (e: unknown) => {
        wakeLater();
        throw e;
      },
    );
  }

  /** A REMOVE between the fault and its resolve: another guest thread MADV_DONTNEEDs the range first. */
  #removeBefore(call: IoctlCall): Promise<number> | null {
    if (this.guest.exited || call.len <= 0) return null;
    const start = call.start - (call.start % PAGE_SIZE);
    const len = Math.ceil((call.start + call.len) / PAGE_SIZE) * PAGE_SIZE - start;
    this.#note(`REMOVE: the guest MADV_DONTNEEDs [${hex(start)}, ${hex(start + len)}) before the resolve`);
    this.pending.push(instrument(this.guest).direct.madvise(start, len, MADV_DONTNEED).catch(() => {}));
    return call.real(call.fd, call.request, call.arg);
  }
}

/** Installs fault-injection rules on the process that makes the resolving ioctls. */
export function injectFaults(proc: Process, rules: readonly InjectionRule[], options: InjectOptions = {}): Injector {
  return new Injector(proc, rules, options);
}
