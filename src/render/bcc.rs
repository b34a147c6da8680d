//! bcc's multi-line stack layout (profile, offcputime): kernel frames, `--`, user frames, `-  comm (pid)`, count.
use std::fmt::Write as _;

use super::{StackPart, StackRecord, StackStyle};

/// Renders one record exactly as bcc's profile.py prints it (leaf first, four-space indent, blank line after).
pub fn stack_block(rec: &StackRecord, style: &StackStyle) -> String {
    let mut out = String::new();
    if !style.user_stacks_only {
        match &rec.kernel {
            StackPart::None => {}
            StackPart::Missed => out.push_str("    [Missed Kernel Stack]\n"),
            StackPart::Frames(f) => {
                for name in f.iter() {
                    let _ = writeln!(out, "    {name}{}", style.kernel_suffix());
                }
            }
        }
    }
    if !style.kernel_stacks_only {
        if style.need_delimiter() && rec.user.is_present() && rec.kernel.is_present() {
            out.push_str("    --\n");
        }
        match &rec.user {
            StackPart::None => {}
            StackPart::Missed => out.push_str("    [Missed User Stack]\n"),
            StackPart::Frames(f) => {
                for name in f.iter() {
                    let _ = writeln!(out, "    {name}");
                }
            }
        }
    }
    let _ = writeln!(out, "    {:<16} {} ({})", "-", rec.comm, rec.pid);
    let _ = writeln!(out, "        {}\n", rec.value);
    out
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
