/*
 * The off-CPU tools' per-thread stack memos (bpf/memo.h): a thread that blocks where it blocked before
 * reuses the stacks it blocked with, once one read of each stack's top shows that every word the walks
 * read is where and what it was. On a switch storm most blocks repeat: a block then costs two reads of a
 * few hundred bytes instead of two stack walks (bpf_get_stack's ~2 us and the table walk's ~260 ns a
 * frame, measured on this machine's ping-pong).
 */
#ifndef BPFPROF_MEMO_BPF_H
#define BPFPROF_MEMO_BPF_H

#include "memo.h"
#include "stacks.bpf.h"
#include "unwind.bpf.h"

/* Per-CPU copies of a stack's top, checked against a memo. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64[UMEMO_SPAN / 8]);
} umemo_buf SEC(".maps");

/* The kernel memo's work, per CPU: its global functions take no pointers (before 5.12 they cannot). */
struct kmemo_scratch {
	__u64 words[KMEMO_SPAN / 8]; /* a copy of the current task's kernel stack from the anchor up */
	__u64 sp, topaddr;           /* the anchor (see kmemo_check), and where the task's pt_regs begin */
	__u32 nr;                    /* kmemo_fill: its frames (in stack_scratch) */
	__u64 target;                /* bpfprof_kmemo_find: the word sought */
	__s32 pos;                   /* bpfprof_kmemo_find: search above this index; out: where found, or -1 */
	__s32 end;                   /* words copied, less the entry frame's */
	__u32 skip;                  /* kmemo_fill: frames below the anchor */
	__s32 lo;                    /* kmemo_fill: frames are sought from this word above the anchor up */
	__u64 hash;                  /* bpfprof_kmemo_hash's */
	struct kstack_memo memo;     /* in and out */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kmemo_scratch);
} kmemo_buf SEC(".maps");

/*
 * The current task's user stack, as user_stack_capture, reusing `memo`'s when the task's registers (read
 * by the caller into this CPU's walk_state, `regs_ok` saying whether that worked) and the words its last
 * walk read are unchanged; otherwise walked, and remembered. Frame-pointer walks (--unwind fp, and auto
 * before a process's tables are loaded) are not remembered.
 */
static __always_inline long user_stack_capture_memo(void *ctx, __u32 pid, struct ustack_memo *memo, __u64 *id,
						    __u32 lost_stat, bool regs_ok, bool *reused)
{
	__u32 zero = 0, i, span, idx;
	struct walk_state *st;
	__u64 *words, h, ip, sp, bp;
	long err;

	*reused = false;
	st = bpf_map_lookup_elem(&unwind_walk, &zero);
	if (!st)
		return user_stack_capture(ctx, pid, id, lost_stat);
	if (regs_ok && memo->id && st->pc == memo->ip && st->sp == memo->sp && st->bp == memo->bp) {
		words = bpf_map_lookup_elem(&umemo_buf, &zero);
		span = memo->span;
		if (words && span > 0 && span <= UMEMO_SPAN &&
		    !bpf_probe_read_user(words, span, (void *)memo->sp)) {
			h = MEMO_SEED;
			for (i = 0; i < UMEMO_WORDS; i++) {
				if (i >= memo->n)
					break;
				idx = (memo->off[i] / 8) & (UMEMO_SPAN / 8 - 1);
				h = memo_mix(h, words[idx], memo->off[i]);
			}
			if (h == memo->hash) {
				*id = memo->id;
				*reused = true;
				stat_inc(STAT_UMEMO_HITS);
				stat_inc(STAT_UNWOUND);
				stat_inc(STAT_UNWIND_END + (memo->end < UNWIND_REASONS ? memo->end : UNWIND_BAD_FRAME));
				return 0;
			}
		}
	}
	ip = st->pc;
	sp = st->sp;
	bp = st->bp;
	st->mok = 0; /* set again by a table walk */
	err = user_stack_capture(ctx, pid, id, lost_stat);
	/* The registers stay, without a stack, when the walk is not remembered: they choose the slot. */
	memo->id = 0;
	memo->ip = regs_ok ? ip : 0;
	memo->sp = regs_ok ? sp : 0;
	memo->bp = regs_ok ? bp : 0;
	if (err || !*id || !st->mok || !regs_ok)
		return err;
	memo->hash = st->mhash;
	memo->end = st->end;
	memo->n = st->mn;
	memo->span = st->mspan;
	for (i = 0; i < UMEMO_WORDS; i++)
		memo->off[i] = st->moff[i];
	memo->id = *id;
	return 0;
}

/* The top of a task's kernel stack: where its pt_regs begin (x86-64: no padding above them). */
static __always_inline __u64 kstack_top(struct task_struct *t)
{
	return (__u64)task_regs_at(t);
}

/* The hash of a kernel memo begins with its counts, then mixes each return address and where it lies. */
static __always_inline __u64 kmemo_seed(__u32 n, __u32 skip)
{
	return mix64(MEMO_SEED ^ n ^ ((__u64)skip << 32));
}

/* 1 when the memo in kmemo_buf holds the stack of the blocked task whose sp and top are there: the return
 * addresses it noted are where they were. Global: verified once, on its own. */
/* The hash of the words the memo in kmemo_buf notes, in the copy of the stack there, into `hash`. */
__noinline int bpfprof_kmemo_hash(void)
{
	__u32 zero = 0, i, n;
	struct kmemo_scratch *s = bpf_map_lookup_elem(&kmemo_buf, &zero);
	__u64 h;

	if (!s)
		return 0;
	n = s->memo.n;
	h = kmemo_seed(n, s->memo.skip);
	for (i = 0; i < KMEMO_WORDS; i++) {
		if (i >= n)
			break;
		h = memo_mix(h, s->words[(s->memo.off[i] / 8) & (KMEMO_SPAN / 8 - 1)], s->memo.off[i]);
	}
	s->hash = h;
	return 0;
}

/* 1 when the memo in kmemo_buf holds the current task's kernel stack: the return addresses it noted are
 * where they were above the anchor. */
__noinline int bpfprof_kmemo_check(void)
{
	__u32 zero = 0;
	struct kmemo_scratch *s = bpf_map_lookup_elem(&kmemo_buf, &zero);
	__u64 span;

	if (!s)
		return 0;
	span = s->memo.span;
	if (!s->memo.id || span == 0 || span > KMEMO_SPAN || !s->sp)
		return 0;
	if (bpf_probe_read_kernel(s->words, span, (void *)s->sp))
		return 0;
	bpfprof_kmemo_hash();
	return s->hash == s->memo.hash;
}

/* In kmemo_buf's copy of a stack, the index above `pos` that holds `target`, up to `end` words, into `pos`
 * (-1: none). A global function: to the verifier the place found is any place, so the frames' search is
 * checked once, not once per place each frame could be found at. */
__noinline int bpfprof_kmemo_find(void)
{
	__u32 zero = 0;
	struct kmemo_scratch *s = bpf_map_lookup_elem(&kmemo_buf, &zero);
	__s32 i, idx;

	if (!s)
		return 0;
	idx = s->pos;
	for (i = 0; i < KMEMO_SPAN / 8; i++) {
		idx++;
		if (idx >= s->end || idx < 0)
			break;
		if (s->words[idx & (KMEMO_SPAN / 8 - 1)] == s->target) {
			s->pos = idx;
			return 0;
		}
	}
	s->pos = -1;
	return 0;
}

/*
 * The first steps of filling kmemo_buf's memo with the current task's kernel stack (`nr` frames in
 * stack_scratch, innermost first): a copy of the stack above the anchor, and how many of the innermost frames
 * lie below the anchor (`skip`: the program's and the helper's own, the same each time; ~0 if none is
 * found above). Global functions, each verified once: inlined, the verifier would walk each loop once per
 * count the one before could end with.
 */
__noinline int bpfprof_kmemo_skip(void)
{
	__u32 zero = 0, skip;
	struct kmemo_scratch *s = bpf_map_lookup_elem(&kmemo_buf, &zero);
	struct new_stack_event *ev = bpf_map_lookup_elem(&stack_scratch, &zero);
	__u64 avail; /* 64 bits: clang passes a 32-bit size in a register whose top it never cleared */

	if (!s || !ev)
		return 0;
	s->skip = ~0U;
	if (s->nr < 1 || s->nr > MAX_STACK_DEPTH || !s->sp || s->sp >= s->topaddr)
		return 0;
	avail = s->topaddr - s->sp;
	if (avail > KMEMO_SPAN)
		avail = KMEMO_SPAN;
	if (avail < 8 || avail > KMEMO_SPAN || bpf_probe_read_kernel(s->words, avail, (void *)s->sp))
		return 0;
	s->end = avail / 8;
	/* Within the last words below the top: a system call's entry frames, past the random gap. */
	if (s->topaddr - s->sp <= KMEMO_SPAN)
		s->end -= KMEMO_ENTRY_WORDS;
	for (skip = 0; skip < MAX_STACK_DEPTH; skip++) {
		if (skip >= s->nr)
			return 0;
		s->pos = s->lo - 1;
		s->target = ev->st.ips[skip];
		bpfprof_kmemo_find();
		if (s->pos >= 0) {
			s->skip = skip;
			return 0;
		}
	}
	return 0;
}

/* Notes where each frame from `skip` on lies above the anchor, up to the entry frames (which the ones
 * noted imply: the kernel enters do_syscall_64 from one place), into kmemo_buf's memo (n 0: none). */
__noinline int bpfprof_kmemo_note(void)
{
	__u32 zero = 0, i, n = 0, last = 0;
	struct kmemo_scratch *s = bpf_map_lookup_elem(&kmemo_buf, &zero);
	struct new_stack_event *ev = bpf_map_lookup_elem(&stack_scratch, &zero);
	__u64 k; /* 64 bits: the bound tested is the register used (no zero extension in between) */
	__s32 pos;

	if (!s || !ev)
		return 0;
	s->memo.n = 0;
	s->pos = s->lo - 1;
	for (i = 0; i < KMEMO_WORDS; i++) {
		k = (__u64)s->skip + i;
		if (k >= s->nr)
			break;
		barrier_var(k);
		if (k >= MAX_STACK_DEPTH)
			break;
		s->target = ev->st.ips[k];
		bpfprof_kmemo_find();
		pos = s->pos;
		if (pos < 0 || pos >= KMEMO_SPAN / 8)
			break;
		s->memo.off[i] = 8 * (__u32)pos;
		last = 8 * (__u32)pos + 8;
		n = i + 1;
	}
	/* Every frame noted but the entry frames (at most two), and a stack not cut short. */
	if (n == 0 || s->skip + n + 2 < s->nr)
		return 0;
	s->memo.n = n;
	s->memo.span = last;
	return 0;
}

/*
 * The wrappers below run in the tracing program, on the kernel stack of the task going off-CPU, below the
 * frames of the kernel code that called the tracepoint: `anchor` is the address of a slot of the program's
 * own frame, which lies at the same place relative to those frames whenever the task blocks the same way.
 * Return addresses are noted relative to it (the kernel stack's unwinder, which starts from the tracepoint,
 * then reads the same words). The frames of the program and of bpf_get_stack itself lie below the anchor:
 * they are not noted, and need not be: they are the same at every switch.
 */

/* Whether `memo` holds task t's kernel stack now; *id is then that stack. t is the current task (the
 * anchor in the tracing program's frame), or a task switched out (the anchor: its saved stack pointer,
 * which its innermost frame, __schedule's, lies just above). */
static __always_inline bool kmemo_check(struct task_struct *t, __u64 anchor, struct kstack_memo *memo, __u64 *id)
{
	__u32 zero = 0;
	struct kmemo_scratch *s;

	if (!memo->id)
		return false;
	s = bpf_map_lookup_elem(&kmemo_buf, &zero);
	if (!s)
		return false;
	s->sp = anchor;
	__builtin_memcpy(&s->memo, memo, sizeof(*memo));
	if (!bpfprof_kmemo_check())
		return false;
	*id = memo->id;
	stat_inc(STAT_KMEMO_HITS);
	return true;
}

/* Remembers task t's kernel stack (`nr` frames in stack_scratch, stored as `id`) in `memo` (t and the
 * anchor as for kmemo_check), noting only return addresses `lo` bytes or more above the anchor (the frames
 * below are implied by those above, as the anchor's own). */
static __always_inline void kmemo_fill(struct task_struct *t, __u64 anchor, struct kstack_memo *memo, __u32 nr,
				       __u64 id, __u32 lo)
{
	__u32 zero = 0;
	struct kmemo_scratch *s = bpf_map_lookup_elem(&kmemo_buf, &zero);

	memo->id = 0;
	if (!s)
		return;
	s->sp = anchor;
	s->topaddr = kstack_top(t);
	s->nr = nr;
	s->lo = lo < KMEMO_SPAN ? lo / 8 : KMEMO_SPAN / 8;
	bpfprof_kmemo_skip();
	if (s->skip >= MAX_STACK_DEPTH)
		return;
	s->memo.skip = s->skip;
	bpfprof_kmemo_note();
	if (!s->memo.n)
		return;
	bpfprof_kmemo_hash();
	s->memo.hash = s->hash;
	s->memo.id = id;
	s->memo.live = lo > 0;
	__builtin_memcpy(memo, &s->memo, sizeof(*memo));
}

#endif
