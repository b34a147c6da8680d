// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * fdwatch: tells from outside when a profiler starts and stops sampling, by watching its perf event fds.
 *
 *   fdwatch [-n MIN] [-i USEC] [-t SECS] [-k KILLPID] [-S] PID
 *
 * Polls /proc/PID/fd every USEC microseconds (default 2000) and prints, on stdout, CLOCK_REALTIME seconds
 * (the clock of bash's $EPOCHREALTIME):
 *   start T   when PID first holds at least MIN (default 1) perf event fds: it is sampling
 *   stop T    when it then holds none while still alive: sampling ended (it is now reporting)
 *   exit T    when PID ended (or became a zombie) before its perf event fds were closed
 * With -S it exits after "start". With -k, KILLPID gets SIGTERM at "stop" (or "exit"): the workload stops
 * when sampling does, so the report step runs on an otherwise idle machine.
 * Exits 0 after "stop"/"exit" (or "start" with -S), 1 if PID does not exist, 2 on bad usage, 3 after
 * SECS seconds (default 600) without the awaited event, 4 if PID ended before it started sampling.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

/* Perf event fds of pid, or -1 if its fd table cannot be read (it exited). */
static int perf_fds(int pid)
{
	char dir[64], path[320], target[128];
	struct dirent *d;
	DIR *dp;
	int n = 0;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", pid);
	dp = opendir(dir);
	if (!dp)
		return -1;
	while ((d = readdir(dp))) {
		ssize_t len;

		if (d->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, d->d_name);
		len = readlink(path, target, sizeof(target) - 1);
		if (len <= 0)
			continue;
		target[len] = 0;
		if (strcmp(target, "anon_inode:[perf_event]") == 0)
			n++;
	}
	closedir(dp);
	return n;
}

static void usage(void)
{
	fprintf(stderr, "usage: fdwatch [-n MIN] [-i USEC] [-t SECS] [-k KILLPID] [-S] PID\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int min = 1, interval = 2000, kill_pid = 0, start_only = 0, started = 0, pid, opt;
	double timeout = 600, deadline;

	while ((opt = getopt(argc, argv, "n:i:t:k:S")) != -1) {
		switch (opt) {
		case 'n':
			min = atoi(optarg);
			break;
		case 'i':
			interval = atoi(optarg);
			break;
		case 't':
			timeout = atof(optarg);
			break;
		case 'k':
			kill_pid = atoi(optarg);
			break;
		case 'S':
			start_only = 1;
			break;
		default:
			usage();
		}
	}
	if (optind != argc - 1 || min < 1 || interval < 100)
		usage();
	pid = atoi(argv[optind]);
	if (pid <= 0 || ended(pid)) {
		fprintf(stderr, "fdwatch: no such process: %s\n", argv[optind]);
		return 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	deadline = monotonic() + timeout;
	for (;;) {
		int n = perf_fds(pid);

		if (n < 0 || ended(pid)) {
			printf("exit %.6f\n", realtime());
			if (kill_pid > 0)
				kill(kill_pid, SIGTERM);
			return started ? 0 : 4;
		}
		if (!started && n >= min) {
			started = 1;
			printf("start %.6f\n", realtime());
			if (start_only)
				return 0;
		} else if (started && n == 0) {
			printf("stop %.6f\n", realtime());
			if (kill_pid > 0)
				kill(kill_pid, SIGTERM);
			return 0;
		}
		if (monotonic() > deadline) {
			fprintf(stderr, "fdwatch: timed out after %.0f s waiting for PID %d to %s sampling\n",
				timeout, pid, started ? "stop" : "start");
			return 3;
		}
		usleep((useconds_t)interval);
	}
}
