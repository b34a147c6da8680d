//! Property tests over hostile input (issue 18's fuzz targets, bounded for CI: proptest's cases per
//! target): funccount/trace probe patterns, tracepoint format files, ELF files and their USDT notes
//! corrupted at random, unwind tables built from corrupted ELF files, and /proc/PID/maps lines. Each must
//! give a value or an error, never panic. The oneliner front end has its own (src/oneliner/fuzz.rs).
use std::sync::atomic::AtomicBool;

use proptest::prelude::*;

use crate::oneliner::tpformat::parse_format;
use crate::probes::elf::{functions, parse_notes, usdt_sites};
use crate::probes::{Matcher, Target};
use crate::unwind::maps::parse_exec;
use crate::unwind::table::build;

/// A small real ELF file to corrupt.
fn sample_elf() -> Vec<u8> {
    std::fs::read("/bin/true").expect("/bin/true")
}

/// `data` with `edits` (offset, byte) applied, offsets wrapped into its length.
fn corrupt(mut data: Vec<u8>, edits: &[(usize, u8)]) -> Vec<u8> {
    let n = data.len();
    for &(at, b) in edits {
        data[at % n] = b;
    }
    data
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn probe_patterns_never_panic(p in "\\PC{0,40}", q in "[tukUpr:*?a-z_/.\\[\\]{}]{0,24}") {
        for pattern in [&p, &q] {
            let _ = Target::parse(pattern);
            let _ = Matcher::new(pattern, false);
            let _ = Matcher::new(pattern, true);
        }
    }

    #[test]
    fn tracepoint_formats_never_panic(
        text in "\\PC{0,200}",
        lines in proptest::collection::vec(
            "\tfield:[a-z _\\[\\]0-9*]{0,20};\toffset:-?[0-9]{0,5};\tsize:-?[0-9]{0,5};\tsigned:[0-9]{0,2};",
            0..6
        ),
    ) {
        let _ = parse_format(&text);
        let _ = parse_format(&lines.join("\n"));
    }

    #[test]
    fn maps_lines_never_panic(
        text in "\\PC{0,200}",
        lines in proptest::collection::vec(
            "[0-9a-f]{0,16}-[0-9a-f]{0,16} [r-][w-][x-][ps] [0-9a-f]{0,9} [0-9a-f]{0,3}:[0-9a-f]{0,3} [0-9]{0,8} {0,8}[/a-z. ()\\[\\]]{0,30}",
            0..8
        ),
    ) {
        let _ = parse_exec(&text);
        let _ = parse_exec(&lines.join("\n"));
    }

    #[test]
    fn elf_notes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256), little in any::<bool>()) {
        let _ = parse_notes(&data, little);
    }

    #[test]
    fn corrupted_elf_files_never_panic(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..24)) {
        let data = corrupt(sample_elf(), &edits);
        // Unwind tables from the corrupted file, in memory.
        let _ = build(&data, &AtomicBool::new(false));
        // Symbols and USDT notes, from a file (as the probes read them).
        let path = std::env::temp_dir().join(format!("bpfprof-fuzz-{}.elf", std::process::id()));
        std::fs::write(&path, &data).unwrap();
        let m = Matcher::new("*", false).unwrap();
        let _ = functions(&path, &m);
        let _ = usdt_sites(&path, &m);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn truncated_elf_files_never_panic(len in 0usize..4096) {
        let data = sample_elf();
        let data = &data[..len.min(data.len())];
        let _ = build(data, &AtomicBool::new(false));
    }
}
