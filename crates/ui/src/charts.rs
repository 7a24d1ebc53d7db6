//! Charts, drawn on the server as inline SVG: a risk sparkline, stacked bars over time, and an
//! hour-of-week heatmap. Colours come from classes in the stylesheet (the CSP allows no inline
//! style); every chart has an `aria-label`, and every bar and cell a `<title>` with its figures.

use std::fmt::Write;

use nhiwatch_model::Timestamp;

use crate::html::esc;

const HOUR: i64 = 3_600_000_000_000;
/// A day in nanoseconds.
pub(crate) const DAY: i64 = 24 * HOUR;

/// Equal time buckets over a period, aligned to their width (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Buckets {
    /// Start of the first bucket.
    pub start: i64,
    /// Width of each, in nanoseconds.
    pub width: i64,
    /// How many.
    pub count: usize,
}

impl Buckets {
    /// The narrowest of 1 h, 3 h, 6 h, 12 h, 1 d, 2 d, 7 d, 30 d that covers `[from, to)` in at
    /// most `max` buckets.
    pub fn over(from: Timestamp, to: Timestamp, max: usize) -> Buckets {
        let (from, to) = (from.0, to.0.max(from.0.saturating_add(1)));
        let max = max.max(1) as i64;
        for width in [
            HOUR,
            3 * HOUR,
            6 * HOUR,
            12 * HOUR,
            DAY,
            2 * DAY,
            7 * DAY,
            30 * DAY,
        ] {
            let start = from.saturating_sub(from.rem_euclid(width));
            let count = (to.saturating_sub(start).saturating_add(width - 1)) / width;
            if count <= max {
                return Buckets {
                    start,
                    width,
                    count: count as usize,
                };
            }
        }
        let span = i128::from(to) - i128::from(from);
        let width = i64::try_from(span / i128::from(max) + 1).unwrap_or(i64::MAX);
        Buckets {
            start: from,
            width,
            count: max as usize,
        }
    }

    /// The bucket of `time`, if it falls in the period.
    pub fn index(&self, time: Timestamp) -> Option<usize> {
        let offset = i128::from(time.0) - i128::from(self.start);
        let i = usize::try_from(offset.div_euclid(i128::from(self.width))).ok()?;
        (i < self.count).then_some(i)
    }

    /// The start of bucket `i`, as text: a date, or a date and hour.
    pub fn label(&self, i: usize) -> String {
        let at = self.width.saturating_mul(i as i64);
        let text = Timestamp(self.start.saturating_add(at)).to_string();
        let cut = if self.width % DAY == 0 { 10 } else { 16 };
        text.get(..cut).unwrap_or(&text).replace('T', " ")
    }

    /// The bucket width in words.
    pub fn width_text(&self) -> String {
        if self.width % DAY == 0 {
            format!("{} d", self.width / DAY)
        } else if self.width % HOUR == 0 {
            format!("{} h", self.width / HOUR)
        } else {
            format!("{} min", self.width / 60_000_000_000)
        }
    }
}

/// One series of a stacked chart: its name and its colour class.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Series<'a> {
    pub name: &'a str,
    pub class: &'a str,
}

/// Bars over time, one stacked segment per series; `values[bucket][series]`. A legend and the
/// scale follow as HTML.
pub(crate) fn stacked_bars(
    out: &mut String,
    label: &str,
    buckets: &Buckets,
    series: &[Series<'_>],
    values: &[Vec<u64>],
) {
    const HEIGHT: f64 = 100.0;
    let width = buckets.count.max(1) * 10;
    let max = values
        .iter()
        .map(|v| v.iter().sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let _ = write!(
        out,
        r#"<figure class="chart"><svg class="bars" viewBox="0 0 {width} {HEIGHT}" preserveAspectRatio="none" role="img" aria-label="{}">"#,
        esc(label)
    );
    for (i, bucket) in values.iter().enumerate().take(buckets.count) {
        let mut y = HEIGHT;
        for (value, s) in bucket.iter().zip(series) {
            if *value == 0 {
                continue;
            }
            let h = *value as f64 / max as f64 * HEIGHT;
            y -= h;
            let _ = write!(
                out,
                r#"<rect class="{}" x="{}" y="{y:.2}" width="8" height="{h:.2}"><title>{}: {} {}</title></rect>"#,
                s.class,
                i * 10 + 1,
                esc(&buckets.label(i)),
                value,
                esc(s.name)
            );
        }
    }
    let _ = write!(
        out,
        r#"</svg><figcaption><span class="scale">{} to {} · bars of {} · tallest {max}</span>"#,
        esc(&buckets.label(0)),
        esc(&buckets.label(buckets.count.saturating_sub(1))),
        buckets.width_text()
    );
    legend(out, series, values);
    out.push_str("</figcaption></figure>");
}

/// The legend of a stacked chart, with each series' total; series with nothing are left out.
fn legend(out: &mut String, series: &[Series<'_>], values: &[Vec<u64>]) {
    out.push_str(r#"<ul class="legend">"#);
    for (n, s) in series.iter().enumerate() {
        let total: u64 = values.iter().filter_map(|v| v.get(n)).sum();
        if total > 0 {
            let _ = write!(
                out,
                r#"<li><span class="sw {}"></span>{} <b>{total}</b></li>"#,
                s.class,
                esc(s.name)
            );
        }
    }
    out.push_str("</ul>");
}

/// A risk sparkline over `[from, to)`: risk holds its value until the next point.
pub(crate) fn sparkline(
    out: &mut String,
    label: &str,
    points: &[(Timestamp, u8)],
    from: Timestamp,
    to: Timestamp,
) {
    let span = to.0.saturating_sub(from.0).max(1) as f64;
    let x = |t: Timestamp| (t.0.saturating_sub(from.0) as f64 / span * 100.0).clamp(0.0, 100.0);
    let y = |risk: u8| 19.0 - f64::from(risk.min(100)) * 0.18;
    let _ = write!(
        out,
        r#"<svg class="spark" viewBox="0 0 100 20" preserveAspectRatio="none" role="img" aria-label="{}"><polyline points="0,{:.1}"#,
        esc(label),
        y(0)
    );
    let mut last = 0;
    for &(time, risk) in points {
        let at = x(time);
        let _ = write!(out, " {at:.2},{:.1} {at:.2},{:.1}", y(last), y(risk));
        last = risk;
    }
    let _ = write!(out, r#" 100,{:.1}"/></svg>"#, y(last));
}

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// A 7 × 24 heatmap of events per hour of the week (Monday 00:00 UTC first). Cells in
/// `flagged` are outlined: activity in hours the baseline says are quiet.
pub(crate) fn heatmap(out: &mut String, label: &str, counts: &[u64], flagged: &[bool]) {
    let max = counts.iter().copied().max().unwrap_or(0);
    let _ = write!(
        out,
        r#"<svg class="heat" viewBox="0 0 274 84" role="img" aria-label="{}">"#,
        esc(label)
    );
    for (d, day) in DAYS.iter().enumerate() {
        let _ = write!(
            out,
            r#"<text x="0" y="{}" class="axis">{day}</text>"#,
            d * 11 + 9
        );
    }
    for h in (0..24).step_by(3) {
        let _ = write!(
            out,
            r#"<text x="{}" y="83" class="axis">{h:02}</text>"#,
            26 + h * 10
        );
    }
    for (at, &count) in counts.iter().enumerate().take(168) {
        let (d, h) = (at / 24, at % 24);
        let level = heat_level(count, max);
        let off = flagged.get(at).copied().unwrap_or(false);
        let _ = write!(
            out,
            r#"<rect class="h{level}{}" x="{}" y="{}" width="9" height="10"><title>{} {h:02}:00 UTC: {count} events{}</title></rect>"#,
            if off { " off" } else { "" },
            26 + h * 10,
            d * 11,
            DAYS[d],
            if off {
                ", in an hour the baseline says is quiet"
            } else {
                ""
            }
        );
    }
    out.push_str("</svg>");
}

/// 0 for nothing, then 1-4 on a log scale up to `max`.
fn heat_level(count: u64, max: u64) -> u8 {
    if count == 0 || max == 0 {
        return 0;
    }
    let share = ((count as f64).ln_1p() / (max as f64).ln_1p()).clamp(0.0, 1.0);
    1 + (share * 3.0).round() as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).unwrap()
    }

    #[test]
    fn buckets_are_aligned_and_cover_the_period() {
        let b = Buckets::over(t("2026-03-02T10:30:00Z"), t("2026-03-14T00:00:00Z"), 60);
        assert_eq!(b.width, 6 * HOUR);
        assert_eq!(b.start, t("2026-03-02T06:00:00Z").0);
        assert_eq!(b.index(t("2026-03-02T10:30:00Z")), Some(0));
        assert_eq!(b.index(t("2026-03-13T23:59:59Z")), Some(b.count - 1));
        assert_eq!(b.index(t("2026-03-14T00:00:00Z")), None);
        assert_eq!(b.index(t("2026-03-01T00:00:00Z")), None);
        assert_eq!(b.label(0), "2026-03-02 06:00");
        let days = Buckets::over(t("2026-01-01T00:00:00Z"), t("2026-03-01T00:00:00Z"), 60);
        assert_eq!((days.width, days.count), (DAY, 59));
        assert_eq!(days.label(1), "2026-01-02");
        assert_eq!(days.width_text(), "1 d");
        let empty = Buckets::over(t("2026-01-01T00:00:00Z"), t("2026-01-01T00:00:00Z"), 10);
        assert_eq!(empty.count, 1);
        let all = Buckets::over(Timestamp(i64::MIN), Timestamp(i64::MAX), 10);
        assert_eq!(all.count, 10);
        assert_eq!(all.index(Timestamp(i64::MAX - 1)), Some(9));
        let mut out = String::new();
        sparkline(
            &mut out,
            "x",
            &[(Timestamp(0), 5)],
            Timestamp(i64::MIN),
            Timestamp(i64::MAX),
        );
    }

    #[test]
    fn stacked_bars_scale_to_the_tallest_and_escape_names() {
        let buckets = Buckets::over(t("2026-03-02T00:00:00Z"), t("2026-03-04T00:00:00Z"), 2);
        let series = [
            Series {
                name: "high",
                class: "s-high",
            },
            Series {
                name: "<low>",
                class: "s-low",
            },
        ];
        let mut out = String::new();
        stacked_bars(
            &mut out,
            "findings <by> severity",
            &buckets,
            &series,
            &[vec![1, 3], vec![0, 0]],
        );
        assert!(out.contains(r#"aria-label="findings &lt;by&gt; severity""#));
        assert!(out.contains(r#"<rect class="s-low" x="1" y="0.00" width="8" height="75.00">"#));
        assert!(out.contains(r#"<rect class="s-high" x="1" y="75.00" width="8" height="25.00">"#));
        assert!(out.contains("&lt;low&gt; <b>3</b>"));
        assert_eq!(out.matches("<rect").count(), 2);
    }

    #[test]
    fn sparklines_step_through_their_points() {
        let mut out = String::new();
        let from = Timestamp(0);
        sparkline(
            &mut out,
            "risk",
            &[(Timestamp(50), 100)],
            from,
            Timestamp(100),
        );
        assert!(
            out.contains(r#"points="0,19.0 50.00,19.0 50.00,1.0 100,1.0""#),
            "{out}"
        );
    }

    #[test]
    fn heatmaps_mark_quiet_hours_and_scale_by_log() {
        let mut counts = vec![0u64; 168];
        counts[0] = 1;
        counts[30] = 100;
        let mut flagged = vec![false; 168];
        flagged[0] = true;
        let mut out = String::new();
        heatmap(&mut out, "hours", &counts, &flagged);
        assert_eq!(out.matches("<rect").count(), 168);
        assert!(out.contains(r#"class="h1 off" x="26" y="0""#), "{out}");
        assert!(out.contains(r#"class="h4" x="86" y="11""#));
        assert!(out.contains("Tue 06:00 UTC: 100 events"));
        assert_eq!(heat_level(0, 5), 0);
    }
}
