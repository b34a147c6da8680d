// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * sortburn: a fixed amount of CPU work shared by N threads, in code built as distributions build it
 * (without frame pointers: see unwind.sh), with stacks ~20 frames deep that cross libc: each chunk sorts
 * an array with libc's qsort and a comparator of its own (worker -> do_chunk -> sort_round -> qsort ->
 * msort_with_tmp (recursive) -> by_value).
 *
 *   sortburn [-t THREADS] [-n CHUNKS]
 *
 * Threads take chunks from a shared counter until none are left (as burn.c), so CPU time a profiler takes
 * anywhere lengthens the run. Prints one line to stdout:  wall=SECONDS cpu=SECONDS chunks=N threads=N
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))
/* One chunk sorts this many ints ROUNDS times: about 1 ms of CPU on the reference machine. */
#define N 2048
#define ROUNDS 4

static atomic_long next_chunk;
static long total_chunks;
static volatile long sink;

NOINLINE static int by_value(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;

	return (x > y) - (x < y);
}

NOINLINE static long sort_round(int *v, const int *src)
{
	memcpy(v, src, N * sizeof(*v));
	qsort(v, N, sizeof(*v), by_value);
	return v[N / 2];
}

NOINLINE static long do_chunk(int *v, const int *src)
{
	long r = 0;

	for (int i = 0; i < ROUNDS; i++)
		r += sort_round(v, src);
	return r;
}

static void *worker(void *arg)
{
	int *v = malloc(N * sizeof(*v)), *src = malloc(N * sizeof(*src));
	long r = 0;

	(void)arg;
	for (int i = 0; i < N; i++)
		src[i] = (int)((i * 2654435761u) >> 7);
	while (atomic_fetch_add(&next_chunk, 1) < total_chunks)
		r += do_chunk(v, src);
	sink = r;
	free(v);
	free(src);
	return NULL;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	int threads = 1, opt;
	pthread_t tids[256];
	struct rusage ru;
	double t0, wall;

	total_chunks = 1000;
	while ((opt = getopt(argc, argv, "t:n:")) != -1) {
		if (opt == 't')
			threads = atoi(optarg);
		else if (opt == 'n')
			total_chunks = atol(optarg);
		else
			return 2;
	}
	if (threads < 1 || threads > 256)
		return 2;
	t0 = now();
	for (int i = 0; i < threads; i++)
		pthread_create(&tids[i], NULL, worker, NULL);
	for (int i = 0; i < threads; i++)
		pthread_join(tids[i], NULL);
	wall = now() - t0;
	getrusage(RUSAGE_SELF, &ru);
	printf("wall=%.6f cpu=%.6f chunks=%ld threads=%d\n", wall,
	       ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6,
	       total_chunks, threads);
	return 0;
}
