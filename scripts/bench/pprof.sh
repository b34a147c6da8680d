#!/usr/bin/env bash
# Benchmarks bpfprof's pprof output and its continuous mode:
#
#  1. Writing pprof against writing the SVG, on profile.sh's report-step profile: gen-manystacks.sh's 10^4
#     call chains sampled at 4999 Hz on every CPU for BENCH_REPORT_SECS (about 100k samples). One run writes
#     both (`--svg S --pprof P`, BPFPROF_TIMING=1), so both come from the same stacks: the `pprof` phase
#     against the `fold` + `render+write` phases; the files' sizes; and `bpfprof report P --svg` (the
#     flame graph drawn again from the pprof, offline).
#  2. `profile --continuous --every 10s --pprof-dir` at 49 Hz for BENCH_CONT_SECS (600) on an idle machine,
#     then on a busy one (manystacks on every CPU): the CPU bpfprof used (% of one CPU), and its RSS in the
#     first minute and in the last (sampled every 10 s), split into heap, mmapped BPF maps (the unwind
#     tables: new binaries' tables fill them, up to --unwind-memory) and files (binaries, debug info).
#
# Usage: scripts/bench/pprof.sh [--quick]     (as root; --quick: a short smoke run, not for figures)
# Settings (environment): BENCH_REPORT_SECS (10), BENCH_REPORT_REPS (3), BENCH_CONT_SECS (600),
# BENCH_STACK_STORAGE (131072, as profile.sh), and those of lib.sh.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

bench_args "$@"
if [ "$BENCH_QUICK" = 1 ]; then
  : "${BENCH_REPORT_SECS:=3}" "${BENCH_REPORT_REPS:=1}" "${BENCH_CONT_SECS:=30}"
fi
REPORT_SECS=${BENCH_REPORT_SECS:-10}
REPORT_REPS=${BENCH_REPORT_REPS:-3}
CONT_SECS=${BENCH_CONT_SECS:-600}
STACK_STORAGE=${BENCH_STACK_STORAGE:-131072}
REPORT_HZ=4999

bench_init pprof
if [ "$BENCH_QUICK" = 1 ]; then
  BENCH_RESULT_FILE=$BENCH_RESULTS_DIR/pprof-quick-$(date +%Y-%m-%d).txt
fi
bench_build_bpfprof
"$BENCH_DIR/gen-manystacks.sh" >"$BENCH_CACHE/manystacks.c"
MANYSTACKS=$(bench_cc manystacks "$BENCH_CACHE/manystacks.c")
bench_log "bpfprof $BPFPROF_COMMIT, $BENCH_NCPU CPUs"
bench_result settings.report_secs "$REPORT_SECS"
bench_result settings.cont_secs "$CONT_SECS"
bench_sysctl_min kernel.perf_event_max_sample_rate "$REPORT_HZ"

# ------------------------------------------------------------------------------------------------------
# 1. pprof against SVG
# ------------------------------------------------------------------------------------------------------

# phase NAME TIMING_LINE: the seconds of one phase of a `bpfprof: timing:` line.
phase() { tr ',;' '\n\n' <<<"$2" | awk -v p="$1" '$1 == p { sub(/s$/, "", $2); print $2 }'; }

PPROF_S=() SVG_S=() REPORT_S=() SAMPLES=() PPROF_KB=() SVG_KB=()
for ((rep = 1; rep <= REPORT_REPS; rep++)); do
  dir=$BENCH_TMP/report-$rep
  mkdir -p "$dir"
  bench_spawn ms "$MANYSTACKS" -t "$BENCH_NCPU" -s $((REPORT_SECS + 60))
  BPFPROF_TIMING=1 "$BPFPROF" profile -F "$REPORT_HZ" --stack-storage-size "$STACK_STORAGE" \
    --svg "$dir/cpu.svg" --pprof "$dir/cpu.pb.gz" "$REPORT_SECS" 2>"$dir/err" >/dev/null
  bench_stop "$ms" TERM 10 || true
  timing=$(grep '^bpfprof: timing:' "$dir/err")
  p=$(phase pprof "$timing")
  s=$(bench_add "$(phase fold "$timing")" "$(phase render+write "$timing")")
  start=$EPOCHREALTIME
  "$BPFPROF" report "$dir/cpu.pb.gz" --svg "$dir/again.svg" 2>"$dir/report-err"
  r=$(bench_sub "$EPOCHREALTIME" "$start")
  n=$(awk '/^bpfprof: [0-9]+ samples/ { print $2 }' "$dir/err")
  PPROF_S+=("$p") SVG_S+=("$s") REPORT_S+=("$r") SAMPLES+=("$n")
  PPROF_KB+=("$(($(stat -c %s "$dir/cpu.pb.gz") / 1024))") SVG_KB+=("$(($(stat -c %s "$dir/cpu.svg") / 1024))")
  bench_log "run $rep: $n samples; pprof $p s, SVG $s s (fold + render+write); report pprof -> SVG $r s"
done
pprof_s=$(bench_median "${PPROF_S[@]}")
svg_s=$(bench_median "${SVG_S[@]}")
report_s=$(bench_median "${REPORT_S[@]}")
bench_table_add "output|seconds (median)|runs|file KiB" \
  "pprof (--pprof)|$(bench_fmt "$pprof_s" 3)|${PPROF_S[*]}|$(bench_median "${PPROF_KB[@]}" | bench_int)" \
  "SVG (--svg: fold + render)|$(bench_fmt "$svg_s" 3)|${SVG_S[*]}|$(bench_median "${SVG_KB[@]}" | bench_int)" \
  "report pprof -> SVG (whole run)|$(bench_fmt "$report_s" 3)|${REPORT_S[*]}|" \
  "pprof / SVG|$(bench_fmt "$(bench_div "$pprof_s" "$svg_s")" 2)x||"
bench_table_print "Writing the ${REPORT_SECS} s, ${REPORT_HZ} Hz profile of 10^4 call chains ($(bench_median "${SAMPLES[@]}" | bench_int) samples)"
bench_result report.samples "$(bench_median "${SAMPLES[@]}" | bench_int)"
bench_result report.pprof_s "$(bench_fmt "$pprof_s" 4)"
bench_result report.svg_s "$(bench_fmt "$svg_s" 4)"
bench_result report.report_svg_s "$(bench_fmt "$report_s" 4)"
bench_result report.pprof_kib "$(bench_median "${PPROF_KB[@]}" | bench_int)"
bench_result report.svg_kib "$(bench_median "${SVG_KB[@]}" | bench_int)"

# ------------------------------------------------------------------------------------------------------
# 2. Continuous mode
# ------------------------------------------------------------------------------------------------------

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
# rss_parts PID: resident kB of the heap and anonymous memory, of mmapped BPF maps (the unwind tables,
# bounded by --unwind-memory), and of files (binaries and debug info blazesym maps): "heap bpf files".
rss_parts() {
  awk '/^[0-9a-f]+-[0-9a-f]+ / { n = $6 }
    /^Rss:/ { if (n == "" || n ~ /^\[(heap|anon|stack)/) h += $2; else if (n ~ /bpf-map/) b += $2; else f += $2 }
    END { printf "%d %d %d\n", h, b, f }' "/proc/$1/smaps" 2>/dev/null || echo "0 0 0"
}

continuous() {
  local label=$1 dir=$BENCH_TMP/cont-$1 bp t cpu0 cpu1 rss first=0 last=0 windows parts_first parts_last
  mkdir -p "$dir"
  bench_spawn bp "$BPFPROF" profile -F 49 --continuous --every 10s --pprof-dir "$dir/windows" --keep 10 \
    "$CONT_SECS" 2>"$dir/err"
  sleep 2
  cpu0=$(bench_proc_cpu "$bp")
  for ((t = 10; t <= CONT_SECS - 10; t += 10)); do
    sleep 10
    rss=$(rss_kb "$bp")
    cpu1=$(bench_proc_cpu "$bp")
    [ "$t" -le 60 ] && [ "$rss" -gt "$first" ] && first=$rss && parts_first=$(rss_parts "$bp")
    [ "$t" -gt $((CONT_SECS - 70)) ] && [ "$rss" -gt "$last" ] && last=$rss && parts_last=$(rss_parts "$bp")
  done
  local pct
  pct=$(awk -v c="$(bench_sub "$cpu1" "$cpu0")" -v s="$((t - 10 - 2 + 2))" 'BEGIN { printf "%.3f", 100 * c / s }')
  bench_reap "$bp" || true
  windows=$(grep -c '^bpfprof: window ' "$dir/err" || true)
  bench_log "continuous ($label): CPU $pct % of one CPU, RSS first minute $first kB (heap bpf files: $parts_first), last minute $last kB ($parts_last), $windows windows"
  read -r hf bf ff <<<"$parts_first"
  read -r hl bl fl <<<"$parts_last"
  bench_table_add "$label|$pct|$((first / 1024))|$((last / 1024))|$((hf / 1024)) -> $((hl / 1024))|$((bf / 1024)) -> $((bl / 1024))|$((ff / 1024)) -> $((fl / 1024))|$windows"
  bench_result "continuous.$label.cpu_pct" "$pct"
  bench_result "continuous.$label.rss_first_kib" "$first"
  bench_result "continuous.$label.rss_last_kib" "$last"
  bench_result "continuous.$label.heap_kib" "$hf $hl"
  bench_result "continuous.$label.bpf_maps_kib" "$bf $bl"
  bench_result "continuous.$label.files_kib" "$ff $fl"
}

bench_table_add "machine|bpfprof CPU % (of one CPU)|RSS MiB, first minute|RSS MiB, last minute|heap MiB|BPF maps MiB|files MiB|windows"
bench_log "continuous at 49 Hz for $CONT_SECS s: idle"
continuous idle
bench_log "continuous at 49 Hz for $CONT_SECS s: busy (manystacks on $BENCH_NCPU CPUs)"
bench_spawn busy "$MANYSTACKS" -t "$BENCH_NCPU" -s $((CONT_SECS + 60))
continuous busy
bench_stop "$busy" TERM 10 || true
bench_table_print "profile --continuous --every 10s at 49 Hz on every CPU, $CONT_SECS s"
bench_finish
