//! Kernel functions in funccount and trace: kprobes, kretprobes, kprobe.multi, fentry/fexit. Where the
//! kernel has them (the Debian 6.1 guest of scripts/vm/), exact counts over known work: the blocker
//! workload's 30 nanosleeps (each one call of do_nanosleep), and dd's reads (each one call of vfs_read,
//! counted against the read system calls in the same program). Where it has neither (this project's CI
//! machine: no CONFIG_KPROBES, fentry refused), the one-line refusal naming both.
use std::time::{Duration, Instant};

use crate::common::{
    assert_nothing_left_attached, bpf_test, bpfprof, kernel_has_kprobes, workload, Running,
    Workload,
};

/// The blocker's sleeper, gated: 20 + 10 nanosleeps after `go`, then pause().
struct Sleeper {
    w: Workload,
    tid: String,
}

impl Sleeper {
    fn start() -> Self {
        let w = Workload::start_gated(&workload("blocker"), &["sleep"]);
        let tid = w.info.first().expect("the sleeper's tid").clone();
        Self { w, tid }
    }

    /// Lets it sleep its 30 sleeps, and waits until it is past them: in pause() (system call 34 on x86-64),
    /// or gone (its "done" line goes to a pipe nobody reads: SIGPIPE ends it).
    fn run(&mut self) {
        self.w.go();
        let base = format!("/proc/{}/task/{}", self.w.pid(), self.tid);
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut now = String::new();
        while Instant::now() < deadline {
            now = std::fs::read_to_string(format!("{base}/syscall")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("{base}/stat")).unwrap_or_default();
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next());
            if now.split_whitespace().next() == Some("34")
                || matches!(state, Some("Z" | "X") | None)
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the sleeper did not finish its sleeps in 60 s: {base}/syscall: {now}");
    }
}

/// Runs `args` (PID: the sleeper's process) over the 30 nanosleeps, Ctrl-C after them.
fn over_nanosleeps(args: &[&str], env: &[(&str, &str)], header: &str) -> (String, String) {
    let mut s = Sleeper::start();
    let pid = s.w.pid().to_string();
    let args: Vec<String> = args.iter().map(|a| a.replace("PID", &pid)).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let t = Running::start(&args, env, false, header);
    s.run();
    t.finish(true)
}

/// The threads of the system now in a nanosleep (`comm/tid`): a kretprobe's instances (10 on a
/// 2-CPU 5.10 kernel) are held by every thread inside the probed function.
fn nanosleepers() -> String {
    let mut out = Vec::new();
    for p in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        for t in std::fs::read_dir(p.path().join("task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let read = |f: &str| std::fs::read_to_string(t.path().join(f)).unwrap_or_default();
            if read("wchan").contains("nanosleep") {
                out.push(format!(
                    "{}/{}",
                    read("comm").trim(),
                    t.file_name().to_string_lossy()
                ));
            }
        }
    }
    format!("{} {out:?}", out.len())
}

/// What a kernel without kprobes and without fentry must answer.
fn assert_refused(what: &str, status_ok: bool, err: &str) {
    assert!(!status_ok, "{what} succeeded on a kernel without kprobes");
    assert_eq!(err.trim_end().lines().count(), 1, "{what}: {err}");
    assert!(
        err.contains("CONFIG_KPROBES") && err.contains("kprobes"),
        "{what}: {err}"
    );
}

#[test]
fn funccount_counts_kernel_functions_exactly() {
    let Some(_lock) = bpf_test("funccount_counts_kernel_functions_exactly") else {
        return;
    };
    if !kernel_has_kprobes() {
        let out = bpfprof()
            .args(["funccount", "-d", "1", "k:do_nanosleep"])
            .output()
            .expect("running bpfprof");
        assert_refused(
            "funccount k:do_nanosleep",
            out.status.success(),
            &String::from_utf8_lossy(&out.stderr),
        );
        return;
    }
    // kprobe.multi where the kernel has it (5.18+), one kprobe per function, and one kprobe per function
    // found by its address (as before 5.15, which has no BPF cookies).
    for env in [
        &[][..],
        &[("BPFPROF_NO_MULTI", "1")][..],
        &[("BPFPROF_NO_COOKIES", "1")][..],
    ] {
        let (out, err) = over_nanosleeps(
            &["funccount", "-p", "PID", "k:do_nanosleep"],
            env,
            "Tracing ",
        );
        let count = |f: &str| {
            out.lines()
                .find_map(|l| {
                    let mut w = l.split_whitespace();
                    (w.next() == Some(f)).then(|| w.next().and_then(|n| n.parse::<u64>().ok()))
                })
                .flatten()
        };
        assert_eq!(count("do_nanosleep"), Some(30), "{env:?}: {out}\n{err}");
    }
    assert_nothing_left_attached();
}

#[test]
fn trace_kprobes_kretprobes_and_fentry_count_exactly() {
    let Some(_lock) = bpf_test("trace_kprobes_kretprobes_and_fentry_count_exactly") else {
        return;
    };
    let program = "k:do_nanosleep /pid == PID/ { @[comm]++; @f[func] = count(); } kr:do_nanosleep /pid == PID/ { @r = hist(retval); }";
    if !kernel_has_kprobes() {
        let out = bpfprof()
            .args(["trace", "-e", &program.replace("PID", "1")])
            .output()
            .expect("running bpfprof");
        assert_refused(
            "trace k:do_nanosleep",
            out.status.success(),
            &String::from_utf8_lossy(&out.stderr),
        );
        return;
    }
    // bpftrace 0.17's layout: two newlines, maps of values without lines between them, a histogram.
    let want = "

@[sleeper]: 30
@f[do_nanosleep]: 30
@r: 
[0]                   30 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|

";
    // kprobes; the fentry path they fall back to (forced); fentry/fexit asked for by name.
    let fentry_program = program.replace("k:", "fentry:").replace("kr:", "fexit:");
    let runs: [(&str, &[(&str, &str)]); 3] = [
        (program, &[]),
        (program, &[("BPFPROF_NO_KPROBES", "1")]),
        (&fentry_program, &[]),
    ];
    for (p, env) in runs {
        let (out, err) = over_nanosleeps(&["trace", "-e", p], env, "Attaching ");
        assert_eq!(
            out,
            want,
            "{p} {env:?}: {err}\nthreads in nanosleep now: {}",
            nanosleepers()
        );
    }
    assert_nothing_left_attached();
}

/// dd reads 10 blocks of 4 KiB: every read or pread64 system call is one vfs_read, whose return value is
/// the size read.
#[test]
fn trace_kernel_function_globs_and_return_values() {
    let Some(_lock) = bpf_test("trace_kernel_function_globs_and_return_values") else {
        return;
    };
    // read() and pread64() (ld.so's) are each one vfs_read.
    let program = "t:syscalls:sys_enter_read, t:syscalls:sys_enter_pread64 /pid == cpid/ { @reads = count(); } kprobe:vfs_rea* /pid == cpid/ { @[func] = count(); } kr:vfs_read /pid == cpid && retval == 4096/ { @big = hist(retval); }";
    let run = |env: &[(&str, &str)]| {
        let mut cmd = bpfprof();
        cmd.args([
            "trace",
            "-c",
            "dd if=/dev/zero of=/dev/null bs=4096 count=10 status=none",
            "-e",
            program,
        ]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("running bpfprof")
    };
    if !kernel_has_kprobes() {
        let out = run(&[]);
        assert_refused(
            "trace kprobe:vfs_rea*",
            out.status.success(),
            &String::from_utf8_lossy(&out.stderr),
        );
        return;
    }
    for env in [&[][..], &[("BPFPROF_NO_KPROBES", "1")][..]] {
        let out = run(env);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{env:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let value = |label: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(label))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let reads = value("@reads: ").unwrap_or_else(|| panic!("{text}"));
        assert!(reads >= 11, "{text}"); // 10 blocks, the end of input, and ld.so's reads
        assert_eq!(value("@[vfs_read]: "), Some(reads), "{env:?}: {text}");
        assert!(
            text.contains("@big: \n[4K, 8K)              10 |"),
            "{env:?}: {text}"
        );
    }
    assert_nothing_left_attached();
}
