//! Stacks and their names, gathered while a tool samples: the BPF side announces each new stack over a ring
//! buffer (bpf/stacks.bpf.h), and frames are named in small batches as they come, so that little is left to
//! do when sampling ends, and short-lived processes are named while they live. Announcements are only an
//! accelerator: stacks whose event was lost are read from the stack map at the end.
use std::collections::{HashMap, HashSet};
use std::mem::offset_of;
use std::sync::Arc;

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, MapFlags};
use rustc_hash::{FxHashMap, FxHashSet};

use super::Symbolizer;
use crate::bpf::skel::profile::types::{new_stack_event, stored_stack};
use crate::bpf::stacks::{read_stacks, stack_frames};
use crate::render::Frame;

/// Below this many stacks missing at the end, look them up one by one; above, read the whole map.
const LOOKUP_ONE_BY_ONE: usize = 2048;

/// Known stacks (id -> addresses, innermost first) and the names of those named so far.
#[derive(Default)]
pub struct StackBook {
    stacks: HashMap<u64, Vec<u64>>,
    kernel_names: FxHashMap<u64, Arc<[Frame]>>,
    user_names: FxHashMap<(u32, u64), Arc<[Frame]>>,
    pending_kernel: HashSet<u64>,
    pending_user: HashSet<(u32, u64)>,
    /// One shared slice per distinct sequence of frames, so that equal stacks are one pointer
    /// (stacks that differ only in addresses within the same functions name the same).
    sequences: FxHashMap<Vec<usize>, Arc<[Frame]>>,
    /// Stacks deleted from the kernel's map at the last `forget`, kept here one more round: a count made
    /// between the drain's read of the counts and that deletion still finds them (continuous mode).
    retiring: FxHashSet<u64>,
}

impl StackBook {
    /// Takes a `struct new_stack_event` from the ring buffer (its frames cut to `nr`).
    pub fn add_event(&mut self, data: &[u8]) {
        let ips_at = offset_of!(new_stack_event, st) + offset_of!(stored_stack, ips);
        if data.len() < ips_at {
            return;
        }
        let word = |at: usize| u64::from_ne_bytes(data[at..at + 8].try_into().expect("8 bytes"));
        let half = |at: usize| u32::from_ne_bytes(data[at..at + 4].try_into().expect("4 bytes"));
        let id = word(offset_of!(new_stack_event, id));
        let pid = half(offset_of!(new_stack_event, pid));
        let user = half(offset_of!(new_stack_event, user)) != 0;
        let nr = half(offset_of!(new_stack_event, st) + offset_of!(stored_stack, nr)) as usize;
        let nr = nr.min((data.len() - ips_at) / 8);
        let ips = (0..nr).map(|i| word(ips_at + 8 * i)).collect();
        self.stacks.insert(id, ips);
        if user {
            self.pending_user.insert((pid, id));
        } else {
            self.pending_kernel.insert(id);
        }
    }

    /// Names the stacks that arrived since the last call.
    pub fn name_pending(&mut self, syms: &mut Symbolizer) {
        if !self.pending_kernel.is_empty() {
            let ids = std::mem::take(&mut self.pending_kernel);
            for (id, frames) in syms.kernel_stacks(&ids, &self.stacks) {
                let frames = self.share(without_tracing_frames(frames));
                self.kernel_names.insert(id, frames);
            }
        }
        if !self.pending_user.is_empty() {
            let pairs = std::mem::take(&mut self.pending_user);
            for (pair, frames) in syms.user_stacks(&pairs, &self.stacks) {
                let frames = self.share(frames);
                self.user_names.insert(pair, frames);
            }
        }
    }

    /// The shared slice with these frames (frames are interned names: compared by pointer).
    fn share(&mut self, frames: Arc<[Frame]>) -> Arc<[Frame]> {
        let key: Vec<usize> = frames
            .iter()
            .map(|f| Arc::as_ptr(f).cast::<u8>() as usize)
            .collect();
        Arc::clone(self.sequences.entry(key).or_insert(frames))
    }

    /// After sampling: makes sure every stack the counts refer to is known and named, reading from the
    /// stack map the ones whose announcement was lost.
    pub fn complete(
        &mut self,
        kernel_ids: &FxHashSet<u64>,
        user_pairs: &FxHashSet<(u32, u64)>,
        stack_map: &dyn MapCore,
        syms: &mut Symbolizer,
    ) -> Result<()> {
        let missing: HashSet<u64> = kernel_ids
            .iter()
            .copied()
            .chain(user_pairs.iter().map(|&(_, id)| id))
            .filter(|id| !self.stacks.contains_key(id))
            .collect();
        if missing.len() > LOOKUP_ONE_BY_ONE {
            let all = read_stacks(stack_map)?;
            self.stacks
                .extend(all.into_iter().filter(|(id, _)| missing.contains(id)));
        } else {
            for id in missing {
                let value = stack_map
                    .lookup(&id.to_ne_bytes(), MapFlags::ANY)
                    .context("reading the stack map")?;
                if let Some(v) = value {
                    self.stacks.insert(id, stack_frames(&v));
                }
            }
        }
        self.pending_kernel.extend(
            kernel_ids
                .iter()
                .filter(|id| !self.kernel_names.contains_key(id)),
        );
        self.pending_user.extend(
            user_pairs
                .iter()
                .filter(|p| !self.user_names.contains_key(p)),
        );
        self.name_pending(syms);
        Ok(())
    }

    /// How many stacks are known, not counting those being retired.
    pub fn live_stack_count(&self) -> usize {
        self.stacks.len().saturating_sub(self.retiring.len())
    }

    /// Retires `deleted` (just deleted from the kernel's map): they stay named until the next call, while
    /// those retired by the previous call go, unless `in_use` names them.
    pub fn forget(&mut self, deleted: FxHashSet<u64>, in_use: &FxHashSet<u64>) {
        let going: FxHashSet<u64> = std::mem::replace(&mut self.retiring, deleted)
            .into_iter()
            .filter(|id| !in_use.contains(id) && !self.retiring.contains(id))
            .collect();
        self.stacks.retain(|id, _| !going.contains(id));
        self.kernel_names.retain(|id, _| !going.contains(id));
        self.user_names.retain(|(_, id), _| !going.contains(id));
        self.pending_kernel.retain(|id| !going.contains(id));
        self.pending_user.retain(|(_, id)| !going.contains(id));
        self.sequences.clear();
        self.sequences.shrink_to_fit();
        self.stacks.shrink_to_fit();
    }

    /// The names of a kernel stack's frames, innermost first.
    pub fn kernel(&self, id: u64) -> Option<&Arc<[Frame]>> {
        self.kernel_names.get(&id)
    }

    /// The names of a user stack's frames as seen in process `pid`, innermost first.
    pub fn user(&self, pid: u32, id: u64) -> Option<&Arc<[Frame]>> {
        self.user_names.get(&(pid, id))
    }
}

/// A stack captured in a tracepoint program starts in the BPF program and the tracepoint's dispatcher
/// (`bpf_prog_<tag>_<name>`, `bpf_trace_run4`, `__bpf_trace_sched_switch`, `__traceiter_...`): the
/// machinery, not the traced code. Those innermost frames are dropped; others are left as they are.
fn without_tracing_frames(frames: Arc<[Frame]>) -> Arc<[Frame]> {
    let tracing = |f: &Frame| {
        ["bpf_prog_", "bpf_trace_run", "__bpf_trace_", "__traceiter_"]
            .iter()
            .any(|p| f.starts_with(p))
    };
    let skip = frames.iter().take_while(|f| tracing(f)).count();
    if skip == 0 || skip == frames.len() {
        return frames;
    }
    frames[skip..].into()
}

#[cfg(test)]
mod tests {
    #[test]
    fn tracing_frames_are_dropped_from_the_top_only() {
        let f =
            |names: &[&str]| -> Arc<[Frame]> { names.iter().map(|&n| Frame::from(n)).collect() };
        assert_eq!(
            without_tracing_frames(f(&[
                "bpf_prog_089c_switch_btf",
                "bpf_trace_run4",
                "__schedule",
                "schedule"
            ])),
            f(&["__schedule", "schedule"])
        );
        let plain = f(&["__schedule", "bpf_trace_run4"]);
        assert_eq!(without_tracing_frames(plain.clone()), plain);
    }

    use super::*;

    fn event(id: u64, pid: u32, user: bool, ips: &[u64]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(id.to_ne_bytes());
        b.extend(pid.to_ne_bytes());
        b.extend(u32::from(user).to_ne_bytes());
        b.extend((ips.len() as u32).to_ne_bytes());
        b.extend(0u32.to_ne_bytes());
        for ip in ips {
            b.extend(ip.to_ne_bytes());
        }
        b
    }

    #[test]
    fn events_are_parsed_and_queued_by_kind() {
        let mut book = StackBook::default();
        book.add_event(&event(7, 42, true, &[1, 2, 3]));
        book.add_event(&event(9, 42, false, &[4]));
        book.add_event(&[0u8; 3]); // too short: ignored
        assert_eq!(book.stacks[&7], vec![1, 2, 3]);
        assert_eq!(book.stacks[&9], vec![4]);
        assert!(book.pending_user.contains(&(42, 7)));
        assert!(book.pending_kernel.contains(&9));
    }

    #[test]
    fn a_truncated_event_keeps_the_frames_it_has() {
        let mut book = StackBook::default();
        let mut e = event(7, 1, true, &[1, 2, 3]);
        e.truncate(e.len() - 8);
        book.add_event(&e);
        assert_eq!(book.stacks[&7], vec![1, 2]);
    }
}
