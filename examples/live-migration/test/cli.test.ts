/**
 * The command line as a user runs it, in a child process: a migration as `npm run demo` runs it
 * (a smaller guest), `--version`, usage errors (the error and a pointer to --help, not the whole
 * help), options checked and report paths prepared before anything runs, a failed run that still
 * writes its report, and `report <run>.json` writing `<run>.html`.
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { bandwidthArg, configFromOptions } from "../src/cli.ts";
import { DEFAULT_CONFIG, frameStoreFor } from "../src/config.ts";
import { isFailedRun, readResults } from "../src/report.ts";
import { fixtureResult } from "./fixtures.ts";

const CLI = fileURLToPath(new URL("../src/cli.ts", import.meta.url));
const TSX = pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href;
const PACKAGE = JSON.parse(await readFile(new URL("../package.json", import.meta.url), "utf8")) as { version: string };

/** Runs the CLI; a run that outlives `killAfterMs` is killed (and then fails its test on the exit status). */
function run(args: string[], killAfterMs = 90_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ["--import", TSX, CLI, ...args], { stdio: ["ignore", "pipe", "pipe"], timeout: killAfterMs, killSignal: "SIGKILL" });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    p.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    p.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** The demo's workload on an 8 MiB guest; no --hot-set, so the default 16 MiB hot set must be clamped to the guest. */
const SMALL = ["--memory", "8MiB", "--workload", "hot:2000,scan:2000,random:500", "--warmup", "100ms", "--run-after", "100ms", "--bandwidth", "400mbit", "--no-progress"];

/** What a usage error looks like: status 1, the error, a pointer to --help, no help text, nothing run. */
function expectUsageError(r: { code: number | null; stdout: string; stderr: string }, message: RegExp, command = "migrate"): void {
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(message);
  expect(r.stderr).toContain(`(see ${command} --help for the options)`);
  expect(r.stderr).not.toContain("Options:");
  expect(r.stdout).toBe("");
}

describe("the CLI", () => {
  it("migrate prints the metrics table and the report paths, with the hot set clamped to a guest smaller than it", async () => {
    const out = await mkdtemp(join(tmpdir(), "lm-cli-"));
    const r = await run(["migrate", ...SMALL, "--out", out]);
    expect(r.stderr).not.toMatch(/error:/);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Live migration \(hybrid\)/);
    expect(r.stdout).toMatch(/downtime \[1\]/);
    expect(r.stdout).toMatch(/verification\s+OK/);
    const html = /HTML report: (.+\.html)/.exec(r.stdout)?.[1];
    const json = /JSON report: (.+\.json)/.exec(r.stdout)?.[1];
    expect(html !== undefined && existsSync(html)).toBe(true);
    expect(json !== undefined && existsSync(json)).toBe(true);
    const [result] = await readResults(json!);
    expect(result!.config.hotSetBytes).toBe(8 * 1024 * 1024);
  });

  it("--source-kernel and --dest-kernel: each side runs its release; the table names them and each side's fallbacks", async () => {
    const out = await mkdtemp(join(tmpdir(), "lm-cli-"));
    const r = await run(["migrate", ...SMALL, "--source-kernel", "5.10", "--dest-kernel", "6.18", "--out", out]);
    expect(r.stderr).not.toMatch(/error:/);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/, kernel 5\.10 -> 6\.18\n/);
    expect(r.stdout).toMatch(/kernel: source \/ destination\s+5\.10 \/ 6\.18\n/);
    expect(r.stdout).toMatch(/dirty tracking\s+wp-sync\n/);
    // 5.10: no WP_ASYNC (6.7), no /dev/userfaultfd (6.1), no WP_UNPOPULATED (6.4); 6.18 has all.
    expect(r.stdout).toMatch(/source fallbacks\s+no wp-async, \/dev\/userfaultfd, wp-unpopulated\n/);
    expect(r.stdout).toContain("note: source kernel 5.10: wp-sync dirty tracking instead of wp-async dirty tracking (wp-async came in Linux 6.7; this kernel is 5.10-uffd) (hybrid)");
    expect(r.stdout).toContain("note: source kernel 5.10: pre-populating the range instead of wp-unpopulated (wp-unpopulated came in Linux 6.4; this kernel is 5.10-uffd) (hybrid)");
    expect(r.stdout).toMatch(/destination postcopy fill\s+UFFDIO_COPY \/ UFFDIO_ZEROPAGE\n/);
    expect(r.stdout).toMatch(/destination fallbacks\s+none\n/);
    expect(r.stdout).toContain("note: source kernel 5.10: userfaultfd(2) instead of /dev/userfaultfd (/dev/userfaultfd came in Linux 6.1; this kernel is 5.10-uffd) (hybrid)");
    expect(r.stdout).toMatch(/verification\s+OK/);
    expectUsageError(await run(["migrate", "--kernel", "5.4"]), /^error: option '--kernel <release>' argument '5\.4' is invalid\. Allowed choices are 5\.7, 5\.10, 5\.15, 5\.18, 6\.1, 6\.6, 6\.12, 6\.18\./);
  });

  it("--version prints the package's version, also after a command (npm run demo -- --version)", async () => {
    expect(await run(["--version"])).toEqual({ code: 0, stdout: `${PACKAGE.version}\n`, stderr: "" });
    expect(await run(["migrate", "--version"])).toEqual({ code: 0, stdout: `${PACKAGE.version}\n`, stderr: "" });
  });

  it("a bad option value: the error and a pointer to --help, not the whole help", async () => {
    expectUsageError(await run(["migrate", "--memory", "lots"]), /^error: not a size: "lots"/);
  });

  it("an unknown option or command: the same", async () => {
    expectUsageError(await run(["migrate", "--bogus"]), /^error: unknown option '--bogus'/);
    const r = await run(["migrat"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/unknown command 'migrat'/);
    expect(r.stderr).toContain("(see --help for the commands and options)");
    expect(r.stderr).not.toContain("Options:");
  });

  it("--bandwidth 0 is refused (it would be a dead link), unlimited is how to ask for no limit", async () => {
    expectUsageError(await run(["migrate", "--bandwidth", "0"]), /--bandwidth 0 would be a link that carries nothing; say --bandwidth unlimited/);
    expect(() => bandwidthArg("0mbit")).toThrow(/--bandwidth 0mbit would be a link that carries nothing/);
    expect(bandwidthArg("unlimited")).toBe(0);
    expect(bandwidthArg("8mbit")).toBe(1e6);
  });

  it("an --out that cannot be created fails at once, before the run (it used to hang in Node's recursive mkdir)", async () => {
    const r = await run(["compare", "--out", "/proc/nope"], 30_000);
    expectUsageError(r, /^error: cannot write the JSON report \/proc\/nope\/comparison-[^ ]+\.json: cannot create the directory \/proc\/nope: ENOENT/, "compare");
  });

  it("a --json that is a directory, or an --out that is a file, fails before the run", async () => {
    const dir = await mkdtemp(join(tmpdir(), "lm-cli-"));
    expectUsageError(await run(["migrate", "--json", dir]), new RegExp(`^error: cannot write the JSON report ${dir}: ${dir} is a directory, not a file`));
    await writeFile(join(dir, "file"), "");
    expectUsageError(await run(["migrate", "--out", join(dir, "file")]), /a part of the path is a file, not a directory|exists and is not a directory/);
  });

  it("a failed run prints its error, still writes its report, and exits 1", async () => {
    const out = await mkdtemp(join(tmpdir(), "lm-cli-"));
    const r = await run(["migrate", "--strategy", "postcopy", ...SMALL, "--drop-link-after", "200", "--out", out]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error: migration failed: connection to the source lost during postcopy/);
    const json = /JSON report: (.+\.json)/.exec(r.stdout)?.[1];
    const html = /HTML report: (.+\.html)/.exec(r.stdout)?.[1];
    expect(json !== undefined && html !== undefined).toBe(true);
    const [record] = await readResults(json!);
    expect(isFailedRun(record!)).toBe(true);
    if (!isFailedRun(record!)) return;
    expect(record.failure).toMatch(/fault injection: connection dropped after 200 postcopy pages/);
    expect(record.verification).toMatchObject({ ok: true, scope: "partial", filledMissingPages: 0 });
    expect(await readFile(html!, "utf8")).toContain('<pre class="failure">migration failed: connection to the source lost during postcopy');
  });

  it("report <run>.json writes <run>.html beside it, or into --out", async () => {
    const dir = await mkdtemp(join(tmpdir(), "lm-cli-"));
    const json = join(dir, "my-run.json");
    await writeFile(json, JSON.stringify(fixtureResult()));
    const r = await run(["report", json]);
    expect(r).toMatchObject({ code: 0, stdout: `HTML report: ${join(dir, "my-run.html")}\n` });
    expect(await readFile(join(dir, "my-run.html"), "utf8")).toMatch(/^<!DOCTYPE html>/);
    const r2 = await run(["report", json, "--out", join(dir, "elsewhere")]);
    expect(r2).toMatchObject({ code: 0, stdout: `HTML report: ${join(dir, "elsewhere", "my-run.html")}\n` });
    const bad = await run(["report", join(dir, "missing.json")]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^error: .*missing\.json: ENOENT/);
  });
});

describe("options to configuration", () => {
  const options = {
    memory: "8MiB",
    populate: "0.5",
    workload: "none",
    warmup: "0",
    runAfter: "0",
    latency: "1ms",
    bandwidth: "1gbit",
    maxDowntime: "50ms",
    maxRounds: "30",
    hybridRounds: "1",
    tracking: "auto" as const,
    frameStore: "auto" as const,
    kernel: "6.18" as const,
    seed: "1",
    timeout: "10s",
    out: "reports",
    html: true,
    progress: false,
  };

  it("the default hot set is at most the guest; an explicit one larger than the guest is an error", () => {
    expect(configFromOptions(options, "hybrid").hotSetBytes).toBe(8 * 1024 * 1024);
    expect(configFromOptions({ ...options, memory: "256MiB" }, "hybrid").hotSetBytes).toBe(DEFAULT_CONFIG.hotSetBytes);
    expect(() => configFromOptions({ ...options, hotSet: "16MiB" }, "hybrid")).toThrow(/the hot set must be between one page and the guest size/);
  });

  it("--kernel sets both sides; --source-kernel and --dest-kernel override one each", () => {
    expect(configFromOptions(options, "hybrid").kernel).toEqual({ source: "6.18", destination: "6.18" });
    expect(configFromOptions({ ...options, kernel: "5.10" }, "hybrid").kernel).toEqual({ source: "5.10", destination: "5.10" });
    expect(configFromOptions({ ...options, kernel: "5.10", destKernel: "6.6" }, "hybrid").kernel).toEqual({ source: "5.10", destination: "6.6" });
    expect(configFromOptions({ ...options, sourceKernel: "6.1" }, "hybrid").kernel).toEqual({ source: "6.1", destination: "6.18" });
    expect(() => configFromOptions({ ...options, kernel: "4.19" as never }, "hybrid")).toThrow('unknown source kernel release "4.19" (one of 5.7, 5.10, 5.15, 5.18, 6.1, 6.6, 6.12, 6.18)');
  });

  it("--frame-store: flat and compact are taken as given; auto is resolved for this host's RAM", () => {
    expect(configFromOptions({ ...options, frameStore: "flat" }, "hybrid").frameStore).toBe("flat");
    expect(configFromOptions({ ...options, frameStore: "compact" }, "hybrid").frameStore).toBe("compact");
    expect(configFromOptions(options, "hybrid").frameStore).toBe(frameStoreFor(8 * 1024 * 1024));
    expect(() => configFromOptions({ ...options, frameStore: "dedup" as never }, "hybrid")).toThrow('unknown frame store "dedup" (one of auto, compact, flat)');
  });

  it("auto picks flat while both guests fit in half the host's RAM, compact past that", () => {
    const GiB = 1024 ** 3;
    expect(frameStoreFor(1 * GiB, 24 * GiB)).toBe("flat");
    expect(frameStoreFor(6 * GiB, 24 * GiB)).toBe("flat");
    expect(frameStoreFor(6 * GiB + 4096, 24 * GiB)).toBe("compact");
    expect(frameStoreFor(16 * GiB, 24 * GiB)).toBe("compact");
    expect(frameStoreFor(1 * GiB, 2 * GiB)).toBe("compact");
  });

  it("numbers must be numbers", () => {
    expect(() => configFromOptions({ ...options, seed: "" }, "hybrid")).toThrow(/--seed must be a non-negative integer, got ""/);
    expect(() => configFromOptions({ ...options, populate: "half" }, "hybrid")).toThrow(/--populate must be a number within \[0, 1\], got "half"/);
  });
});
