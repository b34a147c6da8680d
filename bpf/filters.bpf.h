/* PID/TID filters shared by the tools: user space fills `pids` (tgids) and `tids` and sets the matching rodata
 * flag; a program asks `target_allowed` before doing any work for a task. */
#ifndef BPFPROF_FILTERS_BPF_H
#define BPFPROF_FILTERS_BPF_H

const volatile bool filter_pid = false;
const volatile bool filter_tid = false;
/* The one process or thread when the filter names one (0: look in the map): a compare, not a hash lookup,
 * on paths that run for every task (a scheduler hook on a switch storm). */
const volatile __u32 only_pid = 0;
const volatile __u32 only_tid = 0;

/* At most MAX_FILTER_ENTRIES in src/tools/common.rs. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} pids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} tids SEC(".maps");

/* True when neither filter is set, or the task passes the one that is. */
static __always_inline bool target_allowed(__u32 tgid, __u32 tid)
{
	if (filter_pid) {
		if (only_pid ? tgid != only_pid : !bpf_map_lookup_elem(&pids, &tgid))
			return false;
	}
	if (filter_tid) {
		if (only_tid ? tid != only_tid : !bpf_map_lookup_elem(&tids, &tid))
			return false;
	}
	return true;
}

#endif
