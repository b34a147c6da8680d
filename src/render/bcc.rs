//! bcc's multi-line stack layout (profile, offcputime): kernel frames, `--`, user frames, `-  comm (pid)`, count.
use std::fmt::Write as _;

use super::{StackPart, StackRecord, StackStyle};

/// Renders one record exactly as bcc's profile.py prints it (leaf first, four-space indent, blank line after).
pub fn stack_block(rec: &StackRecord, style: &StackStyle) -> String {
    let mut out = String::new();
    lines_leaf_first(&mut out, &rec.user, &rec.kernel, style, "--");
    let _ = writeln!(out, "    {:<16} {} ({})", "-", rec.comm, rec.pid);
    let _ = writeln!(out, "        {}\n", rec.value);
    out
}

/// One thread's frames, a line each, innermost first: kernel leaf..root, `delimiter` with -d, user
/// leaf..root.
pub fn lines_leaf_first(
    out: &mut String,
    user: &StackPart,
    kernel: &StackPart,
    style: &StackStyle,
    delimiter: &str,
) {
    if !style.user_stacks_only {
        kernel_lines(out, kernel, style, false);
    }
    if !style.kernel_stacks_only {
        if style.need_delimiter() && user.is_present() && kernel.is_present() {
            let _ = writeln!(out, "    {delimiter}");
        }
        user_lines(out, user, false);
    }
}

/// One thread's frames outermost first: user root..leaf, `delimiter` with -d, kernel root..leaf (the
/// waker's half of bcc's offwaketime block, which reads down to the wakeup).
pub fn lines_root_first(
    out: &mut String,
    user: &StackPart,
    kernel: &StackPart,
    style: &StackStyle,
    delimiter: &str,
) {
    if !style.kernel_stacks_only {
        user_lines(out, user, true);
    }
    if !style.user_stacks_only {
        if style.need_delimiter() && user.is_present() && kernel.is_present() {
            let _ = writeln!(out, "    {delimiter}");
        }
        kernel_lines(out, kernel, style, true);
    }
}

fn kernel_lines(out: &mut String, kernel: &StackPart, style: &StackStyle, root_first: bool) {
    match kernel {
        StackPart::None => {}
        StackPart::Missed => out.push_str("    [Missed Kernel Stack]\n"),
        StackPart::Frames(f) => {
            let suffix = style.kernel_suffix();
            let mut line = |name: &super::Frame| {
                let _ = writeln!(out, "    {name}{suffix}");
            };
            if root_first {
                f.iter().rev().for_each(&mut line);
            } else {
                f.iter().for_each(&mut line);
            }
        }
    }
}

fn user_lines(out: &mut String, user: &StackPart, root_first: bool) {
    match user {
        StackPart::None => {}
        StackPart::Missed => out.push_str("    [Missed User Stack]\n"),
        StackPart::Frames(f) => {
            let mut line = |name: &super::Frame| {
                let _ = writeln!(out, "    {name}");
            };
            if root_first {
                f.iter().rev().for_each(&mut line);
            } else {
                f.iter().for_each(&mut line);
            }
        }
    }
}

/// bcc profile's header line, e.g. `Sampling at 49 Hertz of all threads by user + kernel stack... Hit Ctrl-C to end.`
pub fn profile_header(
    freq_desc: &str,
    who: &str,
    stacks: &str,
    cpu: Option<u32>,
    duration: Option<u64>,
) -> String {
    let on_cpu = cpu.map(|c| format!(" on CPU#{c}")).unwrap_or_default();
    match duration {
        Some(s) => format!("Sampling at {freq_desc} of {who} by {stacks}{on_cpu} for {s} secs."),
        None => {
            format!("Sampling at {freq_desc} of {who} by {stacks}{on_cpu}... Hit Ctrl-C to end.")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> StackRecord {
        StackRecord {
            tid: 0,
            comm: "burn".into(),
            pid: 4242,
            user: StackPart::Frames(["spin".into(), "hot_two_thirds".into(), "main".into()].into()),
            kernel: StackPart::Frames(["vfs_read".into(), "ksys_read".into()].into()),
            value: 12,
        }
    }

    #[test]
    fn bcc_profile_layout() {
        let expected = "    vfs_read\n    ksys_read\n    spin\n    hot_two_thirds\n    main\n    -                burn (4242)\n        12\n\n";
        assert_eq!(stack_block(&rec(), &StackStyle::default()), expected);
    }

    #[test]
    fn delimited_and_annotated() {
        let style = StackStyle {
            delimited: true,
            annotations: true,
            ..Default::default()
        };
        let expected = "    vfs_read_[k]\n    ksys_read_[k]\n    --\n    spin\n    hot_two_thirds\n    main\n    -                burn (4242)\n        12\n\n";
        assert_eq!(stack_block(&rec(), &style), expected);
    }

    #[test]
    fn one_side_only() {
        let k = StackStyle {
            kernel_stacks_only: true,
            delimited: true,
            ..Default::default()
        };
        assert_eq!(
            stack_block(&rec(), &k),
            "    vfs_read\n    ksys_read\n    -                burn (4242)\n        12\n\n"
        );
        let mut r = rec();
        r.user = StackPart::Missed;
        let u = StackStyle {
            user_stacks_only: true,
            ..Default::default()
        };
        assert_eq!(
            stack_block(&r, &u),
            "    [Missed User Stack]\n    -                burn (4242)\n        12\n\n"
        );
    }

    #[test]
    fn headers() {
        assert_eq!(
            profile_header("49 Hertz", "all threads", "user + kernel stack", None, None),
            "Sampling at 49 Hertz of all threads by user + kernel stack... Hit Ctrl-C to end."
        );
        assert_eq!(
            profile_header("99 Hertz", "PID 7", "user stack", Some(1), Some(5)),
            "Sampling at 99 Hertz of PID 7 by user stack on CPU#1 for 5 secs."
        );
    }
}
