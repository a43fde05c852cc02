/**
 * The known divergences' signatures: each recognises its own divergence and nothing else, so a
 * random run never counts a real divergence as known.
 */
import { describe, expect, it } from "vitest";
import { explain } from "../src/known.ts";
import { parseScenario } from "../src/scenario.ts";

const scenario = parseScenario("map S 1 shanon\n", "s");
const d = (text: string, native: string, sim: string) => ({ index: 5, text, what: "result", native, sim });

describe("known divergences", () => {
  it("guard-install-restart: a MADV_GUARD_INSTALL the host never answered and the simulation answered EAGAIN", () => {
    expect(explain(d("advise S 0 1 guard_install", "blocked", '{"err":"EAGAIN"}'), scenario)?.id).toBe("guard-install-restart");
    expect(explain(d("@c1 advise S 0 2 102", '{"bad":"a step thread neither finished nor slept on a userfaultfd within 10 s (wchan 0)"}', '{"err":"EAGAIN"}'), scenario)?.id).toBe("guard-install-restart");
  });

  it("nothing else: another answer, another errno, another advice", () => {
    expect(explain(d("advise S 0 1 guard_install", '{"err":"EAGAIN"}', '{"ret":0}'), scenario)).toBeUndefined();
    expect(explain(d("advise S 0 1 guard_install", "blocked", '{"ret":0}'), scenario)).toBeUndefined();
    expect(explain(d("advise S 0 1 dontneed", "blocked", '{"err":"EAGAIN"}'), scenario)).toBeUndefined();
    expect(explain(d("advise S 0 1 guard_remove", "blocked", '{"err":"EAGAIN"}'), scenario)).toBeUndefined();
  });
});
