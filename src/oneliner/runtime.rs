//! Running a one-liner: parse, check, create maps, generate and load a program per probe, attach, print
//! printf records as they come (ring buffer), and at the end run END and print every map.
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use libbpf_rs::{MapCore, MapFlags};

use super::ast::{Attach, Program};
use super::codegen::{
    self, PrintfSpec, ProbeEnv, RecordKind, MAP_OP_CLEAR, MAP_OP_PRINT, MAP_OP_ZERO, RECORD_EXIT,
    RECORD_MAP_OP, RECORD_PID,
};
use super::insn::{self, Insn};
use super::maps::{raw_fd, MapDef, Maps, LOST_RECORDS, LOST_STACKS};
use super::output;
use super::parser;
use super::points::{self, How, Point};
use super::resolve::Live;
use super::sema::{self, Info};
use super::ustack::UstackLink;
use crate::bpf::stacks::{loss_report, read_stats, unwind_report, unwind_table_report};
use crate::probes::{self, Matcher};
use crate::unwind::watch::ProcWatcher;
use crate::unwind::{UnwindMode, Unwinder};
use crate::util::{ktime_ns, write_stdout, StopFlag};

/// What `trace` was asked to do, free of clap.
#[derive(Debug, Clone, Default)]
pub struct TraceConfig {
    pub program: String,
    /// `stdin` for -e, else the file's name (in error messages).
    pub source_name: String,
    /// Parse and check only.
    pub dry_run: bool,
    /// --unsafe: system() and signal() are allowed.
    pub unsafe_: bool,
    /// Print each probe's BPF instructions.
    pub verbose: bool,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// -p: the target process.
    pub pid: Option<u32>,
    /// -c: a command to run and trace.
    pub command: Option<String>,
    /// -f json: bpftrace's NDJSON records.
    pub json: bool,
    /// -l: list the probes matching this pattern.
    pub list: Option<String>,
    /// Positional parameters: $1, $2...
    pub params: Vec<String>,
    /// How `ustack` is walked, and the most memory unwind tables may take (MiB).
    pub unwind: UnwindMode,
    pub unwind_memory_mib: u32,
}

/// Parses and checks; errors come out as bpftrace prints them (the line and `~` under the span).
pub fn compile_check(cfg: &TraceConfig) -> Result<(Program, Info)> {
    let render = |d: super::diag::Diag| {
        let text = d.render(&cfg.source_name, &cfg.program);
        anyhow!("{}", text.trim_end())
    };
    let program = parser::parse(&cfg.program).map_err(render)?;
    let info = sema::check_with_params(&program, &sema::Tracefs, &cfg.params).map_err(render)?;
    for w in &info.warnings {
        eprint!("{}", w.render_warning(&cfg.source_name, &cfg.program));
    }
    if let Some((name, span)) = info.unsafe_calls.first().filter(|_| !cfg.unsafe_) {
        return Err(render(super::diag::Diag::new(
            *span,
            format!("{name}() changes the system: it needs --unsafe"),
        )));
    }
    Ok((program, info))
}

/// system()'s command, run by sh as bpftrace runs it (while tracing goes on); its standard output.
fn run_command(command: &str) -> String {
    match std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .output()
    {
        Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
        Err(e) => format!("system(): {command}: {e}\n"),
    }
}

/// An attached probe: the program, the perf events and links that keep it attached.
struct Attached {
    _progs: Vec<OwnedFd>,
    events: Vec<OwnedFd>,
    links: Vec<OwnedFd>,
}

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

/// A loaded probe: attached, or (BEGIN/END) a program to run once.
type Loaded = (Option<Attached>, Option<(Attach, OwnedFd)>);

/// What attaching needs besides the program.
struct Env<'a> {
    info: &'a Info,
    maps: &'a Maps,
    verbose: bool,
    /// Where library names are looked up (-p).
    lib_pid: Option<u32>,
    /// The process uprobes fire in (-p, -c), else every process.
    target_pid: Option<u32>,
    /// -c's process.
    cpid: Option<u32>,
    params: &'a [String],
    start_ns: u64,
    /// ustack's walk with unwind tables, linked into the programs that take one.
    ustack: Option<&'a UstackLink>,
}

/// Expands one probe's attach points, generates and loads its program, and attaches it to every point
/// (`all_points`: the run's points so far; this probe's are appended).
fn load_and_attach(
    program: &Program,
    index: usize,
    env: &Env,
    printfs: &mut Vec<PrintfSpec>,
    all_points: &mut Vec<Point>,
) -> Result<Loaded> {
    let probe = &program.probes[index];
    let mut pts = Vec::new();
    // A uprobe point of a list whose function the library lacks is left out with a warning, as bpftrace
    // leaves it (sslsnoop.bt names functions of several OpenSSL versions); the probe needs one point.
    let mut skipped = None;
    for a in &probe.attach {
        match points::expand(a, env.lib_pid) {
            Ok(p) => pts.extend(p),
            Err(e)
                if probe.attach.len() > 1
                    && matches!(a.kind, Attach::Uprobe { .. })
                    && format!("{e:#}").contains("no function matches") =>
            {
                eprintln!("WARNING: {e:#}: left out");
                skipped.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    if let (true, Some(e)) = (pts.is_empty(), skipped) {
        return Err(e);
    }
    let prog_type = points::prog_type(&pts[0].how);
    if let Some(p) = pts.iter().find(|p| points::prog_type(&p.how) != prog_type) {
        bail!(
            "{}: one probe block mixes probe types that run different kinds of BPF programs ({} and {}): split it",
            probe.attach[0].raw,
            pts[0].probe,
            p.probe
        );
    }
    // A fentry/fexit program is loaded for its one function; before 5.15 (no BPF cookies) a program
    // cannot tell its points apart at run time (probe, func, a USDT probe's arguments): one program per
    // point, each knowing its own.
    // Tracepoints that hold a field `args` reads at different places: one program each, too.
    let per_point = matches!(pts[0].how, How::Fentry { .. })
        || env.info.args_vary.get(index).copied().unwrap_or(false)
        || (pts.len() > 1
            && !matches!(pts[0].how, How::Special)
            && !crate::bpf::kernel_has_cookies());
    if per_point {
        let mut progs = Vec::new();
        let mut events = Vec::new();
        let mut links = Vec::new();
        for p in pts {
            let one = std::slice::from_ref(&p);
            let at = all_points.len() as u64;
            let (prog, _) = load_probe(probe, index, env, printfs, one, at)?;
            if matches!(p.how, How::Fentry { .. }) {
                links.push(
                    points::attach_tracing(&prog, &p.how)
                        .with_context(|| format!("attaching {}", p.probe))?,
                );
            } else {
                match attach_point(
                    &prog,
                    &p,
                    env.target_pid,
                    at,
                    false,
                    &mut events,
                    &mut links,
                ) {
                    Ok(()) => {}
                    Err(e) if left_out(probe, &p, &e) => {
                        eprintln!("WARNING: {e:#}: left out");
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            progs.push(prog);
            all_points.push(p);
        }
        if progs.is_empty() {
            bail!(
                "{}: no point of the probe could be attached",
                probe.attach[0].raw
            );
        }
        return Ok((
            Some(Attached {
                _progs: progs,
                events,
                links,
            }),
            None,
        ));
    }
    let first = all_points.len() as u64;
    let (prog, needs_cookie) = load_probe(probe, index, env, printfs, &pts, first)?;
    if let How::Special = pts[0].how {
        all_points.extend(pts);
        return Ok((None, Some((probe.attach[0].kind.clone(), prog))));
    }
    let mut events = Vec::new();
    let mut links = Vec::new();
    let mut skipped = None;
    let mut attached = 0;
    for (i, p) in pts.iter().enumerate() {
        let cookie = first + i as u64;
        match attach_point(
            &prog,
            p,
            env.target_pid,
            cookie,
            needs_cookie,
            &mut events,
            &mut links,
        ) {
            Ok(()) => attached += 1,
            Err(e) if left_out(probe, p, &e) => {
                eprintln!("WARNING: {e:#}: left out");
                skipped.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    if let (0, Some(e)) = (attached, skipped) {
        return Err(e);
    }
    all_points.extend(pts);
    Ok((
        Some(Attached {
            _progs: vec![prog],
            events,
            links,
        }),
        None,
    ))
}

/// Attaches `prog` to point `p` (its perf events, with `cookie` where the program reads it).
fn attach_point(
    prog: &OwnedFd,
    p: &Point,
    target_pid: Option<u32>,
    cookie: u64,
    needs_cookie: bool,
    events: &mut Vec<OwnedFd>,
    links: &mut Vec<OwnedFd>,
) -> Result<()> {
    for ev in points::open_events(p, target_pid)? {
        let link = points::attach(prog, &ev, cookie, needs_cookie)
            .with_context(|| format!("attaching {}", p.probe))?;
        links.extend(link);
        events.push(ev);
    }
    Ok(())
}

/// Whether a kprobe point the kernel refuses (ENOENT: a function it lists but cannot probe, as
/// `blk_account_io_start` on 6.1) is left out of a probe that names others, as bpftrace leaves it.
fn left_out(probe: &super::ast::Probe, p: &Point, e: &anyhow::Error) -> bool {
    let enoent = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.raw_os_error() == Some(libc::ENOENT))
    }) || format!("{e:#}").contains("(os error 2)");
    probe.attach.len() > 1 && matches!(p.how, How::Kprobe { .. }) && enoent
}

/// Generates and loads the program of a probe for the points `pts` (run-wide indexes from `first`);
/// also says whether it reads its BPF cookie.
fn load_probe(
    probe: &super::ast::Probe,
    index: usize,
    env: &Env,
    printfs: &mut Vec<PrintfSpec>,
    pts: &[Point],
    first: u64,
) -> Result<(OwnedFd, bool)> {
    // A tracepoint's own fields, for a probe whose tracepoints differ in where theirs lie.
    let own_fields = match &pts[0].how {
        How::Tracepoint { category, event } if env.info.args_vary.get(index) == Some(&true) => {
            Some(super::tpformat::read_fields(category, event)?)
        }
        _ => None,
    };
    let penv = ProbeEnv {
        fields: own_fields.as_deref(),
        points: pts,
        first_point: first,
        start_ns: env.start_ns,
        cpid: env.cpid,
        params: env.params,
        unwound_ustack: env.ustack.is_some(),
    };
    let mut insns = codegen::probe_program(probe, index, env.info, env.maps, printfs, &penv)
        .with_context(|| probe.attach[0].raw.clone())?;
    let funcs = match env.ustack {
        Some(link) if insns.iter().any(super::ustack::is_local_call) => Some(insn::FuncInfo {
            records: link.link(&mut insns),
            btf_fd: link.btf_fd(),
        }),
        _ => None,
    };
    if env.verbose {
        eprintln!("{}", dump(&pts[0].probe, &insns));
    }
    let prog = insn::load_for(
        points::prog_type(&pts[0].how),
        points::attach_to(&pts[0].how),
        "bpfprof_trace",
        &insns,
        funcs.as_ref(),
    )
    .map_err(|e| {
        // The verifier's whole log with -v; one line without.
        match e.downcast_ref::<insn::Rejected>() {
            Some(r) if env.verbose => eprintln!("verifier log:\n{}", r.log),
            Some(_) => {
                return e.context(format!(
                    "loading the program of {} (-v shows the verifier's log)",
                    pts[0].probe
                ))
            }
            None => {}
        }
        e.context(format!("loading the program of {}", pts[0].probe))
    })?;
    Ok((prog, penv.needs_cookie(&insns)))
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

/// The instructions of a program, one per line, as the verifier writes them (`-v`).
fn dump(name: &str, insns: &[Insn]) -> String {
    let mut out = format!("{name}: {} instructions\n", insns.len());
    let mut i = 0;
    while i < insns.len() {
        out.push_str(&format!(
            "{i:4}: {}\n",
            insn::disasm(&insns[i], insns.get(i + 1))
        ));
        // A 16-byte load takes two slots.
        i += if insns[i].code == 0x18 { 2 } else { 1 };
    }
    out
}

/// Reads every entry of a map, its value summed over CPUs for per-CPU maps, as i64 slots.
fn read_map(def: &MapDef) -> Result<Vec<output::Entry>> {
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

/// What could not be recorded, summed over CPUs: (printf/exit records, stacks).
fn losses(maps: &Maps) -> Result<(u64, u64)> {
    let lost = crate::bpf::sum_percpu(&maps.lost, 2).context("reading the loss counters")?;
    Ok((lost[LOST_RECORDS as usize], lost[LOST_STACKS as usize]))
}

/// Ring-buffer records, copied out by the callback and handled in order by the main loop (a record may
/// ask for a map to be printed, which needs more than the callback has).
type Inbox = std::cell::RefCell<Vec<Vec<u8>>>;

extern "C" fn on_record(
    ctx: *mut std::ffi::c_void,
    data: *mut std::ffi::c_void,
    size: libbpf_sys::size_t,
) -> i32 {
    // SAFETY: ctx is the Inbox passed to ring_buffer__new, alive while the ring buffer is; data holds size
    // bytes for the length of this call.
    let (inbox, bytes) = unsafe {
        (
            &*(ctx as *const Inbox),
            std::slice::from_raw_parts(data as *const u8, size as usize),
        )
    };
    inbox.borrow_mut().push(bytes.to_vec());
    0
}

/// The printing side of a run.
struct Printer<'a> {
    maps: &'a Maps,
    printfs: Vec<PrintfSpec>,
    names: Live<'a>,
    json: bool,
}

impl Printer<'_> {
    /// Prints one map as bpftrace does.
    fn map_text(&self, def: &MapDef, shown: output::Shown) -> Result<String> {
        let entries = read_map(def)?;
        Ok(if self.json {
            output::map_json(def, &entries, &self.names, shown)
                .map(|l| l + "\n")
                .unwrap_or_default()
        } else {
            output::print_map(def, &entries, &self.names, shown)
        })
    }

    /// Handles one record; true at exit().
    fn record(&self, bytes: &[u8]) -> Result<bool> {
        if bytes.len() < 8 {
            return Ok(false);
        }
        let id = u64::from_ne_bytes(bytes[..8].try_into().expect("8 bytes"));
        if id == RECORD_EXIT {
            return Ok(true);
        }
        if id & RECORD_PID != 0 {
            self.names.remember((id & 0xffff_ffff) as u32);
            return Ok(false);
        }
        if id & RECORD_MAP_OP != 0 {
            let (op, idx) = ((id >> 32) & 0xff, (id & 0xffff_ffff) as usize);
            let top = ((id >> 40) & 0xffff) as usize;
            let div = bytes
                .get(8..16)
                .map_or(1, |b| i64::from_ne_bytes(b.try_into().expect("8 bytes")));
            let shown = output::Shown { top, div };
            if let Some(def) = self.maps.maps.values().nth(idx) {
                match op {
                    MAP_OP_PRINT => write_stdout(&self.map_text(def, shown)?)?,
                    MAP_OP_CLEAR => clear_map(def, false)?,
                    MAP_OP_ZERO => clear_map(def, true)?,
                    _ => {}
                }
            }
            return Ok(false);
        }
        if let Some(spec) = self.printfs.get(id as usize) {
            let (text, kind) = match spec.kind {
                RecordKind::Time => (output::local_time(&spec.format), "time"),
                // A line in text; bpftrace's JSON record holds it without its newline.
                RecordKind::Join => {
                    let line = output::join(&spec.format, &bytes[8..]);
                    (if self.json { line } else { line + "\n" }, "join")
                }
                RecordKind::Cat => (
                    std::fs::read_to_string(&spec.format).unwrap_or_default(),
                    "cat",
                ),
                RecordKind::Printf => {
                    let text = output::printf(&spec.format, &spec.args, &bytes[8..], &self.names);
                    (text, "printf")
                }
                RecordKind::System => {
                    let command =
                        output::printf(&spec.format, &spec.args, &bytes[8..], &self.names);
                    (run_command(&command), "syscall")
                }
            };
            if self.json {
                write_stdout(&(output::text_json(kind, &text) + "\n"))?;
            } else {
                write_stdout(&text)?;
            }
        }
        Ok(false)
    }

    /// Caches the processes whose user stacks or symbols were taken, while they live, so that their
    /// frames can be named at the end.
    fn remember_processes(&self) {
        let Some(pids) = &self.maps.pids else { return };
        let keys: Vec<Vec<u8>> = pids.keys().collect();
        for k in keys {
            if let Ok(b) = <[u8; 4]>::try_from(&k[..]) {
                self.names.remember(u32::from_ne_bytes(b));
            }
            let _ = pids.delete(&k);
        }
    }
}

/// Sets the word every probe checks first: from here on they do nothing.
fn stop_probes(maps: &Maps) -> Result<()> {
    maps.stop
        .update(&0u32.to_ne_bytes(), &1u64.to_ne_bytes(), MapFlags::ANY)
        .context("stopping the probes")
}

/// clear(@m) deletes every entry; zero(@m) sets every value to zero.
fn clear_map(def: &MapDef, zero: bool) -> Result<()> {
    let keys: Vec<Vec<u8>> = def.map.keys().collect();
    for k in keys {
        if !zero {
            let _ = def.map.delete(&k);
        } else if def.per_cpu {
            let cpus = libbpf_rs::num_possible_cpus()?;
            let values = vec![vec![0u8; def.value_size]; cpus];
            let _ = def.map.update_percpu(&k, &values, MapFlags::EXIST);
        } else {
            let _ = def
                .map
                .update(&k, &vec![0u8; def.value_size], MapFlags::EXIST);
        }
    }
    Ok(())
}

/// -c: the command, started but held before exec until tracing is attached.
struct Command {
    pid: libc::pid_t,
    gate: Option<OwnedFd>,
    status: Option<i32>,
}

impl Command {
    fn spawn(cmd: &str) -> Result<Self> {
        use std::ffi::CString;
        // As bpftrace: words split at spaces and run directly. A command that needs a shell runs through
        // sh: as `exec CMD` (so that the command is the traced process) unless it is several commands
        // (`a && b`, `a; b`, pipes), where sh stays the target.
        let shell = |c: &str| vec!["/bin/sh".to_string(), "-c".to_string(), c.to_string()];
        let words: Vec<String> = if cmd.contains(['|', '&', ';', '\n']) {
            shell(cmd)
        } else if cmd.contains(|ch: char| "<>()$`\\\"'*?[]{}~=".contains(ch)) {
            shell(&format!("exec {cmd}"))
        } else {
            let mut w: Vec<String> = cmd.split_whitespace().map(String::from).collect();
            if w.first().is_some_and(|f| f == "exec") {
                w.remove(0);
            }
            w
        };
        if words.is_empty() {
            bail!("-c: the command is empty");
        }
        let argv: Vec<CString> = words
            .iter()
            .map(|w| CString::new(w.as_str()))
            .collect::<Result<_, _>>()
            .context("-c: the command holds a NUL byte")?;
        let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        let mut fds = [0i32; 2];
        // SAFETY: a two-int array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error()).context("creating a pipe");
        }
        let (r, w) = (fds[0], fds[1]);
        // std's spawn waits for the exec, which here waits for the gate: so fork by hand. The child makes
        // only async-signal-safe calls (close, read, execvp, _exit) on memory prepared before the fork.
        // SAFETY: see above.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: in the child, before exec.
            unsafe {
                libc::close(w);
                let mut b = 0u8;
                libc::read(r, &mut b as *mut u8 as *mut libc::c_void, 1);
                libc::execvp(ptrs[0], ptrs.as_ptr());
                libc::_exit(127);
            }
        }
        // SAFETY: our copies of the pipe's ends; the write end is owned from here on.
        let gate = unsafe {
            libc::close(r);
            OwnedFd::from_raw_fd(w)
        };
        if pid < 0 {
            return Err(std::io::Error::last_os_error()).context("-c: fork");
        }
        if !Path::new(&words[0]).is_file() && probes::libs::on_path(&words[0]).is_none() {
            let mut c = Self {
                pid,
                gate: Some(gate),
                status: None,
            };
            c.kill();
            bail!("-c: no such command: {}", words[0]);
        }
        Ok(Self {
            pid,
            gate: Some(gate),
            status: None,
        })
    }

    /// Lets the command run.
    fn release(&mut self) {
        if let Some(g) = self.gate.take() {
            // SAFETY: a valid fd and one byte.
            unsafe { libc::write(g.as_raw_fd(), b"g".as_ptr() as *const libc::c_void, 1) };
        }
    }

    fn exited(&mut self) -> bool {
        if self.status.is_none() {
            let mut st = 0;
            // SAFETY: our child; WNOHANG.
            if unsafe { libc::waitpid(self.pid, &mut st, libc::WNOHANG) } == self.pid {
                self.status = Some(st);
            }
        }
        self.status.is_some()
    }

    fn kill(&mut self) {
        if self.status.is_none() {
            let mut st = 0;
            // SAFETY: our child, not yet reaped.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, &mut st, 0);
            }
            self.status = Some(st);
        }
    }
}

impl Drop for Command {
    /// A command never released (tracing failed to start) is killed rather than run untraced; one still
    /// running when the trace ends (exit(), -d, Ctrl-C) is killed too, as bpftrace does; either is reaped.
    fn drop(&mut self) {
        self.kill();
    }
}

/// -l: the probes a pattern matches, one per line.
fn list(pattern: &str, pid: Option<u32>) -> Result<()> {
    let program = parser::parse(&format!("{pattern} {{}}")).map_err(|d| {
        anyhow!(
            "-l {pattern:?}: {}",
            d.render("pattern", pattern).lines().next().unwrap_or("")
        )
    })?;
    let mut out = String::new();
    for a in program.probes.iter().flat_map(|p| &p.attach) {
        match &a.kind {
            // The list of kernel functions needs no kprobes.
            Attach::Kprobe { func, ret } | Attach::Fentry { func, ret } => {
                let kind = match (&a.kind, ret) {
                    (Attach::Kprobe { .. }, false) => "kprobe",
                    (Attach::Kprobe { .. }, true) => "kretprobe",
                    (_, false) => "fentry",
                    (_, true) => "fexit",
                };
                for f in probes::kernel_functions(&Matcher::new(func, false)?)? {
                    out.push_str(&format!("{kind}:{f}\n"));
                }
            }
            _ => {
                for p in points::expand(a, pid)? {
                    out.push_str(&p.probe);
                    out.push('\n');
                }
            }
        }
    }
    write_stdout(&out)
}

/// --dry-run: parses, checks and generates every probe's program (maps are created, as code generation
/// needs their descriptors; nothing is loaded or attached). Points that cannot be expanded here (a
/// library or a kernel function this machine lacks) are left out: the code is the same for any.
fn dry_run(cfg: &TraceConfig, program: &Program, info: &Info) -> Result<()> {
    let maps = match Maps::create(info) {
        Ok(m) => m,
        Err(e) => {
            eprintln!(
                "bpfprof: {} probes: the program parses and checks (its code was not generated: {e:#})",
                program.probes.len()
            );
            return Ok(());
        }
    };
    let mut printfs = Vec::new();
    let mut insns = 0;
    let mut first = 0;
    for (index, probe) in program.probes.iter().enumerate() {
        let mut pts = Vec::new();
        for a in &probe.attach {
            pts.extend(points::expand(a, cfg.pid).unwrap_or_default());
        }
        let penv = ProbeEnv {
            fields: None,
            points: &pts,
            first_point: first,
            start_ns: 0,
            cpid: None,
            params: &cfg.params,
            unwound_ustack: false,
        };
        first += pts.len() as u64;
        let code = codegen::probe_program(probe, index, info, &maps, &mut printfs, &penv)
            .with_context(|| probe.attach[0].raw.clone())?;
        insns += code.len();
    }
    eprintln!(
        "bpfprof: {} probes: the program parses, checks and compiles ({insns} BPF instructions)",
        program.probes.len()
    );
    Ok(())
}

/// Runs a program until Ctrl-C, exit(), the duration or (-c) the command's end.
pub fn run(cfg: &TraceConfig) -> Result<()> {
    if let Some(pattern) = &cfg.list {
        crate::bpf::ensure_tracefs()?;
        return list(pattern, cfg.pid);
    }
    let (program, info) = compile_check(cfg)?;
    if cfg.dry_run {
        return dry_run(cfg, &program, &info);
    }
    crate::bpf::prepare()?;
    crate::bpf::ensure_tracefs()?;
    let stop = StopFlag::install()?;
    let mut command = cfg.command.as_deref().map(Command::spawn).transpose()?;
    let maps = Maps::create(&info)?;
    // ustack with unwind tables: the walk to link in, and the tables of the target (or of every
    // process), loaded before tracing starts; processes announced later get theirs as they come.
    let ustack = (info.ustack && cfg.unwind != UnwindMode::Fp)
        .then(|| UstackLink::prepare(cfg.unwind))
        .transpose()?;
    let target = cfg.pid.or(command.as_ref().map(|c| c.pid as u32));
    let mut watcher = match &ustack {
        Some(link) => {
            let mut unwinder = Unwinder::new(
                libbpf_rs::MapHandle::try_from(&link.procs)?,
                &link.mappings,
                libbpf_rs::MapHandle::try_from(&link.chunks)?,
                cfg.unwind_memory_mib,
            )?;
            match target {
                Some(pid) => unwinder.preload(&[pid]),
                None => unwinder.preload(&crate::unwind::loader::running_processes()),
            }
            Some(ProcWatcher::start(&link.proc_events, Some(unwinder))?)
        }
        None => None,
    };
    let env = Env {
        info: &info,
        maps: &maps,
        verbose: cfg.verbose,
        lib_pid: cfg.pid,
        target_pid: cfg.pid.or(command.as_ref().map(|c| c.pid as u32)),
        cpid: command.as_ref().map(|c| c.pid as u32),
        params: &cfg.params,
        start_ns: ktime_ns(),
        ustack: ustack.as_ref(),
    };
    let mut printfs = Vec::new();
    let mut all_points = Vec::new();
    let mut attached = Vec::new();
    let mut begin = Vec::new();
    let mut end = Vec::new();
    for i in 0..program.probes.len() {
        let (a, special) = load_and_attach(&program, i, &env, &mut printfs, &mut all_points)?;
        attached.extend(a);
        match special {
            Some((Attach::Begin, p)) => begin.push(p),
            Some((_, p)) => end.push(p),
            None => {}
        }
    }
    let n_points = all_points.len();
    let printer = Printer {
        maps: &maps,
        printfs,
        names: Live::new(
            all_points
                .iter()
                .map(|p| (p.probe.clone(), p.func.clone()))
                .collect(),
            &maps.stacks,
            ustack.as_ref().map(|l| &l.stacks),
        ),
        json: cfg.json,
    };
    if cfg.json {
        write_stdout(&format!(
            "{}\n",
            output::json_line(
                &serde_json::json!({"type": "attached_probes", "data": {"probes": n_points}})
            )
        ))?;
    } else {
        write_stdout(&format!(
            "Attaching {n_points} probe{}...\n",
            if n_points == 1 { "" } else { "s" }
        ))?;
    }
    let inbox: Inbox = std::cell::RefCell::new(Vec::new());
    // SAFETY: the callback's ctx (inbox) outlives the ring buffer, freed below.
    let rb = unsafe {
        libbpf_sys::ring_buffer__new(
            raw_fd(&maps.ringbuf),
            Some(on_record),
            &inbox as *const Inbox as *mut _,
            std::ptr::null(),
        )
    };
    if rb.is_null() {
        bail!("opening the printf ring buffer failed");
    }
    let mut exited = false;
    // Handles the records received, in order, up to exit() (records after it are not printed).
    let drain = |printer: &Printer, exited: &mut bool| -> Result<()> {
        let records = std::mem::take(&mut *inbox.borrow_mut());
        for r in records {
            if *exited {
                break;
            }
            *exited = printer.record(&r)?;
        }
        Ok(())
    };
    for p in &begin {
        run_once(p)?;
    }
    if let Some(c) = command.as_mut() {
        c.release();
    }
    let started = Instant::now();
    let deadline = cfg.duration.and_then(|d| started.checked_add(d));
    loop {
        // SAFETY: a live ring buffer.
        // A short timeout: a signal that lands just before the poll is seen within 25 ms.
        unsafe { libbpf_sys::ring_buffer__poll(rb, 25) };
        drain(&printer, &mut exited)?;
        // A reader that went away (`| head`) ends the trace, as it ends bpftrace.
        if exited
            || crate::util::stdout_closed()
            || stop.raised()
            || deadline.is_some_and(|d| Instant::now() >= d)
            || command.as_mut().is_some_and(|c| c.exited())
        {
            break;
        }
        printer.remember_processes();
        if let Some(w) = &watcher {
            for (pid, _) in w.announced() {
                printer.names.remember(pid);
            }
        }
    }
    stop_probes(&maps)?;
    for a in &attached {
        a.disable();
    }
    printer.remember_processes();
    // SAFETY: a live ring buffer: what the probes sent before they stopped.
    unsafe { libbpf_sys::ring_buffer__consume(rb) };
    drain(&printer, &mut exited)?;
    inbox.borrow_mut().clear();
    for p in &end {
        run_once(p)?;
    }
    // SAFETY: a live ring buffer.
    unsafe { libbpf_sys::ring_buffer__consume(rb) };
    // What END printed (records after an exit() of the main run were dropped already).
    drain(&printer, &mut false)?;
    // SAFETY: a live ring buffer, not used again.
    unsafe { libbpf_sys::ring_buffer__free(rb) };
    // bpftrace ends the run with two newlines before the maps, in JSON too.
    let mut text = String::from("\n\n");
    for def in maps.maps.values() {
        text.push_str(&printer.map_text(def, output::Shown::ALL)?);
    }
    write_stdout(&text)?;
    let (lost, stacks) = losses(&maps)?;
    if lost > 0 {
        if cfg.json {
            write_stdout(&format!(
                "{}\n",
                output::json_line(
                    &serde_json::json!({"type": "lost_events", "data": {"events": lost}})
                )
            ))?;
        } else {
            // bpftrace's words, on stderr: standard output keeps only the program's output.
            eprintln!("Lost {lost} events");
        }
    }
    if stacks > 0 {
        eprintln!("WARNING: {stacks} stacks could not be stored (the stack map was full, or two stacks' hashes collided): they print empty");
    }
    if let (Some(link), Some(w)) = (&ustack, watcher.as_mut()) {
        w.stop();
        let stats = read_stats(&link.stats)?;
        let mut lines = loss_report(&stats, link.stacks.max_entries());
        if let Some(t) = w.unwind_stats() {
            lines.extend(unwind_table_report(t, cfg.unwind_memory_mib));
        }
        lines.extend(unwind_report(&stats));
        for line in lines {
            eprintln!("{line}");
        }
    }
    // Closing each link and perf event detaches its program: concurrently, so that the kernel's waits
    // overlap.
    let fds: Vec<OwnedFd> = attached
        .into_iter()
        .flat_map(|a| a.links.into_iter().chain(a.events))
        .collect();
    crate::util::drop_concurrently(fds);
    Ok(())
}
