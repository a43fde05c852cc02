/** include/uapi/asm-generic/fcntl.h, linux/memfd.h, linux/fs.h, poll.h and signal numbers (x86-64). */

export const O_RDONLY = 0o0;
export const O_WRONLY = 0o1;
export const O_RDWR = 0o2;
export const O_ACCMODE = 0o3;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;
/** Packet-mode pipes (pipe2). */
export const O_DIRECT = 0o40000;
/** pipe2(O_NOTIFICATION_PIPE) (== O_EXCL): needs CONFIG_WATCH_QUEUE, which the reference host lacks (ENOPKG). */
export const O_NOTIFICATION_PIPE = 0o200;

export const MFD_CLOEXEC = 0x0001;
export const MFD_ALLOW_SEALING = 0x0002;
export const MFD_HUGETLB = 0x0004;
export const MFD_NOEXEC_SEAL = 0x0008;
export const MFD_EXEC = 0x0010;

export const SEEK_SET = 0;
export const SEEK_CUR = 1;
export const SEEK_END = 2;
export const SEEK_DATA = 3;
export const SEEK_HOLE = 4;

export const F_GETFD = 1;
export const F_SETFD = 2;
export const F_GETFL = 3;
export const F_SETFL = 4;
export const F_SETPIPE_SZ = 1031;
export const F_GETPIPE_SZ = 1032;
export const FD_CLOEXEC = 1;
export const F_ADD_SEALS = 1033;
export const F_GET_SEALS = 1034;
export const F_SEAL_SEAL = 0x0001;
export const F_SEAL_SHRINK = 0x0002;
export const F_SEAL_GROW = 0x0004;
export const F_SEAL_WRITE = 0x0008;
export const F_SEAL_FUTURE_WRITE = 0x0010;
export const F_SEAL_EXEC = 0x0020;

export const SPLICE_F_MOVE = 0x01;
export const SPLICE_F_NONBLOCK = 0x02;
export const SPLICE_F_MORE = 0x04;
export const SPLICE_F_GIFT = 0x08;

export const POLLIN = 0x0001;
export const POLLPRI = 0x0002;
export const POLLOUT = 0x0004;
export const POLLERR = 0x0008;
export const POLLHUP = 0x0010;
export const POLLNVAL = 0x0020;
export const POLLRDNORM = 0x0040;
export const POLLWRNORM = 0x0100;

export const SIGKILL = 9;
export const SIGBUS = 7;
export const SIGSEGV = 11;
export const SIGTERM = 15;
export const SIGUSR1 = 10;

/** The default pipe capacity: 16 pages (fs/pipe.c PIPE_DEF_BUFFERS). */
export const PIPE_DEF_BUFFERS = 16;
/** /proc/sys/fs/pipe-max-size default. */
export const PIPE_MAX_SIZE = 1048576;
