/* Stack storage types shared by BPF programs and user space (content-addressed stacks). */
#ifndef BPFPROF_STACKS_H
#define BPFPROF_STACKS_H

#define TASK_COMM_LEN 16

/* The kernel's own default for kernel.perf_event_max_stack. */
#define MAX_STACK_DEPTH 127

/* One stored stack: `nr` frames in `ips`, innermost first. */
struct stored_stack {
	__u32 nr;
	__u32 _pad;
	__u64 ips[MAX_STACK_DEPTH];
};

/* A newly stored stack, sent to user space so it can name the frames while sampling goes on. The stack's
 * frames follow the header; only `st.nr` of them are sent. */
struct new_stack_event {
	__u64 id;
	__u32 pid;  /* the process it was first seen in (for user stacks) */
	__u32 user; /* 1: a user stack, 0: a kernel stack */
	struct stored_stack st;
};

/* Sent once per process seen with a user stack, so user space can cache its mappings while it lives. */
struct new_proc_event {
	__u32 pid;
	__u32 kind; /* enum proc_event_kind */
};

enum proc_event_kind {
	PROC_NEW = 0,     /* first seen with a user stack, or exec'd since */
	PROC_REMAPPED = 1, /* unwinding met code in no mapping known for it (dlopen, JIT): read them again */
};

/* Indexes into the per-CPU `stats` array: every loss is counted here and printed by user space. */
enum stat_idx {
	STAT_SAMPLES = 0,       /* samples that passed the filters */
	STAT_USTACK_ERR,        /* bpf_get_stack failed for a user stack */
	STAT_KSTACK_ERR,        /* bpf_get_stack failed for a kernel stack */
	STAT_STACKS_FULL,       /* stack storage map full: stack lost */
	STAT_STACK_COLLISION,   /* two different stacks with one 64-bit hash: the newer one lost */
	STAT_COUNTS_FULL,       /* aggregation map full: sample lost */
	STAT_PROC_EVENTS_LOST,  /* ring buffer full: a new process not announced to user space */
	STAT_STACK_EVENTS_LOST, /* ring buffer full: a new stack is read from the map at the end instead */
	STAT_START_FULL,        /* off-CPU tools: too many blocked threads at once; one block not timed */
	STAT_WAKER_FULL,        /* offwake: too many pending wakeups at once; one waker not recorded */
	STAT_UNWOUND,           /* user stacks walked with unwind tables (--unwind dwarf/auto) */
	STAT_FP_WHOLE,          /* auto: user stacks walked with frame pointers (their tables not loaded yet) */
	STAT_FP_FRAMES,         /* auto: frames followed by frame pointer where their code has no CFI */
	STAT_UNWIND_END,        /* + enum unwind_end: how table-walked stacks ended (UNWIND_COMPLETE: whole) */
	STAT_UMEMO_HITS = STAT_UNWIND_END + 10, /* (after UNWIND_REASONS) user stacks reused from a memo */
	STAT_KMEMO_HITS,        /* kernel stacks reused from a memo (bpf/memo.h) */
	STAT_UNENDED,           /* off-CPU tools: blocks lost, their thread back on a CPU unseen by sched_switch */
	STAT_LATE_USTACK,       /* offcpu: blocks counted without their user stack, taken late (offcpu.bpf.c) */
	STAT_KSTACK_LATE,       /* offcpu: kernel stacks taken at a switch-in, without the scheduler's frames */
	STAT_DEFERRED,          /* offcpu: blocks counted whose stacks were taken when they ended */
	STAT_MAX,
};

#endif
