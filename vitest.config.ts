import { defineConfig } from "vitest/config";

// One vitest project per workspace package; `npm test` runs them all.
export default defineConfig({
  test: {
    projects: ["packages/*", "examples/*"],
  },
});
