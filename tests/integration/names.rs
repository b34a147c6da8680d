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

/// Node.js running tests/workloads/jit.js (hotLoop, compiled by V8's JIT) for `secs`, with
/// `--perf-basic-prof` when `perf_map`, deleting its map before it exits when `unlink`.
fn node(secs: &str, perf_map: bool, unlink: bool) -> Workload {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workloads/jit.js");
    let script = script.to_str().expect("a UTF-8 path");
    let mut args = vec![];
    if perf_map {
        args.push("--perf-basic-prof");
    }
    args.extend([script, secs]);
    if unlink {
        args.push("unlink");
    }
    // (--perf-basic-prof also writes V8's isolate-*.log where node runs.)
    let cwd = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    Workload::start_in(cwd, std::path::Path::new("node"), &args)
}

/// Of the samples whose innermost frame (user stacks only: -U) is in JIT code (a perf map's `JS:` name,
/// or [jit]): those in hotLoop, and all of them.
fn jit_leaves(stacks: &[(Vec<String>, u64)]) -> (u64, u64) {
    let leaf = |f: &Vec<String>| f.last().cloned().unwrap_or_default();
    let jit: Vec<(String, u64)> = stacks
        .iter()
        .map(|(f, n)| (leaf(f), *n))
        .filter(|(l, _)| l.starts_with("JS:") || l == "[jit]")
        .collect();
    let hot = jit
        .iter()
        .filter(|(l, _)| l.starts_with("JS:*hotLoop ") && l.contains("jit.js:"))
        .map(|(_, n)| n)
        .sum();
    (hot, jit.iter().map(|(_, n)| n).sum())
}

/// JIT frames get the names their runtime writes to its perf map (/tmp/perf-PID.map): in a live
/// process, in one that deleted its map and exited before the report (read while it lived), and in
/// trace's ustack; JIT code without a map is [jit], never a file's symbol.
#[test]
fn jit_frames_are_named_from_perf_maps() {
    let Some(_lock) = bpf_test("jit_frames_are_named_from_perf_maps") else {
        return;
    };
    let all = |stacks: &[(Vec<String>, u64)]| stacks.iter().map(|(_, n)| n).sum::<u64>();
    // More than half of the samples in JIT code, and hotLoop named in 90 % of those.
    let assert_hot = |stacks: &[(Vec<String>, u64)], what: &str| {
        let (hot, jit) = jit_leaves(stacks);
        assert!(
            jit * 2 > all(stacks) && hot as f64 >= 0.9 * jit as f64,
            "{what}: {hot} of {jit} JIT samples in hotLoop, {} in all: {stacks:?}",
            all(stacks)
        );
    };

    // Live. hotLoop is nearly all the script's time (its caller, the top-level loop, the rest).
    let w = node("600", true, false);
    let pid = w.pid().to_string();
    let stacks =
        parse_folded(&run_ok(&["profile", "-F", "999", "-U", "-f", "-p", &pid, "3"]).stdout);
    assert_hot(&stacks, "live");
    // trace's ustack, the innermost frame: `JS:*hotLoop ...+OFFSET`.
    let program = format!("profile:hz:999 /pid == {pid}/ {{ @[ustack(1), comm] = count(); }}");
    let out = run_ok(&["trace", "-d", "2", "-e", &program]);
    let entries = stack_key_entries(&String::from_utf8_lossy(&out.stdout));
    let total: u64 = entries.iter().map(|e| e.2).sum();
    let in_hot: u64 = entries
        .iter()
        .filter(|e| e.0.first().is_some_and(|f| f.starts_with("JS:*hotLoop ")))
        .map(|e| e.2)
        .sum();
    assert!(
        total > 500 && in_hot * 2 > total,
        "trace: {in_hot} of {total} in hotLoop: {entries:?}"
    );
    drop(w);
    let _ = std::fs::remove_file(format!("/tmp/perf-{pid}.map"));

    // Exits during the trace, its map deleted first: named from what was read while it lived.
    let w = node("3", true, true);
    let pid = w.pid();
    let out = run_ok(&[
        "profile",
        "-F",
        "999",
        "-U",
        "-f",
        "-p",
        &pid.to_string(),
        "30",
    ]);
    let stacks = parse_folded(&out.stdout);
    assert!(
        !std::path::Path::new(&format!("/tmp/perf-{pid}.map")).exists(),
        "the workload did not delete its map"
    );
    assert_hot(&stacks, "exited");
    drop(w);

    // No map: [jit], and no JS names.
    let w = node("600", false, false);
    let pid = w.pid().to_string();
    let stacks =
        parse_folded(&run_ok(&["profile", "-F", "999", "-U", "-f", "-p", &pid, "2"]).stdout);
    let (hot, jit) = jit_leaves(&stacks);
    assert!(
        hot == 0 && jit as f64 >= 0.8 * all(&stacks) as f64,
        "no map: {jit} of {} samples in [jit]: {stacks:?}",
        all(&stacks)
    );
}

/// A detached debug file installed under /usr/lib/debug/.build-id/ for the test's time (removed when
/// dropped, even if the test fails).
struct InstalledDebugFile(std::path::PathBuf);

impl Drop for InstalledDebugFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A stripped binary (no symbol table left) whose debug file is installed where Debian's -dbgsym
/// packages put them, /usr/lib/debug/.build-id/XX/REST.debug: its frames are named from that file;
/// without it, they are `[unknown] (file)`.
#[test]
fn stripped_binaries_are_named_from_their_installed_debug_files() {
    let Some(_lock) = bpf_test("stripped_binaries_are_named_from_their_installed_debug_files")
    else {
        return;
    };
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let (bin, debug) = (
        dir.join("inlined-stripped"),
        dir.join("inlined-stripped.debug"),
    );
    std::fs::copy(workload_nofp("inlined", false), &bin).expect("copying the workload");
    let run = |cmd: &str, args: &[&std::ffi::OsStr]| {
        let out = std::process::Command::new(cmd)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{cmd}: {e}"));
        assert!(out.status.success(), "{cmd} {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let keep = std::ffi::OsStr::new("--only-keep-debug");
    run("objcopy", &[keep, bin.as_os_str(), debug.as_os_str()]);
    run(
        "strip",
        &[std::ffi::OsStr::new("--strip-all"), bin.as_os_str()],
    );
    let notes = run("readelf", &[std::ffi::OsStr::new("-n"), bin.as_os_str()]);
    let id = notes
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))
        .unwrap_or_else(|| panic!("no build-id: {notes}"));
    let installed = std::path::Path::new("/usr/lib/debug/.build-id")
        .join(&id[..2])
        .join(format!("{}.debug", &id[2..]));
    std::fs::create_dir_all(installed.parent().expect("a directory")).expect("mkdir");
    std::fs::copy(&debug, &installed).expect("installing the debug file");
    let guard = InstalledDebugFile(installed);

    let w = Workload::start(&bin, &[]);
    let pid = w.pid().to_string();
    let profile =
        || parse_folded(&run_ok(&["profile", "-F", "499", "-U", "-f", "-p", &pid, "2"]).stdout);
    let named = profile();
    let total: u64 = named.iter().map(|(_, n)| n).sum();
    let in_caller = count_with(&named, &["main", "hash_caller"]);
    assert!(
        total > 500 && in_caller as f64 >= 0.9 * total as f64,
        "{in_caller} of {total} samples in main;hash_caller: {named:?}"
    );
    drop(guard);
    let unnamed = profile();
    assert_eq!(count_with(&unnamed, &["hash_caller"]), 0, "{unnamed:?}");
    assert!(
        count_with(&unnamed, &["[unknown] (inlined-stripped)"]) > 500,
        "{unnamed:?}"
    );
}
