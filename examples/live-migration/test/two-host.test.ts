/**
 * The two-command form on loopback: `migrate-dest --listen` and `migrate-source --connect` as two
 * separate OS processes started by hand (no orchestrator), authenticated by the HELLO token.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterEach, describe, expect, it } from "vitest";

const SCRIPT = fileURLToPath(new URL("../src/two-host.ts", import.meta.url));
const TSX = pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href;
const COMMON = ["--memory", "16MiB", "--workload", "hot:2000,scan:2000,random:500", "--latency", "1ms", "--bandwidth", "400mbit", "--warmup", "150ms", "--run-after", "100ms", "--timeout", "60s"];

interface Proc {
  child: ChildProcess;
  stdout: string[];
  exit: Promise<number | null>;
}

const started: Proc[] = [];
afterEach(() => {
  for (const p of started.splice(0)) if (p.child.exitCode === null) p.child.kill("SIGKILL");
});

function start(args: string[], token: string): Proc {
  const child = spawn(process.execPath, ["--import", TSX, SCRIPT, ...args], { env: { ...process.env, LM_TOKEN: token }, stdio: ["ignore", "pipe", "pipe"] });
  const stdout: string[] = [];
  let buf = "";
  child.stdout!.on("data", (c: Buffer) => {
    buf += c.toString();
    const lines = buf.split("\n");
    buf = lines.pop()!;
    stdout.push(...lines);
  });
  child.stderr!.on("data", () => {});
  const exit = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const p = { child, stdout, exit };
  started.push(p);
  return p;
}

async function listeningPort(p: Proc): Promise<number> {
  for (;;) {
    const line = p.stdout.find((l) => l.startsWith("listening on "));
    if (line !== undefined) return Number(line.slice(line.lastIndexOf(":") + 1));
    if (p.child.exitCode !== null) throw new Error("migrate-dest exited before listening");
    await new Promise((r) => setTimeout(r, 10));
  }
}

function result(p: Proc): Record<string, unknown> {
  const line = p.stdout.find((l) => l.startsWith("{"));
  if (line === undefined) throw new Error(`no result line in ${JSON.stringify(p.stdout)}`);
  return JSON.parse(line) as Record<string, unknown>;
}

describe("two commands, two processes, loopback", () => {
  it.each([
    ["postcopy", "--preempt"],
    ["hybrid", "--no-preempt"],
  ])("%s (%s): the destination verifies every page against the source's versions", { timeout: 120_000 }, async (strategy, preempt) => {
    const dir = await mkdtemp(join(tmpdir(), "lm-two-host-"));
    try {
      const token = randomBytes(16).toString("hex");
      const oracle = join(dir, "oracle.bin");
      const args = [...COMMON, "--strategy", strategy, "--oracle", oracle, ...(preempt === "--no-preempt" ? ["--no-preempt"] : [])];
      const dest = start(["migrate-dest", "--listen", "127.0.0.1:0", ...args], token);
      const port = await listeningPort(dest);
      const source = start(["migrate-source", "--connect", `127.0.0.1:${port}`, ...args], token);
      const [sc, dc] = await Promise.all([source.exit, dest.exit]);
      const s = result(source);
      const d = result(dest);
      expect(s).toMatchObject({ role: "source", ok: true, error: null, preempt: preempt === "--preempt" });
      expect(d).toMatchObject({ role: "destination", ok: true, error: null, oracle: "source", preempt: preempt === "--preempt" });
      expect(d["verification"]).toMatchObject({ ok: true, scope: "full", pagesChecked: 4096, mismatchedPages: 0, staleReads: 0, missingPages: 0 });
      expect([sc, dc]).toEqual([0, 0]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("each host on its own release (--kernel): a 5.10 source tracks with wp-sync and names its fallbacks; the 6.18 destination takes none", { timeout: 120_000 }, async () => {
    const token = randomBytes(16).toString("hex");
    const args = [...COMMON, "--strategy", "hybrid"];
    const dest = start(["migrate-dest", "--listen", "127.0.0.1:0", ...args, "--kernel", "6.18"], token);
    const port = await listeningPort(dest);
    const source = start(["migrate-source", "--connect", `127.0.0.1:${port}`, ...args, "--kernel", "5.10"], token);
    expect(await Promise.all([source.exit, dest.exit])).toEqual([0, 0]);
    // 5.10 lacks WP_ASYNC (6.7), /dev/userfaultfd (6.1) and WP_UNPOPULATED (6.4).
    expect(result(source)).toMatchObject({ ok: true, kernel: "5.10", trackingMethod: "wp-sync" });
    expect((result(source)["fallbacks"] as Array<{ wanted: string; used: string }>).map((f) => `${f.used} for ${f.wanted}`)).toEqual([
      "wp-sync dirty tracking for wp-async dirty tracking",
      "userfaultfd(2) for /dev/userfaultfd",
      "pre-populating the range for wp-unpopulated",
    ]);
    expect(result(dest)).toMatchObject({ ok: true, kernel: "6.18", fallbacks: [], oracle: "self" });
  });

  it("a source with the wrong token is refused; the destination keeps waiting for the right one", { timeout: 120_000 }, async () => {
    const token = randomBytes(16).toString("hex");
    const args = [...COMMON, "--strategy", "postcopy"];
    const dest = start(["migrate-dest", "--listen", "127.0.0.1:0", ...args], token);
    const port = await listeningPort(dest);
    const intruder = start(["migrate-source", "--connect", `127.0.0.1:${port}`, ...args], randomBytes(16).toString("hex"));
    expect(await intruder.exit).toBe(1);
    expect(result(intruder)).toMatchObject({ ok: false });
    expect(String(result(intruder)["error"])).toMatch(/wrong token/);
    const source = start(["migrate-source", "--connect", `127.0.0.1:${port}`, ...args], token);
    expect(await source.exit).toBe(0);
    expect(await dest.exit).toBe(0);
    // No oracle file: the destination checks that every page is exactly a version of itself.
    expect(result(dest)).toMatchObject({ ok: true, oracle: "self" });
  });
});
