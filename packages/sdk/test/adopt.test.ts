/**
 * A monitor process serving another process's faults through an fd passed with sendFd
 * (SCM_RIGHTS), the Firecracker / CRIU lazy-pages arrangement: the app does the handshake and
 * registration, the monitor adopts the fd. References: docs/linux-rules.md §2.0 (ioctls act on
 * the ctx's mm), §2.10 (MOVE across mms is EINVAL: the SDK copies instead); docs/handler-survey.md §1.4.
 */
import { describe, expect, it } from "vitest";
import { O_CLOEXEC, UFFD_API, UFFD_FEATURE_THREAD_ID, UFFDIO_API, UFFDIO_REGISTER, UFFDIO_REGISTER_MODE_MISSING } from "@uffd/kernel/uapi";
import { BufferSource, Userfaultfd } from "@uffd/sdk";
import { anon, expectPendingFaultTimesOut, image, PAGE_SIZE, pageOf, setup } from "./helpers.ts";

async function appWithUffd(pages: number, offsetPages = 0) {
  const { k, p } = setup();
  const monitor = k.spawn({ name: "monitor" });
  const a = await anon(p, pages + offsetPages);
  const fd = await p.userfaultfd(O_CLOEXEC);
  await p.ioctl(fd, UFFDIO_API, { api: UFFD_API, features: UFFD_FEATURE_THREAD_ID });
  await p.ioctl(fd, UFFDIO_REGISTER, { range: { start: a, len: (pages + offsetPages) * PAGE_SIZE }, mode: UFFDIO_REGISTER_MODE_MISSING });
  const mfd = await p.sendFd(fd, monitor);
  await p.close(fd);
  return { k, p, monitor, a, mfd };
}

describe("Userfaultfd.adopt", () => {
  it("serves another process's faults from the ranges the sender described", async () => {
    const { k, p, monitor, a, mfd } = await appWithUffd(4);
    const uffd = Userfaultfd.adopt(monitor, mfd, { features: ["thread-id"], ranges: [{ start: a, len: 4 * PAGE_SIZE, modes: "missing" }] });
    const tids: number[] = [];
    uffd.on("fault", (f) => tids.push(f.threadId));
    uffd.serve(new BufferSource(image(4)));
    expect(await p.mainThread.read(a + 3 * PAGE_SIZE, PAGE_SIZE)).toEqual(pageOf(3));
    expect(tids).toEqual([p.mainThread.tid]);
    await uffd.close();
    k.checkInvariants();
  });

  it("without a description, the range of a fault is learned from the target's /proc/pid/smaps", async () => {
    const { k, p, monitor, a, mfd } = await appWithUffd(2);
    const uffd = Userfaultfd.adopt(monitor, mfd, { target: p });
    expect(uffd.ranges).toEqual([]);
    uffd.on("fault", (f) => f.copy(pageOf(f.offset === a + PAGE_SIZE ? 1 : 0)));
    expect(await p.mainThread.read(a + PAGE_SIZE, 1)).toEqual(Uint8Array.of(0x41));
    expect(uffd.ranges).toEqual([{ start: a, end: a + 2 * PAGE_SIZE, modes: ["missing"], offset: a }]);
    await uffd.close();
    k.checkInvariants();
  });

  it("move() from a monitor is a copy from the monitor's own memory (UFFDIO_MOVE is EINVAL across mms)", async () => {
    const { k, p, monitor, a, mfd } = await appWithUffd(1);
    const src = await anon(monitor, 1);
    await monitor.mainThread.write(src, pageOf(9));
    const uffd = Userfaultfd.adopt(monitor, mfd, { target: p });
    uffd.on("fault", (f) => f.move(src));
    expect(await p.mainThread.read(a, PAGE_SIZE)).toEqual(pageOf(9));
    await uffd.drain();
    expect(uffd.metrics.snapshot().bytes).toMatchObject({ copy: PAGE_SIZE, move: 0 });
    await uffd.close();
    k.checkInvariants();
  });
});

describe("Userfaultfd.prepare + adopt (the Firecracker arrangement)", () => {
  it("the app does the handshake, the monitor adopts the fd and registers through it (ioctls act on the app's mm)", async () => {
    const { k, p } = setup();
    const monitor = k.spawn({ name: "monitor" });
    const a = await anon(p, 2);
    const { fd, features } = await Userfaultfd.prepare(p, { optionalFeatures: ["thread-id", "event-unmap"] });
    expect(features).toEqual(["event-unmap", "thread-id"]);
    const mfd = await p.sendFd(fd, monitor);
    await p.close(fd);
    const uffd = Userfaultfd.adopt(monitor, mfd, { features, target: p });
    await uffd.register(a, 2 * PAGE_SIZE, "missing");
    expect(p.smaps().find((v) => v.start === a)!.vmFlags).toContain("um");
    uffd.serve(new BufferSource(image(2)));
    expect(await p.mainThread.read(a, 2 * PAGE_SIZE)).toEqual(image(2));
    await p.munmap(a, PAGE_SIZE);
    expect(uffd.ranges.map((r) => r.start)).toEqual([a + PAGE_SIZE]);
    await uffd.close();
    k.checkInvariants();
  });
});

describe("wall-clock deadlines", () => {
  it("a handler waiting on real I/O can be given a wall-clock deadline instead of a virtual one", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p, { deadline: { virtualMs: null, wallMs: 5 } });
    await expectPendingFaultTimesOut(p, uffd);
    await uffd.close();
    k.checkInvariants();
  });
});
