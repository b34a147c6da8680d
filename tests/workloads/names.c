/* Test workload for how frames are named (issue 19).
 *
 *   names plt     prints "ready", then calls libc's abs through the PLT in a loop until killed (plt_loop):
 *                 a sampled frame in the stub must be named abs@plt, never by the symbol before it (_init).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile long sink;

/* no_builtin: a call to libc's abs through the PLT, not the compiler's own. */
__attribute__((noinline, no_builtin)) void plt_loop(void)
{
	for (long i = 0;; i++)
		sink += abs((int)(i & 0xffff) - 0x8000);
}

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "plt") == 0) {
		printf("ready\n");
		fflush(stdout);
		plt_loop();
	}
	fprintf(stderr, "usage: names plt\n");
	return 2;
}
