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
    fn an_empty_chart_is_flat() {
        let c = layout(&[0; 24], 0, 3_600_000, 48.0, 10.0);
        assert!(c.bars.iter().all(|b| b.h == 1.0));
    }
}
