//! The writer of the audit log. Every audited request hands its entry to [`AuditLog::record`]
//! and waits until it is durable; entries that arrive while a batch is being written
//! are written together as the next batch (group commit: one database commit for all of
//! them), so the cost of auditing every read is shared by concurrent readers. A request
//! whose entry cannot be written gets the error, and must not be answered with data.
//!
//! Writes record their entries inside their own transaction instead
//! ([`store::Tx::audit`]), so that a write and its audit entry commit together or not at
//! all. On PostgreSQL, [`AuditLog::seal`] chains what concurrent transactions appended
//! (run by [`AuditLog::start`] in the background); it also writes the signed checkpoints.
//!
//! A server gives the log a [`Journal`]: then an entry is durable for this purpose once it
//! is in the journal file, and the sealer moves the journal into the database (see
//! [`crate::journal`]); without one (commands, `--audit-sync`), each group of entries is a
//! synchronous database commit before the requests are answered.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use store::Store;
use store::audit::NewAudit;

use crate::AuditError;
use crate::checkpoint::Signer;
use crate::journal::Journal;

#[derive(Default)]
struct Queue {
    waiting: Vec<NewAudit>,
    /// Number of the batch that `waiting` will become.
    next: u64,
    /// Batches finished (written or failed), counted from 1.
    done: u64,
    writing: bool,
    /// Recently failed batches.
    failed: Vec<(u64, String)>,
}

/// The audit log of one store.
pub struct AuditLog {
    store: Arc<dyn Store>,
    queue: Mutex<Queue>,
    written: Condvar,
    /// Signs checkpoints of the chain; none: no checkpoints.
    signer: Option<Signer>,
    journal: Option<Journal>,
}

impl AuditLog {
    pub fn new(store: Arc<dyn Store>, signer: Option<Signer>) -> Self {
        let queue = Mutex::new(Queue { next: 1, ..Queue::default() });
        AuditLog { store, queue, written: Condvar::new(), signer, journal: None }
    }

    /// Append entries to `journal` instead of committing each group to the database.
    pub fn with_journal(mut self, journal: Journal) -> Self {
        self.journal = Some(journal);
        self
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Append an entry and wait until it is durable (in the journal, or committed).
    pub fn record(&self, entry: NewAudit) -> Result<(), AuditError> {
        if let Some(j) = &self.journal {
            return j.append(&entry);
        }
        let mut q = self.lock();
        q.waiting.push(entry);
        let mine = q.next;
        loop {
            if q.done >= mine {
                return match q.failed.iter().find(|(b, _)| *b == mine) {
                    Some((_, e)) => Err(AuditError::Unavailable(e.clone())),
                    None => Ok(()),
                };
            }
            if !q.writing && q.next == mine {
                // lead: write everything waiting as batch `mine`
                let batch = std::mem::take(&mut q.waiting);
                q.writing = true;
                q.next += 1;
                drop(q);
                let result = self.store.audit_append(&batch);
                q = self.lock();
                q.writing = false;
                q.done = mine;
                if let Err(e) = result {
                    tracing::error!("audit log write failed: {e}");
                    q.failed.push((mine, e.to_string()));
                    let n = q.failed.len();
                    if n > 64 {
                        q.failed.drain(..n - 64);
                    }
                }
                self.written.notify_all();
                continue;
            }
            q = self.written.wait(q).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Sync the journal and move it into the database, then chain what was appended but
    /// not yet chained (PostgreSQL). Returns the number of entries chained.
    pub fn seal(&self) -> Result<usize, AuditError> {
        self.catch_up()?;
        let n = self.store.audit_seal()?;
        Ok(n)
    }

    /// Move every entry recorded so far into the database (e.g. before showing a
    /// patient their log).
    pub fn catch_up(&self) -> Result<(), AuditError> {
        if let Some(j) = &self.journal {
            j.sync()?;
            j.ingest(self.store.as_ref())?;
        }
        Ok(())
    }

    /// Sign the chain's head as a checkpoint (see [`crate::checkpoint`]) if it moved since
    /// the last one.
    pub fn checkpoint(&self) -> Result<Option<i64>, AuditError> {
        let Some(signer) = &self.signer else { return Ok(None) };
        crate::checkpoint::write(self.store.as_ref(), signer)
    }

    /// Run the sealer on a thread of its own, for as long as the process lives: the journal
    /// (synced every 10 ms, moved into the database every 100 ms), the chain on PostgreSQL
    /// every 50 ms (SQLite chains on append), the checkpoints every `every`.
    pub fn start(self: &Arc<Self>, every: Duration) {
        // what a previous run left in the journal, before any new request
        if let Err(e) = self.catch_up() {
            tracing::error!("audit journal: {e}");
        }
        let log = Arc::clone(self);
        let chain = log.store.backend() != "sqlite";
        let spawned = std::thread::Builder::new().name("audit-sealer".into()).spawn(move || {
            let mut last = Instant::now();
            for tick in 1u64.. {
                std::thread::sleep(Duration::from_millis(10));
                if let Some(j) = &log.journal {
                    // to the disk every 10 ms; into the database every 100 ms, in batches
                    // (each a commit: fewer, larger ones cost less)
                    let moved = j.sync().and_then(|()| match tick % 10 == 0 || j.backlog() > (1 << 20) {
                        true => j.ingest(log.store.as_ref()).map(|_| ()),
                        false => Ok(()),
                    });
                    if let Err(e) = moved {
                        tracing::error!("audit journal: {e}");
                    }
                }
                if chain
                    && tick % 5 == 0
                    && let Err(e) = log.store.audit_seal()
                {
                    tracing::error!("audit chain: {e}");
                }
                if last.elapsed() >= every {
                    last = Instant::now();
                    if let Err(e) = log.checkpoint() {
                        tracing::error!("audit checkpoint: {e}");
                    }
                }
            }
        });
        if let Err(e) = spawned {
            tracing::error!("cannot start the audit sealer: {e}");
        }
    }
}
