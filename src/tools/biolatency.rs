//! `biolatency`: block I/O latency histograms, as bcc's and libbpf-tools' biolatency, aggregated in the
//! kernel by one BPF program (bpf/biolatency.bpf.c) and printed per interval from snapshots (nothing is
//! cleared in the kernel, so no completion is lost between reading and clearing).
use std::collections::HashMap;
use std::fs::File;
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags, OpenObject};
use serde_json::{json, Map, Value};

use crate::bpf::btf::Vmlinux;
use crate::bpf::skel::biolatency::types::{hist, hist_key};
use crate::bpf::skel::biolatency::{BiolatencySkel, BiolatencySkelBuilder};
use crate::bpf::stacks::{for_each_entry, from_bytes};
use crate::bpf::{self, Hooks};
use crate::render::heatmap;
use crate::render::hist::{self as render, Buckets, Histogram};
use crate::util::{local_time, wait_until, write_stdout, StopFlag};

/// Everything biolatency needs to know, free of clap.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BiolatencyConfig {
    /// -T: a timestamp line before each interval's output.
    pub timestamp: bool,
    /// -m: milliseconds instead of microseconds.
    pub milliseconds: bool,
    /// -Q: from when the OS first sees the request, not from its issue to the device.
    pub queued: bool,
    /// -D: one histogram per disk.
    pub per_disk: bool,
    /// -F: one histogram per set of request flags.
    pub per_flag: bool,
    /// -d: only this disk.
    pub disk: Option<String>,
    /// -c: only I/O submitted by tasks in this cgroup (v2 directory).
    pub cgroup: Option<PathBuf>,
    /// -e: bcc's `avg = .., total: .., count: ..` line.
    pub extension: bool,
    /// -j: JSON, one object per histogram and interval.
    pub json: bool,
    /// --linear: linear buckets instead of powers of two.
    pub linear: Option<Linear>,
    /// --summary: count, exact average and estimated p50/p90/p99 under each histogram.
    pub summary: bool,
    /// Print every interval (default: once, at Ctrl-C).
    pub interval: Option<Duration>,
    /// Stop after this many intervals.
    pub count: Option<u64>,
    /// --heatmap: a latency heat map to this SVG file at the end, a column per `heatmap_every`.
    pub heatmap: Option<PathBuf>,
    pub heatmap_every: Duration,
}

/// Linear buckets: `[min, max)` in steps of `step` units, plus one below and one from `max` up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Linear {
    pub min: u64,
    pub max: u64,
    pub step: u64,
}

/// Linear buckets one histogram can hold (bpf/biolatency.h MAX_SLOTS, less the two open-ended ones).
pub const MAX_LINEAR_BUCKETS: u64 = 126;
/// Buckets `--linear STEP` makes.
const DEFAULT_LINEAR_BUCKETS: u64 = 100;
/// Indexes of the per-CPU `bio_stats` array (enum bio_stat in bpf/biolatency.h).
mod stat {
    pub const IOS: usize = 0;
    pub const START_FULL: usize = 1;
    pub const HISTS_FULL: usize = 2;
    pub const NEGATIVE: usize = 3;
    pub const UNSTAMPED: usize = 4;
    pub const MAX: usize = 5;
}

/// Requests that can be in flight at once (the `start` map).
const MAX_IN_FLIGHT: u32 = 65536;

impl Linear {
    /// `STEP` (from 0, 100 buckets) or `MIN,MAX,STEP` (bpftrace's lhist arguments), in the histogram's unit.
    pub fn parse(text: &str) -> Result<Self> {
        let nums: Vec<u64> = text
            .split(',')
            .map(|s| s.trim().parse::<u64>())
            .collect::<std::result::Result<_, _>>()
            .with_context(|| {
                format!("--linear {text}: expected STEP or MIN,MAX,STEP (whole numbers)")
            })?;
        let lin = match nums[..] {
            [step] => Linear {
                min: 0,
                max: step.saturating_mul(DEFAULT_LINEAR_BUCKETS),
                step,
            },
            [min, max, step] => Linear { min, max, step },
            _ => bail!("--linear {text}: expected STEP or MIN,MAX,STEP"),
        };
        if lin.step == 0 {
            bail!("--linear {text}: the step must be greater than 0");
        }
        if lin.max <= lin.min {
            bail!("--linear {text}: MAX must be above MIN");
        }
        if (lin.max - lin.min) % lin.step != 0 {
            bail!("--linear {text}: MAX - MIN must be a multiple of STEP");
        }
        let n = (lin.max - lin.min) / lin.step;
        if n > MAX_LINEAR_BUCKETS {
            bail!("--linear {text}: {n} buckets; at most {MAX_LINEAR_BUCKETS} (use a larger step)");
        }
        Ok(lin)
    }

    fn buckets(&self) -> Buckets {
        Buckets::Linear {
            min: self.min as i64,
            max: self.max as i64,
            step: self.step as i64,
        }
    }
}

impl BiolatencyConfig {
    /// The flags that choose what is timed, for titles: ` -Q -d vda`.
    fn desc(&self) -> String {
        let mut d = String::new();
        if self.queued {
            d.push_str(" -Q");
        }
        if let Some(disk) = &self.disk {
            d.push_str(&format!(" -d {disk}"));
        }
        if let Some(c) = &self.cgroup {
            d.push_str(&format!(" -c {}", c.display()));
        }
        d
    }

    fn unit(&self) -> &'static str {
        if self.milliseconds {
            "msecs"
        } else {
            "usecs"
        }
    }

    fn unit_ns(&self) -> u64 {
        if self.milliseconds {
            1_000_000
        } else {
            1000
        }
    }

    fn buckets(&self) -> Buckets {
        self.linear.map_or(Buckets::Log2, |l| l.buckets())
    }
}

/// One interval's or the whole run's counts: a histogram (kernel layout) per key.
#[derive(Default, Clone)]
struct Snapshot(HashMap<(u32, u32), hist>);

impl Snapshot {
    fn read(map: &dyn MapCore) -> Result<Self> {
        let mut out = HashMap::new();
        for_each_entry(map, |k, v| {
            let key: hist_key = from_bytes(k);
            out.insert((key.dev, key.flags), from_bytes::<hist>(v));
        })
        .context("reading the latency histograms")?;
        Ok(Self(out))
    }

    /// What was added since `before` (the kernel's counts only grow).
    fn since(&self, before: &Snapshot) -> Snapshot {
        let mut out = HashMap::new();
        for (key, now) in &self.0 {
            let mut d = *now;
            if let Some(b) = before.0.get(key) {
                for (s, p) in d.slots.iter_mut().zip(b.slots.iter()) {
                    *s = s.saturating_sub(*p);
                }
                d.sum_ns = d.sum_ns.saturating_sub(b.sum_ns);
                d.count = d.count.saturating_sub(b.count);
            }
            if d.count > 0 {
                out.insert(*key, d);
            }
        }
        Snapshot(out)
    }
}

/// Runs biolatency: load, then print a histogram per interval (or once, at Ctrl-C or the last interval).
pub fn run(cfg: &BiolatencyConfig) -> Result<()> {
    let dev = cfg.disk.as_deref().map(resolve_disk).transpose()?;
    let cgroup = cfg.cgroup.as_deref().map(open_cgroup).transpose()?;
    bpf::prepare()?;
    let stop = StopFlag::install()?;

    let mut storage: [MaybeUninit<OpenObject>; 2] = [const { MaybeUninit::uninit() }; 2];
    let ((skel, mut links), hooks) = bpf::load_first_that_works(
        &[Hooks::TpBtf, Hooks::RawTp],
        &mut storage,
        "block",
        |hooks, obj| load_and_attach(cfg, dev, cgroup.as_ref(), obj, hooks),
    )?;
    const HEADER: &str = "Tracing block device I/O... Hit Ctrl-C to end.";
    if cfg.json {
        // Standard output carries only JSON lines.
        eprintln!("{HEADER}");
    } else {
        write_stdout(&format!("{HEADER}\n"))?;
    }

    let started = Instant::now();
    let mut disks = DiskNames::read();
    let mut before = Snapshot::default();
    let mut printed = 0u64;
    let mut heat = cfg.heatmap.as_ref().map(|_| HeatColumns::default());
    let (mut gone, mut said_gone) = (false, false);
    loop {
        let deadline = cfg
            .interval
            .and_then(|i| started.checked_add(i.checked_mul((printed + 1) as u32)?));
        // Heat map columns are taken between the outputs, at their own pace.
        if let Some(h) = &mut heat {
            loop {
                let column_end = started
                    .checked_add(cfg.heatmap_every.saturating_mul(h.columns.len() as u32 + 1));
                match column_end {
                    Some(c) if deadline.map_or(true, |d| c < d) => {
                        gone = gone || wait_watching(&stop, Some(c), dev);
                        if stop.raised() || gone {
                            break;
                        }
                        h.take(cfg, &Snapshot::read(&skel.maps.hists)?);
                    }
                    _ => break,
                }
            }
        }
        gone = gone || wait_watching(&stop, deadline, dev);
        if gone && !said_gone {
            said_gone = true;
            eprintln!(
                "bpfprof: disk {} went away during the trace (detached or removed): tracing ended",
                cfg.disk.as_deref().unwrap_or("?")
            );
        }
        let last = stop.raised() || gone || cfg.count.is_some_and(|c| printed + 1 >= c);
        if last {
            // The stamping hooks were attached last: detach them first, so that requests already stamped
            // can still complete and be counted.
            while let Some(link) = links.pop() {
                drop(link);
            }
        }
        let now = Snapshot::read(&skel.maps.hists)?;
        if let Some(h) = &mut heat {
            let due =
                started.checked_add(cfg.heatmap_every.saturating_mul(h.columns.len() as u32 + 1));
            if last || due.is_some_and(|d| Instant::now() >= d) {
                h.take(cfg, &now);
            }
        }
        let interval = now.since(&before);
        disks.refresh_for(interval.0.keys().map(|k| k.0));
        let text = if cfg.json {
            json_interval(cfg, &interval, &disks, printed + 1)
        } else {
            text_interval(cfg, &interval, &disks)
        };
        write_stdout(&text)?;
        before = now;
        printed += 1;
        if last {
            break;
        }
    }

    let stats: [u64; stat::MAX] = bpf::read_counters(&skel.maps.bio_stats)?;
    let p = &skel.progs;
    let misses = match hooks {
        Hooks::RawTp => bpf::recursion_misses(&[
            &p.io_start_raw,
            &p.insert_raw,
            &p.issue_raw,
            &p.complete_raw,
            &p.getrq_raw,
        ]),
        _ => bpf::recursion_misses(&[
            &p.io_start_btf,
            &p.insert_btf,
            &p.issue_btf,
            &p.complete_btf,
            &p.getrq_btf,
        ]),
    };
    for line in loss_report(&stats, misses) {
        eprintln!("{line}");
    }
    let elapsed = started.elapsed();
    if let (Some(path), Some(h)) = (&cfg.heatmap, heat) {
        let map = h.into_map(cfg, stats[stat::IOS], elapsed);
        crate::tools::common::write_file_atomically(path, heatmap::svg(&map).as_bytes())?;
        eprintln!("bpfprof: wrote {}", path.display());
    }
    eprintln!(
        "bpfprof: {} I/Os timed in {:.1} s",
        stats[stat::IOS],
        elapsed.as_secs_f64()
    );
    Ok(())
}

/// --heatmap's columns: every histogram's counts summed, per column, from snapshots.
#[derive(Default)]
struct HeatColumns {
    before: Snapshot,
    columns: Vec<Vec<u64>>,
}

impl HeatColumns {
    /// Ends a column at snapshot `now`.
    fn take(&mut self, cfg: &BiolatencyConfig, now: &Snapshot) {
        let n = cfg.buckets().len();
        let mut counts = vec![0u64; n];
        for h in now.since(&self.before).0.values() {
            for (c, s) in counts.iter_mut().zip(h.slots.iter()) {
                *c += s;
            }
        }
        self.columns.push(counts);
        self.before = now.clone();
    }

    fn into_map(self, cfg: &BiolatencyConfig, ios: u64, elapsed: Duration) -> heatmap::HeatMap {
        let every = cfg.heatmap_every.as_secs_f64();
        let secs = |i: usize| format!("{:.1}", i as f64 * every);
        let columns = self
            .columns
            .into_iter()
            .enumerate()
            .map(|(i, counts)| heatmap::Column {
                tick: secs(i),
                label: format!("{}-{} s", secs(i), secs(i + 1)),
                counts,
            })
            .collect();
        heatmap::HeatMap {
            title: "Block I/O Latency Heat Map".into(),
            subtitle: Some(format!(
                "bpfprof biolatency{}: {ios} I/Os in {:.1} s, a column per {} s",
                cfg.desc(),
                elapsed.as_secs_f64(),
                every
            )),
            unit: cfg.unit().into(),
            what: "I/Os".into(),
            x_title: "time (s)".into(),
            rows: heatmap::bucket_labels(cfg.buckets()),
            columns,
        }
    }
}

/// Lines for stderr about whatever was not counted (nothing lost silently). Empty when nothing was.
fn loss_report(stats: &[u64; stat::MAX], recursion_misses: u64) -> Vec<String> {
    let mut lines = Vec::new();
    if stats[stat::START_FULL] > 0 {
        lines.push(format!(
            "WARNING: {} requests were not timed: more than {MAX_IN_FLIGHT} in flight at once",
            stats[stat::START_FULL]
        ));
    }
    if stats[stat::HISTS_FULL] > 0 {
        lines.push(format!(
            "WARNING: {} completions were not counted: the histogram map is full",
            stats[stat::HISTS_FULL]
        ));
    }
    if stats[stat::NEGATIVE] > 0 {
        lines.push(format!(
            "WARNING: {} completions were not counted: completed before they started (clock skew)",
            stats[stat::NEGATIVE]
        ));
    }
    if stats[stat::UNSTAMPED] > 0 {
        lines.push(format!(
            "NOTE: {} completions of the disk were not timed: their requests were issued before tracing began",
            stats[stat::UNSTAMPED]
        ));
    }
    if recursion_misses > 0 {
        lines.push(format!("WARNING: {recursion_misses} block events were missed: the BPF program was already running on that CPU"));
    }
    lines
}

/// Opens, configures, loads and attaches the program with one kind of tracepoint hook.
fn load_and_attach<'o>(
    cfg: &BiolatencyConfig,
    dev: Option<u32>,
    cgroup: Option<&File>,
    obj: &'o mut MaybeUninit<OpenObject>,
    hooks: Hooks,
) -> Result<(BiolatencySkel<'o>, Vec<Link>)> {
    let what = format!("biolatency ({})", hooks.name());
    let mut open = BiolatencySkelBuilder::default()
        .open(obj)
        .map_err(|e| bpf::load_error(&what, e))?;
    let rodata = open
        .maps
        .rodata_data
        .as_deref_mut()
        .context("the biolatency BPF object has no read-only data")?;
    rodata.targ_queued = cfg.queued;
    rodata.targ_per_disk = cfg.per_disk;
    rodata.targ_per_flag = cfg.per_flag;
    rodata.filter_dev = dev.is_some();
    rodata.targ_dev = dev.unwrap_or(0);
    rodata.filter_cg = cgroup.is_some();
    // Before 5.11 (or a kernel without the change backported) a request_queue argument comes first.
    let before_5_11 = bpf::kernel_version().is_some_and(|v| v < (5, 11));
    let btf = Vmlinux::load().ok();
    let args = |tp| btf.as_ref().and_then(|b| b.tracepoint_args(tp));
    rodata.rq_after_queue = args("block_rq_issue").map_or(before_5_11, |n| n == 2);
    rodata.bio_after_queue = args("block_getrq").map_or(before_5_11, |n| n == 3);
    rodata.unit_ns = cfg.unit_ns();
    if let Some(l) = cfg.linear {
        rodata.lin_min = l.min;
        rodata.lin_max = l.max;
        rodata.lin_step = l.step;
    }
    open.maps.start.set_max_entries(MAX_IN_FLIGHT)?;
    open.maps.cg_bios.set_max_entries(MAX_IN_FLIGHT)?;
    // -Q: block_io_start (6.5+) stamps every request the OS is given, when it first accounts it, and the
    // issue stamps nothing (as bcc): the kernel's own flush requests, issued for a caller's flush, would
    // count it twice. Before 6.5, block_rq_insert fires only for requests that enter a scheduler queue:
    // the issue stamps the others (as libbpf-tools).
    let io_start = cfg.queued && bpf::kernel_has_btf_tracepoint("block_io_start");
    let insert = cfg.queued && !io_start;
    let issue = !io_start;
    let (btf, raw) = (hooks == Hooks::TpBtf, hooks == Hooks::RawTp);
    open.progs.io_start_btf.set_autoload(btf && io_start);
    open.progs.insert_btf.set_autoload(btf && insert);
    open.progs.issue_btf.set_autoload(btf && issue);
    open.progs.complete_btf.set_autoload(btf);
    open.progs.io_start_raw.set_autoload(raw && io_start);
    open.progs.insert_raw.set_autoload(raw && insert);
    open.progs.issue_raw.set_autoload(raw && issue);
    open.progs.complete_raw.set_autoload(raw);
    let mark = cgroup.is_some();
    open.progs.getrq_btf.set_autoload(btf && mark);
    open.progs.getrq_raw.set_autoload(raw && mark);
    let skel = open.load().map_err(|e| bpf::load_error(&what, e))?;

    if let Some(cg) = cgroup {
        let fd = cg.as_raw_fd() as u32;
        skel.maps
            .cgroup_map
            .update(&0u32.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
            .context("setting the cgroup filter")?;
    }

    let p = &skel.progs;
    let hook = |name, btf, raw| bpf::HookProgs {
        category: "block",
        name,
        tp: None,
        btf,
        raw,
    };
    // Completions first, stamps last: whatever is stamped then finds its completion hooked.
    // With -c, requests are judged by who made them (block_getrq), before any stamp looks.
    let mut plan = vec![hook("block_rq_complete", &p.complete_btf, &p.complete_raw)];
    if mark {
        plan.push(hook("block_getrq", &p.getrq_btf, &p.getrq_raw));
    }
    if issue {
        plan.push(hook("block_rq_issue", &p.issue_btf, &p.issue_raw));
    }
    if io_start {
        plan.push(hook("block_io_start", &p.io_start_btf, &p.io_start_raw));
    }
    if insert {
        plan.push(hook("block_rq_insert", &p.insert_btf, &p.insert_raw));
    }
    let links = plan
        .iter()
        .map(|h| h.attach(hooks, &what))
        .collect::<Result<Vec<_>>>()?;
    Ok((skel, links))
}

/// The kernel's dev_t of a block device: major << 20 | minor.
fn kernel_dev(major: u32, minor: u32) -> u32 {
    major << 20 | minor
}

/// Whether the disk with kernel dev_t `dev` is still there: its device exists and has a size (a detached
/// loop device keeps its node, with size 0).
fn disk_present(dev: u32) -> bool {
    let sys = format!("/sys/dev/block/{}:{}/size", dev >> 20, dev & 0xf_ffff);
    std::fs::read_to_string(sys)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .is_some_and(|size| size > 0)
}

/// Waits until `deadline` (None: until a signal), a signal, or (with -d) the disk going away; true when it
/// went away.
fn wait_watching(stop: &StopFlag, deadline: Option<Instant>, disk: Option<u32>) -> bool {
    loop {
        if disk.is_some_and(|d| !disk_present(d)) {
            return true;
        }
        let step = Instant::now() + Duration::from_millis(250);
        wait_until(stop, Some(deadline.map_or(step, |d| d.min(step))));
        if stop.raised() || deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
    }
}

/// Names of block devices by kernel dev_t, from /sys/class/block/*/dev.
struct DiskNames(HashMap<u32, String>);

impl DiskNames {
    fn read() -> Self {
        let mut names = HashMap::new();
        if let Ok(dir) = std::fs::read_dir("/sys/class/block") {
            for entry in dir.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(dev) = read_dev(&entry.path().join("dev")) {
                    names.insert(dev, name);
                }
            }
        }
        Self(names)
    }

    /// Re-reads the devices when one seen in the histograms is new (created while tracing).
    fn refresh_for(&mut self, devs: impl Iterator<Item = u32>) {
        let mut devs = devs;
        if devs.any(|d| d != 0 && !self.0.contains_key(&d)) {
            *self = Self::read();
        }
    }

    fn name(&self, dev: u32) -> String {
        self.0
            .get(&dev)
            .cloned()
            .unwrap_or_else(|| format!("{}:{}", dev >> 20, dev & 0xfffff))
    }
}

/// A `MAJOR:MINOR` file as a kernel dev_t.
fn read_dev(path: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(path).ok()?;
    let (major, minor) = text.trim().split_once(':')?;
    Some(kernel_dev(major.parse().ok()?, minor.parse().ok()?))
}

/// A whole disk's dev_t by name (`vda` or `/dev/vda`). Requests belong to whole disks: a partition is
/// refused with the disk to use instead.
fn resolve_disk(name: &str) -> Result<u32> {
    let short = name.strip_prefix("/dev/").unwrap_or(name);
    let valid = !short.is_empty() && !short.contains('/');
    let class = Path::new("/sys/class/block").join(short);
    if valid && class.join("partition").exists() {
        let parent = std::fs::canonicalize(&class)
            .ok()
            .and_then(|p| {
                p.parent()
                    .and_then(|d| d.file_name())
                    .map(|d| d.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "its disk".into());
        bail!("{short} is a partition: biolatency times requests of whole disks (use -d {parent})");
    }
    match read_dev(&Path::new("/sys/block").join(short).join("dev")).filter(|_| valid) {
        Some(dev) => Ok(dev),
        None => {
            let mut known: Vec<String> = std::fs::read_dir("/sys/block")
                .map(|d| {
                    d.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            known.sort();
            bail!("no such disk: {name} (disks: {})", known.join(", "))
        }
    }
}

/// Opens a cgroup v2 directory for the BPF cgroup filter.
fn open_cgroup(path: &Path) -> Result<File> {
    let file = File::open(path).with_context(|| format!("no such cgroup: {}", path.display()))?;
    // SAFETY: a valid fd and a zeroed statfs for the kernel to fill.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let ret = unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) };
    const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
    let is_dir = file.metadata().map(|m| m.is_dir()).unwrap_or(false);
    if ret != 0 || st.f_type as i64 != CGROUP2_SUPER_MAGIC || !is_dir {
        bail!(
            "{} is not a cgroup v2 directory (such as /sys/fs/cgroup/system.slice)",
            path.display()
        );
    }
    Ok(file)
}

/// bcc's name for a set of request flags (its biolatency's flags_print): the operation, with each flag
/// prepended in bcc's order, e.g. `Sync-Write`, `ReadAhead-Read`.
pub fn flags_name(flags: u32) -> String {
    let op = match flags & 0xff {
        0 => "Read",
        1 => "Write",
        2 => "Flush",
        3 => "Discard",
        5 => "SecureErase",
        6 => "ZoneReset",
        7 => "WriteSame",
        9 => "WriteZeros",
        _ => "Unknown",
    };
    let mut desc = op.to_string();
    for (bit, name) in [
        (11, "Sync"),
        (12, "Metadata"),
        (17, "ForcedUnitAccess"),
        (13, "Priority"),
        (14, "NoMerge"),
        (15, "Idle"),
        (19, "ReadAhead"),
        (20, "Background"),
        (21, "NoWait"),
    ] {
        if flags & (1 << bit) != 0 {
            desc = format!("{name}-{desc}");
        }
    }
    desc
}

/// The histograms of an interval in print order (by disk name, then flags name), with their section
/// label parts.
fn ordered(
    cfg: &BiolatencyConfig,
    snap: &Snapshot,
    disks: &DiskNames,
) -> Vec<(Option<String>, Option<String>, Histogram)> {
    let buckets = cfg.buckets();
    let mut out: Vec<_> = snap
        .0
        .iter()
        .map(|(&(dev, flags), h)| {
            let mut hg = Histogram::new(buckets);
            let n = hg.counts.len();
            hg.counts.copy_from_slice(&h.slots[..n]);
            hg.sum = Some(h.sum_ns / cfg.unit_ns());
            (
                cfg.per_disk.then(|| disks.name(dev)),
                cfg.per_flag.then(|| flags_name(flags)),
                hg,
            )
        })
        .collect();
    out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    out
}

/// One interval in bcc's text layout: an empty line, `-T`'s time, then each histogram (under a
/// `disk = vda` / `flags = Sync-Write` line with -D / -F), and -e's average line.
fn text_interval(cfg: &BiolatencyConfig, snap: &Snapshot, disks: &DiskNames) -> String {
    let unit = cfg.unit();
    let mut out = String::from("\n");
    if cfg.timestamp {
        out.push_str(&format!("{:<8}\n", local_time(c"%H:%M:%S")));
    }
    for (disk, flags, h) in ordered(cfg, snap, disks) {
        let section = match (disk, flags) {
            (Some(d), Some(f)) => Some(format!("disk = {d}\tflags = {f}")),
            (Some(d), None) => Some(format!("disk = {d}")),
            (None, Some(f)) => Some(format!("flags = {f}")),
            (None, None) => None,
        };
        if let Some(s) = section {
            out.push_str(&format!("\n{s}\n"));
        }
        if cfg.linear.is_some() {
            out.push_str(&render::bcc_linear(&h, unit));
        } else {
            out.push_str(&render::bcc_log2(&h, unit));
        }
        if cfg.summary {
            out.push_str(&format!("summary: {}\n", render::summary_line(&h, unit)));
        }
    }
    if cfg.extension {
        let count: u64 = snap.0.values().map(|h| h.count).sum();
        let total = snap.0.values().map(|h| h.sum_ns).sum::<u64>() / cfg.unit_ns();
        if let Some(avg) = total.checked_div(count) {
            out.push_str(&format!(
                "\navg = {avg} {unit}, total: {total} {unit}, count: {count}\n\n"
            ));
        }
    }
    out
}

/// One interval as JSON lines: one object per histogram with bcc's keys (`ts`, `val_type`, `data`, and
/// `disk` / `flags`), then count, sum, avg and p50/p90/p99. Unkeyed and empty: one object with no data.
fn json_interval(cfg: &BiolatencyConfig, snap: &Snapshot, disks: &DiskNames, seq: u64) -> String {
    let ts = local_time(c"%Y-%m-%d %H:%M:%S");
    let mut hists = ordered(cfg, snap, disks);
    if hists.is_empty() && !cfg.per_disk && !cfg.per_flag {
        hists.push((None, None, Histogram::new(cfg.buckets())));
    }
    let mut out = String::new();
    for (disk, flags, h) in hists {
        let mut obj = Map::new();
        obj.insert("ts".into(), json!(ts));
        // Which interval (from 1): intervals printed within one second share a `ts`.
        obj.insert("interval".into(), json!(seq));
        obj.insert("val_type".into(), json!(cfg.unit()));
        obj.insert("data".into(), render::json_data(&h));
        if let Some(d) = disk {
            obj.insert("disk".into(), json!(d));
        }
        if let Some(f) = flags {
            obj.insert("flags".into(), json!(f));
        }
        if let Value::Object(summary) = render::summary_json(&h) {
            obj.extend(summary);
        }
        out.push_str(&Value::Object(obj).to_string());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_names_are_bccs() {
        assert_eq!(flags_name(0), "Read");
        assert_eq!(flags_name(1 | 1 << 11), "Sync-Write");
        assert_eq!(flags_name(1 | 1 << 11 | 1 << 15), "Idle-Sync-Write");
        assert_eq!(flags_name(1 << 19), "ReadAhead-Read");
        assert_eq!(
            flags_name(2 | 1 << 11 | 1 << 17),
            "ForcedUnitAccess-Sync-Flush"
        );
        assert_eq!(flags_name(42), "Unknown");
    }

    #[test]
    fn linear_specs() {
        assert_eq!(
            Linear::parse("100").unwrap(),
            Linear {
                min: 0,
                max: 10000,
                step: 100
            }
        );
        assert_eq!(
            Linear::parse("0,1000,250").unwrap(),
            Linear {
                min: 0,
                max: 1000,
                step: 250
            }
        );
        for bad in ["0", "x", "1,2", "10,5,1", "0,1000,3", "0,100000,1", "-1"] {
            assert!(Linear::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    /// (disk, flags), (slot, count) pairs, sum in ns.
    type Entry<'a> = ((u32, u32), &'a [(usize, u64)], u64);

    fn snap(entries: &[Entry<'_>]) -> Snapshot {
        let mut m = HashMap::new();
        for (key, slots, sum_ns) in entries {
            // SAFETY: `hist` is a plain struct of integers: all zeroes is a valid value.
            let mut h: hist = unsafe { std::mem::zeroed() };
            for &(i, n) in *slots {
                h.slots[i] = n;
                h.count += n;
            }
            h.sum_ns = *sum_ns;
            m.insert(*key, h);
        }
        Snapshot(m)
    }

    #[test]
    fn intervals_are_differences() {
        let a = snap(&[((1, 0), &[(5, 2)], 2000)]);
        let b = snap(&[((1, 0), &[(5, 3), (7, 1)], 9000), ((2, 0), &[(3, 1)], 10)]);
        let d = b.since(&a);
        assert_eq!(d.0[&(1, 0)].slots[5], 1);
        assert_eq!(d.0[&(1, 0)].slots[7], 1);
        assert_eq!(d.0[&(1, 0)].count, 2);
        assert_eq!(d.0[&(1, 0)].sum_ns, 7000);
        assert_eq!(d.0[&(2, 0)].count, 1);
        assert!(a.since(&a).0.is_empty());
    }

    #[test]
    fn text_layout_per_disk_with_extension() {
        let cfg = BiolatencyConfig {
            per_disk: true,
            extension: true,
            ..Default::default()
        };
        let mut names = HashMap::new();
        names.insert(kernel_dev(254, 0), "vda".to_string());
        let disks = DiskNames(names);
        // 3 I/Os of 100..127 us on vda (log2 index 8 holds [64, 128)).
        let s = snap(&[((kernel_dev(254, 0), 0), &[(8, 3)], 300_000)]);
        let text = text_interval(&cfg, &s, &disks);
        let want = "\n\ndisk = vda
     usecs               : count     distribution
         0 -> 1          : 0        |                                        |
         2 -> 3          : 0        |                                        |
         4 -> 7          : 0        |                                        |
         8 -> 15         : 0        |                                        |
        16 -> 31         : 0        |                                        |
        32 -> 63         : 0        |                                        |
        64 -> 127        : 3        |****************************************|

avg = 100 usecs, total: 300 usecs, count: 3

";
        assert_eq!(text, want);
    }

    #[test]
    fn json_lines_parse_and_carry_bccs_keys() {
        let cfg = BiolatencyConfig {
            per_flag: true,
            ..Default::default()
        };
        let s = snap(&[
            ((0, 0), &[(8, 3)], 300_000),
            ((0, 1 | 1 << 11), &[(3, 1)], 2_500),
        ]);
        let text = json_interval(&cfg, &s, &DiskNames(HashMap::new()), 1);
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["flags"], "Read");
        assert_eq!(lines[0]["val_type"], "usecs");
        assert_eq!(lines[0]["count"], 3);
        assert_eq!(lines[0]["sum"], 300);
        assert_eq!(lines[0]["data"][6]["interval-start"], 64);
        assert_eq!(lines[0]["data"][6]["interval-end"], 127);
        assert_eq!(lines[1]["flags"], "Sync-Write");
        assert_eq!(lines[1]["interval"], 1);
        let empty = json_interval(
            &BiolatencyConfig::default(),
            &Snapshot::default(),
            &DiskNames(HashMap::new()),
            1,
        );
        let v: Value = serde_json::from_str(empty.trim()).unwrap();
        assert_eq!(v["data"], json!([]));
        assert_eq!(v["count"], 0);
    }
}
