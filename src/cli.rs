//! Command-line types (clap) and their conversion into plain tool configurations.
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};

use crate::oneliner::runtime::TraceConfig;
use crate::tools::biolatency::{BiolatencyConfig, Linear};
use crate::tools::continuous::{
    host_name, parse_every, parse_label, parse_length, ContinuousConfig,
};
use crate::tools::diff::{DiffConfig, DiffOutput};
use crate::tools::funccount::FunccountConfig;
use crate::tools::hotcold::HotColdConfig;
use crate::tools::offcpu::{StacksAt, WaitConfig, WaitMode};
use crate::tools::profile::{ProfileConfig, Sampling};
use crate::tools::report::{ReportConfig, ReportOutput};
use crate::unwind::UnwindMode;

/// eBPF performance analysis in one binary: sampled stacks and flame graphs, with bcc's flags and layouts.
#[derive(Debug, Parser)]
#[command(name = "bpfprof", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sample on-CPU stacks (as bcc's profile): text, folded stacks or an SVG flame graph.
    #[command(after_help = PROFILE_EXAMPLES)]
    Profile(ProfileArgs),
    /// Time threads spend blocked, summed by stack (as bcc's offcputime).
    #[command(name = "offcpu", after_help = OFFCPU_EXAMPLES)]
    OffCpu(WaitArgs),
    /// Time threads spend blocked, summed by the stack of the thread that woke them (as bcc's wakeuptime).
    #[command(after_help = WAKEUP_EXAMPLES)]
    Wakeup(WaitArgs),
    /// Blocked stacks and their wakers' stacks, one line each (as bcc's offwaketime).
    #[command(name = "offwake", after_help = OFFWAKE_EXAMPLES)]
    OffWake(WaitArgs),
    /// On-CPU and off-CPU time of the same threads in one flame graph (hot/cold): where their wall time
    /// goes, running or waiting
    #[command(name = "hotcold", after_help = HOTCOLD_EXAMPLES)]
    HotCold(HotColdArgs),
    /// Block device I/O latency as a histogram (as bcc's biolatency).
    #[command(after_help = BIOLATENCY_EXAMPLES)]
    Biolatency(BiolatencyArgs),
    /// Count calls of functions, tracepoints and USDT probes matching a pattern (as bcc's funccount).
    #[command(after_help = FUNCCOUNT_EXAMPLES)]
    Funccount(FunccountArgs),
    /// Run a bpftrace-language program, compiled to BPF in-process (a subset so far: see the README).
    #[command(after_help = TRACE_EXAMPLES)]
    Trace(TraceArgs),
    /// Render a saved profile (pprof from --pprof, or folded lines) again: an SVG flame graph, folded
    /// stacks or text
    #[command(after_help = REPORT_EXAMPLES)]
    Report(ReportArgs),
    /// Compare two saved profiles (pprof or folded): a differential flame graph (red grew, blue shrank)
    /// or the functions whose share changed most
    #[command(after_help = DIFF_EXAMPLES)]
    Diff(DiffArgs),
    /// Show the unwind table bpfprof builds for a binary, and the rows that cover addresses (why a stack
    /// ends where it does)
    #[command(name = "unwind-table")]
    UnwindTable(UnwindTableArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to standard output
    #[command(hide = true)]
    Completions(CompletionsArgs),
    /// Write man pages (bpfprof.1 and one per subcommand) to a directory
    #[command(hide = true)]
    Manpages(ManpagesArgs),
}

/// completions' arguments.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell
    #[arg(value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

/// manpages' arguments.
#[derive(Debug, Args)]
pub struct ManpagesArgs {
    /// The directory to write bpfprof.1 and bpfprof-TOOL.1 to
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// Prints `shell`'s completion script for bpfprof.
pub fn print_completions(shell: clap_complete::Shell) -> Result<()> {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "bpfprof", &mut out);
    crate::util::write_stdout(&String::from_utf8_lossy(&out))
}

/// Writes bpfprof.1 and a page per visible subcommand (bpfprof-profile.1, ...) to `dir`.
pub fn write_manpages(dir: &std::path::Path) -> Result<()> {
    use anyhow::Context;
    use clap::CommandFactory;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let cmd = Cli::command();
    let mut pages = vec![("bpfprof".to_string(), cmd.clone())];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("bpfprof-{}", sub.get_name());
        pages.push((name.clone(), sub.clone().name(name)));
    }
    for (name, page) in pages {
        let mut out = Vec::new();
        clap_mangen::Man::new(page)
            .render(&mut out)
            .context("rendering a man page")?;
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, out).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

const REPORT_EXAMPLES: &str = "Examples:
  bpfprof report cpu.pprof --svg cpu.svg     # the flame graph of a profile taken elsewhere
  bpfprof report cpu.pprof -f > cpu.folded   # folded stacks: comm;outer;...;inner count
  bpfprof report off.pprof --value blocks -f # off-CPU: the number of blocks instead of the time
  bpfprof report old.folded --svg old.svg    # folded stacks (bcc's -f, perf | stackcollapse) too
  bpfprof report io.json --heatmap io.svg    # biolatency -j output as a latency heat map";

const DIFF_EXAMPLES: &str = "Examples:
  bpfprof diff before.pb.gz after.pb.gz --svg diff.svg   # widths from after; red grew, blue shrank
  bpfprof diff before.folded after.folded --text         # the functions whose share changed most
  bpfprof diff a.folded b.folded -f > diff.folded        # difffolded.pl's lines: stack before after";

/// diff's arguments.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The profile before (pprof from --pprof, or folded stacks)
    #[arg(value_name = "BEFORE")]
    pub before: PathBuf,
    /// The profile after
    #[arg(value_name = "AFTER")]
    pub after: PathBuf,
    /// Write a differential flame graph to OUT
    #[arg(long = "svg", value_name = "OUT", conflicts_with_all = ["folded", "text"])]
    pub svg: Option<PathBuf>,
    /// Print `stack before after` lines (difffolded.pl's; the default)
    #[arg(short = 'f', long = "folded", conflicts_with = "text")]
    pub folded: bool,
    /// Print the functions whose share of the total changed most, by total and by self time
    #[arg(long = "text")]
    pub text: bool,
    /// Compare amounts, not shares: do not scale BEFORE to AFTER's total
    #[arg(long = "no-normalize")]
    pub no_normalize: bool,
    /// The pprof sample type to compare (as report's --value)
    #[arg(long = "value", value_name = "TYPE")]
    pub value: Option<String>,
    /// The flame graph's title
    #[arg(long = "title", value_name = "TEXT")]
    pub title: Option<String>,
    /// Functions listed by --text, in each list
    #[arg(long = "top", value_name = "N", default_value_t = 20)]
    pub top: usize,
}

impl DiffArgs {
    pub fn into_config(self) -> DiffConfig {
        let output = match (self.svg, self.text) {
            (Some(path), _) => DiffOutput::Svg(path),
            (None, true) => DiffOutput::Text,
            (None, false) => DiffOutput::Folded,
        };
        DiffConfig {
            before: self.before,
            after: self.after,
            output,
            normalize: !self.no_normalize,
            value: self.value,
            title: self.title,
            top: self.top,
        }
    }
}

/// report's arguments.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A pprof profile (gzipped or not) or folded stacks (`a;b;c count` lines)
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Write an SVG flame graph to OUT
    #[arg(long = "svg", value_name = "OUT", conflicts_with_all = ["folded", "text", "heatmap"])]
    pub svg: Option<PathBuf>,
    /// Print folded stacks (the default)
    #[arg(short = 'f', long = "folded", conflicts_with_all = ["text", "heatmap"])]
    pub folded: bool,
    /// Print text blocks, innermost frame first (bcc's layout)
    #[arg(long = "text", conflicts_with = "heatmap")]
    pub text: bool,
    /// FILE is biolatency -j output: write its latency heat map (a column per interval) to OUT
    #[arg(long = "heatmap", value_name = "OUT")]
    pub heatmap: Option<PathBuf>,
    /// The pprof sample type to show: samples (the default) or cpu for profile, offcpu (the default, in
    /// microseconds) or blocks for the off-CPU tools
    #[arg(long = "value", value_name = "TYPE")]
    pub value: Option<String>,
    /// The flame graph's title
    #[arg(long = "title", value_name = "TEXT")]
    pub title: Option<String>,
}

impl ReportArgs {
    pub fn into_config(self) -> ReportConfig {
        let output = match (self.svg, self.text, self.heatmap) {
            (_, _, Some(path)) => ReportOutput::Heatmap(path),
            (Some(path), _, None) => ReportOutput::Svg(path),
            (None, true, None) => ReportOutput::Text,
            (None, false, None) => ReportOutput::Folded,
        };
        ReportConfig {
            input: self.file,
            output,
            value: self.value,
            title: self.title,
        }
    }
}

/// unwind-table's arguments.
#[derive(Debug, Args)]
pub struct UnwindTableArgs {
    /// An ELF file (executable or shared library)
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Addresses in the file's own address space (hex, 0x optional): the rows that cover them
    #[arg(value_name = "ADDR")]
    pub addrs: Vec<String>,
}

const TRACE_EXAMPLES: &str = "\
Examples:
  bpfprof trace -e 'tracepoint:syscalls:sys_enter_openat { printf(\"%s %s\\n\", comm, str(args->filename)); }'
  bpfprof trace -e 't:syscalls:sys_exit_read { @[comm] = hist(args->ret); }'
  bpfprof trace -e 'tracepoint:sched:sched_switch { @[args->prev_comm] = count(); } interval:s:5 { exit(); }'
  bpfprof trace -e 'profile:hz:99 { @[comm] = count(); }' -d 5
  bpfprof trace -e 'uretprobe:/bin/bash:readline { printf(\"%s\\n\", str(retval)); }'
  bpfprof trace -e 'usdt:/usr/bin/python3:function__entry { @[str(arg1)] = count(); }' -p PID
  bpfprof trace -c './app' -e 'uprobe:./app:work { @[ustack] = count(); }'
  bpfprof trace -l 'tracepoint:syscalls:sys_enter_open*'
  bpfprof trace prog.bt              # a program in a file (tools/*.bt: bpftrace versions of the tools)";

const FUNCCOUNT_EXAMPLES: &str = "\
Patterns:
  t:SUBSYS:EVENT      tracepoints, * globs in both parts (t:syscalls:sys_enter_*, t:sched:*)
  u:LIB_OR_PATH:FUNC  user functions in a binary or library (u:c:malloc*, u:/usr/bin/bash:readline)
  U:LIB_OR_PATH:PROBE USDT probes (PROBE or PROVIDER:PROBE)
  k:FUNC, FUNC        kernel functions (kprobes: not on every kernel)
  LIB:FUNC            as u:LIB:FUNC (bcc's form)

Examples:
  bpfprof funccount 't:syscalls:sys_enter_*'   # count system calls by type, until Ctrl-C
  bpfprof funccount -p 1234 'u:c:malloc*'      # malloc-family calls of one process
  bpfprof funccount -i 1 -T 't:sched:*'        # scheduler tracepoints, every second, with timestamps
  bpfprof funccount -d 10 'U:/usr/bin/python3:function__*'   # USDT probes for 10 seconds
  bpfprof funccount -r 'u:c:^str(len|cmp)$'    # a regular expression instead of a glob
  bpfprof funccount 'vfs_*'                    # kernel functions starting with vfs_";

const BIOLATENCY_EXAMPLES: &str = "\
Examples:
  bpfprof biolatency                  # summarize block I/O latency as a histogram, until Ctrl-C
  bpfprof biolatency 1 10             # print 1 second summaries, 10 times
  bpfprof biolatency -mT 1            # 1s summaries, milliseconds, and timestamps
  bpfprof biolatency -Q               # include OS queued time in I/O time
  bpfprof biolatency -D               # show each disk device separately
  bpfprof biolatency -F               # show I/O flags separately
  bpfprof biolatency -d vda           # trace vda only
  bpfprof biolatency -c /sys/fs/cgroup/system.slice   # I/O submitted from this cgroup only
  bpfprof biolatency -j 5 1           # one JSON object per histogram (JSON Lines)
  bpfprof biolatency --heatmap io.svg 1 10   # 1 s histograms for 10 s, and their heat map
  bpfprof biolatency --heatmap io.svg --heatmap-interval 100ms   # finer columns, until Ctrl-C
  bpfprof biolatency --linear 100 --summary 5 1   # 100 us buckets, with count, avg, p50/p90/p99";

const OFFCPU_EXAMPLES: &str = "\
Examples:
  bpfprof offcpu                      # blocked time of all threads by stack, until Ctrl-C
  bpfprof offcpu -p 1234 5            # one process for 5 seconds
  bpfprof offcpu -m 1000 -f 10        # blocks of 1 ms or more, folded (values in us)
  bpfprof offcpu --state 2            # only TASK_UNINTERRUPTIBLE sleeps (2: see include/linux/sched.h)
  bpfprof offcpu --svg off.svg 10     # off-CPU time flame graph";

const HOTCOLD_EXAMPLES: &str = "\
Examples:
  bpfprof hotcold -p 1234 --svg hc.svg 10   # one process's wall time, running (warm colours) or blocked (blue)
  bpfprof hotcold -p 1234 --per-thread -f 5 # folded, a root per thread: comm-tid;[on-cpu];... (values in us)
  bpfprof hotcold -p 1234 5                 # each thread's on-CPU and off-CPU milliseconds";

const WAKEUP_EXAMPLES: &str = "\
Examples:
  bpfprof wakeup 5                    # blocked time by waker stack for 5 seconds
  bpfprof wakeup -p 1234 -f 5         # wakers of one process's threads, folded: waker;stack;target us
  bpfprof wakeup --svg wake.svg 10    # wakeup time flame graph";

const OFFWAKE_EXAMPLES: &str = "\
Examples:
  bpfprof offwake 5                   # blocked stacks with their wakers' stacks for 5 seconds
  bpfprof offwake -p 1234 -f 5        # folded: target;stack;--;waker stack;waker us
  bpfprof offwake --svg chain.svg 10  # both halves in one flame graph (waker frames in aqua)";

const PROFILE_EXAMPLES: &str = "\
Examples:
  bpfprof profile                     # all CPUs at 49 Hz until Ctrl-C, then stacks with counts
  bpfprof profile -F 999 -p 1234 10   # one process at 999 Hz for 10 seconds
  bpfprof profile -f 5 > out.folded   # folded stacks: comm;outer;...;inner count
  bpfprof profile --svg cpu.svg 5     # flame graph of the whole system for 5 seconds";

/// Which threads to trace: the filters shared by stack tools.
#[derive(Debug, Args, Default)]
pub struct TargetArgs {
    /// Trace these processes only (repeat or comma-separate)
    #[arg(short = 'p', long = "pid", value_name = "PID", value_delimiter = ',')]
    pub pids: Vec<u32>,
    /// Trace these threads only (repeat or comma-separate)
    #[arg(
        short = 'L',
        long = "tid",
        value_name = "TID",
        value_delimiter = ',',
        conflicts_with = "pids"
    )]
    pub tids: Vec<u32>,
}

/// How stacks are captured and printed: shared by stack tools.
#[derive(Debug, Args, Default)]
pub struct StackArgs {
    /// Show user-space stacks only (no kernel frames)
    #[arg(
        short = 'U',
        long = "user-stacks-only",
        conflicts_with = "kernel_stacks_only"
    )]
    pub user_stacks_only: bool,
    /// Show kernel stacks only (no user frames)
    #[arg(short = 'K', long = "kernel-stacks-only")]
    pub kernel_stacks_only: bool,
    /// Insert a delimiter between kernel and user frames
    #[arg(short = 'd', long = "delimited")]
    pub delimited: bool,
    /// Add the _[k] annotation to kernel function names
    #[arg(short = 'a', long = "annotations")]
    pub annotations: bool,
    /// Print folded stacks, one line per stack (for flamegraph.pl / inferno)
    #[arg(short = 'f', long = "folded")]
    pub folded: bool,
    /// Write an SVG flame graph to FILE
    #[arg(long = "svg", value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Write a gzipped pprof profile to FILE (for go tool pprof, Pyroscope, Parca; `bpfprof report`
    /// renders it later)
    #[arg(long = "pprof", value_name = "FILE")]
    pub pprof: Option<PathBuf>,
    /// Number of distinct stacks that can be stored
    #[arg(long = "stack-storage-size", value_name = "N", default_value_t = 16384)]
    pub stack_storage_size: u32,
    /// Frames captured per stack (at most 127)
    #[arg(long = "perf-max-stack-depth", value_name = "N", default_value_t = 127)]
    pub perf_max_stack_depth: u32,
    /// How user stacks are walked: auto (unwind tables from .eh_frame where a binary has them, frame
    /// pointers elsewhere), dwarf (unwind tables only), fp (frame pointers only, as bcc and perf -g)
    #[arg(long = "unwind", value_name = "MODE", default_value = "auto")]
    pub unwind: UnwindMode,
    /// The most memory unwind tables may take in the kernel, in MiB (taken as tables are loaded)
    #[arg(long = "unwind-memory", value_name = "MIB", default_value_t = 256)]
    pub unwind_memory: u32,
    /// Show functions the compiler inlined as frames of their own, marked `[inlined]` (from DWARF: the
    /// binary's, or its debug file's under /usr/lib/debug)
    #[arg(long = "inline")]
    pub inline: bool,
    /// Add each frame's source line, `func (file.c:42)`, where DWARF has it (the inlined call's line in
    /// the functions around an inlined frame)
    #[arg(long = "lines")]
    pub lines: bool,
}

#[derive(Debug, Args)]
pub struct ProfileArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub stack: StackArgs,
    /// Sample frequency in Hertz
    #[arg(
        short = 'F',
        long = "frequency",
        value_name = "HZ",
        conflicts_with = "count"
    )]
    pub frequency: Option<u64>,
    /// Sample period: one sample every COUNT nanoseconds of CPU time
    #[arg(short = 'c', long = "count", value_name = "COUNT")]
    pub count: Option<u64>,
    /// Sample this CPU only
    #[arg(short = 'C', long = "cpu", value_name = "CPU")]
    pub cpu: Option<u32>,
    /// Include the idle task (CPU idle time)
    #[arg(short = 'I', long = "include-idle")]
    pub include_idle: bool,
    #[command(flatten)]
    pub continuous: ContinuousArgs,
    /// Seconds to sample (default: until Ctrl-C)
    #[arg(value_name = "DURATION")]
    pub duration: Option<u64>,
}

/// Continuous profiling: a profile per window, written to a directory and/or pushed to Pyroscope.
#[derive(Debug, Args, Default)]
pub struct ContinuousArgs {
    /// Profile continuously: one pprof profile per window (--every), to --pprof-dir and/or --push
    #[arg(long = "continuous")]
    pub continuous: bool,
    /// The length of a window (10s, 500ms, 1m)
    #[arg(
        long = "every",
        value_name = "LEN",
        default_value = "10s",
        requires = "continuous"
    )]
    pub every: String,
    /// Write each window's profile to DIR (TOOL-UTCSTART-SEQ.pb.gz), keeping the last --keep
    #[arg(long = "pprof-dir", value_name = "DIR", requires = "continuous")]
    pub pprof_dir: Option<PathBuf>,
    /// Profiles kept in --pprof-dir (the oldest are removed)
    #[arg(long = "keep", value_name = "N", default_value_t = 60, requires = "continuous",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub keep: u32,
    /// Push each window to a Grafana Pyroscope server's ingest API (http://HOST:4040)
    #[arg(long = "push", value_name = "URL", requires = "continuous")]
    pub push: Option<String>,
    /// The application name pushed (Pyroscope's service name)
    #[arg(
        long = "service",
        value_name = "NAME",
        default_value = "bpfprof",
        requires = "continuous"
    )]
    pub service: String,
    /// A label of the pushed profiles (repeat): KEY=VALUE, after host=HOSTNAME
    #[arg(long = "label", value_name = "KEY=VALUE", requires = "continuous")]
    pub labels: Vec<String>,
}

impl ContinuousArgs {
    /// The continuous configuration, or None without --continuous.
    fn into_config(self, one_shot_output: bool) -> Result<Option<ContinuousConfig>> {
        if !self.continuous {
            return Ok(None);
        }
        if one_shot_output {
            bail!("--continuous writes a profile per window: use --pprof-dir DIR (not -f, --svg or --pprof)");
        }
        if self.pprof_dir.is_none() && self.push.is_none() {
            bail!("--continuous needs somewhere to put the windows: --pprof-dir DIR and/or --push URL");
        }
        if self.service.is_empty() || self.service.contains(['{', '}', ',', '=', ' ']) {
            bail!(
                "--service {:?}: a name without spaces, braces, commas or =",
                self.service
            );
        }
        let every = parse_every(&self.every)?;
        if self.push.is_some() && every < std::time::Duration::from_secs(1) {
            bail!(
                "--every {}: Pyroscope's times are whole seconds: push windows of 1s or more",
                self.every
            );
        }
        let mut labels = vec![("host".to_string(), host_name())];
        for l in &self.labels {
            labels.push(parse_label(l)?);
        }
        Ok(Some(ContinuousConfig {
            every,
            dir: self.pprof_dir,
            keep: self.keep as usize,
            push: self.push,
            service: self.service,
            labels,
        }))
    }
}

/// The off-CPU tools' arguments (offcpu, wakeup, offwake): bcc's offcputime flags. Thread filters apply to
/// the blocked thread.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Trace these processes only (repeat or comma-separate)
    #[arg(
        short = 'p',
        long = "pid",
        value_name = "PID",
        value_delimiter = ',',
        conflicts_with_all = ["tids", "user_threads_only", "kernel_threads_only"]
    )]
    pub pids: Vec<u32>,
    /// Trace these threads only (repeat or comma-separate)
    #[arg(
        short = 't',
        long = "tid",
        value_name = "TID",
        value_delimiter = ',',
        conflicts_with_all = ["user_threads_only", "kernel_threads_only"]
    )]
    pub tids: Vec<u32>,
    /// User threads only (no kernel threads)
    #[arg(
        short = 'u',
        long = "user-threads-only",
        conflicts_with = "kernel_threads_only"
    )]
    pub user_threads_only: bool,
    /// Kernel threads only (no user threads)
    #[arg(short = 'k', long = "kernel-threads-only")]
    pub kernel_threads_only: bool,
    #[command(flatten)]
    pub stack: StackArgs,
    /// Count only blocks of at least this many microseconds
    #[arg(
        short = 'm',
        long = "min-block-time",
        value_name = "US",
        default_value_t = 1
    )]
    pub min_block_time: u64,
    /// Count only blocks of at most this many microseconds
    #[arg(short = 'M', long = "max-block-time", value_name = "US")]
    pub max_block_time: Option<u64>,
    /// Count only blocks that began in these task states: a bitmask (1 TASK_INTERRUPTIBLE,
    /// 2 TASK_UNINTERRUPTIBLE, ...), or 0 for TASK_RUNNING (preempted)
    #[arg(long = "state", value_name = "STATE")]
    pub state: Option<u32>,
    /// Trace one block in N, chosen at random, and scale the totals by N (the others cost almost
    /// nothing): for switch storms on busy hosts
    #[arg(long = "sample", value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub sample: u32,
    /// When offcpu takes a block's stacks: `end` (when it ends, and only if it counts: every thread's
    /// return to user space then runs a small program), `start` (when it begins: each traced block pays
    /// for its stacks), or `auto`: `end`, but `start` with -p/-t or --sample 8 or more, where few blocks
    /// are traced and the rest of the host should pay nothing
    #[arg(long = "stacks-at", value_name = "WHEN", value_enum, default_value_t = StacksAt::Auto)]
    pub stacks_at: StacksAt,
    #[command(flatten)]
    pub continuous: ContinuousArgs,
    /// Seconds to trace (default: until Ctrl-C)
    #[arg(value_name = "DURATION")]
    pub duration: Option<u64>,
}

impl WaitArgs {
    /// Validates the arguments and turns them into the off-CPU tools' plain configuration.
    pub fn into_config(self, mode: WaitMode) -> Result<WaitConfig> {
        let s = &self.stack;
        s.check()?;
        let max_block_us = self.max_block_time.unwrap_or(u64::MAX);
        if self.min_block_time > max_block_us {
            bail!(
                "-M {max_block_us} is below -m {} (microseconds; -m defaults to 1)",
                self.min_block_time
            );
        }
        if mode == WaitMode::Wakeup && self.state == Some(0) {
            bail!("--state 0 selects preempted threads, which nobody wakes: wakeup would show nothing");
        }
        if self.duration == Some(0) {
            bail!("duration must be at least 1 second");
        }
        if mode != WaitMode::OffCpu && self.stacks_at != StacksAt::Auto {
            bail!("--stacks-at applies to offcpu only: wakeup and offwake take stacks when blocks begin");
        }
        let one_shot = s.folded || s.svg.is_some() || s.pprof.is_some();
        let continuous = self.continuous.into_config(one_shot)?;
        Ok(WaitConfig {
            stacks_at: self.stacks_at,
            continuous,
            mode,
            pids: self.pids,
            tids: self.tids,
            user_threads_only: self.user_threads_only,
            kernel_threads_only: self.kernel_threads_only,
            user_stacks_only: s.user_stacks_only,
            kernel_stacks_only: s.kernel_stacks_only,
            delimited: s.delimited,
            annotations: s.annotations,
            folded: s.folded,
            svg: s.svg.clone(),
            pprof: s.pprof.clone(),
            stack_storage_size: s.stack_storage_size,
            max_stack_depth: s.perf_max_stack_depth,
            unwind: s.unwind,
            unwind_memory_mib: s.unwind_memory,
            names: s.name_options(),
            min_block_us: self.min_block_time,
            max_block_us,
            state: self.state,
            sample_every: self.sample,
            duration: self.duration.map(Duration::from_secs),
        })
    }
}

/// hotcold's arguments: profile's and offcpu's, for both halves.
#[derive(Debug, Args)]
pub struct HotColdArgs {
    /// Trace these processes only (repeat or comma-separate)
    #[arg(
        short = 'p',
        long = "pid",
        value_name = "PID",
        value_delimiter = ',',
        conflicts_with = "tids"
    )]
    pub pids: Vec<u32>,
    /// Trace these threads only (repeat or comma-separate)
    #[arg(short = 't', long = "tid", value_name = "TID", value_delimiter = ',')]
    pub tids: Vec<u32>,
    #[command(flatten)]
    pub stack: StackArgs,
    /// On-CPU sample frequency in Hertz
    #[arg(
        short = 'F',
        long = "frequency",
        value_name = "HZ",
        default_value_t = 99
    )]
    pub frequency: u64,
    /// Count only blocks of at least this many microseconds
    #[arg(
        short = 'm',
        long = "min-block-time",
        value_name = "US",
        default_value_t = 1
    )]
    pub min_block_time: u64,
    /// A root per thread (comm-tid), with its on-CPU and off-CPU stacks under it
    #[arg(long = "per-thread")]
    pub per_thread: bool,
    /// Seconds to trace (default: until Ctrl-C)
    #[arg(value_name = "DURATION")]
    pub duration: Option<u64>,
}

impl HotColdArgs {
    /// Validates the arguments and turns them into hotcold's plain configuration.
    pub fn into_config(self) -> Result<HotColdConfig> {
        let s = &self.stack;
        s.check()?;
        if s.pprof.is_some() {
            bail!("hotcold writes folded stacks (-f) or a flame graph (--svg), not pprof: use profile and offcpu --pprof for those");
        }
        if self.frequency == 0 || self.frequency > 1_000_000_000 {
            bail!("sample frequency (-F) must be between 1 and 1000000000");
        }
        if self.duration == Some(0) {
            bail!("duration must be at least 1 second");
        }
        Ok(HotColdConfig {
            pids: self.pids,
            tids: self.tids,
            user_stacks_only: s.user_stacks_only,
            kernel_stacks_only: s.kernel_stacks_only,
            delimited: s.delimited,
            annotations: s.annotations,
            folded: s.folded,
            svg: s.svg.clone(),
            per_thread: self.per_thread,
            frequency: self.frequency,
            stack_storage_size: s.stack_storage_size,
            max_stack_depth: s.perf_max_stack_depth,
            unwind: s.unwind,
            unwind_memory_mib: s.unwind_memory,
            names: s.name_options(),
            min_block_us: self.min_block_time,
            duration: self.duration.map(Duration::from_secs),
        })
    }
}

/// biolatency's arguments: bcc's and libbpf-tools' biolatency flags, plus linear buckets and a summary.
#[derive(Debug, Args)]
pub struct BiolatencyArgs {
    /// Include a timestamp on output
    #[arg(short = 'T', long = "timestamp")]
    pub timestamp: bool,
    /// Millisecond histogram
    #[arg(short = 'm', long = "milliseconds")]
    pub milliseconds: bool,
    /// Include OS queued time in I/O time
    #[arg(short = 'Q', long = "queued")]
    pub queued: bool,
    /// Print a histogram per disk device
    #[arg(short = 'D', long = "disks")]
    pub disks: bool,
    /// Print a histogram per set of I/O flags
    #[arg(short = 'F', long = "flags")]
    pub flags: bool,
    /// Trace this disk only (e.g. vda)
    #[arg(short = 'd', long = "disk", value_name = "DISK")]
    pub disk: Option<String>,
    /// Trace I/O submitted by tasks in this cgroup v2 directory only
    #[arg(short = 'c', long = "cgroup", value_name = "PATH")]
    pub cgroup: Option<PathBuf>,
    /// Print the average, total and count (as bcc's -e)
    #[arg(short = 'e', long = "extension")]
    pub extension: bool,
    /// JSON output: one object per histogram and interval, one per line
    #[arg(short = 'j', long = "json")]
    pub json: bool,
    /// Linear buckets: STEP (from 0, 100 buckets) or MIN,MAX,STEP, in usecs (msecs with -m)
    #[arg(long = "linear", value_name = "STEP|MIN,MAX,STEP")]
    pub linear: Option<String>,
    /// Print count, average and estimated p50/p90/p99 under each histogram
    #[arg(short = 's', long = "summary")]
    pub summary: bool,
    /// Write a latency heat map (time across, latency buckets up, colour for the count) to FILE.svg
    /// when tracing ends
    #[arg(long = "heatmap", value_name = "FILE")]
    pub heatmap: Option<PathBuf>,
    /// The time a heat map column covers (500ms, 1s, 10s; default: INTERVAL, else 1s)
    #[arg(long = "heatmap-interval", value_name = "LEN", requires = "heatmap")]
    pub heatmap_interval: Option<String>,
    /// Output interval, in seconds (default: print once, at Ctrl-C)
    #[arg(value_name = "INTERVAL")]
    pub interval: Option<u64>,
    /// Number of outputs
    #[arg(value_name = "COUNT")]
    pub count: Option<u64>,
}

impl BiolatencyArgs {
    /// Validates the arguments and turns them into biolatency's plain configuration.
    pub fn into_config(self) -> Result<BiolatencyConfig> {
        if self.interval == Some(0) {
            bail!("interval must be at least 1 second");
        }
        if self.count == Some(0) {
            bail!("count must be at least 1");
        }
        let linear = self.linear.as_deref().map(Linear::parse).transpose()?;
        let heatmap_every = match &self.heatmap_interval {
            Some(text) => parse_length("--heatmap-interval", text)?,
            None => self
                .interval
                .map_or(Duration::from_secs(1), Duration::from_secs),
        };
        Ok(BiolatencyConfig {
            heatmap: self.heatmap,
            heatmap_every,
            timestamp: self.timestamp,
            milliseconds: self.milliseconds,
            queued: self.queued,
            per_disk: self.disks,
            per_flag: self.flags,
            disk: self.disk,
            cgroup: self.cgroup,
            extension: self.extension,
            json: self.json,
            linear,
            summary: self.summary,
            interval: self.interval.map(Duration::from_secs),
            count: self.count,
        })
    }
}

/// funccount's arguments: bcc's funccount flags, plus --json and a probe limit that a flag raises.
#[derive(Debug, Args)]
pub struct FunccountArgs {
    /// Count calls in this process only
    #[arg(short = 'p', long = "pid", value_name = "PID")]
    pub pid: Option<u32>,
    /// Print counts every INTERVAL seconds (each interval's own counts)
    #[arg(short = 'i', long = "interval", value_name = "INTERVAL")]
    pub interval: Option<u64>,
    /// Total duration of the trace, in seconds
    #[arg(short = 'd', long = "duration", value_name = "DURATION")]
    pub duration: Option<u64>,
    /// Include a timestamp on output
    #[arg(short = 'T', long = "timestamp")]
    pub timestamp: bool,
    /// The pattern's name part is a regular expression (default: * globs)
    #[arg(short = 'r', long = "regexp")]
    pub regexp: bool,
    /// Count calls on this CPU only
    #[arg(short = 'c', long = "cpu", value_name = "CPU")]
    pub cpu: Option<u32>,
    /// JSON output: one object per interval, one per line
    #[arg(short = 'j', long = "json")]
    pub json: bool,
    /// Refuse patterns that match more probe points than this
    #[arg(long = "max-probes", value_name = "N", default_value_t = 10000)]
    pub max_probes: usize,
    /// What to count: t:SUBSYS:EVENT, u:LIB:FUNC, U:LIB:PROBE, k:FUNC or FUNC
    #[arg(value_name = "PATTERN")]
    pub pattern: String,
}

impl FunccountArgs {
    /// Validates the arguments and turns them into funccount's plain configuration.
    pub fn into_config(self) -> Result<FunccountConfig> {
        if self.interval == Some(0) {
            bail!("interval (-i) must be at least 1 second");
        }
        if self.duration == Some(0) {
            bail!("duration (-d) must be at least 1 second");
        }
        if self.max_probes == 0 {
            bail!("--max-probes must be at least 1");
        }
        Ok(FunccountConfig {
            pattern: self.pattern,
            regex: self.regexp,
            pid: self.pid,
            cpu: self.cpu,
            interval: self.interval.map(Duration::from_secs),
            duration: self.duration.map(Duration::from_secs),
            timestamp: self.timestamp,
            json: self.json,
            max_probes: self.max_probes,
        })
    }
}

/// trace's arguments: a program (-e or a file), as bpftrace takes them.
#[derive(Debug, Args)]
pub struct TraceArgs {
    /// The program's text
    #[arg(short = 'e', value_name = "PROGRAM")]
    pub program: Option<String>,
    /// A file holding the program (- for standard input)
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Positional parameters: $1, $2... in the program (after FILE, or after -e PROGRAM)
    #[arg(
        value_name = "ARGS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub params: Vec<String>,
    /// Parse, check and compile the program, then stop (nothing is loaded)
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    /// Allow what changes the system: system() runs commands, signal() sends signals (as bpftrace's)
    #[arg(long = "unsafe")]
    pub unsafe_: bool,
    /// Print each probe's BPF instructions on stderr
    #[arg(short = 'v')]
    pub verbose: bool,
    /// Stop after this many seconds (default: at exit() or Ctrl-C)
    #[arg(short = 'd', long = "duration", value_name = "SECONDS")]
    pub duration: Option<u64>,
    /// The target process: uprobes and USDT probes fire in it only, library names are its libraries
    #[arg(short = 'p', value_name = "PID", conflicts_with = "command")]
    pub pid: Option<u32>,
    /// Run this command, traced from its first instruction (it is the target, as -p; shell syntax runs
    /// through sh); the trace ends when it exits, and it is killed if the trace ends first
    #[arg(short = 'c', value_name = "CMD")]
    pub command: Option<String>,
    /// List the probes matching a pattern (tracepoint:syscalls:*, uprobe:/bin/bash:read*, usdt:BIN:*,
    /// kprobe:vfs_*), then stop
    #[arg(short = 'l', value_name = "PATTERN", num_args = 0..=1, default_missing_value = "tracepoint:*:*")]
    pub list: Option<String>,
    /// Output format: text (bpftrace's), or json (bpftrace's -f json: one JSON object per line)
    #[arg(short = 'f', value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub format: String,
    /// How ustack walks user stacks: auto (unwind tables from .eh_frame where a binary has them, frame
    /// pointers elsewhere), dwarf (unwind tables only), fp (frame pointers only, as bpftrace)
    #[arg(long = "unwind", value_name = "MODE", default_value = "auto")]
    pub unwind: UnwindMode,
    /// The most memory unwind tables may take in the kernel, in MiB
    #[arg(long = "unwind-memory", value_name = "MIB", default_value_t = 256)]
    pub unwind_memory: u32,
}

impl TraceArgs {
    pub fn into_config(self) -> Result<TraceConfig> {
        if let Some(pattern) = self.list {
            return Ok(TraceConfig {
                list: Some(pattern),
                pid: self.pid,
                ..TraceConfig::default()
            });
        }
        if let Some(pid) = self.pid {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                bail!("no process {pid} (-p)");
            }
        }
        let mut params = self.params;
        let (program, source_name) = match (self.program, self.file) {
            // With -e, what clap took for a file is the first parameter.
            (Some(p), Some(first)) => {
                params.insert(0, first.display().to_string());
                (p, "stdin".to_string())
            }
            (Some(p), None) => (p, "stdin".to_string()),
            (None, Some(f)) if f.as_os_str() == "-" => {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                    .map_err(|e| anyhow::anyhow!("reading the program from standard input: {e}"))?;
                (text, "stdin".to_string())
            }
            (None, Some(f)) => (
                std::fs::read_to_string(&f)
                    .map_err(|e| anyhow::anyhow!("reading {}: {e}", f.display()))?,
                f.display().to_string(),
            ),
            _ => bail!("give a program with -e 'PROGRAM', or a file"),
        };
        if self.duration == Some(0) {
            bail!("duration must be at least 1 second");
        }
        if self.unwind_memory == 0 || self.unwind_memory > MAX_UNWIND_MEMORY_MIB {
            bail!("--unwind-memory must be between 1 and {MAX_UNWIND_MEMORY_MIB} (MiB)");
        }
        Ok(TraceConfig {
            program,
            source_name,
            dry_run: self.dry_run,
            unsafe_: self.unsafe_,
            verbose: self.verbose,
            duration: self.duration.map(Duration::from_secs),
            pid: self.pid,
            command: self.command,
            json: self.format == "json",
            list: None,
            params,
            unwind: self.unwind,
            unwind_memory_mib: self.unwind_memory,
        })
    }
}

impl StackArgs {
    fn name_options(&self) -> crate::symbolize::NameOptions {
        crate::symbolize::NameOptions {
            inline: self.inline,
            lines: self.lines,
        }
    }

    fn check(&self) -> Result<()> {
        if self.folded && self.svg.is_some() {
            bail!("choose one output: -f (folded) or --svg FILE");
        }
        if self.stack_storage_size == 0 {
            bail!("--stack-storage-size must be greater than 0");
        }
        if self.perf_max_stack_depth == 0 || self.perf_max_stack_depth > MAX_STACK_DEPTH {
            bail!("--perf-max-stack-depth must be between 1 and {MAX_STACK_DEPTH}");
        }
        if self.unwind_memory == 0 || self.unwind_memory > MAX_UNWIND_MEMORY_MIB {
            bail!("--unwind-memory must be between 1 and {MAX_UNWIND_MEMORY_MIB} (MiB)");
        }
        Ok(())
    }
}

/// The most frames bpf_get_stack gives (the kernel's default perf_event_max_stack).
pub const MAX_STACK_DEPTH: u32 = 127;

/// The most --unwind-memory takes: UNWIND_MAX_CHUNKS (bpf/unwind.h) chunks of 512 KiB.
pub const MAX_UNWIND_MEMORY_MIB: u32 = 1024;

impl ProfileArgs {
    /// Validates the arguments and turns them into the profile tool's plain configuration.
    pub fn into_config(self) -> Result<ProfileConfig> {
        let sampling = match (self.frequency, self.count) {
            (_, Some(0)) => bail!("sample period (-c) must be greater than 0"),
            (_, Some(c)) => Sampling::Period(c),
            (Some(0), _) => bail!("sample frequency (-F) must be greater than 0"),
            (Some(f), _) => Sampling::Frequency(f),
            (None, None) => Sampling::Frequency(49),
        };
        let s = &self.stack;
        s.check()?;
        if self.duration == Some(0) {
            bail!("duration must be at least 1 second");
        }
        let one_shot = s.folded || s.svg.is_some() || s.pprof.is_some();
        let continuous = self.continuous.into_config(one_shot)?;
        Ok(ProfileConfig {
            continuous,
            pids: self.target.pids,
            tids: self.target.tids,
            user_stacks_only: s.user_stacks_only,
            kernel_stacks_only: s.kernel_stacks_only,
            delimited: s.delimited,
            annotations: s.annotations,
            folded: s.folded,
            svg: s.svg.clone(),
            pprof: s.pprof.clone(),
            stack_storage_size: s.stack_storage_size,
            max_stack_depth: s.perf_max_stack_depth,
            unwind: s.unwind,
            unwind_memory_mib: s.unwind_memory,
            names: s.name_options(),
            sampling,
            cpu: self.cpu,
            include_idle: self.include_idle,
            duration: self.duration.map(Duration::from_secs),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<ProfileConfig> {
        let mut argv = vec!["bpfprof", "profile"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv)?;
        match cli.command {
            Command::Profile(p) => p.into_config(),
            _ => unreachable!("a profile command"),
        }
    }

    #[test]
    fn defaults_are_bccs() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.sampling, Sampling::Frequency(49));
        assert_eq!(c.duration, None);
        assert_eq!(c.stack_storage_size, 16384);
        assert_eq!(c.max_stack_depth, 127);
        assert!(!c.folded && !c.include_idle && c.pids.is_empty());
    }

    #[test]
    fn pids_repeat_and_comma_separate_and_duration_is_positional() {
        let c = parse(&["-F", "999", "-p", "1,2", "-p", "3", "10"]).unwrap();
        assert_eq!(c.pids, vec![1, 2, 3]);
        assert_eq!(parse(&["-L", "7,8"]).unwrap().tids, vec![7, 8]);
        assert_eq!(c.sampling, Sampling::Frequency(999));
        assert_eq!(c.duration, Some(Duration::from_secs(10)));
    }

    #[test]
    fn count_sets_a_period() {
        let c = parse(&["-c", "100000", "-C", "1", "-I", "-a", "-d", "-f"]).unwrap();
        assert_eq!(c.sampling, Sampling::Period(100000));
        assert_eq!(c.cpu, Some(1));
        assert!(c.include_idle && c.annotations && c.delimited && c.folded);
    }

    #[test]
    fn bad_values_are_refused() {
        for args in [
            &["-F", "0"][..],
            &["-c", "0"],
            &["-F", "49", "-c", "10"],
            &["-U", "-K"],
            &["-p", "abc"],
            &["-p", "1", "-L", "2"],
            &["--perf-max-stack-depth", "500"],
            &["--stack-storage-size", "0"],
            &["-f", "--svg", "x.svg"],
            &["0"],
            &["--no-such-flag"],
        ] {
            assert!(parse(args).is_err(), "{args:?} was accepted");
        }
    }

    fn parse_wait(args: &[&str]) -> Result<WaitConfig> {
        let cli = Cli::try_parse_from(args)?;
        match cli.command {
            Command::OffCpu(a) => a.into_config(WaitMode::OffCpu),
            Command::Wakeup(a) => a.into_config(WaitMode::Wakeup),
            Command::OffWake(a) => a.into_config(WaitMode::OffWake),
            _ => unreachable!("an off-CPU command"),
        }
    }

    #[test]
    fn offcpu_defaults_and_flags_are_bccs() {
        let c = parse_wait(&["bpfprof", "offcpu"]).unwrap();
        assert_eq!((c.min_block_us, c.max_block_us), (1, u64::MAX));
        assert_eq!((c.state, c.duration), (None, None));
        let c = parse_wait(&[
            "bpfprof", "offwake", "-t", "5,6", "-m", "10", "-M", "20", "--state", "2", "-K", "-f",
            "3",
        ])
        .unwrap();
        assert_eq!(c.mode, WaitMode::OffWake);
        assert_eq!(c.tids, vec![5, 6]);
        assert_eq!((c.min_block_us, c.max_block_us, c.state), (10, 20, Some(2)));
        assert!(c.kernel_stacks_only && c.folded);
        assert_eq!(c.duration, Some(Duration::from_secs(3)));
        assert!(
            parse_wait(&["bpfprof", "wakeup", "-u"])
                .unwrap()
                .user_threads_only
        );
    }

    #[test]
    fn offcpu_bad_values_are_refused() {
        for args in [
            &["-p", "1", "-t", "2"][..],
            &["-p", "1", "-u"],
            &["-u", "-k"],
            &["-t", "1", "-k"],
            &["-m", "10", "-M", "5"],
            &["-U", "-K"],
            &["-f", "--svg", "x.svg"],
            &["--state", "x"],
            &["0"],
            &["-L", "1"],
        ] {
            let mut argv = vec!["bpfprof", "offcpu"];
            argv.extend_from_slice(args);
            assert!(parse_wait(&argv).is_err(), "{args:?} was accepted");
        }
    }

    fn parse_bio(args: &[&str]) -> Result<BiolatencyConfig> {
        let mut argv = vec!["bpfprof", "biolatency"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv)?.command {
            Command::Biolatency(a) => a.into_config(),
            _ => unreachable!("a biolatency command"),
        }
    }

    #[test]
    fn biolatency_flags_are_bccs() {
        let c = parse_bio(&[]).unwrap();
        assert_eq!(
            c,
            BiolatencyConfig {
                heatmap_every: Duration::from_secs(1),
                ..Default::default()
            }
        );
        // Heat map columns: INTERVAL's, unless given.
        let c = parse_bio(&["--heatmap", "x.svg", "2"]).unwrap();
        assert_eq!(c.heatmap_every, Duration::from_secs(2));
        let c = parse_bio(&["--heatmap", "x.svg", "--heatmap-interval", "250ms", "2"]).unwrap();
        assert_eq!(c.heatmap_every, Duration::from_millis(250));
        assert!(parse_bio(&["--heatmap", "x.svg", "--heatmap-interval", "5ms"]).is_err());
        assert!(parse_bio(&["--heatmap-interval", "1s"]).is_err());
        let c = parse_bio(&["-mTQDFej", "-d", "vda", "1", "10"]).unwrap();
        assert!(c.milliseconds && c.timestamp && c.queued && c.per_disk && c.per_flag);
        assert!(c.extension && c.json);
        assert_eq!(c.disk.as_deref(), Some("vda"));
        assert_eq!(c.interval, Some(Duration::from_secs(1)));
        assert_eq!(c.count, Some(10));
        let c = parse_bio(&["--linear", "0,1000,100", "-s"]).unwrap();
        assert!(c.summary && c.linear.is_some());
    }

    #[test]
    fn biolatency_bad_values_are_refused() {
        for args in [
            &["0"][..],
            &["1", "0"],
            &["abc"],
            &["-1"],
            &["--linear", "0"],
            &["1", "2", "3"],
        ] {
            assert!(parse_bio(args).is_err(), "{args:?} was accepted");
        }
    }
}
