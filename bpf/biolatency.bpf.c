// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * biolatency: block I/O latency histograms, aggregated in the kernel.
 *
 * A request is stamped when it is issued to the device (block_rq_issue) or, with -Q, when the OS first
 * sees it (block_io_start, 6.5+, else block_rq_insert), and counted when it completes (block_rq_complete).
 * The classic block tracepoints do not pass the request, so these are BTF tracepoints (tp_btf), or raw
 * tracepoints where the kernel has no tp_btf; user space loads one set (set_autoload). With -c, a request
 * counts if a task of the cgroup made it (block_getrq, see cg_bios).
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


const volatile bool targ_queued = false;
const volatile bool targ_per_disk = false;
const volatile bool targ_per_flag = false;
const volatile bool filter_dev = false;
const volatile __u32 targ_dev = 0;
const volatile bool filter_cg = false;
/* Whether a request_queue comes first in block_rq_insert/issue's arguments, and in block_getrq's (see
 * arg_after_queue): set by user space from the tracepoints' BTF prototypes. */
const volatile bool rq_after_queue = false;
const volatile bool bio_after_queue = false;
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

/*
 * With -c, the bios that began a request while a task of the cgroup ran (block_getrq), by address. The
 * stamp hooks may run elsewhere: before 6.5, a plugged request is issued, and even inserted, by whoever
 * flushes the plug (kblockd's worker when its submitter sleeps), so the submitter's cgroup is judged where
 * the request is made from its first bio, as 6.5's block_io_start does. LRU: bios merged into other
 * requests are never looked up again; a completion removes its request's. Sized as `start` by user space.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 10240);
	__type(key, __u64);
	__type(value, __u8);
} cg_bios SEC(".maps");

/* When each request in flight was stamped (0: not in flight), by its address. max_entries is set by user
 * space. */
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

/*
 * The request's disk as a dev_t. `btf`: rq is a typed pointer (tp_btf) whose fields can be loaded directly;
 * raw_tp pointers are read with bpf_probe_read_kernel (BPF_CORE_READ), about 30 ns a read. Both are CO-RE:
 * rq_disk before 5.17, rq->q->disk since (bpf/core_fixes.bpf.h).
 */
static __always_inline __u32 request_dev(struct request *rq, bool btf)
{
	struct request___pre_5_17 *old = (void *)rq;
	struct gendisk *disk;

	if (!btf) {
		disk = request_disk(rq);
		if (!disk)
			return 0;
		return MKDEV(BPF_CORE_READ(disk, major), BPF_CORE_READ(disk, first_minor));
	}
	if (bpf_core_field_exists(old->rq_disk))
		disk = old->rq_disk;
	else
		disk = rq->q->disk;
	if (!disk)
		return 0;
	return MKDEV(disk->major, disk->first_minor);
}

/* One request flag, moved from the running kernel's bit to bcc's canonical one. */
#define CANON(flags, name, canon)                                                                          \
	(bpf_core_enum_value_exists(enum req_flag_bits, name) &&                                           \
			 ((flags) >> bpf_core_enum_value(enum req_flag_bits, name) & 1)                    \
		 ? (canon)                                                                                 \
		 : 0)

static __always_inline __u32 canonical_flags(struct request *rq, bool btf)
{
	__u32 f = btf ? rq->cmd_flags : BPF_CORE_READ(rq, cmd_flags);

	return (f & REQ_OP_MASK) | CANON(f, __REQ_SYNC, CANON_REQ_SYNC) | CANON(f, __REQ_META, CANON_REQ_META) |
	       CANON(f, __REQ_PRIO, CANON_REQ_PRIO) | CANON(f, __REQ_NOMERGE, CANON_REQ_NOMERGE) |
	       CANON(f, __REQ_IDLE, CANON_REQ_IDLE) | CANON(f, __REQ_FUA, CANON_REQ_FUA) |
	       CANON(f, __REQ_RAHEAD, CANON_REQ_RAHEAD) | CANON(f, __REQ_BACKGROUND, CANON_REQ_BACKGROUND) |
	       CANON(f, __REQ_NOWAIT, CANON_REQ_NOWAIT);
}

static __always_inline __u64 first_bio(struct request *rq, bool btf)
{
	return (__u64)(btf ? rq->bio : BPF_CORE_READ(rq, bio));
}

/* Whether the request was made, from its first bio, by a task of the -c cgroup (cg_bios). */
static __always_inline bool from_cgroup(struct request *rq, bool btf)
{
	__u64 bio = first_bio(rq, btf);

	return bio && bpf_map_lookup_elem(&cg_bios, &bio);
}

/*
 * Stamps a request. `issue`: at block_rq_issue, which with -Q keeps the earlier stamp from the queue.
 *
 * A request's `start` entry is reused in place (ts 0: not in flight) rather than inserted at the stamp and
 * deleted at completion: blk-mq requests are preallocated, so their addresses form a small, stable set,
 * and an in-place store avoids an element allocation, a free and two bucket locks per I/O (measured: the
 * issue program took 327 ns with insert and delete).
 */
static __always_inline int rq_start(struct request *rq, bool issue, bool btf)
{
	__u64 key = (__u64)rq, ts, *tsp;
	long err;

	tsp = bpf_map_lookup_elem(&start, &key);
	/* Stamped when queued (before 6.5, a request inserted and then merged away leaves its stamp behind
	 * until its address is queued again; libbpf-tools shares this). */
	if (issue && targ_queued && tsp && *tsp)
		return 0;
	if ((filter_cg && !from_cgroup(rq, btf)) ||
	    (filter_dev && request_dev(rq, btf) != targ_dev)) {
		if (tsp)
			*tsp = 0;
		return 0;
	}
	ts = bpf_ktime_get_ns();
	if (tsp) {
		*tsp = ts;
		return 0;
	}
	err = bpf_map_update_elem(&start, &key, &ts, BPF_NOEXIST);
	if (err && err != -17 /* EEXIST: stamped on another CPU meanwhile */)
		bio_stat_inc(BIO_STAT_START_FULL);
	return 0;
}

static __always_inline int rq_done(struct request *rq, bool btf)
{
	__u64 key = (__u64)rq, *tsp, delta, value;
	struct hist_key hkey = {};
	struct hist *h;
	__u32 zero = 0;
	__u64 slot;

	if (filter_cg) {
		__u64 bio = first_bio(rq, btf);

		bpf_map_delete_elem(&cg_bios, &bio);
	}
	tsp = bpf_map_lookup_elem(&start, &key);
	if (!tsp || !*tsp) {
		/* Issued before tracing began, or filtered out: with -d, those of the disk are counted. */
		if (filter_dev && request_dev(rq, btf) == targ_dev)
			bio_stat_inc(BIO_STAT_UNSTAMPED);
		return 0;
	}
	delta = bpf_ktime_get_ns() - *tsp;
	*tsp = 0;
	if ((__s64)delta < 0) {
		bio_stat_inc(BIO_STAT_NEGATIVE);
		return 0;
	}

	if (targ_per_disk)
		hkey.dev = request_dev(rq, btf);
	if (targ_per_flag)
		hkey.flags = canonical_flags(rq, btf);
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

/*
 * Commit a54895fa057c ("block: remove the request_queue to argument request based tracepoints", 5.11)
 * dropped the queue that came before the request in block_rq_insert and block_rq_issue (and others, the
 * bio's in block_getrq): ctx[1] where it is there (`after_queue`), else ctx[0]. Not by the kernel's
 * version: Debian's 5.10 has the change backported. The two loads are kept apart (the empty asm on one):
 * merged, they read ctx at a computed offset, which 5.10's verifier refuses ("dereference of modified
 * ctx ptr").
 */
static __always_inline __u64 arg_after_queue(__u64 *ctx, bool after_queue)
{
	__u64 v;

	if (after_queue) {
		v = ctx[1];
		asm volatile("" : "+r"(v));
	} else {
		v = ctx[0];
	}
	return v;
}

static __always_inline struct request *queued_rq_arg(__u64 *ctx)
{
	return (struct request *)arg_after_queue(ctx, rq_after_queue);
}

/* block_getrq: a bio is about to become a new request's first; kept in cg_bios if the cgroup's. */
static __always_inline int mark_bio(__u64 *ctx)
{
	__u64 bio = arg_after_queue(ctx, bio_after_queue);
	__u8 one = 1;

	if (bpf_current_task_under_cgroup(&cgroup_map, 0) == 1)
		bpf_map_update_elem(&cg_bios, &bio, &one, BPF_ANY);
	else
		bpf_map_delete_elem(&cg_bios, &bio);
	return 0;
}

SEC("tp_btf/block_getrq")
int getrq_btf(__u64 *ctx)
{
	return mark_bio(ctx);
}

SEC("raw_tp/block_getrq")
int getrq_raw(__u64 *ctx)
{
	return mark_bio(ctx);
}

SEC("tp_btf/block_io_start")
int io_start_btf(__u64 *ctx)
{
	return rq_start((struct request *)ctx[0], false, true);
}

SEC("tp_btf/block_rq_insert")
int insert_btf(__u64 *ctx)
{
	return rq_start(queued_rq_arg(ctx), false, true);
}

SEC("tp_btf/block_rq_issue")
int issue_btf(__u64 *ctx)
{
	return rq_start(queued_rq_arg(ctx), true, true);
}

SEC("tp_btf/block_rq_complete")
int complete_btf(__u64 *ctx)
{
	return rq_done((struct request *)ctx[0], true);
}

SEC("raw_tp/block_io_start")
int io_start_raw(__u64 *ctx)
{
	return rq_start((struct request *)ctx[0], false, false);
}

SEC("raw_tp/block_rq_insert")
int insert_raw(__u64 *ctx)
{
	return rq_start(queued_rq_arg(ctx), false, false);
}

SEC("raw_tp/block_rq_issue")
int issue_raw(__u64 *ctx)
{
	return rq_start(queued_rq_arg(ctx), true, false);
}

SEC("raw_tp/block_rq_complete")
int complete_raw(__u64 *ctx)
{
	return rq_done((struct request *)ctx[0], false);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
