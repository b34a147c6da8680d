//! A recursive-descent parser for the one-liner language (bpftrace's syntax): probes with attach points,
//! predicates and statement blocks; C's expression precedence. Errors carry the span they are about.
use super::ast::*;
use super::diag::{Diag, Span};
use super::lexer::{Lexer, Tok, Token};

/// Parses a whole program.
pub fn parse(src: &str) -> Result<Program, Diag> {
    // Directives blanked out (offsets kept: spans point into `src`).
    let src = &super::preproc::preprocess(src)?;
    let mut p = Parser {
        lx: Lexer::new(src),
        no_div: false,
        depth: 0,
        loops: 0,
    };
    let mut probes = Vec::new();
    let mut structs = Vec::new();
    while let Some(item) = p.item()? {
        match item {
            Item::Probe(probe) => probes.push(probe),
            Item::Struct(def) => structs.push(def),
        }
    }
    if probes.is_empty() {
        return Err(Diag::new(
            Span::new(0, src.len()),
            "no probes in the program",
        ));
    }
    Ok(Program { probes, structs })
}

/// What a program holds at its top level.
enum Item {
    Probe(Probe),
    Struct(StructDef),
}

/// bpftrace's integer type names, as casts write them.
fn int_type(name: &str) -> Option<TypeName> {
    let (signed, bits) = match name.strip_prefix('u') {
        Some(rest) => (false, rest.strip_prefix("int")?),
        None => (true, name.strip_prefix("int")?),
    };
    let size = match bits {
        "8" => 1,
        "16" => 2,
        "32" => 4,
        "64" => 8,
        _ => return None,
    };
    Some(TypeName::Int { size, signed })
}

/// C's words for integer types (`unsigned long`, `char`, `u32`, `pid_t`...) and the kernel's own
/// fixed-size names; None for anything else.
fn c_int_word(name: &str) -> bool {
    matches!(
        name,
        "unsigned" | "signed" | "char" | "short" | "int" | "long" | "bool" | "_Bool"
    )
}

fn kernel_int(name: &str) -> Option<TypeName> {
    let (size, signed) = match name {
        "u8" | "__u8" => (1, false),
        "u16" | "__u16" => (2, false),
        "u32" | "__u32" => (4, false),
        "u64" | "__u64" | "size_t" => (8, false),
        "s8" | "__s8" => (1, true),
        "s16" | "__s16" => (2, true),
        "s32" | "__s32" | "pid_t" => (4, true),
        "s64" | "__s64" | "ssize_t" | "loff_t" => (8, true),
        _ => return None,
    };
    Some(TypeName::Int { size, signed })
}

struct Parser<'s> {
    lx: Lexer<'s>,
    /// Inside a predicate, outside parentheses: `/` ends the predicate instead of dividing.
    no_div: bool,
    /// How deep the expression being parsed is (every later pass recurses as deep).
    depth: usize,
    /// How many while loops enclose the statement being parsed.
    loops: usize,
}

/// The deepest expression accepted: deeper ones would exhaust the stack of the passes that walk them.
const MAX_DEPTH: usize = 200;

/// Binary operators by precedence level, loosest first.
const LEVELS: &[&[&str]] = &[
    &["||"],
    &["&&"],
    &["|"],
    &["^"],
    &["&"],
    &["==", "!="],
    &["<", "<=", ">", ">="],
    &["<<", ">>"],
    &["+", "-"],
    &["*", "/", "%"],
];

const ASSIGN_OPS: &[&str] = &[
    "=", "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "<<=", ">>=",
];

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("identifier {s}"),
        Tok::Int(n) => format!("integer {n}"),
        Tok::Str(s) => format!("string {s:?}"),
        Tok::Map(s) => format!("map @{s}"),
        Tok::Var(s) => format!("variable ${s}"),
        Tok::Punct(p) => p.to_string(),
        Tok::Eof => "end of program".into(),
    }
}

impl Parser<'_> {
    fn peek(&mut self) -> Result<&Token, Diag> {
        self.lx.peek()
    }

    fn next(&mut self) -> Result<Token, Diag> {
        self.lx.next_token()
    }

    fn at(&mut self, punct: &str) -> Result<bool, Diag> {
        Ok(matches!(&self.peek()?.tok, Tok::Punct(p) if *p == punct))
    }

    fn expect(&mut self, punct: &str) -> Result<Token, Diag> {
        let t = self.next()?;
        match &t.tok {
            Tok::Punct(p) if *p == punct => Ok(t),
            other => Err(Diag::new(
                t.span,
                format!(
                    "syntax error, unexpected {}, expecting {punct}",
                    describe(other)
                ),
            )),
        }
    }

    fn unexpected(t: &Token) -> Diag {
        Diag::new(
            t.span,
            format!("syntax error, unexpected {}", describe(&t.tok)),
        )
    }

    /// A probe or a struct definition, or None at the end of the program.
    fn item(&mut self) -> Result<Option<Item>, Diag> {
        let Some((raw, span)) = self.lx.raw_attach_point()? else {
            // No attach point: the end of the program, or a stray `}` or `,`.
            let t = self.next()?;
            if t.tok == Tok::Eof {
                return Ok(None);
            }
            return Err(Diag::new(
                t.span,
                format!(
                    "syntax error, unexpected {}, expecting a probe",
                    describe(&t.tok)
                ),
            ));
        };
        if raw == "struct" || raw == "union" {
            return Ok(Some(Item::Struct(self.struct_def(raw == "union", span)?)));
        }
        let mut attach = vec![attach_point(raw, span)?];
        while self.at(",")? {
            self.next()?;
            match self.lx.raw_attach_point()? {
                Some((raw, span)) => attach.push(attach_point(raw, span)?),
                None => {
                    let t = self.next()?;
                    return Err(Diag::new(t.span, "an attach point must follow ','"));
                }
            }
        }
        let pred = if self.at("/")? {
            self.next()?;
            self.no_div = true;
            let e = self.expr()?;
            self.no_div = false;
            self.expect("/")?;
            Some(e)
        } else {
            None
        };
        let body = self.block()?;
        let end = self.lx_pos_span();
        Ok(Some(Item::Probe(Probe {
            attach,
            pred,
            body,
            span: span.to(end),
        })))
    }

    /// `struct NAME { TYPE MEMBER; ... };` after its keyword (`union` when `union`).
    fn struct_def(&mut self, union: bool, start: Span) -> Result<StructDef, Diag> {
        let t = self.next()?;
        let Tok::Ident(name) = t.tok else {
            return Err(Diag::new(t.span, "a struct definition needs a name"));
        };
        self.expect("{")?;
        let mut members = Vec::new();
        while !self.at("}")? {
            let ty = self.type_name()?;
            let (ty, member) = self.declarator(ty)?;
            self.expect(";")?;
            members.push((ty, member));
        }
        self.next()?;
        let end = self.expect(";")?.span;
        Ok(StructDef {
            name,
            union,
            members,
            span: start.to(end),
        })
    }

    /// A member's `*`s, name and array length, around its type.
    fn declarator(&mut self, mut ty: TypeName) -> Result<(TypeName, String), Diag> {
        while self.at("*")? {
            self.next()?;
            ty = TypeName::Ptr(Box::new(ty));
        }
        let t = self.next()?;
        let Tok::Ident(name) = t.tok else {
            return Err(Diag::new(t.span, "a member needs a name"));
        };
        if self.at("[")? {
            self.next()?;
            let t = self.next()?;
            let Tok::Int(n) = t.tok else {
                return Err(Diag::new(t.span, "an array's length must be a number"));
            };
            self.expect("]")?;
            ty = TypeName::Array(Box::new(ty), n as usize);
        }
        Ok((ty, name))
    }

    /// A type without its declarator's `*`s: `struct NAME`, `unsigned long`, `u64`, `int8`, a typedef.
    fn type_name(&mut self) -> Result<TypeName, Diag> {
        let mut words: Vec<String> = Vec::new();
        let mut first = None;
        loop {
            let t = self.peek()?.clone();
            let Tok::Ident(w) = &t.tok else { break };
            first.get_or_insert(t.span);
            match w.as_str() {
                "const" | "volatile" => {
                    self.next()?;
                }
                "struct" | "union" if words.is_empty() => {
                    self.next()?;
                    let n = self.next()?;
                    let Tok::Ident(name) = n.tok else {
                        return Err(Diag::new(n.span, "a struct's name must follow struct"));
                    };
                    return Ok(TypeName::Record {
                        name,
                        union: w == "union",
                    });
                }
                w if c_int_word(w) => {
                    words.push(w.to_string());
                    self.next()?;
                }
                w if words.is_empty() => {
                    let w = w.to_string();
                    self.next()?;
                    if w == "void" {
                        return Ok(TypeName::Void);
                    }
                    return Ok(int_type(&w)
                        .or_else(|| kernel_int(&w))
                        .unwrap_or(TypeName::Named(w)));
                }
                _ => break,
            }
        }
        if words.is_empty() {
            let t = self.next()?;
            return Err(Diag::new(t.span, "a type name is expected here"));
        }
        let unsigned = words.iter().any(|w| w == "unsigned");
        let has = |x: &str| words.iter().any(|w| w == x);
        let longs = words.iter().filter(|w| *w == "long").count();
        let size = if has("char") || has("bool") || has("_Bool") {
            1
        } else if has("short") {
            2
        } else if longs > 0 {
            8
        } else {
            4
        };
        let bool_ = has("bool") || has("_Bool");
        Ok(TypeName::Int {
            size,
            signed: !unsigned && !bool_,
        })
    }

    /// Whether `(` starts a cast: a struct or union, an integer type, or void, then `)` or `*`.
    fn cast_ahead(&mut self) -> Result<bool, Diag> {
        if !self.at("(")? {
            return Ok(false);
        }
        let mut ahead = self.lx.clone();
        ahead.next_token()?;
        let t = ahead.next_token()?;
        let Tok::Ident(w) = &t.tok else {
            return Ok(false);
        };
        if matches!(w.as_str(), "struct" | "union" | "const" | "volatile") || c_int_word(w) {
            return Ok(true);
        }
        if w == "void" || int_type(w).is_some() || kernel_int(w).is_some() {
            let next = ahead.next_token()?;
            return Ok(matches!(next.tok, Tok::Punct(")" | "*")));
        }
        Ok(false)
    }

    fn lx_pos_span(&mut self) -> Span {
        self.peek().map(|t| t.span).unwrap_or_default()
    }

    /// `{ stmt; stmt; ... }`
    fn block(&mut self) -> Result<Vec<Stmt>, Diag> {
        self.expect("{")?;
        let mut stmts = Vec::new();
        loop {
            if self.at("}")? {
                self.next()?;
                return Ok(stmts);
            }
            if self.at(";")? {
                self.next()?;
                continue;
            }
            let s = self.stmt()?;
            let braced = matches!(
                s.kind,
                StmtKind::If { .. } | StmtKind::While { .. } | StmtKind::Unroll { .. }
            );
            stmts.push(s);
            if !braced && !self.at("}")? {
                self.expect(";")?;
            }
        }
    }

    fn stmt(&mut self) -> Result<Stmt, Diag> {
        if matches!(&self.peek()?.tok, Tok::Ident(s) if s == "if") {
            return self.if_stmt();
        }
        let t = self.peek()?.clone();
        if let Tok::Ident(s) = &t.tok {
            match s.as_str() {
                "while" => {
                    self.next()?;
                    let cond = self.expr()?;
                    self.loops += 1;
                    let body = self.block();
                    self.loops -= 1;
                    return Ok(Stmt {
                        kind: StmtKind::While { cond, body: body? },
                        span: t.span,
                    });
                }
                "unroll" => {
                    self.next()?;
                    self.expect("(")?;
                    let n = self.next()?;
                    let Tok::Int(count @ 1..=100) = n.tok else {
                        return Err(Diag::new(n.span, "unroll takes a count from 1 to 100"));
                    };
                    self.expect(")")?;
                    let body = self.block()?;
                    return Ok(Stmt {
                        kind: StmtKind::Unroll { n: count, body },
                        span: t.span,
                    });
                }
                "break" | "continue" => {
                    if self.loops == 0 {
                        return Err(Diag::new(t.span, format!("{s} outside a while loop")));
                    }
                    self.next()?;
                    let kind = if s == "break" {
                        StmtKind::Break
                    } else {
                        StmtKind::Continue
                    };
                    return Ok(Stmt { kind, span: t.span });
                }
                _ => {}
            }
            if matches!(s.as_str(), "for" | "return") {
                return Err(Diag::new(
                    t.span,
                    format!("{s} is bpftrace syntax that trace does not support yet"),
                ));
            }
        }
        let target = self.expr()?;
        let op = match &self.peek()?.tok {
            Tok::Punct(p) if ASSIGN_OPS.contains(p) => Some(*p),
            _ => None,
        };
        let Some(op) = op else {
            let span = target.span;
            return Ok(Stmt {
                kind: StmtKind::Expr(target),
                span,
            });
        };
        let op_tok = self.next()?;
        if !matches!(target.kind, ExprKind::Map { .. } | ExprKind::Var(_)) {
            return Err(Diag::new(
                target.span,
                "only maps (@x) and variables ($x) can be assigned to",
            ));
        }
        let value = self.expr()?;
        let _ = op_tok;
        Ok(Stmt {
            span: target.span.to(value.span),
            kind: StmtKind::Assign {
                target,
                op: (op != "=").then(|| &op[..op.len() - 1]).map(static_op),
                value,
            },
        })
    }

    fn if_stmt(&mut self) -> Result<Stmt, Diag> {
        let start = self.next()?.span;
        let cond = self.expr()?;
        let then = self.block()?;
        let els = if matches!(&self.peek()?.tok, Tok::Ident(s) if s == "else") {
            self.next()?;
            if matches!(&self.peek()?.tok, Tok::Ident(s) if s == "if") {
                vec![self.if_stmt()?]
            } else {
                self.block()?
            }
        } else {
            Vec::new()
        };
        Ok(Stmt {
            kind: StmtKind::If { cond, then, els },
            span: start,
        })
    }

    fn expr(&mut self) -> Result<Expr, Diag> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let t = self.peek()?.span;
            return Err(Diag::new(
                t,
                format!("expression nested more than {MAX_DEPTH} deep"),
            ));
        }
        let e = self.expr_inner();
        self.depth -= 1;
        e
    }

    fn expr_inner(&mut self) -> Result<Expr, Diag> {
        let cond = self.binary(0)?;
        if !self.at("?")? {
            return Ok(cond);
        }
        self.next()?;
        let then = self.expr()?;
        self.expect(":")?;
        let els = self.expr()?;
        Ok(Expr {
            span: cond.span.to(els.span),
            kind: ExprKind::Ternary {
                cond: Box::new(cond),
                then: Box::new(then),
                els: Box::new(els),
            },
        })
    }

    fn binary(&mut self, level: usize) -> Result<Expr, Diag> {
        if level == LEVELS.len() {
            return self.unary();
        }
        let mut lhs = self.binary(level + 1)?;
        let mut chain = 0;
        loop {
            let op = match &self.peek()?.tok {
                Tok::Punct(p) if LEVELS[level].contains(p) => *p,
                _ => return Ok(lhs),
            };
            if op == "/" && self.no_div {
                return Ok(lhs);
            }
            self.next()?;
            let rhs = self.binary(level + 1)?;
            chain += 1;
            if self.depth + chain > MAX_DEPTH {
                return Err(Diag::new(
                    rhs.span,
                    format!("expression nested more than {MAX_DEPTH} deep"),
                ));
            }
            lhs = Expr {
                span: lhs.span.to(rhs.span),
                kind: ExprKind::Binary {
                    op,
                    lhs: Box::new(lhs),
                    rhs: Box::new(rhs),
                },
            };
        }
    }

    fn unary(&mut self) -> Result<Expr, Diag> {
        let t = self.peek()?.clone();
        if self.cast_ahead()? {
            self.next()?;
            let mut ty = self.type_name()?;
            while self.at("*")? {
                self.next()?;
                ty = TypeName::Ptr(Box::new(ty));
            }
            self.expect(")")?;
            let expr = self.operand(t.span)?;
            return Ok(Expr {
                span: t.span.to(expr.span),
                kind: ExprKind::Cast {
                    ty,
                    expr: Box::new(expr),
                },
            });
        }
        if let Tok::Punct(op @ ("!" | "~" | "-" | "*" | "++" | "--")) = t.tok {
            self.next()?;
            let expr = self.operand(t.span)?;
            let span = t.span.to(expr.span);
            let kind = if op == "++" || op == "--" {
                ExprKind::Incr {
                    op,
                    post: false,
                    target: Box::new(expr),
                }
            } else {
                ExprKind::Unary {
                    op,
                    expr: Box::new(expr),
                }
            };
            return Ok(Expr { kind, span });
        }
        self.postfix()
    }

    /// The operand of a prefix operator or a cast at `at`, one level deeper (bounded as `expr`).
    fn operand(&mut self, at: Span) -> Result<Expr, Diag> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Diag::new(
                at,
                format!("expression nested more than {MAX_DEPTH} deep"),
            ));
        }
        let expr = self.unary();
        self.depth -= 1;
        expr
    }

    fn postfix(&mut self) -> Result<Expr, Diag> {
        let mut e = self.primary()?;
        loop {
            let t = self.peek()?.clone();
            match t.tok {
                Tok::Punct(op @ ("++" | "--")) => {
                    self.next()?;
                    e = Expr {
                        span: e.span.to(t.span),
                        kind: ExprKind::Incr {
                            op,
                            post: true,
                            target: Box::new(e),
                        },
                    };
                }
                Tok::Punct("[") => {
                    self.next()?;
                    let index = self.expr()?;
                    let end = self.expect("]")?.span;
                    e = Expr {
                        span: e.span.to(end),
                        kind: ExprKind::Index {
                            base: Box::new(e),
                            index: Box::new(index),
                        },
                    };
                }
                Tok::Punct("->" | ".") => {
                    self.next()?;
                    let f = self.next()?;
                    let Tok::Ident(field) = f.tok else {
                        return Err(Diag::new(f.span, "a field name must follow -> or ."));
                    };
                    e = Expr {
                        span: e.span.to(f.span),
                        kind: ExprKind::Field {
                            base: Box::new(e),
                            field,
                        },
                    };
                }
                _ => return Ok(e),
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, Diag> {
        let t = self.next()?;
        let span = t.span;
        let kind = match t.tok {
            Tok::Int(n) => ExprKind::Int(n),
            Tok::Str(s) => ExprKind::Str(s),
            Tok::Var(v) => ExprKind::Var(v),
            Tok::Map(name) => {
                let mut keys = Vec::new();
                let mut end = span;
                if self.at("[")? {
                    self.next()?;
                    keys = self.args("]")?;
                    end = self.expect("]")?.span;
                }
                return Ok(Expr {
                    kind: ExprKind::Map { name, keys },
                    span: span.to(end),
                });
            }
            Tok::Ident(name) => {
                if self.at("(")? {
                    self.next()?;
                    let args = self.args(")")?;
                    let end = self.expect(")")?.span;
                    return Ok(Expr {
                        kind: ExprKind::Call { name, args },
                        span: span.to(end),
                    });
                }
                ExprKind::Ident(name)
            }
            Tok::Punct("(") => {
                let outer = std::mem::replace(&mut self.no_div, false);
                let e = self.expr()?;
                self.no_div = outer;
                self.expect(")")?;
                return Ok(e);
            }
            _ => return Err(Self::unexpected(&t)),
        };
        Ok(Expr { kind, span })
    }

    /// Comma-separated expressions up to (not taking) `close`; division is allowed inside.
    fn args(&mut self, close: &str) -> Result<Vec<Expr>, Diag> {
        let outer = std::mem::replace(&mut self.no_div, false);
        let mut out = Vec::new();
        if !self.at(close)? {
            loop {
                out.push(self.expr()?);
                if !self.at(",")? {
                    break;
                }
                self.next()?;
            }
        }
        self.no_div = outer;
        Ok(out)
    }
}

/// The operator of a compound assignment (`+=` -> `+`), as a static string.
fn static_op(op: &str) -> &'static str {
    LEVELS
        .iter()
        .flat_map(|l| l.iter())
        .find(|o| **o == op)
        .copied()
        .unwrap_or("?")
}

/// Parses an attach point's text (`kprobe:vfs_*`, `u:/bin/bash:readline`, `profile:hz:99`, `BEGIN`).
fn attach_point(raw: String, span: Span) -> Result<AttachPoint, Diag> {
    let parts: Vec<&str> = raw.split(':').collect();
    let err = |msg: String| Err(Diag::new(span, msg));
    let need = |n: usize, form: &str| -> Result<(), Diag> {
        if parts.len() != n || parts.iter().any(|p| p.is_empty()) {
            return Err(Diag::new(
                span,
                format!("{} probes are written {form}", parts[0]),
            ));
        }
        Ok(())
    };
    let timer = |form: &str| -> Result<(TimeUnit, u64), Diag> {
        need(3, form)?;
        let unit = match parts[1] {
            "hz" => TimeUnit::Hz,
            "s" => TimeUnit::S,
            "ms" => TimeUnit::Ms,
            "us" => TimeUnit::Us,
            u => {
                return Err(Diag::new(
                    span,
                    format!("unknown unit {u:?}: use hz, s, ms or us"),
                ))
            }
        };
        let n: u64 = parts[2].parse().ok().filter(|&n| n > 0).ok_or_else(|| {
            Diag::new(
                span,
                format!("{:?} is not a positive whole number", parts[2]),
            )
        })?;
        Ok((unit, n))
    };
    let kind = match parts[0] {
        "BEGIN" if parts.len() == 1 => Attach::Begin,
        "END" if parts.len() == 1 => Attach::End,
        "t" | "tracepoint" => {
            need(3, "tracepoint:CATEGORY:EVENT")?;
            Attach::Tracepoint {
                category: parts[1].into(),
                event: parts[2].into(),
            }
        }
        "k" | "kprobe" | "kr" | "kretprobe" => {
            need(2, "kprobe:FUNCTION")?;
            Attach::Kprobe {
                func: parts[1].into(),
                ret: parts[0].starts_with("kr"),
            }
        }
        "f" | "fentry" | "kfunc" | "fr" | "fexit" | "kretfunc" => {
            need(2, "fentry:FUNCTION")?;
            Attach::Fentry {
                func: parts[1].into(),
                ret: matches!(parts[0], "fr" | "fexit" | "kretfunc"),
            }
        }
        "u" | "uprobe" | "ur" | "uretprobe" => {
            need(3, "uprobe:BINARY:FUNCTION")?;
            Attach::Uprobe {
                target: parts[1].into(),
                func: parts[2].into(),
                ret: parts[0].starts_with("ur"),
            }
        }
        "U" | "usdt" => {
            if parts.len() == 4 && parts.iter().all(|p| !p.is_empty()) {
                Attach::Usdt {
                    target: parts[1].into(),
                    probe: format!("{}:{}", parts[2], parts[3]),
                }
            } else {
                need(3, "usdt:BINARY:[PROVIDER:]PROBE")?;
                Attach::Usdt {
                    target: parts[1].into(),
                    probe: parts[2].into(),
                }
            }
        }
        "p" | "profile" => {
            let (unit, n) = timer("profile:hz:RATE (or s/ms/us:PERIOD)")?;
            Attach::Profile { unit, n }
        }
        "i" | "interval" => {
            let (unit, n) = timer("interval:s:PERIOD (or ms/us, or hz:RATE)")?;
            Attach::Interval { unit, n }
        }
        other => return err(format!("Invalid probe type: {other}")),
    };
    Ok(AttachPoint { kind, raw, span })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden tests: every tests/data/oneliner/parse/NAME.bt is parsed and compared with NAME.out (the tree
    /// as S-expressions, or the error as bpftrace prints it). BLESS=1 rewrites the .out files.
    #[test]
    fn golden_parses_and_errors() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/oneliner/parse");
        let bless = std::env::var_os("BLESS").is_some();
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .expect("tests/data/oneliner/parse")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "bt"))
            .collect();
        inputs.sort();
        assert!(
            inputs.len() >= 10,
            "golden inputs missing in {}",
            dir.display()
        );
        let mut failed = Vec::new();
        for input in inputs {
            let src = std::fs::read_to_string(&input).unwrap();
            let got = match parse(&src) {
                Ok(p) => p.sexp(),
                Err(d) => d.render("stdin", &src),
            };
            let out = input.with_extension("out");
            if bless {
                std::fs::write(&out, &got).unwrap();
                continue;
            }
            let want = std::fs::read_to_string(&out).unwrap_or_default();
            if got != want {
                failed.push(format!(
                    "{}:\n--- want\n{want}--- got\n{got}",
                    input.display()
                ));
            }
        }
        assert!(
            failed.is_empty(),
            "{}\n(BLESS=1 cargo test golden rewrites them)",
            failed.join("\n")
        );
    }

    #[test]
    fn division_in_predicates_needs_parentheses() {
        let p = parse("k:f /(pid / 2) > 1/ { @++; }").unwrap();
        assert!(p.probes[0].pred.is_some());
        assert!(parse("k:f /pid / 2 > 1/ { }").is_err());
    }

    #[test]
    fn never_panics_on_garbage() {
        let inputs = [
            "",
            "{",
            "}",
            "k:",
            "k:f {",
            "k:f { @x[ }",
            "k:f { $ }",
            "BEGIN { if }",
            "BEGIN { 1 ? 2 }",
            "u:/bin/sh",
            "BEGIN { @x = }",
            "BEGIN { printf(\"%d\\n\", ) }",
            "::::",
            ",",
            "k:f,",
            "BEGIN { a->}",
            "BEGIN { -- }",
            "i:s:0 {}",
            "p:hz:x {}",
            "BEGIN { \"abc }",
        ];
        for src in inputs {
            let _ = parse(src);
        }
    }
}
