/**
 * explore(scenario, { releases }): one exploration per kernel release, with the release in every
 * failure report and reproduction line. The scenario opens /dev/userfaultfd, which Linux has
 * only from 6.1 on (docs/releases.md): it passes on 6.1 and later and fails (ENOENT) before.
 */
import { afterEach, describe, expect, it } from "vitest";
import { explore, ExploreError, RELEASE_ENV, type World } from "@uffd/testing";

const needsDevUserfaultfd = async (w: World): Promise<void> => {
  await w.kernel.spawn().openDevUserfaultfd(0);
};

describe("explore({ releases })", () => {
  afterEach(() => {
    delete process.env[RELEASE_ENV];
  });

  it("runs every release and reports which one failed, with a reproduction line naming it", async () => {
    const r = await explore(needsDevUserfaultfd, { seeds: 2, releases: ["6.18", "6.1", "5.15", "5.10"], throwOnFailure: false, preemption: 0 });
    expect(r.ok).toBe(false);
    // 6.18 and 6.1 pass (2 seeds each); 5.15 fails at its first seed and stops the rest.
    expect(r.seedsRun).toBe(5);
    expect(r.failures.map((f) => [f.release, f.seed])).toEqual([["5.15", 1]]);
    const report = r.report();
    expect(report.split("\n")[0]).toBe("explore: seed 1 on release 5.15 failed after 0 passing seeds (2 seeds 1..2)");
    expect(report).toContain("ENOENT: no such file or directory, open /dev/userfaultfd");
    expect(report).toMatch(/\nreproduce: UFFD_EXPLORE_RELEASE=5\.15 UFFD_EXPLORE_SEED=1 npx vitest run packages\/testing\/test\/releases\.test\.ts -t "runs every release/);
  });

  it("with stopOnFailure false every failing release is reported; ExploreError carries the report", async () => {
    const r = await explore(needsDevUserfaultfd, { seeds: 1, releases: ["5.10", "5.15", "6.6"], throwOnFailure: false, stopOnFailure: false, preemption: 0 });
    expect(r.failures.map((f) => f.release)).toEqual(["5.10", "5.15"]);
    expect(r.report()).toContain("on release 5.10 failed");
    expect(r.report()).toContain("on release 5.15 failed");
    await expect(explore(needsDevUserfaultfd, { seeds: 1, releases: ["5.10"], preemption: 0 })).rejects.toThrow(ExploreError);
  });

  it("passes with a summary naming the releases; UFFD_EXPLORE_RELEASE runs one; an unknown release is refused", async () => {
    const r = await explore(needsDevUserfaultfd, { seeds: 2, releases: ["6.1", "6.18"], preemption: 0 });
    expect(r.report()).toBe("explore: 4 seeds passed on releases 6.1, 6.18");
    process.env[RELEASE_ENV] = "6.6";
    const one = await explore(needsDevUserfaultfd, { seeds: 2, releases: ["5.10", "6.18"], preemption: 0 });
    expect(one.report()).toBe("explore: 2 seeds passed on releases 6.6");
    delete process.env[RELEASE_ENV];
    await expect(explore(needsDevUserfaultfd, { releases: ["4.19" as never] })).rejects.toThrow(
      new RangeError('explore: unknown kernel release "4.19"; the profiles are 5.7, 5.10, 5.15, 5.18, 6.1, 6.6, 6.12, 6.18'),
    );
  });
});
