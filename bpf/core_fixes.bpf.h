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

/* task_state of a task the verifier trusts (tp_btf's arguments): a load, not a probe read (~60 ns each on
 * this project's CI machines, a scheduler hook's whole budget). */
static __always_inline __u32 task_state_btf(struct task_struct *t)
{
	if (bpf_core_field_exists(t->__state))
		return t->__state;
	return (__u32)((struct task_struct___pre_5_14 *)t)->state;
}

/* Commit f3fa33acca9f ("block: remove the ->rq_disk field in struct request", 5.17) dropped rq->rq_disk;
 * its replacement, rq->q->disk, exists since d152c682f03c (5.15). */
struct request___pre_5_17 {
	struct gendisk *rq_disk;
} __attribute__((preserve_access_index));

static __always_inline struct gendisk *request_disk(struct request *rq)
{
	struct request___pre_5_17 *old = (void *)rq;

	if (bpf_core_field_exists(old->rq_disk))
		return BPF_CORE_READ(old, rq_disk);
	return BPF_CORE_READ(rq, q, disk);
}

#endif
