import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "example-lazy-restore",
    include: ["test/**/*.test.ts"],
  },
});
