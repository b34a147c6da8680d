//! `report`: a saved profile (pprof, or folded lines) rendered again, elsewhere and later: an SVG flame
//! graph, folded lines, or text blocks (bcc's layout, innermost frame first).
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::common::{check_writable, merge_folded, write_file_atomically, write_svg_file};
use crate::render::flamegraph::{FlameGraphSpec, GraphPalette};
use crate::render::heatmap::{self, Column, HeatMap};
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
    /// A latency heat map of biolatency's -j output.
    Heatmap(PathBuf),
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
    if let ReportOutput::Svg(path) | ReportOutput::Heatmap(path) = &cfg.output {
        check_writable(path)?;
    }
    if let ReportOutput::Heatmap(path) = &cfg.output {
        let text = std::fs::read_to_string(&cfg.input)
            .with_context(|| format!("cannot read {}", cfg.input.display()))?;
        let mut map = heatmap_of_json(&text, &cfg.input)?;
        if let Some(t) = &cfg.title {
            map.title = t.clone();
        }
        let total: u64 = map.columns.iter().flat_map(|c| c.counts.iter()).sum();
        write_file_atomically(path, heatmap::svg(&map).as_bytes())?;
        eprintln!("bpfprof: wrote {}", path.display());
        eprintln!(
            "bpfprof: {} intervals, {total} {} in all",
            map.columns.len(),
            map.what
        );
        return Ok(());
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
        ReportOutput::Heatmap(_) => unreachable!("drawn above"),
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
        let subtitle = Some(format!("bpfprof report of {}", path.display()));
        if !lines.is_empty() && lines.iter().all(|(l, _)| hot_cold_side(l).is_some()) {
            // hotcold -f: microseconds; in a flame graph its off-CPU frames are marked to be blue.
            let lines = lines
                .into_iter()
                .map(|(l, v)| (if svg { mark_off_cpu(&l) } else { l }, v))
                .collect();
            return Ok(Loaded {
                lines,
                title: "Hot/Cold Flame Graph".into(),
                subtitle,
                count_name: "us".into(),
                palette: GraphPalette::HotCold,
            });
        }
        let palette = if lines.iter().any(|(l, _)| l.contains(WAKER_SUFFIX)) {
            GraphPalette::Chain
        } else {
            GraphPalette::Cpu
        };
        return Ok(Loaded {
            lines,
            title: "Flame Graph".into(),
            subtitle,
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

/// Which half of a hotcold line (`[on-cpu];..`, or `comm-tid;[off-cpu];..` with --per-thread) it is in,
/// and where that root frame ends; None for other lines.
fn hot_cold_side(line: &str) -> Option<(bool, usize)> {
    use super::hotcold::{OFF_CPU, ON_CPU};
    let mut start = 0;
    for frame in line.split(';').take(2) {
        let end = start + frame.len();
        if frame == ON_CPU || frame == OFF_CPU {
            return Some((frame == OFF_CPU, end));
        }
        start = end + 1;
    }
    None
}

/// Marks the frames under an `[off-cpu]` root (`_[w]`, which the hot/cold palette colours blue), as
/// hotcold --svg does.
fn mark_off_cpu(line: &str) -> String {
    match hot_cold_side(line) {
        Some((true, end)) if end < line.len() => {
            let (head, rest) = line.split_at(end + 1);
            let frames: Vec<String> = rest
                .split(';')
                .map(|f| {
                    let f = f.strip_suffix("_[k]").unwrap_or(f);
                    if f.ends_with(WAKER_SUFFIX) {
                        f.to_string()
                    } else {
                        format!("{f}{WAKER_SUFFIX}")
                    }
                })
                .collect();
            format!("{head}{}", frames.join(";"))
        }
        _ => line.to_string(),
    }
}

/// A heat map of `biolatency -j` output: a column per interval (objects with one `interval`, else one
/// `ts`, summed over disks and flags), a row per bucket range met in any `data` list.
pub fn heatmap_of_json(text: &str, path: &Path) -> Result<HeatMap> {
    type Range = (Option<i64>, Option<i64>);
    let mut unit = String::new();
    let mut order: Vec<String> = Vec::new();
    let mut ts_of: Vec<String> = Vec::new();
    let mut cells: Vec<std::collections::BTreeMap<Range, u64>> = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|_| {
            anyhow::anyhow!(
                "{}: line {} is not JSON: --heatmap reads biolatency -j output",
                path.display(),
                n + 1
            )
        })?;
        let data = v.get("data").and_then(|d| d.as_array()).with_context(|| {
            format!(
                "{}: line {} has no \"data\" list: --heatmap reads biolatency -j output",
                path.display(),
                n + 1
            )
        })?;
        let ts = v
            .get("ts")
            .and_then(|t| t.as_str())
            .unwrap_or("")
            .to_string();
        let key = match v.get("interval") {
            Some(i) => i.to_string(),
            None => ts.clone(),
        };
        if let Some(u) = v.get("val_type").and_then(|u| u.as_str()) {
            unit = u.to_string();
        }
        let col = match order.iter().position(|k| *k == key) {
            Some(c) => c,
            None => {
                order.push(key);
                ts_of.push(ts);
                cells.push(Default::default());
                order.len() - 1
            }
        };
        for row in data {
            let bound = |k: &str| row.get(k).and_then(|x| x.as_i64());
            let count = row.get("count").and_then(|c| c.as_u64()).unwrap_or(0);
            *cells[col]
                .entry((bound("interval-start"), bound("interval-end")))
                .or_default() += count;
        }
    }
    if order.is_empty() {
        bail!(
            "{}: no intervals: --heatmap reads biolatency -j output",
            path.display()
        );
    }
    let mut ranges: Vec<Range> = cells.iter().flat_map(|c| c.keys().copied()).collect();
    ranges.sort_by_key(|r| (r.0.unwrap_or(i64::MIN), r.1.unwrap_or(i64::MAX)));
    ranges.dedup();
    let rows = ranges
        .iter()
        .map(|r| match *r {
            (Some(a), Some(b)) if a == b => a.to_string(),
            (Some(a), Some(b)) => format!("{a}-{b}"),
            (None, Some(b)) => format!("<{}", b.saturating_add(1)),
            (Some(a), None) => format!(">={a}"),
            (None, None) => "all".into(),
        })
        .collect();
    let columns: Vec<Column> = cells
        .iter()
        .zip(&ts_of)
        .enumerate()
        .map(|(i, (c, ts))| {
            let time = ts.rsplit(' ').next().unwrap_or("").to_string();
            Column {
                tick: if time.is_empty() {
                    (i + 1).to_string()
                } else {
                    time
                },
                label: if ts.is_empty() {
                    format!("interval {}", i + 1)
                } else {
                    format!("interval {} ({ts})", i + 1)
                },
                counts: ranges
                    .iter()
                    .map(|r| c.get(r).copied().unwrap_or(0))
                    .collect(),
            }
        })
        .collect();
    let ios: u64 = columns.iter().flat_map(|c| c.counts.iter()).sum();
    Ok(HeatMap {
        title: "Block I/O Latency Heat Map".into(),
        subtitle: Some(format!(
            "bpfprof report {}: {} intervals, {ios} I/Os",
            path.display(),
            columns.len()
        )),
        unit: if unit.is_empty() {
            "usecs".into()
        } else {
            unit
        },
        what: "I/Os".into(),
        x_title: "interval".into(),
        rows,
        columns,
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn hotcold_lines_are_told_apart_and_their_off_cpu_frames_marked() {
        assert_eq!(hot_cold_side("[on-cpu];w;main 5"), Some((false, 8)));
        assert_eq!(hot_cold_side("w-7;[off-cpu];main 5"), Some((true, 13)));
        assert_eq!(hot_cold_side("w;main;[off-cpu] 5"), None);
        assert_eq!(
            mark_off_cpu("[off-cpu];w;main;schedule_[k]"),
            "[off-cpu];w_[w];main_[w];schedule_[w]"
        );
        assert_eq!(mark_off_cpu("[on-cpu];w;main"), "[on-cpu];w;main");
        assert_eq!(mark_off_cpu("w-7;[off-cpu];main"), "w-7;[off-cpu];main_[w]");
    }

    #[test]
    fn heatmap_of_biolatency_json_sums_disks_per_interval() {
        let text = concat!(
            r#"{"ts":"2026-12-05 10:00:01","interval":1,"val_type":"usecs","data":[{"interval-start":0,"interval-end":1,"count":0},{"interval-start":2,"interval-end":3,"count":4}],"disk":"vda"}"#,
            "\n",
            r#"{"ts":"2026-12-05 10:00:01","interval":1,"val_type":"usecs","data":[{"interval-start":64,"interval-end":127,"count":2}],"disk":"vdb"}"#,
            "\n",
            r#"{"ts":"2026-12-05 10:00:02","interval":2,"val_type":"usecs","data":[{"interval-start":2,"interval-end":3,"count":1}]}"#,
            "\n"
        );
        let map = heatmap_of_json(text, Path::new("io.json")).unwrap();
        assert_eq!(map.rows, ["0-1", "2-3", "64-127"]);
        assert_eq!(map.columns.len(), 2);
        assert_eq!(map.columns[0].counts, [0, 4, 2]);
        assert_eq!(map.columns[1].counts, [0, 1, 0]);
        assert_eq!(map.columns[1].tick, "10:00:02");
        let err = heatmap_of_json("a;b 3\n", Path::new("x")).unwrap_err();
        assert!(format!("{err:#}").contains("biolatency -j"), "{err:#}");
    }
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
