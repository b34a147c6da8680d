//! Latency heat maps as SVG: time across (a column per interval), latency buckets up (one row per bucket,
//! from the lowest that holds a value to the highest), colour for the count, as Brendan Gregg's latency heat
//! maps. Every cell with a count has a `<title>` naming its interval, its bucket and the count, so the map
//! reads exactly on hover and in tests. No crate draws these; the output is plain SVG 1.1, the same bytes
//! for the same data.
use std::fmt::Write as _;

use super::hist::Buckets;

/// One interval: its labels and its counts per row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// Under the axis, at the column's left edge (`12.0`, `10:42:07`).
    pub tick: String,
    /// In each cell's title (`12.0-13.0 s`, `10:42:07`).
    pub label: String,
    pub counts: Vec<u64>,
}

/// A heat map to draw.
#[derive(Clone, Debug)]
pub struct HeatMap {
    pub title: String,
    pub subtitle: Option<String>,
    /// The latency unit (`usecs`, `msecs`).
    pub unit: String,
    /// What is counted (`I/Os`).
    pub what: String,
    /// The time axis' name (`time (s)`).
    pub x_title: String,
    /// The latency buckets' labels, lowest first (`64-127`): `bucket_labels` for a histogram's.
    pub rows: Vec<String>,
    pub columns: Vec<Column>,
}

const LEFT: u32 = 130;
const TOP: u32 = 60;
const BOTTOM: u32 = 60;
const LEGEND: u32 = 150;
const ROW: u32 = 16;

/// Row labels for a histogram's buckets.
pub fn bucket_labels(buckets: Buckets) -> Vec<String> {
    (0..buckets.len())
        .map(|i| bucket_label(buckets, i))
        .collect()
}

/// The bucket's range for labels: `64-127`, `0`, `<0`, `>=1000`.
fn bucket_label(buckets: Buckets, i: usize) -> String {
    match (buckets, buckets.range(i)) {
        (Buckets::Log2, (Some(lo), Some(hi))) if hi - lo > 1 => format!("{lo}-{}", hi - 1),
        (Buckets::Log2, (Some(lo), Some(_))) => lo.to_string(),
        (_, (None, Some(hi))) => format!("<{hi}"),
        (_, (Some(lo), None)) => format!(">={lo}"),
        (_, (Some(lo), Some(hi))) => format!("{lo}-{}", hi - 1),
        (_, (None, None)) => "all".into(),
    }
}

/// The fill of a cell holding `n` of at most `max`: pale yellow for one, dark red for the most, on a log
/// scale (a heat map's counts span orders of magnitude).
pub fn fill(n: u64, max: u64) -> String {
    if n == 0 || max == 0 {
        return "rgb(255,255,255)".into();
    }
    let t = if max <= 1 {
        1.0
    } else {
        ((n as f64).ln() / (max as f64).ln()).clamp(0.0, 1.0)
    };
    let mix = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    format!(
        "rgb({},{},{})",
        mix(255.0, 160.0),
        mix(235.0, 20.0),
        mix(160.0, 0.0)
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The SVG of a heat map. Rows span the buckets from the lowest to the highest that holds a count in
/// any column (one empty row when none does).
pub fn svg(map: &HeatMap) -> String {
    if map.rows.is_empty() {
        let mut one = map.clone();
        one.rows = vec![String::new()];
        return svg(&one);
    }
    let n_buckets = map.rows.len();
    let used: Vec<usize> = (0..n_buckets)
        .filter(|&b| {
            map.columns
                .iter()
                .any(|c| c.counts.get(b).copied().unwrap_or(0) > 0)
        })
        .collect();
    let (lo, hi) = match (used.first(), used.last()) {
        (Some(&a), Some(&b)) => (a, b),
        _ => (0, 0),
    };
    let hi = hi.min(n_buckets.saturating_sub(1));
    let rows = (hi - lo + 1) as u32;
    let ncols = map.columns.len().max(1) as u32;
    let cell_w = (960 / ncols).clamp(4, 40);
    let plot_w = cell_w * ncols;
    let plot_h = ROW * rows;
    let width = (LEFT + plot_w + LEGEND).max(640);
    let height = TOP + plot_h + BOTTOM;
    let max = map
        .columns
        .iter()
        .flat_map(|c| c.counts.iter().copied())
        .max()
        .unwrap_or(0);
    let total: u64 = map.columns.iter().flat_map(|c| c.counts.iter()).sum();

    let mut s = String::new();
    let _ = writeln!(s, r#"<?xml version="1.0" standalone="no"?>"#);
    let _ = writeln!(
        s,
        r#"<svg version="1.1" width="{width}" height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg" font-family="Verdana, sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        s,
        r#"<rect x="0" y="0" width="{width}" height="{height}" fill="rgb(250,250,250)"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text class="title" x="{}" y="22" text-anchor="middle" font-size="16">{}</text>"#,
        width / 2,
        escape(&map.title)
    );
    if let Some(sub) = &map.subtitle {
        let _ = writeln!(
            s,
            r#"<text class="subtitle" x="{}" y="40" text-anchor="middle" fill="rgb(90,90,90)">{}</text>"#,
            width / 2,
            escape(sub)
        );
    }
    // The plot's frame, white where nothing was counted.
    let _ = writeln!(
        s,
        r#"<rect class="plot" x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="rgb(255,255,255)" stroke="rgb(160,160,160)"/>"#
    );
    // Cells, a group per column.
    for (ci, col) in map.columns.iter().enumerate() {
        let x = LEFT + ci as u32 * cell_w;
        let _ = writeln!(
            s,
            r#"<g class="column" data-label="{}">"#,
            escape(&col.label)
        );
        for b in lo..=hi {
            let n = col.counts.get(b).copied().unwrap_or(0);
            if n == 0 {
                continue;
            }
            let y = TOP + (hi - b) as u32 * ROW;
            let _ = writeln!(
                s,
                r#"<rect x="{x}" y="{y}" width="{cell_w}" height="{ROW}" fill="{}"><title>{}, {} {}: {n} {}</title></rect>"#,
                fill(n, max),
                escape(&col.label),
                escape(&map.rows[b]),
                escape(&map.unit),
                escape(&map.what)
            );
        }
        let _ = writeln!(s, "</g>");
    }
    // The latency axis: a label per row.
    for b in lo..=hi {
        let y = TOP + (hi - b) as u32 * ROW + ROW / 2 + 4;
        let _ = writeln!(
            s,
            r#"<text class="ytick" x="{}" y="{y}" text-anchor="end">{}</text>"#,
            LEFT - 6,
            escape(&map.rows[b])
        );
    }
    let _ = writeln!(
        s,
        r#"<text class="ytitle" x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">latency ({})</text>"#,
        TOP + plot_h / 2,
        TOP + plot_h / 2,
        escape(&map.unit)
    );
    // The time axis: a tick at most every 60 px.
    let every = (60 / cell_w).max(1) as usize;
    for (ci, col) in map.columns.iter().enumerate().step_by(every) {
        let x = LEFT + ci as u32 * cell_w;
        let _ = writeln!(
            s,
            r#"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="rgb(160,160,160)"/><text class="xtick" x="{x}" y="{}" text-anchor="middle">{}</text>"#,
            TOP + plot_h,
            TOP + plot_h + 5,
            TOP + plot_h + 18,
            escape(&col.tick)
        );
    }
    let _ = writeln!(
        s,
        r#"<text class="xtitle" x="{}" y="{}" text-anchor="middle">{}</text>"#,
        LEFT + plot_w / 2,
        TOP + plot_h + 42,
        escape(&map.x_title)
    );
    // The legend: the colour scale from one to the most in a cell.
    let lx = LEFT + plot_w + 30;
    let _ = writeln!(
        s,
        r#"<text class="legend" x="{lx}" y="{}">{} per cell</text>"#,
        TOP - 6,
        escape(&map.what)
    );
    let steps: Vec<u64> = if max <= 1 {
        vec![max]
    } else {
        (0..8)
            .map(|i| ((max as f64).powf(f64::from(7 - i) / 7.0)).round() as u64)
            .collect()
    };
    for (i, n) in steps.iter().enumerate() {
        let y = TOP + i as u32 * ROW;
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="{y}" width="20" height="{ROW}" fill="{}"/><text x="{}" y="{}">{n}</text>"#,
            fill(*n, max),
            lx + 26,
            y + ROW / 2 + 4
        );
    }
    let _ = writeln!(
        s,
        r#"<text class="total" x="{lx}" y="{}">{total} {} in all</text>"#,
        TOP + steps.len() as u32 * ROW + 16,
        escape(&map.what)
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(columns: Vec<Column>) -> HeatMap {
        HeatMap {
            title: "Block I/O Latency Heat Map".into(),
            subtitle: Some("a & b".into()),
            unit: "usecs".into(),
            what: "I/Os".into(),
            x_title: "time (s)".into(),
            rows: bucket_labels(Buckets::Log2),
            columns,
        }
    }

    fn col(i: usize, counts: &[(usize, u64)]) -> Column {
        let mut c = vec![0; Buckets::Log2.len()];
        for &(b, n) in counts {
            c[b] = n;
        }
        Column {
            tick: format!("{i}.0"),
            label: format!("{i}.0-{}.0 s", i + 1),
            counts: c,
        }
    }

    #[test]
    fn cells_name_interval_bucket_and_count() {
        // Bucket 8 holds [64, 128), bucket 12 [1024, 2048).
        let svg = svg(&map(vec![col(0, &[(8, 5)]), col(1, &[(12, 1), (8, 2)])]));
        assert!(
            svg.contains("<title>0.0-1.0 s, 64-127 usecs: 5 I/Os</title>"),
            "{svg}"
        );
        assert!(svg.contains("<title>1.0-2.0 s, 1024-2047 usecs: 1 I/Os</title>"));
        assert_eq!(svg.matches("<g class=\"column\"").count(), 2);
        // Rows from bucket 8 to 12: five labels.
        assert_eq!(svg.matches("class=\"ytick\"").count(), 5);
        assert!(svg.contains("a &amp; b") && svg.contains("8 I/Os in all"));
        let opts = roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        };
        roxmltree::Document::parse_with_options(&svg, opts).expect("well-formed");
    }

    #[test]
    fn fills_go_from_pale_to_dark_on_a_log_scale() {
        assert_eq!(fill(0, 100), "rgb(255,255,255)");
        assert_eq!(fill(100, 100), "rgb(160,20,0)");
        assert_eq!(fill(1, 100), "rgb(255,235,160)");
        assert_eq!(fill(10, 100), fill(10, 100));
        assert!(fill(10, 100) != fill(1, 100) && fill(10, 100) != fill(100, 100));
    }

    #[test]
    fn an_empty_map_still_draws() {
        let svg = svg(&map(vec![col(0, &[])]));
        assert!(svg.contains("0 I/Os in all") && svg.trim_end().ends_with("</svg>"));
    }
}
