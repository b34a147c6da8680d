# shellcheck shell=bash
# Shared helpers of the benchmarks in scripts/bench/ (source it; do not run it).
#
#   source "$(dirname "$0")/lib.sh"
#   bench_init profile              # setup.sh --bench, tmp dir, cleanup trap, results file
#   bench_build_bpfprof             # cargo build --release; $BPFPROF = a private copy of the binary
#   bench_ensure_inferno            # $INFERNO_COLLAPSE_PERF, $INFERNO_FLAMEGRAPH
#   burn=$(bench_cc burn "$BENCH_DIR/burn.c")
#   bench_spawn pid cmd args...     # background job, killed on exit; bench_stop "$pid" INT 30
#   bench_result key value          # machine-readable results (bench_finish writes the file)
#   bench_table_add 'a|b|c' ...; bench_table_print
#   bench_finish
#
# Environment:
#   BENCH_CACHE     built workloads and inferno (default ${XDG_CACHE_HOME:-$HOME/.cache}/bpfprof-bench)
#   BENCH_KEEP_TMP  1: keep the run's temporary directory (perf.data, SVGs, logs) and say where it is
#   BENCH_NO_BUILD  1: use target/release/bpfprof as it is (no cargo build)
#
# Conventions: messages go to stderr ("bench: ..."), tables and results to stdout. Everything started with
# bench_spawn is killed on exit, sysctls changed with bench_sysctl_min are restored.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_REPO=$(cd "$BENCH_DIR/../.." && pwd)
BENCH_CACHE=${BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bpfprof-bench}
BENCH_RESULTS_DIR=$BENCH_DIR/results
BENCH_NCPU=$(getconf _NPROCESSORS_ONLN)
BENCH_CLK_TCK=$(getconf CLK_TCK)
# C workloads: frame pointers everywhere (clang keeps leaf frames too, see /work/shared/MACHINE.md), no
# tail calls (a sibling call drops its caller's frame), symbols and debug info for perf and blazesym.
BENCH_CFLAGS=(-O2 -g -fno-omit-frame-pointer -mno-omit-leaf-frame-pointer -fno-optimize-sibling-calls
  -pthread -Wall -Wextra)

BENCH_PIDS=()
BENCH_SYSCTL_RESTORE=()
BENCH_RESULTS=()
BENCH_TABLE=()
BENCH_T0=${EPOCHREALTIME}

bench_log() { printf 'bench [%6.1fs]: %s\n' "$(bench_sub "$EPOCHREALTIME" "$BENCH_T0")" "$*" >&2; }
bench_warn() { bench_log "WARNING: $*"; }
bench_die() {
  bench_log "ERROR: $*"
  exit 1
}

# --- arithmetic (awk: bash has no floating point) -------------------------------------------------------

bench_sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f\n", a - b }'; }
bench_add() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f\n", a + b }'; }
bench_div() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "nan"; else printf "%.6f\n", a / b }'; }
# Rounds to N decimals: bench_fmt 1.23456 2 -> 1.23
bench_fmt() { awk -v a="$1" -v n="${2:-2}" 'BEGIN { if (a == "nan" || a == "") print "n/a"; else printf "%.*f\n", n, a }'; }
# Median of the arguments (mean of the middle two for an even count).
bench_median() {
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print "nan"; exit }
    if (NR % 2) printf "%.6f\n", v[(NR + 1) / 2]; else printf "%.6f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
bench_min() { printf '%s\n' "$@" | sort -g | head -n1; }
bench_max() { printf '%s\n' "$@" | sort -g | tail -n1; }
# Percent change of $1 over the base $2: bench_pct 105 100 -> 5.000000
bench_pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "nan"; else printf "%.6f\n", (a / b - 1) * 100 }'; }
# Rounds stdin's number to an integer: bench_median 1 2 | bench_int -> 2
bench_int() { awk '{ printf "%.0f\n", $1 }'; }
# 1 if a < b, else 0 (floats)
bench_lt() { awk -v a="$1" -v b="$2" 'BEGIN { print (a < b) ? 1 : 0 }'; }

# --- setup ---------------------------------------------------------------------------------------------

# bench_args "$@": a script's command line. --quick sets BENCH_QUICK=1 (a short smoke run); -h/--help prints
# the script's header comment; anything else is a usage error.
bench_args() {
  BENCH_QUICK=0
  case "${1:-}" in
    --quick) BENCH_QUICK=1 ;;
    "") ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "usage: $0 [--quick]" >&2
      exit 2
      ;;
  esac
}

# bench_init NAME: checks root, installs the peers (scripts/setup.sh --bench), makes $BENCH_TMP, installs the
# cleanup trap, and names the results file ($BENCH_RESULT_FILE, written by bench_finish).
bench_init() {
  BENCH_NAME=$1
  [ "$(id -u)" -eq 0 ] || bench_die "run as root: the benchmarks load BPF programs and run perf -a"
  [ "${BASH_VERSINFO[0]}" -ge 5 ] || bench_die "bash 5 or later is needed (\$EPOCHREALTIME)"
  BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/bpfprof-bench-$BENCH_NAME.XXXXXX")
  trap bench_cleanup EXIT
  # set -e stops at a failed command without a word: say which one.
  set -o errtrace
  trap 'bench_log "ERROR: command failed (status $?) at ${BASH_SOURCE[0]##*/} line $LINENO: $BASH_COMMAND"' ERR
  trap 'bench_log "interrupted"; exit 130' INT
  trap 'bench_log "terminated"; exit 143' TERM
  mkdir -p "$BENCH_CACHE/bin" "$BENCH_RESULTS_DIR" "$BENCH_TMP/bin"
  BENCH_RESULT_FILE=$BENCH_RESULTS_DIR/$BENCH_NAME-$(date +%Y-%m-%d).txt
  cd "$BENCH_TMP" || bench_die "cannot enter $BENCH_TMP" # whatever writes to the working directory, writes here
  bench_log "$BENCH_NAME benchmark: tmp $BENCH_TMP, cache $BENCH_CACHE"
  "$BENCH_REPO/scripts/setup.sh" --bench || bench_die "scripts/setup.sh --bench failed"
  for tool in clang perf awk timeout; do
    command -v "$tool" >/dev/null || bench_die "$tool not found after scripts/setup.sh --bench"
  done
  bench_cc fdwatch "$BENCH_DIR/fdwatch.c" >/dev/null
  FDWATCH=$BENCH_CACHE/bin/fdwatch
}

bench_cleanup() {
  local rc=$? pid i
  trap - EXIT INT TERM ERR
  for pid in "${BENCH_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${BENCH_PIDS[@]}"; do
    for ((i = 0; i < 40; i++)); do
      bench_alive "$pid" || break
      sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  BENCH_PIDS=()
  for ((i = 0; i < ${#BENCH_SYSCTL_RESTORE[@]}; i += 2)); do
    sysctl -qw "${BENCH_SYSCTL_RESTORE[i]}=${BENCH_SYSCTL_RESTORE[i + 1]}" 2>/dev/null ||
      bench_warn "could not restore ${BENCH_SYSCTL_RESTORE[i]}=${BENCH_SYSCTL_RESTORE[i + 1]}"
  done
  if [ -n "${BENCH_TMP:-}" ] && [ -d "$BENCH_TMP" ]; then
    if [ "${BENCH_KEEP_TMP:-0}" = 1 ] || [ "$rc" -ne 0 ]; then
      bench_log "kept $BENCH_TMP (logs, profiles)"
    else
      rm -rf "$BENCH_TMP"
    fi
  fi
  exit "$rc"
}

# bench_build_bpfprof: builds the release binary and copies it, so that a rebuild by someone else during the
# run cannot change the binary being measured. Sets $BPFPROF. cargo waits for a build already in progress.
bench_build_bpfprof() {
  local bin=$BENCH_REPO/target/release/bpfprof
  if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    bench_log "building bpfprof (cargo build --locked --release)"
    (cd "$BENCH_REPO" && cargo build --locked --release 2>"$BENCH_TMP/cargo-build.log") || {
      tail -n 30 "$BENCH_TMP/cargo-build.log" >&2
      bench_die "cargo build --release failed (log above)"
    }
  fi
  [ -x "$bin" ] || bench_die "$bin not found (build it, or unset BENCH_NO_BUILD)"
  cp "$bin" "$BENCH_TMP/bin/bpfprof"
  BPFPROF=$BENCH_TMP/bin/bpfprof
  BPFPROF_COMMIT=$(git -C "$BENCH_REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
  if [ -n "$(git -C "$BENCH_REPO" status --porcelain -- src bpf build.rs Cargo.toml Cargo.lock 2>/dev/null)" ]; then
    BPFPROF_COMMIT="$BPFPROF_COMMIT+dirty"
  fi
  "$BPFPROF" --version >/dev/null || bench_die "$BPFPROF does not run"
}

# bench_ensure_inferno: inferno-collapse-perf and inferno-flamegraph from crates.io, into $BENCH_CACHE.
bench_ensure_inferno() {
  INFERNO_COLLAPSE_PERF=$BENCH_CACHE/bin/inferno-collapse-perf
  INFERNO_FLAMEGRAPH=$BENCH_CACHE/bin/inferno-flamegraph
  if [ ! -x "$INFERNO_COLLAPSE_PERF" ] || [ ! -x "$INFERNO_FLAMEGRAPH" ]; then
    bench_log "installing inferno into $BENCH_CACHE (cargo install --locked inferno)"
    cargo install --locked --root "$BENCH_CACHE" inferno >"$BENCH_TMP/cargo-install.log" 2>&1 || {
      tail -n 30 "$BENCH_TMP/cargo-install.log" >&2
      bench_die "cargo install inferno failed (log above)"
    }
  fi
  # The binaries have no --version: ask cargo's install record.
  INFERNO_VERSION=$(sed -n 's/^"inferno \([^ ]*\) .*/\1/p' "$BENCH_CACHE/.crates.toml" 2>/dev/null | head -n1)
  INFERNO_VERSION=${INFERNO_VERSION:-unknown}
}

# bench_cc NAME SOURCE [EXTRA CFLAGS...]: compiles a C workload with frame pointers into $BENCH_CACHE/bin
# (again only when the source or the flags changed) and prints its path.
bench_cc() {
  local name=$1 src=$2 out stamp want
  shift 2
  out=$BENCH_CACHE/bin/$name
  stamp=$out.flags
  want="clang ${BENCH_CFLAGS[*]} $* $(sha256sum "$src" | cut -c1-16)"
  if [ ! -x "$out" ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    clang "${BENCH_CFLAGS[@]}" "$@" -o "$out.tmp" "$src" 2>"$BENCH_TMP/cc-$name.log" || {
      cat "$BENCH_TMP/cc-$name.log" >&2
      bench_die "compiling $src failed"
    }
    mv "$out.tmp" "$out"
    printf '%s\n' "$want" >"$stamp"
  fi
  printf '%s\n' "$out"
}

# --- processes -----------------------------------------------------------------------------------------

# bench_spawn VAR CMD [ARGS...]: starts CMD in the background (stdin from /dev/null) and stores its PID in
# VAR; it is killed on exit unless reaped with bench_reap or bench_stop. Redirections of the call apply to
# the job:  bench_spawn pid cmd args >out 2>err
bench_spawn() {
  local -n _pid_var=$1
  shift
  "$@" </dev/null &
  _pid_var=$!
  BENCH_PIDS+=("$_pid_var")
}

# bench_alive PID: true while PID runs (a zombie does not count).
bench_alive() {
  local stat
  [ -r "/proc/$1/stat" ] || return 1
  stat=$(<"/proc/$1/stat") 2>/dev/null || return 1
  stat=${stat##*) }
  [ "${stat:0:1}" != Z ] && [ "${stat:0:1}" != X ]
}

# bench_reap PID: waits for PID and returns its exit status (forgets it for the cleanup trap).
bench_reap() {
  local pid=$1 rc=0 p keep=()
  wait "$pid" || rc=$?
  for p in "${BENCH_PIDS[@]}"; do
    [ "$p" = "$pid" ] || keep+=("$p")
  done
  BENCH_PIDS=("${keep[@]}")
  return "$rc"
}

# bench_stop PID SIGNAL TIMEOUT: sends SIGNAL, waits up to TIMEOUT seconds, then SIGKILL; returns the
# exit status of PID (137 if it had to be killed).
bench_stop() {
  local pid=$1 sig=$2 timeout=$3 i
  kill -"$sig" "$pid" 2>/dev/null || true
  for ((i = 0; i < timeout * 20; i++)); do
    bench_alive "$pid" || break
    sleep 0.05
  done
  if bench_alive "$pid"; then
    bench_warn "PID $pid ($(cat "/proc/$pid/comm" 2>/dev/null)) ignored SIG$sig for ${timeout}s: killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  bench_reap "$pid"
}

# bench_wait_sampling PID [TIMEOUT]: waits until PID (a profiler) holds a perf event fd per CPU, i.e. samples.
bench_wait_sampling() {
  "$FDWATCH" -S -n "$BENCH_NCPU" -t "${2:-30}" "$1" >/dev/null
}

# bench_wait_attached TOOL PID OUT: waits until a tracer has attached, by the line it prints then on stdout
# (OUT): bpfprof's header ("Tracing ..."), bpftrace's "Attaching N probes"; dies if it never does.
bench_wait_attached() {
  local tool=$1 pid=$2 out=$3 i
  for ((i = 0; i < 600; i++)); do
    grep -q -e '^Tracing' -e '^Attaching' "$out" 2>/dev/null && return 0
    bench_alive "$pid" || break
    sleep 0.05
  done
  grep -q -e '^Tracing' -e '^Attaching' "$out" 2>/dev/null && return 0
  bench_die "$tool did not attach (its output: $(tail -n 3 "$out" 2>/dev/null))"
}

# bench_bpf_stats NAME_REGEX [MIN_RUNS]: "RUN_TIME_NS RUN_CNT" summed over the loaded BPF programs whose name
# matches NAME_REGEX whole and that ran at least MIN_RUNS times (kernel.bpf_stats_enabled must be 1;
# bpftool shows a program's whole name from its BTF, else the kernel's first 15 characters; it cannot name
# a program's process here).
bench_bpf_stats() {
  bpftool prog show | awk -v re="^($1)$" -v min="${2:-0}" '
    /^[0-9]+:/ { t = 0; c = 0; n = ""
      for (i = 1; i <= NF; i++) { if ($i == "name") n = $(i + 1); if ($i == "run_time_ns") t = $(i + 1); if ($i == "run_cnt") c = $(i + 1) }
      if (n ~ re && c >= min) { T += t; C += c } }
    END { printf "%.0f %.0f\n", T, C }'
}

# bench_proc_cpu PID: CPU seconds PID's live threads have used so far: the scheduler's exact runtime
# (/proc/PID/task/*/schedstat, in ns) where the kernel has it, else utime + stime of /proc/PID/stat (ticks).
bench_proc_cpu() {
  local stat fields
  if [ -r "/proc/$1/schedstat" ]; then
    cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ ns += $1 } END { printf "%.4f\n", ns / 1e9 }'
    return
  fi
  stat=$(<"/proc/$1/stat") 2>/dev/null || {
    echo 0
    return
  }
  read -r -a fields <<<"${stat##*) }"
  # Fields after "(comm) ": 0 state ... 11 utime, 12 stime (proc(5) fields 14 and 15), in clock ticks.
  awk -v u="${fields[11]}" -v s="${fields[12]}" -v hz="$BENCH_CLK_TCK" 'BEGIN { printf "%.2f\n", (u + s) / hz }'
}

# bench_sys_busy: CPU seconds all CPUs have been busy since boot (everything but idle and iowait).
bench_sys_busy() {
  local _ user nice system irq softirq steal
  read -r _ user nice system _ _ irq softirq steal _ </proc/stat  # idle and iowait: not busy
  awk -v t="$((user + nice + system + irq + softirq + steal))" -v hz="$BENCH_CLK_TCK" \
    'BEGIN { printf "%.2f\n", t / hz }'
}

# bench_sysctl_min NAME VALUE: raises sysctl NAME to at least VALUE (the original is restored on exit).
# The kernel lowers kernel.perf_event_max_sample_rate by itself when sampling interrupts take too long, so
# call it before every run that needs the value.
bench_sysctl_min() {
  local name=$1 want=$2 cur i known=0
  cur=$(sysctl -n "$name") || bench_die "cannot read sysctl $name"
  if [ "$cur" -lt "$want" ]; then
    for ((i = 0; i < ${#BENCH_SYSCTL_RESTORE[@]}; i += 2)); do
      [ "${BENCH_SYSCTL_RESTORE[i]}" = "$name" ] && known=1
    done
    [ "$known" = 1 ] || BENCH_SYSCTL_RESTORE+=("$name" "$cur")
    bench_log "sysctl $name is $cur: raising it to $want (restored on exit)"
    sysctl -qw "$name=$want" || bench_die "cannot set sysctl $name=$want"
  fi
}

# bench_sysctl_set NAME VALUE: sets sysctl NAME to VALUE, restored on exit.
bench_sysctl_set() {
  local name=$1 want=$2 cur i known=0
  cur=$(sysctl -n "$name") || bench_die "cannot read sysctl $name"
  for ((i = 0; i < ${#BENCH_SYSCTL_RESTORE[@]}; i += 2)); do
    [ "${BENCH_SYSCTL_RESTORE[i]}" = "$name" ] && known=1
  done
  [ "$known" = 1 ] || BENCH_SYSCTL_RESTORE+=("$name" "$cur")
  sysctl -qw "$name=$want" || bench_die "cannot set sysctl $name=$want"
}

# --- output --------------------------------------------------------------------------------------------

# bench_result KEY VALUE: one machine-readable result ("key value" lines in the results file).
bench_result() { BENCH_RESULTS+=("$1 $2"); }

# bench_table_add 'cell|cell|...' ...: rows of the table to print; the first row is the header.
bench_table_add() { BENCH_TABLE+=("$@"); }

# bench_table_print [TITLE]: prints the collected rows as an aligned table (numbers right-aligned) and
# starts a new table. Also keeps the printed text for the results file.
bench_table_print() {
  local title=${1:-} text
  text=$(printf '%s\n' "${BENCH_TABLE[@]}" | awk -F'|' -v title="$title" '
    { n = NR; for (i = 1; i <= NF; i++) { c[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) }
      if (NF > nf) nf = NF }
    END {
      if (title != "") print title
      for (r = 1; r <= n; r++) {
        line = ""
        for (i = 1; i <= nf; i++) {
          v = c[r, i]
          num = (r > 1 && v ~ /^[-+~<>]?[0-9.]+[%x]?( s)?$/ || v == "n/a")
          cell = num ? sprintf("%*s", w[i], v) : sprintf("%-*s", w[i], v)
          line = line (i > 1 ? "  " : "") cell
        }
        sub(/ +$/, "", line); print line
        if (r == 1) { sep = ""; for (i = 1; i <= nf; i++) sep = sep (i > 1 ? "  " : "") sprintf("%*s", w[i], "") ; gsub(/ /, "-", sep); print sep }
      }
    }')
  printf '%s\n\n' "$text"
  BENCH_PRINTED+=("$text" "")
  BENCH_TABLE=()
}

# bench_finish: writes the results file: a header, the "key value" results, and the printed tables as
# comments.
bench_finish() {
  local file=$BENCH_RESULT_FILE
  {
    echo "# bpfprof benchmark: $BENCH_NAME"
    echo "# written by scripts/bench/$BENCH_NAME.sh; lines: KEY VALUE (seconds, percent, counts); tables below"
    echo "date $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit ${BPFPROF_COMMIT:-unknown}"
    echo "kernel $(uname -r)"
    echo "cpus $BENCH_NCPU"
    echo "cpu_model $(awk -F': ' '/^model name/ { gsub(/ /, "_", $2); print $2; exit }' /proc/cpuinfo)"
    echo "perf_version $(perf --version 2>/dev/null | awk '{ print $NF }')"
    echo "inferno_version ${INFERNO_VERSION:-unknown}"
    printf '%s\n' "${BENCH_RESULTS[@]}"
    echo "script_seconds $(bench_fmt "$(bench_sub "$EPOCHREALTIME" "$BENCH_T0")" 1)"
    echo "#"
    printf '%s\n' "${BENCH_PRINTED[@]}" | sed 's/^/# /; s/ $//'
  } >"$file.tmp"
  mv "$file.tmp" "$file"
  bench_log "results written to ${file#"$BENCH_REPO"/}"
}
BENCH_PRINTED=()
