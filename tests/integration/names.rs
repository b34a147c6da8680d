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
