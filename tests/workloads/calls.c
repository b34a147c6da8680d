/* Test workload with known calls, for funccount and trace.
 *
 *   calls A B S [ROUNDS [LINGER_MS]]
 *     prints "ready", waits for a line on stdin (the tracer is attached), then, in ROUNDS equal rounds 300 ms
 *     apart (default 1): calls count_a A times, count_b(i) B times (each call also fires the USDT probe
 *     calls:tick with i, calls twice(i), which returns 2 * i, and libc's strlen, an IFUNC, once), and makes S
 *     getpgid system calls; never calls count_c; sleeps LINGER_MS (default 0) and exits.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sdt.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))

NOINLINE void count_a(void)
{
	__asm__ volatile("" ::: "memory");
}

/* Called through a volatile pointer: the compiler can neither inline nor fold it. */
static size_t (*volatile strlen_fn)(const char *) = strlen;
static volatile size_t sink;

NOINLINE long twice(long i)
{
	__asm__ volatile("" ::: "memory");
	return 2 * i;
}

NOINLINE void count_b(long i)
{
	DTRACE_PROBE1(calls, tick, i);
	sink += strlen_fn("calls");
	sink += twice(i);
}

NOINLINE void count_c(void)
{
	__asm__ volatile("" ::: "memory");
}

int main(int argc, char **argv)
{
	char line[16];
	long a, b, s, rounds = 1;

	if (argc < 4) {
		fprintf(stderr, "usage: calls A B S [ROUNDS]\n");
		return 2;
	}
	a = atol(argv[1]);
	b = atol(argv[2]);
	s = atol(argv[3]);
	if (argc > 4)
		rounds = atol(argv[4]);
	printf("ready\n");
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		return 1;
	for (long r = 0; r < rounds; r++) {
		for (long i = r * a / rounds; i < (r + 1) * a / rounds; i++)
			count_a();
		for (long i = r * b / rounds; i < (r + 1) * b / rounds; i++)
			count_b(i);
		for (long i = r * s / rounds; i < (r + 1) * s / rounds; i++)
			syscall(SYS_getpgid, 0);
		if (r + 1 < rounds) {
			struct timespec ts = { 0, 300 * 1000000L };
			nanosleep(&ts, NULL);
		}
	}
	if (argc > 5) {
		long ms = atol(argv[5]);
		struct timespec ts = { ms / 1000, ms % 1000 * 1000000L };
		nanosleep(&ts, NULL);
	}
	if (argc > 99)
		count_c();
	return 0;
}
