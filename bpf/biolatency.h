/* Types shared by biolatency.bpf.c and user space (src/tools/biolatency.rs). */
#ifndef BPFPROF_BIOLATENCY_H
#define BPFPROF_BIOLATENCY_H

/* Buckets per histogram: 66 log2 buckets (negative, zero, one per bit), or up to 126 linear buckets plus
 * the below-min and from-max ones (src/render/hist.rs: Buckets). */
#define MAX_SLOTS 128

/* bcc's canonical request flags (its biolatency's flags_print): the operation in the low 8 bits, then these
 * bits, wherever the running kernel keeps them (the program translates through CO-RE). */
#define CANON_REQ_SYNC (1u << 11)
#define CANON_REQ_META (1u << 12)
#define CANON_REQ_PRIO (1u << 13)
#define CANON_REQ_NOMERGE (1u << 14)
#define CANON_REQ_IDLE (1u << 15)
#define CANON_REQ_FUA (1u << 17)
#define CANON_REQ_RAHEAD (1u << 19)
#define CANON_REQ_BACKGROUND (1u << 20)
#define CANON_REQ_NOWAIT (1u << 21)

/* One histogram per key: the disk (-D; 0 otherwise) and the request flags (-F; 0 otherwise). */
struct hist_key {
	__u32 dev; /* the kernel's dev_t: major << 20 | minor */
	__u32 flags;
};

struct hist {
	__u64 slots[MAX_SLOTS];
	__u64 sum_ns; /* exact: averages are not estimated from buckets */
	__u64 count;
};

/* Indexes of the per-CPU `bio_stats` array: what was counted, and every loss. */
enum bio_stat {
	BIO_STAT_IOS = 0,     /* completions timed */
	BIO_STAT_START_FULL,  /* start map full: a request not timed */
	BIO_STAT_HISTS_FULL,  /* histogram map full: a completion not counted */
	BIO_STAT_NEGATIVE,    /* a completion stamped before its start (clock skew): not counted */
	BIO_STAT_UNSTAMPED,   /* with -d: a completion of that disk with no start stamp (issued before tracing) */
	BIO_STAT_MAX,
};

#endif
