/**
 * The userspace side of userfaultfd, on top of the simulated kernel's public uAPI.
 * Open a userfaultfd, register ranges, receive faults and non-cooperative events as typed
 * events, and resolve them with race-safe resolvers named after the ioctls.
 *
 * @module @uffd/sdk
 */

/* The handler */
export { Userfaultfd } from "./userfaultfd.ts";
export { DEFAULT_DEADLINE_WALL_MS } from "./userfaultfd.ts";
export type { OpenOptions, AdoptOptions, HandlerOptions, RegisterOptions, Registration, RangeOpOptions, RangeResult, WakeOptions, UffdEvent } from "./userfaultfd.ts";
export type { FailurePolicy } from "./context.ts";

/* Faults and events */
export type { Fault, FaultKind, CopyOptions } from "./types.ts";
export type { UffdEvents, UffdEventName, UffdEventSubscriber, UffdTypedEmitter } from "./userfaultfd.ts";
export type { RemapEvent, RangeEvent } from "./events.ts";
export type { RegisteredRange } from "./ranges.ts";

/* Features and modes */
export { FEATURES, MODES, DEFAULT_OPTIONAL_FEATURES } from "./features.ts";
export type { FeatureName, RegisterMode } from "./features.ts";

/* Errors */
export { UffdError, FeatureUnavailableError, ModeUnavailableError, HandlerError } from "./errors.ts";
export type { UffdErrorReason } from "./errors.ts";

/* Page sources, serving and background fills */
export { BufferSource, MemfdSource, RemoteSource } from "./page-source.ts";
export type { PageSource, RemoteSourceOptions } from "./page-source.ts";
export { BackgroundFill } from "./serve.ts";
export type { ServeOptions, FillOptions, FillStats } from "./serve.ts";
export { DirtyTracker } from "./dirty.ts";
export type { Fallback } from "./context.ts";
export type { DirtyTrackerOptions } from "./dirty.ts";

/* Metrics and tracing */
export { Metrics, Histogram, TRACE_EVENTS_MAX } from "./metrics.ts";
export type { MetricsSnapshot, HistogramSnapshot, Resolution, InstallKind, ChromeTrace, TraceEvent } from "./metrics.ts";
