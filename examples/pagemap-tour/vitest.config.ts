import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "example-pagemap-tour",
    include: ["test/**/*.test.ts"],
  },
});
