/**
 * Pipes. Mirrors fs/pipe.c: a ring of pipe buffers (struct pipe_buffer), each a page reference
 * with an offset and a length, read in order and freed once consumed.
 *
 * Buffers come from two places:
 * - write(2) fills freshly allocated frames (anon_pipe_buf_ops). A write merges into the last
 *   buffer only if that buffer is CAN_MERGE (never a vmsplice'd user page, never in packet
 *   mode), and only the write's first `len % PAGE_SIZE` bytes; the rest starts page-aligned.
 * - vmsplice(2) (mm/gup.ts) adds user pages by reference (user_page_pipe_buf_ops, FOLL_GET):
 *   the bytes are read from the frame at read() time, so a later store to that frame is what the
 *   reader sees. That is why COW must be broken correctly (CVE-2020-29374, cow.c).
 *
 * Every buffer owns one reference on its frame (none for the shared zero page, whose refcount
 * the simulation never moves); the pipe reports them to checkInvariants() as a RefHolder for as
 * long as either end is open.
 *
 * Locking: `lock()` is pipe->mutex. A reader or writer that must wait drops it, sleeps on
 * rd_wait / wr_wait and takes it again, as pipe_wait_readable()/pipe_wait_writable() do; a
 * vmsplice that blocks on a userfault while faulting pages in keeps holding it, as in Linux.
 *
 * Capacity (max_usage) counts buffers, not bytes: 16 by default, F_SETPIPE_SZ rounds up to a
 * power-of-two number of pages and refuses (EBUSY) to drop below the buffers in use.
 */
import type { KernelCore } from "../kernel/kernel.ts";
import type { RefHolder } from "../mm/mm.ts";
import { DeadTaskError } from "../kernel/access.ts";
import type { Process } from "../kernel/process.ts";
import { COST, WaitQueue } from "../kernel/sched.ts";
import type { Pfn } from "../mm/folio.ts";
import { ErrnoError } from "../uapi/errno.ts";
import {
  F_GETPIPE_SZ,
  F_SETPIPE_SZ,
  O_CLOEXEC,
  O_DIRECT,
  O_NONBLOCK,
  O_NOTIFICATION_PIPE,
  O_RDONLY,
  O_WRONLY,
  PIPE_DEF_BUFFERS,
  PIPE_MAX_SIZE,
  POLLERR,
  POLLHUP,
  POLLIN,
  POLLOUT,
  POLLRDNORM,
  POLLWRNORM,
} from "../uapi/fcntl.ts";
import { PAGE_SHIFT, PAGE_SIZE } from "../uapi/mman.ts";
import { type FileOps, OpenFile } from "./file.ts";

/** include/linux/pipe_fs_i.h PIPE_BUF_FLAG_*. */
export const PIPE_BUF_FLAG = {
  GIFT: 0x04,
  PACKET: 0x08,
  CAN_MERGE: 0x10,
} as const;

/** struct pipe_buffer. `pfn` holds one reference (unless it is the zero page). */
export interface PipeBuffer {
  pfn: Pfn;
  offset: number;
  len: number;
  flags: number;
}

/** include/linux/fs.h MAX_RW_COUNT: the most one read/write transfers. */
export const MAX_RW_COUNT = 0x7ffff000;

/** struct pipe_inode_info. */
export class PipeInodeInfo implements RefHolder {
  readonly ino: number;
  /** The ring, oldest (tail) first. */
  readonly bufs: PipeBuffer[] = [];
  /** max_usage, in buffers. */
  maxUsage = PIPE_DEF_BUFFERS;
  readers = 0;
  writers = 0;
  readonly core: KernelCore;
  readonly #rdWait: WaitQueue<null>;
  readonly #wrWait: WaitQueue<null>;
  readonly #pollers = new Set<() => void>();
  #locked = false;
  readonly #lockWaiters: Array<() => void> = [];

  constructor(core: KernelCore) {
    this.core = core;
    this.ino = core.sched.nextSeq();
    this.#rdWait = new WaitQueue(core.sched);
    this.#wrWait = new WaitQueue(core.sched);
  }

  get empty(): boolean {
    return this.bufs.length === 0;
  }

  /** pipe_full(): occupancy has reached max_usage. */
  get full(): boolean {
    return this.bufs.length >= this.maxUsage;
  }

  // --- pipe->mutex ------------------------------------------------------------------------

  /** pipe_lock(), FIFO. Every holder releases it in a finally block, so waiting always ends. */
  async lock(): Promise<void> {
    if (!this.#locked) {
      this.#locked = true;
      return;
    }
    await new Promise<void>((resolve) => this.#lockWaiters.push(resolve));
  }

  /** pipe_unlock(): hands the mutex to the next waiter, if any. */
  unlock(): void {
    const next = this.#lockWaiters.shift();
    if (next === undefined) this.#locked = false;
    else next();
  }

  // --- waiting and waking -----------------------------------------------------------------

  /** pipe_wait_readable(): drop the mutex, sleep until woken, retake it. */
  waitReadable(proc: Process): Promise<void> {
    return this.#sleep(this.#rdWait, proc);
  }

  /** pipe_wait_writable(). */
  waitWritable(proc: Process): Promise<void> {
    return this.#sleep(this.#wrWait, proc);
  }

  /** Returns (or throws DeadTaskError if the process died meanwhile) with the mutex held again. */
  async #sleep(queue: WaitQueue<null>, proc: Process): Promise<void> {
    const waiter = queue.add(null);
    this.unlock();
    await Promise.race([waiter.promise, proc.accessContext(proc.mainThread).killed]);
    if (proc.exited) queue.remove(waiter);
    await this.lock();
    if (proc.exited) throw new DeadTaskError();
  }

  wakeReaders(): void {
    this.#rdWait.wakeAllEntries();
    this.#notifyPollers();
  }

  wakeWriters(): void {
    this.#wrWait.wakeAllEntries();
    this.#notifyPollers();
  }

  #notifyPollers(): void {
    for (const fn of [...this.#pollers]) fn();
  }

  addPoller(fn: () => void): () => void {
    this.#pollers.add(fn);
    return () => this.#pollers.delete(fn);
  }

  // --- buffers ----------------------------------------------------------------------------

  /**
   * add_to_pipe() without the wake: null when added, else the errno (EPIPE without readers,
   * EAGAIN when full) and the caller still owns the buffer's page reference.
   */
  addToPipe(buf: PipeBuffer): "EPIPE" | "EAGAIN" | null {
    if (this.readers === 0) return "EPIPE";
    if (this.full) return "EAGAIN";
    this.bufs.push(buf);
    return null;
  }

  /** pipe_buf_release(): the buffer's frame reference goes. */
  releaseBuf(buf: PipeBuffer): void {
    this.core.mem.folioPut(buf.pfn);
  }

  /** Drops the tail buffer once consumed (pipe_update_tail()). */
  consumeTail(): void {
    const buf = this.bufs.shift();
    if (buf !== undefined) this.releaseBuf(buf);
  }

  /** free_pipe_info(): the last end closed. */
  free(): void {
    while (this.bufs.length > 0) this.consumeTail();
    this.core.refHolders.delete(this);
  }

  forEachRef(fn: (pfn: number, refs: number, pins: number) => void): void {
    const zero = this.core.mem.zeroPfn;
    for (const b of this.bufs) if (b.pfn !== zero) fn(b.pfn, 1, 0);
  }
}

/** pipefifo_fops for both ends; the open file's mode says which end it is. */
export class PipeFileOps implements FileOps {
  readonly pipe: PipeInodeInfo;
  readonly name: string;

  constructor(pipe: PipeInodeInfo) {
    this.pipe = pipe;
    this.name = `pipe:[${pipe.ino}]`;
  }

  read(file: OpenFile, proc: Process, length: number): Promise<Uint8Array> {
    return pipeRead(this.pipe, file, proc, length);
  }

  write(file: OpenFile, proc: Process, data: Uint8Array): Promise<number> {
    return pipeWrite(this.pipe, file, proc, data);
  }

  /** Mirrors fs/pipe.c:pipe_poll(). */
  poll(file: OpenFile): number {
    const pipe = this.pipe;
    let mask = 0;
    if (file.readable) {
      if (!pipe.empty) mask |= POLLIN | POLLRDNORM;
      if (pipe.writers === 0) mask |= POLLHUP;
    }
    if (file.writable) {
      if (!pipe.full) mask |= POLLOUT | POLLWRNORM;
      if (pipe.readers === 0) mask |= POLLERR;
    }
    return mask;
  }

  pollWait(_file: OpenFile, notify: () => void): () => void {
    return this.pipe.addPoller(notify);
  }

  /** Mirrors fs/pipe.c:pipe_release(). */
  release(file: OpenFile): void {
    const pipe = this.pipe;
    if (file.readable) pipe.readers--;
    if (file.writable) pipe.writers--;
    if (pipe.readers === 0 && pipe.writers === 0) {
      pipe.free();
      return;
    }
    pipe.wakeReaders();
    pipe.wakeWriters();
  }
}

/** get_pipe_info(): the pipe behind an open file, or null. */
export function getPipeInfo(file: OpenFile): PipeInodeInfo | null {
  return file.ops instanceof PipeFileOps ? file.ops.pipe : null;
}

/**
 * Mirrors fs/pipe.c:do_pipe2() / __do_pipe_flags() / create_pipe_files(). The read end is
 * O_RDONLY (plus O_NONBLOCK), the write end O_WRONLY plus O_NONBLOCK and O_DIRECT (packet mode
 * is a property of the writer).
 */
export function sysPipe2(proc: Process, flags: number): [number, number] {
  if ((flags & ~(O_CLOEXEC | O_NONBLOCK | O_DIRECT | O_NOTIFICATION_PIPE)) !== 0) throw new ErrnoError("EINVAL", "pipe2");
  // watch_queue_init() without CONFIG_WATCH_QUEUE (the reference host's configuration).
  if ((flags & O_NOTIFICATION_PIPE) !== 0) throw new ErrnoError("ENOPKG", "pipe2");
  const core = proc.kernel.core;
  const pipe = new PipeInodeInfo(core);
  const ops = new PipeFileOps(pipe);
  const rfile = new OpenFile(ops, O_RDONLY | (flags & O_NONBLOCK));
  const wfile = new OpenFile(ops, O_WRONLY | (flags & (O_NONBLOCK | O_DIRECT)));
  pipe.readers = 1;
  pipe.writers = 1;
  core.refHolders.add(pipe);
  let rfd = -1;
  try {
    rfd = proc.fds.install(rfile, flags, "pipe2");
    const wfd = proc.fds.install(wfile, flags, "pipe2");
    return [rfd, wfd];
  } catch (e) {
    if (rfd >= 0) proc.fds.close(rfd);
    else rfile.put();
    wfile.put();
    throw e;
  }
}

/**
 * Mirrors fs/pipe.c:pipe_read(): waits for data (unless O_NONBLOCK, or no writer is left: then
 * EOF), then copies from as many buffers as it can without waiting again. A packet buffer is
 * consumed whole by one read, and ends it.
 */
async function pipeRead(pipe: PipeInodeInfo, file: OpenFile, proc: Process, length: number): Promise<Uint8Array> {
  if (length === 0) return new Uint8Array(0);
  await pipe.lock();
  try {
    for (;;) {
      if (!pipe.empty) return copyOut(pipe, Math.min(length, MAX_RW_COUNT));
      if (pipe.writers === 0) return new Uint8Array(0);
      if ((file.flags & O_NONBLOCK) !== 0) throw new ErrnoError("EAGAIN", "read");
      await pipe.waitReadable(proc);
    }
  } finally {
    pipe.unlock();
  }
}

/** The copy loop of pipe_read() over the buffers present now. */
function copyOut(pipe: PipeInodeInfo, want: number): Uint8Array {
  const mem = pipe.core.mem;
  let avail = 0;
  for (const b of pipe.bufs) avail += b.len;
  const out = new Uint8Array(Math.min(want, avail));
  let done = 0;
  let left = want;
  while (left > 0 && !pipe.empty) {
    const buf = pipe.bufs[0] as PipeBuffer;
    const chars = Math.min(buf.len, left);
    const off = mem.offset(buf.pfn) + buf.offset;
    out.set(mem.bytes(buf.pfn).subarray(off, off + chars), done);
    done += chars;
    buf.offset += chars;
    buf.len -= chars;
    left -= chars;
    if ((buf.flags & PIPE_BUF_FLAG.PACKET) !== 0) {
      buf.len = 0;
      left = 0;
    }
    if (buf.len === 0) pipe.consumeTail();
  }
  pipe.core.sched.charge(COST.pageCopy * Math.ceil(done / PAGE_SIZE));
  pipe.wakeWriters();
  return done === out.length ? out : out.subarray(0, done);
}

/**
 * Mirrors fs/pipe.c:pipe_write(): EPIPE without readers, merge into the last CAN_MERGE buffer,
 * then one new page per PAGE_SIZE bytes, waiting for room unless O_NONBLOCK (EAGAIN if nothing
 * was written yet, else the short count).
 * Divergence from Linux: SIGPIPE is not delivered (the simulation has no signal handlers); the
 * writer just gets EPIPE, as a process that ignores SIGPIPE does.
 */
async function pipeWrite(pipe: PipeInodeInfo, file: OpenFile, proc: Process, data: Uint8Array): Promise<number> {
  if (data.length === 0) return 0;
  await pipe.lock();
  try {
    if (pipe.readers === 0) throw new ErrnoError("EPIPE", "write");
    let done = mergeIntoLast(pipe, data);
    const packet = (file.flags & O_DIRECT) !== 0;
    while (done < data.length) {
      if (pipe.readers === 0) {
        if (done === 0) throw new ErrnoError("EPIPE", "write");
        break;
      }
      if (!pipe.full) {
        const n = appendPage(pipe, data, done, packet);
        if (n < 0) {
          if (done === 0) throw new ErrnoError("ENOMEM", "write");
          break;
        }
        done += n;
        continue;
      }
      if ((file.flags & O_NONBLOCK) !== 0) {
        if (done === 0) throw new ErrnoError("EAGAIN", "write");
        break;
      }
      pipe.wakeReaders();
      await pipe.waitWritable(proc);
    }
    if (done > 0) pipe.wakeReaders();
    return done;
  } finally {
    pipe.unlock();
  }
}

/** The merge step of pipe_write(): the first len % PAGE_SIZE bytes into the last buffer. */
function mergeIntoLast(pipe: PipeInodeInfo, data: Uint8Array): number {
  const chars = data.length & (PAGE_SIZE - 1);
  const last = pipe.bufs[pipe.bufs.length - 1];
  if (chars === 0 || last === undefined) return 0;
  const at = last.offset + last.len;
  if ((last.flags & PIPE_BUF_FLAG.CAN_MERGE) === 0 || at + chars > PAGE_SIZE) return 0;
  const mem = pipe.core.mem;
  mem.writable(last.pfn).set(data.subarray(0, chars), mem.offset(last.pfn) + at);
  mem.written(last.pfn);
  last.len += chars;
  return chars;
}

/** One new anon pipe buffer with up to a page of `data` from `from`; -1 when out of memory. */
function appendPage(pipe: PipeInodeInfo, data: Uint8Array, from: number, packet: boolean): number {
  const mem = pipe.core.mem;
  const pfn = mem.allocFrame(false);
  if (pfn < 0) return -1;
  const n = Math.min(PAGE_SIZE, data.length - from);
  mem.writable(pfn, n === PAGE_SIZE).set(data.subarray(from, from + n), mem.offset(pfn));
  mem.written(pfn);
  pipe.bufs.push({ pfn, offset: 0, len: n, flags: packet ? PIPE_BUF_FLAG.PACKET : PIPE_BUF_FLAG.CAN_MERGE });
  pipe.core.sched.charge(COST.pageCopy);
  return n;
}

/** Mirrors fs/pipe.c:round_pipe_size(). */
export function roundPipeSize(size: number): number {
  if (size > 2 ** 31) return 0;
  if (size < PAGE_SIZE) return PAGE_SIZE;
  let p = PAGE_SIZE;
  while (p < size) p *= 2;
  return p;
}

/**
 * Mirrors fs/fcntl.c's F_SETPIPE_SZ / F_GETPIPE_SZ case and fs/pipe.c:pipe_fcntl() /
 * pipe_set_size(): EBADF on anything but a pipe; the argument is truncated to unsigned int;
 * growing past /proc/sys/fs/pipe-max-size needs CAP_SYS_RESOURCE (EPERM); shrinking below the
 * buffers in use is EBUSY.
 * Divergence from Linux: the per-user pipe-user-pages-soft/hard accounting is not modelled.
 */
export async function pipeFcntl(proc: Process, file: OpenFile, cmd: number, arg: number): Promise<number> {
  const pipe = getPipeInfo(file);
  if (pipe === null) throw new ErrnoError("EBADF", "fcntl");
  await pipe.lock();
  try {
    if (cmd === F_GETPIPE_SZ) return pipe.maxUsage * PAGE_SIZE;
    if (cmd !== F_SETPIPE_SZ) throw new ErrnoError("EINVAL", "fcntl");
    const size = roundPipeSize(arg >>> 0);
    const nrSlots = size >>> PAGE_SHIFT;
    if (nrSlots === 0) throw new ErrnoError("EINVAL", "fcntl");
    if (nrSlots > pipe.maxUsage && size > PIPE_MAX_SIZE && !proc.capable("CAP_SYS_RESOURCE")) throw new ErrnoError("EPERM", "fcntl");
    if (nrSlots < pipe.bufs.length) throw new ErrnoError("EBUSY", "fcntl");
    pipe.maxUsage = nrSlots;
    pipe.wakeWriters();
    return nrSlots * PAGE_SIZE;
  } finally {
    pipe.unlock();
  }
}
