import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "example-seeds-tour",
    include: ["test/**/*.test.ts"],
  },
});
