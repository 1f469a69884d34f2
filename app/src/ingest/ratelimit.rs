//! Per-key event rate limits, decided in memory before anything is written.
//!
//! A fixed one-minute window per DSN key: simple, cheap and what SDKs understand (the
//! answer says how many seconds until the window ends). In a scaled deployment every
//! web process keeps its own windows, so the effective limit is per process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Counts events per key per minute.
#[derive(Default)]
pub struct RateLimiter {
    windows: Mutex<HashMap<i64, (u64, u32)>>,
}

impl RateLimiter {
    /// Counts one event for `key_id`; `Err(retry_after_seconds)` when the key is over `limit`.
    pub fn check(&self, key_id: i64, limit: Option<i32>) -> Result<(), u64> {
        let Some(limit) = limit.filter(|l| *l >= 0) else {
            return Ok(());
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let minute = now / 60;
        let Ok(mut windows) = self.windows.lock() else {
            return Ok(());
        };
        let entry = windows.entry(key_id).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        if entry.1 >= limit as u32 {
            // Whole seconds until the window ends, at least 1 (SDKs parse it as an integer).
            return Err((60 - now % 60).max(1));
        }
        entry.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_key_and_reports_integer_retry_after() {
        let rl = RateLimiter::default();
        assert!(rl.check(1, None).is_ok());
        for _ in 0..3 {
            assert!(rl.check(1, Some(3)).is_ok());
        }
        let retry = rl
            .check(1, Some(3))
            .expect_err("fourth event is over the limit");
        assert!((1..=60).contains(&retry));
        // Another key has its own window.
        assert!(rl.check(2, Some(3)).is_ok());
        // A limit of zero refuses everything.
        assert!(rl.check(3, Some(0)).is_err());
    }
}
