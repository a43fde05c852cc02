import { makeConfig, type ConfigOverrides, type MigrationConfig } from "../src/config.ts";

/** The CI configuration: a 16 MiB guest, a light workload, a 1 ms link; small and fast. */
export function smallConfig(overrides: ConfigOverrides = {}): MigrationConfig {
  return makeConfig({
    memoryBytes: 16 * 1024 * 1024,
    hotSetBytes: 1024 * 1024,
    workload: [
      { kind: "hot", rate: 2000 },
      { kind: "scan", rate: 2000 },
      { kind: "random", rate: 500 },
    ],
    warmupMs: 150,
    runAfterMs: 100,
    link: { latencyMs: 1, bandwidthBytesPerSec: 400e6 / 8 },
    timeoutMs: 30_000,
    ...overrides,
  });
}
