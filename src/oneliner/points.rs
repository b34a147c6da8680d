//! Attach points: a probe's `ATTACH` expanded into the concrete points it names (globs resolved against
//! tracefs, ELF symbol tables, USDT notes, the kernel's function list), each named as bpftrace names it
//! (`probe`, `func`), and attached through a perf event whose BPF cookie is the point's index.
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::ast::{Attach, AttachPoint, TimeUnit};
use super::insn::{self, AttachTo};
use super::usdt::{self, UsdtArg};
use crate::bpf::btf::{KernelFunc, Vmlinux};
use crate::probes::{self, elf, Matcher};

/// One concrete attach point.
#[derive(Clone, Debug)]
pub struct Point {
    /// What `probe` prints: `tracepoint:syscalls:sys_enter_read`, `uprobe:/bin/bash:readline`...
    pub probe: String,
    /// What `func` prints (functions only).
    pub func: String,
    pub how: How,
}

#[derive(Clone, Debug)]
pub enum How {
    /// BEGIN, END: run once, not attached.
    Special,
    Tracepoint {
        category: String,
        event: String,
    },
    Uprobe {
        path: PathBuf,
        offset: u64,
        ret: bool,
        /// The USDT semaphore's file offset, 0 for none.
        semaphore: u64,
        /// USDT probes: where each argument is.
        usdt: Option<Vec<UsdtArg>>,
    },
    Kprobe {
        func: String,
        ret: bool,
    },
    /// fentry/fexit: one program per function, loaded for it.
    Fentry {
        func: KernelFunc,
        ret: bool,
    },
    Timer {
        profile: bool,
        unit: TimeUnit,
        n: u64,
    },
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn unit_name(u: TimeUnit) -> &'static str {
    match u {
        TimeUnit::Hz => "hz",
        TimeUnit::S => "s",
        TimeUnit::Ms => "ms",
        TimeUnit::Us => "us",
    }
}

/// The concrete points of one attach point. `pid` (-p) picks which process's libraries a library name
/// means.
pub fn expand(a: &AttachPoint, pid: Option<u32>) -> Result<Vec<Point>> {
    let point = |probe: String, func: &str, how: How| Point {
        probe,
        func: func.to_string(),
        how,
    };
    Ok(match &a.kind {
        Attach::Begin => vec![point("BEGIN".into(), "", How::Special)],
        Attach::End => vec![point("END".into(), "", How::Special)],
        Attach::Tracepoint { category, event } => {
            let names = if has_glob(category) || has_glob(event) {
                probes::tracepoints(
                    &Matcher::new(category, false)?,
                    &Matcher::new(event, false)?,
                )?
            } else {
                vec![(category.clone(), event.clone())]
            };
            if names.is_empty() {
                bail!("{}: no tracepoint matches", a.raw);
            }
            names
                .into_iter()
                .map(|(c, e)| {
                    point(
                        format!("tracepoint:{c}:{e}"),
                        "",
                        How::Tracepoint {
                            category: c,
                            event: e,
                        },
                    )
                })
                .collect()
        }
        Attach::Profile { unit, n } | Attach::Interval { unit, n } => {
            let profile = matches!(a.kind, Attach::Profile { .. });
            let kind = if profile { "profile" } else { "interval" };
            vec![point(
                format!("{kind}:{}:{n}", unit_name(*unit)),
                "",
                How::Timer {
                    profile,
                    unit: *unit,
                    n: *n,
                },
            )]
        }
        Attach::Uprobe { target, func, ret } => {
            let path = probes::libs::resolve(target, pid).with_context(|| a.raw.clone())?;
            let found = elf::functions(&path, &Matcher::new(func, false)?)?;
            if found.points.is_empty() {
                // glibc 2.34 moved libpthread's, libdl's and librt's functions into libc, leaving the
                // old names as stubs (bpftrace attaches there to nothing and stays silent).
                let in_libc = || {
                    probes::libs::resolve("libc", pid)
                        .ok()
                        .filter(|libc| *libc != path)
                        .and_then(|libc| {
                            let m = Matcher::new(func, false).ok()?;
                            let f = elf::functions(&libc, &m).ok()?;
                            (!f.points.is_empty()).then_some(libc)
                        })
                };
                let why = if found.stripped {
                    " (the file has no symbols: it is stripped)".to_string()
                } else if let Some(libc) = in_libc() {
                    format!(" (libc has it: uprobe:{}:{func})", libc.display())
                } else {
                    String::new()
                };
                bail!(
                    "{}: no function matches {func:?} in {}{why}",
                    a.raw,
                    path.display()
                );
            }
            let kind = if *ret { "uretprobe" } else { "uprobe" };
            found
                .points
                .into_iter()
                .map(|p| {
                    point(
                        format!("{kind}:{}:{}", path.display(), p.name),
                        &p.name,
                        How::Uprobe {
                            path: path.clone(),
                            offset: p.offset,
                            ret: *ret,
                            semaphore: 0,
                            usdt: None,
                        },
                    )
                })
                .collect()
        }
        Attach::Usdt { target, probe } => {
            let path = probes::libs::resolve(target, pid).with_context(|| a.raw.clone())?;
            let sites = elf::usdt_sites(&path, &Matcher::new(probe, false)?)?;
            if sites.is_empty() {
                bail!(
                    "{}: no USDT probe matches {probe:?} in {}",
                    a.raw,
                    path.display()
                );
            }
            let mut out = Vec::new();
            for s in sites {
                let args = usdt::parse(&s.args).with_context(|| {
                    format!("{}: the arguments of {}:{}", a.raw, s.provider, s.name)
                })?;
                out.push(point(
                    format!("usdt:{}:{}:{}", path.display(), s.provider, s.name),
                    &s.name,
                    How::Uprobe {
                        path: path.clone(),
                        offset: s.offset,
                        ret: false,
                        semaphore: s.semaphore,
                        usdt: Some(args),
                    },
                ));
            }
            out
        }
        Attach::Kprobe { func, ret } | Attach::Fentry { func, ret } => {
            let fentry = matches!(a.kind, Attach::Fentry { .. });
            // kprobes where the kernel has them (fentry: when asked for); else fentry, if it works.
            // BPFPROF_NO_KPROBES=1 takes the fentry path where kprobes exist (to test it).
            let use_fentry = fentry
                || !probes::kernel_has_kprobes()
                || std::env::var_os("BPFPROF_NO_KPROBES").is_some();
            if use_fentry {
                if let Err(why) = fentry_works() {
                    let what = if fentry {
                        format!("fentry/fexit do not work on this kernel: {why}")
                    } else {
                        let mut like = probes::tracepoints_like(func);
                        if *ret {
                            // A return probe's stand-in is the exit tracepoint (it has `ret`).
                            for n in &mut like {
                                *n = n.replace(":sys_enter_", ":sys_exit_");
                            }
                            like.dedup();
                        }
                        let hint = if like.is_empty() {
                            "tracepoints may serve instead: see bpfprof trace -l 'tracepoint:*:*'"
                                .to_string()
                        } else {
                            let shown: Vec<&str> =
                                like.iter().take(4).map(String::as_str).collect();
                            format!("tracepoints that may serve instead: {}", shown.join(", "))
                        };
                        format!("tracing kernel functions needs kprobes or fentry, and this kernel has neither (CONFIG_KPROBES is off: /sys/bus/event_source/devices/kprobe is missing; {why}); {hint}")
                    };
                    bail!("{}: {what}", a.raw);
                }
            }
            let funcs = if has_glob(func) {
                probes::kernel_functions(&Matcher::new(func, false)?)?
            } else {
                vec![func.clone()]
            };
            if funcs.is_empty() {
                bail!("{}: no kernel function matches", a.raw);
            }
            let kind = match (fentry, ret) {
                (false, false) => "kprobe",
                (false, true) => "kretprobe",
                (true, false) => "fentry",
                (true, true) => "fexit",
            };
            let vmlinux = if use_fentry {
                Some(Vmlinux::load()?)
            } else {
                None
            };
            let mut out = Vec::new();
            for f in funcs {
                let how = match &vmlinux {
                    Some(btf) => match btf.func(&f) {
                        Ok(k) => How::Fentry { func: k, ret: *ret },
                        // A glob's matches include functions BTF does not describe (modules, some
                        // static ones): those are left out; a function named alone is an error.
                        Err(_) if has_glob(func) => continue,
                        Err(e) => return Err(e.context(a.raw.clone())),
                    },
                    None => How::Kprobe {
                        func: f.clone(),
                        ret: *ret,
                    },
                };
                out.push(point(format!("{kind}:{f}"), &f, how));
            }
            if out.is_empty() {
                bail!("{}: no matching kernel function is described by BTF", a.raw);
            }
            out
        }
    })
}

/// Whether fentry programs load here: once per run, with a do-nothing program for a function every
/// kernel has. Err says why not (this machine's kernel refuses them with EPERM).
fn fentry_works() -> Result<(), String> {
    static WORKS: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    WORKS
        .get_or_init(|| {
            let btf = Vmlinux::load().map_err(|e| e.to_string())?;
            let f = btf.func("do_nanosleep").map_err(|e| e.to_string())?;
            let mut a = insn::Asm::new();
            a.mov_imm(insn::R0, 0);
            a.exit();
            let insns = a.finish().map_err(|e| e.to_string())?;
            insn::load_for(
                libbpf_sys::BPF_PROG_TYPE_TRACING,
                Some(AttachTo {
                    attach_type: libbpf_sys::BPF_TRACE_FENTRY,
                    btf_id: f.btf_id,
                }),
                "bpfprof_probe",
                &insns,
                None,
            )
            .map(drop)
            .map_err(|e| {
                let e = format!("{e:#}");
                format!(
                    "a test fentry program is refused: {}",
                    e.trim_start_matches("loading failed: ")
                )
            })
        })
        .clone()
}

/// What a fentry/fexit point's program is loaded for.
pub fn attach_to(how: &How) -> Option<AttachTo> {
    match how {
        How::Fentry { func, ret } => Some(AttachTo {
            attach_type: if *ret {
                libbpf_sys::BPF_TRACE_FEXIT
            } else {
                libbpf_sys::BPF_TRACE_FENTRY
            },
            btf_id: func.btf_id,
        }),
        _ => None,
    }
}

/// Attaches a fentry/fexit program (loaded for its function): the link keeps it attached.
pub fn attach_tracing(prog: &OwnedFd, how: &How) -> Result<OwnedFd> {
    let Some(to) = attach_to(how) else {
        bail!("internal error: not a fentry/fexit point");
    };
    // SAFETY: a valid program fd; no target fd or options for fentry/fexit.
    let fd = unsafe {
        libbpf_sys::bpf_link_create(prog.as_raw_fd(), 0, to.attach_type, std::ptr::null())
    };
    if fd < 0 {
        return Err(std::io::Error::from_raw_os_error(-fd).into());
    }
    // SAFETY: a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The BPF program type that runs at a point.
pub fn prog_type(how: &How) -> libbpf_sys::bpf_prog_type {
    match how {
        How::Special => libbpf_sys::BPF_PROG_TYPE_RAW_TRACEPOINT,
        How::Tracepoint { .. } => libbpf_sys::BPF_PROG_TYPE_TRACEPOINT,
        How::Uprobe { .. } | How::Kprobe { .. } => libbpf_sys::BPF_PROG_TYPE_KPROBE,
        How::Fentry { .. } => libbpf_sys::BPF_PROG_TYPE_TRACING,
        How::Timer { .. } => libbpf_sys::BPF_PROG_TYPE_PERF_EVENT,
    }
}

fn perf_event_open(attr: &libbpf_sys::perf_event_attr, pid: i32, cpu: i32) -> Result<OwnedFd> {
    // SAFETY: a valid, sized attr whose string pointers (config1) outlive the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr as *const libbpf_sys::perf_event_attr,
            pid,
            cpu,
            -1,
            8u64, // PERF_FLAG_FD_CLOEXEC
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn read_trimmed(path: &str) -> Result<String> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("reading {path}"))?
        .trim()
        .to_string())
}

/// A dynamic PMU's type and its `retprobe` bit (`config:0`).
fn pmu(name: &str) -> Result<(u32, u32)> {
    let base = format!("/sys/bus/event_source/devices/{name}");
    let ty = read_trimmed(&format!("{base}/type"))?
        .parse()
        .with_context(|| format!("{base}/type"))?;
    let bit = read_trimmed(&format!("{base}/format/retprobe"))
        .ok()
        .and_then(|f| f.strip_prefix("config:").and_then(|b| b.parse().ok()))
        .unwrap_or(0);
    Ok((ty, bit))
}

fn attr(type_: u32, config: u64) -> libbpf_sys::perf_event_attr {
    libbpf_sys::perf_event_attr {
        type_,
        size: std::mem::size_of::<libbpf_sys::perf_event_attr>() as u32,
        config,
        ..Default::default()
    }
}

/// Opens the perf events of a point (timers: one per CPU, intervals: one). `pid` limits uprobes to one
/// process.
pub fn open_events(p: &Point, pid: Option<u32>) -> Result<Vec<OwnedFd>> {
    let what = || format!("attaching {}", p.probe);
    match &p.how {
        How::Special | How::Fentry { .. } => Ok(Vec::new()),
        How::Tracepoint { category, event } => {
            let path = format!("/sys/kernel/tracing/events/{category}/{event}/id");
            let id: u64 = read_trimmed(&path)
                .with_context(|| format!("no tracepoint {category}:{event}"))?
                .parse()
                .with_context(|| format!("reading {path}"))?;
            let mut a = attr(libbpf_sys::PERF_TYPE_TRACEPOINT, id);
            a.__bindgen_anon_1.sample_period = 1;
            a.__bindgen_anon_2.wakeup_events = 1;
            Ok(vec![perf_event_open(&a, -1, 0).with_context(what)?])
        }
        How::Uprobe {
            path,
            offset,
            ret,
            semaphore,
            ..
        } => {
            let (ty, bit) = pmu("uprobe")?;
            let cpath = CString::new(path.as_os_str().as_encoded_bytes())?;
            let mut config = if *ret { 1u64 << bit } else { 0 };
            config |= semaphore << 32;
            let mut a = attr(ty, config);
            a.__bindgen_anon_3.config1 = cpath.as_ptr() as u64;
            a.__bindgen_anon_4.config2 = *offset;
            a.__bindgen_anon_1.sample_period = 1;
            let (pid, cpu) = match pid {
                Some(p) => (p as i32, -1),
                None => (-1, 0),
            };
            Ok(vec![perf_event_open(&a, pid, cpu).with_context(what)?])
        }
        How::Kprobe { func, ret } => {
            let (ty, bit) = pmu("kprobe")?;
            let cfunc = CString::new(func.as_str())?;
            let mut a = attr(ty, if *ret { 1u64 << bit } else { 0 });
            a.__bindgen_anon_3.config1 = cfunc.as_ptr() as u64;
            a.__bindgen_anon_4.config2 = 0;
            a.__bindgen_anon_1.sample_period = 1;
            Ok(vec![perf_event_open(&a, -1, 0).with_context(what)?])
        }
        How::Timer { profile, unit, n } => {
            let online = crate::bpf::perf::online_cpus()?;
            let cpus: Vec<u32> = if *profile {
                online
            } else {
                online.first().copied().into_iter().collect()
            };
            let mut out = Vec::new();
            for cpu in cpus {
                let mut a = attr(
                    libbpf_sys::PERF_TYPE_SOFTWARE,
                    libbpf_sys::PERF_COUNT_SW_CPU_CLOCK as u64,
                );
                if *unit == TimeUnit::Hz && *profile {
                    a.set_freq(1);
                    a.__bindgen_anon_1.sample_freq = *n;
                } else {
                    a.__bindgen_anon_1.sample_period = period_ns(*unit, *n);
                }
                out.push(perf_event_open(&a, -1, cpu as i32).with_context(|| {
                    format!("opening the cpu-clock event of {} on CPU {cpu}", p.probe)
                })?);
            }
            Ok(out)
        }
    }
}

fn period_ns(unit: TimeUnit, n: u64) -> u64 {
    match unit {
        TimeUnit::Hz => 1_000_000_000 / n.max(1),
        TimeUnit::S => n * 1_000_000_000,
        TimeUnit::Ms => n * 1_000_000,
        TimeUnit::Us => n * 1_000,
    }
}

/// Attaches a program to a perf event with a BPF cookie (a link: closing it, or the event, detaches).
/// Kernels before 5.15 have no cookies: there the program is attached by ioctl, and `needs_cookie` says
/// whether the program would then read a wrong one.
pub fn attach(
    prog: &OwnedFd,
    event: &OwnedFd,
    cookie: u64,
    needs_cookie: bool,
) -> Result<Option<OwnedFd>> {
    let mut opts = libbpf_sys::bpf_link_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_link_create_opts>() as _,
        ..Default::default()
    };
    opts.__bindgen_anon_1.perf_event.bpf_cookie = cookie;
    // SAFETY: valid fds and sized options.
    let fd = unsafe {
        libbpf_sys::bpf_link_create(
            prog.as_raw_fd(),
            event.as_raw_fd(),
            libbpf_sys::BPF_PERF_EVENT,
            &opts,
        )
    };
    if fd >= 0 {
        // SAFETY: a new fd that nothing else owns.
        return Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }));
    }
    let err = std::io::Error::from_raw_os_error(-fd);
    if needs_cookie {
        bail!("attaching with a BPF cookie (kernel 5.15 or later) failed: {err}");
    }
    const PERF_EVENT_IOC_SET_BPF: u64 = 0x4004_2408;
    const PERF_EVENT_IOC_ENABLE: u64 = 0x2400;
    // SAFETY: valid fds; the ioctls take an int argument.
    unsafe {
        if libc::ioctl(
            event.as_raw_fd(),
            PERF_EVENT_IOC_SET_BPF as _,
            prog.as_raw_fd(),
        ) != 0
        {
            return Err(std::io::Error::last_os_error())
                .context("attaching a program to a perf event");
        }
        if libc::ioctl(event.as_raw_fd(), PERF_EVENT_IOC_ENABLE as _, 0) != 0 {
            return Err(std::io::Error::last_os_error()).context("enabling a perf event");
        }
    }
    Ok(None)
}
