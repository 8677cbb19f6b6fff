//! The storage contract: versioned FHIR resources with their search index, behind a
//! trait that the SQLite and PostgreSQL backends implement. No database driver here.
//!
//! Shape of the data (both backends, see their `schema.sql`):
//! - `resources`: one row per logical resource (surrogate `rkey`, type, id, current
//!   version, deleted flag, pointer to the current body) — a read is one index lookup;
//! - `history`: every version's body, once (the current one included), with a global
//!   sequence number for system and type history;
//! - `idx_*`: search index rows of the current version, typed by parameter type,
//!   rewritten in the same transaction as the resource; full-text terms go to one
//!   document per resource (`idx_text`: FTS5 on SQLite, `text[]` + GIN on PostgreSQL).
//!
//! The store does not interpret resources: the engine sets `meta`, validates and extracts
//! index entries; the store persists exactly what it is given, atomically.

pub mod audit;
pub mod blob;
pub mod jobs;
pub mod ops;
pub mod sql;
pub mod stats;

use search::page::Position;
use search::{IndexEntry, Query};

/// What a stored version records about how it came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Create,
    Update,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Create => "create",
            Method::Update => "update",
            Method::Delete => "delete",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "create" => Method::Create,
            "update" => Method::Update,
            "delete" => Method::Delete,
            _ => return None,
        })
    }
}

/// One stored version of a resource.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResource {
    pub resource_type: String,
    pub id: String,
    pub version: u64,
    /// Microseconds since the Unix epoch.
    pub last_updated: i64,
    pub method: Method,
    /// The resource JSON (with `meta`) exactly as written; `None` for a deletion.
    pub body: Option<Vec<u8>>,
}

impl StoredResource {
    pub fn deleted(&self) -> bool {
        self.body.is_none()
    }
}

/// The state of a resource as seen inside a write transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurrentVersion {
    pub version: u64,
    pub deleted: bool,
}

/// A new version to write.
#[derive(Debug)]
pub struct NewVersion<'a> {
    pub resource_type: &'a str,
    pub id: &'a str,
    pub version: u64,
    pub last_updated: i64,
    pub method: Method,
    pub body: Option<&'a [u8]>,
    pub index: &'a [IndexEntry],
}

/// Which history to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryScope {
    System,
    Type(String),
    Instance(String, String),
}

/// A history request: newest first.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    pub scope: HistoryScope,
    /// Only versions written after this instant (microseconds).
    pub since: Option<i64>,
    pub count: usize,
    pub offset: usize,
}

/// A small versioned document that is not a FHIR resource (job state, account, key...),
/// kept in the same database and transactions as the resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// 1 when created, +1 per update: the basis of compare-and-set updates.
    pub version: i64,
    /// JSON, as the owner wrote it.
    pub data: String,
}

/// The condition of a record write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Write whatever is there (the version restarts at 1).
    Any,
    /// Create only: there must be no such record.
    Absent,
    /// Update only the version read before (optimistic concurrency).
    Version(i64),
}

/// A page of search results.
#[derive(Debug, Clone)]
pub struct SearchPage {
    pub resources: Vec<StoredResource>,
    /// Number of matches; `None` when the query said `_total=none` (and asked for rows).
    pub total: Option<u64>,
    /// More rows lie beyond this page, in the direction it was read.
    pub more: bool,
    /// Positions of the first and last rows, for the links to the pages around it (only
    /// when such a page exists: `first` when this page was reached by position or offset,
    /// `last` when there is more).
    pub first: Option<Position>,
    pub last: Option<Position>,
}

/// Storage failures, independent of the backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A concurrent writer got there first (unique key or serialization failure).
    #[error("conflicting concurrent write: {0}")]
    Conflict(String),
    /// The database cannot be reached or is shutting down.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Anything else the backend reported.
    #[error("database error: {0}")]
    Backend(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A storage backend. Calls block; async callers run them on a blocking thread.
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgresql`, for the CapabilityStatement and logs.
    fn backend(&self) -> &'static str;

    /// Start a write transaction. Dropping it without [`Tx::commit`] rolls back.
    fn begin(&self) -> Result<Box<dyn Tx + '_>>;

    /// The current version (possibly a deletion marker).
    fn read(&self, resource_type: &str, id: &str) -> Result<Option<StoredResource>>;

    /// A specific version.
    fn read_version(&self, resource_type: &str, id: &str, version: u64) -> Result<Option<StoredResource>>;

    /// History, newest first, plus the total number of matching versions.
    fn history(&self, query: &HistoryQuery) -> Result<(Vec<StoredResource>, u64)>;

    /// Current, non-deleted resources matching a query, ordered by creation.
    fn search(&self, query: &Query, count: usize) -> Result<SearchPage>;

    /// Which of `candidates` (a type, with its reference parameters) have a live resource
    /// referring to `target_type/target_id` by one of those parameters: one statement,
    /// one index probe per type (e.g. the types of a patient's record, for `$everything`).
    fn referring_types(
        &self,
        target_type: &str,
        target_id: &str,
        candidates: &[(&str, Vec<&str>)],
    ) -> Result<Vec<String>>;

    /// Is the database reachable and writable?
    fn check(&self) -> Result<()>;

    /// Entries of the audit log (see [`audit`]).
    fn audit(&self, query: &audit::AuditQuery) -> Result<Vec<audit::AuditRow>>;

    /// Row counts of the audit log, for verification.
    fn audit_counts(&self, upto: i64) -> Result<audit::AuditCounts>;

    /// Append audit entries in a transaction of their own (durable on return).
    fn audit_append(&self, rows: &[audit::NewAudit]) -> Result<()> {
        let mut tx = self.begin()?;
        tx.audit(rows)?;
        tx.commit()
    }

    /// Chain the audit entries appended by concurrent transactions (PostgreSQL; SQLite
    /// chains them as they are appended). Returns how many were chained.
    fn audit_seal(&self) -> Result<usize> {
        let mut total = 0;
        loop {
            let mut tx = self.begin()?;
            let n = tx.audit_seal(5000)?;
            tx.commit()?;
            total += n;
            if n < 5000 {
                return Ok(total);
            }
        }
    }

    /// A blob as read from a [`blob::BlobStore`], opened (see [`Tx::seal_blob`]): as it
    /// is, unless an encrypting layer sealed it.
    fn open_blob(&self, id: &str, stored: Vec<u8>) -> Result<Vec<u8>> {
        let _ = id;
        Ok(stored)
    }

    /// Claim up to `limit` due jobs of `queues` for `lease` microseconds, in a
    /// transaction of their own (see [`jobs`]).
    fn claim_jobs(&self, queues: &[&str], now: i64, lease: i64, limit: usize) -> Result<Vec<jobs::Job>> {
        let mut tx = self.begin()?;
        let claimed = tx.claim_jobs(queues, now, lease, limit)?;
        tx.commit()?;
        Ok(claimed)
    }

    /// End an attempt of a claimed job, in a transaction of its own.
    fn finish_job(&self, id: i64, outcome: &jobs::JobOutcome) -> Result<()> {
        let mut tx = self.begin()?;
        tx.finish_job(id, outcome)?;
        tx.commit()
    }

    /// The jobs waiting, per queue.
    fn job_counts(&self) -> Result<Vec<jobs::QueueCount>> {
        let mut tx = self.begin()?;
        let counts = tx.job_counts()?;
        tx.commit()?;
        Ok(counts)
    }

    /// Records of a kind, in id order (see [`Tx::put_record`]).
    fn records(&self, kind: &str) -> Result<Vec<(String, Record)>>;

    /// One record.
    fn record(&self, kind: &str, id: &str) -> Result<Option<Record>>;
}

/// A write transaction. All reads see the transaction's own writes.
pub trait Tx {
    /// The current version of a resource, locking it against concurrent writers.
    fn current(&mut self, resource_type: &str, id: &str) -> Result<Option<CurrentVersion>>;

    /// The current version with its body, as the transaction sees it.
    fn read(&mut self, resource_type: &str, id: &str) -> Result<Option<StoredResource>>;

    /// Ids of up to `limit` current resources matching `query` (conditional operations).
    fn search_ids(&mut self, query: &Query, limit: usize) -> Result<Vec<String>>;

    /// Serialise transactions that use the same key (e.g. conditional-create criteria),
    /// so that two concurrent conditional creates cannot both create.
    fn lock_key(&mut self, key: &str) -> Result<()>;

    /// Write a new version and replace the resource's index rows.
    fn write(&mut self, version: &NewVersion<'_>) -> Result<()>;

    /// Up to `limit` current (not deleted) resources of a type whose surrogate key is
    /// above `after`, in key order, locked against concurrent writers: for reindexing.
    fn scan(&mut self, resource_type: &str, after: i64, limit: usize) -> Result<Vec<(i64, StoredResource)>>;

    /// Replace the index rows under the codes `params` of the resources `rows` (key,
    /// entries), leaving their other rows alone.
    fn reindex(&mut self, resource_type: &str, params: &[&str], rows: &[(i64, Vec<IndexEntry>)]) -> Result<()>;

    /// Write a record if `expect` holds (else `false`, nothing written): the state of a
    /// background job, an account, a client, a session, a key.
    fn put_record(&mut self, kind: &str, id: &str, data: &str, expect: Expect) -> Result<bool>;

    /// Remove a record; `false` if there was none.
    fn delete_record(&mut self, kind: &str, id: &str) -> Result<bool>;

    /// One record, as the transaction sees it.
    fn record(&mut self, kind: &str, id: &str) -> Result<Option<Record>>;

    /// Up to `limit` stored versions (with a body) after history sequence `after`, in
    /// order, with their sequence: for re-encrypting the stored bodies.
    fn versions(&mut self, after: i64, limit: usize) -> Result<Vec<(i64, StoredResource)>>;

    /// Replace the stored bytes of the body of the version at sequence `seq`.
    fn replace_body(&mut self, seq: i64, body: &[u8]) -> Result<()>;

    /// Append audit entries, committed with the rest of the transaction.
    fn audit(&mut self, rows: &[audit::NewAudit]) -> Result<()>;

    /// Chain up to `limit` appended entries not chained yet; how many.
    fn audit_seal(&mut self, limit: usize) -> Result<usize>;

    /// The form in which blob `id` of `owner`'s record (a patient's id, or none) is put
    /// into a [`blob::BlobStore`]: as it is, unless an encrypting layer seals it with the
    /// owner's data key (created in this transaction if they have none yet).
    fn seal_blob(&mut self, owner: Option<&str>, id: &str, bytes: &[u8]) -> Result<Vec<u8>> {
        let _ = (owner, id);
        Ok(bytes.to_vec())
    }

    /// Enqueue a job, committed with the rest of the transaction; `false` when a job
    /// with its key is already waiting (see [`jobs`]).
    fn enqueue(&mut self, job: &jobs::NewJob<'_>, now: i64) -> Result<bool>;

    /// Claim due jobs (see [`Store::claim_jobs`]).
    fn claim_jobs(&mut self, queues: &[&str], now: i64, lease: i64, limit: usize) -> Result<Vec<jobs::Job>>;

    /// End an attempt of a claimed job.
    fn finish_job(&mut self, id: i64, outcome: &jobs::JobOutcome) -> Result<()>;

    /// The jobs waiting, per queue.
    fn job_counts(&mut self) -> Result<Vec<jobs::QueueCount>>;

    /// Make every write of the transaction durable, or none.
    fn commit(self: Box<Self>) -> Result<()>;
}
