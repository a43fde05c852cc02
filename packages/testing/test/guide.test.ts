/**
 * Every code snippet of docs/testing-your-handler.md lives here (or in handlers.ts) between
 * `// #region <name>` and `// #endregion`, and runs as a test. The last test checks that the
 * guide quotes each region verbatim.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { Kernel, KERNEL_RELEASES } from "@uffd/kernel";
import { MAP_ANONYMOUS, MAP_PRIVATE, PAGE_SIZE, PROT_READ, PROT_WRITE, UFFDIO_COPY } from "@uffd/kernel/uapi";
import { BufferSource, Userfaultfd } from "@uffd/sdk";
import { describeReleases, diffRuns, explore, guest, inject, injectFaults, pagemapText, releaseAtLeast, replay, runSeed, smapsText } from "@uffd/testing";
import { makeImage, prefetchScenario, registeredAnon, serveWithPrefetch } from "./handlers.ts";
import { naiveFailure } from "./helpers.ts";

const RW = PROT_READ | PROT_WRITE;

describe("docs/testing-your-handler.md", () => {
  it("explore finds the planted bug within 100 seeds, at the same seed every run", async () => {
    // #region find-bug
    const result = await explore(prefetchScenario(false), { seeds: 100, throwOnFailure: false });
    expect(result.ok).toBe(false); // some seed of the first 100 leaves a thread asleep forever
    console.log(result.report()); // the seed, what went wrong, the interleaving, how to rerun it
    // #endregion
    const seed = result.firstFailure!.seed;
    const report = result.report();
    expect(report).toContain(`explore: seed ${seed} failed after ${seed - 1} passing seeds (100 seeds 1..100)`);
    expect(report).toMatch(/t\d did not complete: asleep on a userfault at 0x[0-9a-f]+ since [\d.]+µs; the handler read its fault at [\d.]+µs; the last ioctl on that page: app UFFDIO_COPY 0x[0-9a-f]+ \+4096 -> EEXIST \(out -17\); nothing woke it/);
    expect(report).toContain(`reproduce: UFFD_EXPLORE_SEED=${seed} npx vitest run packages/testing/test/guide.test.ts -t "explore finds the planted bug`);
    // Deterministic: the same seed fails, event for event, on a second exploration.
    const again = await explore(prefetchScenario(false), { seeds: 100, throwOnFailure: false });
    expect(JSON.stringify(again.firstFailure?.toJSON())).toBe(JSON.stringify(result.firstFailure?.toJSON()));
  });

  // A thousand seeds take a few seconds on a loaded 2-CPU machine: the test states its budget.
  it("the fixed handler passes 1,000 seeds", { timeout: 120_000 }, async () => {
    // #region fixed
    const result = await explore(prefetchScenario(true), { seeds: 1000 });
    expect(result.seedsRun).toBe(1000);
    // #endregion
  });

  describe("every test on every release", () => {
    // #region each-release
    describeReleases(KERNEL_RELEASES, (release) => {
      it("the fixed handler passes 50 seeds", async () => {
        const result = await explore(prefetchScenario(true), { seeds: 50, releases: [release] });
        expect(result.seedsRun).toBe(50);
      });

      it("the SDK names what it fell back to", async () => {
        const proc = new Kernel({ release }).spawn();
        const uffd = await Userfaultfd.open(proc); // /dev/userfaultfd from 6.1, else userfaultfd(2)
        expect(uffd.fallbacks.map((f) => f.used)).toEqual(releaseAtLeast(release, "6.1") ? [] : ["userfaultfd(2)"]);
        await uffd.close();
      });
    });
    // #endregion
  });

  it("a failing seed reruns alone, with its trace; recorded, replayed against the fixed handler, diffed", async () => {
    const { seed } = await naiveFailure();
    // #region reproduce
    const run = await runSeed(prefetchScenario(false), seed);
    expect(run.ok).toBe(false);
    console.log(run.format()); // the problems, the interleaving, how each guest ended
    // #endregion
    expect(run.format()).toMatch(/^end: .*asleep on a userfault at/m);
    // #region replay
    const recorded = JSON.stringify(run); // RunResult.toJSON(): seed, scheduling decisions, events
    const fixed = await replay(prefetchScenario(true), recorded);
    expect(fixed.ok).toBe(true);
    const diff = diffRuns(JSON.parse(recorded), fixed);
    console.log(diff.text);
    // #endregion
    expect(diff.text).toMatch(/^\+ app {2}UFFDIO_WAKE 0x[0-9a-f]+ \+4096 -> ok$/m);
    expect(diff.text).toMatch(/^- end {2}t\d: asleep on a userfault at 0x[0-9a-f]+$/m);
    expect(diff.text).toMatch(/^\+ end {2}t\d: completed$/m);
    // Replaying the same handler reproduces the recorded run exactly.
    const same = await replay(prefetchScenario(false), recorded);
    expect(diffRuns(JSON.parse(recorded), same, { scheduling: true }).equal).toBe(true);
  });

  it("injections under explore: the SDK's handler meets EEXIST and a late wake and still completes every thread", { timeout: 60_000 }, async () => {
    const image = makeImage(4);
    // #region inject
    await explore(
      async (w) => {
        const app = w.spawn({ name: "app" });
        const addr = await app.mmap(0, 4 * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
        const uffd = await Userfaultfd.open(app);
        await uffd.register(addr, 4 * PAGE_SIZE, "missing");
        uffd.serve(new BufferSource(image));
        w.inject(app, [
          { op: "copy", nth: 1, inject: inject.eexist() }, // a racing resolve wins, and does not wake
          { op: "copy", nth: 2, inject: inject.delayWake(2) }, // this resolve's wake comes 2 ms late
        ]);
        for (const [name, order] of [["t1", [0, 1, 2, 3]], ["t2", [3, 2, 1, 0]]] as const) {
          w.guest(w.thread(app, name), async (t) => {
            for (const i of order) expect(await t.read(addr + i * PAGE_SIZE, 2)).toEqual(Uint8Array.of(0x40 + i, 0x40 + i));
          });
        }
        w.check(() => expect(app).toHaveMemory(addr, image));
      },
      { seeds: 200, resolvedOnce: { allowPresent: true } }, // EEXIST is this test's point: not a duplicate
    );
    // #endregion
  });

  it("matchers outside explore", async () => {
    // #region matchers
    const kernel = new Kernel();
    const app = kernel.spawn({ name: "app" });
    const { uffd, base } = await registeredAnon(app, 4);
    const t1 = guest(app.spawnThread("t1"), (t) => t.read(base + 3 * PAGE_SIZE, 8));
    await kernel.idle();
    expect(t1).toBeBlocked(base + 3 * PAGE_SIZE); // nobody serves the range yet
    const faults = injectFaults(app, [{ op: "copy", address: base + 3 * PAGE_SIZE, inject: inject.eexist() }]);
    serveWithPrefetch(app, uffd, base, makeImage(4), /* fixed */ true);
    await kernel.idle();
    expect(faults.fired("eexist")).toBe(1); // the first copy of page 3 lost a race to a resolver that did not wake
    expect(t1).toHaveCompleted();
    expect(t1.result).toEqual(new Uint8Array(8).fill(0x43));
    expect(kernel).toResolveEveryFaultOnce({ allowPresent: true }); // the prefetcher races the demand path by design
    expect(kernel).toSatisfyInvariants();
    expect(app).toHavePagemap(base, { present: true, exclusive: true, uffdWp: false }, 4);
    expect(app).toHaveMemory(base, makeImage(4));
    // #endregion
  });

  it("pagemap and smaps as text snapshots", async () => {
    const kernel = new Kernel();
    const app = kernel.spawn({ name: "app" });
    const { uffd, base } = await registeredAnon(app, 4);
    await app.ioctl(uffd, UFFDIO_COPY, { dst: base, src: makeImage(1), len: PAGE_SIZE, mode: 0 });
    void app.mainThread.read(base + PAGE_SIZE, 1); // a fault nobody serves: stays asleep
    await app.mmap(base - 2 * PAGE_SIZE, 2 * PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS | 0x10 /* MAP_FIXED */);
    // #region snapshots
    expect(pagemapText(app, base, 4)).toMatchInlineSnapshot(`
      "0    present exclusive
      1-3  none"
    `);
    expect(smapsText(app, { base })).toMatchInlineSnapshot(`
      "[-0x2000, +0x0) rw-p  rss 0K anon 0K swap 0K  rd wr mr mw me ac
      [+0x0, +0x4000) rw-p  rss 4K anon 4K swap 0K  rd wr mr mw me um ac"
    `);
    // #endregion
    kernel.checkInvariants();
  });

  it("the guide quotes every snippet verbatim", () => {
    const regionsOf = (file: URL): RegExpMatchArray[] => [...readFileSync(file, "utf8").matchAll(/^( *)\/\/ #region ([\w-]+)\n([\s\S]*?)^ *\/\/ #endregion/gm)];
    const regions = [...regionsOf(new URL("./handlers.ts", import.meta.url)), ...regionsOf(new URL(import.meta.url))];
    const guide = readFileSync(new URL("../../../docs/testing-your-handler.md", import.meta.url), "utf8");
    expect(regions.map((r) => r[2])).toEqual(["image", "handler", "register", "scenario", "find-bug", "fixed", "each-release", "reproduce", "replay", "inject", "matchers", "snapshots"]);
    const body = (r: RegExpMatchArray): string =>
      r[3]!
        .split("\n")
        .map((l) => l.slice(r[1]!.length))
        .join("\n")
        .trimEnd();
    for (const r of regions) expect(guide, `region ${r[2]} is not quoted verbatim in docs/testing-your-handler.md`).toContain(body(r));
  });
});
