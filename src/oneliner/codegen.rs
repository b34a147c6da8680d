//! Code generation: one BPF program per probe, from the checked syntax tree. Every intermediate value lives
//! in an 8-byte stack slot (strings and keys in longer buffers): the code is longer than a register
//! allocator's, but simple to get right and easy on the verifier. r9 keeps the context pointer.
use anyhow::{bail, Context, Result};

use super::ast::*;
use super::insn::{Alu, Asm, Cond, Insn, Reg, Size, FP, R0, R1, R2, R3, R4, R5, R6, R7, R9};
use super::maps::{
    raw_fd, size_of, Maps, KEY_ON_STACK, KEY_SLOTS, LOST_RECORDS, LOST_STACKS, SCRATCH_BYTES,
    STACK_DEPTH,
};
use super::points::{How, Point};
use super::sema::{self, is_positional, positional, Info, MapKind, Positional, Type};
use super::tpformat::{Field, FieldType};
use super::usdt::{Loc, UsdtArg, ARG_REGS, RET_REG};
use crate::render::hist::LOG2_LEN;

const HELPER_MAP_LOOKUP: u32 = libbpf_sys::BPF_FUNC_map_lookup_elem;
const HELPER_MAP_UPDATE: u32 = libbpf_sys::BPF_FUNC_map_update_elem;
const HELPER_MAP_DELETE: u32 = libbpf_sys::BPF_FUNC_map_delete_elem;
const HELPER_KTIME: u32 = libbpf_sys::BPF_FUNC_ktime_get_ns;
const HELPER_CPU: u32 = libbpf_sys::BPF_FUNC_get_smp_processor_id;
const HELPER_PID_TGID: u32 = libbpf_sys::BPF_FUNC_get_current_pid_tgid;
const HELPER_UID_GID: u32 = libbpf_sys::BPF_FUNC_get_current_uid_gid;
const HELPER_COMM: u32 = libbpf_sys::BPF_FUNC_get_current_comm;
const HELPER_READ_KERNEL: u32 = libbpf_sys::BPF_FUNC_probe_read_kernel;
const HELPER_READ_USER_STR: u32 = libbpf_sys::BPF_FUNC_probe_read_user_str;
const HELPER_READ_KERNEL_STR: u32 = libbpf_sys::BPF_FUNC_probe_read_kernel_str;
const HELPER_RINGBUF_OUTPUT: u32 = libbpf_sys::BPF_FUNC_ringbuf_output;
const HELPER_READ_USER: u32 = libbpf_sys::BPF_FUNC_probe_read_user;
const HELPER_COOKIE: u32 = libbpf_sys::BPF_FUNC_get_attach_cookie;
const HELPER_STACKID: u32 = libbpf_sys::BPF_FUNC_get_stackid;
const HELPER_TASK: u32 = libbpf_sys::BPF_FUNC_get_current_task;
const HELPER_CGROUP: u32 = libbpf_sys::BPF_FUNC_get_current_cgroup_id;
const HELPER_RAND: u32 = libbpf_sys::BPF_FUNC_get_prandom_u32;
const HELPER_SEND_SIGNAL: u32 = libbpf_sys::BPF_FUNC_send_signal;
/// bpf_get_stackid's flag for the user stack.
const BPF_F_USER_STACK: i32 = 1 << 8;

/// Bytes str() reads.
pub const STR_LEN: usize = 64;
/// The first word of a ring-buffer record: a printf's index, or one of these.
pub const RECORD_EXIT: u64 = u64::MAX;
/// print(@m), clear(@m), zero(@m): this, plus the operation << 32, plus the map's index; print(@m, top)
/// also top << 40 (16 bits).
pub const RECORD_MAP_OP: u64 = 1 << 62;
pub const MAP_OP_PRINT: u64 = 0;
pub const MAP_OP_CLEAR: u64 = 1;
pub const MAP_OP_ZERO: u64 = 2;
/// A process whose user stacks or symbols were taken for the first time: this plus its pid.
pub const RECORD_PID: u64 = 1 << 61;

/// What a probe's program needs to know about where it runs.
pub struct ProbeEnv<'a> {
    /// Its concrete attach points, and the run-wide index of the first (the others follow): the BPF
    /// cookie each point is attached with.
    pub points: &'a [Point],
    pub first_point: u64,
    /// ktime when tracing began (`elapsed`).
    pub start_ns: u64,
    /// The -c command's pid (`cpid`).
    pub cpid: Option<u32>,
    /// Positional parameters ($1...).
    pub params: &'a [String],
    /// User stacks are walked by the linked subprogram of ustack.rs (unwind tables), not bpf_get_stackid.
    pub unwound_ustack: bool,
    /// The tracepoint's own fields, where the probe's tracepoints hold them at different places (one
    /// program per tracepoint); else the probe's (Info::args).
    pub fields: Option<&'a [Field]>,
}

impl ProbeEnv<'_> {
    /// Whether the program reads its cookie (it tells its points apart at run time).
    pub fn needs_cookie(&self, program: &[Insn]) -> bool {
        program
            .iter()
            .any(|i| i.code == 0x85 && i.imm == HELPER_COOKIE as i32)
    }
}

/// A printf's format and the layout of its arguments in its record (after the 8-byte index).
#[derive(Clone, Debug)]
pub struct PrintfSpec {
    pub format: String,
    pub args: Vec<Type>,
    pub kind: RecordKind,
}

/// What a printf-like record prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    Printf,
    /// time(): `format` is strftime's, of the local time when user space reads the record (as
    /// bpftrace, whose time() is also printed then).
    Time,
    /// join(): the record's strings up to the first empty one, `format` between them, and a newline.
    Join,
    /// cat(): the file at the path `format`, printed when user space reads the record.
    Cat,
    /// system(): `format` and the arguments make a command, run by sh when user space reads the record.
    System,
}

/// join(): the most strings it reads from the array (bpftrace's default), each of STR_LEN bytes at most.
pub const JOIN_ARGS: usize = 16;

/// A value on the stack: an integer in an 8-byte slot, or a buffer of bytes (strings).
#[derive(Clone, Copy, Debug)]
enum Val {
    Int(i16),
    Buf(i16, usize),
}

impl Val {
    /// Where it starts on the stack.
    fn off(self) -> i16 {
        match self {
            Val::Int(o) | Val::Buf(o, _) => o,
        }
    }
}

struct Gen<'a> {
    asm: Asm,
    maps: &'a Maps,
    info: &'a Info,
    fields: Option<&'a [Field]>,
    /// The lowest stack offset in use (offsets are negative from r10).
    sp: i16,
    /// Variables: their slots.
    vars: Vec<(String, Val)>,
    printfs: &'a mut Vec<PrintfSpec>,
    exit: super::insn::Label,
    env: &'a ProbeEnv<'a>,
    /// The enclosing while loops: where `continue` and `break` jump.
    loops: Vec<(super::insn::Label, super::insn::Label)>,
    /// Slots of Maps::keys taken by this probe's keys.
    key_slots: u32,
}

/// Where a map's key was built.
#[derive(Clone, Copy)]
enum KeyAt {
    /// At this stack offset.
    Stack(i16),
    /// In a slot of Maps::keys (this per-CPU array's fd) of its own.
    Buffer { fd: i32, slot: i32 },
}

/// Whether statements end in a break or continue (code after them is unreachable).
fn jumps_away(stmts: &[Stmt]) -> bool {
    matches!(
        stmts.last().map(|s| &s.kind),
        Some(StmtKind::Break | StmtKind::Continue)
    )
}

/// Generates the program of probe `index`.
pub fn probe_program(
    probe: &Probe,
    index: usize,
    info: &Info,
    maps: &Maps,
    printfs: &mut Vec<PrintfSpec>,
    env: &ProbeEnv,
) -> Result<Vec<Insn>> {
    let mut asm = Asm::new();
    let exit = asm.label();
    let mut g = Gen {
        asm,
        maps,
        info,
        fields: env
            .fields
            .or_else(|| info.args.get(index).and_then(|f| f.as_deref())),
        sp: 0,
        vars: Vec::new(),
        printfs,
        exit,
        env,
        loops: Vec::new(),
        key_slots: 0,
    };
    g.asm.mov_reg(R9, R1);
    // Probes stop when user space says so (END, which runs after, does not check).
    if !matches!(probe.attach[0].kind, Attach::End) {
        g.asm.ld_map_value(R1, raw_fd(&maps.stop), 0);
        g.asm.load(Size::DW, R0, R1, 0);
        g.asm.jmp_imm(Cond::Ne, R0, 0, g.exit);
    }
    if let Some(pred) = &probe.pred {
        let v = g.expr(pred)?;
        let v = g.truthy(v)?;
        g.load_int(R0, v);
        g.asm.jmp_imm(Cond::Eq, R0, 0, g.exit);
    }
    g.stmts(&probe.body)?;
    g.asm.bind(g.exit);
    g.asm.mov_imm(R0, 0);
    g.asm.exit();
    g.asm.finish()
}

impl Gen<'_> {
    /// A new stack area of `bytes` (rounded up to 8).
    fn alloc(&mut self, bytes: usize) -> Result<i16> {
        let bytes = bytes.div_ceil(8) * 8;
        let sp = self.sp as i64 - bytes as i64;
        if sp < -512 {
            bail!(
                "the probe needs more than the 512 bytes of stack a BPF program has: simplify it"
            );
        }
        self.sp = sp as i16;
        Ok(self.sp)
    }

    fn zero(&mut self, off: i16, bytes: usize) {
        for i in (0..bytes).step_by(8) {
            self.asm.store_imm(Size::DW, FP, off + i as i16, 0);
        }
    }

    fn load_int(&mut self, r: Reg, v: Val) {
        if let Val::Int(off) = v {
            self.asm.load(Size::DW, r, FP, off);
        }
    }

    fn int_slot_from(&mut self, r: Reg) -> Result<Val> {
        let off = self.alloc(8)?;
        self.asm.store_reg(Size::DW, FP, off, r);
        Ok(Val::Int(off))
    }

    fn addr(&mut self, r: Reg, off: i16) {
        self.asm.mov_reg(r, FP);
        self.asm.alu_imm(Alu::Add, r, off as i32);
    }

    fn stmts(&mut self, stmts: &[Stmt]) -> Result<()> {
        for s in stmts {
            let mark = self.sp;
            self.stmt(s)?;
            // Statement temporaries are free again, down to the lowest variable slot.
            let lowest = self.vars.iter().map(|(_, v)| v.off()).min().unwrap_or(0);
            self.sp = mark.min(lowest);
        }
        Ok(())
    }

    fn stmt(&mut self, s: &Stmt) -> Result<()> {
        match &s.kind {
            StmtKind::Expr(e) => {
                self.expr(e)?;
            }
            StmtKind::Assign { target, op, value } => self.assign(target, *op, value)?,
            StmtKind::While { cond, body } => {
                let body_stmts = body;
                let (top, end) = (self.asm.label(), self.asm.label());
                self.asm.bind(top);
                let mark = self.sp;
                let c = self.expr(cond)?;
                self.load_int(R0, c);
                if self.vars.iter().all(|(_, v)| v.off() >= mark) {
                    self.sp = mark;
                }
                self.asm.jmp_imm(Cond::Eq, R0, 0, end);
                self.loops.push((top, end));
                let body = self.stmts(body);
                self.loops.pop();
                body?;
                if !jumps_away(body_stmts) {
                    self.asm.ja(top);
                }
                self.asm.bind(end);
            }
            StmtKind::Unroll { n, body } => {
                for _ in 0..*n {
                    self.stmts(body)?;
                }
            }
            StmtKind::Break | StmtKind::Continue => {
                let Some(&(top, end)) = self.loops.last() else {
                    bail!("internal error: break or continue outside a loop");
                };
                self.asm.ja(if matches!(s.kind, StmtKind::Break) {
                    end
                } else {
                    top
                });
            }
            StmtKind::If { cond, then, els } => {
                let c = self.expr(cond)?;
                self.load_int(R0, c);
                let else_l = self.asm.label();
                let end = self.asm.label();
                self.asm.jmp_imm(Cond::Eq, R0, 0, else_l);
                self.stmts(then)?;
                // (After a break or continue a jump would be unreachable: the verifier refuses that.)
                if !jumps_away(then) {
                    self.asm.ja(end);
                }
                self.asm.bind(else_l);
                self.stmts(els)?;
                self.asm.bind(end);
            }
        }
        Ok(())
    }

    fn var_slot(&mut self, name: &str, t: &Type) -> Result<Val> {
        if let Some((_, v)) = self.vars.iter().find(|(n, _)| n == name) {
            return Ok(*v);
        }
        let v = match t {
            Type::Str(n) => Val::Buf(self.alloc(*n)?, *n),
            _ => Val::Int(self.alloc(8)?),
        };
        self.vars.push((name.to_string(), v));
        Ok(v)
    }

    /// Copies a value to `base + dst` (the stack, or a map value): an integer's 8 bytes, or up to `len`
    /// bytes of a buffer.
    fn copy_to(&mut self, base: Reg, dst: i16, src: Val, len: usize) {
        match src {
            Val::Int(off) => {
                self.asm.load(Size::DW, R0, FP, off);
                self.asm.store_reg(Size::DW, base, dst, R0);
            }
            Val::Buf(off, n) => {
                let n = n.min(len);
                let mut i = 0;
                while i + 8 <= n {
                    self.asm.load(Size::DW, R0, FP, off + i as i16);
                    self.asm.store_reg(Size::DW, base, dst + i as i16, R0);
                    i += 8;
                }
                while i < n {
                    self.asm.load(Size::B, R0, FP, off + i as i16);
                    self.asm.store_reg(Size::B, base, dst + i as i16, R0);
                    i += 1;
                }
            }
        }
    }

    /// Copies a value to the stack at `dst`: an integer's 8 bytes, or up to `len` bytes of a buffer.
    fn copy(&mut self, dst: i16, src: Val, len: usize) {
        self.copy_to(FP, dst, src, len);
    }

    fn assign(&mut self, target: &Expr, op: Option<&'static str>, value: &Expr) -> Result<()> {
        match &target.kind {
            ExprKind::Var(name) => {
                let v = self.expr(value)?;
                let t = match v {
                    Val::Buf(_, n) => Type::Str(n),
                    Val::Int(_) => Type::Int {
                        size: 8,
                        signed: true,
                    },
                };
                // A new variable adopts the value's own slot when that is the newest one (no copy, no
                // stack left behind); else it gets a slot of its own, for the whole probe.
                let fresh = !self.vars.iter().any(|(n, _)| n == name);
                let newest = v.off() == self.sp;
                if fresh && newest && op.is_none() {
                    self.vars.push((name.clone(), v));
                    return Ok(());
                }
                let slot = self.var_slot(name, &t)?;
                match (op, slot) {
                    (Some(op), Val::Int(off)) => {
                        self.asm.load(Size::DW, R1, FP, off);
                        self.load_int(R2, v);
                        self.binop(op, R1, R2, true)?;
                        self.asm.store_reg(Size::DW, FP, off, R1);
                    }
                    (_, Val::Int(off)) => self.copy(off, v, 8),
                    (_, Val::Buf(off, n)) => {
                        self.zero(off, n.div_ceil(8) * 8);
                        self.copy(off, v, n)
                    }
                }
                Ok(())
            }
            ExprKind::Map { name, keys } => {
                let m = &self.info.maps[name];
                match (&m.kind, &value.kind) {
                    (MapKind::Value(_), _) => {
                        let key = self.key(name, keys)?;
                        if let Some(op) = op {
                            let v = self.expr(value)?;
                            return self.map_add(name, key, v, op);
                        }
                        let v = self.expr(value)?;
                        let def = &self.maps.maps[name];
                        let (fd, vsize) = (def.raw_fd(), def.value_size);
                        let buf = self.alloc(vsize)?;
                        self.zero(buf, vsize);
                        self.copy(buf, v, vsize);
                        let done = self.asm.label();
                        self.key_addr(R2, key, done)?;
                        self.asm.ld_map_fd(R1, fd);
                        self.addr(R3, buf);
                        self.asm.mov_imm(R4, 0); // BPF_ANY
                        self.asm.call(HELPER_MAP_UPDATE);
                        self.asm.bind(done);
                        Ok(())
                    }
                    (kind, ExprKind::Call { args, .. }) => {
                        let kind = kind.clone();
                        let key = self.key(name, keys)?;
                        let v = match args.first() {
                            Some(a) => Some(self.expr(a)?),
                            None => None,
                        };
                        self.aggregate(name, key, &kind, v)
                    }
                    _ => bail!("internal error: @{name} has an aggregation kind but no call"),
                }
            }
            _ => bail!("internal error: assignment to a non-map, non-variable"),
        }
    }

    /// Builds the key of `@name[keys]`, zeroed first: on the stack, or where larger than KEY_ON_STACK in a
    /// buffer of Maps::keys of its own, each part copied there as soon as it is made (the stack holds one
    /// part at a time).
    fn key(&mut self, name: &str, keys: &[Expr]) -> Result<KeyAt> {
        let size = self.maps.maps[name].key_size;
        let exit = self.exit;
        let key = if size <= KEY_ON_STACK {
            let buf = self.alloc(size)?;
            self.zero(buf, size);
            KeyAt::Stack(buf)
        } else {
            let key = KeyAt::Buffer {
                fd: raw_fd(
                    self.maps
                        .keys
                        .as_ref()
                        .context("internal error: no key buffers")?,
                ),
                slot: self.key_slots as i32,
            };
            self.key_slots += 1;
            if self.key_slots > KEY_SLOTS {
                bail!("the probe builds more than {KEY_SLOTS} map keys of over {KEY_ON_STACK} bytes: simplify it");
            }
            self.key_addr(R7, key, exit)?;
            for i in (0..size).step_by(8) {
                self.asm.store_imm(Size::DW, R7, i as i16, 0);
            }
            key
        };
        let mut at = 0;
        for (k, t) in keys.iter().zip(self.info.maps[name].keys.clone()) {
            let mark = self.sp;
            let v = self.expr(k)?;
            let n = size_of(&t);
            match key {
                KeyAt::Stack(buf) => self.copy(buf + at, v, n),
                KeyAt::Buffer { .. } => {
                    // Making the part may have used r7 (another key): the buffer is looked up again.
                    self.key_addr(R7, key, exit)?;
                    self.copy_to(R7, at, v, n);
                }
            }
            at += n as i16;
            // The part is copied: its stack is free for the next.
            self.sp = mark;
        }
        Ok(key)
    }

    /// `r` = the address of a key; jumps to `fail` where its buffer cannot be had (never: the verifier
    /// asks). Clobbers r0-r5 for a key in Maps::keys: so it comes before a helper's other arguments.
    fn key_addr(&mut self, r: Reg, key: KeyAt, fail: super::insn::Label) -> Result<()> {
        match key {
            KeyAt::Stack(off) => self.addr(r, off),
            KeyAt::Buffer { fd, slot } => {
                self.lookup_slot(fd, slot)?;
                self.asm.jmp_imm(Cond::Eq, R0, 0, fail);
                self.asm.mov_reg(r, R0);
            }
        }
        Ok(())
    }

    /// r0 = slot 0 of a one-slot array map (or NULL). Its key sits in a scratch word, free again after.
    fn lookup_slot0(&mut self, fd: i32) -> Result<()> {
        self.lookup_slot(fd, 0)
    }

    /// r0 = slot `idx` of an array map (or NULL).
    fn lookup_slot(&mut self, fd: i32, idx: i32) -> Result<()> {
        let key = self.alloc(8)?;
        self.asm.store_imm(Size::W, FP, key, idx);
        self.asm.ld_map_fd(R1, fd);
        self.addr(R2, key);
        self.asm.call(HELPER_MAP_LOOKUP);
        self.sp += 8;
        Ok(())
    }

    /// r0 = the value of @name at `key`, created zeroed first where missing; jumps to `skip` if that fails.
    fn lookup_or_init(&mut self, name: &str, key: KeyAt, skip: super::insn::Label) -> Result<()> {
        let fd = self.maps.maps[name].raw_fd();
        let have = self.asm.label();
        self.key_addr(R2, key, skip)?;
        self.asm.ld_map_fd(R1, fd);
        self.asm.call(HELPER_MAP_LOOKUP);
        self.asm.jmp_imm(Cond::Ne, R0, 0, have);
        // The zeroed value comes from a per-CPU array: map values can be larger than the stack.
        self.lookup_slot0(raw_fd(&self.maps.zeros))?;
        self.asm.jmp_imm(Cond::Eq, R0, 0, skip);
        self.asm.mov_reg(R7, R0);
        self.key_addr(R2, key, skip)?;
        self.asm.mov_reg(R3, R7);
        self.asm.ld_map_fd(R1, fd);
        self.asm.mov_imm(R4, 1); // BPF_NOEXIST: another CPU may have created it meanwhile
        self.asm.call(HELPER_MAP_UPDATE);
        self.key_addr(R2, key, skip)?;
        self.asm.ld_map_fd(R1, fd);
        self.asm.call(HELPER_MAP_LOOKUP);
        self.asm.jmp_imm(Cond::Eq, R0, 0, skip);
        self.asm.bind(have);
        Ok(())
    }

    /// `@x[k] OP= v` / `@x[k]++` on an integer value map (shared by CPUs): + and - as atomic adds, other
    /// operators as a load, the operation and a store.
    fn map_add(&mut self, name: &str, key: KeyAt, v: Val, op: &str) -> Result<()> {
        let skip = self.asm.label();
        // The value is on the stack already: the helper calls cannot clobber it.
        self.lookup_or_init(name, key, skip)?;
        self.load_int(R1, v);
        match op {
            "+" | "-" => {
                if op == "-" {
                    self.asm.alu_imm(Alu::Neg, R1, 0);
                }
                self.asm.atomic_add64(R0, 0, R1);
            }
            _ => {
                self.asm.mov_reg(R6, R0);
                self.asm.load(Size::DW, R2, R6, 0);
                self.asm.mov_reg(R3, R1);
                self.binop(op, R2, R3, true)?;
                self.asm.store_reg(Size::DW, R6, 0, R2);
            }
        }
        self.asm.bind(skip);
        Ok(())
    }

    fn aggregate(&mut self, name: &str, key: KeyAt, kind: &MapKind, v: Option<Val>) -> Result<()> {
        let skip = self.asm.label();
        self.lookup_or_init(name, key, skip)?;
        self.asm.mov_reg(R6, R0);
        if let Some(v) = v {
            self.load_int(R1, v);
        }
        match kind {
            MapKind::Count => {
                self.asm.load(Size::DW, R2, R6, 0);
                self.asm.alu_imm(Alu::Add, R2, 1);
                self.asm.store_reg(Size::DW, R6, 0, R2);
            }
            MapKind::Sum => {
                self.asm.load(Size::DW, R2, R6, 0);
                self.asm.alu_reg(Alu::Add, R2, R1);
                self.asm.store_reg(Size::DW, R6, 0, R2);
            }
            MapKind::Avg | MapKind::Stats => {
                self.asm.load(Size::DW, R2, R6, 0);
                self.asm.alu_imm(Alu::Add, R2, 1);
                self.asm.store_reg(Size::DW, R6, 0, R2);
                self.asm.load(Size::DW, R2, R6, 8);
                self.asm.alu_reg(Alu::Add, R2, R1);
                self.asm.store_reg(Size::DW, R6, 8, R2);
            }
            MapKind::Min | MapKind::Max => {
                let store = self.asm.label();
                let done = self.asm.label();
                self.asm.load(Size::DW, R2, R6, 8);
                self.asm.jmp_imm(Cond::Eq, R2, 0, store);
                self.asm.load(Size::DW, R2, R6, 0);
                let c = if *kind == MapKind::Min {
                    Cond::Sge
                } else {
                    Cond::Sle
                };
                self.asm.jmp_reg(c, R1, R2, done);
                self.asm.bind(store);
                self.asm.store_reg(Size::DW, R6, 0, R1);
                self.asm.store_imm(Size::DW, R6, 8, 1);
                self.asm.bind(done);
            }
            MapKind::Hist => {
                self.log2_index(R1, R2);
                self.bump_slot(R6, R2, LOG2_LEN as i32 - 1, skip);
            }
            MapKind::Lhist { min, max, step } => {
                let n = (max - min) / step;
                let (below, above, done) = (self.asm.label(), self.asm.label(), self.asm.label());
                self.asm.ld_imm64(R3, *min as u64);
                self.asm.jmp_reg(Cond::Slt, R1, R3, below);
                self.asm.ld_imm64(R3, *max as u64);
                self.asm.jmp_reg(Cond::Sge, R1, R3, above);
                self.asm.mov_reg(R2, R1);
                self.asm.ld_imm64(R3, *min as u64);
                self.asm.alu_reg(Alu::Sub, R2, R3);
                self.asm.ld_imm64(R3, *step as u64);
                self.asm.alu_reg(Alu::Div, R2, R3);
                self.asm.alu_imm(Alu::Add, R2, 1);
                self.asm.ja(done);
                self.asm.bind(below);
                self.asm.mov_imm(R2, 0);
                self.asm.ja(done);
                self.asm.bind(above);
                self.asm.mov_imm(R2, n as i32 + 1);
                self.asm.bind(done);
                self.bump_slot(R6, R2, n as i32 + 1, skip);
            }
            MapKind::Value(_) => bail!("internal error: a value map aggregated"),
        }
        self.asm.bind(skip);
        Ok(())
    }

    /// `*(u64 *)(base + idx * 8) += 1`, with idx checked against `max` for the verifier.
    fn bump_slot(&mut self, base: Reg, idx: Reg, max: i32, skip: super::insn::Label) {
        self.asm.jmp_imm(Cond::Gt, idx, max, skip);
        self.asm.alu_imm(Alu::Lsh, idx, 3);
        self.asm.alu_reg(Alu::Add, idx, base);
        self.asm.load(Size::DW, R3, idx, 0);
        self.asm.alu_imm(Alu::Add, R3, 1);
        self.asm.store_reg(Size::DW, idx, 0, R3);
    }

    /// `out` = bpftrace's hist index of the signed value in `v` (0 negative, 1 zero, floor(log2)+2).
    fn log2_index(&mut self, v: Reg, out: Reg) {
        let (neg, zero, done) = (self.asm.label(), self.asm.label(), self.asm.label());
        self.asm.jmp_imm(Cond::Slt, v, 0, neg);
        self.asm.jmp_imm(Cond::Eq, v, 0, zero);
        self.asm.mov_reg(R4, v);
        self.asm.mov_imm(out, 2);
        for shift in [32, 16, 8, 4, 2, 1] {
            let skip = self.asm.label();
            self.asm.ld_imm64(R5, (1u64 << shift) - 1);
            self.asm.jmp_reg(Cond::Le, R4, R5, skip);
            self.asm.alu_imm(Alu::Rsh, R4, shift);
            self.asm.alu_imm(Alu::Add, out, shift);
            self.asm.bind(skip);
        }
        self.asm.ja(done);
        self.asm.bind(neg);
        self.asm.mov_imm(out, 0);
        self.asm.ja(done);
        self.asm.bind(zero);
        self.asm.mov_imm(out, 1);
        self.asm.bind(done);
    }

    /// Turns a value into 0/1 for conditions (strings: non-empty).
    fn truthy(&mut self, v: Val) -> Result<Val> {
        match v {
            Val::Int(_) => Ok(v),
            Val::Buf(off, _) => {
                self.asm.load(Size::B, R0, FP, off);
                self.int_slot_from(R0)
            }
        }
    }

    fn binop(&mut self, op: &str, a: Reg, b: Reg, signed: bool) -> Result<()> {
        let alu = |op: &str| match op {
            "+" => Some(Alu::Add),
            "-" => Some(Alu::Sub),
            "*" => Some(Alu::Mul),
            "/" => Some(Alu::Div),
            "%" => Some(Alu::Mod),
            "&" => Some(Alu::And),
            "|" => Some(Alu::Or),
            "^" => Some(Alu::Xor),
            "<<" => Some(Alu::Lsh),
            ">>" => Some(Alu::Rsh),
            _ => None,
        };
        if let Some(op) = alu(op) {
            // bpftrace shifts right logically (and divides unsigned), whatever the sign.
            self.asm.alu_reg(op, a, b);
            return Ok(());
        }
        let cond = match (op, signed) {
            ("==", _) => Cond::Eq,
            ("!=", _) => Cond::Ne,
            ("<", true) => Cond::Slt,
            ("<", false) => Cond::Lt,
            ("<=", true) => Cond::Sle,
            ("<=", false) => Cond::Le,
            (">", true) => Cond::Sgt,
            (">", false) => Cond::Gt,
            (">=", true) => Cond::Sge,
            (">=", false) => Cond::Ge,
            _ => bail!("internal error: operator {op}"),
        };
        let yes = self.asm.label();
        let done = self.asm.label();
        self.asm.jmp_reg(cond, a, b, yes);
        self.asm.mov_imm(a, 0);
        self.asm.ja(done);
        self.asm.bind(yes);
        self.asm.mov_imm(a, 1);
        self.asm.bind(done);
        Ok(())
    }

    /// An expression's type as the semantic pass found it.
    fn typed(&self, e: &Expr) -> Result<Type> {
        match self.info.type_of(e) {
            Some(t) => Ok(t.clone()),
            None => bail!("internal error: an expression without a type"),
        }
    }

    /// Reads a value of type `t` from memory at the address in `addr` plus `offset` (the kernel's, or the
    /// process's for a user address; a failed read gives zeros, as bpftrace's): integers (a bitfield's `(first bit, width)` from there), pointers,
    /// char arrays as strings; a record is not read, its value is its address.
    fn read_kernel(
        &mut self,
        addr: Val,
        offset: usize,
        t: &Type,
        bits: Option<(u32, u32)>,
    ) -> Result<Val> {
        let (len, int) = match t {
            Type::Record(_) | Type::Array(..) => {
                self.load_int(R0, addr);
                self.asm.alu_imm(Alu::Add, R0, offset as i32);
                return self.int_slot_from(R0);
            }
            Type::Int { size, .. } => match bits {
                Some((first, width)) => ((first + width).div_ceil(8) as usize, true),
                None => (*size, true),
            },
            Type::Ptr(_) => (8, true),
            Type::Str(n) => (*n, false),
            other => bail!("internal error: reading {other:?} from kernel memory"),
        };
        let out = self.alloc(if int { 8 } else { len })?;
        self.zero(out, if int { 8 } else { len.div_ceil(8) * 8 });
        self.load_int(R3, addr);
        if offset > 0 {
            self.asm.alu_imm(Alu::Add, R3, offset as i32);
        }
        self.addr(R1, out);
        self.asm.mov_imm(R2, len as i32);
        self.read_by_address();
        if !int {
            return Ok(Val::Buf(out, len));
        }
        let signed = matches!(t, Type::Int { signed: true, .. });
        let (first, width) = bits.unwrap_or((0, 8 * len.min(8) as u32));
        if width < 64 {
            self.asm.load(Size::DW, R0, FP, out);
            self.asm.alu_imm(Alu::Lsh, R0, 64 - (first + width) as i32);
            self.asm.alu_imm(
                if signed { Alu::Arsh } else { Alu::Rsh },
                R0,
                64 - width as i32,
            );
            self.asm.store_reg(Size::DW, FP, out, R0);
        }
        Ok(Val::Int(out))
    }

    /// What the semantic pass resolved `what` at `span` to (an enum or macro, a symbol's address, a
    /// cgroup's id, a signal's number, a register's offset).
    fn constant(&self, what: &str, span: super::diag::Span) -> Result<u64> {
        match self.info.constants.get(&sema::key(span)) {
            Some(&v) => Ok(v),
            None => bail!("internal error: {what} was not resolved to a constant"),
        }
    }

    /// Calls bpf_probe_read_kernel, or bpf_probe_read_user where the address in r3 is not the kernel's
    /// (kernel addresses have the top bit set on x86-64 and arm64; others are the process's, as a system
    /// call's pointer arguments): r1, r2, r3 as the helpers take them, r0 their result.
    fn read_by_address(&mut self) {
        let (user, read) = (self.asm.label(), self.asm.label());
        self.asm.jmp_imm(Cond::Sge, R3, 0, user);
        self.asm.call(HELPER_READ_KERNEL);
        self.asm.ja(read);
        self.asm.bind(user);
        self.asm.call(HELPER_READ_USER);
        self.asm.bind(read);
    }

    /// Whether an expression's integer value is signed (for comparisons, division and >>).
    fn signed(&self, e: &Expr) -> bool {
        // As the semantic pass typed it: pointers and unsigned integers are unsigned (bpftrace's
        // pid, nsecs, arg0...; a variable or map as what it holds); what it did not type (a positional
        // string's synthesized literal) is signed.
        match self.info.type_of(e) {
            Some(Type::Int { signed, .. }) => *signed,
            Some(Type::Ptr(_)) => false,
            _ => true,
        }
    }

    fn expr(&mut self, e: &Expr) -> Result<Val> {
        match &e.kind {
            ExprKind::Int(n) => {
                self.asm.ld_imm64(R0, *n);
                self.int_slot_from(R0)
            }
            ExprKind::Str(s) => {
                let n = s.len() + 1;
                let off = self.alloc(n)?;
                self.zero(off, n.div_ceil(8) * 8);
                for (i, b) in s.bytes().enumerate() {
                    self.asm.store_imm(Size::B, FP, off + i as i16, b as i32);
                }
                Ok(Val::Buf(off, n))
            }
            ExprKind::Var(name) if name == "#" => {
                self.asm.mov_imm(R0, self.env.params.len() as i32);
                self.int_slot_from(R0)
            }
            ExprKind::Var(name) if is_positional(name) => match positional(self.env.params, name) {
                Positional::Int(v) => {
                    self.asm.ld_imm64(R0, v as u64);
                    self.int_slot_from(R0)
                }
                Positional::Str(text) => self.expr(&Expr {
                    kind: ExprKind::Str(text),
                    span: e.span,
                }),
            },
            ExprKind::Var(name) => match self.vars.iter().find(|(n, _)| n == name) {
                Some((_, v)) => Ok(*v),
                None => bail!("internal error: ${name} has no slot"),
            },
            ExprKind::Ident(name) if self.info.constants.contains_key(&sema::key(e.span)) => {
                let v = self.constant(name, e.span)?;
                self.asm.ld_imm64(R0, v);
                self.int_slot_from(R0)
            }
            ExprKind::Ident(name) => self.builtin(name),
            ExprKind::Field { base, field } => {
                if self.info.type_of(base) == Some(&Type::Args) {
                    return self.field(field);
                }
                let Some(m) = self.info.members.get(&sema::key(e.span)).cloned() else {
                    bail!("internal error: {field} has no member");
                };
                let addr = self.expr(base)?;
                let t = self.typed(e)?;
                self.read_kernel(addr, m.offset, &t, m.bits)
            }
            ExprKind::Index { base, index } => {
                let Some(&size) = self.info.elems.get(&sema::key(e.span)) else {
                    bail!("internal error: an index without its element's size");
                };
                let addr = self.expr(base)?;
                let i = self.expr(index)?;
                self.load_int(R0, i);
                self.asm.ld_imm64(R1, size as u64);
                self.asm.alu_reg(Alu::Mul, R0, R1);
                self.load_int(R1, addr);
                self.asm.alu_reg(Alu::Add, R0, R1);
                let at = self.int_slot_from(R0)?;
                let t = self.typed(e)?;
                self.read_kernel(at, 0, &t, None)
            }
            ExprKind::Cast { expr, .. } => {
                let v = self.expr(expr)?;
                match self.typed(e)? {
                    Type::Int { size, signed } if size < 8 => {
                        self.load_int(R0, v);
                        let shift = 64 - 8 * size as i32;
                        self.asm.alu_imm(Alu::Lsh, R0, shift);
                        self.asm
                            .alu_imm(if signed { Alu::Arsh } else { Alu::Rsh }, R0, shift);
                        self.int_slot_from(R0)
                    }
                    _ => Ok(v),
                }
            }
            ExprKind::Unary { op: "*", expr } => {
                let addr = self.expr(expr)?;
                let t = self.typed(e)?;
                self.read_kernel(addr, 0, &t, None)
            }
            ExprKind::Map { name, keys } => {
                let m = &self.info.maps[name];
                let MapKind::Value(t) = &m.kind else {
                    bail!("reading @{name} in a probe: aggregations (count(), sum()...) are per CPU and can only be printed");
                };
                // Integers and the like in a slot, strings and user stacks/symbols in a buffer.
                let bytes = size_of(t);
                let text = !matches!(t, Type::Int { .. }) && bytes > 8 || matches!(t, Type::Str(_));
                let key = self.key(name, keys)?;
                let out = self.alloc(bytes)?;
                self.zero(out, bytes);
                let fd = self.maps.maps[name].raw_fd();
                let missing = self.asm.label();
                self.key_addr(R2, key, missing)?;
                self.asm.ld_map_fd(R1, fd);
                self.asm.call(HELPER_MAP_LOOKUP);
                self.asm.jmp_imm(Cond::Eq, R0, 0, missing);
                if text {
                    self.asm.mov_reg(R3, R0);
                    self.addr(R1, out);
                    self.asm.mov_imm(R2, bytes as i32);
                    self.asm.call(HELPER_READ_KERNEL);
                } else {
                    self.asm.load(Size::DW, R0, R0, 0);
                    self.asm.store_reg(Size::DW, FP, out, R0);
                }
                self.asm.bind(missing);
                let n = match t {
                    Type::Str(n) => *n,
                    _ => bytes,
                };
                Ok(if text {
                    Val::Buf(out, n)
                } else {
                    Val::Int(out)
                })
            }
            ExprKind::Call { name, args } => self.call(name, args, e.span),
            ExprKind::Unary { op, expr } => {
                let v = self.expr(expr)?;
                let v = self.truthy(v)?;
                self.load_int(R0, v);
                match *op {
                    "-" => self.asm.alu_imm(Alu::Neg, R0, 0),
                    "~" => self.asm.alu_imm(Alu::Xor, R0, -1),
                    _ => {
                        let (t, d) = (self.asm.label(), self.asm.label());
                        self.asm.jmp_imm(Cond::Eq, R0, 0, t);
                        self.asm.mov_imm(R0, 0);
                        self.asm.ja(d);
                        self.asm.bind(t);
                        self.asm.mov_imm(R0, 1);
                        self.asm.bind(d);
                    }
                }
                self.int_slot_from(R0)
            }
            ExprKind::Binary { op, lhs, rhs } => {
                let signed = self.signed(lhs) && self.signed(rhs);
                let (mark, nvars) = (self.sp, self.vars.len());
                let (a, b) = (self.expr(lhs)?, self.expr(rhs)?);
                // The operands are dead once in registers: their slots are free again (unless a variable
                // was given a slot meanwhile).
                let free = |g: &mut Self| {
                    if g.vars.len() == nvars {
                        g.sp = mark;
                    }
                };
                match (a, b) {
                    (Val::Buf(x, n), Val::Buf(y, m)) => self.str_eq(*op == "==", x, n, y, m),
                    _ if matches!(*op, "&&" | "||") => {
                        let (a, b) = (self.truthy(a)?, self.truthy(b)?);
                        self.load_int(R1, a);
                        self.load_int(R2, b);
                        let (t, f, d) = (self.asm.label(), self.asm.label(), self.asm.label());
                        if *op == "&&" {
                            self.asm.jmp_imm(Cond::Eq, R1, 0, f);
                            self.asm.jmp_imm(Cond::Eq, R2, 0, f);
                            self.asm.ja(t);
                        } else {
                            self.asm.jmp_imm(Cond::Ne, R1, 0, t);
                            self.asm.jmp_imm(Cond::Ne, R2, 0, t);
                            self.asm.ja(f);
                        }
                        self.asm.bind(t);
                        self.asm.mov_imm(R1, 1);
                        self.asm.ja(d);
                        self.asm.bind(f);
                        self.asm.mov_imm(R1, 0);
                        self.asm.bind(d);
                        self.int_slot_from(R1)
                    }
                    (a, b) => {
                        self.load_int(R1, a);
                        self.load_int(R2, b);
                        self.binop(op, R1, R2, signed)?;
                        free(self);
                        self.int_slot_from(R1)
                    }
                }
            }
            ExprKind::Ternary { cond, then, els } if self.is_text(then) => {
                let c = self.expr(cond)?;
                let c = self.truthy(c)?;
                let n = self.text_len(then).max(self.text_len(els));
                let out = self.alloc(n)?;
                self.zero(out, n.div_ceil(8) * 8);
                let (no, done) = (self.asm.label(), self.asm.label());
                self.load_int(R0, c);
                self.asm.jmp_imm(Cond::Eq, R0, 0, no);
                let mark = self.sp;
                let a = self.expr(then)?;
                self.copy(out, a, n);
                self.sp = mark;
                self.asm.ja(done);
                self.asm.bind(no);
                let b = self.expr(els)?;
                self.copy(out, b, n);
                self.sp = mark;
                self.asm.bind(done);
                Ok(Val::Buf(out, n))
            }
            ExprKind::Ternary { cond, then, els } => {
                let c = self.expr(cond)?;
                let c = self.truthy(c)?;
                let out = self.alloc(8)?;
                let (no, done) = (self.asm.label(), self.asm.label());
                self.load_int(R0, c);
                self.asm.jmp_imm(Cond::Eq, R0, 0, no);
                let a = self.expr(then)?;
                self.load_int(R0, a);
                self.asm.store_reg(Size::DW, FP, out, R0);
                self.asm.ja(done);
                self.asm.bind(no);
                let b = self.expr(els)?;
                self.load_int(R0, b);
                self.asm.store_reg(Size::DW, FP, out, R0);
                self.asm.bind(done);
                if matches!(a, Val::Buf(..)) || matches!(b, Val::Buf(..)) {
                    bail!("string ternaries are not supported yet");
                }
                Ok(Val::Int(out))
            }
            ExprKind::Incr { op, post, target } => match &target.kind {
                ExprKind::Var(name) => {
                    let slot = self.var_slot(
                        name,
                        &Type::Int {
                            size: 8,
                            signed: true,
                        },
                    )?;
                    let off = slot.off();
                    let before = self.alloc(8)?;
                    self.asm.load(Size::DW, R0, FP, off);
                    self.asm.store_reg(Size::DW, FP, before, R0);
                    self.asm
                        .alu_imm(Alu::Add, R0, if *op == "++" { 1 } else { -1 });
                    self.asm.store_reg(Size::DW, FP, off, R0);
                    Ok(if *post { Val::Int(before) } else { slot })
                }
                ExprKind::Map { name, keys } => {
                    let key = self.key(name, keys)?;
                    self.asm.mov_imm(R0, 1);
                    let one = self.int_slot_from(R0)?;
                    self.map_add(name, key, one, if *op == "++" { "+" } else { "-" })?;
                    self.asm.mov_imm(R0, 0);
                    self.int_slot_from(R0)
                }
                _ => bail!("internal error: ++ on a non-lvalue"),
            },
        }
    }

    /// Whether an expression is a string (for ternaries): literals, comm, str(), string variables and maps.
    fn is_text(&self, e: &Expr) -> bool {
        self.text_len(e) > 0
    }

    /// The buffer length of a string expression (as the semantic pass typed it), 0 for other values. A
    /// literal's and a variable's are those of the buffers that hold them here.
    fn text_len(&self, e: &Expr) -> usize {
        match (&e.kind, self.info.type_of(e)) {
            (ExprKind::Str(s), _) => s.len() + 1,
            (ExprKind::Var(v), Some(Type::Str(_))) => {
                match self.vars.iter().find(|(n, _)| n == v) {
                    Some((_, Val::Buf(_, n))) => *n,
                    _ => 0,
                }
            }
            (_, Some(Type::Str(n))) => *n,
            _ => 0,
        }
    }

    /// 1 if the strings at x and y are equal up to their first NUL (`eq`), else 0 (inverted for !=).
    fn str_eq(&mut self, eq: bool, x: i16, n: usize, y: i16, m: usize) -> Result<Val> {
        let (differ, same, done) = (self.asm.label(), self.asm.label(), self.asm.label());
        for i in 0..n.min(m) {
            self.asm.load(Size::B, R1, FP, x + i as i16);
            self.asm.load(Size::B, R2, FP, y + i as i16);
            self.asm.jmp_reg(Cond::Ne, R1, R2, differ);
            self.asm.jmp_imm(Cond::Eq, R1, 0, same);
        }
        // Equal over the shorter buffer: equal if the longer one ends there.
        if n != m {
            let (long, at) = if n > m { (x, m) } else { (y, n) };
            self.asm.load(Size::B, R1, FP, long + at as i16);
            self.asm.jmp_imm(Cond::Ne, R1, 0, differ);
        }
        self.asm.bind(same);
        self.asm.mov_imm(R0, eq as i32);
        self.asm.ja(done);
        self.asm.bind(differ);
        self.asm.mov_imm(R0, !eq as i32);
        self.asm.bind(done);
        self.int_slot_from(R0)
    }

    fn builtin(&mut self, name: &str) -> Result<Val> {
        match name {
            "pid" | "tid" => {
                self.asm.call(HELPER_PID_TGID);
                if name == "pid" {
                    self.asm.alu_imm(Alu::Rsh, R0, 32);
                } else {
                    self.asm.alu_imm(Alu::Lsh, R0, 32);
                    self.asm.alu_imm(Alu::Rsh, R0, 32);
                }
                self.int_slot_from(R0)
            }
            "uid" | "gid" => {
                self.asm.call(HELPER_UID_GID);
                if name == "gid" {
                    self.asm.alu_imm(Alu::Rsh, R0, 32);
                } else {
                    self.asm.alu_imm(Alu::Lsh, R0, 32);
                    self.asm.alu_imm(Alu::Rsh, R0, 32);
                }
                self.int_slot_from(R0)
            }
            "cpu" => {
                self.asm.call(HELPER_CPU);
                self.int_slot_from(R0)
            }
            "nsecs" => {
                self.asm.call(HELPER_KTIME);
                self.int_slot_from(R0)
            }
            "comm" => {
                let off = self.alloc(16)?;
                // Zeroed first: before 6.2 (or so) the helper leaves the bytes after the NUL as they were,
                // and a map key of comm would hold stack garbage (one key per garbage, found on 6.1).
                self.zero(off, 16);
                self.addr(R1, off);
                self.asm.mov_imm(R2, 16);
                self.asm.call(HELPER_COMM);
                Ok(Val::Buf(off, 16))
            }
            "probe" | "func" => self.point_index(),
            "kstack" => self.stack(false, 0),
            "ustack" => self.stack(true, 0),
            "retval" => {
                // fexit: the return value follows the arguments.
                let off = match self.env.points.first().map(|p| &p.how) {
                    Some(How::Fentry { func, .. }) => 8 * func.nargs as i16,
                    _ => RET_REG,
                };
                self.asm.load(Size::DW, R0, R9, off);
                self.int_slot_from(R0)
            }
            n if n.len() == 4 && n.starts_with("arg") => {
                self.arg((n.as_bytes()[3] - b'0') as usize)
            }
            "elapsed" => {
                self.asm.call(HELPER_KTIME);
                self.asm.ld_imm64(R1, self.env.start_ns);
                self.asm.alu_reg(Alu::Sub, R0, R1);
                self.int_slot_from(R0)
            }
            "cpid" => {
                let Some(cpid) = self.env.cpid else {
                    bail!("cpid is the pid of the command run with -c: there is none");
                };
                self.asm.mov_imm(R0, cpid as i32);
                self.int_slot_from(R0)
            }
            "curtask" => {
                self.asm.call(HELPER_TASK);
                self.int_slot_from(R0)
            }
            "cgroup" => {
                self.asm.call(HELPER_CGROUP);
                self.int_slot_from(R0)
            }
            "rand" => {
                self.asm.call(HELPER_RAND);
                self.int_slot_from(R0)
            }
            other => bail!("the builtin {other} is not supported by trace yet"),
        }
    }

    /// `args->field` of a tracepoint: integers loaded from the record, char arrays copied.
    fn field(&mut self, field: &str) -> Result<Val> {
        let Some(f) = self
            .fields
            .and_then(|fs| fs.iter().find(|f| f.name == field))
            .cloned()
        else {
            bail!("args->{field}: tracepoint globs with args are not supported yet");
        };
        match f.ty {
            FieldType::Chars(n) => {
                let off = self.alloc(n)?;
                self.addr(R1, off);
                self.asm.mov_imm(R2, n as i32);
                self.asm.mov_reg(R3, R9);
                self.asm.alu_imm(Alu::Add, R3, f.offset as i32);
                self.asm.call(HELPER_READ_KERNEL);
                Ok(Val::Buf(off, n))
            }
            FieldType::Int { .. } | FieldType::Ptr(_) => {
                let size = match f.size {
                    1 => Size::B,
                    2 => Size::H,
                    4 => Size::W,
                    _ => Size::DW,
                };
                self.asm.load(size, R0, R9, f.offset as i16);
                if matches!(f.ty, FieldType::Int { signed: true }) && f.size < 8 {
                    let shift = 64 - 8 * f.size as i32;
                    self.asm.alu_imm(Alu::Lsh, R0, shift);
                    self.asm.alu_imm(Alu::Arsh, R0, shift);
                }
                self.int_slot_from(R0)
            }
            FieldType::Other(t) => bail!("args->{field} ({t}) cannot be read yet"),
        }
    }

    fn call(&mut self, name: &str, args: &[Expr], span: super::diag::Span) -> Result<Val> {
        match name {
            "signal" => {
                let sig = self.constant(name, span)?;
                self.asm.mov_imm(R1, sig as i32);
                self.asm.call(HELPER_SEND_SIGNAL);
                self.asm.mov_imm(R0, 0);
                self.int_slot_from(R0)
            }
            "strftime" => self.expr(&args[1]),
            // Known when the program was checked: the cgroup's id, the symbol's address.
            "cgroupid" | "kaddr" => {
                let v = self.constant(name, span)?;
                self.asm.ld_imm64(R0, v);
                self.int_slot_from(R0)
            }
            "reg" => {
                let off = self.constant(name, span)?;
                if matches!(
                    self.env.points.first().map(|p| &p.how),
                    Some(How::Fentry { .. })
                ) {
                    bail!("reg() reads a kprobe's or uprobe's registers: this probe runs as fentry, which has none");
                }
                self.asm.load(Size::DW, R0, R9, off as i16);
                self.int_slot_from(R0)
            }
            "macaddr" => {
                let out = self.alloc(8)?;
                self.zero(out, 8);
                match self.expr(&args[0])? {
                    v @ Val::Buf(_, n) => self.copy(out, v, n.min(6)),
                    addr @ Val::Int(_) => {
                        self.addr(R1, out);
                        self.asm.mov_imm(R2, 6);
                        self.load_int(R3, addr);
                        self.read_by_address();
                    }
                }
                Ok(Val::Buf(out, 8))
            }
            "str" => {
                let v = self.expr(&args[0])?;
                // str(x, N): N characters at most (and the NUL), as bpftrace; N is clamped to the buffer.
                let limit = match args.get(1) {
                    Some(n) => Some(self.expr(n)?),
                    None => None,
                };
                if let Val::Buf(from, n) = v {
                    let Some(limit) = limit else {
                        return Ok(v);
                    };
                    // A string already: copy it, then cut it at N.
                    let off = self.alloc(n)?;
                    self.zero(off, n.div_ceil(8) * 8);
                    self.copy(off, Val::Buf(from, n), n);
                    self.load_int(R1, limit);
                    let done = self.asm.label();
                    self.asm.jmp_imm(Cond::Sge, R1, n as i32 - 1, done);
                    self.asm.jmp_imm(Cond::Slt, R1, 0, done);
                    self.asm.alu_reg(Alu::Add, R1, FP);
                    self.asm.store_imm(Size::B, R1, off, 0);
                    self.asm.bind(done);
                    return Ok(Val::Buf(off, n));
                }
                let off = self.alloc(STR_LEN)?;
                self.zero(off, STR_LEN);
                let size = self.alloc(8)?;
                match limit {
                    None => self.asm.mov_imm(R0, STR_LEN as i32),
                    Some(l) => {
                        // Bytes to read: N + 1 within [1, STR_LEN].
                        let (low, high, set) =
                            (self.asm.label(), self.asm.label(), self.asm.label());
                        self.load_int(R0, l);
                        self.asm.jmp_imm(Cond::Slt, R0, 0, low);
                        self.asm.jmp_imm(Cond::Sge, R0, STR_LEN as i32 - 1, high);
                        self.asm.alu_imm(Alu::Add, R0, 1);
                        self.asm.ja(set);
                        self.asm.bind(low);
                        self.asm.mov_imm(R0, 1);
                        self.asm.ja(set);
                        self.asm.bind(high);
                        self.asm.mov_imm(R0, STR_LEN as i32);
                        self.asm.bind(set);
                    }
                }
                self.asm.store_reg(Size::DW, FP, size, R0);
                let done = self.asm.label();
                for helper in [HELPER_READ_USER_STR, HELPER_READ_KERNEL_STR] {
                    self.addr(R1, off);
                    self.asm.load(Size::DW, R2, FP, size);
                    // For the verifier: the size is within the buffer.
                    self.asm.alu_imm(Alu::And, R2, STR_LEN as i32 * 2 - 1);
                    let ok = self.asm.label();
                    self.asm.jmp_imm(Cond::Le, R2, STR_LEN as i32, ok);
                    self.asm.mov_imm(R2, STR_LEN as i32);
                    self.asm.bind(ok);
                    self.load_int(R3, v);
                    self.asm.call(helper);
                    self.asm.jmp_imm(Cond::Sgt, R0, 0, done);
                }
                self.asm.bind(done);
                Ok(Val::Buf(off, STR_LEN))
            }
            "printf" | "system" => {
                let ExprKind::Str(format) = &args[0].kind else {
                    bail!("internal error: {name} without a format");
                };
                let mut vals = Vec::new();
                let mut types = Vec::new();
                for a in &args[1..] {
                    let v = self.expr(a)?;
                    types.push(match (self.special_type(a), v) {
                        (Some(t), _) => t,
                        (None, Val::Int(_)) => Type::Int {
                            size: 8,
                            signed: self.signed(a),
                        },
                        (None, Val::Buf(_, n)) => Type::Str(n),
                    });
                    vals.push(v);
                }
                // The record is built in a per-CPU scratch buffer, not on the 512-byte stack (which the
                // arguments already use): printf of several strings fits.
                let size: usize = 8 + types.iter().map(size_of).sum::<usize>();
                if size > SCRATCH_BYTES {
                    bail!("printf: its arguments take {size} bytes, more than the {SCRATCH_BYTES} a record can");
                }
                let id = self.printfs.len() as u64;
                self.printfs.push(PrintfSpec {
                    format: format.clone(),
                    args: types.clone(),
                    kind: if name == "system" {
                        RecordKind::System
                    } else {
                        RecordKind::Printf
                    },
                });
                let done = self.asm.label();
                self.lookup_slot0(raw_fd(&self.maps.scratch))?;
                self.asm.jmp_imm(Cond::Eq, R0, 0, done);
                self.asm.mov_reg(R6, R0);
                for i in (0..size).step_by(8) {
                    self.asm.store_imm(Size::DW, R6, i as i16, 0);
                }
                self.asm.ld_imm64(R0, id);
                self.asm.store_reg(Size::DW, R6, 0, R0);
                let mut at = 8i16;
                for (v, t) in vals.iter().zip(&types) {
                    let n = size_of(t);
                    self.copy_to(R6, at, *v, n);
                    at += n as i16;
                }
                self.output_from(Some(R6), 0, size)?;
                self.asm.bind(done);
                self.asm.mov_imm(R0, 0);
                self.int_slot_from(R0)
            }
            "ntop" => {
                // The family (given, or told by the address's type), then the address's bytes.
                let out = self.alloc(24)?;
                self.zero(out, 24);
                let addr = args.last().expect("an address");
                if args.len() == 2 {
                    let af = self.expr(&args[0])?;
                    self.load_int(R0, af);
                    self.asm.store_reg(Size::DW, FP, out, R0);
                } else {
                    let v6 = matches!(self.info.type_of(addr), Some(Type::Str(16)));
                    self.asm
                        .store_imm(Size::DW, FP, out, if v6 { 10 } else { 2 });
                }
                match self.expr(addr)? {
                    Val::Int(off) => {
                        self.asm.load(Size::W, R0, FP, off);
                        self.asm.store_reg(Size::W, FP, out + 8, R0);
                    }
                    v @ Val::Buf(_, n) => self.copy(out + 8, v, n.min(16)),
                }
                Ok(Val::Buf(out, 24))
            }
            "bswap" => {
                let v = self.expr(&args[0])?;
                let bits = match self.typed(&args[0])? {
                    Type::Int { size, .. } => 8 * size as i32,
                    _ => 64,
                };
                self.load_int(R0, v);
                if bits >= 16 {
                    self.asm.bswap(R0, bits);
                } else {
                    self.asm.alu_imm(Alu::And, R0, 0xff);
                }
                self.int_slot_from(R0)
            }
            "buf" => {
                // Its length (8 bytes), then up to STR_BYTES bytes.
                let n = sema::STR_BYTES;
                let out = self.alloc(8 + n)?;
                self.zero(out, 8 + n);
                let src = self.expr(&args[0])?;
                let len = match args.get(1) {
                    Some(l) => {
                        let l = self.expr(l)?;
                        self.load_int(R2, l);
                        let ok = self.asm.label();
                        self.asm.jmp_imm(Cond::Le, R2, n as i32, ok);
                        self.asm.mov_imm(R2, n as i32);
                        self.asm.bind(ok);
                        self.int_slot_from(R2)?
                    }
                    None => {
                        self.asm.mov_imm(R2, n as i32);
                        self.int_slot_from(R2)?
                    }
                };
                if let Val::Buf(from, m) = src {
                    // A string: its bytes, up to the length asked for.
                    let m = m.min(n);
                    self.copy(out + 8, Val::Buf(from, m), m);
                    self.load_int(R0, len);
                    let ok = self.asm.label();
                    self.asm.jmp_imm(Cond::Le, R0, m as i32, ok);
                    self.asm.mov_imm(R0, m as i32);
                    self.asm.bind(ok);
                    self.asm.store_reg(Size::DW, FP, out, R0);
                    return Ok(Val::Buf(out, 8 + n));
                }
                let failed = self.asm.label();
                self.addr(R1, out + 8);
                self.load_int(R2, len);
                // For the verifier: the size is within the buffer.
                self.asm.alu_imm(Alu::And, R2, 2 * n as i32 - 1);
                let ok = self.asm.label();
                self.asm.jmp_imm(Cond::Le, R2, n as i32, ok);
                self.asm.mov_imm(R2, n as i32);
                self.asm.bind(ok);
                self.load_int(R3, src);
                self.read_by_address();
                self.asm.jmp_imm(Cond::Ne, R0, 0, failed);
                self.load_int(R0, len);
                self.asm.store_reg(Size::DW, FP, out, R0);
                self.asm.bind(failed);
                Ok(Val::Buf(out, 8 + n))
            }
            "cat" => {
                let ExprKind::Str(path) = &args[0].kind else {
                    bail!("internal error: cat() without a path");
                };
                self.id_record(path.clone(), RecordKind::Cat)
            }
            "join" => {
                let delim = match args.get(1).map(|a| &a.kind) {
                    Some(ExprKind::Str(d)) => d.clone(),
                    _ => " ".to_string(),
                };
                let array = self.expr(&args[0])?;
                let id = self.printfs.len() as u64;
                self.printfs.push(PrintfSpec {
                    format: delim,
                    args: vec![Type::Str(STR_LEN); JOIN_ARGS],
                    kind: RecordKind::Join,
                });
                // The record in the per-CPU scratch buffer: its id, then each string in STR_LEN bytes.
                let size = 8 + JOIN_ARGS * STR_LEN;
                let ptr = self.alloc(8)?;
                let (done, send) = (self.asm.label(), self.asm.label());
                self.lookup_slot0(raw_fd(&self.maps.scratch))?;
                self.asm.jmp_imm(Cond::Eq, R0, 0, done);
                self.asm.mov_reg(R6, R0);
                for i in (0..size).step_by(8) {
                    self.asm.store_imm(Size::DW, R6, i as i16, 0);
                }
                self.asm.ld_imm64(R0, id);
                self.asm.store_reg(Size::DW, R6, 0, R0);
                for i in 0..JOIN_ARGS {
                    // The i-th pointer (a user array where its address is a user one), then its string.
                    self.addr(R1, ptr);
                    self.asm.mov_imm(R2, 8);
                    self.load_int(R3, array);
                    self.asm.alu_imm(Alu::Add, R3, 8 * i as i32);
                    self.read_by_address();
                    self.asm.jmp_imm(Cond::Ne, R0, 0, send);
                    self.asm.load(Size::DW, R3, FP, ptr);
                    self.asm.jmp_imm(Cond::Eq, R3, 0, send);
                    let got = self.asm.label();
                    for helper in [HELPER_READ_USER_STR, HELPER_READ_KERNEL_STR] {
                        self.asm.mov_reg(R1, R6);
                        self.asm.alu_imm(Alu::Add, R1, (8 + i * STR_LEN) as i32);
                        self.asm.mov_imm(R2, STR_LEN as i32);
                        self.asm.load(Size::DW, R3, FP, ptr);
                        self.asm.call(helper);
                        self.asm.jmp_imm(Cond::Sgt, R0, 0, got);
                    }
                    self.asm.bind(got);
                }
                self.asm.bind(send);
                self.output_from(Some(R6), 0, size)?;
                self.asm.bind(done);
                self.asm.mov_imm(R0, 0);
                self.int_slot_from(R0)
            }
            "time" => {
                // A record of its id alone: the time is taken and formatted in user space.
                let format = match args.first().map(|a| &a.kind) {
                    Some(ExprKind::Str(f)) => f.clone(),
                    _ => "%H:%M:%S\n".to_string(),
                };
                self.id_record(format, RecordKind::Time)
            }
            "exit" => {
                // Every probe stops at once, in the kernel (END still runs): nothing that fires between
                // this and user space reading the record is counted (a slow machine took 200 ms+).
                self.asm.ld_map_value(R1, raw_fd(&self.maps.stop), 0);
                self.asm.store_imm(Size::DW, R1, 0, 1);
                let rec = self.alloc(8)?;
                self.asm.ld_imm64(R0, RECORD_EXIT);
                self.asm.store_reg(Size::DW, FP, rec, R0);
                self.output_then_exit(rec, 8)?;
                Ok(Val::Int(rec))
            }
            "delete" => {
                let ExprKind::Map { name, keys } = &args[0].kind else {
                    bail!("internal error: delete without a map");
                };
                let key = self.key(name, keys)?;
                let fd = self.maps.maps[name].raw_fd();
                let done = self.asm.label();
                self.key_addr(R2, key, done)?;
                self.asm.ld_map_fd(R1, fd);
                self.asm.call(HELPER_MAP_DELETE);
                self.asm.bind(done);
                self.asm.mov_imm(R0, 0);
                self.int_slot_from(R0)
            }
            "kstack" | "ustack" => {
                let depth = match args.first().map(|a| &a.kind) {
                    Some(ExprKind::Int(n)) => *n as usize,
                    _ => 0,
                };
                self.stack(name == "ustack", depth)
            }
            "ksym" => self.expr(&args[0]),
            "usym" => {
                let v = self.expr(&args[0])?;
                let off = self.alloc(16)?;
                self.load_int(R0, v);
                self.asm.store_reg(Size::DW, FP, off, R0);
                self.asm.call(HELPER_PID_TGID);
                self.asm.alu_imm(Alu::Rsh, R0, 32);
                self.asm.store_reg(Size::DW, FP, off + 8, R0);
                self.note_pid(off + 8)?;
                Ok(Val::Buf(off, 16))
            }
            "print" | "clear" | "zero" => {
                let ExprKind::Map { name: m, .. } = &args[0].kind else {
                    bail!("internal error: {name}() without a map");
                };
                let Some(idx) = self.maps.maps.keys().position(|k| k == m) else {
                    bail!("internal error: no map @{m}");
                };
                let op = match name {
                    "print" => MAP_OP_PRINT,
                    "clear" => MAP_OP_CLEAR,
                    _ => MAP_OP_ZERO,
                };
                let top = match args.get(1).map(|a| &a.kind) {
                    Some(ExprKind::Int(n)) => (*n).min(0xffff),
                    _ => 0,
                };
                let div = match args.get(2).map(|a| &a.kind) {
                    Some(ExprKind::Int(n)) => *n,
                    _ => 1,
                };
                // The operation, then print()'s divisor.
                let rec = self.alloc(16)?;
                self.asm
                    .ld_imm64(R0, RECORD_MAP_OP | (top << 40) | (op << 32) | idx as u64);
                self.asm.store_reg(Size::DW, FP, rec, R0);
                self.asm.ld_imm64(R0, div);
                self.asm.store_reg(Size::DW, FP, rec + 8, R0);
                self.output(rec, 16)?;
                Ok(Val::Int(rec))
            }
            other => bail!("{other}() is not supported by trace yet"),
        }
    }

    /// exit(): sends the record, then ends this run of the probe. The jump is conditional on the helper's
    /// result (always 0 or a negative errno) so that the statements after exit() stay reachable for the
    /// verifier, which refuses unreachable instructions.
    /// A record of a PrintfSpec's id alone (time(), cat(): user space does the rest when it reads it).
    fn id_record(&mut self, format: String, kind: RecordKind) -> Result<Val> {
        let id = self.printfs.len() as u64;
        self.printfs.push(PrintfSpec {
            format,
            args: Vec::new(),
            kind,
        });
        let rec = self.alloc(8)?;
        self.asm.ld_imm64(R0, id);
        self.asm.store_reg(Size::DW, FP, rec, R0);
        self.output(rec, 8)?;
        self.asm.mov_imm(R0, 0);
        self.int_slot_from(R0)
    }

    fn output_then_exit(&mut self, rec: i16, size: usize) -> Result<()> {
        self.output(rec, size)?;
        self.asm.call(HELPER_KTIME);
        self.asm.jmp_imm(Cond::Ne, R0, 0, self.exit);
        Ok(())
    }

    /// Sends a record on the stack through the ring buffer; one that does not fit is counted in `lost`.
    fn output(&mut self, rec: i16, size: usize) -> Result<()> {
        self.output_from(None, rec, size)
    }

    /// Sends a record at `rec` from `base` (a register holding a map value), or on the stack.
    fn output_from(&mut self, base: Option<Reg>, rec: i16, size: usize) -> Result<()> {
        self.asm.ld_map_fd(R1, raw_fd(&self.maps.ringbuf));
        match base {
            Some(r) => {
                self.asm.mov_reg(R2, r);
                self.asm.alu_imm(Alu::Add, R2, rec as i32);
            }
            None => self.addr(R2, rec),
        }
        self.asm.mov_imm(R3, size as i32);
        self.asm.mov_imm(R4, 0);
        self.asm.call(HELPER_RINGBUF_OUTPUT);
        let ok = self.asm.label();
        self.asm.jmp_imm(Cond::Eq, R0, 0, ok);
        self.count_lost(LOST_RECORDS)?;
        self.asm.bind(ok);
        Ok(())
    }

    /// Adds one to a slot of the `lost` counters.
    fn count_lost(&mut self, slot: i32) -> Result<()> {
        let done = self.asm.label();
        self.lookup_slot(raw_fd(&self.maps.lost), slot)?;
        self.asm.jmp_imm(Cond::Eq, R0, 0, done);
        self.asm.load(Size::DW, R1, R0, 0);
        self.asm.alu_imm(Alu::Add, R1, 1);
        self.asm.store_reg(Size::DW, R0, 0, R1);
        self.asm.bind(done);
        Ok(())
    }

    /// The index of the point that fired: a constant where the probe has one point, else its cookie.
    fn point_index(&mut self) -> Result<Val> {
        if self.env.points.len() <= 1 {
            self.asm.ld_imm64(R0, self.env.first_point);
        } else {
            self.asm.mov_reg(R1, R9);
            self.asm.call(HELPER_COOKIE);
        }
        self.int_slot_from(R0)
    }

    /// kstack (an id) or ustack (an id and the pid), `depth` frames at most (0: all); a stack that cannot
    /// be stored is counted.
    fn stack(&mut self, user: bool, depth: usize) -> Result<Val> {
        if user && self.env.unwound_ustack {
            return self.unwound_stack(depth);
        }
        let Some(map) = self.maps.stacks.get(&depth) else {
            bail!("internal error: no stack map of depth {depth}");
        };
        let fd = raw_fd(map);
        let off = self.alloc(if user { 16 } else { 8 })?;
        self.asm.mov_reg(R1, R9);
        self.asm.ld_map_fd(R2, fd);
        self.asm
            .mov_imm(R3, if user { BPF_F_USER_STACK } else { 0 });
        self.asm.call(HELPER_STACKID);
        self.asm.store_reg(Size::DW, FP, off, R0);
        let ok = self.asm.label();
        self.asm.jmp_imm(Cond::Sge, R0, 0, ok);
        // -EFAULT: there is no such stack (the kernel stack of an event in user mode): nothing is lost.
        self.asm.jmp_imm(Cond::Eq, R0, -libc::EFAULT, ok);
        self.count_lost(LOST_STACKS)?;
        self.asm.bind(ok);
        if user {
            self.asm.call(HELPER_PID_TGID);
            self.asm.alu_imm(Alu::Rsh, R0, 32);
            self.asm.store_reg(Size::DW, FP, off + 8, R0);
            self.note_pid(off + 8)?;
            return Ok(Val::Buf(off, 16));
        }
        Ok(Val::Int(off))
    }

    /// ustack with unwind tables: a call of bpfprof_ustack(ctx, depth) (bpf/ustack.bpf.c, appended to the
    /// program when it is loaded), which returns the stored stack's id (0: none), or a negative errno
    /// when it was lost; then the pid, as for ustack from the stack map.
    fn unwound_stack(&mut self, depth: usize) -> Result<Val> {
        let off = self.alloc(16)?;
        self.asm.mov_reg(R1, R9);
        self.asm
            .mov_imm(R2, if depth == 0 { STACK_DEPTH } else { depth } as i32);
        self.asm.call_local();
        self.asm.store_reg(Size::DW, FP, off, R0);
        let ok = self.asm.label();
        self.asm.jmp_imm(Cond::Sge, R0, 0, ok);
        self.asm.store_imm(Size::DW, FP, off, 0);
        self.count_lost(LOST_STACKS)?;
        self.asm.bind(ok);
        self.asm.call(HELPER_PID_TGID);
        self.asm.alu_imm(Alu::Rsh, R0, 32);
        self.asm.store_reg(Size::DW, FP, off + 8, R0);
        self.note_pid(off + 8)?;
        Ok(Val::Buf(off, 16))
    }

    /// Notes the process in the 8-byte slot `at` in the `pids` map; the first time, also tells user space
    /// at once (a record), so that it can cache the process's mappings before it exits.
    fn note_pid(&mut self, at: i16) -> Result<()> {
        let Some(pids) = &self.maps.pids else {
            bail!("internal error: no pids map");
        };
        let known = self.asm.label();
        self.asm.ld_map_fd(R1, raw_fd(pids));
        self.addr(R2, at);
        self.addr(R3, at);
        self.asm.mov_imm(R4, 1); // BPF_NOEXIST
        self.asm.call(HELPER_MAP_UPDATE);
        self.asm.jmp_imm(Cond::Ne, R0, 0, known);
        let rec = self.alloc(8)?;
        self.asm.load(Size::DW, R0, FP, at);
        self.asm.ld_imm64(R1, RECORD_PID);
        self.asm.alu_reg(Alu::Or, R0, R1);
        self.asm.store_reg(Size::DW, FP, rec, R0);
        self.output(rec, 8)?;
        self.sp += 8;
        self.asm.bind(known);
        Ok(())
    }

    /// argN of a function probe (a register of the context), or of a USDT probe (where its note says).
    fn arg(&mut self, n: usize) -> Result<Val> {
        let usdt: Vec<(u64, &Vec<UsdtArg>)> = self
            .env
            .points
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match &p.how {
                How::Uprobe { usdt: Some(a), .. } => Some((self.env.first_point + i as u64, a)),
                _ => None,
            })
            .collect();
        if let Some(How::Fentry { func, .. }) = self.env.points.first().map(|p| &p.how) {
            // fentry/fexit: the context is the arguments, a u64 each.
            if n >= func.nargs {
                bail!(
                    "arg{n}: {} takes {} arguments",
                    self.env.points[0].func,
                    func.nargs
                );
            }
            self.asm.load(Size::DW, R0, R9, 8 * n as i16);
            return self.int_slot_from(R0);
        }
        if usdt.is_empty() {
            self.asm.load(Size::DW, R0, R9, ARG_REGS[n]);
            return self.int_slot_from(R0);
        }
        // Sites of one probe may keep an argument in different places: one branch per place, chosen by
        // the cookie.
        let mut places: Vec<(&UsdtArg, Vec<u64>)> = Vec::new();
        for (cookie, args) in &usdt {
            let Some(a) = args.get(n) else {
                bail!(
                    "arg{n}: the USDT probe {} has {} arguments",
                    self.env.points[(cookie - self.env.first_point) as usize].probe,
                    args.len()
                );
            };
            match places.iter_mut().find(|(p, _)| *p == a) {
                Some((_, cookies)) => cookies.push(*cookie),
                None => places.push((a, vec![*cookie])),
            }
        }
        let out = self.alloc(8)?;
        self.asm.store_imm(Size::DW, FP, out, 0);
        let done = self.asm.label();
        let cookie = if places.len() > 1 {
            self.asm.mov_reg(R1, R9);
            self.asm.call(HELPER_COOKIE);
            Some(self.int_slot_from(R0)?)
        } else {
            None
        };
        for (i, (place, cookies)) in places.iter().enumerate() {
            let next = self.asm.label();
            if let (Some(c), true) = (cookie, i + 1 < places.len()) {
                let here = self.asm.label();
                self.load_int(R1, c);
                for &k in cookies {
                    self.asm.ld_imm64(R2, k);
                    self.asm.jmp_reg(Cond::Eq, R1, R2, here);
                }
                self.asm.ja(next);
                self.asm.bind(here);
            }
            self.usdt_read(place, out)?;
            self.asm.ja(done);
            self.asm.bind(next);
        }
        self.asm.bind(done);
        Ok(Val::Int(out))
    }

    /// Reads one USDT argument into the slot `out` (zeroed), widened to 64 bits by its sign.
    fn usdt_read(&mut self, a: &UsdtArg, out: i16) -> Result<()> {
        match a.loc {
            Loc::Const(v) => self.asm.ld_imm64(R0, v as u64),
            Loc::Reg(off) => self.asm.load(Size::DW, R0, R9, off),
            Loc::Mem { reg, disp } => {
                self.asm.load(Size::DW, R3, R9, reg);
                self.asm.alu_imm(Alu::Add, R3, disp);
                self.addr(R1, out);
                self.asm.mov_imm(R2, a.size as i32);
                self.asm.call(HELPER_READ_USER);
                self.asm.load(Size::DW, R0, FP, out);
            }
        }
        if a.size < 8 {
            let shift = 64 - 8 * a.size as i32;
            self.asm.alu_imm(Alu::Lsh, R0, shift);
            let op = if a.signed { Alu::Arsh } else { Alu::Rsh };
            self.asm.alu_imm(op, R0, shift);
        }
        self.asm.store_reg(Size::DW, FP, out, R0);
        Ok(())
    }

    /// The type of values printed by name or by a format of their own rather than as numbers or text
    /// (probe, func, stacks, symbols, addresses, buffers, times), as the semantic pass typed them.
    fn special_type(&self, e: &Expr) -> Option<Type> {
        match self.info.type_of(e)? {
            Type::Int { .. }
            | Type::Str(_)
            | Type::Ptr(_)
            | Type::Record(_)
            | Type::Array(..)
            | Type::Args
            | Type::None => None,
            t => Some(t.clone()),
        }
    }
}
