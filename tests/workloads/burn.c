/* Test workload with known behaviour: built with frame pointers, every function noinline, so stacks are exact.
 *
 *   burn cpu SECS   spin in hot_two_thirds and hot_one_third, whose CPU time is exactly 2:1
 *                   (main -> work_loop -> hot_* -> spin)
 *   burn swapped SECS  the same with the work swapped: hot_two_thirds:hot_one_third is 1:2 (a profile
 *                   that changed, for diff)
 *   burn sys SECS   read /dev/zero in 1 MiB chunks with a raw syscall instruction, so that the user caller
 *                   read_zeros is on the stack while the kernel copies (main -> sys_loop -> read_zeros)
 *
 * Prints "ready" on stdout once running, and exits 0 after SECS seconds.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))
#define UNIT 100000UL /* spin iterations per unit of work: well under a millisecond */

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

NOINLINE void spin(unsigned long n)
{
	for (volatile unsigned long i = 0; i < n; i++)
		;
}

/* 1 in "swapped" mode: the two functions' work is exchanged. */
static int swapped;

NOINLINE void hot_two_thirds(void)
{
	spin((swapped ? 1 : 2) * UNIT);
}

NOINLINE void hot_one_third(void)
{
	spin((swapped ? 2 : 1) * UNIT);
}

NOINLINE void work_loop(double secs)
{
	double end = now() + secs;

	while (now() < end) {
		hot_two_thirds();
		hot_one_third();
	}
}

NOINLINE long read_zeros(int fd, char *buf, unsigned long len)
{
	long ret;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "0"((long)SYS_read), "D"((long)fd), "S"(buf), "d"(len)
			 : "rcx", "r11", "memory");
	return ret;
}

NOINLINE void sys_loop(double secs)
{
	static char buf[1 << 20];
	double end = now() + secs;
	int fd = open("/dev/zero", O_RDONLY);

	if (fd < 0) {
		perror("open /dev/zero");
		exit(1);
	}
	while (now() < end) {
		if (read_zeros(fd, buf, sizeof(buf)) < 0) {
			fprintf(stderr, "read failed\n");
			exit(1);
		}
	}
	close(fd);
}

int main(int argc, char **argv)
{
	double secs;

	if (argc != 3 || (strcmp(argv[1], "cpu") && strcmp(argv[1], "sys") && strcmp(argv[1], "swapped"))) {
		fprintf(stderr, "usage: burn cpu|swapped|sys SECS\n");
		return 2;
	}
	secs = atof(argv[2]);
	swapped = !strcmp(argv[1], "swapped");
	printf("ready\n");
	fflush(stdout);
	if (strcmp(argv[1], "sys"))
		work_loop(secs);
	else
		sys_loop(secs);
	return 0;
}
