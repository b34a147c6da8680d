//! What an ELF file offers to probe: its functions (symbol tables, as file offsets) and its USDT probes
//! (.note.stapsdt). Read with the `object` crate.
use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol, SymbolKind};

use super::{Matcher, UserPoint};

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// A virtual address's offset in the file, through the loadable segment that maps it.
fn file_offset(file: &object::File<'_>, addr: u64) -> Option<u64> {
    file.segments().find_map(|seg| {
        let (off, size) = seg.file_range();
        let start = seg.address();
        (addr >= start && addr < start + size).then(|| addr - start + off)
    })
}

/// ELF's STT_GNU_IFUNC: the symbol is a resolver that returns the implementation to call.
const STT_GNU_IFUNC: u8 = 10;

/// What matched in a file: the probe points, and functions that were left out.
#[derive(Debug, Default)]
pub struct Functions {
    pub points: Vec<UserPoint>,
    /// IFUNCs whose implementation could not be found (probing the resolver would count nothing).
    pub unresolved_ifuncs: Vec<String>,
    /// The file has no function symbols at all (stripped).
    pub stripped: bool,
}

/// Functions defined in `path` whose names match, one probe point per address.
///
/// - Aliases of one function (`malloc` and `__libc_malloc`, `free` and `cfree`) are one point (two uprobes at
///   one address would count each call twice), named by the alias with the fewest leading underscores, then
///   the shortest.
/// - An IFUNC (`strlen`, `memcpy` in libc) is a resolver run once at load; calls go to the implementation it
///   picks for this CPU. As bcc does, the implementation is found by asking the dynamic linker in this
///   process, only for libraries this process has loaded already (libc); IFUNCs that resolve to one
///   implementation (`memcpy`, `memmove`) share a point named `memcpy/memmove`.
/// - Different functions with one name (static functions of several files) are told apart by their offset:
///   `helper@0x1139`.
pub fn functions(path: &Path, m: &Matcher) -> Result<Functions> {
    let data = read(path)?;
    let file = object::File::parse(&*data)
        .with_context(|| format!("{} is not an ELF file", path.display()))?;
    // Offset -> (names, whether those names are IFUNCs resolved to it).
    let mut by_offset: BTreeMap<u64, (Vec<String>, bool)> = BTreeMap::new();
    let mut found = Functions::default();
    let mut any_function = false;
    let mut ifuncs = Vec::new();
    for sym in file.symbols().chain(file.dynamic_symbols()) {
        if sym.kind() != SymbolKind::Text || sym.is_undefined() || sym.address() == 0 {
            continue;
        }
        let Ok(name) = sym.name() else { continue };
        // Versioned names (`malloc@@GLIBC_2.2.5`) are plain names here.
        let name = name.split('@').next().unwrap_or(name);
        if name.is_empty() {
            continue;
        }
        any_function = true;
        if !m.is_match(name) {
            continue;
        }
        let ifunc = matches!(sym.flags(), object::SymbolFlags::Elf { st_info, .. } if st_info & 0xf == STT_GNU_IFUNC);
        if ifunc {
            ifuncs.push(name.to_string());
            continue;
        }
        let Some(off) = file_offset(&file, sym.address()) else {
            continue;
        };
        let entry = by_offset.entry(off).or_default();
        if !entry.0.iter().any(|n| n == name) {
            entry.0.push(name.to_string());
        }
    }
    ifuncs.sort();
    ifuncs.dedup();
    for name in ifuncs {
        match resolve_ifunc(path, &name) {
            Some(off) => {
                let entry = by_offset.entry(off).or_default();
                if !entry.0.contains(&name) {
                    if !entry.1 {
                        // The implementation has its own (internal) names: the IFUNC's names replace them.
                        entry.0.clear();
                        entry.1 = true;
                    }
                    entry.0.push(name);
                }
            }
            None => found.unresolved_ifuncs.push(name),
        }
    }
    found.stripped = !any_function;
    let mut points: Vec<UserPoint> = by_offset
        .into_iter()
        .map(|(offset, (mut names, ifunc))| {
            names.sort_by_key(|n| crate::symbolize::elfnames::public_preference(n));
            let name = if ifunc {
                names.join("/")
            } else {
                names.swap_remove(0)
            };
            UserPoint {
                path: path.to_path_buf(),
                name,
                offset,
            }
        })
        .collect();
    points.sort_by(|a, b| a.name.cmp(&b.name).then(a.offset.cmp(&b.offset)));
    for i in 0..points.len() {
        let dup = (i > 0 && points[i - 1].name == points[i].name)
            || (i + 1 < points.len() && points[i + 1].name == points[i].name);
        if dup {
            points[i].name = format!("{}@{:#x}", points[i].name, points[i].offset);
        }
    }
    // Renamed duplicates of one name follow each other: the order is still by name.
    found.points = points;
    Ok(found)
}

/// The file offset of the implementation an IFUNC resolves to in this process, if `path` is a library this
/// process has loaded (dlopen with RTLD_NOLOAD loads nothing, and runs no constructor).
fn resolve_ifunc(path: &Path, name: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let cpath = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    let cname = std::ffi::CString::new(name).ok()?;
    // SAFETY: NUL-terminated strings; RTLD_NOLOAD only returns a handle to an already loaded library, which
    // is closed again; dlsym only looks the symbol up (the IFUNC resolver ran when the library was loaded).
    let addr = unsafe {
        let handle = libc::dlopen(cpath.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD);
        if handle.is_null() {
            return None;
        }
        let addr = libc::dlsym(handle, cname.as_ptr()) as u64;
        libc::dlclose(handle);
        addr
    };
    if addr == 0 {
        return None;
    }
    let want = std::fs::metadata(path).ok()?;
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (range, offset, file) = (f.first()?, f.get(2)?, f.get(5)?);
        let (lo, hi) = range.split_once('-')?;
        let (lo, hi) = (
            u64::from_str_radix(lo, 16).ok()?,
            u64::from_str_radix(hi, 16).ok()?,
        );
        if addr < lo || addr >= hi {
            return None;
        }
        let meta = std::fs::metadata(file).ok()?;
        (meta.ino() == want.ino() && meta.dev() == want.dev())
            .then(|| addr - lo + u64::from_str_radix(offset, 16).unwrap_or(0))
    })
}

/// A USDT probe of an ELF file (.note.stapsdt): provider and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct UsdtProbe {
    pub provider: String,
    pub name: String,
}

/// The USDT probes in `path` whose `name` or `provider:name` matches, once each (a probe used at several
/// sites has a note per site; libbpf attaches them all). Sorted.
pub fn usdt_probes(path: &Path, m: &Matcher) -> Result<Vec<UsdtProbe>> {
    let data = read(path)?;
    let file = object::File::parse(&*data)
        .with_context(|| format!("{} is not an ELF file", path.display()))?;
    let mut out: Vec<UsdtProbe> = stapsdt_notes(&file, m)?
        .into_iter()
        .map(|n| UsdtProbe {
            provider: n.provider,
            name: n.name,
        })
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// One call site of a USDT probe: where to put the uprobe, its semaphore, its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsdtSite {
    pub provider: String,
    pub name: String,
    /// The file offset of the probe's instruction.
    pub offset: u64,
    /// The file offset of its semaphore (a counter the program checks before preparing the arguments;
    /// the kernel raises it while a uprobe is attached), 0 if it has none.
    pub semaphore: u64,
    /// The argument specification as the note writes it (`-4@%edi 8@-16(%rbp) 4@$5`).
    pub args: String,
}

/// Every call site of the USDT probes of `path` whose `name` or `provider:name` matches, in file order.
pub fn usdt_sites(path: &Path, m: &Matcher) -> Result<Vec<UsdtSite>> {
    let data = read(path)?;
    let file = object::File::parse(&*data)
        .with_context(|| format!("{} is not an ELF file", path.display()))?;
    // Prelinked files moved their code: the note's base says where .stapsdt.base was when it was written.
    let base_section = file
        .sections()
        .find(|s| s.name().ok() == Some(".stapsdt.base"))
        .map(|s| s.address());
    let mut out = Vec::new();
    for n in stapsdt_notes(&file, m)? {
        let mut pc = n.pc;
        if let Some(b) = base_section {
            if n.base != 0 {
                pc = pc.wrapping_add(b).wrapping_sub(n.base);
            }
        }
        let offset = file_offset(&file, pc).with_context(|| {
            format!(
                "USDT probe {}:{} at {pc:#x} is outside the file's segments",
                n.provider, n.name
            )
        })?;
        let semaphore = if n.sem == 0 {
            0
        } else {
            file_offset(&file, n.sem).unwrap_or(0)
        };
        out.push(UsdtSite {
            provider: n.provider,
            name: n.name,
            offset,
            semaphore,
            args: n.args,
        });
    }
    Ok(out)
}

/// A USDT note (.note.stapsdt, type 3) as written: the probe's address, .stapsdt.base's, the semaphore's
/// (virtual addresses), and its strings.
struct StapsdtNote {
    pc: u64,
    base: u64,
    sem: u64,
    provider: String,
    name: String,
    args: String,
}

/// The USDT notes of `file` whose `name` or `provider:name` matches, in file order.
fn stapsdt_notes(file: &object::File<'_>, m: &Matcher) -> Result<Vec<StapsdtNote>> {
    let addr_size = if file.is_64() { 8 } else { 4 };
    let little = file.is_little_endian();
    let addr = |b: &[u8]| -> u64 {
        let mut a = [0u8; 8];
        a[..addr_size].copy_from_slice(&b[..addr_size]);
        if little {
            u64::from_le_bytes(a)
        } else {
            u64::from_be_bytes(a) >> (64 - 8 * addr_size)
        }
    };
    let mut out = Vec::new();
    for sec in file.sections() {
        if sec.name().ok() != Some(".note.stapsdt") {
            continue;
        }
        let notes = sec.data().context("reading .note.stapsdt")?;
        for (owner, kind, desc) in parse_notes(notes, little)? {
            if owner != b"stapsdt" || kind != 3 || desc.len() < 3 * addr_size {
                continue;
            }
            let mut strings = desc[3 * addr_size..].split(|&b| b == 0);
            let mut next = || String::from_utf8_lossy(strings.next().unwrap_or(&[])).into_owned();
            let (provider, name, args) = (next(), next(), next());
            if !m.is_match(&name) && !m.is_match(&format!("{provider}:{name}")) {
                continue;
            }
            out.push(StapsdtNote {
                pc: addr(desc),
                base: addr(&desc[addr_size..]),
                sem: addr(&desc[2 * addr_size..]),
                provider,
                name,
                args,
            });
        }
    }
    Ok(out)
}

/// One ELF note: owner (without its NUL), type, descriptor.
pub(crate) type Note<'a> = (&'a [u8], u32, &'a [u8]);

/// ELF notes: 4-byte sizes and type, each part padded to 4.
pub(crate) fn parse_notes(mut data: &[u8], little: bool) -> Result<Vec<Note<'_>>> {
    let word = |b: &[u8]| {
        let a: [u8; 4] = b[..4].try_into().expect("4 bytes");
        if little {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let pad = |n: usize| (n + 3) & !3;
    let mut out = Vec::new();
    while data.len() >= 12 {
        let (namesz, descsz, kind) = (
            word(&data[0..]) as usize,
            word(&data[4..]) as usize,
            word(&data[8..]),
        );
        let name_end = 12 + pad(namesz);
        let desc_end = name_end + pad(descsz);
        if data.len() < name_end || data.len() < name_end + descsz {
            bail!("a truncated ELF note");
        }
        let owner = &data[12..12 + namesz];
        let owner = owner.strip_suffix(&[0]).unwrap_or(owner);
        out.push((owner, kind, &data[name_end..name_end + descsz]));
        data = &data[desc_end.min(data.len())..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_parse() {
        let mut n = Vec::new();
        n.extend(8u32.to_le_bytes());
        n.extend(5u32.to_le_bytes());
        n.extend(3u32.to_le_bytes());
        n.extend(b"stapsdt\0");
        n.extend(b"abcde\0\0\0");
        let notes = parse_notes(&n, true).unwrap();
        assert_eq!(notes, vec![(&b"stapsdt"[..], 3, &b"abcde"[..])]);
        assert!(parse_notes(&n[..15], true).is_err());
    }

    #[test]
    fn functions_of_this_test_binary_have_offsets() {
        let exe = std::env::current_exe().unwrap();
        let m = Matcher::new("main", false).unwrap();
        let f = functions(&exe, &m).unwrap().points;
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].offset > 0);
    }

    #[test]
    fn libc_ifuncs_resolve_to_their_implementation_and_aliases_merge() {
        let libc = crate::probes::libs::resolve("c", None).unwrap();
        let m = Matcher::new("strlen", false).unwrap();
        let f = functions(&libc, &m).unwrap();
        assert!(f.unresolved_ifuncs.is_empty(), "{f:?}");
        assert_eq!(f.points.len(), 1, "{f:?}");
        assert_eq!(f.points[0].name, "strlen");
        let m = Matcher::new("*free", false).unwrap();
        let names: Vec<String> = functions(&libc, &m)
            .unwrap()
            .points
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert!(names.contains(&"free".to_string()), "{names:?}");
        assert!(!names.contains(&"cfree".to_string()), "{names:?}");
    }
}
