//! SVG flame graphs from folded lines, through inferno.
use std::io::Write;

use anyhow::{Context, Result};
use inferno::flamegraph::color::{BasicPalette, Color, MultiPalette, Palette, PaletteMap};
use inferno::flamegraph::{self, Options};

use super::wait::WAKER_SUFFIX;

/// Which colours, as flamegraph.pl's --colors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphPalette {
    /// On-CPU: kernel frames (`_[k]`) orange, C++/Rust (`::`) yellow, the rest red.
    Cpu,
    /// Off-CPU time: blues (`--colors=io`).
    Io,
    /// Wakeup time: aqua on blue (`--colors=wakeup`).
    Wakeup,
    /// Off-CPU and waker stacks in one graph (`--colors=chain`): the blocked half blue, the waker's
    /// frames (suffix `_[w]`) aqua.
    Chain,
    /// On-CPU and off-CPU stacks in one graph (hot/cold): on-CPU frames in the CPU palette, off-CPU ones
    /// (suffix `_[w]`) blue.
    HotCold,
}

/// What a flame graph says about itself.
#[derive(Clone, Debug)]
pub struct FlameGraphSpec {
    pub title: String,
    pub subtitle: Option<String>,
    /// What a frame's width counts ("samples", "us").
    pub count_name: String,
    pub palette: GraphPalette,
}

/// Writes an SVG flame graph of folded lines (`a;b;c count`), coloured by the spec's palette from each
/// frame's name: the same colours for every run.
pub fn write_svg<W: Write>(spec: &FlameGraphSpec, lines: &[String], out: W) -> Result<()> {
    let mut opts = Options::default();
    opts.title = spec.title.clone();
    opts.subtitle = spec.subtitle.clone();
    opts.count_name = spec.count_name.clone();
    opts.hash = true;
    opts.deterministic = true;
    let mut waker_colours = PaletteMap::default();
    opts.colors = match spec.palette {
        GraphPalette::Cpu => Palette::Multi(MultiPalette::Perl),
        GraphPalette::Io => Palette::Basic(BasicPalette::Io),
        GraphPalette::Wakeup => Palette::Multi(MultiPalette::Wakeup),
        GraphPalette::Chain => {
            // inferno has no chain palette: waker frames get their aqua through a palette map filled
            // beforehand, every other frame falls back to blue.
            for line in lines {
                let stack = line.rsplit_once(' ').map_or(line.as_str(), |(s, _)| s);
                for frame in stack.split(';').filter(|f| f.ends_with(WAKER_SUFFIX)) {
                    if waker_colours.get(frame).is_none() {
                        waker_colours.insert(frame, aqua(frame));
                    }
                }
            }
            opts.palette_map = Some(&mut waker_colours);
            Palette::Basic(BasicPalette::Blue)
        }
        GraphPalette::HotCold => {
            // As Chain the other way round: the marked (off-CPU) frames get blue through the palette
            // map, every other frame the CPU palette.
            for line in lines {
                let stack = line.rsplit_once(' ').map_or(line.as_str(), |(s, _)| s);
                for frame in stack.split(';').filter(|f| f.ends_with(WAKER_SUFFIX)) {
                    if waker_colours.get(frame).is_none() {
                        waker_colours.insert(frame, blue(frame));
                    }
                }
            }
            opts.palette_map = Some(&mut waker_colours);
            Palette::Multi(MultiPalette::Perl)
        }
    };
    if lines.is_empty() {
        anyhow::bail!("no stacks were sampled: nothing to draw");
    }
    flamegraph::from_lines(&mut opts, lines.iter().map(String::as_str), out)
        .context("rendering the flame graph")
}

/// A shade in [0, 1) chosen by a hash of the name (FNV-1a), so that a name keeps its colour.
fn shade(name: &str) -> f32 {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash >> 40) as f32 / (1u64 << 24) as f32
}

/// flamegraph.pl's aqua.
fn aqua(name: &str) -> Color {
    let v = shade(name);
    Color {
        r: 50 + (60.0 * v) as u8,
        g: 165 + (55.0 * v) as u8,
        b: 165 + (55.0 * v) as u8,
    }
}

/// flamegraph.pl's blue (its io palette).
fn blue(name: &str) -> Color {
    let v = shade(name);
    Color {
        r: 80 + (60.0 * v) as u8,
        g: 80 + (60.0 * v) as u8,
        b: 190 + (55.0 * v) as u8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_names_frames_and_title() {
        let spec = FlameGraphSpec {
            title: "CPU Flame Graph".into(),
            subtitle: Some("bpfprof profile".into()),
            count_name: "samples".into(),
            palette: GraphPalette::Cpu,
        };
        let lines = vec![
            "burn;main;hot_two_thirds 20".to_string(),
            "burn;main;hot_one_third 10".to_string(),
        ];
        let mut out = Vec::new();
        write_svg(&spec, &lines, &mut out).unwrap();
        let svg = String::from_utf8(out).unwrap();
        assert!(svg.starts_with("<?xml"));
        assert!(svg.contains("CPU Flame Graph") && svg.contains("bpfprof profile"));
        assert!(svg.contains("hot_two_thirds (20 samples, 66.67%)"), "{svg}");
        assert!(svg.contains("hot_one_third (10 samples, 33.33%)"));
        assert!(svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn nothing_to_draw_is_an_error() {
        let spec = FlameGraphSpec {
            title: "t".into(),
            subtitle: None,
            count_name: "samples".into(),
            palette: GraphPalette::Cpu,
        };
        assert!(write_svg(&spec, &[], Vec::new()).is_err());
    }

    #[test]
    fn chain_palette_colours_waker_frames_aqua() {
        let spec = FlameGraphSpec {
            title: "Off-Wake Time Flame Graph".into(),
            subtitle: None,
            count_name: "us".into(),
            palette: GraphPalette::Chain,
        };
        let lines = vec!["reader;read;schedule;--;try_to_wake_up_[w];writer_[w] 100".to_string()];
        let mut out = Vec::new();
        write_svg(&spec, &lines, &mut out).unwrap();
        let svg = String::from_utf8(out).unwrap();
        let c = aqua("try_to_wake_up_[w]");
        assert!(
            svg.contains(&format!("rgb({},{},{})", c.r, c.g, c.b)),
            "no aqua frame in {svg}"
        );
        // The suffix only colours: the frame reads as the function's name.
        assert!(
            svg.contains(">try_to_wake_up<") || svg.contains(">try_to_wake_up "),
            "{svg}"
        );
    }
}
