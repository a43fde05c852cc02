/*
 * uffd-conform: the native half of @uffd/conformance.
 *
 * Executes primitive steps (one syscall, or one user-mode access, each) on the host kernel with
 * real processes and threads, and prints one JSON record per step. The TypeScript driver
 * (src/native.ts) resolves a scenario to these primitives and feeds them on stdin, one per line:
 *
 *   <id> <proc> <op> <arg>...          numbers in decimal or 0x-hex
 *
 * and reads one line back for each:
 *
 *   {"id":<id>,"r":<result>,"done":[{"id":<earlier id>,"r":<result>}...]}
 *
 * <result> is {"blocked":1} when the step's thread went to sleep in the kernel on a userfault
 * or a userfaultfd event (it is reported in a later record's "done" once it finishes), else
 * {"ret":N,...} or {"err":errno,...} or {"sig":"SIGSEGV"|"SIGBUS"}.
 *
 * Processes: the runner itself is a controller that owns no scenario memory. Scenario process k
 * (0 = the first, others created by a "fork" step) is a worker that reads steps on its own pipe.
 * Every step runs on a new thread of its process, so a step that blocks (a fault waiting for
 * UFFDIO_COPY, a madvise waiting for its REMOVE event to be read) does not stop the scenario.
 *
 * Settling: after each step every live worker waits until each of its step threads has either
 * finished or is asleep in handle_userfault() or userfaultfd_event_wait_completion() (read from
 * /proc/self/task/<tid>/wchan, which the kernel reports only for a task that is off the run
 * queue). A wake done by a step has set the woken task runnable before that step's syscall
 * returned and before the step's thread set its finished flag; a check reads every finished flag
 * before any wchan (see settle()), so apart from the LOCK_SLEEPS rule a settled state does not
 * depend on timing. The whole runner is pinned to one CPU (MADV_PAGEOUT skips folios still in
 * another CPU's LRU-add batch).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/swap.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>


/*
 * The uAPI of 6.18 that older system headers may lack, spelled out (include/uapi/linux/userfaultfd.h,
 * include/uapi/linux/fs.h); the layouts are fixed by the ABI.
 */
struct c_uffdio_poison { struct uffdio_range range; uint64_t mode; int64_t updated; };
struct c_uffdio_move { uint64_t dst, src, len, mode; int64_t move; };
struct c_page_region { uint64_t start, end, categories; };
struct c_pm_scan_arg { uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages, category_inverted, category_mask, category_anyof_mask, return_mask; };
#define C_UFFDIO_POISON _IOWR(UFFDIO, 0x08, struct c_uffdio_poison)
#define C_UFFDIO_MOVE _IOWR(UFFDIO, 0x05, struct c_uffdio_move)
#define C_PAGEMAP_SCAN _IOWR('f', 16, struct c_pm_scan_arg)

#define PAGE 4096UL
#define MAXP 8
#define MAXT 512
#define MAXARGS 12
#define OUTSZ (1 << 20)

/* ---- output buffers ---------------------------------------------------------------------- */

typedef struct {
  char *buf;
  size_t len, cap;
} sbuf;

static void sb_init(sbuf *s) {
  s->cap = 4096;
  s->len = 0;
  s->buf = malloc(s->cap);
  s->buf[0] = 0;
}

static void sb_printf(sbuf *s, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(s->buf + s->len, s->cap - s->len, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < s->cap - s->len) {
      s->len += (size_t)n;
      return;
    }
    s->cap *= 2;
    s->buf = realloc(s->buf, s->cap);
  }
}

/* ---- a step running on its own thread ---------------------------------------------------- */

typedef struct {
  long id;
  char op[32];
  int nargs;
  uint64_t a[MAXARGS];
  pid_t tid;
  volatile int finished;
  volatile int tid_ready;
  sbuf out; /* the JSON result once finished */
  pthread_t th;
  int reported;
} step_t;

static step_t *steps[MAXT];
static int nsteps;
static int my_index; /* this worker's process index */
static int cmd_fd[MAXP][2], res_fd[MAXP][2];

static __thread sigjmp_buf access_jmp;
static __thread volatile int in_access;
static __thread volatile int access_sig;

static void on_fault(int sig, siginfo_t *si, void *uc) {
  (void)si;
  (void)uc;
  if (in_access) {
    access_sig = sig;
    in_access = 0;
    siglongjmp(access_jmp, 1);
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

static void res_errno(sbuf *o, int e) { sb_printf(o, "{\"err\":%d}", e); }

/* The result of a read of r bytes into b: the errno, or the count and the first byte of each page. */
static void res_read(sbuf *o, long r, const unsigned char *b) {
  if (r < 0) {
    res_errno(o, errno);
    return;
  }
  sb_printf(o, "{\"ret\":%ld,\"data\":[", r);
  for (long i = 0; i * (long)PAGE < r; i++) sb_printf(o, "%s%u", i ? "," : "", b[i * PAGE]);
  sb_printf(o, "]}");
}

static uint64_t read_u64(int fd, uint64_t index, int *ok) {
  uint64_t v = 0;
  *ok = pread(fd, &v, 8, (off_t)(index * 8)) == 8;
  return v;
}

/* pagemap, kpagecount and kpageflags of n pages from addr: [[pagemap, count, flags], ...] as hex strings. */
static void op_pagemap(sbuf *o, uint64_t addr, uint64_t n) {
  int pm = open("/proc/self/pagemap", O_RDONLY);
  int kc = open("/proc/kpagecount", O_RDONLY);
  int kf = open("/proc/kpageflags", O_RDONLY);
  if (pm < 0 || kc < 0 || kf < 0) {
    res_errno(o, errno);
    goto out;
  }
  sb_printf(o, "{\"ret\":0,\"pm\":[");
  for (uint64_t i = 0; i < n; i++) {
    int ok;
    uint64_t e = read_u64(pm, addr / PAGE + i, &ok);
    uint64_t cnt = 0, flags = 0;
    if ((e >> 63) & 1) {
      uint64_t pfn = e & ((1ULL << 55) - 1);
      cnt = read_u64(kc, pfn, &ok);
      flags = read_u64(kf, pfn, &ok);
    }
    sb_printf(o, "%s[\"%llx\",%llu,\"%llx\"]", i ? "," : "", (unsigned long long)e, (unsigned long long)cnt,
              (unsigned long long)flags);
  }
  sb_printf(o, "]}");
out:
  if (pm >= 0) close(pm);
  if (kc >= 0) close(kc);
  if (kf >= 0) close(kf);
}

/* The VmFlags, Rss, Anonymous and Swap of every vma that intersects [addr, addr + len). */
static void op_smaps(sbuf *o, uint64_t addr, uint64_t len) {
  FILE *f = fopen("/proc/self/smaps", "r");
  if (!f) {
    res_errno(o, errno);
    return;
  }
  char line[512];
  int in = 0, first = 1;
  sb_printf(o, "{\"ret\":0,\"vmas\":[");
  while (fgets(line, sizeof line, f)) {
    unsigned long long s, e;
    char perms[8];
    if (sscanf(line, "%llx-%llx %7s", &s, &e, perms) == 3 && strchr(line, '-') < strchr(line, ' ')) {
      if (in) sb_printf(o, "}");
      in = s < addr + len && e > addr;
      if (in) {
        sb_printf(o, "%s{\"start\":%llu,\"end\":%llu,\"perms\":\"%s\"", first ? "" : ",", s, e, perms);
        first = 0;
      }
      continue;
    }
    if (!in) continue;
    unsigned long long kb;
    if (sscanf(line, "Rss: %llu kB", &kb) == 1) sb_printf(o, ",\"rss\":%llu", kb * 1024);
    else if (sscanf(line, "Anonymous: %llu kB", &kb) == 1) sb_printf(o, ",\"anon\":%llu", kb * 1024);
    else if (sscanf(line, "Swap: %llu kB", &kb) == 1) sb_printf(o, ",\"swap\":%llu", kb * 1024);
    else if (strncmp(line, "VmFlags:", 8) == 0) {
      char *p = line + 8;
      p[strcspn(p, "\n")] = 0;
      while (*p == ' ') p++;
      size_t l = strlen(p);
      while (l > 0 && p[l - 1] == ' ') p[--l] = 0;
      sb_printf(o, ",\"flags\":\"%s\"", p);
    }
  }
  if (in) sb_printf(o, "}");
  sb_printf(o, "]}");
  fclose(f);
}

static void op_readmsg(sbuf *o, int fd) {
  struct uffd_msg msgs[16];
  ssize_t r = read(fd, msgs, sizeof msgs);
  if (r < 0) {
    res_errno(o, errno);
    return;
  }
  int n = (int)(r / (ssize_t)sizeof(struct uffd_msg));
  sb_printf(o, "{\"ret\":%d,\"msgs\":[", n);
  for (int i = 0; i < n; i++) {
    struct uffd_msg *m = &msgs[i];
    const char *sep = i ? "," : "";
    switch (m->event) {
      case UFFD_EVENT_PAGEFAULT:
        sb_printf(o, "%s{\"event\":%u,\"flags\":%llu,\"address\":%llu,\"ptid\":%u}", sep, m->event,
                  (unsigned long long)m->arg.pagefault.flags, (unsigned long long)m->arg.pagefault.address,
                  m->arg.pagefault.feat.ptid);
        break;
      case UFFD_EVENT_FORK:
        sb_printf(o, "%s{\"event\":%u,\"ufd\":%u}", sep, m->event, m->arg.fork.ufd);
        break;
      case UFFD_EVENT_REMAP:
        sb_printf(o, "%s{\"event\":%u,\"from\":%llu,\"to\":%llu,\"len\":%llu}", sep, m->event,
                  (unsigned long long)m->arg.remap.from, (unsigned long long)m->arg.remap.to,
                  (unsigned long long)m->arg.remap.len);
        break;
      default:
        sb_printf(o, "%s{\"event\":%u,\"start\":%llu,\"end\":%llu}", sep, m->event,
                  (unsigned long long)m->arg.remove.start, (unsigned long long)m->arg.remove.end);
    }
  }
  sb_printf(o, "]}");
}

/* A user-mode load of the first byte of each of n pages, or a store of `byte` filling them. */
static void op_access(sbuf *o, uint64_t addr, uint64_t n, int write, int byte) {
  unsigned char *p = (unsigned char *)(uintptr_t)addr;
  unsigned char got[256];
  if (n > sizeof got) n = sizeof got;
  if (sigsetjmp(access_jmp, 1) == 0) {
    in_access = 1;
    for (uint64_t i = 0; i < n; i++) {
      if (write) {
        volatile unsigned char *q = p + i * PAGE;
        for (size_t b = 0; b < PAGE; b += 64) q[b] = (unsigned char)byte; /* forward, line by line */
        memset(p + i * PAGE, byte, PAGE);
      } else {
        got[i] = *(volatile unsigned char *)(p + i * PAGE);
      }
    }
    in_access = 0;
  } else {
    sb_printf(o, "{\"sig\":\"%s\"}", access_sig == SIGBUS ? "SIGBUS" : "SIGSEGV");
    return;
  }
  if (write) {
    sb_printf(o, "{\"ret\":0}");
    return;
  }
  sb_printf(o, "{\"ret\":0,\"data\":[");
  for (uint64_t i = 0; i < n; i++) sb_printf(o, "%s%u", i ? "," : "", got[i]);
  sb_printf(o, "]}");
}

static unsigned char *scratch(size_t len, int byte) {
  unsigned char *b = mmap(NULL, len ? len : PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (b == MAP_FAILED) return NULL;
  memset(b, byte, len);
  return b;
}


/* ---- swap: a zram device of the harness's own ----------------------------------------------- */

/*
 * Swap-in depends on the device: zram is SWP_SYNCHRONOUS_IO, and do_swap_page() reads an entry
 * whose swap count is 1 straight into a new folio, bypassing the swap cache; a swap file does
 * not. A scenario that needs swap ("RESET swap") runs with a zram device this runner creates
 * (/sys/class/zram-control/hot_add, disksize, a swap header written here, swapon(2)) and turns off
 * again (swapoff(2)) before the next scenario; the device is removed (hot_remove) when the
 * runner ends, also on SIGINT, SIGTERM or SIGHUP (and SIGTERM is what the runner gets when its
 * driver dies). Any other active swap device is refused: MADV_PAGEOUT would write to it.
 *
 * Swap is system-wide, so runners on one machine take turns: a scenario without swap holds a
 * shared flock on LOCK_FILE (no runner may have swap on meanwhile), one with swap an exclusive
 * one; INTENT_FILE makes a waiting exclusive locker go before later shared ones.
 */
#define LOCK_FILE "/tmp/uffd-conform-swap.lock"
#define INTENT_FILE "/tmp/uffd-conform-swap.intent"
#define ZRAM_BYTES (64UL << 20)
static int lock_fd = -1, intent_fd = -1;
static int zram_id = -1;         /* the device this runner made, or -1 */
static volatile int swap_on = 0; /* swapon(2) of it is in effect */
static char zram_dev[64];
static pid_t controller_pid;

static int write_str(const char *path, const char *v) {
  int fd = open(path, O_WRONLY);
  if (fd < 0) return -errno;
  ssize_t n = write(fd, v, strlen(v));
  int e = errno;
  close(fd);
  return n < 0 ? -e : 0;
}

/* Takes the turn for one scenario: shared without swap, exclusive with it. */
static void swap_lock(int exclusive) {
  if (lock_fd < 0) lock_fd = open(LOCK_FILE, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (intent_fd < 0) intent_fd = open(INTENT_FILE, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (lock_fd < 0 || intent_fd < 0) return;
  while (flock(intent_fd, exclusive ? LOCK_EX : LOCK_SH) < 0 && errno == EINTR) {
  }
  while (flock(lock_fd, exclusive ? LOCK_EX : LOCK_SH) < 0 && errno == EINTR) {
  }
  flock(intent_fd, LOCK_UN);
}

static void swap_unlock(void) {
  if (lock_fd >= 0) flock(lock_fd, LOCK_UN);
}

/* Active swap devices other than this runner's, as a JSON array of names. */
static void foreign_swaps(sbuf *o) {
  FILE *f = fopen("/proc/swaps", "r");
  sb_printf(o, "[");
  if (!f) {
    sb_printf(o, "]");
    return;
  }
  char line[512];
  int first = 1;
  if (fgets(line, sizeof line, f)) { /* the header */
    while (fgets(line, sizeof line, f)) {
      char name[256];
      if (sscanf(line, "%255s", name) != 1) continue;
      if (swap_on && !strcmp(name, zram_dev)) continue;
      sb_printf(o, "%s\"", first ? "" : ",");
      for (char *c = name; *c; c++) sb_printf(o, (*c == '"' || *c == '\\') ? "\\%c" : "%c", *c);
      sb_printf(o, "\"");
      first = 0;
    }
  }
  fclose(f);
  sb_printf(o, "]");
}

/* A version-1 swap header (include/linux/swap.h: union swap_header), as mkswap(8) writes it. */
static int write_swap_header(const char *dev, unsigned long bytes) {
  unsigned char page[PAGE];
  memset(page, 0, sizeof page);
  uint32_t *info = (uint32_t *)(page + 1024);
  info[0] = 1;                                /* version */
  info[1] = (uint32_t)(bytes / PAGE - 1);     /* last_page */
  info[2] = 0;                                /* nr_badpages */
  memcpy(page + PAGE - 10, "SWAPSPACE2", 10); /* magic */
  int fd = open(dev, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  ssize_t n = pwrite(fd, page, sizeof page, 0);
  int e = errno;
  fsync(fd);
  close(fd);
  return n == (ssize_t)sizeof page ? 0 : -(n < 0 ? e : EIO);
}

/* Makes the zram device (once) and turns swap on; NULL or why not. */
static const char *swap_up(char *why, size_t cap) {
  if (swap_on) return NULL;
  if (zram_id < 0) {
    int fd = open("/sys/class/zram-control/hot_add", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      snprintf(why, cap, "no zram (/sys/class/zram-control/hot_add: errno %d; modprobe zram)", errno);
      return why;
    }
    char b[32] = {0};
    ssize_t n = read(fd, b, sizeof b - 1);
    close(fd);
    if (n <= 0) {
      snprintf(why, cap, "zram hot_add failed (errno %d)", errno);
      return why;
    }
    zram_id = atoi(b);
    snprintf(zram_dev, sizeof zram_dev, "/dev/zram%d", zram_id);
    char path[96], size[32];
    snprintf(path, sizeof path, "/sys/block/zram%d/disksize", zram_id);
    snprintf(size, sizeof size, "%lu", ZRAM_BYTES);
    int e = write_str(path, size);
    if (e < 0) {
      snprintf(why, cap, "zram%d disksize: errno %d", zram_id, -e);
      return why;
    }
    for (int i = 0; i < 200 && access(zram_dev, W_OK) < 0; i++) usleep(10000); /* udev makes the node */
    if (access(zram_dev, W_OK) < 0) { /* no udev: make the node from /sys/block/zramN/dev */
      char devno[32] = {0};
      snprintf(path, sizeof path, "/sys/block/zram%d/dev", zram_id);
      int dfd = open(path, O_RDONLY | O_CLOEXEC);
      unsigned maj = 0, min = 0;
      if (dfd >= 0 && read(dfd, devno, sizeof devno - 1) > 0 && sscanf(devno, "%u:%u", &maj, &min) == 2)
        mknod(zram_dev, S_IFBLK | 0600, makedev(maj, min));
      if (dfd >= 0) close(dfd);
    }
    e = write_swap_header(zram_dev, ZRAM_BYTES);
    if (e < 0) {
      snprintf(why, cap, "swap header on %s: errno %d", zram_dev, -e);
      return why;
    }
  }
  if (swapon(zram_dev, 0) < 0) {
    snprintf(why, cap, "swapon %s: errno %d", zram_dev, errno);
    return why;
  }
  swap_on = 1;
  return NULL;
}

static void swap_down(void) {
  if (swap_on && swapoff(zram_dev) == 0) swap_on = 0;
}

/* Everything the runner set up goes (async-signal-safe: called from the signal handler too). */
static void swap_teardown(void) {
  swap_down();
  if (zram_id >= 0 && !swap_on) {
    char b[16];
    int n = 0, v = zram_id;
    char t[16];
    do t[n++] = (char)('0' + v % 10); while ((v /= 10) > 0 && n < 15);
    for (int i = 0; i < n; i++) b[i] = t[n - 1 - i];
    b[n] = 0;
    int fd = open("/sys/class/zram-control/hot_remove", O_WRONLY);
    if (fd >= 0) {
      if (write(fd, b, (size_t)n) >= 0) zram_id = -1;
      close(fd);
    }
  }
}

static void worker_loop(int k);

/* ---- io_uring fixed buffers (raw system calls, no liburing) ------------------------------- */

/*
 * A ring per `pin` step, named by the driver's ring id: io_uring_setup(2), then
 * io_uring_register(IORING_REGISTER_BUFFERS) of one iovec (io_uring/rsrc.c:io_sqe_buffers_register()
 * pins it with pin_user_pages_fast(FOLL_WRITE | FOLL_LONGTERM)). Device accesses through the pin
 * are IORING_OP_READ_FIXED / WRITE_FIXED against a scratch memfd: the kernel copies to or from
 * the pinned pages themselves (a bvec iterator), never through the process's page tables.
 * The SQ/CQ rings are mmapped outside the arena. A ring belongs to the process that set it up: a
 * forked child closes its copies of the ring fds (so a ring lives exactly as long as its process),
 * and a process unregisters its buffers before it exits (see worker_loop).
 */
#define MAXR 16
typedef struct {
  int fd; /* -1: no ring with this id in this process */
  volatile int registered;
  unsigned char *sq, *cq;
  size_t sq_sz, cq_sz;
  struct io_uring_sqe *sqes;
  size_t sqes_sz;
  struct io_uring_params p;
} ring_t;
static ring_t rings[MAXR];

static void rings_init(void) {
  for (int i = 0; i < MAXR; i++) rings[i].fd = -1;
}

static int ring_setup(ring_t *r) {
  memset(&r->p, 0, sizeof r->p);
  int fd = (int)syscall(SYS_io_uring_setup, 4, &r->p);
  if (fd < 0) return -errno;
  r->sq_sz = r->p.sq_off.array + r->p.sq_entries * sizeof(unsigned);
  r->cq_sz = r->p.cq_off.cqes + r->p.cq_entries * sizeof(struct io_uring_cqe);
  r->sq = mmap(NULL, r->sq_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQ_RING);
  r->cq = mmap(NULL, r->cq_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_CQ_RING);
  r->sqes_sz = r->p.sq_entries * sizeof(struct io_uring_sqe);
  r->sqes = mmap(NULL, r->sqes_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
  if (r->sq == MAP_FAILED || r->cq == MAP_FAILED || r->sqes == MAP_FAILED) {
    int e = errno;
    close(fd);
    return -e;
  }
  r->fd = fd;
  return 0;
}

/* One fixed-buffer read or write of len bytes at addr, against fd at offset 0: the cqe's res. */
static int ring_rw(ring_t *r, int opcode, int fd, uint64_t addr, uint32_t len) {
  unsigned *tail = (unsigned *)(r->sq + r->p.sq_off.tail), mask = *(unsigned *)(r->sq + r->p.sq_off.ring_mask);
  unsigned *array = (unsigned *)(r->sq + r->p.sq_off.array);
  unsigned t = *tail, idx = t & mask;
  struct io_uring_sqe *sqe = &r->sqes[idx];
  memset(sqe, 0, sizeof *sqe);
  sqe->opcode = (unsigned char)opcode;
  sqe->fd = fd;
  sqe->addr = addr;
  sqe->len = len;
  sqe->off = 0;
  sqe->buf_index = 0;
  array[idx] = idx;
  __atomic_store_n(tail, t + 1, __ATOMIC_RELEASE);
  long n = syscall(SYS_io_uring_enter, r->fd, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0);
  if (n < 0) return -errno;
  unsigned *chead = (unsigned *)(r->cq + r->p.cq_off.head), cmask = *(unsigned *)(r->cq + r->p.cq_off.ring_mask);
  struct io_uring_cqe *cqes = (struct io_uring_cqe *)(r->cq + r->p.cq_off.cqes);
  unsigned h = *chead;
  int res = cqes[h & cmask].res;
  __atomic_store_n(chead, h + 1, __ATOMIC_RELEASE);
  return res;
}

static void ring_close(ring_t *r) {
  munmap(r->sq, r->sq_sz);
  munmap(r->cq, r->cq_sz);
  munmap(r->sqes, r->sqes_sz);
  close(r->fd);
  r->fd = -1;
  r->registered = 0;
}

/* pin <ring> <addr> <len> */
static void op_pin(sbuf *o, uint64_t id, uint64_t addr, uint64_t len) {
  if (id >= MAXR || rings[id].fd >= 0) {
    sb_printf(o, "{\"bad\":\"ring %llu is taken\"}", (unsigned long long)id);
    return;
  }
  ring_t *r = &rings[id];
  int e = ring_setup(r);
  if (e < 0) {
    sb_printf(o, "{\"bad\":\"io_uring_setup: errno %d\"}", -e);
    return;
  }
  struct iovec iov = {(void *)(uintptr_t)addr, len};
  long ret = syscall(SYS_io_uring_register, r->fd, IORING_REGISTER_BUFFERS, &iov, 1);
  if (ret < 0) {
    e = errno;
    ring_close(r);
    res_errno(o, e);
    return;
  }
  __atomic_store_n(&r->registered, 1, __ATOMIC_RELEASE);
  sb_printf(o, "{\"ret\":0}");
}

/* unpin <ring>: IORING_UNREGISTER_BUFFERS (ENXIO when none are registered). */
static void op_unpin(sbuf *o, uint64_t id) {
  if (id >= MAXR || rings[id].fd < 0) {
    sb_printf(o, "{\"bad\":\"no ring %llu\"}", (unsigned long long)id);
    return;
  }
  long ret = syscall(SYS_io_uring_register, rings[id].fd, IORING_UNREGISTER_BUFFERS, NULL, 0);
  if (ret < 0) res_errno(o, errno);
  else {
    rings[id].registered = 0;
    sb_printf(o, "{\"ret\":0}");
  }
}

/*
 * pinio <ring> <write> <addr> <len> <byte>: a device access through the pinned buffer at addr
 * (an address inside the registered iovec, as io_import_fixed() wants it). write=1: the device writes `byte` (READ_FIXED from a memfd filled with it);
 * write=0: the device reads (WRITE_FIXED into a memfd), reported as the first byte of each page.
 */
static void op_pinio(sbuf *o, uint64_t id, int write, uint64_t addr, uint64_t len, int byte) {
  if (id >= MAXR || rings[id].fd < 0) {
    sb_printf(o, "{\"bad\":\"no ring %llu\"}", (unsigned long long)id);
    return;
  }
  ring_t *r = &rings[id];
  int mfd = memfd_create("pinio", 0);
  if (mfd < 0 || ftruncate(mfd, (off_t)len) < 0) {
    sb_printf(o, "{\"bad\":\"scratch memfd: errno %d\"}", errno);
    if (mfd >= 0) close(mfd);
    return;
  }
  if (write) {
    unsigned char *b = scratch(len, byte);
    if (pwrite(mfd, b, len, 0) != (ssize_t)len) sb_printf(o, "{\"bad\":\"scratch write\"}");
    else {
      int res = ring_rw(r, IORING_OP_READ_FIXED, mfd, addr, (uint32_t)len);
      if (res < 0) res_errno(o, -res);
      else sb_printf(o, "{\"ret\":%d}", res);
    }
    munmap(b, len ? len : PAGE);
  } else {
    int res = ring_rw(r, IORING_OP_WRITE_FIXED, mfd, addr, (uint32_t)len);
    if (res < 0) res_errno(o, -res);
    else {
      unsigned char *b = scratch(len, 0xee);
      ssize_t got = pread(mfd, b, (size_t)res, 0);
      sb_printf(o, "{\"ret\":%d,\"data\":[", res);
      for (long i = 0; i * (long)PAGE < got; i++) sb_printf(o, "%s%u", i ? "," : "", b[i * PAGE]);
      sb_printf(o, "]}");
      munmap(b, len ? len : PAGE);
    }
  }
  close(mfd);
}

/* Before a process exits: its fixed buffers go, as the kernel unregisters them (asynchronously,
 * io_ring_exit_work()) once the ring's last file reference is closed by the exit. */
static void rings_release(void) {
  for (int i = 0; i < MAXR; i++)
    if (rings[i].fd >= 0 && __atomic_load_n(&rings[i].registered, __ATOMIC_ACQUIRE))
      syscall(SYS_io_uring_register, rings[i].fd, IORING_UNREGISTER_BUFFERS, NULL, 0);
}

/* In a forked child: the rings are the parent's. */
static void rings_forget(void) {
  for (int i = 0; i < MAXR; i++)
    if (rings[i].fd >= 0) {
      close(rings[i].fd);
      rings[i].fd = -1;
      rings[i].registered = 0;
    }
}

static void run_op(step_t *s) {
  sbuf *o = &s->out;
  uint64_t *a = s->a;
  const char *op = s->op;
  long r;
#define SYS(expr)                                     \
  do {                                                \
    r = (long)(expr);                                 \
    if (r < 0) res_errno(o, errno);                   \
    else sb_printf(o, "{\"ret\":%ld}", r);            \
  } while (0)
  if (!strcmp(op, "mmap")) {
    void *p = mmap((void *)(uintptr_t)a[0], a[1], (int)a[2], (int)a[3], (int)a[4], (off_t)a[5]);
    if (p == MAP_FAILED) res_errno(o, errno);
    else sb_printf(o, "{\"ret\":%llu}", (unsigned long long)(uintptr_t)p);
  } else if (!strcmp(op, "munmap")) {
    SYS(munmap((void *)(uintptr_t)a[0], a[1]));
  } else if (!strcmp(op, "mprotect")) {
    SYS(mprotect((void *)(uintptr_t)a[0], a[1], (int)a[2]));
  } else if (!strcmp(op, "madvise")) {
    SYS(madvise((void *)(uintptr_t)a[0], a[1], (int)a[2]));
  } else if (!strcmp(op, "mremap")) {
    void *p = mremap((void *)(uintptr_t)a[0], a[1], a[2], (int)a[3], (void *)(uintptr_t)a[4]);
    if (p == MAP_FAILED) res_errno(o, errno);
    else sb_printf(o, "{\"ret\":%llu}", (unsigned long long)(uintptr_t)p);
  } else if (!strcmp(op, "mincore")) {
    unsigned char vec[1024];
    size_t pages = (a[1] + PAGE - 1) / PAGE;
    if (pages > sizeof vec) pages = sizeof vec;
    r = mincore((void *)(uintptr_t)a[0], a[1], vec);
    if (r < 0) res_errno(o, errno);
    else {
      sb_printf(o, "{\"ret\":0,\"vec\":[");
      for (size_t i = 0; i < pages; i++) sb_printf(o, "%s%u", i ? "," : "", vec[i]);
      sb_printf(o, "]}");
    }
  } else if (!strcmp(op, "memfd")) {
    SYS(memfd_create("conform", (unsigned)a[0]));
  } else if (!strcmp(op, "ftruncate")) {
    SYS(ftruncate((int)a[0], (off_t)a[1]));
  } else if (!strcmp(op, "fallocate")) {
    SYS(fallocate((int)a[0], (int)a[1], (off_t)a[2], (off_t)a[3]));
  } else if (!strcmp(op, "pwrite")) { /* fd off len byte: from a kernel-side buffer */
    unsigned char *b = scratch(a[2], (int)a[3]);
    SYS(pwrite((int)a[0], b, a[2], (off_t)a[1]));
    munmap(b, a[2] ? a[2] : PAGE);
  } else if (!strcmp(op, "pwriteu")) { /* fd off len addr: from user memory of this process */
    SYS(pwrite((int)a[0], (void *)(uintptr_t)a[3], a[2], (off_t)a[1]));
  } else if (!strcmp(op, "pread")) { /* fd off len: first byte of each page read */
    unsigned char *b = scratch(a[2], 0xee);
    r = pread((int)a[0], b, a[2], (off_t)a[1]);
    res_read(o, r, b);
    munmap(b, a[2] ? a[2] : PAGE);
  } else if (!strcmp(op, "readf")) { /* fd len: read(2) at f_pos, first byte of each page */
    unsigned char *b = scratch(a[1], 0xee);
    r = read((int)a[0], b, a[1]);
    res_read(o, r, b);
    munmap(b, a[1] ? a[1] : PAGE);
  } else if (!strcmp(op, "readfu")) { /* fd len addr: read(2) at f_pos into user memory */
    SYS(read((int)a[0], (void *)(uintptr_t)a[2], a[1]));
  } else if (!strcmp(op, "writef")) { /* fd len byte: write(2) at f_pos from a kernel-side buffer */
    unsigned char *b = scratch(a[1], (int)a[2]);
    SYS(write((int)a[0], b, a[1]));
    munmap(b, a[1] ? a[1] : PAGE);
  } else if (!strcmp(op, "writefu")) { /* fd len addr: write(2) at f_pos from user memory */
    SYS(write((int)a[0], (void *)(uintptr_t)a[2], a[1]));
  } else if (!strcmp(op, "lseek")) { /* fd offset whence */
    SYS(lseek((int)a[0], (off_t)a[1], (int)a[2]));
  } else if (!strcmp(op, "fcntl")) { /* fd cmd arg */
    SYS(fcntl((int)a[0], (int)a[1], (unsigned long)a[2]));
  } else if (!strcmp(op, "reopen")) { /* fd flags: open("/proc/self/fd/<fd>") */
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", (int)a[0]);
    SYS(open(path, (int)a[1]));
  } else if (!strcmp(op, "preadu")) { /* fd off len addr: into user memory */
    SYS(pread((int)a[0], (void *)(uintptr_t)a[3], a[2], (off_t)a[1]));
  } else if (!strcmp(op, "close")) {
    SYS(close((int)a[0]));
  } else if (!strcmp(op, "pipe")) {
    int p[2];
    if (pipe2(p, O_NONBLOCK) < 0) res_errno(o, errno);
    else sb_printf(o, "{\"ret\":0,\"fds\":[%d,%d]}", p[0], p[1]);
  } else if (!strcmp(op, "vmsplice")) { /* fd addr len flags */
    struct iovec iov = {(void *)(uintptr_t)a[1], a[2]};
    SYS(vmsplice((int)a[0], &iov, 1, (unsigned)a[3]));
  } else if (!strcmp(op, "readpipe")) { /* fd len: first byte of each page */
    unsigned char *b = scratch(a[1], 0xee);
    r = read((int)a[0], b, a[1]);
    res_read(o, r, b);
    munmap(b, a[1] ? a[1] : PAGE);
  } else if (!strcmp(op, "uffd")) {
    SYS(syscall(SYS_userfaultfd, (int)a[0]));
  } else if (!strcmp(op, "api")) {
    struct uffdio_api api = {.api = a[1], .features = a[2]};
    r = ioctl((int)a[0], UFFDIO_API, &api);
    sb_printf(o, r < 0 ? "{\"err\":%d" : "{\"ret\":0", errno);
    sb_printf(o, ",\"features\":%llu,\"ioctls\":\"%llx\"}", (unsigned long long)api.features,
              (unsigned long long)api.ioctls);
  } else if (!strcmp(op, "register")) {
    struct uffdio_register reg = {.range = {a[1], a[2]}, .mode = a[3], .ioctls = 0xdead};
    r = ioctl((int)a[0], UFFDIO_REGISTER, &reg);
    sb_printf(o, r < 0 ? "{\"err\":%d" : "{\"ret\":0", errno);
    sb_printf(o, ",\"ioctls\":\"%llx\"}", (unsigned long long)reg.ioctls);
  } else if (!strcmp(op, "unregister")) {
    struct uffdio_range rg = {a[1], a[2]};
    SYS(ioctl((int)a[0], UFFDIO_UNREGISTER, &rg));
  } else if (!strcmp(op, "wake")) {
    struct uffdio_range rg = {a[1], a[2]};
    SYS(ioctl((int)a[0], UFFDIO_WAKE, &rg));
  } else if (!strcmp(op, "copy")) { /* fd dst len byte mode */
    unsigned char *b = scratch(a[2], (int)a[3]);
    struct uffdio_copy c = {.dst = a[1], .src = (uintptr_t)b, .len = a[2], .mode = a[4], .copy = 0x7eadbeef};
    r = ioctl((int)a[0], UFFDIO_COPY, &c);
    sb_printf(o, r < 0 ? "{\"err\":%d" : "{\"ret\":0", errno);
    sb_printf(o, ",\"out\":%lld}", (long long)c.copy);
    munmap(b, a[2] ? a[2] : PAGE);
  } else if (!strcmp(op, "zeropage")) {
    struct uffdio_zeropage z = {.range = {a[1], a[2]}, .mode = a[3], .zeropage = 0x7eadbeef};
    r = ioctl((int)a[0], UFFDIO_ZEROPAGE, &z);
    sb_printf(o, r < 0 ? "{\"err\":%d" : "{\"ret\":0", errno);
    sb_printf(o, ",\"out\":%lld}", (long long)z.zeropage);
  } else if (!strcmp(op, "wp")) {
    struct uffdio_writeprotect w = {.range = {a[1], a[2]}, .mode = a[3]};
    SYS(ioctl((int)a[0], UFFDIO_WRITEPROTECT, &w));
  } else if (!strcmp(op, "continue")) {
    struct uffdio_continue c = {.range = {a[1], a[2]}, .mode = a[3], .mapped = 0x7eadbeef};
    r = ioctl((int)a[0], UFFDIO_CONTINUE, &c);
    sb_printf(o, r < 0 ? "{\"err\":%d" : "{\"ret\":0", errno);
    sb_printf(o, ",\"out\":%lld}", (long long)c.mapped);
  } else if (!strcmp(op, "poison")) {
    struct c_uffdio_poison p = {.range = {a[1], a[2]}, .mode = a[3], .updated = 0x7eadbeef};
    r = ioctl((int)a[0], C_UFFDIO_POISON, &p);
    sb_printf(o, r < 0 ? "{\"err\":%d" : "{\"ret\":0", errno);
    sb_printf(o, ",\"out\":%lld}", (long long)p.updated);
  } else if (!strcmp(op, "move")) { /* fd dst src len mode */
    struct c_uffdio_move m = {.dst = a[1], .src = a[2], .len = a[3], .mode = a[4], .move = 0x7eadbeef};
    r = ioctl((int)a[0], C_UFFDIO_MOVE, &m);
    sb_printf(o, r < 0 ? "{\"err\":%d" : "{\"ret\":0", errno);
    sb_printf(o, ",\"out\":%lld}", (long long)m.move);
  } else if (!strcmp(op, "readmsg")) {
    op_readmsg(o, (int)a[0]);
  } else if (!strcmp(op, "read")) {
    op_access(o, a[0], a[1], 0, 0);
  } else if (!strcmp(op, "write")) {
    op_access(o, a[0], a[1], 1, (int)a[2]);
  } else if (!strcmp(op, "pagemap")) {
    op_pagemap(o, a[0], a[1]);
  } else if (!strcmp(op, "smaps")) {
    op_smaps(o, a[0], a[1]);
  } else if (!strcmp(op, "scan")) { /* start end flags mask anyof inverted return veclen maxpages */
    struct c_page_region vec[64];
    struct c_pm_scan_arg arg = {.size = sizeof arg, .flags = a[2], .start = a[0], .end = a[1],
                              .vec = a[7] ? (uintptr_t)vec : 0, .vec_len = a[7] > 64 ? 64 : a[7], .max_pages = a[8],
                              .category_inverted = a[5], .category_mask = a[3], .category_anyof_mask = a[4],
                              .return_mask = a[6]};
    int fd = open("/proc/self/pagemap", O_RDONLY);
    r = ioctl(fd, C_PAGEMAP_SCAN, &arg);
    int e = errno;
    close(fd);
    if (r < 0) {
      sb_printf(o, "{\"err\":%d,\"walkEnd\":%llu}", e, (unsigned long long)arg.walk_end);
    } else {
      sb_printf(o, "{\"ret\":%ld,\"walkEnd\":%llu,\"regions\":[", r, (unsigned long long)arg.walk_end);
      for (long i = 0; i < r; i++)
        sb_printf(o, "%s[%llu,%llu,%llu]", i ? "," : "", (unsigned long long)vec[i].start,
                  (unsigned long long)vec[i].end, (unsigned long long)vec[i].categories);
      sb_printf(o, "]}");
    }
  } else if (!strcmp(op, "fork")) { /* child-index */
    /*
     * The raw system call, not glibc's fork(): glibc takes its stdio and malloc locks around
     * fork, and a fork that sleeps for its UFFD_EVENT_FORK to be read would hold them while this
     * process's other threads (the worker loop) need them.
     */
    pid_t pid = (pid_t)syscall(SYS_clone, SIGCHLD, 0, NULL, NULL, 0);
    if (pid == 0) {
      /* The child: this thread becomes the child's worker (it is the child's only thread). */
      nsteps = 0;
      rings_forget();
      worker_loop((int)a[0]);
      _exit(0);
    }
    if (pid < 0) res_errno(o, errno);
    else sb_printf(o, "{\"ret\":0}");
  } else if (!strcmp(op, "pin")) {
    op_pin(o, a[0], a[1], a[2]);
  } else if (!strcmp(op, "unpin")) {
    op_unpin(o, a[0]);
  } else if (!strcmp(op, "pinio")) { /* ring write addr len byte */
    op_pinio(o, a[0], (int)a[1], a[2], a[3], (int)a[4]);
  } else if (!strcmp(op, "exit")) {
    _exit(0);
  } else {
    sb_printf(o, "{\"bad\":\"unknown op %s\"}", op);
  }
#undef SYS
}

static void *step_thread(void *arg) {
  step_t *s = arg;
  s->tid = (pid_t)syscall(SYS_gettid);
  __atomic_store_n(&s->tid_ready, 1, __ATOMIC_RELEASE);
  run_op(s);
  __atomic_store_n(&s->finished, 1, __ATOMIC_RELEASE);
  return NULL;
}

/*
 * Where a step thread may sleep for as long as the scenario leaves it there: a userfault, a
 * userfaultfd event waiting to be read, or a lock held by a thread that sleeps in one of those
 * (a second write(2) to a shmem file waits for the inode lock a first one holds while its copy
 * from user memory sleeps on a userfault). Once every thread of the process is finished or
 * asleep, a lock sleeper's holder is asleep too, so none of these states ends by itself.
 */
static const char *const STABLE_SLEEPS[] = {
    /* userfaultfd waits */
    "handle_userfault", "userfaultfd_event_wait_completion",
    /* the shmem inode lock (wchan names the caller of the rwsem slow path): write, truncate,
     * fallocate (and MADV_REMOVE through it), seals, SEEK_DATA/SEEK_HOLE */
    "shmem_file_write_iter", "do_truncate", "shmem_fallocate", "vfs_fallocate", "memfd_add_seals", "memfd_fcntl",
    "shmem_file_llseek",
    /* f_pos_lock (fs/file.c:fdget_pos()): read/write/lseek of an FMODE_ATOMIC_POS file behind a
     * write(2) that sleeps on a userfault */
    "fdget_pos", "__fdget_pos", "file_pos_lock",
    NULL,
};

/*
 * Sleeps on a lock that names no caller: a userfault-blocked thread may hold such a lock, but so
 * may a kernel thread for a moment (khugepaged and reclaim take a process's mmap_lock and folio
 * locks), so a thread seen here counts as settled only once the whole process has stayed settled
 * for SETTLE_ROUNDS checks in a row.
 */
static const char *const LOCK_SLEEPS[] = {
    "rwsem_down_write_slowpath", "rwsem_down_read_slowpath", "__mutex_lock", "mutex_lock", "folio_wait_bit_common",
    "__folio_lock", NULL,
};
#define SETTLE_ROUNDS 200

/* 1 when the thread sleeps in one of STABLE_SLEEPS (see the header), 2 in one of LOCK_SLEEPS, 0 while it may still run. */
static int asleep_in_uffd(pid_t tid, char *wchan, size_t cap) {
  char path[64];
  snprintf(path, sizeof path, "/proc/self/task/%d/wchan", tid);
  int fd = open(path, O_RDONLY);
  wchan[0] = 0;
  if (fd < 0) return 0;
  ssize_t n = read(fd, wchan, cap - 1);
  close(fd);
  if (n <= 0) return 0;
  wchan[n] = 0;
  for (int i = 0; STABLE_SLEEPS[i]; i++)
    if (!strcmp(wchan, STABLE_SLEEPS[i])) return 1;
  for (int i = 0; LOCK_SLEEPS[i]; i++)
    if (!strcmp(wchan, LOCK_SLEEPS[i])) return 2;
  return 0;
}

static char unsettled_wchan[64];

/*
 * Waits until every step thread of this process has finished or sleeps on a userfaultfd.
 *
 * One check reads the threads one after another, so it is a consistent picture only if no
 * thread changed state in between in a way a later read cannot see. A step that wakes another
 * thread (UFFDIO_WAKE, UFFDIO_COPY, ...) does so inside its syscall, before it sets its
 * finished flag; if the check read the sleeper's wchan first and that step's flag afterwards,
 * it would see the sleeper asleep and the waker finished, and report the woken thread as
 * blocked. So every finished flag is read once, before any wchan: a step seen finished then
 * woke its threads before they are looked at (they read as running, "0", until they finish or
 * sleep again), and a step that finishes later reads as running, which makes the check busy.
 */
static int settle(void) {
  struct timespec ts = {0, 20000};
  int rounds = 0; /* consecutive settled checks while some thread sleeps in LOCK_SLEEPS */
  static char fin[MAXT];
  /* Each turn sleeps at least 20 us, so this cap is 10 s or more: a stuck step is a runner bug
   * (or Linux's MADV_GUARD_INSTALL livelock), reported with "settled":0, never as blocked. */
  for (long spins = 0; spins < 500000; spins++) {
    int busy = 0, lock = 0;
    for (int i = 0; i < nsteps; i++) fin[i] = (char)(steps[i]->reported || __atomic_load_n(&steps[i]->finished, __ATOMIC_ACQUIRE));
    for (int i = 0; i < nsteps; i++) {
      step_t *s = steps[i];
      if (fin[i]) continue;
      int a = __atomic_load_n(&s->tid_ready, __ATOMIC_ACQUIRE) ? asleep_in_uffd(s->tid, unsettled_wchan, sizeof unsettled_wchan) : 0;
      if (a == 0) {
        busy = 1;
        break;
      }
      if (a == 2) lock = 1;
    }
    if (busy) rounds = 0;
    else if (!lock || ++rounds >= SETTLE_ROUNDS) return 1;
    nanosleep(&ts, NULL);
  }
  return 0;
}

/* Appends the steps that finished since the last report: ,{"id":..,"r":..}... */
static void report_done(sbuf *o, long except) {
  for (int i = 0; i < nsteps; i++) {
    step_t *s = steps[i];
    if (s->reported || s->id == except || !__atomic_load_n(&s->finished, __ATOMIC_ACQUIRE)) continue;
    sb_printf(o, "{\"id\":%ld,\"r\":%s},", s->id, s->out.buf);
    s->reported = 1;
    pthread_join(s->th, NULL);
  }
}

static ssize_t read_line(int fd, char *buf, size_t cap) {
  size_t n = 0;
  while (n + 1 < cap) {
    ssize_t r = read(fd, buf + n, 1);
    if (r <= 0) return r < 0 ? -1 : (ssize_t)(n ? (ssize_t)n : -1);
    if (buf[n] == '\n') break;
    n++;
  }
  buf[n] = 0;
  return (ssize_t)n;
}

static void write_all(int fd, const char *b, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, b, n);
    if (w <= 0) {
      if (w < 0 && errno == EINTR) continue;
      _exit(3);
    }
    b += w;
    n -= (size_t)w;
  }
}

/*
 * A worker: "S" settles and reports finished steps; "<id> <op> <args>" runs a step on a new
 * thread, settles, and answers {"r":...,"done":[...]} where r is the step's result or blocked.
 */
static void worker_loop(int k) {
  my_index = k;
  char line[1024];
  for (;;) {
    if (read_line(cmd_fd[k][0], line, sizeof line) < 0) _exit(0);
    sbuf o;
    sb_init(&o);
    if (line[0] == 'S') {
      int ok = settle();
      sb_printf(&o, "{\"settled\":%d,\"done\":[", ok);
      report_done(&o, -1);
      if (o.buf[o.len - 1] == ',') o.len--;
      sb_printf(&o, "]}\n");
      write_all(res_fd[k][1], o.buf, o.len);
      free(o.buf);
      continue;
    }
    step_t *s = calloc(1, sizeof *s);
    char *save, *tok = strtok_r(line, " ", &save);
    s->id = strtol(tok, NULL, 0);
    tok = strtok_r(NULL, " ", &save);
    snprintf(s->op, sizeof s->op, "%s", tok ? tok : "");
    while ((tok = strtok_r(NULL, " ", &save)) && s->nargs < MAXARGS) s->a[s->nargs++] = strtoull(tok, NULL, 0);
    sb_init(&s->out);
    if (nsteps == MAXT) _exit(4);
    steps[nsteps++] = s;
    if (!strcmp(s->op, "exit")) {
      /* Answer first: the process is gone once it exits. */
      rings_release();
      sb_printf(&o, "{\"r\":{\"ret\":0},\"done\":[],\"pid\":%d}\n", (int)getpid());
      write_all(res_fd[k][1], o.buf, o.len);
      _exit(0);
    }
    pthread_create(&s->th, NULL, step_thread, s);
    int ok = settle();
    if (!__atomic_load_n(&s->finished, __ATOMIC_ACQUIRE)) sb_printf(&o, "{\"r\":{\"blocked\":1},\"done\":[");
    else {
      sb_printf(&o, "{\"r\":%s,\"done\":[", s->out.buf);
      s->reported = 1;
      pthread_join(s->th, NULL);
    }
    report_done(&o, s->id);
    if (o.buf[o.len - 1] == ',') o.len--;
    sb_printf(&o, "],\"settled\":%d,\"wchan\":\"%s\"}\n", ok, ok ? "" : unsettled_wchan);
    write_all(res_fd[k][1], o.buf, o.len);
    free(o.buf);
  }
}

/* ---- the controller ---------------------------------------------------------------------- */

static pid_t worker_pid0;
static int live[MAXP];

static void make_pipes(void) {
  for (int k = 0; k < MAXP; k++) {
    if (pipe(cmd_fd[k]) < 0 || pipe(res_fd[k]) < 0) {
      perror("pipe");
      exit(2);
    }
  }
}

static void close_pipes(void) {
  for (int k = 0; k < MAXP; k++) {
    close(cmd_fd[k][0]);
    close(cmd_fd[k][1]);
    close(res_fd[k][0]);
    close(res_fd[k][1]);
  }
}

static void start_world(void) {
  make_pipes();
  memset(live, 0, sizeof live);
  worker_pid0 = fork();
  if (worker_pid0 == 0) {
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    /* Only the controller writes commands and reads answers: when it goes, every worker's
     * command pipe reads EOF and the worker exits. */
    for (int k = 0; k < MAXP; k++) {
      close(cmd_fd[k][1]);
      close(res_fd[k][0]);
    }
    rings_init();
    worker_loop(0);
    _exit(0);
  }
  setpgid(worker_pid0, worker_pid0);
  live[0] = 1;
}

/* Kills every scenario process: they all share worker 0's process group, and as a child
 * subreaper the controller reaps the ones whose parents die first. */
static void kill_world(void) {
  kill(-worker_pid0, SIGKILL);
  while (waitpid(-1, NULL, 0) > 0 || errno == EINTR) {
  }
}

/* SIGINT, SIGTERM, SIGHUP (and SIGTERM when the driver dies): kill the scenario processes, then
 * turn the harness's swap off and remove its zram device before exiting. */
static void on_stop(int sig) {
  if (getpid() != controller_pid) { /* a worker inherited the handler: just go */
    signal(sig, SIG_DFL);
    raise(sig);
    return;
  }
  if (worker_pid0 > 0) kill(-worker_pid0, SIGKILL);
  while (waitpid(-1, NULL, 0) > 0 || errno == EINTR) {
  }
  swap_teardown();
  _exit(128 + sig);
}

static void host_info(void) {
  /* What the comparer needs to know about this kernel; the zero-page probe is the host quirk. */
  char *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  volatile char c = p[0];
  (void)c;
  int pm = open("/proc/self/pagemap", O_RDONLY), kf = open("/proc/kpageflags", O_RDONLY);
  int ok;
  uint64_t e = pm >= 0 ? read_u64(pm, (uintptr_t)p / PAGE, &ok) : 0;
  uint64_t flags = kf >= 0 ? read_u64(kf, e & ((1ULL << 55) - 1), &ok) : 0;
  int zero = (flags >> 24) & 1;
  if (pm >= 0) close(pm);
  if (kf >= 0) close(kf);
  munmap(p, PAGE);
  int cpu = sched_getcpu();
  /* io_uring may be disabled (kernel.io_uring_disabled) or filtered: pin steps need it. */
  struct io_uring_params up;
  memset(&up, 0, sizeof up);
  int ufd = (int)syscall(SYS_io_uring_setup, 1, &up);
  int uerr = ufd < 0 ? errno : 0;
  if (ufd >= 0) close(ufd);
  /* Swap devices active now, read while no other runner may have its own on (the shared turn). */
  swap_lock(0);
  sbuf sw;
  sb_init(&sw);
  foreign_swaps(&sw);
  int zram = access("/sys/class/zram-control/hot_add", R_OK) == 0;
  printf("{\"host\":1,\"readFaultMapsZeroPage\":%d,\"kpageflagsReadable\":%d,\"cpu\":%d,\"ioUringErrno\":%d,\"swaps\":%s,\"zram\":%d}\n", zero,
         kf >= 0, cpu, uerr, sw.buf, zram);
  free(sw.buf);
  fflush(stdout);
}

int main(int argc, char **argv) {
  (void)argc;
  (void)argv;
  setvbuf(stdout, NULL, _IOFBF, OUTSZ);
  /* One CPU for everything: the controller, the workers and their threads. */
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    int first = -1;
    for (int c = 0; c < CPU_SETSIZE; c++)
      if (CPU_ISSET(c, &set)) {
        first = c;
        break;
      }
    const char *pin = getenv("UFFD_CONFORM_CPU");
    if (pin && *pin) first = atoi(pin);
    CPU_ZERO(&set);
    CPU_SET(first, &set);
    sched_setaffinity(0, sizeof set, &set);
  }
  prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  /* The driver went away: so do we (and, by EOF, the workers), after removing our swap device. */
  controller_pid = getpid();
  struct sigaction st;
  memset(&st, 0, sizeof st);
  st.sa_handler = on_stop;
  sigaction(SIGINT, &st, NULL);
  sigaction(SIGTERM, &st, NULL);
  sigaction(SIGHUP, &st, NULL);
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_fault;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigaction(SIGSEGV, &sa, NULL);
  sigaction(SIGBUS, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  host_info();
  start_world();
  char line[1024];
  while (read_line(0, line, sizeof line) >= 0) {
    if (!strcmp(line, "END")) { /* tear everything down, then report /proc/swaps (in the shared turn) */
      kill_world();
      swap_teardown();
      swap_unlock();
      swap_lock(0);
      sbuf r;
      sb_init(&r);
      sb_printf(&r, "{\"end\":1,\"zram\":%d,\"swaps\":", zram_id);
      foreign_swaps(&r);
      sb_printf(&r, "}\n");
      fputs(r.buf, stdout);
      fflush(stdout);
      swap_unlock();
      return 0;
    }
    if (!strncmp(line, "RESET", 5)) { /* RESET [swap]: a fresh world, with the harness's zram swap on or none */
      int want = !strcmp(line, "RESET swap");
      kill_world();
      close_pipes();
      swap_down();
      swap_unlock();
      swap_lock(want);
      char why[160];
      const char *noswap = want ? swap_up(why, sizeof why) : NULL;
      if (noswap) { /* no swap for this scenario after all: take the shared turn */
        swap_unlock();
        swap_lock(0);
      }
      sbuf r;
      sb_init(&r);
      sb_printf(&r, "{\"reset\":1,\"swap\":%d,\"foreign\":", swap_on);
      foreign_swaps(&r);
      if (noswap) {
        sb_printf(&r, ",\"noswap\":\"");
        for (const char *c = noswap; *c; c++) sb_printf(&r, (*c == '"' || *c == '\\') ? "\\%c" : "%c", *c);
        sb_printf(&r, "\"");
      }
      sb_printf(&r, "}\n");
      start_world();
      fputs(r.buf, stdout);
      fflush(stdout);
      free(r.buf);
      continue;
    }
    if (!strncmp(line, "LIVE ", 5)) { /* a fork step finished: its child now reads its pipe */
      int c = atoi(line + 5);
      if (c > 0 && c < MAXP) live[c] = 1;
      printf("{\"live\":%d}\n", c);
      fflush(stdout);
      continue;
    }
    /* <id> <proc> <op> <args> */
    char *save, *idtok = strtok_r(line, " ", &save), *ptok = strtok_r(NULL, " ", &save);
    char *rest = save;
    if (!idtok || !ptok || !rest) continue;
    long id = strtol(idtok, NULL, 0);
    int k = atoi(ptok);
    char reply[OUTSZ];
    sbuf out;
    sb_init(&out);
    sb_printf(&out, "{\"id\":%ld", id);
    if (k < 0 || k >= MAXP || !live[k]) {
      sb_printf(&out, ",\"r\":{\"bad\":\"no process %d\"},\"done\":[]}\n", k);
    } else {
      char cmd[1100];
      int n = snprintf(cmd, sizeof cmd, "%ld %s\n", id, rest);
      write_all(cmd_fd[k][1], cmd, (size_t)n);
      if (read_line(res_fd[k][0], reply, sizeof reply) < 0) {
        live[k] = 0;
        sb_printf(&out, ",\"r\":{\"bad\":\"process %d died\"},\"done\":[]}\n", k);
      } else {
        int exit_pending = 0;
        if (!strncmp(rest, "exit", 4)) {
          live[k] = 0;
          /* The worker answered before exiting: wait until the process is gone (a pidfd reads
           * ready once the whole thread group has exited, after exit_mm() tore the mm down), so
           * the next step sees the exit's effects (mapcounts, freed frames). The cap only guards
           * against a runner bug: a process still there after it is reported as never settled,
           * so the scenario fails with that message instead of going on without the exit's
           * effects. */
          char *pp = strstr(reply, "\"pid\":");
          if (pp) {
            int fd = (int)syscall(434 /* SYS_pidfd_open */, atoi(pp + 6), 0);
            if (fd >= 0) {
              struct pollfd pfd = {.fd = fd, .events = POLLIN};
              int pr;
              while ((pr = poll(&pfd, 1, 10000)) < 0 && errno == EINTR) {}
              exit_pending = pr == 0;
              close(fd);
            }
          }
        }
        /* reply is {"r":...,"done":[...],"settled":n}: splice it after the id. */
        sb_printf(&out, ",%s", reply + 1);
        out.len--; /* drop the closing brace */
        if (exit_pending) sb_printf(&out, ",\"settled\":0,\"wchan\":\"exit: process %d still there after 10 s\"", k);
        /* settle every other live process and collect their finished steps */
        for (int j = 0; j < MAXP; j++) {
          if (j == k || !live[j]) continue;
          write_all(cmd_fd[j][1], "S\n", 2);
          if (read_line(res_fd[j][0], reply, sizeof reply) < 0) {
            live[j] = 0;
            continue;
          }
          sb_printf(&out, ",\"p%d\":%s", j, reply);
        }
        sb_printf(&out, "}\n");
      }
    }
    fputs(out.buf, stdout);
    fflush(stdout);
    free(out.buf);
  }
  kill_world();
  swap_teardown();
  swap_unlock();
  return 0;
}
