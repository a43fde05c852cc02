/**
 * One round-trip job in this process, for profiling and quick comparisons (not a bench run: one
 * process, no real-kernel side, nothing written):
 *
 *   NODE_OPTIONS=--conditions=@uffd/source taskset -c 0 npx tsx packages/kernel/bench/one.ts raw|sdk [trip] [one|fast] [pages] [runs]
 *   ... node --import tsx --cpu-prof packages/kernel/bench/one.ts sdk missing+copy fast   (a V8 CPU profile)
 *
 * trip: missing+copy (default), missing+zeropage, wp+unprotect, minor+continue; one: 1 thread,
 * 1 message per read (default); fast: 32 threads, up to 64 messages per read. Prints the median
 * and best run's rate and the CPU share of the timed wall time.
 */
import { ROUND_TRIPS, type RoundTrip } from "./uffd.ts";
import { runJob } from "./jobs.ts";

const [via = "raw", trip = "missing+copy", shape = "one", pages, runs] = process.argv.slice(2);
if ((via !== "raw" && via !== "sdk") || !(ROUND_TRIPS as readonly string[]).includes(trip) || (shape !== "one" && shape !== "fast")) {
  console.error("usage: one.ts raw|sdk [missing+copy|missing+zeropage|wp+unprotect|minor+continue] [one|fast] [pages] [runs]");
  process.exit(2);
}
const fast = shape === "fast";
const job = {
  kind: "roundTrip" as const,
  via: via as "raw" | "sdk",
  trip: trip as RoundTrip,
  shape: fast ? { threads: 32, batch: 64 } : { threads: 1, batch: 1 },
  pages: pages ? Number(pages) : fast ? 4992 : 5000,
};
const r = await runJob(job, { quick: false, runs: runs ? Number(runs) : 15, warmup: 2 });
if (!("rate" in r)) {
  console.error(JSON.stringify(r));
  process.exit(1);
}
const x = r.rate;
console.log(`${via} ${trip} ${shape}: median ${Math.round(x.opsPerSec)}/s, best run ${Math.round((x.opsPerRun * 1000) / x.minMs)}/s, CPU ${(x.cpuShare * 100).toFixed(0)}% of wall`);
