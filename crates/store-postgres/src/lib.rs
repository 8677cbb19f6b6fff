//! The production backend: PostgreSQL through the synchronous `postgres` client (calls
//! run on blocking threads), a bounded connection pool, the schema created and migrated
//! on first connection, and the target database created if it does not exist.
//!
//! Concurrency: writers lock the resource row (`SELECT ... FOR UPDATE`) before writing a
//! new version; unique keys catch two creations of the same id; conditional creates take
//! a transaction-scoped advisory lock on their criteria. Unrelated writes never wait on
//! each other.

pub mod blob;
mod pool;

use std::error::Error as _;
use std::sync::Arc;

use bytes::BytesMut;
use postgres::error::SqlState;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, Config, NoTls};
use search::{IndexEntry, Query};
use store::audit::{AuditCounts, AuditQuery, AuditRow, NewAudit};
use store::ops::{self, SqlConn};
use store::sql::{Arg, Dialect, SCHEMA_VERSION, Sql, migrations};
use store::stats::StatsTracker;
use store::{
    CurrentVersion, Expect, HistoryQuery, NewVersion, Record, Result, SearchPage, Store, StoreError, StoredResource, Tx,
};

use pool::{Pool, Pooled, Session};

/// Connections opened at most (PostgreSQL's default `max_connections` is 100).
const MAX_CONNECTIONS: usize = 32;

/// A PostgreSQL database with a pool of connections.
pub struct PostgresStore {
    pool: Pool,
    config: Config,
    stats: Arc<StatsTracker>,
}

fn err(e: postgres::Error) -> StoreError {
    match e.code() {
        Some(c)
            if *c == SqlState::UNIQUE_VIOLATION
                || *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::T_R_DEADLOCK_DETECTED =>
        {
            StoreError::Conflict(e.to_string())
        }
        Some(_) => StoreError::Backend(e.as_db_error().map_or_else(|| e.to_string(), |d| d.message().to_string())),
        None if e.is_closed() || e.source().is_some() => StoreError::Unavailable(e.to_string()),
        None => StoreError::Backend(e.to_string()),
    }
}

/// Is there a database at `url` (without creating it, as [`PostgresStore::open`] would)?
pub fn database_exists(url: &str) -> Result<bool> {
    let config: Config = url.parse().map_err(|e| StoreError::Unavailable(format!("invalid database URL: {e}")))?;
    match config.connect(NoTls) {
        Ok(_) => Ok(true),
        Err(e) if e.code() == Some(&SqlState::INVALID_CATALOG_NAME) => Ok(false),
        Err(e) => Err(connect_error(&config, &e)),
    }
}

impl PostgresStore {
    /// Connect to `url` (`postgres://user@host:port/db`), creating the database if it is
    /// missing, and create or migrate the schema.
    pub fn open(url: &str) -> Result<Self> {
        let config: Config = url.parse().map_err(|e| StoreError::Unavailable(format!("invalid database URL: {e}")))?;
        let mut client = match config.connect(NoTls) {
            Ok(c) => c,
            Err(e) if e.code() == Some(&SqlState::INVALID_CATALOG_NAME) => {
                create_database(&config)?;
                config.connect(NoTls).map_err(err)?
            }
            Err(e) => return Err(connect_error(&config, &e)),
        };
        migrate(&mut client)?;
        Ok(PostgresStore { pool: Pool::new(config.clone(), MAX_CONNECTIONS, client), config, stats: Arc::default() })
    }

    fn with_conn<T>(&self, f: impl FnOnce(&mut Conn<'_>) -> Result<T>) -> Result<T> {
        let mut pooled = self.pool.get()?;
        f(&mut Conn(pooled.client()?))
    }
}

/// "cannot connect to PostgreSQL at 127.0.0.1:1: Connection refused (os error 111)": where,
/// and the cause under the driver's "error connecting to server".
pub(crate) fn connect_error(config: &Config, e: &postgres::Error) -> StoreError {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            postgres::config::Host::Tcp(h) => h.clone(),
            postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .collect();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let mut cause = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    StoreError::Unavailable(format!("cannot connect to PostgreSQL at {}:{port}: {cause}", hosts.join(",")))
}

fn create_database(config: &Config) -> Result<()> {
    let name = config.get_dbname().unwrap_or("postgres").to_string();
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(StoreError::Unavailable(format!(
            "database '{name}' does not exist and its name is not safe to create"
        )));
    }
    let mut admin = config.clone();
    admin.dbname("postgres");
    let mut c = admin.connect(NoTls).map_err(|e| connect_error(&admin, &e))?;
    match c.batch_execute(&format!("CREATE DATABASE \"{name}\"")) {
        Ok(()) => Ok(()),
        Err(e) if e.code() == Some(&SqlState::DUPLICATE_DATABASE) => Ok(()),
        Err(e) => Err(err(e)),
    }
}

fn migrate(client: &mut Client) -> Result<()> {
    let mut tx = client.transaction().map_err(err)?;
    tx.batch_execute(
        "SELECT pg_advisory_xact_lock(4242424242); \
         CREATE TABLE IF NOT EXISTS medkarta_schema (version BIGINT NOT NULL)",
    )
    .map_err(err)?;
    let version: i64 =
        tx.query_opt("SELECT version FROM medkarta_schema", &[]).map_err(err)?.map(|r| r.get(0)).unwrap_or(0);
    if version == 0 {
        tx.batch_execute(include_str!("schema.sql")).map_err(err)?;
        tx.execute("INSERT INTO medkarta_schema (version) VALUES ($1)", &[&SCHEMA_VERSION]).map_err(err)?;
    } else if version > SCHEMA_VERSION {
        return Err(StoreError::Backend(format!(
            "the database has schema version {version}, newer than this build understands ({SCHEMA_VERSION})"
        )));
    } else {
        for (to, statements) in migrations(Dialect::Postgres, version) {
            tx.batch_execute(statements).map_err(err)?;
            if to == 3 {
                tx.batch_execute(COLLATE_C).map_err(err)?;
            }
            tx.execute("UPDATE medkarta_schema SET version = $1", &[&to]).map_err(err)?;
        }
    }
    tx.commit().map_err(err)
}

/// Part of schema version 3 on PostgreSQL: index values compare and sort by code point
/// (as on SQLite), whatever the database's default collation.
const COLLATE_C: &str = r#"
    ALTER TABLE idx_token ALTER COLUMN system TYPE TEXT COLLATE "C", ALTER COLUMN code TYPE TEXT COLLATE "C";
    ALTER TABLE idx_string ALTER COLUMN value TYPE TEXT COLLATE "C", ALTER COLUMN exact TYPE TEXT COLLATE "C";
    ALTER TABLE idx_reference ALTER COLUMN target_type TYPE TEXT COLLATE "C",
        ALTER COLUMN target_id TYPE TEXT COLLATE "C", ALTER COLUMN url TYPE TEXT COLLATE "C";
    ALTER TABLE idx_quantity ALTER COLUMN system TYPE TEXT COLLATE "C", ALTER COLUMN code TYPE TEXT COLLATE "C";
    ALTER TABLE idx_uri ALTER COLUMN value TYPE TEXT COLLATE "C";
"#;

/// A NULL that binds to a parameter of any type.
#[derive(Debug)]
struct AnyNull;

impl ToSql for AnyNull {
    fn to_sql(
        &self,
        _: &Type,
        _: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        Ok(IsNull::Yes)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn args(sql: &Sql) -> Vec<Box<dyn ToSql + Sync>> {
    sql.args
        .iter()
        .map(|a| -> Box<dyn ToSql + Sync> {
            match a {
                Arg::Text(s) => Box::new(s.clone()),
                Arg::Int(i) => Box::new(*i),
                Arg::Real(f) => Box::new(*f),
                Arg::Blob(b) => Box::new(b.clone()),
                Arg::Null => Box::new(AnyNull),
            }
        })
        .collect()
}

/// A borrowed client implementing the shared SQL operations.
struct Conn<'a>(&'a mut Session);

impl Conn<'_> {
    fn rows(&mut self, sql: &Sql) -> Result<Vec<postgres::Row>> {
        let boxed = args(sql);
        let refs: Vec<&(dyn ToSql + Sync)> = boxed.iter().map(|b| b.as_ref()).collect();
        let statement = self.0.statement(&sql.text).map_err(err)?;
        self.0.client.query(&statement, &refs).map_err(err)
    }
}

impl SqlConn for Conn<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&mut self, sql: &Sql) -> Result<u64> {
        let boxed = args(sql);
        let refs: Vec<&(dyn ToSql + Sync)> = boxed.iter().map(|b| b.as_ref()).collect();
        let statement = self.0.statement(&sql.text).map_err(err)?;
        self.0.client.execute(&statement, &refs).map_err(err)
    }

    fn query_ints(&mut self, sql: &Sql) -> Result<Vec<Vec<i64>>> {
        let rows = self.rows(sql)?;
        rows.iter().map(|r| (0..r.len()).map(|i| r.try_get::<_, i64>(i).map_err(err)).collect()).collect()
    }

    fn query_texts(&mut self, sql: &Sql) -> Result<Vec<String>> {
        self.rows(sql)?.iter().map(|r| r.try_get(0).map_err(err)).collect()
    }

    fn query_values(&mut self, sql: &Sql) -> Result<Vec<Vec<Arg>>> {
        let value = |r: &postgres::Row, i: usize| -> Result<Arg> {
            let ty = r.columns().get(i).map(|c| c.type_().clone());
            Ok(match ty {
                Some(Type::INT8) => r.try_get::<_, Option<i64>>(i).map_err(err)?.map_or(Arg::Null, Arg::Int),
                Some(Type::INT4) => {
                    r.try_get::<_, Option<i32>>(i).map_err(err)?.map_or(Arg::Null, |v| Arg::Int(i64::from(v)))
                }
                Some(Type::BYTEA) => r.try_get::<_, Option<Vec<u8>>>(i).map_err(err)?.map_or(Arg::Null, Arg::Blob),
                Some(Type::FLOAT8) => r.try_get::<_, Option<f64>>(i).map_err(err)?.map_or(Arg::Null, Arg::Real),
                Some(Type::TEXT) => r.try_get::<_, Option<String>>(i).map_err(err)?.map_or(Arg::Null, Arg::Text),
                other => return Err(StoreError::Backend(format!("unexpected column type {other:?}"))),
            })
        };
        self.rows(sql)?.iter().map(|r| (0..r.len()).map(|i| value(r, i)).collect()).collect()
    }

    fn query_resources(&mut self, sql: &Sql) -> Result<Vec<StoredResource>> {
        let mut out = Vec::new();
        for r in self.rows(sql)? {
            let method: String = r.try_get(4).map_err(err)?;
            out.push(ops::stored(
                r.try_get(0).map_err(err)?,
                r.try_get(1).map_err(err)?,
                r.try_get(2).map_err(err)?,
                r.try_get(3).map_err(err)?,
                &method,
                r.try_get(5).map_err(err)?,
            )?);
        }
        Ok(out)
    }
}

/// A write transaction on a pooled client.
struct PgTx<'a> {
    store: &'a PostgresStore,
    client: Option<Pooled<'a>>,
    writes: u64,
    /// Index rows and counts of this transaction's writes not yet sent.
    pending: ops::Pending,
}

impl PgTx<'_> {
    fn conn(&mut self) -> Result<Conn<'_>> {
        match self.client.as_mut() {
            Some(p) => Ok(Conn(p.client()?)),
            None => Err(StoreError::Backend("transaction already finished".into())),
        }
    }

    /// The connection, with this transaction's pending index rows sent: for anything
    /// that reads the index.
    fn flushed(&mut self) -> Result<Conn<'_>> {
        let mut pending = std::mem::take(&mut self.pending);
        ops::flush(&mut self.conn()?, &mut pending)?;
        self.conn()
    }
}

impl Drop for PgTx<'_> {
    fn drop(&mut self) {
        if let Some(mut pooled) = self.client.take() {
            let rolled_back = pooled.client().map(|c| c.client.batch_execute("ROLLBACK"));
            if !matches!(rolled_back, Ok(Ok(()))) {
                tracing::warn!("rollback failed, closing the connection");
                pooled.discard();
            }
        }
    }
}

impl Tx for PgTx<'_> {
    fn current(&mut self, resource_type: &str, id: &str) -> Result<Option<CurrentVersion>> {
        ops::current(&mut self.conn()?, resource_type, id)
    }

    fn read(&mut self, resource_type: &str, id: &str) -> Result<Option<StoredResource>> {
        ops::read(&mut self.conn()?, resource_type, id)
    }

    fn search_ids(&mut self, query: &Query, limit: usize) -> Result<Vec<String>> {
        ops::search_ids(&mut self.flushed()?, query, limit)
    }

    fn lock_key(&mut self, key: &str) -> Result<()> {
        let mut sql = Sql::new(Dialect::Postgres);
        sql.push("SELECT pg_advisory_xact_lock(hashtext(").text_arg(key).push(")::bigint)::text");
        self.conn()?.query_texts(&sql).map(|_| ())
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
        // concurrent appenders: queued, chained by `audit_seal` in sequence order
        store::audit::append(&mut self.conn()?, rows, false).map(|_| ())
    }

    fn audit_seal(&mut self, limit: usize) -> Result<usize> {
        store::audit::seal(&mut self.conn()?, limit)
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
        let mut pooled =
            self.client.take().ok_or_else(|| StoreError::Backend("transaction already finished".into()))?;
        if let Err(e) = pooled.client()?.client.batch_execute("COMMIT") {
            pooled.discard();
            return Err(err(e));
        }
        // autovacuum would get there within a minute or so; searches right after a bulk
        // load should not wait for it. Only the tables searches plan on: the whole
        // database (with the audit log) took seconds of both cores under load
        let config = self.store.config.clone();
        self.store.stats.after_commit(self.writes, move || {
            config.connect(NoTls)?.batch_execute(&format!("ANALYZE {}", store::sql::planned_tables()))
        });
        Ok(())
    }
}

impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgresql"
    }

    fn begin(&self) -> Result<Box<dyn Tx + '_>> {
        let mut pooled = self.pool.get()?;
        pooled.client()?.client.batch_execute("BEGIN").map_err(err)?;
        Ok(Box::new(PgTx { store: self, client: Some(pooled), writes: 0, pending: ops::Pending::default() }))
    }

    fn read(&self, resource_type: &str, id: &str) -> Result<Option<StoredResource>> {
        self.with_conn(|c| ops::read(c, resource_type, id))
    }

    fn read_version(&self, resource_type: &str, id: &str, version: u64) -> Result<Option<StoredResource>> {
        self.with_conn(|c| ops::read_version(c, resource_type, id, version))
    }

    fn history(&self, query: &HistoryQuery) -> Result<(Vec<StoredResource>, u64)> {
        self.with_conn(|c| ops::history(c, query))
    }

    fn search(&self, query: &Query, count: usize) -> Result<SearchPage> {
        self.with_conn(|c| ops::search(c, query, count))
    }

    fn referring_types(
        &self,
        target_type: &str,
        target_id: &str,
        candidates: &[(&str, Vec<&str>)],
    ) -> Result<Vec<String>> {
        self.with_conn(|c| ops::referring_types(c, target_type, target_id, candidates))
    }

    fn check(&self) -> Result<()> {
        self.with_conn(|c| c.0.client.batch_execute("SELECT 1").map_err(err))
    }

    fn records(&self, kind: &str) -> Result<Vec<(String, Record)>> {
        self.with_conn(|c| ops::records(c, kind, None))
    }

    fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditRow>> {
        self.with_conn(|c| store::audit::query(c, query))
    }

    fn audit_counts(&self, upto: i64) -> Result<AuditCounts> {
        self.with_conn(|c| store::audit::counts(c, upto))
    }

    fn record(&self, kind: &str, id: &str) -> Result<Option<Record>> {
        Ok(self.with_conn(|c| ops::records(c, kind, Some(id)))?.into_iter().next().map(|(_, r)| r))
    }
}
