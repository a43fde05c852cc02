/** Entry "@uffd/conformance": the differential conformance engine. */
export { parseScenario, formatScenario, formatStep, ScenarioError, VERBS, type Scenario, type Step } from "./scenario.ts";
export { Driver, ADVICE, FEATURES, type StepRecord, type Norm } from "./driver.ts";
export { SimBackend, type SimOptions } from "./sim.ts";
export { NativeBackend, probeHost, hostFacts, compileRunner, type HostInfo, type HostProbe } from "./native.ts";
export { compareRecords, describe, type Comparison, type Divergence, type CompareOptions } from "./compare.ts";
export { Conformance, type CheckResult } from "./conform.ts";
export type { Backend, RawResult, PmEntry, ExecReply } from "./backend.ts";
