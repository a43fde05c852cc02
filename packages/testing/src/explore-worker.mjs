// A worker thread of explore() (explore.ts, exploreInWorkers()): it loads the scenario named by
// workerData.ref, then runs the batches of seeds the main thread sends and answers with the
// indexes of the seeds that failed. Plain JavaScript so that it starts without a loader; when
// the package runs from TypeScript sources, tsx (if installed) is registered first.
import { existsSync } from "node:fs";
import { parentPort, workerData } from "node:worker_threads";

// Beside the built package's explore.js (dist), or the workspace's explore.ts (src).
const ext = existsSync(new URL("./explore.js", import.meta.url)) ? ".js" : ".ts";

try {
  const { register } = await import("tsx/esm/api");
  register();
} catch {
  // No tsx: the package and the scenario module are JavaScript already.
}

try {
  await import(new URL(`./setup${ext}`, import.meta.url).href); // the kit's matchers, as in vitest
  const { runSeed, loadScenario } = await import(new URL(`./explore${ext}`, import.meta.url).href);
  const { setErrnoStackTraces } = await import("@uffd/kernel");
  setErrnoStackTraces(workerData.options.errnoStacks === true);
  const scenario = await loadScenario(workerData.ref);
  parentPort.on("message", async (m) => {
    if (m.stop) {
      parentPort.close();
      return;
    }
    try {
      const failed = [];
      for (let i = 0; i < m.seeds.length; i++) {
        const r = await runSeed(scenario, m.seeds[i], workerData.options);
        if (!r.ok) failed.push(i);
        else r.world.kernel.core.mem.releaseToPool();
      }
      parentPort.postMessage({ batch: m.batch, failed });
    } catch (e) {
      parentPort.postMessage({ error: e instanceof Error ? (e.stack ?? e.message) : String(e) });
    }
  });
} catch (e) {
  parentPort.postMessage({ error: e instanceof Error ? (e.stack ?? e.message) : String(e) });
}
