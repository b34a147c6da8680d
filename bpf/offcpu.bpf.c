// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * offcpu, wakeup, offwake: time threads spend blocked, summed in the kernel by the blocked thread's stack
 * (offcpu), by the stack of the thread that woke it (wakeup), or by both (offwake).
 *
 * sched_switch: the thread switching out is stamped (and its stacks captured: at this tracepoint it is still
 * `current`); the thread switching in is looked up, and its blocked time added (offcpu, offwake).
 * sched_waking runs in the waker's context: the waker's stacks are captured there (wakeup, offwake).
 *
 * Each hook exists twice: tp_btf (5.5+) and raw_tp; user space loads one of the two (set_autoload).
 * Both read the task through CO-RE, so one body serves both.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "offcpu.h"
#include "stacks.bpf.h"
#include "procs.bpf.h"
#include "unwind.bpf.h"
#include "memo.bpf.h"
#include "core_fixes.bpf.h"
#include "filters.bpf.h"

#define PF_KTHREAD 0x00200000 /* include/linux/sched.h */
#define TASK_DEAD 0x00000080

const volatile __u32 mode = MODE_OFFCPU;
const volatile bool user_stacks_only = false;
const volatile bool kernel_stacks_only = false;
const volatile bool user_threads_only = false;
const volatile bool kernel_threads_only = false;
/* -1: any state; 0: TASK_RUNNING only (preempted); else a bitmask of states (bcc's --state). */
const volatile __s64 state_filter = -1;
const volatile __u64 min_block_ns = 0;
const volatile __u64 max_block_ns = ~0ULL;
/* --sample N: one block in N is traced (chosen at random when it begins), the others cost nothing more. */
const volatile __u32 sample_every = 1;
/* Benchmarks only (BPFPROF_BENCH_EMPTY): the scheduler programs return at once, which the verifier reduces
 * to an empty program: the cost of the tracepoint's dispatch alone, the floor under every flag. */
const volatile bool bench_empty = false;

/* The end of the traced window in bpf_ktime_get_ns() time (0: closed), set by user space when it opens
 * the window (once it has loaded the kernel's symbols, after the programs, whose names must be in that
 * snapshot: seconds on a slow machine) to the duration's end, and to 0 at Ctrl-C. Checked here, so that
 * neither a slow user space nor the detaching (RCU grace periods) stretches it. Outside it nothing is
 * stamped or counted: a block counts if it began and ended inside, as if the programs were attached only
 * then. */
volatile __u64 window_end = 0;
/* --continuous: windows of window_ns nanoseconds from window_base (set with window_end). A block is
 * counted in the window it ends in. */
const volatile __u64 window_ns = 0;
volatile __u64 window_base = 0;

/* When each traced thread last went off-CPU (ts 0: it is on a CPU), by tid, from its first traced switch
 * to its exit. max_entries is set by user space. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct block_start);
} start SEC(".maps");

/* offwake: the waker of each thread woken but not yet back on a CPU, by the woken tid. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct wait_side);
} wokeby SEC(".maps");

/* max_entries is set by user space. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct wait_key);
	__type(value, struct wait_val);
} counts SEC(".maps");

/* Per-CPU scratch for keys and starts: too large to build on the 512-byte BPF stack next to the rest. */
struct scratch {
	struct wait_key key;
	struct block_start start;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch_buf SEC(".maps");

static __always_inline bool traced(struct task_struct *t, __u32 tgid, __u32 tid, __u32 state)
{
	__u32 flags;

	if (tid == 0)
		return false; /* the idle task: its "blocked" time is the CPU's busy time */
	if (!target_allowed(tgid, tid))
		return false; /* (on_switch asked first; on_waking's tasks have entries only if they passed) */
	if (user_threads_only || kernel_threads_only) {
		flags = BPF_CORE_READ(t, flags);
		if (user_threads_only && (flags & PF_KTHREAD))
			return false;
		if (kernel_threads_only && !(flags & PF_KTHREAD))
			return false;
	}
	if (state_filter == 0 && state != 0)
		return false;
	if (state_filter > 0 && !(state & (__u32)state_filter))
		return false;
	return true;
}

/* The memo slot for the block beginning now: the one whose user stack began at the same registers, else
 * the one not used last. The registers are left in this CPU's walk_state; *regs_ok says whether they
 * could be read. */
static __always_inline __u32 memo_slot(struct block_start *b, bool *regs_ok)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u32 zero = 0, i;
	struct walk_state *st = bpf_map_lookup_elem(&unwind_walk, &zero);

	*regs_ok = false;
	if (!st || !BPF_CORE_READ(task, mm) || !user_regs(task, st))
		return (b->slot + 1) % MEMO_SLOTS;
	*regs_ok = true;
	for (i = 0; i < MEMO_SLOTS; i++) {
		if (b->memo[i].u.ip == st->pc && b->memo[i].u.sp == st->sp && b->memo[i].u.bp == st->bp)
			return i;
	}
	return (b->slot + 1) % MEMO_SLOTS;
}

/* Fills `side` with the current thread, going off-CPU, and its stacks as chosen, each through the thread's
 * memo (bpf/memo.bpf.h). `anchor`: a slot of the program's own frame. */
static __always_inline void capture_blocked(void *ctx, struct block_start *b, bool kthread, __u64 anchor)
{
	struct kstack_memo *km;
	struct new_stack_event *ev;
	__u32 zero = 0;
	struct wait_side *side = &b->side;
	__u64 id = bpf_get_current_pid_tgid();

	side->pid = id >> 32;
	side->tid = (__u32)id;
	bpf_get_current_comm(&side->comm, sizeof(side->comm));
	side->user_stack = 0;
	side->kern_stack = 0;
	side->user_err = 0;
	side->kern_err = 0;
	if (!kernel_stacks_only && !kthread) {
		bool reused = false, regs_ok;
		__u32 slot = memo_slot(b, &regs_ok);

		b->slot = slot;
		side->user_err = user_stack_capture_memo(ctx, side->pid, &b->memo[slot].u, &side->user_stack,
							 STAT_USTACK_ERR, regs_ok, &reused);
		/* A stack reused from the memo was announced when it was walked. */
		if (side->user_stack && !reused)
			announce_proc(side->pid);
	}
	if (user_stacks_only)
		return;
	km = &b->memo[b->slot % MEMO_SLOTS].k;
	if (kmemo_check(anchor, km, &side->kern_stack))
		return;
	side->kern_err = stack_capture(ctx, 0, side->pid, &side->kern_stack, STAT_KSTACK_ERR);
	ev = bpf_map_lookup_elem(&stack_scratch, &zero);
	if (side->kern_stack && ev)
		kmemo_fill(anchor, km, ev->st.nr, side->kern_stack);
	else
		km->id = 0;
}

/* Fills `side` with the current thread (a waker) and, as chosen, its stacks. */
static __always_inline void capture_current(void *ctx, struct wait_side *side, bool kthread)
{
	__u64 id = bpf_get_current_pid_tgid();

	side->pid = id >> 32;
	side->tid = (__u32)id;
	bpf_get_current_comm(&side->comm, sizeof(side->comm));
	side->user_stack = 0;
	side->kern_stack = 0;
	side->user_err = 0;
	side->kern_err = 0;
	if (!kernel_stacks_only && !kthread)
		side->user_err = user_stack_capture(ctx, side->pid, &side->user_stack, STAT_USTACK_ERR);
	if (!user_stacks_only)
		side->kern_err = stack_capture(ctx, 0, side->pid, &side->kern_stack, STAT_KSTACK_ERR);
	if (side->user_stack)
		announce_proc(side->pid);
}

static __always_inline void account(struct wait_key *key, __u64 delta)
{
	struct wait_val *val, first = { .ns = delta, .blocks = 1 };
	long err;

	stat_inc(STAT_SAMPLES);
	key->window = 0;
	key->_pad = 0;
	if (window_ns) {
		__u64 now = bpf_ktime_get_ns();

		if (now >= window_base)
			key->window = (now - window_base) / window_ns;
	}
	val = bpf_map_lookup_elem(&counts, key);
	if (val) {
		__sync_fetch_and_add(&val->ns, delta);
		__sync_fetch_and_add(&val->blocks, 1);
		return;
	}
	err = bpf_map_update_elem(&counts, key, &first, BPF_NOEXIST);
	if (err == -EEXIST) {
		val = bpf_map_lookup_elem(&counts, key);
		if (val) {
			__sync_fetch_and_add(&val->ns, delta);
			__sync_fetch_and_add(&val->blocks, 1);
		}
	} else if (err) {
		stat_inc(STAT_COUNTS_FULL);
	}
}

static __always_inline bool in_bounds(__u64 delta)
{
	return delta >= min_block_ns && delta <= max_block_ns;
}

/* --sample: blocks stamped and not yet ended (offcpu, offwake). While there are none, a switch looks up
 * nothing for the thread coming in: with one block in 100 traced, that is most switches. */
volatile __s64 sampled_pending = 0;

/* --sample: whether a block that begins now is traced. */
static __always_inline bool sampled_in(void)
{
	return sample_every <= 1 || bpf_get_prandom_u32() % sample_every == 0;
}

static __always_inline bool counting_pending(void)
{
	return sample_every > 1 && mode != MODE_WAKEUP;
}

/*
 * prev is the current task; the ids come from the tracepoint's arguments; `next` is the task coming in
 * where the hook hands it over (tp_btf, raw_tp), else NULL.
 *
 * A thread's `start` entry lives from its first traced switch to its exit and is reused in place: ts == 0
 * means "on a CPU". A hash update and delete per switch (element allocation, bucket lock) would cost more
 * than the rest of the bookkeeping together. What is cheap comes first: the filters and --sample decide
 * before any stack is taken; a thread that blocks where it blocked before reuses its stacks (bpf/memo.bpf.h).
 */
static __always_inline int on_switch(void *ctx, struct task_struct *prev, __u32 prev_tid, __u32 next_tid,
				     struct task_struct *next)
{
	/* Its address is the kernel stack memo's anchor: the same place in this program's frame every time. */
	__u64 anchor_slot = 0;
	__u32 zero = 0, tid = prev_tid, state;
	struct scratch *s = NULL;
	struct block_start *b;
	struct wait_side *w;
	__u64 now = 0, delta;
	bool fresh = false;

	if (bench_empty)
		return 0;
	/* The thread going off-CPU: stamp it. It is still current here. One the -p/-t filter leaves out has
	 * no entry either: nothing else is read for it. */
	if ((filter_pid || filter_tid) && !target_allowed(bpf_get_current_pid_tgid() >> 32, tid))
		goto next;
	state = task_state(prev);
	if (state & TASK_DEAD) {
		/* Its last switch: it never comes back to be timed. */
		if (tid) {
			if (counting_pending()) {
				b = bpf_map_lookup_elem(&start, &tid);
				if (b && b->ts)
					__sync_fetch_and_add(&sampled_pending, -1);
			}
			bpf_map_delete_elem(&start, &tid);
		}
		goto next;
	}
	if (mode == MODE_WAKEUP && state == 0)
		goto next; /* preempted, still runnable: no wakeup will come */
	if (traced(prev, bpf_get_current_pid_tgid() >> 32, tid, state) && sampled_in()) {
		now = bpf_ktime_get_ns();
		if (now >= window_end)
			return 0;
		s = bpf_map_lookup_elem(&scratch_buf, &zero);
		if (!s)
			return 0;
		b = bpf_map_lookup_elem(&start, &tid);
		if (!b) {
			b = &s->start;
			b->ts = 0;
			b->slot = 0;
			__builtin_memset(b->memo, 0, sizeof(b->memo));
			fresh = true;
		} else if (b->ts && mode != MODE_WAKEUP) {
			/* Its last block never ended: the thread came back on a CPU without a sched_switch that
			 * this program saw (a kernel may leave out switches away from threads it hides, as this
			 * project's CI sandbox does for its agent). That block is lost: counted, then stamped anew. */
			stat_inc(STAT_UNENDED);
		}
		if (mode == MODE_WAKEUP) {
			/* Only the time and comm matter: the stacks that count are the waker's. */
			__builtin_memset(&b->side, 0, sizeof(b->side));
			bpf_get_current_comm(&b->side.comm, sizeof(b->side.comm));
		} else {
			capture_blocked(ctx, b, BPF_CORE_READ(prev, flags) & PF_KTHREAD, (__u64)&anchor_slot);
		}
		if (counting_pending() && !b->ts)
			__sync_fetch_and_add(&sampled_pending, 1);
		b->ts = now;
		if (fresh && bpf_map_update_elem(&start, &tid, b, BPF_NOEXIST)) {
			stat_inc(STAT_START_FULL);
			if (counting_pending())
				__sync_fetch_and_add(&sampled_pending, -1);
		}
	}

next:
	/* The thread coming on-CPU: account its blocked time (wakeup accounts at the wakeup instead). */
	if (mode == MODE_WAKEUP)
		return 0;
	if (counting_pending() && sampled_pending <= 0)
		return 0; /* no traced block is pending: the thread coming in has none */
	/* A thread the filters leave out has no block to end: told without a lookup where the hook hands
	 * the program the task coming in. */
	if (next && (filter_pid || filter_tid) && !target_allowed(BPF_CORE_READ(next, tgid), next_tid))
		return 0;
	tid = next_tid;
	b = bpf_map_lookup_elem(&start, &tid);
	if (!b || !b->ts)
		return 0; /* not traced, or blocked since before tracing began */
	if (!now) {
		now = bpf_ktime_get_ns();
		if (now >= window_end)
			return 0;
	}
	if (!s) {
		s = bpf_map_lookup_elem(&scratch_buf, &zero);
		if (!s)
			return 0;
	}
	delta = now - b->ts;
	b->ts = 0;
	if (counting_pending())
		__sync_fetch_and_add(&sampled_pending, -1);
	__builtin_memset(&s->key.waker, 0, sizeof(s->key.waker));
	if (mode == MODE_OFFWAKE) {
		/* Taken whether the block counts or not: a later block must not find this waker. */
		w = bpf_map_lookup_elem(&wokeby, &tid);
		if (w) {
			__builtin_memcpy(&s->key.waker, w, sizeof(s->key.waker));
			bpf_map_delete_elem(&wokeby, &tid);
		}
	}
	if ((__s64)delta < 0 || !in_bounds(delta))
		return 0;
	__builtin_memcpy(&s->key.target, &b->side, sizeof(s->key.target));
	account(&s->key, delta);
	return 0;
}

static __always_inline int on_waking(void *ctx, __u32 tid)
{
	__u32 zero = 0;
	struct block_start *b;
	struct scratch *s;
	__u64 delta;
	bool kthread;

	if (bench_empty)
		return 0;

	if (bpf_ktime_get_ns() >= window_end)
		return 0;

	/* Only wakeups of traced threads that are off-CPU: the start stamp says both. */
	b = bpf_map_lookup_elem(&start, &tid);
	if (!b || !b->ts)
		return 0;
	s = bpf_map_lookup_elem(&scratch_buf, &zero);
	if (!s)
		return 0;
	kthread = BPF_CORE_READ((struct task_struct *)bpf_get_current_task(), flags) & PF_KTHREAD;

	if (mode == MODE_OFFWAKE) {
		capture_current(ctx, &s->key.waker, kthread);
		if (bpf_map_update_elem(&wokeby, &tid, &s->key.waker, BPF_ANY))
			stat_inc(STAT_WAKER_FULL);
		return 0;
	}

	/* wakeup: the time from blocking to this wakeup, by the waker's stack. */
	delta = bpf_ktime_get_ns() - b->ts;
	__builtin_memset(&s->key.target, 0, sizeof(s->key.target));
	__builtin_memcpy(&s->key.target.comm, &b->side.comm, sizeof(s->key.target.comm));
	b->ts = 0;
	if ((__s64)delta < 0 || !in_bounds(delta))
		return 0;
	capture_current(ctx, &s->key.waker, kthread);
	account(&s->key, delta);
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(switch_btf, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	return on_switch(ctx, prev, prev->pid, next->pid, next);
}

SEC("raw_tp/sched_switch")
int BPF_PROG(switch_raw, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	return on_switch(ctx, prev, BPF_CORE_READ(prev, pid), BPF_CORE_READ(next, pid), next);
}

/* Classic tracepoints: stacks captured here are walked from the tracepoint's site, not through the BPF
 * program and the dispatcher as in tp_btf and raw_tp, which makes them cheaper to take. */
SEC("tp/sched/sched_switch")
int switch_tp(struct trace_event_raw_sched_switch *ctx)
{
	return on_switch(ctx, (struct task_struct *)bpf_get_current_task(), ctx->prev_pid, ctx->next_pid, NULL);
}

SEC("tp_btf/sched_waking")
int BPF_PROG(waking_btf, struct task_struct *p)
{
	return on_waking(ctx, p->pid);
}

SEC("raw_tp/sched_waking")
int BPF_PROG(waking_raw, struct task_struct *p)
{
	return on_waking(ctx, BPF_CORE_READ(p, pid));
}

SEC("tp/sched/sched_waking")
int waking_tp(struct trace_event_raw_sched_wakeup_template *ctx)
{
	return on_waking(ctx, ctx->pid);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
