// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * burn: a fixed amount of CPU work shared by N threads, for measuring a profiler's overhead.
 *
 *   burn [-t THREADS] [-n CHUNKS]
 *
 * The work is CHUNKS chunks of a hash loop spread over a few named functions (so that a profile has
 * something to show). Threads take chunks from a shared counter until none are left, so the machine's whole
 * throughput is measured: CPU time a profiler steals on any CPU (its interrupt handler, its own process)
 * lengthens the run, however the scheduler places the threads.
 *
 * Prints one line to stdout:  wall=SECONDS cpu=SECONDS chunks=N threads=N checksum=HEX
 * (wall: from the threads' start to the last chunk's end; cpu: user+system time of the whole process).
 *
 * Build with frame pointers (see lib.sh: bench_cc).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))

/* One chunk is OUTER rounds of fold_block; about 1 ms of CPU on the reference machine. */
#define OUTER 4096
#define BLOCK 256

static atomic_long next_chunk;
static long total_chunks;

NOINLINE static uint64_t mix64(uint64_t h)
{
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebULL;
	h ^= h >> 31;
	return h;
}

NOINLINE static uint64_t fold_block(uint64_t seed, const uint32_t *block)
{
	uint64_t h = seed;

	for (int i = 0; i < BLOCK; i++)
		h = (h ^ block[i]) * 0x100000001b3ULL; /* FNV-1a style */
	return mix64(h);
}

NOINLINE static uint64_t checksum_round(uint64_t seed, uint32_t *block)
{
	uint64_t h = seed;

	for (int r = 0; r < OUTER; r++) {
		h = fold_block(h, block);
		block[r % BLOCK] ^= (uint32_t)h;
	}
	return h;
}

NOINLINE static uint64_t do_chunk(long chunk, uint32_t *block)
{
	return checksum_round(mix64((uint64_t)chunk + 1), block);
}

static void *worker(void *arg)
{
	uint64_t *out = arg;
	uint32_t block[BLOCK];
	uint64_t acc = 0;
	long c;

	for (int i = 0; i < BLOCK; i++)
		block[i] = (uint32_t)mix64((uint64_t)i);
	while ((c = atomic_fetch_add_explicit(&next_chunk, 1, memory_order_relaxed)) < total_chunks)
		acc ^= do_chunk(c, block);
	*out = acc;
	return NULL;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long parse_long(const char *s, const char *what)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v <= 0) {
		fprintf(stderr, "burn: bad %s: %s\n", what, s);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	long threads = 2;
	pthread_t tids[64];
	uint64_t results[64] = { 0 }, sum = 0;
	struct rusage ru;
	double t0, t1, cpu;
	int opt;

	total_chunks = 12000;
	while ((opt = getopt(argc, argv, "t:n:")) != -1) {
		switch (opt) {
		case 't':
			threads = parse_long(optarg, "thread count");
			break;
		case 'n':
			total_chunks = parse_long(optarg, "chunk count");
			break;
		default:
			fprintf(stderr, "usage: burn [-t THREADS] [-n CHUNKS]\n");
			return 2;
		}
	}
	if (threads > 64) {
		fprintf(stderr, "burn: at most 64 threads\n");
		return 2;
	}

	t0 = now();
	for (long i = 0; i < threads; i++) {
		int err = pthread_create(&tids[i], NULL, worker, &results[i]);

		if (err) {
			fprintf(stderr, "burn: pthread_create: %s\n", strerror(err));
			return 1;
		}
	}
	for (long i = 0; i < threads; i++) {
		pthread_join(tids[i], NULL);
		sum ^= results[i];
	}
	t1 = now();
	getrusage(RUSAGE_SELF, &ru);
	cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	      (double)ru.ru_stime.tv_usec / 1e6;
	printf("wall=%.4f cpu=%.4f chunks=%ld threads=%ld checksum=%016llx\n", t1 - t0, cpu, total_chunks,
	       threads, (unsigned long long)sum);
	return 0;
}
