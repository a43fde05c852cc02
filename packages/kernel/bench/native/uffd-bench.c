/*
 * uffd-bench: the real-kernel half of `npm run bench`.
 *
 * Measures on the running Linux kernel the same operations the simulator is benchmarked on, and
 * prints ONE JSON object on stdout (native.ts compiles this file with `cc -O2 -pthread`, runs it and
 * parses that object). Nothing else is written to stdout; diagnostics go to stderr.
 *
 * Methodology
 * -----------
 * - Every metric is a series of RUNS. A run performs `opsPerRun` operations back to back and is
 *   timed as a whole with clock_gettime(CLOCK_MONOTONIC); its cost is elapsed / opsPerRun ns/op.
 *   WARMUP runs come first and are discarded (they fault in code, page tables, the slab caches and
 *   the source buffers). The reported `nsPerOp` is the MEDIAN of the runs' ns/op (robust to a
 *   preempted run), `opsPerSec` = 1e9 / nsPerOp, and the fastest/slowest run are reported as
 *   minNsPerOp/maxNsPerOp to show the spread. Default: 2 warm-up runs + 7 runs; with
 *   UFFD_BENCH_QUICK=1: 1 + 5 runs and 8x fewer operations per run (about a second for all).
 * - The work that resets state between runs (mmap/munmap, MADV_DONTNEED, re-protecting,
 *   re-dirtying) stays outside the timed section, so every run measures the same transition.
 * - All anonymous regions get MADV_NOHUGEPAGE so every page is a 4 KiB pte (no THP, no mTHP):
 *   the numbers are per-pte costs, like the simulator's.
 *
 * What each number measures (ids as in the JSON `results` object)
 * - nullSyscall: syscall(SYS_getppid), the cheapest round trip into the kernel and back.
 * - pipePingPong: one byte written to a pipe and answered on another by a second thread, both
 *   pinned to the same CPU: two writes, two reads and two context switches per op.
 *   (These two and anonFault are the host's micro-costs: on a virtualised host they can be
 *   several times a bare-metal machine's, and every real-kernel figure with them.)
 * - memcpy4k / memcpy2m: memcpy() of a 4 KiB / 2 MiB buffer between two already-faulted buffers
 *   (both cache-warm: the same 2 MiB every time). The physical floor of any "copy a page" operation.
 * - memcpyStream2m: memcpy() of a 2 MiB source into successive 2 MiB windows of a 64 MiB
 *   resident destination (32 copies per run, as uffdCopy2m fills 32 windows): a streaming copy
 *   into memory that is present but not in the caches, the floor of UFFDIO_COPY of 2 MiB.
 * - anonFault: one write to each page of a fresh private anonymous mapping (mmap per run):
 *   one do_anonymous_page() = page allocation + zeroing + pte install, seen from user space, on
 *   a new mapping (new page tables): the cold case, and the host's first-touch fault cost.
 * - anonFaultWarm: the same writes to a mapping whose pages were dropped with MADV_DONTNEED
 *   (untimed) after a first touch: page tables in place, freed pages back in the allocator.
 * - pagemapRead: one pread() of /proc/self/pagemap covering a populated 256 MiB private anon
 *   mapping (65536 entries of 8 bytes); one op = one page's entry.
 * - fork64m: the parent's fork() call with a 64 MiB private anonymous region whose 16384 pages
 *   are present, dirty and exclusive (they are re-dirtied, untimed, before every fork so each
 *   fork copies the same state); forkExitWait64m: fork() + the child's immediate _exit(0) +
 *   the parent's waitpid(), i.e. also the child's teardown of the shared ptes.
 * - uffdCopy4k / uffdCopy2m: ioctl(UFFDIO_COPY) of 4 KiB / 2 MiB into a MISSING-registered
 *   anonymous region with nobody faulting (mode 0; the wake finds no waiter). Throughput of the
 *   fill path (allocation + copy + pte install). MADV_DONTNEED (untimed) empties the region.
 * - uffdMove4k: ioctl(UFFDIO_MOVE) of one present, exclusive 4 KiB page (mode 0) between two
 *   halves of one registered anonymous mapping; runs alternate the direction.
 * - wpToggle4k / wpToggle2m: UFFDIO_WRITEPROTECT (mode WP) then UFFDIO_WRITEPROTECT (mode 0)
 *   of one present page / of a 2 MiB range of 512 present pages; one op = the pair.
 * - rt*: userfaultfd round trips, batch size 1. A handler thread loops on a BLOCKING read() of
 *   one struct uffd_msg (no poll: the fastest path) and resolves each fault with one ioctl that
 *   also wakes the faulting thread; the main thread is the faulting thread and times its loop of
 *   one access per page. One op = fault -> message -> read -> ioctl -> wake -> access retried.
 *     rtMissingCopy*:     write to a missing anon page, resolved by UFFDIO_COPY of 4 KiB.
 *     rtMissingZeropage*: read of a missing anon page, resolved by UFFDIO_ZEROPAGE.
 *     rtWpUnprotect*:     write to a present, uffd-write-protected anon page, resolved by
 *                         UFFDIO_WRITEPROTECT mode 0 (the retried write needs no further fault).
 *     rtMinorContinue*:   read of a memfd (shmem) page that is in the page cache but not mapped
 *                         (MINOR mode), resolved by UFFDIO_CONTINUE.
 *   *Pinned: both threads are bound with sched_setaffinity() to the same CPU (every round trip
 *   is two context switches on one CPU). *Unpinned: both keep the process's CPU mask and the
 *   scheduler places them (see crossCpuRatio: wake-affine placement tends to pull the pair onto
 *   one CPU within a few round trips, so unpinned is often close to pinned). 5000 pages per run.
 *   Between runs the pages are made to fault again untimed (MADV_DONTNEED, or re-protecting).
 *   The handler thread exits after resolving a fault on a sentinel page past the timed pages.
 *   rtMissingCopyBatched: the shape of the simulator's "SDK fastest path": 32 faulting threads
 *   (each touching its own slice of 4992 pages) and one handler that reads up to 64 messages per
 *   read() and resolves each with UFFDIO_COPY, every thread pinned to the same CPU. One op = one
 *   fault served; a run is timed from releasing the 32 threads until the last has finished.
 *   rtMissingCopySplit: missing+copy with the faulting thread on the first allowed CPU and the
 *   handler pinned to the second one (host.pinCpu / host.splitCpu): every wake crosses CPUs
 *   and usually has to wake an idle CPU (slow, above all in a VM), so only 400 pages per run.
 *   crossCpuRatio: the share of faults (warm-up runs included) that the handler read on another
 *   CPU than the one the faulting thread last ran on (sched_getcpu(), a few ns per access, paid
 *   in both modes). Pinned is 0 by construction; unpinned shows where the scheduler put the pair
 *   (wake-affine scheduling usually pulls them onto one CPU after a few round trips).
 *
 * Selection: `uffd-bench ID...` measures only the named metrics (the JSON then says
 * "partial":true and lists only those); the bench driver runs one metric per process so that the
 * real kernel's rows alternate with the simulator's, each in several fresh processes.
 *
 * Availability
 * - The userfaultfd is created with userfaultfd(2); if that fails, through /dev/userfaultfd
 *   (USERFAULTFD_IOC_NEW); if that fails too, with userfaultfd(UFFD_USER_MODE_ONLY) (all faults
 *   measured here are user-mode faults). If none works the program prints
 *   {"available":false,"kind":"no-userfaultfd","reason":...} and exits with status 3.
 * - A metric whose kernel feature is missing (MINOR_SHMEM, MOVE, PAGEFAULT_FLAG_WP) is listed
 *   under `skipped` with the reason instead of `results`.
 * - Any unexpected failure prints {"available":false,"kind":"failed","reason":...} and exits
 *   with status 1 (never a half-written JSON object).
 *
 * The constants that older system headers lack (UFFDIO_MOVE, USERFAULTFD_IOC_NEW, ...) are
 * defined here under BENCH_* names with the values of include/uapi/linux/userfaultfd.h.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BENCH_UFFD_USER_MODE_ONLY 1
#define BENCH_USERFAULTFD_IOC_NEW _IO(UFFDIO, 0x00)
#define BENCH_UFFD_FEATURE_MOVE (1ULL << 16)
struct bench_uffdio_move {
	uint64_t dst;
	uint64_t src;
	uint64_t len;
	uint64_t mode;
	int64_t move;
};
#define BENCH_UFFDIO_MOVE _IOWR(UFFDIO, 0x05, struct bench_uffdio_move)

#define MIB (1024UL * 1024UL)
#define MAX_RUNS 32
#define MAX_METRICS 40
#define MAX_SKIPPED 16

enum uffd_source { SRC_SYSCALL, SRC_DEV, SRC_SYSCALL_UMO };
static const char *const uffd_source_names[] = { "syscall", "dev", "syscall-umo" };

struct metric {
	const char *id;
	double median, min, max; /* ns per op */
	int runs;
	long ops_per_run;
	long bytes_per_op; /* 0 when not a copy */
	double cross_cpu;  /* round trips: share of faults handled on another CPU; < 0: n/a */
};

struct skip {
	const char *id;
	const char *reason;
};

/* Everything the run decides or produces; passed explicitly, no global mutable state. */
struct bench {
	int quick;
	int warmup, runs;
	long page;
	enum uffd_source source;
	uint64_t features; /* UFFDIO_API answer to features = 0 */
	cpu_set_t orig_cpus;
	int pin_cpu;   /* the first allowed CPU */
	int other_cpu; /* the second allowed CPU, -1 if there is only one */
	struct metric metrics[MAX_METRICS];
	int nmetrics;
	struct skip skipped[MAX_SKIPPED];
	int nskipped;
	char **only; /* metric ids named on the command line; NULL: all */
	int nonly;
};

/* Whether this run measures metric `id` (every metric unless some were named). */
static int want(const struct bench *b, const char *id)
{
	if (!b->only)
		return 1;
	for (int i = 0; i < b->nonly; i++)
		if (!strcmp(b->only[i], id))
			return 1;
	return 0;
}

/* ---------------------------------------------------------------- output helpers */

static void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

/* Prints {"available":false,...} and ends the process: no half-written JSON ever reaches stdout. */
static void __attribute__((noreturn, format(printf, 3, 4)))
bail(int status, const char *kind, const char *fmt, ...)
{
	char reason[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	fprintf(stderr, "uffd-bench: %s\n", reason);
	fprintf(stdout, "{\"available\":false,\"kind\":\"%s\",\"reason\":", kind);
	json_string(stdout, reason);
	fputs("}\n", stdout);
	fflush(stdout);
	_exit(status);
}

#define FAIL(...) bail(1, "failed", __VA_ARGS__)

/* ---------------------------------------------------------------- small utilities */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Keeps the compiler from eliding or sinking a memcpy/store whose result is never read. */
static inline void clobber(void *p)
{
	__asm__ volatile("" : : "r"(p) : "memory");
}

static char *map_anon(size_t len)
{
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		FAIL("mmap(%zu) anonymous: %s", len, strerror(errno));
	if (madvise(p, len, MADV_NOHUGEPAGE))
		FAIL("madvise(MADV_NOHUGEPAGE): %s", strerror(errno));
	return p;
}

static void unmap(void *p, size_t len)
{
	if (munmap(p, len))
		FAIL("munmap: %s", strerror(errno));
}

static void dontneed(void *p, size_t len)
{
	if (madvise(p, len, MADV_DONTNEED))
		FAIL("madvise(MADV_DONTNEED): %s", strerror(errno));
}

static void touch_write(char *base, long npages, long page)
{
	for (long i = 0; i < npages; i++)
		((volatile char *)base)[i * page] = (char)i;
}

static void pin_self(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		FAIL("sched_setaffinity(cpu %d): %s", cpu, strerror(errno));
}

static void unpin_self(const struct bench *b)
{
	if (sched_setaffinity(0, sizeof(b->orig_cpus), &b->orig_cpus))
		FAIL("sched_setaffinity(restore): %s", strerror(errno));
}

/* ---------------------------------------------------------------- statistics */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Records one metric from per-run ns/op samples: median, fastest and slowest run. */
static void record(struct bench *b, const char *id, double *ns_per_op, int n, long ops_per_run,
		   long bytes_per_op)
{
	struct metric *m;

	if (!want(b, id))
		return;
	if (b->nmetrics == MAX_METRICS)
		FAIL("too many metrics");
	qsort(ns_per_op, (size_t)n, sizeof(double), cmp_double);
	m = &b->metrics[b->nmetrics++];
	m->id = id;
	m->median = n % 2 ? ns_per_op[n / 2] : (ns_per_op[n / 2 - 1] + ns_per_op[n / 2]) / 2;
	m->min = ns_per_op[0];
	m->max = ns_per_op[n - 1];
	m->runs = n;
	m->ops_per_run = ops_per_run;
	m->bytes_per_op = bytes_per_op;
	m->cross_cpu = -1;
}

static void skip(struct bench *b, const char *id, const char *reason)
{
	if (!want(b, id))
		return;
	if (b->nskipped == MAX_SKIPPED)
		FAIL("too many skipped metrics");
	b->skipped[b->nskipped].id = id;
	b->skipped[b->nskipped].reason = reason;
	b->nskipped++;
}

/* A timed run: does its untimed preparation itself and returns the timed nanoseconds. */
typedef uint64_t (*run_fn)(struct bench *b, void *state);

static void measure(struct bench *b, const char *id, run_fn run, void *state, long ops_per_run,
		    long bytes_per_op)
{
	double samples[MAX_RUNS];

	if (!want(b, id))
		return;
	for (int i = 0; i < b->warmup; i++)
		run(b, state);
	for (int i = 0; i < b->runs; i++)
		samples[i] = (double)run(b, state) / (double)ops_per_run;
	record(b, id, samples, b->runs, ops_per_run, bytes_per_op);
}

/* Iteration counts: full size, or 8x fewer in quick mode (never below 1). */
static long scaled(const struct bench *b, long full)
{
	long n = b->quick ? full / 8 : full;

	return n > 0 ? n : 1;
}

/* ---------------------------------------------------------------- userfaultfd setup */

/* The errno names a failed userfaultfd creation can produce (strerrorname_np is glibc >= 2.32). */
static const char *errno_name(int err)
{
	switch (err) {
	case EPERM: return "EPERM";
	case EACCES: return "EACCES";
	case ENOENT: return "ENOENT";
	case ENOSYS: return "ENOSYS";
	case EINVAL: return "EINVAL";
	case ENODEV: return "ENODEV";
	case ENOMEM: return "ENOMEM";
	case EMFILE: return "EMFILE";
	case ENFILE: return "ENFILE";
	default: return strerror(err);
	}
}

static int uffd_create(enum uffd_source source)
{
	int devfd, fd;

	switch (source) {
	case SRC_SYSCALL:
		return (int)syscall(__NR_userfaultfd, O_CLOEXEC);
	case SRC_SYSCALL_UMO:
		return (int)syscall(__NR_userfaultfd, O_CLOEXEC | BENCH_UFFD_USER_MODE_ONLY);
	case SRC_DEV:
		devfd = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
		if (devfd < 0)
			return -1;
		fd = ioctl(devfd, BENCH_USERFAULTFD_IOC_NEW, O_CLOEXEC);
		close(devfd);
		return fd;
	}
	return -1;
}

/* Finds a way to create a userfaultfd and the features the kernel offers; bails if there is none. */
static void uffd_probe(struct bench *b)
{
	static const enum uffd_source order[] = { SRC_SYSCALL, SRC_DEV, SRC_SYSCALL_UMO };
	int errs[3];
	struct uffdio_api api = { .api = UFFD_API, .features = 0 };
	int fd = -1;

	for (int i = 0; i < 3 && fd < 0; i++) {
		fd = uffd_create(order[i]);
		errs[i] = fd < 0 ? errno : 0;
		b->source = order[i];
	}
	if (fd < 0)
		bail(3, "no-userfaultfd",
		     "userfaultfd unavailable: userfaultfd(2) failed with %s, /dev/userfaultfd "
		     "(USERFAULTFD_IOC_NEW) failed with %s, userfaultfd(UFFD_USER_MODE_ONLY) "
		     "failed with %s",
		     errno_name(errs[0]), errno_name(errs[1]), errno_name(errs[2]));
	if (ioctl(fd, UFFDIO_API, &api))
		bail(3, "no-userfaultfd", "userfaultfd unavailable: UFFDIO_API failed with %s",
		     strerror(errno));
	b->features = api.features;
	close(fd);
}

/* A new userfaultfd (blocking reads) with the requested features enabled. */
static int uffd_open(const struct bench *b, uint64_t features)
{
	struct uffdio_api api = { .api = UFFD_API, .features = features };
	int fd = uffd_create(b->source);

	if (fd < 0)
		FAIL("userfaultfd (%s): %s", uffd_source_names[b->source], strerror(errno));
	if (ioctl(fd, UFFDIO_API, &api))
		FAIL("UFFDIO_API(features 0x%llx): %s", (unsigned long long)features, strerror(errno));
	return fd;
}

static void uffd_register(int uffd, void *addr, size_t len, uint64_t mode)
{
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)addr, .len = len },
		.mode = mode,
	};

	if (ioctl(uffd, UFFDIO_REGISTER, &reg))
		FAIL("UFFDIO_REGISTER(mode %llu): %s", (unsigned long long)mode, strerror(errno));
}

static void uffd_wp(int uffd, void *addr, size_t len, int protect)
{
	struct uffdio_writeprotect wp = {
		.range = { .start = (uintptr_t)addr, .len = len },
		.mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};

	if (ioctl(uffd, UFFDIO_WRITEPROTECT, &wp))
		FAIL("UFFDIO_WRITEPROTECT(%s): %s", protect ? "WP" : "0", strerror(errno));
}

static void uffd_copy(int uffd, void *dst, const void *src, size_t len)
{
	struct uffdio_copy copy = {
		.dst = (uintptr_t)dst, .src = (uintptr_t)src, .len = len, .mode = 0,
	};

	if (ioctl(uffd, UFFDIO_COPY, &copy) || copy.copy != (int64_t)len)
		FAIL("UFFDIO_COPY(%zu): %s (copy=%lld)", len, strerror(errno), (long long)copy.copy);
}

/* ---------------------------------------------------------------- memcpy */

struct memcpy_state {
	char *src, *dst;
	size_t len;
	long ops;
};

static uint64_t memcpy_run(struct bench *b, void *p)
{
	struct memcpy_state *s = p;
	uint64_t t0 = now_ns();

	(void)b;
	for (long i = 0; i < s->ops; i++) {
		memcpy(s->dst, s->src, s->len);
		clobber(s->dst);
	}
	return now_ns() - t0;
}

static void bench_memcpy(struct bench *b, const char *id, size_t len, long ops)
{
	struct memcpy_state s = { .len = len, .ops = ops };

	if (!want(b, id))
		return;
	s.src = map_anon(len);
	s.dst = map_anon(len);

	memset(s.src, 0x5a, len);
	memset(s.dst, 0, len);
	measure(b, id, memcpy_run, &s, ops, (long)len);
	unmap(s.src, len);
	unmap(s.dst, len);
}

/* Streaming: a 2 MiB source into successive windows of a resident 64 MiB destination. */
struct stream_state {
	char *src, *dst;
	size_t chunk, len;
	long ops;
};

static uint64_t stream_run(struct bench *b, void *p)
{
	struct stream_state *s = p;
	uint64_t t0 = now_ns();

	(void)b;
	for (long i = 0; i < s->ops; i++) {
		memcpy(s->dst + ((size_t)i * s->chunk) % s->len, s->src, s->chunk);
		clobber(s->dst);
	}
	return now_ns() - t0;
}

static void bench_memcpy_stream(struct bench *b)
{
	struct stream_state s = { .chunk = 2 * MIB, .len = 64 * MIB, .ops = scaled(b, 32) };

	if (!want(b, "memcpyStream2m"))
		return;
	s.src = map_anon(s.chunk);
	s.dst = map_anon(s.len);
	memset(s.src, 0x5a, s.chunk);
	memset(s.dst, 0, s.len);
	measure(b, "memcpyStream2m", stream_run, &s, s.ops, (long)s.chunk);
	unmap(s.src, s.chunk);
	unmap(s.dst, s.len);
}

/* ---------------------------------------------------------------- host micro-costs */

static uint64_t null_syscall_run(struct bench *b, void *p)
{
	long n = *(long *)p;
	uint64_t t0 = now_ns();

	(void)b;
	for (long i = 0; i < n; i++)
		syscall(SYS_getppid);
	return now_ns() - t0;
}

struct pingpong_state {
	int to_peer[2], from_peer[2];
	int cpu;
	long ops;
};

static void *pingpong_peer(void *p)
{
	struct pingpong_state *s = p;
	char c;

	pin_self(s->cpu);
	while (read(s->to_peer[0], &c, 1) == 1)
		if (write(s->from_peer[1], &c, 1) != 1)
			break;
	return NULL;
}

static uint64_t pingpong_run(struct bench *b, void *p)
{
	struct pingpong_state *s = p;
	char c = 'x';
	uint64_t t0 = now_ns();

	(void)b;
	for (long i = 0; i < s->ops; i++)
		if (write(s->to_peer[1], &c, 1) != 1 || read(s->from_peer[0], &c, 1) != 1)
			FAIL("pipe ping-pong: %s", strerror(errno));
	return now_ns() - t0;
}

static void bench_micro(struct bench *b)
{
	long n = scaled(b, 200000);
	struct pingpong_state s = { .cpu = b->pin_cpu, .ops = scaled(b, 20000) };
	pthread_t peer;

	measure(b, "nullSyscall", null_syscall_run, &n, n, 0);
	if (!want(b, "pipePingPong"))
		return;
	if (pipe(s.to_peer) || pipe(s.from_peer))
		FAIL("pipe: %s", strerror(errno));
	pin_self(b->pin_cpu);
	if (pthread_create(&peer, NULL, pingpong_peer, &s))
		FAIL("pthread_create");
	measure(b, "pipePingPong", pingpong_run, &s, s.ops, 0);
	close(s.to_peer[1]); /* the peer's read() returns 0 */
	pthread_join(peer, NULL);
	close(s.to_peer[0]);
	close(s.from_peer[0]);
	close(s.from_peer[1]);
	unpin_self(b);
}

/* ---------------------------------------------------------------- /proc/self/pagemap */

struct pagemap_state {
	int fd;
	char *base;
	long npages;
	uint64_t *buf;
};

static uint64_t pagemap_run(struct bench *b, void *p)
{
	struct pagemap_state *s = p;
	size_t len = (size_t)s->npages * sizeof(uint64_t);
	off_t off = (off_t)((uintptr_t)s->base / (uintptr_t)b->page * sizeof(uint64_t));
	uint64_t t0 = now_ns();

	if (pread(s->fd, s->buf, len, off) != (ssize_t)len)
		FAIL("pread(/proc/self/pagemap): %s", strerror(errno));
	clobber(s->buf);
	return now_ns() - t0;
}

static void bench_pagemap(struct bench *b)
{
	struct pagemap_state s = { .npages = scaled(b, 65536) };
	size_t len = (size_t)s.npages * (size_t)b->page;

	if (!want(b, "pagemapRead"))
		return;
	s.fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (s.fd < 0)
		FAIL("open(/proc/self/pagemap): %s", strerror(errno));
	s.base = map_anon(len);
	touch_write(s.base, s.npages, b->page);
	s.buf = malloc((size_t)s.npages * sizeof(uint64_t));
	if (!s.buf)
		FAIL("malloc");
	measure(b, "pagemapRead", pagemap_run, &s, s.npages, 0);
	free(s.buf);
	unmap(s.base, len);
	close(s.fd);
}

/* ---------------------------------------------------------------- anonymous faults */

struct warm_state {
	char *base;
	long npages;
};

static uint64_t anon_fault_warm_run(struct bench *b, void *p)
{
	struct warm_state *s = p;
	uint64_t t0;

	dontneed(s->base, (size_t)s->npages * (size_t)b->page); /* untimed */
	t0 = now_ns();
	touch_write(s->base, s->npages, b->page);
	return now_ns() - t0;
}

static void bench_anon_fault_warm(struct bench *b)
{
	struct warm_state s = { .npages = scaled(b, 16384) };
	size_t len = (size_t)s.npages * (size_t)b->page;

	if (!want(b, "anonFaultWarm"))
		return;
	s.base = map_anon(len);
	touch_write(s.base, s.npages, b->page);
	measure(b, "anonFaultWarm", anon_fault_warm_run, &s, s.npages, 0);
	unmap(s.base, len);
}


static uint64_t anon_fault_run(struct bench *b, void *p)
{
	long npages = *(long *)p;
	size_t len = (size_t)npages * (size_t)b->page;
	char *base = map_anon(len);
	uint64_t t0 = now_ns(), dt;

	touch_write(base, npages, b->page);
	dt = now_ns() - t0;
	unmap(base, len);
	return dt;
}

static void bench_anon_fault(struct bench *b)
{
	long npages = scaled(b, 16384);

	measure(b, "anonFault", anon_fault_run, &npages, npages, 0);
}

/* ---------------------------------------------------------------- fork */

/* One fork of a populated 64 MiB region: returns fork()'s cost, stores fork+exit+wait in *total. */
static uint64_t fork_once(char *region, long npages, long page, uint64_t *total)
{
	uint64_t t0, t1;
	pid_t pid;
	int status;

	touch_write(region, npages, page); /* untimed: every page exclusive and writable again */
	t0 = now_ns();
	pid = fork();
	if (pid == 0)
		_exit(0);
	t1 = now_ns();
	if (pid < 0)
		FAIL("fork: %s", strerror(errno));
	if (waitpid(pid, &status, 0) != pid)
		FAIL("waitpid: %s", strerror(errno));
	*total = now_ns() - t0;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		FAIL("fork child did not exit cleanly (status 0x%x)", status);
	return t1 - t0;
}

static void bench_fork(struct bench *b)
{
	size_t len = 64 * MIB;
	long npages = (long)(len / (size_t)b->page);
	char *region = map_anon(len);
	double fork_ns[MAX_RUNS], total_ns[MAX_RUNS];
	int runs = b->quick ? b->runs : 2 * b->runs - 1; /* forks are few and cheap: take more */
	uint64_t total;

	if (!want(b, "fork64m") && !want(b, "forkExitWait64m")) {
		unmap(region, len);
		return;
	}
	for (int i = 0; i < b->warmup; i++)
		fork_once(region, npages, b->page, &total);
	for (int i = 0; i < runs; i++) {
		fork_ns[i] = (double)fork_once(region, npages, b->page, &total);
		total_ns[i] = (double)total;
	}
	record(b, "fork64m", fork_ns, runs, 1, 0);
	record(b, "forkExitWait64m", total_ns, runs, 1, 0);
	unmap(region, len);
}

/* ---------------------------------------------------------------- UFFDIO_COPY throughput */

struct copy_state {
	int uffd;
	char *dst, *src;
	size_t chunk;
	long ops;
};

static uint64_t copy_run(struct bench *b, void *p)
{
	struct copy_state *s = p;
	uint64_t t0, dt;

	(void)b;
	t0 = now_ns();
	for (long i = 0; i < s->ops; i++)
		uffd_copy(s->uffd, s->dst + (size_t)i * s->chunk, s->src, s->chunk);
	dt = now_ns() - t0;
	dontneed(s->dst, (size_t)s->ops * s->chunk); /* untimed: missing again */
	return dt;
}

static void bench_uffd_copy(struct bench *b, const char *id, size_t chunk, long ops)
{
	size_t len = chunk * (size_t)ops;
	struct copy_state s = { .chunk = chunk, .ops = ops };

	if (!want(b, id))
		return;
	s.uffd = uffd_open(b, 0);
	s.dst = map_anon(len);
	s.src = map_anon(chunk);

	memset(s.src, 0xa5, chunk);
	uffd_register(s.uffd, s.dst, len, UFFDIO_REGISTER_MODE_MISSING);
	measure(b, id, copy_run, &s, ops, (long)chunk);
	close(s.uffd);
	unmap(s.dst, len);
	unmap(s.src, chunk);
}

/* ---------------------------------------------------------------- UFFDIO_MOVE */

struct move_state {
	int uffd;
	char *half[2]; /* pages live in half[from] and move to half[!from] */
	int from;
	long npages;
};

static uint64_t move_run(struct bench *b, void *p)
{
	struct move_state *s = p;
	char *src = s->half[s->from], *dst = s->half[!s->from];
	struct bench_uffdio_move mv = { .len = (uint64_t)b->page, .mode = 0 };
	uint64_t t0 = now_ns(), dt;

	for (long i = 0; i < s->npages; i++) {
		mv.src = (uintptr_t)(src + i * b->page);
		mv.dst = (uintptr_t)(dst + i * b->page);
		if (ioctl(s->uffd, BENCH_UFFDIO_MOVE, &mv) || mv.move != b->page)
			FAIL("UFFDIO_MOVE: %s (move=%lld)", strerror(errno), (long long)mv.move);
	}
	dt = now_ns() - t0;
	s->from = !s->from;
	return dt;
}

static void bench_uffd_move(struct bench *b)
{
	long npages = scaled(b, 16384);
	size_t half = (size_t)npages * (size_t)b->page;
	struct move_state s = { .uffd = -1, .npages = npages };

	if (!(b->features & BENCH_UFFD_FEATURE_MOVE)) {
		skip(b, "uffdMove4k", "kernel lacks UFFD_FEATURE_MOVE (Linux < 6.8)");
		return;
	}
	if (!want(b, "uffdMove4k"))
		return;
	s.uffd = uffd_open(b, BENCH_UFFD_FEATURE_MOVE);
	s.half[0] = map_anon(2 * half);
	s.half[1] = s.half[0] + half;
	touch_write(s.half[0], npages, b->page);
	uffd_register(s.uffd, s.half[0], 2 * half, UFFDIO_REGISTER_MODE_MISSING);
	measure(b, "uffdMove4k", move_run, &s, npages, b->page);
	close(s.uffd);
	unmap(s.half[0], 2 * half);
}

/* ---------------------------------------------------------------- UFFDIO_WRITEPROTECT toggles */

struct wp_state {
	int uffd;
	char *base;
	size_t len; /* bytes toggled per op */
	long ops;
	long npages; /* pages in the region: single-page toggles cycle over them */
};

static uint64_t wp_run(struct bench *b, void *p)
{
	struct wp_state *s = p;
	uint64_t t0 = now_ns();

	for (long i = 0; i < s->ops; i++) {
		char *at = s->len == (size_t)b->page ? s->base + (i % s->npages) * b->page : s->base;

		uffd_wp(s->uffd, at, s->len, 1);
		uffd_wp(s->uffd, at, s->len, 0);
	}
	return now_ns() - t0;
}

static void bench_wp_toggle(struct bench *b)
{
	size_t len = 2 * MIB;
	struct wp_state s = { .uffd = -1, .len = (size_t)b->page, .npages = (long)(len / (size_t)b->page) };

	if (!(b->features & UFFD_FEATURE_PAGEFAULT_FLAG_WP)) {
		skip(b, "wpToggle4k", "kernel lacks userfaultfd write-protect support");
		skip(b, "wpToggle2m", "kernel lacks userfaultfd write-protect support");
		return;
	}
	if (!want(b, "wpToggle4k") && !want(b, "wpToggle2m"))
		return;
	s.uffd = uffd_open(b, UFFD_FEATURE_PAGEFAULT_FLAG_WP);
	s.base = map_anon(len);
	touch_write(s.base, s.npages, b->page);
	uffd_register(s.uffd, s.base, len, UFFDIO_REGISTER_MODE_WP);
	s.ops = scaled(b, 20000);
	measure(b, "wpToggle4k", wp_run, &s, s.ops, 0);
	s.len = len;
	s.ops = scaled(b, 200);
	measure(b, "wpToggle2m", wp_run, &s, s.ops, 0);
	close(s.uffd);
	unmap(s.base, len);
}

/* ---------------------------------------------------------------- round trips */

enum rt_kind { RT_COPY, RT_ZEROPAGE, RT_WP, RT_MINOR };

struct rt_state {
	enum rt_kind kind;
	int uffd;
	int handler_cpu; /* -1: unpinned */
	long page;
	long npages; /* timed pages; page npages is the sentinel that stops the handler */
	char *base;  /* the registered region, npages + 1 pages */
	char *src;   /* RT_COPY: the 4 KiB source */
	char *alias; /* RT_MINOR: an unregistered mapping of the memfd that fills the page cache */
	int memfd;
	volatile int fault_cpu; /* written by the faulting thread before each access */
	long faults, cross;     /* written by the handler thread only; read after pthread_join */
};

/* Resolves one fault the way the benchmark kind says; the ioctl also wakes the faulting thread. */
static void rt_resolve(const struct rt_state *s, char *addr)
{
	struct uffdio_range range = { .start = (uintptr_t)addr, .len = (uint64_t)s->page };
	struct uffdio_zeropage zp = { .range = range, .mode = 0 };
	struct uffdio_continue cont = { .range = range, .mode = 0 };

	switch (s->kind) {
	case RT_COPY:
		uffd_copy(s->uffd, addr, s->src, (size_t)s->page);
		break;
	case RT_ZEROPAGE:
		if (ioctl(s->uffd, UFFDIO_ZEROPAGE, &zp) || zp.zeropage != s->page)
			FAIL("UFFDIO_ZEROPAGE: %s", strerror(errno));
		break;
	case RT_WP:
		uffd_wp(s->uffd, addr, (size_t)s->page, 0);
		break;
	case RT_MINOR:
		if (ioctl(s->uffd, UFFDIO_CONTINUE, &cont) || cont.mapped != s->page)
			FAIL("UFFDIO_CONTINUE: %s", strerror(errno));
		break;
	}
}

/* The handler thread: one blocking read() per message, batch size 1, until the sentinel fault. */
static void *rt_handler(void *p)
{
	struct rt_state *s = p;
	char *sentinel = s->base + s->npages * s->page;
	struct uffd_msg msg;

	if (s->handler_cpu >= 0)
		pin_self(s->handler_cpu);
	for (;;) {
		ssize_t n = read(s->uffd, &msg, sizeof(msg));
		char *addr;

		if (n < 0 && errno == EINTR)
			continue;
		if (n != (ssize_t)sizeof(msg))
			FAIL("read(userfaultfd) returned %zd: %s", n, n < 0 ? strerror(errno) : "short");
		if (msg.event != UFFD_EVENT_PAGEFAULT)
			FAIL("unexpected userfaultfd event 0x%x", msg.event);
		addr = (char *)(uintptr_t)(msg.arg.pagefault.address & ~(uint64_t)(s->page - 1));
		s->faults++;
		s->cross += sched_getcpu() != s->fault_cpu;
		rt_resolve(s, addr);
		if (addr == sentinel)
			return NULL;
	}
}

/* Untimed: makes the timed pages fault again (the sentinel page is never touched until the end). */
static void rt_reset(struct rt_state *s)
{
	size_t len = (size_t)s->npages * (size_t)s->page;

	if (s->kind == RT_WP)
		uffd_wp(s->uffd, s->base, len, 1);
	else
		dontneed(s->base, len);
}

static uint64_t rt_run(struct bench *b, void *p)
{
	struct rt_state *s = p;
	volatile char *base = (volatile char *)s->base;
	uint64_t t0;
	long sum = 0;

	(void)b;
	rt_reset(s);
	t0 = now_ns();
	if (s->kind == RT_COPY || s->kind == RT_WP) {
		for (long i = 0; i < s->npages; i++) {
			s->fault_cpu = sched_getcpu();
			base[i * s->page] = 1;
		}
	} else {
		for (long i = 0; i < s->npages; i++) {
			s->fault_cpu = sched_getcpu();
			sum += base[i * s->page];
		}
	}
	clobber(&sum);
	return now_ns() - t0;
}

static void rt_setup(const struct bench *b, struct rt_state *s)
{
	size_t len = (size_t)(s->npages + 1) * (size_t)s->page;

	switch (s->kind) {
	case RT_COPY:
	case RT_ZEROPAGE:
		s->uffd = uffd_open(b, 0);
		s->base = map_anon(len);
		s->src = map_anon((size_t)s->page);
		memset(s->src, 0xa5, (size_t)s->page);
		uffd_register(s->uffd, s->base, len, UFFDIO_REGISTER_MODE_MISSING);
		break;
	case RT_WP:
		s->uffd = uffd_open(b, UFFD_FEATURE_PAGEFAULT_FLAG_WP);
		s->base = map_anon(len);
		touch_write(s->base, s->npages + 1, s->page);
		uffd_register(s->uffd, s->base, len, UFFDIO_REGISTER_MODE_WP);
		uffd_wp(s->uffd, s->base, len, 1);
		break;
	case RT_MINOR:
		s->uffd = uffd_open(b, UFFD_FEATURE_MINOR_SHMEM);
		s->memfd = memfd_create("uffd-bench", MFD_CLOEXEC);
		if (s->memfd < 0 || ftruncate(s->memfd, (off_t)len))
			FAIL("memfd_create/ftruncate: %s", strerror(errno));
		s->alias = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, s->memfd, 0);
		s->base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, s->memfd, 0);
		if (s->alias == MAP_FAILED || s->base == MAP_FAILED)
			FAIL("mmap(memfd): %s", strerror(errno));
		touch_write(s->alias, s->npages + 1, s->page); /* every page in the page cache */
		uffd_register(s->uffd, s->base, len, UFFDIO_REGISTER_MODE_MINOR);
		break;
	}
}

static void rt_teardown(struct rt_state *s)
{
	size_t len = (size_t)(s->npages + 1) * (size_t)s->page;

	close(s->uffd);
	unmap(s->base, len);
	if (s->src)
		unmap(s->src, (size_t)s->page);
	if (s->alias)
		unmap(s->alias, len);
	if (s->memfd >= 0)
		close(s->memfd);
}

/*
 * One round-trip metric: a fresh region, uffd and handler thread. The faulting (main) thread runs
 * on faulter_cpu and the handler on handler_cpu; -1 leaves a thread unpinned.
 */
static void bench_rt_variant(struct bench *b, enum rt_kind kind, const char *id, long npages,
			     int faulter_cpu, int handler_cpu)
{
	struct rt_state s = { .kind = kind, .uffd = -1, .handler_cpu = handler_cpu, .page = b->page,
			      .npages = npages, .memfd = -1 };
	pthread_t handler;
	int err;

	if (!want(b, id))
		return;
	rt_setup(b, &s);
	if (faulter_cpu >= 0)
		pin_self(faulter_cpu);
	err = pthread_create(&handler, NULL, rt_handler, &s);
	if (err)
		FAIL("pthread_create: %s", strerror(err));
	measure(b, id, rt_run, &s, s.npages, 0);
	((volatile char *)s.base)[s.npages * s.page] = 1; /* the sentinel: the handler exits */
	err = pthread_join(handler, NULL);
	if (err)
		FAIL("pthread_join: %s", strerror(err));
	b->metrics[b->nmetrics - 1].cross_cpu = (double)s.cross / (double)s.faults;
	if (faulter_cpu >= 0)
		unpin_self(b);
	rt_teardown(&s);
}

/* ---------------------------------------------------------------- batched round trips */

#define RTB_THREADS 32
#define RTB_BATCH 64

struct rtb_state {
	struct rt_state rt; /* kind RT_COPY, the region and the source */
	int cpu;
	long per;           /* pages per faulting thread */
	pthread_barrier_t start, end;
	volatile int quit;
	long idx[RTB_THREADS];
};

struct rtb_thread {
	struct rtb_state *s;
	long i;
};

static void *rtb_faulter(void *p)
{
	struct rtb_thread *t = p;
	struct rtb_state *s = t->s;
	volatile char *base = (volatile char *)s->rt.base + (size_t)t->i * (size_t)s->per * (size_t)s->rt.page;

	pin_self(s->cpu);
	for (;;) {
		pthread_barrier_wait(&s->start);
		if (s->quit)
			return NULL;
		for (long i = 0; i < s->per; i++)
			base[i * s->rt.page] = 1;
		pthread_barrier_wait(&s->end);
	}
}

static void *rtb_handler(void *p)
{
	struct rtb_state *s = p;
	char *sentinel = s->rt.base + s->rt.npages * s->rt.page;
	struct uffd_msg msgs[RTB_BATCH];

	pin_self(s->cpu);
	for (;;) {
		ssize_t n = read(s->rt.uffd, msgs, sizeof(msgs));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || n % (ssize_t)sizeof(msgs[0]))
			FAIL("read(userfaultfd) returned %zd: %s", n, n < 0 ? strerror(errno) : "short");
		for (long i = 0; i < n / (ssize_t)sizeof(msgs[0]); i++) {
			char *addr = (char *)(uintptr_t)(msgs[i].arg.pagefault.address & ~(uint64_t)(s->rt.page - 1));

			if (msgs[i].event != UFFD_EVENT_PAGEFAULT)
				FAIL("unexpected userfaultfd event 0x%x", msgs[i].event);
			rt_resolve(&s->rt, addr);
			if (addr == sentinel)
				return NULL;
		}
	}
}

static uint64_t rtb_run(struct bench *b, void *p)
{
	struct rtb_state *s = p;
	uint64_t t0;

	(void)b;
	rt_reset(&s->rt);
	t0 = now_ns();
	pthread_barrier_wait(&s->start);
	pthread_barrier_wait(&s->end);
	return now_ns() - t0;
}

static void bench_rt_batched(struct bench *b)
{
	static struct rtb_state s; /* large; one at a time */
	struct rtb_thread th[RTB_THREADS];
	pthread_t faulters[RTB_THREADS], handler;

	if (!want(b, "rtMissingCopyBatched"))
		return;
	memset(&s, 0, sizeof(s));
	s.cpu = b->pin_cpu;
	s.per = scaled(b, 5000) / RTB_THREADS;
	s.rt = (struct rt_state){ .kind = RT_COPY, .uffd = -1, .handler_cpu = -1, .page = b->page,
				  .npages = s.per * RTB_THREADS, .memfd = -1 };
	rt_setup(b, &s.rt);
	pin_self(s.cpu);
	if (pthread_barrier_init(&s.start, NULL, RTB_THREADS + 1) ||
	    pthread_barrier_init(&s.end, NULL, RTB_THREADS + 1))
		FAIL("pthread_barrier_init");
	for (long i = 0; i < RTB_THREADS; i++) {
		th[i] = (struct rtb_thread){ .s = &s, .i = i };
		if (pthread_create(&faulters[i], NULL, rtb_faulter, &th[i]))
			FAIL("pthread_create");
	}
	if (pthread_create(&handler, NULL, rtb_handler, &s))
		FAIL("pthread_create");
	measure(b, "rtMissingCopyBatched", rtb_run, &s, s.rt.npages, 0);
	s.quit = 1;
	pthread_barrier_wait(&s.start);
	for (long i = 0; i < RTB_THREADS; i++)
		pthread_join(faulters[i], NULL);
	((volatile char *)s.rt.base)[s.rt.npages * s.rt.page] = 1; /* the sentinel: the handler exits */
	pthread_join(handler, NULL);
	b->metrics[b->nmetrics - 1].cross_cpu = 0; /* every thread on one CPU */
	pthread_barrier_destroy(&s.start);
	pthread_barrier_destroy(&s.end);
	unpin_self(b);
	rt_teardown(&s.rt);
}

static void bench_round_trips(struct bench *b)
{
	static const struct {
		enum rt_kind kind;
		const char *pinned, *unpinned;
		uint64_t needs;
		const char *missing;
	} kinds[] = {
		{ RT_COPY, "rtMissingCopyPinned", "rtMissingCopyUnpinned", 0, NULL },
		{ RT_ZEROPAGE, "rtMissingZeropagePinned", "rtMissingZeropageUnpinned", 0, NULL },
		{ RT_WP, "rtWpUnprotectPinned", "rtWpUnprotectUnpinned", UFFD_FEATURE_PAGEFAULT_FLAG_WP,
		  "kernel lacks userfaultfd write-protect support" },
		{ RT_MINOR, "rtMinorContinuePinned", "rtMinorContinueUnpinned", UFFD_FEATURE_MINOR_SHMEM,
		  "kernel lacks UFFD_FEATURE_MINOR_SHMEM" },
	};

	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		if ((b->features & kinds[i].needs) != kinds[i].needs) {
			skip(b, kinds[i].pinned, kinds[i].missing);
			skip(b, kinds[i].unpinned, kinds[i].missing);
			continue;
		}
		bench_rt_variant(b, kinds[i].kind, kinds[i].pinned, scaled(b, 5000), b->pin_cpu,
				 b->pin_cpu);
		bench_rt_variant(b, kinds[i].kind, kinds[i].unpinned, scaled(b, 5000), -1, -1);
	}
	/* Cross-CPU wake-ups can be ~20x slower (idle CPUs in a VM): fewer pages per run. */
	if (b->other_cpu < 0)
		skip(b, "rtMissingCopySplit", "only one CPU is allowed");
	else
		bench_rt_variant(b, RT_COPY, "rtMissingCopySplit", scaled(b, 400), b->pin_cpu,
				 b->other_cpu);
}

/* ---------------------------------------------------------------- host description + JSON */

static void cpu_model(char *out, size_t size)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[512];

	snprintf(out, size, "unknown");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *colon = strchr(line, ':');

		if (strncmp(line, "model name", 10) || !colon)
			continue;
		colon += 1 + (colon[1] == ' ');
		colon[strcspn(colon, "\n")] = 0;
		snprintf(out, size, "%s", colon);
		break;
	}
	fclose(f);
}

static void print_host(const struct bench *b)
{
	char model[256];
	struct utsname u;

	cpu_model(model, sizeof(model));
	if (uname(&u))
		FAIL("uname: %s", strerror(errno));
	printf("\"host\":{\"cpuModel\":");
	json_string(stdout, model);
	printf(",\"kernelRelease\":");
	json_string(stdout, u.release);
	printf(",\"nproc\":%ld,\"allowedCpus\":%d,\"pinCpu\":%d,\"pageSize\":%ld,"
	       "\"splitCpu\":%d,\"uffdSource\":\"%s\",\"uffdFeatures\":%llu}",
	       sysconf(_SC_NPROCESSORS_ONLN), CPU_COUNT(&b->orig_cpus), b->pin_cpu, b->page,
	       b->other_cpu,
	       uffd_source_names[b->source], (unsigned long long)b->features);
}

static void print_report(const struct bench *b, uint64_t elapsed_ns)
{
	printf("{\"available\":true,\"schema\":1,\"quick\":%s,\"partial\":%s,\"warmupRuns\":%d,"
	       "\"runs\":%d,\"elapsedMs\":%.1f,",
	       b->quick ? "true" : "false", b->only ? "true" : "false", b->warmup, b->runs,
	       (double)elapsed_ns / 1e6);
	print_host(b);
	printf(",\"results\":{");
	for (int i = 0; i < b->nmetrics; i++) {
		const struct metric *m = &b->metrics[i];

		printf("%s\"%s\":{\"nsPerOp\":%.3f,\"opsPerSec\":%.1f,\"minNsPerOp\":%.3f,"
		       "\"maxNsPerOp\":%.3f,\"runs\":%d,\"opsPerRun\":%ld",
		       i ? "," : "", m->id, m->median, 1e9 / m->median, m->min, m->max, m->runs,
		       m->ops_per_run);
		if (m->bytes_per_op)
			printf(",\"bytesPerOp\":%ld", m->bytes_per_op);
		if (m->cross_cpu >= 0)
			printf(",\"crossCpuRatio\":%.4f", m->cross_cpu);
		printf("}");
	}
	printf("},\"skipped\":{");
	for (int i = 0; i < b->nskipped; i++) {
		printf("%s\"%s\":", i ? "," : "", b->skipped[i].id);
		json_string(stdout, b->skipped[i].reason);
	}
	printf("}}\n");
	fflush(stdout);
}

int main(int argc, char **argv)
{
	const char *quick = getenv("UFFD_BENCH_QUICK");
	struct bench b = { .quick = quick && *quick && strcmp(quick, "0") != 0 };
	uint64_t t0 = now_ns();

	if (argc > 1) {
		b.only = argv + 1;
		b.nonly = argc - 1;
	}
	b.warmup = b.quick ? 1 : 2;
	b.runs = b.quick ? 5 : 7;
	b.page = sysconf(_SC_PAGESIZE);
	if (sched_getaffinity(0, sizeof(b.orig_cpus), &b.orig_cpus))
		FAIL("sched_getaffinity: %s", strerror(errno));
	for (b.pin_cpu = 0; !CPU_ISSET(b.pin_cpu, &b.orig_cpus); b.pin_cpu++)
		;
	b.other_cpu = -1;
	for (int cpu = b.pin_cpu + 1; cpu < CPU_SETSIZE && b.other_cpu < 0; cpu++)
		if (CPU_ISSET(cpu, &b.orig_cpus))
			b.other_cpu = cpu;
	uffd_probe(&b);

	bench_micro(&b);
	bench_memcpy(&b, "memcpy4k", (size_t)b.page, scaled(&b, 200000));
	bench_memcpy(&b, "memcpy2m", 2 * MIB, scaled(&b, 200));
	bench_memcpy_stream(&b);
	bench_anon_fault(&b);
	bench_anon_fault_warm(&b);
	bench_pagemap(&b);
	bench_fork(&b);
	bench_uffd_copy(&b, "uffdCopy4k", (size_t)b.page, scaled(&b, 16384));
	bench_uffd_copy(&b, "uffdCopy2m", 2 * MIB, scaled(&b, 32));
	bench_uffd_move(&b);
	bench_wp_toggle(&b);
	bench_round_trips(&b);
	bench_rt_batched(&b);

	print_report(&b, now_ns() - t0);
	return 0;
}
