//! Test workload: Rust frames whose demangled names are known. `rsburn SECS`; prints "ready", exits after SECS.
use std::hint::black_box;
use std::time::{Duration, Instant};

mod burn {
    pub struct Worker;

    impl Worker {
        #[inline(never)]
        pub fn spin(&self, n: u64) -> u64 {
            let mut acc = 0u64;
            for i in 0..n {
                acc = super::black_box(acc.wrapping_mul(31).wrapping_add(i));
            }
            acc
        }
    }
}

#[inline(never)]
fn run(secs: f64) {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let w = burn::Worker;
    while Instant::now() < end {
        black_box(w.spin(100_000));
    }
}

fn main() {
    let secs: f64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).expect("usage: rsburn SECS");
    println!("ready");
    run(secs);
}
