// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * funccount: counts calls of many probe points with one program per kind of probe. Each attachment carries
 * a BPF cookie, the index of its probe point, and the program adds one to that index's per-CPU counter:
 * no event per call reaches user space.
 *
 * Kinds: classic tracepoints (cookies: 5.15+), uprobes (one link for all with uprobe.multi, 6.6+, else one
 * link each), USDT probes (libbpf's usdt.bpf.h: its own cookie), kprobes (kprobe.multi, 5.18+, else one link
 * each). User space loads only the programs it needs (set_autoload).
 *
 * Before 5.15 there are no cookies: a kprobe's index is found by its function's address (regs->ip is one
 * past the probed instruction, the int3's, also for kprobes through ftrace) in `index_of`, filled by user
 * space. Tracepoints and uprobes have no such key (a uprobe's address differs per process): user space
 * refuses uprobes there, and more than one tracepoint.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>

const volatile bool filter_pid = false;
const volatile __u32 targ_tgid = 0;
const volatile bool filter_cpu = false;
const volatile __u32 targ_cpu = 0;

/* One counter per probe point; max_entries is set by user space to the number of probe points. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

/* Without cookies: function address -> index. max_entries is set by user space. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u64);
	__type(value, __u32);
} index_of SEC(".maps");

static __always_inline int count(__u64 cookie)
{
	__u32 idx = (__u32)cookie;
	__u64 *v;

	if (filter_pid && (bpf_get_current_pid_tgid() >> 32) != targ_tgid)
		return 0;
	if (filter_cpu && bpf_get_smp_processor_id() != targ_cpu)
		return 0;
	v = bpf_map_lookup_elem(&counts, &idx);
	if (v)
		(*v)++;
	return 0;
}

SEC("tp")
int count_tp(void *ctx)
{
	return count(bpf_get_attach_cookie(ctx));
}

static __always_inline int count_by(__u64 key)
{
	__u32 *idx = bpf_map_lookup_elem(&index_of, &key);

	return idx ? count(*idx) : 0;
}

/* Without cookies, one tracepoint only (the record's event id is not there to tell several apart: a
 * system call's has the registers' address in its place). */
SEC("tp")
int count_tp_one(void *ctx)
{
	return count(0);
}

SEC("kprobe")
int count_kprobe_by_ip(struct pt_regs *ctx)
{
	return count_by(PT_REGS_IP(ctx) - 1);
}

SEC("uprobe.multi")
int count_uprobe_multi(struct pt_regs *ctx)
{
	return count(bpf_get_attach_cookie(ctx));
}

SEC("uprobe")
int count_uprobe(struct pt_regs *ctx)
{
	return count(bpf_get_attach_cookie(ctx));
}

SEC("usdt")
int count_usdt(struct pt_regs *ctx)
{
	return count(bpf_usdt_cookie(ctx));
}

SEC("kprobe.multi")
int count_kprobe_multi(struct pt_regs *ctx)
{
	return count(bpf_get_attach_cookie(ctx));
}

SEC("kprobe")
int count_kprobe(struct pt_regs *ctx)
{
	return count(bpf_get_attach_cookie(ctx));
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
