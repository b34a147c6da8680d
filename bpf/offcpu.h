/* Types shared by offcpu.bpf.c and user space: the off-CPU, wakeup and offwake tools. */
#ifndef BPFPROF_OFFCPU_H
#define BPFPROF_OFFCPU_H

#include "stacks.h"
#include "memo.h"

/* What the program aggregates (rodata `mode`). */
enum wait_mode {
	MODE_OFFCPU = 0,  /* blocked time by the blocked thread's stack */
	MODE_WAKEUP = 1,  /* blocked time by the waker's stack */
	MODE_OFFWAKE = 2, /* blocked time by both */
};

/* One thread and its stacks at a moment: the blocked thread when it switched out, or its waker. */
struct wait_side {
	__u32 pid; /* tgid */
	__u32 tid;
	__u64 user_stack; /* key in `stacks`, 0 = none */
	__u64 kern_stack;
	__s32 user_err; /* negative errno when the stack was lost, else 0 */
	__s32 kern_err;
	char comm[TASK_COMM_LEN];
};

/* Aggregation key. offcpu fills `target` only; wakeup the waker and the target's comm; offwake both. */
struct wait_key {
	struct wait_side target;
	struct wait_side waker;
	/* --continuous: the window the block ended in ((time - window_base) / window_ns), else 0. */
	__u32 window;
	__u32 _pad;
};

/* Summed per key: nanoseconds blocked, and how many blocks. */
struct wait_val {
	__u64 ns;
	__u64 blocks;
};

/* The stacks a thread blocked with at one place (bpf/memo.h). */
struct memo_pair {
	struct ustack_memo u;
	struct kstack_memo k;
	/* Deferred blocks: the place's blocks were preemptions (the thread still runnable). With the same
	 * user registers a thread both sleeps in a system call and is preempted on its way out of it: two
	 * places, each with its own kernel stack. */
	__u32 running;
	__u32 _pad;
};

/* The places a thread's memos remember: two, as a thread that alternates between two (a read that blocks,
 * and a write that is preempted when it wakes the reader) would miss every time with one. */
#define MEMO_SLOTS 2

/* A thread that switched out: when, and (offcpu, offwake) with what stacks; and the memos of the stacks it
 * blocked with last, at two places, `slot` the one of this block. `ts` is 0 while the thread is on a CPU. */
struct block_start {
	/* What every switch reads and writes first, in one cache line. */
	__u64 ts;
	__u32 slot;
	__u32 deferred;   /* 1: this block's stacks are taken when it ends, not when it begins */
	__u32 kdone;      /* a deferred block whose kernel stack was taken when it began */
	__u32 _pad;
	__u64 uip, usp, ubp; /* a deferred block's user registers when it began */
	__u64 kanchor;    /* where the program's frame was at the block's switch-out (bpf/memo.bpf.h) */
	__u64 pending_ns; /* a deferred block that ended and counts, waiting for its user stack (0: none) */
	__u64 pending_end;
	struct wait_side side;
	struct memo_pair memo[MEMO_SLOTS];
};

#endif
