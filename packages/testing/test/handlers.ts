/**
 * The handlers the kit's tests and the guide put under test: a raw-uAPI handler that serves
 * missing faults from an image while a prefetcher copies the whole image in the background.
 *
 * The planted bug (docs/handler-survey.md §5.1): the prefetcher installs pages with UFFDIO_COPY_MODE_DONTWAKE
 * ("nobody waits for a page we fetch ahead"), and the demand path takes EEXIST to mean "someone
 * else already did the work" and returns without waking. When the prefetcher wins the race for a
 * page a thread is already asleep on, nobody ever wakes that thread. The fix: wake on EEXIST.
 */
import { ErrnoError, decodeUffdMsgs, type Process, type Thread } from "@uffd/kernel";
import {
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  O_CLOEXEC,
  PAGE_SIZE,
  PROT_READ,
  PROT_WRITE,
  UFFD_API,
  UFFD_EVENT_PAGEFAULT,
  UFFDIO_API,
  UFFDIO_COPY,
  UFFDIO_COPY_MODE_DONTWAKE,
  UFFDIO_REGISTER,
  UFFDIO_REGISTER_MODE_MISSING,
  UFFDIO_WAKE,
} from "@uffd/kernel/uapi";
import { peekMemory, type World } from "@uffd/testing";

export { PAGE_SIZE };

// #region image
/** An image of `pages` pages, page i filled with 0x40 + i. */
export function makeImage(pages: number): Uint8Array {
  const image = new Uint8Array(pages * PAGE_SIZE);
  for (let i = 0; i < pages; i++) image.fill(0x40 + i, i * PAGE_SIZE, (i + 1) * PAGE_SIZE);
  return image;
}
// #endregion image

// #region handler
/** Serves missing faults in [base, base + image.length) from `image`, prefetching in the background. */
export function serveWithPrefetch(proc: Process, uffd: number, base: number, image: Uint8Array, fixed: boolean): void {
  const copy = async (page: number, mode: number): Promise<void> => {
    const off = page - base;
    for (;;) {
      try {
        await proc.ioctl(uffd, UFFDIO_COPY, { dst: page, src: image.subarray(off, off + PAGE_SIZE), len: PAGE_SIZE, mode, copy: 0 });
        return;
      } catch (e) {
        if (!(e instanceof ErrnoError)) throw e;
        if (e.code === "EAGAIN") continue; // an event is being delivered: retry
        if (e.code !== "EEXIST") throw e;
        // EEXIST: the page is already there. The naive handler stops here; a thread asleep on
        // the page stays asleep unless whoever installed it woke it.
        if (fixed && mode === 0) await proc.ioctl(uffd, UFFDIO_WAKE, { start: page, len: PAGE_SIZE });
        return;
      }
    }
  };
  const demand = async (): Promise<void> => {
    for (;;) {
      const msgs = decodeUffdMsgs(await proc.read(uffd, 16 * 32));
      for (const m of msgs) {
        if (m.event !== UFFD_EVENT_PAGEFAULT) continue;
        const a = m.arg.pagefault.address;
        await copy(a - (a % PAGE_SIZE), 0);
      }
    }
  };
  const prefetch = async (): Promise<void> => {
    // Nobody waits for a page fetched ahead of time, so skip the wake (the planted assumption).
    for (let off = 0; off < image.length; off += PAGE_SIZE) await copy(base + off, UFFDIO_COPY_MODE_DONTWAKE);
  };
  void demand().catch(() => {});
  void prefetch().catch(() => {});
}
// #endregion handler

// #region register
/** A process with `pages` pages of anonymous memory registered for missing faults on a raw userfaultfd. */
export async function registeredAnon(proc: Process, pages: number): Promise<{ uffd: number; base: number }> {
  const base = await proc.mmap(0, pages * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
  const uffd = await proc.userfaultfd(O_CLOEXEC);
  await proc.ioctl(uffd, UFFDIO_API, { api: UFFD_API, features: 0 });
  await proc.ioctl(uffd, UFFDIO_REGISTER, { range: { start: base, len: pages * PAGE_SIZE }, mode: UFFDIO_REGISTER_MODE_MISSING });
  return { uffd, base };
}
// #endregion register

// #region scenario
/** Two threads read the four pages (in opposite orders) that the prefetching handler serves. */
export function prefetchScenario(fixed: boolean) {
  return async (w: World): Promise<void> => {
    const image = makeImage(4);
    const app = w.spawn({ name: "app" });
    const { uffd, base } = await registeredAnon(app, 4);
    serveWithPrefetch(app, uffd, base, image, fixed);
    const reader = (order: number[]) => async (t: Thread) => {
      for (const i of order) {
        const got = await t.read(base + i * PAGE_SIZE + 8, 8);
        if (got.some((b) => b !== 0x40 + i)) throw new Error(`page ${i} read 0x${got[0]!.toString(16)}`);
      }
    };
    w.guest(w.thread(app, "t1"), reader([0, 1, 2, 3]));
    w.guest(w.thread(app, "t2"), reader([3, 2, 1, 0]));
    w.check(() => {
      const { bytes, notPresent } = peekMemory(app, base, image.length); // read without faulting
      if (notPresent.length > 0 || Buffer.compare(bytes, image) !== 0) throw new Error("memory differs from the image");
    });
  };
}
// #endregion scenario
