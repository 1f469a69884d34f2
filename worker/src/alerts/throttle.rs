//! Throttling decisions and retry timing: pure functions of the settings and what the
//! notification log says happened recently.

use faultline_core::config::AlertSettings;

/// What to do with one alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Mail it.
    Send,
    /// The issue was alerted at this time, within the cooldown.
    Cooldown { last_alert_ms: i64 },
    /// The project already had `cap` alerts within the cap's window; the digest will
    /// summarise this one.
    Cap { cap: i64 },
}

/// Decides for an alert at `now`: the per-issue cooldown first (the person already heard
/// about this issue), then the project's hourly cap.
///
/// `last_issue_alert_ms`: when this issue was last alerted (mailed or to be mailed);
/// `alerts_in_window`: alerts of the project mailed within the cap's window.
pub fn decide(
    settings: &AlertSettings,
    now: i64,
    last_issue_alert_ms: Option<i64>,
    alerts_in_window: i64,
) -> Decision {
    if let Some(last) = last_issue_alert_ms
        && settings.cooldown_ms > 0
        && now - last < settings.cooldown_ms
    {
        return Decision::Cooldown {
            last_alert_ms: last,
        };
    }
    if alerts_in_window >= settings.hourly_cap {
        return Decision::Cap {
            cap: settings.hourly_cap,
        };
    }
    Decision::Send
}

/// Longest wait between two attempts.
const MAX_RETRY_DELAY_MS: i64 = 60 * 60 * 1000;

/// Wait after the `attempts`-th failed attempt: the base, doubled per attempt, at most an
/// hour.
pub fn retry_delay_ms(settings: &AlertSettings, attempts: i64) -> i64 {
    let doublings = (attempts - 1).clamp(0, 20) as u32;
    settings
        .retry_base_ms
        .saturating_mul(1i64 << doublings)
        .min(MAX_RETRY_DELAY_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AlertSettings {
        AlertSettings {
            cooldown_ms: 30 * 60_000,
            hourly_cap: 3,
            ..AlertSettings::default()
        }
    }

    #[test]
    fn first_alert_of_an_issue_is_sent() {
        assert_eq!(decide(&settings(), 1_000_000, None, 0), Decision::Send);
    }

    #[test]
    fn an_issue_alerted_within_the_cooldown_is_suppressed() {
        let now = 100 * 60_000;
        let last = now - 29 * 60_000;
        assert_eq!(
            decide(&settings(), now, Some(last), 0),
            Decision::Cooldown {
                last_alert_ms: last
            }
        );
        // Exactly at the end of the cooldown it may be mailed again.
        assert_eq!(
            decide(&settings(), now, Some(now - 30 * 60_000), 0),
            Decision::Send
        );
    }

    #[test]
    fn zero_cooldown_never_suppresses() {
        let s = AlertSettings {
            cooldown_ms: 0,
            ..settings()
        };
        assert_eq!(decide(&s, 5, Some(5), 0), Decision::Send);
    }

    #[test]
    fn the_cap_suppresses_once_reached() {
        let s = settings();
        assert_eq!(decide(&s, 10, None, 2), Decision::Send);
        assert_eq!(decide(&s, 10, None, 3), Decision::Cap { cap: 3 });
        // The cooldown is the more specific reason.
        assert!(matches!(
            decide(&s, 10, Some(9), 3),
            Decision::Cooldown { .. }
        ));
    }

    #[test]
    fn retries_back_off_exponentially_up_to_an_hour() {
        let s = AlertSettings {
            retry_base_ms: 30_000,
            ..settings()
        };
        assert_eq!(retry_delay_ms(&s, 1), 30_000);
        assert_eq!(retry_delay_ms(&s, 2), 60_000);
        assert_eq!(retry_delay_ms(&s, 4), 240_000);
        assert_eq!(retry_delay_ms(&s, 30), 3_600_000);
        assert_eq!(retry_delay_ms(&s, 0), 30_000);
    }
}
