/**
 * The published packages work outside this repository: `npm pack` each one, install the tarballs
 * into a fresh project in the system's temporary directory (no workspace, no path back to this
 * repository's node_modules), and use them the way a consumer would: plain `node`, plain `tsc`
 * with the settings `tsc --init` writes, tsx, esbuild, and vitest with the testing kit.
 *
 * Budget: one test of at most 6 minutes (packing builds with `tsc -b`, the install reads the npm
 * cache first and falls back to the registry). Nothing here depends on how long a step takes.
 */
import { execFileSync, type ExecFileSyncOptions } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const PACKAGES = ["kernel", "sdk", "testing", "conformance"] as const;
/** Files a tarball may hold beyond package.json, README.md, LICENSE, CHANGELOG.md and dist/: the conformance CLI, its C runner and its corpus. */
const EXTRA_FILES: Record<(typeof PACKAGES)[number], RegExp | null> = { kernel: null, sdk: null, testing: null, conformance: /^(bin\/[\w-]+\.js|native\/[\w-]+\.c|corpus\/[\w-]+\.scn)$/ };
const require_ = createRequire(join(ROOT, "package.json"));
const TSC = join(dirname(require_.resolve("typescript/package.json")), "bin", "tsc");
const TSX = require_.resolve("tsx/cli");
const ESBUILD = join(dirname(require_.resolve("esbuild/package.json")), "bin", "esbuild");

/** What a ten-line handler needs; type-checked by tsc --init's settings and run by plain node. */
const HANDLER = `import { Kernel } from "@uffd/kernel";
import { MAP_ANONYMOUS, MAP_PRIVATE, PAGE_SIZE, PROT_READ, PROT_WRITE } from "@uffd/kernel/uapi";
import { Userfaultfd, type Fault } from "@uffd/sdk";

const proc = new Kernel({ seed: 1 }).spawn();
const addr = await proc.mmap(0, 4 * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
const uffd = await Userfaultfd.open(proc);
await uffd.register(addr, 4 * PAGE_SIZE, "missing");
uffd.on("fault", (fault: Fault) => fault.copy(new Uint8Array(PAGE_SIZE).fill(fault.offset / PAGE_SIZE + 1)));
console.log(JSON.stringify([...(await proc.mainThread.read(addr + 2 * PAGE_SIZE, 4))]));
await uffd.close();
`;
/** Page 2 of the handler's range, filled with 3s by the fault listener. */
const HANDLER_OUTPUT = "[3,3,3,3]";

const VITEST_TEST = `import { expect, it } from "vitest";
import { MAP_ANONYMOUS, MAP_PRIVATE, PAGE_SIZE, PROT_READ, PROT_WRITE } from "@uffd/kernel/uapi";
import { Userfaultfd } from "@uffd/sdk";
import { explore, type World } from "@uffd/testing";

it("serves a missing fault under every explored seed", async () => {
  const result = await explore(async (w: World) => {
    const app = w.spawn({ name: "app" });
    const addr = await app.mmap(0, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
    const uffd = await Userfaultfd.open(app);
    await uffd.register(addr, PAGE_SIZE, "missing");
    uffd.on("fault", (fault) => fault.copy(new Uint8Array(PAGE_SIZE).fill(7)));
    const reader = w.guest(w.thread(app, "reader"), async (t) => t.read(addr, 2));
    w.check(() => expect(reader).toHaveCompleted());
  }, { seeds: 10 });
  expect(result.seedsRun).toBe(10);
  expect(result.ok).toBe(true);
}, 60_000);
`;

/** A scenario module in plain JavaScript, for explore()'s worker threads. */
const SCENARIO_MODULE = `import { MAP_ANONYMOUS, MAP_PRIVATE, PAGE_SIZE, PROT_READ, PROT_WRITE } from "@uffd/kernel/uapi";
import { Userfaultfd } from "@uffd/sdk";

export async function serveOnePage(w) {
  const app = w.spawn({ name: "app" });
  const addr = await app.mmap(0, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
  const uffd = await Userfaultfd.open(app);
  await uffd.register(addr, PAGE_SIZE, "missing");
  uffd.on("fault", (fault) => fault.copy(new Uint8Array(PAGE_SIZE).fill(7)));
  w.guest(w.thread(app, "reader"), async (t) => t.read(addr, 2));
}
`;
const EXPLORE_IN_WORKERS = `import { explore, scenarioRef } from "@uffd/testing";
const result = await explore(scenarioRef(new URL("./scenario.mjs", import.meta.url), "serveOnePage"), { seeds: 40, workers: 2 });
console.log(JSON.stringify({ ok: result.ok, seedsRun: result.seedsRun }));
`;

/** The conformance engine's simulation side, from plain node: one corpus-style scenario, step by step. */
const CONFORMANCE_RUN = `import { Driver, SimBackend, parseScenario } from "@uffd/conformance";
const scenario = parseScenario(["map A 2 anon", "write A 0 1 7", "read A 0 1"].join("\\n"), "consumer");
const records = await new Driver(new SimBackend({ seed: 1 })).run(scenario);
console.log(JSON.stringify({ steps: records.length, blocked: records.some((r) => r.r === "blocked") }));
`;

let work = "";
let consumer = "";
const packed = new Map<string, { filename: string; files: string[] }>();

/**
 * The environment of a consumer's shell: without this repository's "@uffd/source" condition (the
 * workspace's vitest puts it into NODE_OPTIONS) and without the variables of the vitest running us.
 */
function consumerEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env["NODE_OPTIONS"];
  delete env["FORCE_COLOR"];
  env["NO_COLOR"] = "1";
  for (const key of Object.keys(env)) if (key.startsWith("VITEST") || key === "TEST") delete env[key];
  return env;
}

function run(cmd: string, args: string[], opts: ExecFileSyncOptions = {}): string {
  try {
    return execFileSync(cmd, args, { cwd: consumer, encoding: "utf8", stdio: "pipe", env: consumerEnv(), ...opts }).toString();
  } catch (e) {
    const err = e as { stdout?: Buffer | string; stderr?: Buffer | string; message: string };
    throw new Error(`${cmd} ${args.join(" ")} failed: ${err.message}\n${String(err.stdout ?? "")}\n${String(err.stderr ?? "")}`);
  }
}

describe("the packed packages, installed into a fresh project outside the workspace", () => {
  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), "uffd-consumer-"));
    const tarballs = join(work, "tarballs");
    consumer = join(work, "app");
    mkdirSync(tarballs);
    mkdirSync(consumer);
    // npm pack runs each package's prepack (tsc -b), so the tarballs hold a fresh build.
    const out = run("npm", ["pack", "--json", "--pack-destination", tarballs, ...PACKAGES.flatMap((p) => ["-w", `packages/${p}`])], { cwd: ROOT });
    for (const entry of JSON.parse(out.slice(out.indexOf("["))) as Array<{ name: string; filename: string; files: Array<{ path: string }> }>) {
      packed.set(entry.name, { filename: join(tarballs, entry.filename), files: entry.files.map((f) => f.path) });
    }
    const dependencies = Object.fromEntries([...packed].map(([name, p]) => [name, `file:${p.filename}`]));
    writeFileSync(join(consumer, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module", dependencies }, null, 2));
    // Everything a lockfile install of this repository put into the npm cache is reused; the
    // registry is asked only for what is missing.
    run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"]);
    writeFileSync(join(consumer, "handler.ts"), HANDLER);
    writeFileSync(join(consumer, "handler.test.ts"), VITEST_TEST);
    writeFileSync(join(consumer, "scenario.mjs"), SCENARIO_MODULE);
    writeFileSync(join(consumer, "explore-workers.mjs"), EXPLORE_IN_WORKERS);
    writeFileSync(join(consumer, "conformance.mjs"), CONFORMANCE_RUN);
  }, 300_000);

  afterAll(() => {
    if (work !== "") rmSync(work, { recursive: true, force: true });
  });

  it.each(PACKAGES)("the @uffd/%s tarball holds the build, README, LICENSE and CHANGELOG and nothing else", (name) => {
    const p = packed.get(`@uffd/${name}`);
    expect(p).toBeDefined();
    const files = p!.files;
    for (const required of ["package.json", "README.md", "LICENSE", "CHANGELOG.md", "dist/index.js", "dist/index.d.ts"]) {
      expect(files).toContain(required);
    }
    const unexpected = files.filter((f) => !["package.json", "README.md", "LICENSE", "CHANGELOG.md"].includes(f) && !/^dist\/.+\.(js|mjs|d\.ts|d\.mts)$/.test(f) && !(EXTRA_FILES[name]?.test(f) ?? false));
    expect(unexpected).toEqual([]);
    expect(files.filter((f) => /(^|\/)(test|bench)\/|\.test\.|tsbuildinfo|uffd-bench|\.o$/.test(f))).toEqual([]);
    const manifest = JSON.parse(readFileSync(join(consumer, "node_modules", "@uffd", name, "package.json"), "utf8")) as Record<string, unknown>;
    expect(manifest["license"]).toBe("MIT");
    expect(manifest["publishConfig"]).toEqual({ access: "public" });
    for (const field of ["repository", "homepage", "bugs", "keywords", "engines"]) expect(manifest[field]).toBeDefined();
  });

  it("plain tsc with tsc --init's settings type-checks a handler, and plain node runs what it emits", () => {
    run(process.execPath, [TSC, "--init"]);
    run(process.execPath, [TSC, "-p", "."]); // exits non-zero on any type error
    expect(run("node", ["handler.js"]).trim()).toBe(HANDLER_OUTPUT);
  });

  it("the kernel's and the SDK's declarations type-check on their own (skipLibCheck off, no @types/node), and the SDK installs no rxjs", () => {
    run(process.execPath, [TSC, "--noEmit", "--module", "nodenext", "--target", "esnext", "--strict", "--exactOptionalPropertyTypes", "--noUncheckedIndexedAccess", "--types", "", "--skipLibCheck", "false", "--ignoreConfig", "handler.ts"]);
    expect(existsSync(join(consumer, "node_modules", "rxjs"))).toBe(false);
  });

  it("tsx runs the handler's TypeScript directly", () => {
    expect(run(process.execPath, [TSX, "handler.ts"]).trim()).toBe(HANDLER_OUTPUT);
  });

  it("esbuild bundles the handler for node and the bundle runs", () => {
    run(ESBUILD, ["handler.ts", "--bundle", "--platform=node", "--format=esm", "--outfile=bundle.mjs", "--log-level=warning"]);
    expect(run("node", ["bundle.mjs"]).trim()).toBe(HANDLER_OUTPUT);
  });

  it("plain node explores seeds in worker threads with the built explore worker", () => {
    expect(JSON.parse(run("node", ["explore-workers.mjs"]))).toEqual({ ok: true, seedsRun: 40 });
  });

  it("plain node runs a scenario through @uffd/conformance's simulation side, and its CLI starts", () => {
    expect(JSON.parse(run("node", ["conformance.mjs"]))).toEqual({ steps: 3, blocked: false });
    expect(run(join(consumer, "node_modules", ".bin", "uffd-conform"), ["--help"])).toMatch(/uffd-conform/);
  });

  it("vitest runs a test that explores seeds with @uffd/testing and its matchers", () => {
    writeFileSync(join(consumer, "vitest.config.ts"), `import { defineConfig } from "vitest/config";\nexport default defineConfig({ test: { include: ["*.test.ts"], setupFiles: ["@uffd/testing/setup"] } });\n`);
    const out = run(join(consumer, "node_modules", ".bin", "vitest"), ["run", "--reporter=verbose"]);
    expect(out).toContain("serves a missing fault under every explored seed");
    expect(out).toMatch(/Tests\s+1 passed/);
  });
});
