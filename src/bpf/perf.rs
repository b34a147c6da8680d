//! Per-CPU software perf events (cpu-clock) with a BPF program attached to each.
use std::os::fd::{AsRawFd, IntoRawFd};

use anyhow::{bail, Context, Result};
use libbpf_rs::{Link, ProgramMut};
use perf_event_open::config::{Cpu, Opts, Proc, SampleOn};
use perf_event_open::count::Counter;
use perf_event_open::event::sw::Software;

/// How often a perf event fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sampling {
    /// Samples per second per CPU.
    Frequency(u64),
    /// One sample every N nanoseconds of CPU time (cpu-clock counts nanoseconds).
    Period(u64),
}

/// Perf events and the BPF links on them; dropping it detaches everything.
pub struct CpuSamplers {
    // Links first: they are dropped (detached) before the events close.
    _links: Vec<Link>,
    _counters: Vec<Counter>,
}

/// The CPUs the kernel lists as online, e.g. "0-3,6" -> [0, 1, 2, 3, 6].
pub fn online_cpus() -> Result<Vec<u32>> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .context("reading /sys/devices/system/cpu/online")?;
    parse_cpu_list(&text)
}

/// Parses the kernel's CPU list format ("0-3,6").
pub fn parse_cpu_list(text: &str) -> Result<Vec<u32>> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo.parse::<u32>()?, hi.parse::<u32>()?),
            None => {
                let n = part.parse::<u32>()?;
                (n, n)
            }
        };
        cpus.extend(lo..=hi);
    }
    Ok(cpus)
}

/// Opens a cpu-clock perf event on each CPU and attaches `prog` to it.
pub fn attach_cpu_clock(
    prog: &ProgramMut,
    cpus: &[u32],
    sampling: Sampling,
) -> Result<CpuSamplers> {
    let opts = Opts {
        sample_on: match sampling {
            Sampling::Frequency(hz) => SampleOn::Freq(hz),
            Sampling::Period(n) => SampleOn::Count(n),
        },
        ..Opts::default()
    };
    let mut counters = Vec::with_capacity(cpus.len());
    let mut links = Vec::with_capacity(cpus.len());
    for &cpu in cpus {
        let counter = match Counter::new(Software::CpuClock, (Proc::ALL, Cpu(cpu)), &opts) {
            Ok(c) => c,
            Err(e)
                if e.raw_os_error() == Some(libc::EINVAL)
                    && matches!(sampling, Sampling::Frequency(_)) =>
            {
                bail!("opening the cpu-clock perf event on CPU {cpu} failed: {e} (is -F above kernel.perf_event_max_sample_rate?)")
            }
            Err(e)
                if e.raw_os_error() == Some(libc::ENOENT)
                    || e.raw_os_error() == Some(libc::ENODEV) =>
            {
                bail!("this kernel has no perf events for CPU {cpu} ({e}): a kernel with CONFIG_PERF_EVENTS is needed")
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("opening the cpu-clock perf event on CPU {cpu}"))
            }
        };
        // libbpf closes the fd it is given when its link is dropped: hand it a duplicate, so that the
        // Counter keeps sole ownership of its own.
        let dup = counter
            .file()
            .try_clone()
            .context("duplicating a perf event fd")?
            .into_raw_fd();
        let link = prog.attach_perf_event(dup).map_err(|e| {
            // SAFETY: attach failed, so libbpf did not take ownership of `dup`.
            unsafe { libc::close(dup) };
            anyhow::Error::new(e).context(format!(
                "attaching the BPF program to the perf event on CPU {cpu}"
            ))
        })?;
        counter.enable().with_context(|| {
            format!(
                "enabling the perf event on CPU {cpu} (fd {})",
                counter.file().as_raw_fd()
            )
        })?;
        links.push(link);
        counters.push(counter);
    }
    Ok(CpuSamplers {
        _links: links,
        _counters: counters,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0\n").unwrap(), vec![0]);
        assert_eq!(parse_cpu_list("0-3,6").unwrap(), vec![0, 1, 2, 3, 6]);
        assert_eq!(parse_cpu_list("0-1,4-5\n").unwrap(), vec![0, 1, 4, 5]);
        assert!(parse_cpu_list("x").is_err());
    }
}
