//! Compact unwind tables from a binary's `.eh_frame` (or `.debug_frame`), parsed with gimli: per address
//! range, how to find the caller's frame on x86-64, in the 8-byte rows the BPF walk reads (bpf/unwind.h).
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context, Result};
use gimli::{
    BaseAddresses, CfaRule, CieOrFde, DebugFrame, EhFrame, EndianSlice, LittleEndian, Register,
    RegisterRule, UnwindContext, UnwindSection, X86_64,
};
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
use object::{elf, Object, ObjectSection};

/// `enum cfa_type` in bpf/unwind.h.
pub mod cfa {
    pub const NONE: u8 = 0;
    pub const RSP: u8 = 1;
    pub const RBP: u8 = 2;
    pub const PLT11: u8 = 3;
    pub const PLT10: u8 = 4;
    pub const DEREF_RBP: u8 = 5;
    pub const END: u8 = 6;
    pub const UNSUPPORTED: u8 = 7;
}

/// `RBP_LOST` in bpf/unwind.h: where the caller's rbp is cannot be said.
pub const RBP_LOST: i8 = -128;

/// The most rows a table may have (the BPF walk's binary search takes 25 steps).
pub const MAX_ROWS: usize = 1 << 24;

/// The largest CFA offset a row holds (ROW_MAX_CFA_OFF in bpf/unwind.h).
pub const MAX_CFA_OFF: u32 = (1 << 21) - 1;

/// One row, as `struct unwind_row` packs it: from `pc` up to the next row's, the rule for the caller's
/// frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Row {
    pub pc: u32,
    pub cfa_off: u32,
    pub cfa_type: u8,
    pub rbp_off: i8,
}

impl Row {
    fn same_rule(&self, other: &Row) -> bool {
        (self.cfa_off, self.cfa_type, self.rbp_off)
            == (other.cfa_off, other.cfa_type, other.rbp_off)
    }

    /// The row as the kernel's array holds it: pc, then the packed rule.
    pub fn to_bytes(self) -> [u8; 8] {
        let rule = u32::from(self.cfa_type & 7)
            | u32::from(self.rbp_off as u8) << 3
            | (self.cfa_off & MAX_CFA_OFF) << 11;
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&self.pc.to_ne_bytes());
        b[4..].copy_from_slice(&rule.to_ne_bytes());
        b
    }
}

/// A PT_LOAD segment: where file offsets land in the binary's address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub offset: u64,
    pub vaddr: u64,
    pub filesz: u64,
    /// PF_X: code. A file page can belong to two segments (the end of one, the start of the next); an
    /// executable mapping's is the executable one's.
    pub exec: bool,
}

/// What unwinding needs of one binary.
#[derive(Debug, Default)]
pub struct Binary {
    /// Rows sorted by pc (empty: the binary has no unwind information).
    pub rows: Vec<Row>,
    pub segments: Vec<Segment>,
    /// Rows whose rule the BPF walk cannot follow (signal trampolines, unusual expressions).
    pub unsupported: usize,
}

impl Binary {
    /// The load bias of a mapping of this binary at `start` from file offset `offset`: a runtime address
    /// minus the bias is the binary's own address, which rows are keyed by.
    pub fn bias(&self, start: u64, offset: u64) -> Option<u64> {
        let holds =
            |s: &&Segment| (s.offset & !0xfff) <= offset && offset < s.offset + s.filesz.max(1);
        let seg = self
            .segments
            .iter()
            .filter(|s| s.exec)
            .find(holds)
            .or_else(|| self.segments.iter().find(holds))?;
        Some(
            start
                .wrapping_sub(offset)
                .wrapping_sub(seg.vaddr.wrapping_sub(seg.offset)),
        )
    }
}

/// Whether [start, end) overlaps a range of `sorted` (ranges sorted by start, not overlapping).
fn overlaps(sorted: &[(u64, u64)], start: u64, end: u64) -> bool {
    let i = sorted.partition_point(|r| r.0 < end);
    i > 0 && sorted[i - 1].1 > start
}

/// One FDE row range with its rule.
struct Span {
    start: u64,
    end: u64,
    rule: Row,
}

/// Builds the table of an x86-64 ELF file's bytes; gives up (an error) once `cancel` is raised.
pub fn build(data: &[u8], cancel: &AtomicBool) -> Result<Binary> {
    let file = ElfFile64::<object::Endianness>::parse(data).context("not a 64-bit ELF file")?;
    if file.elf_header().e_machine(file.endian()) != elf::EM_X86_64 {
        bail!("not an x86-64 binary");
    }
    let segments = load_segments(&file)?;
    let mut spans = Vec::new();
    let section_data = |name: &str| -> Option<(u64, &[u8])> {
        let s = file.section_by_name(name)?;
        let bytes = s.data().ok()?;
        (!bytes.is_empty()).then_some((s.address(), bytes))
    };
    let addr_of = |name: &str| file.section_by_name(name).map_or(0, |s| s.address());
    let eh_frame = |name: &str, spans: &mut Vec<Span>| -> Result<()> {
        let Some((addr, bytes)) = section_data(name) else {
            return Ok(());
        };
        let section = EhFrame::new(bytes, LittleEndian);
        let bases = BaseAddresses::default()
            .set_eh_frame(addr)
            .set_eh_frame_hdr(addr_of(".eh_frame_hdr"))
            .set_text(addr_of(".text"))
            .set_got(addr_of(".got"));
        collect(&section, &bases, spans, cancel).with_context(|| format!("parsing {name}"))
    };
    eh_frame(".eh_frame", &mut spans)?;
    // A binary rewritten by BOLT (Rust's librustc_driver and libLLVM) keeps the FDEs of the functions
    // it left in place in the original section, renamed: they count where .eh_frame says nothing.
    let others: Vec<String> = file
        .sections()
        .filter_map(|s| s.name().ok().map(str::to_string))
        .filter(|n| n != ".eh_frame" && n.ends_with(".eh_frame"))
        .collect();
    if !others.is_empty() {
        let mut primary: Vec<(u64, u64)> = spans.iter().map(|s| (s.start, s.end)).collect();
        primary.sort_unstable();
        let mut extra = Vec::new();
        for name in &others {
            eh_frame(name, &mut extra)?;
        }
        spans.extend(
            extra
                .into_iter()
                .filter(|s| !overlaps(&primary, s.start, s.end)),
        );
    }
    if spans.is_empty() {
        if let Some((_, bytes)) = section_data(".debug_frame") {
            let mut section = DebugFrame::new(bytes, LittleEndian);
            section.set_address_size(8);
            collect(&section, &BaseAddresses::default(), &mut spans, cancel)
                .context("parsing .debug_frame")?;
        }
    }
    let (rows, unsupported) = compact(spans)?;
    Ok(Binary {
        rows,
        segments,
        unsupported,
    })
}

fn load_segments(file: &ElfFile64<object::Endianness>) -> Result<Vec<Segment>> {
    let endian = file.endian();
    let headers = file
        .elf_header()
        .program_headers(endian, file.data())
        .context("reading program headers")?;
    Ok(headers
        .iter()
        .filter(|ph| ph.p_type(endian) == elf::PT_LOAD)
        .map(|ph| Segment {
            offset: ph.p_offset(endian),
            vaddr: ph.p_vaddr(endian),
            filesz: ph.p_filesz(endian),
            exec: ph.p_flags(endian) & elf::PF_X != 0,
        })
        .collect())
}

type Slice<'a> = EndianSlice<'a, LittleEndian>;

/// Every row of every FDE in `section`, with its rule in compact form.
fn collect<'a, S: UnwindSection<Slice<'a>>>(
    section: &S,
    bases: &BaseAddresses,
    spans: &mut Vec<Span>,
    cancel: &AtomicBool,
) -> Result<()> {
    let mut ctx = Box::new(UnwindContext::new());
    let mut entries = section.entries(bases);
    while let Some(entry) = entries.next()? {
        let CieOrFde::Fde(partial) = entry else {
            continue;
        };
        if cancel.load(Ordering::Relaxed) {
            bail!("cancelled");
        }
        // One bad FDE (rare: hand-written assembly) costs its function, not the binary.
        let Ok(fde) = partial.parse(|s, b, o| s.cie_from_offset(b, o)) else {
            continue;
        };
        let Ok(mut table) = fde.rows(section, bases, &mut ctx) else {
            continue;
        };
        while let Ok(Some(row)) = table.next_row() {
            if row.start_address() >= row.end_address() {
                continue;
            }
            let rule = compact_rule(section, row.cfa(), |r| row.register(r));
            spans.push(Span {
                start: row.start_address(),
                end: row.end_address(),
                rule,
            });
        }
    }
    Ok(())
}

/// The rule of one row: the CFA, whether the return address is defined, where the caller's rbp is.
fn compact_rule<'a, S: UnwindSection<Slice<'a>>>(
    section: &S,
    cfa_rule: &CfaRule<usize>,
    reg: impl Fn(Register) -> Option<RegisterRule<usize>>,
) -> Row {
    let unsupported = Row {
        cfa_type: cfa::UNSUPPORTED,
        ..Row::default()
    };
    match reg(X86_64::RA) {
        Some(RegisterRule::Undefined) => {
            return Row {
                cfa_type: cfa::END,
                ..Row::default()
            }
        }
        None | Some(RegisterRule::Offset(-8)) => {}
        Some(_) => return unsupported,
    }
    let (cfa_type, cfa_off) = match cfa_rule {
        CfaRule::RegisterAndOffset { register, offset } => {
            let Some(off) = u32::try_from(*offset).ok().filter(|&o| o <= MAX_CFA_OFF) else {
                return unsupported;
            };
            match *register {
                X86_64::RSP => (cfa::RSP, off),
                X86_64::RBP => (cfa::RBP, off),
                _ => return unsupported,
            }
        }
        CfaRule::Expression(e) => {
            let Ok(expr) = e.get(section) else {
                return unsupported;
            };
            match known_expression(expr.0.slice()) {
                Some(r) => r,
                None => return unsupported,
            }
        }
    };
    let rbp_off = match reg(X86_64::RBP) {
        None | Some(RegisterRule::SameValue) | Some(RegisterRule::Undefined) => 0,
        Some(RegisterRule::Offset(n))
            if n % 8 == 0 && (-127..=127).contains(&(n / 8)) && n != 0 =>
        {
            (n / 8) as i8
        }
        Some(_) => RBP_LOST,
    };
    Row {
        pc: 0,
        cfa_off,
        cfa_type,
        rbp_off,
    }
}

/// The CFA expressions compilers and linkers emit on x86-64 that the walk knows: the PLT's
/// (`rsp + N + ((rip & 15) >= K ? 8 : 0)`) and stack realignment's (`*(rbp - N)`).
fn known_expression(ops: &[u8]) -> Option<(u8, u32)> {
    const BREG6: u8 = 0x76;
    const BREG7: u8 = 0x77;
    const BREG16: u8 = 0x80;
    const LIT0: u8 = 0x30;
    const AND: u8 = 0x1a;
    const GE: u8 = 0x2a;
    const SHL: u8 = 0x24;
    const PLUS: u8 = 0x22;
    const DEREF: u8 = 0x06;
    match ops {
        [BREG7, n, BREG16, 0, lit15, AND, litk, GE, lit3, SHL, PLUS]
            if *lit15 == LIT0 + 15 && *lit3 == LIT0 + 3 && *n < 0x40 =>
        {
            match litk.checked_sub(LIT0)? {
                11 => Some((cfa::PLT11, u32::from(*n))),
                10 => Some((cfa::PLT10, u32::from(*n))),
                _ => None,
            }
        }
        // sleb128 of -N for small N is one byte: 0x80 - N.
        [BREG6, n, DEREF] if *n >= 0x40 && *n < 0x80 => {
            Some((cfa::DEREF_RBP, 0x80 - u32::from(*n)))
        }
        _ => None,
    }
}

/// The rule of addresses no FDE covers.
const NO_RULE: Row = Row {
    pc: 0,
    cfa_off: 0,
    cfa_type: cfa::NONE,
    rbp_off: 0,
};

/// Sorts the spans, marks the gaps between them as having no rule, and merges neighbours with the same
/// rule: the rows the BPF walk searches.
fn compact(mut spans: Vec<Span>) -> Result<(Vec<Row>, usize)> {
    spans.sort_unstable_by_key(|s| s.start);
    let mut rows: Vec<Row> = Vec::with_capacity(spans.len() / 2);
    let mut unsupported = 0;
    let push = |rows: &mut Vec<Row>, pc: u64, rule: Row| -> Result<()> {
        let Ok(pc) = u32::try_from(pc) else {
            bail!("code above 4 GiB in the binary's address space");
        };
        match rows.last_mut() {
            Some(last) if last.pc == pc => *last = Row { pc, ..rule },
            Some(last) if last.same_rule(&rule) => {}
            _ => rows.push(Row { pc, ..rule }),
        }
        Ok(())
    };
    let mut covered_to = 0u64;
    for s in &spans {
        if s.rule.cfa_type == cfa::UNSUPPORTED {
            unsupported += 1;
        }
        if covered_to != 0 && s.start > covered_to {
            push(&mut rows, covered_to, NO_RULE)?;
        }
        push(&mut rows, s.start, s.rule)?;
        covered_to = covered_to.max(s.end);
    }
    if covered_to != 0 {
        push(&mut rows, covered_to, NO_RULE)?;
    }
    if rows.len() > MAX_ROWS {
        bail!("{} unwind rows: more than {MAX_ROWS}", rows.len());
    }
    Ok((rows, unsupported))
}

/// `bpfprof unwind-table FILE [ADDR...]`: the table's size and kinds of rows, and the rows around each
/// address (the file's own addresses, as `readelf -s` shows them).
pub fn show(path: &std::path::Path, addrs: &[String]) -> Result<()> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let bin =
        build(&data, &AtomicBool::new(false)).with_context(|| format!("{}", path.display()))?;
    let mut kinds = [0usize; 8];
    for r in &bin.rows {
        kinds[usize::from(r.cfa_type & 7)] += 1;
    }
    let names = [
        "none",
        "rsp",
        "rbp",
        "plt",
        "plt10",
        "deref-rbp",
        "end",
        "unsupported",
    ];
    let summary: Vec<String> = names
        .iter()
        .zip(kinds)
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
    let mut out = format!(
        "{}: {} rows: {}\n",
        path.display(),
        bin.rows.len(),
        summary.join(", ")
    );
    if !bin.rows.is_empty() {
        let p = paged(&bin.rows);
        out.push_str(&format!(
            "in the kernel: {} bytes, {} pages of {} bytes from {:#x}, at most {} rows searched in one\n",
            p.slots() * 8,
            p.pages,
            1u32 << PAGE_SHIFT,
            p.base,
            p.widest
        ));
    }
    for a in addrs {
        let addr = u64::from_str_radix(a.trim_start_matches("0x"), 16)
            .with_context(|| format!("{a}: not a hexadecimal address"))?;
        let i = bin.rows.partition_point(|r| u64::from(r.pc) <= addr);
        out.push_str(&format!("{addr:#x}:\n"));
        for (j, r) in bin
            .rows
            .iter()
            .enumerate()
            .take(i + 1)
            .skip(i.saturating_sub(2))
        {
            let mark = if j + 1 == i { "=>" } else { "  " };
            out.push_str(&format!("  {mark} {}\n", describe(r)));
        }
    }
    crate::util::write_stdout(&out)
}

fn describe(r: &Row) -> String {
    let cfa = match r.cfa_type {
        cfa::NONE => "no unwind information".to_string(),
        cfa::RSP => format!("cfa=rsp+{}", r.cfa_off),
        cfa::RBP => format!("cfa=rbp+{}", r.cfa_off),
        cfa::PLT11 | cfa::PLT10 => format!("cfa=rsp+{}+plt", r.cfa_off),
        cfa::DEREF_RBP => format!("cfa=*(rbp-{})", r.cfa_off),
        cfa::END => "outermost frame".to_string(),
        _ => "unsupported rule".to_string(),
    };
    let rbp = match r.rbp_off {
        0 => String::new(),
        RBP_LOST => " rbp=?".to_string(),
        n => format!(" rbp=*(cfa{})", i32::from(n) * 8),
    };
    format!("{:#x} {cfa}{rbp}", r.pc)
}

/// UNWIND_PAGE_SHIFT in bpf/unwind.h: the walk finds a row through an index of the table's pages.
pub const PAGE_SHIFT: u32 = 12;

/// A table as the kernel holds it (bpf/unwind.h): one 8-byte slot per page of the binary's addresses
/// from `base` (the first row's page), saying which rows to search for an address in that page (the row
/// that covers the page's start and those that start in it), then the rows, their pcs relative to `base`.
/// A walk then searches a page's few rows instead of the whole table's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paged {
    pub base: u64,
    pub pages: u32,
    /// The most rows one page asks to search (for `bpfprof unwind-table`).
    pub widest: u32,
    /// The page slots, then the rows: what is written into the kernel's chunks.
    pub bytes: Vec<u8>,
}

impl Paged {
    /// Slots (pages and rows) the table takes.
    pub fn slots(&self) -> usize {
        self.bytes.len() / 8
    }
}

/// Indexes `rows` (sorted by pc, not empty) by page, as the BPF walk reads them.
pub fn paged(rows: &[Row]) -> Paged {
    let base = u64::from(rows[0].pc) & !((1u64 << PAGE_SHIFT) - 1);
    let last = u64::from(rows[rows.len() - 1].pc);
    let pages = ((last - base) >> PAGE_SHIFT) as u32 + 1;
    let mut bytes = Vec::with_capacity((pages as usize + rows.len()) * 8);
    let mut widest = 0;
    for k in 0..u64::from(pages) {
        let start = base + (k << PAGE_SHIFT);
        let end = start + (1 << PAGE_SHIFT);
        let first = rows
            .partition_point(|r| u64::from(r.pc) <= start)
            .saturating_sub(1);
        let past = rows.partition_point(|r| u64::from(r.pc) < end);
        let count = (past - first) as u32;
        widest = widest.max(count);
        bytes.extend((first as u32).to_ne_bytes());
        bytes.extend(count.to_ne_bytes());
    }
    for r in rows {
        let rel = Row {
            pc: (u64::from(r.pc) - base) as u32,
            ..*r
        };
        bytes.extend(rel.to_bytes());
    }
    Paged {
        base,
        pages,
        widest,
        bytes,
    }
}

/// The row that covers `addr` (as the BPF walk finds it).
#[cfg(test)]
pub fn lookup(rows: &[Row], addr: u64) -> Option<&Row> {
    let i = rows.partition_point(|r| u64::from(r.pc) <= addr);
    rows[..i].last()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(start: u64, end: u64, cfa_type: u8, cfa_off: u32) -> Span {
        Span {
            start,
            end,
            rule: Row {
                pc: 0,
                cfa_off,
                cfa_type,
                rbp_off: 0,
            },
        }
    }

    #[test]
    fn gaps_get_rows_without_a_rule_and_equal_neighbours_merge() {
        let (rows, _) = compact(vec![
            span(0x1010, 0x1020, cfa::RSP, 16),
            span(0x1000, 0x1004, cfa::RSP, 8),
            span(0x1004, 0x1010, cfa::RSP, 16),
            span(0x1030, 0x1040, cfa::RBP, 16),
        ])
        .unwrap();
        let summary: Vec<(u32, u8, u32)> =
            rows.iter().map(|r| (r.pc, r.cfa_type, r.cfa_off)).collect();
        assert_eq!(
            summary,
            vec![
                (0x1000, cfa::RSP, 8),
                (0x1004, cfa::RSP, 16),
                (0x1020, cfa::NONE, 0),
                (0x1030, cfa::RBP, 16),
                (0x1040, cfa::NONE, 0),
            ]
        );
        assert_eq!(lookup(&rows, 0x0fff), None);
        assert_eq!(lookup(&rows, 0x1015).unwrap().cfa_off, 16);
        assert_eq!(lookup(&rows, 0x1025).unwrap().cfa_type, cfa::NONE);
        assert_eq!(lookup(&rows, 0x2000).unwrap().cfa_type, cfa::NONE);
    }

    #[test]
    fn overlap_of_ranges() {
        let r = [(10, 20), (30, 40)];
        assert!(overlaps(&r, 15, 16) && overlaps(&r, 5, 11) && overlaps(&r, 39, 50));
        assert!(!overlaps(&r, 20, 30) && !overlaps(&r, 0, 10) && !overlaps(&r, 40, 41));
    }

    #[test]
    fn rows_pack_as_the_bpf_side_reads_them() {
        let row = Row {
            pc: 0x1234,
            cfa_off: 540_080,
            cfa_type: cfa::RSP,
            rbp_off: -2,
        };
        let b = row.to_bytes();
        let rule = u32::from_ne_bytes(b[4..].try_into().unwrap());
        assert_eq!(u32::from_ne_bytes(b[..4].try_into().unwrap()), 0x1234);
        assert_eq!(rule & 7, u32::from(cfa::RSP));
        assert_eq!(((rule >> 3) & 0xff) as u8 as i8, -2);
        assert_eq!(rule >> 11, 540_080);
    }

    #[test]
    fn plt_and_realignment_expressions_are_known() {
        // binutils' .plt: DW_OP_breg7 8; DW_OP_breg16 0; lit15; and; lit11; ge; lit3; shl; plus
        let plt = [0x77, 8, 0x80, 0, 0x3f, 0x1a, 0x3b, 0x2a, 0x33, 0x24, 0x22];
        assert_eq!(known_expression(&plt), Some((cfa::PLT11, 8)));
        let mut plt10 = plt;
        plt10[6] = 0x3a;
        assert_eq!(known_expression(&plt10), Some((cfa::PLT10, 8)));
        // gcc's stack realignment: DW_OP_breg6 (rbp) -8; DW_OP_deref
        assert_eq!(
            known_expression(&[0x76, 0x78, 0x06]),
            Some((cfa::DEREF_RBP, 8))
        );
        assert_eq!(known_expression(&[0x76, 0x78]), None);
    }

    #[test]
    fn bias_comes_from_the_segment_that_holds_the_offset() {
        let seg = |offset, vaddr, filesz, exec| Segment {
            offset,
            vaddr,
            filesz,
            exec,
        };
        let b = Binary {
            segments: vec![
                seg(0, 0, 0x1000, false),
                seg(0x1000, 0x1000, 0x5000, true),
                // lld-style: offset and address differ by a page
                seg(0x6ab0, 0x7ab0, 0x100, false),
            ],
            ..Binary::default()
        };
        assert_eq!(b.bias(0x7f00_0000_1000, 0x1000), Some(0x7f00_0000_0000));
        assert_eq!(
            b.bias(0x7f00_0000_6000, 0x6000),
            Some(0x7f00_0000_6000 - 0x7000)
        );
        assert_eq!(b.bias(0x7f00_0000_9000, 0x9000), None);
        // rustup's rustc (lld): the read-only segment's last page is the code's first, and the code's
        // segment lies a page further on in the address space than in the file.
        let lld = Binary {
            segments: vec![
                seg(0, 0, 0x11bbc, false),
                seg(0x11bc0, 0x12bc0, 0x77230, true),
            ],
            ..Binary::default()
        };
        assert_eq!(
            lld.bias(0x5500_0001_1000, 0x11000),
            Some(0x5500_0001_1000 - 0x12000)
        );
    }

    /// This test binary's own table covers its functions with rules the walk can follow.
    #[test]
    fn the_test_binary_has_a_table() {
        let exe = std::fs::read("/proc/self/exe").unwrap();
        let b = build(&exe, &AtomicBool::new(false)).unwrap();
        assert!(b.rows.len() > 1000, "{} rows", b.rows.len());
        assert!(b.rows.windows(2).all(|w| w[0].pc < w[1].pc));
        // Rows without a rule are the gaps between functions; nearly every other rule is one the walk follows.
        let ruled: Vec<&Row> = b.rows.iter().filter(|r| r.cfa_type != cfa::NONE).collect();
        let known = ruled
            .iter()
            .filter(|r| {
                matches!(
                    r.cfa_type,
                    cfa::RSP | cfa::RBP | cfa::PLT11 | cfa::PLT10 | cfa::END
                )
            })
            .count();
        assert!(
            known * 100 >= ruled.len() * 99,
            "{known} of {} rows",
            ruled.len()
        );
    }

    /// What bpf/unwind.bpf.h's find_row does with a paged table: the page's slot, then a binary search of
    /// the rows it names. Returns the row with its pc made absolute again.
    fn paged_lookup(p: &Paged, addr: u64) -> Option<Row> {
        let slot = |i: usize| -> (u32, u32) {
            let b = &p.bytes[i * 8..i * 8 + 8];
            (
                u32::from_ne_bytes(b[..4].try_into().unwrap()),
                u32::from_ne_bytes(b[4..].try_into().unwrap()),
            )
        };
        let rel = addr.checked_sub(p.base)?;
        let page = rel >> PAGE_SHIFT;
        if page >= u64::from(p.pages) {
            return None;
        }
        let (first, count) = slot(page as usize);
        let (mut lo, mut hi) = (first, first + count);
        // As the BPF loop: at most PAGE_SHIFT + 2 steps.
        for _ in 0..PAGE_SHIFT + 2 {
            if lo >= hi {
                break;
            }
            let mid = lo + (hi - lo) / 2;
            if u64::from(slot(p.pages as usize + mid as usize).0) <= rel {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        assert!(lo >= hi, "the search did not end in its steps");
        if lo == first {
            return None;
        }
        let (pc, rule) = slot(p.pages as usize + lo as usize - 1);
        Some(Row {
            pc: (u64::from(pc) + p.base) as u32,
            cfa_type: (rule & 7) as u8,
            rbp_off: ((rule >> 3) & 0xff) as u8 as i8,
            cfa_off: rule >> 11,
        })
    }

    /// The paged table finds the row a search of the whole table finds, at every address of this test
    /// binary's code and around it (pages of one row, of hundreds, and the gaps).
    #[test]
    fn paged_tables_find_the_rows_a_full_search_finds() {
        let exe = std::fs::read("/proc/self/exe").unwrap();
        let b = build(&exe, &AtomicBool::new(false)).unwrap();
        let p = paged(&b.rows);
        assert_eq!(p.slots(), p.pages as usize + b.rows.len());
        assert!(p.widest <= (1 << PAGE_SHIFT) + 1);
        let lo = u64::from(b.rows[0].pc).saturating_sub(0x2000);
        let hi = u64::from(b.rows[b.rows.len() - 1].pc) + 0x2000;
        let mut checked = 0;
        for addr in (lo..hi).step_by(3) {
            // Past the last row, the paged table has no page; the full search finds the last row,
            // which has no rule: both mean "no unwind information".
            let ruled = |r: Option<Row>| r.filter(|r| r.cfa_type != cfa::NONE);
            let want = lookup(&b.rows, addr).copied();
            assert_eq!(ruled(paged_lookup(&p, addr)), ruled(want), "at {addr:#x}");
            checked += 1;
        }
        assert!(checked > 10_000);
    }

    #[test]
    fn libc_ends_its_stacks_and_has_plt_rows() {
        let Ok(libc) = std::fs::read("/lib/x86_64-linux-gnu/libc.so.6") else {
            return;
        };
        let b = build(&libc, &AtomicBool::new(false)).unwrap();
        // _start/clone3 say "no return address": the END rule.
        assert!(b.rows.iter().any(|r| r.cfa_type == cfa::END));
        assert!(b.rows.iter().any(|r| r.cfa_type == cfa::PLT11));
    }
}
