//! The one-liner language (`trace`): bpftrace's syntax, compiled straight to BPF instructions, no LLVM.
//! Stages, each tested apart: lexer -> parser (AST with spans; errors rendered as bpftrace's) -> semantic
//! pass (types, builtins per probe type, maps, printf formats) -> code generation (codegen.rs onto the
//! assembler in insn.rs) -> runtime (maps, loading, perf-event attachment, ring buffer, output.rs's layouts).
//! Probe types: tracepoint, uprobe/uretprobe, usdt, kprobe/kretprobe (where the kernel has kprobes), profile,
//! interval, BEGIN, END (see the README for the rest).

pub mod ast;
pub mod codegen;
pub mod ctypes;
pub mod diag;
#[cfg(test)]
mod fuzz;
pub mod insn;
pub mod lexer;
pub mod maps;
pub mod output;
pub mod parser;
pub mod points;
pub mod preproc;
pub mod resolve;
pub mod runtime;
pub mod sema;
pub mod tpformat;
pub mod usdt;
pub mod ustack;
