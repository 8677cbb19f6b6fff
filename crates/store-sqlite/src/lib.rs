//! The embedded backend: one SQLite file in WAL mode with `synchronous=FULL`, so that a
//! committed (acknowledged) write survives a crash of the process or the machine.
//!
//! One writer connection (SQLite allows one writer at a time; `BEGIN IMMEDIATE` takes the
//! write lock up front so a transaction never fails half-way on a lock upgrade), with
//! group commit ([`writer`]), and a pool of reader connections that proceed concurrently
//! with it.

mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use writer::{Writer, WriterState};

use rusqlite::config::DbConfig;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, ErrorCode, OpenFlags, params_from_iter};
use search::{IndexEntry, Query};
use store::audit::{AuditCounts, AuditQuery, AuditRow, NewAudit};
use store::ops::{self, SqlConn};
use store::sql::{Arg, Dialect, SCHEMA_VERSION, Sql, migrations};
use store::stats::StatsTracker;
use store::{
    CurrentVersion, Expect, HistoryQuery, NewVersion, Record, Result, SearchPage, Store, StoreError, StoredResource, Tx,
};

/// Reader connections open at most: reads are CPU work on a few cores, so more would only
/// add page caches (and memory), not throughput; a request beyond waits for one.
const MAX_READERS: usize = 8;

/// Page cache of a reader connection (KiB; the writer keeps SQLite's 64 MiB of ours).
const READER_CACHE_KIB: i64 = 4 * 1024;

/// The reader connections: idle ones, and how many exist.
#[derive(Default)]
struct Readers {
    idle: Vec<Connection>,
    open: usize,
}

/// A SQLite database file with its connections.
pub struct SqliteStore {
    path: PathBuf,
    writer: Arc<Writer>,
    readers: Mutex<Readers>,
    /// Signalled when a reader connection is returned.
    reader_free: std::sync::Condvar,
    stats: Arc<StatsTracker>,
}

/// WAL pages after which a checkpoint starts (SQLite's own default threshold).
const CHECKPOINT_PAGES: std::ffi::c_int = 1000;

/// WAL pages after which the checkpoint also starts the log again from its beginning and
/// truncates the file (64 MiB at 4 KiB pages). A passive checkpoint never waits, so under
/// reads and writes that never pause it never finds every frame copied and unused at
/// once, and the log grew without bound (477 MB after 10 s of the CRUD mix beside
/// reads). This one runs as the writer (no write starts meanwhile) and waits for the
/// readers of old frames (milliseconds); the passive checkpoints before it have copied
/// nearly everything.
const RESTART_PAGES: std::ffi::c_int = if cfg!(test) { 2_000 } else { 16_384 };

/// Copies the write-ahead log into the database file on a thread of its own: SQLite's
/// automatic checkpoint would run inside the commit of whichever write crossed the
/// threshold, holding the one writer (and that request) meanwhile.
struct Checkpointer {
    path: PathBuf,
    running: AtomicBool,
    /// The store's writer, for the restarting checkpoint (set once the store is made).
    writer: std::sync::OnceLock<std::sync::Weak<Writer>>,
}

impl Checkpointer {
    /// After a commit left `pages` pages in the log.
    fn wal_grew(self: &Arc<Self>, pages: std::ffi::c_int) {
        // after every commit past the threshold (a checkpoint only once 1,000 further
        // pages were logged made each one a burst of I/O: the CRUD mix's p95 at one
        // connection went from 2.6 to 9 ms)
        if pages < CHECKPOINT_PAGES || self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        std::thread::spawn(move || {
            let done = match me.writer.get().and_then(std::sync::Weak::upgrade) {
                // as the writer, so that no write starts meanwhile
                Some(writer) if pages >= RESTART_PAGES => writer.restart_log(),
                // PASSIVE: copies what it can without waiting for readers or the writer
                _ => open_conn(&me.path)
                    .and_then(|c| c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())).map_err(err)),
            };
            if let Err(e) = done {
                tracing::warn!("WAL checkpoint failed: {e}");
            }
            me.running.store(false, Ordering::Release);
        });
    }
}

pub(crate) fn err(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::ConstraintViolation) => StoreError::Conflict(e.to_string()),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Unavailable(e.to_string()),
        _ => StoreError::Backend(e.to_string()),
    }
}

fn open_conn(path: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let c = Connection::open_with_flags(path, flags).map_err(err)?;
    c.execute_batch(
        // case_sensitive_like: index values and search patterns are already folded, and it
        // lets `LIKE 'prefix%'` use the index range; temp_store: the sub-journal of each
        // write's savepoint stays in memory instead of a temporary file
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
         PRAGMA busy_timeout = 10000; PRAGMA cache_size = -65536; PRAGMA case_sensitive_like = ON; \
         PRAGMA temp_store = MEMORY;",
    )
    .map_err(err)?;
    // the write path alone uses a few dozen statements (rusqlite keeps 16): evicted ones
    // were parsed again on every write
    c.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // Plans made without looking at bound values. Otherwise SQLite marks a statement to
    // be prepared again when some bound values change (e.g. one compared with `=` outside
    // an index, in case it is 0 or 1), and rusqlite clears the bindings of every statement
    // it takes back into its cache — so every such statement was parsed and planned
    // again at each use: 18 % of the server's time reading by id. Prefix searches bound
    // their index range themselves instead of relying on `LIKE ?` (`store::sql`).
    c.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).map_err(err)?;
    Ok(c)
}

/// Planner statistics: row counts per index (`sqlite_stat1`) only. SQLite built with
/// STAT4 also keeps sample values, and then re-prepares a statement whenever a bound value
/// could change its plan: every resource read and write parsed its SQL again (3 % of the
/// writer's time, more on the read path). Searches choose their driving clause by their
/// own index probes, not by these samples.
const ANALYZE: &str = "PRAGMA analysis_limit = 1000; ANALYZE; DELETE FROM sqlite_stat4; ANALYZE sqlite_schema;";

/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 256;

impl SqliteStore {
    /// Open (creating and migrating if needed) the database in directory `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join("medkarta.sqlite");
        let mut writer = open_conn(&path)?;
        let checkpoints = Arc::new(Checkpointer {
            path: path.clone(),
            running: AtomicBool::new(false),
            writer: std::sync::OnceLock::new(),
        });
        let hook = checkpoints.clone();
        writer
            .wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages: std::ffi::c_int| {
                hook.wal_grew(pages);
                Ok(())
            }))
            .map_err(err)?;
        let version: i64 = writer.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(err)?;
        if version == 0 {
            writer
                .execute_batch(&format!(
                    "BEGIN; {} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;",
                    include_str!("schema.sql")
                ))
                .map_err(err)?;
        } else if version > SCHEMA_VERSION {
            return Err(StoreError::Backend(format!(
                "{} has schema version {version}, newer than this build understands ({SCHEMA_VERSION})",
                path.display()
            )));
        } else {
            for (to, statements) in migrations(Dialect::Sqlite, version) {
                writer
                    .execute_batch(&format!("BEGIN; {statements} PRAGMA user_version = {to}; COMMIT;"))
                    .map_err(err)?;
            }
        }
        let writer = Arc::new(Writer::new(writer));
        drop(checkpoints.writer.set(Arc::downgrade(&writer)));
        Ok(SqliteStore {
            path,
            writer,
            readers: Mutex::default(),
            reader_free: std::sync::Condvar::new(),
            stats: Arc::default(),
        })
    }

    fn with_reader<T>(&self, f: impl FnOnce(&mut Conn<'_>) -> Result<T>) -> Result<T> {
        let mut readers = writer::lock(&self.readers);
        let pooled = loop {
            if let Some(c) = readers.idle.pop() {
                break Some(c);
            }
            if readers.open < MAX_READERS {
                readers.open += 1;
                break None;
            }
            readers = self.reader_free.wait(readers).unwrap_or_else(std::sync::PoisonError::into_inner);
        };
        drop(readers);
        let opened = match pooled {
            Some(c) => Ok(c),
            None => open_conn(&self.path).and_then(|c| {
                c.execute_batch(&format!("PRAGMA cache_size = -{READER_CACHE_KIB};")).map_err(err)?;
                Ok(c)
            }),
        };
        let mut conn = match opened {
            Ok(c) => c,
            Err(e) => {
                writer::lock(&self.readers).open -= 1;
                self.reader_free.notify_one();
                return Err(e);
            }
        };
        let out = f(&mut Conn(&mut conn));
        writer::lock(&self.readers).idle.push(conn);
        self.reader_free.notify_one();
        out
    }
}

/// A borrowed connection implementing the shared SQL operations.
struct Conn<'a>(&'a mut Connection);

fn to_sql(a: &Arg) -> SqlValue {
    match a {
        Arg::Text(s) => SqlValue::Text(s.clone()),
        Arg::Int(i) => SqlValue::Integer(*i),
        Arg::Real(f) => SqlValue::Real(*f),
        Arg::Blob(b) => SqlValue::Blob(b.clone()),
        Arg::Null => SqlValue::Null,
    }
}

/// Statements with more parameters than this (searches with long value lists, say) are
/// prepared for their one use, not kept: they would push the statements that are used
/// again out of the cache. The multi-row inserts of index rows come in a few fixed sizes
/// and are kept (`Sql::reusable`).
const CACHED_PARAMETERS: usize = 64;

impl Conn<'_> {
    fn with_statement<T>(
        &mut self,
        sql: &Sql,
        f: impl FnOnce(&mut rusqlite::Statement<'_>) -> rusqlite::Result<T>,
    ) -> Result<T> {
        if sql.args.len() > CACHED_PARAMETERS && !sql.reusable {
            f(&mut self.0.prepare(&sql.text).map_err(err)?).map_err(err)
        } else {
            let mut cached = self.0.prepare_cached(&sql.text).map_err(err)?;
            f(&mut cached).map_err(err)
        }
    }
}

impl SqlConn for Conn<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&mut self, sql: &Sql) -> Result<u64> {
        let args = params_from_iter(sql.args.iter().map(to_sql));
        self.with_statement(sql, |stmt| stmt.execute(args)).map(|n| n as u64)
    }

    fn query_ints(&mut self, sql: &Sql) -> Result<Vec<Vec<i64>>> {
        self.with_statement(sql, |stmt| {
            let n = stmt.column_count();
            let rows = stmt.query_map(params_from_iter(sql.args.iter().map(to_sql)), |r| {
                (0..n).map(|i| r.get::<_, i64>(i)).collect()
            })?;
            rows.collect::<rusqlite::Result<Vec<Vec<i64>>>>()
        })
    }

    fn query_texts(&mut self, sql: &Sql) -> Result<Vec<String>> {
        let mut stmt = self.0.prepare_cached(&sql.text).map_err(err)?;
        let rows = stmt.query_map(params_from_iter(sql.args.iter().map(to_sql)), |r| r.get(0)).map_err(err)?;
        rows.collect::<rusqlite::Result<Vec<String>>>().map_err(err)
    }

    fn query_values(&mut self, sql: &Sql) -> Result<Vec<Vec<Arg>>> {
        let mut stmt = self.0.prepare_cached(&sql.text).map_err(err)?;
        let n = stmt.column_count();
        let rows = stmt
            .query_map(params_from_iter(sql.args.iter().map(to_sql)), |r| {
                (0..n)
                    .map(|i| {
                        Ok(match r.get::<_, SqlValue>(i)? {
                            SqlValue::Integer(v) => Arg::Int(v),
                            SqlValue::Real(v) => Arg::Real(v),
                            SqlValue::Text(v) => Arg::Text(v),
                            SqlValue::Blob(v) => Arg::Blob(v),
                            SqlValue::Null => Arg::Null,
                        })
                    })
                    .collect()
            })
            .map_err(err)?;
        rows.collect::<rusqlite::Result<Vec<Vec<Arg>>>>().map_err(err)
    }

    fn query_resources(&mut self, sql: &Sql) -> Result<Vec<StoredResource>> {
        let mut stmt = self.0.prepare_cached(&sql.text).map_err(err)?;
        let rows = stmt
            .query_map(params_from_iter(sql.args.iter().map(to_sql)), |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get::<_, String>(4)?, r.get(5)?))
            })
            .map_err(err)?;
        let mut out = Vec::new();
        for row in rows {
            let (t, id, v, lu, m, body) = row.map_err(err)?;
            out.push(ops::stored(t, id, v, lu, &m, body)?);
        }
        Ok(out)
    }
}

/// A write transaction holding the writer connection (inside a savepoint).
struct SqliteTx<'a> {
    store: &'a SqliteStore,
    w: Option<MutexGuard<'a, WriterState>>,
    writes: u64,
    /// Index rows, full-text documents and counts of this transaction's writes not yet
    /// inserted: sent as a few multi-row statements when the transaction next reads the
    /// index or commits. Each statement inside the write's savepoint costs a statement
    /// savepoint, and FTS5 flushes its pending terms into a new segment at every one:
    /// a statement per index row made that a third of the writer's time.
    pending: ops::Pending,
}

impl SqliteTx<'_> {
    fn conn(&mut self) -> Result<Conn<'_>> {
        match self.w.as_mut() {
            Some(w) => Ok(Conn(&mut w.conn)),
            None => Err(StoreError::Backend("transaction already finished".into())),
        }
    }

    /// The connection, with the pending index rows inserted: for anything that reads the
    /// index.
    fn flushed(&mut self) -> Result<Conn<'_>> {
        let mut pending = std::mem::take(&mut self.pending);
        ops::flush(&mut self.conn()?, &mut pending)?;
        self.conn()
    }
}

impl Drop for SqliteTx<'_> {
    fn drop(&mut self) {
        if let Some(w) = self.w.take() {
            self.store.writer.rollback(w);
        }
    }
}

impl Tx for SqliteTx<'_> {
    fn current(&mut self, resource_type: &str, id: &str) -> Result<Option<CurrentVersion>> {
        ops::current(&mut self.conn()?, resource_type, id)
    }

    fn read(&mut self, resource_type: &str, id: &str) -> Result<Option<StoredResource>> {
        ops::read(&mut self.conn()?, resource_type, id)
    }

    fn search_ids(&mut self, query: &Query, limit: usize) -> Result<Vec<String>> {
        ops::search_ids(&mut self.flushed()?, query, limit)
    }

    fn lock_key(&mut self, _key: &str) -> Result<()> {
        Ok(()) // the single writer already serialises every write transaction
    }

    fn write(&mut self, version: &NewVersion<'_>) -> Result<()> {
        self.writes += 1;
        let mut pending = std::mem::take(&mut self.pending);
        let written = ops::write(&mut self.conn()?, version, &mut pending);
        self.pending = pending;
        written
    }

    fn scan(&mut self, resource_type: &str, after: i64, limit: usize) -> Result<Vec<(i64, StoredResource)>> {
        ops::scan(&mut self.flushed()?, resource_type, after, limit)
    }

    fn reindex(&mut self, resource_type: &str, params: &[&str], rows: &[(i64, Vec<IndexEntry>)]) -> Result<()> {
        self.writes += rows.len() as u64;
        ops::reindex(&mut self.flushed()?, resource_type, params, rows)
    }

    fn put_record(&mut self, kind: &str, id: &str, data: &str, expect: Expect) -> Result<bool> {
        ops::put_record(&mut self.conn()?, kind, id, data, expect)
    }

    fn delete_record(&mut self, kind: &str, id: &str) -> Result<bool> {
        ops::delete_record(&mut self.conn()?, kind, id)
    }

    fn record(&mut self, kind: &str, id: &str) -> Result<Option<Record>> {
        Ok(ops::records(&mut self.conn()?, kind, Some(id))?.into_iter().next().map(|(_, r)| r))
    }

    fn versions(&mut self, after: i64, limit: usize) -> Result<Vec<(i64, StoredResource)>> {
        ops::versions(&mut self.conn()?, after, limit)
    }

    fn replace_body(&mut self, seq: i64, body: &[u8]) -> Result<()> {
        ops::replace_body(&mut self.conn()?, seq, body)
    }

    fn audit(&mut self, rows: &[NewAudit]) -> Result<()> {
        // one writer: chained as appended
        store::audit::append(&mut self.conn()?, rows, true).map(|_| ())
    }

    fn audit_seal(&mut self, _limit: usize) -> Result<usize> {
        Ok(0)
    }

    fn enqueue(&mut self, job: &store::jobs::NewJob<'_>, now: i64) -> Result<bool> {
        store::jobs::enqueue(&mut self.conn()?, job, now)
    }

    fn claim_jobs(&mut self, queues: &[&str], now: i64, lease: i64, limit: usize) -> Result<Vec<store::jobs::Job>> {
        store::jobs::claim(&mut self.conn()?, queues, now, lease, limit)
    }

    fn finish_job(&mut self, id: i64, outcome: &store::jobs::JobOutcome) -> Result<()> {
        store::jobs::finish(&mut self.conn()?, id, outcome)
    }

    fn job_counts(&mut self) -> Result<Vec<store::jobs::QueueCount>> {
        store::jobs::counts(&mut self.conn()?)
    }

    fn commit(mut self: Box<Self>) -> Result<()> {
        self.flushed()?;
        let w = self.w.take().ok_or_else(|| StoreError::Backend("transaction already finished".into()))?;
        self.store.writer.commit(w)?;
        let path = self.store.path.clone();
        // sampled (analysis_limit), so a few milliseconds whatever the size
        self.store
            .stats
            .after_commit(self.writes, move || open_conn(&path).and_then(|c| c.execute_batch(ANALYZE).map_err(err)));
        Ok(())
    }
}

impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn begin(&self) -> Result<Box<dyn Tx + '_>> {
        let w = self.writer.begin()?;
        Ok(Box::new(SqliteTx { store: self, w: Some(w), writes: 0, pending: ops::Pending::default() }))
    }

    fn read(&self, resource_type: &str, id: &str) -> Result<Option<StoredResource>> {
        self.with_reader(|c| ops::read(c, resource_type, id))
    }

    fn read_version(&self, resource_type: &str, id: &str, version: u64) -> Result<Option<StoredResource>> {
        self.with_reader(|c| ops::read_version(c, resource_type, id, version))
    }

    fn history(&self, query: &HistoryQuery) -> Result<(Vec<StoredResource>, u64)> {
        self.with_reader(|c| ops::history(c, query))
    }

    fn search(&self, query: &Query, count: usize) -> Result<SearchPage> {
        self.with_reader(|c| ops::search(c, query, count))
    }

    fn referring_types(
        &self,
        target_type: &str,
        target_id: &str,
        candidates: &[(&str, Vec<&str>)],
    ) -> Result<Vec<String>> {
        self.with_reader(|c| ops::referring_types(c, target_type, target_id, candidates))
    }

    fn check(&self) -> Result<()> {
        self.with_reader(|c| {
            c.query_ints(&{
                let mut s = Sql::new(Dialect::Sqlite);
                s.push("SELECT count(*) FROM resources WHERE rkey = 0");
                s
            })
        })
        .map(|_| ())
    }

    fn records(&self, kind: &str) -> Result<Vec<(String, Record)>> {
        self.with_reader(|c| ops::records(c, kind, None))
    }

    fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditRow>> {
        self.with_reader(|c| store::audit::query(c, query))
    }

    fn audit_counts(&self, upto: i64) -> Result<AuditCounts> {
        self.with_reader(|c| store::audit::counts(c, upto))
    }

    fn record(&self, kind: &str, id: &str) -> Result<Option<Record>> {
        Ok(self.with_reader(|c| ops::records(c, kind, Some(id)))?.into_iter().next().map(|(_, r)| r))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

    use std::sync::atomic::{AtomicBool, Ordering};

    use store::{Method, NewVersion, Store};

    use super::{RESTART_PAGES, SqliteStore};

    /// Readers that never pause beside a writer that never pauses: the write-ahead log is
    /// started again and truncated now and then, not left to grow with every write.
    #[test]
    fn the_write_ahead_log_stays_bounded_under_reads_that_never_pause() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let body = format!(r#"{{"resourceType":"Basic","text":"{}"}}"#, "x".repeat(3000));
        let stop = AtomicBool::new(false);
        let mut largest = 0;
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    while !stop.load(Ordering::Relaxed) {
                        store.read("Basic", "b0").unwrap();
                    }
                });
            }
            for i in 0..6_000 {
                let id = format!("b{i}");
                let mut tx = store.begin().unwrap();
                let v = NewVersion {
                    resource_type: "Basic",
                    id: &id,
                    version: 1,
                    last_updated: 1,
                    method: Method::Create,
                    body: Some(body.as_bytes()),
                    index: &[],
                };
                tx.write(&v).unwrap();
                tx.commit().unwrap();
                let wal = std::fs::metadata(dir.path().join("medkarta.sqlite-wal")).map_or(0, |m| m.len());
                largest = largest.max(wal);
            }
            stop.store(true, Ordering::Relaxed);
        });
        // 6,000 writes of a page or more each: ~24 MiB of log if nothing restarted it
        let bound = 3 * u64::try_from(RESTART_PAGES).unwrap() * 4096;
        assert!(largest < bound, "the log reached {largest} bytes (bound {bound})");
    }

    /// A statement taken from the cache again is not parsed and planned again: the read
    /// by id (the statement `store::ops::read` sends) a thousand times, each id
    /// different, is prepared once.
    #[test]
    fn cached_statements_are_not_prepared_again_at_each_use() {
        let dir = tempfile::tempdir().unwrap();
        drop(SqliteStore::open(dir.path()).unwrap());
        let c = super::open_conn(&dir.path().join("medkarta.sqlite")).unwrap();
        let sql = "SELECT r.rtype, r.id, h.version, h.last_updated, h.method, h.body FROM resources r \
                   JOIN history h ON h.seq = r.cur_seq WHERE r.rtype = ?1 AND r.id = ?2";
        for i in 0..1_000 {
            let mut stmt = c.prepare_cached(sql).unwrap();
            let mut rows = stmt.query(rusqlite::params!["Patient", format!("p{i}")]).unwrap();
            while rows.next().unwrap().is_some() {}
        }
        let stmt = c.prepare_cached(sql).unwrap();
        assert_eq!(stmt.get_status(rusqlite::StatementStatus::RePrepare), 0);
    }
}
