/**
 * Address arithmetic for the hot paths. User addresses pass 2^31, where `x % 4096` is a float
 * modulo (a C call in V8, ~15-20 ns); these give the same results for the integers 0 <= x < 2^53
 * that addresses, lengths and page numbers are here, with a division by a power of two and a floor.
 */
import { PAGE_SIZE as UAPI_PAGE_SIZE } from "../uapi/mman.ts";

// A module-local copy: V8 reads an imported (or exported) binding through its module cell, with a
// check that it is initialised, at every use; a module-local const is folded into optimized code.
const PAGE_SIZE = UAPI_PAGE_SIZE;

/** x % PAGE_SIZE, for an integer 0 <= x < 2^53. */
export function pageOffset(x: number): number {
  return x - Math.floor(x / PAGE_SIZE) * PAGE_SIZE;
}

/** x rounded down to a page boundary (x - x % PAGE_SIZE), for an integer 0 <= x < 2^53. */
export function pageDown(x: number): number {
  return Math.floor(x / PAGE_SIZE) * PAGE_SIZE;
}
