//! Histograms: one data type, rendered in bcc's log2 and linear layouts, bpftrace's `hist`/`lhist` layouts,
//! bcc-shaped JSON (that a JSON parser reads), and a summary line with percentiles estimated from the buckets.
use std::fmt::Write as _;

use serde_json::{json, Map, Value};

/// How a histogram's counts are bucketed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Buckets {
    /// Powers of two, as bpftrace's `hist`: index 0 counts negative values, 1 counts zero, and `k + 2`
    /// counts `[2^k, 2^(k+1))` (so 66 indexes cover every 64-bit value).
    Log2,
    /// Linear, as bpftrace's `lhist(v, min, max, step)`: index 0 counts values below `min`, `1..=n` count
    /// `[min + (i-1)*step, min + i*step)` with `n = (max - min) / step`, and `n + 1` counts `max` and above.
    Linear { min: i64, max: i64, step: i64 },
}

impl Buckets {
    /// Indexes a histogram of this kind has.
    pub fn len(&self) -> usize {
        match *self {
            Buckets::Log2 => LOG2_LEN,
            Buckets::Linear { min, max, step } => ((max - min) / step) as usize + 2,
        }
    }

    /// The values bucket `i` holds, as `[low, high)`; `None` stands for an open end.
    pub fn range(&self, i: usize) -> (Option<i128>, Option<i128>) {
        match *self {
            Buckets::Log2 => match i {
                0 => (None, Some(0)),
                1 => (Some(0), Some(1)),
                _ => (Some(1i128 << (i - 2)), Some(1i128 << (i - 1))),
            },
            Buckets::Linear { min, max, step } => {
                let n = self.len() - 2;
                if i == 0 {
                    (None, Some(min.into()))
                } else if i > n {
                    (Some(max.into()), None)
                } else {
                    let low = i128::from(min) + (i as i128 - 1) * i128::from(step);
                    (Some(low), Some(low + i128::from(step)))
                }
            }
        }
    }
}

/// Indexes of a log2 histogram: negative, zero, and one per bit of a u64.
pub const LOG2_LEN: usize = 66;

/// Counts per bucket, and (when the source keeps it) the exact sum of the recorded values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Histogram {
    pub buckets: Buckets,
    /// `buckets.len()` counts.
    pub counts: Vec<u64>,
    /// Sum of the recorded values in the histogram's unit, for an exact average.
    pub sum: Option<u64>,
}

impl Histogram {
    pub fn new(buckets: Buckets) -> Self {
        Self {
            buckets,
            counts: vec![0; buckets.len()],
            sum: None,
        }
    }

    /// Values recorded.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The value at quantile `q` (0..=1), estimated by linear interpolation inside the bucket that holds it;
    /// in an open-ended bucket, only the side of its bound is known. None when the histogram is empty.
    pub fn quantile(&self, q: f64) -> Option<Estimate> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = (q * total as f64).ceil().max(1.0);
        let mut seen = 0u64;
        for (i, &n) in self.counts.iter().enumerate() {
            if n == 0 {
                continue;
            }
            if (seen + n) as f64 >= rank {
                let (low, high) = self.buckets.range(i);
                return Some(match (low, high) {
                    (Some(l), Some(h)) => {
                        let frac = (rank - seen as f64) / n as f64;
                        Estimate::Value(l as f64 + (h - l) as f64 * frac)
                    }
                    (Some(l), None) => Estimate::AtLeast(l as i64),
                    (None, Some(h)) => Estimate::Below(h as i64),
                    (None, None) => Estimate::Value(0.0),
                });
            }
            seen += n;
        }
        None
    }
}

/// A percentile estimated from buckets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Estimate {
    /// Interpolated within a closed bucket.
    Value(f64),
    /// In the bucket below the histogram's range: under this bound.
    Below(i64),
    /// In the bucket above the histogram's range: at least this bound.
    AtLeast(i64),
}

impl Estimate {
    /// `~301`, `<20` or `>=1000`.
    fn text(self) -> String {
        match self {
            Estimate::Value(v) => format!("~{}", v.round() as i64),
            Estimate::Below(b) => format!("<{b}"),
            Estimate::AtLeast(b) => format!(">={b}"),
        }
    }

    /// A number, or (outside the buckets' range) the text `<20` / `>=1000`.
    fn json(self) -> Value {
        match self {
            Estimate::Value(v) => json!(v),
            Estimate::Below(b) => json!(format!("<{b}")),
            Estimate::AtLeast(b) => json!(format!(">={b}")),
        }
    }
}

/// bcc's log2 rows (`print_log2_hist`): bcc's slot 0 holds 0 and is never printed, its slot 1 ("0 -> 1")
/// holds 1; here both fold into the first row, so nothing recorded goes unprinted.
fn bcc_log2_rows(h: &Histogram) -> Vec<u64> {
    let c = &h.counts;
    let mut rows = vec![0u64; LOG2_LEN - 1];
    rows[1] = c[1] + c[2];
    let n = rows.len();
    rows[2..].copy_from_slice(&c[3..n + 1]);
    rows
}

/// bcc's star bar: `width * val / val_max` stars, rounded down.
fn stars(val: u64, val_max: u64, width: u64) -> String {
    let n = if val_max == 0 {
        0
    } else {
        (u128::from(width) * u128::from(val.min(val_max)) / u128::from(val_max)) as usize
    };
    format!("{:<w$}", "*".repeat(n), w = width as usize)
}

/// bcc's `print_log2_hist` layout, exactly: `     usecs               : count     distribution`, then
/// `%10d -> %-10d : %-8d |stars|` rows up to the last non-empty one (wider columns past 2^32).
/// Nothing (not even the header) for an empty histogram, as bcc. Log2 histograms only.
pub fn bcc_log2(h: &Histogram, val_type: &str) -> String {
    let rows = bcc_log2_rows(h);
    let idx_max = rows.iter().rposition(|&v| v > 0);
    let val_max = rows.iter().copied().max().unwrap_or(0);
    let Some(idx_max) = idx_max else {
        return String::new();
    };
    let wide = idx_max > 32;
    let mut out = String::new();
    if wide {
        let _ = writeln!(
            out,
            "               {val_type:<29} : count     distribution"
        );
    } else {
        let _ = writeln!(out, "     {val_type:<19} : count     distribution");
    }
    let width = if wide { 20 } else { 40 };
    for (i, &val) in rows.iter().enumerate().take(idx_max + 1).skip(1) {
        let high = (1u128 << i) - 1;
        let mut low = (1u128 << i) >> 1;
        if low == high {
            low -= 1;
        }
        let bar = stars(val, val_max, width);
        if wide {
            let _ = writeln!(out, "{low:>20} -> {high:<20} : {val:<8} |{bar}|");
        } else {
            let _ = writeln!(out, "{low:>10} -> {high:<10} : {val:<8} |{bar}|");
        }
    }
    out
}

/// bcc's linear layout (`     usecs         : count     distribution`, then `        %-10d : %-8d |stars|`
/// rows labelled by each bucket's low end, every bucket from the first non-empty to the last, as bcc's
/// `print_linear_hist`), with the buckets below `min` and from `max` up labelled `<MIN` and `>=MAX`.
/// Linear histograms only.
pub fn bcc_linear(h: &Histogram, val_type: &str) -> String {
    let first = h.counts.iter().position(|&v| v > 0);
    let last = h.counts.iter().rposition(|&v| v > 0);
    let (Some(first), Some(last)) = (first, last) else {
        return String::new();
    };
    let val_max = h.counts.iter().copied().max().unwrap_or(0);
    let mut out = String::new();
    let _ = writeln!(out, "     {val_type:<13} : count     distribution");
    for i in first..=last {
        let val = h.counts[i];
        let label = match h.buckets.range(i) {
            (None, Some(hi)) => format!("<{hi}"),
            (Some(lo), None) => format!(">={lo}"),
            (Some(lo), _) => lo.to_string(),
            (None, None) => String::new(),
        };
        let bar = stars(val, val_max, 40);
        let _ = writeln!(out, "        {label:<10} : {val:<8} |{bar}|");
    }
    out
}

/// bpftrace's power-of-two label: 1, 2, ... 512, 1K, 2K, ... 1M, ... with a suffix per 2^10.
fn bpftrace_pow2_label(power: u32) -> String {
    let decade = (power / 10) as usize;
    let suffix = ["", "K", "M", "G", "T", "P", "E"][decade];
    format!("{}{suffix}", 1u64 << (power - 10 * decade as u32))
}

/// bpftrace's lhist label: a multiple of 1M or 1K is written with its suffix (not 0).
fn bpftrace_linear_label(n: i64) -> String {
    const KILO: i64 = 1024;
    const MEGA: i64 = 1024 * 1024;
    if n == 0 {
        "0".into()
    } else if n % MEGA == 0 {
        format!("{}M", n / MEGA)
    } else if n % KILO == 0 {
        format!("{}K", n / KILO)
    } else {
        n.to_string()
    }
}

/// bpftrace's `hist`/`lhist` body, exactly (rows from the first to the last non-empty bucket, each
/// `%-16s%8d |@...|` with a 52-character bar); the caller prints the `@name:` line above it.
/// Each count is shown divided by `div` (print(@h, 0, div)); the bars stay the counts'.
pub fn bpftrace(h: &Histogram, div: i64) -> String {
    let div = div.max(1) as u64;
    let first = h.counts.iter().position(|&v| v > 0);
    let last = h.counts.iter().rposition(|&v| v > 0);
    let (Some(first), Some(last)) = (first, last) else {
        return String::new();
    };
    let max = h.counts.iter().copied().max().unwrap_or(1);
    let mut out = String::new();
    for i in first..=last {
        let label = match h.buckets {
            Buckets::Log2 => match i {
                0 => "(..., 0)".to_string(),
                1 => "[0]".to_string(),
                2 => "[1]".to_string(),
                _ => format!(
                    "[{}, {})",
                    bpftrace_pow2_label(i as u32 - 2),
                    bpftrace_pow2_label(i as u32 - 1)
                ),
            },
            Buckets::Linear { min, max, step } => {
                let n = h.buckets.len() - 2;
                if i == 0 {
                    format!("(..., {})", bpftrace_linear_label(min))
                } else if i > n {
                    format!("[{}, ...)", bpftrace_linear_label(max))
                } else {
                    let low = min + (i as i64 - 1) * step;
                    format!(
                        "[{}, {})",
                        bpftrace_linear_label(low),
                        bpftrace_linear_label(low + step)
                    )
                }
            }
        };
        // bpftrace: int(value / (float)max * 52).
        let bar = (h.counts[i] as f32 / max as f32 * 52.0) as usize;
        let _ = writeln!(
            out,
            "{label:<16}{:>8} |{:<52}|",
            h.counts[i] / div,
            "@".repeat(bar)
        );
    }
    out
}

/// bcc's JSON `data` list: `{"interval-start", "interval-end", "count"}` per row, inclusive ends, from the
/// first row to the last non-empty one (log2: bcc's rows; linear: every bucket, open ends as null).
pub fn json_data(h: &Histogram) -> Value {
    let mut data = Vec::new();
    match h.buckets {
        Buckets::Log2 => {
            let rows = bcc_log2_rows(h);
            let last = rows.iter().rposition(|&v| v > 0).unwrap_or(0);
            for (i, &count) in rows.iter().enumerate().take(last + 1).skip(1) {
                let start = if i == 1 { 0u128 } else { 1u128 << (i - 1) };
                let end = (1u128 << i) - 1;
                data.push(json!({"interval-start": start as u64, "interval-end": end as u64, "count": count}));
            }
        }
        Buckets::Linear { .. } => {
            let first = h.counts.iter().position(|&v| v > 0);
            let last = h.counts.iter().rposition(|&v| v > 0);
            if let (Some(first), Some(last)) = (first, last) {
                for i in first..=last {
                    let (lo, hi) = h.buckets.range(i);
                    let lo = lo.map_or(Value::Null, |v| json!(v as i64));
                    let hi = hi.map_or(Value::Null, |v| json!((v - 1) as i64));
                    data.push(
                        json!({"interval-start": lo, "interval-end": hi, "count": h.counts[i]}),
                    );
                }
            }
        }
    }
    Value::Array(data)
}

/// The summary's figures: count, exact average (when the sum is known), and p50/p90/p99 estimated from
/// the buckets.
pub fn summary_json(h: &Histogram) -> Value {
    let mut m = Map::new();
    m.insert("count".into(), json!(h.total()));
    if let Some(sum) = h.sum {
        m.insert("sum".into(), json!(sum));
        if h.total() > 0 {
            m.insert("avg".into(), json!(sum as f64 / h.total() as f64));
        }
    }
    for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)] {
        if let Some(v) = h.quantile(q) {
            m.insert(name.into(), v.json());
        }
    }
    Value::Object(m)
}

/// One line: `count 120, avg 351 usecs, p50 ~301, p90 ~488, p99 ~1003 usecs` (percentiles estimated within
/// buckets, `<MIN` / `>=MAX` outside a linear histogram's range; the average is exact when the sum is known).
/// Empty histograms say `count 0`.
pub fn summary_line(h: &Histogram, unit: &str) -> String {
    let count = h.total();
    let mut s = format!("count {count}");
    if count == 0 {
        return s;
    }
    if let Some(sum) = h.sum {
        let _ = write!(s, ", avg {} {unit}", sum / count);
    }
    let p = |q| h.quantile(q).map_or(String::new(), Estimate::text);
    let _ = write!(
        s,
        ", p50 {}, p90 {}, p99 {} {unit}",
        p(0.5),
        p(0.9),
        p(0.99)
    );
    s
}

#[cfg(test)]
/// The log2 bucket of a non-negative value (the BPF programs compute the same: bits.bpf.h).
pub fn log2_index(v: u64) -> usize {
    if v == 0 {
        1
    } else {
        (63 - v.leading_zeros()) as usize + 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log2_of(values: &[u64]) -> Histogram {
        let mut h = Histogram::new(Buckets::Log2);
        for &v in values {
            h.counts[log2_index(v)] += 1;
        }
        h.sum = Some(values.iter().sum());
        h
    }

    #[test]
    fn log2_index_matches_ranges() {
        for v in [0u64, 1, 2, 3, 4, 7, 8, 1000, 1 << 40, u64::MAX] {
            let (lo, hi) = Buckets::Log2.range(log2_index(v));
            assert!(lo.unwrap() <= v as i128 && (v as i128) < hi.unwrap(), "{v}");
        }
    }

    /// The exact text bcc's biolatency prints for these counts (tools/biolatency_example.txt's shape).
    #[test]
    fn bcc_log2_layout_is_bccs() {
        let mut h = Histogram::new(Buckets::Log2);
        // rows: 0->1: 0, 2->3: 0, 4->7: 0, 8->15: 0, 16->31: 1, 32->63: 12, 64->127: 40, 128->255: 3
        h.counts[log2_index(16)] = 1;
        h.counts[log2_index(32)] = 12;
        h.counts[log2_index(64)] = 40;
        h.counts[log2_index(128)] = 3;
        let want = "     usecs               : count     distribution
         0 -> 1          : 0        |                                        |
         2 -> 3          : 0        |                                        |
         4 -> 7          : 0        |                                        |
         8 -> 15         : 0        |                                        |
        16 -> 31         : 1        |*                                       |
        32 -> 63         : 12       |************                            |
        64 -> 127        : 40       |****************************************|
       128 -> 255        : 3        |***                                     |
";
        assert_eq!(bcc_log2(&h, "usecs"), want);
    }

    #[test]
    fn zero_and_one_share_bccs_first_row() {
        let h = log2_of(&[0, 1, 1, 5]);
        let text = bcc_log2(&h, "msecs");
        assert!(text.starts_with("     msecs               : count     distribution\n"));
        assert!(text.contains(
            "         0 -> 1          : 3        |****************************************|\n"
        ));
        assert!(text.contains(
            "         4 -> 7          : 1        |*************                           |\n"
        ));
        assert_eq!(bcc_log2(&Histogram::new(Buckets::Log2), "usecs"), "");
    }

    #[test]
    fn bcc_log2_widens_past_2_to_the_32() {
        let h = log2_of(&[1 << 40]);
        let text = bcc_log2(&h, "nsecs");
        assert!(text.starts_with(
            "               nsecs                         : count     distribution\n"
        ));
        assert!(text.ends_with(
            "       1099511627776 -> 2199023255551        : 1        |********************|\n"
        ));
    }

    /// bpftrace 0.17's `@usecs = hist(...)` body for the same values.
    #[test]
    fn bpftrace_hist_layout_is_bpftraces() {
        let h = log2_of(&[1, 2, 3, 700, 700, 1024, 1500, 3000]);
        let want = "[1]                    1 |@@@@@@@@@@@@@@@@@@@@@@@@@@                          |
[2, 4)                 2 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
[4, 8)                 0 |                                                    |
[8, 16)                0 |                                                    |
[16, 32)               0 |                                                    |
[32, 64)               0 |                                                    |
[64, 128)              0 |                                                    |
[128, 256)             0 |                                                    |
[256, 512)             0 |                                                    |
[512, 1K)              2 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
[1K, 2K)               2 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
[2K, 4K)               1 |@@@@@@@@@@@@@@@@@@@@@@@@@@                          |
";
        assert_eq!(bpftrace(&h, 1), want);
        let mut neg = Histogram::new(Buckets::Log2);
        neg.counts[0] = 1;
        neg.counts[1] = 3;
        assert_eq!(
            bpftrace(&neg, 1),
            "(..., 0)               1 |@@@@@@@@@@@@@@@@@                                   |\n\
             [0]                    3 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|\n"
        );
    }

    #[test]
    fn bpftrace_lhist_layout_is_bpftraces() {
        let mut h = Histogram::new(Buckets::Linear {
            min: 0,
            max: 3072,
            step: 1024,
        });
        // below, [0, 1K), [1K, 2K), [2K, 3K), [3K, ...)
        h.counts = vec![0, 4, 0, 2, 1];
        let want = "[0, 1K)                4 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
[1K, 2K)               0 |                                                    |
[2K, 3K)               2 |@@@@@@@@@@@@@@@@@@@@@@@@@@                          |
[3K, ...)              1 |@@@@@@@@@@@@@                                       |
";
        assert_eq!(bpftrace(&h, 1), want);
        h.counts = vec![1, 0, 0, 0, 0];
        assert_eq!(
            bpftrace(&h, 1),
            "(..., 0)               1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|\n"
        );
    }

    #[test]
    fn linear_layout_is_libbpf_tools() {
        let mut h = Histogram::new(Buckets::Linear {
            min: 0,
            max: 300,
            step: 100,
        });
        h.counts = vec![0, 10, 0, 5, 2];
        let want = "     usecs         : count     distribution
        0          : 10       |****************************************|
        100        : 0        |                                        |
        200        : 5        |********************                    |
        >=300      : 2        |********                                |
";
        assert_eq!(bcc_linear(&h, "usecs"), want);
    }

    #[test]
    fn json_rows_are_bccs_and_parse() {
        let h = log2_of(&[0, 3, 3, 9]);
        let data = json_data(&h);
        let text = serde_json::to_string(&data).unwrap();
        assert_eq!(
            text,
            r#"[{"interval-start":0,"interval-end":1,"count":1},{"interval-start":2,"interval-end":3,"count":2},{"interval-start":4,"interval-end":7,"count":0},{"interval-start":8,"interval-end":15,"count":1}]"#
        );
        let summary = summary_json(&h);
        assert_eq!(summary["count"], 4);
        assert_eq!(summary["sum"], 15);
    }

    /// JSON rows and text rows of one histogram agree row for row.
    #[test]
    fn json_rows_match_the_text_rows() {
        let h = log2_of(&[0, 1, 5, 9, 9, 300, 70_000, 1 << 20]);
        let text = bcc_log2(&h, "usecs");
        let text_rows: Vec<(u64, u64, u64)> = text
            .lines()
            .skip(1)
            .map(|l| {
                let (range, rest) = l.split_once(" : ").unwrap();
                let (lo, hi) = range.split_once(" -> ").unwrap();
                let n = rest.split_whitespace().next().unwrap();
                (
                    lo.trim().parse().unwrap(),
                    hi.trim().parse().unwrap(),
                    n.parse().unwrap(),
                )
            })
            .collect();
        let json_rows: Vec<(u64, u64, u64)> = json_data(&h)
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["interval-start"].as_u64().unwrap(),
                    r["interval-end"].as_u64().unwrap(),
                    r["count"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(text_rows, json_rows);
        assert_eq!(json_rows.iter().map(|r| r.2).sum::<u64>(), 8);
    }

    #[test]
    fn quantiles_interpolate_within_buckets() {
        // 100 values in [64, 128): the median is estimated halfway through the bucket.
        let h = log2_of(&[100; 100]);
        assert_eq!(h.quantile(0.5), Some(Estimate::Value(96.0)));
        assert_eq!(h.quantile(1.0), Some(Estimate::Value(128.0)));
        // 90 fast, 10 slow: p90 is in the fast bucket's top, p99 in the slow bucket.
        let mut values = vec![10u64; 90];
        values.extend([5000; 10]);
        let h = log2_of(&values);
        let value = |q| match h.quantile(q) {
            Some(Estimate::Value(v)) => v,
            other => panic!("{other:?}"),
        };
        let (p90, p99) = (value(0.9), value(0.99));
        assert!((8.0..=16.0).contains(&p90), "{p90}");
        assert!((4096.0..=8192.0).contains(&p99), "{p99}");
        assert_eq!(
            summary_line(&h, "usecs"),
            format!(
                "count 100, avg {} usecs, p50 ~12, p90 ~16, p99 ~7782 usecs",
                (90 * 10 + 10 * 5000) / 100
            )
        );
        assert_eq!(Histogram::new(Buckets::Log2).quantile(0.5), None);
    }

    #[test]
    fn quantiles_outside_a_linear_range_say_so() {
        let mut h = Histogram::new(Buckets::Linear {
            min: 20,
            max: 40,
            step: 5,
        });
        // 47 below 20, 3 in [20, 25); then 57 of 100 from 40 up.
        h.counts = vec![47, 3, 0, 0, 0, 0];
        assert!(summary_line(&h, "usecs").ends_with("p50 <20, p90 <20, p99 ~25 usecs"));
        assert_eq!(summary_json(&h)["p50"], "<20");
        h.counts = vec![0, 43, 0, 0, 0, 57];
        assert!(summary_line(&h, "usecs").ends_with("p50 >=40, p90 >=40, p99 >=40 usecs"));
    }
}
