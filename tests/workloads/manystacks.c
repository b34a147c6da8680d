/* Test workload with thousands of distinct stacks: a walk down a binary tree of call sites.
 * `manystacks SECS`: step() recurses DEPTH levels, through left() or right() by the bits of a counter, so
 * 2^DEPTH distinct call chains end in leaf(). Prints "ready", exits after SECS.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define NOINLINE __attribute__((noinline))
#define DEPTH 12

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

NOINLINE void leaf(void)
{
	for (volatile int i = 0; i < 3000; i++)
		;
}

NOINLINE void step(unsigned path, int depth);

NOINLINE void left(unsigned path, int depth)
{
	step(path, depth);
}

NOINLINE void right(unsigned path, int depth)
{
	step(path, depth);
}

NOINLINE void step(unsigned path, int depth)
{
	if (depth == 0)
		leaf();
	else if (path & 1)
		left(path >> 1, depth - 1);
	else
		right(path >> 1, depth - 1);
}

int main(int argc, char **argv)
{
	double end;

	if (argc != 2) {
		fprintf(stderr, "usage: manystacks SECS\n");
		return 2;
	}
	end = now() + atof(argv[1]);
	printf("ready\n");
	fflush(stdout);
	for (unsigned i = 0; now() < end; i++)
		step(i % (1u << DEPTH), DEPTH);
	return 0;
}
