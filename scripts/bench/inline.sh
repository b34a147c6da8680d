#!/usr/bin/env bash
# Benchmarks the report step with inlined frames and source lines (issue 19): profile.sh's 100k-sample,
# 10^4-stack profile (gen-manystacks.sh, built -O2 -g), but with its spinning leaf function inlined into
# each of the last level's (always_inline: most samples fall in inlined code), sampled at 4999 Hz on
# every CPU for BENCH_REPORT_SECS, then:
#
#   bpfprof          `bpfprof profile -F 4999 --svg`: end of sampling (watched by fdwatch.c) to exit
#   bpfprof inline   the same with `--inline --lines` (another sampling of the same workload)
#   perf             `perf script | inferno-collapse-perf | inferno-flamegraph` on one perf.data
#   perf inline      the same pipeline with `perf script --inline`, on that same perf.data
#
# bpfprof names stacks as they come, while it samples: its CPU time for the whole run is shown too. Each
# row also says how many frames of the flame graph are inlined ones (bpfprof: `[inlined]`; perf:
# leaf_spin, which perf shows only if its --inline finds it). Ratios: bpfprof inline over plain (the issue's target: under 2x), perf inline over bpfprof
# inline (the issue's: bpfprof faster). Medians of BENCH_REPS (3) runs.
#
# Usage: scripts/bench/inline.sh [--quick]       (as root; ~4 min here, --quick ~1 min)
# Settings: BENCH_REPORT_SECS (10), BENCH_REPS (3), BENCH_STACK_STORAGE (131072), and lib.sh's.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

bench_args "$@"
if [ "$BENCH_QUICK" = 1 ]; then
  : "${BENCH_REPORT_SECS:=3}" "${BENCH_REPS:=1}"
fi
REPORT_SECS=${BENCH_REPORT_SECS:-10}
REPS=${BENCH_REPS:-3}
REPORT_HZ=4999
STACK_STORAGE=${BENCH_STACK_STORAGE:-131072}

bench_init inline
if [ "$BENCH_QUICK" = 1 ]; then
  BENCH_RESULT_FILE=$BENCH_RESULTS_DIR/inline-quick-$(date +%Y-%m-%d).txt
fi
bench_build_bpfprof
bench_ensure_inferno
"$BENCH_DIR/gen-manystacks.sh" |
  sed 's/^NOINLINE static uint64_t leaf_spin/static inline __attribute__((always_inline)) uint64_t leaf_spin/' \
    >"$BENCH_CACHE/manystacks-inlined.c"
grep -q always_inline "$BENCH_CACHE/manystacks-inlined.c" || bench_die "gen-manystacks.sh's leaf_spin changed"
MANYSTACKS=$(bench_cc manystacks-inlined "$BENCH_CACHE/manystacks-inlined.c")
bench_sysctl_min kernel.perf_event_max_sample_rate "$REPORT_HZ"
bench_result settings.report_secs "$REPORT_SECS"
bench_result settings.reps "$REPS"

start_manystacks() {
  bench_spawn MS_PID "$MANYSTACKS" -t "$BENCH_NCPU" -s $((REPORT_SECS + 60))
  sleep 0.3
}

# report_bpfprof NAME [ARGS...]: one profile; appends to BP_<NAME>_S (seconds), BP_<NAME>_CPU (its CPU
# seconds, the whole run) and BP_<NAME>_INL (inlined frames in the SVG).
report_bpfprof() {
  local name=$1 dir bp child stop end rc=0 wrote i
  shift
  dir=$BENCH_TMP/bpfprof-$name-${#BP_PLAIN_S[@]}-${#BP_INLINE_S[@]}
  mkdir -p "$dir"
  start_manystacks
  # Under a shell of its own, whose `times` is bpfprof's CPU time alone; fdwatch watches bpfprof itself.
  # shellcheck disable=SC2016 # expanded by the inner bash
  bench_spawn bp bash -c '"$@"; rc=$?; times >"$0"; exit $rc' "$dir/times" "$BPFPROF" profile -F "$REPORT_HZ" \
    --stack-storage-size "$STACK_STORAGE" "$@" --svg "$dir/out.svg" "$REPORT_SECS" 2>"$dir/err"
  for ((i = 0; i < 250; i++)); do
    child=$(pgrep -P "$bp" | head -n1) && [ -n "$child" ] && break
    sleep 0.02
  done
  "$FDWATCH" -n "$BENCH_NCPU" -k "$MS_PID" -t $((REPORT_SECS + 120)) "${child:-$bp}" >"$dir/fdwatch" || true
  bench_reap "$bp" || rc=$?
  end=$EPOCHREALTIME
  local -n cpu=BP_${name}_CPU
  cpu+=("$(awk 'NR == 2 { t = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] } print t }' \
    "$dir/times" 2>/dev/null || echo nan)")
  bench_stop "$MS_PID" TERM 10 || true
  stop=$(awk '$1 == "stop" { print $2 }' "$dir/fdwatch")
  if [ "$rc" -ne 0 ] || [ -z "$stop" ]; then
    bench_warn "bpfprof $* failed (status $rc, fdwatch: $(tr '\n' ' ' <"$dir/fdwatch"))"
    sed 's/^/    /' "$dir/err" >&2
    return 1
  fi
  wrote=$(sed -n 's/^bpfprof: \([0-9]*\) samples, \([0-9]*\) distinct stacks$/\1 \2/p' "$dir/err")
  local -n secs=BP_${name}_S inl=BP_${name}_INL
  secs+=("$(bench_sub "$end" "$stop")")
  inl+=("$(grep -o '<title>[^<]*\[inlined\]' "$dir/out.svg" | wc -l)")
  bench_log "$(printf 'bpfprof %s: %.3f s, CPU %.2f s, %s samples, %s stacks, %s inlined frames in the SVG' \
    "$name" "${secs[-1]}" "${cpu[-1]}" "${wrote% *}" "${wrote#* }" "${inl[-1]}")"
}

# report_perf: one perf record, then both pipelines on its data.
report_perf() {
  local dir=$BENCH_TMP/perf-${#PF_PLAIN_S[@]} rc=0 start end variant
  mkdir -p "$dir"
  start_manystacks
  timeout $((REPORT_SECS + 300)) perf record -g -F "$REPORT_HZ" -a -o "$dir/perf.data" -- \
    bash -c 'sleep "$1"; kill -TERM "$2"' _ "$REPORT_SECS" "$MS_PID" >/dev/null 2>"$dir/record.err" || rc=$?
  bench_stop "$MS_PID" TERM 10 || true
  [ "$rc" -eq 0 ] || {
    bench_warn "perf record failed:"
    sed 's/^/    /' "$dir/record.err" >&2
    return 1
  }
  for variant in PLAIN INLINE; do
    local -a opt=()
    [ "$variant" = PLAIN ] || opt=(--inline)
    start=$EPOCHREALTIME
    if ! timeout 900 perf script "${opt[@]}" -i "$dir/perf.data" 2>"$dir/script.err" |
      timeout 900 "$INFERNO_COLLAPSE_PERF" 2>/dev/null | tee "$dir/$variant.folded" |
      timeout 900 "$INFERNO_FLAMEGRAPH" >"$dir/$variant.svg" 2>/dev/null; then
      bench_warn "perf script ${opt[*]} | collapse | flamegraph failed:"
      head -n 5 "$dir/script.err" | sed 's/^/    /' >&2
      return 1
    fi
    end=$EPOCHREALTIME
    local -n secs=PF_${variant}_S inl=PF_${variant}_INL
    secs+=("$(bench_sub "$end" "$start")")
    inl+=("$(grep -o '<title>leaf_spin' "$dir/$variant.svg" | wc -l)")
    bench_log "$(printf 'perf %s: %.3f s, %s stacks, %s leaf_spin frames in the SVG' \
      "${variant,,}" "${secs[-1]}" "$(wc -l <"$dir/$variant.folded")" "${inl[-1]}")"
  done
  rm -f "$dir/perf.data"
}

BP_PLAIN_S=() BP_PLAIN_INL=() BP_INLINE_S=() BP_INLINE_INL=() BP_PLAIN_CPU=() BP_INLINE_CPU=()
PF_PLAIN_S=() PF_PLAIN_INL=() PF_INLINE_S=() PF_INLINE_INL=()
bench_log "report step with inlined frames: $REPS x at $REPORT_HZ Hz for $REPORT_SECS s on $BENCH_NCPU CPUs"
for ((rep = 1; rep <= REPS; rep++)); do
  report_bpfprof PLAIN || true
  report_bpfprof INLINE --inline --lines || true
  report_perf || true
done

med() { if [ "$#" -gt 0 ]; then bench_median "$@"; else echo nan; fi; }
bp_plain=$(med "${BP_PLAIN_S[@]}") bp_inline=$(med "${BP_INLINE_S[@]}")
pf_plain=$(med "${PF_PLAIN_S[@]}") pf_inline=$(med "${PF_INLINE_S[@]}")
ratio_bp=$(bench_div "$bp_inline" "$bp_plain")
ratio_pf=$(bench_div "$pf_inline" "$bp_inline")
bp_plain_cpu=$(med "${BP_PLAIN_CPU[@]}") bp_inline_cpu=$(med "${BP_INLINE_CPU[@]}")
ratio_cpu=$(bench_div "$bp_inline_cpu" "$bp_plain_cpu")
bench_table_add "tool|report s|inlined frames in SVG|ratio|bpfprof CPU s (whole run)"
bench_table_add "bpfprof|$(bench_fmt "$bp_plain" 3)|$(med "${BP_PLAIN_INL[@]}" | bench_int)||$(bench_fmt "$bp_plain_cpu" 2)"
bench_table_add "bpfprof --inline --lines|$(bench_fmt "$bp_inline" 3)|$(med "${BP_INLINE_INL[@]}" | bench_int)|$(bench_fmt "$ratio_bp" 2)x of bpfprof (target < 2x)|$(bench_fmt "$bp_inline_cpu" 2) ($(bench_fmt "$ratio_cpu" 2)x)"
bench_table_add "perf script|$(bench_fmt "$pf_plain" 3)|$(med "${PF_PLAIN_INL[@]}" | bench_int)||"
bench_table_add "perf script --inline|$(bench_fmt "$pf_inline" 3)|$(med "${PF_INLINE_INL[@]}" | bench_int)|$(bench_fmt "$ratio_pf" 2)x of bpfprof --inline --lines (target > 1x)|"
bench_table_print "report step, end of sampling to SVG (median of $REPS)"
bench_result bpfprof.plain.seconds "$(bench_fmt "$bp_plain" 4)"
bench_result bpfprof.inline_lines.seconds "$(bench_fmt "$bp_inline" 4)"
bench_result perf.plain.seconds "$(bench_fmt "$pf_plain" 4)"
bench_result perf.inline.seconds "$(bench_fmt "$pf_inline" 4)"
bench_result bpfprof.plain.cpu_seconds "$(bench_fmt "$bp_plain_cpu" 4)"
bench_result bpfprof.inline_lines.cpu_seconds "$(bench_fmt "$bp_inline_cpu" 4)"
bench_result ratio.bpfprof_inline_over_plain "$ratio_bp"
bench_result ratio.bpfprof_inline_over_plain_cpu "$ratio_cpu"
bench_result ratio.perf_inline_over_bpfprof_inline "$ratio_pf"
bench_finish
