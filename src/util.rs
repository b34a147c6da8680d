//! Small process-level helpers: the stop flag set by Ctrl-C/SIGTERM, and output that survives closed pipes.
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// A flag raised by SIGINT or SIGTERM, so that a tool stops collecting and still prints what it has.
#[derive(Clone)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    pub fn install() -> Result<Self> {
        let flag = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, Arc::clone(&flag))
                .context("installing a signal handler")?;
        }
        Ok(Self(flag))
    }

    pub fn raised(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

static STDOUT_CLOSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Writes text to stdout; a reader that went away (`| head`) ends output quietly instead of failing
/// (`stdout_closed` says so from then on, for tools that print as they go to stop).
pub fn write_stdout(text: &str) -> Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
            STDOUT_CLOSED.store(true, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        }
        other => other.context("writing to stdout"),
    }
}

/// Whether stdout's reader has gone away: a write saw EPIPE, or (with nothing written lately) the pipe
/// reports an error condition (poll's POLLERR on a pipe without readers).
pub fn stdout_closed() -> bool {
    if STDOUT_CLOSED.load(std::sync::atomic::Ordering::Relaxed) {
        return true;
    }
    let mut fd = libc::pollfd {
        fd: 1,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no waiting.
    let n = unsafe { libc::poll(&mut fd, 1, 0) };
    n > 0 && fd.revents & libc::POLLERR != 0
}

/// The local time formatted with strftime(3) (`%H:%M:%S`, `%Y-%m-%d %H:%M:%S`), as bcc's tools print it.
pub fn local_time(format: &std::ffi::CStr) -> String {
    // SAFETY: time(NULL) only returns the time; localtime_r fills the zeroed tm it is given; strftime writes
    // at most buf.len() bytes and returns how many it wrote.
    unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&now, &mut tm).is_null() {
            return String::new();
        }
        let mut buf = [0u8; 64];
        let n = libc::strftime(buf.as_mut_ptr().cast(), buf.len(), format.as_ptr(), &tm);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

/// Waits until `deadline` passes or a signal raises `stop`; without a deadline, until a signal.
pub fn wait_until(stop: &StopFlag, deadline: Option<Instant>) {
    let step = Duration::from_millis(50);
    while !stop.raised() {
        match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) => std::thread::sleep(left.min(step)),
                None => return,
            },
            None => std::thread::sleep(step),
        }
    }
}

/// Drops `items` from up to 64 threads at once. Detaching a probe or closing a perf event waits for an RCU
/// grace period, and waits that overlap share one: hundreds of links dropped one after another took 25 s.
pub fn drop_concurrently<T: Send>(items: Vec<T>) {
    const THREADS: usize = 64;
    if items.len() <= 1 {
        return;
    }
    let n = THREADS.min(items.len());
    let mut groups: Vec<Vec<T>> = (0..n).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        groups[i % n].push(item);
    }
    std::thread::scope(|s| {
        for group in groups {
            s.spawn(move || drop(group));
        }
    });
}

/// The kernel's monotonic clock (bpf_ktime_get_ns), the clock BPF programs read.
pub fn ktime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Whether process `pid` still runs: it exists and is not a zombie (exited, not yet reaped).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // `pid (comm) S ...`: the state follows the last ')' (a comm may hold parentheses).
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}
