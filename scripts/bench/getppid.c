/* Makes N getppid() system calls in a tight loop: the cost of a probe on a syscall tracepoint, per call.
 *
 *   getppid N    prints "calls=N wall=SECONDS cpu=SECONDS pid=PID"
 *
 * getppid is about the cheapest system call there is (no argument, no lock, never cached by libc): what a
 * tracer adds to it stands out. It is made through syscall(2) so that no libc can answer it from a cache.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double seconds(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 1000000;
	double w0, c0, w1, c1;

	w0 = seconds(CLOCK_MONOTONIC);
	c0 = seconds(CLOCK_PROCESS_CPUTIME_ID);
	for (long i = 0; i < n; i++)
		syscall(SYS_getppid);
	c1 = seconds(CLOCK_PROCESS_CPUTIME_ID);
	w1 = seconds(CLOCK_MONOTONIC);
	printf("calls=%ld wall=%.6f cpu=%.6f pid=%d\n", n, w1 - w0, c1 - c0, (int)getpid());
	return 0;
}
