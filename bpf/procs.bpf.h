/* Announcing processes to user space: each process with a user stack is sent over `proc_events` once per
 * program it runs, so user space can cache its mappings while it lives (a process that exits before the
 * trace ends still gets names). */
#ifndef BPFPROF_PROCS_BPF_H
#define BPFPROF_PROCS_BPF_H

#include <bpf/bpf_core_read.h>
#include "stacks.bpf.h"

/* Processes already announced through proc_events, with the address space (task->mm) they had then: an exec
 * gives a process a new one, and it is announced again (all its mappings are new; a process first seen
 * as a shell's fork would otherwise be named from the shell's). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u64);
} seen_procs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} proc_events SEC(".maps");

static __always_inline void announce_proc(__u32 pid)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u64 mm = (__u64)BPF_CORE_READ(task, mm), *seen;
	struct new_proc_event *e;
	long err;

	seen = bpf_map_lookup_elem(&seen_procs, &pid);
	if (seen && *seen == mm)
		return;
	if (seen) {
		*seen = mm; /* exec'd since (two CPUs may both announce it: harmless) */
	} else {
		err = bpf_map_update_elem(&seen_procs, &pid, &mm, BPF_NOEXIST);
		if (err == -EEXIST)
			return; /* another CPU announced it first */
		if (err) {
			stat_inc(STAT_PROC_EVENTS_LOST); /* full: named only if it still lives at the end */
			return;
		}
	}
	e = bpf_ringbuf_reserve(&proc_events, sizeof(*e), 0);
	if (!e) {
		stat_inc(STAT_PROC_EVENTS_LOST);
		return;
	}
	e->pid = pid;
	e->kind = PROC_NEW;
	bpf_ringbuf_submit(e, 0);
}

#endif
