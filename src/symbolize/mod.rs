//! Symbolization of kernel and user frames with one reused blazesym Symbolizer.
//!
//! Processes that may exit before the trace ends are cached while they live (`remember`): blazesym keeps
//! their memory mappings, and we keep their module list, so their frames still get names afterwards.
//! A process whose mappings were read (`remember_seen`) but that was gone before blazesym could cache it
//! is named from its mapped files themselves (file offsets in ELF files).
pub mod elfnames;
pub mod perfmap;
pub mod stackbook;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use blazesym::symbolize::source::{Elf, Kernel, Process, Source};
use blazesym::symbolize::{cache, CodeInfo, Input, Sym, Symbolized, Symbolizer as Blaze};
use blazesym::Pid;

use crate::render::pprof::{self, FileMapping, Origin};
use crate::render::Frame;
use crate::unwind::{marker_name, marker_reason};

/// One mapped file of a process: [start, end), the file's offset there, its name and (a real file) path.
#[derive(Clone, Debug)]
struct Module {
    start: u64,
    end: u64,
    offset: u64,
    name: String,
    path: Option<String>,
}

/// Names frames. Every frame becomes one or more names (inlined functions expand into several),
/// ordered innermost first, as stacks are.
pub struct Symbolizer {
    blaze: Blaze,
    modules: HashMap<u32, Vec<Module>>,
    /// Processes blazesym has cached (it names their frames after they exit).
    cached: HashSet<u32>,
    /// One shared Frame per distinct name, so that stacks can be compared by pointer.
    interned: HashMap<String, Frame>,
    /// Where each user function was first seen (its file's mapping, an address), for pprof's locations.
    origins: HashMap<Frame, Origin>,
    /// Mapped files by path and where they were mapped, with their build-ids (read once each).
    files: HashMap<(String, u64), Arc<FileMapping>>,
    build_ids: HashMap<String, Option<String>>,
    /// What each mapped file says of its code's names beyond blazesym (elfnames), read once each.
    elf_names: elfnames::Cache,
    /// Exited processes forgotten since blazesym was last started afresh (its caches keep them).
    forgotten: usize,
    /// Processes seen gone at the last `forget_exited_seen_twice` (forgotten if still gone at the next).
    seen_gone: HashSet<u32>,
    /// Whether any exited process was forgotten (its stacks named later show [unknown]).
    forgot_any: bool,
    opts: NameOptions,
    /// JIT compilers' perf maps, as read while their processes lived (kept after they exit).
    perf_maps: perfmap::Cache,
}

/// The names of a batch of addresses: each address's function, and (--inline) the calls inlined
/// there, innermost first.
#[derive(Default)]
struct AddrNames {
    outer: HashMap<u64, Frame>,
    inlined: HashMap<u64, Vec<Frame>>,
}

/// What frames' names say beyond the function: the functions inlined at each address (`--inline`),
/// and source lines (`--lines`), from DWARF where a binary or its debug file has it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NameOptions {
    /// Each address's inlined calls as frames of their own, innermost first: `callee [inlined]`.
    pub inline: bool,
    /// `name (file:line)`: the line of the address (in the innermost inlined function), or of the
    /// call (in the functions around it).
    pub lines: bool,
}

/// The marker of a frame that is a call the compiler inlined into the frame after it.
pub const INLINED: &str = " [inlined]";

/// The name of a frame in anonymous executable memory (JIT code) that no perf map names, and of
/// such mappings.
pub const JIT: &str = "[jit]";

/// The name of a frame no symbol covers.
pub const UNKNOWN: &str = "[unknown]";

impl Symbolizer {
    #[cfg(test)]
    pub fn new() -> Self {
        Self::with_options(NameOptions::default())
    }

    pub fn with_options(opts: NameOptions) -> Self {
        // blazesym reports inlined calls only along with code info (both from DWARF's line tables).
        let blaze = Blaze::builder()
            .enable_code_info(opts.lines || opts.inline)
            .enable_inlined_fns(opts.inline)
            // Demangled here instead (`demangle`): blazesym runs the C++ demangler on any name of unknown
            // language, which mangles plain C names such as `L2_0` into `_0`.
            .enable_demangling(false)
            .build();
        Self {
            blaze,
            modules: HashMap::new(),
            cached: HashSet::new(),
            interned: HashMap::new(),
            origins: HashMap::new(),
            files: HashMap::new(),
            build_ids: HashMap::new(),
            elf_names: HashMap::new(),
            forgotten: 0,
            seen_gone: HashSet::new(),
            forgot_any: false,
            opts,
            perf_maps: HashMap::new(),
        }
    }

    /// For one-shot runs, called every few seconds once every announced stack is named: forgets the
    /// processes that were already gone at the previous call (their stacks announced since have been
    /// named), so that memory does not grow with every process that ever ran.
    pub fn forget_exited_seen_twice(&mut self) {
        let mut gone: HashSet<u32> = self.exited().collect();
        let twice: Vec<u32> = gone.intersection(&self.seen_gone).copied().collect();
        for pid in &twice {
            gone.remove(pid);
        }
        self.seen_gone = gone;
        self.forgot_any |= !twice.is_empty();
        self.drop_processes(&twice);
    }

    /// The processes kept here that have exited.
    fn exited(&self) -> impl Iterator<Item = u32> + '_ {
        self.modules
            .keys()
            .copied()
            .filter(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    }

    /// Drops what was kept of `pids`. blazesym's caches keep them too (~10 KB each, measured as heap
    /// growth on an idle host): it is started afresh once 128 are gone; live processes are then named
    /// from their mapped files until cached again.
    fn drop_processes(&mut self, pids: &[u32]) {
        for pid in pids {
            self.modules.remove(pid);
            self.cached.remove(pid);
            self.perf_maps.remove(pid);
        }
        self.forgotten += pids.len();
        if self.forgotten > 128 {
            self.blaze = Self::with_options(self.opts).blaze;
            self.cached.clear();
            self.files.clear(); // a cache: the origins keep the mappings they name
            self.elf_names.clear();
            self.forgotten = 0;
        }
    }

    /// Reads what JIT compilers appended to the perf maps of the processes seen so far: called every
    /// second or so while tracing, so that a map is read while its process lives (a runtime may delete
    /// it at exit, before stacks read at the end are named). One listing of /tmp, not a look per process.
    pub fn read_perf_maps(&mut self) {
        let Ok(dir) = std::fs::read_dir("/tmp") else {
            return;
        };
        for entry in dir.flatten() {
            let name = entry.file_name();
            let pid = name
                .to_str()
                .and_then(|n| n.strip_prefix("perf-")?.strip_suffix(".map")?.parse().ok());
            if let Some(pid) = pid.filter(|p| self.modules.contains_key(p)) {
                perfmap::refreshed(&mut self.perf_maps, pid);
            }
        }
    }

    /// Whether an exited process was forgotten during the run.
    pub fn forgot_any(&self) -> bool {
        self.forgot_any
    }

    /// Caches what symbolizing `pid` needs, while it lives. Best effort: a process that is already gone
    /// is not an error (its frames fall back to [unknown]).
    pub fn remember(&mut self, pid: u32) {
        if !self.modules.contains_key(&pid) {
            let _ = self.refresh(pid);
        }
    }

    /// For a process announced while tracing, once per program it runs (so what was kept of it is stale),
    /// with the mappings read at once then (`maps`; None if it was gone already): cached again if it
    /// lives, else named from those mappings' files.
    pub fn remember_seen(&mut self, pid: u32, maps: Option<&str>) {
        if self.refresh(pid) {
            return;
        }
        if let Some(maps) = maps {
            self.modules.insert(pid, parse_modules(maps));
            self.cached.remove(&pid);
        }
    }

    /// Reads `pid`'s mappings again (it may have loaded a library or exec'd since). A process that is gone
    /// keeps what was cached before (and false is returned).
    fn refresh(&mut self, pid: u32) -> bool {
        let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
            return false;
        };
        if self
            .blaze
            .cache(&cache::Cache::Process(cache::Process::new(Pid::from(pid))))
            .is_ok()
        {
            self.cached.insert(pid);
        }
        self.modules.insert(pid, parse_modules(&maps));
        true
    }

    /// Drops what was kept of processes that have exited (continuous mode: their stacks are named
    /// already).
    pub fn forget_exited(&mut self) {
        let gone: Vec<u32> = self.exited().collect();
        self.drop_processes(&gone);
    }

    /// Makes sure the cached mappings of `pid` cover every address of `stacks`: code mapped after the process
    /// was first cached (dlopen, exec, or libc of a process first seen inside ld.so) would otherwise get no
    /// names. Re-reads them when not, which works while the process lives.
    fn cover(&mut self, pid: u32, stacks: &[&[u64]]) {
        let stale = match self.modules.get(&pid) {
            None => true,
            Some(ms) => stacks
                .iter()
                .flat_map(|s| lookup_addrs(s))
                .any(|a| module_at(ms, a).is_none()),
        };
        if stale {
            let _ = self.refresh(pid);
        }
    }

    /// Loads the kernel's symbols now (parsing /proc/kallsyms takes tens of ms), so that it happens while a
    /// tool samples rather than after.
    pub fn warm_kernel(&self) {
        let _ = self
            .blaze
            .symbolize_single(&kernel_source(), Input::AbsAddr(u64::MAX));
    }

    /// Names every frame of the given kernel stacks (`stacks`: id -> addresses, innermost first).
    pub fn kernel_stacks(
        &mut self,
        ids: &HashSet<u64>,
        stacks: &HashMap<u64, Vec<u64>>,
    ) -> HashMap<u64, Arc<[Frame]>> {
        let src = kernel_source();
        let wanted: Vec<&[u64]> = ids
            .iter()
            .filter_map(|id| stacks.get(id).map(Vec::as_slice))
            .collect();
        let names = self.name_addrs(&src, &wanted, None);
        ids.iter()
            .filter_map(|&id| Some((id, frame_names(stacks.get(&id)?, &names))))
            .collect()
    }

    /// Names every frame of the given user stacks, each of its process: (pid, stack id) -> names.
    pub fn user_stacks(
        &mut self,
        wanted: &HashSet<(u32, u64)>,
        stacks: &HashMap<u64, Vec<u64>>,
    ) -> HashMap<(u32, u64), Arc<[Frame]>> {
        let mut by_pid: HashMap<u32, Vec<u64>> = HashMap::new();
        for &(pid, id) in wanted {
            by_pid.entry(pid).or_default().push(id);
        }
        let mut out = HashMap::with_capacity(wanted.len());
        for (pid, ids) in by_pid {
            let addrs: Vec<&[u64]> = ids
                .iter()
                .filter_map(|id| stacks.get(id).map(|s| real_frames(s)))
                .collect();
            self.cover(pid, &addrs);
            let mut process = Process::new(Pid::from(pid));
            // Read binaries by path, not through /proc/PID/map_files: that still works after the process exits.
            process.map_files = false;
            // Perf maps are read here, and kept (`perfmap`).
            process.perf_map = false;
            let src = Source::Process(process);
            let names = self.name_addrs(&src, &addrs, Some(pid));
            for id in ids {
                if let Some(stack) = stacks.get(&id) {
                    out.insert((pid, id), self.user_frame_names(pid, stack, &names));
                }
            }
        }
        out
    }

    /// A user stack's names; a last frame that marks where an unwind-table walk stopped is named for its
    /// reason and the file of the frame before it (`[unwind stopped: no CFI in libfoo.so]`).
    fn user_frame_names(&mut self, pid: u32, stack: &[u64], names: &AddrNames) -> Arc<[Frame]> {
        let real = real_frames(stack);
        let named = frame_names(real, names);
        let Some(reason) = stack.last().and_then(|&a| marker_reason(a)) else {
            return named;
        };
        let module = real
            .last()
            .and_then(|&a| self.modules.get(&pid).and_then(|ms| module_at(ms, a)))
            .map(|m| m.name.clone());
        let marker = marker_name(reason, module.as_deref());
        let marker = Arc::clone(
            self.interned
                .entry(marker)
                .or_insert_with_key(|n| Frame::from(n.as_str())),
        );
        named.iter().cloned().chain([marker]).collect()
    }

    /// Symbolizes the distinct lookup addresses of `stacks` in one batch: lookup address -> names.
    fn name_addrs(&mut self, src: &Source, stacks: &[&[u64]], pid: Option<u32>) -> AddrNames {
        let modules = pid.and_then(|p| self.modules.get(&p)).map(Vec::as_slice);
        let mut lookup: Vec<u64> = stacks.iter().flat_map(|s| lookup_addrs(s)).collect();
        lookup.sort_unstable();
        lookup.dedup();
        // A process blazesym has not cached (as it runs now) is gone: its files, through the mappings we
        // kept, name it.
        let (results, from_files) = match (pid, modules) {
            (Some(p), Some(ms)) if !self.cached.contains(&p) => {
                (Vec::new(), self.name_from_files(ms, &lookup))
            }
            _ => (
                self.blaze
                    .symbolize(src, Input::AbsAddr(&lookup))
                    .unwrap_or_default(),
                HashMap::new(),
            ),
        };
        // JIT code (outside any mapped file): named by the process's perf map, read up to now.
        let jit = match (pid, modules) {
            (Some(p), Some(ms)) if lookup.iter().any(|&a| !in_file(ms, a)) => {
                Some((perfmap::refreshed(&mut self.perf_maps, p), ms))
            }
            _ => None,
        };
        let mut names = AddrNames::default();
        names.outer.reserve(lookup.len());
        for (i, &addr) in lookup.iter().enumerate() {
            let jit_name = jit
                .filter(|(_, ms)| !in_file(ms, addr))
                .and_then(|(map, _)| map.name(addr));
            if let Some((name, _)) = jit_name {
                names
                    .outer
                    .insert(addr, intern(&mut self.interned, name.to_string()));
                continue;
            }
            let sym = match (results.get(i), from_files.get(&addr)) {
                (Some(Symbolized::Sym(sym)), _) => Some(sym),
                (_, Some(sym)) => Some(sym),
                _ => None,
            };
            let found = sym.map(|s| &*s.name);
            // The file's own word on it: a PLT stub, the public alias, or a data symbol's name.
            let better = modules.and_then(|ms| module_at(ms, addr)).and_then(|m| {
                let names = elfnames::cached(&mut self.elf_names, m.path.as_deref()?)?;
                names.better_name(addr - m.start + m.offset, found)
            });
            let name = match (better, found) {
                (Some(b), _) if b.is_empty() => unknown_name(addr, modules),
                (Some(b), _) => demangle(&b),
                (None, Some(found)) => demangle(found),
                (None, None) => unknown_name(addr, modules),
            };
            let name = with_line(self.opts, name, sym.and_then(|s| s.code_info.as_deref()));
            let frame = intern(&mut self.interned, name);
            let mut inlined = Vec::new();
            if self.opts.inline {
                // blazesym lists them outermost first; stacks run innermost first.
                for f in sym.iter().flat_map(|s| s.inlined.iter()).rev() {
                    let name = format!("{}{INLINED}", demangle(&f.name));
                    let name = with_line(self.opts, name, f.code_info.as_ref());
                    inlined.push(intern(&mut self.interned, name));
                }
            }
            if let Some(m) = modules.and_then(|ms| module_at(ms, addr)) {
                for frame in inlined.iter().chain([&frame]) {
                    if self.origins.contains_key(frame) {
                        continue;
                    }
                    // The executable is the process's first mapped file.
                    let main = modules
                        .and_then(|ms| ms.iter().find(|x| x.path.is_some()))
                        .is_some_and(|first| first.path == m.path);
                    let mapping = file_mapping(&mut self.files, &mut self.build_ids, m, main);
                    if let Some(mapping) = mapping {
                        let origin = Origin {
                            mapping,
                            address: addr,
                        };
                        self.origins.insert(Arc::clone(frame), origin);
                    }
                }
            }
            if !inlined.is_empty() {
                names.inlined.insert(addr, inlined);
            }
            names.outer.insert(addr, frame);
        }
        names
    }

    /// Where a user function was first seen: its file's mapping and an address in it.
    pub fn origin(&self, name: &str) -> Option<Origin> {
        self.origins.get(name).cloned()
    }

    /// Names `addrs` from the ELF files mapped there (`modules`), by file offset: address -> symbol.
    fn name_from_files(&self, modules: &[Module], addrs: &[u64]) -> HashMap<u64, Sym<'static>> {
        let mut by_file: HashMap<&str, Vec<(u64, u64)>> = HashMap::new();
        for &addr in addrs {
            if let Some(m) = module_at(modules, addr) {
                if let Some(path) = &m.path {
                    let offset = addr - m.start + m.offset;
                    by_file.entry(path).or_default().push((addr, offset));
                }
            }
        }
        let mut names = HashMap::new();
        for (path, pairs) in by_file {
            let offsets: Vec<u64> = pairs.iter().map(|p| p.1).collect();
            let src = Source::Elf(Elf::new(path));
            let Ok(results) = self.blaze.symbolize(&src, Input::FileOffset(&offsets)) else {
                continue;
            };
            for ((addr, _), r) in pairs.iter().zip(results) {
                if let Symbolized::Sym(sym) = r {
                    names.insert(*addr, sym.into_owned());
                }
            }
        }
        names
    }
}

/// The mapping of a module's file where this module maps it (so that the addresses seen there fall
/// inside it), with the file's build-id (read once per file).
fn file_mapping(
    files: &mut HashMap<(String, u64), Arc<FileMapping>>,
    build_ids: &mut HashMap<String, Option<String>>,
    m: &Module,
    main: bool,
) -> Option<Arc<FileMapping>> {
    let path = m.path.as_ref()?;
    let mapping = files.entry((path.clone(), m.start)).or_insert_with(|| {
        let build_id = build_ids
            .entry(path.clone())
            .or_insert_with(|| file_build_id(path))
            .clone();
        Arc::new(FileMapping {
            path: path.clone(),
            start: m.start,
            limit: m.end,
            offset: m.offset,
            build_id,
            main,
        })
    });
    Some(Arc::clone(mapping))
}

/// The GNU build-id of an ELF file, in hex.
fn file_build_id(path: &str) -> Option<String> {
    use object::Object;
    let file = std::fs::File::open(path).ok()?;
    // SAFETY: read-only map of a file; a binary changed under us gives a wrong id at worst, never UB we
    // rely on (object reads it as plain bytes).
    let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
    let elf = object::File::parse(&*map).ok()?;
    elf.build_id().ok().flatten().map(pprof::hex)
}

/// The running kernel's build-id, from /sys/kernel/notes.
pub fn kernel_build_id() -> Option<String> {
    pprof::build_id_of_notes(&std::fs::read("/sys/kernel/notes").ok()?)
}

/// Kernel symbols from /proc/kallsyms (a vmlinux with DWARF is slow to parse and rarely installed).
fn kernel_source() -> Source<'static> {
    Source::Kernel(Kernel {
        debug_syms: false,
        ..Kernel::default()
    })
}

/// The addresses to look up for a stack, innermost first. Every frame but the innermost is a return
/// address, which may point past the end of the calling function (a call as its last instruction), so the
/// byte before it is looked up instead.
fn lookup_addrs(stack: &[u64]) -> impl Iterator<Item = u64> + '_ {
    stack
        .iter()
        .enumerate()
        .map(|(i, &a)| if i == 0 { a } else { a.saturating_sub(1) })
}

/// A stack without its last frame where that is an unwind marker (crate::unwind::MARKER).
fn real_frames(stack: &[u64]) -> &[u64] {
    match stack.split_last() {
        Some((&last, rest)) if marker_reason(last).is_some() => rest,
        _ => stack,
    }
}

/// One shared Frame per distinct name.
fn intern(interned: &mut HashMap<String, Frame>, name: String) -> Frame {
    Arc::clone(
        interned
            .entry(name)
            .or_insert_with_key(|n| Frame::from(n.as_str())),
    )
}

/// `name (file:line)` with --lines where DWARF gives the line, else `name`.
fn with_line(opts: NameOptions, name: String, code: Option<&CodeInfo>) -> String {
    match code {
        Some(c) if opts.lines => {
            let file = Path::new(&*c.file)
                .file_name()
                .map_or_else(|| c.file.to_string_lossy(), |f| f.to_string_lossy());
            match c.line {
                Some(line) => format!("{name} ({file}:{line})"),
                None => format!("{name} ({file})"),
            }
        }
        _ => name,
    }
}

fn frame_names(stack: &[u64], names: &AddrNames) -> Arc<[Frame]> {
    lookup_addrs(stack)
        .flat_map(|a| {
            let inlined = names.inlined.get(&a).into_iter().flatten().cloned();
            let outer = names
                .outer
                .get(&a)
                .cloned()
                .unwrap_or_else(|| Frame::from(UNKNOWN));
            inlined.chain([outer])
        })
        .collect()
}

/// Demangles Rust (legacy `_ZN..17h<hash>E` and v0 `_R`) and C++ (`_Z`) names; anything else, a C name
/// among them, is returned as it is.
pub fn demangle(name: &str) -> String {
    if !name.starts_with("_Z") && !name.starts_with("_R") && !name.starts_with("__Z") {
        return name.to_string();
    }
    if let Ok(d) = rustc_demangle::try_demangle(name) {
        return format!("{d:#}"); // without the hash
    }
    cpp_demangle::Symbol::new(name)
        .ok()
        .and_then(|s| s.demangle().ok())
        .unwrap_or_else(|| name.to_string())
}

/// The mapping that holds `addr` (`modules` sorted by address, as /proc/PID/maps lists them).
/// Whether `addr` lies in a mapped file (or the vDSO's like), not in anonymous memory: JIT code, or
/// nothing mapped.
fn in_file(modules: &[Module], addr: u64) -> bool {
    module_at(modules, addr).is_some_and(|m| m.name != JIT)
}

fn module_at(modules: &[Module], addr: u64) -> Option<&Module> {
    let i = modules.partition_point(|m| m.start <= addr);
    modules[..i].last().filter(|m| addr < m.end)
}

/// `[unknown]`, with the module's name where the address falls in a mapped file: `[unknown] (libc.so.6)`.
fn unknown_name(addr: u64, modules: Option<&[Module]>) -> String {
    let module = modules.and_then(|ms| module_at(ms, addr));
    match module {
        Some(m) if m.name == JIT => JIT.to_string(),
        Some(m) => format!("{UNKNOWN} ({})", m.name),
        None => UNKNOWN.to_string(),
    }
}

/// The file-backed mappings of /proc/PID/maps, named by the file's base name ("[vdso]" and the like
/// kept), and anonymous executable ones (JIT code), named [jit].
fn parse_modules(maps: &str) -> Vec<Module> {
    maps.lines()
        .filter_map(|line| {
            let mut it = line.split_whitespace();
            let range = it.next()?;
            let perms = it.next()?;
            let offset = it.next()?;
            let path = match it.nth(2) {
                Some(path) => path,
                None if perms.contains('x') => JIT,
                None => return None,
            };
            let (start, end) = range.split_once('-')?;
            let (name, file) = if path.starts_with('[') {
                (path.to_string(), None)
            } else {
                let name = Path::new(path).file_name()?.to_string_lossy().into_owned();
                (name, path.starts_with('/').then(|| path.to_string()))
            };
            Some(Module {
                start: u64::from_str_radix(start, 16).ok()?,
                end: u64::from_str_radix(end, 16).ok()?,
                offset: u64::from_str_radix(offset, 16).ok()?,
                name,
                path: file,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c0000000-55d0c0001000 r--p 00000000 fe:01 123 /usr/bin/burn
7f0000000000-7f0000200000 r-xp 00028000 fe:01 456 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000300000-7f0000301000 rw-p 00000000 00:00 0
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0 [vdso]
";

    #[test]
    fn only_mangled_names_are_demangled() {
        assert_eq!(demangle("L2_0"), "L2_0");
        assert_eq!(demangle("main"), "main");
        assert_eq!(
            demangle("_ZN4burn6Worker4spinEm"),
            "burn::Worker::spin(unsigned long)"
        );
        assert_eq!(
            demangle("_ZN6rsburn4burn6Worker4spin17h0123456789abcdefE"),
            "rsburn::burn::Worker::spin"
        );
        assert_eq!(demangle("_RNvCs1234_6rsburn3run"), "rsburn::run");
        assert_eq!(demangle("_Znot-a-name"), "_Znot-a-name");
    }

    #[test]
    fn modules_are_named_by_file() {
        let ms = parse_modules(MAPS);
        assert_eq!(ms.len(), 3);
        assert_eq!(
            unknown_name(0x7f0000000100, Some(&ms)),
            "[unknown] (libc.so.6)"
        );
        assert_eq!(
            unknown_name(0x7ffd00000010, Some(&ms)),
            "[unknown] ([vdso])"
        );
        assert_eq!(unknown_name(0x7f0000300010, Some(&ms)), "[unknown]");
        assert_eq!(unknown_name(0x1, None), "[unknown]");
    }

    #[test]
    fn mappings_keep_file_offsets_and_paths() {
        let ms = parse_modules(MAPS);
        assert_eq!(ms[1].offset, 0x28000);
        assert_eq!(
            ms[1].path.as_deref(),
            Some("/usr/lib/x86_64-linux-gnu/libc.so.6")
        );
        assert_eq!(ms[2].path, None);
    }

    #[inline(never)]
    fn a_function_to_find() -> u64 {
        std::hint::black_box(7)
    }

    /// How a process that exited before blazesym cached it is named: from its files, by the offsets of
    /// the mappings kept when it was announced (this process's own, here).
    #[test]
    fn frames_are_named_from_the_mapped_files() {
        let maps = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps");
        let modules = parse_modules(&maps);
        let addr = a_function_to_find as *const () as u64;
        assert_eq!(a_function_to_find(), 7);
        let syms = Symbolizer::new();
        let names = syms.name_from_files(&modules, &[addr + 1]);
        let name = demangle(&names[&(addr + 1)].name);
        assert!(name.ends_with("a_function_to_find"), "{name}");
    }

    #[test]
    fn lines_are_added_only_when_asked() {
        let code = CodeInfo {
            dir: None,
            file: std::borrow::Cow::Borrowed(std::ffi::OsStr::new("src/lib/loop.c")),
            line: Some(42),
            column: Some(7),
            _non_exhaustive: (),
        };
        let lines = NameOptions {
            inline: false,
            lines: true,
        };
        assert_eq!(with_line(lines, "f".into(), Some(&code)), "f (loop.c:42)");
        assert_eq!(
            with_line(NameOptions::default(), "f".into(), Some(&code)),
            "f"
        );
        assert_eq!(with_line(lines, "f".into(), None), "f");
    }

    /// An address's inlined calls come before (inside) the function they were inlined into.
    #[test]
    fn inlined_frames_precede_their_function() {
        let mut names = AddrNames::default();
        names.outer.insert(0x100, Frame::from("inner_caller"));
        names.outer.insert(0x1ff, Frame::from("main"));
        names.inlined.insert(
            0x100,
            vec![Frame::from("h [inlined]"), Frame::from("g [inlined]")],
        );
        // The second frame is a return address: 0x200 is looked up as 0x1ff.
        let got = frame_names(&[0x100, 0x200, 0x300], &names);
        let got: Vec<&str> = got.iter().map(|f| &**f).collect();
        assert_eq!(
            got,
            [
                "h [inlined]",
                "g [inlined]",
                "inner_caller",
                "main",
                UNKNOWN
            ]
        );
    }

    #[test]
    fn kernel_symbols_resolve() {
        // /proc/kallsyms is readable by anyone, but shows zero addresses to the unprivileged.
        let mut syms = Symbolizer::new();
        let Some(addr) = std::fs::read_to_string("/proc/kallsyms")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.ends_with(" vfs_read"))
                    .and_then(|l| u64::from_str_radix(l.split(' ').next()?, 16).ok())
            })
        else {
            return;
        };
        if addr == 0 {
            return;
        }
        let stacks = HashMap::from([(7u64, vec![addr + 1, addr + 2])]);
        let named = syms.kernel_stacks(&HashSet::from([7]), &stacks);
        assert_eq!(
            named[&7],
            [Frame::from("vfs_read"), Frame::from("vfs_read")].into()
        );
    }
}
