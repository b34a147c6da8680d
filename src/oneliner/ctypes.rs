//! The C types of kernel memory that casts name and `->` reads: records (structs and unions) from the
//! kernel's BTF, or from the program's own definitions (`struct cfs_rq { ... };`, which win, as in
//! bpftrace); and the kernel's enum constants. The BTF is read once, when a program first needs it.
use std::collections::HashMap;
use std::sync::OnceLock;

use btf_rs::{Btf, BtfType, Type as BtfT};

/// A type as far as reading kernel memory cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CType {
    Int {
        size: usize,
        signed: bool,
    },
    /// An array of chars, read as a string.
    Chars(usize),
    Ptr(Box<CType>),
    Void,
    Record(RecordRef),
    Array {
        elem: Box<CType>,
        len: usize,
    },
    /// What the language cannot read (floats, functions...), by its kind.
    Other(String),
}

/// A struct or union: by name (a cast's, a program definition's), or by BTF id (anonymous ones, and those
/// reached through members).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RecordRef {
    Named { name: String, union: bool },
    Btf(u32),
}

impl RecordRef {
    pub fn named(name: &str, union: bool) -> Self {
        RecordRef::Named {
            name: name.to_string(),
            union,
        }
    }
}

/// A record's member: where it lies from the record's start, and what it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub offset: usize,
    /// A bitfield: its first bit from `offset` and its width in bits.
    pub bits: Option<(u32, u32)>,
    pub ty: CType,
}

/// A record the program defines, laid out by C's rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    pub size: usize,
    pub align: usize,
    pub members: Vec<(String, Member)>,
}

/// Where kernel types come from: vmlinux's BTF on a live system; none in tests that need none.
pub trait KernelTypes {
    /// Member `field` of a kernel record (members of anonymous inner records included).
    fn member(&self, record: &RecordRef, field: &str) -> Result<Member, String>;
    /// A kernel record's size in bytes.
    fn size_of(&self, record: &RecordRef) -> Result<usize, String>;
    /// A typedef's type (`u64`, `pid_t`, `sector_t`).
    fn typedef(&self, name: &str) -> Option<CType>;
    /// An enumerator's value (`BPF_MAP_TYPE_HASH`).
    fn enum_value(&self, name: &str) -> Option<i64>;
    /// A kernel symbol's address (kaddr()).
    fn symbol(&self, name: &str) -> Option<u64>;
}

/// No kernel types: every lookup fails, saying why.
pub struct NoTypes;

impl KernelTypes for NoTypes {
    fn member(&self, record: &RecordRef, _: &str) -> Result<Member, String> {
        Err(format!(
            "no kernel type information for {}",
            describe(record)
        ))
    }
    fn size_of(&self, record: &RecordRef) -> Result<usize, String> {
        Err(format!(
            "no kernel type information for {}",
            describe(record)
        ))
    }
    fn typedef(&self, _: &str) -> Option<CType> {
        None
    }
    fn enum_value(&self, _: &str) -> Option<i64> {
        None
    }
    fn symbol(&self, _: &str) -> Option<u64> {
        None
    }
}

/// `struct NAME` / `union NAME` as C writes it (anonymous records by id).
pub fn describe(r: &RecordRef) -> String {
    match r {
        RecordRef::Named { name, union } => {
            format!("{} {name}", if *union { "union" } else { "struct" })
        }
        RecordRef::Btf(id) => format!("an anonymous record (BTF id {id})"),
    }
}

/// vmlinux's BTF (/sys/kernel/btf/vmlinux), read at the first lookup.
#[derive(Default)]
pub struct KernelBtf {
    btf: OnceLock<Result<Btf, String>>,
    enums: OnceLock<HashMap<String, i64>>,
    symbols: OnceLock<HashMap<String, u64>>,
}

/// The kernel's types, shared by every program of the run.
pub fn kernel() -> &'static KernelBtf {
    static KERNEL: OnceLock<KernelBtf> = OnceLock::new();
    KERNEL.get_or_init(KernelBtf::default)
}

impl KernelBtf {
    fn btf(&self) -> Result<&Btf, String> {
        self.btf
            .get_or_init(|| {
                // Read whole at once: parsed from the file, each of its reads asked the kernel for the
                // position (a seek), a sixth of the time.
                std::fs::read("/sys/kernel/btf/vmlinux")
                    .map_err(|e| e.to_string())
                    .and_then(|b| Btf::from_bytes(&b).map_err(|e| e.to_string()))
                    .map_err(|e| {
                        format!("this kernel has no readable BTF (/sys/kernel/btf/vmlinux: {e}): casts and struct fields need it")
                    })
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The struct or union a reference names, with its id.
    fn record(&self, r: &RecordRef) -> Result<(u32, btf_rs::Struct), String> {
        let btf = self.btf()?;
        let id = match r {
            RecordRef::Btf(id) => *id,
            RecordRef::Named { name, union } => {
                let ids = btf.resolve_ids_by_name(name).unwrap_or_default();
                ids.into_iter()
                    .find(|&id| {
                        matches!(
                            (btf.resolve_type_by_id(id), union),
                            (Ok(BtfT::Struct(_)), false) | (Ok(BtfT::Union(_)), true)
                        )
                    })
                    .ok_or_else(|| format!("the kernel has no {}", describe(r)))?
            }
        };
        match btf.resolve_type_by_id(id) {
            Ok(BtfT::Struct(s)) | Ok(BtfT::Union(s)) => Ok((id, s)),
            _ => Err(format!("{} is not a struct or union", describe(r))),
        }
    }

    /// The type with BTF id `id`, modifiers and typedefs seen through.
    fn ctype(&self, id: u32, depth: usize) -> CType {
        let Ok(btf) = self.btf() else {
            return CType::Other("unknown".into());
        };
        let mut id = id;
        for _ in 0..32 {
            let Ok(t) = btf.resolve_type_by_id(id) else {
                return CType::Other("unknown".into());
            };
            match t {
                BtfT::Void => return CType::Void,
                BtfT::Int(i) => {
                    return CType::Int {
                        size: i.size(),
                        signed: i.is_signed(),
                    }
                }
                BtfT::Enum(e) => {
                    return CType::Int {
                        size: e.size(),
                        signed: e.is_signed(),
                    }
                }
                BtfT::Enum64(e) => {
                    return CType::Int {
                        size: e.size(),
                        signed: e.is_signed(),
                    }
                }
                BtfT::Ptr(p) => {
                    // Pointers to pointers are followed a few levels; deeper ones read as void *.
                    let to = match p.get_type_id() {
                        Some(to) if depth < 4 => self.ctype(to, depth + 1),
                        _ => CType::Void,
                    };
                    return CType::Ptr(Box::new(to));
                }
                BtfT::Array(a) => {
                    let elem = a
                        .get_type_id()
                        .map_or(CType::Void, |e| self.ctype(e, depth + 1));
                    return match elem {
                        CType::Int { size: 1, .. } => CType::Chars(a.len()),
                        elem => CType::Array {
                            elem: Box::new(elem),
                            len: a.len(),
                        },
                    };
                }
                BtfT::Struct(_) | BtfT::Union(_) => return CType::Record(RecordRef::Btf(id)),
                BtfT::Fwd(f) => {
                    let name = btf.resolve_name(&f).unwrap_or_default();
                    return CType::Record(RecordRef::named(&name, f.is_union()));
                }
                BtfT::Typedef(t) => id = t.get_type_id().unwrap_or(0),
                BtfT::Volatile(t) | BtfT::Const(t) | BtfT::Restrict(t) => {
                    id = t.get_type_id().unwrap_or(0)
                }
                BtfT::TypeTag(t) => id = t.get_type_id().unwrap_or(0),
                other => return CType::Other(other.name().to_string()),
            }
        }
        CType::Other("a chain of typedefs".into())
    }

    /// Member `field` of record `id` (looked for in anonymous inner records too), `base` bytes in.
    fn find_member(&self, s: &btf_rs::Struct, field: &str, base: usize) -> Option<Member> {
        let btf = self.btf().ok()?;
        for m in &s.members {
            let name = btf.resolve_name(m).unwrap_or_default();
            let bit = m.bit_offset() as usize;
            let offset = base + bit / 8;
            let tid = m.get_type_id()?;
            if name == field {
                let bits = match m.bitfield_size() {
                    Some(n) if n > 0 => Some(((bit % 8) as u32, n)),
                    _ => None,
                };
                return Some(Member {
                    offset,
                    bits,
                    ty: self.ctype(tid, 0),
                });
            }
            if name.is_empty() {
                if let CType::Record(RecordRef::Btf(inner)) = self.ctype(tid, 0) {
                    if let Ok(BtfT::Struct(s) | BtfT::Union(s)) = btf.resolve_type_by_id(inner) {
                        if let Some(found) = self.find_member(&s, field, offset) {
                            return Some(found);
                        }
                    }
                }
            }
        }
        None
    }
}

impl KernelTypes for KernelBtf {
    fn member(&self, record: &RecordRef, field: &str) -> Result<Member, String> {
        let (_, s) = self.record(record)?;
        self.find_member(&s, field, 0)
            .ok_or_else(|| format!("{} has no field named {field}", describe(record)))
    }

    fn size_of(&self, record: &RecordRef) -> Result<usize, String> {
        Ok(self.record(record)?.1.size())
    }

    fn typedef(&self, name: &str) -> Option<CType> {
        let btf = self.btf().ok()?;
        let id = btf
            .resolve_ids_by_name(name)
            .ok()?
            .into_iter()
            .find(|&id| matches!(btf.resolve_type_by_id(id), Ok(BtfT::Typedef(_))))?;
        Some(self.ctype(id, 0))
    }

    fn enum_value(&self, name: &str) -> Option<i64> {
        let enums = self.enums.get_or_init(|| {
            let mut all = HashMap::new();
            let Ok(btf) = self.btf() else {
                return all;
            };
            // Every type, by id, up to the first id past the last.
            for t in (1..).map_while(|id| btf.resolve_type_by_id(id).ok()) {
                match t {
                    BtfT::Enum(e) => {
                        for m in &e.members {
                            let v = if e.is_signed() {
                                i64::from(m.val() as i32)
                            } else {
                                i64::from(m.val())
                            };
                            all.insert(btf.resolve_name(m).unwrap_or_default(), v);
                        }
                    }
                    BtfT::Enum64(e) => {
                        for m in &e.members {
                            all.insert(btf.resolve_name(m).unwrap_or_default(), m.val() as i64);
                        }
                    }
                    _ => {}
                }
            }
            all
        });
        enums.get(name).copied()
    }

    fn symbol(&self, name: &str) -> Option<u64> {
        let symbols = self.symbols.get_or_init(|| {
            let text = std::fs::read_to_string("/proc/kallsyms").unwrap_or_default();
            let mut all = HashMap::new();
            for line in text.lines() {
                let mut w = line.split_whitespace();
                if let (Some(addr), Some(_), Some(sym), None) =
                    (w.next(), w.next(), w.next(), w.next())
                {
                    if let Ok(a) = u64::from_str_radix(addr, 16) {
                        all.entry(sym.to_string()).or_insert(a);
                    }
                }
            }
            all
        });
        symbols.get(name).copied().filter(|&a| a != 0)
    }
}

/// Constants of the kernel's headers that BTF does not carry (macros) and bpftrace's tools use.
pub fn macro_value(name: &str) -> Option<i64> {
    Some(match name {
        "TASK_RUNNING" => 0x0,
        "TASK_INTERRUPTIBLE" => 0x1,
        "TASK_UNINTERRUPTIBLE" => 0x2,
        "__TASK_STOPPED" => 0x4,
        "__TASK_TRACED" => 0x8,
        "EXIT_DEAD" => 0x10,
        "EXIT_ZOMBIE" => 0x20,
        "TASK_PARKED" => 0x40,
        "TASK_DEAD" => 0x80,
        "TASK_WAKEKILL" => 0x100,
        "TASK_WAKING" => 0x200,
        "TASK_NOLOAD" => 0x400,
        "TASK_NEW" => 0x800,
        "TASK_KILLABLE" => 0x102,
        "TASK_STOPPED" => 0x104,
        "TASK_TRACED" => 0x8,
        "TASK_IDLE" => 0x402,
        "AF_UNSPEC" => 0,
        "AF_UNIX" | "AF_LOCAL" => 1,
        "AF_INET" => 2,
        "AF_INET6" => 10,
        "AF_NETLINK" => 16,
        "AF_PACKET" => 17,
        "PF_KTHREAD" => 0x0020_0000,
        "PF_EXITING" => 0x4,
        "O_RDONLY" => 0,
        "O_WRONLY" => 1,
        "O_RDWR" => 2,
        "O_CREAT" => 0o100,
        "O_TRUNC" => 0o1000,
        "O_APPEND" => 0o2000,
        "ETH_ALEN" => 6,
        _ => return None,
    })
}

/// The size and alignment of a C type in a program's struct definition (records: their size, aligned as
/// their largest power of two up to 8, which BTF does not record).
pub fn size_align(
    t: &CType,
    kernel: &dyn KernelTypes,
    program: &HashMap<String, Layout>,
) -> Result<(usize, usize), String> {
    Ok(match t {
        CType::Int { size, .. } => (*size, (*size).clamp(1, 8)),
        CType::Chars(n) => (*n, 1),
        CType::Ptr(_) => (8, 8),
        CType::Void => return Err("a member cannot be void".into()),
        CType::Record(r) => {
            if let RecordRef::Named { name, .. } = r {
                if let Some(l) = program.get(name) {
                    return Ok((l.size, l.align));
                }
            }
            let size = kernel.size_of(r)?;
            let align = if size == 0 {
                1
            } else {
                (1usize << size.trailing_zeros()).min(8)
            };
            (size, align)
        }
        CType::Array { elem, len } => {
            let (s, a) = size_align(elem, kernel, program)?;
            (s * len, a)
        }
        CType::Other(what) => return Err(format!("{what} cannot be a member here")),
    })
}

/// Lays out a program's struct (or union) from its members' types, as C does.
pub fn lay_out(
    members: &[(String, CType)],
    union: bool,
    kernel: &dyn KernelTypes,
    program: &HashMap<String, Layout>,
) -> Result<Layout, String> {
    let mut layout = Layout {
        size: 0,
        align: 1,
        members: Vec::new(),
    };
    for (name, ty) in members {
        let (size, align) = size_align(ty, kernel, program)?;
        let offset = if union {
            0
        } else {
            layout.size.div_ceil(align) * align
        };
        layout.size = if union {
            layout.size.max(size)
        } else {
            offset + size
        };
        layout.align = layout.align.max(align);
        layout.members.push((
            name.clone(),
            Member {
                offset,
                bits: None,
                ty: ty.clone(),
            },
        ));
    }
    layout.size = layout.size.div_ceil(layout.align) * layout.align;
    Ok(layout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_structs_are_laid_out_as_c_does() {
        let int = |size, signed| CType::Int { size, signed };
        let members = vec![
            ("a".to_string(), int(1, false)),
            ("b".to_string(), int(8, false)),
            ("c".to_string(), int(4, true)),
            ("name".to_string(), CType::Chars(3)),
            ("p".to_string(), CType::Ptr(Box::new(CType::Void))),
        ];
        let l = lay_out(&members, false, &NoTypes, &HashMap::new()).unwrap();
        let offsets: Vec<usize> = l.members.iter().map(|(_, m)| m.offset).collect();
        assert_eq!(offsets, [0, 8, 16, 20, 24]);
        assert_eq!((l.size, l.align), (32, 8));
        let u = lay_out(&members, true, &NoTypes, &HashMap::new()).unwrap();
        assert!(u.members.iter().all(|(_, m)| m.offset == 0));
        assert_eq!(u.size, 8);
        // A kernel record's size is needed, and there is none here.
        let r = vec![(
            "x".to_string(),
            CType::Record(RecordRef::named("path", false)),
        )];
        assert!(lay_out(&r, false, &NoTypes, &HashMap::new()).is_err());
    }
}
