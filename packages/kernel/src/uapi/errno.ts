/**
 * The one errno table (include/uapi/asm-generic/errno-base.h and errno.h, x86-64 values) and the
 * error types every syscall rejects with.
 *
 * Messages follow Node's style, `EEXIST: file exists, ioctl UFFDIO_COPY`, built from the
 * lower-cased strerror() text, so users match on `code` and never parse messages.
 */

export const ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  ENOEXEC: 8,
  EBADF: 9,
  ECHILD: 10,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  EXDEV: 18,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  ENFILE: 23,
  EMFILE: 24,
  ENOTTY: 25,
  EFBIG: 27,
  ENOSPC: 28,
  ESPIPE: 29,
  EROFS: 30,
  EPIPE: 32,
  ERANGE: 34,
  ENAMETOOLONG: 36,
  ENOSYS: 38,
  ENOPKG: 65,
  EOVERFLOW: 75,
  EOPNOTSUPP: 95,
  EHWPOISON: 133,
} as const;

export type ErrnoCode = keyof typeof ERRNO;

/** strerror() texts, lower-cased as Node prints them. */
const STRERROR: { readonly [K in ErrnoCode]: string } = {
  EPERM: "operation not permitted",
  ENOENT: "no such file or directory",
  ESRCH: "no such process",
  EINTR: "interrupted system call",
  EIO: "input/output error",
  ENXIO: "no such device or address",
  E2BIG: "argument list too long",
  ENOEXEC: "exec format error",
  EBADF: "bad file descriptor",
  ECHILD: "no child processes",
  EAGAIN: "resource temporarily unavailable",
  ENOMEM: "cannot allocate memory",
  EACCES: "permission denied",
  EFAULT: "bad address",
  EBUSY: "device or resource busy",
  EEXIST: "file exists",
  EXDEV: "invalid cross-device link",
  ENODEV: "no such device",
  ENOTDIR: "not a directory",
  EISDIR: "is a directory",
  EINVAL: "invalid argument",
  ENFILE: "too many open files in system",
  EMFILE: "too many open files",
  ENOTTY: "inappropriate ioctl for device",
  EFBIG: "file too large",
  ENOSPC: "no space left on device",
  ESPIPE: "illegal seek",
  EROFS: "read-only file system",
  EPIPE: "broken pipe",
  ERANGE: "numerical result out of range",
  ENAMETOOLONG: "file name too long",
  ENOSYS: "function not implemented",
  ENOPKG: "package not installed",
  EOVERFLOW: "value too large for defined data type",
  EOPNOTSUPP: "operation not supported",
  EHWPOISON: "memory page has hardware error",
};

const CODE_BY_ERRNO = new Map<number, ErrnoCode>(
  (Object.keys(ERRNO) as ErrnoCode[]).map((code) => [ERRNO[code], code]),
);

/** The errno name for a positive errno number, e.g. 17 -> "EEXIST". */
export function errnoCode(errno: number): ErrnoCode {
  const code = CODE_BY_ERRNO.get(errno);
  if (code === undefined) throw new RangeError(`unknown errno ${errno}`);
  return code;
}

/** A failing syscall: `code` and `errno` carry the Linux errno, `syscall` names the call. */
let errnoStackTraces = true;

/**
 * Whether a new ErrnoError captures a stack trace (default true). A tool that runs many short
 * scenarios whose handlers catch expected errnos by the thousand (EEXIST, EAGAIN) may turn it
 * off around its runs: capturing a trace is most of an error's cost. Returns the previous setting.
 */
export function setErrnoStackTraces(on: boolean): boolean {
  const before = errnoStackTraces;
  errnoStackTraces = on;
  return before;
}

export class ErrnoError extends Error {
  /** "EEXIST" */
  readonly code: ErrnoCode;
  /** 17 (positive) */
  readonly errno: number;
  /** "ioctl", "mmap", ... */
  readonly syscall: string;

  constructor(code: ErrnoCode, syscall: string, detail?: string) {
    const limit = Error.stackTraceLimit;
    if (!errnoStackTraces) Error.stackTraceLimit = 0;
    super(`${code}: ${STRERROR[code]}, ${syscall}${detail === undefined ? "" : ` ${detail}`}`);
    Error.stackTraceLimit = limit;
    this.name = "ErrnoError";
    this.code = code;
    this.errno = ERRNO[code];
    this.syscall = syscall;
  }
}

/** A memory access that Linux answers with a signal. */
export class SignalError extends Error {
  readonly signal: "SIGSEGV" | "SIGBUS";
  readonly address: number;

  constructor(signal: "SIGSEGV" | "SIGBUS", address: number, why?: string) {
    super(`${signal} at 0x${address.toString(16)}${why === undefined ? "" : ` (${why})`}`);
    this.name = "SignalError";
    this.signal = signal;
    this.address = address;
  }
}

/** A broken kernel invariant (BUG_ON). Nothing catches it; a test that sees one has found a bug. */
export class KernelBug extends Error {
  constructor(message: string) {
    super(message);
    this.name = "KernelBug";
  }
}
