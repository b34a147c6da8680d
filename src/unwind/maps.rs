//! A process's executable mappings, from /proc/PID/maps, and the identity of the files behind them.
use std::path::PathBuf;

/// What is mapped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backing {
    /// A file: its device and inode (the table cache's key), and its path as maps shows it.
    File { dev: u64, inode: u64, path: String },
    /// The kernel's vDSO.
    Vdso,
    /// Anonymous executable memory: JIT code.
    Anonymous,
}

/// One executable mapping: [start, end) from file offset `offset`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecMapping {
    pub start: u64,
    pub end: u64,
    pub offset: u64,
    pub backing: Backing,
}

impl ExecMapping {
    /// Where to read the mapped file: /proc/PID/map_files (the very file, even deleted or in another
    /// mount namespace), else the path through the process's root.
    pub fn file_paths(&self, pid: u32) -> Vec<PathBuf> {
        let Backing::File { path, .. } = &self.backing else {
            return Vec::new();
        };
        let mut paths = vec![PathBuf::from(format!(
            "/proc/{pid}/map_files/{:x}-{:x}",
            self.start, self.end
        ))];
        let path = path.strip_suffix(" (deleted)").unwrap_or(path);
        paths.push(PathBuf::from(format!("/proc/{pid}/root{path}")));
        paths
    }
}

/// The executable mappings of a maps text, in address order. [vsyscall] (a kernel address) is left out.
pub fn parse_exec(maps: &str) -> Vec<ExecMapping> {
    maps.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<ExecMapping> {
    // start-end perms offset dev inode [path]; the path may hold spaces.
    let mut rest = line;
    let mut field = || {
        rest = rest.trim_start();
        let end = rest.find(' ').unwrap_or(rest.len());
        let (f, r) = rest.split_at(end);
        rest = r;
        f
    };
    let range = field();
    let perms = field();
    let offset = field();
    let dev = field();
    let inode = field();
    let path = rest.trim();
    if !perms.contains('x') {
        return None;
    }
    let (start, end) = range.split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    let offset = u64::from_str_radix(offset, 16).ok()?;
    let inode: u64 = inode.parse().ok()?;
    let backing = if path == "[vdso]" {
        Backing::Vdso
    } else if path.starts_with('[') {
        return None; // [vsyscall], [uprobes]: not user code to unwind
    } else if path.is_empty() || inode == 0 {
        Backing::Anonymous
    } else {
        let (major, minor) = dev.split_once(':')?;
        let dev =
            (u64::from_str_radix(major, 16).ok()? << 32) | u64::from_str_radix(minor, 16).ok()?;
        Backing::File {
            dev,
            inode,
            path: path.to_string(),
        }
    };
    Some(ExecMapping {
        start,
        end,
        offset,
        backing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executable_mappings_are_kept_with_their_files() {
        let maps = "\
55d0c0000000-55d0c0001000 r--p 00000000 fe:01 123 /usr/bin/burn
55d0c0001000-55d0c0002000 r-xp 00001000 fe:01 123 /usr/bin/burn
7f0000000000-7f0000200000 r-xp 00028000 fe:01 456 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000300000-7f0000301000 rwxp 00000000 00:00 0
7f0000400000-7f0000401000 r-xp 00000000 fe:01 789 /tmp/my lib.so (deleted)
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0                          [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
";
        let ms = parse_exec(maps);
        assert_eq!(ms.len(), 5);
        assert_eq!(ms[0].start, 0x55d0c0001000);
        assert_eq!(ms[0].offset, 0x1000);
        assert_eq!(
            ms[0].backing,
            Backing::File {
                dev: 0xfe << 32 | 1,
                inode: 123,
                path: "/usr/bin/burn".into()
            }
        );
        assert_eq!(ms[2].backing, Backing::Anonymous);
        assert!(
            matches!(&ms[3].backing, Backing::File { path, .. } if path == "/tmp/my lib.so (deleted)")
        );
        assert_eq!(
            ms[3].file_paths(7)[1],
            PathBuf::from("/proc/7/root/tmp/my lib.so")
        );
        assert_eq!(ms[4].backing, Backing::Vdso);
    }
}
