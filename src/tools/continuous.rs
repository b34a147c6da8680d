//! Continuous profiling: profiles in fixed windows, each written to a rotating directory and/or pushed to a
//! Grafana Pyroscope server's ingest API, without ever holding up sampling.
//!
//! The BPF side counts each sample in the window of its own time (bpf/profile.bpf.c `window_ns`), so
//! windows abut exactly; user space drains a window once it has ended, and forgets it.
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use super::common::Collector;
use crate::util::StopFlag;

/// What --continuous was asked to do, free of clap.
#[derive(Debug, Clone, PartialEq)]
pub struct ContinuousConfig {
    /// The length of a window.
    pub every: Duration,
    /// Where each window's profile is written (and how many are kept there).
    pub dir: Option<PathBuf>,
    pub keep: usize,
    /// A Pyroscope server (its base URL, or the full `/ingest` URL).
    pub push: Option<String>,
    /// The application name pushed, and the labels (host first).
    pub service: String,
    pub labels: Vec<(String, String)>,
}

/// One drained window: its index, what it counted (samples or blocks), its stacks, its profile.
pub struct WindowProfile {
    pub window: u32,
    pub counted: u64,
    pub stacks: usize,
    pub data: Vec<u8>,
}

/// What the windows held in all.
#[derive(Default)]
pub struct Written {
    pub windows: u64,
    pub counted: u64,
}

/// How long after a window's end its counts are taken: a count is made by a program that began before
/// the end and runs for microseconds.
pub const WINDOW_GRACE: Duration = Duration::from_millis(50);

/// When the windows are: window k spans [started + k * every, started + (k + 1) * every).
#[derive(Clone, Copy)]
pub struct WindowClock {
    pub every: Duration,
    pub started: Instant,
    pub started_wall: SystemTime,
}

impl WindowClock {
    /// Window `w`'s start on the wall clock, and its end (not after now: the last window is partial).
    pub fn span(&self, w: u32) -> (SystemTime, SystemTime) {
        let from = self.started_wall + self.every * w;
        (from, (from + self.every).min(SystemTime::now()))
    }

    /// What a run will do with its windows, for the line after the header.
    pub fn describe(&self, c: &ContinuousConfig) -> String {
        let mut to = Vec::new();
        if let Some(d) = &c.dir {
            to.push(format!(
                "writing {} (the last {} kept)",
                d.display(),
                c.keep
            ));
        }
        if let Some(u) = &c.push {
            to.push(format!("pushing to {u} as {}", c.service));
        }
        format!("bpfprof: windows of {:?}, {}", self.every, to.join(" and "))
    }

    /// Hands each window on once it has ended, until `end` or a signal; then closes the programs' window
    /// (`close`) and hands on what is left. `drain(collector, last)` takes every count of windows up to
    /// `last` (None: all) out of the kernel and makes their profiles. `noun`: what is counted. The sink
    /// comes back for the caller to finish once its programs are detached.
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &self,
        tool: &str,
        noun: &str,
        end: Option<Instant>,
        collector: &mut Collector,
        mut sink: Sink,
        stop: &StopFlag,
        mut drain: impl FnMut(&mut Collector, Option<u32>) -> Result<Vec<WindowProfile>>,
        close: impl FnOnce() -> Result<()>,
    ) -> Result<(Written, Sink)> {
        let mut written = Written::default();
        let mut hand_on = |sink: &mut Sink, profiles: Vec<WindowProfile>| -> Result<()> {
            for p in profiles {
                let (from, until) = self.span(p.window);
                let file = sink.window(tool, u64::from(p.window), from, until, p.data)?;
                written.windows += 1;
                written.counted += p.counted;
                let to = file.map_or(String::new(), |f| format!(": {}", f.display()));
                eprintln!(
                    "bpfprof: window {}: {} {noun}, {} stacks{to}",
                    p.window, p.counted, p.stacks
                );
            }
            Ok(())
        };
        let mut next: u32 = 0;
        loop {
            let due = self.started + self.every * (next + 1) + WINDOW_GRACE;
            let deadline = end.map_or(due, |e| e.min(due));
            collector.run(stop, Some(deadline));
            if stop.raised()
                || collector.targets_exited()
                || end.is_some_and(|e| Instant::now() >= e)
            {
                break;
            }
            hand_on(&mut sink, drain(collector, Some(next))?)?;
            next += 1;
        }
        close()?;
        // The programs count no more (their window is closed); what they counted is drained now.
        std::thread::sleep(WINDOW_GRACE);
        hand_on(&mut sink, drain(collector, None)?)?;
        Ok((written, sink))
    }
}

/// Prints what became of a continuous run: pushes, and what the windows held against what was counted.
pub fn report_windows(noun: &str, counted: u64, written: &Written, push: Option<&PushStats>) {
    if let Some(p) = push {
        eprintln!(
            "bpfprof: pushed {} windows ({} failed, {} dropped while the server lagged)",
            p.pushed.load(Ordering::Relaxed),
            p.failed.load(Ordering::Relaxed),
            p.dropped.load(Ordering::Relaxed)
        );
    }
    eprintln!(
        "bpfprof: {counted} {noun}, {} in {} windows",
        written.counted, written.windows
    );
}

/// Windows waiting to be pushed: beyond this, the oldest waiting is dropped (and counted).
const PUSH_QUEUE: usize = 8;
/// Attempts per window, and the first wait between two (doubled each time).
const PUSH_ATTEMPTS: u32 = 4;
const PUSH_BACKOFF: Duration = Duration::from_millis(500);
/// Once the run ends, what is still queued gets this long in all (one attempt each), then is dropped.
const PUSH_DRAIN: Duration = Duration::from_secs(5);

/// Where windows go.
pub struct Sink {
    dir: Option<PathBuf>,
    keep: usize,
    written: VecDeque<PathBuf>,
    pusher: Option<Pusher>,
}

/// What became of pushes (printed at the end, and as WARNINGs when they happen).
#[derive(Default)]
pub struct PushStats {
    pub pushed: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
}

/// One window's profile, its time span, and what the server is told of it.
struct PushJob {
    seq: u64,
    from: SystemTime,
    until: SystemTime,
    data: Vec<u8>,
}

struct Pusher {
    tx: Option<SyncSender<PushJob>>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<PushStats>,
    closing: Arc<AtomicBool>,
}

impl Sink {
    /// Checks the directory (created if missing) and starts the pusher. `name` is the pushed
    /// application name with its profile kind (`SERVICE.cpu`); `sample_rate` the sampling frequency.
    pub fn new(cfg: &ContinuousConfig, kind: &str, sample_rate: u64) -> Result<Self> {
        if let Some(dir) = &cfg.dir {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("--pprof-dir {}: cannot create it", dir.display()))?;
            let probe = dir.join(".bpfprof-write-test");
            std::fs::write(&probe, b"")
                .with_context(|| format!("--pprof-dir {}: cannot write there", dir.display()))?;
            let _ = std::fs::remove_file(probe);
        }
        let pusher = match &cfg.push {
            Some(url) => Some(Pusher::start(
                ingest_url(url)?,
                app_name(&cfg.service, kind, &cfg.labels),
                sample_rate,
            )),
            None => None,
        };
        // Windows of earlier runs count against --keep too (oldest first: the names sort by sequence and
        // time within a run, and runs are told apart by their start times).
        let written = cfg
            .dir
            .as_ref()
            .map_or_else(VecDeque::new, |d| earlier_windows(d, kind_tool(kind)));
        let mut sink = Self {
            dir: cfg.dir.clone(),
            keep: cfg.keep.max(1),
            written,
            pusher,
        };
        sink.rotate();
        Ok(sink)
    }

    /// Hands over window `seq` (`data`: gzipped pprof) spanning [from, until): written, and queued for
    /// the pusher (never waits for it). Returns the file written.
    pub fn window(
        &mut self,
        tool: &str,
        seq: u64,
        from: SystemTime,
        until: SystemTime,
        data: Vec<u8>,
    ) -> Result<Option<PathBuf>> {
        let mut path = None;
        if let Some(dir) = &self.dir {
            let file = dir.join(format!("{tool}-{}-{seq:06}.pb.gz", utc_stamp(from)));
            let tmp = file.with_extension("tmp");
            let wrote = std::fs::write(&tmp, &data).and_then(|()| std::fs::rename(&tmp, &file));
            match wrote {
                Ok(()) => {
                    self.written.push_back(file.clone());
                    self.rotate();
                    path = Some(file);
                }
                // A full disk loses this window, not the run (the next may fit).
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    eprintln!("WARNING: window {seq} not written: {}: {e}", file.display());
                }
            }
        }
        if let Some(p) = &self.pusher {
            p.queue(PushJob {
                seq,
                from,
                until,
                data,
            });
        }
        Ok(path)
    }

    /// Removes the oldest windows beyond --keep.
    fn rotate(&mut self) {
        while self.written.len() > self.keep {
            if let Some(old) = self.written.pop_front() {
                let _ = std::fs::remove_file(old);
            }
        }
    }

    /// Lets queued pushes go (one attempt each, PUSH_DRAIN in all, then dropped and counted), and says
    /// what became of them.
    pub fn finish(mut self) -> Option<Arc<PushStats>> {
        let p = self.pusher.as_mut()?;
        p.closing.store(true, Ordering::Relaxed);
        drop(p.tx.take());
        if let Some(t) = p.thread.take() {
            let _ = t.join();
        }
        Some(Arc::clone(&p.stats))
    }
}

impl Pusher {
    fn start(url: String, name: String, sample_rate: u64) -> Self {
        let (tx, rx) = sync_channel::<PushJob>(PUSH_QUEUE);
        let stats = Arc::new(PushStats::default());
        let closing = Arc::new(AtomicBool::new(false));
        let thread = {
            let (stats, closing) = (Arc::clone(&stats), Arc::clone(&closing));
            std::thread::Builder::new()
                .name("bpfprof-push".into())
                .spawn(move || push_loop(rx, &url, &name, sample_rate, &stats, &closing))
                .expect("spawning the push thread")
        };
        Self {
            tx: Some(tx),
            thread: Some(thread),
            stats,
            closing,
        }
    }

    /// Queues a window; when the queue is full (the server is down or slow), the window is dropped.
    fn queue(&self, job: PushJob) {
        let Some(tx) = &self.tx else { return };
        let seq = job.seq;
        match tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                let n = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                eprintln!(
                    "WARNING: window {seq} not pushed: {PUSH_QUEUE} windows already wait for the server ({n} dropped so far)"
                );
            }
        }
    }
}

fn push_loop(
    rx: Receiver<PushJob>,
    url: &str,
    name: &str,
    sample_rate: u64,
    stats: &PushStats,
    closing: &AtomicBool,
) {
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(3))
        .timeout(Duration::from_secs(10))
        .build();
    // Set when the run has ended: what is queued then gets PUSH_DRAIN in all.
    let mut deadline: Option<Instant> = None;
    let fail = |seq: u64, why: &str| {
        let n = stats.failed.fetch_add(1, Ordering::Relaxed) + 1;
        eprintln!("WARNING: window {seq} not pushed to {url} ({why}): dropped ({n} so far)");
    };
    for job in rx {
        let mut wait = PUSH_BACKOFF;
        let mut attempt = 1;
        loop {
            if closing.load(Ordering::Relaxed) && deadline.is_none() {
                deadline = Some(Instant::now() + PUSH_DRAIN);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                fail(job.seq, "the run ended before it could be sent");
                break;
            }
            match push_once(&agent, url, name, sample_rate, &job) {
                Ok(()) => {
                    stats.pushed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(e) if attempt >= PUSH_ATTEMPTS || closing.load(Ordering::Relaxed) => {
                    fail(job.seq, &format!("{attempt} attempts, the last: {e}"));
                    break;
                }
                Err(_) => {
                    // Backoff in small steps, so that the end of the run is seen at once.
                    let until = Instant::now() + wait;
                    while Instant::now() < until && !closing.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    wait *= 2;
                    attempt += 1;
                }
            }
        }
    }
}

/// One POST of a window to Pyroscope's `/ingest` (format=pprof, the profile as the `profile` part of a
/// multipart form, as Pyroscope's own clients send it).
fn push_once(
    agent: &ureq::Agent,
    url: &str,
    name: &str,
    sample_rate: u64,
    job: &PushJob,
) -> Result<()> {
    let secs = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            .to_string()
    };
    let boundary = format!("bpfprof-{:016x}", job.seq ^ 0x9e37_79b9_7f4a_7c15);
    let mut body = Vec::with_capacity(job.data.len() + 256);
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"profile\"; filename=\"profile.pprof\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(&job.data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    agent
        .post(url)
        .query("name", name)
        .query("from", &secs(job.from))
        .query("until", &secs(job.until))
        .query("format", "pprof")
        .query("sampleRate", &sample_rate.to_string())
        .query("spyName", "bpfprof")
        .set(
            "Content-Type",
            &format!("multipart/form-data; boundary={boundary}"),
        )
        .send_bytes(&body)
        .map_err(|e| match e {
            ureq::Error::Status(code, _) => anyhow::anyhow!("HTTP {code}"),
            other => anyhow::anyhow!("{other}"),
        })?;
    Ok(())
}

/// The tool whose windows a sink of this kind writes (`cpu`: profile's).
fn kind_tool(kind: &str) -> &str {
    if kind == "cpu" {
        "profile"
    } else {
        kind
    }
}

/// The windows earlier runs of `tool` left in `dir`, oldest first.
fn earlier_windows(dir: &std::path::Path, tool: &str) -> VecDeque<PathBuf> {
    let prefix = format!("{tool}-");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".pb.gz"))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files.into()
}

/// The ingest endpoint of a server's base URL (or the endpoint itself).
fn ingest_url(url: &str) -> Result<String> {
    if url.starts_with("https://") {
        bail!("--push {url}: this build speaks plain HTTP only (put a TLS-terminating proxy, or Grafana Alloy's pyroscope.receive_http, in front)");
    }
    if !url.starts_with("http://") {
        bail!("--push {url}: not an http:// URL");
    }
    let base = url.trim_end_matches('/');
    Ok(if base.ends_with("/ingest") {
        base.to_string()
    } else {
        format!("{base}/ingest")
    })
}

/// Pyroscope's application name with labels: `SERVICE.KIND{host=H,k=v}`.
fn app_name(service: &str, kind: &str, labels: &[(String, String)]) -> String {
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{service}.{kind}{{{}}}", labels.join(","))
}

/// Checks a `--label k=v` (Pyroscope's label syntax: no separators in either part).
pub fn parse_label(s: &str) -> Result<(String, String)> {
    let Some((k, v)) = s.split_once('=') else {
        bail!("--label {s}: expected KEY=VALUE");
    };
    let key_ok = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    let value_ok = !v.is_empty() && !v.contains([',', '{', '}', '=', '"', '\n']);
    if !key_ok || !value_ok {
        bail!("--label {s}: keys are letters, digits, _ and .; values must not be empty nor hold , {{ }} = or quotes");
    }
    Ok((k.to_string(), v.to_string()))
}

/// Parses a window length: `10s`, `500ms`, `2m`, or plain seconds.
pub fn parse_every(s: &str) -> Result<Duration> {
    parse_length("--every", s)
}

/// A length of time as a flag takes it (10s, 500ms, 1m; a bare number is seconds), 100ms to 24 hours.
pub fn parse_length(flag: &str, s: &str) -> Result<Duration> {
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .with_context(|| format!("{flag} {s}: expected e.g. 10s, 500ms or 1m"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        _ => bail!("{flag} {s}: the unit is ms, s or m"),
    };
    if d < Duration::from_millis(100) || d > Duration::from_secs(24 * 3600) {
        bail!("{flag} {s}: at least 100ms and at most 24 hours");
    }
    Ok(d)
}

/// This host's name, for the `host` label.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// `20261204T230512.123Z`: a window's start, in UTC, for its file name.
fn utc_stamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as libc::time_t;
    // SAFETY: gmtime_r fills the zeroed tm it is given from a valid time_t.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        libc::gmtime_r(&secs, &mut tm);
        tm
    };
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}.{:03}Z",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_lengths_and_labels_parse() {
        assert_eq!(parse_every("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_every("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_every("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_every("7").unwrap(), Duration::from_secs(7));
        for bad in [
            "",
            "s",
            "10h",
            "50ms",
            "1.5s",
            "1441m",
            "99999999999999999999m",
        ] {
            assert!(parse_every(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_label("env=prod").unwrap(),
            ("env".into(), "prod".into())
        );
        for bad in ["env", "=x", "env=", "e v=x", "env=a,b", "env=a}"] {
            assert!(parse_label(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pushed_names_and_urls() {
        let labels = vec![("host".into(), "h1".into()), ("env".into(), "prod".into())];
        assert_eq!(app_name("web", "cpu", &labels), "web.cpu{host=h1,env=prod}");
        assert_eq!(
            ingest_url("http://p:4040/").unwrap(),
            "http://p:4040/ingest"
        );
        assert_eq!(
            ingest_url("http://p:4040/ingest").unwrap(),
            "http://p:4040/ingest"
        );
        assert!(ingest_url("https://p").is_err());
        assert!(ingest_url("p:4040").is_err());
    }

    #[test]
    fn stamps_are_utc() {
        let t = UNIX_EPOCH + Duration::from_millis(1_796_425_512_123);
        assert_eq!(utc_stamp(t), "20261204T230512.123Z");
    }
}
