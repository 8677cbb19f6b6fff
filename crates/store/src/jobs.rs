//! The durable job queue, in the same database as the resources: a job is a row of
//! `job_queue` enqueued in the transaction whose write asks for it (so a message and the
//! job that delivers it commit together, or neither does), claimed by a worker for a
//! lease, and deleted when done or put back with a later time when it failed.
//!
//! Claims are one statement: on PostgreSQL the due rows are picked `FOR UPDATE SKIP
//! LOCKED`, so workers on several hosts never take the same job and never wait on each
//! other; on SQLite the single writer serialises claims. A worker that dies holding a job
//! only delays it: its lease runs out and another worker claims it. A job is therefore
//! done at least once — handlers make their effect idempotent (the [`Job::key`] names it).
//! Payloads name what to do (`Communication/123`), never health data.

use crate::ops::SqlConn;
use crate::sql::{Arg, Dialect, Sql};
use crate::{Result, StoreError};

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob<'a> {
    /// The queue (one kind of work: `deliver`, `remind`...).
    pub queue: &'a str,
    /// Unique among the jobs waiting: a second job with the key is not enqueued.
    pub key: &'a str,
    /// What the handler needs (JSON), no health data.
    pub payload: &'a str,
    /// Due at (microseconds since the epoch).
    pub run_at: i64,
}

/// A claimed job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: i64,
    pub queue: String,
    pub key: String,
    pub payload: String,
    /// Claims so far, this one included.
    pub attempts: i64,
    /// Why the previous attempt failed.
    pub last_error: Option<String>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// Done: the job is removed.
    Done,
    /// Failed: try again at `at` (microseconds), remembering why.
    Retry { at: i64, error: String },
}

/// The jobs waiting in a queue: how many, how many of those have failed at least once,
/// and the earliest due time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueCount {
    pub queue: String,
    pub waiting: i64,
    pub failing: i64,
    pub next_at: Option<i64>,
}

/// Enqueue a job (in the caller's transaction); `false` when one with its key waits.
pub fn enqueue(c: &mut dyn SqlConn, job: &NewJob<'_>, now: i64) -> Result<bool> {
    let mut sql = Sql::new(c.dialect());
    sql.push("INSERT INTO job_queue (queue, key, payload, run_at, attempts, locked_until, created) VALUES (");
    sql.text_arg(job.queue).push(", ").text_arg(job.key).push(", ").text_arg(job.payload).push(", ");
    sql.bind(Arg::Int(job.run_at)).push(", 0, 0, ").bind(Arg::Int(now)).push(") ON CONFLICT (key) DO NOTHING");
    Ok(c.execute(&sql)? == 1)
}

/// Claim up to `limit` due jobs of `queues` for `lease` microseconds (in the caller's
/// transaction, which should commit at once).
pub fn claim(c: &mut dyn SqlConn, queues: &[&str], now: i64, lease: i64, limit: usize) -> Result<Vec<Job>> {
    if queues.is_empty() || limit == 0 {
        return Ok(Vec::new());
    }
    let mut sql = Sql::new(c.dialect());
    sql.push("UPDATE job_queue SET attempts = attempts + 1, locked_until = ").bind(Arg::Int(now + lease));
    sql.push(" WHERE id IN (SELECT id FROM job_queue WHERE queue IN (");
    for (i, q) in queues.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.text_arg(q);
    }
    sql.push(") AND run_at <= ").bind(Arg::Int(now)).push(" AND locked_until <= ").bind(Arg::Int(now));
    sql.push(" ORDER BY run_at, id LIMIT ").bind(Arg::Int(limit as i64));
    if c.dialect() == Dialect::Postgres {
        sql.push(" FOR UPDATE SKIP LOCKED");
    }
    sql.push(") RETURNING id, queue, key, payload, attempts, last_error");
    let mut jobs = Vec::new();
    for row in c.query_values(&sql)? {
        match row.as_slice() {
            [Arg::Int(id), Arg::Text(queue), Arg::Text(key), Arg::Text(payload), Arg::Int(attempts), last] => {
                jobs.push(Job {
                    id: *id,
                    queue: queue.clone(),
                    key: key.clone(),
                    payload: payload.clone(),
                    attempts: *attempts,
                    last_error: match last {
                        Arg::Text(e) => Some(e.clone()),
                        _ => None,
                    },
                });
            }
            other => return Err(StoreError::Backend(format!("unexpected job row {other:?}"))),
        }
    }
    jobs.sort_by_key(|j| j.id);
    Ok(jobs)
}

/// End an attempt of job `id`.
pub fn finish(c: &mut dyn SqlConn, id: i64, outcome: &JobOutcome) -> Result<()> {
    let mut sql = Sql::new(c.dialect());
    match outcome {
        JobOutcome::Done => {
            sql.push("DELETE FROM job_queue WHERE id = ").bind(Arg::Int(id));
        }
        JobOutcome::Retry { at, error } => {
            let error: String = error.chars().take(500).collect();
            sql.push("UPDATE job_queue SET locked_until = 0, run_at = ").bind(Arg::Int(*at));
            sql.push(", last_error = ").text_arg(&error).push(" WHERE id = ").bind(Arg::Int(id));
        }
    }
    c.execute(&sql)?;
    Ok(())
}

/// The waiting jobs, per queue.
pub fn counts(c: &mut dyn SqlConn) -> Result<Vec<QueueCount>> {
    let mut sql = Sql::new(c.dialect());
    sql.push(
        "SELECT queue, count(*), sum(CASE WHEN last_error IS NULL THEN 0 ELSE 1 END), min(run_at) \
         FROM job_queue GROUP BY queue ORDER BY queue",
    );
    let mut out = Vec::new();
    for row in c.query_values(&sql)? {
        let int = |a: &Arg| match a {
            Arg::Int(n) => Some(*n),
            Arg::Real(r) => Some(*r as i64),
            Arg::Text(t) => t.parse().ok(),
            _ => None,
        };
        if let [Arg::Text(queue), waiting, failing, next] = row.as_slice() {
            out.push(QueueCount {
                queue: queue.clone(),
                waiting: int(waiting).unwrap_or(0),
                failing: int(failing).unwrap_or(0),
                next_at: int(next),
            });
        }
    }
    Ok(out)
}
