/* Kernel struct fields that changed name or layout between versions, read the same way on every kernel (CO-RE). */
#ifndef BPFPROF_CORE_FIXES_BPF_H
#define BPFPROF_CORE_FIXES_BPF_H

#include <bpf/bpf_core_read.h>

/* Before 5.14 (commit 2f064a59a11f, "sched: Change task_struct::state") the field was `long state`. */
struct task_struct___pre_5_14 {
	long state;
} __attribute__((preserve_access_index));

static __always_inline __u32 task_state(struct task_struct *t)
{
	if (bpf_core_field_exists(t->__state))
		return BPF_CORE_READ(t, __state);
	return (__u32)BPF_CORE_READ((struct task_struct___pre_5_14 *)t, state);
}

#endif
