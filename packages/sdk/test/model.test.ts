/**
 * Model-based test: random programs of concurrent reads, writes, MADV_DONTNEED and munmap over
 * a lazily restored region, served by serve() from a source with random (virtual) latency while a
 * background fill races the demand faults. Each access is checked against a model of what Linux
 * must show: the source's bytes until a page is removed (then zeros), the program's own writes,
 * SIGSEGV once unmapped. And no fault is lost: every fault read ends with exactly one outcome.
 *
 * Reproduce a failure with the seed fast-check prints (fc.assert's `seed` and `path`).
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Kernel, SignalError } from "@uffd/kernel";
import { MADV_DONTNEED, MAP_ANONYMOUS, MAP_PRIVATE, PAGE_SIZE, PROT_READ, PROT_WRITE } from "@uffd/kernel/uapi";
import { type PageSource, Userfaultfd } from "@uffd/sdk";

const PAGES = 12;

type Cmd =
  | { t: "read"; pages: number[] }
  | { t: "write"; page: number; byte: number }
  | { t: "dontneed"; from: number; n: number }
  | { t: "unmap"; page: number };

const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ t: fc.constant("read" as const), pages: fc.uniqueArray(fc.nat(PAGES - 1), { minLength: 1, maxLength: 4 }) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant("write" as const), page: fc.nat(PAGES - 1), byte: fc.integer({ min: 1, max: 255 }) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant("dontneed" as const), from: fc.nat(PAGES - 1), n: fc.integer({ min: 1, max: 4 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("unmap" as const), page: fc.nat(PAGES - 1) }) },
);

interface PageModel {
  unmapped: boolean;
  zero: boolean;
  first: number | null;
}

const srcByte = (page: number): number => 0x80 + page;

describe("model: a lazily restored region under concurrent accesses and layout changes", () => {
  it("every access sees what Linux must show, and every fault ends exactly once", async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 1 << 30 }), fc.array(cmdArb, { minLength: 1, maxLength: 14 }), fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 8 }), fc.integer({ min: 1, max: 6 }), async (seed, cmds, latencies, chunkPages) => {
        const k = new Kernel({ seed });
        const p = k.spawn();
        const a = await p.mmap(0, PAGES * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
        const uffd = await Userfaultfd.open(p);
        await uffd.register(a, PAGES * PAGE_SIZE, "missing");
        let n = 0;
        const source: PageSource = {
          read: async (off, len) => {
            const ms = latencies[n++ % latencies.length]!;
            if (ms > 0) await p.poll([], ms);
            const out = new Uint8Array(len);
            for (let i = 0; i < len / PAGE_SIZE; i++) out.fill(srcByte(off / PAGE_SIZE + i), i * PAGE_SIZE, (i + 1) * PAGE_SIZE);
            return out;
          },
        };
        uffd.serve(source);
        const fill = uffd.fill(source, { chunkPages });
        const model: PageModel[] = Array.from({ length: PAGES }, () => ({ unmapped: false, zero: false, first: null }));
        const threads = [p.mainThread, p.spawnThread("t1"), p.spawnThread("t2"), p.spawnThread("t3")];
        for (const c of cmds) await step(c);
        await fill.done;
        await uffd.drain();
        const m = uffd.metrics.snapshot();
        const ended = Object.values(m.outcomes).reduce((x, y) => x + y, 0);
        expect(ended).toBe(m.faults.missing + m.faults.wp + m.faults.minor);
        expect(uffd.pendingFaults).toBe(0);
        await uffd.close();
        k.checkInvariants();

        async function step(c: Cmd): Promise<void> {
          if (c.t === "read") {
            const got = await Promise.all(c.pages.map((pg, i) => threads[i]!.read(a + pg * PAGE_SIZE, 101).catch((e: unknown) => e)));
            c.pages.forEach((pg, i) => check(pg, got[i]));
          } else if (c.t === "write") {
            const r = await threads[0]!.write(a + c.page * PAGE_SIZE, Uint8Array.of(c.byte)).catch((e: unknown) => e);
            if (model[c.page]!.unmapped) expect(r).toMatchObject({ signal: "SIGSEGV" });
            else {
              expect(r).toBeUndefined();
              model[c.page]!.first = c.byte;
            }
          } else if (c.t === "dontneed") {
            const end = Math.min(PAGES, c.from + c.n);
            if (model.slice(c.from, end).some((x) => x.unmapped)) return; // ENOMEM over a hole: not modelled
            await p.madvise(a + c.from * PAGE_SIZE, (end - c.from) * PAGE_SIZE, MADV_DONTNEED);
            for (let i = c.from; i < end; i++) model[i] = { unmapped: false, zero: true, first: null };
          } else {
            await p.munmap(a + c.page * PAGE_SIZE, PAGE_SIZE);
            model[c.page]!.unmapped = true;
          }
        }

        function check(pg: number, got: unknown): void {
          const want = model[pg]!;
          if (want.unmapped) {
            expect(got).toBeInstanceOf(SignalError);
            expect(got).toMatchObject({ signal: "SIGSEGV" });
            return;
          }
          expect(got, `page ${pg}: ${String(got)}`).toBeInstanceOf(Uint8Array);
          const bytes = got as Uint8Array;
          const base = want.zero ? 0 : srcByte(pg);
          expect([bytes[0], bytes[100]], `page ${pg}`).toEqual([want.first ?? base, base]);
        }
      }),
      { numRuns: 40 },
    );
  }, 60_000);
});
