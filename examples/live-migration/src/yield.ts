/**
 * Cooperative scheduling inside one process: the guest threads, the migration loops and the
 * socket all share Node's event loop. A loop that only awaits already-settled promises never
 * lets timers or socket reads run, so a fault's page request (or the page answering it) would
 * wait behind a whole batch of background pages. Long loops call `tick()` and hand the loop over
 * once the turn's budget is used up.
 *
 * The budget is the process's, not each loop's: every loop that yields waits for the same next
 * turn (one setImmediate), and in that turn they share SLICE_MS between them. With a slice per
 * loop, a destination's iteration ran the install queue's slice and then each of the three guest
 * threads' in turn (2 ms and more before its sockets were read again: a median event-loop delay
 * of 3.1 to 3.5 ms in the hop traces of docs/benchmarks.md). So that no loop starves, each loop
 * does one unit of its work after every resume whatever the budget says, and the loops that found
 * the budget spent without having had any of it go first in the next turn.
 */

/**
 * The longest synchronous stretch the process's migration loops (the source's push, the
 * destination's install queue, the guest threads catching up) run between two looks at their
 * sockets and timers, in ms, together. A demand request or page that arrives meanwhile waits for
 * at most about this long, plus one unit of each loop's work (one run of pages, one guest access).
 */
export const SLICE_MS = 0.5;

/** The turn every yielding loop of the process waits for, and the budget they share in it. */
class TurnBudget {
  /** When the current turn's budget started (performance.now() ms). */
  #turnStart = -Infinity;
  /** Loops that had a share of the last budget: they resume after `#starved`. */
  #waiting: Array<() => void> = [];
  /** Loops that resumed, did their one unit and found the budget spent: they resume first. */
  #starved: Array<() => void> = [];
  #scheduled = false;

  spent(sliceMs: number): boolean {
    return performance.now() - this.#turnStart >= sliceMs;
  }

  /** Resolves at the next turn. `starved`: this loop had none of the budget in its last turn. */
  next(starved: boolean): Promise<void> {
    return new Promise<void>((resolve) => {
      (starved ? this.#starved : this.#waiting).push(resolve);
      if (this.#scheduled) return;
      this.#scheduled = true;
      setImmediate(this.#turn);
    });
  }

  readonly #turn = (): void => {
    this.#scheduled = false;
    this.#turnStart = performance.now();
    const order = this.#starved.length === 0 ? this.#waiting : [...this.#starved, ...this.#waiting];
    this.#starved = [];
    this.#waiting = [];
    for (const resolve of order) resolve();
  };
}

const budget = new TurnBudget();

/** One loop's view of the process's turn budget. */
export class TimeSlice {
  readonly #sliceMs: number;
  /** The next tick() lets one unit of work through (the loop just came back from a wait of its own). */
  #freeUnit = true;
  /** The loop did more than its free unit since it last resumed. */
  #hadBudget = false;

  constructor(sliceMs = SLICE_MS) {
    this.#sliceMs = sliceMs;
  }

  /** The loop just got its turn back from a wait of its own: its next unit runs whatever the budget. */
  restart(): void {
    this.#freeUnit = true;
    this.#hadBudget = false;
  }

  /** Resolves at once while the turn's budget lasts (or for the first unit after a resume), else at the next turn. */
  tick(): Promise<void> | undefined {
    if (this.#freeUnit) {
      this.#freeUnit = false;
      return undefined;
    }
    if (!budget.spent(this.#sliceMs)) {
      this.#hadBudget = true;
      return undefined;
    }
    const starved = !this.#hadBudget;
    // The unit this tick held back is the one the loop does when it resumes, whatever the budget.
    return budget.next(starved).then(() => {
      this.#hadBudget = false;
    });
  }
}
