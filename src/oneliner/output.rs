//! What a one-liner prints, as bpftrace prints it: printf records formatted in user space, and every map at
//! exit (`@x: 5`, `@[bash, 12]: 3` ascending by value, stats lines, hist/lhist bodies, a blank line after
//! each map).
use std::fmt::Write as _;

use serde_json::{json, Map, Value};

use super::maps::{size_of, MapDef};
use super::resolve::Resolve;
use super::sema::{MapKind, Type};
use crate::render::hist::{self as hist, Buckets, Histogram};

/// A value printed by name or as text: strings, stacks (`indent` spaces before each frame, a line each,
/// after a newline, as bpftrace: 4 in map keys, 8 in printf), symbols, attach points; integers in decimal.
pub fn text(t: &Type, b: &[u8], r: &dyn Resolve, indent: usize) -> String {
    let word = |i: usize| {
        b.get(i * 8..i * 8 + 8)
            .map_or(0, |w| i64::from_ne_bytes(w.try_into().expect("8 bytes")))
    };
    match t {
        Type::Str(_) => c_str(b),
        Type::Int { signed: true, .. } => word(0).to_string(),
        Type::KStack(limit) | Type::UStack(limit) => {
            let pid = matches!(t, Type::UStack(_)).then(|| word(1) as u32);
            let frames = r.stack(word(0), pid, *limit);
            if frames.is_empty() {
                return String::new();
            }
            let pad = " ".repeat(indent);
            let mut out = String::from("\n");
            for f in frames {
                let _ = writeln!(out, "{pad}{f}");
            }
            out
        }
        Type::Sym { user } => r.sym(word(0) as u64, user.then(|| word(1) as u32)),
        Type::Inet => inet(b),
        Type::Buf(_) => hex_escaped(b),
        Type::Strftime(format) => strftime_ns(format, word(0) as u64),
        Type::Mac => b
            .iter()
            .take(6)
            .map(|x| format!("{x:02X}"))
            .collect::<Vec<_>>()
            .join(":"),
        Type::Point { func } => r.point(word(0) as u64, *func),
        _ => (word(0) as u64).to_string(),
    }
}

/// ntop()'s address: its family (8 bytes), then 4 or 16 bytes, as inet_ntop(3) writes them.
fn inet(b: &[u8]) -> String {
    let family = b
        .get(..8)
        .map_or(0, |w| u64::from_ne_bytes(w.try_into().expect("8 bytes")));
    match (family, b.get(8..24)) {
        (10, Some(a)) => {
            let a: [u8; 16] = a.try_into().expect("16 bytes");
            std::net::Ipv6Addr::from(a).to_string()
        }
        (_, Some(a)) => std::net::Ipv4Addr::new(a[0], a[1], a[2], a[3]).to_string(),
        _ => String::new(),
    }
}

/// buf()'s bytes (a length, 8 bytes, then the data) as bpftrace's %r prints them: printable ASCII as it
/// is, the rest as \xNN.
fn hex_escaped(b: &[u8]) -> String {
    let len = b
        .get(..8)
        .map_or(0, |w| u64::from_ne_bytes(w.try_into().expect("8 bytes"))) as usize;
    let data = b.get(8..).unwrap_or(&[]);
    data[..len.min(data.len())]
        .iter()
        .map(|&c| {
            if (0x20..0x7f).contains(&c) {
                (c as char).to_string()
            } else {
                format!("\\x{c:02x}")
            }
        })
        .collect()
}

/// Text of the NUL-terminated string at the start of `b`.
fn c_str(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn int_at(b: &[u8], at: usize) -> i64 {
    i64::from_ne_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// join()'s line, without its newline: the record's strings (STR_LEN bytes each) up to the first empty
/// one, `delim` between them.
pub fn join(delim: &str, data: &[u8]) -> String {
    let parts: Vec<String> = data
        .chunks(super::codegen::STR_LEN)
        .map(|c| {
            String::from_utf8_lossy(&c[..c.iter().position(|&b| b == 0).unwrap_or(c.len())])
                .into_owned()
        })
        .take_while(|s| !s.is_empty())
        .collect();
    parts.join(delim)
}

/// Formats a printf record: `%d %i %u %x %X %o %c %p %s %r %%`, with flags, width and precision as C's.
pub fn printf(format: &str, args: &[Type], data: &[u8], r: &dyn Resolve) -> String {
    let mut out = String::new();
    let mut at = 0;
    let mut next = 0;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = String::new();
        while let Some(&n) = chars.peek() {
            if "-+ #0123456789.lhz".contains(n) {
                spec.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let Some(verb) = chars.next() else { break };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(t) = args.get(next) else { break };
        next += 1;
        let n = size_of(t);
        let field = data.get(at..at + n).unwrap_or(&[]);
        at += n;
        let left = spec.contains('-');
        let zero = spec.starts_with('0') || spec.contains("-0") || spec.contains("+0");
        let digits: String = spec
            .chars()
            .filter(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let (width, prec) = match digits.split_once('.') {
            Some((w, p)) => (w.parse::<usize>().unwrap_or(0), p.parse::<usize>().ok()),
            None => (digits.parse::<usize>().unwrap_or(0), None),
        };
        let text = match (verb, t) {
            ('s', Type::Str(_)) => {
                let mut s = c_str(field);
                if let Some(p) = prec {
                    s = s.chars().take(p).collect();
                }
                s
            }
            ('s' | 'r', _) => text(t, field, r, 8),
            (_, Type::Str(_)) => c_str(field),
            _ if field.len() < 8 => String::new(),
            ('d' | 'i' | 'u' | 'x' | 'X' | 'o', _) => {
                // C's length modifiers narrow the value: hh to a char, h to a short.
                let v = int_at(field, 0);
                let v = match spec.matches('h').count() {
                    2 if "di".contains(verb) => v as i8 as i64,
                    2 => v as u8 as i64,
                    1 if "di".contains(verb) => v as i16 as i64,
                    1 => v as u16 as i64,
                    _ => v,
                };
                let digits = match verb {
                    'd' | 'i' => v.unsigned_abs().to_string(),
                    'u' => (v as u64).to_string(),
                    'x' => format!("{v:x}"),
                    'X' => format!("{v:X}"),
                    _ => format!("{v:o}"),
                };
                // A precision is a minimum number of digits.
                let digits = match prec {
                    Some(p) if digits.len() < p => {
                        format!("{}{digits}", "0".repeat(p - digits.len()))
                    }
                    _ => digits,
                };
                // Flags: + and space sign non-negative numbers, # marks hex and octal.
                let sign = if v < 0 && "di".contains(verb) {
                    "-"
                } else if "di".contains(verb) && spec.contains('+') {
                    "+"
                } else if "di".contains(verb) && spec.contains(' ') {
                    " "
                } else {
                    ""
                };
                let alt = match verb {
                    'x' if spec.contains('#') && v != 0 => "0x",
                    'X' if spec.contains('#') && v != 0 => "0X",
                    'o' if spec.contains('#') && !digits.starts_with('0') => "0",
                    _ => "",
                };
                format!("{sign}{alt}{digits}")
            }
            ('p', _) => format!("0x{:x}", int_at(field, 0)),
            ('c', _) => {
                char::from_u32(int_at(field, 0) as u32).map_or(String::new(), |c| c.to_string())
            }
            _ => String::new(),
        };
        let pad = width.saturating_sub(text.chars().count());
        if left {
            out.push_str(&text);
            out.push_str(&" ".repeat(pad));
        } else if zero && verb != 's' && (prec.is_none() || verb == 'c' || verb == 'p') {
            // Zeros go between the sign or 0x and the digits.
            let lead = ["-", "+", " ", "0x", "0X"]
                .iter()
                .find(|p| text.starts_with(**p) && text.len() > p.len())
                .map_or(0, |p| p.len());
            let (sign, digits) = text.split_at(lead);
            out.push_str(sign);
            out.push_str(&"0".repeat(pad));
            out.push_str(digits);
        } else {
            out.push_str(&" ".repeat(pad));
            out.push_str(&text);
        }
    }
    out
}

/// A key's parts as bpftrace prints them inside `@x[...]` (joined by ", ") or in JSON (joined by ",").
fn key_parts(keys: &[Type], key: &[u8], r: &dyn Resolve) -> Vec<String> {
    let mut parts = Vec::new();
    let mut at = 0;
    for t in keys {
        let n = size_of(t);
        let b = &key[at.min(key.len())..(at + n).min(key.len())];
        parts.push(text(t, b, r, 4));
        at += n;
    }
    parts
}

/// How print(@m, top, div) shows a map: its `top` largest entries (0: all), values divided by `div`.
/// bpftrace ignores both for stats().
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shown {
    pub top: usize,
    pub div: i64,
}

impl Shown {
    pub const ALL: Shown = Shown { top: 0, div: 1 };

    /// What applies to a map of `kind`: nothing of print()'s arguments for stats(), as bpftrace.
    fn for_kind(self, kind: &MapKind) -> Shown {
        if *kind == MapKind::Stats {
            Shown::ALL
        } else {
            self
        }
    }
}

/// A map's entry as read: key bytes, the value summed over CPUs as i64 slots.
pub type Entry = (Vec<u8>, Vec<i64>);

/// The average of an avg()/stats() value (count, then total); 0 when it counted nothing.
fn average(v: &[i64]) -> i64 {
    if v[0] > 0 {
        v[1] / v[0]
    } else {
        0
    }
}

/// A map's entries as bpftrace orders them, ascending by value (a histogram by its total, stats by their
/// average, a map of strings by its text; ties by key), the last `top` only: each as its key's parts'
/// text (made once: a stack's are read from its map and symbolized) and its value. A count() without
/// keys that holds nothing is one entry of 0 (after clear(), or when its probe never ran).
fn ordered(
    def: &MapDef,
    entries: &[Entry],
    r: &dyn Resolve,
    top: usize,
) -> Vec<(Vec<String>, Vec<i64>)> {
    if entries.is_empty() && def.keys.is_empty() && def.kind == MapKind::Count {
        return vec![(Vec::new(), vec![0])];
    }
    #[derive(PartialEq, Eq, PartialOrd, Ord)]
    enum By {
        Int(i64),
        Text(String),
    }
    let mut rows: Vec<(By, String, Vec<String>, &Entry)> = entries
        .iter()
        .map(|e| {
            let v = &e.1;
            let by = match &def.kind {
                MapKind::Hist | MapKind::Lhist { .. } => By::Int(v.iter().sum()),
                MapKind::Stats | MapKind::Avg => By::Int(average(v)),
                MapKind::Value(t) if !matches!(t, Type::Int { .. }) => {
                    By::Text(value_text(def, v, r, 1))
                }
                _ => By::Int(v[0]),
            };
            let parts = key_parts(&def.keys, &e.0, r);
            (by, parts.join(", "), parts, e)
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    largest(rows, top)
        .into_iter()
        .map(|(_, _, parts, e)| (parts, e.1.clone()))
        .collect()
}

/// One entry's value as text (`div` applied; stats are whole).
fn value_text(def: &MapDef, v: &[i64], r: &dyn Resolve, div: i64) -> String {
    match &def.kind {
        MapKind::Stats => format!("count {}, average {}, total {}", v[0], average(v), v[1]),
        MapKind::Avg => (average(v) / div).to_string(),
        MapKind::Value(t) if !matches!(t, Type::Int { .. }) => {
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_ne_bytes()).collect();
            text(t, &bytes, r, 4)
        }
        _ => (v[0] / div).to_string(),
    }
}

/// One map's entries (key bytes, the value summed over CPUs as i64 slots), printed as bpftrace 0.17 prints
/// a map, at exit or by print(): its entries' lines joined by newlines, then one newline; so a histogram's
/// entries are parted by a blank line and end with one, a map of values has none between its lines (nor
/// before the next map), and an empty map prints a blank line. Stats and averages end with one more.
pub fn print_map(def: &MapDef, entries: &[Entry], r: &dyn Resolve, shown: Shown) -> String {
    let shown = shown.for_kind(&def.kind);
    let label = |parts: &[String]| {
        if def.keys.is_empty() {
            format!("@{}", def.name)
        } else {
            format!("@{}[{}]", def.name, parts.join(", "))
        }
    };
    let lines: Vec<String> = ordered(def, entries, r, shown.top)
        .iter()
        .map(|(parts, v)| match &def.kind {
            // bpftrace leaves a space after a histogram's label.
            MapKind::Hist | MapKind::Lhist { .. } => format!(
                "{}: \n{}",
                label(parts),
                hist::bpftrace(&histogram(def, v), shown.div)
            ),
            _ => format!("{}: {}", label(parts), value_text(def, v, r, shown.div)),
        })
        .collect();
    let mut out = lines.join("\n");
    out.push('\n');
    if matches!(def.kind, MapKind::Stats | MapKind::Avg) {
        out.push('\n');
    }
    out
}

/// The last `top` of sorted rows, the largest (all of them when `top` is 0).
fn largest<T>(mut rows: Vec<T>, top: usize) -> Vec<T> {
    if top > 0 && rows.len() > top {
        rows.drain(..rows.len() - top);
    }
    rows
}

fn histogram(def: &MapDef, v: &[i64]) -> Histogram {
    let buckets = match def.kind {
        MapKind::Lhist { min, max, step } => Buckets::Linear { min, max, step },
        _ => Buckets::Log2,
    };
    let mut h = Histogram::new(buckets);
    for (c, x) in h.counts.iter_mut().zip(v) {
        *c = *x as u64;
    }
    h
}

/// A histogram's buckets from the first used to the last, as bpftrace's JSON: inclusive min and max,
/// counts divided by `div`.
fn hist_json(h: &Histogram, div: i64) -> Value {
    let used: Vec<usize> = (0..h.counts.len()).filter(|&i| h.counts[i] > 0).collect();
    let (Some(&lo), Some(&hi)) = (used.first(), used.last()) else {
        return json!([]);
    };
    (lo..=hi)
        .map(|i| {
            let (low, high) = h.buckets.range(i);
            let mut o = Map::new();
            if let Some(l) = low {
                o.insert("min".into(), json!(l as i64));
            }
            if let Some(h) = high {
                o.insert("max".into(), json!((h - 1) as i64));
            }
            o.insert("count".into(), json!(h.counts[i] / div.max(1) as u64));
            Value::Object(o)
        })
        .collect()
}

/// One map as bpftrace's `-f json` record (one line), in the order and with the entries text shows, or
/// None when it is empty.
pub fn map_json(def: &MapDef, entries: &[Entry], r: &dyn Resolve, shown: Shown) -> Option<String> {
    let shown = shown.for_kind(&def.kind);
    let entries = ordered(def, entries, r, shown.top);
    if entries.is_empty() {
        return None;
    }
    let kind = match &def.kind {
        MapKind::Hist | MapKind::Lhist { .. } => "hist",
        MapKind::Stats | MapKind::Avg => "stats",
        _ => "map",
    };
    let div = shown.div;
    let value = |v: &[i64]| -> Value {
        match &def.kind {
            MapKind::Hist | MapKind::Lhist { .. } => hist_json(&histogram(def, v), div),
            MapKind::Stats => json!({"count": v[0], "average": average(v), "total": v[1]}),
            MapKind::Avg => json!(average(v) / div),
            MapKind::Value(t) if !matches!(t, Type::Int { .. }) => {
                json!(value_text(def, v, r, div))
            }
            _ => json!(v[0] / div),
        }
    };
    let data = if def.keys.is_empty() {
        value(&entries[0].1)
    } else {
        Value::Object(
            entries
                .iter()
                .map(|(parts, v)| (parts.join(","), value(v)))
                .collect::<Map<String, Value>>(),
        )
    };
    let name = format!("@{}", def.name);
    Some(json_line(&json!({"type": kind, "data": {name: data}})))
}

/// Text a program printed (`kind`: printf, time) as bpftrace's `-f json` record.
pub fn text_json(kind: &str, text: &str) -> String {
    json_line(&json!({"type": kind, "data": text}))
}

/// The local time now, formatted by strftime(3) with `format` (time()'s).
pub fn local_time(format: &str) -> String {
    // SAFETY: time() with no output pointer.
    strftime_at(format, unsafe { libc::time(std::ptr::null_mut()) })
}

/// strftime()'s value: `ns` of the monotonic clock (nsecs') as the local time it was, formatted, with
/// bpftrace's `%f` (microseconds) too.
pub fn strftime_ns(format: &str, ns: u64) -> String {
    let clock = |id| {
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid timespec to fill.
        unsafe { libc::clock_gettime(id, &mut t) };
        t.tv_sec as i128 * 1_000_000_000 + t.tv_nsec as i128
    };
    let wall = clock(libc::CLOCK_REALTIME) - clock(libc::CLOCK_MONOTONIC) + ns as i128;
    let (secs, sub) = (
        wall.div_euclid(1_000_000_000),
        wall.rem_euclid(1_000_000_000),
    );
    let format = format.replace("%f", &format!("{:06}", sub / 1000));
    strftime_at(&format, secs as libc::time_t)
}

/// `format` by strftime(3) of the local time at `when` (seconds since the epoch).
fn strftime_at(format: &str, when: libc::time_t) -> String {
    let Ok(fmt) = std::ffi::CString::new(format) else {
        return String::new();
    };
    // SAFETY: localtime_r/strftime with valid pointers: a zeroed tm filled by localtime_r, a buffer
    // whose length is passed; strftime returns the bytes written (0 if it did not fit).
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&when, &mut tm).is_null() {
            return String::new();
        }
        let mut buf = vec![0u8; 256 + format.len() * 8];
        let n = libc::strftime(buf.as_mut_ptr().cast(), buf.len(), fmt.as_ptr(), &tm);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

/// JSON as bpftrace writes it: one line, `", "` between members and `": "` after keys.
struct Spaced;

impl serde_json::ser::Formatter for Spaced {
    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        separate(w, first)
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }

    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        separate(w, first)
    }
}

/// `", "` before every member but the first.
fn separate<W: ?Sized + std::io::Write>(w: &mut W, first: bool) -> std::io::Result<()> {
    if first {
        Ok(())
    } else {
        w.write_all(b", ")
    }
}

/// One JSON value in bpftrace's layout.
pub fn json_line(v: &Value) -> String {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, Spaced);
    serde::Serialize::serialize(v, &mut ser).expect("serializing to memory");
    String::from_utf8(out).expect("JSON is UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names as a live run would give them.
    struct Table;

    impl Resolve for Table {
        fn point(&self, idx: u64, func: bool) -> String {
            let (p, f) =
                [("uprobe:/bin/x:count_a", "count_a"), ("tracepoint:a:b", "")][idx as usize];
            (if func { f } else { p }).to_string()
        }
        fn stack(&self, id: i64, pid: Option<u32>, limit: usize) -> Vec<String> {
            let frames = match (id, pid) {
                (3, None) => vec!["do_nanosleep+5", "hrtimer_nanosleep+9", "do_syscall_64+1"],
                (4, Some(7)) => vec!["count_a+4", "main+20"],
                _ => vec![],
            };
            let n = if limit == 0 { frames.len() } else { limit };
            frames.into_iter().take(n).map(String::from).collect()
        }
        fn sym(&self, addr: u64, _pid: Option<u32>) -> String {
            format!("sym{addr}")
        }
    }

    #[test]
    fn stacks_and_points_print_as_bpftrace() {
        let mut rec = 3i64.to_ne_bytes().to_vec();
        rec.extend(1u64.to_ne_bytes());
        let args = [Type::KStack(2), Type::Point { func: false }];
        assert_eq!(
            printf("%s|%s\n", &args, &rec, &Table),
            "\n        do_nanosleep+5\n        hrtimer_nanosleep+9\n|tracepoint:a:b\n"
        );
        let mut key = 4i64.to_ne_bytes().to_vec();
        key.extend(7u64.to_ne_bytes());
        assert_eq!(
            text(&Type::UStack(0), &key, &Table, 4),
            "\n    count_a+4\n    main+20\n"
        );
        assert_eq!(
            text(&Type::KStack(0), &(-14i64).to_ne_bytes(), &Table, 4),
            ""
        );
        assert_eq!(
            text(&Type::Point { func: true }, &0u64.to_ne_bytes(), &Table, 4),
            "count_a"
        );
    }

    #[test]
    fn printf_formats_as_c() {
        let args = [
            Type::Str(16),
            Type::Int {
                size: 8,
                signed: true,
            },
            Type::Int {
                size: 8,
                signed: false,
            },
        ];
        let mut data = b"bash\0\0\0\0\0\0\0\0\0\0\0\0".to_vec();
        data.extend((-5i64).to_ne_bytes());
        data.extend(255u64.to_ne_bytes());
        assert_eq!(
            printf("%-6s|%d|%5x|%%\n", &args, &data, &Table),
            "bash  |-5|   ff|%\n"
        );
        let neg = (-5i64).to_ne_bytes();
        assert_eq!(printf("[%05d]", &args[1..2], &neg, &Table), "[-0005]");
        assert_eq!(printf("%.2s", &args[..1], &data[..16], &Table), "ba");
        // As bpftrace (C's printf): a precision pads digits, hh narrows to a char.
        let mut two = 7i64.to_ne_bytes().to_vec();
        two.extend(300i64.to_ne_bytes());
        assert_eq!(
            printf(
                "%5.3d|%hhd",
                &[args[1].clone(), args[1].clone()],
                &two,
                &Table
            ),
            "  007|44"
        );
    }
}
