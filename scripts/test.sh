#!/usr/bin/env bash
# Runs every test on a fresh machine: installs what the build needs, then unit tests, then the integration
# tests, which load BPF as root and run one at a time (they measure sample ratios on a small, shared machine),
# then the static binary in an empty chroot (scripts/test-static.sh), the soak's short form (scripts/soak.sh
# --short, ~5 min), then the same integration tests on
# other kernels in a VM (scripts/vm/test.sh): Debian's 6.1, which has
# the kprobes and fentry this machine lacks, and Debian 11's 5.10 (no BPF cookies, older CO-RE paths).
#
#   scripts/test.sh            # everything
#   scripts/test.sh --no-vm    # without the VM suites (also: BPFPROF_VM_TESTS=0)
#   BPFPROF_VM_KERNELS=6.1 scripts/test.sh     # the guests to test (default: 6.1 5.10)
set -euo pipefail
cd "$(dirname "$0")/.."
vm=${BPFPROF_VM_TESTS:-1}
[ "${1:-}" = "--no-vm" ] && vm=0

scripts/setup.sh
if [ "$(id -u)" -ne 0 ]; then
  echo "test: the integration tests load BPF programs: run as root (sudo scripts/test.sh)" >&2
  exit 1
fi
cargo build --locked --all-targets
cargo test --locked --bins
cargo test --locked --test integration -- --test-threads=1
# The static binary (scripts/build-static.sh) alone in an empty chroot (BPFPROF_STATIC_TESTS=0 skips it).
if [ "${BPFPROF_STATIC_TESTS:-1}" = 1 ]; then
  scripts/test-static.sh
fi
# The soak's short form (40 s a tool under process churn: RSS flat after warm-up, exit 0 with a report,
# losses said), on the static binary where it was built (BPFPROF_SOAK_TESTS=0 skips it).
if [ "${BPFPROF_SOAK_TESTS:-1}" = 1 ]; then
  soak_bin=""
  [ ! -x dist/bin/bpfprof ] || soak_bin=$PWD/dist/bin/bpfprof
  BPFPROF_BIN=$soak_bin scripts/soak.sh --short
fi
if [ "$vm" = 1 ]; then
  for kernel in ${BPFPROF_VM_KERNELS:-6.1 5.10}; do
    BPFPROF_VM_KERNEL=$kernel scripts/vm/test.sh
  done
fi
