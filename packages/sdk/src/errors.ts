/**
 * SDK errors. Kernel failures stay ErrnoError (match on `.code`); these are the SDK's own
 * verdicts, each with a `reason` to match on and a message that says what to do.
 */
import type { FeatureName, RegisterMode } from "./features.ts";

/**
 * Why the SDK failed: a feature or mode the kernel will not give, a permission, a listener that
 * threw or missed its deadline, a fault nobody handled, a resolve that could not make progress,
 * or a closed userfaultfd.
 */
export type UffdErrorReason =
  | "feature-unavailable"
  | "mode-unavailable"
  | "permission"
  | "handler-threw"
  | "handler-timeout"
  | "unhandled"
  | "livelock"
  | "closed";

/** The SDK's own errors (kernel failures stay ErrnoError). */
export class UffdError extends Error {
  /** Why, to match on. */
  readonly reason: UffdErrorReason;

  constructor(reason: UffdErrorReason, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "UffdError";
    this.reason = reason;
  }
}

/** A required feature is not offered by the kernel, or not to this caller. */
export class FeatureUnavailableError extends UffdError {
  /** The features that are missing. */
  readonly features: readonly FeatureName[];

  constructor(features: readonly FeatureName[], message: string, options?: { cause?: unknown }) {
    super("feature-unavailable", message, options);
    this.name = "FeatureUnavailableError";
    this.features = features;
  }
}

/** A register mode cannot be used on this memory (MINOR on private anon, any mode on a hole ...). */
export class ModeUnavailableError extends UffdError {
  /** The modes refused. */
  readonly modes: readonly RegisterMode[];

  constructor(modes: readonly RegisterMode[], message: string, options?: { cause?: unknown }) {
    super("mode-unavailable", message, options);
    this.name = "ModeUnavailableError";
    this.modes = modes;
  }
}

/** Why a fault went to the failure policy. */
export class HandlerError extends UffdError {
  /** The faulting page. */
  readonly address: number;

  constructor(reason: "handler-threw" | "handler-timeout" | "unhandled", address: number, message: string, options?: { cause?: unknown }) {
    super(reason, message, options);
    this.name = "HandlerError";
    this.address = address;
  }
}
