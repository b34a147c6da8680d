//! biolatency against real block I/O: a loop device made for each test and a workload that issues a known
//! number of O_DIRECT reads and writes to it, one request each (tests/workloads/directio.c).
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::{
    assert_nothing_left_attached, bpf_test, bpfprof, workload, LoopDevice, Running, Workload,
};

/// The directio workload on a device, gated: it issues its I/O after `go`.
fn io_workload(dev: &LoopDevice, reads: u32, writes: u32, batches: u32) -> Workload {
    io_workload_fsync(dev, reads, writes, batches, 0)
}

/// The same, with `fsyncs` flushes at the end.
fn io_workload_fsync(
    dev: &LoopDevice,
    reads: u32,
    writes: u32,
    batches: u32,
    fsyncs: u32,
) -> Workload {
    Workload::start_gated(
        &workload("directio"),
        &[
            &dev.dev,
            &reads.to_string(),
            &writes.to_string(),
            &batches.to_string(),
            &fsyncs.to_string(),
        ],
    )
}

const HEADER: &str = "Tracing block device I/O... Hit Ctrl-C to end.";

/// A running `bpfprof biolatency` (BPFPROF_HOOKS=`hooks` if given), attached: its header is read from
/// stdout, or stderr with -j.
fn tracer(args: &[&str], hooks: Option<&str>) -> Running {
    let mut argv = vec!["biolatency"];
    argv.extend_from_slice(args);
    let env: Vec<(&str, &str)> = hooks.map(|h| ("BPFPROF_HOOKS", h)).into_iter().collect();
    let r = Running::start(&argv, &env, args.contains(&"-j"), HEADER);
    assert_eq!(r.header.trim_end(), HEADER);
    r
}

/// One histogram of bcc's text layout: its `disk = ..`/`flags = ..` label and its rows (low, high, count).
#[derive(Debug, Default)]
struct Section {
    label: Option<String>,
    rows: Vec<(u64, u64, u64)>,
}

impl Section {
    fn total(&self) -> u64 {
        self.rows.iter().map(|r| r.2).sum()
    }
}

/// Parses bcc's biolatency text (log2 or linear rows), a section per histogram.
fn parse_text(text: &str) -> Vec<Section> {
    let mut sections: Vec<Section> = Vec::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("disk = ") || t.starts_with("flags = ") {
            sections.push(Section {
                label: Some(t.to_string()),
                rows: Vec::new(),
            });
        } else if t.starts_with("usecs ") || t.starts_with("msecs ") {
            if sections.last().map_or(true, |s| !s.rows.is_empty()) {
                sections.push(Section::default());
            }
        } else if let Some((range, rest)) = t.split_once(" : ") {
            let count: u64 = rest
                .split_whitespace()
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or_else(|| panic!("bad row: {line}"));
            let (low, high) = match range.split_once(" -> ") {
                Some((l, h)) => (l.trim().parse().unwrap(), h.trim().parse().unwrap()),
                // Linear rows: the bucket's low end, or <MIN / >=MAX.
                None => {
                    let r = range
                        .trim()
                        .trim_start_matches(">=")
                        .trim_start_matches('<');
                    let v = r.parse().unwrap_or_else(|_| panic!("bad row: {line}"));
                    (v, v)
                }
            };
            sections
                .last_mut()
                .expect("a row before any header")
                .rows
                .push((low, high, count));
        }
    }
    sections
}

/// The count of bcc's -e line (`avg = .. usecs, total: .. usecs, count: N`).
fn extension_count(text: &str) -> u64 {
    let line = text
        .lines()
        .find(|l| l.starts_with("avg = "))
        .unwrap_or_else(|| panic!("no -e line in:\n{text}"));
    line.rsplit("count: ")
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("bad -e line: {line}"))
}

#[test]
fn biolatency_counts_every_read_and_write_by_flags_with_either_hook() {
    let Some(_lock) = bpf_test("biolatency_counts_every_read_and_write_by_flags") else {
        return;
    };
    for hooks in ["tp_btf", "raw_tp"] {
        let dev = LoopDevice::new("flags");
        let mut w = io_workload(&dev, 300, 100, 1);
        let tracer = tracer(&["-F", "-e", "-d", dev.name()], Some(hooks));
        w.go();
        w.wait();
        let (out, err) = tracer.finish(true);
        let sections = parse_text(&out);
        let sum_of = |op: &str| -> u64 {
            sections
                .iter()
                .filter(|s| s.label.as_deref().is_some_and(|l| l.ends_with(op)))
                .map(Section::total)
                .sum()
        };
        // Exactly the workload's requests: one per 4 KiB O_DIRECT read or write, nothing else on this disk.
        assert_eq!(sum_of("Read"), 300, "{hooks}: reads in:\n{out}");
        assert_eq!(sum_of("Write"), 100, "{hooks}: writes in:\n{out}");
        assert!(
            sections.iter().all(|s| s.label.as_deref().is_some_and(
                |l| l.starts_with("flags = ") && (l.ends_with("Read") || l.ends_with("Write"))
            )),
            "{hooks}: unexpected sections in:\n{out}"
        );
        assert_eq!(extension_count(&out), 400, "{hooks}");
        assert!(
            err.contains("bpfprof: 400 I/Os timed"),
            "{hooks}: stderr: {err}"
        );
        assert!(!err.contains("WARNING"), "{hooks}: stderr: {err}");
    }
    assert_nothing_left_attached();
}

/// Runs three tracers over the same I/O at once: text, JSON, and JSON with -Q. The I/O ends with 20
/// fsyncs: without -Q each counts as the kernel's flush request, with -Q as the caller's request (once:
/// the kernel's flush request for it is not counted again).
#[test]
fn biolatency_json_agrees_with_text_and_queued_time_is_not_shorter() {
    let Some(_lock) = bpf_test("biolatency_json_agrees_with_text") else {
        return;
    };
    let dev = LoopDevice::new("json");
    let mut w = io_workload_fsync(&dev, 200, 200, 1, 20);
    let text = tracer(&["-e", "-d", dev.name()], None);
    let json = tracer(&["-j", "-d", dev.name()], None);
    let queued = tracer(&["-j", "-Q", "-d", dev.name()], None);
    // json's twin, attached after -Q's: how far program order alone moves a total (below).
    let twin = tracer(&["-j", "-d", dev.name()], None);
    w.go();
    w.wait();
    let (text_out, _) = text.finish(true);
    let (json_out, _) = json.finish(true);
    let (queued_out, _) = queued.finish(true);
    let (twin_out, _) = twin.finish(true);

    let sections = parse_text(&text_out);
    assert_eq!(sections.len(), 1, "{text_out}");
    assert_eq!(sections[0].total(), 420, "{text_out}");
    assert_eq!(extension_count(&text_out), 420);

    let parse = |out: &str| -> Value {
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "one JSON line per interval: {out}");
        serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{e}: {out}"))
    };
    let j = parse(&json_out);
    assert_eq!(j["val_type"], "usecs");
    assert!(j["ts"].is_string());
    assert_eq!(j["count"], 420, "{json_out}");
    let data = j["data"].as_array().expect("data");
    // Both programs stamp each request at the same tracepoints, one after the other: the second's clock
    // starts and stops later by the first's run time (a few hundred ns; the completion program does more,
    // so the offset does not cancel). An I/O that close to a bucket edge lands in the neighbour: with
    // 4-8 us loop I/Os, 0-6% of them were seen to move. Totals and rows must agree exactly; bucket counts
    // may differ by such moves, at most 15% of the I/Os. (Renderings of one histogram are compared exactly
    // by the unit tests.)
    let rows = &sections[0].rows;
    let mut moved = 0;
    for (row, d) in rows.iter().zip(data) {
        assert_eq!(d["interval-start"], row.0, "{json_out}\n{text_out}");
        assert_eq!(d["interval-end"], row.1, "{json_out}\n{text_out}");
        moved += d["count"].as_u64().unwrap().abs_diff(row.2);
    }
    assert!(
        rows.len().abs_diff(data.len()) <= 1,
        "{json_out}\n{text_out}"
    );
    // Each move takes one from a bucket and adds one to its neighbour.
    let moves = moved / 2;
    assert!(moves <= 63, "{moves} I/Os moved:\n{json_out}\n{text_out}");

    // -Q starts each request's clock when the OS first sees it, before its issue: never less in total,
    // but for program order: each tracer's programs run after the earlier tracers' at both ends of an I/O,
    // shifting its interval by their run times (under emulation ~10 us an I/O, on 6.1 where most requests
    // are stamped at their issue either way: -Q measured 104006 us to 108006). The twin, identical to
    // json but attached after -Q, measures that shift; -Q may fall short of json by no more.
    let q = parse(&queued_out);
    assert_eq!(q["count"], 420, "each request once with -Q: {queued_out}");
    let t = parse(&twin_out);
    assert_eq!(t["count"], 420, "{twin_out}");
    let (sum, qsum) = (j["sum"].as_u64().unwrap(), q["sum"].as_u64().unwrap());
    let order = t["sum"].as_u64().unwrap().abs_diff(sum);
    assert!(
        qsum + order >= sum,
        "-Q total {qsum} us is below {sum} us by more than program order moves a total ({order} us)"
    );
}

#[test]
fn biolatency_intervals_add_up_to_every_io_per_disk() {
    let Some(_lock) = bpf_test("biolatency_intervals_add_up") else {
        return;
    };
    let dev = LoopDevice::new("intervals");
    // Five rounds 300 ms apart: the I/O spans 1.2 s, so it straddles at least one 1 s interval's end.
    let mut w = io_workload(&dev, 250, 150, 5);
    let tracer = tracer(&["-D", "-T", "1", "4"], None);
    w.go();
    w.wait();
    let (out, err) = tracer.finish(false);
    // Each interval starts with its -T line (HH:MM:SS).
    let mut chunks: Vec<String> = Vec::new();
    for line in out.lines() {
        let b = line.as_bytes();
        if b.len() == 8 && b[2] == b':' && b[5] == b':' {
            chunks.push(String::new());
        } else if let Some(c) = chunks.last_mut() {
            c.push_str(line);
            c.push('\n');
        }
    }
    assert_eq!(chunks.len(), 4, "one -T line per interval:\n{out}");
    let label = format!("disk = {}", dev.name());
    let per_interval: Vec<u64> = chunks
        .iter()
        .map(|chunk| {
            parse_text(chunk)
                .iter()
                .filter(|s| s.label.as_deref() == Some(label.as_str()))
                .map(Section::total)
                .sum()
        })
        .collect();
    assert_eq!(
        per_interval.iter().sum::<u64>(),
        400,
        "{per_interval:?}\n{out}"
    );
    assert!(
        per_interval.iter().filter(|&&n| n > 0).count() >= 2,
        "{per_interval:?}\n{out}"
    );
    assert!(err.contains("I/Os timed"), "{err}");
}

#[test]
fn biolatency_linear_buckets_and_summary() {
    let Some(_lock) = bpf_test("biolatency_linear_buckets_and_summary") else {
        return;
    };
    let dev = LoopDevice::new("linear");
    let mut w = io_workload(&dev, 150, 0, 1);
    let tracer = tracer(&["--linear", "0,1000,50", "-s", "-d", dev.name()], None);
    w.go();
    w.wait();
    let (out, err) = tracer.finish(true);
    assert!(
        out.contains("     usecs         : count     distribution\n"),
        "{out}"
    );
    let sections = parse_text(&out);
    assert_eq!(sections.len(), 1, "{out}");
    // Every completion of the disk is counted or reported. Twice in ~60 runs (each time the first run
    // after a build) one of these 150 reads completed without its issue stamp and was reported as issued
    // before tracing began; the cause is not found yet (see the closing note of issue 4's stop).
    let unstamped: u64 = err
        .lines()
        .find_map(|l| l.strip_prefix("NOTE: "))
        .and_then(|l| l.split_whitespace().next())
        .map_or(0, |n| n.parse().expect("a count"));
    assert_eq!(sections[0].total() + unstamped, 150, "{out}\nstderr: {err}");
    assert!(
        sections[0].rows.iter().all(|r| r.0 % 50 == 0),
        "linear rows are multiples of 50:\n{out}"
    );
    let summary = out
        .lines()
        .find(|l| l.starts_with("summary: "))
        .unwrap_or_else(|| panic!("no summary in:\n{out}"));
    assert!(summary.starts_with("summary: count 150, avg "), "{summary}");
    assert!(
        summary.contains(", p50 ~") && summary.ends_with(" usecs"),
        "{summary}"
    );
}

/// A cgroup v2 directory made for a test, removed when dropped (after its processes have exited). Where no
/// cgroup v2 hierarchy is mounted, one is mounted for the test (and unmounted after).
struct TestCgroup {
    dir: PathBuf,
    mounted: Option<PathBuf>,
}

impl TestCgroup {
    fn new() -> Self {
        let mounts = std::fs::read_to_string("/proc/mounts").expect("/proc/mounts");
        let found = mounts.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && f[2] == "cgroup2").then(|| PathBuf::from(f[1]))
        });
        let mut mounted = None;
        let root = found.unwrap_or_else(|| {
            let at = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cgroup2");
            std::fs::create_dir_all(&at).expect("a mount point");
            let ok = Command::new("mount")
                .args(["-t", "cgroup2", "none"])
                .arg(&at)
                .status()
                .expect("running mount");
            assert!(ok.success(), "mounting cgroup2 at {}", at.display());
            mounted = Some(at.clone());
            at
        });
        let dir = root.join(format!("bpfprof-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating a test cgroup");
        Self { dir, mounted }
    }

    fn add(&self, pid: u32) {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string())
            .expect("moving into the cgroup");
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
        if let Some(at) = &self.mounted {
            let _ = Command::new("umount").arg(at).status();
        }
    }
}

#[test]
fn biolatency_cgroup_filter_counts_only_that_cgroups_io() {
    let Some(_lock) = bpf_test("biolatency_cgroup_filter") else {
        return;
    };
    let dev = LoopDevice::new("cgroup");
    let cg = TestCgroup::new();
    let cg_path = cg.dir.to_string_lossy().into_owned();
    // From the issue to the device, and (-Q) from when the OS first sees a request: either way a request
    // is the cgroup's if a task of it made it, wherever it is issued (before 6.5, a worker issues the
    // writes of a plug flushed when its submitter sleeps).
    for queued in [false, true] {
        let mut inside = io_workload(&dev, 120, 80, 1);
        let mut outside = io_workload(&dev, 70, 0, 1);
        cg.add(inside.pid());
        let mut args = vec!["-c", cg_path.as_str(), "-d", dev.name()];
        if queued {
            args.push("-Q");
        }
        let tracer = tracer(&args, None);
        inside.go();
        outside.go();
        inside.wait();
        outside.wait();
        let (out, _) = tracer.finish(true);
        let sections = parse_text(&out);
        assert_eq!(sections.len(), 1, "{args:?}: {out}");
        assert_eq!(
            sections[0].total(),
            200,
            "{args:?}: only the 200 I/Os from inside the cgroup:\n{out}"
        );
    }
}

#[test]
fn biolatency_bad_input_gives_one_line_and_nonzero_exit() {
    let cases: &[(&[&str], &str)] = &[
        (&["-d", "nosuchdisk"], "no such disk: nosuchdisk"),
        (&["0"], "interval must be at least 1 second"),
        (&["1", "0"], "count must be at least 1"),
        (&["abc"], "invalid value 'abc'"),
        (&["-c", "/tmp"], "/tmp is not a cgroup v2 directory"),
        (
            &["-c", "/no/such/cgroup"],
            "no such cgroup: /no/such/cgroup",
        ),
        (
            &["--linear", "0,10,3"],
            "MAX - MIN must be a multiple of STEP",
        ),
        (&["--linear", "0,100000,1"], "at most 126"),
    ];
    for (args, want) in cases {
        let out = bpfprof()
            .arg("biolatency")
            .args(*args)
            .output()
            .expect("running bpfprof");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        if !want.starts_with("invalid value") {
            assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        }
    }
}

/// The histogram rows of a bpftrace hist (`[64, 128)  12 |@@@|`, `[1K, 2K)`, `[0]`), as (low, count).
fn bpftrace_hist_rows(text: &str) -> Vec<(u64, u64)> {
    let num = |s: &str| -> u64 {
        let s = s.trim();
        let (digits, unit) = match s.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
            Some((i, c)) => (&s[..i], c),
            None => (s, ' '),
        };
        let n: u64 = digits.parse().unwrap_or_else(|_| panic!("bad bound {s:?}"));
        let shift = match unit {
            'K' => 10,
            'M' => 20,
            'G' => 30,
            _ => 0,
        };
        n << shift
    };
    text.lines()
        .filter(|l| l.starts_with('['))
        .map(|l| {
            let close = l.find([')', ']']).expect("a closed label");
            let low = l[1..close].split(',').next().expect("a bound");
            let count: u64 = l[close + 1..]
                .split_whitespace()
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or_else(|| panic!("bad row {l:?}"));
            (num(low), count)
        })
        .collect()
}

/// tools/biolatency.bt, run by trace, against the canned tool and against bpftrace running the same
/// script on the same I/O: all three time exactly the workload's 400 requests on the disk (the script takes the disk's dev_t as $1), and their histograms
/// agree bucket by bucket, but for requests that land across a bucket edge (the two stamp a request a few
/// hundred ns apart): up to 15 % of the requests, as the JSON/-Q test allows.
#[test]
fn biolatency_bt_agrees_with_the_canned_tool() {
    let Some(_lock) = bpf_test("biolatency_bt_agrees_with_the_canned_tool") else {
        return;
    };
    let dev = LoopDevice::new("bt");
    let numbers = std::fs::read_to_string(format!("/sys/block/{}/dev", dev.name()))
        .expect("the loop device's numbers");
    let (major, minor) = numbers.trim().split_once(':').expect("MAJOR:MINOR");
    let dev_t = (major.parse::<u64>().unwrap() << 20) | minor.parse::<u64>().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/biolatency.bt");
    let mut w = io_workload(&dev, 300, 100, 1);
    let bt = Running::start(
        &["trace", script.to_str().unwrap(), &dev_t.to_string()],
        &[],
        false,
        "Attaching 4 probes...",
    );
    let canned = tracer(&["-d", dev.name()], None);
    // And bpftrace itself, on the same script (where it can compile it).
    let dev_arg = dev_t.to_string();
    let bpftrace = crate::common::bpftrace_beside(
        &[script.to_str().unwrap(), &dev_arg],
        "Attaching 4 probes...",
        "Tracing block device I/O",
    );
    w.go();
    w.wait();
    let (canned_out, canned_err) = canned.finish(true);
    let (bt_out, bt_err) = bt.finish(true);
    let theirs = bpftrace.map(|b| b.finish(true).0);
    assert!(bt_out.contains(HEADER), "{bt_out}");
    let bt_rows = bpftrace_hist_rows(&bt_out);
    let canned_rows: Vec<(u64, u64)> = parse_text(&canned_out)
        .iter()
        .flat_map(|s| s.rows.iter().map(|r| (r.0, r.2)))
        .collect();
    let total = |rows: &[(u64, u64)]| rows.iter().map(|r| r.1).sum::<u64>();
    assert_eq!(total(&bt_rows), 400, "{bt_out}\n{bt_err}");
    assert_eq!(total(&canned_rows), 400, "{canned_out}\n{canned_err}");
    // bcc's first row, 0 -> 1, is bpftrace's [0] and [1].
    let by_low = |rows: &[(u64, u64)]| {
        let mut m = std::collections::BTreeMap::new();
        for &(low, n) in rows {
            *m.entry(if low <= 1 { 0 } else { low }).or_insert(0u64) += n;
        }
        m
    };
    let moved = |a: &std::collections::BTreeMap<u64, u64>,
                 b: &std::collections::BTreeMap<u64, u64>| {
        a.keys()
            .chain(b.keys())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .map(|k| a.get(k).unwrap_or(&0).abs_diff(*b.get(k).unwrap_or(&0)))
            .sum::<u64>()
            / 2
    };
    let n = moved(&by_low(&bt_rows), &by_low(&canned_rows));
    assert!(
        n <= 60,
        "{n} of 400 requests in other buckets:\n{bt_out}\n{canned_out}"
    );
    // bpftrace's run of the same script: the same 400 requests, in the same layout, its buckets as ours
    // but for the requests near an edge.
    if let Some(theirs) = theirs {
        let their_rows = bpftrace_hist_rows(&theirs);
        assert_eq!(total(&their_rows), 400, "bpftrace's: {theirs}");
        let n = moved(&by_low(&bt_rows), &by_low(&their_rows));
        assert!(
            n <= 60,
            "{n} of 400 requests in other buckets:\n{bt_out}\n{theirs}"
        );
    }
}

/// A cgroup whose tasks' reads of one disk are throttled to some a second: cgroup v1's blkio controller
/// where it is mounted (this machine), else cgroup v2's io.max.
struct ThrottledCgroup {
    dir: PathBuf,
}

impl ThrottledCgroup {
    fn new(disk: &str, read_iops: u32) -> Self {
        let mounts = std::fs::read_to_string("/proc/mounts").expect("/proc/mounts");
        let v1 = mounts.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 3 && f[2] == "cgroup" && f[3].split(',').any(|o| o == "blkio"))
                .then(|| PathBuf::from(f[1]))
        });
        let (root, file, line) = match v1 {
            Some(root) => (
                root,
                "blkio.throttle.read_iops_device",
                format!("{disk} {read_iops}"),
            ),
            None => {
                let root = mounts
                    .lines()
                    .find_map(|l| {
                        let f: Vec<&str> = l.split_whitespace().collect();
                        (f.len() > 2 && f[2] == "cgroup2").then(|| PathBuf::from(f[1]))
                    })
                    .expect("neither a cgroup v1 blkio nor a cgroup2 mount");
                let _ = std::fs::write(root.join("cgroup.subtree_control"), "+io");
                (root, "io.max", format!("{disk} riops={read_iops}"))
            }
        };
        let dir = root.join(format!("bpfprof-throttle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating a test cgroup");
        std::fs::write(dir.join(file), &line)
            .unwrap_or_else(|e| panic!("{}: {line}: {e}", dir.join(file).display()));
        Self { dir }
    }

    fn add(&self, pid: u32) {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string())
            .expect("moving into the cgroup");
    }
}

impl Drop for ThrottledCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// A heat map's cells: (column, bucket low, count), from their titles `LABEL, LO-HI usecs: N I/Os`, and
/// the columns' labels in order.
fn heat_cells(svg: &str) -> (Vec<String>, Vec<(usize, u64, u64)>) {
    let opts = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(svg, opts).expect("the heat map parses");
    let mut labels = Vec::new();
    let mut cells = Vec::new();
    for (i, g) in doc
        .descendants()
        .filter(|n| n.has_tag_name("g") && n.attribute("class") == Some("column"))
        .enumerate()
    {
        labels.push(g.attribute("data-label").unwrap_or("").to_string());
        for t in g.descendants().filter(|n| n.has_tag_name("title")) {
            let text = t.text().unwrap_or("");
            let (head, count) = text.rsplit_once(": ").expect("LABEL, RANGE: N I/Os");
            let n: u64 = count.trim_end_matches(" I/Os").parse().expect("a count");
            let range = head.rsplit_once(", ").expect("LABEL, RANGE").1;
            let lo: u64 = range
                .split(['-', ' '])
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no bucket in {text:?}"));
            cells.push((i, lo, n));
        }
    }
    (labels, cells)
}

/// 100 reads at full speed, then 40 from a cgroup whose reads of the disk under the loop device are
/// throttled to 20 a second (the first ~20 pass at once, the rest wait ~0.1 s each): the heat map has a
/// column per 500 ms, its cells add up to the 140 reads, the fast mode comes first and the slow one
/// (>= 16 ms) after it; the same run's -j output drawn by `report --heatmap` adds up the same.
#[test]
fn biolatency_heatmap_shows_two_latency_modes_in_their_phases() {
    let Some(_lock) = bpf_test("biolatency_heatmap") else {
        return;
    };
    let dev = LoopDevice::direct("heat");
    let cg = ThrottledCgroup::new(&dev.backing_disk(), 20);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let (svg, json, json_svg) = (
        dir.join("bio-heat.svg"),
        dir.join("bio-heat.json"),
        dir.join("bio-heat-json.svg"),
    );
    let args = [
        "-d",
        dev.name(),
        "-j",
        "--heatmap",
        svg.to_str().unwrap(),
        "--heatmap-interval",
        "500ms",
        "1",
    ];
    let tracer = tracer(&args, None);
    // The columns begin before the header is printed: this clock starts later, and the column it puts
    // the end of the fast phase in is at most the one the heat map does.
    let t0 = std::time::Instant::now();
    let mut fast = io_workload(&dev, 100, 0, 4);
    fast.go();
    fast.wait();
    let fast_end_col = (t0.elapsed().as_secs_f64() / 0.5).floor() as usize;
    let mut slow = io_workload(&dev, 40, 0, 1);
    cg.add(slow.pid());
    slow.go();
    slow.wait();
    let (out, err) = tracer.finish(true);

    let (labels, cells) = heat_cells(&std::fs::read_to_string(&svg).unwrap());
    for (i, l) in labels.iter().enumerate() {
        let want = format!("{:.1}-{:.1} s", i as f64 * 0.5, (i + 1) as f64 * 0.5);
        assert_eq!(*l, want, "columns: {labels:?}");
    }
    let secs: f64 = err
        .lines()
        .find_map(|l| l.strip_prefix("bpfprof: 140 I/Os timed in "))
        .and_then(|r| r.trim_end_matches(" s").parse().ok())
        .unwrap_or_else(|| panic!("not 140 I/Os timed: {err}"));
    let want_cols = (secs / 0.5).ceil();
    assert!(
        (labels.len() as f64 - want_cols).abs() <= 1.0,
        "{} columns for {secs} s: {labels:?}",
        labels.len()
    );
    let total: u64 = cells.iter().map(|c| c.2).sum();
    assert_eq!(total, 140, "{cells:?}");
    let slow_cells: Vec<_> = cells.iter().filter(|c| c.1 >= 16384).collect();
    let slow_n: u64 = slow_cells.iter().map(|c| c.2).sum();
    assert!(
        slow_n >= 10,
        "only {slow_n} reads of 16 ms or more: {cells:?}"
    );
    // Two phases: before the column where the fast phase ended, fast reads only; slow ones after.
    assert!(fast_end_col >= 1, "the fast phase ended at once");
    let first_slow = slow_cells.iter().map(|c| c.0).min().unwrap();
    assert!(
        first_slow >= fast_end_col,
        "a slow read in column {first_slow}, before the fast phase ended (column {fast_end_col}): {cells:?}"
    );
    let fast_first: u64 = cells
        .iter()
        .filter(|c| c.0 < fast_end_col)
        .map(|c| c.2)
        .sum();
    assert!(
        fast_first >= 20,
        "{fast_first} reads before column {fast_end_col}: {cells:?}"
    );

    // -j's intervals, drawn offline: a column per interval, the same 140 reads.
    std::fs::write(&json, &out).unwrap();
    let intervals: std::collections::BTreeSet<u64> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("JSON lines")["interval"]
                .as_u64()
                .expect("interval")
        })
        .collect();
    let r = bpfprof()
        .args([
            "report",
            json.to_str().unwrap(),
            "--heatmap",
            json_svg.to_str().unwrap(),
        ])
        .output()
        .expect("running bpfprof report");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let (jlabels, jcells) = heat_cells(&std::fs::read_to_string(&json_svg).unwrap());
    assert_eq!(jlabels.len(), intervals.len(), "{jlabels:?}");
    assert_eq!(jcells.iter().map(|c| c.2).sum::<u64>(), 140, "{jcells:?}");
    assert!(jcells.iter().any(|c| c.1 >= 16384), "{jcells:?}");
    drop(cg);
}
