//! Property tests: whatever the input, the front end (lexer, parser, semantic pass, error rendering)
//! returns a program or an error, never panics. Inputs are random bytes, and random sequences of the
//! language's own tokens (which reach much deeper into the parser and the checks than bytes do).
use proptest::prelude::*;

use super::diag::Diag;
use super::parser::parse;
use super::sema::{check, TracepointSource};
use super::tpformat::{parse_format, Field};

/// Every tracepoint has two fields, an int and a string.
struct AnyTracepoint;

impl TracepointSource for AnyTracepoint {
    fn fields(&self, category: &str, _event: &str) -> anyhow::Result<Vec<Field>> {
        if category == "none" {
            anyhow::bail!("no such tracepoint");
        }
        parse_format(
            "\tfield:int n;\toffset:8;\tsize:4;\tsigned:1;\n\
             \tfield:char name[16];\toffset:12;\tsize:16;\tsigned:0;\n",
        )
    }
}

const TOKENS: &[&str] = &[
    "BEGIN",
    "END",
    "t:a:b",
    "tracepoint:none:x",
    "k:f",
    "kr:f*",
    "u:/bin/x:f",
    "ur:lib:g",
    "usdt:/b:p",
    "profile:hz:99",
    "interval:s:1",
    "kfunc:f",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    "/",
    ";",
    ",",
    ":",
    "?",
    "=",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">>",
    "<<",
    "+",
    "-",
    "*",
    "%",
    "&",
    "&&",
    "|",
    "||",
    "!",
    "~",
    "++",
    "--",
    "+=",
    "->",
    ".",
    "@",
    "@x",
    "@y[",
    "$v",
    "$w",
    "pid",
    "comm",
    "args",
    "args->n",
    "args.name",
    "retval",
    "arg0",
    "arg7",
    "func",
    "probe",
    "kstack",
    "ustack(3)",
    "nsecs",
    "elapsed",
    "count()",
    "sum(",
    "hist(",
    "lhist(",
    "stats(",
    "avg(",
    "min(",
    "max(",
    "printf(\"%d %s\\n\"",
    "printf(",
    "str(",
    "ksym(",
    "usym(",
    "delete(",
    "print(",
    "clear(",
    "zero(",
    "exit()",
    "(struct task_struct *)",
    "(struct s *)",
    "(uint8)",
    "(int64)",
    "struct",
    "union",
    "struct s {",
    "int a;",
    "char n[4];",
    "curtask",
    "->real_parent",
    "->pid",
    "->a",
    "TASK_RUNNING",
    "kaddr(\"x\")",
    "while",
    "unroll(2)",
    "break;",
    "continue;",
    "$#",
    "system(\"x\")",
    "signal(9)",
    "reg(\"ip\")",
    "macaddr(",
    "ntop(",
    "join(",
    "if",
    "else",
    "0",
    "1",
    "-5",
    "0x10",
    "18446744073709551615",
    "\"s\"",
    "\"",
    "/*",
    "*/",
    "//",
    "\n",
    " ",
    "#!",
];

fn no_panic(src: &str) {
    let rendered = |d: Diag| d.render("stdin", src);
    match parse(src) {
        Err(d) => {
            rendered(d);
        }
        Ok(p) => {
            if let Err(d) = check(&p, &AnyTracepoint) {
                rendered(d);
            }
        }
    }
}

/// The program the mutations start from: it parses and checks.
const GOOD: &str = "t:a:b /pid > 1 && comm == \"x\"/ { @h[comm, args->n] = hist(args->n); $v = 1; if ($v) { printf(\"%d %s\\n\", $v, args.name); } else { @c = count(); } delete(@h[comm, 1]); } END { print(@c); clear(@h); exit(); }";

#[test]
fn the_mutated_program_is_valid() {
    let p = parse(GOOD).unwrap_or_else(|d| panic!("{}", d.render("stdin", GOOD)));
    check(&p, &AnyTracepoint).unwrap_or_else(|d| panic!("{}", d.render("stdin", GOOD)));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        no_panic(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn random_tokens_never_panic(idx in proptest::collection::vec(0..TOKENS.len(), 0..60)) {
        let src: Vec<&str> = idx.iter().map(|&i| TOKENS[i]).collect();
        no_panic(&src.join(" "));
    }

    #[test]
    fn mutated_programs_never_panic(cut in 0usize..400, insert in 0..TOKENS.len()) {
        // A valid program with one token inserted somewhere: mostly near-misses.
        let good = GOOD;
        let at = cut.min(good.len());
        let at = (0..=at).rev().find(|&i| good.is_char_boundary(i)).unwrap_or(0);
        no_panic(&format!("{}{}{}", &good[..at], TOKENS[insert], &good[at..]));
    }
}
