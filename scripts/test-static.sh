#!/usr/bin/env bash
# Runs the static binary (scripts/build-static.sh) alone in an empty chroot: nothing in it but the binary,
# with /proc, /sys, /sys/kernel/tracing and /sys/fs/bpf mounted (and /tmp, for --svg). Checks that
# `profile -f 2`, `offcpu -f 2`, `funccount t:syscalls:sys_enter_getpid` and a `trace` one-liner run there
# and print what they should, and that `--version` starts quickly. As root.
#
#   scripts/test-static.sh [BINARY]       (default: builds ./dist/bin/bpfprof with scripts/build-static.sh)
#   BPFPROF_STATIC_VM="6.1 5.10" scripts/test-static.sh   # then the same binary in those test guests
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
bin=${1:-}
if [[ -z $bin ]]; then
  "$here/build-static.sh" "$repo/dist" >&2
  bin=$repo/dist/bin/bpfprof
fi
root=$(mktemp -d /tmp/bpfprof-chroot.XXXXXX)
cleanup() {
  for m in sys/kernel/tracing sys/fs/bpf sys proc; do
    umount "$root/$m" 2>/dev/null || true
  done
  rm -rf "$root"
}
trap cleanup EXIT
mkdir -p "$root"/{proc,sys,tmp,bin}
cp "$bin" "$root/bin/bpfprof"
# A workload in the chroot too (static, frame pointers): its frames can be named there. Processes outside
# show as [unknown] (their files are not in the chroot), as perf's would.
gcc -O2 -g -static -fno-omit-frame-pointer -fno-optimize-sibling-calls -o "$root/bin/burn" \
  "$repo/tests/workloads/burn.c"
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount -t tracefs nodev "$root/sys/kernel/tracing"
mount -t bpf bpf "$root/sys/fs/bpf"
[[ -z $(ls -A "$root/bin" | grep -v -e '^bpfprof$' -e '^burn$') ]] || { echo "test-static: the chroot is not empty" >&2; exit 1; }

fail=0
# check NAME PATTERN CMD...: runs CMD in the chroot; its stdout must match PATTERN (grep -E).
check() {
  local name=$1 pattern=$2 out err
  shift 2
  err=$(mktemp)
  if ! out=$(chroot "$root" /bin/bpfprof "$@" 2>"$err"); then
    echo "test-static: $name: failed: $(tail -n 3 "$err")" >&2
    fail=1
  elif ! grep -Eq "$pattern" <<<"$out"; then
    echo "test-static: $name: no line matching /$pattern/ in: $(head -n 5 <<<"$out")" >&2
    fail=1
  else
    echo "test-static: $name: ok ($(wc -l <<<"$out") lines)"
  fi
  rm -f "$err"
}

# Work to see: the workload in the chroot, and getpid calls of a python3 outside it.
chroot "$root" /bin/burn cpu 60 &
busy=$!
check "profile -f 2" '^burn;.*;main;.*hot_two_thirds;spin [0-9]+$' profile -f 2
check "offcpu -f 2" '^.+ [0-9]+$' offcpu -f 2
(sleep 0.5; python3 -c 'import os
for _ in range(1000): os.getpid()') &
check "funccount" 'sys_enter_getpid +[0-9]+' funccount -d 2 't:syscalls:sys_enter_getpid'
check "trace" '^@\[' trace -e 'tracepoint:sched:sched_switch { @[comm] = count(); } interval:s:1 { exit(); }'
check "profile --svg" 'wrote /tmp/cpu.svg|^$' profile --svg /tmp/cpu.svg 1
[[ -s $root/tmp/cpu.svg ]] || { echo "test-static: no /tmp/cpu.svg in the chroot" >&2; fail=1; }
kill "$busy" 2>/dev/null || true
wait "$busy" 2>/dev/null || true

start=$(date +%s%N)
chroot "$root" /bin/bpfprof --version >/dev/null
echo "test-static: --version in $((($(date +%s%N) - start) / 1000000)) ms; $(stat -c %s "$bin") bytes"

# The guests (scripts/vm/): the binary from the work directory, the burn workload copied beside it.
for kernel in ${BPFPROF_STATIC_VM:-}; do
  guest=$repo/target/static-guest
  mkdir -p "$guest"
  cp "$bin" "$guest/bpfprof"
  cp "$root/bin/burn" "$guest/burn"
  cat >"$guest/run.sh" <<'GUEST'
#!/bin/sh
cd "$(dirname "$0")"
./burn cpu 60 &
b=$!
ok=0
./bpfprof profile -f 2 | grep -Eq '^burn;.*hot_two_thirds;spin [0-9]+$' || { echo "guest: profile"; ok=1; }
./bpfprof offcpu -f 2 | grep -Eq '^.+ [0-9]+$' || { echo "guest: offcpu"; ok=1; }
./bpfprof funccount -d 2 't:syscalls:sys_enter_getpid' >/dev/null || { echo "guest: funccount"; ok=1; }
./bpfprof trace -e 't:sched:sched_switch { @[comm] = count(); } interval:s:1 { exit(); }' | grep -q '^@\[' ||
  { echo "guest: trace"; ok=1; }
kill $b
echo "guest: static binary checks exit $ok"
exit $ok
GUEST
  chmod +x "$guest/run.sh"
  out=$(BPFPROF_VM_KERNEL=$kernel "$repo/scripts/vm/vm-run" "$repo" sh "$guest/run.sh" 2>&1 || true)
  grep '^guest:' <<<"$out" || true
  if grep -q '^guest: static binary checks exit 0' <<<"$out"; then
    echo "test-static: the guest on $kernel: ok"
  else
    echo "test-static: the guest on $kernel: failed" >&2
    fail=1
  fi
done
exit "$fail"
