//! Loading BPF programs: privilege and kernel-feature probes, libbpf's log, and per-CPU perf events.
pub mod btf;
pub mod perf;
pub mod stacks;

use std::ffi::CString;
use std::fmt::Write as _;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::sync::Mutex;

use anyhow::{bail, Result};
use libbpf_rs::{Link, MapCore, MapFlags, OpenObject, PrintLevel, Program, ProgramMut};

/// The skeletons libbpf-cargo generated from bpf/*.bpf.c (see build.rs).
pub mod skel {
    #![allow(clippy::all, dead_code, non_camel_case_types, unused_imports)]
    pub mod profile {
        include!(concat!(env!("OUT_DIR"), "/profile.skel.rs"));
    }
    pub mod offcpu {
        include!(concat!(env!("OUT_DIR"), "/offcpu.skel.rs"));
    }
    pub mod biolatency {
        include!(concat!(env!("OUT_DIR"), "/biolatency.skel.rs"));
    }
    pub mod funccount {
        include!(concat!(env!("OUT_DIR"), "/funccount.skel.rs"));
    }
    pub mod ustack {
        include!(concat!(env!("OUT_DIR"), "/ustack.skel.rs"));

        /// The compiled object's ELF bytes (the skeleton's own copy is private), 8-byte aligned as an
        /// ELF reader wants them: trace reads its symbols.
        pub fn object_bytes() -> &'static [u8] {
            #[repr(C, align(8))]
            struct Aligned<T: ?Sized>(T);
            static OBJECT: &Aligned<[u8]> =
                &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/ustack.bpf.o")));
            &OBJECT.0
        }
    }
}

/// libbpf's messages (the verifier's log among them), kept to be shown when a load fails.
static LIBBPF_LOG: Mutex<String> = Mutex::new(String::new());

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Checks, before anything is loaded, what every tool needs: privileges and kernel BTF.
/// Also routes libbpf's log into memory and raises RLIMIT_MEMLOCK for kernels before 5.11.
pub fn prepare() -> Result<()> {
    check_privileges()?;
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        bail!("this kernel has no BTF (/sys/kernel/btf/vmlinux is missing): bpfprof's CO-RE programs need a kernel built with CONFIG_DEBUG_INFO_BTF=y");
    }
    raise_memlock();
    libbpf_rs::set_print(Some((PrintLevel::Debug, capture_libbpf_log)));
    Ok(())
}

fn capture_libbpf_log(level: PrintLevel, msg: String) {
    if level == PrintLevel::Debug && std::env::var_os("BPFPROF_LOG").is_none() {
        return;
    }
    if let Ok(mut log) = LIBBPF_LOG.lock() {
        // Keep the tail: a verifier log can be megabytes.
        if log.len() > 1 << 20 {
            let cut = log.len() - (1 << 19);
            let cut = (cut..log.len())
                .find(|&i| log.is_char_boundary(i))
                .unwrap_or(0);
            log.drain(..cut);
        }
        let _ = write!(log, "{msg}");
    }
}

/// What libbpf said, to print after a failed load: all of it with BPFPROF_LOG=1, else a hint.
pub fn verifier_log_hint(_err: &anyhow::Error) -> Option<String> {
    let log = LIBBPF_LOG.lock().ok()?;
    if log.trim().is_empty() {
        return None;
    }
    if std::env::var_os("BPFPROF_LOG").is_some() {
        Some(format!("libbpf log:\n{}", log.trim_end()))
    } else {
        Some("bpfprof: (run with BPFPROF_LOG=1 to see libbpf's and the verifier's log)".into())
    }
}

/// Checks capabilities, not the user id: root can run without them (containers, setpriv), and then the
/// load would fail with a bare EPERM.
fn check_privileges() -> Result<()> {
    let caps = effective_caps().unwrap_or(0);
    let has = |cap: u32| caps & (1u64 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return Ok(());
    }
    bail!("permission denied: run as root, or with CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN)");
}

fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; newer ones charge the cgroup and ignore it.
fn raise_memlock() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: a valid pointer to an initialised rlimit; failure is harmless on kernels >= 5.11.
    let _ = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
}

/// Turns a libbpf load error into a message that says what failed.
pub fn load_error(what: &str, err: libbpf_rs::Error) -> anyhow::Error {
    anyhow::Error::new(err).context(format!("loading the {what} BPF program failed"))
}

/// Makes sure tracefs is mounted, which attaching a classic tracepoint (`tp/`) needs: libbpf reads the
/// tracepoint's id from /sys/kernel/tracing/events (or the old debugfs path). Mounts it where it is not.
pub fn ensure_tracefs() -> Result<()> {
    let tracing = Path::new("/sys/kernel/tracing");
    if tracing.join("events").exists() || Path::new("/sys/kernel/debug/tracing/events").exists() {
        return Ok(());
    }
    if !tracing.exists() {
        bail!("this kernel has no tracefs (/sys/kernel/tracing is missing)");
    }
    // SAFETY: NUL-terminated constant strings; a null data pointer is allowed for tracefs.
    let ret = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            c"/sys/kernel/tracing".as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if ret != 0 {
        bail!(
            "mounting tracefs on /sys/kernel/tracing failed: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// The kinds of tracepoint hook a program can be loaded with, cheapest first where a tool has a choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hooks {
    /// Classic tracepoints (`tp/`): fixed argument records from tracefs.
    Tp,
    /// BTF-enabled tracepoints (`tp_btf/`, 5.5+): typed arguments.
    TpBtf,
    /// Raw tracepoints (`raw_tp/`, 4.17+): the same arguments, untyped.
    RawTp,
}

impl Hooks {
    pub fn name(self) -> &'static str {
        match self {
            Hooks::Tp => "tp",
            Hooks::TpBtf => "tp_btf",
            Hooks::RawTp => "raw_tp",
        }
    }
}

/// One hook of a tool, written once per kind of tracepoint: the classic variant (None where the tool has
/// none), the BTF one and the raw one, for the tracepoint `category:name`.
pub struct HookProgs<'a, 'o> {
    pub category: &'a str,
    pub name: &'a str,
    pub tp: Option<&'a ProgramMut<'o>>,
    pub btf: &'a ProgramMut<'o>,
    pub raw: &'a ProgramMut<'o>,
}

impl HookProgs<'_, '_> {
    /// Attaches the variant loaded for `hooks`; the error names the tracepoint and `what` was attaching.
    pub fn attach(&self, hooks: Hooks, what: &str) -> Result<Link> {
        let link = match (hooks, self.tp) {
            (Hooks::Tp, Some(tp)) => tp.attach_tracepoint(
                libbpf_rs::TracepointCategory::Custom(self.category.to_string()),
                self.name,
            ),
            (Hooks::Tp, None) => {
                bail!("{what} has no classic-tracepoint program for {}", self.name)
            }
            (Hooks::TpBtf, _) => self.btf.attach_trace(),
            (Hooks::RawTp, _) => self.raw.attach_raw_tracepoint(self.name),
        };
        link.map_err(|e| {
            anyhow::Error::new(e).context(format!(
                "attaching to the {} tracepoint ({what})",
                self.name
            ))
        })
    }
}

/// Loads a tool with the first kind of hook in `order` that the kernel accepts; BPFPROF_HOOKS=tp|tp_btf|raw_tp
/// narrows the choice to one (tests use it to cover each path). Each attempt gets its own object storage.
/// A fallback is said on stderr; when none loads, the error names each attempt's failure.
pub fn load_first_that_works<'o, T>(
    order: &[Hooks],
    storage: &'o mut [MaybeUninit<OpenObject>],
    what: &str,
    mut attempt: impl FnMut(Hooks, &'o mut MaybeUninit<OpenObject>) -> Result<T>,
) -> Result<(T, Hooks)> {
    let chosen: Vec<Hooks> = match std::env::var("BPFPROF_HOOKS").ok().as_deref() {
        None | Some("") => order.to_vec(),
        Some(name) => match order.iter().find(|h| h.name() == name) {
            Some(&h) => vec![h],
            None => {
                let names: Vec<&str> = order.iter().map(|h| h.name()).collect();
                bail!(
                    "BPFPROF_HOOKS={name}: {what} can use {}",
                    names.join(" or ")
                )
            }
        },
    };
    let mut failures = Vec::new();
    for (hooks, obj) in chosen.into_iter().zip(storage.iter_mut()) {
        let result = if hooks == Hooks::Tp {
            ensure_tracefs().and_then(|()| attempt(hooks, obj))
        } else {
            attempt(hooks, obj)
        };
        match result {
            Ok(loaded) => {
                for (h, e) in &failures {
                    eprintln!(
                        "bpfprof: {} hooks unavailable ({e:#}): using {}",
                        Hooks::name(*h),
                        hooks.name()
                    );
                }
                return Ok((loaded, hooks));
            }
            Err(e) => failures.push((hooks, e)),
        }
    }
    let why: Vec<String> = failures
        .iter()
        .map(|(h, e)| format!("{}: {e:#}", h.name()))
        .collect();
    bail!(
        "no {what} tracepoint could be attached ({})",
        why.join("; ")
    )
}

/// Whether the running kernel has the tracepoint `name` with BTF (so tp_btf and raw_tp can attach to it).
pub fn kernel_has_btf_tracepoint(name: &str) -> bool {
    let Ok(name) = CString::new(name) else {
        return false;
    };
    // SAFETY: a NUL-terminated string; libbpf only reads it and the kernel's BTF.
    let id = unsafe {
        libbpf_sys::libbpf_find_vmlinux_btf_id(name.as_ptr(), libbpf_sys::BPF_TRACE_RAW_TP)
    };
    id > 0
}

/// Whether BPF programs can read their attachment's cookie (bpf_get_attach_cookie, 5.15+).
/// BPFPROF_NO_COOKIES=1 says no (tests use it to cover the paths for older kernels on any kernel).
pub fn kernel_has_cookies() -> bool {
    if std::env::var_os("BPFPROF_NO_COOKIES").is_some() {
        return false;
    }
    // SAFETY: libbpf loads a probe program; no pointers but the (null) options.
    let ret = unsafe {
        libbpf_sys::libbpf_probe_bpf_helper(
            libbpf_sys::BPF_PROG_TYPE_KPROBE,
            libbpf_sys::BPF_FUNC_get_attach_cookie,
            std::ptr::null(),
        )
    };
    ret == 1
}

/// The running kernel's version (major, minor), from uname.
pub fn kernel_version() -> Option<(u32, u32)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let mut parts = release.trim().split(['.', '-']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Events the kernel skipped because a program was already running on that CPU (bpf_prog_info's
/// recursion_misses, 5.12+; 0 where the kernel does not count them), summed over the loaded programs.
pub fn recursion_misses(progs: &[&Program<'_>]) -> u64 {
    progs
        .iter()
        .filter(|p| p.autoload())
        .map(|p| {
            let mut info = libbpf_sys::bpf_prog_info::default();
            let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
            // SAFETY: a valid program fd, and an info struct of the length passed.
            let ret = unsafe {
                libbpf_sys::bpf_prog_get_info_by_fd(p.as_fd().as_raw_fd(), &mut info, &mut len)
            };
            if ret == 0 {
                info.recursion_misses
            } else {
                0
            }
        })
        .sum()
}

/// Sums the first `n` u64 slots of a per-CPU array over its CPUs (loss and event counters, per-probe counts).
pub fn sum_percpu(map: &dyn MapCore, n: usize) -> Result<Vec<u64>> {
    let mut out = vec![0u64; n];
    for (i, slot) in out.iter_mut().enumerate() {
        let key = (i as u32).to_ne_bytes();
        if let Some(per_cpu) = map.lookup_percpu(&key, MapFlags::ANY)? {
            *slot = per_cpu
                .iter()
                .map(|v| u64::from_ne_bytes(v[..8].try_into().expect("8-byte value")))
                .sum();
        }
    }
    Ok(out)
}

/// Sums a per-CPU array of u64 counters (a tool's loss and event counters) into N totals.
pub fn read_counters<const N: usize>(map: &dyn MapCore) -> Result<[u64; N]> {
    let mut out = [0u64; N];
    out.copy_from_slice(&sum_percpu(map, N)?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracepoint_arguments_come_from_btf() {
        if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
            return;
        }
        // sched_switch(preempt, prev, next, prev_state) since 5.18; block_rq_issue(rq) since 5.11.
        let btf = btf::Vmlinux::load().expect("vmlinux's BTF");
        if kernel_version().is_some_and(|v| v >= (5, 18)) {
            assert_eq!(btf.tracepoint_args("sched_switch"), Some(4));
            assert_eq!(btf.tracepoint_args("block_rq_issue"), Some(1));
        }
        assert_eq!(btf.tracepoint_args("no_such_tracepoint"), None);
        assert!(kernel_version().is_some_and(|(major, _)| major >= 3));
    }
}
