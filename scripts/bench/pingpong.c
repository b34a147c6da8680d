/* Benchmark workload: a pipe ping-pong between two threads, as many context switches a second as the
 * kernel can make. `pingpong -n ROUNDS`: thread "ping" writes a byte to pipe A and reads one from pipe B,
 * thread "pong" the reverse, ROUNDS times. Pin it to one CPU (taskset -c 0) so that every round is two
 * direct switches, never an idle CPU in between. Prints "wall=SECONDS rounds=N switches=S" where S is the
 * context switches (voluntary and not) both threads made.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

static int a[2], b[2];
static long rounds;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static long context_switches(pid_t tid)
{
	char path[64], line[256];
	long n = 0, v;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%d/status", tid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "voluntary_ctxt_switches: %ld", &v) == 1 ||
		    sscanf(line, "nonvoluntary_ctxt_switches: %ld", &v) == 1)
			n += v;
	fclose(f);
	return n;
}

static pid_t pong_tid;
static long pong_switches;

__attribute__((noinline)) static void pong_once(char *c)
{
	if (read(a[0], c, 1) != 1 || write(b[1], c, 1) != 1)
		exit(1);
}

static void *pong(void *arg)
{
	char c;

	(void)arg;
	prctl(PR_SET_NAME, "pong");
	pong_tid = gettid();
	for (long i = 0; i < rounds; i++)
		pong_once(&c);
	pong_switches = context_switches(pong_tid);
	return NULL;
}

__attribute__((noinline)) static void ping_once(char *c)
{
	if (write(a[1], c, 1) != 1 || read(b[0], c, 1) != 1)
		exit(1);
}

int main(int argc, char **argv)
{
	pthread_t t;
	double t0, t1;
	long s0;
	char c = 'x';

	rounds = argc == 3 && strcmp(argv[1], "-n") == 0 ? atol(argv[2]) : 0;
	if (rounds <= 0) {
		fprintf(stderr, "usage: pingpong -n ROUNDS\n");
		return 2;
	}
	if (pipe(a) || pipe(b))
		return 1;
	prctl(PR_SET_NAME, "ping");
	s0 = context_switches(gettid());
	if (pthread_create(&t, NULL, pong, NULL))
		return 1;
	t0 = now();
	for (long i = 0; i < rounds; i++)
		ping_once(&c);
	t1 = now();
	pthread_join(t, NULL);
	printf("wall=%.6f rounds=%ld switches=%ld\n", t1 - t0, rounds,
	       context_switches(gettid()) - s0 + pong_switches);
	return 0;
}
