import { existsSync, readdirSync } from "node:fs";
import { defaultServerConditions } from "vite";
import { defineConfig } from "vitest/config";

/**
 * One vitest project per workspace package (each folder's own vitest.config.ts); `npm test` runs
 * them all. Every project resolves "@uffd/kernel", "@uffd/sdk" and "@uffd/testing" to their
 * TypeScript sources through the "@uffd/source" export condition, so a test never runs a stale
 * dist; the published packages resolve to dist, which only the pack-and-consume test exercises.
 */
const SOURCE_CONDITIONS = ["@uffd/source", ...defaultServerConditions];

// Processes the tests fork (the live-migration example's source and destination run under tsx)
// inherit the same condition through NODE_OPTIONS.
if (!(process.env["NODE_OPTIONS"] ?? "").includes("--conditions=@uffd/source")) {
  process.env["NODE_OPTIONS"] = `${process.env["NODE_OPTIONS"] ?? ""} --conditions=@uffd/source`.trim();
}

/**
 * vitest's default budget of 5 s per test is a wall-clock limit that a loaded 2-CPU machine can
 * break for a test that takes 2 s when idle. Every project gets 60 s per test and hook unless its
 * own config says otherwise; a test that needs more states its own budget.
 */
const DEFAULT_BUDGET_MS = 60_000;
const defaultBudget = {
  name: "uffd:default-test-budget",
  config(config: { test?: { testTimeout?: number; hookTimeout?: number } }) {
    config.test ??= {};
    config.test.testTimeout ??= DEFAULT_BUDGET_MS;
    config.test.hookTimeout ??= DEFAULT_BUDGET_MS;
  },
};

const projectDirs = ["packages", "examples", "test"].flatMap((parent) =>
  readdirSync(parent)
    .map((name) => `${parent}/${name}`)
    .filter((dir) => existsSync(`${dir}/vitest.config.ts`)),
);

export default defineConfig({
  test: {
    projects: projectDirs.map((dir) => ({
      extends: `./${dir}/vitest.config.ts`,
      root: `./${dir}`,
      resolve: { conditions: SOURCE_CONDITIONS },
      ssr: { resolve: { conditions: SOURCE_CONDITIONS } },
      plugins: [defaultBudget],
    })),
  },
});
