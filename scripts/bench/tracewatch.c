// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * tracewatch: tells from outside when a tracer has really attached its tracepoints, and how long it takes to
 * stop, so that bpftrace-like tools are timed alike whatever they print and when.
 *
 *   tracewatch [-n N] [-i USEC] [-t SECS] PID OUT        launch phase
 *   tracewatch -s SIG [-i USEC] [-t SECS] PID OUT        stop phase
 *
 * PID is the tracer, OUT the file its standard output goes to. Polls every USEC microseconds (default 1000)
 * and prints, on stdout, CLOCK_REALTIME seconds (the clock of bash's $EPOCHREALTIME):
 *   launch phase:
 *     line T       OUT has a line starting with "Attaching " (both tools print "Attaching N probes...";
 *                  bpftrace before it loads and attaches its programs, bpfprof after)
 *     attached T   PID holds perf events of N distinct tracepoints with a BPF program attached
 *                  (BPF_TASK_FD_QUERY on its fds, as `bpftool perf` does): it is tracing them all
 *     progs ID...  the ids of those programs (for their kernel.bpf_stats_enabled figures)
 *   stop phase (sends SIG to PID first):
 *     signal T     SIG sent
 *     output T     OUT grew: the tracer printed its maps
 *     exit T       PID ended (or became a zombie): its perf events are closed, its programs detached
 *   both: "cpu S", the CPU seconds tracewatch itself used (other load, for the noise check).
 * Exits 0 when its phase is complete, 1 if PID does not exist, 2 on bad usage, 3 after SECS seconds (default
 * 120; the stop phase then kills PID), 4 if PID ended before attaching.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_FD 65536
#define MAX_TP 8192
#define MAX_PROGS 8192

static double realtime(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double monotonic(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void print_cpu(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	printf("cpu %.6f\n", (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
				     (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
}

/* 1 if the process is gone or a zombie. */
static int ended(int pid)
{
	char path[64], buf[512], *p;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return 1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	p = strrchr(buf, ')'); /* comm may hold spaces and parentheses */
	return !p || p[1] == 0 || p[2] == 'Z' || p[2] == 'X';
}

/* 1 if OUT holds a line starting with "Attaching " within its first 4 KiB. */
static int has_line(const char *out)
{
	char buf[4096];
	ssize_t n;
	int fd = open(out, O_RDONLY);

	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	return strncmp(buf, "Attaching ", 10) == 0 || strstr(buf, "\nAttaching ") != NULL;
}

static long long file_size(const char *out)
{
	struct stat st;

	return stat(out, &st) == 0 ? (long long)st.st_size : -1;
}

/* Tracepoints seen attached so far (names as BPF_TASK_FD_QUERY gives them), and the fds already counted. */
static char *tps[MAX_TP];
static int n_tps;
static unsigned char counted[MAX_FD];
static unsigned int progs[MAX_PROGS];
static int n_progs;

/* Queries every fd of pid not counted yet; returns the number of distinct tracepoints with a program, or
 * -1 if the fd table cannot be read (it exited). A tracer may hold two fds of one event (a dup): the names
 * make them count once. */
static int attached_tracepoints(int pid)
{
	char dir[64], name[256];
	struct dirent *d;
	DIR *dp;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", pid);
	dp = opendir(dir);
	if (!dp)
		return -1;
	while ((d = readdir(dp))) {
		union bpf_attr attr;
		int fd, i;

		if (d->d_name[0] == '.')
			continue;
		fd = atoi(d->d_name);
		if (fd < 0 || fd >= MAX_FD || counted[fd])
			continue;
		memset(&attr, 0, sizeof(attr));
		attr.task_fd_query.pid = (unsigned int)pid;
		attr.task_fd_query.fd = (unsigned int)fd;
		attr.task_fd_query.buf = (unsigned long)name;
		attr.task_fd_query.buf_len = sizeof(name);
		if (syscall(__NR_bpf, BPF_TASK_FD_QUERY, &attr, sizeof(attr)) != 0)
			continue; /* not a perf event, or no program on it yet */
		if (attr.task_fd_query.fd_type != BPF_FD_TYPE_TRACEPOINT)
			continue;
		counted[fd] = 1;
		for (i = 0; i < n_progs && progs[i] != attr.task_fd_query.prog_id; i++)
			;
		if (i == n_progs && n_progs < MAX_PROGS)
			progs[n_progs++] = attr.task_fd_query.prog_id;
		name[sizeof(name) - 1] = 0;
		for (i = 0; i < n_tps && strcmp(tps[i], name) != 0; i++)
			;
		if (i == n_tps && n_tps < MAX_TP)
			tps[n_tps++] = strdup(name);
	}
	closedir(dp);
	return n_tps;
}

static void usage(void)
{
	fprintf(stderr, "usage: tracewatch [-n N | -s SIG] [-i USEC] [-t SECS] PID OUT\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int want = 0, sig = 0, interval = 1000, pid, opt, line = 0, attached = 0, output = 0;
	double timeout = 120, deadline;
	const char *out;
	long long size0;

	while ((opt = getopt(argc, argv, "n:s:i:t:")) != -1) {
		switch (opt) {
		case 'n':
			want = atoi(optarg);
			break;
		case 's':
			sig = atoi(optarg);
			break;
		case 'i':
			interval = atoi(optarg);
			break;
		case 't':
			timeout = atof(optarg);
			break;
		default:
			usage();
		}
	}
	if (optind != argc - 2 || want < 0 || sig < 0 || (want > 0 && sig > 0) || interval < 100)
		usage();
	pid = atoi(argv[optind]);
	out = argv[optind + 1];
	if (pid <= 0 || ended(pid)) {
		fprintf(stderr, "tracewatch: no such process: %s\n", argv[optind]);
		return 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	deadline = monotonic() + timeout;

	if (sig > 0) { /* stop phase */
		size0 = file_size(out);
		kill(pid, sig);
		printf("signal %.6f\n", realtime());
		for (;;) {
			if (!output && file_size(out) > size0) {
				output = 1;
				printf("output %.6f\n", realtime());
			}
			if (ended(pid)) {
				if (!output && file_size(out) > size0)
					printf("output %.6f\n", realtime());
				printf("exit %.6f\n", realtime());
				print_cpu();
				return 0;
			}
			if (monotonic() > deadline) {
				fprintf(stderr, "tracewatch: PID %d still runs %.0f s after signal %d: killing it\n",
					pid, timeout, sig);
				kill(pid, SIGKILL);
				print_cpu();
				return 3;
			}
			usleep((useconds_t)interval);
		}
	}

	for (;;) { /* launch phase */
		int n = want > 0 ? attached_tracepoints(pid) : 0;

		if (!line && has_line(out)) {
			line = 1;
			printf("line %.6f\n", realtime());
		}
		if (want > 0 && !attached && n >= want) {
			attached = 1;
			printf("attached %.6f\nprogs", realtime());
			for (int i = 0; i < n_progs; i++)
				printf(" %u", progs[i]);
			printf("\n");
		}
		if (line && (attached || want == 0)) {
			print_cpu();
			return 0;
		}
		if (n < 0 || ended(pid)) {
			printf("exit %.6f\n", realtime());
			print_cpu();
			return 4;
		}
		if (monotonic() > deadline) {
			fprintf(stderr, "tracewatch: timed out after %.0f s: %s%d of %d tracepoints attached\n",
				timeout, line ? "" : "no \"Attaching\" line, ", n_tps, want);
			print_cpu();
			return 3;
		}
		usleep((useconds_t)interval);
	}
}
