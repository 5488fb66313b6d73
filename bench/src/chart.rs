//! The simulation's chart: stock on hand over time, one panel per product, the fixed and the
//! adaptive policy as two lines in each (PNG, drawn with plotters; 1-pixel lines: plotters
//! 0.3.7 draws thicker near-vertical segments with spikes far outside the chart). Text needs a TrueType
//! font: DejaVu Sans from Debian's `fonts-dejavu-core` (or `RESTOCK_BENCH_FONT`).

use std::path::Path;

use anyhow::{Context, anyhow};
use plotters::prelude::*;
use plotters::style::FontStyle;

/// Where the font is looked for when `RESTOCK_BENCH_FONT` is unset.
const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// One panel: a title and two series of `(seconds, units on hand)`.
pub struct Panel {
    /// Title, e.g. `5 units/s`.
    pub title: String,
    /// The fixed policy's samples.
    pub fixed: Vec<(f64, i64)>,
    /// The adaptive policy's samples.
    pub adaptive: Vec<(f64, i64)>,
    /// A vertical marker (e.g. the demand step), seconds.
    pub marker: Option<f64>,
}

/// Registers the font once per process.
fn font() -> anyhow::Result<()> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let path = std::env::var("RESTOCK_BENCH_FONT").unwrap_or_else(|_| DEFAULT_FONT.to_owned());
        let bytes = std::fs::read(&path).map_err(|e| {
            format!("no font for the chart at {path} ({e}); install fonts-dejavu-core or set RESTOCK_BENCH_FONT")
        })?;
        plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into_boxed_slice()))
            .map_err(|_| format!("{path} is not a usable TrueType font"))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// Draws `panels` side by side in rows of two into `path` (PNG).
pub fn draw(path: &Path, panels: &[Panel], seconds: f64) -> anyhow::Result<()> {
    font()?;
    let rows = panels.len().div_ceil(2).max(1);
    let height = u32::try_from(rows).unwrap_or(1) * 300 + 40;
    let root = BitMapBackend::new(path, (1200, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let (title, body) = root.split_vertically(40);
    title
        .titled(
            "Units on hand over time: fixed reorder point 0 (red) vs adaptive (blue)",
            ("sans-serif", 20),
        )
        .map_err(|e| anyhow!("{e}"))?;
    let areas = body.split_evenly((rows, 2));
    for (panel, area) in panels.iter().zip(areas.iter()) {
        let top = panel
            .fixed
            .iter()
            .chain(panel.adaptive.iter())
            .map(|(_, v)| *v)
            .max()
            .unwrap_or(1)
            .max(1);
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(45)
            .build_cartesian_2d(0.0..seconds, 0i64..(top + top / 10 + 1))
            .map_err(|e| anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("on hand")
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        for (series, colour, label) in [
            (&panel.fixed, RED, "fixed (reorder point 0)"),
            (&panel.adaptive, BLUE, "adaptive"),
        ] {
            chart
                .draw_series(LineSeries::new(
                    series.iter().copied(),
                    colour.stroke_width(1),
                ))
                .map_err(|e| anyhow!("{e}"))?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour));
        }
        if let Some(at) = panel.marker {
            chart
                .draw_series(LineSeries::new(
                    [(at, 0), (at, top)],
                    BLACK.mix(0.4).stroke_width(1),
                ))
                .map_err(|e| anyhow!("{e}"))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 12))
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
    }
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
