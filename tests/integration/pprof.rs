//! `--pprof` and `bpfprof report`: profiles read back by Go's own pprof tool (`go tool pprof -raw`, Debian's
//! golang-go), against the workloads whose stacks and times are known, and rendered again by `report`.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

/// One sample as `go tool pprof -raw` prints it: values, frames (innermost first), labels.
#[derive(Debug)]
struct RawSample {
    values: Vec<i64>,
    frames: Vec<String>,
    labels: HashMap<String, String>,
}

/// A profile as `go tool pprof -raw` reads it.
#[derive(Debug)]
struct Raw {
    sample_types: Vec<String>,
    period: i64,
    samples: Vec<RawSample>,
    /// (file, build-id) of each mapping.
    mappings: Vec<(String, String)>,
}

impl Raw {
    fn value(&self, s: &RawSample, kind: &str) -> i64 {
        let i = self
            .sample_types
            .iter()
            .position(|t| t == kind)
            .unwrap_or_else(|| panic!("no sample type {kind}: {:?}", self.sample_types));
        s.values[i]
    }
}

/// Runs `go tool pprof -raw` on a profile (no symbolization: the profile names its functions).
fn go_pprof_raw(path: &Path) -> Raw {
    let out = Command::new("go")
        .args(["tool", "pprof", "-raw", "-symbolize=none"])
        .arg(path)
        .output()
        .expect("running go tool pprof (golang-go: scripts/setup.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "go tool pprof -raw {}: {}\n{text}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    parse_raw(&text)
}

fn parse_raw(text: &str) -> Raw {
    #[derive(PartialEq)]
    enum Section {
        Head,
        Types,
        Samples,
        Locations,
        Mappings,
    }
    let mut section = Section::Head;
    let mut raw = Raw {
        sample_types: Vec::new(),
        period: 0,
        samples: Vec::new(),
        mappings: Vec::new(),
    };
    let mut sample_ids: Vec<Vec<u64>> = Vec::new();
    let mut locations: HashMap<u64, Vec<String>> = HashMap::new();
    let mut last_loc = 0;
    for line in text.lines() {
        let t = line.trim();
        match t {
            "Samples:" => {
                section = Section::Types;
                continue;
            }
            "Locations" => {
                section = Section::Locations;
                continue;
            }
            "Mappings" => {
                section = Section::Mappings;
                continue;
            }
            _ => {}
        }
        match section {
            Section::Head => {
                if let Some(p) = t.strip_prefix("Period: ") {
                    raw.period = p.parse().expect("period");
                }
            }
            Section::Types => {
                raw.sample_types = t
                    .split_whitespace()
                    .map(|ty| ty.split('/').next().unwrap().to_string())
                    .collect();
                section = Section::Samples;
            }
            Section::Samples => {
                let (head, rest) = t.split_once(':').expect("a sample line");
                let values: Option<Vec<i64>> =
                    head.split_whitespace().map(|v| v.parse().ok()).collect();
                match values {
                    Some(values) if !values.is_empty() => {
                        raw.samples.push(RawSample {
                            values,
                            frames: Vec::new(),
                            labels: HashMap::new(),
                        });
                        sample_ids.push(
                            rest.split_whitespace()
                                .map(|i| i.parse().expect("location id"))
                                .collect(),
                        );
                    }
                    _ => {
                        let s = raw.samples.last_mut().expect("labels follow a sample");
                        for kv in t.split("] ") {
                            let (k, v) = kv.split_once(":[").expect("key:[value]");
                            s.labels
                                .insert(k.to_string(), v.trim_end_matches(']').to_string());
                        }
                    }
                }
            }
            Section::Locations => {
                // `ID: 0xADDR [M=N] function file:line s=0`, then one line per function inlined there.
                let mut words = t.split_whitespace();
                let first = words.next().unwrap_or("");
                if let Some(id) = first.strip_suffix(':').and_then(|i| i.parse().ok()) {
                    last_loc = id;
                    let mut rest = words.skip(1).skip_while(|w| w.starts_with("M="));
                    let name = rest.next().unwrap_or("").to_string();
                    locations.entry(id).or_default().push(name);
                } else if !first.is_empty() {
                    locations
                        .entry(last_loc)
                        .or_default()
                        .push(first.to_string());
                }
            }
            Section::Mappings => {
                let words: Vec<&str> = t.split_whitespace().collect();
                if words.len() >= 3 {
                    raw.mappings
                        .push((words[2].to_string(), words[3].to_string()));
                }
            }
        }
    }
    for (s, ids) in raw.samples.iter_mut().zip(sample_ids) {
        s.frames = ids
            .iter()
            .flat_map(|id| locations.get(id).cloned().unwrap_or_default())
            .collect();
    }
    raw
}

/// The GNU build-id of an ELF file, in hex.
fn build_id(path: &Path) -> String {
    use object::Object;
    let data = std::fs::read(path).expect("reading the binary");
    let elf = object::File::parse(&*data).expect("an ELF file");
    let id = elf.build_id().expect("notes").expect("a build-id");
    id.iter().map(|b| format!("{b:02x}")).collect()
}

fn temp(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(name)
}

/// `bpfprof report FILE -f` as sorted folded lines.
fn report_folded(path: &Path) -> Vec<(Vec<String>, u64)> {
    let out = run_ok(&["report", path.to_str().unwrap(), "-f"]);
    let mut lines = parse_folded(&out.stdout);
    lines.sort();
    lines
}

fn sorted(mut lines: Vec<(Vec<String>, u64)>) -> Vec<(Vec<String>, u64)> {
    lines.sort();
    lines
}

#[test]
fn profile_pprof_has_the_split_the_build_ids_and_the_folded_lines() {
    let Some(_lock) = bpf_test("profile_pprof_has_the_split_the_build_ids_and_the_folded_lines")
    else {
        return;
    };
    let burn = workload("burn");
    let w = Workload::start(&burn, &["cpu", "600"]);
    let pid = w.pid().to_string();
    let file = temp("burn.pprof");
    let f = file.to_str().unwrap();
    let out = run_ok(&["profile", "-F", "999", "-f", "--pprof", f, "-p", &pid, "4"]);
    let folded = parse_folded(&out.stdout);
    let raw = go_pprof_raw(&file);

    assert_eq!(raw.sample_types, ["samples", "cpu"]);
    assert_eq!(raw.period, 1_000_000_000 / 999);
    let count = |chain: &[&str]| -> i64 {
        raw.samples
            .iter()
            .filter(|s| {
                let mut root_first = s.frames.clone();
                root_first.reverse();
                has_run(&root_first, chain)
            })
            .map(|s| raw.value(s, "samples"))
            .sum()
    };
    let two = count(&["main", "work_loop", "hot_two_thirds", "spin"]);
    let one = count(&["main", "work_loop", "hot_one_third", "spin"]);
    let total: i64 = raw.samples.iter().map(|s| raw.value(s, "samples")).sum();
    assert!(total >= 500, "too few samples ({total})");
    assert!(
        two + one >= total * 9 / 10,
        "{two} + {one} of {total}: {raw:#?}"
    );
    // As the profile test: 4 sd of the binomial ratio, never under 0.16.
    let n = (two + one) as f64;
    let tol = (4.0 * ((2.0 / 9.0) / n).sqrt() * 9.0).max(0.16);
    let ratio = two as f64 / one as f64;
    assert!(
        (ratio - 2.0).abs() <= tol,
        "{two}:{one} = {ratio:.3}, expected 2 +- {tol:.3}"
    );
    // The same samples as the folded output of the same run, each worth one period of CPU time.
    let folded_total: u64 = folded.iter().map(|(_, n)| n).sum();
    assert_eq!(total as u64, folded_total);
    for s in &raw.samples {
        assert_eq!(raw.value(s, "cpu"), raw.value(s, "samples") * raw.period);
        assert_eq!(s.labels.get("pid"), Some(&pid), "{s:?}");
        assert!(s.labels.contains_key("tid"), "{s:?}");
        assert_eq!(s.labels.get("comm").map(String::as_str), Some("burn"));
    }
    // The workload's binary first, with its build-id; libc's too; the kernel's mapping last.
    let burn_path = std::fs::canonicalize(&burn).unwrap();
    assert_eq!(
        raw.mappings.first(),
        Some(&(burn_path.display().to_string(), build_id(&burn))),
        "{:?}",
        raw.mappings
    );
    let libc = raw
        .mappings
        .iter()
        .find(|(f, _)| f.ends_with("/libc.so.6"))
        .unwrap_or_else(|| panic!("no libc mapping: {:?}", raw.mappings));
    assert_eq!(libc.1, build_id(Path::new(&libc.0)));
    // report gives back exactly the folded lines of the run.
    assert_eq!(report_folded(&file), sorted(folded));
}

#[test]
fn offcpu_pprof_holds_the_sleeps_as_measured() {
    let Some(_lock) = bpf_test("offcpu_pprof_holds_the_sleeps_as_measured") else {
        return;
    };
    let mut w = Workload::start_gated(&workload("blocker"), &["sleep"]);
    let pid = w.pid().to_string();
    let file = temp("sleeps.pprof");
    let f = file.to_str().unwrap();
    let args = ["offcpu", "-p", &pid, "-f", "--pprof", f];
    let tracer = Running::start(&args, &[], true, "Tracing off-CPU time (us) of PID");
    w.go();
    let words = w.line();
    let (out, _) = tracer.finish(true);
    let us = |i: usize| -> i64 { words[i].parse().unwrap_or_else(|_| panic!("{words:?}")) };
    let (short, long) = (us(1), us(2));
    let raw = go_pprof_raw(&file);
    assert_eq!(raw.sample_types, ["blocks", "offcpu"]);
    let naps = |nap: &str| -> (i64, i64) {
        raw.samples
            .iter()
            .filter(|s| has_run(&s.frames, &[nap, "sleep_phase", "main"]) && !preempted(&s.frames))
            .inspect(|s| {
                assert!(has_run(&s.frames, &["schedule", "do_nanosleep"]), "{s:?}");
                assert_eq!(s.labels.get("comm").map(String::as_str), Some("sleeper"));
            })
            .fold((0, 0), |(ns, n), s| {
                (ns + raw.value(s, "offcpu"), n + raw.value(s, "blocks"))
            })
    };
    // Within 10 % below what the sleeper measured, never above (the offcpu test's bounds), and every nap.
    for (nap, (ns, n), want_us, want_n) in [
        ("nap_short", naps("nap_short"), short, 20),
        ("nap_long", naps("nap_long"), long, 10),
    ] {
        let got_us = ns as f64 / 1000.0;
        assert!(
            got_us <= want_us as f64 * 1.005 && got_us >= want_us as f64 * 0.9,
            "{nap}: {got_us} us in the profile, the sleeper measured {want_us} us"
        );
        assert_eq!(n, want_n, "{nap}: blocks");
    }
    // report gives back exactly the folded lines (microseconds) of the run.
    assert_eq!(report_folded(&file), sorted(parse_folded(out.as_bytes())));
}

#[test]
fn wakeup_and_offwake_pprof_name_both_threads() {
    let Some(_lock) = bpf_test("wakeup_and_offwake_pprof_name_both_threads") else {
        return;
    };
    let w = Workload::start(&workload("blocker"), &["pipe", "20"]);
    let pid = w.pid().to_string();
    for tool in ["wakeup", "offwake"] {
        let file = temp(&format!("{tool}.pprof"));
        let f = file.to_str().unwrap();
        let out = run_ok(&[tool, "-p", &pid, "-f", "--pprof", f, "2"]);
        let raw = go_pprof_raw(&file);
        // The reader's waits, woken by the writer in wake_reader.
        let woken: Vec<&RawSample> = raw
            .samples
            .iter()
            .filter(|s| s.labels.get("target_comm").map(String::as_str) == Some("reader"))
            .filter(|s| s.frames.iter().any(|f| f == "wake_reader"))
            .collect();
        assert!(
            !woken.is_empty(),
            "{tool}: no reader woken in wake_reader: {raw:#?}"
        );
        for s in &woken {
            assert_eq!(
                s.labels.get("waker_comm").map(String::as_str),
                Some("writer"),
                "{s:?}"
            );
            assert_eq!(s.labels.get("waker_pid"), Some(&pid), "{s:?}");
            if tool == "offwake" {
                assert_eq!(s.labels.get("pid"), Some(&pid), "{s:?}");
                // The waker's half stands upside down on the blocked one (bcc's layout): innermost
                // first, it reads from the waker's root to its wakeup.
                assert!(has_run(&s.frames, &["writer_loop", "wake_reader"]), "{s:?}");
                assert!(s.frames.iter().any(|f| f == "wait_for_data"), "{s:?}");
            }
        }
        let blocked: i64 = woken.iter().map(|s| raw.value(s, "offcpu")).sum();
        assert!(
            blocked > 1_000_000_000,
            "{tool}: {blocked} ns blocked in 2 s"
        );
        assert_eq!(
            report_folded(&file),
            sorted(parse_folded(&out.stdout)),
            "{tool}"
        );
    }
}

#[test]
fn report_draws_flame_graphs_and_refuses_what_is_not_a_profile() {
    // Needs no BPF: profiles written here, by hand.
    let folded = temp("hand.folded");
    std::fs::write(&folded, "burn;main;spin 3\nburn;main;idle 1\n").unwrap();
    let svg = temp("hand.svg");
    let out = run_ok(&[
        "report",
        folded.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 stacks, 4 samples in all"));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("spin") && text.contains("idle") && text.trim_end().ends_with("</svg>"));
    let out = run_ok(&["report", folded.to_str().unwrap(), "--text"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "    idle\n    main\n    -                burn\n        1\n\n    spin\n    main\n    -                burn\n        3\n\n"
    );
    // Not a profile, no such file, a gzip of something else: one line, non-zero exit.
    let junk = temp("junk.pprof");
    std::fs::write(&junk, [0xffu8; 64]).unwrap();
    let gz = temp("junk.gz");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("echo hello | gzip > {}", gz.display()))
        .status()
        .unwrap();
    assert!(status.success());
    for bad in [&junk, &gz, &temp("nonexistent.pprof")] {
        let out = bpfprof()
            .args(["report", bad.to_str().unwrap(), "-f"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad:?}");
        assert_eq!(err.lines().count(), 1, "{bad:?}: {err}");
        assert!(err.starts_with("bpfprof: "), "{err}");
    }
}
