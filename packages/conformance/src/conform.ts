/**
 * One scenario, two executions, one comparison.
 *
 *   const c = await Conformance.start();          // compiles and starts the native runner
 *   const out = await c.check(parseScenario(text));
 *   out.comparison.status                           // "agree" | "diverge" | "quirk"
 *   await c.close();
 */
import { compareRecords, type Comparison } from "./compare.ts";
import { Driver, type StepRecord, worldOf } from "./driver.ts";
import { ForeignSwapError, type HostInfo, NativeBackend, NoSwapError, probeHost } from "./native.ts";
import { PIN_VERBS, type Scenario } from "./scenario.ts";
import { KNOWN_DIVERGENCES } from "./known.ts";
import { SimBackend, type SimOptions } from "./sim.ts";

/** A scenario run on both sides, and the verdict. */
export interface CheckResult {
  /** The scenario. */
  scenario: Scenario;
  /** The real kernel's records. */
  native: StepRecord[];
  /** The simulation's records. */
  sim: StepRecord[];
  /** The verdict. */
  comparison: Comparison;
}

/** Runs scenarios on the real kernel and on the simulation and compares them step by step. */
export class Conformance {
  /** What the native runner reported about the host. */
  readonly host: HostInfo;
  readonly #native: NativeBackend;
  readonly #nativeDriver: Driver;
  readonly #simOptions: SimOptions;

  private constructor(native: NativeBackend, host: HostInfo, simOptions: SimOptions) {
    this.#native = native;
    this.host = host;
    this.#nativeDriver = new Driver(native);
    this.#simOptions = simOptions;
  }

  /**
   * Throws with the one-line reason when the host cannot answer (see probeHost()), and
   * ForeignSwapError when a swap device the harness did not set up is active.
   */
  static async start(simOptions: SimOptions = {}): Promise<Conformance> {
    const probe = probeHost();
    if (!probe.ok) throw new Error(probe.reason);
    const native = new NativeBackend();
    const host = await native.start();
    if (host.swaps.length > 0) {
      await native.close();
      throw new ForeignSwapError(host.swaps);
    }
    return new Conformance(native, host, simOptions);
  }

  /** The simulated records alone (no host needed). */
  static async simulate(scenario: Scenario, simOptions: SimOptions = {}): Promise<StepRecord[]> {
    const sim = new SimBackend(simOptions);
    const records = await new Driver(sim).run(scenario);
    sim.kernel.checkInvariants();
    return records;
  }

  /**
   * Runs `scenario` on both sides and compares. Fields masked for known divergences (known.ts)
   * are not compared, except in a scenario that names that divergence in `# expect:`.
   */
  async check(scenario: Scenario, options: { unmasked?: boolean } = {}): Promise<CheckResult> {
    let native: StepRecord[];
    try {
      native = await this.#nativeDriver.run(scenario);
    } catch (e) {
      // Later swap scenarios are skipped with the reason (cannot()); this one throws it.
      if (e instanceof NoSwapError) this.#noSwap = e.message;
      throw e;
    }
    const sim = await Conformance.simulate(scenario, this.#simOptions);
    const expect = scenario.meta["expect"] ?? "";
    const mask = new Set<"dirty">();
    if (options.unmasked !== true) {
      for (const k of KNOWN_DIVERGENCES) if (k.mask !== undefined && !expect.includes(k.id)) mask.add(k.mask);
    }
    const comparison = compareRecords(native, sim, { pvmNoZeroPage: !this.host.readFaultMapsZeroPage, mask });
    return { scenario, native, sim, comparison };
  }

  /**
   * Why this host cannot answer `scenario`, or null: pin steps need io_uring (the runner's
   * io_uring_setup(2) probe). The caller skips the scenario and says why.
   */
  cannot(scenario: Scenario): string | null {
    if (this.host.ioUringUnavailable !== null && scenario.steps.some((s) => PIN_VERBS.has(s.verb))) return `io_uring fixed-buffer pins: ${this.host.ioUringUnavailable}`;
    const host = scenario.meta["host"];
    if (host !== undefined) return `the host does not answer here: ${host}`;
    if (worldOf(scenario).swap === true) {
      if (!this.host.zram) return "swap: this kernel has no zram (/sys/class/zram-control is missing)";
      if (this.#noSwap !== null) return `swap: ${this.#noSwap}`;
    }
    return null;
  }

  /** Why the runner could not set up its zram device, once it has failed to. */
  #noSwap: string | null = null;

  /** Whether scenarios with `# swap: zram` can run here (so far). */
  get swapAvailable(): boolean {
    return this.host.zram && this.#noSwap === null;
  }

  /** Stops the native runner (which turns its swap off and removes its zram device first). */
  async close(): Promise<void> {
    await this.#native.close();
  }

  /**
   * /proc/swaps after close(), read while no runner may have swap on: empty unless a swap device
   * the harness did not make is active (or its own could not be removed). Null before close().
   */
  get swapsAtEnd(): readonly string[] | null {
    return this.#native.swapsAtEnd;
  }
}
