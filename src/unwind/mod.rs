//! User stacks without frame pointers: unwind tables built from each binary's `.eh_frame` (table.rs),
//! loaded into the maps that bpf/unwind.bpf.h walks (loader.rs), for the processes being traced.
pub mod loader;
pub mod maps;
pub mod table;
pub mod watch;

use std::str::FromStr;

pub use loader::{UnwindStats, Unwinder};

/// How user stacks are walked (`--unwind`; enum unwind_mode in bpf/unwind.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum UnwindMode {
    /// Frame pointers only, as bcc and `perf -g`.
    Fp,
    /// Unwind tables only: a frame without one ends the stack (marked).
    Dwarf,
    /// Unwind tables where a binary has them, frame pointers elsewhere.
    #[default]
    Auto,
}

impl UnwindMode {
    pub fn bpf_value(self) -> u32 {
        match self {
            UnwindMode::Fp => 0,
            UnwindMode::Dwarf => 1,
            UnwindMode::Auto => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            UnwindMode::Fp => "fp",
            UnwindMode::Dwarf => "dwarf",
            UnwindMode::Auto => "auto",
        }
    }
}

impl FromStr for UnwindMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fp" => Ok(UnwindMode::Fp),
            "dwarf" => Ok(UnwindMode::Dwarf),
            "auto" => Ok(UnwindMode::Auto),
            _ => Err(format!("{s}: expected fp, dwarf or auto")),
        }
    }
}

/// `enum unwind_end` in bpf/unwind.h: why a table walk ended, and the marker frame user space names.
pub mod end {
    pub const COMPLETE: usize = 0;
    pub const NO_CFI: usize = 1;
    pub const UNSUPPORTED: usize = 2;
    pub const NO_MAPPING: usize = 3;
    pub const JIT: usize = 4;
    pub const NOT_LOADED: usize = 5;
    pub const NO_ROOM: usize = 6;
    pub const READ_FAILED: usize = 7;
    pub const BAD_FRAME: usize = 8;
    pub const TRUNCATED: usize = 9;
    pub const REASONS: usize = 10;
}

/// UNWIND_MARKER in bpf/unwind.h: a stack's last frame at or above it says why the walk ended there.
pub const MARKER: u64 = 0xffff_ffff_ffff_f000;

/// The reason a marker frame stands for, or None for a real frame.
pub fn marker_reason(addr: u64) -> Option<usize> {
    (addr >= MARKER)
        .then(|| (addr - MARKER) as usize)
        .filter(|&r| r < end::REASONS)
}

/// A marker's frame name; `module` is the file of the frame before it (where the walk stopped).
pub fn marker_name(reason: usize, module: Option<&str>) -> String {
    let at = |what: &str| match module {
        Some(m) => format!("[unwind stopped: {what} in {m}]"),
        None => format!("[unwind stopped: {what}]"),
    };
    match reason {
        end::NO_CFI => at("no CFI"),
        end::UNSUPPORTED => at("unsupported CFI rule"),
        end::NO_MAPPING => "[unwind stopped: code in no known mapping]".into(),
        end::JIT => "[unwind stopped: JIT code without frame pointers]".into(),
        end::NOT_LOADED => "[unwind stopped: tables not loaded yet]".into(),
        end::NO_ROOM => at("table did not fit --unwind-memory"),
        end::READ_FAILED => "[unwind stopped: stack not readable]".into(),
        end::BAD_FRAME => at("bad frame"),
        end::TRUNCATED => "[truncated: --perf-max-stack-depth]".into(),
        _ => "[unwind stopped]".into(),
    }
}

/// What the summary says of a reason (counts of stacks that ended early).
pub fn reason_desc(reason: usize) -> &'static str {
    match reason {
        end::NO_CFI => "no CFI",
        end::UNSUPPORTED => "unsupported CFI",
        end::NO_MAPPING => "code in no known mapping",
        end::JIT => "JIT code",
        end::NOT_LOADED => "tables not loaded yet",
        end::NO_ROOM => "table did not fit",
        end::READ_FAILED => "stack not readable",
        end::BAD_FRAME => "bad frame",
        end::TRUNCATED => "depth limit",
        _ => "complete",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_name_their_reason_and_module() {
        assert_eq!(marker_reason(0x7f00_0000_1234), None);
        assert_eq!(marker_reason(MARKER + 1), Some(end::NO_CFI));
        assert_eq!(marker_reason(MARKER + 0x800), None);
        assert_eq!(
            marker_name(end::NO_CFI, Some("libfoo.so")),
            "[unwind stopped: no CFI in libfoo.so]"
        );
        assert_eq!(
            marker_name(end::NOT_LOADED, Some("x")),
            "[unwind stopped: tables not loaded yet]"
        );
        assert_eq!("dwarf".parse(), Ok(UnwindMode::Dwarf));
        assert!("frame".parse::<UnwindMode>().is_err());
    }
}
