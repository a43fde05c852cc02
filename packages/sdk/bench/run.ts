/**
 * The SDK's part of `npm run bench`: missing+copy round trips through the raw uAPI and through
 * the SDK, on the same scenery, and the SDK's overhead as a ratio (raw rate / SDK rate; 1.00 =
 * no overhead). `--quick` shrinks the sizes for a smoke run.
 */
import { cpus } from "node:os";
import { READ_BATCH, roundTripRates, THREADS } from "./roundtrip.ts";

const quick = process.argv.includes("--quick");
const PAGES = quick ? 512 : 16384;
const RUNS = quick ? 3 : 7;
const WARMUP = quick ? 1 : 2;

const fmt = (n: number): string => Math.round(n).toLocaleString("en-US");

console.log(`sdk bench${quick ? " (--quick)" : ""}: node ${process.version}, ${cpus()[0]?.model ?? "unknown cpu"}, median of ${RUNS} interleaved runs after ${WARMUP} warm-up`);
console.log(`missing+copy round trips, ${PAGES} pages, ${THREADS} threads, up to ${READ_BATCH} messages per read(2)`);
const { raw, sdk } = await roundTripRates(PAGES, RUNS, WARMUP);
console.log("");
console.log(`  raw uAPI  ${fmt(raw.opsPerSec).padStart(12)} round trips/s  (median ${raw.medianMs.toFixed(1)} ms)`);
console.log(`  SDK       ${fmt(sdk.opsPerSec).padStart(12)} round trips/s  (median ${sdk.medianMs.toFixed(1)} ms)`);
console.log(`  SDK overhead over the raw path: ${(raw.opsPerSec / sdk.opsPerSec).toFixed(2)}x (raw rate / SDK rate)`);
