import { it } from "vitest";
import { explore } from "@uffd/testing";
import { prefetchScenario } from "./handlers.ts";
it("exp", async () => {
  for (const fixed of [false, true]) {
    const t0 = performance.now();
    const r = await explore(prefetchScenario(fixed), { seeds: 1000, stopOnFailure: false, throwOnFailure: false });
    console.log(fixed, "failures", r.failures.length, r.failures.slice(0, 10).map((f) => `${f.seed}@${f.probability}`).join(" "), (performance.now() - t0).toFixed(0), "ms");
    if (r.firstFailure) console.log(r.report().slice(0, 4000));
  }
}, 120000);
