//! PNG plots (plotters, bitmap backend, an embedded DejaVu Sans so no system fonts are needed).
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

static FONT: Once = Once::new();

fn register_font() {
    FONT.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, include_bytes!("../../assets/DejaVuSans.ttf"));
    });
}

/// A named series of (x, y) points.
pub type Series = (String, Vec<(f64, f64)>);

/// The smallest and largest finite value, or `None` when there is none.
fn finite_bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.filter(|v| v.is_finite()).fold(None, |b, v| match b {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

/// An axis range over the finite values with 5% padding; (0, 1) when there is none. One value
/// (every run evaluated at the same epoch only) gets ±10% of itself, ±1 around 0: a range of
/// nearly no width would label every tick alike.
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let Some((lo, hi)) = finite_bounds(values) else {
        return (0.0, 1.0);
    };
    let pad = if hi > lo {
        (hi - lo) * 0.05
    } else if lo != 0.0 {
        lo.abs() * 0.1
    } else {
        1.0
    };
    (lo - pad, hi + pad)
}

/// The ten colours of matplotlib's `tab10`.
const COLOURS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Dash patterns (dash, gap in pixels) taken in turn once the colours are used up: solid, dashed,
/// dotted, dash-dot-like — so series 0, 10, 20 and 30 share a colour but never a line.
const DASHES: [Option<(i32, i32)>; 4] = [None, Some((10, 6)), Some((2, 4)), Some((16, 4))];

/// How series `i` is drawn: a colour and a dash pattern, distinct for the first 40 series.
fn line_style(i: usize) -> (RGBColor, Option<(i32, i32)>) {
    (COLOURS[i % COLOURS.len()], DASHES[(i / COLOURS.len()) % DASHES.len()])
}

fn color(i: usize) -> RGBColor {
    line_style(i).0
}

fn draw_err<E: std::fmt::Debug>(path: &Path) -> impl Fn(E) -> anyhow::Error + '_ {
    move |e| anyhow::anyhow!("{}: cannot draw plot: {e:?}", path.display())
}

type Chart<'a> = ChartContext<'a, BitMapBackend<'a>, Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>>;

/// Draws a `size` PNG at `path`: a white canvas handed to `draw`, written to a temporary file and
/// renamed, so a failed plot never leaves a partial file (nor its temporary one).
fn write_png(path: &Path, size: (u32, u32), draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> anyhow::Result<()>) -> anyhow::Result<()> {
    register_font();
    let tmp = path.with_extension("png.tmp.png");
    let drawn = (|| {
        let root = BitMapBackend::new(&tmp, size).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err(path))?;
        draw(&root)?;
        root.present().map_err(draw_err(path))
    })();
    if let Err(e) = drawn {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// A 900×600 PNG with a caption and labelled axes over the given ranges; `draw` adds the data.
fn plot(path: &Path, title: &str, x_label: &str, y_label: &str, x: (f64, f64), y: (f64, f64), draw: impl FnOnce(&mut Chart<'_>) -> anyhow::Result<()>) -> anyhow::Result<()> {
    write_png(path, (900, 600), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 24))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(x.0..x.1, y.0..y.1)
            .map_err(draw_err(path))?;
        chart.configure_mesh().x_desc(x_label).y_desc(y_label).label_style(("sans-serif", 15)).draw().map_err(draw_err(path))?;
        draw(&mut chart)
    })
}

/// Whether values are best read on a log axis: all positive and spanning more than two decades
/// (an unnormalised loss in thousands beside losses near 1 would flatten the latter to a line).
fn wants_log_axis(values: impl Iterator<Item = f64>) -> bool {
    matches!(finite_bounds(values), Some((lo, hi)) if lo > 0.0 && hi / lo > 100.0)
}

/// How a line plot's y axis is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum YScale {
    /// log10(y) when the values span more than two decades (all positive), else linear.
    Auto,
    /// Always log10(y); values ≤ 0 are left out.
    Log10,
    /// Always y.
    Linear,
}

/// Lines with markers, one per series, with a legend. When the values span more than two decades
/// (all positive), y is drawn as log10(y) and the axis says so.
pub fn line_plot(path: &Path, title: &str, x_label: &str, y_label: &str, series: &[Series]) -> anyhow::Result<()> {
    line_plot_scaled(path, title, x_label, y_label, series, YScale::Auto)
}

/// [`line_plot`] with the y axis's scale chosen by the caller.
pub fn line_plot_scaled(path: &Path, title: &str, x_label: &str, y_label: &str, series: &[Series], scale: YScale) -> anyhow::Result<()> {
    lines(path, title, x_label, y_label, series, scale, None)
}

/// [`line_plot`] with a vertical error bar of ± `sd[i][j]` at point j of series i (a linear axis).
/// Series i is drawn shifted right by `(i − (n−1)/2)` × 0.6% of the x span, so bars of series that
/// share an x (the same evaluation steps) stand side by side instead of on top of each other.
pub fn line_plot_with_error_bars(path: &Path, title: &str, x_label: &str, y_label: &str, series: &[Series], sd: &[Vec<f64>]) -> anyhow::Result<()> {
    anyhow::ensure!(sd.len() == series.len() && series.iter().zip(sd).all(|(s, e)| s.1.len() == e.len()), "{}: one error bar per point", path.display());
    let (x0, x1) = finite_bounds(series.iter().flat_map(|s| s.1.iter().map(|p| p.0))).unwrap_or((0.0, 1.0));
    let centre = (series.len() as f64 - 1.0) / 2.0;
    let dodged: Vec<Series> = series.iter().enumerate().map(|(i, (name, pts))| (name.clone(), pts.iter().map(|&(x, y)| (x + (i as f64 - centre) * 0.006 * (x1 - x0), y)).collect())).collect();
    lines(path, title, x_label, y_label, &dodged, YScale::Linear, Some(sd))
}

fn lines(path: &Path, title: &str, x_label: &str, y_label: &str, series: &[Series], scale: YScale, sd: Option<&[Vec<f64>]>) -> anyhow::Result<()> {
    let log = scale == YScale::Log10 || (scale == YScale::Auto && wants_log_axis(series.iter().flat_map(|s| s.1.iter().map(|p| p.1))));
    let logged: Vec<Series>;
    let (series, y_label) = if log {
        logged = series.iter().map(|(name, pts)| (name.clone(), pts.iter().map(|&(x, y)| (x, y.log10())).collect())).collect();
        (logged.as_slice(), format!("log10 {y_label}"))
    } else {
        (series, y_label.to_string())
    };
    let x = range(series.iter().flat_map(|s| s.1.iter().map(|p| p.0)));
    // the bars' ends are inside the y range too
    let bar = |i: usize, j: usize| sd.map_or(0.0, |sd| sd[i][j].abs());
    let y = range(series.iter().enumerate().flat_map(|(i, s)| s.1.iter().enumerate().flat_map(move |(j, p)| [p.1 - bar(i, j), p.1 + bar(i, j)])));
    plot(path, title, x_label, &y_label, x, y, |chart| {
        for (i, (name, pts)) in series.iter().enumerate() {
            let (c, dash) = line_style(i);
            if sd.is_some() {
                let bars = pts.iter().enumerate().filter(|(j, p)| p.0.is_finite() && p.1.is_finite() && bar(i, *j).is_finite());
                chart.draw_series(bars.map(|(j, p)| ErrorBar::new_vertical(p.0, p.1 - bar(i, j), p.1, p.1 + bar(i, j), c.stroke_width(1), 8))).map_err(draw_err(path))?;
            }
            let pts: Vec<(f64, f64)> = pts.iter().copied().filter(|p| p.0.is_finite() && p.1.is_finite()).collect();
            if pts.is_empty() {
                // nothing to draw (a run that logged no point yet): no legend entry either; the
                // other series keep their colours, which follow the series' index
                continue;
            }
            match dash {
                None => {
                    chart
                        .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                        .map_err(draw_err(path))?
                        .label(name.as_str())
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 30, y)], c.stroke_width(2)));
                }
                Some((on, off)) => {
                    chart
                        .draw_series(DashedLineSeries::new(pts.clone(), on, off, c.stroke_width(2)))
                        .map_err(draw_err(path))?
                        .label(name.as_str())
                        .legend(move |(x, y)| DashedPathElement::new(vec![(x, y), (x + 30, y)], on, off, c.stroke_width(2)));
                }
            }
            if pts.len() <= 60 {
                chart.draw_series(pts.iter().map(|p| Circle::new(*p, 3, c.filled()))).map_err(draw_err(path))?;
            }
        }
        let at = legend_position(series, &bar, x, y);
        chart.configure_series_labels().position(at).background_style(WHITE.mix(0.8)).border_style(BLACK).label_font(("sans-serif", 14)).draw().map_err(draw_err(path))?;
        Ok(())
    })
}

/// The legend's place in a [`plot`]: where its box covers the fewest points of the drawn lines
/// (each segment sampled, and each error bar's span), among the four corners and the middles of
/// the four sides, first in that order on a tie. `bar(i, j)` is the half-height of point j of
/// series i's error bar (0 for none); `x` and `y` are the axis ranges. The box's size
/// follows from the number of series and the longest name, at the legend's 14-px font in the
/// 900×600 frame (about 800×490 px of plotting area).
fn legend_position(series: &[Series], bar: &dyn Fn(usize, usize) -> f64, x: (f64, f64), y: (f64, f64)) -> SeriesLabelPosition {
    let longest = series.iter().map(|s| s.0.chars().count()).max().unwrap_or(0) as f64;
    let (w, h) = ((30.0 + 12.0 + 7.5 * longest + 20.0) / 800.0, (20.0 * series.len() as f64 + 12.0) / 490.0);
    let (mx, my) = (12.0 / 800.0, 12.0 / 490.0);
    // in fractions of the axes, (0, 0) at the lower left
    let fx = |v: f64| (v - x.0) / (x.1 - x.0).max(1e-12);
    let fy = |v: f64| (v - y.0) / (y.1 - y.0).max(1e-12);
    let mut samples: Vec<(f64, f64)> = Vec::new();
    for (i, (_, pts)) in series.iter().enumerate() {
        let finite: Vec<(usize, (f64, f64))> = pts.iter().copied().enumerate().filter(|(_, p)| p.0.is_finite() && p.1.is_finite()).collect();
        for pair in finite.windows(2) {
            let ((_, a), (_, b)) = (pair[0], pair[1]);
            samples.extend((0..=40).map(|k| k as f64 / 40.0).map(|t| (fx(a.0 + t * (b.0 - a.0)), fy(a.1 + t * (b.1 - a.1)))));
        }
        for &(j, p) in &finite {
            samples.push((fx(p.0), fy(p.1)));
            let sd = bar(i, j);
            if sd > 0.0 && sd.is_finite() {
                samples.extend((0..=10).map(|k| (fx(p.0), fy(p.1 - sd + 2.0 * sd * k as f64 / 10.0))));
            }
        }
    }
    use SeriesLabelPosition::*;
    let boxes = [
        (UpperRight, (1.0 - mx - w, 1.0 - mx), (1.0 - my - h, 1.0 - my)),
        (UpperLeft, (mx, mx + w), (1.0 - my - h, 1.0 - my)),
        (LowerRight, (1.0 - mx - w, 1.0 - mx), (my, my + h)),
        (LowerLeft, (mx, mx + w), (my, my + h)),
        (MiddleRight, (1.0 - mx - w, 1.0 - mx), (0.5 - h / 2.0, 0.5 + h / 2.0)),
        (MiddleLeft, (mx, mx + w), (0.5 - h / 2.0, 0.5 + h / 2.0)),
        (UpperMiddle, (0.5 - w / 2.0, 0.5 + w / 2.0), (1.0 - my - h, 1.0 - my)),
        (LowerMiddle, (0.5 - w / 2.0, 0.5 + w / 2.0), (my, my + h)),
    ];
    let covered = |bx: (f64, f64), by: (f64, f64)| samples.iter().filter(|p| p.0 >= bx.0 && p.0 <= bx.1 && p.1 >= by.0 && p.1 <= by.1).count();
    // the first of the least covered
    boxes.into_iter().min_by_key(|(_, bx, by)| covered(*bx, *by)).map(|b| b.0).unwrap_or(UpperRight)
}

/// Labelled points (one per run).
pub fn scatter_plot(path: &Path, title: &str, x_label: &str, y_label: &str, points: &[(String, f64, f64)]) -> anyhow::Result<()> {
    let (x0, x1) = range(points.iter().map(|p| p.1));
    // room on the right for the labels
    let x = (x0, x1 + (x1 - x0) * 0.2);
    let y = range(points.iter().map(|p| p.2));
    plot(path, title, x_label, y_label, x, y, |chart| {
        for (i, (name, px, py)) in points.iter().enumerate() {
            if !(px.is_finite() && py.is_finite()) {
                continue;
            }
            let c = color(i);
            let marker = EmptyElement::at((*px, *py)) + Circle::new((0, 0), 6, c.filled()) + Text::new(name.clone(), (9, -16), ("sans-serif", 14).into_font().color(&c));
            chart.draw_series(std::iter::once(marker)).map_err(draw_err(path))?;
        }
        Ok(())
    })
}

/// Points of several networks side by side, one panel each (`(title, [(x, y, group)])`, up to
/// three panels a row), coloured by group (a class: `groups[g]`, or grey for a negative group: no
/// label), on one shared, symmetric scale so that a network whose points spread less looks
/// smaller: PCA pictures of embeddings, where a collapsed network is a dot. Up to `max_points`
/// points a panel, evenly strided; the groups' legend in the first panel when there are at most
/// 20.
pub fn scatter_panels(path: &Path, title: &str, panels: &[(String, Vec<(f64, f64, i64)>)], groups: &[String], max_points: usize) -> anyhow::Result<()> {
    anyhow::ensure!(!panels.is_empty(), "{}: no panels to draw", path.display());
    let cols = panels.len().min(3);
    let rows = panels.len().div_ceil(cols);
    let reach = panels.iter().flat_map(|p| p.1.iter().flat_map(|q| [q.0.abs(), q.1.abs()])).filter(|v| v.is_finite()).fold(0.0f64, f64::max).max(1e-6) * 1.05;
    write_png(path, (520 * cols as u32, 520 * rows as u32 + 50), |root| {
        let (top, body) = root.split_vertically(50);
        top.titled(title, ("sans-serif", 24)).map_err(draw_err(path))?;
        for (i, (area, (name, pts))) in body.split_evenly((rows, cols)).iter().zip(panels).enumerate() {
            let mut chart = ChartBuilder::on(area)
                .caption(name, ("sans-serif", 16))
                .margin(12)
                .x_label_area_size(35)
                .y_label_area_size(50)
                .build_cartesian_2d(-reach..reach, -reach..reach)
                .map_err(draw_err(path))?;
            chart.configure_mesh().x_desc("PC 1").y_desc("PC 2").label_style(("sans-serif", 13)).draw().map_err(draw_err(path))?;
            let stride = pts.len().div_ceil(max_points.max(1)).max(1);
            let shown: Vec<&(f64, f64, i64)> = pts.iter().step_by(stride).filter(|p| p.0.is_finite() && p.1.is_finite()).collect();
            let mut present: Vec<i64> = shown.iter().map(|p| p.2).collect();
            present.sort_unstable();
            present.dedup();
            for g in present {
                let c = if g < 0 { RGBColor(127, 127, 127) } else { color(g as usize) };
                let drawn = chart.draw_series(shown.iter().filter(|p| p.2 == g).map(|p| Circle::new((p.0, p.1), 2, c.mix(0.6).filled()))).map_err(draw_err(path))?;
                if i == 0 && groups.len() <= 20 {
                    let label = if g < 0 { "no label".to_string() } else { groups.get(g as usize).cloned().unwrap_or_else(|| g.to_string()) };
                    drawn.label(label).legend(move |(x, y)| Circle::new((x + 10, y), 4, c.filled()));
                }
            }
            if i == 0 && groups.len() <= 20 {
                // the corner whose legend box (12-px labels in a panel of about 460 px) covers the fewest points
                let longest = groups.iter().map(|g| g.chars().count()).max().unwrap_or(8) as f64;
                let (w, h) = ((45.0 + 6.5 * longest) / 460.0 * 2.0 * reach, (17.0 * groups.len() as f64 + 12.0) / 450.0 * 2.0 * reach);
                let corners = [(SeriesLabelPosition::UpperRight, 1.0, 1.0), (SeriesLabelPosition::UpperLeft, -1.0, 1.0), (SeriesLabelPosition::LowerRight, 1.0, -1.0), (SeriesLabelPosition::LowerLeft, -1.0, -1.0)];
                let inside = |sx: f64, sy: f64| shown.iter().filter(|p| p.0 * sx >= reach - w && p.1 * sy >= reach - h).count();
                let at = corners.into_iter().min_by_key(|c| inside(c.1, c.2)).map(|c| c.0).unwrap_or(SeriesLabelPosition::UpperRight);
                chart.configure_series_labels().position(at).background_style(WHITE.mix(0.8)).border_style(BLACK).label_font(("sans-serif", 12)).draw().map_err(draw_err(path))?;
            }
        }
        Ok(())
    })
}

/// One row of an [`interval_plot`]: a label, a mean with its 95% interval (none for one value),
/// the single values it summarises, and the colour group (e.g. the metric).
#[derive(Clone, Debug)]
pub struct IntervalRow {
    pub label: String,
    pub mean: f64,
    pub ci: Option<(f64, f64)>,
    pub values: Vec<f64>,
    pub group: usize,
}

/// The x range of an [`interval_plot`]: every finite mean, interval end and value, and 0 (the
/// line of no difference), with 5% padding.
fn interval_range(rows: &[IntervalRow]) -> (f64, f64) {
    range(rows.iter().flat_map(|r| [r.mean].into_iter().chain(r.ci.into_iter().flat_map(|c| [c.0, c.1])).chain(r.values.iter().copied())).chain(std::iter::once(0.0)))
}

/// A forest plot: one row per [`IntervalRow`], top to bottom, its mean a filled dot, its 95%
/// interval a horizontal bar in its group's colour, its values small black circles, and a dashed vertical line at 0 —
/// an interval that does not cross it is a difference the seeds establish. `groups` names the
/// colour groups for the legend.
pub fn interval_plot(path: &Path, title: &str, x_label: &str, rows: &[IntervalRow], groups: &[String]) -> anyhow::Result<()> {
    anyhow::ensure!(!rows.is_empty(), "{}: no rows to draw", path.display());
    let (x0, x1) = interval_range(rows);
    let n = rows.len();
    let label_width = rows.iter().map(|r| r.label.chars().count()).max().unwrap_or(8) as u32 * 8 + 20;
    let height = (90 + 28 * n as u32).max(300);
    // row i at y = n − 1 − i: the first row on top
    let (y0, y1) = (-0.6, n as f64 - 0.4);
    write_png(path, (label_width + 700, height), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(label_width)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(draw_err(path))?;
        let label_of = |y: &f64| {
            let i = n as f64 - 1.0 - y.round();
            if (y - y.round()).abs() < 1e-6 && i >= 0.0 && (i as usize) < n { rows[i as usize].label.clone() } else { String::new() }
        };
        let signed = |x: &f64| if x.abs() < 1e-9 * (x1 - x0) { "0".to_string() } else { format!("{x:+.3}") };
        chart.configure_mesh().x_desc(x_label).x_label_formatter(&signed).y_labels(n.min(60) * 2 + 1).y_label_formatter(&label_of).disable_y_mesh().label_style(("sans-serif", 13)).draw().map_err(draw_err(path))?;
        chart.draw_series(std::iter::once(DashedPathElement::new(vec![(0.0, y0), (0.0, y1)], 6, 4, BLACK.stroke_width(1)))).map_err(draw_err(path))?;
        let mut labelled = vec![false; groups.len().max(1)];
        for (i, r) in rows.iter().enumerate() {
            let y = (n - 1 - i) as f64;
            let c = color(r.group);
            if let Some((lo, hi)) = r.ci.filter(|c| c.0.is_finite() && c.1.is_finite()) {
                chart.draw_series(std::iter::once(PathElement::new(vec![(lo, y), (hi, y)], c.stroke_width(3)))).map_err(draw_err(path))?;
            }
            // the seeds in black over the bar, so they show on it
            chart.draw_series(r.values.iter().filter(|v| v.is_finite()).map(|v| Circle::new((*v, y), 4, BLACK.stroke_width(1)))).map_err(draw_err(path))?;
            if r.mean.is_finite() {
                let drawn = chart.draw_series(std::iter::once(Circle::new((r.mean, y), 6, c.filled()))).map_err(draw_err(path))?;
                if let Some(name) = groups.get(r.group).filter(|_| !labelled[r.group]) {
                    labelled[r.group] = true;
                    drawn.label(name.clone()).legend(move |(x, y)| Circle::new((x + 10, y), 5, c.filled()));
                }
            }
        }
        if labelled.iter().any(|l| *l) {
            chart.configure_series_labels().position(SeriesLabelPosition::LowerRight).background_style(WHITE.mix(0.8)).border_style(BLACK).label_font(("sans-serif", 13)).draw().map_err(draw_err(path))?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_value_gets_an_axis_of_some_width() {
        assert_eq!(range([8.0, 8.0].into_iter()), (7.2, 8.8));
        assert_eq!(range([-0.5].into_iter()), (-0.55, -0.45));
        assert_eq!(range([0.0, f64::NAN].into_iter()), (-1.0, 1.0));
        assert_eq!(range([1.0, 3.0].into_iter()), (0.9, 3.1));
        assert_eq!(range([f64::NAN].into_iter()), (0.0, 1.0));
    }

    #[test]
    fn a_log_axis_only_for_positive_values_over_two_decades() {
        assert!(wants_log_axis([0.9, 75.0, 37_549.0].into_iter()));
        assert!(!wants_log_axis([0.5, 0.9, 40.0].into_iter()), "under two decades");
        assert!(!wants_log_axis([-1.9, 0.01, 3.0].into_iter()), "a negative value (uniformity)");
        assert!(!wants_log_axis([0.0, 0.5, 100.0].into_iter()), "a zero");
        assert!(!wants_log_axis([f64::NAN, 1.0].into_iter()));
        assert!(wants_log_axis([f64::NAN, 1e-4, 1.0].into_iter()), "non-finite values are skipped");
    }

    fn at(series: &[Series]) -> SeriesLabelPosition {
        let x = range(series.iter().flat_map(|s| s.1.iter().map(|p| p.0)));
        let y = range(series.iter().flat_map(|s| s.1.iter().map(|p| p.1)));
        legend_position(series, &|_, _| 0.0, x, y)
    }

    fn named(v: &SeriesLabelPosition) -> String {
        format!("{v:?}")
    }

    #[test]
    fn the_legend_goes_where_the_lines_are_not() {
        let line = |name: &str, pts: &[(f64, f64)]| (name.to_string(), pts.to_vec());
        // a rising diagonal covers the lower left and the upper right: the upper left is free
        assert_eq!(named(&at(&[line("a", &[(0.0, 0.0), (10.0, 1.0)])])), "UpperLeft");
        // a falling one: the upper right is free (first in the order)
        assert_eq!(named(&at(&[line("a", &[(0.0, 1.0), (10.0, 0.0)])])), "UpperRight");
        // flat lines along the top and the bottom leave the middle of a side
        assert_eq!(named(&at(&[line("top", &[(0.0, 1.0), (10.0, 1.0)]), line("bottom", &[(0.0, 0.0), (10.0, 0.0)])])), "MiddleRight");
        // the study figure's shape: lines rising on the right, a low one along the bottom, all
        // starting together on the left middle; the upper left holds nothing
        let s = [
            line("batch=32 (3 seeds)", &[(0.0, 0.255), (92.0, 0.21), (184.0, 0.223), (276.0, 0.223)]),
            line("batch=256 (3 seeds)", &[(0.0, 0.255), (92.0, 0.242), (184.0, 0.266), (276.0, 0.277)]),
        ];
        let pos = named(&at(&s));
        assert!(pos != "MiddleRight" && pos != "UpperRight", "{pos}");
    }

    #[test]
    fn a_forest_plot_puts_the_first_row_on_top_and_each_interval_where_its_values_are() {
        let row = |mean: f64, group: usize| IntervalRow { label: format!("row {group}"), mean, ci: Some((mean - 0.5, mean + 0.5)), values: vec![mean - 0.3, mean + 0.2], group };
        let rows = [row(1.0, 0), row(-1.0, 1)];
        // 0 and every interval end inside the range
        let (lo, hi) = interval_range(&[IntervalRow { values: vec![], ci: None, ..row(2.0, 0) }]);
        assert!(lo < 0.0 && hi > 2.0, "({lo}, {hi})");
        let (lo, hi) = interval_range(&rows);
        assert!(lo < -1.5 && hi > 1.5 && lo > -1.8 && hi < 1.8, "({lo}, {hi})");
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("forest.png");
        interval_plot(&png, "t", "Δ", &rows, &[]).unwrap();
        let img = image::open(&png).unwrap().to_rgb8();
        let pixels = |c: RGBColor| -> Vec<(u32, u32)> { img.enumerate_pixels().filter(|p| p.2 .0 == [c.0, c.1, c.2]).map(|p| (p.0, p.1)).collect() };
        let (first, second) = (pixels(COLOURS[0]), pixels(COLOURS[1]));
        assert!(first.len() > 50 && second.len() > 50, "{} / {} pixels drawn", first.len(), second.len());
        // the positive interval right of the negative one, and the first row above the second
        assert!(first.iter().map(|p| p.0).min() > second.iter().map(|p| p.0).max(), "x: the first row's interval is not right of the second's");
        assert!(first.iter().map(|p| p.1).max() < second.iter().map(|p| p.1).min(), "y: the first row is not on top");
    }

    #[test]
    fn series_without_points_are_left_out_and_still_draw() {
        let dir = tempfile::tempdir().unwrap();
        let mixed = vec![("unfinished".to_string(), vec![]), ("a".to_string(), vec![(0.0, 1.0), (10.0, 0.5)])];
        line_plot(&dir.path().join("mixed.png"), "t", "step", "loss", &mixed).unwrap();
        let empty = vec![("unfinished".to_string(), vec![])];
        line_plot(&dir.path().join("empty.png"), "t", "step", "loss", &empty).unwrap();
        assert!(dir.path().join("mixed.png").exists() && dir.path().join("empty.png").exists());
    }

    #[test]
    fn a_plot_that_fails_to_draw_leaves_no_file_and_keeps_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("p.png");
        let failed = plot(&png, "t", "x", "y", (0.0, 1.0), (0.0, 1.0), |_| anyhow::bail!("no data"));
        assert!(failed.is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "neither the plot nor its temporary file is left");
        plot(&png, "t", "x", "y", (0.0, 1.0), (0.0, 1.0), |_| Ok(())).unwrap();
        let before = std::fs::read(&png).unwrap();
        assert!(plot(&png, "other", "x", "y", (0.0, 1.0), (0.0, 1.0), |_| anyhow::bail!("no data")).is_err());
        assert_eq!(std::fs::read(&png).unwrap(), before, "a failed redraw keeps the last good plot");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn scatter_panels_lay_out_a_grid_on_one_scale() {
        let dir = tempfile::tempdir().unwrap();
        let spread: Vec<(f64, f64, i64)> = (0..200).map(|i| ((i as f64 * 0.37).sin() * 0.5, (i as f64 * 0.11).cos() * 0.3, (i % 3) as i64)).collect();
        let dot: Vec<(f64, f64, i64)> = (0..200).map(|i| (1e-4 * i as f64, 0.0, -1)).collect();
        let panels = vec![("a".to_string(), spread.clone()), ("b".to_string(), dot), ("c".to_string(), spread.clone()), ("d".to_string(), vec![])];
        let png = dir.path().join("pca.png");
        scatter_panels(&png, "t", &panels, &["x".into(), "y".into(), "z".into()], 50).unwrap();
        // four panels: three a row, two rows, and the title band
        let (w, h) = image::image_dimensions(&png).unwrap();
        assert_eq!((w, h), (3 * 520, 2 * 520 + 50));
        scatter_panels(&png, "t", &panels[..1], &[], 50).unwrap();
        assert_eq!(image::image_dimensions(&png).unwrap(), (520, 570));
        assert!(scatter_panels(&png, "t", &[], &[], 50).is_err());
    }

    #[test]
    fn error_bars_count_as_drawn() {
        // a flat line across the middle leaves every corner free; a bar spanning the whole height
        // at its right end covers the right-hand corners too
        let s = vec![("a".to_string(), vec![(0.0, 0.5), (5.0, 0.5), (10.0, 0.5)])];
        let x = range([0.0, 10.0].into_iter());
        let y = range([0.0, 1.0].into_iter());
        let no_bars = legend_position(&s, &|_, _| 0.0, x, y);
        assert_eq!(named(&no_bars), "UpperRight");
        let tall = legend_position(&s, &|_, j| if j == 2 { 0.5 } else { 0.0 }, x, y);
        assert_eq!(named(&tall), "UpperLeft", "the bar at x = 10 spans the right side");
    }

    #[test]
    fn the_first_forty_series_are_told_apart() {
        for i in 0..40 {
            for j in 0..i {
                let (a, b) = (line_style(i), line_style(j));
                assert!((a.0 .0, a.0 .1, a.0 .2, a.1) != (b.0 .0, b.0 .1, b.0 .2, b.1), "series {j} and {i} are drawn alike");
            }
        }
    }
}
