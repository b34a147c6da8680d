//! Compact unwind tables from a binary's `.eh_frame` (or `.debug_frame`), parsed with gimli: per address
//! range, how to find the caller's frame on x86-64, in the 8-byte rows the BPF walk reads (bpf/unwind.h).
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

/// One row, as `struct unwind_row`: from `pc` up to the next row's, the rule for the caller's frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(C)]
pub struct Row {
    pub pc: u32,
    pub cfa_off: u16,
    pub cfa_type: u8,
    pub rbp_off: i8,
}

impl Row {
    fn same_rule(&self, other: &Row) -> bool {
        (self.cfa_off, self.cfa_type, self.rbp_off)
            == (other.cfa_off, other.cfa_type, other.rbp_off)
    }

    /// The row as the kernel's array holds it.
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&self.pc.to_ne_bytes());
        b[4..6].copy_from_slice(&self.cfa_off.to_ne_bytes());
        b[6] = self.cfa_type;
        b[7] = self.rbp_off as u8;
        b
    }
}

/// A PT_LOAD segment: where file offsets land in the binary's address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub offset: u64,
    pub vaddr: u64,
    pub filesz: u64,
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
        let seg = self
            .segments
            .iter()
            .find(|s| (s.offset & !0xfff) <= offset && offset < s.offset + s.filesz.max(1))?;
        Some(
            start
                .wrapping_sub(offset)
                .wrapping_sub(seg.vaddr.wrapping_sub(seg.offset)),
        )
    }
}

/// One FDE row range with its rule.
struct Span {
    start: u64,
    end: u64,
    rule: Row,
}

/// Builds the table of an x86-64 ELF file's bytes.
pub fn build(data: &[u8]) -> Result<Binary> {
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
    if let Some((addr, bytes)) = section_data(".eh_frame") {
        let section = EhFrame::new(bytes, LittleEndian);
        let bases = BaseAddresses::default()
            .set_eh_frame(addr)
            .set_eh_frame_hdr(addr_of(".eh_frame_hdr"))
            .set_text(addr_of(".text"))
            .set_got(addr_of(".got"));
        collect(&section, &bases, &mut spans).context("parsing .eh_frame")?;
    }
    if spans.is_empty() {
        if let Some((_, bytes)) = section_data(".debug_frame") {
            let mut section = DebugFrame::new(bytes, LittleEndian);
            section.set_address_size(8);
            collect(&section, &BaseAddresses::default(), &mut spans)
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
        })
        .collect())
}

type Slice<'a> = EndianSlice<'a, LittleEndian>;

/// Every row of every FDE in `section`, with its rule in compact form.
fn collect<'a, S: UnwindSection<Slice<'a>>>(
    section: &S,
    bases: &BaseAddresses,
    spans: &mut Vec<Span>,
) -> Result<()> {
    let mut ctx = Box::new(UnwindContext::new());
    let mut entries = section.entries(bases);
    while let Some(entry) = entries.next()? {
        let CieOrFde::Fde(partial) = entry else {
            continue;
        };
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
            let Ok(off) = u16::try_from(*offset) else {
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
fn known_expression(ops: &[u8]) -> Option<(u8, u16)> {
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
                11 => Some((cfa::PLT11, u16::from(*n))),
                10 => Some((cfa::PLT10, u16::from(*n))),
                _ => None,
            }
        }
        // sleb128 of -N for small N is one byte: 0x80 - N.
        [BREG6, n, DEREF] if *n >= 0x40 && *n < 0x80 => {
            Some((cfa::DEREF_RBP, 0x80 - u16::from(*n)))
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

/// The row that covers `addr` (as the BPF walk finds it).
#[cfg(test)]
pub fn lookup(rows: &[Row], addr: u64) -> Option<&Row> {
    let i = rows.partition_point(|r| u64::from(r.pc) <= addr);
    rows[..i].last()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(start: u64, end: u64, cfa_type: u8, cfa_off: u16) -> Span {
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
        let summary: Vec<(u32, u8, u16)> =
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
        let b = Binary {
            segments: vec![
                Segment {
                    offset: 0,
                    vaddr: 0,
                    filesz: 0x1000,
                },
                Segment {
                    offset: 0x1000,
                    vaddr: 0x1000,
                    filesz: 0x5000,
                },
                // lld-style: offset and address differ by a page
                Segment {
                    offset: 0x6ab0,
                    vaddr: 0x7ab0,
                    filesz: 0x100,
                },
            ],
            ..Binary::default()
        };
        assert_eq!(b.bias(0x7f00_0000_1000, 0x1000), Some(0x7f00_0000_0000));
        assert_eq!(
            b.bias(0x7f00_0000_6000, 0x6000),
            Some(0x7f00_0000_6000 - 0x7000)
        );
        assert_eq!(b.bias(0x7f00_0000_9000, 0x9000), None);
    }

    /// This test binary's own table covers its functions with rules the walk can follow.
    #[test]
    fn the_test_binary_has_a_table() {
        let exe = std::fs::read("/proc/self/exe").unwrap();
        let b = build(&exe).unwrap();
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

    #[test]
    fn libc_ends_its_stacks_and_has_plt_rows() {
        let Ok(libc) = std::fs::read("/lib/x86_64-linux-gnu/libc.so.6") else {
            return;
        };
        let b = build(&libc).unwrap();
        // _start/clone3 say "no return address": the END rule.
        assert!(b.rows.iter().any(|r| r.cfa_type == cfa::END));
        assert!(b.rows.iter().any(|r| r.cfa_type == cfa::PLT11));
    }
}
