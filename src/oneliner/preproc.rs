//! The part of C's preprocessor that bpftrace's own tools use: `#include` (the kernel's types come from
//! its BTF instead of headers, so the line is dropped), `#ifdef`/`#ifndef`/`#else`/`#endif` with
//! `BPFTRACE_HAVE_BTF` defined (as bpftrace defines it where the kernel has BTF, which bpfprof needs),
//! and `#define NAME` for them. What it leaves out is blanked, not removed: every byte keeps its offset,
//! so the parser's spans still point into the program as written.
use super::diag::{Diag, Span};

/// Names defined before the program: the kernel has BTF.
const PREDEFINED: &[&str] = &["BPFTRACE_HAVE_BTF"];

/// The program with its directives and the lines their conditions leave out blanked (spaces; newlines
/// kept).
pub fn preprocess(src: &str) -> Result<String, Diag> {
    let mut out = String::with_capacity(src.len());
    let mut defined: Vec<String> = PREDEFINED.iter().map(|s| s.to_string()).collect();
    // Open conditionals: (whether this branch is taken, whether #else was seen, where it opened).
    let mut open: Vec<(bool, bool, Span)> = Vec::new();
    let mut at = 0;
    // Inside a /* comment at the line's start: a `#` there is the comment's.
    let mut in_comment = false;
    for (n, line) in src.split_inclusive('\n').enumerate() {
        let commented = in_comment;
        in_comment = ends_in_comment(line, in_comment);
        let span = Span::new(at, at + line.trim_end().len());
        at += line.len();
        let live = open.iter().all(|c| c.0);
        let text = line.trim_start();
        // A script's interpreter line is the lexer's to skip.
        let directive = !commented && text.starts_with('#') && !(n == 0 && line.starts_with("#!"));
        if !directive {
            if live {
                out.push_str(line);
            } else {
                blank(&mut out, line);
            }
            continue;
        }
        blank(&mut out, line);
        let mut words = text[1..].split_whitespace();
        let (what, name) = (words.next().unwrap_or(""), words.next());
        let need_name = || {
            name.map(str::to_string)
                .ok_or_else(|| Diag::new(span, format!("#{what} needs a name")))
        };
        match what {
            "include" => {}
            "ifdef" | "ifndef" => {
                let is = defined.contains(&need_name()?);
                open.push((is == (what == "ifdef"), false, span));
            }
            "else" => match open.last_mut() {
                Some(c) if !c.1 => {
                    c.0 = !c.0;
                    c.1 = true;
                }
                Some(_) => return Err(Diag::new(span, "#else after #else")),
                None => return Err(Diag::new(span, "#else without #if")),
            },
            "endif" => {
                open.pop()
                    .ok_or_else(|| Diag::new(span, "#endif without #if"))?;
            }
            "define" if live => {
                if words.next().is_some() {
                    return Err(Diag::new(
                        span,
                        "#define with a value is not supported: only names, for #ifdef",
                    ));
                }
                defined.push(need_name()?);
            }
            "define" => {}
            _ => {
                return Err(Diag::new(
                    span,
                    format!("unsupported preprocessor directive: #{what}"),
                ))
            }
        }
    }
    if let Some(&(_, _, span)) = open.last() {
        return Err(Diag::new(span, "#if without #endif"));
    }
    Ok(out)
}

/// `line` as spaces (its newline kept): left out, every byte still where it was.
fn blank(out: &mut String, line: &str) {
    for c in line.chars() {
        match c {
            '\n' => out.push('\n'),
            // As many spaces as the character has bytes.
            _ => out.extend(std::iter::repeat(' ').take(c.len_utf8())),
        }
    }
}

/// Whether a /* comment is open at the end of `line`, given whether one was at its start (strings and
/// // comments skipped).
fn ends_in_comment(line: &str, mut open: bool) -> bool {
    let b = line.as_bytes();
    let mut i = 0;
    let mut in_str = false;
    while i < b.len() {
        let two = &b[i..(i + 2).min(b.len())];
        if open {
            if two == b"*/" {
                open = false;
                i += 1;
            }
        } else if in_str {
            match b[i] {
                b'\\' => i += 1,
                b'"' => in_str = false,
                _ => {}
            }
        } else if two == b"/*" {
            open = true;
            i += 1;
        } else if two == b"//" {
            break;
        } else if b[i] == b'"' {
            in_str = true;
        }
        i += 1;
    }
    open
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn btf_branches_are_kept_and_offsets_too() {
        let src = "#!/usr/bin/env bpftrace\n#include <linux/sched.h>\n#ifndef BPFTRACE_HAVE_BTF\nstruct x { int a; } // été\n#else\n#include <y.h>\n#endif\nBEGIN { exit(); }\n";
        let out = preprocess(src).expect("preprocessed");
        assert_eq!(out.len(), src.len());
        assert_eq!(out.lines().count(), src.lines().count());
        assert!(out.starts_with("#!/usr/bin/env bpftrace\n"));
        assert!(!out.contains("struct") && !out.contains("#include") && !out.contains("#if"));
        assert_eq!(&out[src.find("BEGIN").unwrap()..], "BEGIN { exit(); }\n");
    }

    #[test]
    fn a_hash_inside_a_comment_is_the_comments() {
        let src = "/*\n # need this\n */ /* \"*/\"\n#include <a.h>\n// /*\n#ifdef BPFTRACE_HAVE_BTF\nBEGIN {}\n#endif\n";
        let out = preprocess(src).expect("preprocessed");
        assert!(
            out.contains("# need this") && !out.contains("#include") && out.contains("BEGIN {}")
        );
    }

    #[test]
    fn defines_and_nesting() {
        let out = preprocess("#define A\n#ifdef A\n#ifdef B\nno\n#else\nyes\n#endif\n#endif\n")
            .expect("preprocessed");
        assert!(out.contains("yes") && !out.contains("no"), "{out:?}");
    }

    #[test]
    fn bad_directives_have_spans() {
        let e = preprocess("BEGIN {}\n#if X\n").unwrap_err();
        assert_eq!(
            (e.span.start, e.message.as_str()),
            (9, "unsupported preprocessor directive: #if")
        );
        assert_eq!(
            preprocess("#ifdef A\n").unwrap_err().message,
            "#if without #endif"
        );
        assert_eq!(
            preprocess("#endif\n").unwrap_err().message,
            "#endif without #if"
        );
        assert!(preprocess("#define X 1\n").is_err());
        assert!(preprocess("#ifdef\n#endif\n").is_err());
    }
}
