/**
 * The SDK's modules form layers: each imports (types included) only from layers below it, so no
 * module reaches back up into the one that uses it and the import graph has no cycle. The state
 * of a userfaultfd lives in context.ts; the resolvers below the dispatcher receive it as an
 * argument; serve, fills and DirtyTracker are clients on top.
 */
import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

const SRC = new URL("../src/", import.meta.url);

/** Bottom to top. A module may import from any earlier layer, never from its own or a later one. */
const LAYERS: readonly (readonly string[])[] = [
  ["msg", "features", "events", "emitter", "fault-table", "page-source"],
  ["errors", "ranges"],
  ["types"],
  ["metrics"],
  ["context"],
  ["ops"],
  ["resolve"],
  ["fault"],
  ["dispatch"],
  ["reader", "serve"],
  ["userfaultfd"],
  ["dirty"],
  ["index"],
];

/** Every relative import and re-export of every source module (static `from "./x.ts"` and `import("./x.ts")`). */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of readdirSync(SRC)) {
    if (!file.endsWith(".ts") || file.endsWith(".test.ts")) continue;
    const text = readFileSync(new URL(file, SRC), "utf8");
    const deps = [...text.matchAll(/(?:from\s+|import\s*\(\s*)"\.\/([\w-]+)\.ts"/g)].map((m) => m[1]!);
    graph.set(file.slice(0, -3), [...new Set(deps)]);
  }
  return graph;
}

/** The first cycle found by depth-first search, as a path, or null. */
function findCycle(graph: Map<string, string[]>): string[] | null {
  const state = new Map<string, "open" | "done">();
  const path: string[] = [];
  const visit = (m: string): string[] | null => {
    if (state.get(m) === "done") return null;
    if (state.get(m) === "open") return [...path.slice(path.indexOf(m)), m];
    state.set(m, "open");
    path.push(m);
    for (const d of graph.get(m) ?? []) {
      const c = visit(d);
      if (c !== null) return c;
    }
    path.pop();
    state.set(m, "done");
    return null;
  };
  for (const m of graph.keys()) {
    const c = visit(m);
    if (c !== null) return c;
  }
  return null;
}

describe("the SDK's import graph", () => {
  const graph = importGraph();

  it("every source module has a layer", () => {
    expect([...graph.keys()].filter((m) => !LAYERS.some((l) => l.includes(m)))).toEqual([]);
  });

  it("no module imports from its own layer or one above it", () => {
    const layerOf = (m: string): number => LAYERS.findIndex((l) => l.includes(m));
    const upward: string[] = [];
    for (const [m, deps] of graph) for (const d of deps) if (layerOf(d) >= layerOf(m)) upward.push(`${m} -> ${d}`);
    expect(upward).toEqual([]);
  });

  it("has no cycle", () => {
    expect(findCycle(graph)).toBeNull();
  });

  it("the checks can fail: a graph with a back edge has a cycle", () => {
    expect(findCycle(new Map([["a", ["b"]], ["b", ["c"]], ["c", ["a"]]]))).toEqual(["a", "b", "c", "a"]);
  });
});

describe("what a consumer installs", () => {
  /** The runtime dependency closure of a package (dependencies and optionalDependencies, which npm installs by default). */
  function closure(name: string, from: URL, seen = new Set<string>()): Set<string> {
    if (seen.has(name)) return seen;
    seen.add(name);
    const pkgUrl = name === "@uffd/sdk" ? new URL("../package.json", import.meta.url) : new URL(`node_modules/${name}/package.json`, from);
    const pkg = JSON.parse(readFileSync(pkgUrl, "utf8")) as { dependencies?: Record<string, string>; optionalDependencies?: Record<string, string> };
    for (const dep of Object.keys({ ...pkg.dependencies, ...pkg.optionalDependencies })) closure(dep, from, seen);
    return seen;
  }

  it("does not pull rxjs (typed-emitter's optional dependency): the SDK keeps typed-emitter's types, not the package", () => {
    const root = new URL("../../../", import.meta.url);
    const deps = closure("@uffd/sdk", root);
    expect(deps.has("typed-emitter")).toBe(false);
    expect(deps.has("rxjs")).toBe(false);
    // The check can fail: typed-emitter itself would pull rxjs.
    expect(closure("typed-emitter", root).has("rxjs")).toBe(true);
  });

  it("no source module imports typed-emitter (types included)", () => {
    const offenders = readdirSync(SRC).filter((f) => f.endsWith(".ts") && /from\s+"typed-emitter"/.test(readFileSync(new URL(f, SRC), "utf8")));
    expect(offenders).toEqual([]);
  });
});
