//! Diagnostics with a source span, printed as bpftrace prints them: `FILE:LINE:COL-COL: ERROR: message`, the
//! source line, and `~` under the span.
use std::fmt;

/// A byte range of the program text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }

    /// The span from the start of `self` to the end of `other`.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start, other.end.max(self.start))
    }
}

/// An error in a program, at a place in its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diag {
    pub span: Span,
    pub message: String,
}

impl Diag {
    pub fn new(span: Span, message: impl Into<String>) -> Self {
        Self {
            span,
            message: message.into(),
        }
    }

    /// bpftrace's layout: `stdin:1:12-15: ERROR: message`, the line, and `~` under the span (one `~` at
    /// least; a span running past its line is cut at the line's end).
    pub fn render(&self, file: &str, source: &str) -> String {
        self.render_as("ERROR", file, source)
    }

    /// As render, with bpftrace's `WARNING:` for what does not stop the program.
    pub fn render_warning(&self, file: &str, source: &str) -> String {
        self.render_as("WARNING", file, source)
    }

    fn render_as(&self, level: &str, file: &str, source: &str) -> String {
        let start = self.span.start.min(source.len());
        let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = source[start..]
            .find('\n')
            .map_or(source.len(), |i| start + i);
        let line_no = source[..line_start].matches('\n').count() + 1;
        let line = &source[line_start..line_end];
        let col = source[line_start..start].chars().count() + 1;
        let end = self.span.end.clamp(start, line_end);
        let width = source[start..end].chars().count().max(1);
        // Tabs stay tabs under the line, so that the markers line up in a terminal.
        let pad: String = source[line_start..start]
            .chars()
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        format!(
            "{file}:{line_no}:{col}-{}: {level}: {}\n{line}\n{pad}{}\n",
            col + width,
            self.message,
            "~".repeat(width)
        )
    }
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for Diag {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_as_bpftrace_does() {
        let src = "BEGIN { x }\nkprobe2:f { }";
        let d = Diag::new(Span::new(12, 19), "Invalid probe type: kprobe2");
        assert_eq!(
            d.render("stdin", src),
            "stdin:2:1-8: ERROR: Invalid probe type: kprobe2\nkprobe2:f { }\n~~~~~~~\n"
        );
        let d = Diag::new(Span::new(8, 8), "syntax error");
        assert_eq!(
            d.render("x.bt", src),
            "x.bt:1:9-10: ERROR: syntax error\nBEGIN { x }\n        ~\n"
        );
    }
}
