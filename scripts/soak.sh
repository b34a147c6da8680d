#!/usr/bin/env bash
# Soak: each tool runs for a long time (10 minutes by default) under a load that starts and ends thousands
# of processes whose stacks keep changing, while its RSS, anonymous memory and CPU time are recorded every
# 10 s. Passes when, for every tool, the anonymous memory after warm-up (the first fifth of the run, half
# of a short one) stays within SOAK_RSS_SLACK_MIB (64) of the warm-up's, the tool exits 0 on Ctrl-C with its report, and every loss it had is said (its
# WARNING lines are printed here). As root.
#
#   scripts/soak.sh [--short] [TOOL...]       TOOLs: profile offcpu hotcold biolatency funccount trace
#
# --short: 40 s a tool, samples every 4 s (CI's form). Settings: SOAK_SECS, SOAK_EVERY, SOAK_RSS_SLACK_MIB,
# BPFPROF_BIN (the binary to soak; default: a release build).
# Prints a table per tool (time, RSS MiB, CPU s, processes started by the load so far) and a summary.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
secs=${SOAK_SECS:-600}
every=${SOAK_EVERY:-10}
if [[ ${1:-} == --short ]]; then
  shift
  secs=${SOAK_SECS:-40}
  every=${SOAK_EVERY:-4}
  SOAK_WARM_DIV=${SOAK_WARM_DIV:-2}
fi
slack=${SOAK_RSS_SLACK_MIB:-64}
# Warm-up: the first fifth (the first half of a short run), while the stack tools' books fill up with the
# stacks they meet (at most --stack-storage-size of them).
warm_div=${SOAK_WARM_DIV:-5}
tools=("$@")
[[ ${#tools[@]} -gt 0 ]] || tools=(profile offcpu hotcold biolatency funccount trace)

"$here/setup.sh" >/dev/null
cd "$repo"
# BPFPROF_BIN: a binary built already (scripts/test.sh soaks the static one); else a release build.
bin=${BPFPROF_BIN:-}
if [[ -z $bin ]]; then
  cargo build --locked --release --quiet
  bin=$repo/target/release/bpfprof
fi
work=$(mktemp -d /tmp/bpfprof-soak.XXXXXX)
loop_dev=""
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [[ -z $loop_dev ]] || losetup -d "$loop_dev" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The load: processes that start and end all the time (a few dozen a second), each with its own stacks:
# xz, python3, sort and a shell, over changing inputs; and block I/O to a loop device for biolatency.
head -c 4000000 /dev/urandom >"$work/data"
truncate -s 64M "$work/disk.img"
loop_dev=$(losetup -f --show "$work/disk.img")
cat >"$work/load.sh" <<'EOF'
#!/usr/bin/env bash
# $1: a data file; $2: a block device; $3: a file counting the processes started.
n=0
while :; do
  for i in 1 2 3 4; do
    head -c $((200000 * i)) "$1" | xz -1 >/dev/null &
    python3 -c "import hashlib; hashlib.sha256(b'x' * $((100000 * i))).hexdigest(); sorted(range($((20000 * i))), key=lambda v: -v)" &
    sort -R "$1" -o /dev/null 2>/dev/null &
    sh -c "x=0; while [ \$x -lt $((2000 * i)) ]; do x=\$((x+1)); done" &
    dd if="$2" of=/dev/null bs=4k count=64 skip=$((RANDOM % 16000)) iflag=direct status=none &
    n=$((n + 6))
  done
  wait
  echo "$n" >"$3"
done
EOF
chmod +x "$work/load.sh"
"$work/load.sh" "$work/data" "$loop_dev" "$work/started" &
pids+=($!)

# args TOOL: the command line that tool soaks with.
args() {
  case $1 in
    profile) echo "profile -F 99 -f" ;;
    offcpu) echo "offcpu -f" ;;
    hotcold) echo "hotcold -f" ;;
    biolatency) echo "biolatency -d ${loop_dev#/dev/} 10" ;;
    funccount) echo "funccount -i 10 t:syscalls:sys_enter_*" ;;
    trace) echo "trace -e t:sched:sched_process_exec{@[comm]=count();}t:sched:sched_switch{@s[kstack(3)]=count();}" ;;
    *) echo "soak: unknown tool $1" >&2; exit 2 ;;
  esac
}

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
# Anonymous memory alone: what a leak grows. RSS also counts the pages of files the tool has mapped while
# it reads them (binaries' symbols and DWARF: tens of MiB for a moment), which the kernel reclaims.
anon_kib() { awk '/^RssAnon:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
cpu_s() { awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

fail=0
summary=()
for tool in "${tools[@]}"; do
  read -r -a words <<<"$(args "$tool")"
  "$bin" "${words[@]}" >"$work/$tool.out" 2>"$work/$tool.err" &
  tpid=$!
  pids+=("$tpid")
  echo "soak: $tool for $secs s (bpfprof ${words[*]})"
  printf '%8s %10s %11s %8s %10s\n' "t (s)" "RSS (MiB)" "anon (MiB)" "CPU (s)" "processes"
  warm_at=$((secs / warm_div))
  warm_anon=0 max_after=0 t=0
  while ((t < secs)); do
    sleep "$every"
    t=$((t + every))
    kill -0 "$tpid" 2>/dev/null || { echo "soak: $tool died: $(tail -n 3 "$work/$tool.err")"; fail=1; break; }
    anon=$(anon_kib "$tpid")
    printf '%8d %10s %11s %8s %10s\n' "$t" "$(mib "$(rss_kib "$tpid")")" "$(mib "$anon")" "$(cpu_s "$tpid")" \
      "$(cat "$work/started" 2>/dev/null || echo 0)"
    if ((t <= warm_at)); then
      warm_anon=$anon
    elif ((anon > max_after)); then
      max_after=$anon
    fi
  done
  kill -INT "$tpid" 2>/dev/null || true
  status=0
  wait "$tpid" || status=$?
  grep '^WARNING' "$work/$tool.err" | sed "s/^/soak: $tool: /" || true
  growth=$(((max_after - warm_anon) / 1024))
  verdict=ok
  if ((status != 0)); then
    verdict="exit $status: $(tail -n 2 "$work/$tool.err")"
    fail=1
  elif ((max_after > 0 && growth > slack)); then
    verdict="anonymous memory grew $growth MiB after warm-up (bound $slack)"
    fail=1
  elif [[ ! -s $work/$tool.out ]]; then
    verdict="no report"
    fail=1
  fi
  summary+=("$(printf '%-11s warm-up anon %6s MiB, max after %6s MiB (+%d MiB), %s' "$tool" \
    "$(mib "$warm_anon")" "$(mib "$max_after")" "$growth" "$verdict")")
  echo "soak: $tool: $(tail -n 1 "$work/$tool.err")"
done
echo "soak: $secs s a tool, $(cat "$work/started" 2>/dev/null || echo 0) processes started by the load"
printf 'soak: %s\n' "${summary[@]}"
exit "$fail"
