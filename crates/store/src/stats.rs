//! Fresh planner statistics after bulk writes. Query plans depend on the database's
//! statistics, which lag far behind a bulk load (SQLite never gathers them on its own;
//! PostgreSQL's autovacuum within a minute or so). A backend counts its committed writes
//! here and, each time the count since the last analysis reaches the count before it
//! (1,000, then 2,000, 4,000, ...), runs `ANALYZE` in the background: logarithmically
//! rare, never on a request's path, one at a time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Writes before the first analysis.
const FIRST: u64 = 1_000;

/// Counts writes and says when statistics are due.
#[derive(Debug)]
pub struct StatsTracker {
    writes: AtomicU64,
    due_at: AtomicU64,
    running: AtomicBool,
}

impl Default for StatsTracker {
    fn default() -> Self {
        StatsTracker { writes: AtomicU64::new(0), due_at: AtomicU64::new(FIRST), running: AtomicBool::new(false) }
    }
}

impl StatsTracker {
    /// Record `n` committed writes; `true` if the caller should now analyze (and then
    /// call [`StatsTracker::finished`]).
    pub fn record(&self, n: u64) -> bool {
        let total = self.writes.fetch_add(n, Ordering::Relaxed) + n;
        if total < self.due_at.load(Ordering::Relaxed) || self.running.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.due_at.store(total.saturating_mul(2), Ordering::Relaxed);
        true
    }

    /// After a commit of `writes` writes: if statistics are due, run `analyze` on a
    /// background thread (failures are logged; the next threshold retries).
    pub fn after_commit<E: std::fmt::Display>(
        self: &Arc<Self>,
        writes: u64,
        analyze: impl FnOnce() -> Result<(), E> + Send + 'static,
    ) {
        if self.record(writes) {
            let stats = self.clone();
            std::thread::spawn(move || {
                if let Err(e) = analyze() {
                    tracing::warn!("updating query planner statistics failed: {e}");
                }
                stats.finished();
            });
        }
    }

    /// The analysis started by [`StatsTracker::record`] is over.
    pub fn finished(&self) {
        self.running.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn analysis_is_due_at_doubling_counts_one_at_a_time() {
        let t = StatsTracker::default();
        assert!(!t.record(999));
        assert!(t.record(1), "due at 1,000 writes");
        assert!(!t.record(5_000), "one analysis at a time");
        t.finished();
        assert!(t.record(1), "6,001 writes passed the next threshold (2,000)");
        t.finished();
        assert!(!t.record(100), "next at 12,002");
    }
}
