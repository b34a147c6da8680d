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

#define PF_EXITING 0x00000004 /* include/linux/sched.h */
#define PF_KTHREAD 0x00200000
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

/* The same in task-local storage, where the kernel has it for tracing programs (5.12+) and the hook hands
 * over trusted task pointers (tp_btf): a lookup through the task, not a hash of its tid (~100 ns each,
 * two per switch, on this project's CI machines). Freed with the task. User space sets task_storage and
 * creates this map, or neither. */
const volatile bool task_storage = false;

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct block_start);
} starts SEC(".maps");

/* Task t's block_start (tid its id), created zeroed when `create`: NULL if it has none (or there is no
 * room for it). btf: t is a trusted pointer (a tp_btf program's), needed for task storage. */
static __always_inline struct block_start *block_of(struct task_struct *t, __u32 tid, bool create, const bool btf)
{
	if (btf && task_storage)
		return bpf_task_storage_get(&starts, t, NULL, create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
	return bpf_map_lookup_elem(&start, &tid);
}

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

static __always_inline bool traced(struct task_struct *t, __u32 tgid, __u32 tid, __u32 state, const bool btf)
{
	__u32 flags;

	if (tid == 0)
		return false; /* the idle task: its "blocked" time is the CPU's busy time */
	if (!target_allowed(tgid, tid))
		return false; /* (on_switch asked first; on_waking's tasks have entries only if they passed) */
	if (user_threads_only || kernel_threads_only) {
		flags = btf ? t->flags : BPF_CORE_READ(t, flags);
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

/*
 * Where a switched-out thread's kernel stack stops being its blocked one, in bytes above the anchor of the
 * program's frame at its switch-out (learned at switch-ins, in the kernel; 0: not yet; -1: it varied, and
 * memos are not checked at switch-in): its saved stack pointer when it is switched back in, past the
 * frame the switch saved there (struct inactive_task_frame: 6 registers and a return address). The frames
 * below, the tracepoint's and the switch's, are the same every time: checking those above is checking
 * the stack.
 */
volatile __s64 kstack_gap = 0;
#define INACTIVE_FRAME_BYTES (7 * 8)

/* The current thread's kernel stack into b->side, from the memo of the place it blocks at (b->slot) or
 * walked and remembered. A memo noted where a switch-in can check it once the gap is known. */
static __always_inline void capture_kernel_now(void *ctx, struct block_start *b, __u64 anchor)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct kstack_memo *km = &b->memo[b->slot % MEMO_SLOTS].k;
	struct wait_side *side = &b->side;
	struct new_stack_event *ev;
	__s64 gap = kstack_gap;
	__u32 zero = 0;

	side->kern_stack = 0;
	side->kern_err = 0;
	/* A memo noted before the gap was known is noted again, to be checkable at switch-ins. */
	if ((km->live || gap <= 0) && kmemo_check(task, anchor, km, &side->kern_stack))
		return;
	side->kern_err = stack_capture(ctx, 0, side->pid, &side->kern_stack, STAT_KSTACK_ERR);
	ev = bpf_map_lookup_elem(&stack_scratch, &zero);
	if (side->kern_stack && ev)
		kmemo_fill(task, anchor, km, ev->st.nr, side->kern_stack,
			   gap > 0 ? gap + INACTIVE_FRAME_BYTES : 0);
	else
		km->id = 0;
}

/* Fills `side` with the current thread, going off-CPU, and its stacks as chosen, each through the thread's
 * memo (bpf/memo.bpf.h). `anchor`: a slot of the program's own frame. */
static __always_inline void capture_blocked(void *ctx, struct block_start *b, bool kthread, __u64 anchor)
{
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
	if (!user_stacks_only)
		capture_kernel_now(ctx, b, anchor);
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

/* Adds a block of `delta` ns that ended at `end` (0: now) to its key's sum. */
static __always_inline void account(struct wait_key *key, __u64 delta, __u64 end)
{
	struct wait_val *val, first = { .ns = delta, .blocks = 1 };
	long err;

	stat_inc(STAT_SAMPLES);
	key->window = 0;
	key->_pad = 0;
	if (window_ns) {
		if (!end)
			end = bpf_ktime_get_ns();
		if (end >= window_base)
			key->window = (end - window_base) / window_ns;
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
 * Deferred stacks (offcpu with tp_btf, where the kernel reports each user thread's return to user space):
 * a block costs only its stamp when it begins. When it ends (the thread switched back in, still off-CPU to
 * itself), a block that counts gets its kernel stack (bpf_get_task_stack of the thread, or its memo); its
 * user stack is taken when the thread next returns to user space (the rseq_update tracepoint, in the
 * thread's own context, its user registers and stack as they were when it blocked), or, if it blocks again
 * before that, at that switch (still in the same system call). A block shorter than -m then costs two map
 * lookups, not two stack reads. (bcc's offcputime gets the same from a kprobe on finish_task_switch, which
 * runs in the thread coming in: kernels without kprobes lack it.) Set by user space, which attaches
 * rseq_btf then.
 */
const volatile bool defer_stacks = false;

#ifndef ESTALE
#define ESTALE 116
#endif
#ifndef ESRCH
#define ESRCH 3
#endif

struct task_struct___rseq_ptr {
	void *rseq;
} __attribute__((preserve_access_index));

/* Whether the current task's block can have its stacks taken when it ends: a user thread registered with
 * rseq (glibc 2.35+ registers every thread), on a kernel whose rseq reports every return to user space
 * after a switch (rseq a pointer in task_struct, up to 6.18: its rewrite skips the updates it can).
 * t is tp_btf's `prev`: read directly (a probe read costs ~60 ns here, on every switch). */
static __always_inline bool deferrable(struct task_struct *t)
{
	struct task_struct___rseq_ptr *r = (void *)t;

	if (!bpf_core_field_exists(r->rseq))
		return false;
	/* Kernel threads have no user stack; an exiting thread's may be gone before its next switch. */
	if (t->flags & (PF_KTHREAD | PF_EXITING))
		return false;
	return r->rseq != NULL;
}

/* The current task's user registers, in this CPU's walk_state (NULL if they cannot be read). */
static __always_inline struct walk_state *current_regs(void)
{
	__u32 zero = 0;
	struct walk_state *st = bpf_map_lookup_elem(&unwind_walk, &zero);

	if (!st || !user_regs((struct task_struct *)bpf_get_current_task(), st))
		return NULL;
	return st;
}

/* Counts the current thread's deferred block that ended and counts (b->pending_ns): with its user stack,
 * taken now when `take_user` and the thread is still where it blocked (its user registers as they were),
 * else without it, counted as such. */
static __always_inline void finish_pending(void *ctx, struct block_start *b, struct scratch *s, bool take_user)
{
	struct wait_side *side = &b->side;
	struct walk_state *st = take_user ? current_regs() : NULL;
	bool reused = false;

	side->user_stack = 0;
	side->user_err = 0;
	if (st && st->pc == b->uip && st->sp == b->usp && st->bp == b->ubp) {
		side->user_err = user_stack_capture_memo(ctx, side->pid, &b->memo[b->slot % MEMO_SLOTS].u,
							 &side->user_stack, STAT_USTACK_ERR, true, &reused);
		if (side->user_stack && !reused)
			announce_proc(side->pid);
	} else {
		side->user_err = take_user ? -ESTALE : -ESRCH;
		stat_inc(STAT_LATE_USTACK);
	}
	bpf_get_current_comm(&side->comm, sizeof(side->comm));
	__builtin_memset(&s->key.waker, 0, sizeof(s->key.waker));
	__builtin_memcpy(&s->key.target, side, sizeof(s->key.target));
	account(&s->key, b->pending_ns, b->pending_end);
	b->pending_ns = 0;
}

/* Stamps the current thread's block (t: tp_btf's `prev`) to have its stacks taken when it ends: its user
 * registers now say whether its user stack is still the one it blocked with then. False if they cannot be
 * read. */
static __always_inline bool defer_block(struct block_start *b, struct task_struct *t)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct pt_regs *regs;
	long nr;

	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_task_pt_regs)) {
		/* 5.15+: loads, not probe reads. */
		regs = (struct pt_regs *)bpf_task_pt_regs(t);
		if (!regs)
			return false;
		b->uip = regs->ip;
		b->usp = regs->sp;
		b->ubp = regs->bp;
		nr = regs->orig_ax;
	} else {
		regs = task_regs_at(t);
		if (!regs)
			return false;
		b->uip = BPF_CORE_READ(regs, ip);
		b->usp = BPF_CORE_READ(regs, sp);
		b->ubp = BPF_CORE_READ(regs, bp);
		nr = BPF_CORE_READ(regs, orig_ax);
	}
	/* Blocked in a system call after which its user stack is gone (execve, execveat: another program;
	 * exit, exit_group: none): taken now, as elsewhere. x86-64's numbers. */
	if (nr == 59 || nr == 322 || nr == 60 || nr == 231)
		return false;
	b->side.pid = id >> 32;
	b->side.tid = (__u32)id;
	return b->uip != 0;
}

/* A deferred block of thread `next` ended (it is being switched in) and counts: its kernel stack now,
 * unless taken when it began, from the memo of the place it blocked at, checked against its stack as it
 * lies now; its user stack when it is back in user space (finish_pending). */
static __always_inline void end_deferred(void *ctx, struct block_start *b, struct scratch *s, struct task_struct *next,
					 __u64 delta, __u64 now)
{
	struct wait_side *side = &b->side;
	struct kstack_memo *km;

	stat_inc(STAT_DEFERRED);
	if (b->pending_ns) /* never finished: cannot happen (each switch-out finishes it), counted if it does */
		finish_pending(ctx, b, s, false);
	if (!user_stacks_only && !b->kdone) {
		km = &b->memo[b->slot % MEMO_SLOTS].k;
		side->kern_stack = 0;
		side->kern_err = 0;
		/* The place's memo, else the other place's (the same user registers can block either way). */
		if (!kmemo_check(next, b->kanchor, km, &side->kern_stack) &&
		    !(b->memo[(b->slot + 1) % MEMO_SLOTS].k.live &&
		      kmemo_check(next, b->kanchor, &b->memo[(b->slot + 1) % MEMO_SLOTS].k, &side->kern_stack))) {
			/* Not where it blocked before after all (the same user registers, another way through
			 * the kernel): the stack as the kernel gives it for a task switched out, which leaves
			 * out the scheduler's own functions (counted); the next block there takes its own. */
			side->kern_err = task_stack_capture(next, side->pid, &side->kern_stack, STAT_KSTACK_ERR);
			stat_inc(STAT_KSTACK_LATE);
			km->id = 0;
		}
	}
	if (kernel_stacks_only) {
		side->user_stack = 0;
		side->user_err = 0;
		BPF_CORE_READ_STR_INTO(&side->comm, next, comm);
		__builtin_memset(&s->key.waker, 0, sizeof(s->key.waker));
		__builtin_memcpy(&s->key.target, side, sizeof(s->key.target));
		account(&s->key, delta, now);
		return;
	}
	b->pending_ns = delta;
	b->pending_end = now;
}

/* A deferred block ends (thread `next` is being switched in): learns, then checks, kstack_gap. */
static __always_inline void learn_gap(struct block_start *b, struct task_struct *next)
{
	__s64 gap = (__s64)(next->thread.sp - b->kanchor);

	if (!b->kanchor || gap <= 0 || gap > KMEMO_SPAN)
		return;
	if (kstack_gap == 0)
		kstack_gap = gap;
	else if (kstack_gap > 0 && gap != kstack_gap)
		kstack_gap = -1;
}

/* The memo slot of the place the current thread blocks at, by the user registers it blocks with (as
 * memo_slot, from registers already read), but for rbp: optimized code keeps anything in it (a loop's
 * counter), and the memos' checks tell whether the stacks are the same; and whether it was preempted
 * (`running`: another way through the kernel from the same user registers). */
static __always_inline __u32 slot_of(struct block_start *b, __u32 running, bool *known)
{
	__u32 i;

	*known = true;
	for (i = 0; i < MEMO_SLOTS; i++) {
		if (b->memo[i].u.ip == b->uip && b->memo[i].u.sp == b->usp && b->memo[i].running == running)
			return i;
	}
	*known = false;
	return (b->slot + 1) % MEMO_SLOTS;
}

/*
 * prev is the current task; the ids come from the tracepoint's arguments; `next` is the task coming in
 * where the hook hands it over (tp_btf, raw_tp), else NULL. `btf`: a constant, true in the program
 * whose task pointers the verifier trusts (tp_btf): their fields are then loaded, not probe-read, and
 * stacks can be deferred.
 *
 * A thread's `start` entry lives from its first traced switch to its exit and is reused in place: ts == 0
 * means "on a CPU". A hash update and delete per switch (element allocation, bucket lock) would cost more
 * than the rest of the bookkeeping together. What is cheap comes first: the filters and --sample decide
 * before any stack is taken; a thread that blocks where it blocked before reuses its stacks (bpf/memo.bpf.h).
 */
static __always_inline int on_switch(void *ctx, struct task_struct *prev, __u32 prev_tid, __u32 next_tid,
				     struct task_struct *next, const bool btf)
{
	/* Its address is the kernel stack memo's anchor: the same place in this program's frame every time. */
	__u64 anchor_slot = 0;
	__u32 zero = 0, tid = prev_tid, state;
	struct scratch *s = NULL;
	struct block_start *b;
	struct wait_side *w;
	__u64 now = 0, delta;
	bool fresh = false, known;

	if (bench_empty)
		return 0;
	/* The thread going off-CPU: stamp it. It is still current here. One the -p/-t filter leaves out has
	 * no entry either: nothing else is read for it. */
	if ((filter_pid || filter_tid) && !target_allowed(bpf_get_current_pid_tgid() >> 32, tid))
		goto next;
	state = btf ? task_state_btf(prev) : task_state(prev);
	if (state & TASK_DEAD) {
		/* Its last switch: it never comes back to be timed. */
		if (tid) {
			if (counting_pending() || (btf && defer_stacks)) {
				b = block_of(prev, tid, false, btf);
				if (b && b->ts && counting_pending())
					__sync_fetch_and_add(&sampled_pending, -1);
				/* Killed while blocked: its user stack went with its memory. */
				s = bpf_map_lookup_elem(&scratch_buf, &zero);
				if (b && b->pending_ns && s)
					finish_pending(ctx, b, s, false);
			}
			if (btf && task_storage)
				bpf_task_storage_delete(&starts, prev);
			else
				bpf_map_delete_elem(&start, &tid);
		}
		goto next;
	}
	if (mode == MODE_WAKEUP && state == 0)
		goto next; /* preempted, still runnable: no wakeup will come */
	if (traced(prev, bpf_get_current_pid_tgid() >> 32, tid, state, btf) && sampled_in()) {
		now = bpf_ktime_get_ns();
		if (now >= window_end)
			return 0;
		s = bpf_map_lookup_elem(&scratch_buf, &zero);
		if (!s)
			return 0;
		b = block_of(prev, tid, true, btf);
		if (!b && btf && task_storage) {
			stat_inc(STAT_START_FULL);
			goto next;
		}
		if (!b) {
			b = &s->start;
			b->ts = 0;
			b->slot = 0;
			b->deferred = 0;
			b->pending_ns = 0;
			__builtin_memset(b->memo, 0, sizeof(b->memo));
			fresh = true;
		} else if (b->ts && mode != MODE_WAKEUP) {
			/* Its last block never ended: the thread came back on a CPU without a sched_switch that
			 * this program saw (a kernel may leave out switches away from threads it hides, as this
			 * project's CI sandbox does for its agent). That block is lost: counted, then stamped anew. */
			stat_inc(STAT_UNENDED);
		}
		/* Blocked again before it returned to user space: the last block's user stack is this one's. */
		if (btf && defer_stacks && b->pending_ns)
			finish_pending(ctx, b, s, true);
		b->deferred = 0;
		if (mode == MODE_WAKEUP) {
			/* Only the time and comm matter: the stacks that count are the waker's. */
			__builtin_memset(&b->side, 0, sizeof(b->side));
			bpf_get_current_comm(&b->side.comm, sizeof(b->side.comm));
		} else if (btf && defer_stacks && deferrable(prev) && defer_block(b, prev)) {
			b->deferred = 1;
			b->kanchor = (__u64)&anchor_slot;
			b->slot = slot_of(b, state == 0, &known);
			b->memo[b->slot % MEMO_SLOTS].running = state == 0;
			/* Its kernel stack now unless a memo of the place (known by its user registers: a new
			 * place gets the memo not used last) can be checked when it ends. */
			b->kdone = !user_stacks_only &&
				   !(known && kstack_gap > 0 && b->memo[b->slot % MEMO_SLOTS].k.id &&
				     b->memo[b->slot % MEMO_SLOTS].k.live);
			if (b->kdone) {
				/* A new place: its registers name the slot from now on (its user memo, of
				 * another place, is dropped). */
				if (!known) {
					b->memo[b->slot % MEMO_SLOTS].u.id = 0;
					b->memo[b->slot % MEMO_SLOTS].u.ip = b->uip;
					b->memo[b->slot % MEMO_SLOTS].u.sp = b->usp;
					b->memo[b->slot % MEMO_SLOTS].u.bp = b->ubp;
				}
				capture_kernel_now(ctx, b, b->kanchor);
			}
		} else {
			capture_blocked(ctx, b, (btf ? prev->flags : BPF_CORE_READ(prev, flags)) & PF_KTHREAD,
					(__u64)&anchor_slot);
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
	if (next && (filter_pid || filter_tid) &&
	    !target_allowed(btf ? next->tgid : BPF_CORE_READ(next, tgid), next_tid))
		return 0;
	tid = next_tid;
	b = block_of(next, tid, false, btf);
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
	/* Learned from the first deferred blocks, then checked at each one whose memo is checked. */
	if (btf && b->deferred && kstack_gap == 0)
		learn_gap(b, next);
	if ((__s64)delta < 0 || !in_bounds(delta))
		return 0;
	if (btf && b->deferred) {
		if (kstack_gap > 0 && !b->kdone)
			learn_gap(b, next);
		end_deferred(ctx, b, s, next, delta, now);
		return 0;
	}
	__builtin_memcpy(&s->key.target, &b->side, sizeof(s->key.target));
	account(&s->key, delta, now);
	return 0;
}

/* p: the task woken, as the hook hands it over; `btf` as for on_switch. */
static __always_inline int on_waking(void *ctx, struct task_struct *p, __u32 tid, const bool btf)
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
	b = block_of(p, tid, false, btf);
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
	account(&s->key, delta, 0);
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(switch_btf, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	return on_switch(ctx, prev, prev->pid, next->pid, next, true);
}

SEC("raw_tp/sched_switch")
int BPF_PROG(switch_raw, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	return on_switch(ctx, prev, BPF_CORE_READ(prev, pid), BPF_CORE_READ(next, pid), next, false);
}

/* Classic tracepoints: stacks captured here are walked from the tracepoint's site, not through the BPF
 * program and the dispatcher as in tp_btf and raw_tp, which makes them cheaper to take. */
SEC("tp/sched/sched_switch")
int switch_tp(struct trace_event_raw_sched_switch *ctx)
{
	return on_switch(ctx, (struct task_struct *)bpf_get_current_task(), ctx->prev_pid, ctx->next_pid, NULL,
			 false);
}

/* Deferred stacks: a thread back to user space after a block that counts, in its own context (rseq_update),
 * or about to take a signal first (signal_deliver: before the kernel builds a handler's frame on its user
 * stack, or kills it, neither of which returns to user space where it blocked). */
static __always_inline int on_resume(void *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id, zero = 0;
	struct block_start *b;
	struct scratch *s;

	if (!defer_stacks || bench_empty)
		return 0;
	if ((filter_pid || filter_tid) && !target_allowed(id >> 32, tid))
		return 0;
	if (task_storage) /* (bpf_get_current_task_btf is 5.11+, as task storage) */
		b = bpf_task_storage_get(&starts, bpf_get_current_task_btf(), NULL, 0);
	else
		b = bpf_map_lookup_elem(&start, &tid);
	if (!b || !b->pending_ns)
		return 0;
	s = bpf_map_lookup_elem(&scratch_buf, &zero);
	if (s)
		finish_pending(ctx, b, s, true);
	return 0;
}

SEC("tp_btf/rseq_update")
int BPF_PROG(rseq_btf)
{
	return on_resume(ctx);
}

SEC("tp_btf/signal_deliver")
int BPF_PROG(signal_btf)
{
	return on_resume(ctx);
}

SEC("tp_btf/sched_waking")
int BPF_PROG(waking_btf, struct task_struct *p)
{
	return on_waking(ctx, p, p->pid, true);
}

SEC("raw_tp/sched_waking")
int BPF_PROG(waking_raw, struct task_struct *p)
{
	return on_waking(ctx, p, BPF_CORE_READ(p, pid), false);
}

SEC("tp/sched/sched_waking")
int waking_tp(struct trace_event_raw_sched_wakeup_template *ctx)
{
	return on_waking(ctx, NULL, ctx->pid, false);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
