/**
 * writeProtect() and unprotect() over a range that spans several WP-registered vmas. Before Linux
 * 6.4 ("mm/userfaultfd: support WP on multiple VMAs") mm/userfaultfd.c:mwriteprotect_range() took
 * find_dst_vma() and answered ENOENT for such a range; the SDK then protects it one vma at a time
 * and lists the fallback in `uffd.fallbacks`. From 6.4 on one ioctl covers the range. A range with
 * a vma that is not WP-registered is ENOENT on every release (userfaultfd_wp() of that vma).
 */
import { describe, expect, it } from "vitest";
import { Kernel, KERNEL_RELEASES, type KernelRelease } from "@uffd/kernel";
import { MAP_ANONYMOUS, MAP_PRIVATE, PAGE_SIZE, PROT_EXEC, PROT_READ, PROT_WRITE } from "@uffd/kernel/uapi";
import { DirtyTracker, ModeUnavailableError, Userfaultfd } from "@uffd/sdk";

const RW = PROT_READ | PROT_WRITE;
/** The profiles whose mwriteprotect_range() has the one-vma rule (docs/releases.md). */
const ONE_VMA: readonly KernelRelease[] = ["5.10", "5.15", "6.1"];
/** The profiles that report uffd-wp in pagemap bit 57 (5.15 and later, docs/releases.md). */
const PAGEMAP_WP: readonly KernelRelease[] = ["5.15", "6.1", "6.6", "6.12", "6.18"];

/** Four populated anonymous pages split by mprotect into two vmas of two pages each. */
async function twoVmas(release: KernelRelease) {
  const k = new Kernel({ release });
  const proc = k.spawn();
  const a = await proc.mmap(0, 4 * PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS);
  for (let i = 0; i < 4; i++) await proc.mainThread.write(a + i * PAGE_SIZE, Uint8Array.of(i + 1));
  await proc.mprotect(a + 2 * PAGE_SIZE, 2 * PAGE_SIZE, RW | PROT_EXEC);
  expect(proc.smaps().filter((v) => v.start < a + 4 * PAGE_SIZE && v.end > a).map((v) => [(v.start - a) / PAGE_SIZE, (v.end - a) / PAGE_SIZE])).toEqual([
    [0, 2],
    [2, 4],
  ]);
  return { k, proc, a };
}

describe.each(KERNEL_RELEASES.map((r) => [r] as const))("writeProtect() across vmas on release %s", (release) => {
  const split = ONE_VMA.includes(release);

  it(`protects every page of two WP-registered vmas${split ? ", one vma at a time (listed in fallbacks)" : " with one ioctl (no fallback)"}`, async () => {
    const { k, proc, a } = await twoVmas(release);
    const uffd = await Userfaultfd.open(proc);
    await uffd.register(a, 4 * PAGE_SIZE, "wp");
    const faults: number[] = [];
    uffd.on("fault", async (fault) => {
      faults.push((fault.address - a) / PAGE_SIZE);
      await fault.unprotect();
    });
    const before = uffd.fallbacks.filter((f) => f.wanted !== "/dev/userfaultfd");
    expect(before).toEqual([]);
    await uffd.writeProtect(a, 4 * PAGE_SIZE);
    expect(uffd.fallbacks.filter((f) => f.wanted !== "/dev/userfaultfd")).toEqual(
      split ? [{ wanted: "UFFDIO_WRITEPROTECT across vmas", used: "one UFFDIO_WRITEPROTECT per vma", reason: `UFFDIO_WRITEPROTECT across vmas came in Linux 6.4; this kernel is ${release}-uffd` }] : [],
    );
    if (PAGEMAP_WP.includes(release)) expect(proc.pagemap(a, 4).map((e) => e.uffdWp)).toEqual([true, true, true, true]);
    for (let i = 0; i < 4; i++) await proc.mainThread.write(a + i * PAGE_SIZE, Uint8Array.of(0x10 + i));
    expect(faults).toEqual([0, 1, 2, 3]);
    expect(await proc.mainThread.read(a + 3 * PAGE_SIZE, 1)).toEqual(Uint8Array.of(0x13));
    await uffd.close();
    k.checkInvariants();
  });

  it("unprotect() across the two vmas clears every page's protection", async () => {
    const { k, proc, a } = await twoVmas(release);
    const uffd = await Userfaultfd.open(proc);
    await uffd.register(a, 4 * PAGE_SIZE, "wp");
    const faults: number[] = [];
    uffd.on("fault", async (fault) => {
      faults.push((fault.address - a) / PAGE_SIZE);
      await fault.unprotect();
    });
    await uffd.writeProtect(a, 4 * PAGE_SIZE);
    await uffd.unprotect(a, 4 * PAGE_SIZE);
    if (PAGEMAP_WP.includes(release)) expect(proc.pagemap(a, 4).map((e) => e.uffdWp)).toEqual([false, false, false, false]);
    for (let i = 0; i < 4; i++) await proc.mainThread.write(a + i * PAGE_SIZE, Uint8Array.of(0x20 + i));
    expect(faults).toEqual([]);
    await uffd.close();
    k.checkInvariants();
  });

  it("a sync DirtyTracker over the two vmas collects the pages written in each", async () => {
    const { k, proc, a } = await twoVmas(release);
    const uffd = await Userfaultfd.open(proc);
    await uffd.register(a, 4 * PAGE_SIZE, "wp");
    const tracker = new DirtyTracker(uffd, a, 4 * PAGE_SIZE);
    await tracker.begin();
    await proc.mainThread.write(a + PAGE_SIZE, Uint8Array.of(9));
    await proc.mainThread.write(a + 2 * PAGE_SIZE, Uint8Array.of(9));
    expect((await tracker.collect()).map((x) => (x - a) / PAGE_SIZE)).toEqual([1, 2]);
    await proc.mainThread.write(a + 3 * PAGE_SIZE, Uint8Array.of(9));
    expect((await tracker.collect()).map((x) => (x - a) / PAGE_SIZE)).toEqual([3]);
    expect(uffd.fallbacks.some((f) => f.wanted === "UFFDIO_WRITEPROTECT across vmas")).toBe(split);
    tracker.stop();
    await uffd.close();
    k.checkInvariants();
  });

  it("a range with a vma not registered for wp is still ModeUnavailableError (ENOENT), nothing split", async () => {
    const k = new Kernel({ release });
    const proc = k.spawn();
    const a = await proc.mmap(0, 3 * PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    for (let i = 0; i < 3; i++) await proc.mainThread.write(a + i * PAGE_SIZE, Uint8Array.of(i + 1));
    const uffd = await Userfaultfd.open(proc);
    await uffd.register(a, PAGE_SIZE, "wp");
    await uffd.register(a + 2 * PAGE_SIZE, PAGE_SIZE, "wp");
    await expect(uffd.writeProtect(a, 3 * PAGE_SIZE)).rejects.toBeInstanceOf(ModeUnavailableError);
    expect(uffd.fallbacks.filter((f) => f.wanted !== "/dev/userfaultfd")).toEqual([]);
    // The pages of the unregistered middle vma never become protected.
    if (PAGEMAP_WP.includes(release)) expect(proc.pagemap(a + PAGE_SIZE, 1)[0]!.uffdWp).toBe(false);
    await uffd.close();
    k.checkInvariants();
  });
});
