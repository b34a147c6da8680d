//! Layouts of the wakeup and offwake tools (bcc's wakeuptime and offwaketime): a blocked thread, the thread
//! that woke it, and the time it waited, as text blocks and folded lines.
use std::fmt::Write as _;
use std::sync::Arc;

use super::bcc::{lines_leaf_first, lines_root_first};
use super::folded::{push_frame, push_leaf_first, push_root_first, sanitize};
use super::{StackPart, StackStyle};

/// One thread in a wait: its comm, id and stacks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Side {
    pub comm: Arc<str>,
    pub pid: u32,
    pub user: StackPart,
    pub kernel: StackPart,
}

/// Time waited (microseconds) by a blocked thread (the target) and, where known, the thread that woke it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitRecord {
    pub target: Side,
    pub waker: Option<Side>,
    pub value: u64,
}

/// The suffix that marks a waker's frames in an offwake flame graph (flamegraph.pl's `chain` palette).
pub const WAKER_SUFFIX: &str = "_[w]";

/// wakeup, folded as bcc's wakeuptime: `waker;user root..leaf;kernel root..leaf;target`.
pub fn wakeup_fold(rec: &WaitRecord, style: &StackStyle) -> String {
    let mut line = String::with_capacity(256);
    if let Some(w) = &rec.waker {
        line.push_str(&sanitize(&w.comm));
        push_root_first(&mut line, &w.user, &w.kernel, style, "");
    }
    push_frame(&mut line, &rec.target.comm, "");
    line
}

/// wakeup, as bcc's wakeuptime prints it: `target:`, the waker's frames innermost first, `waker:` and its
/// comm (no pid, as bcc: blocks that read the same are one), without the time line (`value_line`).
pub fn wakeup_head(rec: &WaitRecord, style: &StackStyle) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "    {:<16} {}", "target:", rec.target.comm);
    if let Some(w) = &rec.waker {
        lines_leaf_first(&mut out, &w.user, &w.kernel, style, "--");
        let _ = writeln!(out, "    {:<16} {}", "waker:", w.comm);
    }
    out
}

/// The time line that ends a text block, and the blank line after it.
pub fn value_line(value: u64) -> String {
    format!("        {value}\n\n")
}

/// offwake, folded exactly as bcc's offwaketime -f:
/// `target;user root..leaf;kernel root..leaf;--;waker kernel leaf..root;waker user leaf..root;waker`,
/// so that the waker's stack stands upside down on the blocked one in a flame graph. `waker_suffix`
/// (`_[w]` for a chain-coloured SVG, else empty) is appended to the waker's frames. A wait nobody
/// woke (the thread was preempted, or woken before tracing began) ends after the target's stack.
pub fn offwake_fold(rec: &WaitRecord, style: &StackStyle, waker_suffix: &str) -> String {
    let mut line = String::with_capacity(512);
    let t = &rec.target;
    line.push_str(&sanitize(&t.comm));
    push_root_first(&mut line, &t.user, &t.kernel, style, "");
    if let Some(w) = &rec.waker {
        push_frame(&mut line, "--", "");
        push_leaf_first(&mut line, &w.user, &w.kernel, style, waker_suffix);
        push_frame(&mut line, &w.comm, waker_suffix);
    }
    line
}

/// offwake, as bcc's offwaketime prints it: the waker from its root down to the wakeup, `--`, then the
/// blocked thread from where it blocked back to its root, and the time.
pub fn offwake_block(rec: &WaitRecord, style: &StackStyle) -> String {
    let mut out = String::new();
    if let Some(w) = &rec.waker {
        let _ = writeln!(out, "    {:<16} {} {}", "waker:", w.comm, w.pid);
        lines_root_first(&mut out, &w.user, &w.kernel, style, "-");
        let _ = writeln!(out, "    {:<16} --", "--");
    }
    let t = &rec.target;
    lines_leaf_first(&mut out, &t.user, &t.kernel, style, "-");
    let _ = writeln!(out, "    {:<16} {} {}", "target:", t.comm, t.pid);
    let _ = writeln!(out, "        {}\n", rec.value);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(names: &[&str]) -> StackPart {
        StackPart::Frames(names.iter().map(|&s| s.into()).collect())
    }

    fn rec() -> WaitRecord {
        WaitRecord {
            target: Side {
                comm: "reader".into(),
                pid: 10,
                user: frames(&["read", "reader_loop", "main"]),
                kernel: frames(&["schedule", "pipe_read"]),
            },
            waker: Some(Side {
                comm: "writer".into(),
                pid: 11,
                user: frames(&["write", "writer_loop"]),
                kernel: frames(&["try_to_wake_up", "pipe_write"]),
            }),
            value: 1500,
        }
    }

    #[test]
    fn offwake_folds_as_bcc() {
        assert_eq!(
            offwake_fold(&rec(), &StackStyle::default(), ""),
            "reader;main;reader_loop;read;pipe_read;schedule;--;try_to_wake_up;pipe_write;write;writer_loop;writer"
        );
        let style = StackStyle {
            delimited: true,
            ..Default::default()
        };
        assert_eq!(
            offwake_fold(&rec(), &style, WAKER_SUFFIX),
            "reader;main;reader_loop;read;-;pipe_read;schedule;--;try_to_wake_up_[w];pipe_write_[w];-;write_[w];writer_loop_[w];writer_[w]"
        );
        let mut alone = rec();
        alone.waker = None;
        assert_eq!(
            offwake_fold(&alone, &StackStyle::default(), ""),
            "reader;main;reader_loop;read;pipe_read;schedule"
        );
    }

    #[test]
    fn offwake_block_reads_from_waker_root_to_target_root() {
        let expected = "    waker:           writer 11\n    writer_loop\n    write\n    pipe_write\n    try_to_wake_up\n    --               --\n    schedule\n    pipe_read\n    read\n    reader_loop\n    main\n    target:          reader 10\n        1500\n\n";
        assert_eq!(offwake_block(&rec(), &StackStyle::default()), expected);
    }

    #[test]
    fn wakeup_layouts() {
        let k = StackStyle {
            kernel_stacks_only: true,
            ..Default::default()
        };
        assert_eq!(
            wakeup_fold(&rec(), &k),
            "writer;pipe_write;try_to_wake_up;reader"
        );
        assert_eq!(
            wakeup_head(&rec(), &k) + &value_line(1500),
            "    target:          reader\n    try_to_wake_up\n    pipe_write\n    waker:           writer\n        1500\n\n"
        );
        assert_eq!(
            wakeup_fold(&rec(), &StackStyle::default()),
            "writer;writer_loop;write;pipe_write;try_to_wake_up;reader"
        );
    }
}
