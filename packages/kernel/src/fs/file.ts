/**
 * Open files and fd tables. Mirrors include/linux/fs.h:struct file (an open file description
 * with f_flags and a reference count shared by dup'ed and passed fds) and fs/file.c's fd table
 * (lowest free fd first, close-on-exec per fd).
 */
import { ErrnoError } from "../uapi/errno.ts";
import { O_ACCMODE, O_CLOEXEC, O_RDONLY, O_RDWR, O_WRONLY } from "../uapi/fcntl.ts";
import type { Process } from "../kernel/process.ts";

/** What a kind of file can do; absent operations answer as Linux does for such a file. */
export interface FileOps {
  /** For messages and procfs, e.g. "anon_inode:[userfaultfd]", "pipe:[3]", "/memfd:x (deleted)". */
  readonly name: string;
  read?(file: OpenFile, proc: Process, length: number): Promise<Uint8Array>;
  /**
   * read(2) into the caller's buffer (`into.length` is the count): the bytes read; with
   * `nowait`, null where the read would sleep (RWF_NOWAIT); else a promise when it must sleep.
   * Errors are thrown. Files without it are read through read() (and refuse `nowait`).
   */
  readInto?(file: OpenFile, proc: Process, into: Uint8Array, nowait: boolean): number | null | Promise<number>;
  write?(file: OpenFile, proc: Process, data: Uint8Array): Promise<number>;
  ioctl?(file: OpenFile, proc: Process, request: number, arg: object): Promise<number>;
  /** The current poll mask (POLLIN etc.). */
  poll?(file: OpenFile, proc: Process): number;
  /** Registers a callback for a change of the poll mask; returns an unregister function. */
  pollWait?(file: OpenFile, notify: () => void): () => void;
  /** fcntl commands specific to this kind of file (F_SETPIPE_SZ ...); undefined = not handled. */
  fcntl?(file: OpenFile, cmd: number, arg: number): number | undefined;
  /** The last reference to the open file description went away. */
  release?(file: OpenFile): void;
}

export class OpenFile {
  readonly ops: FileOps;
  /** f_flags: access mode, O_NONBLOCK, ... */
  flags = 0;
  /** f_pos. */
  pos = 0;
  /** f_count: fds (in any process) referring to this description. */
  refs = 1;
  /**
   * FMODE_ATOMIC_POS: set when open(2) opens a regular file (fs/open.c:do_dentry_open()), never
   * for a memfd_create() file (alloc_file_pseudo() does not set it) [host: an lseek() on a memfd
   * while a write(2) of it sleeps on a userfault answers at once; on the same memfd reopened
   * through /proc/self/fd it waits in fdget_pos]. Such a file's read(2), write(2) and lseek(2)
   * take f_pos_lock (filePosLock()).
   */
  atomicPos = false;
  /** f_pos_lock: held by a read/write/lseek of an FMODE_ATOMIC_POS file; its waiters in order. */
  posLock: { held: boolean; waiters: Array<() => void> } | null = null;

  constructor(ops: FileOps, flags: number) {
    this.ops = ops;
    this.flags = flags;
  }

  get readable(): boolean {
    const mode = this.flags & O_ACCMODE;
    return mode === O_RDONLY || mode === O_RDWR;
  }

  get writable(): boolean {
    const mode = this.flags & O_ACCMODE;
    return mode === O_WRONLY || mode === O_RDWR;
  }

  get(): OpenFile {
    this.refs++;
    return this;
  }

  /** fput(): the last reference releases the file. */
  put(): void {
    this.refs--;
    if (this.refs === 0) this.ops.release?.(this);
  }
}

/**
 * fs/file.c:fdget_pos(): read(2), write(2) and lseek(2) of an FMODE_ATOMIC_POS file hold
 * file->f_pos_lock for the whole call, so a write sleeping on a userfault keeps the others waiting
 * (in fdget_pos) until it returns. Linux takes the lock only when the file may be shared
 * (file_needs_f_pos_lock(): another reference, or a multithreaded fd table); without sharing
 * nothing can contend for it, so taking it always answers the same. Resolves to the unlock, or
 * null for a file without FMODE_ATOMIC_POS.
 */
export async function filePosLock(file: OpenFile): Promise<(() => void) | null> {
  if (!file.atomicPos) return null;
  const lock = (file.posLock ??= { held: false, waiters: [] });
  if (lock.held) await new Promise<void>((resolve) => lock.waiters.push(resolve));
  lock.held = true;
  return () => {
    const next = lock.waiters.shift();
    if (next !== undefined) next(); // handed over: stays held
    else lock.held = false;
  };
}

/** RLIMIT_NOFILE default soft limit. */
export const NR_OPEN_DEFAULT = 1024;

export class FdTable {
  readonly #files: Array<OpenFile | undefined> = [];
  readonly #cloexec: boolean[] = [];

  /** get_unused_fd_flags() + fd_install(): the lowest free fd, or EMFILE. */
  install(file: OpenFile, flags: number, syscall: string): number {
    let fd = this.#files.findIndex((f) => f === undefined);
    if (fd < 0) fd = this.#files.length;
    if (fd >= NR_OPEN_DEFAULT) throw new ErrnoError("EMFILE", syscall);
    this.#files[fd] = file;
    this.#cloexec[fd] = (flags & O_CLOEXEC) !== 0;
    return fd;
  }

  get(fd: number): OpenFile | undefined {
    return Number.isInteger(fd) && fd >= 0 ? this.#files[fd] : undefined;
  }

  /** fdget(): the file, or EBADF. */
  lookup(fd: number, syscall: string): OpenFile {
    const f = this.get(fd);
    if (f === undefined) throw new ErrnoError("EBADF", syscall);
    return f;
  }

  cloexec(fd: number): boolean {
    return this.#cloexec[fd] === true;
  }

  setCloexec(fd: number, on: boolean): void {
    this.#cloexec[fd] = on;
  }

  /** close_fd(): removes the fd and drops its reference. */
  close(fd: number): void {
    const f = this.lookup(fd, "close");
    this.#files[fd] = undefined;
    f.put();
  }

  /** dup_fd() for fork: every open file gets one more reference. */
  clone(): FdTable {
    const t = new FdTable();
    this.#files.forEach((f, fd) => {
      if (f !== undefined) {
        t.#files[fd] = f.get();
        t.#cloexec[fd] = this.#cloexec[fd] === true;
      }
    });
    return t;
  }

  /** Open fds in ascending order. */
  entries(): Array<[number, OpenFile]> {
    const out: Array<[number, OpenFile]> = [];
    this.#files.forEach((f, fd) => {
      if (f !== undefined) out.push([fd, f]);
    });
    return out;
  }

  /** exit_files(): closes everything. */
  closeAll(): void {
    for (const [fd] of this.entries()) this.close(fd);
  }
}
