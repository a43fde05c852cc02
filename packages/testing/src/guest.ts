/**
 * Guest threads: a simulated thread running a body of loads and stores, whose fate a test can
 * ask about at any time (completed, blocked on a userfault, got a signal, died), and which
 * explore() waits for and judges.
 */
import type { Thread } from "@uffd/kernel";
import { instrument, instrumentThread } from "./instrument.ts";
import { hex, recorderOf, type Recorder } from "./trace.ts";

/** How a guest stands: running, done (the body returned), signal (SIGBUS / SIGSEGV stopped it) or died (its body threw something else, or its process exited). */
export type GuestState = "running" | "done" | "signal" | "died";

/** What a guest is expected to end with: complete (default), a given signal, or anything. */
export type GuestExpectation = "complete" | "SIGBUS" | "SIGSEGV" | "any";

/** Options of guest() and World.guest(). */
export interface GuestOptions {
  /** The label in traces and reports. Default: the thread's name. */
  name?: string;
  /** How explore() judges the guest. Default "complete". */
  expect?: GuestExpectation;
}

/** A guest: a thread running a body, tracked until it ends, with what it returned or what stopped it. */
export class GuestThread {
  /** The thread's name, for reports. */
  readonly label: string;
  /** The thread that runs the body. */
  readonly thread: Thread;
  /** How the guest is expected to end. */
  readonly expectation: GuestExpectation;
  /** How the guest stands now. */
  state: GuestState = "running";
  /** What the body returned. */
  result: unknown = undefined;
  /** The signal that stopped it ("SIGBUS", "SIGSEGV") and where. */
  signal: string | null = null;
  /** The faulting address of the signal that stopped it, or null. */
  signalAddress: number | null = null;
  /** What the body threw, other than a signal. */
  error: unknown = null;
  /** Settles when the body does; never rejects. */
  readonly settled: Promise<void>;
  readonly #recorder: Recorder;

  constructor(thread: Thread, body: (t: Thread) => unknown, options: GuestOptions = {}) {
    this.thread = thread;
    this.label = options.name ?? thread.name;
    this.expectation = options.expect ?? "complete";
    this.#recorder = recorderOf(thread.process.kernel);
    this.#recorder.setLabel(thread.tid, this.label);
    instrument(thread.process);
    instrumentThread(thread);
    this.settled = Promise.resolve()
      .then(() => body(thread))
      .then(
        (r) => {
          this.state = "done";
          this.result = r;
        },
        (e: unknown) => this.#fail(e),
      );
  }

  #fail(e: unknown): void {
    const sig = (e as { signal?: unknown } | null)?.signal;
    if (e instanceof Error && e.name === "SignalError" && typeof sig === "string") {
      this.state = "signal";
      this.signal = sig;
      this.signalAddress = (e as unknown as { address: number }).address;
      return;
    }
    this.state = "died";
    this.error = e;
  }

  /** The address of the userfault it sleeps on, or null. */
  get blockedOn(): number | null {
    return this.state === "running" ? (this.#recorder.blocked.get(this.thread.tid) ?? null) : null;
  }

  /** Whether the end state meets the expectation. */
  get asExpected(): boolean {
    switch (this.expectation) {
      case "any":
        return this.state !== "running";
      case "complete":
        return this.state === "done";
      default:
        return this.state === "signal" && this.signal === this.expectation;
    }
  }

  /** "t1: completed", "t2: asleep on a userfault at 0x...", "t3: SIGBUS at 0x...", ... */
  describe(): string {
    switch (this.state) {
      case "done":
        return `${this.label}: completed`;
      case "signal":
        return `${this.label}: ${this.signal} at ${hex(this.signalAddress ?? 0)}`;
      case "died":
        return `${this.label}: threw ${this.error instanceof Error ? `${this.error.name}: ${this.error.message}` : String(this.error)}`;
      case "running": {
        const at = this.blockedOn;
        return at === null ? `${this.label}: still running (waiting in the kernel, not on a userfault)` : `${this.label}: asleep on a userfault at ${hex(at)}`;
      }
    }
  }
}

/** Starts `body` on `thread` (on the next microtask) and tracks how it ends. */
export function guest(thread: Thread, body: (t: Thread) => unknown, options: GuestOptions = {}): GuestThread {
  return new GuestThread(thread, body, options);
}
