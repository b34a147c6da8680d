/* Types shared by profile.bpf.c and user space. */
#ifndef BPFPROF_PROFILE_H
#define BPFPROF_PROFILE_H

#include "stacks.h"

/* Aggregation key: one count per (process, thread, comm, user stack, kernel stack). */
struct sample_key {
	__u32 pid; /* tgid */
	__u32 tid;
	__u64 user_stack; /* key in `stacks`, 0 = none */
	__u64 kern_stack;
	__s32 user_err; /* negative errno when the user stack was lost, else 0 */
	__s32 kern_err;
	char comm[TASK_COMM_LEN];
	/* --continuous: the window the sample fell in ((time - window_base) / window_ns), else 0. */
	__u32 window;
	__u32 _pad;
};

#endif
