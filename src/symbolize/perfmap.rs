//! Perf maps: the names JIT compilers give their code in `/tmp/perf-PID.map` (Node's
//! `--perf-basic-prof`, perf-map-agent for Java, .NET's `DOTNET_PerfMapEnabled`, Python's `-X perf`),
//! one `START SIZE name` line per function, in hex, appended as code is compiled.
//!
//! Read here rather than by blazesym, which reads the file each time it names an address: a map read
//! while its process lives is kept, so the frames of a process that exited (and whose runtime deleted
//! its map) still get their names; and what was appended since is read, not the whole file again.
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;

/// A process's perf map as read so far.
#[derive(Debug, Default)]
pub struct PerfMap {
    /// (device, inode) of the file read: another file (a new process with the pid) starts afresh.
    file: Option<(u64, u64)>,
    /// Bytes read so far (complete lines).
    read_to: u64,
    /// By start address; for code at one address compiled again, the later line wins (`seq`).
    entries: Vec<Entry>,
    seq: u32,
}

#[derive(Debug)]
struct Entry {
    start: u64,
    end: u64,
    seq: u32,
    name: Box<str>,
}

/// How far back from the last entry starting at or below an address a lookup looks for one that
/// covers it: entries are functions, rarely nested, and a later one over an old range replaces it.
const LOOKBACK: usize = 64;

impl PerfMap {
    /// Reads what was appended to `/tmp/perf-PID.map` since the last call (all of it the first time,
    /// or when it is another file). A map that is gone keeps what was read.
    pub fn refresh(&mut self, pid: u32) {
        let path = format!("/tmp/perf-{pid}.map");
        let Ok(mut f) = std::fs::File::open(&path) else {
            return;
        };
        let Ok(meta) = f.metadata() else {
            return;
        };
        let id = (meta.dev(), meta.ino());
        if self.file != Some(id) || meta.len() < self.read_to {
            *self = Self {
                file: Some(id),
                ..Self::default()
            };
        }
        if meta.len() == self.read_to || f.seek(SeekFrom::Start(self.read_to)).is_err() {
            return;
        }
        let mut text = Vec::new();
        if f.read_to_end(&mut text).is_err() {
            return;
        }
        // Only whole lines: the runtime may be writing the next one.
        let Some(end) = text.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        self.read_to += end as u64 + 1;
        self.add_lines(&String::from_utf8_lossy(&text[..end]));
    }

    fn add_lines(&mut self, text: &str) {
        let before = self.entries.len();
        for line in text.lines() {
            let mut it = line.splitn(3, ' ');
            let (Some(start), Some(size), Some(name)) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
            let (Some(start), Some(size)) = (hex(start), hex(size)) else {
                continue;
            };
            self.seq += 1;
            self.entries.push(Entry {
                start,
                end: start.saturating_add(size.max(1)),
                seq: self.seq,
                name: name.trim_end().into(),
            });
        }
        if self.entries.len() != before {
            self.entries.sort_by_key(|e| (e.start, e.seq));
        }
    }

    /// The name of the function covering `addr`, and its start.
    pub fn name(&self, addr: u64) -> Option<(&str, u64)> {
        let upto = self.entries.partition_point(|e| e.start <= addr);
        self.entries[upto.saturating_sub(LOOKBACK)..upto]
            .iter()
            .filter(|e| addr < e.end)
            .max_by_key(|e| e.seq)
            .map(|e| (&*e.name, e.start))
    }
}

/// Perf maps by process.
pub type Cache = HashMap<u32, PerfMap>;

/// `pid`'s map, read up to now if the file is there.
pub fn refreshed(cache: &mut Cache, pid: u32) -> &PerfMap {
    let map = cache.entry(pid).or_default();
    map.refresh(pid);
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_lines_win_and_only_covered_addresses_are_named() {
        let mut m = PerfMap::default();
        m.add_lines(
            "7f0000001000 40 JS:*hot /app.js:1:1\n\
             7f0000002000 100 LazyCompile:~cold /app.js:9:3\n\
             junk line\n",
        );
        assert_eq!(
            m.name(0x7f00_0000_1000),
            Some(("JS:*hot /app.js:1:1", 0x7f00_0000_1000))
        );
        assert_eq!(
            m.name(0x7f00_0000_103f).map(|n| n.0),
            Some("JS:*hot /app.js:1:1")
        );
        assert_eq!(m.name(0x7f00_0000_1040), None);
        assert_eq!(m.name(0x7f00_0000_0fff), None);
        // Code moved: the range is reused by another function, written later.
        m.add_lines("7f0000002000 80 JS:*hotter /app.js:20:1\n");
        assert_eq!(
            m.name(0x7f00_0000_2010).map(|n| n.0),
            Some("JS:*hotter /app.js:20:1")
        );
        assert_eq!(
            m.name(0x7f00_0000_20a0).map(|n| n.0),
            Some("LazyCompile:~cold /app.js:9:3")
        );
    }

    #[test]
    fn a_map_is_read_as_it_grows_and_kept_when_deleted() {
        // A pid no process has (above pid_max's largest default): the test owns its file.
        let pid = 4_194_999;
        let path = format!("/tmp/perf-{pid}.map");
        std::fs::write(&path, "1000 10 first\n2000 10 seco").expect("writing a perf map");
        let mut m = PerfMap::default();
        m.refresh(pid);
        assert_eq!(m.name(0x1005).map(|n| n.0), Some("first"));
        assert_eq!(m.name(0x2005), None, "half a line is not read");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("appending");
        std::io::Write::write_all(&mut f, b"nd\n").expect("appending");
        m.refresh(pid);
        assert_eq!(m.name(0x2005).map(|n| n.0), Some("second"));
        std::fs::remove_file(&path).expect("removing");
        m.refresh(pid);
        assert_eq!(m.name(0x1005).map(|n| n.0), Some("first"));
    }
}
