#!/usr/bin/env bash
# Builds one fully static x86_64 bpfprof, which runs on a host with none of the build's libraries (no libelf,
# zlib or glibc needed there: libbpf, libelf and zlib are linked from their static archives, glibc with
# crt-static), and installs it with shell completions and man pages generated from its clap definitions.
#
#   scripts/build-static.sh [PREFIX]      (default PREFIX: ./dist)
#
# Writes PREFIX/bin/bpfprof (debug info stripped), PREFIX/share/bash-completion/completions/bpfprof,
# PREFIX/share/zsh/site-functions/_bpfprof, PREFIX/share/fish/vendor_completions.d/bpfprof.fish and
# PREFIX/share/man/man1/bpfprof*.1; prints the binary's size and checks that it needs no shared library.
# Installs the Debian packages it needs itself (scripts/setup.sh: libelf-dev and zlib1g-dev carry the
# static archives).
#
# Static glibc resolves host names by loading the host's NSS modules (libnss_files, libnss_dns) of the
# build's glibc version: on a host without them, give --push an address (http://10.0.0.5:4040).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
prefix=${1:-$repo/dist}
"$here/setup.sh"
cd "$repo"

target=x86_64-unknown-linux-gnu
# The target named explicitly: crt-static then applies to bpfprof only, not to build scripts.
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  LIBBPF_SYS_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu \
  cargo build --locked --release --features static --target "$target"
bin=target/$target/release/bpfprof

if readelf -d "$bin" 2>/dev/null | grep -q 'NEEDED'; then
  echo "build-static: $bin still needs shared libraries:" >&2
  readelf -d "$bin" | grep NEEDED >&2
  exit 1
fi
if readelf -l "$bin" | grep -q 'INTERP'; then
  echo "build-static: $bin asks for a dynamic loader" >&2
  exit 1
fi

install -d "$prefix/bin" "$prefix/share/bash-completion/completions" "$prefix/share/zsh/site-functions" \
  "$prefix/share/fish/vendor_completions.d" "$prefix/share/man/man1"
objcopy --strip-debug "$bin" "$prefix/bin/bpfprof"
chmod 755 "$prefix/bin/bpfprof"
"$prefix/bin/bpfprof" completions bash >"$prefix/share/bash-completion/completions/bpfprof"
"$prefix/bin/bpfprof" completions zsh >"$prefix/share/zsh/site-functions/_bpfprof"
"$prefix/bin/bpfprof" completions fish >"$prefix/share/fish/vendor_completions.d/bpfprof.fish"
"$prefix/bin/bpfprof" manpages "$prefix/share/man/man1"

size=$(stat -c %s "$prefix/bin/bpfprof")
echo "build-static: $prefix/bin/bpfprof: static, $((size / 1024)) KiB ($(ls "$prefix/share/man/man1" | wc -l) man pages, bash/zsh/fish completions)"
