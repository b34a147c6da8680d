#!/usr/bin/env bash
# Benchmarks `bpfprof biolatency` against bpftrace doing the same aggregation (biolatency.bt: a start
# stamp per request at block_rq_issue, keyed by device and sector since bpftrace 0.17 cannot see the
# request at a tracepoint, and a log2 histogram of the time to block_rq_complete), side by side in one run:
#
#   workload  randread.c: 4 KiB O_DIRECT random reads, one at a time, for BENCH_SECS seconds, from a loop
#             device backed by a file in /dev/shm (no disk behind it: the I/O path is all CPU, the worst
#             case for a tracer's cost per request). The reader and the loop driver's workers (unbound
#             workqueues, /sys/devices/virtual/workqueue/cpumask, restored on exit) run on CPU 0: spread
#             over both CPUs, each I/O waited for a cross-CPU wakeup whose cost depended on whether the
#             other CPU was idle, and IOPS varied by 30 % from run to run (a tracer's own timer made the
#             traced runs faster); on one CPU they vary by about 1 %.
#   measures  IOPS untraced, under `bpfprof biolatency` and under `bpftrace biolatency.bt`; runs
#             interleaved, the median of BENCH_REPS; each tracer's IOPS loss, the ratio of their added
#             time per I/O (bpftrace's over bpfprof's: above 1, bpfprof costs less), and each tracer's own
#             BPF time per I/O (kernel.bpf_stats_enabled: run_time_ns of its programs / I/Os)
#   checks    each tracer counted the workload's I/Os (within 1%: I/O in flight at attach and detach)
#
# Usage: scripts/bench/biolatency.sh [--quick]      (as root)
# Settings (environment): BENCH_REPS (5), BENCH_SECS (4), and those of lib.sh.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

bench_args "$@"
if [ "$BENCH_QUICK" = 1 ]; then
  : "${BENCH_REPS:=1}" "${BENCH_SECS:=2}"
fi
REPS=${BENCH_REPS:-5}
SECS=${BENCH_SECS:-4}

bench_init biolatency
bench_build_bpfprof
RANDREAD=$(bench_cc randread "$BENCH_DIR/randread.c")
command -v bpftrace >/dev/null || bench_die "bpftrace not found after scripts/setup.sh --bench"
if [ ! -d /sys/kernel/tracing/events ]; then
  mount -t tracefs nodev /sys/kernel/tracing || bench_die "cannot mount tracefs for bpftrace"
fi
bench_sysctl_min kernel.bpf_stats_enabled 1
BT_VERSION=$(bpftrace --version | awk '{ print $2 }')

IMG=/dev/shm/bpfprof-bench-biolatency.img
WQ_MASK=/sys/devices/virtual/workqueue/cpumask
OLD_WQ_MASK=$(cat "$WQ_MASK")
truncate -s 256M "$IMG"
LOOP=$(losetup -f --show "$IMG")
# Detached and restored on exit (bench_cleanup exits with the status it finds in $?).
trap 'rc=$?; echo "$OLD_WQ_MASK" >"$WQ_MASK"; losetup -d "$LOOP" 2>/dev/null; rm -f "$IMG"; (exit $rc); bench_cleanup' EXIT
echo 1 >"$WQ_MASK" # unbound workqueue workers (the loop driver's) on CPU 0, with the reader
dd if=/dev/zero of="$LOOP" bs=1M count=256 oflag=direct status=none # allocate every page of the file
bench_log "bpfprof $BPFPROF_COMMIT, bpftrace $BT_VERSION, $REPS reps of $SECS s on $LOOP (/dev/shm)"
bench_result settings.reps "$REPS"
bench_result settings.secs "$SECS"

cat >"$BENCH_TMP/biolatency.bt" <<'BT'
tracepoint:block:block_rq_issue { @start[args->dev, args->sector] = nsecs; }
tracepoint:block:block_rq_complete /@start[args->dev, args->sector]/
{
	@usecs = hist((nsecs - @start[args->dev, args->sector]) / 1000);
	delete(@start[args->dev, args->sector]);
}
BT

# bpf_run_ns NAME_REGEX: total run time of the matching BPF programs (bpftrace's block_rq_complete program
# is named block_rq_comple: the kernel keeps 15 characters).
bpf_run_ns() {
  local t
  read -r t _ <<<"$(bench_bpf_stats "$1")"
  echo "$t"
}

# once TOOL: one timed run; sets R_IOPS, R_IOS, R_NS (BPF ns per I/O), R_SEEN (I/Os the tracer counted).
once() {
  local tool=$1 dir=$BENCH_TMP/$1 tracer="" i out
  mkdir -p "$dir"
  R_NS=nan R_SEEN=-
  case "$tool" in
    bpfprof) bench_spawn tracer "$BPFPROF" biolatency -e -d "${LOOP#/dev/}" >"$dir/out" 2>"$dir/err" ;;
    bpftrace) bench_spawn tracer bpftrace "$BENCH_TMP/biolatency.bt" >"$dir/out" 2>"$dir/err" ;;
  esac
  if [ -n "$tracer" ]; then
    bench_wait_attached "$tool" "$tracer" "$dir/out"
    sleep 1
  fi
  out=$(taskset -c 0 "$RANDREAD" "$LOOP" "$SECS")
  R_IOPS=$(sed -n 's/.*iops=\([0-9.]*\).*/\1/p' <<<"$out")
  R_IOS=$(sed -n 's/.*ios=\([0-9]*\).*/\1/p' <<<"$out")
  if [ -n "$tracer" ]; then
    case "$tool" in
      bpfprof) R_NS=$(bench_div "$(bpf_run_ns 'issue_btf|complete_btf|issue_raw|complete_raw')" "$R_IOS") ;;
      bpftrace) R_NS=$(bench_div "$(bpf_run_ns 'block_rq_issue|block_rq_comple')" "$R_IOS") ;;
    esac
    bench_stop "$tracer" INT 60 || bench_die "$tool failed: $(tail -n 3 "$dir/err")"
    case "$tool" in
      bpfprof) R_SEEN=$(sed -n 's/^avg = .*count: \([0-9]*\)$/\1/p' "$dir/out") ;;
      bpftrace) R_SEEN=$(sed -E -n 's/^[[(][^])]*[])] +([0-9]+) \|.*/\1/p' "$dir/out" | awk '{ n += $1 } END { print n + 0 }') ;;
    esac
    # The tracer was attached before the reads began and detached after they ended.
    if [ "$(awk -v s="${R_SEEN:-0}" -v n="$R_IOS" 'BEGIN { print (s < n * 0.99 || s > n * 1.01) }')" = 1 ]; then
      bench_die "$tool counted ${R_SEEN:-none} I/Os of $R_IOS"
    fi
  fi
}

declare -A IOPS NS SEEN
TOOLS=(none bpfprof bpftrace)
taskset -c 0 "$RANDREAD" "$LOOP" 1 >/dev/null # warm-up
for ((rep = 1; rep <= REPS; rep++)); do
  order=("${TOOLS[@]}")
  ((rep % 2 == 0)) && order=(bpftrace bpfprof none) # alternate: drift hits all alike
  for tool in "${order[@]}"; do
    once "$tool"
    IOPS[$tool]+="$R_IOPS "
    NS[$tool]+="$R_NS "
    SEEN[$tool]=$R_SEEN
    bench_log "$(printf 'rep %d %-9s %s IOPS  BPF %s ns/IO  counted %s of %s' \
      "$rep" "$tool" "$R_IOPS" "$(bench_fmt "$R_NS" 0)" "$R_SEEN" "$R_IOS")"
  done
done

med() {
  local words
  read -r -a words <<<"$1"
  bench_median "${words[@]}"
}
base=$(med "${IOPS[none]}")
bench_table_add "tracer|IOPS|IOPS lost|added us/IO|BPF ns/IO|counted (last run)"
declare -A ADDED
for tool in "${TOOLS[@]}"; do
  iops=$(med "${IOPS[$tool]}")
  lost=$(awk -v b="$base" -v i="$iops" 'BEGIN { printf "%.6f\n", (1 - i / b) * 100 }')
  # Time added per I/O: 1/IOPS traced - 1/IOPS untraced.
  ADDED[$tool]=$(awk -v b="$base" -v i="$iops" 'BEGIN { printf "%.6f\n", (1 / i - 1 / b) * 1e6 }')
  ns=nan
  [ "$tool" = none ] || ns=$(med "${NS[$tool]}")
  bench_table_add "$tool|$(bench_fmt "$iops" 0)|$(bench_fmt "$lost" 1) %|$(bench_fmt "${ADDED[$tool]}" 3)|$(bench_fmt "$ns" 0)|${SEEN[$tool]}"
  bench_result "$tool.iops" "$(bench_fmt "$iops" 0)"
  bench_result "$tool.iops_lost_pct" "$(bench_fmt "$lost" 2)"
  bench_result "$tool.added_us_per_io" "$(bench_fmt "${ADDED[$tool]}" 4)"
  bench_result "$tool.bpf_ns_per_io" "$(bench_fmt "$ns" 0)"
done
ratio=$(bench_div "${ADDED[bpftrace]}" "${ADDED[bpfprof]}")
bench_result ratio.added_time_bpftrace_over_bpfprof "$(bench_fmt "$ratio" 3)"
bench_table_print "4 KiB O_DIRECT random reads at queue depth 1, loop device on /dev/shm, $SECS s, median of $REPS"
echo "bpftrace's added time per I/O / bpfprof's: $(bench_fmt "$ratio" 2) (above 1: bpfprof costs less)"
bench_finish
