//! Folded stacks (`comm;outer;...;inner count`), as bcc's -f prints them and flame graph tools read them.
use std::borrow::Cow;

use rayon::prelude::*;

use super::{StackPart, StackRecord, StackStyle};

/// Folds one record into `comm;user root..leaf;[-;]kernel root..leaf`, without the count.
pub fn fold(rec: &StackRecord, style: &StackStyle) -> String {
    let mut line = String::with_capacity(256);
    line.push_str(&sanitize(&rec.comm));
    let mut push = |frame: &str, suffix: &str| {
        line.push(';');
        line.push_str(&sanitize(frame));
        line.push_str(suffix);
    };
    if !style.kernel_stacks_only {
        match &rec.user {
            StackPart::None => {}
            StackPart::Missed => push("[Missed User Stack]", ""),
            StackPart::Frames(f) => f.iter().rev().for_each(|n| push(n, "")),
        }
    }
    if !style.user_stacks_only {
        if style.need_delimiter() && rec.user.is_present() && rec.kernel.is_present() {
            push("-", "");
        }
        match &rec.kernel {
            StackPart::None => {}
            StackPart::Missed => push("[Missed Kernel Stack]", ""),
            StackPart::Frames(f) => f.iter().rev().for_each(|n| push(n, style.kernel_suffix())),
        }
    }
    line
}

/// All records folded, as (stack, count) in the order given. Folding runs in parallel.
pub fn fold_all(records: &[StackRecord], style: &StackStyle) -> Vec<(String, u64)> {
    records
        .par_iter()
        .map(|r| (fold(r, style), r.value))
        .collect()
}

/// A frame may not contain the separator `;`, nor a newline.
fn sanitize(name: &str) -> Cow<'_, str> {
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
            fold_all(&[r], &style),
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
    fn separators_inside_names_are_replaced() {
        let r = rec(frames(&["a;b"]), StackPart::None);
        assert_eq!(fold(&r, &StackStyle::default()), "burn;a_b");
    }
}
