/**
 * Lazy restore of a microVM snapshot, in the shape Firecracker gives it (docs/handler-survey.md §1.4-1.5):
 *
 * - the restored VMM maps guest RAM empty, does the userfaultfd handshake, registers the RAM for
 *   MISSING faults (raw UFFDIO_REGISTER, as the VMM does) and sends the fd, with a description of
 *   its regions, to a separate page-fault handler process;
 * - the handler adopts the fd with @uffd/sdk and serves every first touch of a page from the
 *   snapshot file (UFFDIO_COPY; a hole in the file becomes the zero page);
 * - the guest's balloon device gives pages back: the VMM discards them with MADV_DONTNEED
 *   (anonymous RAM) or MADV_REMOVE (memfd RAM). Each discard is a UFFD_EVENT_REMOVE, and the
 *   discarded pages must read back as zeros, as Linux promises for MADV_DONTNEED. A handler that
 *   ignores the event faults the pages in again from the snapshot: stale data in a page the guest
 *   was told is empty. The SDK orders REMOVE events before faults and zero-fills such pages;
 * - a background fill ("fault all") then streams the rest of the snapshot in, skipping the pages
 *   the balloon removed.
 */
import { Kernel, type Process, type UffdioRegister } from "@uffd/kernel";
import { MADV_DONTNEED, MADV_REMOVE, PAGE_SIZE, UFFDIO_REGISTER, UFFDIO_REGISTER_MODE_MISSING } from "@uffd/kernel/uapi";
import { MemfdSource, Userfaultfd, type FillStats, type MetricsSnapshot } from "@uffd/sdk";
import { guestPage, mapGuestRam, prng, takeSnapshot, type GuestMemory, type Snapshot } from "./snapshot.ts";

/** Firecracker's handshake message describes each guest region like this (GuestRegionUffdMapping). */
export interface GuestRegionMapping {
  baseHostVirtAddr: number;
  size: number;
  /** Offset of the region in the snapshot file. */
  offset: number;
  pageSize: number;
}

export interface LazyRestoreOptions {
  seed?: number;
  /** Guest RAM in pages (default 64). */
  pages?: number;
  memory?: GuestMemory;
  /** "sdk": serve() from @uffd/sdk. "naive": copies from the snapshot on every fault, ignoring REMOVE. */
  handler?: "sdk" | "naive";
}

/** One ballooned page after the guest took it back, as procfs shows it. */
export interface BalloonPageView {
  page: number;
  /** The snapshot file holds data for it (a handler that ignores REMOVE would serve that). */
  inSnapshot: boolean;
  /** The guest read it back as all zeros. */
  zero: boolean;
  present: boolean;
  pfn: number | null;
  zeroPage: boolean;
  file: boolean;
  kpagecount: number;
}

export interface LazyRestoreResult {
  memory: GuestMemory;
  handler: "sdk" | "naive";
  pages: number;
  /** Pages the snapshot file holds data for (the rest are holes). */
  dataPages: number[];
  mappings: GuestRegionMapping[];
  /** The ioctls mask UFFDIO_REGISTER returned. */
  registerIoctls: bigint;
  /** Pages the vCPUs touched right after resume, and whether every byte matched the snapshot. */
  workingSet: number[];
  workingSetMatches: boolean;
  /** The balloon's pages, the REMOVE events the handler saw, and the madvise used. */
  balloon: number[];
  balloonAdvice: "MADV_DONTNEED" | "MADV_REMOVE";
  removeEvents: Array<{ start: number; end: number }>;
  /** The balloon pages the guest took back before the background fill. */
  reclaimed: BalloonPageView[];
  /** Balloon pages the fill left alone (not present after it). */
  untouchedAfterFill: number[];
  /** Balloon pages read back with snapshot bytes instead of zeros (stale data). */
  staleBalloonPages: number[];
  fill: FillStats;
  /** Pages whose bytes differ from what the guest should see, at the end. */
  mismatches: number[];
  metrics: MetricsSnapshot;
  /** The first page vcpu0 read after resume, and its bytes. */
  firstRead: { page: number; bytes: Uint8Array };
  zeroPfn: number;
  /** The kernel the run used (its processes have exited), for checkInvariants(). */
  kernel: Kernel;
  lines: string[];
}

/** Runs snapshot, lazy restore, balloon and background fill on a fresh kernel. */
export async function runLazyRestore(options: LazyRestoreOptions = {}): Promise<LazyRestoreResult> {
  const seed = options.seed ?? 1;
  const pages = options.pages ?? 64;
  const memory = options.memory ?? "anon";
  const handlerKind = options.handler ?? "sdk";
  const k = new Kernel({ seed });
  const lines: string[] = [];
  const say = (s: string): void => void lines.push(s);

  const handler = k.spawn({ name: "uffd-handler" });
  const snap = await takeSnapshot(k, handler, pages, memory, seed);
  say(`1. Snapshot: the guest ran in a VMM process with ${pages} pages of ${memory} RAM, then its pages were written to a memfd`);
  say(`   with pwrite() from guest memory. Untouched and all-zero pages are holes: ${snap.dataPages.length} data pages, ${pages - snap.dataPages.length} holes.`);

  const vm = k.spawn({ name: "firecracker" });
  const { ram, mappings, registerIoctls, hfd, features } = await restoreVmm(vm, handler, pages, memory);
  say(`2. Restore: a new VMM maps guest RAM empty at 0x${ram.toString(16)}, does the UFFDIO_API handshake (features ${features.join(", ")}),`);
  say(`   registers it MISSING (ioctls mask 0x${registerIoctls.toString(16)}) and sends the fd to the handler process with the region list`);
  for (const m of mappings) say(`   { base_host_virt_addr: 0x${m.baseHostVirtAddr.toString(16)}, size: ${m.size}, offset: ${m.offset}, page_size: ${m.pageSize} }`);

  const uffd = Userfaultfd.adopt(handler, hfd, {
    features,
    ranges: mappings.map((m) => ({ start: m.baseHostVirtAddr, len: m.size, modes: "missing" as const, offset: m.offset })),
    target: vm,
  });
  const removeEvents: Array<{ start: number; end: number }> = [];
  uffd.on("remove", (r) => void removeEvents.push({ start: r.start, end: r.end }));
  const source = new MemfdSource(handler, snap.fd);
  installHandler(uffd, source, handlerKind);
  say(`3. The handler adopts the fd: ${handlerKind === "sdk" ? "uffd.serve(new MemfdSource(snapshot)): data pages by UFFDIO_COPY, holes and removed pages by UFFDIO_ZEROPAGE" : "on every fault it copies the snapshot page (UFFDIO_COPY), whatever REMOVE said"}.`);

  const model = snap.image.slice();
  const guest = new Guest(vm, ram, model, seed);
  const { workingSet, matches, firstRead } = await guest.resume(pages);
  say(`4. Resume: two vCPUs touch ${workingSet.length} pages (reads and writes); each first touch blocks in a MISSING fault until the`);
  say(`   handler installs the page. Every byte read matched the snapshot: ${matches}. Faults so far: ${uffd.metrics.snapshot().faults.missing}.`);

  const balloon = pickBalloon(pages, workingSet, snap);
  const balloonAdvice = memory === "anon" ? "MADV_DONTNEED" : "MADV_REMOVE";
  await guest.inflateBalloon(balloon, balloonAdvice === "MADV_DONTNEED" ? MADV_DONTNEED : MADV_REMOVE);
  say(`5. Balloon: the guest gives ${balloon.length} pages back; the VMM discards them with ${balloonAdvice} while a vCPU keeps faulting`);
  say(`   elsewhere. Each madvise() waits until the handler has read its UFFD_EVENT_REMOVE: ${removeEvents.map((r) => `pages [${(r.start - ram) / PAGE_SIZE}, ${(r.end - ram) / PAGE_SIZE})`).join(", ")}.`);

  const taken = balloon.slice(0, Math.ceil(balloon.length / 2));
  const reclaimed = await guest.reclaim(k, taken, snap);
  const fill = await uffd.fill(source).done;
  const untouchedAfterFill = balloon.filter((p) => !taken.includes(p) && !vm.pagemap(ram + p * PAGE_SIZE, 1)[0]!.present);
  say(`6. The guest takes ${taken.length} balloon pages back and reads them (table below); then a background fill streams the rest of`);
  say(`   the snapshot in: ${fill.installedBytes / PAGE_SIZE} pages installed, ${fill.presentBytes / PAGE_SIZE} found present; ${untouchedAfterFill.length} removed pages left unpopulated.`);

  const { mismatches, stale } = await guest.verifyAll(pages, balloon, snap);
  await uffd.drain();
  const metrics = uffd.metrics.snapshot();
  k.checkInvariants();
  await uffd.close();
  await vm.exit(0);
  k.checkInvariants();
  return {
    memory, handler: handlerKind, pages, dataPages: snap.dataPages, mappings, registerIoctls,
    workingSet, workingSetMatches: matches, balloon, balloonAdvice, removeEvents, reclaimed,
    untouchedAfterFill, staleBalloonPages: stale, fill, mismatches, metrics, firstRead, zeroPfn: k.zeroPfn, kernel: k,
    lines: [...lines, ...describeEnd(reclaimed, stale, mismatches, metrics)],
  };
}

/** The VMM side: empty RAM, handshake, MISSING registration, fd and region list to the handler. */
async function restoreVmm(vm: Process, handler: Process, pages: number, memory: GuestMemory) {
  const ram = await mapGuestRam(vm, pages, memory);
  const { fd, features } = await Userfaultfd.prepare(vm, { features: ["event-remove"], optionalFeatures: ["thread-id", "missing-shmem"] });
  const reg: UffdioRegister = { range: { start: ram, len: pages * PAGE_SIZE }, mode: UFFDIO_REGISTER_MODE_MISSING };
  await vm.ioctl(fd, UFFDIO_REGISTER, reg);
  const mappings: GuestRegionMapping[] = [{ baseHostVirtAddr: ram, size: pages * PAGE_SIZE, offset: 0, pageSize: PAGE_SIZE }];
  const hfd = await vm.sendFd(fd, handler);
  await vm.close(fd); // the handler's copy keeps the userfaultfd alive
  return { ram, mappings, registerIoctls: reg.ioctls ?? 0n, hfd, features };
}

function installHandler(uffd: Userfaultfd, source: MemfdSource, kind: "sdk" | "naive"): void {
  if (kind === "sdk") {
    uffd.serve(source);
    return;
  }
  // What a first handler often looks like: the page's bytes from the snapshot, whatever happened since.
  uffd.on("fault", async (f) => {
    const bytes = await source.read(f.offset, PAGE_SIZE);
    return bytes === null ? f.zeropage() : f.copy(bytes);
  });
}

/** Two runs of balloon pages: one inside the working set (served pages), one that was never touched. */
function pickBalloon(pages: number, workingSet: number[], snap: Snapshot): number[] {
  const touched = new Set(workingSet);
  const out: number[] = [];
  const run = (from: number, want: (p: number) => boolean): void => {
    for (let p = from; p + 4 <= pages; p++) {
      const r = [p, p + 1, p + 2, p + 3];
      if (r.some((q) => out.includes(q))) continue;
      if (r.filter(want).length >= 2 && r.some((q) => snap.dataPages.includes(q))) {
        out.push(...r);
        return;
      }
    }
  };
  run(0, (p) => touched.has(p));
  run(0, (p) => !touched.has(p));
  return out.sort((a, b) => a - b);
}

function describeEnd(reclaimed: BalloonPageView[], stale: number[], mismatches: number[], m: MetricsSnapshot): string[] {
  const lines = ["", "   Balloon pages the guest took back (read before the fill):"];
  lines.push("     page  in-snapshot  read-as-zero  present  pfn         file  kpagecount");
  for (const v of reclaimed) {
    const pfn = v.pfn === null ? "-" : v.zeroPage ? `${v.pfn} (zero)` : String(v.pfn);
    lines.push(`     ${String(v.page).padEnd(4)}  ${yes(v.inSnapshot).padEnd(11)}  ${yes(v.zero).padEnd(12)}  ${yes(v.present).padEnd(7)}  ${pfn.padEnd(10)}  ${yes(v.file).padEnd(4)}  ${v.kpagecount}`);
  }
  lines.push("");
  lines.push(`7. Stale balloon pages (snapshot bytes where zeros belong): ${stale.length === 0 ? "none" : stale.join(", ")}.`);
  lines.push(`   Pages differing from what the guest should see: ${mismatches.length === 0 ? "none" : mismatches.join(", ")}.`);
  lines.push(`   Handler metrics: ${m.faults.missing} missing faults, ${m.events.remove} REMOVE events, ${m.bytes.copy / PAGE_SIZE} pages copied (${m.bytes.prefetch / PAGE_SIZE} by the fill), ${m.bytes.zeropage / PAGE_SIZE} zero-filled, ${m.retries.eagain} EAGAIN retries.`);
  return lines;
}

const yes = (b: boolean): string => (b ? "yes" : "no");

/** The restored guest: vCPU threads of the VMM process, and the model of what its memory must hold. */
class Guest {
  readonly #vm: Process;
  readonly #ram: number;
  readonly #model: Uint8Array;
  readonly #rnd: () => number;

  constructor(vm: Process, ram: number, model: Uint8Array, seed: number) {
    this.#vm = vm;
    this.#ram = ram;
    this.#model = model;
    this.#rnd = prng(seed ^ 0x5eed);
  }

  #page(p: number): Uint8Array {
    return this.#model.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE);
  }

  /** Two vCPUs touch a working set concurrently: vcpu0 reads, vcpu1 writes a new generation. */
  async resume(pages: number): Promise<{ workingSet: number[]; matches: boolean; firstRead: { page: number; bytes: Uint8Array } }> {
    const reads: number[] = [];
    const writes: number[] = [];
    for (let p = 0; p < pages; p++) {
      const r = this.#rnd();
      if (r < 0.35) reads.push(p);
      else if (r < 0.5) writes.push(p);
    }
    const [v0, v1] = [this.#vm.spawnThread("vcpu0"), this.#vm.spawnThread("vcpu1")];
    let matches = true;
    let firstRead: { page: number; bytes: Uint8Array } = { page: -1, bytes: new Uint8Array(0) };
    const reader = async (): Promise<void> => {
      for (const p of reads) {
        const bytes = await v0.read(this.#ram + p * PAGE_SIZE, PAGE_SIZE);
        if (firstRead.page < 0) firstRead = { page: p, bytes };
        if (!equal(bytes, this.#page(p))) matches = false;
      }
    };
    const writer = async (): Promise<void> => {
      for (const p of writes) {
        const bytes = guestPage(p, 2);
        this.#page(p).set(bytes);
        await v1.write(this.#ram + p * PAGE_SIZE, bytes);
      }
    };
    await Promise.all([reader(), writer()]);
    return { workingSet: [...reads, ...writes].sort((a, b) => a - b), matches, firstRead };
  }

  /** The balloon driver hands the pages to the host; the VMM discards each run while a vCPU keeps running. */
  async inflateBalloon(balloon: number[], advice: number): Promise<void> {
    const runs: Array<[number, number]> = [];
    for (const p of balloon) {
      const last = runs[runs.length - 1];
      if (last !== undefined && last[1] === p) last[1] = p + 1;
      else runs.push([p, p + 1]);
    }
    for (const p of balloon) this.#page(p).fill(0);
    const busy = this.#vm.spawnThread("vcpu1");
    const others = async (): Promise<void> => {
      for (let p = 0; p < this.#model.length / PAGE_SIZE; p += 3) if (!balloon.includes(p)) await busy.read(this.#ram + p * PAGE_SIZE, 1);
    };
    const discard = async (): Promise<void> => {
      for (const [s, e] of runs) await this.#vm.madvise(this.#ram + s * PAGE_SIZE, (e - s) * PAGE_SIZE, advice);
    };
    await Promise.all([others(), discard()]);
  }

  /** The balloon deflates: the guest reads the pages it gets back; procfs shows what backs them. */
  async reclaim(k: Kernel, taken: number[], snap: Snapshot): Promise<BalloonPageView[]> {
    const v0 = this.#vm.spawnThread("vcpu0");
    const out: BalloonPageView[] = [];
    for (const p of taken) {
      const bytes = await v0.read(this.#ram + p * PAGE_SIZE, PAGE_SIZE);
      const e = this.#vm.pagemap(this.#ram + p * PAGE_SIZE, 1)[0]!;
      out.push({
        page: p,
        inSnapshot: snap.dataPages.includes(p),
        zero: bytes.every((b) => b === 0),
        present: e.present,
        pfn: e.pfn,
        zeroPage: e.pfn === k.zeroPfn,
        file: e.file,
        kpagecount: e.pfn === null ? 0 : k.kpagecount(e.pfn),
      });
    }
    return out;
  }

  /** Reads every page and compares it with the model. */
  async verifyAll(pages: number, balloon: number[], snap: Snapshot): Promise<{ mismatches: number[]; stale: number[] }> {
    const v0 = this.#vm.spawnThread("vcpu0");
    const mismatches: number[] = [];
    const stale: number[] = [];
    for (let p = 0; p < pages; p++) {
      const bytes = await v0.read(this.#ram + p * PAGE_SIZE, PAGE_SIZE);
      if (!equal(bytes, this.#page(p))) mismatches.push(p);
      if (balloon.includes(p) && equal(bytes, snap.image.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE)) && snap.dataPages.includes(p)) stale.push(p);
    }
    return { mismatches, stale };
  }
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
