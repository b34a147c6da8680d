//! The one-liner language's syntax tree, with a span on every node, and an S-expression printer for golden
//! tests of the parser.
#[cfg(test)]
use std::fmt::Write as _;

use super::diag::Span;

#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    pub probes: Vec<Probe>,
    /// The program's own struct and union definitions (`struct cfs_rq { ... };`).
    pub structs: Vec<StructDef>,
}

/// A C type as a cast or a struct definition writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeName {
    /// bpftrace's `int8`...`uint64`, and C's integer words (`unsigned long`, `u32`...).
    Int {
        size: usize,
        signed: bool,
    },
    Record {
        name: String,
        union: bool,
    },
    /// A typedef, resolved through the kernel's BTF.
    Named(String),
    Ptr(Box<TypeName>),
    Array(Box<TypeName>, usize),
    Void,
}

/// `struct NAME { TYPE MEMBER; ... };`
#[derive(Clone, Debug, PartialEq)]
pub struct StructDef {
    pub name: String,
    pub union: bool,
    pub members: Vec<(TypeName, String)>,
    pub span: Span,
}

/// `ATTACH[, ATTACH...] [/PREDICATE/] { STATEMENTS }`
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    pub attach: Vec<AttachPoint>,
    pub pred: Option<Expr>,
    pub body: Vec<Stmt>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AttachPoint {
    pub kind: Attach,
    /// As written (`k:vfs_*`).
    pub raw: String,
    pub span: Span,
}

/// A timer's unit: `hz` (a rate), or a period in `s`, `ms`, `us`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeUnit {
    Hz,
    S,
    Ms,
    Us,
}

/// What a probe attaches to. Function and event names may hold globs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attach {
    Begin,
    End,
    Tracepoint {
        category: String,
        event: String,
    },
    Kprobe {
        func: String,
        ret: bool,
    },
    /// fentry/fexit (bpftrace's kfunc/kretfunc).
    Fentry {
        func: String,
        ret: bool,
    },
    Uprobe {
        target: String,
        func: String,
        ret: bool,
    },
    Usdt {
        target: String,
        probe: String,
    },
    Profile {
        unit: TimeUnit,
        n: u64,
    },
    Interval {
        unit: TimeUnit,
        n: u64,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Stmt {
    pub kind: StmtKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum StmtKind {
    /// A call (`printf(...)`, `delete(@x[1])`, `exit()`) or an increment (`@x++`).
    Expr(Expr),
    /// `@x[k] = v`, `$v = e`; with an operator, `@x += v`.
    Assign {
        target: Expr,
        op: Option<&'static str>,
        value: Expr,
    },
    If {
        cond: Expr,
        then: Vec<Stmt>,
        els: Vec<Stmt>,
    },
    /// `while (cond) { ... }` (the verifier must see it end: 5.3+).
    While {
        cond: Expr,
        body: Vec<Stmt>,
    },
    /// `unroll(N) { ... }`: the body N times (1 to 100).
    Unroll {
        n: u64,
        body: Vec<Stmt>,
    },
    /// In a while loop.
    Break,
    Continue,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    Int(u64),
    Str(String),
    /// A name: a builtin (`pid`, `comm`, `args`, `arg0`...) or, after `->`/`.`, nothing else.
    Ident(String),
    /// `$name`
    Var(String),
    /// `@name[keys]` (no keys: `@name`).
    Map {
        name: String,
        keys: Vec<Expr>,
    },
    Call {
        name: String,
        args: Vec<Expr>,
    },
    /// `base->field` or `base.field`
    Field {
        base: Box<Expr>,
        field: String,
    },
    /// `base[index]`: an element of an array member, or of what a pointer points to.
    Index {
        base: Box<Expr>,
        index: Box<Expr>,
    },
    Unary {
        op: &'static str,
        expr: Box<Expr>,
    },
    Binary {
        op: &'static str,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    Ternary {
        cond: Box<Expr>,
        then: Box<Expr>,
        els: Box<Expr>,
    },
    /// `(struct task_struct *)curtask`, `(uint8)x`
    Cast {
        ty: TypeName,
        expr: Box<Expr>,
    },
    /// `x++`, `--x`...
    Incr {
        op: &'static str,
        post: bool,
        target: Box<Expr>,
    },
}

#[cfg(test)]
impl Program {
    /// An S-expression rendering, one probe or statement per line (golden tests compare it).
    pub fn sexp(&self) -> String {
        let mut out = String::new();
        for d in &self.structs {
            let m: Vec<String> = d
                .members
                .iter()
                .map(|(t, n)| format!("({} {n})", type_sexp(t)))
                .collect();
            let _ = writeln!(
                out,
                "({} {} {})",
                if d.union { "union" } else { "struct" },
                d.name,
                m.join(" ")
            );
        }
        for p in &self.probes {
            let points: Vec<String> = p.attach.iter().map(|a| attach_sexp(&a.kind)).collect();
            let _ = writeln!(out, "(probe {}", points.join(" "));
            if let Some(pred) = &p.pred {
                let _ = writeln!(out, "  (pred {})", expr_sexp(pred));
            }
            stmts_sexp(&mut out, &p.body, 1);
            out.push_str(")\n");
        }
        out
    }
}

#[cfg(test)]
fn attach_sexp(a: &Attach) -> String {
    let unit = |u: &TimeUnit| match u {
        TimeUnit::Hz => "hz",
        TimeUnit::S => "s",
        TimeUnit::Ms => "ms",
        TimeUnit::Us => "us",
    };
    match a {
        Attach::Begin => "BEGIN".into(),
        Attach::End => "END".into(),
        Attach::Tracepoint { category, event } => format!("(tracepoint {category} {event})"),
        Attach::Kprobe { func, ret } => {
            format!("({} {func})", if *ret { "kretprobe" } else { "kprobe" })
        }
        Attach::Fentry { func, ret } => {
            format!("({} {func})", if *ret { "fexit" } else { "fentry" })
        }
        Attach::Uprobe { target, func, ret } => {
            format!(
                "({} {target} {func})",
                if *ret { "uretprobe" } else { "uprobe" }
            )
        }
        Attach::Usdt { target, probe } => format!("(usdt {target} {probe})"),
        Attach::Profile { unit: u, n } => format!("(profile {} {n})", unit(u)),
        Attach::Interval { unit: u, n } => format!("(interval {} {n})", unit(u)),
    }
}

#[cfg(test)]
fn stmts_sexp(out: &mut String, stmts: &[Stmt], depth: usize) {
    let pad = "  ".repeat(depth);
    for s in stmts {
        match &s.kind {
            StmtKind::Expr(e) => {
                let _ = writeln!(out, "{pad}{}", expr_sexp(e));
            }
            StmtKind::Assign { target, op, value } => {
                let op = op.map_or("=".to_string(), |o| format!("{o}="));
                let _ = writeln!(
                    out,
                    "{pad}({op} {} {})",
                    expr_sexp(target),
                    expr_sexp(value)
                );
            }
            StmtKind::While { cond, body } => {
                let _ = writeln!(out, "{pad}(while {}", expr_sexp(cond));
                stmts_sexp(out, body, depth + 1);
                let _ = writeln!(out, "{pad})");
            }
            StmtKind::Unroll { n, body } => {
                let _ = writeln!(out, "{pad}(unroll {n}");
                stmts_sexp(out, body, depth + 1);
                let _ = writeln!(out, "{pad})");
            }
            StmtKind::Break => {
                let _ = writeln!(out, "{pad}(break)");
            }
            StmtKind::Continue => {
                let _ = writeln!(out, "{pad}(continue)");
            }
            StmtKind::If { cond, then, els } => {
                let _ = writeln!(out, "{pad}(if {}", expr_sexp(cond));
                stmts_sexp(out, then, depth + 1);
                if !els.is_empty() {
                    let _ = writeln!(out, "{pad} else");
                    stmts_sexp(out, els, depth + 1);
                }
                let _ = writeln!(out, "{pad})");
            }
        }
    }
}

#[cfg(test)]
fn type_sexp(t: &TypeName) -> String {
    match t {
        TypeName::Int { size, signed } => {
            format!("{}int{}", if *signed { "" } else { "u" }, size * 8)
        }
        TypeName::Record { name, union } => {
            format!("{} {name}", if *union { "union" } else { "struct" })
        }
        TypeName::Named(n) => n.clone(),
        TypeName::Ptr(t) => format!("{}*", type_sexp(t)),
        TypeName::Array(t, n) => format!("{}[{n}]", type_sexp(t)),
        TypeName::Void => "void".into(),
    }
}

#[cfg(test)]
fn expr_sexp(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Int(n) => n.to_string(),
        ExprKind::Str(s) => format!("{s:?}"),
        ExprKind::Ident(n) => n.clone(),
        ExprKind::Var(n) => format!("${n}"),
        ExprKind::Map { name, keys } if keys.is_empty() => format!("@{name}"),
        ExprKind::Map { name, keys } => {
            let k: Vec<String> = keys.iter().map(expr_sexp).collect();
            format!("(@{name} {})", k.join(" "))
        }
        ExprKind::Call { name, args } => {
            let a: Vec<String> = args.iter().map(expr_sexp).collect();
            if a.is_empty() {
                format!("({name})")
            } else {
                format!("({name} {})", a.join(" "))
            }
        }
        ExprKind::Field { base, field } => format!("(. {} {field})", expr_sexp(base)),
        ExprKind::Index { base, index } => {
            format!("([] {} {})", expr_sexp(base), expr_sexp(index))
        }
        ExprKind::Unary { op, expr } => format!("({op} {})", expr_sexp(expr)),
        ExprKind::Binary { op, lhs, rhs } => {
            format!("({op} {} {})", expr_sexp(lhs), expr_sexp(rhs))
        }
        ExprKind::Ternary { cond, then, els } => format!(
            "(? {} {} {})",
            expr_sexp(cond),
            expr_sexp(then),
            expr_sexp(els)
        ),
        ExprKind::Cast { ty, expr } => format!("(cast {} {})", type_sexp(ty), expr_sexp(expr)),
        ExprKind::Incr { op, post, target } => {
            let place = if *post { "post" } else { "pre" };
            format!("({place}{op} {})", expr_sexp(target))
        }
    }
}
