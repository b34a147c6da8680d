//! SVG flame graphs from folded lines, through inferno.
use std::io::Write;

use anyhow::{Context, Result};
use inferno::flamegraph::color::{MultiPalette, Palette};
use inferno::flamegraph::{self, Options};

/// What a flame graph says about itself.
#[derive(Clone, Debug)]
pub struct FlameGraphSpec {
    pub title: String,
    pub subtitle: Option<String>,
    /// What a frame's width counts ("samples", "us").
    pub count_name: String,
}

/// Writes an SVG flame graph of folded lines (`a;b;c count`). Kernel frames should carry `_[k]`:
/// the palette colours them orange, C++/Rust (`::`) yellow and the rest red, the same for every run.
pub fn write_svg<W: Write>(spec: &FlameGraphSpec, lines: &[String], out: W) -> Result<()> {
    let mut opts = Options::default();
    opts.title = spec.title.clone();
    opts.subtitle = spec.subtitle.clone();
    opts.count_name = spec.count_name.clone();
    opts.colors = Palette::Multi(MultiPalette::Perl);
    opts.hash = true;
    opts.deterministic = true;
    if lines.is_empty() {
        anyhow::bail!("no stacks were sampled: nothing to draw");
    }
    flamegraph::from_lines(&mut opts, lines.iter().map(String::as_str), out)
        .context("rendering the flame graph")
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
        };
        assert!(write_svg(&spec, &[], Vec::new()).is_err());
    }
}
