import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "example-background-snapshot",
    include: ["test/**/*.test.ts"],
  },
});
