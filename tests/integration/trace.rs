//! trace (one-liners compiled to BPF in-process) against a workload with known system calls
//! (tests/workloads/calls.c: an exact number of getpgid calls), checking bpftrace's output layouts.
use crate::common::{
    assert_nothing_left_attached, bpf_test, bpfprof, bpftrace_beside, outputs_two_at_a_time,
    run_ok, workload, Running, Workload,
};

/// The calls workload making `n` getpgid system calls after `go`.
fn getpgids(n: u32) -> Workload {
    Workload::start_gated(&workload("calls"), &["0", "0", &n.to_string(), "1"])
}

/// Runs `program` over one run of a 77-getpgid workload; `PID` in the program is the workload's pid.
fn trace_workload(program: &str) -> (String, String) {
    let mut w = getpgids(77);
    let program = program.replace("PID", &w.pid().to_string());
    let t = Running::start(&["trace", "-e", &program], &[], false, "Attaching ");
    w.go();
    w.wait();
    t.finish(true)
}

/// As trace_workload, with bpftrace beside on the same workload where it can run the program: a BEGIN
/// probe printing `ready` is added before it (each runs BEGIN once attached); each's standard output
/// after that line.
fn trace_workload_beside(program: &str) -> (String, Option<String>) {
    let mut w = getpgids(77);
    let program = format!(
        "BEGIN {{ printf(\"ready\\n\"); }} {}",
        program.replace("PID", &w.pid().to_string())
    );
    let mut ours = Running::start(&["trace", "-e", &program], &[], false, "Attaching ");
    ours.wait_for_line("ready");
    let theirs = bpftrace_beside(&["-e", &program], "Attaching ", "ready");
    w.go();
    w.wait();
    (ours.finish(true).0, theirs.map(|t| t.finish(true).0))
}

/// The lines `pick` takes from bpfprof's output, and from bpftrace's where it ran, are `want`.
fn assert_lines(
    ours: &str,
    theirs: Option<&str>,
    want: &[String],
    pick: impl Fn(&str) -> Vec<String>,
) {
    assert_eq!(pick(ours), want, "ours:\n{ours}");
    if let Some(theirs) = theirs {
        assert_eq!(pick(theirs), want, "bpftrace's:\n{theirs}");
    }
}

/// Sleeps `ns` (under a second) by the nanosleep system call itself: glibc's nanosleep() calls
/// clock_nanosleep, which bpftrace's tools do not trace.
fn nanosleep_syscall(ns: i64) {
    let t = libc::timespec {
        tv_sec: 0,
        tv_nsec: ns,
    };
    // SAFETY: a valid timespec and a null remainder.
    let r = unsafe {
        libc::syscall(
            libc::SYS_nanosleep,
            &t,
            std::ptr::null_mut::<libc::timespec>(),
        )
    };
    assert_eq!(r, 0, "nanosleep");
}

/// The comm of the calling thread (a test's thread is named after the test).
fn this_thread_comm() -> String {
    // SAFETY: no arguments.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
        .expect("the thread's comm")
        .trim()
        .to_string()
}

#[test]
fn trace_counts_and_prints_maps_as_bpftrace() {
    let Some(_lock) = bpf_test("trace_counts_and_prints_maps_as_bpftrace") else {
        return;
    };
    let (out, theirs) = trace_workload_beside(
        "t:syscalls:sys_enter_getpgid /pid == PID/ { @[comm] = count(); @n[comm, 7] = sum(2); }",
    );
    // bpftrace 0.17's layout: two newlines at exit, then maps of values with no line between them.
    let want = "\n\n@[calls]: 77\n@n[calls, 7]: 154\n";
    assert_eq!(out, want, "{out:?}");
    if let Some(theirs) = theirs {
        assert_eq!(theirs, want, "bpftrace's: {theirs:?}");
    }
    assert_nothing_left_attached();
}

#[test]
fn trace_histograms_and_stats_have_bpftraces_layout() {
    let Some(_lock) = bpf_test("trace_histograms_and_stats_have_bpftraces_layout") else {
        return;
    };
    let (out, theirs) = trace_workload_beside(
        "t:syscalls:sys_enter_getpgid /pid == PID/ { @h = hist(3000); @l = lhist(7, 0, 10, 5); @s = stats(10); @x = avg(4); @lo = min(args->pid - 3); @c = count(); clear(@c); @k[1] = 1; delete(@k[1]); }",
    );
    // bpftrace 0.17's: a blank line after each histogram, after stats and averages, none after a
    // value; a count() emptied by clear() is 0, an emptied map a blank line.
    let want = "

@c: 0
@h: 
[2K, 4K)              77 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|


@l: 
[5, 10)               77 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|

@lo: -3
@s: count 77, average 10, total 770

@x: 4

";
    assert_eq!(out, want);
    if let Some(theirs) = theirs {
        assert_eq!(theirs, want, "bpftrace's");
    }
}

#[test]
fn trace_printf_strings_and_predicates() {
    let Some(_lock) = bpf_test("trace_printf_strings_and_predicates") else {
        return;
    };
    let (out, _) = trace_workload(
        r#"t:syscalls:sys_enter_getpgid /comm == "calls" && pid == PID/ { printf("%s pid=%d\n", comm, args->pid); }"#,
    );
    let lines: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 77, "{out}");
    assert!(lines.iter().all(|l| *l == "calls pid=0"), "{out}");
}

#[test]
fn trace_begin_end_and_intervals() {
    let Some(_lock) = bpf_test("trace_begin_end_and_intervals") else {
        return;
    };
    let out = bpfprof()
        .args([
            "trace",
            "-e",
            r#"BEGIN { printf("hello %d\n", 42); } interval:ms:200 { @n++; if (@n == 1) { @t0 = nsecs; } } interval:s:1 { @dt = (nsecs - @t0) / 1000000; exit(); } END { printf("bye\n"); }"#,
        ])
        .output()
        .expect("running bpfprof");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.starts_with("Attaching 4 probes...\nhello 42\nbye\n\n\n@dt: "),
        "{text:?}"
    );
    let value = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: "))?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    // A 200 ms tick at the first (t0) and every 200 ms up to exit(), dt ms later, give or take the one
    // racing exit(). The 1 s timer starts after the 200 ms one (later under emulation, where attaching
    // is slow): dt is at least 800 ms.
    let (n, dt) = (value("@n"), value("@dt"));
    let want = dt / 200 + 1;
    assert!(
        n + 1 >= want && n <= want + 1 && dt >= 750,
        "{n} ticks in {dt} ms: {text}"
    );
}

#[test]
fn trace_errors_point_at_the_column() {
    let cases: &[(&str, &str)] = &[
        (
            "k:vfs_read { @x = ; }",
            "stdin:1:19-20: ERROR: syntax error, unexpected ;\nk:vfs_read { @x = ; }\n                  ~\n",
        ),
        (
            "t:syscalls:sys_exit_read { @ = args->nope; }",
            "stdin:1:32-42: ERROR: the tracepoint has no field nope (it has: __syscall_nr, ret)",
        ),
        ("BEGIN { @ = retval; }", "the builtin retval does not exist"),
        ("kprobe2:f { }", "ERROR: Invalid probe type: kprobe2"),
    ];
    for (program, want) in cases {
        let out = bpfprof()
            .args(["trace", "-e", program])
            .output()
            .expect("running bpfprof");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{program} succeeded");
        assert!(err.contains(want), "{program}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// The issue's kprobe one-liners, and fentry ones: where the kernel has kprobes they run; where it has
/// not, they run through fentry/fexit if that works, or (this machine: no kprobes, fentry refused) each
/// says which kernel features are missing, in one line, and loads nothing.
#[test]
fn trace_kprobe_one_liners_run_or_name_the_missing_feature() {
    let Some(_lock) = bpf_test("trace_kprobe_one_liners_run_or_name_the_missing_feature") else {
        return;
    };
    let has_kprobes = crate::common::kernel_has_kprobes();
    let programs = [
        "kprobe:vfs_* { @[func] = count(); }",
        "k:vfs_read { @start[tid] = nsecs; } kr:vfs_read /@start[tid]/ { @ns = hist(nsecs - @start[tid]); delete(@start[tid]); }",
        "k:do_nanosleep /pid > 100/ { @[comm]++; }",
        "kr:vfs_read { @ = hist(retval); }",
        "fentry:do_nanosleep { @[comm] = count(); }",
        "kretfunc:vfs_read { @ = hist(retval); }",
    ];
    for program in programs {
        let fentry = !program.starts_with('k') || program.starts_with("kretfunc");
        let out = bpfprof()
            .args(["trace", "-d", "1", "-e", program])
            .output()
            .expect("running bpfprof");
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            continue;
        }
        assert!(!has_kprobes || fentry, "{program}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        let named = if fentry {
            err.contains("fentry/fexit do not work on this kernel")
        } else {
            err.contains("needs kprobes or fentry")
                && err.contains("CONFIG_KPROBES")
                && err.contains("fentry program is refused")
                && err.contains("tracepoints")
        };
        assert!(named, "{program}: {err}");
    }
    assert_nothing_left_attached();
}

/// uprobes, uretprobes and USDT probes over the calls workload: exact counts by `func` and `probe`, USDT
/// arguments (count_b(i) fires calls:tick with i: the sum of 0..1999), a return value.
#[test]
fn trace_uprobes_uretprobes_and_usdt_count_exactly() {
    let Some(_lock) = bpf_test("trace_uprobes_uretprobes_and_usdt_count_exactly") else {
        return;
    };
    let bin = workload("calls");
    let b = bin.display();
    let program = format!(
        "uprobe:{b}:count_* {{ @[func] = count(); @p[probe] = count(); }} uretprobe:{b}:count_b {{ @r = count(); }} uprobe:{b}:twice {{ @arg = sum(arg0); }} uretprobe:{b}:twice {{ @ret = sum(retval); }} usdt:{b}:tick {{ @t = count(); @s = sum(arg0); @big = count(); if (arg0 >= 1000) {{ @big2 = count(); }} }}"
    );
    // A glob's points told apart by their BPF cookies, and (as before 5.15, which has none) each by a
    // program of its own.
    for env in [&[][..], &[("BPFPROF_NO_COOKIES", "1")][..]] {
        let mut w = Workload::start_gated(&bin, &["1000", "2000", "0", "1"]);
        let t = Running::start(&["trace", "-e", &program], env, false, "Attaching ");
        w.go();
        w.wait();
        let (out, err) = t.finish(true);
        assert_eq!(out, want_uprobes(&b.to_string()), "{env:?}: {err}");
    }
    assert_nothing_left_attached();
}

/// What trace_uprobes_uretprobes_and_usdt_count_exactly's program prints for the calls workload in `b`.
fn want_uprobes(b: &str) -> String {
    format!(
        "

@[count_a]: 1000
@[count_b]: 2000
@arg: 1999000
@big: 2000
@big2: 1000
@p[uprobe:{b}:count_a]: 1000
@p[uprobe:{b}:count_b]: 2000
@r: 2000
@ret: 3998000
@s: 1999000
@t: 2000
"
    )
}

/// Stacks name their frames as bpftrace prints them: a user stack of count_b (called from main) at its
/// USDT probe, and a kernel stack of the scheduler, 2 frames each as asked. (At the probe, past
/// count_b's prologue: at a function's first instruction, kernels before 6.x unwind user stacks without
/// its caller, which is not in a frame yet; found on 5.10.)
#[test]
fn trace_stacks_name_frames_as_bpftrace() {
    let Some(_lock) = bpf_test("trace_stacks_name_frames_as_bpftrace") else {
        return;
    };
    let bin = workload("calls");
    // It lives 500 ms past its calls: the frames of a process are named from its mappings, read when its
    // first stack arrives; one that exits within a millisecond may keep only addresses (as in bpftrace).
    let mut w = Workload::start_gated(&bin, &["0", "300", "40", "1", "500"]);
    let program = format!(
        "usdt:{}:tick {{ @u[ustack(2)] = count(); }} t:sched:sched_switch /args->prev_pid == {}/ {{ @k[kstack(2)] = count(); }}",
        bin.display(),
        w.pid()
    );
    let t = Running::start(&["trace", "-e", &program], &[], false, "Attaching ");
    w.go();
    w.wait();
    let (out, err) = t.finish(true);
    assert!(!err.contains("WARNING"), "{err}");
    let frame = |l: &str| {
        l.strip_prefix("    ").is_some_and(|f| {
            f.rsplit_once('+').is_some_and(|(name, off)| {
                !name.is_empty() && !name.starts_with("0x") && off.parse::<u64>().is_ok()
            })
        })
    };
    // The kernel stack where the workload leaves the CPU (it sleeps at least once, for 500 ms), 2 frames
    // from the scheduler. (Not a system call's tracepoint: before 6.x those run with the user's registers
    // and have no kernel stack, found on 6.1.)
    // @k[\n    __schedule+N\n    FRAME\n]: N. While any other probe is on the tracepoint (any ftrace event
    // enabled on the machine: ftrace then records comms at every switch), the tracepoint calls its probes
    // through __traceiter_sched_switch, which is then the innermost frame, as in bpftrace.
    let lines: Vec<&str> = out.lines().collect();
    let at = lines
        .windows(2)
        .position(|w| {
            w[0] == "@k["
                && (w[1].starts_with("    __schedule+")
                    || w[1].starts_with("    __traceiter_sched_switch+"))
        })
        .unwrap_or_else(|| panic!("{out}"));
    let k = &lines[at..at + 4];
    assert!(frame(k[1]) && frame(k[2]), "{out}");
    assert!(k[3].starts_with("]: "), "{out}");
    let u = &lines[lines
        .iter()
        .position(|l| *l == "@u[")
        .unwrap_or_else(|| panic!("{out}"))..];
    assert!(u[1].starts_with("    count_b+") && frame(u[1]), "{out}");
    assert!(u[2].starts_with("    main+") && frame(u[2]), "{out}");
    assert_eq!(u[3], "]: 300", "{out}");
}

/// -c runs a command and traces it from its start (cpid is its pid; its end ends the trace); -f json
/// writes bpftrace's records.
#[test]
fn trace_runs_a_command_with_json_output() {
    let Some(_lock) = bpf_test("trace_runs_a_command_with_json_output") else {
        return;
    };
    let bin = workload("calls");
    let mut child = bpfprof()
        .args([
            "trace",
            "-f",
            "json",
            "-c",
            &format!("{} 0 0 33", bin.display()),
            "-e",
            r#"t:syscalls:sys_enter_getpgid /pid == cpid/ { @[comm] = count(); printf("%d\n", args->pid); } END { @h = hist(5); }"#,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running bpfprof");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"go\n")
        .expect("writing go");
    let out = child.wait_with_output().expect("waiting for bpfprof");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with('{')).collect();
    assert_eq!(
        lines[0], r#"{"type": "attached_probes", "data": {"probes": 2}}"#,
        "{text}"
    );
    let printfs = lines
        .iter()
        .filter(|l| **l == r#"{"type": "printf", "data": "0\n"}"#)
        .count();
    assert_eq!(printfs, 33, "{text}");
    assert!(
        lines.contains(&r#"{"type": "map", "data": {"@": {"calls": 33}}}"#),
        "{text}"
    );
    assert!(
        lines.contains(&r#"{"type": "hist", "data": {"@h": [{"min": 4, "max": 7, "count": 1}]}}"#),
        "{text}"
    );
    for l in &lines {
        serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{l}: {e}"));
    }
}

/// The issue's uretprobe one-liner: what an interactive bash read (through a pseudo-terminal, so that
/// bash uses readline).
#[test]
fn trace_bash_readline_returns() {
    let Some(_lock) = bpf_test("trace_bash_readline_returns") else {
        return;
    };
    let t = Running::start(
        &[
            "trace",
            "-e",
            r#"uretprobe:/bin/bash:readline { printf("%s\n", str(retval)); }"#,
        ],
        &[],
        false,
        "Attaching ",
    );
    let mut script = std::process::Command::new("script")
        .args(["-qfc", "bash --norc -i", "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("running script (util-linux)");
    // Each line is typed once readline reads (it discards what comes before it starts).
    let (tx, rx) = std::sync::mpsc::channel();
    let mut terminal = script.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        use std::io::Read as _;
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = terminal.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            // readline turns bracketed paste on each time it starts reading a line.
            while let Some(at) = seen.find("\x1b[?2004h") {
                seen.drain(..at + 8);
                let _ = tx.send(());
            }
        }
    });
    {
        use std::io::Write as _;
        let mut input = script.stdin.take().expect("stdin");
        for line in ["echo traced-line-1", "true traced-line-2", "exit"] {
            rx.recv_timeout(std::time::Duration::from_secs(20))
                .expect("bash prompts");
            input
                .write_all(format!("{line}\n").as_bytes())
                .expect("typing");
        }
    }
    script.wait().expect("waiting for script");
    let (out, _) = t.finish(true);
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with("Attaching"))
        .collect();
    assert_eq!(
        lines,
        ["echo traced-line-1", "true traced-line-2", "exit"],
        "{out}"
    );
}

/// -l lists what a pattern matches, as bpftrace names probes.
#[test]
fn trace_lists_probes() {
    let bin = workload("calls");
    let b = bin.display();
    let list = |pattern: &str| {
        let out = bpfprof()
            .args(["trace", "-l", pattern])
            .output()
            .expect("running bpfprof");
        assert!(
            out.status.success(),
            "{pattern}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(
        list(&format!("uprobe:{b}:count_*")),
        format!("uprobe:{b}:count_a\nuprobe:{b}:count_b\nuprobe:{b}:count_c\n")
    );
    assert_eq!(
        list(&format!("usdt:{b}:*")),
        format!("usdt:{b}:calls:tick\n")
    );
    assert_eq!(
        list("tracepoint:syscalls:sys_enter_getpgid"),
        "tracepoint:syscalls:sys_enter_getpgid\n"
    );
}

/// A ring buffer that overflows loses records, and says how many: printed lines plus `Lost N events` are
/// exactly the calls made.
#[test]
fn trace_counts_printf_records_it_had_no_room_for() {
    let Some(_lock) = bpf_test("trace_counts_printf_records_it_had_no_room_for") else {
        return;
    };
    const CALLS: u64 = 300_000;
    let mut w = Workload::start_gated(&workload("calls"), &["0", "0", &CALLS.to_string(), "1"]);
    let program = format!(
        r#"t:syscalls:sys_enter_getpgid /pid == {}/ {{ printf("%s %d\n", comm, args->pid); }}"#,
        w.pid()
    );
    let t = Running::start(&["trace", "-e", &program], &[], false, "Attaching ");
    w.go();
    w.wait();
    let (out, err) = t.finish(true);
    let printed = out.lines().filter(|l| *l == "calls 0").count() as u64;
    let lost: u64 = err
        .lines()
        .find_map(|l| {
            l.strip_prefix("Lost ")
                .and_then(|r| r.strip_suffix(" events"))
        })
        .map_or(0, |n| n.parse().expect("a count"));
    assert_eq!(
        printed + lost,
        CALLS,
        "printed {printed}, lost {lost}: {err}"
    );
}

/// Programs a new-user trial found broken: statements after exit() (the verifier refused unreachable
/// code), long expressions and many variables (the stack ran out), compound operators on maps, bpftrace's
/// logical >>, a stray `}`. The outputs are bpftrace 0.17's, to the byte (compared by hand on this
/// machine; its printf takes neither C's flags nor octal escapes): two newlines at exit, then each map,
/// the never-assigned @x of the first as a blank line.
#[test]
fn trace_runs_what_bpftrace_runs() {
    let Some(_lock) = bpf_test("trace_runs_what_bpftrace_runs") else {
        return;
    };
    let sum40: Vec<String> = (1..=40).map(|i| i.to_string()).collect();
    let vars40: String = (1..=40).map(|i| format!("$v{i} = {i}; ")).collect();
    let cases: Vec<(String, &str)> = vec![
        (
            "BEGIN { if (1) { exit(); } @x = 1; }".into(),
            "Attaching 1 probe...\n\n\n\n",
        ),
        (
            "interval:ms:50 { @i++; if (@i == 3) { exit(); } }".into(),
            "Attaching 1 probe...\n\n\n@i: 3\n",
        ),
        (
            format!("BEGIN {{ @x = {}; exit(); }}", sum40.join(" + ")),
            "Attaching 1 probe...\n\n\n@x: 820\n",
        ),
        (
            format!("BEGIN {{ {vars40}@x = $v1 + $v40; exit(); }}"),
            "Attaching 1 probe...\n\n\n@x: 41\n",
        ),
        (
            "BEGIN { $a = -1; @s = $a >> 60; @m = 3; @m *= 5; @m <<= 1; exit(); }".into(),
            "Attaching 1 probe...\n\n\n@m: 30\n@s: 15\n",
        ),
        // A trial found: str()'s length ignored, C's printf flags and escapes missing.
        (
            r#"BEGIN { $n = 2; printf("[%s][%s][%s][%+d][%#x][%#o][% d]\x41\101\n", str(comm, 3), str(comm, 0), str(comm, $n), 5, 255, 8, 5); exit(); }"#.into(),
            "Attaching 1 probe...\n[bpf][][bp][+5][0xff][010][ 5]AA\n\n\n",
        ),
        // Six strings of 64 bytes: more than the stack holds with a record beside them.
        (
            r#"BEGIN { printf("%s %s %s %s %s %s\n", str(comm), str(comm), str(comm), str(comm), str(comm), str(comm)); exit(); }"#.into(),
            "Attaching 1 probe...\nbpfprof bpfprof bpfprof bpfprof bpfprof bpfprof\n\n\n",
        ),
        // A key of six such strings (384 bytes), read back, deleted and counted again: more than the
        // stack holds beside its parts.
        (
            r#"BEGIN { @k[str(comm), str(comm), "a", str(comm), str(comm), str(comm)] = 7; @k[str(comm), str(comm), "a", str(comm), str(comm), str(comm)]++; @v = @k[str(comm), str(comm), "a", str(comm), str(comm), str(comm)]; delete(@k[str(comm), str(comm), "a", str(comm), str(comm), str(comm)]); @[str(comm), str(comm), "a", str(comm), str(comm), str(comm)] = count(); exit(); }"#.into(),
            "Attaching 1 probe...\n\n\n@[bpfprof, bpfprof, a, bpfprof, bpfprof, bpfprof]: 1\n\n@v: 8\n",
        ),
        // One large key read while another of the same map is built: each keeps its own buffer (one per
        // map once let the read overwrite the key being assigned).
        (
            r#"BEGIN { @a[str(comm), str(comm), "a", str(comm), str(comm), str(comm)] = 1; @a[str(comm), str(comm), "b", str(comm), str(comm), str(comm)] = 5; @a[str(comm), str(comm), "a", str(comm), str(comm), str(comm)] = @a[str(comm), str(comm), "b", str(comm), str(comm), str(comm)]; exit(); }"#.into(),
            "Attaching 1 probe...\n\n\n@a[bpfprof, bpfprof, a, bpfprof, bpfprof, bpfprof]: 5\n@a[bpfprof, bpfprof, b, bpfprof, bpfprof, bpfprof]: 5\n",
        ),
    ];
    for (program, want) in &cases {
        let out = bpfprof()
            .args(["trace", "-e", program])
            .output()
            .expect("running bpfprof");
        assert!(
            out.status.success(),
            "{program}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), *want, "{program}");
    }
    // A key over the kernel's 512 bytes: one line says so.
    let nine = ["str(0)"; 9].join(", ");
    let out = bpfprof()
        .args(["trace", "-e", &format!("BEGIN {{ @[{nine}] = count(); }}")])
        .output()
        .expect("running bpfprof");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.lines().count() == 1 && stderr.contains("576 bytes"),
        "{stderr}"
    );
    // Globs count as the tracepoints they expand to, as bpftrace counts them.
    let out = bpfprof()
        .args([
            "trace",
            "-e",
            "t:sched:sched_process_e* { @ = count(); } BEGIN { exit(); }",
        ])
        .output()
        .expect("running bpfprof");
    let expanded = std::fs::read_dir("/sys/kernel/tracing/events/sched")
        .expect("tracefs")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("sched_process_e")
        })
        .count();
    assert!(expanded >= 2, "sched_process_exec and _exit exist");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .starts_with(&format!("Attaching {} probes...", expanded + 1)),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = bpfprof()
        .args(["trace", "-e", "BEGIN { @x = 1; exit(); } }"])
        .output()
        .expect("running bpfprof");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unexpected }"));
}

/// The issue's tracepoint and profile one-liners, as written, over work whose effect is known.
#[test]
fn trace_the_issues_tracepoint_and_profile_one_liners() {
    let Some(_lock) = bpf_test("trace_the_issues_tracepoint_and_profile_one_liners") else {
        return;
    };
    let run = |args: &[&str]| {
        let out = bpfprof().args(args).output().expect("running bpfprof");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    // Every openat, printed; cat opens a file of a unique name once.
    let file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("trace-opened-once");
    // A line of its own: cat prints it to the same terminal as the trace.
    std::fs::write(&file, "x\n").expect("writing a file");
    let text = run(&[
        "trace",
        "-c",
        &format!("cat {}", file.display()),
        "-e",
        r#"tracepoint:syscalls:sys_enter_openat { printf("%s %s\n", comm, str(args->filename)); }"#,
    ]);
    let want = format!("cat {}", file.display());
    assert_eq!(text.lines().filter(|l| *l == want).count(), 1, "{text}");
    // Read sizes by command: dd reads 10 blocks of 4 KiB.
    let text = run(&[
        "trace",
        "-c",
        "dd if=/dev/zero of=/dev/null bs=4096 count=10 status=none",
        "-e",
        "t:syscalls:sys_exit_read { @[comm] = hist(args->ret); }",
    ]);
    let dd = text
        .split("\n\n")
        .map(str::trim_start)
        .find(|m| m.starts_with("@[dd]: \n"))
        .unwrap_or_else(|| panic!("no @[dd] in {text}"));
    assert!(
        dd.lines()
            .any(|l| l.starts_with("[4K, 8K)") && l.split_whitespace().nth(2) == Some("10")),
        "{dd}"
    );
    // Context switches by the name of the task switched out, for 5 s, then exit().
    let started = std::time::Instant::now();
    let text = run(&[
        "trace",
        "-e",
        "tracepoint:sched:sched_switch { @[args->prev_comm] = count(); } interval:s:5 { exit(); }",
    ]);
    let secs = started.elapsed().as_secs_f64();
    assert!((4.5..10.0).contains(&secs), "ran {secs} s");
    assert!(text.starts_with("Attaching 2 probes...\n"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("@[swapper/") || l.starts_with("@[kworker")),
        "{text}"
    );
    // CPU samples by stacks and command: burn spins in spin() under work_loop until killed.
    let burn = workload("burn");
    let w = Workload::start(&burn, &["cpu", "600"]);
    let text = run(&[
        "trace",
        "-d",
        "2",
        "-e",
        "profile:hz:99 { @[kstack, ustack, comm] = count(); }",
    ]);
    drop(w);
    // Entries end `, burn]: N`; the user frames before it, `    name+off`.
    let mut burn_samples = 0;
    let mut in_spin = 0;
    for (frames, comm, n) in crate::common::stack_key_entries(&text) {
        if comm != "burn" {
            continue;
        }
        burn_samples += n;
        if crate::common::has_run(&frames, &["spin", "hot_two_thirds", "work_loop", "main"])
            || crate::common::has_run(&frames, &["spin", "hot_one_third", "work_loop", "main"])
        {
            in_spin += n;
        }
    }
    // 2 s at 99 Hz of a CPU-bound thread: ~198 samples (less the time the machine gave others).
    assert!(
        burn_samples >= 100,
        "{burn_samples} samples of burn:\n{text}"
    );
    assert!(
        in_spin * 10 >= burn_samples * 9,
        "{in_spin} of {burn_samples} in spin:\n{text}"
    );
}

/// time() (strftime's format of the local time, printed when read, as bpftrace; 20 of bpftrace's own
/// tools print it) and `1e6`-style literals (integers, as bpftrace's tools divide by them): the same
/// output as bpftrace's for one program, text and JSON.
#[test]
fn trace_time_and_power_of_ten_literals_print_as_bpftrace() {
    let Some(_lock) = bpf_test("trace_time_and_power_of_ten_literals_print_as_bpftrace") else {
        return;
    };
    // Whole days: both runs fall in one (but at midnight).
    let program = r#"BEGIN { time("%Y-%m-%d "); printf("%d %d\n", 1e6, 2500 / 5e2); time("[%Y]\n"); exit(); }"#;
    for format in ["text", "json"] {
        let run = |cmd: &mut std::process::Command| {
            let out = cmd
                .args(["-f", format, "-e", program])
                .output()
                .expect("running a tracer");
            assert!(out.status.success(), "{out:?}");
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let ours = run(bpfprof().arg("trace"));
        let theirs = run(&mut std::process::Command::new("bpftrace"));
        // (bpftrace 0.17 ends with one more blank line at exit, whatever the program printed.)
        assert_eq!(ours.trim_end(), theirs.trim_end(), "-f {format}");
        if format == "json" {
            continue;
        }
        let today = std::process::Command::new("date")
            .arg("+%Y-%m-%d 1000000 5")
            .output()
            .expect("date");
        let today = String::from_utf8_lossy(&today.stdout);
        assert!(ours.contains(today.trim()), "{ours}");
    }
}

/// The tools Debian's bpftrace package installs (/usr/sbin/*.bt; scripts/setup.sh installs bpftrace)
/// all pass `trace --dry-run` (parse, types, code generation), but those that name kernel structs'
/// members or kernel symbols that kernels rename or lack: they pass where the kernel has them, and
/// elsewhere fail with one line saying what is missing (as bpftrace does), not a panic.
#[test]
fn bpftraces_own_tools_dry_run() {
    let Some(_lock) = bpf_test("bpftraces_own_tools_dry_run") else {
        return;
    };
    // This project's CI kernel has all but runqlen's cfs_rq.nr_running (renamed in 6.14) and loads's
    // avenrun (kallsyms without data symbols).
    let typed = [
        "biosnoop",
        "dcsnoop",
        "loads",
        "mdflush",
        "oomkill",
        "runqlen",
        "tcpaccept",
        "tcpconnect",
        "tcpdrop",
        "tcplife",
        "tcpretrans",
        "tcpsynbl",
        "undump",
    ];
    let missing = ["has no field", "the kernel has no", "no kernel symbol"];
    let mut tools: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/sbin")
        .expect("/usr/sbin")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "bt"))
        .collect();
    tools.sort();
    assert!(tools.len() >= 30, "bpftrace's tools: {tools:?}");
    let mut wrong = Vec::new();
    let mut passed = 0;
    let runs: Vec<Vec<String>> = tools
        .iter()
        .map(|t| vec!["trace".into(), "--dry-run".into(), t.display().to_string()])
        .collect();
    let runs = tools.iter().zip(outputs_two_at_a_time(&runs));
    for (tool, out) in runs {
        let name = tool
            .file_stem()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let line = stderr.lines().next().unwrap_or("");
        if out.status.success() {
            assert!(
                line.contains("parses, checks and compiles"),
                "{name}: {stderr}"
            );
            passed += 1;
            continue;
        }
        let explained = typed.contains(&name.as_str())
            && line.starts_with(&format!("bpfprof: {}:", tool.display()))
            && missing.iter().any(|m| line.contains(m));
        if !explained || stderr.contains("panicked") {
            wrong.push(format!("{name}: {line}"));
        }
    }
    assert!(wrong.is_empty(), "failed: {wrong:#?}");
    eprintln!("{passed} of {} tools pass --dry-run", tools.len());
}

/// bpftrace's own syscount.bt, unchanged, during 200000 getpgid calls of a workload: its header, then on
/// Ctrl-C its END's two top-10 lists (print(@m, 10)) in bpftrace's layout, getpgid's count (121 on
/// x86-64) and the workload's process among them.
#[test]
fn bpftraces_syscount_runs_unchanged() {
    let Some(_lock) = bpf_test("bpftraces_syscount_runs_unchanged") else {
        return;
    };
    let calls = 200_000u64;
    let mut w = Workload::start_gated(&workload("calls"), &["0", "0", &calls.to_string()]);
    let tracer = Running::start(
        &["trace", "/usr/sbin/syscount.bt"],
        &[],
        false,
        "Attaching 3 probes...",
    );
    w.go();
    w.wait();
    let (out, stderr) = tracer.finish(true);
    let (head, rest) = out
        .split_once("\nTop 10 syscalls IDs:\n")
        .unwrap_or_else(|| panic!("{out}\n{stderr}"));
    assert_eq!(head, "Counting syscalls... Hit Ctrl-C to end.\n", "{out}");
    let (syscalls, processes) = rest
        .split_once("\nTop 10 processes:\n")
        .unwrap_or_else(|| panic!("{out}"));
    let entries = |text: &str, map: &str| -> Vec<(String, u64)> {
        let lines: Vec<&str> = text.lines().take_while(|l| !l.is_empty()).collect();
        assert!(!lines.is_empty() && lines.len() <= 10, "{map}: {text}");
        lines
            .iter()
            .map(|l| {
                let (k, n) = l
                    .strip_prefix(&format!("@{map}["))
                    .and_then(|l| l.rsplit_once("]: "))
                    .unwrap_or_else(|| panic!("{l:?} in {out}"));
                (k.to_string(), n.parse().unwrap_or_else(|_| panic!("{l:?}")))
            })
            .collect()
    };
    let syscalls = entries(syscalls, "syscall");
    // Sorted as bpftrace sorts: by count, ascending.
    assert!(syscalls.windows(2).all(|w| w[0].1 <= w[1].1), "{out}");
    let getpgid = syscalls.iter().find(|(k, _)| k == "121").map(|e| e.1);
    assert!(
        getpgid.is_some_and(|n| n >= calls && n < calls + 1000),
        "getpgid: {getpgid:?} for {calls} calls: {out}"
    );
    let processes = entries(processes, "process");
    assert!(
        processes.iter().any(|(k, n)| k == "calls" && *n >= calls),
        "{out}"
    );
}

/// bpftrace's own naptime.bt, unchanged (a cast of curtask to `struct task_struct *`, members read
/// through BTF two pointers deep, and a system call's pointer argument read through its struct), beside
/// bpftrace on the same two nanosleeps of this test's thread: the same lines but for the time of day, and
/// the values this process knows (its parent's pid and comm, its own pid and the thread's comm).
#[test]
fn bpftraces_naptime_reads_kernel_structs_as_bpftrace() {
    let Some(_lock) = bpf_test("bpftraces_naptime_reads_kernel_structs_as_bpftrace") else {
        return;
    };
    let header = "TIME     PPID   PCOMM            PID    COMM             SECONDS";
    let mut ours = Running::start(
        &["trace", "/usr/sbin/naptime.bt"],
        &[],
        false,
        "Attaching 2 probes...",
    );
    ours.wait_for_line(header);
    let theirs = bpftrace_beside(&["/usr/sbin/naptime.bt"], "Attaching 2 probes...", header);
    // Two naps by system call (glibc's nanosleep() calls clock_nanosleep, which naptime does not trace).
    for ns in [150_000_000, 20_000_000] {
        nanosleep_syscall(ns);
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (ours, _) = ours.finish(true);
    let theirs = theirs.map(|t| t.finish(true).0);
    // This process's lines (others may nap meanwhile), without the time of day.
    let pid = std::process::id();
    let lines = |out: &str| -> Vec<String> {
        out.lines()
            .filter(|l| l.len() > 9 && l.split_whitespace().nth(3) == Some(&pid.to_string()))
            .map(|l| l[9..].to_string())
            .collect()
    };
    let comm = |p: String| {
        std::fs::read_to_string(p)
            .expect("a comm")
            .trim()
            .to_string()
    };
    // SAFETY: no arguments.
    let ppid = unsafe { libc::getppid() };
    let want: Vec<String> = ["0.150", "0.020"]
        .iter()
        .map(|secs| {
            format!(
                "{ppid:<6} {:<16} {pid:<6} {:<16} {secs}",
                comm(format!("/proc/{ppid}/comm")),
                this_thread_comm()
            )
        })
        .collect();
    assert_lines(&ours, theirs.as_deref(), &want, lines);
}

/// bpftrace's own opensnoop.bt, unchanged: one probe over open and openat, whose records hold
/// `filename` at different places (a program per tracepoint), beside bpftrace on 5 opens of a file and
/// 3 of a path that does not exist: the same lines, each open seen once, with its fd or errno.
#[test]
fn bpftraces_opensnoop_reads_each_tracepoints_fields_where_they_lie() {
    let Some(_lock) = bpf_test("bpftraces_opensnoop_reads_each_tracepoints_fields_where_they_lie")
    else {
        return;
    };
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let there = dir.join("opensnoop-there");
    std::fs::write(&there, "x").expect("a file to open");
    let header = "PID    COMM               FD ERR PATH";
    let mut ours = Running::start(
        &["trace", "/usr/sbin/opensnoop.bt"],
        &[],
        false,
        "Attaching 6 probes...",
    );
    ours.wait_for_line(header);
    let theirs = bpftrace_beside(&["/usr/sbin/opensnoop.bt"], "Attaching 6 probes...", header);
    let missing = dir.join("opensnoop-missing");
    let mut fds = Vec::new();
    for _ in 0..5 {
        fds.push(std::fs::File::open(&there).expect("opening"));
    }
    for _ in 0..3 {
        assert!(std::fs::File::open(&missing).is_err());
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (ours, _) = ours.finish(true);
    let theirs = theirs.map(|t| t.finish(true).0);
    let mine = |out: &str| -> Vec<String> {
        out.lines()
            .filter(|l| l.contains("opensnoop-"))
            .map(str::to_string)
            .collect()
    };
    use std::os::fd::AsRawFd;
    let pid = std::process::id();
    let comm = this_thread_comm();
    let mut want: Vec<String> = fds
        .iter()
        .map(|f| {
            format!(
                "{pid:<6} {:<16} {:>4} {:>3} {}",
                comm,
                f.as_raw_fd(),
                0,
                there.display()
            )
        })
        .collect();
    want.extend((0..3).map(|_| {
        format!(
            "{pid:<6} {:<16} {:>4} {:>3} {}",
            comm,
            -1,
            2,
            missing.display()
        )
    }));
    assert_lines(&ours, theirs.as_deref(), &want, mine);
}

/// What `bpfprof trace ARGS` prints on standard output, run to its end (run_ok: it must succeed); the
/// same ARGS run bpftrace in bpftrace_output.
fn trace_ok(args: &[&str]) -> String {
    let out = run_ok(&[&["trace"], args].concat());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What bpftrace prints on standard output running `args` to its end; None where it cannot run the
/// program (said on stderr).
fn bpftrace_output(args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("bpftrace")
        .args(args)
        .output()
        .expect("running bpftrace");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        eprintln!("bpftrace cannot run this here, compared with nothing: {stderr}");
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// print(@m, top, div), maps emptied by clear(), stats and averages, strings, and the records of
/// system(), cat() and buf(), and unresolved symbols (a null address is `0`) print byte for byte as bpftrace 0.17 prints them, in text and in JSON (its
/// NDJSON: a map's entries in the order text shows, `syscall` for system(), two newlines at exit there
/// too). Each is compared with bpftrace running the same program, where it runs; and with what it printed
/// here, kept in the test, where it does not.
#[test]
fn trace_print_and_records_are_bpftraces_byte_for_byte() {
    let Some(_lock) = bpf_test("trace_print_and_records_are_bpftraces_byte_for_byte") else {
        return;
    };
    let program = r#"BEGIN { @m[1] = 1; @m[2] = 5; @m[3] = 3; print(@m, 2); print(@m, 0, 2); @h = hist(3); @h = hist(3); @h = hist(3); @h = hist(100); print(@h, 0, 2); @c = count(); clear(@c); @e[1] = 1; clear(@e); @s = stats(4); @a = avg(3); @k[1, "x"] = hist(5); @st = "abc"; system("echo hi"); cat("/proc/sys/kernel/ostype"); printf("%r\n", buf("ab\x01", 3)); printf("[%s][%s][%s]\n", ksym(0), usym(0), ksym(1)); exit(); }"#;
    let text = "Attaching 1 probe...
@m[3]: 3
@m[2]: 5
@m[1]: 0
@m[3]: 1
@m[2]: 2
@h: 
[2, 4)                 1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
[4, 8)                 0 |                                                    |
[8, 16)                0 |                                                    |
[16, 32)               0 |                                                    |
[32, 64)               0 |                                                    |
[64, 128)              0 |@@@@@@@@@@@@@@@@@                                   |

hi
Linux
ab\\x01
[0][0][0x1]


@a: 3

@c: 0

@h: 
[2, 4)                 3 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
[4, 8)                 0 |                                                    |
[8, 16)                0 |                                                    |
[16, 32)               0 |                                                    |
[32, 64)               0 |                                                    |
[64, 128)              1 |@@@@@@@@@@@@@@@@@                                   |

@k[1, x]: 
[4, 8)                 1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|

@m[1]: 1
@m[3]: 3
@m[2]: 5
@s: count 1, average 4, total 4

@st: abc
";
    let json = r#"{"type": "attached_probes", "data": {"probes": 1}}
{"type": "map", "data": {"@m": {"3": 3, "2": 5}}}
{"type": "map", "data": {"@m": {"1": 0, "3": 1, "2": 2}}}
{"type": "hist", "data": {"@h": [{"min": 2, "max": 3, "count": 1}, {"min": 4, "max": 7, "count": 0}, {"min": 8, "max": 15, "count": 0}, {"min": 16, "max": 31, "count": 0}, {"min": 32, "max": 63, "count": 0}, {"min": 64, "max": 127, "count": 0}]}}
{"type": "syscall", "data": "hi\n"}
{"type": "cat", "data": "Linux\n"}
{"type": "printf", "data": "ab\\x01\n"}
{"type": "printf", "data": "[0][0][0x1]\n"}


{"type": "stats", "data": {"@a": 3}}
{"type": "map", "data": {"@c": 0}}
{"type": "hist", "data": {"@h": [{"min": 2, "max": 3, "count": 3}, {"min": 4, "max": 7, "count": 0}, {"min": 8, "max": 15, "count": 0}, {"min": 16, "max": 31, "count": 0}, {"min": 32, "max": 63, "count": 0}, {"min": 64, "max": 127, "count": 1}]}}
{"type": "hist", "data": {"@k": {"1,x": [{"min": 4, "max": 7, "count": 1}]}}}
{"type": "map", "data": {"@m": {"1": 1, "3": 3, "2": 5}}}
{"type": "stats", "data": {"@s": {"count": 1, "average": 4, "total": 4}}}
{"type": "map", "data": {"@st": "abc"}}
"#;
    for (format, want) in [("text", text), ("json", json)] {
        let args = ["--unsafe", "-f", format, "-e", program];
        let ours = trace_ok(&args);
        assert_eq!(ours, want, "{format}");
        if let Some(theirs) = bpftrace_output(&args) {
            assert_eq!(theirs, want, "bpftrace's {format}");
        }
    }
}

/// `[i]` reads an element: of a pointer to pointers (execve's argv, beside bpftrace on the same command),
/// of a pointer cast to an integer type, and of an array member read through BTF (the first word of the
/// running task's CPU mask is not zero; the 3rd byte of the task equals the one read through a cast).
#[test]
fn trace_indexes_read_array_and_pointer_elements() {
    let Some(_lock) = bpf_test("trace_indexes_read_array_and_pointer_elements") else {
        return;
    };
    let program = r#"tracepoint:syscalls:sys_enter_execve /pid == cpid/ { printf("%s|%s|%s\n", str(args->argv[0]), str(args->argv[1]), str(args->argv[2])); $t = curtask; printf("%d %d\n", $t->cpus_mask.bits[0] != 0, ((uint8 *)$t)[2] == *(uint8 *)((uint64)$t + 2)); }"#;
    let args = ["-c", "/bin/echo first second", "-e", program];
    let ours = trace_ok(&args);
    let lines = |out: &str| -> Vec<String> {
        out.lines()
            .filter(|l| l.contains('|') || l.starts_with(['0', '1']))
            .map(String::from)
            .collect()
    };
    assert_eq!(lines(&ours), ["/bin/echo|first|second", "1 1"], "{ours}");
    if let Some(theirs) = bpftrace_output(&args) {
        assert_eq!(lines(&theirs), lines(&ours), "bpftrace's: {theirs}");
    }
}

/// join()'s records in `-f json`: the line without its newline, as bpftrace's (beside it on the same
/// command).
#[test]
fn trace_join_records_in_json_are_bpftraces() {
    let Some(_lock) = bpf_test("trace_join_records_in_json_are_bpftraces") else {
        return;
    };
    let program = r#"tracepoint:syscalls:sys_enter_execve /pid == cpid/ { join(args->argv); join(args->argv, ","); }"#;
    let args = ["-f", "json", "-c", "/bin/true a b", "-e", program];
    let ours = trace_ok(&args);
    let want = "{\"type\": \"attached_probes\", \"data\": {\"probes\": 1}}
{\"type\": \"join\", \"data\": \"/bin/true a b\"}
{\"type\": \"join\", \"data\": \"/bin/true,a,b\"}


";
    assert_eq!(ours, want);
    if let Some(theirs) = bpftrace_output(&args) {
        assert_eq!(theirs, want, "bpftrace's");
    }
}

/// Sums a bpftrace histogram's counts (its rows `[lo, hi)   N |@@@|`).
fn hist_total(out: &str) -> u64 {
    out.lines()
        .filter(|l| l.starts_with('[') || l.starts_with('('))
        .map(|l| {
            l.split_once(')')
                .or_else(|| l.split_once(']'))
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("a histogram row: {l:?}"))
        })
        .sum()
}

/// Drops a histogram's rows, whose buckets and counts differ from run to run: what is left is the layout.
fn without_rows(out: &str) -> String {
    out.lines()
        .filter(|l| !(l.starts_with('[') || l.starts_with('(')))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// bpftrace's own runqlat.bt, unchanged (its `#include <linux/sched.h>` read for TASK_RUNNING), beside
/// bpftrace (which cannot compile that include where the kernel's headers are not installed: it runs the
/// file without it and with TASK_RUNNING as 0). This thread naps N times, so each tracer's histogram holds
/// at least N waits for a CPU, and its layout is bpftrace's to the line. bpftrace starts first and stops
/// last, so our window lies within its: ours counts no more than its, and not fewer by more than half of
/// N and the switches of the moments only it traced (our start and stop among them: at most 10000 a
/// second).
#[test]
fn bpftraces_runqlat_counts_every_wait_as_bpftrace() {
    let Some(_lock) = bpf_test("bpftraces_runqlat_counts_every_wait_as_bpftrace") else {
        return;
    };
    let naps = 3000u64;
    let header = "Tracing CPU scheduler... Hit Ctrl-C to end.";
    let stripped = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("runqlat-no-include.bt");
    let source = std::fs::read_to_string("/usr/sbin/runqlat.bt").expect("runqlat.bt");
    std::fs::write(
        &stripped,
        source
            .lines()
            .filter(|l| !l.starts_with("#include"))
            .map(|l| l.replace("TASK_RUNNING", "0") + "\n")
            .collect::<String>(),
    )
    .expect("writing a copy");
    let theirs = bpftrace_beside(
        &[stripped.to_str().expect("a path")],
        "Attaching 5 probes...",
        header,
    );
    // The moments only bpftrace traced: from its start to ours, and from our end to its.
    let alone = std::time::Instant::now();
    let mut ours = Running::start(
        &["trace", "/usr/sbin/runqlat.bt"],
        &[],
        false,
        "Attaching 5 probes...",
    );
    ours.wait_for_line(header);
    let mut alone = alone.elapsed();
    for _ in 0..naps {
        nanosleep_syscall(100_000);
    }
    let (ours, _) = ours.finish(true);
    let end = std::time::Instant::now();
    let theirs = theirs.map(|t| t.finish(true).0);
    alone += end.elapsed();
    let total = hist_total(&ours);
    assert!(
        total >= naps,
        "{total} waits counted for {naps} naps:\n{ours}"
    );
    // After the header, as bpftrace: two newlines, the @qtime that END cleared (a blank line), then the
    // histogram.
    assert_eq!(without_rows(&ours), "\n\n\n@usecs: \n\n", "{ours}");
    if let Some(theirs) = theirs {
        assert_eq!(
            without_rows(&theirs),
            without_rows(&ours),
            "bpftrace's:\n{theirs}"
        );
        let all = hist_total(&theirs);
        // Beyond the naps: the tracers' own start and stop switch (under the VM suites' emulation 3600
        // times a second was seen); 10000 a second allowed.
        let background = (alone.as_secs_f64() * 10_000.0) as u64;
        assert!(
            total <= all && all - total <= naps / 2 + background,
            "ours counted {total}, bpftrace {all}, for {naps} naps ({alone:?} traced by bpftrace alone):\n{ours}\nbpftrace's:\n{theirs}"
        );
    }
}

/// bpftrace's own vfsstat.bt, unchanged (a kprobe glob, interval printing of a map it then clears):
/// where the kernel has kprobes, beside bpftrace, `dd` copies N bytes one at a time from /dev/zero to
/// /dev/null: each tracer's per-second counts of vfs_read and vfs_write add up to N or more, their lines
/// are bpftrace's (a time line, then the map sorted by count), and the two sums differ by less than half
/// of N (each loses the calls after its last second printed, and each traced moments the other did not:
/// the machine is otherwise quiet). Without kprobes, one line names what is missing.
#[test]
fn bpftraces_vfsstat_counts_each_vfs_call_as_bpftrace() {
    let Some(_lock) = bpf_test("bpftraces_vfsstat_counts_each_vfs_call_as_bpftrace") else {
        return;
    };
    let header = "Tracing key VFS calls... Hit Ctrl-C to end.";
    if !crate::common::kernel_has_kprobes() {
        let out = bpfprof()
            .args(["trace", "/usr/sbin/vfsstat.bt"])
            .output()
            .expect("running bpfprof");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success()
                && stderr.lines().count() == 1
                && stderr.contains("CONFIG_KPROBES"),
            "{stderr}"
        );
        return;
    }
    let bytes = 10_000u64;
    let theirs = bpftrace_beside(&["/usr/sbin/vfsstat.bt"], "Attaching ", header);
    let mut ours = Running::start(&["trace", "/usr/sbin/vfsstat.bt"], &[], false, "Attaching ");
    let mut our_out = ours.wait_for_line(header);
    let dd = std::process::Command::new("dd")
        .args([
            "if=/dev/zero",
            "of=/dev/null",
            "bs=1",
            &format!("count={bytes}"),
        ])
        .output()
        .expect("running dd");
    assert!(dd.status.success(), "dd: {dd:?}");
    // Two more seconds printed by each, so that the last holds nothing of dd's.
    let time = |l: &str| l.len() == 8 && l.as_bytes()[2] == b':' && l.as_bytes()[5] == b':';
    our_out += &ours.wait_for(2, time, "HH:MM:SS");
    let theirs = theirs.map(|mut t| {
        let mut out = t.wait_for(2, time, "HH:MM:SS");
        (t, std::mem::take(&mut out))
    });
    our_out += &ours.finish(true).0;
    let theirs = theirs.map(|(t, before)| before + &t.finish(true).0);
    // Each interval: a time line, then `@[vfs_...]: N` lines sorted by N; the sums of each function's.
    let sums = |out: &str| -> std::collections::BTreeMap<String, u64> {
        let mut sums = std::collections::BTreeMap::new();
        let mut last = 0;
        for l in out
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with("Tracing"))
        {
            if time(l) {
                last = 0;
                continue;
            }
            let (f, n) = l
                .strip_prefix("@[")
                .and_then(|l| l.split_once("]: "))
                .unwrap_or_else(|| panic!("{l:?} in\n{out}"));
            let n: u64 = n.parse().unwrap_or_else(|_| panic!("{l:?}"));
            assert!(n >= last, "not sorted by count: {l:?} in\n{out}");
            last = n;
            *sums.entry(f.to_string()).or_insert(0) += n;
        }
        sums
    };
    let ours = sums(&our_out);
    for f in ["vfs_read", "vfs_write"] {
        let n = ours.get(f).copied().unwrap_or(0);
        assert!(n >= bytes, "{f}: {n} for {bytes} bytes:\n{our_out}");
        if let Some(theirs) = &theirs {
            let all = sums(theirs).get(f).copied().unwrap_or(0);
            assert!(
                all.abs_diff(n) <= bytes / 2,
                "{f}: ours {n}, bpftrace's {all}, for {bytes} bytes:\n{our_out}\nbpftrace's:\n{theirs}"
            );
        }
    }
}

/// bpftrace's own execsnoop.bt, unchanged (join() of a system call's argv, one probe over the exec
/// family's tracepoints): beside bpftrace, 5 execs of /bin/true with known arguments give 5 lines each,
/// the same but for the time, with the pid and every argument.
#[test]
fn bpftraces_execsnoop_joins_argv_as_bpftrace() {
    let Some(_lock) = bpf_test("bpftraces_execsnoop_joins_argv_as_bpftrace") else {
        return;
    };
    let header = "TIME(ms)   PID   ARGS";
    let mut ours = Running::start(
        &["trace", "/usr/sbin/execsnoop.bt"],
        &[],
        false,
        "Attaching ",
    );
    ours.wait_for_line(header);
    let theirs = bpftrace_beside(&["/usr/sbin/execsnoop.bt"], "Attaching ", header);
    let mut want = Vec::new();
    for i in 0..5 {
        let child = std::process::Command::new("/bin/true")
            .args(["execsnoop-test", &i.to_string(), "two words"])
            .spawn()
            .expect("/bin/true");
        want.push(format!(
            "{:<5} /bin/true execsnoop-test {i} two words",
            child.id()
        ));
        let _ = child.wait_with_output();
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (ours, _) = ours.finish(true);
    let theirs = theirs.map(|t| t.finish(true).0);
    let mine = |out: &str| -> Vec<String> {
        out.lines()
            .filter(|l| l.contains("execsnoop-test"))
            .map(|l| l.get(11..).unwrap_or(l).to_string())
            .collect()
    };
    assert_lines(&ours, theirs.as_deref(), &want, mine);
}

/// buf() printed by %r, ntop() of IPv4 addresses (one and two arguments), bswap() of two widths and
/// cat() of a file: the same output as bpftrace's on one write of known bytes.
#[test]
fn trace_buf_ntop_bswap_and_cat_print_as_bpftrace() {
    let Some(_lock) = bpf_test("trace_buf_ntop_bswap_and_cat_print_as_bpftrace") else {
        return;
    };
    let program = r#"BEGIN { printf("ready\n"); }
tracepoint:syscalls:sys_enter_write /comm == "printf"/ {
  printf("%r|%s|%s|%d|%x\n", buf(args->buf, args->count), ntop(0x0100007f), ntop(2, 0x0201a8c0),
         bswap((uint16)1), bswap((uint32)0x11223344));
  cat("/proc/sys/kernel/ostype");
  exit();
}"#;
    let mut ours = Running::start(
        &["trace", "-e", program],
        &[],
        false,
        "Attaching 2 probes...",
    );
    ours.wait_for_line("ready");
    let theirs = bpftrace_beside(&["-e", program], "Attaching 2 probes...", "ready");
    let status = std::process::Command::new("/usr/bin/printf")
        .arg("hi\tthere\n")
        .stdout(std::process::Stdio::null())
        .status()
        .expect("printf");
    assert!(status.success());
    let (ours, _) = ours.finish(false);
    let theirs = theirs.map(|t| t.finish(false).0);
    assert_eq!(
        ours.trim_end(),
        "hi\\x09there\\x0a|127.0.0.1|192.168.1.2|256|44332211\nLinux",
        "ours"
    );
    // (bpftrace 0.17 ends with one more blank line at exit.)
    if let Some(theirs) = theirs {
        assert_eq!(ours.trim_end(), theirs.trim_end(), "bpftrace's");
    }
}

/// bpftrace's tools that read kernel structs from kprobes and from the skb:kfree_skb tracepoint (casts,
/// members, ntop(), buf(), cat()): each loads (the verifier takes its program), runs a second and ends
/// cleanly, or fails with one line naming what this kernel lacks: kprobes, the function, a member.
#[test]
fn bpftraces_struct_reading_tools_load_or_name_what_is_missing() {
    let Some(_lock) = bpf_test("bpftraces_struct_reading_tools_load_or_name_what_is_missing")
    else {
        return;
    };
    let missing = [
        "CONFIG_KPROBES",
        "no kernel function matches",
        "has no field",
        "the kernel has no",
        "no kernel symbol",
        // A function the kernel lists but cannot probe (6.1's blk_account_io_start).
        "No such file or directory",
    ];
    let mut loaded = Vec::new();
    let tools = [
        "tcpdrop",
        "tcpconnect",
        "tcpaccept",
        "tcpretrans",
        "tcplife",
        "tcpsynbl",
        "biosnoop",
        "dcsnoop",
        "oomkill",
        "undump",
        "mdflush",
    ];
    let runs: Vec<Vec<String>> = tools
        .iter()
        .map(|t| {
            vec![
                "trace".into(),
                "-d".into(),
                "1".into(),
                format!("/usr/sbin/{t}.bt"),
            ]
        })
        .collect();
    for (tool, out) in tools.into_iter().zip(outputs_two_at_a_time(&runs)) {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            loaded.push(tool);
            continue;
        }
        // Warnings for the points left out, then the error: one line, or bpftrace's three (the error,
        // the source line and ~ under the place).
        let error: Vec<&str> = stderr
            .lines()
            .filter(|l| !(l.starts_with("WARNING: ") && l.ends_with(": left out")))
            .collect();
        let first = error.first().copied().unwrap_or("");
        assert!(
            error.len() <= 3 && missing.iter().any(|m| first.contains(m)),
            "{tool}: {stderr}"
        );
    }
    // The tracepoint one loads wherever skb:kfree_skb has a drop reason (5.17+), as on this project's CI
    // kernel; the kprobe ones wherever there are kprobes (the 6.1 guest).
    let fields = std::fs::read_to_string("/sys/kernel/tracing/events/skb/kfree_skb/format")
        .or_else(|_| {
            std::fs::read_to_string("/sys/kernel/debug/tracing/events/skb/kfree_skb/format")
        })
        .unwrap_or_default();
    if fields.contains(" reason;") {
        assert!(loaded.contains(&"tcpdrop"), "{loaded:?}");
    }
    if crate::common::kernel_has_kprobes() {
        assert!(
            loaded.contains(&"tcpconnect") && loaded.contains(&"tcplife"),
            "{loaded:?}"
        );
    }
    assert_nothing_left_attached();
}

/// while (with break and continue), unroll, `$#` and strftime(): the same output as bpftrace's; system() and
/// signal() only with --unsafe (else one line naming it): system() runs its command, signal() kills the
/// process that fires the probe; reg("di") reads count_b's argument from the uprobe's registers (the
/// sum of i over 2000 calls); cgroupid() of the root cgroup v2 is 1.
#[test]
fn trace_loops_unsafe_calls_and_registers() {
    let Some(_lock) = bpf_test("trace_loops_unsafe_calls_and_registers") else {
        return;
    };
    let loops = r#"BEGIN { $i = 0; $s = 0; while ($i < 10) { $i++; if ($i == 3) { continue; } if ($i > 8) { break; } $s += $i; } unroll(3) { $s += 100; } printf("%d %d %d %s\n", $i, $s, $#, strftime("%Y", nsecs)); exit(); }"#;
    let run = |cmd: &mut std::process::Command| {
        let out = cmd.output().expect("running a tracer");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ours = run(bpfprof().args(["trace", "-e", loops, "a", "b"]));
    let theirs = run(std::process::Command::new("bpftrace").args(["-e", loops, "a", "b"]));
    assert_eq!(ours.trim_end(), theirs.trim_end());
    let year = std::process::Command::new("date")
        .arg("+%Y")
        .output()
        .expect("date");
    let year = String::from_utf8_lossy(&year.stdout);
    assert!(
        ours.contains(&format!("\n9 333 2 {}\n", year.trim())),
        "{ours}"
    );

    let system = r#"BEGIN { system("echo %d-%s", 42, "there"); exit(); }"#;
    let out = bpfprof()
        .args(["trace", "-e", system])
        .output()
        .expect("bpfprof");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("system() changes the system: it needs --unsafe"),
        "{stderr}"
    );
    let ours = run(bpfprof().args(["trace", "--unsafe", "-e", system]));
    assert!(ours.contains("\n42-there\n"), "{ours}");

    // signal(): the workload's first getpgid kills it.
    let mut w = Workload::start_gated(&workload("calls"), &["0", "0", "1000"]);
    let program = format!(
        "tracepoint:syscalls:sys_enter_getpgid /pid == {}/ {{ signal(\"KILL\"); @ = count(); }}",
        w.pid()
    );
    let tracer = Running::start(
        &["trace", "--unsafe", "-e", &program],
        &[],
        false,
        "Attaching 1 probe...",
    );
    w.go();
    let status = w.child_wait();
    let (out, _) = tracer.finish(true);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}: {out}");
    // (Killed at its first call; a call or two more may enter while the signal is delivered.)
    let n: u64 = out
        .trim()
        .strip_prefix("@: ")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!((1..=3).contains(&n), "{out}");

    // reg("di"): count_b's argument, i from 0 to 1999.
    let bin = workload("calls");
    let mut w = Workload::start_gated(&bin, &["0", "2000", "0"]);
    let program = format!(
        "uprobe:{}:count_b {{ @di = sum(reg(\"di\")); @arg = sum(arg0); @n = count(); }} BEGIN {{ @cg = cgroupid(\"/sys/fs/cgroup\"); }}",
        bin.display()
    );
    let tracer = Running::start(
        &["trace", "-p", &w.pid().to_string(), "-e", &program],
        &[],
        false,
        "Attaching 2 probes...",
    );
    w.go();
    w.wait();
    let (out, _) = tracer.finish(true);
    let want = 1999 * 2000 / 2;
    assert!(out.contains(&format!("@di: {want}\n")), "{out}");
    assert!(out.contains(&format!("@arg: {want}\n")), "{out}");
    assert!(out.contains("@n: 2000\n"), "{out}");
    if std::fs::metadata("/sys/fs/cgroup/cgroup.controllers").is_ok() {
        assert!(out.contains("@cg: 1\n"), "{out}");
    }
}

/// bpftrace's sslsnoop.bt names functions of several OpenSSL versions in lists of uprobes: those the
/// installed libraries lack are left out with a warning each, as bpftrace leaves them, and the rest
/// attach (bpftrace 0.17 attaches the same number here).
#[test]
fn uprobe_lists_leave_out_functions_the_library_lacks() {
    let Some(_lock) = bpf_test("uprobe_lists_leave_out_functions_the_library_lacks") else {
        return;
    };
    let out = bpfprof()
        .args(["trace", "-d", "1", "/usr/sbin/sslsnoop.bt"])
        .output()
        .expect("running bpfprof");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("Tracing SSL/TLS handshake"), "{stdout}");
    let left_out = stderr.lines().filter(|l| l.ends_with(": left out")).count();
    let attached: usize = stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("Attaching ")?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .expect("an Attaching line");
    // 25 points: BEGIN and 24 uprobes; each one not attached said.
    assert_eq!(attached + left_out, 25, "{stdout}\n{stderr}");
    assert!(
        stderr.lines().all(|l| l.starts_with("WARNING: ")),
        "{stderr}"
    );
    // threadsnoop.bt's one uprobe, libpthread's pthread_create: glibc 2.34 left a stub there and moved
    // the function to libc (bpftrace attaches to nothing and stays silent). Where that is so, one line
    // says where the function is; before (the 5.10 guest's glibc 2.31), it runs.
    let out = bpfprof()
        .args(["trace", "-d", "1", "/usr/sbin/threadsnoop.bt"])
        .output()
        .expect("running bpfprof");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success()
            || stderr.lines().count() == 1 && stderr.contains("(libc has it: uprobe:/"),
        "{stderr}"
    );
    assert_nothing_left_attached();
}
