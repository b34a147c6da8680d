//! The one-liner language's lexer: tokens with spans, read on demand so that the parser can take a probe's
//! attach point (`uprobe:/bin/bash:readline`) as raw text, as bpftrace's lexer does in its attach-point state.
use super::diag::{Diag, Span};

/// A token's kind and text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tok {
    /// A name: keywords, builtins, functions and struct fields are all names here.
    Ident(String),
    Int(u64),
    Str(String),
    /// `@name`, or `@` alone (the name is empty).
    Map(String),
    /// `$name`
    Var(String),
    Punct(&'static str),
    Eof,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub tok: Tok,
    pub span: Span,
}

/// Operators and punctuation, longest first (the lexer takes the first that matches).
const PUNCTS: &[&str] = &[
    "<<=", ">>=", "->", "++", "--", "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "==", "!=",
    "<=", ">=", "&&", "||", "<<", ">>", "+", "-", "*", "/", "%", "&", "|", "^", "!", "~", "<", ">",
    "=", "(", ")", "{", "}", "[", "]", ",", ";", ":", "?", ".",
];

#[derive(Clone)]
pub struct Lexer<'s> {
    src: &'s str,
    pos: usize,
    peeked: Option<Token>,
}

impl<'s> Lexer<'s> {
    /// A lexer over `src`; a first line starting with `#!` (a script's interpreter line) is skipped.
    pub fn new(src: &'s str) -> Self {
        let pos = if src.starts_with("#!") {
            src.find('\n').unwrap_or(src.len())
        } else {
            0
        };
        Self {
            src,
            pos,
            peeked: None,
        }
    }

    /// The next token, without taking it.
    pub fn peek(&mut self) -> Result<&Token, Diag> {
        if self.peeked.is_none() {
            let t = self.lex()?;
            self.peeked = Some(t);
        }
        Ok(self.peeked.as_ref().expect("just filled"))
    }

    /// Takes the next token.
    pub fn next_token(&mut self) -> Result<Token, Diag> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.lex(),
        }
    }

    /// Reads an attach point as raw text: everything up to white space, `,`, `{` or `}` (paths keep their
    /// slashes; a predicate must therefore follow white space). None at the end of the program.
    pub fn raw_attach_point(&mut self) -> Result<Option<(String, Span)>, Diag> {
        if let Some(t) = self.peeked.take() {
            self.pos = t.span.start;
        }
        self.skip_space_and_comments()?;
        let start = self.pos;
        let rest = &self.src[start..];
        let len = rest
            .find(|c: char| c.is_whitespace() || matches!(c, ',' | '{' | '}'))
            .unwrap_or(rest.len());
        if len == 0 {
            return Ok(None);
        }
        self.pos = start + len;
        Ok(Some((
            rest[..len].to_string(),
            Span::new(start, start + len),
        )))
    }

    fn skip_space_and_comments(&mut self) -> Result<(), Diag> {
        loop {
            let rest = &self.src[self.pos..];
            let trimmed = rest.trim_start();
            self.pos += rest.len() - trimmed.len();
            if trimmed.starts_with("//") {
                self.pos += trimmed.find('\n').unwrap_or(trimmed.len());
            } else if let Some(body) = trimmed.strip_prefix("/*") {
                match body.find("*/") {
                    Some(i) => self.pos += i + 4,
                    None => {
                        return Err(Diag::new(
                            Span::new(self.pos, self.pos + 2),
                            "unterminated comment",
                        ))
                    }
                }
            } else {
                return Ok(());
            }
        }
    }

    fn lex(&mut self) -> Result<Token, Diag> {
        self.skip_space_and_comments()?;
        let start = self.pos;
        let rest = &self.src[start..];
        let Some(c) = rest.chars().next() else {
            return Ok(Token {
                tok: Tok::Eof,
                span: Span::new(start, start),
            });
        };
        let word_len = |s: &str| {
            s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(s.len())
        };
        let (tok, len) = if c.is_ascii_alphabetic() || c == '_' {
            let n = word_len(rest);
            (Tok::Ident(rest[..n].to_string()), n)
        } else if c == '@' || c == '$' {
            // `$#`: how many positional parameters there are.
            let n = if c == '$' && rest[1..].starts_with('#') {
                1
            } else {
                word_len(&rest[1..])
            };
            let name = rest[1..1 + n].to_string();
            if c == '$' && n == 0 {
                return Err(Diag::new(
                    Span::new(start, start + 1),
                    "a variable needs a name: $name",
                ));
            }
            (
                if c == '@' {
                    Tok::Map(name)
                } else {
                    Tok::Var(name)
                },
                1 + n,
            )
        } else if c.is_ascii_digit() {
            self.number(rest, start)?
        } else if c == '"' {
            self.string(rest, start)?
        } else if let Some(p) = PUNCTS.iter().find(|p| rest.starts_with(**p)) {
            (Tok::Punct(p), p.len())
        } else {
            return Err(Diag::new(
                Span::new(start, start + c.len_utf8()),
                format!("unexpected character '{c}'"),
            ));
        };
        self.pos = start + len;
        Ok(Token {
            tok,
            span: Span::new(start, start + len),
        })
    }

    /// Decimal or 0x hex, `_` allowed between digits; decimal with a power of ten, `1e6` (bpftrace's
    /// tools divide by it), an integer too.
    fn number(&self, rest: &str, start: usize) -> Result<(Tok, usize), Diag> {
        let len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let text: String = rest[..len].chars().filter(|&c| c != '_').collect();
        let value = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => match text.split_once(['e', 'E']) {
                Some((m, e)) if !m.is_empty() && !e.is_empty() => {
                    match (m.parse::<u64>(), e.parse::<u32>()) {
                        (Ok(m), Ok(e)) => 10u64.checked_pow(e).and_then(|p| m.checked_mul(p)),
                        _ => None,
                    }
                }
                _ => text.parse::<u64>().ok(),
            },
        };
        let value = value.ok_or(()).map_err(|_| {
            Diag::new(
                Span::new(start, start + len),
                format!("invalid integer: {}", &rest[..len]),
            )
        })?;
        Ok((Tok::Int(value), len))
    }

    /// A double-quoted string with C escapes (\n \t \r \\ \" \0).
    fn string(&self, rest: &str, start: usize) -> Result<(Tok, usize), Diag> {
        let mut out = String::new();
        let mut chars = rest.char_indices().skip(1);
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => return Ok((Tok::Str(out), i + 1)),
                '\n' => break,
                '\\' => {
                    let Some((j, e)) = chars.next() else { break };
                    // \xHH (up to two hex digits) and \OOO (up to three octal digits), as C and bpftrace.
                    let radix = match e {
                        'x' => Some((16, 2)),
                        '0'..='7' => Some((8, 3)),
                        _ => None,
                    };
                    if let Some((radix, max)) = radix {
                        let mut digits = String::new();
                        if radix == 8 {
                            digits.push(e);
                        }
                        while digits.len() < max {
                            match chars.clone().next() {
                                Some((_, d)) if d.is_digit(radix) => {
                                    digits.push(d);
                                    chars.next();
                                }
                                _ => break,
                            }
                        }
                        match u32::from_str_radix(&digits, radix)
                            .ok()
                            .filter(|v| *v < 256)
                        {
                            Some(v) => out.push(char::from(v as u8)),
                            None => {
                                let shown = if radix == 16 { "x" } else { "" };
                                return Err(Diag::new(
                                    Span::new(start + i, start + j + 1 + digits.len()),
                                    format!("bad escape \\{shown}{digits}"),
                                ));
                            }
                        }
                        continue;
                    }
                    out.push(match e {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        '\\' => '\\',
                        '"' => '"',
                        _ => {
                            return Err(Diag::new(
                                Span::new(start + i, start + j + e.len_utf8()),
                                format!("unknown escape \\{e}"),
                            ))
                        }
                    });
                }
                _ => out.push(c),
            }
        }
        Err(Diag::new(
            Span::new(start, start + 1),
            "unterminated string",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(src: &str) -> Vec<Tok> {
        let mut l = Lexer::new(src);
        let mut out = Vec::new();
        loop {
            let t = l.next_token().unwrap();
            if t.tok == Tok::Eof {
                return out;
            }
            out.push(t.tok);
        }
    }

    #[test]
    fn tokens() {
        assert_eq!(
            toks("@x[comm] = count(); $a += 0x10 >> 2; // c\n/* d */ \"a\\tb\" @ args->f"),
            vec![
                Tok::Map("x".into()),
                Tok::Punct("["),
                Tok::Ident("comm".into()),
                Tok::Punct("]"),
                Tok::Punct("="),
                Tok::Ident("count".into()),
                Tok::Punct("("),
                Tok::Punct(")"),
                Tok::Punct(";"),
                Tok::Var("a".into()),
                Tok::Punct("+="),
                Tok::Int(16),
                Tok::Punct(">>"),
                Tok::Int(2),
                Tok::Punct(";"),
                Tok::Str("a\tb".into()),
                Tok::Map(String::new()),
                Tok::Ident("args".into()),
                Tok::Punct("->"),
                Tok::Ident("f".into()),
            ]
        );
        assert_eq!(toks("1_000_000"), vec![Tok::Int(1_000_000)]);
        assert_eq!(
            toks("1e6 2E3 0x1e6 1e0"),
            vec![
                Tok::Int(1_000_000),
                Tok::Int(2000),
                Tok::Int(0x1e6),
                Tok::Int(1)
            ]
        );
        assert!(Lexer::new("1e20").next_token().is_err(), "overflows u64");
        assert!(Lexer::new("1e").next_token().is_err());
        assert!(Lexer::new("e6").next_token().is_ok(), "an identifier");
    }

    #[test]
    fn attach_points_are_raw_up_to_space_comma_or_brace() {
        let mut l = Lexer::new("  uprobe:/bin/bash:readline,k:vfs_* /pid/ {");
        assert_eq!(
            l.raw_attach_point().unwrap().unwrap().0,
            "uprobe:/bin/bash:readline"
        );
        assert_eq!(l.next_token().unwrap().tok, Tok::Punct(","));
        assert_eq!(l.raw_attach_point().unwrap().unwrap().0, "k:vfs_*");
        assert_eq!(l.next_token().unwrap().tok, Tok::Punct("/"));
    }

    #[test]
    fn errors_have_spans() {
        let e = Lexer::new("  \"abc").next_token().unwrap_err();
        assert_eq!(
            (e.span.start, e.message.as_str()),
            (2, "unterminated string")
        );
        let mut l = Lexer::new("a # b");
        l.next_token().unwrap();
        assert_eq!(l.next_token().unwrap_err().span, Span::new(2, 3));
        assert!(Lexer::new("99999999999999999999999").next_token().is_err());
        assert!(Lexer::new("/* open").next_token().is_err());
    }
}
