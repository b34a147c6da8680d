//! `bpfprof profile` against the burn workload (tests/workloads/burn.c), whose stacks and CPU split are known.
use std::thread::sleep;
use std::time::Duration;

use crate::common::*;

/// The frames the burn workload's cpu mode samples in, outermost first, for the function `hot`.
fn cpu_chain(hot: &str) -> [&str; 4] {
    ["main", "work_loop", hot, "spin"]
}

/// `profile -f ARGS` until Ctrl-C (`finish(true)`), once sampling: its header is out, on stderr with -f.
fn sampling(args: &[&str]) -> Running {
    let mut argv = vec!["profile", "-f"];
    argv.extend_from_slice(args);
    Running::start(&argv, &[], true, "Sampling at")
}

#[test]
fn samples_split_two_to_one_under_the_right_callers() {
    let Some(_lock) = bpf_test("samples_split_two_to_one_under_the_right_callers") else {
        return;
    };
    let burn = workload("burn");
    let w = Workload::start(&burn, &["cpu", "600"]);
    let pid = w.pid().to_string();
    let out = run_ok(&["profile", "-F", "999", "-f", "-p", &pid, "4"]);
    let stacks = parse_folded(&out.stdout);

    // Every sample is the workload's own.
    assert!(
        stacks.iter().all(|(f, _)| f[0] == "burn"),
        "other processes in -p output"
    );
    let two = count_with(&stacks, &cpu_chain("hot_two_thirds"));
    let one = count_with(&stacks, &cpu_chain("hot_one_third"));
    let total: u64 = stacks.iter().map(|(_, n)| n).sum();
    // The named chain, in order, must hold nearly all samples (the rest: the clock check in work_loop).
    assert!(
        two + one >= total * 9 / 10,
        "only {} of {total} samples under main;work_loop;hot_*;spin:\n{}",
        two + one,
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(total >= 500, "too few samples ({total}) to judge a ratio");

    // Tolerance from sampling error: p = 2/3 of n samples is binomial-like, sd(p) = sqrt(p(1-p)/n);
    // the ratio p/(1-p) moves by sd(p)/(1-p)^2. Allow 4 sd, and never less than 8% (call overhead makes the
    // split slightly below 2:1: measured 1.92 here).
    let n = (two + one) as f64;
    let p = 2.0 / 3.0;
    let sd_ratio = (p * (1.0 - p) / n).sqrt() / (1.0 - p).powi(2);
    let tol = (4.0 * sd_ratio).max(0.16);
    let ratio = two as f64 / one as f64;
    assert!(
        (ratio - 2.0).abs() <= tol,
        "hot_two_thirds:hot_one_third = {two}:{one} = {ratio:.3}, expected 2 +- {tol:.3}"
    );
}

#[test]
fn svg_is_well_formed_and_names_the_functions() {
    let Some(_lock) = bpf_test("svg_is_well_formed_and_names_the_functions") else {
        return;
    };
    let burn = workload("burn");
    let w = Workload::start(&burn, &["cpu", "600"]);
    let svg = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("profile-test.svg");
    let _ = std::fs::remove_file(&svg);
    let out = run_ok(&[
        "profile",
        "-F",
        "499",
        "--svg",
        svg.to_str().unwrap(),
        "-p",
        &w.pid().to_string(),
        "2",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("wrote"),
        "no summary line"
    );
    let text = std::fs::read_to_string(&svg).expect("SVG written");
    let opts = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(&text, opts).expect("well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let titles: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("title"))
        .filter_map(|n| n.text())
        .collect();
    for f in [
        "hot_two_thirds",
        "hot_one_third",
        "spin",
        "work_loop",
        "main",
    ] {
        assert!(
            titles.iter().any(|t| t.starts_with(&format!("{f} ("))),
            "no frame titled {f}"
        );
    }
    assert!(text.contains("CPU Flame Graph"), "no title");
    assert!(
        text.contains(&format!("PID {}", w.pid())),
        "subtitle does not say what was sampled"
    );
}

#[test]
fn pid_filter_keeps_only_the_chosen_process() {
    let Some(_lock) = bpf_test("pid_filter_keeps_only_the_chosen_process") else {
        return;
    };
    let burn = workload("burn");
    // Until killed: under emulation two runs of bpfprof outlast any fixed length.
    let a = Workload::start(&burn, &["cpu", "600"]);
    let b = Workload::start(&burn, &["cpu", "600"]);
    let tag = |p: u32| format!("burn ({p})");

    // Unfiltered, both are there: the filter has something to remove.
    let all = String::from_utf8(run_ok(&["profile", "-F", "199", "2"]).stdout).unwrap();
    assert!(
        all.contains(&tag(a.pid())) && all.contains(&tag(b.pid())),
        "both workloads expected:\n{all}"
    );

    let only_a = String::from_utf8(
        run_ok(&["profile", "-F", "199", "-p", &a.pid().to_string(), "2"]).stdout,
    )
    .unwrap();
    assert!(only_a.contains(&tag(a.pid())));
    let owners: Vec<&str> = only_a
        .lines()
        .filter(|l| l.trim_start().starts_with("- "))
        .collect();
    assert!(!owners.is_empty());
    for line in owners {
        assert!(
            line.ends_with(&tag(a.pid())),
            "sample of another process with -p: {line}"
        );
    }
}

#[test]
fn user_only_and_kernel_only_stacks() {
    let Some(_lock) = bpf_test("user_only_and_kernel_only_stacks") else {
        return;
    };
    let burn = workload("burn");
    let w = Workload::start(&burn, &["sys", "600"]);
    let pid = w.pid().to_string();

    let user =
        parse_folded(&run_ok(&["profile", "-F", "499", "-a", "-f", "-U", "-p", &pid, "2"]).stdout);
    assert!(
        count_with(&user, &["main", "sys_loop", "read_zeros"]) > 0,
        "user chain missing: {user:?}"
    );
    assert!(
        user.iter()
            .all(|(f, _)| f.iter().all(|x| !x.ends_with("_[k]"))),
        "kernel frame with -U"
    );

    let kernel =
        parse_folded(&run_ok(&["profile", "-F", "499", "-a", "-f", "-K", "-p", &pid, "2"]).stdout);
    assert!(
        count_with(&kernel, &["ksys_read_[k]", "vfs_read_[k]"]) > 0,
        "kernel chain missing: {kernel:?}"
    );
    assert!(
        kernel
            .iter()
            .all(|(f, _)| f[1..].iter().all(|x| x.ends_with("_[k]"))),
        "user frame with -K"
    );

    // Both, delimited: the user chain, the delimiter, then the kernel chain, on one line.
    let both =
        parse_folded(&run_ok(&["profile", "-F", "499", "-a", "-d", "-f", "-p", &pid, "2"]).stdout);
    assert!(
        count_with(
            &both,
            &[
                "sys_loop",
                "read_zeros",
                "-",
                "entry_SYSCALL_64_after_hwframe_[k]"
            ]
        ) > 0,
        "no user;-;kernel line: {both:?}"
    );
}

#[test]
fn a_process_that_exits_during_the_trace_keeps_named_frames() {
    let Some(_lock) = bpf_test("a_process_that_exits_during_the_trace_keeps_named_frames") else {
        return;
    };
    // A whole-system trace: give the workload a comm no other process has.
    let burn = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("exitburn");
    std::fs::copy(workload("burn"), &burn).expect("copying the workload");
    let prof = sampling(&["-F", "499"]);
    let mut w = Workload::start(&burn, &["cpu", "1"]);
    w.wait(); // gone before the trace ends
    let (out, _) = prof.finish(true);
    let mine: Vec<_> = parse_folded(out.as_bytes())
        .into_iter()
        .filter(|(f, _)| f[0] == "exitburn")
        .collect();
    let burn_samples: u64 = mine.iter().map(|(_, n)| n).sum();
    let named = count_with(&mine, &cpu_chain("hot_two_thirds"))
        + count_with(&mine, &cpu_chain("hot_one_third"));
    assert!(
        burn_samples >= 100,
        "too few samples of the exited process: {burn_samples}"
    );
    assert!(
        named * 10 >= burn_samples * 9,
        "only {named} of {burn_samples} samples of the exited process have named frames"
    );
}

#[test]
fn ctrl_c_ends_sampling_and_still_prints() {
    let Some(_lock) = bpf_test("ctrl_c_ends_sampling_and_still_prints") else {
        return;
    };
    let burn = workload("burn");
    let w = Workload::start(&burn, &["cpu", "600"]);
    // Ctrl-C (finish asserts a clean exit) a while after sampling began.
    let prof = sampling(&["-F", "499", "-p", &w.pid().to_string()]);
    sleep(Duration::from_secs(2));
    let (out, _) = prof.finish(true);
    assert!(count_with(&parse_folded(out.as_bytes()), &cpu_chain("hot_two_thirds")) > 0);
    assert_nothing_left_attached();
}

#[test]
fn full_stack_storage_is_reported_not_hidden() {
    let Some(_lock) = bpf_test("full_stack_storage_is_reported_not_hidden") else {
        return;
    };
    let burn = workload("burn");
    let w = Workload::start(&burn, &["sys", "600"]);
    // Room for one stack: the workload has several (user and kernel), so some must be lost and said so.
    let out = run_ok(&[
        "profile",
        "-F",
        "499",
        "-f",
        "--stack-storage-size",
        "1",
        "-p",
        &w.pid().to_string(),
        "2",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("stacks lost: the stack storage (1 stacks) was full"),
        "no loss report: {stderr}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("[Missed"),
        "lost stacks not marked in the output"
    );
}

#[test]
fn bad_input_gives_one_line_and_nonzero_exit() {
    let cases: [(&[&str], &str); 7] = [
        (
            &["profile", "-p", "999999999", "1"],
            "no such process: 999999999",
        ),
        (
            &["profile", "-L", "999999999", "1"],
            "no such thread: 999999999",
        ),
        (
            &["profile", "-F", "0", "1"],
            "sample frequency (-F) must be greater than 0",
        ),
        (&["profile", "-C", "4096", "1"], "no such CPU: 4096"),
        (
            &["profile", "--perf-max-stack-depth", "1000"],
            "--perf-max-stack-depth must be between 1 and 127",
        ),
        (&["profile", "-p", "abc"], "invalid value 'abc'"),
        (&["profile", "-p", "1", "-L", "1"], "cannot be used with"),
    ];
    for (args, want) in cases {
        let out = bpfprof().args(args).output().expect("running bpfprof");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            stderr.contains(want),
            "{args:?}: expected {want:?} in: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
        // bpfprof's own errors are one line; clap's usage errors add its "For more information" hint.
        let first = stderr.lines().next().unwrap_or_default();
        assert!(
            first.contains(want),
            "{args:?}: the first line should say it: {stderr}"
        );
        if first.starts_with("bpfprof:") {
            assert_eq!(
                stderr.trim_end().lines().count(),
                1,
                "{args:?}: not one line: {stderr}"
            );
        }
    }
}

#[test]
fn unprivileged_user_is_told_what_is_needed() {
    let Some(_lock) = bpf_test("unprivileged_user_is_told_what_is_needed") else {
        return;
    };
    // setpriv drops to nobody with no capabilities: bpfprof must refuse before loading anything.
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(env!("CARGO_BIN_EXE_bpfprof"))
        .args(["profile", "1"])
        .output()
        .expect("running setpriv");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("run as root, or with CAP_BPF and CAP_PERFMON"),
        "{stderr}"
    );
}

#[test]
fn cxx_and_rust_frames_are_demangled() {
    let Some(_lock) = bpf_test("cxx_and_rust_frames_are_demangled") else {
        return;
    };
    let cxx = Workload::start(&workload("cxxburn"), &["600"]);
    let rs = Workload::start(&workload("rsburn"), &["600"]);
    let pids = format!("{},{}", cxx.pid(), rs.pid());
    let stacks = parse_folded(&run_ok(&["profile", "-F", "199", "-f", "-p", &pids, "2"]).stdout);
    assert!(
        count_with(
            &stacks,
            &[
                "main",
                "void burn::Worker::run<unsigned long>(unsigned long, double)",
                "burn::Worker::spin(unsigned long)"
            ]
        ) > 0,
        "C++ frames not demangled in order: {stacks:?}"
    );
    assert!(
        count_with(&stacks, &["rsburn::run", "rsburn::burn::Worker::spin"]) > 0,
        "Rust frames not demangled in order: {stacks:?}"
    );
}

/// Every sample counted in the kernel is in the output, with its stack: ~5600 distinct stacks fill a stack
/// storage of 8192 to about 70%, so many hash buckets hold several entries and the maps are read in several
/// uneven batches (libbpf-rs's batch iterator stopped at the first short one and lost the rest silently).
#[test]
fn every_counted_sample_is_in_the_output() {
    let Some(_lock) = bpf_test("every_counted_sample_is_in_the_output") else {
        return;
    };
    let w = Workload::start(&workload("manystacks"), &["600"]);
    // Long enough for ~15,000 samples here; a slower machine (an emulated guest) samples less often.
    let secs = scaled_secs(3).to_string();
    let out = run_ok(&[
        "profile",
        "-F",
        "4999",
        "-f",
        "-p",
        &w.pid().to_string(),
        &secs,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("WARNING"), "losses: {stderr}");
    let counted: u64 = stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("bpfprof: ")?
                .split_once(" samples")?
                .0
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no summary line: {stderr}"));
    let stacks = parse_folded(&out.stdout);
    let printed: u64 = stacks.iter().map(|(_, n)| n).sum();
    let missed: u64 = stacks
        .iter()
        .filter(|(f, _)| f.iter().any(|x| x.starts_with("[Missed")))
        .map(|(_, n)| n)
        .sum();
    assert!(stacks.len() > 2048, "only {} distinct stacks", stacks.len());
    assert_eq!(
        printed, counted,
        "samples counted in the kernel but missing from the output"
    );
    assert_eq!(
        missed, 0,
        "samples without their stack, and no warning said why"
    );
}

#[test]
fn tid_filter_keeps_only_the_chosen_thread() {
    let Some(_lock) = bpf_test("tid_filter_keeps_only_the_chosen_thread") else {
        return;
    };
    let w = Workload::start(&workload("threads"), &["600"]);
    let (tid_a, tid_b) = (w.info[0].as_str(), w.info[1].as_str());

    // Both threads run: filtering by process shows both functions.
    let both = parse_folded(
        &run_ok(&[
            "profile",
            "-F",
            "199",
            "-f",
            "-p",
            &w.pid().to_string(),
            "1",
        ])
        .stdout,
    );
    assert!(count_with(&both, &["thread_a_work"]) > 0 && count_with(&both, &["thread_b_work"]) > 0);

    // A thread given as a process would match nothing: refused, with what to use instead.
    let out = bpfprof()
        .args(["profile", "-p", tid_b, "1"])
        .output()
        .expect("running bpfprof");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("{tid_b} is a thread of process {}", w.pid())),
        "{stderr}"
    );

    for (tid, mine, other) in [
        (tid_a, "thread_a_work", "thread_b_work"),
        (tid_b, "thread_b_work", "thread_a_work"),
    ] {
        let out = run_ok(&["profile", "-F", "199", "-f", "-L", tid, "1"]);
        let stacks = parse_folded(&out.stdout);
        assert!(
            count_with(&stacks, &[mine]) > 50,
            "-L {tid}: {mine} missing: {stacks:?}"
        );
        assert_eq!(
            count_with(&stacks, &[other]),
            0,
            "-L {tid}: another thread's {other} sampled"
        );
    }
}

/// A process first seen running one program, then exec'ing another: the new program's frames must be named
/// (its mappings are read again when its addresses fall outside the cached ones).
#[test]
fn frames_are_named_after_the_process_execs() {
    let Some(_lock) = bpf_test("frames_are_named_after_the_process_execs") else {
        return;
    };
    let burn = workload("burn");
    // A shell busy until a file appears (sampled meanwhile, so its mappings are cached), then exec'ing
    // the workload.
    let flag = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("exec-now");
    let _ = std::fs::remove_file(&flag);
    let script = format!(
        "echo ready; while [ ! -e {} ]; do :; done; exec {} cpu 600",
        flag.display(),
        burn.display()
    );
    let sh = Workload::start(std::path::Path::new("sh"), &["-c", &script]);
    let prof = sampling(&["-F", "199", "-p", &sh.pid().to_string()]);
    sleep(Duration::from_secs(2));
    std::fs::write(&flag, "").expect("creating the flag file");
    sleep(Duration::from_secs(2));
    let (out, _) = prof.finish(true);
    drop(sh);
    let _ = std::fs::remove_file(&flag);
    let stacks = parse_folded(out.as_bytes());
    let shell: u64 = stacks
        .iter()
        .filter(|(f, _)| f[0] == "sh")
        .map(|(_, n)| n)
        .sum();
    let mine: Vec<_> = stacks.into_iter().filter(|(f, _)| f[0] == "burn").collect();
    let total: u64 = mine.iter().map(|(_, n)| n).sum();
    let named = count_with(&mine, &cpu_chain("hot_two_thirds"))
        + count_with(&mine, &cpu_chain("hot_one_third"));
    assert!(
        shell > 20,
        "the shell was not sampled before the exec ({shell} samples): nothing tested"
    );
    assert!(total > 100, "too few samples after the exec: {total}");
    assert!(
        named * 10 >= total * 9,
        "only {named} of {total} samples after the exec have named frames: {mine:?}"
    );
}
