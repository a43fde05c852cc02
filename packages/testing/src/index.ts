/**
 * What a handler author imports into vitest to find the bugs real handlers ship
 * with: seeded interleavings (explore), fault injection at the uAPI boundary (injectFaults),
 * matchers and text snapshots, and record / replay / diff of runs.
 *
 * @module @uffd/testing
 */

/* Exploring interleavings */
export { explore, runSeed, World, ExploreError, SEED_ENV, SHARD_ENV, RELEASE_ENV, scenarioRef, loadScenario, parseShard } from "./explore.ts";
export type { Scenario, ScenarioRef, RunOptions, ExploreOptions, ExploreResult, RunResult, RecordedRun } from "./explore.ts";
export { ExplorePolicy, VARIED_PROBABILITIES, probabilityFor } from "./policy.ts";
export type { Decisions } from "./policy.ts";

/* Every test on every release */
export { describeReleases, selectedReleases, reproduceRelease, releaseAtLeast } from "./releases.ts";
export type { DescribeReleasesOptions } from "./releases.ts";

/* Guests */
export { guest, GuestThread } from "./guest.ts";
export type { GuestOptions, GuestState, GuestExpectation } from "./guest.ts";

/* Fault injection */
export { inject, injectFaults, Injector } from "./inject.ts";
export type { Injection, InjectionRule, InjectOptions, InjectionRecord, ResolveOp } from "./inject.ts";

/* Tracing, record and replay */
export { instrument, instrumentThread, markUserfaultfd } from "./instrument.ts";
export type { Instrumented, IoctlCall, IoctlInterceptor } from "./instrument.ts";
export { Recorder, recorderOf, formatTrace, formatTime, describe as describeEvent } from "./trace.ts";
export type { TraceEvent, MsgName } from "./trace.ts";
export { replay, diffRuns, parseRun } from "./replay.ts";
export type { RunDiff, DiffOptions } from "./replay.ts";
export { analyzeFaults } from "./faults.ts";
export type { FaultResolutionOptions, FaultResolutionReport, LostFault, DuplicateResolve } from "./faults.ts";

/* Inspection and matchers */
export { peekMemory, pagemapText, smapsText, pagemapFlags } from "./inspect.ts";
export type { PeekResult } from "./inspect.ts";
export { uffdMatchers } from "./matchers.ts";
export type { UffdMatchers, PagemapExpectation } from "./matchers.ts";
