//! Whole user stacks without frame pointers (--unwind dwarf/auto): the nofp workload built as distributions
//! build (gcc -O2 -fomit-frame-pointer), Debian's own xz, and frame pointers beside them to show what they
//! lose.
use std::path::Path;

use crate::common::*;

/// The nofp workload's cpu chain, outermost first, from the program's root: libc's sort then runs
/// between sort_leaf and the comparator.
const CPU_CHAIN: [&str; 8] = [
    "_start",
    "__libc_start_main",
    "__libc_start_call_main",
    "main",
    "run",
    "outer_step",
    "middle_step",
    "sort_leaf",
];

/// Folded user stacks (-U) of `pid` for `secs` seconds at 999 Hz with --unwind `mode`, and stderr.
fn profile_user(pid: u32, mode: &str, secs: u64) -> (Vec<(Vec<String>, u64)>, String) {
    let secs = scaled_secs(secs).to_string();
    let out = run_ok(&[
        "profile",
        "-U",
        "-F",
        "999",
        "-f",
        "--unwind",
        mode,
        "-p",
        &pid.to_string(),
        &secs,
    ]);
    (
        parse_folded(&out.stdout),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Samples whose user frames (after the comm) start with `prefix`: those that reach the root and then
/// the chain, in order.
fn count_from_root(stacks: &[(Vec<String>, u64)], prefix: &[&str]) -> u64 {
    stacks
        .iter()
        .filter(|(f, _)| f.len() > prefix.len() && f[1..=prefix.len()].iter().eq(prefix.iter()))
        .map(|(_, n)| n)
        .sum()
}

fn total(stacks: &[(Vec<String>, u64)]) -> u64 {
    stacks.iter().map(|(_, n)| n).sum()
}

fn folded_text(stacks: &[(Vec<String>, u64)]) -> String {
    let mut lines: Vec<String> = stacks
        .iter()
        .map(|(f, n)| format!("{} {n}", f.join(";")))
        .collect();
    lines.sort();
    lines.truncate(20);
    lines.join("\n")
}

#[test]
fn tables_give_whole_stacks_through_libc_where_frame_pointers_break() {
    let Some(_lock) = bpf_test("tables_give_whole_stacks_through_libc_where_frame_pointers_break")
    else {
        return;
    };
    let nofp = workload_nofp("nofp", false);
    let w = Workload::start(&nofp, &["cpu"]);
    for mode in ["dwarf", "auto"] {
        let (stacks, err) = profile_user(w.pid(), mode, 3);
        let n = total(&stacks);
        assert!(
            n >= 300,
            "--unwind {mode}: too few samples ({n}) to judge:\n{err}"
        );
        let whole = count_from_root(&stacks, &CPU_CHAIN);
        assert!(
            whole * 100 >= n * 99,
            "--unwind {mode}: {whole} of {n} samples reach _start..sort_leaf:\n{}\n{err}",
            folded_text(&stacks)
        );
        // libc sits between two of the workload's frames: sort_leaf calls qsort, which calls by_value.
        let crossing: u64 = stacks
            .iter()
            .filter(|(f, _)| {
                let leaf = f.iter().position(|x| x == "sort_leaf");
                let cmp = f.iter().position(|x| x == "by_value");
                matches!((leaf, cmp), (Some(l), Some(c)) if c > l + 1)
            })
            .map(|(_, n)| n)
            .sum();
        assert!(
            crossing * 10 >= n,
            "--unwind {mode}: only {crossing} of {n} samples in by_value under libc's sort"
        );
    }
    // Frame pointers, as bcc and perf -g walk: the callers of the workload's and libc's frames are lost.
    let (stacks, _) = profile_user(w.pid(), "fp", 2);
    let n = total(&stacks);
    let whole = count_from_root(&stacks, &CPU_CHAIN);
    assert!(
        n > 0 && whole * 10 <= n,
        "--unwind fp: {whole} of {n} samples whole: frame pointers should lose them:\n{}",
        folded_text(&stacks)
    );
}

/// Samples that reach the program's root: libc's start-up frames under its `_start` (named, or
/// `[unknown] (BIN)` in a stripped binary).
fn count_reaching_start(stacks: &[(Vec<String>, u64)]) -> u64 {
    stacks
        .iter()
        .filter(|(f, _)| {
            f.len() > 3
                && (f[1] == "_start" || f[1].starts_with("[unknown] ("))
                && f[2] == "__libc_start_main"
                && f[3] == "__libc_start_call_main"
        })
        .map(|(_, n)| n)
        .sum()
}

/// Debian's own xz (LZMA compression, stripped) and python3 (a CPU loop), unmodified.
#[test]
fn debian_binaries_without_frame_pointers_unwind_to_their_root() {
    let Some(_lock) = bpf_test("debian_binaries_without_frame_pointers_unwind_to_their_root")
    else {
        return;
    };
    for (bin, cmd) in [
        (
            "/usr/bin/xz",
            "exec xz -9 -T1 -c < /dev/urandom > /dev/null",
        ),
        (
            "/usr/bin/python3",
            "exec /usr/bin/python3 -c 'while True: pass'",
        ),
    ] {
        assert!(
            Path::new(bin).exists(),
            "{bin} is missing (scripts/setup.sh installs it)"
        );
        let w = Workload::start(Path::new("/bin/sh"), &["-c", &format!("echo ready; {cmd}")]);
        let (stacks, err) = profile_user(w.pid(), "auto", 3);
        let n = total(&stacks);
        assert!(n >= 300, "{bin}: too few samples ({n}):\n{err}");
        let whole = count_reaching_start(&stacks);
        assert!(
            whole * 100 >= n * 95,
            "{bin}: {whole} of {n} samples reach _start with unwind tables:\n{}\n{err}",
            folded_text(&stacks)
        );
        let (fp_stacks, _) = profile_user(w.pid(), "fp", 2);
        let (fp_n, fp_whole) = (total(&fp_stacks), count_reaching_start(&fp_stacks));
        eprintln!(
            "{bin}: samples reaching _start: {whole} of {n} with unwind tables, {fp_whole} of {fp_n} with frame pointers"
        );
        assert!(
            fp_n > 0 && fp_whole * 2 < fp_n,
            "{bin}: frame pointers reached the root of {fp_whole} of {fp_n} samples: the test shows nothing"
        );
    }
}

#[test]
fn blocked_stacks_show_the_callers_of_libc() {
    let Some(_lock) = bpf_test("blocked_stacks_show_the_callers_of_libc") else {
        return;
    };
    let nofp = workload_nofp("nofp", false);
    let sleeper = Workload::start(&nofp, &["sleep"]);
    let reader = Workload::start(&nofp, &["pipe"]);
    let pids = format!("{},{}", sleeper.pid(), reader.pid());
    for tool in ["offcpu", "offwake"] {
        let out = run_ok(&[tool, "-f", "--unwind", "dwarf", "-p", &pids, "2"]);
        // Preemptions of the workload in its own code between two blocks are not what is looked at.
        let stacks: Vec<_> = parse_folded(&out.stdout)
            .into_iter()
            .filter(|(f, _)| !preempted(f))
            .collect();
        let sum = |needle: &[&str]| count_with(&stacks, needle);
        let blocked = total(&stacks);
        // nap calls libc's nanosleep, wait_byte its read: the libc frame's caller is there, and so is
        // the root.
        let napping = sum(&[
            "_start",
            "__libc_start_main",
            "__libc_start_call_main",
            "main",
            "nap_loop",
            "nap",
        ]);
        let reading = sum(&[
            "_start",
            "__libc_start_main",
            "__libc_start_call_main",
            "main",
            "pipe_loop",
            "wait_byte",
        ]);
        assert!(
            napping > 0 && reading > 0 && napping + reading == blocked,
            "{tool}: {napping} + {reading} us of {blocked} under nap and wait_byte:\n{}",
            folded_text(&stacks)
        );
        // In the blocked half of each line: offwake's waker half (after `--`) can be any task a timer
        // interrupt found on a CPU, the workload in its own code among them.
        let after = |caller: &str| {
            stacks
                .iter()
                .filter_map(|(f, _)| {
                    let blocked = f.split(|x| x == "--").next().unwrap_or(f);
                    blocked
                        .iter()
                        .position(|x| x == caller)
                        .and_then(|i| blocked.get(i + 1))
                })
                .all(|next| next.contains("nanosleep") || next.contains("read"))
        };
        assert!(
            after("nap") && after("wait_byte"),
            "{tool}: libc's frame is not next:\n{}",
            folded_text(&stacks)
        );
        // libc's frames by their public names (issue 19): libc6-dbg's symbols name them
        // `__GI___clock_nanosleep` and `__GI___libc_read` too.
        let names = |needle: &[&str]| count_with(&stacks, needle);
        assert!(
            names(&["nap", "nanosleep", "clock_nanosleep"]) > 0
                && names(&["wait_byte", "read"]) > 0
                && stacks
                    .iter()
                    .all(|(f, _)| f.iter().all(|x| !x.starts_with("__GI_"))),
            "{tool}: not libc's public names:\n{}",
            folded_text(&stacks)
        );
    }
}

#[test]
fn processes_started_and_libraries_loaded_during_the_trace_get_tables() {
    let Some(_lock) =
        bpf_test("processes_started_and_libraries_loaded_during_the_trace_get_tables")
    else {
        return;
    };
    let nofp = workload_nofp("nofp", false);
    let lib = workload_nofp("nofplib", true);
    // Every process: nofp starts after the tables of those running were loaded, and loads its library
    // only once it has been sampled.
    let secs = scaled_secs(4).to_string();
    let running = Running::start(
        &[
            "profile", "-U", "-F", "999", "-f", "--unwind", "dwarf", &secs,
        ],
        &[],
        true,
        "Sampling at",
    );
    let mut w = Workload::start_gated(&nofp, &["dlopen", lib.to_str().unwrap()]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    w.go();
    let (out, err) = running.finish(false);
    let stacks: Vec<(Vec<String>, u64)> = parse_folded(out.as_bytes())
        .into_iter()
        .filter(|(f, _)| f[0] == "nofp")
        .collect();
    let n = count_with(&stacks, &["lib_spin"]);
    let whole = count_from_root(
        &stacks,
        &[
            "_start",
            "__libc_start_main",
            "__libc_start_call_main",
            "main",
            "dl_loop",
            "lib_work",
            "lib_middle",
            "lib_spin",
        ],
    );
    assert!(n >= 200, "only {n} samples in the library:\n{err}");
    // Until the library's table is loaded (its code is in no mapping known: the process is read again
    // at once) its stacks end early, marked.
    assert!(
        whole * 100 >= n * 90,
        "{whole} of {n} samples in lib_spin whole:\n{}\n{err}",
        folded_text(&stacks)
    );
    assert!(
        stacks
            .iter()
            .filter(|(f, _)| f.iter().any(|x| x == "lib_spin") && !f.iter().any(|x| x == "_start"))
            .all(|(f, _)| f[1].starts_with("[unwind stopped")),
        "a stack that is not whole ends without saying why:\n{}",
        folded_text(&stacks)
    );
}

/// `@[ustack]` entries of trace's output: each stack's function names (innermost first) and its count.
fn ustack_entries(out: &str) -> Vec<(Vec<String>, u64)> {
    out.split("@[")
        .skip(1)
        .filter_map(|block| {
            let (frames, rest) = block.split_once("]: ")?;
            let n = rest.split_whitespace().next()?.parse().ok()?;
            let names = frames
                .lines()
                .filter_map(|l| l.strip_prefix("    "))
                .map(|f| f.rsplit_once('+').map_or(f, |(name, _)| name).to_string())
                .collect();
            Some((names, n))
        })
        .collect()
}

/// trace's ustack walks the same tables: at a uprobe on the comparator (its first instruction), every
/// stack runs from by_value through libc's sort to sort_leaf..main and _start; with frame pointers the
/// workload's callers are lost.
#[test]
fn trace_ustack_walks_unwind_tables() {
    let Some(_lock) = bpf_test("trace_ustack_walks_unwind_tables") else {
        return;
    };
    let nofp = workload_nofp("nofp", false);
    let w = Workload::start(&nofp, &["cpu"]);
    let pid = w.pid().to_string();
    let program = format!(
        "uprobe:{}:by_value {{ @[ustack] = count(); }}",
        nofp.display()
    );
    let chain = [
        "sort_leaf",
        "middle_step",
        "outer_step",
        "run",
        "main",
        "__libc_start_call_main",
        "__libc_start_main",
        "_start",
    ];
    let run = |mode: &str| {
        let out = run_ok(&[
            "trace", "--unwind", mode, "-p", &pid, "-d", "2", "-e", &program,
        ]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (
            ustack_entries(&text),
            text,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (entries, text, err) = run("dwarf");
    let n = total(&entries);
    assert!(n >= 1000, "only {n} calls counted:\n{text}\n{err}");
    let whole: u64 = entries
        .iter()
        .filter(|(f, _)| {
            f.first().is_some_and(|x| x == "by_value") && f.ends_with(&chain.map(String::from))
        })
        .map(|(_, n)| n)
        .sum();
    assert_eq!(whole, n, "not every stack is whole:\n{text}\n{err}");
    assert!(
        entries.iter().all(|(f, _)| f.len() > chain.len() + 1),
        "libc's sort is missing between by_value and sort_leaf:\n{text}"
    );
    let (fp_entries, fp_text, _) = run("fp");
    let fp_whole: u64 = fp_entries
        .iter()
        .filter(|(f, _)| f.iter().any(|x| x == "sort_leaf"))
        .map(|(_, n)| n)
        .sum();
    let fp_n = total(&fp_entries);
    assert!(
        fp_n > 0 && fp_whole * 10 <= fp_n,
        "frame pointers found sort_leaf under libc's frames in {fp_whole} of {fp_n} calls:\n{fp_text}"
    );
}
