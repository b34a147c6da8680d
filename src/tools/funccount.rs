//! `funccount`: counts calls of functions, tracepoints and USDT probes matched by a pattern, as bcc's
//! funccount, from one BPF program per kind of probe (bpf/funccount.bpf.c) and a per-CPU counter per probe
//! point, found by its BPF cookie.
use std::mem::MaybeUninit;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{
    KprobeMultiOpts, KprobeOpts, Link, MapCore, MapFlags, OpenObject, TracepointCategory,
    TracepointOpts, UprobeMultiOpts, UprobeOpts, UsdtOpts,
};
use serde_json::json;

use crate::bpf::skel::funccount::{FunccountSkel, FunccountSkelBuilder};
use crate::bpf::{self};
use crate::probes::{self, elf, libs, Matcher, Target};
use crate::util::{drop_concurrently, local_time, wait_until, write_stdout, StopFlag};

/// Everything funccount needs to know, free of clap.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FunccountConfig {
    pub pattern: String,
    /// -r: the name part is a regular expression.
    pub regex: bool,
    /// -p: count calls in this process only.
    pub pid: Option<u32>,
    /// -c: count calls on this CPU only.
    pub cpu: Option<u32>,
    /// -i: print (and start again) every interval.
    pub interval: Option<Duration>,
    /// -d: stop after this long.
    pub duration: Option<Duration>,
    /// -T: a timestamp line before each output.
    pub timestamp: bool,
    /// --json: one object per output.
    pub json: bool,
    /// --max-probes: refuse patterns matching more probe points.
    pub max_probes: usize,
}

/// The probe points a pattern resolved to, all of one kind.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Points {
    Tracepoints(Vec<(String, String)>),
    /// Functions in one file (offsets), and the pid to attach for (-1: every process).
    User(PathBuf, Vec<probes::UserPoint>),
    Usdt(PathBuf, Vec<elf::UsdtProbe>),
    Kernel(Vec<String>),
}

impl Points {
    fn len(&self) -> usize {
        match self {
            Points::Tracepoints(v) => v.len(),
            Points::User(_, v) => v.len(),
            Points::Usdt(_, v) => v.len(),
            Points::Kernel(v) => v.len(),
        }
    }

    /// The names printed in the FUNC column, by probe index.
    fn names(&self) -> Vec<String> {
        match self {
            Points::Tracepoints(v) => v.iter().map(|(c, e)| format!("{c}:{e}")).collect(),
            Points::User(_, v) => v.iter().map(|p| p.name.clone()).collect(),
            Points::Usdt(_, v) => v
                .iter()
                .map(|p| format!("{}:{}", p.provider, p.name))
                .collect(),
            Points::Kernel(v) => v.clone(),
        }
    }
}

/// Resolves the pattern to probe points before anything is loaded; refuses an empty match, a missing kernel
/// feature, and (unless raised) a match above the limit. Also returns warnings for stderr.
fn resolve(cfg: &FunccountConfig) -> Result<(Points, Vec<String>)> {
    let target = Target::parse(&cfg.pattern)?;
    let mut warnings = Vec::new();
    let points = match &target {
        Target::Tracepoint { subsys, event } => Points::Tracepoints(probes::tracepoints(
            &Matcher::new(subsys, cfg.regex)?,
            &Matcher::new(event, cfg.regex)?,
        )?),
        Target::User { lib, func } => {
            let path = libs::resolve(lib, cfg.pid)?;
            let found = elf::functions(&path, &Matcher::new(func, cfg.regex)?)?;
            if found.stripped {
                bail!(
                    "{} has no function symbols (stripped?): nothing to match {func:?} against",
                    path.display()
                );
            }
            if !found.unresolved_ifuncs.is_empty() {
                let n = found.unresolved_ifuncs.len();
                let shown: Vec<&str> = found
                    .unresolved_ifuncs
                    .iter()
                    .take(5)
                    .map(String::as_str)
                    .collect();
                let more = if n > 5 { ", ..." } else { "" };
                warnings.push(format!(
                    "WARNING: {n} IFUNCs not counted ({}{more}): their implementation could not be found (only libraries bpfprof itself has loaded, such as libc, are resolved)",
                    shown.join(", ")
                ));
            }
            warn_if_not_mapped(cfg.pid, &path, &mut warnings);
            Points::User(path, found.points)
        }
        Target::Usdt { lib, probe } => {
            let path = libs::resolve(lib, cfg.pid)?;
            let found = elf::usdt_probes(&path, &Matcher::new(probe, cfg.regex)?)?;
            warn_if_not_mapped(cfg.pid, &path, &mut warnings);
            Points::Usdt(path, found)
        }
        Target::Kernel { func } => {
            if !probes::kernel_has_kprobes() {
                bail!(
                    "{}",
                    probes::kprobes_missing("counting kernel functions", func)
                );
            }
            Points::Kernel(probes::kernel_functions(&Matcher::new(func, cfg.regex)?)?)
        }
    };
    let what = match &points {
        Points::Tracepoints(_) => "tracepoints".to_string(),
        Points::User(p, _) => format!("functions in {}", p.display()),
        Points::Usdt(p, _) => format!("USDT probes in {}", p.display()),
        Points::Kernel(_) => "kernel functions".to_string(),
    };
    if points.len() == 0 {
        bail!("no {what} match {:?}", cfg.pattern);
    }
    if points.len() > cfg.max_probes {
        bail!(
            "{} {what} match {:?}: more than --max-probes {} (raise it to attach them all)",
            points.len(),
            cfg.pattern,
            cfg.max_probes
        );
    }
    Ok((points, warnings))
}

/// With -p: warns when the process does not map the file probed (nothing would be counted).
fn warn_if_not_mapped(pid: Option<u32>, path: &std::path::Path, warnings: &mut Vec<String>) {
    use std::os::unix::fs::MetadataExt;
    let Some(pid) = pid else { return };
    let (Ok(want), Ok(maps)) = (
        std::fs::metadata(path),
        std::fs::read_to_string(format!("/proc/{pid}/maps")),
    ) else {
        return;
    };
    let mapped = maps.lines().any(|l| {
        l.split_whitespace()
            .nth(4)
            .and_then(|i| i.parse::<u64>().ok())
            == Some(want.ino())
    });
    if !mapped {
        warnings.push(format!(
            "WARNING: process {pid} does not map {}: nothing will be counted unless it loads it",
            path.display()
        ));
    }
}

/// An attach error with its cause, naming ENOTSUPP (524), which the C library cannot name.
fn attach_error_text(e: libbpf_rs::Error) -> String {
    format!("{:#}", anyhow::Error::new(e)).replace(
        "Unknown error 524 (os error 524)",
        "ENOTSUPP (the kernel cannot probe that instruction)",
    )
}

/// Runs funccount: resolve, load, attach, then print counts per interval or once at the end.
pub fn run(cfg: &FunccountConfig) -> Result<()> {
    if let Some(pid) = cfg.pid {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            bail!("no such process: {pid}");
        }
    }
    if let Some(cpu) = cfg.cpu {
        let online = crate::bpf::perf::online_cpus()?;
        if !online.contains(&cpu) {
            bail!("no such CPU online: {cpu}");
        }
    }
    bpf::prepare()?;
    let (points, warnings) = resolve(cfg)?;
    let cookies = bpf::kernel_has_cookies();
    if !cookies {
        match &points {
            Points::User(..) => bail!("counting a binary's functions needs BPF cookies (bpf_get_attach_cookie, Linux 5.15+), which this kernel does not have: count them with `bpfprof trace -e 'uprobe:PATH:FUNCS {{ @[func] = count(); }}'` (one program per function), or use USDT probes"),
            Points::Usdt(..) if cfg.pid.is_none() => bail!("USDT probes need -p PID on this kernel: without BPF cookies (bpf_get_attach_cookie, Linux 5.15+) a probe is found by its address, which in a position-independent binary or library only a process gives"),
            Points::Tracepoints(tps) if tps.len() > 1 => bail!("counting {} tracepoints at once needs BPF cookies (bpf_get_attach_cookie, Linux 5.15+), which this kernel does not have: count them with `bpfprof trace -e 'tracepoint:CATEGORY:EVENTS {{ @[probe] = count(); }}'` (one program per tracepoint), or one at a time", tps.len()),
            _ => {}
        }
    }
    for w in &warnings {
        eprintln!("{w}");
    }
    let stop = StopFlag::install()?;
    let started_attach = Instant::now();

    // uprobe.multi (6.6+) attaches every function with one link; where the kernel cannot load such a
    // program, one uprobe link per function.
    let mut storage: [MaybeUninit<OpenObject>; 2] = [const { MaybeUninit::uninit() }; 2];
    let [first, second] = &mut storage;
    // BPFPROF_NO_MULTI=1: one link per probe point (tests use it to cover that path on any kernel).
    let multi_first = matches!(points, Points::User(..) | Points::Kernel(_))
        && std::env::var_os("BPFPROF_NO_MULTI").is_none()
        && cookies;
    let (skel, links, skipped) = match load_and_attach(cfg, &points, first, multi_first, cookies) {
        Ok(loaded) => loaded,
        Err(e) if multi_first => {
            if std::env::var_os("BPFPROF_LOG").is_some() {
                eprintln!("bpfprof: multi-probe links unavailable ({e:#}): one link per probe");
            }
            load_and_attach(cfg, &points, second, false, cookies)?
        }
        Err(e) => return Err(e),
    };
    let attach_time = started_attach.elapsed();
    let attached = points.len() - skipped.len();
    if !skipped.is_empty() {
        let names: Vec<&str> = skipped.iter().take(5).map(|s| s.name.as_str()).collect();
        let more = if skipped.len() > 5 { ", ..." } else { "" };
        eprintln!(
            "WARNING: {} of {} probe points could not be attached ({}{more}): {}",
            skipped.len(),
            points.len(),
            names.join(", "),
            skipped[0].why
        );
    }
    if std::env::var_os("BPFPROF_TIMING").is_some() {
        eprintln!(
            "bpfprof: timing: attached {attached} probes in {:.3}s",
            attach_time.as_secs_f64()
        );
    }

    let header = format!(
        "Tracing {attached} functions for \"{}\"... Hit Ctrl-C to end.",
        cfg.pattern
    );
    if cfg.json {
        eprintln!("{header}");
    } else {
        write_stdout(&format!("{header}\n"))?;
    }

    let names = points.names();
    let started = Instant::now();
    let end = cfg.duration.and_then(|d| started.checked_add(d));
    let mut before = vec![0u64; names.len()];
    let mut links = Some(links);
    let mut printed = 0u32;
    loop {
        let next = cfg
            .interval
            .and_then(|i| started.checked_add(i.checked_mul(printed + 1)?));
        let deadline = match (next, end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        wait_until(&stop, deadline);
        let last = stop.raised() || end.is_some_and(|e| Instant::now() >= e);
        let now = bpf::sum_percpu(&skel.maps.counts, names.len()).context("reading the counts")?;
        let delta: Vec<u64> = now
            .iter()
            .zip(&before)
            .map(|(n, b)| n.saturating_sub(*b))
            .collect();
        let text = if cfg.json {
            json_output(&names, &delta)
        } else {
            text_output(cfg, &names, &delta)
        };
        write_stdout(&text)?;
        before = now;
        printed += 1;
        if last {
            break;
        }
    }
    let total: u64 = before.iter().sum();
    eprintln!(
        "bpfprof: {total} calls counted at {attached} probe points in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Printed first, as bcc: detaching tracepoints waits for the kernel (an RCU grace period each, one after
    // another: ~40 ms a tracepoint here), and the counts are already taken.
    if !cfg.json {
        write_stdout("Detaching...\n")?;
    }
    if let Points::Tracepoints(t) = &points {
        if t.len() > 50 {
            eprintln!(
                "bpfprof: detaching {} tracepoints: the kernel waits for a grace period for each (about {} s here)",
                t.len(),
                t.len() * 30 / 1000
            );
        }
    }
    if let Some(l) = links.take() {
        // Not USDT links: libbpf's USDT manager is shared by them and not thread-safe (concurrent
        // detaches corrupted its memory).
        if matches!(points, Points::Usdt(..)) {
            drop(l);
        } else {
            drop_concurrently(l);
        }
    }
    Ok(())
}

/// bcc's table: an empty line, -T's time, `FUNC  COUNT`, then the non-zero counts ascending.
fn text_output(cfg: &FunccountConfig, names: &[String], counts: &[u64]) -> String {
    let mut out = String::from("\n");
    if cfg.timestamp {
        out.push_str(&format!("{:<8}\n", local_time(c"%H:%M:%S")));
    }
    out.push_str(&format!("{:<36} {:>8}\n", "FUNC", "COUNT"));
    for (name, n) in ascending(names, counts) {
        out.push_str(&format!("{name:<36} {n:>8}\n"));
    }
    out
}

/// One JSON line: `{"ts": ..., "counts": [{"func": ..., "count": N}, ...]}`, non-zero counts ascending.
fn json_output(names: &[String], counts: &[u64]) -> String {
    let rows: Vec<_> = ascending(names, counts)
        .into_iter()
        .map(|(name, n)| json!({"func": name, "count": n}))
        .collect();
    let obj = json!({"ts": local_time(c"%Y-%m-%d %H:%M:%S"), "counts": rows});
    format!("{obj}\n")
}

/// Non-zero counts ascending (ties by name), as bcc sorts.
fn ascending<'a>(names: &'a [String], counts: &[u64]) -> Vec<(&'a str, u64)> {
    let mut rows: Vec<(&str, u64)> = names
        .iter()
        .zip(counts)
        .filter(|(_, &n)| n > 0)
        .map(|(s, &n)| (s.as_str(), n))
        .collect();
    rows.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(b.0)));
    rows
}

/// Opens, configures, loads and attaches. `multi`: uprobe.multi / kprobe.multi links (one for all points).
/// `cookies`: each link carries its point's index; else (before 5.15) a kprobe's is found in `index_of` by
/// its function's address, and a lone tracepoint's is 0.
fn load_and_attach<'o>(
    cfg: &FunccountConfig,
    points: &Points,
    obj: &'o mut MaybeUninit<OpenObject>,
    multi: bool,
    cookies: bool,
) -> Result<(FunccountSkel<'o>, Vec<Link>, Vec<Skipped>)> {
    let mut open = FunccountSkelBuilder::default()
        .open(obj)
        .map_err(|e| bpf::load_error("funccount", e))?;
    let rodata = open
        .maps
        .rodata_data
        .as_deref_mut()
        .context("the funccount BPF object has no read-only data")?;
    rodata.filter_pid = cfg.pid.is_some();
    rodata.targ_tgid = cfg.pid.unwrap_or(0);
    rodata.filter_cpu = cfg.cpu.is_some();
    rodata.targ_cpu = cfg.cpu.unwrap_or(0);
    open.maps.counts.set_max_entries(points.len() as u32)?;
    // Without cookies: function address -> index.
    let mut index_of: Vec<(u64, u32)> = Vec::new();
    if !cookies {
        match points {
            Points::Kernel(funcs) => {
                // A kprobe on a function sits at its first instruction, or past its endbr64 (4 bytes)
                // where the kernel is built for IBT (6.0+).
                let addrs = probes::kernel_function_addrs(funcs)?;
                for (i, f) in funcs.iter().enumerate() {
                    for &a in addrs.get(f).into_iter().flatten() {
                        index_of.push((a, i as u32));
                        index_of.push((a + 4, i as u32));
                    }
                }
            }
            Points::Tracepoints(_) | Points::User(..) | Points::Usdt(..) => {}
        }
    }
    open.maps
        .index_of
        .set_max_entries(index_of.len().max(1) as u32)?;
    let p = &mut open.progs;
    let tracepoints = matches!(points, Points::Tracepoints(_));
    let kernel = matches!(points, Points::Kernel(_));
    p.count_tp.set_autoload(cookies && tracepoints);
    p.count_tp_one.set_autoload(!cookies && tracepoints);
    p.count_kprobe_by_ip.set_autoload(!cookies && kernel);
    p.count_uprobe_multi
        .set_autoload(multi && matches!(points, Points::User(..)));
    p.count_uprobe
        .set_autoload(!multi && matches!(points, Points::User(..)));
    p.count_usdt
        .set_autoload(matches!(points, Points::Usdt(..)));
    p.count_kprobe_multi
        .set_autoload(multi && matches!(points, Points::Kernel(_)));
    p.count_kprobe.set_autoload(cookies && !multi && kernel);
    let skel = open.load().map_err(|e| bpf::load_error("funccount", e))?;
    for (key, idx) in &index_of {
        skel.maps
            .index_of
            .update(&key.to_ne_bytes(), &idx.to_ne_bytes(), MapFlags::ANY)
            .context("filling the probe index")?;
    }

    let pid = cfg.pid.map_or(-1, |p| p as i32);
    let progs = &skel.progs;
    let mut links = Vec::new();
    let mut skipped = Vec::new();
    match points {
        Points::Tracepoints(tps) => {
            for (i, (cat, ev)) in tps.iter().enumerate() {
                let opts = TracepointOpts {
                    cookie: i as u64,
                    ..Default::default()
                };
                let category = TracepointCategory::Custom(cat.clone());
                let attached = if cookies {
                    progs
                        .count_tp
                        .attach_tracepoint_with_opts(category, ev, opts)
                } else {
                    progs.count_tp_one.attach_tracepoint(category, ev)
                };
                match attached {
                    Ok(link) => links.push(link),
                    Err(e) => skipped.push(Skipped {
                        name: format!("{cat}:{ev}"),
                        why: attach_error_text(e),
                    }),
                }
            }
        }
        Points::User(path, funcs) if multi => {
            let all: Vec<usize> = (0..funcs.len()).collect();
            attach_uprobes_multi(
                &progs.count_uprobe_multi,
                cfg.pid,
                path,
                funcs,
                &all,
                &mut links,
                &mut skipped,
            )?;
        }
        Points::User(path, funcs) => {
            for (i, f) in funcs.iter().enumerate() {
                let opts = UprobeOpts {
                    cookie: i as u64,
                    ..Default::default()
                };
                match progs
                    .count_uprobe
                    .attach_uprobe_with_opts(pid, path, f.offset as usize, opts)
                {
                    Ok(link) => links.push(link),
                    Err(e) => {
                        check_alive(cfg.pid)?;
                        skipped.push(Skipped {
                            name: f.name.clone(),
                            why: attach_error_text(e),
                        })
                    }
                }
            }
        }
        Points::Usdt(path, found) => {
            for (i, u) in found.iter().enumerate() {
                let opts = UsdtOpts {
                    cookie: i as u64,
                    ..Default::default()
                };
                let link = progs
                    .count_usdt
                    .attach_usdt_with_opts(pid, path, &u.provider, &u.name, opts)
                    .with_context(|| {
                        format!(
                            "attaching to USDT probe {}:{} in {}",
                            u.provider,
                            u.name,
                            path.display()
                        )
                    })?;
                links.push(link);
            }
        }
        Points::Kernel(funcs) if multi => {
            let opts = KprobeMultiOpts {
                symbols: funcs.clone(),
                cookies: (0..funcs.len() as u64).collect(),
                ..Default::default()
            };
            let link = progs
                .count_kprobe_multi
                .attach_kprobe_multi_with_opts(opts)
                .context("attaching kprobes")?;
            links.push(link);
        }
        Points::Kernel(funcs) => {
            for (i, f) in funcs.iter().enumerate() {
                let opts = KprobeOpts {
                    cookie: i as u64,
                    ..Default::default()
                };
                let attached = if cookies {
                    progs.count_kprobe.attach_kprobe_with_opts(false, f, opts)
                } else {
                    progs.count_kprobe_by_ip.attach_kprobe(false, f)
                };
                let link = attached.with_context(|| format!("attaching a kprobe to {f}"))?;
                links.push(link);
            }
        }
    }
    if links.is_empty() {
        let why = skipped.first().map_or(String::new(), |s| s.why.clone());
        bail!("no probe point could be attached (the first: {why})");
    }
    Ok((skel, links, skipped))
}

/// A probe point that could not be attached (a uprobe cannot be placed on some first instructions), and why.
#[derive(Debug)]
pub struct Skipped {
    name: String,
    why: String,
}

/// Attaches the functions `idx` of `funcs` with one uprobe.multi link. One function the kernel cannot probe
/// fails the whole link: the set is then halved until each failing function stands alone and is skipped,
/// so that the rest still take a few links.
fn attach_uprobes_multi(
    prog: &libbpf_rs::ProgramMut<'_>,
    pid: Option<u32>,
    path: &std::path::Path,
    funcs: &[probes::UserPoint],
    idx: &[usize],
    links: &mut Vec<Link>,
    skipped: &mut Vec<Skipped>,
) -> Result<()> {
    let opts = UprobeMultiOpts {
        offsets: idx.iter().map(|&i| funcs[i].offset as usize).collect(),
        cookies: idx.iter().map(|&i| i as u64).collect(),
        ..Default::default()
    };
    let kernel_pid = pid.map_or(-1, |p| p as i32);
    match prog.attach_uprobe_multi_with_opts(kernel_pid, path, "", opts) {
        Ok(link) => links.push(link),
        Err(e) => {
            // A -p process that exited fails every attempt: say so instead of halving on.
            check_alive(pid)?;
            if idx.len() == 1 {
                skipped.push(Skipped {
                    name: funcs[idx[0]].name.clone(),
                    why: attach_error_text(e),
                });
            } else {
                let (a, b) = idx.split_at(idx.len() / 2);
                attach_uprobes_multi(prog, pid, path, funcs, a, links, skipped)?;
                attach_uprobes_multi(prog, pid, path, funcs, b, links, skipped)?;
            }
        }
    }
    Ok(())
}

/// Fails when the -p process has exited (attaching to it can only fail from then on).
fn check_alive(pid: Option<u32>) -> Result<()> {
    match pid {
        Some(p) if !std::path::Path::new(&format!("/proc/{p}")).exists() => {
            bail!("process {p} exited while probes were being attached")
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_bccs() {
        let names = vec!["b".to_string(), "a".to_string(), "c".to_string()];
        let cfg = FunccountConfig::default();
        assert_eq!(
            text_output(&cfg, &names, &[5, 7, 0]),
            format!(
                "\n{:<36} {:>8}\n{:<36} {:>8}\n{:<36} {:>8}\n",
                "FUNC", "COUNT", "b", 5, "a", 7
            )
        );
        let v: serde_json::Value =
            serde_json::from_str(json_output(&names, &[5, 7, 0]).trim()).unwrap();
        assert_eq!(v["counts"][0]["func"], "b");
        assert_eq!(v["counts"][1]["count"], 7);
        assert_eq!(v["counts"].as_array().unwrap().len(), 2);
    }
}
