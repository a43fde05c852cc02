/**
 * The SDK promises that no promise it creates rejects unhandled (under Node's default,
 * --unhandled-rejections=throw, one would kill the handler's process). Vitest reports an
 * unhandled rejection at the end of the run without naming the test that caused it; this setup
 * file makes the test itself fail: every rejection nobody handled during a test is collected and
 * afterEach throws it, naming the rejection's reason.
 */
import { afterEach } from "vitest";

const unhandled: unknown[] = [];
process.on("unhandledRejection", (reason) => {
  unhandled.push(reason);
});

afterEach(async () => {
  // Node reports an unhandled rejection after the microtask queue drains: give it a macrotask.
  await new Promise((resolve) => setImmediate(resolve));
  if (unhandled.length === 0) return;
  const reasons = unhandled.splice(0);
  const first = reasons[0];
  throw new Error(`${reasons.length} unhandled promise rejection(s) during this test; the first: ${first instanceof Error ? (first.stack ?? first.message) : String(first)}`, { cause: first });
});
