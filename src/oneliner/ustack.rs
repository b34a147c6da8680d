//! `ustack` with unwind tables (--unwind dwarf/auto): the walk of bpf/unwind.bpf.h, compiled by clang in
//! bpf/ustack.bpf.c, linked into trace's own programs. libbpf prepares that object (CO-RE relocations,
//! its maps created) without loading it; its subprograms (`bpfprof_ustack`, and the global functions it
//! calls: the walk's step, the stack store) are appended to each program that takes `ustack` and called
//! there (a bpf-to-bpf call), and the program is loaded with the object's BTF for their types, so that the
//! global functions stay functions the verifier checks once.
use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use anyhow::{bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{AsRawLibbpf, MapHandle, OpenObject};
use object::{Object, ObjectSymbol};

use super::insn::Insn;
use crate::bpf::skel::ustack::{object_bytes, OpenUstackSkel, UstackSkelBuilder};
use crate::unwind::UnwindMode;

/// The prepared object's subprograms and maps, for a whole trace run.
pub struct UstackLink {
    /// `bpfprof_ustack` then the functions it calls, as libbpf laid them out and relocated them (map fds
    /// in place).
    block: Vec<Insn>,
    /// The main program's BTF type id (in the object's BTF), and each function of `block`: where it
    /// starts there and its BTF type id (libbpf's func_info of the prepared program).
    main_type: u32,
    funcs: Vec<(u32, u32)>,
    btf_fd: i32,
    /// Stored stacks (id -> struct stored_stack), the loss and unwind counters, announced processes, and
    /// the unwind tables' maps.
    pub stacks: MapHandle,
    pub stats: MapHandle,
    pub proc_events: MapHandle,
    pub procs: MapHandle,
    pub mappings: MapHandle,
    pub chunks: MapHandle,
    /// Keeps the object (its maps, the BTF, the fds in `block`) open for the run.
    _skel: OpenUstackSkel<'static>,
}

/// The functions, as named in bpf/ustack.bpf.c and the headers it includes.
const MAIN: &str = "bpfprof_trace";
const USTACK: &str = "bpfprof_ustack";
const STEP: &str = "bpfprof_unwind_step";
const STORE: &str = "bpfprof_stack_store";

impl UstackLink {
    /// Opens and prepares bpf/ustack.bpf.c for `mode` (dwarf or auto).
    pub fn prepare(mode: UnwindMode) -> Result<Self> {
        // One per run, kept for the process's life: the skeleton borrows its storage.
        let storage: &'static mut MaybeUninit<OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open = UstackSkelBuilder::default()
            .open(storage)
            .map_err(|e| crate::bpf::load_error("ustack", e))?;
        let rodata = open
            .maps
            .rodata_data
            .as_deref_mut()
            .context("the ustack BPF object has no read-only data")?;
        rodata.unwind_mode = mode.bpf_value();
        rodata.max_stack_depth = super::maps::STACK_DEPTH as u32;
        let obj = open.open_object_mut().as_libbpf_object().as_ptr();
        // SAFETY: a live, opened and not yet prepared object.
        let ret = unsafe { libbpf_sys::bpf_object__prepare(obj) };
        if ret != 0 {
            return Err(std::io::Error::from_raw_os_error(-ret))
                .context("preparing the ustack BPF object (CO-RE relocation, maps)");
        }
        let prog = open.progs.bpfprof_trace.as_libbpf_object().as_ptr();
        // SAFETY: the program of a prepared object: its final instructions, valid while it is open.
        let all: Vec<Insn> = unsafe {
            let n = libbpf_sys::bpf_program__insn_cnt(prog) as usize;
            let p = libbpf_sys::bpf_program__insns(prog).cast::<Insn>();
            if p.is_null() {
                bail!("the ustack program has no instructions");
            }
            std::slice::from_raw_parts(p, n).to_vec()
        };
        let sizes = function_sizes(object_bytes())?;
        let main_len = sizes[MAIN];
        // SAFETY: the program of a prepared object: its func_info follows its final layout.
        let info: Vec<(u32, u32)> = unsafe {
            let n = libbpf_sys::bpf_program__func_info_cnt(prog) as usize;
            let p = libbpf_sys::bpf_program__func_info(prog);
            if p.is_null() {
                bail!("the ustack program has no func_info");
            }
            std::slice::from_raw_parts(p, n)
                .iter()
                .map(|f| (f.insn_off, f.type_id))
                .collect()
        };
        // libbpf appends the subprograms a program calls after it: main calls bpfprof_ustack only, which
        // comes first after main.
        if info.first().map(|f| f.0) != Some(0)
            || info.get(1).map(|f| f.0 as usize) != Some(main_len)
            || call_targets(&all[..main_len], 0) != [main_len]
            || info.len() < 3
        {
            bail!(
                "internal error: the ustack object is not laid out as expected ({} instructions, {} functions)",
                all.len(),
                info.len()
            );
        }
        // SAFETY: a prepared object: its BTF is loaded in the kernel.
        let (btf, btf_fd) = unsafe {
            let btf = libbpf_sys::bpf_object__btf(obj);
            if btf.is_null() {
                bail!("the ustack BPF object has no BTF");
            }
            (btf, libbpf_sys::btf__fd(btf))
        };
        if btf_fd < 0 {
            bail!("the kernel did not take the ustack object's BTF");
        }
        let type_of = |name: &str| -> Result<u32> {
            let c = std::ffi::CString::new(name)?;
            // SAFETY: a live BTF object and a NUL-terminated name.
            let id = unsafe {
                libbpf_sys::btf__find_by_name_kind(btf, c.as_ptr(), libbpf_sys::BTF_KIND_FUNC)
            };
            u32::try_from(id).with_context(|| format!("no BTF for {name}"))
        };
        if info[0].1 != type_of(MAIN)? || info[1].1 != type_of(USTACK)? {
            bail!("internal error: the ustack object's functions are not in the expected order");
        }
        let main_type = info[0].1;
        let funcs = info[1..]
            .iter()
            .map(|&(at, ty)| (at - main_len as u32, ty))
            .collect();
        let m = &open.maps;
        let stacks = handle(m.stacks.as_libbpf_object().as_ptr())?;
        let stats = handle(m.stats.as_libbpf_object().as_ptr())?;
        let proc_events = handle(m.proc_events.as_libbpf_object().as_ptr())?;
        let procs = handle(m.unwind_procs.as_libbpf_object().as_ptr())?;
        let mappings = handle(m.unwind_mappings.as_libbpf_object().as_ptr())?;
        let chunks = handle(m.unwind_chunks.as_libbpf_object().as_ptr())?;
        Ok(Self {
            block: all[main_len..].to_vec(),
            main_type,
            funcs,
            btf_fd,
            stacks,
            stats,
            proc_events,
            procs,
            mappings,
            chunks,
            _skel: open,
        })
    }

    /// Appends the subprograms to `prog` and points its calls of them (bpf-to-bpf calls whose offset is
    /// not set yet, see Asm::call_local) at bpfprof_ustack. Returns the program's func_info records
    /// (instruction, BTF type) for loading it with `btf_fd`.
    pub fn link(&self, prog: &mut Vec<Insn>) -> Vec<[u32; 2]> {
        let at = prog.len();
        for (i, insn) in prog.iter_mut().enumerate() {
            if is_local_call(insn) {
                insn.imm = (at as i64 - (i as i64 + 1)) as i32;
            }
        }
        prog.extend_from_slice(&self.block);
        std::iter::once([0, self.main_type])
            .chain(self.funcs.iter().map(|&(off, ty)| [at as u32 + off, ty]))
            .collect()
    }

    /// The object's BTF, which the func_info records refer to.
    pub fn btf_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the fd is libbpf's, open as long as the object (self) is.
        unsafe { BorrowedFd::borrow_raw(self.btf_fd) }
    }
}

/// Whether an instruction is a bpf-to-bpf call (BPF_CALL with src_reg BPF_PSEUDO_CALL).
pub fn is_local_call(i: &Insn) -> bool {
    i.code == 0x85 && i.regs >> 4 == 1
}

/// The targets of the bpf-to-bpf calls in `insns` (which start at `base` in their program), in order.
fn call_targets(insns: &[Insn], base: usize) -> Vec<usize> {
    insns
        .iter()
        .enumerate()
        .filter(|(_, i)| is_local_call(i))
        .map(|(n, i)| (base as i64 + n as i64 + 1 + i64::from(i.imm)) as usize)
        .collect()
}

/// Each function's length in instructions, from the object's symbol table.
fn function_sizes(elf: &[u8]) -> Result<HashMap<String, usize>> {
    let file = object::File::parse(elf).context("reading the ustack BPF object")?;
    let mut sizes = HashMap::new();
    for sym in file.symbols() {
        if sym.kind() == object::SymbolKind::Text {
            if let Ok(name) = sym.name() {
                sizes.insert(name.to_string(), sym.size() as usize / 8);
            }
        }
    }
    for name in [MAIN, USTACK, STEP, STORE] {
        if !sizes.contains_key(name) {
            bail!("internal error: the ustack object has no function {name}");
        }
    }
    Ok(sizes)
}

/// A handle of its own on one of the object's maps (libbpf keeps the fd it created).
fn handle(map: *mut libbpf_sys::bpf_map) -> Result<MapHandle> {
    // SAFETY: a map of a prepared object: its fd is open.
    let fd = unsafe { libbpf_sys::bpf_map__fd(map) };
    if fd < 0 {
        bail!("a ustack map was not created");
    }
    // SAFETY: the fd is open for as long as the object, which outlives this call.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let mut info = libbpf_sys::bpf_map_info::default();
    let mut len = std::mem::size_of::<libbpf_sys::bpf_map_info>() as u32;
    // SAFETY: a map fd, and a buffer of the size passed.
    let ret = unsafe {
        libbpf_sys::bpf_obj_get_info_by_fd(
            fd.as_fd().as_raw_fd(),
            (&mut info as *mut libbpf_sys::bpf_map_info).cast(),
            &mut len,
        )
    };
    if ret != 0 {
        bail!(
            "reading a ustack map's id: {}",
            std::io::Error::from_raw_os_error(-ret)
        );
    }
    MapHandle::from_map_id(info.id).context("opening a ustack map")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_object_has_the_functions_trace_links() {
        let sizes = function_sizes(object_bytes()).unwrap();
        assert!(sizes[USTACK] > 10 && sizes[STEP] > 10 && sizes[MAIN] > 0);
    }

    #[test]
    fn local_calls_are_found_by_their_target() {
        let call = |imm| Insn {
            code: 0x85,
            regs: 1 << 4,
            off: 0,
            imm,
        };
        let helper = Insn {
            code: 0x85,
            regs: 0,
            off: 0,
            imm: 5,
        };
        assert_eq!(call_targets(&[helper, call(1), call(-2)], 10), vec![13, 11]);
    }
}
