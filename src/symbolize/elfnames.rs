//! What blazesym does not say about a user frame's name, read once per file from its symbol tables and
//! dynamic relocations (the `object` crate):
//! - PLT stubs: blazesym names them by the symbol before them (`_init`); perf says `time@plt`. Each stub
//!   jumps through a GOT slot (`jmp *disp(%rip)`), and the relocation of that slot names the function.
//! - Aliases: one function with several names (`__GI___clock_nanosleep`, `__clock_nanosleep`,
//!   `clock_nanosleep`) is named as users know it: the fewest leading underscores, then the shortest (the
//!   rule funccount uses for its probe points).
//! - Code: in a binary whose local symbols are stripped, blazesym can name a code address by the data
//!   symbol before it (`_PyRuntime`); such a frame is unknown, not misnamed.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use object::elf::{R_X86_64_GLOB_DAT, R_X86_64_JUMP_SLOT};
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader, Rela, SectionHeader};
use object::{Endianness, Object, ObjectSection, ObjectSymbol, SymbolKind};

/// ELF's STT_GNU_IFUNC: a function whose symbol is a resolver (code, all the same).
const STT_GNU_IFUNC: u8 = 10;

/// The names of one ELF file's code.
#[derive(Debug, Default)]
pub struct ElfNames {
    /// Function symbols by start address: where each ends, and its names, the public one first.
    funcs: BTreeMap<u64, (u64, Vec<String>)>,
    /// Data symbols' names (objects, TLS): never the name of code.
    data: HashSet<String>,
    /// PLT stubs by start address: where each ends, and `name@plt`.
    plt: BTreeMap<u64, (u64, String)>,
    /// Loadable segments: (file offset, size in the file, virtual address).
    segments: Vec<(u64, u64, u64)>,
}

impl ElfNames {
    /// Reads `path`'s tables, and the symbols of its detached debug file where one is installed under
    /// /usr/lib/debug/.build-id/ (Debian's -dbg and -dbgsym packages: blazesym names frames from it,
    /// internal aliases such as `__libc_start_main_impl` among them). None if it is not a 64-bit ELF
    /// file (or cannot be read).
    pub fn read(path: &Path) -> Option<Self> {
        let map = map_file(path)?;
        let debug = ElfFile64::<Endianness>::parse(&*map)
            .ok()
            .and_then(|elf| elf.build_id().ok().flatten().map(debug_file_path))
            .and_then(|p| map_file(Path::new(&p)));
        Self::parse(&map, debug.as_deref())
    }

    /// From the bytes of an ELF file and of its detached debug file, if any.
    pub fn parse(data: &[u8], debug: Option<&[u8]>) -> Option<Self> {
        let elf = ElfFile64::<Endianness>::parse(data).ok()?;
        let mut names = Self::default();
        let endian = elf.endian();
        for ph in elf.elf_program_headers() {
            if ph.p_type(endian) == object::elf::PT_LOAD {
                names
                    .segments
                    .push((ph.p_offset(endian), ph.p_filesz(endian), ph.p_vaddr(endian)));
            }
        }
        // Start -> (size, names).
        let mut by_start: BTreeMap<u64, (u64, Vec<String>)> = BTreeMap::new();
        names.add_symbols(&elf, &mut by_start);
        if let Some(debug) = debug.and_then(|d| ElfFile64::<Endianness>::parse(d).ok()) {
            names.add_symbols(&debug, &mut by_start);
        }
        let starts: Vec<u64> = by_start.keys().copied().collect();
        for (i, (start, (size, mut list))) in by_start.into_iter().enumerate() {
            // A symbol without a size (hand-written assembly) reaches the next one.
            let end = if size > 0 {
                start + size
            } else {
                starts.get(i + 1).copied().unwrap_or(start + 1)
            };
            list.sort_by_key(|n| public_preference(n));
            names.funcs.insert(start, (end, list));
        }
        names.read_plt(&elf, data);
        Some(names)
    }

    /// Adds the function symbols of `elf` to `by_start` (start -> size, names), its data symbols to
    /// `self.data`.
    fn add_symbols(
        &mut self,
        elf: &ElfFile64<'_, Endianness>,
        by_start: &mut BTreeMap<u64, (u64, Vec<String>)>,
    ) {
        for sym in elf.symbols().chain(elf.dynamic_symbols()) {
            if sym.is_undefined() || sym.address() == 0 {
                continue;
            }
            let Ok(name) = sym.name() else { continue };
            // Versioned names (`memcpy@@GLIBC_2.14`) are plain names here.
            let name = name.split('@').next().unwrap_or(name);
            if name.is_empty() {
                continue;
            }
            let ifunc = matches!(sym.flags(), object::SymbolFlags::Elf { st_info, .. } if st_info & 0xf == STT_GNU_IFUNC);
            match sym.kind() {
                SymbolKind::Text => {}
                _ if ifunc => {}
                SymbolKind::Data | SymbolKind::Tls => {
                    self.data.insert(name.to_string());
                    continue;
                }
                _ => continue,
            }
            let entry = by_start.entry(sym.address()).or_default();
            entry.0 = entry.0.max(sym.size());
            if !entry.1.iter().any(|n| n == name) {
                entry.1.push(name.to_string());
            }
        }
    }

    /// The PLT stubs of .plt, .plt.sec and .plt.got: each entry's `jmp *disp(%rip)` names its GOT slot,
    /// whose relocation names the function.
    fn read_plt(&mut self, elf: &ElfFile64<'_, Endianness>, data: &[u8]) {
        let endian = elf.endian();
        let Ok(sections) = elf.elf_header().sections(endian, data) else {
            return;
        };
        let Ok(dynsyms) = sections.symbols(endian, data, object::elf::SHT_DYNSYM) else {
            return;
        };
        // GOT slot -> the function its relocation names.
        let mut slots: HashMap<u64, String> = HashMap::new();
        for section in sections.iter() {
            if section.sh_type(endian) != object::elf::SHT_RELA {
                continue;
            }
            let Ok(Some((relas, _))) = section.rela(endian, data) else {
                continue;
            };
            for rela in relas {
                let kind = rela.r_type(endian, false);
                if kind != R_X86_64_JUMP_SLOT && kind != R_X86_64_GLOB_DAT {
                    continue;
                }
                let index = rela.r_sym(endian, false);
                let Ok(sym) = dynsyms.symbol(object::SymbolIndex(index as usize)) else {
                    continue;
                };
                let Ok(name) = dynsyms.symbol_name(endian, sym) else {
                    continue;
                };
                let name = String::from_utf8_lossy(name);
                let name = name.split('@').next().unwrap_or_default();
                if !name.is_empty() {
                    slots.insert(rela.r_offset(endian), name.to_string());
                }
            }
        }
        if slots.is_empty() {
            return;
        }
        for section in elf.sections() {
            let Ok(name) = section.name() else { continue };
            if !matches!(name, ".plt" | ".plt.sec" | ".plt.got") {
                continue;
            }
            let Ok(bytes) = section.data() else { continue };
            let base = section.address();
            let endbr = bytes.starts_with(&[0xf3, 0x0f, 0x1e, 0xfa]);
            // Entries are 16 bytes but in a .plt.got without IBT (8: `jmp *slot; xchg %ax,%ax`).
            let size: usize = if name == ".plt.got" && !endbr { 8 } else { 16 };
            for (i, entry) in bytes.chunks(size).enumerate() {
                // The jump: first (no IBT), or after endbr64 and maybe a bnd prefix.
                let Some(at) = [0usize, 4, 5]
                    .into_iter()
                    .find(|&at| entry.get(at..at + 2) == Some(&[0xff, 0x25]))
                else {
                    continue;
                };
                let Some(disp) = entry.get(at + 2..at + 6) else {
                    continue;
                };
                let disp = i32::from_le_bytes([disp[0], disp[1], disp[2], disp[3]]);
                let start = base + (i * size) as u64;
                let slot = (start + at as u64 + 6).wrapping_add_signed(disp.into());
                if let Some(func) = slots.get(&slot) {
                    self.plt
                        .insert(start, (start + size as u64, format!("{func}@plt")));
                }
            }
        }
    }

    /// The virtual address of a file offset, through the loadable segment that holds it.
    fn vaddr(&self, offset: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|&&(off, size, _)| offset >= off && offset < off + size)
            .map(|&(off, _, vaddr)| offset - off + vaddr)
    }

    /// The name of the code at `offset` in the file, given the one blazesym found (None: none):
    /// `Some(name)` when this file says better (a PLT stub, the public alias, a name from its debug file
    /// where blazesym found none), `Some("")` when blazesym's
    /// name is a data symbol's and no function covers the address (the frame is unknown), None to keep
    /// blazesym's.
    pub fn better_name(&self, offset: u64, found: Option<&str>) -> Option<String> {
        self.better_at(self.vaddr(offset)?, found)
            .map(|(name, _)| name)
    }

    /// better_name for a virtual address of the file; with the name, where its code begins (for
    /// `name+offset`).
    pub fn better_at(&self, vaddr: u64, found: Option<&str>) -> Option<(String, u64)> {
        if let Some((&start, (end, name))) = self.plt.range(..=vaddr).next_back() {
            if vaddr < *end {
                return Some((name.clone(), start));
            }
        }
        let func = self
            .funcs
            .range(..=vaddr)
            .next_back()
            .filter(|(_, (end, _))| vaddr < *end);
        match (func, found) {
            // One of this function's names: its public one.
            (Some((&start, (_, names))), Some(found)) if names.iter().any(|n| n == found) => {
                (names[0] != found).then(|| (names[0].clone(), start))
            }
            (None, Some(found)) if self.data.contains(found) => Some((String::new(), vaddr)),
            // Nothing blazesym reads names it (a stripped binary whose debug file is installed under
            // /usr/lib/debug/.build-id/ without a debug link): the tables' function.
            (Some((&start, (_, names))), None) => Some((names[0].clone(), start)),
            _ => None,
        }
    }
}

/// Files' names by path, each read once (None: not an ELF file).
pub type Cache = HashMap<String, Option<Arc<ElfNames>>>;

/// What the file at `path` says of its names, read once into `cache`.
pub fn cached(cache: &mut Cache, path: &str) -> Option<Arc<ElfNames>> {
    cache
        .entry(path.to_string())
        .or_insert_with(|| ElfNames::read(Path::new(path)).map(Arc::new))
        .clone()
}

fn map_file(path: &Path) -> Option<memmap2::Mmap> {
    let file = std::fs::File::open(path).ok()?;
    // SAFETY: read-only map of a file; a binary changed under us gives wrong names at worst.
    unsafe { memmap2::Mmap::map(&file) }.ok()
}

/// Where a detached debug file of this build-id is installed: /usr/lib/debug/.build-id/XX/REST.debug.
fn debug_file_path(build_id: &[u8]) -> String {
    let hex: String = build_id.iter().map(|b| format!("{b:02x}")).collect();
    let (dir, rest) = hex.split_at(2.min(hex.len()));
    format!("/usr/lib/debug/.build-id/{dir}/{rest}.debug")
}

/// How public a name looks: fewer leading underscores first, then shorter, then by name (a stable order).
pub fn public_preference(name: &str) -> (usize, usize, String) {
    let lead = name.len() - name.trim_start_matches('_').len();
    (lead, name.len(), name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_names_have_fewest_underscores_then_are_shortest() {
        let mut names = [
            "__GI___clock_nanosleep".to_string(),
            "__clock_nanosleep".to_string(),
            "clock_nanosleep".to_string(),
        ];
        names.sort_by_key(|n| public_preference(n));
        assert_eq!(names[0], "clock_nanosleep");
        let mut names = [
            "cfree".to_string(),
            "free".to_string(),
            "__libc_free".to_string(),
        ];
        names.sort_by_key(|n| public_preference(n));
        assert_eq!(names, ["free", "cfree", "__libc_free"]);
    }

    /// This test binary's own PLT (it calls libc through it) and libc's aliases.
    #[test]
    fn plt_stubs_and_aliases_of_real_files() {
        let exe = std::env::current_exe().expect("the test binary");
        let names = ElfNames::read(&exe).expect("an ELF file");
        assert!(
            names
                .plt
                .values()
                .any(|(_, n)| n == "malloc@plt" || n == "free@plt"),
            "no malloc@plt or free@plt among {} stubs: {:?}",
            names.plt.len(),
            names.plt.values().take(10).collect::<Vec<_>>()
        );
        let libc = Path::new("/lib/x86_64-linux-gnu/libc.so.6");
        // With libc6-dbg (scripts/setup.sh installs it), its internal aliases too.
        let libc = ElfNames::read(libc).expect("libc");
        for (internal, public) in [
            ("__GI___clock_nanosleep", "clock_nanosleep"),
            ("__libc_start_main_impl", "__libc_start_main"),
        ] {
            let aliased = libc
                .funcs
                .values()
                .find(|(_, n)| n.iter().any(|x| x == internal))
                .unwrap_or_else(|| panic!("libc's {internal}: is libc6-dbg installed?"));
            assert_eq!(aliased.1[0], public, "{:?}", aliased.1);
        }
        assert_eq!(
            debug_file_path(&[0x93, 0xac, 0x61]),
            "/usr/lib/debug/.build-id/93/ac61.debug"
        );
    }
}
