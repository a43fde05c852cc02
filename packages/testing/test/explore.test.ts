/**
 * explore() and runSeed(): how a seed fails (scenario, guest, check, invariants, lost and
 * duplicate faults), which seeds run, the report, and the reproduction by seed.
 */
import { afterEach, describe, expect, it } from "vitest";
import { decodeUffdMsgs, type Process } from "@uffd/kernel";
import {
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  UFFD_API,
  UFFD_EVENT_PAGEFAULT,
  UFFD_FEATURE_EVENT_UNMAP,
  UFFDIO_API,
  UFFDIO_COPY,
  UFFDIO_POISON,
  UFFDIO_REGISTER,
  UFFDIO_REGISTER_MODE_MISSING,
} from "@uffd/kernel/uapi";
import { explore, ExploreError, runSeed, SEED_ENV, type World } from "@uffd/testing";
import { prefetchScenario, registeredAnon } from "./handlers.ts";
import { naiveFailure, PAGE_SIZE, pageOf, RW } from "./helpers.ts";

/** A handler that answers every fault message with a COPY (no dedup, EEXIST ignored) or, with poison, UFFDIO_POISON. */
function copyEveryMessage(p: Process, uffd: number, how: "copy" | "poison" = "copy"): void {
  void (async () => {
    for (;;) {
      for (const m of decodeUffdMsgs(await p.read(uffd, 16 * 32))) {
        if (m.event !== UFFD_EVENT_PAGEFAULT) continue;
        const page = m.arg.pagefault.address - (m.arg.pagefault.address % PAGE_SIZE);
        if (how === "poison") await p.ioctl(uffd, UFFDIO_POISON, { range: { start: page, len: PAGE_SIZE }, mode: 0 });
        else await p.ioctl(uffd, UFFDIO_COPY, { dst: page, src: pageOf(1), len: PAGE_SIZE, mode: 0 }).catch(() => 0);
      }
    }
  })().catch(() => {});
}

/** Two threads read the same page of a 1-page registered range served by `copyEveryMessage`. */
function samePage(how: "copy" | "poison" = "copy", expectSignal = false) {
  return async (w: World): Promise<void> => {
    const app = w.spawn({ name: "app" });
    const { uffd, base } = await registeredAnon(app, 1);
    copyEveryMessage(app, uffd, how);
    for (const name of ["t1", "t2"]) w.guest(w.thread(app, name), (t) => t.read(base, 4), expectSignal ? { expect: "SIGBUS" } : {});
  };
}

afterEach(() => {
  delete process.env[SEED_ENV];
});

describe("explore: what fails a seed", () => {
  it("a passing exploration reports its seeds", async () => {
    const r = await explore(samePage(), { seeds: 20 });
    expect(r).toMatchObject({ ok: true, seedsRun: 20, failures: [], firstFailure: null });
    expect(r.report()).toBe("explore: 20 seeds passed (20 seeds 1..20)");
  });

  it("the scenario throwing", async () => {
    const r = await explore(() => {
      throw new Error("setup broke");
    }, { seeds: 3, throwOnFailure: false });
    expect(r.firstFailure?.problems).toEqual(["the scenario threw Error: setup broke"]);
  });

  it("a guest whose body throws, or that gets a signal it did not expect", async () => {
    const thrown = await runSeed(async (w) => {
      const app = w.spawn();
      const a = await app.mmap(0, PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS);
      w.guest(w.thread(app, "t1"), async (t) => {
        if ((await t.read(a, 1))[0] !== 7) throw new Error("expected 7");
      });
    }, 1);
    expect(thrown.problems).toEqual(["t1 did not complete: t1: threw Error: expected 7"]);
    const sig = await runSeed(samePage("poison"), 1);
    expect(sig.ok).toBe(false);
    expect(sig.problems[0]).toMatch(/^t1 did not complete: t1: SIGBUS at 0x[0-9a-f]+$/);
    expect((await runSeed(samePage("poison", true), 1)).ok).toBe(true); // { expect: "SIGBUS" }
  });

  it("a check that throws, and broken kernel invariants", async () => {
    const r = await runSeed(async (w) => {
      const app = w.spawn();
      const a = await app.mmap(0, PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS);
      await app.mainThread.write(a, Uint8Array.of(1));
      w.check(() => {
        throw new Error("not what I wanted");
      });
      const pfn = app.pagemap(a, 1)[0]!.pfn!;
      w.kernel.core.mem.refcount[pfn]! += 1; // a leaked reference, as a kernel bug would leave it
      w.check(() => {
        w.kernel.core.mem.refcount[pfn]! -= 1;
      });
    }, 1);
    expect(r.problems).toEqual(["check failed: Error: not what I wanted"]);
    const broken = await runSeed(async (w) => {
      const app = w.spawn();
      const a = await app.mmap(0, PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS);
      await app.mainThread.write(a, Uint8Array.of(1));
      w.kernel.core.mem.refcount[app.pagemap(a, 1)[0]!.pfn!]! += 1;
    }, 1);
    expect(broken.problems).toHaveLength(1);
    expect(broken.problems[0]).toMatch(/^kernel invariants: KernelBug: /);
  });

  it("a guest waiting in the kernel on something other than a userfault (munmap waiting for its UNMAP to be read)", async () => {
    const stuck = await runSeed(async (w) => {
      const app = w.spawn({ name: "app" });
      const base = await app.mmap(0, PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS);
      const uffd = await app.userfaultfd(0);
      await app.ioctl(uffd, UFFDIO_API, { api: UFFD_API, features: UFFD_FEATURE_EVENT_UNMAP });
      await app.ioctl(uffd, UFFDIO_REGISTER, { range: { start: base, len: PAGE_SIZE }, mode: UFFDIO_REGISTER_MODE_MISSING });
      w.guest(w.thread(app, "t1"), () => app.munmap(base, PAGE_SIZE)); // nobody reads the UNMAP event
    }, 1);
    expect(stuck.problems).toEqual(["t1 did not complete: t1: still running (waiting in the kernel, not on a userfault)"]);
  });

  it("resolvedOnce: a handler that copies once per message resolves a page twice when two threads fault on it", async () => {
    const r = await explore(samePage(), { seeds: 50, resolvedOnce: true, throwOnFailure: false });
    expect(r.ok).toBe(false);
    expect(r.firstFailure!.problems[0]).toMatch(
      /^page 0x[0-9a-f]+ resolved 2 times for one fault: app UFFDIO_COPY 0x[0-9a-f]+ \+4096 -> ok \(out 4096\) at [\d.]+µs; then app UFFDIO_COPY 0x[0-9a-f]+ \+4096 -> EEXIST \(out -17\) at [\d.]+µs$/,
    );
  });
});

describe("explore: which seeds, and reproducing one", () => {
  it("runs the listed seeds; stopOnFailure false collects every failing seed", async () => {
    const all = await explore(prefetchScenario(false), { seeds: 30, stopOnFailure: false, throwOnFailure: false });
    const bad = all.failures.map((f) => f.seed);
    const good = Array.from({ length: 30 }, (_, i) => i + 1).filter((s) => !bad.includes(s));
    expect(bad.length).toBeGreaterThanOrEqual(2);
    expect(good.length).toBeGreaterThanOrEqual(2);
    const list = [good[0]!, bad[1]!, bad[0]!, good[1]!];
    const r = await explore(prefetchScenario(false), { seeds: list, stopOnFailure: false, throwOnFailure: false });
    expect(r.seedsRun).toBe(4);
    expect(r.failures.map((f) => f.seed)).toEqual([bad[1], bad[0]]);
    expect(r.report()).toContain(`explore: seed ${bad[1]} failed after 1 passing seeds (4 seeds ${good[0]}..${good[1]}); also failing: seeds ${bad[0]}`);
    const stopped = await explore(prefetchScenario(false), { seeds: list, throwOnFailure: false });
    expect(stopped.seedsRun).toBe(2);
  });

  it("throws an ExploreError carrying the result, with the seed, the trace and the one-line reproduction", async () => {
    const first = await naiveFailure();
    const err = await explore(prefetchScenario(false), { seeds: 100 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ExploreError);
    const e = err as ExploreError;
    expect(e.result.firstFailure?.seed).toBe(first.seed);
    expect(e.message).toContain(`interleaving (seed ${first.seed}, preemption ${first.probability}, ${first.events.length} events):`);
    expect(e.message).toMatch(/^\s+[\d.]+µs {2}app {5}UFFDIO_COPY 0x[0-9a-f]+ \+4096 -> EEXIST \(out -17\)$/m);
    expect(e.message.split("\n").at(-1)).toBe(
      `reproduce: UFFD_EXPLORE_SEED=${first.seed} npx vitest run packages/testing/test/explore.test.ts -t "throws an ExploreError carrying the result, with the seed, the trace and the one-line reproduction"`,
    );
  });

  it(`${SEED_ENV} runs just that seed, and it fails exactly as in the exploration`, async () => {
    const first = await naiveFailure();
    process.env[SEED_ENV] = String(first.seed);
    const r = await explore(prefetchScenario(false), { seeds: 1000, throwOnFailure: false });
    expect(r.seedsRun).toBe(1);
    expect(JSON.stringify(r.firstFailure!.toJSON())).toBe(JSON.stringify(first.toJSON()));
  });

  it("a fixed preemption probability applies to every seed; 0 explores wake order alone", async () => {
    const r = await runSeed(prefetchScenario(true), 5, { preemption: 0 });
    expect(r.probability).toBe(0);
    expect(r.events.some((e) => e.kind === "preempt")).toBe(false);
    const run = await runSeed(prefetchScenario(true), 5, { preemption: 0.5 });
    expect(run.probability).toBe(0.5);
    expect(run.events.some((e) => e.kind === "preempt")).toBe(true);
  });
});
