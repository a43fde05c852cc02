/**
 * describeReleases(): the `describe.each` of kernel releases. One describe block per release
 * profile (KernelOptions.release), named `on release <r>`, so every test's name carries the
 * release; a failing test's message starts with `[release <r>]` and ends with a reproduction line
 * that selects that release alone (`UFFD_EXPLORE_RELEASE=<r> npx vitest run <file> -t "<test>"`),
 * the same env var explore({ releases }) obeys.
 */
import { ALL_RELEASES, type AnyRelease } from "@uffd/kernel";
import { afterEach, describe } from "vitest";
import { RELEASE_ENV } from "./explore.ts";

/** What describeReleases() takes besides the releases and the body. */
export interface DescribeReleasesOptions {
  /** A name for the blocks: they are named `<name> on release <r>` (default: `on release <r>`). */
  name?: string;
}

/**
 * Declares the tests of `body` once per release, in the order given: a describe block per release
 * named `on release <r>` (`<name> on release <r>` with options.name), in which `body(release)`
 * declares its tests with vitest's own `it` / `test` (build each kernel with
 * `new Kernel({ release })`, or pass `releases: [release]` to explore()). The env var
 * UFFD_EXPLORE_RELEASE (RELEASE_ENV) keeps one release, which need not be in `releases`: it is
 * how a failure's reproduction line selects the release that failed. Every failure message of
 * these tests starts with `[release <r>]` and ends with that reproduction line.
 *
 * An empty list, or a release no profile models, is a TypeError / RangeError at declaration, so a
 * typo cannot silently declare no test.
 */
export function describeReleases<R extends AnyRelease>(releases: readonly R[], body: (release: R) => void, options: DescribeReleasesOptions = {}): void {
  for (const release of selectedReleases(releases)) {
    describe(`${options.name === undefined ? "" : `${options.name} `}on release ${release}`, () => {
      afterEach((ctx) => {
        const result = ctx.task.result;
        if (result?.state !== "fail" || result.errors === undefined) return;
        const repro = `reproduce: ${reproduceRelease(release, ctx.task.file.filepath, testNameOf(ctx.task))}`;
        // The errors are already serialized (message, stack) and reach the reporter after the
        // hooks: rewrite both, since reporters print one or the other.
        for (const e of result.errors) {
          const message = e.message;
          if (typeof message !== "string" || message.startsWith(`[release ${release}]`)) continue;
          e.message = `[release ${release}] ${message}\n${repro}`;
          if (typeof e.stack === "string") e.stack = e.stack.replace(message, e.message);
        }
      });
      body(release);
    });
  }
}

/**
 * The releases describeReleases() declares: `releases`, or the one UFFD_EXPLORE_RELEASE names.
 * Throws a TypeError for an empty list and a RangeError for a release no profile models.
 */
export function selectedReleases<R extends AnyRelease>(releases: readonly R[]): readonly R[] {
  const env = typeof process !== "undefined" ? process.env[RELEASE_ENV] : undefined;
  if (!Array.isArray(releases) || releases.length === 0) throw new TypeError("describeReleases: releases must be a non-empty array of kernel releases");
  const chosen = env !== undefined && env !== "" ? [env] : releases;
  for (const r of chosen) {
    if (!(ALL_RELEASES as readonly unknown[]).includes(r)) {
      const from = r === env ? ` (from ${RELEASE_ENV})` : "";
      throw new RangeError(`describeReleases: unknown kernel release ${JSON.stringify(r)}${from}; the profiles are ${ALL_RELEASES.join(", ")}`);
    }
  }
  return chosen as readonly R[];
}

/** The names from the file down to the test, joined as vitest's -t matches them (space-separated). */
function testNameOf(task: { name: string; suite?: { name: string; suite?: unknown } | undefined; file?: unknown }): string {
  const names: string[] = [];
  let t: { name: string; suite?: unknown } | undefined = task;
  while (t !== undefined && t !== task.file) {
    names.unshift(t.name);
    t = t.suite as { name: string; suite?: unknown } | undefined;
  }
  return names.join(" ");
}

/**
 * The command that runs one test on one release: `UFFD_EXPLORE_RELEASE=<release> npx vitest run
 * <file> -t "<test name>"` (the file relative to the working directory, the name escaped as a
 * regular expression).
 */
export function reproduceRelease(release: AnyRelease, file: string, testName: string): string {
  const cwd = typeof process !== "undefined" ? process.cwd() + "/" : "";
  const rel = cwd !== "/" && file.startsWith(cwd) ? file.slice(cwd.length) : file;
  const pattern = testName.replace(/[\\^$.*+?()[\]{}|"`]/g, "\\$&");
  return `${RELEASE_ENV}=${release} npx vitest run ${rel} -t "${pattern}"`;
}

/**
 * Whether `release` is `since` or later, both as "<major>.<minor>" ("6.8"): what a test asks to
 * know which behaviour a release profile has (`releaseAtLeast(release, "6.8")`: UFFDIO_MOVE).
 * Throws a RangeError for a string that is not "<major>.<minor>".
 */
export function releaseAtLeast(release: AnyRelease, since: string): boolean {
  const num = (v: string): number => {
    const m = /^(\d+)\.(\d+)$/.exec(v);
    if (m === null) throw new RangeError(`releaseAtLeast: ${JSON.stringify(v)} is not a release such as "6.8"`);
    return Number(m[1]) * 1000 + Number(m[2]);
  };
  return num(release) >= num(since);
}
