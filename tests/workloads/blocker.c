/* Test workload with known blocking, for the off-CPU tools. Every blocking system call is made with a raw
 * syscall instruction inside the named function, so that function is the innermost user frame while the
 * thread is off-CPU (a libc wrapper without frame pointers would hide it).
 *
 *   blocker sleep   prints "ready TID", waits for a line on stdin (the tracer is attached), then, in thread
 *                   "sleeper": main -> sleep_phase -> nap_short 20 x 10 ms, then nap_long 10 x 100 ms
 *                   (200 ms and 1000 ms blocked); prints "done SHORT LONG", the microseconds each phase's
 *                   nanosleeps took as this thread measured them (a slow machine oversleeps), and waits,
 *                   blocked in linger, until killed.
 *   blocker pipe MS prints "ready READER_TID"; thread "reader" blocks in wait_for_data reading a
 *                   pipe (main -> reader_loop -> wait_for_data), thread "writer" sleeps MS ms in writer_nap
 *                   then writes one byte in wake_reader (writer_loop -> wake_reader), until killed.
 *   blocker twins   prints "ready TID", then thread "twins" repeats, until killed: twin_nap (1 ms) called by
 *                   via_a, wait_on reading a pipe, twin_nap called by via_b, wait_on reading a socket; thread
 *                   "feeder", asked before each read, writes the byte it waits for 2 ms later (so each
 *                   read blocks, however slow the machine). The two naps
 *                   block with the same registers (via_a and via_b have the same frame) and differ only in
 *                   a return address on the stack; the two reads have one user stack and different kernel
 *                   stacks: what the off-CPU tools' stack memos must tell apart.
 *   blocker naps N  prints "ready TID", waits for a line on stdin, then naps N x 100 us in nap_many and
 *                   prints "done US", the microseconds those naps took as it measured them; then lingers.
 *   blocker hotcold N
 *                   prints "ready TID", waits for a line on stdin, then N times: hot_phase spins in
 *                   spin_until for 300 ms of wall time, cold_phase sleeps 700 ms in nap_cold (main ->
 *                   hot_cold -> hot_phase / cold_phase); prints "done WALL_US CPU_US", the wall time of the
 *                   N cycles and this thread's CPU time in them, as it measured them; then lingers.
 */
#include <sys/socket.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))

static long raw3(long nr, long a, long b, long c)
{
	long ret;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "0"(nr), "D"(a), "S"(b), "d"(c)
			 : "rcx", "r11", "memory");
	return ret;
}

/* Inlined into each caller (always_inline): the syscall instruction sits in the named function. */
#define NANOSLEEP_MS(ms)                                                                                   \
	do {                                                                                               \
		struct timespec ts = { (ms) / 1000, ((ms) % 1000) * 1000000L };                           \
		long r;                                                                                    \
		__asm__ volatile("syscall"                                                                 \
				 : "=a"(r)                                                                 \
				 : "0"((long)SYS_nanosleep), "D"(&ts), "S"(0L)                             \
				 : "rcx", "r11", "memory");                                                \
	} while (0)

static long long now_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000LL + t.tv_nsec / 1000;
}

/* Microseconds spent in each phase's naps (sleep_phase). */
static long long short_us, long_us;

NOINLINE void nap_short(void)
{
	NANOSLEEP_MS(10);
}

NOINLINE void nap_long(void)
{
	NANOSLEEP_MS(100);
}

NOINLINE void sleep_phase(void)
{
	long long t;

	for (int i = 0; i < 20; i++) {
		t = now_us();
		nap_short();
		short_us += now_us() - t;
	}
	for (int i = 0; i < 10; i++) {
		t = now_us();
		nap_long();
		long_us += now_us() - t;
	}
}

NOINLINE void linger(void)
{
	raw3(SYS_pause, 0, 0, 0);
}

static int pipefd[2];
static long writer_ms;

NOINLINE long wait_for_data(char *buf)
{
	return raw3(SYS_read, pipefd[0], (long)buf, 1);
}

NOINLINE void reader_loop(void)
{
	char c;

	while (wait_for_data(&c) == 1)
		;
}

NOINLINE void wake_reader(void)
{
	raw3(SYS_write, pipefd[1], (long)"x", 1);
}

NOINLINE void writer_nap(void)
{
	NANOSLEEP_MS(writer_ms);
}

NOINLINE void writer_loop(void)
{
	for (;;) {
		writer_nap();
		wake_reader();
	}
}

static void *writer(void *arg)
{
	(void)arg;
	prctl(PR_SET_NAME, "writer");
	writer_loop();
	return NULL;
}

static int twin_pipe[2], twin_sock[2], twin_ask[2];
static volatile int twin_sink;

NOINLINE void twin_nap(void)
{
	NANOSLEEP_MS(1);
}

/* The same frame, and different code (so that no compiler folds them into one). */
NOINLINE void via_a(void)
{
	twin_nap();
	twin_sink = 1;
}

NOINLINE void via_b(void)
{
	twin_nap();
	twin_sink = 2;
}

NOINLINE long wait_on(int fd)
{
	char c;

	return raw3(SYS_read, fd, (long)&c, 1);
}

/* Asks the feeder for a byte on fd (it writes it 2 ms later), then waits for it. */
static void ask_and_wait(int fd)
{
	raw3(SYS_write, twin_ask[1], (long)"x", 1);
	wait_on(fd);
}

NOINLINE void twins_loop(void)
{
	for (;;) {
		via_a();
		ask_and_wait(twin_pipe[0]);
		via_b();
		ask_and_wait(twin_sock[0]);
	}
}

static void *feeder(void *arg)
{
	char c;

	(void)arg;
	prctl(PR_SET_NAME, "feeder");
	for (;;) {
		raw3(SYS_read, twin_ask[0], (long)&c, 1);
		NANOSLEEP_MS(2);
		raw3(SYS_write, twin_pipe[1], (long)"x", 1);
		raw3(SYS_read, twin_ask[0], (long)&c, 1);
		NANOSLEEP_MS(2);
		raw3(SYS_write, twin_sock[1], (long)"x", 1);
	}
	return NULL;
}

static long long naps_us;

NOINLINE void nap_many(long n)
{
	struct timespec ts = { 0, 100 * 1000 };

	for (long i = 0; i < n; i++) {
		long long t = now_us();
		long r;

		__asm__ volatile("syscall"
				 : "=a"(r)
				 : "0"((long)SYS_nanosleep), "D"(&ts), "S"(0L)
				 : "rcx", "r11", "memory");
		naps_us += now_us() - t;
	}
}

static long long thread_cpu_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return t.tv_sec * 1000000LL + t.tv_nsec / 1000;
}

static volatile unsigned long spins;

NOINLINE void spin_until(long long end_us)
{
	while (now_us() < end_us)
		spins++;
}

NOINLINE void hot_phase(void)
{
	spin_until(now_us() + 300000);
}

NOINLINE void nap_cold(void)
{
	NANOSLEEP_MS(700);
}

NOINLINE void cold_phase(void)
{
	nap_cold();
}

NOINLINE void hot_cold(long n)
{
	for (long i = 0; i < n; i++) {
		hot_phase();
		cold_phase();
	}
}

int main(int argc, char **argv)
{
	char line[16];

	if (argc >= 2 && strcmp(argv[1], "sleep") == 0) {
		prctl(PR_SET_NAME, "sleeper");
		printf("ready %ld\n", (long)syscall(SYS_gettid));
		fflush(stdout);
		if (!fgets(line, sizeof(line), stdin))
			return 1;
		sleep_phase();
		printf("done %lld %lld\n", short_us, long_us);
		fflush(stdout);
		for (;;)
			linger();
	}
	if (argc >= 3 && strcmp(argv[1], "pipe") == 0) {
		pthread_t w;

		writer_ms = atol(argv[2]);
		if (pipe(pipefd) || pthread_create(&w, NULL, writer, NULL))
			return 1;
		prctl(PR_SET_NAME, "reader");
		printf("ready %ld\n", (long)syscall(SYS_gettid));
		fflush(stdout);
		reader_loop();
		return 0;
	}
	if (argc >= 2 && strcmp(argv[1], "twins") == 0) {
		pthread_t f;

		if (pipe(twin_pipe) || pipe(twin_ask) || socketpair(AF_UNIX, SOCK_STREAM, 0, twin_sock) ||
		    pthread_create(&f, NULL, feeder, NULL))
			return 1;
		prctl(PR_SET_NAME, "twins");
		printf("ready %ld\n", (long)syscall(SYS_gettid));
		fflush(stdout);
		twins_loop();
		return 0;
	}
	if (argc >= 3 && strcmp(argv[1], "naps") == 0) {
		printf("ready %ld\n", (long)syscall(SYS_gettid));
		fflush(stdout);
		if (!fgets(line, sizeof(line), stdin))
			return 1;
		nap_many(atol(argv[2]));
		printf("done %lld\n", naps_us);
		fflush(stdout);
		for (;;)
			linger();
	}
	if (argc >= 3 && strcmp(argv[1], "hotcold") == 0) {
		long long wall, cpu;

		prctl(PR_SET_NAME, "hotcold");
		printf("ready %ld\n", (long)syscall(SYS_gettid));
		fflush(stdout);
		if (!fgets(line, sizeof(line), stdin))
			return 1;
		wall = now_us();
		cpu = thread_cpu_us();
		hot_cold(atol(argv[2]));
		printf("done %lld %lld\n", now_us() - wall, thread_cpu_us() - cpu);
		fflush(stdout);
		for (;;)
			linger();
	}
	fprintf(stderr, "usage: blocker sleep | blocker pipe MS | blocker twins | blocker naps N | blocker hotcold N\n");
	return 2;
}
