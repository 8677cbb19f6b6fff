//! The runner over both backends: a job enqueued with a write runs once it commits (not
//! when the write rolls back), failures are retried until the handler succeeds, jobs
//! wait across a restart, and several workers never run one job twice at once.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use guard::{Guard, Job, NewJob, SystemActor};
use jobs::{Handler, Retry, Runner, Settings};

/// Records each run; fails the first `fail` attempts of every job.
struct Counting {
    fail: i64,
    runs: Mutex<HashMap<String, i64>>,
}

impl Handler for Counting {
    fn queue(&self) -> &'static str {
        "test"
    }

    fn run(&self, job: &Job) -> Result<(), Retry> {
        *self.runs.lock().unwrap().entry(job.key.clone()).or_default() += 1;
        if job.attempts <= self.fail {
            return Err(Retry(format!("attempt {} refused", job.attempts)));
        }
        Ok(())
    }
}

fn fast() -> Settings {
    Settings {
        workers: 3,
        poll: Duration::from_millis(50),
        lease: Duration::from_secs(60),
        backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        batch: 5,
    }
}

fn enqueue(g: &Guard, key: &str, commit: bool) {
    let h = g.system(SystemActor::new("system:test"));
    let mut tx = h.begin().unwrap();
    assert!(tx.enqueue(&NewJob { queue: "test", key, payload: "{}", run_at: 0 }).unwrap());
    if commit {
        tx.commit().unwrap();
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn scenario(open: &dyn Fn() -> Guard) {
    let g = open();
    enqueue(&g, "rolled-back", false);
    // enqueued while no runner is up, then the server "restarts"
    enqueue(&g, "before-restart", true);
    drop(g);
    let g = open();
    let handler = Arc::new(Counting { fail: 2, runs: Mutex::new(HashMap::new()) });
    let runner = Runner::start(g.clone(), vec![handler.clone()], fast());
    for i in 0..20 {
        enqueue(&g, &format!("job-{i}"), true);
    }
    runner.wake();
    wait_until("every job done", || g.job_counts().unwrap().is_empty());
    runner.stop();
    let runs = handler.runs.lock().unwrap();
    assert_eq!(runs.get("before-restart"), Some(&3), "a job waits across a restart: {runs:?}");
    assert!(!runs.contains_key("rolled-back"), "a rolled-back write's job never runs");
    for i in 0..20 {
        assert_eq!(runs.get(&format!("job-{i}")), Some(&3), "two failures then done, never more: {runs:?}");
    }
}

#[test]
fn jobs_run_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    scenario(&|| Guard::open(Arc::new(store_sqlite::SqliteStore::open(&path).unwrap())));
}

#[test]
fn jobs_run_on_postgres() {
    let db = store_tests::PgDatabase::create();
    scenario(&|| Guard::open(Arc::new(store_postgres::PostgresStore::open(&db.url).unwrap())));
}
