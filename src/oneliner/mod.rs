//! The one-liner language (`trace`): bpftrace's syntax, compiled straight to BPF instructions. Stages, each
//! unit-tested: lexer -> parser (AST with spans) -> semantic pass -> code generation -> runtime. So far:
//! programs parse, errors point at their column as bpftrace's do, the semantic pass types programs and
//! checks builtins, maps, calls and printf formats (tracepoint fields from tracefs), and the instruction
//! encoder, assembler and loader (insn.rs) that code generation will target are in place.
// Not wired to a command until the later stages exist (issue 6).
#![allow(dead_code)]

pub mod ast;
pub mod diag;
pub mod insn;
pub mod lexer;
pub mod parser;
pub mod sema;
pub mod tpformat;
