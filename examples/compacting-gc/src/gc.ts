/**
 * A concurrent compacting collector in the way Android's ART CMC collector uses userfaultfd
 * (docs/handler-survey.md §1.10), on the simulated kernel:
 *
 * - pause: the heap's pages are moved aside to a from-space with mremap(MREMAP_DONTUNMAP), which
 *   leaves the heap range mapped but empty, and the empty heap is registered for MISSING faults;
 * - the collector thread then builds the compacted heap page by page and maps each page into
 *   place with UFFDIO_MOVE, which moves the physical page instead of copying it. A page whose
 *   objects do not move (the dense prefix) is moved straight from from-space; other pages are
 *   assembled in a scratch page first and that page is moved;
 * - mutator threads keep running and read objects at their new addresses. Touching a page the
 *   collector has not mapped yet is a missing fault: the handler (@uffd/sdk) builds that page at
 *   once and maps it with fault.move();
 * - UFFDIO_MOVE only moves pages known to belong to this process alone (PageAnonExclusive). After
 *   a fork() that shared the heap with a child (no MADV_DONTFORK), the dense prefix pages are
 *   shared copy-on-write and the move fails with EBUSY; the collector then copies the page with
 *   UFFDIO_COPY (the seed 003 thread). The SDK's fault.move() does the same fallback by itself.
 */
import { ErrnoError, Kernel, type Process, type Thread, type UffdioCopy, type UffdioMove } from "@uffd/kernel";
import { MADV_DONTFORK, MAP_ANONYMOUS, MAP_PRIVATE, MREMAP_DONTUNMAP, MREMAP_MAYMOVE, PAGE_SIZE, PROT_READ, PROT_WRITE, UFFDIO_COPY, UFFDIO_MOVE } from "@uffd/kernel/uapi";
import { Userfaultfd, type Fault, type MetricsSnapshot, type Resolution } from "@uffd/sdk";
import { CompactionPlan, objectBytes, OBJECT_SIZE, OBJECTS_PER_PAGE, prng } from "./heap.ts";

export type ForkMode = "none" | "fork" | "fork-dontfork";

export interface CompactingGcOptions {
  seed?: number;
  heapPages?: number;
  densePages?: number;
  /** Survival rate of objects outside the dense prefix (default 0.4). */
  survival?: number;
  /** Fork a child that shares the heap before the collection ("fork"), or after MADV_DONTFORK on it. */
  forkBeforeGc?: ForkMode;
}

/** How one to-space page got into place. */
export interface PageInstall {
  page: number;
  /** Who mapped it: the collector thread, or the fault handler for a mutator. */
  by: "collector" | "fault";
  /** move-from-space: the from-space page itself; move-compacted: a scratch page; copy-after-ebusy: UFFDIO_COPY. */
  method: "move-from-space" | "move-compacted" | "copy-after-ebusy";
  /** The source page's pfn before, and the heap page's pfn after. */
  srcPfn: number | null;
  dstPfn: number | null;
  /** The source's kpagecount before the attempt (2 = shared with the fork child). */
  srcKpagecount: number;
  /** The failed UFFDIO_MOVE, when the collector saw one: errno and the `move` out field. */
  moveError: { code: string; move: number | undefined } | null;
}

export interface CompactingGcResult {
  forkBeforeGc: ForkMode;
  plan: CompactionPlan;
  installs: PageInstall[];
  /** Objects the mutators read at their new address, and how many were wrong. */
  objectsRead: number;
  objectErrors: number;
  /** Heap pages after the collection: to-space pages present, the rest empty. */
  heapPresent: boolean[];
  /** The child's view of its (unmoved) heap page 0 header, or null without a child heap. */
  childHeapHeader: string | null;
  childHasHeap: boolean;
  metrics: MetricsSnapshot;
  kernel: Kernel;
  lines: string[];
}

/** Runs allocation, optional fork, marking, the pause and the concurrent compaction. */
export async function runCompactingGc(options: CompactingGcOptions = {}): Promise<CompactingGcResult> {
  const seed = options.seed ?? 1;
  const heapPages = options.heapPages ?? 16;
  const forkMode = options.forkBeforeGc ?? "none";
  const k = new Kernel({ seed });
  const app = k.spawn({ name: "app" });
  const lines: string[] = [];
  const say = (s: string): void => void lines.push(s);
  const len = heapPages * PAGE_SIZE;
  const heap = await app.mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
  await allocate(app.mainThread, heap, heapPages);
  say(`1. Allocation: ${heapPages * OBJECTS_PER_PAGE} objects of ${OBJECT_SIZE} bytes fill ${heapPages} heap pages at 0x${heap.toString(16)}.`);

  const child = forkMode === "none" ? null : await forkChild(app, heap, len, forkMode);
  if (child !== null) say(`2. fork(): ${forkMode === "fork" ? "the heap is shared copy-on-write with the child (page 0 kpagecount " + k.kpagecount(app.pagemap(heap, 1)[0]!.pfn!) + ")" : "MADV_DONTFORK first, so the child has no heap and the pages stay exclusive"}.`);
  else say("2. No fork: every heap page belongs to this process alone.");

  const plan = CompactionPlan.mark(heapPages, options.densePages ?? 3, options.survival ?? 0.4, prng(seed));
  say(`3. Marking: ${plan.live.length} live objects; compacted they fill ${plan.toPages} pages, of which ${countUnchanged(plan)} keep their objects in place.`);

  // The pause: move the pages aside, register the now empty heap, start the collector.
  const from = await app.mremap(heap, len, len, MREMAP_MAYMOVE | MREMAP_DONTUNMAP);
  const scratch = await app.mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
  const uffd = await Userfaultfd.open(app, { deadline: { virtualMs: null } });
  await uffd.register(heap, len, "missing");
  say(`4. Pause: mremap(MREMAP_DONTUNMAP) moved the pages to from-space 0x${from.toString(16)}; the heap range is empty (page 0 present: ${app.pagemap(heap, 1)[0]!.present}) and registered MISSING.`);

  const gc = new Collector(k, app, uffd, plan, { heap, from, scratch });
  uffd.on("fault", (f) => gc.onFault(f));
  const [, reads] = await Promise.all([gc.run(), mutate(app, heap, plan, prng(seed ^ 0xa11))]);
  await uffd.drain();
  const metrics = uffd.metrics.snapshot();
  await uffd.unregister(heap, len);
  await uffd.close();
  await app.munmap(from, len); // from-space is released
  await app.munmap(scratch, len);
  const heapPresent = app.pagemap(heap, heapPages).map((e) => e.present);
  const childHeapHeader = child?.hasHeap === true ? new TextDecoder().decode((await child.proc.mainThread.read(heap, 10))) : null;
  k.checkInvariants();
  lines.push(...describeInstalls(gc.installs));
  say(`6. Mutators read ${reads.count} objects at their new addresses while the collector ran: ${reads.errors} wrong.`);
  say(`   SDK metrics: ${metrics.faults.missing} missing faults resolved with fault.move(): ${metrics.bytes.move / PAGE_SIZE} pages moved, ${metrics.bytes.copy / PAGE_SIZE} copied after EBUSY.`);
  if (child !== null) {
    say(childHeapHeader === null ? "7. The child has no heap (MADV_DONTFORK kept it out)." : `7. The child still reads its own, uncompacted heap: page 0 starts with "${childHeapHeader}".`);
  }
  if (child !== null) await child.proc.exit(0);
  k.checkInvariants();
  return {
    forkBeforeGc: forkMode, plan, installs: gc.installs, objectsRead: reads.count, objectErrors: reads.errors, heapPresent,
    childHeapHeader, childHasHeap: child?.hasHeap ?? false, metrics, kernel: k, lines,
  };
}

async function allocate(t: Thread, heap: number, pages: number): Promise<void> {
  const page = new Uint8Array(PAGE_SIZE);
  for (let p = 0; p < pages; p++) {
    for (let s = 0; s < OBJECTS_PER_PAGE; s++) page.set(objectBytes(p * OBJECTS_PER_PAGE + s), s * OBJECT_SIZE);
    await t.write(heap + p * PAGE_SIZE, page);
  }
}

async function forkChild(app: Process, heap: number, len: number, mode: ForkMode): Promise<{ proc: Process; hasHeap: boolean }> {
  if (mode === "fork-dontfork") await app.madvise(heap, len, MADV_DONTFORK);
  const proc = await app.fork();
  return { proc, hasHeap: proc.smaps().some((v) => v.start <= heap && heap < v.end) };
}

function countUnchanged(plan: CompactionPlan): number {
  let n = 0;
  for (let p = 0; p < plan.toPages; p++) if (plan.unchanged(p)) n++;
  return n;
}

/** Mutators read live objects through their forwarded addresses, newest first (the collector starts at the bottom). */
async function mutate(app: Process, heap: number, plan: CompactionPlan, rnd: () => number): Promise<{ count: number; errors: number }> {
  let count = 0;
  let errors = 0;
  const worker = async (name: string, ids: number[]): Promise<void> => {
    const t = app.spawnThread(name);
    for (const id of ids) {
      const slot = plan.forward(id);
      const got = await t.read(heap + slot * OBJECT_SIZE, OBJECT_SIZE);
      count++;
      if (!sameBytes(got, objectBytes(id))) errors++;
      await app.poll([], 0.5);
    }
  };
  // mutator-1 walks the newest objects downwards; mutator-2 starts in the last page that keeps its
  // objects in place, so it races the collector for a page of the dense prefix.
  const picks = plan.live.filter(() => rnd() < 0.3);
  let lastUnchanged = 0;
  while (lastUnchanged + 1 < plan.toPages && plan.unchanged(lastUnchanged + 1)) lastUnchanged++;
  const start = lastUnchanged * OBJECTS_PER_PAGE;
  const newest = picks.filter((_, i) => i % 2 === 0).reverse();
  const older = picks.filter((_, i) => i % 2 === 1);
  const rotated = [...older.filter((id) => id >= start), ...older.filter((id) => id < start)];
  await Promise.all([worker("mutator-1", newest), worker("mutator-2", rotated)]);
  return { count, errors };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function describeInstalls(installs: PageInstall[]): string[] {
  const out = ["5. Concurrent compaction, page by page:", "     page  by         method            src pfn  kpagecount  heap pfn  failed UFFDIO_MOVE"];
  for (const i of [...installs].sort((a, b) => a.page - b.page)) {
    const err = i.moveError !== null ? `${i.moveError.code} (move = ${i.moveError.move})` : i.method === "copy-after-ebusy" ? "EBUSY, inside fault.move()" : "-";
    out.push(`     ${String(i.page).padEnd(4)}  ${i.by.padEnd(9)}  ${i.method.padEnd(16)}  ${String(i.srcPfn ?? "-").padEnd(7)}  ${String(i.srcKpagecount).padEnd(10)}  ${String(i.dstPfn ?? "-").padEnd(8)}  ${err}`);
  }
  return out;
}

interface Areas {
  heap: number;
  from: number;
  scratch: number;
}

/** Per-page state shared by the collector thread and the fault handler, so each page is built and mapped once. */
class Collector {
  readonly installs: PageInstall[] = [];
  readonly #k: Kernel;
  readonly #app: Process;
  readonly #uffd: Userfaultfd;
  readonly #plan: CompactionPlan;
  readonly #a: Areas;
  readonly #busy = new Map<number, Promise<void>>();
  readonly #gcThread: Thread;
  readonly #handlerThread: Thread;

  constructor(k: Kernel, app: Process, uffd: Userfaultfd, plan: CompactionPlan, areas: Areas) {
    this.#k = k;
    this.#app = app;
    this.#uffd = uffd;
    this.#plan = plan;
    this.#a = areas;
    this.#gcThread = app.spawnThread("HeapTaskDaemon");
    this.#handlerThread = app.spawnThread("uffd-handler");
  }

  /** The collector thread: every to-space page in address order, one per virtual millisecond. */
  async run(): Promise<void> {
    for (let p = 0; p < this.#plan.toPages; p++) {
      if (!this.#busy.has(p)) {
        const done = this.#collectorInstall(p);
        this.#busy.set(p, done);
        await done;
      }
      await this.#app.poll([], 1);
    }
  }

  /** A mutator touched a page nobody mapped yet: build it now and move it in through the fault. */
  onFault(f: Fault): Promise<Resolution> {
    const p = (f.pageAddress - this.#a.heap) / PAGE_SIZE;
    const busy = this.#busy.get(p);
    if (busy !== undefined) return busy.then(() => f.wake()); // the collector is on it (its ioctl wakes the thread too)
    let result!: Promise<Resolution>;
    const done = (async () => {
      const { src, method } = await this.#source(p, this.#handlerThread);
      const before = this.#srcView(src);
      result = f.move(src); // UFFDIO_MOVE; on EBUSY the SDK copies from src instead
      await result;
      const moved = !this.#app.pagemap(src, 1)[0]!.present;
      this.#record(p, "fault", moved ? method : "copy-after-ebusy", before, null);
    })();
    this.#busy.set(p, done);
    return done.then(() => result);
  }

  /** The collector's own install with the raw uAPI, to show the errno and the out field. */
  async #collectorInstall(p: number): Promise<void> {
    const { src, method } = await this.#source(p, this.#gcThread);
    const dst = this.#a.heap + p * PAGE_SIZE;
    const before = this.#srcView(src);
    const mv: UffdioMove = { dst, src, len: PAGE_SIZE, mode: 0 };
    try {
      await this.#app.ioctl(this.#uffd.fd, UFFDIO_MOVE, mv);
      this.#record(p, "collector", method, before, null);
    } catch (e) {
      if (!(e instanceof ErrnoError) || e.code !== "EBUSY") throw e;
      // Shared with the fork child (not PageAnonExclusive): copy instead, the source stays where it is.
      const cp: UffdioCopy = { dst, src, len: PAGE_SIZE, mode: 0 };
      await this.#app.ioctl(this.#uffd.fd, UFFDIO_COPY, cp);
      this.#record(p, "collector", "copy-after-ebusy", before, { code: e.code, move: mv.move });
    }
  }

  /** Where page p's contents come from: the from-space page itself, or a scratch page built now. */
  async #source(p: number, t: Thread): Promise<{ src: number; method: PageInstall["method"] }> {
    if (this.#plan.unchanged(p)) return { src: this.#a.from + p * PAGE_SIZE, method: "move-from-space" };
    const page = new Uint8Array(PAGE_SIZE);
    const ids = this.#plan.pageObjects(p);
    for (let s = 0; s < ids.length; s++) {
      const id = ids[s]!;
      if (id < 0) continue;
      page.set(await t.read(this.#a.from + id * OBJECT_SIZE, OBJECT_SIZE), s * OBJECT_SIZE);
    }
    const src = this.#a.scratch + p * PAGE_SIZE;
    await t.write(src, page); // a fresh, exclusive anonymous page
    return { src, method: "move-compacted" };
  }

  #srcView(src: number): { pfn: number | null; kpagecount: number } {
    const e = this.#app.pagemap(src, 1)[0]!;
    return { pfn: e.pfn, kpagecount: e.pfn === null ? 0 : this.#k.kpagecount(e.pfn) };
  }

  #record(page: number, by: PageInstall["by"], method: PageInstall["method"], src: { pfn: number | null; kpagecount: number }, moveError: PageInstall["moveError"]): void {
    const dst = this.#app.pagemap(this.#a.heap + page * PAGE_SIZE, 1)[0]!;
    this.installs.push({ page, by, method, srcPfn: src.pfn, srcKpagecount: src.kpagecount, dstPfn: dst.pfn, moveError });
  }
}
