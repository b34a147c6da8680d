// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * trace's `ustack` with unwind tables: bpfprof_ustack walks the current task's user stack (bpf/unwind.bpf.h)
 * and stores it. trace never loads this object's program: libbpf prepares it (CO-RE relocations, maps),
 * and src/oneliner/ustack.rs appends its subprograms to each trace program that takes `ustack` and calls
 * them there (a bpf-to-bpf call), with this object's BTF for their types.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "stacks.bpf.h"
#include "procs.bpf.h"
#include "unwind.bpf.h"

/*
 * The current task's user stack, of at most `depth` frames (ustack(N); not marked where cut): its id in
 * `stacks` (0: the task has none), or a negative errno when it is lost. The first user stack of a process
 * announces it (its mappings are read while it lives, its tables loaded).
 */
static __noinline __s64 bpfprof_ustack(void *ctx, __u64 depth)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	__u64 id = 0;
	long err;

	err = user_stack_walk(ctx, pid, depth, depth >= MAX_STACK_DEPTH, &id, STAT_USTACK_ERR);
	if (err)
		return err;
	if (id)
		announce_proc(pid);
	return id;
}

/* Never loaded: it makes libbpf link bpfprof_ustack (and the walk's step) into one program, whose
 * instructions trace takes; its type is the main function's of the programs they are appended to. */
SEC("raw_tp")
int bpfprof_trace(void *ctx)
{
	return bpfprof_ustack(ctx, MAX_STACK_DEPTH) < 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
