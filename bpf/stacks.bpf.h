/* Content-addressed stack storage: bpf_get_stack into a per-CPU buffer, hashed, stored once per distinct stack.
 *
 * bcc and libbpf-tools use BPF_MAP_TYPE_STACK_TRACE, which loses a stack on every bucket collision (-EEXIST)
 * long before the map is full. Here a stack is keyed by a 64-bit hash of its frames; a stored stack is compared
 * frame by frame, so a true hash collision is detected and counted rather than merged into the wrong stack.
 */
#ifndef BPFPROF_STACKS_BPF_H
#define BPFPROF_STACKS_BPF_H

#include "stacks.h"

#ifndef EEXIST
#define EEXIST 17
#endif
#ifndef EFAULT
#define EFAULT 14
#endif

/* Frames to capture (<= MAX_STACK_DEPTH), from --perf-max-stack-depth. */
const volatile __u32 max_stack_depth = MAX_STACK_DEPTH;

/* Per-CPU scratch: a new-stack event whose `st` is captured in place, stored and sent without a copy. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct new_stack_event);
} stack_scratch SEC(".maps");

/* New stacks, for user space to name while sampling. Only an accelerator: one that does not fit is read
 * from `stacks` at the end. */
#define STACK_EVENTS_SIZE (4 * 1024 * 1024)
#define STACK_EVENTS_WAKE (STACK_EVENTS_SIZE / 4)

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, STACK_EVENTS_SIZE);
} stack_events SEC(".maps");

/* max_entries is set by user space from --stack-storage-size. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct stored_stack);
} stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);

	if (v)
		*v += 1; /* per-CPU slot: no atomics needed */
}

/* A 64-bit mix (the finaliser of splitmix64): cheap, and every input bit reaches every output bit. */
static __always_inline __u64 mix64(__u64 h)
{
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebULL;
	h ^= h >> 31;
	return h;
}

/*
 * Stores the stack captured in `ev->st` (`nr` frames, innermost first) of process `pid`, once per distinct
 * stack, and announces a new one to user space. Returns 0 with *id = the stack's key, or a negative errno
 * when the stack is lost (counted under STAT_STACKS_FULL or STAT_STACK_COLLISION).
 */
static __always_inline long stack_store(struct new_stack_event *ev, __u32 nr, __u32 pid, bool user, __u64 *id)
{
	struct stored_stack *st = &ev->st, *old;
	__u64 h = 0x9e3779b97f4a7c15ULL, size;
	__u32 i;
	long err;

	if (nr > MAX_STACK_DEPTH)
		nr = MAX_STACK_DEPTH;
	st->nr = nr;
	for (i = 0; i < MAX_STACK_DEPTH; i++) {
		if (i >= nr)
			break;
		h = mix64(h ^ st->ips[i]);
	}
	/* 63 bits: ids are never negative, so a function can return one or an errno (bpf/ustack.bpf.c). */
	h = mix64(h ^ nr) >> 1;
	if (h == 0)
		h = 1; /* 0 means "no stack" */

	old = bpf_map_lookup_elem(&stacks, &h);
	if (old) {
		if (old->nr != nr)
			goto collision;
		for (i = 0; i < MAX_STACK_DEPTH; i++) {
			if (i >= nr)
				break;
			if (old->ips[i] != st->ips[i])
				goto collision;
		}
		*id = h;
		return 0;
	}
	err = bpf_map_update_elem(&stacks, &h, st, BPF_NOEXIST);
	if (err == -EEXIST) { /* another CPU stored it first */
		*id = h;
		return 0;
	}
	if (err) {
		stat_inc(STAT_STACKS_FULL);
		return err;
	}
	*id = h;
	ev->id = h;
	ev->pid = pid;
	ev->user = user ? 1 : 0;
	size = sizeof(*ev) - sizeof(st->ips) + nr * sizeof(__u64);
	/* Seen as a fresh bound by the verifier (clang may test a copy of size, not the register passed). */
	barrier_var(size);
	if (size > sizeof(*ev))
		size = sizeof(*ev);
	barrier_var(size);
	/* User space polls this ring every 100 ms: woken for each new stack, it would cost more than the
	 * stack (an irq_work, a self-IPI: ~5 us of each new stack in a VM, measured with sortburn at 999 Hz).
	 * It is woken early only once the ring holds a quarter of its size. */
	if (bpf_ringbuf_output(&stack_events, ev, size,
			       bpf_ringbuf_query(&stack_events, BPF_RB_AVAIL_DATA) >= STACK_EVENTS_WAKE ?
				       BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP))
		stat_inc(STAT_STACK_EVENTS_LOST);
	return 0;

collision:
	stat_inc(STAT_STACK_COLLISION);
	return -EEXIST;
}

/*
 * stack_store of the stack captured in this CPU's stack_scratch, as a global function: the verifier checks
 * it once, on its own, instead of at each caller (inlined, its two loops are walked once per possible
 * frame count: a program with three stores passed the verifier's million-instruction limit). Returns the
 * stack's id (ids are 63 bits: never negative) or a negative errno.
 */
__noinline long bpfprof_stack_store(__u32 nr, __u32 pid, __u32 user)
{
	__u32 zero = 0;
	struct new_stack_event *ev = bpf_map_lookup_elem(&stack_scratch, &zero);
	__u64 id = 0;
	long err;

	if (!ev)
		return -EFAULT;
	err = stack_store(ev, nr, pid, user, &id);
	return err ? err : (long)id;
}

/* Stores the stack in this CPU's stack_scratch (`nr` frames): 0 with *id its key, or a negative errno. */
static __always_inline long stack_store_scratch(__u32 nr, __u32 pid, bool user, __u64 *id)
{
	long r = bpfprof_stack_store(nr, pid, user);

	if (r < 0)
		return r;
	*id = r;
	return 0;
}

/* The frames to capture: --perf-max-stack-depth, within what a stored stack holds. */
static __always_inline __u32 stack_depth(void)
{
	__u32 depth = max_stack_depth;

	if (depth > MAX_STACK_DEPTH || depth == 0)
		depth = MAX_STACK_DEPTH;
	return depth;
}

/* Stores the stack a bpf_get_stack-like helper wrote to stack_scratch, given what it returned (`n`:
 * bytes, or an errno). As stack_capture returns. */
static __always_inline long stack_store_captured(long n, __u32 pid, bool user, __u64 *id, __u32 lost_stat)
{
	if (n == -EFAULT || n == 0)
		return 0; /* no stack of this kind: not a loss */
	if (n < 0) {
		stat_inc(lost_stat);
		return n;
	}
	return stack_store_scratch(n / sizeof(__u64), pid, user, id);
}

/*
 * Captures the current stack with bpf_get_stack (BPF_F_USER_STACK in flags for the user one: frame
 * pointers) of process `pid` and stores it. Returns 0 with *id = 0 when there is no stack (a kernel
 * thread's user stack, the kernel stack of a sample taken in user mode), 0 with *id = the stack's key when
 * stored, or a negative errno when the stack is lost (the loss is counted in `stats` under lost_stat, or
 * STAT_STACKS_FULL / STAT_STACK_COLLISION).
 */
static __always_inline long stack_capture(void *ctx, __u64 flags, __u32 pid, __u64 *id, __u32 lost_stat)
{
	__u32 zero = 0;
	struct new_stack_event *ev;
	long n;

	*id = 0;
	ev = bpf_map_lookup_elem(&stack_scratch, &zero);
	if (!ev)
		return -EFAULT;
	n = bpf_get_stack(ctx, ev->st.ips, stack_depth() * sizeof(__u64), flags);
	return stack_store_captured(n, pid, flags & BPF_F_USER_STACK, id, lost_stat);
}

/* As stack_capture, the kernel stack of a task switched out (bpf_get_task_stack, 5.9+: from where it
 * called into the scheduler). Only for programs whose task pointers the verifier trusts (tp_btf). */
static __always_inline long task_stack_capture(struct task_struct *task, __u32 pid, __u64 *id, __u32 lost_stat)
{
	__u32 zero = 0;
	struct new_stack_event *ev;
	long n;

	*id = 0;
	ev = bpf_map_lookup_elem(&stack_scratch, &zero);
	if (!ev)
		return -EFAULT;
	n = bpf_get_task_stack(task, ev->st.ips, stack_depth() * sizeof(__u64), 0);
	return stack_store_captured(n, pid, false, id, lost_stat);
}

#endif
