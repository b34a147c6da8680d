//! `hotcold`: on-CPU samples and off-CPU time of the same threads in one flame graph (Brendan Gregg's
//! hot/cold flame graphs), both in time: a sample stands for its period, a block for its length. The
//! profile programs (bpf/profile.bpf.c) and the off-CPU programs (bpf/offcpu.bpf.c) are loaded together
//! and share their stack storage, unwind tables and process announcements, so one collector names every
//! stack; both windows open and close together.
use std::collections::BTreeMap;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use libbpf_rs::OpenObject;

use super::common::{
    check_targets, check_writable, fill_filters, merge_folded, print_header, report_unwinding,
    start_unwinder, unwind_desc, window_end_ns, with_bss, write_svg_file, Collector, UnwindMaps,
};
use super::offcpu::{self, StacksAt, WaitConfig, WaitMode};
use super::profile::{self, ProfileConfig, Sampling};
use crate::bpf::skel::offcpu::types::{wait_key, wait_val};
use crate::bpf::skel::offcpu::OpenOffcpuSkel;
use crate::bpf::skel::profile::types::sample_key;
use crate::bpf::skel::profile::ProfileSkel;
use crate::bpf::stacks::{for_each_entry, from_bytes, loss_report, read_stats, stat};
use crate::bpf::{self, perf};
use crate::render::flamegraph::{FlameGraphSpec, GraphPalette};
use crate::render::wait::WAKER_SUFFIX;
use crate::render::{folded, StackRecord, StackStyle};
use crate::unwind::UnwindMode;
use crate::util::{ktime_ns, write_stdout, StopFlag};

/// The root frame of on-CPU stacks.
pub const ON_CPU: &str = "[on-cpu]";
/// The root frame of off-CPU stacks.
pub const OFF_CPU: &str = "[off-cpu]";

/// Everything hotcold needs to know, free of clap.
#[derive(Debug, Clone, PartialEq)]
pub struct HotColdConfig {
    pub pids: Vec<u32>,
    pub tids: Vec<u32>,
    pub user_stacks_only: bool,
    pub kernel_stacks_only: bool,
    pub delimited: bool,
    pub annotations: bool,
    pub folded: bool,
    pub svg: Option<PathBuf>,
    /// Each thread its own root (`comm-tid`), split into on- and off-CPU under it.
    pub per_thread: bool,
    pub frequency: u64,
    pub stack_storage_size: u32,
    pub max_stack_depth: u32,
    pub unwind: UnwindMode,
    pub unwind_memory_mib: u32,
    /// What frames' names say beyond the function (--inline, --lines).
    pub names: crate::symbolize::NameOptions,
    /// Blocks shorter than this (microseconds) are not counted.
    pub min_block_us: u64,
    pub duration: Option<Duration>,
}

impl HotColdConfig {
    fn profile_config(&self) -> ProfileConfig {
        ProfileConfig {
            pids: self.pids.clone(),
            tids: self.tids.clone(),
            user_stacks_only: self.user_stacks_only,
            kernel_stacks_only: self.kernel_stacks_only,
            delimited: self.delimited,
            annotations: self.annotations,
            folded: false,
            svg: None,
            pprof: None,
            stack_storage_size: self.stack_storage_size,
            max_stack_depth: self.max_stack_depth,
            unwind: self.unwind,
            unwind_memory_mib: self.unwind_memory_mib,
            names: self.names,
            sampling: Sampling::Frequency(self.frequency),
            continuous: None,
            cpu: None,
            include_idle: false,
            duration: self.duration,
        }
    }

    fn wait_config(&self) -> WaitConfig {
        WaitConfig {
            mode: WaitMode::OffCpu,
            pids: self.pids.clone(),
            tids: self.tids.clone(),
            user_threads_only: false,
            kernel_threads_only: false,
            user_stacks_only: self.user_stacks_only,
            kernel_stacks_only: self.kernel_stacks_only,
            delimited: self.delimited,
            annotations: self.annotations,
            folded: false,
            svg: None,
            pprof: None,
            stack_storage_size: self.stack_storage_size,
            max_stack_depth: self.max_stack_depth,
            unwind: self.unwind,
            unwind_memory_mib: self.unwind_memory_mib,
            names: self.names,
            min_block_us: self.min_block_us,
            max_block_us: u64::MAX,
            state: None,
            sample_every: 1,
            stacks_at: StacksAt::Auto,
            continuous: None,
            duration: self.duration,
        }
    }

    fn style(&self) -> StackStyle {
        StackStyle {
            user_stacks_only: self.user_stacks_only,
            kernel_stacks_only: self.kernel_stacks_only,
            delimited: self.delimited,
            // The flame graph colours on-CPU kernel frames by their _[k] suffix.
            annotations: self.annotations || self.svg.is_some(),
        }
    }

    /// Nanoseconds of CPU time an on-CPU sample stands for.
    fn period_ns(&self) -> u64 {
        1_000_000_000 / self.frequency.max(1)
    }

    fn who_desc(&self) -> String {
        let list = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        if !self.pids.is_empty() {
            format!("PID {}", list(&self.pids))
        } else if !self.tids.is_empty() {
            format!("TID {}", list(&self.tids))
        } else {
            "all threads".into()
        }
    }

    fn header(&self) -> String {
        let what = format!(
            "Tracing on-CPU ({} Hertz) and off-CPU time (us) of {}",
            self.frequency,
            self.who_desc()
        );
        match self.duration {
            Some(d) => format!("{what} for {} secs.", d.as_secs()),
            None => format!("{what}... Hit Ctrl-C to end."),
        }
    }
}

/// What one thread did in the window: its on-CPU time (samples x period) and its blocked time.
#[derive(Debug, Default, Clone)]
struct ThreadTime {
    comm: String,
    on_ns: u64,
    off_ns: u64,
}

/// Makes the off-CPU object use the profile object's stack storage, unwind tables, filters and process
/// announcements (not its per-CPU scratch: a sample may interrupt a program of the other object).
fn share_with<'a>(p: &'a ProfileSkel<'_>) -> impl Fn(&mut OpenOffcpuSkel<'_>) -> Result<()> + 'a {
    move |o: &mut OpenOffcpuSkel<'_>| {
        let m = &p.maps;
        let pairs = [
            (&mut o.maps.stacks, m.stacks.as_fd()),
            (&mut o.maps.stack_events, m.stack_events.as_fd()),
            (&mut o.maps.proc_events, m.proc_events.as_fd()),
            (&mut o.maps.seen_procs, m.seen_procs.as_fd()),
            (&mut o.maps.unwind_procs, m.unwind_procs.as_fd()),
            (&mut o.maps.unwind_mappings, m.unwind_mappings.as_fd()),
            (&mut o.maps.unwind_chunks, m.unwind_chunks.as_fd()),
            (&mut o.maps.unwind_refresh, m.unwind_refresh.as_fd()),
            (&mut o.maps.pids, m.pids.as_fd()),
            (&mut o.maps.tids, m.tids.as_fd()),
        ];
        for (map, fd) in pairs {
            map.reuse_fd(fd)
                .with_context(|| format!("sharing the {} map", map.name().to_string_lossy()))?;
        }
        Ok(())
    }
}

/// Runs hotcold: load both sets of programs, trace until the duration ends or a signal arrives, print.
pub fn run(cfg: &HotColdConfig) -> Result<()> {
    check_targets(&cfg.pids, &cfg.tids, "-t")?;
    if let Some(path) = &cfg.svg {
        check_writable(path)?;
    }
    let pcfg = cfg.profile_config();
    let wcfg = cfg.wait_config();
    let cpus = profile::chosen_cpus(None)?;
    bpf::prepare()?;
    let stop = StopFlag::install()?;

    let mut pobj = MaybeUninit::<OpenObject>::uninit();
    let mut pskel = profile::load(&pcfg, &mut pobj)?;
    fill_filters(&pskel.maps.pids, &pskel.maps.tids, &cfg.pids, &cfg.tids)?;
    let mut storage: [MaybeUninit<OpenObject>; 3] = [const { MaybeUninit::uninit() }; 3];
    let (mut oskel, mut links, hooks) = {
        let share = share_with(&pskel);
        offcpu::load_first_that_works(&wcfg, &mut storage, Some(&share))?
    };

    let unwinder = start_unwinder(
        cfg.unwind,
        cfg.kernel_stacks_only,
        cfg.unwind_memory_mib,
        UnwindMaps {
            procs: &pskel.maps.unwind_procs,
            mappings: &pskel.maps.unwind_mappings,
            chunks: &pskel.maps.unwind_chunks,
        },
        &cfg.pids,
        &cfg.tids,
    )?;
    let mut collector = Collector::new(
        &pskel.maps.proc_events,
        &pskel.maps.stack_events,
        &cfg.pids,
        unwinder,
        cfg.names,
    )?;
    let samplers = perf::attach_cpu_clock(
        &pskel.progs.do_sample,
        &cpus,
        Sampling::Frequency(cfg.frequency),
    )?;
    if !cfg.user_stacks_only {
        collector.syms.warm_kernel();
    }
    // Both windows open together (and the programs close them together at the duration's end).
    let end = window_end_ns(cfg.duration);
    let base = ktime_ns();
    with_bss(pskel.maps.bss_data.as_deref_mut(), |b| b.window_base = base)?;
    with_bss(oskel.maps.bss_data.as_deref_mut(), |b| b.window_base = base)?;
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    with_bss(pskel.maps.bss_data.as_deref_mut(), |b| b.window_end = end)?;
    with_bss(oskel.maps.bss_data.as_deref_mut(), |b| b.window_end = end)?;
    let started = Instant::now();
    let table_on_stdout = !cfg.folded && cfg.svg.is_none();
    print_header(&cfg.header(), table_on_stdout)?;

    collector.run(&stop, cfg.duration.and_then(|d| started.checked_add(d)));
    collector.say_if_targets_exited();
    with_bss(pskel.maps.bss_data.as_deref_mut(), |b| b.window_end = 0)?;
    with_bss(oskel.maps.bss_data.as_deref_mut(), |b| b.window_end = 0)?;
    let elapsed = started.elapsed();
    let misses = offcpu::recursion_misses(&oskel, hooks);
    drop(samplers);
    while let Some(link) = links.pop() {
        drop(link);
    }
    collector.drain();
    let unwind_stats = collector.unwind_stats().cloned();

    let mut stats = read_stats(&pskel.maps.stats)?;
    let ostats = read_stats(&oskel.maps.stats)?;
    let samples = stats[stat::SAMPLES];
    let blocks = ostats[stat::SAMPLES];
    for (s, o) in stats.iter_mut().zip(ostats) {
        *s += o;
    }
    let mut on: Vec<(sample_key, u64)> = Vec::new();
    for_each_entry(&pskel.maps.counts, |k, v| {
        on.push((
            from_bytes(k),
            u64::from_ne_bytes(v[..8].try_into().expect("8-byte count")),
        ))
    })
    .context("reading the on-CPU samples")?;
    let mut off: Vec<(wait_key, wait_val)> = Vec::new();
    for_each_entry(&oskel.maps.counts, |k, v| {
        off.push((from_bytes(k), from_bytes(v)))
    })
    .context("reading the blocked-time counts")?;

    let threads = thread_times(cfg, &on, &off);
    let merged = profile::merge_threads(on, cfg.per_thread);
    let (mut kernel_ids, mut user_pairs) = profile::stack_ids(&merged);
    let (k2, u2) = offcpu::stack_ids(&off);
    kernel_ids.extend(k2);
    user_pairs.extend(u2);
    let (book, syms, _rb) = collector.finish(&kernel_ids, &user_pairs, &pskel.maps.stacks)?;
    let on_records = profile::build_records(merged, &book);
    let off_records = offcpu::offcpu_records(&off, &book);
    let lines = hotcold_lines(cfg, &on_records, &off_records);

    let subtitle = format!(
        "bpfprof hotcold: {} by {} stack{}, {:.1} s: on-CPU {} samples at {} Hz ({:.3} s), off-CPU {} blocks ({:.3} s)",
        cfg.who_desc(),
        stacks_desc(cfg),
        unwind_desc(cfg.unwind, cfg.kernel_stacks_only),
        elapsed.as_secs_f64(),
        samples,
        cfg.frequency,
        threads.values().map(|t| t.on_ns).sum::<u64>() as f64 / 1e9,
        blocks,
        threads.values().map(|t| t.off_ns).sum::<u64>() as f64 / 1e9,
    );
    if let Some(path) = &cfg.svg {
        let spec = FlameGraphSpec {
            title: "Hot/Cold Flame Graph".into(),
            subtitle: Some(subtitle.clone()),
            count_name: "us".into(),
            palette: GraphPalette::HotCold,
        };
        write_svg_file(path, &spec, &lines)?;
        eprintln!("bpfprof: wrote {}", path.display());
    } else if cfg.folded {
        let mut text = lines.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        write_stdout(&text)?;
    }
    let table = thread_table(&threads, elapsed);
    if table_on_stdout {
        write_stdout(&table)?;
    } else {
        eprint!("{table}");
    }
    for line in loss_report(&stats, cfg.stack_storage_size) {
        eprintln!("{line}");
    }
    super::common::warn_if_names_lost(&stats, &syms);
    report_unwinding(
        &stats,
        unwind_stats.as_ref(),
        cfg.unwind_memory_mib,
        &super::common::Timing::from_env(),
    );
    if misses > 0 {
        eprintln!("WARNING: {misses} scheduler events were missed: the BPF program was already running on that CPU (nested in an interrupt)");
    }
    eprintln!(
        "bpfprof: {:.3} s traced, {samples} on-CPU samples ({} ms each), {blocks} blocks, {} stacks",
        elapsed.as_secs_f64(),
        cfg.period_ns() as f64 / 1e6,
        lines.len()
    );
    std::mem::forget((book, syms));
    Ok(())
}

fn stacks_desc(cfg: &HotColdConfig) -> &'static str {
    if cfg.user_stacks_only {
        "user"
    } else if cfg.kernel_stacks_only {
        "kernel"
    } else {
        "user + kernel"
    }
}

/// Each thread's on-CPU time (its samples x the period) and blocked time.
fn thread_times(
    cfg: &HotColdConfig,
    on: &[(sample_key, u64)],
    off: &[(wait_key, wait_val)],
) -> BTreeMap<u32, ThreadTime> {
    let mut threads: BTreeMap<u32, ThreadTime> = BTreeMap::new();
    for (k, n) in on {
        let t = threads.entry(k.tid).or_default();
        if t.comm.is_empty() {
            t.comm = super::common::comm_str(&k.comm);
        }
        t.on_ns += n * cfg.period_ns();
    }
    for (k, v) in off {
        let t = threads.entry(k.target.tid).or_default();
        if t.comm.is_empty() {
            t.comm = super::common::comm_str(&k.target.comm);
        }
        t.off_ns += v.ns;
    }
    threads
}

/// One line per thread: on-CPU and off-CPU milliseconds, their sum and the on-CPU share, by total.
fn thread_table(threads: &BTreeMap<u32, ThreadTime>, elapsed: Duration) -> String {
    let mut rows: Vec<(&u32, &ThreadTime)> = threads.iter().collect();
    rows.sort_by_key(|(tid, t)| (std::cmp::Reverse(t.on_ns + t.off_ns), **tid));
    let mut out = format!(
        "\n{:>7} {:<16} {:>11} {:>11} {:>11} {:>6}\n",
        "TID", "COMM", "ON-CPU ms", "OFF-CPU ms", "TOTAL ms", "ON %"
    );
    for (tid, t) in rows {
        let total = t.on_ns + t.off_ns;
        out.push_str(&format!(
            "{:>7} {:<16} {:>11.1} {:>11.1} {:>11.1} {:>6.1}\n",
            tid,
            t.comm,
            t.on_ns as f64 / 1e6,
            t.off_ns as f64 / 1e6,
            total as f64 / 1e6,
            100.0 * t.on_ns as f64 / total.max(1) as f64
        ));
    }
    out.push_str(&format!(
        "(of {:.1} ms traced; a block that began before tracing or had not ended is not counted)\n",
        elapsed.as_secs_f64() * 1e3
    ));
    out
}

/// Folded lines in microseconds: `[on-cpu];comm;frames` and `[off-cpu];comm;frames`, or with
/// --per-thread `comm-tid;[on-cpu];frames`. In a flame graph the off-CPU frames carry the suffix that
/// colours them blue (shown without it).
fn hotcold_lines(cfg: &HotColdConfig, on: &[StackRecord], off: &[StackRecord]) -> Vec<String> {
    let style = cfg.style();
    let off_suffix = if cfg.svg.is_some() { WAKER_SUFFIX } else { "" };
    let period_ns = cfg.period_ns();
    let mut lines: Vec<(String, u64)> = Vec::with_capacity(on.len() + off.len());
    let root = |rec: &StackRecord, side: &str, suffix: &str| -> String {
        let mut line = String::with_capacity(256);
        if cfg.per_thread {
            line.push_str(&folded::sanitize(&format!("{}-{}", rec.comm, rec.tid)));
            line.push(';');
            line.push_str(side);
        } else {
            line.push_str(side);
            folded::push_frame(&mut line, &rec.comm, suffix);
        }
        line
    };
    for rec in on {
        let mut line = root(rec, ON_CPU, "");
        folded::push_root_first(&mut line, &rec.user, &rec.kernel, &style, "");
        lines.push((line, rec.value * period_ns / 1000));
    }
    for rec in off {
        let mut line = root(rec, OFF_CPU, off_suffix);
        folded::push_root_first(&mut line, &rec.user, &rec.kernel, &style, off_suffix);
        lines.push((line, rec.value));
    }
    merge_folded(lines.into_iter().filter(|(_, v)| *v > 0).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::StackPart;
    use std::sync::Arc;

    fn cfg(per_thread: bool, svg: bool) -> HotColdConfig {
        HotColdConfig {
            pids: vec![],
            tids: vec![],
            user_stacks_only: false,
            kernel_stacks_only: false,
            delimited: false,
            annotations: false,
            folded: !svg,
            svg: svg.then(|| PathBuf::from("x.svg")),
            per_thread,
            frequency: 100,
            stack_storage_size: 1024,
            max_stack_depth: 127,
            unwind: UnwindMode::Auto,
            unwind_memory_mib: 16,
            names: Default::default(),
            min_block_us: 1,
            duration: None,
        }
    }

    /// Frames innermost first, as stacks are read.
    fn rec(tid: u32, user: &[&str], kernel: &[&str], value: u64) -> StackRecord {
        let part = |f: &[&str]| {
            if f.is_empty() {
                StackPart::None
            } else {
                StackPart::Frames(f.iter().map(|s| Arc::<str>::from(*s)).collect())
            }
        };
        StackRecord {
            comm: "w".into(),
            pid: tid,
            tid,
            user: part(user),
            kernel: part(kernel),
            value,
        }
    }

    #[test]
    fn on_cpu_samples_become_time_and_sides_get_roots() {
        // 100 Hz: a sample is 10,000 us.
        let on = [rec(7, &["burn", "main"], &[], 3)];
        let off = [rec(7, &["nap", "main"], &["schedule"], 70_000)];
        let lines = hotcold_lines(&cfg(false, false), &on, &off);
        assert_eq!(
            lines,
            [
                "[on-cpu];w;main;burn 30000",
                "[off-cpu];w;main;nap;schedule 70000"
            ]
        );
        let lines = hotcold_lines(&cfg(true, false), &on, &off);
        assert_eq!(
            lines,
            [
                "w-7;[on-cpu];main;burn 30000",
                "w-7;[off-cpu];main;nap;schedule 70000"
            ]
        );
    }

    #[test]
    fn flame_graph_lines_mark_off_cpu_frames() {
        let on = [rec(7, &["burn", "main"], &["irq"], 1)];
        let off = [rec(7, &["nap", "main"], &["schedule"], 5)];
        let lines = hotcold_lines(&cfg(false, true), &on, &off);
        assert_eq!(
            lines,
            [
                "[off-cpu];w_[w];main_[w];nap_[w];schedule_[w] 5",
                "[on-cpu];w;main;burn;irq_[k] 10000"
            ]
        );
    }

    #[test]
    fn thread_table_adds_up_and_sorts_by_total() {
        let mut threads = BTreeMap::new();
        threads.insert(
            1,
            ThreadTime {
                comm: "a".into(),
                on_ns: 300_000_000,
                off_ns: 700_000_000,
            },
        );
        threads.insert(
            2,
            ThreadTime {
                comm: "b".into(),
                on_ns: 2_000_000_000,
                off_ns: 0,
            },
        );
        let t = thread_table(&threads, Duration::from_secs(2));
        let rows: Vec<&str> = t
            .lines()
            .filter(|l| l.contains(" a ") || l.contains(" b "))
            .collect();
        assert!(
            rows[0].contains(" b ") && rows[0].trim_end().ends_with("100.0"),
            "{t}"
        );
        assert!(
            rows[1].contains("300.0") && rows[1].contains("700.0") && rows[1].contains("1000.0"),
            "{t}"
        );
        assert!(rows[1].trim_end().ends_with("30.0"), "{t}");
    }
}
