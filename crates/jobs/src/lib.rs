//! The job runner: workers that take due jobs from the durable queue (`store::jobs`,
//! reached through the guard), hand each to the [`Handler`] of its queue, and end the
//! attempt — removed when done, put back with an exponential back-off when it failed
//! (up to [`Settings::max_backoff`], and again after that: a job is never dropped).
//!
//! Jobs are enqueued by the writes that need them, in the same transaction
//! (`WriteTx::enqueue`), so work asked for is never lost and never done for a write that
//! rolled back. A job is done at least once (a worker may die after the work and before
//! its end is recorded; its lease then runs out and the job runs again), so handlers
//! make their effect idempotent. Requests never wait for a job: writes only enqueue.
//!
//! On PostgreSQL several workers (and server hosts) claim concurrently, never the same
//! job; on SQLite one worker suffices (the database has one writer).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use guard::{Guard, Job, JobOutcome};

/// Why an attempt failed: tried again later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry(pub String);

impl<E: std::fmt::Display> From<E> for Retry {
    fn from(e: E) -> Self {
        Retry(e.to_string())
    }
}

/// The work of one queue.
pub trait Handler: Send + Sync {
    /// The queue it takes jobs from.
    fn queue(&self) -> &'static str;

    /// Do a job (at least once: idempotently). `Err` puts it back for later.
    fn run(&self, job: &Job) -> Result<(), Retry>;
}

/// How the runner works (the README's settings table).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Worker threads (1 on SQLite whatever is asked).
    pub workers: usize,
    /// How long a worker sleeps when no job is due (it is woken at once by [`Runner::wake`]).
    pub poll: Duration,
    /// How long a claimed job is a worker's before another may take it over.
    pub lease: Duration,
    /// The first retry's delay, doubled at each failure up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Jobs claimed at once by a worker.
    pub batch: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            workers: 2,
            poll: Duration::from_secs(2),
            lease: Duration::from_secs(300),
            backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(3600),
            batch: 10,
        }
    }
}

impl Settings {
    /// The delay before attempt `attempts + 1`, after `attempts` failures.
    pub fn delay(&self, attempts: i64) -> Duration {
        let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
        self.backoff.saturating_mul(1u32 << doublings.min(20)).min(self.max_backoff)
    }
}

struct Shared {
    guard: Guard,
    handlers: HashMap<&'static str, Arc<dyn Handler>>,
    settings: Settings,
    stop: AtomicBool,
    /// Set by [`Runner::wake`]: a job may be due.
    signal: (Mutex<bool>, Condvar),
}

/// The running workers (stopped by [`Runner::stop`], or when dropped).
pub struct Runner {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Runner {
    /// Start the workers for `handlers` (one per queue).
    pub fn start(guard: Guard, handlers: Vec<Arc<dyn Handler>>, settings: Settings) -> Runner {
        let workers = if guard.backend() == "sqlite" { 1 } else { settings.workers.max(1) };
        let handlers = handlers.into_iter().map(|h| (h.queue(), h)).collect();
        let shared = Arc::new(Shared {
            guard,
            handlers,
            settings,
            stop: AtomicBool::new(false),
            signal: (Mutex::new(false), Condvar::new()),
        });
        let threads = (0..workers)
            .filter_map(|i| {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("jobs-{i}"))
                    .spawn(move || work(&shared))
                    .map_err(|e| tracing::error!("a job worker could not start: {e}"))
                    .ok()
            })
            .collect();
        Runner { shared, threads }
    }

    /// A job may be due now (after a commit that enqueued one): no need to wait for
    /// the next poll.
    pub fn wake(&self) {
        let (lock, cv) = &self.shared.signal;
        *lock.lock().unwrap_or_else(PoisonError::into_inner) = true;
        cv.notify_all();
    }

    /// Stop the workers after their current job.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.wake();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.halt();
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn work(shared: &Shared) {
    let queues: Vec<&str> = shared.handlers.keys().copied().collect();
    let s = &shared.settings;
    while !shared.stop.load(Ordering::SeqCst) {
        let now = guard::meta::now_micros();
        let claimed = match shared.guard.claim_jobs(&queues, now, micros(s.lease), s.batch) {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::warn!("the job queue could not be read: {e}");
                Vec::new()
            }
        };
        let idle = claimed.is_empty();
        for job in claimed {
            run_one(shared, &job);
        }
        if idle {
            let (lock, cv) = &shared.signal;
            let mut woken = lock.lock().unwrap_or_else(PoisonError::into_inner);
            if !*woken && !shared.stop.load(Ordering::SeqCst) {
                woken = cv.wait_timeout(woken, s.poll).unwrap_or_else(PoisonError::into_inner).0;
            }
            *woken = false;
        }
    }
}

fn run_one(shared: &Shared, job: &Job) {
    let Some(handler) = shared.handlers.get(job.queue.as_str()) else { return };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler.run(job)))
        .unwrap_or_else(|_| Err(Retry("the handler panicked".into())));
    let outcome = match result {
        Ok(()) => JobOutcome::Done,
        Err(Retry(error)) => {
            let delay = shared.settings.delay(job.attempts);
            tracing::warn!(queue = job.queue, key = job.key, attempts = job.attempts, ?delay, "a job failed: {error}");
            JobOutcome::Retry { at: guard::meta::now_micros() + micros(delay), error }
        }
    };
    if let Err(e) = shared.guard.finish_job(job.id, &outcome) {
        // the lease runs out and the job is claimed again
        tracing::warn!(queue = job.queue, key = job.key, "a job's end could not be recorded: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_up_to_the_cap() {
        let s = Settings::default();
        assert_eq!(s.delay(1), Duration::from_secs(10));
        assert_eq!(s.delay(2), Duration::from_secs(20));
        assert_eq!(s.delay(4), Duration::from_secs(80));
        assert_eq!(s.delay(12), Duration::from_secs(3600));
        assert_eq!(s.delay(10_000), Duration::from_secs(3600));
    }
}
