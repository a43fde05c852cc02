/**
 * `import "@uffd/testing/setup"` (or list it in vitest's setupFiles): installs the kit's
 * matchers on vitest's expect.
 *
 * @module @uffd/testing/setup
 */
import { expect } from "vitest";
import { uffdMatchers } from "./matchers.ts";

expect.extend(uffdMatchers);
