//! The SVG renderers against golden files, without root: flame graphs (CPU, hot/cold), a differential
//! flame graph and a latency heat map, drawn by `bpfprof report` and `bpfprof diff` from the inputs in
//! tests/golden/ and compared byte for byte with the SVGs there. Colours are chosen by frame name, so the
//! same input gives the same bytes. After a deliberate change to a renderer:
//!
//!     BPFPROF_BLESS=1 cargo test --test integration golden
//!
//! rewrites the SVGs; review them (a browser opens them) and commit them with the change.
use std::path::{Path, PathBuf};

use crate::common::bpfprof;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Runs bpfprof in tests/golden (so that file names in subtitles are relative) with `args`, which write
/// `out` under the target directory, and compares it with tests/golden/`name`.
fn check(name: &str, args: &[&str]) {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("golden-{name}"));
    let mut argv: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    argv.push(out.to_string_lossy().into_owned());
    let run = bpfprof()
        .current_dir(golden_dir())
        .args(&argv)
        .output()
        .expect("running bpfprof");
    assert!(
        run.status.success(),
        "bpfprof {argv:?}: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let got = std::fs::read_to_string(&out).expect("the SVG written");
    let want_path = golden_dir().join(name);
    if std::env::var_os("BPFPROF_BLESS").is_some() {
        std::fs::write(&want_path, &got).expect("blessing");
        return;
    }
    let want = std::fs::read_to_string(&want_path)
        .unwrap_or_else(|e| panic!("{}: {e} (BPFPROF_BLESS=1 writes it)", want_path.display()));
    if got != want {
        let (n, (g, w)) = got
            .lines()
            .zip(want.lines())
            .enumerate()
            .find(|(_, (g, w))| g != w)
            .unwrap_or((
                got.lines().count().min(want.lines().count()),
                ("<end>", "<end>"),
            ));
        panic!(
            "{name} differs from {} at line {}:\n  got:  {g}\n  want: {w}\n(the whole output: {}; \
             BPFPROF_BLESS=1 rewrites the golden file after a deliberate change)",
            want_path.display(),
            n + 1,
            out.display()
        );
    }
    // Well-formed, as a browser needs it.
    let opts = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    roxmltree::Document::parse_with_options(&got, opts).expect("the SVG parses");
}

#[test]
fn golden_cpu_flame_graph() {
    check("cpu.svg", &["report", "cpu.folded", "--svg"]);
}

#[test]
fn golden_hotcold_flame_graph() {
    check("hotcold.svg", &["report", "hotcold.folded", "--svg"]);
}

#[test]
fn golden_differential_flame_graph() {
    check(
        "diff.svg",
        &["diff", "before.folded", "after.folded", "--svg"],
    );
}

#[test]
fn golden_latency_heat_map() {
    check("heatmap.svg", &["report", "biolatency.json", "--heatmap"]);
}
