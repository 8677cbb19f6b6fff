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
    concurrent_writers
);

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
