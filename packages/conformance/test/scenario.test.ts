import { describe, expect, it } from "vitest";
import { formatScenario, parseScenario, ScenarioError } from "../src/scenario.ts";
import { readdirSync } from "node:fs";
import { CORPUS_AREAS, CORPUS_DIR, loadCorpus } from "../src/corpus.ts";

describe("the scenario language", () => {
  it("parses steps, process prefixes, comments and header fields", () => {
    const s = parseScenario("# name: demo\n# rule: r\nmap A 4 anon  # a region\n\n@c1 write A 0 1 0x11\n");
    expect(s.name).toBe("demo");
    expect(s.meta).toEqual({ name: "demo", rule: "r" });
    expect(s.steps.map((x) => [x.line, x.proc, x.verb, x.args])).toEqual([
      [3, "p0", "map", ["A", "4", "anon"]],
      [5, "c1", "write", ["A", "0", "1", "0x11"]],
    ]);
  });

  it("formats back to the same steps", () => {
    const text = "map A 4 anon\n@c1 write A 0 1 0x11\nregister U A 0 4 missing,wp\n";
    expect(formatScenario(parseScenario(text).steps)).toBe(text);
  });

  it.each([
    ["frobnicate A", /unknown step "frobnicate"/],
    ["map A four anon", /argument 2 of "map" must be a number/],
    ["unmap A 0", /"unmap" takes 3 argument/],
    ["read A 0 1 2", /"read" takes 3 argument/],
    ["@ read A 0 1", /bad process name/],
  ])("rejects %s", (text, why) => {
    expect(() => parseScenario(text)).toThrow(ScenarioError);
    expect(() => parseScenario(text)).toThrow(why);
  });

  it("loads the corpus: every scenario has a unique name and cites its rule", () => {
    const corpus = loadCorpus();
    expect(corpus.length).toBeGreaterThanOrEqual(50);
    for (const s of corpus) expect(s.meta["rule"], s.name).toMatch(/\S/);
  });

  it("names the area of every corpus file, as uffd-conform's agreement table prints it", () => {
    const files = readdirSync(CORPUS_DIR).filter((n) => n.endsWith(".scn")).sort();
    expect(Object.keys(CORPUS_AREAS).sort()).toEqual(files);
  });
});
