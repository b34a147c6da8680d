//! Finding the file a user probe names, as bcc does: a path, a library name (`c` -> libc) in the traced
//! process's mappings or the dynamic linker's cache, or a program on PATH.
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Result};

/// The file behind `lib`: a path as given (it must exist); else, for `-p PID`, a library of that name mapped
/// into the process (`libNAME.so...` or `libNAME-...`); else the dynamic linker's cache (`ldconfig -p`);
/// else a program of that name on PATH.
pub fn resolve(lib: &str, pid: Option<u32>) -> Result<PathBuf> {
    if lib.contains('/') {
        let p = Path::new(lib);
        if !p.exists() {
            bail!("no such file: {lib}");
        }
        return Ok(std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()));
    }
    if let Some(pid) = pid {
        if let Some(p) = in_maps(lib, pid) {
            return Ok(p);
        }
    }
    if let Some(p) = in_ld_cache(lib) {
        return Ok(p);
    }
    if let Some(p) = on_path(lib) {
        return Ok(p);
    }
    bail!("no library or program named {lib:?} (not lib{lib}.so in the linker's cache, not on PATH): give its path")
}

/// Whether a file name is the library `lib`: `libLIB.so`, `libLIB.so.6`, `libLIB-2.36.so`, or `LIB` itself.
fn names_library(file: &str, lib: &str) -> bool {
    // `libc` as well as `c` (bpftrace's spelling).
    let lib = lib
        .strip_prefix("lib")
        .filter(|l| !l.is_empty() && !l.contains(".so"))
        .unwrap_or(lib);
    let stem = format!("lib{lib}");
    file == lib
        || file.strip_prefix(&stem).is_some_and(|rest| {
            rest.starts_with(".so") || (rest.starts_with('-') && rest.contains(".so"))
        })
}

fn in_maps(lib: &str, pid: u32) -> Option<PathBuf> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    maps.lines().find_map(|line| {
        let path = line.split_whitespace().nth(5)?;
        let file = Path::new(path).file_name()?.to_str()?;
        names_library(file, lib).then(|| {
            // The process's view of the file (it may live in another mount namespace).
            let root = PathBuf::from(format!("/proc/{pid}/root{path}"));
            if root.exists() {
                root
            } else {
                PathBuf::from(path)
            }
        })
    })
}

fn in_ld_cache(lib: &str) -> Option<PathBuf> {
    let out = Command::new("ldconfig").arg("-p").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let arch = if cfg!(target_arch = "x86_64") {
        "x86-64"
    } else {
        "AArch64"
    };
    let mut fallback = None;
    for line in text.lines().skip(1) {
        // "\tlibc.so.6 (libc6,x86-64) => /lib/x86_64-linux-gnu/libc.so.6"
        let Some((left, path)) = line.trim().split_once(" => ") else {
            continue;
        };
        let file = left.split_whitespace().next().unwrap_or("");
        if !names_library(file, lib) {
            continue;
        }
        if left.contains(arch) {
            return Some(PathBuf::from(path));
        }
        fallback.get_or_insert_with(|| PathBuf::from(path));
    }
    fallback
}

/// A program of that name on PATH.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_names() {
        assert!(names_library("libc.so.6", "c"));
        assert!(names_library("libpthread-2.31.so", "pthread"));
        assert!(names_library("libc.so", "c"));
        assert!(!names_library("libcap.so.2", "c"));
        assert!(!names_library("libc-dev", "c"));
    }

    #[test]
    fn libc_resolves_and_missing_names_fail() {
        let libc = resolve("c", None).unwrap();
        assert!(libc.to_string_lossy().contains("libc.so"), "{libc:?}");
        assert!(resolve("no_such_library_xyz", None).is_err());
        assert!(resolve("/no/such/file", None).is_err());
    }
}
