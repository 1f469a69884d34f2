//! Server-rendered SVG bar charts (issue sparklines, events over time). The template draws
//! the rectangles; this computes their geometry from bucket counts.

use sea_orm::Value;

use super::error::WebError;
use super::format;
use super::sql;

/// One bar, in SVG user units.
#[derive(Debug, Clone)]
pub struct Bar {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
    /// Tooltip: `12 events, 2026-11-22 04:00 UTC`.
    pub title: String,
}

/// A bar chart ready to draw.
#[derive(Debug, Clone, Default)]
pub struct Chart {
    pub width: f64,
    pub height: f64,
    pub bars: Vec<Bar>,
    pub max: i64,
    pub total: i64,
    /// Labels under the chart (x, text).
    pub labels: Vec<(f64, String)>,
}

/// Lays out `counts` (oldest first) of buckets `bucket_ms` wide ending at `end_ms`.
pub fn layout(counts: &[i64], start_ms: i64, bucket_ms: i64, width: f64, height: f64) -> Chart {
    let n = counts.len().max(1) as f64;
    let max = counts.iter().copied().max().unwrap_or(0);
    let slot = width / n;
    let gap = if slot > 4.0 { 1.0 } else { 0.0 };
    let mut bars = Vec::with_capacity(counts.len());
    for (i, &c) in counts.iter().enumerate() {
        // Never fully flat: an empty bucket is a hairline, so the time axis is visible.
        let h = if max == 0 || c == 0 {
            1.0
        } else {
            (c as f64 / max as f64 * (height - 1.0)).max(2.0)
        };
        let t = start_ms + i as i64 * bucket_ms;
        let when = if bucket_ms >= 86_400_000 {
            format::datetime(t)[..10].to_string()
        } else {
            format::datetime(t)[..16].to_string() + " UTC"
        };
        bars.push(Bar {
            x: (i as f64 * slot * 100.0).round() / 100.0,
            y: ((height - h) * 100.0).round() / 100.0,
            w: ((slot - gap).max(0.5) * 100.0).round() / 100.0,
            h: (h * 100.0).round() / 100.0,
            title: format!("{c} event{}, {when}", if c == 1 { "" } else { "s" }),
        });
    }
    Chart {
        width,
        height,
        bars,
        max,
        total: counts.iter().sum(),
        labels: Vec::new(),
    }
}

/// Stored events per bucket for each issue in `issue_ids`: one indexed range query over
/// `events (issue_id, timestamp)`. Returns counts per issue, oldest bucket first.
pub async fn issue_buckets(
    db: &sea_orm::DatabaseConnection,
    issue_ids: &[i64],
    start_ms: i64,
    bucket_ms: i64,
    buckets: usize,
) -> Result<std::collections::HashMap<i64, Vec<i64>>, WebError> {
    let mut out: std::collections::HashMap<i64, Vec<i64>> =
        issue_ids.iter().map(|id| (*id, vec![0; buckets])).collect();
    if issue_ids.is_empty() {
        return Ok(out);
    }
    let (ph, ids) = sql::id_list(issue_ids);
    let mut values = vec![Value::from(start_ms), Value::from(bucket_ms)];
    values.extend(ids);
    values.push(Value::from(start_ms));
    let rows = sql::all(
        db,
        &format!(
            "SELECT issue_id, (timestamp - ?) / ? AS bucket, COUNT(*) AS n FROM events \
             WHERE issue_id IN ({ph}) AND timestamp >= ? GROUP BY issue_id, bucket"
        ),
        values,
    )
    .await?;
    for row in rows {
        let issue: i64 = sql::get(&row, "issue_id")?;
        let bucket: i64 = sql::get(&row, "bucket")?;
        let n: i64 = sql::get(&row, "n")?;
        if let Some(v) = out.get_mut(&issue)
            && bucket >= 0
            && (bucket as usize) < buckets
        {
            v[bucket as usize] += n;
        }
    }
    Ok(out)
}

/// One piece of a stacked bar, drawn with its state's class.
#[derive(Debug, Clone)]
pub struct Segment {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
    /// `s-healthy`, `s-errored`, `s-abnormal`, `s-crashed` (colours in `app.css`).
    pub class: &'static str,
    /// Tooltip: `3 crashed sessions, 2026-11-22 04:00 UTC`.
    pub title: String,
}

/// Sessions by state over time: one stacked bar per bucket, healthy at the bottom.
#[derive(Debug, Clone, Default)]
pub struct StackedChart {
    pub width: f64,
    pub height: f64,
    pub segments: Vec<Segment>,
    pub max: i64,
    pub total: i64,
}

/// The states of a stacked session chart, bottom first: (class, word).
pub const SESSION_STATES: [(&str, &str); 4] = [
    ("s-healthy", "healthy"),
    ("s-errored", "errored"),
    ("s-abnormal", "abnormal"),
    ("s-crashed", "crashed"),
];

/// Lays out `series` (oldest first; per bucket the counts in [`SESSION_STATES`] order) of
/// buckets `bucket_ms` wide from `start_ms`; bars scale to the tallest total.
pub fn stacked(
    series: &[[i64; 4]],
    start_ms: i64,
    bucket_ms: i64,
    width: f64,
    height: f64,
) -> StackedChart {
    let n = series.len().max(1) as f64;
    let totals: Vec<i64> = series.iter().map(|b| b.iter().sum()).collect();
    let max = totals.iter().copied().max().unwrap_or(0);
    let slot = width / n;
    let gap = if slot > 4.0 { 1.0 } else { 0.0 };
    let round = |v: f64| (v * 100.0).round() / 100.0;
    let mut segments = Vec::new();
    for (i, bucket) in series.iter().enumerate() {
        let t = start_ms + i as i64 * bucket_ms;
        let when = format::datetime(t)[..16].to_string() + " UTC";
        let x = round(i as f64 * slot);
        let w = round((slot - gap).max(0.5));
        if max == 0 || totals[i] == 0 {
            // A hairline, so the time axis is visible.
            segments.push(Segment {
                x,
                y: height - 1.0,
                w,
                h: 1.0,
                class: "s-none",
                title: format!("no sessions, {when}"),
            });
            continue;
        }
        let mut top = height;
        for (count, (class, word)) in bucket.iter().zip(SESSION_STATES) {
            if *count == 0 {
                continue;
            }
            let h = (*count as f64 / max as f64 * (height - 1.0)).max(1.0);
            top -= h;
            segments.push(Segment {
                x,
                y: round(top.max(0.0)),
                w,
                h: round(h),
                class,
                title: format!(
                    "{count} {word} session{}, {when}",
                    if *count == 1 { "" } else { "s" }
                ),
            });
        }
    }
    StackedChart {
        width,
        height,
        segments,
        max,
        total: totals.iter().sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_tallest() {
        let c = layout(&[0, 5, 10], 0, 3_600_000, 30.0, 20.0);
        assert_eq!(c.max, 10);
        assert_eq!(c.total, 15);
        assert_eq!(c.bars.len(), 3);
        assert_eq!(c.bars[0].h, 1.0);
        assert_eq!(c.bars[2].h, 19.0);
        assert_eq!(c.bars[2].y, 1.0);
        assert!(c.bars[1].title.starts_with("5 events, 1970-01-01 01:00"));
    }

    #[test]
    fn stacked_bars_put_each_state_on_the_last() {
        let c = stacked(&[[0, 0, 0, 0], [6, 2, 0, 2]], 0, 3_600_000, 20.0, 11.0);
        assert_eq!(c.max, 10);
        assert_eq!(c.total, 10);
        assert_eq!(c.segments[0].class, "s-none");
        let classes: Vec<&str> = c.segments[1..].iter().map(|s| s.class).collect();
        assert_eq!(classes, vec!["s-healthy", "s-errored", "s-crashed"]);
        // Healthy at the bottom, crashed on top, together the full height.
        assert_eq!(c.segments[1].y + c.segments[1].h, 11.0);
        assert_eq!(c.segments[3].y, 1.0);
        assert!(c.segments[3].title.starts_with("2 crashed sessions"));
    }

    #[test]
    fn an_empty_chart_is_flat() {
        let c = layout(&[0; 24], 0, 3_600_000, 48.0, 10.0);
        assert!(c.bars.iter().all(|b| b.h == 1.0));
    }
}
