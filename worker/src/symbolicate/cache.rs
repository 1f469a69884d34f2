//! A bounded LRU of parsed files, keyed by what they were parsed from.
//!
//! Keys are content hashes (an artifact's sha1, plus what it was parsed as), so an entry
//! never goes stale: a new upload has a new hash. Bounded by an estimate of the memory the
//! parsed values hold; the few dozen entries a worker keeps make a linear scan for the
//! least recently used one cheaper than keeping an ordered structure up to date.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

struct Entry<V> {
    value: Arc<V>,
    cost: usize,
    used: u64,
}

/// Parsed values by key, least recently used dropped first once `budget` is exceeded.
pub struct Lru<V> {
    inner: Mutex<Inner<V>>,
    budget: usize,
}

struct Inner<V> {
    entries: HashMap<String, Entry<V>>,
    total: usize,
    clock: u64,
    parses: u64,
}

impl<V> Lru<V> {
    /// An empty cache that keeps values worth up to `budget` bytes.
    pub fn new(budget: usize) -> Self {
        Lru {
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                total: 0,
                clock: 0,
                parses: 0,
            }),
            budget,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<V>> {
        // A panic while holding the lock cannot leave the map half-updated in a way that
        // matters (entries are inserted whole), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value for `key`, marking it as just used.
    pub fn get(&self, key: &str) -> Option<Arc<V>> {
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        let e = inner.entries.get_mut(key)?;
        e.used = now;
        Some(e.value.clone())
    }

    /// Stores a freshly parsed value that costs about `cost` bytes; evicts old entries.
    pub fn insert(&self, key: String, value: Arc<V>, cost: usize) {
        let mut inner = self.lock();
        inner.clock += 1;
        inner.parses += 1;
        let used = inner.clock;
        if let Some(old) = inner.entries.insert(key, Entry { value, cost, used }) {
            inner.total -= old.cost;
        }
        inner.total += cost;
        // Keep at least the newest entry, even when it alone exceeds the budget.
        while inner.total > self.budget && inner.entries.len() > 1 {
            let Some(oldest) = inner
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = inner.entries.remove(&oldest) {
                inner.total -= e.cost;
            }
        }
    }

    /// How many values were parsed and inserted since the start (for tests and logs).
    pub fn parses(&self) -> u64 {
        self.lock().parses
    }

    /// Number of entries and their estimated bytes.
    pub fn usage(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.entries.len(), inner.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_recently_used_goes_first() {
        let lru = Lru::new(100);
        lru.insert("a".into(), Arc::new(1), 40);
        lru.insert("b".into(), Arc::new(2), 40);
        assert!(lru.get("a").is_some());
        lru.insert("c".into(), Arc::new(3), 40);
        assert!(lru.get("b").is_none(), "b was the least recently used");
        assert!(lru.get("a").is_some());
        assert!(lru.get("c").is_some());
        assert_eq!(lru.usage(), (2, 80));
    }

    #[test]
    fn an_oversized_value_is_kept_alone() {
        let lru = Lru::new(10);
        lru.insert("a".into(), Arc::new(1), 5);
        lru.insert("big".into(), Arc::new(2), 50);
        assert_eq!(lru.usage(), (1, 50));
        assert!(lru.get("big").is_some());
    }
}
