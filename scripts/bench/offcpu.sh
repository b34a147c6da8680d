#!/usr/bin/env bash
# Benchmarks `bpfprof offcpu` against bpftrace doing the same sched_switch stack aggregation (offcpu.bt:
# stamp and stacks of the thread going off-CPU, blocked time summed by comm, kernel and user stack when it
# comes back), side by side in one run:
#
#   workload  pingpong.c: two threads bouncing a byte over two pipes, pinned to CPU 0, so that every round
#             is two direct context switches (over a million a second here untraced)
#   measures  the workload's wall time untraced, under `bpfprof offcpu` (whole system) and under
#             `bpftrace offcpu.bt`; runs interleaved, the median of BENCH_REPS; the slowdown of each tracer
#             (wall / untraced wall), the ratio of their added times (bpftrace's over bpfprof's: above 1,
#             bpfprof costs less), the switches a second each traced, and each tracer's own BPF time per
#             program run (kernel.bpf_stats_enabled: run_time_ns / run_cnt)
#   checks    each tracer saw the workload's switches (bpfprof's block count, bpftrace's output)
#
# Usage: scripts/bench/offcpu.sh [--quick]      (as root)
# Settings (environment): BENCH_REPS (5), BENCH_ROUNDS (300000), and those of lib.sh.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

bench_args "$@"
if [ "$BENCH_QUICK" = 1 ]; then
  : "${BENCH_REPS:=1}" "${BENCH_ROUNDS:=100000}"
fi
REPS=${BENCH_REPS:-5}
ROUNDS=${BENCH_ROUNDS:-300000}

bench_init offcpu
bench_build_bpfprof
PINGPONG=$(bench_cc pingpong "$BENCH_DIR/pingpong.c")
command -v bpftrace >/dev/null || bench_die "bpftrace not found after scripts/setup.sh --bench"
# bpftrace finds tracepoints through tracefs (bpfprof mounts it itself when it needs it).
if [ ! -d /sys/kernel/tracing/events ]; then
  mount -t tracefs nodev /sys/kernel/tracing || bench_die "cannot mount tracefs for bpftrace"
fi
bench_sysctl_min kernel.bpf_stats_enabled 1
BT_VERSION=$(bpftrace --version | awk '{ print $2 }')
bench_log "bpfprof $BPFPROF_COMMIT, bpftrace $BT_VERSION, $REPS reps of $ROUNDS rounds"
bench_result settings.reps "$REPS"
bench_result settings.rounds "$ROUNDS"

cat >"$BENCH_TMP/offcpu.bt" <<'EOF'
tracepoint:sched:sched_switch
{
	if (args->prev_pid != 0) {
		@start[args->prev_pid] = nsecs;
		@kst[args->prev_pid] = kstack;
		@ust[args->prev_pid] = ustack;
		@cm[args->prev_pid] = comm;
	}
	$s = @start[args->next_pid];
	if ($s != 0) {
		@us[@cm[args->next_pid], @kst[args->next_pid], @ust[args->next_pid]] = sum((nsecs - $s) / 1000);
		delete(@start[args->next_pid]);
	}
}
EOF

# bpf_ns_per_run NAME_REGEX: run time per run of the matching BPF programs that ran at least 1000 times.
bpf_ns_per_run() {
  local t c
  read -r t c <<<"$(bench_bpf_stats "$1" 1000)"
  bench_div "$t" "$c"
}

# once TOOL: one timed run; sets R_WALL, R_SWITCHES, R_NS (BPF ns per run), R_SEEN (what the tracer saw).
once() {
  local tool=$1 dir=$BENCH_TMP/$1 tracer="" i out
  mkdir -p "$dir"
  R_NS=nan R_SEEN=-
  case "$tool" in
    bpfprof) bench_spawn tracer "$BPFPROF" offcpu >"$dir/out" 2>"$dir/err" ;;
    bpftrace) bench_spawn tracer bpftrace "$BENCH_TMP/offcpu.bt" >"$dir/out" 2>"$dir/err" ;;
  esac
  if [ -n "$tracer" ]; then
    bench_wait_attached "$tool" "$tracer" "$dir/out"
    sleep 1
  fi
  out=$(taskset -c 0 "$PINGPONG" -n "$ROUNDS")
  R_WALL=$(sed -n 's/.*wall=\([0-9.]*\).*/\1/p' <<<"$out")
  R_SWITCHES=$(sed -n 's/.*switches=\([0-9]*\).*/\1/p' <<<"$out")
  if [ -n "$tracer" ]; then
    case "$tool" in
      bpfprof) R_NS=$(bpf_ns_per_run 'switch_tp|switch_btf|switch_raw') ;;
      bpftrace) R_NS=$(bpf_ns_per_run 'sched_switch') ;;
    esac
    bench_stop "$tracer" INT 60 || bench_die "$tool failed: $(tail -n 3 "$dir/err")"
    case "$tool" in
      bpfprof) R_SEEN=$(sed -n 's/^bpfprof: \([0-9]*\) blocks.*/\1 blocks/p' "$dir/err") ;;
      bpftrace) R_SEEN="$(grep -c '^@us\[' "$dir/out" || true) stacks" ;;
    esac
  fi
}

declare -A WALL NS SEEN SW
TOOLS=(none bpfprof bpftrace)
taskset -c 0 "$PINGPONG" -n $((ROUNDS / 10)) >/dev/null # warm-up
for ((rep = 1; rep <= REPS; rep++)); do
  order=("${TOOLS[@]}")
  ((rep % 2 == 0)) && order=(bpftrace bpfprof none) # alternate: drift hits all alike
  for tool in "${order[@]}"; do
    once "$tool"
    WALL[$tool]+="$R_WALL "
    NS[$tool]+="$R_NS "
    SW[$tool]+="$R_SWITCHES "
    SEEN[$tool]=$R_SEEN
    bench_log "$(printf 'rep %d %-9s wall %.3f s  switches %s  BPF %s ns/run  saw %s' \
      "$rep" "$tool" "$R_WALL" "$R_SWITCHES" "$R_NS" "$R_SEEN")"
  done
done

med() {
  local words
  read -r -a words <<<"$1"
  bench_median "${words[@]}"
}
base=$(med "${WALL[none]}")
bench_table_add "tracer|wall s|slowdown|switches/s|BPF ns/run|saw"
for tool in "${TOOLS[@]}"; do
  wall=$(med "${WALL[$tool]}")
  slow=$(bench_div "$wall" "$base")
  rate=$(bench_div "$(med "${SW[$tool]}")" "$wall")
  ns=nan
  [ "$tool" = none ] || ns=$(med "${NS[$tool]}")
  bench_table_add "$tool|$(bench_fmt "$wall" 3)|$(bench_fmt "$slow" 2)x|$(bench_fmt "$rate" 0)|$(bench_fmt "$ns" 0)|${SEEN[$tool]}"
  bench_result "$tool.wall_s" "$(bench_fmt "$wall" 4)"
  bench_result "$tool.slowdown" "$(bench_fmt "$slow" 3)"
  bench_result "$tool.switches_per_s" "$(bench_fmt "$rate" 0)"
  bench_result "$tool.bpf_ns_per_run" "$(bench_fmt "$ns" 0)"
done
added_bpfprof=$(bench_sub "$(med "${WALL[bpfprof]}")" "$base")
added_bpftrace=$(bench_sub "$(med "${WALL[bpftrace]}")" "$base")
ratio=$(bench_div "$added_bpftrace" "$added_bpfprof")
bench_result ratio.added_time_bpftrace_over_bpfprof "$(bench_fmt "$ratio" 3)"
bench_table_print "pipe ping-pong, $ROUNDS rounds on CPU 0, median of $REPS"
echo "bpftrace's added time / bpfprof's: $(bench_fmt "$ratio" 2) (above 1: bpfprof costs less)"
bench_finish
