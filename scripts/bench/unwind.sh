#!/usr/bin/env bash
# Benchmarks user stacks walked with unwind tables (--unwind dwarf) against frame pointers (--unwind fp) and
# against `perf record --call-graph dwarf` (8 KiB of stack copied per sample, unwound afterwards), side by
# side in one run, on code built as distributions build it (no frame pointers):
#
#  1. profile overhead: sortburn.c (a fixed amount of work on every CPU, ~20-frame stacks through libc's
#     qsort, built -fomit-frame-pointer) untraced, under `bpfprof profile --unwind fp|dwarf -F R` and
#     under `perf record --call-graph dwarf -F R -a`, for each rate R; interleaved, median of BENCH_REPS.
#     Slowdown (wall) and CPU cost (work + profiler CPU over the untraced work's CPU), samples a second,
#     and how many of the work's samples reach the thread's root (clone3): what each tool's stacks are
#     worth. (perf's share is read from its first run at each rate: `perf script` unwinds them.)
#  2. offcpu on the pipe ping-pong (pingpong.c, ~1.1M switches/s untraced; libc's read and write have no
#     frame pointers): wall time untraced, under `bpfprof offcpu --unwind fp|dwarf` and under `perf record
#     -e sched:sched_switch --call-graph dwarf -a`.
#  3. Report time: from the end of sampling (fdwatch) to a written SVG, `bpfprof profile -F 999 --svg` with
#     --unwind fp and dwarf, and perf's `perf script | inferno-collapse-perf | inferno-flamegraph` of its
#     dwarf profile, sortburn on every CPU for BENCH_REPORT_SECS.
#  4. Start-up: launch to first sample (bpfprof's header, printed once its window opens) of a whole-system
#     `bpfprof profile` with fp and with dwarf on a host with ~100 processes (BENCH_EXTRA_PROCS sleeping
#     copies of Debian's bash, python3, perl, sleep and xz are started), and what the tables took (binaries,
#     rows, MiB in the kernel, build time: BPFPROF_TIMING).
#
# Usage: scripts/bench/unwind.sh [--quick]      (as root; --quick: a short smoke run, not for figures)
# Settings (environment): BENCH_RATES ("49 999 4999"), BENCH_REPS (3), BENCH_CHUNKS (30000: ~6 s of work
# per CPU here), BENCH_ROUNDS (300000 ping-pong rounds), BENCH_REPORT_SECS (10), BENCH_REPORT_REPS (3),
# BENCH_EXTRA_PROCS (90), BENCH_STARTUP_REPS (5), and those of lib.sh.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

bench_args "$@"
if [ "$BENCH_QUICK" = 1 ]; then
  : "${BENCH_RATES:=999}" "${BENCH_REPS:=1}" "${BENCH_CHUNKS:=5000}" "${BENCH_ROUNDS:=50000}"
  : "${BENCH_REPORT_SECS:=3}" "${BENCH_REPORT_REPS:=1}" "${BENCH_EXTRA_PROCS:=20}" "${BENCH_STARTUP_REPS:=1}"
fi
read -r -a RATES <<<"${BENCH_RATES:-49 999 4999}"
REPS=${BENCH_REPS:-3}
CHUNKS=${BENCH_CHUNKS:-30000}
ROUNDS=${BENCH_ROUNDS:-300000}
REPORT_SECS=${BENCH_REPORT_SECS:-10}
REPORT_REPS=${BENCH_REPORT_REPS:-3}
EXTRA_PROCS=${BENCH_EXTRA_PROCS:-90}
STARTUP_REPS=${BENCH_STARTUP_REPS:-5}
RATE_SYSCTL=kernel.perf_event_max_sample_rate

bench_init unwind
if [ "$BENCH_QUICK" = 1 ]; then
  BENCH_RESULT_FILE=$BENCH_RESULTS_DIR/unwind-quick-$(date +%Y-%m-%d).txt
fi
bench_build_bpfprof
bench_ensure_inferno
# As distributions build: no frame pointers (the flag after lib.sh's -fno-omit-frame-pointer wins).
SORTBURN=$(bench_cc sortburn-nofp "$BENCH_DIR/sortburn.c" -fomit-frame-pointer)
PINGPONG=$(bench_cc pingpong "$BENCH_DIR/pingpong.c")
bench_log "bpfprof $BPFPROF_COMMIT, $(perf --version), $BENCH_NCPU CPUs"
bench_result settings.rates "$(IFS=,; echo "${RATES[*]}")"
bench_result settings.reps "$REPS"
bench_result settings.chunks "$CHUNKS"
bench_result settings.rounds "$ROUNDS"

of() {
  local fn=$1 words
  read -r -a words <<<"$2"
  "$fn" "${words[@]}"
}

# Of sortburn's samples in folded output (bpfprof -f; its comm is the binary's name, sortburn-nofp): the
# share whose user stack reaches clone3.
folded_root_pct() {
  awk '$0 ~ /^sortburn[^;]*;/ { n += $NF; if ($0 ~ /^sortburn[^;]*;[^;]*clone3;start_thread;/) w += $NF }
    END { printf "%.1f\n", n ? 100 * w / n : 0 }' "$1"
}

# The same of a perf.data: perf script unwinds the copied stacks (its own cost, not counted in the run).
perf_root_pct() {
  timeout 900 perf script -i "$1" -F comm,ip,sym 2>"$1.script-err" | awk '
    /^[^ \t]/ { if (cur != "") done(); cur = $1; last = ""; next }
    /^[ \t]+[0-9a-f]+ / { last = $2; next }
    /^$/ { if (cur != "") done(); cur = "" }
    function done() { if (cur ~ /^sortburn/) { n++; if (last ~ /clone3/) w++ } }
    END { if (cur != "") done(); printf "%.1f\n", n ? 100 * w / n : 0 }'
}

# ------------------------------------------------------------------------------------------------------
# 1. profile overhead
# ------------------------------------------------------------------------------------------------------

bench_sysctl_min kernel.bpf_stats_enabled 1
# bpf_ns_per_run NAME_REGEX: run time per run of the matching BPF programs (kernel.bpf_stats_enabled).
bpf_ns_per_run() {
  local t c
  read -r t c <<<"$(bench_bpf_stats "$1" 100)"
  bench_div "$t" "$c"
}
declare -A WALL CPU PCPU SPS ROOT BPFNS
CONFIGS=(none)
for r in "${RATES[@]}"; do
  CONFIGS+=("fp@$r" "dwarf@$r" "perf@$r")
done

# profile_once CONFIG DIR: one timed run of the work; sets R_WALL R_CPU R_PCPU R_SAMPLES R_ROOT.
profile_once() {
  local cfg=$1 dir=$2 tool rate prof="" out p0=0 p1=0 rc=0
  tool=${cfg%@*} rate=${cfg#*@}
  R_SAMPLES=0 R_ROOT="" R_NS=nan
  case "$tool" in
    fp | dwarf)
      bench_sysctl_min "$RATE_SYSCTL" "$rate"
      bench_spawn prof "$BPFPROF" profile --unwind "$tool" -F "$rate" -f >"$dir/out.folded" 2>"$dir/err"
      ;;
    perf)
      bench_sysctl_min "$RATE_SYSCTL" "$rate"
      bench_spawn prof perf record --call-graph dwarf -F "$rate" -a -o "$dir/perf.data" >"$dir/out" 2>"$dir/err"
      ;;
  esac
  if [ -n "$prof" ]; then
    bench_wait_sampling "$prof" 60 || bench_die "$cfg did not start sampling: $(tail -n 3 "$dir/err")"
    sleep 0.5
    p0=$(bench_proc_cpu "$prof")
  fi
  out=$(timeout 600 "$SORTBURN" -t "$BENCH_NCPU" -n "$CHUNKS") || bench_die "the workload failed"
  [ -z "$prof" ] || p1=$(bench_proc_cpu "$prof")
  case "$tool" in fp | dwarf) R_NS=$(bpf_ns_per_run do_sample) ;; esac
  R_WALL=$(sed -n 's/.*wall=\([0-9.]*\).*/\1/p' <<<"$out")
  R_CPU=$(sed -n 's/.*cpu=\([0-9.]*\).*/\1/p' <<<"$out")
  R_PCPU=$(bench_sub "$p1" "$p0")
  if [ -n "$prof" ]; then
    bench_stop "$prof" INT 300 || rc=$?
    if [ "$rc" -ne 0 ] && ! { [ "$tool" = perf ] && [ "$rc" = 130 ]; }; then
      bench_die "$cfg exited with status $rc: $(tail -n 3 "$dir/err")"
    fi
    case "$tool" in
      fp | dwarf)
        R_SAMPLES=$(awk '/^sortburn[^;]*;/ { s += $NF } END { print s + 0 }' "$dir/out.folded")
        R_ROOT=$(folded_root_pct "$dir/out.folded")
        ;;
      perf)
        R_SAMPLES=$(sed -n 's/.*(\([0-9]*\) samples).*/\1/p' "$dir/err" | tail -n1)
        if [ -z "${ROOT[$cfg]:-}" ]; then
          bench_log "  perf script: unwinding $cfg's samples"
          R_ROOT=$(perf_root_pct "$dir/perf.data")
        fi
        ;;
    esac
  fi
  rm -f "$dir/perf.data" "$dir/out.folded"
}

bench_log "overhead: $REPS x ${#CONFIGS[@]} runs of $CHUNKS chunks on $BENCH_NCPU threads"
"$SORTBURN" -t "$BENCH_NCPU" -n $((CHUNKS / 10 + 1)) >/dev/null # warm-up
for ((rep = 1; rep <= REPS; rep++)); do
  order=("${CONFIGS[@]}")
  if ((rep % 2 == 0)); then
    for ((i = 0; i < ${#CONFIGS[@]}; i++)); do
      order[i]=${CONFIGS[${#CONFIGS[@]} - 1 - i]}
    done
  fi
  for cfg in "${order[@]}"; do
    dir=$BENCH_TMP/profile-${cfg/@/-}
    mkdir -p "$dir"
    profile_once "$cfg" "$dir"
    WALL[$cfg]+="$R_WALL "
    CPU[$cfg]+="$R_CPU "
    PCPU[$cfg]+="$(bench_add "$R_CPU" "$R_PCPU") "
    SPS[$cfg]+="$(bench_div "$R_SAMPLES" "$R_WALL") "
    [ -z "$R_ROOT" ] || ROOT[$cfg]+="$R_ROOT "
    BPFNS[$cfg]+="$R_NS "
    bench_log "$(printf 'rep %d %-10s wall %7.3f s  cpu %7.3f s  profiler cpu %6.3f s  samples %s  at root %s%%' \
      "$rep" "$cfg" "$R_WALL" "$R_CPU" "$R_PCPU" "$R_SAMPLES" "${R_ROOT:--}")"
  done
done

base_wall=$(of bench_median "${WALL[none]}")
base_cpu=$(of bench_median "${CPU[none]}")
bench_result profile.none.wall_s "$(bench_fmt "$base_wall" 4)"
declare -A SLOW COST
bench_table_add "profiler|Hz|wall|slowdown|CPU cost|samples/s|samples at root|BPF ns/sample"
bench_table_add "none|-|$(bench_fmt "$base_wall" 3) s|-|-|-|-|-"
for r in "${RATES[@]}"; do
  for tool in fp dwarf perf; do
    cfg=$tool@$r
    w=$(of bench_median "${WALL[$cfg]}")
    SLOW[$cfg]=$(bench_pct "$w" "$base_wall")
    COST[$cfg]=$(bench_pct "$(of bench_median "${PCPU[$cfg]}")" "$base_cpu")
    root=$(of bench_median "${ROOT[$cfg]:-nan}")
    name=$([ "$tool" = perf ] && echo "perf --call-graph dwarf" || echo "bpfprof --unwind $tool")
    bench_table_add "$name|$r|$(bench_fmt "$w" 3) s|$(bench_fmt "${SLOW[$cfg]}" 1)%|$(bench_fmt "${COST[$cfg]}" 1)%|$(bench_fmt "$(of bench_median "${SPS[$cfg]}")" 0)|$(bench_fmt "$root" 1)%|$(bench_fmt "$(of bench_median "${BPFNS[$cfg]}")" 0)"
    bench_result "profile.$tool.$r.bpf_ns_per_sample" "$(bench_fmt "$(of bench_median "${BPFNS[$cfg]}")" 0)"
    bench_result "profile.$tool.$r.wall_s" "$(bench_fmt "$w" 4)"
    bench_result "profile.$tool.$r.slowdown_pct" "$(bench_fmt "${SLOW[$cfg]}" 2)"
    bench_result "profile.$tool.$r.cpu_cost_pct" "$(bench_fmt "${COST[$cfg]}" 2)"
    bench_result "profile.$tool.$r.root_pct" "$(bench_fmt "$root" 1)"
  done
done
bench_table_print "profile: sortburn ($CHUNKS chunks, $BENCH_NCPU threads, no frame pointers), median of $REPS"

# ------------------------------------------------------------------------------------------------------
# 2. offcpu on the ping-pong
# ------------------------------------------------------------------------------------------------------

declare -A PWALL PNS
OFF_CONFIGS=(none fp dwarf perf)
offcpu_once() {
  local cfg=$1 dir=$BENCH_TMP/offcpu-$1 tracer="" out rc=0
  mkdir -p "$dir"
  case "$cfg" in
    fp | dwarf) bench_spawn tracer "$BPFPROF" offcpu --unwind "$cfg" >"$dir/out" 2>"$dir/err" ;;
    perf) bench_spawn tracer perf record -e sched:sched_switch --call-graph dwarf -a -o "$dir/perf.data" >"$dir/out" 2>"$dir/err" ;;
  esac
  case "$cfg" in
    fp | dwarf) bench_wait_attached bpfprof "$tracer" "$dir/out" ;;
    perf) bench_wait_sampling "$tracer" 60 || bench_die "perf did not start: $(tail -n 3 "$dir/err")" ;;
  esac
  [ -z "$tracer" ] || sleep 1
  out=$(taskset -c 0 "$PINGPONG" -n "$ROUNDS")
  R_WALL=$(sed -n 's/.*wall=\([0-9.]*\).*/\1/p' <<<"$out")
  R_NS=nan
  case "$cfg" in fp | dwarf) R_NS=$(bpf_ns_per_run 'switch_tp|switch_btf|switch_raw') ;; esac
  if [ -n "$tracer" ]; then
    bench_stop "$tracer" INT 300 || rc=$?
    [ "$rc" = 0 ] || { [ "$cfg" = perf ] && [ "$rc" = 130 ]; } || bench_die "offcpu $cfg failed: $(tail -n 3 "$dir/err")"
  fi
  rm -f "$dir/perf.data"
}
taskset -c 0 "$PINGPONG" -n $((ROUNDS / 10)) >/dev/null
for ((rep = 1; rep <= REPS; rep++)); do
  order=("${OFF_CONFIGS[@]}")
  ((rep % 2 == 0)) && order=(perf dwarf fp none)
  for cfg in "${order[@]}"; do
    offcpu_once "$cfg"
    PWALL[$cfg]+="$R_WALL "
    PNS[$cfg]+="$R_NS "
    bench_log "$(printf 'offcpu rep %d %-6s wall %.3f s  BPF %s ns/switch' "$rep" "$cfg" "$R_WALL" "$R_NS")"
  done
done
pbase=$(of bench_median "${PWALL[none]}")
bench_table_add "tracer|wall|slowdown|BPF ns/switch"
for cfg in "${OFF_CONFIGS[@]}"; do
  w=$(of bench_median "${PWALL[$cfg]}")
  name=$(case "$cfg" in none) echo none ;; perf) echo "perf record -e sched:sched_switch --call-graph dwarf" ;; *) echo "bpfprof offcpu --unwind $cfg" ;; esac)
  bench_table_add "$name|$(bench_fmt "$w" 3) s|$(bench_fmt "$(bench_div "$w" "$pbase")" 2)x|$(bench_fmt "$(of bench_median "${PNS[$cfg]}")" 0)"
  bench_result "offcpu.$cfg.bpf_ns_per_switch" "$(bench_fmt "$(of bench_median "${PNS[$cfg]}")" 0)"
  bench_result "offcpu.$cfg.wall_s" "$(bench_fmt "$w" 4)"
  bench_result "offcpu.$cfg.slowdown" "$(bench_fmt "$(bench_div "$w" "$pbase")" 3)"
done
bench_table_print "offcpu: pipe ping-pong, $ROUNDS rounds on CPU 0, median of $REPS"

# ------------------------------------------------------------------------------------------------------
# 3. Report time
# ------------------------------------------------------------------------------------------------------

declare -A REPORT
bench_sysctl_min "$RATE_SYSCTL" 999
report_bpfprof() {
  local mode=$1 dir=$BENCH_TMP/report-$1 bp work stop end
  mkdir -p "$dir"
  bench_spawn work "$SORTBURN" -t "$BENCH_NCPU" -n 100000000
  bench_spawn bp "$BPFPROF" profile --unwind "$mode" -F 999 --svg "$dir/out.svg" "$REPORT_SECS" 2>"$dir/err"
  "$FDWATCH" -n "$BENCH_NCPU" -k "$work" -t $((REPORT_SECS + 120)) "$bp" >"$dir/fdwatch" || true
  bench_reap "$bp" || bench_die "bpfprof --svg failed: $(tail -n 3 "$dir/err")"
  end=$EPOCHREALTIME
  bench_stop "$work" TERM 10 || true
  stop=$(awk '$1 == "stop" { print $2 }' "$dir/fdwatch")
  [ -n "$stop" ] || bench_die "fdwatch did not see bpfprof stop sampling"
  R_REPORT=$(bench_sub "$end" "$stop")
}
report_perf() {
  local dir=$BENCH_TMP/report-perf work start end rc=0
  mkdir -p "$dir"
  bench_spawn work "$SORTBURN" -t "$BENCH_NCPU" -n 100000000
  timeout $((REPORT_SECS + 300)) perf record --call-graph dwarf -F 999 -a -o "$dir/perf.data" -- sleep "$REPORT_SECS" \
    >"$dir/out" 2>"$dir/err" || rc=$?
  bench_stop "$work" TERM 10 || true
  [ "$rc" = 0 ] || bench_die "perf record failed: $(tail -n 3 "$dir/err")"
  start=$EPOCHREALTIME
  timeout 1800 perf script -i "$dir/perf.data" 2>/dev/null | "$INFERNO_COLLAPSE_PERF" 2>/dev/null |
    "$INFERNO_FLAMEGRAPH" >"$dir/out.svg" 2>/dev/null || bench_die "perf script | inferno failed"
  end=$EPOCHREALTIME
  R_REPORT=$(bench_sub "$end" "$start")
  rm -f "$dir/perf.data"
}
for ((rep = 1; rep <= REPORT_REPS; rep++)); do
  for mode in fp dwarf perf; do
    if [ "$mode" = perf ]; then report_perf; else report_bpfprof "$mode"; fi
    REPORT[$mode]+="$R_REPORT "
    bench_log "$(printf 'report rep %d %-6s %.3f s' "$rep" "$mode" "$R_REPORT")"
  done
done
bench_table_add "profiler|end of sampling -> SVG|over fp"
rfp=$(of bench_median "${REPORT[fp]}")
for mode in fp dwarf perf; do
  r=$(of bench_median "${REPORT[$mode]}")
  name=$([ "$mode" = perf ] && echo "perf --call-graph dwarf + script | inferno" || echo "bpfprof --unwind $mode")
  bench_table_add "$name|$(bench_fmt "$r" 3) s|$(bench_fmt "$(bench_div "$r" "$rfp")" 2)x"
  bench_result "report.$mode.seconds" "$(bench_fmt "$r" 4)"
done
bench_table_print "Report time: 999 Hz x $BENCH_NCPU CPUs x $REPORT_SECS s of sortburn, median of $REPORT_REPS"

# ------------------------------------------------------------------------------------------------------
# 4. Start-up and table memory on a host with ~100 processes
# ------------------------------------------------------------------------------------------------------

# Sleeping processes of several Debian binaries (their libraries are the tables to build). They wait on
# an input that never comes: busy ones (xz compressing /dev/zero until its pipe fills took minutes) would
# measure start-up on a loaded machine.
for ((i = 0; i < EXTRA_PROCS; i++)); do
  case $((i % 5)) in
    0) bench_spawn _p sleep 3600 ;;
    1) bench_spawn _p sh -c 'sleep 3600 | bash -c "read -r _"' ;;
    2) bench_spawn _p python3 -c 'import time, json, ssl, sqlite3; time.sleep(3600)' ;;
    3) bench_spawn _p perl -MPOSIX -e 'sleep 3600' ;;
    4) bench_spawn _p sh -c 'sleep 3600 | xz -d -T1' ;;
  esac
done
sleep 2
# Start-up is measured on an idle machine: wait (up to 60 s) for the spawned processes to settle.
for ((i = 0; i < 60; i++)); do
  awk '{ exit !($1 < 1.0) }' /proc/loadavg && break
  sleep 1
done
bench_log "start-up: load average $(cut -d' ' -f1-3 /proc/loadavg)"
# (/proc/PID/maps reads as size 0: read a line of it.)
nprocs=$(find /proc -maxdepth 1 -regex '/proc/[0-9]+' | while read -r p; do
  if head -c1 "$p/maps" 2>/dev/null | grep -q .; then echo; fi
done | wc -l)
bench_log "start-up: $nprocs processes with user mappings"
bench_result startup.processes "$nprocs"
declare -A START
startup_once() {
  local mode=$1 dir=$BENCH_TMP/startup-$1 launch bp t
  mkdir -p "$dir"
  : >"$dir/err"
  launch=$EPOCHREALTIME
  BPFPROF_TIMING=1 bench_spawn bp "$BPFPROF" profile --unwind "$mode" -F 49 -f 1 >/dev/null 2>"$dir/err"
  while ! grep -q '^Sampling at' "$dir/err"; do
    bench_alive "$bp" || break
    sleep 0.002
  done
  t=$(bench_sub "$EPOCHREALTIME" "$launch")
  bench_reap "$bp" || bench_die "bpfprof failed: $(tail -n 3 "$dir/err")"
  R_START=$t
  R_TABLES=$(sed -n 's/^bpfprof: unwind tables: //p' "$dir/err")
}
for ((rep = 1; rep <= STARTUP_REPS; rep++)); do
  for mode in fp dwarf; do
    startup_once "$mode"
    START[$mode]+="$R_START "
    [ "$mode" = fp ] || TABLES=$R_TABLES
    bench_log "$(printf 'start-up rep %d %-5s %.3f s %s' "$rep" "$mode" "$R_START" "${R_TABLES:+($R_TABLES)}")"
  done
done
bench_table_add "bpfprof profile (all processes)|launch -> first sample"
for mode in fp dwarf; do
  s=$(of bench_median "${START[$mode]}")
  bench_table_add "--unwind $mode|$(bench_fmt "$s" 3) s"
  bench_result "startup.$mode.seconds" "$(bench_fmt "$s" 4)"
done
bench_table_print "Start-up with $nprocs processes, median of $STARTUP_REPS"
echo "Unwind tables (last dwarf start-up): ${TABLES:-?}"
echo
bench_result startup.tables "\"${TABLES:-}\""

# ------------------------------------------------------------------------------------------------------
# Summary
# ------------------------------------------------------------------------------------------------------

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b <= 0.3) print "n/a"; else printf "%.2fx\n", a / b }'; }
bench_table_add "measure|dwarf|fp|perf dwarf|dwarf/fp|target"
for r in "${RATES[@]}"; do
  bench_table_add "CPU cost at $r Hz|$(bench_fmt "${COST[dwarf@$r]}" 1)%|$(bench_fmt "${COST[fp@$r]}" 1)%|$(bench_fmt "${COST[perf@$r]}" 1)%|$(ratio "${COST[dwarf@$r]}" "${COST[fp@$r]}")|999 Hz: <= 2x fp, well under perf"
done
bench_table_add "offcpu ping-pong slowdown|$(bench_fmt "$(bench_div "$(of bench_median "${PWALL[dwarf]}")" "$pbase")" 2)x|$(bench_fmt "$(bench_div "$(of bench_median "${PWALL[fp]}")" "$pbase")" 2)x|$(bench_fmt "$(bench_div "$(of bench_median "${PWALL[perf]}")" "$pbase")" 2)x||"
bench_table_add "report time|$(bench_fmt "$(of bench_median "${REPORT[dwarf]}")" 3) s|$(bench_fmt "$rfp" 3) s|$(bench_fmt "$(of bench_median "${REPORT[perf]}")" 3) s|$(bench_fmt "$(bench_div "$(of bench_median "${REPORT[dwarf]}")" "$rfp")" 2)x|within 20% of fp"
bench_table_add "start-up, $nprocs processes|$(bench_fmt "$(of bench_median "${START[dwarf]}")" 3) s|$(bench_fmt "$(of bench_median "${START[fp]}")" 3) s|||under 1 s"
bench_table_print "Summary"
bench_finish
bench_log "done in $(bench_fmt "$(bench_sub "$EPOCHREALTIME" "$BENCH_T0")" 0) s"
