/**
 * Progress display for long phases: cli-progress bars on a terminal, one line per phase
 * otherwise (CI logs, pipes), nothing when disabled.
 */
import cliProgress from "cli-progress";
import type { Role } from "./ipc.ts";
import type { RunHooks } from "./orchestrator.ts";

export type ProgressMode = "bars" | "lines" | "off";

export class ProgressView {
  readonly #mode: ProgressMode;
  readonly #multi: cliProgress.MultiBar | null;
  readonly #bars = new Map<string, cliProgress.SingleBar>();
  readonly #announced = new Set<string>();
  readonly #prefix: string;

  constructor(mode: ProgressMode, prefix: string) {
    this.#mode = mode;
    this.#prefix = prefix;
    this.#multi =
      mode === "bars"
        ? new cliProgress.MultiBar(
            { format: " {label} |{bar}| {percentage}% {value}/{total}", hideCursor: true, clearOnComplete: false, stopOnComplete: false, etaBuffer: 50 },
            cliProgress.Presets.shades_classic,
          )
        : null;
  }

  hooks(): RunHooks {
    return {
      progress: (side, phase, done, total) => this.update(side, phase, done, total),
      event: (side, what) => this.log(`${side}: ${what}`),
    };
  }

  update(side: Role, phase: string, done: number, total: number): void {
    const key = `${side} ${phase}`;
    const label = `${this.#prefix}${key}`.padEnd(36);
    if (this.#mode === "lines") {
      if (!this.#announced.has(key)) {
        this.#announced.add(key);
        console.error(`${label} started (${total} pages)`);
      }
      if (done >= total && !this.#announced.has(`${key}/done`)) {
        this.#announced.add(`${key}/done`);
        console.error(`${label} done`);
      }
      return;
    }
    if (this.#multi === null) return;
    let bar = this.#bars.get(key);
    if (bar === undefined) {
      bar = this.#multi.create(Math.max(total, 1), 0, { label });
      this.#bars.set(key, bar);
    }
    bar.setTotal(Math.max(total, 1));
    bar.update(Math.min(done, total), { label });
  }

  log(line: string): void {
    if (this.#mode === "off") return;
    if (this.#multi !== null) this.#multi.log(`${this.#prefix}${line}\n`);
    else console.error(`${this.#prefix}${line}`);
  }

  stop(): void {
    this.#multi?.stop();
  }
}
