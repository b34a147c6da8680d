//! funccount against a workload with known calls (tests/workloads/calls.c): functions called an exact number
//! of times, a USDT probe fired with each call of one of them, and an exact number of getpgid system calls.
use crate::common::{
    assert_nothing_left_attached, bpf_test, bpfprof, kernel_has_cookies, workload, Running,
    Workload,
};

/// The calls workload, gated: it calls after `go`.
fn calls(a: u32, b: u32, syscalls: u32, rounds: u32) -> Workload {
    Workload::start_gated(
        &workload("calls"),
        &[
            &a.to_string(),
            &b.to_string(),
            &syscalls.to_string(),
            &rounds.to_string(),
        ],
    )
}

/// A running `bpfprof funccount`, attached: its header (`Tracing N functions ...`) is read from stdout, or
/// stderr with -j.
fn counter(args: &[&str], env: &[(&str, &str)]) -> Running {
    let mut argv = vec!["funccount"];
    argv.extend_from_slice(args);
    Running::start(&argv, env, args.contains(&"-j"), "Tracing ")
}

/// The rows of bcc's table in one output: (FUNC, COUNT).
fn rows(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|l| {
            let (name, n) = l.trim_end().rsplit_once(' ')?;
            let n = n.parse().ok()?;
            Some((name.trim().to_string(), n))
        })
        .collect()
}

fn count_of(rows: &[(String, u64)], name: &str) -> u64 {
    rows.iter().filter(|r| r.0 == name).map(|r| r.1).sum()
}

/// Runs funccount over one run of the workload and returns its rows.
fn count_calls(
    pattern_for: impl Fn(&str) -> String,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Vec<(String, u64)>, String, String) {
    let mut w = calls(1000, 2000, 77, 1);
    let bin = workload("calls").to_string_lossy().into_owned();
    let pattern = pattern_for(&bin);
    let mut args: Vec<&str> = extra.to_vec();
    args.push(&pattern);
    let c = counter(&args, env);
    let header = c.header.clone();
    w.go();
    w.wait();
    let (out, err) = c.finish(true);
    (rows(&out), header, err)
}

/// Before 5.15 (no BPF cookies) a binary's functions cannot be told apart: funccount refuses uprobes in
/// one line that names the feature and what to use instead. (BPFPROF_NO_COOKIES=1 plays such a kernel.)
fn assert_uprobes_refused(env: &[(&str, &str)]) {
    let bin = workload("calls").to_string_lossy().into_owned();
    let out = bpfprof()
        .args(["funccount", "-d", "1", &format!("u:{bin}:count_*")])
        .envs(env.iter().copied())
        .output()
        .expect("running bpfprof");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("needs BPF cookies")
            && err.contains("5.15")
            && err.contains("@[func] = count()"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

#[test]
fn funccount_counts_each_function_exactly_with_either_uprobe_link() {
    let Some(_lock) = bpf_test("funccount_counts_each_function_exactly") else {
        return;
    };
    assert_uprobes_refused(&[("BPFPROF_NO_COOKIES", "1")]);
    if !kernel_has_cookies() {
        return assert_uprobes_refused(&[]);
    }
    for env in [&[][..], &[("BPFPROF_NO_MULTI", "1")][..]] {
        let (rows, header, err) = count_calls(|bin| format!("u:{bin}:count_*"), &[], env);
        assert!(
            header.starts_with("Tracing 3 functions for \"u:"),
            "{header}"
        );
        assert_eq!(count_of(&rows, "count_a"), 1000, "{env:?} {rows:?}");
        assert_eq!(count_of(&rows, "count_b"), 2000, "{env:?} {rows:?}");
        // Never called: zero counts are not shown (as bcc).
        assert!(rows.iter().all(|r| r.0 != "count_c"), "{rows:?}");
        assert!(
            err.contains("bpfprof: 3000 calls counted at 3 probe points"),
            "{err}"
        );
    }
    assert_nothing_left_attached();
}

#[test]
fn funccount_regex_and_usdt_and_json() {
    let Some(_lock) = bpf_test("funccount_regex_and_usdt_and_json") else {
        return;
    };
    if !kernel_has_cookies() {
        // Without cookies libbpf finds a USDT probe by its address, which in a position-independent
        // binary only a process gives: -p is needed (and said so), and counts.
        let bin = workload("calls").to_string_lossy().into_owned();
        let out = bpfprof()
            .args(["funccount", "-d", "1", &format!("U:{bin}:tick")])
            .output()
            .expect("running bpfprof");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("need -p PID"),
            "{err}"
        );
        let mut w = calls(0, 2000, 0, 1);
        let pid = w.pid().to_string();
        let c = counter(&["-p", &pid, &format!("U:{bin}:tick")], &[]);
        w.go();
        w.wait();
        let (out, _) = c.finish(true);
        assert_eq!(count_of(&self::rows(&out), "calls:tick"), 2000, "{out}");
        return assert_uprobes_refused(&[]);
    }
    let (rows, header, _) = count_calls(|bin| format!("U:{bin}:tick"), &[], &[]);
    assert!(header.starts_with("Tracing 1 functions"), "{header}");
    assert_eq!(count_of(&rows, "calls:tick"), 2000, "{rows:?}");

    let (rows, header, _) = count_calls(|bin| format!("u:{bin}:^count_[ab]$"), &["-r"], &[]);
    assert!(header.starts_with("Tracing 2 functions"), "{header}");
    assert_eq!(count_of(&rows, "count_a"), 1000, "{rows:?}");
    assert_eq!(count_of(&rows, "count_b"), 2000, "{rows:?}");

    // libc's strlen is an IFUNC: counted at the implementation it resolves to, once per call.
    let mut w = calls(0, 2000, 0, 1);
    let pid = w.pid().to_string();
    let c = counter(&["-p", &pid, "u:c:strlen"], &[]);
    w.go();
    w.wait();
    let (out, _) = c.finish(true);
    assert_eq!(count_of(&self::rows(&out), "strlen"), 2000, "{out}");

    let mut w = calls(10, 20, 0, 1);
    let bin = workload("calls").to_string_lossy().into_owned();
    let c = counter(&["-j", &format!("u:{bin}:count_*")], &[]);
    w.go();
    w.wait();
    let (out, _) = c.finish(true);
    let v: serde_json::Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(v["ts"].is_string());
    let counts = v["counts"].as_array().expect("counts");
    assert_eq!(counts.len(), 2, "{out}");
    assert_eq!(counts[0]["func"], "count_a");
    assert_eq!(counts[0]["count"], 10);
    assert_eq!(counts[1]["func"], "count_b");
    assert_eq!(counts[1]["count"], 20);
}

#[test]
fn funccount_tracepoint_filtered_by_pid_is_exact() {
    let Some(_lock) = bpf_test("funccount_tracepoint_filtered_by_pid_is_exact") else {
        return;
    };
    // Each tracepoint found by its BPF cookie (the glob matches getpid, getppid, getpgrp... too, all at 0
    // but for getpgid's 77), and (as before 5.15, which has no cookies) one tracepoint alone.
    let mut cases: Vec<(&[(&str, &str)], &str)> = vec![(
        &[("BPFPROF_NO_COOKIES", "1")],
        "t:syscalls:sys_enter_getpgid",
    )];
    if kernel_has_cookies() {
        cases.push((&[], "t:syscalls:sys_enter_getp*"));
    }
    for (env, pattern) in cases {
        let mut w = calls(0, 0, 77, 1);
        let pid = w.pid().to_string();
        let c = counter(&["-p", &pid, pattern], env);
        w.go();
        w.wait();
        let (out, _) = c.finish(true);
        let rows = rows(&out);
        assert_eq!(
            count_of(&rows, "syscalls:sys_enter_getpgid"),
            77,
            "{env:?}: {out}"
        );
        assert!(
            out.starts_with("\nFUNC                                    COUNT\n"),
            "{out:?}"
        );
        assert!(out.ends_with("Detaching...\n"), "{out:?}");
    }
    // Several tracepoints without cookies: refused in one line, naming the feature and trace instead.
    let out = bpfprof()
        .args(["funccount", "-d", "1", "t:syscalls:sys_enter_getp*"])
        .env("BPFPROF_NO_COOKIES", "1")
        .output()
        .expect("running bpfprof");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("needs BPF cookies") && err.contains("@[probe] = count()"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

#[test]
fn funccount_intervals_add_up_to_the_total() {
    let Some(_lock) = bpf_test("funccount_intervals_add_up_to_the_total") else {
        return;
    };
    if !kernel_has_cookies() {
        return assert_uprobes_refused(&[]);
    }
    // Five rounds 300 ms apart span 1.2 s: they straddle at least one 1 s interval's end.
    let mut w = calls(500, 1000, 0, 5);
    let bin = workload("calls").to_string_lossy().into_owned();
    let c = counter(
        &["-i", "1", "-d", "4", "-T", &format!("u:{bin}:count_*")],
        &[],
    );
    w.go();
    w.wait();
    let (out, _) = c.finish(false);
    let outputs: Vec<&str> = out.split("FUNC ").skip(1).collect();
    assert_eq!(outputs.len(), 4, "one table per interval:\n{out}");
    let stamps = out
        .lines()
        .filter(|l| {
            let b = l.as_bytes();
            b.len() == 8 && b[2] == b':' && b[5] == b':'
        })
        .count();
    assert_eq!(stamps, 4, "{out}");
    let per: Vec<(u64, u64)> = outputs
        .iter()
        .map(|o| {
            let r = rows(o);
            (count_of(&r, "count_a"), count_of(&r, "count_b"))
        })
        .collect();
    assert_eq!(per.iter().map(|p| p.0).sum::<u64>(), 500, "{out}");
    assert_eq!(per.iter().map(|p| p.1).sum::<u64>(), 1000, "{out}");
    assert!(per.iter().filter(|p| p.1 > 0).count() >= 2, "{out}");
}

#[test]
fn funccount_bad_input_and_missing_kernel_features_give_one_line() {
    let bin = workload("calls").to_string_lossy().into_owned();
    let nomatch = format!("u:{bin}:no_such_function*");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec![&nomatch], "no functions in"),
        (vec!["t:nosuchsubsys:*"], "no tracepoints match"),
        (vec!["u:/no/such/binary:f"], "no such file: /no/such/binary"),
        (
            vec!["u:no_such_library_xyz:f"],
            "no library or program named",
        ),
        (vec!["-r", "u:c:("], "bad regular expression"),
        (
            vec!["-p", "999999999", "t:sched:*"],
            "no such process: 999999999",
        ),
        (
            vec!["-i", "0", "t:sched:*"],
            "interval (-i) must be at least 1 second",
        ),
        (
            vec!["--max-probes", "2", "u:c:str*"],
            "more than --max-probes 2",
        ),
        (vec!["t:sched"], "tracepoints are t:SUBSYSTEM:EVENT"),
    ];
    for (args, want) in cases {
        let out = bpfprof()
            .arg("funccount")
            .args(&args)
            .output()
            .expect("running bpfprof");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    }
}

/// A function whose first instruction the kernel cannot probe (pthread_spin_lock starts with a `lock`
/// prefix) is skipped with a WARNING naming it, and the rest of the match is still counted.
#[test]
fn funccount_skips_functions_the_kernel_cannot_probe() {
    let Some(_lock) = bpf_test("funccount_skips_functions_the_kernel_cannot_probe") else {
        return;
    };
    if !kernel_has_cookies() {
        return assert_uprobes_refused(&[]);
    }
    let c = counter(&["-d", "1", "u:c:pthread_spin_*"], &[]);
    let header = c.header.clone();
    let (_, err) = c.finish(false);
    assert!(
        err.contains("could not be attached (pthread_spin_lock") && err.contains("ENOTSUPP"),
        "{err}"
    );
    let total: usize = err
        .lines()
        .find_map(|l| l.strip_prefix("WARNING: 1 of "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        header.starts_with(&format!("Tracing {} functions", total - 1)),
        "{header} / {err}"
    );
}

/// This kernel has no kprobes (CONFIG_KPROBES is off): a kernel-function pattern must say so and name
/// tracepoints that may serve. On a kernel with kprobes, the pattern must count instead.
#[test]
fn funccount_kernel_functions_need_kprobes() {
    let Some(_lock) = bpf_test("funccount_kernel_functions_need_kprobes") else {
        return;
    };
    let has_kprobes = crate::common::kernel_has_kprobes();
    let out = bpfprof()
        .args(["funccount", "-d", "1", "k:sched_fork*"])
        .output()
        .expect("running bpfprof");
    let err = String::from_utf8_lossy(&out.stderr);
    if has_kprobes {
        assert!(out.status.success(), "{err}");
    } else {
        assert!(!out.status.success());
        assert!(
            err.contains("needs kprobes") && err.contains("CONFIG_KPROBES"),
            "{err}"
        );
        assert!(err.contains("t:sched:sched_process_fork"), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
}
