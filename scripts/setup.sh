#!/usr/bin/env bash
# Installs the Debian packages bpfprof needs to build, test and benchmark; safe to run again (idempotent).
set -euo pipefail

# Build: clang compiles bpf/*.bpf.c (libbpf's usdt.bpf.h needs asm/errno.h: linux-libc-dev); libbpf-sys builds
# its bundled libbpf (make, pkg-config, libelf, zlib).
# Tests: clang builds the workloads with frame pointers (and USDT probes: sys/sdt.h from systemtap-sdt-dev);
# bpftool checks nothing stays loaded; setpriv drops root; losetup makes loop devices; xz and python3:
# Debian binaries without frame pointers, whose stacks the unwind tests walk; golang-go: `go tool pprof`
# reads back the --pprof profiles; bpftrace shares a hook with two bpfprofs in a fault test; libc6-dbg:
# libc's detached debug file (/usr/lib/debug/.build-id/), whose internal names frames must not show.
# nodejs: JIT code, named from its perf map (--perf-basic-prof).
build_pkgs=(clang llvm make pkg-config gcc libelf-dev zlib1g-dev linux-libc-dev bpftool util-linux systemtap-sdt-dev
  xz-utils python3-minimal golang-go bpftrace libc6-dbg nodejs)
# Benchmarks against the peers (also: bpftool regenerates bpf/x86/vmlinux.h).
extra_pkgs=(linux-perf)
# The second-kernel test guest (scripts/vm/): qemu, a static busybox for its initramfs, cpio, xz; gdb, with
# which scripts/vm/hung-guest says where a hung guest's CPUs are.
vm_pkgs=(qemu-system-x86 busybox-static cpio xz-utils gdb)

want=("${build_pkgs[@]}")
if [ "${1:-}" = "--bench" ] || [ "${BPFPROF_SETUP_ALL:-}" = 1 ]; then
  want+=("${extra_pkgs[@]}")
fi
if [ "${1:-}" = "--vm" ] || [ "${BPFPROF_SETUP_ALL:-}" = 1 ]; then
  want+=("${vm_pkgs[@]}")
fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v cargo >/dev/null || { echo "setup: cargo not found (install Rust with rustup)" >&2; exit 1; }
echo "setup: system packages present" >&2
