//! The thread that takes the processes a BPF program announces (bpf/procs.bpf.h): it reads each one's
//! mappings at once, for the symbolizer (a short-lived process would be gone by the time its stacks are
//! named), and, with unwind tables, loads the tables of its binaries; a process whose walk met code in no
//! mapping it knew (dlopen, JIT) is announced again, and read again.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, RingBufferBuilder};

use super::{UnwindStats, Unwinder};
use crate::bpf::stacks::PROC_NEW;

/// The thread that takes announced processes and reads their mappings (`None`: already gone), and, with
/// unwind tables, loads the tables of their binaries (a process whose walk met code in no mapping it
/// knew is announced again: dlopen, JIT).
pub struct ProcWatcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Option<UnwindStats>>>,
    seen: Receiver<(u32, Option<String>)>,
    unwind_stats: Option<UnwindStats>,
    /// The unwinder's flag that abandons a table being built.
    cancel: Option<Arc<AtomicBool>>,
}

/// How often the watcher drops the unwind entries of processes that exited.
const FORGET_EVERY: Duration = Duration::from_secs(2);

impl ProcWatcher {
    pub fn start(proc_events: &dyn MapCore, mut unwinder: Option<Unwinder>) -> Result<Self> {
        let (tx, seen) = mpsc::channel();
        let (to_load, to_load_rx) = mpsc::channel::<(u32, String)>();
        let with_tables = unwinder.is_some();
        let cancel = unwinder.as_ref().map(Unwinder::cancel_flag);
        let mut rb = RingBufferBuilder::new();
        rb.add(proc_events, move |data: &[u8]| {
            if let Some(pid) = data.get(..4) {
                let pid = u32::from_ne_bytes(pid.try_into().expect("4 bytes"));
                let kind = data
                    .get(4..8)
                    .map_or(0, |k| u32::from_ne_bytes(k.try_into().expect("4 bytes")));
                let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok();
                if with_tables {
                    if let Some(m) = &maps {
                        let _ = to_load.send((pid, m.clone()));
                    }
                }
                // A re-read for unwinding: the symbolizer finds new code itself when it names it.
                if kind == PROC_NEW {
                    let _ = tx.send((pid, maps));
                }
            }
            0
        })?;
        let rb = rb.build()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("bpfprof-procs".into())
            .spawn(move || {
                let mut forgot = Instant::now();
                while !stopped.load(Ordering::Relaxed) {
                    let _ = rb.poll(Duration::from_millis(50));
                    if let Some(u) = unwinder.as_mut() {
                        for (pid, maps) in to_load_rx.try_iter() {
                            let _ = u.load_process(pid, &maps);
                        }
                        if forgot.elapsed() >= FORGET_EVERY {
                            u.forget_exited();
                            forgot = Instant::now();
                        }
                    }
                }
                // Announced before the programs were detached: taken too, for the symbolizer. Their
                // tables would serve no walk any more: not loaded.
                let _ = rb.consume();
                unwinder.map(|u| u.stats())
            })
            .context("starting the process watcher")?;
        Ok(Self {
            stop,
            thread: Some(thread),
            seen,
            unwind_stats: None,
            cancel,
        })
    }

    /// Processes announced since the last call, with their mappings (None: gone already).
    pub fn announced(&self) -> impl Iterator<Item = (u32, Option<String>)> + '_ {
        self.seen.try_iter()
    }

    /// What the unwind tables took (after `stop`; None without tables).
    pub fn unwind_stats(&self) -> Option<&UnwindStats> {
        self.unwind_stats.as_ref()
    }

    /// Stops the thread once it has taken every announcement left (a table being built is abandoned).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(c) = &self.cancel {
            c.store(true, Ordering::Relaxed);
        }
        if let Some(t) = self.thread.take() {
            self.unwind_stats = t.join().ok().flatten();
        }
    }
}

impl Drop for ProcWatcher {
    fn drop(&mut self) {
        self.stop();
    }
}
