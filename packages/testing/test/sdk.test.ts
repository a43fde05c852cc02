/**
 * The SDK's handler under explore() and each injection: every guest completes with the bytes
 * Linux gives it, no fault is lost, the kernel invariants hold, over many seeds. This is the
 * kit used as intended (docs/handler-survey.md §5: EEXIST without wake, EAGAIN with partial progress, REMOVE
 * racing faults, ENOENT after unregister).
 */
import { describe, expect, it } from "vitest";
import { MADV_DONTNEED, MAP_ANONYMOUS, MAP_PRIVATE, PAGE_SIZE } from "@uffd/kernel/uapi";
import { BufferSource, Userfaultfd } from "@uffd/sdk";
import { explore, inject, type InjectionRule, type World } from "@uffd/testing";
import { image, RW } from "./helpers.ts";

const PAGES = 4;

/** Two threads read all four pages (opposite orders) of a range the SDK serves from an image. */
function sdkScenario(rules: readonly InjectionRule[], expectPage: (i: number, got: number) => boolean = (i, got) => got === 0x40 + i) {
  return async (w: World): Promise<void> => {
    const app = w.spawn({ name: "app" });
    const addr = await app.mmap(0, PAGES * PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    const uffd = await Userfaultfd.open(app);
    await uffd.register(addr, PAGES * PAGE_SIZE, "missing");
    uffd.serve(new BufferSource(image(PAGES)));
    const injected = w.inject(app, rules);
    w.check(() => expect(injected.fired()).toBeGreaterThan(0));
    for (const [name, order] of [["t1", [0, 1, 2, 3]], ["t2", [3, 2, 1, 0]]] as const) {
      w.guest(w.thread(app, name), async (t) => {
        for (const i of order) {
          const got = (await t.read(addr + i * PAGE_SIZE + 100, 1))[0]!;
          if (!expectPage(i, got)) throw new Error(`page ${i} read 0x${got.toString(16)}`);
        }
      });
    }
  };
}

const SEEDS = { seeds: 150, resolvedOnce: { allowPresent: true } } as const;

// Budget: each test explores 100 to 150 seeds of an SDK scenario (0.5 s each when idle).
describe("the SDK under injected failures, explored", { timeout: 60_000 }, () => {
  it("EEXIST from a racing resolve that did not wake: the SDK wakes (handler survey §5.1)", async () => {
    const r = await explore(sdkScenario([{ op: "copy", times: 2, inject: inject.eexist() }]), SEEDS);
    expect(r.seedsRun).toBe(150);
  });

  it("late wakes: every resolve's wake comes 1 ms (virtual) later", async () => {
    await explore(sdkScenario([{ op: "copy", times: Infinity, inject: inject.delayWake(1) }]), SEEDS);
  });

  it("a REMOVE between a fault and its resolve: EAGAIN until the SDK reads it, then the removed page reads zeros (linux-rules §4)", async () => {
    // MADV_DONTNEED of an empty page leaves it empty: Linux fills it with zeros next time, and so does the SDK.
    const r = await explore(sdkScenario([{ op: "copy", inject: inject.removeBefore() }], (i, got) => got === 0x40 + i || got === 0), SEEDS);
    expect(r.ok).toBe(true);
  });

  it("ENOENT after the range was unregistered: the SDK wakes the thread, which then reads the zero page (linux-rules §2.3)", async () => {
    await explore(sdkScenario([{ op: "copy", inject: inject.enoent() }], (i, got) => got === 0x40 + i || got === 0), SEEDS);
  });

  it("partial progress: a 4-page copy that stops after one page is continued, skipping the racer's page (linux-rules §2.0)", async () => {
    await explore(
      async (w) => {
        const app = w.spawn({ name: "app" });
        const addr = await app.mmap(0, PAGES * PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS);
        const uffd = await Userfaultfd.open(app);
        await uffd.register(addr, PAGES * PAGE_SIZE, "missing");
        w.inject(app, [{ op: "copy", inject: inject.eagainAfter(PAGE_SIZE) }]);
        w.guest(w.thread(app, "t1"), (t) => t.read(addr + 3 * PAGE_SIZE, 1));
        w.guest(w.thread(app, "filler"), async () => {
          expect(await uffd.copy(addr, image(PAGES))).toEqual({ installedBytes: 3 * PAGE_SIZE, presentBytes: PAGE_SIZE, goneBytes: 0 });
        });
        w.check(() => expect(app).toHaveMemory(addr, image(PAGES)));
        w.check(() => expect(w.injectors[0]!.fired("eagain")).toBe(1));
      },
      { seeds: 100 },
    );
  });

  it("a REMOVE racing the faults (a guest's MADV_DONTNEED is a scheduling point): the seed decides where it lands (handler survey §5.4)", async () => {
    const orders = new Set<string>();
    await explore(
      async (w) => {
        const app = w.spawn({ name: "app" });
        const addr = await app.mmap(0, 2 * PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS);
        const uffd = await Userfaultfd.open(app);
        await uffd.register(addr, 2 * PAGE_SIZE, "missing");
        uffd.serve(new BufferSource(image(2)));
        w.guest(w.thread(app, "t1"), async (t) => {
          const got = (await t.read(addr + 100, 1))[0];
          if (got !== 0x40 && got !== 0) throw new Error(`read 0x${got!.toString(16)}`); // the image, or zeros after the DONTNEED
        });
        w.guest(w.thread(app, "t2"), async (t) => {
          await t.read(addr + PAGE_SIZE, 1);
          await app.madvise(addr, PAGE_SIZE, MADV_DONTNEED);
        });
        w.check(() => {
          orders.add(w.events.filter((e) => e.kind === "msg").map((e) => (e.kind === "msg" ? e.event : "")).join(","));
        });
      },
      { seeds: 60, resolvedOnce: true },
    );
    expect(orders.size).toBeGreaterThan(1);
    expect([...orders].some((o) => o.indexOf("REMOVE") < o.lastIndexOf("PAGEFAULT"))).toBe(true);
  });
});

