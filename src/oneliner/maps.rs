//! The BPF maps a one-liner needs: one per @map (its key and value layout from the semantic pass), a ring
//! buffer for printf and exit, and a zeroed buffer that new map values are copied from.
use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd};

use anyhow::{bail, Context, Result};
use libbpf_rs::{MapHandle, MapType};

use super::sema::{Info, MapKind, Type};
use crate::render::hist::LOG2_LEN as LOG2_SLOTS;

/// Bytes a key part or a stored value takes.
pub fn size_of(t: &Type) -> usize {
    match t {
        Type::Str(n) => n.div_ceil(8) * 8,
        // id or address, and the pid
        Type::UStack(_) | Type::Sym { user: true } => 16,
        // ntop(): the family, then 16 bytes; buf(): its length, then its bytes
        Type::Inet => 24,
        Type::Buf(n) => 8 + n.div_ceil(8) * 8,
        Type::Mac => 8,
        _ => 8,
    }
}

/// One @map as created in the kernel.
pub struct MapDef {
    pub name: String,
    pub keys: Vec<Type>,
    pub kind: MapKind,
    pub key_size: usize,
    pub value_size: usize,
    /// Aggregations are per-CPU (no atomics on the hot path); user space sums the CPUs.
    pub per_cpu: bool,
    pub map: MapHandle,
}

impl MapDef {
    pub fn raw_fd(&self) -> i32 {
        raw_fd(&self.map)
    }
}

/// A map's fd as BPF instructions embed it.
pub fn raw_fd(map: &MapHandle) -> i32 {
    map.as_fd().as_raw_fd()
}

/// Entries each @map can hold.
pub const MAP_ENTRIES: u32 = 16384;
/// The printf/exit ring buffer's size.
pub const RINGBUF_BYTES: u32 = 1 << 20;

/// Value layout of each kind.
pub fn value_size(kind: &MapKind) -> usize {
    match kind {
        MapKind::Value(t) => size_of(t),
        MapKind::Count | MapKind::Sum => 8,
        // count, sum (avg and stats); value, set (min and max)
        MapKind::Avg | MapKind::Stats | MapKind::Min | MapKind::Max => 16,
        MapKind::Hist => LOG2_SLOTS * 8,
        MapKind::Lhist { min, max, step } => (((max - min) / step) as usize + 2) * 8,
    }
}

/// All the maps of a program.
pub struct Maps {
    pub maps: BTreeMap<String, MapDef>,
    pub ringbuf: MapHandle,
    /// A per-CPU array of one zeroed value as large as the largest map value.
    pub zeros: MapHandle,
    /// Per-CPU counters of what could not be recorded: slot LOST_RECORDS, printf/exit records the ring
    /// buffer had no room for; slot LOST_STACKS, stacks bpf_get_stackid could not store.
    pub lost: MapHandle,
    /// Stacks (kstack, ustack) by id: a map per depth taken (0 stands for STACK_DEPTH).
    pub stacks: BTreeMap<usize, MapHandle>,
    /// A per-CPU buffer printf records are built in (the stack is small).
    pub scratch: MapHandle,
    /// Per CPU, KEY_SLOTS buffers where keys larger than KEY_ON_STACK are built rather than on the stack
    /// (one per such key a probe builds, so that a key read while another is built keeps its own); None
    /// when no map has such keys.
    pub keys: Option<MapHandle>,
    /// One word that user space sets to stop every probe at once (disabling a tracepoint's perf event
    /// does not stop its BPF program; closing it takes a grace period).
    pub stop: MapHandle,
    /// Processes whose user stacks or symbols were taken (pid -> 0): user space caches what naming their
    /// frames needs while they live, and deletes the entry.
    pub pids: Option<MapHandle>,
}

/// Keys larger than this are built in Maps::keys: the 512-byte stack also holds what they are made of.
pub const KEY_ON_STACK: usize = 128;
/// The kernel's limit for a hash map's key (its programs were to build keys on their stack).
pub const KEY_MAX: usize = 512;
/// How many keys larger than KEY_ON_STACK one probe can build.
pub const KEY_SLOTS: u32 = 16;

/// The largest printf record (its arguments).
pub const SCRATCH_BYTES: usize = 4096;

pub const LOST_RECORDS: i32 = 0;
pub const LOST_STACKS: i32 = 1;
/// Frames a stack keeps (bpftrace's default too), and how many distinct stacks the map holds.
pub const STACK_DEPTH: usize = 127;
pub const STACK_ENTRIES: u32 = 16384;

fn create(
    map_type: MapType,
    name: &str,
    key: usize,
    value: usize,
    entries: u32,
) -> Result<MapHandle> {
    // The kernel keeps 15 characters of a name, of these.
    let name: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(15)
        .collect();
    let opts = libbpf_sys::bpf_map_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
        ..Default::default()
    };
    MapHandle::create(
        map_type,
        Some(&name),
        key as u32,
        value as u32,
        entries,
        &opts,
    )
    .with_context(|| format!("creating map {name}"))
}

impl Maps {
    pub fn create(info: &Info) -> Result<Self> {
        let mut maps = BTreeMap::new();
        let mut largest = 8;
        let mut largest_key = 0;
        for (name, m) in &info.maps {
            let key_size = m.keys.iter().map(size_of).sum::<usize>().max(8);
            if key_size > KEY_MAX {
                bail!("@{name}'s key takes {key_size} bytes, more than the {KEY_MAX} the kernel allows a map's key: use fewer or shorter parts (str(x, N) keeps N bytes)");
            }
            if key_size > KEY_ON_STACK {
                largest_key = largest_key.max(key_size);
            }
            let value_size = value_size(&m.kind);
            largest = largest.max(value_size);
            let per_cpu = !matches!(m.kind, MapKind::Value(_));
            let map_type = if per_cpu {
                MapType::PercpuHash
            } else {
                MapType::Hash
            };
            let map = create(
                map_type,
                &format!("AT_{name}"),
                key_size,
                value_size,
                MAP_ENTRIES,
            )?;
            maps.insert(
                name.clone(),
                MapDef {
                    name: name.clone(),
                    keys: m.keys.clone(),
                    kind: m.kind.clone(),
                    key_size,
                    value_size,
                    per_cpu,
                    map,
                },
            );
        }
        let ringbuf = create(MapType::RingBuf, "printf", 0, 0, RINGBUF_BYTES)?;
        let zeros = create(MapType::PercpuArray, "zeros", 4, largest, 1)?;
        let lost = create(MapType::PercpuArray, "lost", 4, 8, 2)?;
        let mut stacks = BTreeMap::new();
        for &depth in &info.stacks {
            let frames = if depth == 0 { STACK_DEPTH } else { depth };
            stacks.insert(
                depth,
                create(
                    MapType::StackTrace,
                    &format!("stacks{depth}"),
                    4,
                    frames * 8,
                    STACK_ENTRIES,
                )?,
            );
        }
        let pids = if info.user_pids {
            Some(create(MapType::Hash, "pids", 4, 8, 4096)?)
        } else {
            None
        };
        let stop = create(MapType::Array, "stop", 4, 8, 1)?;
        let scratch = create(MapType::PercpuArray, "scratch", 4, SCRATCH_BYTES, 1)?;
        let keys = if largest_key > 0 {
            Some(create(
                MapType::PercpuArray,
                "keys",
                4,
                largest_key,
                KEY_SLOTS,
            )?)
        } else {
            None
        };
        Ok(Self {
            maps,
            ringbuf,
            zeros,
            lost,
            stacks,
            pids,
            stop,
            scratch,
            keys,
        })
    }
}
