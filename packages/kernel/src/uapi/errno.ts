/**
 * The one errno table (include/uapi/asm-generic/errno-base.h and errno.h, x86-64 values) and the
 * error types every syscall rejects with.
 *
 * Messages follow Node's style, `EEXIST: file exists, ioctl UFFDIO_COPY`, built from the
 * lower-cased strerror() text, so users match on `code` and never parse messages.
 */

/** Every errno the simulation can return, by name, with its Linux x86-64 number. */
export const ERRNO = {
  /** Operation not permitted. */
  EPERM: 1,
  /** No such file or directory. */
  ENOENT: 2,
  /** No such process. */
  ESRCH: 3,
  /** Interrupted system call. */
  EINTR: 4,
  /** Input/output error. */
  EIO: 5,
  /** No such device or address. */
  ENXIO: 6,
  /** Argument list too long. */
  E2BIG: 7,
  /** Exec format error. */
  ENOEXEC: 8,
  /** Bad file descriptor. */
  EBADF: 9,
  /** No child processes. */
  ECHILD: 10,
  /** Resource temporarily unavailable. */
  EAGAIN: 11,
  /** Cannot allocate memory. */
  ENOMEM: 12,
  /** Permission denied. */
  EACCES: 13,
  /** Bad address. */
  EFAULT: 14,
  /** Device or resource busy. */
  EBUSY: 16,
  /** File exists. */
  EEXIST: 17,
  /** Invalid cross-device link. */
  EXDEV: 18,
  /** No such device. */
  ENODEV: 19,
  /** Not a directory. */
  ENOTDIR: 20,
  /** Is a directory. */
  EISDIR: 21,
  /** Invalid argument. */
  EINVAL: 22,
  /** Too many open files in system. */
  ENFILE: 23,
  /** Too many open files. */
  EMFILE: 24,
  /** Inappropriate ioctl for device. */
  ENOTTY: 25,
  /** File too large. */
  EFBIG: 27,
  /** No space left on device. */
  ENOSPC: 28,
  /** Illegal seek. */
  ESPIPE: 29,
  /** Read-only file system. */
  EROFS: 30,
  /** Broken pipe. */
  EPIPE: 32,
  /** Numerical result out of range. */
  ERANGE: 34,
  /** File name too long. */
  ENAMETOOLONG: 36,
  /** Function not implemented. */
  ENOSYS: 38,
  /** Package not installed. */
  ENOPKG: 65,
  /** Value too large for defined data type. */
  EOVERFLOW: 75,
  /** Operation not supported. */
  EOPNOTSUPP: 95,
  /** Memory page has hardware error. */
  EHWPOISON: 133,
} as const;

/** An errno name: a key of ERRNO ("EEXIST", "EAGAIN", ...). */
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

/**
 * A failed syscall, as Node reports one: `code` ("EEXIST"), `errno` (17) and `syscall`
 * ("ioctl UFFDIO_COPY"); the message reads `EEXIST: file exists, ioctl UFFDIO_COPY`.
 */
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
  /** The signal the access got. */
  readonly signal: "SIGSEGV" | "SIGBUS";
  /** The faulting address. */
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
