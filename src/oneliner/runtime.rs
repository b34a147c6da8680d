//! Running a one-liner: parse, check, create maps, generate and load a program per probe, attach, print
//! printf records as they come (ring buffer), and at the end run END and print every map.
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use libbpf_rs::{MapCore, MapFlags};

use super::ast::{Attach, Program, TimeUnit};
use super::codegen::{self, PrintfSpec, RECORD_EXIT};
use super::insn::{self, Insn};
use super::maps::{raw_fd, MapDef, Maps};
use super::output;
use super::parser;
use super::sema::{self, Info};
use crate::probes::{self, Matcher};
use crate::util::{wait_until, write_stdout, StopFlag};

/// What `trace` was asked to do, free of clap.
#[derive(Debug, Clone, Default)]
pub struct TraceConfig {
    pub program: String,
    /// `stdin` for -e, else the file's name (in error messages).
    pub source_name: String,
    /// Parse and check only.
    pub dry_run: bool,
    /// Print each probe's BPF instructions.
    pub verbose: bool,
    /// Stop after this long.
    pub duration: Option<Duration>,
}

/// Parses and checks; errors come out as bpftrace prints them (the line and `~` under the span).
pub fn compile_check(cfg: &TraceConfig) -> Result<(Program, Info)> {
    let render = |d: super::diag::Diag| {
        let text = d.render(&cfg.source_name, &cfg.program);
        anyhow!("{}", text.trim_end())
    };
    let program = parser::parse(&cfg.program).map_err(render)?;
    let info = sema::check(&program, &sema::Tracefs).map_err(render)?;
    Ok((program, info))
}

/// An attached probe: the program and the perf events that keep it attached.
struct Attached {
    _prog: OwnedFd,
    events: Vec<OwnedFd>,
    /// Attach points after globs are expanded (what `Attaching N probes` counts, as bpftrace).
    points: usize,
}

const PERF_EVENT_IOC_ENABLE: u64 = 0x2400;
const PERF_EVENT_IOC_DISABLE: u64 = 0x2401;

impl Attached {
    /// Stops the probe firing at once; closing its events (which detaches it) can take the kernel a grace
    /// period each, so that is left until the output is printed.
    fn disable(&self) {
        for e in &self.events {
            // SAFETY: a valid perf event fd; the ioctl takes an int argument.
            unsafe { libc::ioctl(e.as_raw_fd(), PERF_EVENT_IOC_DISABLE as _, 0) };
        }
    }
}
const PERF_EVENT_IOC_SET_BPF: u64 = 0x4004_2408;

fn perf_event_open(attr: &libbpf_sys::perf_event_attr, cpu: i32) -> Result<OwnedFd> {
    // SAFETY: a valid, sized attr; pid -1 with a cpu is "every task on that CPU".
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr as *const libbpf_sys::perf_event_attr,
            -1,
            cpu,
            -1,
            8u64, // PERF_FLAG_FD_CLOEXEC
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("perf_event_open");
    }
    // SAFETY: a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn attach_to_event(prog: &OwnedFd, event: &OwnedFd) -> Result<()> {
    // SAFETY: valid fds; the ioctls take an int argument.
    unsafe {
        if libc::ioctl(
            event.as_raw_fd(),
            PERF_EVENT_IOC_SET_BPF as _,
            prog.as_raw_fd(),
        ) != 0
        {
            return Err(std::io::Error::last_os_error())
                .context("attaching a program to a perf event");
        }
        if libc::ioctl(event.as_raw_fd(), PERF_EVENT_IOC_ENABLE as _, 0) != 0 {
            return Err(std::io::Error::last_os_error()).context("enabling a perf event");
        }
    }
    Ok(())
}

fn tracepoint_id(category: &str, event: &str) -> Result<u64> {
    let path = format!("/sys/kernel/tracing/events/{category}/{event}/id");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("no tracepoint {category}:{event}"))?;
    text.trim()
        .parse()
        .with_context(|| format!("reading {path}"))
}

fn period_ns(unit: TimeUnit, n: u64) -> u64 {
    match unit {
        TimeUnit::Hz => 1_000_000_000 / n.max(1),
        TimeUnit::S => n * 1_000_000_000,
        TimeUnit::Ms => n * 1_000_000,
        TimeUnit::Us => n * 1_000,
    }
}

/// A loaded probe: attached, or (BEGIN/END) a program to run once.
type Loaded = (Option<Attached>, Option<(Attach, OwnedFd)>);

/// Loads one probe's program for its kind of attach point and attaches it to every point.
fn load_and_attach(
    program: &Program,
    index: usize,
    info: &Info,
    maps: &Maps,
    printfs: &mut Vec<PrintfSpec>,
    verbose: bool,
) -> Result<Loaded> {
    let probe = &program.probes[index];
    let insns = codegen::probe_program(probe, index, info, maps, printfs)?;
    if verbose {
        eprintln!("{}", dump(&probe.attach[0].raw, &insns));
    }
    let first = &probe.attach[0].kind;
    let prog_type = match first {
        Attach::Tracepoint { .. } => libbpf_sys::BPF_PROG_TYPE_TRACEPOINT,
        Attach::Profile { .. } | Attach::Interval { .. } => libbpf_sys::BPF_PROG_TYPE_PERF_EVENT,
        Attach::Begin | Attach::End => libbpf_sys::BPF_PROG_TYPE_RAW_TRACEPOINT,
        Attach::Kprobe { func, .. } | Attach::Fentry { func, .. }
            if !probes::kernel_has_kprobes() =>
        {
            bail!(
                "{}: {}",
                probe.attach[0].raw,
                probes::kprobes_missing("tracing kernel functions", func)
            )
        }
        _ => bail!(
            "{}: this probe type is not supported by trace yet",
            probe.attach[0].raw
        ),
    };
    for a in &probe.attach[1..] {
        let same = std::mem::discriminant(&a.kind) == std::mem::discriminant(first);
        if !same {
            bail!(
                "{}: one probe block mixes probe types (not supported yet)",
                a.raw
            );
        }
    }
    let prog = insn::load(prog_type, "bpfprof_trace", &insns)
        .with_context(|| format!("loading the program of {}", probe.attach[0].raw))?;
    if matches!(first, Attach::Begin | Attach::End) {
        return Ok((None, Some((first.clone(), prog))));
    }
    let mut events = Vec::new();
    let mut points_attached = 0;
    for a in &probe.attach {
        match &a.kind {
            Attach::Tracepoint { category, event } => {
                let any = |p: &str| p.contains(['*', '?', '[']);
                let points = if any(category) || any(event) {
                    probes::tracepoints(
                        &Matcher::new(category, false)?,
                        &Matcher::new(event, false)?,
                    )?
                } else {
                    vec![(category.clone(), event.clone())]
                };
                if points.is_empty() {
                    bail!("{}: no tracepoint matches", a.raw);
                }
                points_attached += points.len();
                for (c, e) in points {
                    let mut attr = libbpf_sys::perf_event_attr {
                        type_: libbpf_sys::PERF_TYPE_TRACEPOINT,
                        size: std::mem::size_of::<libbpf_sys::perf_event_attr>() as u32,
                        config: tracepoint_id(&c, &e)?,
                        ..Default::default()
                    };
                    attr.__bindgen_anon_1.sample_period = 1;
                    attr.__bindgen_anon_2.wakeup_events = 1;
                    let ev = perf_event_open(&attr, 0)
                        .with_context(|| format!("opening tracepoint {c}:{e}"))?;
                    attach_to_event(&prog, &ev)?;
                    events.push(ev);
                }
            }
            Attach::Interval { unit, n } | Attach::Profile { unit, n } => {
                points_attached += 1;
                let cpus: Vec<u32> = if matches!(a.kind, Attach::Interval { .. }) {
                    vec![crate::bpf::perf::online_cpus()?
                        .first()
                        .copied()
                        .unwrap_or(0)]
                } else {
                    crate::bpf::perf::online_cpus()?
                };
                for cpu in cpus {
                    let mut attr = libbpf_sys::perf_event_attr {
                        type_: libbpf_sys::PERF_TYPE_SOFTWARE,
                        size: std::mem::size_of::<libbpf_sys::perf_event_attr>() as u32,
                        config: libbpf_sys::PERF_COUNT_SW_CPU_CLOCK as u64,
                        ..Default::default()
                    };
                    if *unit == TimeUnit::Hz && matches!(a.kind, Attach::Profile { .. }) {
                        attr.set_freq(1);
                        attr.__bindgen_anon_1.sample_freq = *n;
                    } else {
                        attr.__bindgen_anon_1.sample_period = period_ns(*unit, *n);
                    }
                    let ev = perf_event_open(&attr, cpu as i32).with_context(|| {
                        format!("opening the cpu-clock event of {} on CPU {cpu}", a.raw)
                    })?;
                    attach_to_event(&prog, &ev)?;
                    events.push(ev);
                }
            }
            _ => unreachable!("checked above"),
        }
    }
    Ok((
        Some(Attached {
            _prog: prog,
            events,
            points: points_attached,
        }),
        None,
    ))
}

/// Runs a BEGIN or END program once (BPF_PROG_TEST_RUN of a raw tracepoint program, in this task).
fn run_once(prog: &OwnedFd) -> Result<()> {
    let mut opts = libbpf_sys::bpf_test_run_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_test_run_opts>() as _,
        ..Default::default()
    };
    // SAFETY: a loaded program and sized options without buffers.
    let ret = unsafe { libbpf_sys::bpf_prog_test_run_opts(prog.as_raw_fd(), &mut opts) };
    if ret < 0 {
        bail!(
            "running BEGIN/END: {}",
            std::io::Error::from_raw_os_error(-ret)
        );
    }
    Ok(())
}

/// The instructions of a program, one per line (`-v`).
fn dump(name: &str, insns: &[Insn]) -> String {
    let mut out = format!("{name}: {} instructions\n", insns.len());
    for (i, x) in insns.iter().enumerate() {
        out.push_str(&format!(
            "{i:4}: code {:02x} dst r{} src r{} off {:5} imm {}\n",
            x.code,
            x.regs & 0xf,
            x.regs >> 4,
            x.off,
            x.imm
        ));
    }
    out
}

/// Reads every entry of a map, its value summed over CPUs for per-CPU maps, as i64 slots.
fn read_map(def: &MapDef) -> Result<Vec<(Vec<u8>, Vec<i64>)>> {
    let slots = |v: &[u8]| -> Vec<i64> {
        v.chunks_exact(8)
            .map(|c| i64::from_ne_bytes(c.try_into().expect("8 bytes")))
            .collect()
    };
    let mut out = Vec::new();
    for key in def.map.keys() {
        let values: Vec<Vec<i64>> = if def.per_cpu {
            match def.map.lookup_percpu(&key, MapFlags::ANY)? {
                Some(per_cpu) => per_cpu.iter().map(|v| slots(v)).collect(),
                None => continue, // deleted meanwhile
            }
        } else {
            match def.map.lookup(&key, MapFlags::ANY)? {
                Some(v) => vec![slots(&v)],
                None => continue,
            }
        };
        let mut sum = vec![0i64; (def.value_size / 8).max(1)];
        for v in &values {
            for (s, x) in sum.iter_mut().zip(v) {
                *s = s.wrapping_add(*x);
            }
        }
        // min/max: keep the extreme among the CPUs that have a value (its second slot is the `set` flag).
        if matches!(def.kind, sema::MapKind::Min | sema::MapKind::Max) {
            let set = values
                .iter()
                .filter(|v| v.get(1).is_some_and(|&f| f != 0))
                .map(|v| v[0]);
            sum[0] = if matches!(def.kind, sema::MapKind::Min) {
                set.min().unwrap_or(0)
            } else {
                set.max().unwrap_or(0)
            };
        }
        out.push((key, sum));
    }
    Ok(out)
}

/// Records the ring buffer had no room for, summed over CPUs.
fn lost_records(maps: &Maps) -> Result<u64> {
    let lost = crate::bpf::sum_percpu(&maps.lost, 1).context("reading the lost-records counter")?;
    Ok(lost[0])
}

type Printfs = std::rc::Rc<std::cell::RefCell<(Vec<PrintfSpec>, bool)>>;

extern "C" fn on_record(
    ctx: *mut std::ffi::c_void,
    data: *mut std::ffi::c_void,
    size: libbpf_sys::size_t,
) -> i32 {
    // SAFETY: ctx is the Printfs passed to ring_buffer__new, alive while the ring buffer is; data holds size
    // bytes for the length of this call.
    let (state, bytes) = unsafe {
        (
            &*(ctx as *const std::cell::RefCell<(Vec<PrintfSpec>, bool)>),
            std::slice::from_raw_parts(data as *const u8, size as usize),
        )
    };
    if bytes.len() < 8 {
        return 0;
    }
    let id = u64::from_ne_bytes(bytes[..8].try_into().expect("8 bytes"));
    let mut st = state.borrow_mut();
    if id == RECORD_EXIT {
        st.1 = true;
        return 0;
    }
    if let Some(spec) = st.0.get(id as usize) {
        let text = output::printf(&spec.format, &spec.args, &bytes[8..]);
        let _ = write_stdout(&text);
    }
    0
}

/// Runs a program until Ctrl-C, exit() or the duration.
pub fn run(cfg: &TraceConfig) -> Result<()> {
    let (program, info) = compile_check(cfg)?;
    if cfg.dry_run {
        eprintln!(
            "bpfprof: {} probes: the program parses and checks",
            program.probes.len()
        );
        return Ok(());
    }
    crate::bpf::prepare()?;
    crate::bpf::ensure_tracefs()?;
    let stop = StopFlag::install()?;
    let maps = Maps::create(&info)?;
    let mut printfs = Vec::new();
    let mut attached = Vec::new();
    let mut begin = Vec::new();
    let mut end = Vec::new();
    for i in 0..program.probes.len() {
        let (a, special) = load_and_attach(&program, i, &info, &maps, &mut printfs, cfg.verbose)?;
        attached.extend(a);
        match special {
            Some((Attach::Begin, p)) => begin.push(p),
            Some((_, p)) => end.push(p),
            None => {}
        }
    }
    let n_points: usize =
        attached.iter().map(|a| a.points).sum::<usize>() + begin.len() + end.len();
    write_stdout(&format!(
        "Attaching {n_points} probe{}...\n",
        if n_points == 1 { "" } else { "s" }
    ))?;
    let state: Printfs = std::rc::Rc::new(std::cell::RefCell::new((printfs, false)));
    // SAFETY: the callback's ctx (state) outlives the ring buffer, freed below.
    let rb = unsafe {
        libbpf_sys::ring_buffer__new(
            raw_fd(&maps.ringbuf),
            Some(on_record),
            std::rc::Rc::as_ptr(&state) as *mut _,
            std::ptr::null(),
        )
    };
    if rb.is_null() {
        bail!("opening the printf ring buffer failed");
    }
    for p in &begin {
        run_once(p)?;
    }
    let started = Instant::now();
    let deadline = cfg.duration.and_then(|d| started.checked_add(d));
    loop {
        // SAFETY: a live ring buffer.
        unsafe { libbpf_sys::ring_buffer__poll(rb, 100) };
        if state.borrow().1 || stop.raised() || deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        wait_until(&stop, Some(Instant::now() + Duration::from_millis(1)));
    }
    for a in &attached {
        a.disable();
    }
    for p in &end {
        run_once(p)?;
    }
    // SAFETY: a live ring buffer: consume what is left, then free it.
    unsafe {
        libbpf_sys::ring_buffer__consume(rb);
        libbpf_sys::ring_buffer__free(rb);
    }
    let mut text = String::from("\n");
    for def in maps.maps.values() {
        text.push_str(&output::print_map(def, &read_map(def)?));
    }
    write_stdout(&text)?;
    let lost = lost_records(&maps)?;
    if lost > 0 {
        // bpftrace's words, on stderr: standard output keeps only the program's output.
        eprintln!("Lost {lost} events");
    }
    // Closing each perf event detaches its program: concurrently, so that the kernel's waits overlap.
    let events: Vec<OwnedFd> = attached.into_iter().flat_map(|a| a.events).collect();
    crate::util::drop_concurrently(events);
    Ok(())
}
