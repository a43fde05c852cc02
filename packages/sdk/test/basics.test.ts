import { describe, expect, it } from "vitest";
import { Userfaultfd } from "@uffd/sdk";
import { anon, image, PAGE_SIZE, pageOf, setup } from "./helpers.ts";

describe("a missing-fault handler", () => {
  it("copy() answers a read fault with the page's bytes", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p);
    const a = await anon(p, 4);
    await uffd.register(a, 4 * PAGE_SIZE, "missing");
    uffd.on("fault", (f) => f.copy(pageOf(f.offset / PAGE_SIZE)));
    expect(await p.mainThread.read(a + 2 * PAGE_SIZE + 5, 3)).toEqual(pageOf(2).subarray(0, 3));
    await uffd.drain();
    expect(uffd.metrics.snapshot().faults.missing).toBe(1);
    expect(uffd.metrics.snapshot().outcomes.installed).toBe(1);
    expect(p.pagemap(a + 2 * PAGE_SIZE, 1)[0]).toMatchObject({ present: true, exclusive: true });
    await uffd.close();
    k.checkInvariants();
  });

  it("serve() fills every page from a buffer", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p);
    const a = await anon(p, 8);
    await uffd.register(a, 8 * PAGE_SIZE, "missing");
    const img = image(8);
    const { BufferSource } = await import("@uffd/sdk");
    uffd.serve(new BufferSource(img));
    expect(await p.mainThread.read(a, 8 * PAGE_SIZE)).toEqual(img);
    await uffd.close();
    k.checkInvariants();
  });
});
