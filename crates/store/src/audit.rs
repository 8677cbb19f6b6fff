//! The audit log's storage: an append-only table of entries (`audit`), a hash chain over
//! them (`audit_chain`: position, entry, SHA-256 that commits to the previous link), and
//! the entries of each patient (`audit_patient`) for the patient's own view. Entries are
//! never updated or deleted by the server; [`chain_hash`] is the one definition of a
//! link, used to write the chain and to verify it.
//!
//! Chaining is serial. SQLite has one writer, so an entry is chained in the transaction
//! that appends it. On PostgreSQL concurrent transactions append, so entries wait in
//! `audit_pending` (in the same transaction) until [`seal`] chains them, under an
//! advisory lock, in the order of their sequence numbers.

use crate::ops::SqlConn;
use crate::sql::{Arg, Dialect, Sql};
use crate::{Result, StoreError};

/// An entry to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAudit {
    /// When it happened, microseconds since the Unix epoch.
    pub at: i64,
    /// Ids of the patients whose data it concerns.
    pub patients: Vec<String>,
    /// The AuditEvent JSON (without `id`: the sequence number is its id).
    pub entry: String,
}

/// A stored entry.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    /// Sequence number, assigned on insert: the entry's id.
    pub seq: i64,
    pub at: i64,
    /// Patient ids, space separated.
    pub patients: String,
    pub entry: String,
    /// Position in the chain and hash of the link, once chained.
    pub link: Option<(i64, String)>,
}

/// Which entries to list.
#[derive(Debug, Clone, PartialEq)]
pub enum AuditQuery {
    /// Chained entries from position `after + 1` on, in chain order; a link whose entry
    /// is missing comes back with an empty entry and `seq` as recorded in the chain.
    Chain { after: i64, limit: usize },
    /// One patient's entries below sequence `before`: the `limit` latest in sequence,
    /// newest first by time.
    Patient { patient: String, before: Option<i64>, limit: usize },
    /// All entries below sequence `before`, as [`AuditQuery::Patient`].
    Newest { before: Option<i64>, limit: usize },
    /// One entry.
    Seq(i64),
    /// The last link of the chain.
    Head,
    /// Entries neither chained nor waiting to be (inserted behind the server's back).
    Unchained { limit: usize },
}

/// Counts for a consistency check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AuditCounts {
    pub entries: i64,
    pub links: i64,
    pub pending: i64,
    /// Rows of the patient index that belong to entries chained at or before the
    /// position asked for.
    pub patient_rows: i64,
}

/// Lock id of the chain on PostgreSQL (`pg_advisory_xact_lock`).
pub const CHAIN_LOCK: i64 = 0x6d65_646b_6175_6474;

/// The link of an entry: SHA-256 over the previous link's hash, the position and every
/// stored field, hex encoded. The first link's previous hash is empty.
pub fn chain_hash(prev: &str, pos: i64, seq: i64, at: i64, patients: &str, entry: &str) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(prev.as_bytes());
    ctx.update(format!("\n{pos}\n{seq}\n{at}\n").as_bytes());
    ctx.update(patients.as_bytes());
    ctx.update(b"\n");
    ctx.update(entry.as_bytes());
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for b in ctx.finish().as_ref() {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
    out
}

/// Rows per insert statement.
const BATCH: usize = 200;

/// Append entries; on SQLite (`chain_now`) chain them in the same transaction, else queue
/// them for [`seal`]. Returns their sequence numbers.
pub fn append(c: &mut dyn SqlConn, rows: &[NewAudit], chain_now: bool) -> Result<Vec<i64>> {
    let mut seqs = Vec::with_capacity(rows.len());
    let rows: Vec<NewAudit> = rows
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.patients.sort_unstable();
            r.patients.dedup();
            r
        })
        .collect();
    for chunk in rows.chunks(BATCH) {
        let mut sql = Sql::new(c.dialect());
        sql.push("INSERT INTO audit (at, patients, entry) VALUES ");
        for (i, r) in chunk.iter().enumerate() {
            sql.push(if i == 0 { "(" } else { ", (" });
            sql.bind(Arg::Int(r.at)).push(", ").text_arg(&r.patients.join(" ")).push(", ").text_arg(&r.entry).push(")");
        }
        sql.push(" RETURNING seq");
        let mut got: Vec<i64> = c.query_ints(&sql)?.into_iter().filter_map(|r| r.first().copied()).collect();
        got.sort_unstable();
        if got.len() != chunk.len() {
            return Err(StoreError::Backend("audit insert returned fewer rows than sent".into()));
        }
        let patient_rows: Vec<(&str, i64)> =
            chunk.iter().zip(&got).flat_map(|(r, s)| r.patients.iter().map(move |p| (p.as_str(), *s))).collect();
        for part in patient_rows.chunks(BATCH) {
            let mut sql = Sql::new(c.dialect());
            sql.push("INSERT INTO audit_patient (patient, seq) VALUES ");
            for (i, (p, s)) in part.iter().enumerate() {
                sql.push(if i == 0 { "(" } else { ", (" }).text_arg(p).push(", ").bind(Arg::Int(*s)).push(")");
            }
            sql.push(" ON CONFLICT DO NOTHING");
            c.execute(&sql)?;
        }
        if chain_now {
            let linked: Vec<(i64, i64, String, String)> =
                chunk.iter().zip(&got).map(|(r, s)| (*s, r.at, r.patients.join(" "), r.entry.clone())).collect();
            link(c, &linked)?;
        } else {
            let mut sql = Sql::new(c.dialect());
            sql.push("INSERT INTO audit_pending (seq) VALUES ");
            for (i, s) in got.iter().enumerate() {
                sql.push(if i == 0 { "(" } else { ", (" }).bind(Arg::Int(*s)).push(")");
            }
            c.execute(&sql)?;
        }
        seqs.extend(got);
    }
    Ok(seqs)
}

/// The last link: (position, hash), or (0, "") for an empty chain.
fn head(c: &mut dyn SqlConn) -> Result<(i64, String)> {
    let mut sql = Sql::new(c.dialect());
    sql.push("SELECT pos, hash FROM audit_chain ORDER BY pos DESC LIMIT 1");
    Ok(match c.query_values(&sql)?.into_iter().next().map(|r| r.into_iter().collect::<Vec<_>>()) {
        Some(r) => match (r.first(), r.get(1)) {
            (Some(Arg::Int(p)), Some(Arg::Text(h))) => (*p, h.clone()),
            _ => return Err(StoreError::Backend("unreadable audit chain head".into())),
        },
        None => (0, String::new()),
    })
}

/// Chain `(seq, at, patients, entry)` rows after the current head.
fn link(c: &mut dyn SqlConn, rows: &[(i64, i64, String, String)]) -> Result<()> {
    let (mut pos, mut prev) = head(c)?;
    let mut sql = Sql::new(c.dialect());
    sql.push("INSERT INTO audit_chain (pos, seq, hash) VALUES ");
    for (i, (seq, at, patients, entry)) in rows.iter().enumerate() {
        pos += 1;
        prev = chain_hash(&prev, pos, *seq, *at, patients, entry);
        sql.push(if i == 0 { "(" } else { ", (" });
        sql.bind(Arg::Int(pos)).push(", ").bind(Arg::Int(*seq)).push(", ").text_arg(&prev).push(")");
    }
    if !rows.is_empty() {
        c.execute(&sql)?;
    }
    Ok(())
}

/// Chain up to `limit` queued entries in sequence order; the number chained.
pub fn seal(c: &mut dyn SqlConn, limit: usize) -> Result<usize> {
    if c.dialect() == Dialect::Postgres {
        let mut lock = Sql::new(c.dialect());
        lock.push("SELECT pg_advisory_xact_lock(").bind(Arg::Int(CHAIN_LOCK)).push(")");
        c.execute(&lock)?;
    }
    let mut sql = Sql::new(c.dialect());
    sql.push("SELECT a.seq, a.at, a.patients, a.entry FROM audit_pending p JOIN audit a ON a.seq = p.seq ORDER BY p.seq LIMIT ");
    sql.bind(Arg::Int(limit as i64));
    let rows: Vec<(i64, i64, String, String)> = c
        .query_values(&sql)?
        .into_iter()
        .filter_map(|r| match r.as_slice() {
            [Arg::Int(s), Arg::Int(at), Arg::Text(p), Arg::Text(e)] => Some((*s, *at, p.clone(), e.clone())),
            _ => None,
        })
        .collect();
    if rows.is_empty() {
        return Ok(0);
    }
    link(c, &rows)?;
    // exactly these: others may have been committed into the range meanwhile
    for chunk in rows.chunks(BATCH) {
        let mut del = Sql::new(c.dialect());
        del.push("DELETE FROM audit_pending WHERE seq IN (");
        for (i, r) in chunk.iter().enumerate() {
            if i > 0 {
                del.push(", ");
            }
            del.bind(Arg::Int(r.0));
        }
        c.execute(del.push(")"))?;
    }
    Ok(rows.len())
}

const ROW: &str = "SELECT a.seq, a.at, a.patients, a.entry, c.pos, c.hash";

/// List entries.
pub fn query(c: &mut dyn SqlConn, q: &AuditQuery) -> Result<Vec<AuditRow>> {
    let mut sql = Sql::new(c.dialect());
    match q {
        AuditQuery::Chain { after, limit } => {
            sql.push("SELECT c.seq, a.at, a.patients, a.entry, c.pos, c.hash FROM audit_chain c ");
            sql.push("LEFT JOIN audit a ON a.seq = c.seq WHERE c.pos > ").bind(Arg::Int(*after));
            sql.push(" ORDER BY c.pos LIMIT ").bind(Arg::Int(*limit as i64));
        }
        AuditQuery::Head => {
            sql.push("SELECT c.seq, a.at, a.patients, a.entry, c.pos, c.hash FROM audit_chain c ");
            sql.push("LEFT JOIN audit a ON a.seq = c.seq ORDER BY c.pos DESC LIMIT 1");
        }
        AuditQuery::Patient { patient, before, limit } => {
            sql.push(ROW).push(" FROM audit_patient ap JOIN audit a ON a.seq = ap.seq ");
            sql.push("LEFT JOIN audit_chain c ON c.seq = a.seq WHERE ap.patient = ").text_arg(patient);
            if let Some(b) = before {
                sql.push(" AND ap.seq < ").bind(Arg::Int(*b));
            }
            sql.push(" ORDER BY ap.seq DESC LIMIT ").bind(Arg::Int(*limit as i64));
        }
        AuditQuery::Newest { before, limit } => {
            sql.push(ROW).push(" FROM audit a LEFT JOIN audit_chain c ON c.seq = a.seq WHERE 1 = 1");
            if let Some(b) = before {
                sql.push(" AND a.seq < ").bind(Arg::Int(*b));
            }
            sql.push(" ORDER BY a.seq DESC LIMIT ").bind(Arg::Int(*limit as i64));
        }
        AuditQuery::Seq(seq) => {
            sql.push(ROW).push(" FROM audit a LEFT JOIN audit_chain c ON c.seq = a.seq WHERE a.seq = ");
            sql.bind(Arg::Int(*seq));
        }
        AuditQuery::Unchained { limit } => {
            sql.push(ROW).push(" FROM audit a LEFT JOIN audit_chain c ON c.seq = a.seq WHERE c.seq IS NULL");
            sql.push(" AND NOT EXISTS (SELECT 1 FROM audit_pending p WHERE p.seq = a.seq) ORDER BY a.seq LIMIT ");
            sql.bind(Arg::Int(*limit as i64));
        }
    }
    let mut rows: Vec<AuditRow> = c.query_values(&sql)?.into_iter().filter_map(row).collect();
    if matches!(q, AuditQuery::Patient { .. } | AuditQuery::Newest { .. }) {
        // a page is in sequence order (the order entries reached the database: reads
        // come through the journal up to 100 ms after the writes around them), shown
        // newest first by when they happened
        rows.sort_by_key(|r| std::cmp::Reverse((r.at, r.seq)));
    }
    Ok(rows)
}

fn row(r: Vec<Arg>) -> Option<AuditRow> {
    let text = |a: &Arg| match a {
        Arg::Text(s) => s.clone(),
        _ => String::new(),
    };
    let int = |a: &Arg| match a {
        Arg::Int(i) => Some(*i),
        _ => None,
    };
    let link = match (r.get(4).and_then(int), r.get(5)) {
        (Some(pos), Some(Arg::Text(h))) => Some((pos, h.clone())),
        _ => None,
    };
    Some(AuditRow {
        seq: r.first().and_then(int)?,
        at: r.get(1).and_then(int).unwrap_or(0),
        patients: r.get(2).map(text).unwrap_or_default(),
        entry: r.get(3).map(text).unwrap_or_default(),
        link,
    })
}

/// Row counts of the log's tables (the patient index up to chain position `upto`).
pub fn counts(c: &mut dyn SqlConn, upto: i64) -> Result<AuditCounts> {
    let mut sql = Sql::new(c.dialect());
    sql.push(
        "SELECT (SELECT count(*) FROM audit), (SELECT count(*) FROM audit_chain), \
         (SELECT count(*) FROM audit_pending), (SELECT count(*) FROM audit_patient ap \
         JOIN audit_chain c ON c.seq = ap.seq WHERE c.pos <= ",
    );
    sql.bind(Arg::Int(upto)).push(")");
    let r = c.query_ints(&sql)?.into_iter().next().unwrap_or_default();
    let n = |i: usize| r.get(i).copied().unwrap_or(0);
    Ok(AuditCounts { entries: n(0), links: n(1), pending: n(2), patient_rows: n(3) })
}
