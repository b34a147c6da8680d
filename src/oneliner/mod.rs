//! The one-liner language (`trace`): bpftrace's syntax, compiled straight to BPF instructions. Stages, each
//! unit-tested: lexer -> parser (AST with spans) -> semantic pass -> code generation -> runtime. So far the
//! first two exist: programs parse, and errors point at their column as bpftrace's do.
// Not wired to a command until the later stages exist (issue 6).
#![allow(dead_code)]

pub mod ast;
pub mod diag;
pub mod lexer;
pub mod parser;
