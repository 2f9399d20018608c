//! Line charts as inline SVG, drawn on the server.
//!
//! A chart has thin lines (one per rank, or the run's one line), an optional
//! bold line (the mean across ranks) and an optional shaded band (the min–max
//! across ranks, or within a down-sampled bucket). Each thin line carries
//! `data-rank`, so the page's script can highlight one rank in every chart.
//! The number of points is bounded by the caller's down-sampling, never by
//! the number of steps.

use std::fmt::Write;

use super::html::{attr, esc, number};

/// Drawing area in SVG units (the SVG scales to the page width).
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 240.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 30.0;

/// Colours of the thin lines (Tableau 10).
pub(crate) const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];

/// One thin line.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    /// The rank (for highlighting); `None` for a run's own line.
    pub rank: Option<u32>,
    /// Colour index.
    pub color: usize,
    /// `(x, y)` points; non-finite values break the line.
    pub points: Vec<(f64, f64)>,
}

/// What one chart shows.
#[derive(Debug, Clone, Default)]
pub(crate) struct Chart {
    /// What the x axis is (`step`, `wall time (s)`).
    pub x_label: &'static str,
    /// Thin lines.
    pub lines: Vec<Line>,
    /// The bold line.
    pub mean: Vec<(f64, f64)>,
    /// `(x, low, high)` of the shaded band.
    pub band: Vec<(f64, f64, f64)>,
}

struct Scale {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
}

impl Scale {
    fn x(&self, x: f64) -> f64 {
        LEFT + (x - self.x0) / (self.x1 - self.x0) * (WIDTH - LEFT - RIGHT)
    }

    fn y(&self, y: f64) -> f64 {
        HEIGHT - BOTTOM - (y - self.y0) / (self.y1 - self.y0) * (HEIGHT - TOP - BOTTOM)
    }
}

impl Chart {
    fn bounds(&self) -> Option<Scale> {
        let mut xs = (f64::INFINITY, f64::NEG_INFINITY);
        let mut ys = (f64::INFINITY, f64::NEG_INFINITY);
        let mut add = |x: f64, y: f64| {
            if x.is_finite() && y.is_finite() {
                xs = (xs.0.min(x), xs.1.max(x));
                ys = (ys.0.min(y), ys.1.max(y));
            }
        };
        for l in &self.lines {
            l.points.iter().for_each(|&(x, y)| add(x, y));
        }
        self.mean.iter().for_each(|&(x, y)| add(x, y));
        for &(x, lo, hi) in &self.band {
            add(x, lo);
            add(x, hi);
        }
        if xs.0 > xs.1 {
            return None;
        }
        if xs.1 <= xs.0 {
            xs.1 = xs.0 + 1.0;
        }
        let pad = if ys.1 > ys.0 {
            (ys.1 - ys.0) * 0.05
        } else {
            ys.0.abs().max(1.0) * 0.05
        };
        Some(Scale {
            x0: xs.0,
            x1: xs.1,
            y0: ys.0 - pad,
            y1: ys.1 + pad,
        })
    }

    /// The chart as an `<svg>` element; a note instead when nothing is finite.
    pub fn svg(&self, title: &str) -> String {
        let Some(s) = self.bounds() else {
            return "<p class=\"empty\">no finite values to draw</p>".into();
        };
        let mut o = String::with_capacity(4096 + self.lines.len() * 2048);
        let _ = write!(
            o,
            "<svg viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{}\">",
            attr(title)
        );
        self.axes(&s, &mut o);
        if self.band.len() >= 2 {
            o.push_str("<path class=\"band\" d=\"");
            for (i, &(x, lo, _)) in self.band.iter().enumerate() {
                let _ = write!(
                    o,
                    "{}{:.1} {:.1}",
                    if i == 0 { "M" } else { "L" },
                    s.x(x),
                    s.y(lo)
                );
            }
            for &(x, _, hi) in self.band.iter().rev() {
                let _ = write!(o, "L{:.1} {:.1}", s.x(x), s.y(hi));
            }
            o.push_str("Z\"/>");
        }
        let faint = self.lines.len() > 10;
        for l in &self.lines {
            let rank = l
                .rank
                .map_or(String::new(), |r| format!(" data-rank=\"{r}\""));
            let _ = write!(
                o,
                "<path class=\"line{}\"{rank} stroke=\"{}\" d=\"{}\"><title>{}</title></path>",
                if faint { " faint" } else { "" },
                PALETTE[l.color % PALETTE.len()],
                path(&s, &l.points),
                l.rank.map_or_else(|| esc(title), |r| format!("rank {r}")),
            );
        }
        if !self.mean.is_empty() {
            let _ = write!(
                o,
                "<path class=\"mean\" d=\"{}\"><title>mean</title></path>",
                path(&s, &self.mean)
            );
        }
        o.push_str("</svg>");
        o
    }

    fn axes(&self, s: &Scale, o: &mut String) {
        let (bx0, bx1) = (LEFT, WIDTH - RIGHT);
        let (by0, by1) = (TOP, HEIGHT - BOTTOM);
        let _ = write!(
            o,
            "<rect class=\"frame\" x=\"{bx0}\" y=\"{by0}\" width=\"{}\" height=\"{}\"/>",
            bx1 - bx0,
            by1 - by0
        );
        for t in ticks(s.y0, s.y1, 5) {
            let y = s.y(t);
            let _ = write!(
                o,
                "<line class=\"grid\" x1=\"{bx0}\" x2=\"{bx1}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/><text class=\"tick\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                bx0 - 4.0,
                y + 3.5,
                esc(&number(t))
            );
        }
        for t in ticks(s.x0, s.x1, 6) {
            let x = s.x(t);
            let _ = write!(
                o,
                "<line class=\"grid\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{by0}\" y2=\"{by1}\"/><text class=\"tick\" x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                by1 + 13.0,
                esc(&number(t))
            );
        }
        let _ = write!(
            o,
            "<text class=\"axis\" x=\"{bx1}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            HEIGHT - 3.0,
            esc(self.x_label)
        );
    }
}

/// The `d` attribute of a polyline; a non-finite value starts a new piece.
fn path(s: &Scale, points: &[(f64, f64)]) -> String {
    let mut d = String::with_capacity(points.len() * 12);
    let mut pen_up = true;
    for &(x, y) in points {
        if !(x.is_finite() && y.is_finite()) {
            pen_up = true;
            continue;
        }
        let _ = write!(
            d,
            "{}{:.1} {:.1}",
            if pen_up { "M" } else { "L" },
            s.x(x),
            s.y(y)
        );
        pen_up = false;
    }
    d
}

/// Round tick values (1, 2 or 5 times a power of ten) inside `lo..=hi`.
pub(crate) fn ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return Vec::new();
    }
    let raw = (hi - lo) / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil();
    (0..=target * 3)
        .map(|i| (first + i as f64) * step)
        .take_while(|t| *t <= hi + step * 1e-9)
        .map(|t| if t.abs() < step * 1e-9 { 0.0 } else { t })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_inside() {
        assert_eq!(ticks(0.0, 10.0, 5), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        let t = ticks(0.13, 0.91, 4);
        assert_eq!(t.first().copied(), Some(0.2));
        assert!(t.iter().all(|v| (0.13..=0.91).contains(v)));
        assert!(ticks(1.0, 1.0, 5).is_empty());
        assert!(ticks(f64::NAN, 1.0, 5).is_empty());
    }

    #[test]
    fn non_finite_values_break_the_line() {
        let s = Scale {
            x0: 0.0,
            x1: 3.0,
            y0: 0.0,
            y1: 1.0,
        };
        let d = path(&s, &[(0.0, 0.0), (1.0, f64::NAN), (2.0, 1.0), (3.0, 0.5)]);
        assert_eq!(d.matches('M').count(), 2);
        assert_eq!(d.matches('L').count(), 1);
    }

    #[test]
    fn chart_marks_ranks_and_escapes_the_title() {
        let c = Chart {
            x_label: "step",
            lines: vec![Line {
                rank: Some(3),
                color: 3,
                points: vec![(0.0, 1.0), (1.0, 2.0)],
            }],
            mean: vec![(0.0, 1.0), (1.0, 2.0)],
            band: vec![(0.0, 0.5, 1.5), (1.0, 1.5, 2.5)],
        };
        let svg = c.svg("<b>loss</b>");
        assert!(svg.contains("data-rank=\"3\""));
        assert!(svg.contains("class=\"mean\""));
        assert!(svg.contains("class=\"band\""));
        assert!(!svg.contains("<b>"));
        assert!(Chart::default().svg("x").contains("no finite values"));
    }
}
