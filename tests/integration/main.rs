//! Integration tests: the real bpfprof binary, as root, against workloads with known behaviour.
//!
//! Tests that load BPF take a global lock (they run one at a time: they measure ratios on a 2-core machine).
//! Without root they fail when CI=true and say they skipped otherwise.
mod biolatency;
mod common;
mod faults;
mod funccount;
mod golden;
mod kernel_functions;
mod names;
mod offcpu;
mod pprof;
mod profile;
mod trace;
mod unwind;
mod views;
