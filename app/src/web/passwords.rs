//! Password hashing and verification with bounded concurrency. One argon2id check takes
//! ~19 MiB and tens of milliseconds of a core; a burst of logins must not exhaust memory or
//! tokio's blocking pool. At most one check per core runs at a time; a request waits for
//! its turn at most [`MAX_WAIT`], and when [`PasswordWork::max_waiting`] requests already
//! wait it is refused at once — both answered `429` with `Retry-After`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use faultline_core::metrics;
use tokio::sync::Semaphore;

use super::error::WebError;

/// Longest wait for a turn before the request is refused.
pub const MAX_WAIT: Duration = Duration::from_millis(1500);
/// `Retry-After` of a refused request, in seconds.
const RETRY_AFTER_SECS: i64 = 2;

/// The gate every argon2 hash and verification on a request path goes through.
pub struct PasswordWork {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
    max_wait: Duration,
}

/// Decrements the waiting count however the wait ends (a permit, a timeout, or the
/// request being dropped).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl PasswordWork {
    /// `permits` checks at once, at most `max_waiting` requests waiting, each at most
    /// `max_wait`.
    pub fn new(permits: usize, max_waiting: usize, max_wait: Duration) -> PasswordWork {
        PasswordWork {
            permits: Arc::new(Semaphore::new(permits.max(1))),
            waiting: AtomicUsize::new(0),
            max_waiting,
            max_wait,
        }
    }

    /// One check per core; 16 waiting per core (about what the cores get through within
    /// [`MAX_WAIT`]).
    pub fn for_this_machine() -> PasswordWork {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        PasswordWork::new(cores, cores * 16, MAX_WAIT)
    }

    /// Requests allowed to wait for a turn.
    pub fn max_waiting(&self) -> usize {
        self.max_waiting
    }

    /// Runs `job` on a blocking thread once a permit is free. The permit moves into the
    /// job, so a request dropped mid-way (client gone) still holds its turn until the CPU
    /// work is really done.
    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, WebError> {
        let busy = || {
            tracing::warn!("password check refused: too many waiting");
            WebError::RateLimited {
                message: format!(
                    "The server is busy checking other passwords. Try again in {RETRY_AFTER_SECS} seconds."
                ),
                retry_after: RETRY_AFTER_SECS,
            }
        };
        let permit = {
            let _waiting = Waiting(&self.waiting);
            if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
                return Err(busy());
            }
            match tokio::time::timeout(self.max_wait, self.permits.clone().acquire_owned()).await {
                Ok(Ok(permit)) => permit,
                Ok(Err(_closed)) => return Err(WebError::Internal("password gate closed".into())),
                Err(_elapsed) => return Err(busy()),
            }
        };
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            job()
        })
        .await
        .map_err(|e| WebError::Internal(format!("password check failed: {e}")))
    }

    /// Whether `password` matches the stored argon2 `hash` (a malformed hash matches
    /// nothing). Counted in `faultline_password_verifications_total`.
    pub async fn verify(&self, password: String, hash: String) -> Result<bool, WebError> {
        self.run(move || {
            use argon2::{Argon2, PasswordVerifier};
            metrics::get().password_verifications.inc();
            Argon2::default()
                .verify_password(password.as_bytes(), hash.as_str())
                .is_ok()
        })
        .await
    }

    /// An argon2id hash of a new password (PHC string with its own salt).
    pub async fn hash(&self, password: String) -> Result<String, WebError> {
        self.run(move || crate::accounts::users::hash_password(&password))
            .await?
            .map_err(WebError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLOW: Duration = Duration::from_millis(300);

    #[tokio::test]
    async fn a_full_gate_refuses_quickly_instead_of_queueing() {
        let gate = Arc::new(PasswordWork::new(1, 2, Duration::from_millis(100)));
        let started = std::time::Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..6 {
            let gate = gate.clone();
            tasks.push(tokio::spawn(async move {
                gate.run(|| std::thread::sleep(SLOW)).await
            }));
        }
        let mut done = 0;
        let mut busy = 0;
        for t in tasks {
            match t.await.expect("task") {
                Ok(()) => done += 1,
                Err(WebError::RateLimited { retry_after, .. }) => {
                    assert!(retry_after > 0);
                    busy += 1
                }
                Err(e) => panic!("{e}"),
            }
        }
        // One ran; the waiting ones gave up after 100 ms, the rest were refused at once.
        assert_eq!((done, busy), (1, 5));
        assert!(started.elapsed() < SLOW * 2, "{:?}", started.elapsed());
        // Free again afterwards.
        assert!(gate.run(|| ()).await.is_ok());
        assert_eq!(gate.waiting.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn hashes_verify_and_wrong_passwords_do_not() {
        let gate = PasswordWork::new(2, 4, MAX_WAIT);
        let hash = gate.hash("correct horse".into()).await.expect("hash");
        assert!(
            gate.verify("correct horse".into(), hash.clone())
                .await
                .expect("ran")
        );
        assert!(!gate.verify("wrong".into(), hash).await.expect("ran"));
        assert!(
            !gate
                .verify("x".into(), "not a hash".into())
                .await
                .expect("ran")
        );
    }
}
