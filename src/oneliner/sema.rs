//! The semantic pass: types every expression, checks builtins against the probes they are used in, maps
//! against all their uses, calls against their signatures and printf formats against their arguments. Errors
//! point at the expression they are about. What it learns (map kinds and key types, tracepoint fields) is
//! what code generation needs.
use std::collections::{BTreeMap, HashMap};

use super::ast::*;
use super::ctypes::{self, CType, KernelTypes, Layout, Member, RecordRef};
use super::diag::{Diag, Span};
use super::tpformat::{Field, FieldType};

/// A value's type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Type {
    Int {
        size: usize,
        signed: bool,
    },
    /// A string in a buffer of this many bytes (comm: 16, str(): 64).
    Str(usize),
    /// A stack's id in the stack map, printed as its frames (up to this many: kstack(N)).
    KStack(usize),
    /// A user stack's id and its process.
    UStack(usize),
    /// A kernel or user address printed as its symbol (ksym(), usym(); usym keeps the pid too).
    Sym {
        user: bool,
    },
    /// An attach point's index, printed as its name: `probe` or `func`.
    Point {
        func: bool,
    },
    /// `args` of a tracepoint: only its fields have values.
    Args,
    /// A pointer into kernel memory (an integer), to what BTF or a cast says: `->` reads a record's
    /// members through it.
    Ptr(CType),
    /// A struct or union in kernel memory (a member reached with `.`): its value is its address.
    Record(RecordRef),
    /// An array (not of chars) in kernel memory, a member: its elements are read with `[i]`; its value is
    /// its address.
    Array(CType, usize),
    /// ntop()'s address, printed as text (IPv4 or IPv6).
    Inet,
    /// buf()'s bytes (at most this many), printed by %r with non-printable ones escaped.
    Buf(usize),
    /// macaddr()'s 6 bytes, printed as `AA:BB:CC:DD:EE:FF`.
    Mac,
    /// strftime(FORMAT, ns): a time of the monotonic clock, printed as the local time by FORMAT.
    Strftime(String),
    /// What a statement-only call returns (printf, delete, exit...).
    None,
}

impl Type {
    const U64: Type = Type::Int {
        size: 8,
        signed: false,
    };
    const S64: Type = Type::Int {
        size: 8,
        signed: true,
    };
    const U32: Type = Type::Int {
        size: 4,
        signed: false,
    };

    /// Integers, and pointers, which are integers to arithmetic, maps and printf.
    fn is_int(&self) -> bool {
        matches!(self, Type::Int { .. } | Type::Ptr(_))
    }

    /// What a map or a printf keeps of a value: a pointer's address as an integer.
    fn stored(self) -> Type {
        match self {
            Type::Ptr(_) => Type::U64,
            t => t,
        }
    }

    fn name(&self) -> String {
        match self {
            Type::Int { size, signed } => {
                format!("{}int{}", if *signed { "" } else { "u" }, size * 8)
            }
            Type::Str(n) => format!("string[{n}]"),
            Type::KStack(_) => "kstack".into(),
            Type::UStack(_) => "ustack".into(),
            Type::Point { func: false } => "probe".into(),
            Type::Point { func: true } => "func".into(),
            Type::Sym { user: false } => "ksym".into(),
            Type::Sym { user: true } => "usym".into(),
            Type::Args => "args".into(),
            Type::Ptr(t) => format!("{} *", ctype_name(t)),
            Type::Record(r) => ctypes::describe(r),
            Type::Array(elem, len) => format!("{}[{len}]", ctype_name(elem)),
            Type::Inet => "inet".into(),
            Type::Buf(n) => format!("buffer[{n}]"),
            Type::Mac => "macaddr".into(),
            Type::Strftime(_) => "timestamp".into(),
            Type::None => "none".into(),
        }
    }

    /// Two uses of a map key or value agree: integers of any size, strings of any length.
    fn compatible(&self, other: &Type) -> bool {
        matches!(
            (self, other),
            (
                Type::Int { .. } | Type::Ptr(_),
                Type::Int { .. } | Type::Ptr(_)
            ) | (Type::Str(_), Type::Str(_))
                | (Type::KStack(_), Type::KStack(_))
                | (Type::UStack(_), Type::UStack(_))
        ) || self == other
    }
}

/// What a map holds: what its assignments say.
#[derive(Clone, Debug, PartialEq)]
pub enum MapKind {
    /// `@x = expr`, `@x++`, `@x += n`
    Value(Type),
    Count,
    Sum,
    Avg,
    Min,
    Max,
    Stats,
    Hist,
    Lhist {
        min: i64,
        max: i64,
        step: i64,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct MapInfo {
    pub keys: Vec<Type>,
    pub kind: MapKind,
    /// Where it was first given its kind.
    pub span: Span,
}

/// Where tracepoint fields come from: tracefs on a live system, a table in tests.
pub trait TracepointSource {
    /// The fields of `category:event` (no globs).
    fn fields(&self, category: &str, event: &str) -> anyhow::Result<Vec<Field>>;

    /// The tracepoints a glob matches.
    fn expand(&self, _category: &str, _event: &str) -> anyhow::Result<Vec<(String, String)>> {
        Ok(Vec::new())
    }
    /// The kernel's types (casts, struct members, enum constants).
    fn kernel_types(&self) -> &dyn KernelTypes {
        &ctypes::NoTypes
    }
}

/// Tracefs.
pub struct Tracefs;

impl TracepointSource for Tracefs {
    fn fields(&self, category: &str, event: &str) -> anyhow::Result<Vec<Field>> {
        super::tpformat::read_fields(category, event)
    }

    fn kernel_types(&self) -> &dyn KernelTypes {
        ctypes::kernel()
    }

    fn expand(&self, category: &str, event: &str) -> anyhow::Result<Vec<(String, String)>> {
        use crate::probes::{tracepoints, Matcher};
        tracepoints(
            &Matcher::new(category, false)?,
            &Matcher::new(event, false)?,
        )
    }
}

/// What the pass learned.
#[derive(Debug, Default)]
pub struct Info {
    pub maps: BTreeMap<String, MapInfo>,
    /// Maps read somewhere, and where first: each must be assigned somewhere too.
    reads: Vec<(String, Span)>,
    /// print()s given top or div, by map: bpftrace warns they are ignored on a stats() map, which the
    /// map is known to be only once every probe is checked.
    sized_prints: Vec<(String, Span)>,
    /// Per probe (by index), the tracepoint fields `args` has (tracepoint probes only).
    pub args: Vec<Option<Vec<Field>>>,
    /// Per probe, whether its tracepoints hold those fields at different places (then each gets a
    /// program of its own, built with its own fields).
    pub args_vary: Vec<bool>,
    /// The depths of the stacks probes take (kstack: 127, kstack(3): 3): a stack map each (a stack
    /// map keeps as many frames as its values hold, and stacks equal in those are one id).
    pub stacks: std::collections::BTreeSet<usize>,
    /// Some probe takes a user stack or symbol: their processes are noted for symbolization.
    pub user_pids: bool,
    /// Some probe takes a user stack (walked with unwind tables unless --unwind fp).
    pub ustack: bool,
    /// Every expression's type, by its span.
    pub types: HashMap<(usize, usize), Type>,
    /// The member each `->`/`.` on a record reads, by the field expression's span.
    pub members: HashMap<(usize, usize), Member>,
    /// Identifiers and calls that are constants (`TASK_RUNNING`, enum values, `kaddr("avenrun")`).
    pub constants: HashMap<(usize, usize), u64>,
    /// Calls that change the system (system(), signal()), which need --unsafe.
    pub unsafe_calls: Vec<(String, Span)>,
    /// What is taken but has no effect (bpftrace's WARNINGs).
    pub warnings: Vec<Diag>,
    /// The size of the elements each `[i]` reads, by its expression's span.
    pub elems: HashMap<(usize, usize), usize>,
}

/// The key of an expression in Info's tables.
pub fn key(span: Span) -> (usize, usize) {
    (span.start, span.end)
}

impl Info {
    /// An expression's type, as the pass found it.
    pub fn type_of(&self, e: &Expr) -> Option<&Type> {
        self.types.get(&key(e.span))
    }
}

/// Checks a program.
#[cfg(test)]
pub fn check(program: &Program, tps: &dyn TracepointSource) -> Result<Info, Diag> {
    check_with_params(program, tps, &[])
}

/// Checks a program given its positional parameters ($1, $2...: integers, or strings where they are not
/// numbers; one not given is 0).
pub fn check_with_params(
    program: &Program,
    tps: &dyn TracepointSource,
    params: &[String],
) -> Result<Info, Diag> {
    let mut info = Info::default();
    let kernel = tps.kernel_types();
    let mut layouts: HashMap<String, Layout> = HashMap::new();
    for def in &program.structs {
        let mut members = Vec::new();
        for (ty, name) in &def.members {
            members.push((
                name.clone(),
                resolve_type(ty, kernel, &layouts).map_err(|m| Diag::new(def.span, m))?,
            ));
        }
        let layout = ctypes::lay_out(&members, def.union, kernel, &layouts)
            .map_err(|m| Diag::new(def.span, format!("struct {}: {m}", def.name)))?;
        layouts.insert(def.name.clone(), layout);
    }
    for probe in &program.probes {
        let mut ctx = ProbeCtx::new(probe, tps)?;
        ctx.kernel = kernel;
        ctx.layouts = &layouts;
        ctx.params = params.to_vec();
        if let Some(pred) = &probe.pred {
            let t = ctx.expr(pred, &mut info)?;
            if !t.is_int() && !matches!(t, Type::Str(_)) {
                return Err(Diag::new(
                    pred.span,
                    format!("a predicate must be an integer, not {}", t.name()),
                ));
            }
        }
        ctx.stmts(&probe.body, &mut info)?;
        info.args.push(ctx.fields);
        info.args_vary.push(ctx.varying);
    }
    if let Some((name, span)) = info.reads.iter().find(|(n, _)| !info.maps.contains_key(n)) {
        return Err(Diag::new(
            *span,
            format!("@{name} is read but never assigned"),
        ));
    }
    for (name, span) in &info.sized_prints {
        if info
            .maps
            .get(name)
            .is_some_and(|m| m.kind == MapKind::Stats)
        {
            let warning = "print()'s top and div arguments are ignored when used on stats() maps.";
            info.warnings.push(Diag::new(*span, warning));
        }
    }
    // A read that came before the map's aggregation in program order.
    for (name, span) in &info.reads {
        let kind = &info.maps[name].kind;
        if !matches!(kind, MapKind::Value(_)) {
            return Err(aggregation_read(name, kind, *span));
        }
    }
    Ok(info)
}

/// A string literal's text, else `wrong` at the argument.
fn literal<'e>(arg: &'e Expr, wrong: &str) -> Result<&'e str, Diag> {
    match &arg.kind {
        ExprKind::Str(s) => Ok(s),
        _ => Err(Diag::new(arg.span, wrong)),
    }
}

/// A signal's number by its name, with or without SIG (x86-64's numbers).
fn signal_number(name: &str) -> Option<i32> {
    const NAMES: [&str; 31] = [
        "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
        "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
        "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
    ];
    let bare = name.strip_prefix("SIG").unwrap_or(name);
    NAMES.iter().position(|n| *n == bare).map(|i| i as i32 + 1)
}

/// Where x86-64's struct pt_regs holds a register (reg()'s names, bpftrace's).
fn register_offset(name: &str) -> Option<usize> {
    const REGS: [&str; 21] = [
        "r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8", "ax", "cx", "dx", "si",
        "di", "orig_ax", "ip", "cs", "flags", "sp", "ss",
    ];
    REGS.iter().position(|r| *r == name).map(|i| 8 * i)
}

/// The most bytes buf() copies (bpftrace's default string size).
pub const STR_BYTES: usize = 64;

/// The program's records when a pass has none.
fn empty_layouts() -> &'static HashMap<String, Layout> {
    static EMPTY: std::sync::OnceLock<HashMap<String, Layout>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(HashMap::new)
}

/// A written type as kernel memory holds it: records must exist (in the program or the kernel),
/// typedefs are looked up in the kernel's BTF.
fn resolve_type(
    t: &TypeName,
    kernel: &dyn KernelTypes,
    layouts: &HashMap<String, Layout>,
) -> Result<CType, String> {
    Ok(match t {
        TypeName::Int { size, signed } => CType::Int {
            size: *size,
            signed: *signed,
        },
        TypeName::Void => CType::Void,
        TypeName::Record { name, union } => {
            let r = RecordRef::named(name, *union);
            if !layouts.contains_key(name) {
                kernel.size_of(&r)?;
            }
            CType::Record(r)
        }
        TypeName::Named(n) => kernel
            .typedef(n)
            .ok_or_else(|| format!("unknown type {n} (not a typedef the kernel's BTF has)"))?,
        TypeName::Ptr(to) => CType::Ptr(Box::new(resolve_type(to, kernel, layouts)?)),
        TypeName::Array(of, n) => match resolve_type(of, kernel, layouts)? {
            CType::Int { size: 1, .. } => CType::Chars(*n),
            elem => CType::Array {
                elem: Box::new(elem),
                len: *n,
            },
        },
    })
}

/// The value a member or a pointer's target has: integers, pointers, char arrays as strings, records as
/// their address; what cannot be read yet as Err(what it is).
fn value_type(t: &CType) -> Result<Type, String> {
    Ok(match t {
        CType::Int { size, signed } => Type::Int {
            size: *size,
            signed: *signed,
        },
        CType::Ptr(to) => Type::Ptr((**to).clone()),
        CType::Chars(n) => Type::Str(*n),
        CType::Record(r) => Type::Record(r.clone()),
        CType::Array { elem, len } => Type::Array((**elem).clone(), *len),
        other => return Err(ctype_name(other)),
    })
}

/// A C type as C writes it.
fn ctype_name(t: &CType) -> String {
    match t {
        CType::Int { size, signed } => format!("{}int{}", if *signed { "" } else { "u" }, size * 8),
        CType::Chars(n) => format!("char[{n}]"),
        CType::Ptr(to) => format!("{} *", ctype_name(to)),
        CType::Void => "void".into(),
        CType::Record(r) => ctypes::describe(r),
        CType::Array { elem, len } => format!("an array ({}[{len}])", ctype_name(elem)),
        CType::Other(what) => what.clone(),
    }
}

/// Which builtins a probe has.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Provider {
    Special,
    Tracepoint,
    Kprobe,
    Kretprobe,
    Uprobe,
    Uretprobe,
    Usdt,
    Timer,
}

struct ProbeCtx<'a> {
    /// Its tracepoints hold a field `args` reads at different places.
    varying: bool,
    /// The kernel's types and the program's own records (which win).
    kernel: &'a dyn KernelTypes,
    layouts: &'a HashMap<String, Layout>,
    /// Field names every tracepoint of the probe has (maybe at different places).
    named_everywhere: Vec<String>,
    params: Vec<String>,
    /// Some tracepoint of the probe is a glob.
    globbed: bool,
    providers: Vec<Provider>,
    fields: Option<Vec<Field>>,
    vars: HashMap<String, Type>,
}

impl<'a> ProbeCtx<'a> {
    fn new(probe: &Probe, tps: &dyn TracepointSource) -> Result<Self, Diag> {
        let mut providers = Vec::new();
        let mut fields: Option<Vec<Field>> = None;
        let mut named_everywhere: Option<Vec<String>> = None;
        let mut varying = false;
        for a in &probe.attach {
            let p = match &a.kind {
                Attach::Begin | Attach::End => Provider::Special,
                Attach::Tracepoint { category, event } => {
                    let glob = |s: &str| s.contains(['*', '?', '[']);
                    let names = if glob(category) || glob(event) {
                        tps.expand(category, event)
                            .map_err(|e| Diag::new(a.span, format!("{e:#}")))?
                    } else {
                        vec![(category.clone(), event.clone())]
                    };
                    if names.is_empty() && (glob(category) || glob(event)) {
                        return Err(Diag::new(a.span, "no tracepoint matches"));
                    }
                    for (c, ev) in names {
                        let f = tps
                            .fields(&c, &ev)
                            .map_err(|e| Diag::new(a.span, format!("{e:#}")))?;
                        let names: Vec<String> = f.iter().map(|x| x.name.clone()).collect();
                        named_everywhere = Some(match named_everywhere {
                            None => names,
                            Some(prev) => prev.into_iter().filter(|n| names.contains(n)).collect(),
                        });
                        fields = Some(match fields {
                            None => f,
                            // Several tracepoints in one probe: `args` has the fields they share (same
                            // name, size and type; at different places, each tracepoint gets a program
                            // of its own, which reads it at its place).
                            Some(prev) => prev
                                .into_iter()
                                .filter(|x| {
                                    f.iter().any(|y| {
                                        if y.name == x.name && y.size == x.size && y.ty == x.ty {
                                            varying |= y.offset != x.offset;
                                            return true;
                                        }
                                        false
                                    })
                                })
                                .collect(),
                        });
                    }
                    Provider::Tracepoint
                }
                Attach::Kprobe { ret: false, .. } | Attach::Fentry { ret: false, .. } => {
                    Provider::Kprobe
                }
                Attach::Kprobe { ret: true, .. } | Attach::Fentry { ret: true, .. } => {
                    Provider::Kretprobe
                }
                Attach::Uprobe { ret: false, .. } => Provider::Uprobe,
                Attach::Uprobe { ret: true, .. } => Provider::Uretprobe,
                Attach::Usdt { .. } => Provider::Usdt,
                Attach::Profile { .. } | Attach::Interval { .. } => Provider::Timer,
            };
            providers.push(p);
        }
        let globbed = probe.attach.iter().any(|a| {
            matches!(&a.kind, Attach::Tracepoint { category, event }
                if category.contains(['*', '?', '[']) || event.contains(['*', '?', '[']))
        });
        Ok(Self {
            varying,
            kernel: &ctypes::NoTypes,
            layouts: empty_layouts(),
            named_everywhere: named_everywhere.unwrap_or_default(),
            params: Vec::new(),
            globbed,
            providers,
            fields,
            vars: HashMap::new(),
        })
    }

    /// A builtin exists only where every attach point of the probe has it.
    fn require(&self, span: Span, name: &str, ok: &[Provider]) -> Result<(), Diag> {
        if self.providers.iter().all(|p| ok.contains(p)) {
            return Ok(());
        }
        Err(Diag::new(
            span,
            format!("the builtin {name} does not exist in this probe's type"),
        ))
    }

    fn stmts(&mut self, stmts: &[Stmt], info: &mut Info) -> Result<(), Diag> {
        for s in stmts {
            match &s.kind {
                StmtKind::Expr(e) => {
                    self.expr(e, info)?;
                }
                StmtKind::Assign { target, op, value } => self.assign(target, *op, value, info)?,
                StmtKind::If { cond, then, els } => {
                    let t = self.expr(cond, info)?;
                    if !t.is_int() {
                        return Err(Diag::new(cond.span, "a condition must be an integer"));
                    }
                    self.stmts(then, info)?;
                    self.stmts(els, info)?;
                }
                StmtKind::While { cond, body } => {
                    if !self.expr(cond, info)?.is_int() {
                        return Err(Diag::new(cond.span, "a condition must be an integer"));
                    }
                    self.stmts(body, info)?;
                }
                StmtKind::Unroll { body, .. } => self.stmts(body, info)?,
                StmtKind::Break | StmtKind::Continue => {}
            }
        }
        Ok(())
    }

    fn assign(
        &mut self,
        target: &Expr,
        op: Option<&'static str>,
        value: &Expr,
        info: &mut Info,
    ) -> Result<(), Diag> {
        match &target.kind {
            ExprKind::Var(name) if is_positional(name) => Err(Diag::new(
                target.span,
                format!("${name} is a positional parameter: it cannot be assigned"),
            )),
            ExprKind::Var(name) => {
                let t = self.expr(value, info)?;
                if matches!(
                    t,
                    Type::None | Type::Args | Type::Record(_) | Type::Array(..)
                ) {
                    return Err(Diag::new(value.span, "this has no value to assign"));
                }
                if op.is_some() && !t.is_int() {
                    return Err(Diag::new(
                        value.span,
                        "compound assignment needs an integer",
                    ));
                }
                if let Some(prev) = self.vars.get(name) {
                    if !prev.compatible(&t) {
                        return Err(Diag::new(
                            value.span,
                            format!("${name} holds {}, not {}", prev.name(), t.name()),
                        ));
                    }
                }
                self.vars.insert(name.clone(), t);
                Ok(())
            }
            ExprKind::Map { name, keys } => {
                let key_types = self.keys(keys, info)?;
                let kind = match (&value.kind, op) {
                    (ExprKind::Call { name: f, args }, None) => {
                        match self.aggregation(f, args, value.span, info)? {
                            Some(kind) => kind,
                            None => MapKind::Value(self.expr(value, info)?.stored()),
                        }
                    }
                    _ => MapKind::Value(self.expr(value, info)?.stored()),
                };
                if let MapKind::Value(t) = &kind {
                    if matches!(
                        t,
                        Type::None | Type::Args | Type::Record(_) | Type::Array(..)
                    ) {
                        return Err(Diag::new(value.span, "this has no value to store"));
                    }
                    if op.is_some() && !t.is_int() {
                        return Err(Diag::new(
                            value.span,
                            "compound assignment needs an integer",
                        ));
                    }
                }
                declare_map(info, name, key_types, kind, target.span)
            }
            _ => Err(Diag::new(
                target.span,
                "only maps and variables can be assigned to",
            )),
        }
    }

    /// `count()`, `hist(x)`...: the map kind an aggregation makes, or None for other calls.
    fn aggregation(
        &mut self,
        f: &str,
        args: &[Expr],
        span: Span,
        info: &mut Info,
    ) -> Result<Option<MapKind>, Diag> {
        let one_int = |ctx: &mut Self, info: &mut Info| -> Result<(), Diag> {
            if args.len() != 1 {
                return Err(Diag::new(span, format!("{f}() takes one integer")));
            }
            let t = ctx.expr(&args[0], info)?;
            if !t.is_int() {
                return Err(Diag::new(
                    args[0].span,
                    format!("{f}() takes an integer, not {}", t.name()),
                ));
            }
            Ok(())
        };
        let kind = match f {
            "count" => {
                if !args.is_empty() {
                    return Err(Diag::new(span, "count() takes no arguments"));
                }
                MapKind::Count
            }
            "sum" | "avg" | "min" | "max" | "stats" | "hist" => {
                one_int(self, info)?;
                match f {
                    "sum" => MapKind::Sum,
                    "avg" => MapKind::Avg,
                    "min" => MapKind::Min,
                    "max" => MapKind::Max,
                    "stats" => MapKind::Stats,
                    _ => MapKind::Hist,
                }
            }
            "lhist" => {
                if args.len() != 4 {
                    return Err(Diag::new(span, "lhist() takes (value, min, max, step)"));
                }
                let t = self.expr(&args[0], info)?;
                if !t.is_int() {
                    return Err(Diag::new(args[0].span, "lhist() takes an integer value"));
                }
                let konst = |e: &Expr| match e.kind {
                    ExprKind::Int(n) => Ok(n as i64),
                    _ => Err(Diag::new(
                        e.span,
                        "lhist()'s min, max and step are integer literals",
                    )),
                };
                let (min, max, step) = (konst(&args[1])?, konst(&args[2])?, konst(&args[3])?);
                if step <= 0 || max <= min {
                    return Err(Diag::new(
                        span,
                        "lhist() needs min < max and a step above 0",
                    ));
                }
                if (max - min) / step > 1000 {
                    return Err(Diag::new(
                        span,
                        "lhist() makes more than 1000 buckets: use a larger step",
                    ));
                }
                MapKind::Lhist { min, max, step }
            }
            _ => return Ok(None),
        };
        Ok(Some(kind))
    }

    fn keys(&mut self, keys: &[Expr], info: &mut Info) -> Result<Vec<Type>, Diag> {
        keys.iter()
            .map(|k| {
                let t = self.expr(k, info)?.stored();
                match t {
                    Type::Int { .. }
                    | Type::Str(_)
                    | Type::KStack(_)
                    | Type::UStack(_)
                    | Type::Point { .. }
                    | Type::Inet
                    | Type::Sym { .. } => Ok(t),
                    other => Err(Diag::new(
                        k.span,
                        format!("a map key cannot be {}", other.name()),
                    )),
                }
            })
            .collect()
    }

    /// An expression's type, noted in `info.types` for code generation.
    fn expr(&mut self, e: &Expr, info: &mut Info) -> Result<Type, Diag> {
        let t = self.expr_type(e, info)?;
        info.types.insert(key(e.span), t.clone());
        Ok(t)
    }

    /// A record's member, from the program's definitions first, then the kernel's.
    fn member(&self, r: &RecordRef, field: &str) -> Result<Member, String> {
        if let RecordRef::Named { name, .. } = r {
            if let Some(l) = self.layouts.get(name) {
                return l
                    .members
                    .iter()
                    .find(|(n, _)| n == field)
                    .map(|(_, m)| m.clone())
                    .ok_or_else(|| format!("{} has no field named {field}", ctypes::describe(r)));
            }
        }
        self.kernel.member(r, field)
    }

    /// `base->field` / `base.field` on a pointer to a record or a record.
    fn record_field(
        &mut self,
        e: &Expr,
        base: &Type,
        field: &str,
        info: &mut Info,
    ) -> Result<Type, Diag> {
        let r = match base {
            Type::Ptr(CType::Record(r)) | Type::Record(r) => r,
            Type::Ptr(t) => {
                return Err(Diag::new(
                    e.span,
                    format!(
                        "{} * has no fields: it does not point to a struct",
                        ctype_name(t)
                    ),
                ))
            }
            t => {
                return Err(Diag::new(
                    e.span,
                    format!(
                        "{} has no fields (cast it to a struct pointer first: (struct NAME *)...)",
                        t.name()
                    ),
                ))
            }
        };
        let m = self.member(r, field).map_err(|m| Diag::new(e.span, m))?;
        let t = value_type(&m.ty).map_err(|what| {
            Diag::new(
                e.span,
                format!("{field} is {what}, which trace cannot read yet"),
            )
        })?;
        if m.bits.is_some() && !t.is_int() {
            return Err(Diag::new(
                e.span,
                format!("{field}: a bitfield that is not an integer"),
            ));
        }
        info.members.insert(key(e.span), m);
        Ok(t)
    }

    fn expr_type(&mut self, e: &Expr, info: &mut Info) -> Result<Type, Diag> {
        use Provider::*;
        Ok(match &e.kind {
            ExprKind::Int(_) => Type::S64,
            ExprKind::Str(s) => Type::Str(s.len() + 1),
            ExprKind::Var(name) if name == "#" => Type::S64,
            ExprKind::Var(name) if is_positional(name) => match positional(&self.params, name) {
                Positional::Int(_) => Type::S64,
                Positional::Str(s) => Type::Str(s.len() + 1),
            },
            ExprKind::Var(name) => self.vars.get(name).cloned().ok_or_else(|| {
                Diag::new(e.span, format!("${name} is used before it is assigned"))
            })?,
            ExprKind::Ident(name) => match name.as_str() {
                "pid" | "tid" | "uid" | "gid" | "cpu" | "rand" | "cpid" => Type::U32,
                "nsecs" | "elapsed" | "cgroup" => Type::U64,
                "curtask" => Type::Ptr(CType::Record(RecordRef::named("task_struct", false))),
                "comm" => Type::Str(16),
                "probe" => Type::Point { func: false },
                "kstack" => {
                    info.stacks.insert(0);
                    Type::KStack(0)
                }
                "ustack" => {
                    info.stacks.insert(0);
                    info.user_pids = true;
                    info.ustack = true;
                    Type::UStack(0)
                }
                "func" => {
                    self.require(e.span, name, &[Kprobe, Kretprobe, Uprobe, Uretprobe])?;
                    Type::Point { func: true }
                }
                "retval" => {
                    self.require(e.span, name, &[Kretprobe, Uretprobe])?;
                    Type::S64
                }
                "args" => {
                    self.require(e.span, name, &[Tracepoint])?;
                    Type::Args
                }
                n if n.len() == 4 && n.starts_with("arg") && n.as_bytes()[3].is_ascii_digit() => {
                    if n.as_bytes()[3] > b'5' {
                        return Err(Diag::new(e.span, "arguments go from arg0 to arg5"));
                    }
                    self.require(e.span, name, &[Kprobe, Uprobe, Usdt])?;
                    Type::U64
                }
                n => match ctypes::macro_value(n).or_else(|| self.kernel.enum_value(n)) {
                    Some(v) => {
                        info.constants.insert(key(e.span), v as u64);
                        Type::S64
                    }
                    None => return Err(Diag::new(e.span, format!("unknown identifier: {name}"))),
                },
            },
            ExprKind::Cast { ty, expr } => {
                let from = self.expr(expr, info)?;
                if !from.is_int() {
                    return Err(Diag::new(
                        expr.span,
                        format!("cannot cast {} to a number or pointer", from.name()),
                    ));
                }
                match resolve_type(ty, self.kernel, self.layouts)
                    .map_err(|m| Diag::new(e.span, m))?
                {
                    CType::Int { size, signed } => Type::Int { size, signed },
                    CType::Ptr(to) => Type::Ptr(*to),
                    other => {
                        return Err(Diag::new(
                            e.span,
                            format!(
                                "cannot cast to {} (to a pointer to it, yes)",
                                ctype_name(&other)
                            ),
                        ))
                    }
                }
            }
            ExprKind::Unary { op: "*", expr } => {
                let t = self.expr(expr, info)?;
                match t {
                    Type::Ptr(CType::Void) | Type::Int { .. } => Type::U64,
                    Type::Ptr(to) => value_type(&to).map_err(|what| {
                        Diag::new(
                            e.span,
                            format!("* reads {what}, which trace cannot read yet"),
                        )
                    })?,
                    t => {
                        return Err(Diag::new(
                            e.span,
                            format!("* cannot read through {}", t.name()),
                        ))
                    }
                }
            }
            ExprKind::Index { base, index } => {
                let t = self.expr(base, info)?;
                if !self.expr(index, info)?.is_int() {
                    return Err(Diag::new(index.span, "an index is an integer"));
                }
                let elem =
                    match &t {
                        Type::Array(elem, len) => {
                            if let ExprKind::Int(n) = index.kind {
                                if n >= *len as u64 {
                                    return Err(Diag::new(
                                        index.span,
                                        format!("index {n} is past the end of {}", t.name()),
                                    ));
                                }
                            }
                            elem.clone()
                        }
                        Type::Ptr(CType::Void) => return Err(Diag::new(
                            e.span,
                            "void * cannot be indexed: cast it to a pointer to its elements first",
                        )),
                        Type::Ptr(to) => to.clone(),
                        t => {
                            return Err(Diag::new(
                                e.span,
                                format!("{} cannot be indexed (arrays and pointers can)", t.name()),
                            ))
                        }
                    };
                let (size, _) = ctypes::size_align(&elem, self.kernel, self.layouts)
                    .map_err(|m| Diag::new(e.span, m))?;
                info.elems.insert(key(e.span), size);
                value_type(&elem).map_err(|what| {
                    Diag::new(
                        e.span,
                        format!("its elements are {what}, which trace cannot read yet"),
                    )
                })?
            }
            ExprKind::Field { base, field } => {
                let t = self.expr(base, info)?;
                if t != Type::Args {
                    return self.record_field(e, &t, field, info);
                }
                match &self.fields {
                    None => return Err(Diag::new(e.span, "this probe has no tracepoint fields")),
                    Some(fields) => {
                        let f = fields.iter().find(|f| f.name == *field).ok_or_else(|| {
                            let names: Vec<&str> = fields
                                .iter()
                                .filter(|f| !f.name.starts_with("common_"))
                                .map(|f| f.name.as_str())
                                .collect();
                            let names = if names.is_empty() {
                                "none".to_string()
                            } else {
                                names.join(", ")
                            };
                            let msg = if self.named_everywhere.contains(field) {
                                format!("the tracepoints matched all have a field {field}, but not of one type and size (name the tracepoints in separate probes)")
                            } else if self.providers.len() > 1 || self.globbed {
                                format!("the tracepoints matched have no field {field} in common (fields they share: {names})")
                            } else {
                                format!("the tracepoint has no field {field} (it has: {names})")
                            };
                            Diag::new(e.span, msg)
                        })?;
                        match &f.ty {
                            FieldType::Int { signed } => Type::Int {
                                size: f.size,
                                signed: *signed,
                            },
                            FieldType::Ptr(to) => Type::Ptr(to.clone()),
                            FieldType::Chars(n) => Type::Str(*n),
                            FieldType::Other(t) => {
                                return Err(Diag::new(
                                    e.span,
                                    format!("field {field} ({t}) cannot be read yet"),
                                ))
                            }
                        }
                    }
                }
            }
            ExprKind::Map { name, keys } => {
                let key_types = self.keys(keys, info)?;
                info.reads.push((name.clone(), e.span));
                match info.maps.get(name) {
                    Some(m) => {
                        check_keys(name, &m.keys, &key_types, e.span)?;
                        match &m.kind {
                            MapKind::Value(t) => t.clone(),
                            kind => return Err(aggregation_read(name, kind, e.span)),
                        }
                    }
                    // Read before any assignment in program order: an integer (bpftrace reads 0).
                    None => Type::S64,
                }
            }
            ExprKind::Call { name, args } => self.call(name, args, e.span, info)?,
            ExprKind::Unary { op, expr } => {
                let t = self.expr(expr, info)?;
                if !t.is_int() {
                    return Err(Diag::new(
                        e.span,
                        format!("{op} needs an integer, not {}", t.name()),
                    ));
                }
                Type::S64
            }
            ExprKind::Binary { op, lhs, rhs } => {
                let (a, b) = (
                    self.expr(lhs, info)?.stored(),
                    self.expr(rhs, info)?.stored(),
                );
                match (&a, &b) {
                    (Type::Int { .. }, Type::Int { .. }) => {
                        if matches!(*op, "==" | "!=" | "<" | "<=" | ">" | ">=" | "&&" | "||") {
                            Type::S64
                        } else {
                            let signed = matches!(a, Type::Int { signed: true, .. })
                                && matches!(b, Type::Int { signed: true, .. });
                            Type::Int { size: 8, signed }
                        }
                    }
                    (Type::Str(_), Type::Str(_)) if matches!(*op, "==" | "!=") => Type::S64,
                    _ => {
                        return Err(Diag::new(
                            e.span,
                            format!("{op} cannot take {} and {}", a.name(), b.name()),
                        ))
                    }
                }
            }
            ExprKind::Ternary { cond, then, els } => {
                let c = self.expr(cond, info)?;
                if !c.is_int() {
                    return Err(Diag::new(cond.span, "a condition must be an integer"));
                }
                let (a, b) = (self.expr(then, info)?, self.expr(els, info)?);
                if !a.compatible(&b) {
                    return Err(Diag::new(
                        e.span,
                        format!("the branches differ: {} and {}", a.name(), b.name()),
                    ));
                }
                match (a, b) {
                    (Type::Str(x), Type::Str(y)) => Type::Str(x.max(y)),
                    (a, _) => a,
                }
            }
            ExprKind::Incr { target, .. } => match &target.kind {
                ExprKind::Var(name) => {
                    let t = self.vars.get(name).cloned().ok_or_else(|| {
                        Diag::new(
                            target.span,
                            format!("${name} is used before it is assigned"),
                        )
                    })?;
                    if !t.is_int() {
                        return Err(Diag::new(target.span, "++ and -- need an integer"));
                    }
                    t
                }
                ExprKind::Map { name, keys } => {
                    let key_types = self.keys(keys, info)?;
                    declare_map(
                        info,
                        name,
                        key_types,
                        MapKind::Value(Type::S64),
                        target.span,
                    )?;
                    Type::S64
                }
                _ => {
                    return Err(Diag::new(
                        target.span,
                        "++ and -- apply to maps and variables",
                    ))
                }
            },
        })
    }

    fn call(
        &mut self,
        name: &str,
        args: &[Expr],
        span: Span,
        info: &mut Info,
    ) -> Result<Type, Diag> {
        let arity = |lo: usize, hi: usize| -> Result<(), Diag> {
            if args.len() < lo || args.len() > hi {
                return Err(Diag::new(
                    span,
                    format!("wrong number of arguments to {name}()"),
                ));
            }
            Ok(())
        };
        let map_arg = |ctx: &mut Self, info: &mut Info, keyed: bool| -> Result<(), Diag> {
            match args.first().map(|a| &a.kind) {
                Some(ExprKind::Map { name: m, keys }) if keyed || keys.is_empty() => {
                    let kt = ctx.keys(keys, info)?;
                    if let Some(known) = info.maps.get(m) {
                        if keyed {
                            check_keys(m, &known.keys, &kt, args[0].span)?;
                        }
                    }
                    Ok(())
                }
                _ => Err(Diag::new(
                    span,
                    format!(
                        "{name}() takes a map{}",
                        if keyed { " element: @m[key]" } else { ": @m" }
                    ),
                )),
            }
        };
        Ok(match name {
            "count" | "sum" | "avg" | "min" | "max" | "stats" | "hist" | "lhist" => {
                return Err(Diag::new(
                    span,
                    format!("{name}() can only be assigned to a map: @x = {name}(...)"),
                ))
            }
            // system(): a printf whose text is a command, run by user space (--unsafe).
            "printf" | "system" => {
                let fmt = match args.first().map(|a| &a.kind) {
                    Some(ExprKind::Str(s)) => s.clone(),
                    _ => {
                        return Err(Diag::new(
                            span,
                            format!("{name}() takes a format string first"),
                        ))
                    }
                };
                let mut types = Vec::new();
                for a in &args[1..] {
                    types.push((self.expr(a, info)?, a.span));
                }
                check_printf(&fmt, &types, span)?;
                if name == "system" {
                    info.unsafe_calls.push((name.to_string(), span));
                }
                Type::None
            }
            "strftime" => {
                arity(2, 2)?;
                let format = literal(
                    &args[0],
                    "strftime() takes a format string (strftime's, and %f)",
                )?;
                if !self.expr(&args[1], info)?.is_int() {
                    return Err(Diag::new(
                        args[1].span,
                        "strftime() takes nanoseconds (nsecs)",
                    ));
                }
                Type::Strftime(format.to_string())
            }
            "signal" => {
                arity(1, 1)?;
                let sig = match &args[0].kind {
                    ExprKind::Str(n) => signal_number(n),
                    ExprKind::Int(n) if (1..=64).contains(n) => Some(*n as i32),
                    _ => None,
                }
                .ok_or_else(|| Diag::new(args[0].span, "signal() takes a signal's name (\"SIGKILL\", \"KILL\") or number (1 to 64)"))?;
                info.constants.insert(key(span), sig as u64);
                info.unsafe_calls.push((name.to_string(), span));
                Type::None
            }
            "cgroupid" => {
                arity(1, 1)?;
                let path = literal(&args[0], "cgroupid() takes a cgroup's path in quotes")?;
                use std::os::unix::fs::MetadataExt;
                let id = std::fs::metadata(path)
                    .map_err(|e| Diag::new(args[0].span, format!("cgroupid(): {path}: {e}")))?
                    .ino();
                info.constants.insert(key(span), id);
                Type::U64
            }
            "reg" => {
                arity(1, 1)?;
                use Provider::*;
                self.require(span, name, &[Kprobe, Kretprobe, Uprobe, Uretprobe, Usdt])?;
                let off = match &args[0].kind {
                    ExprKind::Str(r) => register_offset(r),
                    _ => None,
                }
                .ok_or_else(|| {
                    Diag::new(
                        args[0].span,
                        "reg() takes an x86-64 register's name (\"ip\", \"sp\", \"di\"...)",
                    )
                })?;
                info.constants.insert(key(span), off as u64);
                Type::U64
            }
            "macaddr" => {
                arity(1, 1)?;
                match self.expr(&args[0], info)? {
                    t if t.is_int() => {}
                    Type::Str(n) if n >= 6 => {}
                    t => {
                        return Err(Diag::new(
                            args[0].span,
                            format!("macaddr() takes 6 bytes or their address, not {}", t.name()),
                        ))
                    }
                }
                Type::Mac
            }
            "kaddr" => {
                arity(1, 1)?;
                let sym = literal(&args[0], "kaddr() takes a symbol's name in quotes")?;
                let addr = self.kernel.symbol(sym).ok_or_else(|| {
                    Diag::new(
                        args[0].span,
                        format!("no kernel symbol {sym} (/proc/kallsyms)"),
                    )
                })?;
                info.constants.insert(key(span), addr);
                Type::U64
            }
            "str" => {
                arity(1, 2)?;
                let t = self.expr(&args[0], info)?;
                if !t.is_int() && !matches!(t, Type::Str(_)) {
                    return Err(Diag::new(args[0].span, "str() takes an address"));
                }
                if let Some(n) = args.get(1) {
                    let nt = self.expr(n, info)?;
                    let negative = matches!(&n.kind, ExprKind::Unary { op: "-", .. });
                    if !nt.is_int() || negative {
                        return Err(Diag::new(
                            n.span,
                            "str()'s length is a non-negative integer",
                        ));
                    }
                }
                Type::Str(64)
            }
            "ksym" | "usym" => {
                arity(1, 1)?;
                if !self.expr(&args[0], info)?.is_int() {
                    return Err(Diag::new(
                        args[0].span,
                        format!("{name}() takes an address"),
                    ));
                }
                info.user_pids |= name == "usym";
                Type::Sym {
                    user: name == "usym",
                }
            }
            "exit" => {
                arity(0, 0)?;
                Type::None
            }
            "ntop" => {
                arity(1, 2)?;
                if args.len() == 2 {
                    let af = self.expr(&args[0], info)?;
                    if !af.is_int() {
                        return Err(Diag::new(
                            args[0].span,
                            "ntop()'s family is an integer (AF_INET, AF_INET6)",
                        ));
                    }
                }
                let a = args.last().expect("one argument at least");
                match self.expr(a, info)? {
                    t if t.is_int() => {}
                    Type::Str(4 | 16) => {}
                    t => {
                        return Err(Diag::new(
                            a.span,
                            format!("ntop() takes an IPv4 address (an integer, or 4 bytes) or 16 bytes of IPv6, not {}", t.name()),
                        ))
                    }
                }
                Type::Inet
            }
            "bswap" => {
                arity(1, 1)?;
                match self.expr(&args[0], info)?.stored() {
                    Type::Int { size, .. } => Type::Int {
                        size,
                        signed: false,
                    },
                    t => {
                        return Err(Diag::new(
                            args[0].span,
                            format!("bswap() takes an integer, not {}", t.name()),
                        ))
                    }
                }
            }
            "buf" => {
                arity(1, 2)?;
                let t = self.expr(&args[0], info)?;
                if !t.is_int() && !matches!(t, Type::Str(_)) {
                    return Err(Diag::new(args[0].span, "buf() takes an address"));
                }
                if let Some(n) = args.get(1) {
                    if !self.expr(n, info)?.is_int() {
                        return Err(Diag::new(n.span, "buf()'s length is an integer"));
                    }
                }
                Type::Buf(STR_BYTES)
            }
            "cat" => {
                arity(1, 1)?;
                literal(&args[0], "cat() takes a file's path in quotes")?;
                Type::None
            }
            "join" => {
                arity(1, 2)?;
                let t = self.expr(&args[0], info)?;
                if !t.is_int() {
                    return Err(Diag::new(
                        args[0].span,
                        format!(
                            "join() takes an array of string pointers (char **), not {}",
                            t.name()
                        ),
                    ));
                }
                if let Some(d) = args.get(1) {
                    if !matches!(d.kind, ExprKind::Str(_)) {
                        return Err(Diag::new(d.span, "join()'s delimiter is a string literal"));
                    }
                }
                Type::None
            }
            "time" => {
                arity(0, 1)?;
                if let Some(a) = args.first() {
                    if !matches!(a.kind, ExprKind::Str(_)) {
                        return Err(Diag::new(
                            a.span,
                            "time() takes a format string (strftime's)",
                        ));
                    }
                }
                Type::None
            }
            "kstack" | "ustack" => {
                arity(0, 1)?;
                let limit = match args.first().map(|a| &a.kind) {
                    None => 0,
                    Some(ExprKind::Int(n)) if (1..=127).contains(n) => *n as usize,
                    _ => {
                        return Err(Diag::new(
                            span,
                            format!("{name}() takes a frame limit from 1 to 127"),
                        ))
                    }
                };
                info.stacks.insert(limit);
                info.user_pids |= name == "ustack";
                info.ustack |= name == "ustack";
                if name == "kstack" {
                    Type::KStack(limit)
                } else {
                    Type::UStack(limit)
                }
            }
            "delete" => {
                arity(1, 1)?;
                map_arg(self, info, true)?;
                Type::None
            }
            "clear" | "zero" => {
                arity(1, 1)?;
                map_arg(self, info, false)?;
                Type::None
            }
            "print" => {
                // print(@m, top, div): its `top` largest entries (0: all), values divided by `div`.
                arity(1, 3)?;
                map_arg(self, info, false)?;
                if let Some(top) = args.get(1) {
                    if !matches!(top.kind, ExprKind::Int(n) if n <= 0xffff) {
                        return Err(Diag::new(
                            top.span,
                            "print()'s second argument is a number of entries: an integer up to 65535",
                        ));
                    }
                }
                if let Some(div) = args.get(2) {
                    if !matches!(div.kind, ExprKind::Int(n) if n >= 1) {
                        return Err(Diag::new(
                            div.span,
                            "print()'s third argument is a divisor: an integer of 1 or more",
                        ));
                    }
                }
                if let (ExprKind::Map { name, .. }, true) = (&args[0].kind, args.len() > 1) {
                    info.sized_prints.push((name.clone(), span));
                }
                Type::None
            }
            _ => return Err(Diag::new(span, format!("unknown function: {name}()"))),
        })
    }
}

/// `$1`, `$2`...: a positional parameter.
pub fn is_positional(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit())
}

/// A positional parameter's value.
pub enum Positional {
    Int(i64),
    Str(String),
}

/// The value of `$N`: an integer where the parameter is one (decimal or 0x hex), else a string; 0 where
/// it was not given (as bpftrace).
pub fn positional(params: &[String], name: &str) -> Positional {
    let n: usize = name.parse().unwrap_or(0);
    let Some(p) = n.checked_sub(1).and_then(|i| params.get(i)) else {
        return Positional::Int(0);
    };
    let int = match p.strip_prefix("0x") {
        Some(h) => i64::from_str_radix(h, 16).ok(),
        None => p.parse().ok(),
    };
    match int {
        Some(v) => Positional::Int(v),
        None => Positional::Str(p.clone()),
    }
}

/// The error for reading an aggregation in a probe (bpftrace refuses it too).
fn aggregation_read(name: &str, kind: &MapKind, span: Span) -> Diag {
    Diag::new(
        span,
        format!(
            "@{name} holds {}: an aggregation is kept per CPU and can only be printed, not read in a probe",
            kind_name(kind)
        ),
    )
}

/// A map kind as a user writes it.
fn kind_name(k: &MapKind) -> String {
    match k {
        MapKind::Value(t) => format!("a value of type {}", t.name()),
        MapKind::Count => "count()".into(),
        MapKind::Sum => "sum()".into(),
        MapKind::Avg => "avg()".into(),
        MapKind::Min => "min()".into(),
        MapKind::Max => "max()".into(),
        MapKind::Stats => "stats()".into(),
        MapKind::Hist => "hist()".into(),
        MapKind::Lhist { .. } => "lhist()".into(),
    }
}

fn check_keys(name: &str, known: &[Type], used: &[Type], span: Span) -> Result<(), Diag> {
    if known.len() != used.len() || known.iter().zip(used).any(|(a, b)| !a.compatible(b)) {
        let show = |ts: &[Type]| ts.iter().map(Type::name).collect::<Vec<_>>().join(", ");
        return Err(Diag::new(
            span,
            format!(
                "@{name} is keyed by [{}], not [{}]",
                show(known),
                show(used)
            ),
        ));
    }
    Ok(())
}

fn declare_map(
    info: &mut Info,
    name: &str,
    keys: Vec<Type>,
    kind: MapKind,
    span: Span,
) -> Result<(), Diag> {
    match info.maps.get(name) {
        None => {
            info.maps
                .insert(name.to_string(), MapInfo { keys, kind, span });
            Ok(())
        }
        Some(m) => {
            check_keys(name, &m.keys, &keys, span)?;
            let same = match (&m.kind, &kind) {
                (MapKind::Value(a), MapKind::Value(b)) => a.compatible(b),
                (a, b) => a == b,
            };
            if !same {
                return Err(Diag::new(
                    span,
                    format!(
                        "@{name} already holds {}; it cannot also hold {}",
                        kind_name(&m.kind),
                        kind_name(&kind)
                    ),
                ));
            }
            Ok(())
        }
    }
}

/// Checks printf's verbs against its arguments: %d %i %u %x %X %o (integers, with l/ll/h/hh), %s (strings,
/// symbols), %c, %p, %%; flags and widths allowed.
fn check_printf(fmt: &str, args: &[(Type, Span)], span: Span) -> Result<(), Diag> {
    let mut verbs = Vec::new();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            continue;
        }
        while let Some(&n) = chars.peek() {
            if "-+ #0123456789.lhz".contains(n) {
                chars.next();
            } else {
                break;
            }
        }
        match chars.next() {
            Some('%') => {}
            Some(v @ ('d' | 'i' | 'u' | 'x' | 'X' | 'o' | 'c' | 'p' | 's' | 'r')) => verbs.push(v),
            Some(v) => return Err(Diag::new(span, format!("printf: unknown verb %{v}"))),
            None => return Err(Diag::new(span, "printf: a format ends with %")),
        }
    }
    if verbs.len() != args.len() {
        return Err(Diag::new(
            span,
            format!(
                "printf: the format has {} verbs and {} arguments follow it",
                verbs.len(),
                args.len()
            ),
        ));
    }
    for (v, (t, s)) in verbs.iter().zip(args) {
        let ok = match v {
            's' => matches!(
                t,
                Type::Str(_)
                    | Type::Sym { .. }
                    | Type::KStack(_)
                    | Type::UStack(_)
                    | Type::Point { .. }
                    | Type::Inet
                    | Type::Mac
                    | Type::Strftime(_)
            ),
            'r' => matches!(t, Type::Buf(_) | Type::Str(_)),
            _ => t.is_int(),
        };
        if !ok {
            return Err(Diag::new(
                *s,
                format!("printf: %{v} does not take {}", t.name()),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::parser::parse;
    use super::super::tpformat::parse_format;
    use super::*;

    /// Two tracepoints' formats, as tracefs would give them.
    struct Fake;

    impl TracepointSource for Fake {
        fn fields(&self, category: &str, event: &str) -> anyhow::Result<Vec<Field>> {
            let text = match (category, event) {
                ("syscalls", "sys_enter_openat") => {
                    "\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;\n\
                     \tfield:const char * filename;\toffset:24;\tsize:8;\tsigned:0;\n"
                }
                ("syscalls", "sys_exit_read") => {
                    "\tfield:long ret;\toffset:16;\tsize:8;\tsigned:1;\n"
                }
                ("sched", "sched_switch") => {
                    "\tfield:char prev_comm[16];\toffset:8;\tsize:16;\tsigned:0;\n"
                }
                _ => anyhow::bail!("no tracepoint {category}:{event}"),
            };
            parse_format(text)
        }

        fn expand(&self, category: &str, event: &str) -> anyhow::Result<Vec<(String, String)>> {
            Ok(match (category, event) {
                ("syscalls", "sys_*") => vec![
                    ("syscalls".into(), "sys_enter_openat".into()),
                    ("syscalls".into(), "sys_exit_read".into()),
                ],
                _ => vec![],
            })
        }

        fn kernel_types(&self) -> &dyn KernelTypes {
            &FakeTypes
        }
    }

    /// struct task_struct { int ids[2] @0; int pid @8; char comm[16] @16; struct task_struct
    /// *real_parent @32; unsigned int flags:3 @40 bit 2; }, 48 bytes; enum { FAKE_CONST = 7 }.
    struct FakeTypes;

    impl KernelTypes for FakeTypes {
        fn member(&self, record: &RecordRef, field: &str) -> Result<Member, String> {
            if *record != RecordRef::named("task_struct", false) {
                return Err(format!("the kernel has no {}", ctypes::describe(record)));
            }
            let (offset, bits, ty) = match field {
                "pid" => (
                    8,
                    None,
                    CType::Int {
                        size: 4,
                        signed: true,
                    },
                ),
                "comm" => (16, None, CType::Chars(16)),
                "ids" => (
                    0,
                    None,
                    CType::Array {
                        elem: Box::new(CType::Int {
                            size: 4,
                            signed: true,
                        }),
                        len: 2,
                    },
                ),
                "real_parent" => (
                    32,
                    None,
                    CType::Ptr(Box::new(CType::Record(record.clone()))),
                ),
                "flags" => (
                    40,
                    Some((2, 3)),
                    CType::Int {
                        size: 4,
                        signed: false,
                    },
                ),
                _ => return Err(format!("struct task_struct has no field named {field}")),
            };
            Ok(Member { offset, bits, ty })
        }
        fn size_of(&self, record: &RecordRef) -> Result<usize, String> {
            match record {
                RecordRef::Named { name, .. } if name == "task_struct" => Ok(48),
                r => Err(format!("the kernel has no {}", ctypes::describe(r))),
            }
        }
        fn typedef(&self, _: &str) -> Option<CType> {
            None
        }
        fn enum_value(&self, name: &str) -> Option<i64> {
            (name == "FAKE_CONST").then_some(7)
        }
        fn symbol(&self, _: &str) -> Option<u64> {
            None
        }
    }

    #[test]
    fn casts_and_struct_members_are_typed_from_kernel_and_program_types() {
        let src = "struct mine { char a; struct task_struct t; long b; };\n\
                   k:f { $t = (struct task_struct *)arg0; @[$t->real_parent->comm] = count(); \
                   @p = $t->real_parent->pid + $t->flags; @c = curtask->pid; \
                   @m = ((struct mine *)arg1)->t.comm; @n = ((struct mine *)arg1)->b; \
                   @k = TASK_RUNNING + FAKE_CONST; @i = (int8)arg2; }";
        let program = parse(src).unwrap();
        let info = check(&program, &Fake).unwrap();
        let member = |text: &str| {
            let at = src.find(text).unwrap();
            info.members[&(at, at + text.len())].clone()
        };
        assert_eq!(member("$t->real_parent->comm").offset, 16);
        assert_eq!(member("$t->flags").bits, Some((2, 3)));
        // The program's struct, laid out by C's rules: t after a char, aligned to 8; b after t's 48 bytes.
        assert_eq!(member("(struct mine *)arg1)->t").offset, 8);
        assert_eq!(member("(struct mine *)arg1)->b").offset, 56);
        assert_eq!(info.maps["m"].kind, MapKind::Value(Type::Str(16)));
        assert_eq!(info.maps[""].keys, vec![Type::Str(16)]);
        assert_eq!(
            info.maps["c"].kind,
            MapKind::Value(Type::Int {
                size: 4,
                signed: true
            })
        );
        assert_eq!(
            info.maps["i"].kind,
            MapKind::Value(Type::Int {
                size: 1,
                signed: true
            })
        );
        let at = src.find("TASK_RUNNING").unwrap();
        assert_eq!(info.constants[&(at, at + 12)], 0);
        let at = src.find("FAKE_CONST").unwrap();
        assert_eq!(info.constants[&(at, at + 10)], 7);
    }

    #[test]
    fn struct_errors_say_what_is_missing() {
        let e = err("k:f { @ = arg0->pid; }");
        assert!(
            e.contains("uint64 has no fields (cast it to a struct pointer first"),
            "{e}"
        );
        let e = err("k:f { @ = ((struct task_struct *)arg0)->nope; }");
        assert!(
            e.contains("struct task_struct has no field named nope"),
            "{e}"
        );
        let e = err("k:f { @ = ((struct sock *)arg0)->sk; }");
        assert!(e.contains("the kernel has no struct sock"), "{e}");
        let e = err("k:f { @ = (struct task_struct)arg0; }");
        assert!(e.contains("cannot cast to struct task_struct"), "{e}");
        let e = err("k:f { @ = ((struct task_struct *)arg0)->real_parent->comm->x; }");
        assert!(e.contains("string[16] has no fields"), "{e}");
        let e = err("k:f { @ = NO_SUCH_CONSTANT; }");
        assert!(e.contains("unknown identifier: NO_SUCH_CONSTANT"), "{e}");
    }

    #[test]
    fn indexes_read_elements_of_arrays_and_pointers() {
        let src =
            "k:f { $t = (struct task_struct *)arg0; @a = $t->ids[1]; @b = ((int16 *)arg1)[3]; \
                   @c = $t->real_parent->ids[$t->pid]; }";
        let info = ok(src);
        let elem = |text: &str| {
            let at = src.find(text).unwrap();
            info.elems[&(at, at + text.len())]
        };
        assert_eq!(elem("$t->ids[1]"), 4);
        // A parenthesized operand spans from its own start.
        assert_eq!(elem("(int16 *)arg1)[3]"), 2);
        let int = |size, signed| MapKind::Value(Type::Int { size, signed });
        assert_eq!(info.maps["a"].kind, int(4, true));
        assert_eq!(info.maps["b"].kind, int(2, true));
        assert_eq!(info.maps["c"].kind, int(4, true));
        let e = err("k:f { @ = ((struct task_struct *)arg0)->ids[2]; }");
        assert!(e.contains("index 2 is past the end of int32[2]"), "{e}");
        let e = err("k:f { @ = arg0[1]; }");
        assert!(e.contains("uint64 cannot be indexed"), "{e}");
        let e = err("k:f { $i = ((struct task_struct *)arg0)->ids; }");
        assert!(e.contains("this has no value to assign"), "{e}");
    }

    #[test]
    fn globbed_tracepoints_have_the_fields_they_share() {
        let i = ok("t:syscalls:sys_* { @[probe] = count(); }");
        assert_eq!(i.args[0].as_ref().map(Vec::len), Some(0));
        let e = err("t:syscalls:sys_* { @ = args->ret; }");
        assert!(
            e.contains("no field ret in common (fields they share: none)"),
            "{e}"
        );
        assert!(err("t:none:x* { }").contains("no tracepoint matches"));
    }

    fn ok(src: &str) -> Info {
        let p = parse(src).unwrap_or_else(|d| panic!("{}", d.render("stdin", src)));
        check(&p, &Fake).unwrap_or_else(|d| panic!("{}", d.render("stdin", src)))
    }

    fn err(src: &str) -> String {
        let p = parse(src).unwrap_or_else(|d| panic!("{}", d.render("stdin", src)));
        match check(&p, &Fake) {
            Ok(_) => panic!("accepted: {src}"),
            Err(d) => d.render("stdin", src),
        }
    }

    /// print()'s top/div on a stats() map warns (bpftrace's WARNING), wherever the stats() assignment
    /// is in the program; on other maps, and without them, nothing.
    #[test]
    fn print_sizes_on_stats_maps_warn_whichever_comes_first() {
        for src in [
            "BEGIN { @s = stats(1); print(@s, 2); }",
            "BEGIN { print(@s, 0, 2); } END { @s = stats(1); }",
        ] {
            let w = ok(src).warnings;
            assert_eq!(w.len(), 1, "{src}");
            assert!(w[0]
                .render("stdin", src)
                .contains("ignored when used on stats() maps"));
        }
        for src in [
            "BEGIN { print(@c, 2); } END { @c = count(); }",
            "BEGIN { @s = stats(1); print(@s); }",
        ] {
            assert!(ok(src).warnings.is_empty(), "{src}");
        }
    }

    #[test]
    fn the_issues_one_liners_check() {
        ok(
            r#"tracepoint:syscalls:sys_enter_openat { printf("%s %s\n", comm, str(args->filename)); }"#,
        );
        let i = ok("t:syscalls:sys_exit_read { @[comm] = hist(args->ret); }");
        assert_eq!(i.maps[""].kind, MapKind::Hist);
        assert_eq!(i.maps[""].keys, vec![Type::Str(16)]);
        ok("kprobe:vfs_* { @[func] = count(); }");
        ok("k:vfs_read { @start[tid] = nsecs; } kr:vfs_read /@start[tid]/ { @ns = hist(nsecs - @start[tid]); delete(@start[tid]); }");
        ok(r#"uretprobe:/bin/bash:readline { printf("%s\n", str(retval)); }"#);
        ok("k:do_nanosleep /pid > 100/ { @[comm]++; }");
        ok("kr:vfs_read { @ = hist(retval); }");
        let i = ok("profile:hz:99 { @[kstack, ustack, comm] = count(); }");
        assert_eq!(
            i.maps[""].keys,
            vec![Type::KStack(0), Type::UStack(0), Type::Str(16)]
        );
        let i = ok("tracepoint:sched:sched_switch { @[args->prev_comm] = count(); } interval:s:5 { exit(); }");
        assert_eq!(i.maps[""].keys, vec![Type::Str(16)]);
        let i = ok("k:f { @l = lhist(arg0, 0, 100, 10); @s = stats(arg1); $x = 1; $x++; if ($x > 1) { @m[$x] = $x; } }");
        assert_eq!(
            i.maps["l"].kind,
            MapKind::Lhist {
                min: 0,
                max: 100,
                step: 10
            }
        );
    }

    #[test]
    fn errors_point_at_what_is_wrong() {
        assert!(err("t:sched:sched_switch { @ = retval; }")
            .contains("retval does not exist in this probe's type"));
        assert!(err("k:f { @ = args->x; }").contains("the builtin args does not exist"));
        let e = err("t:syscalls:sys_exit_read { @ = args->nope; }");
        assert!(e.contains("no field nope (it has: ret)"), "{e}");
        assert!(err("t:x:y { }").contains("no tracepoint x:y"));
        assert!(err("k:f { @x[pid] = 1; @x[comm] = 2; }")
            .contains("@x is keyed by [uint32], not [string[16]]"));
        assert!(err("k:f { @x = count(); @x = hist(1); }")
            .contains("already holds count(); it cannot also hold hist()"));
        assert!(err("BEGIN { @x = @never; }").contains("@never is read but never assigned"));
        assert!(err("BEGIN { @c = count(); @y = @c + 1; }")
            .contains("@c holds count(): an aggregation is kept per CPU"));
        assert!(err("BEGIN { @y = @h; } END { @h = hist(1); }")
            .contains("@h holds hist(): an aggregation"));
        assert!(err(r#"k:f { printf("%d %d\n", pid); }"#).contains("2 verbs and 1 arguments"));
        assert!(err(r#"k:f { printf("%d\n", comm); }"#).contains("%d does not take string[16]"));
        assert!(err("k:f { $y = $z; }").contains("$z is used before it is assigned"));
        assert!(err("k:f { count(); }").contains("can only be assigned to a map"));
        assert!(err("k:f { @ = nosuch; }").contains("unknown identifier: nosuch"));
        assert!(err("k:f { @ = frob(1); }").contains("unknown function: frob()"));
        assert!(err("k:f { @ = comm + 1; }").contains("+ cannot take string[16] and int64"));
        assert!(err("k:f { @ = lhist(1, 10, 5, 1); }").contains("min < max"));
        assert!(err("k:f { @ = arg9; }").contains("arg0 to arg5"));
        let e = err("BEGIN { @x = 1; }\nk:f { @y = @x + comm; }");
        assert!(e.starts_with("stdin:2:12-"), "{e}");
    }
}
