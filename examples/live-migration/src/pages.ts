/**
 * What the guest writes, and how to recompute it: the page content model behind the byte-for-byte
 * verification.
 *
 * A guest page is 64 slots of 64 bytes. Slot 0 is a header the guest itself keeps:
 * `[MAGIC, page, version, check]` (little-endian u32 words, the rest zero). Booting writes
 * version 0: the header plus a pattern over slots 1..63. Each later write of the page by the
 * workload is a read-modify-write: read the header, write the 64-byte record of version v+1 into
 * slot 1 + v % 63, then the header with v+1. So the bytes of a page are a pure function of
 * (seed, page, version): a page that missed one update, or holds another page's bytes, or zeros,
 * never matches. Never-written pages are all zero (version UNPOPULATED).
 *
 * pageGenerator() hands the model to the guest's kernel (a compact frame store), so a page whose
 * bytes are exactly version v of page p costs host memory for (p, v), not 4 KiB.
 */
import type { FrameGenerator } from "@uffd/kernel";
import { PAGE_SIZE } from "@uffd/kernel/uapi";
import { mix32 } from "./prng.ts";

export const WORDS_PER_PAGE = PAGE_SIZE / 4;
export const SLOT_BYTES = 64;
const SLOT_WORDS = SLOT_BYTES / 4;
const RECORD_SLOTS = PAGE_SIZE / SLOT_BYTES - 1;
export const HEADER_BYTES = 16;
export const MAGIC = 0x5247_494d; // "MIGR"

/** The version of a page nobody wrote: all zero bytes. */
export const UNPOPULATED = 0xffff_ffff;
/** A header that is neither zero nor a valid header for this page. */
export const CORRUPT = 0xffff_fffd;

function pageBase(seed: number, page: number): number {
  return mix32((seed ^ Math.imul(page, 0x9e37_79b1)) >>> 0);
}

function recordBase(seed: number, page: number, version: number): number {
  return mix32((pageBase(seed, page) ^ Math.imul(version + 1, 0x85eb_ca77)) >>> 0);
}

function headerCheck(seed: number, page: number, version: number): number {
  return mix32((recordBase(seed, page, version) ^ 0x68e3_1da4) >>> 0);
}

/** The slot that version `version` (>= 1) writes its record into. */
export function recordSlot(version: number): number {
  return 1 + ((version - 1) % RECORD_SLOTS);
}

/** Writes the 16-byte header of `version` into out[0..4). */
export function fillHeader(out: Uint32Array, seed: number, page: number, version: number): void {
  out[0] = MAGIC;
  out[1] = page;
  out[2] = version;
  out[3] = headerCheck(seed, page, version);
}

/** Writes the 64-byte record of `version` into out[0..16). */
export function fillRecord(out: Uint32Array, seed: number, page: number, version: number, at = 0): void {
  const base = recordBase(seed, page, version);
  for (let i = 0; i < SLOT_WORDS; i++) out[at + i] = mix32((base + i) >>> 0);
}

/** Writes the whole page as booting leaves it (version 0). */
export function fillInitialPage(out: Uint32Array, seed: number, page: number): void {
  out.fill(0, 0, SLOT_WORDS);
  fillHeader(out, seed, page, 0);
  const base = pageBase(seed, page);
  for (let i = SLOT_WORDS; i < WORDS_PER_PAGE; i++) out[i] = mix32((base + i) >>> 0);
}

/** Writes the bytes a page must hold at `version` (zeros for UNPOPULATED). */
export function fillExpectedPage(out: Uint32Array, seed: number, page: number, version: number): void {
  if (version === UNPOPULATED) {
    out.fill(0);
    return;
  }
  out.fill(0, 0, SLOT_WORDS);
  fillHeader(out, seed, page, version);
  // Each slot once: the last record written into it, else booting's pattern.
  const written = Math.min(version, RECORD_SLOTS);
  for (let slot = 1; slot <= written; slot++) {
    const last = slot + RECORD_SLOTS * Math.floor((version - slot) / RECORD_SLOTS);
    fillRecord(out, seed, page, last, slot * SLOT_WORDS);
  }
  const base = pageBase(seed, page);
  for (let i = (written + 1) * SLOT_WORDS; i < WORDS_PER_PAGE; i++) out[i] = mix32((base + i) >>> 0);
}

/** Decodes a header read from memory: the version, UNPOPULATED (all zero) or CORRUPT. */
export function parseHeader(words: Uint32Array, seed: number, page: number): number {
  const magic = words[0]!;
  const p = words[1]!;
  const version = words[2]!;
  const check = words[3]!;
  if (magic === 0 && p === 0 && version === 0 && check === 0) return UNPOPULATED;
  if (magic !== MAGIC || p !== page || check !== headerCheck(seed, page, version)) return CORRUPT;
  return version;
}

/** A Uint32Array view of a 4-byte-aligned byte buffer. */
export function wordsOf(bytes: Uint8Array): Uint32Array {
  return new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 2);
}

/** True when every byte of the page is zero (the source sends a zero marker instead). */
export function isZeroPage(bytes: Uint8Array): boolean {
  const w = new Int32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 2);
  for (let i = 0; i < w.length; i++) if (w[i] !== 0) return false;
  return true;
}

/**
 * The content model as a frame generator for a compact frame store: arguments (page, version);
 * identify() reads the header, and the kernel keeps a page compact only if fillExpectedPage() for
 * that header's version equals it byte for byte (a page between the workload's record and header
 * writes, or holding anything else, keeps its bytes).
 */
export function pageGenerator(seed: number): FrameGenerator {
  return {
    fill(out, page, version) {
      fillExpectedPage(out, seed, page, version);
    },
    identify(words, args) {
      const page = words[1]!;
      const version = parseHeader(words, seed, page);
      if (version === UNPOPULATED || version === CORRUPT) return false;
      args[0] = page;
      args[1] = version;
      args[2] = 0;
      return true;
    },
  };
}
