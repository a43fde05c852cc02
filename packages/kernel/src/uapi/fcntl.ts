/** include/uapi/asm-generic/fcntl.h, linux/memfd.h, linux/fs.h, poll.h and signal numbers (x86-64). */

/** open(2): read only. */
export const O_RDONLY = 0o0;
/** open(2): write only. */
export const O_WRONLY = 0o1;
/** open(2): read and write. */
export const O_RDWR = 0o2;
/** open(2): the mask of the access mode bits. */
export const O_ACCMODE = 0o3;
/** open(2) / userfaultfd(2) / pipe2(2): non-blocking reads and writes (EAGAIN instead of waiting). */
export const O_NONBLOCK = 0o4000;
/** open(2) / userfaultfd(2) / pipe2(2): close the fd on execve(2). */
export const O_CLOEXEC = 0o2000000;
/** Packet-mode pipes (pipe2). */
export const O_DIRECT = 0o40000;
/** pipe2(O_NOTIFICATION_PIPE) (== O_EXCL): needs CONFIG_WATCH_QUEUE, which the reference host lacks (ENOPKG). */
export const O_NOTIFICATION_PIPE = 0o200;

/** memfd_create(2): close the fd on execve(2). */
export const MFD_CLOEXEC = 0x0001;
/** memfd_create(2): allow fcntl(F_ADD_SEALS). */
export const MFD_ALLOW_SEALING = 0x0002;
/** memfd_create(2): back the file with huge pages (hugetlbfs). */
export const MFD_HUGETLB = 0x0004;
/** memfd_create(2): not executable, sealed so it stays so. */
export const MFD_NOEXEC_SEAL = 0x0008;
/** memfd_create(2): executable. */
export const MFD_EXEC = 0x0010;

/** lseek(2): from the start of the file. */
export const SEEK_SET = 0;
/** lseek(2): from the current offset. */
export const SEEK_CUR = 1;
/** lseek(2): from the end of the file. */
export const SEEK_END = 2;
/** lseek(2): to the next offset holding data. */
export const SEEK_DATA = 3;
/** lseek(2): to the next hole. */
export const SEEK_HOLE = 4;

/** fcntl(2): read the fd flags (FD_CLOEXEC). */
export const F_GETFD = 1;
/** fcntl(2): set the fd flags. */
export const F_SETFD = 2;
/** fcntl(2): read the file status flags (O_*). */
export const F_GETFL = 3;
/** fcntl(2): set the file status flags (O_NONBLOCK). */
export const F_SETFL = 4;
/** fcntl(2): set a pipe's capacity in bytes. */
export const F_SETPIPE_SZ = 1031;
/** fcntl(2): read a pipe's capacity in bytes. */
export const F_GETPIPE_SZ = 1032;
/** fcntl(2) F_GETFD / F_SETFD: the close-on-exec flag. */
export const FD_CLOEXEC = 1;
/** fcntl(2): add seals to a memfd. */
export const F_ADD_SEALS = 1033;
/** fcntl(2): read a memfd's seals. */
export const F_GET_SEALS = 1034;
/** memfd seal: no further seals may be added. */
export const F_SEAL_SEAL = 0x0001;
/** memfd seal: the file may not shrink. */
export const F_SEAL_SHRINK = 0x0002;
/** memfd seal: the file may not grow. */
export const F_SEAL_GROW = 0x0004;
/** memfd seal: the contents may not be written. */
export const F_SEAL_WRITE = 0x0008;
/** memfd seal: no new writable mapping or write, existing writable mappings keep working. */
export const F_SEAL_FUTURE_WRITE = 0x0010;
/** memfd seal: the executable bits may not change. */
export const F_SEAL_EXEC = 0x0020;

/** splice(2) / vmsplice(2): move pages instead of copying (a hint). */
export const SPLICE_F_MOVE = 0x01;
/** splice(2) / vmsplice(2): do not block on the pipe. */
export const SPLICE_F_NONBLOCK = 0x02;
/** splice(2): more data will follow. */
export const SPLICE_F_MORE = 0x04;
/** vmsplice(2): the pages are a gift to the kernel. */
export const SPLICE_F_GIFT = 0x08;

/** poll(2): there is data to read (a userfaultfd has a message). */
export const POLLIN = 0x0001;
/** poll(2): there is urgent data. */
export const POLLPRI = 0x0002;
/** poll(2): writing will not block. */
export const POLLOUT = 0x0004;
/** poll(2): an error condition (a userfaultfd before UFFDIO_API). */
export const POLLERR = 0x0008;
/** poll(2): hang up (the other end of a pipe closed). */
export const POLLHUP = 0x0010;
/** poll(2): the fd is not open. */
export const POLLNVAL = 0x0020;
/** poll(2): normal data to read. */
export const POLLRDNORM = 0x0040;
/** poll(2): normal data may be written. */
export const POLLWRNORM = 0x0100;

/** Signal 9: kill, cannot be caught. */
export const SIGKILL = 9;
/** Signal 7: bus error; what a userfault gets from UFFD_FEATURE_SIGBUS, a closed userfaultfd or a poisoned page. */
export const SIGBUS = 7;
/** Signal 11: invalid memory access. */
export const SIGSEGV = 11;
/** Signal 15: termination request. */
export const SIGTERM = 15;
/** Signal 10: user-defined. */
export const SIGUSR1 = 10;

/** The default pipe capacity: 16 pages (fs/pipe.c PIPE_DEF_BUFFERS). */
export const PIPE_DEF_BUFFERS = 16;
/** /proc/sys/fs/pipe-max-size default. */
export const PIPE_MAX_SIZE = 1048576;
