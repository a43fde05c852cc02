/**
 * The API reference (TypeDoc, tools/api-docs) covers every entry point of every published
 * package, and every public export, class member and field there has a doc comment: TypeDoc's
 * validation (notDocumented, notExported, invalidLink) runs with treatWarningsAsErrors, so one
 * undocumented export fails this test with TypeDoc's warning naming it.
 *
 * The entry points come from the exports maps (tools/api-docs/typedoc.config.mjs).
 *
 * Budget: TypeDoc reads all three packages' sources with its own TypeScript, 20 to 60 s.
 */
import { execFileSync } from "node:child_process";
import { createRequire } from "node:module";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const TOOLS = join(ROOT, "tools", "api-docs");
const TYPEDOC = join(dirname(createRequire(join(TOOLS, "package.json")).resolve("typedoc/package.json")), "bin", "typedoc");

describe("the API reference", () => {
  it("takes its entry points from every published package's exports map", async () => {
    const config = (await import(pathToFileURL(join(TOOLS, "typedoc.config.mjs")).href)) as {
      default: { entryPoints: string[]; packagesRequiringDocumentation: string[] };
    };
    const entries = config.default.entryPoints.map((p) => relative(ROOT, p)).sort();
    // The five entries of the three packages at least; a new package or entry joins by itself.
    expect(entries).toEqual(expect.arrayContaining([
      "packages/kernel/src/index.ts",
      "packages/kernel/src/uapi/index.ts",
      "packages/sdk/src/index.ts",
      "packages/testing/src/index.ts",
      "packages/testing/src/setup.ts",
    ]));
    expect(config.default.packagesRequiringDocumentation).toEqual(expect.arrayContaining(["@uffd/kernel", "@uffd/sdk", "@uffd/testing"]));
  });

  it("builds with every public export documented, every link resolved and every referenced type exported", { timeout: 300_000 }, () => {
    let output = "";
    try {
      output = execFileSync(process.execPath, [TYPEDOC, "--options", "typedoc.config.mjs", "--emit", "none"], { cwd: TOOLS, encoding: "utf8", stdio: "pipe", env: { ...process.env, NO_COLOR: "1" } });
    } catch (e) {
      const err = e as { stdout?: string; stderr?: string };
      throw new Error(`TypeDoc failed:\n${err.stdout ?? ""}${err.stderr ?? ""}`);
    }
    expect(output).not.toMatch(/\[warning\]|\[error\]/);
  });
});
