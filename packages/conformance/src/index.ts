/**
 * The differential conformance engine: scenarios run on the real Linux kernel (a C runner) and on
 * @uffd/kernel, compared step by step.
 *
 * @module @uffd/conformance
 */
export { parseScenario, formatScenario, formatStep, ScenarioError, VERBS, type Scenario, type Step } from "./scenario.ts";
export { Driver, ADVICE, FEATURES, worldOf, type StepRecord, type Norm } from "./driver.ts";
export { SimBackend, SIM_SWAP_PAGES, type SimOptions } from "./sim.ts";
export { NativeBackend, probeHost, hostFacts, compileRunner, ForeignSwapError, NoSwapError, type HostInfo, type HostProbe } from "./native.ts";
export { compareRecords, describe, type Comparison, type Divergence, type CompareOptions } from "./compare.ts";
export { Conformance, type CheckResult } from "./conform.ts";
export type { Backend, RawResult, PmEntry, ExecReply, World } from "./backend.ts";
