//! USDT argument specifications (`-4@%edi 8@-16(%rbp) 4@$5`, from .note.stapsdt) as reads of the uprobe's
//! registers (struct pt_regs, x86-64), for the one-liners' `arg0`... of `usdt:` probes.
use anyhow::{bail, Context, Result};

/// Where one argument lives, and how wide it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsdtArg {
    pub loc: Loc,
    /// Bytes (1, 2, 4, 8).
    pub size: u8,
    pub signed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Loc {
    /// A register: its offset in struct pt_regs.
    Reg(i16),
    /// Memory at a register plus a displacement (user memory).
    Mem {
        reg: i16,
        disp: i32,
    },
    Const(i64),
}

/// struct pt_regs of x86-64: the offset of each general register, by any of its names.
fn reg_offset(name: &str) -> Option<i16> {
    let idx = match name {
        "r15" | "r15d" | "r15w" | "r15b" => 0,
        "r14" | "r14d" | "r14w" | "r14b" => 1,
        "r13" | "r13d" | "r13w" | "r13b" => 2,
        "r12" | "r12d" | "r12w" | "r12b" => 3,
        "rbp" | "ebp" | "bp" | "bpl" => 4,
        "rbx" | "ebx" | "bx" | "bl" => 5,
        "r11" | "r11d" | "r11w" | "r11b" => 6,
        "r10" | "r10d" | "r10w" | "r10b" => 7,
        "r9" | "r9d" | "r9w" | "r9b" => 8,
        "r8" | "r8d" | "r8w" | "r8b" => 9,
        "rax" | "eax" | "ax" | "al" => 10,
        "rcx" | "ecx" | "cx" | "cl" => 11,
        "rdx" | "edx" | "dx" | "dl" => 12,
        "rsi" | "esi" | "si" | "sil" => 13,
        "rdi" | "edi" | "di" | "dil" => 14,
        "rip" | "eip" | "ip" => 16,
        "rsp" | "esp" | "sp" | "spl" => 19,
        _ => return None,
    };
    Some(idx * 8)
}

/// The pt_regs offsets of a function's first six integer arguments, and of its return value (x86-64 SysV).
pub const ARG_REGS: [i16; 6] = [112, 104, 96, 88, 72, 64];
pub const RET_REG: i16 = 80;

fn parse_one(spec: &str) -> Result<UsdtArg> {
    let (size, loc) = match spec.split_once('@') {
        Some((n, loc)) => {
            let n: i8 = n.parse().with_context(|| format!("bad size in {spec:?}"))?;
            (n, loc)
        }
        None => (8, spec),
    };
    let (signed, size) = (size < 0, size.unsigned_abs());
    if ![1, 2, 4, 8].contains(&size) {
        bail!("bad size in {spec:?}");
    }
    let reg = |r: &str| {
        r.strip_prefix('%')
            .and_then(reg_offset)
            .with_context(|| format!("unknown register in {spec:?}"))
    };
    let loc = if let Some(imm) = loc.strip_prefix('$') {
        let v = match imm.strip_prefix("0x") {
            Some(h) => i64::from_str_radix(h, 16),
            None => imm.parse(),
        };
        Loc::Const(v.with_context(|| format!("bad constant in {spec:?}"))?)
    } else if let Some(open) = loc.find('(') {
        let inner = loc[open + 1..]
            .strip_suffix(')')
            .with_context(|| format!("bad memory operand in {spec:?}"))?;
        if inner.contains(',') {
            bail!("USDT argument {spec:?}: indexed memory operands are not supported");
        }
        let disp = &loc[..open];
        let disp = if disp.is_empty() {
            0
        } else {
            disp.parse()
                .with_context(|| format!("bad displacement in {spec:?}"))?
        };
        Loc::Mem {
            reg: reg(inner)?,
            disp,
        }
    } else {
        Loc::Reg(reg(loc)?)
    };
    Ok(UsdtArg { loc, size, signed })
}

/// The arguments of one probe site.
pub fn parse(specs: &str) -> Result<Vec<UsdtArg>> {
    specs.split_whitespace().map(parse_one).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        let a = parse("-4@%edi 8@-16(%rbp) 4@$5 1@(%rax) 8@%r12").unwrap();
        assert_eq!(
            a,
            vec![
                UsdtArg {
                    loc: Loc::Reg(112),
                    size: 4,
                    signed: true
                },
                UsdtArg {
                    loc: Loc::Mem { reg: 32, disp: -16 },
                    size: 8,
                    signed: false
                },
                UsdtArg {
                    loc: Loc::Const(5),
                    size: 4,
                    signed: false
                },
                UsdtArg {
                    loc: Loc::Mem { reg: 80, disp: 0 },
                    size: 1,
                    signed: false
                },
                UsdtArg {
                    loc: Loc::Reg(24),
                    size: 8,
                    signed: false
                },
            ]
        );
        assert!(parse("8@(%rax,%rbx,8)").is_err());
        assert!(parse("3@%eax").is_err());
        assert!(parse("4@%xmm0").is_err());
        assert_eq!(parse("").unwrap(), vec![]);
    }
}
