#!/usr/bin/env bash
# Benchmarks `bpfprof funccount` against bpftrace counting the same uprobe
# (`uprobe:BIN:hot { @[func] = count(); }`), side by side in one run:
#
#   workload  hotcall.c: one noinline function called BENCH_CALLS times in a tight loop, on CPU 0
#   measures  the loop's wall time untraced, under `bpfprof funccount u:BIN:hot` and under bpftrace; runs
#             interleaved, the median of BENCH_REPS; each tracer's added time per call (ns), the ratio of
#             the two (bpftrace's over bpfprof's: above 1, bpfprof costs less), and each tracer's own BPF
#             time per call (kernel.bpf_stats_enabled). Most of a uprobe's cost is the kernel's breakpoint
#             trap, paid by both; the BPF time shows what each tracer adds to it.
#   checks    each tracer counted exactly BENCH_CALLS calls
#
# Usage: scripts/bench/funccount.sh [--quick]      (as root)
# Settings (environment): BENCH_REPS (5), BENCH_CALLS (2000000), and those of lib.sh.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

bench_args "$@"
if [ "$BENCH_QUICK" = 1 ]; then
  : "${BENCH_REPS:=1}" "${BENCH_CALLS:=300000}"
fi
REPS=${BENCH_REPS:-5}
CALLS=${BENCH_CALLS:-2000000}

bench_init funccount
bench_build_bpfprof
HOTCALL=$(bench_cc hotcall "$BENCH_DIR/hotcall.c")
command -v bpftrace >/dev/null || bench_die "bpftrace not found after scripts/setup.sh --bench"
bench_sysctl_min kernel.bpf_stats_enabled 1
BT_VERSION=$(bpftrace --version | awk '{ print $2 }')
bench_log "bpfprof $BPFPROF_COMMIT, bpftrace $BT_VERSION, $REPS reps of $CALLS calls"
bench_result settings.reps "$REPS"
bench_result settings.calls "$CALLS"

# once TOOL: one timed run; sets R_WALL, R_NS (BPF ns per call), R_SEEN (calls the tracer counted).
once() {
  local tool=$1 dir=$BENCH_TMP/$1 tracer="" out t
  mkdir -p "$dir"
  R_NS=nan R_SEEN=-
  case "$tool" in
    bpfprof) bench_spawn tracer "$BPFPROF" funccount "u:$HOTCALL:hot" >"$dir/out" 2>"$dir/err" ;;
    bpftrace) bench_spawn tracer bpftrace -e "uprobe:$HOTCALL:hot { @[func] = count(); }" >"$dir/out" 2>"$dir/err" ;;
  esac
  if [ -n "$tracer" ]; then
    bench_wait_attached "$tool" "$tracer" "$dir/out"
    sleep 1
  fi
  out=$(taskset -c 0 "$HOTCALL" "$CALLS")
  R_WALL=$(sed -n 's/.*wall=\([0-9.]*\).*/\1/p' <<<"$out")
  if [ -n "$tracer" ]; then
    case "$tool" in
      bpfprof) read -r t _ <<<"$(bench_bpf_stats 'count_uprobe_multi|count_uprobe')" ;;
      bpftrace) read -r t _ <<<"$(bench_bpf_stats 'uprobe_.*|hot')" ;;
    esac
    R_NS=$(bench_div "$t" "$CALLS")
    bench_stop "$tracer" INT 60 || bench_die "$tool failed: $(tail -n 3 "$dir/err")"
    case "$tool" in
      bpfprof) R_SEEN=$(awk '$1 == "hot" { print $2 }' "$dir/out") ;;
      bpftrace) R_SEEN=$(sed -n 's/^@\[.*\]: \([0-9]*\)$/\1/p' "$dir/out") ;;
    esac
    [ "${R_SEEN:-0}" = "$CALLS" ] || bench_die "$tool counted ${R_SEEN:-nothing} of $CALLS calls"
  fi
}

declare -A WALL NS SEEN
TOOLS=(none bpfprof bpftrace)
taskset -c 0 "$HOTCALL" "$CALLS" >/dev/null # warm-up
for ((rep = 1; rep <= REPS; rep++)); do
  order=("${TOOLS[@]}")
  ((rep % 2 == 0)) && order=(bpftrace bpfprof none) # alternate: drift hits all alike
  for tool in "${order[@]}"; do
    once "$tool"
    WALL[$tool]+="$R_WALL "
    NS[$tool]+="$R_NS "
    SEEN[$tool]=$R_SEEN
    bench_log "$(printf 'rep %d %-9s wall %.3f s  BPF %s ns/call  counted %s' \
      "$rep" "$tool" "$R_WALL" "$(bench_fmt "$R_NS" 0)" "$R_SEEN")"
  done
done

med() {
  local words
  read -r -a words <<<"$1"
  bench_median "${words[@]}"
}
base=$(med "${WALL[none]}")
bench_table_add "tracer|wall s|added ns/call|BPF ns/call|counted (last run)"
declare -A ADDED
for tool in "${TOOLS[@]}"; do
  wall=$(med "${WALL[$tool]}")
  ADDED[$tool]=$(awk -v w="$wall" -v b="$base" -v n="$CALLS" 'BEGIN { printf "%.3f\n", (w - b) / n * 1e9 }')
  ns=nan
  [ "$tool" = none ] || ns=$(med "${NS[$tool]}")
  bench_table_add "$tool|$(bench_fmt "$wall" 3)|$(bench_fmt "${ADDED[$tool]}" 0)|$(bench_fmt "$ns" 0)|${SEEN[$tool]}"
  bench_result "$tool.wall_s" "$(bench_fmt "$wall" 4)"
  bench_result "$tool.added_ns_per_call" "$(bench_fmt "${ADDED[$tool]}" 1)"
  bench_result "$tool.bpf_ns_per_call" "$(bench_fmt "$ns" 0)"
done
ratio=$(bench_div "${ADDED[bpftrace]}" "${ADDED[bpfprof]}")
bench_result ratio.added_time_bpftrace_over_bpfprof "$(bench_fmt "$ratio" 3)"
bench_table_print "$CALLS calls of one uprobed function on CPU 0, median of $REPS"
echo "bpftrace's added time per call / bpfprof's: $(bench_fmt "$ratio" 2) (above 1: bpfprof costs less)"
bench_finish
