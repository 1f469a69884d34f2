//! Memory budgets: how many bytes of work may be held at once, counted in bytes rather than
//! jobs or requests.
//!
//! Why bytes: a count bounds nothing when the things counted vary from 1 KB to 1 MB, and the
//! worker used to keep 16,384 jobs in flight — 600-850 MB of RSS under an overload of 10 KB
//! events (issue 25). A budget is a semaphore of bytes: a holder charges what it will keep
//! in memory and gives it back when done, so the bytes held never exceed the budget.
//!
//! Used by the worker's pipeline (a job is charged from its hand-over until its event is
//! committed; fetching from the queue waits for room, `poll_room`) and by ingest (request
//! bodies being read, decoded and queued; `try_charge`, refusing with 429 when full).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A budget of bytes; cheap to clone (clones share it).
#[derive(Clone)]
pub struct MemoryBudget(Arc<Inner>);

struct Inner {
    permits: Arc<Semaphore>,
    total: usize,
    /// The most bytes ever charged at once (for tests and the benchmark's report).
    peak: AtomicUsize,
    /// Who waits in [`MemoryBudget::poll_room`] (the queue's fetch).
    room: AtomicWaker,
    /// Mirrors the bytes in use, for `/metrics` (sets a gauge of `core::metrics`).
    gauge: Option<fn(i64)>,
}

/// Semaphore permits are counted in u32 by `acquire_many`; a budget stays below that.
const MAX_BUDGET: usize = u32::MAX as usize;

impl MemoryBudget {
    /// A budget of `bytes` (at least 1 MiB, at most 4 GiB).
    pub fn new(bytes: usize) -> MemoryBudget {
        MemoryBudget::build(bytes, None)
    }

    /// A budget whose bytes in use are reported to `gauge` whenever they change.
    pub fn with_gauge(bytes: usize, gauge: fn(i64)) -> MemoryBudget {
        MemoryBudget::build(bytes, Some(gauge))
    }

    fn build(bytes: usize, gauge: Option<fn(i64)>) -> MemoryBudget {
        let total = bytes.clamp(1 << 20, MAX_BUDGET);
        MemoryBudget(Arc::new(Inner {
            permits: Arc::new(Semaphore::new(total)),
            total,
            peak: AtomicUsize::new(0),
            room: AtomicWaker::new(),
            gauge,
        }))
    }

    /// The budget in bytes.
    pub fn total(&self) -> usize {
        self.0.total
    }

    /// Bytes charged right now.
    pub fn in_use(&self) -> usize {
        self.0.total - self.0.permits.available_permits()
    }

    /// The most bytes that were ever charged at once.
    pub fn peak(&self) -> usize {
        self.0.peak.load(Ordering::Relaxed)
    }

    /// Waits until `bytes` fit, then charges them until the [`Charge`] is dropped. A
    /// holder larger than the whole budget is charged the whole budget: it runs alone,
    /// rather than never. Waiters are served in order (tokio's semaphore is fair), so a
    /// large job is not starved by small ones.
    pub async fn charge(&self, bytes: usize) -> Charge {
        let n = bytes.clamp(1, self.0.total);
        // The semaphore is never closed, so acquiring only fails if it were.
        let permit = self
            .0
            .permits
            .clone()
            .acquire_many_owned(n as u32)
            .await
            .ok();
        self.charged(permit)
    }

    /// Charges `bytes` if they fit now; `None` when the budget is full.
    pub fn try_charge(&self, bytes: usize) -> Option<Charge> {
        let n = bytes.clamp(1, self.0.total);
        let permit = self
            .0
            .permits
            .clone()
            .try_acquire_many_owned(n as u32)
            .ok()?;
        Some(self.charged(Some(permit)))
    }

    fn charged(&self, permit: Option<OwnedSemaphorePermit>) -> Charge {
        let used = self.in_use();
        self.0.peak.fetch_max(used, Ordering::Relaxed);
        if let Some(set) = self.0.gauge {
            set(used as i64);
        }
        Charge {
            permit,
            budget: self.clone(),
        }
    }

    /// Ready once at least `bytes` (capped at half the budget) are free; otherwise wakes
    /// the caller when a charge is given back. The queue's fetch asks this before it takes
    /// more jobs, so jobs are not pulled faster than the budget admits them.
    pub fn poll_room(&self, cx: &mut Context<'_>, bytes: usize) -> Poll<()> {
        let wanted = bytes.min(self.0.total / 2);
        if self.0.permits.available_permits() >= wanted {
            return Poll::Ready(());
        }
        self.0.room.register(cx.waker());
        // A charge given back between the check and the registration must not be missed.
        if self.0.permits.available_permits() >= wanted {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    fn released(&self) {
        if let Some(set) = self.0.gauge {
            set(self.in_use() as i64);
        }
        self.0.room.wake();
    }
}

impl std::fmt::Debug for MemoryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBudget")
            .field("total", &self.total())
            .field("in_use", &self.in_use())
            .finish()
    }
}

/// Bytes charged against a [`MemoryBudget`]; given back when dropped.
pub struct Charge {
    permit: Option<OwnedSemaphorePermit>,
    budget: MemoryBudget,
}

impl Charge {
    /// Bytes this charge holds.
    pub fn bytes(&self) -> usize {
        self.permit.as_ref().map_or(0, |p| p.num_permits())
    }

    /// Charges `extra` more bytes if they fit now; false (nothing changed) when the budget
    /// is full. A holder may grow to the whole budget, not past it.
    pub fn try_grow(&mut self, extra: usize) -> bool {
        if extra == 0 {
            return true;
        }
        let Ok(n) = u32::try_from(extra) else {
            return false;
        };
        let Ok(more) = self.budget.0.permits.clone().try_acquire_many_owned(n) else {
            return false;
        };
        match self.permit.as_mut() {
            Some(p) => p.merge(more),
            None => self.permit = Some(more),
        }
        let used = self.budget.in_use();
        self.budget.0.peak.fetch_max(used, Ordering::Relaxed);
        if let Some(set) = self.budget.0.gauge {
            set(used as i64);
        }
        true
    }

    /// Gives back what is above `bytes` (a prepared event is smaller than the job it came
    /// from). Never grows: a holder that turned out larger stays charged its estimate.
    pub fn shrink_to(&mut self, bytes: usize) {
        let keep = bytes.max(1);
        if let Some(permit) = self.permit.as_mut()
            && permit.num_permits() > keep
        {
            drop(permit.split(permit.num_permits() - keep));
            self.budget.released();
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if let Some(p) = self.permit.take() {
            drop(p);
            self.budget.released();
        }
    }
}

impl std::fmt::Debug for Charge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Charge")
            .field("bytes", &self.bytes())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[tokio::test]
    async fn charges_wait_for_room_and_give_it_back() {
        let budget = MemoryBudget::new(4 * MIB);
        let a = budget.charge(3 * MIB).await;
        assert_eq!(budget.in_use(), 3 * MIB);
        assert!(budget.try_charge(2 * MIB).is_none(), "over the budget");
        let waiting = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.charge(2 * MIB).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "a charge past the budget waits");
        drop(a);
        let b = waiting.await.expect("the waiter gets its charge");
        assert_eq!(b.bytes(), 2 * MIB);
        assert_eq!(budget.in_use(), 2 * MIB);
        assert_eq!(budget.peak(), 3 * MIB);
        drop(b);
        assert_eq!(budget.in_use(), 0);
    }

    #[tokio::test]
    async fn a_holder_larger_than_the_budget_runs_alone() {
        let budget = MemoryBudget::new(MIB);
        let huge = budget.charge(64 * MIB).await;
        assert_eq!(huge.bytes(), MIB);
        assert!(budget.try_charge(1).is_none());
        drop(huge);
        assert!(budget.try_charge(1).is_some());
    }

    #[tokio::test]
    async fn growing_takes_what_is_free_and_no_more() {
        let budget = MemoryBudget::new(MIB);
        let mut c = budget.try_charge(1000).expect("fits");
        assert!(c.try_grow(2000));
        assert_eq!((c.bytes(), budget.in_use()), (3000, 3000));
        assert!(!c.try_grow(MIB), "past the budget");
        assert_eq!(c.bytes(), 3000, "a refused growth changes nothing");
        drop(c);
        assert_eq!(budget.in_use(), 0);
    }

    #[tokio::test]
    async fn shrinking_gives_back_the_difference_and_never_grows() {
        let budget = MemoryBudget::new(MIB);
        let mut c = budget.charge(1000).await;
        c.shrink_to(300);
        assert_eq!((c.bytes(), budget.in_use()), (300, 300));
        c.shrink_to(5000);
        assert_eq!(c.bytes(), 300);
        drop(c);
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn room_wakes_the_waiter_when_a_charge_is_given_back() {
        let budget = MemoryBudget::new(2 * MIB);
        let full = budget.try_charge(2 * MIB).expect("fits");
        let woken = Arc::new(std::sync::atomic::AtomicBool::new(false));
        struct Flag(Arc<std::sync::atomic::AtomicBool>);
        impl std::task::Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let waker = std::task::Waker::from(Arc::new(Flag(woken.clone())));
        let mut cx = Context::from_waker(&waker);
        assert!(budget.poll_room(&mut cx, 512 * 1024).is_pending());
        drop(full);
        assert!(woken.load(Ordering::SeqCst));
        assert!(budget.poll_room(&mut cx, 512 * 1024).is_ready());
    }
}
