# Shared by scripts/vm/*: which guest kernel, and where its files are cached.
#
# BPFPROF_VM_KERNEL picks the guest's kernel: 6.1 (default; Debian 12's, from the host's apt sources) or
# 5.10 (Debian 11's, from bullseye's, read with apt lists of its own: the host's sources are untouched).
# BPFPROF_VM_DIR overrides the cache directory (default ~/.cache/bpfprof-vm, -5.10 for 5.10).
VM_KERNEL=${BPFPROF_VM_KERNEL:-6.1}
case $VM_KERNEL in
  6.1) VM_SUITE= ;;
  5.10) VM_SUITE=bullseye ;;
  *)
    echo "vm: BPFPROF_VM_KERNEL=$VM_KERNEL: not a guest kernel (6.1 or 5.10)" >&2
    exit 2
    ;;
esac
VM_DIR=${BPFPROF_VM_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/bpfprof-vm${VM_SUITE:+-$VM_KERNEL}}
