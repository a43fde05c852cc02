/**
 * The typed event map, one entry per UFFD_EVENT_* plus the SDK's own "error" and "close".
 * Backed by eventemitter3 and typed with typed-emitter; the SDK exposes only the subscribe side
 * (on / once / off / removeAllListeners / listenerCount). eventemitter3 has no prependListener,
 * rawListeners or get/setMaxListeners, so the SDK does not promise them.
 *
 * A listener may return a promise: the SDK watches it, and a rejection goes to the failure
 * policy like a throw. Listeners never run inside the kernel: a throw is caught and reported.
 */
// typed-emitter ships CommonJS-style typings whose `export default` an ESM import sees as `.default`.
import type TypedEmitterModule from "typed-emitter";
import type { UffdError } from "./errors.ts";
import type { Fault } from "./fault.ts";
import type { Userfaultfd } from "./userfaultfd.ts";

/** UFFD_EVENT_REMAP: [from, from+len) moved to [to, to+len) (len is the old length). */
export interface RemapEvent {
  readonly from: number;
  readonly to: number;
  readonly len: number;
}

/** UFFD_EVENT_REMOVE (MADV_DONTNEED, MADV_FREE, MADV_REMOVE) and UFFD_EVENT_UNMAP (munmap, mremap, MAP_FIXED). */
export interface RangeEvent {
  readonly start: number;
  readonly end: number;
}

export type UffdEvents = {
  /** UFFD_EVENT_PAGEFAULT (duplicates for one page are coalesced into one fault). */
  fault: (fault: Fault) => void;
  /** UFFD_EVENT_FORK: the child's userfaultfd, already running with this handler's listeners. */
  fork: (child: Userfaultfd) => void;
  /** UFFD_EVENT_REMAP: the SDK's ranges already moved. */
  remap: (event: RemapEvent) => void;
  /** UFFD_EVENT_REMOVE: the pages are marked removed (their next fault should be zero-filled). */
  remove: (event: RangeEvent) => void;
  /** UFFD_EVENT_UNMAP: the SDK's ranges already dropped the span. */
  unmap: (event: RangeEvent) => void;
  /** A listener failed, a fault went to the failure policy, or the read loop hit an error. */
  error: (error: UffdError | Error, fault: Fault | null) => void;
  /** The userfaultfd was closed (by close(), or because the handler process exited). */
  close: () => void;
};

export type UffdEventName = keyof UffdEvents;

/** The subscribe side of the emitter: what Userfaultfd offers, and nothing eventemitter3 lacks. */
/** typed-emitter's interface over this map (eventemitter3 implements only part of it). */
export type UffdTypedEmitter = TypedEmitterModule.default<UffdEvents>;

/**
 * The subscribe side of UffdTypedEmitter: the same signatures, returning the subscriber itself
 * for chaining. test/types.test.ts proves UffdTypedEmitter is assignable to it (a strict subset).
 */
export interface UffdEventSubscriber {
  on<E extends UffdEventName>(event: E, listener: UffdEvents[E]): this;
  once<E extends UffdEventName>(event: E, listener: UffdEvents[E]): this;
  off<E extends UffdEventName>(event: E, listener: UffdEvents[E]): this;
  removeAllListeners<E extends UffdEventName>(event?: E): this;
  listenerCount<E extends UffdEventName>(event: E): number;
}
