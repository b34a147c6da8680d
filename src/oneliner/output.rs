//! What a one-liner prints, as bpftrace prints it: printf records formatted in user space, and every map at
//! exit (`@x: 5`, `@[bash, 12]: 3` ascending by value, stats lines, hist/lhist bodies, a blank line after
//! each map).
use std::fmt::Write as _;

use super::maps::{size_of, MapDef};
use super::sema::{MapKind, Type};
use crate::render::hist::{self as hist, Buckets, Histogram};

/// Text of the NUL-terminated string at the start of `b`.
fn c_str(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn int_at(b: &[u8], at: usize) -> i64 {
    i64::from_ne_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Formats a printf record: `%d %i %u %x %X %o %c %p %s %%`, with flags, width and precision as C's.
pub fn printf(format: &str, args: &[Type], data: &[u8]) -> String {
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
            ('s', _) => {
                let mut s = c_str(field);
                if let Some(p) = prec {
                    s = s.chars().take(p).collect();
                }
                s
            }
            (_, Type::Str(_)) => c_str(field),
            _ if field.len() < 8 => String::new(),
            ('d' | 'i', _) => int_at(field, 0).to_string(),
            ('u', _) => (int_at(field, 0) as u64).to_string(),
            ('x', _) => format!("{:x}", int_at(field, 0)),
            ('X', _) => format!("{:X}", int_at(field, 0)),
            ('o', _) => format!("{:o}", int_at(field, 0)),
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
        } else if zero && verb != 's' {
            let (sign, digits) = match text.strip_prefix('-') {
                Some(d) => ("-", d),
                None => ("", text.as_str()),
            };
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

/// A key as bpftrace prints it inside `@x[...]`: integers in decimal, strings as text, joined by ", ".
fn key_text(keys: &[Type], key: &[u8]) -> String {
    let mut parts = Vec::new();
    let mut at = 0;
    for t in keys {
        let n = size_of(t);
        let b = &key[at..(at + n).min(key.len())];
        parts.push(match t {
            Type::Str(_) => c_str(b),
            Type::Int { signed: true, .. } => int_at(b, 0).to_string(),
            _ => (int_at(b, 0) as u64).to_string(),
        });
        at += n;
    }
    parts.join(", ")
}

/// One map's entries (key bytes, the value summed over CPUs as i64 slots), printed as bpftrace prints maps
/// at exit.
pub fn print_map(def: &MapDef, entries: &[(Vec<u8>, Vec<i64>)]) -> String {
    if entries.is_empty() {
        return String::new();
    }
    let name = &def.name;
    let label = |key: &[u8]| {
        if def.keys.is_empty() {
            format!("@{name}")
        } else {
            format!("@{name}[{}]", key_text(&def.keys, key))
        }
    };
    let mut out = String::new();
    match &def.kind {
        MapKind::Hist | MapKind::Lhist { .. } => {
            let buckets = match def.kind {
                MapKind::Lhist { min, max, step } => Buckets::Linear { min, max, step },
                _ => Buckets::Log2,
            };
            let mut rows: Vec<(u64, String, Histogram)> = entries
                .iter()
                .map(|(k, v)| {
                    let mut h = Histogram::new(buckets);
                    for (c, x) in h.counts.iter_mut().zip(v) {
                        *c = *x as u64;
                    }
                    (h.total(), label(k), h)
                })
                .collect();
            rows.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
            for (_, l, h) in rows {
                let _ = writeln!(out, "{l}:");
                out.push_str(&hist::bpftrace(&h));
                out.push('\n');
            }
            return out;
        }
        MapKind::Stats => {
            let mut rows: Vec<(i64, String)> = entries
                .iter()
                .map(|(k, v)| {
                    let (count, total) = (v[0], v[1]);
                    let avg = if count > 0 { total / count } else { 0 };
                    (
                        avg,
                        format!("{}: count {count}, average {avg}, total {total}", label(k)),
                    )
                })
                .collect();
            rows.sort();
            for (_, l) in rows {
                let _ = writeln!(out, "{l}");
            }
        }
        MapKind::Value(Type::Str(_)) => {
            let mut rows: Vec<(String, String)> = entries
                .iter()
                .map(|(k, v)| {
                    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_ne_bytes()).collect();
                    (c_str(&bytes), label(k))
                })
                .collect();
            rows.sort();
            for (v, l) in rows {
                let _ = writeln!(out, "{l}: {v}");
            }
        }
        kind => {
            let mut rows: Vec<(i64, String)> = entries
                .iter()
                .map(|(k, v)| {
                    let value = match kind {
                        MapKind::Avg => {
                            if v[0] > 0 {
                                v[1] / v[0]
                            } else {
                                0
                            }
                        }
                        _ => v[0],
                    };
                    (value, label(k))
                })
                .collect();
            rows.sort();
            for (v, l) in rows {
                let _ = writeln!(out, "{l}: {v}");
            }
        }
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
            printf("%-6s|%d|%5x|%%\n", &args, &data),
            "bash  |-5|   ff|%\n"
        );
        let neg = (-5i64).to_ne_bytes();
        assert_eq!(printf("[%05d]", &args[1..2], &neg), "[-0005]");
        assert_eq!(printf("%.2s", &args[..1], &data[..16]), "ba");
    }
}
