// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * biolatency: block I/O latency histograms, aggregated in the kernel.
 *
 * A request is stamped when it is issued to the device (block_rq_issue) or, with -Q, when the OS first
 * sees it (block_io_start, 6.5+, else block_rq_insert), and counted when it completes (block_rq_complete).
 * The classic block tracepoints do not pass the request, so these are BTF tracepoints (tp_btf), or raw
 * tracepoints where the kernel has no tp_btf; user space loads one set (set_autoload).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "biolatency.h"
#include "bits.bpf.h"
#include "core_fixes.bpf.h"

#define MKDEV(ma, mi) ((__u32)(ma) << 20 | (mi))
#define REQ_OP_MASK 0xff

extern int LINUX_KERNEL_VERSION __kconfig;

const volatile bool targ_queued = false;
const volatile bool targ_per_disk = false;
const volatile bool targ_per_flag = false;
const volatile bool filter_dev = false;
const volatile __u32 targ_dev = 0;
const volatile bool filter_cg = false;
/* Nanoseconds per unit of the histogram: 1000 (usecs) or 1000000 (msecs, -m). */
const volatile __u64 unit_ns = 1000;
/* Linear buckets (lin_step > 0) in units, else log2. */
const volatile __u64 lin_min = 0;
const volatile __u64 lin_max = 0;
const volatile __u64 lin_step = 0;

struct {
	__uint(type, BPF_MAP_TYPE_CGROUP_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} cgroup_map SEC(".maps");

/* When each request in flight was stamped, by its address. max_entries is set by user space. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u64);
	__type(value, __u64);
} start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct hist_key);
	__type(value, struct hist);
} hists SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BIO_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} bio_stats SEC(".maps");

/* A zeroed histogram to insert from: too large for the BPF stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hist);
} zero_hist SEC(".maps");

static __always_inline void bio_stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&bio_stats, &idx);

	if (v)
		(*v)++;
}

static __always_inline __u32 request_dev(struct request *rq)
{
	struct gendisk *disk = request_disk(rq);

	if (!disk)
		return 0;
	return MKDEV(BPF_CORE_READ(disk, major), BPF_CORE_READ(disk, first_minor));
}

/* One request flag, moved from the running kernel's bit to bcc's canonical one. */
#define CANON(flags, name, canon)                                                                          \
	(bpf_core_enum_value_exists(enum req_flag_bits, name) &&                                           \
			 ((flags) >> bpf_core_enum_value(enum req_flag_bits, name) & 1)                    \
		 ? (canon)                                                                                 \
		 : 0)

static __always_inline __u32 canonical_flags(struct request *rq)
{
	__u32 f = BPF_CORE_READ(rq, cmd_flags);

	return (f & REQ_OP_MASK) | CANON(f, __REQ_SYNC, CANON_REQ_SYNC) | CANON(f, __REQ_META, CANON_REQ_META) |
	       CANON(f, __REQ_PRIO, CANON_REQ_PRIO) | CANON(f, __REQ_NOMERGE, CANON_REQ_NOMERGE) |
	       CANON(f, __REQ_IDLE, CANON_REQ_IDLE) | CANON(f, __REQ_FUA, CANON_REQ_FUA) |
	       CANON(f, __REQ_RAHEAD, CANON_REQ_RAHEAD) | CANON(f, __REQ_BACKGROUND, CANON_REQ_BACKGROUND) |
	       CANON(f, __REQ_NOWAIT, CANON_REQ_NOWAIT);
}

/* Stamps a request. `issue`: at block_rq_issue, which with -Q keeps the earlier stamp from the queue. */
static __always_inline int rq_start(struct request *rq, bool issue)
{
	__u64 key = (__u64)rq, ts = bpf_ktime_get_ns();
	long err;

	if (issue && targ_queued && bpf_map_lookup_elem(&start, &key))
		return 0;
	if (filter_cg && !bpf_current_task_under_cgroup(&cgroup_map, 0))
		return 0;
	if (filter_dev && request_dev(rq) != targ_dev)
		return 0;
	err = bpf_map_update_elem(&start, &key, &ts, BPF_ANY);
	if (err)
		bio_stat_inc(BIO_STAT_START_FULL);
	return 0;
}

static __always_inline int rq_done(struct request *rq)
{
	__u64 key = (__u64)rq, *tsp, delta, value;
	struct hist_key hkey = {};
	struct hist *h;
	__u32 zero = 0;
	__u64 slot;

	tsp = bpf_map_lookup_elem(&start, &key);
	if (!tsp)
		return 0; /* issued before tracing began, or filtered out */
	delta = bpf_ktime_get_ns() - *tsp;
	bpf_map_delete_elem(&start, &key);
	if ((__s64)delta < 0) {
		bio_stat_inc(BIO_STAT_NEGATIVE);
		return 0;
	}

	if (targ_per_disk)
		hkey.dev = request_dev(rq);
	if (targ_per_flag)
		hkey.flags = canonical_flags(rq);
	h = bpf_map_lookup_elem(&hists, &hkey);
	if (!h) {
		struct hist *init = bpf_map_lookup_elem(&zero_hist, &zero);

		if (!init)
			return 0;
		long err = bpf_map_update_elem(&hists, &hkey, init, BPF_NOEXIST);
		if (err && err != -17 /* EEXIST: another CPU added it */) {
			bio_stat_inc(BIO_STAT_HISTS_FULL);
			return 0;
		}
		h = bpf_map_lookup_elem(&hists, &hkey);
		if (!h)
			return 0;
	}

	value = delta / unit_ns;
	if (lin_step)
		slot = linear_index(value, lin_min, lin_max, lin_step);
	else
		slot = log2_index(value);
	if (slot >= MAX_SLOTS)
		slot = MAX_SLOTS - 1;
	__sync_fetch_and_add(&h->slots[slot], 1);
	__sync_fetch_and_add(&h->sum_ns, delta);
	__sync_fetch_and_add(&h->count, 1);
	bio_stat_inc(BIO_STAT_IOS);
	return 0;
}

/* Commit a54895fa057c ("block: remove the request_queue to argument request based tracepoints", 5.11)
 * dropped the queue that came before the request in block_rq_insert and block_rq_issue. */
static __always_inline struct request *queued_rq_arg(__u64 *ctx)
{
	if (LINUX_KERNEL_VERSION < KERNEL_VERSION(5, 11, 0))
		return (struct request *)ctx[1];
	return (struct request *)ctx[0];
}

SEC("tp_btf/block_io_start")
int io_start_btf(__u64 *ctx)
{
	return rq_start((struct request *)ctx[0], false);
}

SEC("tp_btf/block_rq_insert")
int insert_btf(__u64 *ctx)
{
	return rq_start(queued_rq_arg(ctx), false);
}

SEC("tp_btf/block_rq_issue")
int issue_btf(__u64 *ctx)
{
	return rq_start(queued_rq_arg(ctx), true);
}

SEC("tp_btf/block_rq_complete")
int complete_btf(__u64 *ctx)
{
	return rq_done((struct request *)ctx[0]);
}

SEC("raw_tp/block_io_start")
int io_start_raw(__u64 *ctx)
{
	return rq_start((struct request *)ctx[0], false);
}

SEC("raw_tp/block_rq_insert")
int insert_raw(__u64 *ctx)
{
	return rq_start(queued_rq_arg(ctx), false);
}

SEC("raw_tp/block_rq_issue")
int issue_raw(__u64 *ctx)
{
	return rq_start(queued_rq_arg(ctx), true);
}

SEC("raw_tp/block_rq_complete")
int complete_raw(__u64 *ctx)
{
	return rq_done((struct request *)ctx[0]);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
