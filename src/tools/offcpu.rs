//! `offcpu`, `wakeup` and `offwake`: where threads wait and who wakes them, as bcc's offcputime, wakeuptime
//! and offwaketime, from one BPF program (bpf/offcpu.bpf.c) in three modes.
use std::mem::MaybeUninit;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, MapCore, OpenObject};
use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};

use super::common::{
    check_targets, check_writable, comm_str, fill_filters, merge_folded, not_written, pprof_bytes,
    print_header, report_unwinding, stack_part, start_unwinder, sum_ascending, unwind_desc,
    window_end_ns, with_bss, write_file_atomically, write_svg_file, Collector, PprofSample,
    PprofStack, Timing, UnwindMaps,
};
use super::continuous::{report_windows, ContinuousConfig, Sink, WindowClock, WindowProfile};
use crate::bpf::skel::offcpu::types::{wait_key, wait_side, wait_val};
use crate::bpf::skel::offcpu::{OffcpuSkel, OffcpuSkelBuilder, OpenOffcpuSkel};
use crate::bpf::stacks::{for_each_entry, from_bytes, loss_report, read_stats, stat};
use crate::bpf::{self, Hooks};
use crate::render::flamegraph::{FlameGraphSpec, GraphPalette};
use crate::render::pprof::{LabelValue, PprofSpec};
use crate::render::wait::{self as layout, Side, WaitRecord, WAKER_SUFFIX};
use crate::render::{bcc, folded, sort_ascending, StackRecord, StackStyle};
use crate::symbolize::stackbook::StackBook;
use crate::unwind::UnwindMode;
use crate::util::{ktime_ns, write_stdout, StopFlag};

/// Which of the three tools (enum wait_mode in bpf/offcpu.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitMode {
    /// Blocked time by the blocked thread's stack.
    OffCpu,
    /// Blocked time by the waker's stack.
    Wakeup,
    /// Blocked time by both stacks.
    OffWake,
}

impl WaitMode {
    fn bpf_value(self) -> u32 {
        match self {
            WaitMode::OffCpu => 0,
            WaitMode::Wakeup => 1,
            WaitMode::OffWake => 2,
        }
    }

    fn name(self) -> &'static str {
        match self {
            WaitMode::OffCpu => "offcpu",
            WaitMode::Wakeup => "wakeup",
            WaitMode::OffWake => "offwake",
        }
    }
}

/// Everything the off-CPU tools need to know, free of clap.
#[derive(Debug, Clone, PartialEq)]
pub struct WaitConfig {
    pub mode: WaitMode,
    pub pids: Vec<u32>,
    pub tids: Vec<u32>,
    pub user_threads_only: bool,
    pub kernel_threads_only: bool,
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
    /// Blocks shorter than this (microseconds) are not counted.
    pub min_block_us: u64,
    /// Blocks longer than this (microseconds) are not counted.
    pub max_block_us: u64,
    /// Only blocks that began in these task states (a bitmask; 0 = TASK_RUNNING, i.e. preempted).
    pub state: Option<u32>,
    /// --sample N: one block in N is traced, and totals are scaled by N (1: every block).
    pub sample_every: u32,
    /// --stacks-at: when offcpu takes blocks' stacks.
    pub stacks_at: StacksAt,
    /// --continuous: profiles in windows, written and/or pushed (None: one report at the end).
    pub continuous: Option<ContinuousConfig>,
    pub duration: Option<Duration>,
}

/// When offcpu takes a block's stacks (--stacks-at).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum StacksAt {
    /// `end`, unless few blocks are traced (-p, -t, --sample 8+): then `start`.
    #[default]
    Auto,
    /// When the block begins: each traced block pays for its stacks, and nothing else runs.
    Start,
    /// When the block ends, and only if it counts (-m, -M): needs the rseq_update tracepoint, whose
    /// program every thread's return to user space after a switch then runs (~70 ns here, empty).
    End,
}

/// --sample from which `auto` takes stacks when blocks begin: one block's stacks taken at its start cost
/// ~650 ns more than deferred ones (scripts/bench/offcpu.sh), and the rseq_update program ~70-90 ns on
/// every switch, traced or not: below one block in ~8, deferring costs less.
const START_FROM_SAMPLE: u32 = 8;

/// Threads that can be off-CPU (and, for offwake, woken but not yet running) at once.
const MAX_BLOCKED_THREADS: u32 = 65536;

impl WaitConfig {
    pub(super) fn style(&self) -> StackStyle {
        StackStyle {
            user_stacks_only: self.user_stacks_only,
            kernel_stacks_only: self.kernel_stacks_only,
            delimited: self.delimited,
            annotations: self.annotations,
        }
    }

    /// The text report is printed when no other output was asked for.
    fn text_report(&self) -> bool {
        !self.folded && self.svg.is_none() && self.pprof.is_none() && self.continuous.is_none()
    }

    /// Folded lines are made for -f and --svg.
    fn fold_lines(&self) -> bool {
        self.folded || self.svg.is_some()
    }

    /// What is counted: wakeups, or blocks.
    fn noun(&self) -> &'static str {
        if self.mode == WaitMode::Wakeup {
            "wakeups"
        } else {
            "blocks"
        }
    }

    fn who_desc(&self) -> String {
        let list = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        if !self.pids.is_empty() {
            format!("PID {}", list(&self.pids))
        } else if !self.tids.is_empty() {
            format!("TID {}", list(&self.tids))
        } else if self.user_threads_only {
            "user threads".into()
        } else if self.kernel_threads_only {
            "kernel threads".into()
        } else {
            "all threads".into()
        }
    }

    fn stacks_desc(&self) -> &'static str {
        if self.user_stacks_only {
            "user"
        } else if self.kernel_stacks_only {
            "kernel"
        } else {
            "user + kernel"
        }
    }

    /// Whether blocks' stacks are to be taken when they end, where the kernel can (`auto`: unless the
    /// filters or --sample leave few blocks traced, whose stacks then cost less than a program on every
    /// thread's return to user space).
    fn wants_deferred_stacks(&self) -> bool {
        match self.stacks_at {
            StacksAt::Start => false,
            StacksAt::End => true,
            StacksAt::Auto => {
                self.pids.is_empty()
                    && self.tids.is_empty()
                    && self.sample_every < START_FROM_SAMPLE
            }
        }
    }

    /// What --sample did, for the header, the summary and the SVG's subtitle ("" without it).
    fn sample_note(&self) -> String {
        match self.sample_every {
            0 | 1 => String::new(),
            n => format!(" (--sample {n}: one block in {n} traced, times scaled by {n})"),
        }
    }

    /// bcc's header line, printed before tracing in the text layout.
    fn header(&self) -> String {
        let what = match self.mode {
            WaitMode::OffCpu => format!(
                "Tracing off-CPU time (us) of {} by {} stack",
                self.who_desc(),
                self.stacks_desc()
            ),
            WaitMode::Wakeup => format!(
                "Tracing blocked time (us) of {} by {} waker stack",
                self.who_desc(),
                self.stacks_desc()
            ),
            WaitMode::OffWake => format!(
                "Tracing blocked time (us) of {} by {} off-CPU and waker stack",
                self.who_desc(),
                self.stacks_desc()
            ),
        };
        let what = format!("{what}{}", self.sample_note());
        match self.duration {
            Some(d) => format!("{what} for {} secs.", d.as_secs()),
            None => format!("{what}... Hit Ctrl-C to end."),
        }
    }
}

/// Runs offcpu, wakeup or offwake: load, trace until the duration ends or a signal arrives, then print.
pub fn run(cfg: &WaitConfig) -> Result<()> {
    let mut timing = Timing::from_env();
    check_targets(&cfg.pids, &cfg.tids, "-t")?;
    for path in cfg.svg.iter().chain(&cfg.pprof) {
        check_writable(path)?;
    }
    // --continuous's directory and server are checked before anything is loaded.
    let mut sink = cfg
        .continuous
        .as_ref()
        .map(|c| Sink::new(c, cfg.mode.name(), 100))
        .transpose()?;
    bpf::prepare()?;
    let stop = StopFlag::install()?;

    let mut storage: [MaybeUninit<OpenObject>; 3] = [const { MaybeUninit::uninit() }; 3];
    let (mut skel, mut links, hooks) = load_first_that_works(cfg, &mut storage, None)?;
    let hooks_desc = hooks_desc(&skel, hooks);
    if cfg.stacks_at == StacksAt::End
        && !skel
            .maps
            .rodata_data
            .as_ref()
            .is_some_and(|r| r.defer_stacks)
    {
        eprintln!(
            "WARNING: --stacks-at end: stacks are taken when blocks begin: this kernel lacks BTF tracepoints (tp_btf) or the rseq_update and signal_deliver tracepoints"
        );
    }
    timing.mark("load+attach");

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
    // Loaded after the programs (their symbols must be in the snapshot: BPF frames are dropped by name),
    // before the window opens: on a very slow machine this takes seconds.
    if !cfg.user_stacks_only {
        collector.syms.warm_kernel();
    }
    // The programs close the window at the duration's end themselves: exact however slow this side is.
    let end = window_end_ns(cfg.duration);
    let base = ktime_ns();
    // The base must be seen before the window opens: a sample counted with base 0 would fall in a
    // window ~uptime/every, drained only at the end.
    with_bss(skel.maps.bss_data.as_deref_mut(), |b| b.window_base = base)?;
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    with_bss(skel.maps.bss_data.as_deref_mut(), |b| b.window_end = end)?;
    let started = Instant::now();
    let started_wall = SystemTime::now();
    print_header(&cfg.header(), cfg.text_report())?;
    if let (Some(c), Some(sink)) = (&cfg.continuous, sink.take()) {
        let clock = WindowClock {
            every: c.every,
            started,
            started_wall,
        };
        eprintln!("{}", clock.describe(c));
        let end = cfg.duration.and_then(|d| started.checked_add(d));
        let skel_cell = std::cell::RefCell::new(&mut skel);
        let noun = cfg.noun();
        let outcome = clock.run(
            cfg.mode.name(),
            noun,
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
        while let Some(link) = links.pop() {
            drop(link);
        }
        let stats = read_stats(&skel.maps.stats)?;
        for line in loss_report(&stats, cfg.stack_storage_size) {
            eprintln!("{line}");
        }
        let (written, sink) = outcome?;
        let push = sink.finish(); // the programs are detached: pushes left may take a few seconds
        let counted = stats[stat::SAMPLES] * u64::from(cfg.sample_every.max(1));
        report_windows(noun, counted, &written, push.as_deref());
        return Ok(());
    }
    // A duration too large for the clock means "until Ctrl-C".
    collector.run(&stop, cfg.duration.and_then(|d| started.checked_add(d)));
    timing.mark("tracing");
    collector.say_if_targets_exited();
    // The window ends here at Ctrl-C (the programs closed it themselves at the duration's end), before the
    // (slow) detaching.
    with_bss(skel.maps.bss_data.as_deref_mut(), |b| b.window_end = 0)?;
    let misses = recursion_misses(&skel, hooks);
    // Detach sched_switch first (it was attached last): detaching waits for an RCU grace period, and
    // blocks that end meanwhile must still find their waker recorded.
    while let Some(link) = links.pop() {
        drop(link);
    }
    collector.drain();
    let unwind_stats = collector.unwind_stats().cloned();
    let elapsed = started.elapsed();

    let stats = read_stats(&skel.maps.stats)?;
    let mut counts: Vec<(wait_key, wait_val)> = Vec::new();
    for_each_entry(&skel.maps.counts, |k, v| {
        counts.push((from_bytes(k), from_bytes(v)))
    })
    .context("reading the blocked-time counts")?;
    for (_, v) in &mut counts {
        scale_sampled(cfg, v);
    }
    timing.mark("read counts");

    let (kernel_ids, user_pairs) = stack_ids(&counts);
    let (book, syms, rb) = collector.finish(&kernel_ids, &user_pairs, &skel.maps.stacks)?;
    timing.mark("name stacks");

    let style = cfg.style();
    let blocked_ns: u64 = counts.iter().map(|(_, v)| v.ns).sum();
    let (lines, blocks) = match cfg.mode {
        WaitMode::OffCpu => offcpu_output(cfg, &style, &counts, &book),
        WaitMode::Wakeup | WaitMode::OffWake => wait_output(cfg, &style, &counts, &book),
    };
    let noun = cfg.noun();
    let (title, palette, what) = graph_kind(cfg.mode);
    let subtitle = format!(
        "bpfprof {}: {} by {} {what} stack{}, {:.1} s, {} {noun}, {:.3} s blocked{}",
        cfg.mode.name(),
        cfg.who_desc(),
        cfg.stacks_desc(),
        unwind_desc(cfg.unwind, cfg.kernel_stacks_only),
        elapsed.as_secs_f64(),
        stats[stat::SAMPLES],
        blocked_ns as f64 / 1e9,
        cfg.sample_note(),
    );
    let mut pprof_failed = None;
    if let Some(path) = &cfg.pprof {
        let spec = pprof_spec(cfg, started_wall, elapsed, &subtitle);
        let samples = pprof_samples(cfg, &style, &counts, &book);
        match write_file_atomically(path, &pprof_bytes(&spec, &samples, &syms)?) {
            Ok(()) => eprintln!("bpfprof: wrote {}", path.display()),
            Err(e) => pprof_failed = Some(not_written(e, path, cfg.fold_lines())),
        }
    }
    let shown = if let Some(path) = &cfg.svg {
        let spec = FlameGraphSpec {
            title: title.into(),
            subtitle: Some(subtitle),
            count_name: "us".into(),
            palette,
        };
        write_svg_file(path, &spec, &lines)?;
        eprintln!("bpfprof: wrote {}", path.display());
        lines.len()
    } else if cfg.folded {
        let mut text = lines.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        write_stdout(&text)?;
        lines.len()
    } else if !cfg.text_report() && pprof_failed.is_none() {
        counts.len()
    } else {
        // bcc prints an empty line when tracing ends, before the stacks.
        write_stdout(&format!("\n{}", blocks.concat()))?;
        blocks.len()
    };
    timing.mark("render+write");
    timing.report(&hooks_desc);
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
    if misses > 0 {
        eprintln!("WARNING: {misses} scheduler events were missed: the BPF program was already running on that CPU (nested in an interrupt)");
    }
    if timing.enabled() {
        eprintln!(
            "bpfprof: stacks reused from threads' memos, not walked: {} user, {} kernel",
            stats[stat::UMEMO_HITS],
            stats[stat::KMEMO_HITS]
        );
        eprintln!(
            "bpfprof: blocks whose stacks were taken when they ended: {}",
            stats[stat::DEFERRED]
        );
    }
    // Last on stderr (stdout stays clean for pipes): what was counted.
    eprintln!(
        "bpfprof: {} {noun}, {:.6} s blocked, {} distinct stacks{}",
        stats[stat::SAMPLES],
        blocked_ns as f64 / 1e9,
        shown,
        cfg.sample_note()
    );
    // Detached and printed: the rest only owns memory, which the kernel reclaims at exit faster.
    std::mem::forget((book, rb, syms));
    pprof_failed.map_or(Ok(()), Err)
}

/// Loads and attaches with the cheapest scheduler hooks the kernel has: BTF tracepoints (5.5+; with the
/// stack memos a switch rarely walks a stack, and a classic tracepoint's record, built before the program
/// runs, then costs more: ping-pong 2.22 s against 2.32-2.44 s here), then classic tracepoints, then raw
/// tracepoints.
pub(super) fn load_first_that_works<'o>(
    cfg: &WaitConfig,
    storage: &'o mut [MaybeUninit<OpenObject>; 3],
    share: ShareMaps<'_>,
) -> Result<(OffcpuSkel<'o>, Vec<Link>, Hooks)> {
    let ((skel, links), hooks) = bpf::load_first_that_works(
        &[Hooks::TpBtf, Hooks::Tp, Hooks::RawTp],
        storage,
        "scheduler",
        |hooks, obj| load_and_attach(cfg, obj, hooks, share),
    )?;
    Ok((skel, links, hooks))
}

/// What the loaded programs hook and how (BPFPROF_TIMING's report: tests check which path ran).
pub(super) fn hooks_desc(skel: &OffcpuSkel<'_>, hooks: Hooks) -> String {
    let mut desc = format!("hooks {}", hooks.name());
    if let Some(r) = skel.maps.rodata_data {
        if r.defer_stacks {
            desc.push_str(", stacks taken when blocks end");
        }
        if r.task_storage {
            desc.push_str(", task storage");
        }
    }
    desc
}

/// Whether blocks' stacks can be taken when they end (bpf/offcpu.bpf.c, `defer_stacks`): the kernel
/// reports threads' returns to user space (the rseq_update tracepoint, with BTF).
fn kernel_defers_stacks() -> bool {
    bpf::kernel_has_btf_tracepoint("rseq_update")
        && bpf::kernel_has_btf_tracepoint("signal_deliver")
}

/// Whether the kernel has task-local storage maps, which tracing programs can use from 5.12 on (the map
/// type came in 5.11, for LSM programs only: a 5.11 kernel fails the tp_btf load, and the classic
/// tracepoint is used). BPFPROF_NO_TASK_STORAGE=1 says no (tests cover the hash's path on any kernel).
fn kernel_has_task_storage() -> bool {
    if std::env::var_os("BPFPROF_NO_TASK_STORAGE").is_some() {
        return false;
    }
    // SAFETY: a probe that creates and closes a map; no pointers are passed.
    let ok = unsafe {
        libbpf_sys::libbpf_probe_bpf_map_type(
            libbpf_sys::BPF_MAP_TYPE_TASK_STORAGE,
            std::ptr::null(),
        )
    };
    ok == 1
}

/// Before loading: makes the object use maps another loaded object already has (hotcold shares the
/// profile programs' stacks, unwind tables and announcements). None: its own.
pub(super) type ShareMaps<'a> = Option<&'a dyn Fn(&mut OpenOffcpuSkel<'_>) -> Result<()>>;

/// Opens, configures, loads and attaches the program with one kind of scheduler hook.
fn load_and_attach<'o>(
    cfg: &WaitConfig,
    obj: &'o mut MaybeUninit<OpenObject>,
    hooks: Hooks,
    share: ShareMaps<'_>,
) -> Result<(OffcpuSkel<'o>, Vec<Link>)> {
    let what = match hooks {
        Hooks::Tp => "offcpu (tp)",
        Hooks::TpBtf => "offcpu (tp_btf)",
        Hooks::RawTp => "offcpu (raw_tp)",
    };
    let mut open = OffcpuSkelBuilder::default()
        .open(obj)
        .map_err(|e| bpf::load_error(what, e))?;
    // Threads' block stamps: in task storage where the kernel lets tp_btf programs use it, else a hash.
    let task_storage = hooks == Hooks::TpBtf && kernel_has_task_storage();
    // Blocks' stacks taken when they end (offcpu, and hotcold's off-CPU half).
    let defer = hooks == Hooks::TpBtf
        && cfg.mode == WaitMode::OffCpu
        && cfg.wants_deferred_stacks()
        && kernel_defers_stacks();
    let rodata = open
        .maps
        .rodata_data
        .as_deref_mut()
        .context("the offcpu BPF object has no read-only data")?;
    rodata.mode = cfg.mode.bpf_value();
    rodata.task_storage = task_storage;
    rodata.defer_stacks = defer;
    rodata.user_stacks_only = cfg.user_stacks_only;
    rodata.kernel_stacks_only = cfg.kernel_stacks_only;
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
    rodata.user_threads_only = cfg.user_threads_only;
    rodata.kernel_threads_only = cfg.kernel_threads_only;
    rodata.state_filter = cfg.state.map_or(-1, i64::from);
    rodata.min_block_ns = cfg.min_block_us.saturating_mul(1000);
    rodata.max_block_ns = cfg.max_block_us.saturating_mul(1000);
    rodata.max_stack_depth = cfg.max_stack_depth;
    rodata.unwind_mode = cfg.unwind.bpf_value();
    rodata.sample_every = cfg.sample_every.max(1);
    // Benchmarks: programs that return at once (scripts/bench/offcpu.sh's floor).
    rodata.bench_empty = std::env::var_os("BPFPROF_BENCH_EMPTY").is_some();
    if let Some(c) = &cfg.continuous {
        rodata.window_ns = c.every.as_nanos() as u64;
    }
    open.maps.stacks.set_max_entries(cfg.stack_storage_size)?;
    // Room for four (thread, stack pair) keys per stored stack, as profile.
    open.maps
        .counts
        .set_max_entries(cfg.stack_storage_size.saturating_mul(4))?;
    open.maps.starts.set_autocreate(task_storage)?;
    open.maps
        .start
        .set_max_entries(if task_storage { 1 } else { MAX_BLOCKED_THREADS })?;
    let wokeby = if cfg.mode == WaitMode::OffWake {
        MAX_BLOCKED_THREADS
    } else {
        1
    };
    open.maps.wokeby.set_max_entries(wokeby)?;
    let wake = cfg.mode != WaitMode::OffCpu;
    let (tp, btf, raw) = (
        hooks == Hooks::Tp,
        hooks == Hooks::TpBtf,
        hooks == Hooks::RawTp,
    );
    open.progs.switch_tp.set_autoload(tp);
    open.progs.waking_tp.set_autoload(tp && wake);
    open.progs.switch_btf.set_autoload(btf);
    open.progs.waking_btf.set_autoload(btf && wake);
    open.progs.switch_raw.set_autoload(raw);
    open.progs.waking_raw.set_autoload(raw && wake);
    open.progs.rseq_btf.set_autoload(defer);
    open.progs.signal_btf.set_autoload(defer);
    if let Some(share) = share {
        share(&mut open)?;
    }
    let skel = open.load().map_err(|e| bpf::load_error(what, e))?;

    fill_filters(&skel.maps.pids, &skel.maps.tids, &cfg.pids, &cfg.tids)?;

    let p = &skel.progs;
    let waking = bpf::HookProgs {
        category: "sched",
        name: "sched_waking",
        tp: Some(&p.waking_tp),
        btf: &p.waking_btf,
        raw: &p.waking_raw,
    };
    let switch = bpf::HookProgs {
        category: "sched",
        name: "sched_switch",
        tp: Some(&p.switch_tp),
        btf: &p.switch_btf,
        raw: &p.switch_raw,
    };
    let mut links = Vec::new();
    // Wakeups first: in offwake, a thread's waker must be known by the time it switches back in.
    if wake {
        links.push(waking.attach(hooks, what)?);
    }
    // Before the switches: a block deferred at a switch must find the hook that finishes it.
    if defer {
        for (prog, name) in [
            (&p.rseq_btf, "rseq_update"),
            (&p.signal_btf, "signal_deliver"),
        ] {
            links.push(prog.attach_trace().map_err(|e| {
                anyhow::Error::new(e)
                    .context(format!("attaching to the {name} tracepoint ({what})"))
            })?);
        }
    }
    links.push(switch.attach(hooks, what)?);
    Ok((skel, links))
}

/// Scheduler events the kernel skipped because the program was already running on that CPU.
pub(super) fn recursion_misses(skel: &OffcpuSkel<'_>, hooks: Hooks) -> u64 {
    let p = &skel.progs;
    match hooks {
        Hooks::Tp => bpf::recursion_misses(&[&p.switch_tp, &p.waking_tp]),
        Hooks::TpBtf => {
            bpf::recursion_misses(&[&p.switch_btf, &p.waking_btf, &p.rseq_btf, &p.signal_btf])
        }
        Hooks::RawTp => bpf::recursion_misses(&[&p.switch_raw, &p.waking_raw]),
    }
}

/// What a pprof profile of these tools says of itself: `blocks/count` and `offcpu/nanoseconds`.
fn pprof_spec(cfg: &WaitConfig, from: SystemTime, elapsed: Duration, subtitle: &str) -> PprofSpec {
    PprofSpec {
        tool: cfg.mode.name().into(),
        // Counts first and time last, as Go's own profiles: pprof's readers show the last by default.
        sample_types: vec![
            ("blocks".into(), "count".into()),
            ("offcpu".into(), "nanoseconds".into()),
        ],
        period_type: ("offcpu".into(), "nanoseconds".into()),
        period: 1,
        time_nanos: from
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as i64,
        duration_nanos: elapsed.as_nanos() as i64,
        title: graph_kind(cfg.mode).0.into(),
        subtitle: Some(subtitle.to_string()),
        kernel_build_id: crate::symbolize::kernel_build_id(),
    }
}

/// Takes every count of windows up to `last` (None: all) out of the counts map, and makes each
/// window's profile. Stacks no pending window needs are forgotten once half the storage is used.
fn drain_windows(
    cfg: &WaitConfig,
    clock: &WindowClock,
    skel: &OffcpuSkel<'_>,
    collector: &mut Collector,
    last: Option<u32>,
) -> Result<Vec<WindowProfile>> {
    let mut by_window: std::collections::BTreeMap<u32, Vec<(wait_key, wait_val)>> =
        Default::default();
    let mut taken_keys: Vec<Vec<u8>> = Vec::new();
    let mut in_use: FxHashSet<u64> = FxHashSet::default();
    for_each_entry(&skel.maps.counts, |k, v| {
        let key: wait_key = from_bytes(k);
        let mut val: wait_val = from_bytes(v);
        if last.map_or(true, |l| key.window <= l) {
            scale_sampled(cfg, &mut val);
            by_window.entry(key.window).or_default().push((key, val));
            taken_keys.push(k.to_vec());
        } else {
            for side in [&key.target, &key.waker] {
                in_use.extend([side.user_stack, side.kern_stack]);
            }
        }
    })
    .context("reading the blocked-time counts")?;
    for k in &taken_keys {
        let _ = skel.maps.counts.delete(k);
    }
    let style = cfg.style();
    let mut out = Vec::with_capacity(by_window.len());
    for (window, counts) in by_window {
        let (kernel_ids, user_pairs) = stack_ids(&counts);
        collector.complete(&kernel_ids, &user_pairs, &skel.maps.stacks)?;
        let blocks: u64 = counts.iter().map(|(_, v)| v.blocks).sum();
        let ns: u64 = counts.iter().map(|(_, v)| v.ns).sum();
        let samples = pprof_samples(cfg, &style, &counts, &collector.book());
        let (from, until) = clock.span(window);
        let subtitle = format!(
            "bpfprof {} --continuous: {}, window {window} of {:?}, {blocks} {}, {:.3} s blocked{}",
            cfg.mode.name(),
            cfg.who_desc(),
            clock.every,
            cfg.noun(),
            ns as f64 / 1e9,
            cfg.sample_note()
        );
        let elapsed = until.duration_since(from).unwrap_or_default();
        let spec = pprof_spec(cfg, from, elapsed, &subtitle);
        out.push(WindowProfile {
            window,
            counted: blocks,
            stacks: counts.len(),
            data: pprof_bytes(&spec, &samples, &collector.syms)?,
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

/// --sample N: one block in N was traced, so each stands for N.
fn scale_sampled(cfg: &WaitConfig, v: &mut wait_val) {
    let scale = u64::from(cfg.sample_every.max(1));
    v.ns = v.ns.saturating_mul(scale);
    v.blocks = v.blocks.saturating_mul(scale);
}

/// The stacks counts refer to, of both sides: kernel stack ids, and (process, user stack id) pairs.
pub(super) fn stack_ids(
    counts: &[(wait_key, wait_val)],
) -> (FxHashSet<u64>, FxHashSet<(u32, u64)>) {
    let mut kernel_ids = FxHashSet::default();
    let mut user_pairs = FxHashSet::default();
    for (k, _) in counts {
        for side in [&k.target, &k.waker] {
            if side.kern_stack != 0 {
                kernel_ids.insert(side.kern_stack);
            }
            if side.user_stack != 0 {
                user_pairs.insert((side.pid, side.user_stack));
            }
        }
    }
    (kernel_ids, user_pairs)
}

/// A flame graph's title, palette, and what its stacks are, per tool.
fn graph_kind(mode: WaitMode) -> (&'static str, GraphPalette, &'static str) {
    match mode {
        WaitMode::OffCpu => ("Off-CPU Time Flame Graph", GraphPalette::Io, "off-CPU"),
        WaitMode::Wakeup => ("Wakeup Time Flame Graph", GraphPalette::Wakeup, "waker"),
        WaitMode::OffWake => (
            "Off-Wake Time Flame Graph",
            GraphPalette::Chain,
            "off-CPU and waker",
        ),
    }
}

/// The pprof samples of any of the three tools: each count folded as -f folds it (kernel frames marked,
/// no -d delimiter), with `blocks/count` and `offcpu/nanoseconds`, and the threads as labels.
fn pprof_samples(
    cfg: &WaitConfig,
    style: &StackStyle,
    counts: &[(wait_key, wait_val)],
    book: &StackBook,
) -> Vec<PprofSample> {
    let style = StackStyle {
        annotations: true,
        delimited: false,
        ..*style
    };
    let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let values = |v: &wait_val| vec![int(v.blocks), int(v.ns)];
    let thread = |side: &wait_side, prefix: bool| {
        let (pid, tid) = if prefix {
            ("waker_pid", "waker_tid")
        } else {
            ("pid", "tid")
        };
        // wakeup keeps only the blocked thread's comm (as bcc): no ids to label it with.
        [(pid, side.pid), (tid, side.tid)]
            .into_iter()
            .filter(|&(_, id)| id != 0)
            .map(|(key, id)| (key, LabelValue::Num(id.into())))
            .collect::<Vec<_>>()
    };
    if cfg.mode == WaitMode::OffCpu {
        let records = offcpu_records(counts, book);
        return records
            .par_iter()
            .zip(counts)
            .map(|(r, (k, v))| PprofSample {
                stack: PprofStack::of(r, &style),
                values: values(v),
                labels: thread(&k.target, false),
            })
            .collect();
    }
    let records = wait_records(cfg, counts, book);
    records
        .par_iter()
        .zip(counts)
        .map(|(r, (k, v))| {
            let line = if cfg.mode == WaitMode::OffWake {
                layout::offwake_fold(r, &style, "")
            } else {
                layout::wakeup_fold(r, &style)
            };
            let mut labels = thread(&k.target, false);
            labels.push(("target_comm", LabelValue::Str(r.target.comm.to_string())));
            if let Some(w) = &r.waker {
                labels.extend(thread(&k.waker, true));
                labels.push(("waker_comm", LabelValue::Str(w.comm.to_string())));
            }
            PprofSample {
                stack: PprofStack::Folded(line),
                values: values(v),
                labels,
            }
        })
        .collect()
}

/// Microseconds, rounded to the nearest.
pub(super) fn micros(ns: u64) -> u64 {
    ns.saturating_add(500) / 1000
}

fn side_parts(
    side: &wait_side,
    book: &StackBook,
) -> (crate::render::StackPart, crate::render::StackPart) {
    (
        stack_part(
            side.user_stack,
            side.user_err,
            book.user(side.pid, side.user_stack),
        ),
        stack_part(side.kern_stack, side.kern_err, book.kernel(side.kern_stack)),
    )
}

/// offcpu's records: one per thread and stack.
pub(super) fn offcpu_records(
    counts: &[(wait_key, wait_val)],
    book: &StackBook,
) -> Vec<StackRecord> {
    let mut comms = CommCache::default();
    counts
        .iter()
        .map(|(k, v)| {
            let (user, kernel) = side_parts(&k.target, book);
            StackRecord {
                tid: k.target.tid,
                comm: comms.get(&k.target.comm),
                pid: k.target.tid, // bcc's offcputime shows the thread
                user,
                kernel,
                value: micros(v.ns),
            }
        })
        .collect()
}

/// offcpu: folded lines (merged, ascending) and bcc text blocks (ascending), one per thread and stack.
fn offcpu_output(
    cfg: &WaitConfig,
    style: &StackStyle,
    counts: &[(wait_key, wait_val)],
    book: &StackBook,
) -> (Vec<String>, Vec<String>) {
    let mut records = offcpu_records(counts, book);
    if cfg.fold_lines() {
        let lines = merge_folded(
            records
                .par_iter()
                .map(|r| (folded::fold(r, style), r.value))
                .collect(),
        );
        (lines, Vec::new())
    } else {
        sort_ascending(&mut records);
        let blocks = records
            .par_iter()
            .map(|r| bcc::stack_block(r, style))
            .collect();
        (Vec::new(), blocks)
    }
}

/// wakeup's and offwake's records: one per blocked thread, stack and waker.
fn wait_records(
    cfg: &WaitConfig,
    counts: &[(wait_key, wait_val)],
    book: &StackBook,
) -> Vec<WaitRecord> {
    let mut comms = CommCache::default();
    let offwake = cfg.mode == WaitMode::OffWake;
    counts
        .iter()
        .map(|(k, v)| {
            let t = &k.target;
            let w = &k.waker;
            let (tu, tk) = side_parts(t, book);
            // A comm is never empty: an empty one means no waker was seen (preempted, or woken before
            // tracing began). The idle task (tid 0) is a waker when an interrupt woke the thread.
            let waker = (w.comm[0] != 0).then(|| {
                let (user, kernel) = side_parts(w, book);
                Side {
                    comm: comms.get(&w.comm),
                    // wakeup keeps the waker's process (its user stack's address space); offwake the thread.
                    pid: if offwake { w.tid } else { w.pid },
                    user,
                    kernel,
                }
            });
            WaitRecord {
                target: Side {
                    comm: comms.get(&t.comm),
                    pid: t.tid,
                    user: tu,
                    kernel: tk,
                },
                waker,
                value: micros(v.ns),
            }
        })
        .collect()
}

/// wakeup and offwake: folded lines (merged, ascending) and bcc text blocks (ascending).
fn wait_output(
    cfg: &WaitConfig,
    style: &StackStyle,
    counts: &[(wait_key, wait_val)],
    book: &StackBook,
) -> (Vec<String>, Vec<String>) {
    let offwake = cfg.mode == WaitMode::OffWake;
    let mut records = wait_records(cfg, counts, book);
    if cfg.fold_lines() {
        let suffix = if cfg.svg.is_some() { WAKER_SUFFIX } else { "" };
        let lines = merge_folded(
            records
                .par_iter()
                .map(|r| {
                    let line = if offwake {
                        layout::offwake_fold(r, style, suffix)
                    } else {
                        layout::wakeup_fold(r, style)
                    };
                    (line, r.value)
                })
                .collect(),
        );
        (lines, Vec::new())
    } else {
        if offwake {
            records.sort_by(|a, b| {
                a.value
                    .cmp(&b.value)
                    .then_with(|| a.target.comm.cmp(&b.target.comm))
                    .then_with(|| a.target.pid.cmp(&b.target.pid))
            });
            let blocks = records
                .par_iter()
                .map(|r| layout::offwake_block(r, style))
                .collect();
            return (Vec::new(), blocks);
        }
        // wakeup names no pid (as bcc): blocks that read the same are summed into one.
        let heads: Vec<(String, u64)> = records
            .par_iter()
            .map(|r| (layout::wakeup_head(r, style), r.value))
            .collect();
        let blocks = sum_ascending(heads)
            .into_iter()
            .map(|(head, v)| head + &layout::value_line(v))
            .collect();
        (Vec::new(), blocks)
    }
}

/// One shared string per distinct comm.
#[derive(Default)]
struct CommCache(FxHashMap<[i8; 16], Arc<str>>);

impl CommCache {
    fn get(&mut self, comm: &[i8; 16]) -> Arc<str> {
        Arc::clone(self.0.entry(*comm).or_insert_with(|| comm_str(comm).into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_takes_stacks_at_block_start_where_few_blocks_are_traced() {
        let mut c = cfg(WaitMode::OffCpu);
        assert!(c.wants_deferred_stacks());
        c.sample_every = START_FROM_SAMPLE - 1;
        assert!(c.wants_deferred_stacks());
        c.sample_every = START_FROM_SAMPLE;
        assert!(!c.wants_deferred_stacks());
        c.stacks_at = StacksAt::End;
        assert!(c.wants_deferred_stacks());
        let mut c = cfg(WaitMode::OffCpu);
        c.pids = vec![1];
        assert!(!c.wants_deferred_stacks());
        c.stacks_at = StacksAt::End;
        assert!(c.wants_deferred_stacks());
        c.pids.clear();
        c.stacks_at = StacksAt::Start;
        assert!(!c.wants_deferred_stacks());
    }

    fn cfg(mode: WaitMode) -> WaitConfig {
        WaitConfig {
            mode,
            pids: vec![],
            tids: vec![],
            user_threads_only: false,
            kernel_threads_only: false,
            user_stacks_only: false,
            kernel_stacks_only: false,
            delimited: false,
            annotations: false,
            folded: false,
            svg: None,
            pprof: None,
            continuous: None,
            stack_storage_size: 16384,
            max_stack_depth: 127,
            unwind: UnwindMode::Auto,
            unwind_memory_mib: 256,
            names: Default::default(),
            min_block_us: 1,
            max_block_us: u64::MAX,
            state: None,
            sample_every: 1,
            stacks_at: StacksAt::Auto,
            duration: None,
        }
    }

    #[test]
    fn headers_are_bccs() {
        assert_eq!(
            cfg(WaitMode::OffCpu).header(),
            "Tracing off-CPU time (us) of all threads by user + kernel stack... Hit Ctrl-C to end."
        );
        let mut c = cfg(WaitMode::OffWake);
        c.pids = vec![7];
        c.kernel_stacks_only = true;
        c.duration = Some(Duration::from_secs(5));
        assert_eq!(
            c.header(),
            "Tracing blocked time (us) of PID 7 by kernel off-CPU and waker stack for 5 secs."
        );
    }

    #[test]
    fn microseconds_round() {
        assert_eq!(micros(1499), 1);
        assert_eq!(micros(1500), 2);
        assert_eq!(micros(u64::MAX), u64::MAX / 1000);
    }
}
