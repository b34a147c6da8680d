//! Faults a production host throws at a tracer: the traced process exits, the traced disk goes away,
//! stdout is closed early, bpfprof itself is killed, other tracers share its hooks, the disk it writes to is
//! full. Each ends with a clear message and the right exit status, nothing lost silently, nothing left
//! attached.
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

fn temp(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(name)
}

/// With -p, tracing ends by itself once the process has exited, saying so; what was traced is printed
/// and the exit status is 0: profile (its samples, named), offcpu and hotcold.
#[test]
fn tracing_ends_when_the_traced_process_exits() {
    let Some(_lock) = bpf_test("tracing_ends_when_the_traced_process_exits") else {
        return;
    };
    let burn = workload("burn");
    for tool in ["profile", "offcpu", "hotcold"] {
        // burn cpu 2: two seconds of work, then it exits.
        let mut w = Workload::start(&burn, &["cpu", "2"]);
        let pid = w.pid().to_string();
        let mut args = vec![tool, "-p", &pid, "-f"];
        if tool == "profile" {
            args.extend(["-F", "199"]);
        }
        let t = Running::start(&args, &[], true, "");
        let started = Instant::now();
        w.wait();
        let (out, err) = t.finish(false); // not interrupted: it must end by itself
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{tool}: ended {:?} after its process",
            started.elapsed()
        );
        assert!(
            err.contains(&format!(
                "process {pid} exited during the trace: tracing ended"
            )),
            "{tool}: {err}"
        );
        let stacks = parse_folded(out.as_bytes());
        assert!(!stacks.is_empty(), "{tool}: nothing printed: {err}");
        if tool != "offcpu" {
            assert!(
                stacks
                    .iter()
                    .any(|(f, _)| f.iter().any(|x| x == "hot_two_thirds")),
                "{tool}: no named frames of the exited process: {out}"
            );
        }
    }
    assert_nothing_left_attached();
}

/// biolatency -d on a loop device that is detached mid-trace: it says the disk went away, prints what it
/// counted (every I/O issued before) and exits 0 without waiting for Ctrl-C.
#[test]
fn biolatency_ends_when_its_disk_goes_away() {
    let Some(_lock) = bpf_test("biolatency_ends_when_its_disk_goes_away") else {
        return;
    };
    let disk = LoopDevice::new("gone");
    let (dev, name) = (disk.dev.clone(), disk.name().to_string());
    let t = Running::start(
        &["biolatency", "-d", &name],
        &[],
        false,
        "Tracing block device I/O",
    );
    let mut w = Workload::start_gated(&workload("directio"), &[&dev, "50", "0", "1", "0"]);
    w.go();
    w.wait();
    let started = Instant::now();
    let detached = Command::new("losetup").args(["-d", &dev]).status().unwrap();
    assert!(detached.success());
    let (out, err) = t.finish(false);
    drop(disk); // its file goes (detaching it again only fails)
    assert!(started.elapsed() < Duration::from_secs(10), "{err}");
    assert!(
        err.contains(&format!(
            "disk {name} went away during the trace (detached or removed): tracing ended"
        )),
        "{err}"
    );
    let counted: u64 = out
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .filter_map(|r| r.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(counted, 50, "{out}");
    assert!(err.contains("bpfprof: 50 I/Os timed"), "{err}");
    assert_nothing_left_attached();
}

/// Every tool with its stdout closed after the first line (`| head -1`): it ends as it would have, exit
/// status 0, no panic, nothing left attached.
#[test]
fn every_tool_survives_stdout_closed_early() {
    let Some(_lock) = bpf_test("every_tool_survives_stdout_closed_early") else {
        return;
    };
    // Something to sample and to block, so that every tool has a report to write.
    let _busy = Workload::start(&workload("burn"), &["cpu", "600"]);
    let _napping = Workload::start(&workload("blocker"), &["pipe", "20"]);
    let cases: &[&[&str]] = &[
        &["profile", "1"],
        &["profile", "-f", "1"],
        &["offcpu", "1"],
        &["wakeup", "1"],
        &["offwake", "-f", "1"],
        &["hotcold", "1"],
        &["biolatency", "1", "2"],
        &["funccount", "-d", "1", "t:sched:sched_switch"],
        &["funccount", "-i", "1", "-d", "2", "t:sched:sched_switch"],
        &[
            "trace",
            "-e",
            "t:sched:sched_switch { printf(\"%s\\n\", comm); } interval:s:1 { exit(); }",
        ],
    ];
    for args in cases {
        let mut child = bpfprof()
            .args(*args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting bpfprof");
        let mut first = String::new();
        {
            let mut out = BufReader::new(child.stdout.take().unwrap());
            let _ = out.read_line(&mut first);
        } // the reader goes away: stdout is closed
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "{args:?}: still running");
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut err = String::new();
        let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(status.success(), "{args:?}: {status}: {err}");
        assert!(!first.is_empty(), "{args:?}: printed nothing: {err}");
    }
    assert_nothing_left_attached();
}

/// SIGKILL of bpfprof, for every tool once it is attached: nothing of it survives (no program, no probe
/// made through tracefs, no pinned map).
#[test]
fn sigkill_leaves_nothing_behind() {
    let Some(_lock) = bpf_test("sigkill_leaves_nothing_behind") else {
        return;
    };
    let calls = workload("calls");
    let calls_s = calls.to_string_lossy().into_owned();
    let uprobe = format!("{calls_s}:count_*");
    let trace_prog = format!(
        "uprobe:{calls_s}:count_a {{ @ = count(); }} t:sched:sched_switch {{ @s = count(); }}"
    );
    // Each prints its header on stdout once attached.
    let cases: Vec<Vec<&str>> = vec![
        vec!["profile"],
        vec!["offcpu"],
        vec!["wakeup"],
        vec!["offwake"],
        vec!["hotcold"],
        vec!["biolatency"],
        vec!["funccount", &uprobe],
        vec!["trace", "-e", &trace_prog],
    ];
    let pinned_before = pinned();
    for args in cases {
        let t = Running::start(&args, &[], false, "");
        t.kill();
        assert_nothing_left_attached();
        assert_eq!(pinned(), pinned_before, "{args:?} pinned something");
    }
}

/// What is pinned in the BPF filesystem.
fn pinned() -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![PathBuf::from("/sys/fs/bpf")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(e.path());
            } else {
                out.push(e.path().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// Two bpfprof funccounts and a bpftrace on the same tracepoint at once, each counting one workload's
/// calls: every one exact.
#[test]
fn tracers_sharing_a_hook_each_count_exactly() {
    let Some(_lock) = bpf_test("tracers_sharing_a_hook_each_count_exactly") else {
        return;
    };
    let mut w = Workload::start_gated(&workload("calls"), &["0", "0", "321", "1"]);
    let pid = w.pid().to_string();
    let a = Running::start(
        &["funccount", "-p", &pid, "t:syscalls:sys_enter_getpgid"],
        &[],
        false,
        "Tracing",
    );
    let b = Running::start(
        &["funccount", "-p", &pid, "t:syscalls:sys_enter_getpgid"],
        &[],
        false,
        "Tracing",
    );
    // bpftrace prints "Attaching" before it attaches; BEGIN runs once every probe is attached.
    let bt_prog = format!(
        "BEGIN {{ printf(\"ready\\n\"); }} tracepoint:syscalls:sys_enter_getpgid /pid == {pid}/ {{ @n = count(); }}"
    );
    let mut bt = Command::new("bpftrace")
        .args(["-e", &bt_prog])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bpftrace (scripts/setup.sh --bench installs it)");
    let mut bt_out = BufReader::new(bt.stdout.take().unwrap());
    let mut seen = String::new();
    while !seen.ends_with("ready\n") {
        let mut line = String::new();
        if bt_out.read_line(&mut line).unwrap() == 0 {
            panic!("bpftrace ended: {seen}");
        }
        seen.push_str(&line);
    }
    w.go();
    w.wait();
    for (name, t) in [("first", a), ("second", b)] {
        let (out, _) = t.finish(true);
        let n: u64 = out
            .lines()
            .find(|l| l.starts_with("syscalls:sys_enter_getpgid"))
            .and_then(|l| l.split_whitespace().last()?.parse().ok())
            .unwrap_or_else(|| panic!("{name}: {out}"));
        assert_eq!(n, 321, "{name} funccount: {out}");
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(bt.id() as i32, libc::SIGINT) };
    let mut text = String::new();
    std::io::Read::read_to_string(&mut bt_out, &mut text).unwrap();
    let _ = bt.wait();
    assert!(text.contains("@n: 321"), "bpftrace: {text}");
}

/// A full disk under --svg and --pprof: a one-line error naming the file and ENOSPC, a non-zero exit, and
/// the trace not lost: the folded stacks (--svg) or the text report (--pprof) on stdout instead.
#[test]
fn a_full_disk_loses_the_file_not_the_trace() {
    let Some(_lock) = bpf_test("a_full_disk_loses_the_file_not_the_trace") else {
        return;
    };
    let dir = temp("full-disk");
    std::fs::create_dir_all(&dir).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "bpfprof-full"])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(mounted.success(), "mounting a 64 KiB tmpfs");
    // Filled up: the next byte has no room.
    let _ = std::fs::write(dir.join("filler"), vec![0u8; 1 << 20]);
    let burn = workload("burn");
    let w = Workload::start(&burn, &["cpu", "600"]);
    let pid = w.pid().to_string();
    let svg = dir.join("cpu.svg");
    let pprof = dir.join("cpu.pb.gz");
    let cases = [
        (
            vec!["profile", "-p", &pid, "--svg", svg.to_str().unwrap(), "1"],
            "folded stacks are on stdout",
        ),
        (
            vec![
                "profile",
                "-p",
                &pid,
                "--pprof",
                pprof.to_str().unwrap(),
                "1",
            ],
            "text report is on stdout",
        ),
        (
            vec![
                "offcpu",
                "-p",
                &pid,
                "--pprof",
                pprof.to_str().unwrap(),
                "1",
            ],
            "text report is on stdout",
        ),
        (
            vec!["hotcold", "-p", &pid, "--svg", svg.to_str().unwrap(), "1"],
            "folded stacks are on stdout",
        ),
    ];
    let mut results = Vec::new();
    for (args, says) in &cases {
        let out = bpfprof().args(args).output().expect("running bpfprof");
        results.push((args.clone(), *says, out));
    }
    let _ = Command::new("umount").arg(&dir).status();
    drop(w);
    for (args, says, out) in results {
        let err = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{args:?} succeeded: {err}");
        let last = err.trim_end().lines().last().unwrap_or("");
        assert!(
            last.starts_with("bpfprof: ")
                && last.contains(says)
                && last.contains("No space left on device"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            stdout.contains("hot_two_thirds") || (args[0] == "offcpu" && stdout.contains("burn")),
            "{args:?}: the trace is not on stdout: {stdout}"
        );
    }
    assert_nothing_left_attached();
}
