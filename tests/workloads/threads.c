/* Test workload: two threads with known work. `threads SECS`: prints "ready TID_A TID_B", then thread A spins
 * in thread_a_work and thread B in thread_b_work (main -> ... -> start_thread -> thread_X -> thread_X_work)
 * until SECS have passed. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))

static double secs;
static pid_t tids[2];
static pthread_barrier_t started;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

NOINLINE void thread_a_work(void)
{
	for (volatile unsigned long i = 0; i < 100000; i++)
		;
}

NOINLINE void thread_b_work(void)
{
	for (volatile unsigned long i = 0; i < 100000; i++)
		;
}

static void *run(void *arg)
{
	long which = (long)arg;
	double end;

	tids[which] = (pid_t)syscall(SYS_gettid);
	pthread_barrier_wait(&started);
	end = now() + secs;
	while (now() < end) {
		if (which == 0)
			thread_a_work();
		else
			thread_b_work();
	}
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t t[2];

	if (argc != 2) {
		fprintf(stderr, "usage: threads SECS\n");
		return 2;
	}
	secs = atof(argv[1]);
	pthread_barrier_init(&started, NULL, 3);
	for (long i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, run, (void *)i);
	pthread_barrier_wait(&started);
	printf("ready %d %d\n", tids[0], tids[1]);
	fflush(stdout);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	return 0;
}
