//! The tools, one file each: configuration in, BPF loaded and read, data handed to a renderer.
pub mod biolatency;
pub mod common;
pub mod continuous;
pub mod diff;
pub mod funccount;
pub mod hotcold;
pub mod offcpu;
pub mod profile;
pub mod report;
