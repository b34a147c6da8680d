//! Tracepoint argument records as tracefs describes them (`events/CAT/EVENT/format`): the fields `args->f`
//! reads, with their offsets, sizes and types.
use super::ctypes::{CType, RecordRef};
use anyhow::{bail, Context, Result};

/// What a field holds, as far as the language cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// An integer of `size` bytes.
    Int { signed: bool },
    /// A character array, read as a string (`char prev_comm[16]`).
    Chars(usize),
    /// A pointer (`const char * filename`): an address; `str()` reads the string it points to. What it
    /// points to as far as the declaration says: a struct (`struct __kernel_timespec * rqtp`: `->` reads
    /// its members), an integer, a pointer (`const char *const * argv`: `argv[i]` reads one), else void.
    Ptr(CType),
    /// Other arrays and `__data_loc` fields: not readable yet.
    Other(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub offset: usize,
    pub size: usize,
    pub ty: FieldType,
}

/// Parses a tracefs `format` file into its fields (common_* fields included).
pub fn parse_format(text: &str) -> Result<Vec<Field>> {
    let mut fields = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("field:") else {
            continue;
        };
        // "const char * filename;\toffset:24;\tsize:8;\tsigned:0;"
        let mut parts = rest.split(';').map(str::trim);
        let decl = parts.next().unwrap_or("");
        let mut offset = None;
        let mut size = None;
        let mut signed = false;
        for p in parts {
            if let Some(v) = p.strip_prefix("offset:") {
                offset = v.parse().ok();
            } else if let Some(v) = p.strip_prefix("size:") {
                size = v.parse().ok();
            } else if let Some(v) = p.strip_prefix("signed:") {
                signed = v == "1";
            }
        }
        let (Some(offset), Some(size)) = (offset, size) else {
            bail!("a field without offset or size: {line}");
        };
        let (ty_text, name) = split_decl(decl).with_context(|| format!("field {decl:?}"))?;
        let ty = if ty_text.starts_with("__data_loc") {
            FieldType::Other(ty_text.to_string())
        } else if let Some(array) = name.find('[') {
            let is_char = ty_text.trim_end().ends_with("char");
            let n: Option<usize> = name[array + 1..].trim_end_matches(']').parse().ok();
            match (is_char, n) {
                (true, Some(n)) => FieldType::Chars(n),
                _ => FieldType::Other(format!("{ty_text} {name}")),
            }
        } else if ty_text.contains('*') {
            let words: Vec<&str> = ty_text
                .split(|c: char| c.is_whitespace() || c == '*')
                .filter(|w| !w.is_empty() && !matches!(*w, "const" | "volatile" | "__user"))
                .collect();
            let mut to = match words.as_slice() {
                ["struct", name] => CType::Record(RecordRef::named(name, false)),
                _ => match c_int_type(&words.join(" ")) {
                    Some((size, signed)) => CType::Int { size, signed },
                    None => CType::Void,
                },
            };
            for _ in 1..ty_text.matches('*').count() {
                to = CType::Ptr(Box::new(to));
            }
            FieldType::Ptr(to)
        } else {
            FieldType::Int { signed }
        };
        let name = name.split('[').next().unwrap_or(name).to_string();
        // System call records store every argument in 8 bytes and say `signed:0`; the declared C type says
        // what the value is (`int dfd` holds -100 for AT_FDCWD), as bpftrace reads it.
        let (size, ty) = match (&ty, c_int_type(ty_text)) {
            (FieldType::Int { .. }, Some((csize, csigned))) if csize <= size => {
                (csize, FieldType::Int { signed: csigned })
            }
            _ => (size, ty),
        };
        fields.push(Field {
            name,
            offset,
            size,
            ty,
        });
    }
    Ok(fields)
}

/// The size and signedness of a C integer type as the kernel's headers declare it, if it is one.
fn c_int_type(ty: &str) -> Option<(usize, bool)> {
    let words: Vec<&str> = ty
        .split_whitespace()
        .filter(|w| !matches!(*w, "const" | "volatile"))
        .collect();
    let unsigned = words.contains(&"unsigned");
    let base: Vec<&str> = words
        .iter()
        .copied()
        .filter(|w| !matches!(*w, "unsigned" | "signed" | "int") || words.len() == 1)
        .collect();
    let (size, signed) = match base.as_slice() {
        ["int"] | [] => (4, !unsigned),
        ["char"] => (1, !unsigned),
        ["short"] => (2, !unsigned),
        ["long"] | ["long", "long"] => (8, !unsigned),
        ["bool"] | ["_Bool"] => (1, false),
        ["u8" | "__u8"] => (1, false),
        ["u16" | "__u16" | "umode_t"] => (2, false),
        ["u32" | "__u32" | "uid_t" | "gid_t" | "dev_t"] => (4, false),
        ["u64" | "__u64" | "size_t"] => (8, false),
        ["s8" | "__s8"] => (1, true),
        ["s16" | "__s16"] => (2, true),
        ["s32" | "__s32" | "pid_t"] => (4, true),
        ["s64" | "__s64" | "ssize_t" | "loff_t" | "off_t"] => (8, true),
        _ => return None,
    };
    Some((size, signed))
}

/// Splits `const char * filename` into (`const char *`, `filename`).
fn split_decl(decl: &str) -> Option<(&str, &str)> {
    let decl = decl.trim();
    let cut = decl.rfind(|c: char| c.is_whitespace() || c == '*')?;
    let (ty, name) = decl.split_at(cut + 1);
    Some((ty.trim(), name.trim()))
}

/// The fields of a tracepoint, read from tracefs (mounted by bpfprof where it is not).
pub fn read_fields(category: &str, event: &str) -> Result<Vec<Field>> {
    crate::bpf::ensure_tracefs()?;
    let path = format!("/sys/kernel/tracing/events/{category}/{event}/format");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("no tracepoint {category}:{event} ({path})"))?;
    parse_format(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENAT: &str = "name: sys_enter_openat
ID: 645
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:int dfd;\toffset:16;\tsize:8;\tsigned:0;
\tfield:const char * filename;\toffset:24;\tsize:8;\tsigned:0;
\tfield:char prev_comm[16];\toffset:32;\tsize:16;\tsigned:0;
\tfield:__data_loc char[] name;\toffset:48;\tsize:4;\tsigned:0;

print fmt: \"dfd: 0x%08lx\", ((unsigned long)(REC->dfd))
";

    #[test]
    fn fields_of_a_format_file() {
        let f = parse_format(OPENAT).unwrap();
        let by = |n: &str| f.iter().find(|x| x.name == n).unwrap().clone();
        assert_eq!(by("common_pid").ty, FieldType::Int { signed: true });
        // Declared `int` in an 8-byte slot marked unsigned: read as a signed 4-byte int, as bpftrace does.
        assert_eq!((by("dfd").offset, by("dfd").size), (16, 4));
        assert_eq!(by("dfd").ty, FieldType::Int { signed: true });
        assert_eq!(
            by("filename").ty,
            FieldType::Ptr(CType::Int {
                size: 1,
                signed: true
            })
        );
        assert_eq!(by("prev_comm").ty, FieldType::Chars(16));
        assert!(matches!(by("name").ty, FieldType::Other(_)));
        assert_eq!(f.len(), 7);
    }
}
