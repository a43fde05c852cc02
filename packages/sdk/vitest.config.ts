import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "sdk",
    setupFiles: ["../../test/invariants.setup.ts", "test/unhandled.setup.ts"],
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
  },
});
