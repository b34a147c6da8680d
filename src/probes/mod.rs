//! Probe points by pattern, resolved before anything is attached: tracepoints (tracefs), user functions and
//! USDT probes (ELF symbol tables and .note.stapsdt), kernel functions (ftrace's list or kallsyms). Shared by
//! funccount and, later, the one-liners' providers.
pub mod elf;
pub mod libs;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use regex::Regex;

/// What a pattern names: bcc funccount's forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `t:SUBSYS:EVENT`
    Tracepoint { subsys: String, event: String },
    /// `u:LIB:FUNC` (and bcc's `LIB:FUNC`)
    User { lib: String, func: String },
    /// `U:LIB:PROBE` (`PROBE` or `PROVIDER:PROBE`)
    Usdt { lib: String, probe: String },
    /// `k:FUNC` or a bare `FUNC`
    Kernel { func: String },
}

impl Target {
    /// Parses a pattern: `t:`, `u:`, `U:`, `k:` prefixes, bcc's `LIB:FUNC`, or a bare kernel function.
    pub fn parse(pattern: &str) -> Result<Self> {
        let first = pattern.split(':').next().unwrap_or("");
        if [
            "tracepoint",
            "uprobe",
            "uretprobe",
            "kprobe",
            "kretprobe",
            "usdt",
            "kfunc",
            "fentry",
            "rawtracepoint",
        ]
        .contains(&first)
        {
            bail!("pattern {pattern:?} is a bpftrace probe: funccount's patterns are t:SUBSYS:EVENT, u:LIB:FUNC, U:LIB:PROBE or k:FUNC");
        }
        let parts: Vec<&str> = pattern.splitn(3, ':').collect();
        let nonempty = |s: &str, what: &str| -> Result<String> {
            if s.is_empty() {
                bail!("pattern {pattern:?}: the {what} is empty");
            }
            Ok(s.to_string())
        };
        Ok(match parts[..] {
            ["t", subsys, event] => Target::Tracepoint {
                subsys: nonempty(subsys, "tracepoint subsystem")?,
                event: nonempty(event, "tracepoint event")?,
            },
            ["t", ..] => bail!("pattern {pattern:?}: tracepoints are t:SUBSYSTEM:EVENT"),
            ["u", lib, func] => Target::User {
                lib: nonempty(lib, "library or binary")?,
                func: nonempty(func, "function")?,
            },
            ["u", ..] => {
                bail!("pattern {pattern:?}: user functions are u:LIBRARY_OR_PATH:FUNCTION")
            }
            ["U", lib, probe] => Target::Usdt {
                lib: nonempty(lib, "library or binary")?,
                probe: nonempty(probe, "USDT probe")?,
            },
            ["U", ..] => bail!("pattern {pattern:?}: USDT probes are U:LIBRARY_OR_PATH:PROBE"),
            ["k", func] => Target::Kernel {
                func: nonempty(func, "kernel function")?,
            },
            ["k", ..] => bail!("pattern {pattern:?}: kernel functions are k:FUNCTION"),
            [func] => Target::Kernel {
                func: nonempty(func, "kernel function")?,
            },
            [lib, func] => Target::User {
                lib: nonempty(lib, "library or binary")?,
                func: nonempty(func, "function")?,
            },
            _ => bail!(
                "pattern {pattern:?}: use t:SUBSYS:EVENT, u:LIB:FUNC, U:LIB:PROBE, k:FUNC or FUNC"
            ),
        })
    }
}

/// Matches names by a glob (`*`, `?`, `[...]`, the whole name) or, with -r, a regular expression anchored at
/// the start of the name (as bcc's -r, Python's re.match: add `$` to anchor the end too).
#[derive(Debug, Clone)]
pub enum Matcher {
    Glob(globset::GlobMatcher),
    Regex(Regex),
}

impl Matcher {
    pub fn new(pattern: &str, regex: bool) -> Result<Self> {
        Ok(if regex {
            // regex's messages draw the pattern over several lines: keep the last, which says what is wrong.
            Matcher::Regex(Regex::new(&format!("^(?:{pattern})")).map_err(|e| {
                let msg = e.to_string();
                let why = msg
                    .lines()
                    .last()
                    .unwrap_or("")
                    .trim_start_matches("error: ")
                    .to_string();
                anyhow::anyhow!("bad regular expression {pattern:?}: {why}")
            })?)
        } else {
            let glob = globset::GlobBuilder::new(pattern)
                .literal_separator(false)
                .backslash_escape(true)
                .build()
                .with_context(|| format!("bad pattern {pattern:?}"))?;
            Matcher::Glob(glob.compile_matcher())
        })
    }

    pub fn is_match(&self, name: &str) -> bool {
        match self {
            Matcher::Glob(g) => g.is_match(name),
            Matcher::Regex(r) => r.is_match(name),
        }
    }
}

/// Tracepoints as (subsystem, event) whose names match, from tracefs's events directory (mounted if needed).
pub fn tracepoints(subsys: &Matcher, event: &Matcher) -> Result<Vec<(String, String)>> {
    crate::bpf::ensure_tracefs()?;
    let events = [
        Path::new("/sys/kernel/tracing/events"),
        Path::new("/sys/kernel/debug/tracing/events"),
    ]
    .into_iter()
    .find(|p| p.is_dir())
    .context("tracefs has no events directory")?;
    let mut out = Vec::new();
    for cat in std::fs::read_dir(events)
        .with_context(|| format!("reading {}", events.display()))?
        .flatten()
    {
        let cat_name = cat.file_name().to_string_lossy().into_owned();
        // ftrace's own events (ftrace:function, ...) are not tracepoints: nothing can attach to them.
        if cat_name == "ftrace" || !cat.path().is_dir() || !subsys.is_match(&cat_name) {
            continue;
        }
        for ev in std::fs::read_dir(cat.path())?.flatten() {
            let ev_name = ev.file_name().to_string_lossy().into_owned();
            if ev.path().join("id").exists() && event.is_match(&ev_name) {
                out.push((cat_name.clone(), ev_name));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Whether this kernel can attach kprobes (CONFIG_KPROBES): the perf `kprobe` event source exists.
pub fn kernel_has_kprobes() -> bool {
    Path::new("/sys/bus/event_source/devices/kprobe").exists()
}

/// The one-line refusal where kernel functions cannot be traced (`what`: what was asked for), naming the
/// missing kernel feature and the tracepoints that may serve instead of `func_pattern`.
pub fn kprobes_missing(what: &str, func_pattern: &str) -> String {
    let like = tracepoints_like(func_pattern);
    let hint = if like.is_empty() {
        "tracepoints may serve instead: see /sys/kernel/tracing/available_events".to_string()
    } else {
        let shown: Vec<&str> = like.iter().take(4).map(String::as_str).collect();
        let more = if like.len() > 4 { ", ..." } else { "" };
        format!(
            "tracepoints that may serve instead: {}{more}",
            shown.join(", ")
        )
    };
    format!("{what} needs kprobes (or fentry), which this kernel does not have (CONFIG_KPROBES is off: /sys/bus/event_source/devices/kprobe is missing); {hint}")
}

/// Kernel functions whose names match: ftrace's list of functions that can be probed where there is one,
/// else the text symbols of /proc/kallsyms.
pub fn kernel_functions(m: &Matcher) -> Result<Vec<String>> {
    let mut names: Vec<String> = Vec::new();
    let ftrace = Path::new("/sys/kernel/tracing/available_filter_functions");
    if let Ok(text) = std::fs::read_to_string(ftrace) {
        for line in text.lines() {
            // "name" or "name [module]"
            let name = line.split_whitespace().next().unwrap_or("");
            if !name.is_empty() && m.is_match(name) {
                names.push(name.to_string());
            }
        }
    } else {
        let text = std::fs::read_to_string("/proc/kallsyms").context("reading /proc/kallsyms")?;
        for (_, name) in text_symbols(&text) {
            if m.is_match(name) {
                names.push(name.to_string());
            }
        }
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// The addresses of the kernel's text symbols named `names` (a name can have several: static functions
/// of different files), from /proc/kallsyms.
pub fn kernel_function_addrs(names: &[String]) -> Result<HashMap<String, Vec<u64>>> {
    let wanted: HashSet<&str> = names.iter().map(String::as_str).collect();
    let text = std::fs::read_to_string("/proc/kallsyms").context("reading /proc/kallsyms")?;
    let mut addrs: HashMap<String, Vec<u64>> = HashMap::new();
    for (addr, name) in text_symbols(&text) {
        if wanted.contains(name) {
            if let Ok(a) = u64::from_str_radix(addr, 16) {
                addrs.entry(name.to_string()).or_default().push(a);
            }
        }
    }
    Ok(addrs)
}

/// The text symbols (`t`/`T`) of /proc/kallsyms's `text`: (address in hex, name).
fn text_symbols(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines().filter_map(|line| {
        let mut f = line.split_whitespace();
        match (f.next(), f.next(), f.next()) {
            (Some(addr), Some("t" | "T"), Some(name)) => Some((addr, name)),
            _ => None,
        }
    })
}

/// Tracepoints that might serve where a kernel-function pattern cannot be traced, best first: a system call
/// named by a word of the pattern (`vfs_read` -> `t:syscalls:sys_enter_read`), then those whose
/// `subsys:event` contains every word (`sched_fork*` -> `t:sched:sched_process_fork`), then those containing
/// its longest word; shorter names first.
pub fn tracepoints_like(func_pattern: &str) -> Vec<String> {
    let words: Vec<&str> = func_pattern
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| w.len() >= 3)
        .collect();
    let Some(longest) = words.iter().max_by_key(|w| w.len()) else {
        return Vec::new();
    };
    let Ok(any) = Matcher::new("*", false) else {
        return Vec::new();
    };
    let Ok(all) = tracepoints(&any, &any) else {
        return Vec::new();
    };
    let names: Vec<String> = all.into_iter().map(|(c, e)| format!("{c}:{e}")).collect();
    let rank = |n: &str| -> Option<u8> {
        if words.iter().any(|w| n == format!("syscalls:sys_enter_{w}")) {
            Some(0)
        } else if words.iter().all(|w| n.contains(w)) {
            Some(1)
        } else if n.contains(longest) {
            Some(2)
        } else {
            None
        }
    };
    let mut like: Vec<(u8, &String)> = names
        .iter()
        .filter_map(|n| rank(n).map(|r| (r, n)))
        .collect();
    let best = like.iter().map(|(r, _)| *r).min().unwrap_or(2);
    // Only the best rank, except that a system call goes with the rest of its rank below.
    like.retain(|(r, _)| *r <= best.max(1));
    like.sort_by_key(|(r, n)| (*r, n.len(), (*n).clone()));
    like.into_iter().map(|(_, n)| format!("t:{n}")).collect()
}

/// A user-space probe point in a file: a function's file offset, or a USDT probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPoint {
    pub path: PathBuf,
    pub name: String,
    pub offset: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_parse_as_bcc_and_the_issue_say() {
        assert_eq!(
            Target::parse("t:syscalls:sys_enter_*").unwrap(),
            Target::Tracepoint {
                subsys: "syscalls".into(),
                event: "sys_enter_*".into()
            }
        );
        assert_eq!(
            Target::parse("u:c:malloc*").unwrap(),
            Target::User {
                lib: "c".into(),
                func: "malloc*".into()
            }
        );
        assert_eq!(
            Target::parse("c:malloc").unwrap(),
            Target::User {
                lib: "c".into(),
                func: "malloc".into()
            }
        );
        assert_eq!(
            Target::parse("U:/usr/bin/python3:function__entry").unwrap(),
            Target::Usdt {
                lib: "/usr/bin/python3".into(),
                probe: "function__entry".into()
            }
        );
        assert_eq!(
            Target::parse("vfs_*").unwrap(),
            Target::Kernel {
                func: "vfs_*".into()
            }
        );
        assert_eq!(
            Target::parse("k:vfs_read").unwrap(),
            Target::Kernel {
                func: "vfs_read".into()
            }
        );
        for bad in [
            "t:sched", "t::x", "u:c", "u:c:", "U:lib", "k:", "", "a:b:c:d",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn globs_match_whole_names_and_regexes_anywhere() {
        let g = Matcher::new("count_*", false).unwrap();
        assert!(g.is_match("count_a") && !g.is_match("xcount_a") && !g.is_match("count"));
        let g = Matcher::new("a?c", false).unwrap();
        assert!(g.is_match("abc") && !g.is_match("abbc"));
        let r = Matcher::new("^count_[ab]$", true).unwrap();
        assert!(r.is_match("count_a") && !r.is_match("count_c"));
        // Anchored at the start only, as bcc's re.match.
        let r = Matcher::new("oo_", true).unwrap();
        assert!(r.is_match("oo_a") && !r.is_match("foo_a"));
        assert!(Matcher::new("count", true).unwrap().is_match("count_a"));
        assert!(Matcher::new("(", true).is_err());
        assert!(Matcher::new("[", false).is_err());
    }
}
