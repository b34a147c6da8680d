//! Pure renderers: data in, text out. Golden-testable without root.
use std::sync::Arc;
pub mod bcc;
pub mod flamegraph;
pub mod folded;
pub mod heatmap;
pub mod hist;
pub mod pprof;
pub mod wait;

/// A frame's name; shared by every stack it appears in.
pub type Frame = Arc<str>;

/// One side (user or kernel) of a sampled stack.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StackPart {
    /// There is none: a kernel thread's user stack, or the kernel stack of a sample taken in user mode.
    None,
    /// It could not be captured or stored (counted in the loss report).
    Missed,
    /// Frame names, innermost first (shared: many records have the same stack).
    Frames(Arc<[Frame]>),
}

impl StackPart {
    pub fn is_present(&self) -> bool {
        !matches!(self, StackPart::None)
    }
}

/// A symbolized stack and the value summed for it (samples, or microseconds for off-CPU tools).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackRecord {
    pub comm: Arc<str>,
    pub pid: u32,
    /// The thread, where a tool keeps it apart (pprof's `tid` label), else 0.
    pub tid: u32,
    pub user: StackPart,
    pub kernel: StackPart,
    pub value: u64,
}

/// How stacks are laid out: which sides are shown, the delimiter, kernel annotations.
#[derive(Clone, Copy, Debug, Default)]
pub struct StackStyle {
    pub user_stacks_only: bool,
    pub kernel_stacks_only: bool,
    /// -d: a delimiter between the kernel and user frames.
    pub delimited: bool,
    /// -a: kernel frames carry the `_[k]` suffix.
    pub annotations: bool,
}

impl StackStyle {
    pub fn need_delimiter(&self) -> bool {
        self.delimited && !(self.user_stacks_only || self.kernel_stacks_only)
    }

    /// The suffix kernel frames carry: `_[k]` with -a, else nothing.
    pub fn kernel_suffix(&self) -> &'static str {
        if self.annotations {
            "_[k]"
        } else {
            ""
        }
    }
}

/// Sorts records as bcc prints them: ascending by value, ties in a stable, deterministic order.
pub fn sort_ascending(records: &mut [StackRecord]) {
    records.sort_by(|a, b| {
        a.value
            .cmp(&b.value)
            .then_with(|| a.comm.cmp(&b.comm))
            .then_with(|| a.pid.cmp(&b.pid))
            .then_with(|| a.user.cmp(&b.user))
            .then_with(|| a.kernel.cmp(&b.kernel))
    });
}
