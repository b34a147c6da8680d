/* Test workload for inlined frames and source lines (issue 19), built as distributions build (gcc -O2 -g,
 * no frame pointers: workload_nofp).
 *
 *   inlined     prints "ready", then runs hash_caller until killed: its only work is mix_step's loop,
 *               which the compiler inlines into it (always_inline). With --inline the samples show
 *               main;hash_caller;mix_step [inlined]; with --lines the loop's line (marked HOT) and the
 *               call's (marked CALL).
 */
#include <stdio.h>

static volatile unsigned long sink;

static inline __attribute__((always_inline)) unsigned long mix_step(unsigned long x)
{
	for (int i = 0; i < 4096; i++) x = x * 6364136223846793005UL + 1442695040888963407UL; /* HOT */
	return x;
}

__attribute__((noinline)) void hash_caller(void)
{
	unsigned long x = sink;

	for (;;) {
		x = mix_step(x); /* CALL */
		sink = x;
	}
}

int main(void)
{
	printf("ready\n");
	fflush(stdout);
	hash_caller();
	return 0;
}
