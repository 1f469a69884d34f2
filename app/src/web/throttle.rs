//! Login throttling. Every password attempt is counted *before* the password is checked:
//! [`LoginThrottle::reserve`] looks at three counters and takes one attempt from each under
//! one lock, so N guesses sent at once cannot get past the limit while the first ones are
//! still being verified. A wrong password keeps the attempt counted ([`Attempt::failed`]);
//! a right one gives it back and clears the (account, address) counter
//! ([`Attempt::succeeded`]); an attempt whose password was never checked (the server was
//! busy, the database failed) is given back when it is dropped.
//!
//! The counters, each over [`WINDOW_MS`] from its first attempt:
//! - per account and address: [`MAX_PER_ACCOUNT_AND_ADDRESS`] — someone mistyping;
//! - per address, over all accounts: [`MAX_PER_ADDRESS`] — one host trying many accounts;
//! - per account, over all addresses: [`MAX_PER_ACCOUNT`] — one account attacked from many
//!   hosts. This one also locks out the account's owner while the attack lasts (until the
//!   window passes): the price of keeping a distributed guesser at 20 guesses per 15
//!   minutes instead of 20 per address.
//!
//! Past a limit, attempts are refused with the wait until the window ends, even with the
//! right password. IPv6 addresses count per /64, the block one host usually gets, so a
//! host cannot walk through its own addresses. Unknown accounts are counted like known
//! ones, so the answers do not tell which accounts exist.
//!
//! Memory is bounded: keys are 128-bit hashes and at most [`MAX_ENTRIES`] counters are
//! kept. When full, expired counters go first, then the ones with the fewest attempts
//! (a flood of made-up accounts, each tried once, cannot push out a locked account).
//! Counters live in memory per process: a restart forgets them, and N web processes
//! behind a round-robin balancer allow up to N times the limits.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use sha2::Digest;

/// Attempts allowed per account and address within [`WINDOW_MS`].
pub const MAX_PER_ACCOUNT_AND_ADDRESS: u32 = 5;
/// Attempts allowed per address (over all accounts) within [`WINDOW_MS`].
pub const MAX_PER_ADDRESS: u32 = 30;
/// Attempts allowed per account (over all addresses) within [`WINDOW_MS`].
pub const MAX_PER_ACCOUNT: u32 = 20;
/// How long attempts are remembered, and how long a lock lasts.
pub const WINDOW_MS: i64 = 15 * 60 * 1000;
/// Counters kept at most (about 50 bytes each).
pub const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Counter {
    count: u32,
    /// When the window of this counter began (Unix ms).
    first: i64,
}

impl Counter {
    fn live(&self, now_ms: i64) -> bool {
        self.first + WINDOW_MS > now_ms
    }
}

/// Attempt counters, in memory.
pub struct LoginThrottle {
    counters: Mutex<HashMap<u128, Counter>>,
    capacity: usize,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        LoginThrottle::with_capacity(MAX_ENTRIES)
    }
}

/// One reserved password attempt; see the module's documentation.
#[must_use = "an attempt is given back when dropped; call failed() after a wrong password"]
pub struct Attempt<'a> {
    throttle: &'a LoginThrottle,
    /// (key, window start) of the counters this attempt was taken from.
    taken: [(u128, i64); 3],
    settled: bool,
}

impl Attempt<'_> {
    /// The password was wrong: the attempt stays counted.
    pub fn failed(mut self) {
        self.settled = true;
    }

    /// The password was right: the attempt is given back, and the account's counter for
    /// this address starts over.
    pub fn succeeded(mut self) {
        self.settled = true;
        let mut map = self.throttle.lock();
        let [account_address, ..] = self.taken;
        map.remove(&account_address.0);
        give_back(&mut map, &self.taken[1..]);
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.settled {
            let mut map = self.throttle.lock();
            give_back(&mut map, &self.taken);
        }
    }
}

/// Takes one attempt back from each counter that is still the window it was taken from.
fn give_back(map: &mut HashMap<u128, Counter>, taken: &[(u128, i64)]) {
    for (key, first) in taken {
        if let Some(c) = map.get_mut(key)
            && c.first == *first
        {
            c.count = c.count.saturating_sub(1);
            if c.count == 0 {
                map.remove(key);
            }
        }
    }
}

/// The part of an address that identifies a host: IPv4 as is, IPv6 by its /64.
fn host_part(ip: &str) -> String {
    match ip.parse::<IpAddr>().map(|ip| ip.to_canonical()) {
        Ok(IpAddr::V6(v6)) => {
            let bits = u128::from(v6) & (u128::MAX << 64);
            format!("{}/64", std::net::Ipv6Addr::from(bits))
        }
        Ok(v4) => v4.to_string(),
        Err(_) => ip.to_string(),
    }
}

fn key(parts: &[&str]) -> u128 {
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    u128::from_le_bytes(bytes)
}

impl LoginThrottle {
    /// A throttle keeping at most `capacity` counters.
    pub fn with_capacity(capacity: usize) -> LoginThrottle {
        LoginThrottle {
            counters: Mutex::new(HashMap::new()),
            capacity: capacity.max(3),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u128, Counter>> {
        self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// (key, limit) of the counters an attempt at `email` from `ip` is taken from; the
    /// (account, address) counter comes first.
    fn keys(email: &str, ip: &str) -> [(u128, u32); 3] {
        let account = email.trim().to_lowercase();
        let host = host_part(ip);
        [
            (
                key(&["account+address", &account, &host]),
                MAX_PER_ACCOUNT_AND_ADDRESS,
            ),
            (key(&["address", &host]), MAX_PER_ADDRESS),
            (key(&["account", &account]), MAX_PER_ACCOUNT),
        ]
    }

    /// Reserves one password attempt at `email` from `ip`, or says how many seconds to
    /// wait when a limit is reached.
    pub fn reserve(&self, email: &str, ip: &str, now_ms: i64) -> Result<Attempt<'_>, i64> {
        let keys = Self::keys(email, ip);
        let mut map = self.lock();
        let mut wait: Option<i64> = None;
        for (key, max) in keys {
            if let Some(c) = map.get(&key)
                && c.live(now_ms)
                && c.count >= max
            {
                let secs = (c.first + WINDOW_MS - now_ms + 999) / 1000;
                wait = Some(wait.map_or(secs, |w| w.max(secs)));
            }
        }
        if let Some(secs) = wait {
            return Err(secs.max(1));
        }
        if map.len() + keys.len() > self.capacity {
            self.make_room(&mut map, now_ms);
        }
        let mut taken = [(0u128, 0i64); 3];
        for (slot, (key, _)) in taken.iter_mut().zip(keys) {
            let c = map.entry(key).or_insert(Counter {
                count: 0,
                first: now_ms,
            });
            if !c.live(now_ms) {
                *c = Counter {
                    count: 0,
                    first: now_ms,
                };
            }
            c.count += 1;
            *slot = (key, c.first);
        }
        Ok(Attempt {
            throttle: self,
            taken,
            settled: false,
        })
    }

    /// Forgets expired counters, then — still too full — the least used tenth: fewest
    /// attempts first, oldest first among equals. Runs about once per tenth of the
    /// capacity of new counters, so its sort costs little per attempt.
    fn make_room(&self, map: &mut HashMap<u128, Counter>, now_ms: i64) {
        map.retain(|_, c| c.live(now_ms));
        let target = self.capacity - self.capacity / 10 - 3;
        if map.len() <= target {
            return;
        }
        let mut all: Vec<(u32, i64, u128)> =
            map.iter().map(|(k, c)| (c.count, c.first, *k)).collect();
        let excess = all.len() - target;
        all.select_nth_unstable(excess - 1);
        for (_, _, key) in &all[..excess] {
            map.remove(key);
        }
    }

    /// Counters held (for tests and the memory bound).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no counter is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(t: &LoginThrottle, email: &str, ip: &str, now: i64) {
        t.reserve(email, ip, now).expect("not locked").failed();
    }

    #[test]
    fn locks_after_the_limit_and_unlocks_after_the_window() {
        let t = LoginThrottle::default();
        for _ in 0..MAX_PER_ACCOUNT_AND_ADDRESS {
            fail(&t, "a@x.io", "1.2.3.4", 0);
        }
        assert_eq!(
            t.reserve("A@x.io ", "1.2.3.4", 1000).err(),
            Some(WINDOW_MS / 1000 - 1)
        );
        // Another address is not locked out of the same account.
        assert!(t.reserve("a@x.io", "5.6.7.8", 1000).is_ok());
        assert!(t.reserve("a@x.io", "1.2.3.4", WINDOW_MS).is_ok());
    }

    #[test]
    fn attempts_in_flight_count_before_their_password_is_checked() {
        let t = LoginThrottle::default();
        // Reserved, not yet settled: the sixth is refused already.
        let held: Vec<_> = (0..MAX_PER_ACCOUNT_AND_ADDRESS)
            .map(|i| {
                t.reserve("a@x.io", "1.2.3.4", 0)
                    .unwrap_or_else(|_| panic!("{i}"))
            })
            .collect();
        assert!(t.reserve("a@x.io", "1.2.3.4", 0).is_err());
        // Attempts whose password was never checked are given back.
        drop(held);
        assert!(t.is_empty());
        assert!(t.reserve("a@x.io", "1.2.3.4", 0).is_ok());
    }

    #[test]
    fn parallel_reservations_never_pass_the_limit() {
        let t = LoginThrottle::default();
        let granted = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|s| {
            for _ in 0..50 {
                s.spawn(|| {
                    if let Ok(a) = t.reserve("a@x.io", "1.2.3.4", 0) {
                        granted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(5));
                        a.failed();
                    }
                });
            }
        });
        assert_eq!(granted.into_inner(), MAX_PER_ACCOUNT_AND_ADDRESS);
    }

    #[test]
    fn one_address_guessing_many_accounts_is_locked() {
        let t = LoginThrottle::default();
        for i in 0..MAX_PER_ADDRESS {
            fail(&t, &format!("user{i}@x.io"), "9.9.9.9", 0);
        }
        assert!(t.reserve("fresh@x.io", "9.9.9.9", 10).is_err());
        assert!(t.reserve("fresh@x.io", "9.9.9.8", 10).is_ok());
    }

    #[test]
    fn one_account_guessed_from_many_addresses_is_locked() {
        let t = LoginThrottle::default();
        for i in 0..MAX_PER_ACCOUNT {
            fail(&t, "a@x.io", &format!("10.0.{}.{}", i / 200, i % 200), 0);
        }
        let wait = t.reserve("a@x.io", "192.0.2.1", 60_000).err();
        assert_eq!(wait, Some((WINDOW_MS - 60_000) / 1000));
        // Other accounts from those addresses are fine.
        assert!(t.reserve("b@x.io", "10.0.0.1", 60_000).is_ok());
    }

    #[test]
    fn ipv6_hosts_count_per_64() {
        let t = LoginThrottle::default();
        for i in 0..MAX_PER_ACCOUNT_AND_ADDRESS {
            fail(&t, "a@x.io", &format!("2001:db8:1:2::{i:x}"), 0);
        }
        assert!(t.reserve("a@x.io", "2001:db8:1:2:ffff::1", 0).is_err());
        assert!(t.reserve("a@x.io", "2001:db8:1:3::1", 0).is_ok());
    }

    #[test]
    fn success_clears_the_account_counter() {
        let t = LoginThrottle::default();
        for _ in 0..MAX_PER_ACCOUNT_AND_ADDRESS - 1 {
            fail(&t, "a@x.io", "1.1.1.1", 0);
        }
        t.reserve("a@x.io", "1.1.1.1", 0)
            .expect("allowed")
            .succeeded();
        for _ in 0..MAX_PER_ACCOUNT_AND_ADDRESS - 1 {
            fail(&t, "a@x.io", "1.1.1.1", 0);
        }
        assert!(t.reserve("a@x.io", "1.1.1.1", 0).is_ok());
    }

    #[test]
    fn memory_stays_bounded_and_locks_survive_a_flood() {
        let t = LoginThrottle::with_capacity(1000);
        for i in 0..MAX_PER_ACCOUNT {
            fail(&t, "victim@x.io", &format!("10.1.0.{i}"), 0);
        }
        for i in 0..20_000u32 {
            let ip = std::net::Ipv4Addr::from(0x0b00_0000 + i).to_string();
            if let Ok(a) = t.reserve(&format!("made-up-{i}@x.io"), &ip, 1) {
                a.failed();
            }
            assert!(t.len() <= 1000, "{} counters after {i}", t.len());
        }
        assert!(t.reserve("victim@x.io", "192.0.2.1", 2).is_err());
    }
}
