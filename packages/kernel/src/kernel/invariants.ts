/**
 * Kernel.checkInvariants(): recounts every frame's references, mappings and pins, every mm's
 * rss counters and every swap slot's count from the page tables, the page caches, the swap
 * cache and the registered reference holders (pipe buffers, long-term pins), and compares them
 * with the cached counters. Any mismatch is a KernelBug naming the frame or mm.
 */
import { BUG } from "../lib/assert.ts";
import { GUP_PIN_COUNTING_BIAS, PG } from "../mm/folio.ts";
import type { Mm } from "../mm/mm.ts";
import { isPteMarker, isSwapPte, ptePfn, ptePresent, pteSpecial, pteWrite, swpOffset, PTRS_PER_PTE } from "../mm/page-table.ts";
import { cacheEntryIsSwap, cacheEntrySlot } from "../mm/shmem.ts";
import { Mm as MmClass } from "../mm/mm.ts";
import { VM_UFFD_FLAGS, VM_SHARED } from "../mm/vma.ts";
import { PAGE_SIZE } from "../uapi/mman.ts";
import type { Kernel } from "./kernel.ts";

export type { RefHolder } from "../mm/mm.ts";

function bump(map: Map<number, number>, key: number, by = 1): void {
  map.set(key, (map.get(key) ?? 0) + by);
}

export function checkInvariants(kernel: Kernel): void {
  const core = kernel.core;
  const mem = core.mem;
  const refs = new Map<number, number>();
  const maps = new Map<number, number>();
  const pins = new Map<number, number>();
  const swapRefs = new Map<number, number>();
  for (const p of kernel.processes.values()) checkMm(p.mm, `pid ${p.pid}`, refs, maps, swapRefs);
  for (const inode of core.inodes) {
    for (const [pgoff, e] of inode.pages) {
      if (cacheEntryIsSwap(e)) {
        bump(swapRefs, cacheEntrySlot(e));
        continue;
      }
      bump(refs, e);
      if (mem.mapping[e] !== inode.id || mem.index[e] !== pgoff) BUG(`page cache pfn ${e} of inode ${inode.id} has mapping ${mem.mapping[e]} index ${mem.index[e]}`);
    }
  }
  if (core.swap !== null) {
    for (const [slot, pfn] of core.swap.cache) {
      bump(refs, pfn);
      if (!mem.testFlag(pfn, PG.swapcache) || mem.index[pfn] !== slot) BUG(`swap cache pfn ${pfn} of slot ${slot} lacks PG_swapcache or its slot`);
    }
    for (let slot = 0; slot < core.swap.nrSlots; slot++) {
      const want = swapRefs.get(slot) ?? 0;
      if (core.swap.swapMap[slot] !== want) BUG(`swap slot ${slot}: swap_map ${core.swap.swapMap[slot]}, recounted ${want}`);
    }
  }
  for (const holder of core.refHolders) {
    holder.forEachRef((pfn, r, p) => {
      bump(refs, pfn, r);
      bump(pins, pfn, p);
    });
  }
  for (let pfn = 0; pfn < mem.highestPfn; pfn++) {
    if (pfn === mem.zeroPfn) {
      if (mem.refcount[pfn] !== 1) BUG(`zero page refcount ${mem.refcount[pfn]}`);
      continue;
    }
    const r = refs.get(pfn) ?? 0;
    const m = maps.get(pfn) ?? 0;
    const pn = pins.get(pfn) ?? 0;
    const want = r + pn * GUP_PIN_COUNTING_BIAS;
    if (mem.refcount[pfn] !== want) BUG(`pfn ${pfn}: refcount ${mem.refcount[pfn]}, recounted ${want} (${r} refs + ${pn} pins)`);
    if (mem.mapcount[pfn] !== m) BUG(`pfn ${pfn}: mapcount ${mem.mapcount[pfn]}, recounted ${m}`);
    if (mem.pincount[pfn] !== pn) BUG(`pfn ${pfn}: pincount ${mem.pincount[pfn]}, recounted ${pn}`);
  }
  mem.checkStore();
}

function checkMm(mm: Mm, who: string, refs: Map<number, number>, maps: Map<number, number>, swapRefs: Map<number, number>): void {
  const mem = mm.core.mem;
  let anon = 0;
  let shmem = 0;
  let swapEnts = 0;
  let prevEnd = 0;
  for (const vma of mm.vmas) {
    if (vma.start < prevEnd || vma.start >= vma.end || vma.start % PAGE_SIZE !== 0 || vma.end % PAGE_SIZE !== 0) {
      BUG(`${who}: bad or overlapping vma [0x${vma.start.toString(16)}, 0x${vma.end.toString(16)})`);
    }
    if (((vma.flags & VM_UFFD_FLAGS) !== 0) !== (vma.uffdCtx !== null)) BUG(`${who}: vma at 0x${vma.start.toString(16)} has uffd flags without a context or the reverse`);
    if (vma.mm !== mm) BUG(`${who}: vma at 0x${vma.start.toString(16)} points at another mm`);
    prevEnd = vma.end;
  }
  for (const [key, table] of mm.pt.tables) {
    for (let i = 0; i < PTRS_PER_PTE; i++) {
      const pte = table[i] as number;
      if (pte === 0) continue;
      const vpn = key * PTRS_PER_PTE + i;
      const vma = mm.vmaLookup(vpn * PAGE_SIZE);
      if (vma === null) BUG(`${who}: pte 0x${pte.toString(16)} at 0x${(vpn * PAGE_SIZE).toString(16)} outside any vma`);
      if (ptePresent(pte)) {
        if (pteSpecial(pte)) {
          if (ptePfn(pte) !== mem.zeroPfn) BUG(`${who}: special pte to pfn ${ptePfn(pte)}`);
          if (pteWrite(pte)) BUG(`${who}: writable zero page at 0x${(vpn * PAGE_SIZE).toString(16)}`);
          continue;
        }
        const pfn = ptePfn(pte);
        bump(refs, pfn);
        bump(maps, pfn);
        if (mem.folioTestAnon(pfn)) {
          anon++;
          if ((vma!.flags & VM_SHARED) !== 0) BUG(`${who}: anon page in a shared vma`);
          if (pteWrite(pte) && !mem.pageAnonExclusive(pfn)) BUG(`${who}: writable anon pte to non-exclusive pfn ${pfn}`);
        } else {
          shmem++;
        }
      } else if (isSwapPte(pte)) {
        swapEnts++;
        bump(swapRefs, swpOffset(pte));
      } else if (!isPteMarker(pte)) {
        BUG(`${who}: malformed pte 0x${pte.toString(16)}`);
      }
    }
  }
  if (mm.rssAnon !== anon || mm.rssShmem !== shmem || mm.swapEnts !== swapEnts || mm.rssFile !== 0) {
    BUG(`${who}: rss anon ${mm.rssAnon}/${anon}, shmem ${mm.rssShmem}/${shmem}, swap ${mm.swapEnts}/${swapEnts} (cached/recounted)`);
  }
  void MmClass;
}
