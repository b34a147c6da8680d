//! Names for values a one-liner prints by name: attach points (`probe`, `func`), stacks (`kstack`,
//! `ustack`, from the stack map, as `name+offset` lines) and symbols (`ksym()`, `usym()`).
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use blazesym::symbolize::source::{Kernel, Process, Source};
use blazesym::symbolize::{cache, Input, Symbolized, Symbolizer};
use blazesym::Pid;

use crate::symbolize::{elfnames, perfmap};
use libbpf_rs::{MapCore, MapFlags, MapHandle};

use super::maps::STACK_DEPTH;

/// What output needs to name values; a table in tests.
pub trait Resolve {
    /// The name of attach point `idx`: its `probe` name, or its `func`.
    fn point(&self, idx: u64, func: bool) -> String;
    /// A stack's frames, innermost first (`name+offset`, or the address in hex), at most `limit` (0: all).
    fn stack(&self, id: i64, pid: Option<u32>, limit: usize) -> Vec<String>;
    /// An address's symbol (the function's name, without offset), or the address in hex.
    fn sym(&self, addr: u64, pid: Option<u32>) -> String;
}

/// A function's name and an offset into it.
type Named = (String, usize);
/// An address in a process, or (None) in the kernel.
type Place = (Option<u32>, u64);

/// Attach point names, the stack map and blazesym, for a live run.
pub struct Live<'a> {
    /// (probe, func) per attach point.
    pub points: Vec<(String, String)>,
    /// Stack maps by depth (0: the full depth).
    pub stacks: &'a std::collections::BTreeMap<usize, MapHandle>,
    /// User stacks walked with unwind tables: stored by id (struct stored_stack, bpf/stacks.h).
    unwound: Option<&'a MapHandle>,
    blaze: Symbolizer,
    cached: RefCell<HashSet<u32>>,
    /// (process or the kernel, address) -> function and offset, once looked up.
    names: RefCell<HashMap<Place, Option<Named>>>,
    /// What each user binary says of its names beyond blazesym (PLT stubs, public aliases).
    elf_names: RefCell<elfnames::Cache>,
    /// JIT compilers' perf maps, kept once read (crate::symbolize::perfmap).
    perf_maps: RefCell<perfmap::Cache>,
}

impl<'a> Live<'a> {
    pub fn new(
        points: Vec<(String, String)>,
        stacks: &'a std::collections::BTreeMap<usize, MapHandle>,
        unwound: Option<&'a MapHandle>,
    ) -> Self {
        Self {
            points,
            stacks,
            unwound,
            blaze: Symbolizer::builder()
                .enable_code_info(false)
                .enable_inlined_fns(false)
                .build(),
            cached: RefCell::new(HashSet::new()),
            names: RefCell::new(HashMap::new()),
            elf_names: RefCell::new(HashMap::new()),
            perf_maps: RefCell::new(HashMap::new()),
        }
    }

    /// Keeps what symbolizing `pid`'s addresses needs, while it lives (its frames still get names after it
    /// exits).
    pub fn remember(&self, pid: u32) {
        if self.cached.borrow_mut().insert(pid) {
            let _ = self
                .blaze
                .cache(&cache::Cache::Process(cache::Process::new(Pid::from(pid))));
            perfmap::refreshed(&mut self.perf_maps.borrow_mut(), pid);
        }
    }

    /// The function covering `addr` and the offset into it.
    fn lookup(&self, addr: u64, pid: Option<u32>) -> Option<Named> {
        if let Some(n) = self.names.borrow().get(&(pid, addr)) {
            return n.clone();
        }
        let src = match pid {
            None => Source::Kernel(Kernel {
                debug_syms: false,
                ..Kernel::default()
            }),
            Some(p) => {
                let mut process = Process::new(Pid::from(p));
                process.map_files = false;
                process.perf_map = false;
                Source::Process(process)
            }
        };
        let name = match self.blaze.symbolize_single(&src, Input::AbsAddr(addr)) {
            Ok(Symbolized::Sym(s)) => {
                // In a user binary, the file's own word: a PLT stub, the public alias, not a data
                // symbol (the frame is then unknown: its address).
                let vaddr = s.addr + s.offset as u64;
                let better = match (pid, s.module.as_deref()) {
                    (Some(_), Some(module)) => elfnames::cached(
                        &mut self.elf_names.borrow_mut(),
                        &module.to_string_lossy(),
                    )
                    .and_then(|n| n.better_at(vaddr, Some(&s.name))),
                    _ => None,
                };
                match better {
                    Some((b, _)) if b.is_empty() => None,
                    Some((b, start)) => Some((b, (vaddr - start) as usize)),
                    None => Some((crate::symbolize::demangle(&s.name), s.offset)),
                }
            }
            // Outside the process's files: JIT code its perf map may name.
            _ => pid.and_then(|p| {
                let mut maps = self.perf_maps.borrow_mut();
                let (name, start) = perfmap::refreshed(&mut maps, p).name(addr)?;
                Some((name.to_string(), (addr - start) as usize))
            }),
        };
        self.names.borrow_mut().insert((pid, addr), name.clone());
        name
    }
}

impl Live<'_> {
    /// A stack's frames from the stack map of its depth (bpf_get_stackid's ids).
    fn stack_map_frames(&self, id: i64, limit: usize) -> Vec<u64> {
        let Some(map) = self.stacks.get(&limit) else {
            return Vec::new();
        };
        if id < 0 {
            return Vec::new();
        }
        let Ok(Some(bytes)) = map.lookup(&(id as u32).to_ne_bytes(), MapFlags::ANY) else {
            return Vec::new();
        };
        bytes
            .chunks_exact(8)
            .map(|c| u64::from_ne_bytes(c.try_into().expect("8 bytes")))
            .take_while(|&a| a != 0)
            .collect()
    }
}

/// A stack walked with unwind tables, by its id (0: none), innermost first; its last frame may be a
/// marker of why the walk ended there.
fn unwound_frames(map: &MapHandle, id: i64) -> Vec<u64> {
    if id <= 0 {
        return Vec::new();
    }
    match map.lookup(&(id as u64).to_ne_bytes(), MapFlags::ANY) {
        // A stack ends at a zero, as bpftrace's (whose stack map is zero-filled) do: the kernel's
        // frame-pointer walk can leave one.
        Ok(Some(bytes)) => crate::bpf::stacks::stack_frames(&bytes)
            .into_iter()
            .take_while(|&a| a != 0)
            .collect(),
        _ => Vec::new(),
    }
}

impl Resolve for Live<'_> {
    fn point(&self, idx: u64, func: bool) -> String {
        self.points
            .get(idx as usize)
            .map(|(p, f)| if func { f.clone() } else { p.clone() })
            .unwrap_or_default()
    }

    fn stack(&self, id: i64, pid: Option<u32>, limit: usize) -> Vec<String> {
        let addrs = match (pid, self.unwound) {
            (Some(_), Some(map)) => unwound_frames(map, id),
            _ => self.stack_map_frames(id, limit),
        };
        let limit = if limit == 0 { STACK_DEPTH } else { limit };
        addrs
            .into_iter()
            .take(limit)
            .enumerate()
            .map(|(i, addr)| {
                if let Some(reason) = crate::unwind::marker_reason(addr) {
                    return crate::unwind::marker_name(reason, None);
                }
                // Return addresses (every frame but the innermost) are looked up one byte earlier: a call
                // at the end of a function returns past it. The offset shown is the return address's.
                // A zero (a stack walked into nothing) is shown as is, never looked up.
                if addr == 0 {
                    return "0x0".into();
                }
                let look = if i == 0 { addr } else { addr - 1 };
                match self.lookup(look, pid) {
                    Some((name, off)) => format!("{name}+{}", off + (addr - look) as usize),
                    None => format!("0x{addr:x}"),
                }
            })
            .collect()
    }

    fn sym(&self, addr: u64, pid: Option<u32>) -> String {
        match self.lookup(addr, pid) {
            Some((name, _)) => name,
            // As bpftrace, which streams the address as a pointer: a null one is `0`.
            None if addr == 0 => "0".into(),
            None => format!("0x{addr:x}"),
        }
    }
}
