//! How the process's two allocators give memory back (issue 25: `faultline serve` within
//! ~150 MB under load, ~30 MB idle, memory returned after a spike).
//!
//! Rust allocates through mimalloc (the global allocator, `main.rs`); SQLite, a C library,
//! allocates through glibc's `malloc`. Both kept what a spike made them take:
//!
//! - mimalloc asks for transparent huge pages for its arena by default, so every 2 MiB the
//!   process touched stayed resident whole: 38 of the 40 MB of heap an idle server held were
//!   huge pages. Without them the idle heap is ~10 MB. That is the crate's `no_thp` feature
//!   (workspace `Cargo.toml`): mimalloc reserves its arena before `main` runs, so its
//!   runtime option would come too late.
//! - glibc gives every thread that allocates its own arena (up to 8 per core), and SQLite
//!   runs on one thread per connection (sqlx) plus the committer's: under load ~11 arenas of
//!   10-25 MB each held ~170 MB, most of it free chunks between live ones that glibc returns
//!   only from the top of each arena. Two arenas, and `malloc_trim` every few seconds (it
//!   returns the free pages inside the arenas too), bound that.

use std::time::Duration;

/// How often glibc's free pages are given back to the system.
const TRIM_EVERY: Duration = Duration::from_secs(5);

/// Sets glibc's allocator up (SQLite's); call first thing in `main`, before any thread
/// starts.
pub fn tune() {
    // SAFETY: glibc's mallopt is a plain call taking integers; called before other
    // threads exist.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Starts the thread that gives glibc's free pages back to the system every
/// [`TRIM_EVERY`]; a trim of a few arenas takes well under a millisecond.
pub fn spawn_trimmer() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let started = std::thread::Builder::new()
            .name("faultline-trim".into())
            .stack_size(64 * 1024)
            .spawn(|| {
                loop {
                    std::thread::sleep(TRIM_EVERY);
                    // SAFETY: glibc's malloc_trim takes the arenas' locks itself.
                    unsafe {
                        libc::malloc_trim(0);
                    }
                }
            });
        if let Err(e) = started {
            tracing::warn!(error = %e, "cannot start the memory trimmer; SQLite's freed memory stays with the process");
        }
    }
}
