/**
 * vitest matchers for handler tests. Install them with `import "@uffd/testing/setup"` (or a
 * setupFiles entry), or `expect.extend(uffdMatchers)`.
 *
 *   expect(proc).toHaveMemory(addr, bytes)        the frames hold these bytes (read without faulting)
 *   expect(guest).toHaveCompleted()               the guest's body returned
 *   expect(guest).toBeBlocked(addr?)              asleep on a userfault (at addr's page)
 *   expect(guest).toHaveSignal("SIGBUS")          stopped by that signal
 *   expect(proc).toHavePagemap(addr, expected)    pagemap entries match (present, uffdWp, exclusive, ...)
 *   expect(run).toResolveEveryFaultOnce()         no lost fault, no page resolved twice (faults.ts)
 *   expect(kernel).toSatisfyInvariants()          kernel.checkInvariants() holds
 */
import type { Kernel, PagemapEntry, Process } from "@uffd/kernel";
import { PAGE_SIZE } from "@uffd/kernel/uapi";
import type { RunResult, World } from "./explore.ts";
import { analyzeFaults, type FaultResolutionOptions } from "./faults.ts";
import { GuestThread } from "./guest.ts";
import { pagemapFlags, peekMemory } from "./inspect.ts";
import { hex, recorderOf, type TraceEvent } from "./trace.ts";

/** A pagemap expectation: any subset of the entry's fields, plus zeroPage (the shared zero page is mapped). */
export type PagemapExpectation = Partial<Omit<PagemapEntry, "pfn">> & {
  /** The shared zero page is mapped (pfn equals the kernel's zero pfn). */
  zeroPage?: boolean;
};

interface MatcherContext {
  isNot: boolean;
}

interface Result {
  pass: boolean;
  message: () => string;
}

const byte = (n: number | undefined): string => (n === undefined ? "nothing" : `0x${n.toString(16).padStart(2, "0")}`);

function toHaveMemory(this: MatcherContext, proc: Process, addr: number, expected: Uint8Array | readonly number[]): Result {
  const want = expected instanceof Uint8Array ? expected : Uint8Array.from(expected);
  const { bytes, notPresent } = peekMemory(proc, addr, want.length);
  const what = `memory of pid ${proc.pid} at ${hex(addr)} +${want.length}`;
  let firstDiff = -1;
  let diffs = 0;
  for (let i = 0; i < want.length; i++) {
    const page = addr + i - ((addr + i) % PAGE_SIZE);
    if (notPresent.includes(page)) continue;
    if (bytes[i] !== want[i]) {
      diffs++;
      if (firstDiff < 0) firstDiff = i;
    }
  }
  const pass = notPresent.length === 0 && diffs === 0;
  const message = (): string => {
    if (this.isNot) return `expected ${what} not to equal the given bytes, but it does`;
    const lines = [`expected ${what} to equal the given bytes, but`];
    if (notPresent.length > 0) lines.push(`  ${notPresent.length} page(s) are not present (reading them would fault): ${notPresent.map(hex).join(", ")}`);
    if (firstDiff >= 0) {
      const a = addr + firstDiff;
      const e = proc.pagemap(a, 1)[0]!;
      lines.push(
        `  byte ${firstDiff} (${hex(a)}: page ${Math.floor((a - (addr - (addr % PAGE_SIZE))) / PAGE_SIZE)}, +${hex(a % PAGE_SIZE)}) is ${byte(bytes[firstDiff])}, expected ${byte(want[firstDiff])}; ${diffs} of ${want.length} bytes differ; that page is ${pagemapFlags(e, proc.kernel.zeroPfn)}`,
      );
      lines.push(`  actual   ${hexdump(bytes, firstDiff)}`, `  expected ${hexdump(want, firstDiff)}`);
    }
    return lines.join("\n");
  };
  return { pass, message };
}

function hexdump(b: Uint8Array, at: number): string {
  const from = Math.max(0, at - 4);
  const to = Math.min(b.length, from + 16);
  return `[${from}..${to}) ${Array.from(b.subarray(from, to), (x) => x.toString(16).padStart(2, "0")).join(" ")}`;
}

function asGuest(received: unknown, matcher: string): GuestThread {
  if (received instanceof GuestThread) return received;
  throw new TypeError(`${matcher}: expected a GuestThread (from guest() or world.guest()), got ${String(received)}`);
}

function toHaveCompleted(this: MatcherContext, received: GuestThread): Result {
  const g = asGuest(received, "toHaveCompleted");
  return { pass: g.state === "done", message: () => (this.isNot ? `expected ${g.label} not to have completed, but it did` : `expected ${g.label} to have completed, but ${g.describe()}`) };
}

function toBeBlocked(this: MatcherContext, received: GuestThread, address?: number): Result {
  const g = asGuest(received, "toBeBlocked");
  const at = g.blockedOn;
  const page = (a: number): number => a - (a % PAGE_SIZE);
  const pass = at !== null && (address === undefined || page(at) === page(address));
  const where = address === undefined ? "on a userfault" : `on a userfault at ${hex(page(address))}`;
  return { pass, message: () => (this.isNot ? `expected ${g.label} not to be asleep ${where}, but ${g.describe()}` : `expected ${g.label} to be asleep ${where}, but ${g.describe()}`) };
}

function toHaveSignal(this: MatcherContext, received: GuestThread, signal?: string): Result {
  const g = asGuest(received, "toHaveSignal");
  const pass = g.state === "signal" && (signal === undefined || g.signal === signal);
  const which = signal ?? "a signal";
  return { pass, message: () => (this.isNot ? `expected ${g.label} not to get ${which}, but ${g.describe()}` : `expected ${g.label} to get ${which}, but ${g.describe()}`) };
}

function toHavePagemap(this: MatcherContext, proc: Process, addr: number, expected: PagemapExpectation | readonly PagemapExpectation[], pages?: number): Result {
  const list = Array.isArray(expected) ? (expected as readonly PagemapExpectation[]) : null;
  const n = list?.length ?? pages ?? 1;
  const entries = proc.pagemap(addr, n);
  const zero = proc.kernel.zeroPfn;
  const bad: string[] = [];
  for (let i = 0; i < n; i++) {
    const want = list?.[i] ?? (expected as PagemapExpectation);
    const e = entries[i]!;
    const got: Record<string, unknown> = { ...e, zeroPage: e.present && e.pfn === zero };
    const wrong = Object.entries(want).filter(([k, v]) => v !== undefined && got[k] !== v);
    if (wrong.length > 0) bad.push(`  page ${i} (${hex(addr + i * PAGE_SIZE)}): ${wrong.map(([k, v]) => `${k} is ${got[k]}, expected ${v}`).join(", ")} (it is ${pagemapFlags(e, zero)})`);
  }
  const what = `the pagemap of pid ${proc.pid} at ${hex(addr)} (${n} page${n === 1 ? "" : "s"})`;
  return { pass: bad.length === 0, message: () => (this.isNot ? `expected ${what} not to match, but it does` : [`expected ${what} to match, but`, ...bad].join("\n")) };
}

function eventsOf(received: unknown): readonly TraceEvent[] {
  if (Array.isArray(received)) return received as TraceEvent[];
  const r = received as Partial<RunResult & World & Kernel> | null;
  if (r !== null && typeof r === "object") {
    if (Array.isArray(r.events)) return r.events;
    if (typeof r.checkInvariants === "function") return recorderOf(r as Kernel).events;
  }
  throw new TypeError(`toResolveEveryFaultOnce: expected a run, a world, a kernel or trace events, got ${String(received)}`);
}

function toResolveEveryFaultOnce(this: MatcherContext, received: RunResult | World | Kernel | readonly TraceEvent[], options: FaultResolutionOptions = {}): Result {
  const r = analyzeFaults(eventsOf(received), options);
  return {
    pass: r.ok,
    message: () => (this.isNot ? `expected a lost or duplicate fault resolution, but all ${r.faults} faults were resolved exactly once` : `expected every fault to be resolved exactly once (${r.faults} faults), but\n${r.message}`),
  };
}

function toSatisfyInvariants(this: MatcherContext, received: Kernel | RunResult): Result {
  const k = "checkInvariants" in received ? received : received.world.kernel;
  let err: unknown = null;
  try {
    k.checkInvariants();
  } catch (e) {
    err = e;
  }
  return { pass: err === null, message: () => (this.isNot ? "expected the kernel invariants to be broken, but they hold" : `expected the kernel invariants to hold, but ${err instanceof Error ? err.message : String(err)}`) };
}

/** The matchers, for expect.extend(). */
export const uffdMatchers = {
  /** `expect(proc).toHaveMemory(addr, bytes)`: the frames hold these bytes (read without faulting). */
  toHaveMemory,
  /** `expect(guest).toHaveCompleted()`: the guest's body returned. */
  toHaveCompleted,
  /** `expect(guest).toBeBlocked(addr?)`: the guest is asleep on a userfault (at addr's page). */
  toBeBlocked,
  /** `expect(guest).toHaveSignal("SIGBUS")`: a signal (this one) stopped the guest. */
  toHaveSignal,
  /** `expect(proc).toHavePagemap(addr, expected, pages?)`: the pagemap entries match. */
  toHavePagemap,
  /** `expect(run | kernel).toResolveEveryFaultOnce(options?)`: no fault lost, none resolved twice. */
  toResolveEveryFaultOnce,
  /** `expect(kernel | run).toSatisfyInvariants()`: kernel.checkInvariants() holds. */
  toSatisfyInvariants,
};

/** The kit's vitest matchers, as `expect(...)` gets them with `@uffd/testing/setup`. */
export interface UffdMatchers<R = unknown> {
  /** The process's frames at [addr, addr+len) hold exactly these bytes (every page present; nothing is faulted in to check). */
  toHaveMemory(addr: number, expected: Uint8Array | readonly number[]): R;
  /** The guest's body returned. */
  toHaveCompleted(): R;
  /** The guest is asleep on a userfault (at the page of `address`, if given). */
  toBeBlocked(address?: number): R;
  /** The guest was stopped by a signal (this one, if given). */
  toHaveSignal(signal?: "SIGBUS" | "SIGSEGV"): R;
  /** The pagemap entries from addr match: one expectation for `pages` pages (default 1), or one per page. */
  toHavePagemap(addr: number, expected: PagemapExpectation | readonly PagemapExpectation[], pages?: number): R;
  /** No lost fault and no page resolved twice for one fault (see faults.ts). */
  toResolveEveryFaultOnce(options?: FaultResolutionOptions): R;
  /** kernel.checkInvariants() holds. */
  toSatisfyInvariants(): R;
}

declare module "vitest" {
  // eslint-disable-next-line @typescript-eslint/no-empty-object-type
  interface Matchers<T = any> extends UffdMatchers<T> {}
}
