//! Compiles every bpf/*.bpf.c into a libbpf-rs skeleton in OUT_DIR (one loop, as libbpf-cargo's examples do).
use std::env;
use std::fs;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR set by cargo"));
    let (arch, multiarch) = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => ("x86", "x86_64-linux-gnu"),
        Ok("aarch64") => ("arm64", "aarch64-linux-gnu"),
        Ok(other) => panic!("no vendored vmlinux.h for {other}: add bpf/<arch>/vmlinux.h"),
        Err(_) => ("x86", "x86_64-linux-gnu"),
    };
    println!("cargo:rerun-if-changed=bpf");

    let mut sources: Vec<PathBuf> = fs::read_dir("bpf")
        .expect("bpf/ directory")
        .map(|e| e.expect("bpf/ entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".bpf.c"))
        .collect();
    sources.sort();
    for src in sources {
        let name = src
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".bpf.c"))
            .expect("bpf source name")
            .to_string();
        SkeletonBuilder::new()
            .source(&src)
            // Kept: trace reads ustack.bpf.o's symbols (src/oneliner/ustack.rs).
            .obj(out.join(format!("{name}.bpf.o")))
            .clang_args([
                "-Wall".to_string(),
                "-Werror".to_string(),
                "-Ibpf".to_string(),
                format!("-Ibpf/{arch}"),
                // libbpf's usdt.bpf.h includes <linux/errno.h>, whose <asm/errno.h> a BPF target finds
                // only in the multiarch directory (Debian's linux-libc-dev).
                "-idirafter".to_string(),
                format!("/usr/include/{multiarch}"),
            ])
            .build_and_generate(out.join(format!("{name}.skel.rs")))
            .unwrap_or_else(|e| panic!("building {}: {e:#}", src.display()));
    }
}
