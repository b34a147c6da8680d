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

/// Functions defined in `path` whose names match, one per address (aliases of one function, such as
/// `malloc` and `__libc_malloc`, are one probe point: two uprobes at one address would count each call
/// twice), named by the matching alias with the fewest leading underscores. Sorted by name.
pub fn functions(path: &Path, m: &Matcher) -> Result<Vec<UserPoint>> {
    let data = read(path)?;
    let file = object::File::parse(&*data)
        .with_context(|| format!("{} is not an ELF file", path.display()))?;
    let mut by_offset: BTreeMap<u64, String> = BTreeMap::new();
    for sym in file.symbols().chain(file.dynamic_symbols()) {
        if sym.kind() != SymbolKind::Text || sym.is_undefined() || sym.address() == 0 {
            continue;
        }
        let Ok(name) = sym.name() else { continue };
        // Versioned dynamic names (`malloc@@GLIBC_2.2.5`) are plain names here.
        let name = name.split('@').next().unwrap_or(name);
        if name.is_empty() || !m.is_match(name) {
            continue;
        }
        let Some(off) = file_offset(&file, sym.address()) else {
            continue;
        };
        let better = |old: &String| {
            let lead = |s: &str| s.len() - s.trim_start_matches('_').len();
            (lead(name), name) < (lead(old), old.as_str())
        };
        match by_offset.get(&off) {
            Some(old) if !better(old) => {}
            _ => {
                by_offset.insert(off, name.to_string());
            }
        }
    }
    let mut out: Vec<UserPoint> = by_offset
        .into_iter()
        .map(|(offset, name)| UserPoint {
            path: path.to_path_buf(),
            name,
            offset,
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name).then(a.offset.cmp(&b.offset)));
    Ok(out)
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
    let addr_size = if file.is_64() { 8 } else { 4 };
    let little = file.is_little_endian();
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
            let provider = String::from_utf8_lossy(strings.next().unwrap_or(&[])).into_owned();
            let name = String::from_utf8_lossy(strings.next().unwrap_or(&[])).into_owned();
            if m.is_match(&name) || m.is_match(&format!("{provider}:{name}")) {
                out.push(UsdtProbe { provider, name });
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// One ELF note: owner (without its NUL), type, descriptor.
type Note<'a> = (&'a [u8], u32, &'a [u8]);

/// ELF notes: 4-byte sizes and type, each part padded to 4.
fn parse_notes(mut data: &[u8], little: bool) -> Result<Vec<Note<'_>>> {
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
        let f = functions(&exe, &m).unwrap();
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].offset > 0);
    }
}
