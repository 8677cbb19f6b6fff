//! Runs the conformance suite against SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use store_postgres::PostgresStore;
use store_sqlite::SqliteStore;
use store_tests::*;

macro_rules! both {
    ($($name:ident),*) => {
        mod sqlite {
            use super::*;
            $(#[test] fn $name() {
                let dir = tempfile::tempdir().unwrap();
                let store = SqliteStore::open(dir.path()).unwrap();
                super::$name(&store);
            })*
        }
        mod postgres {
            use super::*;
            $(#[test] fn $name() {
                let db = PgDatabase::create();
                let store = PostgresStore::open(&db.url).unwrap();
                super::$name(&store);
            })*
        }
    };
}

both!(
    versions_and_history,
    stale_version_conflicts,
    rollback_leaves_no_trace,
    search_follows_current_version,
    search_numbers_quantities_and_meta,
    search_sorting,
    search_composites_and_text,
    search_chains,
    records_compare_and_set,
    job_queue,
    job_queue_concurrent_claims,
    concurrent_writers,
    concurrent_commits_and_rollbacks,
    audit_log_chains_concurrent_appends
);

#[test]
fn file_blobs() {
    let dir = tempfile::tempdir().unwrap();
    blob_store(&store::blob::FileBlobs::open(&dir.path().join("blobs")).unwrap());
    // nothing but the blobs is left behind (no temporary files)
    let files = walk(dir.path());
    assert_eq!(files.len(), 82, "{files:?}");
    assert!(files.iter().all(|f| !f.file_name().unwrap().to_string_lossy().starts_with('.')));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

#[test]
fn postgres_blobs() {
    let db = PgDatabase::create();
    let _store = PostgresStore::open(&db.url).unwrap();
    blob_store(&store_postgres::blob::PgBlobs::open(&db.url).unwrap());
    // a second opening (another server host) sees the same blobs
    let other = store_postgres::blob::PgBlobs::open(&db.url).unwrap();
    assert_eq!(store::blob::BlobStore::get(&other, "t3-4").unwrap(), Some(b"3/4".to_vec()));
}

#[test]
fn sqlite_reopens_existing_data() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SqliteStore::open(dir.path()).unwrap();
        versions_and_history(&store);
    }
    let store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(store::Store::read(&store, "Patient", "p1").unwrap().unwrap().version, 3);
}

#[test]
fn postgres_creates_a_missing_database() {
    let name = format!("medkarta_test_{}", uuid::Uuid::new_v4().simple());
    let url = format!("{}/{name}", pg_server());
    {
        let store = PostgresStore::open(&url).unwrap();
        store::Store::check(&store).unwrap();
    }
    let mut admin = ::postgres::Client::connect(&format!("{}/postgres", pg_server()), ::postgres::NoTls).unwrap();
    admin.batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)")).unwrap();
}

#[test]
fn postgres_connections_stay_bounded_under_a_burst() {
    use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
    let db = PgDatabase::create();
    let store = PostgresStore::open(&db.url).unwrap();
    let (peak, done) = (AtomicI64::new(0), AtomicBool::new(false));
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut monitor = ::postgres::Client::connect(&db.url, ::postgres::NoTls).unwrap();
            while !done.load(Ordering::SeqCst) {
                let n: i64 = monitor
                    .query_one("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()", &[])
                    .unwrap()
                    .get(0);
                peak.fetch_max(n - 1, Ordering::SeqCst);
            }
        });
        let workers: Vec<_> = (0..96)
            .map(|_| {
                s.spawn(|| {
                    for _ in 0..20 {
                        let mut tx = store::Store::begin(&store).unwrap();
                        tx.current("Patient", "none").unwrap();
                        std::thread::sleep(std::time::Duration::from_millis(2));
                        tx.commit().unwrap();
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        done.store(true, Ordering::SeqCst);
    });
    let peak = peak.load(Ordering::SeqCst);
    assert!(peak > 8, "the burst did run concurrently ({peak} connections)");
    assert!(peak <= 32, "{peak} connections: the pool is bounded at 32");
}

/// PostgreSQL: a transaction writing one resource does not hold up a transaction writing
/// another (no global write lock); a second writer of the *same* resource waits for it.
#[test]
fn postgres_unrelated_writes_do_not_wait_for_each_other() {
    use store::{Method, NewVersion, Store};
    let db = PgDatabase::create();
    let store = PostgresStore::open(&db.url).unwrap();
    let body = br#"{"resourceType":"Patient"}"#;
    let write = |id: &str, version: u64| NewVersion {
        resource_type: "Patient",
        id: Box::leak(id.to_string().into_boxed_str()),
        version,
        last_updated: 1,
        method: Method::Create,
        body: Some(body),
        index: &[],
    };
    let mut first = store.begin().unwrap();
    first.current("Patient", "a").unwrap();
    first.write(&write("a", 1)).unwrap();
    // while `first` is open and uncommitted, another writer commits a different resource
    let started = std::time::Instant::now();
    let mut second = store.begin().unwrap();
    second.write(&write("b", 1)).unwrap();
    second.commit().unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "an unrelated write waited");
    first.commit().unwrap();

    // the same resource: the second writer blocks on the row lock until the first commits
    let mut holder = store.begin().unwrap();
    assert_eq!(holder.current("Patient", "a").unwrap().map(|c| c.version), Some(1));
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let t = std::time::Instant::now();
            let mut tx = store.begin().unwrap();
            let v = tx.current("Patient", "a").unwrap().map(|c| c.version);
            tx.commit().unwrap();
            (v, t.elapsed())
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        holder.write(&NewVersion { method: Method::Update, ..write("a", 2) }).unwrap();
        holder.commit().unwrap();
        let (seen, waited) = waiter.join().unwrap();
        assert_eq!(seen, Some(2), "the waiter sees the committed version, not a stale one");
        assert!(waited >= std::time::Duration::from_millis(250), "it waited for the row lock ({waited:?})");
    });
}

/// Statements that turn a fresh database back into schema version 1 (index rows without
/// composite groups, per-resource index on `rkey` alone, no jobs table, full-text terms
/// as token rows: one is left for the migration to move; no audit log).
fn downgrade_to_v1() -> String {
    let mut sql: String = store::sql::INDEX_TABLES
        .iter()
        .map(|t| format!("DROP INDEX {t}_rkey; CREATE INDEX {t}_rkey ON {t} (rkey); ALTER TABLE {t} DROP COLUMN grp;"))
        .collect();
    sql.push_str("DROP TABLE records; DROP TABLE idx_text; DROP TABLE counts;");
    sql.push_str("DROP TABLE audit; DROP TABLE audit_chain; DROP TABLE audit_pending; DROP TABLE audit_patient;");
    sql.push_str("DROP TABLE job_queue;");
    sql.push_str(
        "INSERT INTO idx_token (rkey, rtype, param, system, code) VALUES (999, 'Patient', '_content', NULL, 'migrat');",
    );
    sql
}

/// Where the migration put the full-text term left by [`downgrade_to_v1`].
const MOVED_TERM: &str = "_content.migrat";

#[test]
fn sqlite_schema_1_is_migrated_on_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(SqliteStore::open(dir.path()).unwrap());
    let c = rusqlite::Connection::open(dir.path().join("medkarta.sqlite")).unwrap();
    c.execute_batch(&format!("{} PRAGMA user_version = 1;", downgrade_to_v1())).unwrap();
    drop(c);
    let store = SqliteStore::open(dir.path()).unwrap();
    search_composites_and_text(&store);
    job_queue(&store);
    let c = rusqlite::Connection::open(dir.path().join("medkarta.sqlite")).unwrap();
    assert_eq!(c.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0)).unwrap(), store::sql::SCHEMA_VERSION);
    let doc: String = c.query_row("SELECT terms FROM idx_text WHERE rowid = 999", [], |r| r.get(0)).unwrap();
    assert_eq!(doc, MOVED_TERM);
    let left: i64 = c.query_row("SELECT count(*) FROM idx_token WHERE param = '_content'", [], |r| r.get(0)).unwrap();
    assert_eq!(left, 0, "term rows moved out of the token index");
}

#[test]
fn postgres_schema_1_is_migrated_on_open() {
    let db = PgDatabase::create();
    drop(PostgresStore::open(&db.url).unwrap());
    let mut c = ::postgres::Client::connect(&db.url, ::postgres::NoTls).unwrap();
    let default_collation = r#"ALTER TABLE idx_string ALTER COLUMN value TYPE TEXT COLLATE "default";"#;
    c.batch_execute(&format!("{} {default_collation} UPDATE medkarta_schema SET version = 1;", downgrade_to_v1()))
        .unwrap();
    let store = PostgresStore::open(&db.url).unwrap();
    search_composites_and_text(&store);
    job_queue(&store);
    let collation: Option<String> = c
        .query_one(
            "SELECT collation_name::text FROM information_schema.columns WHERE table_name = 'idx_string' AND column_name = 'value'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(collation.as_deref(), Some("C"), "index values sort by code point");
    let v: i64 = c.query_one("SELECT version FROM medkarta_schema", &[]).unwrap().get(0);
    assert_eq!(v, store::sql::SCHEMA_VERSION);
    let doc: Vec<String> = c.query_one("SELECT terms FROM idx_text WHERE rkey = 999", &[]).unwrap().get(0);
    assert_eq!(doc, vec![MOVED_TERM.to_string()]);
    let left: i64 = c.query_one("SELECT count(*) FROM idx_token WHERE param = '_content'", &[]).unwrap().get(0);
    assert_eq!(left, 0, "term rows moved out of the token index");
}
