#!/usr/bin/env bash
# The main job on a fresh machine: installs what the build needs, builds bpfprof, and writes a whole-system
# CPU flame graph. Usage: scripts/flamegraph.sh [SECONDS] [OUT.svg]   (defaults: 5, ./cpu.svg)
set -euo pipefail

secs=${1:-5}
out=${2:-cpu.svg}
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac # relative to where it was called from
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --locked --release
echo "flamegraph: sampling all CPUs at 99 Hz for $secs s" >&2
target/release/bpfprof profile -F 99 --svg "$out" "$secs"
