//! BPF instructions, encoded by hand (no crate encodes them well enough: see /work/shared/MACHINE.md), with
//! an assembler that resolves jump labels, and a loader for the result. The code generator's target.
use std::os::fd::{FromRawFd, OwnedFd};

use anyhow::{bail, Result};

/// One instruction as the kernel reads it (struct bpf_insn): opcode, dst and src registers in one byte,
/// offset, immediate. Little-endian hosts only (the register nibbles' order).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

/// A register: r0 (return value, helper results), r1-r5 (helper arguments, clobbered by calls), r6-r9
/// (kept across calls), r10 (frame pointer, read-only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reg(pub u8);

pub const R0: Reg = Reg(0);
pub const R1: Reg = Reg(1);
pub const R2: Reg = Reg(2);
pub const R3: Reg = Reg(3);
pub const R4: Reg = Reg(4);
pub const R5: Reg = Reg(5);
pub const R6: Reg = Reg(6);
#[allow(dead_code)] // the full register set: later code generation uses r7 and r8
pub const R7: Reg = Reg(7);
#[allow(dead_code)]
pub const R8: Reg = Reg(8);
pub const R9: Reg = Reg(9);
pub const FP: Reg = Reg(10);

// Instruction classes, sizes, modes and sources (include/uapi/linux/bpf_common.h, bpf.h).
const LD: u8 = 0x00;
const LDX: u8 = 0x01;
const ST: u8 = 0x02;
const STX: u8 = 0x03;
const JMP: u8 = 0x05;
const ALU64: u8 = 0x07;
const IMM: u8 = 0x00;
const MEM: u8 = 0x60;
const ATOMIC: u8 = 0xc0;
const K: u8 = 0x00;
const X: u8 = 0x08;
const CALL: u8 = 0x80;
const EXIT: u8 = 0x90;
const DW: u8 = 0x18;

/// A load or store width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    B = 0x10,
    H = 0x08,
    W = 0x00,
    DW = 0x18,
}

/// 64-bit ALU operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alu {
    Add = 0x00,
    Sub = 0x10,
    Mul = 0x20,
    Div = 0x30,
    Or = 0x40,
    And = 0x50,
    Lsh = 0x60,
    Rsh = 0x70,
    Neg = 0x80,
    Mod = 0x90,
    Xor = 0xa0,
    Mov = 0xb0,
    Arsh = 0xc0,
}

/// Conditional jumps (64-bit compares; the S variants are signed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cond {
    Eq = 0x10,
    Gt = 0x20,
    Ge = 0x30,
    #[allow(dead_code)] // the full set of conditions
    Set = 0x40,
    Ne = 0x50,
    Sgt = 0x60,
    Sge = 0x70,
    Lt = 0xa0,
    Le = 0xb0,
    Slt = 0xc0,
    Sle = 0xd0,
}

fn insn(code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (dst.0 & 0xf) | (src.0 << 4),
        off,
        imm,
    }
}

/// A jump target, bound to a place in the program with [`Asm::bind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label(usize);

/// An assembler: appends instructions, and resolves jumps to labels when finished.
#[derive(Default)]
pub struct Asm {
    insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
    fixups: Vec<(usize, Label)>,
}

impl Asm {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Binds `l` to the next instruction.
    pub fn bind(&mut self, l: Label) {
        self.labels[l.0] = Some(self.insns.len());
    }

    /// `dst op= imm` (64-bit).
    pub fn alu_imm(&mut self, op: Alu, dst: Reg, imm: i32) {
        self.insns.push(insn(ALU64 | op as u8 | K, dst, R0, 0, imm));
    }

    /// `dst op= src` (64-bit).
    pub fn alu_reg(&mut self, op: Alu, dst: Reg, src: Reg) {
        self.insns.push(insn(ALU64 | op as u8 | X, dst, src, 0, 0));
    }

    /// Swaps the bytes of the low `bits` (16, 32, 64) of `dst` (to big-endian on this little-endian
    /// machine: BPF_END | BPF_TO_BE), zeroing the rest.
    pub fn bswap(&mut self, dst: Reg, bits: i32) {
        self.insns.push(insn(0x04 | 0xd0 | 0x08, dst, R0, 0, bits));
    }

    pub fn mov_imm(&mut self, dst: Reg, imm: i32) {
        self.alu_imm(Alu::Mov, dst, imm);
    }

    pub fn mov_reg(&mut self, dst: Reg, src: Reg) {
        self.alu_reg(Alu::Mov, dst, src);
    }

    /// `dst = imm64` (two instruction slots).
    pub fn ld_imm64(&mut self, dst: Reg, imm: u64) {
        self.insns
            .push(insn(LD | DW | IMM, dst, R0, 0, imm as u32 as i32));
        self.insns
            .push(insn(0, R0, R0, 0, (imm >> 32) as u32 as i32));
    }

    /// `dst = &map` for a map fd (BPF_PSEUDO_MAP_FD: the kernel turns the fd into the map's address).
    pub fn ld_map_fd(&mut self, dst: Reg, fd: i32) {
        self.insns.push(insn(LD | DW | IMM, dst, Reg(1), 0, fd));
        self.insns.push(insn(0, R0, R0, 0, 0));
    }

    /// `dst = &value + off` of an array map's first element (BPF_PSEUDO_MAP_VALUE: no helper call).
    pub fn ld_map_value(&mut self, dst: Reg, fd: i32, off: i32) {
        self.insns.push(insn(LD | DW | IMM, dst, Reg(2), 0, fd));
        self.insns.push(insn(0, R0, R0, 0, off));
    }

    /// `dst = *(size *)(src + off)`
    pub fn load(&mut self, size: Size, dst: Reg, src: Reg, off: i16) {
        self.insns
            .push(insn(LDX | MEM | size as u8, dst, src, off, 0));
    }

    /// `*(size *)(dst + off) = src`
    pub fn store_reg(&mut self, size: Size, dst: Reg, off: i16, src: Reg) {
        self.insns
            .push(insn(STX | MEM | size as u8, dst, src, off, 0));
    }

    /// `*(size *)(dst + off) = imm`
    pub fn store_imm(&mut self, size: Size, dst: Reg, off: i16, imm: i32) {
        self.insns
            .push(insn(ST | MEM | size as u8, dst, R0, off, imm));
    }

    /// `lock *(u64 *)(dst + off) += src`
    pub fn atomic_add64(&mut self, dst: Reg, off: i16, src: Reg) {
        self.insns
            .push(insn(STX | ATOMIC | Size::DW as u8, dst, src, off, 0));
    }

    /// Calls helper number `id` (arguments in r1-r5, result in r0; r1-r5 are clobbered).
    pub fn call(&mut self, id: u32) {
        self.insns.push(insn(JMP | CALL, R0, R0, 0, id as i32));
    }

    /// A bpf-to-bpf call (BPF_PSEUDO_CALL) of a subprogram appended to the program later, which sets
    /// its offset (ustack.rs: UstackLink::link).
    pub fn call_local(&mut self) {
        self.insns.push(insn(JMP | CALL, R0, Reg(1), 0, 0));
    }

    pub fn exit(&mut self) {
        self.insns.push(insn(JMP | EXIT, R0, R0, 0, 0));
    }

    /// `goto l`
    pub fn ja(&mut self, l: Label) {
        self.fixups.push((self.insns.len(), l));
        self.insns.push(insn(JMP, R0, R0, 0, 0));
    }

    /// `if dst cond imm goto l`
    pub fn jmp_imm(&mut self, c: Cond, dst: Reg, imm: i32, l: Label) {
        self.fixups.push((self.insns.len(), l));
        self.insns.push(insn(JMP | c as u8 | K, dst, R0, 0, imm));
    }

    /// `if dst cond src goto l`
    pub fn jmp_reg(&mut self, c: Cond, dst: Reg, src: Reg, l: Label) {
        self.fixups.push((self.insns.len(), l));
        self.insns.push(insn(JMP | c as u8 | X, dst, src, 0, 0));
    }

    /// The program, with every jump's offset resolved.
    pub fn finish(mut self) -> Result<Vec<Insn>> {
        for (at, l) in std::mem::take(&mut self.fixups) {
            let Some(target) = self.labels[l.0] else {
                bail!("internal error: a jump to an unbound label");
            };
            let off = target as i64 - (at as i64 + 1);
            let Ok(off) = i16::try_from(off) else {
                bail!("the program is too long: a jump spans {off} instructions");
            };
            self.insns[at].off = off;
        }
        Ok(self.insns)
    }
}

/// The verifier refused a program: shown as its last line (the reason); the whole log is kept for -v.
#[derive(Debug)]
pub struct Rejected {
    pub errno: i32,
    pub log: String,
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let reason = self
            .log
            .lines()
            .rev()
            .find(|l| !l.starts_with("processed ") && !l.trim().is_empty())
            .unwrap_or("");
        write!(
            f,
            "the verifier rejected the program ({}): {reason}",
            std::io::Error::from_raw_os_error(self.errno)
        )
    }
}

impl std::error::Error for Rejected {}

/// What a program that attaches to one kernel function (fentry/fexit) is loaded for: its attach type and
/// the function's BTF id in vmlinux.
#[derive(Clone, Copy, Debug)]
pub struct AttachTo {
    pub attach_type: u32,
    pub btf_id: u32,
}

/// Loads instructions as a program of `prog_type` (libbpf_sys::BPF_PROG_TYPE_*), for an attach point where
/// the type needs one (fentry/fexit); on failure the error carries the verifier's log.
/// The BTF a program with subprograms is loaded with: the fd of the BTF object, and a (first instruction,
/// FUNC type) record per function.
pub struct FuncInfo<'a> {
    pub btf_fd: std::os::fd::BorrowedFd<'a>,
    pub records: Vec<[u32; 2]>,
}

pub fn load_for(
    prog_type: u32,
    attach: Option<AttachTo>,
    name: &str,
    insns: &[Insn],
    funcs: Option<&FuncInfo>,
) -> Result<OwnedFd> {
    let name = std::ffi::CString::new(name)?;
    // Without a log first: the verifier's log of a program with the unwinding subprograms can pass any
    // buffer, and before 6.4 a full buffer fails the load (ENOSPC) however good the program is. Only a
    // program that fails is loaded again, for its log.
    let load = |log: Option<&mut Vec<u8>>| -> i32 {
        let mut opts = libbpf_sys::bpf_prog_load_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_prog_load_opts>() as _,
            ..Default::default()
        };
        if let Some(log) = log {
            opts.log_level = 1;
            opts.log_size = log.len() as u32;
            opts.log_buf = log.as_mut_ptr().cast();
        }
        if let Some(a) = attach {
            opts.expected_attach_type = a.attach_type;
            opts.attach_btf_id = a.btf_id;
        }
        if let Some(f) = funcs {
            use std::os::fd::AsRawFd;
            opts.prog_btf_fd = f.btf_fd.as_raw_fd() as u32;
            opts.func_info = f.records.as_ptr().cast();
            opts.func_info_cnt = f.records.len() as u32;
            opts.func_info_rec_size = 8;
        }
        // SAFETY: `Insn` has struct bpf_insn's size and layout (8 bytes: u8, u8 of two nibbles, i16,
        // i32); the license and name are NUL-terminated; the log buffer outlives the call and its size
        // is passed; the func_info records outlive it.
        unsafe {
            libbpf_sys::bpf_prog_load(
                prog_type,
                name.as_ptr(),
                c"GPL".as_ptr(),
                insns.as_ptr().cast(),
                insns.len() as _,
                &mut opts,
            )
        }
    };
    let mut fd = load(None);
    if fd < 0 {
        let errno = -fd;
        let mut log = vec![0u8; 16 << 20];
        fd = load(Some(&mut log));
        if fd < 0 {
            let end = log.iter().position(|&b| b == 0).unwrap_or(0);
            let text = String::from_utf8_lossy(&log[..end]);
            if text.trim().is_empty() {
                // Refused before the verifier ran (a missing kernel feature, permissions).
                bail!(
                    "loading failed: {}",
                    std::io::Error::from_raw_os_error(errno)
                );
            }
            return Err(Rejected {
                errno,
                log: text.trim_end().to_string(),
            }
            .into());
        }
    }
    // SAFETY: a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// One instruction in the kernel verifier's (and bpftool's) notation: `r1 = r10`, `r1 += -8`,
/// `*(u64 *)(r10 -8) = r1`, `if r0 == 0x0 goto pc+5`, `call 14`, `r1 = map[fd 4]`. `next` is the
/// following slot (the second half of a 16-byte load).
pub fn disasm(i: &Insn, next: Option<&Insn>) -> String {
    let (dst, src) = (i.regs & 0xf, i.regs >> 4);
    let size = |code: u8| match code & 0x18 {
        0x10 => "u8",
        0x08 => "u16",
        0x00 => "u32",
        _ => "u64",
    };
    let off = |o: i16| {
        if o < 0 {
            format!("{o}")
        } else {
            format!("+{o}")
        }
    };
    let alu = |op: u8| match op {
        0x00 => "+=",
        0x10 => "-=",
        0x20 => "*=",
        0x30 => "/=",
        0x40 => "|=",
        0x50 => "&=",
        0x60 => "<<=",
        0x70 => ">>=",
        0x90 => "%=",
        0xa0 => "^=",
        0xb0 => "=",
        0xc0 => "s>>=",
        _ => "?=",
    };
    let cond = |op: u8| match op {
        0x10 => "==",
        0x20 => ">",
        0x30 => ">=",
        0x40 => "&",
        0x50 => "!=",
        0x60 => "s>",
        0x70 => "s>=",
        0xa0 => "<",
        0xb0 => "<=",
        0xc0 => "s<",
        0xd0 => "s<=",
        _ => "?",
    };
    let class = i.code & 0x07;
    match class {
        LD if i.code == LD | DW | IMM => {
            let hi = next.map_or(0, |n| n.imm as u32 as u64);
            match src {
                1 => format!("r{dst} = map[fd {}]", i.imm),
                2 => format!("r{dst} = map[fd {}] value + {hi}", i.imm),
                _ => format!("r{dst} = {:#x} ll", (hi << 32) | i.imm as u32 as u64),
            }
        }
        LDX => format!("r{dst} = *({} *)(r{src} {})", size(i.code), off(i.off)),
        ST => format!("*({} *)(r{dst} {}) = {}", size(i.code), off(i.off), i.imm),
        STX if i.code & 0xe0 == ATOMIC => {
            format!(
                "lock *({} *)(r{dst} {}) += r{src}",
                size(i.code),
                off(i.off)
            )
        }
        STX => format!("*({} *)(r{dst} {}) = r{src}", size(i.code), off(i.off)),
        ALU64 => {
            let op = i.code & 0xf0;
            if op == 0x80 {
                return format!("r{dst} = -r{dst}");
            }
            let rhs = if i.code & X != 0 {
                format!("r{src}")
            } else {
                format!("{}", i.imm)
            };
            format!("r{dst} {} {rhs}", alu(op))
        }
        JMP => match i.code & 0xf0 {
            CALL => format!("call {}", i.imm),
            EXIT => "exit".to_string(),
            0x00 => format!("goto pc{}", off(i.off)),
            op => {
                let rhs = if i.code & X != 0 {
                    format!("r{src}")
                } else {
                    format!("{:#x}", i.imm)
                };
                format!("if r{dst} {} {rhs} goto pc{}", cond(op), off(i.off))
            }
        },
        _ if i.code == 0 => String::new(),
        _ => format!(
            "code {:#04x} dst r{dst} src r{src} off {} imm {}",
            i.code, i.off, i.imm
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(insns: &[Insn]) -> Vec<u8> {
        insns
            .iter()
            .flat_map(|i| {
                let mut b = vec![i.code, i.regs];
                b.extend(i.off.to_le_bytes());
                b.extend(i.imm.to_le_bytes());
                b
            })
            .collect()
    }

    #[test]
    fn disassembly_reads_as_the_verifiers() {
        let mut a = Asm::new();
        a.mov_reg(R1, FP);
        a.alu_imm(Alu::Add, R1, -8);
        a.store_reg(Size::DW, FP, -8, R1);
        a.load(Size::W, R2, R1, 4);
        a.ld_imm64(R3, 1 << 40);
        a.ld_map_fd(R1, 7);
        let l = a.label();
        a.jmp_imm(Cond::Eq, R0, 0, l);
        a.call(14);
        a.bind(l);
        a.exit();
        let p = a.finish().unwrap();
        let text: Vec<String> = (0..p.len())
            .map(|i| disasm(&p[i], p.get(i + 1)))
            .filter(|t| !t.is_empty())
            .collect();
        assert_eq!(
            text,
            [
                "r1 = r10",
                "r1 += -8",
                "*(u64 *)(r10 -8) = r1",
                "r2 = *(u32 *)(r1 +4)",
                "r3 = 0x10000000000 ll",
                "r1 = map[fd 7]",
                "if r0 == 0x0 goto pc+1",
                "call 14",
                "exit",
            ]
        );
    }

    /// Encodings as clang and the kernel's own tests write them.
    #[test]
    fn encodings_are_the_kernels() {
        let mut a = Asm::new();
        a.mov_imm(R0, 0); // b7 00 .. : r0 = 0
        a.mov_reg(R1, FP); // bf a1 : r1 = r10
        a.alu_imm(Alu::Add, R1, -8); // 07 01 .. f8 ff ff ff : r1 += -8
        a.store_reg(Size::DW, FP, -8, R1); // 7b 1a f8 ff : *(u64 *)(r10 - 8) = r1
        a.load(Size::W, R2, R1, 4); // 61 12 04 00 : r2 = *(u32 *)(r1 + 4)
        a.store_imm(Size::B, FP, -1, 7); // 72 0a ff ff 07 : *(u8 *)(r10 - 1) = 7
        a.atomic_add64(R0, 0, R1); // db 10 : lock *(u64 *)(r0 + 0) += r1
        a.call(1); // 85 .. 01 : call bpf_map_lookup_elem
        a.ld_map_fd(R1, 5); // 18 11 .. 05 : r1 = map[fd 5]
        a.exit(); // 95
        let insns = a.finish().unwrap();
        let want: Vec<u8> = [
            "b7 00 00 00 00 00 00 00",
            "bf a1 00 00 00 00 00 00",
            "07 01 00 00 f8 ff ff ff",
            "7b 1a f8 ff 00 00 00 00",
            "61 12 04 00 00 00 00 00",
            "72 0a ff ff 07 00 00 00",
            "db 10 00 00 00 00 00 00",
            "85 00 00 00 01 00 00 00",
            "18 11 00 00 05 00 00 00",
            "00 00 00 00 00 00 00 00",
            "95 00 00 00 00 00 00 00",
        ]
        .iter()
        .flat_map(|l| l.split(' ').map(|h| u8::from_str_radix(h, 16).unwrap()))
        .collect();
        assert_eq!(bytes(&insns), want);
    }

    #[test]
    fn jumps_resolve_forward_and_back() {
        let mut a = Asm::new();
        let top = a.label();
        let out = a.label();
        a.bind(top);
        a.jmp_imm(Cond::Eq, R1, 0, out); // 0: if r1 == 0 goto out (+2)
        a.alu_imm(Alu::Sub, R1, 1); // 1
        a.ja(top); // 2: goto top (-3)
        a.bind(out);
        a.exit(); // 3
        let i = a.finish().unwrap();
        assert_eq!((i[0].off, i[2].off), (2, -3));
        assert_eq!(i[0].code, 0x15);
        let mut a = Asm::new();
        let l = a.label();
        a.ja(l);
        assert!(a.finish().is_err());
    }

    /// The kernel takes what the assembler makes (needs root: with CI=true, not being root fails).
    #[test]
    fn a_built_program_loads_and_a_bad_one_is_refused_with_the_log() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "must run as root in CI"
            );
            eprintln!("SKIPPED: not root");
            return;
        }
        let mut a = Asm::new();
        a.mov_imm(R0, 0);
        a.exit();
        let good = a.finish().unwrap();
        load_for(
            libbpf_sys::BPF_PROG_TYPE_TRACEPOINT,
            None,
            "bpfprof_ok",
            &good,
            None,
        )
        .unwrap();
        let mut a = Asm::new();
        a.exit(); // r0 is never set
        let err = load_for(
            libbpf_sys::BPF_PROG_TYPE_TRACEPOINT,
            None,
            "bpfprof_bad",
            &a.finish().unwrap(),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("R0 !read_ok"), "{err}");
    }
}
