import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "example-seeds-tour",
    setupFiles: ["../../test/invariants.setup.ts"],
    include: ["test/**/*.test.ts"],
  },
});
