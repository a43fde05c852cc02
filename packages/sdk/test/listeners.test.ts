/**
 * Which "fault" listeners a fault reaches: exactly those subscribed when it is dispatched, in the
 * order they subscribed, a once listener for one fault only. The dispatcher calls a sole
 * persistent listener without the emitter, so the test moves between one listener and several
 * (persistent and once) and back, and checks every fault's listeners and bytes.
 */
import { describe, expect, it } from "vitest";
import { type Fault, Userfaultfd } from "@uffd/sdk";
import { anon, PAGE_SIZE, pageOf, setup } from "./helpers.ts";

describe("fault listeners", () => {
  it("each fault reaches the listeners subscribed at its dispatch, in subscription order", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p, { batch: 1 });
    const pages = 7;
    const a = await anon(p, pages);
    await uffd.register(a, pages * PAGE_SIZE, "missing");
    const calls: string[] = [];
    const listener = (name: string) => (f: Fault) => {
      const i = f.offset / PAGE_SIZE;
      calls.push(`${name}:${i}`);
      return f.copy(pageOf(i));
    };
    const l1 = listener("L1");
    const l2 = listener("L2");
    const touch = async (i: number): Promise<void> => {
      expect((await p.mainThread.read(a + i * PAGE_SIZE, 1))[0]).toBe(pageOf(i)[0]);
    };

    uffd.on("fault", l1);
    await touch(0);
    uffd.on("fault", l2);
    await touch(1);
    uffd.once("fault", listener("L3"));
    await touch(2);
    await touch(3);
    uffd.off("fault", l1);
    await touch(4);
    uffd.on("fault", l1);
    uffd.off("fault", l2);
    await touch(5);
    uffd.removeAllListeners("fault");
    uffd.on("fault", l2);
    await touch(6);

    expect(calls).toEqual(["L1:0", "L1:1", "L2:1", "L1:2", "L2:2", "L3:2", "L1:3", "L2:3", "L2:4", "L1:5", "L2:6"]);
    const m = uffd.metrics.snapshot();
    // The second listener of a fault gets the first one's result: one install per page.
    expect(m.outcomes.installed).toBe(pages);
    expect(m.bytes.copy).toBe(pages * PAGE_SIZE);
    await uffd.close();
    k.checkInvariants();
  });
});
