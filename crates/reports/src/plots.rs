//! Plots (plotters), each written as SVG and PNG: MAdds vs published top-1 with blob area ∝
//! params (the slim seed's figure), latency vs top-1 per device with its Pareto front, the
//! latency distribution of every pair, and each backend's speed-up over a baseline.
//! Series differ in marker shape as well as colour, and the colours differ in lightness, so
//! the plots read in greyscale.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use mobilebench_models::{count_config, published, ModelConfig};
use mobilebench_results::{Run, SummaryRow};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::{all_rows, distinct, ReportError, ReportOptions};

type PlotResult = Result<(), String>;

/// Okabe–Ito, ordered so that neighbours differ in lightness.
const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 0, 0),
    RGBColor(230, 159, 0),
    RGBColor(0, 114, 178),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
];
const SIZE: (u32, u32) = (960, 620);
const FONT: &str = "sans-serif";

fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Marker `kind` (circle, triangle, square, cross, filled circle, ...) at `c`, in data or
/// (for legends) pixel coordinates.
fn marker<DB: DrawingBackend + 'static, C: Clone + 'static>(
    kind: usize,
    c: C,
    size: i32,
    style: ShapeStyle,
) -> DynElement<'static, DB, C> {
    match kind % 5 {
        0 => (EmptyElement::at(c) + Circle::new((0, 0), size, style)).into_dyn(),
        1 => (EmptyElement::at(c) + TriangleMarker::new((0, 0), size + 2, style)).into_dyn(),
        2 => {
            (EmptyElement::at(c) + Rectangle::new([(-size, -size), (size, size)], style)).into_dyn()
        }
        3 => (EmptyElement::at(c) + Cross::new((0, 0), size, style)).into_dyn(),
        _ => (EmptyElement::at(c) + Circle::new((0, 0), size, style.filled())).into_dyn(),
    }
}

fn short(model: &str) -> String {
    model
        .trim_start_matches("mobilenet_")
        .replace("_minimalistic", "-min")
}

fn file_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Registers a TrueType font for plotters' text (first found: $MOBILEBENCH_FONT, DejaVu Sans).
fn ensure_font() -> Result<(), ReportError> {
    static FONT_LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    FONT_LOADED
        .get_or_init(|| {
            let candidates: Vec<PathBuf> = std::env::var_os("MOBILEBENCH_FONT")
                .map(PathBuf::from)
                .into_iter()
                .chain(
                    [
                        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
                        "/usr/share/fonts/TTF/DejaVuSans.ttf",
                        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
                    ]
                    .map(PathBuf::from),
                )
                .collect();
            let path = candidates
                .iter()
                .find(|p| p.is_file())
                .ok_or("no DejaVuSans.ttf found")?;
            let bytes: &'static [u8] = Box::leak(
                std::fs::read(path)
                    .map_err(|e| e.to_string())?
                    .into_boxed_slice(),
            );
            plotters::style::register_font(FONT, FontStyle::Normal, bytes)
                .map_err(|_| format!("{} is not a usable font", path.display()))
        })
        .clone()
        .map_err(ReportError::NoFont)
}

/// A path that lives as long as the process: plotters' series of boxed markers need a
/// `'static` backend, and its backends borrow their output path. A handful per report.
fn leak(path: &Path) -> &'static Path {
    Box::leak(path.to_path_buf().into_boxed_path())
}

/// Draws `plot` into `dir/name.svg` and `dir/name.png`.
macro_rules! both {
    ($written:expr, $dir:expr, $name:expr, |$root:ident| $body:expr) => {{
        let svg = $dir.join(format!("{}.svg", $name));
        let png = $dir.join(format!("{}.png", $name));
        {
            let $root = SVGBackend::new(leak(&svg), SIZE).into_drawing_area();
            let r: PlotResult = $body;
            r.and_then(|_| $root.present().map_err(|e| e.to_string()))
                .map_err(|why| ReportError::Plot {
                    path: svg.clone(),
                    why,
                })?;
        }
        {
            let $root = BitMapBackend::new(leak(&png), SIZE).into_drawing_area();
            let r: PlotResult = $body;
            r.and_then(|_| $root.present().map_err(|e| e.to_string()))
                .map_err(|why| ReportError::Plot {
                    path: png.clone(),
                    why,
                })?;
        }
        $written.push(svg);
        $written.push(png);
    }};
}

/// Writes every plot the runs support into `dir`; returns the files.
pub fn write_all(
    runs: &[Run],
    options: &ReportOptions,
    dir: &Path,
) -> Result<Vec<PathBuf>, ReportError> {
    ensure_font()?;
    let mut written = Vec::new();
    both!(written, dir, "madds_vs_top1", |root| madds_vs_top1(&root));
    for b in crate::breakdown::breakdowns(runs) {
        let stem = crate::profile::plot_stem(&b.model, &b.device);
        both!(written, dir, stem, |root| {
            crate::profile_plot::stacked_bars(&root, &b, FONT)
        });
    }
    for s in crate::scaling::scalings(runs) {
        let stem = crate::scaling::scaling_stem(&s.model, &s.device);
        both!(written, dir, stem, |root| crate::scaling::plot(
            &root,
            &s,
            FONT,
            color,
            |i, p, style| marker(i, p, 5, style)
        ));
    }
    let rows = all_rows(runs);
    for device in distinct(rows.iter().map(|r| r.device.as_str())) {
        // One row per pair (the first run that measured it), ok pairs only.
        let mut of_device: Vec<&SummaryRow> = Vec::new();
        for r in rows
            .iter()
            .copied()
            .filter(|r| r.device == device && r.is_ok())
        {
            if !of_device
                .iter()
                .any(|o| o.model == r.model && o.backend == r.backend)
            {
                of_device.push(r);
            }
        }
        if of_device.is_empty() {
            continue;
        }
        let d = file_safe(device);
        // The Pareto front is of results fit to win: right outputs, real hardware.
        let fit: Vec<&SummaryRow> = of_device
            .iter()
            .copied()
            .filter(|r| crate::tables::can_win(r))
            .collect();
        both!(written, dir, format!("latency_vs_top1_{d}"), |root| {
            latency_vs_top1(&root, device, &fit)
        });
        both!(written, dir, format!("latency_distribution_{d}"), |root| {
            distribution(&root, device, runs, &of_device)
        });
        if of_device.iter().any(|r| r.backend == options.baseline) {
            let b = file_safe(&options.baseline);
            both!(written, dir, format!("speedup_vs_{b}_{d}"), |root| speedup(
                &root,
                device,
                &options.baseline,
                &of_device
            ));
        }
    }
    Ok(written)
}

fn madds_vs_top1<DB: DrawingBackend + 'static>(root: &DrawingArea<DB, Shift>) -> PlotResult {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let models = published::models();
    let mut chart = ChartBuilder::on(root)
        .caption(
            "MobileNets: multiply-adds vs ImageNet top-1 (blob area ∝ parameters)",
            (FONT, 22),
        )
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d((8f64..10_000f64).log_scale(), 40f64..86f64)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("multiply-adds (millions, counted, log scale)")
        .x_labels(8)
        .y_desc("top-1 accuracy (%, published)")
        .label_style((FONT, 15))
        .draw()
        .map_err(|e| e.to_string())?;
    let families = distinct(models.iter().map(|m| m.float.family.as_str()));
    for (i, family) in families.iter().enumerate() {
        let style = ShapeStyle::from(&color(i)).stroke_width(2);
        let points: Vec<(f64, f64, f64)> = models
            .iter()
            .filter(|m| m.float.family == *family)
            .map(|m| {
                let c = count_config(&m.config);
                (c.macs_millions(), m.float.top1, c.params_millions())
            })
            .collect();
        chart
            .draw_series(
                points.iter().map(|&(x, y, p)| {
                    marker::<DB, _>(i, (x, y), (3.0 + 4.0 * p.sqrt()) as i32, style)
                }),
            )
            .map_err(|e| e.to_string())?
            .label(family.to_string())
            .legend(move |(x, y)| marker::<DB, _>(i, (x, y), 5, style));
    }
    draw_legend(&mut chart, SeriesLabelPosition::LowerRight)
}

/// The series legend every plot draws: framed, on a translucent white box.
fn draw_legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> PlotResult {
    chart
        .configure_series_labels()
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .position(position)
        .draw()
        .map_err(|e| e.to_string())
}

fn top1_of(model: &str) -> Option<f64> {
    model
        .parse::<ModelConfig>()
        .ok()
        .and_then(|c| published::lookup(&c))
        .map(|p| p.float.top1)
}

fn latency_vs_top1<DB: DrawingBackend + 'static>(
    root: &DrawingArea<DB, Shift>,
    device: &str,
    rows: &[&SummaryRow],
) -> PlotResult {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let points: Vec<(&str, &str, f64, f64)> = rows
        .iter()
        .filter_map(|r| {
            Some((
                r.model.as_str(),
                r.backend.as_str(),
                r.p50_ms?,
                top1_of(&r.model)?,
            ))
        })
        .collect();
    let (lo, hi) = points
        .iter()
        .fold((f64::MAX, 0f64), |(l, h), p| (l.min(p.2), h.max(p.2)));
    let (lo, hi) = if points.is_empty() {
        (0.1, 10.0)
    } else {
        (lo / 1.5, hi * 1.5)
    };
    let mut chart = ChartBuilder::on(root)
        .caption(
            format!(
                "{device}: latency vs top-1 ({})",
                crate::cores_phrase(rows.iter().copied())
            ),
            (FONT, 22),
        )
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d((lo..hi).log_scale(), 55f64..78f64)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("median latency (ms, log scale)")
        .x_labels(8)
        .y_desc("top-1 accuracy (%, published)")
        .label_style((FONT, 15))
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, backend) in distinct(points.iter().map(|p| p.1)).iter().enumerate() {
        let style = ShapeStyle::from(&color(i)).stroke_width(2);
        chart
            .draw_series(
                points
                    .iter()
                    .filter(|p| p.1 == *backend)
                    .map(|p| marker::<DB, _>(i, (p.2, p.3), 6, style)),
            )
            .map_err(|e| e.to_string())?
            .label(backend.to_string())
            .legend(move |(x, y)| marker::<DB, _>(i, (x, y), 5, style));
    }
    // Pareto front: faster points that are also more accurate than everything faster.
    let mut sorted = points.clone();
    sorted.sort_by(|a, b| a.2.total_cmp(&b.2));
    let mut front: Vec<(&str, f64, f64)> = Vec::new();
    for p in sorted {
        if front.last().is_none_or(|f| p.3 > f.2) {
            front.push((p.0, p.2, p.3));
        }
    }
    chart
        .draw_series(LineSeries::new(
            front.iter().map(|f| (f.1, f.2)),
            BLACK.stroke_width(1),
        ))
        .map_err(|e| e.to_string())?
        .label("Pareto front")
        .legend(|(x, y)| PathElement::new(vec![(x - 8, y), (x + 8, y)], BLACK));
    chart
        .draw_series(
            front
                .iter()
                .map(|f| Text::new(short(f.0), (f.1 * 1.06, f.2 + 0.25), (FONT, 13))),
        )
        .map_err(|e| e.to_string())?;
    draw_legend(&mut chart, SeriesLabelPosition::LowerRight)
}

fn distribution<DB: DrawingBackend + 'static>(
    root: &DrawingArea<DB, Shift>,
    device: &str,
    runs: &[Run],
    rows: &[&SummaryRow],
) -> PlotResult {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let series: Vec<(String, Vec<f32>, usize)> = rows
        .iter()
        .filter_map(|r| {
            let samples = runs.iter().find_map(|run| run.samples.get(&r.key()))?;
            let backend_index = distinct(rows.iter().map(|x| x.backend.as_str()))
                .iter()
                .position(|b| *b == r.backend)?;
            Some((
                format!("{} × {}", short(&r.model), r.backend),
                samples.all().iter().map(|&ns| ns as f32 / 1e6).collect(),
                backend_index,
            ))
        })
        .collect();
    let labels: Vec<String> = series.iter().map(|s| s.0.clone()).collect();
    let (lo, hi) = series
        .iter()
        .flat_map(|s| s.1.iter().copied())
        .fold((f32::MAX, 0f32), |(l, h), v| (l.min(v), h.max(v)));
    let (lo, hi) = if series.is_empty() {
        (0.1, 10.0)
    } else {
        (lo / 1.3, hi * 1.3)
    };
    let n = series.len().max(1) as f32;
    let mut chart = ChartBuilder::on(root)
        .caption(
            format!("{device}: latency per pair (box: quartiles, whiskers: 1.5 IQR)"),
            (FONT, 20),
        )
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(250)
        .build_cartesian_2d((lo..hi).log_scale(), -0.5f32..n - 0.5)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("latency per inference (ms, log scale)")
        .x_labels(8)
        .y_labels(series.len().max(1))
        .y_label_formatter(&|y| {
            let i = y.round();
            if (y - i).abs() < 1e-3 && i >= 0.0 && (i as usize) < labels.len() {
                labels[i as usize].clone()
            } else {
                String::new()
            }
        })
        .disable_y_mesh()
        .label_style((FONT, 12))
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(series.iter().enumerate().map(|(i, (_, data, b))| {
            Boxplot::new_horizontal(i as f32, &Quartiles::new(data))
                .style(color(*b))
                .width(10)
        }))
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn speedup<DB: DrawingBackend + 'static>(
    root: &DrawingArea<DB, Shift>,
    device: &str,
    baseline: &str,
    rows: &[&SummaryRow],
) -> PlotResult {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let models = distinct(rows.iter().map(|r| r.model.as_str()));
    let backends = distinct(rows.iter().map(|r| r.backend.as_str()));
    let median = |m: &str, b: &str| {
        rows.iter()
            .find(|r| r.model == m && r.backend == b)
            .and_then(|r| r.p50_ms)
    };
    let bars: Vec<(usize, usize, f64)> = models
        .iter()
        .enumerate()
        .flat_map(|(mi, m)| {
            let base = median(m, baseline);
            backends
                .iter()
                .enumerate()
                .filter_map(move |(bi, b)| Some((mi, bi, base? / median(m, b)?)))
        })
        .collect();
    let top = bars.iter().map(|b| b.2).fold(1.0f64, f64::max) * 1.15;
    let n = models.len() as f64;
    let mut chart = ChartBuilder::on(root)
        .caption(
            format!("{device}: speed-up over {baseline} (median latency ratio)"),
            (FONT, 22),
        )
        .margin(15)
        .x_label_area_size(60)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5f64..n - 0.5, 0f64..top)
        .map_err(|e| e.to_string())?;
    let names: Vec<String> = models.iter().map(|m| short(m)).collect();
    chart
        .configure_mesh()
        .x_labels(models.len())
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
                names[i as usize].clone()
            } else {
                String::new()
            }
        })
        .disable_x_mesh()
        .y_desc(format!("speed-up (× faster than {baseline})"))
        .label_style((FONT, 13))
        .draw()
        .map_err(|e| e.to_string())?;
    let width = 0.8 / backends.len() as f64;
    for (bi, backend) in backends.iter().enumerate() {
        let fill = color(bi).filled();
        chart
            .draw_series(bars.iter().filter(|b| b.1 == bi).map(|&(mi, _, s)| {
                let x0 = mi as f64 - 0.4 + bi as f64 * width;
                Rectangle::new([(x0, 0.0), (x0 + width * 0.9, s)], fill)
            }))
            .map_err(|e| e.to_string())?
            .label(backend.to_string())
            .legend(move |(x, y)| Rectangle::new([(x - 6, y - 6), (x + 6, y + 6)], fill));
        chart
            .draw_series(bars.iter().filter(|b| b.1 == bi).map(|&(mi, _, s)| {
                let x0 = mi as f64 - 0.4 + bi as f64 * width;
                Text::new(format!("{s:.1}"), (x0, s + top * 0.01), (FONT, 11))
            }))
            .map_err(|e| e.to_string())?;
    }
    chart
        .draw_series(LineSeries::new(
            [(-0.5, 1.0), (n - 0.5, 1.0)],
            BLACK.stroke_width(1),
        ))
        .map_err(|e| e.to_string())?;
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight)
}
