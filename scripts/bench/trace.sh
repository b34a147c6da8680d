#!/usr/bin/env bash
# Benchmarks `bpfprof trace` against bpftrace running the same one-liners, side by side in one run:
#
#  1. Launch: each tracepoint one-liner started BENCH_REPS times per tool (the wildcard one BENCH_WILD_REPS
#     times: detaching hundreds of syscall tracepoints takes seconds), interleaved (bpfprof, bpftrace,
#     bpftrace, bpfprof, ...), traced for a second, stopped with SIGINT; medians of
#       "Attaching" line  exec to the "Attaching N probes..." line on stdout. Not the same moment for the
#                         two tools: bpftrace prints it before it loads and attaches its programs, bpfprof
#                         after; hence
#       attached          exec to every tracepoint of the one-liner holding a perf event with the tool's
#                         program attached, watched from outside (tracewatch.c: BPF_TASK_FD_QUERY on the
#                         tracer's fds, polled every millisecond): from then on it traces
#       CPU               the tracer's CPU time until then (insensitive to other load)
#       SIGINT->maps      SIGINT to the maps on stdout (bpfprof prints them and then detaches; bpftrace
#                         detaches first)
#       SIGINT->exit      SIGINT to the end of the process: perf events closed, programs detached
#     and the whole run of `BEGIN { exit(); }` (exec to exit: the fixed cost of starting a one-liner).
#  2. Per event: getppid.c making BENCH_CALLS getppid() calls on CPU 0, timed untraced and under each tool
#     running each per-event one-liner; interleaved, the median of BENCH_REPS. Each tool's added time per
#     event (ns), its BPF time per run of its program (kernel.bpf_stats_enabled: run_time_ns / run_cnt of
#     the programs that tracer attached, by id), and the ratios (bpftrace's over bpfprof's: above 1,
#     bpfprof costs less). Checks that each tool counted exactly BENCH_CALLS events of the workload.
#     Also bpftrace's own syscount.bt (launch, and per event: it counts every system call) and runqlat.bt
#     (launch; and per switch: 2b).
#  2b. runqlat.bt on a switch storm: pingpong.c (BENCH_ROUNDS rounds of two switches on CPU 0) untraced
#     and under each tool; added ns per switch, BPF ns per run of its programs.
#  3. printf: BENCH_PRINTF_CALLS getppid() calls under `printf("%d\n", pid)`, the output to a file: lines
#     of the workload's pid delivered, events the tool says it lost, the workload's wall time.
#
# Noise: a launch run during which other processes took more than BENCH_NOISE_PCT % of the machine (from
# /proc/stat, minus the tracer and the watcher) is repeated; so is a workload run that waited for its CPU
# more than BENCH_NOISE_PCT % of its wall time (its wall minus its CPU time: exact, where /proc/stat's ticks
# are too coarse for a run of a quarter second). Up to BENCH_RETRIES times, within BENCH_BUDGET seconds,
# never a wildcard run; a run still noisy is kept and counted in the "Noise" table.
#
# Usage: scripts/bench/trace.sh [--quick]      (as root; --quick: a short smoke run, results not kept)
# Settings (environment): BENCH_REPS (5), BENCH_WILD_REPS (3), BENCH_CALLS (2000000), BENCH_ROUNDS (300000), BENCH_PRINTF_CALLS
# (500000), BENCH_PRINTF_REPS (3), BENCH_WILDCARD (sys_enter_*: the syscalls tracepoints of the wildcard
# one-liner), BENCH_NOISE_PCT (3), BENCH_RETRIES (2), BENCH_BUDGET (240), and those of lib.sh.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

bench_args "$@"
if [ "$BENCH_QUICK" = 1 ]; then
  : "${BENCH_REPS:=1}" "${BENCH_WILD_REPS:=1}" "${BENCH_CALLS:=300000}" "${BENCH_PRINTF_CALLS:=100000}" "${BENCH_ROUNDS:=100000}"
  : "${BENCH_PRINTF_REPS:=1}" "${BENCH_WILDCARD:=sys_enter_get*}" "${BENCH_RETRIES:=0}"
fi
REPS=${BENCH_REPS:-5}
WILD_REPS=${BENCH_WILD_REPS:-3}
CALLS=${BENCH_CALLS:-2000000}
PRINTF_CALLS=${BENCH_PRINTF_CALLS:-500000}
PRINTF_REPS=${BENCH_PRINTF_REPS:-3}
WILDCARD=${BENCH_WILDCARD:-sys_enter_*}
NOISE_PCT=${BENCH_NOISE_PCT:-3}
RETRIES=${BENCH_RETRIES:-2}
BUDGET=${BENCH_BUDGET:-240}
LAUNCH_SETTLE=1  # seconds traced before SIGINT (also the window of the launch noise check)
EVENT_SETTLE=0.5 # seconds between attached and the workload

bench_init trace
if [ "$BENCH_QUICK" = 1 ]; then # a smoke run: keep its figures apart from real ones
  BENCH_RESULT_FILE=$BENCH_RESULTS_DIR/trace-quick-$(date +%Y-%m-%d).txt
fi
bench_build_bpfprof
GETPPID=$(bench_cc getppid "$BENCH_DIR/getppid.c")
TRACEWATCH=$(bench_cc tracewatch "$BENCH_DIR/tracewatch.c")
command -v bpftrace >/dev/null || bench_die "bpftrace not found after scripts/setup.sh --bench"
command -v bpftool >/dev/null || bench_die "bpftool not found after scripts/setup.sh --bench"
# bpftrace finds tracepoints through tracefs (bpfprof mounts it itself when it needs it).
if [ ! -d /sys/kernel/tracing/events ]; then
  mount -t tracefs nodev /sys/kernel/tracing || bench_die "cannot mount tracefs for bpftrace"
fi
bench_sysctl_min kernel.bpf_stats_enabled 1
BT_VERSION=$(bpftrace --version | awk '{ print $2 }')

# The one-liners, by label; NTP: how many tracepoints each attaches (what "attached" waits for).
declare -A PROG NTP
PROG[getppid-count]='t:syscalls:sys_enter_getppid { @[comm] = count(); }'
PROG[read-hist]='t:syscalls:sys_exit_read { @ = hist(args->ret); }'
# `@[comm]`, not bpftrace's usual `@[probe]`: the results file was measured before trace had `probe`.
PROG[wildcard-count]="t:syscalls:$WILDCARD { @[comm] = count(); }"
PROG[begin-exit]='BEGIN { exit(); }'
PROG[getppid-hist]='t:syscalls:sys_enter_getppid { @[tid] = hist(nsecs & 0xffff); }'
PROG[printf]='t:syscalls:sys_enter_getppid { printf("%d\n", pid); }'
# Two of bpftrace's own tools, as Debian installs them: syscount.bt unchanged; runqlat.bt without its
# `#include <linux/sched.h>` and with TASK_RUNNING written as 0, which bpftrace 0.17 needs here (its clang
# cannot compile that header against this machine's; bpfprof runs the file unchanged either way).
PROG[syscount]=$(cat /usr/sbin/syscount.bt)
PROG[runqlat]=$(sed -e '/^#include/d' -e 's/TASK_RUNNING/0/' /usr/sbin/runqlat.bt)
declare -A SPECIAL=([syscount]=2 [runqlat]=2)
declare -A SHOW=([syscount]="/usr/sbin/syscount.bt" [runqlat]="/usr/sbin/runqlat.bt (no #include, TASK_RUNNING as 0)")
NTP[getppid-count]=1 NTP[read-hist]=1 NTP[getppid-hist]=1 NTP[printf]=1 NTP[syscount]=1 NTP[runqlat]=3
wild_dirs=$(compgen -G "/sys/kernel/tracing/events/syscalls/$WILDCARD/" || true)
NTP[wildcard-count]=$(grep -c . <<<"$wild_dirs" || true)
[ "${NTP[wildcard-count]}" -gt 0 ] || bench_die "no tracepoint matches syscalls:$WILDCARD"
LAUNCH=(getppid-count read-hist syscount runqlat)
EVENT=(getppid-count getppid-hist syscount)
PINGPONG=$(bench_cc pingpong "$BENCH_DIR/pingpong.c")
ROUNDS=${BENCH_ROUNDS:-300000}
TOOLS=(bpfprof bpftrace)

bench_log "bpfprof $BPFPROF_COMMIT, bpftrace $BT_VERSION; launch: $REPS reps ($WILD_REPS of the wildcard, ${NTP[wildcard-count]} tracepoints); per event: $REPS reps of $CALLS calls; printf: $PRINTF_REPS reps of $PRINTF_CALLS"
bench_result settings.reps "$REPS"
bench_result settings.wild_reps "$WILD_REPS"
bench_result settings.calls "$CALLS"
bench_result settings.printf_calls "$PRINTF_CALLS"
bench_result settings.printf_reps "$PRINTF_REPS"
bench_result settings.wildcard_tracepoints "${NTP[wildcard-count]}"
bench_result bpftrace_version "$BT_VERSION"

# --- helpers -------------------------------------------------------------------------------------------

# med LIST, maxof LIST: of a space-separated list of numbers (nan when empty).
med() {
  local words
  read -r -a words <<<"${1:-}"
  if [ "${#words[@]}" -eq 0 ]; then echo nan; else bench_median "${words[@]}"; fi
}
maxof() {
  local words
  read -r -a words <<<"${1:-}"
  if [ "${#words[@]}" -eq 0 ]; then echo nan; else bench_max "${words[@]}"; fi
}
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f\n", (a - b) * 1000 }'; }
# field WORD TEXT: the number after WORD on TEXT's line starting with it (tracewatch's output).
field() { awk -v w="$1" '$1 == w { print $2; exit }' <<<"$2"; }

# spawn_tracer VAR TOOL LABEL DIR: starts TOOL running the one-liner LABEL, stdout and stderr into DIR.
spawn_tracer() {
  local -n _tr=$1
  case "$2" in
    bpfprof) bench_spawn _tr "$BPFPROF" trace -e "${PROG[$3]}" >"$4/out" 2>"$4/err" ;;
    bpftrace) bench_spawn _tr bpftrace -e "${PROG[$3]}" >"$4/out" 2>"$4/err" ;;
  esac
}

# prog_stats ID...: "RUN_TIME_NS RUN_CNT" summed over these BPF programs. By id, not by name as
# bench_bpf_stats does: other bpfprof traces (the project's tests) may run programs of the same name.
prog_stats() {
  local id
  for id in "$@"; do
    bpftool prog show id "$id" 2>/dev/null || true
  done | awk '/^[0-9]+:/ { for (i = 1; i <= NF; i++) { if ($i == "run_time_ns") t += $(i + 1); if ($i == "run_cnt") c += $(i + 1) } }
    END { printf "%.0f %.0f\n", t, c }'
}

# attaching_n OUT: the N of the "Attaching N probes..." line.
attaching_n() { sed -n 's/^Attaching \([0-9]*\) probes\{0,1\}\.\.\.$/\1/p' "$1" | head -n1; }

# hist_total OUT KEY: the sum of the buckets of the histogram @[KEY] (bpftrace's layout, both tools).
hist_total() {
  awk -v key="@[$2]:" '$1 == key { on = 1; next } on && /^$/ { on = 0 }
    on && match($0, /^\[[^])]*[])] +[0-9]+/) { n = split(substr($0, 1, RLENGTH), f, " "); t += f[n] }
    END { print t + 0 }' "$1"
}

declare -A NOISE REPEATED NOISY FAILED
# noisy_run KIND RETRIES FUNC ARGS...: FUNC (which sets R_NOISE, a percent) again while R_NOISE exceeds
# NOISE_PCT, up to RETRIES more times and within BUDGET. Returns FUNC's status.
noisy_run() {
  local kind=$1 retries=$2 attempt
  shift 2
  for ((attempt = 0; ; attempt++)); do
    "$@" || return 1
    [ "$(bench_lt "$NOISE_PCT" "$R_NOISE")" = 1 ] || break
    if [ "$attempt" -lt "$retries" ] &&
      [ "$(bench_lt "$(bench_sub "$EPOCHREALTIME" "$BENCH_T0")" "$BUDGET")" = 1 ]; then
      bench_log "  noise $R_NOISE% during the run: repeating it"
      REPEATED[$kind]=$((${REPEATED[$kind]:-0} + 1))
    else
      NOISY[$kind]=$((${NOISY[$kind]:-0} + 1))
      break
    fi
  done
  NOISE[$kind]+="$R_NOISE "
}

# --- 1. launch -----------------------------------------------------------------------------------------

# launch_once TOOL LABEL: one launch, LAUNCH_SETTLE s of tracing, SIGINT. Sets R_LINE, R_ATT (ms from exec),
# R_CPU (ms), R_MAPS, R_EXIT (ms from SIGINT), R_N (the N of "Attaching N"), R_NOISE (other load, %).
launch_once() {
  local tool=$1 label=$2 dir=$BENCH_TMP/launch-$2-$1 tracer="" t0 t1 busy0 busy1 up down pcpu rc=0
  mkdir -p "$dir"
  busy0=$(bench_sys_busy)
  t0=$EPOCHREALTIME
  spawn_tracer tracer "$tool" "$label" "$dir"
  up=$("$TRACEWATCH" -n "${NTP[$label]}" -t 60 "$tracer" "$dir/out") || rc=$?
  if [ "$rc" -ne 0 ]; then
    bench_stop "$tracer" INT 60 || true
    bench_warn "$tool did not attach ${PROG[$label]} (tracewatch status $rc): $(tail -n 3 "$dir/err")"
    return 1
  fi
  R_CPU=$(awk -v c="$(bench_proc_cpu "$tracer")" 'BEGIN { printf "%.3f\n", c * 1000 }')
  sleep "$LAUNCH_SETTLE"
  pcpu=$(bench_proc_cpu "$tracer")
  busy1=$(bench_sys_busy)
  t1=$EPOCHREALTIME
  down=$("$TRACEWATCH" -s 2 -t 120 "$tracer" "$dir/out") || rc=$?
  bench_reap "$tracer" || rc=$?
  if [ "$rc" -ne 0 ]; then
    bench_warn "$tool failed on ${PROG[$label]} (status $rc): $(tail -n 3 "$dir/err")"
    return 1
  fi
  R_LINE=$(ms "$(field line "$up")" "$t0")
  R_ATT=$(ms "$(field attached "$up")" "$t0")
  R_MAPS=$(ms "$(field output "$down")" "$(field signal "$down")")
  R_EXIT=$(ms "$(field exit "$down")" "$(field signal "$down")")
  R_N=$(attaching_n "$dir/out")
  R_NOISE=$(awk -v b="$(bench_sub "$busy1" "$busy0")" -v p="$pcpu" -v w="$(field cpu "$up")" \
    -v s="$(bench_sub "$t1" "$t0")" -v n="$BENCH_NCPU" 'BEGIN { f = b - p - w; if (f < 0) f = 0; printf "%.1f\n", 100 * f / (s * n) }')
}

declare -A LINE ATT CPU MAPS EXIT NPROBES
launch_run() {
  local tool=$1 label=$2 retries=$3
  [ -z "${FAILED[$tool@$label]:-}" ] || return 0
  if ! noisy_run launch "$retries" launch_once "$tool" "$label"; then
    FAILED[$tool@$label]=1
    return 0
  fi
  LINE[$tool@$label]+="$R_LINE "
  ATT[$tool@$label]+="$R_ATT "
  CPU[$tool@$label]+="$R_CPU "
  MAPS[$tool@$label]+="$R_MAPS "
  EXIT[$tool@$label]+="$R_EXIT "
  NPROBES[$tool@$label]=$R_N
  bench_log "$(printf '%-14s %-8s line %7.1f ms  attached %7.1f ms  cpu %6.1f ms  SIGINT->maps %8.1f ms  ->exit %8.1f ms  (N=%s, other load %s%%)' \
    "$label" "$tool" "$R_LINE" "$R_ATT" "$R_CPU" "$R_MAPS" "$R_EXIT" "$R_N" "$R_NOISE")"
}

# begin_once TOOL: the whole run of `BEGIN { exit(); }`; sets R_TOTAL (ms, exec to exit).
begin_once() {
  local tool=$1 dir=$BENCH_TMP/begin-$1 tracer="" dog="" t0 t1 done_pid=""
  mkdir -p "$dir"
  bench_spawn dog sleep 60 # a watchdog: wait -n returns at the first of the two
  t0=$EPOCHREALTIME
  spawn_tracer tracer "$tool" begin-exit "$dir"
  wait -n -p done_pid "$tracer" "$dog" || true
  t1=$EPOCHREALTIME
  if [ "$done_pid" != "$tracer" ]; then
    bench_warn "$tool ran ${PROG[begin-exit]} for 60 s"
    bench_stop "$tracer" KILL 5 || true
    return 1
  fi
  bench_stop "$dog" TERM 5 || true
  local p keep=() # wait -n reaped the tracer: forget it, as bench_reap does
  for p in "${BENCH_PIDS[@]}"; do
    [ "$p" = "$tracer" ] || keep+=("$p")
  done
  BENCH_PIDS=("${keep[@]}")
  grep -q '^Attaching' "$dir/out" || {
    bench_warn "$tool: no \"Attaching\" line from ${PROG[begin-exit]}: $(tail -n 3 "$dir/err")"
    return 1
  }
  R_TOTAL=$(ms "$t1" "$t0")
}

bench_log "launch: $REPS reps of ${LAUNCH[*]}, $WILD_REPS of wildcard-count, $REPS of begin-exit"
declare -A TOTAL
for ((rep = 1; rep <= REPS; rep++)); do
  order=("${TOOLS[@]}")
  ((rep % 2 == 0)) && order=(bpftrace bpfprof) # alternate: drift hits both alike
  for label in "${LAUNCH[@]}"; do
    for tool in "${order[@]}"; do
      launch_run "$tool" "$label" "$RETRIES"
    done
  done
  for tool in "${order[@]}"; do
    if begin_once "$tool"; then
      TOTAL[$tool]+="$R_TOTAL "
      bench_log "$(printf '%-14s %-8s exec to exit %7.1f ms' begin-exit "$tool" "$R_TOTAL")"
    fi
  done
done
for ((rep = 1; rep <= WILD_REPS; rep++)); do
  order=("${TOOLS[@]}")
  ((rep % 2 == 0)) && order=(bpftrace bpfprof)
  for tool in "${order[@]}"; do
    launch_run "$tool" wildcard-count 0 # a wildcard run takes tens of seconds: never repeated
  done
done

# --- 2. per event ---------------------------------------------------------------------------------------

# event_once TOOL LABEL N: N getppid() calls on CPU 0 (untraced for TOOL none). Sets R_WALL, R_CPU (the
# workload's seconds), R_NS (BPF ns per run), R_SEEN (what the tool counted of the workload), R_LOST (events
# it says it lost), R_PID (the workload's), R_NOISE (% of the wall the workload waited for its CPU).
event_once() {
  local tool=$1 label=$2 n=$3 dir=$BENCH_TMP/event-$2-$1 tracer="" up="" out t c rc=0 progs
  mkdir -p "$dir"
  R_NS=nan R_SEEN=- R_LOST=0
  if [ "$tool" != none ]; then
    spawn_tracer tracer "$tool" "$label" "$dir"
    up=$("$TRACEWATCH" -n 1 -t 60 "$tracer" "$dir/out") || rc=$?
    if [ "$rc" -ne 0 ]; then
      bench_stop "$tracer" INT 60 || true
      bench_warn "$tool did not attach ${PROG[$label]} (tracewatch status $rc): $(tail -n 3 "$dir/err")"
      return 1
    fi
    sleep "$EVENT_SETTLE"
  fi
  out=$(taskset -c 0 "$GETPPID" "$n")
  R_WALL=$(sed -n 's/.*wall=\([0-9.]*\).*/\1/p' <<<"$out")
  R_CPU=$(sed -n 's/.*cpu=\([0-9.]*\).*/\1/p' <<<"$out")
  R_PID=$(sed -n 's/.*pid=\([0-9]*\).*/\1/p' <<<"$out")
  R_NOISE=$(awk -v w="$R_WALL" -v c="$R_CPU" 'BEGIN { f = w - c; if (f < 0) f = 0; printf "%.1f\n", 100 * f / w }')
  [ "$tool" != none ] || return 0
  read -r -a progs <<<"$(awk '$1 == "progs" { $1 = ""; print }' <<<"$up")"
  read -r t c <<<"$(prog_stats "${progs[@]}")"
  R_NS=$(bench_div "$t" "$c")
  [ "$label" = printf ] && sleep 0.5 # let the tool drain its buffer
  bench_stop "$tracer" INT 60 || {
    bench_warn "$tool failed on ${PROG[$label]}: $(tail -n 3 "$dir/err")"
    return 1
  }
  case "$label" in
    getppid-count) R_SEEN=$(awk '$1 == "@[getppid]:" { print $2 }' "$dir/out") ;;
    getppid-hist) R_SEEN=$(hist_total "$dir/out" "$R_PID") ;;
    syscount) R_SEEN=$(awk '$1 == "@syscall[110]:" { print $2 }' "$dir/out") ;; # getppid on x86-64
    printf) R_SEEN=$(grep -cx "$R_PID" "$dir/out" || true) ;;
  esac
  R_LOST=$(cat "$dir/out" "$dir/err" | sed -n 's/^Lost \([0-9]*\) events$/\1/p' | awk '{ s += $1 } END { print s + 0 }')
  rm -f "$dir/out"
}

declare -A WALL NS SEEN
event_run() {
  local tool=$1 label=$2 cfg=$1@$2
  [ "$tool" != none ] || cfg=none
  [ -z "${FAILED[$cfg]:-}" ] || return 0
  if ! noisy_run event "$RETRIES" event_once "$tool" "$label" "$CALLS"; then
    FAILED[$cfg]=1
    return 0
  fi
  WALL[$cfg]+="$R_WALL "
  NS[$cfg]+="$R_NS "
  SEEN[$cfg]=$R_SEEN
  if [ "$tool" != none ] && [ "$R_SEEN" != "$CALLS" ]; then
    bench_warn "$tool counted $R_SEEN of $CALLS getppid() calls with ${PROG[$label]}"
    MISCOUNT[$cfg]=1
  fi
  bench_log "$(printf '%-14s %-8s wall %.3f s  BPF %s ns/run  counted %s  (waited for CPU %s%%)' \
    "$label" "$tool" "$R_WALL" "$(bench_fmt "$R_NS" 0)" "$R_SEEN" "$R_NOISE")"
}

declare -A MISCOUNT
CONFIGS=(none)
for label in "${EVENT[@]}"; do
  for tool in "${TOOLS[@]}"; do
    CONFIGS+=("$tool@$label")
  done
done
bench_log "per event: $REPS reps of $CALLS getppid() calls: ${CONFIGS[*]}"
taskset -c 0 "$GETPPID" "$CALLS" >/dev/null # warm-up
for ((rep = 1; rep <= REPS; rep++)); do
  order=("${CONFIGS[@]}")
  if ((rep % 2 == 0)); then # reversed: drift and position effects hit all alike
    for ((i = 0; i < ${#CONFIGS[@]}; i++)); do
      order[i]=${CONFIGS[${#CONFIGS[@]} - 1 - i]}
    done
  fi
  for cfg in "${order[@]}"; do
    if [ "$cfg" = none ]; then
      event_run none -
    else
      event_run "${cfg%@*}" "${cfg#*@}"
    fi
  done
done

# --- 2b. runqlat on a switch storm ---------------------------------------------------------------------

# switch_once TOOL: the ping-pong (ROUNDS rounds, two switches each, on CPU 0), untraced or under TOOL
# running runqlat; sets R_WALL, R_SW (switches), R_NS (BPF ns per run of the tracer's programs), R_NOISE 0.
switch_once() {
  local tool=$1 dir=$BENCH_TMP/switch-$1 tracer="" up rc=0 out progs t c
  mkdir -p "$dir"
  R_NS=nan R_NOISE=0
  if [ "$tool" != none ]; then
    spawn_tracer tracer "$tool" runqlat "$dir"
    up=$("$TRACEWATCH" -n "${NTP[runqlat]}" -t 60 "$tracer" "$dir/out") || rc=$?
    if [ "$rc" -ne 0 ]; then
      bench_stop "$tracer" INT 60 || true
      bench_warn "$tool did not attach runqlat (tracewatch status $rc): $(tail -n 3 "$dir/err")"
      return 1
    fi
    sleep "$EVENT_SETTLE"
  fi
  out=$(taskset -c 0 "$PINGPONG" -n "$ROUNDS")
  R_WALL=$(sed -n 's/.*wall=\([0-9.]*\).*/\1/p' <<<"$out")
  R_SW=$(sed -n 's/.*switches=\([0-9]*\).*/\1/p' <<<"$out")
  [ "$tool" != none ] || return 0
  read -r -a progs <<<"$(awk '$1 == "progs" { $1 = ""; print }' <<<"$up")"
  read -r t c <<<"$(prog_stats "${progs[@]}")"
  R_NS=$(bench_div "$t" "$c")
  bench_stop "$tracer" INT 60 || {
    bench_warn "$tool failed on runqlat: $(tail -n 3 "$dir/err")"
    return 1
  }
}

declare -A SWALL SNS SSW
bench_log "runqlat: $REPS reps of a $ROUNDS-round ping-pong"
for ((rep = 1; rep <= REPS; rep++)); do
  order=(none bpfprof bpftrace)
  ((rep % 2 == 0)) && order=(bpftrace bpfprof none)
  for tool in "${order[@]}"; do
    [ -z "${FAILED[$tool@runqlat-switch]:-}" ] || continue
    if ! switch_once "$tool"; then
      FAILED[$tool@runqlat-switch]=1
      continue
    fi
    SWALL[$tool]+="$R_WALL " SNS[$tool]+="$R_NS " SSW[$tool]=$R_SW
    bench_log "$(printf '%-14s %-8s wall %.3f s  switches %s  BPF %s ns/run' runqlat "$tool" "$R_WALL" "$R_SW" "$(bench_fmt "$R_NS" 0)")"
  done
done

# --- 3. printf -----------------------------------------------------------------------------------------

declare -A PWALL PSEEN PLOST
bench_log "printf: $PRINTF_REPS reps of $PRINTF_CALLS getppid() calls"
for ((rep = 1; rep <= PRINTF_REPS; rep++)); do
  order=("${TOOLS[@]}")
  ((rep % 2 == 0)) && order=(bpftrace bpfprof)
  for tool in "${order[@]}"; do
    [ -z "${FAILED[$tool@printf]:-}" ] || continue
    if ! noisy_run printf 0 event_once "$tool" printf "$PRINTF_CALLS"; then
      FAILED[$tool@printf]=1
      continue
    fi
    PWALL[$tool]+="$R_WALL "
    PSEEN[$tool]+="$R_SEEN "
    PLOST[$tool]+="$R_LOST "
    bench_log "$(printf '%-14s %-8s wall %.3f s  delivered %s  lost %s  (waited for CPU %s%%)' \
      printf "$tool" "$R_WALL" "$R_SEEN" "$R_LOST" "$R_NOISE")"
  done
done

# --- report ---------------------------------------------------------------------------------------------

bench_table_add "one-liner|program"
for label in "${LAUNCH[@]}" wildcard-count begin-exit getppid-hist printf; do
  bench_table_add "$label|${SHOW[$label]:-${PROG[$label]}}"
done
bench_table_print "One-liners (the same text for both tools)"

# ratio A B: A / B as "1.23x", n/a when either is missing.
ratio() {
  local r
  r=$(bench_div "${1:-nan}" "${2:-nan}")
  case "$r" in nan | "") echo n/a ;; *) echo "$(bench_fmt "$r" 2)x" ;; esac
}
cell() { bench_fmt "$(med "$1")" "${2:-1}"; }
# ms_cell LIST: the median of milliseconds for the tables: "<1" below tracewatch's polling interval.
ms_cell() {
  local m
  m=$(med "$1")
  if [ "$m" != nan ] && [ "$(bench_lt "$m" 1)" = 1 ]; then echo "<1"; else bench_fmt "$m" 1; fi
}
# ms_ratio LIST_A LIST_B: ratio of the medians, B taken as at least 1 ms (then shown as a lower bound).
ms_ratio() {
  local a b
  a=$(med "$1") b=$(med "$2")
  if [ "$a" = nan ] || [ "$b" = nan ]; then
    echo n/a
  elif [ "$(bench_lt "$b" 1)" = 1 ]; then
    if [ "$(bench_lt "$a" 1)" = 1 ]; then echo n/a; else echo ">$(ratio "$a" 1)"; fi
  else
    ratio "$a" "$b"
  fi
}

bench_table_add 'one-liner|tracer|"Attaching" line ms|attached ms|CPU ms|SIGINT->maps ms|SIGINT->exit ms|N'
declare -A RATT RMAPS REXIT
for label in "${LAUNCH[@]}" wildcard-count; do
  for tool in "${TOOLS[@]}"; do
    k=$tool@$label
    if [ -n "${FAILED[$k]:-}" ] && [ -z "${ATT[$k]:-}" ]; then
      bench_table_add "$label|$tool|failed"
      continue
    fi
    bench_table_add "$label|$tool|$(ms_cell "${LINE[$k]:-}")|$(ms_cell "${ATT[$k]:-}")|$(cell "${CPU[$k]:-}")|$(ms_cell "${MAPS[$k]:-}")|$(ms_cell "${EXIT[$k]:-}")|${NPROBES[$k]:-}"
    bench_result "launch.$label.$tool.attaching_line_ms" "$(cell "${LINE[$k]:-}" 2)"
    bench_result "launch.$label.$tool.attached_ms" "$(cell "${ATT[$k]:-}" 2)"
    bench_result "launch.$label.$tool.cpu_ms" "$(cell "${CPU[$k]:-}" 2)"
    bench_result "launch.$label.$tool.sigint_to_maps_ms" "$(cell "${MAPS[$k]:-}" 2)"
    bench_result "launch.$label.$tool.sigint_to_exit_ms" "$(cell "${EXIT[$k]:-}" 2)"
    # (The tools' BEGIN and END count as probes too.)
    if [ -n "${NPROBES[$k]:-}" ] && [ "${NPROBES[$k]}" != "$((NTP[$label] + ${SPECIAL[$label]:-0}))" ]; then
      bench_warn "$tool said \"Attaching ${NPROBES[$k]} probes\" for ${SHOW[$label]:-${PROG[$label]}}: ${NTP[$label]} tracepoints match"
    fi
  done
  RATT[$label]=$(ms_ratio "${ATT[bpftrace@$label]:-}" "${ATT[bpfprof@$label]:-}")
  RMAPS[$label]=$(ms_ratio "${MAPS[bpftrace@$label]:-}" "${MAPS[bpfprof@$label]:-}")
  REXIT[$label]=$(ms_ratio "${EXIT[bpftrace@$label]:-}" "${EXIT[bpfprof@$label]:-}")
done
bench_table_print "Launch (exec to ...) and stop (SIGINT to ...), median of $REPS ($WILD_REPS for wildcard-count); <1: within tracewatch's 1 ms polling; N: the tool's \"Attaching N probes\""

bench_table_add "tracer|exec to exit ms"
for tool in "${TOOLS[@]}"; do
  bench_table_add "$tool|$(cell "${TOTAL[$tool]:-}")"
  bench_result "begin_exit.$tool.exec_to_exit_ms" "$(cell "${TOTAL[$tool]:-}" 2)"
done
RTOTAL=$(ratio "$(med "${TOTAL[bpftrace]:-}")" "$(med "${TOTAL[bpfprof]:-}")")
bench_table_add "bpftrace/bpfprof|$RTOTAL"
bench_result ratio.begin-exit.exec_to_exit_bpftrace_over_bpfprof "${RTOTAL%x}"
bench_table_print "Whole run of ${PROG[begin-exit]}, median of $REPS"

base=$(med "${WALL[none]:-}")
bench_table_add "one-liner|tracer|wall s|added ns/event|BPF ns/run|counted (last run)"
bench_table_add "-|none|$(cell "${WALL[none]:-}" 3)|0|n/a|-"
bench_result "event.none.wall_s" "$(cell "${WALL[none]:-}" 4)"
declare -A ADDED BPFNS
for label in "${EVENT[@]}"; do
  for tool in "${TOOLS[@]}"; do
    k=$tool@$label
    if [ -z "${WALL[$k]:-}" ]; then
      bench_table_add "$label|$tool|failed"
      continue
    fi
    ADDED[$k]=$(awk -v w="$(med "${WALL[$k]}")" -v b="$base" -v n="$CALLS" 'BEGIN { printf "%.3f\n", (w - b) / n * 1e9 }')
    BPFNS[$k]=$(med "${NS[$k]}")
    seen=${SEEN[$k]}
    [ -z "${MISCOUNT[$k]:-}" ] || seen="$seen (MISCOUNT in some run)"
    bench_table_add "$label|$tool|$(cell "${WALL[$k]}" 3)|$(bench_fmt "${ADDED[$k]}" 0)|$(bench_fmt "${BPFNS[$k]}" 0)|$seen"
    bench_result "event.$label.$tool.wall_s" "$(cell "${WALL[$k]}" 4)"
    bench_result "event.$label.$tool.added_ns_per_event" "$(bench_fmt "${ADDED[$k]}" 1)"
    bench_result "event.$label.$tool.bpf_ns_per_run" "$(bench_fmt "${BPFNS[$k]}" 1)"
    bench_result "event.$label.$tool.counted_exactly" "$([ -z "${MISCOUNT[$k]:-}" ] && echo 1 || echo 0)"
  done
done
bench_table_print "$CALLS getppid() calls on CPU 0, median of $REPS"

sbase=$(med "${SWALL[none]:-}")
bench_table_add "tracer|wall s|added ns/switch|BPF ns/run|switches (last run)"
for tool in none "${TOOLS[@]}"; do
  if [ -z "${SWALL[$tool]:-}" ]; then
    bench_table_add "$tool|failed"
    continue
  fi
  ADDED[$tool@runqlat-switch]=$(awk -v w="$(med "${SWALL[$tool]}")" -v b="$sbase" -v n="${SSW[$tool]}" 'BEGIN { printf "%.3f\n", (w - b) / n * 1e9 }')
  BPFNS[$tool@runqlat-switch]=$(med "${SNS[$tool]}")
  bench_table_add "$tool|$(cell "${SWALL[$tool]}" 3)|$(bench_fmt "${ADDED[$tool@runqlat-switch]}" 0)|$(bench_fmt "${BPFNS[$tool@runqlat-switch]}" 0)|${SSW[$tool]}"
  bench_result "runqlat_switch.$tool.wall_s" "$(cell "${SWALL[$tool]}" 4)"
  bench_result "runqlat_switch.$tool.added_ns_per_switch" "$(bench_fmt "${ADDED[$tool@runqlat-switch]}" 1)"
done
bench_table_print "runqlat on a pipe ping-pong ($ROUNDS rounds, 2 switches each, on CPU 0), median of $REPS"

bench_table_add "tracer|wall s|delivered|lost (reported)|unaccounted|delivered/s"
for tool in "${TOOLS[@]}"; do
  if [ -z "${PWALL[$tool]:-}" ]; then
    bench_table_add "$tool|failed"
    continue
  fi
  w=$(med "${PWALL[$tool]}")
  s=$(med "${PSEEN[$tool]}" | bench_int)
  l=$(med "${PLOST[$tool]}" | bench_int)
  bench_table_add "$tool|$(bench_fmt "$w" 3)|$s|$l|$((PRINTF_CALLS - s - l))|$(bench_fmt "$(bench_div "$s" "$w")" 0)"
  bench_result "printf.$tool.wall_s" "$(bench_fmt "$w" 4)"
  bench_result "printf.$tool.delivered" "$s"
  bench_result "printf.$tool.lost_reported" "$l"
done
# (no backslash in a title: bench_table_print hands it to awk -v, which expands escapes)
bench_table_print "The printf one-liner on $PRINTF_CALLS getppid() calls, output to a file, median of $PRINTF_REPS"

bench_table_add "one-liner|attached|SIGINT->maps|SIGINT->exit|added time/event|BPF time/run"
for label in "${LAUNCH[@]}" wildcard-count getppid-hist runqlat-switch; do
  a=n/a m=n/a x=n/a e=n/a b=n/a
  if [ -n "${RATT[$label]:-}" ]; then
    a=${RATT[$label]} m=${RMAPS[$label]} x=${REXIT[$label]}
  fi
  if [ -n "${ADDED[bpfprof@$label]:-}" ]; then
    e=$(ratio "${ADDED[bpftrace@$label]:-}" "${ADDED[bpfprof@$label]}")
    b=$(ratio "${BPFNS[bpftrace@$label]:-}" "${BPFNS[bpfprof@$label]}")
  fi
  bench_table_add "$label|$a|$m|$x|$e|$b"
  for pair in "attached:$a" "sigint_to_maps:$m" "sigint_to_exit:$x" "added_time_per_event:$e" "bpf_time_per_run:$b"; do
    v=${pair#*:}
    [ "$v" = n/a ] || bench_result "ratio.$label.${pair%%:*}_bpftrace_over_bpfprof" "${v%x}"
  done
done
bench_table_print "Ratios, bpftrace / bpfprof (above 1: bpfprof is faster or costs less)"

bench_table_add "runs|noise measure|median %|max %|repeated|still noisy"
for kind in launch event printf; do
  [ -n "${NOISE[$kind]:-}" ] || continue
  case "$kind" in
    launch) what="other load (/proc/stat)" ;;
    *) what="workload waited for CPU" ;;
  esac
  bench_table_add "$kind|$what|$(bench_fmt "$(med "${NOISE[$kind]}")" 1)|$(bench_fmt "$(maxof "${NOISE[$kind]}")" 1)|${REPEATED[$kind]:-0}|${NOISY[$kind]:-0}"
  bench_result "noise.$kind.median_pct" "$(bench_fmt "$(med "${NOISE[$kind]}")" 2)"
  bench_result "noise.$kind.max_pct" "$(bench_fmt "$(maxof "${NOISE[$kind]}")" 2)"
  bench_result "noise.$kind.repeated" "${REPEATED[$kind]:-0}"
  bench_result "noise.$kind.still_noisy" "${NOISY[$kind]:-0}"
done
bench_table_print "Noise (threshold $NOISE_PCT %; kept runs)"

for k in "${!FAILED[@]}"; do
  bench_warn "failed: $k"
done
echo "bpftrace/bpfprof, exec to attached: $(for l in "${LAUNCH[@]}" wildcard-count; do printf '%s %s  ' "$l" "${RATT[$l]}"; done)"
echo "bpftrace/bpfprof, added time per event: $(for l in "${EVENT[@]}"; do printf '%s %s  ' "$l" "$(ratio "${ADDED[bpftrace@$l]:-}" "${ADDED[bpfprof@$l]:-}")"; done)(above 1: bpfprof costs less)"
bench_finish
