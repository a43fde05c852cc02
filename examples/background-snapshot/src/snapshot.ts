/**
 * A background snapshot of a running guest, in the way QEMU's `background-snapshot` migration
 * capability does it (docs/handler-survey.md §1.7):
 *
 * - the vCPUs stop for a moment while every page of guest RAM is registered for write-protect
 *   faults and write-protected. QEMU touches every page first because write protection cannot
 *   mark an empty pte without WP_UNPOPULATED; the SDK enables that feature, so empty pages get a
 *   uffd-wp marker instead and nothing has to be populated;
 * - the vCPUs run again while a saver thread writes the pages to the image file in address
 *   order, each straight from guest memory with pwrite(2), and unprotects each page it saved;
 * - a vCPU that writes a page the saver has not reached yet takes a wp fault and blocks. The
 *   handler puts the page at the front of the saver's queue; the saver writes the page's old
 *   contents (the write is still blocked, so they cannot change) and only then unprotects it,
 *   which lets the write through.
 *
 * The image is therefore the memory as it was at the instant of protection, although the guest
 * wrote to memory the whole time. Run with `protect: false` to see what the same saver writes
 * without write protection: pages the guest changed before the saver reached them come out torn.
 */
import { Kernel, type PagemapEntry, type Process } from "@uffd/kernel";
import { MAP_ANONYMOUS, MAP_PRIVATE, PAGE_SIZE, PROT_READ, PROT_WRITE } from "@uffd/kernel/uapi";
import { Userfaultfd, type Fault, type MetricsSnapshot, type Resolution } from "@uffd/sdk";

export interface BackgroundSnapshotOptions {
  seed?: number;
  /** Guest RAM in pages (default 48). */
  pages?: number;
  /** Write-protect with userfaultfd (default true). false: the same saver, no protection. */
  protect?: boolean;
  /** Virtual ms the saver spends per page (its bandwidth; default 2). */
  saveMsPerPage?: number;
  /** Writes each vCPU makes while the snapshot runs (default 40), one per virtual ms. */
  writesPerVcpu?: number;
}

/** A wp fault the handler saw: the page was saved out of order before the write went on. */
export interface WpFaultRecord {
  page: number;
  tid: number;
  atMs: number;
}

export interface BackgroundSnapshotResult {
  protect: boolean;
  pages: number;
  /** Pages with uffd-wp set (pagemap bit 57) right after protection: present pages and markers. */
  protectedAtStart: { present: number; markers: number };
  /** pagemap right after protection of one page of each kind the guest left behind at boot. */
  samplesAtStart: { written: PageSample; zeroPage: PageSample; untouched: PageSample };
  /** The image file's bytes, and the memory at the instant of protection (the test's model). */
  image: Uint8Array;
  memoryAtStart: Uint8Array;
  /** The memory when the snapshot finished (read back by the guest) and the model of it. */
  memoryAtEnd: Uint8Array;
  modelAtEnd: Uint8Array;
  /** Pages where the image differs from the memory at start (0 with protection). */
  imageMismatches: number[];
  /** Pages the guest changed while the snapshot ran. */
  changedDuringSnapshot: number[];
  savedInOrder: number;
  savedOnFault: number;
  /** Pages the saver found empty or mapped to the zero page: left as holes in the image. */
  zeroPagesSkipped: number;
  wpFaults: WpFaultRecord[];
  /** Pages still write-protected (pagemap uffd-wp) when the saver finished: none. */
  stillProtected: number;
  writes: number;
  durationMs: number;
  metrics: MetricsSnapshot | null;
  kernel: Kernel;
  lines: string[];
}

export interface PageSample {
  page: number;
  entry: PagemapEntry;
  kpagecount: number;
}

/** A small deterministic PRNG (mulberry32). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Boots the guest: most pages written with a pattern, a few only read (zero page), a few never touched. */
async function boot(vm: Process, ram: number, pages: number, rnd: () => number, model: Uint8Array): Promise<Record<"written" | "zeroPage" | "untouched", number>> {
  const kinds = { written: -1, zeroPage: -1, untouched: -1 };
  const vcpu = vm.spawnThread("vcpu0");
  for (let i = 0; i < pages; i++) {
    const roll = rnd();
    if (roll < 0.15) {
      if (kinds.untouched < 0) kinds.untouched = i;
      continue;
    }
    if (roll < 0.25) {
      await vcpu.read(ram + i * PAGE_SIZE, 1);
      if (kinds.zeroPage < 0) kinds.zeroPage = i;
      continue;
    }
    if (kinds.written < 0) kinds.written = i;
    const bytes = new Uint8Array(PAGE_SIZE).fill((i * 29 + 7) & 0xff);
    bytes.set(new TextEncoder().encode(`boot page ${i};`));
    await vcpu.write(ram + i * PAGE_SIZE, bytes);
    model.set(bytes, i * PAGE_SIZE);
  }
  return kinds;
}

/** Runs the whole scenario on a fresh kernel. */
export async function runBackgroundSnapshot(options: BackgroundSnapshotOptions = {}): Promise<BackgroundSnapshotResult> {
  const seed = options.seed ?? 1;
  const pages = options.pages ?? 48;
  const protect = options.protect ?? true;
  const k = new Kernel({ seed });
  const vm = k.spawn({ name: "qemu" });
  const ram = await vm.mmap(0, pages * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
  const rnd = prng(seed);
  const model = new Uint8Array(pages * PAGE_SIZE);
  const kinds = await boot(vm, ram, pages, rnd, model);

  // Stop the vCPUs, protect everything, note what memory holds now: the image must equal it.
  const uffd = protect ? await Userfaultfd.open(vm, { features: ["wp-unpopulated"], deadline: { virtualMs: null } }) : null;
  if (uffd !== null) {
    await uffd.register(ram, pages * PAGE_SIZE, "wp");
    await uffd.writeProtect(ram, pages * PAGE_SIZE);
  }
  const protectedAtStart = countProtected(vm, ram, pages);
  const sample = (page: number): PageSample => {
    const entry = vm.pagemap(ram + page * PAGE_SIZE, 1)[0]!;
    return { page, entry, kpagecount: entry.pfn === null ? 0 : k.kpagecount(entry.pfn) };
  };
  const samplesAtStart = { written: sample(kinds.written), zeroPage: sample(kinds.zeroPage), untouched: sample(kinds.untouched) };
  const memoryAtStart = model.slice();
  const img = await vm.memfdCreate("snapshot.img");
  await vm.ftruncate(img, pages * PAGE_SIZE);

  const saver = new Saver(k, vm, ram, pages, img, uffd, options.saveMsPerPage ?? 2);
  const t0 = k.now;
  const guest = runGuest(vm, ram, pages, rnd, model, options.writesPerVcpu ?? 40);
  await Promise.all([saver.run(), guest.done]);
  const durationMs = (k.now - t0) / 1e6;
  const stillProtected = countProtected(vm, ram, pages);
  await uffd?.drain();
  const metrics = uffd?.metrics.snapshot() ?? null;
  await uffd?.close();

  const image = await vm.pread(img, pages * PAGE_SIZE, 0);
  const memoryAtEnd = await vm.spawnThread("checker").read(ram, pages * PAGE_SIZE);
  k.checkInvariants();
  const r = {
    protect, pages, protectedAtStart, samplesAtStart, image, memoryAtStart, memoryAtEnd, modelAtEnd: model,
    imageMismatches: diffPages(image, memoryAtStart), changedDuringSnapshot: diffPages(memoryAtStart, model),
    savedInOrder: saver.savedInOrder, savedOnFault: saver.savedOnFault, zeroPagesSkipped: saver.zeroPagesSkipped,
    wpFaults: saver.faults, stillProtected: stillProtected.present + stillProtected.markers,
    writes: guest.writes(), durationMs, metrics, kernel: k,
  };
  await vm.exit(0);
  return { ...r, lines: narrate(r) };
}

/** Two vCPUs write small records to random pages, one write per virtual millisecond each. */
function runGuest(vm: Process, ram: number, pages: number, rnd: () => number, model: Uint8Array, writesPerVcpu: number): { done: Promise<void>; writes: () => number } {
  let writes = 0;
  const vcpu = async (n: number): Promise<void> => {
    const t = vm.spawnThread(`vcpu${n}`);
    for (let i = 0; i < writesPerVcpu; i++) {
      const page = Math.floor(rnd() * pages);
      const off = Math.floor(rnd() * (PAGE_SIZE / 16)) * 16;
      const rec = new TextEncoder().encode(`v${n}w${i}`.padEnd(16, "."));
      model.set(rec, page * PAGE_SIZE + off);
      await t.write(ram + page * PAGE_SIZE + off, rec);
      writes++;
      await vm.poll([], 1);
    }
  };
  return { done: Promise.all([vcpu(0), vcpu(1)]).then(() => undefined), writes: () => writes };
}

/** The saver: address order, except pages a blocked write is waiting for, which go first. */
class Saver {
  readonly #k: Kernel;
  readonly #vm: Process;
  readonly #ram: number;
  readonly #pages: number;
  readonly #img: number;
  readonly #uffd: Userfaultfd | null;
  readonly #msPerPage: number;
  readonly #saved: Uint8Array;
  readonly #urgent: number[] = [];
  readonly #waiting = new Map<number, { fault: Fault; resolve: (r: Resolution) => void }>();
  savedInOrder = 0;
  savedOnFault = 0;
  zeroPagesSkipped = 0;
  readonly faults: WpFaultRecord[] = [];

  constructor(k: Kernel, vm: Process, ram: number, pages: number, img: number, uffd: Userfaultfd | null, msPerPage: number) {
    this.#k = k;
    this.#vm = vm;
    this.#ram = ram;
    this.#pages = pages;
    this.#img = img;
    this.#uffd = uffd;
    this.#msPerPage = msPerPage;
    this.#saved = new Uint8Array(pages);
    uffd?.on("fault", (f) => this.#onFault(f));
  }

  /** A wp fault: the write waits until the saver has saved the page; it goes to the front of the queue. */
  #onFault(f: Fault): Promise<Resolution> | undefined {
    if (f.kind !== "wp") return undefined;
    const page = (f.pageAddress - this.#ram) / PAGE_SIZE;
    this.faults.push({ page, tid: f.threadId, atMs: this.#k.now / 1e6 });
    if (this.#saved[page] === 1) return f.unprotect(); // saved and unprotected after this fault was raised
    this.#urgent.push(page);
    return new Promise((resolve) => this.#waiting.set(page, { fault: f, resolve }));
  }

  async run(): Promise<void> {
    let cursor = 0;
    for (;;) {
      let page = this.#urgent.shift();
      const urgent = page !== undefined;
      if (page === undefined) {
        while (cursor < this.#pages && this.#saved[cursor] === 1) cursor++;
        if (cursor === this.#pages) break;
        page = cursor;
      }
      if (this.#saved[page] === 1) continue;
      await this.#save(page);
      if (urgent) this.savedOnFault++;
      else this.savedInOrder++;
      await this.#vm.poll([], this.#msPerPage); // the saver's bandwidth
    }
  }

  /** Saves one page (its contents cannot change: it is still write-protected), then unprotects it. */
  async #save(page: number): Promise<void> {
    const addr = this.#ram + page * PAGE_SIZE;
    const e = this.#vm.pagemap(addr, 1)[0]!;
    if (!e.present || e.pfn === this.#k.zeroPfn) this.zeroPagesSkipped++; // zeros: a hole in the image
    else await this.#vm.pwrite(this.#img, { addr, length: PAGE_SIZE }, page * PAGE_SIZE);
    this.#saved[page] = 1;
    if (this.#uffd === null) return;
    const w = this.#waiting.get(page);
    this.#waiting.delete(page);
    if (w !== undefined) w.resolve(await w.fault.unprotect());
    else await this.#uffd.unprotect(addr, PAGE_SIZE);
  }
}

function countProtected(vm: Process, ram: number, pages: number): { present: number; markers: number } {
  let present = 0;
  let markers = 0;
  for (const e of vm.pagemap(ram, pages)) {
    if (!e.uffdWp) continue;
    if (e.present) present++;
    else markers++;
  }
  return { present, markers };
}

function diffPages(a: Uint8Array, b: Uint8Array): number[] {
  const out: number[] = [];
  for (let p = 0; p * PAGE_SIZE < a.length; p++) {
    for (let i = p * PAGE_SIZE; i < (p + 1) * PAGE_SIZE; i++) {
      if (a[i] !== b[i]) {
        out.push(p);
        break;
      }
    }
  }
  return out;
}

function narrate(r: Omit<BackgroundSnapshotResult, "lines">): string[] {
  const lines: string[] = [];
  const how = r.protect ? "with userfaultfd write protection" : "WITHOUT write protection";
  lines.push(`Background snapshot of ${r.pages} pages of guest RAM, ${how}.`);
  if (r.protect) {
    lines.push(`1. vCPUs paused; UFFDIO_REGISTER (WP) and UFFDIO_WRITEPROTECT over all RAM: ${r.protectedAtStart.present} present pages`);
    lines.push(`   now read-only with uffd-wp (pagemap bit 57), ${r.protectedAtStart.markers} empty pages carry a uffd-wp marker (WP_UNPOPULATED):`);
    for (const [what, s] of Object.entries(r.samplesAtStart)) lines.push(`     ${what.padEnd(9)} page ${String(s.page).padEnd(3)} ${bits(s.entry)}  kpagecount ${s.kpagecount}`);
  } else {
    lines.push("1. vCPUs paused for a moment, but nothing is protected.");
  }
  lines.push(`2. vCPUs resumed: ${r.writes} writes while the saver ran (${r.durationMs.toFixed(0)} ms of virtual time), changing ${r.changedDuringSnapshot.length} pages.`);
  lines.push(`3. Saver: ${r.savedInOrder} pages in address order, ${r.savedOnFault} ahead of order because a write was waiting for them,`);
  lines.push(`   ${r.zeroPagesSkipped} empty or zero pages left as holes in the image.`);
  if (r.protect) {
    lines.push(`   ${r.wpFaults.length} wp faults; the first ones (each write blocked until the old page was saved, then unprotected):`);
    for (const f of r.wpFaults.slice(0, 6)) lines.push(`     t=${f.atMs.toFixed(1)} ms  tid ${f.tid} wrote page ${f.page}`);
    lines.push(`   Pages still write-protected at the end: ${r.stillProtected}.`);
  }
  const ok = r.imageMismatches.length === 0;
  lines.push(`4. Image vs memory at snapshot start: ${ok ? "identical" : `${r.imageMismatches.length} torn pages (${r.imageMismatches.join(", ")})`}.`);
  lines.push(`   Memory now (the guest kept running) differs from the image in ${diffPages(r.image, r.memoryAtEnd).length} pages; it matches the guest's own model: ${diffPages(r.memoryAtEnd, r.modelAtEnd).length === 0}.`);
  return lines;
}

function bits(e: PagemapEntry): string {
  const b = (x: boolean): string => (x ? "1" : "0");
  return `present ${b(e.present)} swapped/marker ${b(e.swapped)} exclusive ${b(e.exclusive)} uffd-wp ${b(e.uffdWp)} pfn ${e.pfn ?? "-"}`;
}
