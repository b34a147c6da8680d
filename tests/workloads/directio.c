/* Test workload with a known number of block I/Os, for biolatency.
 *
 *   directio PATH READS WRITES [BATCHES [FSYNCS]]
 *     opens PATH (a block device) with O_DIRECT, prints "ready", waits for a line on stdin (the tracer is
 *     attached), then issues READS reads and WRITES writes of 4 KiB, each at its own 4 KiB-aligned offset,
 *     one at a time (so none merge), in BATCHES equal rounds 300 ms apart (default 1), then FSYNCS fsyncs
 *     (default 0), and exits.
 * Each read or write is exactly one request to the device; each fsync one flush (a loop device has a
 * volatile write cache).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BLOCK 4096

int main(int argc, char **argv)
{
	char line[16];
	void *buf;
	long reads, writes, batches = 1, fsyncs = 0, off = 0;
	int fd;

	if (argc < 4) {
		fprintf(stderr, "usage: directio PATH READS WRITES [BATCHES]\n");
		return 2;
	}
	reads = atol(argv[2]);
	writes = atol(argv[3]);
	if (argc > 4)
		batches = atol(argv[4]);
	if (argc > 5)
		fsyncs = atol(argv[5]);
	fd = open(argv[1], O_RDWR | O_DIRECT);
	if (fd < 0 || posix_memalign(&buf, BLOCK, BLOCK)) {
		perror(argv[1]);
		return 1;
	}
	memset(buf, 0x5a, BLOCK);
	printf("ready\n");
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		return 1;
	for (long b = 0; b < batches; b++) {
		for (long i = b * reads / batches; i < (b + 1) * reads / batches; i++, off += BLOCK) {
			if (pread(fd, buf, BLOCK, off) != BLOCK) {
				perror("pread");
				return 1;
			}
		}
		for (long i = b * writes / batches; i < (b + 1) * writes / batches; i++, off += BLOCK) {
			if (pwrite(fd, buf, BLOCK, off) != BLOCK) {
				perror("pwrite");
				return 1;
			}
		}
		if (b + 1 < batches) {
			struct timespec ts = { 0, 300 * 1000000L };
			nanosleep(&ts, NULL);
		}
	}
	for (long i = 0; i < fsyncs; i++) {
		if (fsync(fd)) {
			perror("fsync");
			return 1;
		}
	}
	return 0;
}
