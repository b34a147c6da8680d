//! How frames are named (issue 19): PLT stubs, public aliases, code only.
use crate::common::*;

/// A loop calling libc's abs through the PLT: samples in the stub are `abs@plt` (blazesym alone names
/// them by the symbol before them, `_init`), under the loop's function; libc's frames by their public
/// names.
#[test]
fn plt_stubs_are_named_func_at_plt() {
    let Some(_lock) = bpf_test("plt_stubs_are_named_func_at_plt") else {
        return;
    };
    let w = Workload::start(&workload("names"), &["plt"]);
    let pid = w.pid().to_string();
    let stacks = parse_folded(&run_ok(&["profile", "-F", "999", "-f", "-p", &pid, "4"]).stdout);
    let total: u64 = stacks.iter().map(|(_, n)| n).sum();
    let in_stub = count_with(&stacks, &["main", "plt_loop", "abs@plt"]);
    let in_abs = count_with(&stacks, &["main", "plt_loop", "abs"]);
    // The stub is one jump: 0.6 % of the samples in a run here (12 of 1998 in 2 s: the cpu-clock
    // timer's interrupt lands after the instruction it interrupted, rarely on a jump), ~24 in 4 s.
    assert!(
        total > 1000 && in_stub >= 1,
        "{in_stub} of {total} samples in abs@plt: {stacks:?}"
    );
    assert!(in_abs > 0, "no samples in libc's abs: {stacks:?}");
    assert!(
        stacks.iter().all(|(f, _)| f.iter().all(|x| x != "_init")),
        "a frame named _init: {stacks:?}"
    );

    // trace's ustack the same, as `abs@plt+OFFSET`.
    let program = format!("profile:hz:999 /pid == {pid}/ {{ @[ustack] = count(); }}");
    let out = run_ok(&["trace", "-d", "4", "-e", &program]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().any(|l| l.trim().starts_with("abs@plt+")) && !text.contains("_init+"),
        "trace's ustack:\n{text}"
    );
}

/// The line of tests/workloads/inlined.c that carries `marker`, 1-based.
fn inlined_line(marker: &str) -> usize {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workloads/inlined.c");
    let src = std::fs::read_to_string(path).expect("tests/workloads/inlined.c");
    src.lines()
        .position(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("no {marker} in inlined.c"))
        + 1
}

/// Samples with a frame for which `is` holds.
fn count_where(stacks: &[(Vec<String>, u64)], is: impl Fn(&str) -> bool) -> u64 {
    stacks
        .iter()
        .filter(|(f, _)| f.iter().any(|x| is(x)))
        .map(|(_, n)| n)
        .sum()
}

/// A loop the compiler inlined (always_inline, gcc -O2 -g): --inline shows it as a frame of its own,
/// `mix_step [inlined]`, under the function it was inlined into, in the samples there; --lines names
/// the loop's line in it and the call's in the functions around it; plain runs show neither.
#[test]
fn inline_expands_inlined_calls_and_lines_name_the_source() {
    let Some(_lock) = bpf_test("inline_expands_inlined_calls_and_lines_name_the_source") else {
        return;
    };
    let w = Workload::start(&workload_nofp("inlined", false), &[]);
    let pid = w.pid().to_string();
    let profile = |extra: &[&str]| {
        let mut args = vec!["profile", "-F", "999", "-f", "-p", &pid];
        args.extend_from_slice(extra);
        args.push("2");
        parse_folded(&run_ok(&args).stdout)
    };

    let plain = profile(&[]);
    let caller = count_with(&plain, &["main", "hash_caller"]);
    assert!(caller > 1000, "{caller} samples in hash_caller: {plain:?}");
    assert_eq!(
        count_where(&plain, |x| x.contains("[inlined]")
            || x.starts_with("mix_step")),
        0,
        "inlined frames without --inline: {plain:?}"
    );

    // --inline: hash_caller's samples lie in the inlined loop but for the few on its own two other
    // instructions (at most 10 %).
    let inline = profile(&["--inline"]);
    let caller = count_with(&inline, &["main", "hash_caller"]);
    let inlined = count_with(&inline, &["main", "hash_caller", "mix_step [inlined]"]);
    assert!(
        caller > 1000 && inlined as f64 >= 0.9 * caller as f64,
        "{inlined} of {caller} in mix_step [inlined]: {inline:?}"
    );

    // --lines with --inline: the loop's line in mix_step, the call's in hash_caller, main's call.
    let lines = profile(&["--inline", "--lines"]);
    let want = [
        format!("main (inlined.c:{})", inlined_line("hash_caller();")),
        format!("hash_caller (inlined.c:{})", inlined_line("/* CALL */")),
        format!(
            "mix_step [inlined] (inlined.c:{})",
            inlined_line("/* HOT */")
        ),
    ];
    let want: Vec<&str> = want.iter().map(String::as_str).collect();
    let caller = count_where(&lines, |x| x.starts_with("hash_caller (inlined.c:"));
    let at_lines = count_with(&lines, &want);
    assert!(
        caller > 1000 && at_lines as f64 >= 0.9 * caller as f64,
        "{at_lines} of {caller} at {want:?}: {lines:?}"
    );
    // The text layout says the same, innermost first.
    let out = run_ok(&[
        "profile", "-F", "499", "-p", &pid, "--inline", "--lines", "1",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    let frames: Vec<&str> = text.lines().map(str::trim).collect();
    assert!(
        frames.windows(3).any(|w| w == [want[2], want[1], want[0]]),
        "{text}"
    );
}
