//! The single SQLite writer, with group commit.
//!
//! SQLite allows one writer at a time, and with `synchronous=FULL` every COMMIT waits for
//! the disk. Writers that arrive while another holds the connection therefore share one
//! durable commit: each write transaction runs inside a SAVEPOINT of an outer
//! transaction; when it finishes and others are queued, it hands the connection on
//! without committing and waits; the last writer of the group COMMITs once for all and
//! wakes them. Nobody is acknowledged before that COMMIT has returned, and a writer that
//! fails rolls back only its own savepoint.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use rusqlite::Connection;
use store::{Result, StoreError};

/// Most write transactions that share one commit.
const MAX_GROUP: usize = 256;

pub(crate) struct WriterState {
    pub conn: Connection,
    /// An outer transaction is open (holding released savepoints not yet durable).
    open: bool,
    /// Number of the current group; groups are committed in order.
    group: u64,
    /// Writers in the open group.
    members: usize,
}

/// Which groups are durable, and which failed.
struct Durable {
    done: u64,
    failed: Option<(u64, String)>,
}

pub(crate) struct Writer {
    state: Mutex<WriterState>,
    /// Threads waiting for the connection: if there are any, a finishing writer
    /// leaves the commit to them.
    queued: AtomicUsize,
    durable: Mutex<Durable>,
    committed: Condvar,
}

/// Lock, recovering from a panic in another thread: the data behind these locks stays
/// consistent (a panicking writer's transaction is rolled back by its drop), and one
/// panic must not stop every later write.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn err(e: rusqlite::Error) -> StoreError {
    crate::err(e)
}

impl Writer {
    pub fn new(conn: Connection) -> Writer {
        Writer {
            state: Mutex::new(WriterState { conn, open: false, group: 0, members: 0 }),
            queued: AtomicUsize::new(0),
            durable: Mutex::new(Durable { done: 0, failed: None }),
            committed: Condvar::new(),
        }
    }

    /// Take the connection and open a savepoint for one write transaction.
    pub fn begin(&self) -> Result<MutexGuard<'_, WriterState>> {
        self.queued.fetch_add(1, Ordering::SeqCst);
        let mut w = lock(&self.state);
        self.queued.fetch_sub(1, Ordering::SeqCst);
        let started = (|| {
            if !w.open {
                w.conn.execute_batch("BEGIN IMMEDIATE").map_err(err)?;
                w.open = true;
                w.group += 1;
                w.members = 0;
            }
            w.conn.execute_batch("SAVEPOINT medkarta_write").map_err(err)
        })();
        if let Err(e) = started {
            self.hand_over(&mut w);
            return Err(e);
        }
        Ok(w)
    }

    /// Undo one write transaction (its savepoint only) and hand the connection over.
    pub fn rollback(&self, mut w: MutexGuard<'_, WriterState>) {
        let undone = w.conn.execute_batch("ROLLBACK TO medkarta_write; RELEASE medkarta_write");
        if let Err(e) = undone {
            tracing::error!("rollback of a write failed: {e}");
        }
        self.check_outer(&mut w);
        self.hand_over(&mut w);
    }

    /// Finish one write transaction: durable when this returns `Ok`.
    pub fn commit(&self, mut w: MutexGuard<'_, WriterState>) -> Result<()> {
        if let Err(e) = w.conn.execute_batch("RELEASE medkarta_write") {
            let e = err(e);
            drop(w.conn.execute_batch("ROLLBACK TO medkarta_write; RELEASE medkarta_write"));
            self.check_outer(&mut w);
            self.hand_over(&mut w);
            return Err(e);
        }
        w.members += 1;
        let group = w.group;
        if self.queued.load(Ordering::SeqCst) > 0 && w.members < MAX_GROUP {
            drop(w); // the next writer commits for both of us
        } else {
            self.commit_group(&mut w);
            drop(w);
        }
        self.wait_durable(group)
    }

    /// Copy the whole write-ahead log into the database, start it again from the
    /// beginning and truncate the file, holding the writer connection (queued writers
    /// wait; the group open before is committed first). Waits for readers still using
    /// old frames, up to the busy timeout.
    pub fn restart_log(&self) -> Result<()> {
        self.queued.fetch_add(1, Ordering::SeqCst);
        let mut w = lock(&self.state);
        self.queued.fetch_sub(1, Ordering::SeqCst);
        let started = std::time::Instant::now();
        self.commit_group(&mut w);
        let (busy, _, _): (i64, i64, i64) = w
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(err)?;
        if busy != 0 {
            tracing::warn!("the write-ahead log could not be restarted: readers kept it busy");
        }
        tracing::debug!(ms = started.elapsed().as_millis() as u64, "write-ahead log restarted");
        Ok(())
    }

    /// SQLite rolls the whole transaction back on some errors (I/O, full disk): then the
    /// group's earlier writes are lost and their writers must hear so.
    fn check_outer(&self, w: &mut WriterState) {
        if w.open && w.conn.is_autocommit() {
            w.open = false;
            self.finish_group(w.group, Some("the database rolled back the transaction (I/O error?)".into()));
        }
    }

    /// Called whenever the connection is released: commit if nobody else will.
    fn hand_over(&self, w: &mut WriterState) {
        if w.open && self.queued.load(Ordering::SeqCst) == 0 {
            self.commit_group(w);
        }
    }

    fn commit_group(&self, w: &mut WriterState) {
        if !w.open {
            return;
        }
        let result = w.conn.execute_batch("COMMIT");
        w.open = false;
        match result {
            Ok(()) => self.finish_group(w.group, None),
            Err(e) => {
                tracing::error!("commit failed: {e}");
                if !w.conn.is_autocommit() {
                    drop(w.conn.execute_batch("ROLLBACK"));
                }
                self.finish_group(w.group, Some(format!("commit failed: {e}")));
            }
        }
    }

    fn finish_group(&self, group: u64, failure: Option<String>) {
        let mut d = lock(&self.durable);
        d.done = d.done.max(group);
        if let Some(f) = failure {
            d.failed = Some((group, f));
        }
        drop(d);
        self.committed.notify_all();
    }

    fn wait_durable(&self, group: u64) -> Result<()> {
        let mut d = lock(&self.durable);
        while d.done < group {
            d = self.committed.wait(d).unwrap_or_else(PoisonError::into_inner);
        }
        match &d.failed {
            Some((g, why)) if *g == group => Err(StoreError::Unavailable(why.clone())),
            _ => Ok(()),
        }
    }
}
