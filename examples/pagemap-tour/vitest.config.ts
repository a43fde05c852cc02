import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "example-pagemap-tour",
    setupFiles: ["../../test/invariants.setup.ts"],
    include: ["test/**/*.test.ts"],
  },
});
