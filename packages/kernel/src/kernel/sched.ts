/**
 * Blocking, waking and virtual time.
 *
 * A simulated thread that must sleep awaits a Waiter's promise; whoever wakes it resolves the
 * promise. When one wake releases several waiters, their order comes from the kernel's PRNG
 * (the seed decides which blocked thread resumes first), so a run replays exactly from its seed.
 *
 * Virtual time (`now`, in nanoseconds) advances by a fixed cost per kernel operation and jumps
 * to the next timer deadline when nothing else can run. Timers (poll timeouts) fire only
 * through this clock; there are no real timers. Quiescence is observed by yielding one
 * macrotask (setImmediate) so that every microtask-driven continuation has run first.
 */
import { BUG_ON } from "../lib/assert.ts";
import type { Prng } from "../lib/prng.ts";

/** Costs charged to the virtual clock, in ns. Rough figures of a 2020s x86 machine. */
export const COST = {
  syscall: 100,
  fault: 250,
  pageCopy: 250,
  userfaultRoundTrip: 2000,
} as const;

export class Waiter {
  readonly promise: Promise<void>;
  #resolve!: () => void;
  woken = false;

  constructor() {
    this.promise = new Promise<void>((resolve) => {
      this.#resolve = resolve;
    });
  }

  wake(): void {
    if (this.woken) return;
    this.woken = true;
    this.#resolve();
  }
}

/** A wait queue head: waiters with a key, woken by predicate in seeded order. */
export class WaitQueue<K> {
  readonly #entries: Array<{ key: K; waiter: Waiter; seq: number }> = [];
  readonly #sched: Scheduler;

  constructor(sched: Scheduler) {
    this.#sched = sched;
  }

  get size(): number {
    return this.#entries.length;
  }

  add(key: K): Waiter {
    const waiter = new Waiter();
    this.#entries.push({ key, waiter, seq: this.#sched.nextSeq() });
    return waiter;
  }

  keys(): K[] {
    return this.#entries.map((e) => e.key);
  }

  /** Wakes (and removes) every waiter whose key matches; returns how many. */
  wake(match: (key: K) => boolean): number {
    const woken: Waiter[] = [];
    for (let i = 0; i < this.#entries.length; ) {
      const e = this.#entries[i]!;
      if (match(e.key)) {
        woken.push(e.waiter);
        this.#entries.splice(i, 1);
      } else {
        i++;
      }
    }
    this.#sched.wakeAll(woken);
    return woken.length;
  }

  wakeAllEntries(): number {
    return this.wake(() => true);
  }

  remove(waiter: Waiter): void {
    const i = this.#entries.findIndex((e) => e.waiter === waiter);
    if (i >= 0) this.#entries.splice(i, 1);
  }
}

interface Timer {
  deadline: number;
  seq: number;
  fire: () => void;
}

export class Scheduler {
  readonly prng: Prng;
  /** Virtual time in ns. */
  now = 0;
  #seq = 0;
  #timers: Timer[] = [];
  /** Bumped by every kernel operation; quiescence = unchanged across one macrotask. */
  #activity = 0;
  #checkScheduled = false;

  constructor(prng: Prng) {
    this.prng = prng;
  }

  nextSeq(): number {
    return ++this.#seq;
  }

  /** Charges virtual time for kernel work and records activity. */
  charge(ns: number): void {
    this.now += ns;
    this.#activity++;
    if (this.#timers.length > 0 && (this.#timers[0] as Timer).deadline <= this.now) this.#fireDue();
  }

  /** Wakes several waiters in an order drawn from the seed. */
  wakeAll(waiters: Waiter[]): void {
    if (waiters.length > 1) this.prng.shuffle(waiters);
    for (const w of waiters) w.wake();
    this.#activity++;
  }

  /** Calls fire() once virtual time reaches now + ns. Returns a cancel function. */
  addTimer(ns: number, fire: () => void): () => void {
    const t: Timer = { deadline: this.now + ns, seq: this.nextSeq(), fire };
    this.#timers.push(t);
    this.#timers.sort((a, b) => a.deadline - b.deadline || a.seq - b.seq);
    this.#scheduleQuiescenceCheck();
    return () => {
      const i = this.#timers.indexOf(t);
      if (i >= 0) this.#timers.splice(i, 1);
    };
  }

  #fireDue(): void {
    while (this.#timers.length > 0 && (this.#timers[0] as Timer).deadline <= this.now) {
      const t = this.#timers.shift() as Timer;
      t.fire();
    }
  }

  /** With nothing else able to run, time jumps to the next deadline. */
  #scheduleQuiescenceCheck(): void {
    if (this.#checkScheduled) return;
    this.#checkScheduled = true;
    const seen = this.#activity;
    setImmediate(() => {
      this.#checkScheduled = false;
      if (this.#timers.length === 0) return;
      if (this.#activity === seen) {
        const t = this.#timers[0] as Timer;
        this.now = Math.max(this.now, t.deadline);
        this.#fireDue();
      }
      if (this.#timers.length > 0) this.#scheduleQuiescenceCheck();
    });
  }

  /**
   * Resolves once every simulated thread is blocked or finished and no kernel work is queued:
   * nothing ran during one full macrotask turn and no timer is pending.
   */
  async idle(stepsMax = 100_000): Promise<void> {
    for (let steps = 0; steps < stepsMax; steps++) {
      const seen = this.#activity;
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (this.#activity !== seen) continue;
      if (this.#timers.length === 0) return;
      const t = this.#timers[0] as Timer;
      this.now = Math.max(this.now, t.deadline);
      this.#fireDue();
    }
    BUG_ON(true, `kernel.idle(): still busy after ${stepsMax} turns (a livelock?)`);
  }
}
