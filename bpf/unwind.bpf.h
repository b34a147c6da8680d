/*
 * User stacks without frame pointers: a walk, frame by frame, through unwind tables that user space built
 * from each binary's .eh_frame/.debug_frame (src/unwind/) and loaded into maps. Shared by every stack tool.
 *
 * Per frame: the process's executable mapping that holds the pc (binary search in `unwind_mappings`), the
 * row of its binary's table that covers the pc (binary search over `unwind_chunks`), then the CFA from
 * rsp or rbp, the return address at CFA - 8, and the caller's rbp where the row says it was saved. No stack
 * is copied. One frame is one call of a global function (verified once, whatever the loop around it:
 * the verifier of 5.10 sees one short function and a loop of calls, not 127 unrolled walks).
 *
 * Where the walk cannot go on, the stack ends with a marker frame (UNWIND_MARKER | reason) that user space
 * names; with --unwind auto a frame without a table is followed by its frame pointer instead.
 */
#ifndef BPFPROF_UNWIND_BPF_H
#define BPFPROF_UNWIND_BPF_H

#include <bpf/bpf_core_read.h>
#include "unwind.h"
#include "memo.h"
#include "stacks.bpf.h"
#include "procs.bpf.h"

#ifndef PF_KTHREAD
#define PF_KTHREAD 0x00200000 /* include/linux/sched.h */
#endif
/* x86-64's kernel stack size without KASAN (arch/x86/include/asm/page_64_types.h), for kernels that have
 * no bpf_task_pt_regs (before 5.15): the user registers sit at its top. */
#define X86_THREAD_SIZE (4096 << 2)

const volatile __u32 unwind_mode = UNWIND_MODE_FP;

/* Each process with tables: its range of `unwind_mappings`. Preallocated: perf_event programs refuse
 * other hash maps before 6.1. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, UNWIND_MAX_PROCS);
	__type(key, __u32);
	__type(value, struct unwind_proc);
} unwind_procs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, UNWIND_MAX_MAPPINGS);
	__uint(map_flags, BPF_F_MMAPABLE); /* user space writes processes' mappings in place */
	__type(key, __u32);
	__type(value, struct unwind_mapping);
} unwind_mappings SEC(".maps");

/* The rows of every loaded table, UNWIND_CHUNK_ROWS per inner array; user space creates chunks (mmapped
 * arrays it writes rows into) as tables need them, up to --unwind-memory. */
struct unwind_chunk {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, UNWIND_CHUNK_ROWS);
	__uint(map_flags, BPF_F_MMAPABLE);
	/* Sizes, not types: clang gives an inner map's value type to BTF only as a declaration. */
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(struct unwind_row));
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, UNWIND_MAX_CHUNKS);
	__type(key, __u32);
	__array(values, struct unwind_chunk);
} unwind_chunks SEC(".maps");

/* When each process last asked for its mappings to be read again (bpf_ktime_get_ns): at most one ask a
 * process every REFRESH_NS. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} unwind_refresh SEC(".maps");

#define REFRESH_NS 200000000ULL

/* The walk in progress on this CPU (global functions take no pointers before 5.12: it lives here). */
struct walk_state {
	__u64 pc;
	__u64 sp;
	__u64 bp;
	__u32 first; /* the process's mappings */
	__u32 count;
	__u32 nr;    /* frames taken */
	__u32 depth; /* the most to take */
	__u32 end;   /* enum unwind_end */
	__u32 pid;
	__u32 last;  /* the mapping (index in unwind_mappings) of the frame before, or ~0: tried first */
	/* What the walk read, for a struct ustack_memo: where (bytes above sp0) and a hash of what. */
	__u64 ip0, sp0, bp0;
	__u64 mhash;
	__u32 mn;
	__u32 mok; /* 0: a word outside what a memo holds was read (or none walked) */
	__u16 mspan;
	__u16 moff[UMEMO_WORDS];
};

#define MEMO_SEED 0x9e3779b97f4a7c15ULL

/* One word of a memo's hash: the word and where it lies. */
static __always_inline __u64 memo_mix(__u64 h, __u64 word, __u64 off)
{
	return mix64(h ^ word ^ (off << 48) ^ off);
}

/* Notes a word of the user stack the walk read at `addr` (struct ustack_memo). */
static __always_inline void memo_note(struct walk_state *st, __u64 addr, __u64 word)
{
	__u64 off = addr - st->sp0;
	__u32 n = st->mn;

	if (off > UMEMO_SPAN - 8 || (off & 7) || n >= UMEMO_WORDS) {
		st->mok = 0;
		return;
	}
	st->moff[n] = off;
	st->mn = n + 1;
	st->mhash = memo_mix(st->mhash, word, off);
	if (off + 8 > st->mspan)
		st->mspan = off + 8;
}

/* Reads a word of the user stack for the walk, noting it. */
static __always_inline long read_user_word(struct walk_state *st, __u64 *dst, __u64 addr)
{
	long err = bpf_probe_read_user(dst, sizeof(*dst), (void *)addr);

	if (!err)
		memo_note(st, addr, *dst);
	return err;
}

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct walk_state);
} unwind_walk SEC(".maps");

/* The mapping of the process being walked that holds `pc`, or NULL. Consecutive frames are mostly in one
 * binary: the previous frame's mapping is tried before a search. */
static __always_inline struct unwind_mapping *find_mapping(struct walk_state *st, __u64 pc)
{
	__u32 lo = 0, hi = st->count, mid, idx = st->last, i;
	struct unwind_mapping *m;

	m = bpf_map_lookup_elem(&unwind_mappings, &idx);
	if (m && pc - m->start < m->len)
		return m;

	/* lo becomes the number of mappings that start at or below pc. */
	for (i = 0; i <= UNWIND_PROC_MAPPINGS_LOG2; i++) {
		if (lo >= hi)
			break;
		mid = lo + (hi - lo) / 2;
		idx = st->first + mid;
		m = bpf_map_lookup_elem(&unwind_mappings, &idx);
		if (!m)
			return NULL;
		if (m->start <= pc)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return NULL;
	idx = st->first + lo - 1;
	m = bpf_map_lookup_elem(&unwind_mappings, &idx);
	if (!m || pc - m->start >= m->len)
		return NULL;
	st->last = idx;
	return m;
}

static __always_inline struct unwind_row *row_at(__u32 idx)
{
	__u32 chunk = idx >> UNWIND_CHUNK_SHIFT, slot = idx & (UNWIND_CHUNK_ROWS - 1);
	void *rows = bpf_map_lookup_elem(&unwind_chunks, &chunk);

	if (!rows)
		return NULL;
	return bpf_map_lookup_elem(rows, &slot);
}

/* The row of mapping m's table that covers `addr` (relative to the table's first page), or NULL: the
 * page's slot names a few rows, searched. */
static __always_inline struct unwind_row *find_row(struct unwind_mapping *m, __u64 addr)
{
	__u32 table = m->table, pages = m->pages, first, lo, hi, mid, i;
	__u64 page = addr >> UNWIND_PAGE_SHIFT;
	struct unwind_page *slot;
	struct unwind_row *row;

	if (page >= pages)
		return NULL;
	slot = (struct unwind_page *)row_at(table + (__u32)page);
	if (!slot)
		return NULL;
	first = slot->first;
	lo = first;
	hi = first + slot->count;
	table += pages; /* the rows */
	for (i = 0; i < UNWIND_PAGE_STEPS; i++) {
		if (lo >= hi)
			break;
		mid = lo + (hi - lo) / 2;
		row = row_at(table + mid);
		if (!row)
			return NULL;
		if (row->pc <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == first)
		return NULL;
	return row_at(table + lo - 1);
}

/* Asks user space to read the process's mappings again: a pc was in none of those it knows. */
static __always_inline void ask_remap(__u32 pid)
{
	__u64 now = bpf_ktime_get_ns(), *last;
	struct new_proc_event *e;

	last = bpf_map_lookup_elem(&unwind_refresh, &pid);
	if (last && now - *last < REFRESH_NS)
		return;
	bpf_map_update_elem(&unwind_refresh, &pid, &now, BPF_ANY);
	e = bpf_ringbuf_reserve(&proc_events, sizeof(*e), 0);
	if (!e) {
		stat_inc(STAT_PROC_EVENTS_LOST);
		return;
	}
	e->pid = pid;
	e->kind = PROC_REMAPPED;
	bpf_ringbuf_submit(e, 0);
}

/* One frame by its frame pointer (--unwind auto, code without a table): rbp points at the saved rbp, the
 * return address above it. False when there is no sane frame pointer to follow. */
static __always_inline bool fp_step(struct walk_state *st)
{
	__u64 frame[2];

	if (!st->bp || st->bp < st->sp || (st->bp & 7))
		return false;
	if (bpf_probe_read_user(frame, sizeof(frame), (void *)st->bp))
		return false;
	memo_note(st, st->bp, frame[0]);
	memo_note(st, st->bp + 8, frame[1]);
	if (!frame[1])
		return false;
	st->sp = st->bp + 16;
	st->bp = frame[0];
	st->pc = frame[1];
	stat_inc(STAT_FP_FRAMES);
	return true;
}

/*
 * Takes the walk's current frame and finds its caller. Returns 0 to go on, 1 when the walk has ended
 * (st->end says why). A global function: verified once, on its own.
 */
__noinline int bpfprof_unwind_step(void)
{
	__u32 zero = 0, n, reason = UNWIND_NO_MAPPING;
	struct walk_state *st = bpf_map_lookup_elem(&unwind_walk, &zero);
	struct new_stack_event *ev = bpf_map_lookup_elem(&stack_scratch, &zero);
	struct unwind_mapping *m;
	struct unwind_row *row;
	__u64 pc, cfa = 0, ra = 0, bp;
	__u32 rule, cfa_off;
	__s8 rbp_off;

	if (!st || !ev)
		return 1;
	n = st->nr;
	if (n >= MAX_STACK_DEPTH || n >= st->depth)
		return 1; /* st->end stays UNWIND_TRUNCATED */
	ev->st.ips[n] = st->pc;
	st->nr = n + 1;
	/* Every frame but the innermost is a return address, which may be past the end of its function (a
	 * call to a noreturn function as its last instruction): its call is the byte before. */
	pc = n ? st->pc - 1 : st->pc;

	m = find_mapping(st, pc);
	if (!m)
		goto fallback;
	if (m->kind == MAPPING_NO_CFI) {
		reason = UNWIND_NO_CFI;
		goto fallback;
	}
	if (m->kind == MAPPING_JIT) {
		reason = UNWIND_JIT;
		goto fallback;
	}
	if (m->kind != MAPPING_TABLE) {
		reason = UNWIND_NO_ROOM;
		goto fallback;
	}
	row = find_row(m, pc - m->bias);
	if (!row) {
		reason = UNWIND_NO_CFI;
		goto fallback;
	}
	rule = row->rule;
	cfa_off = ROW_CFA_OFF(rule);
	switch (ROW_CFA_TYPE(rule)) {
	case CFA_RSP:
		cfa = st->sp + cfa_off;
		break;
	case CFA_RBP:
		if (!st->bp) {
			st->end = UNWIND_BAD_FRAME;
			return 1;
		}
		cfa = st->bp + cfa_off;
		break;
	case CFA_PLT11:
		cfa = st->sp + cfa_off + ((st->pc & 15) >= 11 ? 8 : 0);
		break;
	case CFA_PLT10:
		cfa = st->sp + cfa_off + ((st->pc & 15) >= 10 ? 8 : 0);
		break;
	case CFA_DEREF_RBP:
		if (!st->bp || read_user_word(st, &cfa, st->bp - cfa_off)) {
			st->end = UNWIND_READ_FAILED;
			return 1;
		}
		break;
	case CFA_END:
		st->end = UNWIND_COMPLETE;
		return 1;
	case CFA_UNSUPPORTED:
		reason = UNWIND_UNSUPPORTED;
		goto fallback;
	default:
		reason = UNWIND_NO_CFI;
		goto fallback;
	}
	rbp_off = ROW_RBP_OFF(rule);
	/* The caller's frame is above this one: a CFA at or below sp is a wrong rule or a corrupt stack. */
	if (cfa < st->sp + 8) {
		st->end = UNWIND_BAD_FRAME;
		return 1;
	}
	if (read_user_word(st, &ra, cfa - 8)) {
		st->end = UNWIND_READ_FAILED;
		return 1;
	}
	if (rbp_off == RBP_LOST) {
		st->bp = 0;
	} else if (rbp_off) {
		if (read_user_word(st, &bp, cfa + 8 * (__s64)rbp_off)) {
			st->end = UNWIND_READ_FAILED;
			return 1;
		}
		st->bp = bp;
	}
	st->sp = cfa;
	st->pc = ra;
	if (!ra) {
		st->end = UNWIND_COMPLETE; /* a zero return address ends some stacks */
		return 1;
	}
	return 0;

fallback:
	if (reason == UNWIND_NO_MAPPING)
		ask_remap(st->pid);
	if (unwind_mode == UNWIND_MODE_AUTO && fp_step(st))
		return 0;
	st->end = reason;
	return 1;
}

/* task_pt_regs() on x86-64, for any task pointer (probe-read): the top of the task's kernel stack
 * (TOP_OF_KERNEL_STACK_PADDING 0), where its user registers are saved. NULL if it has no stack. */
static __always_inline struct pt_regs *task_regs_at(struct task_struct *task)
{
	void *stack = BPF_CORE_READ(task, stack);

	return stack ? (struct pt_regs *)(stack + X86_THREAD_SIZE) - 1 : NULL;
}

/* Reads the user registers the task entered the kernel with (a syscall, an interrupt, a fault). */
static __always_inline bool user_regs(struct task_struct *task, struct walk_state *st)
{
	struct pt_regs *regs;

	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_task_pt_regs) &&
	    bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_get_current_task_btf)) {
		regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	} else {
		regs = task_regs_at(task);
		if (!regs)
			return false;
	}
	st->pc = BPF_CORE_READ(regs, ip);
	st->sp = BPF_CORE_READ(regs, sp);
	st->bp = BPF_CORE_READ(regs, bp);
	return st->pc != 0;
}

/*
 * Captures the current task's user stack as --unwind says and stores it, as stack_capture: frame pointers
 * (bpf_get_stack) in fp mode, and in auto mode for a process whose tables are not loaded yet; else the
 * table walk, of at most `depth` frames (a stack cut there ends in a marker when `mark_truncated`).
 * *id = 0 for a task without a user stack (a kernel thread).
 */
static __always_inline long user_stack_walk(void *ctx, __u32 pid, __u32 depth, bool mark_truncated, __u64 *id,
					    __u32 lost_stat)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct unwind_proc *proc;
	struct walk_state *st;
	struct new_stack_event *ev;
	__u32 zero = 0, i, end;
	long n;

	*id = 0;
	if (depth > MAX_STACK_DEPTH)
		depth = MAX_STACK_DEPTH;
	if (depth == 0)
		depth = 1;
	proc = bpf_map_lookup_elem(&unwind_procs, &pid);
	if (unwind_mode == UNWIND_MODE_FP || (!proc && unwind_mode == UNWIND_MODE_AUTO)) {
		if (unwind_mode != UNWIND_MODE_FP)
			stat_inc(STAT_FP_WHOLE);
		ev = bpf_map_lookup_elem(&stack_scratch, &zero);
		if (!ev)
			return -EFAULT;
		n = bpf_get_stack(ctx, ev->st.ips, depth * sizeof(__u64), BPF_F_USER_STACK);
		if (n == -EFAULT || n == 0)
			return 0; /* no user stack: not a loss */
		if (n < 0) {
			stat_inc(lost_stat);
			return n;
		}
		return stack_store_scratch(n / sizeof(__u64), pid, true, id);
	}
	if (!BPF_CORE_READ(task, mm) || (BPF_CORE_READ(task, flags) & PF_KTHREAD))
		return 0;
	st = bpf_map_lookup_elem(&unwind_walk, &zero);
	ev = bpf_map_lookup_elem(&stack_scratch, &zero);
	if (!st || !ev)
		return -EFAULT;
	if (!user_regs(task, st))
		return 0;
	st->first = proc ? proc->first : 0;
	st->count = proc ? proc->count : 0;
	st->nr = 0;
	st->depth = depth;
	st->end = UNWIND_TRUNCATED;
	st->pid = pid;
	st->last = ~0U; /* out of the array: no lookup succeeds */
	st->ip0 = st->pc;
	st->sp0 = st->sp;
	st->bp0 = st->bp;
	st->mhash = MEMO_SEED;
	st->mn = 0;
	st->mspan = 0;
	st->mok = proc != NULL;
	if (!proc) {
		ev->st.ips[0] = st->pc;
		st->nr = 1;
		st->end = UNWIND_NOT_LOADED;
	} else {
		for (i = 0; i < MAX_STACK_DEPTH; i++) {
			if (bpfprof_unwind_step())
				break;
		}
	}
	end = st->end;
	if (end >= UNWIND_REASONS)
		end = UNWIND_BAD_FRAME;
	if (end != UNWIND_COMPLETE && (end != UNWIND_TRUNCATED || mark_truncated)) {
		/* The marker takes the last slot if the stack filled them all. */
		i = st->nr;
		if (i >= st->depth)
			i = st->depth - 1;
		/* Keeps clang from folding the bound below into the one above (which the verifier then
		 * cannot see on the index). */
		barrier_var(i);
		if (i < MAX_STACK_DEPTH) {
			ev->st.ips[i] = UNWIND_MARKER | end;
			st->nr = i + 1;
		}
	}
	st->end = end;
	stat_inc(STAT_UNWOUND);
	stat_inc(STAT_UNWIND_END + end);
	return stack_store_scratch(st->nr, pid, true, id);
}

/* user_stack_walk for the stack tools: --perf-max-stack-depth frames, a cut stack marked. */
static __always_inline long user_stack_capture(void *ctx, __u32 pid, __u64 *id, __u32 lost_stat)
{
	return user_stack_walk(ctx, pid, stack_depth(), true, id, lost_stat);
}

#endif
