//! `profile`: sampled on-CPU stacks of all or chosen threads, as bcc's profile, to text, folded stacks or SVG.
use std::mem::MaybeUninit;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, OpenObject};
use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};

use super::common::{
    check_targets, check_writable, comm_str, fill_filters, merge_folded, not_written, pprof_bytes,
    print_header, report_unwinding, stack_part, start_unwinder, unwind_desc, window_end_ns,
    with_bss, write_file_atomically, write_svg_file, Collector, PprofSample, PprofStack, Timing,
    UnwindMaps,
};
use super::continuous::{report_windows, ContinuousConfig, Sink, WindowClock, WindowProfile};
use crate::bpf::skel::profile::types::sample_key;
use crate::bpf::skel::profile::{ProfileSkel, ProfileSkelBuilder};
use crate::bpf::stacks::{for_each_entry, from_bytes, loss_report, read_stats, stat};
use crate::bpf::{self, perf};
use crate::render::flamegraph::{FlameGraphSpec, GraphPalette};
use crate::render::pprof::{LabelValue, PprofSpec};
use crate::render::{bcc, folded, sort_ascending, StackRecord, StackStyle};
use crate::symbolize::stackbook::StackBook;
use crate::unwind::UnwindMode;
use crate::util::{ktime_ns, write_stdout, StopFlag};

pub use crate::bpf::perf::Sampling;

/// Everything `profile` needs to know, free of clap.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileConfig {
    pub pids: Vec<u32>,
    pub tids: Vec<u32>,
    pub user_stacks_only: bool,
    pub kernel_stacks_only: bool,
    pub delimited: bool,
    pub annotations: bool,
    pub folded: bool,
    pub svg: Option<PathBuf>,
    /// --pprof: a gzipped pprof profile to this file as well.
    pub pprof: Option<PathBuf>,
    pub stack_storage_size: u32,
    pub max_stack_depth: u32,
    /// How user stacks are walked, and the most memory unwind tables may take (MiB).
    pub unwind: UnwindMode,
    pub unwind_memory_mib: u32,
    /// What frames' names say beyond the function (--inline, --lines).
    pub names: crate::symbolize::NameOptions,
    pub sampling: Sampling,
    /// --continuous: profiles in windows, written and/or pushed (None: one profile at the end).
    pub continuous: Option<ContinuousConfig>,
    pub cpu: Option<u32>,
    pub include_idle: bool,
    pub duration: Option<Duration>,
}

impl ProfileConfig {
    fn style(&self) -> StackStyle {
        StackStyle {
            user_stacks_only: self.user_stacks_only,
            kernel_stacks_only: self.kernel_stacks_only,
            delimited: self.delimited,
            // Flame graphs colour kernel frames by their _[k] suffix.
            annotations: self.annotations || self.svg.is_some(),
        }
    }

    /// The text report is printed when no other output was asked for.
    fn text_report(&self) -> bool {
        !self.folded && self.svg.is_none() && self.pprof.is_none() && self.continuous.is_none()
    }

    /// Nanoseconds of CPU time a sample stands for.
    fn period_ns(&self) -> i64 {
        match self.sampling {
            Sampling::Frequency(hz) => (1_000_000_000 / hz.max(1)) as i64,
            Sampling::Period(n) => i64::try_from(n).unwrap_or(i64::MAX),
        }
    }

    fn rate_desc(&self) -> String {
        match self.sampling {
            Sampling::Frequency(hz) => format!("{hz} Hertz"),
            Sampling::Period(n) => format!("every {n} events"),
        }
    }

    fn who_desc(&self) -> String {
        let list = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        match (self.pids.is_empty(), self.tids.is_empty()) {
            (true, true) => "all threads".into(),
            (false, true) => format!("PID {}", list(&self.pids)),
            (true, false) => format!("TID {}", list(&self.tids)),
            (false, false) => format!("PID {} TID {}", list(&self.pids), list(&self.tids)),
        }
    }

    fn stacks_desc(&self) -> &'static str {
        if self.user_stacks_only {
            "user stack"
        } else if self.kernel_stacks_only {
            "kernel stack"
        } else {
            "user + kernel stack"
        }
    }
}

/// Opens, configures and loads the profile programs (attached by the caller).
pub(super) fn load<'o>(
    cfg: &ProfileConfig,
    obj: &'o mut MaybeUninit<OpenObject>,
) -> Result<ProfileSkel<'o>> {
    let mut open = ProfileSkelBuilder::default()
        .open(obj)
        .map_err(|e| bpf::load_error("profile", e))?;
    let rodata = open
        .maps
        .rodata_data
        .as_deref_mut()
        .context("the profile BPF object has no read-only data")?;
    rodata.user_stacks_only = cfg.user_stacks_only;
    rodata.kernel_stacks_only = cfg.kernel_stacks_only;
    rodata.include_idle = cfg.include_idle;
    rodata.filter_pid = !cfg.pids.is_empty();
    rodata.filter_tid = !cfg.tids.is_empty();
    rodata.only_pid = match cfg.pids[..] {
        [pid] => pid,
        _ => 0,
    };
    rodata.only_tid = match cfg.tids[..] {
        [tid] => tid,
        _ => 0,
    };
    rodata.max_stack_depth = cfg.max_stack_depth;
    rodata.unwind_mode = cfg.unwind.bpf_value();
    if let Some(c) = &cfg.continuous {
        rodata.window_ns = c.every.as_nanos() as u64;
    }
    open.maps.stacks.set_max_entries(cfg.stack_storage_size)?;
    // A stack can be shared by many threads: room for four (thread, stack pair) counts per stored stack.
    open.maps
        .counts
        .set_max_entries(cfg.stack_storage_size.saturating_mul(4))?;
    open.load().map_err(|e| bpf::load_error("profile", e))
}

/// Runs the profile tool: load, sample until the duration ends or a signal arrives, then print.
pub fn run(cfg: &ProfileConfig) -> Result<()> {
    let mut timing = Timing::from_env();
    check_targets(&cfg.pids, &cfg.tids, "-L")?;
    for path in cfg.svg.iter().chain(&cfg.pprof) {
        check_writable(path)?;
    }
    let cpus = chosen_cpus(cfg.cpu)?;
    // --continuous's directory and server are checked before anything is loaded.
    let mut sink = cfg
        .continuous
        .as_ref()
        .map(|c| Sink::new(c, "cpu", 1_000_000_000 / cfg.period_ns().max(1) as u64))
        .transpose()?;
    bpf::prepare()?;
    let stop = StopFlag::install()?;

    let mut open_obj = MaybeUninit::uninit();
    let mut skel = load(cfg, &mut open_obj)?;
    timing.mark("load");

    fill_filters(&skel.maps.pids, &skel.maps.tids, &cfg.pids, &cfg.tids)?;

    // The tables of the processes running now, before the first sample (new ones are loaded as they
    // are announced).
    let unwinder = start_unwinder(
        cfg.unwind,
        cfg.kernel_stacks_only,
        cfg.unwind_memory_mib,
        UnwindMaps {
            procs: &skel.maps.unwind_procs,
            mappings: &skel.maps.unwind_mappings,
            chunks: &skel.maps.unwind_chunks,
        },
        &cfg.pids,
        &cfg.tids,
    )?;
    timing.mark("unwind tables");
    let mut collector = Collector::new(
        &skel.maps.proc_events,
        &skel.maps.stack_events,
        &cfg.pids,
        unwinder,
        cfg.names,
    )?;
    let samplers = perf::attach_cpu_clock(&skel.progs.do_sample, &cpus, cfg.sampling)?;
    timing.mark("attach");
    // Before the window opens (seconds on a very slow machine). The programs close it at the duration's
    // end themselves: exact however slow this side is.
    if !cfg.user_stacks_only {
        collector.syms.warm_kernel();
    }
    let end = window_end_ns(cfg.duration);
    let base = ktime_ns();
    // The base must be seen before the window opens: a sample counted with base 0 would fall in a
    // window ~uptime/every, drained only at the end.
    with_bss(skel.maps.bss_data.as_deref_mut(), |b| b.window_base = base)?;
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    with_bss(skel.maps.bss_data.as_deref_mut(), |b| b.window_end = end)?;
    let started = Instant::now();
    let started_wall = SystemTime::now();
    let header = bcc::profile_header(
        &cfg.rate_desc(),
        &cfg.who_desc(),
        cfg.stacks_desc(),
        cfg.cpu,
        cfg.duration.map(|d| d.as_secs()),
    );
    print_header(&header, cfg.text_report())?;
    if let (Some(c), Some(sink)) = (&cfg.continuous, sink.take()) {
        let clock = WindowClock {
            every: c.every,
            started,
            started_wall,
        };
        eprintln!("{}", clock.describe(c));
        let end = cfg.duration.and_then(|d| started.checked_add(d));
        let skel_cell = std::cell::RefCell::new(&mut skel);
        let outcome = clock.run(
            "profile",
            "samples",
            end,
            &mut collector,
            sink,
            &stop,
            |collector, last| drain_windows(cfg, &clock, &skel_cell.borrow(), collector, last),
            || {
                with_bss(skel_cell.borrow_mut().maps.bss_data.as_deref_mut(), |b| {
                    b.window_end = 0
                })
            },
        );
        collector.say_if_targets_exited();
        drop(samplers);
        let stats = read_stats(&skel.maps.stats)?;
        for line in loss_report(&stats, cfg.stack_storage_size) {
            eprintln!("{line}");
        }
        let (written, sink) = outcome?;
        let push = sink.finish(); // the programs are detached: pushes left may take a few seconds
        report_windows("samples", stats[stat::SAMPLES], &written, push.as_deref());
        return Ok(());
    }
    // A duration too large for the clock means "until Ctrl-C".
    collector.run(&stop, cfg.duration.and_then(|d| started.checked_add(d)));
    with_bss(skel.maps.bss_data.as_deref_mut(), |b| b.window_end = 0)?;
    collector.say_if_targets_exited();
    timing.mark("sampling");
    drop(samplers); // detach: no samples arrive while the maps are read
    timing.mark("detach");
    collector.drain();
    let unwind_stats = collector.unwind_stats().cloned();
    let elapsed = started.elapsed();

    timing.mark("drain events");
    let stats = read_stats(&skel.maps.stats)?;
    let mut counts: Vec<(sample_key, u64)> = Vec::new();
    for_each_entry(&skel.maps.counts, |k, v| {
        counts.push((
            from_bytes(k),
            u64::from_ne_bytes(v[..8].try_into().expect("8-byte count")),
        ));
    })
    .context("reading the sample counts")?;
    timing.mark("read counts");

    let merged = merge_threads(counts, cfg.pprof.is_some());
    let (kernel_ids, user_pairs) = stack_ids(&merged);
    timing.mark("ids");
    let (book, syms, rb) = collector.finish(&kernel_ids, &user_pairs, &skel.maps.stacks)?;
    timing.mark("name the rest");
    let mut records = build_records(merged, &book);
    timing.mark("records");
    let style = cfg.style();

    let subtitle = format!(
        "bpfprof profile: {} at {}, {} by {}{}, {:.1} s, {} samples",
        cfg.who_desc(),
        cfg.rate_desc(),
        cfg.cpu
            .map_or_else(|| format!("{} CPUs", cpus.len()), |c| format!("CPU {c}")),
        cfg.stacks_desc(),
        unwind_desc(cfg.unwind, cfg.kernel_stacks_only),
        elapsed.as_secs_f64(),
        stats[stat::SAMPLES]
    );
    let mut pprof_failed = None;
    if let Some(path) = &cfg.pprof {
        let data = profile_pprof(cfg, &records, &syms, started_wall, elapsed, &subtitle)?;
        match write_file_atomically(path, &data) {
            Ok(()) => eprintln!("bpfprof: wrote {}", path.display()),
            Err(e) => pprof_failed = Some(not_written(e, path, cfg.folded || cfg.svg.is_some())),
        }
        timing.mark("pprof");
    }
    let mut shown = records.len(); // stacks in the output, after merging those that read the same
                                   // Folded lines serve both the folded output and the flame graph.
    let lines = if cfg.folded || cfg.svg.is_some() {
        let lines = merge_folded(folded::fold_merged(&records, &style));
        timing.mark("fold");
        lines
    } else {
        Vec::new()
    };
    if let Some(path) = &cfg.svg {
        shown = lines.len();
        let spec = FlameGraphSpec {
            title: TITLE.into(),
            subtitle: Some(subtitle),
            count_name: "samples".into(),
            palette: GraphPalette::Cpu,
        };
        write_svg_file(path, &spec, &lines)?;
        eprintln!("bpfprof: wrote {}", path.display());
    } else if cfg.folded {
        shown = lines.len();
        let mut text = lines.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        write_stdout(&text)?;
    } else if cfg.text_report() || pprof_failed.is_some() {
        sort_ascending(&mut records); // folded lines are sorted once merged
        let blocks: Vec<String> = records
            .par_iter()
            .map(|r| bcc::stack_block(r, &style))
            .collect();
        // bcc prints an empty line when sampling ends, before the stacks.
        write_stdout(&format!("\n{}", blocks.concat()))?;
        shown = blocks.len();
    }
    timing.mark("render+write");
    timing.report(&format!(
        "{} new stacks came from the map rather than the ring buffer",
        stats[stat::STACK_EVENTS_LOST]
    ));
    for line in loss_report(&stats, cfg.stack_storage_size) {
        eprintln!("{line}");
    }
    super::common::warn_if_names_lost(&stats, &syms);
    report_unwinding(
        &stats,
        unwind_stats.as_ref(),
        cfg.unwind_memory_mib,
        &timing,
    );
    // Last on stderr (stdout stays clean for pipes): what was counted, to check nothing went missing.
    eprintln!(
        "bpfprof: {} samples, {} distinct stacks",
        stats[stat::SAMPLES],
        shown
    );
    // The report is out and the probes are detached (samplers dropped above). What is left only owns memory
    // and file handles, tens of thousands of small allocations for a large profile: freeing them one by one
    // would add ~10 ms before the process exits, and the kernel reclaims them at exit anyway.
    std::mem::forget((book, rb, syms, records));
    pprof_failed.map_or(Ok(()), Err)
}

/// The online CPUs, or the one asked for with -C (which must be online).
pub(super) fn chosen_cpus(cpu: Option<u32>) -> Result<Vec<u32>> {
    let online = perf::online_cpus()?;
    match cpu {
        None => Ok(online),
        Some(c) if online.contains(&c) => Ok(vec![c]),
        Some(c) => bail!("no such CPU: {c} (online CPUs: {online:?})"),
    }
}

/// Takes every count of windows up to `last` (None: all) out of the counts map, and makes each
/// window's profile. Stacks no pending window needs are forgotten once half the storage is used.
fn drain_windows(
    cfg: &ProfileConfig,
    clock: &WindowClock,
    skel: &crate::bpf::skel::profile::ProfileSkel<'_>,
    collector: &mut Collector,
    last: Option<u32>,
) -> Result<Vec<WindowProfile>> {
    let mut by_window: std::collections::BTreeMap<u32, Vec<(sample_key, u64)>> = Default::default();
    let mut taken_keys: Vec<Vec<u8>> = Vec::new();
    let mut in_use: FxHashSet<u64> = FxHashSet::default();
    for_each_entry(&skel.maps.counts, |k, v| {
        let key: sample_key = from_bytes(k);
        let n = u64::from_ne_bytes(v[..8].try_into().expect("8-byte count"));
        if last.map_or(true, |l| key.window <= l) {
            by_window.entry(key.window).or_default().push((key, n));
            taken_keys.push(k.to_vec());
        } else {
            in_use.extend([key.user_stack, key.kern_stack]);
        }
    })
    .context("reading the sample counts")?;
    for k in &taken_keys {
        let _ = skel.maps.counts.delete(k);
    }
    let mut out = Vec::with_capacity(by_window.len());
    for (window, counts) in by_window {
        let samples: u64 = counts.iter().map(|(_, n)| n).sum();
        let merged = merge_threads(counts, true);
        let (kernel_ids, user_pairs) = stack_ids(&merged);
        collector.complete(&kernel_ids, &user_pairs, &skel.maps.stacks)?;
        let records = build_records(merged, &collector.book());
        let (from, until) = clock.span(window);
        let subtitle = format!(
            "bpfprof profile --continuous: {} at {}, window {window} of {:?}, {samples} samples",
            cfg.who_desc(),
            cfg.rate_desc(),
            clock.every
        );
        let elapsed = until.duration_since(from).unwrap_or_default();
        let data = profile_pprof(cfg, &records, &collector.syms, from, elapsed, &subtitle)?;
        out.push(WindowProfile {
            window,
            counted: samples,
            stacks: records.len(),
            data,
        });
    }
    in_use.remove(&0);
    collector.forget_stacks(
        &in_use,
        &skel.maps.stacks,
        cfg.stack_storage_size as usize / 2,
    );
    Ok(out)
}

/// The CPU flame graph's title (SVG, and pprof's comment for `bpfprof report`).
pub const TITLE: &str = "CPU Flame Graph";

/// The profile as pprof (gzipped): `samples/count` and `cpu/nanoseconds`, comm/pid/tid labels.
fn profile_pprof(
    cfg: &ProfileConfig,
    records: &[StackRecord],
    syms: &crate::symbolize::Symbolizer,
    from: SystemTime,
    elapsed: Duration,
    subtitle: &str,
) -> Result<Vec<u8>> {
    let period = cfg.period_ns();
    let spec = PprofSpec {
        tool: "profile".into(),
        sample_types: vec![
            ("samples".into(), "count".into()),
            ("cpu".into(), "nanoseconds".into()),
        ],
        period_type: ("cpu".into(), "nanoseconds".into()),
        period,
        time_nanos: from
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as i64,
        duration_nanos: elapsed.as_nanos() as i64,
        title: TITLE.into(),
        subtitle: Some(subtitle.to_string()),
        kernel_build_id: crate::symbolize::kernel_build_id(),
    };
    let style = cfg.style();
    let samples: Vec<PprofSample> = records
        .par_iter()
        .map(|r| {
            let n = r.value as i64;
            let mut labels = vec![("pid", LabelValue::Num(r.pid.into()))];
            if r.tid != 0 {
                labels.push(("tid", LabelValue::Num(r.tid.into())));
            }
            PprofSample {
                stack: PprofStack::of(r, &style),
                values: vec![n, n.saturating_mul(period)],
                labels,
            }
        })
        .collect();
    pprof_bytes(&spec, &samples, syms)
}

/// What a count is kept by once threads are merged: the process, its comm, and its two stacks (and the
/// thread, when pprof's labels want it).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct ProcStack {
    pid: u32,
    tid: u32,
    comm: [i8; 16],
    user_stack: u64,
    kern_stack: u64,
    user_err: i32,
    kern_err: i32,
}

/// Sums the counts of one process's threads that share comm and stacks (bcc prints per process).
pub(super) fn merge_threads(
    counts: Vec<(sample_key, u64)>,
    keep_tid: bool,
) -> FxHashMap<ProcStack, u64> {
    let mut merged: FxHashMap<ProcStack, u64> = FxHashMap::default();
    merged.reserve(counts.len());
    for (k, n) in counts {
        let key = ProcStack {
            pid: k.pid,
            tid: if keep_tid { k.tid } else { 0 },
            comm: k.comm,
            user_stack: k.user_stack,
            kern_stack: k.kern_stack,
            user_err: k.user_err,
            kern_err: k.kern_err,
        };
        *merged.entry(key).or_default() += n;
    }
    merged
}

/// The stacks merged counts refer to: kernel stack ids, and (process, user stack id) pairs.
pub(super) fn stack_ids(
    merged: &FxHashMap<ProcStack, u64>,
) -> (FxHashSet<u64>, FxHashSet<(u32, u64)>) {
    let kernel_ids = merged
        .keys()
        .map(|k| k.kern_stack)
        .filter(|&id| id != 0)
        .collect();
    let user_pairs = merged
        .keys()
        .filter(|k| k.user_stack != 0)
        .map(|k| (k.pid, k.user_stack))
        .collect();
    (kernel_ids, user_pairs)
}

/// Gives every merged count its named frames.
pub(super) fn build_records(
    merged: FxHashMap<ProcStack, u64>,
    book: &StackBook,
) -> Vec<StackRecord> {
    // One shared name per distinct comm.
    let mut comms: FxHashMap<[i8; 16], Arc<str>> = FxHashMap::default();
    for k in merged.keys() {
        comms
            .entry(k.comm)
            .or_insert_with(|| comm_str(&k.comm).into());
    }
    merged
        .into_par_iter()
        .map(|(k, value)| StackRecord {
            comm: Arc::clone(&comms[&k.comm]),
            pid: k.pid,
            tid: k.tid,
            user: stack_part(k.user_stack, k.user_err, book.user(k.pid, k.user_stack)),
            kernel: stack_part(k.kern_stack, k.kern_err, book.kernel(k.kern_stack)),
            value,
        })
        .collect()
}
