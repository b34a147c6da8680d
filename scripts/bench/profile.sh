#!/usr/bin/env bash
# Benchmarks `bpfprof profile` against `perf record -g` (+ inferno for the flame graph):
#
#  1. Overhead: a fixed amount of CPU work (burn.c, one thread per CPU sharing the work) timed with no
#     profiler, under `bpfprof profile -F R` and under `perf record -g -F R -a`, for each rate R. Runs are
#     interleaved and repeated; the median is reported. Two measures:
#       slowdown  wall time of the work over the unprofiled median (what the issue asks for)
#       CPU cost  (CPU time of the work + CPU time of the profiler's process during the work) over the
#                 unprofiled median CPU time: insensitive to other load on the machine, which the wall
#                 time is not.
#     A run during which other processes took more than BENCH_NOISE_PCT % of the machine is repeated (up to
#     BENCH_RETRIES times, within BENCH_BUDGET seconds) and flagged if still noisy.
#  2. Report step: a profile with many distinct stacks (gen-manystacks.sh: 10^4 call chains) sampled at
#     4999 Hz on every CPU for BENCH_REPORT_SECS (about 100k samples). Timed from the end of sampling to a
#     written SVG:
#       bpfprof  `bpfprof profile -F 4999 --svg out.svg SECS`: from the moment it closes its perf events
#                (watched from outside by fdwatch.c) to its exit
#       perf     `perf record -g -F 4999 -a -- sleep SECS`, then
#                `perf script | inferno-collapse-perf | inferno-flamegraph > out.svg`; reported both alone
#                (as the issue defines it) and plus perf record's own finishing time after the window.
#     The workload is stopped when sampling ends, for both tools.
#  3. A summary table with the ratios; machine-readable results in scripts/bench/results/profile-DATE.txt.
#
# Usage: scripts/bench/profile.sh [--quick]      (as root; --quick: a short smoke run, not for figures)
# Settings (environment): BENCH_RATES ("49 999 4999"), BENCH_REPS (3), BENCH_BURN_CHUNKS (12000: about 6 s
# of work per CPU on the reference machine), BENCH_REPORT_SECS (10), BENCH_REPORT_REPS (3),
# BENCH_STACK_STORAGE (131072: bpfprof stores stacks by address, so the 10^4 call chains take several raw
# stacks each; its default of 16384 drops most of them), BENCH_NOISE_PCT (3), BENCH_RETRIES (2),
# BENCH_BUDGET (480), and those of lib.sh (BENCH_CACHE, BENCH_KEEP_TMP, BENCH_NO_BUILD).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

bench_args "$@"

if [ "$BENCH_QUICK" = 1 ]; then
  : "${BENCH_RATES:=49 4999}" "${BENCH_REPS:=1}" "${BENCH_BURN_CHUNKS:=2000}" "${BENCH_REPORT_SECS:=3}"
  : "${BENCH_REPORT_REPS:=1}" "${BENCH_RETRIES:=0}"
fi
read -r -a RATES <<<"${BENCH_RATES:-49 999 4999}"
REPS=${BENCH_REPS:-3}
BURN_CHUNKS=${BENCH_BURN_CHUNKS:-12000}
REPORT_SECS=${BENCH_REPORT_SECS:-10}
REPORT_REPS=${BENCH_REPORT_REPS:-3}
REPORT_HZ=4999
STACK_STORAGE=${BENCH_STACK_STORAGE:-131072}
NOISE_PCT=${BENCH_NOISE_PCT:-3}
RETRIES=${BENCH_RETRIES:-2}
BUDGET=${BENCH_BUDGET:-480}
RATE_SYSCTL=kernel.perf_event_max_sample_rate

bench_init profile
if [ "$BENCH_QUICK" = 1 ]; then # a smoke run: keep its figures apart from real ones
  BENCH_RESULT_FILE=$BENCH_RESULTS_DIR/profile-quick-$(date +%Y-%m-%d).txt
fi
bench_build_bpfprof
bench_ensure_inferno
BURN=$(bench_cc burn "$BENCH_DIR/burn.c")
"$BENCH_DIR/gen-manystacks.sh" >"$BENCH_CACHE/manystacks.c"
MANYSTACKS=$(bench_cc manystacks "$BENCH_CACHE/manystacks.c")
bench_log "bpfprof $BPFPROF_COMMIT, $(perf --version), inferno $INFERNO_VERSION, $BENCH_NCPU CPUs"
bench_result settings.rates "$(IFS=,; echo "${RATES[*]}")"
bench_result settings.reps "$REPS"
bench_result settings.burn_chunks "$BURN_CHUNKS"
bench_result settings.report_secs "$REPORT_SECS"
bench_result settings.stack_storage_size "$STACK_STORAGE"
bench_result settings.sysctl_max_sample_rate_at_start "$(sysctl -n "$RATE_SYSCTL")"

# ------------------------------------------------------------------------------------------------------
# 1. Overhead
# ------------------------------------------------------------------------------------------------------

# Per configuration: space-separated numbers, one per run.
declare -A WALL CPU PCPU RATE NOISY FAILED
# of FUNC LIST: FUNC (bench_median, bench_min, ...) of the numbers of one such list.
of() {
  local fn=$1 words
  read -r -a words <<<"$2"
  "$fn" "${words[@]}"
}
CONFIGS=(none)
for r in "${RATES[@]}"; do
  CONFIGS+=("bpfprof@$r" "perf@$r")
done

# overhead_once TOOL RATE DIR: one timed run of the work. Sets R_WALL, R_CPU (the work's wall and CPU
# seconds), R_PCPU (the profiler's CPU seconds meanwhile), R_FOREIGN (CPU seconds used by everything else)
# and R_SAMPLES (samples of the work the profiler recorded). Runs in this shell, not a subshell, so that the
# cleanup trap knows the profiler it starts.
overhead_once() {
  local tool=$1 rate=$2 dir=$3 prof="" out busy0 busy1 p0=0 p1=0 rc
  R_SAMPLES=0
  case "$tool" in
    bpfprof)
      bench_sysctl_min "$RATE_SYSCTL" "$rate"
      bench_spawn prof "$BPFPROF" profile -F "$rate" -f >"$dir/out.folded" 2>"$dir/err"
      ;;
    perf)
      bench_sysctl_min "$RATE_SYSCTL" "$rate"
      bench_spawn prof perf record -g -F "$rate" -a -o "$dir/perf.data" >"$dir/out" 2>"$dir/err"
      ;;
  esac
  if [ -n "$prof" ]; then
    if ! bench_wait_sampling "$prof" 30; then
      bench_stop "$prof" INT 10 || true
      bench_warn "$tool did not start sampling:"
      sed 's/^/    /' "$dir/err" >&2
      return 1
    fi
    sleep 0.5 # let it settle (perf synthesizes the existing processes' mappings)
  fi
  busy0=$(bench_sys_busy)
  [ -z "$prof" ] || p0=$(bench_proc_cpu "$prof")
  out=$(timeout 300 "$BURN" -t "$BENCH_NCPU" -n "$BURN_CHUNKS") || {
    [ -z "$prof" ] || bench_stop "$prof" INT 10 || true
    bench_warn "the workload failed"
    return 1
  }
  [ -z "$prof" ] || p1=$(bench_proc_cpu "$prof")
  busy1=$(bench_sys_busy)
  R_WALL=$(sed -n 's/.*wall=\([0-9.]*\).*/\1/p' <<<"$out")
  R_CPU=$(sed -n 's/.*cpu=\([0-9.]*\).*/\1/p' <<<"$out")
  R_PCPU=$(bench_sub "$p1" "$p0")
  R_FOREIGN=$(awk -v b="$(bench_sub "$busy1" "$busy0")" -v c="$R_CPU" -v p="$R_PCPU" \
    'BEGIN { printf "%.4f\n", b - c - p }')
  if [ -n "$prof" ]; then
    rc=0
    bench_stop "$prof" INT 120 || rc=$?
    # perf record exits with 130 after SIGINT.
    if [ "$rc" -ne 0 ] && ! { [ "$tool" = perf ] && [ "$rc" = 130 ]; }; then
      bench_warn "$tool exited with status $rc:"
      sed 's/^/    /' "$dir/err" >&2
      return 1
    fi
    if [ "$tool" = bpfprof ]; then
      R_SAMPLES=$(awk '/^burn[; ]/ { s += $NF } END { print s + 0 }' "$dir/out.folded")
    else
      R_SAMPLES=$(perf script -i "$dir/perf.data" -F comm 2>/dev/null | awk '$1 == "burn" { n++ } END { print n + 0 }')
    fi
  fi
  rm -f "$dir/perf.data" "$dir/out.folded"
}

# overhead_run CONFIG: overhead_once with retries while other load disturbs it; records the results.
overhead_run() {
  local cfg=$1 tool rate dir attempt wall cpu pcpu samples fpct noisy
  tool=${cfg%@*}
  rate=${cfg#*@}
  [ "$tool" != none ] || rate=0
  [ -z "${FAILED[$cfg]:-}" ] || return 0
  dir=$BENCH_TMP/overhead-${cfg/@/-}
  mkdir -p "$dir"
  for ((attempt = 0; attempt <= RETRIES; attempt++)); do
    if ! overhead_once "$tool" "$rate" "$dir"; then
      FAILED[$cfg]=1
      bench_warn "$cfg failed: no more runs of it"
      return 0
    fi
    wall=$R_WALL cpu=$R_CPU pcpu=$R_PCPU samples=$R_SAMPLES
    fpct=$(awk -v f="$R_FOREIGN" -v w="$wall" -v n="$BENCH_NCPU" 'BEGIN { printf "%.1f", 100 * f / (w * n) }')
    noisy=$(bench_lt "$NOISE_PCT" "$fpct")
    bench_log "$(printf '%-13s wall %6.3f s  cpu %6.3f s  profiler cpu %6.3f s  other load %4s%%  samples %s%s' \
      "$cfg" "$wall" "$cpu" "$pcpu" "$fpct" "$samples" "$([ "$noisy" = 1 ] && echo '  (noisy)')")"
    if [ "$noisy" = 0 ]; then
      break
    fi
    if [ "$attempt" -lt "$RETRIES" ] &&
      [ "$(bench_lt "$(bench_sub "$EPOCHREALTIME" "$BENCH_T0")" "$BUDGET")" = 1 ]; then
      bench_log "  other processes used $fpct% of the CPUs during the run: repeating it"
    else
      NOISY[$cfg]=$((${NOISY[$cfg]:-0} + 1))
      break
    fi
  done
  WALL[$cfg]+="$wall "
  CPU[$cfg]+="$cpu "
  PCPU[$cfg]+="$pcpu "
  RATE[$cfg]+="$(awk -v s="$samples" -v w="$wall" -v n="$BENCH_NCPU" 'BEGIN { printf "%.0f", s / (w * n) }') "
}

bench_log "overhead: $REPS x ${#CONFIGS[@]} runs of $BURN_CHUNKS chunks on $BENCH_NCPU threads (rates: ${RATES[*]} Hz)"
"$BURN" -t "$BENCH_NCPU" -n $((BURN_CHUNKS / 10 + 1)) >/dev/null # warm-up
for ((rep = 1; rep <= REPS; rep++)); do
  order=("${CONFIGS[@]}")
  if ((rep % 2 == 0)); then # alternate the order so that drift and position effects hit all alike
    for ((i = 0; i < ${#CONFIGS[@]}; i++)); do
      order[i]=${CONFIGS[${#CONFIGS[@]} - 1 - i]}
    done
  fi
  bench_log "overhead round $rep/$REPS"
  for cfg in "${order[@]}"; do
    overhead_run "$cfg"
  done
done

{
  base_wall=$(of bench_median "${WALL[none]}")
  base_cpu=$(of bench_median "${CPU[none]}")
  # The unprofiled runs' spread: differences below it are noise.
  noise_wall=$(awk -v a="$(of bench_max "${WALL[none]}")" -v b="$(of bench_min "${WALL[none]}")" -v m="$base_wall" \
    'BEGIN { printf "%.6f", 100 * (a - b) / m }')
  noise_cpu=$(awk -v a="$(of bench_max "${CPU[none]}")" -v b="$(of bench_min "${CPU[none]}")" -v m="$base_cpu" \
    'BEGIN { printf "%.6f", 100 * (a - b) / m }')
}
bench_result overhead.none.wall_median_s "$(bench_fmt "$base_wall" 4)"
bench_result overhead.none.wall_runs_s "$(tr ' ' ',' <<<"${WALL[none]% }")"
bench_result overhead.none.cpu_median_s "$(bench_fmt "$base_cpu" 4)"
bench_result overhead.none.noisy_runs "${NOISY[none]:-0}"
bench_result overhead.noise_floor_wall_pct "$(bench_fmt "$noise_wall" 2)"
bench_result overhead.noise_floor_cpu_pct "$(bench_fmt "$noise_cpu" 2)"

declare -A SLOW COST
bench_table_add "tool|Hz|wall (median)|wall (min-max)|slowdown|CPU cost|profiler CPU|samples/s/CPU|noisy runs"
bench_table_add "none|-|$(bench_fmt "$base_wall" 3) s|$(bench_fmt "$(of bench_min "${WALL[none]}")" 2)-$(bench_fmt "$(of bench_max "${WALL[none]}")" 2)|-|-|-|-|${NOISY[none]:-0}/$REPS"
for r in "${RATES[@]}"; do
  for tool in bpfprof perf; do
    cfg=$tool@$r
    key=overhead.$tool.$r
    if [ -n "${FAILED[$cfg]:-}" ] || [ -z "${WALL[$cfg]:-}" ]; then
      bench_table_add "$tool|$r|FAILED|||||"
      bench_result "$key.failed" 1
      continue
    fi
    {
      w=$(of bench_median "${WALL[$cfg]}")
      tot=()
      read -r -a cs <<<"${CPU[$cfg]}"
      read -r -a ps <<<"${PCPU[$cfg]}"
      for ((i = 0; i < ${#cs[@]}; i++)); do
        tot+=("$(bench_add "${cs[i]}" "${ps[i]}")")
      done
      SLOW[$cfg]=$(bench_pct "$w" "$base_wall")
      COST[$cfg]=$(bench_pct "$(bench_median "${tot[@]}")" "$base_cpu")
      pc=$(of bench_median "${PCPU[$cfg]}")
      rt=$(of bench_median "${RATE[$cfg]}")
      bench_table_add "$tool|$r|$(bench_fmt "$w" 3) s|$(bench_fmt "$(of bench_min "${WALL[$cfg]}")" 2)-$(bench_fmt "$(of bench_max "${WALL[$cfg]}")" 2)|$(bench_fmt "${SLOW[$cfg]}" 1)%|$(bench_fmt "${COST[$cfg]}" 1)%|$(bench_fmt "$pc" 3) s|$(bench_fmt "$rt" 0)|${NOISY[$cfg]:-0}/$REPS"
      bench_result "$key.wall_median_s" "$(bench_fmt "$w" 4)"
      bench_result "$key.wall_runs_s" "$(tr ' ' ',' <<<"${WALL[$cfg]% }")"
      bench_result "$key.slowdown_pct" "$(bench_fmt "${SLOW[$cfg]}" 2)"
      bench_result "$key.cpu_cost_pct" "$(bench_fmt "${COST[$cfg]}" 2)"
      bench_result "$key.profiler_cpu_s" "$(bench_fmt "$pc" 4)"
      bench_result "$key.samples_per_s_per_cpu" "$(bench_fmt "$rt" 0)"
      bench_result "$key.noisy_runs" "${NOISY[$cfg]:-0}"
    }
  done
done
bench_table_print "Overhead: $BURN_CHUNKS chunks of work on $BENCH_NCPU threads, median of $REPS runs (unprofiled spread: wall $(bench_fmt "$noise_wall" 1)%, CPU $(bench_fmt "$noise_cpu" 1)%)"

# overhead_ratio BPFPROF_PCT PERF_PCT FLOOR_PCT: bpfprof's overhead over perf's, or n/a when perf's is
# within the noise (a ratio of two noise figures means nothing).
overhead_ratio() {
  awk -v b="$1" -v p="$2" -v f="$3" 'BEGIN {
    if (b == "" || p == "") { print "n/a"; exit }
    floor = (f > 0.5) ? f : 0.5
    if (p <= floor) { print "n/a"; exit }
    if (b <= 0) { print "0.00"; exit }
    printf "%.2f\n", b / p }'
}
declare -A RATIO_W RATIO_C
for r in "${RATES[@]}"; do
  RATIO_W[$r]=$(overhead_ratio "${SLOW[bpfprof@$r]:-}" "${SLOW[perf@$r]:-}" "$noise_wall")
  RATIO_C[$r]=$(overhead_ratio "${COST[bpfprof@$r]:-}" "${COST[perf@$r]:-}" "$noise_cpu")
  bench_result "overhead.ratio.$r.slowdown" "${RATIO_W[$r]}"
  bench_result "overhead.ratio.$r.cpu_cost" "${RATIO_C[$r]}"
done

# ------------------------------------------------------------------------------------------------------
# 2. Report step
# ------------------------------------------------------------------------------------------------------

bench_sysctl_min "$RATE_SYSCTL" "$REPORT_HZ"
BP_REPORT=() BP_STARTUP=() BP_WALLX=() PF_PIPE=() PF_TAIL=() PF_TOTAL=()
BP_SAMPLES=() BP_STACKS=() BP_SVG_TOTAL=() BP_MISSED=() BP_INSVG=() BP_WITHSTACK=() BP_WARN=()
PF_SAMPLES=() PF_STACKS=()

# The workload: one thread per CPU, stopped when sampling ends (by fdwatch, or by perf's command).
start_manystacks() {
  bench_spawn MS_PID "$MANYSTACKS" -t "$BENCH_NCPU" -s $((REPORT_SECS + 60))
  sleep 0.3
}

report_bpfprof() {
  local dir=$BENCH_TMP/report-bpfprof-$1 bp launch end rc=0 start stop wrote svg_total missed line
  mkdir -p "$dir"
  start_manystacks
  launch=$EPOCHREALTIME
  bench_spawn bp "$BPFPROF" profile -F "$REPORT_HZ" --stack-storage-size "$STACK_STORAGE" \
    --svg "$dir/bpfprof.svg" "$REPORT_SECS" 2>"$dir/err"
  "$FDWATCH" -n "$BENCH_NCPU" -k "$MS_PID" -t $((REPORT_SECS + 120)) "$bp" >"$dir/fdwatch" || true
  bench_reap "$bp" || rc=$?
  end=$EPOCHREALTIME
  bench_stop "$MS_PID" TERM 10 || true
  if [ "$rc" -ne 0 ]; then
    bench_warn "bpfprof exited with status $rc:"
    sed 's/^/    /' "$dir/err" >&2
    return 1
  fi
  start=$(awk '$1 == "start" { print $2 }' "$dir/fdwatch")
  stop=$(awk '$1 == "stop" { print $2 }' "$dir/fdwatch")
  if [ -z "$start" ] || [ -z "$stop" ]; then
    bench_warn "could not see bpfprof start and stop sampling (fdwatch: $(tr '\n' ' ' <"$dir/fdwatch"))"
    return 1
  fi
  wrote=$(sed -n 's/^bpfprof: \([0-9]*\) samples, \([0-9]*\) distinct stacks$/\1 \2/p' "$dir/err")
  [ -n "$wrote" ] || {
    bench_warn "bpfprof did not say 'N samples, M distinct stacks':"
    sed 's/^/    /' "$dir/err" >&2
    return 1
  }
  # What the SVG holds: its total, and the samples whose user stack is missing.
  svg_total=$(grep -o '<title>all ([0-9,]* samples' "$dir/bpfprof.svg" | head -n1 | tr -dc 0-9)
  missed=$(grep -o '<title>\[Missed User Stack\] ([0-9,]* samples' "$dir/bpfprof.svg" | tr -d , |
    awk '{ gsub(/[^0-9 ]/, ""); s += $NF } END { print s + 0 }')
  BP_REPORT+=("$(bench_sub "$end" "$stop")")
  BP_STARTUP+=("$(bench_sub "$start" "$launch")")
  BP_WALLX+=("$(bench_sub "$(bench_sub "$end" "$launch")" "$REPORT_SECS")")
  BP_SAMPLES+=("${wrote% *}")
  BP_STACKS+=("${wrote#* }")
  BP_SVG_TOTAL+=("${svg_total:-0}")
  BP_MISSED+=("$missed")
  # Of the samples bpfprof counted: the share in its SVG, and the share there with a user stack.
  BP_INSVG+=("$(awk -v t="${svg_total:-0}" -v s="${wrote% *}" 'BEGIN { printf "%.1f", (s > 0 ? 100 * t / s : 0) }')")
  BP_WITHSTACK+=("$(awk -v t="${svg_total:-0}" -v m="$missed" -v s="${wrote% *}" \
    'BEGIN { printf "%.1f", (s > 0 ? 100 * (t - m) / s : 0) }')")
  while IFS= read -r line; do
    BP_WARN+=("$line")
  done < <(grep '^WARNING' "$dir/err" || true)
  bench_log "$(printf 'bpfprof report: %.3f s (startup %.3f s, wall - %s s = %.3f s), %s samples, %s stacks; SVG total %s, [Missed User Stack] %s' \
    "${BP_REPORT[-1]}" "${BP_STARTUP[-1]}" "$REPORT_SECS" "${BP_WALLX[-1]}" "${wrote% *}" "${wrote#* }" "${svg_total:-?}" "$missed")"
  grep '^WARNING' "$dir/err" | sed 's/^/    bpfprof: /' >&2 || true
}

report_perf() {
  local dir=$BENCH_TMP/report-perf-$1 rec_end sampling_end start end samples stacks rc=0
  mkdir -p "$dir"
  start_manystacks
  # The recorded command marks the end of the window and stops the workload, as fdwatch does for bpfprof.
  # shellcheck disable=SC2016 # expanded by the inner bash
  timeout $((REPORT_SECS + 300)) perf record -g -F "$REPORT_HZ" -a -o "$dir/perf.data" -- \
    bash -c 'sleep "$1"; echo "$EPOCHREALTIME" >"$2"; kill -TERM "$3"' _ "$REPORT_SECS" "$dir/window-end" "$MS_PID" \
    >"$dir/record.out" 2>"$dir/record.err" || rc=$?
  rec_end=$EPOCHREALTIME
  bench_stop "$MS_PID" TERM 10 || true
  if [ "$rc" -ne 0 ] || [ ! -s "$dir/window-end" ]; then
    bench_warn "perf record failed (status $rc):"
    sed 's/^/    /' "$dir/record.err" >&2
    return 1
  fi
  sampling_end=$(<"$dir/window-end")
  samples=$(sed -n 's/.*(\([0-9]*\) samples).*/\1/p' "$dir/record.err")
  start=$EPOCHREALTIME
  if ! timeout 600 perf script -i "$dir/perf.data" 2>"$dir/script.err" |
    timeout 600 "$INFERNO_COLLAPSE_PERF" 2>"$dir/collapse.err" | tee "$dir/perf.folded" |
    timeout 600 "$INFERNO_FLAMEGRAPH" >"$dir/perf.svg" 2>"$dir/flamegraph.err"; then
    bench_warn "perf script | inferno-collapse-perf | inferno-flamegraph failed:"
    cat "$dir/script.err" "$dir/collapse.err" "$dir/flamegraph.err" | head -n 20 | sed 's/^/    /' >&2
    return 1
  fi
  end=$EPOCHREALTIME
  stacks=$(wc -l <"$dir/perf.folded")
  PF_PIPE+=("$(bench_sub "$end" "$start")")
  PF_TAIL+=("$(bench_sub "$rec_end" "$sampling_end")")
  PF_TOTAL+=("$(bench_add "${PF_PIPE[-1]}" "${PF_TAIL[-1]}")")
  PF_SAMPLES+=("${samples:-0}")
  PF_STACKS+=("$stacks")
  bench_log "$(printf 'perf report: script|collapse|flamegraph %.3f s, perf record finishing %.3f s, %s samples, %s stacks' \
    "${PF_PIPE[-1]}" "${PF_TAIL[-1]}" "${samples:-?}" "$stacks")"
  rm -f "$dir/perf.data"
}

bench_log "report step: $REPORT_REPS x (bpfprof, perf) at $REPORT_HZ Hz for $REPORT_SECS s on $BENCH_NCPU CPUs"
for ((rep = 1; rep <= REPORT_REPS; rep++)); do
  if ((rep % 2)); then
    report_bpfprof "$rep" || bench_warn "bpfprof report run $rep failed"
    report_perf "$rep" || bench_warn "perf report run $rep failed"
  else
    report_perf "$rep" || bench_warn "perf report run $rep failed"
    report_bpfprof "$rep" || bench_warn "bpfprof report run $rep failed"
  fi
done

xcell() { case "$1" in n/a) echo n/a ;; *) echo "$1x" ;; esac; }
rpt_ratio() { awk -v p="$1" -v b="$2" 'BEGIN { if (p == "" || b == "" || b <= 0) print "n/a"; else printf "%.1f\n", p / b }'; }
bp_report="" pf_pipe="" pf_total=""
# runs DECIMALS VALUES...: the values rounded and comma-separated.
runs() { printf "%.${1}f\n" "${@:2}" | paste -sd, -; }
bench_table_add "tool|end of sampling -> SVG|(runs)|samples|stacks|(runs)|in SVG|with user stack|notes"
bp_complete=""
if [ "${#BP_REPORT[@]}" -gt 0 ]; then
  bp_report=$(bench_median "${BP_REPORT[@]}")
  bp_complete=$(bench_median "${BP_WITHSTACK[@]}")
  bench_table_add "bpfprof|$(bench_fmt "$bp_report" 3) s|$(runs 2 "${BP_REPORT[@]}")|$(bench_median "${BP_SAMPLES[@]}" | bench_int)|$(bench_median "${BP_STACKS[@]}" | bench_int)|$(runs 0 "${BP_STACKS[@]}")|$(bench_fmt "$(bench_median "${BP_INSVG[@]}")" 1)%|$(bench_fmt "$bp_complete" 1)%|startup $(bench_fmt "$(bench_median "${BP_STARTUP[@]}")" 2) s; wall - ${REPORT_SECS} s = $(bench_fmt "$(bench_median "${BP_WALLX[@]}")" 2) s"
  bench_result report.bpfprof.seconds "$(bench_fmt "$bp_report" 4)"
  bench_result report.bpfprof.runs_s "$(runs 4 "${BP_REPORT[@]}")"
  bench_result report.bpfprof.startup_s "$(bench_fmt "$(bench_median "${BP_STARTUP[@]}")" 4)"
  bench_result report.bpfprof.wall_minus_duration_s "$(bench_fmt "$(bench_median "${BP_WALLX[@]}")" 4)"
  bench_result report.bpfprof.samples "$(bench_median "${BP_SAMPLES[@]}" | bench_int)"
  bench_result report.bpfprof.stacks "$(bench_median "${BP_STACKS[@]}" | bench_int)"
  bench_result report.bpfprof.stacks_runs "$(runs 0 "${BP_STACKS[@]}")"
  bench_result report.bpfprof.svg_total_runs "$(runs 0 "${BP_SVG_TOTAL[@]}")"
  bench_result report.bpfprof.missed_user_stack_runs "$(runs 0 "${BP_MISSED[@]}")"
  bench_result report.bpfprof.in_svg_pct "$(bench_fmt "$(bench_median "${BP_INSVG[@]}")" 1)"
  bench_result report.bpfprof.with_user_stack_pct "$(bench_fmt "$bp_complete" 1)"
else
  bench_table_add "bpfprof|FAILED|||||||"
fi
if [ "${#PF_PIPE[@]}" -gt 0 ]; then
  pf_pipe=$(bench_median "${PF_PIPE[@]}")
  pf_total=$(bench_median "${PF_TOTAL[@]}")
  bench_table_add "perf|$(bench_fmt "$pf_pipe" 3) s|$(runs 2 "${PF_PIPE[@]}")|$(bench_median "${PF_SAMPLES[@]}" | bench_int)|$(bench_median "${PF_STACKS[@]}" | bench_int)|$(runs 0 "${PF_STACKS[@]}")|||perf script, inferno-collapse-perf, inferno-flamegraph"
  bench_table_add "perf + record tail|$(bench_fmt "$pf_total" 3) s|$(runs 2 "${PF_TOTAL[@]}")||||||+ perf record finishing after the window: $(bench_fmt "$(bench_median "${PF_TAIL[@]}")" 2) s"
  bench_result report.perf.pipeline_s "$(bench_fmt "$pf_pipe" 4)"
  bench_result report.perf.pipeline_runs_s "$(runs 4 "${PF_PIPE[@]}")"
  bench_result report.perf.record_tail_s "$(bench_fmt "$(bench_median "${PF_TAIL[@]}")" 4)"
  bench_result report.perf.total_s "$(bench_fmt "$pf_total" 4)"
  bench_result report.perf.samples "$(bench_median "${PF_SAMPLES[@]}" | bench_int)"
  bench_result report.perf.stacks "$(bench_median "${PF_STACKS[@]}" | bench_int)"
else
  bench_table_add "perf|FAILED|||||||"
fi
ratio_pipe=$(rpt_ratio "$pf_pipe" "$bp_report")
ratio_total=$(rpt_ratio "$pf_total" "$bp_report")
bench_result report.ratio.perf_pipeline_over_bpfprof "$ratio_pipe"
bench_result report.ratio.perf_total_over_bpfprof "$ratio_total"
bench_table_print "Report step: $REPORT_HZ Hz x $BENCH_NCPU CPUs x $REPORT_SECS s, 10^4-chain workload, median of $REPORT_REPS (bpfprof --stack-storage-size $STACK_STORAGE)"
if [ "${#BP_WARN[@]}" -gt 0 ]; then
  printf 'bpfprof warned (report runs):\n' && printf '  %s\n' "${BP_WARN[@]}" | sort | uniq -c | sed 's/^ */  /'
  echo
fi
incomplete=0
if [ -n "$bp_complete" ] && [ "$(bench_lt "$bp_complete" 99)" = 1 ]; then
  incomplete=1
  echo "WARNING: of the samples bpfprof counted, its SVG holds $(runs 1 "${BP_INSVG[@]}")% (per run),"
  echo "  and $(runs 1 "${BP_WITHSTACK[@]}")% with a user stack (the rest is [Missed User Stack])."
  echo "  Its report time is for that partial profile: not comparable with perf's."
  echo
fi
bench_result report.bpfprof.incomplete "$incomplete"

# ------------------------------------------------------------------------------------------------------
# 3. Summary
# ------------------------------------------------------------------------------------------------------

pct_cell() { [ -n "$1" ] && echo "$(bench_fmt "$1" 1)%" || echo "n/a"; }
bench_table_add "measure|bpfprof|perf|ratio|target / note"
for r in "${RATES[@]}"; do
  bench_table_add "slowdown at $r Hz (wall)|$(pct_cell "${SLOW[bpfprof@$r]:-}")|$(pct_cell "${SLOW[perf@$r]:-}")|$(xcell "${RATIO_W[$r]}")|bpfprof/perf overhead, lower is better"
done
for r in "${RATES[@]}"; do
  bench_table_add "CPU cost at $r Hz|$(pct_cell "${COST[bpfprof@$r]:-}")|$(pct_cell "${COST[perf@$r]:-}")|$(xcell "${RATIO_C[$r]}")|bpfprof/perf overhead, lower is better"
done
met() {
  awk -v r="$1" -v inc="$incomplete" 'BEGIN {
    if (r == "n/a") print "n/a"; else if (r >= 5) printf "met"; else printf "NOT met"
    if (r != "n/a") print inc ? ", bpfprof output incomplete" : "" }'
}
bench_table_add "report: end of sampling -> SVG|$(bench_fmt "$bp_report" 3) s|$(bench_fmt "$pf_pipe" 3) s|$(xcell "$ratio_pipe")|perf/bpfprof >= 5x: $(met "$ratio_pipe")"
bench_table_add "report, perf incl. record tail|$(bench_fmt "$bp_report" 3) s|$(bench_fmt "$pf_total" 3) s|$(xcell "$ratio_total")|perf/bpfprof >= 5x: $(met "$ratio_total")"
bench_table_print "Summary (n/a: perf's overhead is within the unprofiled runs' spread, so no ratio)"

bench_finish
bench_log "done in $(bench_fmt "$(bench_sub "$EPOCHREALTIME" "$BENCH_T0")" 0) s"
