/* 4 KiB direct random reads from a block device for a fixed time, one at a time (queue depth 1): the
 * IOPS a tracer's per-request cost shows up in.
 *
 *   randread DEV SECONDS    prints "ios=N secs=S iops=X"
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <linux/fs.h>
#include <time.h>
#include <unistd.h>

#define BLOCK 4096

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	uint64_t size, blocks, x = 88172645463325252ULL, ios = 0;
	double secs, start, elapsed;
	void *buf;
	int fd;

	if (argc != 3) {
		fprintf(stderr, "usage: randread DEV SECONDS\n");
		return 2;
	}
	secs = atof(argv[2]);
	fd = open(argv[1], O_RDONLY | O_DIRECT);
	if (fd < 0 || ioctl(fd, BLKGETSIZE64, &size) || posix_memalign(&buf, BLOCK, BLOCK)) {
		perror(argv[1]);
		return 1;
	}
	blocks = size / BLOCK;
	start = now();
	do {
		/* xorshift64: the same offsets every run */
		for (int i = 0; i < 256; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			if (pread(fd, buf, BLOCK, (off_t)(x % blocks) * BLOCK) != BLOCK) {
				perror("pread");
				return 1;
			}
		}
		ios += 256;
		elapsed = now() - start;
	} while (elapsed < secs);
	printf("ios=%llu secs=%.3f iops=%.0f\n", (unsigned long long)ios, elapsed, ios / elapsed);
	return 0;
}
