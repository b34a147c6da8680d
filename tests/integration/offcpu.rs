//! `bpfprof offcpu`, `wakeup` and `offwake` against the blocker workload (tests/workloads/blocker.c), whose
//! sleeps, their lengths and the functions they happen in, and whose pipe wakeups, are known.
use std::process::Output;
use std::thread::sleep;
use std::time::Duration;

use crate::common::*;

/// One bcc text block: frames innermost first, the `-  comm (tid)` line, the value.
#[derive(Debug)]
struct Block {
    frames: Vec<String>,
    who: String,
    value: u64,
}

fn parse_blocks(text: &str) -> Vec<Block> {
    text.split("\n\n")
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .map(|b| {
            let lines: Vec<&str> = b.lines().map(str::trim).collect();
            let (value, rest) = lines.split_last().expect("a block has lines");
            let (who, frames) = rest.split_last().expect("a block names its thread");
            Block {
                frames: frames.iter().map(|s| s.to_string()).collect(),
                who: who.to_string(),
                value: value
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in block:\n{b}")),
            }
        })
        .collect()
}

/// What the sleeper measured of its own naps (its `done` line): microseconds in nap_short's 20 x 10 ms and
/// nap_long's 10 x 100 ms. A slow machine oversleeps (under emulation 10 ms naps take ~12 ms), so the
/// tools are held to these, not to the nominal times.
struct Measured {
    short: u64,
    long: u64,
}

impl Measured {
    /// Waits for the sleeper's `done SHORT LONG` line.
    fn read(w: &mut Workload) -> Self {
        let words = w.line();
        let us = |i: usize| -> u64 {
            words
                .get(i)
                .and_then(|w| w.parse().ok())
                .unwrap_or_else(|| panic!("the sleeper's line: {words:?}"))
        };
        assert_eq!(words.first().map(String::as_str), Some("done"), "{words:?}");
        let m = Self {
            short: us(1),
            long: us(2),
        };
        // nanosleep never returns early: these are at least the nominal times.
        assert!(m.short >= 200_000 && m.long >= 1_000_000, "{words:?}");
        m
    }
}

/// Runs `offcpu -p SLEEPER extra..` in the text layout against the gated sleeper: the sleeper starts its
/// naps only once bpfprof has printed its header (its window is open), and bpfprof gets Ctrl-C once the
/// sleeper has printed what it measured. Returns the blocks, stderr and that measurement.
fn trace_sleeps(extra: &[&str]) -> (Vec<Block>, String, Measured) {
    trace_sleeps_env(extra, &[])
}

/// trace_sleeps with bpfprof's environment extended by `env`.
fn trace_sleeps_env(extra: &[&str], env: &[(&str, &str)]) -> (Vec<Block>, String, Measured) {
    let ((blocks, measured), stderr) = unless_switches_unseen(|| {
        let mut w = Workload::start_gated(&workload("blocker"), &["sleep"]);
        let pid = w.pid().to_string();
        let mut args = vec!["offcpu", "-p", &pid];
        args.extend_from_slice(extra);
        let tracer = Running::start(&args, env, false, "Tracing off-CPU time (us) of PID");
        w.go();
        let measured = Measured::read(&mut w);
        let (rest, stderr) = tracer.finish(true);
        ((parse_blocks(&rest), measured), stderr)
    });
    (blocks, stderr, measured)
}

/// The blocks of the sleeper's nap function `nap`, with the frames of a nanosleep below it in order
/// (preemptions in the nap function's own code are not naps, and are left out).
fn nap_blocks<'a>(blocks: &'a [Block], nap: &str) -> Vec<&'a Block> {
    blocks
        .iter()
        .filter(|b| has_run(&b.frames, &[nap, "sleep_phase", "main"]) && !preempted(&b.frames))
        .inspect(|b| {
            let kernel_first = ["schedule", "do_nanosleep"];
            assert!(
                has_run(&b.frames, &kernel_first),
                "{nap}: no schedule;do_nanosleep (innermost first) in {b:?}"
            );
            assert!(b.who.contains("sleeper ("), "{nap}: {b:?}");
        })
        .collect()
}

fn total(blocks: &[&Block]) -> u64 {
    blocks.iter().map(|b| b.value).sum()
}

/// A tool's total for naps the sleeper measured as `want` us: not above it (the tool times only the
/// switch out and back in, inside the sleeper's clock reads; 0.5 % for rounding), and at most `tol` below
/// (the system call's entry and exit, and a preemption between a clock read and the nap, which a noisy
/// 2-CPU machine makes a few ms long).
fn assert_near(what: &str, got: u64, want: u64, tol: f64, blocks: &[Block]) {
    let (lo, hi) = (want as f64 * (1.0 - tol), want as f64 * 1.005);
    assert!(
        (lo..=hi).contains(&(got as f64)),
        "{what}: {got} us, the sleeper measured {want} us (-{:.0}%); all blocks: {blocks:#?}",
        tol * 100.0
    );
}

#[test]
fn offcpu_time_per_stack_matches_the_known_sleeps() {
    let Some(_lock) = bpf_test("offcpu_time_per_stack_matches_the_known_sleeps") else {
        return;
    };
    let (blocks, stderr, m) = trace_sleeps(&[]);
    // 20 x 10 ms and 10 x 100 ms, as the sleeper measured them (within 10 %, as the issue asks; on this
    // machine they exceed the nominal times by timer slack and the wait for a CPU after each wakeup).
    assert_near(
        "nap_short",
        total(&nap_blocks(&blocks, "nap_short")),
        m.short,
        0.10,
        &blocks,
    );
    assert_near(
        "nap_long",
        total(&nap_blocks(&blocks, "nap_long")),
        m.long,
        0.10,
        &blocks,
    );
    assert!(stderr.contains(" blocks, "), "no summary line: {stderr}");
    assert!(!stderr.contains("WARNING"), "losses: {stderr}");
}

/// Issue 16: where the kernel reports returns to user space (rseq_update), a block's stacks are taken
/// when it ends, and only if it counts. They must be the stacks taken when it begins: the same frames,
/// scheduler's included, the same totals; and so with a hash for the stamps instead of task storage.
#[test]
fn stacks_taken_when_blocks_end_are_those_taken_when_they_begin() {
    let Some(_lock) = bpf_test("stacks_taken_when_blocks_end_are_those_taken_when_they_begin")
    else {
        return;
    };
    // The frames of each nap function's blocks, and their total against the sleeper's own figure.
    let naps = |args: &[&str], env: &[(&str, &str)], desc: &str| {
        let (blocks, stderr, m) = trace_sleeps_env(args, env);
        assert!(stderr.contains(desc), "{env:?}: {stderr}");
        // The sleeper's 30 naps (and whatever else it blocked in), by the path asked for.
        let deferred: u64 = stderr
            .lines()
            .find_map(|l| {
                l.strip_prefix("bpfprof: blocks whose stacks were taken when they ended: ")
            })
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no count of deferred blocks: {stderr}"));
        let want_deferred = args.contains(&"end");
        assert_eq!(
            deferred >= 30,
            want_deferred,
            "{args:?} {env:?}: {deferred} deferred: {stderr}"
        );
        assert!(!stderr.contains("WARNING"), "{env:?}: losses: {stderr}");
        // A block at a place the thread blocked at before, by another way through the kernel (preempted
        // on its way out of the system call, with the registers of the nap's), gets the stack the kernel
        // gives for a switched-out task: counted, and each such fallback makes the next block there take
        // its own. The naps themselves keep their scheduler frames (nap_blocks asserts them).
        let late: u64 = stderr
            .lines()
            .find_map(|l| {
                l.strip_prefix("bpfprof: ")?
                    .strip_suffix(" kernel stacks taken when their block ended begin at the first function outside the scheduler (their thread had blocked there another way before)")
            })
            .map_or(0, |n| n.trim().parse().expect("a count"));
        assert!(late <= 3, "{env:?}: {late} fallbacks: {stderr}");
        let mut frames = Vec::new();
        for (nap, measured) in [("nap_short", m.short), ("nap_long", m.long)] {
            let got = nap_blocks(&blocks, nap);
            assert_near(nap, total(&got), measured, 0.10, &blocks);
            frames.extend(got.iter().map(|b| b.frames.clone()));
        }
        frames.sort();
        frames.dedup();
        frames
    };
    let timing = ("BPFPROF_TIMING", "1");
    // (Task storage where the kernel has it for tracing programs: 5.12+.)
    // (The sleeper is traced with -p, with which `auto` takes stacks when blocks begin.)
    let end = ["--stacks-at", "end"];
    let deferred = naps(
        &end,
        &[timing],
        "hooks tp_btf, stacks taken when blocks end",
    );
    let begun = naps(&[], &[timing], "hooks tp_btf");
    assert_eq!(deferred, begun, "stacks taken when blocks end differ");
    let hashed = naps(
        &end,
        &[timing, ("BPFPROF_NO_TASK_STORAGE", "1")],
        "hooks tp_btf, stacks taken when blocks end",
    );
    assert_eq!(hashed, begun, "with the hash of stamps");

    // -U: user stacks alone, taken when the thread is back in user space: each nap function's time.
    let (blocks, stderr, m) = trace_sleeps_env(&["-U", "--stacks-at", "end"], &[timing]);
    assert!(stderr.contains("stacks taken when blocks end"), "{stderr}");
    for (nap, measured) in [("nap_short", m.short), ("nap_long", m.long)] {
        let got: Vec<&Block> = blocks
            .iter()
            .filter(|b| has_run(&b.frames, &[nap, "sleep_phase", "main"]))
            .filter(|b| !b.frames.iter().any(|f| f == "schedule"))
            .collect();
        assert_near(&format!("{nap} -U"), total(&got), measured, 0.10, &blocks);
    }
    // -K: kernel stacks alone, taken at the switch back in: the nanosleeps, scheduler frames first.
    let (blocks, stderr, m) = trace_sleeps_env(&["-K", "--stacks-at", "end"], &[timing]);
    assert!(stderr.contains("stacks taken when blocks end"), "{stderr}");
    let sleeps: Vec<&Block> = blocks
        .iter()
        .filter(|b| has_run(&b.frames, &["schedule", "do_nanosleep"]))
        .filter(|b| !b.frames.iter().any(|f| f == "main"))
        .collect();
    assert_near(
        "nanosleeps -K",
        total(&sleeps),
        m.short + m.long,
        0.10,
        &blocks,
    );
}

#[test]
fn min_max_and_state_filters_exclude_what_they_should() {
    let Some(_lock) = bpf_test("min_max_and_state_filters_exclude_what_they_should") else {
        return;
    };
    // -m 60 ms: the 100 ms naps stay, all of them; the 10 ms naps go. The bound lies far from both, so
    // that a nap delayed by a busy machine (the wait for a CPU counts as blocked) stays on its side.
    let (blocks, _, m) = trace_sleeps(&["-m", "60000"]);
    assert!(nap_blocks(&blocks, "nap_short").is_empty(), "{blocks:?}");
    assert_near(
        "nap_long with -m",
        total(&nap_blocks(&blocks, "nap_long")),
        m.long,
        0.10,
        &blocks,
    );
    // -M 60 ms: the reverse.
    let (blocks, _, m) = trace_sleeps(&["-M", "60000"]);
    assert!(nap_blocks(&blocks, "nap_long").is_empty(), "{blocks:?}");
    assert_near(
        "nap_short with -M",
        total(&nap_blocks(&blocks, "nap_short")),
        m.short,
        0.10,
        &blocks,
    );
    // nanosleep sleeps in TASK_INTERRUPTIBLE (1): --state 2 (TASK_UNINTERRUPTIBLE) keeps none of it.
    let (blocks, _, _) = trace_sleeps(&["--state", "2"]);
    assert!(
        nap_blocks(&blocks, "nap_short").is_empty() && nap_blocks(&blocks, "nap_long").is_empty(),
        "{blocks:?}"
    );
    let (blocks, _, _) = trace_sleeps(&["--state", "1"]);
    assert_eq!(nap_blocks(&blocks, "nap_long").len(), 1, "{blocks:?}");
}

/// The pipe workload: "reader" blocked in wait_for_data, woken every 20 ms by "writer" in wake_reader.
fn pipe_workload() -> Workload {
    Workload::start(&workload("blocker"), &["pipe", "20"])
}

/// Runs bpfprof with BPFPROF_HOOKS (empty: its own choice) and BPFPROF_TIMING, whose report names the
/// hooks used.
fn run_env(hooks: &str, args: &[&str]) -> Output {
    let out = bpfprof()
        .env("BPFPROF_HOOKS", hooks)
        .env("BPFPROF_TIMING", "1")
        .args(args)
        .output()
        .expect("running bpfprof");
    assert!(
        out.status.success(),
        "bpfprof {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn wakeup_names_the_writer_function_that_wakes_the_reader() {
    let Some(_lock) = bpf_test("wakeup_names_the_writer_function_that_wakes_the_reader") else {
        return;
    };
    let w = pipe_workload();
    let pid = w.pid().to_string();
    let out = run_ok(&["wakeup", "-p", &pid, "-f", "2"]);
    let stacks = parse_folded(&out.stdout);
    // waker;user root..leaf;kernel root..leaf;target
    let by_writer: Vec<_> = stacks
        .iter()
        .filter(|(f, _)| f.first().map(String::as_str) == Some("writer"))
        .filter(|(f, _)| f.last().map(String::as_str) == Some("reader"))
        .collect();
    assert_eq!(by_writer.len(), 1, "{stacks:?}");
    let (frames, us) = by_writer[0];
    assert!(
        has_run(frames, &["writer_loop", "wake_reader"]),
        "{frames:?}"
    );
    assert_eq!(
        frames[frames.len() - 2],
        "try_to_wake_up",
        "the waker's innermost frame: {frames:?}"
    );
    // The reader waits all the time but for the instants it reads: ~2 s of waits end in the 2 s traced.
    assert!(
        (1_800_000..=2_200_000).contains(us),
        "reader woken by writer: {us} us in 2 s"
    );

    // Text layout: target, the waker's frames innermost first, waker.
    let out = run_ok(&["wakeup", "-p", &pid, "1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let block = text
        .split("\n\n")
        .find(|b| b.contains("wake_reader"))
        .unwrap_or_else(|| panic!("no wake_reader block in:\n{text}"));
    let lines: Vec<&str> = block.lines().map(str::trim).collect();
    assert_eq!(lines[0], "target:          reader", "{block}");
    assert_eq!(lines[1], "try_to_wake_up", "{block}");
    assert!(
        lines[lines.len() - 2] == "waker:           writer",
        "{block}"
    );
}

#[test]
fn offwake_puts_reader_and_writer_on_one_line_with_either_hook() {
    let Some(_lock) = bpf_test("offwake_puts_reader_and_writer_on_one_line_with_either_hook")
    else {
        return;
    };
    let w = pipe_workload();
    let pid = w.pid().to_string();
    // BTF tracepoints here by default; the classic and raw tracepoint fallbacks, forced, must give the same.
    for (hooks, name) in [("", "tp_btf"), ("tp", "tp"), ("raw_tp", "raw_tp")] {
        let env = Some(hooks);
        let out = run_env(hooks, &["offwake", "-p", &pid, "-f", "2"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.lines().any(|l| l
                .split("; hooks ")
                .nth(1)
                .is_some_and(|h| h.split(',').next() == Some(name))),
            "{hooks:?}: not the {name} hooks: {stderr}"
        );
        assert!(!stderr.contains("unavailable"), "{stderr}");
        let stacks = parse_folded(&out.stdout);
        let line = stacks
            .iter()
            .find(|(f, _)| f[0] == "reader" && f.last().map(String::as_str) == Some("writer"))
            .unwrap_or_else(|| panic!("{env:?}: no reader..writer line in {stacks:?}"));
        let frames = &line.0;
        let split = frames
            .iter()
            .position(|f| f == "--")
            .expect("the -- between target and waker");
        let (target, waker) = frames.split_at(split);
        // The blocked half root first, the waker's half from the wakeup back to its root.
        assert!(
            has_run(target, &["main", "reader_loop", "wait_for_data"]),
            "{env:?}: {frames:?}"
        );
        assert_eq!(target.last().map(String::as_str), Some("__schedule"));
        assert_eq!(waker[1], "try_to_wake_up", "{env:?}: {frames:?}");
        assert!(
            has_run(waker, &["wake_reader", "writer_loop"]),
            "{env:?}: {frames:?}"
        );
        assert!(
            (1_800_000..=2_200_000).contains(&line.1),
            "{env:?}: reader blocked {} us in 2 s",
            line.1
        );
    }
}

#[test]
fn flame_graphs_are_titled_and_coloured_by_tool() {
    let Some(_lock) = bpf_test("flame_graphs_are_titled_and_coloured_by_tool") else {
        return;
    };
    let w = pipe_workload();
    let pid = w.pid().to_string();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    for (tool, title, frame) in [
        ("offcpu", "Off-CPU Time Flame Graph", "wait_for_data"),
        ("offwake", "Off-Wake Time Flame Graph", "wake_reader"),
    ] {
        let path = dir.join(format!("{tool}.svg"));
        let _ = std::fs::remove_file(&path);
        run_ok(&[tool, "-p", &pid, "--svg", path.to_str().unwrap(), "1"]);
        let svg = std::fs::read_to_string(&path).expect("the SVG was written");
        let opts = roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        };
        let doc = roxmltree::Document::parse_with_options(&svg, opts).expect("well-formed SVG");
        let texts: Vec<&str> = doc.descendants().filter_map(|n| n.text()).collect();
        assert!(texts.contains(&title), "{tool}: no title {title}");
        let titles: Vec<&str> = doc
            .descendants()
            .filter(|n| n.has_tag_name("title"))
            .filter_map(|n| n.text())
            .collect();
        assert!(
            titles
                .iter()
                .any(|t| t.starts_with(frame) && t.contains(" us, ")),
            "{tool}: no {frame} frame counted in us: {titles:?}"
        );
    }
    // The chain palette: the waker's frames are aqua (flamegraph.pl: r 50..110, g = b 165..220), the
    // blocked ones are not.
    let svg = std::fs::read_to_string(dir.join("offwake.svg")).unwrap();
    let fill_of = |frame: &str| -> (u8, u8, u8) {
        let at = svg
            .find(&format!("<title>{frame}"))
            .unwrap_or_else(|| panic!("no {frame} frame"));
        let rgb = &svg[at..];
        let start = rgb.find("rgb(").expect("a fill") + 4;
        let parts: Vec<u8> = rgb[start..start + rgb[start..].find(')').unwrap()]
            .split(',')
            .map(|p| p.trim().parse().unwrap())
            .collect();
        (parts[0], parts[1], parts[2])
    };
    let (r, g, b) = fill_of("wake_reader");
    assert!(
        (50..=110).contains(&r) && g == b && (165..=220).contains(&g),
        "wake_reader is not aqua: {r},{g},{b}"
    );
    let (r, g, b) = fill_of("wait_for_data");
    assert!(
        b > r && b > g && g != b,
        "wait_for_data is not blue: {r},{g},{b}"
    );
}

#[test]
fn offcpu_ctrl_c_prints_and_detaches() {
    let Some(_lock) = bpf_test("offcpu_ctrl_c_prints_and_detaches") else {
        return;
    };
    let w = pipe_workload();
    // Tracing once its header is out (on stderr with -f); Ctrl-C a while after.
    let tracer = Running::start(
        &["offcpu", "-f", "-p", &w.pid().to_string()],
        &[],
        true,
        "Tracing off-CPU time",
    );
    sleep(Duration::from_millis(1500));
    let (out, _) = tracer.finish(true);
    let stacks = parse_folded(out.as_bytes());
    assert!(
        count_with(&stacks, &["reader_loop", "wait_for_data"]) > 0,
        "{stacks:?}"
    );
    assert_nothing_left_attached();
}

#[test]
fn full_stack_storage_is_counted_and_shown() {
    let Some(_lock) = bpf_test("full_stack_storage_is_counted_and_shown") else {
        return;
    };
    let w = pipe_workload();
    let out = run_ok(&[
        "offwake",
        "-f",
        "--stack-storage-size",
        "1",
        "-p",
        &w.pid().to_string(),
        "1",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("WARNING: ") && stderr.contains("raise --stack-storage-size"),
        "{stderr}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("[Missed "),
        "lost stacks must show"
    );
}

#[test]
fn offcpu_bad_input_gives_one_line_and_nonzero_exit() {
    let reader = pipe_workload();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["offcpu", "-p", "999999999", "1"],
            "no such process: 999999999",
        ),
        (
            vec!["wakeup", "-t", "999999999", "1"],
            "no such thread: 999999999",
        ),
        (
            vec!["offwake", "-m", "100", "-M", "10"],
            "-M 10 is below -m 100",
        ),
        (vec!["offcpu", "-p", "1", "-t", "1"], "cannot be used with"),
        (vec!["offcpu", "-u", "-k"], "cannot be used with"),
        (
            vec!["wakeup", "--stacks-at", "end", "1"],
            "--stacks-at applies to offcpu only",
        ),
        (vec!["offcpu", "--stacks-at", "never", "1"], "invalid value"),
    ];
    for (args, want) in cases {
        let out = bpfprof().args(&args).output().expect("running bpfprof");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            stderr.lines().next().unwrap_or_default().contains(want),
            "{args:?}: expected {want:?} first in: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    }
    // A thread given as a process is named as such, with the off-CPU tools' thread flag.
    let threads = std::fs::read_dir(format!("/proc/{}/task", reader.pid()))
        .expect("the workload's threads")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|&t| t != reader.pid())
        .expect("the writer thread");
    let out = bpfprof()
        .args(["offcpu", "-p", &threads.to_string(), "1"])
        .output()
        .expect("running bpfprof");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains(&format!("-t {threads}")),
        "{stderr}"
    );
}

/// tools/offcpu.bt, run by trace, against the canned tool on the same known sleeps (20 x 10 ms in
/// nap_short, 10 x 100 ms in nap_long): both attribute them to the sleeper's stacks, within 10 % of what
/// the sleeper measured (as the canned tool's own test), and within 3 % of each other (they time the same
/// switches).
#[test]
fn offcpu_bt_agrees_with_the_canned_tool_on_known_sleeps() {
    let Some(_lock) = bpf_test("offcpu_bt_agrees_with_the_canned_tool_on_known_sleeps") else {
        return;
    };
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/offcpu.bt");
    // The script misses what the tool misses (the same switches): the tool's warning says when.
    let ((rest, bt_out, bt_err, m), _) = unless_switches_unseen(|| {
        let mut w = Workload::start_gated(&workload("blocker"), &["sleep"]);
        let pid = w.pid().to_string();
        let bt = Running::start(
            &["trace", script.to_str().unwrap()],
            &[],
            false,
            "Attaching 3 probes...",
        );
        let canned = Running::start(
            &["offcpu", "-p", &pid],
            &[],
            false,
            "Tracing off-CPU time (us) of PID",
        );
        w.go();
        let m = Measured::read(&mut w);
        let (rest, stderr) = canned.finish(true);
        let (bt_out, bt_err) = bt.finish(true);
        ((rest, bt_out, bt_err, m), stderr)
    });
    let blocks = parse_blocks(&rest);
    // @us[KSTACK, USTACK, comm]: N -- frames `    name+off`, the key's last line `, comm]: N`.
    let bt_entries: Vec<(Vec<String>, String, u64)> = stack_key_entries(&bt_out)
        .into_iter()
        .map(|(f, who, n)| (f, who.trim_start_matches(", ").to_string(), n))
        .collect();
    for (nap, want) in [("nap_short", m.short), ("nap_long", m.long)] {
        let bt_total: u64 = bt_entries
            .iter()
            .filter(|(f, who, _)| who == "sleeper" && has_run(f, &[nap, "sleep_phase", "main"]))
            .map(|e| e.2)
            .sum();
        let canned_total = total(&nap_blocks(&blocks, nap));
        assert_near(nap, canned_total, want, 0.10, &blocks);
        assert!(
            bt_total <= want + want / 200 && bt_total as f64 >= want as f64 * 0.90,
            "{nap}: offcpu.bt {bt_total} us, the sleeper measured {want} us (-10%):\n{bt_out}\n{bt_err}"
        );
        assert!(
            (bt_total as f64 - canned_total as f64).abs() <= canned_total as f64 * 0.03,
            "{nap}: offcpu.bt {bt_total} us, offcpu {canned_total} us"
        );
    }
}

/// The share of `total` that `part` is, for messages.
fn share(part: u64, total: u64) -> f64 {
    part as f64 / total.max(1) as f64
}

/// A thread reuses the stacks it blocked with when it blocks again where it did (bpf/memo.bpf.h); blocks
/// that look alike but are not must still get their own stacks. The twins workload naps with the same
/// registers from via_a and via_b (only a return address on its stack differs), and reads with one user
/// stack from a pipe and from a socket (only the kernel stacks differ), in turn: each half gets its half.
/// A memo that reused on registers alone, or on anything less than every word the walks read, would give
/// one of each pair all of it (checked by breaking the memos' checks: 100 % and 0 %).
#[test]
fn stack_memos_tell_apart_blocks_that_differ_only_in_their_stacks() {
    let Some(_lock) = bpf_test("stack_memos_tell_apart_blocks_that_differ_only_in_their_stacks")
    else {
        return;
    };
    let w = Workload::start(&workload("blocker"), &["twins"]);
    let pid = w.pid().to_string();
    // Both hooks whose programs differ in where the kernel stack's memo is anchored.
    for hooks in ["tp_btf", "tp"] {
        let out = run_env(hooks, &["offcpu", "-p", &pid, "-f", "2"]);
        let stacks = parse_folded(&out.stdout);
        let sum = |needle: &[&str]| count_with(&stacks, needle);
        let (a, b) = (sum(&["via_a", "twin_nap"]), sum(&["via_b", "twin_nap"]));
        // Below vfs_read: pipe_read (anon_pipe_read on 6.18; new_sync_read before it on 5.10), or
        // sock_read_iter.
        let read_by = |f: &str| -> u64 {
            stacks
                .iter()
                .filter(|(frames, _)| {
                    frames
                        .windows(2)
                        .any(|w| w[0] == "wait_on" && w[1].starts_with("entry_SYSCALL_64"))
                        && frames
                            .iter()
                            .skip_while(|x| *x != "vfs_read")
                            .any(|x| x.contains(f))
                })
                .map(|(_, n)| n)
                .sum()
        };
        let (pipe, sock) = (read_by("pipe_read"), read_by("sock_read"));
        // Each 1 ms nap and each 2 ms read comes once a round: halves, within the jitter of a busy machine
        // (a third is far outside it, and far from the 0 % a wrong reuse gives).
        for (what, x, y) in [
            ("via_a / via_b naps", a, b),
            ("pipe / socket reads", pipe, sock),
        ] {
            assert!(
                x + y > 0 && share(x, x + y) > 0.33 && share(y, x + y) > 0.33,
                "{hooks}: {what}: {x} us and {y} us:\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("stacks reused from threads' memos"),
            "{hooks}: {stderr}"
        );
    }
}

/// --sample N traces one block in N, chosen at random, and scales the times by N: a thread napping 10,000
/// times is counted within sampling error of what it measured, and the output says it was sampled.
#[test]
fn sample_traces_one_block_in_n_and_scales_the_totals() {
    let Some(_lock) = bpf_test("sample_traces_one_block_in_n_and_scales_the_totals") else {
        return;
    };
    let mut w = Workload::start_gated(&workload("blocker"), &["naps", "10000"]);
    let pid = w.pid().to_string();
    let tracer = Running::start(
        &["offcpu", "-p", &pid, "--sample", "10", "-f"],
        &[],
        true,
        "Tracing off-CPU time (us) of PID",
    );
    assert!(tracer.header.contains("--sample 10"), "{}", tracer.header);
    w.go();
    let words = w.line();
    assert_eq!(words.first().map(String::as_str), Some("done"), "{words:?}");
    let measured: u64 = words[1].parse().expect("the naps' total");
    let (out, stderr) = tracer.finish(true);
    let stacks = parse_folded(out.as_bytes());
    let napped = count_with(&stacks, &["nap_many"]);
    // ~1,000 of 10,000 naps traced (binomial: 3 % standard deviation), each worth 10; nap lengths vary too.
    // 15 % is five standard deviations.
    assert!(
        (napped as f64 - measured as f64).abs() <= measured as f64 * 0.15,
        "nap_many: {napped} us scaled, the workload measured {measured} us:\n{out}"
    );
    assert!(
        stderr.contains("--sample 10: one block in 10 traced"),
        "{stderr}"
    );
}
