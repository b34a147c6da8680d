/* Calls one noinline function N times in a tight loop: the cost of a probe on it, per call.
 *
 *   hotcall N    prints "calls=N wall=SECONDS"
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

__attribute__((noinline)) void hot(long i)
{
	__asm__ volatile("" : : "r"(i) : "memory");
}

int main(int argc, char **argv)
{
	struct timespec a, b;
	long n = argc > 1 ? atol(argv[1]) : 1000000;

	clock_gettime(CLOCK_MONOTONIC, &a);
	for (long i = 0; i < n; i++)
		hot(i);
	clock_gettime(CLOCK_MONOTONIC, &b);
	printf("calls=%ld wall=%.6f\n", n, (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9);
	return 0;
}
