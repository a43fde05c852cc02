import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "example-live-migration",
    setupFiles: ["../../test/invariants.setup.ts"],
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
