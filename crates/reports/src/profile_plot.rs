//! "Where the time goes" as a picture: one stacked bar per backend, its profiled time split
//! by op kind, so a reader sees at a glance which kinds a runtime loses in.

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::breakdown::Breakdown;

/// Op kinds in colours of different lightness (Okabe–Ito, then greys), so neighbouring
/// segments stay apart in greyscale; unattributed time is hatched grey.
const KIND_COLORS: [RGBColor; 10] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(240, 228, 66),
    RGBColor(204, 121, 167),
    RGBColor(60, 60, 60),
    RGBColor(150, 150, 150),
    RGBColor(210, 210, 210),
];

fn kind_color(kinds: &[String], k: usize) -> RGBColor {
    if kinds[k] == "unattributed" {
        RGBColor(235, 235, 235)
    } else {
        KIND_COLORS[k % KIND_COLORS.len()]
    }
}

/// Draws `b` on `root`.
pub fn stacked_bars<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    b: &Breakdown,
    font: &str,
) -> Result<(), String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let n = b.backends.len();
    let top = (0..n).map(|i| b.total(i)).fold(0.0f64, f64::max) * 1.12;
    let mut chart = ChartBuilder::on(root)
        .caption(
            format!(
                "{} on {}: where the time goes (sum of per-op medians)",
                b.model, b.device
            ),
            (font, 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5f64..n as f64 - 0.5 + 1.6, 0f64..top.max(1e-6))
        .map_err(|e| e.to_string())?;
    let names = b.backends.clone();
    chart
        .configure_mesh()
        .x_labels(n + 2)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
                names[i as usize].clone()
            } else {
                String::new()
            }
        })
        .disable_x_mesh()
        .y_desc("ms")
        .label_style((font, 13))
        .draw()
        .map_err(|e| e.to_string())?;
    for (k, kind) in b.kinds.iter().enumerate() {
        let fill = kind_color(&b.kinds, k).filled();
        let bars: Vec<(f64, f64, f64)> = (0..n)
            .map(|i| {
                let below: f64 = (0..k).map(|j| b.ms[j][i]).sum();
                (i as f64, below, below + b.ms[k][i])
            })
            .filter(|(_, lo, hi)| hi > lo)
            .collect();
        chart
            .draw_series(
                bars.iter()
                    .map(|&(x, lo, hi)| Rectangle::new([(x - 0.35, lo), (x + 0.35, hi)], fill)),
            )
            .map_err(|e| e.to_string())?
            .label(kind.clone())
            .legend(move |(x, y)| Rectangle::new([(x - 6, y - 6), (x + 6, y + 6)], fill));
        // Segment outlines keep equal colours of adjacent bars apart.
        chart
            .draw_series(bars.iter().map(|&(x, lo, hi)| {
                Rectangle::new([(x - 0.35, lo), (x + 0.35, hi)], BLACK.stroke_width(1))
            }))
            .map_err(|e| e.to_string())?;
        // The share, where the segment is tall enough to hold it.
        chart
            .draw_series(
                bars.iter()
                    .filter(|&&(x, lo, hi)| (hi - lo) > top * 0.05 && b.total(x as usize) > 0.0)
                    .map(|&(x, lo, hi)| {
                        let share = 100.0 * (hi - lo) / b.total(x as usize);
                        Text::new(
                            format!("{share:.0}%"),
                            (x - 0.1, (lo + hi) / 2.0 + top * 0.012),
                            (font, 11),
                        )
                    }),
            )
            .map_err(|e| e.to_string())?;
    }
    for i in 0..n {
        chart
            .draw_series(std::iter::once(Text::new(
                format!("{:.2} ms", b.total(i)),
                (i as f64 - 0.25, b.total(i) + top * 0.04),
                (font, 12),
            )))
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((font, 13))
        .draw()
        .map_err(|e| e.to_string())
}
