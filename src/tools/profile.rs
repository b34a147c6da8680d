//! `profile`: sampled on-CPU stacks of all or chosen threads, as bcc's profile, to text, folded stacks or SVG.
use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, RingBufferBuilder};
use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::bpf::skel::profile::types::sample_key;
use crate::bpf::skel::profile::ProfileSkelBuilder;
use crate::bpf::stacks::{for_each_entry, from_bytes, loss_report, read_stats, stat};
use crate::bpf::{self, perf};
use crate::render::flamegraph::{write_svg, FlameGraphSpec};
use crate::render::{bcc, folded, sort_ascending, Frame, StackPart, StackRecord, StackStyle};
use crate::symbolize::stackbook::StackBook;
use crate::symbolize::Symbolizer;
use crate::util::{write_stdout, StopFlag};

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
    pub stack_storage_size: u32,
    pub max_stack_depth: u32,
    pub sampling: Sampling,
    pub cpu: Option<u32>,
    pub include_idle: bool,
    pub duration: Option<Duration>,
}

/// Entries allowed in each filter map (bpf/profile.bpf.c).
const MAX_FILTER_ENTRIES: usize = 1024;

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

/// Runs the profile tool: load, sample until the duration ends or a signal arrives, then print.
pub fn run(cfg: &ProfileConfig) -> Result<()> {
    let mut timing = Timing::from_env();
    check_targets(cfg)?;
    let cpus = chosen_cpus(cfg.cpu)?;
    bpf::prepare()?;
    let stop = StopFlag::install()?;

    let mut open_obj = MaybeUninit::uninit();
    let mut open = ProfileSkelBuilder::default()
        .open(&mut open_obj)
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
    rodata.max_stack_depth = cfg.max_stack_depth;
    open.maps.stacks.set_max_entries(cfg.stack_storage_size)?;
    // A stack can be shared by many threads: room for four (thread, stack pair) counts per stored stack.
    open.maps
        .counts
        .set_max_entries(cfg.stack_storage_size.saturating_mul(4))?;
    let skel = open.load().map_err(|e| bpf::load_error("profile", e))?;
    timing.mark("load");

    let one = [1u8];
    for pid in &cfg.pids {
        skel.maps
            .pids
            .update(&pid.to_ne_bytes(), &one, MapFlags::ANY)?;
    }
    for tid in &cfg.tids {
        skel.maps
            .tids
            .update(&tid.to_ne_bytes(), &one, MapFlags::ANY)?;
    }

    let mut syms = Symbolizer::new();
    for &pid in &cfg.pids {
        syms.remember(pid);
    }
    // New processes are announced by the BPF program, so their mappings are cached while they live.
    let announced = Rc::new(RefCell::new(Vec::<u32>::new()));
    let mut rb = RingBufferBuilder::new();
    let sink = Rc::clone(&announced);
    rb.add(&skel.maps.proc_events, move |data: &[u8]| {
        if data.len() >= 4 {
            sink.borrow_mut()
                .push(u32::from_ne_bytes([data[0], data[1], data[2], data[3]]));
        }
        0
    })?;
    // New stacks are announced too, and named while sampling goes on.
    let book = Rc::new(RefCell::new(StackBook::default()));
    let sink = Rc::clone(&book);
    rb.add(&skel.maps.stack_events, move |data: &[u8]| {
        sink.borrow_mut().add_event(data);
        0
    })?;
    let rb = rb.build()?;

    let samplers = perf::attach_cpu_clock(&skel.progs.do_sample, &cpus, cfg.sampling)?;
    timing.mark("attach");
    let started = Instant::now();
    if !cfg.folded && cfg.svg.is_none() {
        let header = bcc::profile_header(
            &cfg.rate_desc(),
            &cfg.who_desc(),
            cfg.stacks_desc(),
            cfg.cpu,
            cfg.duration.map(|d| d.as_secs()),
        );
        write_stdout(&format!("{header}\n"))?;
    }

    let deadline = cfg.duration.map(|d| started + d);
    if !cfg.user_stacks_only {
        syms.warm_kernel();
    }
    let remember_announced = |syms: &mut Symbolizer| {
        for pid in announced.borrow_mut().drain(..) {
            syms.remember(pid);
        }
    };
    while !stop.raised() {
        let wait = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) => left.min(Duration::from_millis(100)),
                None => break,
            },
            None => Duration::from_millis(100),
        };
        // EINTR from Ctrl-C is not an error: the loop condition sees the flag.
        let _ = rb.poll(wait);
        remember_announced(&mut syms);
        book.borrow_mut().name_pending(&mut syms);
    }
    timing.mark("sampling");
    drop(samplers); // detach: no samples arrive while the maps are read
    timing.mark("detach");
    let _ = rb.consume();
    remember_announced(&mut syms);
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

    let merged = merge_threads(counts);
    let kernel_ids: FxHashSet<u64> = merged
        .keys()
        .map(|k| k.kern_stack)
        .filter(|&id| id != 0)
        .collect();
    let user_pairs: FxHashSet<(u32, u64)> = merged
        .keys()
        .filter(|k| k.user_stack != 0)
        .map(|k| (k.pid, k.user_stack))
        .collect();
    let mut book = book.borrow_mut();
    timing.mark("ids");
    book.complete(&kernel_ids, &user_pairs, &skel.maps.stacks, &mut syms)?;
    timing.mark("name the rest");
    let mut records = build_records(merged, &book);
    timing.mark("records");
    let style = cfg.style();

    let shown; // stacks in the output, after merging those that read the same
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
            title: "CPU Flame Graph".into(),
            subtitle: Some(format!(
                "bpfprof profile: {} at {}, {} by {}, {:.1} s, {} samples",
                cfg.who_desc(),
                cfg.rate_desc(),
                cfg.cpu
                    .map_or_else(|| format!("{} CPUs", cpus.len()), |c| format!("CPU {c}")),
                cfg.stacks_desc(),
                elapsed.as_secs_f64(),
                stats[stat::SAMPLES]
            )),
            count_name: "samples".into(),
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
    } else {
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
    // Last on stderr (stdout stays clean for pipes): what was counted, to check nothing went missing.
    eprintln!(
        "bpfprof: {} samples, {} distinct stacks",
        stats[stat::SAMPLES],
        shown
    );
    // The report is out and the probes are detached (samplers dropped above). What is left only owns memory
    // and file handles, tens of thousands of small allocations for a large profile: freeing them one by one
    // would add ~10 ms before the process exits, and the kernel reclaims them at exit anyway.
    drop(book);
    std::mem::forget((rb, syms, records));
    Ok(())
}

/// Phase times on stderr with BPFPROF_TIMING=1, to see where a run's time goes (benchmarks use it).
struct Timing {
    on: bool,
    last: Instant,
    phases: Vec<(&'static str, Duration)>,
}

impl Timing {
    fn from_env() -> Self {
        Self {
            on: std::env::var_os("BPFPROF_TIMING").is_some(),
            last: Instant::now(),
            phases: Vec::new(),
        }
    }

    fn mark(&mut self, phase: &'static str) {
        let now = Instant::now();
        self.phases.push((phase, now - self.last));
        self.last = now;
    }

    fn report(&self, note: &str) {
        if self.on {
            let parts: Vec<String> = self
                .phases
                .iter()
                .map(|(p, d)| format!("{p} {:.3}s", d.as_secs_f64()))
                .collect();
            eprintln!("bpfprof: timing: {}; {note}", parts.join(", "));
        }
    }
}

/// Refuses PIDs and TIDs that do not exist, before anything is loaded.
fn check_targets(cfg: &ProfileConfig) -> Result<()> {
    if cfg.pids.len() > MAX_FILTER_ENTRIES || cfg.tids.len() > MAX_FILTER_ENTRIES {
        bail!("at most {MAX_FILTER_ENTRIES} PIDs and {MAX_FILTER_ENTRIES} TIDs can be traced");
    }
    for &pid in &cfg.pids {
        match std::fs::read_to_string(format!("/proc/{pid}/status")) {
            Err(_) => bail!("no such process: {pid}"),
            Ok(status) => {
                // /proc/TID exists for every thread too: a thread given as a process would match nothing.
                let tgid = status
                    .lines()
                    .find_map(|l| l.strip_prefix("Tgid:"))
                    .map(str::trim);
                if let Some(tgid) = tgid.filter(|t| *t != pid.to_string()) {
                    bail!("{pid} is a thread of process {tgid}: use -p {tgid}, or -L {pid} for this thread only");
                }
            }
        }
    }
    for tid in &cfg.tids {
        if !Path::new(&format!("/proc/{tid}")).exists() {
            bail!("no such thread: {tid}");
        }
    }
    Ok(())
}

/// The online CPUs, or the one asked for with -C (which must be online).
fn chosen_cpus(cpu: Option<u32>) -> Result<Vec<u32>> {
    let online = perf::online_cpus()?;
    match cpu {
        None => Ok(online),
        Some(c) if online.contains(&c) => Ok(vec![c]),
        Some(c) => bail!("no such CPU: {c} (online CPUs: {online:?})"),
    }
}

/// What a count is kept by once threads are merged: the process, its comm, and its two stacks.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct ProcStack {
    pid: u32,
    comm: [i8; 16],
    user_stack: u64,
    kern_stack: u64,
    user_err: i32,
    kern_err: i32,
}

/// Sums the counts of one process's threads that share comm and stacks (bcc prints per process).
fn merge_threads(counts: Vec<(sample_key, u64)>) -> FxHashMap<ProcStack, u64> {
    let mut merged: FxHashMap<ProcStack, u64> = FxHashMap::default();
    merged.reserve(counts.len());
    for (k, n) in counts {
        let key = ProcStack {
            pid: k.pid,
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

/// Gives every merged count its named frames.
fn build_records(merged: FxHashMap<ProcStack, u64>, book: &StackBook) -> Vec<StackRecord> {
    // One shared name per distinct comm.
    let mut comms: FxHashMap<[i8; 16], Arc<str>> = FxHashMap::default();
    for k in merged.keys() {
        comms
            .entry(k.comm)
            .or_insert_with(|| comm_str(&k.comm).into());
    }
    let part = |id: u64, err: i32, names: Option<&Arc<[Frame]>>| -> StackPart {
        match (id, err, names) {
            (_, e, _) if e != 0 => StackPart::Missed,
            (0, _, _) => StackPart::None,
            (_, _, Some(n)) => StackPart::Frames(Arc::clone(n)),
            // An id whose stack could not be read back: never hide it.
            (_, _, None) => StackPart::Missed,
        }
    };
    merged
        .into_par_iter()
        .map(|(k, value)| StackRecord {
            comm: Arc::clone(&comms[&k.comm]),
            pid: k.pid,
            user: part(k.user_stack, k.user_err, book.user(k.pid, k.user_stack)),
            kernel: part(k.kern_stack, k.kern_err, book.kernel(k.kern_stack)),
            value,
        })
        .collect()
}

fn comm_str(comm: &[i8; 16]) -> String {
    let bytes: Vec<u8> = comm
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Sums folded stacks that read the same (threads of one process, or stacks that differ only in addresses
/// within the same functions) and sorts them ascending by count, as bcc sorts; returns `stack count` lines.
fn merge_folded(stacks: Vec<(String, u64)>) -> Vec<String> {
    let mut sums: HashMap<String, u64> = HashMap::with_capacity(stacks.len());
    for (stack, n) in stacks {
        *sums.entry(stack).or_default() += n;
    }
    let mut out: Vec<(String, u64)> = sums.into_iter().collect();
    out.par_sort_unstable_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    out.into_par_iter()
        .map(|(s, n)| format!("{s} {n}"))
        .collect()
}

fn write_svg_file(path: &Path, spec: &FlameGraphSpec, lines: &[String]) -> Result<()> {
    if lines.is_empty() {
        bail!("no stacks were sampled: {} not written", path.display());
    }
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    write_svg(spec, lines, BufWriter::new(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_lines_merge_and_sort() {
        let stacks = vec![
            ("a;b".to_string(), 3),
            ("a;c".to_string(), 1),
            ("a;b".to_string(), 2),
        ];
        assert_eq!(
            merge_folded(stacks),
            vec!["a;c 1".to_string(), "a;b 5".to_string()]
        );
    }

    #[test]
    fn comm_stops_at_nul() {
        let mut comm = [0i8; 16];
        for (i, b) in b"burn".iter().enumerate() {
            comm[i] = *b as i8;
        }
        assert_eq!(comm_str(&comm), "burn");
    }
}
