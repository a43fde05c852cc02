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
 *
 * Preemption (KernelOptions.preemption, off by default): a thread may be preempted at a
 * scheduling point (before each page access, after a userfault wake, or where outside code
 * asks with Kernel.schedPoint()). A preempted thread joins the ready list; once every other
 * runnable continuation has run (one macrotask later), the policy picks which ready thread
 * resumes, one per macrotask, as on a single CPU. Both choices come from the policy (seeded),
 * so a run still replays exactly. With preemption off no scheduling point costs anything.
 */
import type { Prng } from "../lib/prng.ts";

/** Costs charged to the virtual clock, in ns. Rough figures of a 2020s x86 machine. */
export const COST = {
  syscall: 100,
  fault: 250,
  pageCopy: 250,
  userfaultRoundTrip: 2000,
} as const;

/** Where a thread may be preempted: before a page access, after a userfault wake, or at Kernel.schedPoint(). */
export type SchedPoint = "access" | "wake" | "user";

/**
 * A preemption policy: at each scheduling point, whether the running task yields; when the CPU
 * is free, which of the yielded tasks (tids, in the order they yielded) resumes (an index).
 * Must be deterministic (seeded), or runs stop replaying.
 */
export interface Preemption {
  /** Whether task `tid` yields the CPU at this scheduling point. */
  preempt(tid: number, point: SchedPoint): boolean;
  /** The index in `ready` of the task that runs next. */
  pick(ready: readonly number[]): number;
}

/** What Scheduler.observer is told: scheduling decisions, userfault sleeps and wakes, at virtual time `now`. */
export type SchedEvent =
  | {
      /** Task `tid` yielded at a scheduling point. */
      kind: "preempt";
      /** The task. */
      tid: number;
      /** Where it yielded. */
      point: SchedPoint;
      /** Virtual time in ns. */
      now: number;
    }
  | {
      /** Task `tid` got the CPU back. */
      kind: "resume";
      /** The task. */
      tid: number;
      /** Virtual time in ns. */
      now: number;
    }
  | {
      /** Task `tid` fell asleep on a userfault. */
      kind: "block";
      /** The task. */
      tid: number;
      /** The faulting address. */
      address: number;
      /** Whether the access was a write. */
      write: boolean;
      /** Whether the access came from user mode (not a kernel copy on behalf of a syscall). */
      user: boolean;
      /** Virtual time in ns. */
      now: number;
    }
  | {
      /** Task `tid` was woken from a userfault. */
      kind: "wake";
      /** The task. */
      tid: number;
      /** The address it slept on. */
      address: number;
      /** Virtual time in ns. */
      now: number;
    };

/** The built-in policy of KernelOptions.preemption = p: each point yields with probability p; uniform pick. */
export function seededPreemption(prng: Prng, probability: number): Preemption {
  const threshold = probability * 0x1_0000_0000;
  return {
    preempt: () => prng.nextU32() < threshold,
    pick: (ready) => prng.below(ready.length),
  };
}

/**
 * What a sleeper that needs no promise of its own does when woken: a blocked user access
 * continues in the scheduler's next resume batch (woken(): Scheduler.resumeLater()), or at once
 * (resume(): Scheduler.resumeNow()).
 */
export interface Resumable {
  woken(): void;
  /** Continues the sleeper now (Scheduler.resumeNow()); must not throw. */
  resume(): void;
}

/**
 * The resolving functions of the promise pendingPromise() made last: read them right after the
 * call (the next call replaces them).
 */
export const settlers: { resolve: (value: never) => void; reject: (error: unknown) => void } = {
  resolve: () => {},
  reject: () => {},
};

function captureSettlers(resolve: (value: never) => void, reject: (error: unknown) => void): void {
  settlers.resolve = resolve;
  settlers.reject = reject;
}

/**
 * A new pending promise whose resolving functions are left in `settlers`: one shared executor
 * instead of a closure per promise (a blocked access or read makes one per sleep).
 */
export function pendingPromise<T>(): Promise<T> {
  return new Promise<T>(captureSettlers);
}

/**
 * One wait. Whoever sleeps either awaits `promise` (made on first use) or sets `resumable`;
 * wake() settles both, once.
 */
export class Waiter {
  #promise: Promise<void> | null = null;
  #resolve: (() => void) | null = null;
  woken = false;
  /** Its index in the Sleepers set holding it, or -1 (owned by Sleepers). */
  sleeperSlot = -1;
  /** Told by wake() instead of a promise (set by the sleeper right after it queued this waiter). */
  resumable: Resumable | null = null;

  get promise(): Promise<void> {
    if (this.#promise === null) {
      this.#promise = this.woken
        ? RESOLVED
        : new Promise<void>((resolve) => {
            this.#resolve = resolve;
          });
    }
    return this.#promise;
  }

  wake(): void {
    if (this.woken) return;
    this.woken = true;
    this.#resolve?.();
    this.resumable?.woken();
  }

  /**
   * Called by a resumable sleeper once it is back from this wait (its wake consumed, off every
   * list): a waiter that is reused may go back to its pool. Nothing by default.
   */
  done(): void {}

  /** Makes a woken, unlisted waiter new again (for reuse). */
  protected reset(): void {
    this.#promise = null;
    this.#resolve = null;
    this.woken = false;
    this.sleeperSlot = -1;
    this.resumable = null;
  }

  /**
   * wake() by a waker after which the sleeper may run on the spot (Scheduler.resumeNow()): a
   * resumable sleeper continues before this returns; one awaiting the promise, as with wake().
   */
  wakeNow(sched: Scheduler): void {
    if (this.woken) return;
    this.woken = true;
    this.#resolve?.();
    const r = this.resumable;
    if (r !== null) sched.resumeNow(r);
  }
}

const RESOLVED: Promise<void> = Promise.resolve();

/**
 * The waits one process must end when it dies (a blocked access, a blocked read): O(1) add and
 * delete without allocating (a Set of short-lived entries reallocates its table as it empties).
 * A waiter is in at most one Sleepers at a time.
 */
export class Sleepers {
  readonly #list: Waiter[] = [];

  get size(): number {
    return this.#list.length;
  }

  add(w: Waiter): void {
    if (w.sleeperSlot >= 0) return;
    w.sleeperSlot = this.#list.length;
    this.#list.push(w);
  }

  delete(w: Waiter): void {
    const i = w.sleeperSlot;
    if (i < 0 || this.#list[i] !== w) return;
    const last = this.#list.pop() as Waiter;
    if (last !== w) {
      this.#list[i] = last;
      last.sleeperSlot = i;
    }
    w.sleeperSlot = -1;
  }

  /** Wakes and forgets every waiter, in the order they went to sleep (for a given set of adds and deletes). */
  wakeAll(): void {
    const list = this.#list.splice(0);
    for (const w of list) {
      w.sleeperSlot = -1;
      w.wake();
    }
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
  /** The preemption policy (KernelOptions.preemption); null: threads run until they block. */
  readonly preemption: Preemption | null;
  /** Told about scheduling decisions, userfault sleeps and wakes (a test kit's recorder). Null by default. */
  observer: ((e: SchedEvent) => void) | null = null;
  /** Virtual time in ns. */
  now = 0;
  #seq = 0;
  #timers: Timer[] = [];
  /** Bumped by every kernel operation; quiescence = unchanged across one macrotask. */
  #activity = 0;
  #checkScheduled = false;
  /** Preempted tasks, in the order they yielded. */
  readonly #ready: Array<{ tid: number; resume: () => void }> = [];
  #dispatchScheduled = false;
  /** The first error the caller's preemption policy made since the last idle() (see #policyPick()). */
  #policyError: Error | null = null;
  /** Woken sleepers to resume in the next batch (resumeLater()). */
  readonly #resumes: Array<{ resume(): void }> = [];
  #resumesScheduled = false;
  readonly #runResumes = (): void => this.#drainResumes();

  constructor(prng: Prng, preemption: Preemption | null = null) {
    this.prng = prng;
    this.preemption = preemption;
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

  /** wakeAll() with Waiter.wakeNow(): the resumable sleepers continue in the seeded order, before this returns. */
  wakeAllNow(waiters: Waiter[]): void {
    if (waiters.length > 1) this.prng.shuffle(waiters);
    for (let i = 0; i < waiters.length; i++) (waiters[i] as Waiter).wakeNow(this);
    this.#activity++;
  }

  /**
   * A woken sleeper whose waker lets it run at once (a thread woken by a UFFDIO_COPY runs
   * while the handler's ioctl returns, as on another CPU): r.resume() now. With preemption the
   * policy decides when it runs, so it goes to the resume batch (resumeLater()) as any wake.
   */
  resumeNow(r: { resume(): void; woken(): void }): void {
    this.#activity++;
    if (this.preemption !== null) r.woken();
    else r.resume();
  }

  /**
   * Calls r.resume() in a microtask, after the sleepers woken before it, as each would resume in
   * its own promise reaction; the wakes of one synchronous stretch (a release or an exit waking
   * many faults, every wake under preemption) share one microtask. resume() must not throw.
   */
  resumeLater(r: { resume(): void }): void {
    this.#resumes.push(r);
    if (this.#resumesScheduled) return;
    this.#resumesScheduled = true;
    void RESOLVED.then(this.#runResumes);
  }

  #drainResumes(): void {
    this.#resumesScheduled = false;
    const q = this.#resumes;
    // Those woken while this batch runs wait for the next one, like reactions queued meanwhile.
    const n = q.length;
    this.#activity++;
    for (let i = 0; i < n; i++) (q[i] as { resume(): void }).resume();
    // Drop the first n without splice()'s result array.
    if (q.length === n) while (q.length > 0) q.pop();
    else {
      for (let i = n; i < q.length; i++) q[i - n] = q[i]!;
      for (let i = 0; i < n; i++) q.pop();
    }
    if (q.length > 0 && !this.#resumesScheduled) {
      this.#resumesScheduled = true;
      void RESOLVED.then(this.#runResumes);
    }
  }

  /**
   * A scheduling point of task `tid`: null when it keeps running (always, with preemption off),
   * else a promise that resolves when the policy picks it to resume.
   */
  schedPoint(tid: number, point: SchedPoint): Promise<void> | null {
    const policy = this.preemption;
    if (policy === null || !policy.preempt(tid, point)) return null;
    this.#activity++;
    this.observer?.({ kind: "preempt", tid, point, now: this.now });
    return new Promise<void>((resume) => {
      this.#ready.push({ tid, resume });
      this.#scheduleDispatch();
    });
  }

  #scheduleDispatch(): void {
    if (this.#dispatchScheduled) return;
    this.#dispatchScheduled = true;
    setImmediate(() => this.#dispatch());
  }

  /** The CPU is free (every other continuation ran): the policy picks one ready task to resume. */
  #dispatch(): void {
    this.#dispatchScheduled = false;
    const ready = this.#ready;
    if (ready.length === 0) return;
    const i = ready.length === 1 ? 0 : this.#policyPick(ready.map((r) => r.tid));
    const [r] = ready.splice(i, 1);
    this.#activity++;
    this.observer?.({ kind: "resume", tid: r!.tid, now: this.now });
    r!.resume();
    if (ready.length > 0) this.#scheduleDispatch();
  }

  /**
   * The policy's pick among the ready tasks. A policy is the caller's code, and this runs from a
   * macrotask where a throw would end the process: a pick that throws or is no index of `tids` is
   * kept as the caller's error (a plain Error, not a broken kernel invariant), the first ready task
   * resumes instead, and the next idle() rejects with that error.
   */
  #policyPick(tids: number[]): number {
    let i: unknown;
    try {
      i = (this.preemption as Preemption).pick(tids);
    } catch (e) {
      this.#policyError ??= new Error(`KernelOptions.preemption: the policy threw: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      return 0;
    }
    if (typeof i === "number" && Number.isInteger(i) && i >= 0 && i < tids.length) return i;
    this.#policyError ??= new Error(`KernelOptions.preemption: the policy picked ${String(i)} of ${tids.length} ready tasks`);
    return 0;
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
      if (this.#activity === seen && this.#ready.length === 0) {
        const t = this.#timers[0] as Timer;
        this.now = Math.max(this.now, t.deadline);
        this.#fireDue();
      }
      if (this.#timers.length > 0) this.#scheduleQuiescenceCheck();
    });
  }

  /** Hands the caller the error its preemption policy made (see #policyPick()), once. */
  #throwPolicyError(): void {
    const e = this.#policyError;
    if (e === null) return;
    this.#policyError = null;
    throw e;
  }

  /**
   * Resolves once every simulated thread is blocked or finished and no kernel work is queued:
   * nothing ran during one full macrotask turn and no timer is pending.
   *
   * Livelock detection scales with legitimate work: only turns that were busy without any
   * `progress` (pages accessed, pages filled) count against `stepsMax`, so a long populate or a
   * gigabyte read under preemption runs as long as it needs, while threads that fault, sleep and
   * wake forever without a page ever arriving are reported. The report is a plain Error (a
   * livelock is the caller's handler's doing, not a broken kernel invariant). A preemption policy
   * that threw or picked no ready task makes it reject with that error.
   */
  async idle(stepsMax = 100_000): Promise<void> {
    let idleTurns = 0;
    while (idleTurns < stepsMax) {
      this.#throwPolicyError();
      const seen = this.#activity;
      const progress = this.progress;
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (this.#activity !== seen || this.#ready.length > 0) {
        idleTurns = this.progress !== progress ? 0 : idleTurns + 1;
        continue;
      }
      idleTurns = 0;
      if (this.#timers.length === 0) return this.#throwPolicyError();
      const t = this.#timers[0] as Timer;
      this.now = Math.max(this.now, t.deadline);
      this.#fireDue();
    }
    throw new Error(`kernel.idle(): busy for ${stepsMax} turns without a page accessed or filled (a livelock?)`);
  }

  /**
   * Bumped by work that moves a simulated thread forward: a page access or a stretch of them
   * completed (kernel/access.ts:walkStep()), a userfaultfd fill that installed pages. idle()
   * reads it to tell a long run of legitimate work from a livelock.
   */
  progress = 0;
}
