//! Folded stacks (`comm;outer;...;inner count`), as bcc's -f prints them and flame graph tools read them.
use std::borrow::Cow;
use std::sync::Arc;

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use super::{StackPart, StackRecord, StackStyle};

/// Folds one record into `comm;user root..leaf;[-;]kernel root..leaf`, without the count.
pub fn fold(rec: &StackRecord, style: &StackStyle) -> String {
    let mut line = String::with_capacity(256);
    line.push_str(&sanitize(&rec.comm));
    push_root_first(&mut line, &rec.user, &rec.kernel, style, "");
    line
}

/// Appends `;`-separated frames of one thread, outermost first: user root..leaf, `-` with -d, kernel
/// root..leaf. `side` is a suffix for every frame (`_[w]` marks a waker's frames), else kernel frames
/// carry the style's `_[k]`.
pub fn push_root_first(
    line: &mut String,
    user: &StackPart,
    kernel: &StackPart,
    style: &StackStyle,
    side: &str,
) {
    if !style.kernel_stacks_only {
        push_part(line, user, "[Missed User Stack]", side, false);
    }
    if !style.user_stacks_only {
        if style.need_delimiter() && user.is_present() && kernel.is_present() {
            push_frame(line, "-", "");
        }
        let ksuffix = if side.is_empty() {
            style.kernel_suffix()
        } else {
            side
        };
        push_part(line, kernel, "[Missed Kernel Stack]", ksuffix, false);
    }
}

/// As `push_root_first`, innermost first: kernel leaf..root, `-` with -d, user leaf..root (the waker's
/// half of bcc's offwaketime line, which reads from the wakeup back to the waker's root).
pub fn push_leaf_first(
    line: &mut String,
    user: &StackPart,
    kernel: &StackPart,
    style: &StackStyle,
    side: &str,
) {
    if !style.user_stacks_only {
        let ksuffix = if side.is_empty() {
            style.kernel_suffix()
        } else {
            side
        };
        push_part(line, kernel, "[Missed Kernel Stack]", ksuffix, true);
        if style.need_delimiter() && user.is_present() && kernel.is_present() {
            push_frame(line, "-", "");
        }
    }
    if !style.kernel_stacks_only {
        push_part(line, user, "[Missed User Stack]", side, true);
    }
}

/// Appends `;frame` with its suffix.
pub fn push_frame(line: &mut String, frame: &str, suffix: &str) {
    line.push(';');
    line.push_str(&sanitize(frame));
    line.push_str(suffix);
}

fn push_part(line: &mut String, part: &StackPart, missed: &str, suffix: &str, leaf_first: bool) {
    match part {
        StackPart::None => {}
        StackPart::Missed => push_frame(line, missed, suffix),
        StackPart::Frames(f) if leaf_first => f.iter().for_each(|n| push_frame(line, n, suffix)),
        StackPart::Frames(f) => f.iter().rev().for_each(|n| push_frame(line, n, suffix)),
    }
}

/// All records folded, as (stack, count), in no particular order. Records whose comm and stacks are the same
/// shared values (by pointer: the symbolizer interns names and sequences of them) are summed first,
/// whatever process or raw addresses they came from, and only the merged stacks are turned into text: much
/// faster when many raw stacks differ only in addresses within the same functions. Records that are equal
/// but not shared are merely folded separately (`merge_folded`-style summing of the text still applies).
pub fn fold_merged(records: &[StackRecord], style: &StackStyle) -> Vec<(String, u64)> {
    let mut groups: FxHashMap<[usize; 3], (&StackRecord, u64)> = FxHashMap::default();
    groups.reserve(records.len());
    for r in records {
        let key = [
            Arc::as_ptr(&r.comm).cast::<u8>() as usize,
            identity(&r.user),
            identity(&r.kernel),
        ];
        groups.entry(key).or_insert((r, 0)).1 += r.value;
    }
    groups
        .into_par_iter()
        .map(|(_, (r, value))| (fold(r, style), value))
        .collect()
}

/// What identifies a stack part: 0 none, 1 missed, else the address of its shared frames.
fn identity(part: &StackPart) -> usize {
    match part {
        StackPart::None => 0,
        StackPart::Missed => 1,
        StackPart::Frames(f) => Arc::as_ptr(f).cast::<u8>() as usize,
    }
}

/// A frame may not contain the separator `;`, nor a newline.
pub fn sanitize(name: &str) -> Cow<'_, str> {
    if name.contains([';', '\n']) {
        Cow::Owned(name.replace([';', '\n'], "_"))
    } else {
        Cow::Borrowed(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(user: StackPart, kernel: StackPart) -> StackRecord {
        StackRecord {
            tid: 0,
            comm: "burn".into(),
            pid: 42,
            user,
            kernel,
            value: 7,
        }
    }

    fn frames(names: &[&str]) -> StackPart {
        StackPart::Frames(names.iter().map(|&s| s.into()).collect())
    }

    #[test]
    fn user_root_first_then_kernel_root_first() {
        let r = rec(
            frames(&["leaf", "mid", "main"]),
            frames(&["vfs_read", "ksys_read"]),
        );
        let style = StackStyle::default();
        assert_eq!(fold(&r, &style), "burn;main;mid;leaf;ksys_read;vfs_read");
        assert_eq!(
            fold_merged(&[r], &style),
            vec![("burn;main;mid;leaf;ksys_read;vfs_read".to_string(), 7)]
        );
    }

    #[test]
    fn delimiter_and_annotations() {
        let r = rec(frames(&["leaf", "main"]), frames(&["vfs_read"]));
        let style = StackStyle {
            delimited: true,
            annotations: true,
            ..Default::default()
        };
        assert_eq!(fold(&r, &style), "burn;main;leaf;-;vfs_read_[k]");
        // No delimiter when one side is absent, as bcc.
        let r = rec(frames(&["leaf", "main"]), StackPart::None);
        assert_eq!(fold(&r, &style), "burn;main;leaf");
    }

    #[test]
    fn only_one_side_and_missed_stacks() {
        let r = rec(StackPart::Missed, frames(&["vfs_read"]));
        let u = StackStyle {
            user_stacks_only: true,
            delimited: true,
            ..Default::default()
        };
        assert_eq!(fold(&r, &u), "burn;[Missed User Stack]");
        let k = StackStyle {
            kernel_stacks_only: true,
            ..Default::default()
        };
        assert_eq!(fold(&r, &k), "burn;vfs_read");
        let r = rec(frames(&["a"]), StackPart::Missed);
        assert_eq!(
            fold(&r, &StackStyle::default()),
            "burn;a;[Missed Kernel Stack]"
        );
    }

    #[test]
    fn merged_folding_sums_records_with_the_same_frames() {
        let (a, b): (crate::render::Frame, crate::render::Frame) = ("a".into(), "b".into());
        let user = |v: &[&crate::render::Frame]| {
            StackPart::Frames(v.iter().map(|f| Arc::clone(f)).collect())
        };
        let mut r1 = rec(user(&[&a, &b]), StackPart::None);
        let mut r2 = r1.clone();
        r2.pid = 43; // another process, same frames: merged
        r1.value = 2;
        let r3 = rec(user(&[&b, &a]), StackPart::None);
        let mut out = fold_merged(&[r1, r2, r3], &StackStyle::default());
        out.sort();
        assert_eq!(
            out,
            vec![("burn;a;b".to_string(), 7), ("burn;b;a".to_string(), 9)]
        );
    }

    #[test]
    fn separators_inside_names_are_replaced() {
        let r = rec(frames(&["a;b"]), StackPart::None);
        assert_eq!(fold(&r, &StackStyle::default()), "burn;a_b");
    }
}
