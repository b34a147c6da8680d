/* Bucket indexes for histograms, the same as src/render/hist.rs computes (log2_index). */
#ifndef BPFPROF_BITS_BPF_H
#define BPFPROF_BITS_BPF_H

/* floor(log2(v)) for v > 0, without loops (the verifier prefers straight-line code). */
static __always_inline __u32 floor_log2(__u64 v)
{
	__u32 r = 0, s;

	s = (v > 0xFFFFFFFFULL) << 5; v >>= s; r |= s;
	s = (v > 0xFFFF) << 4; v >>= s; r |= s;
	s = (v > 0xFF) << 3; v >>= s; r |= s;
	s = (v > 0xF) << 2; v >>= s; r |= s;
	s = (v > 0x3) << 1; v >>= s; r |= s;
	r |= (v >> 1);
	return r;
}

/* bpftrace's hist index: 1 for 0, k + 2 for [2^k, 2^(k+1)) (0 is for negative values). */
static __always_inline __u64 log2_index(__u64 v)
{
	return v ? floor_log2(v) + 2 : 1;
}

/* bpftrace's lhist index: 0 below min, 1 + (v - min) / step inside, n + 1 from max up. */
static __always_inline __u64 linear_index(__u64 v, __u64 min, __u64 max, __u64 step)
{
	if (v < min)
		return 0;
	if (v >= max)
		return (max - min) / step + 1;
	return (v - min) / step + 1;
}

#endif
