/**
 * The driver: runs a scenario on one backend and turns each step's answer into a record that
 * no longer depends on where things happen to live. Both executions go through this same code,
 * so a difference between their records is a difference between the kernels.
 *
 * Placement: region slots sit at fixed addresses (ARENA_BASE + slot * SLOT_BYTES, mapped with
 * MAP_FIXED_NOREPLACE) on both sides, so vma neighbourhoods match. Addresses in answers (mmap
 * and mremap results, message addresses, smaps ranges, PAGEMAP_SCAN regions) are rewritten as
 * `Region+page` (plus `+0xNN` for a byte offset), naming the region a process has there now or
 * had there before; fds become the scenario's names for them.
 */
import { ERRNO } from "@uffd/kernel/uapi";
import { ARENA_BASE, type Backend, type World, MAP_FIXED_NOREPLACE, type PmEntry, type RawMsg, type RawResult, SLOT_BYTES } from "./backend.ts";
import { formatStep, num, type Scenario, type Step } from "./scenario.ts";

export const PAGE = 4096;
export const MAX_PROCS = 8;

const PROT: Readonly<Record<string, number>> = { none: 0, r: 1, w: 2, rw: 3, rx: 5, rwx: 7 };

/** madvise advice names (include/uapi/asm-generic/mman-common.h). */
export const ADVICE: Readonly<Record<string, number>> = {
  normal: 0,
  random: 1,
  sequential: 2,
  willneed: 3,
  dontneed: 4,
  free: 8,
  remove: 9,
  dontfork: 10,
  dofork: 11,
  mergeable: 12,
  unmergeable: 13,
  hugepage: 14,
  nohugepage: 15,
  dontdump: 16,
  dodump: 17,
  wipeonfork: 18,
  keeponfork: 19,
  cold: 20,
  pageout: 21,
  populate_read: 22,
  populate_write: 23,
  dontneed_locked: 24,
  collapse: 25,
  guard_install: 102,
  guard_remove: 103,
};

/** UFFDIO_API feature names (include/uapi/linux/userfaultfd.h). */
export const FEATURES: Readonly<Record<string, number>> = {
  pagefault_wp: 1 << 0,
  fork: 1 << 1,
  remap: 1 << 2,
  remove: 1 << 3,
  missing_hugetlbfs: 1 << 4,
  missing_shmem: 1 << 5,
  unmap: 1 << 6,
  sigbus: 1 << 7,
  thread_id: 1 << 8,
  minor_hugetlbfs: 1 << 9,
  minor_shmem: 1 << 10,
  exact_address: 1 << 11,
  wp_shmem: 1 << 12,
  wp_unpopulated: 1 << 13,
  poison: 1 << 14,
  wp_async: 1 << 15,
  move: 1 << 16,
};

const MODES: Readonly<Record<string, number>> = { missing: 1, wp: 2, minor: 4 };

/** lseek(2) whences (include/uapi/linux/fs.h). */
const SEEK: Readonly<Record<string, number>> = { set: 0, cur: 1, end: 2, data: 3, hole: 4 };

/** memfd seals (include/uapi/linux/fcntl.h) and the fcntl commands that add and read them. */
const SEALS: Readonly<Record<string, number>> = { seal: 1, shrink: 2, grow: 4, write: 8, future_write: 0x10, exec: 0x20 };
const F_ADD_SEALS = 1033;
const F_GET_SEALS = 1034;

const EVENTS: Readonly<Record<number, string>> = { 0x12: "pagefault", 0x13: "fork", 0x14: "remap", 0x15: "remove", 0x16: "unmap" };

const ERRNO_NAME = new Map<number, string>(Object.entries(ERRNO).map(([k, v]) => [v, k]));

export function errnoName(n: number): string {
  return ERRNO_NAME.get(n) ?? `errno ${n}`;
}

interface Region {
  base: number;
  pages: number;
}

type Handle = { fd: number } | { r: number; w: number };

interface DProc {
  index: number;
  regions: Map<string, Region>;
  handles: Map<string, Handle>;
  live: boolean;
  exited: boolean;
  /** Fork messages read so far by this process, for naming their new uffds. */
  forkFds: number;
  /** io_uring rings with a registered fixed buffer, by name: the backend's ring id and the buffer. A fork child has none. */
  rings: Map<string, { id: number; base: number; len: number }>;
}

/** A normalised answer. JSON-comparable except `pm`, whose frames the comparer labels. */
export type Norm = Record<string, unknown> | "blocked";

/** One step as a backend answered it, normalised for comparison. */
export interface StepRecord {
  /** 0-based step index. */
  readonly index: number;
  /** The step as scenario text. */
  readonly text: string;
  /** This step's answer. */
  r: Norm;
  /** Earlier steps (by index) that finished during this one. */
  readonly done: Record<number, Norm>;
  /** Simulation only: frames whose identity ended during this step. */
  readonly churn: readonly number[] | null;
  /** Simulation only: whether this step mapped the shared zero page (absent: not known). */
  readonly zeroMapped?: boolean;
}

class Skip extends Error {}

/**
 * The world a scenario asks for in its header: `# swap: zram` for a zram swap device (any other
 * value is refused rather than run without the swap the scenario expects).
 */
export function worldOf(scenario: Scenario): World {
  const swap = scenario.meta["swap"];
  if (swap === undefined) return {};
  if (swap.trim() !== "zram") throw new Error(`${scenario.name}: "# swap: ${swap}": the only swap device is zram`);
  return { swap: true };
}

/** Runs scenarios on one backend: places regions, resolves names to addresses, issues the primitives and normalises the answers. */
export class Driver {
  /** The backend the driver runs on. */
  readonly backend: Backend;
  #procs = new Map<string, DProc>();
  #slots = new Map<string, number>();
  /** Every placement a region has had, newest last, for naming addresses. */
  #history: Array<{ name: string; base: number; pages: number }> = [];
  #pendingForks = new Map<number, { parent: string; child: string }>();
  #ringIds = 0;

  constructor(backend: Backend) {
    this.backend = backend;
  }

  /** Runs a scenario from a fresh world; resolves to one record per step. */
  async run(scenario: Scenario): Promise<StepRecord[]> {
    await this.backend.reset(worldOf(scenario));
    this.#procs = new Map([["p0", { index: 0, regions: new Map(), handles: new Map(), live: true, exited: false, forkFds: 0, rings: new Map() }]]);
    this.#slots = new Map();
    this.#history = [];
    this.#pendingForks = new Map();
    this.#ringIds = 0;
    const records: StepRecord[] = [];
    for (let i = 0; i < scenario.steps.length; i++) {
      const step = scenario.steps[i] as Step;
      records.push(await this.#step(i, step));
    }
    return records;
  }

  async #step(index: number, step: Step): Promise<StepRecord> {
    const text = formatStep(step);
    const proc = this.#procs.get(step.proc);
    const skip = (why: string): StepRecord => ({ index, text, r: { skip: why }, done: {}, churn: [] });
    if (proc === undefined) return skip(`no process ${step.proc}`);
    if (!proc.live) return skip(`process ${step.proc} is not running`);
    if (proc.exited) return skip(`process ${step.proc} has exited`);
    let prims: Array<{ op: string; args: number[]; post?: (r: RawResult) => Norm }>;
    try {
      this.#current = index;
      prims = this.#resolve(proc, step);
    } catch (e) {
      if (e instanceof Skip) return skip(e.message);
      throw e;
    }
    const done: Record<number, Norm> = {};
    let r: Norm = { ret: 0 };
    const churn: number[] = [];
    let sim = false;
    let zeroMapped = false;
    for (const prim of prims) {
      const reply = await this.backend.exec(proc.index, index, prim.op, prim.args);
      const c = this.backend.churn();
      if (c !== null) {
        sim = true;
        churn.push(...c);
      }
      if (this.backend.zeroMapped() === true) zeroMapped = true;
      for (const d of reply.done) done[d.id] = await this.#finish(d.id, d.r);
      if (reply.r.blocked === 1) {
        r = "blocked";
        this.#posts.set(index, prim.post ?? ((x) => this.#generic(proc, x)));
        break;
      }
      r = (prim.post ?? ((x) => this.#generic(proc, x)))(reply.r);
      if (prim.op === "fork") await this.#forkDone(index, reply.r);
      if (reply.r.err !== undefined || reply.r.sig !== undefined || reply.r.bad !== undefined) break;
    }
    return sim ? { index, text, r, done, churn, zeroMapped } : { index, text, r, done, churn: null };
  }

  #posts = new Map<number, (r: RawResult) => Norm>();

  /** A blocked step finished: normalise its answer (and make a forked child live). */
  async #finish(id: number, raw: RawResult): Promise<Norm> {
    const post = this.#posts.get(id);
    this.#posts.delete(id);
    await this.#forkDone(id, raw);
    return post === undefined ? this.#generic(this.#procs.get("p0") as DProc, raw) : post(raw);
  }

  /** A fork step finished: its child takes steps from now on (or never existed). */
  async #forkDone(id: number, raw: RawResult): Promise<void> {
    const fork = this.#pendingForks.get(id);
    if (fork === undefined) return;
    this.#pendingForks.delete(id);
    const child = this.#procs.get(fork.child);
    if (child === undefined) return;
    if (raw.ret === 0 && raw.err === undefined) {
      child.live = true;
      await this.backend.live(child.index);
    } else this.#procs.delete(fork.child);
  }

  /** The common part of every answer: return value, errno name, signal, harness trouble. */
  #generic(proc: DProc, r: RawResult): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    if (r.bad !== undefined) out["bad"] = r.bad;
    if (r.sig !== undefined) out["sig"] = r.sig;
    if (r.err !== undefined) out["err"] = errnoName(r.err);
    else if (r.ret !== undefined && r.sig === undefined) out["ret"] = r.ret;
    if (r.out !== undefined) out["out"] = r.out < 0 ? `-${errnoName(-r.out)}` : r.out;
    if (r.data !== undefined) out["data"] = r.data;
    if (r.vec !== undefined) out["vec"] = r.vec;
    if (r.features !== undefined) out["features"] = `0x${r.features.toString(16)}`;
    if (r.ioctls !== undefined) out["ioctls"] = `0x${r.ioctls}`;
    if (r.pm !== undefined) out["pm"] = r.pm;
    if (r.walkEnd !== undefined) out["walkEnd"] = this.loc(proc, r.walkEnd);
    if (r.regions !== undefined) out["regions"] = r.regions.map(([s, e, c]) => [this.loc(proc, s), this.loc(proc, e), `0x${c.toString(16)}`]);
    if (r.vmas !== undefined) {
      out["vmas"] = r.vmas.map((v) => ({ start: this.loc(proc, v.start), end: this.loc(proc, v.end), perms: v.perms, flags: v.flags, rss: v.rss, anon: v.anon, swap: v.swap }));
    }
    return out;
  }

  /** An address as `Region+page[+0xbyte]`: a region of this process first, then any placement ever. */
  loc(proc: DProc, addr: number): string {
    const name = (n: string, base: number): string => {
      const off = addr - base;
      const page = Math.floor(off / PAGE);
      const byte = off % PAGE;
      return `${n}+${page}${byte === 0 ? "" : `+0x${byte.toString(16)}`}`;
    };
    for (const [n, reg] of proc.regions) if (addr >= reg.base && addr <= reg.base + reg.pages * PAGE) return name(n, reg.base);
    for (let i = this.#history.length - 1; i >= 0; i--) {
      const h = this.#history[i] as { name: string; base: number; pages: number };
      if (addr >= h.base && addr <= h.base + h.pages * PAGE) return name(h.name, h.base);
    }
    return `0x${addr.toString(16)}`;
  }

  #slot(name: string): number {
    let s = this.#slots.get(name);
    if (s === undefined) {
      s = this.#slots.size;
      this.#slots.set(name, s);
    }
    return ARENA_BASE + s * SLOT_BYTES;
  }

  #addr(proc: DProc, loc: string, off: string): number {
    if (/^(0x[0-9a-fA-F]+|\d+)$/.test(loc)) return num(loc) + num(off) * PAGE;
    const reg = proc.regions.get(loc);
    if (reg === undefined) throw new Skip(`no region ${loc}`);
    return reg.base + num(off) * PAGE;
  }

  #fd(proc: DProc, name: string): number {
    const h = proc.handles.get(name);
    if (h === undefined || !("fd" in h)) throw new Skip(`no file ${name}`);
    return h.fd;
  }

  #pipe(proc: DProc, name: string): { r: number; w: number } {
    const h = proc.handles.get(name);
    if (h === undefined || !("r" in h)) throw new Skip(`no pipe ${name}`);
    return h;
  }

  #place(name: string, base: number, pages: number): void {
    this.#history.push({ name, base, pages });
  }

  /** The primitives of one step (usually one), each with how to normalise its answer. */
  #resolve(proc: DProc, step: Step): Array<{ op: string; args: number[]; post?: (r: RawResult) => Norm }> {
    const a = step.args;
    const g = (r: RawResult): Norm => this.#generic(proc, r);
    const flags = (from: number): Set<string> => new Set(a.slice(from));
    const pages = (i: number): number => num(a[i] as string) * PAGE;
    switch (step.verb) {
      case "map": {
        const [name, n, kind] = a as [string, string, string];
        let prot = PROT["rw"] as number;
        let fd = -1;
        for (const w of a.slice(3)) {
          if (PROT[w] !== undefined) prot = PROT[w];
          else fd = this.#fd(proc, w);
        }
        const mflags = { anon: 0x22, shanon: 0x21, shared: 0x01, private: 0x02 }[kind];
        if (mflags === undefined) throw new Skip(`unknown mapping kind ${kind}`);
        if ((mflags & 0x20) === 0 && fd < 0) throw new Skip(`map ${kind} needs a file`);
        const base = this.#slot(name);
        const len = num(n) * PAGE;
        return [
          {
            op: "mmap",
            args: [base, len, prot, mflags | MAP_FIXED_NOREPLACE, mflags & 0x20 ? -1 : fd, 0],
            post: (r) => {
              if (r.ret !== undefined && r.err === undefined) {
                proc.regions.set(name, { base: r.ret, pages: num(n) });
                this.#place(name, r.ret, num(n));
                return { ret: this.loc(proc, r.ret) };
              }
              return g(r);
            },
          },
        ];
      }
      case "unmap":
        return [{ op: "munmap", args: [this.#addr(proc, a[0] as string, a[1] as string), pages(2)] }];
      case "protect": {
        const prot = PROT[a[3] as string];
        if (prot === undefined) throw new Skip(`unknown protection ${a[3]}`);
        return [{ op: "mprotect", args: [this.#addr(proc, a[0] as string, a[1] as string), pages(2), prot] }];
      }
      case "advise": {
        const adv = /^(0x[0-9a-fA-F]+|\d+)$/.test(a[3] as string) ? num(a[3] as string) : ADVICE[a[3] as string];
        if (adv === undefined) throw new Skip(`unknown advice ${a[3]}`);
        return [{ op: "madvise", args: [this.#addr(proc, a[0] as string, a[1] as string), pages(2), adv] }];
      }
      case "remap": {
        const name = a[0] as string;
        const reg = proc.regions.get(name);
        if (reg === undefined) throw new Skip(`no region ${name}`);
        const newPages = num(a[1] as string);
        let mflags = 0;
        let to = 0;
        let target: string | null = null;
        for (let i = 2; i < a.length; i++) {
          const w = a[i] as string;
          if (w === "move") mflags |= 1;
          else if (w === "dontunmap") mflags |= 4;
          else if (w === "to") {
            target = a[++i] ?? "";
            const t = proc.regions.get(target);
            if (t === undefined) throw new Skip(`no region ${target}`);
            to = t.base;
            mflags |= 3;
          } else throw new Skip(`unknown remap flag ${w}`);
        }
        return [
          {
            op: "mremap",
            args: [reg.base, reg.pages * PAGE, newPages * PAGE, mflags, to],
            post: (r) => {
              if (r.err !== undefined || r.ret === undefined) return g(r);
              if (target !== null) proc.regions.delete(target);
              proc.regions.set(name, { base: r.ret, pages: newPages });
              this.#place(name, r.ret, newPages);
              return { ret: this.loc(proc, r.ret) };
            },
          },
        ];
      }
      case "memfd": {
        // memfd_create() then ftruncate() to the size: the second primitive takes the fd the first got.
        const name = a[0] as string;
        const truncate = { op: "ftruncate", args: [-1, pages(1)] };
        let mfd = 0;
        for (const w of a.slice(2)) {
          if (w === "sealing") mfd |= 2; // MFD_ALLOW_SEALING
          else if (w === "noexec") mfd |= 8; // MFD_NOEXEC_SEAL
          else throw new Skip(`unknown memfd flag ${w}`);
        }
        return [
          {
            op: "memfd",
            args: [mfd],
            post: (r) => {
              if (r.err === undefined && r.ret !== undefined) {
                proc.handles.set(name, { fd: r.ret });
                truncate.args[0] = r.ret;
                return { ret: 0 };
              }
              return g(r);
            },
          },
          truncate,
        ];
      }
      case "reopen": {
        // open("/proc/self/fd/<F>"): a new open file description of the file (FMODE_ATOMIC_POS).
        const name = a[0] as string;
        const acc = a[2] ?? "rw";
        const mode = { r: 0, w: 1, rw: 2 }[acc];
        if (mode === undefined) throw new Skip(`reopen G F [r|w|rw], not ${acc}`);
        return [
          {
            op: "reopen",
            args: [this.#fd(proc, a[1] as string), mode | 0o2000000],
            post: (r) => {
              if (r.err === undefined && r.ret !== undefined) {
                proc.handles.set(name, { fd: r.ret });
                return { ret: 0 };
              }
              return g(r);
            },
          },
        ];
      }
      case "lseek": {
        const whence = /^(0x[0-9a-fA-F]+|\d+)$/.test(a[2] as string) ? num(a[2] as string) : SEEK[a[2] as string];
        if (whence === undefined) throw new Skip(`lseek F off set|cur|end|data|hole, not ${a[2]}`);
        return [{ op: "lseek", args: [this.#fd(proc, a[0] as string), pages(1), whence] }];
      }
      case "seal": {
        let seals = 0;
        for (const w of (a[1] as string).split(",")) {
          const bit = /^(0x[0-9a-fA-F]+|\d+)$/.test(w) ? num(w) : SEALS[w];
          if (bit === undefined) throw new Skip(`unknown seal ${w}`);
          seals |= bit;
        }
        return [{ op: "fcntl", args: [this.#fd(proc, a[0] as string), F_ADD_SEALS, seals] }];
      }
      case "seals":
        return [{ op: "fcntl", args: [this.#fd(proc, a[0] as string), F_GET_SEALS, 0] }];
      case "fread": {
        const fd = this.#fd(proc, a[0] as string);
        if (a[2] === "into") return [{ op: "readfu", args: [fd, pages(1), this.#addr(proc, a[3] ?? "", a[4] ?? "0")] }];
        if (a.length !== 2) throw new Skip("fread F n [into R off]");
        return [{ op: "readf", args: [fd, pages(1)] }];
      }
      case "fwrite": {
        const fd = this.#fd(proc, a[0] as string);
        if (a[2] === "from") return [{ op: "writefu", args: [fd, pages(1), this.#addr(proc, a[3] ?? "", a[4] ?? "0")] }];
        if (a.length !== 3 || !/^(0x[0-9a-fA-F]+|\d+)$/.test(a[2] as string)) throw new Skip("fwrite F n (byte | from R off)");
        return [{ op: "writef", args: [fd, pages(1), num(a[2] as string) & 0xff] }];
      }
      case "truncate":
        return [{ op: "ftruncate", args: [this.#fd(proc, a[0] as string), pages(1)] }];
      case "punch":
        return [{ op: "fallocate", args: [this.#fd(proc, a[0] as string), 3, pages(1), pages(2)] }];
      case "fallocate":
        return [{ op: "fallocate", args: [this.#fd(proc, a[0] as string), 0, pages(1), pages(2)] }];
      case "pwrite": {
        const fd = this.#fd(proc, a[0] as string);
        if (a[3] === "from") return [{ op: "pwriteu", args: [fd, pages(1), pages(2), this.#addr(proc, a[4] ?? "", a[5] ?? "0")] }];
        if (a.length !== 4 || !/^(0x[0-9a-fA-F]+|\d+)$/.test(a[3] as string)) throw new Skip("pwrite F off n (byte | from R off)");
        return [{ op: "pwrite", args: [fd, pages(1), pages(2), num(a[3] as string) & 0xff] }];
      }
      case "pread": {
        const fd = this.#fd(proc, a[0] as string);
        if (a[3] === "into") return [{ op: "preadu", args: [fd, pages(1), pages(2), this.#addr(proc, a[4] ?? "", a[5] ?? "0")] }];
        return [{ op: "pread", args: [fd, pages(1), pages(2)] }];
      }
      case "pipe": {
        const name = a[0] as string;
        return [
          {
            op: "pipe",
            args: [],
            post: (r) => {
              if (r.fds !== undefined) proc.handles.set(name, { r: r.fds[0], w: r.fds[1] });
              return r.err === undefined ? { ret: 0 } : g(r);
            },
          },
        ];
      }
      case "vmsplice":
        return [{ op: "vmsplice", args: [this.#pipe(proc, a[0] as string).w, this.#addr(proc, a[1] as string, a[2] as string), pages(3), 0] }];
      case "drain":
        return [{ op: "readpipe", args: [this.#pipe(proc, a[0] as string).r, pages(1)] }];
      case "close": {
        const name = a[0] as string;
        const h = proc.handles.get(name);
        if (h === undefined) throw new Skip(`no handle ${name}`);
        proc.handles.delete(name);
        return "fd" in h ? [{ op: "close", args: [h.fd] }] : [{ op: "close", args: [h.r] }, { op: "close", args: [h.w] }];
      }
      case "uffd": {
        const name = a[0] as string;
        const umo = flags(1).has("umo") ? 1 : 0;
        return [
          {
            op: "uffd",
            args: [0o2000000 | 0o4000 | umo],
            post: (r) => {
              if (r.err === undefined && r.ret !== undefined) {
                proc.handles.set(name, { fd: r.ret });
                return { ret: 0 };
              }
              return g(r);
            },
          },
        ];
      }
      case "api": {
        let features = 0;
        let api = 0xaa;
        for (const w of a.slice(1)) {
          if (/^(0x[0-9a-fA-F]+|\d+)$/.test(w)) features |= num(w);
          else if (w.startsWith("api=")) api = num(w.slice(4));
          else {
            for (const f of w.split(",")) {
              const bit = FEATURES[f];
              if (bit === undefined) throw new Skip(`unknown feature ${f}`);
              features |= bit;
            }
          }
        }
        return [{ op: "api", args: [this.#fd(proc, a[0] as string), api, features >>> 0] }];
      }
      case "register": {
        let mode = 0;
        for (const m of (a[4] as string).split(/[,_]/)) {
          if (m === "none") continue;
          if (/^(0x[0-9a-fA-F]+|\d+)$/.test(m)) {
            mode |= num(m);
            continue;
          }
          const bit = MODES[m];
          if (bit === undefined) throw new Skip(`unknown register mode ${m}`);
          mode |= bit;
        }
        return [{ op: "register", args: [this.#fd(proc, a[0] as string), this.#addr(proc, a[1] as string, a[2] as string), pages(3), mode] }];
      }
      case "unregister":
      case "wake":
        return [{ op: step.verb, args: [this.#fd(proc, a[0] as string), this.#addr(proc, a[1] as string, a[2] as string), pages(3)] }];
      case "copy": {
        const f = flags(5);
        const mode = (f.has("dontwake") ? 1 : 0) | (f.has("wp") ? 2 : 0);
        return [{ op: "copy", args: [this.#fd(proc, a[0] as string), this.#addr(proc, a[1] as string, a[2] as string), pages(3), num(a[4] as string) & 0xff, mode] }];
      }
      case "zeropage":
      case "poison": {
        const mode = flags(4).has("dontwake") ? 1 : 0;
        return [{ op: step.verb, args: [this.#fd(proc, a[0] as string), this.#addr(proc, a[1] as string, a[2] as string), pages(3), mode] }];
      }
      case "wp": {
        const on = a[4] === "on";
        if (!on && a[4] !== "off") throw new Skip("wp U R off n on|off");
        const mode = (on ? 1 : 0) | (flags(5).has("dontwake") ? 2 : 0);
        return [{ op: "wp", args: [this.#fd(proc, a[0] as string), this.#addr(proc, a[1] as string, a[2] as string), pages(3), mode] }];
      }
      case "continue": {
        const f = flags(4);
        const mode = (f.has("dontwake") ? 1 : 0) | (f.has("wp") ? 2 : 0);
        return [{ op: "continue", args: [this.#fd(proc, a[0] as string), this.#addr(proc, a[1] as string, a[2] as string), pages(3), mode] }];
      }
      case "move": {
        const f = flags(6);
        const mode = (f.has("dontwake") ? 1 : 0) | (f.has("holes") ? 2 : 0);
        return [
          {
            op: "move",
            args: [this.#fd(proc, a[0] as string), this.#addr(proc, a[1] as string, a[2] as string), this.#addr(proc, a[3] as string, a[4] as string), pages(5), mode],
          },
        ];
      }
      case "msgs":
        return [{ op: "readmsg", args: [this.#fd(proc, a[0] as string)], post: (r) => this.#msgs(proc, a[0] as string, r) }];
      case "read":
        return [{ op: "read", args: [this.#addr(proc, a[0] as string, a[1] as string), num(a[2] as string)] }];
      case "write":
        return [{ op: "write", args: [this.#addr(proc, a[0] as string, a[1] as string), num(a[2] as string), num(a[3] as string) & 0xff] }];
      case "pagemap":
        return [{ op: "pagemap", args: [this.#addr(proc, a[0] as string, a[1] as string), num(a[2] as string)] }];
      case "mincore":
        return [{ op: "mincore", args: [this.#addr(proc, a[0] as string, a[1] as string), pages(2)] }];
      case "smaps": {
        const reg = proc.regions.get(a[0] as string);
        if (reg === undefined) throw new Skip(`no region ${a[0]}`);
        return [{ op: "smaps", args: [reg.base, reg.pages * PAGE] }];
      }
      case "scan": {
        const start = this.#addr(proc, a[0] as string, a[1] as string);
        const opts: Record<string, number> = { mask: 0, anyof: 0, inv: 0, ret: 0x1ff, vec: 64, max: 0 };
        let sflags = 0;
        for (const w of a.slice(3)) {
          if (w === "wpmatch") sflags |= 1;
          else if (w === "check") sflags |= 2;
          else {
            const m = /^(flags|mask|anyof|inv|ret|vec|max)=(0x[0-9a-fA-F]+|\d+)$/.exec(w);
            if (!m) throw new Skip(`unknown scan option ${w}`);
            opts[m[1] as string] = num(m[2] as string);
          }
        }
        const o = opts as Record<"flags" | "mask" | "anyof" | "inv" | "ret" | "vec" | "max", number>;
        sflags |= o.flags ?? 0;
        return [{ op: "scan", args: [start, start + pages(2), sflags, o.mask, o.anyof, o.inv, o.ret, o.vec, o.max] }];
      }
      case "fork": {
        const name = a[0] as string;
        if (this.#procs.has(name)) throw new Skip(`process ${name} exists`);
        if (this.#procs.size >= MAX_PROCS) throw new Skip(`at most ${MAX_PROCS} processes`);
        const used = new Set([...this.#procs.values()].map((p) => p.index));
        let index = 1;
        while (used.has(index)) index++;
        const child: DProc = {
          index,
          regions: new Map([...proc.regions].map(([k, v]) => [k, { ...v }])),
          handles: new Map(proc.handles),
          live: false,
          exited: false,
          forkFds: 0,
          // A ring stays with the process that set it up (the native runner closes a child's copies).
          rings: new Map(),
        };
        this.#procs.set(name, child);
        this.#pendingForks.set(this.#current, { parent: step.proc, child: name });
        return [{ op: "fork", args: [index] }];
      }
      case "pin": {
        // io_uring_setup() + IORING_REGISTER_BUFFERS of one iovec: a long-term pin of the range.
        const name = a[0] as string;
        if (proc.rings.has(name)) throw new Skip(`ring ${name} exists`);
        const base = this.#addr(proc, a[1] as string, a[2] as string);
        const len = pages(3);
        const id = this.#ringIds++;
        return [
          {
            op: "pin",
            args: [id, base, len],
            post: (r) => {
              if (r.err === undefined && r.ret === 0 && r.bad === undefined) proc.rings.set(name, { id, base, len });
              return g(r);
            },
          },
        ];
      }
      case "unpin": {
        // IORING_UNREGISTER_BUFFERS; the ring stays (a second unpin answers ENXIO).
        const ring = proc.rings.get(a[0] as string);
        if (ring === undefined) throw new Skip(`no ring ${a[0]}`);
        return [{ op: "unpin", args: [ring.id] }];
      }
      case "pinwrite":
      case "pinread": {
        // A device access through the pinned buffer (IORING_OP_READ_FIXED / WRITE_FIXED): off and n in pages of the buffer.
        const ring = proc.rings.get(a[0] as string);
        if (ring === undefined) throw new Skip(`no ring ${a[0]}`);
        const write = step.verb === "pinwrite" ? 1 : 0;
        return [{ op: "pinio", args: [ring.id, write, ring.base + pages(1), pages(2), write ? num(a[3] as string) & 0xff : 0] }];
      }
      case "exit":
        proc.exited = true;
        return [{ op: "exit", args: [] }];
      default:
        throw new Skip(`unknown step ${step.verb}`);
    }
  }

  #current = 0;

  #msgs(proc: DProc, reader: string, r: RawResult): Norm {
    const out = this.#generic(proc, r);
    if (r.msgs === undefined) return out;
    out["msgs"] = r.msgs.map((m: RawMsg) => {
      const ev = EVENTS[m.event] ?? `event ${m.event}`;
      if (m.event === 0x12) {
        const o: Record<string, unknown> = { ev, flags: m.flags, addr: this.loc(proc, m.address ?? 0) };
        if (m.ptid !== 0) o["tid"] = "set";
        return o;
      }
      if (m.event === 0x13) {
        const name = `${reader}.${++proc.forkFds}`;
        proc.handles.set(name, { fd: m.ufd ?? -1 });
        return { ev, ufd: name };
      }
      if (m.event === 0x14) return { ev, from: this.loc(proc, m.from ?? 0), to: this.loc(proc, m.to ?? 0), len: (m.len ?? 0) / PAGE };
      return { ev, start: this.loc(proc, m.start ?? 0), end: this.loc(proc, m.end ?? 0) };
    });
    return out;
  }
}
