/**
 * The kernel's preemption (KernelOptions.preemption), which explore() drives: off by default,
 * deterministic when on (same seed + same calls = same run), and never leaves kernel.idle()
 * early while a preempted thread waits to run.
 */
import { describe, expect, it } from "vitest";
import { Kernel, type Preemption, type SchedEvent } from "@uffd/kernel";
import { MAP_ANONYMOUS, MAP_PRIVATE } from "@uffd/kernel/uapi";
import { PAGE_SIZE, RW } from "./helpers.ts";

/** Three threads each store one byte into each of 8 pages; returns the order of the stores as seen by the scheduler. */
async function race(k: Kernel): Promise<string[]> {
  const p = k.spawn({ name: "app" });
  const a = await p.mmap(0, 8 * PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS);
  const log: string[] = [];
  const threads = ["a", "b", "c"].map((n) => p.spawnThread(n));
  const prev = k.sched.observer;
  k.sched.observer = (e: SchedEvent) => {
    prev?.(e);
    if (e.kind === "preempt" || e.kind === "resume") log.push(`${e.kind}:${e.tid}`);
  };
  await Promise.all(
    threads.map(async (t, i) => {
      for (let pg = 0; pg < 8; pg++) {
        await t.write(a + pg * PAGE_SIZE + i, Uint8Array.of(i + 1));
        log.push(`${t.name}${pg}`);
      }
    }),
  );
  await k.idle();
  expect(Array.from(await p.mainThread.read(a + 7 * PAGE_SIZE, 3))).toEqual([1, 2, 3]);
  k.checkInvariants();
  return log;
}

describe("KernelOptions.preemption", () => {
  it("is off by default: no scheduling point preempts, threads run until they block", async () => {
    const k = new Kernel({ seed: 7 });
    expect(k.options.preemption).toBe(0);
    expect(k.sched.preemption).toBeNull();
    expect(k.schedPoint(1)).toBeNull();
    const log = await race(k);
    expect(log.some((l) => l.startsWith("preempt"))).toBe(false);
  });

  it("same seed, same calls: the same interleaving, decision for decision", async () => {
    const a = await race(new Kernel({ seed: 42, preemption: 0.4 }));
    const b = await race(new Kernel({ seed: 42, preemption: 0.4 }));
    expect(a).toEqual(b);
    expect(a.filter((l) => l.startsWith("preempt")).length).toBeGreaterThan(0);
  });

  it("different seeds give different interleavings", async () => {
    const runs = new Set<string>();
    for (let seed = 1; seed <= 8; seed++) runs.add((await race(new Kernel({ seed, preemption: 0.4 }))).join(","));
    expect(runs.size).toBeGreaterThan(4);
  });

  it("a policy decides every point and every pick: always preempt, resume the newest (LIFO)", async () => {
    const points: string[] = [];
    const lifo: Preemption = {
      preempt: (_tid, point) => (points.push(point), true),
      pick: (ready) => ready.length - 1,
    };
    const k = new Kernel({ preemption: lifo });
    await race(k);
    expect(new Set(points)).toEqual(new Set(["access"]));
    // A point before each page access: 24 stores, plus the retry after each of the 8 first-touch
    // faults (the three threads share the pages), plus the final load.
    expect(points.length).toBe(24 + 8 + 1);
  });

  it("kernel.idle() does not resolve while a preempted thread waits to run", async () => {
    const k = new Kernel({ preemption: { preempt: () => true, pick: () => 0 } });
    const p = k.spawn();
    const a = await p.mmap(0, 4 * PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    let done = false;
    void p.mainThread.write(a, new Uint8Array(4 * PAGE_SIZE)).then(() => (done = true));
    await k.idle();
    expect(done).toBe(true);
    k.checkInvariants();
  });

  it("a thread preempted when its process exits stops there (the access rejects)", async () => {
    const k = new Kernel({ preemption: 1 });
    const p = k.spawn();
    const a = await p.mmap(0, PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    const w = p.mainThread.write(a, Uint8Array.of(1));
    await p.exit(0);
    await expect(w).rejects.toMatchObject({ name: "DeadTaskError" });
    await k.idle();
    k.checkInvariants();
  });

  it("rejects a probability outside [0, 1]", () => {
    expect(() => new Kernel({ preemption: 1.5 })).toThrow(RangeError);
    expect(() => new Kernel({ preemption: Number.NaN })).toThrow(RangeError);
  });
});
