/* Test workload built WITHOUT frame pointers (gcc -O2 -fomit-frame-pointer, as distributions build), whose
 * time is nearly all under one known chain that crosses libc:
 *
 *   nofp cpu      main -> run -> outer_step -> middle_step -> sort_leaf -> qsort (libc) -> ... -> by_value
 *                 (libc's sort sits between two of this program's frames), until killed
 *   nofp sleep    main -> nap_loop -> nap -> nanosleep (libc), blocked ~10 ms at a time, until killed
 *   nofp dlopen LIB   waits for a line on stdin, then loads LIB (tests/workloads/nofplib.c) and calls it
 *                 until killed: main -> dl_loop -> lib_work -> lib_middle -> lib_spin
 *   nofp pipe     main -> pipe_loop -> wait_byte -> read (libc) on a pipe a child writes a byte to every
 *                 10 ms, until killed
 *
 * Prints "ready" on stdout once running.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))
#define N 4096

/* Results go here so that no call is a tail call or dead code. */
volatile long sink;

NOINLINE static int by_value(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;

	return (x > y) - (x < y);
}

NOINLINE long sort_leaf(int *v, const int *src)
{
	memcpy(v, src, N * sizeof(*v));
	qsort(v, N, sizeof(*v), by_value);
	return v[N / 2];
}

NOINLINE long middle_step(int *v, const int *src)
{
	long r = sort_leaf(v, src);

	sink = r;
	return r + 1;
}

NOINLINE long outer_step(int *v, const int *src)
{
	long r = middle_step(v, src);

	sink = r;
	return r + 1;
}

NOINLINE void run(void)
{
	static int v[N], src[N];

	for (int i = 0; i < N; i++)
		src[i] = (int)((i * 2654435761u) >> 7);
	for (;;)
		sink = outer_step(v, src);
}

NOINLINE long nap(void)
{
	struct timespec ts = { 0, 10 * 1000 * 1000 };

	nanosleep(&ts, NULL);
	return ts.tv_nsec;
}

NOINLINE void nap_loop(void)
{
	for (;;)
		sink = nap();
}

NOINLINE long wait_byte(int fd)
{
	char c;
	long n = read(fd, &c, 1);

	return n + 1;
}

NOINLINE void pipe_loop(void)
{
	int fds[2];

	if (pipe(fds))
		exit(1);
	if (fork() == 0) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };

		for (;;) {
			nanosleep(&ts, NULL);
			if (write(fds[1], "x", 1) != 1 || getppid() == 1)
				_exit(0);
		}
	}
	for (;;)
		sink = wait_byte(fds[0]);
}

NOINLINE void dl_loop(const char *lib)
{
	char line[16];
	void *h;
	long (*work)(long);

	if (!fgets(line, sizeof(line), stdin))
		exit(1);
	h = dlopen(lib, RTLD_NOW);
	if (!h || !(work = (long (*)(long))dlsym(h, "lib_work"))) {
		fprintf(stderr, "nofp: %s\n", dlerror());
		exit(1);
	}
	for (;;)
		sink = work(100000);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "cpu";

	printf("ready\n");
	fflush(stdout);
	if (!strcmp(mode, "dlopen") && argc > 2)
		dl_loop(argv[2]);
	else if (!strcmp(mode, "sleep"))
		nap_loop();
	else if (!strcmp(mode, "pipe"))
		pipe_loop();
	else
		run();
	return 0;
}
