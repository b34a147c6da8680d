//! `report`: a saved profile (pprof, or folded lines) rendered again, elsewhere and later: an SVG flame
//! graph, folded lines, or text blocks (bcc's layout, innermost frame first).
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::common::{check_writable, merge_folded, write_svg_file};
use crate::render::flamegraph::{FlameGraphSpec, GraphPalette};
use crate::render::pprof;
use crate::render::wait::WAKER_SUFFIX;
use crate::util::write_stdout;

/// What to render and how, free of clap.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportConfig {
    pub input: PathBuf,
    pub output: ReportOutput,
    /// The pprof sample type to show (default: the profile's first: samples, or off-CPU time).
    pub value: Option<String>,
    pub title: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ReportOutput {
    Svg(PathBuf),
    Folded,
    Text,
}

/// A profile's stacks as folded lines, with what they count and how to draw them.
pub struct Loaded {
    pub lines: Vec<(String, u64)>,
    pub title: String,
    pub subtitle: Option<String>,
    pub count_name: String,
    pub palette: GraphPalette,
}

pub fn run(cfg: &ReportConfig) -> Result<()> {
    if let ReportOutput::Svg(path) = &cfg.output {
        check_writable(path)?;
    }
    let svg = matches!(cfg.output, ReportOutput::Svg(_));
    let loaded = load(&cfg.input, cfg.value.as_deref(), svg)?;
    let total = loaded.lines.iter().fold(0u64, |t, l| t.saturating_add(l.1));
    let n = loaded.lines.len();
    match &cfg.output {
        ReportOutput::Svg(path) => {
            let spec = FlameGraphSpec {
                title: cfg.title.clone().unwrap_or(loaded.title),
                subtitle: loaded.subtitle,
                count_name: loaded.count_name.clone(),
                palette: loaded.palette,
            };
            write_svg_file(path, &spec, &merge_folded(loaded.lines))?;
            eprintln!("bpfprof: wrote {}", path.display());
        }
        ReportOutput::Folded => {
            let mut text = merge_folded(loaded.lines).join("\n");
            if !text.is_empty() {
                text.push('\n');
            }
            write_stdout(&text)?;
        }
        ReportOutput::Text => {
            let mut out = String::new();
            for line in merge_folded(loaded.lines) {
                text_block(&mut out, &line);
            }
            write_stdout(&out)?;
        }
    }
    eprintln!("bpfprof: {n} stacks, {total} {} in all", loaded.count_name);
    Ok(())
}

/// Reads a pprof profile (gzipped or not) or folded lines (`a;b;c count`), told apart by content.
pub fn load(path: &Path, value: Option<&str>, svg: bool) -> Result<Loaded> {
    let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    // Text whose first line that is not `stack count`, if any (1-based).
    let text = (!data.starts_with(&[0x1f, 0x8b]))
        .then(|| std::str::from_utf8(&data).ok())
        .flatten();
    let bad_line = text.map(|t| {
        t.lines()
            .position(|l| !l.trim().is_empty() && parse_folded(l).is_none())
            .map(|i| i + 1)
    });
    if bad_line == Some(None) {
        if value.is_some() {
            bail!(
                "--value picks a pprof sample type: {} holds folded lines",
                path.display()
            );
        }
        let text = std::str::from_utf8(&data).expect("checked above");
        let lines: Vec<(String, u64)> = text.lines().filter_map(parse_folded).collect();
        let palette = if lines.iter().any(|(l, _)| l.contains(WAKER_SUFFIX)) {
            GraphPalette::Chain
        } else {
            GraphPalette::Cpu
        };
        return Ok(Loaded {
            lines,
            title: "Flame Graph".into(),
            subtitle: Some(format!("bpfprof report of {}", path.display())),
            count_name: "samples".into(),
            palette,
        });
    }
    let kernel_suffix = if svg { "_[k]" } else { "" };
    let p = match pprof::read(&data, value, kernel_suffix) {
        Ok(p) => p,
        Err(e) if e.downcast_ref::<pprof::NotAProfile>().is_some() => match bad_line {
            Some(Some(n)) => bail!(
                "{}: neither a pprof profile nor folded stacks (line {n} is not `stack count`)",
                path.display()
            ),
            _ => bail!("{}: {e:#}", path.display()),
        },
        Err(e) => bail!("{}: {e:#}", path.display()),
    };
    // Nanoseconds are shown as microseconds, as bcc's off-CPU tools count (each sample rounded to the
    // nearest, as they round each count).
    let (count_name, divide) = match p.value_type.1.as_str() {
        "nanoseconds" => ("us".to_string(), 1000),
        "count" => (p.value_type.0.clone(), 1),
        unit => (unit.to_string(), 1),
    };
    // Negative values (a `go tool pprof -diff_base` profile) count as none.
    let scale = |v: i64| (v.max(0) as u64).saturating_add(divide / 2) / divide;
    let (palette, waker_marks) = match p.tool.as_deref() {
        Some("offcpu") => (GraphPalette::Io, false),
        Some("wakeup") => (GraphPalette::Wakeup, false),
        Some("offwake") => (GraphPalette::Chain, svg),
        _ => (GraphPalette::Cpu, false),
    };
    let lines = p
        .lines
        .into_iter()
        .map(|(line, v)| {
            let line = if waker_marks { mark_waker(&line) } else { line };
            (line, scale(v))
        })
        .collect();
    Ok(Loaded {
        lines,
        title: p.title.unwrap_or_else(|| "Flame Graph".into()),
        subtitle: p.subtitle,
        count_name,
        palette,
    })
}

/// offwake's waker half (after `--`) with its frames marked `_[w]` (its kernel frames' `_[k]` replaced), as
/// offwake's own SVG colours them.
fn mark_waker(line: &str) -> String {
    let Some((blocked, waker)) = line.split_once(";--;") else {
        return line.to_string();
    };
    let mut out = format!("{blocked};--");
    for f in waker.split(';') {
        out.push(';');
        out.push_str(f.strip_suffix("_[k]").unwrap_or(f));
        out.push_str(WAKER_SUFFIX);
    }
    out
}

/// `stack count` -> (stack, count).
fn parse_folded(line: &str) -> Option<(String, u64)> {
    let (stack, count) = line.trim_end().rsplit_once(' ')?;
    Some((stack.to_string(), count.parse().ok()?))
}

/// A folded line (`comm;root;...;leaf count`) as bcc's text block: the innermost frame first, then the comm.
fn text_block(out: &mut String, line: &str) {
    let Some((stack, count)) = parse_folded(line) else {
        return;
    };
    let mut frames = stack.split(';');
    let comm = frames.next().unwrap_or("");
    let frames: Vec<&str> = frames.collect();
    for f in frames.iter().rev() {
        let _ = writeln!(out, "    {f}");
    }
    let _ = writeln!(out, "    {:<16} {comm}", "-");
    let _ = writeln!(out, "        {count}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_lines_parse_and_print_as_text_blocks() {
        assert_eq!(
            parse_folded("burn;main;spin 12"),
            Some(("burn;main;spin".into(), 12))
        );
        assert_eq!(parse_folded("a b;c 3"), Some(("a b;c".into(), 3)));
        assert_eq!(parse_folded("no count"), None);
        let mut out = String::new();
        text_block(&mut out, "burn;main;spin 12");
        assert_eq!(
            out,
            "    spin\n    main\n    -                burn\n        12\n\n"
        );
    }

    #[test]
    fn waker_frames_are_marked_after_the_separator() {
        assert_eq!(
            mark_waker("t;main;schedule_[k];--;try_to_wake_up_[k];write;w"),
            "t;main;schedule_[k];--;try_to_wake_up_[w];write_[w];w_[w]"
        );
        assert_eq!(mark_waker("t;main"), "t;main");
    }
}
