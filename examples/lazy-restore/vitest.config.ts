import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "example-lazy-restore",
    setupFiles: ["../../test/invariants.setup.ts"],
    include: ["test/**/*.test.ts"],
  },
});
