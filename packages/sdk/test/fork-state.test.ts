/**
 * Each userfaultfd owns its page states, a fork child's included. After fork(2) with
 * UFFD_FEATURE_EVENT_FORK the child has its own userfaultfd context (fs/userfaultfd.c:
 * dup_userfaultfd() gives the child a new ctx) and its own copy of the mm: a page the parent
 * installs after the fork is not in the child (kernel/fork.c:dup_mmap() copied the page tables
 * at fork time), so the child's next touch of it is a MISSING fault the child's handler must
 * serve from the source. A handler that looked at the parent's page states would think the page
 * is installed and map zeros.
 *
 * Every side touches pages the other side installed first, with and without a background fill
 * racing the demand faults in the parent, over several kernel seeds.
 */
import { describe, expect, it } from "vitest";
import { Kernel } from "@uffd/kernel";
import { BufferSource, Userfaultfd } from "@uffd/sdk";
import { anon, image, PAGE_SIZE } from "./helpers.ts";

const PAGES = 16;
/** Pages touched by the parent before the fork: the child inherits them. */
const BEFORE_FORK = 3;

/** A permutation of [from, to) drawn from the seed (a small LCG: the test's order, not the kernel's). */
function order(seed: number, from: number, to: number): number[] {
  const out: number[] = [];
  for (let i = from; i < to; i++) out.push(i);
  let x = seed * 2654435761;
  for (let i = out.length - 1; i > 0; i--) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    const j = x % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** The distinct byte values of a page, in ascending order. */
function bytesIn(page: Uint8Array): number[] {
  return [...new Set(page)].sort((x, y) => x - y);
}

describe("fork: parent and child handlers each own their page states", () => {
  for (const fill of [false, true]) {
    for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
      it(`seed ${seed}, ${fill ? "with" : "without"} a background fill in the parent: each side reads the source's bytes for pages the other side installed`, async () => {
        const k = new Kernel({ seed });
        const p = k.spawn({ name: "parent" });
        const img = image(PAGES);
        const uffd = await Userfaultfd.open(p);
        expect(uffd.has("event-fork")).toBe(true);
        const a = await anon(p, PAGES);
        await uffd.register(a, PAGES * PAGE_SIZE, "missing");
        uffd.serve(new BufferSource(img));
        for (let i = 0; i < BEFORE_FORK; i++) expect(await p.mainThread.read(a + i * PAGE_SIZE, PAGE_SIZE)).toEqual(img.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE));
        const kids: Userfaultfd[] = [];
        uffd.on("fork", (c) => kids.push(c));
        const c = await p.fork();
        expect(kids).toHaveLength(1);
        const child = kids[0]!;
        const bg = fill ? uffd.fill(new BufferSource(img), { chunkPages: 2, maxChunkPages: 4 }) : null;
        const pages = order(seed, BEFORE_FORK, PAGES);
        const expectPage = async (who: typeof p, i: number): Promise<void> => {
          const got = await who.mainThread.read(a + i * PAGE_SIZE, PAGE_SIZE);
          // Every byte of page i is (0x40 + i): compare the set of byte values, which names a mix-up in one line.
          expect(bytesIn(got), `${who === p ? "parent" : "child"} page ${i}`).toEqual([0x40 + i]);
        };
        for (let n = 0; n < pages.length; n++) {
          const i = pages[n]!;
          // Even steps: the parent installs first; odd steps: the child does.
          const [first, second] = n % 2 === 0 ? [p, c] : [c, p];
          await expectPage(first, i);
          await expectPage(second, i);
        }
        // The pages both had before the fork are still the source's in both.
        for (let i = 0; i < BEFORE_FORK; i++) {
          await expectPage(p, i);
          await expectPage(c, i);
        }
        if (bg !== null) await bg.done;
        await child.drain();
        await uffd.drain();
        // No fault ended in the failure policy, and none was answered with zeros.
        const m = uffd.metrics.snapshot();
        expect(m.outcomes.failed).toBe(0);
        expect(m.policy.errors).toBe(0);
        expect(m.bytes.zeropage).toBe(0);
        await c.exit(0);
        await child.close();
        await uffd.close();
        k.checkInvariants();
      });
    }
  }
});
