#!/usr/bin/env bash
# Prepares, once, a guest for testing bpfprof on a second kernel: Debian's 6.1 kernel (it has kprobes and
# fentry, which this project's CI machine lacks), booted by qemu with software emulation. Idempotent: what
# exists is reused. The host's boot is untouched (the kernel package is unpacked with dpkg -x).
#
#   scripts/vm/prepare.sh            # -> $BPFPROF_VM_DIR (default ~/.cache/bpfprof-vm): vmlinux, initramfs.cpio.gz
#   BPFPROF_VM_KERNEL=5.10 scripts/vm/prepare.sh    # Debian 11's 5.10 instead (lib.sh)
#
# The guest (see init below) loads the virtio and 9p modules, mounts the host's root read-only over 9p,
# mounts proc/sys/devtmpfs/tmpfs/tracefs/bpffs on it, mounts the work directory read-write at the same
# path, chroots, runs one command and reports its exit status; scripts/vm/vm-run boots it.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
mkdir -p "$VM_DIR"
log() { echo "vm-prepare: $*" >&2; }

"$here/../setup.sh" --vm

# apt, on the host's sources (6.1), or on another suite's with lists of its own in the cache.
apt_opts=()
if [[ -n $VM_SUITE ]]; then
  apt_dir=$VM_DIR/apt
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
  printf 'deb http://deb.debian.org/debian %s main\ndeb http://deb.debian.org/debian-security %s-security main\n' \
    "$VM_SUITE" "$VM_SUITE" >"$apt_dir/sources.list"
  apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/nonexistent
    -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o APT::Sandbox::User=root)
fi

# The kernel: the series the suite ships (linux-image-amd64 depends on the current one).
if [[ ! -s $VM_DIR/vmlinux || ! -s $VM_DIR/modules/loop.ko || ! -s $VM_DIR/modules/order ]]; then
  if [[ -n $VM_SUITE ]]; then
    log "reading $VM_SUITE's package lists"
    apt-get "${apt_opts[@]}" update -q >/dev/null || { log "ERROR: apt-get update for $VM_SUITE failed"; exit 1; }
  fi
  pkg=$(apt-cache "${apt_opts[@]}" depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
  [[ -n $pkg ]] || { log "ERROR: apt knows no linux-image-amd64 (run apt-get update)"; exit 1; }
  log "downloading $pkg"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && apt-get "${apt_opts[@]}" download -q "$pkg" >/dev/null 2>&1) || { log "ERROR: apt-get download $pkg failed"; exit 1; }
  dpkg -x "$work"/*.deb "$work/root"
  vmlinuz=$(ls "$work"/root/boot/vmlinuz-*)
  # The uncompressed kernel, for qemu's microvm: the xz stream inside the bzImage.
  offset=$(grep -abo $'\xfd7zXZ\x00' "$vmlinuz" | head -n1 | cut -d: -f1)
  [[ -n $offset ]] || { log "ERROR: no xz stream in $vmlinuz"; exit 1; }
  tail -c +$((offset + 1)) "$vmlinuz" | xz -dc >"$VM_DIR/vmlinux.tmp" 2>/dev/null || true
  [[ -s $VM_DIR/vmlinux.tmp ]] || { log "ERROR: could not decompress $vmlinuz"; exit 1; }
  rm -rf "$VM_DIR/modules"
  mkdir -p "$VM_DIR/modules"
  kmod=$(ls -d "$work"/root/lib/modules/*)
  # Load order matters: each module after what it depends on (the guest loads them as listed in
  # modules/order). netfs is 5.13+; a module built in has no file.
  : >"$VM_DIR/modules/order"
  for m in drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_mmio fs/netfs/netfs \
    fs/fscache/fscache net/9p/9pnet net/9p/9pnet_virtio fs/9p/9p drivers/block/loop; do
    if [[ -f $kmod/kernel/$m.ko ]]; then
      cp "$kmod/kernel/$m.ko" "$VM_DIR/modules/"
      basename "$m" >>"$VM_DIR/modules/order"
    fi
  done
  basename "$kmod" >"$VM_DIR/kernel-version"
  mv "$VM_DIR/vmlinux.tmp" "$VM_DIR/vmlinux"
  rm -f "$VM_DIR/initramfs.cpio.gz"
  log "kernel $(cat "$VM_DIR/kernel-version") ready"
fi

if [[ ! -s $VM_DIR/initramfs.cpio.gz || $here/prepare.sh -nt $VM_DIR/initramfs.cpio.gz ]]; then
  ird=$(mktemp -d)
  mkdir -p "$ird"/{bin,proc,sys,dev,host,modules}
  cp /bin/busybox "$ird/bin/busybox"
  cp "$VM_DIR"/modules/*.ko "$VM_DIR/modules/order" "$ird/modules/"
  cat >"$ird/init" <<'INIT'
#!/bin/busybox sh
# bpfprof's test guest: mount the host's root and the work directory, run bpfprof.script, report.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
# Booted: vm-run waits for this line (a boot that hangs is retried).
echo BPFPROF-VM-UP
for arg in $(cat /proc/cmdline); do
  case $arg in
    bpfprof.work=*) work=${arg#bpfprof.work=} ;;
    bpfprof.script=*) script=${arg#bpfprof.script=} ;;
    bpfprof.dump=*) dump=${arg#bpfprof.dump=} ;;
  esac
done
# Shortly before the host gives up on the guest: where every task waits, on the console.
[ -n "$dump" ] && (sleep "$dump"; echo "vm: still running after $dump s: the tasks' states follow"
  echo 8 >/proc/sys/kernel/printk; echo w >/proc/sysrq-trigger; echo t >/proc/sysrq-trigger) &
# The virtio-mmio devices are found through ACPI (Debian's kernel takes none from the command line).
# loop: biolatency's tests make loop devices.
for m in $(cat /modules/order); do
  insmod /modules/$m.ko || echo "vm: insmod $m failed"
done
opts=trans=virtio,version=9p2000.L,msize=512000,cache=loose
# qemu runs with -no-reboot: a reboot (reboot -f below) ends it.
grep -q bpfprof.debug /proc/cmdline && { cat /proc/cmdline; ls /sys/bus/virtio/devices; }
mount -t 9p -o ro,$opts hostroot /host || { echo "vm: mounting the host's root failed"; reboot -f; }
mount -t proc proc /host/proc
mount -t sysfs sys /host/sys
mount -t devtmpfs dev /host/dev
mount -t tmpfs tmp /host/tmp
mount -t tracefs tracefs /host/sys/kernel/tracing
mount -t bpf bpf /host/sys/fs/bpf
mount -t tmpfs run /host/run
mkdir -p /host/dev/pts && mount -t devpts -o ptmxmode=666 devpts /host/dev/pts
# (Under /tmp, the work directory's mount point is made in the guest's own tmpfs.)
mkdir -p "/host$work"
mount -t 9p -o rw,trans=virtio,version=9p2000.L,msize=512000 work "/host$work" || echo "vm: mounting $work failed"
# The kernel's code symbols where this boot put them (KASLR): vm-run names a hung guest's CPUs' places.
grep ' [tT] ' /proc/kallsyms >"/host$work/.vm-kallsyms" 2>/dev/null
chroot /host /bin/sh -c "cd '$work' && PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin sh '$script'"
echo "BPFPROF-VM-EXIT=$?"
sync
reboot -f
INIT
  chmod +x "$ird/init"
  (cd "$ird" && find . | cpio -o -H newc --quiet | gzip -1) >"$VM_DIR/initramfs.cpio.gz"
  rm -rf "$ird"
  log "initramfs ready"
fi
echo "$VM_DIR"
