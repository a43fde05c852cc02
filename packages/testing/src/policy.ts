/**
 * The explorer's preemption policy: the kernel asks it, at every scheduling point, whether the
 * running task yields, and, when the CPU is free, which yielded task resumes. Decisions come
 * from the seed (Prng) and are logged per actor, so a run can be replayed against a
 * changed handler: the replay follows the log by actor label and position, and falls back to
 * the seed where the changed run asks a question the recorded one never did.
 */
import type { Preemption, SchedPoint } from "@uffd/kernel";
import { Prng } from "@uffd/kernel";

/** The scheduling decisions of a run, keyed by actor label (thread names, process syscall labels). */
export interface Decisions {
  /** Per actor: one character per scheduling point it reached, "1" = preempted there, "0" = ran on. */
  preempt: Record<string, string>;
  /** Each choice among two or more ready tasks: "label#k", the k-th ready entry with that label. */
  pick: string[];
}

/** The kernel's preemption policy under explore(): seeded decisions, recorded per actor so that a run can be replayed. */
export class ExplorePolicy implements Preemption {
  /** The probability that a task yields at a scheduling point. */
  readonly probability: number;
  /** The decisions taken so far. */
  readonly decisions: Decisions = { preempt: {}, pick: [] };
  /** Names a task id; set once the kernel's recorder exists. */
  label: (tid: number) => string = tidLabel;
  readonly #rng: Prng;
  readonly #replay: Decisions | null;
  #picks = 0;

  constructor(seed: number, probability: number, replay: Decisions | null = null) {
    this.probability = probability;
    this.#rng = new Prng((seed ^ 0x5eed_0b5e) >>> 0);
    this.#replay = replay;
  }

  preempt(tid: number, _point: SchedPoint): boolean {
    const who = this.label(tid);
    const log = this.decisions.preempt[who] ?? "";
    const recorded = this.#replay?.preempt[who];
    const yes = recorded !== undefined && log.length < recorded.length ? recorded[log.length] === "1" : this.#rng.chance(this.probability);
    this.decisions.preempt[who] = log + (yes ? "1" : "0");
    return yes;
  }

  pick(ready: readonly number[]): number {
    if (this.#replay === null) {
      // No replay: the seed picks, and only the chosen entry's key is needed.
      const i = this.#rng.below(ready.length);
      const who = this.label(ready[i]!);
      let k = 0;
      for (let j = 0; j < i; j++) if (this.label(ready[j]!) === who) k++;
      this.#picks++;
      this.decisions.pick.push(`${who}#${k}`);
      return i;
    }
    const seen = new Map<string, number>();
    const keys = ready.map((tid) => {
      const who = this.label(tid);
      const k = seen.get(who) ?? 0;
      seen.set(who, k + 1);
      return `${who}#${k}`;
    });
    const recorded = this.#replay?.pick[this.#picks++];
    let i = recorded === undefined ? -1 : keys.indexOf(recorded);
    if (i < 0) i = this.#rng.below(ready.length);
    this.decisions.pick.push(keys[i]!);
    return i;
  }
}

function tidLabel(tid: number): string {
  return `tid${tid}`;
}

/** The preemption probabilities "varied" chooses from, per seed: no preemption at all, light, heavy. */
export const VARIED_PROBABILITIES = [0, 0.1, 0.25, 0.5] as const;

/** The probability a seed explores with. */
export function probabilityFor(seed: number, preemption: number | "varied"): number {
  if (preemption !== "varied") return preemption;
  return VARIED_PROBABILITIES[new Prng(seed).below(VARIED_PROBABILITIES.length)]!;
}
