//! `diff`: what changed between two profiles, as a differential flame graph (inferno's: red grew, blue
//! shrank; widths are the second profile's) or a list of the functions whose share changed most.
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::common::{check_writable, write_svg_file};
use super::report::load;
use crate::render::flamegraph::{FlameGraphSpec, GraphPalette};
use crate::util::write_stdout;

/// What to compare and how, free of clap.
#[derive(Debug, Clone, PartialEq)]
pub struct DiffConfig {
    pub before: PathBuf,
    pub after: PathBuf,
    pub output: DiffOutput,
    /// Scale the first profile to the second's total (inferno's and difffolded.pl's -n), so that shares
    /// are compared, not amounts.
    pub normalize: bool,
    pub value: Option<String>,
    pub title: Option<String>,
    /// Functions listed by --text.
    pub top: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DiffOutput {
    Svg(PathBuf),
    Folded,
    Text,
}

pub fn run(cfg: &DiffConfig) -> Result<()> {
    if let DiffOutput::Svg(path) = &cfg.output {
        check_writable(path)?;
    }
    let mut before = load(&cfg.before, cfg.value.as_deref(), false)?;
    let mut after = load(&cfg.after, cfg.value.as_deref(), false)?;
    if before.count_name != after.count_name {
        bail!(
            "{} counts {} and {} counts {}: compare profiles of one kind",
            cfg.before.display(),
            before.count_name,
            cfg.after.display(),
            after.count_name
        );
    }
    // Kernel frames compare by name whether a file marks them (`-a`, an SVG's lines) or not (pprof).
    for lines in [&mut before.lines, &mut after.lines] {
        for (line, _) in lines.iter_mut() {
            if line.contains("_[k]") {
                *line = line.replace("_[k];", ";");
                if let Some(l) = line.strip_suffix("_[k]") {
                    *line = l.to_string();
                }
            }
        }
    }
    let text = |lines: &[(String, u64)]| {
        lines.iter().fold(String::new(), |mut s, (l, n)| {
            let _ = writeln!(s, "{l} {n}");
            s
        })
    };
    let mut out = Vec::new();
    inferno::differential::from_readers(
        inferno::differential::Options {
            normalize: cfg.normalize,
            strip_hex: false,
        },
        text(&before.lines).as_bytes(),
        text(&after.lines).as_bytes(),
        &mut out,
    )
    .context("comparing the profiles")?;
    let diff = String::from_utf8(out).context("comparing the profiles")?;
    let mut lines: Vec<String> = diff.lines().map(str::to_string).collect();
    lines.sort();
    let (total_before, total_after) = totals(&lines);
    match &cfg.output {
        DiffOutput::Svg(path) => {
            let spec = FlameGraphSpec {
                title: cfg
                    .title
                    .clone()
                    .unwrap_or_else(|| "Differential Flame Graph".into()),
                subtitle: Some(format!(
                    "bpfprof diff: {} -> {}; widths: after, red grew, blue shrank{}",
                    cfg.before.display(),
                    cfg.after.display(),
                    if cfg.normalize {
                        " (before scaled to after's total)"
                    } else {
                        ""
                    }
                )),
                count_name: after.count_name.clone(),
                palette: GraphPalette::Cpu,
            };
            write_svg_file(path, &spec, &lines)?;
            eprintln!("bpfprof: wrote {}", path.display());
        }
        DiffOutput::Folded => {
            let mut text = lines.join("\n");
            if !text.is_empty() {
                text.push('\n');
            }
            write_stdout(&text)?;
        }
        DiffOutput::Text => write_stdout(&top_changes(&lines, cfg.top))?,
    }
    eprintln!(
        "bpfprof: {} stacks; {total_before} {} before{}, {total_after} after",
        lines.len(),
        after.count_name,
        if cfg.normalize { " (scaled)" } else { "" },
    );
    Ok(())
}

/// `stack before after` -> (stack, before, after).
fn parse_diff_line(line: &str) -> Option<(&str, u64, u64)> {
    let (rest, after) = line.rsplit_once(' ')?;
    let (stack, before) = rest.rsplit_once(' ')?;
    Some((stack, before.parse().ok()?, after.parse().ok()?))
}

fn totals(lines: &[String]) -> (u64, u64) {
    lines
        .iter()
        .filter_map(|l| parse_diff_line(l))
        .fold((0, 0), |(a, b), (_, x, y)| (a + x, b + y))
}

/// The functions whose share of the total changed most, by total time (each function counted once per
/// stack it is in) and by self time (as the innermost frame), in percent of each profile's total.
fn top_changes(lines: &[String], top: usize) -> String {
    let (total_before, total_after) = totals(lines);
    let mut self_time: HashMap<&str, (u64, u64)> = HashMap::new();
    let mut total_time: HashMap<&str, (u64, u64)> = HashMap::new();
    for (stack, a, b) in lines.iter().filter_map(|l| parse_diff_line(l)) {
        let frames: Vec<&str> = stack.split(';').collect();
        if let Some(leaf) = frames.last() {
            let e = self_time.entry(leaf).or_default();
            e.0 += a;
            e.1 += b;
        }
        let mut seen: Vec<&str> = Vec::with_capacity(frames.len());
        for f in frames {
            if !seen.contains(&f) {
                seen.push(f);
                let e = total_time.entry(f).or_default();
                e.0 += a;
                e.1 += b;
            }
        }
    }
    let pct = |n: u64, total: u64| {
        if total == 0 {
            0.0
        } else {
            100.0 * n as f64 / total as f64
        }
    };
    let mut out = String::new();
    for (title, map) in [("total", &total_time), ("self", &self_time)] {
        let mut rows: Vec<(f64, f64, f64, &str)> = map
            .iter()
            .map(|(f, &(a, b))| {
                let (pa, pb) = (pct(a, total_before), pct(b, total_after));
                (pb - pa, pa, pb, *f)
            })
            .filter(|r| r.0 != 0.0)
            .collect();
        rows.sort_by(|x, y| y.0.abs().total_cmp(&x.0.abs()).then_with(|| x.3.cmp(y.3)));
        let _ = writeln!(
            out,
            "Largest changes in {title} time (% of each profile's total):"
        );
        let _ = writeln!(
            out,
            "{:>8} {:>8} {:>8}  FUNCTION",
            "CHANGE", "BEFORE", "AFTER"
        );
        for (d, a, b, f) in rows.into_iter().take(top) {
            let _ = writeln!(out, "{d:>+7.2}% {a:>7.2}% {b:>7.2}%  {f}");
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_changes_name_what_grew_and_shrank_with_signs() {
        let lines: Vec<String> = [
            "burn;main;work;hot_two 66 33",
            "burn;main;work;hot_one 33 66",
            "burn;main;work 1 1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let text = top_changes(&lines, 10);
        let total = text.split("\n\n").next().unwrap();
        let rows: Vec<&str> = total.lines().skip(2).collect();
        assert_eq!(rows.len(), 2, "{text}"); // main, work and burn did not change
        assert!(
            rows.iter()
                .any(|r| r.trim_start().starts_with("+33.00%") && r.ends_with(" hot_one")),
            "{text}"
        );
        assert!(
            rows.iter()
                .any(|r| r.trim_start().starts_with("-33.00%") && r.ends_with(" hot_two")),
            "{text}"
        );
        let self_part = text.split("\n\n").nth(1).unwrap();
        assert!(
            self_part.contains("hot_one") && !self_part.contains(" work\n"),
            "{text}"
        );
    }

    #[test]
    fn diff_lines_parse() {
        assert_eq!(parse_diff_line("a;b c 3 4"), Some(("a;b c", 3, 4)));
        assert_eq!(parse_diff_line("a;b 3"), None);
    }
}
