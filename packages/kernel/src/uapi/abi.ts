/**
 * The syscall ABI: how a JS value passed to a syscall becomes the C value Linux would receive.
 *
 * On x86-64 every syscall argument travels in a 64-bit register and the kernel reads it as the
 * parameter's C type: an `int` keeps the low 32 bits (so `userfaultfd(0x100000001)` is
 * `userfaultfd(1)`), an `unsigned long` or `size_t` the whole register (so a length of -1 is
 * 2^64 - 1), a `loff_t` the register as signed. Every Process method converts each argument
 * here, once, before any logic runs; the code behind it only ever sees integers of the right
 * range.
 *
 * JS offers values no register can hold. They are refused the way Linux refuses nonsense, with
 * an errno and no action (docs/divergences.md, "Argument conversion"):
 * - NaN, +-Infinity, fractions, strings, booleans, null, undefined, objects, and integers outside
 *   the 64-bit range [-2^63, 2^64): EINVAL for a scalar, EBADF for a file descriptor, EFAULT for a
 *   user pointer or an ioctl struct field (copy_from_user() of something that is not a struct).
 * - bigints are accepted wherever a number is, with the same truncation.
 *
 * Divergence from Linux: 64-bit values are JS numbers, exact below 2^53 (user addresses stay below
 * 2^47); above it they keep their magnitude but not their low bits, which only changes which of
 * two errnos an already-invalid call gets.
 */
import { type ErrnoCode, ErrnoError } from "./errno.ts";

const TWO_32 = 0x1_0000_0000;
const TWO_63 = 2 ** 63;
const TWO_64 = 2 ** 64;

/** The 64-bit register a value would occupy, as a JS number in [-2^63, 2^64), or NaN if no register can hold it. */
function register(v: unknown): number {
  if (typeof v === "number") {
    if (!Number.isInteger(v) || v < -TWO_63 || v >= TWO_64) return NaN;
    return v;
  }
  if (typeof v === "bigint") {
    if (v < -(1n << 63n) || v >= 1n << 64n) return NaN;
    return Number(v);
  }
  return NaN;
}

function refuse(code: ErrnoCode, syscall: string, what: string, v: unknown): never {
  throw new ErrnoError(code, syscall, `(${what}: ${describe(v)})`);
}

/** A short, safe rendering of a hostile value for an error message. */
export function describe(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v.length > 20 ? `${v.slice(0, 20)}...` : v);
  if (typeof v === "bigint") return `${v}n`;
  if (typeof v === "number" || typeof v === "boolean" || v === null || v === undefined) return String(v);
  if (typeof v === "symbol") return "a symbol";
  if (typeof v === "function") return "a function";
  return "an object";
}

/** C `int` (and pid_t): the low 32 bits, signed. */
export function argInt(v: unknown, syscall: string, what: string, code: ErrnoCode = "EINVAL"): number {
  const r = register(v);
  if (Number.isNaN(r)) return refuse(code, syscall, what, v);
  return typeof v === "bigint" ? Number(BigInt.asIntN(32, v)) : r | 0;
}

/** C `unsigned int`: the low 32 bits, unsigned. */
export function argUint(v: unknown, syscall: string, what: string, code: ErrnoCode = "EINVAL"): number {
  const r = register(v);
  if (Number.isNaN(r)) return refuse(code, syscall, what, v);
  return typeof v === "bigint" ? Number(BigInt.asUintN(32, v)) : r >>> 0;
}

/** A file descriptor (`int fd` or `unsigned int fd`): anything that is no register is EBADF. */
export function argFd(v: unknown, syscall: string): number {
  // Negative fds stay negative (EBADF either way); an unsigned-int fd of -1 is 2^32 - 1, also EBADF.
  return argInt(v, syscall, "fd", "EBADF");
}

/** C `unsigned long` / `size_t` / `__u64`: the whole register, unsigned (a negative value wraps). */
export function argULong(v: unknown, syscall: string, what: string, code: ErrnoCode = "EINVAL"): number {
  const r = register(v);
  if (Number.isNaN(r)) return refuse(code, syscall, what, v);
  if (typeof v === "bigint") return Number(BigInt.asUintN(64, v));
  return r < 0 ? r + TWO_64 : r;
}

/** C `loff_t` / `off_t` / `long`: the whole register, signed (a value at or above 2^63 wraps negative). */
export function argLong(v: unknown, syscall: string, what: string, code: ErrnoCode = "EINVAL"): number {
  const r = register(v);
  if (Number.isNaN(r)) return refuse(code, syscall, what, v);
  if (typeof v === "bigint") return Number(BigInt.asIntN(64, v));
  return r >= TWO_63 ? r - TWO_64 : r;
}

/**
 * Where argFlags() puts the bits above 31 of an unsigned long flags word: bit 30, which neither
 * mprotect's prot, mmap's prot nor mremap's flags define, so a call with high bits fails (or, for
 * mmap's prot, ignores them) exactly where Linux's 64-bit test of the same word would.
 */
export const FLAGS_HIGH = 1 << 30;

/** An unsigned long flags word (mprotect and mmap prot, mremap flags) reduced to 32 bits; see FLAGS_HIGH. */
export function argFlags(v: unknown, syscall: string, what: string): number {
  const r = argULong(v, syscall, what);
  const low = r % TWO_32;
  return (r >= TWO_32 ? low | FLAGS_HIGH : low) >>> 0;
}

/** The low 32 bits of an unsigned long (mmap's flags: the bits above are ignored for every mapping type simulated). */
export function low32(v: number): number {
  return v % TWO_32 >>> 0;
}

/** PAGE_ALIGN() of a size_t: a length within a page of 2^64 wraps to 0, as the C macro does. */
export function pageAlignU64(len: number): number {
  const aligned = Math.ceil(len / 4096) * 4096;
  return aligned >= TWO_64 ? 0 : aligned;
}

/**
 * A user pointer to a buffer of `length` bytes ({ addr, length }): EFAULT for an address no
 * register holds, EINVAL-free lengths converted as size_t by the caller.
 */
export function argUserPtr(v: unknown, syscall: string, what: string): number {
  return argULong(v, syscall, what, "EFAULT");
}

/**
 * The value of a __u64 struct field, or NaN when the field holds no such value (not an integer
 * number or bigint, or outside [-2^63, 2^64)); negative values wrap as in C.
 */
export function u64Value(v: unknown): number {
  const r = register(v);
  if (Number.isNaN(r)) return NaN;
  if (typeof v === "bigint") return Number(BigInt.asUintN(64, v));
  return r < 0 ? r + TWO_64 : r;
}

/**
 * An ioctl struct field (__u64): copy_from_user() of a struct whose field is not a number is a
 * struct that cannot be read, EFAULT.
 */
export function fieldU64(v: unknown, syscall: string, what: string): number {
  return argULong(v, syscall, what, "EFAULT");
}

/** Largest count a read(2) or write(2) moves in one call (include/linux/fs.h:MAX_RW_COUNT). */
export const MAX_RW_COUNT = 0x7ffff000;
