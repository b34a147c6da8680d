//! Reading the maps that stack tools share: stored stacks (bpf/stacks.bpf.h) and the loss counters.
use std::collections::HashMap;

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, MapFlags};

use super::skel::profile::types::stored_stack;

/// Indexes of the per-CPU `stats` array (enum stat_idx in bpf/stacks.h).
pub mod stat {
    pub const SAMPLES: usize = 0;
    pub const USTACK_ERR: usize = 1;
    pub const KSTACK_ERR: usize = 2;
    pub const STACKS_FULL: usize = 3;
    pub const STACK_COLLISION: usize = 4;
    pub const COUNTS_FULL: usize = 5;
    pub const PROC_EVENTS_LOST: usize = 6;
    pub const MAX: usize = 7;
}

/// Entries fetched per bpf(BPF_MAP_LOOKUP_BATCH) call.
const BATCH: u32 = 4096;

/// Copies a value of a skeleton-generated BPF type out of map bytes.
pub fn from_bytes<T: Copy>(bytes: &[u8]) -> T {
    assert!(
        bytes.len() >= std::mem::size_of::<T>(),
        "map value smaller than its type"
    );
    // SAFETY: the length is checked above, read_unaligned needs no alignment, and T is only ever a
    // skeleton-generated repr(C) type of integers and integer arrays, for which every bit pattern is valid.
    unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) }
}

/// Reads every (key, value) of a hash map, in batches where the kernel supports it.
pub fn read_all(map: &dyn MapCore) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    match map.lookup_batch(BATCH, MapFlags::ANY, MapFlags::ANY) {
        Ok(iter) => Ok(iter.collect()),
        Err(_) => {
            // Kernels before 5.6 have no batch lookups: one key at a time.
            let mut out = Vec::new();
            for key in map.keys() {
                if let Some(v) = map.lookup(&key, MapFlags::ANY)? {
                    out.push((key, v));
                }
            }
            Ok(out)
        }
    }
}

/// All stored stacks by id, each innermost frame first.
pub fn read_stacks(map: &dyn MapCore) -> Result<HashMap<u64, Vec<u64>>> {
    let entries = read_all(map).context("reading the stack map")?;
    Ok(entries
        .into_iter()
        .map(|(k, v)| {
            let id = u64::from_ne_bytes(k[..8].try_into().expect("8-byte key"));
            let st: stored_stack = from_bytes(&v);
            let nr = (st.nr as usize).min(st.ips.len());
            (id, st.ips[..nr].to_vec())
        })
        .collect())
}

/// Sums the per-CPU loss and sample counters.
pub fn read_stats(map: &dyn MapCore) -> Result<[u64; stat::MAX]> {
    let mut out = [0u64; stat::MAX];
    for (i, slot) in out.iter_mut().enumerate() {
        let key = (i as u32).to_ne_bytes();
        if let Some(per_cpu) = map.lookup_percpu(&key, MapFlags::ANY)? {
            *slot = per_cpu
                .iter()
                .map(|v| u64::from_ne_bytes(v[..8].try_into().expect("8-byte value")))
                .sum();
        }
    }
    Ok(out)
}

/// Lines for stderr about whatever was lost, so that nothing is lost silently. Empty when nothing was.
pub fn loss_report(stats: &[u64; stat::MAX], stack_storage_size: u32) -> Vec<String> {
    let mut lines = Vec::new();
    let mut say = |n: u64, what: String| {
        if n > 0 {
            lines.push(format!("WARNING: {n} {what}"));
        }
    };
    say(
        stats[stat::USTACK_ERR],
        "user stacks could not be captured (shown as [Missed User Stack])".into(),
    );
    say(
        stats[stat::KSTACK_ERR],
        "kernel stacks could not be captured (shown as [Missed Kernel Stack])".into(),
    );
    say(
        stats[stat::STACKS_FULL],
        format!("stacks lost: the stack storage ({stack_storage_size} stacks) was full; raise --stack-storage-size"),
    );
    say(
        stats[stat::STACK_COLLISION],
        "stacks lost to 64-bit hash collisions".into(),
    );
    say(
        stats[stat::COUNTS_FULL],
        "samples lost: the count map was full; raise --stack-storage-size".into(),
    );
    say(
        stats[stat::PROC_EVENTS_LOST],
        "new processes not announced in time (their frames may show as [unknown] if they exited)"
            .into(),
    );
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_lost_says_nothing() {
        assert!(loss_report(&[5, 0, 0, 0, 0, 0, 0], 10).is_empty());
    }

    #[test]
    fn every_loss_is_reported() {
        let lines = loss_report(&[9, 1, 2, 3, 4, 5, 6], 10);
        assert_eq!(lines.len(), 6);
        assert!(lines[2].starts_with("WARNING: 3 stacks lost") && lines[2].contains("10 stacks"));
    }
}
