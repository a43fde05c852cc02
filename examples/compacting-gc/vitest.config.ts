import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "example-compacting-gc",
    include: ["test/**/*.test.ts"],
  },
});
