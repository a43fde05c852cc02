import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "kernel",
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
  },
});
