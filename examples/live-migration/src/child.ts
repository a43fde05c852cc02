/**
 * Entry point of the two OS processes the orchestrator forks: `child.ts source` or
 * `child.ts destination`. Each owns one simulated kernel with one guest. The process exits when
 * told to, when its parent goes away (the IPC channel closes), or on an uncaught error after
 * reporting it: nothing outlives the run.
 */
import { MigrationDestination } from "./dest.ts";
import type { FromChild, Role, ToChild } from "./ipc.ts";
import { MigrationSource } from "./source.ts";

function send(msg: FromChild): void {
  process.send?.(msg);
}

/** Programming errors (and kernel bugs) keep a few stack frames: they are bugs to chase, not outcomes. */
const BUG_NAMES: ReadonlySet<string> = new Set(["TypeError", "ReferenceError", "KernelBug", "SyntaxError"]);

function errorMessage(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  if (!BUG_NAMES.has(e.name) || e.stack === undefined) return e.message;
  return e.stack.split("\n").slice(0, 5).join("\n    ");
}

async function runSource(first: Extract<ToChild, { cmd: "init" }>): Promise<void> {
  const source = await MigrationSource.boot(first.config, {
    progress: (phase, done, total) => send({ ev: "progress", phase, done, total }),
    oracle: (versions) => send({ ev: "oracle", versions }),
  });
  await new Promise((resolve) => setTimeout(resolve, first.config.warmupMs));
  process.on("message", (msg: ToChild) => {
    if (msg.cmd !== "migrate") return;
    source.migrate({ port: msg.port }, msg.startEpochMs, first.token).then(
      (metrics) => send({ ev: "source-result", metrics }),
      (e: unknown) => send({ ev: "error", message: `source: ${errorMessage(e)}`, source: source.partialMetrics() }),
    );
  });
  send({ ev: "ready", port: null });
}

async function runDestination(first: Extract<ToChild, { cmd: "init" }>): Promise<void> {
  const dest = await MigrationDestination.create(first.config, {
    progress: (phase, done, total) => send({ ev: "progress", phase, done, total }),
    resumed: () => send({ ev: "resumed" }),
    complete: () => send({ ev: "complete" }),
    failed: (message) => send({ ev: "failed", message }),
  }, first.token);
  process.on("message", (msg: ToChild) => {
    if (msg.cmd !== "verify") return;
    dest.verify(msg.oracle, (done, total) => send({ ev: "progress", phase: "verify", done, total })).then(
      (verification) => send({ ev: "dest-result", metrics: dest.metrics(), verification }),
      (e: unknown) => send({ ev: "error", message: `destination: ${errorMessage(e)}`, destination: dest.metrics() }),
    );
  });
  const port = await dest.listen();
  send({ ev: "ready", port });
}

function main(): void {
  const role = process.argv[2] as Role | undefined;
  if (process.send === undefined || (role !== "source" && role !== "destination")) {
    console.error("child.ts is started by the orchestrator: fork(child.ts, [source|destination]) with an IPC channel");
    process.exit(2);
  }
  process.on("disconnect", () => process.exit(0));
  process.on("message", (msg: ToChild) => {
    if (msg.cmd === "exit") process.exit(0);
  });
  process.once("message", (msg: ToChild) => {
    if (msg.cmd !== "init") return;
    const run = role === "source" ? runSource(msg) : runDestination(msg);
    run.catch((e: unknown) => {
      send({ ev: "error", message: `${role}: ${errorMessage(e)}` });
    });
  });
  process.on("uncaughtException", (e) => {
    send({ ev: "error", message: `${role} crashed: ${e.stack ?? e.message}` });
    setTimeout(() => process.exit(1), 100);
  });
}

main();
