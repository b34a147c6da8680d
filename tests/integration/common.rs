//! Shared test support: building workloads, running bpfprof, and killing workloads on drop.
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};

/// Path of the binary under test.
pub fn bpfprof() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bpfprof"))
}

static BPF_LOCK: Mutex<()> = Mutex::new(());

/// What bpfprof's off-CPU tools print when a traced thread came back on a CPU without a sched_switch event:
/// that block is lost, and said to be.
pub const UNSEEN_SWITCH: &str = "without a sched_switch event";

/// Runs `trace` (one traced run of a workload, returning what the test needs and bpfprof's stderr) again
/// while bpfprof says it lost blocks to switches the kernel did not report, at most 4 times in all. This
/// machine's kernel reports no switch away from its sandbox agent's threads: a thread switched in from
/// one is never seen coming back (~1 run in 20 under load). The tool counts that; a test holding it to the
/// workload's exact figures runs again rather than loosen them.
pub fn unless_switches_unseen<T>(mut trace: impl FnMut() -> (T, String)) -> (T, String) {
    for attempt in 1.. {
        let (out, stderr) = trace();
        if !stderr.contains(UNSEEN_SWITCH) || attempt == 4 {
            return (out, stderr);
        }
        eprintln!("run {attempt} lost blocks to unseen switches, running again: {stderr}");
    }
    unreachable!()
}

/// Serialises BPF tests and checks that they can run. Returns None (after saying so) when not root outside
/// CI; panics in CI, where a test that cannot load BPF must fail, never skip.
pub fn bpf_test(name: &str) -> Option<MutexGuard<'static, ()>> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{name}: must run as root in CI (BPF tests never skip there)");
        }
        eprintln!("SKIPPED {name}: not root, cannot load BPF");
        return None;
    }
    Some(BPF_LOCK.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Builds a workload from tests/workloads/ once per test run, with frame pointers in every function:
/// NAME.c with clang, NAME.cc with clang++, NAME.rs with rustc.
/// Whether the workload `out` was built after every source of `name` in `dir` was last changed: the VM
/// suites then use what the host built (a compiler in the emulated guest is slow, and twice a guest hung
/// while one wrote its output over 9p).
fn up_to_date(out: &Path, dir: &Path, name: &str) -> bool {
    let built = match std::fs::metadata(out).and_then(|m| m.modified()) {
        Ok(t) => t,
        Err(_) => return false,
    };
    let mut sources = ["c", "cc", "rs"]
        .iter()
        .map(|ext| dir.join(format!("{name}.{ext}")))
        .filter(|p| p.exists())
        .peekable();
    sources.peek().is_some()
        && sources.all(|p| {
            std::fs::metadata(&p)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t <= built)
        })
}

pub fn workload(name: &str) -> PathBuf {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if built.iter().any(|b| b == name) {
        return out;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workloads");
    // Frame pointers everywhere, and no tail calls: each call stays a frame.
    let fp = [
        "-fno-omit-frame-pointer",
        "-mno-omit-leaf-frame-pointer",
        "-fno-optimize-sibling-calls",
    ];
    if up_to_date(&out, &dir, name) {
        built.push(name.to_string());
        return out;
    }
    let mut cmd = if dir.join(format!("{name}.c")).exists() {
        let mut c = Command::new("clang");
        c.args(["-O1", "-g"])
            .args(fp)
            .arg(dir.join(format!("{name}.c")));
        c
    } else if dir.join(format!("{name}.cc")).exists() {
        let mut c = Command::new("clang++");
        c.args(["-O1", "-g"])
            .args(fp)
            .arg(dir.join(format!("{name}.cc")));
        c
    } else {
        let mut c = Command::new("rustc");
        c.args(["-O", "-g", "-C", "force-frame-pointers=yes"])
            .arg(dir.join(format!("{name}.rs")));
        c
    };
    let status = cmd
        .arg("-o")
        .arg(&out)
        .status()
        .expect("running the compiler (scripts/setup.sh installs clang)");
    assert!(status.success(), "building workload {name}");
    built.push(name.to_string());
    out
}

/// Builds a workload as distributions build their software, without frame pointers: gcc -O2
/// -fomit-frame-pointer (tests/workloads/NAME.c), once per test run; with `shared`, a shared library
/// (NAME.so). Its stacks can be walked whole only with unwind tables.
pub fn workload_nofp(name: &str, shared: bool) -> PathBuf {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let file = if shared {
        format!("{name}.so")
    } else {
        name.to_string()
    };
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(&file);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if built.contains(&file) {
        return out;
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/workloads/{name}.c"));
    if up_to_date(&out, src.parent().expect("tests/workloads"), name) {
        built.push(file);
        return out;
    }
    let mut cmd = Command::new("gcc");
    cmd.args(["-O2", "-g", "-fomit-frame-pointer"]);
    if shared {
        cmd.args(["-shared", "-fPIC"]);
    }
    let status = cmd
        .arg(&src)
        .arg("-o")
        .arg(&out)
        .arg("-ldl")
        .status()
        .expect("running gcc");
    assert!(status.success(), "building {file}");
    built.push(file);
    out
}

/// A running workload, killed when dropped (tests never leave one behind).
pub struct Workload {
    child: Child,
    /// For workloads that wait for a line on stdin before they start (`go`).
    stdin: Option<ChildStdin>,
    /// What the workload prints after "ready" (`line`).
    stdout: BufReader<ChildStdout>,
    /// Words the workload printed after "ready" (e.g. thread ids).
    pub info: Vec<String>,
}

impl Workload {
    /// Starts `bin args` and waits until it prints its "ready" line (which may carry more words: `info`).
    pub fn start(bin: &Path, args: &[&str]) -> Self {
        Self::spawn(bin, args, Stdio::null(), None)
    }

    /// As `start`, in directory `cwd` (for programs that leave files where they run).
    pub fn start_in(cwd: &Path, bin: &Path, args: &[&str]) -> Self {
        Self::spawn(bin, args, Stdio::null(), Some(cwd))
    }

    /// As `start`, for a workload that then waits for `go` (a line on its stdin) before its known work.
    pub fn start_gated(bin: &Path, args: &[&str]) -> Self {
        Self::spawn(bin, args, Stdio::piped(), None)
    }

    /// Lets a gated workload begin.
    pub fn go(&mut self) {
        let mut stdin = self.stdin.take().expect("a gated workload");
        writeln!(stdin, "go").expect("writing to the workload");
    }

    fn spawn(bin: &Path, args: &[&str], stdin: Stdio, cwd: Option<&Path>) -> Self {
        let mut cmd = Command::new(bin);
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        let mut child = cmd
            .args(args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting workload");
        let input = child.stdin.take();
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let guard = HangGuard::new(child.id(), &format!("workload {}", bin.display()));
        stdout.read_line(&mut line).expect("reading workload");
        drop(guard);
        let mut words = line.split_whitespace().map(str::to_string);
        assert_eq!(
            words.next().as_deref(),
            Some("ready"),
            "workload did not start"
        );
        Self {
            child,
            stdin: input,
            stdout,
            info: words.collect(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line the workload prints (waits for it), split into words.
    pub fn line(&mut self) -> Vec<String> {
        let mut line = String::new();
        let guard = HangGuard::new(self.child.id(), "a workload");
        self.stdout.read_line(&mut line).expect("reading workload");
        drop(guard);
        line.split_whitespace().map(str::to_string).collect()
    }

    /// Waits for the workload to end, however it ends; its status.
    pub fn child_wait(&mut self) -> std::process::ExitStatus {
        let guard = HangGuard::new(self.child.id(), "a workload");
        let status = self.child.wait().expect("waiting for workload");
        drop(guard);
        status
    }

    /// Waits for the workload to exit by itself.
    pub fn wait(&mut self) {
        let status = self.child.wait().expect("waiting for workload");
        assert!(status.success(), "workload failed: {status}");
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long a bpfprof run may take before a test calls it hung: 120 s, times BPFPROF_TEST_TIME_SCALE.
fn hang_limit() -> std::time::Duration {
    std::time::Duration::from_secs(scaled_secs(120))
}

/// What the kernel says each thread of `pid` waits in (its wchan and kernel stack): for a hung run.
fn threads_of(pid: u32) -> String {
    let mut out = String::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return format!("process {pid} is gone\n");
    };
    for t in tasks.flatten() {
        let p = t.path();
        let read = |f: &str| std::fs::read_to_string(p.join(f)).unwrap_or_default();
        out.push_str(&format!(
            "thread {:?} {} in {}:\n{}",
            t.file_name(),
            read("comm").trim(),
            read("wchan"),
            read("stack")
        ));
    }
    out
}

/// Bounds a wait on what process `pid` prints (a line it owes): if the guard still lives after
/// hang_limit(), the process is killed (the read then ends at EOF and the test fails on it), after
/// printing where its threads wait. Dropped once the line is read.
pub struct HangGuard {
    /// Dropped with the guard: its watcher wakes at once (a futex wait, not a sleep loop: a thread in
    /// nanosleep holds one of a kretprobe's instances on do_nanosleep, of which 5.10 has 10).
    _done: std::sync::mpsc::Sender<()>,
}

impl HangGuard {
    pub fn new(pid: u32, what: &str) -> Self {
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let what = what.to_string();
        std::thread::spawn(move || {
            if wait.recv_timeout(hang_limit()) != Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
                return;
            }
            eprintln!(
                "{what} (pid {pid}) printed nothing for {:?}; killed. Its threads:\n{}",
                hang_limit(),
                threads_of(pid)
            );
            // SAFETY: signalling a child the owner has not reaped (it holds this guard until then).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        });
        Self { _done: done }
    }
}

/// Waits for `child` to exit, reading its stdout and stderr meanwhile; a run that outlasts hang_limit()
/// is killed and the test fails with where its threads were waiting, instead of hanging the suite.
fn wait_bounded(mut child: Child, args: &[&str]) -> Output {
    fn drain<R: Read + Send + 'static>(r: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    }
    let (out, err) = (drain(child.stdout.take()), drain(child.stderr.take()));
    // Waited for in a thread that reaps it, the timeout on a channel (no polling sleeps).
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let status = child.wait();
        let _ = tx.send(());
        status
    });
    if rx.recv_timeout(hang_limit()) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
        let threads = threads_of(pid);
        // SAFETY: signalling our child, which the waiter has not reaped (it has sent nothing).
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        let _ = waiter.join();
        let err = err.join().unwrap_or_default();
        panic!(
            "bpfprof {args:?} still ran after {:?}; its threads:\n{threads}\nstderr: {}",
            hang_limit(),
            String::from_utf8_lossy(&err)
        );
    }
    let status = waiter
        .join()
        .expect("the waiter")
        .expect("waiting for bpfprof");
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// Runs bpfprof to completion and returns its output, asserting success.
pub fn run_ok(args: &[&str]) -> Output {
    let child = bpfprof()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running bpfprof");
    let out = wait_bounded(child, args);
    assert!(
        out.status.success(),
        "bpfprof {args:?} failed: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Parses folded output into (frames, count) pairs.
pub fn parse_folded(stdout: &[u8]) -> Vec<(Vec<String>, u64)> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|line| {
            let (stack, n) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("bad folded line: {line}"));
            let frames = stack.split(';').map(str::to_string).collect();
            (
                frames,
                n.parse().unwrap_or_else(|_| panic!("bad count in: {line}")),
            )
        })
        .collect()
}

/// Whether a blocked stack (folded frames, or a text block's; in offwake's only the blocked half, before
/// `--`) is a preemption: an interrupt's return, or a system call's on its way back to user space
/// (exit_to_user_mode_loop), gave the thread's CPU to another, not a block it asked for. A busy 2-CPU
/// machine preempts any workload now and then.
pub fn preempted(frames: &[String]) -> bool {
    frames.iter().take_while(|f| *f != "--").any(|f| {
        f.starts_with("irqentry_exit")
            || f.starts_with("exit_to_user_mode")
            || f.starts_with("preempt_schedule")
            || f.starts_with("asm_sysvec")
            || f.starts_with("asm_common_interrupt")
    })
}

/// True when `needle` occurs in `frames` as a contiguous run.
pub fn has_run(frames: &[String], needle: &[&str]) -> bool {
    frames
        .windows(needle.len())
        .any(|w| w.iter().zip(needle).all(|(a, b)| a == b))
}

/// `secs` times BPFPROF_TEST_TIME_SCALE (default 1): how long a test lets bpfprof run where what it
/// asserts needs a number of samples or events, not a length of time. The VM suite sets it: its emulated
/// guest runs 20-50 times slower and samples far less often than asked.
pub fn scaled_secs(secs: u64) -> u64 {
    let scale: u64 = std::env::var("BPFPROF_TEST_TIME_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    secs * scale.max(1)
}

/// Whether this kernel gives BPF programs their attachment's cookie (bpf_get_attach_cookie, Linux 5.15+).
pub fn kernel_has_cookies() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let mut v = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (v.next().unwrap_or(0), v.next().unwrap_or(0)) >= (5, 15)
}

/// Whether this kernel can attach kprobes (the perf `kprobe` event source exists).
pub fn kernel_has_kprobes() -> bool {
    Path::new("/sys/bus/event_source/devices/kprobe").exists()
}

/// The entries of trace's maps keyed by stacks and then one more part (`@[kstack, ustack, comm]`):
/// `    name+offset` frame lines, then `, LAST]: N`. Returns each entry's frame names (offsets dropped),
/// LAST as printed after the first `, ` (an empty stack before it leaves another `, `), and N.
pub fn stack_key_entries(text: &str) -> Vec<(Vec<String>, String, u64)> {
    let mut entries = Vec::new();
    let mut frames = Vec::new();
    for line in text.lines() {
        if let Some(f) = line.strip_prefix("    ") {
            frames.push(f.split('+').next().unwrap_or(f).to_string());
        } else if let Some((last, n)) = line.strip_prefix(", ").and_then(|l| l.rsplit_once("]: ")) {
            let n = n.parse().unwrap_or_else(|_| panic!("a value: {line}"));
            entries.push((std::mem::take(&mut frames), last.to_string(), n));
        } else if line.starts_with('@') || line.contains("]: ") {
            frames.clear();
        }
    }
    entries
}

/// Samples whose stack contains the contiguous run `needle`.
pub fn count_with(stacks: &[(Vec<String>, u64)], needle: &[&str]) -> u64 {
    stacks
        .iter()
        .filter(|(f, _)| has_run(f, needle))
        .map(|(_, n)| n)
        .sum()
}

/// No bpfprof program may remain loaded after the tool exits. The kernel frees a detached tracing
/// program after an RCU grace period, not at once: this waits up to 5 s for it to go.
pub fn assert_nothing_left_attached() {
    let progs = [
        "do_sample",
        "switch_tp",
        "waking_tp",
        "switch_btf",
        "switch_raw",
        "waking_btf",
        "waking_raw",
        "io_start_btf",
        "insert_btf",
        "issue_btf",
        "complete_btf",
        "io_start_raw",
        "insert_raw",
        "issue_raw",
        "complete_raw",
        "count_tp",
        "count_uprobe_multi",
        "count_uprobe",
        "count_usdt",
        "count_kprobe_multi",
        "count_kprobe",
        "bpfprof_trace",
    ];
    let mut text = String::new();
    for _ in 0..50 {
        let out = Command::new("bpftool")
            .args(["prog", "show"])
            .output()
            .expect("running bpftool");
        text = String::from_utf8_lossy(&out.stdout).into_owned();
        // The kernel keeps 15 characters of a program's name; bpftool shows the whole name from BTF.
        let loaded = |p: &&str| {
            text.contains(&format!("name {p} "))
                || text.contains(&format!("name {} ", &p[..p.len().min(15)]))
        };
        if !progs.iter().any(loaded) {
            // Probes libbpf makes through tracefs (kernels without perf-based uprobes/kprobes) are named
            // libbpf_PID_...: none may remain either.
            for events in ["uprobe_events", "kprobe_events"] {
                let path = format!("/sys/kernel/tracing/{events}");
                let listed = std::fs::read_to_string(&path).unwrap_or_default();
                assert!(
                    !listed.contains("libbpf_"),
                    "probes left in {path}:\n{listed}"
                );
            }
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("a bpfprof BPF program is still loaded 5 s after exit:\n{text}");
}

/// A bpfprof tool running in the background, attached: its first line (the header, printed once its probes
/// are attached) has been read. Killed when dropped, so a failed test leaves nothing attached.
pub struct Running {
    child: Child,
    stdout: BufReader<ChildStdout>,
    stderr: BufReader<ChildStderr>,
    /// The header line.
    pub header: String,
}

impl Running {
    /// Starts `bpfprof ARGS` with `env` and waits for its header: on stdout, or on stderr when
    /// `header_on_stderr` (JSON modes keep stdout for JSON). Panics unless it starts with `prefix`.
    pub fn start(
        args: &[&str],
        env: &[(&str, &str)],
        header_on_stderr: bool,
        prefix: &str,
    ) -> Self {
        let mut cmd = bpfprof();
        cmd.args(args).envs(env.iter().copied());
        Self::start_command(cmd, header_on_stderr, prefix)
    }

    /// The same for any tracer's command (bpftrace's, to compare with).
    pub fn start_command(cmd: Command, header_on_stderr: bool, prefix: &str) -> Self {
        Self::try_start_command(cmd, header_on_stderr, prefix).unwrap_or_else(|e| panic!("{e}"))
    }

    /// As start_command; Err(what it said) if it did not start.
    pub fn try_start_command(
        mut cmd: Command,
        header_on_stderr: bool,
        prefix: &str,
    ) -> Result<Self, String> {
        let args = format!("{cmd:?}");
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting a tracer");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let mut header = String::new();
        let reader: &mut dyn BufRead = if header_on_stderr {
            &mut stderr
        } else {
            &mut stdout
        };
        let guard = HangGuard::new(child.id(), &args);
        reader.read_line(&mut header).expect("reading the header");
        drop(guard);
        if !header.starts_with(prefix) {
            // Not attached as expected: it must not outlive the test either.
            let _ = child.kill();
            let _ = child.wait();
            let mut err = String::new();
            let _ = stderr.read_to_string(&mut err);
            return Err(format!("{args} did not start: {header:?}\nstderr: {err}"));
        }
        Ok(Self {
            child,
            stdout,
            stderr,
            header,
        })
    }

    /// Reads stdout up to and including the first line that starts with `prefix` (lines a BEGIN probe
    /// prints after the header), bounded as the header's wait; returns what it read.
    pub fn wait_for_line(&mut self, prefix: &str) -> String {
        self.wait_for(1, |l| l.starts_with(prefix), prefix)
    }

    /// Reads stdout up to and including the `n`th line that `wanted` takes, bounded as the header's
    /// wait; returns what it read. `what` names those lines if they do not come.
    pub fn wait_for(&mut self, n: usize, wanted: impl Fn(&str) -> bool, what: &str) -> String {
        let guard = HangGuard::new(self.child.id(), "a tracer's output line");
        let (mut read, mut seen) = (String::new(), 0);
        while seen < n {
            let mut line = String::new();
            if self.stdout.read_line(&mut line).expect("reading stdout") == 0 {
                break;
            }
            seen += usize::from(wanted(line.trim_end_matches('\n')));
            read.push_str(&line);
        }
        drop(guard);
        assert!(seen == n, "{seen} of {n} lines {what:?} in {read:?}");
        read
    }

    /// SIGKILL: no chance to clean up. Waits until it is gone.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends Ctrl-C (when `interrupt`; else it must end by itself), asserts success, and returns what it
    /// printed after the header on stdout, and its stderr.
    pub fn finish(mut self, interrupt: bool) -> (String, String) {
        if interrupt {
            // SAFETY: sending a signal to our own child.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        }
        // A watchdog kills a run that does not end (the child is not reaped before it is done, so its pid
        // is still this child's), saying first where its threads wait.
        let pid = self.child.id();
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            if wait.recv_timeout(hang_limit()) != Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
                return None;
            }
            let threads = threads_of(pid);
            // SAFETY: signalling our own child, not yet reaped.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            Some(threads)
        });
        let (mut out, mut err) = (String::new(), String::new());
        let _ = self.stdout.read_to_string(&mut out);
        let _ = self.stderr.read_to_string(&mut err);
        drop(done);
        if let Some(threads) = watchdog.join().expect("the watchdog") {
            panic!(
                "bpfprof still ran after {:?}; its threads:\n{threads}\nstderr: {err}",
                hang_limit()
            );
        }
        let status = self.child.wait().expect("waiting for bpfprof");
        assert!(status.success(), "bpfprof failed: {status}\nstderr: {err}");
        (out, err)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // After finish the child is reaped: std does not signal a child it has waited for.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loop device over a sparse 64 MiB file (or, `direct`, 16 MiB of data read with O_DIRECT), detached and
/// removed when dropped.
pub struct LoopDevice {
    pub dev: String,
    pub backing: PathBuf,
}

impl LoopDevice {
    pub fn new(tag: &str) -> Self {
        let backing = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("bio-{tag}.img"));
        std::fs::File::create(&backing)
            .and_then(|f| f.set_len(64 << 20))
            .expect("creating the loop device's file");
        Self::attach(backing, &[])
    }

    /// Sets up a loop device over `backing` (losetup with `extra` flags).
    fn attach(backing: PathBuf, extra: &[&str]) -> Self {
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .args(extra)
            .arg(&backing)
            .output()
            .expect("running losetup (scripts/setup.sh installs util-linux)");
        assert!(
            out.status.success(),
            "losetup {extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Self { dev, backing }
    }

    /// The disk's name as biolatency prints it (`loop3`).
    pub fn name(&self) -> &str {
        self.dev.trim_start_matches("/dev/")
    }
}

impl LoopDevice {
    /// A loop device over a 16 MiB file of data that it reads with O_DIRECT (--direct-io=on): each of
    /// its reads is a read of the disk holding the file, made on behalf of the reader's cgroup.
    pub fn direct(tag: &str) -> Self {
        let backing = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("bio-{tag}.img"));
        // Data, not holes: a hole is read without touching the disk.
        let block: Vec<u8> = (0..1 << 20)
            .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let mut data = Vec::with_capacity(16 << 20);
        for _ in 0..16 {
            data.extend_from_slice(&block);
        }
        std::fs::write(&backing, &data).expect("writing the loop device's file");
        let f = std::fs::File::open(&backing).expect("the loop device's file");
        f.sync_all().expect("syncing the loop device's file");
        Self::attach(backing, &["--direct-io=on"])
    }

    /// MAJ:MIN of the whole disk under the loop device's file.
    pub fn backing_disk(&self) -> String {
        use std::os::unix::fs::MetadataExt;
        let d = std::fs::metadata(&self.backing).expect("the file").dev();
        let (major, minor) = (libc::major(d), libc::minor(d));
        let sys = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
        if sys.join("partition").exists() {
            let parent = std::fs::read_to_string(sys.join("../dev")).expect("the partition's disk");
            return parent.trim().to_string();
        }
        format!("{major}:{minor}")
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        // Quietly: a test may have detached it already.
        let _ = Command::new("losetup")
            .args(["-d", &self.dev])
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_file(&self.backing);
    }
}

/// Runs bpfprof with each of `runs`' arguments, two at a time (for runs that measure nothing: under the VM
/// suites' emulation each takes seconds); their outputs, in order.
pub fn outputs_two_at_a_time(runs: &[Vec<String>]) -> Vec<Output> {
    runs.chunks(2)
        .flat_map(|pair| {
            let children: Vec<Child> = pair
                .iter()
                .map(|args| {
                    bpfprof()
                        .args(args)
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped())
                        .spawn()
                        .expect("running bpfprof")
                })
                .collect();
            children
                .into_iter()
                .map(|c| c.wait_with_output().expect("bpfprof's output"))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// bpftrace running `args` beside bpfprof, started and past the line starting with `ready` (its BEGIN's);
/// None, said on stderr, where bpftrace 0.17 cannot compile the program on this kernel (the 5.10 guest:
/// its clang finds none of the kernel's types there): the test then checks bpfprof's output alone.
pub fn bpftrace_beside(args: &[&str], attaching: &str, ready: &str) -> Option<Running> {
    let mut cmd = std::process::Command::new("bpftrace");
    cmd.args(args);
    match Running::try_start_command(cmd, false, attaching) {
        Ok(mut r) => {
            r.wait_for_line(ready);
            Some(r)
        }
        // Its errors, but the warning it prints as one in a container, where it cannot raise
        // RLIMIT_MEMLOCK (which 5.11+ does not need): where it printed its first line, it ran.
        Err(e)
            if !e.contains("did not start: \"Attaching")
                && e.lines()
                    .any(|l| l.contains("ERROR") && !l.contains("RLIMIT_MEMLOCK")) =>
        {
            eprintln!("bpftrace cannot run this here, compared with nothing: {e}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}
