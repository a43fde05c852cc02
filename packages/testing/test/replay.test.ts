/**
 * Record and replay: a run as JSON, replayed against the same or a changed handler, and diffed.
 */
import { describe, expect, it } from "vitest";
import { diffRuns, parseRun, type RecordedRun, replay, runSeed } from "@uffd/testing";
import { prefetchScenario } from "./handlers.ts";
import { naiveFailure } from "./helpers.ts";

describe("record", () => {
  it("a run is plain JSON: seed, probability, decisions by actor, events with virtual times, outcome", async () => {
    const run = await naiveFailure();
    const json = JSON.parse(JSON.stringify(run)) as RecordedRun;
    expect(json).toEqual(run.toJSON());
    expect(json).toMatchObject({ format: "uffd-testing/run@1", seed: run.seed, probability: run.probability, ok: false });
    expect(Object.keys(json.decisions.preempt).sort()).toEqual(run.probability > 0 ? ["app", "t1", "t2"] : expect.any(Array));
    expect(Object.values(json.decisions.preempt).every((d) => /^[01]+$/.test(d))).toBe(true);
    expect(json.decisions.pick.every((k) => /^(app|t1|t2)#\d+$/.test(k))).toBe(true);
    expect(Object.values(json.guests)).toContainEqual(expect.stringMatching(/^asleep on a userfault at 0x/));
    const times = json.events.map((e) => e.t);
    expect(times).toEqual([...times].sort((a, b) => a - b)); // virtual time never goes back
    expect(parseRun(JSON.stringify(json))).toEqual(json);
    expect(() => parseRun('{"format":"something else"}')).toThrowError("not a recorded run (format something else)");
  });
});

describe("replay", () => {
  it("the same handler replays the recorded run exactly, from the JSON alone", async () => {
    for (const seed of [3, (await naiveFailure()).seed, 40]) {
      const rec = JSON.stringify(await runSeed(prefetchScenario(false), seed));
      const again = await replay(prefetchScenario(false), rec);
      expect(JSON.stringify(again)).toBe(rec);
    }
  });

  it("a changed handler follows the recorded decisions where it can and the seed elsewhere, deterministically", async () => {
    const rec = (await naiveFailure()).toJSON();
    const a = await replay(prefetchScenario(true), rec);
    const b = await replay(prefetchScenario(true), rec);
    expect(JSON.stringify(a)).toBe(JSON.stringify(b));
    expect(a.ok).toBe(true);
    // Up to the first EEXIST the two runs are the same run.
    const upTo = (r: RecordedRun) => r.events.slice(0, r.events.findIndex((e) => e.kind === "ioctl" && e.result === "EEXIST") + 1);
    expect(upTo(a.toJSON())).toEqual(upTo(rec));
  });
});

describe("diffRuns", () => {
  it("equal runs have an empty diff; a change shows as -/+ lines with context and skips", async () => {
    const a = await naiveFailure();
    expect(diffRuns(a, a.toJSON())).toMatchObject({ equal: true, added: 0, removed: 0 });
    const b = await replay(prefetchScenario(true), a);
    const d = diffRuns(a, b);
    expect(d.equal).toBe(false);
    expect(d.removed).toBe(2 * a.problems.length); // each stuck guest: its "asleep" end and its problem
    expect(d.text.split("\n")[0]).toBe("  ...");
    expect(d.text).toMatch(/^\+ end {2}t\d: completed$/m);
    expect(String(d)).toBe(d.text);
    const withSched = diffRuns(a, b, { scheduling: true, context: 0 });
    expect(withSched.text).not.toMatch(/^ {2}(?!\.\.\.)/m); // no context lines
  });
});
