//! pprof profiles (`profile.proto`, gzipped): what `go tool pprof`, Grafana Pyroscope and Parca read.
//!
//! Stacks come in as bpfprof folds them (root first, the comm as the root, kernel frames marked `_[k]`),
//! so every tool's layout (offwake's two halves, wakeup's target leaf) is the same in a flame graph drawn
//! from the pprof as from the folded lines. The comm leaves the stack for a `comm` label (pprof's readers
//! group by labels) and `bpfprof report` puts it back as the root.
//!
//! Locations are per function and mapping: bpfprof aggregates stacks by name, so a location's address is
//! the first return address seen in that function (in the address space of the process whose mapping is
//! recorded), not one per call site.
use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use prost::Message;
use rustc_hash::FxHashMap;

use super::folded::sanitize;
use super::StackPart;

/// The message types of pprof's profile.proto (github.com/google/pprof/proto/profile.proto), encoded
/// and decoded by prost.
pub mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Profile {
        #[prost(message, repeated, tag = "1")]
        pub sample_type: Vec<ValueType>,
        #[prost(message, repeated, tag = "2")]
        pub sample: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        pub mapping: Vec<Mapping>,
        #[prost(message, repeated, tag = "4")]
        pub location: Vec<Location>,
        #[prost(message, repeated, tag = "5")]
        pub function: Vec<Function>,
        #[prost(string, repeated, tag = "6")]
        pub string_table: Vec<String>,
        #[prost(int64, tag = "7")]
        pub drop_frames: i64,
        #[prost(int64, tag = "8")]
        pub keep_frames: i64,
        #[prost(int64, tag = "9")]
        pub time_nanos: i64,
        #[prost(int64, tag = "10")]
        pub duration_nanos: i64,
        #[prost(message, optional, tag = "11")]
        pub period_type: Option<ValueType>,
        #[prost(int64, tag = "12")]
        pub period: i64,
        #[prost(int64, repeated, tag = "13")]
        pub comment: Vec<i64>,
        #[prost(int64, tag = "14")]
        pub default_sample_type: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueType {
        #[prost(int64, tag = "1")]
        pub r#type: i64,
        #[prost(int64, tag = "2")]
        pub unit: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(uint64, repeated, tag = "1")]
        pub location_id: Vec<u64>,
        #[prost(int64, repeated, tag = "2")]
        pub value: Vec<i64>,
        #[prost(message, repeated, tag = "3")]
        pub label: Vec<Label>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        #[prost(int64, tag = "1")]
        pub key: i64,
        #[prost(int64, tag = "2")]
        pub str: i64,
        #[prost(int64, tag = "3")]
        pub num: i64,
        #[prost(int64, tag = "4")]
        pub num_unit: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Mapping {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub memory_start: u64,
        #[prost(uint64, tag = "3")]
        pub memory_limit: u64,
        #[prost(uint64, tag = "4")]
        pub file_offset: u64,
        #[prost(int64, tag = "5")]
        pub filename: i64,
        #[prost(int64, tag = "6")]
        pub build_id: i64,
        #[prost(bool, tag = "7")]
        pub has_functions: bool,
        #[prost(bool, tag = "8")]
        pub has_filenames: bool,
        #[prost(bool, tag = "9")]
        pub has_line_numbers: bool,
        #[prost(bool, tag = "10")]
        pub has_inline_frames: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Location {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub mapping_id: u64,
        #[prost(uint64, tag = "3")]
        pub address: u64,
        #[prost(message, repeated, tag = "4")]
        pub line: Vec<Line>,
        #[prost(bool, tag = "5")]
        pub is_folded: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Line {
        #[prost(uint64, tag = "1")]
        pub function_id: u64,
        #[prost(int64, tag = "2")]
        pub line: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Function {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(int64, tag = "2")]
        pub name: i64,
        #[prost(int64, tag = "3")]
        pub system_name: i64,
        #[prost(int64, tag = "4")]
        pub filename: i64,
        #[prost(int64, tag = "5")]
        pub start_line: i64,
    }
}

/// The name of the mapping kernel frames are put in (perf's, which pprof's tools know).
pub const KERNEL_MAPPING: &str = "[kernel.kallsyms]";
/// Where the kernel's mapping begins: the upper half of x86-64's address space.
const KERNEL_START: u64 = 0xffff_8000_0000_0000;
/// The suffix that marks kernel frames in folded lines.
const KERNEL_SUFFIX: &str = "_[k]";

/// A mapped file: where one process had it, and its GNU build-id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FileMapping {
    pub path: String,
    pub start: u64,
    pub limit: u64,
    pub offset: u64,
    pub build_id: Option<String>,
    /// A process's executable (its first mapped file), which pprof's readers expect first.
    pub main: bool,
}

/// Where a user frame's function was seen: its file's mapping and a return address in it.
#[derive(Clone, Debug)]
pub struct Origin {
    pub mapping: Arc<FileMapping>,
    pub address: u64,
}

/// What a profile says about itself.
#[derive(Clone, Debug)]
pub struct PprofSpec {
    /// The tool that made it (`profile`, `offcpu`, ...), kept as the first comment.
    pub tool: String,
    /// (type, unit) of each value of a sample: `samples/count`, `cpu/nanoseconds`, ...
    pub sample_types: Vec<(String, String)>,
    pub period_type: (String, String),
    pub period: i64,
    pub time_nanos: i64,
    pub duration_nanos: i64,
    /// The flame graph's title and subtitle, kept as comments for `bpfprof report`.
    pub title: String,
    pub subtitle: Option<String>,
    /// The kernel's build-id (/sys/kernel/notes), for its mapping.
    pub kernel_build_id: Option<String>,
}

/// A sample label's value.
#[derive(Clone, Debug)]
pub enum LabelValue {
    Str(String),
    Num(i64),
}

/// Builds one profile: strings, functions, locations and mappings interned as samples are added.
pub struct PprofBuilder {
    profile: proto::Profile,
    strings: HashMap<String, i64>,
    functions: HashMap<String, u64>,
    /// (kernel frame, function id) -> location id: a user function's mapping follows from its name, so
    /// each is looked up once.
    locations: HashMap<(bool, u64), u64>,
    /// (interned frame's address, kernel frame) -> location id (add_stacks).
    by_frame: FxHashMap<(usize, bool), u64>,
    mappings: HashMap<Arc<FileMapping>, u64>,
    /// Ids of the mappings of processes' executables.
    main_mappings: Vec<u64>,
    /// The kernel's mapping id (0 until a kernel frame is added), and its build-id.
    kernel_mapping: u64,
    kernel_build_id: Option<String>,
}

impl PprofBuilder {
    pub fn new(spec: &PprofSpec) -> Self {
        let mut b = Self {
            profile: proto::Profile::default(),
            strings: HashMap::new(),
            functions: HashMap::new(),
            locations: HashMap::new(),
            by_frame: FxHashMap::default(),
            mappings: HashMap::new(),
            main_mappings: Vec::new(),
            kernel_mapping: 0,
            kernel_build_id: None,
        };
        b.string(""); // index 0 is always the empty string
        let vt = |b: &mut Self, (t, u): &(String, String)| proto::ValueType {
            r#type: b.string(t),
            unit: b.string(u),
        };
        b.profile.sample_type = spec.sample_types.iter().map(|t| vt(&mut b, t)).collect();
        b.profile.period_type = Some(vt(&mut b, &spec.period_type));
        b.profile.period = spec.period;
        b.profile.time_nanos = spec.time_nanos;
        b.profile.duration_nanos = spec.duration_nanos;
        let mut comments = vec![format!("bpfprof {}", spec.tool), spec.title.clone()];
        comments.extend(spec.subtitle.clone());
        b.profile.comment = comments.iter().map(|c| b.string(c)).collect();
        b.kernel_build_id = spec.kernel_build_id.clone();
        b
    }

    /// The kernel's mapping, made when a kernel frame first needs it: pprof's readers take the first
    /// mapping for the main binary.
    fn kernel_mapping(&mut self) -> u64 {
        if self.kernel_mapping == 0 {
            let kernel = proto::Mapping {
                memory_start: KERNEL_START,
                memory_limit: u64::MAX,
                filename: self.string(KERNEL_MAPPING),
                build_id: self.string(self.kernel_build_id.clone().as_deref().unwrap_or("")),
                has_functions: true,
                ..Default::default()
            };
            self.kernel_mapping = self.add_mapping(kernel);
        }
        self.kernel_mapping
    }

    fn string(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        let i = self.profile.string_table.len() as i64;
        self.profile.string_table.push(s.to_string());
        self.strings.insert(s.to_string(), i);
        i
    }

    fn add_mapping(&mut self, mut m: proto::Mapping) -> u64 {
        m.id = self.profile.mapping.len() as u64 + 1;
        let id = m.id;
        self.profile.mapping.push(m);
        id
    }

    fn mapping(&mut self, f: &Arc<FileMapping>) -> u64 {
        if let Some(&id) = self.mappings.get(f) {
            return id;
        }
        let m = proto::Mapping {
            memory_start: f.start,
            memory_limit: f.limit,
            file_offset: f.offset,
            filename: self.string(&f.path),
            build_id: self.string(f.build_id.as_deref().unwrap_or("")),
            has_functions: true,
            ..Default::default()
        };
        let id = self.add_mapping(m);
        self.mappings.insert(Arc::clone(f), id);
        if f.main {
            self.main_mappings.push(id);
        }
        id
    }

    fn function(&mut self, name: &str, file: Option<&str>) -> u64 {
        if let Some(&id) = self.functions.get(name) {
            return id;
        }
        let id = self.profile.function.len() as u64 + 1;
        let f = proto::Function {
            id,
            name: self.string(name),
            system_name: self.string(name),
            filename: file.map_or(0, |f| self.string(f)),
            start_line: 0,
        };
        self.profile.function.push(f);
        self.functions.insert(name.to_string(), id);
        id
    }

    fn location(
        &mut self,
        name: &str,
        kernel: bool,
        origin: &dyn Fn(&str) -> Option<Origin>,
    ) -> u64 {
        let function_id = self.function(name, None);
        if let Some(&id) = self.locations.get(&(kernel, function_id)) {
            return id;
        }
        let (mapping, address) = match (kernel, origin(name)) {
            (true, _) => (self.kernel_mapping(), 0),
            (false, Some(o)) => (self.mapping(&o.mapping), o.address),
            (false, None) => (0, 0),
        };
        let id = self.profile.location.len() as u64 + 1;
        self.profile.location.push(proto::Location {
            id,
            mapping_id: mapping,
            address,
            line: vec![proto::Line {
                function_id,
                line: 0,
            }],
            is_folded: false,
        });
        self.locations.insert((kernel, function_id), id);
        id
    }

    /// Adds a sample from a folded line (`comm;root;...;leaf`, kernel frames with `_[k]`, no count):
    /// the comm becomes the `comm` label, the frames its locations (leaf first, as pprof orders them).
    /// `origin` says where a user frame's function was seen.
    pub fn add_folded(
        &mut self,
        line: &str,
        values: &[i64],
        labels: &[(&str, LabelValue)],
        origin: &dyn Fn(&str) -> Option<Origin>,
    ) {
        let mut parts = line.split(';');
        let comm = parts.next().unwrap_or("");
        let frames: Vec<&str> = parts.collect();
        let location_id = frames
            .iter()
            .rev()
            .map(|f| match f.strip_suffix(KERNEL_SUFFIX) {
                Some(name) => self.location(name, true, origin),
                None => self.location(f, false, origin),
            })
            .collect();
        self.push_sample(comm, location_id, values, labels);
    }

    /// Adds a sample of one thread's stacks (as `fold` lays them out: kernel frames innermost first,
    /// then user frames; a missed part as its `[Missed ... Stack]` frame). Frames are interned names:
    /// each distinct one is looked up once, by pointer.
    pub fn add_stacks(
        &mut self,
        comm: &str,
        user: &StackPart,
        kernel: &StackPart,
        values: &[i64],
        labels: &[(&str, LabelValue)],
        origin: &dyn Fn(&str) -> Option<Origin>,
    ) {
        let mut location_id = Vec::new();
        for (part, is_kernel, missed) in [
            (kernel, true, "[Missed Kernel Stack]"),
            (user, false, "[Missed User Stack]"),
        ] {
            match part {
                StackPart::None => {}
                StackPart::Missed => location_id.push(self.location(missed, is_kernel, origin)),
                StackPart::Frames(frames) => {
                    for f in frames.iter() {
                        let key = (Arc::as_ptr(f).cast::<u8>() as usize, is_kernel);
                        let id = match self.by_frame.get(&key) {
                            Some(&id) => id,
                            None => {
                                let id = self.location(f, is_kernel, origin);
                                self.by_frame.insert(key, id);
                                id
                            }
                        };
                        location_id.push(id);
                    }
                }
            }
        }
        self.push_sample(comm, location_id, values, labels);
    }

    fn push_sample(
        &mut self,
        comm: &str,
        location_id: Vec<u64>,
        values: &[i64],
        labels: &[(&str, LabelValue)],
    ) {
        let mut label = vec![proto::Label {
            key: self.string("comm"),
            str: self.string(comm),
            ..Default::default()
        }];
        for (key, value) in labels {
            let key = self.string(key);
            label.push(match value {
                LabelValue::Str(s) => proto::Label {
                    key,
                    str: self.string(s),
                    ..Default::default()
                },
                LabelValue::Num(n) => proto::Label {
                    key,
                    num: *n,
                    ..Default::default()
                },
            });
        }
        self.profile.sample.push(proto::Sample {
            location_id,
            value: values.to_vec(),
            label,
        });
    }

    /// The profile, gzipped. The kernel's mapping goes last: pprof's readers take the first for the main
    /// binary.
    pub fn finish(mut self) -> Result<Vec<u8>> {
        // Executables first, then libraries, the kernel last (stable within each), ids renumbered.
        let rank = |id: u64| {
            if id == self.kernel_mapping {
                2
            } else if self.main_mappings.contains(&id) {
                0
            } else {
                1
            }
        };
        let mut order: Vec<u64> = self.profile.mapping.iter().map(|m| m.id).collect();
        order.sort_by_key(|&id| (rank(id), id));
        let new_id: HashMap<u64, u64> = order
            .iter()
            .enumerate()
            .map(|(i, &old)| (old, i as u64 + 1))
            .collect();
        for l in &mut self.profile.location {
            if l.mapping_id != 0 {
                l.mapping_id = new_id[&l.mapping_id];
            }
        }
        for m in &mut self.profile.mapping {
            m.id = new_id[&m.id];
        }
        self.profile.mapping.sort_by_key(|m| m.id);
        // Go's own profiles are written at gzip's fastest level too: 2-3x quicker, a few % larger.
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&self.profile.encode_to_vec())?;
        Ok(gz.finish()?)
    }
}

/// A profile read back: each sample as a folded line with its first value's total, and what the profile
/// says of itself.
#[derive(Debug)]
pub struct ReadProfile {
    pub tool: Option<String>,
    pub title: Option<String>,
    pub subtitle: Option<String>,
    /// (type, unit) of the value the lines carry.
    pub value_type: (String, String),
    /// Folded lines (`comm;root;...;leaf`), kernel frames marked with `kernel_suffix`, and their values.
    pub lines: Vec<(String, i64)>,
}

/// The input is not a pprof profile at all (as opposed to one without the sample type asked for).
#[derive(Debug)]
pub struct NotAProfile(pub String);

impl std::fmt::Display for NotAProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotAProfile {}

/// The most a gzipped profile may unpack to, and the most frames a sample may have: a few bytes must not
/// make `report` allocate without bound.
const MAX_UNPACKED: u64 = 1 << 30;
const MAX_FRAMES: usize = 100_000;

/// Decodes a pprof profile (gzipped or not) into folded lines of the sample type named `value` (by default
/// what bpfprof's own reports show: `samples` for profile, `offcpu` time for the off-CPU tools; else the
/// profile's default type, as `go tool pprof` picks it).
pub fn read(data: &[u8], value: Option<&str>, kernel_suffix: &str) -> Result<ReadProfile> {
    let raw;
    let bytes = if data.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(data)
            .take(MAX_UNPACKED + 1)
            .read_to_end(&mut out)
            .map_err(|e| NotAProfile(format!("not a gzipped pprof profile ({e})")))?;
        if out.len() as u64 > MAX_UNPACKED {
            bail!(
                "the profile unpacks to more than {} MiB",
                MAX_UNPACKED >> 20
            );
        }
        raw = out;
        &raw[..]
    } else {
        data
    };
    let p = proto::Profile::decode(bytes)
        .map_err(|e| NotAProfile(format!("not a pprof profile (profile.proto: {e})")))?;
    let s = |i: i64| -> &str {
        p.string_table
            .get(usize::try_from(i).unwrap_or(usize::MAX))
            .map_or("", String::as_str)
    };
    let types: Vec<(String, String)> = p
        .sample_type
        .iter()
        .map(|t| (s(t.r#type).to_string(), s(t.unit).to_string()))
        .collect();
    let index = match value {
        None => types
            .iter()
            .position(|(t, _)| t == "samples" || t == "offcpu")
            .or_else(|| {
                usize::try_from(p.default_sample_type)
                    .ok()
                    .and_then(|d| types.iter().position(|(t, _)| t == s(d as i64)))
                    .filter(|_| p.default_sample_type != 0)
            })
            .unwrap_or(types.len().saturating_sub(1)),
        Some(want) => types.iter().position(|(t, _)| t == want).with_context(|| {
            let names: Vec<&str> = types.iter().map(|(t, _)| t.as_str()).collect();
            format!(
                "no sample type {want} in this profile (it has: {})",
                names.join(", ")
            )
        })?,
    };
    let Some(value_type) = types.get(index).cloned() else {
        bail!("the profile has no sample types");
    };
    let functions: HashMap<u64, &str> = p.function.iter().map(|f| (f.id, s(f.name))).collect();
    let kernel_maps: Vec<u64> = p
        .mapping
        .iter()
        .filter(|m| s(m.filename) == KERNEL_MAPPING)
        .map(|m| m.id)
        .collect();
    let locations: HashMap<u64, &proto::Location> = p.location.iter().map(|l| (l.id, l)).collect();
    let comm_key = p.string_table.iter().position(|x| x == "comm");
    let mut lines = Vec::with_capacity(p.sample.len());
    for sample in &p.sample {
        let comm = sample
            .label
            .iter()
            .find(|l| Some(l.key as usize) == comm_key)
            .map_or("", |l| s(l.str));
        // As folded lines are made: no separator inside a name; no empty root without a comm.
        let mut line = sanitize(comm).into_owned();
        let mut frames = 0usize;
        for id in sample.location_id.iter().rev() {
            frames += loc_lines(&locations, *id);
            if frames > MAX_FRAMES {
                bail!("a sample has more than {MAX_FRAMES} frames");
            }
            let Some(loc) = locations.get(id) else {
                bail!("sample refers to location {id}, which the profile does not have");
            };
            let suffix = if kernel_maps.contains(&loc.mapping_id) {
                kernel_suffix
            } else {
                ""
            };
            // line[0] is the innermost (inlined) function, the last one its caller.
            for l in loc.line.iter().rev() {
                if !line.is_empty() {
                    line.push(';');
                }
                // As folded lines are made: no separator inside a name.
                let name = functions.get(&l.function_id).copied();
                line.push_str(&sanitize(name.unwrap_or("[unknown]")));
                line.push_str(suffix);
            }
            if loc.line.is_empty() {
                if !line.is_empty() {
                    line.push(';');
                }
                line.push_str(&format!("0x{:x}{suffix}", loc.address));
            }
        }
        lines.push((line, sample.value.get(index).copied().unwrap_or(0)));
    }
    let comment = |i: usize| p.comment.get(i).map(|&c| s(c).to_string());
    let tool = comment(0).and_then(|c| c.strip_prefix("bpfprof ").map(str::to_string));
    Ok(ReadProfile {
        title: tool.as_ref().and(comment(1)),
        subtitle: tool.as_ref().and(comment(2)),
        tool,
        value_type,
        lines,
    })
}

/// The frames a location stands for (its inlined functions; one without any is its address).
fn loc_lines(locations: &HashMap<u64, &proto::Location>, id: u64) -> usize {
    locations.get(&id).map_or(1, |l| l.line.len().max(1))
}

/// The GNU build-id of an ELF file's notes, in hex.
pub fn build_id_of_notes(notes: &[u8]) -> Option<String> {
    let mut at = 0usize;
    let word = |i: usize| {
        notes
            .get(i..i + 4)
            .map(|b| u32::from_ne_bytes(b.try_into().unwrap()))
    };
    while at + 12 <= notes.len() {
        let (namesz, descsz, kind) = (word(at)? as usize, word(at + 4)? as usize, word(at + 8)?);
        let name_at = at + 12;
        let desc_at = name_at + namesz.div_ceil(4) * 4;
        let next = desc_at + descsz.div_ceil(4) * 4;
        if kind == 3 && notes.get(name_at..name_at + namesz)? == b"GNU\0" {
            return Some(hex(notes.get(desc_at..desc_at + descsz)?));
        }
        at = next;
    }
    None
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> PprofSpec {
        PprofSpec {
            tool: "profile".into(),
            sample_types: vec![
                ("samples".into(), "count".into()),
                ("cpu".into(), "nanoseconds".into()),
            ],
            period_type: ("cpu".into(), "nanoseconds".into()),
            period: 10_101_010,
            time_nanos: 1,
            duration_nanos: 2,
            title: "CPU Flame Graph".into(),
            subtitle: Some("sub".into()),
            kernel_build_id: Some("abcd".into()),
        }
    }

    #[test]
    fn folded_lines_survive_the_round_trip() {
        let mapping = Arc::new(FileMapping {
            path: "/usr/bin/burn".into(),
            start: 0x1000,
            limit: 0x2000,
            offset: 0,
            build_id: Some("0102".into()),
            main: true,
        });
        let origin = |f: &str| {
            (f != "-").then(|| Origin {
                mapping: Arc::clone(&mapping),
                address: 0x1234,
            })
        };
        let mut b = PprofBuilder::new(&spec());
        let lines = [
            ("burn;main;spin;-;ksys_read_[k];vfs_read_[k]", 3),
            ("burn;main;spin", 5),
            ("other;main", 1),
        ];
        for (l, n) in lines {
            let labels = [("pid", LabelValue::Num(42))];
            b.add_folded(l, &[n, n * 10], &labels, &origin);
        }
        let data = b.finish().unwrap();
        let back = read(&data, None, "_[k]").unwrap();
        assert_eq!(back.tool.as_deref(), Some("profile"));
        assert_eq!(back.title.as_deref(), Some("CPU Flame Graph"));
        assert_eq!(back.subtitle.as_deref(), Some("sub"));
        let got: Vec<(String, i64)> = back.lines;
        let want: Vec<(String, i64)> = lines.iter().map(|(l, n)| (l.to_string(), *n)).collect();
        assert_eq!(got, want);
        // The second value type, by name; kernel frames unmarked.
        let cpu = read(&data, Some("cpu"), "").unwrap();
        assert_eq!(
            cpu.lines[0],
            ("burn;main;spin;-;ksys_read;vfs_read".into(), 30)
        );
        assert!(read(&data, Some("wall"), "").is_err());
        // Locations are shared: main (one mapping) once, the kernel ones in the kernel mapping.
        let mut raw = Vec::new();
        GzDecoder::new(&data[..]).read_to_end(&mut raw).unwrap();
        let p = proto::Profile::decode(&raw[..]).unwrap();
        assert_eq!(p.location.len(), 5); // vfs_read, ksys_read, -, spin, main
        assert_eq!(p.mapping.len(), 2);
        assert_eq!(
            p.string_table[p.mapping[0].filename as usize],
            "/usr/bin/burn"
        );
        assert!(p.string_table.iter().any(|s| s == "0102"));
        assert!(p.string_table.iter().any(|s| s == KERNEL_MAPPING));
    }

    #[test]
    fn a_threads_stacks_read_back_as_fold_lays_them_out() {
        let style = crate::render::StackStyle {
            annotations: true,
            ..Default::default()
        };
        let frames = |names: &[&str]| StackPart::Frames(names.iter().map(|&n| n.into()).collect());
        let rec = crate::render::StackRecord {
            comm: "burn".into(),
            pid: 1,
            tid: 1,
            user: frames(&["spin", "a;b", "main"]),
            kernel: frames(&["vfs_read", "ksys_read"]),
            value: 2,
        };
        let missed = crate::render::StackRecord {
            kernel: StackPart::Missed,
            ..rec.clone()
        };
        let mut b = PprofBuilder::new(&spec());
        for r in [&rec, &missed] {
            b.add_stacks(&r.comm, &r.user, &r.kernel, &[2, 20], &[], &|_| None);
        }
        let back = read(&b.finish().unwrap(), None, "_[k]").unwrap();
        let want: Vec<(String, i64)> = [&rec, &missed]
            .iter()
            .map(|r| (crate::render::folded::fold(r, &style), 2))
            .collect();
        assert_eq!(back.lines, want);
    }

    #[test]
    fn not_a_profile_is_an_error() {
        assert!(read(b"\x1f\x8bnot gzip", None, "").is_err());
        assert!(read(&[0xff; 16], None, "").is_err());
    }

    #[test]
    fn build_ids_come_from_gnu_notes() {
        let mut notes = Vec::new();
        // A note of another kind first, then NT_GNU_BUILD_ID.
        for (name, kind, desc) in [
            (&b"Xen\0"[..], 1u32, &[9u8, 9, 9][..]),
            (b"GNU\0", 3, &[0xde, 0xad, 0xbe, 0xef]),
        ] {
            notes.extend((name.len() as u32).to_ne_bytes());
            notes.extend((desc.len() as u32).to_ne_bytes());
            notes.extend(kind.to_ne_bytes());
            notes.extend(name);
            notes.extend(desc);
            notes.resize(notes.len().div_ceil(4) * 4, 0);
        }
        assert_eq!(build_id_of_notes(&notes).as_deref(), Some("deadbeef"));
        assert_eq!(build_id_of_notes(&notes[..20]), None);
    }
}
