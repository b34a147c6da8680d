//! trace (one-liners compiled to BPF in-process) against a workload with known system calls
//! (tests/workloads/calls.c: an exact number of getpgid calls), checking bpftrace's output layouts.
use crate::common::{assert_nothing_left_attached, bpf_test, bpfprof, workload, Running, Workload};

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

#[test]
fn trace_counts_and_prints_maps_as_bpftrace() {
    let Some(_lock) = bpf_test("trace_counts_and_prints_maps_as_bpftrace") else {
        return;
    };
    let (out, _) = trace_workload(
        "t:syscalls:sys_enter_getpgid /pid == PID/ { @[comm] = count(); @n[comm, 7] = sum(2); }",
    );
    assert_eq!(out, "\n@[calls]: 77\n\n@n[calls, 7]: 154\n\n", "{out:?}");
    assert_nothing_left_attached();
}

#[test]
fn trace_histograms_and_stats_have_bpftraces_layout() {
    let Some(_lock) = bpf_test("trace_histograms_and_stats_have_bpftraces_layout") else {
        return;
    };
    let (out, _) = trace_workload(
        "t:syscalls:sys_enter_getpgid /pid == PID/ { @h = hist(3000); @l = lhist(7, 0, 10, 5); @s = stats(10); @x = avg(4); @lo = min(args->pid - 3); }",
    );
    let want = "
@h:
[2K, 4K)              77 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|

@l:
[5, 10)               77 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|

@lo: -3

@s: count 77, average 10, total 770

@x: 4

";
    assert_eq!(out, want);
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
            r#"BEGIN { printf("hello %d\n", 42); } interval:ms:200 { @n++; } interval:s:1 { exit(); } END { printf("bye\n"); }"#,
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
        text.starts_with("Attaching 4 probes...\nhello 42\nbye\n\n@n: "),
        "{text:?}"
    );
    // Five 200 ms ticks in the second before exit(); the 1 s tick may come just before the fifth.
    let n: u64 = text
        .trim_end()
        .rsplit(": ")
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!((4..=5).contains(&n), "{n} ticks: {text}");
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

/// This kernel has no kprobes: a kprobe one-liner must say so (and load nothing).
#[test]
fn trace_kprobes_need_the_kernel_feature() {
    let Some(_lock) = bpf_test("trace_kprobes_need_the_kernel_feature") else {
        return;
    };
    if std::path::Path::new("/sys/bus/event_source/devices/kprobe").exists() {
        return; // a kernel with kprobes: trace's kprobes are not implemented yet either way
    }
    let out = bpfprof()
        .args(["trace", "-e", "k:do_nanosleep { @[comm] = count(); }"])
        .output()
        .expect("running bpfprof");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("kprobes") && err.contains("CONFIG_KPROBES"),
        "{err}"
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
/// logical >>, a stray `}`.
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
            "Attaching 1 probe...\n\n",
        ),
        (
            "interval:ms:50 { @i++; if (@i == 3) { exit(); } }".into(),
            "Attaching 1 probe...\n\n@i: 3\n\n",
        ),
        (
            format!("BEGIN {{ @x = {}; exit(); }}", sum40.join(" + ")),
            "Attaching 1 probe...\n\n@x: 820\n\n",
        ),
        (
            format!("BEGIN {{ {vars40}@x = $v1 + $v40; exit(); }}"),
            "Attaching 1 probe...\n\n@x: 41\n\n",
        ),
        (
            "BEGIN { $a = -1; @s = $a >> 60; @m = 3; @m *= 5; @m <<= 1; exit(); }".into(),
            "Attaching 1 probe...\n\n@m: 30\n\n@s: 15\n\n",
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
