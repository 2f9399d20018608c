//! `ranklog group --plot`: one chart per metric, drawn with plotters.
//!
//! Every rank is a thin line, the mean across ranks a bold line, and the band
//! between the minimum and the maximum across ranks is shaded. `.svg` files
//! are vector graphics, `.png` files bitmaps; the font is built in, so no
//! system font or browser is needed.

use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, bail, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use ranklog::group::GroupView;

const FONT: &[u8] = include_bytes!("../../../assets/DejaVuSans.ttf");
const WIDTH: u32 = 960;

/// One rank's line: its rank and `(step, value)` points.
type RankLine = (Option<u32>, Vec<(u64, f64)>);
const CHART_HEIGHT: u32 = 340;

/// Draws the charts of `view` into `out` (`.svg` or `.png`).
pub fn draw(view: &GroupView, out: &Path) -> Result<()> {
    static FONT_ONCE: Once = Once::new();
    let mut font_ok = true;
    FONT_ONCE.call_once(|| {
        font_ok = register_font("sans-serif", FontStyle::Normal, FONT).is_ok();
    });
    if !font_ok {
        bail!("the built-in font could not be loaded");
    }
    if view.metrics.is_empty() {
        bail!("group {} has no metrics to plot", view.group);
    }
    let height = CHART_HEIGHT * view.metrics.len() as u32;
    let ext = out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("svg") => {
            let area = SVGBackend::new(out, (WIDTH, height)).into_drawing_area();
            charts(view, &area)?;
            area.present()
                .map_err(|e| anyhow!("cannot write {}: {e}", out.display()))?;
        }
        Some("png") => {
            let area = BitMapBackend::new(out, (WIDTH, height)).into_drawing_area();
            charts(view, &area)?;
            area.present()
                .map_err(|e| anyhow!("cannot write {}: {e}", out.display()))?;
        }
        _ => bail!(
            "cannot tell the image format of {}; use a name ending in .svg or .png",
            out.display()
        ),
    }
    Ok(())
}

fn charts<DB: DrawingBackend>(view: &GroupView, area: &DrawingArea<DB, Shift>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("cannot draw the chart: {e}");
    area.fill(&WHITE).map_err(err)?;
    let panels = area.split_evenly((view.metrics.len(), 1));
    let many = view.ranks.len() > 10;
    for (metric, panel) in view.metrics.iter().zip(&panels) {
        let finite = |v: f64| v.is_finite().then_some(v);
        let band: Vec<(u64, f64, f64)> = metric
            .series
            .iter()
            .filter_map(|s| Some((s.step, finite(s.min)?, finite(s.max)?)))
            .collect();
        let lines: Vec<RankLine> = view
            .ranks
            .iter()
            .filter_map(|r| {
                let m = r.metrics.iter().find(|m| m.key == metric.key)?;
                let pts: Vec<(u64, f64)> = m
                    .series
                    .iter()
                    .copied()
                    .filter(|(_, v)| v.is_finite())
                    .collect();
                Some((r.rank, pts))
            })
            .collect();
        let mean: Vec<(u64, f64)> = metric
            .series
            .iter()
            .filter_map(|s| Some((s.step, finite(s.mean)?)))
            .collect();
        let steps = band
            .iter()
            .map(|b| b.0)
            .chain(lines.iter().flat_map(|(_, p)| p.iter().map(|p| p.0)));
        let (x0, x1) = steps.fold((u64::MAX, 0), |(a, b), s| (a.min(s), b.max(s)));
        let values = band
            .iter()
            .flat_map(|b| [b.1, b.2])
            .chain(lines.iter().flat_map(|(_, p)| p.iter().map(|p| p.1)));
        let (y0, y1) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
        if x0 > x1 || y0.partial_cmp(&y1).is_none_or(|o| o.is_gt()) {
            panel
                .titled(
                    &format!("{} (no finite values)", metric.key),
                    ("sans-serif", 18),
                )
                .map_err(err)?;
            continue;
        }
        let pad = if y1 > y0 {
            (y1 - y0) * 0.05
        } else {
            y0.abs().max(1.0) * 0.05
        };
        let x1 = if x1 > x0 { x1 } else { x0 + 1 };
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!("{}  ({} ranks)", metric.key, lines.len()),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(64)
            .build_cartesian_2d(x0 as f64..x1 as f64, (y0 - pad)..(y1 + pad))
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("step")
            .x_label_formatter(&|x| format!("{}", x.round() as i64))
            .light_line_style(RGBColor(235, 235, 235))
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(err)?;
        let band_color = RGBColor(70, 110, 200);
        let mut outline: Vec<(f64, f64)> = band.iter().map(|b| (b.0 as f64, b.1)).collect();
        outline.extend(band.iter().rev().map(|b| (b.0 as f64, b.2)));
        if outline.len() >= 3 {
            chart
                .draw_series(std::iter::once(Polygon::new(
                    outline,
                    band_color.mix(0.18).filled(),
                )))
                .map_err(err)?
                .label("min–max")
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 16, y + 5)], band_color.mix(0.18).filled())
                });
        }
        for (i, (rank, pts)) in lines.iter().enumerate() {
            let color = Palette99::pick(i).mix(if many { 0.45 } else { 0.8 });
            let series = chart
                .draw_series(LineSeries::new(
                    pts.iter().map(|&(s, v)| (s as f64, v)),
                    color.stroke_width(1),
                ))
                .map_err(err)?;
            if !many {
                let label = rank.map_or_else(|| "no rank".into(), |r| format!("rank {r}"));
                series.label(label).legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 16, y)], color.stroke_width(1))
                });
            }
        }
        chart
            .draw_series(LineSeries::new(
                mean.iter().map(|&(s, v)| (s as f64, v)),
                BLACK.stroke_width(3),
            ))
            .map_err(err)?
            .label("mean")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK.stroke_width(3)));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .label_font(("sans-serif", 12))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(err)?;
    }
    Ok(())
}
