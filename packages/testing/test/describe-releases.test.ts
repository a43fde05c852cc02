/**
 * describeReleases(): a describe block per release with the release in every test's name, and in
 * every failure's message and reproduction line. The fixture (test/fixtures/releases) opens
 * /dev/userfaultfd, which Linux has from 6.1 on (2d5de004e009): it fails on 5.15 only. It runs in
 * a vitest of its own, as a user's suite would, and the test reads vitest's JSON report.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { ALL_RELEASES } from "@uffd/kernel";
import { describeReleases, RELEASE_ENV, releaseAtLeast, reproduceRelease, selectedReleases } from "@uffd/testing";

const FIXTURE_DIR = fileURLToPath(new URL("./fixtures/releases/", import.meta.url));
const VITEST = join(createRequire(import.meta.url).resolve("vitest/package.json"), "../vitest.mjs");
const out = mkdtempSync(join(tmpdir(), "uffd-describe-releases-"));
afterAll(() => rmSync(out, { recursive: true, force: true }));

interface Assertion {
  fullName: string;
  status: string;
  failureMessages: string[];
}

/** Runs the fixture in its own vitest (from the fixture's folder) and returns its tests. */
async function runFixture(env: Record<string, string>, args: readonly string[] = []): Promise<Assertion[]> {
  const json = join(out, `run-${Object.keys(env).length}-${args.length}.json`);
  const childEnv = { ...process.env, ...env };
  if (!(RELEASE_ENV in env)) delete childEnv[RELEASE_ENV];
  await promisify(execFile)(process.execPath, [VITEST, "run", "--config", join(FIXTURE_DIR, "fixture.config.ts"), "--root", FIXTURE_DIR, "--reporter=json", `--outputFile=${json}`, ...args], { cwd: FIXTURE_DIR, env: childEnv }).catch(
    (e: { code?: number }) => {
      if (e.code !== 1) throw e; // 1: some test failed, which the fixture does on purpose
    },
  );
  const report = JSON.parse(readFileSync(json, "utf8")) as { testResults: Array<{ assertionResults: Assertion[] }> };
  return report.testResults.flatMap((f) => f.assertionResults);
}

describe("describeReleases()", () => {
  // Two vitest runs in child processes: a few seconds each on a loaded 2-CPU machine.
  it("names the release in every test, and in the failure's message and reproduction line, which reruns that release alone", { timeout: 120_000 }, async () => {
    const all = await runFixture({});
    expect(all.map((a) => [a.fullName, a.status])).toEqual([
      ["the fixture on release 5.15 opens /dev/userfaultfd", "failed"],
      ["the fixture on release 6.1 opens /dev/userfaultfd", "passed"],
      ["the fixture on release 6.18 opens /dev/userfaultfd", "passed"],
    ]);
    const message = all[0]!.failureMessages[0]!.split("\n");
    expect(message[0]).toBe("ErrnoError: [release 5.15] ENOENT: no such file or directory, open /dev/userfaultfd");
    const repro = 'reproduce: UFFD_EXPLORE_RELEASE=5.15 npx vitest run dev-uffd.fixture.ts -t "the fixture on release 5\\.15 opens /dev/userfaultfd"';
    expect(message[1]).toBe(repro);
    // The reproduction line, as written: the env var keeps 5.15 alone, -t picks the test.
    const again = await runFixture({ [RELEASE_ENV]: "5.15" }, ["-t", "the fixture on release 5\\.15 opens /dev/userfaultfd"]);
    expect(again.map((a) => [a.fullName, a.status])).toEqual([["the fixture on release 5.15 opens /dev/userfaultfd", "failed"]]);
    expect(again[0]!.failureMessages[0]!.split("\n").slice(0, 2)).toEqual(message.slice(0, 2));
    // docs/testing-your-handler.md quotes these two lines.
    const guide = readFileSync(new URL("../../../docs/testing-your-handler.md", import.meta.url), "utf8");
    expect(guide).toContain(`\n${message[0]}\n${message[1]}\n`);
  });

  it("selects the releases given, or the one UFFD_EXPLORE_RELEASE names; refuses an empty list and unknown releases", () => {
    const saved = process.env[RELEASE_ENV];
    try {
      delete process.env[RELEASE_ENV];
      expect(selectedReleases(["6.18", "5.10"])).toEqual(["6.18", "5.10"]);
      process.env[RELEASE_ENV] = "5.7";
      expect(selectedReleases(["6.18", "5.10"])).toEqual(["5.7"]);
      process.env[RELEASE_ENV] = "4.19";
      expect(() => selectedReleases(["6.18"])).toThrow(new RangeError(`describeReleases: unknown kernel release "4.19" (from UFFD_EXPLORE_RELEASE); the profiles are ${ALL_RELEASES.join(", ")}`));
      delete process.env[RELEASE_ENV];
      expect(() => selectedReleases([])).toThrow(new TypeError("describeReleases: releases must be a non-empty array of kernel releases"));
      expect(() => selectedReleases(["6.19" as never])).toThrow(RangeError);
      expect(() => describeReleases([], () => {})).toThrow(TypeError);
    } finally {
      if (saved === undefined) delete process.env[RELEASE_ENV];
      else process.env[RELEASE_ENV] = saved;
    }
  });

  it("reproduceRelease() escapes the test name as a pattern and makes the file relative to the working directory", () => {
    expect(reproduceRelease("6.1", `${process.cwd()}/a/b.test.ts`, 'on release 6.1 reads "x" (y)')).toBe(
      'UFFD_EXPLORE_RELEASE=6.1 npx vitest run a/b.test.ts -t "on release 6\\.1 reads \\"x\\" \\(y\\)"',
    );
  });

  it("releaseAtLeast() compares major.minor numerically", () => {
    expect(releaseAtLeast("6.12", "6.8")).toBe(true);
    expect(releaseAtLeast("6.6", "6.8")).toBe(false);
    expect(releaseAtLeast("5.18", "5.18")).toBe(true);
    expect(releaseAtLeast("5.10", "5.9")).toBe(true);
    expect(() => releaseAtLeast("6.1", "6")).toThrow(new RangeError('releaseAtLeast: "6" is not a release such as "6.8"'));
  });
});
