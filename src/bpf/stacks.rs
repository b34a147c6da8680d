//! Reading the maps that stack tools share: stored stacks (bpf/stacks.bpf.h) and the loss counters.
use std::collections::HashMap;

use std::os::fd::AsRawFd;

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
    /// Not a loss: those stacks are read from the map at the end instead.
    pub const STACK_EVENTS_LOST: usize = 7;
    pub const START_FULL: usize = 8;
    pub const WAKER_FULL: usize = 9;
    /// User stacks walked with unwind tables.
    pub const UNWOUND: usize = 10;
    /// --unwind auto: user stacks walked with frame pointers, their process's tables not loaded yet.
    pub const FP_WHOLE: usize = 11;
    /// --unwind auto: frames followed by frame pointer in code without CFI.
    pub const FP_FRAMES: usize = 12;
    /// + the reason (crate::unwind::end): how table walks ended.
    pub const UNWIND_END: usize = 13;
    /// Off-CPU tools: user and kernel stacks reused from a thread's memo (bpf/memo.h), not walked.
    pub const UMEMO_HITS: usize = UNWIND_END + crate::unwind::end::REASONS;
    pub const KMEMO_HITS: usize = UMEMO_HITS + 1;
    /// Off-CPU tools: blocks whose end no sched_switch reported (the thread was stamped again first).
    pub const UNENDED: usize = UMEMO_HITS + 2;
    /// offcpu: blocks counted without their user stack: the thread's user state changed before the
    /// stack, taken when it returned to user space, could be (a signal), or it never returned (killed).
    pub const LATE_USTACK: usize = UMEMO_HITS + 3;
    /// offcpu: kernel stacks taken when their block ended (bpf_get_task_stack), which leaves out the
    /// scheduler's own functions: where a thread blocked with the same user registers another way.
    pub const KSTACK_LATE: usize = UMEMO_HITS + 4;
    /// offcpu: blocks counted whose stacks were taken when they ended (BPFPROF_TIMING's report).
    pub const DEFERRED: usize = UMEMO_HITS + 5;
    pub const MAX: usize = UMEMO_HITS + 6;
}

/// `enum proc_event_kind` (bpf/stacks.h): a process first seen, or one to read the mappings of again.
pub const PROC_NEW: u32 = 0;

/// Entries fetched per bpf(BPF_MAP_LOOKUP_BATCH) call.
const BATCH: u32 = 1024;

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

/// Calls `f(key, value)` for every entry of a hash map, read in batches where the kernel supports it (5.6+),
/// straight from the batch buffers (no copy per entry).
///
/// Written against the syscall rather than libbpf-rs's `lookup_batch` iterator, which takes any short batch
/// for the last one; the kernel returns short batches of hash maps whenever the next bucket does not fit,
/// so that iterator silently stops early on large maps. Here only ENOENT ends the walk.
pub fn for_each_entry(map: &dyn MapCore, mut f: impl FnMut(&[u8], &[u8])) -> Result<()> {
    let (ks, vs) = (map.key_size() as usize, map.value_size() as usize);
    let fd = map.as_fd().as_raw_fd();
    let mut batch = BATCH as usize;
    let mut keys = vec![0u8; ks * batch];
    let mut values = vec![0u8; vs * batch];
    // The resume token: a bucket index for hash maps, a key for arrays. Room for either.
    let mut token_in = vec![0u8; ks.max(8)];
    let mut token_out = vec![0u8; ks.max(8)];
    let mut first = true;
    let opts = libbpf_sys::bpf_map_batch_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_batch_opts>() as _,
        elem_flags: 0,
        flags: 0,
    };
    loop {
        let mut count = batch as u32;
        let in_ptr = if first {
            std::ptr::null_mut()
        } else {
            token_in.as_mut_ptr().cast()
        };
        // SAFETY: keys/values hold `count` entries of the map's key and value sizes, the tokens are at least
        // as large as a key (and 8 bytes), and `opts` is a valid, sized options struct.
        let ret = unsafe {
            libbpf_sys::bpf_map_lookup_batch(
                fd,
                in_ptr,
                token_out.as_mut_ptr().cast(),
                keys.as_mut_ptr().cast(),
                values.as_mut_ptr().cast(),
                &mut count,
                &opts,
            )
        };
        let errno = if ret < 0 { -ret } else { 0 };
        if ret < 0 && errno != libc::ENOENT {
            if errno == libc::ENOSPC && batch < 1 << 20 {
                // One bucket holds more entries than a batch: retry this step with a larger batch.
                batch *= 2;
                keys.resize(ks * batch, 0);
                values.resize(vs * batch, 0);
                continue;
            }
            if first
                && (errno == libc::EINVAL || errno == libc::ENOTSUP || errno == 524/* ENOTSUPP */)
            {
                return read_one_by_one(map, f);
            }
            return Err(std::io::Error::from_raw_os_error(errno)).context("BPF_MAP_LOOKUP_BATCH");
        }
        for i in 0..count as usize {
            f(&keys[i * ks..(i + 1) * ks], &values[i * vs..(i + 1) * vs]);
        }
        if errno == libc::ENOENT {
            return Ok(());
        }
        std::mem::swap(&mut token_in, &mut token_out);
        first = false;
    }
}

/// Kernels before 5.6 have no batch lookups: one key at a time.
fn read_one_by_one(map: &dyn MapCore, mut f: impl FnMut(&[u8], &[u8])) -> Result<()> {
    for key in map.keys() {
        if let Some(v) = map.lookup(&key, MapFlags::ANY)? {
            f(&key, &v);
        }
    }
    Ok(())
}

/// The frames of a stored stack (a `struct stored_stack` value), innermost first.
pub fn stack_frames(value: &[u8]) -> Vec<u64> {
    let st: stored_stack = from_bytes(value);
    let nr = (st.nr as usize).min(st.ips.len());
    st.ips[..nr].to_vec()
}

/// All stored stacks by id, each innermost frame first.
pub fn read_stacks(map: &dyn MapCore) -> Result<HashMap<u64, Vec<u64>>> {
    let mut stacks = HashMap::new();
    for_each_entry(map, |k, v| {
        let id = u64::from_ne_bytes(k[..8].try_into().expect("8-byte key"));
        stacks.insert(id, stack_frames(v));
    })
    .context("reading the stack map")?;
    Ok(stacks)
}

/// Sums the per-CPU loss and sample counters.
pub fn read_stats(map: &dyn MapCore) -> Result<[u64; stat::MAX]> {
    super::read_counters(map)
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
        "counts lost (samples or blocks): the count map was full; raise --stack-storage-size"
            .into(),
    );
    say(
        stats[stat::START_FULL],
        "blocks not timed: too many threads were off-CPU at once for the start map".into(),
    );
    say(
        stats[stat::UNENDED],
        "blocks lost: their threads came back on a CPU without a sched_switch event (the kernel did not report the switch)".into(),
    );
    say(
        stats[stat::LATE_USTACK],
        "blocks counted without their user stack (shown as [Missed User Stack]): taken when the thread returned to user space, it was gone (a signal handler ran first, or the thread was killed while blocked)".into(),
    );
    say(
        stats[stat::WAKER_FULL],
        "wakers not recorded (shown without a waker): too many wakeups pending at once".into(),
    );
    say(
        stats[stat::PROC_EVENTS_LOST],
        "new processes not announced in time (their frames may show as [unknown] if they exited)"
            .into(),
    );
    lines
}

/// Lines for stderr about how user stacks were walked with unwind tables: the stacks that ended before
/// their root, by reason (they end in a marked frame), and those walked by frame pointers instead. Empty
/// when every table walk reached its root.
pub fn unwind_report(stats: &[u64; stat::MAX]) -> Vec<String> {
    use crate::unwind::{end, reason_desc};
    let mut lines = Vec::new();
    let walked = stats[stat::UNWOUND];
    let reasons: Vec<String> = (end::COMPLETE + 1..end::REASONS)
        .filter(|&r| stats[stat::UNWIND_END + r] > 0)
        .map(|r| format!("{} {}", stats[stat::UNWIND_END + r], reason_desc(r)))
        .collect();
    if !reasons.is_empty() {
        let early: u64 = (end::COMPLETE + 1..end::REASONS)
            .map(|r| stats[stat::UNWIND_END + r])
            .sum();
        lines.push(format!(
            "bpfprof: {early} of {walked} user stacks walked with unwind tables ended before their root (their last frame says why): {}",
            reasons.join(", ")
        ));
    }
    if stats[stat::FP_WHOLE] > 0 {
        lines.push(format!(
            "bpfprof: {} user stacks walked with frame pointers: their process's unwind tables were not loaded yet",
            stats[stat::FP_WHOLE]
        ));
    }
    if stats[stat::KSTACK_LATE] > 0 {
        lines.push(format!(
            "bpfprof: {} kernel stacks taken when their block ended begin at the first function outside the scheduler (their thread had blocked there another way before)",
            stats[stat::KSTACK_LATE]
        ));
    }
    if stats[stat::FP_FRAMES] > 0 {
        lines.push(format!(
            "bpfprof: {} frames followed by frame pointer (code without unwind information)",
            stats[stat::FP_FRAMES]
        ));
    }
    lines
}

/// WARNING lines for what the unwind tables could not hold.
pub fn unwind_table_report(s: &crate::unwind::UnwindStats, memory_mib: u32) -> Vec<String> {
    let mut lines = Vec::new();
    if !s.no_room.is_empty() {
        let mut names = s.no_room.clone();
        names.truncate(5);
        lines.push(format!(
            "WARNING: the unwind tables of {} binaries did not fit in --unwind-memory {memory_mib} MiB ({}{}): stacks end at their frames; raise --unwind-memory",
            s.no_room.len(),
            names.join(", "),
            if s.no_room.len() > 5 { ", ..." } else { "" }
        ));
    }
    if s.too_many_mappings > 0 {
        lines.push(format!(
            "WARNING: {} processes have more than 4096 executable mappings: frames in the rest end their stacks",
            s.too_many_mappings
        ));
    }
    if s.mappings_full > 0 {
        lines.push(format!(
            "WARNING: {} processes got no unwind tables: the mapping table (65536 entries) was full",
            s.mappings_full
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_lost_says_nothing() {
        let mut stats = [0; stat::MAX];
        stats[stat::SAMPLES] = 5;
        stats[stat::STACK_EVENTS_LOST] = 9;
        stats[stat::UNWOUND] = 5;
        stats[stat::UNWIND_END] = 5;
        assert!(loss_report(&stats, 10).is_empty());
        assert!(unwind_report(&stats).is_empty());
    }

    #[test]
    fn every_loss_is_reported() {
        let mut stats = [0; stat::MAX];
        stats[..10].copy_from_slice(&[9, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let lines = loss_report(&stats, 10);
        assert_eq!(lines.len(), 8);
        assert!(lines[2].starts_with("WARNING: 3 stacks lost") && lines[2].contains("10 stacks"));
    }

    #[test]
    fn stacks_that_ended_early_are_counted_by_reason() {
        use crate::unwind::end;
        let mut stats = [0; stat::MAX];
        stats[stat::UNWOUND] = 10;
        stats[stat::UNWIND_END] = 7;
        stats[stat::UNWIND_END + end::NO_CFI] = 2;
        stats[stat::UNWIND_END + end::NOT_LOADED] = 1;
        stats[stat::FP_WHOLE] = 4;
        let lines = unwind_report(&stats);
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].starts_with("bpfprof: 3 of 10 user stacks")
                && lines[0].ends_with("2 no CFI, 1 tables not loaded yet"),
            "{}",
            lines[0]
        );
        assert!(lines[1].starts_with("bpfprof: 4 user stacks walked with frame pointers"));
    }
}
