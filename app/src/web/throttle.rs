//! Login throttling: failed attempts are counted per (account, address) and per address;
//! past the limit, logins from there are refused until the window has passed, even with
//! the right password, so guessing stays slow.

use std::collections::HashMap;
use std::sync::Mutex;

/// Failures allowed per account and address within [`WINDOW_MS`].
pub const MAX_PER_ACCOUNT: u32 = 5;
/// Failures allowed per address (over all accounts) within [`WINDOW_MS`].
pub const MAX_PER_ADDRESS: u32 = 30;
/// How long failures are remembered, and how long a lock lasts.
pub const WINDOW_MS: i64 = 15 * 60 * 1000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    first: i64,
}

/// Counters of failed logins, in memory (a restart forgets them).
#[derive(Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<String, Failures>>,
}

impl LoginThrottle {
    fn keys(email: &str, ip: &str) -> [String; 2] {
        [
            format!("a\u{0}{}\u{0}{ip}", email.trim().to_lowercase()),
            format!("i\u{0}{ip}"),
        ]
    }

    /// `Some(seconds)` to wait when logins for this account from this address are locked.
    pub fn locked(&self, email: &str, ip: &str, now_ms: i64) -> Option<i64> {
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let [account, address] = Self::keys(email, ip);
        let mut wait = None;
        for (key, max) in [(account, MAX_PER_ACCOUNT), (address, MAX_PER_ADDRESS)] {
            if let Some(f) = map.get(&key) {
                let until = f.first + WINDOW_MS;
                if f.count >= max && until > now_ms {
                    let secs = (until - now_ms + 999) / 1000;
                    wait = Some(wait.map_or(secs, |w: i64| w.max(secs)));
                }
            }
        }
        wait
    }

    /// Records a failed attempt.
    pub fn failed(&self, email: &str, ip: &str, now_ms: i64) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 100_000 {
            // Bounded memory under a flood of made-up accounts: forget expired entries.
            map.retain(|_, f| f.first + WINDOW_MS > now_ms);
        }
        for key in Self::keys(email, ip) {
            let f = map.entry(key).or_insert(Failures {
                count: 0,
                first: now_ms,
            });
            if f.first + WINDOW_MS <= now_ms {
                *f = Failures {
                    count: 0,
                    first: now_ms,
                };
            }
            f.count += 1;
        }
    }

    /// A successful login clears the account's counter from that address.
    pub fn succeeded(&self, email: &str, ip: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let [account, _] = Self::keys(email, ip);
        map.remove(&account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_the_limit_and_unlocks_after_the_window() {
        let t = LoginThrottle::default();
        for i in 0..MAX_PER_ACCOUNT {
            assert!(t.locked("a@x.io", "1.2.3.4", 0).is_none(), "attempt {i}");
            t.failed("a@x.io", "1.2.3.4", 0);
        }
        assert_eq!(
            t.locked("A@x.io ", "1.2.3.4", 1000),
            Some(WINDOW_MS / 1000 - 1)
        );
        // Another address is not locked out of the same account.
        assert!(t.locked("a@x.io", "5.6.7.8", 1000).is_none());
        assert!(t.locked("a@x.io", "1.2.3.4", WINDOW_MS).is_none());
    }

    #[test]
    fn one_address_guessing_many_accounts_is_locked() {
        let t = LoginThrottle::default();
        for i in 0..MAX_PER_ADDRESS {
            t.failed(&format!("user{i}@x.io"), "9.9.9.9", 0);
        }
        assert!(t.locked("fresh@x.io", "9.9.9.9", 10).is_some());
        assert!(t.locked("fresh@x.io", "9.9.9.8", 10).is_none());
    }

    #[test]
    fn success_clears_the_account_counter() {
        let t = LoginThrottle::default();
        for _ in 0..MAX_PER_ACCOUNT - 1 {
            t.failed("a@x.io", "1.1.1.1", 0);
        }
        t.succeeded("a@x.io", "1.1.1.1");
        t.failed("a@x.io", "1.1.1.1", 0);
        assert!(t.locked("a@x.io", "1.1.1.1", 0).is_none());
    }
}
