#!/usr/bin/env bash
# Runs the static binary (scripts/build-static.sh) alone in an empty chroot: nothing in it but the binary,
# with /proc, /sys, /sys/kernel/tracing and /sys/fs/bpf mounted (and /tmp, for --svg). Checks that
# `profile -f 2`, `offcpu -f 2`, `funccount t:syscalls:sys_enter_getpid` and a `trace` one-liner run there
# and print what they should, and that `--version` starts quickly. As root.
#
#   scripts/test-static.sh [BINARY]       (default: builds ./dist/bin/bpfprof with scripts/build-static.sh)
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
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount -t tracefs nodev "$root/sys/kernel/tracing"
mount -t bpf bpf "$root/sys/fs/bpf"
[[ -z $(ls -A "$root/bin" | grep -v '^bpfprof$') ]] || { echo "test-static: the chroot is not empty" >&2; exit 1; }

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

# Work to see: a busy loop and the getpid calls of a shell outside the chroot.
(end=$((SECONDS + 4)); while ((SECONDS < end)); do :; done) &
busy=$!
check "profile -f 2" '^[^ ]+(;[^ ]+)* [0-9]+$' profile -f 2
check "offcpu -f 2" '^[^ ]+(;[^ ]+)* [0-9]+$' offcpu -f 2
(sleep 0.5; python3 -c 'import os
for _ in range(1000): os.getpid()') &
check "funccount" 'sys_enter_getpid +[0-9]+' funccount -d 2 't:syscalls:sys_enter_getpid'
check "trace" '^@\[' trace -e 'tracepoint:sched:sched_switch { @[comm] = count(); } interval:s:1 { exit(); }'
check "profile --svg" 'wrote /tmp/cpu.svg|^$' profile --svg /tmp/cpu.svg 1
[[ -s $root/tmp/cpu.svg ]] || { echo "test-static: no /tmp/cpu.svg in the chroot" >&2; fail=1; }
wait "$busy" 2>/dev/null || true

start=$(date +%s%N)
chroot "$root" /bin/bpfprof --version >/dev/null
echo "test-static: --version in $((($(date +%s%N) - start) / 1000000)) ms; $(stat -c %s "$bin") bytes"
exit "$fail"
