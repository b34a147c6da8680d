//! The kernel's BTF (vmlinux's, through libbpf): a function's id fentry/fexit programs are loaded for, and
//! how many arguments the function takes (fexit's return value follows them); how many arguments a
//! tracepoint passes.
use std::ffi::CString;

use anyhow::{bail, Result};

/// A kernel function's BTF id and argument count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelFunc {
    pub btf_id: u32,
    pub nargs: usize,
}

/// vmlinux's BTF, freed on drop.
pub struct Vmlinux(*mut libbpf_sys::btf);

impl Vmlinux {
    pub fn load() -> Result<Self> {
        // SAFETY: no arguments; the result is checked below.
        let btf = unsafe { libbpf_sys::btf__load_vmlinux_btf() };
        // SAFETY: libbpf's error check of a returned pointer.
        if btf.is_null() || unsafe { libbpf_sys::libbpf_get_error(btf.cast()) } != 0 {
            bail!("this kernel has no BTF (/sys/kernel/btf/vmlinux): fentry/fexit need it");
        }
        Ok(Self(btf))
    }

    /// The function `name` of vmlinux (functions of modules are not looked up).
    pub fn func(&self, name: &str) -> Result<KernelFunc> {
        let cname = CString::new(name)?;
        // SAFETY: a live BTF object and a NUL-terminated name.
        let id = unsafe {
            libbpf_sys::btf__find_by_name_kind(self.0, cname.as_ptr(), libbpf_sys::BTF_KIND_FUNC)
        };
        if id <= 0 {
            bail!("no kernel function {name} in vmlinux's BTF");
        }
        // SAFETY: ids returned by libbpf for this object; btf_type's union holds the FUNC's prototype id.
        let nargs = unsafe {
            let func = libbpf_sys::btf__type_by_id(self.0, id as u32);
            let proto = libbpf_sys::btf__type_by_id(self.0, (*func).__bindgen_anon_1.type_);
            if proto.is_null() {
                0
            } else {
                ((*proto).info & 0xffff) as usize
            }
        };
        Ok(KernelFunc {
            btf_id: id as u32,
            nargs,
        })
    }
}

impl Vmlinux {
    /// How many arguments the tracepoint `name` passes, from its BTF prototype (`btf_trace_NAME`); None
    /// where there is no such tracepoint.
    pub fn tracepoint_args(&self, name: &str) -> Option<usize> {
        let typedef = CString::new(format!("btf_trace_{name}")).ok()?;
        // SAFETY: a live BTF object and a NUL-terminated name; each id comes from libbpf for this object
        // and each type is checked for its kind before its union is read.
        unsafe {
            let id = libbpf_sys::btf__find_by_name_kind(
                self.0,
                typedef.as_ptr(),
                libbpf_sys::BTF_KIND_TYPEDEF,
            );
            let kind = |t: *const libbpf_sys::btf_type| ((*t).info >> 24) & 0x1f;
            let mut t = if id > 0 {
                libbpf_sys::btf__type_by_id(self.0, id as u32)
            } else {
                std::ptr::null()
            };
            // typedef -> pointer -> prototype (void *ctx, the tracepoint's arguments...)
            for want in [libbpf_sys::BTF_KIND_TYPEDEF, libbpf_sys::BTF_KIND_PTR] {
                t = if !t.is_null() && kind(t) == want {
                    libbpf_sys::btf__type_by_id(self.0, (*t).__bindgen_anon_1.type_)
                } else {
                    std::ptr::null()
                };
            }
            (!t.is_null() && kind(t) == libbpf_sys::BTF_KIND_FUNC_PROTO)
                .then(|| (((*t).info & 0xffff) as usize).saturating_sub(1))
        }
    }
}

impl Drop for Vmlinux {
    fn drop(&mut self) {
        // SAFETY: owned, freed once.
        unsafe { libbpf_sys::btf__free(self.0) };
    }
}
