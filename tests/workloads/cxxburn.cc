// Test workload: C++ frames whose demangled names are known. `cxxburn SECS`; prints "ready", exits after SECS.
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

namespace burn {
struct Worker {
	__attribute__((noinline)) void spin(unsigned long n)
	{
		for (volatile unsigned long i = 0; i < n; i++)
			;
	}
	template <typename T> __attribute__((noinline)) void run(T n, double secs)
	{
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		double end = ts.tv_sec + ts.tv_nsec / 1e9 + secs;
		for (;;) {
			spin(n);
			clock_gettime(CLOCK_MONOTONIC, &ts);
			if (ts.tv_sec + ts.tv_nsec / 1e9 >= end)
				return;
		}
	}
};
} // namespace burn

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: cxxburn SECS\n");
		return 2;
	}
	printf("ready\n");
	fflush(stdout);
	burn::Worker w;
	w.run<unsigned long>(100000UL, atof(argv[1]));
	return 0;
}
