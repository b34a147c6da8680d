// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* profile: sampled on-CPU stacks, counted in the kernel per (pid, tid, comm, user stack, kernel stack). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "profile.h"
#include "stacks.bpf.h"
#include "procs.bpf.h"
#include "unwind.bpf.h"
#include "filters.bpf.h"

const volatile bool user_stacks_only = false;
const volatile bool kernel_stacks_only = false;
const volatile bool include_idle = false;
/* The end of the sampling window in bpf_ktime_get_ns() time (0: closed), set by user space when it opens
 * the window, once it can name what is sampled (the kernel's symbols loaded, new processes' mappings read
 * as they appear), to the duration's end, and to 0 at Ctrl-C: a slow user space does not stretch it. */
volatile __u64 window_end = 0;
/* --continuous: windows of window_ns nanoseconds from window_base (set with window_end): each sample is
 * counted in the window of its own time, so windows abut exactly however late user space drains them. */
const volatile __u64 window_ns = 0;
volatile __u64 window_base = 0;

/* max_entries is set by user space. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct sample_key);
	__type(value, __u64);
} counts SEC(".maps");

SEC("perf_event")
int do_sample(struct bpf_perf_event_data *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 pid = id >> 32, tid = (__u32)id;
	struct sample_key key = {};
	__u64 one = 1, *count;
	long err;

	__u64 now = bpf_ktime_get_ns();

	if (now >= window_end)
		return 0;
	if (!include_idle && tid == 0)
		return 0;
	/* The perf event fires on every task of its CPU, so selection happens here. */
	if (!target_allowed(pid, tid))
		return 0;

	stat_inc(STAT_SAMPLES);
	key.pid = pid;
	key.tid = tid;
	if (window_ns && now >= window_base)
		key.window = (now - window_base) / window_ns;
	bpf_get_current_comm(&key.comm, sizeof(key.comm));
	if (!kernel_stacks_only)
		key.user_err = user_stack_capture(ctx, pid, &key.user_stack, STAT_USTACK_ERR);
	if (!user_stacks_only)
		key.kern_err = stack_capture(ctx, 0, pid, &key.kern_stack, STAT_KSTACK_ERR);
	if (key.user_stack)
		announce_proc(pid);

	count = bpf_map_lookup_elem(&counts, &key);
	if (count) {
		__sync_fetch_and_add(count, 1);
		return 0;
	}
	err = bpf_map_update_elem(&counts, &key, &one, BPF_NOEXIST);
	if (err == -EEXIST) {
		count = bpf_map_lookup_elem(&counts, &key);
		if (count)
			__sync_fetch_and_add(count, 1);
	} else if (err) {
		stat_inc(STAT_COUNTS_FULL);
	}
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
