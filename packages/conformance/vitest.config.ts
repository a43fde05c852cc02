import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "conformance",
    setupFiles: ["../../test/invariants.setup.ts"],
    include: ["test/**/*.test.ts"],
  },
});
