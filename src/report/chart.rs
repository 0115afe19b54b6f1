//! The report's chart: the metric over the incident with markers at alert
//! start, approval, rollback complete and resolution, drawn with a bundled
//! font (Latin only, hence ASCII labels).

use std::sync::OnceLock;

use chrono::{DateTime, Utc};

use super::{Milestones, ReportError};
use crate::ports::Series;

/// Chart size in pixels (width, height).
pub const CHART_SIZE: (u32, u32) = (960, 480);

static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

fn font() -> Result<(), ReportError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, FONT)
            .is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(ReportError::Chart(
            "the bundled font assets/fonts/DejaVuSans.ttf is not a valid font".into(),
        ))
    }
}

/// Draws `series` over the incident with vertical markers at alert start,
/// approval, rollback complete and resolution, as a PNG of [`CHART_SIZE`].
///
/// # Errors
/// [`ReportError::Chart`] when drawing or encoding fails.
pub fn chart_png(series: &Series, m: &Milestones) -> Result<Vec<u8>, ReportError> {
    use plotters::prelude::*;

    font()?;
    let chart_err = |e: &dyn std::fmt::Display| ReportError::Chart(e.to_string());
    let (w, h) = CHART_SIZE;
    let mut rgb = vec![255u8; (w * h * 3) as usize];
    let markers: Vec<(&str, DateTime<Utc>, RGBColor)> = [
        ("alert", m.alert_start, RED),
        ("approved", m.approved, BLUE),
        ("rolled back", m.completed, MAGENTA),
        ("resolved", m.resolved, GREEN),
    ]
    .into_iter()
    .filter_map(|(l, at, c)| Some((l, at?, c)))
    .collect();
    {
        let mut times: Vec<DateTime<Utc>> = series.points.iter().map(|(t, _)| *t).collect();
        times.extend(markers.iter().map(|(_, t, _)| *t));
        let t0 = times.iter().min().copied().ok_or(ReportError::Chart(
            "the series has no points to draw".into(),
        ))?;
        let t1 = times.iter().max().copied().unwrap_or(t0);
        let t1 = if t1 > t0 {
            t1
        } else {
            t0 + chrono::Duration::minutes(1)
        };
        let mut values: Vec<f64> = series.points.iter().map(|(_, v)| *v).collect();
        values.extend(series.threshold);
        let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        // A tenth of the span, but at least 1 % of the values' size, so a
        // flat line of ratios (0.95) or percentages (95) both stay readable.
        let pad = ((hi - lo) * 0.1)
            .max(hi.abs().max(lo.abs()) * 0.01)
            .max(1e-9);
        let (lo, hi) = (lo - pad, hi + pad);

        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| chart_err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(ascii(&series.name), ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(t0..t1, lo..hi)
            .map_err(|e| chart_err(&e))?;
        chart
            .configure_mesh()
            .x_labels(8)
            .y_labels(8)
            .x_label_formatter(&|t: &DateTime<Utc>| t.format("%H:%M").to_string())
            .x_desc("UTC")
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(|e| chart_err(&e))?;
        if let Some(th) = series.threshold {
            chart
                .draw_series(LineSeries::new(
                    [(t0, th), (t1, th)],
                    ShapeStyle::from(&BLACK.mix(0.5)).stroke_width(1),
                ))
                .map_err(|e| chart_err(&e))?
                .label(format!("threshold {}", crate::verify::format_value(th)))
                .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK.mix(0.5)));
        }
        chart
            .draw_series(LineSeries::new(
                series.points.iter().copied(),
                ShapeStyle::from(&BLACK).stroke_width(2),
            ))
            .map_err(|e| chart_err(&e))?;
        for (label, at, color) in &markers {
            let style = ShapeStyle::from(color).stroke_width(2);
            chart
                .draw_series(LineSeries::new([(*at, lo), (*at, hi)], style))
                .map_err(|e| chart_err(&e))?
                .label(format!("{label} {}", at.format("%H:%M:%S")))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], style));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(|e| chart_err(&e))?;
        root.present().map_err(|e| chart_err(&e))?;
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(|e| chart_err(&e))?;
        writer.write_image_data(&rgb).map_err(|e| chart_err(&e))?;
    }
    Ok(out)
}

/// The bundled font covers Latin only; other characters become `?`.
fn ascii(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii() { c } else { '?' })
        .collect()
}
