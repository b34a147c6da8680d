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
    let file = temp("sleeps.pprof");
    let f = file.to_str().unwrap();
    let ((words, out), _) = unless_switches_unseen(|| {
        let mut w = Workload::start_gated(&workload("blocker"), &["sleep"]);
        let pid = w.pid().to_string();
        let args = ["offcpu", "-p", &pid, "-f", "--pprof", f];
        let tracer = Running::start(&args, &[], true, "Tracing off-CPU time (us) of PID");
        w.go();
        let words = w.line();
        let (out, stderr) = tracer.finish(true);
        ((words, out), stderr)
    });
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

/// The windows a continuous run left in `dir`, oldest first.
fn window_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("the --pprof-dir")
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".pb.gz"))
        .collect();
    files.sort();
    files
}

/// The samples a profile holds (`go tool pprof -raw`).
fn samples_in(path: &Path) -> i64 {
    let raw = go_pprof_raw(path);
    raw.samples.iter().map(|s| raw.value(s, "samples")).sum()
}

/// The `bpfprof: N samples, M in K windows` summary: (N, M, K).
fn continuous_summary(stderr: &str) -> (u64, u64, u64) {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("bpfprof: ") && l.ends_with(" windows") && l.contains(" in "))
        .unwrap_or_else(|| panic!("no summary: {stderr}"));
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    (nums[0], nums[1], nums[2])
}

#[test]
fn continuous_windows_abut_rotate_and_add_up() {
    let Some(_lock) = bpf_test("continuous_windows_abut_rotate_and_add_up") else {
        return;
    };
    let w = Workload::start(&workload("burn"), &["cpu", "600"]);
    let pid = w.pid().to_string();
    let dir = temp("windows");
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.to_str().unwrap();
    let secs = scaled_secs(5);
    let out = run_ok(&[
        "profile",
        "-p",
        &pid,
        "-F",
        "199",
        "--continuous",
        "--every",
        "500ms",
        "--pprof-dir",
        d,
        "--keep",
        "4",
        &secs.to_string(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let (counted, in_windows, windows) = continuous_summary(&stderr);
    // Every sample the programs counted is in exactly one window, and the run made one window per
    // 500 ms of its duration.
    assert_eq!(counted, in_windows, "{stderr}");
    assert_eq!(windows, secs * 2, "{stderr}");
    // Rotation: the last four remain, and they are windows 6..9 (of 0..9).
    let files = window_files(&dir);
    assert_eq!(files.len(), 4, "{files:?}");
    let last = (secs * 2 - 1) as usize;
    for (i, f) in files.iter().enumerate() {
        let want = format!("-{:06}.pb.gz", last - 3 + i);
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            name.starts_with("profile-") && name.ends_with(&want),
            "{f:?}"
        );
    }
    // Each window's file holds what the run said it held (its stderr line), and a burning thread is
    // sampled 199 times a second: ~99.5 per window. The count of a thread that has its CPU is not random;
    // what moves it is CPU time a busy 2-CPU machine takes from the workload: 60 % at least, and never
    // more than the clock allows.
    let per_window: HashMap<String, u64> = stderr
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("bpfprof: window ")?;
            let (_, rest) = rest.split_once(": ")?;
            let n: u64 = rest.split_whitespace().next()?.parse().ok()?;
            let file = rest.rsplit_once(": ")?.1.to_string();
            Some((file, n))
        })
        .collect();
    assert_eq!(per_window.len() as u64, windows, "{stderr}");
    for f in &files {
        let n = samples_in(f);
        assert_eq!(
            Some(&(n as u64)),
            per_window.get(&f.display().to_string()),
            "{f:?}"
        );
        assert!(
            (60..=101).contains(&n),
            "{f:?}: {n} samples in 500 ms at 199 Hz"
        );
    }
    // All the windows together: one long run's count of a burning thread, 199 per second.
    let expected = 199.0 * secs as f64;
    assert!(
        (in_windows as f64) <= expected * 1.01 && (in_windows as f64) >= expected * 0.7,
        "{in_windows} samples in {secs} s at 199 Hz"
    );
}

#[test]
fn continuous_memory_stays_flat_over_hundreds_of_windows() {
    let Some(_lock) = bpf_test("continuous_memory_stays_flat_over_hundreds_of_windows") else {
        return;
    };
    // 4096 distinct stacks, a storage for 1024: the stacks are forgotten and stored again many times.
    let w = Workload::start(&workload("manystacks"), &["600"]);
    let pid = w.pid().to_string();
    let dir = temp("rss-windows");
    let _ = std::fs::remove_dir_all(&dir);
    let args = [
        "profile",
        "-p",
        &pid,
        "-F",
        "999",
        "--stack-storage-size",
        "1024",
        "--continuous",
        "--every",
        "100ms",
        "--pprof-dir",
        dir.to_str().unwrap(),
        "--keep",
        "5",
        "40",
    ];
    let child = bpfprof()
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running bpfprof");
    let rss = |pid: u32| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let id = child.id();
    // RSS once a second. This debug build warms up (symbol caches, the allocator's per-thread arenas) in
    // steps of ~2-3 MiB for the first 20-55 s here, then stays put (a 150 s run: 61,388 kB from 55 s to
    // its end, 1,500 windows). A leak of what windows hold (stacks, names, profiles) would grow with
    // every window: the most of windows 250..400 is held to the most of windows 100..250 plus 4 MiB.
    let mut samples = Vec::new();
    for _ in 0..39 {
        std::thread::sleep(std::time::Duration::from_secs(1));
        samples.push(rss(id));
    }
    let early = samples[9..24].iter().copied().max().unwrap_or(0);
    let late = samples[24..].iter().copied().max().unwrap_or(0);
    let out = child.wait_with_output().expect("bpfprof");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let (counted, in_windows, windows) = continuous_summary(&stderr);
    assert_eq!(counted, in_windows, "{stderr}");
    assert_eq!(windows, 400, "{stderr}");
    assert_eq!(window_files(&dir).len(), 5);
    assert!(early > 0 && late > 0, "no RSS read: {samples:?}");
    assert!(
        late <= early + 4096,
        "RSS grew from at most {early} kB (windows 100..250) to {late} kB (250..400): {samples:?}"
    );
}

/// A stand-in for a Pyroscope server's `POST /ingest` (its documented HTTP API): answers 503 to the
/// first `fail_first` requests, then 200, and keeps each accepted request's query and `profile` part.
struct FakePyroscope {
    port: u16,
    got: std::sync::Arc<std::sync::Mutex<Vec<Ingested>>>,
}

/// An accepted push: its query parameters and its profile.
type Ingested = (HashMap<String, String>, Vec<u8>);

impl FakePyroscope {
    fn start(fail_first: usize) -> Self {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&got);
        std::thread::spawn(move || {
            let mut seen = 0;
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut writer = conn;
                // Requests on this connection, one after another (keep-alive).
                loop {
                    let mut request = String::new();
                    if reader.read_line(&mut request).unwrap_or(0) == 0 {
                        break;
                    }
                    let mut headers = HashMap::new();
                    loop {
                        let mut h = String::new();
                        reader.read_line(&mut h).unwrap();
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        let (k, v) = h.split_once(':').unwrap();
                        headers.insert(k.to_ascii_lowercase(), v.trim().to_string());
                    }
                    let len: usize = headers["content-length"].parse().unwrap();
                    let mut body = vec![0u8; len];
                    reader.read_exact(&mut body).unwrap();
                    seen += 1;
                    let status = match parse_ingest(&request, &headers, &body) {
                        Ok(_) if seen <= fail_first => "503 Service Unavailable",
                        Ok(entry) => {
                            sink.lock().unwrap().push(entry);
                            "200 OK"
                        }
                        Err(e) => {
                            eprintln!("fake pyroscope: bad request: {e}");
                            "400 Bad Request"
                        }
                    };
                    let _ = write!(writer, "HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
                }
            }
        });
        Self { port, got }
    }
}

/// Checks a request as Pyroscope's ingest API documents it: POST /ingest, name/from/until required,
/// format=pprof with the profile in a multipart form's `profile` part.
fn parse_ingest(
    request: &str,
    headers: &HashMap<String, String>,
    body: &[u8],
) -> Result<Ingested, String> {
    let target = request
        .strip_prefix("POST ")
        .and_then(|r| r.split_whitespace().next())
        .ok_or("not a POST")?;
    let (path, query) = target.split_once('?').ok_or("no query")?;
    if path != "/ingest" {
        return Err(format!("path {path}"));
    }
    let decode = |s: &str| -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'%' if i + 2 < bytes.len() => {
                    out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                    i += 3;
                }
                b'+' => {
                    out.push(b' ');
                    i += 1;
                }
                b => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8(out).unwrap()
    };
    let q: HashMap<String, String> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect();
    for required in ["name", "from", "until"] {
        if !q.contains_key(required) {
            return Err(format!("no {required}"));
        }
    }
    if q.get("format").map(String::as_str) != Some("pprof") {
        return Err("format is not pprof".into());
    }
    let ctype = headers.get("content-type").ok_or("no content type")?;
    let boundary = ctype
        .strip_prefix("multipart/form-data; boundary=")
        .ok_or("not multipart")?;
    let delim = format!("--{boundary}");
    let text = body;
    let find = |hay: &[u8], needle: &[u8], from: usize| {
        hay[from..]
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    };
    let start = find(text, delim.as_bytes(), 0).ok_or("no first boundary")?;
    let head_end = find(text, b"\r\n\r\n", start).ok_or("no part headers")?;
    let head = String::from_utf8_lossy(&text[start..head_end]);
    if !head.contains("name=\"profile\"") {
        return Err("no profile part".into());
    }
    let data_start = head_end + 4;
    let end = find(text, format!("\r\n{delim}").as_bytes(), data_start).ok_or("no end")?;
    Ok((q, text[data_start..end].to_vec()))
}

#[test]
fn continuous_pushes_reach_the_ingest_api_and_survive_its_failures() {
    let Some(_lock) = bpf_test("continuous_pushes_reach_the_ingest_api_and_survive_its_failures")
    else {
        return;
    };
    let w = Workload::start(&workload("burn"), &["cpu", "600"]);
    let pid = w.pid().to_string();
    // The server refuses the first two requests: the first window is pushed at its third attempt.
    let server = FakePyroscope::start(2);
    let url = format!("http://127.0.0.1:{}", server.port);
    let out = run_ok(&[
        "profile",
        "-p",
        &pid,
        "-F",
        "99",
        "--continuous",
        "--every",
        "1s",
        "--push",
        &url,
        "--service",
        "burnsvc",
        "--label",
        "env=test",
        "4",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let (counted, in_windows, windows) = continuous_summary(&stderr);
    assert_eq!((counted, windows), (in_windows, 4), "{stderr}");
    assert!(
        stderr.contains("pushed 4 windows (0 failed, 0 dropped"),
        "{stderr}"
    );
    let got = server.got.lock().unwrap().clone();
    assert_eq!(got.len(), 4);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let mut pushed = 0;
    for (i, (q, profile)) in got.iter().enumerate() {
        assert_eq!(
            q["name"],
            format!("burnsvc.cpu{{host={},env=test}}", host.trim())
        );
        assert_eq!(q["sampleRate"], "99");
        assert_eq!(q["spyName"], "bpfprof");
        let (from, until): (u64, u64) = (q["from"].parse().unwrap(), q["until"].parse().unwrap());
        assert!(from <= until && until - from <= 2, "{q:?}");
        let file = temp(&format!("pushed-{i}.pb.gz"));
        std::fs::write(&file, profile).unwrap();
        let raw = go_pprof_raw(&file);
        pushed += raw
            .samples
            .iter()
            .map(|s| raw.value(s, "samples"))
            .sum::<i64>();
        assert!(
            raw.samples
                .iter()
                .any(|s| s.frames.iter().any(|f| f == "hot_two_thirds")),
            "{raw:#?}"
        );
    }
    assert_eq!(pushed as u64, in_windows);

    // No server at all: every window is tried, dropped with a WARNING and counted, and the run still
    // ends on time (sampling never waits for the pusher).
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}", dead.local_addr().unwrap().port());
    drop(dead);
    let started = std::time::Instant::now();
    let out = run_ok(&[
        "profile",
        "-p",
        &pid,
        "--continuous",
        "--every",
        "1s",
        "--push",
        &url,
        "3",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("WARNING: window 0 not pushed"), "{stderr}");
    assert!(
        stderr.contains("pushed 0 windows (3 failed, 0 dropped"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3 + 15),
        "{stderr}"
    );
}

#[test]
fn offcpu_continuous_windows_hold_every_nap() {
    let Some(_lock) = bpf_test("offcpu_continuous_windows_hold_every_nap") else {
        return;
    };
    let dir = temp("offcpu-windows");
    let (words, stderr) = unless_switches_unseen(|| {
        let _ = std::fs::remove_dir_all(&dir);
        let mut w = Workload::start_gated(&workload("blocker"), &["sleep"]);
        let pid = w.pid().to_string();
        let args = [
            "offcpu",
            "-p",
            &pid,
            "--continuous",
            "--every",
            "300ms",
            "--pprof-dir",
            dir.to_str().unwrap(),
        ];
        let tracer = Running::start(&args, &[], true, "Tracing off-CPU time (us) of PID");
        w.go();
        let words = w.line();
        let (_, stderr) = tracer.finish(true);
        (words, stderr)
    });
    let us = |i: usize| -> i64 { words[i].parse().unwrap_or_else(|_| panic!("{words:?}")) };
    let (short, long) = (us(1), us(2));
    let (counted, in_windows, windows) = continuous_summary(&stderr);
    assert_eq!(counted, in_windows, "{stderr}");
    let files = window_files(&dir);
    assert_eq!(files.len() as u64, windows, "{stderr}");
    // 1.2 s of naps in 300 ms windows: they are spread over several, and add up to what the sleeper
    // measured, each nap counted once (a nap is counted in the window it ends in).
    let (mut short_ns, mut long_ns, mut short_n, mut long_n, mut with_naps) = (0, 0, 0, 0, 0);
    for f in &files {
        let raw = go_pprof_raw(f);
        let mut any = false;
        for s in &raw.samples {
            if preempted(&s.frames) {
                continue;
            }
            let (ns, n) = (raw.value(s, "offcpu"), raw.value(s, "blocks"));
            if has_run(&s.frames, &["nap_short", "sleep_phase", "main"]) {
                (short_ns, short_n, any) = (short_ns + ns, short_n + n, true);
            } else if has_run(&s.frames, &["nap_long", "sleep_phase", "main"]) {
                (long_ns, long_n, any) = (long_ns + ns, long_n + n, true);
            }
        }
        with_naps += i64::from(any);
    }
    assert_eq!((short_n, long_n), (20, 10), "{stderr}");
    assert!(with_naps >= 3, "naps in only {with_naps} windows: {stderr}");
    for (nap, ns, want) in [("nap_short", short_ns, short), ("nap_long", long_ns, long)] {
        let got = ns as f64 / 1000.0;
        assert!(
            got <= want as f64 * 1.005 && got >= want as f64 * 0.9,
            "{nap}: {got} us over the windows, the sleeper measured {want} us"
        );
    }
}

#[test]
fn continuous_refuses_bad_settings_in_one_line() {
    // Refused before anything is loaded: no root needed, nothing left attached.
    for args in [
        &["profile", "--continuous", "1"][..],
        &["profile", "--continuous", "--push", "https://p:4040", "1"],
        &["profile", "--continuous", "--push", "p:4040", "1"],
        &[
            "profile",
            "--continuous",
            "--pprof-dir",
            "/proc/no/such",
            "1",
        ],
        &[
            "profile",
            "--continuous",
            "--pprof-dir",
            "/tmp",
            "--every",
            "5h",
            "1",
        ],
        &[
            "profile",
            "--continuous",
            "--pprof-dir",
            "/tmp",
            "--every",
            "10ms",
            "1",
        ],
        &["profile", "--continuous", "--pprof-dir", "/tmp", "-f", "1"],
        &[
            "offcpu",
            "--continuous",
            "--pprof-dir",
            "/tmp",
            "--pprof",
            "x.pb.gz",
            "1",
        ],
        &[
            "offcpu",
            "--continuous",
            "--push",
            "http://p",
            "--label",
            "env",
            "1",
        ],
        &[
            "offcpu",
            "--continuous",
            "--push",
            "http://p",
            "--service",
            "a b",
            "1",
        ],
    ] {
        let out = bpfprof().args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("bpfprof: --"), "{args:?}: {err}");
    }
}

#[test]
fn continuous_mode_loads_and_its_windows_add_up_on_this_kernel() {
    // What differs between kernels: the programs' window arithmetic passes the verifier (it is dead
    // code, and not checked, without --continuous). Run by the VM suites too.
    let Some(_lock) = bpf_test("continuous_mode_loads_and_its_windows_add_up_on_this_kernel")
    else {
        return;
    };
    let burn = Workload::start(&workload("burn"), &["cpu", "600"]);
    let pipe = Workload::start(&workload("blocker"), &["pipe", "20"]);
    for (tool, pid) in [
        ("profile", burn.pid()),
        ("offcpu", pipe.pid()),
        ("offwake", pipe.pid()),
    ] {
        let dir = temp(&format!("kernel-windows-{tool}"));
        let _ = std::fs::remove_dir_all(&dir);
        let pid = pid.to_string();
        let out = run_ok(&[
            tool,
            "-p",
            &pid,
            "--continuous",
            "--every",
            "1s",
            "--pprof-dir",
            dir.to_str().unwrap(),
            "3",
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let (counted, in_windows, windows) = continuous_summary(&stderr);
        assert!(counted > 0, "{tool}: nothing counted: {stderr}");
        assert_eq!((in_windows, windows), (counted, 3), "{tool}: {stderr}");
        assert_eq!(window_files(&dir).len(), 3, "{tool}: {stderr}");
    }
}
