import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "example-compacting-gc",
    setupFiles: ["../../test/invariants.setup.ts"],
    include: ["test/**/*.test.ts"],
  },
});
