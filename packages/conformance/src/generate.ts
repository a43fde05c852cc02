/**
 * The seeded random scenario generator (fast-check). A scenario is a setup (a memfd, a few
 * regions of the kinds below, a userfaultfd with random features and registrations) followed by
 * random steps over the public contract. Every step names things by the fixed vocabulary below;
 * a step whose names do not exist (after shrinking removed the line that made them, or after an
 * unmap) is skipped alike on both sides, so fast-check may delete any line while shrinking and
 * the result is still a valid scenario.
 *
 * The mix leans where divergences were reported: shmem, poison markers and uffd-wp markers under
 * madvise (DONTNEED, REMOVE, FREE, PAGEOUT, COLD) and under fork, mremap and hole punching.
 */
import fc from "fast-check";
import { formatScenario, parseScenario, type Scenario } from "./scenario.ts";

type Line = string;

const REGIONS = ["A", "B", "S", "M", "P"] as const;
/** How each region is mapped: anon private, anon private, shared anon, memfd shared, memfd private. */
const REGION_MAP: Readonly<Record<(typeof REGIONS)[number], string>> = {
  A: "map A 4 anon",
  B: "map B 4 anon",
  S: "map S 4 shanon",
  M: "map M 4 shared F",
  P: "map P 4 private F",
};
const PAGES = 4;

const FEATURE_SETS = [
  "0",
  "wp_unpopulated",
  "wp_async",
  "remove,unmap,remap",
  "fork,remove",
  "missing_shmem,minor_shmem,wp_shmem",
  "missing_shmem,wp_shmem,wp_unpopulated,remove",
  "sigbus",
  "poison,move",
] as const;

const MODES = ["missing", "wp", "missing,wp", "minor", "minor,wp", "missing,minor,wp"] as const;
const ADVICE = ["dontneed", "remove", "free", "pageout", "cold", "willneed", "populate_read", "populate_write", "dontfork", "wipeonfork", "guard_install", "guard_remove", "dontneed_locked"] as const;

const region = fc.constantFrom(...REGIONS);
const off = fc.integer({ min: 0, max: PAGES - 1 });
const len = fc.integer({ min: 1, max: 2 });
const byte = fc.integer({ min: 1, max: 255 });
const proc = fc.constantFrom("", "", "", "@c1 ");

/** One random step, as a line. */
export const stepArb: fc.Arbitrary<Line> = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(proc, region, off, len).map(([p, r, o, n]) => `${p}read ${r} ${o} ${n}`) },
  { weight: 6, arbitrary: fc.tuple(proc, region, off, len, byte).map(([p, r, o, n, b]) => `${p}write ${r} ${o} ${n} ${b}`) },
  { weight: 6, arbitrary: fc.tuple(proc, region).map(([p, r]) => `${p}pagemap ${r} 0 ${PAGES}`) },
  { weight: 6, arbitrary: fc.tuple(proc, region, off, len, fc.constantFrom(...ADVICE)).map(([p, r, o, n, a]) => `${p}advise ${r} ${o} ${n} ${a}`) },
  // Reclaim and zap of the whole region, where markers and shmem meet.
  { weight: 4, arbitrary: fc.tuple(proc, region, fc.constantFrom("pageout", "cold", "dontneed", "remove", "free")).map(([p, r, a]) => `${p}advise ${r} 0 ${PAGES} ${a}`) },
  // PageAnonExclusive by its consequences (no kpageflags bit shows it): a write then pagemap shows
  // whether the write reused the frame or copied it; a move there and back answers EBUSY for a
  // page (or swap entry) that is not exclusive. Two lines in one, so shrinking keeps them together.
  { weight: 3, arbitrary: fc.tuple(proc, region, off, byte).map(([p, r, o, b]) => `${p}write ${r} ${o} 1 ${b}\n${p}pagemap ${r} ${o} 1`) },
  { weight: 2, arbitrary: fc.tuple(region, off, region, off).map(([d, o, s, so]) => `move U ${d} ${o} ${s} ${so} 1\nmove U ${s} ${so} ${d} ${o} 1`) },
  // Page-out and swap-in (with `# swap: zram`): the whole region, then accesses bring it back.
  { weight: 4, arbitrary: fc.tuple(proc, region, off, len).map(([p, r, o, n]) => `${p}advise ${r} ${o} ${n} pageout`) },
  { weight: 4, arbitrary: fc.tuple(region, off, len, fc.constantFrom("on", "off")).map(([r, o, n, m]) => `wp U ${r} ${o} ${n} ${m}`) },
  { weight: 3, arbitrary: fc.tuple(region, off, len).map(([r, o, n]) => `poison U ${r} ${o} ${n}`) },
  { weight: 4, arbitrary: fc.tuple(region, off, len, byte, fc.constantFrom("", " wp", " dontwake")).map(([r, o, n, b, f]) => `copy U ${r} ${o} ${n} ${b}${f}`) },
  { weight: 2, arbitrary: fc.tuple(region, off, len).map(([r, o, n]) => `zeropage U ${r} ${o} ${n}`) },
  { weight: 3, arbitrary: fc.tuple(region, off, len, fc.constantFrom("", " wp")).map(([r, o, n, f]) => `continue U ${r} ${o} ${n}${f}`) },
  { weight: 2, arbitrary: fc.tuple(region, off, region, off, len, fc.constantFrom("", " holes")).map(([d, o, s, so, n, f]) => `move U ${d} ${o} ${s} ${so} ${n}${f}`) },
  { weight: 2, arbitrary: fc.tuple(region, off, len, fc.constantFrom(...MODES)).map(([r, o, n, m]) => `register U ${r} ${o} ${n} ${m}`) },
  { weight: 1, arbitrary: fc.tuple(region, off, len).map(([r, o, n]) => `unregister U ${r} ${o} ${n}`) },
  { weight: 2, arbitrary: fc.tuple(region, off, len).map(([r, o, n]) => `wake U ${r} ${o} ${n}`) },
  { weight: 3, arbitrary: fc.constantFrom("msgs U", "@c1 msgs U", "msgs U.1") },
  { weight: 1, arbitrary: fc.constant("fork c1") },
  { weight: 1, arbitrary: fc.constant("@c1 exit") },
  { weight: 1, arbitrary: fc.tuple(proc, region, off, len, fc.constantFrom("r", "rw", "none")).map(([p, r, o, n, m]) => `${p}protect ${r} ${o} ${n} ${m}`) },
  { weight: 1, arbitrary: fc.tuple(region, off, len).map(([r, o, n]) => `unmap ${r} ${o} ${n}`) },
  { weight: 1, arbitrary: fc.tuple(region, fc.integer({ min: 1, max: 6 }), fc.constantFrom("", " move")).map(([r, n, f]) => `remap ${r} ${n}${f}`) },
  { weight: 2, arbitrary: fc.tuple(off, len).map(([o, n]) => `punch F ${o} ${n}`) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: PAGES + 2 }).map((n) => `truncate F ${n}`) },
  { weight: 2, arbitrary: fc.tuple(off, len, byte).map(([o, n, b]) => `pwrite F ${o} ${n} ${b}`) },
  { weight: 1, arbitrary: fc.tuple(off, len).map(([o, n]) => `pread F ${o} ${n}`) },
  { weight: 1, arbitrary: fc.tuple(region, off, len).map(([r, o, n]) => `pread F ${o} ${n} into ${r} ${o}`) },
  { weight: 1, arbitrary: fc.tuple(region, off).map(([r, o]) => `pwrite F ${o} 1 from ${r} ${o}`) },
  { weight: 2, arbitrary: fc.tuple(proc, region).map(([p, r]) => `${p}mincore ${r} 0 ${PAGES}`) },
  { weight: 2, arbitrary: fc.tuple(region, fc.constantFrom("", " wpmatch mask=0x2 ret=0x2", " ret=0x7e", " wpmatch vec=0")).map(([r, f]) => `scan ${r} 0 ${PAGES}${f}`) },
  { weight: 1, arbitrary: fc.tuple(proc, region).map(([p, r]) => `${p}smaps ${r}`) },
  { weight: 1, arbitrary: fc.constant("close U") },
  // File offsets, seals and f_pos_lock: F is the memfd itself (no f_pos_lock), G the same file
  // reopened through /proc/self/fd (FMODE_ATOMIC_POS); a write from user memory may sleep on a
  // userfault holding the inode lock (and G's f_pos_lock) while the others queue behind it.
  { weight: 1, arbitrary: fc.constant("reopen G F") },
  { weight: 2, arbitrary: fc.tuple(proc, fc.constantFrom("F", "G"), fc.integer({ min: 0, max: PAGES + 1 }), fc.constantFrom("set", "cur", "end", "data", "hole")).map(([p, f, o, w]) => `${p}lseek ${f} ${o} ${w}`) },
  { weight: 1, arbitrary: fc.tuple(proc, fc.constantFrom("F", "G"), len).map(([p, f, n]) => `${p}fread ${f} ${n}`) },
  { weight: 1, arbitrary: fc.tuple(proc, fc.constantFrom("F", "G"), len, byte).map(([p, f, n, b]) => `${p}fwrite ${f} ${n} ${b}`) },
  { weight: 1, arbitrary: fc.tuple(proc, fc.constantFrom("F", "G"), region, off).map(([p, f, r, o]) => `${p}fread ${f} 1 into ${r} ${o}`) },
  { weight: 2, arbitrary: fc.tuple(proc, fc.constantFrom("F", "G"), region, off).map(([p, f, r, o]) => `${p}fwrite ${f} 1 from ${r} ${o}`) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom("F", "G"), fc.constantFrom("grow", "shrink", "write", "future_write", "seal", "grow,shrink", "exec")).map(([f, x]) => `seal ${f} ${x}`) },
  { weight: 1, arbitrary: fc.tuple(proc, fc.constantFrom("F", "G")).map(([p, f]) => `${p}seals ${f}`) },
  // io_uring fixed-buffer pins (long-term FOLL_WRITE pins) and the device's accesses through them.
  { weight: 5, arbitrary: fc.tuple(proc, fc.constantFrom("K", "L"), region, off, len).map(([p, k, r, o, n]) => `${p}pin ${k} ${r} ${o} ${n}`) },
  { weight: 2, arbitrary: fc.tuple(proc, fc.constantFrom("K", "L")).map(([p, k]) => `${p}unpin ${k}`) },
  { weight: 3, arbitrary: fc.tuple(proc, fc.constantFrom("K", "L"), fc.integer({ min: 0, max: 1 }), byte).map(([p, k, o, b]) => `${p}pinwrite ${k} ${o} 1 ${b}`) },
  { weight: 3, arbitrary: fc.tuple(proc, fc.constantFrom("K", "L"), fc.integer({ min: 0, max: 1 })).map(([p, k, o]) => `${p}pinread ${k} ${o} 1`) },
);

/** The header line of a scenario that runs with a zram swap device (see worldOf()). */
export const SWAP_LINE = "# swap: zram";

/** A setup: the memfd, some regions, a userfaultfd with features, one or two registrations. */
export const setupArb: fc.Arbitrary<Line[]> = fc
  .tuple(
    fc.subarray([...REGIONS], { minLength: 1 }),
    fc.integer({ min: 0, max: PAGES }),
    fc.constantFrom(...FEATURE_SETS),
    fc.array(fc.tuple(region, fc.constantFrom(...MODES)), { minLength: 0, maxLength: 2 }),
    fc.option(fc.tuple(region, off), { freq: 2 }),
    fc.integer({ min: 0, max: 2 }),
  )
  .map(([regions, filled, features, regs, pin, swap]) => {
    // A third of the scenarios run with a zram swap device (a header line, so it comes first):
    // MADV_PAGEOUT then swaps anonymous and shmem pages out, and accesses swap them back in.
    // Half the memfds allow sealing (the others start with F_SEAL_SEAL).
    const memfd = `memfd F ${PAGES}${filled % 2 === 0 ? " sealing" : ""}`;
    const lines = swap === 0 ? [SWAP_LINE, memfd] : [memfd];
    if (filled > 0) lines.push(`pwrite F 0 ${filled} 0x46`);
    for (const r of regions) lines.push(REGION_MAP[r]);
    // Half the scenarios start with an io_uring fixed-buffer pin of two pages (skipped if the region is not mapped).
    if (pin !== null) lines.push(`pin K ${pin[0]} ${Math.min(pin[1], PAGES - 2)} 2`);
    lines.push("uffd U", `api U ${features}`);
    for (const [r, m] of regs) lines.push(`register U ${r} 0 ${PAGES} ${m}`);
    return lines;
  });

/** A whole random scenario as lines (setup then 1 to maxSteps steps). */
export function scenarioArb(maxSteps = 32): fc.Arbitrary<Line[]> {
  return fc.tuple(setupArb, fc.array(stepArb, { minLength: 1, maxLength: maxSteps })).map(([s, t]) => [...s, ...t]);
}

export function linesToScenario(lines: readonly string[], name = "random"): Scenario {
  return parseScenario(lines.join("\n"), name);
}

export function scenarioText(lines: readonly string[]): string {
  return formatScenario(parseScenario(lines.join("\n")).steps);
}
