import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "example-background-snapshot",
    setupFiles: ["../../test/invariants.setup.ts"],
    include: ["test/**/*.test.ts"],
  },
});
