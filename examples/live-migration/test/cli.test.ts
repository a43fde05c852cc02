/**
 * The command line as `npm run demo` runs it (a smaller guest): exit status 0, the metrics
 * table, and the report paths, whose files exist.
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";

const CLI = fileURLToPath(new URL("../src/cli.ts", import.meta.url));
const TSX = pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href;

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ["--import", TSX, CLI, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    p.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    p.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

const SMALL = ["--memory", "8MiB", "--hot-set", "1MiB", "--workload", "hot:2000,scan:2000,random:500", "--warmup", "100ms", "--run-after", "100ms", "--bandwidth", "400mbit"];

describe("the CLI", () => {
  it("migrate prints the metrics table and the report paths", async () => {
    const out = await mkdtemp(join(tmpdir(), "lm-cli-"));
    const r = await run(["migrate", ...SMALL, "--out", out]);
    expect(r.stderr).not.toMatch(/error:/);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Live migration \(hybrid\)/);
    expect(r.stdout).toMatch(/downtime/);
    expect(r.stdout).toMatch(/verification\s+OK/);
    const html = /HTML report: (.+\.html)/.exec(r.stdout)?.[1];
    const json = /JSON report: (.+\.json)/.exec(r.stdout)?.[1];
    expect(html !== undefined && existsSync(html)).toBe(true);
    expect(json !== undefined && existsSync(json)).toBe(true);
  });

  it("rejects bad options with a message and status 1", async () => {
    const r = await run(["migrate", "--memory", "lots", "--out", tmpdir()]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/not a size: "lots"/);
  });
});
