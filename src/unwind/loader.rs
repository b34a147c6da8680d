//! Loads unwind tables into the maps bpf/unwind.bpf.h walks: each binary's rows once (keyed by its file's
//! device and inode, shared by every process that maps it), into chunks created as they fill, up to
//! --unwind-memory; and each process's executable mappings, written in place and published with one map
//! update, so that a walk on another CPU sees the old list or the new one, never half of one.
use std::collections::{HashMap, HashSet, VecDeque};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType};
use rayon::prelude::*;

use super::maps::{parse_exec, Backing, ExecMapping};
use super::table::{self, Binary, Segment};

/// bpf/unwind.h's sizes.
const CHUNK_ROWS: usize = 1 << 16;
const MAX_CHUNKS: usize = 2048;
const MAX_MAPPINGS: usize = 65536;
const MAX_PROC_MAPPINGS: usize = 1 << 12;
const ROW_BYTES: usize = 8;
const MAPPING_BYTES: usize = 32;
/// Bytes of rows a chunk holds.
pub const CHUNK_BYTES: usize = CHUNK_ROWS * ROW_BYTES;
/// A process's old mapping list is reused only this long after it was replaced: walks in flight on
/// other CPUs may still read it.
const RETIRE_AFTER: Duration = Duration::from_secs(1);

/// `enum mapping_kind` in bpf/unwind.h.
mod kind {
    pub const TABLE: u32 = 0;
    pub const NO_CFI: u32 = 1;
    pub const JIT: u32 = 2;
    pub const NO_ROOM: u32 = 3;
}

/// A BPF array mapped into this process (BPF_F_MMAPABLE): what is written here, programs read.
struct MappedArray {
    ptr: *mut u8,
    len: usize,
    /// The map, for arrays this process created (chunks): kept open while mapped.
    _map: Option<MapHandle>,
}

// SAFETY: the mapping is plain shared memory owned by this value; nothing else in this process aliases it.
unsafe impl Send for MappedArray {}

impl MappedArray {
    fn new(map: &dyn MapCore, len: usize, own: Option<MapHandle>) -> Result<Self> {
        // SAFETY: a fresh shared mapping of the map's fd (BPF_F_MMAPABLE arrays allow it), checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.as_fd().as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error()).context("mapping a BPF array into memory");
        }
        Ok(Self {
            ptr: ptr.cast(),
            len,
            _map: own,
        })
    }

    fn write(&mut self, at: usize, bytes: &[u8]) {
        assert!(
            at + bytes.len() <= self.len,
            "write past a mapped BPF array"
        );
        // SAFETY: in bounds (asserted), and the mapping is writable and lives as long as self.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.add(at), bytes.len()) };
    }
}

impl Drop for MappedArray {
    fn drop(&mut self) {
        // SAFETY: ptr/len are the mapping made in new, unmapped once.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// The identity of a mapped file: device and inode (the vDSO: 0, 0).
type FileId = (u64, u64);
const VDSO: FileId = (0, 0);

/// Where a binary's table went.
#[derive(Clone, Debug)]
enum State {
    /// Its first slot (page index, then rows) in the chunks, its pages, and the address its pages start at.
    Table {
        first: u32,
        pages: u32,
        base: u64,
    },
    NoCfi,
    NoRoom,
}

#[derive(Clone, Debug)]
struct Loaded {
    state: State,
    segments: Vec<Segment>,
}

/// What was loaded, for the summary and the benchmarks.
#[derive(Clone, Debug, Default)]
pub struct UnwindStats {
    /// Binaries with a table loaded, and their rows.
    pub binaries: usize,
    pub rows: u64,
    /// Rows whose rule the walk cannot follow (signal trampolines, unusual expressions).
    pub unsupported_rows: u64,
    /// Bytes of chunks created (what the tables take in the kernel).
    pub bytes: u64,
    /// Binaries without unwind information, or that could not be read.
    pub without_cfi: usize,
    /// Binaries whose table did not fit in --unwind-memory, by name.
    pub no_room: Vec<String>,
    /// Processes whose mappings were loaded (at least once).
    pub processes: usize,
    /// Processes with more executable mappings than a walk searches (the rest have none).
    pub too_many_mappings: usize,
    /// Processes left without tables: every mapping slot was taken.
    pub mappings_full: usize,
    /// Time spent building tables.
    pub build_time: Duration,
}

/// The unwind maps of one loaded tool and what is loaded into them.
pub struct Unwinder {
    procs: MapHandle,
    mappings: MappedArray,
    outer: MapHandle,
    chunks: Vec<MappedArray>,
    max_chunks: usize,
    slots_used: usize,
    files: HashMap<FileId, Loaded>,
    /// Each loaded process: its range of mapping slots and the mappings it was built from.
    loaded: HashMap<u32, (u32, u32, Vec<ExecMapping>)>,
    /// Free ranges of mapping slots (start, len), and ranges waiting out RETIRE_AFTER.
    free: Vec<(u32, u32)>,
    retired: VecDeque<(Instant, u32, u32)>,
    vdso: Option<Arc<Vec<u8>>>,
    stats: UnwindStats,
    seen_procs: HashSet<u32>,
    /// Raised when tracing ends: a table being built is abandoned.
    cancel: Arc<AtomicBool>,
}

impl Unwinder {
    /// Over a loaded program's maps (`unwind_procs`, `unwind_mappings`, `unwind_chunks`), with at most
    /// `memory_mib` MiB of rows.
    pub fn new(
        procs: MapHandle,
        mappings: &dyn MapCore,
        outer: MapHandle,
        memory_mib: u32,
    ) -> Result<Self> {
        if mappings.value_size() as usize != MAPPING_BYTES
            || mappings.max_entries() as usize != MAX_MAPPINGS
        {
            bail!("unwind_mappings does not have the layout of bpf/unwind.h");
        }
        let mappings = MappedArray::new(mappings, MAX_MAPPINGS * MAPPING_BYTES, None)?;
        let max_chunks = ((memory_mib as usize) << 20) / CHUNK_BYTES;
        Ok(Self {
            procs,
            mappings,
            outer,
            chunks: Vec::new(),
            max_chunks: max_chunks.clamp(1, MAX_CHUNKS),
            slots_used: 0,
            files: HashMap::new(),
            loaded: HashMap::new(),
            free: vec![(0, MAX_MAPPINGS as u32)],
            retired: VecDeque::new(),
            vdso: None,
            stats: UnwindStats::default(),
            seen_procs: HashSet::new(),
            cancel: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The flag that abandons the table being built (for the thread that loads, when tracing ends).
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.cancel)
    }

    pub fn stats(&self) -> UnwindStats {
        self.stats.clone()
    }

    /// Loads the tables of several processes at once (at start-up): the binaries none has loaded yet are
    /// built in parallel first. Processes that are gone, or kernel threads, are skipped.
    pub fn preload(&mut self, pids: &[u32]) {
        let procs: Vec<(u32, Vec<ExecMapping>)> = pids
            .iter()
            .filter_map(|&pid| {
                let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
                let exec = parse_exec(&maps);
                (!exec.is_empty()).then_some((pid, exec))
            })
            .collect();
        let mut wanted: HashMap<FileId, (u32, ExecMapping)> = HashMap::new();
        for (pid, exec) in &procs {
            for m in exec {
                if let Some(id) = file_id(m) {
                    if !self.files.contains_key(&id) {
                        wanted.entry(id).or_insert_with(|| (*pid, m.clone()));
                    }
                }
            }
        }
        let started = Instant::now();
        let vdso = self.vdso_image();
        let cancel = &*self.cancel;
        let built: Vec<(FileId, Option<Binary>, String)> = wanted
            .into_par_iter()
            .map(|(id, (pid, m))| {
                let bin = build_mapped(pid, &m, vdso.as_deref().map(Vec::as_slice), cancel);
                (id, bin, name_of(&m))
            })
            .collect();
        self.stats.build_time += started.elapsed();
        for (id, bin, name) in built {
            self.insert(id, bin, &name);
        }
        for (pid, exec) in procs {
            let _ = self.publish(pid, exec);
        }
    }

    /// Loads (or reloads, if its mappings changed) one process's tables from its maps text.
    pub fn load_process(&mut self, pid: u32, maps: &str) -> Result<()> {
        let exec = parse_exec(maps);
        if exec.is_empty() {
            return Ok(());
        }
        if matches!(self.loaded.get(&pid), Some((_, _, old)) if *old == exec) {
            return Ok(());
        }
        for m in &exec {
            let Some(id) = file_id(m) else { continue };
            if self.files.contains_key(&id) {
                continue;
            }
            let started = Instant::now();
            let vdso = self.vdso_image();
            let bin = build_mapped(pid, m, vdso.as_deref().map(Vec::as_slice), &self.cancel);
            if self.cancel.load(Ordering::Relaxed) {
                return Ok(());
            }
            self.stats.build_time += started.elapsed();
            self.insert(id, bin, &name_of(m));
        }
        self.publish(pid, exec)
    }

    /// Drops the entries of processes that have exited (their slots are reused later).
    pub fn forget_exited(&mut self) {
        let gone: Vec<u32> = self
            .loaded
            .keys()
            .copied()
            .filter(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
            .collect();
        for pid in gone {
            let _ = self.procs.delete(&pid.to_ne_bytes());
            if let Some((first, count, _)) = self.loaded.remove(&pid) {
                self.retired.push_back((Instant::now(), first, count));
            }
        }
    }

    fn vdso_image(&mut self) -> Option<Arc<Vec<u8>>> {
        if self.vdso.is_none() {
            self.vdso = own_vdso().map(Arc::new);
        }
        self.vdso.clone()
    }

    /// Writes a built binary's rows into the chunks (creating chunks as needed), or notes why it has none.
    fn insert(&mut self, id: FileId, bin: Option<Binary>, name: &str) {
        let Some(bin) = bin else {
            self.stats.without_cfi += 1;
            self.files.insert(
                id,
                Loaded {
                    state: State::NoCfi,
                    segments: Vec::new(),
                },
            );
            return;
        };
        let state = if bin.rows.is_empty() {
            self.stats.without_cfi += 1;
            State::NoCfi
        } else {
            let paged = table::paged(&bin.rows);
            match self.write_slots(&paged.bytes) {
                Ok(first) => {
                    self.stats.binaries += 1;
                    self.stats.rows += bin.rows.len() as u64;
                    self.stats.unsupported_rows += bin.unsupported as u64;
                    State::Table {
                        first,
                        pages: paged.pages,
                        base: paged.base,
                    }
                }
                Err(_) => {
                    self.stats.no_room.push(name.to_string());
                    State::NoRoom
                }
            }
        };
        self.files.insert(
            id,
            Loaded {
                state,
                segments: bin.segments,
            },
        );
    }

    /// Appends a table's slots (8 bytes each), returning the global index of the first; refuses what
    /// would pass the budget.
    fn write_slots(&mut self, bytes: &[u8]) -> Result<u32> {
        let first = self.slots_used;
        let end = first + bytes.len() / ROW_BYTES;
        let chunks_needed = end.div_ceil(CHUNK_ROWS);
        if chunks_needed > self.max_chunks {
            bail!("unwind tables need more than --unwind-memory");
        }
        while self.chunks.len() < chunks_needed {
            self.add_chunk()?;
        }
        let mut at = first;
        let mut src = bytes;
        while !src.is_empty() {
            let slot = at % CHUNK_ROWS;
            let n = (CHUNK_ROWS - slot).min(src.len() / ROW_BYTES);
            let (now, rest) = src.split_at(n * ROW_BYTES);
            self.chunks[at / CHUNK_ROWS].write(slot * ROW_BYTES, now);
            src = rest;
            at += n;
        }
        self.slots_used = end;
        Ok(first as u32)
    }

    fn add_chunk(&mut self) -> Result<()> {
        let opts = libbpf_sys::bpf_map_create_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
            map_flags: libbpf_sys::BPF_F_MMAPABLE,
            ..Default::default()
        };
        let map = MapHandle::create(
            MapType::Array,
            Some("unwind_chunk"),
            4,
            ROW_BYTES as u32,
            CHUNK_ROWS as u32,
            &opts,
        )
        .context("creating an unwind table chunk")?;
        let mut mapped = MappedArray::new(&map, CHUNK_BYTES, None)?;
        let idx = self.chunks.len() as u32;
        let fd = map.as_fd().as_raw_fd();
        self.outer
            .update(&idx.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
            .context("adding an unwind table chunk")?;
        mapped._map = Some(map);
        self.chunks.push(mapped);
        self.stats.bytes += CHUNK_BYTES as u64;
        Ok(())
    }

    /// Writes a process's mapping entries into free slots and points its `unwind_procs` entry at them.
    fn publish(&mut self, pid: u32, mut exec: Vec<ExecMapping>) -> Result<()> {
        if exec.len() > MAX_PROC_MAPPINGS {
            self.stats.too_many_mappings += 1;
            exec.truncate(MAX_PROC_MAPPINGS);
        }
        let mut bytes = Vec::with_capacity(exec.len() * MAPPING_BYTES);
        for m in &exec {
            let (k, bias, first, pages) = match &m.backing {
                Backing::Anonymous => (kind::JIT, 0, 0, 0),
                _ => match file_id(m).and_then(|id| self.files.get(&id)) {
                    None => (kind::NO_CFI, 0, 0, 0),
                    Some(l) => {
                        let bias = bias_of(&l.segments, m);
                        match (&l.state, bias) {
                            // The walk looks pages up from the binary's address less the first page's.
                            (State::Table { first, pages, base }, Some(b)) => {
                                (kind::TABLE, b.wrapping_add(*base), *first, *pages)
                            }
                            (State::NoRoom, _) => (kind::NO_ROOM, 0, 0, 0),
                            _ => (kind::NO_CFI, 0, 0, 0),
                        }
                    }
                },
            };
            bytes.extend(m.start.to_ne_bytes());
            bytes.extend(bias.to_ne_bytes());
            bytes.extend(((m.end - m.start).min(u64::from(u32::MAX)) as u32).to_ne_bytes());
            bytes.extend(first.to_ne_bytes());
            bytes.extend(pages.to_ne_bytes());
            bytes.extend(k.to_ne_bytes());
        }
        let count = exec.len() as u32;
        let Some(first) = self.allocate(count) else {
            self.stats.mappings_full += 1;
            bail!("no room for the mappings of process {pid}");
        };
        self.mappings.write(first as usize * MAPPING_BYTES, &bytes);
        let mut entry = [0u8; 8];
        entry[..4].copy_from_slice(&first.to_ne_bytes());
        entry[4..].copy_from_slice(&count.to_ne_bytes());
        if let Err(e) = self.procs.update(&pid.to_ne_bytes(), &entry, MapFlags::ANY) {
            self.free_range(first, count);
            return Err(e).context("publishing a process's unwind mappings");
        }
        if let Some((old_first, old_count, _)) = self.loaded.insert(pid, (first, count, exec)) {
            self.retired
                .push_back((Instant::now(), old_first, old_count));
        }
        if self.seen_procs.insert(pid) {
            self.stats.processes += 1;
        }
        Ok(())
    }

    /// First fit among free slot ranges (after taking back retired ones old enough).
    fn allocate(&mut self, count: u32) -> Option<u32> {
        while let Some(&(at, first, n)) = self.retired.front() {
            if at.elapsed() < RETIRE_AFTER {
                break;
            }
            self.retired.pop_front();
            self.free_range(first, n);
        }
        let i = self.free.iter().position(|&(_, len)| len >= count)?;
        let (start, len) = self.free[i];
        if len == count {
            self.free.remove(i);
        } else {
            self.free[i] = (start + count, len - count);
        }
        Some(start)
    }

    fn free_range(&mut self, first: u32, count: u32) {
        if count == 0 {
            return;
        }
        let i = self.free.partition_point(|&(s, _)| s < first);
        self.free.insert(i, (first, count));
        // Merge with the neighbours.
        if i + 1 < self.free.len() && self.free[i].0 + self.free[i].1 == self.free[i + 1].0 {
            self.free[i].1 += self.free[i + 1].1;
            self.free.remove(i + 1);
        }
        if i > 0 && self.free[i - 1].0 + self.free[i - 1].1 == self.free[i].0 {
            self.free[i - 1].1 += self.free[i].1;
            self.free.remove(i);
        }
    }
}

/// Every process now running (kernel threads too: they have no mappings, and preload skips them).
pub fn running_processes() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn file_id(m: &ExecMapping) -> Option<FileId> {
    match &m.backing {
        Backing::File { dev, inode, .. } => Some((*dev, *inode)),
        Backing::Vdso => Some(VDSO),
        Backing::Anonymous => None,
    }
}

/// A mapping's file name, for messages.
fn name_of(m: &ExecMapping) -> String {
    match &m.backing {
        Backing::File { path, .. } => path.rsplit('/').next().unwrap_or(path).to_string(),
        Backing::Vdso => "[vdso]".into(),
        Backing::Anonymous => "[anon]".into(),
    }
}

fn bias_of(segments: &[Segment], m: &ExecMapping) -> Option<u64> {
    Binary {
        segments: segments.to_vec(),
        ..Binary::default()
    }
    .bias(m.start, m.offset)
}

/// Builds the table of the file behind a mapping (None: unreadable or not an x86-64 ELF file).
fn build_mapped(
    pid: u32,
    m: &ExecMapping,
    vdso: Option<&[u8]>,
    cancel: &AtomicBool,
) -> Option<Binary> {
    if m.backing == Backing::Vdso {
        return table::build(vdso?, cancel).ok();
    }
    for path in m.file_paths(pid) {
        let Ok(file) = std::fs::File::open(&path) else {
            continue;
        };
        // SAFETY: the file is mapped read-only; a binary changed under a running process is as undefined
        // for that process as for this read, and gimli bounds-checks every access.
        let Ok(data) = (unsafe { memmap2::Mmap::map(&file) }) else {
            continue;
        };
        return table::build(&data, cancel).ok();
    }
    None
}

/// This process's vDSO image: every 64-bit process of this kernel maps the same one.
fn own_vdso() -> Option<Vec<u8>> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let line = maps.lines().find(|l| l.ends_with("[vdso]"))?;
    let (start, end) = line.split_whitespace().next()?.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    let mut image = vec![0u8; end - start];
    // SAFETY: [start, end) is this process's vDSO mapping, readable and alive for the process's life.
    unsafe { std::ptr::copy_nonoverlapping(start as *const u8, image.as_mut_ptr(), image.len()) };
    Some(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vdso_has_a_table() {
        let image = own_vdso().expect("a vDSO");
        let bin = table::build(&image, &AtomicBool::new(false)).expect("the vDSO is an ELF file");
        assert!(!bin.rows.is_empty());
        assert!(!bin.segments.is_empty());
    }
}
