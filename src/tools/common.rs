//! What every stack tool shares: refusing bad targets, collecting new processes and stacks while tracing,
//! naming stack parts, merging folded lines, writing flame graphs, and phase timing.
use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::OpenOptions;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use libbpf_rs::{MapCore, MapFlags, RingBuffer, RingBufferBuilder};
use rayon::prelude::*;

use crate::bpf::stacks::{stat, unwind_report, unwind_table_report};
use crate::render::flamegraph::{write_svg, FlameGraphSpec};
use crate::render::pprof::{LabelValue, PprofBuilder, PprofSpec};
use crate::render::{Frame, StackPart};
use crate::symbolize::stackbook::StackBook;
use crate::symbolize::Symbolizer;
use crate::unwind::watch::ProcWatcher;
use crate::unwind::{UnwindMode, UnwindStats, Unwinder};
use crate::util::{ktime_ns, write_stdout, StopFlag};

/// Entries allowed in each PID/TID filter map (bpf/*.bpf.c).
pub const MAX_FILTER_ENTRIES: usize = 1024;

/// Refuses PIDs and TIDs that do not exist, before anything is loaded. `tid_flag` is the tool's flag
/// for a thread (`-L` in profile, `-t` in the off-CPU tools), named when a thread is given as a process.
pub fn check_targets(pids: &[u32], tids: &[u32], tid_flag: &str) -> Result<()> {
    if pids.len() > MAX_FILTER_ENTRIES || tids.len() > MAX_FILTER_ENTRIES {
        bail!("at most {MAX_FILTER_ENTRIES} PIDs and {MAX_FILTER_ENTRIES} TIDs can be traced");
    }
    for &pid in pids {
        match std::fs::read_to_string(format!("/proc/{pid}/status")) {
            Err(_) => bail!("no such process: {pid}"),
            Ok(status) => {
                // /proc/TID exists for every thread too: a thread given as a process would match nothing.
                let tgid = status
                    .lines()
                    .find_map(|l| l.strip_prefix("Tgid:"))
                    .map(str::trim);
                if let Some(tgid) = tgid.filter(|t| *t != pid.to_string()) {
                    bail!("{pid} is a thread of process {tgid}: use -p {tgid}, or {tid_flag} {pid} for this thread only");
                }
            }
        }
    }
    for tid in tids {
        if !Path::new(&format!("/proc/{tid}")).exists() {
            bail!("no such thread: {tid}");
        }
    }
    Ok(())
}

/// Fills a tool's `pids` and `tids` filter maps (bpf/filters.bpf.h).
pub fn fill_filters(
    pid_map: &dyn MapCore,
    tid_map: &dyn MapCore,
    pids: &[u32],
    tids: &[u32],
) -> Result<()> {
    for (map, ids) in [(pid_map, pids), (tid_map, tids)] {
        for id in ids {
            map.update(&id.to_ne_bytes(), &[1u8], MapFlags::ANY)?;
        }
    }
    Ok(())
}

/// Gathers, while a tool traces, what its BPF program announces over two ring buffers (bpf/procs.bpf.h
/// and bpf/stacks.bpf.h): new processes, whose mappings are cached while they live, and new stacks,
/// named as they come.
///
/// New processes are taken by a thread of their own, which reads each one's mappings at once: naming
/// stacks can take seconds (the first use of a large binary; far longer on a slow machine), and a
/// short-lived process announced meanwhile would be gone, its frames unnamed.
pub struct Collector {
    rb: RingBuffer<'static>,
    procs: ProcWatcher,
    book: Rc<RefCell<StackBook>>,
    pub syms: Symbolizer,
    /// -p's processes: once all have exited, tracing ends (as perf record -p).
    targets: Vec<u32>,
    targets_exited: bool,
    last_forget: Instant,
    last_perf_maps: Instant,
}

impl Collector {
    /// `pids`: processes known from the start (-p), cached at once. `unwinder`: the unwind tables loaded
    /// so far (--unwind dwarf/auto), kept up to date with new processes from here on.
    pub fn new(
        proc_events: &dyn MapCore,
        stack_events: &dyn MapCore,
        pids: &[u32],
        unwinder: Option<Unwinder>,
        names: crate::symbolize::NameOptions,
    ) -> Result<Self> {
        let mut syms = Symbolizer::with_options(names);
        for &pid in pids {
            syms.remember(pid);
        }
        let book = Rc::new(RefCell::new(StackBook::default()));
        let mut rb = RingBufferBuilder::new();
        let sink = Rc::clone(&book);
        rb.add(stack_events, move |data: &[u8]| {
            sink.borrow_mut().add_event(data);
            0
        })?;
        Ok(Self {
            rb: rb.build()?,
            procs: ProcWatcher::start(proc_events, unwinder)?,
            book,
            syms,
            targets: pids.to_vec(),
            targets_exited: false,
            last_forget: Instant::now(),
            last_perf_maps: Instant::now(),
        })
    }

    /// Whether every -p process has exited (tracing then ends).
    pub fn targets_exited(&self) -> bool {
        self.targets_exited
    }

    /// Says on stderr that the -p processes exited, if they did.
    pub fn say_if_targets_exited(&self) {
        if self.targets_exited {
            let list: Vec<String> = self.targets.iter().map(u32::to_string).collect();
            let what = if list.len() == 1 {
                "process"
            } else {
                "processes"
            };
            eprintln!(
                "bpfprof: {what} {} exited during the trace: tracing ended",
                list.join(", ")
            );
        }
    }

    /// Collects until the deadline passes, a signal arrives, or every -p process has exited.
    pub fn run(&mut self, stop: &StopFlag, deadline: Option<Instant>) {
        while !stop.raised() {
            if !self.targets.is_empty()
                && !self.targets.iter().any(|&p| crate::util::process_alive(p))
            {
                self.targets_exited = true;
                break;
            }
            let wait = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) => left.min(Duration::from_millis(100)),
                    None => break,
                },
                None => Duration::from_millis(100),
            };
            // EINTR from Ctrl-C is not an error: the loop condition sees the flag.
            let _ = self.rb.poll(wait);
            self.take_announced();
            self.book.borrow_mut().name_pending(&mut self.syms);
            // What is kept of exited processes, once their stacks are named, is dropped: a long run
            // under process churn would otherwise grow with every process that ever ran.
            if self.last_perf_maps.elapsed() >= Duration::from_secs(1) {
                self.syms.read_perf_maps();
                self.last_perf_maps = Instant::now();
            }
            if self.last_forget.elapsed() >= Duration::from_secs(5) {
                self.syms.forget_exited_seen_twice();
                self.last_forget = Instant::now();
            }
        }
    }

    /// After the probes are detached: takes what is still in the ring buffers.
    pub fn drain(&mut self) {
        let _ = self.rb.consume();
        self.procs.stop();
        self.take_announced();
    }

    /// What the unwind tables took (after `drain`; None without tables).
    pub fn unwind_stats(&self) -> Option<&UnwindStats> {
        self.procs.unwind_stats()
    }

    fn take_announced(&mut self) {
        for (pid, maps) in self.procs.announced() {
            self.syms.remember_seen(pid, maps.as_deref());
        }
    }

    /// Names every stack the counts refer to (reading from `stack_map` those not announced), keeping
    /// everything for more windows (--continuous).
    pub fn complete(
        &mut self,
        kernel_ids: &rustc_hash::FxHashSet<u64>,
        user_pairs: &rustc_hash::FxHashSet<(u32, u64)>,
        stack_map: &dyn MapCore,
    ) -> Result<()> {
        self.take_announced();
        self.book
            .borrow_mut()
            .complete(kernel_ids, user_pairs, stack_map, &mut self.syms)
    }

    /// The stacks known so far and their names.
    pub fn book(&self) -> std::cell::Ref<'_, StackBook> {
        self.book.borrow()
    }

    /// Once more than `limit` stacks are known: deletes every stack but those in `keep` from `stack_map`
    /// (a stack sampled again is stored and announced again), and forgets them here a round later (a
    /// count made meanwhile still finds its names); drops what the symbolizer kept of exited processes.
    /// What a long run holds stays bounded. Returns how many stacks were deleted.
    pub fn forget_stacks(
        &mut self,
        keep: &rustc_hash::FxHashSet<u64>,
        stack_map: &dyn MapCore,
        limit: usize,
    ) -> usize {
        self.syms.forget_exited();
        if self.book.borrow().live_stack_count() <= limit {
            return 0;
        }
        let stale: rustc_hash::FxHashSet<u64> = stack_map
            .keys()
            .filter(|k| k.len() == 8)
            .map(|k| u64::from_ne_bytes(k[..8].try_into().expect("8-byte key")))
            .filter(|id| !keep.contains(id))
            .collect();
        for id in &stale {
            let _ = stack_map.delete(&id.to_ne_bytes());
        }
        let n = stale.len();
        self.book.borrow_mut().forget(stale, keep);
        n
    }

    /// Names every stack the counts refer to (reading from `stack_map` those not announced), and gives
    /// the book and the symbolizer (whose names the book's stacks share) to the caller.
    pub fn finish(
        self,
        kernel_ids: &rustc_hash::FxHashSet<u64>,
        user_pairs: &rustc_hash::FxHashSet<(u32, u64)>,
        stack_map: &dyn MapCore,
    ) -> Result<(StackBook, Symbolizer, RingBuffer<'static>)> {
        let Self {
            rb, book, mut syms, ..
        } = self;
        // The ring buffer's callback holds the other reference: the book is taken out, not unwrapped.
        let mut book = std::mem::take(&mut *book.borrow_mut());
        book.complete(kernel_ids, user_pairs, stack_map, &mut syms)?;
        Ok((book, syms, rb))
    }
}

/// The unwind-table maps of a loaded stack tool (bpf/unwind.bpf.h).
pub struct UnwindMaps<'a, 'obj> {
    pub procs: &'a libbpf_rs::MapMut<'obj>,
    pub mappings: &'a libbpf_rs::MapMut<'obj>,
    pub chunks: &'a libbpf_rs::MapMut<'obj>,
}

/// With --unwind dwarf/auto, loads the unwind tables of the processes to be traced before tracing starts:
/// `pids` (or the processes of `tids`), or every process when neither is given. None with --unwind fp.
pub fn start_unwinder(
    mode: UnwindMode,
    kernel_stacks_only: bool,
    memory_mib: u32,
    maps: UnwindMaps,
    pids: &[u32],
    tids: &[u32],
) -> Result<Option<Unwinder>> {
    // No tables where no user stack is walked with them.
    if mode == UnwindMode::Fp || kernel_stacks_only {
        return Ok(None);
    }
    let mut unwinder = Unwinder::new(
        libbpf_rs::MapHandle::try_from(maps.procs)?,
        maps.mappings,
        libbpf_rs::MapHandle::try_from(maps.chunks)?,
        memory_mib,
    )?;
    let targets: Vec<u32> = if !pids.is_empty() {
        pids.to_vec()
    } else if !tids.is_empty() {
        tids.iter().filter_map(|&t| tgid_of(t)).collect()
    } else {
        crate::unwind::loader::running_processes()
    };
    unwinder.preload(&targets);
    Ok(Some(unwinder))
}

/// Prints how user stacks were walked with unwind tables (stacks that ended early, frame-pointer
/// fallbacks) and what the tables could not hold; with BPFPROF_TIMING, what they took.
pub fn report_unwinding(
    stats: &[u64; stat::MAX],
    tables: Option<&UnwindStats>,
    memory_mib: u32,
    timing: &Timing,
) {
    let Some(tables) = tables else {
        return;
    };
    for line in unwind_table_report(tables, memory_mib) {
        eprintln!("{line}");
    }
    for line in unwind_report(stats) {
        eprintln!("{line}");
    }
    if timing.on {
        eprintln!(
            "bpfprof: unwind tables: {} binaries, {} rows ({} unsupported), {:.1} MiB in the kernel, {} processes, built in {:.3} s ({} without CFI)",
            tables.binaries,
            tables.rows,
            tables.unsupported_rows,
            tables.bytes as f64 / (1 << 20) as f64,
            tables.processes,
            tables.build_time.as_secs_f64(),
            tables.without_cfi
        );
    }
}

/// How user stacks were walked, for flame graph subtitles: ` (unwind: auto)`; nothing without user stacks.
pub fn unwind_desc(mode: UnwindMode, kernel_stacks_only: bool) -> String {
    if kernel_stacks_only {
        String::new()
    } else {
        format!(" (unwind: {})", mode.name())
    }
}

/// The process a thread belongs to.
fn tgid_of(tid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))?
        .trim()
        .parse()
        .ok()
}

/// A stack part from a BPF key's stack id and error: missed, none, or its named frames.
pub fn stack_part(id: u64, err: i32, names: Option<&Arc<[Frame]>>) -> StackPart {
    match (id, err, names) {
        (_, e, _) if e != 0 => StackPart::Missed,
        (0, _, _) => StackPart::None,
        (_, _, Some(n)) => StackPart::Frames(Arc::clone(n)),
        // An id whose stack could not be read back: never hide it.
        (_, _, None) => StackPart::Missed,
    }
}

/// A kernel comm (NUL-padded) as text.
pub fn comm_str(comm: &[i8; 16]) -> String {
    let bytes: Vec<u8> = comm
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Sums the values of equal texts and sorts them ascending by value (ties by text), as bcc sorts.
pub fn sum_ascending(items: Vec<(String, u64)>) -> Vec<(String, u64)> {
    let mut sums: HashMap<String, u64> = HashMap::with_capacity(items.len());
    for (text, n) in items {
        let sum = sums.entry(text).or_default();
        *sum = sum.saturating_add(n);
    }
    let mut out: Vec<(String, u64)> = sums.into_iter().collect();
    out.par_sort_unstable_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    out
}

/// Sums folded stacks that read the same (threads of one process, or stacks that differ only in addresses
/// within the same functions) and sorts them ascending by count, as bcc sorts; returns `stack count` lines.
pub fn merge_folded(stacks: Vec<(String, u64)>) -> Vec<String> {
    sum_ascending(stacks)
        .into_par_iter()
        .map(|(s, n)| format!("{s} {n}"))
        .collect()
}

/// Refuses, before tracing, an output file that cannot be created (a long trace would be lost at the end).
pub fn check_writable(path: &Path) -> Result<()> {
    let existed = path.exists();
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    if !existed {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Writes an SVG flame graph of folded lines to `path`; refuses to write an empty one.
pub fn write_svg_file(path: &Path, spec: &FlameGraphSpec, lines: &[String]) -> Result<()> {
    if lines.is_empty() {
        bail!("no stacks were recorded: {} not written", path.display());
    }
    // Drawn in memory, then written whole: a BufWriter would lose a full disk's error when dropped.
    let mut svg = Vec::new();
    write_svg(spec, lines, &mut svg)?;
    if let Err(e) = write_file_atomically(path, &svg) {
        // The trace is not lost with the file: its folded stacks go to stdout.
        let mut text = lines.join("\n");
        text.push('\n');
        let _ = crate::util::write_stdout(&text);
        return Err(e.context(format!(
            "{} not written (its folded stacks are on stdout)",
            path.display()
        )));
    }
    Ok(())
}

/// One pprof sample: its stack, its values, its labels.
pub struct PprofSample {
    pub stack: PprofStack,
    pub values: Vec<i64>,
    pub labels: Vec<(&'static str, LabelValue)>,
}

/// A sample's stack: one thread's stacks (profile, offcpu), or a folded line (`comm;root;...;leaf`,
/// kernel frames `_[k]`: wakeup's and offwake's layouts).
pub enum PprofStack {
    Thread {
        comm: Arc<str>,
        user: StackPart,
        kernel: StackPart,
    },
    Folded(String),
}

impl PprofStack {
    /// A record's stacks, with the side -U or -K leaves out removed.
    pub fn of(rec: &crate::render::StackRecord, style: &crate::render::StackStyle) -> Self {
        let none_if = |skip: bool, part: &StackPart| {
            if skip {
                StackPart::None
            } else {
                part.clone()
            }
        };
        PprofStack::Thread {
            comm: Arc::clone(&rec.comm),
            user: none_if(style.kernel_stacks_only, &rec.user),
            kernel: none_if(style.user_stacks_only, &rec.kernel),
        }
    }
}

/// A gzipped pprof profile of `samples`. User frames get the mapping of the file they were seen in.
pub fn pprof_bytes(
    spec: &PprofSpec,
    samples: &[PprofSample],
    syms: &Symbolizer,
) -> Result<Vec<u8>> {
    let mut b = PprofBuilder::new(spec);
    let origin = |name: &str| syms.origin(name);
    for s in samples {
        match &s.stack {
            PprofStack::Thread { comm, user, kernel } => {
                b.add_stacks(comm, user, kernel, &s.values, &s.labels, &origin)
            }
            PprofStack::Folded(line) => b.add_folded(line, &s.values, &s.labels, &origin),
        }
    }
    b.finish()
}

/// Writes `data` to `path` through a temporary file, renamed: a reader never sees half a file.
/// Says when stacks of exited processes may have lost their names: the ring of new stacks overflowed
/// (those stacks were named at the end, from the map) and what was kept of exited processes had been
/// dropped meanwhile.
pub fn warn_if_names_lost(stats: &[u64], syms: &crate::symbolize::Symbolizer) {
    let late = stats[crate::bpf::stacks::stat::STACK_EVENTS_LOST];
    if late > 0 && syms.forgot_any() {
        eprintln!("WARNING: {late} new stacks were named only at the end (their ring was full): those of processes that had exited by then show [unknown] frames");
    }
}

/// A file that could not be written (a full disk, a removed directory): the error, saying where the
/// report went instead (`other_output`: another output holds it; else the text report is printed).
pub fn not_written(e: anyhow::Error, path: &Path, other_output: bool) -> anyhow::Error {
    if other_output {
        e.context(format!("{} not written", path.display()))
    } else {
        e.context(format!(
            "{} not written (the text report is on stdout)",
            path.display()
        ))
    }
}

pub fn write_file_atomically(path: &Path, data: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    if let Err(e) = std::fs::write(&tmp, data) {
        let _ = std::fs::remove_file(&tmp); // a full disk leaves a partial file
        return Err(e).with_context(|| format!("writing {}", tmp.display()));
    }
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Phase times on stderr with BPFPROF_TIMING=1, to see where a run's time goes (benchmarks use it).
pub struct Timing {
    on: bool,
    last: Instant,
    phases: Vec<(&'static str, Duration)>,
}

impl Timing {
    pub fn from_env() -> Self {
        Self {
            on: std::env::var_os("BPFPROF_TIMING").is_some(),
            last: Instant::now(),
            phases: Vec::new(),
        }
    }

    /// Whether BPFPROF_TIMING asked for the details.
    pub fn enabled(&self) -> bool {
        self.on
    }

    pub fn mark(&mut self, phase: &'static str) {
        let now = Instant::now();
        self.phases.push((phase, now - self.last));
        self.last = now;
    }

    pub fn report(&self, note: &str) {
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

/// Prints a tool's header, which says tracing has begun: on stdout before a text report, else (folded
/// stacks or an SVG go to stdout or a file) on stderr.
pub fn print_header(header: &str, text_report: bool) -> Result<()> {
    if text_report {
        write_stdout(&format!("{header}\n"))
    } else {
        eprintln!("{header}");
        Ok(())
    }
}

/// Sets what `set` sets in a skeleton's mapped .bss (`skel.maps.bss_data.as_deref_mut()`), which its
/// programs see at once: the tools' `window_end` opens and closes their window (window_end_ns).
pub fn with_bss<T>(bss: Option<&mut T>, set: impl FnOnce(&mut T)) -> Result<()> {
    set(bss.context("the programs' .bss is not mapped")?);
    Ok(())
}

/// The end of a window that opens now and lasts `duration` (None: until closed), in the programs' clock
/// (bpf_ktime_get_ns).
pub fn window_end_ns(duration: Option<Duration>) -> u64 {
    duration.map_or(u64::MAX, |d| {
        ktime_ns().saturating_add(d.as_nanos().try_into().unwrap_or(u64::MAX))
    })
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

    #[test]
    fn stack_parts() {
        let names: Arc<[Frame]> = vec![Frame::from("f")].into();
        assert_eq!(stack_part(5, -14, Some(&names)), StackPart::Missed);
        assert_eq!(stack_part(0, 0, None), StackPart::None);
        assert_eq!(stack_part(5, 0, None), StackPart::Missed);
        assert_eq!(
            stack_part(5, 0, Some(&names)),
            StackPart::Frames(names.clone())
        );
    }
}
