#!/usr/bin/env bash
# Benchmarks `bpfprof offcpu` against bpftrace doing the same sched_switch stack aggregation (offcpu.bt:
# stamp and stacks of the thread going off-CPU, blocked time summed by comm, kernel and user stack when it
# comes back), side by side in one run:
#
#   workload  pingpong.c: two threads bouncing a byte over two pipes, pinned to CPU 0, so that every round
#             is two direct context switches (over a million a second on a fast machine untraced)
#   measures  the workload's wall time untraced, under `bpfprof offcpu` with default flags, with -m 1000
#             (every block shorter: nothing counted), the same with stacks taken when blocks begin
#             (--stacks-at start, as before issue 16's deferral), with -p of an idle process, with --sample 100, with
#             programs that return at once (BPFPROF_BENCH_EMPTY: the tracepoints' dispatch alone, the floor
#             under any flag; with --stacks-at start, that of sched_switch alone, what -p and --sample
#             attach), and under `bpftrace offcpu.bt`; runs interleaved, the median of BENCH_REPS; each one's slowdown
#             (wall / untraced wall), its added time over bpftrace's, and the BPF time per sched_switch run
#             (bpfprof's rseq_update program's time included)
#             (kernel.bpf_stats_enabled: run_time_ns / run_cnt). The statistics cost two clock reads per
#             program run (~4 % of a 1.3 us switch): walls are timed with them off, and the BPF time read in
#             one more run of each tracer with them on
#   then      --sample 100's totals against every block's, on the blocker workload's BENCH_NAPS naps of
#             100 us (tests/workloads/blocker.c naps: it measures them itself)
#   checks    each tracer saw the workload's switches (bpfprof's block count, bpftrace's output)
#
# Usage: scripts/bench/offcpu.sh [--quick]      (as root)
# Settings (environment): BENCH_REPS (5), BENCH_ROUNDS (300000), BENCH_NAPS (300000), and those of lib.sh.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

bench_args "$@"
if [ "$BENCH_QUICK" = 1 ]; then
  : "${BENCH_REPS:=1}" "${BENCH_ROUNDS:=100000}" "${BENCH_NAPS:=20000}"
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

# bpf_ns_per_run NAME_REGEX [EXTRA_REGEX]: run time per run of the matching BPF programs that ran at
# least 1000 times, with the time of those matching EXTRA_REGEX added (programs on other hooks that run
# for each switch: bpfprof's rseq_update one, which takes deferred stacks).
bpf_ns_per_run() {
  local t c t2 c2
  read -r t c <<<"$(bench_bpf_stats "$1" 1000)"
  if [ -n "${2:-}" ]; then
    read -r t2 c2 <<<"$(bench_bpf_stats "$2" 1000)"
    t=$(bench_add "$t" "$t2")
  fi
  bench_div "$t" "$c"
}

# The idle process whose -p filter must cost nothing during the storm.
bench_spawn IDLE_PID sleep 3600
# Tracers: a name and its command (bpfprof's arguments after `offcpu`). Each issue-16 target has one.
declare -A ARGS=(
  [bpfprof]=""
  [bpfprof-m1000]="-m 1000"
  [bpfprof-m1000-begin]="-m 1000 --stacks-at start"
  [bpfprof-p-idle]="-p $IDLE_PID"
  [bpfprof-sample100]="--sample 100"
  [bpfprof-empty]=""
  [bpfprof-empty-start]="--stacks-at start"
)
TOOLS=(none bpfprof bpfprof-m1000 bpfprof-m1000-begin bpfprof-p-idle bpfprof-sample100 bpfprof-empty bpfprof-empty-start bpftrace)

# once TOOL [ns]: one timed run; sets R_WALL, R_SWITCHES, R_SEEN (what the tracer saw), and with `ns`
# R_NS (BPF ns per run, kernel.bpf_stats_enabled on for this run only).
once() {
  local tool=$1 dir=$BENCH_TMP/$1 tracer="" i out words
  bench_sysctl_set kernel.bpf_stats_enabled "$([ "${2:-}" = ns ] && echo 1 || echo 0)"
  mkdir -p "$dir"
  R_NS=nan R_SEEN=-
  case "$tool" in
    none) ;;
    bpftrace) bench_spawn tracer bpftrace "$BENCH_TMP/offcpu.bt" >"$dir/out" 2>"$dir/err" ;;
    *)
      read -r -a words <<<"${ARGS[$tool]}"
      if [ "$tool" = bpfprof-empty ] || [ "$tool" = bpfprof-empty-start ]; then export BPFPROF_BENCH_EMPTY=1; else unset BPFPROF_BENCH_EMPTY; fi
      BPFPROF_TIMING=1 bench_spawn tracer "$BPFPROF" offcpu "${words[@]}" >"$dir/out" 2>"$dir/err"
      unset BPFPROF_BENCH_EMPTY
      ;;
  esac
  if [ -n "$tracer" ]; then
    bench_wait_attached "$tool" "$tracer" "$dir/out"
    sleep 1
  fi
  out=$(taskset -c 0 "$PINGPONG" -n "$ROUNDS")
  R_WALL=$(sed -n 's/.*wall=\([0-9.]*\).*/\1/p' <<<"$out")
  R_SWITCHES=$(sed -n 's/.*switches=\([0-9]*\).*/\1/p' <<<"$out")
  if [ -n "$tracer" ] && [ "${2:-}" = ns ]; then
    case "$tool" in
      bpftrace) R_NS=$(bpf_ns_per_run 'sched_switch') ;;
      *) R_NS=$(bpf_ns_per_run 'switch_tp|switch_btf|switch_raw' 'rseq_btf') ;;
    esac
  fi
  if [ -n "$tracer" ]; then
    bench_stop "$tracer" INT 60 || bench_die "$tool failed: $(tail -n 3 "$dir/err")"
    case "$tool" in
      bpftrace) R_SEEN="$(grep -c '^@us\[' "$dir/out" || true) stacks" ;;
      *)
        R_SEEN=$(sed -n 's/^bpfprof: \([0-9]*\) blocks.*/\1 blocks/p' "$dir/err")
        ;;
    esac
  fi
}

declare -A WALL NS SEEN SW
taskset -c 0 "$PINGPONG" -n $((ROUNDS / 10)) >/dev/null # warm-up
for ((rep = 1; rep <= REPS; rep++)); do
  order=("${TOOLS[@]}")
  if ((rep % 2 == 0)); then # alternate: drift hits all alike
    for ((i = 0; i < ${#TOOLS[@]}; i++)); do order[i]=${TOOLS[${#TOOLS[@]} - 1 - i]}; done
  fi
  for tool in "${order[@]}"; do
    once "$tool"
    WALL[$tool]+="$R_WALL "
    SW[$tool]+="$R_SWITCHES "
    SEEN[$tool]=$R_SEEN
    bench_log "$(printf 'rep %d %-17s wall %.3f s  switches %s  saw %s' \
      "$rep" "$tool" "$R_WALL" "$R_SWITCHES" "$R_SEEN")"
  done
done
for tool in "${TOOLS[@]}"; do
  [ "$tool" != none ] || continue
  once "$tool" ns
  NS[$tool]=$R_NS
  bench_log "$(printf 'BPF time %-17s %s ns/run' "$tool" "$R_NS")"
done

med() {
  local words
  read -r -a words <<<"$1"
  bench_median "${words[@]}"
}
base=$(med "${WALL[none]}")
added_bpftrace=$(bench_sub "$(med "${WALL[bpftrace]}")" "$base")
declare -A TARGET=(
  [bpfprof]="added <= 1/2 of bpftrace's"
  [bpfprof-m1000]="slowdown <= 1.10x"
  [bpfprof-p-idle]="slowdown <= 1.05x"
  [bpfprof-sample100]="slowdown <= 1.05x"
)
bench_table_add "tracer|flags|wall s|slowdown|added / bpftrace's|BPF ns/switch|saw|target"
for tool in "${TOOLS[@]}"; do
  wall=$(med "${WALL[$tool]}")
  slow=$(bench_div "$wall" "$base")
  added=$(bench_div "$(bench_sub "$wall" "$base")" "$added_bpftrace")
  ns=nan
  [ "$tool" = none ] || ns=${NS[$tool]}
  flags=-
  case "$tool" in none | bpftrace) ;; *) flags=${ARGS[$tool]:-(default)} ;; esac
  [ "$tool" != bpfprof-p-idle ] || flags="-p IDLE"
  [ "$tool" != bpfprof-empty ] || flags="(floor: empty programs)"
  [ "$tool" != bpfprof-empty-start ] || flags="(floor, --stacks-at start)"
  [ "$tool" != bpfprof-m1000-begin ] || flags="-m 1000, stacks at block start"
  bench_table_add "${tool%%-*}|$flags|$(bench_fmt "$wall" 3)|$(bench_fmt "$slow" 2)x|$(bench_fmt "$added" 2)|$(bench_fmt "$ns" 0)|${SEEN[$tool]}|${TARGET[$tool]:-}"
  bench_result "$tool.wall_s" "$(bench_fmt "$wall" 4)"
  bench_result "$tool.slowdown" "$(bench_fmt "$slow" 3)"
  bench_result "$tool.added_over_bpftrace" "$(bench_fmt "$added" 3)"
  bench_result "$tool.bpf_ns_per_switch" "$(bench_fmt "$ns" 0)"
done
bench_table_print "pipe ping-pong, $ROUNDS rounds on CPU 0, median of $REPS, BPF statistics off (BPF ns per run of the sched_switch program: one more run, statistics on)"

# --sample's totals: the blocker workload's naps (nap_many, 100 us each, as it measures them), traced
# whole and with --sample 100. Sampling error: one nap in 100 of BENCH_NAPS.
BLOCKER=$(bench_cc blocker "$BENCH_REPO/tests/workloads/blocker.c")
NAPS=${BENCH_NAPS:-300000}
naps_once() {
  local dir=$BENCH_TMP/naps-$1 tracer w words wpid win wout pid
  mkdir -p "$dir"
  read -r -a words <<<"$2"
  # The workload's stdin and stdout through fifos (a coproc's variables vanish when an earlier one is
  # reaped late).
  rm -f "$dir/in" "$dir/out"
  mkfifo "$dir/in" "$dir/out"
  "$BLOCKER" naps "$NAPS" <"$dir/in" >"$dir/out" &
  wpid=$!
  exec {win}>"$dir/in" {wout}<"$dir/out"
  read -r _ pid <&"$wout"
  bench_spawn tracer "$BPFPROF" offcpu -p "$pid" -f "${words[@]}" >"$dir/out.folded" 2>"$dir/err"
  for ((w = 0; w < 600; w++)); do grep -q '^Tracing' "$dir/err" && break; sleep 0.05; done
  echo go >&"$win"
  read -r _ R_MEASURED <&"$wout"
  bench_stop "$tracer" INT 60 || bench_die "offcpu $2 failed: $(tail -n 3 "$dir/err")"
  exec {win}>&- {wout}<&-
  kill "$wpid" 2>/dev/null || true
  wait "$wpid" 2>/dev/null || true
  R_NAPPED=$(awk '/nap_many/ { s += $NF } END { print s + 0 }' "$dir/out.folded")
}
naps_once whole ""
whole=$R_NAPPED whole_measured=$R_MEASURED
naps_once sampled "--sample 100"
sampled=$R_NAPPED sampled_measured=$R_MEASURED
bench_table_add "run|naps measured (us)|offcpu counted (us)|counted / measured"
bench_table_add "every block|$whole_measured|$whole|$(bench_fmt "$(bench_div "$whole" "$whole_measured")" 3)"
bench_table_add "--sample 100|$sampled_measured|$sampled|$(bench_fmt "$(bench_div "$sampled" "$sampled_measured")" 3)"
bench_result naps.whole.ratio "$(bench_fmt "$(bench_div "$whole" "$whole_measured")" 4)"
bench_result naps.sample100.ratio "$(bench_fmt "$(bench_div "$sampled" "$sampled_measured")" 4)"
bench_table_print "--sample 100 against every block: $NAPS naps of 100 us (target: within 5 %)"
echo "bpftrace's added time / bpfprof's (default flags): $(bench_fmt "$(bench_div "$added_bpftrace" "$(bench_sub "$(med "${WALL[bpfprof]}")" "$base")")" 2) (target: at least 2)"
bench_finish
