/* Announcing processes to user space: each process with a user stack is sent once over `proc_events`, so user
 * space can cache its mappings while it lives (a process that exits before the trace ends still gets names). */
#ifndef BPFPROF_PROCS_BPF_H
#define BPFPROF_PROCS_BPF_H

#include "stacks.bpf.h"

/* Processes already announced through proc_events. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u8);
} seen_procs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} proc_events SEC(".maps");

static __always_inline void announce_proc(__u32 pid)
{
	struct new_proc_event *e;
	__u8 one = 1;
	long err;

	if (bpf_map_lookup_elem(&seen_procs, &pid))
		return;
	err = bpf_map_update_elem(&seen_procs, &pid, &one, BPF_NOEXIST);
	if (err == -EEXIST)
		return; /* another CPU announced it first */
	if (err) {
		stat_inc(STAT_PROC_EVENTS_LOST); /* full: named only if it still lives at the end */
		return;
	}
	e = bpf_ringbuf_reserve(&proc_events, sizeof(*e), 0);
	if (!e) {
		stat_inc(STAT_PROC_EVENTS_LOST);
		return;
	}
	e->pid = pid;
	bpf_ringbuf_submit(e, 0);
}

#endif
